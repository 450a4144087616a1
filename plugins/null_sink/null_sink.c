/*
 * null_sink - accepts every record and discards it, counting records and
 * value bytes. Meant for benchmarks: it measures the host and the upstream
 * plugins, not a target.
 *
 * Counters are kept locally and published with api->metric_add once per
 * flush (the host flushes after every batch), so the sink costs no more
 * than reading the value's length per record.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <spoke/plugin.h>

static const struct spoke_config_field ns_config[] = {
    { .name = "log.every", .type = SPOKE_CFG_LONG, .default_value = "0",
      .doc = "Log the running count every N records; 0 = never",
      .min = 0, .max = 1000000000000 },
    { 0 }
};

struct ns_state {
    const struct spoke_host_api *api;
    struct spoke_instance *inst;
    int64_t log_every;
    int64_t total_records;   /* since start, for the log line */
    int64_t total_bytes;
    int64_t pending_records; /* not yet published as metrics */
    int64_t pending_bytes;
};

static int ns_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                   const struct spoke_config *cfg, void **out,
                   char *errstr, size_t errstr_size)
{
    struct ns_state *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        snprintf(errstr, errstr_size, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    st->api = api;
    st->inst = inst;
    st->log_every = api->config_int(cfg, "log.every");
    *out = st;
    return SPOKE_OK;
}

static int ns_put(void *vst, const struct spoke_record *crec, char *errstr, size_t errstr_size)
{
    struct ns_state *st = vst;
    size_t len = 0;

    (void)errstr;
    (void)errstr_size;
    (void)st->api->record_value_bytes(crec, &len);
    st->total_records++;
    st->total_bytes += (int64_t)len;
    st->pending_records++;
    st->pending_bytes += (int64_t)len;
    if (st->log_every > 0 && st->total_records % st->log_every == 0)
        st->api->log(st->inst, SPOKE_LOG_INFO, "%lld records, %lld bytes discarded",
                     (long long)st->total_records, (long long)st->total_bytes);
    return SPOKE_OK;
}

static int ns_flush(void *vst, char *errstr, size_t errstr_size)
{
    struct ns_state *st = vst;

    (void)errstr;
    (void)errstr_size;
    if (st->pending_records > 0) {
        st->api->metric_add(st->inst, "records", st->pending_records);
        st->api->metric_add(st->inst, "bytes", st->pending_bytes);
        st->pending_records = 0;
        st->pending_bytes = 0;
    }
    return SPOKE_OK;
}

static void ns_destroy(void *vst)
{
    free(vst);
}

static const struct spoke_plugin null_sink = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "null_sink",
    .kind        = SPOKE_KIND_SINK,
    .version     = "0.1.0",
    .description = "Discards records, counting them (for benchmarks)",
    .config      = ns_config,
    .init        = ns_init,
    .put         = ns_put,
    .flush       = ns_flush,
    .destroy     = ns_destroy,
};

/* The plugin's only exported symbol: returns the constant descriptor. */
SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void)
{
    return &null_sink;
}
