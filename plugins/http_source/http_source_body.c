/*
 * http_source_body - a response body -> records.
 *
 * format json: the body is one JSON document; ndjson: every non-blank line
 * is one. Each document is parsed by simdjson (lib/sjson), which validates
 * all of it (syntax, UTF-8, depth) before a value is read. A document is
 * one record, or, with records.path, each element of the array at that
 * path is. Then each record's key and timestamp are read by their paths.
 *
 * All or nothing: a body with one bad line, one record without its key or
 * timestamp, or no array at records.path yields no record at all, so the
 * caller never emits part of a response.
 *
 * Record values are the document's own bytes when a record is a whole
 * document (a copy of exactly what the server sent, surrounding blanks
 * aside), or an element re-serialized compactly by simdjson.
 *
 * Streams (mode stream): hs_lines cuts an endless body into lines as its
 * pieces arrive, in a buffer that never grows past max.line.bytes, and
 * hs_line_parse turns one line into records the same way, all or nothing
 * per line.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spoke/plugin.h>

#include "http_source.h"
#include "sjson.h"

#define HS_MAX_DEPTH 128
/* Latest timestamp accepted: 9999-12-31T23:59:59.999Z. */
#define HS_MAX_TS_MS 253402300799999.0

/* ------------------------------------------------------------------------ */
/* Paths                                                                     */
/* ------------------------------------------------------------------------ */

struct hs_seg {
    const char *name;   /* into text; NULL for an index */
    size_t len;
    size_t index;
};

struct hs_path {
    char *text;         /* the path as configured, for messages */
    size_t n;
    struct hs_seg segs[];
};

void hs_path_free(struct hs_path *p)
{
    if (!p)
        return;
    free(p->text);
    free(p);
}

struct hs_path *hs_path_new(const char *key, const char *text, char *errstr,
                            size_t errstr_size)
{
    size_t cap = 1;
    if (*text == '.')
        text++;
    for (const char *c = text; *c; c++)
        cap += *c == '.' || *c == '[';
    struct hs_path *p = calloc(1, sizeof(*p) + cap * sizeof(p->segs[0]));
    if (!p || !(p->text = strdup(text))) {
        free(p);
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    const char *s = p->text, *c = s;
    if (!*c)
        goto bad;
    while (*c) {
        struct hs_seg *g = &p->segs[p->n++];
        if (*c == '[') {
            char *end;
            if (c[1] < '0' || c[1] > '9')
                goto bad;
            unsigned long long v = strtoull(c + 1, &end, 10);
            if (*end != ']' || v > 1000000000ull)
                goto bad;
            g->index = (size_t)v;
            c = end + 1;
        } else {
            const char *b = c;
            while (*c && *c != '.' && *c != '[' && *c != ']')
                c++;
            if (c == b || *c == ']')
                goto bad;
            g->name = b;
            g->len = (size_t)(c - b);
        }
        /* After a segment: the end, an index, or '.' and a name. */
        if (*c == '.') {
            c++;
            if (!*c || *c == '.' || *c == '[')
                goto bad;
        } else if (*c && *c != '[') {
            goto bad;
        }
    }
    return p;
bad:
    snprintf(errstr, errstr_size, "%s '%.100s' is not a path: names separated by '.', array "
             "elements as [n], e.g. main.temp or list[0].name (error at byte %zu)", key, s,
             (size_t)(c - s));
    hs_path_free(p);
    return NULL;
}

/* The array element at index, by iteration (sjson has no random access). */
static int array_at(const struct sj_value *arr, size_t index, struct sj_value *out)
{
    struct sj_iter it;
    if (sj_type(arr) != SJ_ARRAY || index >= sj_count(arr) || sj_array_iter(arr, &it) != 0)
        return -1;
    for (size_t i = 0; sj_array_next(&it, out); i++)
        if (i == index)
            return 0;
    return -1;
}

/* The value at p under root: 0, or -1 when a step is missing. */
static int walk(const struct hs_path *p, const struct sj_value *root, struct sj_value *out)
{
    struct sj_value cur = *root, next;
    for (size_t i = 0; i < p->n; i++) {
        const struct hs_seg *g = &p->segs[i];
        int rc = g->name ? sj_object_get(&cur, g->name, g->len, &next)
                         : array_at(&cur, g->index, &next);
        if (rc != 0)
            return -1;
        cur = next;
    }
    *out = cur;
    return 0;
}

static const char *const type_names[] = {
    [SJ_NULL] = "null",
    [SJ_BOOL] = "a boolean",
    [SJ_INT] = "an integer",
    [SJ_UINT] = "an integer above 2^63",
    [SJ_DOUBLE] = "a fractional number",
    [SJ_STRING] = "a string",
    [SJ_ARRAY] = "an array",
    [SJ_OBJECT] = "an object",
};

static const char *type_of(const struct sj_value *v)
{
    return type_names[sj_type(v)];
}

/* ------------------------------------------------------------------------ */
/* Batches                                                                   */
/* ------------------------------------------------------------------------ */

void hs_batch_free(struct hs_batch *b)
{
    free(b->recs);
    free(b->arena);
    memset(b, 0, sizeof(*b));
}

static struct hs_rec *batch_add(struct hs_batch *b)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        struct hs_rec *r = realloc(b->recs, cap * sizeof(*r));
        if (!r)
            return NULL;
        b->recs = r;
        b->cap = cap;
    }
    struct hs_rec *r = &b->recs[b->n++];
    memset(r, 0, sizeof(*r));
    return r;
}

