/* Unit tests: rows <-> JSON (host/src/rowjson.c). */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "record.h"
#include "test.h"
#include "textfmt.h"

/* ---- helpers ---- */

static struct buf wbuf;

/* Writes row and returns the text (a buffer reused per call). */
static const char *w(const struct spoke_row *row)
{
    buf_reset(&wbuf);
    if (rowjson_write(row, &wbuf) < 0)
        return "(write failed)";
    return wbuf.p;
}

/* A one-field list holding a double / timestamp / string, written. */
static char out[256];

static const char *wd(double d)
{
    struct spoke_row *l = row_new_list(1);
    row_set_double(l, 0, d);
    snprintf(out, sizeof(out), "%s", w(l));
    row_free(l);
    return out;
}

static const char *wt(int64_t ms)
{
    struct spoke_row *l = row_new_list(1);
    row_set_timestamp(l, 0, ms);
    snprintf(out, sizeof(out), "%s", w(l));
    row_free(l);
    return out;
}

static const char *ws(const char *s, size_t len)
{
    struct spoke_row *l = row_new_list(1);
    if (row_set_string(l, 0, s, len) != SPOKE_OK) {
        row_free(l);
        return "(invalid)";
    }
    snprintf(out, sizeof(out), "%s", w(l));
    row_free(l);
    return out;
}

static struct spoke_row *parse(const char *json, char *err, size_t errsize)
{
    return rowjson_parse(json, strlen(json), err, errsize);
}

/* Deep equality of two rows: same shapes, names, types and values (doubles
 * bit for bit, so -0.0 differs from 0.0). */
static int row_equal(const struct spoke_row *a, const struct spoke_row *b)
{
    if (!a || !b || row_count(a) != row_count(b))
        return 0;
    const struct spoke_schema *sa = row_schema(a), *sb = row_schema(b);
    if ((sa == NULL) != (sb == NULL))
        return 0;
    for (size_t i = 0; i < row_count(a); i++) {
        if (sa && strcmp(schema_name(sa, i), schema_name(sb, i)) != 0)
            return 0;
        if (sa && schema_type(sa, i) != schema_type(sb, i))
            return 0;
        enum spoke_type t = row_type(a, i);
        if (t != row_type(b, i))
            return 0;
        size_t la, lb;
        const char *pa, *pb;
        double da, db;
        switch (t) {
        case SPOKE_TYPE_BOOL:
            if (row_get_bool(a, i) != row_get_bool(b, i))
                return 0;
            break;
        case SPOKE_TYPE_INT:
            if (row_get_int(a, i) != row_get_int(b, i))
                return 0;
            break;
        case SPOKE_TYPE_TIMESTAMP:
            if (row_get_timestamp(a, i) != row_get_timestamp(b, i))
                return 0;
            break;
        case SPOKE_TYPE_DOUBLE:
            da = row_get_double(a, i);
            db = row_get_double(b, i);
            if (memcmp(&da, &db, sizeof(da)) != 0)
                return 0;
            break;
        case SPOKE_TYPE_STRING:
            pa = row_get_string(a, i, &la);
            pb = row_get_string(b, i, &lb);
            if (la != lb || memcmp(pa, pb, la) != 0)
                return 0;
            break;
        case SPOKE_TYPE_LIST:
        case SPOKE_TYPE_MAP:
            if (!row_equal(row_get_row(a, i), row_get_row(b, i)))
                return 0;
            break;
        default:
            break;
        }
    }
    return 1;
}

/* parse -> write -> parse gives an equal row, and writing that gives the
 * same text again. */
static int round_trips(const char *json)
{
    char err[256];
    struct spoke_row *r1 = parse(json, err, sizeof(err));
    if (!r1) {
        fprintf(stderr, "round_trips: %s: %s\n", json, err);
        return 0;
    }
    struct buf b1 = BUF_INIT, b2 = BUF_INIT;
    rowjson_write(r1, &b1);
    struct spoke_row *r2 = rowjson_parse(b1.p, b1.len, err, sizeof(err));
    int ok = r2 && row_equal(r1, r2);
    if (r2) {
        rowjson_write(r2, &b2);
        ok = ok && b1.len == b2.len && memcmp(b1.p, b2.p, b1.len) == 0;
    }
    if (!ok)
        fprintf(stderr, "round_trips: %s -> %s\n", json, b1.p ? b1.p : "(null)");
    buf_free(&b1);
    buf_free(&b2);
    row_free(r1);
    row_free(r2);
    return ok;
}

/* ---- writer ---- */

