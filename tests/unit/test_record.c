/* Unit tests: records and interned strings (host/src/record.c).
 *
 * Origins come from the real tracker (ack.c): rec_ack and rec_free are
 * observed through what the tracker does with the unit they end, i.e. a
 * delivered unit commits its position, an abandoned one blocks the tracker.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ack.h"
#include "record.h"
#include "test.h"

static int64_t wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- interned strings ---- */

static void test_intern(void)
{
    char a[] = "velib.status", b[] = "velib.status";
    const char *ia = intern_str(a), *ib = intern_str(b);
    CHECK(ia != NULL && ia == ib);
    CHECK(ia != a);
    CHECK_STR(ia, "velib.status");
    a[0] = 'X';  /* the interned copy does not follow the caller's buffer */
    CHECK_STR(ia, "velib.status");
    CHECK(intern_str("other") != ia);
    CHECK(intern_str("") == intern_str(""));
    /* Enough strings to grow the table several times; all stay stable. */
    const char *first[1000];
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "topic-%d", i);
        first[i] = intern_str(name);
    }
    int same = 1;
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "topic-%d", i);
        same &= intern_str(name) == first[i] && strcmp(first[i], name) == 0;
    }
    CHECK(same);
    CHECK(intern_str("velib.status") == ia);
}

struct intern_arg {
    const char *got[500];
};

static void *intern_worker(void *p)
{
    struct intern_arg *a = p;
    char name[32];
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof(name), "shared-%d", i);
        a->got[i] = intern_str(name);
    }
    return NULL;
}

