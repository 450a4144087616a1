/*
 * schema_mapper_value.c - values: coercion of raw source values to field
 * types, numbers and timestamps as text, the per-record arena and the hash
 * map behind lookups and `in` filters.
 *
 * Coercions are the same whatever the input form (JSON bytes, CSV cells,
 * rows), so a schema means one thing everywhere. They are strict where
 * silence would hide a bug: a number is never a string unless the field says
 * `stringify`, a fractional number is never an int, 2 is never a bool.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <ctype.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_mapper.h"
#include "textfmt.h"

/* ------------------------------------------------------------------------ */
/* Arena                                                                     */
/* ------------------------------------------------------------------------ */

struct sm_chunk {
    struct sm_chunk *next;
    size_t used, cap;
    max_align_t data[];
};

#define SM_CHUNK_MIN 4096

void *sm_arena_alloc(struct sm_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct sm_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = c ? c->cap * 2 : SM_CHUNK_MIN;
        while (cap < n)
            cap *= 2;
        struct sm_chunk *nc = malloc(sizeof(*nc) + cap);
        if (!nc)
            return NULL;
        nc->next = c;
        nc->used = 0;
        nc->cap = cap;
        a->head = c = nc;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

/* Keeps the largest (newest) chunk, so a steady stream allocates nothing. */
void sm_arena_reset(struct sm_arena *a)
{
    struct sm_chunk *c = a->head;
    if (!c)
        return;
    struct sm_chunk *rest = c->next;
    c->next = NULL;
    c->used = 0;
    while (rest) {
        struct sm_chunk *nx = rest->next;
        free(rest);
        rest = nx;
    }
}

void sm_arena_free(struct sm_arena *a)
{
    sm_arena_reset(a);
    free(a->head);
    a->head = NULL;
}

/* ------------------------------------------------------------------------ */
/* Hash map                                                                  */
/* ------------------------------------------------------------------------ */

uint64_t sm_hash(const void *p, size_t n)
{
    /* Eight bytes at a time, each word mixed in by a multiply; a final
     * mix so the low bits (the table index) depend on every byte. */
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)s[i] << (8 * i);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static inline uint64_t slot_of(uint64_t hv, size_t idx)
{
    return (hv >> 32) << 32 | (uint64_t)(idx + 1);
}

struct sm_hent *sm_hmap_get(const struct sm_hmap *h, const char *key, size_t klen)
{
    if (!h->cap)
        return NULL;
    uint64_t hv = sm_hash(key, klen);
    uint64_t tag = hv >> 32;
    size_t mask = h->cap - 1;
    for (size_t k = hv & mask;; k = (k + 1) & mask) {
        uint64_t s = h->slot[k];
        if (!s)
            return NULL;
        if (s >> 32 != tag)
            continue;
        struct sm_hent *e = &h->ent[(uint32_t)s - 1];
        if (e->klen == klen && memcmp(h->keys + e->koff, key, klen) == 0)
            return e;
    }
}

/* Places entry idx (hash hv) in the first free slot of its probe. */
static void slot_place(uint64_t *slot, size_t cap, uint64_t hv, size_t idx)
{
    size_t k = hv & (cap - 1);
    while (slot[k])
        k = (k + 1) & (cap - 1);
    slot[k] = slot_of(hv, idx);
}

static int hmap_grow(struct sm_hmap *h)
{
    size_t cap = h->cap ? h->cap * 2 : 16;
    uint64_t *slot = calloc(cap, sizeof(*slot));
    if (!slot)
        return -1;
    for (size_t i = 0; i < h->n; i++)
        slot_place(slot, cap, sm_hash(h->keys + h->ent[i].koff, h->ent[i].klen), i);
    free(h->slot);
    h->slot = slot;
    h->cap = cap;
    return 0;
}

/* Room for one more entry and klen + 1 more key bytes. */
static int hmap_reserve(struct sm_hmap *h, size_t klen)
{
    if (h->n >= UINT32_MAX - 1 || klen >= UINT32_MAX - 1 - h->kused)
        return -1;
    /* At most half full: probes stay short and always end. */
    if ((h->n + 1) * 2 > h->cap && hmap_grow(h) < 0)
        return -1;
    if (h->n == h->ecap) {
        size_t ecap = h->ecap ? h->ecap * 2 : 8;
        struct sm_hent *ent = realloc(h->ent, ecap * sizeof(*ent));
        if (!ent)
            return -1;
        h->ent = ent;
        h->ecap = ecap;
    }
    if (h->kcap - h->kused < klen + 1) {
        size_t kcap = h->kcap ? h->kcap : 64;
        while (kcap - h->kused < klen + 1)
            kcap *= 2;
        char *keys = realloc(h->keys, kcap);
        if (!keys)
            return -1;
        h->keys = keys;
        h->kcap = kcap;
    }
    return 0;
}

struct sm_hent *sm_hmap_put(struct sm_hmap *h, const char *key, size_t klen, int *existed)
{
    struct sm_hent *e = sm_hmap_get(h, key, klen);
    if (e) {
        *existed = 1;
        return e;
    }
    *existed = 0;
    if (hmap_reserve(h, klen) < 0)
        return NULL;
    e = &h->ent[h->n];
    memset(e, 0, sizeof(*e));
    e->koff = (uint32_t)h->kused;
    e->klen = (uint32_t)klen;
    memcpy(h->keys + h->kused, key, klen);
    h->keys[h->kused + klen] = '\0';
    h->kused += klen + 1;
    slot_place(h->slot, h->cap, sm_hash(key, klen), h->n);
    h->n++;
    return e;
}

void sm_hmap_free(struct sm_hmap *h)
{
    for (size_t i = 0; i < h->n; i++)
        sm_val_release(&h->ent[i].val);
    free(h->slot);
    free(h->ent);
    free(h->keys);
    memset(h, 0, sizeof(*h));
}

/* ------------------------------------------------------------------------ */
/* Owned values                                                              */
/* ------------------------------------------------------------------------ */

int sm_val_own(struct sm_val *v)
{
    if (v->t != SPOKE_TYPE_STRING)
        return 0;
    char *p = malloc(v->u.s.n + 1);
    if (!p)
        return -1;
    if (v->u.s.n)
        memcpy(p, v->u.s.p, v->u.s.n);
    p[v->u.s.n] = '\0';
    v->u.s.p = p;
    return 0;
}

void sm_val_release(struct sm_val *v)
{
    if (v->t == SPOKE_TYPE_STRING)
        free((char *)v->u.s.p);
    v->t = SPOKE_TYPE_NULL;
}

int sm_val_cmp(const struct sm_val *a, const struct sm_val *b)
{
    switch (a->t) {
    case SPOKE_TYPE_BOOL:
        return (a->u.b > b->u.b) - (a->u.b < b->u.b);
    case SPOKE_TYPE_INT:
    case SPOKE_TYPE_TIMESTAMP:
        return (a->u.i > b->u.i) - (a->u.i < b->u.i);
    case SPOKE_TYPE_DOUBLE:
        return (a->u.d > b->u.d) - (a->u.d < b->u.d);
    case SPOKE_TYPE_STRING: {
        size_t n = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
        int c = n ? memcmp(a->u.s.p, b->u.s.p, n) : 0;
        if (c)
            return c;
        return (a->u.s.n > b->u.s.n) - (a->u.s.n < b->u.s.n);
    }
    default:
        return 0;
    }
}

/* ------------------------------------------------------------------------ */
/* Text                                                                      */
/* ------------------------------------------------------------------------ */

void sm_quote(const char *s, size_t n, char *buf, size_t bufsz)
{
    size_t k = 0, lim = n > 40 ? 40 : n;
    if (bufsz < 8) {
        if (bufsz)
            buf[0] = '\0';
        return;
    }
    buf[k++] = '"';
    for (size_t i = 0; i < lim && k + 6 < bufsz; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[k++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    /* Do not cut a UTF-8 sequence in two. */
    while (k > 1 && lim < n && ((unsigned char)buf[k - 1] & 0xC0) == 0x80)
        k--;
    if (k > 1 && lim < n && ((unsigned char)buf[k - 1] & 0xC0) == 0xC0)
        k--;
    buf[k++] = '"';
    if (lim < n && k + 4 <= bufsz) {
        memcpy(buf + k, "...", 3);
        k += 3;
    }
    buf[k] = '\0';
}

int sm_utf8_valid(const char *buf, size_t len, size_t *bad)
{
    return textfmt_utf8_valid(buf, len, bad);
}

size_t sm_fmt_int(int64_t v, char *o) { return textfmt_int(v, o); }


double sm_strtod(const char *s, size_t n, int *ok)
{
    char tmp[128];
    char *buf = n < sizeof(tmp) ? tmp : malloc(n + 1);
    if (!buf) {
        *ok = 0;
        return 0;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    double d = textfmt_strtod(buf, &end);
    *ok = end == buf + n && n > 0;
    if (buf != tmp)
        free(buf);
    return d;
}

/* The same text the host's row writer produces (the same code: textfmt). */
size_t sm_fmt_double(double d, char *o) { return textfmt_double(d, o); }

/* ------------------------------------------------------------------------ */
/* Timestamps                                                                */
/* ------------------------------------------------------------------------ */

int64_t sm_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    return textfmt_days_from_civil(y, m, d);
}

static int days_in_month(int64_t y, unsigned m)
{
    static const int dm[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

size_t sm_fmt_iso(int64_t ms, char *o) { return textfmt_timestamp(ms, o); }

/* Reads exactly `min..max` digits at s[*i]. */
static int read_digits(const char *s, size_t n, size_t *i, int min, int max, int64_t *out)
{
    int64_t v = 0;
    int k = 0;
    while (*i < n && k < max && s[*i] >= '0' && s[*i] <= '9') {
        v = v * 10 + (s[*i] - '0');
        (*i)++;
        k++;
    }
    if (k < min)
        return -1;
    *out = v;
    return 0;
}

/* Z, z, +hh, +hhmm, +hh:mm (or -) at s[*i]; minutes east of UTC. */
static int read_zone(const char *s, size_t n, size_t *i, int *tz)
{
    if (*i < n && (s[*i] == 'Z' || s[*i] == 'z')) {
        (*i)++;
        *tz = 0;
        return 0;
    }
    if (*i >= n || (s[*i] != '+' && s[*i] != '-'))
        return -1;
    int sign = s[*i] == '-' ? -1 : 1;
    (*i)++;
    int64_t hh, mm = 0;
    if (read_digits(s, n, i, 2, 2, &hh) < 0 || hh > 23)
        return -1;
    if (*i < n && s[*i] == ':') {
        (*i)++;
        if (read_digits(s, n, i, 2, 2, &mm) < 0)
            return -1;
    } else if (*i < n && s[*i] >= '0' && s[*i] <= '9') {
        if (read_digits(s, n, i, 2, 2, &mm) < 0)
            return -1;
    }
    if (mm > 59)
        return -1;
    *tz = sign * (int)(hh * 60 + mm);
    return 0;
}

/* Fraction digits after the decimal point -> milliseconds (truncated). */
static int read_fraction(const char *s, size_t n, size_t *i, int64_t *ms)
{
    int k = 0;
    int64_t v = 0;
    while (*i < n && s[*i] >= '0' && s[*i] <= '9') {
        if (k < 3)
            v = v * 10 + (s[*i] - '0');
        k++;
        (*i)++;
    }
    if (k == 0)
        return -1;
    while (k < 3) {
        v *= 10;
        k++;
    }
    *ms = v;
    return 0;
}

static int make_ms(int64_t y, int64_t mo, int64_t d, int64_t h, int64_t mi, int64_t sec,
                   int64_t frac, int tz, int64_t *ms)
{
    if (y < -99999 || y > 99999 || mo < 1 || mo > 12 || d < 1 ||
        d > days_in_month(y, (unsigned)mo) || h > 23 || mi > 59 || sec > 60)
        return -1;
    int64_t days = sm_days_from_civil(y, (unsigned)mo, (unsigned)d);
    *ms = ((days * 24 + h) * 60 + mi) * 60000 + sec * 1000 + frac - (int64_t)tz * 60000;
    return 0;
}

int sm_parse_iso(const char *s, size_t n, int tz_min, int64_t *ms)
{
    size_t i = 0;
    int64_t y, mo, d, h = 0, mi = 0, sec = 0, frac = 0;
    int tz = tz_min;
    if (read_digits(s, n, &i, 4, 4, &y) < 0 || i >= n || s[i++] != '-' ||
        read_digits(s, n, &i, 2, 2, &mo) < 0 || i >= n || s[i++] != '-' ||
        read_digits(s, n, &i, 2, 2, &d) < 0)
        return -1;
    if (i < n && (s[i] == 'T' || s[i] == 't' || s[i] == ' ')) {
        i++;
        if (read_digits(s, n, &i, 2, 2, &h) < 0 || i >= n || s[i++] != ':' ||
            read_digits(s, n, &i, 2, 2, &mi) < 0)
            return -1;
        if (i < n && s[i] == ':') {
            i++;
            if (read_digits(s, n, &i, 2, 2, &sec) < 0)
                return -1;
            if (i < n && (s[i] == '.' || s[i] == ',')) {
                i++;
                if (read_fraction(s, n, &i, &frac) < 0)
                    return -1;
            }
        }
        if (i < n && read_zone(s, n, &i, &tz) < 0)
            return -1;
    }
    if (i != n)
        return -1;
    return make_ms(y, mo, d, h, mi, sec, frac, tz, ms);
}

/* A compiled strptime-like format: a list of directives and literals. */
enum tsop { TS_LIT = 1, TS_SPACE, TS_Y, TS_y, TS_m, TS_d, TS_H, TS_I, TS_M, TS_S, TS_f, TS_p,
            TS_b, TS_z, TS_s };
struct sm_tsfmt {
    size_t n;
    struct {
        enum tsop op;
        char c;
    } ops[];
};

struct sm_tsfmt *sm_tsfmt_compile(const char *fmt, char *err, size_t errsz)
{
    size_t len = strlen(fmt);
    struct sm_tsfmt *f = calloc(1, sizeof(*f) + (len * 3 + 1) * sizeof(f->ops[0]));
    if (!f) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    int have_date = 0, have_epoch = 0, have_I = 0, have_p = 0;
    for (size_t i = 0; i < len; i++) {
        char c = fmt[i];
        if (c == ' ') {
            f->ops[f->n++].op = TS_SPACE;
            continue;
        }
        if (c != '%') {
            f->ops[f->n].op = TS_LIT;
            f->ops[f->n++].c = c;
            continue;
        }
        if (++i >= len) {
            snprintf(err, errsz, "format ends with a lone '%%'");
            goto fail;
        }
        enum tsop op;
        switch (fmt[i]) {
        case 'Y': op = TS_Y; have_date |= 1; break;
        case 'y': op = TS_y; have_date |= 1; break;
        case 'm': op = TS_m; have_date |= 2; break;
        case 'd': case 'e': op = TS_d; have_date |= 4; break;
        case 'H': op = TS_H; break;
        case 'I': op = TS_I; have_I = 1; break;
        case 'M': op = TS_M; break;
        case 'S': op = TS_S; break;
        case 'f': op = TS_f; break;
        case 'p': op = TS_p; have_p = 1; break;
        case 'b': case 'h': op = TS_b; have_date |= 2; break;
        case 'z': op = TS_z; break;
        case 's': op = TS_s; have_epoch = 1; break;
        case '%':
            f->ops[f->n].op = TS_LIT;
            f->ops[f->n++].c = '%';
            continue;
        case 'T':  /* %H:%M:%S */
            f->ops[f->n++].op = TS_H;
            f->ops[f->n].op = TS_LIT;
            f->ops[f->n++].c = ':';
            f->ops[f->n++].op = TS_M;
            f->ops[f->n].op = TS_LIT;
            f->ops[f->n++].c = ':';
            f->ops[f->n++].op = TS_S;
            continue;
        case 'F':  /* %Y-%m-%d */
            f->ops[f->n++].op = TS_Y;
            f->ops[f->n].op = TS_LIT;
            f->ops[f->n++].c = '-';
            f->ops[f->n++].op = TS_m;
            f->ops[f->n].op = TS_LIT;
            f->ops[f->n++].c = '-';
            f->ops[f->n++].op = TS_d;
            have_date = 7;
            continue;
        default:
            snprintf(err, errsz, "unsupported directive '%%%c' (supported: %%Y %%y %%m %%d %%e "
                     "%%H %%I %%M %%S %%f %%p %%b %%z %%s %%T %%F %%%%)", fmt[i]);
            goto fail;
        }
        f->ops[f->n++].op = op;
    }
    if (!have_epoch && have_date != 7) {
        snprintf(err, errsz, "format needs a year, a month and a day (or %%s)");
        goto fail;
    }
    if (have_I != have_p) {
        snprintf(err, errsz, "%%I and %%p go together (12-hour clock)");
        goto fail;
    }
    return f;
fail:
    free(f);
    return NULL;
}

void sm_tsfmt_free(struct sm_tsfmt *f) { free(f); }

int sm_tsfmt_parse(const struct sm_tsfmt *f, const char *s, size_t n, int tz_min, int64_t *ms)
{
    static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
    size_t i = 0;
    int64_t y = 1970, mo = 1, d = 1, h = 0, mi = 0, sec = 0, frac = 0, epoch = 0;
    int tz = tz_min, pm = -1, have_epoch = 0, twelve = 0;
    for (size_t k = 0; k < f->n; k++) {
        int64_t v;
        switch (f->ops[k].op) {
        case TS_LIT:
            if (i >= n || s[i] != f->ops[k].c)
                return -1;
            i++;
            break;
        case TS_SPACE:
            while (i < n && (s[i] == ' ' || s[i] == '\t'))
                i++;
            break;
        case TS_Y:
            if (read_digits(s, n, &i, 4, 4, &y) < 0)
                return -1;
            break;
        case TS_y:
            if (read_digits(s, n, &i, 2, 2, &v) < 0)
                return -1;
            y = v < 69 ? 2000 + v : 1900 + v;  /* POSIX: 69-99 -> 19xx */
            break;
        case TS_m:
            if (read_digits(s, n, &i, 1, 2, &mo) < 0)
                return -1;
            break;
        case TS_d:
            if (i < n && s[i] == ' ')
                i++;
            if (read_digits(s, n, &i, 1, 2, &d) < 0)
                return -1;
            break;
        case TS_H:
            if (read_digits(s, n, &i, 1, 2, &h) < 0)
                return -1;
            break;
        case TS_I:
            if (read_digits(s, n, &i, 1, 2, &h) < 0 || h < 1 || h > 12)
                return -1;
            twelve = 1;
            break;
        case TS_M:
            if (read_digits(s, n, &i, 1, 2, &mi) < 0)
                return -1;
            break;
        case TS_S:
            if (read_digits(s, n, &i, 1, 2, &sec) < 0)
                return -1;
            break;
        case TS_f:
            if (read_fraction(s, n, &i, &frac) < 0)
                return -1;
            break;
        case TS_p:
            if (i + 2 > n || (s[i + 1] != 'M' && s[i + 1] != 'm'))
                return -1;
            if (s[i] == 'A' || s[i] == 'a')
                pm = 0;
            else if (s[i] == 'P' || s[i] == 'p')
                pm = 1;
            else
                return -1;
            i += 2;
            break;
        case TS_b: {
            if (i + 3 > n)
                return -1;
            char lc[3] = { (char)tolower((unsigned char)s[i]), (char)tolower((unsigned char)s[i + 1]),
                           (char)tolower((unsigned char)s[i + 2]) };
            int found = -1;
            for (int m3 = 0; m3 < 12; m3++)
                if (memcmp(months + 3 * m3, lc, 3) == 0)
                    found = m3;
            if (found < 0)
                return -1;
            mo = found + 1;
            i += 3;
            break;
        }
        case TS_z:
            if (read_zone(s, n, &i, &tz) < 0)
                return -1;
            break;
        case TS_s: {
            int neg = i < n && s[i] == '-';
            if (neg)
                i++;
            if (read_digits(s, n, &i, 1, 18, &epoch) < 0)
                return -1;
            if (neg)
                epoch = -epoch;
            have_epoch = 1;
            break;
        }
        }
    }
    if (i != n)
        return -1;
    if (have_epoch) {
        *ms = epoch * 1000 + frac;
        return 0;
    }
    if (twelve) {
        if (pm < 0)
            return -1;
        h = (h % 12) + (pm ? 12 : 0);
    }
    return make_ms(y, mo, d, h, mi, sec, frac, tz, ms);
}

/* ------------------------------------------------------------------------ */
/* JSON strings                                                              */
/* ------------------------------------------------------------------------ */

static unsigned hex4(const char *p)
{
    return (unsigned)(textfmt_hexval((unsigned char)p[0]) << 12 | textfmt_hexval((unsigned char)p[1]) << 8 |
                      textfmt_hexval((unsigned char)p[2]) << 4 | textfmt_hexval((unsigned char)p[3]));
}

/* The body was validated by the extractor (escapes complete, surrogates
 * paired), so this only rewrites. The output is never longer than the input. */
void sm_json_unescape(struct sm_arena *a, const char *p, size_t n, const char **out, size_t *outn)
{
    char *o = sm_arena_alloc(a, n + 1), *start = o;
    if (!o) {
        *out = NULL;
        *outn = 0;
        return;
    }
    for (size_t i = 0; i < n;) {
        if (p[i] != '\\') {
            *o++ = p[i++];
            continue;
        }
        char c = p[i + 1];
        i += 2;
        switch (c) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp = hex4(p + i);
            i += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo = hex4(p + i + 2);
                i += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp < 0x80) {
                *o++ = (char)cp;
            } else if (cp < 0x800) {
                *o++ = (char)(0xC0 | cp >> 6);
                *o++ = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                *o++ = (char)(0xE0 | cp >> 12);
                *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            } else {
                *o++ = (char)(0xF0 | cp >> 18);
                *o++ = (char)(0x80 | (cp >> 12 & 0x3F));
                *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
                *o++ = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: *o++ = c; break;  /* " \ / */
        }
    }
    *o = '\0';
    *out = start;
    *outn = (size_t)(o - start);
}

/* ------------------------------------------------------------------------ */
/* Canonical text                                                            */
/* ------------------------------------------------------------------------ */

void sm_canon(const struct sm_val *v, char *buf, const char **p, size_t *n)
{
    switch (v->t) {
    case SPOKE_TYPE_STRING:
        *p = v->u.s.p;
        *n = v->u.s.n;
        return;
    case SPOKE_TYPE_INT:
    case SPOKE_TYPE_TIMESTAMP:
        *n = sm_fmt_int(v->u.i, buf);
        break;
    case SPOKE_TYPE_DOUBLE:
        *n = sm_fmt_double(v->u.d, buf);
        break;
    case SPOKE_TYPE_BOOL:
        *n = v->u.b ? 4 : 5;
        memcpy(buf, v->u.b ? "true" : "false", *n);
        break;
    default:
        *n = 0;
        break;
    }
    *p = buf;
}

void sm_text(const struct sm_val *v, char *buf, const char **p, size_t *n)
{
    if (v->t == SPOKE_TYPE_TIMESTAMP) {
        *n = sm_fmt_iso(v->u.i, buf);
        *p = buf;
        return;
    }
    sm_canon(v, buf, p, n);
}

/* ------------------------------------------------------------------------ */
/* Coercion                                                                  */
/* ------------------------------------------------------------------------ */

const char *sm_sk_name(uint8_t k)
{
    switch (k) {
    case SM_SK_MISSING: return "nothing";
    case SM_SK_NULL: return "null";
    case SM_SK_BOOL: return "boolean";
    case SM_SK_INT: case SM_SK_UINT: case SM_SK_DOUBLE: case SM_SK_NUMTXT: return "number";
    case SM_SK_STR: case SM_SK_ESTR: return "string";
    case SM_SK_TS: return "timestamp";
    case SM_SK_ARRAY: return "array";
    case SM_SK_OBJECT: return "object";
    }
    return "?";
}

const char *sm_type_name(enum sm_ftype t)
{
    switch (t) {
    case SM_T_STRING: return "string";
    case SM_T_INT: return "int";
    case SM_T_LONG: return "long";
    case SM_T_DOUBLE: return "double";
    case SM_T_BOOL: return "bool";
    case SM_T_TIMESTAMP: return "timestamp";
    case SM_T_LIST: return "list";
    case SM_T_ANY: return "any";
    case SM_T_NONE: break;
    }
    return "?";
}

/* A number parsed from text: integer when it has no fraction or exponent
 * and fits int64, else a double (big: an integer beyond int64, whose
 * double is only an approximation). txt: the text it was read from, NULL
 * for numbers that were never text (rows, simdjson). */
struct num {
    int is_int, big;
    int64_t i;
    double d;
    const char *txt;
    size_t txtn;
};

/* Reads JSON-style number text (also "+1", "007", ".5" from CSV cells when
 * lenient). 0, or -1 when it is not a number. */
static int parse_num(const char *s, size_t n, int lenient, struct num *out)
{
    out->big = 0;
    out->txt = s;
    out->txtn = n;
    /* Fast path: a plain integer of up to 18 digits (most numbers). */
    if (n && n <= 18 && (s[0] != '0' || n == 1)) {
        size_t k = s[0] == '-';
        int64_t v = 0;
        if (k < n) {
            for (; k < n && (unsigned)(s[k] - '0') < 10; k++)
                v = v * 10 + (s[k] - '0');
            if (k == n && (s[0] != '-' || (n > 1 && (s[1] != '0' || n == 2)))) {
                out->is_int = 1;
                out->i = s[0] == '-' ? -v : v;
                out->d = (double)out->i;
                return 0;
            }
        }
    }
    size_t i = 0;
    int neg = 0, digits = 0, frac = 0, expo = 0;
    if (i < n && (s[i] == '-' || (lenient && s[i] == '+'))) {
        neg = s[i] == '-';
        i++;
    }
    size_t int_start = i;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        i++;
        digits++;
    }
    if (!lenient && digits > 1 && s[int_start] == '0')
        return -1;
    if (i < n && s[i] == '.') {
        i++;
        int fd = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
            fd++;
        }
        if (fd == 0 && !(lenient && digits))
            return -1;
        digits += fd;
        frac = 1;
    }
    if (digits == 0)
        return -1;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        int ed = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
            ed++;
        }
        if (!ed)
            return -1;
        expo = 1;
    }
    if (i != n)
        return -1;
    if (!frac && !expo) {
        /* Integer: exact, with overflow detection. */
        uint64_t u = 0;
        int over = 0;
        for (size_t k = int_start; k < n; k++) {
            unsigned dgt = (unsigned)(s[k] - '0');
            if (u > (UINT64_MAX - dgt) / 10)
                over = 1;
            u = u * 10 + dgt;
        }
        if (!over && (neg ? u <= (uint64_t)INT64_MAX + 1 : u <= (uint64_t)INT64_MAX)) {
            out->is_int = 1;
            out->i = neg ? (int64_t)(0 - u) : (int64_t)u;
            out->d = (double)out->i;
            return 0;
        }
        /* Beyond int64: its double may round back into the range (every
         * integer down to -2^63 - 1024 rounds to -2^63), so it is marked. */
        out->big = 1;
    }
    int ok;
    out->is_int = 0;
    out->d = sm_strtod(s, n, &ok);
    return ok ? 0 : -1;
}

