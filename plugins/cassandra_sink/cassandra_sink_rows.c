/*
 * cassandra_sink_rows.c - records to bound values for cassandra_sink: the
 * sources of `mapping` (value paths in the typed row, JSON keys, headers,
 * the record timestamp, now()), and the no-mapping form's statements, one
 * per field list. Conversion to the column types is cql_types.c's.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cassandra_sink.h"

/* Microseconds since the epoch: write timestamps. */
static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------------------ */
/* Records to rows                                                           */
/* ------------------------------------------------------------------------ */

struct rec_view {
    const struct spoke_record *rec;
    const struct spoke_row *vrow;
    int vrow_done;
    const char *vwhy;
    json_t *kjson;
    int kjson_done;
    char kjson_err[160];
};

static int row_elem(const struct cql_src *self, size_t i, struct cql_src *key,
                    struct cql_src *val);

static void src_from_row(const struct spoke_host_api *api, const struct spoke_row *row, size_t i,
                         struct cql_src *out)
{
    memset(out, 0, sizeof(*out));
    switch (api->row_type(row, i)) {
    case SPOKE_TYPE_BOOL:
        out->kind = CQL_SRC_BOOL;
        out->b = api->row_get_bool(row, i);
        break;
    case SPOKE_TYPE_INT:
        out->kind = CQL_SRC_INT;
        out->i = api->row_get_int(row, i);
        break;
    case SPOKE_TYPE_DOUBLE:
        out->kind = CQL_SRC_DOUBLE;
        out->d = api->row_get_double(row, i);
        break;
    case SPOKE_TYPE_STRING:
        out->kind = CQL_SRC_TEXT;
        out->s = api->row_get_string(row, i, &out->n);
        break;
    case SPOKE_TYPE_TIMESTAMP:
        out->kind = CQL_SRC_TIMESTAMP;
        out->i = api->row_get_timestamp(row, i);
        break;
    case SPOKE_TYPE_LIST:
    case SPOKE_TYPE_MAP: {
        const struct spoke_row *child = api->row_get_row(row, i);
        out->kind = api->row_type(row, i) == SPOKE_TYPE_LIST ? CQL_SRC_LIST : CQL_SRC_MAP;
        out->count = child ? api->row_count(child) : 0;
        out->elem = row_elem;
        out->ctx = api;
        out->ctx2 = child;
        break;
    }
    default:
        out->kind = CQL_SRC_NULL;
    }
}

static int row_elem(const struct cql_src *self, size_t i, struct cql_src *key,
                    struct cql_src *val)
{
    const struct spoke_host_api *api = self->ctx;
    const struct spoke_row *row = self->ctx2;
    if (row == NULL || i >= api->row_count(row))
        return -1;
    if (self->kind == CQL_SRC_MAP) {
        const struct spoke_schema *sc = api->row_schema(row);
        memset(key, 0, sizeof(*key));
        key->kind = CQL_SRC_TEXT;
        key->s = sc ? api->schema_name(sc, i) : "";
        key->n = strlen(key->s);
    }
    src_from_row(api, row, i, val);
    return 0;
}

static int json_elem(const struct cql_src *self, size_t i, struct cql_src *key,
                     struct cql_src *val);

static void src_from_json(json_t *j, struct cql_src *out)
{
    memset(out, 0, sizeof(*out));
    switch (json_typeof(j)) {
    case JSON_TRUE:
    case JSON_FALSE:
        out->kind = CQL_SRC_BOOL;
        out->b = json_is_true(j);
        break;
    case JSON_INTEGER:
        out->kind = CQL_SRC_INT;
        out->i = json_integer_value(j);
        break;
    case JSON_REAL:
        out->kind = CQL_SRC_DOUBLE;
        out->d = json_real_value(j);
        break;
    case JSON_STRING:
        out->kind = CQL_SRC_TEXT;
        out->s = json_string_value(j);
        out->n = json_string_length(j);
        break;
    case JSON_ARRAY:
    case JSON_OBJECT:
        out->kind = json_is_array(j) ? CQL_SRC_LIST : CQL_SRC_MAP;
        out->count = json_is_array(j) ? json_array_size(j) : json_object_size(j);
        out->elem = json_elem;
        out->ctx = j;
        break;
    default:
        out->kind = CQL_SRC_NULL;
    }
}

