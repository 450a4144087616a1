/* unit-ack: watermarks commit only delivered prefixes; abandoned units block;
 * the offset store is atomic and refuses corrupt files. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "ack.h"
#include "fsutil.h"
#include "record.h"
#include "test.h"

struct seen {
    const char *part[8];
    int64_t off[8];
    size_t n;
};

static void collect(void *ctx, const char *p, int64_t off)
{
    struct seen *s = ctx;
    s->part[s->n] = p;
    s->off[s->n] = off;
    s->n++;
}

static int64_t committed(struct tracker *t, const char *part)
{
    struct seen s = { .n = 0 };
    tracker_committed(t, collect, &s);
    for (size_t i = 0; i < s.n; i++)
        if (s.part[i] == part)
            return s.off[i];
    return -1;
}

static void commit_only_after_ack(void)
{
    struct tracker *t = tracker_new("src");
    const char *p = intern_str("file");
    struct origin *o1 = tracker_add(t, p, 10, 0);
    struct origin *o2 = tracker_add(t, p, 20, 0);
    struct origin *o3 = tracker_add(t, p, 30, 0);
    CHECK(tracker_inflight(t) == 3);
    CHECK(committed(t, p) == -1);
    /* Out of order: 2 and 3 done, 1 not: nothing commits. */
    origin_done(o2, 1);
    origin_done(o3, 1);
    CHECK(committed(t, p) == -1);
    uint64_t g = tracker_generation(t);
    origin_done(o1, 1);
    CHECK(committed(t, p) == 30);
    CHECK(tracker_generation(t) != g);
    CHECK(tracker_inflight(t) == 0);
    tracker_release(t);
}

static void derived_units_all_needed(void)
{
    struct tracker *t = tracker_new("src");
    const char *p = intern_str("file");
    struct origin *o = tracker_add(t, p, 5, 0);
    origin_hold(o); /* fan-out copy */
    origin_hold(o); /* a transform's extra output */
    origin_done(o, 1);
    origin_done(o, 1);
    CHECK(committed(t, p) == -1);
    origin_done(o, 1);
    CHECK(committed(t, p) == 5);
    tracker_release(t);
}

static void abandoned_blocks_later_commits(void)
{
    struct tracker *t = tracker_new("src");
    const char *p = intern_str("file");
    struct origin *o1 = tracker_add(t, p, 1, 0);
    struct origin *o2 = tracker_add(t, p, 2, 0);
    struct origin *o3 = tracker_add(t, p, 3, 0);
    origin_done(o1, 1);
    CHECK(committed(t, p) == 1);
    origin_done(o2, 0); /* abandoned */
    origin_done(o3, 1);
    CHECK(committed(t, p) == 1);
    CHECK(tracker_blocked(t));
    CHECK(tracker_inflight(t) == 0);
    tracker_release(t);
}

static void partitions_independent_positions(void)
{
    struct tracker *t = tracker_new("src");
    const char *a = intern_str("p0"), *b = intern_str("p1");
    struct origin *o1 = tracker_add(t, a, 100, 0);
    struct origin *o2 = tracker_add(t, b, 7, 0);
    struct origin *o3 = tracker_add(t, a, 101, 0);
    origin_done(o1, 1);
    origin_done(o3, 1);
    CHECK(committed(t, a) == 100); /* o2 (p1) blocks o3 in emission order */
    CHECK(committed(t, b) == -1);
    origin_done(o2, 1);
    CHECK(committed(t, a) == 101);
    CHECK(committed(t, b) == 7);
    tracker_release(t);
}

