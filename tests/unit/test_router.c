/* unit-router: fan-out, backpressure, unrouted records, regex subscriptions,
 * discard mode, quiescence accounting. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "ack.h"
#include "record.h"
#include "router.h"
#include "test.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct spoke_record *mk(const char *topic, int i)
{
    char v[32];
    int n = snprintf(v, sizeof(v), "{\"i\":%d}", i);
    return rec_new(intern_str(topic), NULL, 0, v, (size_t)n);
}

static int value_i(struct spoke_record *rec)
{
    size_t len;
    const char *v = rec_value_bytes(rec, &len);
    return atoi(v + 5);
}

static void fanout_copies_to_every_subscriber(void)
{
    char err[256];
    struct router *r = router_new();
    const char *t = intern_str("a");
    struct rqueue *q1 = router_subscribe(r, "s1", &t, 1, NULL, 16, err, sizeof(err));
    struct rqueue *q2 = router_subscribe(r, "s2", NULL, 0, "a|b", 16, err, sizeof(err));
    CHECK(q1 && q2);
    struct spoke_record *recs[3] = { mk("a", 0), mk("a", 1), mk("b", 2) };
    CHECK(router_publish(r, recs, 3, NULL) == SPOKE_OK);
    CHECK(rqueue_depth(q1) == 2);
    CHECK(rqueue_depth(q2) == 3);
    CHECK(router_active(r) == 5);
    struct spoke_record *out[8];
    size_t n;
    CHECK(rqueue_pop(q2, out, 8, &n, 0) == RQ_OK && n == 3);
    CHECK(value_i(out[0]) == 0 && value_i(out[1]) == 1 && value_i(out[2]) == 2);
    CHECK(router_active(r) == 2 + 1); /* q1's two + q2's batch in progress */
    for (size_t i = 0; i < n; i++)
        rec_free(out[i]);
    rqueue_done(q2);
    CHECK(rqueue_pop(q1, out, 1, &n, 0) == RQ_OK && n == 1);
    CHECK(value_i(out[0]) == 0);
    /* Copies are independent: changing one leaves the other. */
    rec_set_value(out[0], "{\"i\":9}", 7, SPOKE_COPY);
    rec_free(out[0]);
    rqueue_done(q1);
    CHECK(rqueue_pop(q1, out, 8, &n, 0) == RQ_OK && n == 1 && value_i(out[0]) == 1);
    rec_free(out[0]);
    rqueue_done(q1);
    CHECK(router_active(r) == 0);
    CHECK(router_wait_quiet(r, now_ms() + 10) == 1);
    /* A regex subscriber sees topics created later. */
    struct spoke_record *late = mk("b", 5);
    router_publish(r, &late, 1, NULL);
    CHECK(rqueue_depth(q2) == 1);
    router_free(r);
}

struct producer {
    struct router *r;
    int n;
    atomic_int sent;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (int i = 0; i < p->n; i++) {
        struct spoke_record *rec = mk("bp", i);
        router_publish(p->r, &rec, 1, NULL);
        atomic_fetch_add(&p->sent, 1);
    }
    return NULL;
}

static void backpressure_blocks_and_loses_nothing(void)
{
    char err[256];
    struct router *r = router_new();
    const char *t = intern_str("bp");
    struct rqueue *q = router_subscribe(r, "slow", &t, 1, NULL, 4, err, sizeof(err));
    struct producer p = { .r = r, .n = 1000 };
    atomic_init(&p.sent, 0);
    pthread_t th;
    pthread_create(&th, NULL, produce, &p);
    /* The producer fills 4 slots and blocks on the 5th. */
    while (rqueue_depth(q) < 4)
        sched_yield();
    /* For a while, the depth never exceeds the capacity. */
    int64_t until = now_ms() + 50;
    size_t maxdepth = 0;
    while (now_ms() < until) {
        size_t d = rqueue_depth(q);
        maxdepth = d > maxdepth ? d : maxdepth;
    }
    CHECK(maxdepth == 4);
    CHECK(atomic_load(&p.sent) <= 5);
    int expect = 0, ordered = 1;
    while (expect < 1000) {
        struct spoke_record *out[3];
        size_t n;
        if (rqueue_pop(q, out, 3, &n, now_ms() + 5000) != RQ_OK)
            break;
        for (size_t i = 0; i < n; i++) {
            ordered &= value_i(out[i]) == expect++;
            rec_free(out[i]);
        }
        rqueue_done(q);
    }
    pthread_join(th, NULL);
    CHECK(expect == 1000);
    CHECK(ordered);
    router_free(r);
}

static void unrouted_of_void(void *ctx, const struct router_topic_stats *st)
{
    if (strcmp(st->name, "void") == 0)
        *(int64_t *)ctx = st->unrouted;
}

