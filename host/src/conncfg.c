#include "conncfg.h"

#include <stddef.h>

static const char *const tolerance_values[] = { "none", "all", NULL };

const struct spoke_config_field conncfg_fields[] = {
    { "connector.class", SPOKE_CFG_STRING, NULL, SPOKE_CFG_REQUIRED,
      "Plugin that runs this connector (a name from `spoke plugins`)", .min = 1, .max = 64 },
    { "topics", SPOKE_CFG_LIST, NULL, 0,
      "Topics this connector reads (transforms and sinks)", .max = 1024 },
    { "topics.regex", SPOKE_CFG_STRING, NULL, 0,
      "POSIX extended regex of topics to read, instead of `topics`", .max = 1024 },
    { "topic", SPOKE_CFG_STRING, NULL, 0,
      "Topic this connector writes (sources and transforms)", .min = 1, .max = 249 },
    { "tasks.max", SPOKE_CFG_INT, "1", 0,
      "Number of tasks; one task per connector is supported", .min = 1, .max = 1 },
    { "errors.tolerance", SPOKE_CFG_STRING, "none", 0,
      "none: a failing record fails the connector; all: skip it (logged, counted, dead-lettered)",
      .allowed = tolerance_values },
    { "errors.deadletterqueue.topic.name", SPOKE_CFG_STRING, NULL, 0,
      "Topic that receives records that failed, with error headers", .min = 1, .max = 249 },
    { "errors.log.enable", SPOKE_CFG_BOOL, "true", 0,
      "Log every record that takes the error path" },
    { "errors.retry.timeout", SPOKE_CFG_LONG, "0", 0,
      "How long (ms) to retry a SPOKE_RETRY before failing; 0 = no retries, -1 = forever",
      .min = -1, .max = 86400000 },
    { "errors.retry.delay.max.ms", SPOKE_CFG_LONG, "60000", 0,
      "Upper bound (ms) of the exponential backoff between retries", .min = 1, .max = 86400000 },
    { "queue.capacity", SPOKE_CFG_INT, "4096", 0,
      "Records buffered for this connector before its producers block", .min = 1, .max = 1048576 },
    { "batch.max", SPOKE_CFG_INT, "1024", 0,
      "Most records handed to a transform or sink per wake-up (sinks flush per batch)",
      .min = 1, .max = 1048576 },
    { "snapshot.interval.ms", SPOKE_CFG_LONG, "1000", 0,
      "Stateful transforms: how often state is snapshotted", .min = 10, .max = 86400000 },
    { 0 }
};
