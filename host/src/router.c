/* router - in-process topics with bounded queues (see router.h). */
#include "router.h"

#include <pthread.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "record.h"

struct rqueue {
    struct router *r;
    char *subscriber;
    pthread_mutex_t lock;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    struct spoke_record **ring;
    size_t ringcap;           /* allocated slots (>= cap; grows only by unget) */
    size_t cap;               /* backpressure threshold */
    size_t head, count;
    /* count, also readable without the lock (rqueue_depth: a transform
     * asks for it after every record); stored wherever count changes. */
    atomic_size_t depth;
    int closed, woken, busy;
    int discard;
    int64_t discarded;
    int has_re;
    regex_t re;
    const char **topics;      /* explicit subscriptions (interned) */
    size_t ntopics;
    atomic_int refs;
};

struct topic {
    const char *name;         /* interned */
    struct rqueue **subs;
    size_t nsubs;
    atomic_llong records;
    atomic_llong unrouted;
    atomic_int warned;
};

struct router {
    pthread_rwlock_t lock;    /* topics and queue lists */
    struct topic **topics;
    size_t ntopics;
    struct rqueue **queues;
    size_t nqueues;
    atomic_llong active;
    atomic_int aborting;
    pthread_mutex_t quiet_lock;
    pthread_cond_t quiet;
};

static void active_add(struct router *r, int64_t d)
{
    int64_t before = atomic_fetch_add(&r->active, d);
    if (before + d == 0) {
        /* Taking the lock orders this broadcast after a waiter's check. */
        pthread_mutex_lock(&r->quiet_lock);
        pthread_cond_broadcast(&r->quiet);
        pthread_mutex_unlock(&r->quiet_lock);
    }
}

struct router *router_new(void)
{
    struct router *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    pthread_rwlock_init(&r->lock, NULL);
    pthread_mutex_init(&r->quiet_lock, NULL);
    clock_cond_init(&r->quiet);
    atomic_init(&r->active, 0);
    atomic_init(&r->aborting, 0);
    return r;
}

/* Every change of count goes through here (under the lock), so depth
 * always follows it. */
static inline void count_set(struct rqueue *q, size_t n)
{
    q->count = n;
    atomic_store_explicit(&q->depth, n, memory_order_relaxed);
}

static void queue_free(struct rqueue *q)
{
    for (size_t i = 0; i < q->count; i++)
        rec_free(q->ring[(q->head + i) % q->ringcap]);
    if (q->count)
        active_add(q->r, -(int64_t)q->count);
    free(q->ring);
    if (q->has_re)
        regfree(&q->re);
    free(q->topics);
    free(q->subscriber);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    free(q);
}

static void queue_unref(struct rqueue *q)
{
    if (atomic_fetch_sub(&q->refs, 1) == 1)
        queue_free(q);
}

void router_free(struct router *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nqueues; i++)
        queue_unref(r->queues[i]);
    for (size_t i = 0; i < r->ntopics; i++) {
        free(r->topics[i]->subs);
        free(r->topics[i]);
    }
    free(r->topics);
    free(r->queues);
    pthread_rwlock_destroy(&r->lock);
    pthread_mutex_destroy(&r->quiet_lock);
    pthread_cond_destroy(&r->quiet);
    free(r);
}

static int queue_matches(const struct rqueue *q, const char *topic)
{
    for (size_t i = 0; i < q->ntopics; i++)
        if (q->topics[i] == topic)
            return 1;
    /* The pattern was compiled anchored as ^(...)$: a match is a whole-name match.
     * Names with '#' (never valid in a config) are the host's private routes
     * to one reader of a Kafka-backed topic: no pattern matches them. */
    if (q->has_re && !strchr(topic, '#') && regexec(&q->re, topic, 0, NULL, 0) == 0)
        return 1;
    return 0;
}

static int topic_add_sub(struct topic *t, struct rqueue *q)
{
    struct rqueue **s = realloc(t->subs, (t->nsubs + 1) * sizeof(*s));
    if (!s)
        return -1;
    t->subs = s;
    t->subs[t->nsubs++] = q;
    return 0;
}

