/*
 * kafka_source - consumes Kafka topics as a member of a consumer group
 * (librdkafka's high-level consumer) and commits offsets to the group only
 * once the host has delivered the records downstream; or, with
 * consumer.mode=assign, without any group: every partition of the topics
 * is consumed (librdkafka's partition consumer, rd_kafka_consume_start_queue
 * on one queue: rd_kafka_assign() would need a group.id) from the position
 * the host committed for it (its offset store is the truth; nothing is
 * committed to Kafka), the topics' metadata being read at start and every
 * topic.metadata.refresh.interval.ms to pick up new partitions and topics.
 * What follows about commits, rebalances and orphans is group mode.
 *
 * Records: key, value and headers as they are in Kafka, the message
 * timestamp, and the source position partition = "<topic>/<partition>",
 * offset = Kafka offset + 1: where consumption resumes once the record is
 * delivered, which is exactly what Kafka commits. With value.format=json a
 * value that is not valid JSON (validated with lib/sjson) takes the
 * connector's error path through emit_error() with the message's topic,
 * partition and offset in the reason.
 *
 * Offsets: auto commit is off (forced). The host calls committed() on the
 * task thread when everything up to a position was delivered; the plugin
 * remembers it per assigned partition and commits asynchronously, at most
 * every commit.interval.ms, plus at once (waiting for the result, bounded)
 * when partitions are revoked and when the connector stops. Acknowledgements
 * for partitions not assigned to this member are ignored: their new owner
 * resumes from the group's committed offset (at least once).
 *
 * Brokers down: librdkafka reconnects by itself. While nothing is consumed
 * and every broker is down, poll() returns SPOKE_RETRY with the reason, so
 * the connector's status shows `retrying`, and leaves the consumer alone; a
 * metadata request (at most once a second) tells when the brokers are
 * back. "Every broker down" is librdkafka's _ALL_BROKERS_DOWN, or any
 * other error it reported (e.g. only _TRANSPORT, when a broker connection
 * hangs in setup) followed by a metadata request that finds no broker up;
 * when one is up, the error was a blip and is forgotten. Memory is bounded
 * by the consumer's prefetch queue (queued.max.messages.kbytes) and the
 * host's queues.
 *
 * A partition that leaves the assignment keeps its acknowledged position
 * (an "orphan"); if it comes back and the group's committed offset is
 * behind (the assignment was lost, so nothing could be committed),
 * consumption resumes at that position instead of delivering again what
 * was delivered.
 */
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <spoke/plugin.h>

#include "kafkaconf.h"
#include "sjson.h"

/* Deepest JSON nesting accepted in a value (value.format=json). */
#define KSRC_JSON_DEPTH 1024
/* How long a revocation waits for its offset commit. */
#define KSRC_REVOKE_COMMIT_MS 5000
/* While the brokers are down: how often poll() is called, and how long a
 * metadata probe may wait. */
#define KSRC_DOWN_POLL_MS 500
#define KSRC_PROBE_EVERY_MS 1000
#define KSRC_PROBE_TIMEOUT_MS 200
/* Repeated warnings (commit failures, consume errors): at most one per
 * this long. */
#define KSRC_WARN_EVERY_MS 10000
/* How long an assignment may wait for the group's committed offsets (to
 * resume past them, see ksrc_resume_points). */
#define KSRC_COMMITTED_TIMEOUT_MS 5000
/* Partitions no longer assigned whose acknowledged positions are kept. */
#define KSRC_ORPHANS_MAX 4096
/* Assign mode: how long one read of the topics' metadata may block the
 * task thread (plus fetch.wait.max.ms: the reply can wait behind a fetch
 * on the same connection), and how soon a failed one is tried again. */
#define KSRC_METADATA_TIMEOUT_MS 2000
#define KSRC_METADATA_RETRY_MS 1000

static const char *const ksrc_modes[] = { "group", "assign", NULL };
static const char *const ksrc_formats[] = { "json", "bytes", NULL };
static const char *const ksrc_null_modes[] = { "emit", "error", NULL };

static const struct spoke_config_field ksrc_config[] = {
    { .name = "source.topics", .type = SPOKE_CFG_LIST,
      .doc = "Kafka topics to consume; set this or source.topics.regex", .min = 1,
      .max = 1024 },
    { .name = "source.topics.regex", .type = SPOKE_CFG_STRING,
      .doc = "POSIX extended regex matched against whole Kafka topic names, instead of "
             "source.topics (topics created later join at the next metadata refresh)",
      .min = 1, .max = 1024 },
    { .name = "consumer.mode", .type = SPOKE_CFG_STRING, .default_value = "group",
      .doc = "group: a member of the consumer group group.id, which shares out the partitions "
             "and keeps the offsets; assign: no consumer group, every partition of the topics "
             "is read, resuming from the host's offset store (state.dir)",
      .allowed = ksrc_modes },
    { .name = "group.id", .type = SPOKE_CFG_STRING,
      .doc = "Kafka consumer group; consumption resumes from the group's committed offsets "
             "(consumer.mode group; unset: spoke-<connector name>; refused with assign)",
      .min = 1, .max = 255 },
    { .name = "value.format", .type = SPOKE_CFG_STRING, .default_value = "json",
      .doc = "json: a value that is not valid JSON takes the error path (errors.tolerance, "
             "dead-letter topic); bytes: values are passed on unchecked",
      .allowed = ksrc_formats },
    { .name = "value.null", .type = SPOKE_CFG_STRING, .default_value = "emit",
      .doc = "A message with a null value (tombstone): emit a record with a null value, or "
             "send it to the error path",
      .allowed = ksrc_null_modes },
    { .name = "headers.metadata", .type = SPOKE_CFG_BOOL, .default_value = "false",
      .doc = "Add the headers kafka.topic, kafka.partition and kafka.offset to every record" },
    { .name = "poll.batch.max", .type = SPOKE_CFG_INT, .default_value = "1000",
      .doc = "Most messages emitted by one poll", .min = 1, .max = 100000 },
    { .name = "poll.timeout.ms", .type = SPOKE_CFG_INT, .default_value = "100",
      .doc = "How long a poll waits for a message when none is buffered", .min = 1,
      .max = 1000 },
    { .name = "commit.interval.ms", .type = SPOKE_CFG_LONG, .default_value = "1000",
      .doc = "Group mode: shortest time between two offset commits to Kafka (revocation and "
             "stop commit at once); 0 = commit after every poll that saw new acknowledgements",
      .min = 0, .max = 3600000 },
    { .name = "close.timeout.ms", .type = SPOKE_CFG_LONG, .default_value = "10000",
      .doc = "Group mode: how long stopping may take to commit the last offsets and leave the "
             "group",
      .min = 100, .max = 600000 },
    { .name = "kafka.", .type = SPOKE_CFG_STRING, .flags = SPOKE_CFG_PREFIX,
      .doc = "librdkafka consumer properties for this connector, over the worker's kafka.*",
      .allowed = kafkaconf_consumer_props },
    { 0 }
};

/* One partition assigned to this member (group mode) or consumed
 * (assign mode). */
struct ksrc_part {
    rd_kafka_topic_t *rkt;  /* assign mode: the handle its consumption runs on */
    char *topic;
    int32_t partition;
    char *name;       /* "<topic>/<partition>": the records' source partition */
    int64_t first;    /* offset of the first message consumed since assigned, -1 = none */
    int64_t next;     /* offset after the last message consumed, -1 = none */
    int64_t acked;    /* highest position the host reported delivered, -1 = none */
    int64_t sent;     /* position last committed (or being committed), -1 = none */
};

/* A partition that was assigned to this member and is not any more, with
 * the highest position the host acknowledged for it (acknowledgements of
 * records consumed before the revocation still arrive). */
struct ksrc_orphan {
    char *topic;
    int32_t partition;
    char *name;
    int64_t acked;
};

