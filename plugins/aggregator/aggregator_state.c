/*
 * aggregator_state.c - the aggregator's state: hash tables of groups and
 * entities, windows, per-group aggregate cells and the sorted multisets that
 * let table semantics retract min/max.
 *
 * Groups and entities are single allocations (header, cells, key bytes and
 * key text together) made when a group or entity first appears and freed
 * when its window closes (or, for a table group, when its last entity
 * leaves). Updating an existing group or entity allocates nothing, except a
 * string value (first/last) longer than any before it in that slot.
 */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator.h"

/* ------------------------------------------------------------------------ */
/* Open-addressing table (linear probing, backward-shift deletion)          */
/* ------------------------------------------------------------------------ */

static int table_resize(struct agg_state *st, struct agg_table *t, size_t cap)
{
    struct agg_slot *ns = calloc(cap, sizeof(*ns));
    if (!ns)
        return -1;
    size_t nmask = cap - 1;
    if (t->slots) {
        for (size_t i = 0; i <= t->mask; i++) {
            if (!t->slots[i].node)
                continue;
            size_t j = t->slots[i].hash & nmask;
            while (ns[j].node)
                j = (j + 1) & nmask;
            ns[j] = t->slots[i];
        }
        st->bytes -= (int64_t)((t->mask + 1) * sizeof(struct agg_slot));
        free(t->slots);
    }
    t->slots = ns;
    t->mask = nmask;
    st->bytes += (int64_t)(cap * sizeof(struct agg_slot));
    return 0;
}

/* Makes room for n nodes (load factor at most 3/4). */
int agg_table_reserve(struct agg_state *st, struct agg_table *t, size_t n)
{
    size_t cap = t->slots ? t->mask + 1 : 0;
    if (cap && n * 4 <= cap * 3)
        return 0;
    size_t ncap = cap ? cap : 64;
    while (n * 4 > ncap * 3)
        ncap *= 2;
    return table_resize(st, t, ncap);
}

/* The caller reserved room first (agg_table_reserve). */
void agg_table_insert(struct agg_table *t, struct agg_node *node)
{
    assert(t->slots && (t->n + 1) * 4 <= (t->mask + 1) * 3);
    size_t i = node->hash & t->mask;
    while (t->slots[i].node)
        i = (i + 1) & t->mask;
    t->slots[i].hash = node->hash;
    t->slots[i].node = node;
    t->n++;
}

void agg_table_remove(struct agg_table *t, struct agg_node *node)
{
    size_t i = node->hash & t->mask;
    while (t->slots[i].node != node) {
        assert(t->slots[i].node);
        i = (i + 1) & t->mask;
    }
    /* Backward shift: pull later entries of the probe run into the hole
     * when their home slot is at or before it (cyclically). */
    size_t j = i;
    for (;;) {
        j = (j + 1) & t->mask;
        if (!t->slots[j].node)
            break;
        size_t k = t->slots[j].hash & t->mask;
        int move = (j > i) ? (k <= i || k > j) : (k <= i && k > j);
        if (move) {
            t->slots[i] = t->slots[j];
            i = j;
        }
    }
    t->slots[i].node = NULL;
    t->slots[i].hash = 0;
    t->n--;
}

/* ------------------------------------------------------------------------ */
/* Values                                                                    */
/* ------------------------------------------------------------------------ */

static inline int is_intlike(int t)
{
    return t == SPOKE_TYPE_INT || t == SPOKE_TYPE_TIMESTAMP || t == SPOKE_TYPE_BOOL;
}

/* Total order: numbers (INT, TIMESTAMP, BOOL, DOUBLE) by value, then by type
 * so that 5 and 5.0 are distinct multiset items; strings bytewise; values of
 * different classes by type. NULL is never compared (callers skip it). */
int agg_val_cmp(const struct agg_val *a, const struct agg_val *b)
{
    int an = a->type != SPOKE_TYPE_STRING, bn = b->type != SPOKE_TYPE_STRING;
    if (an && bn) {
        if (is_intlike(a->type) && is_intlike(b->type)) {
            if (a->u.i != b->u.i)
                return a->u.i < b->u.i ? -1 : 1;
        } else {
            /* long double holds every int64 exactly on x86-64 and aarch64. */
            long double x = a->type == SPOKE_TYPE_DOUBLE ? (long double)a->u.d : (long double)a->u.i;
            long double y = b->type == SPOKE_TYPE_DOUBLE ? (long double)b->u.d : (long double)b->u.i;
            if (x != y)
                return x < y ? -1 : 1;
        }
        return (a->type > b->type) - (a->type < b->type);
    }
    if (!an && !bn) {
        uint32_t n = a->u.s.len < b->u.s.len ? a->u.s.len : b->u.s.len;
        int c = n ? memcmp(a->u.s.p, b->u.s.p, n) : 0;
        if (c)
            return c < 0 ? -1 : 1;
        return (a->u.s.len > b->u.s.len) - (a->u.s.len < b->u.s.len);
    }
    return an ? -1 : 1;
}