/* A string's bytes (unescaping a JSON string body into the arena). */
static void str_bytes(struct sm_mapper *m, const struct sm_src *src, const char **p, size_t *n)
{
    if (src->k == SM_SK_ESTR) {
        sm_json_unescape(&m->arena, src->u.s.p, src->u.s.n, p, n);
    } else {
        *p = src->u.s.p;
        *n = src->u.s.n;
    }
}

static int is_null_text(const struct sm_field *f, const char *p, size_t n)
{
    for (size_t i = 0; i < f->nnulls; i++)
        if (strlen(f->nulls[i]) == n && memcmp(f->nulls[i], p, n) == 0)
            return 1;
    return 0;
}

/* Text of a number for a message, from whatever form it has. */
static void num_text(const struct sm_src *src, char *buf, size_t bufsz)
{
    switch (src->k) {
    case SM_SK_INT: snprintf(buf, bufsz, "%lld", (long long)src->u.i); break;
    case SM_SK_UINT: snprintf(buf, bufsz, "%llu", (unsigned long long)src->u.u); break;
    case SM_SK_DOUBLE: buf[sm_fmt_double(src->u.d, buf)] = '\0'; break;
    case SM_SK_NUMTXT:
        snprintf(buf, bufsz, "%.*s", (int)(src->u.s.n > 40 ? 40 : src->u.s.n), src->u.s.p);
        break;
    default: snprintf(buf, bufsz, "?"); break;
    }
}

