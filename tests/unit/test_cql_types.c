/* unit-cql_types: binding record values to CQL types (cassandra_sink's
 * cql_types.c, compiled in).
 *
 *  - every CQL type round trips: bound from the sources a record can hold
 *    (string, integer, double, boolean, timestamp, uuid, list, map) and read
 *    back with cql_value_text, byte layouts checked against the spec
 *    (varint examples of section 6.23, date centred at 2^31, ...);
 *  - impossible conversions are refused with the column, its type and the
 *    value in the message, and leave the buffer as it was;
 *  - null is written as null or "not set"; collections refuse null elements;
 *  - version-1 UUIDs: version, variant, strictly increasing time;
 *  - the calendar helpers over a wide range of days.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/cassandra_sink/cql_frame.c"
#include "../../plugins/cassandra_sink/cql_types.c"

#include "test.h"

static struct cql_src TXT(const char *s)
{
    struct cql_src v = { .kind = CQL_SRC_TEXT, .s = s, .n = strlen(s) };
    return v;
}
static struct cql_src INT(int64_t i)
{
    struct cql_src v = { .kind = CQL_SRC_INT, .i = i };
    return v;
}
static struct cql_src DBL(double d)
{
    struct cql_src v = { .kind = CQL_SRC_DOUBLE, .d = d };
    return v;
}
static struct cql_src BOOL_(int b)
{
    struct cql_src v = { .kind = CQL_SRC_BOOL, .b = b };
    return v;
}
static struct cql_src TS(int64_t ms)
{
    struct cql_src v = { .kind = CQL_SRC_TIMESTAMP, .i = ms };
    return v;
}

static char errbuf[300];

/* Binds v as type id and returns its text form read back ("ERR: ..." on a
 * refusal). Checks the [value] framing too. */
static const char *rt(const struct cql_type *t, struct cql_src v)
{
    static char out[512];
    struct cql_buf b = { 0 }, txt = { 0 };
    struct cql_rd r;
    cql_put_raw(&b, "XY", 2); /* bind must append, not overwrite */
    if (cql_bind(&b, t, &v, "col", 0, errbuf, sizeof(errbuf)) < 0) {
        CHECK(b.len == 2); /* unchanged on failure */
        snprintf(out, sizeof(out), "ERR: %s", errbuf);
        cql_buf_free(&b);
        return out;
    }
    cql_rd_init(&r, b.p + 2, b.len - 2);
    struct cql_str val = cql_get_value(&r);
    CHECK(r.err == NULL && cql_rd_left(&r) == 0);
    if (cql_value_text(t, (const uint8_t *)val.p, val.n, &txt) < 0)
        snprintf(out, sizeof(out), "BAD VALUE");
    else
        snprintf(out, sizeof(out), "%.*s", (int)txt.len, txt.p ? (const char *)txt.p : "");
    cql_buf_free(&b);
    cql_buf_free(&txt);
    return out;
}

static const struct cql_type *T(uint16_t id) { return cql_type_simple(id); }

/* The serialized payload (without the length) as hex. */
static const char *hex_of(const struct cql_type *t, struct cql_src v)
{
    static char out[256];
    struct cql_buf b = { 0 };
    size_t k = 0;
    if (cql_bind(&b, t, &v, "c", 0, errbuf, sizeof(errbuf)) < 0) {
        snprintf(out, sizeof(out), "ERR");
        cql_buf_free(&b);
        return out;
    }
    for (size_t i = 4; i < b.len && k + 3 < sizeof(out); i++)
        k += (size_t)snprintf(out + k, sizeof(out) - k, "%02X", b.p[i]);
    out[k] = '\0';
    cql_buf_free(&b);
    return out;
}

