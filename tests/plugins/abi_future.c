/* abi_future - test fixture: a descriptor built for an ABI newer than the
 * host's. Everything else is a valid transform. */
#include <spoke/plugin.h>

static int abi_future_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                           const struct spoke_config *cfg, void **st,
                           char *errstr, size_t errstr_size)
{
    (void)api; (void)inst; (void)cfg; (void)errstr; (void)errstr_size;
    *st = NULL;
    return SPOKE_OK;
}

static int abi_future_process(void *st, struct spoke_record *rec, char *errstr, size_t errstr_size)
{
    (void)st; (void)rec; (void)errstr; (void)errstr_size;
    return SPOKE_OK;
}

static void abi_future_destroy(void *st) { (void)st; }

static const struct spoke_plugin abi_future = {
    .hdr         = { SPOKE_PLUGIN_MAGIC, SPOKE_ABI_VERSION + 1,
                     (uint32_t)sizeof(struct spoke_plugin), 0 },
    .name        = "abi_future",
    .kind        = SPOKE_KIND_TRANSFORM,
    .version     = "0.1.0",
    .description = "Test fixture: built for a future ABI",
    .init        = abi_future_init,
    .process     = abi_future_process,
    .destroy     = abi_future_destroy,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &abi_future; }
