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
    /* Buckets are within 12.5% above the exact value. */
    CHECK_MSG(p50 >= 5000000 && p50 <= 5000000 * 1.126, "p50 %lld", (long long)p50);
    CHECK_MSG(p99 >= 9900000 && p99 <= 9900000 * 1.126, "p99 %lld", (long long)p99);
    CHECK_MSG(mx >= 10000000 && mx <= 10000000 * 1.126, "max %lld", (long long)mx);
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
        ok &= top >= v && (double)top <= (double)v * 1.126 + 1;
        free(one);
    }
    CHECK(ok);
    free(h);
    free(g);
    return TEST_REPORT();
}