static void test_write_types(void)
{
    struct spoke_schema *s = schema_new();
    schema_add(s, "n", SPOKE_TYPE_NULL);
    schema_add(s, "t", SPOKE_TYPE_BOOL);
    schema_add(s, "f", SPOKE_TYPE_BOOL);
    schema_add(s, "i", SPOKE_TYPE_INT);
    schema_add(s, "d", SPOKE_TYPE_DOUBLE);
    schema_add(s, "s", SPOKE_TYPE_STRING);
    schema_add(s, "ts", SPOKE_TYPE_TIMESTAMP);
    schema_add(s, "l", SPOKE_TYPE_LIST);
    schema_add(s, "m", SPOKE_TYPE_MAP);
    schema_add(s, "unset", SPOKE_TYPE_INT);
    struct spoke_row *row = row_new(s);
    schema_unref(s);
    row_set_bool(row, 1, 1);
    row_set_bool(row, 2, 0);
    row_set_int(row, 3, -42);
    row_set_double(row, 4, 2.5);
    row_set_string(row, 5, "x", 1);
    row_set_timestamp(row, 6, 1732004538000);
    struct spoke_row *l = row_new_list(3);
    row_set_int(l, 0, 1);
    row_set_string(l, 1, "two", 3);
    row_set_row(l, 2, row_new_list(0));
    row_set_row(row, 7, l);
    struct spoke_schema *ms = schema_new();
    schema_add(ms, "a\"b", SPOKE_TYPE_INT);
    schema_add(ms, "e", SPOKE_TYPE_MAP);
    struct spoke_row *m = row_new(ms);
    schema_unref(ms);
    row_set_int(m, 0, 1);
    struct spoke_schema *es = schema_new();
    struct spoke_row *e = row_new(es);
    schema_unref(es);
    row_set_row(m, 1, e);
    row_set_row(row, 8, m);
    CHECK_STR(w(row), "{\"n\":null,\"t\":true,\"f\":false,\"i\":-42,\"d\":2.5,\"s\":\"x\","
                      "\"ts\":\"2024-11-19T08:22:18.000Z\",\"l\":[1,\"two\",[]],"
                      "\"m\":{\"a\\\"b\":1,\"e\":{}},\"unset\":null}");

    /* The writer appends and keeps the buffer NUL-terminated. */
    struct buf b = BUF_INIT;
    buf_puts(&b, "prefix:");
    CHECK(rowjson_write(l, &b) == 0);
    CHECK_STR(b.p, "prefix:[1,\"two\",[]]");
    CHECK(b.len == strlen(b.p));
    /* With capacity already there, it does not reallocate. */
    char *before = b.p;
    buf_reset(&b);
    CHECK(rowjson_write(l, &b) == 0);
    CHECK(b.p == before);
    buf_free(&b);
    row_free(row);
}

static void test_write_ints(void)
{
    struct spoke_row *l = row_new_list(5);
    row_set_int(l, 0, 0);
    row_set_int(l, 1, -1);
    row_set_int(l, 2, INT64_MAX);
    row_set_int(l, 3, INT64_MIN);
    row_set_int(l, 4, 1234567890);
    CHECK_STR(w(l), "[0,-1,9223372036854775807,-9223372036854775808,1234567890]");
    row_free(l);
}

static void test_write_doubles(void)
{
    CHECK_STR(wd(0.1), "[0.1]");
    CHECK_STR(wd(1e-7), "[1e-7]");
    CHECK_STR(wd(3.0), "[3.0]");
    CHECK_STR(wd(1e300), "[1e300]");
    CHECK_STR(wd(-0.0), "[-0.0]");
    CHECK_STR(wd(0.0), "[0.0]");
    CHECK_STR(wd(NAN), "[null]");
    CHECK_STR(wd(INFINITY), "[null]");
    CHECK_STR(wd(-INFINITY), "[null]");
    CHECK_STR(wd(-2.5), "[-2.5]");
    CHECK_STR(wd(1.0 / 3.0), "[0.3333333333333333]");
    CHECK_STR(wd(2.0 / 3.0), "[0.6666666666666666]");
    CHECK_STR(wd(48.8566), "[48.8566]");
    CHECK_STR(wd(1e15), "[1e15]");
    CHECK_STR(wd(123456789012345.0), "[123456789012345.0]");
    CHECK_STR(wd(9007199254740994.0), "[9007199254740994.0]");
    CHECK_STR(wd(1e21), "[1e21]");
    CHECK_STR(wd(1.5e-300), "[1.5e-300]");
    /* The shortest of the 15-, 16- and 17-digit forms, not the shortest of
     * all: for the smallest subnormal, 15 digits already read back. */
    CHECK_STR(wd(5e-324), "[4.94065645841247e-324]");
    CHECK_STR(wd(DBL_MAX), "[1.7976931348623157e308]");
    CHECK_STR(wd(-DBL_MIN), "[-2.2250738585072014e-308]");
    CHECK_STR(wd(0.30000000000000004), "[0.30000000000000004]");
}

/* Random bit patterns: every finite double is written so that it parses back
 * as a DOUBLE with the same bits. */
static void test_double_round_trip(void)
{
    uint64_t x = 88172645463325252ull;
    int bad = 0, n = 0;
    for (int k = 0; k < 20000; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double d;
        memcpy(&d, &x, sizeof(d));
        if (k % 4 == 0)
            d = (double)(int64_t)(x % 2000000) / 8.0;  /* plenty of whole numbers */
        if (!isfinite(d))
            continue;
        n++;
        wd(d);
        char json[300];
        snprintf(json, sizeof(json), "{\"v\":%.*s}", (int)(strlen(out) - 2), out + 1);
        struct spoke_row *r = rowjson_parse(json, strlen(json), NULL, 0);
        double back = r ? row_get_double(r, 0) : NAN;
        if (!r || row_type(r, 0) != SPOKE_TYPE_DOUBLE || memcmp(&back, &d, sizeof(d)) != 0) {
            if (bad++ < 5)
                fprintf(stderr, "double %.17g written as %s\n", d, json);
        }
        row_free(r);
    }
    CHECK(n > 10000);
    CHECK(bad == 0);
}

