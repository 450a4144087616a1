/* unit-cql_mapping: cassandra_sink's `mapping` parser and INSERT builder
 * (cql_mapping.c, compiled in): every source form, quoting, errors that name
 * the problem, identifiers quoted exactly when CQL needs it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/cassandra_sink/cql_mapping.c"

#include "test.h"

static void test_sources(void)
{
    struct cql_mapping m;
    char err[256];

    int rc = cql_mapping_parse(" id = key , Temp=value.main.temp,seen= timestamp, uid=now(), "
                               "src=header.x.origin, raw=value, k2=key.a.0, "
                               "\"Mixed Col\"=value.\"odd.name\".`b``q`", &m, err, sizeof(err));
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(m.n == 8);
    CHECK_STR(m.cols[0].column, "id");
    CHECK(m.cols[0].src == CQL_MAP_KEY && m.cols[0].npath == 0);
    CHECK_STR(m.cols[1].column, "temp"); /* unquoted: case-insensitive */
    CHECK(m.cols[1].src == CQL_MAP_VALUE_PATH && m.cols[1].npath == 2);
    CHECK_STR(m.cols[1].path[0], "main");
    CHECK_STR(m.cols[1].path[1], "temp");
    CHECK_STR(m.cols[1].spec, "value.main.temp");
    CHECK(m.cols[2].src == CQL_MAP_TIMESTAMP);
    CHECK(m.cols[3].src == CQL_MAP_NOW);
    CHECK(m.cols[4].src == CQL_MAP_HEADER && m.cols[4].npath == 1);
    CHECK_STR(m.cols[4].path[0], "x.origin"); /* header names may hold dots */
    CHECK(m.cols[5].src == CQL_MAP_VALUE && m.cols[5].npath == 0);
    CHECK(m.cols[6].src == CQL_MAP_KEY_PATH && m.cols[6].npath == 2);
    CHECK_STR(m.cols[6].path[1], "0");
    CHECK_STR(m.cols[7].column, "Mixed Col");
    CHECK(m.cols[7].npath == 2);
    CHECK_STR(m.cols[7].path[0], "odd.name");
    CHECK_STR(m.cols[7].path[1], "b`q");

    char *cql = cql_insert_statement("ks", "Readings", &m, 0, 1);
    CHECK_STR(cql, "INSERT INTO ks.\"Readings\" (id, temp, seen, uid, src, raw, k2, \"Mixed Col\") "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?");
    free(cql);
    cql_mapping_free(&m);
    CHECK(m.n == 0 && m.cols == NULL);
}

static void test_errors(void)
{
    struct cql_mapping m;
    char err[256];
    static const struct { const char *text, *want; } bad[] = {
        { "", "expected a column name" },
        { "id", "expected '=' after column 'id'" },
        { "id=", "'' is not a source" },
        { "id=foo.x", "'foo.x' is not a source (value, value.<field>, key, key.<field>, "
                      "header.<name>, timestamp, now())" },
        { "id=key, ID=value.x", "column 'id' is mapped twice" },
        { "id=key,", "trailing ','" },
        { "id=value.", "empty field name in 'value.'" },
        { "id=value..a", "empty field name" },
        { "id=header", "header needs a name" },
        { "id=now", "'now' is not a source" },
        { "id=key x", "'key x' is not a source" },
        { "\"id=key", "unterminated \" quote" },
        { "1a=key", "expected a column name at '1a=key'" },
        { "id=value.\"a", "unterminated" },
        { "\"\"=key", "empty column name" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        int rc = cql_mapping_parse(bad[i].text, &m, err, sizeof(err));
        CHECK_MSG(rc < 0, "accepted: %s", bad[i].text);
        CHECK_MSG(CONTAINS(err, bad[i].want) && CONTAINS(err, "mapping: "),
                  "%s -> %s (want %s)", bad[i].text, err, bad[i].want);
        CHECK(m.n == 0 && m.cols == NULL);
    }
}

static void test_idents(void)
{
    char out[64];
    CHECK(cql_ident("temp", out, sizeof(out)) == 4);
    CHECK_STR(out, "temp");
    cql_ident("Temp", out, sizeof(out));
    CHECK_STR(out, "\"Temp\"");
    cql_ident("from", out, sizeof(out)); /* reserved */
    CHECK_STR(out, "\"from\"");
    cql_ident("_x", out, sizeof(out));
    CHECK_STR(out, "\"_x\"");
    cql_ident("a\"b", out, sizeof(out));
    CHECK_STR(out, "\"a\"\"b\"");
    cql_ident("num_bikes_available", out, sizeof(out));
    CHECK_STR(out, "num_bikes_available");
    CHECK(cql_ident("abcdef", out, 4) < 0);
    CHECK(cql_ident_plain("stationCode") && !cql_ident_plain("station code") && !cql_ident_plain("9a"));

    /* The no-mapping form: field names become columns, lowercased when plain. */
    struct cql_mapping m = { 0 };
    CHECK(cql_mapping_add_field(&m, "stationCode") == 0);
    CHECK(cql_mapping_add_field(&m, "num bikes") == 0);
    CHECK_STR(m.cols[0].column, "stationcode");
    CHECK_STR(m.cols[0].path[0], "stationCode");
    CHECK_STR(m.cols[0].spec, "value.stationCode");
    CHECK_STR(m.cols[1].column, "num bikes");
    char *cql = cql_insert_statement("velib", "status", &m, 3600, 0);
    CHECK_STR(cql, "INSERT INTO velib.status (stationcode, \"num bikes\") VALUES (?, ?) USING TTL 3600");
    free(cql);
    cql = cql_insert_statement("velib", "status", &m, 60, 1);
    CHECK(CONTAINS(cql, "USING TTL 60 AND TIMESTAMP ?"));
    free(cql);
    cql_mapping_free(&m);
}

int main(void)
{
    RUN(test_sources);
    RUN(test_errors);
    RUN(test_idents);
    return TEST_REPORT();
}
