/* row - schemas (ordered, typed field names) and rows (one value per field).
 *
 * A schema is built with schema_add and frozen the first time row_new uses
 * it; from then on it is immutable, so rows of one schema may live on several
 * threads while only the refcount (atomic) changes.
 *
 * A row is one allocation: the header, the value array and, optionally, a
 * reserve for string bytes (row_new_reserve). The JSON parser sizes that
 * reserve exactly, so a parsed object costs one malloc however many strings
 * it holds; a string set later that does not fit gets its own allocation.
 * row_new sizes the reserve from what earlier rows of the schema needed.
 */
#include "record.h"
#include "textfmt.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Above this many fields schema_index switches from a linear scan to the
 * hash table: a scan comparing lengths first beats hashing for a handful of
 * short names. */
#define SCHEMA_LINEAR_MAX 16

struct schema_field {
    char *name;           /* "name\0" followed by the JSON key text (jkey) */
    size_t len;           /* strlen(name) */
    const char *jkey;     /* "\"name\":" escaped, inside the same block */
    size_t jlen;
    uint32_t hash;
    enum spoke_type type;
};

/* Largest string reserve row_new gives a row of a schema by itself. */
#define ROW_RES_HINT_MAX 256

struct spoke_schema {
    atomic_int frozen;
    /* String bytes that rows of this schema turned out to need (learned by
     * row_set_string, at most ROW_RES_HINT_MAX): row_new reserves that much,
     * so a producer that builds rows field by field stops paying a malloc
     * per string once the first rows have been seen. */
    atomic_size_t res_hint;
    size_t n, cap;
    struct schema_field *f;
    int32_t *slots;       /* open addressing, -1 = empty; built once n > SCHEMA_LINEAR_MAX */
    size_t nslots;        /* power of two, or 0 */
    /* On a cache line of its own: a row's producer and consumer threads
     * change it for every row, and would otherwise keep evicting the
     * read-mostly fields above from each other's caches. */
    _Alignas(64) atomic_uint refs;
    char pad_refs[64 - sizeof(atomic_uint)];
};

struct row_val {
    unsigned char type;     /* enum spoke_type */
    unsigned char in_res;   /* string lives in the row's reserve: not freed alone */
    union {
        int b;
        int64_t i;          /* INT and TIMESTAMP */
        double d;
        struct spoke_row *child;
        struct {
            char *p;
            size_t len;
        } s;
    } u;
};

struct spoke_row {
    struct spoke_schema *schema;  /* NULL for a list */
    size_t n;
    char *res;                    /* string reserve, inside this allocation */
    size_t res_used, res_cap;
    struct row_val v[];
};

/* ------------------------------------------------------------------------ */
/* UTF-8                                                                     */
/* ------------------------------------------------------------------------ */

int row_utf8_valid(const void *buf, size_t len)
{
    return textfmt_utf8_valid(buf, len, NULL);
}

/* ------------------------------------------------------------------------ */
/* Schemas                                                                   */
/* ------------------------------------------------------------------------ */

static uint32_t name_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u;  /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

struct spoke_schema *schema_new(void)
{
    struct spoke_schema *s = aligned_alloc(64, sizeof(*s));
    if (!s)
        return NULL;
    memset(s, 0, sizeof(*s));
    atomic_init(&s->refs, 1);
    atomic_init(&s->frozen, 0);
    atomic_init(&s->res_hint, 0);
    return s;
}

/* Inserts field i into the hash table (which has room). */
static void slots_insert(struct spoke_schema *s, size_t i)
{
    size_t mask = s->nslots - 1;
    size_t k = s->f[i].hash & mask;
    while (s->slots[k] >= 0)
        k = (k + 1) & mask;
    s->slots[k] = (int32_t)i;
}

/* Keeps the table at most half full; builds it when the schema outgrows
 * the linear scan. */
static int slots_grow(struct spoke_schema *s, size_t want_n)
{
    if (want_n <= SCHEMA_LINEAR_MAX || want_n * 2 <= s->nslots)
        return 0;
    size_t ns = s->nslots ? s->nslots : 64;
    while (want_n * 2 > ns)
        ns *= 2;
    int32_t *slots = malloc(ns * sizeof(*slots));
    if (!slots)
        return -1;
    for (size_t k = 0; k < ns; k++)
        slots[k] = -1;
    free(s->slots);
    s->slots = slots;
    s->nslots = ns;
    for (size_t i = 0; i < s->n; i++)
        slots_insert(s, i);
    return 0;
}

