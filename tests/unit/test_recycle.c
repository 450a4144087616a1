/* unit-recycle: blocks come back to the thread that allocates them (when
 * enabled, as the host does on one CPU; plain malloc otherwise). Size
 * classes; a thread reuses its own frees; blocks freed on another thread
 * reach the allocating one through the depot (when a magazine fills, when
 * the thread goes idle, when it exits) instead of new allocations; the
 * depot is bounded and trimmed; a thread turned off uses plain malloc; and
 * under AddressSanitizer a write to a recycled block is still caught. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "recycle.h"
#include "test.h"

#define N 1000

struct blocks {
    void *p[8 * N];
    uint8_t cls[8 * N];
    size_t n;
    size_t size;
    int flush;  /* free_all: flush instead of exiting with a partial magazine */
};

static void alloc_all(struct blocks *b, size_t n, size_t size)
{
    b->n = n;
    b->size = size;
    for (size_t i = 0; i < n; i++) {
        b->p[i] = recycle_alloc(size, &b->cls[i]);
        CHECK(b->p[i] != NULL);
        memset(b->p[i], (int)i, size); /* the whole size is usable */
    }
}

static void *free_all(void *arg)
{
    struct blocks *b = arg;
    for (size_t i = 0; i < b->n; i++)
        recycle_free(b->p[i], b->cls[i]);
    if (b->flush)
        recycle_thread_flush();
    return NULL;
}

static void free_on_thread(struct blocks *b)
{
    pthread_t t;
    CHECK(pthread_create(&t, NULL, free_all, b) == 0);
    CHECK(pthread_join(t, NULL) == 0);
}

static struct recycle_stats stats(void)
{
    struct recycle_stats s;
    recycle_stats(&s);
    return s;
}

static void test_classes(void)
{
    static const struct { size_t size; uint8_t cls; } cases[] = {
        { 1, 1 }, { 256, 1 }, { 257, 2 }, { 512, 2 }, { 1000, 3 }, { 2048, 4 }, { 2049, 0 },
        { 1 << 20, 0 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t cls = 99;
        char *p = recycle_alloc(cases[i].size, &cls);
        CHECK(p != NULL);
        CHECK_MSG(cls == cases[i].cls, "size %zu: class %u, want %u", cases[i].size, cls,
                  cases[i].cls);
        memset(p, 0xab, cases[i].size);
        recycle_free(p, cls);
    }
    recycle_free(NULL, 2); /* like free(NULL) */
}

static void test_same_thread_reuse(void)
{
    recycle_trim();
    uint8_t c1, c2;
    void *p = recycle_alloc(300, &c1);
    recycle_free(p, c1);
    void *q = recycle_alloc(400, &c2); /* same class: the block just freed */
    CHECK(q == p);
    CHECK(c2 == c1);
    recycle_free(q, c2);
}

static int contains(const struct blocks *b, const void *p)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->p[i] == p)
            return 1;
    return 0;
}

/* Allocated here, freed on a thread that exits with a partly filled
 * magazine: every block comes back, none is allocated anew. */
static void test_cross_thread(void)
{
    static struct blocks first, second;
    recycle_thread_flush();
    recycle_trim();
    struct recycle_stats s0 = stats();
    alloc_all(&first, N, 500);
    struct recycle_stats s1 = stats();
    CHECK(s1.fresh - s0.fresh == N);
    free_on_thread(&first);
    struct recycle_stats s2 = stats();
    CHECK_MSG(s2.depot_blocks == N, "depot holds %zu blocks after the thread exited, want %d",
              s2.depot_blocks, N);
    alloc_all(&second, N, 500);
    struct recycle_stats s3 = stats();
    CHECK_MSG(s3.fresh == s2.fresh, "%llu blocks allocated anew",
              (unsigned long long)(s3.fresh - s2.fresh));
    CHECK(s3.from_depot - s2.from_depot == N);
    CHECK(s3.depot_blocks == 0);
    size_t reused = 0;
    for (size_t i = 0; i < N; i++)
        reused += contains(&first, second.p[i]);
    CHECK(reused == N);
    second.flush = 1;
    free_on_thread(&second);
}

/* A thread that stays alive hands its partial magazines over when it
 * flushes (goes idle). */
static void test_idle_flush(void)
{
    static struct blocks b;
    recycle_trim();
    alloc_all(&b, 10, 1500);
    b.flush = 1;
    free_on_thread(&b);
    CHECK(stats().depot_blocks == 10);
    recycle_trim();
}

