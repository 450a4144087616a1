/*
 * schema_mapper_map.c - one record through the compiled schema.
 *
 *   1. extract   the source fields' raw values (JSON bytes: the extractor or
 *                simdjson; CSV bytes; or a row already built upstream)
 *   2. type      each source field (coercion, null_values, default, required)
 *      filter    the filters on source fields
 *   3. lookup    each lookup field (missing: null, default, drop or error)
 *      filter    the filters on lookup fields
 *   4. compute   each computed field, in declaration order
 *      filter    the filters on computed fields
 *   5. build     the output row (one schema for every row), key, timestamp
 *
 * A filter runs as soon as its field is known, so a record that a source
 * filter drops never reaches a lookup whose miss would be an error. Any
 * error anywhere rejects the whole record (nothing is half-mapped), unless
 * a filter on a field that did type rejects the record: filters decide
 * before typing errors (drop_or_fail, off the path of records that map).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_mapper.h"

static int field_err(const struct sm_field *f, char *err, size_t errsz, const char *msg, int rc)
{
    if (f->path && strcmp(f->path, f->name) != 0)
        snprintf(err, errsz, "%s (%s): %s", f->name, f->path, msg);
    else
        snprintf(err, errsz, "%s: %s", f->name, msg);
    return rc;
}

static void reset(struct sm_mapper *m)
{
    for (size_t s = 0; s < m->nslots; s++)
        m->cap[s].k = SM_SK_MISSING;
    for (size_t k = 0; k < m->nmulti; k++) {
        m->mcap[m->multi[k]].n = 0;
        m->mcap[m->multi[k]].present = 0;
    }
    sm_arena_reset(&m->arena);
    m->bad_node = NULL;
    m->lookup_misses = 0;
    m->header_line = 0;
}

/* A null value of a field with a default or required: the default, or an
 * error when required. */
static int settle_null_slow(struct sm_mapper *m, size_t i, char *err, size_t errsz)
{
    const struct sm_field *f = &m->f[i];
    struct sm_val *v = &m->vals[i];
    if (f->has_default) {
        *v = f->def;
        return SPOKE_OK;
    }
    if (!f->required)
        return SPOKE_OK;
    switch (v->why) {
    case SM_WHY_MISSING:
        snprintf(err, errsz, "missing required field %s", f->name);
        break;
    case SM_WHY_NULL:
    case SM_WHY_NULLTEXT:
        snprintf(err, errsz, "required field %s is null", f->name);
        break;
    case SM_WHY_OPERAND:
        snprintf(err, errsz, "required field %s cannot be computed: %s is null", f->name,
                 m->f[v->arg].name);
        break;
    case SM_WHY_DIV0:
        snprintf(err, errsz, "required field %s cannot be computed: division by zero", f->name);
        break;
    case SM_WHY_RANGE:
        snprintf(err, errsz, "required field %s cannot be computed: the result is out of range "
                 "for %s", f->name, sm_type_name(f->type));
        break;
    default:
        snprintf(err, errsz, "required field %s is null", f->name);
        break;
    }
    return SPOKE_ERR_INVALID;
}

/* A null value: the default, an error when required, else null. The
 * common case (neither: most nulls of a record) costs no call. */
static inline int settle_null(struct sm_mapper *m, const struct sm_field *f, size_t i,
                              char *err, size_t errsz)
{
    if (!f->has_default && !f->required)
        return SPOKE_OK;
    return settle_null_slow(m, i, err, errsz);
}

static int meta_src(struct sm_mapper *m, const struct sm_field *f, const struct spoke_record *rec,
                    struct sm_src *v, char *err, size_t errsz)
{
    const struct spoke_host_api *api = m->api;
    const char *part = NULL;
    int64_t off = 0;
    size_t bad;
    v->k = SM_SK_NULL;
    if (!rec)
        return 0;
    switch (f->meta) {
    case SM_META_KEY:
        v->u.s.p = api->record_key(rec, &v->u.s.n);
        if (!v->u.s.p)
            return 0;
        if (!sm_utf8_valid(v->u.s.p, v->u.s.n, &bad)) {
            snprintf(err, errsz, "%s: the record key is not valid UTF-8", f->name);
            return -1;
        }
        v->k = SM_SK_STR;
        return 0;
    case SM_META_TOPIC:
        v->u.s.p = api->record_topic(rec);
        v->u.s.n = strlen(v->u.s.p);
        v->k = SM_SK_STR;
        return 0;
    case SM_META_PARTITION:
    case SM_META_OFFSET:
        api->record_position(rec, &part, &off);
        if (!part)
            return 0;
        if (f->meta == SM_META_OFFSET) {
            v->k = SM_SK_INT;
            v->u.i = off;
        } else {
            v->k = SM_SK_STR;
            v->u.s.p = part;
            v->u.s.n = strlen(part);
        }
        return 0;
    case SM_META_TIMESTAMP:
        v->k = SM_SK_TS;
        v->u.i = api->record_timestamp(rec);
        return 0;
    }
    return 0;
}