/* "got number 3.5" / "got string \"abc\"" / "got object". */
static void got(struct sm_mapper *m, const struct sm_src *src, char *buf, size_t bufsz)
{
    char tmp[64];
    switch (src->k) {
    case SM_SK_INT: case SM_SK_UINT: case SM_SK_DOUBLE: case SM_SK_NUMTXT:
        num_text(src, tmp, sizeof(tmp));
        snprintf(buf, bufsz, "got number %s", tmp);
        break;
    case SM_SK_STR: case SM_SK_ESTR: {
        const char *p;
        size_t n;
        str_bytes(m, src, &p, &n);
        sm_quote(p ? p : "", p ? n : 0, tmp, sizeof(tmp));
        snprintf(buf, bufsz, "got string %s", tmp);
        break;
    }
    case SM_SK_BOOL:
        snprintf(buf, bufsz, "got boolean %s", src->u.b ? "true" : "false");
        break;
    default:
        snprintf(buf, bufsz, "got %s", sm_sk_name(src->k));
        break;
    }
}

/* A source number as struct num. -1 for non-numbers. */
static int src_num(const struct sm_src *src, struct num *nu)
{
    switch (src->k) {
    case SM_SK_INT:
        nu->is_int = 1;
        nu->big = 0;
        nu->i = src->u.i;
        nu->d = (double)src->u.i;
        nu->txt = NULL;
        return 0;
    case SM_SK_UINT:
        nu->is_int = 0;
        nu->big = 1;
        nu->d = (double)src->u.u;
        nu->txt = NULL;
        return 0;
    case SM_SK_DOUBLE:
        nu->is_int = 0;
        nu->big = 0;
        nu->d = src->u.d;
        nu->txt = NULL;
        return 0;
    case SM_SK_NUMTXT:
        return parse_num(src->u.s.p, src->u.s.n, 0, nu);
    default:
        return -1;
    }
}