static int arena_reserve(struct hs_batch *b, size_t n)
{
    if (n <= b->acap - b->alen)
        return 0;
    size_t cap = b->acap ? b->acap : 4096;
    while (cap - b->alen < n)
        cap *= 2;
    char *a = realloc(b->arena, cap);
    if (!a)
        return -1;
    b->arena = a;
    b->acap = cap;
    return 0;
}

static int arena_put(struct hs_batch *b, const char *s, size_t n, size_t *off)
{
    if (arena_reserve(b, n) != 0)
        return -1;
    memcpy(b->arena + b->alen, s, n);
    *off = b->alen;
    b->alen += n;
    return 0;
}

/* v as compact JSON text, appended to the arena. */
static int arena_json(struct hs_batch *b, const struct sj_value *v, size_t *off, size_t *len)
{
    size_t need = sj_to_json(v, b->arena + b->alen, b->acap - b->alen);
    if (need > b->acap - b->alen) {
        if (arena_reserve(b, need) != 0)
            return -1;
        sj_to_json(v, b->arena + b->alen, need);
    }
    *off = b->alen;
    *len = need;
    b->alen += need;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Bodies                                                                    */
/* ------------------------------------------------------------------------ */

struct hs_body {
    struct hs_body_opts o;
    struct sj_parser *parser;
};

struct hs_body *hs_body_new(const struct hs_body_opts *o, size_t max_bytes)
{
    struct hs_body *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->o = *o;
    if (!(b->parser = sj_parser_new(max_bytes, HS_MAX_DEPTH))) {
        free(b);
        return NULL;
    }
    return b;
}

void hs_body_free(struct hs_body *b)
{
    if (!b)
        return;
    sj_parser_free(b->parser);
    free(b);
}

/* What a parse is working on, for messages and numbering. */
struct ctx {
    struct hs_body *b;
    struct hs_batch *out;
    const char *item;
    size_t line;        /* ndjson: the line's number (1-based), else 0 */
    char *why;
    size_t whysize;
};

#define FAIL(c, ...) do { say(c, __VA_ARGS__); return -1; } while (0)

static void say(struct ctx *c, const char *fmt, ...) SPOKE_PRINTF(2, 3);

static void say(struct ctx *c, const char *fmt, ...)
{
    size_t k = 0;
    if (c->line)
        k = (size_t)snprintf(c->why, c->whysize, "line %zu: ", c->line);
    if (k >= c->whysize)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why + k, c->whysize - k, fmt, ap);
    va_end(ap);
}

/* The key and timestamp of record #i (value rv) into r. */
static int record_fields(struct ctx *c, const struct sj_value *rv, size_t i, struct hs_rec *r)
{
    const struct hs_body_opts *o = &c->b->o;
    struct sj_value v;

    if (o->key == HS_KEY_ITEM && c->item) {
        if (arena_put(c->out, c->item, strlen(c->item), &r->koff) != 0)
            FAIL(c, "out of memory");
        r->klen = strlen(c->item);
        r->has_key = 1;
    } else if (o->key == HS_KEY_PATH) {
        const char *kp = o->key_path->text;
        if (walk(o->key_path, rv, &v) != 0)
            FAIL(c, "wrong shape: record #%zu has no '%s' (the key)", i, kp);
        enum sj_type t = sj_type(&v);
        int rc;
        if (t == SJ_STRING) {
            const char *s;
            sj_get_string(&v, &s, &r->klen);
            rc = arena_put(c->out, s, r->klen, &r->koff);
        } else if (t == SJ_INT || t == SJ_UINT || t == SJ_DOUBLE || t == SJ_BOOL) {
            rc = arena_json(c->out, &v, &r->koff, &r->klen);
        } else {
            FAIL(c, "wrong shape: record #%zu: '%s' (the key) is %s, expected a string, a "
                 "number or a boolean", i, kp, type_of(&v));
        }
        if (rc != 0)
            FAIL(c, "out of memory");
        r->has_key = 1;
    }

    if (o->ts_path) {
        const char *tp = o->ts_path->text;
        double d;
        if (walk(o->ts_path, rv, &v) != 0)
            FAIL(c, "wrong shape: record #%zu has no '%s' (timestamp.path)", i, tp);
        if (sj_type(&v) == SJ_UINT || sj_get_double(&v, &d) != 0)
            FAIL(c, "wrong shape: record #%zu: '%s' (timestamp.path) is %s, expected epoch %s",
                 i, tp, type_of(&v), o->ts_ms ? "milliseconds" : "seconds");
        if (!o->ts_ms)
            d *= 1000.0;
        if (!(d >= 0 && d <= HS_MAX_TS_MS))
            FAIL(c, "wrong shape: record #%zu: '%s' (timestamp.path) is out of range "
                 "(1970 to 9999)", i, tp);
        r->ts_ms = (int64_t)(d + 0.5);
        if (r->ts_ms > c->out->max_ts_ms)
            c->out->max_ts_ms = r->ts_ms;
    }
    return 0;
}

