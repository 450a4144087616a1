/* kafkaconf - see kafkaconf.h. */
#include "kafkaconf.h"

#include <stdio.h>
#include <string.h>

/* Properties a connector config (and REST) may set: connection, security
 * credentials given inline, batching, timeouts. Nothing that loads code or
 * files, runs a command, or changes the plugin's delivery semantics. */
#define KAFKACONF_COMMON_PROPS                                                               \
    "bootstrap.servers", "client.id", "client.rack", "security.protocol", "sasl.mechanism",  \
        "sasl.mechanisms", "sasl.username", "sasl.password", "ssl.ca.pem",                   \
        "ssl.certificate.pem", "ssl.key.pem", "ssl.key.password",                            \
        "ssl.endpoint.identification.algorithm", "enable.ssl.certificate.verification",      \
        "socket.timeout.ms", "socket.keepalive.enable", "socket.connection.setup.timeout.ms", \
        "connections.max.idle.ms", "reconnect.backoff.ms", "reconnect.backoff.max.ms",       \
        "retry.backoff.ms", "retry.backoff.max.ms", "metadata.max.age.ms",                   \
        "topic.metadata.refresh.interval.ms", "broker.address.family", "api.version.request", \
        "allow.auto.create.topics", "debug", "message.max.bytes", "receive.message.max.bytes"

const char *const kafkaconf_producer_props[] = {
    KAFKACONF_COMMON_PROPS,
    "acks", "request.required.acks", "enable.idempotence", "linger.ms",
    "queue.buffering.max.ms", "batch.num.messages", "batch.size", "compression.type",
    "compression.codec", "compression.level", "queue.buffering.max.messages",
    "queue.buffering.max.kbytes", "message.timeout.ms", "delivery.timeout.ms",
    "request.timeout.ms", "message.send.max.retries", "retries",
    "max.in.flight.requests.per.connection", "max.in.flight", "partitioner",
    "sticky.partitioning.linger.ms", NULL
};

const char *const kafkaconf_consumer_props[] = {
    KAFKACONF_COMMON_PROPS,
    "group.instance.id", "session.timeout.ms", "heartbeat.interval.ms", "max.poll.interval.ms",
    "auto.offset.reset", "fetch.min.bytes", "fetch.max.bytes", "fetch.wait.max.ms",
    "fetch.error.backoff.ms", "max.partition.fetch.bytes", "fetch.message.max.bytes",
    "queued.min.messages", "queued.max.messages.kbytes", "partition.assignment.strategy",
    "isolation.level", "check.crcs", "coordinator.query.interval.ms", NULL
};

void kafkaconf_health_init(struct kafkaconf_health *h, const struct spoke_host_api *api,
                           struct spoke_instance *inst)
{
    memset(h, 0, sizeof(*h));
    pthread_mutex_init(&h->lock, NULL);
    h->api = api;
    h->inst = inst;
}

void kafkaconf_health_destroy(struct kafkaconf_health *h)
{
    pthread_mutex_destroy(&h->lock);
}

int kafkaconf_health_get(struct kafkaconf_health *h, char *out, size_t outsize)
{
    pthread_mutex_lock(&h->lock);
    snprintf(out, outsize, "%s", h->last_error);
    int down = h->all_down;
    pthread_mutex_unlock(&h->lock);
    return down;
}

void kafkaconf_health_clear(struct kafkaconf_health *h)
{
    pthread_mutex_lock(&h->lock);
    h->last_error[0] = '\0';
    h->all_down = 0;
    pthread_mutex_unlock(&h->lock);
}

/* librdkafka's error callback: client-level errors (brokers down, fatal
 * idempotence errors). Runs on the thread that polls the client. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct kafkaconf_health *h = opaque;
    int fatal = 0;
    char fbuf[200] = "";
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        fatal = 1;
        rd_kafka_fatal_error(rk, fbuf, sizeof(fbuf));
    }
    pthread_mutex_lock(&h->lock);
    snprintf(h->last_error, sizeof(h->last_error), "%s: %s",
             rd_kafka_err2name((rd_kafka_resp_err_t)err), fatal ? fbuf : reason);
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        h->all_down = 1;
    if (fatal)
        h->fatal = 1;
    pthread_mutex_unlock(&h->lock);
    h->api->log(h->inst, fatal ? SPOKE_LOG_ERROR : SPOKE_LOG_WARN, "kafka: %s: %s",
                rd_kafka_err2name((rd_kafka_resp_err_t)err), fatal ? fbuf : reason);
}

/* librdkafka's log lines, at their syslog level mapped to ours. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    struct kafkaconf_health *h = rd_kafka_opaque(rk);
    if (strcmp(fac, "FAIL") == 0 || strcmp(fac, "ERROR") == 0)
        return; /* the same failure reaches on_error, which logs it once */
    enum spoke_log_level l = level <= 3 ? SPOKE_LOG_ERROR : level == 4 ? SPOKE_LOG_WARN
                             : level <= 6 ? SPOKE_LOG_INFO : SPOKE_LOG_DEBUG;
    if (h)
        h->api->log(h->inst, l, "kafka %s: %s", fac, buf);
}

static int set(rd_kafka_conf_t *conf, const char *k, const char *v, const char *layer,
               char *errstr, size_t errstr_size)
{
    char why[256];
    if (rd_kafka_conf_set(conf, k, v, why, sizeof(why)) == RD_KAFKA_CONF_OK)
        return 0;
    snprintf(errstr, errstr_size, "librdkafka property '%s' (%s): %s", k, layer, why);
    return -1;
}

rd_kafka_conf_t *kafkaconf_build(const struct spoke_host_api *api, struct spoke_instance *inst,
                                 const struct spoke_config *cfg, const char *const *defaults,
                                 const char *const *forced, struct kafkaconf_health *h,
                                 char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *name, *value;
    for (size_t i = 0; defaults && defaults[i]; i += 2)
        if (set(conf, defaults[i], defaults[i + 1], "plugin default", errstr, errstr_size))
            goto fail;
    const struct spoke_config *wc = SPOKE_API_HAS(api, worker_config) ? api->worker_config(inst)
                                                                       : NULL;
    for (size_t i = 0, n = wc ? api->config_prefixed(wc, "kafka.", 0, NULL, NULL) : 0; i < n;
         i++) {
        api->config_prefixed(wc, "kafka.", i, &name, &value);
        if (set(conf, name, value, "worker kafka.*", errstr, errstr_size))
            goto fail;
    }
    for (size_t i = 0, n = api->config_prefixed(cfg, "kafka.", 0, NULL, NULL); i < n; i++) {
        api->config_prefixed(cfg, "kafka.", i, &name, &value);
        if (set(conf, name, value, "connector kafka.*", errstr, errstr_size))
            goto fail;
    }
    for (size_t i = 0; forced && forced[i]; i += 2)
        if (set(conf, forced[i], forced[i + 1], "required by the plugin", errstr, errstr_size))
            goto fail;
    size_t bsn = 0;
    if (rd_kafka_conf_get(conf, "bootstrap.servers", NULL, &bsn) != RD_KAFKA_CONF_OK || bsn <= 1) {
        snprintf(errstr, errstr_size, "no Kafka brokers: set kafka.bootstrap.servers in the "
                 "worker section or in the connector");
        goto fail;
    }
    rd_kafka_conf_set_opaque(conf, h);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}