/* Number text of a string: surrounding blanks trimmed, the field's `strip`
 * characters removed. Copies into the arena only when something is removed. */
static int str_num(struct sm_mapper *m, const struct sm_field *f, const char *p, size_t n,
                   struct num *nu)
{
    while (n && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (f->strip && n) {
        int any = 0;
        for (size_t i = 0; i < n && !any; i++)
            any = strchr(f->strip, p[i]) != NULL && p[i] != '\0';
        if (any) {
            char *o = sm_arena_alloc(&m->arena, n + 1);
            if (!o)
                return -1;
            size_t k = 0;
            for (size_t i = 0; i < n; i++)
                if (!strchr(f->strip, p[i]) || p[i] == '\0')
                    o[k++] = p[i];
            p = o;
            n = k;
        }
    }
    return parse_num(p, n, 1, nu);
}

/* Epoch number in the field's unit -> ms. */
static int epoch_ms(const struct sm_field *f, const struct num *nu, int64_t *ms)
{
    if (nu->is_int) {
        int64_t v = nu->i;
        if (f->unit_num > 1) {
            if (v > INT64_MAX / f->unit_num || v < INT64_MIN / f->unit_num)
                return -1;
            *ms = v * f->unit_num;
        } else {
            /* Floor division, so -1 us is -1 ms, not 0. */
            int64_t q = v / f->unit_den, r = v % f->unit_den;
            *ms = r < 0 ? q - 1 : q;
        }
        return 0;
    }
    double d = nu->d * (double)f->unit_num / (double)f->unit_den;
    if (!isfinite(d) || d > 9.2e18 || d < -9.2e18)
        return -1;
    *ms = (int64_t)floor(d + 0.5);
    return 0;
}

/* The exact value of number text (as parse_num accepts it: sign, digits,
 * fraction, exponent) as an integer, without going through a double:
 * 0 and *out, -1 when the number is not whole, -2 when it is whole but
 * outside int64. */
static int dec_int(const char *s, size_t n, int64_t *out)
{
    size_t i = 0, ni = 0, nf = 0;
    int neg = 0, over = 0;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        neg = s[i++] == '-';
    const char *ip = s + i, *fp = s + i;
    while (i < n && (unsigned)(s[i] - '0') < 10) {
        i++;
        ni++;
    }
    if (i < n && s[i] == '.') {
        fp = s + ++i;
        while (i < n && (unsigned)(s[i] - '0') < 10) {
            i++;
            nf++;
        }
    }
    long e = 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        int eneg = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        for (; i < n && (unsigned)(s[i] - '0') < 10; i++)
            if (e < 100000000)  /* far beyond any digit count: saturating is exact enough */
                e = e * 10 + (s[i] - '0');
        if (eneg)
            e = -e;
    }
    /* The digits d[0..ni+nf) with the point after ni + e of them: those
     * before it make the integer, those after it must all be zero. */
    long whole = (long)ni + e;
    uint64_t u = 0;
    for (size_t k = 0; k < ni + nf; k++) {
        unsigned d = (unsigned)((k < ni ? ip[k] : fp[k - ni]) - '0');
        if ((long)k >= whole) {
            if (d)
                return -1;
        } else if (!over) {
            if (u > (UINT64_MAX - d) / 10)
                over = 1;
            else
                u = u * 10 + d;
        }
    }
    for (long k = (long)(ni + nf); u && !over && k < whole; k++) {
        if (u > UINT64_MAX / 10)
            over = 1;
        else
            u *= 10;
    }
    if (over || u > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
        return -2;
    *out = neg ? (int64_t)(0 - u) : (int64_t)u;
    return 0;
}

/* A number into int or long: 0, -1 (not whole) or -2 (out of range). A
 * number read from text with a fraction or an exponent is decided by its
 * exact decimal value, not by its double (1.0000000000000000001 is not
 * whole, -9223372036854775809.0 is out of range, 9223372036854775807.0 is
 * INT64_MAX); a double without text (a row's) is exact as it is. */
static int to_int(const struct sm_field *f, enum sm_ftype t, const struct num *nu,
                  struct sm_val *out)
{
    int64_t v;
    if (nu->is_int) {
        v = nu->i;
    } else if (nu->big) {
        return -2;
    } else if (nu->txt) {
        int rc = dec_int(nu->txt, nu->txtn, &v);
        if (rc < 0)
            return rc;
    } else {
        if (!isfinite(nu->d) || nu->d != floor(nu->d) || nu->d < -9223372036854775808.0 ||
            nu->d >= 9223372036854775808.0)
            return nu->d == floor(nu->d) ? -2 : -1;
        v = (int64_t)nu->d;
    }
    if (t == SM_T_INT && (v < INT32_MIN || v > INT32_MAX))
        return -2;
    out->t = SPOKE_TYPE_INT;
    out->u.i = v;
    return 0;
}

static int str_bool(const char *p, size_t n, int *b)
{
    static const char *const yes[] = { "true", "yes", "y", "t", "1" };
    static const char *const no[] = { "false", "no", "n", "f", "0" };
    for (size_t i = 0; i < 5; i++) {
        if (strlen(yes[i]) == n && strncasecmp(yes[i], p, n) == 0) {
            *b = 1;
            return 0;
        }
        if (strlen(no[i]) == n && strncasecmp(no[i], p, n) == 0) {
            *b = 0;
            return 0;
        }
    }
    return -1;
}

/* Compact JSON text of a BK_TEXT container: the raw span without the
 * whitespace between tokens. */
static void minify(struct sm_mapper *m, const char *p, size_t n, const char **out, size_t *outn)
{
    char *o = sm_arena_alloc(&m->arena, n + 1), *s = o;
    if (!o) {
        *out = NULL;
        *outn = 0;
        return;
    }
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (in_str) {
            *o++ = c;
            if (c == '\\')
                *o++ = p[++i];
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
            *o++ = c;
        } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            *o++ = c;
        }
    }
    *out = s;
    *outn = (size_t)(o - s);
}

