/* unit-schema_mapper_core: the schema_mapper plugin's internals, compiled in.
 *
 *  - the single-pass extractor against simdjson on a conformance list and on
 *    randomly mutated documents (both must accept and reject the same bytes);
 *  - path semantics (a.b, [n], [*], [?k], quoted names, null, mismatches)
 *    through the three input paths: extractor, simdjson, and rows;
 *  - coercions, timestamps, expressions, CSV splitting, lookups, filters;
 *  - schema errors name file:line:col and the field;
 *  - row input: per-schema plans (alternating and reused schemas), and the
 *    coercions of typed row values.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../plugins/schema_mapper/schema_mapper_expr.c"
#include "../../plugins/schema_mapper/schema_mapper_json.c"
#include "../../plugins/schema_mapper/schema_mapper_map.c"
#include "../../plugins/schema_mapper/schema_mapper_schema.c"
#include "../../plugins/schema_mapper/schema_mapper_value.c"
#include "../../plugins/schema_mapper/schema_mapper_walk.c"

#include "instance.h"
#include "record.h"
#include "test.h"

static char tmpdir[] = "/tmp/spoke-smcore-XXXXXX";

static const char *tmpfile_with(const char *name, const char *text)
{
    static char path[4][512];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return p;
}

/* The host table mappers are made with: api_table, or a copy cut short
 * to look like an older host's. */
static const struct spoke_host_api *mk_api = &api_table;

static struct sm_mapper *mk_opts(const char *yaml, struct sm_opts *o, char *err, size_t errsz)
{
    o->schema_file = tmpfile_with("schema.yaml", yaml);
    if (!o->max_depth)
        o->max_depth = 64;
    if (!o->max_bytes)
        o->max_bytes = 1 << 20;
    return sm_mapper_new(mk_api, o, err, errsz);
}

static struct sm_mapper *mk(const char *yaml, const char *parser)
{
    struct sm_opts o = { .parser = parser };
    char err[256];
    struct sm_mapper *m = mk_opts(yaml, &o, err, sizeof(err));
    CHECK_MSG(m != NULL, "schema refused: %s", err);
    return m;
}

/* Maps text and writes the row as JSON (or "ERR: reason" / "DROP"). */
static const char *map_text(struct sm_mapper *m, const char *json, size_t len)
{
    static char out[4096];
    static struct buf b;
    char err[256];
    int rc = sm_map_bytes(m, json, len, NULL, err, sizeof(err));
    if (rc == SPOKE_DROP)
        return "DROP";
    if (rc != SPOKE_OK) {
        snprintf(out, sizeof(out), "ERR: %s", err);
        return out;
    }
    struct spoke_row *row = sm_build_row(m);
    buf_reset(&b);
    rowjson_write(row, &b);
    snprintf(out, sizeof(out), "%.*s", (int)b.len, b.p);
    row_free(row);
    return out;
}

static const char *map_row(struct sm_mapper *m, const char *json)
{
    static char out[4096];
    static struct buf b;
    char err[256];
    struct spoke_row *in = rowjson_parse(json, strlen(json), err, sizeof(err));
    if (!in) {
        snprintf(out, sizeof(out), "ERR: (row) %s", err);
        return out;
    }
    int rc = sm_map_row(m, in, NULL, err, sizeof(err));
    if (rc == SPOKE_DROP) {
        row_free(in);
        return "DROP";
    }
    if (rc != SPOKE_OK) {
        row_free(in);
        snprintf(out, sizeof(out), "ERR: %s", err);
        return out;
    }
    struct spoke_row *row = sm_build_row(m);
    row_free(in);
    buf_reset(&b);
    rowjson_write(row, &b);
    snprintf(out, sizeof(out), "%.*s", (int)b.len, b.p);
    row_free(row);
    return out;
}

/* Maps json through the extractor, simdjson and (unless no_row) rows;
 * all three must give want (exactly, or the prefix of an error). */
static void expect3(const char *yaml, const char *json, const char *want, int no_row)
{
    struct sm_mapper *mx = mk(yaml, "extractor"), *ms = mk(yaml, "simdjson");
    if (!mx || !ms) {
        sm_mapper_free(mx);
        sm_mapper_free(ms);
        return;
    }
    const char *paths[3] = { "extractor", "simdjson", "row" };
    for (int k = 0; k < (no_row ? 2 : 3); k++) {
        char got[4096];
        snprintf(got, sizeof(got), "%s", k == 0 ? map_text(mx, json, strlen(json))
                                       : k == 1 ? map_text(ms, json, strlen(json))
                                                : map_row(mx, json));
        int ok = strncmp(want, "ERR:", 4) == 0 ? strncmp(got, want, strlen(want)) == 0
                                                : strcmp(got, want) == 0;
        CHECK_MSG(ok, "%s on %s:\n    got  %s\n    want %s", paths[k], json, got, want);
    }
    sm_mapper_free(mx);
    sm_mapper_free(ms);
}

/* ------------------------------------------------------------------------ */

static void conformance(void)
{
    static const char *const valid[] = {
        "{}", "[]", "0", "-0", "1.5e10", "-1E-2", "1e+2", "\"\"", "true", "false", "null",
        " \t\r\n{ \"a\" : [ 1 , 2 ] } \n", "{\"a\":{\"b\":{\"c\":[[[]]]}}}",
        "\"\\u00e9\\ud83d\\ude00\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
        "{\"a\":1,\"a\":2}", "[1,\"x\",null,true,{\"k\":[]}]", "123456789012345678",
        "\"\x7f\"", "{\"\":0}", "-123.456e-7",
    };
    static const char *const invalid[] = {
        "", " ", "{", "}", "[", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]", "[,1]", "{a:1}",
        "{'a':1}", "01", "-", "1.", ".5", "1e", "1e+", "+1", "0x10", "NaN", "Infinity",
        "tru", "truee", "nul", "nulll", "fals", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"",
        "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\x01\"", "\"\xff\"", "\"\xc0\xaf\"",
        "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xe2\x82\"", "{} x", "[] []", "1 2",
        "{\"a\":1}}", "[1]]", "\"a\"\"b\"", "{\"a\" 1}", "{\"a\":1 \"b\":2}", "[1 2]",
        "\xef\xbb\xbf{}", "{\"a\":[1,2}", "{\"a\":{]}", "[\"\n\"]", "-01", "1.e5", "[-]",
    };
    struct sj_parser *sj = sj_parser_new(1 << 20, 64);
    char err[256], serr[256];
    struct sj_value root;
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        int rc = sm_json_validate(valid[i], strlen(valid[i]), 64, err, sizeof(err));
        CHECK_MSG(rc == 0, "valid JSON refused: %s -> %s", valid[i], err);
        CHECK_MSG(sj_parse(sj, valid[i], strlen(valid[i]), &root, serr, sizeof(serr)) == 0,
                  "simdjson refused %s: %s", valid[i], serr);
    }
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        int rc = sm_json_validate(invalid[i], strlen(invalid[i]), 64, err, sizeof(err));
        CHECK_MSG(rc < 0, "invalid JSON accepted: %s", invalid[i]);
        CHECK_MSG(sj_parse(sj, invalid[i], strlen(invalid[i]), &root, serr, sizeof(serr)) != 0,
                  "simdjson accepted %s", invalid[i]);
    }
    /* Depth: 64 levels pass, 65 do not; 10,000 cost nothing but the error. */
    char deep[20001];
    for (int d = 63; d <= 65; d++) {
        memset(deep, '[', (size_t)d);
        memset(deep + d, ']', (size_t)d);
        int rc = sm_json_validate(deep, (size_t)(2 * d), 64, err, sizeof(err));
        CHECK_MSG((rc == 0) == (d <= 64), "depth %d: rc %d (%s)", d, rc, err);
    }
    memset(deep, '[', 10000);
    memset(deep + 10000, ']', 10000);
    CHECK(sm_json_validate(deep, 20000, 64, err, sizeof(err)) < 0 &&
          CONTAINS(err, "nesting deeper than 64"));
    /* Messages name the byte and the class. */
    sm_json_validate("{\"a\":1", 6, 64, err, sizeof(err));
    CHECK_STR(err, "invalid JSON at byte 6: unexpected end of input (truncated)");
    sm_json_validate("{\"a\":1} x", 9, 64, err, sizeof(err));
    CHECK_STR(err, "invalid JSON at byte 8: trailing characters after the JSON value");
    sm_json_validate("{\"a\":tru}", 9, 64, err, sizeof(err));
    CHECK_STR(err, "invalid JSON at byte 5: invalid literal");
    sm_json_validate("{\"a\":01}", 8, 64, err, sizeof(err));
    CHECK_STR(err, "invalid JSON at byte 5: invalid number (leading zero)");
    sm_json_validate("{\"a\":\"\xff\"}", 9, 64, err, sizeof(err));
    CHECK_STR(err, "invalid JSON at byte 6: invalid UTF-8 in a string");
    sj_parser_free(sj);
}

static uint64_t rng = 88172645463325252ull;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

/* Random edits of valid documents: both parsers must agree on every one
 * (except numbers simdjson cannot represent: RFC 8259 allows them). */
