/* ack - delivery tracking (watermarks per source) and the offset store. */
#include "ack.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "fsutil.h"
#include "grow.h"
#include "record.h"

struct origin {
    struct tracker *t;
    const char *part;         /* interned */
    int64_t off;
    int64_t born_ns;
    uint64_t seq;             /* its index in the tracker's order */
    atomic_int pending;       /* units still in flight */
    atomic_int failed;        /* some unit was abandoned */
    int finished;             /* under t->lock: every unit ended */
    int replayed;             /* an earlier run of its source emitted it already */
    uint32_t sub;             /* entries before it at the same position (ack.h) */
};

/* A position and how many entries had it before: (off, sub) orders a
 * partition's entries even when several share an offset. */
struct mark {
    const char *part;
    int64_t off;
    uint32_t sub;
};

struct marks {
    struct mark *v;
    size_t n, cap;
};

/* (off, sub) at or before m's. */
static inline int mark_covers(const struct mark *m, int64_t off, uint32_t sub)
{
    return off < m->off || (off == m->off && sub <= m->sub);
}

/*
 * A tracker's entries live in chunks of ORIGIN_CHUNK, in emission order: a
 * FIFO that the source appends to and the completions pop from the head.
 * Appending takes no lock and no allocation per record: only the source's
 * task thread appends (the ABI lets a source emit only from its callbacks,
 * and a restarted task starts after the old thread was joined), and it
 * publishes each entry with a release store of `added`, which the popping
 * side reads (acquire) under the lock. A chunk the head has moved past is
 * kept as the spare the appender takes next (one lock per chunk), so a
 * steady stream allocates nothing. An entry's slot is reused only after
 * it was popped, i.e. after its last unit ended.
 */
#define ORIGIN_CHUNK 128

struct origin_chunk {
    struct origin_chunk *next;  /* written before an entry of it is published */
    struct origin o[ORIGIN_CHUNK];
};

struct committed {
    const char *part;         /* interned */
    int64_t off;
};

/* Positions by partition: the last one of each. */
struct positions {
    struct committed *v;
    size_t n, cap;
};

struct ack_hold {
    struct tracker *t;
    struct ack_hold *next;    /* the tracker's holds, by seq (under t->lock) */
    uint64_t seq;             /* first entry covered (written under t->lock, by the owner) */
    size_t count;             /* records held (under t->lock) */
    /* Positions of the entries popped at or after seq and before the next
     * hold's seq: what commits when the hold ends ok (under t->lock). */
    struct positions seg;
};

struct tracker {
    pthread_mutex_t lock;
    pthread_cond_t idle;
    const char *name;         /* interned */
    /* Appender side: the source's task thread only. */
    struct origin_chunk *tail;
    unsigned tail_i;          /* next free slot of tail */
    _Atomic uint64_t added;   /* entries ever published */
    struct marks last;        /* the last position added per partition */
    size_t last_i;            /* where last found the previous one */
    struct marks replay;      /* positions up to which entries are replays */
    /* Under lock. */
    struct origin_chunk *head;
    unsigned head_i;          /* oldest unpopped slot of head */
    uint64_t popped;          /* entries ever popped; in flight = added - popped */
    struct origin_chunk *spare;
    int blocked;
    int released;             /* the owner dropped its reference */
    uint64_t generation;
    struct positions done;    /* committed */
    struct ack_hold *holds;   /* by seq */
    size_t held;              /* records the holds hold */
};

/* Entries published and not popped (lock held). */
static size_t unpopped_locked(struct tracker *t)
{
    return (size_t)(atomic_load_explicit(&t->added, memory_order_acquire) - t->popped);
}

/* What tracker_inflight reports (lock held). */
static size_t inflight_locked(struct tracker *t) { return unpopped_locked(t) + t->held; }

/* Nothing in flight and no hold (lock held): drained, and destroyable once
 * released. */
static int idle_locked(struct tracker *t) { return unpopped_locked(t) == 0 && !t->holds; }