/* Length of name once escaped as a JSON string body (the characters between
 * the quotes); names are valid UTF-8, so only ", \ and controls change. */
static size_t json_escaped_len(const char *p, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\')
            n += 2;
        else if (c < 0x20)
            n += 6;
        else
            n += 1;
    }
    return n;
}

static char *json_escape_to(char *o, const char *p, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 15];
            o += 6;
        } else {
            *o++ = (char)c;
        }
    }
    return o;
}

int schema_add(struct spoke_schema *s, const char *name, enum spoke_type type)
{
    if (!s || !name || (int)type < SPOKE_TYPE_NULL || type > SPOKE_TYPE_MAP)
        return SPOKE_ERR_INVALID;
    if (atomic_load_explicit(&s->frozen, memory_order_acquire))
        return SPOKE_ERR_STATE;
    size_t len = strlen(name);
    if (!row_utf8_valid(name, len))
        return SPOKE_ERR_INVALID;
    if (schema_index_n(s, name, len) >= 0)
        return SPOKE_ERR_INVALID;
    if (s->n >= INT_MAX)
        return SPOKE_ERR_RANGE;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        struct schema_field *f = realloc(s->f, cap * sizeof(*f));
        if (!f)
            return SPOKE_ERR_NOMEM;
        s->f = f;
        s->cap = cap;
    }
    if (slots_grow(s, s->n + 1) < 0)
        return SPOKE_ERR_NOMEM;
    /* The JSON key text ("name":) is precomputed here, once per schema, so
     * the writer emits each key with a single memcpy. */
    size_t elen = json_escaped_len(name, len);
    char *block = malloc(len + 1 + elen + 3 + 1);
    if (!block)
        return SPOKE_ERR_NOMEM;
    memcpy(block, name, len + 1);
    char *j = block + len + 1, *o = j;
    *o++ = '"';
    o = json_escape_to(o, name, len);
    *o++ = '"';
    *o++ = ':';
    *o = '\0';
    struct schema_field *f = &s->f[s->n];
    f->name = block;
    f->len = len;
    f->jkey = j;
    f->jlen = (size_t)(o - j);
    f->hash = name_hash(name, len);
    f->type = type;
    s->n++;
    if (s->nslots)
        slots_insert(s, s->n - 1);
    return (int)(s->n - 1);
}

int schema_index_n(const struct spoke_schema *s, const char *name, size_t len)
{
    if (!s || !name)
        return -1;
    if (!s->nslots) {
        for (size_t i = 0; i < s->n; i++)
            if (s->f[i].len == len && memcmp(s->f[i].name, name, len) == 0)
                return (int)i;
        return -1;
    }
    uint32_t h = name_hash(name, len);
    size_t mask = s->nslots - 1;
    for (size_t k = h & mask; s->slots[k] >= 0; k = (k + 1) & mask) {
        const struct schema_field *f = &s->f[s->slots[k]];
        if (f->hash == h && f->len == len && memcmp(f->name, name, len) == 0)
            return s->slots[k];
    }
    return -1;
}

int schema_index(const struct spoke_schema *s, const char *name)
{
    if (!name)
        return -1;
    return schema_index_n(s, name, strlen(name));
}

size_t schema_count(const struct spoke_schema *s) { return s ? s->n : 0; }

const char *schema_name(const struct spoke_schema *s, size_t i)
{
    return s && i < s->n ? s->f[i].name : NULL;
}

enum spoke_type schema_type(const struct spoke_schema *s, size_t i)
{
    return s && i < s->n ? s->f[i].type : SPOKE_TYPE_NULL;
}

const char *schema_json_key(const struct spoke_schema *s, size_t i, size_t *len)
{
    assert(s && i < s->n);
    *len = s->f[i].jlen;
    return s->f[i].jkey;
}

