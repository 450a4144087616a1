/* ctl - the REST control functions (see ctl.h): Kafka Connect's JSON shapes
 * over the runtime. Reads take rt->lock (the connector list); changes take
 * rt->ctl_lock, which serializes every lifecycle change. */
#include "ctl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ack.h"
#include "cfgval.h"
#include "clock.h"
#include "conncfg.h"
#include "hist.h"
#include "log.h"
#include "memtrim.h"
#include "recycle.h"
#include "registry.h"
#include "router.h"
#include "runtime_int.h"

static void set_err(struct ctl_err *e, int code, const char *fmt, ...)
{
    va_list ap;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
}

/* 404; for a stored REST connector that no longer validates, the reason
 * and what to do. */
static void not_found(struct runtime *rt, struct ctl_err *e, const char *name)
{
    char *why = rt ? rt_skipped_reason(rt, name) : NULL;
    if (why)
        set_err(e, 404, "Connector %s not found: its stored config no longer validates, so "
                "it was not started (%s); PUT /connectors/%s/config with a valid config, or "
                "DELETE /connectors/%s to forget it", name, why, name, name);
    else
        set_err(e, 404, "Connector %s not found", name);
    free(why);
}

static const char *type_name(enum spoke_kind k)
{
    return k == SPOKE_KIND_SOURCE ? "source" : k == SPOKE_KIND_SINK ? "sink" : "transformation";
}

/* ---- worker ---- */

json_t *ctl_root(struct runtime *rt)
{
    (void)rt;
    return json_pack("{s:s,s:s,s:s}", "version", SPOKE_VERSION, "commit", "spoke",
                     "kafka_cluster_id", "spoke-in-process");
}

int ctl_ready(struct runtime *rt)
{
    /* Startup readiness, as Connect's /health: once the connectors of the
     * start have left UNASSIGNED, the worker is ready for good (a connector
     * created later must not turn /health to 503). */
    if (atomic_load(&rt->ready))
        return 1;
    int ready = 1;
    pthread_mutex_lock(&rt->lock);
    for (size_t i = 0; i < rt->nconns; i++) {
        struct spoke_instance *inst = rt->conns[i];
        pthread_mutex_lock(&inst->lock);
        if (inst->target != TARGET_STOPPED && inst->state == CONN_UNASSIGNED)
            ready = 0;
        pthread_mutex_unlock(&inst->lock);
    }
    pthread_mutex_unlock(&rt->lock);
    if (ready)
        atomic_store(&rt->ready, 1);
    return ready;
}

/* ---- shapes (callers hold rt->lock) ---- */

static json_t *info_locked(struct spoke_instance *inst)
{
    json_t *tasks = json_array();
    if (inst->target != TARGET_STOPPED)
        json_array_append_new(tasks, json_pack("{s:s,s:i}", "connector", inst->name, "task", 0));
    return json_pack("{s:s,s:o,s:o,s:s}", "name", inst->name, "config", rt_masked_config(inst),
                     "tasks", tasks, "type", type_name(inst->kind));
}

static json_t *state_obj(struct spoke_instance *inst, int task)
{
    json_t *o = json_pack("{s:s,s:s}", "state", rt_state_name(inst->state), "worker_id",
                          rt_worker_id(inst->rt));
    if (o && task)
        json_object_set_new(o, "id", json_integer(0));
    if (o && inst->state == CONN_FAILED && inst->trace[0])
        json_object_set_new(o, "trace", json_string(inst->trace));
    /* Beyond Connect, which has no such state: a task retrying a transient
     * failure is RUNNING, and says why. */
    if (o && inst->state != CONN_FAILED && inst->retrying) {
        json_object_set_new(o, "retrying", json_true());
        if (inst->trace[0])
            json_object_set_new(o, "trace", json_string(inst->trace));
    }
    /* And one whose plugin said what it cannot do meanwhile (status_note). */
    if (o && inst->state == CONN_RUNNING && inst->note[0]) {
        json_object_set_new(o, "degraded", json_true());
        if (!json_object_get(o, "trace"))
            json_object_set_new(o, "trace", json_string(inst->note));
    }
    return o;
}

static json_t *status_locked(struct spoke_instance *inst)
{
    pthread_mutex_lock(&inst->lock);
    json_t *tasks = json_array();
    if (inst->target != TARGET_STOPPED || inst->state != CONN_STOPPED)
        json_array_append_new(tasks, state_obj(inst, 1));
    json_t *o = json_pack("{s:s,s:o,s:o,s:s}", "name", inst->name, "connector",
                          state_obj(inst, 0), "tasks", tasks, "type", type_name(inst->kind));
    pthread_mutex_unlock(&inst->lock);
    return o;
}

/* Runs fn on the named connector under rt->lock; 404 when unknown. */
static json_t *with_conn(struct runtime *rt, const char *name, struct ctl_err *e,
                         json_t *(*fn)(struct spoke_instance *inst))
{
    pthread_mutex_lock(&rt->lock);
    struct spoke_instance *inst = rt_find_locked(rt, name);
    json_t *o = inst ? fn(inst) : NULL;
    pthread_mutex_unlock(&rt->lock);
    if (!inst)
        not_found(rt, e, name);
    else if (!o)
        set_err(e, 500, "out of memory");
    return o;
}

/* ---- stored connectors not started (rt_skipped): listed FAILED ---- */

static const char *skipped_type(const json_t *sk)
{
    json_int_t k = json_integer_value(json_object_get(sk, "kind"));
    return k < 0 ? "unknown" : type_name((enum spoke_kind)k);
}

static json_t *skipped_status(struct runtime *rt, const char *name, const json_t *sk)
{
    char trace[1200];
    snprintf(trace, sizeof(trace), "its stored config no longer validates, so it was not "
             "started: %s", json_string_value(json_object_get(sk, "reason")));
    return json_pack("{s:s,s:{s:s,s:s,s:s},s:[],s:s}", "name", name, "connector", "state",
                     rt_state_name(CONN_FAILED), "worker_id", rt_worker_id(rt), "trace", trace,
                     "tasks", "type", skipped_type(sk));
}

static json_t *skipped_info(const char *name, const json_t *sk)
{
    return json_pack("{s:s,s:O,s:[],s:s}", "name", name, "config",
                     json_object_get(sk, "config"), "tasks", "type", skipped_type(sk));
}