static void fuzz_against_simdjson(void)
{
    static const char *const seeds[] = {
        "{\"station_id\":213688169,\"stationCode\":\"16107\",\"num_bikes_available_types\":"
        "[{\"mechanical\":1},{\"ebike\":0}],\"is_installed\":1,\"lat\":48.865983,\"x\":null,"
        "\"ok\":true,\"s\":\"caf\\u00e9 \\\"q\\\" \xc3\xa9\xe2\x82\xac\"}",
        "[1,-2.5e-3,\"a\\nb\",{\"k\":[true,false,null]},[[]],{}]",
        "{\"a\":{\"b\":{\"c\":\"\\ud83d\\ude00\"}},\"d\":[0,1e5,-0.0]}",
    };
    const char alphabet[] = "{}[]\",:\\-+.eE0123456789tfnul \t\n\x01\x7f\xc3\xa9\xed\xa0\xff";
    struct sj_parser *sj = sj_parser_new(1 << 20, 1024);
    char doc[1024], err[256], serr[256];
    struct sj_value root;
    int agree = 0, numdiv = 0, disagree = 0;
    for (int it = 0; it < 200000; it++) {
        const char *seed = seeds[rnd(3)];
        size_t n = strlen(seed);
        memcpy(doc, seed, n);
        int edits = 1 + (int)rnd(3);
        for (int e = 0; e < edits; e++) {
            unsigned op = rnd(4), pos = n ? rnd((unsigned)n) : 0;
            char c = alphabet[rnd(sizeof(alphabet) - 1)];
            if (op == 0 && n) {
                doc[pos] = c;
            } else if (op == 1 && n < sizeof(doc) - 1) {
                memmove(doc + pos + 1, doc + pos, n - pos);
                doc[pos] = c;
                n++;
            } else if (op == 2 && n) {
                memmove(doc + pos, doc + pos + 1, n - pos - 1);
                n--;
            } else {
                n = pos;
            }
        }
        int a = sm_json_validate(doc, n, 1024, err, sizeof(err)) == 0;
        int b = sj_parse(sj, doc, n, &root, serr, sizeof(serr)) == 0;
        if (a == b) {
            agree++;
        } else if (a && !b && (strstr(serr, "number") || strstr(serr, "NUMBER") ||
                               strstr(serr, "BIGINT"))) {
            numdiv++;
        } else {
            if (disagree++ < 10)
                fprintf(stderr, "disagreement (extractor %s, simdjson %s): %.*s\n  %s\n  %s\n",
                        a ? "accepts" : "rejects", b ? "accepts" : "rejects", (int)n, doc,
                        a ? "" : err, b ? "" : serr);
        }
    }
    fprintf(stderr, "fuzz: %d agree, %d number-range differences, %d disagreements\n", agree,
            numdiv, disagree);
    CHECK(disagree == 0);
    CHECK(agree > 190000);
    sj_parser_free(sj);
}

static const char paths_schema[] =
    "fields:\n"
    "  - {name: a, type: long}\n"
    "  - {name: s, type: string, path: o.s}\n"
    "  - {name: second, type: long, path: \"arr[1]\"}\n"
    "  - {name: all, type: list, items: long, path: arr}\n"
    "  - {name: names, type: list, path: \"objs[*].n\"}\n"
    "  - {name: sel, type: long, path: \"kv[?b]\"}\n"
    "  - {name: deep, type: string, path: \"x.y[0].z\"}\n"
    "  - {name: quoted, type: string, path: 'q[\"a.b\"]'}\n"
    "  - {name: raw, type: string, path: o, stringify: true}\n";

static void paths(void)
{
    expect3(paths_schema,
            "{\"a\":1,\"o\":{\"s\":\"x\",\"t\":2},\"arr\":[10,20,30],\"objs\":[{\"n\":\"p\"},"
            "{\"m\":1},{\"n\":7}],\"kv\":[{\"a\":1},{\"b\":2},{\"b\":3}],\"x\":{\"y\":[{\"z\":"
            "\"deep\"}]},\"q\":{\"a.b\":\"dot\"},\"extra\":[1,{\"z\":[]}]}",
            "{\"a\":1,\"s\":\"x\",\"second\":20,\"all\":[10,20,30],\"names\":[\"p\",7],"
            "\"sel\":2,\"deep\":\"deep\",\"quoted\":\"dot\",\"raw\":\"{\\\"s\\\":\\\"x\\\","
            "\\\"t\\\":2}\"}", 0);
    /* Missing pieces are null; an empty array is an empty list. */
    expect3(paths_schema, "{\"arr\":[],\"objs\":[]}",
            "{\"a\":null,\"s\":null,\"second\":null,\"all\":[],\"names\":[],\"sel\":null,"
            "\"deep\":null,\"quoted\":null,\"raw\":null}", 0);
    /* null on the way is null, not an error. */
    expect3(paths_schema, "{\"o\":null,\"arr\":null,\"kv\":[null,{\"b\":null}],\"x\":{\"y\":null}}",
            "{\"a\":null,\"s\":null,\"second\":null,\"all\":null,\"names\":null,\"sel\":null,"
            "\"deep\":null,\"quoted\":null,\"raw\":null}", 0);
    /* Structure mismatches. */
    expect3(paths_schema, "{\"o\":\"str\"}", "ERR: o: expected an object, got string", 0);
    expect3(paths_schema, "{\"arr\":{\"k\":1}}", "ERR: arr: expected an array, got object", 0);
    expect3(paths_schema, "{\"kv\":[1]}", "ERR: kv[?]: expected an object element, got number", 0);
    /* Wrong types. */
    expect3(paths_schema, "{\"a\":\"x1\"}", "ERR: a: expected long, got string \"x1\"", 0);
    expect3(paths_schema, "{\"arr\":[1,2,\"b\"]}",
            "ERR: all (arr): element 2: expected long, got string \"b\"", 0);
    expect3(paths_schema, "{\"a\":1.5}", "ERR: a: expected long, got number 1.5 (not a whole number)", 0);
    /* Duplicate keys: the first wins (rows cannot hold duplicates). */
    expect3("fields:\n  - {name: a, type: long}\n  - {name: b, type: long, path: o.b}\n",
            "{\"a\":1,\"a\":2,\"o\":{\"b\":3},\"o\":{\"b\":4}}", "{\"a\":1,\"b\":3}", 1);
    /* [?k] over one-key objects, as in the Vélib' feed. */
    expect3("fields:\n"
            "  - {name: mechanical, type: int, path: \"t[?mechanical]\"}\n"
            "  - {name: ebike, type: int, path: \"t[?ebike]\"}\n",
            "{\"t\":[{\"mechanical\":3},{\"ebike\":4}]}", "{\"mechanical\":3,\"ebike\":4}", 0);
    expect3("fields:\n"
            "  - {name: mechanical, type: int, path: \"t[?mechanical]\"}\n"
            "  - {name: ebike, type: int, path: \"t[?ebike]\"}\n",
            "{\"t\":[{\"ebike\":4}]}", "{\"mechanical\":null,\"ebike\":4}", 0);
    /* Nested wildcards flatten in document order; a[0] and a[*] together. */
    expect3("fields:\n"
            "  - {name: all, type: list, path: \"g[*].t[*].n\"}\n"
            "  - {name: first, type: string, path: \"g[0].t[0].n\"}\n"
            "  - {name: firsts, type: list, items: string, path: \"g[*].t[0].n\"}\n",
            "{\"g\":[{\"t\":[{\"n\":\"a\"},{\"n\":\"b\"}]},{\"t\":[]},{\"t\":[{\"n\":\"c\"}]}]}",
            "{\"all\":[\"a\",\"b\",\"c\"],\"first\":\"a\",\"firsts\":[\"a\",\"c\"]}", 0);
    /* Escaped keys and strings. */
    expect3("fields:\n  - {name: v, type: string, path: 'k\xc3\xa9'}\n",
            "{\"k\\u00e9\":\"\\u00e9\\n\\ud83d\\ude00\"}",
            "{\"v\":\"\xc3\xa9\\u000a\xf0\x9f\x98\x80\"}", 0);
    /* Not an object. */
    expect3("fields:\n  - {name: a, type: long}\n", "[1]", "ERR: expected a JSON object, got an array", 1);
}

/* Shapes (schema_mapper_json.c): a mapper that learned a record's shape
 * must give, on any record, exactly what a mapper that never uses shapes
 * gives (row or error message). The records are a learned seed with random
 * edits, or with one scalar value swapped for another text (valid or not),
 * which keeps every literal of the shape and so tests its value checks. */
static const char shape_schema[] =
    "fields:\n"
    "  - {name: id, type: long, path: station_id}\n"
    "  - {name: code, type: string, path: stationCode, required: true}\n"
    "  - {name: mech, type: int, path: \"t[?mechanical]\"}\n"
    "  - {name: ebike, type: int, path: \"t[?ebike]\"}\n"
    "  - {name: s, type: string, path: o.s}\n"
    "  - {name: second, type: long, path: \"arr[1]\"}\n"
    "  - {name: ok, type: bool}\n"
    "  - {name: d, type: double}\n"
    "  - {name: q, type: string, path: 'q[\"a.b\"]'}\n";

