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

/* The compact JSON of a parse's outcome: the document, or the error. */
static void outcome(int rc, const struct sj_value *root, const char *err, char *out, size_t size)
{
    if (rc != 0) {
        snprintf(out, size, "error: %s", err);
        return;
    }
    size_t n = sj_to_json(root, out, size - 1);
    out[n < size - 1 ? n : 0] = '\0';
}

/* sj_parse_padded parses in place when the buffer has SJ_PADDING to spare,
 * and then gives exactly what sj_parse gives: the same document for valid
 * input, the same error for every malformed class and limit. The padding
 * holds bytes that would change the document if they were read as part of
 * it; the values do not point into the buffer. */
static void padded_equals_copy(void)
{
    static const char *const docs[] = {
        velib, "{\"a\":1", "{\"a\":1} x", "{\"a\":tru}", "{\"a\":01}", "{\"a\":1.}",
        "{\"a\":\"\xff\"}", "", "   ", "[[[[[[[[]]]]]]]]", "[[[[[[[[[]]]]]]]]]", "1", "-1.5e3",
        "true", "nul", "\"abc", "\"abc\"", "[1,2,3", "{\"k\":[1,{\"x\":null}]}",
        "{\"s\":\"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghij\"}", "[1,2,3,]",
    };
    /* Limits: 300 bytes, 8 levels (the 9-deep array above is refused). */
    struct sj_parser *a = sj_parser_new(300, 8), *b = sj_parser_new(300, 8);
    char err_a[128], err_b[128], out_a[512], out_b[512];
    struct sj_value ra, rb;
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        size_t len = strlen(docs[i]);
        for (int fill = 0; fill < 3; fill++) {
            char *buf = malloc(len + SJ_PADDING);
            memcpy(buf, docs[i], len);
            memset(buf + len, fill == 0 ? '\0' : fill == 1 ? '1' : '"', SJ_PADDING);
            int rca = sj_parse(a, docs[i], len, &ra, err_a, sizeof(err_a));
            int rcb = sj_parse_padded(b, buf, len, len + SJ_PADDING, &rb, err_b, sizeof(err_b));
            memset(buf, 'x', len + SJ_PADDING);  /* values must not point into buf */
            free(buf);
            outcome(rca, &ra, err_a, out_a, sizeof(out_a));
            outcome(rcb, &rb, err_b, out_b, sizeof(out_b));
            CHECK_MSG(rca == rcb && strcmp(out_a, out_b) == 0, "doc %zu fill %d: %s / %s", i,
                      fill, out_a, out_b);
        }
    }
    /* A document exactly at the size limit, in place; one byte over it. */
    char doc[301 + SJ_PADDING];
    memset(doc, ' ', sizeof(doc));
    doc[0] = '[';
    doc[299] = ']';
    memset(doc + 300, '1', sizeof(doc) - 300);
    CHECK(sj_parse_padded(b, doc, 300, sizeof(doc), &rb, err_b, sizeof(err_b)) == 0 &&
          sj_type(&rb) == SJ_ARRAY && sj_count(&rb) == 0);
    doc[299] = ' ';
    doc[300] = ']';
    CHECK(sj_parse_padded(b, doc, 301, sizeof(doc), &rb, err_b, sizeof(err_b)) == -1 &&
          CONTAINS(err_b, "larger than the limit 300"));
    CHECK(sj_parse(a, doc, 301, &ra, err_a, sizeof(err_a)) == -1 && strcmp(err_a, err_b) == 0);
    /* Without room for the padding it copies, with the same result. */
    doc[300] = ' ';
    doc[299] = ']';
    CHECK(sj_parse_padded(b, doc, 300, 300 + SJ_PADDING - 1, &rb, err_b, sizeof(err_b)) == 0 &&
          sj_type(&rb) == SJ_ARRAY);
    CHECK(sj_parse_padded(b, NULL, 0, 0, &rb, err_b, sizeof(err_b)) == -1 &&
          CONTAINS(err_b, "empty document"));
    sj_parser_free(a);
    sj_parser_free(b);
}

/* sj_next_n gives what sj_object_next / sj_array_next give one by one,
 * whatever the batch size, with the scalars decoded. */
/* sj_next_n reads simdjson's tape itself: every kind of value, containers
 * in the middle (skipped whole), empty ones, in objects and arrays. */
static const char mixed[] =
    "{\"f\":false,\"e\":{},\"ea\":[],\"nest\":{\"a\":[1,{\"b\":null}],\"c\":\"\u00e9\"},"
    "\"neg\":-5,\"big\":1e300,\"u\":18446744073709551615,\"s\":\"x\\\"y\",\"t\":true,"
    "\"arr\":[false,{},[],{\"a\":[1,{\"b\":null}]},-5,1e300,\"\u00e9\",null,[[1],2]]}";

