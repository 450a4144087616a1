/*
 * aggregator_snap.c - the whole state as bytes, and back.
 *
 * Format version 2, little-endian, no padding:
 *
 *   "SPOKEAGG"  u32 version (2)
 *   str  canonical configuration (semantics, keys, window, time, aggregates)
 *   u32  nfields, then per field: str name, u8 observed type
 *   u64  seq   u8 has_max_t   i64 max_t   i64 close_bound
 *   u32  nwindows, then per window (ascending start): i64 start, u32 ngroups,
 *        then per group: str key, u8 dirty, u8 has_ts, i64 ts, i64 nrec,
 *        one cell per aggregate (see put_cell), and with table semantics
 *        u32 nentities, then per entity (in the group's order): str key,
 *        i64 t, u64 seq, one value per value field
 *   u64  checksum of everything before it
 *
 *   str = u32 length + bytes; value = u8 type + (i64 | f64 bits | str | nothing)
 *
 * A sum or avg cell is i64 n, u64 isum, i64 ihi (the INT sum's wraps), f64
 * dsum, f64 comp. Version 1 is the same without ihi: it is still read (as
 * 0: its sums had not wrapped, or were already shown wrapped).
 *
 * Aggregate cells are stored bit for bit (double sums with their
 * compensation, the variance's shift and sums), so a restored state continues with
 * exactly the numbers it had. Table min/max multisets are rebuilt from the
 * entities, which hold every contribution.
 *
 * Restore checks the magic, the version, the checksum, that the snapshot
 * was taken with the same state-shaping configuration, and every length,
 * type and count, and refuses anything else with the reason.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator.h"

#define SNAP_MAGIC "SPOKEAGG"
#define SNAP_VERSION 2u      /* written; versions 1 and 2 are read */
#define SNAP_SEED 0x5350414b41474731ull

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */
/* ------------------------------------------------------------------------ */

struct wbuf {
    uint8_t *p;
    size_t len, cap;
    int oom;
};