static void shapes(void)
{
    static const char *const seeds[] = {
        "{\"station_id\":213688169,\"t\":[{\"mechanical\":1},{\"ebike\":0}],\"ok\":true,"
        "\"o\":{\"s\":\"x\",\"u\":[1,{\"z\":null}]},\"arr\":[10,20,30],\"d\":48.865983,"
        "\"x\":null,\"stationCode\":\"16107\"}",
        " { \"stationCode\" : \"caf\\u00e9\" , \"station_id\":-5,\"station_id\":7,"
        "\"q\":{\"a.b\":\"\xc3\xa9\"},\"t\":[{\"ebike\":3},{\"ebike\":4},{\"mechanical\":2}]} \n",
        "{\"stationCode\":\"a\",\"o\":{\"s\":null},\"t\":[],\"arr\":[true,\"2\"],\"d\":1e3}",
        "{\"stationCode\":\"\"}",
    };
    static const char *const swaps[] = {
        "0", "-0", "01", "-", "1.", "1e5", "-2.5e-3", "123456789012345678",
        "12345678901234567890", "99999999999999999999999", "1x", "true", "false", "null", "tru",
        "nulll", "\"\"", "\"x\"", "\"caf\\u00e9\"", "\"\\ud800\"", "\"a\\\"b\"", "\"\xff\"",
        "\"\x01\"", "\"abc", "{}", "[]", "[1]", "{\"mechanical\":9}", "\"\xc3\xa9\xe2\x82\xac\"",
        "2147483648", "1.5", " 7", "7 ", "",
    };
    const char alphabet[] = "{}[]\",:\\-+.eE0123456789tfnul \t\n\x01\xc3\xa9\xff";
    struct sm_mapper *ms = mk(shape_schema, "extractor"), *mf = mk(shape_schema, "extractor");
    if (!ms || !mf) {
        sm_mapper_free(ms);
        sm_mapper_free(mf);
        return;
    }
    mf->shape.off = 1;
    char doc[2048], want[4096];
    int same = 0, matched = 0;
    for (int it = 0; it < 60000; it++) {
        const char *seed = seeds[rnd(4)];
        size_t n = strlen(seed);
        /* Learn the seed's shape (a miss relearns it, unless the last
         * record taught none and learning waits: not here). */
        ms->shape.cool = 0;
        snprintf(want, sizeof(want), "%s", map_text(mf, seed, n));
        CHECK_STR(map_text(ms, seed, n), want);
        CHECK_MSG(ms->shape.ok, "no shape learned from %s", seed);
        if (!ms->shape.ok)
            break;
        memcpy(doc, seed, n);
        if (it % 2 && ms->shape.nv) {
            /* Swap value k for another text. */
            const struct sm_shape *sh = &ms->shape;
            size_t k = rnd((unsigned)sh->nv);
            size_t vs = sh->v[k].off + sh->v[k].len, ve = sh->v[k + 1].off;
            const char *w = swaps[rnd(sizeof(swaps) / sizeof(swaps[0]))];
            size_t wn = strlen(w);
            memmove(doc + vs + wn, seed + ve, n - ve);
            memcpy(doc + vs, w, wn);
            n = vs + wn + (n - ve);
        } else {
            int edits = 1 + (int)rnd(2);
            for (int e = 0; e < edits; e++) {
                unsigned op = rnd(3), pos = n ? rnd((unsigned)n) : 0;
                char c = alphabet[rnd(sizeof(alphabet) - 1)];
                if (op == 0 && n) {
                    doc[pos] = c;
                } else if (op == 1 && n < sizeof(doc) - 1) {
                    memmove(doc + pos + 1, doc + pos, n - pos);
                    doc[pos] = c;
                    n++;
                } else if (n) {
                    memmove(doc + pos, doc + pos + 1, n - pos - 1);
                    n--;
                }
            }
        }
        snprintf(want, sizeof(want), "%s", map_text(mf, doc, n));
        const char *got = map_text(ms, doc, n);
        /* The shape still being the seed's means the match took it. */
        matched += ms->shape.ok && ms->shape.nbytes == strlen(seed) &&
                   memcmp(ms->shape.bytes, seed, ms->shape.nbytes) == 0;
        if (strcmp(got, want) == 0)
            same++;
        else
            CHECK_MSG(0, "shape and full walk differ on %.*s:\n    shape %s\n    full  %s", (int)n,
                      doc, got, want);
    }
    fprintf(stderr, "shapes: %d records equal, %d taken by the shape match\n", same, matched);
    CHECK(same == 60000);
    CHECK(matched > 10000);
    /* Records that teach no shape: a wildcard schema, a captured container. */
    struct sm_mapper *mw = mk(paths_schema, "extractor");
    if (mw) {
        map_text(mw, "{\"a\":1}", 7);
        CHECK(!mw->shape.ok);
        sm_mapper_free(mw);
    }
    struct sm_mapper *mc = mk("fields:\n  - {name: o, type: string, stringify: true}\n",
                              "extractor");
    if (mc) {
        CHECK_STR(map_text(mc, "{\"o\":{\"k\":1}}", 13), "{\"o\":\"{\\\"k\\\":1}\"}");
        CHECK(!mc->shape.ok && mc->shape.cool == SM_SHAPE_COOL);
        CHECK_STR(map_text(mc, "{\"o\":[2]}", 9), "{\"o\":\"[2]\"}");
        sm_mapper_free(mc);
    }
    /* A node that expects a container decides by the kind: null then a
     * number at a.b's parent. */
    struct sm_mapper *mn = mk("fields:\n  - {name: b, type: long, path: a.b}\n", "extractor");
    if (mn) {
        CHECK_STR(map_text(mn, "{\"a\":null}", 10), "{\"b\":null}");
        CHECK_STR(map_text(mn, "{\"a\":5}", 7), "ERR: a: expected an object, got number");
        sm_mapper_free(mn);
    }
    sm_mapper_free(ms);
    sm_mapper_free(mf);
}

/* Integers read 8 digits at a time: every length, sign, and what follows. */
static void integers(void)
{
    struct sm_mapper *m = mk("fields:\n  - {name: a, type: long}\n  - {name: b, type: long}\n",
                             "extractor");
    if (!m)
        return;
    char doc[128], want[128];
    for (int it = 0; it < 20000; it++) {
        int digits = 1 + (int)rnd(19);
        char num[32];
        size_t k = 0;
        if (rnd(3) == 0)
            num[k++] = '-';
        num[k++] = (char)('1' + rnd(9));
        for (int d = 1; d < digits; d++)
            num[k++] = (char)('0' + rnd(10));
        num[k] = '\0';
        if (it % 50 == 0)
            snprintf(num, sizeof(num), "%s", it % 100 ? "0" : "-0");
        static const char *const after[] = { "}", ",\"b\":7}", " }", "\n}", "\t,\"b\":7}" };
        const char *tail = after[rnd(5)];
        snprintf(doc, sizeof(doc), "{\"a\":%s%s", num, tail);
        /* strtoll saturates: longer than int64 is an out-of-range error. */
        errno = 0;
        long long v = strtoll(num, NULL, 10);
        if (errno == ERANGE)
            continue;
        snprintf(want, sizeof(want), "{\"a\":%lld,\"b\":%s}", v, strstr(tail, "b") ? "7" : "null");
        CHECK_STR(map_text(m, doc, strlen(doc)), want);
    }
    sm_mapper_free(m);
}

static const char types_schema[] =
    "input: {null_values: [\"\", \"N/A\"]}\n"
    "fields:\n"
    "  - {name: s, type: string}\n"
    "  - {name: i, type: int}\n"
    "  - {name: l, type: long}\n"
    "  - {name: d, type: double, strip: \"$,\"}\n"
    "  - {name: b, type: bool}\n"
    "  - {name: ts, type: timestamp, unit: s}\n"
    "  - {name: tms, type: timestamp}\n"
    "  - {name: iso, type: timestamp, tz: \"+01:00\"}\n"
    "  - {name: fmt, type: timestamp, format: \"%m/%d/%Y %I:%M:%S %p\"}\n"
    "  - {name: str, type: string, stringify: true}\n"
    "  - {name: dflt, type: int, default: 7}\n";

static void coercions(void)
{
    const char *y = types_schema;
    expect3(y, "{\"s\":\"x\",\"i\":-5,\"l\":9007199254740993,\"d\":\"$1,234.50\",\"b\":1,"
               "\"ts\":1732001704,\"tms\":1732001704123,\"iso\":\"2024-11-19T08:22:18Z\","
               "\"fmt\":\"04/06/2016 08:45:00 PM\",\"str\":12.5}",
            "{\"s\":\"x\",\"i\":-5,\"l\":9007199254740993,\"d\":1234.5,\"b\":true,"
            "\"ts\":\"2024-11-19T07:35:04.000Z\",\"tms\":\"2024-11-19T07:35:04.123Z\","
            "\"iso\":\"2024-11-19T08:22:18.000Z\",\"fmt\":\"2016-04-06T20:45:00.000Z\","
            "\"str\":\"12.5\",\"dflt\":7}", 0);
    /* A stringified number is its text as written (the row path has no
     * text: a row's double is written in shortest form, as above). */
    expect3(y, "{\"str\":12.50}", "{\"s\":null,\"i\":null,\"l\":null,\"d\":null,"
            "\"b\":null,\"ts\":null,\"tms\":null,\"iso\":null,\"fmt\":null,"
            "\"str\":\"12.50\",\"dflt\":7}", 1);
    /* Strings that are numbers, booleans from words, zone-less ISO in +01:00. */
    expect3(y, "{\"i\":\" 42 \",\"l\":\"-7\",\"d\":\"3\",\"b\":\"No\",\"ts\":\"1732001704\","
               "\"iso\":\"2024-03-28 23:20:19\",\"fmt\":\"12/31/1999 12:00:00 AM\","
               "\"str\":true,\"dflt\":3}",
            "{\"s\":null,\"i\":42,\"l\":-7,\"d\":3.0,\"b\":false,"
            "\"ts\":\"2024-11-19T07:35:04.000Z\",\"tms\":null,"
            "\"iso\":\"2024-03-28T22:20:19.000Z\",\"fmt\":\"1999-12-31T00:00:00.000Z\","
            "\"str\":\"true\",\"dflt\":3}", 0);
    /* null_values, explicit null and a default. */
    expect3(y, "{\"s\":\"N/A\",\"i\":null,\"d\":\"\",\"dflt\":null}",
            "{\"s\":null,\"i\":null,\"l\":null,\"d\":null,\"b\":null,\"ts\":null,\"tms\":null,"
            "\"iso\":null,\"fmt\":null,\"str\":null,\"dflt\":7}", 0);
    expect3(y, "{\"s\":5}", "ERR: s: expected string, got number 5", 0);
    expect3(y, "{\"i\":2147483648}", "ERR: i: 2147483648 is out of range for int", 0);
    /* Beyond uint64: RFC 8259 allows the number (simdjson refuses it). */
    struct sm_mapper *mx = mk(y, "extractor");
    if (mx) {
        CHECK_STR(map_text(mx, "{\"l\":18446744073709551616}", 26),
                  "ERR: l: 18446744073709551616 is out of range for long");
        sm_mapper_free(mx);
    }
    expect3(y, "{\"b\":2}", "ERR: b: expected bool (0 or 1), got number 2", 0);
    expect3(y, "{\"b\":\"maybe\"}", "ERR: b: expected bool", 0);
    expect3(y, "{\"iso\":\"2024-02-30\"}", "ERR: iso: expected an ISO-8601 timestamp", 0);
    expect3(y, "{\"fmt\":\"13/01/2016 08:45:00 PM\"}", "ERR: fmt: expected a timestamp in the "
            "field's format", 0);
    expect3(y, "{\"ts\":[1]}", "ERR: ts: expected timestamp, got array", 0);
    expect3(y, "{\"str\":{\"a\": [1, 2]}}", "{\"s\":null,\"i\":null,\"l\":null,\"d\":null,"
            "\"b\":null,\"ts\":null,\"tms\":null,\"iso\":null,\"fmt\":null,"
            "\"str\":\"{\\\"a\\\":[1,2]}\",\"dflt\":7}", 0);
    /* Required fields. */
    const char *req = "fields:\n  - {name: k, type: string, required: true}\n"
                      "  - {name: v, type: int}\n";
    expect3(req, "{\"v\":1}", "ERR: missing required field k", 0);
    expect3(req, "{\"k\":null}", "ERR: required field k is null", 0);
    expect3(req, "{\"k\":\"a\",\"v\":1,\"extra\":{\"deep\":[1,2,3]}}", "{\"k\":\"a\",\"v\":1}", 0);
}