static void test_write_timestamps(void)
{
    CHECK_STR(wt(0), "[\"1970-01-01T00:00:00.000Z\"]");
    CHECK_STR(wt(-1), "[\"1969-12-31T23:59:59.999Z\"]");
    CHECK_STR(wt(-86400000), "[\"1969-12-31T00:00:00.000Z\"]");
    CHECK_STR(wt(-1000), "[\"1969-12-31T23:59:59.000Z\"]");
    CHECK_STR(wt(1732004538000), "[\"2024-11-19T08:22:18.000Z\"]");
    CHECK_STR(wt(4102444800000), "[\"2100-01-01T00:00:00.000Z\"]");
    CHECK_STR(wt(4107542399999), "[\"2100-02-28T23:59:59.999Z\"]");   /* 2100: no leap day */
    CHECK_STR(wt(4107542400000), "[\"2100-03-01T00:00:00.000Z\"]");
    CHECK_STR(wt(951825600123), "[\"2000-02-29T12:00:00.123Z\"]");    /* 2000: leap day */
    CHECK_STR(wt(253402300799999), "[\"9999-12-31T23:59:59.999Z\"]");
    CHECK_STR(wt(253402300800000), "[\"+010000-01-01T00:00:00.000Z\"]");
    CHECK_STR(wt(-62167219200000), "[\"0000-01-01T00:00:00.000Z\"]");
    CHECK_STR(wt(-62167219200001), "[\"-000001-12-31T23:59:59.999Z\"]");
    /* The extremes format without overflow. */
    CHECK(strlen(wt(INT64_MIN)) > 20);
    CHECK(strlen(wt(INT64_MAX)) > 20);

    /* Cross-check against gmtime_r over a spread of instants. */
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int bad = 0;
    for (int k = 0; k < 5000; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t ms = (int64_t)(x % 8000000000000ull) - 4000000000000;  /* ~1843..2096 */
        int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
        time_t tt = (time_t)secs;
        struct tm tm;
        gmtime_r(&tt, &tm);
        char want[64];
        snprintf(want, sizeof(want), "[\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"]",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                 tm.tm_sec, (int)(ms - secs * 1000));
        if (strcmp(wt(ms), want) != 0 && bad++ < 5)
            fprintf(stderr, "%lld: %s, want %s\n", (long long)ms, out, want);
    }
    CHECK(bad == 0);
}

/* rowjson_timestamp keeps the last second's text per thread: whatever
 * order the instants come in (within a second, across second, day, month,
 * year boundaries, forwards, backwards, alternating far apart, in and out of
 * the years it caches), its bytes are textfmt_timestamp's. */
static int ts_same(int64_t ms)
{
    char a[64], b[64];
    memset(a, 'x', sizeof(a));
    memset(b, 'y', sizeof(b));
    size_t na = rowjson_timestamp(ms, a), nb = textfmt_timestamp(ms, b);
    if (na != nb || memcmp(a, b, na) != 0) {
        fprintf(stderr, "ms %lld: cached '%.*s' reference '%.*s'\n", (long long)ms, (int)na, a,
                (int)nb, b);
        return 0;
    }
    return 1;
}

static void test_timestamp_cache(void)
{
    static const int64_t edges[] = {
        0,                    /* 1970-01-01T00:00:00 */
        946684800000,         /* 2000-01-01: 1999 -> 2000 */
        951782400000,         /* 2000-02-29 */
        951868800000,         /* 2000-03-01 */
        1704067200000,        /* 2024-01-01 */
        1709164800000,        /* 2024-02-29 */
        1732060800000,        /* 2024-11-20, a day boundary */
        4102444800000,        /* 2100-01-01 */
        253402300800000,      /* 10000-01-01: the cached range ends */
        -62167219200000,      /* 0000-01-01: the cached range starts */
        -86400000,            /* 1969-12-31 */
    };
    int bad = 0;
    for (size_t e = 0; e < sizeof(edges) / sizeof(edges[0]); e++) {
        /* Forwards through the boundary, one ms at a time: runs inside a
         * second, then a new second, day, month or year. */
        for (int64_t d = -2100; d <= 2100; d++)
            bad += !ts_same(edges[e] + d);
        /* Backwards, by steps that land in other seconds and minutes. */
        for (int64_t d = 90000; d >= -90000; d -= 997)
            bad += !ts_same(edges[e] + d);
        /* Same second of another day, then back: the cached second must
         * not be taken for the other day's. */
        for (int k = 0; k < 4; k++) {
            bad += !ts_same(edges[e] + 500);
            bad += !ts_same(edges[e] + 500 + 86400000);
            bad += !ts_same(edges[e] + 500 - 365LL * 86400000);
        }
    }
    /* A random walk: small steps mostly, jumps sometimes, signs mixed. */
    uint64_t x = 0x2545F4914F6CDD1Dull;
    int64_t ms = 1732004538000;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        switch (x % 8) {
        case 0: ms = (int64_t)(x >> 12) % 400000000000000LL - 200000000000000LL; break;
        case 1: ms += (int64_t)((x >> 8) % 172800000) - 86400000; break;
        default: ms += (int64_t)((x >> 8) % 3000) - 1000; break;
        }
        bad += !ts_same(ms);
    }
    bad += !ts_same(INT64_MIN);
    bad += !ts_same(INT64_MAX);
    bad += !ts_same(INT64_MIN + 1);
    CHECK_MSG(bad == 0, "%d instants differ", bad);
    /* The writer uses it. */
    CHECK_STR(wt(1732004538123), "[\"2024-11-19T08:22:18.123Z\"]");
    CHECK_STR(wt(1732004538999), "[\"2024-11-19T08:22:18.999Z\"]");
    CHECK_STR(wt(1732004539000), "[\"2024-11-19T08:22:19.000Z\"]");
    CHECK_STR(wt(1732060800000), "[\"2024-11-20T00:00:00.000Z\"]");
}

