/* unit-cql_frame: the CQL v4 codec of cassandra_sink (cql_frame.c), compiled in.
 *
 *  - primitives ([short], [int], [long], [string], [long string], [bytes],
 *    [short bytes], [value] null and unset) round trip and refuse truncation;
 *  - every request (STARTUP, OPTIONS, AUTH_RESPONSE, REGISTER, QUERY,
 *    PREPARE, EXECUTE, BATCH) encoded by the client side and decoded by the
 *    server side, field by field;
 *  - every response (ERROR with each code's extras, READY, AUTHENTICATE,
 *    SUPPORTED, RESULT void/rows/set_keyspace/prepared/schema_change,
 *    AUTH_CHALLENGE, AUTH_SUCCESS, EVENT) encoded and decoded;
 *  - every type option, nested ones included, with names; the depth limit;
 *  - the tracing / warning / custom payload prefixes;
 *  - hostile input: every truncation and random corruption of every message
 *    decodes or fails cleanly (ASan/UBSan watch).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/cassandra_sink/cql_frame.c"

#include "test.h"

static struct cql_str S(const char *s)
{
    struct cql_str r = { s, (int32_t)strlen(s) };
    return r;
}

static int str_is(struct cql_str s, const char *want)
{
    return s.p && s.n == (int32_t)strlen(want) && memcmp(s.p, want, (size_t)s.n) == 0;
}

/* Splits one frame of b: header checked, body returned. */
static int frame_of(const struct cql_buf *b, struct cql_header *h, const uint8_t **body,
                    size_t *len)
{
    char err[128];
    if (b->len < CQL_HEADER_SIZE || cql_header_decode(b->p, h, CQL_MAX_BODY, err, sizeof(err)) < 0)
        return -1;
    if (b->len != CQL_HEADER_SIZE + h->length)
        return -1;
    *body = b->p + CQL_HEADER_SIZE;
    *len = h->length;
    return 0;
}

static void test_primitives(void)
{
    struct cql_buf b = { 0 };
    struct cql_rd r;

    cql_put_u8(&b, 0xAB);
    cql_put_u16(&b, 0xFEDC);
    cql_put_i32(&b, -2);
    cql_put_i64(&b, INT64_MIN + 5);
    cql_put_string(&b, "héllo", strlen("héllo"));
    cql_put_long_string(&b, "SELECT 1", 8);
    cql_put_bytes(&b, "\x00\x01", 2);
    cql_put_bytes(&b, NULL, 0);
    cql_put_short_bytes(&b, "id", 2);
    cql_put_i32(&b, -2); /* [value] not set */
    CHECK(!b.oom);

    cql_rd_init(&r, b.p, b.len);
    CHECK(cql_get_u8(&r) == 0xAB);
    CHECK(cql_get_u16(&r) == 0xFEDC);
    CHECK(cql_get_i32(&r) == -2);
    CHECK(cql_get_i64(&r) == INT64_MIN + 5);
    CHECK(str_is(cql_get_string(&r), "héllo"));
    CHECK(str_is(cql_get_long_string(&r), "SELECT 1"));
    struct cql_str by = cql_get_bytes(&r);
    CHECK(by.n == 2 && by.p[0] == 0 && by.p[1] == 1);
    CHECK(cql_get_bytes(&r).n < 0);
    CHECK(str_is(cql_get_short_bytes(&r), "id"));
    CHECK(cql_get_value(&r).n == -2);
    CHECK(r.err == NULL && cql_rd_left(&r) == 0);
    /* Past the end: sticky error, zeros. */
    CHECK(cql_get_i32(&r) == 0 && r.err != NULL);
    CHECK(cql_get_u8(&r) == 0);

    /* A [value] below -2 is an error; a long string may not be negative. */
    b.len = 0;
    cql_put_i32(&b, -3);
    cql_rd_init(&r, b.p, b.len);
    cql_get_value(&r);
    CHECK(r.err != NULL);
    cql_rd_init(&r, b.p, b.len);
    cql_get_long_string(&r);
    CHECK(r.err != NULL);
    /* A string longer than the body. */
    b.len = 0;
    cql_put_u16(&b, 10);
    cql_put_raw(&b, "abc", 3);
    cql_rd_init(&r, b.p, b.len);
    CHECK(cql_get_string(&r).p == NULL && r.err != NULL);
    /* [bytes] claiming 2 GiB. */
    b.len = 0;
    cql_put_i32(&b, INT32_MAX);
    cql_rd_init(&r, b.p, b.len);
    CHECK(cql_get_bytes(&r).p == NULL && r.err != NULL);
    cql_buf_free(&b);
}

static void test_header(void)
{
    uint8_t raw[9];
    struct cql_header h = { CQL_VERSION_RESP, CQL_FLAG_WARNING, -1, CQL_OP_EVENT, 123456 }, d;
    char err[128];

    cql_header_encode(raw, &h);
    CHECK(raw[0] == 0x84 && raw[1] == 0x08 && raw[2] == 0xFF && raw[3] == 0xFF && raw[4] == 0x0C);
    CHECK(cql_header_decode(raw, &d, CQL_MAX_BODY, err, sizeof(err)) == 0);
    CHECK(d.version == 0x84 && d.flags == 0x08 && d.stream == -1 && d.opcode == 0x0C &&
          d.length == 123456);
    h.stream = 32767;
    cql_header_encode(raw, &h);
    CHECK(cql_header_decode(raw, &d, CQL_MAX_BODY, err, sizeof(err)) == 0 && d.stream == 32767);
    /* The length limit: the caller's, and never above 256 MiB. */
    CHECK(cql_header_decode(raw, &d, 1000, err, sizeof(err)) < 0);
    CHECK(CONTAINS(err, "123456") && CONTAINS(err, "1000"));
    h.length = CQL_MAX_BODY + 1;
    cql_header_encode(raw, &h);
    CHECK(cql_header_decode(raw, &d, SIZE_MAX, err, sizeof(err)) < 0);

    /* frame_begin/end patch the length. */
    struct cql_buf b = { 0 };
    size_t off = cql_frame_begin(&b, CQL_VERSION_REQ, CQL_OP_QUERY, 7);
    cql_put_raw(&b, "12345", 5);
    cql_frame_end(&b, off);
    CHECK(cql_header_decode(b.p, &d, CQL_MAX_BODY, err, sizeof(err)) == 0);
    CHECK(d.version == 4 && d.stream == 7 && d.opcode == CQL_OP_QUERY && d.length == 5);
    cql_buf_free(&b);
}