static void timestamps(void)
{
    int64_t ms;
    CHECK(sm_parse_iso("1970-01-01", 10, 0, &ms) == 0 && ms == 0);
    CHECK(sm_parse_iso("2024-11-19T08:22:18.5+01:00", 27, 0, &ms) == 0 && ms == 1732000938500);
    CHECK(sm_parse_iso("2024-11-19t08:22Z", 17, 0, &ms) == 0 && ms == 1732004520000);
    CHECK(sm_parse_iso("2000-02-29T00:00:00-0130", 24, 0, &ms) == 0 && ms == 951787800000);
    CHECK(sm_parse_iso("1969-12-31T23:59:59.999Z", 24, 0, &ms) == 0 && ms == -1);
    CHECK(sm_parse_iso("2023-02-29", 10, 0, &ms) < 0);
    CHECK(sm_parse_iso("2024-11-19T24:00", 16, 0, &ms) < 0);
    CHECK(sm_parse_iso("2024-11-19T08:22:18Zx", 21, 0, &ms) < 0);
    char o[32];
    o[sm_fmt_iso(-1, o)] = '\0';
    CHECK_STR(o, "1969-12-31T23:59:59.999Z");
    char err[128];
    struct sm_tsfmt *f = sm_tsfmt_compile("%d %b %Y %H:%M:%S.%f %z", err, sizeof(err));
    CHECK(f && sm_tsfmt_parse(f, "19 Nov 2024 08:22:18.25 +0100", 29, 0, &ms) == 0 &&
          ms == 1732000938250);
    sm_tsfmt_free(f);
    CHECK(!sm_tsfmt_compile("%H:%M", err, sizeof(err)) && CONTAINS(err, "year"));
    CHECK(!sm_tsfmt_compile("%Y-%m-%d %Q", err, sizeof(err)) && CONTAINS(err, "%Q"));
}

static void expressions(void)
{
    const char *y = "fields:\n"
                    "  - {name: t, type: double}\n"
                    "  - {name: f, type: double}\n"
                    "  - {name: n, type: long}\n"
                    "  - {name: delta, type: double, expr: \"t - f\"}\n"
                    "  - {name: ratio, type: double, expr: \"(t + f) / (n - 2) * -1\"}\n"
                    "  - {name: big, type: long, expr: \"n * 3 + 1\"}\n"
                    "  - {name: half, type: int, expr: \"n / 4\"}\n"
                    "  - {name: need, type: double, expr: \"delta * 2\", required: true}\n";
    expect3(y, "{\"t\":9.91,\"f\":7.42,\"n\":6}",
            "{\"t\":9.91,\"f\":7.42,\"n\":6,\"delta\":2.49,\"ratio\":-4.3325,\"big\":19,"
            "\"half\":1,\"need\":4.98}", 0);
    /* 9.91 - 7.42 in doubles is what Python prints too. */
    struct sm_mapper *m = mk(y, "extractor");
    if (m) {
        const char *doc = "{\"t\":9.91,\"f\":7.42,\"n\":2}";
        CHECK_STR(map_text(m, doc, strlen(doc)),
                  "{\"t\":9.91,\"f\":7.42,\"n\":2,\"delta\":2.49,\"ratio\":null,\"big\":7,"
                  "\"half\":0,\"need\":4.98}");
        doc = "{\"t\":1,\"n\":9223372036854775807}";
        CHECK_STR(map_text(m, doc, strlen(doc)), "ERR: required field need cannot be computed: "
                  "delta is null");
        sm_mapper_free(m);
    }
    char err[256];
    struct sm_opts o = { 0 };
    m = mk_opts("fields:\n  - {name: s, type: string}\n  - {name: x, type: double, expr: \"s + 1\"}\n",
                &o, err, sizeof(err));
    CHECK(!m && CONTAINS(err, "'s' is a string field"));
    m = mk_opts("fields:\n  - {name: x, type: double, expr: \"y + 1\"}\n  - {name: y, type: int}\n",
                &o, err, sizeof(err));
    CHECK(!m && CONTAINS(err, "unknown field 'y'"));
    m = mk_opts("fields:\n  - {name: y, type: int}\n  - {name: x, type: double, expr: \"(y + 1\"}\n",
                &o, err, sizeof(err));
    CHECK(!m && CONTAINS(err, "expected ')'") && CONTAINS(err, ":3:"));
}

static void csv(void)
{
    struct sm_csvcell *cells = NULL;
    size_t cap = 0, n;
    char err[256];
    const char *line = "a,\"b,c\",\"d\"\"e\",,\"\"";
    CHECK(sm_csv_split(line, strlen(line), ',', &cells, &cap, &n, err, sizeof(err)) == 0 && n == 5);
    struct sm_arena a = { 0 };
    const char *p;
    size_t pn;
    sm_csv_cell_text(&a, &cells[1], &p, &pn);
    CHECK(pn == 3 && !memcmp(p, "b,c", 3));
    sm_csv_cell_text(&a, &cells[2], &p, &pn);
    CHECK(pn == 3 && !memcmp(p, "d\"e", 3));
    CHECK(cells[3].n == 0 && cells[4].n == 0);
    CHECK(sm_csv_split("a,", 2, ',', &cells, &cap, &n, err, sizeof(err)) == 0 && n == 2);
    CHECK(sm_csv_split("\"a", 2, ',', &cells, &cap, &n, err, sizeof(err)) < 0 &&
          CONTAINS(err, "unterminated quoted field"));
    CHECK(sm_csv_split("\"a\"b", 4, ',', &cells, &cap, &n, err, sizeof(err)) < 0 &&
          CONTAINS(err, "after a closing quote"));
    CHECK(sm_csv_split("a\"b", 3, ',', &cells, &cap, &n, err, sizeof(err)) < 0 &&
          CONTAINS(err, "quote inside an unquoted field"));
    /* Lookup tables: spaces and tabs around a cell are not part of it; a
     * quoted cell keeps what is inside its quotes. Records stay strict. */
    line = " a ,\t\"b \" ,c\t, \"\" ,\t";
    CHECK(sm_csv_split_blanks(line, strlen(line), ',', &cells, &cap, &n, err, sizeof(err)) == 0 &&
          n == 5);
    if (n == 5) {
        CHECK(cells[0].n == 1 && !memcmp(cells[0].p, "a", 1));
        CHECK(cells[1].n == 2 && !memcmp(cells[1].p, "b ", 2));
        CHECK(cells[2].n == 1 && !memcmp(cells[2].p, "c", 1));
        CHECK(cells[3].n == 0 && cells[4].n == 0);
    }
    CHECK(sm_csv_split(line, strlen(line), ',', &cells, &cap, &n, err, sizeof(err)) < 0 &&
          CONTAINS(err, "quote inside an unquoted field"));
    CHECK(sm_csv_split_blanks("\"a\" x", 6, ',', &cells, &cap, &n, err, sizeof(err)) < 0 &&
          CONTAINS(err, "after a closing quote"));
    CHECK(sm_csv_split_blanks("a b,c", 5, ',', &cells, &cap, &n, err, sizeof(err)) == 0 &&
          n == 2 && cells[0].n == 3);
    sm_arena_free(&a);
    free(cells);

    const char *y = "input:\n  format: csv\n  header: true\n  columns: [id, \"Trip Total\", when, flag]\n"
                    "fields:\n  - {name: id, type: long}\n"
                    "  - {name: total, type: double, column: Trip Total, strip: \"$\"}\n"
                    "  - {name: when, type: timestamp, format: \"%m/%d/%Y %I:%M:%S %p\"}\n"
                    "  - {name: flag, type: bool, default: false}\n";
    struct sm_mapper *m = mk(y, NULL);
    if (m) {
        CHECK_STR(map_text(m, "id,Trip Total,when,flag", 23), "DROP");
        const char *l = "7,$13.75,\"04/06/2016 08:45:00 PM\",";
        CHECK_STR(map_text(m, l, strlen(l)), "{\"id\":7,\"total\":13.75,"
                  "\"when\":\"2016-04-06T20:45:00.000Z\",\"flag\":false}");
        l = "7,$13.75,\"\"";
        CHECK_STR(map_text(m, l, strlen(l)), "ERR: invalid CSV: 3 columns, expected 4");
        l = "x,1,,Y";
        CHECK_STR(map_text(m, l, strlen(l)), "ERR: id: expected long, got string \"x\"");
        l = "1,1,,\xff";
        CHECK_STR(map_text(m, l, strlen(l)), "ERR: invalid CSV at byte 5: invalid UTF-8");
        CHECK(CONTAINS(map_row(m, "{\"id\":1}"), "input format is csv"));
        sm_mapper_free(m);
    }
}

