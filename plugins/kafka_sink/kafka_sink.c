/*
 * kafka_sink - produces records to Kafka with librdkafka.
 *
 * Delivery: put() hands each record to the producer (asynchronous, copying
 * key, value and headers). The host acknowledges a record only on its
 * delivery report, so source offsets are committed only for what Kafka has.
 * Pipelined (the default, pending.max.messages > 0): each successful
 * delivery report acknowledges its record at once (sink_record_done), and
 * flush() returns SPOKE_PENDING without waiting while more input waits and
 * fewer than pending.max.messages are unconfirmed, so producing the next
 * batch overlaps the brokers' round trip for the previous ones; with no
 * input waiting it waits for every report. With pending.max.messages = 0,
 * flush() waits for the reports of each whole batch. A
 * record whose delivery fails for good (after librdkafka's own retries, or a
 * permanent error such as a message too large) is reported with
 * sink_record_failed() and takes the connector's error path. While the
 * brokers are unreachable flush() returns SPOKE_RETRY every
 * flush.timeout.ms with the reason, so the status shows `retrying`; the
 * messages stay queued in the producer and go out when the brokers return.
 *
 * Memory is bounded by pending.max.messages plus one host batch (records
 * the host keeps alive until confirmed) and by the producer queue limits
 * set below.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <spoke/plugin.h>

#include "kafkaconf.h"

static const struct spoke_config_field ks_config[] = {
    { .name = "target.topic", .type = SPOKE_CFG_STRING,
      .doc = "Kafka topic to produce to; unset: the record's own topic", .min = 1, .max = 249 },
    { .name = "key.field", .type = SPOKE_CFG_STRING,
      .doc = "Take the message key from this field of the value (a JSON object) instead of "
             "the record key", .min = 1, .max = 256 },
    { .name = "headers.enable", .type = SPOKE_CFG_BOOL, .default_value = "true",
      .doc = "Send the record headers as Kafka headers" },
    { .name = "flush.timeout.ms", .type = SPOKE_CFG_LONG, .default_value = "10000",
      .doc = "How long one flush waits for delivery reports before it reports `retrying` "
             "(and is called again)", .min = 100, .max = 3600000 },
    { .name = "pending.max.messages", .type = SPOKE_CFG_INT, .default_value = "20000",
      .doc = "Most messages awaiting delivery reports while more input waits (pipelining: the "
             "next batch is produced during the brokers' round trip); 0 = wait for each batch",
      .min = 0, .max = 1000000 },
    { .name = "topic.create", .type = SPOKE_CFG_BOOL, .default_value = "false",
      .doc = "At start, create target.topic when it does not exist (Admin API; an existing "
             "topic is left as it is)" },
    { .name = "topic.partitions", .type = SPOKE_CFG_INT, .default_value = "-1",
      .doc = "Partitions of a created topic; -1 = the broker's default", .min = -1,
      .max = 100000 },
    { .name = "topic.replication.factor", .type = SPOKE_CFG_INT, .default_value = "-1",
      .doc = "Replication factor of a created topic; -1 = the broker's default", .min = -1,
      .max = 1000 },
    { .name = "kafka.", .type = SPOKE_CFG_STRING, .flags = SPOKE_CFG_PREFIX,
      .doc = "librdkafka producer properties for this connector, over the worker's kafka.*",
      .allowed = kafkaconf_producer_props },
    { 0 }
};

/* Defaults that differ from librdkafka's: safe delivery and bounded memory. */
static const char *const ks_defaults[] = {
    "enable.idempotence", "true",
    "acks", "all",
    "linger.ms", "5",
    "queue.buffering.max.messages", "200000",
    "queue.buffering.max.kbytes", "32768",
    "compression.type", "none",
    NULL
};

