/* recycle - see recycle.h. */
#include "recycle.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define NCLASS 4
#define MIN_SHIFT 8 /* the smallest class: 256 bytes */
#define DEPOT_MAX RECYCLE_DEPOT_MAGS(1u << MIN_SHIFT)

struct blk {
    struct blk *next;
};

/* A chain of blocks linked through their first word. */
struct mag {
    struct blk *head;
    unsigned n;
};

/* The calling thread's magazines: a to allocate from, f to free into. */
struct rc_tls {
    struct mag a[NCLASS], f[NCLASS];
    bool off;    /* no magazines: plain malloc and free */
    bool keyed;  /* the exit destructor is set */
};
static _Thread_local struct rc_tls tls;

static struct {
    pthread_mutex_t mu;
    struct mag m[DEPOT_MAX];
    atomic_uint n; /* read without the lock only to skip an empty depot */
} depot[NCLASS] = {
    { .mu = PTHREAD_MUTEX_INITIALIZER }, { .mu = PTHREAD_MUTEX_INITIALIZER },
    { .mu = PTHREAD_MUTEX_INITIALIZER }, { .mu = PTHREAD_MUTEX_INITIALIZER },
};

static atomic_ullong nfresh, nfrom_depot, noverflow, nreleased;

static atomic_bool enabled;

static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static bool exit_key_ok;

static inline size_t class_size(int c)
{
    return (size_t)1 << (MIN_SHIFT + c);
}

static inline int class_of(size_t size)
{
    if (size <= 256)
        return 0;
    if (size <= 512)
        return 1;
    if (size <= 1024)
        return 2;
    if (size <= 2048)
        return 3;
    return -1;
}

static void chain_free(struct mag *m, int c)
{
    atomic_fetch_add_explicit(&nreleased, m->n, memory_order_relaxed);
    struct blk *b = m->head;
    while (b) {
        UNPOISON(b, class_size(c));
        struct blk *next = b->next;
        free(b);
        b = next;
    }
    m->head = NULL;
    m->n = 0;
}

/* Moves m (not empty) into the depot, or frees its blocks when the depot
 * is full; m is empty after. */
static void depot_put(int c, struct mag *m)
{
    struct mag spill = { 0 };
    pthread_mutex_lock(&depot[c].mu);
    unsigned n = atomic_load_explicit(&depot[c].n, memory_order_relaxed);
    if (n < RECYCLE_DEPOT_MAGS(class_size(c))) {
        depot[c].m[n] = *m;
        atomic_store_explicit(&depot[c].n, n + 1, memory_order_relaxed);
    } else {
        spill = *m;
    }
    pthread_mutex_unlock(&depot[c].mu);
    m->head = NULL;
    m->n = 0;
    if (spill.head) {
        atomic_fetch_add_explicit(&noverflow, spill.n, memory_order_relaxed);
        chain_free(&spill, c);
    }
}

/* Fills m (empty) from the depot; false when the depot has none. */
static bool depot_get(int c, struct mag *m)
{
    bool got = false;
    /* Most misses (a source's burst outrunning the frees) need no lock. */
    if (!atomic_load_explicit(&depot[c].n, memory_order_relaxed))
        return false;
    pthread_mutex_lock(&depot[c].mu);
    unsigned n = atomic_load_explicit(&depot[c].n, memory_order_relaxed);
    if (n) {
        *m = depot[c].m[n - 1];
        atomic_store_explicit(&depot[c].n, n - 1, memory_order_relaxed);
        got = true;
    }
    pthread_mutex_unlock(&depot[c].mu);
    if (got)
        atomic_fetch_add_explicit(&nfrom_depot, m->n, memory_order_relaxed);
    return got;
}

static void flush(struct rc_tls *t)
{
    for (int c = 0; c < NCLASS; c++) {
        if (t->a[c].n)
            depot_put(c, &t->a[c]);
        if (t->f[c].n)
            depot_put(c, &t->f[c]);
    }
}

static void on_exit_thread(void *arg)
{
    flush(arg);
}

static void make_exit_key(void)
{
    exit_key_ok = pthread_key_create(&exit_key, on_exit_thread) == 0;
}

/* The thread's magazines go to the depot when it exits. Without the key
 * (pthread_key_create failed), the thread keeps no magazines. */
static bool keyed(void)
{
    if (tls.keyed)
        return true;
    if (tls.off)
        return false;
    if (!atomic_load_explicit(&enabled, memory_order_relaxed)) {
        tls.off = true;
        return false;
    }
    pthread_once(&exit_once, make_exit_key);
    if (!exit_key_ok || pthread_setspecific(exit_key, &tls) != 0) {
        tls.off = true;
        return false;
    }
    tls.keyed = true;
    return true;
}

/* recycle_alloc when the thread's allocation magazine for c is empty (or
 * there is no class, or the thread keeps no magazines). */
