/* reserved_set - test fixture: a header whose reserved field is not 0 */
#include <spoke/plugin.h>

static int reserved_set_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                             const struct spoke_config *cfg, void **st,
                             char *errstr, size_t errstr_size)
{
    (void)api; (void)inst; (void)cfg; (void)errstr; (void)errstr_size;
    *st = NULL;
    return SPOKE_OK;
}

static int reserved_set_process(void *st, struct spoke_record *rec,
                                char *errstr, size_t errstr_size)
{
    (void)st; (void)rec; (void)errstr; (void)errstr_size;
    return SPOKE_OK;
}

static void reserved_set_destroy(void *st) { (void)st; }

static const struct spoke_plugin reserved_set = {
    .hdr         = { SPOKE_PLUGIN_MAGIC, SPOKE_ABI_VERSION,
                     (uint32_t)sizeof(struct spoke_plugin), 1 },
    .name        = "reserved_set",
    .kind        = SPOKE_KIND_TRANSFORM,
    .version     = "0.1.0",
    .description = "Test fixture: a header whose reserved field is not 0",
    .init        = reserved_set_init,
    .process     = reserved_set_process,
    .destroy     = reserved_set_destroy,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &reserved_set; }
