/*
 * test_aggregator_snap - the aggregator's snapshot and restore, driven
 * through the built plugin (build/plugins/aggregator.so) with the host's own
 * records and rows and a test config:
 *
 *  - exactness: snapshot, restore into a fresh instance, snapshot again: the
 *    bytes are identical; feeding both instances the same further records
 *    keeps them identical (every configuration shape: stream and table,
 *    windows, every function, strings, nulls, promoted types);
 *  - refusal: bad magic, unknown version, checksum, truncation and another
 *    configuration are refused with their reason;
 *  - robustness: thousands of mutated snapshots whose checksum is made valid
 *    again (so the structural checks run) are restored: each is either
 *    refused with a reason or gives a usable state; under ASan/UBSan nothing
 *    may crash or leak.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "instance.h"
#include "record.h"
#include "test.h"

#include "../../plugins/aggregator/aggregator.h"

#define SNAP_SEED 0x5350414b41474731ull  /* aggregator_snap.c */

/* ---- a test config: key -> value or list items ---- */

struct tkv {
    const char *key;
    const char *value;
    const char *items[16];
    size_t nitems;
};

struct spoke_config {
    struct tkv kv[32];
    size_t n;
};

static const struct tkv *cfind(const struct spoke_config *c, const char *key)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->kv[i].key, key) == 0)
            return &c->kv[i];
    return NULL;
}

static const char *t_string(const struct spoke_config *c, const char *key)
{
    const struct tkv *kv = cfind(c, key);
    return kv ? kv->value : NULL;
}
static int64_t t_int(const struct spoke_config *c, const char *key)
{
    const char *v = t_string(c, key);
    return v ? strtoll(v, NULL, 10) : 0;
}
static double t_double(const struct spoke_config *c, const char *key)
{
    const char *v = t_string(c, key);
    return v ? strtod(v, NULL) : 0;
}
static int t_bool(const struct spoke_config *c, const char *key)
{
    const char *v = t_string(c, key);
    return v && strcmp(v, "true") == 0;
}
static size_t t_list(const struct spoke_config *c, const char *key, const char *const **items)
{
    const struct tkv *kv = cfind(c, key);
    *items = kv ? kv->items : NULL;
    return kv ? kv->nitems : 0;
}

/* Defaults of the plugin's table, then the case's own keys. */
static void cfg_init(struct spoke_config *c)
{
    memset(c, 0, sizeof(*c));
    static const char *const defaults[][2] = {
        { "semantics", "stream" }, { "window", "none" }, { "allowed.lateness.ms", "0" },
        { "emit", "update" }, { "emit.interval.ms", "1000" }, { "top.n", "0" },
        { "top.order", "desc" }, { "max.groups", "100000" }, { "max.entities", "1000000" },
    };
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        c->kv[c->n++] = (struct tkv){ defaults[i][0], defaults[i][1], { 0 }, 0 };
}

static void cfg_set(struct spoke_config *c, const char *key, const char *value)
{
    struct tkv kv = { key, value, { 0 }, 0 };
    /* A list value is comma-separated here. */
    static char store[256][512];
    static size_t nstore;
    char *copy = store[nstore++ % 256];
    snprintf(copy, 512, "%s", value);
    for (char *tok = strtok(copy, ","); tok && kv.nitems < 16; tok = strtok(NULL, ","))
        kv.items[kv.nitems++] = tok;
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->kv[i].key, key) == 0) {
            c->kv[i] = kv;
            return;
        }
    c->kv[c->n++] = kv;
}

/* ---- host services: the real records and rows, test emit/config ---- */

static long emitted;

static struct spoke_record *t_record_new(struct spoke_instance *inst, const char *topic,
                                         const void *key, size_t klen, const void *val,
                                         size_t vlen)
{
    return rec_new(intern_str(topic ? topic : "out"), key, klen, val, vlen);
}

static int t_emit(struct spoke_instance *inst, struct spoke_record *rec)
{
    size_t len;
    CHECK(rec_value_bytes(rec, &len) != NULL);  /* the row serializes */
    emitted++;
    rec_free(rec);
    return SPOKE_OK;
}

static void t_log(struct spoke_instance *inst, enum spoke_log_level level, const char *fmt, ...)
{
    (void)inst;
    (void)level;
    (void)fmt;
}
static void t_metric(struct spoke_instance *inst, const char *name, int64_t v) {}

static struct spoke_host_api api;
static const struct spoke_plugin *plugin;

static void api_init(void)
{
    api = api_table;
    api.log = t_log;
    api.config_string = t_string;
    api.config_int = t_int;
    api.config_double = t_double;
    api.config_bool = t_bool;
    api.config_list = t_list;
    api.record_new = t_record_new;
    api.emit = t_emit;
    api.metric_add = t_metric;
    api.metric_set = t_metric;
}