static __attribute__((noinline)) void *alloc_slow(size_t size, int c, uint8_t *cls)
{
    if (c < 0 || tls.off || !keyed()) {
        *cls = 0;
        return malloc(size);
    }
    struct mag *a = &tls.a[c], *f = &tls.f[c];
    if (f->n) {
        *a = *f; /* this thread's own frees, still warm */
        f->head = NULL;
        f->n = 0;
    } else if (!depot_get(c, a)) {
        void *p = malloc(class_size(c));
        if (!p)
            return NULL;
        atomic_fetch_add_explicit(&nfresh, 1, memory_order_relaxed);
        POISON((char *)p + size, class_size(c) - size);
        *cls = (uint8_t)(c + 1);
        return p;
    }
    return recycle_alloc(size, cls);
}

void *recycle_alloc(size_t size, uint8_t *cls)
{
    int c = class_of(size);
    if (c >= 0) {
        struct mag *a = &tls.a[c];
        if (a->n) {
            struct blk *b = a->head;
            UNPOISON(b, class_size(c));
            a->head = b->next;
            a->n--;
            POISON((char *)b + size, class_size(c) - size); /* overflows past size still show */
            *cls = (uint8_t)(c + 1);
            return b;
        }
    }
    return alloc_slow(size, c, cls);
}

static inline void push(struct mag *f, void *p, int c)
{
    struct blk *b = p;
    UNPOISON(b, sizeof(*b)); /* under a block of fewer bytes, poisoned past them */
    b->next = f->head;
    f->head = b;
    f->n++;
    /* All but the link: LeakSanitizer follows no pointer in poisoned
     * memory, and would report the rest of the chain as leaked. */
    POISON(b + 1, class_size(c) - sizeof(*b));
}

/* recycle_free when the block is not recycled, the thread keeps no
 * magazines (yet), or its free magazine is full. */
static __attribute__((noinline)) void free_slow(void *p, uint8_t cls)
{
    if (!p)
        return;
    if (!cls || cls > NCLASS) {
        free(p);
        return;
    }
    int c = cls - 1;
    if (tls.off || !keyed()) {
        atomic_fetch_add_explicit(&nreleased, 1, memory_order_relaxed);
        UNPOISON(p, class_size(c));
        free(p);
        return;
    }
    struct mag *f = &tls.f[c];
    if (f->n == RECYCLE_MAG)
        depot_put(c, f);
    push(f, p, c);
}

void recycle_free(void *p, uint8_t cls)
{
    unsigned c = (unsigned)cls - 1;
    /* keyed: a thread that keeps magazines (off clears it). */
    if (c < NCLASS && tls.keyed && p) {
        struct mag *f = &tls.f[c];
        if (f->n < RECYCLE_MAG) {
            push(f, p, (int)c);
            return;
        }
    }
    free_slow(p, cls);
}

void recycle_enable(bool on)
{
    atomic_store_explicit(&enabled, on, memory_order_relaxed);
}

void recycle_thread_flush(void)
{
    flush(&tls);
}

void recycle_thread_off(void)
{
    flush(&tls);
    tls.off = true;
    tls.keyed = false; /* the fast paths check keyed alone */
}

size_t recycle_trim(void)
{
    size_t bytes = 0;
    for (int c = 0; c < NCLASS; c++) {
        struct mag m[DEPOT_MAX];
        pthread_mutex_lock(&depot[c].mu);
        unsigned n = atomic_load_explicit(&depot[c].n, memory_order_relaxed);
        for (unsigned i = 0; i < n; i++)
            m[i] = depot[c].m[i];
        atomic_store_explicit(&depot[c].n, 0, memory_order_relaxed);
        pthread_mutex_unlock(&depot[c].mu);
        for (unsigned i = 0; i < n; i++) {
            bytes += (size_t)m[i].n * class_size(c);
            chain_free(&m[i], c);
        }
    }
    return bytes;
}

void recycle_stats(struct recycle_stats *st)
{
    /* Released first: a block is released after it was counted fresh;
     * the counters are relaxed, so held is still clamped at 0. */
    uint64_t released = atomic_load_explicit(&nreleased, memory_order_relaxed);
    st->fresh = atomic_load_explicit(&nfresh, memory_order_relaxed);
    st->from_depot = atomic_load_explicit(&nfrom_depot, memory_order_relaxed);
    st->overflow = atomic_load_explicit(&noverflow, memory_order_relaxed);
    st->held = st->fresh > released ? st->fresh - released : 0;
    st->depot_blocks = 0;
    for (int c = 0; c < NCLASS; c++) {
        pthread_mutex_lock(&depot[c].mu);
        unsigned n = atomic_load_explicit(&depot[c].n, memory_order_relaxed);
        for (unsigned i = 0; i < n; i++)
            st->depot_blocks += depot[c].m[i].n;
        pthread_mutex_unlock(&depot[c].mu);
    }
}