/* Two threads interning the same names get the same pointers. */
static void test_intern_threads(void)
{
    static struct intern_arg a1, a2;
    pthread_t t1, t2;
    CHECK(pthread_create(&t1, NULL, intern_worker, &a1) == 0);
    CHECK(pthread_create(&t2, NULL, intern_worker, &a2) == 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    int same = 1;
    for (int i = 0; i < 500; i++)
        same &= a1.got[i] != NULL && a1.got[i] == a2.got[i];
    CHECK(same);
}

/* ---- basics ---- */

static int64_t tick_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Waits (no sleep: the condition itself) until the kernel clock ticked
 * past t; the new tick, or -1 after 2 s. */
static int64_t wait_tick(int64_t t)
{
    int64_t limit = wall_now() + 2000;
    for (;;) {
        int64_t x = tick_now();
        if (x != t)
            return x;
        if (wall_now() > limit)
            return -1;
    }
}

/* Inside rec_clock_begin/end: records share the reading until the clock
 * ticks, then get a new one; never later than the clock; outside, each
 * record reads the clock. */
static void test_clock_stamp(void)
{
    int64_t before = wall_now();
    rec_clock_begin();
    int64_t t0 = tick_now();
    struct spoke_record *a = rec_new("t", NULL, 0, "1", 1);
    struct spoke_record *b = rec_new("t", NULL, 0, "2", 1);
    int64_t t1 = tick_now();
    int64_t after = wall_now();
    CHECK(a && b);
    CHECK(a->ts >= before && a->ts <= after && b->ts >= a->ts && b->ts <= after);
    if (t0 == t1)
        CHECK(b->ts == a->ts);  /* no tick between: the same reading */
    /* Two ticks later (a full tick period, >= 1 ms, has passed), a new
     * record reads the clock again. */
    int64_t k = wait_tick(t1);
    CHECK(k >= 0);
    CHECK(wait_tick(k) >= 0);
    int64_t later = wall_now();
    CHECK(later > a->ts);
    struct spoke_record *c = rec_new("t", NULL, 0, "3", 1);
    CHECK(c && c->ts >= later && c->ts <= wall_now());
    rec_clock_end();
    /* Outside: a precise reading each time. */
    int64_t out0 = wall_now();
    struct spoke_record *d = rec_new("t", NULL, 0, "4", 1);
    CHECK(d && d->ts >= out0 && d->ts <= wall_now());
    rec_free(a);
    rec_free(b);
    rec_free(c);
    rec_free(d);
}

static void test_new(void)
{
    char key[] = "k1", val[] = "{\"a\":1}";
    int64_t before = wall_now();
    struct spoke_record *rec = rec_new("t", key, 2, val, strlen(val));
    int64_t after = wall_now();
    CHECK(rec != NULL);
    CHECK(rec->topic == intern_str("t"));
    CHECK(rec->ts >= before && rec->ts <= after);
    key[0] = 'X';
    val[2] = 'X';
    size_t len;
    const void *k = rec_value_bytes(rec, &len);
    CHECK(len == 7 && memcmp(k, "{\"a\":1}", 7) == 0);
    CHECK(rec->klen == 2 && memcmp(rec->key, "k1", 2) == 0);
    CHECK(rec->forms == REC_FORM_BYTES);
    CHECK(rec->origin == NULL);
    const char *part = "x";
    int64_t off = 5;
    rec_position(rec, &part, &off);
    CHECK(part == NULL && off == 0);
    rec_free(rec);

    /* NULL value: a null value, not empty bytes. NULL key: no key. */
    rec = rec_new("t", NULL, 0, NULL, 0);
    CHECK(rec->forms == 0);
    CHECK(rec->key == NULL && rec->klen == 0);
    len = 99;
    CHECK(rec_value_bytes(rec, &len) == NULL && len == 0);
    const char *why = NULL;
    CHECK(rec_value_row(rec, &why) == NULL);
    CHECK_STR(why, "value is null");
    CHECK(rec_value_json(rec) == NULL);
    rec_free(rec);

    /* Empty bytes are a value (not null). */
    rec = rec_new("t", "", 0, "", 0);
    CHECK(rec->forms == REC_FORM_BYTES);
    CHECK(rec->key != NULL && rec->klen == 0);
    CHECK(rec_value_bytes(rec, &len) != NULL && len == 0);
    why = NULL;
    CHECK(rec_value_row(rec, &why) == NULL);
    CHECK_STR(why, "value is not valid JSON");
    rec_free(rec);
    rec_free(NULL);
}

static void test_topic_position_key(void)
{
    struct spoke_record *rec = rec_new("a", NULL, 0, NULL, 0);
    CHECK(rec_set_topic(rec, "b") == SPOKE_OK);
    CHECK(rec->topic == intern_str("b"));
    CHECK(rec_set_topic(rec, NULL) == SPOKE_ERR_INVALID);
    CHECK_STR(rec->topic, "b");

    char part[] = "p0";
    CHECK(rec_set_position(rec, part, 42) == SPOKE_OK);
    part[0] = 'X';
    const char *p = NULL;
    int64_t off = 0;
    rec_position(rec, &p, &off);
    CHECK_STR(p, "p0");
    CHECK(p == intern_str("p0"));
    CHECK(off == 42);
    CHECK(rec_set_position(rec, NULL, 1) == SPOKE_ERR_INVALID);
    rec_position(rec, NULL, &off);
    CHECK(off == 42);

    /* Keys: copied, taken (freed by the record: ASan reports a leak
     * otherwise), replaced, removed. */
    char k[] = "key";
    CHECK(rec_set_key(rec, k, 3, SPOKE_COPY) == SPOKE_OK);
    k[0] = 'X';
    CHECK(rec->klen == 3 && memcmp(rec->key, "key", 3) == 0);
    char *taken = malloc(4);
    memcpy(taken, "tkn", 4);
    CHECK(rec_set_key(rec, taken, 3, SPOKE_TAKE) == SPOKE_OK);
    CHECK((char *)rec->key == taken);
    CHECK(rec_set_key(rec, NULL, 0, SPOKE_COPY) == SPOKE_OK);
    CHECK(rec->key == NULL && rec->klen == 0);
    /* A taken buffer is freed even when the call fails. */
    taken = malloc(4);
    CHECK(rec_set_key(NULL, taken, 3, SPOKE_TAKE) == SPOKE_ERR_INVALID);
    /* An unknown mode is refused; the buffer stays the caller's. */
    CHECK(rec_set_key(rec, k, 3, (enum spoke_buf_mode)7) == SPOKE_ERR_INVALID);
    CHECK(rec->key == NULL);
    rec_free(rec);
}

static void test_headers(void)
{
    struct spoke_record *rec = rec_new("t", NULL, 0, NULL, 0);
    CHECK(rec_header_add(rec, "h1", "v1", 2) == SPOKE_OK);
    CHECK(rec_header_add(rec, "h2", "", 0) == SPOKE_OK);
    CHECK(rec_header_add(rec, "h1", "again", 5) == SPOKE_OK);  /* duplicates allowed */
    for (int i = 0; i < 20; i++)
        CHECK(rec_header_add(rec, "many", "x", 1) == SPOKE_OK);
    CHECK(rec_header_add(rec, NULL, "x", 1) == SPOKE_ERR_INVALID);
    CHECK(rec_header_add(rec, "n", NULL, 3) == SPOKE_ERR_INVALID);
    CHECK(rec->nhdrs == 23);
    const char *name;
    const void *val;
    size_t len;
    CHECK(rec_header_get(rec, 0, &name, &val, &len) == SPOKE_OK);
    CHECK_STR(name, "h1");
    CHECK(len == 2 && memcmp(val, "v1", 2) == 0);
    CHECK(rec_header_get(rec, 1, &name, &val, &len) == SPOKE_OK);
    CHECK_STR(name, "h2");
    CHECK(len == 0);
    CHECK(rec_header_get(rec, 2, &name, &val, &len) == SPOKE_OK);
    CHECK(len == 5 && memcmp(val, "again", 5) == 0);
    CHECK(rec_header_get(rec, 23, &name, &val, &len) == SPOKE_ERR_NOTFOUND);
    CHECK(name == NULL && val == NULL && len == 0);
    rec_free(rec);
}

/* ---- value forms ---- */

static const char station[] =
    "{\"station_id\":213688169,\"num_bikes_available_types\":[{\"mechanical\":1},{\"ebike\":0}],"
    "\"stationCode\":\"16107\"}";

static void test_bytes_to_row_and_json(void)
{
    struct spoke_record *rec = rec_new("t", NULL, 0, station, strlen(station));
    const char *why = "unset";
    const struct spoke_row *row = rec_value_row(rec, &why);
    CHECK(row != NULL);
    CHECK(rec->forms == (REC_FORM_BYTES | REC_FORM_ROW));
    CHECK(rec_value_row(rec, NULL) == row);  /* cached: same pointer */
    CHECK(row_get_int(row, 0) == 213688169);
    CHECK_STR(row_get_string(row, 2, NULL), "16107");

    json_t *j = rec_value_json(rec);
    CHECK(j != NULL && json_is_object(j));
    CHECK(rec->forms == (REC_FORM_BYTES | REC_FORM_ROW | REC_FORM_JSON));
    CHECK(rec_value_json(rec) == j);
    CHECK(json_integer_value(json_object_get(j, "station_id")) == 213688169);
    /* The bytes are untouched by the conversions. */
    size_t len;
    const void *b = rec_value_bytes(rec, &len);
    CHECK(len == strlen(station) && memcmp(b, station, len) == 0);
    CHECK(rec_value_bytes(rec, NULL) == b);
    rec_free(rec);

    /* bytes -> json first, then row: each from the bytes. */
    rec = rec_new("t", NULL, 0, station, strlen(station));
    j = rec_value_json(rec);
    CHECK(j != NULL && rec->forms == (REC_FORM_BYTES | REC_FORM_JSON));
    row = rec_value_row(rec, NULL);
    CHECK(row != NULL && rec_value_row(rec, NULL) == row);
    rec_free(rec);
}

static void test_bad_bytes(void)
{
    /* Not JSON: neither a row nor a tree; the verdict is remembered. */
    const char *text = "{\"a\":tru}";
    struct spoke_record *rec = rec_new("t", NULL, 0, text, strlen(text));
    const char *why = NULL;
    CHECK(rec_value_row(rec, &why) == NULL);
    CHECK_STR(why, "value is not valid JSON");
    CHECK(rec->row_error == why);
    const char *why2 = NULL;
    CHECK(rec_value_row(rec, &why2) == NULL);
    CHECK(why2 == why);
    CHECK(rec_value_json(rec) == NULL);
    CHECK(rec->forms == REC_FORM_BYTES);
    /* Setting a value forgets the verdict. */
    CHECK(rec_set_value(rec, "{\"a\":true}", 10, SPOKE_COPY) == SPOKE_OK);
    CHECK(rec->row_error == NULL);
    CHECK(rec_value_row(rec, &why) != NULL);
    rec_free(rec);

    /* Valid JSON but not an object: no row, but a tree. */
    rec = rec_new("t", NULL, 0, "[1,2]", 5);
    CHECK(rec_value_row(rec, &why) == NULL);
    CHECK_STR(why, "value is not a JSON object");
    json_t *j = rec_value_json(rec);
    CHECK(j != NULL && json_is_array(j));
    rec_free(rec);

    /* Each parse failure class surfaces as a static reason. */
    rec = rec_new("t", NULL, 0, "{\"a\":1,\"a\":2}", 13);
    CHECK(rec_value_row(rec, &why) == NULL);
    CHECK_STR(why, "value has a duplicate key");
    rec_free(rec);
    rec = rec_new("t", NULL, 0, "{\"a\":\"\xc0\x80\"}", 10);
    CHECK(rec_value_row(rec, &why) == NULL);
    CHECK_STR(why, "value is not valid JSON");
    rec_free(rec);
}

static struct spoke_row *sample_row(void)
{
    struct spoke_schema *s = schema_new();
    schema_add(s, "id", SPOKE_TYPE_INT);
    schema_add(s, "name", SPOKE_TYPE_STRING);
    schema_add(s, "at", SPOKE_TYPE_TIMESTAMP);
    struct spoke_row *row = row_new(s);
    schema_unref(s);
    row_set_int(row, 0, 7);
    row_set_string(row, 1, "x\"y", 3);
    row_set_timestamp(row, 2, 1732004538000);
    return row;
}

#define SAMPLE_JSON "{\"id\":7,\"name\":\"x\\\"y\",\"at\":\"2024-11-19T08:22:18.000Z\"}"

static void test_row_to_bytes_and_json(void)
{
    struct spoke_record *rec = rec_new("t", NULL, 0, "{\"old\":1}", 9);
    CHECK(rec_value_json(rec) != NULL);
    struct spoke_row *row = sample_row();
    CHECK(rec_set_row(rec, row) == SPOKE_OK);
    /* Setting a form drops the others. */
    CHECK(rec->forms == REC_FORM_ROW);
    CHECK(rec_value_row(rec, NULL) == row);

    size_t len;
    const char *b = rec_value_bytes(rec, &len);
    CHECK(b != NULL && len == strlen(SAMPLE_JSON) && memcmp(b, SAMPLE_JSON, len) == 0);
    CHECK(rec->forms == (REC_FORM_ROW | REC_FORM_BYTES));
    CHECK(rec_value_bytes(rec, NULL) == b);

    json_t *j = rec_value_json(rec);
    json_t *want = json_loads(SAMPLE_JSON, 0, NULL);
    CHECK(j && json_equal(j, want));
    CHECK(rec_value_json(rec) == j);
    json_decref(want);

    /* Set-row of a list, or of nothing: refused, value kept. */
    CHECK(rec_set_row(rec, row_new_list(1)) == SPOKE_ERR_INVALID);
    CHECK(rec_set_row(rec, NULL) == SPOKE_ERR_INVALID);
    CHECK(rec_value_row(rec, NULL) == row);
    rec_free(rec);

    /* row -> json directly (no bytes yet). */
    rec = rec_new("t", NULL, 0, NULL, 0);
    rec_set_row(rec, sample_row());
    j = rec_value_json(rec);
    CHECK(j && json_integer_value(json_object_get(j, "id")) == 7);
    CHECK(rec->forms == (REC_FORM_ROW | REC_FORM_JSON));
    rec_free(rec);
}

static void test_json_to_bytes_and_row(void)
{
    struct spoke_record *rec = rec_new("t", NULL, 0, station, strlen(station));
    CHECK(rec_value_row(rec, NULL) != NULL);
    json_t *j = json_pack("{s:i, s:s, s:[i, f]}", "a", 1, "b", "two", "c", 3, 0.5);
    CHECK(rec_set_json(rec, j) == SPOKE_OK);
    CHECK(rec->forms == REC_FORM_JSON);
    CHECK(rec_value_json(rec) == j);

    size_t len;
    const char *b = rec_value_bytes(rec, &len);
    CHECK(b && len == strlen("{\"a\":1,\"b\":\"two\",\"c\":[3,0.5]}") &&
          memcmp(b, "{\"a\":1,\"b\":\"two\",\"c\":[3,0.5]}", len) == 0);
    CHECK(rec_value_bytes(rec, NULL) == b);
    rec_free(rec);

    /* json -> row without bytes. */
    rec = rec_new("t", NULL, 0, NULL, 0);
    rec_set_json(rec, json_pack("{s:i, s:b}", "n", 5, "ok", 1));
    const struct spoke_row *row = rec_value_row(rec, NULL);
    CHECK(row && row_get_int(row, 0) == 5 && row_get_bool(row, 1) == 1);
    CHECK(rec->forms == (REC_FORM_JSON | REC_FORM_ROW));
    CHECK(rec_value_row(rec, NULL) == row);
    rec_free(rec);

    /* A JSON value that is not an object: bytes, but no row. */
    rec = rec_new("t", NULL, 0, NULL, 0);
    rec_set_json(rec, json_integer(3));
    const char *why = NULL;
    CHECK(rec_value_row(rec, &why) == NULL);
    CHECK_STR(why, "value is not a JSON object");
    b = rec_value_bytes(rec, &len);
    CHECK(b && len == 1 && b[0] == '3');
    CHECK(rec_set_json(rec, NULL) == SPOKE_ERR_INVALID);
    rec_free(rec);
}

static void test_set_value(void)
{
    struct spoke_record *rec = rec_new("t", NULL, 0, station, strlen(station));
    CHECK(rec_value_row(rec, NULL) && rec_value_json(rec));
    char v[] = "{\"v\":1}";
    CHECK(rec_set_value(rec, v, 7, SPOKE_COPY) == SPOKE_OK);
    CHECK(rec->forms == REC_FORM_BYTES);  /* row and tree dropped */
    v[5] = '2';
    const struct spoke_row *row = rec_value_row(rec, NULL);
    CHECK(row && row_get_int(row, 0) == 1);

    /* Taken buffers are the record's: freed with it (ASan checks). */
    char *t = malloc(7);
    memcpy(t, "{\"w\":2}", 7);
    CHECK(rec_set_value(rec, t, 7, SPOKE_TAKE) == SPOKE_OK);
    CHECK((char *)rec->bytes == t);
    CHECK(rec->forms == REC_FORM_BYTES);
    row = rec_value_row(rec, NULL);
    CHECK(row && row_get_int(row, 0) == 2);
    CHECK_STR(schema_name(row_schema(row), 0), "w");

    /* ...even when the call fails. */
    t = malloc(3);
    CHECK(rec_set_value(NULL, t, 3, SPOKE_TAKE) == SPOKE_ERR_INVALID);
    CHECK(rec_set_value(rec, v, 3, (enum spoke_buf_mode)9) == SPOKE_ERR_INVALID);
    CHECK(rec_value_row(rec, NULL) == row);

    /* NULL: a null value. */
    CHECK(rec_set_value(rec, NULL, 0, SPOKE_COPY) == SPOKE_OK);
    CHECK(rec->forms == 0 && rec_value_bytes(rec, NULL) == NULL);
    rec_free(rec);
}

/* Keys of up to REC_KEY_INLINE bytes live inside the record, longer ones
 * on the heap; every switch between the two (copy, take, clone, a key set
 * from the record's own key) keeps the bytes and frees what it replaces
 * (ASan checks). */
static void test_inline_and_heap_keys(void)
{
    char longk[REC_KEY_INLINE + 10];
    memset(longk, 'k', sizeof(longk) - 1);
    longk[sizeof(longk) - 1] = '\0';
    struct spoke_record *rec = rec_new("t", "short", 5, "v", 1);
    CHECK(rec->key == rec->kinl && rec->klen == 5 && memcmp(rec->key, "short", 5) == 0);
    CHECK(rec->bytes == rec->inl && rec->blen == 1 && rec->bytes[1] == '\0');
    /* short -> long -> short, by copy */
    CHECK(rec_set_key(rec, longk, strlen(longk), SPOKE_COPY) == SPOKE_OK);
    CHECK(rec->key != rec->kinl && rec->klen == strlen(longk) && rec->key[rec->klen] == '\0');
    CHECK(rec_set_key(rec, "ab", 2, SPOKE_COPY) == SPOKE_OK);
    CHECK(rec->key == rec->kinl && rec->klen == 2 && memcmp(rec->key, "ab\0", 3) == 0);
    /* A key set from the record's own heap key (freed only after the copy). */
    CHECK(rec_set_key(rec, longk, strlen(longk), SPOKE_COPY) == SPOKE_OK);
    CHECK(rec_set_key(rec, rec->key, 4, SPOKE_COPY) == SPOKE_OK);
    CHECK(rec->key == rec->kinl && rec->klen == 4 && memcmp(rec->key, "kkkk", 4) == 0);
    /* Taken buffers are used as they are, even short ones. */
    char *t = malloc(3);
    memcpy(t, "xy", 3);
    CHECK(rec_set_key(rec, t, 2, SPOKE_TAKE) == SPOKE_OK);
    CHECK((char *)rec->key == t);
    /* Clones copy either kind into their own storage. */
    struct spoke_record *c = rec_clone(rec);
    CHECK(c && c->key == c->kinl && c->klen == 2 && memcmp(c->key, "xy", 2) == 0);
    CHECK(rec_set_key(rec, longk, strlen(longk), SPOKE_COPY) == SPOKE_OK);
    struct spoke_record *c2 = rec_clone(rec);
    CHECK(c2 && c2->key != rec->key && c2->klen == strlen(longk) &&
          memcmp(c2->key, longk, c2->klen) == 0);
    /* The value stored inside the record is replaced like any other. */
    CHECK(rec_set_value(rec, "{\"a\":1}", 7, SPOKE_COPY) == SPOKE_OK);
    CHECK(rec->bytes != rec->inl);
    CHECK(rec_set_key(rec, NULL, 0, SPOKE_COPY) == SPOKE_OK && rec->key == NULL);
    rec_free(c);
    rec_free(c2);
    rec_free(rec);
}

/* ---- clone ---- */

static void test_clone(void)
{
    struct spoke_record *rec = rec_new("t", "key", 3, station, strlen(station));
    rec_header_add(rec, "h", "v", 1);
    rec_set_position(rec, "p", 9);
    rec->ts = 1234;
    CHECK(rec_value_row(rec, NULL) && rec_value_json(rec));

    struct spoke_record *c = rec_clone(rec);
    CHECK(c != NULL);
    CHECK(c->topic == rec->topic);
    CHECK(c->ts == 1234);
    CHECK(c->klen == 3 && c->key != rec->key && memcmp(c->key, "key", 3) == 0);
    const char *p;
    int64_t off;
    rec_position(c, &p, &off);
    CHECK(p == intern_str("p") && off == 9);
    CHECK(c->nhdrs == 1 && c->hdrs[0].name != rec->hdrs[0].name);
    /* One authoritative form: the bytes. */
    CHECK(c->forms == REC_FORM_BYTES);
    CHECK(c->bytes != rec->bytes && c->blen == rec->blen);
    CHECK(c->origin == NULL);

    /* Independent: changing or freeing the original leaves the copy. */
    rec->key[0] = 'X';
    rec_set_value(rec, "{}", 2, SPOKE_COPY);
    rec_header_add(rec, "h2", "v", 1);
    rec_free(rec);
    CHECK(c->key[0] == 'k');
    CHECK(c->nhdrs == 1);
    const struct spoke_row *row = rec_value_row(c, NULL);
    CHECK(row && row_get_int(row, 0) == 213688169);
    rec_free(c);

    /* Row-only record: the row is cloned, not shared. */
    rec = rec_new("t", NULL, 0, NULL, 0);
    struct spoke_row *r = sample_row();
    rec_set_row(rec, r);
    c = rec_clone(rec);
    CHECK(c->forms == REC_FORM_ROW && c->row != r);
    row_set_int(r, 0, 99);
    CHECK(row_get_int(c->row, 0) == 7);
    rec_free(rec);
    size_t len;
    const void *b = rec_value_bytes(c, &len);
    CHECK(b && len == strlen(SAMPLE_JSON) && memcmp(b, SAMPLE_JSON, len) == 0);
    rec_free(c);

    /* JSON-only record: deep copy. */
    rec = rec_new("t", NULL, 0, NULL, 0);
    json_t *j = json_pack("{s:{s:i}}", "a", "b", 1);
    rec_set_json(rec, j);
    c = rec_clone(rec);
    CHECK(c->forms == REC_FORM_JSON && c->json != j && json_equal(c->json, j));
    json_object_set_new(json_object_get(j, "a"), "b", json_integer(2));
    CHECK(json_integer_value(json_object_get(json_object_get(c->json, "a"), "b")) == 1);
    rec_free(rec);
    rec_free(c);

    /* Null value clones as null. */
    rec = rec_new("t", NULL, 0, NULL, 0);
    c = rec_clone(rec);
    CHECK(c && c->forms == 0);
    rec_free(rec);
    rec_free(c);
}

/* ---- origins (real tracker) ---- */

struct seen {
    const char *part;
    int64_t off;
    int n;
};

static void on_committed(void *ctx, const char *partition, int64_t offset)
{
    struct seen *s = ctx;
    s->part = partition;
    s->off = offset;
    s->n++;
}

static struct seen committed_of(struct tracker *t)
{
    struct seen s = { NULL, -1, 0 };
    tracker_committed(t, on_committed, &s);
    return s;
}

static void test_origin_ack(void)
{
    struct tracker *t = tracker_new("test-ack");
    const char *part = intern_str("p");
    struct spoke_record *rec = rec_new("t", NULL, 0, "{}", 2);
    rec_set_origin(rec, tracker_add(t, part, 10, 0));
    CHECK(rec->origin != NULL);
    CHECK(tracker_inflight(t) == 1);
    /* Ack: the unit ends delivered, the position commits, the origin is
     * detached, so freeing afterwards does not end it again. */
    rec_ack(rec);
    CHECK(rec->origin == NULL);
    CHECK(tracker_inflight(t) == 0);
    CHECK(!tracker_blocked(t));
    struct seen s = committed_of(t);
    CHECK(s.n == 1 && s.part == part && s.off == 10);
    rec_ack(rec);  /* no origin: nothing happens */
    rec_free(rec);
    CHECK(!tracker_blocked(t));
    tracker_release(t);
}

static void test_origin_free(void)
{
    struct tracker *t = tracker_new("test-free");
    struct spoke_record *rec = rec_new("t", NULL, 0, "{}", 2);
    rec_set_origin(rec, tracker_add(t, intern_str("p"), 11, 0));
    /* Freed while holding its unit: abandoned, nothing commits. */
    rec_free(rec);
    CHECK(tracker_inflight(t) == 0);
    CHECK(tracker_blocked(t));
    CHECK(committed_of(t).n == 0);
    tracker_release(t);
}

static void test_origin_clone(void)
{
    struct tracker *t = tracker_new("test-clone");
    struct spoke_record *rec = rec_new("t", NULL, 0, "{}", 2);
    rec_set_origin(rec, tracker_add(t, intern_str("p"), 12, 0));
    struct spoke_record *c = rec_clone(rec);
    /* The copy holds its own unit of the same origin. */
    CHECK(c->origin == rec->origin);
    rec_ack(rec);
    CHECK(tracker_inflight(t) == 1);  /* the copy's unit is still out */
    CHECK(committed_of(t).n == 0);
    rec_ack(c);
    CHECK(tracker_inflight(t) == 0);
    CHECK(committed_of(t).off == 12);
    CHECK(!tracker_blocked(t));
    rec_free(rec);
    rec_free(c);

    /* A delivered original with an abandoned copy: the position does not
     * commit. */
    rec = rec_new("t", NULL, 0, "{}", 2);
    rec_set_origin(rec, tracker_add(t, intern_str("p"), 13, 0));
    c = rec_clone(rec);
    rec_ack(rec);
    rec_free(c);
    CHECK(tracker_inflight(t) == 0);
    CHECK(tracker_blocked(t));
    CHECK(committed_of(t).off == 12);
    rec_free(rec);
    tracker_release(t);
}

int main(void)
{
    RUN(test_intern);
    RUN(test_intern_threads);
    RUN(test_new);
    RUN(test_clock_stamp);
    RUN(test_topic_position_key);
    RUN(test_headers);
    RUN(test_bytes_to_row_and_json);
    RUN(test_bad_bytes);
    RUN(test_row_to_bytes_and_json);
    RUN(test_json_to_bytes_and_row);
    RUN(test_set_value);
    RUN(test_inline_and_heap_keys);
    RUN(test_clone);
    RUN(test_origin_ack);
    RUN(test_origin_free);
    RUN(test_origin_clone);
    int rc = TEST_REPORT();
    intern_free_all();
    return rc;
}