static void test_requests(void)
{
    struct cql_buf b = { 0 };
    struct cql_header h;
    const uint8_t *body;
    size_t len;
    struct cql_arena a = { 0 };
    char err[160];

    /* STARTUP */
    static const char *const kv[] = { "CQL_VERSION", "3.0.0", "DRIVER_NAME", "spoke" };
    cql_enc_startup(&b, 0, kv, 2);
    CHECK(frame_of(&b, &h, &body, &len) == 0 && h.opcode == CQL_OP_STARTUP && h.version == 4);
    struct cql_multimap mm;
    CHECK(cql_decode_startup(body, len, &a, &mm, err, sizeof(err)) == 0);
    uint16_t nv;
    const struct cql_str *v = cql_multimap_get(&mm, "CQL_VERSION", &nv);
    CHECK(mm.n == 2 && v && nv == 1 && str_is(v[0], "3.0.0"));
    v = cql_multimap_get(&mm, "DRIVER_NAME", &nv);
    CHECK(v && str_is(v[0], "spoke"));
    CHECK(cql_multimap_get(&mm, "COMPRESSION", &nv) == NULL && nv == 0);

    /* OPTIONS: empty body */
    b.len = 0;
    cql_enc_options(&b, 3);
    CHECK(frame_of(&b, &h, &body, &len) == 0 && h.opcode == CQL_OP_OPTIONS && len == 0 &&
          h.stream == 3);

    /* AUTH_RESPONSE: SASL PLAIN token with NULs */
    b.len = 0;
    cql_enc_auth_response(&b, 0, "\0user\0pw", 8);
    CHECK(frame_of(&b, &h, &body, &len) == 0 && h.opcode == CQL_OP_AUTH_RESPONSE);
    struct cql_str tok;
    CHECK(cql_decode_token(body, len, &tok, err, sizeof(err)) == 0);
    CHECK(tok.n == 8 && memcmp(tok.p, "\0user\0pw", 8) == 0);

    /* REGISTER */
    b.len = 0;
    static const char *const evs[] = { "TOPOLOGY_CHANGE", "STATUS_CHANGE", "SCHEMA_CHANGE" };
    cql_enc_register(&b, 1, evs, 3);
    CHECK(frame_of(&b, &h, &body, &len) == 0 && h.opcode == CQL_OP_REGISTER);
    CHECK(cql_decode_register(body, len, &a, &mm, err, sizeof(err)) == 0);
    CHECK(mm.n == 3 && str_is(mm.keys[0], "TOPOLOGY_CHANGE") && str_is(mm.keys[2], "SCHEMA_CHANGE"));

    /* PREPARE */
    b.len = 0;
    const char *ins = "INSERT INTO ks.t (id, v) VALUES (?, ?)";
    cql_enc_prepare(&b, 9, ins, strlen(ins));
    CHECK(frame_of(&b, &h, &body, &len) == 0 && h.opcode == CQL_OP_PREPARE && h.stream == 9);
    struct cql_str q;
    CHECK(cql_decode_prepare(body, len, &q, err, sizeof(err)) == 0 && str_is(q, ins));

    /* QUERY without and with values */
    struct cql_params p;
    b.len = 0;
    cql_enc_query(&b, 2, "SELECT now() FROM system.local", 30, CQL_LOCAL_ONE, 0, NULL, 0);
    CHECK(frame_of(&b, &h, &body, &len) == 0 && h.opcode == CQL_OP_QUERY);
    CHECK(cql_decode_query(body, len, &q, &p, err, sizeof(err)) == 0);
    CHECK(str_is(q, "SELECT now() FROM system.local") && p.consistency == CQL_LOCAL_ONE &&
          p.flags == 0 && p.nvalues == 0);

    struct cql_buf vals = { 0 };
    cql_put_bytes(&vals, "abc", 3);
    cql_put_i32(&vals, -1);
    cql_put_i32(&vals, -2);
    b.len = 0;
    cql_enc_query(&b, 2, "INSERT ...", 10, CQL_QUORUM, 3, vals.p, vals.len);
    CHECK(frame_of(&b, &h, &body, &len) == 0);
    CHECK(cql_decode_query(body, len, &q, &p, err, sizeof(err)) == 0);
    CHECK(p.consistency == CQL_QUORUM && p.flags == 1 && p.nvalues == 3 &&
          p.values.n == (int32_t)vals.len && memcmp(p.values.p, vals.p, vals.len) == 0);

    /* EXECUTE */
    b.len = 0;
    cql_enc_execute(&b, 300, "\x01\x02\x03\x04", 4, CQL_LOCAL_QUORUM, 3, vals.p, vals.len);
    CHECK(frame_of(&b, &h, &body, &len) == 0 && h.opcode == CQL_OP_EXECUTE && h.stream == 300);
    struct cql_str id;
    CHECK(cql_decode_execute(body, len, &id, &p, err, sizeof(err)) == 0);
    CHECK(id.n == 4 && memcmp(id.p, "\x01\x02\x03\x04", 4) == 0);
    CHECK(p.consistency == CQL_LOCAL_QUORUM && p.nvalues == 3 &&
          memcmp(p.values.p, vals.p, vals.len) == 0);
    {
        struct cql_rd r;
        cql_rd_init(&r, p.values.p, (size_t)p.values.n);
        CHECK(str_is(cql_get_value(&r), "abc"));
        CHECK(cql_get_value(&r).n == -1);
        CHECK(cql_get_value(&r).n == -2);
    }

    /* BATCH: prepared and query statements, unlogged */
    b.len = 0;
    size_t off = cql_enc_batch_begin(&b, 17, CQL_BATCH_UNLOGGED, 3);
    cql_enc_batch_prepared(&b, "ID1", 3, 3, vals.p, vals.len);
    cql_enc_batch_query(&b, "INSERT INTO x (a) VALUES (1)", 28, 0, NULL, 0);
    cql_enc_batch_prepared(&b, "ID22", 4, 3, vals.p, vals.len);
    cql_enc_batch_end(&b, off, CQL_ONE);
    CHECK(frame_of(&b, &h, &body, &len) == 0 && h.opcode == CQL_OP_BATCH && h.stream == 17);
    struct cql_batch bt;
    CHECK(cql_decode_batch(body, len, &a, &bt, err, sizeof(err)) == 0);
    CHECK(bt.type == CQL_BATCH_UNLOGGED && bt.n == 3 && bt.consistency == CQL_ONE && bt.flags == 0);
    CHECK(bt.stmts[0].kind == 1 && str_is(bt.stmts[0].query_or_id, "ID1") &&
          bt.stmts[0].nvalues == 3 && bt.stmts[0].values.n == (int32_t)vals.len);
    CHECK(bt.stmts[1].kind == 0 && str_is(bt.stmts[1].query_or_id, "INSERT INTO x (a) VALUES (1)") &&
          bt.stmts[1].nvalues == 0);
    CHECK(bt.stmts[2].kind == 1 && str_is(bt.stmts[2].query_or_id, "ID22"));

    /* A batch statement kind other than 0/1 is refused. */
    b.p[CQL_HEADER_SIZE + 3] = 7;
    CHECK(frame_of(&b, &h, &body, &len) == 0);
    CHECK(cql_decode_batch(body, len, &a, &bt, err, sizeof(err)) < 0 && CONTAINS(err, "kind"));

    cql_buf_free(&vals);
    cql_buf_free(&b);
    cql_arena_free(&a);
}

