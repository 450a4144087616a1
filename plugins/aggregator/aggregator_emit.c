/*
 * aggregator_emit.c - output rows: the schema (built once, rebuilt only if a
 * column's type changes: a field first seen as INT that later holds a
 * DOUBLE), one row per group, ordering and top-N for complete and final
 * emissions, and window closing.
 *
 * An emission that fails (the host is stopping, or out of memory) leaves
 * the group dirty and the window open, so it is retried at the next
 * emission or, after a restart, from the snapshot.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator.h"

/* ------------------------------------------------------------------------ */
/* Column values                                                             */
/* ------------------------------------------------------------------------ */

static int column_type(const struct agg_state *st, size_t a)
{
    const struct agg_spec *sp = &st->aggs[a];
    int ft = sp->field >= 0 ? st->fields[sp->field].type : SPOKE_TYPE_NULL;
    switch (sp->fn) {
    case AGG_FN_COUNT:
        return SPOKE_TYPE_INT;
    case AGG_FN_SUM:
        return ft == SPOKE_TYPE_DOUBLE ? SPOKE_TYPE_DOUBLE : SPOKE_TYPE_INT;
    case AGG_FN_MIN:
    case AGG_FN_MAX:
        return ft == SPOKE_TYPE_NULL ? SPOKE_TYPE_INT : ft;
    case AGG_FN_FIRST:
    case AGG_FN_LAST:
        return ft == SPOKE_TYPE_NULL ? SPOKE_TYPE_STRING : ft;
    default:
        return SPOKE_TYPE_DOUBLE;
    }
}

/* A sum cell's total: the exact INT sum (isum + ihi * 2^64) plus the
 * compensated DOUBLE sum, in long double, whose 64-bit significand holds
 * any int64 exactly (x86-64; aarch64's is wider), so that the result is
 * rounded to a double once, at the end (2^53 + 1 plus 0.5 gives 2^53 + 2,
 * not 2^53 + 0.5 rounded twice to 2^53). */
static long double sum_total(const struct agg_cell *c)
{
    long double s = (long double)(int64_t)c->u.sum.isum;
    if (c->u.sum.ihi)
        s += (long double)c->u.sum.ihi * 18446744073709551616.0L;  /* 2^64 */
    return s + ((long double)c->u.sum.dsum + (long double)c->u.sum.comp);
}

/* A DOUBLE column's value, null when it is not finite: a DOUBLE sum past
 * +-1.8e308 overflows (and its compensation then turns NaN), and JSON has
 * no infinity; every sink writes the same null. */
static void set_double(struct agg_val *out, double d)
{
    if (isfinite(d)) {
        out->type = SPOKE_TYPE_DOUBLE;
        out->u.d = d;
    }
}

/* The value of aggregate column a for group g. Strings are borrowed from
 * the state (valid until it changes). */
