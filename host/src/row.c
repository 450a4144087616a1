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
 *
 * The layout is in row_impl.h (rowjson.c reads rows directly). A value
 * that owns memory (a string outside the reserve, a child row) is marked,
 * and the row counts them: the setters' common case clears nothing and
 * takes no stack frame, and row_free walks the values only if some own
 * memory.
 */
#include "grow.h"
#include "record.h"
#include "recycle.h"
#include "row_impl.h"
#include "textfmt.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

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
    if (GROW_ONE(s->f, s->cap, s->n, 8) != 0)
        return SPOKE_ERR_NOMEM;
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
 * per row. A thread that frees rows instead counts the references it owes
 * per schema and returns them ROW_UNREF_BATCH at a time, when its slot is
 * needed for another schema, or when the thread exits (a pthread key's
 * destructor). Owed references only delay the schema's free: nobody can
 * take a reference without holding one, and the count stays above zero
 * while some are owed.
 */
#define ROW_UNREF_BATCH 64
static pthread_key_t unref_key;
static pthread_once_t unref_once = PTHREAD_ONCE_INIT;
static int unref_key_ok;
static _Thread_local int unref_registered;

/* References of one thread on one schema, kept to be dropped together. */
struct ref_batch {
    struct spoke_schema *s;
    unsigned n;
};

/*
 * A thread keeps batches for a few schemas at once: a producer whose rows
 * nest rows of other schemas (velib_source: a station row, a list, and an
 * item row per bike type) makes rows of three schemas in turn, and with
 * one batch it would give one back and take the next for every row, two
 * locked operations where one was due (perf: most of row_new's samples).
 */
#define ROW_REF_WAYS 4
struct ref_cache {
    struct ref_batch b[ROW_REF_WAYS];
    unsigned next;          /* the slot given up next when all are in use */
};

/* What the thread owes for rows it freed. */
static _Thread_local struct ref_cache owed;

/*
 * References are also taken in batches. Each new row needs one on its
 * schema; a locked add on the count costs more than the rest of row_new
 * (perf: ~5% of the Vélib' pipeline's CPU, on the instruction after it).
 * A thread making rows takes ROW_REF_BATCH references on a schema at a
 * time and hands them to its rows one by one; what it still holds goes
 * back when the slot is needed for another schema or the thread exits.
 * Held references keep up to ROW_REF_WAYS schemas per thread alive a
 * little longer, nothing else.
 */
#define ROW_REF_BATCH 64
static _Thread_local struct ref_cache held;

static void batch_drop(struct ref_batch *b)
{
    struct ref_batch t = *b;
    b->s = NULL;
    b->n = 0;
    if (t.s && t.n)
        schema_drop(t.s, t.n);
}

static void cache_drop(struct ref_cache *c)
{
    for (unsigned k = 0; k < ROW_REF_WAYS; k++)
        batch_drop(&c->b[k]);
}

/* The slot of c that names s, or NULL. */
static inline struct ref_batch *cache_find(struct ref_cache *c, const struct spoke_schema *s)
{
    for (unsigned k = 0; k < ROW_REF_WAYS; k++)
        if (c->b[k].s == s)
            return &c->b[k];
    return NULL;
}

/* A slot of c for a new schema: one that holds no references, else the
 * one whose turn it is, after giving its references back. */
static struct ref_batch *cache_slot(struct ref_cache *c)
{
    for (unsigned k = 0; k < ROW_REF_WAYS; k++)
        if (!c->b[k].n)
            return &c->b[k];
    struct ref_batch *b = &c->b[c->next];
    c->next = (c->next + 1) % ROW_REF_WAYS;
    batch_drop(b);
    return b;
}

static void unref_thread_exit(void *unused)
{
    (void)unused;
    cache_drop(&owed);
    cache_drop(&held);
}

static void unref_key_init(void)
{
    unref_key_ok = pthread_key_create(&unref_key, unref_thread_exit) == 0;
}