static void lookups_and_filters(void)
{
    const char *csvf = tmpfile_with("codes.csv", "stationCode,station_id,postcode,city\r\n"
                                                 "16107,1,75016,Paris\r\n\"32017\",2,93200,\"Saint-Denis\"\r\n"
                                                 "9999,3,,Nowhere\r\n");
    char y[1024];
    snprintf(y, sizeof(y),
             "fields:\n  - {name: stationCode, type: string}\n"
             "  - {name: n, type: int}\n"
             "  - name: postcode\n    type: string\n"
             "    lookup: {key: stationCode, file: %s}\n"
             "filters:\n  - {field: n, min: 1, max: 10}\n", csvf);
    struct sm_mapper *m = mk(y, NULL);
    if (m) {
        CHECK_STR(map_text(m, "{\"stationCode\":\"32017\",\"n\":1}", 29),
                  "{\"stationCode\":\"32017\",\"n\":1,\"postcode\":\"93200\"}");
        CHECK_STR(map_text(m, "{\"stationCode\":\"9999\",\"n\":10}", 29),
                  "{\"stationCode\":\"9999\",\"n\":10,\"postcode\":null}");
        CHECK(m->lookup_misses == 1);
        CHECK_STR(map_text(m, "{\"stationCode\":\"16107\",\"n\":0}", 29), "DROP");
        CHECK_STR(map_text(m, "{\"stationCode\":\"16107\"}", 23), "DROP");
        sm_mapper_free(m);
    }
    /* A table written by hand or padded by an export: a BOM, CRLF, blanks
     * (spaces, tabs) around the header names, keys and values, a line of
     * blanks. Unquoted cells are trimmed; quoted ones keep their blanks. */
    const char *padded = tmpfile_with("padded.csv", "\xEF\xBB\xBF" "stationCode , station_id,"
                                      "\tpostcode \r\n16107, 1, 75016\t\r\n"
                                      " \"32017\" ,2,\" 93200\"\r\n  \t \r\n"
                                      "\" 9999\",3,75999\r\n");
    snprintf(y, sizeof(y),
             "fields:\n  - {name: stationCode, type: string}\n"
             "  - name: postcode\n    type: string\n"
             "    lookup: {key: stationCode, file: %s}\n", padded);
    m = mk(y, NULL);
    if (m) {
        static const struct { const char *in, *out; } padded_cases[] = {
            { "{\"stationCode\":\"16107\"}", "{\"stationCode\":\"16107\",\"postcode\":\"75016\"}" },
            { "{\"stationCode\":\"32017\"}", "{\"stationCode\":\"32017\",\"postcode\":\" 93200\"}" },
            { "{\"stationCode\":\" 9999\"}", "{\"stationCode\":\" 9999\",\"postcode\":\"75999\"}" },
            { "{\"stationCode\":\"9999\"}", "{\"stationCode\":\"9999\",\"postcode\":null}" },
        };
        for (size_t i = 0; i < sizeof(padded_cases) / sizeof(padded_cases[0]); i++) {
            const char *doc = padded_cases[i].in;
            CHECK_STR(map_text(m, doc, strlen(doc)), padded_cases[i].out);
        }
        CHECK(m->lookup_misses == 1);
        sm_mapper_free(m);
    }
    /* Config: inline table, missing = error / drop / default, filter.values. */
    const char *ys = "fields:\n  - {name: code, type: long}\n"
                     "  - name: pc\n    type: int\n    lookup: {key: code}\n";
    const char *inl[] = { "1=75001", "2=75002" };
    const char *vals[] = { "1", "2", "3" };
    struct sm_opts o = { .lookup_inline = inl, .nlookup_inline = 2, .lookup_missing = "error",
                         .filter_field = "code", .filter_values = vals, .nfilter_values = 3 };
    char err[256];
    m = mk_opts(ys, &o, err, sizeof(err));
    CHECK_MSG(m != NULL, "%s", err);
    if (m) {
        CHECK_STR(map_text(m, "{\"code\":2}", 10), "{\"code\":2,\"pc\":75002}");
        CHECK_STR(map_text(m, "{\"code\":4}", 10), "DROP");
        CHECK_STR(map_text(m, "{\"code\":3}", 10),
                  "ERR: pc: no pc for code \"3\" in the lookup table (lookup.inline)");
        sm_mapper_free(m);
    }
    /* Inline entries written with blanks around '=' and the value. */
    const char *inl_padded[] = { " 1 = 75001", "2=\t75002 " };
    o.lookup_inline = inl_padded;
    m = mk_opts(ys, &o, err, sizeof(err));
    CHECK_MSG(m != NULL, "%s", err);
    if (m) {
        CHECK_STR(map_text(m, "{\"code\":1}", 10), "{\"code\":1,\"pc\":75001}");
        CHECK_STR(map_text(m, "{\"code\":2}", 10), "{\"code\":2,\"pc\":75002}");
        sm_mapper_free(m);
    }
    o.lookup_inline = inl;
    o.lookup_missing = "default";
    o.lookup_default = "0";
    m = mk_opts(ys, &o, err, sizeof(err));
    if (m) {
        CHECK_STR(map_text(m, "{\"code\":3}", 10), "{\"code\":3,\"pc\":0}");
        sm_mapper_free(m);
    }
    /* lookup.default is used only with missing: default: with another
     * lookup.missing, or none and another missing in the schema, it is
     * refused, not left unused. */
    o.lookup_missing = "drop";
    m = mk_opts(ys, &o, err, sizeof(err));
    CHECK_MSG(!m && CONTAINS(err, "lookup.default is used only with lookup.missing: default (it "
                             "is drop): set lookup.missing: default, or remove lookup.default"),
              "%s", m ? "(accepted)" : err);
    sm_mapper_free(m);
    o.lookup_missing = NULL;
    m = mk_opts(ys, &o, err, sizeof(err));
    CHECK_MSG(!m && CONTAINS(err, "lookup.default is used only with missing: default, and field "
                             "'pc' has missing: null in the schema (lookup.missing is not set): "
                             "set lookup.missing: default, or remove lookup.default"),
              "%s", m ? "(accepted)" : err);
    sm_mapper_free(m);
    m = mk_opts("fields:\n  - {name: code, type: long}\n  - name: pc\n    type: int\n"
                "    default: 1\n    lookup: {key: code, missing: default}\n", &o, err, sizeof(err));
    CHECK_MSG(m != NULL, "%s", err);
    if (m) {
        CHECK_STR(map_text(m, "{\"code\":3}", 10), "{\"code\":3,\"pc\":0}");
        sm_mapper_free(m);
    }
    o.lookup_missing = "drop";
    o.lookup_default = NULL;
    m = mk_opts(ys, &o, err, sizeof(err));
    if (m) {
        CHECK_STR(map_text(m, "{\"code\":3}", 10), "DROP");
        sm_mapper_free(m);
    }
    /* The field's default in the schema, the same: usable when the
     * schema's missing is default (a connector may choose another policy),
     * else refused unless lookup.missing makes it default. */
    const char *yd = "fields:\n  - {name: code, type: long}\n"
                     "  - name: pc\n    type: int\n    default: 7\n    lookup: {key: code%s}\n";
    char yb[512];
    snprintf(yb, sizeof(yb), yd, "");
    o = (struct sm_opts){ .lookup_inline = inl, .nlookup_inline = 2 };
    m = mk_opts(yb, &o, err, sizeof(err));
    CHECK_MSG(!m && CONTAINS(err, "schema.yaml:6:13: field 'pc': lookup: a default is used only "
                             "with missing: default (here missing: null): set missing: default, "
                             "or remove the field's default"), "%s", m ? "(accepted)" : err);
    sm_mapper_free(m);
    o.lookup_missing = "drop";
    m = mk_opts(yb, &o, err, sizeof(err));
    CHECK_MSG(!m && CONTAINS(err, "field 'pc': lookup: a default is used only with missing: "
                             "default (lookup.missing is drop): set lookup.missing: default, or "
                             "remove the field's default"), "%s", m ? "(accepted)" : err);
    sm_mapper_free(m);
    o.lookup_missing = "default";
    m = mk_opts(yb, &o, err, sizeof(err));
    CHECK_MSG(m != NULL, "%s", err);
    if (m) {
        CHECK_STR(map_text(m, "{\"code\":3}", 10), "{\"code\":3,\"pc\":7}");
        sm_mapper_free(m);
    }
    snprintf(yb, sizeof(yb), yd, ", missing: default");
    o.lookup_missing = "drop";
    m = mk_opts(yb, &o, err, sizeof(err));
    CHECK_MSG(m != NULL, "%s", err);
    if (m) {
        CHECK_STR(map_text(m, "{\"code\":3}", 10), "DROP");
        sm_mapper_free(m);
    }
    /* A default inside lookup: is not a key of it. */
    o = (struct sm_opts){ .lookup_inline = inl, .nlookup_inline = 2 };
    m = mk_opts("fields:\n  - {name: code, type: long}\n  - name: pc\n    type: int\n"
                "    lookup: {key: code, missing: null, default: 7}\n", &o, err, sizeof(err));
    CHECK_MSG(!m && CONTAINS(err, "unknown key 'default'"), "%s", m ? "(accepted)" : err);
    sm_mapper_free(m);
    /* Table errors are positioned. */
    o = (struct sm_opts){ .lookup_inline = (const char *[]){ "1=x" }, .nlookup_inline = 1 };
    m = mk_opts(ys, &o, err, sizeof(err));
    CHECK(!m && CONTAINS(err, "lookup.inline: entry 1 '1=x': pc: expected int"));
    const char *bad = tmpfile_with("bad.csv", "code,pc\n1,75001\n2,75002\n1,75003\n");
    o = (struct sm_opts){ .lookup_file = bad };
    m = mk_opts(ys, &o, err, sizeof(err));
    CHECK_MSG(!m && CONTAINS(err, "bad.csv:4: duplicate key \"1\" (first at line 2)"), "%s", err);
    /* Keys equal once trimmed are the same key. */
    bad = tmpfile_with("bad3.csv", "code,pc\n1,75001\n2,75002\n1\t ,75003\n");
    o = (struct sm_opts){ .lookup_file = bad };
    m = mk_opts(ys, &o, err, sizeof(err));
    CHECK_MSG(!m && CONTAINS(err, "bad3.csv:4: duplicate key \"1\" (first at line 2)"), "%s", err);
    bad = tmpfile_with("bad2.csv", "code,postcode\n1,75001\n");
    o = (struct sm_opts){ .lookup_file = bad };
    m = mk_opts(ys, &o, err, sizeof(err));
    CHECK_MSG(!m && CONTAINS(err, "bad2.csv:1: no column 'pc' in the header (columns: code, postcode)"),
              "%s", err);
    bad = tmpfile_with("bad.json", "{\"1\": 75001, \"2\": [1]}");
    o = (struct sm_opts){ .lookup_file = bad };
    m = mk_opts(ys, &o, err, sizeof(err));
    CHECK_MSG(!m && CONTAINS(err, "bad.json: key \"2\""), "%s", err);
    const char *good = tmpfile_with("good.json", "[{\"code\": 1, \"pc\": 75001}, {\"code\": \"2\", \"pc\": null}]");
    o = (struct sm_opts){ .lookup_file = good };
    m = mk_opts(ys, &o, err, sizeof(err));
    CHECK_MSG(m != NULL, "%s", err);
    if (m) {
        CHECK_STR(map_text(m, "{\"code\":1}", 10), "{\"code\":1,\"pc\":75001}");
        CHECK_STR(map_text(m, "{\"code\":2}", 10), "{\"code\":2,\"pc\":null}");
        sm_mapper_free(m);
    }
    /* A JSON table written with a byte order mark reads as without one,
     * by its name or by its content. */
    for (int by_name = 0; by_name < 2; by_name++) {
        good = tmpfile_with(by_name ? "bom.json" : "bom.tbl",
                            "\xEF\xBB\xBF{\"1\": 75001, \"2\": \"75002\"}");
        o = (struct sm_opts){ .lookup_file = good };
        m = mk_opts(ys, &o, err, sizeof(err));
        CHECK_MSG(m != NULL, "%s", err);
        if (m) {
            CHECK_STR(map_text(m, "{\"code\":2}", 10), "{\"code\":2,\"pc\":75002}");
            sm_mapper_free(m);
        }
    }
    /* A column the table is read by, named twice in the header. */
    bad = tmpfile_with("twice.csv", "code,pc,city,pc\n1,75001,Paris,75002\n");
    o = (struct sm_opts){ .lookup_file = bad };
    m = mk_opts(ys, &o, err, sizeof(err));
    CHECK_MSG(!m && CONTAINS(err, "twice.csv:1: column 'pc' is in the header twice (columns 2 "
                             "and 4)"), "%s", m ? "(accepted)" : err);
    sm_mapper_free(m);
    good = tmpfile_with("other_twice.csv", "code,city,pc,city\n1,Paris,75001,Lyon\n");
    o = (struct sm_opts){ .lookup_file = good };
    m = mk_opts(ys, &o, err, sizeof(err));
    CHECK_MSG(m != NULL, "another column twice is no matter: %s", err);
    sm_mapper_free(m);
}

