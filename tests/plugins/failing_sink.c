/* failing_sink - test fixture: accepts `fail.after` records, then every
 * put() fails: with an error (fail.mode=error) or SPOKE_RETRY
 * (fail.mode=retry). Accepted records are counted in the "delivered"
 * metric, so a test can see how far delivery got. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spoke/plugin.h>

static const char *const failing_sink_modes[] = { "error", "retry", NULL };

static const struct spoke_config_field failing_sink_config[] = {
    { .name = "fail.after", .type = SPOKE_CFG_LONG, .default_value = "0",
      .doc = "Records accepted before put() starts failing", .min = 0, .max = 1e15 },
    { .name = "fail.mode", .type = SPOKE_CFG_STRING, .default_value = "error",
      .doc = "error: put() returns an error; retry: put() returns SPOKE_RETRY",
      .allowed = failing_sink_modes },
    { 0 }
};

struct failing_sink_state {
    const struct spoke_host_api *api;
    struct spoke_instance *inst;
    int64_t after;
    int retry;
    int64_t accepted;
};

static int failing_sink_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                             const struct spoke_config *cfg, void **st,
                             char *errstr, size_t errstr_size)
{
    struct failing_sink_state *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(errstr, errstr_size, "failing_sink: out of memory");
        return SPOKE_ERR_NOMEM;
    }
    const char *mode = api->config_string(cfg, "fail.mode");
    s->api = api;
    s->inst = inst;
    s->after = api->config_int(cfg, "fail.after");
    s->retry = mode && strcmp(mode, "retry") == 0;
    *st = s;
    return SPOKE_OK;
}

static int failing_sink_put(void *st, const struct spoke_record *rec,
                            char *errstr, size_t errstr_size)
{
    (void)rec;
    struct failing_sink_state *s = st;
    if (s->accepted >= s->after) {
        snprintf(errstr, errstr_size, "failing_sink: configured to fail after %lld records",
                 (long long)s->after);
        return s->retry ? SPOKE_RETRY : SPOKE_ERR;
    }
    s->accepted++;
    s->api->metric_add(s->inst, "delivered", 1);
    return SPOKE_OK;
}

static int failing_sink_flush(void *st, char *errstr, size_t errstr_size)
{
    (void)st; (void)errstr; (void)errstr_size;
    return SPOKE_OK;
}

static void failing_sink_destroy(void *st) { free(st); }

static const struct spoke_plugin failing_sink = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "failing_sink",
    .kind        = SPOKE_KIND_SINK,
    .version     = "0.1.0",
    .description = "Test fixture: a sink that fails after a configured number of records",
    .config      = failing_sink_config,
    .init        = failing_sink_init,
    .put         = failing_sink_put,
    .flush       = failing_sink_flush,
    .destroy     = failing_sink_destroy,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &failing_sink; }
