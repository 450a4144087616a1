/* bad_kind - test fixture: a descriptor with a kind that does not exist */
#include <spoke/plugin.h>

static int bad_kind_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                         const struct spoke_config *cfg, void **st,
                         char *errstr, size_t errstr_size)
{
    (void)api; (void)inst; (void)cfg; (void)errstr; (void)errstr_size;
    *st = NULL;
    return SPOKE_OK;
}

static int bad_kind_process(void *st, struct spoke_record *rec,
                            char *errstr, size_t errstr_size)
{
    (void)st; (void)rec; (void)errstr; (void)errstr_size;
    return SPOKE_OK;
}

static void bad_kind_destroy(void *st) { (void)st; }

static const struct spoke_plugin bad_kind = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "bad_kind",
    .kind        = (enum spoke_kind)7,
    .version     = "0.1.0",
    .description = "Test fixture: a descriptor with a kind that does not exist",
    .init        = bad_kind_init,
    .process     = bad_kind_process,
    .destroy     = bad_kind_destroy,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &bad_kind; }