static void test_write_strings(void)
{
    CHECK_STR(ws("", 0), "[\"\"]");
    CHECK_STR(ws("a\"b\\c", 5), "[\"a\\\"b\\\\c\"]");
    CHECK_STR(ws("\n\r\t\b\f", 5), "[\"\\u000a\\u000d\\u0009\\u0008\\u000c\"]");
    CHECK_STR(ws("\x01\x1f", 2), "[\"\\u0001\\u001f\"]");
    CHECK_STR(ws("a\0b", 3), "[\"a\\u0000b\"]");
    /* Not escaped: DEL, slash, and valid UTF-8 (kept as is). */
    CHECK_STR(ws("\x7f/", 2), "[\"\x7f/\"]");
    CHECK_STR(ws("V\xc3\xa9lib' \xe2\x82\xac \xf0\x9f\x9a\xb2", 16),
              "[\"V\xc3\xa9lib' \xe2\x82\xac \xf0\x9f\x9a\xb2\"]");
    CHECK_STR(ws("\xe2\x80\xa8", 3), "[\"\xe2\x80\xa8\"]");  /* U+2028 is fine in JSON */
    /* Escapes inside, at the start and at the end of long strings (the
     * eight-bytes-at-a-time path). */
    CHECK_STR(ws("0123456789abcdef\"0123456789abcdef", 33),
              "[\"0123456789abcdef\\\"0123456789abcdef\"]");
    CHECK_STR(ws("\"0123456789abcdef", 17), "[\"\\\"0123456789abcdef\"]");
    CHECK_STR(ws("0123456789abcdef\n", 17), "[\"0123456789abcdef\\u000a\"]");
    CHECK_STR(ws("01234567\\\\\\\\\\\\\\\\89", 18),
              "[\"01234567\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\89\"]");
    /* A long string made of escapes only: growth inside one string. */
    char many[200];
    memset(many, '\n', sizeof(many));
    struct spoke_row *l = row_new_list(1);
    row_set_string(l, 0, many, sizeof(many));
    struct buf b = BUF_INIT;
    CHECK(rowjson_write(l, &b) == 0);
    CHECK(b.len == 2 + 2 + 6 * sizeof(many));
    CHECK(strncmp(b.p + 2, "\\u000a\\u000a", 12) == 0);
    buf_free(&b);
    row_free(l);
}

/* ---- parser ---- */

static const char velib_station[] =
    "{\n"
    "    \"station_id\": 213688169,\n"
    "    \"num_bikes_available\": 1,\n"
    "    \"numBikesAvailable\": 1,\n"
    "    \"num_bikes_available_types\": [\n"
    "        { \"mechanical\": 1 },\n"
    "        { \"ebike\": 0 }\n"
    "    ],\n"
    "    \"num_docks_available\": 34,\n"
    "    \"numDocksAvailable\": 34,\n"
    "    \"is_installed\": 1,\n"
    "    \"is_returning\": 1,\n"
    "    \"is_renting\": 1,\n"
    "    \"last_reported\": 1732001704,\n"
    "    \"stationCode\": \"16107\"\n"
    "}\n";