enum { SK_STATUS, SK_INFO, SK_CONFIG };

/* o, or (o NULL with a 404 in e) the shape `what` of a stored connector
 * that was not started, e cleared; else NULL with e as it was. */
static json_t *or_skipped(struct runtime *rt, const char *name, json_t *o, struct ctl_err *e,
                          int what)
{
    if (o || e->code != 404)
        return o;
    json_t *all = rt_skipped(rt), *sk = json_object_get(all, name);
    json_t *r = !sk ? NULL : what == SK_STATUS ? skipped_status(rt, name, sk)
              : what == SK_INFO ? skipped_info(name, sk)
              : json_deep_copy(json_object_get(sk, "config"));
    json_decref(all);
    if (r) {
        e->code = 0;
        e->msg[0] = '\0';
    }
    return r;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

json_t *ctl_connectors(struct runtime *rt, int expand_status, int expand_info)
{
    json_t *skipped = rt_skipped(rt);
    pthread_mutex_lock(&rt->lock);
    const char **names = calloc(rt->nconns + json_object_size(skipped) + 1, sizeof(*names));
    size_t n = 0;
    for (size_t i = 0; names && i < rt->nconns; i++)
        names[n++] = rt->conns[i]->name;
    const char *k;
    json_t *v;
    json_object_foreach(skipped, k, v)
        if (names && !rt_find_locked(rt, k))
            names[n++] = k;
    if (names)
        qsort(names, n, sizeof(*names), cmp_str);
    json_t *out = expand_status || expand_info ? json_object() : json_array();
    for (size_t i = 0; names && i < n; i++) {
        if (!expand_status && !expand_info) {
            json_array_append_new(out, json_string(names[i]));
            continue;
        }
        struct spoke_instance *inst = rt_find_locked(rt, names[i]);
        const json_t *sk = inst ? NULL : json_object_get(skipped, names[i]);
        json_t *o = json_object();
        if (expand_status)
            json_object_set_new(o, "status", inst ? status_locked(inst)
                                                  : skipped_status(rt, names[i], sk));
        if (expand_info)
            json_object_set_new(o, "info", inst ? info_locked(inst) : skipped_info(names[i], sk));
        json_object_set_new(out, names[i], o);
    }
    pthread_mutex_unlock(&rt->lock);
    free(names);
    json_decref(skipped);
    return out;
}

json_t *ctl_info(struct runtime *rt, const char *name, struct ctl_err *e)
{
    return or_skipped(rt, name, with_conn(rt, name, e, info_locked), e, SK_INFO);
}

static json_t *config_locked(struct spoke_instance *inst) { return rt_masked_config(inst); }

json_t *ctl_config(struct runtime *rt, const char *name, struct ctl_err *e)
{
    return or_skipped(rt, name, with_conn(rt, name, e, config_locked), e, SK_CONFIG);
}

json_t *ctl_status(struct runtime *rt, const char *name, struct ctl_err *e)
{
    return or_skipped(rt, name, with_conn(rt, name, e, status_locked), e, SK_STATUS);
}

static json_t *tasks_locked(struct spoke_instance *inst)
{
    json_t *a = json_array();
    if (inst->target != TARGET_STOPPED)
        json_array_append_new(a, json_pack("{s:{s:s,s:i},s:o}", "id", "connector", inst->name,
                                           "task", 0, "config", rt_masked_config(inst)));
    return a;
}

json_t *ctl_tasks(struct runtime *rt, const char *name, struct ctl_err *e)
{
    return with_conn(rt, name, e, tasks_locked);
}

json_t *ctl_task_status(struct runtime *rt, const char *name, int task, struct ctl_err *e)
{
    pthread_mutex_lock(&rt->lock);
    struct spoke_instance *inst = rt_find_locked(rt, name);
    json_t *o = NULL;
    if (!inst) {
        not_found(rt, e, name);
    } else if (task != 0 || (inst->target == TARGET_STOPPED && inst->state == CONN_STOPPED)) {
        set_err(e, 404, "No status found for task %s-%d", name, task);
    } else {
        pthread_mutex_lock(&inst->lock);
        o = state_obj(inst, 1);
        pthread_mutex_unlock(&inst->lock);
    }
    pthread_mutex_unlock(&rt->lock);
    return o;
}

static json_t *topics_locked(struct spoke_instance *inst)
{
    json_t *a = json_array();
    pthread_mutex_lock(&inst->lock);
    const char *v[32];
    size_t n = inst->ntopics_seen;
    memcpy(v, inst->topics_seen, n * sizeof(*v));
    pthread_mutex_unlock(&inst->lock);
    qsort(v, n, sizeof(*v), cmp_str);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return json_pack("{s:{s:o}}", inst->name, "topics", a);
}

json_t *ctl_topics(struct runtime *rt, const char *name, struct ctl_err *e)
{
    return with_conn(rt, name, e, topics_locked);
}

int ctl_topics_reset(struct runtime *rt, const char *name, struct ctl_err *e)
{
    pthread_mutex_lock(&rt->lock);
    struct spoke_instance *inst = rt_find_locked(rt, name);
    if (inst) {
        pthread_mutex_lock(&inst->lock);
        inst->ntopics_seen = 0;
        pthread_mutex_unlock(&inst->lock);
        /* last_topic is the task thread's cache; a stale entry only delays
         * re-noting that one topic until another one is seen. */
        inst->last_topic = NULL;
    }
    pthread_mutex_unlock(&rt->lock);
    if (!inst) {
        not_found(rt, e, name);
        return -1;
    }
    return 0;
}

/* ---- changes ---- */

/* The errors of a refused config, as Connect words them. */
static void config_errors(struct ctl_err *e, const char *name, struct buf *errs)
{
    size_t n = 0;
    for (size_t i = 0; i < errs->len; i++)
        n += errs->p[i] == '\n';
    /* One line per error; fold them into the message, without trailing newline. */
    while (errs->len && errs->p[errs->len - 1] == '\n')
        errs->p[--errs->len] = '\0';
    for (size_t i = 0; i < errs->len; i++)
        if (errs->p[i] == '\n')
            errs->p[i] = ';';
    set_err(e, 400, "Connector configuration is invalid and contains the following %zu "
            "error(s): %s", n ? n : 1, errs->p ? errs->p : "invalid configuration");
    (void)name;
}

json_t *ctl_put(struct runtime *rt, const char *name, json_t *config, int create_only,
                const char *initial_state, int *created, struct ctl_err *e)
{
    int target = TARGET_RUNNING;
    if (initial_state && (target = rt_target_parse(initial_state)) < 0) {
        set_err(e, 400, "initial_state must be one of RUNNING, PAUSED, STOPPED, not '%s'",
                initial_state);
        return NULL;
    }
    pthread_mutex_lock(&rt->ctl_lock);
    pthread_mutex_lock(&rt->lock);
    struct spoke_instance *old = rt_find_locked(rt, name);
    if (old && !initial_state)
        target = old->target; /* a config change keeps the target state */
    pthread_mutex_unlock(&rt->lock);
    if (old && create_only) {
        pthread_mutex_unlock(&rt->ctl_lock);
        set_err(e, 409, "Connector %s already exists", name);
        return NULL;
    }
    struct buf errs = BUF_INIT;
    int rc = rt_put(rt, name, config, (enum conn_target)target, created, &errs);
    pthread_mutex_unlock(&rt->ctl_lock);
    if (rc != 0) {
        config_errors(e, name, &errs);
        buf_free(&errs);
        return NULL;
    }
    buf_free(&errs);
    return ctl_info(rt, name, e);
}

json_t *ctl_patch(struct runtime *rt, const char *name, json_t *patch, struct ctl_err *e)
{
    if (!json_is_object(patch)) {
        set_err(e, 400, "the patch must be a JSON object");
        return NULL;
    }
    pthread_mutex_lock(&rt->lock);
    struct spoke_instance *inst = rt_find_locked(rt, name);
    json_t *merged = inst ? json_deep_copy(inst->config) : NULL;
    pthread_mutex_unlock(&rt->lock);
    if (!inst) {
        not_found(rt, e, name);
        return NULL;
    }
    const char *k;
    json_t *v;
    json_object_foreach(patch, k, v) {
        if (json_is_null(v))
            json_object_del(merged, k);
        else
            json_object_set(merged, k, v);
    }
    int created = 0;
    json_t *out = ctl_put(rt, name, merged, 0, NULL, &created, e);
    json_decref(merged);
    return out;
}

int ctl_delete(struct runtime *rt, const char *name, struct ctl_err *e)
{
    pthread_mutex_lock(&rt->ctl_lock);
    int rc = rt_delete(rt, name);
    pthread_mutex_unlock(&rt->ctl_lock);
    if (rc == -2)
        set_err(e, 409, "Connector %s is managed by a Kafka-backed topic of connectors.yaml and "
                "cannot be deleted", name);
    else if (rc != 0)
        not_found(rt, e, name);
    return rc;
}

static int change_target(struct runtime *rt, const char *name, enum conn_target t,
                         struct ctl_err *e)
{
    pthread_mutex_lock(&rt->ctl_lock);
    pthread_mutex_lock(&rt->lock);
    struct spoke_instance *inst = rt_find_locked(rt, name);
    pthread_mutex_unlock(&rt->lock);
    if (inst) {
        /* Said before the change: stopping a source waits for its records
         * in flight, up to shutdown.timeout.ms. */
        LOG_I(name, "target state %s (REST)", rt_target_name(t));
        rt_set_target(rt, inst, t, 1);
    }
    pthread_mutex_unlock(&rt->ctl_lock);
    if (!inst) {
        not_found(rt, e, name);
        return -1;
    }
    return 0;
}

int ctl_pause(struct runtime *rt, const char *name, struct ctl_err *e)
{
    return change_target(rt, name, TARGET_PAUSED, e);
}

int ctl_resume(struct runtime *rt, const char *name, struct ctl_err *e)
{
    return change_target(rt, name, TARGET_RUNNING, e);
}

int ctl_stop(struct runtime *rt, const char *name, struct ctl_err *e)
{
    return change_target(rt, name, TARGET_STOPPED, e);
}

int ctl_restart(struct runtime *rt, const char *name, int include_tasks, int only_failed,
                json_t **status, struct ctl_err *e)
{
    *status = NULL;
    pthread_mutex_lock(&rt->ctl_lock);
    pthread_mutex_lock(&rt->lock);
    struct spoke_instance *inst = rt_find_locked(rt, name);
    pthread_mutex_unlock(&rt->lock);
    if (!inst) {
        pthread_mutex_unlock(&rt->ctl_lock);
        not_found(rt, e, name);
        return -1;
    }
    int plain = !include_tasks && !only_failed;
    pthread_mutex_lock(&inst->lock);
    int failed = inst->state == CONN_FAILED;
    int stopped = inst->target == TARGET_STOPPED;
    pthread_mutex_unlock(&inst->lock);
    int go = !stopped && (!only_failed || failed);
    if (!plain) {
        /* 202 with the status as it is when the restart begins. */
        if (go) {
            pthread_mutex_lock(&inst->lock);
            inst->state = CONN_RESTARTING;
            pthread_mutex_unlock(&inst->lock);
        }
        pthread_mutex_lock(&rt->lock);
        *status = status_locked(inst);
        pthread_mutex_unlock(&rt->lock);
    }
    if (go)
        rt_restart(rt, inst);
    pthread_mutex_unlock(&rt->ctl_lock);
    return plain ? 204 : 202;
}

int ctl_task_restart(struct runtime *rt, const char *name, int task, struct ctl_err *e)
{
    pthread_mutex_lock(&rt->ctl_lock);
    pthread_mutex_lock(&rt->lock);
    struct spoke_instance *inst = rt_find_locked(rt, name);
    pthread_mutex_unlock(&rt->lock);
    int rc = -1;
    if (!inst)
        not_found(rt, e, name);
    else if (task != 0 || inst->target == TARGET_STOPPED)
        set_err(e, 404, "Task %s-%d not found", name, task);
    else
        rc = rt_restart(rt, inst);
    pthread_mutex_unlock(&rt->ctl_lock);
    return rc;
}

/* ---- offsets ---- */

json_t *ctl_offsets(struct runtime *rt, const char *name, struct ctl_err *e)
{
    pthread_mutex_lock(&rt->lock);
    struct spoke_instance *inst = rt_find_locked(rt, name);
    pthread_mutex_unlock(&rt->lock);
    if (!inst) {
        not_found(rt, e, name);
        return NULL;
    }
    json_t *arr = json_array();
    size_t n = offsets_count(rt->offsets, name);
    for (size_t i = 0; i < n; i++) {
        const char *part;
        int64_t off;
        if (offsets_at(rt->offsets, name, i, &part, &off) == SPOKE_OK)
            json_array_append_new(arr, json_pack("{s:{s:s},s:{s:I}}", "partition", "partition",
                                                 part, "offset", "offset", (json_int_t)off));
    }
    return json_pack("{s:o}", "offsets", arr);
}

/* Offsets change only while the connector is STOPPED (Connect's rule). */
static struct spoke_instance *stopped_conn(struct runtime *rt, const char *name,
                                           struct ctl_err *e)
{
    pthread_mutex_lock(&rt->lock);
    struct spoke_instance *inst = rt_find_locked(rt, name);
    int stopped = inst && inst->target == TARGET_STOPPED && inst->state == CONN_STOPPED;
    pthread_mutex_unlock(&rt->lock);
    if (!inst) {
        not_found(rt, e, name);
        return NULL;
    }
    if (!stopped) {
        set_err(e, 400, "Connectors must be in the STOPPED state before their offsets can be "
                "modified. This can be done for the specified connector by issuing a 'PUT' "
                "request to the '/connectors/%s/stop' endpoint", name);
        return NULL;
    }
    if (inst->kind != SPOKE_KIND_SOURCE) {
        set_err(e, 400, "Connector %s is a %s: only source connectors have offsets in Spoke",
                name, type_name(inst->kind));
        return NULL;
    }
    return inst;
}

/* The plugin's say on a change of its offsets (offsets_change): list holds
 * the validated {"partition", "offset"} pairs (NULL with reset). 1 when it
 * agrees (or has no say), else 0 with a 400 in e. */
static int plugin_agrees(struct spoke_instance *inst, const char *name, json_t *list, int reset,
                         struct ctl_err *e)
{
    size_t n = list ? json_array_size(list) : 0, i;
    const char **parts = n ? calloc(n, sizeof(*parts)) : NULL;
    int64_t *offs = n ? calloc(n, sizeof(*offs)) : NULL;
    char why[SPOKE_ERRSTR_SIZE];
    json_t *it;
    if (n && (!parts || !offs)) {
        free(parts);
        free(offs);
        set_err(e, 500, "out of memory");
        return 0;
    }
    json_array_foreach(list, i, it) {
        json_t *o = json_object_get(it, "offset");
        parts[i] = json_string_value(json_object_get(json_object_get(it, "partition"),
                                                     "partition"));
        offs[i] = json_is_null(o) ? -1 : json_integer_value(json_object_get(o, "offset"));
    }
    int rc = registry_offsets_change(inst->plugin, &api_table, name, inst->pcfg, parts, offs, n,
                                     reset, why, sizeof(why));
    free(parts);
    free(offs);
    if (rc == SPOKE_OK)
        return 1;
    set_err(e, 400, "%s", why);
    return 0;
}

json_t *ctl_offsets_alter(struct runtime *rt, const char *name, json_t *body, struct ctl_err *e)
{
    json_t *list = json_object_get(body, "offsets");
    if (!json_is_object(body) || !json_is_array(list) || json_object_size(body) != 1) {
        set_err(e, 400, "the body must be {\"offsets\": [...]}");
        return NULL;
    }
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it) {
        json_t *p = json_object_get(it, "partition"), *o = json_object_get(it, "offset");
        json_t *pp = json_object_get(p, "partition"), *oo = json_object_get(o, "offset");
        if (!json_is_object(it) || json_object_size(it) != 2 || !json_is_object(p) ||
            json_object_size(p) != 1 || !json_is_string(pp) ||
            !(json_is_null(o) || (json_is_object(o) && json_object_size(o) == 1 &&
                                  json_is_integer(oo) && json_integer_value(oo) >= 0))) {
            set_err(e, 400, "offsets[%zu]: expected {\"partition\": {\"partition\": <string>}, "
                    "\"offset\": {\"offset\": <integer >= 0>} or null}", i);
            return NULL;
        }
    }
    pthread_mutex_lock(&rt->ctl_lock);
    struct spoke_instance *inst = stopped_conn(rt, name, e);
    if (inst && !plugin_agrees(inst, name, list, 0, e))
        inst = NULL;
    if (inst) {
        json_array_foreach(list, i, it) {
            const char *part = json_string_value(json_object_get(json_object_get(it, "partition"),
                                                                 "partition"));
            json_t *o = json_object_get(it, "offset");
            if (json_is_null(o))
                offsets_remove(rt->offsets, name, part);
            else
                offsets_set(rt->offsets, name, part,
                            json_integer_value(json_object_get(o, "offset")));
        }
        rt_forget_replays(inst);
        char err[256];
        if (offsets_flush(rt->offsets, err, sizeof(err)) != 0) {
            set_err(e, 500, "cannot write offsets: %s", err);
            inst = NULL;
        }
    }
    pthread_mutex_unlock(&rt->ctl_lock);
    if (!inst)
        return NULL;
    LOG_I(name, "offsets altered over REST");
    return json_pack("{s:s}", "message",
                     "The offsets for this connector have been altered successfully");
}