/* The depot keeps at most RECYCLE_DEPOT_BYTES per class; the rest goes
 * back to the allocator, and recycle_trim frees what it keeps. */
static void test_bounds_and_trim(void)
{
    static struct blocks b;
    static const struct { size_t size, block; } cases[] = { { 200, 256 }, { 2000, 2048 } };
    for (size_t k = 0; k < 2; k++) {
        const size_t keep = RECYCLE_DEPOT_MAGS(cases[k].block) * RECYCLE_MAG;
        size_t n = keep + 10 * RECYCLE_MAG;
        CHECK(n <= sizeof(b.p) / sizeof(b.p[0]));
        recycle_thread_flush();
        recycle_trim();
        struct recycle_stats s0 = stats();
        alloc_all(&b, n, cases[k].size);
        b.flush = 0;
        free_on_thread(&b);
        struct recycle_stats s1 = stats();
        CHECK_MSG(s1.depot_blocks == keep, "%zu-byte blocks: depot %zu, want %zu",
                  cases[k].block, s1.depot_blocks, keep);
        CHECK(s1.overflow - s0.overflow == n - keep);
        size_t bytes = recycle_trim();
        CHECK_MSG(bytes == RECYCLE_DEPOT_BYTES, "trimmed %zu bytes", bytes);
        CHECK(stats().depot_blocks == 0);
        CHECK(recycle_trim() == 0);
        /* Every block of the round was freed: by the overflow or the trim. */
        CHECK_MSG(stats().held == s0.held, "%llu blocks held, %llu before",
                  (unsigned long long)stats().held, (unsigned long long)s0.held);
    }
}

static void *off_thread(void *arg)
{
    (void)arg;
    uint8_t cls, cls2;
    void *p = recycle_alloc(100, &cls); /* a class block, before off */
    CHECK(cls == 1);
    recycle_thread_off();
    void *q = recycle_alloc(100, &cls2);
    CHECK(cls2 == 0); /* plain malloc from now on */
    recycle_free(q, cls2);
    recycle_free(p, cls); /* a class block freed by a thread that is off */
    return NULL;
}

/* Disabled (the host on several CPUs): a new thread's blocks are plain
 * malloc, and nothing reaches the depot. */
static void *disabled_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3 * RECYCLE_MAG; i++) {
        uint8_t cls = 99;
        void *p = recycle_alloc(300, &cls);
        CHECK(p != NULL && cls == 0);
        recycle_free(p, cls);
    }
    return NULL;
}

static void test_disabled(void)
{
    recycle_thread_flush();
    recycle_trim();
    recycle_enable(false);
    struct recycle_stats s0 = stats();
    pthread_t t;
    CHECK(pthread_create(&t, NULL, disabled_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    struct recycle_stats s1 = stats();
    CHECK(s1.fresh == s0.fresh && s1.depot_blocks == 0 && s1.held == s0.held);
    recycle_enable(true);
}

static void test_thread_off(void)
{
    recycle_trim();
    uint64_t held = stats().held;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, off_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(stats().depot_blocks == 0);
    CHECK(stats().held == held); /* the class block went back to the allocator */
}

/* Under AddressSanitizer, a block in a magazine is poisoned: a write after
 * recycle_free is reported (the child dies), and so is a write past the
 * size asked for, inside the class's block. */
static void test_poisoned(void)
{
#if defined(__SANITIZE_ADDRESS__)
    for (int kind = 0; kind < 2; kind++) {
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            uint8_t cls;
            char *p = recycle_alloc(300, &cls);
            if (kind == 0) {
                recycle_free(p, cls);
                ((volatile char *)p)[100] = 1;
            } else {
                ((volatile char *)p)[400] = 1; /* the block is 512 bytes */
            }
            _exit(0);
        }
        int st = 0;
        CHECK(waitpid(pid, &st, 0) == pid);
        CHECK_MSG(!(WIFEXITED(st) && WEXITSTATUS(st) == 0),
                  "%s not reported", kind == 0 ? "write after free" : "write past the size");
    }
#else
    fprintf(stderr, "   (not an AddressSanitizer build: poisoning not checked)\n");
#endif
}

int main(void)
{
    recycle_enable(true);
    RUN(test_classes);
    RUN(test_same_thread_reuse);
    RUN(test_cross_thread);
    RUN(test_idle_flush);
    RUN(test_bounds_and_trim);
    RUN(test_thread_off);
    RUN(test_disabled);
    RUN(test_poisoned);
    recycle_thread_flush();
    recycle_trim();
    return TEST_REPORT();
}
