/* bad_config - test fixture: a valid transform whose config table is not:
 * the default of `retries` (5) lies outside its own bounds [10, 20]. */
#include <spoke/plugin.h>

static const struct spoke_config_field bad_config_fields[] = {
    { .name = "retries", .type = SPOKE_CFG_INT, .default_value = "5",
      .doc = "How often to retry", .min = 10, .max = 20 },
    { 0 }
};

static int bad_config_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                           const struct spoke_config *cfg, void **st,
                           char *errstr, size_t errstr_size)
{
    (void)api; (void)inst; (void)cfg; (void)errstr; (void)errstr_size;
    *st = NULL;
    return SPOKE_OK;
}

static int bad_config_process(void *st, struct spoke_record *rec, char *errstr, size_t errstr_size)
{
    (void)st; (void)rec; (void)errstr; (void)errstr_size;
    return SPOKE_OK;
}

static void bad_config_destroy(void *st) { (void)st; }

static const struct spoke_plugin bad_config = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "bad_config",
    .kind        = SPOKE_KIND_TRANSFORM,
    .version     = "0.1.0",
    .description = "Test fixture: a config default that violates its own bounds",
    .config      = bad_config_fields,
    .init        = bad_config_init,
    .process     = bad_config_process,
    .destroy     = bad_config_destroy,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &bad_config; }