json_t *ctl_offsets_reset(struct runtime *rt, const char *name, struct ctl_err *e)
{
    pthread_mutex_lock(&rt->ctl_lock);
    struct spoke_instance *inst = stopped_conn(rt, name, e);
    if (inst && !plugin_agrees(inst, name, NULL, 1, e))
        inst = NULL;
    if (inst) {
        offsets_forget(rt->offsets, name);
        rt_forget_replays(inst);
        char err[256];
        if (offsets_flush(rt->offsets, err, sizeof(err)) != 0) {
            set_err(e, 500, "cannot write offsets: %s", err);
            inst = NULL;
        }
    }
    pthread_mutex_unlock(&rt->ctl_lock);
    if (!inst)
        return NULL;
    LOG_I(name, "offsets reset over REST");
    return json_pack("{s:s}", "message",
                     "The offsets for this connector have been reset successfully");
}

/* ---- plugins ---- */

json_t *ctl_plugins(struct runtime *rt, int connectors_only)
{
    json_t *a = json_array();
    pthread_mutex_lock(&rt->ctl_lock); /* registry scans happen under it */
    for (size_t i = 0; i < rt->reg->nplugins; i++) {
        const struct spoke_plugin *d = rt->reg->plugins[i].desc;
        if (connectors_only && d->kind == SPOKE_KIND_TRANSFORM)
            continue;
        json_array_append_new(a, json_pack("{s:s,s:s,s:s}", "class", d->name, "type",
                                           type_name(d->kind), "version", d->version));
    }
    pthread_mutex_unlock(&rt->ctl_lock);
    return a;
}