struct ksrc {
    struct kafkaconf_health h;  /* first: librdkafka's opaque points here */
    const struct spoke_host_api *api;
    struct spoke_instance *inst;
    rd_kafka_t *rk;
    rd_kafka_queue_t *cq;       /* offset commit results */
    int assign;                 /* consumer.mode=assign: no group, the host's offsets */
    char *default_group;        /* group mode without group.id: "spoke-<connector>" */
    rd_kafka_queue_t *aq;       /* assign mode: where every partition's messages arrive */
    rd_kafka_message_t **msgs;  /* assign mode: poll.batch.max messages */
    int64_t reset;              /* assign mode: start offset without a stored position
                                 * (RD_KAFKA_OFFSET_BEGINNING/END; INVALID = error) */
    int64_t refresh_ms;         /* assign mode: metadata refresh period, -1 = never */
    int metadata_timeout_ms;    /* assign mode: how long one metadata read may wait */
    int64_t next_refresh_ms;    /* assign mode: next metadata read, 0 = at once */
    int refreshed;              /* assign mode: the metadata was read once */
    regex_t re;                 /* compiled pattern (have_re) */
    int have_re;

    const char *const *topics;  /* source.topics (host-owned) */
    size_t ntopics;
    char *pattern;              /* "^(<source.topics.regex>)$", or NULL */
    int json;                   /* value.format=json */
    int null_error;             /* value.null=error */
    int meta;                   /* headers.metadata */
    int batch_max;
    int poll_ms;
    int64_t commit_interval_ms;
    int64_t close_timeout_ms;
    struct sj_parser *sj;

    struct ksrc_part *parts;    /* the current assignment */
    size_t nparts, capparts;
    struct ksrc_orphan *orphans;
    size_t norphans, caporphans;
    const rd_kafka_topic_t *hit_rkt;  /* lookup cache: the last message's partition */
    int32_t hit_partition;
    size_t hit;

    int subscribed;             /* start() subscribed (group) or started (assign) */
    int down;                   /* the last poll reported every broker down */
    int stopping;
    int closed;                 /* the consumer left the group */
    int close_tried;            /* ksrc_close ran (once is enough) */
    int64_t close_deadline_ms;  /* while stopping: when ksrc_close gives up */
    int commits_pending;
    int64_t last_commit_ms;
    int64_t last_lag_ms;
    int64_t last_probe_ms;
    int64_t commit_warn_ms;
    int64_t consume_warn_ms;
    char consume_error[512];    /* last consume error, "" = none */
    int64_t consume_error_ms;
};

static struct ksrc *ksrc_of(void *opaque)
{
    return (struct ksrc *)((char *)opaque - offsetof(struct ksrc, h));
}

/* Logs a warning unless one was logged through *last within
 * KSRC_WARN_EVERY_MS (then it goes to debug). */
static void SPOKE_PRINTF(3, 4) ksrc_warn_limited(struct ksrc *s, int64_t *last,
                                                 const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    int64_t now = s->api->mono_ms();
    int warn = *last == 0 || now - *last >= KSRC_WARN_EVERY_MS;
    if (warn)
        *last = now;
    s->api->log(s->inst, warn ? SPOKE_LOG_WARN : SPOKE_LOG_DEBUG, "%s", buf);
}

/* ---- the assignment ---- */

static struct ksrc_part *part_find(struct ksrc *s, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < s->nparts; i++)
        if (s->parts[i].partition == partition && strcmp(s->parts[i].topic, topic) == 0)
            return &s->parts[i];
    return NULL;
}

static struct ksrc_part *part_find_name(struct ksrc *s, const char *name)
{
    for (size_t i = 0; i < s->nparts; i++)
        if (strcmp(s->parts[i].name, name) == 0)
            return &s->parts[i];
    return NULL;
}

static int part_add(struct ksrc *s, const char *topic, int32_t partition)
{
    if (part_find(s, topic, partition))
        return 0;
    if (s->nparts == s->capparts) {
        size_t cap = s->capparts ? s->capparts * 2 : 16;
        struct ksrc_part *p = realloc(s->parts, cap * sizeof(*p));
        if (!p)
            return -1;
        s->parts = p;
        s->capparts = cap;
    }
    struct ksrc_part *p = &s->parts[s->nparts];
    size_t tl = strlen(topic);
    p->topic = malloc(tl + 1);
    p->name = malloc(tl + 16);
    if (!p->topic || !p->name) {
        free(p->topic);
        free(p->name);
        return -1;
    }
    memcpy(p->topic, topic, tl + 1);
    snprintf(p->name, tl + 16, "%s/%d", topic, (int)partition);
    p->rkt = NULL;
    p->partition = partition;
    p->first = p->next = p->acked = p->sent = -1;
    s->nparts++;
    s->hit_rkt = NULL;
    return 0;
}

static struct ksrc_orphan *orphan_find(struct ksrc *s, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < s->norphans; i++)
        if (s->orphans[i].partition == partition && strcmp(s->orphans[i].topic, topic) == 0)
            return &s->orphans[i];
    return NULL;
}

static struct ksrc_orphan *orphan_find_name(struct ksrc *s, const char *name)
{
    for (size_t i = 0; i < s->norphans; i++)
        if (strcmp(s->orphans[i].name, name) == 0)
            return &s->orphans[i];
    return NULL;
}

static void orphan_remove(struct ksrc *s, struct ksrc_orphan *o)
{
    free(o->topic);
    free(o->name);
    size_t i = (size_t)(o - s->orphans);
    memmove(o, o + 1, (s->norphans - i - 1) * sizeof(*o));
    s->norphans--;
}

/* Drops a partition from the assignment. Its acknowledged position is
 * kept as an orphan, so it is not lost if the partition comes back
 * (strings move over). */
static void part_remove(struct ksrc *s, struct ksrc_part *p)
{
    if (p->rkt) {
        /* Assign mode: what it fetched and was not consumed is dropped. */
        rd_kafka_consume_stop(p->rkt, p->partition);
        rd_kafka_topic_destroy(p->rkt);
        p->rkt = NULL;
    }
    /* Kept when something of it was consumed: acknowledgements of those
     * records may still come (group mode: in assign mode the host's offset
     * store is the truth). */
    int keep = !s->assign && (p->first >= 0 || p->acked >= 0);
    struct ksrc_orphan *o = orphan_find(s, p->topic, p->partition);
    if (o)
        orphan_remove(s, o);
    if (keep && s->norphans == KSRC_ORPHANS_MAX)
        orphan_remove(s, &s->orphans[0]); /* the oldest */
    if (keep && s->norphans == s->caporphans) {
        size_t cap = s->caporphans ? s->caporphans * 2 : 16;
        struct ksrc_orphan *no = realloc(s->orphans, cap * sizeof(*no));
        if (no) {
            s->orphans = no;
            s->caporphans = cap;
        }
    }
    if (keep && s->norphans < s->caporphans) {
        s->orphans[s->norphans++] = (struct ksrc_orphan){ p->topic, p->partition, p->name,
                                                          p->acked };
    } else {
        free(p->topic);
        free(p->name);
    }
    size_t i = (size_t)(p - s->parts);
    s->parts[i] = s->parts[--s->nparts];
    s->hit_rkt = NULL;
}

/* The assigned partition of a message (cached: messages come in runs of
 * one partition). NULL if the partition is not assigned. */
static struct ksrc_part *part_of(struct ksrc *s, const rd_kafka_message_t *m)
{
    if (s->hit_rkt == m->rkt && s->hit_partition == m->partition && s->hit < s->nparts)
        return &s->parts[s->hit];
    struct ksrc_part *p = part_find(s, rd_kafka_topic_name(m->rkt), m->partition);
    if (p) {
        s->hit_rkt = m->rkt;
        s->hit_partition = m->partition;
        s->hit = (size_t)(p - s->parts);
    }
    return p;
}

/* "t/0, t/1, ..." of a partition list, cut to fit out. */
static void list_text(const rd_kafka_topic_partition_list_t *l, char *out, size_t size)
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; l && i < l->cnt && n + 1 < size; i++) {
        int w = snprintf(out + n, size - n, "%s%s/%d", i ? ", " : "", l->elems[i].topic,
                         (int)l->elems[i].partition);
        if (w < 0 || (size_t)w >= size - n) {
            if (size > 4)
                memcpy(out + size - 4, "...", 4);
            return;
        }
        n += (size_t)w;
    }
}

/* ---- offset commits ---- */