static void batched_acks_across_trackers(void)
{
    struct tracker *a = tracker_new("a"), *b = tracker_new("b");
    const char *p = intern_str("file");
    struct origin *a1 = tracker_add(a, p, 1, 0), *a2 = tracker_add(a, p, 2, 0);
    struct origin *a3 = tracker_add(a, p, 3, 0);
    struct origin *b1 = tracker_add(b, p, 7, 0), *b2 = tracker_add(b, p, 8, 0);
    origin_hold(a2); /* a2 has two units: one ack leaves it pending */
    /* Interleaved trackers, out of order, a NULL, and a1 missing. */
    struct origin *batch[] = { a3, b2, NULL, a2, b1 };
    origins_done(batch, 5);
    CHECK(committed(b, p) == 8);
    CHECK(tracker_inflight(b) == 0);
    CHECK(committed(a, p) == -1); /* a1 not acknowledged yet */
    CHECK(tracker_inflight(a) == 3);
    struct origin *first[] = { a1 };
    origins_done(first, 1);
    CHECK(committed(a, p) == 1); /* a2 still holds its second unit */
    struct origin *last[] = { a2 };
    origins_done(last, 1);
    CHECK(committed(a, p) == 3);
    CHECK(tracker_inflight(a) == 0);
    origins_done(NULL, 0);
    tracker_release(a);
    tracker_release(b);
}

static void *finish_later(void *arg)
{
    /* Runs while the main thread waits in tracker_wait_idle. */
    origin_done(arg, 1);
    return NULL;
}

static void wait_idle_wakes(void)
{
    struct tracker *t = tracker_new("src");
    struct origin *o = tracker_add(t, intern_str("x"), 1, 0);
    pthread_t th;
    pthread_create(&th, NULL, finish_later, o);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    CHECK(tracker_wait_idle(t, now + 10000) == 1);
    pthread_join(th, NULL);
    /* The owner may release before the last entry completes. */
    struct origin *o2 = tracker_add(t, intern_str("x"), 2, 0);
    tracker_release(t);
    origin_done(o2, 1); /* frees the tracker: ASan proves no leak or use-after-free */
    CHECK(1);
}