static const char *cfg_type_name(enum spoke_cfg_type t)
{
    switch (t) {
    case SPOKE_CFG_STRING: return "STRING";
    case SPOKE_CFG_INT: return "INT";
    case SPOKE_CFG_LONG: return "LONG";
    case SPOKE_CFG_DOUBLE: return "DOUBLE";
    case SPOKE_CFG_BOOL: return "BOOLEAN";
    case SPOKE_CFG_LIST: return "LIST";
    case SPOKE_CFG_PASSWORD: return "PASSWORD";
    }
    return "STRING";
}

static json_t *definition(const struct spoke_config_field *f, const char *group, int order)
{
    int secret = f->type == SPOKE_CFG_PASSWORD || (f->flags & SPOKE_CFG_SECRET);
    json_t *o = json_pack("{s:s,s:s,s:b,s:s,s:s,s:s,s:s,s:s,s:[],s:i}", "name", f->name, "type",
                          cfg_type_name(f->type), "required", (f->flags & SPOKE_CFG_REQUIRED) != 0,
                          "importance", (f->flags & SPOKE_CFG_REQUIRED) ? "HIGH" : "MEDIUM",
                          "documentation", f->doc ? f->doc : "", "group", group, "width", "NONE",
                          "display_name", f->name, "dependents", "order", order);
    if (o)
        json_object_set_new(o, "default_value",
                            f->default_value ? json_string(secret ? CTL_SECRET_MASK
                                                                  : f->default_value)
                                             : json_null());
    return o;
}