static void next_n_equals_next(void)
{
    char err[128];
    struct sj_parser *p = sj_parser_new(1 << 20, 64);
    struct sj_value root, arr, v;
    CHECK(sj_parse(p, velib, sizeof(velib) - 1, &root, err, sizeof(err)) == 0);
    CHECK(sj_object_get(&root, "num_bikes_available_types", 25, &arr) == 0);
    struct sj_parser *p2 = sj_parser_new(1 << 20, 64);
    struct sj_value root2, arr2;
    int prc = sj_parse(p2, mixed, sizeof(mixed) - 1, &root2, err, sizeof(err));
    CHECK_MSG(prc == 0, "%s", err);
    CHECK(sj_object_get(&root2, "arr", 3, &arr2) == 0);
    static const size_t chunks[] = { 1, 3, 10, 100 };
    for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
        for (int which = 0; which < 4; which++) {
            const struct sj_value *of = which == 0 ? &root : which == 1 ? &arr
                                      : which == 2 ? &root2 : &arr2;
            static const size_t totals[] = { 10, 2, 10, 9 };
            struct sj_iter one, many;
            struct sj_member m[100];
            size_t total = 0, n;
            int is_arr = which & 1;
            CHECK((is_arr ? sj_array_iter(of, &one) : sj_object_iter(of, &one)) == 0);
            CHECK((is_arr ? sj_array_iter(of, &many) : sj_object_iter(of, &many)) == 0);
            while ((n = sj_next_n(&many, m, chunks[c])) > 0) {
                CHECK(n <= chunks[c]);
                for (size_t k = 0; k < n; k++, total++) {
                    const char *key = NULL;
                    size_t klen = 0;
                    int got = is_arr ? sj_array_next(&one, &v)
                                     : sj_object_next(&one, &key, &klen, &v);
                    CHECK(got == 1);
                    CHECK(m[k].klen == klen && (klen == 0 || memcmp(m[k].key, key, klen) == 0));
                    CHECK(!is_arr || m[k].key == NULL);
                    CHECK(m[k].type == sj_type(&v) && sj_type(&m[k].v) == sj_type(&v));
                    char a[256], b[256];
                    size_t la = sj_to_json(&m[k].v, a, sizeof(a));
                    size_t lb = sj_to_json(&v, b, sizeof(b));
                    CHECK(la == lb && la <= sizeof(a) && memcmp(a, b, la) == 0);
                    int64_t i;
                    uint64_t u;
                    double d;
                    int bo;
                    const char *s;
                    size_t sl;
                    switch (m[k].type) {
                    case SJ_INT: CHECK(sj_get_int64(&v, &i) == 0 && m[k].as.i == i); break;
                    case SJ_UINT: CHECK(sj_get_uint64(&v, &u) == 0 && m[k].as.u == u); break;
                    case SJ_DOUBLE: CHECK(sj_get_double(&v, &d) == 0 && m[k].as.d == d); break;
                    case SJ_BOOL: CHECK(sj_get_bool(&v, &bo) == 0 && m[k].as.b == bo); break;
                    case SJ_STRING:
                        CHECK(sj_get_string(&v, &s, &sl) == 0 && m[k].as.s.len == sl &&
                              memcmp(m[k].as.s.p, s, sl) == 0);
                        break;
                    default: break;
                    }
                }
            }
            CHECK_MSG(total == totals[which], "%zu members, not %zu", total, totals[which]);
            CHECK((is_arr ? sj_array_next(&one, &v) : sj_object_next(&one, NULL, NULL, &v)) == 0);
            CHECK(sj_next_n(&many, m, 5) == 0);
        }
    }
    sj_parser_free(p);
    sj_parser_free(p2);
}

/* sj_parser_usage reads the tape right: entries counted, every string's
 * bytes (keys too: 4-byte length, bytes, NUL), and a number's value never
 * taken for an entry, even one whose top byte is '"' (2^-479 and
 * 0x2200000000000001: read as a string, its offset would point far out of
 * the buffer). After a failed parse there is nothing to report. A parser
 * warmed with a usage parses the same document with the same usage. */
static void usage_follows_the_tape(void)
{
    static const char doc[] =
        "{\"ab\":\"cde\",\"n\":12,\"d\":1.6263032587282567e-144,"
        "\"arr\":[2449958197289549825,\"x\"]}";
    char err[128];
    struct sj_parser *p = sj_parser_new(1 << 20, 64);
    struct sj_value root;
    struct sj_usage u, w;
    int rc = sj_parse(p, doc, sizeof(doc) - 1, &root, err, sizeof(err));
    CHECK_MSG(rc == 0, "%s", err);
    sj_parser_usage(p, &u);
    /* r { "ab" "cde" "n" l+12 "d" d+v "arr" [ l+v "x" ] } r */
    CHECK_MSG(u.tape == 18 * 8, "tape %zu", u.tape);
    CHECK_MSG(u.strings == (4 + 2 + 1) + (4 + 3 + 1) + (4 + 1 + 1) * 3 + (4 + 3 + 1),
              "strings %zu", u.strings);
    CHECK(u.doc == sizeof(doc) - 1);
    CHECK(u.structurals >= 17 * 4);  /* { : , ... the 17 structural characters at least */
    CHECK(sj_parse(p, "{\"a\":", 5, &root, err, sizeof(err)) == -1);
    sj_parser_usage(p, &w);
    CHECK(w.doc == 0 && w.tape == 0 && w.strings == 0 && w.structurals == 0);
    sj_parser_free(p);

    p = sj_parser_new(1 << 20, 64);
    CHECK(sj_parser_warm(p, &u) == 0);
    rc = sj_parse(p, doc, sizeof(doc) - 1, &root, err, sizeof(err));
    CHECK_MSG(rc == 0, "%s", err);
    sj_parser_usage(p, &w);
    CHECK(w.doc == u.doc && w.tape == u.tape && w.strings == u.strings &&
          w.structurals == u.structurals);
    sj_parser_free(p);
    /* A usage larger than the parser's limit is warmed up to the limit. */
    p = sj_parser_new(4096, 64);
    struct sj_usage big = { 1 << 20, 1 << 22, 1 << 23, 1 << 21 };
    CHECK(sj_parser_warm(p, &big) == 0);
    CHECK(sj_parse(p, doc, sizeof(doc) - 1, &root, err, sizeof(err)) == 0);
    sj_parser_free(p);
}

int main(void)
{
    RUN(reads_values);
    RUN(rejects_malformed);
    RUN(padded_equals_copy);
    RUN(next_n_equals_next);
    RUN(usage_follows_the_tape);
    return TEST_REPORT();
}
