/* kafkaconf - see kafkaconf.h. */
#include "kafkaconf.h"

#include <stdio.h>
#include <string.h>

/* Properties a connector config (and REST) may set: connection, security
 * credentials given inline, batching, timeouts. Nothing that loads code or
 * files, runs a command, or changes the plugin's delivery semantics. Each
 * list is an X macro, expanded twice: into the allow-lists (property
 * names) and into the connector keys ("kafka.<property>") that
 * kafkaconf_check names, which must live as long as the plugin. */
#define KAFKACONF_COMMON_PROPS(X)                                                            \
    X("bootstrap.servers") X("client.id") X("client.rack") X("security.protocol")            \
    X("sasl.mechanism") X("sasl.mechanisms") X("sasl.username") X("sasl.password")           \
    X("ssl.ca.pem") X("ssl.certificate.pem") X("ssl.key.pem") X("ssl.key.password")          \
    X("ssl.endpoint.identification.algorithm") X("enable.ssl.certificate.verification")      \
    X("socket.timeout.ms") X("socket.keepalive.enable")                                      \
    X("socket.connection.setup.timeout.ms") X("connections.max.idle.ms")                     \
    X("reconnect.backoff.ms") X("reconnect.backoff.max.ms") X("retry.backoff.ms")            \
    X("retry.backoff.max.ms") X("metadata.max.age.ms")                                       \
    X("topic.metadata.refresh.interval.ms") X("broker.address.family")                       \
    X("api.version.request") X("allow.auto.create.topics") X("debug")                        \
    X("message.max.bytes") X("receive.message.max.bytes")

#define KAFKACONF_PRODUCER_PROPS(X)                                                          \
    X("acks") X("request.required.acks") X("enable.idempotence") X("linger.ms")              \
    X("queue.buffering.max.ms") X("batch.num.messages") X("batch.size")                      \
    X("compression.type") X("compression.codec") X("compression.level")                      \
    X("queue.buffering.max.messages") X("queue.buffering.max.kbytes")                        \
    X("message.timeout.ms") X("delivery.timeout.ms") X("request.timeout.ms")                 \
    X("message.send.max.retries") X("retries") X("max.in.flight.requests.per.connection")    \
    X("max.in.flight") X("partitioner") X("sticky.partitioning.linger.ms")

#define KAFKACONF_CONSUMER_PROPS(X)                                                          \
    X("group.instance.id") X("session.timeout.ms") X("heartbeat.interval.ms")                \
    X("max.poll.interval.ms") X("auto.offset.reset") X("fetch.min.bytes")                    \
    X("fetch.max.bytes") X("fetch.wait.max.ms") X("fetch.error.backoff.ms")                  \
    X("max.partition.fetch.bytes") X("fetch.message.max.bytes") X("queued.min.messages")     \
    X("queued.max.messages.kbytes") X("partition.assignment.strategy") X("isolation.level")  \
    X("check.crcs") X("coordinator.query.interval.ms")

#define KAFKACONF_PROP(p) p,
#define KAFKACONF_KEY(p) "kafka." p,

const char *const kafkaconf_producer_props[] = {
    KAFKACONF_COMMON_PROPS(KAFKACONF_PROP) KAFKACONF_PRODUCER_PROPS(KAFKACONF_PROP) NULL
};

const char *const kafkaconf_consumer_props[] = {
    KAFKACONF_COMMON_PROPS(KAFKACONF_PROP) KAFKACONF_CONSUMER_PROPS(KAFKACONF_PROP) NULL
};

/* The same lists as connector keys, index for index. */
static const char *const producer_keys[] = {
    KAFKACONF_COMMON_PROPS(KAFKACONF_KEY) KAFKACONF_PRODUCER_PROPS(KAFKACONF_KEY) NULL
};

static const char *const consumer_keys[] = {
    KAFKACONF_COMMON_PROPS(KAFKACONF_KEY) KAFKACONF_CONSUMER_PROPS(KAFKACONF_KEY) NULL
};

_Static_assert(sizeof(producer_keys) == sizeof(kafkaconf_producer_props), "parallel lists");
_Static_assert(sizeof(consumer_keys) == sizeof(kafkaconf_consumer_props), "parallel lists");

/* The static connector key "kafka.<prop>" of an allow-listed property, or
 * NULL (the host refuses the others in connector configs). */