/* Under the write lock. */
static struct topic *topic_create_locked(struct router *r, const char *name)
{
    for (size_t i = 0; i < r->ntopics; i++)
        if (r->topics[i]->name == name)
            return r->topics[i];
    struct topic *t = calloc(1, sizeof(*t));
    struct topic **ts = t ? realloc(r->topics, (r->ntopics + 1) * sizeof(*ts)) : NULL;
    if (!ts) {
        free(t);
        return NULL;
    }
    r->topics = ts;
    t->name = name;
    atomic_init(&t->records, 0);
    atomic_init(&t->unrouted, 0);
    atomic_init(&t->warned, 0);
    for (size_t i = 0; i < r->nqueues; i++)
        if (queue_matches(r->queues[i], name) && topic_add_sub(t, r->queues[i]) < 0) {
            free(t->subs);
            free(t);
            return NULL;
        }
    r->topics[r->ntopics++] = t;
    return t;
}

int router_declare(struct router *r, const char *name)
{
    pthread_rwlock_wrlock(&r->lock);
    struct topic *t = topic_create_locked(r, name);
    pthread_rwlock_unlock(&r->lock);
    return t ? 0 : -1;
}

struct rqueue *router_subscribe(struct router *r, const char *subscriber,
                                const char *const *topics, size_t ntopics,
                                const char *regex, size_t capacity, char *err,
                                size_t errsize)
{
    struct rqueue *q = calloc(1, sizeof(*q));
    if (!q)
        goto oom;
    q->r = r;
    q->cap = capacity ? capacity : 1;
    q->ringcap = q->cap;
    q->ring = calloc(q->ringcap, sizeof(*q->ring));
    q->subscriber = strdup(subscriber);
    q->topics = ntopics ? calloc(ntopics, sizeof(*q->topics)) : NULL;
    if (!q->ring || !q->subscriber || (ntopics && !q->topics)) {
        free(q->ring);
        free(q->subscriber);
        free(q->topics);
        free(q);
        goto oom;
    }
    pthread_mutex_init(&q->lock, NULL);
    clock_cond_init(&q->not_empty);
    clock_cond_init(&q->not_full);
    atomic_init(&q->refs, 1);
    atomic_init(&q->depth, 0);
    for (size_t i = 0; i < ntopics; i++)
        q->topics[i] = topics[i];
    q->ntopics = ntopics;
    if (regex) {
        /* Anchor so the pattern must match the whole topic name. */
        size_t len = strlen(regex) + 5;
        char *anchored = malloc(len);
        if (!anchored) {
            queue_free(q);
            goto oom;
        }
        snprintf(anchored, len, "^(%s)$", regex);
        int rc = regcomp(&q->re, anchored, REG_EXTENDED | REG_NOSUB);
        free(anchored);
        if (rc != 0) {
            char why[128];
            regerror(rc, &q->re, why, sizeof(why));
            snprintf(err, errsize, "topics.regex '%s': %s", regex, why);
            queue_free(q);
            return NULL;
        }
        q->has_re = 1;
    }

    pthread_rwlock_wrlock(&r->lock);
    struct rqueue **qs = realloc(r->queues, (r->nqueues + 1) * sizeof(*qs));
    if (!qs)
        goto oom_locked;
    r->queues = qs;
    r->queues[r->nqueues++] = q;
    /* Explicit topics exist from now on, so their stats show the subscriber. */
    for (size_t i = 0; i < ntopics; i++)
        if (!topic_create_locked(r, topics[i]))
            goto oom_locked_registered;
    for (size_t i = 0; i < r->ntopics; i++) {
        struct topic *t = r->topics[i];
        int already = 0;
        for (size_t j = 0; j < t->nsubs; j++)
            already |= t->subs[j] == q;
        if (!already && queue_matches(q, t->name) && topic_add_sub(t, q) < 0)
            goto oom_locked_registered;
    }
    pthread_rwlock_unlock(&r->lock);
    return q;

oom_locked_registered:
    pthread_rwlock_unlock(&r->lock);
    router_unsubscribe(r, q);
    goto oom;
oom_locked:
    pthread_rwlock_unlock(&r->lock);
    queue_free(q);
oom:
    snprintf(err, errsize, "out of memory");
    return NULL;
}