/* Whether the thread's references owed or held go back when it exits: 1,
 * or 0 when the key could not be set (then references go one by one). */
static int batches_registered(void)
{
    if (!unref_registered) {
        pthread_once(&unref_once, unref_key_init);
        unref_registered = unref_key_ok && pthread_setspecific(unref_key, &unref_registered) == 0
                               ? 1 : -1;
    }
    return unref_registered > 0;
}

/* Takes the reference a new row holds on s. */
static void row_schema_take(struct spoke_schema *s)
{
    struct ref_batch *b = cache_find(&held, s);
    if (b && b->n) {
        b->n--;
        return;
    }
    if (!batches_registered()) {
        schema_ref(s);
        return;
    }
    if (!b)
        b = cache_slot(&held);
    atomic_fetch_add_explicit(&s->refs, ROW_REF_BATCH, memory_order_relaxed);
    b->s = s;
    b->n = ROW_REF_BATCH - 1;
}

/* Releases the reference a row held on s. */
static void row_schema_release(struct spoke_schema *s)
{
    struct ref_batch *b = cache_find(&owed, s);
    if (b && b->n) {
        if (++b->n >= ROW_UNREF_BATCH)
            batch_drop(b);
        return;
    }
    if (!batches_registered()) {
        schema_drop(s, 1);
        return;
    }
    if (!b)
        b = cache_slot(&owed);
    b->s = s;
    b->n = 1;
}

/* ------------------------------------------------------------------------ */
/* Rows                                                                      */
/* ------------------------------------------------------------------------ */

