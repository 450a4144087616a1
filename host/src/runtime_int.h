/* runtime_int - the runtime's insides, shared by runtime.c (instances,
 * threads, start/reload/shutdown) and ctl.c (the REST control functions).
 * Nothing else includes it. */
#ifndef SPOKE_RUNTIME_INT_H
#define SPOKE_RUNTIME_INT_H

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

#include "buf.h"
#include "instance.h"
#include "runtime.h"

/* A topic declared `backend: kafka` in connectors.yaml (fixed at start). */
struct ktopic {
    const char *name;                /* interned */
    int partitions;                  /* -1: the broker's default */
    int replication;
    int create;
};

struct runtime {
    struct runtime_opts opts;
    char *config_path;
    struct worker_settings ws;
    struct registry *reg;
    struct router *router;
    struct offset_store *offsets;
    char offsets_path[PATH_MAX];
    char status_path[PATH_MAX];
    char snap_dir[PATH_MAX];
    char persist_path[PATH_MAX];   /* connectors.json: what REST changed */

    pthread_mutex_t ctl_lock;        /* serializes lifecycle changes: REST, reload,
                                        auto-restart, shutdown */
    pthread_mutex_t lock;            /* conns list (readers: status, metrics, REST GETs) */
    struct spoke_instance **conns;
    size_t nconns;
    struct ktopic *ktopics;          /* Kafka-backed topics */
    size_t nktopics;
    json_t *persisted;               /* {"connectors": {name: entry}}, under ctl_lock */
    json_t *skipped;                 /* {name: entry}: stored REST connectors that no
                                        longer validate, not started; under skipped_lock
                                        (a leaf: REST reads it holding lock) */
    pthread_mutex_t skipped_lock;

    pthread_t hk_thread;
    pthread_mutex_t hk_lock;
    pthread_cond_t hk_cond;
    int hk_stop;
    int hk_kick;
    int64_t started_ms;
    int64_t started_wall_ms;
    int64_t root_log_modified_ms;    /* 0 = never */
    volatile int stopping;
    atomic_int ready;                /* ctl_ready latched: startup finished */
};

const char *rt_state_name(enum conn_state s);
/* host:port of the REST listener (Connect's worker_id). */
const char *rt_worker_id(const struct runtime *rt);
const char *rt_target_name(enum conn_target t);
/* -1 when not one of RUNNING, PAUSED, STOPPED. */
int rt_target_parse(const char *s);

/* The Kafka-backed topic named t (interned), or NULL. */
const struct ktopic *rt_ktopic(const struct runtime *rt, const char *t);

/* Under rt->lock (caller holds it): the instance or NULL. */
struct spoke_instance *rt_find_locked(struct runtime *rt, const char *name);

/* ---- lifecycle, caller holds rt->ctl_lock ---- */

/*
 * Validates config (an object of strings, "name" included or not) for
 * connector `name` and runs it with `target`, replacing a running connector
 * of that name (restarted only when its config changed). Persists the REST
 * state. On validation errors returns -1 with one "key 'k': message" line
 * per error in errs (and per-key detail through the cfgval layer).
 * *created: 1 when the connector is new.
 */
int rt_put(struct runtime *rt, const char *name, json_t *config, enum conn_target target,
           int *created, struct buf *errs);
/* Stops and removes a connector; persists. -1 if unknown, -2 if it is a
 * managed Kafka bridge. */
int rt_delete(struct runtime *rt, const char *name);
/* Why a stored REST connector named name was not started (a copy the
 * caller frees), or NULL when it was not skipped. */
char *rt_skipped_reason(struct runtime *rt, const char *name);
/* A copy of every skipped stored connector: {name: {"reason", "config"
 * (secrets masked), "kind" (enum spoke_kind, -1 unknown), "plugin"}}. */
json_t *rt_skipped(struct runtime *rt);
/* Applies a target state (starting or stopping the task as needed);
 * persist = 1 records it in connectors.json. */
int rt_set_target(struct runtime *rt, struct spoke_instance *inst, enum conn_target target,
                  int persist);
/* Stops (if running) and starts the task again, unless the target is
 * STOPPED. */
int rt_restart(struct runtime *rt, struct spoke_instance *inst);
/* A STOPPED source's offsets were changed: what it reads from them next is
 * not a replay of its previous run (see retire_tracker). */
void rt_forget_replays(struct spoke_instance *inst);

/* Writes connectors.json atomically. 0 or -1 (logged). */
int rt_persist_save(struct runtime *rt);

/* Masked copy of an instance's config (secrets "********"). */
json_t *rt_masked_config(const struct spoke_instance *inst);

#endif