struct ks {
    struct kafkaconf_health h;  /* first: librdkafka's opaque points here */
    const struct spoke_host_api *api;
    struct spoke_instance *inst;
    rd_kafka_t *rk;
    const char *target;
    const char *key_field;
    int headers;
    int64_t flush_timeout_ms;
    int64_t window;             /* pending.max.messages; 0 = not pipelined */
    rd_kafka_topic_t *rkt;      /* cache: the last topic produced to */
    char *rkt_name;
    int64_t inflight;           /* produced, delivery report not yet served */
    int in_batch;               /* records of the current batch may be reported */
    int64_t delivered, failed;  /* since the last flush, for metrics */
    int64_t puts;
    char last_dr_error[256];
    int create;
    int partitions, replication;
    rd_kafka_queue_t *admin_q;  /* pending CreateTopics result, or NULL */
};

static struct ks *ks_of(void *opaque)
{
    return (struct ks *)((char *)opaque - offsetof(struct ks, h));
}

/* Delivery report: served by rd_kafka_poll/flush on the task thread. */
static void ks_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct ks *s = ks_of(opaque);
    s->inflight--;
    if (!m->err) {
        s->delivered++;
        if (s->window && s->in_batch && m->_private)
            s->api->sink_record_done(s->inst, m->_private);
        return;
    }
    s->failed++;
    char why[256];
    snprintf(why, sizeof(why), "kafka delivery to '%s' [%d] failed: %s: %s",
             m->rkt ? rd_kafka_topic_name(m->rkt) : "?", (int)m->partition,
             rd_kafka_err2name(m->err), rd_kafka_err2str(m->err));
    snprintf(s->last_dr_error, sizeof(s->last_dr_error), "%s", why);
    if (s->in_batch && m->_private)
        s->api->sink_record_failed(s->inst, m->_private, SPOKE_ERR_IO, why);
}

/* Rules between keys and inside values that the config table cannot say;
 * the host runs this before init (spoke validate, load, REST), and init
 * runs it again, so they live here only. No side effects: the librdkafka
 * properties are applied to a config that is destroyed (kafkaconf_check). */
static void ks_rules(const struct spoke_host_api *api, const struct spoke_config *cfg,
                     struct problems *pr)
{
    const char *target = api->config_string(cfg, "target.topic");
    problems_init(pr);
    if (target && !kafkaconf_topic_ok(target))
        problem(pr, "target.topic", "target.topic: '%.64s' is not a valid Kafka topic name "
                "([a-zA-Z0-9._-], 1 to 249 characters)", target);
    static const char *const counts[] = { "topic.partitions", "topic.replication.factor", NULL };
    for (size_t i = 0; counts[i]; i++)
        if (api->config_int(cfg, counts[i]) == 0)
            problem(pr, counts[i], "%s: 0 is not a count a topic can have (-1 = the broker's "
                    "default, or 1 and up)", counts[i]);
    if (api->config_bool(cfg, "topic.create") && !target)
        problem(pr, "topic.create", "topic.create needs target.topic");
    if (SPOKE_API_HAS(api, config_prefixed))  /* else init refuses the host */
        kafkaconf_check(api, cfg, ks_defaults, NULL, pr);
}

static int ks_check(const struct spoke_host_api *api, const struct spoke_config *cfg,
                    const char **key, char *errstr, size_t errstr_size)
{
    struct problems pr;
    ks_rules(api, cfg, &pr);
    return problems_report_api(&pr, api, cfg, key, errstr, errstr_size);
}

static int ks_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                   const struct spoke_config *cfg, void **out, char *errstr, size_t errstr_size)
{
    if (!SPOKE_API_HAS(api, worker_config)) {
        snprintf(errstr, errstr_size, "kafka_sink needs a newer host (sink_record_failed, config_prefixed)");
        return SPOKE_ERR_STATE;
    }
    /* The host ran ks_check already; init keeps the rules for itself (the
     * problems joined: check_problem is for check() alone). */
    const char *bad_key;
    struct problems pr;
    ks_rules(api, cfg, &pr);
    int rc = problems_report(&pr, &bad_key, errstr, errstr_size, NULL, NULL);
    if (rc != SPOKE_OK)
        return rc;
    struct ks *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(errstr, errstr_size, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    s->api = api;
    s->inst = inst;
    s->target = api->config_string(cfg, "target.topic");
    s->key_field = api->config_string(cfg, "key.field");
    s->headers = api->config_bool(cfg, "headers.enable");
    s->flush_timeout_ms = api->config_int(cfg, "flush.timeout.ms");
    s->window = SPOKE_API_HAS(api, input_backlog) ? api->config_int(cfg, "pending.max.messages")
                                                  : 0;
    s->create = api->config_bool(cfg, "topic.create");
    s->partitions = (int)api->config_int(cfg, "topic.partitions");
    s->replication = (int)api->config_int(cfg, "topic.replication.factor");
    kafkaconf_health_init(&s->h, api, inst);
    rd_kafka_conf_t *conf = kafkaconf_build(api, inst, cfg, ks_defaults, NULL, &s->h, errstr,
                                            errstr_size);
    if (!conf)
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, ks_on_delivery);
    char why[256];
    s->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (!s->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "cannot create the Kafka producer: %s", why);
        goto fail;
    }
    *out = s;
    return SPOKE_OK;
