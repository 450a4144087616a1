/*
 * aggregator - a stateful transform: per-group aggregates over typed rows.
 *
 * Each record's value is read as a row (a row set upstream, or bytes holding
 * a JSON object, which the host converts once). The record is absorbed
 * (SPOKE_DROP) into groups keyed by the `group.by` fields, and rows holding
 * the group key, the aggregate columns and a timestamp are emitted
 * according to `emit`.
 *
 * Two semantics:
 *  - stream: every record is one more contribution (events: RSVPs, trips);
 *  - table: a record replaces the previous contribution of its entity
 *    (`entity.key`), which may move to another group (gauges: bikes
 *    available per station, totalled per postcode). The old contribution is
 *    retracted and the new one added, so totals never accumulate polls.
 *
 * Per record in the steady state (group and entity known) nothing is
 * allocated and nothing is formatted: the key fields are hashed from the
 * row's values and compared in place against the stored keys of
 * open-addressing tables (a key is encoded only when a group or entity is
 * created), and the aggregate cells are updated in place. Field indices are
 * resolved once per input schema.
 *
 * Tombstones (a record with a null value) follow Kafka's compacted-topic
 * and KTable semantics: with table semantics, the one whose record key
 * names an entity (entity.key a single string field) retracts that
 * entity's contribution and forgets it; with stream semantics they are
 * ignored and counted, as a Kafka Streams stream aggregation ignores
 * records with a null value.
 *
 * Ack protocol: the host acknowledges an absorbed record only once a
 * snapshot covering it is durable (aggregator_snap.c serializes the whole
 * state, so a restart resumes with exactly the same totals).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator.h"

static const char *const agg_semantics_allowed[] = { "stream", "table", NULL };
static const char *const agg_window_allowed[] = { "none", "tumbling", "hopping", NULL };
static const char *const agg_time_allowed[] = { "event", "processing", NULL };
static const char *const agg_table_order_allowed[] = { "event", "arrival", NULL };
static const char *const agg_emit_allowed[] = { "update", "complete", "final", NULL };
static const char *const agg_order_allowed[] = { "desc", "asc", NULL };
static const char *const agg_nulls_allowed[] = { "refuse", "group", NULL };

static const struct spoke_config_field agg_config[] = {
    { .name = "group.by", .type = SPOKE_CFG_LIST,
      .doc = "Fields whose values form the group key (string, int, bool or timestamp); "
             "none: a single group for all records", .max = AGG_MAX_KEY_FIELDS },
    { .name = "group.by.nulls", .type = SPOKE_CFG_STRING, .default_value = "refuse",
      .doc = "A record whose group.by field is null: refuse it (an error: the connector "
             "fails, or with errors.tolerance all the record is skipped) or group it (the "
             "nulls of a field form one group, as in SQL's GROUP BY)",
      .allowed = agg_nulls_allowed },
    { .name = "aggregates", .type = SPOKE_CFG_LIST, .flags = SPOKE_CFG_REQUIRED,
      .doc = "Output columns, each name=function(field) with function count (count() "
             "counts records), sum, avg, min, max, variance, stddev (sample), var_pop, "
             "stddev_pop (population), first or last", .min = 1, .max = AGG_MAX_AGGS },
    { .name = "semantics", .type = SPOKE_CFG_STRING, .default_value = "stream",
      .doc = "stream: every record counts; table: a record replaces the previous "
             "contribution of its entity (entity.key)", .allowed = agg_semantics_allowed },
    { .name = "entity.key", .type = SPOKE_CFG_LIST,
      .doc = "Table semantics: fields naming the entity whose latest record counts "
             "(e.g. stationCode)", .max = AGG_MAX_KEY_FIELDS },
    { .name = "time", .type = SPOKE_CFG_STRING,
      .doc = "Time that places records in windows and orders first/last: event "
             "(time.field) or processing (wall clock); default: event when time.field is "
             "set, else processing", .allowed = agg_time_allowed },
    { .name = "table.order", .type = SPOKE_CFG_STRING,
      .doc = "Table semantics with event time: which record of an entity counts: event (the "
             "one with the latest time.field; an older one is ignored as stale) or arrival "
             "(the last to arrive, whatever its time: right for a polled snapshot, whose "
             "latest poll is the truth); default: event", .allowed = agg_table_order_allowed },
    { .name = "time.field", .type = SPOKE_CFG_STRING,
      .doc = "Event time field: a timestamp, or an int of epoch milliseconds",
      .min = 1, .max = AGG_MAX_NAME },
    { .name = "window", .type = SPOKE_CFG_STRING, .default_value = "none",
      .doc = "none: running totals; tumbling: consecutive windows of window.size.ms; "
             "hopping: windows of window.size.ms starting every window.advance.ms",
      .allowed = agg_window_allowed },
    { .name = "window.size.ms", .type = SPOKE_CFG_LONG,
      .doc = "Window length (ms), for tumbling and hopping windows", .min = 1, .max = 1e12 },
    { .name = "window.advance.ms", .type = SPOKE_CFG_LONG,
      .doc = "Hopping windows: time between window starts (ms), at most window.size.ms",
      .min = 1, .max = 1e12 },
    { .name = "allowed.lateness.ms", .type = SPOKE_CFG_LONG, .default_value = "0",
      .doc = "A window closes when the watermark (highest event time seen minus this) "
             "passes its end; later records for it are dropped (late_dropped)",
      .min = 0, .max = 1e12 },
    { .name = "emit", .type = SPOKE_CFG_STRING, .default_value = "update",
      .doc = "update: rows of the groups that changed; complete: every group every "
             "emit.interval.ms; final: each group once, when its window closes",
      .allowed = agg_emit_allowed },
    { .name = "emit.interval.ms", .type = SPOKE_CFG_LONG, .default_value = "1000",
      .doc = "update: changes are coalesced and emitted this often (0: after every "
             "record); complete: how often the whole table is emitted",
      .min = 0, .max = 86400000 },
    { .name = "emit.on.idle", .type = SPOKE_CFG_BOOL, .default_value = "false",
      .doc = "update: also emit the changed groups as soon as no input record waits, "
             "so a burst of input (e.g. one poll's stations) gives one row per changed "
             "group at once; under steady input, rows still come every emit.interval.ms" },
    { .name = "top.by", .type = SPOKE_CFG_STRING,
      .doc = "complete and final: order rows by this aggregate column (default: by "
             "group key)", .min = 1, .max = AGG_MAX_NAME },
    { .name = "top.n", .type = SPOKE_CFG_LONG, .default_value = "0",
      .doc = "complete and final: emit only the first N groups in top.by order, per "
             "window (0: all)", .min = 0, .max = 100000000 },
    { .name = "top.order", .type = SPOKE_CFG_STRING, .default_value = "desc",
      .doc = "top.by order: desc (largest first) or asc; nulls always last",
      .allowed = agg_order_allowed },
    { .name = "max.groups", .type = SPOKE_CFG_LONG, .default_value = "100000",
      .doc = "Most groups held over all open windows; a record needing one more is "
             "refused with an error (groups_refused)", .min = 1, .max = 1e9 },
    { .name = "max.entities", .type = SPOKE_CFG_LONG, .default_value = "1000000",
      .doc = "Table semantics: most entities held; a record of one more is refused with "
             "an error (entities_refused)", .min = 1, .max = 1e9 },
    { 0 }
};

/* Event times are bounded so that window arithmetic never overflows. */
#define AGG_TIME_LIMIT ((int64_t)1 << 53)

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                 */
/* ------------------------------------------------------------------------ */