int agg_val_equal(const struct agg_val *a, const struct agg_val *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case SPOKE_TYPE_NULL:
        return 1;
    case SPOKE_TYPE_STRING:
        return a->u.s.len == b->u.s.len && memcmp(a->u.s.p, b->u.s.p, a->u.s.len) == 0;
    case SPOKE_TYPE_DOUBLE:
        return a->u.d == b->u.d;
    default:
        return a->u.i == b->u.i;
    }
}

void agg_val_release(struct agg_state *st, struct agg_val *v)
{
    if (v->type == SPOKE_TYPE_STRING && v->u.s.cap) {
        st->bytes -= v->u.s.cap;
        free(v->u.s.p);
    }
    v->type = SPOKE_TYPE_NULL;
    v->u.i = 0;
}

/* Copies src into dst, which owns its string buffer (reused when it is big
 * enough). Returns -1 on out-of-memory (dst unchanged). */
int agg_val_store(struct agg_state *st, struct agg_val *dst, const struct agg_val *src)
{
    if (src->type != SPOKE_TYPE_STRING) {
        if (dst->type == SPOKE_TYPE_STRING)
            agg_val_release(st, dst);
        dst->type = src->type;
        dst->u.i = 0;
        if (src->type == SPOKE_TYPE_DOUBLE)
            dst->u.d = src->u.d;
        else
            dst->u.i = src->u.i;
        return 0;
    }
    uint32_t len = src->u.s.len;
    if (dst->type == SPOKE_TYPE_STRING && dst->u.s.cap > len) {
        memmove(dst->u.s.p, src->u.s.p, len);
        dst->u.s.p[len] = '\0';
        dst->u.s.len = len;
        return 0;
    }
    uint32_t cap = len + 1 < 16 ? 16 : len + 1;
    char *p = malloc(cap);
    if (!p)
        return -1;
    memcpy(p, src->u.s.p, len);
    p[len] = '\0';
    agg_val_release(st, dst);
    dst->type = SPOKE_TYPE_STRING;
    dst->u.s.p = p;
    dst->u.s.len = len;
    dst->u.s.cap = cap;
    st->bytes += cap;
    return 0;
}

static inline double val_double(const struct agg_val *v)
{
    return v->type == SPOKE_TYPE_DOUBLE ? v->u.d : (double)v->u.i;
}

/* ------------------------------------------------------------------------ */
/* Keys                                                                      */
/* ------------------------------------------------------------------------ */

/* Decodes an encoded key (see encode_key in aggregator.c: per field a type
 * byte, then 8 bytes, 1 byte for BOOL, or a 4-byte length and the bytes for
 * STRING) into nf values; strings point into key. Returns -1 if malformed
 * or if a type differs from the field's observed type. */
int agg_key_decode(const struct agg_state *st, const uint8_t *key, uint32_t klen,
                   const int *fields, size_t nf, struct agg_val *out)
{
    uint32_t off = 0;
    for (size_t i = 0; i < nf; i++) {
        if (off >= klen)
            return -1;
        uint8_t t = key[off++];
        /* A null (group.by.nulls: group) is kept whatever the setting is
         * now: a snapshot taken with it still restores. */
        if (st && fields && st->fields[fields[i]].type != t && t != SPOKE_TYPE_NULL)
            return -1;
        out[i].type = t;
        switch (t) {
        case SPOKE_TYPE_NULL:  /* group.by.nulls: group; 8 zero bytes */
        case SPOKE_TYPE_INT:
        case SPOKE_TYPE_TIMESTAMP:
            if (klen - off < 8)
                return -1;
            memcpy(&out[i].u.i, key + off, 8);
            off += 8;
            break;
        case SPOKE_TYPE_BOOL:
            if (klen - off < 1 || key[off] > 1)
                return -1;
            out[i].u.i = key[off++];
            break;
        case SPOKE_TYPE_STRING: {
            uint32_t len;
            if (klen - off < 4)
                return -1;
            memcpy(&len, key + off, 4);
            off += 4;
            if (klen - off < len)
                return -1;
            out[i].u.s.p = (char *)(key + off);
            out[i].u.s.len = len;
            out[i].u.s.cap = 0;
            off += len;
            break;
        }
        default:
            return -1;
        }
    }
    return off == klen ? 0 : -1;
}