static void test_parse_velib(void)
{
    char err[256] = "";
    struct spoke_row *r = parse(velib_station, err, sizeof(err));
    CHECK_MSG(r != NULL, "%s", err);
    if (!r)
        return;
    const struct spoke_schema *s = row_schema(r);
    CHECK(row_count(r) == 11);
    CHECK(schema_type(s, 0) == SPOKE_TYPE_INT);
    CHECK(row_get_int(r, row_index(r, "station_id")) == 213688169);
    CHECK(row_get_int(r, row_index(r, "num_docks_available")) == 34);
    CHECK(row_get_int(r, row_index(r, "last_reported")) == 1732001704);
    int sc = row_index(r, "stationCode");
    CHECK(sc == 10);
    CHECK(row_type(r, (size_t)sc) == SPOKE_TYPE_STRING);
    CHECK_STR(row_get_string(r, (size_t)sc, NULL), "16107");
    int ti = row_index(r, "num_bikes_available_types");
    CHECK(ti == 3);
    CHECK(row_type(r, (size_t)ti) == SPOKE_TYPE_LIST);
    const struct spoke_row *types = row_get_row(r, (size_t)ti);
    CHECK(row_count(types) == 2);
    CHECK(row_type(types, 0) == SPOKE_TYPE_MAP);
    const struct spoke_row *mech = row_get_row(types, 0), *ebike = row_get_row(types, 1);
    CHECK(row_get_int(mech, (size_t)row_index(mech, "mechanical")) == 1);
    CHECK(row_get_int(ebike, (size_t)row_index(ebike, "ebike")) == 0);
    CHECK(row_index(ebike, "mechanical") == -1);
    CHECK_STR(w(r), "{\"station_id\":213688169,\"num_bikes_available\":1,\"numBikesAvailable\":1,"
                    "\"num_bikes_available_types\":[{\"mechanical\":1},{\"ebike\":0}],"
                    "\"num_docks_available\":34,\"numDocksAvailable\":34,\"is_installed\":1,"
                    "\"is_returning\":1,\"is_renting\":1,\"last_reported\":1732001704,"
                    "\"stationCode\":\"16107\"}");

    /* The same shape again reuses the cached schema (and the nested ones). */
    struct spoke_row *r2 = parse(velib_station, err, sizeof(err));
    CHECK(r2 && row_schema(r2) == row_schema(r));
    CHECK(r2 && row_schema(row_get_row(row_get_row(r2, 3), 1)) == row_schema(ebike));
    CHECK(row_equal(r, r2));
    /* A different type under the same names is a different schema. */
    struct spoke_row *r3 = parse("{\"station_id\":\"x\"}", err, sizeof(err));
    struct spoke_row *r4 = parse("{\"station_id\":1}", err, sizeof(err));
    struct spoke_row *r5 = parse("{\"station_id\":2}", err, sizeof(err));
    CHECK(r3 && r4 && r5);
    CHECK(row_schema(r3) != row_schema(r4));
    CHECK(row_schema(r4) == row_schema(r5));
    CHECK(schema_type(row_schema(r3), 0) == SPOKE_TYPE_STRING);
    /* Rows of a cached schema are independent of later parses. */
    CHECK(row_get_int(r4, 0) == 1);
    row_free(r);
    row_free(r2);
    row_free(r3);
    row_free(r4);
    row_free(r5);
    CHECK(round_trips(velib_station));
}

static void test_parse_values(void)
{
    char err[256];
    struct spoke_row *r = parse(" \t\r\n{\"a\":null,\"b\":true,\"c\":false,\"d\":-0,\"e\":-0.0,"
                                "\"f\":1.0,\"g\":1e2,\"h\":\"s\",\"i\":[],\"j\":{},"
                                "\"k\":9223372036854775807,\"l\":9223372036854775808,"
                                "\"m\":-9223372036854775808,\"n\":-9223372036854775809,"
                                "\"o\":\"\\ud83d\\ude00\\n\\\"\\/\\u00e9\",\"p\":\"\",\"q\":2E-3} \n",
                                err, sizeof(err));
    CHECK_MSG(r != NULL, "%s", err);
    if (!r)
        return;
    CHECK(row_type(r, 0) == SPOKE_TYPE_NULL);
    CHECK(schema_type(row_schema(r), 0) == SPOKE_TYPE_NULL);
    CHECK(row_type(r, 1) == SPOKE_TYPE_BOOL && row_get_bool(r, 1) == 1);
    CHECK(row_type(r, 2) == SPOKE_TYPE_BOOL && row_get_bool(r, 2) == 0);
    CHECK(row_type(r, 3) == SPOKE_TYPE_INT && row_get_int(r, 3) == 0);
    CHECK(row_type(r, 4) == SPOKE_TYPE_DOUBLE && signbit(row_get_double(r, 4)));
    CHECK(row_type(r, 5) == SPOKE_TYPE_DOUBLE && row_get_double(r, 5) == 1.0);
    CHECK(row_type(r, 6) == SPOKE_TYPE_DOUBLE && row_get_double(r, 6) == 100.0);
    CHECK(row_type(r, 7) == SPOKE_TYPE_STRING);
    CHECK(row_type(r, 8) == SPOKE_TYPE_LIST && row_count(row_get_row(r, 8)) == 0);
    CHECK(row_type(r, 9) == SPOKE_TYPE_MAP && row_count(row_get_row(r, 9)) == 0);
    CHECK(row_type(r, 10) == SPOKE_TYPE_INT && row_get_int(r, 10) == INT64_MAX);
    CHECK(row_type(r, 11) == SPOKE_TYPE_DOUBLE && row_get_double(r, 11) == 9223372036854775808.0);
    CHECK(row_type(r, 12) == SPOKE_TYPE_INT && row_get_int(r, 12) == INT64_MIN);
    CHECK(row_type(r, 13) == SPOKE_TYPE_DOUBLE);
    size_t len;
    const char *o = row_get_string(r, 14, &len);
    CHECK(len == 9 && memcmp(o, "\xf0\x9f\x98\x80\n\"/\xc3\xa9", 9) == 0);
    CHECK(row_get_string(r, 15, &len) != NULL && len == 0);
    CHECK(row_type(r, 16) == SPOKE_TYPE_DOUBLE && row_get_double(r, 16) == 0.002);
    row_free(r);

    /* A number longer than any stack buffer. */
    char big[400] = "{\"x\":0.";
    memset(big + 7, '1', 300);
    strcpy(big + 307, "}");
    r = parse(big, err, sizeof(err));
    CHECK(r && row_type(r, 0) == SPOKE_TYPE_DOUBLE && fabs(row_get_double(r, 0) - 1.0 / 9) < 1e-15);
    row_free(r);
    /* A NUL inside a string value survives; inside a key it is refused. */
    r = parse("{\"x\":\"a\\u0000b\"}", err, sizeof(err));
    CHECK(r && row_get_string(r, 0, &len) && len == 3);
    row_free(r);

    CHECK(round_trips("{\"a\":[1,2.5,\"x\",null,true,{\"b\":[[]]}],\"c\":{\"d\":{}}}"));
    CHECK(round_trips("{\"esc\\\"aped\\n\":\"\\u0001\\u001f\\\\\",\"u\":\"\\u2028\xc3\xa9\"}"));
    CHECK(round_trips("{\"d\":[0.1,1e-7,3.0,1e300,-0.0,-1.5e-300,123456789012345678]}"));
}