void router_unsubscribe(struct router *r, struct rqueue *q)
{
    if (!q)
        return;
    pthread_rwlock_wrlock(&r->lock);
    for (size_t i = 0; i < r->ntopics; i++) {
        struct topic *t = r->topics[i];
        for (size_t j = 0; j < t->nsubs; j++) {
            if (t->subs[j] == q) {
                memmove(&t->subs[j], &t->subs[j + 1], (t->nsubs - j - 1) * sizeof(*t->subs));
                t->nsubs--;
                break;
            }
        }
    }
    for (size_t i = 0; i < r->nqueues; i++) {
        if (r->queues[i] == q) {
            memmove(&r->queues[i], &r->queues[i + 1], (r->nqueues - i - 1) * sizeof(*r->queues));
            r->nqueues--;
            break;
        }
    }
    pthread_rwlock_unlock(&r->lock);
    /* Publishers that still hold a reference push into a detached queue; its
     * records are freed with it. */
    pthread_mutex_lock(&q->lock);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_full);
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
    queue_unref(q);
}

static int stopping(struct router *r, const volatile int *cancel)
{
    return atomic_load(&r->aborting) || (cancel && *cancel);
}

/* Pushes recs[0..n) into q; returns how many were queued. */
static size_t queue_push(struct rqueue *q, struct spoke_record **recs, size_t n,
                         const volatile int *cancel)
{
    size_t done = 0;
    pthread_mutex_lock(&q->lock);
    if (q->discard) {
        for (size_t i = 0; i < n; i++)
            rec_free(recs[i]);
        q->discarded += (int64_t)n;
        pthread_mutex_unlock(&q->lock);
        return n;
    }
    while (done < n) {
        while (q->count >= q->cap && !q->closed && !q->discard && !stopping(q->r, cancel))
            pthread_cond_wait(&q->not_full, &q->lock);
        if (q->discard) {
            for (size_t i = done; i < n; i++)
                rec_free(recs[i]);
            q->discarded += (int64_t)(n - done);
            done = n;
            break;
        }
        if (stopping(q->r, cancel) || (q->closed && q->count >= q->cap))
            break;
        size_t room = q->cap > q->count ? q->cap - q->count : 0;
        size_t k = n - done < room ? n - done : room;
        for (size_t i = 0; i < k; i++)
            q->ring[(q->head + q->count + i) % q->ringcap] = recs[done + i];
        count_set(q, q->count + k);
        done += k;
        active_add(q->r, (int64_t)k);
        pthread_cond_signal(&q->not_empty);
    }
    pthread_mutex_unlock(&q->lock);
    return done;
}

/* Finds (or creates) a topic and takes references on its subscribers. */
static struct topic *topic_subs(struct router *r, const char *name, struct rqueue ***subs,
                                size_t *nsubs, struct rqueue **stackbuf, size_t stackn)
{
    struct topic *t = NULL;
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->ntopics; i++)
        if (r->topics[i]->name == name) {
            t = r->topics[i];
            break;
        }
    if (!t) {
        pthread_rwlock_unlock(&r->lock);
        pthread_rwlock_wrlock(&r->lock);
        t = topic_create_locked(r, name);
        if (!t) {
            pthread_rwlock_unlock(&r->lock);
            return NULL;
        }
    }
    struct rqueue **s = stackbuf;
    if (t->nsubs > stackn && !(s = malloc(t->nsubs * sizeof(*s)))) {
        pthread_rwlock_unlock(&r->lock);
        return NULL;
    }
    for (size_t i = 0; i < t->nsubs; i++) {
        s[i] = t->subs[i];
        atomic_fetch_add(&s[i]->refs, 1);
    }
    *nsubs = t->nsubs;
    *subs = s;
    pthread_rwlock_unlock(&r->lock);
    return t;
}

