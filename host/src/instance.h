/* instance - the host's side of struct spoke_instance: one connector and its
 * task. Shared by runtime.c (lifecycle, threads) and api.c (the services
 * table); nothing else includes it. */
#ifndef SPOKE_INSTANCE_H
#define SPOKE_INSTANCE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "ack.h"
#include "buf.h"
#include "hist.h"
#include "pendset.h"
#include "registry.h"
#include "router.h"
#include "spoke/plugin.h"

struct runtime;

/* Kafka Connect's states. */
enum conn_state {
    CONN_UNASSIGNED = 0,
    CONN_RUNNING,
    CONN_PAUSED,
    CONN_STOPPED,
    CONN_FAILED,
    CONN_RESTARTING
};

/* What the user asked for (persisted later by the REST layer). */
enum conn_target {
    TARGET_RUNNING = 0,
    TARGET_PAUSED,
    TARGET_STOPPED
};

#define INST_STAGE_MAX 256
#define INST_TRACE_MAX 1024

/* The furthest input position a stateful transform has processed, per
 * (source connector, partition); both names interned. */
struct covered_pos {
    const char *source;
    const char *part;
    int64_t off;
    uint32_t sub;                   /* records before it at off (ack.h origin_sub) */
};

/* (off, sub) at or before c's position. */
static inline int covered_pos_has(const struct covered_pos *c, int64_t off, uint32_t sub)
{
    return off < c->off || (off == c->off && sub <= c->sub);
}

struct inst_metric {
    char name[65];
    int64_t value;
};

struct spoke_instance {
    struct runtime *rt;
    char *name;
    const struct spoke_plugin *plugin; /* stable until registry_free (entries may move) */
    enum spoke_kind kind;
    struct spoke_config *hcfg;      /* host keys (conncfg_fields) */
    struct spoke_config *pcfg;      /* the plugin's keys */
    char *fingerprint;              /* canonical config text, for reload diffs */
    json_t *config;                 /* the config as given: object of strings, with "name" */
    int from_rest;                  /* its config came from REST (connectors.json) */
    char *file_fp;                  /* fingerprint of connectors.yaml's entry, or NULL */

    const char *out_topic;          /* interned; NULL for sinks */
    const char *dlq_topic;          /* interned; NULL = none */
    const char **in_topics;         /* interned */
    size_t nin;
    /* Kafka-backed topics: this connector reads topic alias_to[k] through
     * the private route alias_from[k] ("<topic>#<connector>"), which its
     * consumer bridge (a kafka_source) writes; records get their topic back
     * when dequeued. */
    const char **alias_from, **alias_to;
    size_t nalias;
    const char *bridge_of;          /* managed bridge of this Kafka-backed topic, or NULL */
    const char *in_regex;
    int tolerance_all;
    int errors_log;
    /* errors.log.enable: at most elog_per_s records logged one by one per
     * second (errors.log.max.per.second, 0 = no limit); the rest counted
     * and summed up once the second is over (the task thread's own;
     * elog_flush). */
    int elog_per_s;
    int64_t elog_window_ms;         /* mono start of the current second */
    int elog_logged;                /* logged one by one in it */
    long long elog_more;            /* failed and not logged one by one */
    char elog_last[256];            /* the reason of the last of those */
    int64_t retry_timeout_ms;       /* -1 = forever */
    int64_t retry_delay_max_ms;
    size_t batch_max;
    size_t queue_cap;
    int64_t snapshot_interval_ms;
    int restart_max;                /* auto-restart: 0 off, -1 forever */
    int64_t restart_backoff_ms;
    int64_t restart_backoff_max_ms;
    int restart_attempts;           /* since the last healthy run */
    int64_t restart_at_ms;          /* mono time of the next auto-restart, 0 = none */
    int64_t running_since_ms;       /* mono time it last became RUNNING */
    atomic_llong restarts;
    int log_level;                  /* -1: the root level applies */
    int64_t log_modified_ms;
    const char *topics_seen[32];    /* active topics (interned), under lock */
    size_t ntopics_seen;
    const char *last_topic;         /* cache for the task thread: last one noted */

    struct rqueue *inq;             /* transforms and sinks */
    struct tracker *tracker;        /* sources */
    /* Sources: the tracker of the previous run when the next one gets a
     * new tracker (a FAILED consumer's replay, a new config, a stop), so
     * that what it emits again is marked replayed (ack.h); and the same
     * for a restart that keeps the tracker. Under rt->lock. */
    struct tracker *replay_src;
    int replay_self;
    int restarting;                 /* restart_one: halting to start again */
    int in_poll;                    /* sources: inside poll() (api poll_started_at) */