static const char *connector_key(const char *prop)
{
    for (size_t i = 0; kafkaconf_producer_props[i]; i++)
        if (strcmp(kafkaconf_producer_props[i], prop) == 0)
            return producer_keys[i];
    for (size_t i = 0; kafkaconf_consumer_props[i]; i++)
        if (strcmp(kafkaconf_consumer_props[i], prop) == 0)
            return consumer_keys[i];
    return NULL;
}

int kafkaconf_topic_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 249)
        return 0;
    for (const char *c = t; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '.' || *c == '_' || *c == '-'))
            return 0;
    return 1;
}

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

/* Sets k = v in conf; on failure the reason goes to pr (at key, which may
 * be NULL) when pr is not NULL, else to errstr. */
static int set(rd_kafka_conf_t *conf, const char *k, const char *v, const char *layer,
               struct problems *pr, const char *key, char *errstr, size_t errstr_size)
{
    char why[256];
    if (rd_kafka_conf_set(conf, k, v, why, sizeof(why)) == RD_KAFKA_CONF_OK)
        return 0;
    if (pr)
        problem(pr, key, "librdkafka property '%s' (%s): %s", k, layer, why);
    else
        snprintf(errstr, errstr_size, "librdkafka property '%s' (%s): %s", k, layer, why);
    return -1;
}

/*
 * Applies the layers to conf: defaults, the worker's kafka.* (wc may be
 * NULL), the connector's kafka.*, forced. On error, *bad is the connector
 * property at fault (borrowed from cfg) or NULL when it is in another layer.
 * With pr, every connector property refused is a problem at its key, the
 * layers go on past them, and errstr is not used.
 */
static int apply_layers(rd_kafka_conf_t *conf, const struct spoke_host_api *api,
                        const struct spoke_config *wc, const struct spoke_config *cfg,
                        const char *const *defaults, const char *const *forced,
                        struct problems *pr, const char **bad, char *errstr, size_t errstr_size)
{
    const char *name, *value;
    int failed = 0;
    *bad = NULL;
    for (size_t i = 0; defaults && defaults[i]; i += 2)
        if (set(conf, defaults[i], defaults[i + 1], "plugin default", pr, NULL, errstr,
                errstr_size))
            return -1;
    for (size_t i = 0, n = wc ? api->config_prefixed(wc, "kafka.", 0, NULL, NULL) : 0; i < n;
         i++) {
        api->config_prefixed(wc, "kafka.", i, &name, &value);
        if (set(conf, name, value, "worker kafka.*", pr, NULL, errstr, errstr_size))
            return -1;
    }
    for (size_t i = 0, n = api->config_prefixed(cfg, "kafka.", 0, NULL, NULL); i < n; i++) {
        api->config_prefixed(cfg, "kafka.", i, &name, &value);
        if (set(conf, name, value, "connector kafka.*", pr, connector_key(name), errstr,
                errstr_size)) {
            *bad = name;
            if (!pr)
                return -1;
            failed = 1;
        }
    }
    if (failed)
        return -1;
    for (size_t i = 0; forced && forced[i]; i += 2)
        if (set(conf, forced[i], forced[i + 1], "required by the plugin", pr, NULL, errstr,
                errstr_size))
            return -1;
    return 0;
}

int kafkaconf_check(const struct spoke_host_api *api, const struct spoke_config *cfg,
                    const char *const *defaults, const char *const *forced,
                    struct problems *pr)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *bad;
    int rc = apply_layers(conf, api, NULL, cfg, defaults, forced, pr, &bad, NULL, 0);
    rd_kafka_conf_destroy(conf);
    return rc;
}

rd_kafka_conf_t *kafkaconf_build(const struct spoke_host_api *api, struct spoke_instance *inst,
                                 const struct spoke_config *cfg, const char *const *defaults,
                                 const char *const *forced, struct kafkaconf_health *h,
                                 char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const struct spoke_config *wc = SPOKE_API_HAS(api, worker_config) ? api->worker_config(inst)
                                                                       : NULL;
    const char *bad;
    if (apply_layers(conf, api, wc, cfg, defaults, forced, NULL, &bad, errstr, errstr_size))
        goto fail;
    /* Not in kafkaconf_check: the worker section may name the brokers. */
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