/* Result of a commit, served from s->cq on the task thread. */
static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    struct ksrc *s = opaque;
    s->commits_pending--;
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return;
    rd_kafka_resp_err_t perr = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &offsets->elems[i];
        if (!e->err && !err)
            continue;
        if (!perr)
            perr = e->err ? e->err : err;
        /* Commit it again next time (if it is still ours). */
        struct ksrc_part *p = part_find(s, e->topic, e->partition);
        if (p && p->sent == e->offset)
            p->sent = -1;
    }
    if (!perr)
        perr = err;
    if (perr) {
        s->api->metric_add(s->inst, "commit_errors", 1);
        ksrc_warn_limited(s, &s->commit_warn_ms,
                          "kafka: offset commit failed: %s: %s (committed again later)",
                          rd_kafka_err2name(perr), rd_kafka_err2str(perr));
    } else {
        s->api->metric_add(s->inst, "commits", 1);
    }
}

/*
 * Commits the acknowledged positions not committed yet, of every assigned
 * partition or (only != NULL) of those in only. Asynchronous; with
 * wait_ms > 0, waits up to that long for every pending commit's result.
 */
static void ksrc_commit(struct ksrc *s, const rd_kafka_topic_partition_list_t *only,
                        int64_t wait_ms)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    for (size_t i = 0; i < s->nparts; i++) {
        struct ksrc_part *p = &s->parts[i];
        if (p->acked < 0 || p->acked == p->sent)
            continue;
        if (only && !rd_kafka_topic_partition_list_find(only, p->topic, p->partition))
            continue;
        if (!l && !(l = rd_kafka_topic_partition_list_new((int)s->nparts)))
            return;
        rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = p->acked;
    }
    if (l) {
        rd_kafka_resp_err_t err = rd_kafka_commit_queue(s->rk, l, s->cq, on_commit, s);
        if (err) {
            s->api->metric_add(s->inst, "commit_errors", 1);
            ksrc_warn_limited(s, &s->commit_warn_ms, "kafka: cannot commit offsets: %s",
                              rd_kafka_err2str(err));
        } else {
            s->commits_pending++;
            for (int i = 0; i < l->cnt; i++) {
                struct ksrc_part *p = part_find(s, l->elems[i].topic, l->elems[i].partition);
                if (p)
                    p->sent = l->elems[i].offset;
            }
        }
        rd_kafka_topic_partition_list_destroy(l);
    }
    if (wait_ms <= 0)
        return;
    int64_t deadline = s->api->mono_ms() + wait_ms;
    while (s->commits_pending > 0) {
        int64_t left = deadline - s->api->mono_ms();
        if (left <= 0) {
            s->api->log(s->inst, SPOKE_LOG_WARN,
                        "kafka: %d offset commit(s) unconfirmed after %lld ms; their records "
                        "may be consumed again", s->commits_pending, (long long)wait_ms);
            break;
        }
        rd_kafka_queue_poll_callback(s->cq, (int)(left < 100 ? left : 100));
    }
}

/* ---- rebalances ---- */

/*
 * For newly assigned partitions this member owned before (orphans): when
 * the host acknowledged more of it than the group has committed - the
 * assignment was lost before a commit could go out, e.g. while the brokers
 * were down - consumption starts at the acknowledged position instead
 * (everything before it was delivered), and that position is committed at
 * the next commit. Saves re-delivering what the host already delivered. The
 * group's offsets are read fresh (another member may have moved them on);
 * when they cannot be read in time, the partition resumes at the group's
 * offset as usual.
 */
static void ksrc_resume_points(struct ksrc *s, rd_kafka_t *rk,
                               rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *ask = NULL;
    for (int i = 0; parts && i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &parts->elems[i];
        if (!orphan_find(s, e->topic, e->partition))
            continue;
        if (!ask && !(ask = rd_kafka_topic_partition_list_new(parts->cnt)))
            return;
        rd_kafka_topic_partition_list_add(ask, e->topic, e->partition);
    }
    if (!ask)
        return;
    rd_kafka_resp_err_t err = rd_kafka_committed(rk, ask, KSRC_COMMITTED_TIMEOUT_MS);
    for (int i = 0; i < ask->cnt; i++) {
        const rd_kafka_topic_partition_t *c = &ask->elems[i];
        struct ksrc_orphan *o = orphan_find(s, c->topic, c->partition);
        struct ksrc_part *p = part_find(s, c->topic, c->partition);
        rd_kafka_topic_partition_t *e =
            rd_kafka_topic_partition_list_find(parts, c->topic, c->partition);
        if (!err && !c->err && p && e && o->acked > 0 && o->acked > c->offset) {
            e->offset = o->acked;
            p->acked = o->acked;
            p->first = o->acked - 1;
            p->sent = c->offset >= 0 ? c->offset : -1;
            s->api->log(s->inst, SPOKE_LOG_INFO,
                        "kafka: %s resumes at %lld, past the group's committed offset %lld: "
                        "the records before it were delivered when the partition was ours",
                        p->name, (long long)o->acked, (long long)c->offset);
        }
        orphan_remove(s, o);
    }
    if (err)
        s->api->log(s->inst, SPOKE_LOG_DEBUG, "kafka: cannot read the group's committed "
                    "offsets (%s): resuming from them as librdkafka reads them",
                    rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(ask);
}

static void ksrc_rebalance(struct ksrc *s, rd_kafka_t *rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t *parts)
{
    const struct spoke_host_api *api = s->api;
    const char *proto = rd_kafka_rebalance_protocol(rk);
    int coop = proto && strcmp(proto, "COOPERATIVE") == 0;
    char names[256];
    list_text(parts, names, sizeof(names));
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; parts && i < parts->cnt; i++)
            if (part_add(s, parts->elems[i].topic, parts->elems[i].partition) != 0)
                api->log(s->inst, SPOKE_LOG_ERROR, "out of memory tracking partition %s/%d: "
                         "its offsets will not be committed", parts->elems[i].topic,
                         (int)parts->elems[i].partition);
        api->log(s->inst, SPOKE_LOG_INFO, "kafka: assigned %d partition(s)%s%s: %s",
                 parts ? parts->cnt : 0, coop ? " (incremental)" : "",
                 s->stopping ? " while stopping" : "", names);
        /* Consumption resumes at the group's committed offsets (or
         * auto.offset.reset), or past them for partitions whose delivery
         * this member saw and could not commit. */
        if (!s->stopping)
            ksrc_resume_points(s, rk, parts);
        if (coop)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            aerr = rd_kafka_assign(rk, parts);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        int lost = rd_kafka_assignment_lost(rk);
        /* Lost partitions may be owned by another member already: a commit
         * would fail or, worse, move its offsets back. */
        int64_t wait = KSRC_REVOKE_COMMIT_MS;
        if (s->stopping)
            wait = s->close_deadline_ms - api->mono_ms();
        if (!lost)
            ksrc_commit(s, coop ? parts : NULL, wait > 0 ? wait : 1);
        api->log(s->inst, SPOKE_LOG_INFO, "kafka: %s %d partition(s)%s: %s",
                 lost ? "lost" : "revoked", parts ? parts->cnt : 0,
                 lost ? " (not committed: the group moved on)" : "", names);
        if (coop) {
            for (int i = 0; parts && i < parts->cnt; i++) {
                struct ksrc_part *p = part_find(s, parts->elems[i].topic,
                                                parts->elems[i].partition);
                if (p)
                    part_remove(s, p);
            }
            error = rd_kafka_incremental_unassign(rk, parts);
        } else {
            while (s->nparts)
                part_remove(s, &s->parts[s->nparts - 1]);
            aerr = rd_kafka_assign(rk, NULL);
        }
    } else {
        api->log(s->inst, SPOKE_LOG_WARN, "kafka: rebalance failed: %s: dropping the assignment",
                 rd_kafka_err2str(err));
        while (s->nparts)
            part_remove(s, &s->parts[s->nparts - 1]);
        aerr = rd_kafka_assign(rk, NULL);
    }
    if (error) {
        api->log(s->inst, SPOKE_LOG_ERROR, "kafka: cannot update the assignment: %s",
                 rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (aerr) {
        api->log(s->inst, SPOKE_LOG_ERROR, "kafka: cannot update the assignment: %s",
                 rd_kafka_err2str(aerr));
    }
    api->metric_add(s->inst, "rebalances", 1);
    api->metric_set(s->inst, "assigned_partitions", (int64_t)s->nparts);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    ksrc_rebalance(ksrc_of(opaque), rk, err, parts);
}

/* ---- assign mode ---- */

/* Where a partition without a stored position starts, and how often the
 * topics are looked up again: read back from the layered config. */
static void ksrc_assign_conf(struct ksrc *s, rd_kafka_conf_t *conf)
{
    char v[64];
    size_t n = sizeof(v);
    s->reset = RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_conf_get(conf, "auto.offset.reset", v, &n) == RD_KAFKA_CONF_OK) {
        if (strcmp(v, "largest") == 0 || strcmp(v, "latest") == 0 || strcmp(v, "end") == 0)
            s->reset = RD_KAFKA_OFFSET_END;
        else if (strcmp(v, "error") == 0)
            s->reset = RD_KAFKA_OFFSET_INVALID;
    }
    n = sizeof(v);
    s->metadata_timeout_ms = KSRC_METADATA_TIMEOUT_MS;
    if (rd_kafka_conf_get(conf, "fetch.wait.max.ms", v, &n) == RD_KAFKA_CONF_OK)
        s->metadata_timeout_ms += atoi(v);
    n = sizeof(v);
    s->refresh_ms = 300000;
    if (rd_kafka_conf_get(conf, "topic.metadata.refresh.interval.ms", v, &n) == RD_KAFKA_CONF_OK)
        s->refresh_ms = strtoll(v, NULL, 10);
}