/* ---- helpers ---- */

static void *new_instance_on(const struct spoke_host_api *host, const struct spoke_config *cfg)
{
    void *st = NULL;
    char err[SPOKE_ERRSTR_SIZE] = "";
    int rc = plugin->init(host, NULL, cfg, &st, err, sizeof(err));
    CHECK_MSG(rc == SPOKE_OK, "init: %s", err);
    return rc == SPOKE_OK ? st : NULL;
}

static void *new_instance(const struct spoke_config *cfg) { return new_instance_on(&api, cfg); }

static int feed(void *st, const char *json)
{
    struct spoke_record *rec = rec_new(intern_str("in"), NULL, 0, json, strlen(json));
    char err[SPOKE_ERRSTR_SIZE] = "";
    int rc = plugin->process(st, rec, err, sizeof(err));
    rec_free(rec);
    return rc;
}

static uint8_t *snap(void *st, size_t *len)
{
    void *data = NULL;
    char err[SPOKE_ERRSTR_SIZE] = "";
    int rc = plugin->snapshot(st, &data, len, err, sizeof(err));
    CHECK_MSG(rc == SPOKE_OK, "snapshot: %s", err);
    return data;
}

static int restore(void *st, const uint8_t *data, size_t len, char *err, size_t errsz)
{
    err[0] = '\0';
    return plugin->restore(st, data, len, err, errsz);
}

static void reseal(uint8_t *data, size_t len)
{
    uint64_t h = agg_hash(data, len - 8, SNAP_SEED);
    for (int i = 0; i < 8; i++)
        data[len - 8 + (size_t)i] = (uint8_t)(h >> (8 * i));
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* A record of the shared test shape: group g, entity id, numbers, a
 * string, sometimes nulls, sometimes a double where ints were. */
static void record_json(char *out, size_t outsz, int k)
{
    static const char *names[] = { "alpha", "b", "", "a longer string value than sixteen bytes",
                                   "\\u00e9t\\u00e9" };
    int64_t t = 1732000000000 + (int64_t)k * 700 - (k % 17 == 0 ? 9000 : 0);
    char x[32];
    if (k % 11 == 0)
        snprintf(x, sizeof(x), "null");
    else if (k > 150 && k % 7 == 0)
        snprintf(x, sizeof(x), "%d.25", k % 40);
    else
        snprintf(x, sizeof(x), "%d", k % 40);
    snprintf(out, outsz,
             "{\"g\":\"g%d\",\"id\":\"e%d\",\"x\":%s,\"d\":%d.5,\"s\":\"%s\",\"t\":%lld}",
             rnd(5), rnd(23), x, (int)rnd(1000) - 500, names[rnd(5)], (long long)t);
}

struct shape {
    const char *name;
    const char *keys[12][2];
};

static const struct shape shapes[] = {
    { "stream, every function", {
        { "group.by", "g" },
        { "aggregates", "n=count(),nx=count(x),s=sum(x),sd=sum(d),a=avg(x),mn=min(x),mx=max(d),"
                        "v=variance(d),sp=stddev_pop(x),f=first(s),l=last(s),lt=last(t)" },
        { "time.field", "t" } } },
    { "table, every function", {
        { "group.by", "g" }, { "semantics", "table" }, { "entity.key", "id" },
        { "aggregates", "n=count(),nx=count(x),s=sum(x),sd=sum(d),a=avg(x),mn=min(x),mx=max(d),"
                        "v=variance(d),sp=stddev_pop(x),f=first(s),l=last(s),mt=min(t)" },
        { "time.field", "t" } } },
    { "table, numbers only, processing time", {
        { "group.by", "g" }, { "semantics", "table" }, { "entity.key", "id" },
        { "aggregates", "n=count(),s=sum(x),a=avg(d)" } } },
    { "stream, tumbling, lateness", {
        { "group.by", "g" }, { "aggregates", "n=count(),s=sum(x),l=last(s)" },
        { "time.field", "t" }, { "window", "tumbling" }, { "window.size.ms", "5000" },
        { "allowed.lateness.ms", "3000" }, { "emit", "final" } } },
    { "table, hopping", {
        { "group.by", "g" }, { "semantics", "table" }, { "entity.key", "id" },
        { "aggregates", "n=count(),mx=max(x),f=first(s)" }, { "time.field", "t" },
        { "window", "hopping" }, { "window.size.ms", "9000" }, { "window.advance.ms", "3000" },
        { "allowed.lateness.ms", "2000" } } },
    { "no group.by, complete", {
        { "aggregates", "n=count(),s=sum(x)" }, { "emit", "complete" } } },
};

static void shape_config(const struct shape *sh, struct spoke_config *cfg)
{
    cfg_init(cfg);
    for (size_t i = 0; i < 12 && sh->keys[i][0]; i++)
        cfg_set(cfg, sh->keys[i][0], sh->keys[i][1]);
}

/* ---- tests ---- */

static void test_round_trip_is_exact(void)
{
    char json[512];
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        struct spoke_config cfg;
        shape_config(&shapes[s], &cfg);
        void *a = new_instance(&cfg), *b = new_instance(&cfg);
        if (!a || !b)
            return;
        for (int k = 0; k < 400; k++) {
            record_json(json, sizeof(json), k);
            int rc = feed(a, json);
            CHECK_MSG(rc == SPOKE_DROP, "%s: record %d: rc %d", shapes[s].name, k, rc);
        }
        size_t l1 = 0, l2 = 0, l3 = 0, l4 = 0;
        uint8_t *s1 = snap(a, &l1);
        char err[SPOKE_ERRSTR_SIZE];
        CHECK_MSG(restore(b, s1, l1, err, sizeof(err)) == SPOKE_OK, "%s: %s", shapes[s].name, err);
        uint8_t *s2 = snap(b, &l2);
        CHECK_MSG(l1 == l2 && memcmp(s1, s2, l1) == 0, "%s: restored state differs",
                  shapes[s].name);
        /* The same further records keep both identical. */
        uint64_t saved = rng;
        for (int k = 400; k < 700; k++) {
            record_json(json, sizeof(json), k);
            feed(a, json);
        }
        rng = saved;
        for (int k = 400; k < 700; k++) {
            record_json(json, sizeof(json), k);
            feed(b, json);
        }
        uint8_t *s3 = snap(a, &l3), *s4 = snap(b, &l4);
        CHECK_MSG(l3 == l4 && memcmp(s3, s4, l3) == 0, "%s: states diverge after a restore",
                  shapes[s].name);
        int64_t next;
        CHECK(plugin->tick(b, api.wall_ms(), &next, err, sizeof(err)) == SPOKE_OK);
        free(s1);
        free(s2);
        free(s3);
        free(s4);
        plugin->destroy(a);
        plugin->destroy(b);
    }
    CHECK(emitted > 0);
}