struct each_seen {
    size_t n;
    char keys[20][32];
    char msgs[20][SM_ERR];
};

static void each_seen(void *ctx, const char *key, const char *msg)
{
    struct each_seen *e = ctx;
    if (e->n < 20) {
        snprintf(e->keys[e->n], sizeof(e->keys[0]), "%s", key ? key : "(none)");
        snprintf(e->msgs[e->n], sizeof(e->msgs[0]), "%s", msg);
    }
    e->n++;
}

/* With a host that takes them one by one (check_problem): err holds the
 * first problem alone, at its key, and each other one comes with its own
 * key; past the 16 kept, one more says how many were left out. */
static void opts_check_each(void)
{
    char err[SPOKE_ERRSTR_SIZE];
    const char *key = "x";
    const char *vals[] = { "16107" };
    const char *inl[] = { "16107=75016", "32017", "16107=x" };
    struct sm_opts o = { .filter_values = vals, .nfilter_values = 1, .lookup_inline = inl,
                         .nlookup_inline = 3, .lookup_missing = "drop", .lookup_default = "?" };
    struct each_seen e = { 0 };
    CHECK(sm_opts_check_each(&o, &key, err, sizeof(err), each_seen, &e) == SPOKE_ERR_INVALID);
    CHECK_STR(err, "filter.values needs filter.field (the field whose values they are)");
    CHECK_STR(key, "filter.values");
    CHECK(e.n == 3);
    CHECK_STR(e.keys[0], "lookup.default");
    CHECK_STR(e.keys[1], "lookup.inline");
    CHECK_STR(e.msgs[1], "lookup.inline: entry 2 '32017' is not key=value (no '=')");
    CHECK_STR(e.keys[2], "lookup.inline");
    CHECK_STR(e.msgs[2], "lookup.inline: entries 1 and 3 both give key '16107'");
    const char *many[40];
    for (size_t i = 0; i < 40; i++)
        many[i] = "no-equals-sign";
    o = (struct sm_opts){ .lookup_inline = many, .nlookup_inline = 40 };
    e.n = 0;
    CHECK(sm_opts_check_each(&o, &key, err, sizeof(err), each_seen, &e) == SPOKE_ERR_INVALID);
    CHECK_STR(err, "lookup.inline: entry 1 'no-equals-sign' is not key=value (no '=')");
    CHECK(e.n == 16);
    CHECK_STR(e.msgs[14], "lookup.inline: entry 16 'no-equals-sign' is not key=value (no '=')");
    CHECK_STR(e.keys[15], "(none)");
    CHECK_STR(e.msgs[15], "and 24 more problems");
    e.n = 0;
    o.nlookup_inline = 0;
    CHECK(sm_opts_check_each(&o, &key, err, sizeof(err), each_seen, &e) == SPOKE_OK && !e.n);
}

/* The config check (the plugin's check callback) reports every problem it
 * finds in its one message, joined with "; ", at the key of the first; those
 * that do not fit are counted. */