/* Kafka's own topics are read only when listed by name. */
static int ksrc_assign_wants(struct ksrc *s, const char *topic)
{
    if (s->have_re)
        return strncmp(topic, "__", 2) != 0 && regexec(&s->re, topic, 0, NULL, 0) == 0;
    for (size_t i = 0; i < s->ntopics; i++)
        if (strcmp(s->topics[i], topic) == 0)
            return 1;
    return 0;
}

/*
 * Starts consuming one partition: at the position the host committed for
 * it (offset_get: Kafka offset + 1, the next message to read), or at
 * auto.offset.reset when it has none. Returns SPOKE_OK, or an error with
 * errstr (then the partition is not tracked).
 */
static int ksrc_assign_start(struct ksrc *s, const char *topic, int32_t partition,
                             int *stored, char *errstr, size_t errstr_size)
{
    if (part_add(s, topic, partition) != 0) {
        snprintf(errstr, errstr_size, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    struct ksrc_part *p = &s->parts[s->nparts - 1];
    int64_t off;
    *stored = s->api->offset_get(s->inst, p->name, &off) == SPOKE_OK && off >= 0;
    if (!*stored)
        off = s->reset;
    if (off == RD_KAFKA_OFFSET_INVALID) {
        snprintf(errstr, errstr_size, "kafka: %s has no position in the host's offset store "
                 "and auto.offset.reset is error", p->name);
        part_remove(s, p);
        return SPOKE_ERR_STATE;
    }
    p->rkt = rd_kafka_topic_new(s->rk, topic, NULL);
    if (!p->rkt || rd_kafka_consume_start_queue(p->rkt, partition, off, s->aq) == -1) {
        snprintf(errstr, errstr_size, "kafka: cannot start consuming %s: %s", p->name,
                 rd_kafka_err2str(rd_kafka_last_error()));
        if (p->rkt)
            rd_kafka_topic_destroy(p->rkt);
        p->rkt = NULL;
        part_remove(s, p);
        return SPOKE_ERR;
    }
    return SPOKE_OK;
}

/*
 * Reads the cluster's topics and starts every partition of source.topics
 * (or of the topics matching source.topics.regex) not consumed yet: at
 * start, then every topic.metadata.refresh.interval.ms, so partitions and
 * matching topics created later are picked up. Partitions of topics that
 * disappeared are stopped. Returns SPOKE_OK, SPOKE_RETRY (the metadata
 * could not be read: errstr says why) or an error.
 */
static int ksrc_assign_refresh(struct ksrc *s, char *errstr, size_t errstr_size)
{
    const struct spoke_host_api *api = s->api;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(s->rk, 1, NULL, &md, s->metadata_timeout_ms);
    if (err) {
        char cond[256];
        kafkaconf_health_get(&s->h, cond, sizeof(cond));
        snprintf(errstr, errstr_size, "kafka: cannot read the topics' metadata: %s%s%s",
                 rd_kafka_err2str(err), cond[0] ? "; " : "", cond);
        return SPOKE_RETRY;
    }
    int rc = SPOKE_OK, added = 0, stored = 0;
    char names[256] = "", missing[256] = "";
    size_t nn = 0;
    for (int t = 0; t < md->topic_cnt && rc == SPOKE_OK; t++) {
        const rd_kafka_metadata_topic_t *mt = &md->topics[t];
        if (mt->err || !ksrc_assign_wants(s, mt->topic))
            continue;
        for (int i = 0; i < mt->partition_cnt && rc == SPOKE_OK; i++) {
            if (part_find(s, mt->topic, mt->partitions[i].id))
                continue;
            int st = 0;
            rc = ksrc_assign_start(s, mt->topic, mt->partitions[i].id, &st, errstr,
                                   errstr_size);
            if (rc != SPOKE_OK)
                break;
            added++;
            stored += st;
            if (nn + 1 < sizeof(names)) {
                int w = snprintf(names + nn, sizeof(names) - nn, "%s%s", nn ? ", " : "",
                                 s->parts[s->nparts - 1].name);
                nn = w < 0 ? sizeof(names) : nn + (size_t)w;
            }
        }
    }
    /* Topics deleted since (absent from the metadata): stopped. A topic
     * listed with an error keeps its partitions (librdkafka retries). */
    for (size_t i = s->nparts; i-- > 0 && rc == SPOKE_OK;) {
        struct ksrc_part *p = &s->parts[i];
        int found = 0;
        for (int t = 0; t < md->topic_cnt && !found; t++) {
            const rd_kafka_metadata_topic_t *mt = &md->topics[t];
            if (strcmp(mt->topic, p->topic) != 0)
                continue;
            found = mt->err != RD_KAFKA_RESP_ERR_NO_ERROR;
            for (int k = 0; k < mt->partition_cnt && !found; k++)
                found = mt->partitions[k].id == p->partition;
        }
        if (!found) {
            api->log(s->inst, SPOKE_LOG_WARN, "kafka: %s is not in the cluster's metadata any "
                     "more: stopped consuming it", p->name);
            part_remove(s, p);
        }
    }
    /* Listed topics that do not exist (yet): the status says so while
     * nothing is consumed. */
    size_t nm = 0;
    for (size_t i = 0; i < s->ntopics; i++) {
        int found = 0;
        for (int t = 0; t < md->topic_cnt && !found; t++)
            found = !md->topics[t].err && strcmp(md->topics[t].topic, s->topics[i]) == 0;
        if (!found && nm + 1 < sizeof(missing)) {
            int w = snprintf(missing + nm, sizeof(missing) - nm, "%s%s", nm ? ", " : "",
                             s->topics[i]);
            nm = w < 0 ? sizeof(missing) : nm + (size_t)w;
        }
    }
    rd_kafka_metadata_destroy(md);
    if (missing[0]) {
        snprintf(s->consume_error, sizeof(s->consume_error), "source.topics: not in the "
                 "cluster (read once they exist, checked every %lld ms): %s",
                 (long long)s->refresh_ms, missing);
        s->consume_error_ms = api->mono_ms();
        ksrc_warn_limited(s, &s->consume_warn_ms, "kafka: %s", s->consume_error);
    }
    if (added)
        api->log(s->inst, SPOKE_LOG_INFO, "kafka: consuming %d more partition(s) without a "
                 "consumer group (%d from the host's offset store, %d at auto.offset.reset): "
                 "%s%s", added, stored, added - stored, names,
                 nn >= sizeof(names) - 1 ? "..." : "");
    if (added || !s->refreshed)
        api->metric_set(s->inst, "assigned_partitions", (int64_t)s->nparts);
    s->refreshed = 1;
    return rc;
}

/* ---- lifecycle ---- */

/* The pattern librdkafka subscribes to for source.topics.regex, compiled
 * into *re: a subscription starting with '^' is a regex (POSIX extended on
 * this platform); anchoring both ends makes it match whole names, like the
 * host's topics.regex. On success the caller frees *pattern and regfrees
 * *re. */
static int ksrc_compile(const char *regex, char **pattern, regex_t *re, char *errstr,
                        size_t errstr_size)
{
    size_t n = strlen(regex) + 5;
    if (!(*pattern = malloc(n))) {
        snprintf(errstr, errstr_size, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    snprintf(*pattern, n, "^(%s)$", regex);
    int rerr = regcomp(re, *pattern, REG_EXTENDED | REG_NOSUB);
    if (rerr != 0) {
        char why[128];
        regerror(rerr, re, why, sizeof(why));
        regfree(re);
        free(*pattern);
        *pattern = NULL;
        snprintf(errstr, errstr_size, "source.topics.regex: %s", why);
        return SPOKE_ERR_INVALID;
    }
    return SPOKE_OK;
}

/* The librdkafka layers of kafkaconf_build: defaults (resume from the
 * beginning when the group has no offset, and keep the prefetch queue
 * small: bounded memory) and what the delivery guarantee depends on
 * (offsets are committed by this plugin only, after the host acknowledged
 * them; assign mode has no group at all, even when the worker section
 * names one). */
struct ksrc_layers {
    const char *defaults[9];
    const char *forced[9];
};

static void ksrc_layers_init(struct ksrc_layers *l, int assign, const char *client_id,
                             const char *group)
{
    *l = (struct ksrc_layers){
        .defaults = {
            "client.id", client_id,
            "auto.offset.reset", "earliest",
            "queued.max.messages.kbytes", "16384",
            "queued.min.messages", "100000",
            NULL
        },
        .forced = {
            "group.id", assign ? "" : group,
            "enable.auto.commit", "false",
            "enable.auto.offset.store", "false",
            "enable.partition.eof", "false",
            NULL
        },
    };
}

/* Rules between keys and inside values that the config table cannot say;
 * the host runs this before init (spoke validate, load, REST), and init
 * runs it again, so they live here only. No side effects: the regex is
 * compiled and freed, the librdkafka properties are applied to a config
 * that is destroyed (kafkaconf_check). */
static int ksrc_rules(const struct spoke_host_api *api, const struct spoke_config *cfg,
                      struct problems *pr)
{
    int assign = strcmp(api->config_string(cfg, "consumer.mode"), "assign") == 0;
    const char *group = api->config_string(cfg, "group.id");
    const char *regex = api->config_string(cfg, "source.topics.regex");
    const char *const *topics = NULL;
    size_t ntopics = api->config_list(cfg, "source.topics", &topics);
    problems_init(pr);
    if (assign && group)
        problem(pr, "group.id", "group.id cannot be set with consumer.mode assign: assign mode "
                "joins no consumer group and resumes from the host's offset store; remove "
                "group.id, or use consumer.mode group");
    if ((ntopics > 0) == (regex != NULL))
        problem(pr, regex ? "source.topics.regex" : "source.topics", "set exactly one of "
                "source.topics (a list of Kafka topics) and source.topics.regex");
    for (size_t i = 0; i < ntopics; i++)
        if (!kafkaconf_topic_ok(topics[i]))
            problem(pr, "source.topics", "source.topics: '%.64s' is not a valid Kafka topic name "
                    "([a-zA-Z0-9._-], 1 to 249 characters)", topics[i]);
    if (regex) {
        char *pattern, msg[SPOKE_ERRSTR_SIZE];
        regex_t re;
        int rc = ksrc_compile(regex, &pattern, &re, msg, sizeof(msg));
        if (rc == SPOKE_ERR_NOMEM)
            return rc;
        if (rc != SPOKE_OK) {
            problem(pr, "source.topics.regex", "%s", msg);
        } else {
            regfree(&re);
            free(pattern);
        }
    }
    if (!SPOKE_API_HAS(api, config_prefixed))
        return SPOKE_OK; /* init refuses such a host */
    /* The values of client.id and group.id are the instance's; any text
     * is valid there. */
    struct ksrc_layers l;
    ksrc_layers_init(&l, assign, "spoke-check", group ? group : "spoke-check");
    kafkaconf_check(api, cfg, l.defaults, l.forced, pr);
    return SPOKE_OK;
}

static int ksrc_check(const struct spoke_host_api *api, const struct spoke_config *cfg,
                      const char **key, char *errstr, size_t errstr_size)
{
    struct problems pr;  /* each at its key, through check_problem */
    return problems_finish(ksrc_rules(api, cfg, &pr), &pr, api, cfg, 1, key, errstr, errstr_size);
}

static void ksrc_free(struct ksrc *s)
{
    while (s->nparts)
        part_remove(s, &s->parts[s->nparts - 1]);
    while (s->norphans)
        orphan_remove(s, &s->orphans[s->norphans - 1]);
    free(s->orphans);
    free(s->parts);
    free(s->pattern);
    free(s->msgs);
    free(s->default_group);
    if (s->have_re)
        regfree(&s->re);
    if (s->sj)
        sj_parser_free(s->sj);
    kafkaconf_health_destroy(&s->h);
    free(s);
}

static int ksrc_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                     const struct spoke_config *cfg, void **out, char *errstr, size_t errstr_size)
{
    if (!SPOKE_API_HAS(api, emit_error)) {
        snprintf(errstr, errstr_size,
                 "kafka_source needs a newer host (emit_error, config_prefixed, worker_config)");
        return SPOKE_ERR_STATE;
    }
    const char *bad_key; /* the host ran ksrc_check already; init keeps the rules for itself */
    struct problems pr;  /* joined: check_problem is for check() alone */
    int rc = problems_finish(ksrc_rules(api, cfg, &pr), &pr, api, cfg, 0, &bad_key, errstr,
                             errstr_size);
    if (rc != SPOKE_OK)
        return rc;
    struct ksrc *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(errstr, errstr_size, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    kafkaconf_health_init(&s->h, api, inst);
    s->api = api;
    s->inst = inst;
    s->json = strcmp(api->config_string(cfg, "value.format"), "json") == 0;
    s->null_error = strcmp(api->config_string(cfg, "value.null"), "error") == 0;
    s->meta = api->config_bool(cfg, "headers.metadata");
    s->batch_max = (int)api->config_int(cfg, "poll.batch.max");
    s->poll_ms = (int)api->config_int(cfg, "poll.timeout.ms");
    s->commit_interval_ms = api->config_int(cfg, "commit.interval.ms");
    s->close_timeout_ms = api->config_int(cfg, "close.timeout.ms");
    s->assign = strcmp(api->config_string(cfg, "consumer.mode"), "assign") == 0;
    const char *group = api->config_string(cfg, "group.id");
    const char *regex = api->config_string(cfg, "source.topics.regex");
    s->ntopics = api->config_list(cfg, "source.topics", &s->topics);
    rc = SPOKE_ERR_INVALID;

    if (!s->assign && !group) {
        /* Like Kafka Connect's connect-<name>: one group per connector. */
        const char *name = api->instance_name(inst);
        size_t len = strlen(name) + sizeof("spoke-");
        s->default_group = malloc(len);
        if (!s->default_group) {
            snprintf(errstr, errstr_size, "out of memory");
            rc = SPOKE_ERR_NOMEM;
            goto fail;
        }
        snprintf(s->default_group, len, "spoke-%s", name);
        group = s->default_group;
    }
    if (regex) {
        rc = ksrc_compile(regex, &s->pattern, &s->re, errstr, errstr_size);
        if (rc != SPOKE_OK)
            goto fail;
        s->have_re = 1; /* assign mode matches the cluster's topics with it */
        rc = SPOKE_ERR_INVALID;
    }
    if (s->assign && !(s->msgs = calloc((size_t)s->batch_max, sizeof(*s->msgs)))) {
        snprintf(errstr, errstr_size, "out of memory");
        rc = SPOKE_ERR_NOMEM;
        goto fail;
    }
    if (s->json && !(s->sj = sj_parser_new(SIZE_MAX / 4, KSRC_JSON_DEPTH))) {
        snprintf(errstr, errstr_size, "out of memory");
        rc = SPOKE_ERR_NOMEM;
        goto fail;
    }

    char client_id[160];
    snprintf(client_id, sizeof(client_id), "spoke-%s", api->instance_name(inst));
    struct ksrc_layers l;
    ksrc_layers_init(&l, s->assign, client_id, group);
    rd_kafka_conf_t *conf = kafkaconf_build(api, inst, cfg, l.defaults, l.forced, &s->h, errstr,
                                            errstr_size);
    if (!conf)
        goto fail;
    if (s->assign)
        ksrc_assign_conf(s, conf);
    if (!s->assign)
        rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    char why[256];
    s->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (!s->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "cannot create the Kafka consumer: %s", why);
        goto fail;
    }
    /* Group mode: errors and rebalances are served by
     * rd_kafka_consumer_poll(); assign mode: errors by rd_kafka_poll(). */
    if (!s->assign)
        rd_kafka_poll_set_consumer(s->rk);
    s->cq = rd_kafka_queue_new(s->rk);
    if (s->cq && s->assign && !(s->aq = rd_kafka_queue_new(s->rk))) {
        rd_kafka_queue_destroy(s->cq);
        s->cq = NULL;
    }
    if (!s->cq) {
        snprintf(errstr, errstr_size, "out of memory");
        rd_kafka_destroy_flags(s->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        rc = SPOKE_ERR_NOMEM;
        goto fail;
    }
    *out = s;
    return SPOKE_OK;
fail:
    ksrc_free(s);
    return rc;
}

static int ksrc_start(void *st, char *errstr, size_t errstr_size)
{
    struct ksrc *s = st;
    if (s->assign) {
        /* The first poll reads the metadata and starts the partitions. */
        s->subscribed = 1;
        if (s->pattern)
            s->api->log(s->inst, SPOKE_LOG_INFO, "kafka: assign mode (no consumer group): every "
                        "partition of the topics matching %s", s->pattern);
        else
            s->api->log(s->inst, SPOKE_LOG_INFO, "kafka: assign mode (no consumer group): every "
                        "partition of %zu topic(s), first '%s'", s->ntopics, s->topics[0]);
        return SPOKE_OK;
    }
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new(s->pattern ? 1 : (int)s->ntopics);
    if (s->pattern)
        rd_kafka_topic_partition_list_add(l, s->pattern, RD_KAFKA_PARTITION_UA);
    for (size_t i = 0; !s->pattern && i < s->ntopics; i++)
        rd_kafka_topic_partition_list_add(l, s->topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(s->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        snprintf(errstr, errstr_size, "cannot subscribe: %s", rd_kafka_err2str(err));
        return SPOKE_ERR_INVALID;
    }
    s->subscribed = 1;
    if (s->pattern)
        s->api->log(s->inst, SPOKE_LOG_INFO, "kafka: subscribed to topics matching %s",
                    s->pattern);
    else
        s->api->log(s->inst, SPOKE_LOG_INFO, "kafka: subscribed to %zu topic(s), first '%s'",
                    s->ntopics, s->topics[0]);
    return SPOKE_OK;
}

/* ---- consuming ---- */

/*
 * Turns one message into a record and emits it (or sends it to the error
 * path). Returns SPOKE_OK, SPOKE_ERR_STOPPED (the host is stopping),
 * SPOKE_ERR_STATE (the connector fails: errstr says why) or an error.
 */
static int ksrc_message(struct ksrc *s, const rd_kafka_message_t *m, char *errstr,
                        size_t errstr_size)
{
    const struct spoke_host_api *api = s->api;
    const char *topic = rd_kafka_topic_name(m->rkt);
    struct ksrc_part *p = part_of(s, m);
    char tmp[300];
    const char *pname = tmp;
    if (p) {
        pname = p->name;
        if (p->first < 0)
            p->first = m->offset;
        p->next = m->offset + 1;
    } else {
        /* Not in the assignment (cannot happen with librdkafka's barriers):
         * delivered all the same, its acknowledgement is ignored. */
        snprintf(tmp, sizeof(tmp), "%s/%d", topic, (int)m->partition);
    }
    struct spoke_record *rec = api->record_new(s->inst, NULL, m->key, m->key ? m->key_len : 0,
                                               m->payload, m->payload ? m->len : 0);
    if (!rec) {
        snprintf(errstr, errstr_size, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    int rc = api->record_set_position(rec, pname, m->offset + 1);
    if (rc != SPOKE_OK) {
        api->record_free(rec);
        snprintf(errstr, errstr_size, "cannot set the source position: %s", api->strerror(rc));
        return rc;
    }
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    if (tstype != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts >= 0)
        api->record_set_timestamp(rec, ts);
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *val;
        size_t len;
        for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &len) ==
                           RD_KAFKA_RESP_ERR_NO_ERROR; i++)
            if ((rc = api->record_header_add(rec, name, val, val ? len : 0)) != SPOKE_OK)
                goto header_failed;
    }
    if (s->meta) {
        char num[32];
        int n;
        if ((rc = api->record_header_add(rec, "kafka.topic", topic, strlen(topic))) != SPOKE_OK)
            goto header_failed;
        n = snprintf(num, sizeof(num), "%d", (int)m->partition);
        if ((rc = api->record_header_add(rec, "kafka.partition", num, (size_t)n)) != SPOKE_OK)
            goto header_failed;
        n = snprintf(num, sizeof(num), "%lld", (long long)m->offset);
        if ((rc = api->record_header_add(rec, "kafka.offset", num, (size_t)n)) != SPOKE_OK)
            goto header_failed;
    }

    const char *bad = NULL;
    char why[160];
    if (!m->payload) {
        if (s->null_error)
            bad = "the value is null (a tombstone) and value.null is error";
    } else if (s->json) {
        struct sj_value root;
        char jerr[120];
        if (sj_parse(s->sj, m->payload, m->len, &root, jerr, sizeof(jerr)) != 0) {
            snprintf(why, sizeof(why), "the value is not valid JSON (%s)", jerr);
            bad = why;
        }
    }
    if (bad) {
        char reason[400];
        snprintf(reason, sizeof(reason), "kafka message %.100s/%d offset %lld: %s", topic,
                 (int)m->partition, (long long)m->offset, bad);
        api->metric_add(s->inst, "invalid", 1);
        rc = api->emit_error(s->inst, rec, SPOKE_ERR_PARSE, reason); /* takes rec */
        if (rc != SPOKE_OK) {
            snprintf(errstr, errstr_size, "%s", reason);
            return SPOKE_ERR_STATE;
        }
        return SPOKE_OK;
    }
    rc = api->emit(s->inst, rec); /* takes rec, whatever it returns */
    if (rc != SPOKE_OK && rc != SPOKE_ERR_STOPPED)
        snprintf(errstr, errstr_size, "emit failed: %s", api->strerror(rc));
    return rc;

header_failed:
    api->record_free(rec);
    snprintf(errstr, errstr_size, "cannot add a header: %s", api->strerror(rc));
    return rc;
}

/* A consumer-level error delivered as a message (unknown topic, offset out
 * of range, max.poll.interval.ms exceeded, ...): logged, counted, and kept
 * for the status when nothing is assigned. */
static void ksrc_consume_error(struct ksrc *s, const rd_kafka_message_t *m)
{
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return;
    char where[128] = "";
    if (m->rkt)
        snprintf(where, sizeof(where), " (%.100s/%d)", rd_kafka_topic_name(m->rkt),
                 (int)m->partition);
    snprintf(s->consume_error, sizeof(s->consume_error), "%s%s: %s", rd_kafka_err2name(m->err),
             where, rd_kafka_message_errstr(m));
    s->consume_error_ms = s->api->mono_ms();
    s->api->metric_add(s->inst, "consume_errors", 1);
    ksrc_warn_limited(s, &s->consume_warn_ms, "kafka: consume error: %s", s->consume_error);
}

/*
 * One message from the consumer: a consumer error, or counted and turned
 * into a record. Destroys m. SPOKE_ERR_STOPPED from emit sets stopping
 * (the record is not acknowledged: consumed again after the restart) and
 * returns SPOKE_OK.
 */
static int ksrc_take(struct ksrc *s, rd_kafka_message_t *m, int64_t *nmsg, int64_t *nbytes,
                     char *errstr, size_t errstr_size)
{
    int rc = SPOKE_OK;
    if (m->err) {
        ksrc_consume_error(s, m);
    } else {
        (*nmsg)++;
        *nbytes += (int64_t)m->len + (int64_t)m->key_len;
        rc = ksrc_message(s, m, errstr, errstr_size);
    }
    rd_kafka_message_destroy(m);
    if (rc == SPOKE_ERR_STOPPED) {
        s->stopping = 1;
        rc = SPOKE_OK;
    }
    return rc;
}

/*
 * Assign mode: takes what the partitions fetched in batches (one queue
 * lock and clock read per batch instead of per message; without a group
 * no rebalance can make a batch stale). Waits up to poll.timeout.ms only
 * when nothing is buffered. Messages left after an error or a stop are
 * dropped: the next start resumes at the host's offsets, before them.
 */
static int ksrc_assign_consume(struct ksrc *s, int64_t *nmsg, int64_t *nbytes, char *errstr,
                               size_t errstr_size)
{
    size_t max = (size_t)s->batch_max;
    ssize_t n = rd_kafka_consume_batch_queue(s->aq, 0, s->msgs, max);
    if (n <= 0) {
        rd_kafka_message_t *m = rd_kafka_consume_queue(s->aq, s->poll_ms);
        n = 0;
        if (m) {
            s->msgs[0] = m;
            ssize_t more = max > 1 ? rd_kafka_consume_batch_queue(s->aq, 0, s->msgs + 1,
                                                                  max - 1) : 0;
            n = 1 + (more > 0 ? more : 0);
        }
    }
    int rc = SPOKE_OK;
    for (ssize_t i = 0; i < n; i++) {
        if (rc != SPOKE_OK || s->stopping)
            rd_kafka_message_destroy(s->msgs[i]);
        else
            rc = ksrc_take(s, s->msgs[i], nmsg, nbytes, errstr, errstr_size);
    }
    return rc;
}

/* Cached high watermarks minus consumed positions, summed over the
 * assignment (no broker round trip). */
static void ksrc_lag(struct ksrc *s)
{
    int64_t lag = 0;
    for (size_t i = 0; i < s->nparts; i++) {
        struct ksrc_part *p = &s->parts[i];
        int64_t lo, hi;
        if (p->next < 0 ||
            rd_kafka_get_watermark_offsets(s->rk, p->topic, p->partition, &lo, &hi) ||
            hi < 0)
            continue;
        if (hi > p->next)
            lag += hi - p->next;
    }
    s->api->metric_set(s->inst, "lag", lag);
}

/*
 * True when the brokers are back: a metadata request was answered, or was
 * sent but not answered within the probe's wait (__TIMED_OUT: librdkafka
 * found a connection up and sent it; with none up it gives __TRANSPORT).
 * A broker answers one connection's requests in order, so a fetch waiting
 * for messages (up to fetch.wait.max.ms) or a slow network holds the reply
 * back: counting only answers kept the source `retrying` for good when
 * every probe landed in a fetch's wait.
 */
static int ksrc_probe(struct ksrc *s)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(s->rk, 0, NULL, &md, KSRC_PROBE_TIMEOUT_MS);
    if (md)
        rd_kafka_metadata_destroy(md);
    return err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__TIMED_OUT;
}

static int ksrc_poll(void *st, int64_t *next_poll_ms, char *errstr, size_t errstr_size)
{
    struct ksrc *s = st;
    const struct spoke_host_api *api = s->api;
    int64_t nmsg = 0, nbytes = 0;
    int rc = SPOKE_OK;

    *next_poll_ms = 0;
    if (s->stopping || s->closed) {
        *next_poll_ms = 100;
        return SPOKE_OK;
    }
    rd_kafka_queue_poll_callback(s->cq, 0); /* commit results */
    int64_t now = api->mono_ms();
    char cond[256];
    if (s->down) {
        /* The consumer is not polled while the brokers are down: what it
         * would serve once they are back (a lost assignment, the next one)
         * must wait for one poll that returns SPOKE_OK first, after which
         * the host reports the acknowledgements it held back while this
         * source was retrying; so an assignment sees them all. */
        if (now - s->last_probe_ms >= KSRC_PROBE_EVERY_MS) {
            s->last_probe_ms = now;
            if (ksrc_probe(s)) {
                kafkaconf_health_clear(&s->h);
                s->down = 0;
                api->log(s->inst, SPOKE_LOG_INFO, "kafka: brokers reachable again");
                return SPOKE_OK;
            }
        }
        kafkaconf_health_get(&s->h, cond, sizeof(cond));
        snprintf(errstr, errstr_size, "kafka: all brokers down: %s", cond);
        *next_poll_ms = KSRC_DOWN_POLL_MS;
        return SPOKE_RETRY;
    }
    if (s->assign) {
        rd_kafka_poll(s->rk, 0); /* error callbacks: brokers down */
        if (now >= s->next_refresh_ms && (!s->refreshed || s->refresh_ms >= 0)) {
            rc = ksrc_assign_refresh(s, errstr, errstr_size);
            now = api->mono_ms();
            if (rc == SPOKE_RETRY && !s->refreshed) {
                s->next_refresh_ms = now + KSRC_METADATA_RETRY_MS;
                *next_poll_ms = KSRC_DOWN_POLL_MS;
                return SPOKE_RETRY;
            }
            if (rc == SPOKE_RETRY) {
                /* Consumption goes on meanwhile; brokers down show below. */
                api->log(s->inst, SPOKE_LOG_DEBUG, "%s (tried again in %d ms)", errstr,
                         KSRC_METADATA_RETRY_MS);
                s->next_refresh_ms = now + KSRC_METADATA_RETRY_MS;
                rc = SPOKE_OK;
            } else if (rc != SPOKE_OK) {
                return rc;
            } else {
                s->next_refresh_ms = now + s->refresh_ms;
            }
        }
        rc = ksrc_assign_consume(s, &nmsg, &nbytes, errstr, errstr_size);
    } else {
        if (now - s->last_commit_ms >= s->commit_interval_ms) {
            int pending = s->commits_pending;
            ksrc_commit(s, NULL, 0);
            if (s->commits_pending != pending)
                s->last_commit_ms = now;
        }
        for (int i = 0; i < s->batch_max && rc == SPOKE_OK && !s->stopping; i++) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(s->rk, i == 0 ? s->poll_ms : 0);
            if (!m)
                break;
            rc = ksrc_take(s, m, &nmsg, &nbytes, errstr, errstr_size);
        }
    }
    if (nmsg) {
        api->metric_add(s->inst, "messages", nmsg);
        api->metric_add(s->inst, "bytes", nbytes);
    }
    if (rc != SPOKE_OK)
        return rc;

    char fatal[256];
    if (rd_kafka_fatal_error(s->rk, fatal, sizeof(fatal))) {
        snprintf(errstr, errstr_size, "kafka consumer fatal error: %s", fatal);
        return SPOKE_ERR_IO;
    }
    now = api->mono_ms();
    if (now - s->last_lag_ms >= 1000) {
        s->last_lag_ms = now;
        ksrc_lag(s);
    }
    if (nmsg > 0)
        return SPOKE_OK;

    /* Nothing consumed: are the brokers down? librdkafka reports errors
     * through the error callback (served by rd_kafka_consumer_poll, or
     * rd_kafka_poll in assign mode). _ALL_BROKERS_DOWN is probed at once.
     * librdkafka does not always report it (e.g. not while one broker's
     * connection is still in setup), so an outage can show only as
     * _TRANSPORT errors: any error is probed too, at most every
     * KSRC_PROBE_EVERY_MS (an idle topic polls often). */
    int all_down = kafkaconf_health_get(&s->h, cond, sizeof(cond));
    if (all_down || (cond[0] && now - s->last_probe_ms >= KSRC_PROBE_EVERY_MS)) {
        s->last_probe_ms = now;
        if (ksrc_probe(s)) {
            kafkaconf_health_clear(&s->h); /* a blip: they answer again */
            return SPOKE_OK;
        }
        s->down = 1;
        snprintf(errstr, errstr_size, "kafka: all brokers down: %s", cond);
        *next_poll_ms = KSRC_DOWN_POLL_MS;
        return SPOKE_RETRY;
    }
    if (s->nparts == 0 && s->consume_error[0] && now - s->consume_error_ms < KSRC_WARN_EVERY_MS) {
        snprintf(errstr, errstr_size, "kafka: no partitions assigned; %s", s->consume_error);
        *next_poll_ms = KSRC_DOWN_POLL_MS;
        return SPOKE_RETRY;
    }
    return SPOKE_OK;
}

/*
 * The host delivered everything up to (partition, offset): remember it for
 * the next commit. Only for assigned partitions, and only past the first
 * message consumed since the assignment: older positions (records consumed
 * before a revocation, or the host's memory of an earlier assignment) must
 * not move the group's offset back. A partition no longer assigned only
 * updates its orphan (see ksrc_resume_points); its new owner commits.
 */
static void ksrc_committed(void *st, const char *partition, int64_t offset)
{
    struct ksrc *s = st;
    if (s->assign)
        return; /* the host's offset store is where assign mode resumes */
    struct ksrc_part *p = part_find_name(s, partition);
    if (!p) {
        struct ksrc_orphan *o = orphan_find_name(s, partition);
        if (o && offset > o->acked)
            o->acked = offset;
        return;
    }
    if (p->first < 0 || offset <= p->first || offset <= p->acked)
        return;
    p->acked = offset;
}

/* Commits what was acknowledged and leaves the group, within
 * close.timeout.ms. */
static void ksrc_close(struct ksrc *s)
{
    const struct spoke_host_api *api = s->api;
    if (s->closed || s->close_tried)
        return;
    s->close_tried = 1;
    s->stopping = 1;
    if (s->assign) {
        while (s->nparts)
            part_remove(s, &s->parts[s->nparts - 1]);
        s->closed = 1;
        api->log(s->inst, SPOKE_LOG_INFO, "kafka: stopped consuming (no consumer group to "
                 "leave)");
        return;
    }
    int64_t deadline = api->mono_ms() + s->close_timeout_ms;
    s->close_deadline_ms = deadline;
    ksrc_commit(s, NULL, s->close_timeout_ms / 2);
    rd_kafka_queue_t *q = rd_kafka_queue_new(s->rk);
    rd_kafka_error_t *error = q ? rd_kafka_consumer_close_queue(s->rk, q) : NULL;
    if (error) {
        api->log(s->inst, SPOKE_LOG_WARN, "kafka: cannot close the consumer: %s",
                 rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (q) {
        /* Revocation (with its commit) arrives on q as an event. */
        while (!rd_kafka_consumer_closed(s->rk)) {
            int64_t left = deadline - api->mono_ms();
            if (left <= 0)
                break;
            rd_kafka_event_t *ev = rd_kafka_queue_poll(q, (int)(left < 100 ? left : 100));
            if (ev && rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
                ksrc_rebalance(s, s->rk, rd_kafka_event_error(ev),
                               rd_kafka_event_topic_partition_list(ev));
            if (ev)
                rd_kafka_event_destroy(ev);
            rd_kafka_queue_poll_callback(s->cq, 0);
        }
        s->closed = rd_kafka_consumer_closed(s->rk);
    }
    if (q)
        rd_kafka_queue_destroy(q);
    if (s->closed)
        api->log(s->inst, SPOKE_LOG_INFO, "kafka: left the consumer group");
    else
        api->log(s->inst, SPOKE_LOG_WARN, "kafka: the consumer did not leave the group within "
                 "close.timeout.ms (%lld ms); the group rebalances once session.timeout.ms "
                 "passes", (long long)s->close_timeout_ms);
    rd_kafka_queue_poll_callback(s->cq, 0);
}

static void ksrc_stop(void *st)
{
    ksrc_close(st);
}

static void ksrc_destroy(void *st)
{
    struct ksrc *s = st;
    if (!s)
        return;
    if (s->subscribed)
        ksrc_close(s); /* start() succeeded but stop() was not called */
    while (s->assign && s->nparts) /* topic handles go before the client */
        part_remove(s, &s->parts[s->nparts - 1]);
    if (s->aq)
        rd_kafka_queue_destroy(s->aq);
    rd_kafka_queue_destroy(s->cq);
    rd_kafka_destroy_flags(s->rk, s->closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    ksrc_free(s);
}

/* A REST change of the offsets (offsets_change). Group mode resumes from
 * the group's committed offsets in Kafka, which the host's store does not
 * move: refused with the way to do it. Assign mode resumes from the host's
 * store: each partition must be one this connector reads, "<topic>/<n>". */
static int ksrc_offsets_change(const struct spoke_host_api *api, const char *name,
                               const struct spoke_config *cfg, const char *const *partitions,
                               const int64_t *offsets, size_t n, int reset, char *errstr,
                               size_t errstr_size)
{
    (void)offsets;
    (void)reset;
    if (strcmp(api->config_string(cfg, "consumer.mode"), "assign") != 0) {
        const char *group = api->config_string(cfg, "group.id");
        snprintf(errstr, errstr_size, "consumer group '%s%s' in Kafka holds where %s resumes "
                 "(consumer.mode group), not Spoke's offset store: move it with "
                 "kafka-consumer-groups --reset-offsets --group %s%s while %s is stopped, or use "
                 "consumer.mode assign", group ? "" : "spoke-", group ? group : name, name,
                 group ? "" : "spoke-", group ? group : name, name);
        return SPOKE_ERR_STATE;
    }
    const char *regex = api->config_string(cfg, "source.topics.regex");
    const char *const *topics = NULL;
    size_t ntopics = api->config_list(cfg, "source.topics", &topics);
    char *pattern = NULL;
    regex_t re;
    if (regex && ksrc_compile(regex, &pattern, &re, errstr, errstr_size) != SPOKE_OK)
        return SPOKE_ERR_INVALID;
    int rc = SPOKE_OK;
    for (size_t i = 0; i < n && rc == SPOKE_OK; i++) {
        const char *p = partitions[i], *slash = strrchr(p, '/');
        char topic[256], *end;
        size_t tl = slash ? (size_t)(slash - p) : 0;
        errno = 0;
        long part = slash ? strtol(slash + 1, &end, 10) : -1;
        int ok = slash && tl > 0 && tl < sizeof(topic) && slash[1] >= '0' && slash[1] <= '9' &&
                 !*end && !errno && part <= INT32_MAX;
        if (ok) {
            memcpy(topic, p, tl);
            topic[tl] = '\0';
            ok = kafkaconf_topic_ok(topic);
        }
        if (!ok) {
            snprintf(errstr, errstr_size, "offsets[%zu]: partition '%.200s' is not "
                     "<topic>/<partition number>, as kafka_source names them", i, p);
            rc = SPOKE_ERR_INVALID;
            break;
        }
        int reads = regex ? regexec(&re, topic, 0, NULL, 0) == 0 : 0;
        for (size_t t = 0; t < ntopics && !reads; t++)
            reads = strcmp(topics[t], topic) == 0;
        if (!reads) {
            snprintf(errstr, errstr_size, "offsets[%zu]: connector %s does not read topic '%s' "
                     "(%s)", i, name, topic, regex ? "source.topics.regex" : "source.topics");
            rc = SPOKE_ERR_NOTFOUND;
        }
    }
    if (regex) {
        regfree(&re);
        free(pattern);
    }
    return rc;
}

static const struct spoke_plugin kafka_source = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "kafka_source",
    .kind        = SPOKE_KIND_SOURCE,
    .version     = "0.1.0",
    .description = "Consumes Kafka topics in a consumer group, or every partition without one "
                   "(consumer.mode); offsets committed after downstream delivery",
    .config      = ksrc_config,
    .init        = ksrc_init,
    .start       = ksrc_start,
    .poll        = ksrc_poll,
    .committed   = ksrc_committed,
    .stop        = ksrc_stop,
    .destroy     = ksrc_destroy,
    .check       = ksrc_check,
    .offsets_change = ksrc_offsets_change,
};

/* The plugin's only exported symbol: returns the constant descriptor. */
SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void)
{
    return &kafka_source;
}
