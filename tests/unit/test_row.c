/* Unit tests: schemas and rows (host/src/row.c). */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "row_impl.h"
#include "test.h"

static void test_schema_basics(void)
{
    struct spoke_schema *s = schema_new();
    CHECK(s != NULL);
    CHECK(schema_count(s) == 0);
    CHECK(schema_add(s, "id", SPOKE_TYPE_INT) == 0);
    CHECK(schema_add(s, "name", SPOKE_TYPE_STRING) == 1);
    CHECK(schema_add(s, "when", SPOKE_TYPE_TIMESTAMP) == 2);
    CHECK(schema_count(s) == 3);
    /* Duplicates, NULL names, bad types and invalid UTF-8 are refused and
     * leave the schema unchanged. */
    CHECK(schema_add(s, "id", SPOKE_TYPE_STRING) == SPOKE_ERR_INVALID);
    CHECK(schema_add(s, NULL, SPOKE_TYPE_INT) == SPOKE_ERR_INVALID);
    CHECK(schema_add(s, "bad", (enum spoke_type)42) == SPOKE_ERR_INVALID);
    CHECK(schema_add(s, "bad", (enum spoke_type)-1) == SPOKE_ERR_INVALID);
    CHECK(schema_add(s, "\xc0\x80", SPOKE_TYPE_INT) == SPOKE_ERR_INVALID);
    CHECK(schema_count(s) == 3);
    CHECK_STR(schema_name(s, 0), "id");
    CHECK_STR(schema_name(s, 1), "name");
    CHECK(schema_name(s, 3) == NULL);
    CHECK(schema_type(s, 2) == SPOKE_TYPE_TIMESTAMP);
    CHECK(schema_type(s, 3) == SPOKE_TYPE_NULL);
    CHECK(schema_index(s, "name") == 1);
    CHECK(schema_index(s, "nam") == -1);
    CHECK(schema_index(s, "names") == -1);
    CHECK(schema_index(s, NULL) == -1);
    CHECK(schema_index_n(s, "namexyz", 4) == 1);
    CHECK(schema_index_n(s, "whenever", 4) == 2);
    /* The precomputed JSON key is quoted, escaped and has its colon. */
    CHECK(schema_add(s, "a\"b\\c\n", SPOKE_TYPE_BOOL) == 3);
    size_t klen;
    const char *k = schema_json_key(s, 3, &klen);
    CHECK(klen == strlen("\"a\\\"b\\\\c\\u000a\":"));
    CHECK(memcmp(k, "\"a\\\"b\\\\c\\u000a\":", klen) == 0);
    k = schema_json_key(s, 0, &klen);
    CHECK(klen == 5 && memcmp(k, "\"id\":", 5) == 0);
    schema_unref(s);
    schema_unref(NULL);
}

/* Large schemas switch to a hash table: every name must still be found,
 * including after growth, and absent names must not be. */
static void test_schema_large(void)
{
    struct spoke_schema *s = schema_new();
    char name[32];
    int ok = 1;
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "field_%d", i);
        ok &= schema_add(s, name, (enum spoke_type)(i % 8)) == i;
    }
    CHECK(ok);
    CHECK(schema_count(s) == 300);
    ok = 1;
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "field_%d", i);
        ok &= schema_index(s, name) == i;
        ok &= schema_type(s, (size_t)i) == (enum spoke_type)(i % 8);
    }
    CHECK(ok);
    CHECK(schema_index(s, "field_300") == -1);
    CHECK(schema_index(s, "field_") == -1);
    CHECK(schema_index_n(s, "field_299zzz", 9) == 299);
    CHECK(schema_add(s, "field_17", SPOKE_TYPE_INT) == SPOKE_ERR_INVALID);
    schema_unref(s);
}

static void test_schema_freeze_and_refs(void)
{
    struct spoke_schema *s = schema_new();
    CHECK(schema_add(s, "a", SPOKE_TYPE_INT) == 0);
    schema_ref(s);
    schema_unref(s);  /* back to one reference: still usable */
    CHECK(schema_add(s, "b", SPOKE_TYPE_INT) == 1);
    struct spoke_row *row = row_new(s);
    CHECK(row != NULL);
    /* Frozen once a row uses it. */
    CHECK(schema_add(s, "c", SPOKE_TYPE_INT) == SPOKE_ERR_STATE);
    CHECK(schema_count(s) == 2);
    /* The row holds its own reference: dropping ours keeps the schema. */
    schema_unref(s);
    CHECK(row_schema(row) == s);
    CHECK_STR(schema_name(row_schema(row), 1), "b");
    CHECK(row_index(row, "b") == 1);
    CHECK(row_set_int(row, 1, 5) == SPOKE_OK);
    row_free(row);  /* last reference: ASan reports a leak or double free */
    CHECK(row_new(NULL) == NULL);
}