    pthread_t thread;
    int has_thread;
    pthread_mutex_t lock;           /* state, trace, metrics, flags below */
    pthread_cond_t cond;
    enum conn_state state;
    enum conn_target target;
    char trace[INST_TRACE_MAX];
    char note[INST_TRACE_MAX];      /* api status_note: "" = none */
    int retrying;
    volatile int stop_req;          /* leave the loop after the current callback */
    volatile int cancel;            /* abort blocking publishes (forced stop) */
    volatile int draining;          /* consumers: no more input will come */

    void *st;                       /* plugin state */
    struct spoke_record *staging[INST_STAGE_MAX];
    size_t nstaging;
    struct spoke_record *cur;       /* record in process(): emit derives from it */
    atomic_size_t batch_rest;       /* records after cur in its batch (input_backlog) */
    /* Sink: records put() and not settled yet (acknowledged, or on the
     * error path), and the ones the plugin reported since the last flush
     * (api sink_record_done / sink_record_failed), in report order. */
    struct pendset pend;
    struct spoke_record **settled;
    size_t nsettled, capsettled;
    /* Stateful transforms: one hold per source tracker on the records
     * absorbed since the last snapshot (ack.h), with the records counted
     * since the last flush; the absorbed records' units, ended in runs. */
    struct inst_hold {
        struct ack_hold *h;
        struct tracker *t;
        size_t pending;
    } *holds;
    size_t nholds, capholds;
    struct origin *acks[INST_STAGE_MAX];
    size_t nacks;
    int64_t next_snapshot_ms;
    /* Stateful transforms: the records it emits get an origin of their own
     * in out (their own tracker: the gate), numbered from 1 by out_seq. A
     * snapshot taken when out_seq was upto becomes durable only once
     * everything up to upto was delivered: until then it waits in snap,
     * with the holds it will release. An output abandoned (discarded by a
     * FAILED consumer) blocks the gate: no snapshot is written again in
     * this run, so a restart replays the input and derives it again. */
    struct tracker *out;
    uint64_t out_seq;
    uint64_t out_hwm;               /* the furthest out_seq of an earlier run */
    struct pending_snap {
        struct buf file;            /* header, positions and state: the .snap */
        struct inst_hold *holds;
        size_t nholds;
        uint64_t upto;
        int active;
        int poll_ms;                /* gate re-check interval, doubling */
        int64_t check_at_ms;        /* next gate check (mono) */
        int64_t since_ms;           /* when it was taken */
    } snap;
    atomic_int gate_blocked;        /* said: no snapshot again in this run */
    int gate_lost;                  /* an output went out untracked (out of memory) */
    struct covered_pos *covered;    /* stateful: positions processed so far */
    size_t ncovered, capcovered;
    size_t cov_hint;                /* covered_note: the entry used last */
    struct covered_pos *replay;     /* stateful: positions the restored snapshot covers */
    size_t nreplay;
    uint64_t notified_gen;          /* sources: last commit generation told to the plugin */
    char *poll_error;               /* sources: emit_error with errors.tolerance=none */

    atomic_llong records_in;
    atomic_llong records_out;
    atomic_llong errors;
    atomic_llong dead_lettered;
    atomic_llong retries;
    atomic_llong last_poll_ms;
    atomic_llong replayed_skipped;  /* stateful: replayed records the snapshot already held */
    int64_t poll_started_ns;        /* sources: start of the current poll (mono ns) */
    struct hist *latency;           /* sinks: source poll start -> durable flush, ns */
    struct inst_metric *metrics;    /* plugin metrics, under lock */
    size_t nmetrics;
};

/* Records that the connector used a topic (GET /connectors/{c}/topics).
 * Cheap when it is the same topic as last time. Task thread only. */
void inst_note_topic(struct spoke_instance *inst, const char *topic);

/* Publishes the staged records; SPOKE_OK or SPOKE_ERR_STOPPED. */
int inst_flush_staging(struct spoke_instance *inst);
/* api emit_error: a source's record takes the error path (runtime.c). */
int inst_source_error(struct spoke_instance *inst, struct spoke_record *rec, int status,
                      const char *reason);

/* The partition of the positions a stateful transform's outputs get in
 * its gate (runtime.c). */
extern const char *const inst_out_part;
/* api emit from a stateful transform: rec gets an origin in inst->out.
 * On failure rec is freed and SPOKE_ERR_NOMEM returned. */
int inst_gate_origin(struct spoke_instance *inst, struct spoke_record *rec);

/* The services table handed to every plugin. */
extern const struct spoke_host_api api_table;

/* The runtime's router and offset store (api.c uses them). */
struct router *runtime_router(struct runtime *rt);
struct offset_store *runtime_offsets(struct runtime *rt);

#endif
