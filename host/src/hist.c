#include "hist.h"

#include "counter.h"

/* Bucket of v: v itself below HIST_SUB; above, HIST_SUB buckets per power of
 * two, picked by the HIST_SUB_BITS bits after the leading one. */
static unsigned bucket(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned lg = 63u - (unsigned)__builtin_clzll(v);
    return (lg - HIST_SUB_BITS + 1) * HIST_SUB +
           (unsigned)((v >> (lg - HIST_SUB_BITS)) & (HIST_SUB - 1));
}

/* Largest value of bucket b. */
static uint64_t bucket_top(unsigned b)
{
    if (b < HIST_SUB)
        return b;
    unsigned lg = b / HIST_SUB + HIST_SUB_BITS - 1, sub = b % HIST_SUB;
    uint64_t lo = (uint64_t)(HIST_SUB + sub) << (lg - HIST_SUB_BITS);
    return lo + ((uint64_t)1 << (lg - HIST_SUB_BITS)) - 1;
}

void hist_add(struct hist *h, int64_t v)
{
    uint64_t u = v > 0 ? (uint64_t)v : 0;
    /* One writer (hist.h): no locked adds, one record at a time. */
    COUNTER_ADD(&h->n[bucket(u)], 1);
    COUNTER_ADD(&h->count, 1);
    COUNTER_ADD(&h->sum, u);
}

int64_t hist_quantile(const struct hist *h, double q)
{
    uint64_t total = atomic_load_explicit(&h->count, memory_order_relaxed);
    if (total == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)total);
    if (want >= total)
        want = total - 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        seen += atomic_load_explicit(&h->n[b], memory_order_relaxed);
        if (seen > want)
            return (int64_t)bucket_top(b);
    }
    return (int64_t)bucket_top(HIST_BUCKETS - 1);
}