static void opts_check(void)
{
    char err[SPOKE_ERRSTR_SIZE];
    const char *key = "x";
    struct sm_opts o = { .filter_field = "stationCode" };
    CHECK(sm_opts_check(&o, &key, err, sizeof(err)) == SPOKE_ERR_INVALID);
    CHECK_STR(err, "filter.field 'stationCode' needs filter.values (the values of the field to "
              "keep)");
    CHECK_STR(key, "filter.field");
    const char *vals[] = { "16107" };
    const char *inl[] = { "16107=75016", "32017", "=1", "16107=x", "32017=" };
    o = (struct sm_opts){ .filter_values = vals, .nfilter_values = 1, .lookup_inline = inl,
                          .nlookup_inline = 5 };
    CHECK(sm_opts_check(&o, &key, err, sizeof(err)) == SPOKE_ERR_INVALID);
    CHECK_STR(err, "filter.values needs filter.field (the field whose values they are); "
              "lookup.inline: entry 2 '32017' is not key=value (no '='); "
              "lookup.inline: entry 3 '=1' has an empty key; "
              "lookup.inline: entries 1 and 4 both give key '16107'");
    CHECK_STR(key, "filter.values");
    /* Blanks around the key and the value do not count: " 16107 " is the
     * key 16107, and " \t=1" has an empty key. */
    const char *padded[] = { " 16107 = 75016", "32017=\t93200 ", "16107\t=x", " \t=1" };
    o = (struct sm_opts){ .lookup_inline = padded, .nlookup_inline = 4 };
    CHECK(sm_opts_check(&o, &key, err, sizeof(err)) == SPOKE_ERR_INVALID);
    CHECK_STR(err, "lookup.inline: entries 1 and 3 both give key '16107'; "
              "lookup.inline: entry 4 ' \t=1' has an empty key");
    o.nlookup_inline = 2;
    CHECK_MSG(sm_opts_check(&o, &key, err, sizeof(err)) == SPOKE_OK, "%s", err);
    /* More than fit: the first ones, then how many are left out. */
    const char *many[40];
    for (size_t i = 0; i < 40; i++)
        many[i] = "no-equals-sign";
    o = (struct sm_opts){ .lookup_inline = many, .nlookup_inline = 40 };
    CHECK(sm_opts_check(&o, &key, err, sizeof(err)) == SPOKE_ERR_INVALID);
    const char *head = "lookup.inline: entry 1 'no-equals-sign' is not key=value (no '='); "
                       "lookup.inline: entry 2 ";
    CHECK_MSG(!strncmp(err, head, strlen(head)) && strlen(err) < sizeof(err) - 1 &&
              CONTAINS(err, " more problems") && !CONTAINS(err, "entry 40 "), "%s", err);
    size_t shown = 0;
    for (const char *p = err; (p = strstr(p, "is not key=value")); p++)
        shown++;
    char tail[64];
    snprintf(tail, sizeof(tail), "; and %zu more problems", 40 - shown);
    CHECK_MSG(strlen(err) > strlen(tail) && !strcmp(err + strlen(err) - strlen(tail), tail),
              "%s", err);
    /* Columns without a file to read them from: lookup.inline alone
     * replaces the schema's table. */
    o = (struct sm_opts){ .lookup_inline = (const char *[]){ "1=2" }, .nlookup_inline = 1,
                          .lookup_value_column = "postcode" };
    CHECK(sm_opts_check(&o, &key, err, sizeof(err)) == SPOKE_ERR_INVALID);
    CHECK_STR(err, "lookup.value.column is used only with a lookup file, and lookup.inline alone "
              "replaces the schema's table: remove it, or give lookup.file");
    CHECK_STR(key, "lookup.value.column");
    o.lookup_file = "pc.csv";
    CHECK_MSG(sm_opts_check(&o, &key, err, sizeof(err)) == SPOKE_OK, "%s", err);
    /* lookup.default with a lookup.missing that never uses it; without
     * lookup.missing, only the start can tell (the schema's missing). */
    o = (struct sm_opts){ .filter_field = "a", .lookup_missing = "error", .lookup_default = "" };
    CHECK(sm_opts_check(&o, &key, err, sizeof(err)) == SPOKE_ERR_INVALID);
    CHECK_STR(err, "filter.field 'a' needs filter.values (the values of the field to keep); "
              "lookup.default is used only with lookup.missing: default (it is error): set "
              "lookup.missing: default, or remove lookup.default");
    o = (struct sm_opts){ .filter_field = "a", .filter_values = vals, .nfilter_values = 1,
                          .lookup_inline = inl, .nlookup_inline = 1, .lookup_missing = "default",
                          .lookup_default = "x" };
    key = "x";
    CHECK(sm_opts_check(&o, &key, err, sizeof(err)) == SPOKE_OK && key == NULL);
    o.lookup_missing = NULL;
    CHECK(sm_opts_check(&o, &key, err, sizeof(err)) == SPOKE_OK && key == NULL);
}