static void roundtrip_error(const struct cql_error *in, const char *want_text)
{
    struct cql_buf b = { 0 };
    struct cql_header h;
    const uint8_t *body;
    size_t len;
    struct cql_error out;
    char err[160], text[400];

    cql_enc_error(&b, 5, in);
    CHECK(frame_of(&b, &h, &body, &len) == 0 && h.opcode == CQL_OP_ERROR && h.version == 0x84);
    CHECK_MSG(cql_decode_error(body, len, &out, err, sizeof(err)) == 0, "code 0x%x: %s",
              (unsigned)in->code, err);
    CHECK(out.code == in->code && out.msg.n == in->msg.n &&
          memcmp(out.msg.p, in->msg.p, (size_t)in->msg.n) == 0);
    CHECK(out.cl == in->cl && out.required == in->required && out.alive == in->alive);
    CHECK(out.received == in->received && out.blockfor == in->blockfor);
    CHECK(out.numfailures == in->numfailures && out.data_present == in->data_present);
    CHECK(out.write_type.n == in->write_type.n);
    CHECK(out.id.n == in->id.n && (in->id.n <= 0 || memcmp(out.id.p, in->id.p, (size_t)in->id.n) == 0));
    CHECK(out.ks.n == in->ks.n && out.table.n == in->table.n);
    cql_error_text(&out, text, sizeof(text));
    CHECK_MSG(CONTAINS(text, want_text), "%s lacks %s", text, want_text);
    /* Every truncation fails cleanly (the message is required). */
    for (size_t cut = 0; cut < len; cut++) {
        int rc = cql_decode_error(body, cut, &out, err, sizeof(err));
        (void)rc;
    }
    CHECK(cql_decode_error(body, 5, &out, err, sizeof(err)) < 0);
    cql_buf_free(&b);
}