fail:
    kafkaconf_health_destroy(&s->h);
    free(s);
    return SPOKE_ERR_INVALID;
}

/* topic.create: an asynchronous CreateTopics; start() never waits for the
 * brokers (they may be down), put()/flush() pick the result up. */
static int ks_start(void *st, char *errstr, size_t errstr_size)
{
    struct ks *s = st;
    if (!s->create)
        return SPOKE_OK; /* with topic.create, ks_check saw target.topic set */
    char why[256];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(s->target, s->partitions, s->replication,
                                                    why, sizeof(why));
    if (!nt) {
        snprintf(errstr, errstr_size, "topic.create '%s': %s", s->target, why);
        return SPOKE_ERR_INVALID;
    }
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(s->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(o, 30000, why, sizeof(why));
    s->admin_q = rd_kafka_queue_new(s->rk);
    rd_kafka_CreateTopics(s->rk, &nt, 1, o, s->admin_q);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_NewTopic_destroy(nt);
    return SPOKE_OK;
}

static void ks_admin_result(struct ks *s, int timeout_ms)
{
    if (!s->admin_q)
        return;
    rd_kafka_event_t *ev = rd_kafka_queue_poll(s->admin_q, timeout_ms);
    if (!ev)
        return;
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    size_t n = 0;
    const rd_kafka_topic_result_t **tr = res ? rd_kafka_CreateTopics_result_topics(res, &n) : NULL;
    rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
    const char *msg = rd_kafka_event_error_string(ev);
    if (!err && n == 1) {
        err = rd_kafka_topic_result_error(tr[0]);
        msg = rd_kafka_topic_result_error_string(tr[0]);
    }
    if (!err)
        s->api->log(s->inst, SPOKE_LOG_INFO, "created Kafka topic '%s'", s->target);
    else if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        s->api->log(s->inst, SPOKE_LOG_DEBUG, "Kafka topic '%s' exists", s->target);
    else
        s->api->log(s->inst, SPOKE_LOG_WARN, "cannot create Kafka topic '%s': %s: %s (producing "
                    "relies on the topic existing or on broker auto-creation)", s->target,
                    rd_kafka_err2name(err), msg ? msg : "");
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(s->admin_q);
    s->admin_q = NULL;
}

static rd_kafka_topic_t *ks_topic(struct ks *s, const char *name)
{
    if (s->rkt && strcmp(s->rkt_name, name) == 0)
        return s->rkt;
    rd_kafka_topic_t *t = rd_kafka_topic_new(s->rk, name, NULL);
    char *copy = strdup(name);
    if (!t || !copy) {
        if (t)
            rd_kafka_topic_destroy(t);
        free(copy);
        return NULL;
    }
    if (s->rkt)
        rd_kafka_topic_destroy(s->rkt);
    free(s->rkt_name);
    s->rkt = t;
    s->rkt_name = copy;
    return t;
}

/* The key from key.field: the field's text (strings as they are, numbers
 * and booleans as JSON text). NULL with *klen 0 for a null field. */
static int ks_field_key(struct ks *s, const struct spoke_record *rec, char *tmp, size_t tmpsize,
                        const void **key, size_t *klen, char *errstr, size_t errstr_size)
{
    const struct spoke_host_api *api = s->api;
    const char *why = NULL;
    const struct spoke_row *row = api->record_value_row(rec, &why);
    if (!row) {
        snprintf(errstr, errstr_size, "key.field '%s': the value is not a JSON object (%s)",
                 s->key_field, why ? why : "null");
        return SPOKE_ERR_INVALID;
    }
    int i = api->row_index(row, s->key_field);
    if (i < 0) {
        snprintf(errstr, errstr_size, "key.field '%s': no such field in the value", s->key_field);
        return SPOKE_ERR_NOTFOUND;
    }
    *key = tmp;
    switch (api->row_type(row, (size_t)i)) {
    case SPOKE_TYPE_NULL:
        *key = NULL;
        *klen = 0;
        return SPOKE_OK;
    case SPOKE_TYPE_STRING:
        *key = api->row_get_string(row, (size_t)i, klen);
        return SPOKE_OK;
    case SPOKE_TYPE_INT:
        *klen = (size_t)snprintf(tmp, tmpsize, "%lld", (long long)api->row_get_int(row, (size_t)i));
        return SPOKE_OK;
    case SPOKE_TYPE_TIMESTAMP:
        *klen = (size_t)snprintf(tmp, tmpsize, "%lld",
                                 (long long)api->row_get_timestamp(row, (size_t)i));
        return SPOKE_OK;
    case SPOKE_TYPE_DOUBLE:
        *klen = (size_t)snprintf(tmp, tmpsize, "%.17g", api->row_get_double(row, (size_t)i));
        return SPOKE_OK;
    case SPOKE_TYPE_BOOL:
        *klen = (size_t)snprintf(tmp, tmpsize, "%s",
                                 api->row_get_bool(row, (size_t)i) ? "true" : "false");
        return SPOKE_OK;
    default:
        snprintf(errstr, errstr_size, "key.field '%s' is a list or an object, not a key",
                 s->key_field);
        return SPOKE_ERR_TYPE;
    }
}

static int ks_put(void *st, const struct spoke_record *rec, char *errstr, size_t errstr_size)
{
    struct ks *s = st;
    const struct spoke_host_api *api = s->api;
    s->in_batch = 1;
    const char *topic = s->target ? s->target : api->record_topic(rec);
    rd_kafka_topic_t *rkt = ks_topic(s, topic);
    if (!rkt) {
        snprintf(errstr, errstr_size, "cannot create a producer topic handle for '%s'", topic);
        return SPOKE_ERR_NOMEM;
    }
    char tmp[64];
    const void *key;
    size_t klen;
    if (s->key_field) {
        int rc = ks_field_key(s, rec, tmp, sizeof(tmp), &key, &klen, errstr, errstr_size);
        if (rc != SPOKE_OK)
            return rc;
    } else {
        key = api->record_key(rec, &klen);
    }
    size_t vlen;
    const void *val = api->record_value_bytes(rec, &vlen);
    rd_kafka_headers_t *hdrs = NULL;
    size_t nh = s->headers ? api->record_header_count(rec) : 0;
    if (nh) {
        hdrs = rd_kafka_headers_new(nh);
        for (size_t i = 0; i < nh; i++) {
            const char *name;
            const void *hv;
            size_t hl;
            if (api->record_header_get(rec, i, &name, &hv, &hl) == SPOKE_OK)
                rd_kafka_header_add(hdrs, name, -1, hv, (ssize_t)hl);
        }
    }
    int64_t waited_from = -1;
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            s->rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key, klen), RD_KAFKA_V_VALUE((void *)val, vlen),
            RD_KAFKA_V_TIMESTAMP(api->record_timestamp(rec)), RD_KAFKA_V_HEADERS(hdrs),
            RD_KAFKA_V_OPAQUE((void *)rec), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            s->inflight++;
            break;
        }
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            /* The producer queue is full: serve delivery reports until it
             * drains, for at most flush.timeout.ms. */
            int64_t now = api->mono_ms();
            if (waited_from < 0)
                waited_from = now;
            if (now - waited_from < s->flush_timeout_ms) {
                rd_kafka_poll(s->rk, 50);
                continue;
            }
            err = RD_KAFKA_RESP_ERR__QUEUE_FULL;
        }
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        snprintf(errstr, errstr_size, "kafka produce to '%s': %s", topic, rd_kafka_err2str(err));
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            return SPOKE_RETRY;
        return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
                       err == RD_KAFKA_RESP_ERR__INVALID_ARG
                   ? SPOKE_ERR_INVALID : SPOKE_ERR_IO;
    }
    if ((++s->puts & 1023) == 0)
        rd_kafka_poll(s->rk, 0); /* serve delivery reports as we go */
    return SPOKE_OK;
}