void agg_column_value(const struct agg_state *st, const struct agg_group *g, size_t a,
                      struct agg_val *out)
{
    const struct agg_spec *sp = &st->aggs[a];
    const struct agg_cell *c = &g->cells[a];
    out->type = SPOKE_TYPE_NULL;
    out->u.i = 0;
    switch (sp->fn) {
    case AGG_FN_COUNT:
        out->type = SPOKE_TYPE_INT;
        out->u.i = sp->field < 0 ? g->nrec : c->n;
        return;
    case AGG_FN_SUM:
        if (c->n == 0)
            return;
        if (st->fields[sp->field].type == SPOKE_TYPE_DOUBLE) {
            set_double(out, (double)sum_total(c));
        } else if (c->u.sum.ihi == 0) {
            out->type = SPOKE_TYPE_INT;
            out->u.i = (int64_t)c->u.sum.isum;
        }
        /* else an INT sum beyond int64: null rather than a wrapped value */
        return;
    case AGG_FN_AVG:
        if (c->n == 0)
            return;
        set_double(out, (double)(sum_total(c) / (long double)c->n));
        return;
    case AGG_FN_VARIANCE:
    case AGG_FN_STDDEV:
    case AGG_FN_VAR_POP:
    case AGG_FN_STDDEV_POP: {
        int pop = sp->fn == AGG_FN_VAR_POP || sp->fn == AGG_FN_STDDEV_POP;
        if (c->n < (pop ? 1 : 2))
            return;
        /* m2 = q - s^2/n, the sum of squared deviations, in double-double:
         * q and s^2/n can be close and large (values far from the shift). */
        double n = (double)c->n;
        double sh = c->u.var.s + c->u.var.sc;
        double sl = c->u.var.sc - (sh - c->u.var.s);
        double p = sh * sh, e = fma(sh, sh, -p) + 2.0 * sh * sl;
        double qh = p / n, ql = (fma(-qh, n, p) + e) / n;  /* s^2/n = qh + ql */
        double m2 = (c->u.var.q - qh) + (c->u.var.qc - ql);
        if (m2 < 0)
            m2 = 0;
        m2 /= pop ? n : n - 1;
        set_double(out, sp->fn == AGG_FN_STDDEV || sp->fn == AGG_FN_STDDEV_POP ? sqrt(m2) : m2);
        return;
    }
    case AGG_FN_MIN:
    case AGG_FN_MAX:
        if (st->semantics == AGG_TABLE) {
            const struct agg_mset *ms = &g->msets[sp->mset];
            if (ms->n > 0)
                *out = ms->items[sp->fn == AGG_FN_MIN ? 0 : ms->n - 1].v;
        } else if (c->n > 0) {
            *out = c->u.pick.v;
        }
        return;
    case AGG_FN_FIRST:
    case AGG_FN_LAST:
        if (st->semantics == AGG_TABLE) {
            /* The oldest (first) or newest (last) contribution, in (event
             * time, arrival) order, that has a value for the field. */
            int slot = st->fields[sp->field].vslot;
            const struct agg_entity *e = sp->fn == AGG_FN_FIRST ? g->ehead : g->etail;
            while (e && e->vals[slot].type == SPOKE_TYPE_NULL)
                e = sp->fn == AGG_FN_FIRST ? e->gnext : e->gprev;
            if (e)
                *out = e->vals[slot];
        } else if (c->n > 0) {
            *out = c->u.pick.v;
        }
        return;
    }
}

/* ------------------------------------------------------------------------ */
/* Schema and rows                                                           */
/* ------------------------------------------------------------------------ */

static int build_schema(struct agg_state *st)
{
    const struct spoke_host_api *api = st->api;
    struct spoke_schema *s = api->schema_new();
    int rc = s ? 0 : -1;
    for (size_t i = 0; rc >= 0 && i < st->ngf; i++) {
        const struct agg_field *f = &st->fields[st->gfields[i]];
        rc = api->schema_add(s, f->name, f->type == SPOKE_TYPE_NULL ? SPOKE_TYPE_STRING
                                                                    : (enum spoke_type)f->type);
    }
    if (rc >= 0 && st->window != AGG_WIN_NONE) {
        rc = api->schema_add(s, "window_start", SPOKE_TYPE_TIMESTAMP);
        if (rc >= 0)
            rc = api->schema_add(s, "window_end", SPOKE_TYPE_TIMESTAMP);
    }
    for (size_t a = 0; rc >= 0 && a < st->naggs; a++)
        rc = api->schema_add(s, st->aggs[a].name, (enum spoke_type)column_type(st, a));
    if (rc >= 0)
        rc = api->schema_add(s, "timestamp", SPOKE_TYPE_TIMESTAMP);
    if (rc < 0) {
        api->schema_unref(s);
        return -1;
    }
    api->schema_unref(st->out_schema);
    st->out_schema = s;
    st->schema_epoch = st->type_epoch;
    return 0;
}

