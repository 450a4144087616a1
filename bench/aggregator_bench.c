/*
 * aggregator_bench - throughput of the aggregator's process() on Velib'-like
 * rows, through a minimal fake host API (the table of function pointers a
 * plugin receives; no host, no queues, no JSON).
 *
 * The input is ~1,470 stations spread over 85 postcodes, polled again and
 * again (each poll changes a few stations' numbers), as typed rows built
 * before the clock starts: stationCode (string), postcode (string),
 * num_bikes_available, mechanical, ebike (ints), last_reported (timestamp).
 * Each scenario runs 2,000,000 process() calls, after a warm-up pass, and
 * prints records/s and ns/record (median of 5 runs). At the end the rows the
 * aggregator emits are checked against totals computed here.
 *
 * Build and run from the repository root (see bench/README.md):
 *   gcc -std=c11 -D_GNU_SOURCE -O2 -DNDEBUG -Ihost/include -Iplugins/aggregator \
 *       bench/aggregator_bench.c plugins/aggregator/aggregator*.c \
 *       -o /tmp/aggregator_bench $(pkg-config --cflags --libs jansson) -lm
 *   /tmp/aggregator_bench
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <spoke/plugin.h>

/* The plugin's entry, linked in directly. */
const struct spoke_plugin *spoke_plugin_entry(void);

/* ------------------------------------------------------------------------ */
/* Fake rows and schemas                                                     */
/* ------------------------------------------------------------------------ */

#define MAXF 8

struct spoke_schema {
    int refs;
    size_t n;
    char *names[MAXF];
    enum spoke_type types[MAXF];
};

struct fval {
    enum spoke_type type;
    int64_t i;
    double d;
    char *s;
    size_t len;
};

struct spoke_row {
    struct spoke_schema *schema;
    struct fval v[MAXF];
};

struct spoke_record {
    const struct spoke_row *row;   /* input: borrowed */
    struct spoke_row *out;         /* output: owned */
    int64_t ts;
    char key[64];
};

static struct spoke_schema *f_schema_new(void)
{
    struct spoke_schema *s = calloc(1, sizeof(*s));
    s->refs = 1;
    return s;
}

static int f_schema_add(struct spoke_schema *s, const char *name, enum spoke_type t)
{
    if (s->n == MAXF)
        return SPOKE_ERR_RANGE;
    s->names[s->n] = strdup(name);
    s->types[s->n] = t;
    return (int)s->n++;
}

static int f_schema_index(const struct spoke_schema *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0)
            return (int)i;
    return -1;
}

static size_t f_schema_count(const struct spoke_schema *s) { return s->n; }
static const char *f_schema_name(const struct spoke_schema *s, size_t i) { return s->names[i]; }
static enum spoke_type f_schema_type(const struct spoke_schema *s, size_t i) { return s->types[i]; }
static void f_schema_ref(struct spoke_schema *s) { s->refs++; }

static void f_schema_unref(struct spoke_schema *s)
{
    if (!s || --s->refs > 0)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->names[i]);
    free(s);
}

static struct spoke_row *f_row_new(struct spoke_schema *s)
{
    struct spoke_row *r = calloc(1, sizeof(*r));
    r->schema = s;
    s->refs++;
    return r;
}

static void f_row_free(struct spoke_row *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < MAXF; i++)
        free(r->v[i].s);
    f_schema_unref(r->schema);
    free(r);
}

static const struct spoke_schema *f_row_schema(const struct spoke_row *r) { return r->schema; }
static size_t f_row_count(const struct spoke_row *r) { return r->schema->n; }
static int f_row_index(const struct spoke_row *r, const char *n) { return f_schema_index(r->schema, n); }
static enum spoke_type f_row_type(const struct spoke_row *r, size_t i)
{
    return i < r->schema->n ? r->v[i].type : SPOKE_TYPE_NULL;
}
static int64_t f_row_get_int(const struct spoke_row *r, size_t i) { return r->v[i].i; }
static int64_t f_row_get_ts(const struct spoke_row *r, size_t i) { return r->v[i].i; }
static int f_row_get_bool(const struct spoke_row *r, size_t i) { return (int)r->v[i].i; }
static double f_row_get_double(const struct spoke_row *r, size_t i) { return r->v[i].d; }
static const char *f_row_get_string(const struct spoke_row *r, size_t i, size_t *len)
{
    if (len)
        *len = r->v[i].len;
    return r->v[i].s;
}