static void test_integers(void)
{
    CHECK_STR(rt(T(CQL_T_INT), INT(42)), "42");
    CHECK_STR(rt(T(CQL_T_INT), INT(-2147483648LL)), "-2147483648");
    CHECK_STR(rt(T(CQL_T_INT), TXT("-17")), "-17");
    CHECK_STR(rt(T(CQL_T_INT), DBL(12.0)), "12");
    CHECK_STR(rt(T(CQL_T_INT), DBL(12.5)), "ERR: column 'col' is int: value 12.5 is not an integer");
    CHECK_STR(rt(T(CQL_T_INT), INT(2147483648LL)),
              "ERR: column 'col' is int: value 2147483648 is out of range for int "
              "(-2147483648..2147483647)");
    CHECK_STR(rt(T(CQL_T_INT), TXT("12a")), "ERR: column 'col' is int: value \"12a\" is not an integer");
    CHECK_STR(rt(T(CQL_T_INT), TXT("")), "ERR: column 'col' is int: value \"\" is not an integer");
    CHECK_STR(rt(T(CQL_T_INT), TXT(" 1")), "ERR: column 'col' is int: value \" 1\" is not an integer");
    CHECK_STR(rt(T(CQL_T_INT), BOOL_(1)), "ERR: column 'col' is int: value true is a boolean, not an integer");
    CHECK_STR(rt(T(CQL_T_INT), DBL(NAN)), "ERR: column 'col' is int: value NaN is not an integer");
    CHECK_STR(hex_of(T(CQL_T_INT), INT(-2)), "FFFFFFFE");

    CHECK_STR(rt(T(CQL_T_BIGINT), INT(INT64_MIN)), "-9223372036854775808");
    CHECK_STR(rt(T(CQL_T_BIGINT), TXT("9223372036854775807")), "9223372036854775807");
    CHECK(CONTAINS(rt(T(CQL_T_BIGINT), TXT("9223372036854775808")), "out of range for bigint"));
    CHECK(CONTAINS(rt(T(CQL_T_BIGINT), DBL(1e19)), "out of range"));
    CHECK_STR(rt(T(CQL_T_BIGINT), TS(1732001704000)), "1732001704000");
    CHECK_STR(hex_of(T(CQL_T_BIGINT), INT(1)), "0000000000000001");

    CHECK_STR(rt(T(CQL_T_SMALLINT), INT(-32768)), "-32768");
    CHECK_STR(rt(T(CQL_T_SMALLINT), INT(70000)),
              "ERR: column 'col' is smallint: value 70000 is out of range for smallint (-32768..32767)");
    CHECK_STR(hex_of(T(CQL_T_SMALLINT), INT(258)), "0102");
    CHECK_STR(rt(T(CQL_T_TINYINT), INT(-128)), "-128");
    CHECK_STR(rt(T(CQL_T_TINYINT), TXT("127")), "127");
    CHECK(CONTAINS(rt(T(CQL_T_TINYINT), INT(128)), "out of range for tinyint (-128..127)"));
    CHECK_STR(hex_of(T(CQL_T_TINYINT), INT(-1)), "FF");
}