struct tracker *tracker_new(const char *connector)
{
    struct tracker *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->name = intern_str(connector);
    t->head = t->tail = malloc(sizeof(struct origin_chunk));
    if (!t->name || !t->head) {
        free(t->head);
        free(t);
        return NULL;
    }
    t->head->next = NULL;
    atomic_init(&t->added, 0);
    pthread_mutex_init(&t->lock, NULL);
    clock_cond_init(&t->idle);
    return t;
}

static void tracker_destroy(struct tracker *t)
{
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->idle);
    /* Every entry was popped: what is left is the chain from head to tail. */
    for (struct origin_chunk *c = t->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(t->spare);
    free(t->done.v);
    free(t->last.v);
    free(t->replay.v);
    free(t);
}

void tracker_release(struct tracker *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->released = 1;
    int gone = idle_locked(t);
    pthread_mutex_unlock(&t->lock);
    if (gone)
        tracker_destroy(t);
}

/* The mark of part in ms, a new one when it has none (NULL on OOM). */
static struct mark *marks_get(struct marks *ms, const char *part)
{
    for (size_t i = 0; i < ms->n; i++)
        if (ms->v[i].part == part)
            return &ms->v[i];
    if (GROW_ONE(ms->v, ms->cap, ms->n, 4) != 0)
        return NULL;
    struct mark *m = &ms->v[ms->n++];
    *m = (struct mark){ .part = part, .off = INT64_MIN, .sub = 0 };
    return m;
}

/* Appender side: an entry at (part, off, sub) is a replay when an earlier
 * run of the source got that far in part. Positions grow within a
 * partition: once one passes, the partition is done with. */
static int replay_check(struct tracker *t, const char *part, int64_t off, uint32_t sub)
{
    struct marks *r = &t->replay;
    for (size_t i = 0; i < r->n; i++) {
        if (r->v[i].part == part) {
            if (mark_covers(&r->v[i], off, sub))
                return 1;
            r->v[i] = r->v[--r->n];
            return 0;
        }
    }
    return 0;
}

/* Appender side: (part, off) is added; returns its sub, the number of
 * entries just before it in part at the same offset, and makes it part's
 * last. Without memory, sub is 0 and the replays after a restart are not
 * all recognized (as before the marks existed): nothing is lost. */
static uint32_t note_last(struct tracker *t, const char *part, int64_t off)
{
    struct marks *ms = &t->last;
    struct mark *m;
    if (t->last_i < ms->n && ms->v[t->last_i].part == part) {
        m = &ms->v[t->last_i];
    } else {
        if (!(m = marks_get(ms, part)))
            return 0;
        t->last_i = (size_t)(m - ms->v);
    }
    m->sub = m->off == off && m->sub < UINT32_MAX ? m->sub + 1 : 0;
    m->off = off;
    return m->sub;
}

void tracker_replay_set(struct tracker *t, const char *partition, int64_t upto, uint32_t sub)
{
    if (!partition)
        return;
    struct mark *m = marks_get(&t->replay, partition);
    if (m && !mark_covers(m, upto, sub)) {
        m->off = upto;
        m->sub = sub;
    }
}

void tracker_replay_inherit(struct tracker *dst, struct tracker *src)
{
    /* What src's run emitted, and what it had yet to replay of the run
     * before it (a restart in the middle of a replay). dst may be src:
     * only dst->replay grows, and it is read by index. */
    for (size_t i = 0; i < src->last.n; i++)
        tracker_replay_set(dst, src->last.v[i].part, src->last.v[i].off, src->last.v[i].sub);
    if (dst != src)
        for (size_t i = 0; i < src->replay.n; i++)
            tracker_replay_set(dst, src->replay.v[i].part, src->replay.v[i].off,
                               src->replay.v[i].sub);
    /* The next run counts its subs afresh. */
    src->last.n = 0;
}

uint32_t origin_sub(const struct origin *o) { return o->sub; }