/* The records of one document (root), whose bytes are body[off..off+len). */
static int doc_records(struct ctx *c, const struct sj_value *root, size_t off, size_t len)
{
    const struct hs_path *rp = c->b->o.records;
    struct hs_rec *r;

    if (!rp) {
        if (!(r = batch_add(c->out)))
            FAIL(c, "out of memory");
        r->vin_body = 1;
        r->voff = off;
        r->vlen = len;
        return record_fields(c, root, c->out->n - 1, r);
    }

    struct sj_value arr, el;
    struct sj_iter it;
    if (walk(rp, root, &arr) != 0)
        FAIL(c, "wrong shape: no '%s' (records.path) in the document", rp->text);
    if (sj_type(&arr) != SJ_ARRAY)
        FAIL(c, "wrong shape: '%s' (records.path) is %s, expected an array", rp->text,
             type_of(&arr));
    sj_array_iter(&arr, &it);
    while (sj_array_next(&it, &el)) {
        if (!(r = batch_add(c->out)) || arena_json(c->out, &el, &r->voff, &r->vlen) != 0)
            FAIL(c, "out of memory");
        if (record_fields(c, &el, c->out->n - 1, r) != 0)
            return -1;
    }
    return 0;
}

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* One document, body[s..e) with blanks already trimmed. */
static int one_doc(struct ctx *c, const char *body, size_t s, size_t e)
{
    struct sj_value root;
    char why[200];
    if (sj_parse(c->b->parser, body + s, e - s, &root, why, sizeof(why)) != 0)
        FAIL(c, "not valid JSON: %s", why);
    return doc_records(c, &root, s, e - s);
}

int hs_body_parse(struct hs_body *b, const char *body, size_t len, const char *item,
                  struct hs_batch *out, char *errstr, size_t errstr_size)
{
    struct ctx c = { .b = b, .out = out, .item = item, .why = errstr,
                     .whysize = errstr_size };
    int rc = 0;

    out->n = 0;
    out->alen = 0;
    out->max_ts_ms = -1;
    if (!body)
        body = "";  /* nothing received: an empty body */
    if (b->o.format == HS_FORMAT_JSON) {
        size_t s = 0, e = len;
        while (s < e && is_blank(body[s]))
            s++;
        while (e > s && is_blank(body[e - 1]))
            e--;
        rc = one_doc(&c, body, s, e);
    } else {
        for (size_t pos = 0; pos < len && rc == 0;) {
            const char *nl = memchr(body + pos, '\n', len - pos);
            size_t end = nl ? (size_t)(nl - body) : len, s = pos, e = end;
            c.line++;
            while (s < e && is_blank(body[s]))
                s++;
            while (e > s && is_blank(body[e - 1]))
                e--;
            if (e > s)
                rc = one_doc(&c, body, s, e);
            pos = end + 1;
        }
    }
    if (rc != 0) {
        out->n = 0;
        out->alen = 0;
    }
    return rc;
}

int hs_line_parse(struct hs_body *b, const char *line, size_t len, const char *item,
                  uint64_t lineno, struct hs_batch *out, char *errstr, size_t errstr_size)
{
    struct ctx c = { .b = b, .out = out, .item = item, .line = (size_t)lineno, .why = errstr,
                     .whysize = errstr_size };
    size_t s = 0, e = len;

    out->n = 0;
    out->alen = 0;
    out->max_ts_ms = -1;
    while (s < e && is_blank(line[s]))
        s++;
    while (e > s && is_blank(line[e - 1]))
        e--;
    if (one_doc(&c, line, s, e) != 0) {
        out->n = 0;
        out->alen = 0;
        return -1;
    }
    return 0;
}

