/* short_struct - test fixture: a header whose struct_size claims a
 * descriptor shorter than ABI 1's, as a plugin built against a truncated
 * header would. The object itself is full size, so the host reading it is
 * harmless; the host must still refuse it on the header alone. */
#include <stddef.h>

#include <spoke/plugin.h>

static int short_struct_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                             const struct spoke_config *cfg, void **st,
                             char *errstr, size_t errstr_size)
{
    (void)api; (void)inst; (void)cfg; (void)errstr; (void)errstr_size;
    *st = NULL;
    return SPOKE_OK;
}

static int short_struct_process(void *st, struct spoke_record *rec,
                                char *errstr, size_t errstr_size)
{
    (void)st; (void)rec; (void)errstr; (void)errstr_size;
    return SPOKE_OK;
}

static void short_struct_destroy(void *st) { (void)st; }

static const struct spoke_plugin short_struct = {
    .hdr         = { SPOKE_PLUGIN_MAGIC, SPOKE_ABI_VERSION,
                     (uint32_t)offsetof(struct spoke_plugin, destroy), 0 },
    .name        = "short_struct",
    .kind        = SPOKE_KIND_TRANSFORM,
    .version     = "0.1.0",
    .description = "Test fixture: struct_size smaller than the ABI 1 descriptor",
    .init        = short_struct_init,
    .process     = short_struct_process,
    .destroy     = short_struct_destroy,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &short_struct; }