static int json_elem(const struct cql_src *self, size_t i, struct cql_src *key,
                     struct cql_src *val)
{
    json_t *j = (json_t *)self->ctx;
    if (json_is_array(j)) {
        json_t *e = json_array_get(j, i);
        if (e == NULL)
            return -1;
        src_from_json(e, val);
        return 0;
    }
    size_t k = 0;
    for (void *it = json_object_iter(j); it; it = json_object_iter_next(j, it), k++) {
        if (k != i)
            continue;
        memset(key, 0, sizeof(*key));
        key->kind = CQL_SRC_TEXT;
        key->s = json_object_iter_key(it);
        key->n = strlen(key->s);
        src_from_json(json_object_iter_value(it), val);
        return 0;
    }
    return -1;
}

static const char *type_word(enum spoke_type t)
{
    switch (t) {
    case SPOKE_TYPE_BOOL: return "a boolean";
    case SPOKE_TYPE_INT: return "an integer";
    case SPOKE_TYPE_DOUBLE: return "a number";
    case SPOKE_TYPE_STRING: return "a string";
    case SPOKE_TYPE_TIMESTAMP: return "a timestamp";
    default: return "a scalar";
    }
}

/* Index of a path segment in row (field name, or list index). -1 absent. */
static int seg_index(const struct spoke_host_api *api, const struct spoke_row *row, const char *seg)
{
    if (api->row_schema(row))
        return api->row_index(row, seg);
    char *end;
    errno = 0;
    long v = strtol(seg, &end, 10);
    if (*seg == '\0' || *end != '\0' || errno || v < 0 || (size_t)v >= api->row_count(row))
        return -1;
    return (int)v;
}

/* Top-level field index of mapping column i for row's schema, cached. */
static int top_index(struct cs_state *st, struct cs_stmt *s, const struct spoke_row *row, size_t i)
{
    const struct spoke_host_api *api = st->api;
    const struct spoke_schema *sc = api->row_schema(row);
    if (sc == NULL)
        return seg_index(api, row, s->map.cols[i].path[0]);
    for (int k = 0; k < CS_SCHEMA_CACHE; k++)
        if (s->slots[k].schema == sc)
            return s->slots[k].idx[i];
    struct cs_schema_slot *slot = &s->slots[s->next_slot++ % CS_SCHEMA_CACHE];
    int *idx = realloc(slot->idx, (s->map.n ? s->map.n : 1) * sizeof(*idx));
    if (idx == NULL)
        return api->row_index(row, s->map.cols[i].path[0]);
    slot->idx = idx;
    if (slot->schema)
        api->schema_unref(slot->schema);
    /* The cache holds a reference so the address is never reused by
     * another schema while it is here. */
    slot->schema = (struct spoke_schema *)sc;
    api->schema_ref(slot->schema);
    for (size_t c = 0; c < s->map.n; c++)
        idx[c] = s->map.cols[c].src == CQL_MAP_VALUE_PATH
                     ? api->schema_index(sc, s->map.cols[c].path[0]) : -1;
    return idx[i];
}