/* Appends JSON text of a row value (for stringify of row containers). */
struct jbuf {
    struct sm_mapper *m;
    char *p;
    size_t n, cap;
    int oom;
};

static void jb_put(struct jbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + n)
            cap *= 2;
        char *np = sm_arena_alloc(&b->m->arena, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        if (b->n)
            memcpy(np, b->p, b->n);
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void jb_str(struct jbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    jb_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        jb_put(b, s + run, i - run);
        run = i + 1;
        char e[6] = { '\\', (char)c, 0, 0, 0, 0 };
        if (c < 0x20) {
            memcpy(e, "\\u00", 4);
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            jb_put(b, e, 6);
        } else {
            jb_put(b, e, 2);
        }
    }
    jb_put(b, s + run, n - run);
    jb_put(b, "\"", 1);
}

static void jb_row(struct jbuf *b, const struct spoke_host_api *api, const struct spoke_row *row,
                   int depth)
{
    const struct spoke_schema *sc = api->row_schema(row);
    size_t n = api->row_count(row);
    char tmp[40];
    if (depth > 64) {
        b->oom = 1;
        return;
    }
    jb_put(b, sc ? "{" : "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            jb_put(b, ",", 1);
        if (sc) {
            const char *name = api->schema_name(sc, i);
            jb_str(b, name, strlen(name));
            jb_put(b, ":", 1);
        }
        switch (api->row_type(row, i)) {
        case SPOKE_TYPE_NULL: jb_put(b, "null", 4); break;
        case SPOKE_TYPE_BOOL:
            if (api->row_get_bool(row, i))
                jb_put(b, "true", 4);
            else
                jb_put(b, "false", 5);
            break;
        case SPOKE_TYPE_INT: jb_put(b, tmp, sm_fmt_int(api->row_get_int(row, i), tmp)); break;
        case SPOKE_TYPE_DOUBLE:
            jb_put(b, tmp, sm_fmt_double(api->row_get_double(row, i), tmp));
            break;
        case SPOKE_TYPE_STRING: {
            size_t sl;
            const char *s = api->row_get_string(row, i, &sl);
            jb_str(b, s, sl);
            break;
        }
        case SPOKE_TYPE_TIMESTAMP: {
            size_t tl = sm_fmt_iso(api->row_get_timestamp(row, i), tmp + 1);
            tmp[0] = '"';
            tmp[tl + 1] = '"';
            jb_put(b, tmp, tl + 2);
            break;
        }
        case SPOKE_TYPE_LIST:
        case SPOKE_TYPE_MAP:
            jb_row(b, api, api->row_get_row(row, i), depth + 1);
            break;
        }
    }
    jb_put(b, sc ? "}" : "]", 1);
}

