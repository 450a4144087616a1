/* half_snapshot - test fixture: a transform with snapshot but no restore */
#include <spoke/plugin.h>

static int half_snapshot_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                              const struct spoke_config *cfg, void **st,
                              char *errstr, size_t errstr_size)
{
    (void)api; (void)inst; (void)cfg; (void)errstr; (void)errstr_size;
    *st = NULL;
    return SPOKE_OK;
}

static int half_snapshot_process(void *st, struct spoke_record *rec,
                                 char *errstr, size_t errstr_size)
{
    (void)st; (void)rec; (void)errstr; (void)errstr_size;
    return SPOKE_OK;
}

static int half_snapshot_snapshot(void *st, void **data, size_t *len,
                                  char *errstr, size_t errstr_size)
{
    (void)st; (void)errstr; (void)errstr_size;
    *data = NULL;
    *len = 0;
    return SPOKE_OK;
}

static void half_snapshot_destroy(void *st) { (void)st; }

static const struct spoke_plugin half_snapshot = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "half_snapshot",
    .kind        = SPOKE_KIND_TRANSFORM,
    .version     = "0.1.0",
    .description = "Test fixture: a transform with snapshot but no restore",
    .init        = half_snapshot_init,
    .process     = half_snapshot_process,
    .snapshot    = half_snapshot_snapshot,
    .destroy     = half_snapshot_destroy,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &half_snapshot; }