int router_publish(struct router *r, struct spoke_record **recs, size_t n,
                   const volatile int *cancel)
{
    int rc = SPOKE_OK;
    size_t i = 0;
    while (i < n) {
        /* A run of consecutive records for the same topic. */
        const char *name = recs[i]->topic;
        size_t j = i + 1;
        while (j < n && recs[j]->topic == name)
            j++;
        size_t run = j - i;
        struct rqueue *stackbuf[8], **subs = NULL;
        size_t nsubs = 0;
        struct topic *t = rc == SPOKE_OK
                              ? topic_subs(r, name, &subs, &nsubs, stackbuf, 8)
                              : NULL;
        if (!t) {
            if (rc == SPOKE_OK) {
                LOG_E(NULL, "topic '%s': out of memory routing %zu records", name, run);
                rc = SPOKE_ERR_NOMEM;
            }
            for (size_t k = i; k < j; k++)
                rec_free(recs[k]);
            i = j;
            continue;
        }
        atomic_fetch_add(&t->records, (long long)run);
        if (nsubs == 0) {
            atomic_fetch_add(&t->unrouted, (long long)run);
            if (atomic_exchange(&t->warned, 1) == 0)
                LOG_W(NULL, "topic '%s' has no subscribers: its records are counted and discarded",
                      name);
            for (size_t k = i; k < j; k++) {
                rec_ack(recs[k]);
                rec_free(recs[k]);
            }
        }
        /* Copies first (for subscribers 1..n-1), so the originals can move
         * into subscriber 0's queue last. */
        for (size_t s = 1; s < nsubs; s++) {
            struct spoke_record *copies[64];
            for (size_t k = i; k < j; k += 64) {
                size_t m = j - k < 64 ? j - k : 64, made = 0;
                for (size_t c = 0; c < m; c++) {
                    struct spoke_record *cp = rec_clone(recs[k + c]);
                    if (cp)
                        copies[made++] = cp;
                    else
                        LOG_E(NULL, "topic '%s': out of memory copying a record for '%s'", name,
                              subs[s]->subscriber);
                }
                size_t q = queue_push(subs[s], copies, made, cancel);
                for (size_t c = q; c < made; c++)
                    rec_free(copies[c]);
                if (q < made)
                    rc = SPOKE_ERR_STOPPED;
            }
        }
        if (nsubs > 0) {
            size_t q = queue_push(subs[0], recs + i, run, cancel);
            for (size_t k = i + q; k < j; k++)
                rec_free(recs[k]);
            if (q < run)
                rc = SPOKE_ERR_STOPPED;
        }
        for (size_t s = 0; s < nsubs; s++)
            queue_unref(subs[s]);
        if (subs != stackbuf)
            free(subs);
        i = j;
    }
    return rc;
}

void router_interrupt(struct router *r)
{
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->nqueues; i++) {
        struct rqueue *q = r->queues[i];
        pthread_mutex_lock(&q->lock);
        pthread_cond_broadcast(&q->not_full);
        pthread_cond_broadcast(&q->not_empty);
        pthread_mutex_unlock(&q->lock);
    }
    pthread_rwlock_unlock(&r->lock);
}

void router_abort(struct router *r)
{
    atomic_store(&r->aborting, 1);
    router_interrupt(r);
}

int64_t router_active(struct router *r) { return atomic_load(&r->active); }

int router_wait_quiet(struct router *r, int64_t deadline_ms)
{
    struct timespec ts;
    clock_deadline_ts(&ts, deadline_ms);
    pthread_mutex_lock(&r->quiet_lock);
    int rc = 0;
    while (atomic_load(&r->active) != 0 && rc == 0)
        rc = pthread_cond_timedwait(&r->quiet, &r->quiet_lock, &ts);
    int quiet = atomic_load(&r->active) == 0;
    pthread_mutex_unlock(&r->quiet_lock);
    return quiet;
}

int rqueue_pop(struct rqueue *q, struct spoke_record **out, size_t max, size_t *n,
               int64_t deadline_ms)
{
    int rc = RQ_OK;
    *n = 0;
    pthread_mutex_lock(&q->lock);
    while (q->count == 0) {
        if (q->woken) {
            q->woken = 0;
            rc = RQ_WOKEN;
            goto out;
        }
        if (q->closed) {
            rc = RQ_CLOSED;
            goto out;
        }
        if (deadline_ms < 0) {
            pthread_cond_wait(&q->not_empty, &q->lock);
        } else {
            struct timespec ts;
            clock_deadline_ts(&ts, deadline_ms);
            if (pthread_cond_timedwait(&q->not_empty, &q->lock, &ts) != 0 && q->count == 0) {
                rc = RQ_TIMEOUT;
                goto out;
            }
        }
    }
    size_t k = q->count < max ? q->count : max;
    for (size_t i = 0; i < k; i++) {
        out[i] = q->ring[q->head];
        q->head = (q->head + 1) % q->ringcap;
    }
    count_set(q, q->count - k);
    q->busy = 1;
    *n = k;
    /* The batch counts as one unit of work until rqueue_done. */
    active_add(q->r, 1 - (int64_t)k);
    pthread_cond_broadcast(&q->not_full);
out:
    pthread_mutex_unlock(&q->lock);
    return rc;
}