static int f_set(struct spoke_row *r, size_t i, enum spoke_type t)
{
    if (i >= r->schema->n)
        return SPOKE_ERR_RANGE;
    if (t != SPOKE_TYPE_NULL && r->schema->types[i] != t)
        return SPOKE_ERR_TYPE;
    r->v[i].type = t;
    return SPOKE_OK;
}
static int f_row_set_null(struct spoke_row *r, size_t i) { return f_set(r, i, SPOKE_TYPE_NULL); }
static int f_row_set_int(struct spoke_row *r, size_t i, int64_t v)
{
    int rc = f_set(r, i, SPOKE_TYPE_INT);
    r->v[i].i = v;
    return rc;
}
static int f_row_set_ts(struct spoke_row *r, size_t i, int64_t v)
{
    int rc = f_set(r, i, SPOKE_TYPE_TIMESTAMP);
    r->v[i].i = v;
    return rc;
}
static int f_row_set_bool(struct spoke_row *r, size_t i, int v)
{
    int rc = f_set(r, i, SPOKE_TYPE_BOOL);
    r->v[i].i = v;
    return rc;
}
static int f_row_set_double(struct spoke_row *r, size_t i, double v)
{
    int rc = f_set(r, i, SPOKE_TYPE_DOUBLE);
    r->v[i].d = v;
    return rc;
}
static int f_row_set_string(struct spoke_row *r, size_t i, const char *s, size_t len)
{
    int rc = f_set(r, i, SPOKE_TYPE_STRING);
    free(r->v[i].s);
    r->v[i].s = malloc(len + 1);
    memcpy(r->v[i].s, s, len);
    r->v[i].s[len] = '\0';
    r->v[i].len = len;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Fake records, config, emit                                                */
/* ------------------------------------------------------------------------ */

struct kv {
    const char *key, *value;
    const char *items[8];
    size_t nitems;
};

struct spoke_config {
    struct kv kv[24];
    size_t n;
};

static const struct kv *cfg_find(const struct spoke_config *c, const char *key)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->kv[i].key, key) == 0)
            return &c->kv[i];
    return NULL;
}

static const char *f_config_string(const struct spoke_config *c, const char *key)
{
    const struct kv *kv = cfg_find(c, key);
    return kv ? kv->value : NULL;
}
static int64_t f_config_int(const struct spoke_config *c, const char *key)
{
    const char *v = f_config_string(c, key);
    return v ? strtoll(v, NULL, 10) : 0;
}
static double f_config_double(const struct spoke_config *c, const char *key)
{
    const char *v = f_config_string(c, key);
    return v ? strtod(v, NULL) : 0;
}
static int f_config_bool(const struct spoke_config *c, const char *key)
{
    const char *v = f_config_string(c, key);
    return v && strcmp(v, "true") == 0;
}
static size_t f_config_list(const struct spoke_config *c, const char *key, const char *const **items)
{
    const struct kv *kv = cfg_find(c, key);
    *items = kv ? kv->items : NULL;
    return kv ? kv->nitems : 0;
}

/* Output rows by key, so the check can read the last state of each group. */
#define MAXOUT 512
static struct {
    char key[64];
    int64_t bikes, mech, ebike, n;
} outs[MAXOUT];
static size_t nouts;
static long emitted;

static int64_t f_wall_ms(void);
static struct spoke_record *f_record_new(struct spoke_instance *inst, const char *topic,
                                         const void *key, size_t klen, const void *val,
                                         size_t vlen)
{
    struct spoke_record *r = calloc(1, sizeof(*r));
    memcpy(r->key, key, klen < 63 ? klen : 63);
    r->ts = f_wall_ms();  /* as the host's: a new record's timestamp is now */
    return r;
}
static void f_record_free(struct spoke_record *r)
{
    if (r)
        f_row_free(r->out);
    free(r);
}
static int f_record_set_row(struct spoke_record *r, struct spoke_row *row)
{
    r->out = row;
    return SPOKE_OK;
}
static void f_record_set_ts(struct spoke_record *r, int64_t ts) { r->ts = ts; }
static int64_t f_record_ts(const struct spoke_record *r) { return r->ts; }

static int f_emit(struct spoke_instance *inst, struct spoke_record *r)
{
    size_t i;
    for (i = 0; i < nouts; i++)
        if (strcmp(outs[i].key, r->key) == 0)
            break;
    if (i == nouts && nouts < MAXOUT)
        strcpy(outs[nouts++].key, r->key);
    if (i < MAXOUT) {
        outs[i].bikes = r->out->v[1].i;
        outs[i].mech = r->out->v[2].i;
        outs[i].ebike = r->out->v[3].i;
        outs[i].n = r->out->v[4].i;
    }
    emitted++;
    f_record_free(r);
    return SPOKE_OK;
}

