/* precheck_transform - test fixture: a plugin built before the descriptor
 * had `check`: its struct_size ends at destroy. The object is full size
 * and its check refuses everything, so a host that read past struct_size
 * would refuse every config; the host must load it and never call check. */
#include <stddef.h>
#include <stdio.h>

#include <spoke/plugin.h>

static int precheck_transform_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                                   const struct spoke_config *cfg, void **st, char *errstr,
                                   size_t errstr_size)
{
    (void)api; (void)inst; (void)cfg; (void)errstr; (void)errstr_size;
    *st = NULL;
    return SPOKE_OK;
}

static int precheck_transform_process(void *st, struct spoke_record *rec, char *errstr,
                                      size_t errstr_size)
{
    (void)st; (void)rec; (void)errstr; (void)errstr_size;
    return SPOKE_OK;
}

static void precheck_transform_destroy(void *st) { (void)st; }

static int precheck_transform_check(const struct spoke_host_api *api,
                                    const struct spoke_config *cfg, const char **key,
                                    char *errstr, size_t errstr_size)
{
    (void)api; (void)cfg;
    *key = NULL;
    snprintf(errstr, errstr_size, "precheck_transform: check called past struct_size");
    return SPOKE_ERR_INVALID;
}

static const struct spoke_plugin precheck_transform = {
    .hdr         = { SPOKE_PLUGIN_MAGIC, SPOKE_ABI_VERSION,
                     (uint32_t)offsetof(struct spoke_plugin, check), 0 },
    .name        = "precheck_transform",
    .kind        = SPOKE_KIND_TRANSFORM,
    .version     = "0.1.0",
    .description = "Test fixture: a descriptor from before the check entry",
    .init        = precheck_transform_init,
    .process     = precheck_transform_process,
    .destroy     = precheck_transform_destroy,
    .check       = precheck_transform_check,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void)
{
    return &precheck_transform;
}
