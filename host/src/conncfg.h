/* conncfg - the config tables the host owns: connector keys (Kafka
 * Connect's names), the worker section and topics. */
#ifndef SPOKE_CONNCFG_H
#define SPOKE_CONNCFG_H

#include "spoke/plugin.h"

/* Keys of every connector (host-owned; plugins may not redeclare them). */
extern const struct spoke_config_field conncfg_fields[];
/* Keys of the worker section of connectors.yaml. */
extern const struct spoke_config_field conncfg_worker_fields[];
/* Keys of one topic in the topics section. */
extern const struct spoke_config_field conncfg_topic_fields[];

/* queue.capacity and batch.max when the connector does not set them and
 * the process can use one CPU only (cpubudget.h): every task thread then
 * takes its turn on the same core, and shallower queues keep the records
 * in flight within its cache. */
#define CONNCFG_QUEUE_CAPACITY_ONE_CPU 512
#define CONNCFG_BATCH_MAX_ONE_CPU 256

#endif