static void test_errors(void)
{
    struct cql_error e;

    memset(&e, 0, sizeof(e));
    e.code = CQL_ERR_INVALID;
    e.msg = S("Invalid null value in condition for column id");
    roundtrip_error(&e, "server error 0x2200 (Invalid): Invalid null value in condition for column id");

    memset(&e, 0, sizeof(e));
    e.code = CQL_ERR_UNAVAILABLE;
    e.msg = S("Cannot achieve consistency level LOCAL_QUORUM");
    e.cl = CQL_LOCAL_QUORUM;
    e.required = 2;
    e.alive = 1;
    roundtrip_error(&e, "0x1000 (Unavailable): Cannot achieve consistency level LOCAL_QUORUM "
                        "[consistency local_quorum, 2 replicas required, 1 alive]");

    memset(&e, 0, sizeof(e));
    e.code = CQL_ERR_WRITE_TIMEOUT;
    e.msg = S("Operation timed out");
    e.cl = CQL_ONE;
    e.received = 0;
    e.blockfor = 1;
    e.write_type = S("UNLOGGED_BATCH");
    roundtrip_error(&e, "(Write_timeout): Operation timed out [consistency one, 0 of 1 replicas "
                        "acknowledged, write type UNLOGGED_BATCH]");

    memset(&e, 0, sizeof(e));
    e.code = CQL_ERR_WRITE_FAILURE;
    e.msg = S("failed");
    e.cl = CQL_ALL;
    e.received = 1;
    e.blockfor = 3;
    e.numfailures = 2;
    e.write_type = S("SIMPLE");
    roundtrip_error(&e, "Write_failure");

    memset(&e, 0, sizeof(e));
    e.code = CQL_ERR_READ_TIMEOUT;
    e.msg = S("read timed out");
    e.cl = CQL_QUORUM;
    e.received = 1;
    e.blockfor = 2;
    e.data_present = 1;
    roundtrip_error(&e, "Read_timeout");

    memset(&e, 0, sizeof(e));
    e.code = CQL_ERR_READ_FAILURE;
    e.msg = S("read failed");
    e.numfailures = 1;
    roundtrip_error(&e, "Read_failure");

    memset(&e, 0, sizeof(e));
    e.code = CQL_ERR_FUNC_FAILURE;
    e.msg = S("boom");
    e.ks = S("ks");
    e.table = S("fn");
    roundtrip_error(&e, "Function_failure");

    memset(&e, 0, sizeof(e));
    e.code = CQL_ERR_ALREADY_EXISTS;
    e.msg = S("Cannot add existing table");
    e.ks = S("ks");
    e.table = S("t");
    roundtrip_error(&e, "Already_exists");

    memset(&e, 0, sizeof(e));
    e.code = CQL_ERR_UNPREPARED;
    e.msg = S("Prepared query with ID 0a0b not found");
    e.id = (struct cql_str){ "\x0a\x0b", 2 };
    roundtrip_error(&e, "0x2500 (Unprepared)");

    static const int32_t plain[] = { CQL_ERR_SERVER, CQL_ERR_PROTOCOL, CQL_ERR_AUTH,
                                     CQL_ERR_OVERLOADED, CQL_ERR_BOOTSTRAPPING, CQL_ERR_TRUNCATE,
                                     CQL_ERR_SYNTAX, CQL_ERR_UNAUTHORIZED, CQL_ERR_CONFIG, 0x7777 };
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        memset(&e, 0, sizeof(e));
        e.code = plain[i];
        e.msg = S("m");
        roundtrip_error(&e, cql_error_name(plain[i]));
    }
    CHECK(strcmp(cql_error_name(CQL_ERR_SYNTAX), "Syntax_error") == 0);
    CHECK(strcmp(cql_consistency_name(CQL_LOCAL_ONE), "local_one") == 0);
    CHECK(cql_consistency_name(99) == NULL);
    CHECK(cql_consistency_parse("each_quorum") == CQL_EACH_QUORUM);
    CHECK(cql_consistency_parse("LOCAL_ONE") == -1);
}

/* A type tree built by hand: map<text, frozen<list<tuple<int, udt>>>>. */
static const struct cql_type *sample_type(struct cql_arena *a)
{
    struct cql_type *udt = cql_arena_alloc(a, sizeof(*udt));
    udt->id = CQL_T_UDT;
    udt->custom = S("ks");
    udt->udt_name = S("addr");
    udt->n = 2;
    udt->names = cql_arena_alloc(a, 2 * sizeof(*udt->names));
    udt->names[0] = S("street");
    udt->names[1] = S("zip");
    udt->sub = cql_arena_alloc(a, 2 * sizeof(*udt->sub));
    udt->sub[0] = cql_type_simple(CQL_T_VARCHAR);
    udt->sub[1] = cql_type_simple(CQL_T_INT);
    struct cql_type *tup = cql_arena_alloc(a, sizeof(*tup));
    tup->id = CQL_T_TUPLE;
    tup->n = 2;
    tup->sub = cql_arena_alloc(a, 2 * sizeof(*tup->sub));
    tup->sub[0] = cql_type_simple(CQL_T_INT);
    tup->sub[1] = udt;
    struct cql_type *list = cql_arena_alloc(a, sizeof(*list));
    list->id = CQL_T_LIST;
    list->n = 1;
    list->sub = cql_arena_alloc(a, sizeof(*list->sub));
    list->sub[0] = tup;
    struct cql_type *map = cql_arena_alloc(a, sizeof(*map));
    map->id = CQL_T_MAP;
    map->n = 2;
    map->sub = cql_arena_alloc(a, 2 * sizeof(*map->sub));
    map->sub[0] = cql_type_simple(CQL_T_VARCHAR);
    map->sub[1] = list;
    return map;
}

