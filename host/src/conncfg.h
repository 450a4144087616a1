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

#endif
