/* async_sink - test fixture for sink_record_failed(): put() accepts every
 * record, and flush() reports the ones whose value contains `reject.marker`
 * as failed deliveries, the way an asynchronous sink (Kafka delivery
 * reports, CQL responses) learns about a rejection only after put()
 * returned. Metrics: "delivered" (accepted and not rejected), "rejected",
 * "bogus_refused" (a failure reported for a record that is not pending was
 * refused, as it must be).
 *
 * With pipeline.window > 0 it is a pipelined sink instead: put() only
 * queues records (copying their values), and flush() settles the older half
 * of the queue, newest first, with sink_record_done / sink_record_failed
 * and returns SPOKE_PENDING while input waits and the queue is within the
 * window; otherwise it settles everything and returns SPOKE_OK. Delivered
 * values are appended to out.file. With hold=true nothing is ever settled
 * (flush returns SPOKE_PENDING while input waits, else SPOKE_RETRY).
 * Metrics: "pending_max" (most records queued after a put). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spoke/plugin.h>

static const struct spoke_config_field async_sink_config[] = {
    { .name = "reject.marker", .type = SPOKE_CFG_STRING, .default_value = "reject",
      .doc = "Records whose value contains this text are reported as failed in flush()" },
    { .name = "pipeline.window", .type = SPOKE_CFG_INT, .default_value = "0",
      .doc = "Pipelined mode when > 0: most records kept pending while input waits", .min = 0,
      .max = 1000000 },
    { .name = "out.file", .type = SPOKE_CFG_STRING,
      .doc = "Pipelined mode: delivered values are appended here, one per line" },
    { .name = "hold", .type = SPOKE_CFG_BOOL, .default_value = "false",
      .doc = "Pipelined mode: never confirm a delivery" },
    { 0 }
};

struct async_sink_state {
    const struct spoke_host_api *api;
    struct spoke_instance *inst;
    const char *marker;
    const struct spoke_record **pending; /* identities only, never read */
    size_t npending, cap;
    int64_t accepted;
    /* pipelined mode */
    int64_t window;
    int hold;
    FILE *out;
    struct queued { const struct spoke_record *rec; char *value; int reject; } *q;
    size_t nq, capq;
    int64_t pending_max;
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
    s->window = api->config_int(cfg, "pipeline.window");
    s->hold = api->config_bool(cfg, "hold");
    const char *out = api->config_string(cfg, "out.file");
    if (out && !(s->out = fopen(out, "a"))) {
        snprintf(errstr, errstr_size, "async_sink: cannot open %s", out);
        free(s);
        return SPOKE_ERR_IO;
    }
    *st = s;
    return SPOKE_OK;
}

static int pipelined_put(struct async_sink_state *s, const struct spoke_record *rec,
                         const char *v, size_t len, char *errstr, size_t errstr_size)
{
    if (s->nq == s->capq) {
        size_t cap = s->capq ? s->capq * 2 : 64;
        struct queued *q = realloc(s->q, cap * sizeof(*q));
        if (!q) {
            snprintf(errstr, errstr_size, "async_sink: out of memory");
            return SPOKE_ERR_NOMEM;
        }
        s->q = q;
        s->capq = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        snprintf(errstr, errstr_size, "async_sink: out of memory");
        return SPOKE_ERR_NOMEM;
    }
    memcpy(copy, v ? v : "", len);
    copy[len] = '\0';
    s->q[s->nq++] = (struct queued){ rec, copy,
                                     v && memmem(v, len, s->marker, strlen(s->marker)) != NULL };
    if ((int64_t)s->nq > s->pending_max) {
        s->api->metric_set(s->inst, "pending_max", (int64_t)s->nq);
        s->pending_max = (int64_t)s->nq;
    }
    return SPOKE_OK;
}

/* Settles q[0, k), newest first (out of order on purpose). */
static int pipelined_settle(struct async_sink_state *s, size_t k, char *errstr,
                            size_t errstr_size)
{
    for (size_t j = k; j-- > 0;) {
        struct queued *e = &s->q[j];
        int rc;
        if (e->reject) {
            rc = s->api->sink_record_failed(s->inst, e->rec, SPOKE_ERR_INVALID,
                                            "async_sink: the target rejected the record");
            s->api->metric_add(s->inst, "rejected", 1);
        } else {
            rc = s->api->sink_record_done(s->inst, e->rec);
            if (s->out)
                fprintf(s->out, "%s\n", e->value);
            s->api->metric_add(s->inst, "delivered", 1);
        }
        free(e->value);
        if (rc != SPOKE_OK) {
            snprintf(errstr, errstr_size, "async_sink: the host refused a pending record");
            return SPOKE_ERR_STATE;
        }
    }
    if (s->out)
        fflush(s->out);
    memmove(s->q, s->q + k, (s->nq - k) * sizeof(*s->q));
    s->nq -= k;
    return SPOKE_OK;
}

static int pipelined_flush(struct async_sink_state *s, char *errstr, size_t errstr_size)
{
    size_t backlog = s->api->input_backlog(s->inst);
    int room = backlog > 0 && (int64_t)s->nq <= s->window;
    if (s->hold) {
        if (room)
            return SPOKE_PENDING;
        snprintf(errstr, errstr_size, "async_sink: holding %zu deliveries", s->nq);
        return SPOKE_RETRY;
    }
    size_t k = room ? s->nq / 2 : s->nq;
    int rc = pipelined_settle(s, k, errstr, errstr_size);
    if (rc != SPOKE_OK)
        return rc;
    return s->nq ? SPOKE_PENDING : SPOKE_OK;
}

static int async_sink_put(void *st, const struct spoke_record *rec, char *errstr,
                          size_t errstr_size)
{
    struct async_sink_state *s = st;
    size_t len;
    const char *v = s->api->record_value_bytes(rec, &len);
    if (s->window > 0)
        return pipelined_put(s, rec, v, len, errstr, errstr_size);
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
    if (s->window > 0)
        return pipelined_flush(s, errstr, errstr_size);
    /* Records that are not pending (zeroed and garbage memory shaped like
     * none the host made) must be refused. */
    for (int fill = 0; fill < 2; fill++) {
        void *bogus = malloc(4096);
        if (!bogus)
            break;
        memset(bogus, fill ? 0xab : 0, 4096);
        if (s->api->sink_record_failed(s->inst, bogus, SPOKE_ERR, "not pending") ==
                SPOKE_ERR_INVALID &&
            s->api->sink_record_done(s->inst, bogus) == SPOKE_ERR_INVALID)
            s->api->metric_add(s->inst, "bogus_refused", 1);
        free(bogus);
    }
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
    for (size_t i = 0; i < s->nq; i++)
        free(s->q[i].value);
    free(s->q);
    if (s->out)
        fclose(s->out);
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