/* Follows value.a.b... in the value row. 0 (out set; absent = null) or -1. */
static int value_path(struct cs_state *st, struct cs_stmt *s, const struct spoke_row *row,
                      size_t ci, struct cql_src *out, char *errstr, size_t errstr_size)
{
    const struct spoke_host_api *api = st->api;
    const struct cql_map_col *mc = &s->map.cols[ci];
    const struct spoke_row *cur = row;

    for (size_t k = 0; k < mc->npath; k++) {
        int idx = k == 0 ? top_index(st, s, row, ci) : seg_index(api, cur, mc->path[k]);
        if (idx < 0) {
            memset(out, 0, sizeof(*out));
            return 0;
        }
        if (k + 1 == mc->npath) {
            src_from_row(api, cur, (size_t)idx, out);
            return 0;
        }
        enum spoke_type t = api->row_type(cur, (size_t)idx);
        if (t == SPOKE_TYPE_NULL) {
            memset(out, 0, sizeof(*out));
            return 0;
        }
        if (t != SPOKE_TYPE_MAP && t != SPOKE_TYPE_LIST) {
            cql_textf(errstr, errstr_size, "column '%s' (%s): field '%s' is %s, not an object",
                      mc->column, mc->spec, mc->path[k], type_word(t));
            return -1;
        }
        cur = api->row_get_row(cur, (size_t)idx);
    }
    memset(out, 0, sizeof(*out));
    return 0;
}

static int key_path(struct cs_state *st, struct rec_view *rv, const struct cql_map_col *mc,
                    struct cql_src *out, char *errstr, size_t errstr_size)
{
    json_t *cur;
    if (!rv->kjson_done) {
        size_t klen = 0;
        const void *k = st->api->record_key(rv->rec, &klen);
        json_error_t je;
        rv->kjson_done = 1;
        if (k == NULL) {
            rv->kjson = NULL;
            cql_textf(rv->kjson_err, sizeof(rv->kjson_err), "the record has no key");
        } else {
            rv->kjson = json_loadb(k, klen, JSON_DECODE_ANY, &je);
            if (rv->kjson == NULL)
                cql_textf(rv->kjson_err, sizeof(rv->kjson_err), "the key is not JSON (%s)",
                          je.text);
        }
    }
    if (rv->kjson == NULL) {
        if (strcmp(rv->kjson_err, "the record has no key") == 0) {
            memset(out, 0, sizeof(*out));
            return 0;
        }
        cql_textf(errstr, errstr_size, "column '%s' (%s): %s", mc->column, mc->spec, rv->kjson_err);
        return -1;
    }
    cur = rv->kjson;
    for (size_t k = 0; k < mc->npath && cur; k++) {
        if (json_is_object(cur)) {
            cur = json_object_get(cur, mc->path[k]);
        } else if (json_is_array(cur)) {
            char *end;
            long v = strtol(mc->path[k], &end, 10);
            cur = *end == '\0' && v >= 0 ? json_array_get(cur, (size_t)v) : NULL;
        } else if (json_is_null(cur)) {
            cur = NULL;
        } else {
            cql_textf(errstr, errstr_size, "column '%s' (%s): key field '%s' is not an object",
                      mc->column, mc->spec, mc->path[k]);
            return -1;
        }
    }
    if (cur == NULL)
        memset(out, 0, sizeof(*out));
    else
        src_from_json(cur, out);
    return 0;
}

/* The value row of the record (NULL with *why when it has none). */
static const struct spoke_row *value_row(struct cs_state *st, struct rec_view *rv)
{
    if (!rv->vrow_done) {
        rv->vrow_done = 1;
        if (st->api->record_value_forms(rv->rec) == 0) {
            rv->vwhy = "the value is null (a tombstone; deletes are not supported)";
            return NULL;
        }
        rv->vrow = st->api->record_value_row(rv->rec, &rv->vwhy);
        if (rv->vrow == NULL && rv->vwhy == NULL)
            rv->vwhy = "the value is not a JSON object";
    }
    return rv->vrow;
}