/* Each class of malformed input is refused with a reason and an offset. */
static void reject(const char *json, size_t len, const char *want_in_err, const char *want_why)
{
    char err[256] = "";
    const char *why = NULL;
    struct spoke_row *r = rowjson_parse_why(json, len, err, sizeof(err), &why);
    CHECK_MSG(r == NULL, "accepted: %.*s", (int)(len > 80 ? 80 : len), json);
    CHECK_MSG(strstr(err, want_in_err) != NULL, "err \"%s\" lacks \"%s\"", err, want_in_err);
    CHECK_MSG(why && strcmp(why, want_why) == 0, "why \"%s\", want \"%s\"", why ? why : "(null)",
              want_why);
    row_free(r);
}

#define NOT_JSON "value is not valid JSON"
#define REJECT(lit, in_err, why) reject(lit, sizeof(lit) - 1, in_err, why)

static void test_parse_rejects(void)
{
    REJECT("{\"a\":1", "near byte", NOT_JSON);                       /* truncated */
    REJECT("{\"a\":\"xy", "near byte", NOT_JSON);
    REJECT("{\"a\":1} x", "trailing garbage", NOT_JSON);
    REJECT("{\"a\":1}{\"a\":1}", "trailing garbage", NOT_JSON);      /* two values */
    REJECT("{\"a\":tru}", "near byte", NOT_JSON);
    REJECT("{\"a\":nul}", "near byte", NOT_JSON);
    REJECT("{\"a\":01}", "near byte", NOT_JSON);
    REJECT("{\"a\":1.}", "near byte", NOT_JSON);
    REJECT("{\"a\":-}", "near byte", NOT_JSON);
    REJECT("{\"a\":.5}", "near byte", NOT_JSON);
    REJECT("{\"a\":+1}", "near byte", NOT_JSON);
    REJECT("{\"a\":1,}", "near byte", NOT_JSON);
    REJECT("{\"a\" 1}", "near byte", NOT_JSON);
    REJECT("{a:1}", "near byte", NOT_JSON);
    REJECT("{\"a\":'x'}", "near byte", NOT_JSON);
    REJECT("{\"a\":1 /* c */}", "near byte", NOT_JSON);              /* no comments */
    REJECT("{\"a\":\"tab\there\"}", "near byte", NOT_JSON);          /* raw control char */
    REJECT("{\"a\":\"\\x41\"}", "near byte", NOT_JSON);              /* bad escape */
    REJECT("", "near byte 0", NOT_JSON);
    REJECT("   ", "near byte", NOT_JSON);
    /* Invalid UTF-8, in values and in keys. */
    REJECT("{\"a\":\"\xc0\x80\"}", "invalid UTF-8", NOT_JSON);
    REJECT("{\"a\":\"\xed\xa0\x80\"}", "invalid UTF-8", NOT_JSON);
    REJECT("{\"a\":\"\xf4\x90\x80\x80\"}", "invalid UTF-8", NOT_JSON);
    REJECT("{\"\xff\":1}", "near byte", NOT_JSON);
    REJECT("{\"k\xe2\x82\":1}", "invalid UTF-8", NOT_JSON);
    /* Lone surrogate escapes, which YAJL itself lets through. */
    REJECT("{\"a\":\"\\ud800\"}", "lone surrogate", NOT_JSON);
    REJECT("{\"a\":\"\\udc00\"}", "UTF-8", NOT_JSON);
    REJECT("{\"a\":\"x\\uDBFFy\"}", "lone surrogate", NOT_JSON);
    REJECT("{\"a\":\"\\ud800\\u0041\"}", "lone surrogate", NOT_JSON);
    REJECT("{\"\\ud800\":1}", "lone surrogate", NOT_JSON);
    REJECT("{\"a\":\"\\\\\",\"b\":\"\\ud800\"}", "lone surrogate escape near byte 15", NOT_JSON);
    /* Not an object at the top. */
    REJECT("[1,2]", "not an object", "value is not a JSON object");
    REJECT("[", "not an object", "value is not a JSON object");
    REJECT("3", "not an object", "value is not a JSON object");
    REJECT("\"s\"", "not an object", "value is not a JSON object");
    REJECT("null", "not an object", "value is not a JSON object");
    /* Duplicate keys, at the top and nested; also a cached shape's key
     * repeated (the cache must not hide it). */
    REJECT("{\"a\":1,\"a\":2}", "duplicate key \"a\"", "value has a duplicate key");
    REJECT("{\"x\":{\"b\":1,\"c\":2,\"b\":3}}", "duplicate key \"b\"", "value has a duplicate key");
    struct spoke_row *ok = parse("{\"a\":1,\"b\":2}", NULL, 0);
    CHECK(ok != NULL);
    row_free(ok);
    REJECT("{\"a\":1,\"a\":2,\"b\":2}", "duplicate key", "value has a duplicate key");
    REJECT("{\"a\\u0000b\":1}", "U+0000", "value has a key containing U+0000");
    REJECT("{\"a\":1e400}", "out of range", "value has a number out of range");
    REJECT("{\"a\":-1e400}", "out of range", "value has a number out of range");

    /* No error buffer at all is fine too. */
    CHECK(rowjson_parse("[", 1, NULL, 0) == NULL);
    char tiny[4];
    CHECK(rowjson_parse("[", 1, tiny, sizeof(tiny)) == NULL && strlen(tiny) < 4);
}