/* The hash of an encoded key, equal to the one computed from the values
 * it encodes (hash_cur in aggregator.c). The key was checked by
 * agg_key_decode, or built by the plugin. */
uint64_t agg_key_hash(const uint8_t *key, uint32_t klen, int64_t win)
{
    uint64_t h = agg_win_seed(win);
    uint32_t off = 0;
    while (off < klen) {
        uint8_t t = key[off++];
        if (t == SPOKE_TYPE_STRING) {
            uint32_t len = 0;
            if (klen - off < 4)
                break;
            memcpy(&len, key + off, 4);
            off += 4;
            if (klen - off < len)
                break;
            h = agg_field_hash(h, t, key + off, len);
            off += len;
        } else {
            uint32_t n = t == SPOKE_TYPE_BOOL ? 1 : 8;
            if (klen - off < n)
                break;
            h = agg_field_hash(h, t, key + off, n);
            off += n;
        }
    }
    return h;
}

/* ISO-8601 UTC with milliseconds, e.g. 2024-11-19T08:22:18.000Z (24 bytes). */
static int fmt_iso(int64_t ms, char *out, size_t outsz)
{
    int64_t days = agg_floor_div(ms, 86400000), rem = ms - days * 86400000;
    /* civil_from_days (Howard Hinnant). */
    int64_t z = days + 719468, era = agg_floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400, doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153, d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    return snprintf(out, outsz, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%03lldZ", (long long)y,
                    (long long)m, (long long)d, (long long)(rem / 3600000),
                    (long long)(rem / 60000 % 60), (long long)(rem / 1000 % 60),
                    (long long)(rem % 1000));
}

/* The output key text of an encoded key: each field's text (strings as they
 * are, integers in decimal, booleans true/false, timestamps ISO-8601),
 * joined with '|'; a null (group.by.nulls: group) is "\N". With esc, a
 * string's '\' and '|' are written "\\" and "\|", which makes the text
 * injective: two keys never share one, whatever their strings hold (else
 * "a|b","c" and "a","b|c" would both be "a|b|c", and a null and the string
 * "\N" both "\N"). Without esc (st->key_escape: a single field that cannot
 * be null) the value's own text already is injective, and stays the plain
 * value (a postcode) that downstream keys and joins expect. snprintf-like:
 * returns the length it needs (excluding the NUL), writing at most outsz
 * bytes, or -1 if the key is malformed. */
int agg_key_text(const uint8_t *key, uint32_t klen, int esc, char *out, size_t outsz)
{
    uint32_t off = 0;
    size_t n = 0;
    char tmp[40];
#define PUTC(c)                 \
    do {                        \
        if (n + 1 < outsz)      \
            out[n] = (c);       \
        n++;                    \
    } while (0)
    while (off < klen) {
        struct agg_val v;
        const uint8_t *k = key + off;
        uint32_t flen;
        /* One field at a time: find its length to decode it alone. */
        if (k[0] == SPOKE_TYPE_STRING) {
            uint32_t len;
            if (klen - off < 5)
                return -1;
            memcpy(&len, k + 1, 4);
            if (len > klen - off - 5)
                return -1;
            flen = 5 + len;
        } else {
            flen = k[0] == SPOKE_TYPE_BOOL ? 2 : 9;
        }
        if (flen > klen - off || agg_key_decode(NULL, k, flen, NULL, 1, &v) < 0)
            return -1;
        const char *s = tmp;
        size_t len;
        int quote = 0;  /* escape this field's '\' and '|' */
        switch (v.type) {
        case SPOKE_TYPE_STRING:
            s = v.u.s.p;
            len = v.u.s.len;
            quote = esc;
            break;
        case SPOKE_TYPE_BOOL:
            s = v.u.i ? "true" : "false";
            len = strlen(s);
            break;
        case SPOKE_TYPE_NULL:
            s = "\\N";  /* as PostgreSQL's COPY writes a null */
            len = 2;
            break;
        case SPOKE_TYPE_TIMESTAMP:
            len = (size_t)fmt_iso(v.u.i, tmp, sizeof(tmp));
            break;
        default:
            len = (size_t)snprintf(tmp, sizeof(tmp), "%lld", (long long)v.u.i);
            break;
        }
        if (off > 0)
            PUTC('|');
        for (size_t i = 0; i < len; i++) {
            if (quote && (s[i] == '\\' || s[i] == '|'))
                PUTC('\\');
            PUTC(s[i]);
        }
        off += flen;
    }
#undef PUTC
    if (outsz)
        out[n < outsz ? n : outsz - 1] = '\0';
    return (int)n;
}

