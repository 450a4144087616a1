/* async_sink - test fixture for sink_record_failed(): put() accepts every
 * record, and flush() reports the ones whose value contains `reject.marker`
 * as failed deliveries, the way an asynchronous sink (Kafka delivery
 * reports, CQL responses) learns about a rejection only after put()
 * returned. Metrics: "delivered" (accepted and not rejected), "rejected",
 * "bogus_refused" (a failure reported for a record that is not pending was
 * refused, as it must be). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spoke/plugin.h>

static const struct spoke_config_field async_sink_config[] = {
    { .name = "reject.marker", .type = SPOKE_CFG_STRING, .default_value = "reject",
      .doc = "Records whose value contains this text are reported as failed in flush()" },
    { 0 }
};

struct async_sink_state {
    const struct spoke_host_api *api;
    struct spoke_instance *inst;
    const char *marker;
    const struct spoke_record **pending; /* identities only, never read */
    size_t npending, cap;
    int64_t accepted;
};

static int async_sink_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                           const struct spoke_config *cfg, void **st,
                           char *errstr, size_t errstr_size)
{
    struct async_sink_state *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(errstr, errstr_size, "async_sink: out of memory");
        return SPOKE_ERR_NOMEM;
    }
    s->api = api;
    s->inst = inst;
    s->marker = api->config_string(cfg, "reject.marker");
    *st = s;
    return SPOKE_OK;
}

static int async_sink_put(void *st, const struct spoke_record *rec, char *errstr,
                          size_t errstr_size)
{
    struct async_sink_state *s = st;
    size_t len;
    const char *v = s->api->record_value_bytes(rec, &len);
    if (v && memmem(v, len, s->marker, strlen(s->marker))) {
        if (s->npending == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 16;
            const struct spoke_record **p = realloc(s->pending, cap * sizeof(*p));
            if (!p) {
                snprintf(errstr, errstr_size, "async_sink: out of memory");
                return SPOKE_ERR_NOMEM;
            }
            s->pending = p;
            s->cap = cap;
        }
        s->pending[s->npending++] = rec;
    } else {
        s->accepted++;
    }
    return SPOKE_OK;
}

static int async_sink_flush(void *st, char *errstr, size_t errstr_size)
{
    struct async_sink_state *s = st;
    static const char bogus;
    if (s->api->sink_record_failed(s->inst, (const struct spoke_record *)(const void *)&bogus,
                                   SPOKE_ERR, "not pending") == SPOKE_ERR_INVALID)
        s->api->metric_add(s->inst, "bogus_refused", 1);
    for (size_t i = 0; i < s->npending; i++) {
        char why[64];
        snprintf(why, sizeof(why), "async_sink: the target rejected the record");
        if (s->api->sink_record_failed(s->inst, s->pending[i], SPOKE_ERR_INVALID, why) !=
            SPOKE_OK) {
            snprintf(errstr, errstr_size, "async_sink: sink_record_failed refused a pending record");
            return SPOKE_ERR_STATE;
        }
        s->api->metric_add(s->inst, "rejected", 1);
    }
    s->npending = 0;
    s->api->metric_add(s->inst, "delivered", s->accepted);
    s->accepted = 0;
    return SPOKE_OK;
}

static void async_sink_destroy(void *st)
{
    struct async_sink_state *s = st;
    free(s->pending);
    free(s);
}

static const struct spoke_plugin async_sink = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "async_sink",
    .kind        = SPOKE_KIND_SINK,
    .version     = "0.1.0",
    .description = "Test fixture: a sink that reports rejected deliveries from flush()",
    .config      = async_sink_config,
    .init        = async_sink_init,
    .put         = async_sink_put,
    .flush       = async_sink_flush,
    .destroy     = async_sink_destroy,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &async_sink; }