static void put(struct wbuf *b, const void *d, size_t n)
{
    if (b->oom)
        return;
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void put_u64(struct wbuf *b, uint64_t v)
{
    uint8_t o[8];
    for (int i = 0; i < 8; i++)
        o[i] = (uint8_t)(v >> (8 * i));
    put(b, o, 8);
}

static void put_u32(struct wbuf *b, uint32_t v)
{
    uint8_t o[4];
    for (int i = 0; i < 4; i++)
        o[i] = (uint8_t)(v >> (8 * i));
    put(b, o, 4);
}

static void put_u8(struct wbuf *b, uint8_t v) { put(b, &v, 1); }
static void put_i64(struct wbuf *b, int64_t v) { put_u64(b, (uint64_t)v); }

static void put_f64(struct wbuf *b, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    put_u64(b, v);
}

static void put_str(struct wbuf *b, const void *s, size_t n)
{
    put_u32(b, (uint32_t)n);
    put(b, s, n);
}

static void put_val(struct wbuf *b, const struct agg_val *v)
{
    put_u8(b, v->type);
    switch (v->type) {
    case SPOKE_TYPE_NULL:
        break;
    case SPOKE_TYPE_DOUBLE:
        put_f64(b, v->u.d);
        break;
    case SPOKE_TYPE_STRING:
        put_str(b, v->u.s.p, v->u.s.len);
        break;
    default:
        put_i64(b, v->u.i);
        break;
    }
}

static void put_cell(const struct agg_state *st, struct wbuf *b, const struct agg_spec *sp,
                     const struct agg_cell *c)
{
    put_i64(b, c->n);
    switch (sp->fn) {
    case AGG_FN_COUNT:
        break;
    case AGG_FN_SUM:
    case AGG_FN_AVG:
        put_u64(b, c->u.sum.isum);
        put_i64(b, c->u.sum.ihi);
        put_f64(b, c->u.sum.dsum);
        put_f64(b, c->u.sum.comp);
        break;
    case AGG_FN_VARIANCE:
    case AGG_FN_STDDEV:
    case AGG_FN_VAR_POP:
    case AGG_FN_STDDEV_POP:
        put_f64(b, c->u.var.k);
        put_f64(b, c->u.var.s);
        put_f64(b, c->u.var.sc);
        put_f64(b, c->u.var.q);
        put_f64(b, c->u.var.qc);
        break;
    default:
        if (st->semantics == AGG_STREAM) {
            put_val(b, &c->u.pick.v);
            put_i64(b, c->u.pick.t);
            put_u64(b, c->u.pick.seq);
        }
        break;
    }
}

int agg_snapshot(void *vst, void **data, size_t *len, char *err, size_t errsz)
{
    struct agg_state *st = vst;
    struct wbuf b = { 0 };
    put(&b, SNAP_MAGIC, 8);
    put_u32(&b, SNAP_VERSION);
    put_str(&b, st->canon, strlen(st->canon));
    put_u32(&b, (uint32_t)st->nfields);
    for (size_t f = 0; f < st->nfields; f++) {
        put_str(&b, st->fields[f].name, strlen(st->fields[f].name));
        put_u8(&b, st->fields[f].type);
    }
    put_u64(&b, st->seq);
    put_u8(&b, st->has_max_t);
    put_i64(&b, st->max_t);
    put_i64(&b, st->close_bound);
    put_u32(&b, (uint32_t)st->nwins);
    for (size_t wi = 0; wi < st->nwins; wi++) {
        const struct agg_window *w = st->wins[wi];
        put_i64(&b, w->start);
        put_u32(&b, (uint32_t)w->ngroups);
        for (const struct agg_group *g = w->ghead; g; g = g->wnext) {
            put_str(&b, g->node.key, g->node.klen);
            put_u8(&b, g->dirty);
            put_u8(&b, g->has_ts);
            put_i64(&b, g->ts);
            put_i64(&b, g->nrec);
            for (size_t a = 0; a < st->naggs; a++)
                put_cell(st, &b, &st->aggs[a], &g->cells[a]);
            if (st->semantics != AGG_TABLE)
                continue;
            uint32_t ne = 0;
            for (const struct agg_entity *e = g->ehead; e; e = e->gnext)
                ne++;
            put_u32(&b, ne);
            for (const struct agg_entity *e = g->ehead; e; e = e->gnext) {
                put_str(&b, e->node.key, e->node.klen);
                put_i64(&b, e->t);
                put_u64(&b, e->seq);
                for (size_t s = 0; s < st->nvals; s++)
                    put_val(&b, &e->vals[s]);
            }
        }
    }
    if (!b.oom)
        put_u64(&b, agg_hash(b.p, b.len, SNAP_SEED));
    void *out = b.oom ? NULL : st->api->alloc(b.len);
    if (!out) {
        free(b.p);
        snprintf(err, errsz, "out of memory serializing %zu groups", st->ngroups);
        return SPOKE_ERR_NOMEM;
    }
    memcpy(out, b.p, b.len);
    free(b.p);
    *data = out;
    *len = b.len;
    return SPOKE_OK;
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                   */
/* ------------------------------------------------------------------------ */

struct rbuf {
    const uint8_t *p;
    size_t len, off;
    int bad;
};

static const uint8_t *take(struct rbuf *r, size_t n)
{
    if (r->bad || r->len - r->off < n) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

static uint64_t get_u64(struct rbuf *r)
{
    const uint8_t *p = take(r, 8);
    uint64_t v = 0;
    for (int i = 0; p && i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint32_t get_u32(struct rbuf *r)
{
    const uint8_t *p = take(r, 4);
    uint32_t v = 0;
    for (int i = 0; p && i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint8_t get_u8(struct rbuf *r)
{
    const uint8_t *p = take(r, 1);
    return p ? *p : 0;
}

static int64_t get_i64(struct rbuf *r) { return (int64_t)get_u64(r); }

static double get_f64(struct rbuf *r)
{
    uint64_t v = get_u64(r);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

static const uint8_t *get_str(struct rbuf *r, uint32_t *n)
{
    *n = get_u32(r);
    return take(r, *n);
}

/* A value as stored; strings borrow from the snapshot. Returns -1 if the
 * type is not a scalar. */
static int get_val(struct rbuf *r, struct agg_val *v)
{
    v->type = get_u8(r);
    v->u.i = 0;
    switch (v->type) {
    case SPOKE_TYPE_NULL:
        return 0;
    case SPOKE_TYPE_DOUBLE:
        v->u.d = get_f64(r);
        return 0;
    case SPOKE_TYPE_STRING: {
        uint32_t n;
        const uint8_t *p = get_str(r, &n);
        v->u.s.p = (char *)p;
        v->u.s.len = n;
        v->u.s.cap = 0;
        return 0;
    }
    case SPOKE_TYPE_INT:
    case SPOKE_TYPE_TIMESTAMP:
        v->u.i = get_i64(r);
        return 0;
    case SPOKE_TYPE_BOOL:
        v->u.i = get_i64(r);
        return v->u.i == 0 || v->u.i == 1 ? 0 : -1;
    default:
        return -1;
    }
}

/* A stored value of field f must be null or fit the field's type. */
static int val_fits(const struct agg_state *st, int f, const struct agg_val *v)
{
    int ft = st->fields[f].type;
    if (v->type == SPOKE_TYPE_NULL)
        return 1;
    if (!(st->fields[f].allowed & AGG_T(v->type)))
        return 0;
    return v->type == ft || (ft == SPOKE_TYPE_DOUBLE && v->type == SPOKE_TYPE_INT);
}

/* Up to w bytes of a part of a canonical text: the part, or its start and
 * "..." when it is longer. */
static int part_text(char *out, size_t outsz, const char *p, size_t len, size_t w)
{
    if (len <= w)
        return snprintf(out, outsz, "%.*s", (int)len, p);
    return snprintf(out, outsz, "%.*s...", (int)(w > 3 ? w - 3 : 0), p);
}

/*
 * A snapshot of another state-shaping configuration. Deleting it, the way
 * out that comes to mind, silently loses data: the state holds every
 * record the connector absorbed, and their source offsets are committed,
 * so no source sends them again. The error (the connector's trace, at most
 * errsz bytes) names the first part that differs and says so in short; the
 * log says what each way out costs and how to take it.
 */
static void config_differs(struct agg_state *st, const char *snap, size_t slen, char *err,
                           size_t errsz)
{
    static const char advice[] = "restore that configuration; deleting the snapshot loses "
                                 "the input it holds (offsets are committed), see the log";
    const char *a = snap, *aend = snap + slen, *b = st->canon;
    size_t al = 0, bl = 0;
    int found = 0;
    while (a < aend && *b) {
        const char *ae = memchr(a, ';', (size_t)(aend - a));
        const char *be = strchr(b, ';');
        al = ae ? (size_t)(ae - a) : (size_t)(aend - a);
        bl = be ? (size_t)(be - b) : strlen(b);
        if (al != bl || memcmp(a, b, al) != 0) {
            found = 1;
            break;
        }
        a += al + (ae != NULL);
        b += bl + (be != NULL);
    }
    char old[1024], now[1024];
    if (found) {
        /* Each part gets half of what the trace leaves for them. */
        size_t fixed = strlen("snapshot holds state for  but the configuration says : ") +
                       strlen(advice);
        size_t w = errsz > fixed + 1 + 2 * 16 ? (errsz - fixed - 1) / 2 : 16;
        char ps[256], pn[256];
        part_text(ps, sizeof(ps), a, al, w < sizeof(ps) - 1 ? w : sizeof(ps) - 1);
        part_text(pn, sizeof(pn), b, bl, w < sizeof(pn) - 1 ? w : sizeof(pn) - 1);
        snprintf(err, errsz, "snapshot holds state for %s but the configuration says %s: %s", ps,
                 pn, advice);
        part_text(old, sizeof(old), a, al, sizeof(old) - 1);
        part_text(now, sizeof(now), b, bl, sizeof(now) - 1);
    } else {
        snprintf(err, errsz, "snapshot was taken with another configuration: %s", advice);
        part_text(old, sizeof(old), snap, slen, sizeof(old) - 1);
        part_text(now, sizeof(now), st->canon, strlen(st->canon), sizeof(now) - 1);
    }
    const char *name = st->api->instance_name(st->inst);
    if (!name)
        name = "<connector>";
    st->api->log(st->inst, SPOKE_LOG_ERROR,
                 "the snapshot (snapshots/%s.snap in state.dir) holds state for %s, but the "
                 "configuration now says %s. That state holds every record this connector "
                 "absorbed, and their source offsets are committed: no source will send them "
                 "again. To keep them, restore the configuration the snapshot was taken with: "
                 "the connector resumes exactly. To apply the new configuration to all the "
                 "input, the sources must replay it from the start, if they still can (a file, "
                 "a Kafka topic within its retention; not a live feed): stop them (PUT "
                 "/connectors/<source>/stop), reset their offsets (DELETE "
                 "/connectors/<source>/offsets), delete the snapshot, restart this connector "
                 "(POST /connectors/<name>/restart) and resume them (PUT "
                 "/connectors/<source>/resume); the other connectors "
                 "reading those sources get their records again. Deleting the snapshot alone "
                 "starts from empty state: the totals then count only the records that arrive "
                 "from now on, and never the ones it held.", name, old, now);
}

/* Back to an empty state after a refused snapshot. */
static void reset(struct agg_state *st)
{
    while (st->nwins > 0)
        agg_window_close(st, st->wins[st->nwins - 1]);
    st->seq = 0;
    st->has_max_t = 0;
    st->max_t = 0;
    st->close_bound = INT64_MIN;
    for (size_t f = 0; f < st->nfields; f++)
        st->fields[f].type = SPOKE_TYPE_NULL;
    st->type_epoch++;
    if (st->window == AGG_WIN_NONE)
        agg_window_get(st, 0, 1);
}

static int get_cell(struct agg_state *st, struct rbuf *r, uint32_t version,
                    const struct agg_spec *sp, struct agg_cell *c)
{
    c->n = get_i64(r);
    if (c->n < 0)
        return -1;
    switch (sp->fn) {
    case AGG_FN_COUNT:
        return 0;
    case AGG_FN_SUM:
    case AGG_FN_AVG:
        c->u.sum.isum = get_u64(r);
        c->u.sum.ihi = version >= 2 ? get_i64(r) : 0;
        c->u.sum.dsum = get_f64(r);
        c->u.sum.comp = get_f64(r);
        /* Each value wraps the sum at most once. */
        return c->u.sum.ihi > c->n || c->u.sum.ihi < -c->n ? -1 : 0;
    case AGG_FN_VARIANCE:
    case AGG_FN_STDDEV:
    case AGG_FN_VAR_POP:
    case AGG_FN_STDDEV_POP:
        c->u.var.k = get_f64(r);
        c->u.var.s = get_f64(r);
        c->u.var.sc = get_f64(r);
        c->u.var.q = get_f64(r);
        c->u.var.qc = get_f64(r);
        return 0;
    default:
        if (st->semantics == AGG_STREAM) {
            struct agg_val v;
            if (get_val(r, &v) < 0 || r->bad || !val_fits(st, sp->field, &v))
                return -1;
            if ((v.type == SPOKE_TYPE_NULL) != (c->n == 0))
                return -1;
            if (agg_val_store(st, &c->u.pick.v, &v) < 0)
                return -2;
            c->u.pick.t = get_i64(r);
            c->u.pick.seq = get_u64(r);
        }
        return 0;
    }
}

static int restore_body(struct agg_state *st, struct rbuf *r, uint32_t version, char *err,
                        size_t errsz)
{
#define CORRUPT(...)                                                          \
    do {                                                                      \
        char why_[160];                                                       \
        snprintf(why_, sizeof(why_), __VA_ARGS__);                            \
        snprintf(err, errsz, "snapshot is corrupt: %s", why_);                \
        return SPOKE_ERR_PARSE;                                               \
    } while (0)
#define NOMEM()                                                               \
    do {                                                                      \
        snprintf(err, errsz, "out of memory restoring the snapshot");         \
        return SPOKE_ERR_NOMEM;                                               \
    } while (0)
    uint32_t n = get_u32(r);
    if (n != st->nfields)
        CORRUPT("%u fields, the configuration reads %zu", n, st->nfields);
    for (size_t f = 0; f < st->nfields; f++) {
        uint32_t len;
        const uint8_t *name = get_str(r, &len);
        uint8_t t = get_u8(r);
        if (r->bad)
            CORRUPT("truncated field table");
        if (len != strlen(st->fields[f].name) || memcmp(name, st->fields[f].name, len) != 0)
            CORRUPT("field %zu is not '%s'", f, st->fields[f].name);
        if (t > SPOKE_TYPE_MAP || (t != SPOKE_TYPE_NULL && !(st->fields[f].allowed & AGG_T(t))))
            CORRUPT("field '%s' has type %u", st->fields[f].name, t);
        st->fields[f].type = t;
    }
    st->type_epoch++;
    st->seq = get_u64(r);
    st->has_max_t = get_u8(r);
    st->max_t = get_i64(r);
    st->close_bound = get_i64(r);
    if (st->has_max_t > 1 || (st->has_max_t && (st->max_t > ((int64_t)1 << 53) ||
                                                st->max_t < -((int64_t)1 << 53))))
        CORRUPT("bad highest event time");

    uint32_t nw = get_u32(r);
    if (r->bad)
        CORRUPT("truncated before the windows");
    int64_t prev_start = 0;
    struct agg_val keys[AGG_MAX_KEY_FIELDS];
    for (uint32_t wi = 0; wi < nw; wi++) {
        int64_t start = get_i64(r);
        uint32_t ng = get_u32(r);
        if (r->bad)
            CORRUPT("truncated window %u", wi);
        if (st->window == AGG_WIN_NONE ? (start != 0 || nw != 1)
                                       : (agg_floor_div(start, st->advance_ms) * st->advance_ms !=
                                              start || (wi > 0 && start <= prev_start) ||
                                          start > ((int64_t)1 << 54) ||
                                          start < -((int64_t)1 << 54)))
            CORRUPT("window start %lld does not fit the window configuration", (long long)start);
        prev_start = start;
        struct agg_window *w = agg_window_get(st, start, 1);
        if (!w)
            NOMEM();
        for (uint32_t gi = 0; gi < ng; gi++) {
            uint32_t klen;
            const uint8_t *key = get_str(r, &klen);
            if (r->bad)
                CORRUPT("truncated group");
            if (agg_key_decode(st, key, klen, st->gfields, st->ngf, keys) < 0)
                CORRUPT("group key %u of window %lld does not decode", gi, (long long)start);
            uint64_t h = agg_key_hash(key, klen, start);
            if (agg_table_find(&st->groups, h, start, key, klen))
                CORRUPT("group key %u of window %lld appears twice", gi, (long long)start);
            struct agg_group *g = agg_group_new(st, w, h, key, klen);
            if (!g)
                NOMEM();
            uint8_t dirty = get_u8(r);
            g->has_ts = get_u8(r);
            g->ts = get_i64(r);
            g->nrec = get_i64(r);
            if (r->bad || dirty > 1 || g->has_ts > 1 || g->nrec < 0)
                CORRUPT("bad group header");
            if (dirty)
                agg_mark_dirty(st, g);
            for (size_t a = 0; a < st->naggs; a++) {
                int rc = get_cell(st, r, version, &st->aggs[a], &g->cells[a]);
                if (rc == -2)
                    NOMEM();
                if (rc < 0 || r->bad)
                    CORRUPT("bad cell '%s' of group '%s'", st->aggs[a].name, g->text);
            }
            if (st->semantics != AGG_TABLE)
                continue;
            uint32_t ne = get_u32(r);
            if (r->bad || ne != (uint64_t)g->nrec)
                CORRUPT("group '%s' counts %lld entities but holds %u", g->text,
                        (long long)g->nrec, ne);
            for (uint32_t ei = 0; ei < ne; ei++) {
                uint32_t eklen;
                const uint8_t *ek = get_str(r, &eklen);
                if (r->bad || agg_key_decode(st, ek, eklen, st->efields, st->nef, keys) < 0)
                    CORRUPT("entity key %u of group '%s' does not decode", ei, g->text);
                uint64_t eh = agg_key_hash(ek, eklen, start);
                if (agg_table_find(&st->entities, eh, start, ek, eklen))
                    CORRUPT("an entity of group '%s' appears twice", g->text);
                struct agg_entity *e = agg_entity_new(st, start, eh, ek, eklen);
                if (!e)
                    NOMEM();
                e->t = get_i64(r);
                e->seq = get_u64(r);
                /* Linked first, so that freeing the group frees the entity;
                 * appended, so that the order is the one saved. */
                agg_entity_append(g, e);
                for (size_t s = 0; s < st->nvals; s++) {
                    struct agg_val v;
                    if (get_val(r, &v) < 0 || r->bad || !val_fits(st, st->vfield[s], &v))
                        CORRUPT("bad value of an entity of group '%s'", g->text);
                    if (agg_val_store(st, &e->vals[s], &v) < 0)
                        NOMEM();
                }
                if (st->nmsets) {
                    for (size_t m = 0; m < st->nmsets; m++) {
                        struct agg_mset *ms = &g->msets[m];
                        if (ms->n == ms->cap) {
                            size_t cap = ms->cap ? ms->cap * 2 : 4;
                            struct agg_mset_item *ni = realloc(ms->items, cap * sizeof(*ni));
                            if (!ni)
                                NOMEM();
                            st->bytes += (int64_t)((cap - ms->cap) * sizeof(*ni));
                            ms->items = ni;
                            ms->cap = cap;
                        }
                    }
                    agg_msets_add(st, g, e->vals, 1);
                }
            }
        }
    }
    if (r->off != r->len)
        CORRUPT("%zu unexpected bytes after the state", r->len - r->off);
    return SPOKE_OK;
#undef CORRUPT
#undef NOMEM
}

int agg_restore(void *vst, const void *data, size_t len, char *err, size_t errsz)
{
    struct agg_state *st = vst;
    const uint8_t *p = data;
    if (len < 8 + 4 + 8 || memcmp(p, SNAP_MAGIC, 8) != 0) {
        snprintf(err, errsz, "snapshot is not an aggregator snapshot (bad magic or %zu bytes)",
                 len);
        return SPOKE_ERR_PARSE;
    }
    struct rbuf r = { p, len - 8, 8, 0 };
    uint32_t version = get_u32(&r);
    if (version < 1 || version > SNAP_VERSION) {
        snprintf(err, errsz, "snapshot format version %u is not supported (this aggregator "
                 "reads versions 1 to %u)", version, SNAP_VERSION);
        return SPOKE_ERR_PARSE;
    }
    uint64_t sum = 0;
    for (int i = 0; i < 8; i++)
        sum |= (uint64_t)p[len - 8 + (size_t)i] << (8 * i);
    if (sum != agg_hash(p, len - 8, SNAP_SEED)) {
        snprintf(err, errsz, "snapshot is corrupt (checksum mismatch over %zu bytes)", len);
        return SPOKE_ERR_PARSE;
    }
    uint32_t clen;
    const uint8_t *canon = get_str(&r, &clen);
    if (r.bad) {
        snprintf(err, errsz, "snapshot is corrupt: truncated header");
        return SPOKE_ERR_PARSE;
    }
    if (clen != strlen(st->canon) || memcmp(canon, st->canon, clen) != 0) {
        config_differs(st, (const char *)canon, clen, err, errsz);
        return SPOKE_ERR_INVALID;
    }
    /* Restore into an empty state (init made one). */
    reset(st);
    int rc = restore_body(st, &r, version, err, errsz);
    if (rc != SPOKE_OK) {
        reset(st);
        return rc;
    }
    /* Rows emitted just before a crash may not have reached the sinks, and
     * the host skips the replayed records that would have changed them
     * again: update mode emits every group once at its next emission. */
    st->reemit_all = st->emit == AGG_EMIT_UPDATE;
    st->api->log(st->inst, SPOKE_LOG_INFO, "restored %zu groups, %zu entities, %zu windows",
                 st->ngroups, st->nentities, st->window == AGG_WIN_NONE ? (size_t)0 : st->nwins);
    return SPOKE_OK;
}