/* ------------------------------------------------------------------------ */
/* Windows                                                                   */
/* ------------------------------------------------------------------------ */

int64_t agg_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

int64_t agg_window_end(const struct agg_state *st, int64_t start)
{
    if (st->window == AGG_WIN_NONE)
        return INT64_MAX;
    return start + st->size_ms;  /* times are bounded to +-2^53 ms: no overflow */
}

/* Starts of the windows holding time t, newest first. */
size_t agg_windows_of(const struct agg_state *st, int64_t t, int64_t *starts)
{
    if (st->window == AGG_WIN_NONE) {
        starts[0] = 0;
        return 1;
    }
    int64_t s = agg_floor_div(t, st->advance_ms) * st->advance_ms;
    size_t n = 0;
    for (; s > t - st->size_ms && n < st->maxwin; s -= st->advance_ms)
        starts[n++] = s;
    return n;
}

/* The open window starting at start, created when asked. NULL if absent
 * (or out of memory when creating). */
struct agg_window *agg_window_get(struct agg_state *st, int64_t start, int create)
{
    size_t lo = 0, hi = st->nwins;
    /* Most records land in the newest window: check it first. */
    if (hi > 0 && st->wins[hi - 1]->start == start)
        return st->wins[hi - 1];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (st->wins[mid]->start < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < st->nwins && st->wins[lo]->start == start)
        return st->wins[lo];
    if (!create)
        return NULL;
    if (st->nwins == st->capwins) {
        size_t cap = st->capwins ? st->capwins * 2 : 8;
        struct agg_window **nw = realloc(st->wins, cap * sizeof(*nw));
        if (!nw)
            return NULL;
        st->bytes += (int64_t)((cap - st->capwins) * sizeof(*nw));
        st->wins = nw;
        st->capwins = cap;
    }
    struct agg_window *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->start = start;
    w->end = agg_window_end(st, start);
    memmove(st->wins + lo + 1, st->wins + lo, (st->nwins - lo) * sizeof(*st->wins));
    st->wins[lo] = w;
    st->nwins++;
    st->bytes += sizeof(*w);
    return w;
}

/* Frees a window with its groups and entities (no emission). */
void agg_window_close(struct agg_state *st, struct agg_window *w)
{
    while (w->ghead)
        agg_group_free(st, w->ghead);
    size_t i;
    for (i = 0; i < st->nwins; i++)
        if (st->wins[i] == w)
            break;
    assert(i < st->nwins);
    memmove(st->wins + i, st->wins + i + 1, (st->nwins - i - 1) * sizeof(*st->wins));
    st->nwins--;
    st->bytes -= sizeof(*w);
    free(w);
}

/* ------------------------------------------------------------------------ */
/* Groups and entities                                                       */
/* ------------------------------------------------------------------------ */

struct agg_group *agg_group_new(struct agg_state *st, struct agg_window *w, uint64_t hash,
                                const uint8_t *key, uint32_t klen)
{
    int tlen = agg_key_text(key, klen, st->key_escape, NULL, 0);
    if (tlen < 0)
        return NULL;
    if (agg_table_reserve(st, &st->groups, st->groups.n + 1) < 0)
        return NULL;
    size_t cells = st->naggs * sizeof(struct agg_cell);
    size_t msets = st->nmsets * sizeof(struct agg_mset);
    size_t size = sizeof(struct agg_group) + cells + msets + klen + (size_t)tlen + 1;
    struct agg_group *g = calloc(1, size);
    if (!g)
        return NULL;
    g->bytes = size;
    g->msets = (struct agg_mset *)((char *)g->cells + cells);
    g->node.key = (uint8_t *)g->msets + msets;
    memcpy(g->node.key, key, klen);
    g->node.klen = klen;
    g->node.hash = hash;
    g->node.win = w->start;
    g->text = (char *)g->node.key + klen;
    g->tlen = (uint32_t)tlen;
    agg_key_text(key, klen, st->key_escape, g->text, (size_t)tlen + 1);
    g->win = w;
    g->wprev = w->gtail;
    if (w->gtail)
        w->gtail->wnext = g;
    else
        w->ghead = g;
    w->gtail = g;
    w->ngroups++;
    agg_table_insert(&st->groups, &g->node);
    st->ngroups++;
    st->bytes += (int64_t)size;
    return g;
}