/* Entries o[0..n) of one partition "file" at offsets 10, 20, ... */
static struct tracker *tracker_of(struct origin **o, size_t n, const char **part)
{
    struct tracker *t = tracker_new("src");
    *part = intern_str("file");
    for (size_t i = 0; i < n; i++)
        o[i] = tracker_add(t, *part, 10 * (int64_t)(i + 1), 0);
    return t;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void hold_keeps_positions_back_until_it_ends(void)
{
    const char *p;
    struct origin *o[4];
    struct tracker *t = tracker_of(o, 3, &p);
    origin_done(o[0], 1);
    CHECK(committed(t, p) == 10);
    /* A stateful transform absorbs o[1] and o[2]: their units end at once. */
    struct ack_hold *h = ack_hold_new(o[1]);
    CHECK(h && ack_hold_tracker(h) == t && origin_tracker(o[1]) == t);
    ack_hold_cover(h, o[2]);  /* later than what h covers: no change */
    ack_hold_count(h, 2);
    origin_done(o[1], 1);
    origin_done(o[2], 1);
    CHECK(committed(t, p) == 10);
    CHECK(tracker_inflight(t) == 2);  /* held records count in flight */
    CHECK(tracker_wait_idle(t, now_ms()) == 0);
    /* A later record delivered downstream does not commit past the hold. */
    o[3] = tracker_add(t, p, 40, 0);
    uint64_t g = tracker_generation(t);
    origin_done(o[3], 1);
    CHECK(committed(t, p) == 10);
    CHECK(tracker_generation(t) == g);
    ack_hold_end(h, 1);  /* the snapshot is durable */
    CHECK(committed(t, p) == 40);
    CHECK(tracker_generation(t) != g);
    CHECK(tracker_inflight(t) == 0);
    CHECK(tracker_wait_idle(t, now_ms()) == 1);
    CHECK(!tracker_blocked(t));
    tracker_release(t);
}

static void abandoned_hold_blocks(void)
{
    const char *p;
    struct origin *o[3];
    struct tracker *t = tracker_of(o, 3, &p);
    origin_done(o[0], 1);
    struct ack_hold *h = ack_hold_new(o[1]);
    ack_hold_count(h, 1);
    origin_done(o[1], 1);
    ack_hold_end(h, 0);  /* the transform failed before a snapshot */
    origin_done(o[2], 1);
    CHECK(committed(t, p) == 10);
    CHECK(tracker_blocked(t));
    CHECK(tracker_inflight(t) == 0);
    tracker_release(t);
}

static void holds_of_two_transforms(void)
{
    /* A holds from o[1], B from o[3]; every record ends its unit. */
    for (int a_first = 0; a_first < 2; a_first++) {
        const char *p;
        struct origin *o[5];
        struct tracker *t = tracker_of(o, 5, &p);
        struct ack_hold *b = ack_hold_new(o[3]);
        struct ack_hold *a = ack_hold_new(o[1]);
        for (int i = 0; i < 5; i++)
            origin_done(o[i], 1);
        CHECK(committed(t, p) == 10);
        if (a_first) {
            ack_hold_end(a, 1);
            CHECK(committed(t, p) == 30);  /* up to B's first record */
            ack_hold_end(b, 1);
        } else {
            ack_hold_end(b, 1);
            CHECK(committed(t, p) == 10);  /* A still holds from o[1] */
            ack_hold_end(a, 1);
        }
        CHECK(committed(t, p) == 50);
        tracker_release(t);
    }
}

static void hold_covers_an_earlier_record(void)
{
    /* A record that took longer upstream reaches the transform after a
     * later one: the hold moves back to it. */
    const char *p;
    struct origin *o[3];
    struct tracker *t = tracker_of(o, 3, &p);
    struct ack_hold *h = ack_hold_new(o[2]);
    ack_hold_cover(h, o[1]);
    for (int i = 0; i < 3; i++)
        origin_done(o[i], 1);
    CHECK(committed(t, p) == 10);
    ack_hold_end(h, 1);
    CHECK(committed(t, p) == 30);
    tracker_release(t);
}

static void *end_hold_later(void *arg)
{
    ack_hold_end(arg, 1);
    return NULL;
}

static void released_tracker_outlives_its_holds(void)
{
    const char *p;
    struct origin *o[1];
    struct tracker *t = tracker_of(o, 1, &p);
    struct ack_hold *h = ack_hold_new(o[0]);
    origin_done(o[0], 1);
    pthread_t th;
    pthread_create(&th, NULL, end_hold_later, h);
    CHECK(tracker_wait_idle(t, now_ms() + 10000) == 1);  /* woken by the hold's end */
    pthread_join(th, NULL);
    struct origin *o2 = tracker_add(t, p, 20, 0);
    h = ack_hold_new(o2);
    origin_done(o2, 1);
    tracker_release(t);  /* idle but for the hold: stays */
    ack_hold_end(h, 1);  /* frees the tracker: ASan proves no leak or use-after-free */
    CHECK(1);
}

static void offset_store_roundtrip(void)
{
    char dir[] = "/tmp/spoke-ack-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256], err[256];
    snprintf(path, sizeof(path), "%s/offsets.json", dir);
    struct offset_store *os = offsets_open(path, err, sizeof(err));
    CHECK(os != NULL);
    int64_t off = 0;
    CHECK(offsets_get(os, "src", "f", &off) == SPOKE_ERR_NOTFOUND);
    offsets_set(os, "src", "f", 1234);
    offsets_set(os, "src", "g", 99);
    offsets_set(os, "other", "f", 1);
    CHECK(offsets_flush(os, err, sizeof(err)) == 0);
    offsets_close(os);
    os = offsets_open(path, err, sizeof(err));
    CHECK(os != NULL);
    CHECK(offsets_get(os, "src", "f", &off) == SPOKE_OK && off == 1234);
    CHECK(offsets_count(os, "src") == 2);
    const char *p = NULL;
    CHECK(offsets_at(os, "src", 1, &p, &off) == SPOKE_OK);
    CHECK(offsets_at(os, "src", 2, &p, &off) == SPOKE_ERR_NOTFOUND);
    offsets_forget(os, "other");
    CHECK(offsets_count(os, "other") == 0);
    offsets_close(os);
    /* No temp file left behind by the atomic write. */
    char tmp[300];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    CHECK(access(tmp, F_OK) != 0);
    /* A corrupt file is refused with its name, not silently reset. */
    const char *bad[] = { "{\"src\": {\"f\": \"x\"}}", "[1,2]", "{\"src\": 3}", "{trunc" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(atomic_write_file(path, bad[i], strlen(bad[i]), err, sizeof(err)) == 0);
        err[0] = '\0';
        os = offsets_open(path, err, sizeof(err));
        CHECK_MSG(os == NULL && CONTAINS(err, "offsets.json"), "case %zu: %s", i, err);
        offsets_close(os);
    }
    unlink(path);
    rmdir(dir);
}

/* Entries span many storage chunks: completions in a scrambled order
 * commit exactly the delivered prefix, in-flight counts stay exact while
 * the head passes chunk ends, and a tracker emptied and refilled many
 * times (its chunks recycled) keeps committing. */
static void many_entries_across_chunks(void)
{
    enum { N = 1000 };
    struct tracker *t = tracker_new("src");
    const char *p = intern_str("file");
    static struct origin *os[N];
    static int done[N];
    for (int i = 0; i < N; i++) {
        os[i] = tracker_add(t, p, 1000 + i, i);
        CHECK(os[i] != NULL);
        done[i] = 0;
    }
    CHECK(tracker_inflight(t) == N);
    /* Complete in a scrambled order (a stride coprime to N), checking the
     * watermark after each one against the longest delivered prefix. */
    int prefix = 0, bad = 0;
    for (int k = 0; k < N; k++) {
        int i = (int)((k * 389L + 17) % N);
        origin_done(os[i], 1);
        done[i] = 1;
        while (prefix < N && done[prefix])
            prefix++;
        int64_t want = prefix ? 1000 + prefix - 1 : -1;
        if (committed(t, p) != want || tracker_inflight(t) != (size_t)(N - prefix))
            bad++;
    }
    CHECK_MSG(bad == 0, "%d steps off", bad);
    CHECK(committed(t, p) == 1000 + N - 1);
    CHECK(tracker_inflight(t) == 0);

    /* Refill and drain in waves of different sizes: slots are reused. */
    int64_t off = 5000;
    for (int wave = 0; wave < 40; wave++) {
        int n = 1 + (wave * 53) % 300;
        for (int i = 0; i < n; i++)
            os[i] = tracker_add(t, p, off + i, 0);
        CHECK(tracker_inflight(t) == (size_t)n);
        CHECK(origin_born_ns(os[n - 1]) == 0);
        for (int i = n - 1; i >= 0; i--)
            origin_done(os[i], 1);
        off += n;
        CHECK(committed(t, p) == off - 1);
    }
    CHECK(tracker_inflight(t) == 0 && !tracker_blocked(t));

    /* An abandoned entry in a later chunk blocks everything after it. */
    for (int i = 0; i < 300; i++)
        os[i] = tracker_add(t, p, off + i, 0);
    for (int i = 0; i < 300; i++)
        origin_done(os[i], i != 200);
    CHECK(committed(t, p) == off + 199);
    CHECK(tracker_blocked(t));
    tracker_release(t);
}

/* One thread appends while another completes (the source and a sink): the
 * lock-free append and the locked pops agree on every entry. */
struct race {
    struct tracker *t;
    struct origin *_Atomic slot[64];
    int n;
};

static void *race_completer(void *arg)
{
    struct race *r = arg;
    for (int i = 0; i < r->n; i++) {
        struct origin *o;
        while (!(o = atomic_exchange(&r->slot[i % 64], NULL)))
            sched_yield();
        origin_done(o, 1);
    }
    return NULL;
}

static void append_while_completing(void)
{
    struct race r = { .t = tracker_new("src"), .n = 100000 };
    const char *p = intern_str("file");
    for (int i = 0; i < 64; i++)
        atomic_init(&r.slot[i], NULL);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, race_completer, &r) == 0);
    for (int i = 0; i < r.n; i++) {
        struct origin *o = tracker_add(r.t, p, i, 0);
        while (atomic_load(&r.slot[i % 64]))
            sched_yield();
        atomic_store(&r.slot[i % 64], o);
    }
    pthread_join(th, NULL);
    CHECK(tracker_inflight(r.t) == 0);
    CHECK(committed(r.t, p) == r.n - 1);
    tracker_release(r.t);
}