int origin_replayed(const struct origin *o) { return o->replayed; }

struct origin *tracker_add(struct tracker *t, const char *partition, int64_t offset,
                           int64_t born_ns)
{
    if (t->tail_i == ORIGIN_CHUNK) {
        pthread_mutex_lock(&t->lock);
        struct origin_chunk *c = t->spare;
        t->spare = NULL;
        pthread_mutex_unlock(&t->lock);
        if (!c && !(c = malloc(sizeof(*c))))
            return NULL;
        c->next = NULL;
        t->tail->next = c;  /* published with the first entry of c */
        t->tail = c;
        t->tail_i = 0;
    }
    struct origin *o = &t->tail->o[t->tail_i++];
    /* Only this thread writes added: a plain increment, released. */
    uint64_t n = atomic_load_explicit(&t->added, memory_order_relaxed);
    o->t = t;
    o->part = partition;
    o->off = offset;
    o->born_ns = born_ns;
    o->seq = n;
    atomic_init(&o->pending, 1);
    atomic_init(&o->failed, 0);
    o->finished = 0;
    o->sub = partition ? note_last(t, partition, offset) : 0;
    o->replayed = t->replay.n && partition ? replay_check(t, partition, offset, o->sub) : 0;
    atomic_store_explicit(&t->added, n + 1, memory_order_release);
    return o;
}

void origin_position(const struct origin *o, const char **source, const char **partition,
                     int64_t *offset, uint32_t *sub, int *replayed)
{
    *source = o->t->name;
    *partition = o->part;
    *offset = o->off;
    *sub = o->sub;
    *replayed = o->replayed;
}

int64_t origin_born_ns(const struct origin *o) { return o->born_ns; }

void origin_hold(struct origin *o)
{
    atomic_fetch_add_explicit(&o->pending, 1, memory_order_relaxed);
}

/* Remembers (part, off) as the last position of part in p. -1 on OOM. */
static int positions_put(struct positions *p, const char *part, int64_t off)
{
    for (size_t i = 0; i < p->n; i++) {
        if (p->v[i].part == part) {
            p->v[i].off = off;
            return 0;
        }
    }
    if (GROW_ONE(p->v, p->cap, p->n, 4) != 0)
        return -1;
    p->v[p->n].part = part;
    p->v[p->n].off = off;
    p->n++;
    return 0;
}

/* Under t->lock: (part, off) goes into p (done or a hold's segment). A
 * new partition that cannot be remembered stops the commits rather than
 * letting something wrong commit. */
static void commit_locked(struct tracker *t, struct positions *p, const char *part, int64_t off)
{
    if (positions_put(p, part, off) != 0)
        t->blocked = 1;
}

/* Under t->lock: pops every finished entry at the head, in emission
 * order: a position commits only when it and everything before it were
 * delivered. Returns 1 when the tracker is to be destroyed (released and
 * empty). */
static int pop_finished_locked(struct tracker *t)
{
    int advanced = 0;
    uint64_t added = atomic_load_explicit(&t->added, memory_order_acquire);
    while (t->popped < added) {
        if (t->head_i == ORIGIN_CHUNK) {
            /* Everything in head was popped and an entry after it was
             * published, so head->next is set. */
            struct origin_chunk *c = t->head;
            t->head = c->next;
            t->head_i = 0;
            if (!t->spare)
                t->spare = c;
            else
                free(c);
        }
        struct origin *h = &t->head->o[t->head_i];
        if (!h->finished)
            break;
        t->head_i++;
        t->popped++;
        if (atomic_load(&h->failed))
            t->blocked = 1;
        if (!t->blocked && h->part) {
            /* The last hold covering h holds its position back. */
            struct ack_hold *in = NULL;
            for (struct ack_hold *k = t->holds; k && k->seq <= h->seq; k = k->next)
                in = k;
            if (in) {
                commit_locked(t, &in->seg, h->part, h->off);
            } else {
                commit_locked(t, &t->done, h->part, h->off);
                advanced = 1;
            }
        }
    }
    if (advanced)
        t->generation++;
    if (unpopped_locked(t) == 0) /* idle, or settled (tracker_wait_settled) */
        pthread_cond_broadcast(&t->idle);
    return t->released && idle_locked(t);
}