static void agg_destroy(void *vst)
{
    struct agg_state *st = vst;
    if (!st)
        return;
    agg_state_free(st);
    agg_config_free(st);
    free(st->sbufs);
    free(st);
}

static int agg_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                    const struct spoke_config *cfg, void **out, char *err, size_t errsz)
{
    struct agg_state *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, errsz, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    st->api = api;
    st->inst = inst;
    int rc = agg_configure(st, cfg, err, errsz);
    if (rc != SPOKE_OK)
        goto fail;
    if (agg_state_init(st) < 0)
        goto nomem;
    /* String buffers a table contribution may need, per window and value
     * slot, allocated before a record changes anything. */
    if (st->semantics == AGG_TABLE && st->has_string_vals) {
        st->sbufs = calloc(st->maxwin * st->nvals, sizeof(*st->sbufs));
        if (!st->sbufs)
            goto nomem;
    }
    *out = st;
    return SPOKE_OK;
nomem:
    snprintf(err, errsz, "out of memory");
    rc = SPOKE_ERR_NOMEM;
fail:
    agg_destroy(st);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Reading a record                                                          */
/* ------------------------------------------------------------------------ */

/* Row indices of the configured fields for the row's schema: resolved once
 * per schema and cached, holding a reference so the address cannot be
 * reused by another schema while cached. */
static const int *row_fields(struct agg_state *st, const struct spoke_schema *s)
{
    const struct spoke_host_api *api = st->api;
    for (size_t i = 0; i < AGG_SCHEMA_CACHE; i++)
        if (st->scache[i].schema == s)
            return st->scache[i].idx;
    struct agg_schema_entry *ce = &st->scache[st->scache_next++ % AGG_SCHEMA_CACHE];
    if (ce->schema)
        api->schema_unref((struct spoke_schema *)ce->schema);
    /* A reference count is not part of a schema's value: taking one on a
     * schema borrowed as const changes nothing a reader can see. */
    api->schema_ref((struct spoke_schema *)s);
    ce->schema = s;
    for (size_t f = 0; f < st->nfields; f++)
        ce->idx[f] = api->schema_index(s, st->fields[f].name);
    return ce->idx;
}

static const char *role_name(unsigned roles)
{
    if (roles & AGG_ROLE_GROUP)
        return "group.by";
    if (roles & AGG_ROLE_ENTITY)
        return "entity.key";
    if (roles & AGG_ROLE_TIME)
        return "time.field";
    return "aggregated";
}

static void forget_types(struct agg_state *st)
{
    if (!st->types_pending)
        return;
    memset(st->ntype, 0, st->nfields);
    st->types_pending = 0;
}

static void commit_types(struct agg_state *st)
{
    if (!st->types_pending)
        return;
    for (size_t f = 0; f < st->nfields; f++)
        if (st->ntype[f]) {
            st->fields[f].type = st->ntype[f];
            st->ntype[f] = 0;
            st->type_epoch++;
        }
    st->types_pending = 0;
}

/* A value whose type differs from what the field held so far: the first
 * value of the field, an INT in a DOUBLE field, a promotion to DOUBLE, or
 * an error. Off the usual path. */
static int type_change(struct agg_state *st, size_t f, int t, char *err, size_t errsz)
{
    const struct agg_field *fd = &st->fields[f];
    if (t < SPOKE_TYPE_NULL || t > SPOKE_TYPE_MAP) {
        snprintf(err, errsz, "field '%s' has an unknown type (%d)", fd->name, t);
        return SPOKE_ERR_TYPE;
    }
    if (!(fd->allowed & AGG_T(t))) {
        char a[96] = "";
        size_t n = 0;
        for (int k = SPOKE_TYPE_BOOL; k <= SPOKE_TYPE_MAP; k++)
            if (fd->allowed & AGG_T(k)) {
                int w = snprintf(a + n, sizeof(a) - n, "%s%s", n ? " or " : "", agg_type_name(k));
                if (w > 0 && (size_t)w < sizeof(a) - n)
                    n += (size_t)w;
            }
        snprintf(err, errsz, "field '%s' (%s) is %s, expected %s", fd->name, role_name(fd->roles),
                 agg_type_name(t), a);
        return SPOKE_ERR_TYPE;
    }
    if (fd->type == SPOKE_TYPE_NULL) {
        st->ntype[f] = (uint8_t)t;     /* first value: fixes the type */
        st->types_pending = 1;
    } else if (fd->type == SPOKE_TYPE_DOUBLE && t == SPOKE_TYPE_INT) {
        /* an int in a field that already holds doubles */
    } else if (fd->type == SPOKE_TYPE_INT && t == SPOKE_TYPE_DOUBLE &&
               !(fd->roles & (AGG_ROLE_GROUP | AGG_ROLE_ENTITY | AGG_ROLE_TIME))) {
        st->ntype[f] = SPOKE_TYPE_DOUBLE;  /* promote: the columns become DOUBLE */
        st->types_pending = 1;
    } else {
        snprintf(err, errsz, "field '%s' is %s, but earlier records had %s", fd->name,
                 agg_type_name(t), agg_type_name(fd->type));
        return SPOKE_ERR_TYPE;
    }
    return SPOKE_OK;
}

/* Reads every configured field into st->cur, checking presence and types. */
static int read_fields(struct agg_state *st, const struct spoke_row *row, const int *idx,
                       char *err, size_t errsz)
{
    const struct spoke_host_api *api = st->api;
    size_t nv = 0;
    const struct spoke_value *vals = NULL;
    if (SPOKE_API_HAS(api, row_values) && api->row_values)
        vals = api->row_values(row, &nv);  /* one call for the whole row */
    for (size_t f = 0; f < st->nfields; f++) {
        struct agg_val *v = &st->cur[f];
        int ix = idx[f];
        if (ix < 0) {
            snprintf(err, errsz, "field '%s' (%s) is missing", st->fields[f].name,
                     role_name(st->fields[f].roles));
            return SPOKE_ERR_INVALID;
        }
        const struct spoke_value *x = (size_t)ix < nv ? &vals[ix] : NULL;
        int t = x ? x->type : (int)api->row_type(row, (size_t)ix);
        v->type = (uint8_t)t;
        switch (t) {
        case SPOKE_TYPE_INT:
            v->u.i = x ? x->u.i : api->row_get_int(row, (size_t)ix);
            break;
        case SPOKE_TYPE_STRING: {
            size_t len = 0;
            if (x) {
                v->u.s.p = (char *)x->u.s.p;
                len = x->u.s.len;
            } else {
                v->u.s.p = (char *)api->row_get_string(row, (size_t)ix, &len);
            }
            if (len > UINT32_MAX / 2) {
                snprintf(err, errsz, "field '%s' is a string of %zu bytes", st->fields[f].name,
                         len);
                return SPOKE_ERR_RANGE;
            }
            v->u.s.len = (uint32_t)len;
            v->u.s.cap = 0;
            break;
        }
        case SPOKE_TYPE_TIMESTAMP:
            v->u.i = x ? x->u.i : api->row_get_timestamp(row, (size_t)ix);
            break;
        case SPOKE_TYPE_DOUBLE:
            v->u.d = x ? x->u.d : api->row_get_double(row, (size_t)ix);
            if (!isfinite(v->u.d)) {
                snprintf(err, errsz, "field '%s' is not a finite number", st->fields[f].name);
                return SPOKE_ERR_RANGE;
            }
            if (v->u.d == 0)
                v->u.d = 0;  /* -0.0 and 0.0 are one value */
            break;
        case SPOKE_TYPE_BOOL:
            v->u.i = (x ? x->u.b : api->row_get_bool(row, (size_t)ix)) != 0;
            break;
        case SPOKE_TYPE_NULL:
            if (st->null_groups &&
                (st->fields[f].roles & (AGG_ROLE_GROUP | AGG_ROLE_ENTITY | AGG_ROLE_TIME)) ==
                    AGG_ROLE_GROUP) {
                /* A null group field: one group of its own (keyed by the
                 * type byte and 8 zero bytes, like an integer). */
                v->type = SPOKE_TYPE_NULL;
                v->u.i = 0;
                continue;
            }
            if (st->fields[f].roles & (AGG_ROLE_GROUP | AGG_ROLE_ENTITY | AGG_ROLE_TIME)) {
                snprintf(err, errsz, "field '%s' (%s) is null", st->fields[f].name,
                         role_name(st->fields[f].roles));
                return SPOKE_ERR_INVALID;
            }
            v->u.i = 0;
            continue;  /* an aggregated null is skipped, like SQL */
        default:
            break;     /* LIST, MAP: refused by type_change */
        }
        if (t != st->fields[f].type) {
            int rc = type_change(st, f, t, err, errsz);
            if (rc != SPOKE_OK)
                return rc;
        }
    }
    return SPOKE_OK;
}

static size_t key_field_bytes(const struct agg_val *v)
{
    return v->type == SPOKE_TYPE_STRING ? 5 + (size_t)v->u.s.len
           : v->type == SPOKE_TYPE_BOOL ? 2 : 9;
}

/* A key over AGG_MAX_KEY_BYTES: its size and the field that makes it so
 * (only strings are long; each other value takes at most 9 bytes). */
static int key_too_long(const struct agg_state *st, const int *fields, size_t nf,
                        const char *what, char *err, size_t errsz)
{
    size_t total = 0, top = 0;
    for (size_t i = 0; i < nf; i++) {
        total += key_field_bytes(&st->cur[fields[i]]);
        if (key_field_bytes(&st->cur[fields[i]]) > key_field_bytes(&st->cur[fields[top]]))
            top = i;
    }
    const struct agg_field *fd = &st->fields[fields[top]];
    snprintf(err, errsz, "%s key is %zu bytes, more than the %d allowed (the %s values "
             "together, a string taking its length + 5): field '%s' is a string of %u bytes",
             what, total, AGG_MAX_KEY_BYTES, fields == st->gfields ? "group.by" : "entity.key",
             fd->name, (unsigned)st->cur[fields[top]].u.s.len);
    return SPOKE_ERR_RANGE;
}

/* Encodes key fields (type byte, then 8 bytes, 1 byte for BOOL, or a 4-byte
 * length and the bytes for STRING), at most AGG_MAX_KEY_BYTES. */
static int encode_key(struct agg_state *st, const int *fields, size_t nf, uint8_t *out,
                      size_t *len, const char *what, char *err, size_t errsz)
{
    size_t n = 0;
    for (size_t i = 0; i < nf; i++) {
        const struct agg_val *v = &st->cur[fields[i]];
        size_t need = key_field_bytes(v);
        if (n + need > AGG_MAX_KEY_BYTES)
            return key_too_long(st, fields, nf, what, err, errsz);
        out[n++] = v->type;
        if (v->type == SPOKE_TYPE_STRING) {
            memcpy(out + n, &v->u.s.len, 4);
            n += 4;
            if (v->u.s.len <= 16) {
                /* Codes and postcodes: a loop beats a memcpy call. */
                for (uint32_t k = 0; k < v->u.s.len; k++)
                    out[n + k] = (uint8_t)v->u.s.p[k];
            } else {
                memcpy(out + n, v->u.s.p, v->u.s.len);
            }
            n += v->u.s.len;
        } else if (v->type == SPOKE_TYPE_BOOL) {
            out[n++] = (uint8_t)v->u.i;
        } else {
            memcpy(out + n, &v->u.i, 8);
            n += 8;
        }
    }
    *len = n;
    return SPOKE_OK;
}

/* Whether the record's key fields equal an encoded key, without encoding
 * them: the usual table update (an entity staying in its group) needs no
 * group key at all. */
static int key_matches(const struct agg_state *st, const int *fields, size_t nf,
                       const uint8_t *key, uint32_t klen)
{
    uint32_t off = 0;
    for (size_t i = 0; i < nf; i++) {
        const struct agg_val *v = &st->cur[fields[i]];
        if (off >= klen || key[off] != v->type)
            return 0;
        off++;
        if (v->type == SPOKE_TYPE_STRING) {
            uint32_t len;
            if (klen - off < 4)
                return 0;
            memcpy(&len, key + off, 4);
            off += 4;
            if (len != v->u.s.len || klen - off < len ||
                !agg_key_equal(key + off, (const uint8_t *)v->u.s.p, len))
                return 0;
            off += len;
        } else if (v->type == SPOKE_TYPE_BOOL) {
            if (klen - off < 1 || key[off] != (uint8_t)v->u.i)
                return 0;
            off++;
        } else {
            int64_t x;
            if (klen - off < 8)
                return 0;
            memcpy(&x, key + off, 8);
            if (x != v->u.i)
                return 0;
            off += 8;
        }
    }
    return off == klen;
}

/* ------------------------------------------------------------------------ */
/* Applying a record                                                         */
/* ------------------------------------------------------------------------ */

#define WF_SKIP  0x1u   /* table: stale for this window */
#define WF_NEWG  0x2u   /* group created for this record */
#define WF_NEWE  0x4u   /* entity created for this record */

/* The key hash from the record's values (equal to agg_key_hash of the
 * encoded key), so that looking a key up never builds it. */
static uint64_t hash_cur(const struct agg_state *st, const int *fields, size_t nf, int64_t win)
{
    uint64_t h = agg_win_seed(win);
    for (size_t i = 0; i < nf; i++) {
        const struct agg_val *v = &st->cur[fields[i]];
        if (v->type == SPOKE_TYPE_STRING) {
            h = agg_field_hash(h, v->type, v->u.s.p, v->u.s.len);
        } else if (v->type == SPOKE_TYPE_BOOL) {
            uint8_t b = (uint8_t)v->u.i;
            h = agg_field_hash(h, v->type, &b, 1);
        } else {
            h = agg_field_hash(h, v->type, &v->u.i, 8);
        }
    }
    return h;
}

/* The node of the record's key (fields) in window win, or NULL. */
static struct agg_node *find_cur(const struct agg_state *st, const struct agg_table *t,
                                 uint64_t hash, int64_t win, const int *fields, size_t nf)
{
    if (!t->slots)
        return NULL;
    size_t i = hash & t->mask;
    for (;;) {
        const struct agg_slot *s = &t->slots[i];
        if (!s->node)
            return NULL;
        if (s->hash == hash && s->node->win == win &&
            key_matches(st, fields, nf, s->node->key, s->node->klen))
            return s->node;
        i = (i + 1) & t->mask;
    }
}

/* Encodes the record's group (or entity) key once, when a node is created
 * or a message names it. */
static int ensure_key(struct agg_state *st, int entity, char *err, size_t errsz)
{
    int *ready = entity ? &st->eready : &st->gready;
    if (*ready)
        return SPOKE_OK;
    int rc = entity ? encode_key(st, st->efields, st->nef, st->ekey, &st->eklen, "entity", err,
                                 errsz)
                    : encode_key(st, st->gfields, st->ngf, st->gkey, &st->gklen, "group", err,
                                 errsz);
    if (rc != SPOKE_OK) {
        st->m.invalid++;
        return rc;
    }
    *ready = 1;
    return SPOKE_OK;
}

static int refuse(struct agg_state *st, int entity, char *err, size_t errsz)
{
    char text[128];
    int rc = ensure_key(st, entity, err, errsz);
    if (rc != SPOKE_OK)
        return rc;
    if (entity) {
        agg_key_text(st->ekey, (uint32_t)st->eklen, st->nef > 1, text, sizeof(text));
        st->m.entities_refused++;
        snprintf(err, errsz, "max.entities (%lld) reached: entity '%s' refused",
                 (long long)st->max_entities, text);
    } else {
        agg_key_text(st->gkey, (uint32_t)st->gklen, st->key_escape, text, sizeof(text));
        st->m.groups_refused++;
        snprintf(err, errsz, "max.groups (%lld) reached: group '%s' refused",
                 (long long)st->max_groups, text);
    }
    return SPOKE_ERR_RANGE;
}

static void touch_ts(struct agg_group *g, int64_t t, int event)
{
    if (event && (!g->has_ts || t > g->ts)) {
        g->ts = t;
        g->has_ts = 1;
    }
}

/* Creates the record's group in window i (hash gh) into *g. */
static int new_group(struct agg_state *st, size_t i, uint64_t gh, struct agg_group **g,
                     char *err, size_t errsz)
{
    int rc = ensure_key(st, 0, err, errsz);
    if (rc != SPOKE_OK)
        return rc;
    struct agg_window *w = agg_window_get(st, st->wstarts[i], 1);
    *g = w ? agg_group_new(st, w, gh, st->gkey, (uint32_t)st->gklen) : NULL;
    if (!*g) {
        snprintf(err, errsz, "out of memory creating a group");
        return SPOKE_ERR_NOMEM;
    }
    return SPOKE_OK;
}

static int apply_stream(struct agg_state *st, size_t nw, int64_t t, char *err, size_t errsz)
{
    size_t need = 0;
    for (size_t i = 0; i < nw; i++) {
        uint64_t gh = hash_cur(st, st->gfields, st->ngf, st->wstarts[i]);
        st->wgroups[i] = (struct agg_group *)find_cur(st, &st->groups, gh, st->wstarts[i],
                                                      st->gfields, st->ngf);
        need += st->wgroups[i] == NULL;
    }
    if (need && st->ngroups + need > (size_t)st->max_groups)
        return refuse(st, 0, err, errsz);
    for (size_t i = 0; i < nw; i++) {
        st->wflag[i] = 0;
        if (st->wgroups[i])
            continue;
        int rc = new_group(st, i, hash_cur(st, st->gfields, st->ngf, st->wstarts[i]),
                           &st->wgroups[i], err, errsz);
        if (rc != SPOKE_OK) {
            for (size_t k = 0; k < i; k++)  /* the groups this record created */
                if (st->wflag[k] & WF_NEWG)
                    agg_group_free(st, st->wgroups[k]);
            return rc;
        }
        st->wflag[i] = WF_NEWG;
    }
    uint64_t seq = ++st->seq;
    int event = st->time == AGG_TIME_EVENT;
    for (size_t i = 0; i < nw; i++) {
        struct agg_group *g = st->wgroups[i];
        agg_cells_add(st, g, st->cur, 0, 1, t, seq);
        g->nrec++;
        touch_ts(g, t, event);
        agg_mark_dirty(st, g);
    }
    return SPOKE_OK;
}

/* Table semantics: allocates every string buffer the new contribution needs
 * in window i, so that storing it cannot fail. */
static int prepare_strings(struct agg_state *st, size_t i, const struct agg_entity *e)
{
    char **bufs = st->sbufs + i * st->nvals;
    for (size_t s = 0; s < st->nvals; s++) {
        const struct agg_val *v = &st->cur[st->vfield[s]];
        bufs[s] = NULL;
        if (v->type != SPOKE_TYPE_STRING)
            continue;
        uint32_t have = e && e->vals[s].type == SPOKE_TYPE_STRING ? e->vals[s].u.s.cap : 0;
        if (have > v->u.s.len)
            continue;
        uint32_t cap = v->u.s.len + 1 < 16 ? 16 : v->u.s.len + 1;
        if (!(bufs[s] = malloc(cap))) {
            for (size_t k = 0; k < s; k++) {
                free(bufs[k]);
                bufs[k] = NULL;
            }
            return -1;
        }
    }
    return 0;
}

static void store_entity(struct agg_state *st, size_t i, struct agg_entity *e)
{
    char **bufs = st->sbufs ? st->sbufs + i * st->nvals : NULL;
    for (size_t s = 0; s < st->nvals; s++) {
        const struct agg_val *v = &st->cur[st->vfield[s]];
        if (bufs && bufs[s]) {
            uint32_t cap = v->u.s.len + 1 < 16 ? 16 : v->u.s.len + 1;
            agg_val_release(st, &e->vals[s]);
            e->vals[s].type = SPOKE_TYPE_STRING;
            e->vals[s].u.s.p = bufs[s];
            e->vals[s].u.s.cap = cap;
            e->vals[s].u.s.len = v->u.s.len;
            memcpy(bufs[s], v->u.s.p, v->u.s.len);
            bufs[s][v->u.s.len] = '\0';
            st->bytes += cap;
            bufs[s] = NULL;
        } else {
            agg_val_store(st, &e->vals[s], v);  /* fits: cannot allocate */
        }
    }
}

static int values_equal(const struct agg_state *st, const struct agg_entity *e)
{
    for (size_t s = 0; s < st->nvals; s++) {
        const struct agg_val *a = &e->vals[s], *b = &st->cur[st->vfield[s]];
        if (a->type != b->type)
            return 0;
        if (a->type == SPOKE_TYPE_STRING || a->type == SPOKE_TYPE_DOUBLE) {
            if (!agg_val_equal(a, b))
                return 0;
        } else if (a->u.i != b->u.i) {
            return 0;
        }
    }
    return 1;
}

/* Makes sure adding one value to each multiset of g cannot allocate. */
static int reserve_msets(struct agg_state *st, struct agg_group *g)
{
    for (size_t m = 0; m < st->nmsets; m++) {
        struct agg_mset *ms = &g->msets[m];
        if (ms->n < ms->cap)
            continue;
        size_t cap = ms->cap ? ms->cap * 2 : 4;
        struct agg_mset_item *ni = realloc(ms->items, cap * sizeof(*ni));
        if (!ni)
            return -1;
        st->bytes += (int64_t)((cap - ms->cap) * sizeof(*ni));
        ms->items = ni;
        ms->cap = cap;
    }
    return 0;
}

#define AGG_WARN_STALE 0x1u
#define AGG_WARN_LATE  0x2u

/* Logs the first record of a kind dropped for its time: counters alone do
 * not say that records are going nowhere, nor why. */
static void warn_dropped(struct agg_state *st, unsigned bit, int64_t t, int64_t ref)
{
    if (st->drop_warned & bit)
        return;
    st->drop_warned |= bit;
    if (bit == AGG_WARN_STALE)
        st->api->log(st->inst, SPOKE_LOG_WARN, "a record at %lld ms is older than its "
                     "entity's (%lld ms) and is ignored; counted in stale_ignored, logged "
                     "once (with table.order: arrival the last record to arrive counts)",
                     (long long)t, (long long)ref);
    else
        st->api->log(st->inst, SPOKE_LOG_WARN, "a record at %lld ms falls in no open window "
                     "(windows ending at or before %lld ms are closed, allowed.lateness.ms "
                     "%lld) and is dropped; counted in late_dropped, logged once",
                     (long long)t, (long long)ref, (long long)st->lateness_ms);
}

/* Undoes the allocations of a refused table record. */
static void undo_table(struct agg_state *st, size_t upto)
{
    for (size_t i = 0; i < upto; i++) {
        if (st->wflag[i] & WF_SKIP)
            continue;
        if (st->sbufs)
            for (size_t s = 0; s < st->nvals; s++) {
                free(st->sbufs[i * st->nvals + s]);
                st->sbufs[i * st->nvals + s] = NULL;
            }
        if ((st->wflag[i] & WF_NEWE) && st->wents[i])
            agg_entity_free(st, st->wents[i]);
        if ((st->wflag[i] & WF_NEWG) && st->wgroups[i])
            agg_group_free(st, st->wgroups[i]);
    }
}

static int apply_table(struct agg_state *st, size_t nw, int64_t t, char *err, size_t errsz)
{
    int event = st->time == AGG_TIME_EVENT;
    size_t needg = 0, neede = 0, live = 0;

    /* The usual case, on a short path: one window, an entity already known
     * that stays in its group, no multisets or strings to maintain. */
    if (nw == 1 && st->nmsets == 0 && !st->has_string_vals) {
        int64_t ws = st->wstarts[0];
        uint64_t eh = hash_cur(st, st->efields, st->nef, ws);
        struct agg_entity *e = (struct agg_entity *)find_cur(st, &st->entities, eh, ws,
                                                              st->efields, st->nef);
        if (e && !(event && t < e->t) &&
            key_matches(st, st->gfields, st->ngf, e->group->node.key, e->group->node.klen)) {
            struct agg_group *g = e->group;
            uint64_t seq = ++st->seq;
            if (!values_equal(st, e)) {
                agg_cells_replace(st, g, e->vals, e->t, e->seq, st->cur, t, seq);
                for (size_t s = 0; s < st->nvals; s++)
                    e->vals[s] = st->cur[st->vfield[s]];  /* no strings: a plain copy */
                agg_mark_dirty(st, g);
            } else if (st->has_firstlast || (event && (!g->has_ts || t > g->ts))) {
                agg_mark_dirty(st, g);  /* order or timestamp changed */
            }
            e->t = event ? t : 0;
            e->seq = seq;
            if (st->has_firstlast) {
                agg_entity_unlink(e);
                agg_entity_link(g, e);
            }
            touch_ts(g, t, event);
            return SPOKE_OK;
        }
    }

    /* 1. Look up; nothing changes yet. */
    for (size_t i = 0; i < nw; i++) {
        int64_t ws = st->wstarts[i];
        st->wflag[i] = 0;
        uint64_t eh = hash_cur(st, st->efields, st->nef, ws);
        struct agg_entity *e = (struct agg_entity *)find_cur(st, &st->entities, eh, ws,
                                                              st->efields, st->nef);
        st->wents[i] = e;
        if (e && st->order_event && t < e->t) {
            st->wflag[i] = WF_SKIP;  /* older than what the entity holds */
            continue;
        }
        live++;
        struct agg_group *g = NULL;
        if (e && key_matches(st, st->gfields, st->ngf, e->group->node.key, e->group->node.klen))
            g = e->group;  /* the usual case: same group as before */
        else
            g = (struct agg_group *)find_cur(st, &st->groups,
                                             hash_cur(st, st->gfields, st->ngf, ws), ws,
                                             st->gfields, st->ngf);
        st->wgroups[i] = g;
        needg += g == NULL;
        neede += e == NULL;
    }
    if (live == 0) {
        st->m.stale_ignored++;
        warn_dropped(st, AGG_WARN_STALE, t, st->wents[0] ? st->wents[0]->t : t);
        return SPOKE_DROP;
    }
    if (needg && st->ngroups + needg > (size_t)st->max_groups)
        return refuse(st, 0, err, errsz);
    if (neede && st->nentities + neede > (size_t)st->max_entities)
        return refuse(st, 1, err, errsz);

    /* 2. Allocate what is missing; on failure undo and refuse. */
    for (size_t i = 0; i < nw; i++) {
        if (st->wflag[i] & WF_SKIP)
            continue;
        int64_t ws = st->wstarts[i];
        int rc = SPOKE_OK;
        if (!st->wgroups[i]) {
            rc = new_group(st, i, hash_cur(st, st->gfields, st->ngf, ws), &st->wgroups[i], err,
                           errsz);
            if (rc == SPOKE_OK)
                st->wflag[i] |= WF_NEWG;
        }
        if (rc == SPOKE_OK && !st->wents[i]) {
            rc = ensure_key(st, 1, err, errsz);
            if (rc == SPOKE_OK) {
                st->wents[i] = agg_entity_new(st, ws, hash_cur(st, st->efields, st->nef, ws),
                                              st->ekey, (uint32_t)st->eklen);
                if (st->wents[i])
                    st->wflag[i] |= WF_NEWE;
                else
                    rc = SPOKE_ERR_NOMEM;
            }
        }
        if (rc == SPOKE_OK && (reserve_msets(st, st->wgroups[i]) != 0 ||
                               (st->sbufs && prepare_strings(st, i, st->wents[i]) != 0)))
            rc = SPOKE_ERR_NOMEM;
        if (rc != SPOKE_OK) {
            undo_table(st, i + 1);
            if (rc == SPOKE_ERR_NOMEM)
                snprintf(err, errsz, "out of memory");
            return rc;
        }
    }

    /* 3. Apply: retract the old contribution, add the new one. */
    uint64_t seq = ++st->seq;
    for (size_t i = 0; i < nw; i++) {
        if (st->wflag[i] & WF_SKIP)
            continue;
        struct agg_group *g = st->wgroups[i], *og = NULL;
        struct agg_entity *e = st->wents[i];
        if (st->wflag[i] & WF_NEWE) {
            store_entity(st, i, e);
            agg_cells_add(st, g, st->cur, 0, 1, t, seq);
            agg_msets_add(st, g, st->cur, 0);  /* reserved: cannot fail */
            g->nrec++;
            agg_mark_dirty(st, g);
        } else if (e->group == g) {
            if (!values_equal(st, e)) {
                agg_cells_replace(st, g, e->vals, e->t, e->seq, st->cur, t, seq);
                agg_msets_remove(st, g, e->vals, 1);
                agg_msets_add(st, g, st->cur, 0);
                store_entity(st, i, e);
                agg_mark_dirty(st, g);
            } else if (st->has_firstlast || (event && (!g->has_ts || t > g->ts))) {
                agg_mark_dirty(st, g);  /* order or timestamp changed */
            }
            /* The list order only matters to first/last. */
            if (st->has_firstlast)
                agg_entity_unlink(e);
        } else {
            og = e->group;
            agg_cells_add(st, og, e->vals, 1, -1, e->t, e->seq);
            agg_msets_remove(st, og, e->vals, 1);
            og->nrec--;
            touch_ts(og, t, event);
            agg_mark_dirty(st, og);
            agg_entity_unlink(e);
            store_entity(st, i, e);
            agg_cells_add(st, g, st->cur, 0, 1, t, seq);
            agg_msets_add(st, g, st->cur, 0);
            g->nrec++;
            agg_mark_dirty(st, g);
        }
        e->t = event ? t : 0;
        e->seq = seq;
        if (!e->group)
            agg_entity_link(g, e);
        touch_ts(g, t, event);
        /* A group left without entities: update mode emits it once more
         * (count 0) and then forgets it; the other modes forget it now. */
        if (og && og->nrec == 0 && st->emit != AGG_EMIT_UPDATE)
            agg_group_free(st, og);
    }
    return SPOKE_OK;
}

/* The windows of time twin that are still open, into st->wstarts. */
static size_t open_windows(struct agg_state *st, int64_t twin)
{
    if (st->window == AGG_WIN_NONE) {
        st->wstarts[0] = 0;
        return 1;
    }
    size_t open = 0, nw = agg_windows_of(st, twin, st->wstarts);
    for (size_t i = 0; i < nw; i++)
        if (agg_window_end(st, st->wstarts[i]) > st->close_bound)
            st->wstarts[open++] = st->wstarts[i];
    return open;
}

/* Why tombstones cannot be applied here, or NULL when they can. */
static const char *tombstone_obstacle(const struct agg_state *st)
{
    if (st->semantics != AGG_TABLE)
        return "they need semantics: table";
    if (st->nef != 1)
        return "entity.key has several fields (a tombstone's key names one string)";
    int t = st->fields[st->efields[0]].type;
    if (t != SPOKE_TYPE_STRING && t != SPOKE_TYPE_NULL)
        return "the entity.key field is not a string";
    return NULL;
}

/* Counts an ignored tombstone; each reason (bit) is logged once. */
static int ignore_tombstone(struct agg_state *st, const char *why, unsigned bit)
{
    st->m.tombstones_ignored++;
    if (!(st->tomb_warned & bit)) {
        st->tomb_warned |= bit;
        st->api->log(st->inst, SPOKE_LOG_WARN, "tombstones (records with a null value) are "
                     "ignored: %s; counted in tombstones_ignored", why);
    }
    return SPOKE_DROP;
}

/* Update mode, after each record: emit.interval.ms 0 emits the changed
 * groups at once; emit.on.idle, once no input waits (the end of a burst:
 * one row per changed group instead of one per record). Other emissions
 * come from tick(). */
static void emit_updates(struct agg_state *st)
{
    if (st->emit != AGG_EMIT_UPDATE || (!st->dhead && !st->reemit_all))
        return;
    if (st->interval_ms == 0 || (st->emit_on_idle && st->api->input_backlog(st->inst) == 0))
        agg_emit_dirty(st, NULL);
}

/*
 * A tombstone: a record with a null value. With table semantics and a
 * single string entity.key field, its key names the entity exactly as a
 * row whose field holds that string would (same hash, same comparison), and
 * the entity's contribution is retracted from its group in each open window
 * of the tombstone's time (record timestamp with event time, the wall clock
 * with processing time), as if the entity moved to no group; the entity is
 * then forgotten. Nothing new is stored, so snapshots need nothing more.
 */
static int apply_tombstone(struct agg_state *st, const struct spoke_record *rec, char *err,
                           size_t errsz)
{
    const struct spoke_host_api *api = st->api;
    const char *obstacle = tombstone_obstacle(st);
    if (obstacle)
        return ignore_tombstone(st, obstacle, 1u);
    size_t klen = 0;
    const void *key = api->record_key(rec, &klen);
    if (!key)
        return ignore_tombstone(st, "a tombstone without a key names no entity", 2u);

    int event = st->time == AGG_TIME_EVENT;
    int64_t t = event ? api->record_timestamp(rec) : 0, twin = t;
    if (t > AGG_TIME_LIMIT || t < -AGG_TIME_LIMIT) {
        st->m.invalid++;
        snprintf(err, errsz, "tombstone timestamp %lld ms is out of range", (long long)t);
        return SPOKE_ERR_RANGE;
    }
    if (st->fields[st->efields[0]].type == SPOKE_TYPE_NULL || klen > UINT32_MAX / 2) {
        st->m.tombstones_unknown++;  /* no entity was ever stored, or could be */
        return SPOKE_DROP;
    }
    if (st->time == AGG_TIME_PROCESSING && st->window != AGG_WIN_NONE)
        twin = api->wall_ms();
    size_t open = open_windows(st, twin);
    if (open == 0) {
        st->m.late_dropped++;
        warn_dropped(st, AGG_WARN_LATE, twin, st->close_bound);
        return SPOKE_DROP;
    }

    struct agg_val *kv = &st->cur[st->efields[0]];
    kv->type = SPOKE_TYPE_STRING;
    kv->u.s.p = (char *)key;  /* borrowed for this call only */
    kv->u.s.len = (uint32_t)klen;
    kv->u.s.cap = 0;
    st->gready = st->eready = 0;
    size_t found = 0, applied = 0;
    for (size_t i = 0; i < open; i++) {
        int64_t ws = st->wstarts[i];
        struct agg_entity *e = (struct agg_entity *)find_cur(
            st, &st->entities, hash_cur(st, st->efields, 1, ws), ws, st->efields, 1);
        if (!e)
            continue;
        found++;
        if (st->order_event && t < e->t)
            continue;  /* older than the contribution it would delete */
        struct agg_group *g = e->group;
        agg_cells_add(st, g, e->vals, 1, -1, e->t, e->seq);
        agg_msets_remove(st, g, e->vals, 1);
        g->nrec--;
        touch_ts(g, t, event);
        agg_mark_dirty(st, g);
        agg_entity_free(st, e);
        /* As when an entity moves away: update mode emits the emptied
         * group once more (count 0) and then forgets it. */
        if (g->nrec == 0 && st->emit != AGG_EMIT_UPDATE)
            agg_group_free(st, g);
        applied++;
    }
    kv->type = SPOKE_TYPE_NULL;
    kv->u.i = 0;
    if (applied)
        st->m.tombstones_applied++;
    else if (found)
        st->m.stale_ignored++;
    else
        st->m.tombstones_unknown++;
    return SPOKE_DROP;
}

static int process_record(struct agg_state *st, struct spoke_record *rec, char *err,
                          size_t errsz)
{
    const struct spoke_host_api *api = st->api;

    if (api->record_value_forms(rec) == 0)
        return apply_tombstone(st, rec, err, errsz);

    const char *why = NULL;
    const struct spoke_row *row = api->record_value_row(rec, &why);
    const struct spoke_schema *schema = row ? api->row_schema(row) : NULL;
    if (!schema) {
        st->m.invalid++;
        snprintf(err, errsz, "value is not a row: %s",
                 row ? "a list, not an object" : why ? why : "null value");
        return SPOKE_ERR_INVALID;
    }
    const int *idx = row_fields(st, schema);
    int rc = read_fields(st, row, idx, err, errsz);
    int64_t t = 0, twin = 0;
    if (rc == SPOKE_OK && st->tfield >= 0) {
        t = st->cur[st->tfield].u.i;
        if (t > AGG_TIME_LIMIT || t < -AGG_TIME_LIMIT) {
            snprintf(err, errsz, "time field '%s' is %lld ms, out of range",
                     st->fields[st->tfield].name, (long long)t);
            rc = SPOKE_ERR_RANGE;
        }
        twin = t;
    }
    st->gready = st->eready = 0;  /* keys are encoded only when a node is created */
    if (rc != SPOKE_OK) {
        forget_types(st);
        st->m.invalid++;
        return rc;
    }
    if (st->time == AGG_TIME_PROCESSING && st->window != AGG_WIN_NONE)
        twin = api->wall_ms();

    /* Windows that are still open. */
    size_t open = open_windows(st, twin);
    if (open == 0) {
        forget_types(st);
        st->m.late_dropped++;
        warn_dropped(st, AGG_WARN_LATE, twin, st->close_bound);
        return SPOKE_DROP;
    }
    rc = st->semantics == AGG_TABLE ? apply_table(st, open, t, err, errsz)
                                    : apply_stream(st, open, t, err, errsz);
    if (rc != SPOKE_OK) {
        forget_types(st);
        return rc;  /* SPOKE_DROP: stale everywhere, or an error */
    }
    commit_types(st);

    if (st->time == AGG_TIME_EVENT && (!st->has_max_t || t > st->max_t)) {
        st->max_t = t;
        st->has_max_t = 1;
        if (st->window != AGG_WIN_NONE && t - st->lateness_ms > st->close_bound) {
            st->close_bound = t - st->lateness_ms;
            if (st->nwins > 0 && st->wins[0]->end <= st->close_bound)
                agg_close_windows(st);
        }
    }
    return SPOKE_DROP;
}

static int agg_process(void *vst, struct spoke_record *rec, char *err, size_t errsz)
{
    struct agg_state *st = vst;
    int rc = process_record(st, rec, err, errsz);
    /* Whatever this record did: a burst may end on a stale or bad one. */
    emit_updates(st);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Time                                                                      */
/* ------------------------------------------------------------------------ */

#define AGG_METRICS_EVERY_MS 200

static int agg_tick(void *vst, int64_t now, int64_t *next_tick_ms, char *err, size_t errsz)
{
    struct agg_state *st = vst;
    int64_t mono = st->api->mono_ms();
    st->now_ms = now;

    if (st->time == AGG_TIME_PROCESSING && st->window != AGG_WIN_NONE &&
        now - st->lateness_ms > st->close_bound)
        st->close_bound = now - st->lateness_ms;
    /* Also retries windows an earlier emission could not finish. */
    if (st->nwins > 0 && st->wins[0]->end <= st->close_bound)
        agg_close_windows(st);

    int periodic = st->emit == AGG_EMIT_COMPLETE ||
                   (st->emit == AGG_EMIT_UPDATE && st->interval_ms > 0);
    if (periodic && mono >= st->next_emit_ms) {
        st->now_ms = now;
        if (st->emit == AGG_EMIT_COMPLETE)
            agg_emit_complete(st);
        else
            agg_emit_dirty(st, NULL);
        st->next_emit_ms = mono + st->interval_ms;
    }
    if (mono >= st->next_metrics_ms) {
        agg_publish_metrics(st);
        st->next_metrics_ms = mono + AGG_METRICS_EVERY_MS;
    }

    int64_t wait = st->next_metrics_ms - mono;
    if (periodic && st->next_emit_ms - mono < wait)
        wait = st->next_emit_ms - mono;
    if (st->time == AGG_TIME_PROCESSING && st->nwins > 0 && st->window != AGG_WIN_NONE) {
        int64_t due = st->wins[0]->end + st->lateness_ms - now;
        if (due < wait)
            wait = due;
    }
    *next_tick_ms = wait > 0 ? wait : 0;
    return SPOKE_OK;
}

/* The rules between keys (agg_configure) on a state that is thrown away:
 * every problem, each at its key. */
static int agg_check(const struct spoke_host_api *api, const struct spoke_config *cfg,
                     const char **key, char *err, size_t errsz)
{
    struct agg_state st = { 0 };
    struct problems pr;
    st.api = api;
    int rc = agg_configure_problems(&st, cfg, &pr, err, errsz);
    agg_config_free(&st);
    if (rc == SPOKE_ERR_INVALID)
        return problems_report_api(&pr, api, cfg, key, err, errsz);
    return rc;
}

static const struct spoke_plugin aggregator = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "aggregator",
    .kind        = SPOKE_KIND_TRANSFORM,
    .version     = "0.1.0",
    .description = "Per-group aggregates (stream or table semantics, windows, top-N)",
    .config      = agg_config,
    .init        = agg_init,
    .process     = agg_process,
    .tick        = agg_tick,
    .snapshot    = agg_snapshot,
    .restore     = agg_restore,
    .destroy     = agg_destroy,
    .check       = agg_check,
};

/* The plugin's only exported symbol: returns the constant descriptor. */
SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void)
{
    return &aggregator;
}