static struct spoke_row *row_alloc(struct spoke_schema *s, size_t n, size_t strbytes)
{
    if (strbytes > SIZE_MAX / 2 ||
        n > (SIZE_MAX / 2 - sizeof(struct spoke_row)) / sizeof(struct row_val))
        return NULL;
    uint8_t pool;
    struct spoke_row *row = recycle_alloc(sizeof(*row) + n * sizeof(struct row_val) + strbytes,
                                          &pool);
    if (!row)
        return NULL;
    row->pool = pool;
    row->schema = s;
    row->n = n;
    row->res = (char *)&row->v[n];
    row->res_used = 0;
    row->res_cap = strbytes;
    row->nown = 0;
    /* SPOKE_TYPE_NULL is 0: one memset nulls every value. */
    memset(row->v, 0, n * sizeof(struct row_val));
    if (s) {
        row_schema_take(s);
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

/* Frees what a value owns (v->owns set) and leaves it null. Out of line:
 * the setters' common case, a value that owns nothing, stays a few
 * instructions. */
__attribute__((noinline)) static void val_release(struct spoke_row *row, struct row_val *v)
{
    if (v->type == SPOKE_TYPE_STRING)
        free(v->u.s.p);
    else
        row_free(v->u.child);
    v->type = SPOKE_TYPE_NULL;
    v->owns = 0;
    row->nown--;
}

/* Releases what a value owns and leaves it null. */
static inline void val_clear(struct spoke_row *row, struct row_val *v)
{
    if (v->owns)
        val_release(row, v);
    v->type = SPOKE_TYPE_NULL;
}

void row_free(struct spoke_row *row)
{
    if (!row)
        return;
    /* Rows whose strings all sit in the reserve (parsed rows, rows built
     * within their schema's hint) own nothing else: no walk. */
    for (size_t i = 0; row->nown && i < row->n; i++)
        if (row->v[i].owns)
            val_release(row, &row->v[i]);
    if (row->schema)
        row_schema_release(row->schema);
    recycle_free(row, row->pool);
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
 * field was declared with this type. Inline: each setter is called once
 * per field of every row a plugin builds. */
static inline int check_set(const struct spoke_row *row, size_t i, enum spoke_type type)
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
        val_clear(row, &row->v[i]);
    return rc;
}

/* A scalar value, to pass through the setters' slow path. */
union row_scalar {
    int b;
    int64_t i;
    double d;
};

/* The setters' slow path: the old value owns memory. Reached by a tail
 * call, so the fast path needs no stack frame. */
__attribute__((noinline)) static int set_scalar_slow(struct spoke_row *row, size_t i,
                                                     enum spoke_type t, union row_scalar v)
{
    struct row_val *x = &row->v[i];
    val_release(row, x);
    x->type = (unsigned char)t;
    if (t == SPOKE_TYPE_BOOL)
        x->u.b = v.b;
    else if (t == SPOKE_TYPE_DOUBLE)
        x->u.d = v.d;
    else
        x->u.i = v.i;
    return SPOKE_OK;
}

int row_set_bool(struct spoke_row *row, size_t i, int v)
{
    int rc = check_set(row, i, SPOKE_TYPE_BOOL);
    if (rc != SPOKE_OK)
        return rc;
    if (row->v[i].owns)
        return set_scalar_slow(row, i, SPOKE_TYPE_BOOL, (union row_scalar){ .b = v != 0 });
    row->v[i].type = SPOKE_TYPE_BOOL;
    row->v[i].u.b = v != 0;
    return SPOKE_OK;
}

int row_set_int(struct spoke_row *row, size_t i, int64_t v)
{
    int rc = check_set(row, i, SPOKE_TYPE_INT);
    if (rc != SPOKE_OK)
        return rc;
    if (row->v[i].owns)
        return set_scalar_slow(row, i, SPOKE_TYPE_INT, (union row_scalar){ .i = v });
    row->v[i].type = SPOKE_TYPE_INT;
    row->v[i].u.i = v;
    return SPOKE_OK;
}

int row_set_double(struct spoke_row *row, size_t i, double v)
{
    int rc = check_set(row, i, SPOKE_TYPE_DOUBLE);
    if (rc != SPOKE_OK)
        return rc;
    if (row->v[i].owns)
        return set_scalar_slow(row, i, SPOKE_TYPE_DOUBLE, (union row_scalar){ .d = v });
    row->v[i].type = SPOKE_TYPE_DOUBLE;
    row->v[i].u.d = v;
    return SPOKE_OK;
}

int row_set_timestamp(struct spoke_row *row, size_t i, int64_t ms)
{
    int rc = check_set(row, i, SPOKE_TYPE_TIMESTAMP);
    if (rc != SPOKE_OK)
        return rc;
    if (row->v[i].owns)
        return set_scalar_slow(row, i, SPOKE_TYPE_TIMESTAMP, (union row_scalar){ .i = ms });
    row->v[i].type = SPOKE_TYPE_TIMESTAMP;
    row->v[i].u.i = ms;
    return SPOKE_OK;
}

/* 1 if every byte is below 0x80, for short strings (len <= 32): a few
 * loads and one test instead of the validator's byte loop. Short ASCII
 * strings (codes, postcodes, names) are what rows mostly carry. */
static inline int ascii_short(const char *s, size_t len)
{
    uint64_t a = 0, b = 0;
    if (len >= 8) {
        uint64_t w;
        for (size_t k = 0; k + 8 < len; k += 8) {
            memcpy(&w, s + k, 8);
            a |= w;
        }
        memcpy(&w, s + len - 8, 8);
        a |= w;
    } else if (len >= 4) {
        uint32_t x, y;
        memcpy(&x, s, 4);
        memcpy(&y, s + len - 4, 4);
        a = x | y;
    } else {
        for (size_t k = 0; k < len; k++)
            b |= (unsigned char)s[k];
    }
    return !((a | b) & 0x8080808080808080ull);
}

/* 1 if s[0, len) is valid UTF-8. */
static inline int utf8_ok(const char *s, size_t len)
{
    if (len <= 32 && ascii_short(s, len))
        return 1;
    return row_utf8_valid(s, len);
}

int row_set_string(struct spoke_row *row, size_t i, const char *s, size_t len)
{
    int rc = check_set(row, i, SPOKE_TYPE_STRING);
    if (rc != SPOKE_OK)
        return rc;
    if (!s) {
        if (len)
            return SPOKE_ERR_INVALID;
        s = "";
    }
    if (!utf8_ok(s, len))
        return SPOKE_ERR_INVALID;
    char *p;
    int owns = 0;
    if (len < row->res_cap - row->res_used) {
        p = row->res + row->res_used;
        row->res_used += len + 1;
    } else {
        if (len == SIZE_MAX || !(p = malloc(len + 1)))
            return SPOKE_ERR_NOMEM;
        owns = 1;
        /* Teach the schema how much its rows' strings take. */
        size_t want = row->res_used + len + 1;
        if (row->schema && want <= ROW_RES_HINT_MAX &&
            want > atomic_load_explicit(&row->schema->res_hint, memory_order_relaxed))
            atomic_store_explicit(&row->schema->res_hint, want, memory_order_relaxed);
    }
    if (len <= 16 && len >= 8) {
        /* Two overlapping moves: short strings skip the call to memcpy. */
        memcpy(p, s, 8);
        memcpy(p + len - 8, s + len - 8, 8);
    } else if (len < 8 && len >= 4) {
        memcpy(p, s, 4);
        memcpy(p + len - 4, s + len - 4, 4);
    } else {
        memcpy(p, s, len);
    }
    p[len] = '\0';
    /* Cleared only now: a failed set leaves the old value in place. */
    val_clear(row, &row->v[i]);
    row->v[i].type = SPOKE_TYPE_STRING;
    row->v[i].owns = (unsigned char)owns;
    row->nown += (size_t)owns;
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
    val_clear(row, &row->v[i]);
    row->v[i].type = (unsigned char)t;
    row->v[i].owns = 1;
    row->nown++;
    row->v[i].u.child = child;
    return SPOKE_OK;
fail:
    row_free(child);  /* ALWAYS takes ownership */
    return rc;
}

/* row_values lends v[] as the ABI's struct spoke_value: the same layout,
 * checked here (owns lies in host_private). The plugins read it in their
 * own shared objects, through the public type only. */
_Static_assert(sizeof(struct row_val) == sizeof(struct spoke_value), "row_val layout");
_Static_assert(offsetof(struct row_val, type) == offsetof(struct spoke_value, type),
               "row_val layout");
_Static_assert(offsetof(struct row_val, owns) == offsetof(struct spoke_value, host_private),
               "row_val layout");
_Static_assert(offsetof(struct row_val, u) == offsetof(struct spoke_value, u), "row_val layout");
_Static_assert(offsetof(struct row_val, u.s.p) == offsetof(struct spoke_value, u.s.p),
               "row_val layout");
_Static_assert(offsetof(struct row_val, u.s.len) == offsetof(struct spoke_value, u.s.len),
               "row_val layout");
_Static_assert(sizeof(((struct row_val *)0)->u.b) == sizeof(((struct spoke_value *)0)->u.b) &&
               sizeof(((struct row_val *)0)->u.i) == sizeof(((struct spoke_value *)0)->u.i) &&
               sizeof(((struct row_val *)0)->u.d) == sizeof(((struct spoke_value *)0)->u.d) &&
               sizeof(((struct row_val *)0)->u.child) == sizeof(((struct spoke_value *)0)->u.row),
               "row_val layout");

const struct spoke_value *row_values(const struct spoke_row *row, size_t *n)
{
    if (!row || row->n == 0) {
        if (n)
            *n = 0;
        return NULL;
    }
    if (n)
        *n = row->n;
    return (const struct spoke_value *)(const void *)row->v;
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
            d->owns = 0;
            d->type = v->type;
            break;
        case SPOKE_TYPE_LIST:
        case SPOKE_TYPE_MAP:
            d->u.child = row_clone(v->u.child);
            if (!d->u.child)
                goto fail;
            d->type = v->type;
            d->owns = 1;
            copy->nown++;
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
