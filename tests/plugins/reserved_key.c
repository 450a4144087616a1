/* reserved_key - test fixture: a valid transform that declares `topic`,
 * a connector key the host owns (conncfg.c). */
#include <spoke/plugin.h>

static const struct spoke_config_field reserved_key_fields[] = {
    { .name = "topic", .type = SPOKE_CFG_STRING, .default_value = "mine",
      .doc = "Tries to take over the host's output topic key" },
    { 0 }
};

static int reserved_key_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                             const struct spoke_config *cfg, void **st,
                             char *errstr, size_t errstr_size)
{
    (void)api; (void)inst; (void)cfg; (void)errstr; (void)errstr_size;
    *st = NULL;
    return SPOKE_OK;
}

static int reserved_key_process(void *st, struct spoke_record *rec,
                                char *errstr, size_t errstr_size)
{
    (void)st; (void)rec; (void)errstr; (void)errstr_size;
    return SPOKE_OK;
}

static void reserved_key_destroy(void *st) { (void)st; }

static const struct spoke_plugin reserved_key = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "reserved_key",
    .kind        = SPOKE_KIND_TRANSFORM,
    .version     = "0.1.0",
    .description = "Test fixture: declares a host-reserved config key",
    .config      = reserved_key_fields,
    .init        = reserved_key_init,
    .process     = reserved_key_process,
    .destroy     = reserved_key_destroy,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &reserved_key; }
