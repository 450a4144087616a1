/* schema_mapper_bench - the schema_mapper extraction core on 1,000,000
 * generated Vélib'-like station_status objects (~1,470 station codes),
 * mapped with schemas/velib_station_status.yaml and a postcode lookup for
 * every code.
 *
 * Variants, each the median of 5 runs over the 1,000,000 records after a
 * warm-up run:
 *   validate only     the extractor's validator / simdjson's DOM parse
 *   mapper core       bytes -> typed field values (parse, extract, coerce,
 *                     lookup): json.parser=extractor / json.parser=simdjson /
 *                     the host's YAJL row parser (rowjson_parse, what
 *                     record_value_row does) then the mapper's row path /
 *                     jansson (json_loadb, then the same fields by hand)
 *   + output row      the extractor core plus building the output row
 *                     (api->row_new / row_set_*) and freeing it
 *   sm_process        the whole transform call on a host record (record
 *                     created from the bytes, mapped, row set, freed)
 *   velib rows        the row-input path as in velib_source -> schema_mapper:
 *                     the 1,485 typed rows velib_source's own feed code
 *                     (velib_source_feed.c, linked as is) builds from the
 *                     recorded 2024-11-19 snapshot joined with its
 *                     station_information, built once and mapped over and
 *                     over (NREC rows in all) with the real postcode CSV
 *                     (lookup.file): sm_map_row alone, + building and freeing
 *                     the output row, and sm_process on a record holding a
 *                     copy of the row (rec_new, set the row, map, free)
 *
 * BENCH_DATA=<dir> is the Vélib' data directory (default ../shared/data/velib);
 * without it the velib rows variants are skipped.
 * BENCH_RECORDS=<n> changes the number of records (e.g. 20000 under
 * valgrind --tool=callgrind, whose instruction counts do not depend on the
 * machine's load). BENCH_ONLY=<text> runs only the variants whose label contains <text>.
 * Not part of the ctest suite; build and run by hand (see bench/README.md).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "instance.h"
#include "record.h"
#include "schema_mapper.h"
#include "velib_source.h"

#define NREC_DEFAULT 1000000
#define NCODES 1470
#define RUNS 5

static char *text;           /* all records, back to back */
static size_t *off, *len;
static char codes[NCODES][8];
static unsigned long long ids[NCODES];
static volatile int64_t sink;
static int NREC = NREC_DEFAULT;  /* BENCH_RECORDS overrides (e.g. for callgrind) */

/* CPU time of this (single-threaded) process: on a shared machine other
 * jobs take the CPU away, and wall time would count their share too. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
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

/* Objects with the live feed's shape and key order. */
static void generate(void)
{
    int used[45000] = { 0 };
    for (int i = 0; i < NCODES; i++) {
        unsigned c;
        do
            c = 1001 + rnd(44000);
        while (used[c]);
        used[c] = 1;
        snprintf(codes[i], sizeof(codes[i]), "%u", c);
        ids[i] = 30000ull + rnd(1u << 30) * 16ull;
    }
    size_t cap = (size_t)NREC * 330, used_bytes = 0;
    text = malloc(cap);
    off = malloc(NREC * sizeof(*off));
    len = malloc(NREC * sizeof(*len));
    if (!text || !off || !len) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int i = 0; i < NREC; i++) {
        unsigned s = rnd(NCODES), mech = rnd(30), ebike = rnd(20), docks = rnd(60);
        int n = snprintf(text + used_bytes, cap - used_bytes,
            "{\"station_id\":%llu,\"num_bikes_available\":%u,\"numBikesAvailable\":%u,"
            "\"num_bikes_available_types\":[{\"mechanical\":%u},{\"ebike\":%u}],"
            "\"num_docks_available\":%u,\"numDocksAvailable\":%u,\"is_installed\":1,"
            "\"is_returning\":%u,\"is_renting\":%u,\"last_reported\":%u,\"stationCode\":\"%s\"}",
            ids[s], mech + ebike, mech + ebike, mech, ebike, docks, docks, rnd(2), rnd(2),
            1732000000u + rnd(10000), codes[s]);
        off[i] = used_bytes;
        len[i] = (size_t)n;
        used_bytes += (size_t)n;
    }
    printf("%d records, %.1f bytes on average, %d station codes\n", NREC,
           (double)used_bytes / NREC, NCODES);
}