void rqueue_done(struct rqueue *q)
{
    pthread_mutex_lock(&q->lock);
    int was = q->busy;
    q->busy = 0;
    pthread_mutex_unlock(&q->lock);
    if (was)
        active_add(q->r, -1);
}

void rqueue_wake(struct rqueue *q)
{
    pthread_mutex_lock(&q->lock);
    q->woken = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
}

void rqueue_close(struct rqueue *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->lock);
}

void rqueue_reopen(struct rqueue *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = 0;
    q->woken = 0;
    pthread_mutex_unlock(&q->lock);
}

size_t rqueue_depth(struct rqueue *q)
{
    /* Without the lock: a snapshot either way, and the consumer's own
     * thread asks for it after every record. */
    return atomic_load_explicit(&q->depth, memory_order_relaxed);
}

size_t rqueue_capacity(struct rqueue *q) { return q->cap; }

size_t rqueue_set_discard(struct rqueue *q, int on)
{
    struct spoke_record **drop = NULL;
    size_t n = 0;
    pthread_mutex_lock(&q->lock);
    q->discard = on;
    if (on && q->count) {
        drop = malloc(q->count * sizeof(*drop));
        if (drop) {
            for (n = 0; n < q->count; n++)
                drop[n] = q->ring[(q->head + n) % q->ringcap];
            q->head = 0;
            count_set(q, 0);
            q->discarded += (int64_t)n;
            active_add(q->r, -(int64_t)n);
        }
    }
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->lock);
    for (size_t i = 0; i < n; i++)
        rec_free(drop[i]);
    free(drop);
    return n;
}

int64_t rqueue_discarded(struct rqueue *q)
{
    pthread_mutex_lock(&q->lock);
    int64_t n = q->discarded;
    pthread_mutex_unlock(&q->lock);
    return n;
}

void rqueue_unget(struct rqueue *q, struct spoke_record **recs, size_t n)
{
    if (n == 0)
        return;
    pthread_mutex_lock(&q->lock);
    if (q->discard) {
        q->discarded += (int64_t)n;
        pthread_mutex_unlock(&q->lock);
        for (size_t i = 0; i < n; i++)
            rec_free(recs[i]);
        return;
    }
    if (q->count + n > q->ringcap) {
        /* Grow, unrolling the ring so head is 0. */
        size_t ncap = q->count + n;
        struct spoke_record **nr = malloc(ncap * sizeof(*nr));
        if (!nr) {
            pthread_mutex_unlock(&q->lock);
            LOG_E(NULL, "out of memory returning %zu records to queue of '%s'", n, q->subscriber);
            for (size_t i = 0; i < n; i++)
                rec_free(recs[i]);
            return;
        }
        for (size_t i = 0; i < q->count; i++)
            nr[i] = q->ring[(q->head + i) % q->ringcap];
        free(q->ring);
        q->ring = nr;
        q->ringcap = ncap;
        q->head = 0;
    }
    for (size_t i = n; i-- > 0;) {
        q->head = (q->head + q->ringcap - 1) % q->ringcap;
        q->ring[q->head] = recs[i];
    }
    count_set(q, q->count + n);
    active_add(q->r, (int64_t)n);
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
}

void router_topics(struct router *r, void (*fn)(void *ctx, const struct router_topic_stats *s),
                   void *ctx)
{
    pthread_rwlock_rdlock(&r->lock);
    for (size_t i = 0; i < r->ntopics; i++) {
        struct topic *t = r->topics[i];
        struct router_topic_stats s = {
            .name = t->name,
            .records = atomic_load(&t->records),
            .unrouted = atomic_load(&t->unrouted),
            .subscribers = t->nsubs,
        };
        for (size_t j = 0; j < t->nsubs; j++)
            s.depth += rqueue_depth(t->subs[j]);
        fn(ctx, &s);
    }
    pthread_rwlock_unlock(&r->lock);
}