static int set_value(const struct spoke_host_api *api, struct spoke_row *row, size_t i,
                     int coltype, const struct agg_val *v)
{
    switch (v->type) {
    case SPOKE_TYPE_NULL:
        return api->row_set_null(row, i);
    case SPOKE_TYPE_STRING:
        return api->row_set_string(row, i, v->u.s.p, v->u.s.len);
    case SPOKE_TYPE_BOOL:
        return api->row_set_bool(row, i, (int)v->u.i);
    case SPOKE_TYPE_TIMESTAMP:
        return api->row_set_timestamp(row, i, v->u.i);
    case SPOKE_TYPE_DOUBLE:
        return api->row_set_double(row, i, v->u.d);
    default:
        if (coltype == SPOKE_TYPE_DOUBLE)
            return api->row_set_double(row, i, (double)v->u.i);
        return api->row_set_int(row, i, v->u.i);
    }
}

/* The time a row reflects: with event time, the highest event time applied
 * to the group; with processing time, when the row is emitted. */
static int64_t row_time(const struct agg_state *st, const struct agg_group *g, int *has)
{
    if (st->time == AGG_TIME_EVENT) {
        *has = g->has_ts;
        return g->ts;
    }
    *has = 1;
    return st->now_ms;
}

static struct spoke_row *build_row(struct agg_state *st, const struct agg_group *g)
{
    const struct spoke_host_api *api = st->api;
    if ((!st->out_schema || st->schema_epoch != st->type_epoch) && build_schema(st) < 0)
        return NULL;
    struct spoke_row *row = api->row_new(st->out_schema);
    if (!row)
        return NULL;
    struct agg_val keys[AGG_MAX_KEY_FIELDS];
    int rc = agg_key_decode(st, g->node.key, g->node.klen, st->gfields, st->ngf, keys);
    size_t col = 0;
    for (size_t i = 0; rc >= 0 && i < st->ngf; i++, col++)
        rc = set_value(api, row, col, keys[i].type, &keys[i]);
    if (rc >= 0 && st->window != AGG_WIN_NONE) {
        rc = api->row_set_timestamp(row, col++, g->win->start);
        if (rc >= 0)
            rc = api->row_set_timestamp(row, col++, g->win->end);
    }
    for (size_t a = 0; rc >= 0 && a < st->naggs; a++, col++) {
        struct agg_val v;
        agg_column_value(st, g, a, &v);
        rc = set_value(api, row, col, column_type(st, a), &v);
    }
    if (rc >= 0) {
        int has;
        int64_t ts = row_time(st, g, &has);
        rc = has ? api->row_set_timestamp(row, col, ts) : api->row_set_null(row, col);
    }
    if (rc < 0) {
        api->log(st->inst, SPOKE_LOG_ERROR, "cannot build the row of group '%s': %s", g->text,
                 api->strerror(rc));
        api->row_free(row);
        return NULL;
    }
    return row;
}

/* Emits one group's row. Returns SPOKE_OK, SPOKE_ERR_STOPPED (the host is
 * stopping: try later) or another error (logged, counted). */
static int emit_group(struct agg_state *st, struct agg_group *g)
{
    const struct spoke_host_api *api = st->api;
    struct spoke_record *rec = api->record_new(st->inst, NULL, g->text, g->tlen, NULL, 0);
    if (!rec) {
        st->m.emit_failed++;
        return SPOKE_ERR_NOMEM;
    }
    if (st->now_pending) {
        /* A new record's timestamp is the wall clock now: the emission's
         * time without a second clock read per row. */
        st->now_ms = api->record_timestamp(rec);
        st->now_pending = 0;
    }
    struct spoke_row *row = build_row(st, g);
    if (!row) {
        api->record_free(rec);
        st->m.emit_failed++;
        return SPOKE_ERR_NOMEM;
    }
    int rc = api->record_set_row(rec, row);
    if (rc != SPOKE_OK) {
        api->record_free(rec);
        st->m.emit_failed++;
        return rc;
    }
    int has;
    int64_t ts = row_time(st, g, &has);
    if (has)
        api->record_set_timestamp(rec, ts);
    rc = api->emit(st->inst, rec);
    if (rc == SPOKE_OK) {
        st->m.rows_emitted++;
    } else if (rc != SPOKE_ERR_STOPPED) {
        st->m.emit_failed++;
        api->log(st->inst, SPOKE_LOG_ERROR, "cannot emit the row of group '%s': %s", g->text,
                 api->strerror(rc));
    }
    return rc;
}