/* Text of any raw value for `stringify`: a number read from JSON text is
 * that text, byte for byte (1.10, 1E+2, -0, 1e400 and 20-digit integers
 * stay as written); an integer token kept as its value (INT, UINT) is
 * written in decimal, which is its text (JSON integers have one spelling,
 * and -0 is kept as text by the extractor). Numbers from rows are their
 * values: integers in decimal, doubles in shortest round-trip form. A
 * container read from JSON text is its text without the blanks between
 * tokens. json.parser simdjson never gets here with a double, a zero or a
 * container: its DOM has no text for them, so such records are read again
 * by the extractor (sm_map_bytes). 0, or -1 with the reason in why. */
static int stringify(struct sm_mapper *m, const struct sm_src *src, const char **p, size_t *n,
                     char *why, size_t whysz)
{
    char tmp[40];
    size_t k;
    switch (src->k) {
    case SM_SK_BOOL:
        *p = src->u.b ? "true" : "false";
        *n = src->u.b ? 4 : 5;
        return 0;
    case SM_SK_NUMTXT:
        *p = src->u.s.p;
        *n = src->u.s.n;
        return 0;
    case SM_SK_INT:
        k = sm_fmt_int(src->u.i, tmp);
        break;
    case SM_SK_UINT:
        k = (size_t)snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)src->u.u);
        break;
    case SM_SK_DOUBLE:
        if (!isfinite(src->u.d)) {
            snprintf(why, whysz, "cannot write the number %s as JSON text",
                     isnan(src->u.d) ? "NaN" : src->u.d > 0 ? "Infinity" : "-Infinity");
            return -1;
        }
        k = sm_fmt_double(src->u.d, tmp);
        break;
    case SM_SK_TS:
        k = sm_fmt_iso(src->u.i, tmp);
        break;
    case SM_SK_ARRAY:
    case SM_SK_OBJECT:
        if (src->bk == SM_BK_TEXT) {
            minify(m, src->u.s.p, src->u.s.n, p, n);
        } else if (src->bk == SM_BK_SJ) {
            size_t need = sj_to_json(&src->u.sj, NULL, 0);
            char *o = sm_arena_alloc(&m->arena, need + 1);
            if (!o)
                goto oom;
            sj_to_json(&src->u.sj, o, need);
            *p = o;
            *n = need;
        } else {
            struct jbuf b = { .m = m };
            jb_row(&b, m->api, src->u.row, 0);
            if (b.oom) {
                snprintf(why, whysz, "cannot write the %s as JSON text (nested deeper than 64 "
                         "levels, or out of memory)", sm_sk_name(src->k));
                return -1;
            }
            *p = b.p;
            *n = b.n;
        }
        if (!*p)
            goto oom;
        return 0;
    default:
        snprintf(why, whysz, "cannot write the %s as JSON text", sm_sk_name(src->k));
        return -1;
    }
    char *o = sm_arena_alloc(&m->arena, k + 1);
    if (!o)
        goto oom;
    memcpy(o, tmp, k);
    *p = o;
    *n = k;
    return 0;