void agg_group_free(struct agg_state *st, struct agg_group *g)
{
    while (g->ehead)
        agg_entity_free(st, g->ehead);
    agg_clear_dirty(st, g);
    struct agg_window *w = g->win;
    if (g->wprev)
        g->wprev->wnext = g->wnext;
    else
        w->ghead = g->wnext;
    if (g->wnext)
        g->wnext->wprev = g->wprev;
    else
        w->gtail = g->wprev;
    w->ngroups--;
    agg_table_remove(&st->groups, &g->node);
    st->ngroups--;
    for (size_t a = 0; a < st->naggs; a++) {
        enum agg_fn fn = st->aggs[a].fn;
        if (fn == AGG_FN_MIN || fn == AGG_FN_MAX || fn == AGG_FN_FIRST || fn == AGG_FN_LAST)
            agg_val_release(st, &g->cells[a].u.pick.v);
    }
    for (size_t m = 0; m < st->nmsets; m++) {
        st->bytes -= (int64_t)(g->msets[m].cap * sizeof(struct agg_mset_item));
        free(g->msets[m].items);
    }
    st->bytes -= (int64_t)g->bytes;
    free(g);
}

struct agg_entity *agg_entity_new(struct agg_state *st, int64_t win, uint64_t hash,
                                  const uint8_t *key, uint32_t klen)
{
    if (agg_table_reserve(st, &st->entities, st->entities.n + 1) < 0)
        return NULL;
    size_t vals = st->nvals * sizeof(struct agg_val);
    size_t size = sizeof(struct agg_entity) + vals + klen;
    struct agg_entity *e = calloc(1, size);
    if (!e)
        return NULL;
    e->bytes = size;
    e->node.key = (uint8_t *)e->vals + vals;
    memcpy(e->node.key, key, klen);
    e->node.klen = klen;
    e->node.hash = hash;
    e->node.win = win;
    agg_table_insert(&st->entities, &e->node);
    st->nentities++;
    st->bytes += (int64_t)size;
    return e;
}

void agg_entity_free(struct agg_state *st, struct agg_entity *e)
{
    agg_entity_unlink(e);
    agg_table_remove(&st->entities, &e->node);
    st->nentities--;
    for (size_t i = 0; i < st->nvals; i++)
        agg_val_release(st, &e->vals[i]);
    st->bytes -= (int64_t)e->bytes;
    free(e);
}