/* With processing time, an emission's rows carry the wall clock at the
 * emission: read when its first record is made (emit_group). */
static void refresh_now(struct agg_state *st)
{
    if (st->time == AGG_TIME_PROCESSING)
        st->now_pending = 1;
}

/* Emits the dirty groups (of one window, or all). A table group that lost
 * its last entity is emitted once more (count 0, other columns null) and
 * then forgotten. */
int agg_emit_dirty(struct agg_state *st, struct agg_window *only)
{
    if (st->reemit_all && !only) {
        for (size_t i = 0; i < st->nwins; i++)
            for (struct agg_group *g = st->wins[i]->ghead; g; g = g->wnext)
                agg_mark_dirty(st, g);
        st->reemit_all = 0;
    }
    if (!st->dhead)
        return SPOKE_OK;
    refresh_now(st);
    struct agg_group *g = st->dhead, *next;
    for (; g; g = next) {
        next = g->dnext;
        if (only && g->win != only)
            continue;
        int rc = emit_group(st, g);
        if (rc != SPOKE_OK)
            return rc;
        agg_clear_dirty(st, g);
        if (g->nrec == 0)
            agg_group_free(st, g);
    }
    return SPOKE_OK;
}

/* ------------------------------------------------------------------------ */
/* Ordering and top-N                                                        */
/* ------------------------------------------------------------------------ */

struct sort_item {
    struct agg_val v;
    struct agg_group *g;
};

static int text_cmp(const struct agg_group *a, const struct agg_group *b)
{
    uint32_t n = a->tlen < b->tlen ? a->tlen : b->tlen;
    int c = memcmp(a->text, b->text, n);
    if (c)
        return c;
    return (a->tlen > b->tlen) - (a->tlen < b->tlen);
}

/* top.by order (nulls last), then group key text ascending. */
static int item_cmp(const struct agg_state *st, const struct sort_item *a,
                    const struct sort_item *b)
{
    if (st->top_col >= 0) {
        int an = a->v.type == SPOKE_TYPE_NULL, bn = b->v.type == SPOKE_TYPE_NULL;
        if (an != bn)
            return an - bn;
        if (!an) {
            int c = agg_val_cmp(&a->v, &b->v);
            if (c)
                return st->top_desc ? -c : c;
        }
    }
    return text_cmp(a->g, b->g);
}

/* Stable merge sort with a context (qsort has none). */
static void merge_sort(const struct agg_state *st, struct sort_item *v, struct sort_item *tmp,
                       size_t n)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    merge_sort(st, v, tmp, h);
    merge_sort(st, v + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = item_cmp(st, &v[j], &v[i]) < 0 ? v[j++] : v[i++];
    while (i < h)
        tmp[k++] = v[i++];
    while (j < n)
        tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof(*v));
}

/* Emits a window's groups in order (top.by, else key), at most top.n of
 * them, and marks them all clean. */