static void test_types(void)
{
    struct cql_arena a = { 0 };
    struct cql_buf b = { 0 };
    struct cql_rd r;
    char name[200];

    /* Every simple type. */
    static const struct { uint16_t id; const char *name; } simple[] = {
        { CQL_T_ASCII, "ascii" }, { CQL_T_BIGINT, "bigint" }, { CQL_T_BLOB, "blob" },
        { CQL_T_BOOLEAN, "boolean" }, { CQL_T_COUNTER, "counter" }, { CQL_T_DECIMAL, "decimal" },
        { CQL_T_DOUBLE, "double" }, { CQL_T_FLOAT, "float" }, { CQL_T_INT, "int" },
        { CQL_T_TIMESTAMP, "timestamp" }, { CQL_T_UUID, "uuid" }, { CQL_T_VARCHAR, "text" },
        { CQL_T_VARINT, "varint" }, { CQL_T_TIMEUUID, "timeuuid" }, { CQL_T_INET, "inet" },
        { CQL_T_DATE, "date" }, { CQL_T_TIME, "time" }, { CQL_T_SMALLINT, "smallint" },
        { CQL_T_TINYINT, "tinyint" },
    };
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        b.len = 0;
        cql_type_encode(&b, cql_type_simple(simple[i].id));
        CHECK(b.len == 2);
        cql_rd_init(&r, b.p, b.len);
        const struct cql_type *t = cql_type_decode(&r, &a, 0);
        CHECK(t && t->id == simple[i].id && r.err == NULL);
        CHECK_STR(cql_type_name(t, name, sizeof(name)), simple[i].name);
    }
    CHECK(cql_type_simple(0x000A) == NULL && cql_type_simple(0x20) == NULL);

    /* Nested, and custom. */
    const struct cql_type *deep = sample_type(&a);
    b.len = 0;
    cql_type_encode(&b, deep);
    cql_rd_init(&r, b.p, b.len);
    const struct cql_type *back = cql_type_decode(&r, &a, 0);
    CHECK(back && cql_rd_left(&r) == 0 && cql_type_equal(deep, back));
    CHECK_STR(cql_type_name(back, name, sizeof(name)), "map<text, list<tuple<int, ks.addr>>>");
    CHECK(str_is(back->sub[1]->sub[0]->sub[1]->names[1], "zip"));

    struct cql_type custom = { .id = CQL_T_CUSTOM, .custom = S("org.example.Geo") };
    struct cql_type set = { .id = CQL_T_SET, .n = 1 };
    const struct cql_type *setsub[1] = { &custom };
    set.sub = setsub;
    b.len = 0;
    cql_type_encode(&b, &set);
    cql_rd_init(&r, b.p, b.len);
    back = cql_type_decode(&r, &a, 0);
    CHECK(back && cql_type_equal(&set, back));
    CHECK_STR(cql_type_name(back, name, sizeof(name)), "set<'org.example.Geo'>");
    CHECK(!cql_type_equal(back, deep));

    /* Depth limit: list<list<...>> deeper than CQL_TYPE_DEPTH. */
    b.len = 0;
    for (int i = 0; i < CQL_TYPE_DEPTH + 2; i++)
        cql_put_u16(&b, CQL_T_LIST);
    cql_put_u16(&b, CQL_T_INT);
    cql_rd_init(&r, b.p, b.len);
    CHECK(cql_type_decode(&r, &a, 0) == NULL && r.err && CONTAINS(r.err, "deeply"));
    /* Unknown id, 0x000A, and a tuple claiming 60000 elements. */
    b.len = 0;
    cql_put_u16(&b, 0x000A);
    cql_rd_init(&r, b.p, b.len);
    CHECK(cql_type_decode(&r, &a, 0) == NULL && r.err);
    b.len = 0;
    cql_put_u16(&b, CQL_T_TUPLE);
    cql_put_u16(&b, 60000);
    cql_put_u16(&b, CQL_T_INT);
    cql_rd_init(&r, b.p, b.len);
    CHECK(cql_type_decode(&r, &a, 0) == NULL && r.err);

    cql_buf_free(&b);
    cql_arena_free(&a);
}

/* Decodes a RESULT frame from b. */
static int decode_result(const struct cql_buf *b, struct cql_arena *a, struct cql_result *res)
{
    struct cql_header h;
    const uint8_t *body;
    size_t len;
    char err[160];
    if (frame_of(b, &h, &body, &len) < 0 || h.opcode != CQL_OP_RESULT)
        return -1;
    return cql_decode_result(body, len, a, res, err, sizeof(err));
}