static void test_varint_decimal(void)
{
    /* The spec's examples (section 6.23). */
    static const struct { int64_t v; const char *hex; } ex[] = {
        { 0, "00" }, { 1, "01" }, { 127, "7F" }, { 128, "0080" }, { 129, "0081" },
        { -1, "FF" }, { -128, "80" }, { -129, "FF7F" }, { 32767, "7FFF" }, { 32768, "008000" },
        { -32768, "8000" }, { -32769, "FF7FFF" }, { INT64_MAX, "7FFFFFFFFFFFFFFF" },
        { INT64_MIN, "8000000000000000" },
    };
    for (size_t i = 0; i < sizeof(ex) / sizeof(ex[0]); i++) {
        char txt[32];
        CHECK_STR(hex_of(T(CQL_T_VARINT), INT(ex[i].v)), ex[i].hex);
        snprintf(txt, sizeof(txt), "%lld", (long long)ex[i].v);
        CHECK_STR(hex_of(T(CQL_T_VARINT), TXT(txt)), ex[i].hex); /* the big-number path */
        CHECK_STR(rt(T(CQL_T_VARINT), INT(ex[i].v)), txt);
    }
    /* Beyond 64 bits. */
    const char *big = "-123456789012345678901234567890123456789";
    CHECK_STR(rt(T(CQL_T_VARINT), TXT(big)), big);
    CHECK_STR(rt(T(CQL_T_VARINT), TXT("340282366920938463463374607431768211456")),
              "340282366920938463463374607431768211456"); /* 2^128 */
    CHECK_STR(rt(T(CQL_T_VARINT), TXT("+000")), "0");
    CHECK_STR(rt(T(CQL_T_VARINT), DBL(1e20)), "100000000000000000000");
    CHECK(CONTAINS(rt(T(CQL_T_VARINT), TXT("1.5")), "is not an integer"));
    CHECK(CONTAINS(rt(T(CQL_T_VARINT), DBL(1.5)), "is not an integer"));

    CHECK_STR(rt(T(CQL_T_DECIMAL), TXT("12.345")), "12.345");
    CHECK_STR(hex_of(T(CQL_T_DECIMAL), TXT("12.345")), "000000033039"); /* scale 3, 12345 */
    CHECK_STR(rt(T(CQL_T_DECIMAL), TXT("-0.001")), "-0.001");
    CHECK_STR(rt(T(CQL_T_DECIMAL), TXT("1.5e3")), "1500");
    CHECK_STR(hex_of(T(CQL_T_DECIMAL), TXT("1.5e3")), "FFFFFFFE0F"); /* scale -2, 15 */
    CHECK_STR(rt(T(CQL_T_DECIMAL), TXT("12345678901234567890.0000000001")),
              "12345678901234567890.0000000001");
    CHECK_STR(rt(T(CQL_T_DECIMAL), INT(-42)), "-42");
    CHECK_STR(rt(T(CQL_T_DECIMAL), DBL(0.1)), "0.1");
    CHECK_STR(rt(T(CQL_T_DECIMAL), DBL(-2.5e-7)), "-0.00000025");
    CHECK_STR(rt(T(CQL_T_DECIMAL), TXT(".5")), "0.5");
    CHECK(CONTAINS(rt(T(CQL_T_DECIMAL), TXT("1e")), "is not a decimal number"));
    CHECK(CONTAINS(rt(T(CQL_T_DECIMAL), TXT("abc")), "is not a decimal number"));
    CHECK(CONTAINS(rt(T(CQL_T_DECIMAL), DBL(INFINITY)), "is not a finite number"));
    CHECK(CONTAINS(rt(T(CQL_T_DECIMAL), BOOL_(0)), "is not a number"));
}

static void test_floats(void)
{
    CHECK_STR(rt(T(CQL_T_DOUBLE), DBL(0.1)), "0.1");
    CHECK_STR(rt(T(CQL_T_DOUBLE), DBL(-1.5e300)), "-1.5e+300");
    CHECK_STR(rt(T(CQL_T_DOUBLE), INT(3)), "3");
    CHECK_STR(rt(T(CQL_T_DOUBLE), TXT("2.5E-3")), "0.0025");
    CHECK_STR(rt(T(CQL_T_DOUBLE), TXT("NaN")), "NaN");
    CHECK_STR(rt(T(CQL_T_DOUBLE), TXT("-Infinity")), "-Infinity");
    CHECK(CONTAINS(rt(T(CQL_T_DOUBLE), TXT("0x10")), "is not a number"));
    CHECK(CONTAINS(rt(T(CQL_T_DOUBLE), TXT("inf")), "is not a number"));
    CHECK(CONTAINS(rt(T(CQL_T_DOUBLE), TXT("1.5 ")), "is not a number"));
    CHECK(CONTAINS(rt(T(CQL_T_DOUBLE), BOOL_(1)), "is not a number"));
    CHECK_STR(hex_of(T(CQL_T_DOUBLE), DBL(1.0)), "3FF0000000000000");
    CHECK_STR(rt(T(CQL_T_FLOAT), DBL(0.1)), "0.1");
    CHECK_STR(rt(T(CQL_T_FLOAT), DBL(3.4e38)), "3.4e+38");
    CHECK_STR(hex_of(T(CQL_T_FLOAT), DBL(1.0)), "3F800000");
    CHECK(CONTAINS(rt(T(CQL_T_FLOAT), DBL(1e39)), "is out of range for float"));
}