static int emit_table(struct agg_state *st, struct agg_window *w)
{
    if (w->ngroups == 0)
        return SPOKE_OK;
    size_t need = 2 * w->ngroups;
    if (st->sortcap < need) {
        void *nb = realloc(st->sortbuf, need * sizeof(struct sort_item));
        if (!nb) {
            st->m.emit_failed++;
            return SPOKE_ERR_NOMEM;
        }
        st->bytes += (int64_t)((need - st->sortcap) * sizeof(struct sort_item));
        st->sortbuf = nb;
        st->sortcap = need;
    }
    struct sort_item *items = (struct sort_item *)st->sortbuf, *tmp = items + w->ngroups;
    size_t n = 0;
    for (struct agg_group *g = w->ghead; g; g = g->wnext) {
        if (g->nrec == 0)
            continue;
        items[n].g = g;
        if (st->top_col >= 0)
            agg_column_value(st, g, (size_t)st->top_col, &items[n].v);
        else
            items[n].v.type = SPOKE_TYPE_NULL;
        n++;
    }
    merge_sort(st, items, tmp, n);
    if (st->top_n > 0 && (size_t)st->top_n < n)
        n = (size_t)st->top_n;
    refresh_now(st);
    for (size_t i = 0; i < n; i++) {
        int rc = emit_group(st, items[i].g);
        if (rc != SPOKE_OK)
            return rc;
    }
    for (struct agg_group *g = w->ghead; g; g = g->wnext)
        agg_clear_dirty(st, g);
    return SPOKE_OK;
}

int agg_emit_complete(struct agg_state *st)
{
    for (size_t i = 0; i < st->nwins; i++) {
        int rc = emit_table(st, st->wins[i]);
        if (rc != SPOKE_OK)
            return rc;
    }
    return SPOKE_OK;
}

/* Closes every window whose end is at or before close_bound, oldest first:
 * final emits its groups; update emits what changed since the last
 * emission; complete emits the window's table once more if anything
 * changed since it was last emitted. A window whose rows cannot all be
 * emitted stays open and is retried. */
int agg_close_windows(struct agg_state *st)
{
    while (st->nwins > 0 && st->wins[0]->end <= st->close_bound) {
        struct agg_window *w = st->wins[0];
        int rc = SPOKE_OK;
        if (st->emit == AGG_EMIT_FINAL) {
            rc = emit_table(st, w);
        } else if (st->emit == AGG_EMIT_UPDATE) {
            rc = agg_emit_dirty(st, w);
        } else {
            int dirty = 0;
            for (struct agg_group *g = w->ghead; g && !dirty; g = g->wnext)
                dirty = g->dirty;
            if (dirty)
                rc = emit_table(st, w);
        }
        if (rc != SPOKE_OK)
            return rc;
        agg_window_close(st, w);
        st->m.windows_closed++;
    }
    return SPOKE_OK;
}

/* ------------------------------------------------------------------------ */
/* Metrics                                                                   */
/* ------------------------------------------------------------------------ */

void agg_publish_metrics(struct agg_state *st)
{
    const struct spoke_host_api *api = st->api;
    api->metric_set(st->inst, "state_groups", (int64_t)st->ngroups);
    api->metric_set(st->inst, "state_entities", (int64_t)st->nentities);
    api->metric_set(st->inst, "state_bytes", st->bytes);
    api->metric_set(st->inst, "state_windows",
                    st->window == AGG_WIN_NONE ? 0 : (int64_t)st->nwins);
    if (st->time == AGG_TIME_EVENT && st->has_max_t)
        api->metric_set(st->inst, "watermark_ms",
                        st->window == AGG_WIN_NONE ? st->max_t : st->max_t - st->lateness_ms);
#define PUB(field, name)                                                 \
    do {                                                                 \
        if (st->m.field != st->m_pub.field || !st->m_published) {        \
            api->metric_add(st->inst, name, st->m.field - st->m_pub.field); \
            st->m_pub.field = st->m.field;                               \
        }                                                                \
    } while (0)
    PUB(invalid, "records_invalid");
    PUB(late_dropped, "late_dropped");
    PUB(stale_ignored, "stale_ignored");
    PUB(groups_refused, "groups_refused");
    PUB(entities_refused, "entities_refused");
    PUB(rows_emitted, "rows_emitted");
    PUB(windows_closed, "windows_closed");
    PUB(emit_failed, "emit_failed");
    PUB(tombstones_applied, "tombstones_applied");
    PUB(tombstones_unknown, "tombstones_unknown");
    PUB(tombstones_ignored, "tombstones_ignored");
#undef PUB
    st->m_published = 1;
}
