/* secret_sink - test fixture: a sink with secret config keys (a PASSWORD
 * and a STRING flagged SPOKE_CFG_SECRET), to prove they are never shown: not
 * over REST, not in status, not in logs. It logs only their lengths. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spoke/plugin.h>

static const struct spoke_config_field secret_sink_config[] = {
    { .name = "password", .type = SPOKE_CFG_PASSWORD, .flags = SPOKE_CFG_REQUIRED,
      .doc = "A password (shown as ********)" },
    { .name = "api.key", .type = SPOKE_CFG_STRING, .flags = SPOKE_CFG_SECRET,
      .default_value = "default-key-value", .doc = "An API key (secret string)" },
    { .name = "label", .type = SPOKE_CFG_STRING, .default_value = "visible",
      .doc = "A plain value, shown as given" },
    { 0 }
};

static int secret_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                       const struct spoke_config *cfg, void **st, char *errstr,
                       size_t errstr_size)
{
    (void)errstr;
    (void)errstr_size;
    api->log(inst, SPOKE_LOG_INFO, "secret_sink: password of %zu bytes, label %s",
             strlen(api->config_string(cfg, "password")), api->config_string(cfg, "label"));
    *st = (void *)api;
    return SPOKE_OK;
}

static int secret_put(void *st, const struct spoke_record *rec, char *errstr, size_t errstr_size)
{
    (void)st;
    (void)rec;
    (void)errstr;
    (void)errstr_size;
    return SPOKE_OK;
}

static int secret_flush(void *st, char *errstr, size_t errstr_size)
{
    (void)st;
    (void)errstr;
    (void)errstr_size;
    return SPOKE_OK;
}

static void secret_destroy(void *st) { (void)st; }

static const struct spoke_plugin secret_sink = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "secret_sink",
    .kind        = SPOKE_KIND_SINK,
    .version     = "0.1.0",
    .description = "Test fixture: a sink with secret config keys",
    .config      = secret_sink_config,
    .init        = secret_init,
    .put         = secret_put,
    .flush       = secret_flush,
    .destroy     = secret_destroy,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &secret_sink; }