/* Types a list field from its wildcard captures. */
static int list_field(struct sm_mapper *m, size_t i, char *err, size_t errsz)
{
    const struct sm_field *f = &m->f[i];
    const struct sm_srcvec *vec = &m->mcap[f->slot];
    struct sm_valvec *out = &m->lists[i];
    struct sm_val *v = &m->vals[i];
    char msg[SM_ERR], emsg[SM_ERR];
    if (vec->present < 0) {
        snprintf(err, errsz, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    if (!vec->present) {
        v->t = SPOKE_TYPE_NULL;
        v->why = SM_WHY_MISSING;
        return SPOKE_OK;
    }
    if (vec->n > out->cap) {
        size_t cap = out->cap ? out->cap : 16;
        while (cap < vec->n)
            cap *= 2;
        struct sm_val *nv = realloc(out->v, cap * sizeof(*nv));
        if (!nv) {
            snprintf(err, errsz, "out of memory");
            return SPOKE_ERR_NOMEM;
        }
        out->v = nv;
        out->cap = cap;
    }
    for (size_t k = 0; k < vec->n; k++) {
        if (sm_coerce(m, f, f->items, &vec->v[k], &out->v[k], msg, sizeof(msg)) < 0) {
            snprintf(emsg, sizeof(emsg), "element %zu: %.200s", k, msg);
            return field_err(f, err, errsz, emsg, SPOKE_ERR_TYPE);
        }
    }
    v->t = SPOKE_TYPE_LIST;
    v->u.l.v = out->v;
    v->u.l.n = vec->n;
    return SPOKE_OK;
}

static int filter_pass(const struct sm_mapper *m, const struct sm_filter *fl)
{
    const struct sm_val *v = &m->vals[fl->field];
    if (v->t == SPOKE_TYPE_NULL)
        return fl->op == SM_F_NE || fl->op == SM_F_NOT_IN;
    switch (fl->op) {
    case SM_F_EQ: return sm_val_cmp(v, &fl->v) == 0;
    case SM_F_NE: return sm_val_cmp(v, &fl->v) != 0;
    case SM_F_MIN: return sm_val_cmp(v, &fl->v) >= 0;
    case SM_F_MAX: return sm_val_cmp(v, &fl->v) <= 0;
    case SM_F_IN:
    case SM_F_NOT_IN: {
        char buf[64];
        const char *p;
        size_t n;
        sm_canon(v, buf, &p, &n);
        int in = sm_hmap_get(&fl->set, p, n) != NULL;
        return fl->op == SM_F_IN ? in : !in;
    }
    }
    return 1;
}

static int filters_pass(const struct sm_mapper *m, int stage)
{
    if (!m->nflt)
        return 1;
    for (size_t k = 0; k < m->nflt; k++)
        if (m->flt[k].stage == stage && !filter_pass(m, &m->flt[k]))
            return 0;
    return 1;
}

/* Step 2 for source field i: its value typed, then default or required.
 * SPOKE_OK, or an error with the reason in err. */
static inline __attribute__((always_inline)) int
type_source(struct sm_mapper *m, size_t i, const struct spoke_record *rec, char *err,
            size_t errsz)
{
    const struct sm_field *f = &m->f[i];
    struct sm_val *v = &m->vals[i];
    char msg[SM_ERR];
    int rc;
    if (f->multi) {
        if ((rc = list_field(m, i, err, errsz)) != SPOKE_OK)
            return rc;
    } else {
        struct sm_src metav;
        const struct sm_src *src = &m->cap[f->slot];
        if (f->src == SM_SRC_META) {
            if (meta_src(m, f, rec, &metav, err, errsz) < 0)
                return SPOKE_ERR_INVALID;
            src = &metav;
        }
        if (!sm_coerce_quick(f, f->type, src, v) &&
            sm_coerce(m, f, f->type, src, v, msg, sizeof(msg)) < 0)
            return field_err(f, err, errsz, msg, SPOKE_ERR_TYPE);
    }
    if (v->t == SPOKE_TYPE_NULL)
        return settle_null(m, f, i, err, errsz);
    return SPOKE_OK;
}

/* Step 3 for lookup field i: SPOKE_OK, SPOKE_DROP (a miss with missing:
 * drop) or SPOKE_ERR_NOTFOUND (a miss with missing: error, the reason in
 * err). */
static inline __attribute__((always_inline)) int lookup_one(struct sm_mapper *m, size_t i,
                                                            char *err, size_t errsz)
{
    const struct sm_field *f = &m->f[i];
    struct sm_val *v = &m->vals[i];
    const struct sm_val *kv = &m->vals[f->lk_key];
    const struct sm_hent *e = NULL;
    char buf[64];
    const char *kp = NULL;
    size_t kn = 0;
    if (kv->t != SPOKE_TYPE_NULL) {
        sm_canon(kv, buf, &kp, &kn);
        e = sm_hmap_get(&f->lk, kp, kn);
    }
    if (e && e->val.t != SPOKE_TYPE_NULL) {
        *v = e->val;
        return SPOKE_OK;
    }
    m->lookup_misses++;
    switch (f->lk_missing) {
    case SM_MISS_DEFAULT:
        *v = f->def;
        break;
    case SM_MISS_DROP:
        return SPOKE_DROP;
    case SM_MISS_ERROR: {
        char q[64];
        if (kv->t == SPOKE_TYPE_NULL)
            snprintf(err, errsz, "%s: no lookup key (%s is null)", f->name,
                     m->f[f->lk_key].name);
        else {
            sm_quote(kp, kn, q, sizeof(q));
            snprintf(err, errsz, "%s: no %s for %s %s in the lookup table (%s)", f->name,
                     f->name, m->f[f->lk_key].name, q, f->lk_desc);
        }
        return SPOKE_ERR_NOTFOUND;
    }
    default:
        v->t = SPOKE_TYPE_NULL;
        v->why = SM_WHY_LOOKUP;
        break;
    }
    return SPOKE_OK;
}

/* Marks the fields fed by node nd and the nodes below it (the fields a
 * structure mismatch at nd leaves unknown). */
static void mark_below(const struct sm_node *nd, const int *slot_field, uint8_t *unknown)
{
    for (size_t k = 0; k < nd->nslots; k++)
        if (slot_field[nd->slots[k]] >= 0)
            unknown[slot_field[nd->slots[k]]] = 1;
    for (size_t e = 0; e < nd->nedges; e++)
        mark_below(nd->edges[e].child, slot_field, unknown);
    for (size_t k = 0; k < nd->nidx; k++)
        mark_below(nd->idx[k].child, slot_field, unknown);
    if (nd->wild)
        mark_below(nd->wild, slot_field, unknown);
    if (nd->sel)
        mark_below(nd->sel, slot_field, unknown);
}

static int filters_pass_known(const struct sm_mapper *m, int stage, const uint8_t *unknown)
{
    for (size_t k = 0; k < m->nflt; k++)
        if (m->flt[k].stage == stage && !unknown[m->flt[k].field] &&
            !filter_pass(m, &m->flt[k]))
            return 0;
    return 1;
}

/*
 * A record that failed (rc, the reason in err) is dropped all the same when
 * a filter rejects it: filters decide before typing errors. The record is
 * mapped again with every failure kept local: a field that cannot be typed
 * (or is a required one left null, or sits below a structure mismatch) is
 * unknown, and so is a lookup keyed by an unknown field or whose miss is
 * an error, and a computed field reading an unknown one. Every filter on a
 * known field then runs, and a lookup miss with missing: drop drops: if
 * either rejects the record, SPOKE_DROP; else rc, with the first reason as
 * err has it. JSON and CSV are validated before this: a malformed record is
 * never dropped by a filter, since its fields are not known.
 */
static __attribute__((noinline, cold)) int drop_or_fail(struct sm_mapper *m,
                                                       const struct spoke_record *rec, int rc)
{
    char msg[SM_ERR];
    int may_drop = m->nflt > 0;
    for (size_t k = 0; k < m->nstage[1] && !may_drop; k++)
        may_drop = m->f[m->stage[1][k]].lk_missing == SM_MISS_DROP;
    if (rc == SPOKE_ERR_NOMEM || !may_drop || (m->bad_node && m->bad_over))
        return rc;
    uint8_t *unknown = sm_arena_alloc(&m->arena, m->nf);
    int *slot_field = sm_arena_alloc(&m->arena, (m->nslots + 1) * sizeof(int));
    if (!unknown || !slot_field)
        return rc;
    memset(unknown, 0, m->nf);
    if (m->bad_node) {
        for (size_t s = 0; s < m->nslots; s++)
            slot_field[s] = -1;
        for (size_t i = 0; i < m->nf; i++)
            if (m->f[i].src == SM_SRC_PATH)
                slot_field[m->f[i].slot] = (int)i;
        mark_below(m->bad_node, slot_field, unknown);
        for (size_t k = 0; k < m->nbad_more; k++)
            mark_below(m->bad_more[k], slot_field, unknown);
    }
    int misses = m->lookup_misses, out = rc;
    m->lookup_misses = 0;
    for (size_t k = 0; k < m->nstage[0]; k++) {
        size_t i = m->stage[0][k];
        if (!unknown[i] && type_source(m, i, rec, msg, sizeof(msg)) != SPOKE_OK)
            unknown[i] = 1;
    }
    if (!filters_pass_known(m, 0, unknown))
        goto drop;
    for (size_t k = 0; k < m->nstage[1]; k++) {
        size_t i = m->stage[1][k];
        int lrc = unknown[m->f[i].lk_key] ? SPOKE_ERR_NOTFOUND : lookup_one(m, i, msg, sizeof(msg));
        if (lrc == SPOKE_DROP)
            goto drop;
        unknown[i] = lrc != SPOKE_OK;
    }
    if (!filters_pass_known(m, 1, unknown))
        goto drop;
    for (size_t k = 0; k < m->nstage[2]; k++) {
        size_t i = m->stage[2][k];
        const struct sm_field *f = &m->f[i];
        if (sm_expr_reads(f->expr, unknown)) {
            unknown[i] = 1;
            continue;
        }
        sm_expr_eval(f->expr, m->vals, f->type, &m->vals[i]);
        if (m->vals[i].t == SPOKE_TYPE_NULL && settle_null(m, f, i, msg, sizeof(msg)) != SPOKE_OK)
            unknown[i] = 1;
    }
    if (!filters_pass_known(m, 2, unknown))
        goto drop;
    m->lookup_misses = misses;
    return out;
drop:
    return SPOKE_DROP;
}

/* Steps 2-4 once the captures are in. Any failure goes to drop_or_fail,
 * off the path of records that map. */
static int map_fields(struct sm_mapper *m, const struct spoke_record *rec, char *err,
                      size_t errsz)
{
    int rc;

    if (m->bad_node) {
        const struct sm_node *b = m->bad_node;
        if (b->is_sel)
            snprintf(err, errsz, "%s: expected an object element, got %s", b->where,
                     sm_sk_name(m->bad_got));
        else
            snprintf(err, errsz, "%s: expected %s, got %s", b->where,
                     b->want & SM_WANT_OBJECT ? "an object" : "an array", sm_sk_name(m->bad_got));
        return drop_or_fail(m, rec, SPOKE_ERR_TYPE);
    }
    for (size_t k = 0; k < m->nstage[0]; k++)
        if ((rc = type_source(m, m->stage[0][k], rec, err, errsz)) != SPOKE_OK)
            return drop_or_fail(m, rec, rc);
    if (!filters_pass(m, 0))
        return SPOKE_DROP;

    for (size_t k = 0; k < m->nstage[1]; k++)
        if ((rc = lookup_one(m, m->stage[1][k], err, errsz)) != SPOKE_OK)
            return rc == SPOKE_DROP ? rc : drop_or_fail(m, rec, rc);
    if (!filters_pass(m, 1))
        return SPOKE_DROP;

    for (size_t k = 0; k < m->nstage[2]; k++) {
        size_t i = m->stage[2][k];
        const struct sm_field *f = &m->f[i];
        sm_expr_eval(f->expr, m->vals, f->type, &m->vals[i]);
        if (m->vals[i].t == SPOKE_TYPE_NULL &&
            (rc = settle_null(m, f, i, err, errsz)) != SPOKE_OK)
            return drop_or_fail(m, rec, rc);
    }
    if (!filters_pass(m, 2))
        return SPOKE_DROP;
    return SPOKE_OK;
}

/* json.parser simdjson: whether a captured value feeds a field that needs
 * the text the DOM did not keep. A stringified field writes a number or a
 * container as it is written (2.50, -0, 1E+2), but the DOM holds 2.5, 0
 * (for 0 and -0) and the values of a container; an int or long field
 * decides a number with a fraction or an exponent by its exact decimal
 * value, but a whole double may stand for several such numbers
 * (1.0000000000000000001 and 1.0, or -9223372036854775809.0 and
 * -9223372036854775808.0). */
static int sj_lost_text(const struct sm_src *v, int strfy)
{
    switch (v->k) {
    case SM_SK_DOUBLE: return strfy || v->u.d == floor(v->u.d);
    case SM_SK_INT: return strfy && v->u.i == 0;
    case SM_SK_ARRAY: case SM_SK_OBJECT: return strfy;
    default: return 0;
    }
}

static int sj_needs_text(const struct sm_mapper *m)
{
    for (size_t k = 0; k < m->ntext; k++) {
        const struct sm_textslot *t = &m->text[k];
        if (m->slot_multi[t->slot]) {
            const struct sm_srcvec *vec = &m->mcap[t->slot];
            for (size_t e = 0; e < vec->n; e++)
                if (sj_lost_text(&vec->v[e], t->strfy))
                    return 1;
        } else if (sj_lost_text(&m->cap[t->slot], t->strfy)) {
            return 1;
        }
    }
    return 0;
}

int sm_map_bytes(struct sm_mapper *m, const char *p, size_t n, const struct spoke_record *rec,
                 char *err, size_t errsz)
{
    reset(m);
    if (n > m->max_bytes) {
        snprintf(err, errsz, "record of %zu bytes is larger than max.record.bytes (%zu)", n,
                 m->max_bytes);
        return SPOKE_ERR_INVALID;
    }
    if (m->format == SM_FMT_CSV) {
        if (sm_csv_extract(m, p, n, err, errsz) < 0)
            return SPOKE_ERR_PARSE;
        if (m->header_line)
            return SPOKE_DROP;
    } else if (m->parser == SM_PARSER_EXTRACTOR) {
        if (sm_json_extract(m, p, n, err, errsz) < 0)
            return SPOKE_ERR_PARSE;
    } else {
        struct sj_value root;
        char msg[SM_ERR];
        if (sj_parse(m->sj, p, n, &root, msg, sizeof(msg)) != 0) {
            snprintf(err, errsz, "%s%s", strncmp(msg, "invalid JSON", 12) ? "invalid JSON: " : "",
                     msg);
            return SPOKE_ERR_PARSE;
        }
        if (sj_type(&root) != SJ_OBJECT) {
            static const char *const names[] = { "null", "a boolean", "a number", "a number",
                                                 "a number", "a string", "an array", "an object" };
            snprintf(err, errsz, "expected a JSON object, got %s", names[sj_type(&root)]);
            return SPOKE_ERR_PARSE;
        }
        sm_walk_sj(m, &root);
        if (((m->sj_lost && m->ntext) || m->text_strfy) && sj_needs_text(m)) {
            /* Read again from the bytes, which simdjson has just found to
             * be valid JSON: both parsers then give the same row. */
            reset(m);
            if (sm_json_extract(m, p, n, err, errsz) < 0)
                return SPOKE_ERR_PARSE;
        }
    }
    return map_fields(m, rec, err, errsz);
}

int sm_map_row(struct sm_mapper *m, const struct spoke_row *row, const struct spoke_record *rec,
               char *err, size_t errsz)
{
    reset(m);
    if (m->format == SM_FMT_CSV) {
        snprintf(err, errsz, "input format is csv but the record holds a row");
        return SPOKE_ERR_INVALID;
    }
    sm_walk_row(m, row);
    return map_fields(m, rec, err, errsz);
}

static int set_val(const struct spoke_host_api *api, struct spoke_row *row, size_t i,
                   const struct sm_val *v);

/* A list value as a new list row set on row's field i. */
static int set_list(const struct spoke_host_api *api, struct spoke_row *row, size_t i,
                    const struct sm_val *v)
{
    struct spoke_row *list = api->row_new_list(v->u.l.n);
    if (!list)
        return SPOKE_ERR_NOMEM;
    for (size_t k = 0; k < v->u.l.n; k++) {
        int rc = set_val(api, list, k, &v->u.l.v[k]);
        if (rc != SPOKE_OK) {
            api->row_free(list);
            return rc;
        }
    }
    return api->row_set_row(row, i, list);
}

/* Sets field i of row to v (inline: sm_build_row runs it for every field
 * of every record). */
static inline __attribute__((always_inline)) int
set_val_inline(const struct spoke_host_api *api, struct spoke_row *row, size_t i,
               const struct sm_val *v)
{
    switch (v->t) {
    case SPOKE_TYPE_BOOL: return api->row_set_bool(row, i, v->u.b);
    case SPOKE_TYPE_INT: return api->row_set_int(row, i, v->u.i);
    case SPOKE_TYPE_DOUBLE: return api->row_set_double(row, i, v->u.d);
    case SPOKE_TYPE_STRING: return api->row_set_string(row, i, v->u.s.p, v->u.s.n);
    case SPOKE_TYPE_TIMESTAMP: return api->row_set_timestamp(row, i, v->u.i);
    case SPOKE_TYPE_LIST: return set_list(api, row, i, v);
    default:
        return SPOKE_OK;  /* null: rows start with every field null */
    }
}

static int set_val(const struct spoke_host_api *api, struct spoke_row *row, size_t i,
                   const struct sm_val *v)
{
    return set_val_inline(api, row, i, v);
}

struct spoke_row *sm_build_row(struct sm_mapper *m)
{
    const struct spoke_host_api *api = m->api;
    struct spoke_row *row = api->row_new(m->schema);
    if (!row)
        return NULL;
    for (size_t i = 0; i < m->nf; i++) {
        int out = m->f[i].out;
        if (out >= 0 && set_val_inline(api, row, (size_t)out, &m->vals[i]) != SPOKE_OK) {
            api->row_free(row);
            return NULL;
        }
    }
    return row;
}

int sm_process(struct sm_mapper *m, struct spoke_record *rec, char *err, size_t errsz)
{
    const struct spoke_host_api *api = m->api;
    int rc;
    if (api->record_value_forms(rec) & SPOKE_FORM_ROW) {
        const struct spoke_row *in = api->record_value_row(rec, NULL);
        if (!in) {
            snprintf(err, errsz, "the record's row is not readable");
            return SPOKE_ERR_INVALID;
        }
        rc = sm_map_row(m, in, rec, err, errsz);
    } else {
        size_t len = 0;
        const char *p = api->record_value_bytes(rec, &len);
        if (!p) {
            snprintf(err, errsz, "the record's value is null");
            return SPOKE_ERR_INVALID;
        }
        rc = sm_map_bytes(m, p, len, rec, err, errsz);
    }
    if (rc != SPOKE_OK)
        return rc;
    struct spoke_row *row = sm_build_row(m);
    if (!row) {
        snprintf(err, errsz, "out of memory building the row");
        return SPOKE_ERR_NOMEM;
    }
    /* Key and timestamp before the row replaces the value: the field
     * values may still point into the old value's bytes. */
    if (m->key_field >= 0 && m->vals[m->key_field].t != SPOKE_TYPE_NULL) {
        char buf[64];
        const char *p;
        size_t n;
        sm_text(&m->vals[m->key_field], buf, &p, &n);
        if (api->record_set_key(rec, (void *)p, n, SPOKE_COPY) != SPOKE_OK) {
            api->row_free(row);
            snprintf(err, errsz, "out of memory setting the key");
            return SPOKE_ERR_NOMEM;
        }
    }
    if (m->ts_field >= 0 && m->vals[m->ts_field].t == SPOKE_TYPE_TIMESTAMP)
        api->record_set_timestamp(rec, m->vals[m->ts_field].u.i);
    rc = api->record_set_row(rec, row);
    if (rc != SPOKE_OK)
        snprintf(err, errsz, "cannot set the row: %s", api->strerror(rc));
    return rc;
}