static void unrouted_records_are_acked(void)
{
    struct router *r = router_new();
    struct tracker *t = tracker_new("src");
    struct spoke_record *rec = mk("void", 1);
    const char *part = intern_str("f");
    rec_set_origin(rec, tracker_add(t, part, 42, 0));
    CHECK(router_publish(r, &rec, 1, NULL) == SPOKE_OK);
    CHECK(tracker_inflight(t) == 0 && !tracker_blocked(t));
    int64_t unrouted = 0;
    router_topics(r, unrouted_of_void, &unrouted);
    CHECK(unrouted == 1);
    tracker_release(t);
    router_free(r);
}

static void *stop_later(void *arg)
{
    volatile int *cancel = arg;
    *cancel = 1;
    return NULL;
}

static void cancel_unblocks_publisher(void)
{
    char err[256];
    struct router *r = router_new();
    const char *t = intern_str("c");
    struct rqueue *q = router_subscribe(r, "full", &t, 1, NULL, 1, err, sizeof(err));
    struct tracker *tr = tracker_new("src");
    struct spoke_record *recs[3];
    for (int i = 0; i < 3; i++) {
        recs[i] = mk("c", i);
        rec_set_origin(recs[i], tracker_add(tr, intern_str("f"), i, 0));
    }
    volatile int cancel = 0;
    pthread_t th;
    pthread_create(&th, NULL, stop_later, (void *)&cancel);
    pthread_join(th, NULL);
    router_interrupt(r);
    CHECK(router_publish(r, recs, 3, &cancel) == SPOKE_ERR_STOPPED);
    CHECK(rqueue_depth(q) <= 1);
    /* The records that did not fit were abandoned: nothing past them commits. */
    CHECK(tracker_blocked(tr));
    tracker_release(tr);
    router_free(r);
}

static void discard_mode_never_blocks(void)
{
    char err[256];
    struct router *r = router_new();
    const char *t = intern_str("d");
    struct rqueue *ok = router_subscribe(r, "ok", &t, 1, NULL, 100, err, sizeof(err));
    struct rqueue *failed = router_subscribe(r, "failed", &t, 1, NULL, 2, err, sizeof(err));
    struct spoke_record *recs[2] = { mk("d", 0), mk("d", 1) };
    router_publish(r, recs, 2, NULL);
    CHECK(rqueue_depth(failed) == 2);
    CHECK(rqueue_set_discard(failed, 1) == 2);
    CHECK(rqueue_depth(failed) == 0);
    for (int i = 2; i < 50; i++) {
        struct spoke_record *rec = mk("d", i);
        router_publish(r, &rec, 1, NULL); /* would block at 2 without discard */
    }
    CHECK(rqueue_depth(ok) == 50);
    CHECK(rqueue_discarded(failed) == 50);
    CHECK(router_active(r) == 50);
    router_free(r);
}

static void unget_restores_order(void)
{
    char err[256];
    struct router *r = router_new();
    const char *t = intern_str("u");
    struct rqueue *q = router_subscribe(r, "u", &t, 1, NULL, 2, err, sizeof(err));
    struct spoke_record *recs[2] = { mk("u", 0), mk("u", 1) };
    router_publish(r, recs, 2, NULL);
    struct spoke_record *out[2];
    size_t n;
    CHECK(rqueue_pop(q, out, 2, &n, 0) == RQ_OK && n == 2);
    struct spoke_record *more[2] = { mk("u", 2), mk("u", 3) };
    router_publish(r, more, 2, NULL);
    rqueue_unget(q, out, 2); /* beyond capacity: grows */
    rqueue_done(q);
    CHECK(rqueue_depth(q) == 4);
    int ordered = 1;
    CHECK(rqueue_pop(q, out, 2, &n, 0) == RQ_OK);
    ordered &= value_i(out[0]) == 0 && value_i(out[1]) == 1;
    rec_free(out[0]);
    rec_free(out[1]);
    rqueue_done(q);
    CHECK(rqueue_pop(q, out, 2, &n, 0) == RQ_OK);
    ordered &= value_i(out[0]) == 2 && value_i(out[1]) == 3;
    rec_free(out[0]);
    rec_free(out[1]);
    rqueue_done(q);
    CHECK(ordered);
    rqueue_close(q);
    CHECK(rqueue_pop(q, out, 2, &n, -1) == RQ_CLOSED);
    rqueue_wake(q);
    router_free(r);
}

static void bad_regex_refused(void)
{
    char err[256] = "";
    struct router *r = router_new();
    CHECK(router_subscribe(r, "x", NULL, 0, "a(", 4, err, sizeof(err)) == NULL);
    CHECK(CONTAINS(err, "topics.regex 'a('"));
    router_free(r);
}

int main(void)
{
    RUN(fanout_copies_to_every_subscriber);
    RUN(backpressure_blocks_and_loses_nothing);
    RUN(unrouted_records_are_acked);
    RUN(cancel_unblocks_publisher);
    RUN(discard_mode_never_blocks);
    RUN(unget_restores_order);
    RUN(bad_regex_refused);
    intern_free_all();
    return TEST_REPORT();
}