static void schema_errors(void)
{
    static const struct { const char *yaml, *want; } cases[] = {
        { "fields:\n  - {name: a, type: integer}\n", "schema.yaml:2:21: field 'a': unknown type 'integer'" },
        { "fields:\n  - {name: a, type: int, requird: true}\n",
          "schema.yaml:2:26: field 'a': unknown key 'requird' (did you mean 'required'?)" },
        { "fields:\n  - {name: a, type: int}\n  - {name: a, type: long}\n",
          "schema.yaml:3:5: field 'a' is declared twice (first at line 2)" },
        { "fields:\n  - {name: a, type: int, path: \"x[*]\"}\n", "type must be list" },
        { "fields:\n  - {name: a, type: int, path: \"x[-1]\"}\n", "negative indexes" },
        { "fields:\n  - {name: a, type: int, path: x.y}\n  - {name: b, type: int, path: \"x[0]\"}\n",
          "schema.yaml:3:32: field 'b': path 'x[0]': 'x' is used both as an object and as an array" },
        { "fields:\n  - {name: a, type: int, default: abc}\n", "field 'a': default: expected int" },
        { "fields:\n  - {name: a, type: timestamp, unit: h}\n", "unknown unit 'h'" },
        { "fields:\n  - {name: a, type: int}\nfilters:\n  - {field: b, eq: 1}\n",
          "schema.yaml:4:13: filter: no field 'b'" },
        { "fields:\n  - {name: a, type: int}\nfilters:\n  - {field: a, in: [1, x]}\n",
          "filter on 'a': expected int, got string \"x\"" },
        { "fields:\n  - {name: a, type: string}\n  - name: b\n    type: string\n"
          "    lookup: {key: a}\n", "no table" },
        { "fields: [\n", "invalid YAML" },
        { "feilds: []\n", "unknown key 'feilds' (did you mean 'fields'?)" },
        { "input: {format: csv}\nfields:\n  - {name: a, type: int}\n", "CSV input needs input.columns" },
        { "fields:\n  - {name: a, type: int, column: x}\n", "column is for CSV input" },
        { "key: nope\nfields:\n  - {name: a, type: int}\n", "schema.yaml:1:6: key: no field 'nope'" },
        { "timestamp: a\nfields:\n  - {name: a, type: int}\n", "timestamp: no timestamp field 'a'" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sm_opts o = { 0 };
        char err[256] = "";
        struct sm_mapper *m = mk_opts(cases[i].yaml, &o, err, sizeof(err));
        CHECK_MSG(!m && CONTAINS(err, cases[i].want), "case %zu: got \"%s\", want \"%s\"", i,
                  m ? "(accepted)" : err, cases[i].want);
        sm_mapper_free(m);
    }
}

/* Row input (schema_mapper_walk.c): the plan of each trie node per input
 * schema (field indexes resolved once, a reference held on the schema).
 * Rows of several schemas, in varying field orders, alternating and more
 * of them than a node caches, and schemas freed while new ones are made
 * (the allocator hands their addresses out again), must map exactly as a
 * fresh mapper that never saw another schema maps them. */
static const char rowplan_schema[] =
    "fields:\n"
    "  - {name: code, type: string, path: stationCode, required: true}\n"
    "  - {name: id, type: long, path: station_id}\n"
    "  - {name: mech, type: int, path: \"t[?mechanical]\"}\n"
    "  - {name: ebike, type: int, path: \"t[?ebike]\"}\n"
    "  - {name: first, type: int, path: \"t[0].mechanical\"}\n"
    "  - {name: x, type: double, path: o.x}\n"
    "  - {name: ok, type: bool}\n"
    "  - {name: at, type: timestamp, path: at}\n"
    "  - {name: name, type: string}\n";

/* A one-INT-field map row {key: v}, its schema made here (or NULL). */
static struct spoke_row *kv_row(const char *key, int64_t v)
{
    struct spoke_schema *sc = schema_new();
    schema_add(sc, key, SPOKE_TYPE_INT);
    struct spoke_row *r = row_new(sc);
    schema_unref(sc);
    row_set_int(r, 0, v);
    return r;
}

/* A station row: the fields of perm (a permutation of 0..8, the first nf
 * of it used), so each call can make a schema of its own shape. */
static struct spoke_row *station(const int *perm, size_t nf, unsigned seed)
{
    static const char *const names[] = { "stationCode", "station_id", "t", "o", "ok", "at",
                                         "name", "extra", "station_id2" };
    static const enum spoke_type types[] = { SPOKE_TYPE_STRING, SPOKE_TYPE_INT, SPOKE_TYPE_LIST,
                                             SPOKE_TYPE_MAP, SPOKE_TYPE_BOOL,
                                             SPOKE_TYPE_TIMESTAMP, SPOKE_TYPE_STRING,
                                             SPOKE_TYPE_INT, SPOKE_TYPE_INT };
    struct spoke_schema *sc = schema_new();
    for (size_t k = 0; k < nf; k++)
        schema_add(sc, names[perm[k]], types[perm[k]]);
    struct spoke_row *r = row_new(sc);
    schema_unref(sc);
    for (size_t k = 0; k < nf; k++) {
        char code[16];
        switch (perm[k]) {
        case 0:
            snprintf(code, sizeof(code), "%u", 10000 + seed % 7);
            row_set_string(r, k, code, strlen(code));
            break;
        case 1: row_set_int(r, k, 1000 + seed); break;
        case 2: {
            /* [{mechanical}, {ebike}] or reversed, or with a null first. */
            struct spoke_row *l = row_new_list(seed % 3 == 2 ? 3 : 2);
            size_t at = seed % 3 == 2 ? 1 : 0;
            row_set_row(l, at + (seed % 2), kv_row("mechanical", seed % 11));
            row_set_row(l, at + !(seed % 2), kv_row("ebike", seed % 5));
            row_set_row(r, k, l);
            break;
        }
        case 3: {
            struct spoke_schema *os = schema_new();
            schema_add(os, seed % 2 ? "y" : "x", SPOKE_TYPE_DOUBLE);
            schema_add(os, seed % 2 ? "x" : "y", SPOKE_TYPE_DOUBLE);
            struct spoke_row *o = row_new(os);
            schema_unref(os);
            row_set_double(o, 0, seed * 0.5);
            row_set_double(o, 1, -1.0 * seed);
            row_set_row(r, k, o);
            break;
        }
        case 4: row_set_bool(r, k, seed & 1); break;
        case 5: row_set_timestamp(r, k, 1732001704000 + seed); break;
        case 6:
            if (seed % 4)  /* "" means null by default */
                row_set_string(r, k, seed % 4 == 1 ? "" : "Gare", seed % 4 == 1 ? 0 : 4);
            break;
        default: row_set_int(r, k, (int64_t)seed); break;
        }
    }
    return r;
}

/* Maps a row (borrowed) and writes the output as JSON, "DROP" or "ERR: ". */
static void map_row_obj(struct sm_mapper *m, const struct spoke_row *in, char *out, size_t outsz)
{
    struct buf b = BUF_INIT;
    char err[256];
    int rc = sm_map_row(m, in, NULL, err, sizeof(err));
    if (rc == SPOKE_DROP) {
        snprintf(out, outsz, "DROP");
        return;
    }
    if (rc != SPOKE_OK) {
        snprintf(out, outsz, "ERR: %s", err);
        return;
    }
    struct spoke_row *row = sm_build_row(m);
    rowjson_write(row, &b);
    snprintf(out, outsz, "%.*s", (int)b.len, b.p);
    buf_free(&b);
    row_free(row);
}

static void row_plans(void)
{
    struct sm_mapper *m = mk(rowplan_schema, NULL);
    if (!m)
        return;
    char got[2048], want[2048];
    int perm[9];
    struct spoke_row *keep[6];
    int errs = 0;
    /* Six schemas of different orders, kept alive and alternating: more
     * than a node caches (SM_RPLAN), so plans are evicted and refilled. */
    for (int s = 0; s < 6; s++) {
        for (int k = 0; k < 9; k++)
            perm[k] = (k + s * 2) % 9;
        keep[s] = station(perm, 9 - (size_t)(s % 3), (unsigned)s);
    }
    /* Every other reference mapper reads rows through the getters, as on a
     * host without row_values: both ways must give the same outputs. */
    struct spoke_host_api old_host = api_table;
    old_host.struct_size = (uint32_t)offsetof(struct spoke_host_api, row_values);
    for (int it = 0; it < 600; it++) {
        const struct spoke_row *in = keep[(it * 7 + it / 6) % 6];
        mk_api = it % 2 ? &old_host : &api_table;
        struct sm_mapper *fresh = mk(rowplan_schema, NULL);
        mk_api = &api_table;
        if (!fresh)
            break;
        map_row_obj(m, in, got, sizeof(got));
        map_row_obj(fresh, in, want, sizeof(want));
        CHECK_MSG(!strcmp(got, want), "kept schema, iteration %d:\n    got  %s\n    want %s", it,
                  got, want);
        errs += !strncmp(got, "ERR", 3);
        sm_mapper_free(fresh);
    }
    /* Schemas made and freed one after the other, each with a new random
     * field order: their memory is reused at once, so a plan keyed by an
     * address without a reference would be stale here. */
    for (int it = 0; it < 400; it++) {
        for (int k = 0; k < 9; k++)
            perm[k] = k;
        for (int k = 8; k > 0; k--) {
            int j = (int)rnd((unsigned)k + 1), t = perm[k];
            perm[k] = perm[j];
            perm[j] = t;
        }
        struct spoke_row *in = station(perm, 5 + rnd(5), (unsigned)it);
        struct sm_mapper *fresh = mk(rowplan_schema, NULL);
        if (!fresh) {
            row_free(in);
            break;
        }
        map_row_obj(m, in, got, sizeof(got));
        map_row_obj(fresh, in, want, sizeof(want));
        CHECK_MSG(!strcmp(got, want), "fresh schema, iteration %d:\n    got  %s\n    want %s",
                  it, got, want);
        errs += !strncmp(got, "ERR", 3);
        sm_mapper_free(fresh);
        row_free(in);
    }
    CHECK(errs > 0);  /* some rows lack the required stationCode */
    /* Exact outputs for two alternating shapes. */
    int a[9] = { 0, 1, 2, 3, 4, 5, 6, 7, 8 }, b[9] = { 8, 7, 6, 5, 4, 3, 2, 1, 0 };
    struct spoke_row *ra = station(a, 9, 3), *rb = station(b, 9, 4);
    for (int k = 0; k < 4; k++) {
        map_row_obj(m, ra, got, sizeof(got));
        CHECK_STR(got, "{\"code\":\"10003\",\"id\":1003,\"mech\":3,\"ebike\":3,\"first\":null,"
                       "\"x\":-3.0,\"ok\":true,\"at\":\"2024-11-19T07:35:04.003Z\","
                       "\"name\":\"Gare\"}");
        map_row_obj(m, rb, got, sizeof(got));
        CHECK_STR(got, "{\"code\":\"10004\",\"id\":1004,\"mech\":4,\"ebike\":4,\"first\":4,"
                       "\"x\":2.0,\"ok\":false,\"at\":\"2024-11-19T07:35:04.004Z\","
                       "\"name\":null}");
    }
    row_free(ra);
    row_free(rb);
    for (int s = 0; s < 6; s++)
        row_free(keep[s]);
    sm_mapper_free(m);
}

/* Coercions of typed row values (the inline cases and the general one
 * must agree): bool, double, timestamp and string fields, null text ("" is
 * not null unless null_values says so, as in JSON input). */
static void row_coercions(void)
{
    const char *y = "fields:\n  - {name: b, type: bool}\n  - {name: d, type: double}\n"
                    "  - {name: t, type: timestamp}\n"
                    "  - {name: s, type: string, null_values: [\"\"]}\n"
                    "  - {name: r, type: string, required: true, path: s2, null_values: [\"\"]}\n"
                    "  - {name: n, type: string, path: s3, null_values: [\"-\"]}\n"
                    "  - {name: i, type: int, path: d2}\n";
    struct sm_mapper *m = mk(y, NULL);
    if (!m)
        return;
    struct spoke_schema *sc = schema_new();
    schema_add(sc, "b", SPOKE_TYPE_BOOL);
    schema_add(sc, "d", SPOKE_TYPE_DOUBLE);
    schema_add(sc, "t", SPOKE_TYPE_TIMESTAMP);
    schema_add(sc, "s", SPOKE_TYPE_STRING);
    schema_add(sc, "s2", SPOKE_TYPE_STRING);
    schema_add(sc, "s3", SPOKE_TYPE_STRING);
    schema_add(sc, "d2", SPOKE_TYPE_DOUBLE);
    char got[1024];
    struct spoke_row *r = row_new(sc);
    row_set_bool(r, 0, 1);
    row_set_double(r, 1, 2.5);
    row_set_timestamp(r, 2, -1);
    row_set_string(r, 3, "", 0);
    row_set_string(r, 4, "x", 1);
    row_set_string(r, 5, "", 0);
    row_set_double(r, 6, 3.0);
    map_row_obj(m, r, got, sizeof(got));
    CHECK_STR(got, "{\"b\":true,\"d\":2.5,\"t\":\"1969-12-31T23:59:59.999Z\",\"s\":null,"
                   "\"r\":\"x\",\"n\":\"\",\"i\":3}");
    row_set_double(r, 1, INFINITY);
    map_row_obj(m, r, got, sizeof(got));
    CHECK_STR(got, "ERR: d: number out of range for double");
    row_set_double(r, 1, NAN);
    map_row_obj(m, r, got, sizeof(got));
    CHECK_STR(got, "ERR: d: number out of range for double");
    row_set_double(r, 1, 0.0);
    row_set_string(r, 4, "", 0);
    map_row_obj(m, r, got, sizeof(got));
    CHECK_STR(got, "ERR: required field r is null");
    row_set_string(r, 4, "y", 1);
    row_set_string(r, 5, "-", 1);
    row_set_double(r, 6, 3.5);
    map_row_obj(m, r, got, sizeof(got));
    CHECK_STR(got, "ERR: i (d2): expected int, got number 3.5 (not a whole number)");
    row_set_double(r, 6, 4.0);
    map_row_obj(m, r, got, sizeof(got));
    CHECK_STR(got, "{\"b\":true,\"d\":0.0,\"t\":\"1969-12-31T23:59:59.999Z\",\"s\":null,"
                   "\"r\":\"y\",\"n\":null,\"i\":4}");
    row_free(r);
    schema_unref(sc);
    sm_mapper_free(m);
}

/* Records: key, timestamp, meta sources, the row set on the record. */
static void records(void)
{
    const char *y = "key: code\ntimestamp: at\n"
                    "fields:\n  - {name: code, type: string}\n"
                    "  - {name: at, type: timestamp, unit: s}\n"
                    "  - {name: topic, type: string, meta: topic}\n"
                    "  - {name: off, type: long, meta: offset}\n";
    struct sm_mapper *m = mk(y, NULL);
    if (!m)
        return;
    const char *v = "{\"code\":\"16107\",\"at\":1732001704}";
    struct spoke_record *rec = rec_new("raw", NULL, 0, v, strlen(v));
    rec_set_position(rec, "file.ndjson", 42);
    char err[256];
    CHECK(sm_process(m, rec, err, sizeof(err)) == SPOKE_OK);
    CHECK(rec->klen == 5 && !memcmp(rec->key, "16107", 5));
    CHECK(rec->ts == 1732001704000);
    CHECK(rec->forms == REC_FORM_ROW);
    size_t n;
    const char *b = rec_value_bytes(rec, &n);
    CHECK(b && !strcmp(b, "{\"code\":\"16107\",\"at\":\"2024-11-19T07:35:04.000Z\","
                          "\"topic\":\"raw\",\"off\":42}"));
    /* The row it now holds maps again (row input: a timestamp stays one). */
    CHECK(rec_value_bytes(rec, &n) != NULL);
    CHECK_MSG(sm_process(m, rec, err, sizeof(err)) == SPOKE_OK, "%s", err);
    CHECK(rec->ts == 1732001704000);
    rec_free(rec);
    sm_mapper_free(m);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(conformance);
    RUN(fuzz_against_simdjson);
    RUN(paths);
    RUN(shapes);
    RUN(integers);
    RUN(coercions);
    RUN(timestamps);
    RUN(expressions);
    RUN(csv);
    RUN(lookups_and_filters);
    RUN(opts_check);
    RUN(opts_check_each);
    RUN(schema_errors);
    RUN(records);
    RUN(row_plans);
    RUN(row_coercions);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return TEST_REPORT();
}
