/* ctl - what the REST API (and nothing else from outside) may ask of the
 * runtime. Every function is thread-safe and returns Kafka Connect 3.9's JSON
 * shapes, so rest.c only routes, checks input and serializes.
 *
 * Errors: functions that can fail fill a struct ctl_err with the HTTP status
 * to answer (400, 404, 409, 500, 503) and Connect's message text, and return
 * NULL (for json_t * results) or -1. A json_t * result is a new reference
 * the caller must json_decref.
 *
 * Connector configs are JSON objects whose values are all strings (Connect's
 * REST convention); list values are comma-separated. Values of secret keys
 * (PASSWORD type or SECRET flag) are shown as "********" in every result.
 * REST never loads code: connector.class can only name a plugin already
 * discovered in plugin.path.
 */
#ifndef SPOKE_CTL_H
#define SPOKE_CTL_H

#include <jansson.h>

#include "buf.h"

struct runtime;

struct ctl_err {
    int code;            /* HTTP status */
    char msg[1024];
};

/* The mask shown instead of a secret value. */
#define CTL_SECRET_MASK "********"

/* ---- worker ---- */

/* {"version": "...", "commit": "...", "kafka_cluster_id": "..."} */
json_t *ctl_root(struct runtime *rt);
/* 1 once every connector of the config has been started (GET /health 200),
 * 0 while starting (503). */
int ctl_ready(struct runtime *rt);

/* ---- connectors ---- */

/* ["a", "b"] sorted; with expand_status / expand_info:
 * {"a": {"status": {...}, "info": {...}}} */
json_t *ctl_connectors(struct runtime *rt, int expand_status, int expand_info);

/* {"name", "config": {masked}, "tasks": [{"connector", "task"}], "type"} */
json_t *ctl_info(struct runtime *rt, const char *name, struct ctl_err *e);
/* {masked config} */
json_t *ctl_config(struct runtime *rt, const char *name, struct ctl_err *e);
/* {"name", "connector": {"state", "worker_id"[, "trace"]}, "tasks": [{"id",
 * "state", "worker_id"[, "trace"]}], "type"} */
json_t *ctl_status(struct runtime *rt, const char *name, struct ctl_err *e);
/* [{"id": {"connector", "task"}, "config": {masked}}] */
json_t *ctl_tasks(struct runtime *rt, const char *name, struct ctl_err *e);
/* {"id", "state", "worker_id"[, "trace"]} ; 404 for an unknown task */
json_t *ctl_task_status(struct runtime *rt, const char *name, int task, struct ctl_err *e);
/* {"<name>": {"topics": [...]}}: topics the connector has read or written */
json_t *ctl_topics(struct runtime *rt, const char *name, struct ctl_err *e);
/* Forgets the active topics (PUT /connectors/{c}/topics/reset). */
int ctl_topics_reset(struct runtime *rt, const char *name, struct ctl_err *e);

/*
 * Creates (create_only = 1: POST /connectors, 409 when it exists) or creates
 * or replaces (PUT /connectors/{c}/config) a connector. config: object of
 * strings; its "name" key, when present, must equal name. initial_state:
 * NULL, "RUNNING", "PAUSED" or "STOPPED". Validates completely (400 listing
 * every error, like `spoke validate`), persists to state.dir, then starts or
 * restarts it. *created tells which. Returns the info object.
 */
json_t *ctl_put(struct runtime *rt, const char *name, json_t *config, int create_only,
                const char *initial_state, int *created, struct ctl_err *e);
/* PATCH /connectors/{c}/config: merges patch (a null value deletes the key)
 * into the current config, then like ctl_put. Returns the info object. */
json_t *ctl_patch(struct runtime *rt, const char *name, json_t *patch, struct ctl_err *e);
/* Stops and removes it, and its offsets; persisted. */
int ctl_delete(struct runtime *rt, const char *name, struct ctl_err *e);

/* Target states; persisted. pause/resume answer 202, stop 204 in rest.c. */
int ctl_pause(struct runtime *rt, const char *name, struct ctl_err *e);
int ctl_resume(struct runtime *rt, const char *name, struct ctl_err *e);
int ctl_stop(struct runtime *rt, const char *name, struct ctl_err *e);

/*
 * POST /connectors/{c}/restart. Returns 204 (restart done, no body: *status
 * is NULL) for the plain form, or 202 with *status = the status object
 * showing RESTARTING for the includeTasks/onlyFailed form; -1 on error.
 * only_failed: restart only if FAILED (otherwise nothing happens, 202 with
 * the current status).
 */
int ctl_restart(struct runtime *rt, const char *name, int include_tasks, int only_failed,
                json_t **status, struct ctl_err *e);
/* POST /connectors/{c}/tasks/{t}/restart; 0 (answer 204) or -1. */
int ctl_task_restart(struct runtime *rt, const char *name, int task, struct ctl_err *e);

/* ---- offsets (changes only while STOPPED; else 400 with Connect's text) ---- */

/* {"offsets": [{"partition": {"partition": "<p>"}, "offset": {"offset": <n>}}]} */
json_t *ctl_offsets(struct runtime *rt, const char *name, struct ctl_err *e);
/* PATCH body {"offsets": [same shape; "offset": null removes]}; returns
 * {"message": "The offsets for this connector have been altered successfully"} */
json_t *ctl_offsets_alter(struct runtime *rt, const char *name, json_t *body, struct ctl_err *e);
/* DELETE; returns {"message": "The offsets for this connector have been reset successfully"} */
json_t *ctl_offsets_reset(struct runtime *rt, const char *name, struct ctl_err *e);

/* ---- plugins ---- */

/* [{"class", "type": "source"|"sink"|"transformation", "version"}];
 * transforms only when connectors_only == 0. */
json_t *ctl_plugins(struct runtime *rt, int connectors_only);
/* [{"name", "type", "required", "default_value", "importance",
 * "documentation", "group", "width", "display_name", "dependents", "order"}]
 * for the plugin's keys and the host's connector keys. */
json_t *ctl_plugin_config(struct runtime *rt, const char *plugin, struct ctl_err *e);
/* {"name", "error_count", "groups", "configs": [{"definition": {...},
 * "value": {"name", "value", "recommended_values", "errors", "visible"}}]}.
 * config must be an object of strings; connector.class in it (if any) must
 * name the same plugin (400 otherwise). */
json_t *ctl_plugin_validate(struct runtime *rt, const char *plugin, json_t *config,
                            struct ctl_err *e);

/* ---- loggers: "root" (the worker) and one per connector name ---- */

/* {"root": {"level": "INFO", "last_modified": null|ms}, "<connector>": {...}} */
json_t *ctl_loggers(struct runtime *rt);
json_t *ctl_logger(struct runtime *rt, const char *name, struct ctl_err *e);
/* level: ERROR|WARN|INFO|DEBUG|TRACE (case-insensitive). Setting "root" sets
 * every logger. Returns the list of names changed, e.g. ["root", "a"]. */
json_t *ctl_logger_set(struct runtime *rt, const char *name, const char *level,
                       struct ctl_err *e);

/* ---- metrics ---- */

/* Appends the Prometheus text exposition (version 0.0.4) of every metric. */
void ctl_metrics(struct runtime *rt, struct buf *out);

#endif