/* On a host without row_values the aggregator reads each field through
 * the getters: every shape must come to the same state either way. */
static void test_rows_read_alike_on_an_older_host(void)
{
    struct spoke_host_api older = api;
    older.struct_size = (uint32_t)offsetof(struct spoke_host_api, row_values);
    char json[512];
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        struct spoke_config cfg;
        shape_config(&shapes[s], &cfg);
        void *a = new_instance(&cfg), *b = new_instance_on(&older, &cfg);
        if (!a || !b)
            return;
        uint64_t saved = rng;
        int ra[500], rb[500];
        for (int k = 0; k < 500; k++) {
            record_json(json, sizeof(json), k);
            ra[k] = feed(a, json);
        }
        rng = saved;
        for (int k = 0; k < 500; k++) {
            record_json(json, sizeof(json), k);
            rb[k] = feed(b, json);
        }
        CHECK_MSG(memcmp(ra, rb, sizeof(ra)) == 0, "%s: outcomes differ", shapes[s].name);
        size_t la = 0, lb = 0;
        uint8_t *sa = snap(a, &la), *sb = snap(b, &lb);
        CHECK_MSG(la > 0 && la == lb && memcmp(sa, sb, la) == 0, "%s: states differ",
                  shapes[s].name);
        free(sa);
        free(sb);
        plugin->destroy(a);
        plugin->destroy(b);
    }
}