/* ---- holds ---- */

struct tracker *origin_tracker(const struct origin *o) { return o->t; }

struct tracker *ack_hold_tracker(const struct ack_hold *h) { return h->t; }

/* Under t->lock: puts h among t's holds by seq, after those of the same
 * seq. Every entry at or after h->seq is unpopped (the caller holds a
 * unit of that entry), so the segments of the holds after h are empty. */
static void hold_link(struct tracker *t, struct ack_hold *h)
{
    struct ack_hold **pp = &t->holds;
    while (*pp && (*pp)->seq <= h->seq)
        pp = &(*pp)->next;
    h->next = *pp;
    *pp = h;
}

/* Under t->lock: takes h out of t's holds; returns the hold before it
 * (NULL when h was the first). */
static struct ack_hold *hold_unlink(struct tracker *t, struct ack_hold *h)
{
    struct ack_hold **pp = &t->holds, *prev = NULL;
    while (*pp != h) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    *pp = h->next;
    h->next = NULL;
    return prev;
}

struct ack_hold *ack_hold_new(struct origin *o)
{
    struct ack_hold *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    struct tracker *t = o->t;
    h->t = t;
    pthread_mutex_lock(&t->lock);
    h->seq = o->seq;
    hold_link(t, h);
    pthread_mutex_unlock(&t->lock);
    return h;
}

void ack_hold_cover(struct ack_hold *h, const struct origin *o)
{
    if (o->seq >= h->seq)  /* only this thread writes h->seq */
        return;
    struct tracker *t = h->t;
    pthread_mutex_lock(&t->lock);
    /* o is unpopped, so nothing from o->seq on was popped: h's segment is
     * empty, and so are those of the holds it moves before. */
    hold_unlink(t, h);
    h->seq = o->seq;
    hold_link(t, h);
    pthread_mutex_unlock(&t->lock);
}

void ack_hold_count(struct ack_hold *h, size_t n)
{
    struct tracker *t = h->t;
    pthread_mutex_lock(&t->lock);
    h->count += n;
    t->held += n;
    pthread_mutex_unlock(&t->lock);
}

void ack_hold_end(struct ack_hold *h, int ok)
{
    if (!h)
        return;
    struct tracker *t = h->t;
    pthread_mutex_lock(&t->lock);
    struct ack_hold *prev = hold_unlink(t, h);
    t->held -= h->count;
    if (!ok) {
        t->blocked = 1;
    } else if (!t->blocked) {
        /* Its positions are later than those of the hold before it (or of
         * what committed): they join them. */
        for (size_t i = 0; i < h->seg.n; i++)
            commit_locked(t, prev ? &prev->seg : &t->done, h->seg.v[i].part, h->seg.v[i].off);
        if (!prev && h->seg.n)
            t->generation++;
    }
    int gone = t->released && idle_locked(t);
    if (idle_locked(t))
        pthread_cond_broadcast(&t->idle);
    pthread_mutex_unlock(&t->lock);
    free(h->seg.v);
    free(h);
    if (gone)
        tracker_destroy(t);
}

/* Drops one unit of o: 1 when it was the last. The last holder is alone
 * (taking a unit needs holding one), so it skips the locked subtract: a
 * record with an origin of its own, the usual case, costs none. */
static int origin_unit_drop(struct origin *o)
{
    if (atomic_load_explicit(&o->pending, memory_order_acquire) == 1) {
        atomic_store_explicit(&o->pending, 0, memory_order_relaxed);
        return 1;
    }
    return atomic_fetch_sub_explicit(&o->pending, 1, memory_order_acq_rel) == 1;
}