static struct sm_mapper *mapper(const char *parser)
{
    static char inl[NCODES][32];
    static const char *inlp[NCODES];
    for (int i = 0; i < NCODES; i++) {
        snprintf(inl[i], sizeof(inl[i]), "%s=75%03d", codes[i], i % 20 + 1);
        inlp[i] = inl[i];
    }
    struct sm_opts o = {
        .schema_file = "schemas/velib_station_status.yaml",
        .lookup_inline = inlp,
        .nlookup_inline = NCODES,
        .parser = parser,
        .max_bytes = 1 << 20,
        .max_depth = 64,
    };
    char err[256];
    struct sm_mapper *m = sm_mapper_new(&api_table, &o, err, sizeof(err));
    if (!m) {
        fprintf(stderr, "schema: %s (run from the repository root)\n", err);
        exit(1);
    }
    return m;
}

static double median(double *v)
{
    for (int i = 0; i < RUNS; i++)
        for (int j = i + 1; j < RUNS; j++)
            if (v[j] < v[i]) {
                double t = v[i];
                v[i] = v[j];
                v[j] = t;
            }
    return v[RUNS / 2];
}

typedef int64_t (*run_fn)(void *ctx);

static void measure(const char *what, run_fn fn, void *ctx)
{
    double rates[RUNS];
    const char *only = getenv("BENCH_ONLY");
    if (only && !strstr(what, only))
        return;
    fn(ctx); /* warm-up */
    for (int r = 0; r < RUNS; r++) {
        double t0 = now_s();
        sink += fn(ctx);
        rates[r] = NREC / (now_s() - t0);
    }
    printf("  %-44s %6.2f M records/s  (%.0f ns/record)\n", what, median(rates) / 1e6,
           1e9 / median(rates));
    fflush(stdout);
}

static int64_t run_validate_extractor(void *ctx)
{
    char err[256];
    int64_t ok = 0;
    for (int i = 0; i < NREC; i++)
        ok += sm_json_validate(text + off[i], len[i], 64, err, sizeof(err)) == 0;
    if (ok != NREC)
        fprintf(stderr, "validation failed: %s\n", err);
    return ok;
}

static int64_t run_validate_simdjson(void *ctx)
{
    struct sj_parser *p = ctx;
    char err[256];
    struct sj_value root;
    int64_t ok = 0;
    for (int i = 0; i < NREC; i++)
        ok += sj_parse(p, text + off[i], len[i], &root, err, sizeof(err)) == 0;
    return ok;
}

static int64_t run_core(void *ctx)
{
    struct sm_mapper *m = ctx;
    char err[256];
    int64_t acc = 0;
    for (int i = 0; i < NREC; i++) {
        if (sm_map_bytes(m, text + off[i], len[i], NULL, err, sizeof(err)) != SPOKE_OK) {
            fprintf(stderr, "record %d: %s\n", i, err);
            exit(1);
        }
        acc += m->vals[4].u.i; /* mechanical */
    }
    return acc;
}

static int64_t run_yajl_rows(void *ctx)
{
    struct sm_mapper *m = ctx;
    char err[256];
    int64_t acc = 0;
    for (int i = 0; i < NREC; i++) {
        struct spoke_row *row = rowjson_parse(text + off[i], len[i], err, sizeof(err));
        if (!row || sm_map_row(m, row, NULL, err, sizeof(err)) != SPOKE_OK) {
            fprintf(stderr, "record %d: %s\n", i, err);
            exit(1);
        }
        acc += m->vals[4].u.i;
        row_free(row);
    }
    return acc;
}