static const struct spoke_plugin *find_plugin(struct runtime *rt, const char *plugin,
                                              struct ctl_err *e)
{
    const struct plugin_entry *p = registry_find(rt->reg, plugin);
    if (!p)
        set_err(e, 404, "Failed to find any class that implements Connector and which name "
                "matches %s", plugin);
    return p ? p->desc : NULL;
}

json_t *ctl_plugin_config(struct runtime *rt, const char *plugin, struct ctl_err *e)
{
    pthread_mutex_lock(&rt->ctl_lock);
    const struct spoke_plugin *d = find_plugin(rt, plugin, e);
    json_t *a = d ? json_array() : NULL;
    int order = 1;
    for (const struct spoke_config_field *f = d ? d->config : NULL; f && f->name; f++)
        json_array_append_new(a, definition(f, d->name, order++));
    for (const struct spoke_config_field *f = d ? conncfg_fields : NULL; f && f->name; f++)
        json_array_append_new(a, definition(f, "Common", order++));
    pthread_mutex_unlock(&rt->ctl_lock);
    return a;
}

/* Adds message to the "errors" of the config entry for key (creating an
 * entry for keys no table declares). */
static void add_value_error(json_t *configs, const char *key, const char *value,
                            const char *message)
{
    size_t i;
    json_t *c;
    json_array_foreach(configs, i, c) {
        json_t *v = json_object_get(c, "value");
        if (strcmp(json_string_value(json_object_get(v, "name")), key) == 0) {
            json_array_append_new(json_object_get(v, "errors"), json_string(message));
            return;
        }
    }
    json_array_append_new(configs,
                          json_pack("{s:n,s:{s:s,s:s?,s:[],s:[s],s:b}}", "definition", "value",
                                    "name", key, "value", value, "recommended_values", "errors",
                                    message, "visible", 1));
}