static char *nested(int depth, const char *open, const char *inner, const char *close)
{
    size_t lo = strlen(open), li = strlen(inner), lc = strlen(close);
    char *s = malloc((size_t)depth * (lo + lc) + li + 1), *p = s;
    for (int k = 0; k < depth; k++, p += lo)
        memcpy(p, open, lo);
    memcpy(p, inner, li);
    p += li;
    for (int k = 0; k < depth; k++, p += lc)
        memcpy(p, close, lc);
    *p = '\0';
    return s;
}

static void test_parse_depth(void)
{
    char err[256];
    /* 64 levels are accepted (the top object is level 1)... */
    char *s = nested(64, "{\"a\":", "1", "}");
    struct spoke_row *r = parse(s, err, sizeof(err));
    CHECK_MSG(r != NULL, "%s", err);
    CHECK(r && round_trips(s));
    row_free(r);
    free(s);
    s = nested(63, "{\"a\":", "[]", "}");
    r = parse(s, err, sizeof(err));
    CHECK(r != NULL);
    row_free(r);
    free(s);
    /* ...65 are not. */
    s = nested(65, "{\"a\":", "1", "}");
    reject(s, strlen(s), "nesting deeper than 64", "value nests deeper than 64 levels");
    free(s);
    s = nested(64, "{\"a\":", "[]", "}");
    reject(s, strlen(s), "nesting deeper than 64", "value nests deeper than 64 levels");
    free(s);
    /* 10,000 levels, of objects and of arrays in an object: refused without
     * recursion (the stack would overflow otherwise, ASan would say so). */
    s = nested(10000, "{\"a\":", "1", "}");
    reject(s, strlen(s), "nesting deeper than 64", "value nests deeper than 64 levels");
    free(s);
    char *inner = nested(10000, "[", "", "]");
    size_t n = strlen(inner);
    s = malloc(n + 8);
    snprintf(s, n + 8, "{\"a\":%s}", inner);
    reject(s, strlen(s), "nesting deeper than 64", "value nests deeper than 64 levels");
    free(s);
    free(inner);
    /* Unclosed, 10,000 deep. */
    s = nested(10000, "{\"a\":", "", "");
    reject(s, strlen(s), "nesting deeper than 64", "value nests deeper than 64 levels");
    free(s);
}

/* Every station of the recorded Vélib' feed: parse, write, compare with
 * jansson's reading of the same object, and round-trip. */
static void test_velib_file(void)
{
    /* ../shared/data beside the checkout; the suite sets SPOKE_SOURCE_DIR. */
    const char *src = getenv("SPOKE_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof(path), "%s/../shared/data/velib/station_status-2024-11-19.json",
             src ? src : ".");
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    if (!doc) {
        printf("SKIP test_velib_file: %s not available\n", path);
        return;
    }
    json_t *stations = json_object_get(json_object_get(doc, "data"), "stations");
    CHECK(json_array_size(stations) == 1485);
    size_t i;
    json_t *st;
    int bad = 0;
    struct buf b = BUF_INIT;
    json_array_foreach(stations, i, st) {
        char *text = json_dumps(st, JSON_COMPACT);
        char err[256];
        struct spoke_row *r = rowjson_parse(text, strlen(text), err, sizeof(err));
        buf_reset(&b);
        int ok = r && rowjson_write(r, &b) == 0;
        /* Same text as jansson's compact form (integers and strings only). */
        ok = ok && strcmp(b.p, text) == 0;
        json_t *back = ok ? json_loadb(b.p, b.len, 0, NULL) : NULL;
        ok = ok && back && json_equal(back, st);
        ok = ok && round_trips(text);
        if (!ok && bad++ < 3)
            fprintf(stderr, "station %zu: %s\n", i, r ? b.p : err);
        json_decref(back);
        row_free(r);
        free(text);
    }
    CHECK(bad == 0);
    buf_free(&b);
    json_decref(doc);
}

/* ---- jansson bridge ---- */

