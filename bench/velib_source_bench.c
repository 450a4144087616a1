/* velib_source_bench - what velib_source spends on one real snapshot.
 *
 * Runs the plugin's own snapshot code (plugins/velib_source/velib_source_feed.c,
 * linked as is) on the recorded 1,485-station station_status file and its
 * station_information, through an API table wired to the host's row and
 * record code, and prints the median time per snapshot of each stage:
 *
 *   parse            sj_parse (simdjson DOM, full validation) + top-level shape
 *   parse+check      + every station validated and selected, the digest of
 *                    their rows computed (no row built yet)
 *   parse+rows       + the typed rows built, info joined (then freed)
 *   parse+records    + one record per station (row, key, timestamp, position),
 *                    as poll() makes them, each just before its emit
 *   +json            + each record's row serialized to JSON (what a file_sink
 *                    downstream does with it)
 *   filtered         parse+rows with station.codes = [16107, 32017]
 *   info parse       station_information parsed into the join table
 *   parse (copy)     parse, on a body without the slack after it: the parser
 *                    copies it into its own padded buffer first
 *   cold records     parse+records after vs_feed_trim: the parser's buffers
 *                    allocated again, as after a poll that released them
 *
 * Usage: velib_source_bench [DATA_DIR [RUNS [STAGE]]] (defaults ../shared/data/velib,
 * 201, every stage). With STAGE (parse, check, rows, records, json, filtered, info,
 * parse-copy, cold) only that stage runs, RUNS times, so a profiler or `perf stat` sees it alone.
 * Not part of the ctest suite; build and run by hand (see bench/README.md).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "record.h"
#include "velib_source.h"

#define RUNS_MAX 1001

static volatile size_t sink;  /* keeps the work observable */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    /* With the slack the HTTP client leaves after a body, so it is parsed
     * in place as in the plugin. */
    char *b = malloc((size_t)n + SJ_PADDING);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(1);
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void bench_log(struct spoke_instance *inst, enum spoke_log_level level, const char *fmt,
                      ...)
{
    (void)inst;
    if (level > SPOKE_LOG_WARN)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* The part of the host's API table the snapshot code uses. */
static const struct spoke_host_api api = {
    .abi_version = SPOKE_ABI_VERSION,
    .struct_size = sizeof(struct spoke_host_api),
    .log = bench_log,
    .schema_new = schema_new,
    .schema_add = schema_add,
    .schema_index = schema_index,
    .schema_count = schema_count,
    .schema_name = schema_name,
    .schema_type = schema_type,
    .schema_ref = schema_ref,
    .schema_unref = schema_unref,
    .row_new = row_new,
    .row_new_list = row_new_list,
    .row_free = row_free,
    .row_count = row_count,
    .row_schema = row_schema,
    .row_index = row_index,
    .row_set_null = row_set_null,
    .row_set_bool = row_set_bool,
    .row_set_int = row_set_int,
    .row_set_double = row_set_double,
    .row_set_string = row_set_string,
    .row_set_timestamp = row_set_timestamp,
    .row_set_row = row_set_row,
    .row_type = row_type,
    .row_get_bool = row_get_bool,
    .row_get_int = row_get_int,
    .row_get_double = row_get_double,
    .row_get_string = row_get_string,
    .row_get_timestamp = row_get_timestamp,
    .row_get_row = row_get_row,
};

static const char *status_body, *info_body;
static size_t status_len, info_len;
static struct vs_feed *feed_all, *feed_two;
static struct vs_info *info;
static struct sj_parser *info_parser;
static const char *topic, *partition;

enum stage { PARSE, PARSE_COPY, CHECK, ROWS, RECORDS, JSON };

static void die(const char *what, const char *err)
{
    fprintf(stderr, "%s: %s\n", what, err);
    exit(1);
}

static double run(struct vs_feed *f, enum stage stage)
{
    char err[256];
    struct vs_header hdr;
    struct vs_batch *b;
    double t0 = now_s();

    /* cap == len: no slack, so the parser copies the body first. */
    size_t cap = stage == PARSE_COPY ? status_len : status_len + SJ_PADDING;
    if (vs_feed_parse_padded(f, status_body, status_len, cap, &hdr, err, sizeof(err)) != 0)
        die("parse", err);
    if (stage == PARSE || stage == PARSE_COPY) {
        sink += hdr.nstations;
        return now_s() - t0;
    }
    if (vs_feed_check(f, info, &b, err, sizeof(err)) != 0)
        die("check", err);
    if (stage == CHECK) {
        sink += b->n + b->digest;
        vs_feed_batch_clear(f);
        return now_s() - t0;
    }
    if (stage == ROWS) {
        for (size_t i = 0; i < b->n; i++) {
            struct spoke_row *row = vs_feed_row(f, info, i);
            if (!row)
                die("rows", "out of memory");
            row_free(row);
        }
        sink += b->n;
        vs_feed_batch_clear(f);
        return now_s() - t0;
    }
    for (size_t i = 0; i < b->n; i++) {
        struct spoke_row *row = vs_feed_row(f, info, i);
        struct spoke_record *rec = row ? rec_new(topic, b->keys[i], b->klens[i], NULL, 0) : NULL;
        if (!rec)
            die("records", "out of memory");
        rec_set_row(rec, row);
        rec_set_position(rec, partition, i + 1 == b->n ? hdr.last_updated : 0);
        rec->ts = b->ts_ms[i];
        if (stage == JSON) {
            size_t len;
            sink += rec_value_bytes(rec, &len) ? len : 0;
        }
        rec_free(rec);
    }
    vs_feed_batch_clear(f);
    return now_s() - t0;
}

static int runs = 201;

static double run_info(void)
{
    char err[256];
    size_t skipped;
    struct vs_info *ni;
    double t0 = now_s();
    if (vs_info_parse(info_parser, info_body, info_len, &ni, &skipped, err, sizeof(err)) != 0)
        die("info", err);
    sink += vs_info_count(ni);
    vs_info_free(ni);
    return now_s() - t0;
}

#define NSTAGES 9

static double run_stage(int k)
{
    switch (k) {
    case 0: return run(feed_all, PARSE);
    case 1: return run(feed_all, CHECK);
    case 2: return run(feed_all, ROWS);
    case 3: return run(feed_all, RECORDS);
    case 4: return run(feed_all, JSON);
    case 5: return run(feed_two, ROWS);
    case 6: return run_info();
    case 7: return run(feed_all, PARSE_COPY);
    default:
        vs_feed_trim(feed_all);  /* outside the timed part, as between two polls */
        return run(feed_all, RECORDS);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *name, double *t)
{
    qsort(t, runs, sizeof(t[0]), cmp_double);
    printf("%-14s min %6.3f ms   p10 %6.3f ms   median %6.3f ms   p90 %6.3f ms\n", name,
           t[0] * 1e3, t[runs / 10] * 1e3, t[runs / 2] * 1e3, t[runs * 9 / 10] * 1e3);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "../shared/data/velib";
    if (argc > 2)
        runs = atoi(argv[2]);
    if (runs < 1 || runs > RUNS_MAX) {
        fprintf(stderr, "usage: %s [DATA_DIR [RUNS (1..%d)]]\n", argv[0], RUNS_MAX);
        return 2;
    }
    char path[4096], err[256];
    static const char *const two[] = { "16107", "32017" };
    struct vs_feed_opts all = { .codes = NULL, .ncodes = 0, .with_info = 1 };
    struct vs_feed_opts filt = { .codes = two, .ncodes = 2, .with_info = 1 };
    size_t skipped;
    static double t[NSTAGES][RUNS_MAX];

    snprintf(path, sizeof(path), "%s/station_status-2024-11-19.json", dir);
    status_body = slurp(path, &status_len);
    snprintf(path, sizeof(path), "%s/station_information-2024-11-19.json", dir);
    info_body = slurp(path, &info_len);
    topic = intern_str("velib");
    partition = intern_str("http://127.0.0.1/station_status.json");
    if (!(feed_all = vs_feed_new(&api, NULL, &all, 64u << 20, err, sizeof(err))) ||
        !(feed_two = vs_feed_new(&api, NULL, &filt, 64u << 20, err, sizeof(err))) ||
        !(info_parser = sj_parser_new(64u << 20, 64)))
        die("setup", err);
    if (vs_info_parse(info_parser, info_body, info_len, &info, &skipped, err, sizeof(err)) != 0)
        die("info", err);

    /* Sanity: the stations and the first row as JSON. */
    {
        struct vs_header hdr;
        struct vs_batch *b;
        struct buf out = BUF_INIT;
        struct spoke_row *row;
        if (vs_feed_parse_padded(feed_all, status_body, status_len, status_len + SJ_PADDING, &hdr,
                                 err, sizeof(err)) != 0 ||
            vs_feed_check(feed_all, info, &b, err, sizeof(err)) != 0)
            die("sanity", err);
        if (!(row = vs_feed_row(feed_all, info, 0)))
            die("sanity", "out of memory");
        rowjson_write(row, &out);
        printf("station_status %zu bytes, %zu stations, %zu rows; info %zu bytes, %zu stations\n"
               "first row: %.*s\n", status_len, hdr.nstations, b->n, info_len,
               vs_info_count(info), (int)out.len, out.p);
        buf_free(&out);
        row_free(row);
        vs_feed_batch_clear(feed_all);
    }

    static const char *const names[NSTAGES] = { "parse", "check", "rows", "records", "json",
                                                "filtered", "info", "parse-copy", "cold" };
    static const char *const labels[NSTAGES] = { "parse", "parse+check", "parse+rows",
                                                 "parse+records", "+json", "filtered (2)",
                                                 "info parse", "parse (copy)",
                                                 "cold records" };
    int only = -1;
    if (argc > 3) {
        only = 0;
        while (only < NSTAGES && strcmp(argv[3], names[only]) != 0)
            only++;
        if (only == NSTAGES) {
            fprintf(stderr, "unknown stage %s\n", argv[3]);
            return 2;
        }
    }
    /* Warm-up (caches, allocator, parser capacity): every stage, or the one
     * chosen, so a profiler's count of N runs is N snapshots of that stage
     * plus a fixed setup. */
    for (int w = 0; w < (runs < 20 ? runs : 20); w++)
        if (only < 0)
            run(feed_all, JSON);
        else
            run_stage(only);
    for (int r = 0; r < runs; r++)
        for (int k = 0; k < NSTAGES; k++)
            if (only < 0 || only == k)
                t[k][r] = run_stage(k);
    if (only < 0)
        printf("per snapshot (1,485 stations), %d runs:\n", runs);
    for (int k = 0; k < NSTAGES; k++)
        if (only < 0 || only == k)
            report(labels[k], t[k]);

    vs_info_free(info);
    sj_parser_free(info_parser);
    vs_feed_free(feed_all);
    vs_feed_free(feed_two);
    free((void *)status_body);
    free((void *)info_body);
    return (int)(sink & 0);
}