/* jansson: the same fields typed by hand, the postcode from the same table. */
static int64_t run_jansson(void *ctx)
{
    struct sm_mapper *m = ctx;
    const struct sm_field *pc = &m->f[2];
    int64_t acc = 0;
    for (int i = 0; i < NREC; i++) {
        json_t *o = json_loadb(text + off[i], len[i], 0, NULL);
        if (!o || !json_is_object(o)) {
            fprintf(stderr, "jansson: record %d\n", i);
            exit(1);
        }
        json_t *code = json_object_get(o, "stationCode");
        const char *cs = json_string_value(code);
        int64_t sid = json_integer_value(json_object_get(o, "station_id"));
        int64_t nba = json_integer_value(json_object_get(o, "num_bikes_available"));
        int64_t nda = json_integer_value(json_object_get(o, "num_docks_available"));
        int inst = json_integer_value(json_object_get(o, "is_installed")) == 1;
        int rent = json_integer_value(json_object_get(o, "is_renting")) == 1;
        int ret = json_integer_value(json_object_get(o, "is_returning")) == 1;
        int64_t lr = json_integer_value(json_object_get(o, "last_reported")) * 1000;
        int64_t mech = 0, eb = 0;
        json_t *types = json_object_get(o, "num_bikes_available_types"), *e;
        size_t k;
        json_array_foreach(types, k, e) {
            json_t *v;
            if ((v = json_object_get(e, "mechanical")))
                mech = json_integer_value(v);
            if ((v = json_object_get(e, "ebike")))
                eb = json_integer_value(v);
        }
        const struct sm_hent *h = cs ? sm_hmap_get(&pc->lk, cs, json_string_length(code)) : NULL;
        acc += mech + eb + nba + nda + inst + rent + ret + (lr & 1) + (sid & 1) + (h != NULL);
        json_decref(o);
    }
    return acc;
}

static int64_t run_core_row(void *ctx)
{
    struct sm_mapper *m = ctx;
    char err[256];
    int64_t acc = 0;
    for (int i = 0; i < NREC; i++) {
        if (sm_map_bytes(m, text + off[i], len[i], NULL, err, sizeof(err)) != SPOKE_OK) {
            fprintf(stderr, "record %d: %s\n", i, err);
            exit(1);
        }
        struct spoke_row *row = sm_build_row(m);
        acc += row_get_int(row, 4);
        row_free(row);
    }
    return acc;
}

static int64_t run_process(void *ctx)
{
    struct sm_mapper *m = ctx;
    char err[256];
    int64_t acc = 0;
    for (int i = 0; i < NREC; i++) {
        struct spoke_record *rec = rec_new("raw", NULL, 0, text + off[i], len[i]);
        if (!rec || sm_process(m, rec, err, sizeof(err)) != SPOKE_OK) {
            fprintf(stderr, "record %d: %s\n", i, err);
            exit(1);
        }
        acc += rec->klen;
        rec_free(rec);
    }
    return acc;
}

/* ---- velib rows: the row-input path, fed by velib_source's own code ---- */

static struct spoke_row **vrows;  /* the snapshot's rows, built once */
static size_t nvrows;

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    rewind(f);
    char *b = malloc((size_t)sz + 1);
    if (!b || fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        fclose(f);
        free(b);
        return NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return b;
}

/* Builds the rows velib_source emits for the recorded snapshot (every
 * station, joined with station_information). 0, or -1 when the data is
 * absent. */
