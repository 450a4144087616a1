/* hist - a lock-free latency histogram: 8 buckets per power of two (values
 * within 12.5% of their bucket), one writer thread, any number of readers. */
#ifndef SPOKE_HIST_H
#define SPOKE_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define HIST_BUCKETS (64 * 8)

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