static const struct spoke_row *f_value_row(const struct spoke_record *r, const char **why)
{
    return r->row;
}
static unsigned f_value_forms(const struct spoke_record *r) { return SPOKE_FORM_ROW; }
static void f_position(const struct spoke_record *r, const char **part, int64_t *off)
{
    *part = NULL;
    *off = 0;
}
static const char *f_topic(const struct spoke_record *r) { return "rows"; }

static void f_log(struct spoke_instance *inst, enum spoke_log_level lvl, const char *fmt, ...)
{
    if (lvl > SPOKE_LOG_WARN)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
static const char *f_strerror(int rc) { return rc == SPOKE_OK ? "ok" : "error"; }
static void *f_alloc(size_t n) { return malloc(n ? n : 1); }
static void f_free(void *p) { free(p); }
static int64_t f_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
static int64_t f_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
static const char *f_instance_name(const struct spoke_instance *i) { return "bench"; }
static void f_metric(struct spoke_instance *inst, const char *name, int64_t v) {}

static const struct spoke_host_api fake_api = {
    .abi_version = SPOKE_ABI_VERSION,
    .struct_size = sizeof(struct spoke_host_api),
    .log = f_log, .strerror = f_strerror, .alloc = f_alloc, .free = f_free,
    .wall_ms = f_wall_ms, .mono_ms = f_mono_ms, .instance_name = f_instance_name,
    .config_string = f_config_string, .config_int = f_config_int,
    .config_double = f_config_double, .config_bool = f_config_bool,
    .config_list = f_config_list,
    .record_new = f_record_new, .record_free = f_record_free, .emit = f_emit,
    .record_position = f_position, .record_topic = f_topic,
    .record_timestamp = f_record_ts, .record_set_timestamp = f_record_set_ts,
    .record_value_row = f_value_row, .record_set_row = f_record_set_row,
    .schema_new = f_schema_new, .schema_add = f_schema_add, .schema_index = f_schema_index,
    .schema_count = f_schema_count, .schema_name = f_schema_name, .schema_type = f_schema_type,
    .schema_ref = f_schema_ref, .schema_unref = f_schema_unref,
    .row_new = f_row_new, .row_free = f_row_free, .row_count = f_row_count,
    .row_schema = f_row_schema, .row_index = f_row_index,
    .row_set_null = f_row_set_null, .row_set_bool = f_row_set_bool,
    .row_set_int = f_row_set_int, .row_set_double = f_row_set_double,
    .row_set_string = f_row_set_string, .row_set_timestamp = f_row_set_ts,
    .row_type = f_row_type, .row_get_bool = f_row_get_bool, .row_get_int = f_row_get_int,
    .row_get_double = f_row_get_double, .row_get_string = f_row_get_string,
    .row_get_timestamp = f_row_get_ts,
    .metric_add = f_metric, .metric_set = f_metric,
    .record_value_forms = f_value_forms,
};

/* ------------------------------------------------------------------------ */
/* Input                                                                     */
/* ------------------------------------------------------------------------ */

#define NSTATIONS 1470
#define NPOSTCODES 85
#define NPOLLS 4                /* distinct polls kept in memory, replayed in a cycle */
#define NRECORDS_DEFAULT 2000000
#define T0 1732000000000

static long nrecords = NRECORDS_DEFAULT;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static struct spoke_record *inputs;
static size_t ninputs;
static int64_t want_bikes[NPOSTCODES], want_mech[NPOSTCODES], want_ebike[NPOSTCODES];
static int64_t want_n[NPOSTCODES];
static int station_pc[NSTATIONS];

static void build_inputs(void)
{
    struct spoke_schema *s = f_schema_new();
    f_schema_add(s, "stationCode", SPOKE_TYPE_STRING);
    f_schema_add(s, "postcode", SPOKE_TYPE_STRING);
    f_schema_add(s, "num_bikes_available", SPOKE_TYPE_INT);
    f_schema_add(s, "mechanical", SPOKE_TYPE_INT);
    f_schema_add(s, "ebike", SPOKE_TYPE_INT);
    f_schema_add(s, "last_reported", SPOKE_TYPE_TIMESTAMP);
    f_schema_add(s, "is_renting", SPOKE_TYPE_BOOL);
    for (int k = 0; k < NSTATIONS; k++)
        station_pc[k] = rnd(NPOSTCODES);
    int mech[NSTATIONS], ebike[NSTATIONS];
    for (int k = 0; k < NSTATIONS; k++) {
        mech[k] = (int)rnd(20);
        ebike[k] = (int)rnd(10);
    }
    ninputs = (size_t)NSTATIONS * NPOLLS;
    inputs = calloc(ninputs, sizeof(*inputs));
    int64_t t = T0;
    size_t n = 0;
    for (int poll = 0; poll < NPOLLS; poll++) {
        t += 60000;
        for (int k = 0; k < NSTATIONS; k++) {
            if (rnd(10) == 0) {          /* a tenth of the stations changed */
                mech[k] = (int)rnd(20);
                ebike[k] = (int)rnd(10);
            }
            struct spoke_row *r = f_row_new(s);
            char code[16], pc[16];
            snprintf(code, sizeof(code), "%d", 1001 + k * 7);
            snprintf(pc, sizeof(pc), "%d", 75001 + station_pc[k] * 3);
            f_row_set_string(r, 0, code, strlen(code));
            f_row_set_string(r, 1, pc, strlen(pc));
            f_row_set_int(r, 2, mech[k] + ebike[k]);
            f_row_set_int(r, 3, mech[k]);
            f_row_set_int(r, 4, ebike[k]);
            f_row_set_ts(r, 5, t);
            f_row_set_bool(r, 6, 1);
            inputs[n++].row = r;
        }
    }
    f_schema_unref(s);
    /* Table semantics: the last poll is the truth. */
    for (int k = 0; k < NSTATIONS; k++) {
        int p = station_pc[k];
        want_bikes[p] += mech[k] + ebike[k];
        want_mech[p] += mech[k];
        want_ebike[p] += ebike[k];
        want_n[p]++;
    }
}

/* ------------------------------------------------------------------------ */
/* Scenarios                                                                 */
/* ------------------------------------------------------------------------ */

struct scenario {
    const char *name;
    const char *semantics;
    const char *time_field;   /* NULL: processing time */
    const char *window;       /* NULL: none */
    const char *aggs[8];
    size_t naggs;
    int check;                /* compare emitted totals with the last poll */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int run(const struct spoke_plugin *d, const struct scenario *sc)
{
    struct spoke_config cfg = { 0 };
    struct kv *kv = cfg.kv;
    size_t n = 0;
    kv[n++] = (struct kv){ "group.by", "postcode", { "postcode" }, 1 };
    kv[n] = (struct kv){ "aggregates", "", { 0 }, sc->naggs };
    memcpy(kv[n++].items, sc->aggs, sc->naggs * sizeof(char *));
    kv[n++] = (struct kv){ "semantics", sc->semantics, { 0 }, 0 };
    if (strcmp(sc->semantics, "table") == 0)
        kv[n++] = (struct kv){ "entity.key", "stationCode", { "stationCode" }, 1 };
    if (sc->time_field)
        kv[n++] = (struct kv){ "time.field", sc->time_field, { 0 }, 0 };
    kv[n++] = (struct kv){ "window", sc->window ? sc->window : "none", { 0 }, 0 };
    if (sc->window)
        kv[n++] = (struct kv){ "window.size.ms", "3600000", { 0 }, 0 };
    kv[n++] = (struct kv){ "allowed.lateness.ms", "0", { 0 }, 0 };
    kv[n++] = (struct kv){ "emit", "update", { 0 }, 0 };
    kv[n++] = (struct kv){ "emit.interval.ms", "1000", { 0 }, 0 };
    kv[n++] = (struct kv){ "top.n", "0", { 0 }, 0 };
    kv[n++] = (struct kv){ "top.order", "desc", { 0 }, 0 };
    kv[n++] = (struct kv){ "max.groups", "100000", { 0 }, 0 };
    kv[n++] = (struct kv){ "max.entities", "1000000", { 0 }, 0 };
    cfg.n = n;

    double rates[5];
    char err[SPOKE_ERRSTR_SIZE];
    for (int runi = 0; runi < 6; runi++) {
        void *st = NULL;
        err[0] = '\0';
        if (d->init(&fake_api, NULL, &cfg, &st, err, sizeof(err)) != SPOKE_OK) {
            fprintf(stderr, "%s: init: %s\n", sc->name, err);
            return 1;
        }
        double t0 = now_s();
        size_t k = 0;
        int64_t poll_t = T0;
        for (long i = 0; i < nrecords; i++) {
            /* Each poll is newer than the last, as from a live feed (an older
             * time would be ignored by table semantics on event time). */
            if (k % NSTATIONS == 0)
                poll_t += 60000;
            ((struct spoke_row *)inputs[k].row)->v[5].i = poll_t;
            int rc = d->process(st, &inputs[k], err, sizeof(err));
            if (rc != SPOKE_DROP) {
                fprintf(stderr, "%s: process: %d %s\n", sc->name, rc, err);
                return 1;
            }
            if (++k == ninputs)
                k = 0;
        }
        double dt = now_s() - t0;
        if (runi > 0)
            rates[runi - 1] = (double)nrecords / dt;   /* run 0 is the warm-up */
        if (runi == 5 && sc->check) {
            /* Finish on a whole number of polls, then read the totals. */
            while (k != 0) {
                if (k % NSTATIONS == 0)
                    poll_t += 60000;
                ((struct spoke_row *)inputs[k].row)->v[5].i = poll_t;
                d->process(st, &inputs[k], err, sizeof(err));
                if (++k == ninputs)
                    k = 0;
            }
            int64_t next;
            nouts = 0;
            d->tick(st, f_wall_ms(), &next, err, sizeof(err));
            int bad = nouts != NPOSTCODES;
            for (size_t i = 0; i < nouts && !bad; i++) {
                int p = (atoi(outs[i].key) - 75001) / 3;
                bad = outs[i].bikes != want_bikes[p] || outs[i].mech != want_mech[p] ||
                      outs[i].ebike != want_ebike[p] || outs[i].n != want_n[p];
            }
            if (bad) {
                fprintf(stderr, "%s: emitted totals differ from the last poll (%zu groups)\n",
                        sc->name, nouts);
                return 1;
            }
        }
        d->destroy(st);
    }
    qsort(rates, 5, sizeof(rates[0]), cmp_double);
    printf("| %-44s | %12.0f | %6.1f |%s\n", sc->name, rates[2], 1e9 / rates[2],
           sc->check ? " totals checked" : "");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        nrecords = atol(argv[1]);  /* fewer for valgrind runs */
    int only = argc > 2 ? atoi(argv[2]) : -1;  /* one scenario, by index */
    const struct spoke_plugin *d = spoke_plugin_entry();
    build_inputs();
    static const struct scenario scenarios[] = {
        { "table, 3 sums + count, event time", "table", "last_reported", NULL,
          { "total_bikes_available=sum(num_bikes_available)", "total_mechanical_bikes=sum(mechanical)",
            "total_electric_bikes=sum(ebike)", "n=count()" }, 4, 1 },
        { "table, 3 sums + count, processing time", "table", NULL, NULL,
          { "total_bikes_available=sum(num_bikes_available)", "total_mechanical_bikes=sum(mechanical)",
            "total_electric_bikes=sum(ebike)", "n=count()" }, 4, 1 },
        { "table, sum + min + max + avg + stddev", "table", "last_reported", NULL,
          { "b=sum(num_bikes_available)", "mn=min(num_bikes_available)",
            "mx=max(num_bikes_available)", "a=avg(ebike)", "sd=stddev(mechanical)" }, 5, 0 },
        { "table, 3 sums, tumbling 1 h window", "table", "last_reported", "tumbling",
          { "b=sum(num_bikes_available)", "m=sum(mechanical)", "e=sum(ebike)" }, 3, 0 },
        { "stream, 3 sums + count, event time", "stream", "last_reported", NULL,
          { "b=sum(num_bikes_available)", "m=sum(mechanical)", "e=sum(ebike)", "n=count()" }, 4, 0 },
        { "stream, count + last(stationCode)", "stream", "last_reported", NULL,
          { "n=count()", "l=last(stationCode)" }, 2, 0 },
    };
    printf("%d stations, %d postcodes, %ld process() calls per run, median of 5 runs\n\n",
           NSTATIONS, NPOSTCODES, nrecords);
    printf("| %-44s | %12s | %6s |\n", "scenario", "records/s", "ns/rec");
    printf("|%s|%s|%s|\n", "----------------------------------------------", "-------------:",
           "-------:");
    int rc = 0;
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
        if (only < 0 || (size_t)only == i)
            rc |= run(d, &scenarios[i]);
    for (size_t i = 0; i < ninputs; i++)
        f_row_free((struct spoke_row *)inputs[i].row);
    free(inputs);
    return rc;
}