static void test_bool_text(void)
{
    CHECK_STR(rt(T(CQL_T_BOOLEAN), BOOL_(1)), "true");
    CHECK_STR(rt(T(CQL_T_BOOLEAN), TXT("False")), "false");
    CHECK_STR(rt(T(CQL_T_BOOLEAN), INT(1)), "true");
    CHECK(CONTAINS(rt(T(CQL_T_BOOLEAN), INT(2)), "is not a boolean"));
    CHECK(CONTAINS(rt(T(CQL_T_BOOLEAN), TXT("yes")), "is not a boolean"));

    CHECK_STR(rt(T(CQL_T_VARCHAR), TXT("été ☀ 𝄞")), "été ☀ 𝄞");
    CHECK_STR(rt(T(CQL_T_VARCHAR), INT(-5)), "-5");
    CHECK_STR(rt(T(CQL_T_VARCHAR), DBL(48.865983)), "48.865983");
    CHECK_STR(rt(T(CQL_T_VARCHAR), BOOL_(0)), "false");
    CHECK_STR(rt(T(CQL_T_VARCHAR), TS(1732001704123)), "2024-11-19T07:35:04.123Z");
    CHECK_STR(rt(T(CQL_T_VARCHAR), TXT("")), "");
    CHECK(CONTAINS(rt(T(CQL_T_VARCHAR), TXT("\xff\xfe")), "is not valid UTF-8"));
    CHECK(CONTAINS(rt(T(CQL_T_VARCHAR), TXT("\xed\xa0\x80")), "is not valid UTF-8")); /* surrogate */
    CHECK(CONTAINS(rt(T(CQL_T_VARCHAR), TXT("\xc0\x80")), "is not valid UTF-8"));     /* overlong */
    CHECK(CONTAINS(rt(T(CQL_T_VARCHAR), TXT("ab\xe2\x98")), "is not valid UTF-8"));   /* cut */
    CHECK_STR(rt(T(CQL_T_ASCII), TXT("plain")), "plain");
    CHECK_STR(rt(T(CQL_T_ASCII), TXT("été")),
              "ERR: column 'col' is ascii: value \"été\" is not ASCII");
    CHECK_STR(rt(T(CQL_T_BLOB), TXT("\x01\x02")), "0x0102");
    CHECK(CONTAINS(rt(T(CQL_T_BLOB), INT(1)), "is not text"));
    /* Long values are cut in messages. */
    CHECK(CONTAINS(rt(T(CQL_T_INT), TXT("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")),
                   "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" is not an integer"));
}

static void test_time_types(void)
{
    CHECK_STR(rt(T(CQL_T_TIMESTAMP), TS(1732001704000)), "1732001704000");
    CHECK_STR(rt(T(CQL_T_TIMESTAMP), INT(-1)), "-1");
    CHECK_STR(rt(T(CQL_T_TIMESTAMP), TXT("2024-11-19T07:35:04Z")), "1732001704000");
    CHECK_STR(rt(T(CQL_T_TIMESTAMP), TXT("2024-11-19T07:35:04.5+01:00")), "1731998104500");
    CHECK_STR(rt(T(CQL_T_TIMESTAMP), TXT("2024-11-19 07:35")), "1732001700000");
    CHECK_STR(rt(T(CQL_T_TIMESTAMP), TXT("2024-11-19T07:35:04.123456789-0230")), "1732010704123");
    CHECK_STR(rt(T(CQL_T_TIMESTAMP), TXT("1970-01-01")), "0");
    CHECK_STR(rt(T(CQL_T_TIMESTAMP), TXT("1732001704000")), "1732001704000");
    CHECK_STR(rt(T(CQL_T_TIMESTAMP), TXT("1969-12-31T23:59:59.999Z")), "-1");
    CHECK(CONTAINS(rt(T(CQL_T_TIMESTAMP), TXT("2024-02-30")), "is not a timestamp (ISO 8601"));
    CHECK(CONTAINS(rt(T(CQL_T_TIMESTAMP), TXT("2024-11-19T25:00")), "is not a timestamp"));
    CHECK(CONTAINS(rt(T(CQL_T_TIMESTAMP), TXT("yesterday")), "is not a timestamp"));
    CHECK(CONTAINS(rt(T(CQL_T_TIMESTAMP), DBL(1.5)), "is not an integer"));
    CHECK(CONTAINS(rt(T(CQL_T_TIMESTAMP), BOOL_(1)), "is not a timestamp"));

    CHECK_STR(rt(T(CQL_T_DATE), TXT("2024-02-29")), "2024-02-29");
    CHECK_STR(hex_of(T(CQL_T_DATE), TXT("1970-01-01")), "80000000");
    CHECK_STR(hex_of(T(CQL_T_DATE), TXT("1969-12-31")), "7FFFFFFF");
    CHECK_STR(rt(T(CQL_T_DATE), TS(1732001704000)), "2024-11-19");
    CHECK_STR(rt(T(CQL_T_DATE), TS(-1)), "1969-12-31");
    CHECK_STR(rt(T(CQL_T_DATE), INT(0)), "1970-01-01");
    CHECK_STR(rt(T(CQL_T_DATE), TXT("0001-01-01")), "0001-01-01");
    CHECK(CONTAINS(rt(T(CQL_T_DATE), TXT("2023-02-29")), "is not a date (YYYY-MM-DD)"));
    CHECK(CONTAINS(rt(T(CQL_T_DATE), TXT("2024-11-19T00:00")), "is not a date"));
    CHECK(CONTAINS(rt(T(CQL_T_DATE), INT(3000000000LL)), "out of range for date"));

    CHECK_STR(rt(T(CQL_T_TIME), TXT("07:35:04.123456789")), "27304123456789");
    CHECK_STR(rt(T(CQL_T_TIME), TXT("00:00:00")), "0");
    CHECK_STR(rt(T(CQL_T_TIME), INT(86399999999999LL)), "86399999999999");
    CHECK(CONTAINS(rt(T(CQL_T_TIME), INT(86400000000000LL)), "out of range for time"));
    CHECK(CONTAINS(rt(T(CQL_T_TIME), TXT("07:35")), "is not a time of day"));
}

static void test_uuid_inet(void)
{
    struct cql_uuidgen g;
    uint8_t prev[16] = { 0 };
    char s[37];

    CHECK_STR(rt(T(CQL_T_UUID), TXT("123E4567-e89b-12d3-a456-426614174000")),
              "123e4567-e89b-12d3-a456-426614174000");
    CHECK(CONTAINS(rt(T(CQL_T_UUID), TXT("123e4567e89b12d3a456426614174000")), "is not a uuid"));
    CHECK(CONTAINS(rt(T(CQL_T_UUID), TXT("123e4567-e89b-12d3-a456-42661417400g")), "is not a uuid"));
    CHECK(CONTAINS(rt(T(CQL_T_UUID), INT(5)), "is not a uuid"));
    CHECK_STR(rt(T(CQL_T_TIMEUUID), TXT("d2177dd0-eaa2-11de-a572-001b779c76e3")),
              "d2177dd0-eaa2-11de-a572-001b779c76e3");
    CHECK(CONTAINS(rt(T(CQL_T_TIMEUUID), TXT("123e4567-e89b-42d3-a456-426614174000")),
                   "is not a time-based (version 1) uuid"));

    cql_uuidgen_init(&g);
    for (int i = 0; i < 20000; i++) {
        struct cql_src v = { .kind = CQL_SRC_UUID };
        cql_uuid_v1(&g, v.uuid);
        CHECK((v.uuid[6] >> 4) == 1);        /* version 1 */
        CHECK((v.uuid[8] & 0xC0) == 0x80);   /* RFC 4122 variant */
        CHECK(v.uuid[10] & 0x01);            /* random node: multicast bit */
        /* The 60-bit time strictly increases. */
        uint64_t t = ((uint64_t)(v.uuid[6] & 0x0F) << 56 | (uint64_t)v.uuid[7] << 48 |
                      (uint64_t)v.uuid[4] << 40 | (uint64_t)v.uuid[5] << 32 |
                      (uint64_t)v.uuid[0] << 24 | (uint64_t)v.uuid[1] << 16 |
                      (uint64_t)v.uuid[2] << 8 | v.uuid[3]);
        uint64_t pt = ((uint64_t)(prev[6] & 0x0F) << 56 | (uint64_t)prev[7] << 48 |
                       (uint64_t)prev[4] << 40 | (uint64_t)prev[5] << 32 |
                       (uint64_t)prev[0] << 24 | (uint64_t)prev[1] << 16 |
                       (uint64_t)prev[2] << 8 | prev[3]);
        if (i > 0 && t <= pt) {
            CHECK(t > pt);
            break;
        }
        memcpy(prev, v.uuid, 16);
        if (i == 0) {
            /* Its time is now: within a minute of the wall clock. */
            int64_t ms = (int64_t)((t - 0x01B21DD213814000ull) / 10000);
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            CHECK(llabs(ms - ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000)) < 60000);
            cql_uuid_format(v.uuid, s);
            CHECK_STR(rt(T(CQL_T_TIMEUUID), v), s);
            CHECK_STR(rt(T(CQL_T_UUID), v), s);
        }
    }
    uint8_t u[16];
    CHECK(cql_uuid_parse("00000000-0000-0000-0000-000000000000", 36, u) == 0);

    CHECK_STR(rt(T(CQL_T_INET), TXT("192.168.1.20")), "192.168.1.20");
    CHECK_STR(rt(T(CQL_T_INET), TXT("2001:db8::1")), "2001:db8::1");
    CHECK(CONTAINS(rt(T(CQL_T_INET), TXT("300.1.1.1")), "is not an IP address"));
}

/* A list/map source over arrays, as the sink builds from rows. */
struct fake_coll {
    size_t n;
    const char *const *keys;
    const struct cql_src *vals;
};

static int fake_elem(const struct cql_src *self, size_t i, struct cql_src *key, struct cql_src *val)
{
    const struct fake_coll *c = self->ctx;
    if (i >= c->n)
        return -1;
    if (c->keys)
        *key = TXT(c->keys[i]);
    *val = c->vals[i];
    return 0;
}

static void test_collections(void)
{
    struct cql_arena a = { 0 };
    struct cql_type *lt = cql_arena_alloc(&a, sizeof(*lt)), *st = cql_arena_alloc(&a, sizeof(*st)),
                    *mt = cql_arena_alloc(&a, sizeof(*mt)), *ut = cql_arena_alloc(&a, sizeof(*ut));
    const struct cql_type *lsub[1] = { T(CQL_T_INT) }, *ssub[1] = { T(CQL_T_VARCHAR) },
                          *msub[2] = { T(CQL_T_VARCHAR), T(CQL_T_DOUBLE) };
    lt->id = CQL_T_LIST, lt->n = 1, lt->sub = lsub;
    st->id = CQL_T_SET, st->n = 1, st->sub = ssub;
    mt->id = CQL_T_MAP, mt->n = 2, mt->sub = msub;
    ut->id = CQL_T_UDT, ut->n = 0;

    struct cql_src ints[3] = { INT(1), TXT("2"), DBL(3.0) };
    struct fake_coll lc = { 3, NULL, ints };
    struct cql_src lv = { .kind = CQL_SRC_LIST, .count = 3, .elem = fake_elem, .ctx = &lc };
    CHECK_STR(rt(lt, lv), "[1, 2, 3]");
    CHECK_STR(hex_of(lt, lv), "000000030000000400000001000000040000000200000004" "00000003");
    struct cql_src tags[2] = { TXT("a"), TXT("b") };
    struct fake_coll sc = { 2, NULL, tags };
    struct cql_src sv = { .kind = CQL_SRC_LIST, .count = 2, .elem = fake_elem, .ctx = &sc };
    CHECK_STR(rt(st, sv), "[a, b]");
    static const char *const keys[] = { "mechanical", "ebike" };
    struct cql_src nums[2] = { INT(1), DBL(0.5) };
    struct fake_coll mc = { 2, keys, nums };
    struct cql_src mv = { .kind = CQL_SRC_MAP, .count = 2, .elem = fake_elem, .ctx = &mc };
    CHECK_STR(rt(mt, mv), "{mechanical: 1, ebike: 0.5}");
    /* Errors name the element. */
    struct cql_src bad[2] = { INT(1), DBL(1.5) };
    struct fake_coll bc = { 2, NULL, bad };
    struct cql_src bv = { .kind = CQL_SRC_LIST, .count = 2, .elem = fake_elem, .ctx = &bc };
    CHECK_STR(rt(lt, bv), "ERR: column 'col' is list<int>: element 1: value 1.5 is not an integer");
    struct cql_src withnull[2] = { INT(1), { .kind = CQL_SRC_NULL } };
    struct fake_coll nc = { 2, NULL, withnull };
    struct cql_src nv = { .kind = CQL_SRC_LIST, .count = 2, .elem = fake_elem, .ctx = &nc };
    CHECK(CONTAINS(rt(lt, nv), "element 1: value null is not allowed inside a collection"));
    CHECK(CONTAINS(rt(mt, lv), "is not an object"));
    CHECK(CONTAINS(rt(lt, mv), "is not a list"));
    CHECK(CONTAINS(rt(lt, INT(1)), "is not a list"));
    /* Not bindable: counter, udt, tuple, custom, list<counter>. */
    CHECK(CONTAINS(rt(T(CQL_T_COUNTER), INT(1)), "counter columns are refused"));
    CHECK(!cql_type_bindable(T(CQL_T_COUNTER)) && !cql_type_bindable(ut));
    const struct cql_type *csub[1] = { T(CQL_T_COUNTER) };
    struct cql_type lc2 = { .id = CQL_T_LIST, .n = 1, .sub = csub };
    CHECK(!cql_type_bindable(&lc2) && cql_type_bindable(mt) && cql_type_bindable(T(CQL_T_TIME)));
    CHECK(CONTAINS(rt(ut, INT(1)), "the type is not supported"));
    cql_arena_free(&a);
}

static void test_nulls(void)
{
    struct cql_buf b = { 0 };
    struct cql_src n = { .kind = CQL_SRC_NULL };
    struct cql_rd r;
    CHECK(cql_bind(&b, T(CQL_T_INT), &n, "c", 0, errbuf, sizeof(errbuf)) == 0);
    CHECK(cql_bind(&b, T(CQL_T_VARCHAR), &n, "c", 1, errbuf, sizeof(errbuf)) == 0);
    cql_rd_init(&r, b.p, b.len);
    CHECK(cql_get_value(&r).n == -1);
    CHECK(cql_get_value(&r).n == -2);
    CHECK(r.err == NULL && cql_rd_left(&r) == 0);
    cql_buf_free(&b);
    /* The text form of null and of a malformed value. */
    struct cql_buf t = { 0 };
    CHECK(cql_value_text(T(CQL_T_INT), NULL, -1, &t) == 0 && t.len == 4 && memcmp(t.p, "null", 4) == 0);
    CHECK(cql_value_text(T(CQL_T_INT), (const uint8_t *)"\1\2\3", 3, &t) < 0);
    CHECK(cql_value_text(T(CQL_T_UUID), (const uint8_t *)"\1\2\3", 3, &t) < 0);
    CHECK(cql_value_text(T(CQL_T_DECIMAL), (const uint8_t *)"\1\2", 2, &t) < 0);
    cql_buf_free(&t);
}

static void test_calendar(void)
{
    int bad = 0;
    for (int64_t z = -800000; z <= 800000; z += 7) {
        int64_t y;
        unsigned m, d;
        cql_civil_from_days(z, &y, &m, &d);
        if (textfmt_days_from_civil(y, m, d) != z || m < 1 || m > 12 || d < 1 || d > 31)
            bad++;
    }
    CHECK(bad == 0);
    CHECK(textfmt_days_from_civil(1970, 1, 1) == 0);
    CHECK(textfmt_days_from_civil(2000, 3, 1) == 11017);
    char out[40];
    cql_format_timestamp(-1, out, sizeof(out));
    CHECK_STR(out, "1969-12-31T23:59:59.999Z");
    cql_format_double(0.30000000000000004, out, sizeof(out));
    CHECK_STR(out, "0.30000000000000004");
    cql_format_double(1e21, out, sizeof(out));
    CHECK_STR(out, "1e+21");
    int64_t ms;
    CHECK(cql_parse_timestamp("2024-11-19T07:35:04Zx", 21, &ms) < 0);
    CHECK(cql_parse_timestamp("2024-11-19T07:35:04+25:00", 25, &ms) < 0);
}

int main(void)
{
    RUN(test_integers);
    RUN(test_varint_decimal);
    RUN(test_floats);
    RUN(test_bool_text);
    RUN(test_time_types);
    RUN(test_uuid_inet);
    RUN(test_collections);
    RUN(test_nulls);
    RUN(test_calendar);
    return TEST_REPORT();
}