json_t *ctl_plugin_validate(struct runtime *rt, const char *plugin, json_t *config,
                            struct ctl_err *e)
{
    if (!json_is_object(config)) {
        set_err(e, 400, "the body must be a JSON object of configuration strings");
        return NULL;
    }
    const char *k;
    json_t *v;
    json_object_foreach(config, k, v) {
        if (!json_is_string(v)) {
            set_err(e, 400, "key '%s': configuration values must be strings", k);
            return NULL;
        }
    }
    const char *cls = json_string_value(json_object_get(config, "connector.class"));
    if (cls && strcmp(cls, plugin) != 0) {
        set_err(e, 400, "connector.class '%s' differs from the plugin '%s' in the path", cls,
                plugin);
        return NULL;
    }
    pthread_mutex_lock(&rt->ctl_lock);
    const struct spoke_plugin *d = find_plugin(rt, plugin, e);
    if (!d) {
        pthread_mutex_unlock(&rt->ctl_lock);
        return NULL;
    }
    /* The given keys as kvs; connector.class is implied by the path. */
    size_t n = json_object_size(config) + 1, nkv = 0;
    struct cfg_kv *kvs = calloc(n, sizeof(*kvs));
    json_object_foreach(config, k, v) {
        if (strcmp(k, "name") == 0)
            continue;
        kvs[nkv].key = (char *)k;
        kvs[nkv].value = (char *)json_string_value(v);
        nkv++;
    }
    if (!cls) {
        kvs[nkv].key = "connector.class";
        kvs[nkv].value = (char *)plugin;
        nkv++;
    }
    struct spoke_config *hc = NULL, *pc = NULL;
    struct cfgval_errors ce = { 0 };
    cfgval_validate(conncfg_fields, d->config, kvs, nkv, &hc, &pc, &ce);
    json_t *configs = json_array();
    int order = 1;
    const struct spoke_config_field *tables[2] = { d->config, conncfg_fields };
    for (int t = 0; t < 2; t++) {
        for (const struct spoke_config_field *f = tables[t]; f && f->name; f++) {
            int secret = f->type == SPOKE_CFG_PASSWORD || (f->flags & SPOKE_CFG_SECRET);
            json_t *given = json_object_get(config, f->name);
            const char *val = given ? json_string_value(given) : f->default_value;
            if (!given && strcmp(f->name, "connector.class") == 0)
                val = plugin;
            json_t *value = json_pack("{s:s,s:[],s:[],s:b}", "name", f->name,
                                      "recommended_values", "errors", "visible", 1);
            json_object_set_new(value, "value",
                                val ? json_string(secret ? CTL_SECRET_MASK : val) : json_null());
            json_array_append_new(configs,
                                  json_pack("{s:o,s:o}", "definition",
                                            definition(f, t ? "Common" : d->name, order++),
                                            "value", value));
        }
    }
    for (size_t i = 0; i < ce.n; i++) {
        /* Entries for keys no table declares get no value: a misspelled
         * secret ("passwrod") must not be echoed back. */
        add_value_error(configs, ce.e[i].key, NULL, ce.e[i].msg);
    }
    int nerr = (int)ce.n;
    if (nerr == 0 && pc) {
        /* Keys that go together: the plugin's own check, on the key it
         * names (connector.class when it names none). */
        char why[SPOKE_ERRSTR_SIZE];
        const char *key = NULL;
        struct check_problems more;
        if (registry_check_config(d, &api_table, pc, &key, why, sizeof(why), &more) !=
            SPOKE_OK) {
            add_value_error(configs, key ? key : "connector.class", NULL, why);
            for (size_t i = 0; i < more.n; i++)
                add_value_error(configs, more.v[i].key ? more.v[i].key : "connector.class",
                                NULL, more.v[i].msg);
            nerr += 1 + (int)more.n;
            check_problems_free(&more);
        }
    }
    json_t *out = json_pack("{s:s,s:i,s:[s,s],s:o}", "name", plugin, "error_count", nerr,
                            "groups", d->name, "Common", "configs", configs);
    cfgval_errors_free(&ce);
    cfgval_free(hc);
    cfgval_free(pc);
    free(kvs);
    pthread_mutex_unlock(&rt->ctl_lock);
    if (!out)
        set_err(e, 500, "out of memory");
    return out;
}

/* ---- loggers ---- */

static json_t *logger_obj(int level, int64_t modified)
{
    char up[16];
    snprintf(up, sizeof(up), "%s", log_level_name((enum spoke_log_level)level));
    for (char *p = up; *p; p++)
        *p = (char)(*p - ('a' <= *p && *p <= 'z' ? 32 : 0));
    json_t *o = json_pack("{s:s}", "level", up);
    json_object_set_new(o, "last_modified", modified ? json_integer(modified) : json_null());
    return o;
}

json_t *ctl_loggers(struct runtime *rt)
{
    json_t *o = json_object();
    json_object_set_new(o, "root", logger_obj(log_threshold, rt->root_log_modified_ms));
    pthread_mutex_lock(&rt->lock);
    for (size_t i = 0; i < rt->nconns; i++) {
        struct spoke_instance *inst = rt->conns[i];
        json_object_set_new(o, inst->name,
                            logger_obj(inst->log_level >= 0 ? inst->log_level : log_threshold,
                                       inst->log_modified_ms));
    }
    pthread_mutex_unlock(&rt->lock);
    return o;
}

json_t *ctl_logger(struct runtime *rt, const char *name, struct ctl_err *e)
{
    if (strcmp(name, "root") == 0)
        return logger_obj(log_threshold, rt->root_log_modified_ms);
    pthread_mutex_lock(&rt->lock);
    struct spoke_instance *inst = rt_find_locked(rt, name);
    json_t *o = inst ? logger_obj(inst->log_level >= 0 ? inst->log_level : log_threshold,
                                  inst->log_modified_ms)
                     : NULL;
    pthread_mutex_unlock(&rt->lock);
    if (!inst)
        set_err(e, 404, "Logger %s not found", name);
    return o;
}

json_t *ctl_logger_set(struct runtime *rt, const char *name, const char *level,
                       struct ctl_err *e)
{
    int lv = log_level_parse(level);
    if (lv < 0) {
        set_err(e, 400, "Invalid log level '%s': use ERROR, WARN, INFO, DEBUG or TRACE", level);
        return NULL;
    }
    int64_t now = clock_wall_ms();
    json_t *changed = json_array();
    pthread_mutex_lock(&rt->lock);
    if (strcmp(name, "root") == 0) {
        log_set_level((enum spoke_log_level)lv);
        rt->root_log_modified_ms = now;
        json_array_append_new(changed, json_string("root"));
        /* As in Connect, setting the root sets every logger. */
        for (size_t i = 0; i < rt->nconns; i++) {
            rt->conns[i]->log_level = -1;
            rt->conns[i]->log_modified_ms = now;
            json_array_append_new(changed, json_string(rt->conns[i]->name));
        }
    } else {
        struct spoke_instance *inst = rt_find_locked(rt, name);
        if (inst) {
            inst->log_level = lv;
            inst->log_modified_ms = now;
            json_array_append_new(changed, json_string(name));
        } else {
            set_err(e, 404, "Logger %s not found", name);
            json_decref(changed);
            changed = NULL;
        }
    }
    pthread_mutex_unlock(&rt->lock);
    if (changed)
        LOG_I(NULL, "logger %s set to %s over REST", name, level);
    return changed;
}

/* ---- metrics ---- */

/* Prometheus label values escape backslash, double quote and newline. */
static void label(struct buf *out, const char *v)
{
    for (const char *p = v; *p; p++) {
        if (*p == '\\' || *p == '"')
            buf_putc(out, '\\');
        if (*p == '\n') {
            buf_puts(out, "\\n");
            continue;
        }
        buf_putc(out, *p);
    }
}

static void help(struct buf *out, const char *name, const char *type, const char *text)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

struct conn_snap {
    char name[129];
    char plugin[65];
    const char *type;
    enum conn_state state;
    long long v[9];
    long long depth, capacity, inflight, last_poll;
    int has_latency;
    double lat[4];            /* p50, p90, p99, max in seconds */
    unsigned long long lat_count;
    double lat_sum;
    int has_queue, is_source;
    struct inst_metric *pm;
    size_t npm;
};

