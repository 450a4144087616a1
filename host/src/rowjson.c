/* rowjson - rows to and from JSON.
 *
 * rowjson_write is a dedicated writer: field keys come precomputed from the
 * schema, integers and timestamps are formatted by hand, and only doubles go
 * through snprintf. Going through jansson would build a tree per row first.
 *
 * rowjson_parse drives YAJL's SAX parser. YAJL checks the grammar; what it
 * does not check strictly enough is done here: UTF-8 (YAJL accepts overlong
 * forms, encoded surrogates and code points above U+10FFFF), surrogate
 * escapes (YAJL turns a lone "\ud800" into "?"), duplicate keys, the nesting
 * limit and the object-at-the-top rule.
 *
 * Per-thread parse state keeps a parse cheap: the value stack and scratch
 * buffer are reused, and inferred schemas are cached so a stream of
 * same-shaped objects shares one schema per object shape instead of building
 * names every time. YAJL 2 cannot reset a handle, so each parse allocates a
 * new one: measured at ~45 ns of ~1.3 us for a 280-byte object, and a bump
 * arena for YAJL's allocations made no measurable difference, so YAJL uses
 * plain malloc.
 */
#include "record.h"
#include "row_impl.h"

#include <assert.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "textfmt.h"

#define PARSE_MAX_DEPTH 64

/* ------------------------------------------------------------------------ */
/* Writer                                                                    */
/* ------------------------------------------------------------------------ */

/* Room for n more bytes; the common case (capacity already there) stays
 * inline and never calls into buf.c. */
static inline int room(struct buf *out, size_t n)
{
    if (out->len + n + 1 <= out->cap)
        return 0;
    return buf_reserve(out, n);
}

/* Copies n bytes. Keys and numbers are short: two overlapping fixed-size
 * moves beat a call to memcpy for them. */
static inline void copy_small(char *dst, const char *src, size_t n)
{
    if (n >= 8 && n <= 16) {
        memcpy(dst, src, 8);
        memcpy(dst + n - 8, src + n - 8, 8);
    } else if (n > 16 && n <= 32) {
        memcpy(dst, src, 16);
        memcpy(dst + n - 16, src + n - 16, 16);
    } else if (n >= 4 && n < 8) {
        memcpy(dst, src, 4);
        memcpy(dst + n - 4, src + n - 4, 4);
    } else {
        memcpy(dst, src, n);
    }
}

/* Nonzero when any of the 8 bytes in w is '"', '\\' or below 0x20
 * (the exact "has less / has value" word tricks). */