static void test_results(void)
{
    struct cql_buf b = { 0 };
    struct cql_arena a = { 0 };
    struct cql_result res;

    cql_enc_result_void(&b, 1);
    CHECK(decode_result(&b, &a, &res) == 0 && res.kind == CQL_RESULT_VOID);

    b.len = 0;
    cql_enc_result_set_keyspace(&b, 1, "weather");
    CHECK(decode_result(&b, &a, &res) == 0 && res.kind == CQL_RESULT_SET_KEYSPACE &&
          str_is(res.keyspace, "weather"));

    b.len = 0;
    cql_enc_result_schema_change(&b, 1, "CREATED", "KEYSPACE", "ks", NULL);
    CHECK(decode_result(&b, &a, &res) == 0 && res.kind == CQL_RESULT_SCHEMA_CHANGE);
    CHECK(str_is(res.change, "CREATED") && str_is(res.target, "KEYSPACE") && str_is(res.sc_ks, "ks") &&
          res.sc_name.p == NULL);
    b.len = 0;
    cql_enc_result_schema_change(&b, 1, "UPDATED", "TABLE", "ks", "t");
    CHECK(decode_result(&b, &a, &res) == 0 && str_is(res.sc_name, "t") &&
          str_is(res.target, "TABLE"));
    /* FUNCTION carries argument types. */
    b.len = 0;
    size_t off = cql_frame_begin(&b, CQL_VERSION_RESP, CQL_OP_RESULT, 1);
    cql_put_i32(&b, CQL_RESULT_SCHEMA_CHANGE);
    cql_put_string(&b, "CREATED", 7);
    cql_put_string(&b, "FUNCTION", 8);
    cql_put_string(&b, "ks", 2);
    cql_put_string(&b, "f", 1);
    cql_put_u16(&b, 2);
    cql_put_string(&b, "int", 3);
    cql_put_string(&b, "text", 4);
    cql_frame_end(&b, off);
    CHECK(decode_result(&b, &a, &res) == 0 && res.sc_nargs == 2 && str_is(res.sc_args[1], "text"));

    /* PREPARED: bind metadata with partition key indexes, global spec;
     * result metadata with NO_METADATA. */
    struct cql_col cols[3] = {
        { .name = S("id"), .type = cql_type_simple(CQL_T_VARCHAR) },
        { .name = S("temp"), .type = cql_type_simple(CQL_T_INT) },
        { .name = S("[timestamp]"), .type = cql_type_simple(CQL_T_BIGINT) },
    };
    uint16_t pk[1] = { 0 };
    struct cql_meta bind = { .ncols = 3, .npk = 1, .pk = pk, .ks = S("ks"), .table = S("t"),
                             .cols = cols, .paging_state = { NULL, -1 } };
    struct cql_meta none = { .flags = CQL_META_NO_METADATA, .paging_state = { NULL, -1 } };
    b.len = 0;
    cql_enc_result_prepared(&b, 4, "\xde\xad\xbe\xef", 4, &bind, &none);
    CHECK(decode_result(&b, &a, &res) == 0 && res.kind == CQL_RESULT_PREPARED);
    CHECK(res.id.n == 4 && memcmp(res.id.p, "\xde\xad\xbe\xef", 4) == 0);
    CHECK(res.bind.ncols == 3 && res.bind.npk == 1 && res.bind.pk[0] == 0);
    CHECK(res.bind.flags & CQL_META_GLOBAL_SPEC);
    CHECK(str_is(res.bind.cols[1].name, "temp") && res.bind.cols[1].type->id == CQL_T_INT);
    CHECK(str_is(res.bind.cols[2].ks, "ks") && str_is(res.bind.cols[2].table, "t"));
    CHECK(res.meta.flags & CQL_META_NO_METADATA && res.meta.cols == NULL);
    /* Same without a global spec: per-column keyspace/table. */
    for (int i = 0; i < 3; i++) {
        cols[i].ks = S("ks");
        cols[i].table = S(i == 2 ? "u" : "t");
    }
    bind.ks.p = NULL;
    b.len = 0;
    cql_enc_result_prepared(&b, 4, "\x01", 1, &bind, &none);
    CHECK(decode_result(&b, &a, &res) == 0 && !(res.bind.flags & CQL_META_GLOBAL_SPEC));
    CHECK(str_is(res.bind.cols[2].table, "u") && str_is(res.bind.cols[0].table, "t"));
    /* A partition key index past the columns is refused. */
    pk[0] = 3;
    b.len = 0;
    cql_enc_result_prepared(&b, 4, "\x01", 1, &bind, &none);
    CHECK(decode_result(&b, &a, &res) < 0);
    pk[0] = 0;

    /* ROWS: two rows of (text, int, list<int>) with a null, and paging. */
    struct cql_type lt = { .id = CQL_T_LIST, .n = 1 };
    const struct cql_type *ltsub[1] = { cql_type_simple(CQL_T_INT) };
    lt.sub = ltsub;
    struct cql_col rc[3] = {
        { .name = S("id"), .type = cql_type_simple(CQL_T_VARCHAR) },
        { .name = S("n"), .type = cql_type_simple(CQL_T_INT) },
        { .name = S("l"), .type = &lt },
    };
    struct cql_meta rm = { .ncols = 3, .ks = S("ks"), .table = S("t"), .cols = rc,
                           .paging_state = { "\x07\x08", 2 } };
    struct cql_buf rows = { 0 };
    cql_put_bytes(&rows, "a", 1);
    cql_put_bytes(&rows, "\x00\x00\x00\x2a", 4);
    cql_put_bytes(&rows, "\x00\x00\x00\x01\x00\x00\x00\x04\x00\x00\x00\x07", 12);
    cql_put_bytes(&rows, "b", 1);
    cql_put_bytes(&rows, NULL, 0);
    cql_put_bytes(&rows, "\x00\x00\x00\x00", 4);
    b.len = 0;
    cql_enc_result_rows(&b, 1, &rm, 2, rows.p, rows.len);
    CHECK(decode_result(&b, &a, &res) == 0 && res.kind == CQL_RESULT_ROWS);
    CHECK(res.nrows == 2 && res.meta.ncols == 3 && (res.meta.flags & CQL_META_MORE_PAGES));
    CHECK(res.meta.paging_state.n == 2);
    CHECK(res.meta.cols[2].type->id == CQL_T_LIST);
    CHECK(str_is(cql_rows_cell(&res, 1, 0), "b"));
    CHECK(cql_rows_cell(&res, 1, 1).n < 0);
    CHECK(cql_rows_cell(&res, 0, 1).n == 4);
    CHECK(cql_rows_cell(&res, 2, 0).n < 0 && cql_rows_cell(&res, 0, 3).n < 0);
    /* Row count larger than the body could hold: refused before looping. */
    b.len = 0;
    cql_enc_result_rows(&b, 1, &rm, 1000000, rows.p, rows.len);
    CHECK(decode_result(&b, &a, &res) < 0);
    /* Zero columns and a huge row count: nothing to read, no loop. */
    struct cql_meta zero = { .flags = CQL_META_NO_METADATA, .ncols = 0, .paging_state = { NULL, -1 } };
    b.len = 0;
    cql_enc_result_rows(&b, 1, &zero, INT32_MAX, NULL, 0);
    CHECK(decode_result(&b, &a, &res) == 0 && res.nrows == INT32_MAX);
    /* Unknown kind. */
    b.len = 0;
    off = cql_frame_begin(&b, CQL_VERSION_RESP, CQL_OP_RESULT, 1);
    cql_put_i32(&b, 9);
    cql_frame_end(&b, off);
    CHECK(decode_result(&b, &a, &res) < 0);

    cql_buf_free(&rows);
    cql_buf_free(&b);
    cql_arena_free(&a);
}