static const char *const conn_counters[][2] = {
    { "spoke_connector_records_in_total", "Records the connector received" },
    { "spoke_connector_records_out_total", "Records the connector emitted" },
    { "spoke_connector_errors_total", "Records that took the error path" },
    { "spoke_connector_dead_lettered_total", "Records sent to the dead-letter topic" },
    { "spoke_connector_retries_total", "Retries of transient failures" },
    { "spoke_connector_restarts_total", "Restarts (REST or automatic)" },
    { "spoke_connector_replayed_skipped_total",
      "Replayed records a stateful transform skipped: its restored snapshot held them, or "
      "this run processed them" },
};

struct topic_ctx {
    struct buf *out;
    int pass;
};

static void topic_metric(void *ctx, const struct router_topic_stats *s)
{
    struct topic_ctx *c = ctx;
    long long v = c->pass == 0 ? s->records
                  : c->pass == 1 ? s->unrouted
                  : c->pass == 2 ? (long long)s->depth
                                 : (long long)s->subscribers;
    const char *names[] = { "spoke_topic_records_total", "spoke_topic_unrouted_total",
                            "spoke_topic_depth", "spoke_topic_subscribers" };
    buf_printf(c->out, "%s{topic=\"", names[c->pass]);
    label(c->out, s->name);
    buf_printf(c->out, "\"} %lld\n", v);
}