/* A run after a restart: positions its previous run added are marked
 * replayed, per partition, until one passes them; entries sharing an
 * offset are told apart by their sub (the ones before them at that
 * offset); a restart in the middle of a replay keeps the furthest mark; a
 * fresh tracker inherits both. */
static void replays_are_marked(void)
{
    struct tracker *t = tracker_new("src");
    const char *a = intern_str("a"), *b = intern_str("b");
    struct origin *all[32];
    size_t n = 0;
#define ADD(tr, p, off) (all[n++] = tracker_add((tr), (p), (off), 0))
    struct origin *o1 = ADD(t, a, 10), *o2 = ADD(t, b, 5), *o3 = ADD(t, b, 5);
    struct origin *o4 = ADD(t, a, 20), *o5 = ADD(t, NULL, 0), *o6 = ADD(t, b, 5);
    CHECK(origin_sub(o1) == 0 && origin_sub(o2) == 0 && origin_sub(o3) == 1 &&
          origin_sub(o4) == 0 && origin_sub(o6) == 2);
    CHECK(!origin_replayed(o1) && !origin_replayed(o2) && !origin_replayed(o3) &&
          !origin_replayed(o4) && !origin_replayed(o5) && !origin_replayed(o6));
    /* Restart with the same tracker: up to a@20 and b@5 (its third). */
    tracker_replay_inherit(t, t);
    struct origin *r1 = ADD(t, a, 10), *r2 = ADD(t, b, 5), *r3 = ADD(t, b, 5);
    struct origin *r4 = ADD(t, NULL, 0), *r5 = ADD(t, b, 5), *r6 = ADD(t, b, 5);
    CHECK(origin_replayed(r1) && origin_replayed(r2) && origin_replayed(r3));
    CHECK(!origin_replayed(r4));
    CHECK(origin_replayed(r5));      /* the third at b@5, as before */
    CHECK(!origin_replayed(r6));     /* a fourth: new */
    struct origin *r7 = ADD(t, b, 5);
    CHECK(!origin_replayed(r7));     /* b is done with */
    /* Restarted again before a passed 20: the mark stays at 20, not 10. */
    tracker_replay_inherit(t, t);
    struct tracker *u = tracker_new("src");
    tracker_replay_inherit(u, t);    /* a new tracker for the next run */
    struct origin *u1 = ADD(u, a, 15), *u2 = ADD(u, b, 6), *u3 = ADD(u, a, 21);
    CHECK(origin_replayed(u1));
    CHECK(!origin_replayed(u2));     /* b's last was (5, 4th) */
    CHECK(!origin_replayed(u3));
#undef ADD
    for (size_t i = 0; i < n; i++)
        origin_done(all[i], 1);
    /* The replay went back over a: the last position popped commits. */
    CHECK(committed(t, a) == 10 && committed(t, b) == 5);
    CHECK(committed(u, a) == 21 && committed(u, b) == 6);
    tracker_release(t);
    tracker_release(u);
}

int main(void)
{
    RUN(commit_only_after_ack);
    RUN(derived_units_all_needed);
    RUN(abandoned_blocks_later_commits);
    RUN(partitions_independent_positions);
    RUN(batched_acks_across_trackers);
    RUN(wait_idle_wakes);
    RUN(many_entries_across_chunks);
    RUN(append_while_completing);
    RUN(hold_keeps_positions_back_until_it_ends);
    RUN(abandoned_hold_blocks);
    RUN(holds_of_two_transforms);
    RUN(hold_covers_an_earlier_record);
    RUN(released_tracker_outlives_its_holds);
    RUN(replays_are_marked);
    RUN(offset_store_roundtrip);
    intern_free_all();
    return TEST_REPORT();
}
