#include "conncfg.h"

#include "cfgval.h"

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
      "Log the records that take the error path (errors.log.max.per.second of them one by "
      "one, the rest summed up)" },
    { "errors.log.max.per.second", SPOKE_CFG_INT, "10", 0,
      "errors.log.enable: most failed records logged one by one per second; the others are "
      "summed up in one line once the second is over; 0 = log every one", .min = 0,
      .max = 1000000 },
    { "errors.retry.timeout", SPOKE_CFG_LONG, "-1", 0,
      "How long (ms) a transient failure (SPOKE_RETRY) is retried before it counts as an "
      "error; -1 = forever (the status shows `retrying`), 0 = no retries",
      .min = -1, .max = 86400000 },
    { "errors.retry.delay.max.ms", SPOKE_CFG_LONG, "60000", 0,
      "Upper bound (ms) of the exponential backoff between retries", .min = 1, .max = 86400000 },
    { "queue.capacity", SPOKE_CFG_INT, "4096", 0,
      "Records buffered for this connector before its producers block (default 512 when the "
      "process can use one CPU only: affinity mask or cgroup quota)", .min = 1, .max = 1048576 },
    { "batch.max", SPOKE_CFG_INT, "1024", 0,
      "Most records handed to a transform or sink per wake-up (sinks flush per batch; default "
      "256 when the process can use one CPU only)",
      .min = 1, .max = 1048576 },
    { "snapshot.interval.ms", SPOKE_CFG_LONG, "1000", 0,
      "Stateful transforms: how often state is snapshotted", .min = 10, .max = 86400000 },
    { "restart.max.retries", SPOKE_CFG_INT, "0", 0,
      "Automatic restarts of a FAILED connector before it stays FAILED; 0 = off (as in Kafka "
      "Connect), -1 = forever", .min = -1, .max = 1000000 },
    { "restart.backoff.ms", SPOKE_CFG_LONG, "1000", 0,
      "Delay before the first automatic restart; doubles each time, with +-20% jitter",
      .min = 10, .max = 86400000 },
    { "restart.backoff.max.ms", SPOKE_CFG_LONG, "60000", 0,
      "Longest delay between automatic restarts; a connector RUNNING this long counts as "
      "healthy again", .min = 10, .max = 86400000 },
    { 0 }
};

static const char *const level_values[] = { "error", "warn", "info", "debug", "trace", NULL };
static const char *const backend_values[] = { "memory", "kafka", NULL };
static const char *const scheduling_values[] = { "auto", "batch", "normal", NULL };

const struct spoke_config_field conncfg_worker_fields[] = {
    { "plugin.path", SPOKE_CFG_LIST, "build/plugins", 0,
      "Directories searched for plugin .so files", .max = 64 },
    { "state.dir", SPOKE_CFG_STRING, "state", 0,
      "Directory for offsets, snapshots and status.json", .min = 1, .max = 4000 },
    { "log.level", SPOKE_CFG_STRING, "info", 0, "Log level", .allowed = level_values },
    { "listeners", SPOKE_CFG_STRING, "http://127.0.0.1:8083", 0,
      "Address the REST API listens on (a non-loopback address needs rest.token.file)",
      .min = 1, .max = 256 },
    { "rest.enable", SPOKE_CFG_BOOL, "true", 0, "Serve the REST API" },
    { "rest.token.file", SPOKE_CFG_STRING, NULL, 0,
      "File (mode 0600) holding the bearer token every mutating REST call must present",
      .min = 1, .max = 4000 },
    { "rest.hosts.allowed", SPOKE_CFG_LIST, NULL, 0,
      "Host header values accepted besides localhost, the loopback addresses and the listen "
      "address", .max = 64 },
    { "rest.max.connections", SPOKE_CFG_INT, "64", 0,
      "Concurrent REST connections", .min = 1, .max = 10000 },
    { "rest.connection.timeout.ms", SPOKE_CFG_LONG, "30000", 0,
      "Idle REST connections are closed after this long", .min = 100, .max = 3600000 },
    { "rest.threads", SPOKE_CFG_INT, "2", 0,
      "Ignored (a warning says so): each REST connection has a thread of its own, so a call "
      "that waits, such as a stop draining a source, holds up no other; kept so that "
      "configurations that set it still load", .min = 1, .max = 64 },
    { "rest.max.body.bytes", SPOKE_CFG_LONG, "1048576", 0,
      "Largest REST request body; larger ones are answered 413", .min = 1024, .max = 67108864 },
    { "shutdown.timeout.ms", SPOKE_CFG_LONG, "10000", 0,
      "How long a shutdown may drain before in-flight records are abandoned", .min = 100,
      .max = 3600000 },
    { "offset.flush.interval.ms", SPOKE_CFG_LONG, "1000", 0,
      "How often committed source offsets are written to state.dir", .min = 10, .max = 3600000 },
    { "kafka.", SPOKE_CFG_STRING, NULL, SPOKE_CFG_PREFIX | CFGVAL_TRUSTED,
      "librdkafka properties shared by every Kafka connector and Kafka-backed topic, e.g. "
      "`kafka.bootstrap.servers`; any property, including the ones refused in connector "
      "configs (`*.location`, `plugin.library.paths`, ...)" },
    { "status.interval.ms", SPOKE_CFG_LONG, "1000", 0,
      "How often status.json is rewritten (and on every state change)", .min = 10,
      .max = 3600000 },
    { "idle.unmap.after.ms", SPOKE_CFG_LONG, "5000", 0,
      "Once no task has been busy for this long, unmap the resident read-only pages of the "
      "executable, libraries and plugins (they stay in the page cache; work that resumes "
      "faults back what it needs); 0 = never", .min = 0, .max = 86400000 },
    { "tasks.scheduling", SPOKE_CFG_STRING, "auto", 0,
      "Kernel scheduling of the connectors' task threads: batch (SCHED_BATCH: a task woken "
      "by a record does not preempt the one running, so a CPU switches between connectors "
      "less often: more records/s, later hand-offs while every CPU is busy), normal "
      "(SCHED_OTHER), auto: batch when the process can use one CPU only (as queue.capacity); "
      "REST and housekeeping threads stay normal", .allowed = scheduling_values },
    { 0 }
};

const struct spoke_config_field conncfg_topic_fields[] = {
    { "backend", SPOKE_CFG_STRING, "memory", 0,
      "Where the topic lives: memory (bounded in-process queues) or kafka (a Kafka topic of "
      "the same name: writers produce to it, each reader consumes it in its own group)",
      .allowed = backend_values },
    { "partitions", SPOKE_CFG_INT, "-1", 0,
      "kafka: partitions when the topic is created; -1 = the broker's default", .min = -1,
      .max = 100000 },
    { "replication.factor", SPOKE_CFG_INT, "-1", 0,
      "kafka: replication factor when the topic is created; -1 = the broker's default",
      .min = -1, .max = 1000 },
    { "create", SPOKE_CFG_BOOL, "true", 0,
      "kafka: create the topic at start when it does not exist" },
    { 0 }
};