void schema_ref(struct spoke_schema *s)
{
    assert(s);
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

/* Drops n references at once. */
static void schema_drop(struct spoke_schema *s, unsigned n)
{
    /* acq_rel: the thread that frees must see every other holder's writes. */
    if (atomic_fetch_sub_explicit(&s->refs, n, memory_order_acq_rel) != n)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->f[i].name);
    free(s->f);
    free(s->slots);
    free(s);
}

void schema_unref(struct spoke_schema *s)
{
    if (s)
        schema_drop(s, 1);
}

/*
 * The references rows hold are dropped in batches per thread. A row is
 * typically made on one thread and freed on another; with a decrement per
 * row, the refcount's cache line would move between the two cores twice
 * per row. A thread that frees rows of one schema instead counts the
 * references it owes and returns them ROW_UNREF_BATCH at a time, when rows
 * of another schema come, or when the thread exits (a pthread key's
 * destructor). Owed references only delay the schema's free: nobody can
 * take a reference without holding one, and the count stays above zero
 * while some are owed.
 */
#define ROW_UNREF_BATCH 64
static pthread_key_t unref_key;
static pthread_once_t unref_once = PTHREAD_ONCE_INIT;
static int unref_key_ok;
static _Thread_local struct spoke_schema *unref_s;
static _Thread_local unsigned unref_n;
static _Thread_local int unref_registered;

static void unref_flush(void)
{
    struct spoke_schema *s = unref_s;
    unsigned n = unref_n;
    unref_s = NULL;
    unref_n = 0;
    if (s)
        schema_drop(s, n);
}

static void unref_thread_exit(void *unused)
{
    (void)unused;
    unref_flush();
}

static void unref_key_init(void)
{
    unref_key_ok = pthread_key_create(&unref_key, unref_thread_exit) == 0;
}

/* Releases the reference a row held on s. */
static void row_schema_release(struct spoke_schema *s)
{
    if (unref_s == s) {
        if (++unref_n >= ROW_UNREF_BATCH)
            unref_flush();
        return;
    }
    if (!unref_registered) {
        /* Without the key's destructor, owed references would outlive the
         * thread: then this thread drops them one by one. */
        pthread_once(&unref_once, unref_key_init);
        unref_registered = unref_key_ok && pthread_setspecific(unref_key, &unref_registered) == 0
                               ? 1 : -1;
    }
    if (unref_registered < 0) {
        schema_drop(s, 1);
        return;
    }
    unref_flush();
    unref_s = s;
    unref_n = 1;
}

/* ------------------------------------------------------------------------ */
/* Rows                                                                      */
/* ------------------------------------------------------------------------ */

static struct spoke_row *row_alloc(struct spoke_schema *s, size_t n, size_t strbytes)
{
    if (strbytes > SIZE_MAX / 2 ||
        n > (SIZE_MAX / 2 - sizeof(struct spoke_row)) / sizeof(struct row_val))
        return NULL;
    struct spoke_row *row = malloc(sizeof(*row) + n * sizeof(struct row_val) + strbytes);
    if (!row)
        return NULL;
    row->schema = s;
    row->n = n;
    row->res = (char *)&row->v[n];
    row->res_used = 0;
    row->res_cap = strbytes;
    /* SPOKE_TYPE_NULL is 0: one memset nulls every value. */
    memset(row->v, 0, n * sizeof(struct row_val));
    if (s) {
        schema_ref(s);
        /* Stored once: rewriting it per row would dirty a shared line. */
        if (!atomic_load_explicit(&s->frozen, memory_order_relaxed))
            atomic_store_explicit(&s->frozen, 1, memory_order_release);
    }
    return row;
}

struct spoke_row *row_new_reserve(struct spoke_schema *s, size_t strbytes)
{
    if (!s)
        return NULL;
    return row_alloc(s, s->n, strbytes);
}

struct spoke_row *row_new_list_reserve(size_t n, size_t strbytes)
{
    return row_alloc(NULL, n, strbytes);
}

struct spoke_row *row_new(struct spoke_schema *s)
{
    if (!s)
        return NULL;
    return row_alloc(s, s->n, atomic_load_explicit(&s->res_hint, memory_order_relaxed));
}

struct spoke_row *row_new_list(size_t n) { return row_alloc(NULL, n, 0); }