/* The source of mapping column ci for this record. */
static int source(struct cs_state *st, struct cs_stmt *s, struct rec_view *rv, size_t ci,
                  struct cql_src *out, char *errstr, size_t errstr_size)
{
    const struct spoke_host_api *api = st->api;
    const struct cql_map_col *mc = &s->map.cols[ci];
    memset(out, 0, sizeof(*out));
    switch (mc->src) {
    case CQL_MAP_VALUE_PATH: {
        const struct spoke_row *row = value_row(st, rv);
        if (row == NULL) {
            cql_textf(errstr, errstr_size, "column '%s' (%s): %s", mc->column, mc->spec, rv->vwhy);
            return -1;
        }
        return value_path(st, s, row, ci, out, errstr, errstr_size);
    }
    case CQL_MAP_VALUE: {
        size_t n = 0;
        const void *v = api->record_value_bytes(rv->rec, &n);
        if (v) {
            out->kind = CQL_SRC_TEXT;
            out->s = v;
            out->n = n;
        }
        return 0;
    }
    case CQL_MAP_KEY: {
        size_t n = 0;
        const void *k = api->record_key(rv->rec, &n);
        if (k) {
            out->kind = CQL_SRC_TEXT;
            out->s = k;
            out->n = n;
        }
        return 0;
    }
    case CQL_MAP_KEY_PATH:
        return key_path(st, rv, mc, out, errstr, errstr_size);
    case CQL_MAP_HEADER: {
        size_t nh = api->record_header_count(rv->rec);
        for (size_t i = nh; i > 0; i--) {
            const char *name;
            const void *val;
            size_t len;
            if (api->record_header_get(rv->rec, i - 1, &name, &val, &len) == SPOKE_OK &&
                strcmp(name, mc->path[0]) == 0) {
                out->kind = CQL_SRC_TEXT;
                out->s = val ? val : "";
                out->n = len;
                break;
            }
        }
        return 0;
    }
    case CQL_MAP_TIMESTAMP:
        out->kind = CQL_SRC_TIMESTAMP;
        out->i = api->record_timestamp(rv->rec);
        return 0;
    case CQL_MAP_NOW:
        out->kind = CQL_SRC_UUID;
        cql_uuid_v1(&st->uuidgen, out->uuid);
        return 0;
    }
    return 0;
}

/* Encodes the record's bound values for statement k and adds the row. */
int cs_add_row(struct cs_state *st, uint32_t k, const struct spoke_record *rec, char *errstr,
                   size_t errstr_size)
{
    struct cs_stmt *s = &st->stmts[k];
    struct rec_view rv = { .rec = rec };
    size_t start = st->rowbuf.len;
    int rc = SPOKE_OK;

    for (size_t i = 0; i < s->map.n; i++) {
        struct cql_src src;
        if (source(st, s, &rv, i, &src, errstr, errstr_size) < 0) {
            rc = SPOKE_ERR_INVALID;
            break;
        }
        if (cql_bind(&st->rowbuf, s->meta.bind.cols[i].type, &src, s->map.cols[i].column,
                     st->null_unset, errstr, errstr_size) < 0) {
            rc = st->rowbuf.oom ? SPOKE_ERR_NOMEM : SPOKE_ERR_INVALID;
            break;
        }
    }
    json_decref(rv.kjson);
    if (rc == SPOKE_OK && st->client_ts) {
        int64_t ts = wall_us();
        if (ts <= st->last_ts_us)
            ts = st->last_ts_us + 1;
        st->last_ts_us = ts;
        cql_put_i32(&st->rowbuf, 8);
        cql_put_i64(&st->rowbuf, ts);
    }
    if (rc == SPOKE_OK && (st->rowbuf.oom || st->rowbuf.len - start > UINT32_MAX ||
                           st->rowbuf.len > UINT32_MAX)) {
        cql_textf(errstr, errstr_size, "out of memory buffering a row");
        rc = SPOKE_ERR_NOMEM;
    }
    if (rc == SPOKE_OK && st->nrows == st->caprows) {
        size_t ncap = st->caprows ? st->caprows * 2 : 1024;
        struct cs_row *nr = realloc(st->rows, ncap * sizeof(*nr));
        if (nr == NULL) {
            cql_textf(errstr, errstr_size, "out of memory buffering a row");
            rc = SPOKE_ERR_NOMEM;
        } else {
            st->rows = nr;
            st->caprows = ncap;
        }
    }
    if (rc != SPOKE_OK) {
        st->rowbuf.len = start;
        st->rowbuf.oom = 0;
        return rc;
    }
    st->rows[st->nrows++] = (struct cs_row){ rec, k, (uint32_t)start,
                                             (uint32_t)(st->rowbuf.len - start) };
    return SPOKE_OK;
}
/* The statement for a record in the no-mapping form: one per field list.
 * SPOKE_OK with *k, SPOKE_RETRY, or an error for this record. */
