/* unit-sjson: the simdjson shim reads values and rejects malformed input
 * completely (nothing is half-read). */
#include <stdlib.h>

#include "sjson.h"
#include "test.h"

static const char velib[] =
    "{\"station_id\":213688169,\"stationCode\":\"16107\",\"num_bikes_available\":1,"
    "\"num_bikes_available_types\":[{\"mechanical\":1},{\"ebike\":0}],"
    "\"is_installed\":1,\"last_reported\":1732001704,\"ratio\":0.25,\"ok\":true,\"none\":null,"
    "\"big\":18446744073709551615}";

static void reads_values(void)
{
    char err[128];
    struct sj_parser *p = sj_parser_new(1 << 20, 64);
    struct sj_value root, v, e;
    int prc = sj_parse(p, velib, sizeof(velib) - 1, &root, err, sizeof(err));
    CHECK_MSG(prc == 0, "%s", err);
    if (prc != 0) {
        sj_parser_free(p);
        return;
    }
    CHECK(sj_type(&root) == SJ_OBJECT);
    CHECK(sj_count(&root) == 10);
    int64_t i;
    CHECK(sj_object_get(&root, "station_id", 10, &v) == 0 && sj_get_int64(&v, &i) == 0 &&
          i == 213688169);
    const char *s;
    size_t n;
    CHECK(sj_object_get(&root, "stationCode", 11, &v) == 0 && sj_get_string(&v, &s, &n) == 0 &&
          n == 5 && memcmp(s, "16107", 5) == 0);
    CHECK(sj_get_int64(&v, &i) == -1); /* wrong type */
    double d;
    CHECK(sj_object_get(&root, "ratio", 5, &v) == 0 && sj_get_double(&v, &d) == 0 && d == 0.25);
    CHECK(sj_object_get(&root, "last_reported", 13, &v) == 0 && sj_get_double(&v, &d) == 0 &&
          d == 1732001704.0);
    int b;
    CHECK(sj_object_get(&root, "ok", 2, &v) == 0 && sj_get_bool(&v, &b) == 0 && b == 1);
    CHECK(sj_object_get(&root, "none", 4, &v) == 0 && sj_type(&v) == SJ_NULL);
    uint64_t u;
    CHECK(sj_object_get(&root, "big", 3, &v) == 0 && sj_type(&v) == SJ_UINT &&
          sj_get_uint64(&v, &u) == 0 && u == UINT64_MAX && sj_get_int64(&v, &i) == -1);
    CHECK(sj_object_get(&root, "missing", 7, &v) == -1);
    /* Array of one-key objects, iterated. */
    CHECK(sj_object_get(&root, "num_bikes_available_types", 25, &v) == 0);
    CHECK(sj_type(&v) == SJ_ARRAY && sj_count(&v) == 2);
    struct sj_iter it, oit;
    CHECK(sj_array_iter(&v, &it) == 0);
    int seen = 0;
    while (sj_array_next(&it, &e)) {
        const char *k;
        size_t kl;
        struct sj_value val;
        CHECK(sj_object_iter(&e, &oit) == 0);
        CHECK(sj_object_next(&oit, &k, &kl, &val) == 1);
        CHECK(sj_get_int64(&val, &i) == 0);
        if (seen == 0)
            CHECK(kl == 10 && memcmp(k, "mechanical", 10) == 0 && i == 1);
        else
            CHECK(kl == 5 && memcmp(k, "ebike", 5) == 0 && i == 0);
        CHECK(sj_object_next(&oit, &k, &kl, &val) == 0);
        seen++;
    }
    CHECK(seen == 2);
    CHECK(sj_array_iter(&root, &it) == -1);
    char out[64];
    CHECK(sj_to_json(&e, out, sizeof(out)) == 11 && memcmp(out, "{\"ebike\":0}", 11) == 0);
    sj_parser_free(p);
}

static void rejects_malformed(void)
{
    struct { const char *text; const char *why; } bad[] = {
        { "{\"a\":1", "invalid JSON" },             /* truncated */
        { "{\"a\":1} x", "invalid JSON" },          /* trailing garbage */
        { "{\"a\":tru}", "invalid JSON" },          /* bad literal */
        { "{\"a\":01}", "invalid JSON" },           /* bad number */
        { "{\"a\":1.}", "invalid JSON" },
        { "{\"a\":\"\xff\"}", "invalid UTF-8" },    /* invalid UTF-8 */
        { "", "empty document" },
    };
    char err[128];
    struct sj_parser *p = sj_parser_new(1 << 20, 64);
    struct sj_value root;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        int rc = sj_parse(p, bad[i].text, strlen(bad[i].text), &root, err, sizeof(err));
        CHECK_MSG(rc == -1 && CONTAINS(err, bad[i].why), "case %zu: %s", i, err);
    }
    /* 10,000-deep nesting refused by the depth limit, not the stack. */
    size_t deep = 10000;
    char *s = malloc(2 * deep + 1);
    memset(s, '[', deep);
    memset(s + deep, ']', deep);
    CHECK(sj_parse(p, s, 2 * deep, &root, err, sizeof(err)) == -1 && CONTAINS(err, "deeper than 64"));
    free(s);
    /* Over the size limit. */
    struct sj_parser *small = sj_parser_new(16, 64);
    CHECK(sj_parse(small, velib, sizeof(velib) - 1, &root, err, sizeof(err)) == -1 &&
          CONTAINS(err, "larger than the limit 16"));
    sj_parser_free(small);
    /* The parser is reusable after errors, and grows for large documents. */
    size_t big = 5 << 20;
    char *doc = malloc(big + 32);
    size_t len = (size_t)sprintf(doc, "{\"s\":\"");
    memset(doc + len, 'x', big);
    len += big;
    len += (size_t)sprintf(doc + len, "\"}");
    struct sj_parser *large = sj_parser_new(10 << 20, 64);
    CHECK(sj_parse(large, doc, len, &root, err, sizeof(err)) == 0);
    struct sj_value v;
    const char *str;
    size_t n;
    CHECK(sj_object_get(&root, "s", 1, &v) == 0 && sj_get_string(&v, &str, &n) == 0 && n == big);
    CHECK(sj_parse(large, velib, sizeof(velib) - 1, &root, err, sizeof(err)) == 0);
    free(doc);
    sj_parser_free(large);
    sj_parser_free(p);
}

int main(void)
{
    RUN(reads_values);
    RUN(rejects_malformed);
    return TEST_REPORT();
}