/* Releases what a value owns and leaves it null. */
static inline void val_clear(struct row_val *v)
{
    if (v->type == SPOKE_TYPE_STRING) {
        if (!v->in_res)
            free(v->u.s.p);
    } else if (v->type == SPOKE_TYPE_LIST || v->type == SPOKE_TYPE_MAP) {
        row_free(v->u.child);
    }
    v->type = SPOKE_TYPE_NULL;
    v->in_res = 0;
}

void row_free(struct spoke_row *row)
{
    if (!row)
        return;
    for (size_t i = 0; i < row->n; i++)
        val_clear(&row->v[i]);
    if (row->schema)
        row_schema_release(row->schema);
    free(row);
}

size_t row_count(const struct spoke_row *row) { return row ? row->n : 0; }

const struct spoke_schema *row_schema(const struct spoke_row *row)
{
    return row ? row->schema : NULL;
}

int row_index(const struct spoke_row *row, const char *name)
{
    if (!row || !row->schema)
        return -1;
    return schema_index(row->schema, name);
}

/* Common checks of every setter: the index exists and, in a map, the
 * field was declared with this type. */
static int check_set(const struct spoke_row *row, size_t i, enum spoke_type type)
{
    if (!row)
        return SPOKE_ERR_INVALID;
    if (i >= row->n)
        return SPOKE_ERR_RANGE;
    if (row->schema && type != SPOKE_TYPE_NULL && row->schema->f[i].type != type)
        return SPOKE_ERR_TYPE;
    return SPOKE_OK;
}

int row_set_null(struct spoke_row *row, size_t i)
{
    int rc = check_set(row, i, SPOKE_TYPE_NULL);
    if (rc == SPOKE_OK)
        val_clear(&row->v[i]);
    return rc;
}

int row_set_bool(struct spoke_row *row, size_t i, int v)
{
    int rc = check_set(row, i, SPOKE_TYPE_BOOL);
    if (rc != SPOKE_OK)
        return rc;
    val_clear(&row->v[i]);
    row->v[i].type = SPOKE_TYPE_BOOL;
    row->v[i].u.b = v != 0;
    return SPOKE_OK;
}

int row_set_int(struct spoke_row *row, size_t i, int64_t v)
{
    int rc = check_set(row, i, SPOKE_TYPE_INT);
    if (rc != SPOKE_OK)
        return rc;
    val_clear(&row->v[i]);
    row->v[i].type = SPOKE_TYPE_INT;
    row->v[i].u.i = v;
    return SPOKE_OK;
}

int row_set_double(struct spoke_row *row, size_t i, double v)
{
    int rc = check_set(row, i, SPOKE_TYPE_DOUBLE);
    if (rc != SPOKE_OK)
        return rc;
    val_clear(&row->v[i]);
    row->v[i].type = SPOKE_TYPE_DOUBLE;
    row->v[i].u.d = v;
    return SPOKE_OK;
}

int row_set_timestamp(struct spoke_row *row, size_t i, int64_t ms)
{
    int rc = check_set(row, i, SPOKE_TYPE_TIMESTAMP);
    if (rc != SPOKE_OK)
        return rc;
    val_clear(&row->v[i]);
    row->v[i].type = SPOKE_TYPE_TIMESTAMP;
    row->v[i].u.i = ms;
    return SPOKE_OK;
}

int row_set_string(struct spoke_row *row, size_t i, const char *s, size_t len)
{
    int rc = check_set(row, i, SPOKE_TYPE_STRING);
    if (rc != SPOKE_OK)
        return rc;
    if ((!s && len) || !row_utf8_valid(s, len))
        return SPOKE_ERR_INVALID;
    char *p;
    int in_res = 0;
    if (len < row->res_cap - row->res_used) {
        p = row->res + row->res_used;
        row->res_used += len + 1;
        in_res = 1;
    } else {
        if (len == SIZE_MAX || !(p = malloc(len + 1)))
            return SPOKE_ERR_NOMEM;
        /* Teach the schema how much its rows' strings take. */
        size_t want = row->res_used + len + 1;
        if (row->schema && want <= ROW_RES_HINT_MAX &&
            want > atomic_load_explicit(&row->schema->res_hint, memory_order_relaxed))
            atomic_store_explicit(&row->schema->res_hint, want, memory_order_relaxed);
    }
    if (len)
        memcpy(p, s, len);
    p[len] = '\0';
    /* Cleared only now: a failed set leaves the old value in place. */
    val_clear(&row->v[i]);
    row->v[i].type = SPOKE_TYPE_STRING;
    row->v[i].in_res = (unsigned char)in_res;
    row->v[i].u.s.p = p;
    row->v[i].u.s.len = len;
    return SPOKE_OK;
}