oom:
    snprintf(why, whysz, "out of memory");
    return -1;
}

int sm_coerce(struct sm_mapper *m, const struct sm_field *f, enum sm_ftype t,
              const struct sm_src *src, struct sm_val *out, char *err, size_t errsz)
{
    char g[96];
    struct num nu;
    const char *p = NULL;
    size_t n = 0;

    if (sm_coerce_quick(f, t, src, out))
        return 0;
    out->why = SM_WHY_MISSING;
    if (src->k == SM_SK_MISSING || src->k == SM_SK_NULL) {
        out->t = SPOKE_TYPE_NULL;
        out->why = src->k == SM_SK_NULL ? SM_WHY_NULL : SM_WHY_MISSING;
        return 0;
    }
    int is_str = src->k == SM_SK_STR || src->k == SM_SK_ESTR;
    if (is_str) {
        str_bytes(m, src, &p, &n);
        if (!p)
            goto oom;
        if (f->nnulls && is_null_text(f, p, n)) {
            out->t = SPOKE_TYPE_NULL;
            out->why = SM_WHY_NULLTEXT;
            return 0;
        }
    }
    switch (t) {
    case SM_T_STRING:
        if (is_str) {
            out->t = SPOKE_TYPE_STRING;
            out->u.s.p = p;
            out->u.s.n = n;
            return 0;
        }
        if (f->stringify) {
            if (stringify(m, src, &p, &n, err, errsz) < 0)
                return -1;
            out->t = SPOKE_TYPE_STRING;
            out->u.s.p = p;
            out->u.s.n = n;
            return 0;
        }
        got(m, src, g, sizeof(g));
        snprintf(err, errsz, "expected string, %s", g);
        return -1;

    case SM_T_INT:
    case SM_T_LONG:
    case SM_T_DOUBLE: {
        if (is_str) {
            if (str_num(m, f, p, n, &nu) < 0)
                goto mismatch;
        } else if (src->k == SM_SK_TS && t != SM_T_DOUBLE) {
            nu.is_int = 1;
            nu.big = 0;
            nu.i = src->u.i;
            nu.txt = NULL;
        } else if (src->k == SM_SK_UINT && t != SM_T_DOUBLE) {
            num_text(src, g, sizeof(g));
            snprintf(err, errsz, "%s is out of range for %s", g, sm_type_name(t));
            return -1;
        } else if (src_num(src, &nu) < 0) {
            goto mismatch;
        }
        if (t == SM_T_DOUBLE) {
            if (!isfinite(nu.d)) {
                snprintf(err, errsz, "number out of range for double");
                return -1;
            }
            out->t = SPOKE_TYPE_DOUBLE;
            out->u.d = nu.d;
            return 0;
        }
        int rc = to_int(f, t, &nu, out);
        if (rc == 0)
            return 0;
        if (is_str)
            sm_quote(p, n, g, sizeof(g));
        else if (nu.is_int)
            snprintf(g, sizeof(g), "%lld", (long long)nu.i);
        else
            num_text(src, g, sizeof(g));
        if (rc == -2)
            snprintf(err, errsz, "%s is out of range for %s", g, sm_type_name(t));
        else
            snprintf(err, errsz, "expected %s, got %s %s (not a whole number)", sm_type_name(t),
                     is_str ? "string" : "number", g);
        return -1;
    }

    case SM_T_BOOL:
        if (src->k == SM_SK_BOOL) {
            out->t = SPOKE_TYPE_BOOL;
            out->u.b = src->u.b;
            return 0;
        }
        if (is_str) {
            if (str_bool(p, n, &out->u.b) < 0) {
                sm_quote(p, n, g, sizeof(g));
                snprintf(err, errsz, "expected bool (true/false, yes/no, y/n, t/f, 1/0), got "
                         "string %s", g);
                return -1;
            }
            out->t = SPOKE_TYPE_BOOL;
            return 0;
        }
        if (src_num(src, &nu) == 0) {
            if (nu.d == 0 || nu.d == 1) {
                out->t = SPOKE_TYPE_BOOL;
                out->u.b = nu.d == 1;
                return 0;
            }
            num_text(src, g, sizeof(g));
            snprintf(err, errsz, "expected bool (0 or 1), got number %s", g);
            return -1;
        }
        goto mismatch;

    case SM_T_TIMESTAMP: {
        int64_t ms;
        if (src->k == SM_SK_TS) {
            out->t = SPOKE_TYPE_TIMESTAMP;
            out->u.i = src->u.i;
            return 0;
        }
        if (is_str) {
            if (f->fmt) {
                if (sm_tsfmt_parse(f->fmt, p, n, f->tz_min, &ms) == 0)
                    goto ts_ok;
                sm_quote(p, n, g, sizeof(g));
                snprintf(err, errsz, "expected a timestamp in the field's format, got string %s",
                         g);
                return -1;
            }
            if (sm_parse_iso(p, n, f->tz_min, &ms) == 0)
                goto ts_ok;
            if (str_num(m, f, p, n, &nu) == 0) {
                if (epoch_ms(f, &nu, &ms) == 0)
                    goto ts_ok;
                sm_quote(p, n, g, sizeof(g));
                snprintf(err, errsz, "epoch %s is out of range for a timestamp", g);
                return -1;
            }
            sm_quote(p, n, g, sizeof(g));
            snprintf(err, errsz, "expected an ISO-8601 timestamp or an epoch number, got string %s",
                     g);
            return -1;
        }
        if (src_num(src, &nu) == 0 || src->k == SM_SK_UINT) {
            if (src->k != SM_SK_UINT && epoch_ms(f, &nu, &ms) == 0)
                goto ts_ok;
            num_text(src, g, sizeof(g));
            snprintf(err, errsz, "epoch %s is out of range for a timestamp", g);
            return -1;
        }
        goto mismatch;
ts_ok:
        out->t = SPOKE_TYPE_TIMESTAMP;
        out->u.i = ms;
        return 0;
    }

    case SM_T_ANY:
        switch (src->k) {
        case SM_SK_BOOL:
            out->t = SPOKE_TYPE_BOOL;
            out->u.b = src->u.b;
            return 0;
        case SM_SK_STR:
        case SM_SK_ESTR:
            out->t = SPOKE_TYPE_STRING;
            out->u.s.p = p;
            out->u.s.n = n;
            return 0;
        case SM_SK_TS:
            out->t = SPOKE_TYPE_TIMESTAMP;
            out->u.i = src->u.i;
            return 0;
        case SM_SK_INT: case SM_SK_UINT: case SM_SK_DOUBLE: case SM_SK_NUMTXT:
            if (src->k == SM_SK_UINT) {
                nu.is_int = 0;
                nu.d = (double)src->u.u;
            } else if (src_num(src, &nu) < 0) {
                goto mismatch;
            }
            if (nu.is_int) {
                out->t = SPOKE_TYPE_INT;
                out->u.i = nu.i;
            } else {
                out->t = SPOKE_TYPE_DOUBLE;
                out->u.d = nu.d;
            }
            return 0;
        default:
            snprintf(err, errsz, "expected a scalar, got %s", sm_sk_name(src->k));
            return -1;
        }

    case SM_T_LIST:
    case SM_T_NONE:
        break;
    }
mismatch:
    got(m, src, g, sizeof(g));
    snprintf(err, errsz, "expected %s, %s", sm_type_name(t), g);
    return -1;
oom:
    snprintf(err, errsz, "out of memory");
    return -1;
}