static void test_refusals_name_the_reason(void)
{
    struct spoke_config cfg;
    shape_config(&shapes[1], &cfg);
    void *a = new_instance(&cfg);
    if (!a)
        return;
    char json[512], err[SPOKE_ERRSTR_SIZE];
    for (int k = 0; k < 100; k++) {
        record_json(json, sizeof(json), k);
        feed(a, json);
    }
    size_t len = 0;
    uint8_t *s = snap(a, &len), *bad = malloc(len);
    void *b = new_instance(&cfg);

    memcpy(bad, s, len);
    bad[0] = 'X';
    CHECK(restore(b, bad, len, err, sizeof(err)) == SPOKE_ERR_PARSE);
    CHECK_MSG(CONTAINS(err, "not an aggregator snapshot"), "%s", err);

    memcpy(bad, s, len);
    bad[8] = 7;
    CHECK(restore(b, bad, len, err, sizeof(err)) == SPOKE_ERR_PARSE);
    CHECK_MSG(CONTAINS(err, "format version 7 is not supported"), "%s", err);

    memcpy(bad, s, len);
    bad[len / 2] ^= 1;
    CHECK(restore(b, bad, len, err, sizeof(err)) == SPOKE_ERR_PARSE);
    CHECK_MSG(CONTAINS(err, "checksum mismatch"), "%s", err);

    CHECK(restore(b, s, 10, err, sizeof(err)) == SPOKE_ERR_PARSE);
    CHECK(restore(b, s, len - 1, err, sizeof(err)) == SPOKE_ERR_PARSE);

    /* Resealed truncation: the structure check speaks. */
    memcpy(bad, s, len);
    size_t cut = len - 40;
    memcpy(bad + cut - 8, s + len - 8, 8);
    reseal(bad, cut);
    CHECK(restore(b, bad, cut, err, sizeof(err)) == SPOKE_ERR_PARSE);
    CHECK_MSG(CONTAINS(err, "snapshot is corrupt: "), "%s", err);

    /* Another configuration. */
    struct spoke_config other;
    shape_config(&shapes[1], &other);
    cfg_set(&other, "group.by", "id");
    void *c = new_instance(&other);
    CHECK(restore(c, s, len, err, sizeof(err)) == SPOKE_ERR_INVALID);
    CHECK_MSG(CONTAINS(err, "snapshot holds state for group.by=g but the configuration says "
                            "group.by=id"), "%s", err);
    /* The refused instances still work and free cleanly. */
    record_json(json, sizeof(json), 1);
    CHECK(feed(b, json) == SPOKE_DROP);
    CHECK(feed(c, json) == SPOKE_DROP);
    free(s);
    free(bad);
    plugin->destroy(a);
    plugin->destroy(b);
    plugin->destroy(c);
}

static void test_mutated_snapshots_never_crash(void)
{
    char json[512], err[SPOKE_ERRSTR_SIZE];
    int refused = 0, accepted = 0;
    for (size_t sh = 0; sh < sizeof(shapes) / sizeof(shapes[0]); sh++) {
        struct spoke_config cfg;
        shape_config(&shapes[sh], &cfg);
        void *a = new_instance(&cfg);
        if (!a)
            return;
        for (int k = 0; k < 60; k++) {
            record_json(json, sizeof(json), k);
            feed(a, json);
        }
        size_t len = 0;
        uint8_t *s = snap(a, &len), *bad = malloc(len + 64);
        plugin->destroy(a);
        for (int iter = 0; iter < 1500; iter++) {
            size_t blen = len;
            memcpy(bad, s, len);
            int nflip = 1 + (int)rnd(4);
            for (int f = 0; f < nflip; f++) {
                size_t at = 12 + rnd((uint32_t)(len - 20));  /* keep magic and version */
                switch (rnd(4)) {
                case 0: bad[at] ^= (uint8_t)(1u << rnd(8)); break;
                case 1: bad[at] = (uint8_t)rnd(256); break;
                case 2: bad[at] = 0xff; break;
                default: bad[at] = 0; break;
                }
            }
            if (rnd(8) == 0)
                blen = 20 + rnd((uint32_t)(len - 20));
            reseal(bad, blen);
            void *b = new_instance(&cfg);
            if (!b)
                return;
            int rc = restore(b, bad, blen, err, sizeof(err));
            if (rc == SPOKE_OK) {
                accepted++;
                /* A state that passed every check must be usable. */
                for (int k = 0; k < 5; k++) {
                    record_json(json, sizeof(json), 1000 + k);
                    feed(b, json);
                }
                size_t l2;
                free(snap(b, &l2));
                int64_t next;
                plugin->tick(b, api.wall_ms(), &next, err, sizeof(err));
            } else {
                refused++;
                CHECK_MSG(err[0] != '\0', "refused without a reason (rc %d)", rc);
            }
            plugin->destroy(b);
        }
        free(s);
        free(bad);
    }
    fprintf(stderr, "mutated snapshots: %d refused, %d accepted\n", refused, accepted);
    CHECK(refused > 0);
}

int main(void)
{
    const char *dir = getenv("SPOKE_PLUGIN_DIR");
    char path[4096];
    snprintf(path, sizeof(path), "%s/aggregator.so", dir ? dir : "build/plugins");
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    CHECK_MSG(h != NULL, "dlopen %s: %s", path, dlerror());
    if (!h)
        return TEST_REPORT();
    spoke_plugin_entry_fn entry = (spoke_plugin_entry_fn)dlsym(h, SPOKE_PLUGIN_ENTRY_SYMBOL);
    CHECK(entry != NULL);
    if (!entry)
        return TEST_REPORT();
    plugin = entry();
    api_init();
    RUN(test_round_trip_is_exact);
    RUN(test_rows_read_alike_on_an_older_host);
    RUN(test_refusals_name_the_reason);
    RUN(test_mutated_snapshots_never_crash);
    dlclose(h);
    return TEST_REPORT();
}