int row_set_row(struct spoke_row *row, size_t i, struct spoke_row *child)
{
    int rc;
    if (!child) {
        rc = SPOKE_ERR_INVALID;
        goto fail;
    }
    /* A row cannot contain itself: that would be a cycle, and freeing it
     * would free the parent twice. */
    assert(child != row);
    enum spoke_type t = child->schema ? SPOKE_TYPE_MAP : SPOKE_TYPE_LIST;
    rc = check_set(row, i, t);
    if (rc != SPOKE_OK)
        goto fail;
    val_clear(&row->v[i]);
    row->v[i].type = (unsigned char)t;
    row->v[i].u.child = child;
    return SPOKE_OK;
fail:
    row_free(child);  /* ALWAYS takes ownership */
    return rc;
}

enum spoke_type row_type(const struct spoke_row *row, size_t i)
{
    return row && i < row->n ? (enum spoke_type)row->v[i].type : SPOKE_TYPE_NULL;
}

int row_get_bool(const struct spoke_row *row, size_t i)
{
    return row_type(row, i) == SPOKE_TYPE_BOOL ? row->v[i].u.b : 0;
}

int64_t row_get_int(const struct spoke_row *row, size_t i)
{
    return row_type(row, i) == SPOKE_TYPE_INT ? row->v[i].u.i : 0;
}

double row_get_double(const struct spoke_row *row, size_t i)
{
    return row_type(row, i) == SPOKE_TYPE_DOUBLE ? row->v[i].u.d : 0.0;
}

int64_t row_get_timestamp(const struct spoke_row *row, size_t i)
{
    return row_type(row, i) == SPOKE_TYPE_TIMESTAMP ? row->v[i].u.i : 0;
}

const char *row_get_string(const struct spoke_row *row, size_t i, size_t *len)
{
    if (row_type(row, i) != SPOKE_TYPE_STRING) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = row->v[i].u.s.len;
    return row->v[i].u.s.p;
}

const struct spoke_row *row_get_row(const struct spoke_row *row, size_t i)
{
    enum spoke_type t = row_type(row, i);
    return t == SPOKE_TYPE_LIST || t == SPOKE_TYPE_MAP ? row->v[i].u.child : NULL;
}

/* Bytes of strings directly in row (not in nested rows), NULs included. */
static size_t row_strbytes(const struct spoke_row *row)
{
    size_t n = 0;
    for (size_t i = 0; i < row->n; i++)
        if (row->v[i].type == SPOKE_TYPE_STRING)
            n += row->v[i].u.s.len + 1;
    return n;
}

struct spoke_row *row_clone(const struct spoke_row *row)
{
    if (!row)
        return NULL;
    struct spoke_row *copy = row_alloc(row->schema, row->n, row_strbytes(row));
    if (!copy)
        return NULL;
    for (size_t i = 0; i < row->n; i++) {
        const struct row_val *v = &row->v[i];
        struct row_val *d = &copy->v[i];
        switch ((enum spoke_type)v->type) {
        case SPOKE_TYPE_STRING:
            /* The reserve was sized for every string: no allocation here. */
            d->u.s.p = copy->res + copy->res_used;
            d->u.s.len = v->u.s.len;
            memcpy(d->u.s.p, v->u.s.p, v->u.s.len + 1);
            copy->res_used += v->u.s.len + 1;
            d->in_res = 1;
            d->type = v->type;
            break;
        case SPOKE_TYPE_LIST:
        case SPOKE_TYPE_MAP:
            d->u.child = row_clone(v->u.child);
            if (!d->u.child)
                goto fail;
            d->type = v->type;
            break;
        default:
            *d = *v;
            break;
        }
    }
    return copy;
fail:
    row_free(copy);
    return NULL;
}