void origin_done(struct origin *o, int ok)
{
    if (!ok)
        atomic_store(&o->failed, 1);
    if (!origin_unit_drop(o))
        return;
    struct tracker *t = o->t;
    pthread_mutex_lock(&t->lock);
    o->finished = 1;
    int gone = pop_finished_locked(t);
    pthread_mutex_unlock(&t->lock);
    if (gone)
        tracker_destroy(t);
}

void origins_done(struct origin **os, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (os[i] && origin_unit_drop(os[i]))
            os[k++] = os[i]; /* its last unit: finished */
    for (size_t i = 0; i < k;) {
        struct tracker *t = os[i]->t;
        pthread_mutex_lock(&t->lock);
        for (; i < k && os[i]->t == t; i++)
            os[i]->finished = 1;
        int gone = pop_finished_locked(t);
        pthread_mutex_unlock(&t->lock);
        if (gone)
            tracker_destroy(t);
    }
}

size_t tracker_inflight(struct tracker *t)
{
    pthread_mutex_lock(&t->lock);
    size_t n = inflight_locked(t);
    pthread_mutex_unlock(&t->lock);
    return n;
}

int tracker_blocked(struct tracker *t)
{
    pthread_mutex_lock(&t->lock);
    int b = t->blocked;
    pthread_mutex_unlock(&t->lock);
    return b;
}

uint64_t tracker_generation(struct tracker *t)
{
    pthread_mutex_lock(&t->lock);
    uint64_t g = t->generation;
    pthread_mutex_unlock(&t->lock);
    return g;
}

void tracker_committed(struct tracker *t,
                       void (*fn)(void *ctx, const char *partition, int64_t offset), void *ctx)
{
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->done.n; i++)
        fn(ctx, t->done.v[i].part, t->done.v[i].off);
    pthread_mutex_unlock(&t->lock);
}

static int wait_until(struct tracker *t, int64_t deadline_ms, int (*done)(struct tracker *))
{
    pthread_mutex_lock(&t->lock);
    while (!done(t)) {
        if (clock_mono_ms() >= deadline_ms)
            break;
        struct timespec ts;
        clock_deadline_ts(&ts, deadline_ms);
        pthread_cond_timedwait(&t->idle, &t->lock, &ts);
    }
    int ok = done(t);
    pthread_mutex_unlock(&t->lock);
    return ok;
}

static int settled_locked(struct tracker *t) { return unpopped_locked(t) == 0; }

int tracker_wait_idle(struct tracker *t, int64_t deadline_ms)
{
    return wait_until(t, deadline_ms, idle_locked);
}

int tracker_wait_settled(struct tracker *t, int64_t deadline_ms)
{
    return wait_until(t, deadline_ms, settled_locked);
}

/* ---- offset store ---- */

struct offset_store {
    pthread_mutex_t lock;
    char *path;
    json_t *root;     /* { connector: { partition: offset } } */
    int dirty;
};

struct offset_store *offsets_open(const char *path, char *err, size_t errsize)
{
    struct offset_store *os = calloc(1, sizeof(*os));
    if (!os || !(os->path = strdup(path))) {
        snprintf(err, errsize, "out of memory");
        free(os);
        return NULL;
    }
    pthread_mutex_init(&os->lock, NULL);
    json_error_t jerr;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        if (errno != ENOENT) {
            snprintf(err, errsize, "cannot open %s: %s", path, strerror(errno));
            goto fail;
        }
        os->root = json_object();
        return os;
    }
    os->root = json_loadf(fp, JSON_REJECT_DUPLICATES, &jerr);
    fclose(fp);
    if (!os->root) {
        snprintf(err, errsize, "%s:%d:%d: corrupt offset store: %s", path, jerr.line,
                 jerr.column, jerr.text);
        goto fail;
    }
    /* Validate the whole shape now so every later read can trust it. */
    const char *conn, *part;
    json_t *parts, *off;
    if (!json_is_object(os->root)) {
        snprintf(err, errsize, "%s: corrupt offset store: top level is not an object", path);
        goto fail;
    }
    json_object_foreach(os->root, conn, parts) {
        if (!json_is_object(parts)) {
            snprintf(err, errsize, "%s: corrupt offset store: '%s' is not an object", path, conn);
            goto fail;
        }
        json_object_foreach(parts, part, off) {
            if (!json_is_integer(off)) {
                snprintf(err, errsize, "%s: corrupt offset store: '%s'/'%s' is not an integer",
                         path, conn, part);
                goto fail;
            }
        }
    }
    return os;
