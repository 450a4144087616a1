/* foreign_callback - test fixture: a sink that also sets process, a
 * transform callback the host would never call on a sink. */
#include <spoke/plugin.h>

static int foreign_callback_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                                 const struct spoke_config *cfg, void **st,
                                 char *errstr, size_t errstr_size)
{
    (void)api; (void)inst; (void)cfg; (void)errstr; (void)errstr_size;
    *st = NULL;
    return SPOKE_OK;
}

static int foreign_callback_process(void *st, struct spoke_record *rec,
                                    char *errstr, size_t errstr_size)
{
    (void)st; (void)rec; (void)errstr; (void)errstr_size;
    return SPOKE_OK;
}

static int foreign_callback_put(void *st, const struct spoke_record *rec,
                                char *errstr, size_t errstr_size)
{
    (void)st; (void)rec; (void)errstr; (void)errstr_size;
    return SPOKE_OK;
}

static int foreign_callback_flush(void *st, char *errstr, size_t errstr_size)
{
    (void)st; (void)errstr; (void)errstr_size;
    return SPOKE_OK;
}

static void foreign_callback_destroy(void *st) { (void)st; }

static const struct spoke_plugin foreign_callback = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "foreign_callback",
    .kind        = SPOKE_KIND_SINK,
    .version     = "0.1.0",
    .description = "Test fixture: a sink that also sets process, a transform callback",
    .init        = foreign_callback_init,
    .process     = foreign_callback_process,
    .put         = foreign_callback_put,
    .flush       = foreign_callback_flush,
    .destroy     = foreign_callback_destroy,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &foreign_callback; }