static void test_other_responses(void)
{
    struct cql_buf b = { 0 };
    struct cql_arena a = { 0 };
    struct cql_header h;
    const uint8_t *body;
    size_t len;
    char err[160];
    struct cql_str s;

    cql_enc_ready(&b, 0);
    CHECK(frame_of(&b, &h, &body, &len) == 0 && h.opcode == CQL_OP_READY && len == 0);

    b.len = 0;
    cql_enc_authenticate(&b, 0, "org.apache.cassandra.auth.PasswordAuthenticator");
    CHECK(frame_of(&b, &h, &body, &len) == 0 && h.opcode == CQL_OP_AUTHENTICATE);
    CHECK(cql_decode_authenticate(body, len, &s, err, sizeof(err)) == 0 &&
          str_is(s, "org.apache.cassandra.auth.PasswordAuthenticator"));

    b.len = 0;
    cql_enc_token(&b, CQL_OP_AUTH_CHALLENGE, 0, "nonce", 5);
    CHECK(frame_of(&b, &h, &body, &len) == 0 && h.opcode == CQL_OP_AUTH_CHALLENGE);
    CHECK(cql_decode_token(body, len, &s, err, sizeof(err)) == 0 && str_is(s, "nonce"));
    b.len = 0;
    cql_enc_token(&b, CQL_OP_AUTH_SUCCESS, 0, NULL, 0);
    CHECK(frame_of(&b, &h, &body, &len) == 0 && h.opcode == CQL_OP_AUTH_SUCCESS);
    CHECK(cql_decode_token(body, len, &s, err, sizeof(err)) == 0 && s.n < 0);

    static const char *const keys[] = { "CQL_VERSION", "COMPRESSION", "PROTOCOL_VERSIONS" };
    static const char *const v0[] = { "3.4.5" };
    static const char *const v1[] = { "snappy", "lz4" };
    static const char *const v2[] = { "3/v3", "4/v4", "5/v5-beta" };
    static const char *const *const vals[] = { v0, v1, v2 };
    static const uint16_t nv[] = { 1, 2, 3 };
    b.len = 0;
    cql_enc_supported(&b, 0, keys, vals, nv, 3);
    CHECK(frame_of(&b, &h, &body, &len) == 0 && h.opcode == CQL_OP_SUPPORTED);
    struct cql_multimap mm;
    CHECK(cql_decode_supported(body, len, &a, &mm, err, sizeof(err)) == 0 && mm.n == 3);
    uint16_t n;
    const struct cql_str *v = cql_multimap_get(&mm, "COMPRESSION", &n);
    CHECK(v && n == 2 && str_is(v[1], "lz4"));
    v = cql_multimap_get(&mm, "PROTOCOL_VERSIONS", &n);
    CHECK(v && n == 3 && str_is(v[2], "5/v5-beta"));

    struct cql_event ev;
    b.len = 0;
    cql_enc_event_status(&b, "STATUS_CHANGE", "DOWN", (const uint8_t *)"\x7f\x00\x00\x01", 4, 9042);
    CHECK(frame_of(&b, &h, &body, &len) == 0 && h.opcode == CQL_OP_EVENT && h.stream == -1);
    CHECK(cql_decode_event(body, len, &ev, err, sizeof(err)) == 0);
    CHECK(str_is(ev.type, "STATUS_CHANGE") && str_is(ev.change, "DOWN") && ev.addrlen == 4 &&
          ev.addr[0] == 127 && ev.port == 9042);
    b.len = 0;
    size_t off = cql_frame_begin(&b, CQL_VERSION_RESP, CQL_OP_EVENT, -1);
    cql_put_string(&b, "SCHEMA_CHANGE", 13);
    cql_put_string(&b, "CREATED", 7);
    cql_put_string(&b, "TABLE", 5);
    cql_put_string(&b, "ks", 2);
    cql_put_string(&b, "t", 1);
    cql_frame_end(&b, off);
    CHECK(frame_of(&b, &h, &body, &len) == 0);
    CHECK(cql_decode_event(body, len, &ev, err, sizeof(err)) == 0 && str_is(ev.target, "TABLE") &&
          str_is(ev.name, "t"));
    /* An inet of 5 bytes is refused. */
    b.len = 0;
    cql_enc_event_status(&b, "TOPOLOGY_CHANGE", "NEW_NODE", (const uint8_t *)"12345", 5, 1);
    CHECK(frame_of(&b, &h, &body, &len) == 0);
    CHECK(cql_decode_event(body, len, &ev, err, sizeof(err)) < 0);

    cql_buf_free(&b);
    cql_arena_free(&a);
}

static void test_prefixes(void)
{
    struct cql_buf b = { 0 };
    struct cql_header h = { CQL_VERSION_RESP, CQL_FLAG_TRACING | CQL_FLAG_WARNING | CQL_FLAG_PAYLOAD,
                            3, CQL_OP_RESULT, 0 };
    const uint8_t *body;
    size_t len;
    struct cql_rd w;
    uint16_t nw;
    char err[160];

    cql_put_raw(&b, "0123456789abcdef", 16);          /* tracing id */
    cql_put_u16(&b, 2);                                /* warnings */
    cql_put_string(&b, "Unlogged batch covering 3 partitions", 36);
    cql_put_string(&b, "second", 6);
    cql_put_u16(&b, 1);                                /* custom payload */
    cql_put_string(&b, "k", 1);
    cql_put_bytes(&b, "v", 1);
    cql_put_i32(&b, CQL_RESULT_VOID);
    CHECK(cql_response_body(&h, b.p, b.len, &body, &len, &w, &nw, err, sizeof(err)) == 0);
    CHECK(len == 4 && body[3] == 1 && nw == 2);
    CHECK(str_is(cql_get_string(&w), "Unlogged batch covering 3 partitions"));
    CHECK(str_is(cql_get_string(&w), "second"));
    /* Only warnings. */
    h.flags = CQL_FLAG_WARNING;
    CHECK(cql_response_body(&h, b.p + 16, b.len - 16, &body, &len, &w, &nw, err, sizeof(err)) < 0 ||
          len != 4); /* the payload is not stripped without its flag */
    /* Truncated tracing id. */
    h.flags = CQL_FLAG_TRACING;
    CHECK(cql_response_body(&h, b.p, 10, &body, &len, &w, &nw, err, sizeof(err)) < 0);
    /* Compression was never negotiated. */
    h.flags = CQL_FLAG_COMPRESSION;
    CHECK(cql_response_body(&h, b.p, b.len, &body, &len, &w, &nw, err, sizeof(err)) < 0 &&
          CONTAINS(err, "compress"));
    cql_buf_free(&b);
}

/* Every decoder on every prefix and on random corruptions of a corpus of
 * valid bodies: must return 0 or -1, never crash or leak. */
