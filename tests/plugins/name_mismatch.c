/* name_mismatch - test fixture: a valid transform whose descriptor name is
 * not its file name. */
#include <spoke/plugin.h>

static int name_mismatch_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                              const struct spoke_config *cfg, void **st,
                              char *errstr, size_t errstr_size)
{
    (void)api; (void)inst; (void)cfg; (void)errstr; (void)errstr_size;
    *st = NULL;
    return SPOKE_OK;
}

static int name_mismatch_process(void *st, struct spoke_record *rec,
                                 char *errstr, size_t errstr_size)
{
    (void)st; (void)rec; (void)errstr; (void)errstr_size;
    return SPOKE_OK;
}

static void name_mismatch_destroy(void *st) { (void)st; }

static const struct spoke_plugin name_mismatch = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "mismatched_name",
    .kind        = SPOKE_KIND_TRANSFORM,
    .version     = "0.1.0",
    .description = "Test fixture: descriptor name differs from the file name",
    .init        = name_mismatch_init,
    .process     = name_mismatch_process,
    .destroy     = name_mismatch_destroy,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &name_mismatch; }