int hs_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_blank(p[i]))
            return 0;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Lines of a stream                                                         */
/* ------------------------------------------------------------------------ */

struct hs_lines {
    char *buf;          /* the start of the line in progress */
    size_t len, cap;    /* cap never above max + 1 (room for a '\r' before '\n') */
    size_t max;         /* max.line.bytes */
    uint64_t lineno;    /* lines begun in this response (the one in progress included) */
    int started;        /* a byte of the line in progress arrived */
    int skipping;       /* the line in progress went over max: dropped up to its '\n' */
};

struct hs_lines *hs_lines_new(size_t max)
{
    struct hs_lines *l = calloc(1, sizeof(*l));
    if (l)
        l->max = max;
    return l;
}

void hs_lines_free(struct hs_lines *l)
{
    if (!l)
        return;
    free(l->buf);
    free(l);
}

/* Room for need bytes in buf (need <= max + 1). */
static int lines_reserve(struct hs_lines *l, size_t need)
{
    if (need <= l->cap)
        return 0;
    size_t cap = l->cap ? l->cap : 4096;
    while (cap < need)
        cap *= 2;
    if (cap > l->max + 1)
        cap = l->max + 1;
    char *nb = realloc(l->buf, cap);
    if (!nb)
        return -1;
    l->buf = nb;
    l->cap = cap;
    return 0;
}

/* Appends p[0..k) to the line in progress (it fits: the caller checked). */
static int lines_append(struct hs_lines *l, const char *p, size_t k)
{
    if (lines_reserve(l, l->len + k) != 0)
        return -1;
    memcpy(l->buf + l->len, p, k);
    l->len += k;
    return 0;
}

/* The line in progress, whose next k bytes are p[0..k), is over max: its
 * first max bytes go to too_long. */
static int lines_over(struct hs_lines *l, const char *p, size_t k, const struct hs_lines_cb *cb,
                      void *ud)
{
    if (l->len < l->max) {
        size_t take = l->max - l->len < k ? l->max - l->len : k;
        if (lines_append(l, p, take) != 0)
            return cb->nomem(ud);
    }
    int rc = cb->too_long(ud, l->buf, l->len < l->max ? l->len : l->max, l->lineno);
    l->len = 0;
    return rc;
}

int hs_lines_feed(struct hs_lines *l, const char *p, size_t n, const struct hs_lines_cb *cb,
                  void *ud)
{
    int rc = 0;
    while (n && rc == 0) {
        const char *nl = memchr(p, '\n', n);
        size_t k = nl ? (size_t)(nl - p) : n;
        if (!l->started) {
            l->started = 1;
            l->lineno++;
        }
        if (l->skipping) {
            if (nl)
                l->skipping = l->started = 0;
        } else if (nl) {
            /* A complete line: what is held, then p[0..k); a '\r' before
             * the '\n' is part of the line ending. */
            size_t total = l->len + k;
            char last = k ? p[k - 1] : l->len ? l->buf[l->len - 1] : '\0';
            size_t eff = total - (last == '\r');
            if (eff > l->max) {
                rc = lines_over(l, p, k, cb, ud);
            } else if (!l->len) {
                rc = cb->line(ud, p, eff, l->lineno);  /* straight from the piece */
            } else if (lines_append(l, p, k) != 0) {
                rc = cb->nomem(ud);
                l->len = 0;
            } else {
                rc = cb->line(ud, l->buf, eff, l->lineno);
                l->len = 0;
            }
            l->started = 0;
        } else {
            /* No end yet: held, unless that makes it longer than max (one
             * byte more is held when it is a '\r', a '\n' may follow). */
            size_t total = l->len + k;
            if (total > l->max + 1 || (total == l->max + 1 && p[k - 1] != '\r')) {
                rc = lines_over(l, p, k, cb, ud);
                l->skipping = 1;
            } else if (lines_append(l, p, k) != 0) {
                rc = cb->nomem(ud);
                l->len = 0;
                l->skipping = 1;
            }
        }
        p += k + (nl != NULL);
        n -= k + (nl != NULL);
    }
    return rc;
}

size_t hs_lines_end(struct hs_lines *l, const char **held, uint64_t *lineno)
{
    size_t n = l->started && !l->skipping ? l->len : 0;
    *held = l->buf;
    *lineno = l->lineno;
    l->len = 0;
    l->lineno = 0;
    l->started = l->skipping = 0;
    return n;
}