static int velib_rows(const char *dir)
{
    char path[4096], err[256];
    size_t slen, ilen, skipped;
    struct vs_feed_opts all = { .codes = NULL, .ncodes = 0, .with_info = 1 };
    struct vs_header hdr;
    struct vs_batch *b;
    struct vs_info *info;
    snprintf(path, sizeof(path), "%s/station_status-2024-11-19.json", dir);
    char *status = slurp(path, &slen);
    snprintf(path, sizeof(path), "%s/station_information-2024-11-19.json", dir);
    char *infob = slurp(path, &ilen);
    if (!status || !infob) {
        free(status);
        free(infob);
        return -1;
    }
    struct sj_parser *ip = sj_parser_new(64u << 20, 64);
    struct vs_feed *feed = vs_feed_new(&api_table, NULL, &all, 64u << 20, err, sizeof(err));
    if (!ip || !feed || vs_info_parse(ip, infob, ilen, &info, &skipped, err, sizeof(err)) != 0 ||
        vs_feed_parse(feed, status, slen, &hdr, err, sizeof(err)) != 0 ||
        vs_feed_check(feed, info, &b, err, sizeof(err)) != 0) {
        fprintf(stderr, "velib rows: %s\n", err);
        exit(1);
    }
    vrows = malloc(b->n * sizeof(*vrows));
    for (size_t i = 0; vrows && i < b->n; i++)
        if (!(vrows[nvrows++] = vs_feed_row(feed, info, i))) {
            fprintf(stderr, "velib rows: out of memory\n");
            exit(1);
        }
    vs_feed_batch_clear(feed);
    vs_feed_free(feed);  /* the rows hold their schemas */
    vs_info_free(info);
    sj_parser_free(ip);
    free(status);
    free(infob);
    return 0;
}

static struct sm_mapper *velib_mapper(const char *dir)
{
    char csv[4096], err[256];
    snprintf(csv, sizeof(csv), "%s/stations_postcodes.csv", dir);
    struct sm_opts o = {
        .schema_file = "schemas/velib_station_status.yaml",
        .lookup_file = csv,
        .max_bytes = 1 << 20,
        .max_depth = 64,
    };
    struct sm_mapper *m = sm_mapper_new(&api_table, &o, err, sizeof(err));
    if (!m) {
        fprintf(stderr, "schema: %s (run from the repository root)\n", err);
        exit(1);
    }
    return m;
}

static int64_t run_vrows_core(void *ctx)
{
    struct sm_mapper *m = ctx;
    char err[256];
    int64_t acc = 0;
    for (int i = 0; i < NREC; i++) {
        int rc = sm_map_row(m, vrows[(size_t)i % nvrows], NULL, err, sizeof(err));
        if (rc != SPOKE_OK && rc != SPOKE_DROP) {
            fprintf(stderr, "row %d: %s\n", i, err);
            exit(1);
        }
        acc += m->vals[4].u.i + (m->vals[2].t == SPOKE_TYPE_STRING);
    }
    return acc;
}

static int64_t run_vrows_build(void *ctx)
{
    struct sm_mapper *m = ctx;
    char err[256];
    int64_t acc = 0;
    for (int i = 0; i < NREC; i++) {
        int rc = sm_map_row(m, vrows[(size_t)i % nvrows], NULL, err, sizeof(err));
        if (rc == SPOKE_DROP)
            continue;
        if (rc != SPOKE_OK) {
            fprintf(stderr, "row %d: %s\n", i, err);
            exit(1);
        }
        struct spoke_row *row = sm_build_row(m);
        acc += row_get_int(row, 4);
        row_free(row);
    }
    return acc;
}

/* The transform call as the pipeline makes it: the record holds a row, a
 * fresh copy of a snapshot row (the record takes the row, and sm_process
 * replaces it). The copy is part of the figure: compare with the variants
 * above to see the mapper's share. */
