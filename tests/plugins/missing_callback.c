/* missing_callback - test fixture: a sink without flush, which every sink
 * needs (the host acknowledges records only after a flush). */
#include <spoke/plugin.h>

static int missing_callback_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                                 const struct spoke_config *cfg, void **st,
                                 char *errstr, size_t errstr_size)
{
    (void)api; (void)inst; (void)cfg; (void)errstr; (void)errstr_size;
    *st = NULL;
    return SPOKE_OK;
}

static int missing_callback_put(void *st, const struct spoke_record *rec,
                                char *errstr, size_t errstr_size)
{
    (void)st; (void)rec; (void)errstr; (void)errstr_size;
    return SPOKE_OK;
}

static void missing_callback_destroy(void *st) { (void)st; }

static const struct spoke_plugin missing_callback = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "missing_callback",
    .kind        = SPOKE_KIND_SINK,
    .version     = "0.1.0",
    .description = "Test fixture: a sink without flush",
    .init        = missing_callback_init,
    .put         = missing_callback_put,
    .destroy     = missing_callback_destroy,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &missing_callback; }
