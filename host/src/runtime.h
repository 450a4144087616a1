/* runtime - the worker: loads connectors.yaml, runs one thread per connector
 * task, drains on shutdown, reloads as a diff, keeps offsets and status.
 *
 * State directory layout (state.dir):
 *   offsets.json           committed source positions { connector: { partition: offset } }
 *   snapshots/<name>.snap  stateful transform snapshots
 *   status.json            connector states, traces and counters (rewritten atomically
 *                          every status.interval.ms and on every state change)
 */
#ifndef SPOKE_RUNTIME_H
#define SPOKE_RUNTIME_H

#include <stddef.h>

#include "buf.h"
#include "registry.h"
#include "yamlcfg.h"

struct runtime;

/* Command-line overrides of the worker section (NULL / -1 = keep). */
struct runtime_opts {
    const char *config_path;
    const char *state_dir;
    const char *const *plugin_dirs;  /* appended to plugin.path */
    size_t nplugin_dirs;
    int log_level;
    const char *listen;              /* overrides the worker's `listeners` (--listen) */
};

/* Worker settings after validation. */
struct worker_settings {
    char **plugin_path;
    size_t npath;
    char *state_dir;
    char *listeners;
    int log_level;
    long long shutdown_timeout_ms;
    long long offset_flush_ms;
    long long status_interval_ms;
    int rest_enable;
    char *rest_token_file;
    char **rest_hosts;
    size_t nrest_hosts;
    unsigned rest_max_connections;
    unsigned rest_timeout_ms;
    int rest_threads_set;  /* rest.threads given: ignored, and said so */
    size_t rest_max_body;
    int tasks_batch;              /* task threads run SCHED_BATCH (tasks.scheduling) */
    struct spoke_config *wcfg;    /* the validated section (plugins: api worker_config) */
};
void worker_settings_free(struct worker_settings *ws);

/*
 * Validates a parsed file completely: worker keys, topics, every connector's
 * keys against the host table and its plugin's table (scanning the plugin
 * path first), kinds and topic wiring. Appends one positioned line per error
 * to errs. Returns the number of errors (0 = valid). ws may be NULL.
 */
size_t runtime_check(const struct cfg_file *f, const struct runtime_opts *opts,
                     struct registry *reg, struct worker_settings *ws, struct buf *errs);

/* Loads, validates and starts every connector. NULL with the reasons in errs
 * when the file is invalid or the state dir unusable. */
struct runtime *runtime_start(const struct runtime_opts *opts, struct buf *errs);

/* The worker settings in force (valid until runtime_shutdown). */
const struct worker_settings *runtime_worker(struct runtime *rt);

/* Re-reads the config file; on any error refuses it (logged) and keeps the
 * running config. Only connectors whose config changed restart. 0 or -1. */
int runtime_reload(struct runtime *rt);

/* Stops sources, drains everything in flight through the sinks, snapshots,
 * commits offsets; forced after shutdown.timeout.ms. Then frees rt. */
void runtime_shutdown(struct runtime *rt);

#endif
