/* hist - a lock-free latency histogram: 32 buckets per power of two (a
 * bucket's top is within 3.2% above any value in it; values below 32 are
 * exact), one writer thread, any number of readers. */
#ifndef SPOKE_HIST_H
#define SPOKE_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define HIST_SUB_BITS 5
#define HIST_SUB (1u << HIST_SUB_BITS)
/* Values below HIST_SUB exactly, then HIST_SUB buckets for each power of two
 * from 2^HIST_SUB_BITS to 2^63. */
#define HIST_BUCKETS ((65 - HIST_SUB_BITS) * HIST_SUB)

struct hist {
    atomic_ullong n[HIST_BUCKETS];
    atomic_ullong count;
    atomic_ullong sum;        /* of the recorded values */
};

/* Records v (>= 0; negative counts as 0). */
void hist_add(struct hist *h, int64_t v);
/* The value at quantile q (0..1): the upper bound of the bucket holding it;
 * 0 when empty. */
int64_t hist_quantile(const struct hist *h, double q);

#endif