static inline int before(const struct agg_entity *a, const struct agg_entity *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

/* Links e into g's entity list, kept in (t, seq) order. In-order input
 * appends at the tail in O(1); an older event time walks back from it. */
void agg_entity_link(struct agg_group *g, struct agg_entity *e)
{
    struct agg_entity *p = g->etail;
    while (p && before(e, p))
        p = p->gprev;
    e->group = g;
    e->gprev = p;
    e->gnext = p ? p->gnext : g->ehead;
    if (e->gnext)
        e->gnext->gprev = e;
    else
        g->etail = e;
    if (p)
        p->gnext = e;
    else
        g->ehead = e;
}

/* Appends e at the end of g's entity list (restore: the saved order). */
void agg_entity_append(struct agg_group *g, struct agg_entity *e)
{
    e->group = g;
    e->gnext = NULL;
    e->gprev = g->etail;
    if (g->etail)
        g->etail->gnext = e;
    else
        g->ehead = e;
    g->etail = e;
}

void agg_entity_unlink(struct agg_entity *e)
{
    struct agg_group *g = e->group;
    if (!g)
        return;
    if (e->gprev)
        e->gprev->gnext = e->gnext;
    else
        g->ehead = e->gnext;
    if (e->gnext)
        e->gnext->gprev = e->gprev;
    else
        g->etail = e->gprev;
    e->gprev = e->gnext = NULL;
    e->group = NULL;
}

void agg_mark_dirty(struct agg_state *st, struct agg_group *g)
{
    if (g->dirty)
        return;
    g->dirty = 1;
    g->dnext = NULL;
    g->dprev = st->dtail;
    if (st->dtail)
        st->dtail->dnext = g;
    else
        st->dhead = g;
    st->dtail = g;
}

void agg_clear_dirty(struct agg_state *st, struct agg_group *g)
{
    if (!g->dirty)
        return;
    if (g->dprev)
        g->dprev->dnext = g->dnext;
    else
        st->dhead = g->dnext;
    if (g->dnext)
        g->dnext->dprev = g->dprev;
    else
        st->dtail = g->dprev;
    g->dprev = g->dnext = NULL;
    g->dirty = 0;
}

/* ------------------------------------------------------------------------ */
/* Aggregate cells                                                           */
/* ------------------------------------------------------------------------ */

/* Neumaier's compensated sum: *sum + *comp is the running total. */
static inline void neumaier2(double *sum, double *comp, double x)
{
    double s = *sum, t = s + x;
    if (fabs(s) >= fabs(x))
        *comp += (s - t) + x;
    else
        *comp += (x - t) + s;
    *sum = t;
}

static inline void neumaier(struct agg_cell *c, double x)
{
    neumaier2(&c->u.sum.dsum, &c->u.sum.comp, x);
}

/* INT sums: isum wraps like an int64 and ihi counts the wraps, so the sum
 * (isum as int64 + ihi * 2^64) stays exact, and avg right, past 2^63. On
 * the usual path this costs one overflow jump over a plain 64-bit add. */
static inline int64_t sign1(int64_t x)  /* x < 0 ? -1 : 1, without a branch */
{
    return -(int64_t)((uint64_t)x >> 63) | 1;
}

static inline void isum_add(struct agg_cell *c, int64_t x)
{
    int64_t r;
    if (__builtin_add_overflow((int64_t)c->u.sum.isum, x, &r))
        c->u.sum.ihi += sign1(x);  /* r is the sum -/+ 2^64 */
    c->u.sum.isum = (uint64_t)r;
}

static inline void isum_sub(struct agg_cell *c, int64_t x)
{
    int64_t r;
    if (__builtin_sub_overflow((int64_t)c->u.sum.isum, x, &r))
        c->u.sum.ihi -= sign1(x);
    c->u.sum.isum = (uint64_t)r;
}

/* Adds (sign +1) or retracts (sign -1, table semantics only) one value v
 * (not null) to cell c of aggregate sp. min/max/first/last: stream
 * semantics keep the value here; table semantics derive them from the
 * multisets and the entity list. */
static inline void cell_add(struct agg_state *st, const struct agg_spec *sp, struct agg_cell *c,
                            const struct agg_val *v, int sign, int64_t t, uint64_t seq)
{
    switch (sp->fn) {
    case AGG_FN_COUNT:
        c->n += sign;
        break;
    case AGG_FN_SUM:
    case AGG_FN_AVG:
        c->n += sign;
        if (v->type == SPOKE_TYPE_DOUBLE)
            neumaier(c, sign > 0 ? v->u.d : -v->u.d);
        else if (sign > 0)
            isum_add(c, v->u.i);
        else
            isum_sub(c, v->u.i);
        if (c->n == 0)
            memset(&c->u.sum, 0, sizeof(c->u.sum));  /* no drift once empty */
        break;
    case AGG_FN_VARIANCE:
    case AGG_FN_STDDEV:
    case AGG_FN_VAR_POP:
    case AGG_FN_STDDEV_POP: {
        /* Shifted, compensated sums rather than Welford's update: they
         * can be retracted exactly as they were added (table
         * semantics), and the shift keeps sum(x^2) - sum(x)^2/n from
         * cancelling when the mean is far from zero (timestamps). */
        double x = val_double(v);
        if (c->n == 0)
            c->u.var.k = x;
        /* Every term exactly (d = dh + dl, d^2 = p + e + 2*dh*dl to far below
         * an ulp of p): when the shift is far from the values, as after the
         * entity whose value set it was replaced, the sums still hold the
         * small differences that the variance is made of. */
        double k = c->u.var.k, dh = x - k, bb = dh - x, dl = (x - (dh - bb)) + (-k - bb);
        double p = dh * dh, e = fma(dh, dh, -p) + 2.0 * dh * dl + dl * dl;
        c->n += sign;
        neumaier2(&c->u.var.s, &c->u.var.sc, sign > 0 ? dh : -dh);
        c->u.var.sc += sign > 0 ? dl : -dl;
        neumaier2(&c->u.var.q, &c->u.var.qc, sign > 0 ? p : -p);
        c->u.var.qc += sign > 0 ? e : -e;
        if (c->n == 0)
            memset(&c->u.var, 0, sizeof(c->u.var));
        break;
    }
    case AGG_FN_MIN:
    case AGG_FN_MAX:
        if (st->semantics == AGG_TABLE)
            break;
        if (c->n == 0 || (sp->fn == AGG_FN_MIN ? agg_val_cmp(v, &c->u.pick.v) < 0
                                               : agg_val_cmp(v, &c->u.pick.v) > 0))
            agg_val_store(st, &c->u.pick.v, v);
        c->n++;
        break;
    case AGG_FN_FIRST:
    case AGG_FN_LAST:
        if (st->semantics == AGG_TABLE)
            break;
        /* Earliest event time wins first (ties: earliest arrival); the
         * latest wins last (ties: latest arrival). A string that cannot
         * be copied (out of memory) keeps the previous value. */
        if (c->n == 0 || (sp->fn == AGG_FN_FIRST ? t < c->u.pick.t : t >= c->u.pick.t)) {
            if (agg_val_store(st, &c->u.pick.v, v) == 0) {
                c->u.pick.t = t;
                c->u.pick.seq = seq;
            }
        }
        c->n++;
        break;
    }
}

/* Adds (sign +1) or retracts (sign -1, table semantics only) one
 * contribution: vals indexed by value slot when byslot, else by field. */
void agg_cells_add(struct agg_state *st, struct agg_group *g, const struct agg_val *vals,
                   int byslot, int sign, int64_t t, uint64_t seq)
{
    for (size_t a = 0; a < st->naggs; a++) {
        const struct agg_spec *sp = &st->aggs[a];
        if (sp->field < 0)
            continue;  /* count(): the group's nrec */
        const struct agg_val *v = &vals[byslot ? st->fields[sp->field].vslot : sp->field];
        if (v->type != SPOKE_TYPE_NULL)
            cell_add(st, sp, &g->cells[a], v, sign, t, seq);
    }
}

/* Table semantics, an entity staying in group g: retracts its previous
 * contribution (olds, by value slot; stamped ot/oseq) and adds the new one
 * (news, by field), cell by cell. An integer sum whose old and new values
 * are both integers skips cell_add's tests: integer sums are exact, in any
 * order. */
void agg_cells_replace(struct agg_state *st, struct agg_group *g, const struct agg_val *olds,
                       int64_t ot, uint64_t oseq, const struct agg_val *news, int64_t t,
                       uint64_t seq)
{
    for (size_t a = 0; a < st->naggs; a++) {
        const struct agg_spec *sp = &st->aggs[a];
        if (sp->field < 0)
            continue;  /* count(): the group's nrec */
        const struct agg_val *o = &olds[st->fields[sp->field].vslot];
        const struct agg_val *v = &news[sp->field];
        struct agg_cell *c = &g->cells[a];
        if ((sp->fn == AGG_FN_SUM || sp->fn == AGG_FN_AVG) && o->type == SPOKE_TYPE_INT &&
            v->type == SPOKE_TYPE_INT) {
            isum_add(c, v->u.i);
            isum_sub(c, o->u.i);
            continue;
        }
        if (o->type != SPOKE_TYPE_NULL)
            cell_add(st, sp, c, o, -1, ot, oseq);
        if (v->type != SPOKE_TYPE_NULL)
            cell_add(st, sp, c, v, 1, t, seq);
    }
}

/* ------------------------------------------------------------------------ */
/* Multisets (table semantics min/max)                                       */
/* ------------------------------------------------------------------------ */

/* Index of the first item >= v. */
static size_t mset_lower(const struct agg_mset *ms, const struct agg_val *v)
{
    size_t lo = 0, hi = ms->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (agg_val_cmp(&ms->items[mid].v, v) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Removes v from the multisets [0, upto). */
static void msets_remove_upto(struct agg_state *st, struct agg_group *g,
                              const struct agg_val *vals, int byslot, size_t upto)
{
    for (size_t m = 0; m < upto; m++) {
        int f = st->mset_field[m];
        const struct agg_val *v = &vals[byslot ? st->fields[f].vslot : f];
        if (v->type == SPOKE_TYPE_NULL)
            continue;
        struct agg_mset *ms = &g->msets[m];
        size_t i = mset_lower(ms, v);
        if (i >= ms->n || agg_val_cmp(&ms->items[i].v, v) != 0)
            continue;
        if (--ms->items[i].count == 0) {
            memmove(ms->items + i, ms->items + i + 1, (ms->n - i - 1) * sizeof(*ms->items));
            ms->n--;
        }
    }
}

/* Returns -1 on out-of-memory (nothing changed). */
int agg_msets_add(struct agg_state *st, struct agg_group *g, const struct agg_val *vals,
                  int byslot)
{
    for (size_t m = 0; m < st->nmsets; m++) {
        int f = st->mset_field[m];
        const struct agg_val *v = &vals[byslot ? st->fields[f].vslot : f];
        if (v->type == SPOKE_TYPE_NULL)
            continue;
        struct agg_mset *ms = &g->msets[m];
        size_t i = mset_lower(ms, v);
        if (i < ms->n && agg_val_cmp(&ms->items[i].v, v) == 0) {
            ms->items[i].count++;
            continue;
        }
        if (ms->n == ms->cap) {
            size_t cap = ms->cap ? ms->cap * 2 : 4;
            struct agg_mset_item *ni = realloc(ms->items, cap * sizeof(*ni));
            if (!ni) {
                msets_remove_upto(st, g, vals, byslot, m);
                return -1;
            }
            st->bytes += (int64_t)((cap - ms->cap) * sizeof(*ni));
            ms->items = ni;
            ms->cap = cap;
        }
        memmove(ms->items + i + 1, ms->items + i, (ms->n - i) * sizeof(*ms->items));
        ms->items[i].v = *v;
        ms->items[i].count = 1;
        ms->n++;
    }
    return 0;
}

void agg_msets_remove(struct agg_state *st, struct agg_group *g, const struct agg_val *vals,
                      int byslot)
{
    msets_remove_upto(st, g, vals, byslot, st->nmsets);
}

/* ------------------------------------------------------------------------ */
/* Whole state                                                               */
/* ------------------------------------------------------------------------ */

int agg_state_init(struct agg_state *st)
{
    st->maxwin = st->window == AGG_WIN_HOPPING
                     ? (size_t)((st->size_ms + st->advance_ms - 1) / st->advance_ms) : 1;
    st->cur = calloc(st->nfields ? st->nfields : 1, sizeof(*st->cur));
    st->ntype = calloc(st->nfields ? st->nfields : 1, 1);
    st->gkey = malloc(AGG_MAX_KEY_BYTES);
    st->ekey = malloc(AGG_MAX_KEY_BYTES);
    st->wstarts = calloc(st->maxwin, sizeof(*st->wstarts));
    st->wgroups = calloc(st->maxwin, sizeof(*st->wgroups));
    st->wents = calloc(st->maxwin, sizeof(*st->wents));
    st->wflag = calloc(st->maxwin, 1);
    for (size_t i = 0; i < AGG_SCHEMA_CACHE; i++)
        st->scache[i].idx = calloc(st->nfields ? st->nfields : 1, sizeof(int));
    for (size_t i = 0; i < AGG_SCHEMA_CACHE; i++)
        if (!st->scache[i].idx)
            return -1;
    if (!st->cur || !st->ntype || !st->gkey || !st->ekey || !st->wstarts || !st->wgroups ||
        !st->wents || !st->wflag)
        return -1;
    st->close_bound = INT64_MIN;
    if (st->window == AGG_WIN_NONE && !agg_window_get(st, 0, 1))
        return -1;
    return 0;
}

void agg_state_free(struct agg_state *st)
{
    while (st->nwins > 0)
        agg_window_close(st, st->wins[st->nwins - 1]);
    free(st->wins);
    st->wins = NULL;
    st->capwins = 0;
    free(st->groups.slots);
    free(st->entities.slots);
    memset(&st->groups, 0, sizeof(st->groups));
    memset(&st->entities, 0, sizeof(st->entities));
    for (size_t i = 0; i < AGG_SCHEMA_CACHE; i++) {
        if (st->scache[i].schema)
            st->api->schema_unref((struct spoke_schema *)st->scache[i].schema);
        free(st->scache[i].idx);
        st->scache[i].schema = NULL;
        st->scache[i].idx = NULL;
    }
    if (st->out_schema)
        st->api->schema_unref(st->out_schema);
    st->out_schema = NULL;
    free(st->cur);
    free(st->ntype);
    free(st->gkey);
    free(st->ekey);
    free(st->wstarts);
    free(st->wgroups);
    free(st->wents);
    free(st->wflag);
    free(st->sortbuf);
    st->cur = NULL;
    st->ntype = NULL;
    st->gkey = st->ekey = NULL;
    st->wstarts = NULL;
    st->wgroups = NULL;
    st->wents = NULL;
    st->wflag = NULL;
    st->sortbuf = NULL;
}