static void ks_publish(struct ks *s)
{
    if (s->delivered)
        s->api->metric_add(s->inst, "delivered", s->delivered);
    if (s->failed)
        s->api->metric_add(s->inst, "failed", s->failed);
    s->api->metric_set(s->inst, "inflight", s->inflight);
    s->delivered = s->failed = 0;
}

static int ks_flush(void *st, char *errstr, size_t errstr_size)
{
    struct ks *s = st;
    const struct spoke_host_api *api = s->api;
    ks_admin_result(s, 0);
    int64_t deadline = api->mono_ms() + s->flush_timeout_ms;
    if (s->window && s->inflight > 0 && api->input_backlog(s->inst) > 0) {
        /* More input waits: go on producing unless the window is full; then
         * wait only for some reports. */
        rd_kafka_poll(s->rk, 0);
        while (s->inflight >= s->window && !s->h.fatal) {
            int64_t left = deadline - api->mono_ms();
            if (left <= 0)
                break;
            rd_kafka_poll(s->rk, (int)(left < 200 ? left : 200));
        }
        if (s->inflight > 0 && s->inflight < s->window && !rd_kafka_fatal_error(s->rk, NULL, 0)) {
            ks_publish(s);
            return SPOKE_PENDING;
        }
    }
    while (s->inflight > 0) {
        int64_t left = deadline - api->mono_ms();
        if (left <= 0)
            break;
        rd_kafka_flush(s->rk, (int)(left < 200 ? left : 200));
        if (s->h.fatal)
            break;
    }
    char fatal[256];
    if (rd_kafka_fatal_error(s->rk, fatal, sizeof(fatal))) {
        ks_publish(s);
        snprintf(errstr, errstr_size, "kafka producer fatal error: %s", fatal);
        return SPOKE_ERR_IO;
    }
    ks_publish(s);
    if (s->inflight > 0) {
        char cond[256];
        int down = kafkaconf_health_get(&s->h, cond, sizeof(cond));
        snprintf(errstr, errstr_size, "%lld messages awaiting delivery%s%s",
                 (long long)s->inflight, cond[0] ? (down ? ", brokers down: " : ": ") : "",
                 cond);
        return SPOKE_RETRY;
    }
    kafkaconf_health_clear(&s->h);
    s->in_batch = 0;
    return SPOKE_OK;
}

static void ks_destroy(void *st)
{
    struct ks *s = st;
    s->in_batch = 0; /* no batch any more: late reports name nothing */
    if (s->admin_q)
        rd_kafka_queue_destroy(s->admin_q);
    if (s->rkt)
        rd_kafka_topic_destroy(s->rkt);
    free(s->rkt_name);
    if (s->inflight > 0)
        s->api->log(s->inst, SPOKE_LOG_WARN,
                    "%lld messages not confirmed at shutdown: they were not acknowledged and "
                    "are replayed from the source", (long long)s->inflight);
    rd_kafka_purge(s->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(s->rk, 1000);
    rd_kafka_destroy(s->rk);
    kafkaconf_health_destroy(&s->h);
    free(s);
}

static const struct spoke_plugin kafka_sink = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "kafka_sink",
    .kind        = SPOKE_KIND_SINK,
    .version     = "0.1.0",
    .description = "Produces records to Kafka (librdkafka, idempotent, acknowledged on delivery)",
    .config      = ks_config,
    .init        = ks_init,
    .start       = ks_start,
    .put         = ks_put,
    .flush       = ks_flush,
    .destroy     = ks_destroy,
    .check       = ks_check,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &kafka_sink; }