int cs_stmt_for_record(struct cs_state *st, const struct spoke_record *rec, uint32_t *k,
                           char *errstr, size_t errstr_size)
{
    const struct spoke_host_api *api = st->api;
    struct rec_view rv = { .rec = rec };
    const struct spoke_row *row = value_row(st, &rv);
    const struct spoke_schema *sc;
    size_t n;
    int rc;

    if (row == NULL || (sc = api->row_schema(row)) == NULL) {
        cql_textf(errstr, errstr_size, "%s (without mapping, each field of the value is a column)",
                  row ? "the value is a list, not an object" : rv.vwhy);
        return SPOKE_ERR_INVALID;
    }
    for (size_t i = 0; i < sizeof(st->shapes) / sizeof(st->shapes[0]); i++)
        if (st->shapes[i].schema == sc) {
            *k = st->shapes[i].stmt;
            goto found;
        }
    n = api->schema_count(sc);
    if (n == 0) {
        cql_textf(errstr, errstr_size, "the value has no fields");
        return SPOKE_ERR_INVALID;
    }
    *k = UINT32_MAX;
    for (size_t s = 0; s < st->nstmts && *k == UINT32_MAX; s++) {
        const struct cql_mapping *m = &st->stmts[s].map;
        size_t i;
        if (m->n != n)
            continue;
        for (i = 0; i < n; i++)
            if (strcmp(m->cols[i].path[0], api->schema_name(sc, i)) != 0)
                break;
        if (i == n)
            *k = (uint32_t)s;
    }
    if (*k == UINT32_MAX) {
        struct cql_mapping m = { 0 };
        if (st->nstmts >= CS_MAX_STMTS) {
            cql_textf(errstr, errstr_size, "more than %d different field lists: set mapping",
                      CS_MAX_STMTS);
            return SPOKE_ERR_INVALID;
        }
        for (size_t i = 0; i < n; i++)
            if (cql_mapping_add_field(&m, api->schema_name(sc, i)) < 0) {
                cql_mapping_free(&m);
                cql_textf(errstr, errstr_size, "out of memory");
                return SPOKE_ERR_NOMEM;
            }
        int idx = cs_stmt_add(st, &m);
        if (idx < 0) {
            cql_mapping_free(&m);
            cql_textf(errstr, errstr_size, "out of memory");
            return SPOKE_ERR_NOMEM;
        }
        *k = (uint32_t)idx;
    }
    {
        struct cs_shape *sh = &st->shapes[st->next_shape++ % 16];
        if (sh->schema)
            api->schema_unref(sh->schema);
        sh->schema = (struct spoke_schema *)sc;
        api->schema_ref(sh->schema);
        sh->stmt = *k;
    }
found:
    if (st->stmts[*k].state == S_FAILED) {
        cql_textf(errstr, errstr_size, "no INSERT for the fields of this record: %s",
                  st->stmts[*k].fail);
        return SPOKE_ERR_INVALID;
    }
    if (st->stmts[*k].has_meta)
        return SPOKE_OK;
    if ((rc = cs_connect(st)) != SPOKE_OK) {
        cql_textf(errstr, errstr_size, "%s", st->fatal ? st->fatal_msg : st->conn_err);
        return rc;
    }
    rc = cs_wait_prepared(st, *k, errstr, errstr_size);
    if (rc != SPOKE_OK)
        return rc;
    if (st->stmts[*k].state == S_FAILED) {
        cql_textf(errstr, errstr_size, "no INSERT for the fields of this record: %s",
                  st->stmts[*k].fail);
        return SPOKE_ERR_INVALID;
    }
    return SPOKE_OK;
}