struct ref_arg {
    struct spoke_schema *s;
    int n;
};

static void *ref_worker(void *p)
{
    struct ref_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        schema_ref(a->s);
        struct spoke_row *row = row_new(a->s);
        schema_unref(a->s);
        row_free(row);
    }
    return NULL;
}

/* Rows of one schema on two threads: the refcount must stay exact. */
static void test_schema_refcount_threads(void)
{
    struct spoke_schema *s = schema_new();
    schema_add(s, "x", SPOKE_TYPE_INT);
    struct ref_arg a = { s, 100000 };
    pthread_t t1, t2;
    CHECK(pthread_create(&t1, NULL, ref_worker, &a) == 0);
    CHECK(pthread_create(&t2, NULL, ref_worker, &a) == 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    /* Still alive with exactly our reference. */
    CHECK(schema_count(s) == 1);
    CHECK_STR(schema_name(s, 0), "x");
    schema_unref(s);
}

/* Rows of several schemas in turn, made on one thread and freed on
 * another (a nested producer such as velib_source): fewer schemas than a
 * thread keeps batches for, then more, so batches are given back and
 * taken again. */
#define NSCHEMAS 6
#define NTURNS 5000
struct turn_arg {
    struct spoke_schema *s[NSCHEMAS];
    struct spoke_row **rows;
    int nsch;          /* schemas used in turn */
    unsigned during;   /* refs of s[0] seen by the maker before it exits */
};

static void *turn_maker(void *p)
{
    struct turn_arg *a = p;
    for (int i = 0; i < NTURNS; i++)
        a->rows[i] = row_new(a->s[i % a->nsch]);
    a->during = atomic_load(&a->s[0]->refs);
    return NULL;
}

static void *turn_freer(void *p)
{
    struct turn_arg *a = p;
    for (int i = 0; i < NTURNS; i++)
        row_free(a->rows[i]);
    return NULL;
}

static void check_turns(int nsch)
{
    struct turn_arg a = { .nsch = nsch };
    a.rows = calloc(NTURNS, sizeof(*a.rows));
    for (int k = 0; k < NSCHEMAS; k++) {
        a.s[k] = schema_new();
        schema_add(a.s[k], "x", SPOKE_TYPE_INT);
    }
    pthread_t t;
    CHECK(pthread_create(&t, NULL, turn_maker, &a) == 0);
    pthread_join(t, NULL);
    for (int i = 0; i < NTURNS; i++)
        CHECK(a.rows[i] && row_schema(a.rows[i]) == a.s[i % nsch]);
    /* The maker took references in batches: while it ran, more than its
     * live rows plus ours (when it had a batch for every schema); once it
     * exited, exactly those. */
    if (nsch <= 4)
        CHECK(a.during > (unsigned)(NTURNS + nsch - 1) / nsch + 1);
    CHECK(atomic_load(&a.s[0]->refs) == (unsigned)(NTURNS + nsch - 1) / nsch + 1);
    CHECK(pthread_create(&t, NULL, turn_freer, &a) == 0);
    pthread_join(t, NULL);
    for (int k = 0; k < NSCHEMAS; k++) {
        CHECK(atomic_load(&a.s[k]->refs) == 1);
        schema_unref(a.s[k]);  /* the last: ASan reports a leak or a double free */
    }
    free(a.rows);
}

static void test_schema_refs_several_schemas_in_turn(void)
{
    check_turns(3);          /* fewer than a thread's batches */
    check_turns(NSCHEMAS);   /* more: batches go back and come again */
}

static struct spoke_schema *all_types_schema(void)
{
    struct spoke_schema *s = schema_new();
    schema_add(s, "n", SPOKE_TYPE_NULL);
    schema_add(s, "b", SPOKE_TYPE_BOOL);
    schema_add(s, "i", SPOKE_TYPE_INT);
    schema_add(s, "d", SPOKE_TYPE_DOUBLE);
    schema_add(s, "s", SPOKE_TYPE_STRING);
    schema_add(s, "t", SPOKE_TYPE_TIMESTAMP);
    schema_add(s, "l", SPOKE_TYPE_LIST);
    schema_add(s, "m", SPOKE_TYPE_MAP);
    return s;
}

static void test_setters_getters(void)
{
    struct spoke_schema *s = all_types_schema();
    struct spoke_row *row = row_new(s);
    CHECK(row_count(row) == 8);
    for (size_t i = 0; i < 8; i++)
        CHECK(row_type(row, i) == SPOKE_TYPE_NULL);

    CHECK(row_set_bool(row, 1, 7) == SPOKE_OK);
    CHECK(row_type(row, 1) == SPOKE_TYPE_BOOL);
    CHECK(row_get_bool(row, 1) == 1);
    CHECK(row_set_bool(row, 1, 0) == SPOKE_OK);
    CHECK(row_get_bool(row, 1) == 0);
    CHECK(row_type(row, 1) == SPOKE_TYPE_BOOL);

    CHECK(row_set_int(row, 2, INT64_MIN) == SPOKE_OK);
    CHECK(row_get_int(row, 2) == INT64_MIN);
    CHECK(row_set_double(row, 3, -2.5) == SPOKE_OK);
    CHECK(row_get_double(row, 3) == -2.5);
    CHECK(row_set_string(row, 4, "h\xc3\xa9llo", 6) == SPOKE_OK);
    size_t len = 99;
    CHECK_STR(row_get_string(row, 4, &len), "h\xc3\xa9llo");
    CHECK(len == 6);
    CHECK(row_get_string(row, 4, NULL) != NULL);
    CHECK(row_set_timestamp(row, 5, 1732004538000) == SPOKE_OK);
    CHECK(row_get_timestamp(row, 5) == 1732004538000);
    CHECK(row_type(row, 5) == SPOKE_TYPE_TIMESTAMP);

    struct spoke_row *list = row_new_list(2);
    CHECK(row_set_int(list, 0, 1) == SPOKE_OK);
    CHECK(row_set_row(row, 6, list) == SPOKE_OK);
    CHECK(row_get_row(row, 6) == list);
    CHECK(row_type(row, 6) == SPOKE_TYPE_LIST);
    struct spoke_schema *ms = schema_new();
    schema_add(ms, "k", SPOKE_TYPE_STRING);
    struct spoke_row *map = row_new(ms);
    schema_unref(ms);
    CHECK(row_set_row(row, 7, map) == SPOKE_OK);
    CHECK(row_get_row(row, 7) == map);
    CHECK(row_type(row, 7) == SPOKE_TYPE_MAP);

    /* Each setter of another type than the field's: SPOKE_ERR_TYPE, value kept. */
    CHECK(row_set_int(row, 1, 1) == SPOKE_ERR_TYPE);
    CHECK(row_set_bool(row, 2, 1) == SPOKE_ERR_TYPE);
    CHECK(row_set_double(row, 2, 1.0) == SPOKE_ERR_TYPE);
    CHECK(row_set_string(row, 3, "x", 1) == SPOKE_ERR_TYPE);
    CHECK(row_set_int(row, 5, 1) == SPOKE_ERR_TYPE);
    CHECK(row_set_timestamp(row, 2, 1) == SPOKE_ERR_TYPE);
    CHECK(row_set_bool(row, 0, 1) == SPOKE_ERR_TYPE);
    CHECK(row_set_row(row, 7, row_new_list(1)) == SPOKE_ERR_TYPE);  /* list into map: freed */
    struct spoke_schema *ms2 = schema_new();
    struct spoke_row *map2 = row_new(ms2);
    schema_unref(ms2);
    CHECK(row_set_row(row, 6, map2) == SPOKE_ERR_TYPE);              /* map into list: freed */
    CHECK(row_set_row(row, 4, row_new_list(0)) == SPOKE_ERR_TYPE);
    CHECK(row_set_row(row, 6, NULL) == SPOKE_ERR_INVALID);
    CHECK(row_get_int(row, 2) == INT64_MIN);
    CHECK(row_get_row(row, 6) == list);

    /* Out of range: SPOKE_ERR_RANGE for every setter. */
    CHECK(row_set_null(row, 8) == SPOKE_ERR_RANGE);
    CHECK(row_set_bool(row, 8, 1) == SPOKE_ERR_RANGE);
    CHECK(row_set_int(row, 8, 1) == SPOKE_ERR_RANGE);
    CHECK(row_set_double(row, 8, 1) == SPOKE_ERR_RANGE);
    CHECK(row_set_string(row, 8, "x", 1) == SPOKE_ERR_RANGE);
    CHECK(row_set_timestamp(row, 8, 1) == SPOKE_ERR_RANGE);
    CHECK(row_set_row(row, 8, row_new_list(0)) == SPOKE_ERR_RANGE);

    /* Getters of another type: 0 / 0.0 / NULL; past the end likewise. */
    CHECK(row_get_bool(row, 2) == 0);
    CHECK(row_get_int(row, 3) == 0);
    CHECK(row_get_double(row, 2) == 0.0);
    len = 99;
    CHECK(row_get_string(row, 2, &len) == NULL && len == 0);
    CHECK(row_get_timestamp(row, 2) == 0);
    CHECK(row_get_int(row, 5) == 0);  /* a timestamp is not an int */
    CHECK(row_get_row(row, 4) == NULL);
    CHECK(row_type(row, 100) == SPOKE_TYPE_NULL);
    CHECK(row_get_int(row, 100) == 0);
    CHECK(row_get_row(row, 100) == NULL);

    /* row_set_null is allowed on every field and releases what it held. */
    for (size_t i = 0; i < 8; i++)
        CHECK(row_set_null(row, i) == SPOKE_OK);
    for (size_t i = 0; i < 8; i++)
        CHECK(row_type(row, i) == SPOKE_TYPE_NULL);
    CHECK(row_index(row, "t") == 5);
    CHECK(row_index(row, "zz") == -1);
    row_free(row);
    schema_unref(s);
    row_free(NULL);
}

static void test_list_any_type(void)
{
    struct spoke_row *l = row_new_list(7);
    CHECK(row_schema(l) == NULL);
    CHECK(row_index(l, "x") == -1);
    CHECK(row_set_bool(l, 0, 1) == SPOKE_OK);
    CHECK(row_set_int(l, 1, 2) == SPOKE_OK);
    CHECK(row_set_double(l, 2, 3.5) == SPOKE_OK);
    CHECK(row_set_string(l, 3, "four", 4) == SPOKE_OK);
    CHECK(row_set_timestamp(l, 4, 5) == SPOKE_OK);
    CHECK(row_set_row(l, 5, row_new_list(1)) == SPOKE_OK);
    CHECK(row_set_null(l, 6) == SPOKE_OK);
    CHECK(row_type(l, 0) == SPOKE_TYPE_BOOL);
    CHECK(row_type(l, 1) == SPOKE_TYPE_INT);
    CHECK(row_type(l, 2) == SPOKE_TYPE_DOUBLE);
    CHECK(row_type(l, 3) == SPOKE_TYPE_STRING);
    CHECK(row_type(l, 4) == SPOKE_TYPE_TIMESTAMP);
    CHECK(row_type(l, 5) == SPOKE_TYPE_LIST);
    CHECK(row_type(l, 6) == SPOKE_TYPE_NULL);
    /* An element may change type. */
    CHECK(row_set_string(l, 1, "two", 3) == SPOKE_OK);
    CHECK(row_type(l, 1) == SPOKE_TYPE_STRING);
    CHECK(row_set_int(l, 7, 1) == SPOKE_ERR_RANGE);
    row_free(l);
    struct spoke_row *empty = row_new_list(0);
    CHECK(empty != NULL && row_count(empty) == 0);
    row_free(empty);
}

static int valid(const char *s, size_t len)
{
    struct spoke_row *l = row_new_list(1);
    int rc = row_set_string(l, 0, s, len);
    row_free(l);
    CHECK(row_utf8_valid(s, len) == (rc == SPOKE_OK));
    return rc == SPOKE_OK;
}

#define V(lit) valid(lit, sizeof(lit) - 1)

static void test_utf8(void)
{
    CHECK(V(""));
    CHECK(V("plain ascii text that is longer than eight bytes"));
    CHECK(V("\xc3\xa9"));                  /* U+00E9 */
    CHECK(V("\xc2\x80"));                  /* U+0080, smallest 2-byte */
    CHECK(V("\xe2\x82\xac"));              /* U+20AC */
    CHECK(V("\xe0\xa0\x80"));              /* U+0800, smallest 3-byte */
    CHECK(V("\xed\x9f\xbf"));              /* U+D7FF, just below the surrogates */
    CHECK(V("\xee\x80\x80"));              /* U+E000, just above */
    CHECK(V("\xef\xbf\xbf"));              /* U+FFFF */
    CHECK(V("\xf0\x9f\x98\x80"));          /* U+1F600 */
    CHECK(V("\xf0\x90\x80\x80"));          /* U+10000, smallest 4-byte */
    CHECK(V("\xf4\x8f\xbf\xbf"));          /* U+10FFFF, the largest */
    CHECK(V("a\0b"));                      /* NUL is a valid character */

    CHECK(!V("\xc0\x80"));                 /* overlong NUL */
    CHECK(!V("\xc1\xbf"));                 /* overlong */
    CHECK(!V("\xe0\x80\x80"));             /* overlong 3-byte */
    CHECK(!V("\xe0\x9f\xbf"));             /* overlong 3-byte */
    CHECK(!V("\xf0\x80\x80\x80"));         /* overlong 4-byte */
    CHECK(!V("\xf0\x8f\xbf\xbf"));         /* overlong 4-byte */
    CHECK(!V("\xed\xa0\x80"));             /* U+D800 */
    CHECK(!V("\xed\xbf\xbf"));             /* U+DFFF */
    CHECK(!V("\xed\xa0\xbd\xed\xb8\x80")); /* CESU-8 pair */
    CHECK(!V("\xf4\x90\x80\x80"));         /* U+110000 */
    CHECK(!V("\xf5\x80\x80\x80"));
    CHECK(!V("\xff"));
    CHECK(!V("\x80"));                     /* lone continuation */
    CHECK(!V("\xe2\x82"));                 /* truncated */
    CHECK(!V("\xe2\x28\xa1"));             /* bad continuation */
    CHECK(!V("\xf0\x9f\x98"));             /* truncated 4-byte */
    /* The invalid byte deep in a long ASCII run (the word-at-a-time path). */
    CHECK(!V("0123456789abcdefghijklmnopqrstu\xc0\x80vwxyz"));
    CHECK(V("0123456789abcdefghijklmnopqrstu\xc3\xa9vwxyz0123456789"));

    /* A failed set leaves the old value. */
    struct spoke_row *l = row_new_list(1);
    CHECK(row_set_string(l, 0, "keep", 4) == SPOKE_OK);
    CHECK(row_set_string(l, 0, "\xff", 1) == SPOKE_ERR_INVALID);
    CHECK(row_set_string(l, 0, NULL, 3) == SPOKE_ERR_INVALID);
    CHECK_STR(row_get_string(l, 0, NULL), "keep");
    /* Strings keep their length through embedded NULs. */
    size_t len;
    CHECK(row_set_string(l, 0, "a\0b", 3) == SPOKE_OK);
    const char *p = row_get_string(l, 0, &len);
    CHECK(len == 3 && memcmp(p, "a\0b", 4) == 0);
    CHECK(row_set_string(l, 0, NULL, 0) == SPOKE_OK);
    CHECK(row_get_string(l, 0, &len) != NULL && len == 0);
    row_free(l);
}

/* Rows with a string reserve: strings go inside the row while room lasts,
 * then into their own allocations; replacing one must never free reserve
 * memory (ASan would report it). */
static void test_reserve(void)
{
    struct spoke_schema *s = schema_new();
    schema_add(s, "a", SPOKE_TYPE_STRING);
    schema_add(s, "b", SPOKE_TYPE_STRING);
    struct spoke_row *row = row_new_reserve(s, 8);
    schema_unref(s);
    CHECK(row_set_string(row, 0, "abc", 3) == SPOKE_OK);   /* 4 of 8 */
    CHECK(row_set_string(row, 1, "defg", 4) == SPOKE_OK);  /* 5: does not fit */
    CHECK(row_set_string(row, 0, "xyz", 3) == SPOKE_OK);   /* fits again */
    CHECK(row_set_string(row, 1, "0123456789", 10) == SPOKE_OK);
    CHECK_STR(row_get_string(row, 0, NULL), "xyz");
    CHECK_STR(row_get_string(row, 1, NULL), "0123456789");
    struct spoke_row *c = row_clone(row);
    row_free(row);
    CHECK_STR(row_get_string(c, 0, NULL), "xyz");
    CHECK_STR(row_get_string(c, 1, NULL), "0123456789");
    CHECK(row_set_string(c, 1, "new", 3) == SPOKE_OK);
    row_free(c);

    struct spoke_row *l = row_new_list_reserve(2, 100);
    CHECK(row_count(l) == 2);
    CHECK(row_set_string(l, 0, "in reserve", 10) == SPOKE_OK);
    CHECK(row_set_null(l, 0) == SPOKE_OK);
    row_free(l);
}

static void test_clone(void)
{
    struct spoke_schema *s = all_types_schema();
    struct spoke_row *row = row_new(s);
    row_set_bool(row, 1, 1);
    row_set_int(row, 2, 42);
    row_set_double(row, 3, 0.5);
    row_set_string(row, 4, "orig", 4);
    row_set_timestamp(row, 5, -1);
    struct spoke_row *list = row_new_list(2);
    row_set_string(list, 0, "elem", 4);
    row_set_int(list, 1, 7);
    row_set_row(row, 6, list);
    struct spoke_schema *ms = schema_new();
    schema_add(ms, "k", SPOKE_TYPE_STRING);
    struct spoke_row *map = row_new(ms);
    schema_unref(ms);
    row_set_string(map, 0, "v", 1);
    row_set_row(row, 7, map);

    struct spoke_row *c = row_clone(row);
    CHECK(c != NULL && c != row);
    CHECK(row_schema(c) == s);  /* schemas are shared, not copied */
    CHECK(row_get_row(c, 6) != list);
    CHECK(row_get_row(c, 7) != map);

    /* Changing the original does not touch the copy... */
    row_set_int(row, 2, 0);
    row_set_string(row, 4, "changed", 7);
    row_set_string(list, 0, "changed", 7);
    row_set_string(map, 0, "changed", 7);
    CHECK(row_get_int(c, 2) == 42);
    CHECK_STR(row_get_string(c, 4, NULL), "orig");
    CHECK_STR(row_get_string(row_get_row(c, 6), 0, NULL), "elem");
    CHECK_STR(row_get_string(row_get_row(c, 7), 0, NULL), "v");
    /* ...and the copy outlives it. */
    row_free(row);
    schema_unref(s);
    CHECK(row_get_bool(c, 1) == 1);
    CHECK(row_get_double(c, 3) == 0.5);
    CHECK(row_get_timestamp(c, 5) == -1);
    CHECK(row_get_int(row_get_row(c, 6), 1) == 7);
    CHECK_STR(schema_name(row_schema(row_get_row(c, 7)), 0), "k");
    row_free(c);
    CHECK(row_clone(NULL) == NULL);
}

/* Short strings take an ASCII-only fast path before the full validator:
 * for every length up to 40 and every position, a non-ASCII byte there
 * (valid sequence or not) gets the validator's verdict. */
static void test_utf8_short_paths(void)
{
    static const char *inserts[] = { "\x80", "\xff", "\xc3\xa9", "\xc0\x80", "\xed\xa0\x80",
                                     "\xf0\x9f\x98\x80", "\x7f", "\0" };
    static const int ok[] = { 0, 0, 1, 0, 0, 1, 1, 1 };
    char b[64];
    int bad = 0;
    for (size_t len = 0; len <= 40; len++) {
        memset(b, 'a', sizeof(b));
        if (!valid(b, len))
            bad++;
        for (size_t k = 0; k < sizeof(inserts) / sizeof(inserts[0]); k++) {
            size_t n = strlen(inserts[k]) ? strlen(inserts[k]) : 1;
            for (size_t at = 0; at + n <= len; at++) {
                memset(b, 'a', sizeof(b));
                memcpy(b + at, inserts[k], n);
                if (valid(b, len) != ok[k])
                    bad++;
            }
        }
        /* A truncated sequence at the very end. */
        if (len >= 1) {
            memset(b, 'a', sizeof(b));
            b[len - 1] = (char)0xe2;
            if (valid(b, len))
                bad++;
        }
    }
    CHECK_MSG(bad == 0, "%d verdicts wrong", bad);
}

/* Values that own memory (strings outside the reserve, child rows) are
 * released when replaced by anything, when set to null and when the row is
 * freed; values that own nothing never are (ASan/LSan check both). */
static void test_owned_values(void)
{
    struct spoke_schema *s = schema_new();
    schema_add(s, "s", SPOKE_TYPE_STRING);
    schema_add(s, "m", SPOKE_TYPE_MAP);
    schema_add(s, "l", SPOKE_TYPE_LIST);
    schema_add(s, "i", SPOKE_TYPE_INT);
    struct spoke_row *row = row_new_reserve(s, 4);
    CHECK(row_set_string(row, 0, "a long string, outside the reserve", 34) == SPOKE_OK);
    CHECK(row_set_string(row, 0, "ab", 2) == SPOKE_OK);           /* into the reserve */
    CHECK_STR(row_get_string(row, 0, NULL), "ab");
    CHECK(row_set_string(row, 0, "another long string", 19) == SPOKE_OK);
    CHECK(row_set_null(row, 0) == SPOKE_OK);
    CHECK(row_type(row, 0) == SPOKE_TYPE_NULL);
    CHECK(row_set_string(row, 0, "and one more long string", 24) == SPOKE_OK);

    struct spoke_row *child = row_new(s);
    CHECK(row_set_string(child, 0, "child's own long string", 23) == SPOKE_OK);
    CHECK(row_set_row(row, 1, child) == SPOKE_OK);
    struct spoke_row *list = row_new_list(2);
    CHECK(row_set_string(list, 0, "x", 1) == SPOKE_OK);
    CHECK(row_set_row(row, 2, list) == SPOKE_OK);
    CHECK(row_set_row(row, 2, row_new_list(1)) == SPOKE_OK);       /* replaces the list */
    CHECK(row_count(row_get_row(row, 2)) == 1);
    CHECK(row_set_int(row, 3, 7) == SPOKE_OK);
    /* A wrongly typed set changes nothing. */
    CHECK(row_set_int(row, 0, 1) == SPOKE_ERR_TYPE);
    CHECK_STR(row_get_string(row, 0, NULL), "and one more long string");

    struct spoke_row *copy = row_clone(row);
    row_free(row);
    CHECK_STR(row_get_string(copy, 0, NULL), "and one more long string");
    CHECK_STR(row_get_string(row_get_row(copy, 1), 0, NULL), "child's own long string");
    CHECK(row_get_int(copy, 3) == 7);
    CHECK(row_set_null(copy, 1) == SPOKE_OK);                     /* frees the child copy */
    CHECK(row_get_row(copy, 1) == NULL);
    row_free(copy);

    /* A list whose values are replaced in turn by every kind. */
    struct spoke_row *l = row_new_list(1);
    CHECK(row_set_string(l, 0, "first string, its own allocation", 32) == SPOKE_OK);
    CHECK(row_set_bool(l, 0, 1) == SPOKE_OK);
    CHECK(row_set_string(l, 0, "second string, its own allocation", 33) == SPOKE_OK);
    CHECK(row_set_double(l, 0, 1.5) == SPOKE_OK);
    CHECK(row_set_row(l, 0, row_new_list(3)) == SPOKE_OK);
    CHECK(row_set_timestamp(l, 0, 5) == SPOKE_OK);
    CHECK(row_get_timestamp(l, 0) == 5);
    CHECK(row_set_row(l, 0, row_new_list(3)) == SPOKE_OK);
    row_free(l);
    schema_unref(s);
}

/* row_values lends what row_type and the getters return, for every type,
 * for strings inside and outside the row's reserve, nested rows and list
 * elements, and follows changes made after it was taken. */
static void check_view_matches(const struct spoke_row *row)
{
    size_t n = 99;
    const struct spoke_value *v = row_values(row, &n);
    CHECK(n == row_count(row));
    CHECK(v != NULL);
    for (size_t i = 0; v && i < n; i++) {
        CHECK(v[i].type == row_type(row, i));
        switch (v[i].type) {
        case SPOKE_TYPE_BOOL:
            CHECK(v[i].u.b == row_get_bool(row, i));
            break;
        case SPOKE_TYPE_INT:
            CHECK(v[i].u.i == row_get_int(row, i));
            break;
        case SPOKE_TYPE_TIMESTAMP:
            CHECK(v[i].u.i == row_get_timestamp(row, i));
            break;
        case SPOKE_TYPE_DOUBLE:
            CHECK(v[i].u.d == row_get_double(row, i));
            break;
        case SPOKE_TYPE_STRING: {
            size_t len = 0;
            const char *p = row_get_string(row, i, &len);
            CHECK(v[i].u.s.p == p && v[i].u.s.len == len && p[len] == '\0');
            break;
        }
        case SPOKE_TYPE_LIST:
        case SPOKE_TYPE_MAP:
            CHECK(v[i].u.row == row_get_row(row, i));
            check_view_matches(v[i].u.row);
            break;
        default:
            CHECK(v[i].type == SPOKE_TYPE_NULL);
            break;
        }
    }
}

static void test_row_values_view(void)
{
    struct spoke_schema *s = schema_new();
    CHECK(schema_add(s, "b", SPOKE_TYPE_BOOL) == 0);
    CHECK(schema_add(s, "i", SPOKE_TYPE_INT) == 1);
    CHECK(schema_add(s, "d", SPOKE_TYPE_DOUBLE) == 2);
    CHECK(schema_add(s, "s", SPOKE_TYPE_STRING) == 3);
    CHECK(schema_add(s, "t", SPOKE_TYPE_TIMESTAMP) == 4);
    CHECK(schema_add(s, "l", SPOKE_TYPE_LIST) == 5);
    CHECK(schema_add(s, "long", SPOKE_TYPE_STRING) == 6);
    CHECK(schema_add(s, "nothing", SPOKE_TYPE_INT) == 7);
    struct spoke_row *r = row_new(s);
    CHECK(row_set_bool(r, 0, 7) == SPOKE_OK);
    CHECK(row_set_int(r, 1, -1234567890123LL) == SPOKE_OK);
    CHECK(row_set_double(r, 2, 48.8566) == SPOKE_OK);
    CHECK(row_set_string(r, 3, "16107", 5) == SPOKE_OK);
    CHECK(row_set_timestamp(r, 4, 1732001704000LL) == SPOKE_OK);
    struct spoke_row *l = row_new_list(3);
    CHECK(row_set_int(l, 0, 29) == SPOKE_OK);
    CHECK(row_set_string(l, 1, "ebike", 5) == SPOKE_OK);
    CHECK(row_set_row(r, 5, l) == SPOKE_OK);
    char big[600];
    memset(big, 'x', sizeof(big));
    CHECK(row_set_string(r, 6, big, sizeof(big)) == SPOKE_OK);  /* outside the reserve */
    size_t n = 0;
    const struct spoke_value *v = row_values(r, &n);
    CHECK(n == 8);
    CHECK(v && v[0].type == SPOKE_TYPE_BOOL && v[0].u.b == 1);
    CHECK(v && v[1].type == SPOKE_TYPE_INT && v[1].u.i == -1234567890123LL);
    CHECK(v && v[3].type == SPOKE_TYPE_STRING && v[3].u.s.len == 5 &&
          memcmp(v[3].u.s.p, "16107", 6) == 0);
    CHECK(v && v[6].type == SPOKE_TYPE_STRING && v[6].u.s.len == sizeof(big));
    CHECK(v && v[7].type == SPOKE_TYPE_NULL);
    check_view_matches(r);
    /* Changes after the view was taken show in it; owned values replaced. */
    CHECK(row_set_string(r, 6, "short", 5) == SPOKE_OK);
    CHECK(row_set_null(r, 5) == SPOKE_OK);
    CHECK(row_set_int(r, 7, 93200) == SPOKE_OK);
    CHECK(v && v[6].u.s.len == 5 && v[5].type == SPOKE_TYPE_NULL && v[7].u.i == 93200);
    check_view_matches(r);
    /* NULL and empty rows: no array, a count of 0. */
    n = 5;
    CHECK(row_values(NULL, &n) == NULL && n == 0);
    struct spoke_row *e = row_new_list(0);
    n = 5;
    CHECK(row_values(e, &n) == NULL && n == 0);
    CHECK(row_values(r, NULL) != NULL);
    row_free(e);
    row_free(r);
    schema_unref(s);
}

int main(void)
{
    RUN(test_schema_basics);
    RUN(test_schema_large);
    RUN(test_schema_freeze_and_refs);
    RUN(test_schema_refcount_threads);
    RUN(test_schema_refs_several_schemas_in_turn);
    RUN(test_setters_getters);
    RUN(test_list_any_type);
    RUN(test_utf8);
    RUN(test_utf8_short_paths);
    RUN(test_owned_values);
    RUN(test_reserve);
    RUN(test_clone);
    RUN(test_row_values_view);
    return TEST_REPORT();
}
