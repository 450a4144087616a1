/* rowjson_bench - rowjson (YAJL-based parser, dedicated writer) against
 * jansson on Vélib'-like station objects.
 *
 * Prints records/s for parsing (rowjson_parse vs json_loadb) and writing
 * (rowjson_write vs json_dumpb), each the median of 5 runs. Not part of the
 * ctest suite; build and run by hand (see bench/README.md).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "record.h"

#define NOBJ 1000      /* distinct objects, cycled through (~280 KB of text) */
#define PER_RUN 30000  /* records per timed run */
#define RUNS 5

static char *texts[NOBJ];
static size_t lens[NOBJ];
static struct spoke_row *rows[NOBJ];
static json_t *trees[NOBJ];
static volatile size_t sink;  /* keeps the work observable */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;

static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

/* One station_status entry shaped like the live feed's. */
static void make_objects(void)
{
    size_t total = 0;
    for (int i = 0; i < NOBJ; i++) {
        unsigned mech = rnd(30), ebike = rnd(20), docks = rnd(60);
        char buf[512];
        int n = snprintf(buf, sizeof(buf),
            "{\"station_id\":%llu,\"stationCode\":\"%u\",\"num_bikes_available\":%u,"
            "\"numBikesAvailable\":%u,\"num_bikes_available_types\":[{\"mechanical\":%u},"
            "{\"ebike\":%u}],\"num_docks_available\":%u,\"numDocksAvailable\":%u,"
            "\"is_installed\":%u,\"is_returning\":%u,\"is_renting\":%u,\"last_reported\":%u}",
            (unsigned long long)(200000000ull + rnd(1u << 30) * 16ull), 1000 + rnd(40000),
            mech + ebike, mech + ebike, mech, ebike, docks, docks, 1u, rnd(2), rnd(2),
            1732000000u + rnd(10000));
        texts[i] = strdup(buf);
        lens[i] = (size_t)n;
        total += (size_t)n;
        char err[128];
        rows[i] = rowjson_parse(texts[i], lens[i], err, sizeof(err));
        trees[i] = json_loadb(texts[i], lens[i], 0, NULL);
        if (!rows[i] || !trees[i]) {
            fprintf(stderr, "bad object: %s (%s)\n", texts[i], err);
            exit(1);
        }
    }
    printf("objects: %d distinct, mean %zu bytes, e.g.\n  %s\n", NOBJ, total / NOBJ, texts[0]);
}

static double run_rowjson_parse(void)
{
    double t0 = now_s();
    for (int k = 0; k < PER_RUN; k++) {
        struct spoke_row *r = rowjson_parse(texts[k % NOBJ], lens[k % NOBJ], NULL, 0);
        sink += row_count(r);
        row_free(r);
    }
    return now_s() - t0;
}

static double run_jansson_parse(void)
{
    double t0 = now_s();
    for (int k = 0; k < PER_RUN; k++) {
        json_t *j = json_loadb(texts[k % NOBJ], lens[k % NOBJ], 0, NULL);
        sink += json_object_size(j);
        json_decref(j);
    }
    return now_s() - t0;
}

static struct buf wbuf;

static double run_rowjson_write(void)
{
    double t0 = now_s();
    for (int k = 0; k < PER_RUN; k++) {
        buf_reset(&wbuf);
        rowjson_write(rows[k % NOBJ], &wbuf);
        sink += wbuf.len;
    }
    return now_s() - t0;
}

static double run_jansson_write(void)
{
    char out[1024];
    double t0 = now_s();
    for (int k = 0; k < PER_RUN; k++)
        sink += json_dumpb(trees[k % NOBJ], out, sizeof(out), JSON_COMPACT);
    return now_s() - t0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench(const char *name, double (*fn)(void))
{
    double t[RUNS];
    fn();  /* warm-up: caches, allocator, per-thread parser state */
    for (int r = 0; r < RUNS; r++)
        t[r] = fn();
    qsort(t, RUNS, sizeof(t[0]), cmp_double);
    double med = t[RUNS / 2];
    printf("%-22s %10.0f records/s  %7.0f ns/record  (median of %d runs of %d)\n", name,
           PER_RUN / med, med * 1e9 / PER_RUN, RUNS, PER_RUN);
}

int main(void)
{
    make_objects();
    /* Sanity: both writers produce the input text back. */
    rowjson_write(rows[0], &wbuf);
    char *jd = json_dumps(trees[0], JSON_COMPACT);
    if (strcmp(wbuf.p, texts[0]) != 0 || strcmp(jd, texts[0]) != 0) {
        fprintf(stderr, "writers disagree:\n%s\n%s\n", wbuf.p, jd);
        return 1;
    }
    free(jd);
    bench("parse rowjson (yajl)", run_rowjson_parse);
    bench("parse jansson", run_jansson_parse);
    bench("write rowjson", run_rowjson_write);
    bench("write jansson", run_jansson_write);
    for (int i = 0; i < NOBJ; i++) {
        free(texts[i]);
        row_free(rows[i]);
        json_decref(trees[i]);
    }
    buf_free(&wbuf);
    return sink == 0;
}