static void test_to_from_json(void)
{
    struct spoke_schema *s = schema_new();
    schema_add(s, "i", SPOKE_TYPE_INT);
    schema_add(s, "d", SPOKE_TYPE_DOUBLE);
    schema_add(s, "nan", SPOKE_TYPE_DOUBLE);
    schema_add(s, "s", SPOKE_TYPE_STRING);
    schema_add(s, "t", SPOKE_TYPE_TIMESTAMP);
    schema_add(s, "b", SPOKE_TYPE_BOOL);
    schema_add(s, "n", SPOKE_TYPE_NULL);
    schema_add(s, "l", SPOKE_TYPE_LIST);
    schema_add(s, "m", SPOKE_TYPE_MAP);
    struct spoke_row *row = row_new(s);
    schema_unref(s);
    row_set_int(row, 0, 7);
    row_set_double(row, 1, 0.5);
    row_set_double(row, 2, NAN);
    row_set_string(row, 3, "a\0b", 3);
    row_set_timestamp(row, 4, 0);
    row_set_bool(row, 5, 1);
    struct spoke_row *l = row_new_list(2);
    row_set_int(l, 0, 1);
    row_set_string(l, 1, "x", 1);
    row_set_row(row, 7, l);
    struct spoke_schema *ms = schema_new();
    schema_add(ms, "k", SPOKE_TYPE_BOOL);
    struct spoke_row *m = row_new(ms);
    schema_unref(ms);
    row_set_bool(m, 0, 0);
    row_set_row(row, 8, m);

    json_t *j = rowjson_to_json(row);
    CHECK(j && json_is_object(j));
    json_t *want = json_loads("{\"i\":7,\"d\":0.5,\"nan\":null,\"s\":\"a\\u0000b\","
                              "\"t\":\"1970-01-01T00:00:00.000Z\",\"b\":true,\"n\":null,"
                              "\"l\":[1,\"x\"],\"m\":{\"k\":false}}", JSON_ALLOW_NUL, NULL);
    CHECK(want != NULL);
    CHECK(json_equal(j, want));
    /* Key order follows the schema. */
    CHECK(strcmp(json_object_iter_key(json_object_iter(j)), "i") == 0);

    struct spoke_row *back = rowjson_from_json(j);
    CHECK(back != NULL);
    CHECK(row_get_int(back, 0) == 7);
    CHECK(row_type(back, 1) == SPOKE_TYPE_DOUBLE);
    CHECK(row_type(back, 2) == SPOKE_TYPE_NULL);
    size_t len;
    CHECK(row_get_string(back, 3, &len) && len == 3);
    CHECK(row_type(back, 4) == SPOKE_TYPE_STRING);  /* a timestamp comes back as its text */
    CHECK(row_get_bool(back, 5) == 1);
    CHECK(row_type(back, 7) == SPOKE_TYPE_LIST && row_count(row_get_row(back, 7)) == 2);
    CHECK(row_type(back, 8) == SPOKE_TYPE_MAP);
    CHECK_STR(schema_name(row_schema(back), 8), "m");
    CHECK_STR(w(back), "{\"i\":7,\"d\":0.5,\"nan\":null,\"s\":\"a\\u0000b\","
                       "\"t\":\"1970-01-01T00:00:00.000Z\",\"b\":true,\"n\":null,"
                       "\"l\":[1,\"x\"],\"m\":{\"k\":false}}");

    /* Not an object: NULL. */
    json_t *arr = json_array();
    CHECK(rowjson_from_json(arr) == NULL);
    CHECK(rowjson_from_json(NULL) == NULL);
    json_t *num = json_integer(1);
    CHECK(rowjson_from_json(num) == NULL);
    /* A list row becomes an array. */
    json_t *jl = rowjson_to_json(l);
    CHECK(jl && json_is_array(jl) && json_array_size(jl) == 2);
    json_decref(jl);
    json_decref(num);
    json_decref(arr);
    json_decref(want);
    json_decref(j);
    row_free(back);
    row_free(row);
}

/* ---- threads ---- */

static void *parse_worker(void *arg)
{
    int *ok = arg;
    *ok = 1;
    for (int k = 0; k < 2000; k++) {
        char json[128];
        snprintf(json, sizeof(json), "{\"id\":%d,\"name\":\"n%d\",\"l\":[{\"x\":%d}]}", k, k, k);
        struct spoke_row *r = rowjson_parse(json, strlen(json), NULL, 0);
        if (!r || row_get_int(r, 0) != k)
            *ok = 0;
        row_free(r);
    }
    return NULL;
}

/* Two threads parse at once with their own state; when they exit, their
 * state (and cached schemas) is released (LeakSanitizer checks). */
static void test_threads(void)
{
    pthread_t t[2];
    int ok[2] = { 0, 0 };
    for (int k = 0; k < 2; k++)
        CHECK(pthread_create(&t[k], NULL, parse_worker, &ok[k]) == 0);
    for (int k = 0; k < 2; k++)
        pthread_join(t[k], NULL);
    CHECK(ok[0] && ok[1]);
}

int main(void)
{
    RUN(test_write_types);
    RUN(test_write_ints);
    RUN(test_write_doubles);
    RUN(test_double_round_trip);
    RUN(test_write_timestamps);
    RUN(test_timestamp_cache);
    RUN(test_write_strings);
    RUN(test_parse_velib);
    RUN(test_parse_values);
    RUN(test_parse_rejects);
    RUN(test_parse_depth);
    RUN(test_velib_file);
    RUN(test_to_from_json);
    RUN(test_threads);
    buf_free(&wbuf);
    return TEST_REPORT();
}
