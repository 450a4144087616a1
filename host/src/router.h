/* router - in-process topics.
 *
 * Each subscriber (a transform or sink connector) owns one bounded input
 * queue; a topic fans every record out to all queues subscribed to it (the
 * first gets the record, the others a copy). A full queue blocks the
 * publisher (backpressure): nothing is dropped silently. Records published to
 * a topic nobody reads are counted, warned about once per topic, and
 * acknowledged (there is nobody to deliver them to).
 *
 * Quiescence: the router counts records queued plus batches being processed
 * (router_active). A consumer publishes what a batch produced before calling
 * rqueue_done, so the count never reaches zero while work remains; once the
 * sources have stopped, active == 0 means the pipeline is drained.
 */
#ifndef SPOKE_ROUTER_H
#define SPOKE_ROUTER_H

#include <stddef.h>
#include <stdint.h>

struct router;
struct rqueue;
struct spoke_record;

struct router *router_new(void);
/* Frees topics and queues; records still queued are freed (abandoned). */
void router_free(struct router *r);

/* Declares a topic (so regex subscribers see it before anyone publishes).
 * name must be interned. 0 or -1 on OOM. */
int router_declare(struct router *r, const char *name);

/* Subscribes a new queue of `capacity` records to explicit topics (interned
 * names) and/or a POSIX extended regex (matched against whole topic names,
 * now and as topics appear). NULL with err on a bad regex or OOM. */
struct rqueue *router_subscribe(struct router *r, const char *subscriber,
                                const char *const *topics, size_t ntopics,
                                const char *regex, size_t capacity, char *err,
                                size_t errsize);
/* Detaches and frees a queue; records still in it are freed (abandoned). */
void router_unsubscribe(struct router *r, struct rqueue *q);

/*
 * Publishes n records (takes ownership of all of them). Consecutive records
 * of one topic go in one locked step per queue. Blocks while a queue is full
 * unless *cancel becomes non-zero or the router aborts; then the records not
 * yet queued are freed (abandoned) and SPOKE_ERR_STOPPED is returned.
 */
int router_publish(struct router *r, struct spoke_record **recs, size_t n,
                   const volatile int *cancel);

/* Wakes every blocked publisher and consumer so they re-check their flags. */
void router_interrupt(struct router *r);
/* Makes every blocked and future publish fail with SPOKE_ERR_STOPPED. */
void router_abort(struct router *r);

/* Records queued + batches in progress, over all queues. */
int64_t router_active(struct router *r);
/* Waits until router_active is 0 or the deadline (monotonic ms). 1 if 0. */
int router_wait_quiet(struct router *r, int64_t deadline_ms);

/* ---- queues (consumer side) ---- */

#define RQ_OK      0   /* records returned */
#define RQ_TIMEOUT 1   /* deadline passed, nothing returned */
#define RQ_WOKEN   2   /* rqueue_wake was called */
#define RQ_CLOSED  3   /* closed and empty */

/*
 * Takes up to max records (ownership passes to the caller) into out. Waits
 * while the queue is empty until deadline_ms (monotonic; < 0 = forever), a
 * wake, or close. On RQ_OK, *n > 0 and the batch counts as in progress until
 * rqueue_done.
 */
int rqueue_pop(struct rqueue *q, struct spoke_record **out, size_t max, size_t *n,
               int64_t deadline_ms);
void rqueue_done(struct rqueue *q);
/* Interrupts a waiting rqueue_pop once (it returns RQ_WOKEN). */
void rqueue_wake(struct rqueue *q);
/* After close, pops drain what is left and then return RQ_CLOSED. */
void rqueue_close(struct rqueue *q);
void rqueue_reopen(struct rqueue *q);
size_t rqueue_depth(struct rqueue *q);
/*
 * Discard mode, for a consumer that FAILED: queued records are freed
 * (abandoned: their source offsets never commit, so they are replayed after a
 * restart) and so is everything published to the queue until discard is
 * turned off again. A failed consumer thus never blocks its topic for the
 * healthy subscribers. Returns how many queued records were dropped.
 */
size_t rqueue_set_discard(struct rqueue *q, int on);
/* Records dropped by discard mode so far. */
int64_t rqueue_discarded(struct rqueue *q);
size_t rqueue_capacity(struct rqueue *q);
/* Puts records back at the head of the queue (a consumer that stops with an
 * unfinished batch), ignoring capacity; takes ownership. */
void rqueue_unget(struct rqueue *q, struct spoke_record **recs, size_t n);

/* ---- topics: stats ---- */
struct router_topic_stats {
    const char *name;
    int64_t records;      /* published to the topic */
    int64_t unrouted;     /* published while nobody subscribed */
    size_t subscribers;
    size_t depth;         /* records queued over its subscribers */
};
/* Calls fn for each topic, under the router's lock (fn must not call it). */
void router_topics(struct router *r, void (*fn)(void *ctx, const struct router_topic_stats *s),
                   void *ctx);

#endif
