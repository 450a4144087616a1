/*
 * schema_mapper_walk.c - extraction from values that are already parsed
 * (a row handed over by an upstream plugin, or a simdjson DOM when
 * json.parser is simdjson), and from CSV lines.
 *
 * The walk follows the same trie as the streaming extractor and keeps its
 * rules: the first of duplicate keys wins, [?k] takes the first element
 * object that has k, wildcards collect in document order, null stops a
 * path (the field is null), and a value of the wrong container kind on a
 * path is a structure mismatch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_mapper.h"

void sm_mismatch(struct sm_mapper *m, const struct sm_node *node, uint8_t got)
{
    if (!m->bad_node) {
        m->bad_node = node;
        m->bad_got = got;
        m->nbad_more = 0;
        m->bad_over = 0;
        return;
    }
    if (node == m->bad_node)
        return;
    for (size_t k = 0; k < m->nbad_more; k++)
        if (m->bad_more[k] == node)
            return;
    if (m->nbad_more < SM_BAD_MORE)
        m->bad_more[m->nbad_more++] = node;
    else
        m->bad_over = 1;
}

void sm_capture(struct sm_mapper *m, const struct sm_node *node, const struct sm_src *v)
{
    for (size_t i = 0; i < node->nslots; i++) {
        int s = node->slots[i];
        if (m->slot_multi[s]) {
            struct sm_srcvec *vec = &m->mcap[s];
            if (vec->n == vec->cap) {
                size_t cap = vec->cap ? vec->cap * 2 : 16;
                struct sm_src *nv = realloc(vec->v, cap * sizeof(*nv));
                if (!nv) {
                    /* Reported by the caller as out of memory: the list is
                     * marked incomplete with a count past the capacity. */
                    vec->present = -1;
                    continue;
                }
                vec->v = nv;
                vec->cap = cap;
            }
            vec->v[vec->n++] = *v;
        } else if (m->cap[s].k == SM_SK_MISSING) {
            m->cap[s] = *v;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Rows and simdjson DOMs                                                    */
/* ------------------------------------------------------------------------ */

/* A row value as the walk reads it. */
static inline __attribute__((always_inline)) void view_src(const struct spoke_value *x,
                                                           struct sm_src *v)
{
    switch (x->type) {
    case SPOKE_TYPE_BOOL:
        v->k = SM_SK_BOOL;
        v->u.b = x->u.b;
        break;
    case SPOKE_TYPE_INT:
        v->k = SM_SK_INT;
        v->u.i = x->u.i;
        break;
    case SPOKE_TYPE_DOUBLE:
        v->k = SM_SK_DOUBLE;
        v->u.d = x->u.d;
        break;
    case SPOKE_TYPE_STRING:
        v->k = SM_SK_STR;
        v->u.s.p = x->u.s.p;
        v->u.s.n = x->u.s.len;
        break;
    case SPOKE_TYPE_TIMESTAMP:
        v->k = SM_SK_TS;
        v->u.i = x->u.i;
        break;
    case SPOKE_TYPE_LIST:
        v->k = SM_SK_ARRAY;
        v->bk = SM_BK_ROW;
        v->u.row = x->u.row;
        break;
    case SPOKE_TYPE_MAP:
        v->k = SM_SK_OBJECT;
        v->bk = SM_BK_ROW;
        v->u.row = x->u.row;
        break;
    default:
        v->k = SM_SK_NULL;
        break;
    }
}

/* The same through the getters, for a host without row_values. */
static void row_src(const struct spoke_host_api *api, const struct spoke_row *row, size_t i,
                    struct sm_src *v)
{
    struct spoke_value x = { .type = (uint8_t)api->row_type(row, i) };
    switch (x.type) {
    case SPOKE_TYPE_BOOL:
        x.u.b = api->row_get_bool(row, i);
        break;
    case SPOKE_TYPE_INT:
        x.u.i = api->row_get_int(row, i);
        break;
    case SPOKE_TYPE_DOUBLE:
        x.u.d = api->row_get_double(row, i);
        break;
    case SPOKE_TYPE_STRING:
        x.u.s.p = api->row_get_string(row, i, &x.u.s.len);
        break;
    case SPOKE_TYPE_TIMESTAMP:
        x.u.i = api->row_get_timestamp(row, i);
        break;
    case SPOKE_TYPE_LIST:
    case SPOKE_TYPE_MAP:
        x.u.row = api->row_get_row(row, i);
        break;
    }
    view_src(&x, v);
}

/* The values of row when the host lends them (row_values), else NULL: the
 * caller then reads field by field. */
static inline const struct spoke_value *row_view(const struct spoke_host_api *api,
                                                 const struct spoke_row *row, size_t *n)
{
    *n = 0;
    if (!SPOKE_API_HAS(api, row_values) || !api->row_values)
        return NULL;
    return api->row_values(row, n);
}

/* A DOM value as the walk reads it; a double sets *lost (its text is not
 * in the DOM: see sm_map_bytes). */
static inline __attribute__((always_inline)) void sj_src(const struct sj_value *jv,
                                                         struct sm_src *v, unsigned *lost)
{
    switch (sj_type(jv)) {
    case SJ_NULL:
        v->k = SM_SK_NULL;
        break;
    case SJ_BOOL:
        v->k = SM_SK_BOOL;
        sj_get_bool(jv, &v->u.b);
        break;
    case SJ_INT:
        v->k = SM_SK_INT;
        sj_get_int64(jv, &v->u.i);
        break;
    case SJ_UINT:
        v->k = SM_SK_UINT;
        sj_get_uint64(jv, &v->u.u);
        break;
    case SJ_DOUBLE:
        v->k = SM_SK_DOUBLE;
        sj_get_double(jv, &v->u.d);
        *lost = 1;
        break;
    case SJ_STRING:
        v->k = SM_SK_STR;
        sj_get_string(jv, &v->u.s.p, &v->u.s.n);
        break;
    case SJ_ARRAY:
        v->k = SM_SK_ARRAY;
        v->bk = SM_BK_SJ;
        v->u.sj = *jv;
        break;
    case SJ_OBJECT:
        v->k = SM_SK_OBJECT;
        v->bk = SM_BK_SJ;
        v->u.sj = *jv;
        break;
    }
}

/* ---- simdjson DOMs ---- */

static void walk_sj(struct sm_mapper *m, struct sm_node *node, const struct sm_src *v)
{
    if (node->nslots)
        sm_capture(m, node, v);
    if (!node->want || v->k == SM_SK_NULL)
        return;
    if (node->want & SM_WANT_OBJECT) {
        if (v->k != SM_SK_OBJECT) {
            sm_mismatch(m, node, v->k);
            return;
        }
        for (size_t e = 0; e < node->nedges; e++) {
            struct sj_value c;
            struct sm_src cv;
            const struct sm_edge *ed = &node->edges[e];
            if (sj_object_get(&v->u.sj, ed->key, ed->klen, &c) == 0) {
                sj_src(&c, &cv, &m->sj_lost);
                walk_sj(m, ed->child, &cv);
            }
        }
        return;
    }
    if (v->k != SM_SK_ARRAY) {
        sm_mismatch(m, node, v->k);
        return;
    }
    for (size_t k = 0; k < node->npresent; k++)
        m->mcap[node->present[k]].present = 1;
    uint64_t inst = ++m->next_id;
    struct sj_iter it;
    struct sj_value ej;
    struct sm_src e;
    sj_array_iter(&v->u.sj, &it);
    for (int64_t idx = 0; sj_array_next(&it, &ej); idx++) {
        sj_src(&ej, &e, &m->sj_lost);
        for (size_t k = 0; k < node->nidx; k++)
            if (node->idx[k].i == idx)
                walk_sj(m, node->idx[k].child, &e);
        if (node->wild)
            walk_sj(m, node->wild, &e);
        if (!node->sel)
            continue;
        if (e.k == SM_SK_OBJECT) {
            for (size_t s = 0; s < node->sel->nedges; s++) {
                const struct sm_edge *se = &node->sel->edges[s];
                struct sj_value c;
                struct sm_src cv;
                if (se->child->mark != inst &&
                    sj_object_get(&e.u.sj, se->key, se->klen, &c) == 0) {
                    sj_src(&c, &cv, &m->sj_lost);
                    se->child->mark = inst;
                    walk_sj(m, se->child, &cv);
                }
            }
        } else if (e.k != SM_SK_NULL) {
            sm_mismatch(m, node->sel, e.k);
        }
    }
}

/* ---- rows ---- */

/* Fills a plan entry of nd for schema sc (see struct sm_rplan): the first
 * empty entry, else the one rnext names, whose schema is released. NULL on
 * out-of-memory (the caller then resolves the names one by one). */
static const struct sm_rop *rplan_fill(struct sm_mapper *m, struct sm_node *nd,
                                       const struct spoke_schema *sc)
{
    const struct spoke_host_api *api = m->api;
    struct sm_rplan *p;
    size_t k;
    if (!nd->rplan && !(nd->rplan = calloc(SM_RPLAN, sizeof(*nd->rplan))))
        return NULL;
    for (k = 0; k < SM_RPLAN && nd->rplan[k].sc; k++)
        ;
    if (k == SM_RPLAN) {
        k = nd->rnext;
        nd->rnext = (nd->rnext + 1) % SM_RPLAN;
    }
    p = &nd->rplan[k];
    if (!p->op && !(p->op = malloc(nd->nedges * sizeof(*p->op))))
        return NULL;
    if (p->sc) {
        api->schema_unref((struct spoke_schema *)p->sc);
        p->sc = NULL;
    }
    for (size_t e = 0; e < nd->nedges; e++) {
        const struct sm_node *c = nd->edges[e].child;
        p->op[e].idx = api->schema_index(sc, nd->edges[e].key);
        p->op[e].slot = !c->want && c->nslots == 1 && !m->slot_multi[c->slots[0]]
                        ? c->slots[0] : -1;
    }
    /* The reference keeps sc's address from being reused while cached. */
    api->schema_ref((struct spoke_schema *)sc);
    p->sc = sc;
    return p->op;
}

/* The plan of nd's edges for schema sc, or NULL (out of memory). */
static inline const struct sm_rop *rplan_get(struct sm_mapper *m, struct sm_node *nd,
                                             const struct spoke_schema *sc)
{
    const struct sm_rplan *p = nd->rplan;
    if (p)
        for (size_t k = 0; k < SM_RPLAN; k++)
            if (p[k].sc == sc)
                return p[k].op;
    return rplan_fill(m, nd, sc);
}

/* sm_capture for the common node: one slot that takes one value. */
static inline void capture(struct sm_mapper *m, const struct sm_node *node,
                           const struct sm_src *v)
{
    if (node->nslots == 1 && !m->slot_multi[node->slots[0]]) {
        struct sm_src *c = &m->cap[node->slots[0]];
        if (c->k == SM_SK_MISSING)
            *c = *v;
        return;
    }
    sm_capture(m, node, v);
}

static void walk_row(struct sm_mapper *m, struct sm_node *node, const struct sm_src *v);

/* The members of an object row that nd's edges name. inst != 0: nd is the
 * object node of a [?k] selector and inst the array being walked (each key
 * is taken from the first element that has it). */
static void walk_members(struct sm_mapper *m, struct sm_node *nd, const struct spoke_row *row,
                         uint64_t inst)
{
    const struct spoke_host_api *api = m->api;
    if (!nd->nedges)
        return;
    const struct spoke_schema *sc = api->row_schema(row);
    const struct sm_rop *op = rplan_get(m, nd, sc);
    size_t nv;
    const struct spoke_value *vals = row_view(api, row, &nv);
    for (size_t e = 0; e < nd->nedges; e++) {
        struct sm_node *child = nd->edges[e].child;
        struct sm_src c;
        int i;
        if (!op) {
            if ((i = api->schema_index(sc, nd->edges[e].key)) < 0)
                continue;
        } else if ((i = op[e].idx) < 0) {
            continue;
        }
        if (inst) {
            if (child->mark == inst)
                continue;
            child->mark = inst;
        }
        if (op && op[e].slot >= 0) {
            /* A leaf with one plain slot: read straight into the slot
             * unless an earlier path filled it (the first value wins). */
            struct sm_src *cs = &m->cap[op[e].slot];
            if (cs->k == SM_SK_MISSING) {
                if ((size_t)i < nv)
                    view_src(&vals[i], cs);
                else
                    row_src(api, row, (size_t)i, cs);
            }
            continue;
        }
        if ((size_t)i < nv)
            view_src(&vals[i], &c);
        else
            row_src(api, row, (size_t)i, &c);
        if (!child->want) {
            if (child->nslots)
                capture(m, child, &c);
        } else {
            walk_row(m, child, &c);
        }
    }
}

static void walk_row(struct sm_mapper *m, struct sm_node *node, const struct sm_src *v)
{
    const struct spoke_host_api *api = m->api;
    if (node->nslots)
        capture(m, node, v);
    if (!node->want || v->k == SM_SK_NULL)
        return;
    if (node->want & SM_WANT_OBJECT) {
        if (v->k != SM_SK_OBJECT)
            sm_mismatch(m, node, v->k);
        else
            walk_members(m, node, v->u.row, 0);
        return;
    }
    if (v->k != SM_SK_ARRAY) {
        sm_mismatch(m, node, v->k);
        return;
    }
    for (size_t k = 0; k < node->npresent; k++)
        m->mcap[node->present[k]].present = 1;
    uint64_t inst = ++m->next_id;
    const struct spoke_row *arr = v->u.row;
    size_t nv;
    const struct spoke_value *vals = row_view(api, arr, &nv);
    size_t n = vals ? nv : api->row_count(arr);
    struct sm_src e;
    for (size_t idx = 0; idx < n; idx++) {
        if (vals)
            view_src(&vals[idx], &e);
        else
            row_src(api, arr, idx, &e);
        for (size_t k = 0; k < node->nidx; k++)
            if (node->idx[k].i == (int64_t)idx)
                walk_row(m, node->idx[k].child, &e);
        if (node->wild)
            walk_row(m, node->wild, &e);
        if (!node->sel)
            continue;
        if (e.k == SM_SK_OBJECT)
            walk_members(m, node->sel, e.u.row, inst);
        else if (e.k != SM_SK_NULL)
            sm_mismatch(m, node->sel, e.k);
    }
}

void sm_walk_sj(struct sm_mapper *m, const struct sj_value *root)
{
    struct sm_src v;
    m->sj_lost = 0;
    sj_src(root, &v, &m->sj_lost);
    walk_sj(m, m->root, &v);
}

void sm_walk_row(struct sm_mapper *m, const struct spoke_row *row)
{
    struct sm_src v = { .k = SM_SK_OBJECT, .bk = SM_BK_ROW };
    v.u.row = row;
    walk_row(m, m->root, &v);
}

/* ------------------------------------------------------------------------ */
/* CSV (RFC 4180)                                                            */
/* ------------------------------------------------------------------------ */

/* A space or a tab that is not the delimiter. */
static inline int csv_blank(char c, char delim)
{
    return (c == ' ' || c == '\t') && c != delim;
}

/* blanks: spaces and tabs around a cell are not part of it (lookup tables
 * written by hand: "16107, 75016"); a quoted cell keeps those inside its
 * quotes. Inlined with a constant, so the strict split of every CSV record
 * pays nothing for it. */
static inline int csv_split(const char *p, size_t n, char delim, int blanks,
                            struct sm_csvcell **cells, size_t *cap, size_t *ncells, char *err,
                            size_t errsz)
{
    size_t i = 0, k = 0;
    for (;;) {
        if (k == *cap) {
            size_t nc = *cap ? *cap * 2 : 32;
            struct sm_csvcell *c = realloc(*cells, nc * sizeof(*c));
            if (!c) {
                snprintf(err, errsz, "out of memory");
                return -1;
            }
            *cells = c;
            *cap = nc;
        }
        struct sm_csvcell *c = &(*cells)[k++];
        c->esc = 0;
        while (blanks && i < n && csv_blank(p[i], delim))
            i++;
        if (i < n && p[i] == '"') {
            size_t start = ++i;
            for (;;) {
                const char *q = i < n ? memchr(p + i, '"', n - i) : NULL;
                if (!q) {
                    snprintf(err, errsz, "invalid CSV at byte %zu: unterminated quoted field",
                             start - 1);
                    return -1;
                }
                i = (size_t)(q - p);
                if (i + 1 < n && p[i + 1] == '"') {
                    c->esc = 1;
                    i += 2;
                    continue;
                }
                break;
            }
            c->p = p + start;
            c->n = i - start;
            i++;  /* closing quote */
            while (blanks && i < n && csv_blank(p[i], delim))
                i++;
            if (i < n && p[i] != delim) {
                snprintf(err, errsz, "invalid CSV at byte %zu: unexpected character after a "
                         "closing quote", i);
                return -1;
            }
        } else {
            size_t start = i;
            while (i < n && p[i] != delim) {
                if (p[i] == '"') {
                    snprintf(err, errsz, "invalid CSV at byte %zu: quote inside an unquoted field",
                             i);
                    return -1;
                }
                if (p[i] == '\n' || p[i] == '\r') {
                    snprintf(err, errsz, "invalid CSV at byte %zu: line break inside an unquoted "
                             "field", i);
                    return -1;
                }
                i++;
            }
            size_t end = i;
            while (blanks && end > start && csv_blank(p[end - 1], delim))
                end--;
            c->p = p + start;
            c->n = end - start;
        }
        if (i >= n)
            break;
        i++;  /* delimiter: another cell follows, possibly empty */
    }
    *ncells = k;
    return 0;
}

int sm_csv_split(const char *p, size_t n, char delim, struct sm_csvcell **cells, size_t *cap,
                 size_t *ncells, char *err, size_t errsz)
{
    return csv_split(p, n, delim, 0, cells, cap, ncells, err, errsz);
}

int sm_csv_split_blanks(const char *p, size_t n, char delim, struct sm_csvcell **cells,
                        size_t *cap, size_t *ncells, char *err, size_t errsz)
{
    return csv_split(p, n, delim, 1, cells, cap, ncells, err, errsz);
}

void sm_csv_cell_text(struct sm_arena *a, const struct sm_csvcell *c, const char **p, size_t *n)
{
    if (!c->esc) {
        *p = c->p;
        *n = c->n;
        return;
    }
    char *o = sm_arena_alloc(a, c->n + 1);
    if (!o) {
        *p = NULL;
        *n = 0;
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++) {
        o[k++] = c->p[i];
        if (c->p[i] == '"')
            i++;  /* the second quote of a "" pair */
    }
    *p = o;
    *n = k;
}

int sm_csv_extract(struct sm_mapper *m, const char *p, size_t n, char *err, size_t errsz)
{
    size_t bad, nc;
    if (!sm_utf8_valid(p, n, &bad)) {
        snprintf(err, errsz, "invalid CSV at byte %zu: invalid UTF-8", bad);
        return -1;
    }
    if (sm_csv_split(p, n, m->delim, &m->cells, &m->cellcap, &nc, err, errsz) < 0)
        return -1;
    if (m->header && nc == m->ncol) {
        size_t i;
        for (i = 0; i < nc; i++) {
            const char *t;
            size_t tn;
            sm_csv_cell_text(&m->arena, &m->cells[i], &t, &tn);
            if (!t || strlen(m->columns[i]) != tn || memcmp(m->columns[i], t, tn) != 0)
                break;
        }
        if (i == nc) {
            m->header_line = 1;
            return 0;
        }
    }
    if (nc != m->ncol) {
        snprintf(err, errsz, "invalid CSV: %zu columns, expected %zu", nc, m->ncol);
        return -1;
    }
    for (size_t i = 0; i < m->nf; i++) {
        const struct sm_field *f = &m->f[i];
        if (f->src != SM_SRC_COLUMN)
            continue;
        struct sm_src *v = &m->cap[f->slot];
        v->k = SM_SK_STR;
        sm_csv_cell_text(&m->arena, &m->cells[f->column], &v->u.s.p, &v->u.s.n);
        if (!v->u.s.p) {
            snprintf(err, errsz, "out of memory");
            return -1;
        }
    }
    return 0;
}