static void test_hostile(void)
{
    struct cql_buf frames[16];
    size_t nf = 0;
    unsigned seed = 12345;
    struct cql_error e;
    memset(frames, 0, sizeof(frames));

    e = (struct cql_error){ .code = CQL_ERR_WRITE_TIMEOUT, .msg = S("x"), .write_type = S("BATCH") };
    cql_enc_error(&frames[nf++], 1, &e);
    struct cql_arena ta = { 0 };
    struct cql_col cols[2] = { { .name = S("m"), .type = sample_type(&ta) },
                               { .name = S("i"), .type = cql_type_simple(CQL_T_INT) } };
    uint16_t pk[1] = { 1 };
    struct cql_meta bind = { .ncols = 2, .npk = 1, .pk = pk, .ks = S("k"), .table = S("t"),
                             .cols = cols, .paging_state = { NULL, -1 } };
    struct cql_meta rows_meta = bind;
    rows_meta.npk = 0;
    cql_enc_result_prepared(&frames[nf++], 1, "id", 2, &bind, &rows_meta);
    struct cql_buf rows = { 0 };
    cql_put_bytes(&rows, "\x00\x00\x00\x00", 4);
    cql_put_bytes(&rows, "\x00\x00\x00\x05", 4);
    cql_enc_result_rows(&frames[nf++], 1, &rows_meta, 1, rows.p, rows.len);
    cql_enc_result_schema_change(&frames[nf++], 1, "CREATED", "TABLE", "k", "t");
    static const char *const keys[] = { "CQL_VERSION" };
    static const char *const v0[] = { "3.4.5", "3.0.0" };
    static const char *const *const vals[] = { v0 };
    static const uint16_t nv[] = { 2 };
    cql_enc_supported(&frames[nf++], 0, keys, vals, nv, 1);
    struct cql_buf vb = { 0 };
    cql_put_bytes(&vb, "abc", 3);
    size_t off = cql_enc_batch_begin(&frames[nf], 1, 1, 2);
    cql_enc_batch_prepared(&frames[nf], "id", 2, 1, vb.p, vb.len);
    cql_enc_batch_query(&frames[nf], "q", 1, 1, vb.p, vb.len);
    cql_enc_batch_end(&frames[nf++], off, 1);
    cql_enc_execute(&frames[nf++], 1, "id", 2, 1, 1, vb.p, vb.len);
    static const char *const kv[] = { "CQL_VERSION", "3.0.0" };
    cql_enc_startup(&frames[nf++], 0, kv, 1);
    cql_enc_event_status(&frames[nf++], "STATUS_CHANGE", "UP", (const uint8_t *)"\1\2\3\4", 4, 1);

    long decoded = 0;
    for (size_t i = 0; i < nf; i++) {
        const uint8_t *body = frames[i].p + CQL_HEADER_SIZE;
        size_t blen = frames[i].len - CQL_HEADER_SIZE;
        uint8_t *copy = malloc(blen + 1);
        for (int round = 0; round < 400; round++) {
            size_t len = blen;
            memcpy(copy, body, blen);
            if (round < (int)blen + 1) {
                len = (size_t)round; /* every prefix */
            } else {
                for (int k = 0; k < 3; k++) {
                    seed = seed * 1103515245 + 12345;
                    copy[(seed >> 8) % blen] = (uint8_t)(seed >> 16);
                }
            }
            struct cql_arena a = { 0 };
            char err[160];
            struct cql_result res;
            struct cql_multimap mm;
            struct cql_batch bt;
            struct cql_params p;
            struct cql_str s;
            struct cql_event ev;
            struct cql_error er;
            decoded += cql_decode_error(copy, len, &er, err, sizeof(err)) == 0;
            int ok = cql_decode_result(copy, len, &a, &res, err, sizeof(err)) == 0;
            decoded += ok;
            if (ok && res.kind == CQL_RESULT_ROWS)
                for (int32_t c = 0; c < res.meta.ncols && c < 4; c++)
                    cql_rows_cell(&res, 0, c);
            decoded += cql_decode_supported(copy, len, &a, &mm, err, sizeof(err)) == 0;
            decoded += cql_decode_batch(copy, len, &a, &bt, err, sizeof(err)) == 0;
            decoded += cql_decode_execute(copy, len, &s, &p, err, sizeof(err)) == 0;
            decoded += cql_decode_query(copy, len, &s, &p, err, sizeof(err)) == 0;
            decoded += cql_decode_startup(copy, len, &a, &mm, err, sizeof(err)) == 0;
            decoded += cql_decode_event(copy, len, &ev, err, sizeof(err)) == 0;
            decoded += cql_decode_register(copy, len, &a, &mm, err, sizeof(err)) == 0;
            cql_arena_free(&a);
        }
        free(copy);
    }
    CHECK(decoded > 0);
    for (size_t i = 0; i < nf + 1 && i < 16; i++)
        cql_buf_free(&frames[i]);
    cql_buf_free(&rows);
    cql_buf_free(&vb);
    cql_arena_free(&ta);
}

static void test_oom_sticky(void)
{
    struct cql_buf b = { 0 };
    b.oom = 1;
    cql_put_i32(&b, 5);
    cql_put_string(&b, "abc", 3);
    CHECK(b.len == 0 && b.p == NULL);
    /* A huge reservation fails and sets the flag without allocating. */
    struct cql_buf c = { 0 };
    CHECK(cql_buf_reserve(&c, SIZE_MAX - 10) < 0 && c.oom);
    cql_buf_free(&c);
}

int main(void)
{
    RUN(test_primitives);
    RUN(test_header);
    RUN(test_requests);
    RUN(test_errors);
    RUN(test_types);
    RUN(test_results);
    RUN(test_other_responses);
    RUN(test_prefixes);
    RUN(test_hostile);
    RUN(test_oom_sticky);
    return TEST_REPORT();
}