fail:
    offsets_close(os);
    return NULL;
}

void offsets_close(struct offset_store *os)
{
    if (!os)
        return;
    json_decref(os->root);
    pthread_mutex_destroy(&os->lock);
    free(os->path);
    free(os);
}

int offsets_get(struct offset_store *os, const char *connector, const char *partition,
                int64_t *offset)
{
    int rc = SPOKE_ERR_NOTFOUND;
    pthread_mutex_lock(&os->lock);
    json_t *v = json_object_get(json_object_get(os->root, connector), partition);
    if (v) {
        *offset = json_integer_value(v);
        rc = SPOKE_OK;
    }
    pthread_mutex_unlock(&os->lock);
    return rc;
}

size_t offsets_count(struct offset_store *os, const char *connector)
{
    pthread_mutex_lock(&os->lock);
    size_t n = json_object_size(json_object_get(os->root, connector));
    pthread_mutex_unlock(&os->lock);
    return n;
}

int offsets_at(struct offset_store *os, const char *connector, size_t i,
               const char **partition, int64_t *offset)
{
    int rc = SPOKE_ERR_NOTFOUND;
    pthread_mutex_lock(&os->lock);
    json_t *parts = json_object_get(os->root, connector);
    const char *k;
    json_t *v;
    size_t n = 0;
    json_object_foreach(parts, k, v) {
        if (n++ == i) {
            *partition = intern_str(k);
            *offset = json_integer_value(v);
            rc = *partition ? SPOKE_OK : SPOKE_ERR_NOMEM;
            break;
        }
    }
    pthread_mutex_unlock(&os->lock);
    return rc;
}

void offsets_set(struct offset_store *os, const char *connector, const char *partition,
                 int64_t offset)
{
    pthread_mutex_lock(&os->lock);
    json_t *parts = json_object_get(os->root, connector);
    if (!parts) {
        parts = json_object();
        json_object_set_new(os->root, connector, parts);
    }
    json_t *cur = json_object_get(parts, partition);
    if (!cur || json_integer_value(cur) != offset) {
        json_object_set_new(parts, partition, json_integer(offset));
        os->dirty = 1;
    }
    pthread_mutex_unlock(&os->lock);
}

void offsets_forget(struct offset_store *os, const char *connector)
{
    pthread_mutex_lock(&os->lock);
    if (json_object_del(os->root, connector) == 0)
        os->dirty = 1;
    pthread_mutex_unlock(&os->lock);
}

void offsets_remove(struct offset_store *os, const char *connector, const char *partition)
{
    pthread_mutex_lock(&os->lock);
    if (json_object_del(json_object_get(os->root, connector), partition) == 0)
        os->dirty = 1;
    pthread_mutex_unlock(&os->lock);
}

int offsets_flush(struct offset_store *os, char *err, size_t errsize)
{
    pthread_mutex_lock(&os->lock);
    int rc = 0;
    if (!os->dirty)
        goto out;
    char *text = json_dumps(os->root, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (!text) {
        snprintf(err, errsize, "out of memory");
        rc = -1;
        goto out;
    }
    rc = atomic_write_file(os->path, text, strlen(text), err, errsize);
    free(text);
    if (rc == 0)
        os->dirty = 0;
out:
    pthread_mutex_unlock(&os->lock);
    return rc;
}
