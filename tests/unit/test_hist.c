/* unit-hist: latency histogram buckets and quantiles. */
#include <stdlib.h>

#include "hist.h"
#include "test.h"

int main(void)
{
    struct hist *h = calloc(1, sizeof(*h));
    CHECK(hist_quantile(h, 0.5) == 0);
    /* 1..10000 microseconds, in ns. */
    for (int64_t v = 1; v <= 10000; v++)
        hist_add(h, v * 1000);
    int64_t p50 = hist_quantile(h, 0.5), p99 = hist_quantile(h, 0.99);
    int64_t mx = hist_quantile(h, 1.0);
    /* Buckets are within 3.2% above the exact value (1/32 of the octave). */
    CHECK_MSG(p50 >= 5000000 && p50 <= 5000000 * 1.032, "p50 %lld", (long long)p50);
    CHECK_MSG(p99 >= 9900000 && p99 <= 9900000 * 1.032, "p99 %lld", (long long)p99);
    CHECK_MSG(mx >= 10000000 && mx <= 10000000 * 1.032, "max %lld", (long long)mx);
    CHECK(atomic_load(&h->count) == 10000);
    /* Small and negative values land in exact buckets. */
    struct hist *g = calloc(1, sizeof(*g));
    hist_add(g, -5);
    hist_add(g, 3);
    CHECK(hist_quantile(g, 0.0) == 0 && hist_quantile(g, 1.0) == 3);
    /* Every value is at most its bucket's top, over many magnitudes. */
    int ok = 1;
    for (int64_t v = 1; v < ((int64_t)1 << 50); v = v * 3 + 1) {
        struct hist *one = calloc(1, sizeof(*one));
        hist_add(one, v);
        int64_t top = hist_quantile(one, 1.0);
        ok &= top >= v && (double)top <= (double)v * 1.032 + 1;
        free(one);
    }
    CHECK(ok);
    /* Bucket boundaries: every value from 0 to 2^16 and around each power of
     * two up to 2^63 lands in a bucket whose top is >= it and whose previous
     * bucket's top is < it (buckets are contiguous, ordered, never skipped). */
    int contiguous = 1;
    for (int64_t v = 0; v < 65536; v++) {
        struct hist one = { 0 };
        hist_add(&one, v);
        int64_t top = hist_quantile(&one, 1.0);
        contiguous &= top >= v && (v < 32 ? top == v : (double)top <= (double)v * 1.032);
        if (v > 0) {
            struct hist prev = { 0 };
            hist_add(&prev, v - 1);
            contiguous &= hist_quantile(&prev, 1.0) <= top;
            /* v - 1 and v share a bucket, or v starts the next one. */
            contiguous &= hist_quantile(&prev, 1.0) == top || hist_quantile(&prev, 1.0) == v - 1;
        }
    }
    for (int lg = 16; lg < 63; lg++) {
        for (int64_t d = -2; d <= 2; d++) {
            int64_t v = ((int64_t)1 << lg) + d;
            struct hist one = { 0 };
            hist_add(&one, v);
            int64_t top = hist_quantile(&one, 1.0);
            contiguous &= top >= v && (double)top <= (double)v * 1.032 + 1;
        }
    }
    struct hist big = { 0 };
    hist_add(&big, INT64_MAX);
    contiguous &= hist_quantile(&big, 1.0) == INT64_MAX;
    CHECK(contiguous);
    free(h);
    free(g);
    return TEST_REPORT();
}