static int64_t run_vrows_process(void *ctx)
{
    struct sm_mapper *m = ctx;
    char err[256];
    int64_t acc = 0;
    for (int i = 0; i < NREC; i++) {
        const struct spoke_row *src = vrows[(size_t)i % nvrows];
        struct spoke_row *copy = row_new((struct spoke_schema *)row_schema(src));
        struct spoke_record *rec = copy ? rec_new("velib", NULL, 0, NULL, 0) : NULL;
        if (!rec) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
        /* A shallow field-by-field copy through the setters (what the
         * source's row building costs is not the mapper's). */
        for (size_t k = 0; k < row_count(src); k++) {
            switch (row_type(src, k)) {
            case SPOKE_TYPE_INT: row_set_int(copy, k, row_get_int(src, k)); break;
            case SPOKE_TYPE_BOOL: row_set_bool(copy, k, row_get_bool(src, k)); break;
            case SPOKE_TYPE_DOUBLE: row_set_double(copy, k, row_get_double(src, k)); break;
            case SPOKE_TYPE_TIMESTAMP: row_set_timestamp(copy, k, row_get_timestamp(src, k)); break;
            case SPOKE_TYPE_STRING: {
                size_t n;
                const char *p = row_get_string(src, k, &n);
                row_set_string(copy, k, p, n);
                break;
            }
            case SPOKE_TYPE_LIST: {
                const struct spoke_row *l = row_get_row(src, k);
                struct spoke_row *nl = row_new_list(row_count(l));
                for (size_t e = 0; e < row_count(l); e++) {
                    const struct spoke_row *it = row_get_row(l, e);
                    struct spoke_row *ni = row_new((struct spoke_schema *)row_schema(it));
                    for (size_t j = 0; j < row_count(it); j++)
                        row_set_int(ni, j, row_get_int(it, j));
                    row_set_row(nl, e, ni);
                }
                row_set_row(copy, k, nl);
                break;
            }
            default: break;
            }
        }
        rec_set_row(rec, copy);
        int rc = sm_process(m, rec, err, sizeof(err));
        if (rc != SPOKE_OK && rc != SPOKE_DROP) {
            fprintf(stderr, "row %d: %s\n", i, err);
            exit(1);
        }
        acc += rec->klen;
        rec_free(rec);
    }
    return acc;
}

int main(void)
{
    if (getenv("BENCH_RECORDS"))
        NREC = atoi(getenv("BENCH_RECORDS")) > 0 ? atoi(getenv("BENCH_RECORDS")) : NREC_DEFAULT;
    generate();
    struct sm_mapper *ext = mapper("extractor"), *sjm = mapper("simdjson");
    struct sj_parser *sj = sj_parser_new(1 << 20, 64);

    printf("validate only\n");
    measure("extractor (sm_json_validate)", run_validate_extractor, NULL);
    measure("simdjson DOM (sj_parse)", run_validate_simdjson, sj);
    printf("mapper core: bytes -> typed values (parse, extract, coerce, lookup)\n");
    measure("json.parser=extractor", run_core, ext);
    measure("json.parser=simdjson", run_core, sjm);
    measure("YAJL (host rowjson_parse) + mapper row path", run_yajl_rows, ext);
    measure("jansson json_loadb + same fields by hand", run_jansson, ext);
    printf("with the output row\n");
    measure("extractor core + build and free the row", run_core_row, ext);
    measure("sm_process on a host record (new, map, free)", run_process, ext);

    const char *dir = getenv("BENCH_DATA") ? getenv("BENCH_DATA") : "../shared/data/velib";
    const char *only = getenv("BENCH_ONLY");
    if ((!only || strstr("velib rows: map_row core + build + sm_process", only)) &&
        velib_rows(dir) == 0) {
        struct sm_mapper *vm = velib_mapper(dir);
        printf("velib rows: velib_source's %zu snapshot rows -> mapper row path (lookup.file)\n",
               nvrows);
        measure("velib rows: map_row core", run_vrows_core, vm);
        measure("velib rows: map_row + build", run_vrows_build, vm);
        measure("velib rows: sm_process (copy row, map, free)", run_vrows_process, vm);
        sm_mapper_free(vm);
        for (size_t i = 0; i < nvrows; i++)
            row_free(vrows[i]);
        free(vrows);
    }

    sj_parser_free(sj);
    sm_mapper_free(ext);
    sm_mapper_free(sjm);
    free(text);
    free(off);
    free(len);
    return sink == 42 ? 1 : 0;
}