static inline uint64_t needs_escape8(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
    return (((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs;
}

static inline int is_escaped(unsigned char c) { return c == '"' || c == '\\' || c < 0x20; }

/* Writes s as a JSON string. Rows hold valid UTF-8 only, so every byte
 * other than '"', '\\' and controls is copied as is. */
static int write_string(const char *s, size_t len, struct buf *out)
{
    static const char hex[] = "0123456789abcdef";
    /* Room for the unescaped text and both quotes; each escape below adds
     * room for what it adds. */
    if (room(out, len + 2) < 0)
        return -1;
    out->p[out->len++] = '"';
    size_t i = 0, run = 0;
    for (;;) {
        /* Skip bytes that need no escaping, eight per test. */
        while (len - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (needs_escape8(w))
                break;
            i += 8;
        }
        while (i < len && !is_escaped((unsigned char)s[i]))
            i++;
        if (i == len)
            break;
        memcpy(out->p + out->len, s + run, i - run);
        out->len += i - run;
        /* Left to write: this escape (6 at most), the rest, the quote. */
        if (room(out, (len - i) + 6) < 0)
            return -1;
        unsigned char c = (unsigned char)s[i];
        char *o = out->p + out->len;
        if (c == '"' || c == '\\') {
            o[0] = '\\';
            o[1] = (char)c;
            out->len += 2;
        } else {
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 15];
            out->len += 6;
        }
        run = ++i;
    }
    memcpy(out->p + out->len, s + run, len - run);
    out->len += len - run;
    out->p[out->len++] = '"';
    return 0;
}

/* ISO-8601 timestamps, with the text of the last second formatted kept per
 * thread: the rows of a stream carry runs of timestamps within one second
 * or one day, so most calls copy the cached "YYYY-MM-DDTHH:MM:SS" (or its
 * date part) and format only what changed. Byte-identical to
 * textfmt_timestamp, which formats the years it cannot cache (outside
 * 0..9999: their text has another length). */
struct ts_cache {
    int64_t secs;         /* second the text is for; valid iff days_ok */
    int64_t days;         /* day the date part is for */
    int days_ok;
    char text[20];        /* "YYYY-MM-DDTHH:MM:SS" */
};
static _Thread_local struct ts_cache ts_cache;

static inline char *put2(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

/* Years 0..9999: 1970-01-01 is day 0, so day -719528 is 0000-01-01 and
 * day 2932896 is 9999-12-31. */
#define TS_DAY_MIN (-719528)
#define TS_DAY_MAX 2932896

size_t rowjson_timestamp(int64_t ms, char *o)
{
    int64_t secs = ms / 1000, rem = ms % 1000;
    if (rem < 0) {
        rem += 1000;
        secs--;
    }
    struct ts_cache *c = &ts_cache;
    if (!c->days_ok || secs != c->secs) {
        int64_t days = secs / 86400, sod = secs % 86400;
        if (sod < 0) {
            sod += 86400;
            days--;
        }
        if (days < TS_DAY_MIN || days > TS_DAY_MAX)
            return textfmt_timestamp(ms, o);
        if (!c->days_ok || days != c->days) {
            /* The date part as textfmt writes it: take it from there. */
            char full[40];
            textfmt_timestamp(days * 86400000, full);
            memcpy(c->text, full, 11);  /* "YYYY-MM-DDT" */
            c->days = days;
            c->days_ok = 1;
        }
        char *p = c->text + 11;
        p = put2(p, (unsigned)(sod / 3600));
        *p++ = ':';
        p = put2(p, (unsigned)(sod / 60 % 60));
        *p++ = ':';
        put2(p, (unsigned)(sod % 60));
        c->secs = secs;
    }
    memcpy(o, c->text, 19);
    o[19] = '.';
    o[20] = (char)('0' + rem / 100);
    put2(o + 21, (unsigned)(rem % 100));
    o[23] = 'Z';
    return 24;
}

static int write_row(const struct spoke_row *row, struct buf *out);

/* Reads the row's values directly (row_impl.h): this runs for every value
 * of every row a sink serializes. */
static int write_value(const struct row_val *v, struct buf *out)
{
    enum spoke_type t = (enum spoke_type)v->type;
    if (t == SPOKE_TYPE_STRING)
        return write_string(v->u.s.p, v->u.s.len, out);
    if (t == SPOKE_TYPE_LIST || t == SPOKE_TYPE_MAP)
        return write_row(v->u.child, out);
    if (room(out, 48) < 0)
        return -1;
    char *o = out->p + out->len;
    switch (t) {
    case SPOKE_TYPE_BOOL:
        if (v->u.b) {
            memcpy(o, "true", 4);
            out->len += 4;
        } else {
            memcpy(o, "false", 5);
            out->len += 5;
        }
        break;
    case SPOKE_TYPE_INT:
        out->len += textfmt_int(v->u.i, o);
        break;
    case SPOKE_TYPE_DOUBLE:
        out->len += textfmt_double(v->u.d, o);
        break;
    case SPOKE_TYPE_TIMESTAMP:
        o[0] = '"';
        out->len += 1 + rowjson_timestamp(v->u.i, o + 1);
        out->p[out->len++] = '"';
        break;
    default:
        memcpy(o, "null", 4);
        out->len += 4;
        break;
    }
    return 0;
}

/* Recursion depth follows the row's nesting: parsed rows are at most 64
 * deep, and rows built through the API nest only as deep as their builder
 * made them. */
static int write_row(const struct spoke_row *row, struct buf *out)
{
    const struct spoke_schema *s = row->schema;
    size_t n = row->n;
    if (room(out, 2) < 0)
        return -1;
    out->p[out->len++] = s ? '{' : '[';
    for (size_t i = 0; i < n; i++) {
        if (s) {
            const struct schema_field *f = &s->f[i];
            size_t klen = f->jlen;
            if (room(out, klen + 1) < 0)
                return -1;
            if (i)
                out->p[out->len++] = ',';
            copy_small(out->p + out->len, f->jkey, klen);
            out->len += klen;
        } else if (i) {
            if (room(out, 1) < 0)
                return -1;
            out->p[out->len++] = ',';
        }
        if (write_value(&row->v[i], out) < 0)
            return -1;
    }
    if (room(out, 1) < 0)
        return -1;
    out->p[out->len++] = s ? '}' : ']';
    return 0;
}

int rowjson_write(const struct spoke_row *row, struct buf *out)
{
    size_t start = out->len;
    if (write_row(row, out) < 0) {
        /* Leave out as it was: no half-written value. */
        out->len = start;
        if (out->p)
            out->p[start] = '\0';
        return -1;
    }
    out->p[out->len] = '\0';  /* every room() kept space for it */
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Parser: per-thread state                                                  */
/* ------------------------------------------------------------------------ */

#define PTYPE_PENDING 0xFF  /* a map entry whose key arrived, value not yet */
#define SCHEMA_CACHE 64     /* direct-mapped; a power of two */

/* Text of a key or string value. Unescaped text is used where it lies in
 * the input (the common case: no copy); text YAJL had to unescape lives in
 * YAJL's buffer only during the callback, so it is copied to scratch.
 * Offsets, not pointers: scratch may move when it grows. */
struct ptext {
    size_t off, len;
    int in_input;
};

/* One parsed value waiting for its container to end. */
struct pval {
    unsigned char type;     /* enum spoke_type or PTYPE_PENDING */
    struct ptext key;       /* map entries */
    union {
        int b;
        int64_t i;
        double d;
        struct spoke_row *child;
        struct ptext s;
    } u;
};

/* One open object or array. */
struct pframe {
    int is_map;
    size_t base;            /* its first value in the value stack */
    size_t scratch_base;    /* scratch length when it opened */
    size_t strbytes;        /* string bytes its row will need */
};

struct pstate {
    struct pval *vs;
    size_t nv, capv;
    struct pframe fs[PARSE_MAX_DEPTH];
    size_t nf;
    struct buf scratch;
    struct spoke_schema *cache[SCHEMA_CACHE];

    /* Per-parse. */
    const unsigned char *in;
    size_t inlen;
    int escaped;            /* some string or key had escapes */
    yajl_handle h;
    struct spoke_row *result;
    char *err;
    size_t errsize;
    const char *why;        /* static class of the failure; NULL = none yet */
};

static __thread struct pstate *tls_ps;
static pthread_key_t ps_key;
static pthread_once_t ps_once = PTHREAD_ONCE_INIT;

/* Thread exit: the key's destructor releases the thread's parse state. The
 * main thread's state stays reachable through tls_ps until exit. */
static void ps_destroy(void *arg)
{
    struct pstate *ps = arg;
    for (size_t k = 0; k < SCHEMA_CACHE; k++)
        schema_unref(ps->cache[k]);
    free(ps->vs);
    buf_free(&ps->scratch);
    free(ps);
    tls_ps = NULL;
}

static void ps_key_init(void) { pthread_key_create(&ps_key, ps_destroy); }

static struct pstate *ps_get(void)
{
    if (tls_ps)
        return tls_ps;
    pthread_once(&ps_once, ps_key_init);
    struct pstate *ps = calloc(1, sizeof(*ps));
    if (!ps)
        return NULL;
    if (pthread_setspecific(ps_key, ps) != 0) {
        free(ps);
        return NULL;
    }
    tls_ps = ps;
    return ps;
}

/* ------------------------------------------------------------------------ */
/* Parser: callbacks                                                         */
/* ------------------------------------------------------------------------ */

/* Records the first failure; returns 0 so YAJL stops. */
static int fail_at(struct pstate *ps, const char *why, const char *what)
{
    if (!ps->why) {
        ps->why = why;
        if (ps->errsize)
            snprintf(ps->err, ps->errsize, "%s near byte %zu", what,
                     yajl_get_bytes_consumed(ps->h));
    }
    return 0;
}

static int oom(struct pstate *ps)
{
    return fail_at(ps, "out of memory", "out of memory");
}

/* Where the next value goes: the pending entry of the open map, or a new
 * entry of the open array. NULL (failure recorded) at the top level. */
static struct pval *value_slot(struct pstate *ps)
{
    if (ps->nf == 0) {
        fail_at(ps, "value is not a JSON object", "top-level value is not an object");
        return NULL;
    }
    if (ps->fs[ps->nf - 1].is_map)
        return &ps->vs[ps->nv - 1];
    if (ps->nv == ps->capv) {
        size_t cap = ps->capv ? ps->capv * 2 : 64;
        struct pval *vs = realloc(ps->vs, cap * sizeof(*vs));
        if (!vs) {
            oom(ps);
            return NULL;
        }
        ps->vs = vs;
        ps->capv = cap;
    }
    struct pval *v = &ps->vs[ps->nv++];
    v->key.len = 0;
    return v;
}

static int cb_null(void *ctx)
{
    struct pval *v = value_slot(ctx);
    if (!v)
        return 0;
    v->type = SPOKE_TYPE_NULL;
    return 1;
}

static int cb_boolean(void *ctx, int b)
{
    struct pval *v = value_slot(ctx);
    if (!v)
        return 0;
    v->type = SPOKE_TYPE_BOOL;
    v->u.b = b;
    return 1;
}

/* Integer syntax that fits int64 -> INT; everything else -> DOUBLE. YAJL
 * has already checked the JSON number grammar, so a run of digits after an
 * optional '-' that covers the whole text is an integer. */
static int cb_number(void *ctx, const char *s, size_t len)
{
    struct pstate *ps = ctx;
    int neg = s[0] == '-';
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, acc = 0;
    size_t k = (size_t)neg;
    /* Up to 18 digits cannot overflow: no range check per digit then. */
    size_t fast_end = len - k <= 18 ? len : k;
    for (; k < fast_end; k++) {
        unsigned dgt = (unsigned)(s[k] - '0');
        if (dgt > 9)
            break;  /* '.', 'e' or 'E' */
        acc = acc * 10 + dgt;
    }
    if (fast_end != len) {
        for (; k < len; k++) {
            unsigned dgt = (unsigned)(s[k] - '0');
            if (dgt > 9 || acc > (limit - dgt) / 10)
                break;  /* '.', 'e', 'E' or too large for int64 */
            acc = acc * 10 + dgt;
        }
    }
    if (k == len) {
        struct pval *v = value_slot(ps);
        if (!v)
            return 0;
        v->type = SPOKE_TYPE_INT;
        /* -2^63 has no positive counterpart: negate in unsigned. */
        v->u.i = neg ? (int64_t)(0 - acc) : (int64_t)acc;
        return 1;
    }
    /* strtod needs a NUL-terminated copy; numbers are short, but JSON does
     * not bound them. */
    char small[64];
    char *tmp = small;
    if (len >= sizeof(small) && !(tmp = malloc(len + 1)))
        return oom(ps);
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    double d = textfmt_strtod(tmp, NULL);
    if (tmp != small)
        free(tmp);
    if (!isfinite(d))
        return fail_at(ps, "value has a number out of range", "number out of range");
    struct pval *v = value_slot(ps);
    if (!v)
        return 0;
    v->type = SPOKE_TYPE_DOUBLE;
    v->u.d = d;
    return 1;
}

static const char *text_ptr(const struct pstate *ps, const struct ptext *t)
{
    return t->in_input ? (const char *)ps->in + t->off : ps->scratch.p + t->off;
}

/* Records where the text of a string or key is: in the input, or
 * (unescaped by YAJL) copied to scratch. Its UTF-8 is checked later, once:
 * by row_set_string for values, and for keys by schema_add when a new
 * schema is built (a key equal to a cached schema's name is valid). */
static int take_text(struct pstate *ps, const unsigned char *s, size_t len, struct ptext *t)
{
    uintptr_t a = (uintptr_t)ps->in, q = (uintptr_t)s;
    t->len = len;
    if (q >= a && q < a + ps->inlen) {
        t->off = (size_t)(q - a);
        t->in_input = 1;
        return 1;
    }
    ps->escaped = 1;
    t->off = ps->scratch.len;
    t->in_input = 0;
    if (buf_append(&ps->scratch, s, len) < 0)
        return oom(ps);
    return 1;
}

static int cb_string(void *ctx, const unsigned char *s, size_t len)
{
    struct pstate *ps = ctx;
    struct ptext t;
    if (!take_text(ps, s, len, &t))
        return 0;
    struct pval *v = value_slot(ps);
    if (!v)
        return 0;
    v->type = SPOKE_TYPE_STRING;
    v->u.s = t;
    ps->fs[ps->nf - 1].strbytes += len + 1;
    return 1;
}

static int cb_map_key(void *ctx, const unsigned char *s, size_t len)
{
    struct pstate *ps = ctx;
    struct ptext t;
    if (!take_text(ps, s, len, &t))
        return 0;
    /* Field names are C strings (schema_add, row_index). Only an escape
     * can put a NUL in a key: raw control characters are not JSON. */
    if (!t.in_input && memchr(s, '\0', len))
        return fail_at(ps, "value has a key containing U+0000", "key contains U+0000");
    if (ps->nv == ps->capv) {
        size_t cap = ps->capv ? ps->capv * 2 : 64;
        struct pval *vs = realloc(ps->vs, cap * sizeof(*vs));
        if (!vs)
            return oom(ps);
        ps->vs = vs;
        ps->capv = cap;
    }
    struct pval *v = &ps->vs[ps->nv++];
    v->type = PTYPE_PENDING;
    v->key = t;
    return 1;
}

static int open_container(struct pstate *ps, int is_map)
{
    if (ps->nf == 0 && !is_map)
        return fail_at(ps, "value is not a JSON object", "top-level value is not an object");
    if (ps->nf == PARSE_MAX_DEPTH)
        return fail_at(ps, "value nests deeper than 64 levels", "nesting deeper than 64");
    struct pframe *f = &ps->fs[ps->nf++];
    f->is_map = is_map;
    f->base = ps->nv;
    f->scratch_base = ps->scratch.len;
    f->strbytes = 0;
    return 1;
}

static int cb_start_map(void *ctx) { return open_container(ctx, 1); }
static int cb_start_array(void *ctx) { return open_container(ctx, 0); }

/* A cheap hash of an object's shape (key lengths, edge bytes, types) to
 * pick a cache slot; a hit is then confirmed field by field. */
static unsigned shape_hash(const struct pstate *ps, const struct pval *v, size_t n)
{
    uint32_t h = (uint32_t)n;
    for (size_t k = 0; k < n; k++) {
        const unsigned char *key = (const unsigned char *)text_ptr(ps, &v[k].key);
        size_t kl = v[k].key.len;
        h = h * 31 + (uint32_t)kl;
        if (kl)
            h = (h * 31 + key[0]) * 31 + key[kl - 1];
        h = h * 31 + v[k].type;
    }
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    return h & (SCHEMA_CACHE - 1);
}

/* A NUL-terminated copy of a key at the end of scratch (schema_add wants a
 * C string); valid until scratch changes. NULL on OOM. */
static const char *key_cstr(struct pstate *ps, const struct ptext *t)
{
    /* Reserve first: the key itself may be in scratch and move. */
    if (buf_reserve(&ps->scratch, t->len + 1) < 0)
        return NULL;
    char *dst = ps->scratch.p + ps->scratch.len;
    memcpy(dst, text_ptr(ps, t), t->len);
    dst[t->len] = '\0';
    ps->scratch.len += t->len + 1;
    return dst;
}

/* The schema of the object whose entries are v[0..n): a cached one with the
 * same names and types in the same order, or a new one (then cached). The
 * caller gets a reference. A cache hit also proves the keys distinct. */
static struct spoke_schema *object_schema(struct pstate *ps, const struct pval *v, size_t n)
{
    unsigned slot = shape_hash(ps, v, n);
    struct spoke_schema *s = ps->cache[slot];
    if (s && schema_count(s) == n) {
        size_t k = 0;
        for (; k < n; k++) {
            /* Keys hold no NUL, so strncmp stops only at the name's end or
             * after len bytes; the name must end there too. */
            const char *name = schema_name(s, k);
            size_t kl = v[k].key.len;
            if (schema_type(s, k) != v[k].type || strncmp(name, text_ptr(ps, &v[k].key), kl) != 0 ||
                name[kl] != '\0')
                break;
        }
        if (k == n) {
            schema_ref(s);
            return s;
        }
    }
    s = schema_new();
    if (!s) {
        oom(ps);
        return NULL;
    }
    for (size_t k = 0; k < n; k++) {
        size_t mark = ps->scratch.len;
        const char *key = key_cstr(ps, &v[k].key);
        int rc = key ? schema_add(s, key, (enum spoke_type)v[k].type) : SPOKE_ERR_NOMEM;
        if (rc < 0 && key && !row_utf8_valid(key, v[k].key.len)) {
            fail_at(ps, "value is not valid JSON", "invalid UTF-8 in a key of the object ending");
        } else if (rc < 0 && key && schema_index(s, key) >= 0) {
            if (!ps->why) {
                ps->why = "value has a duplicate key";
                if (ps->errsize)
                    snprintf(ps->err, ps->errsize,
                             "duplicate key \"%.64s\" in object ending near byte %zu", key,
                             yajl_get_bytes_consumed(ps->h));
            }
        } else if (rc < 0) {
            oom(ps);
        }
        ps->scratch.len = mark;
        if (rc < 0) {
            schema_unref(s);
            return NULL;
        }
    }
    schema_ref(s);
    schema_unref(ps->cache[slot]);
    ps->cache[slot] = s;
    return s;
}

/* Closes the innermost container: builds its row from the stacked values
 * and hands it to the enclosing container (or makes it the result). */
static int close_container(struct pstate *ps)
{
    struct pframe *f = &ps->fs[ps->nf - 1];
    struct pval *v = &ps->vs[f->base];
    size_t n = ps->nv - f->base;
    struct spoke_row *row;
    if (f->is_map) {
        struct spoke_schema *s = object_schema(ps, v, n);
        if (!s)
            return 0;
        row = row_new_reserve(s, f->strbytes);
        schema_unref(s);
    } else {
        row = row_new_list_reserve(n, f->strbytes);
    }
    if (!row)
        return oom(ps);
    for (size_t k = 0; k < n; k++) {
        int rc = SPOKE_OK;
        switch (v[k].type) {
        case SPOKE_TYPE_BOOL:
            rc = row_set_bool(row, k, v[k].u.b);
            break;
        case SPOKE_TYPE_INT:
            rc = row_set_int(row, k, v[k].u.i);
            break;
        case SPOKE_TYPE_DOUBLE:
            rc = row_set_double(row, k, v[k].u.d);
            break;
        case SPOKE_TYPE_STRING:
            rc = row_set_string(row, k, text_ptr(ps, &v[k].u.s), v[k].u.s.len);
            break;
        case SPOKE_TYPE_LIST:
        case SPOKE_TYPE_MAP:
            /* row_set_row owns the child from here on, even on failure. */
            v[k].type = SPOKE_TYPE_NULL;
            rc = row_set_row(row, k, v[k].u.child);
            break;
        default:
            break;
        }
        if (rc != SPOKE_OK) {
            row_free(row);
            if (rc == SPOKE_ERR_INVALID)
                return fail_at(ps, "value is not valid JSON",
                               "invalid UTF-8 in a string of the container ending");
            return oom(ps);
        }
    }
    ps->nv = f->base;
    ps->scratch.len = f->scratch_base;
    ps->nf--;
    if (ps->nf == 0) {
        ps->result = row;
        return 1;
    }
    struct pval *slot = value_slot(ps);
    if (!slot) {
        row_free(row);
        return 0;
    }
    slot->type = f->is_map ? SPOKE_TYPE_MAP : SPOKE_TYPE_LIST;
    slot->u.child = row;
    return 1;
}

static int cb_end(void *ctx) { return close_container(ctx); }

static const yajl_callbacks parse_callbacks = {
    .yajl_null = cb_null,
    .yajl_boolean = cb_boolean,
    .yajl_number = cb_number,
    .yajl_string = cb_string,
    .yajl_start_map = cb_start_map,
    .yajl_map_key = cb_map_key,
    .yajl_end_map = cb_end,
    .yajl_start_array = cb_start_array,
    .yajl_end_array = cb_end,
};

static unsigned hex4(const unsigned char *p)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned c = p[k];
        v = v * 16 + (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/* Offset of the first \u escape that is a lone surrogate, or (size_t)-1.
 * Runs only on input YAJL accepted, so every backslash starts a complete
 * escape inside a string. */
static size_t bad_surrogate(const unsigned char *in, size_t len)
{
    const unsigned char *p = in, *end = in + len;
    while (p < end && (p = memchr(p, '\\', (size_t)(end - p))) != NULL) {
        if (end - p < 2)
            break;
        if (p[1] != 'u') {
            p += 2;  /* also skips the second half of "\\" */
            continue;
        }
        if (end - p < 6)
            break;
        unsigned cp = hex4(p + 2);
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (end - p >= 12 && p[6] == '\\' && p[7] == 'u') {
                unsigned lo = hex4(p + 8);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    p += 12;
                    continue;
                }
            }
            return (size_t)(p - in);
        }
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return (size_t)(p - in);
        p += 6;
    }
    return (size_t)-1;
}

/* YAJL's message ("lexical error: invalid char in json text.\n") without
 * the trailing period and newline, plus the offset. */
static void yajl_reason(struct pstate *ps, size_t off)
{
    if (!ps->errsize)
        return;
    unsigned char *m = yajl_get_error(ps->h, 0, NULL, 0);
    const char *msg = m ? (const char *)m : "invalid JSON";
    size_t ml = strlen(msg);
    while (ml && (msg[ml - 1] == '\n' || msg[ml - 1] == '.' || msg[ml - 1] == ' '))
        ml--;
    snprintf(ps->err, ps->errsize, "%.*s near byte %zu", (int)ml, msg, off);
    if (m)
        yajl_free_error(ps->h, m);
}

struct spoke_row *rowjson_parse_why(const void *buf, size_t len, char *err, size_t errsize,
                                    const char **why)
{
    struct spoke_row *row = NULL;
    char dummy[1];
    if (!err) {
        err = dummy;
        errsize = sizeof(dummy);
    }
    if (errsize)
        err[0] = '\0';
    struct pstate *ps = ps_get();
    if (!ps) {
        snprintf(err, errsize, "out of memory");
        if (why)
            *why = "out of memory";
        return NULL;
    }
    ps->in = buf;
    ps->inlen = len;
    ps->escaped = 0;
    ps->result = NULL;
    ps->err = err;
    ps->errsize = errsize;
    ps->why = NULL;
    ps->nv = ps->nf = 0;
    ps->scratch.len = 0;
    ps->h = yajl_alloc(&parse_callbacks, NULL, ps);
    if (!ps->h) {
        oom(ps);
        goto fail;
    }
    /* Strict: no comments, nothing after the value, one value, no partial
     * value (YAJL's defaults, spelled out). YAJL's own UTF-8 check accepts
     * overlong forms, surrogates and code points above U+10FFFF; ours
     * (row_utf8_valid, through row_set_string and schema_add) does not, so
     * YAJL's is off rather than done twice. */
    yajl_config(ps->h, yajl_allow_comments, 0);
    yajl_config(ps->h, yajl_allow_trailing_garbage, 0);
    yajl_config(ps->h, yajl_allow_multiple_values, 0);
    yajl_config(ps->h, yajl_allow_partial_values, 0);
    yajl_config(ps->h, yajl_dont_validate_strings, 1);
    yajl_status st = yajl_parse(ps->h, buf, len);
    size_t off = yajl_get_bytes_consumed(ps->h);
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(ps->h);
        off = len;  /* complete_parse only fails at the end of the input */
    }
    if (st != yajl_status_ok) {
        if (!ps->why) {
            ps->why = "value is not valid JSON";
            yajl_reason(ps, off);
        }
        goto fail;
    }
    /* A complete parse always closed the top-level object: any other
     * top-level value failed in its callback. */
    assert(ps->result);
    if (ps->escaped) {
        size_t bad = bad_surrogate(buf, len);
        if (bad != (size_t)-1) {
            ps->why = "value is not valid JSON";
            snprintf(err, errsize, "lone surrogate escape near byte %zu", bad);
            goto fail;
        }
    }
    row = ps->result;
    ps->result = NULL;
fail:
    if (!row) {
        row_free(ps->result);
        ps->result = NULL;
        for (size_t k = 0; k < ps->nv; k++)
            if (ps->vs[k].type == SPOKE_TYPE_LIST || ps->vs[k].type == SPOKE_TYPE_MAP)
                row_free(ps->vs[k].u.child);
        if (why)
            *why = ps->why;
    }
    ps->nv = ps->nf = 0;
    if (ps->h)
        yajl_free(ps->h);
    ps->h = NULL;
    /* Keep the scratch buffer from staying huge after one giant string. */
    if (ps->scratch.cap > 1u << 20)
        buf_free(&ps->scratch);
    return row;
}

struct spoke_row *rowjson_parse(const void *buf, size_t len, char *err, size_t errsize)
{
    return rowjson_parse_why(buf, len, err, errsize, NULL);
}

/* ------------------------------------------------------------------------ */
/* Rows <-> jansson                                                          */
/* ------------------------------------------------------------------------ */

static json_t *value_to_json(const struct spoke_row *row, size_t i)
{
    switch (row_type(row, i)) {
    case SPOKE_TYPE_BOOL:
        return json_boolean(row_get_bool(row, i));
    case SPOKE_TYPE_INT:
        return json_integer((json_int_t)row_get_int(row, i));
    case SPOKE_TYPE_DOUBLE: {
        double d = row_get_double(row, i);
        return isfinite(d) ? json_real(d) : json_null();
    }
    case SPOKE_TYPE_STRING: {
        size_t len;
        const char *s = row_get_string(row, i, &len);
        return json_stringn_nocheck(s, len);  /* rows hold valid UTF-8 only */
    }
    case SPOKE_TYPE_TIMESTAMP: {
        char ts[40];
        size_t n = textfmt_timestamp(row_get_timestamp(row, i), ts);
        return json_stringn_nocheck(ts, n);
    }
    case SPOKE_TYPE_LIST:
    case SPOKE_TYPE_MAP:
        return rowjson_to_json(row_get_row(row, i));
    default:
        return json_null();
    }
}

json_t *rowjson_to_json(const struct spoke_row *row)
{
    if (!row)
        return NULL;
    const struct spoke_schema *s = row_schema(row);
    json_t *out = s ? json_object() : json_array();
    if (!out)
        return NULL;
    for (size_t i = 0; i < row_count(row); i++) {
        json_t *v = value_to_json(row, i);
        if (!v)
            goto fail;
        int rc = s ? json_object_set_new_nocheck(out, schema_name(s, i), v)
                   : json_array_append_new(out, v);
        if (rc < 0)
            goto fail;
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

static enum spoke_type json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return SPOKE_TYPE_MAP;
    case JSON_ARRAY: return SPOKE_TYPE_LIST;
    case JSON_STRING: return SPOKE_TYPE_STRING;
    case JSON_INTEGER: return SPOKE_TYPE_INT;
    case JSON_REAL: return SPOKE_TYPE_DOUBLE;
    case JSON_TRUE:
    case JSON_FALSE: return SPOKE_TYPE_BOOL;
    default: return SPOKE_TYPE_NULL;
    }
}

static struct spoke_row *from_json_any(const json_t *v);

static int set_from_json(struct spoke_row *row, size_t i, const json_t *v)
{
    switch (json_kind(v)) {
    case SPOKE_TYPE_MAP:
    case SPOKE_TYPE_LIST: {
        struct spoke_row *child = from_json_any(v);
        return child ? row_set_row(row, i, child) : SPOKE_ERR_INVALID;
    }
    case SPOKE_TYPE_STRING:
        return row_set_string(row, i, json_string_value(v), json_string_length(v));
    case SPOKE_TYPE_INT:
        return row_set_int(row, i, (int64_t)json_integer_value(v));
    case SPOKE_TYPE_DOUBLE:
        return row_set_double(row, i, json_real_value(v));
    case SPOKE_TYPE_BOOL:
        return row_set_bool(row, i, json_is_true(v));
    default:
        return row_set_null(row, i);
    }
}

static struct spoke_row *from_json_any(const json_t *v)
{
    struct spoke_row *row = NULL;
    struct spoke_schema *s = NULL;
    /* jansson's iteration API takes non-const pointers but does not write. */
    json_t *j = (json_t *)v;
    if (json_is_array(j)) {
        size_t n = json_array_size(j);
        row = row_new_list(n);
        if (!row)
            goto fail;
        for (size_t i = 0; i < n; i++)
            if (set_from_json(row, i, json_array_get(j, i)) != SPOKE_OK)
                goto fail;
        return row;
    }
    if (!json_is_object(j))
        return NULL;
    s = schema_new();
    if (!s)
        goto fail;
    const char *key;
    json_t *val;
    /* Keys come in insertion order: the order of the text that was parsed,
     * or the order a plugin set them. */
    json_object_foreach(j, key, val) {
        if (schema_add(s, key, json_kind(val)) < 0)
            goto fail;
    }
    row = row_new(s);
    if (!row)
        goto fail;
    size_t i = 0;
    json_object_foreach(j, key, val) {
        if (set_from_json(row, i++, val) != SPOKE_OK)
            goto fail;
    }
    schema_unref(s);
    return row;
fail:
    row_free(row);
    schema_unref(s);
    return NULL;
}

struct spoke_row *rowjson_from_json(const json_t *obj)
{
    if (!obj || !json_is_object(obj))
        return NULL;
    return from_json_any(obj);
}
