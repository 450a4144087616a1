/* conncfg - the connector keys the host owns (Kafka Connect's names).
 * Plugins may not redeclare them. */
#ifndef SPOKE_CONNCFG_H
#define SPOKE_CONNCFG_H

#include "spoke/plugin.h"

extern const struct spoke_config_field conncfg_fields[];

#endif
