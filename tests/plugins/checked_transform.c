/* checked_transform - test fixture: a pass-through transform with a config
 * check (struct spoke_plugin.check): `low` must not exceed `high`, and
 * `mode: whole` is refused without naming a key, `mode: ctl` with control
 * characters in the reason. `init` fails the same way,
 * so a host that skipped the check would only fail at run time. */
#include <stdio.h>
#include <string.h>

#include <spoke/plugin.h>

static const struct spoke_config_field checked_transform_config[] = {
    { .name = "low", .type = SPOKE_CFG_INT, .default_value = "0", .doc = "Lower bound",
      .min = 0, .max = 1000 },
    { .name = "high", .type = SPOKE_CFG_INT, .default_value = "10", .doc = "Upper bound",
      .min = 0, .max = 1000 },
    { .name = "mode", .type = SPOKE_CFG_STRING, .default_value = "part",
      .doc = "part, or whole (refused as a whole)" },
    { 0 }
};

static int rules(const struct spoke_host_api *api, const struct spoke_config *cfg,
                 const char **key, char *errstr, size_t errstr_size)
{
    int64_t low = api->config_int(cfg, "low"), high = api->config_int(cfg, "high");
    const char *mode = api->config_string(cfg, "mode");
    if (low > high) {
        *key = "low";
        snprintf(errstr, errstr_size, "low (%lld) is above high (%lld)", (long long)low,
                 (long long)high);
        return SPOKE_ERR_INVALID;
    }
    if (mode && strcmp(mode, "ctl") == 0) {
        /* Text a careless plugin might write: a line break and a terminal
         * escape. The host prints it as one line without the escape. */
        *key = "mode";
        snprintf(errstr, errstr_size, "mode ctl:\nforged line\x1b[31m red");
        return SPOKE_ERR_INVALID;
    }
    if (mode && strcmp(mode, "whole") == 0) {
        *key = NULL;
        snprintf(errstr, errstr_size, "mode whole refuses the configuration as a whole");
        return SPOKE_ERR_INVALID;
    }
    return SPOKE_OK;
}

static int checked_transform_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                                  const struct spoke_config *cfg, void **st, char *errstr,
                                  size_t errstr_size)
{
    const char *key;
    (void)inst;
    *st = NULL;
    return rules(api, cfg, &key, errstr, errstr_size);
}

static int checked_transform_process(void *st, struct spoke_record *rec, char *errstr,
                                     size_t errstr_size)
{
    (void)st; (void)rec; (void)errstr; (void)errstr_size;
    return SPOKE_OK;
}

static void checked_transform_destroy(void *st) { (void)st; }

static const struct spoke_plugin checked_transform = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "checked_transform",
    .kind        = SPOKE_KIND_TRANSFORM,
    .version     = "0.1.0",
    .description = "Test fixture: a config check between keys",
    .config      = checked_transform_config,
    .init        = checked_transform_init,
    .process     = checked_transform_process,
    .destroy     = checked_transform_destroy,
    .check       = rules,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &checked_transform; }
