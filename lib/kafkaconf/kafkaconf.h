/* kafkaconf - librdkafka configuration for the Kafka plugins.
 *
 * A connector's librdkafka properties come from three layers, later ones
 * winning: the plugin's defaults, the worker section's `kafka.*` keys (any
 * property: the file is trusted) and the connector's own `kafka.*` keys
 * (only the allow-listed properties below; the host refuses the rest,
 * REST included). The plugin's own settings (e.g. enable.auto.commit=false
 * for the consumer) are applied last and cannot be overridden.
 */
#ifndef SPOKE_KAFKACONF_H
#define SPOKE_KAFKACONF_H

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stddef.h>

#include <spoke/plugin.h>

#include "problems.h"

/* Allow-lists of connector-level properties (NULL-terminated), for the
 * `kafka.` SPOKE_CFG_PREFIX field of each plugin. */
extern const char *const kafkaconf_producer_props[];
extern const char *const kafkaconf_consumer_props[];

/* Broker condition seen through librdkafka's error and log callbacks, for
 * status traces ("all brokers down: ..."). */
struct kafkaconf_health {
    pthread_mutex_t lock;
    char last_error[256];   /* "" = none since the last clear */
    int all_down;           /* RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN seen, not yet recovered */
    int fatal;              /* a fatal error (e.g. idempotence): the client must be recreated */
    const struct spoke_host_api *api;
    struct spoke_instance *inst;
};

void kafkaconf_health_init(struct kafkaconf_health *h, const struct spoke_host_api *api,
                           struct spoke_instance *inst);
void kafkaconf_health_destroy(struct kafkaconf_health *h);
/* Copies the condition into out ("" when healthy); returns all_down. */
int kafkaconf_health_get(struct kafkaconf_health *h, char *out, size_t outsize);
/* Forgets the last error (e.g. after messages were delivered again). */
void kafkaconf_health_clear(struct kafkaconf_health *h);

/*
 * Builds a librdkafka config: defaults (k, v pairs, NULL-terminated), the
 * worker's kafka.* properties, the connector's kafka.* properties, then
 * forced (k, v pairs that the plugin's semantics depend on). Installs log
 * and error callbacks that report into h (h must outlive the client).
 * Returns NULL with a message naming the property on error.
 */
rd_kafka_conf_t *kafkaconf_build(const struct spoke_host_api *api, struct spoke_instance *inst,
                                 const struct spoke_config *cfg, const char *const *defaults,
                                 const char *const *forced, struct kafkaconf_health *h,
                                 char *errstr, size_t errstr_size);

/*
 * For a plugin's check entry (no instance): applies defaults, the
 * connector's kafka.* properties and forced, as kafkaconf_build does, to a
 * fresh librdkafka config and destroys it, so a bad value (or a property
 * this librdkafka does not know) is refused before the connector runs.
 * Without side effects: rd_kafka_conf_set only parses the allow-listed
 * properties (none names a file or loads code; the host refuses those in
 * connector configs before any check). The worker's kafka.* layer is not
 * seen, so what it may provide (the broker list) is left to
 * kafkaconf_build. Needs api->config_prefixed.
 * Returns 0, or -1 with the problems in pr (the messages kafkaconf_build
 * gives): each connector property refused at its key ("kafka.<property>"),
 * a fault in another layer without a key.
 */
int kafkaconf_check(const struct spoke_host_api *api, const struct spoke_config *cfg,
                    const char *const *defaults, const char *const *forced,
                    struct problems *pr);

/* Kafka's legal topic names: [a-zA-Z0-9._-]{1,249}. */
int kafkaconf_topic_ok(const char *t);

#endif