static long long rss_bytes(void)
{
    long pages = 0, rss = 0;
    FILE *fp = fopen("/proc/self/statm", "r");
    if (fp) {
        if (fscanf(fp, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(fp);
    }
    return (long long)rss * sysconf(_SC_PAGESIZE);
}

void ctl_metrics(struct runtime *rt, struct buf *out)
{
    /* Copy what is needed under the lock, print after. */
    pthread_mutex_lock(&rt->lock);
    size_t n = rt->nconns;
    struct conn_snap *cs = calloc(n + 1, sizeof(*cs));
    for (size_t i = 0; cs && i < n; i++) {
        struct spoke_instance *inst = rt->conns[i];
        struct conn_snap *c = &cs[i];
        snprintf(c->name, sizeof(c->name), "%s", inst->name);
        snprintf(c->plugin, sizeof(c->plugin), "%s", inst->plugin->name);
        c->type = type_name(inst->kind);
        c->v[0] = atomic_load(&inst->records_in);
        c->v[1] = atomic_load(&inst->records_out);
        c->v[2] = atomic_load(&inst->errors);
        c->v[3] = atomic_load(&inst->dead_lettered);
        c->v[4] = atomic_load(&inst->retries);
        c->v[5] = atomic_load(&inst->restarts);
        c->v[6] = atomic_load(&inst->replayed_skipped);
        c->is_source = inst->kind == SPOKE_KIND_SOURCE;
        c->last_poll = atomic_load(&inst->last_poll_ms);
        struct rqueue *q = inst->inq;
        if (q) {
            c->has_queue = 1;
            c->depth = (long long)rqueue_depth(q);
            c->capacity = (long long)rqueue_capacity(q);
        }
        if (inst->tracker)
            c->inflight = (long long)tracker_inflight(inst->tracker);
        if (inst->latency) {
            static const double qs[4] = { 0.5, 0.9, 0.99, 1.0 };
            c->has_latency = 1;
            for (int j = 0; j < 4; j++)
                c->lat[j] = (double)hist_quantile(inst->latency, qs[j]) / 1e9;
            c->lat_count = atomic_load(&inst->latency->count);
            c->lat_sum = (double)atomic_load(&inst->latency->sum) / 1e9;
        }
        pthread_mutex_lock(&inst->lock);
        c->state = inst->state;
        c->pm = inst->nmetrics ? malloc(inst->nmetrics * sizeof(*c->pm)) : NULL;
        if (c->pm) {
            memcpy(c->pm, inst->metrics, inst->nmetrics * sizeof(*c->pm));
            c->npm = inst->nmetrics;
        }
        pthread_mutex_unlock(&inst->lock);
    }
    pthread_mutex_unlock(&rt->lock);

#define LABELS(c) do { buf_puts(out, "{connector=\""); label(out, (c)->name); \
        buf_puts(out, "\",plugin=\""); label(out, (c)->plugin); \
        buf_printf(out, "\",type=\"%s\"", (c)->type); } while (0)
    for (size_t m = 0; cs && m < sizeof(conn_counters) / sizeof(conn_counters[0]); m++) {
        help(out, conn_counters[m][0], "counter", conn_counters[m][1]);
        for (size_t i = 0; i < n; i++) {
            buf_puts(out, conn_counters[m][0]);
            LABELS(&cs[i]);
            buf_printf(out, "} %lld\n", cs[i].v[m]);
        }
    }
    static const enum conn_state states[] = { CONN_UNASSIGNED, CONN_RUNNING, CONN_PAUSED,
                                              CONN_STOPPED, CONN_FAILED, CONN_RESTARTING };
    help(out, "spoke_connector_state", "gauge", "1 for the connector's current state");
    for (size_t i = 0; cs && i < n; i++)
        for (size_t s = 0; s < sizeof(states) / sizeof(states[0]); s++) {
            buf_puts(out, "spoke_connector_state");
            LABELS(&cs[i]);
            buf_printf(out, ",state=\"%s\"} %d\n", rt_state_name(states[s]),
                       cs[i].state == states[s]);
        }
    /* Stored connectors that were not started: FAILED, so that an alert on
     * FAILED connectors sees them. */
    json_t *skipped = rt_skipped(rt);
    const char *sk_name;
    json_t *sk;
    json_object_foreach(skipped, sk_name, sk)
        for (size_t s = 0; s < sizeof(states) / sizeof(states[0]); s++) {
            buf_puts(out, "spoke_connector_state{connector=\"");
            label(out, sk_name);
            buf_puts(out, "\",plugin=\"");
            label(out, json_string_value(json_object_get(sk, "plugin")));
            buf_printf(out, "\",type=\"%s\",state=\"%s\"} %d\n", skipped_type(sk),
                       rt_state_name(states[s]), states[s] == CONN_FAILED);
        }
    json_decref(skipped);
    help(out, "spoke_connector_queue_depth", "gauge", "Records waiting in the input queue");
    for (size_t i = 0; cs && i < n; i++)
        if (cs[i].has_queue) {
            buf_puts(out, "spoke_connector_queue_depth");
            LABELS(&cs[i]);
            buf_printf(out, "} %lld\n", cs[i].depth);
        }
    help(out, "spoke_connector_queue_capacity", "gauge", "Input queue capacity");
    for (size_t i = 0; cs && i < n; i++)
        if (cs[i].has_queue) {
            buf_puts(out, "spoke_connector_queue_capacity");
            LABELS(&cs[i]);
            buf_printf(out, "} %lld\n", cs[i].capacity);
        }
    /* Prometheus text wants each family's samples together after its HELP. */
    help(out, "spoke_connector_inflight", "gauge",
         "Source records emitted and not yet delivered everywhere");
    for (size_t i = 0; cs && i < n; i++)
        if (cs[i].is_source) {
            buf_puts(out, "spoke_connector_inflight");
            LABELS(&cs[i]);
            buf_printf(out, "} %lld\n", cs[i].inflight);
        }
    help(out, "spoke_connector_last_poll_timestamp_seconds", "gauge", "Last poll of a source");
    for (size_t i = 0; cs && i < n; i++)
        if (cs[i].is_source) {
            buf_puts(out, "spoke_connector_last_poll_timestamp_seconds");
            LABELS(&cs[i]);
            buf_printf(out, "} %.3f\n", (double)cs[i].last_poll / 1000.0);
        }
    help(out, "spoke_connector_latency_seconds", "summary",
         "Sinks: from the start of the source poll that produced a record to its durable flush");
    for (size_t i = 0; cs && i < n; i++) {
        if (!cs[i].has_latency)
            continue;
        static const char *const qs[4] = { "0.5", "0.9", "0.99", "1" };
        for (int j = 0; j < 4; j++) {
            buf_puts(out, "spoke_connector_latency_seconds");
            LABELS(&cs[i]);
            buf_printf(out, ",quantile=\"%s\"} %.6f\n", qs[j], cs[i].lat[j]);
        }
        buf_puts(out, "spoke_connector_latency_seconds_sum");
        LABELS(&cs[i]);
        buf_printf(out, "} %.6f\n", cs[i].lat_sum);
        buf_puts(out, "spoke_connector_latency_seconds_count");
        LABELS(&cs[i]);
        buf_printf(out, "} %llu\n", cs[i].lat_count);
    }
    help(out, "spoke_plugin_metric", "untyped", "Counters and gauges a plugin reports");
    for (size_t i = 0; cs && i < n; i++)
        for (size_t j = 0; j < cs[i].npm; j++) {
            buf_puts(out, "spoke_plugin_metric");
            LABELS(&cs[i]);
            buf_puts(out, ",name=\"");
            label(out, cs[i].pm[j].name);
            buf_printf(out, "\"} %lld\n", (long long)cs[i].pm[j].value);
        }
#undef LABELS
    const char *th[][3] = {
        { "spoke_topic_records_total", "counter", "Records published to the topic" },
        { "spoke_topic_unrouted_total", "counter", "Records published while nobody subscribed" },
        { "spoke_topic_depth", "gauge", "Records queued over the topic's subscribers" },
        { "spoke_topic_subscribers", "gauge", "Connectors reading the topic" },
    };
    for (int pass = 0; pass < 4; pass++) {
        help(out, th[pass][0], th[pass][1], th[pass][2]);
        struct topic_ctx tc = { out, pass };
        router_topics(rt->router, topic_metric, &tc);
    }
    help(out, "spoke_process_resident_memory_bytes", "gauge", "Resident set size");
    buf_printf(out, "spoke_process_resident_memory_bytes %lld\n", rss_bytes());
    long long trims, trimmed_kb;
    memtrim_stats(&trims, &trimmed_kb);
    help(out, "spoke_process_idle_trims_total", "counter",
         "Times the whole process went idle and unmapped its read-only file pages");
    buf_printf(out, "spoke_process_idle_trims_total %lld\n", trims);
    help(out, "spoke_process_idle_trimmed_bytes_total", "counter",
         "Resident read-only file pages unmapped by those trims");
    buf_printf(out, "spoke_process_idle_trimmed_bytes_total %lld\n", trimmed_kb * 1024);
    struct recycle_stats rs;
    recycle_stats(&rs);
    help(out, "spoke_recycle_fresh_blocks_total", "counter",
         "Record and row blocks allocated anew (none were free to reuse)");
    buf_printf(out, "spoke_recycle_fresh_blocks_total %llu\n", (unsigned long long)rs.fresh);
    help(out, "spoke_recycle_reused_blocks_total", "counter",
         "Record and row blocks freed on one thread and reused by another");
    buf_printf(out, "spoke_recycle_reused_blocks_total %llu\n",
               (unsigned long long)rs.from_depot);
    help(out, "spoke_recycle_overflow_blocks_total", "counter",
         "Freed record and row blocks given back to the allocator: the depot was full");
    buf_printf(out, "spoke_recycle_overflow_blocks_total %llu\n", (unsigned long long)rs.overflow);
    help(out, "spoke_recycle_blocks", "gauge",
         "Record and row blocks allocated and not given back: in use or waiting to be reused");
    buf_printf(out, "spoke_recycle_blocks %llu\n", (unsigned long long)rs.held);
    help(out, "spoke_recycle_depot_blocks", "gauge",
         "Freed record and row blocks waiting to be reused");
    buf_printf(out, "spoke_recycle_depot_blocks %zu\n", rs.depot_blocks);
    help(out, "spoke_process_uptime_seconds", "gauge", "Seconds since start");
    buf_printf(out, "spoke_process_uptime_seconds %.3f\n",
               (double)(clock_mono_ms() - rt->started_ms) / 1000.0);
    help(out, "spoke_process_start_time_seconds", "gauge", "Start time, seconds since the epoch");
    buf_printf(out, "spoke_process_start_time_seconds %.3f\n",
               (double)rt->started_wall_ms / 1000.0);
    for (size_t i = 0; cs && i < n; i++)
        free(cs[i].pm);
    free(cs);
}
