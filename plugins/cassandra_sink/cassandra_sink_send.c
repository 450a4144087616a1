/*
 * cassandra_sink_send.c - statements, requests and the flush loop of
 * cassandra_sink (see cassandra_sink.h and cassandra_sink.c for the model).
 *
 * A request covers consecutive rows of the cycle: batch.size rows in one
 * UNLOGGED BATCH, or one row in an EXECUTE. Requests wait in a queue; they
 * are sent while fewer than max.inflight are in flight, each on its own
 * stream id, and the responses come back in any order (on_frame).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cassandra_sink.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static int64_t backoff(const struct cs_state *st, int n)
{
    int64_t d = st->backoff_ms;
    for (int i = 1; i < n && d < st->backoff_max_ms; i++)
        d *= 2;
    return d < st->backoff_max_ms ? d : st->backoff_max_ms;
}

static void wait_ms(int64_t ms)
{
    if (ms > 0)
        poll(NULL, 0, ms > 60000 ? 60000 : (int)ms);
}

void cs_set_fatal(struct cs_state *st, int status, const char *fmt, ...)
{
    va_list ap;
    if (st->fatal)
        return;
    va_start(ap, fmt);
    vsnprintf(st->fatal_msg, sizeof(st->fatal_msg), fmt, ap);
    va_end(ap);
    st->fatal = status;
    st->api->log(st->inst, SPOKE_LOG_ERROR, "%s", st->fatal_msg);
}

void cs_report_metrics(struct cs_state *st)
{
    const struct spoke_host_api *api = st->api;
    struct {
        const char *name;
        int64_t *v;
    } counters[] = {
        { "rows_written", &st->m_rows }, { "batches", &st->m_batches },
        { "requests", &st->m_requests }, { "retries", &st->m_retries },
        { "reprepares", &st->m_reprepares }, { "rejected", &st->m_rejected },
        { "connects", &st->m_connects }, { "batch_splits", &st->m_splits },
    };
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        if (*counters[i].v) {
            api->metric_add(st->inst, counters[i].name, *counters[i].v);
            *counters[i].v = 0;
        }
    }
    int connected = st->conn && cql_conn_is_open(st->conn);
    api->metric_set(st->inst, "connected", connected);
    api->metric_set(st->inst, "inflight", st->conn ? (int64_t)cql_conn_inflight(st->conn) : 0);
    api->metric_set(st->inst, "inflight_peak", (int64_t)st->inflight_peak);
    st->inflight_peak = 0;
    api->metric_set(st->inst, "pending_rows", (int64_t)st->nrows);
    if (st->conn) {
        uint64_t raw, wire;
        cql_conn_take_bytes(st->conn, &raw, &wire);
        if (raw) {
            api->metric_add(st->inst, "request_bytes", (int64_t)raw);
            api->metric_add(st->inst, "request_bytes_sent", (int64_t)wire);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Statements                                                                */
/* ------------------------------------------------------------------------ */

void cs_stmt_free(const struct spoke_host_api *api, struct cs_stmt *s)
{
    cql_mapping_free(&s->map);
    free(s->cql);
    free(s->id);
    free(s->meta_body);
    cql_arena_free(&s->arena);
    free(s->fail);
    for (int i = 0; i < CS_SCHEMA_CACHE; i++) {
        if (s->slots[i].schema)
            api->schema_unref(s->slots[i].schema);
        free(s->slots[i].idx);
    }
}

/* Adds a statement for a mapping (taken over). Its index, or -1. */
int cs_stmt_add(struct cs_state *st, struct cql_mapping *map)
{
    struct cs_stmt *ns = realloc(st->stmts, (st->nstmts + 1) * sizeof(*ns));
    if (ns == NULL)
        return -1;
    st->stmts = ns;
    struct cs_stmt *s = &ns[st->nstmts];
    memset(s, 0, sizeof(*s));
    s->map = *map;
    memset(map, 0, sizeof(*map));
    s->cql = cql_insert_statement(st->ks, st->table, &s->map, st->ttl, st->client_ts);
    if (s->cql == NULL) {
        cql_mapping_free(&s->map);
        return -1;
    }
    s->cqllen = strlen(s->cql);
    return (int)st->nstmts++;
}

/* Sends a PREPARE for statement k. 0, or -1 when no stream is free. */
static int send_prepare(struct cs_state *st, uint32_t k)
{
    struct cs_stmt *s = &st->stmts[k];
    int stream = cql_conn_acquire(st->conn, TOKEN_PREPARE | k);
    if (stream < 0)
        return -1;
    cql_enc_prepare(cql_conn_out(st->conn), (int16_t)stream, s->cql, s->cqllen);
    s->state = S_PREPARING;
    st->api->log(st->inst, SPOKE_LOG_DEBUG, "preparing: %s", s->cql);
    return 0;
}

/* Checks a PREPARED result against the mapping; NULL when it fits, else
 * why (static buffer of the state). */
static const char *check_meta(struct cs_state *st, struct cs_stmt *s, const struct cql_result *res,
                              char *why, size_t whysz)
{
    size_t want = s->map.n + (st->client_ts ? 1 : 0);
    const struct cql_meta *b = &res->bind;
    char tn[96];

    if (b->cols == NULL || b->ncols < 0 || (size_t)b->ncols != want) {
        cql_textf(why, whysz, "the server prepared %d bound variables for %zu expected: %s",
                  b->ncols, want, s->cql);
        return why;
    }
    for (size_t i = 0; i < s->map.n; i++) {
        const struct cql_col *c = &b->cols[i];
        const char *col = s->map.cols[i].column;
        if ((size_t)c->name.n != strlen(col) || memcmp(c->name.p, col, strlen(col)) != 0) {
            cql_textf(why, whysz, "bound variable %zu is '%.*s', expected column '%s'", i + 1,
                      (int)c->name.n, c->name.p, col);
            return why;
        }
        if (c->type->id == CQL_T_COUNTER) {
            cql_textf(why, whysz, "column '%s' of %s.%s is a counter: cassandra_sink only writes "
                      "idempotent upserts, counter tables are refused", col, st->ks, st->table);
            return why;
        }
        if (!cql_type_bindable(c->type)) {
            cql_textf(why, whysz, "column '%s' has type %s, which cassandra_sink cannot write", col,
                      cql_type_name(c->type, tn, sizeof(tn)));
            return why;
        }
    }
    if (st->client_ts && b->cols[s->map.n].type->id != CQL_T_BIGINT) {
        cql_textf(why, whysz, "the write timestamp is bound as %s, bigint expected",
                  cql_type_name(b->cols[s->map.n].type, tn, sizeof(tn)));
        return why;
    }
    if (s->has_meta) {
        for (size_t i = 0; i < want; i++) {
            const struct cql_type *was = s->meta.bind.cols[i].type, *now = b->cols[i].type;
            if (!cql_type_equal(was, now)) {
                char t2[96];
                cql_textf(why, whysz, "the table changed while running: bound variable '%.*s' is "
                          "now %s (was %s); restart the connector", (int)b->cols[i].name.n,
                          b->cols[i].name.p, cql_type_name(now, tn, sizeof(tn)),
                          cql_type_name(was, t2, sizeof(t2)));
                return why;
            }
        }
    }
    return NULL;
}

static int is_transient(int32_t code)
{
    switch (code) {
    case CQL_ERR_SERVER:
    case CQL_ERR_UNAVAILABLE:
    case CQL_ERR_OVERLOADED:
    case CQL_ERR_BOOTSTRAPPING:
    case CQL_ERR_TRUNCATE:
    case CQL_ERR_WRITE_TIMEOUT:
    case CQL_ERR_READ_TIMEOUT:
    case CQL_ERR_READ_FAILURE:
    case CQL_ERR_WRITE_FAILURE:
        return 1;
    case CQL_ERR_PROTOCOL:
    case CQL_ERR_AUTH:
    case CQL_ERR_SYNTAX:
    case CQL_ERR_UNAUTHORIZED:
    case CQL_ERR_INVALID:
    case CQL_ERR_CONFIG:
    case CQL_ERR_ALREADY_EXISTS:
    case CQL_ERR_UNPREPARED:
    case CQL_ERR_FUNC_FAILURE:
        return 0;
    default:
        return 1; /* unknown: retrying loses nothing */
    }
}

static void on_prepared(struct cs_state *st, uint32_t k, const struct cql_frame *f)
{
    struct cs_stmt *s = &st->stmts[k];
    char why[SPOKE_ERRSTR_SIZE], msg[SPOKE_ERRSTR_SIZE];

    if (f->h.opcode == CQL_OP_ERROR) {
        struct cql_error e;
        if (cql_decode_error(f->body, f->len, &e, why, sizeof(why)) < 0) {
            cql_textf(st->broken, sizeof(st->broken), "%s", why);
            s->state = s->has_meta ? S_NEED : S_NEW;
            return;
        }
        cql_error_text(&e, msg, sizeof(msg));
        if (is_transient(e.code)) {
            s->state = s->has_meta ? S_NEED : S_NEW;
            s->prepare_failures++;
            st->m_retries++;
            st->gate_ms = cql_mono_ms() + backoff(st, s->prepare_failures);
            if (s->prepare_failures > st->retries && !st->give_up) {
                st->give_up = 1;
                cql_textf(st->give_up_msg, sizeof(st->give_up_msg), "cannot prepare the INSERT "
                          "(after %d retries): %s", st->retries, msg);
            }
            return;
        }
        s->state = S_FAILED;
        free(s->fail);
        s->fail = strdup(msg);
        if (st->mapped || s->has_meta)
            cs_set_fatal(st, SPOKE_ERR_INVALID, "cannot prepare %s: %s", s->cql, msg);
        return;
    }
    if (f->h.opcode != CQL_OP_RESULT) {
        cql_textf(st->broken, sizeof(st->broken), "unexpected %s in answer to PREPARE",
                  cql_opcode_name(f->h.opcode));
        s->state = s->has_meta ? S_NEED : S_NEW;
        return;
    }
    struct cql_arena a = { 0 };
    struct cql_result res;
    uint8_t *body = malloc(f->len ? f->len : 1);
    if (body == NULL) {
        cs_set_fatal(st, SPOKE_ERR_NOMEM, "out of memory");
        return;
    }
    memcpy(body, f->body, f->len);
    if (cql_decode_result(body, f->len, &a, &res, why, sizeof(why)) < 0 ||
        res.kind != CQL_RESULT_PREPARED) {
        if (res.kind != CQL_RESULT_PREPARED)
            cql_textf(why, sizeof(why), "RESULT of kind %d in answer to PREPARE", res.kind);
        cql_textf(st->broken, sizeof(st->broken), "%s", why);
        s->state = s->has_meta ? S_NEED : S_NEW;
        cql_arena_free(&a);
        free(body);
        return;
    }
    const char *bad = check_meta(st, s, &res, why, sizeof(why));
    if (bad) {
        s->state = S_FAILED;
        free(s->fail);
        s->fail = strdup(bad);
        if (st->mapped || s->has_meta)
            cs_set_fatal(st, SPOKE_ERR_INVALID, "%s", bad);
        cql_arena_free(&a);
        free(body);
        return;
    }
    uint8_t *id = malloc(res.id.n ? (size_t)res.id.n : 1);
    if (id == NULL) {
        cs_set_fatal(st, SPOKE_ERR_NOMEM, "out of memory");
        cql_arena_free(&a);
        free(body);
        return;
    }
    memcpy(id, res.id.p, (size_t)res.id.n);
    free(s->id);
    s->id = id;
    s->idlen = (uint16_t)res.id.n;
    if (!s->has_meta) {
        s->meta_body = body;
        s->arena = a;
        s->meta = res;
        s->has_meta = 1;
    } else {
        cql_arena_free(&a);
        free(body);
    }
    s->state = S_READY;
    s->prepare_failures = 0;
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                  */
/* ------------------------------------------------------------------------ */

static int q_grow(struct cs_state *st)
{
    size_t ncap = st->qcap ? st->qcap * 2 : 256;
    uint32_t *nq = malloc(ncap * sizeof(*nq));
    if (nq == NULL)
        return -1;
    for (size_t i = 0; i < st->qlen; i++)
        nq[i] = st->q[(st->qhead + i) % st->qcap];
    free(st->q);
    st->q = nq;
    st->qcap = ncap;
    st->qhead = 0;
    return 0;
}

static int q_push(struct cs_state *st, uint32_t idx, int front)
{
    if (st->qlen == st->qcap && q_grow(st) < 0)
        return -1;
    if (front) {
        st->qhead = (st->qhead + st->qcap - 1) % st->qcap;
        st->q[st->qhead] = idx;
    } else {
        st->q[(st->qhead + st->qlen) % st->qcap] = idx;
    }
    st->qlen++;
    return 0;
}

/* A new queued request for rows [first, first + n). 0 or -1 (no memory). */
static int req_add(struct cs_state *st, uint32_t first, uint32_t n)
{
    if (st->nreqs == st->capreqs) {
        size_t ncap = st->capreqs ? st->capreqs * 2 : 256;
        struct cs_req *nr = realloc(st->reqs, ncap * sizeof(*nr));
        if (nr == NULL)
            return -1;
        st->reqs = nr;
        st->capreqs = ncap;
    }
    if (q_push(st, (uint32_t)st->nreqs, 0) < 0)
        return -1;
    st->reqs[st->nreqs++] = (struct cs_req){ first, n, 0, R_QUEUED, 0 };
    st->pending++;
    return 0;
}

/* Turns the rows not yet in a request into requests of batch.size. */
int cs_seal(struct cs_state *st)
{
    while (st->open_first < st->nrows) {
        size_t n = st->nrows - st->open_first;
        if (n > (size_t)st->batch_size)
            n = (size_t)st->batch_size;
        if (req_add(st, (uint32_t)st->open_first, (uint32_t)n) < 0)
            return -1;
        st->open_first += n;
    }
    return 0;
}

static void req_done(struct cs_state *st, struct cs_req *r)
{
    r->state = R_DONE;
    st->pending--;
}

/* A transient failure of request r: resend after a backoff. */
static void req_retry(struct cs_state *st, uint32_t idx, const char *why)
{
    struct cs_req *r = &st->reqs[idx];
    r->state = R_QUEUED;
    r->attempts++;
    st->m_retries++;
    if (q_push(st, idx, 0) < 0) {
        cs_set_fatal(st, SPOKE_ERR_NOMEM, "out of memory");
        return;
    }
    int64_t gate = cql_mono_ms() + backoff(st, r->attempts);
    if (gate > st->gate_ms)
        st->gate_ms = gate;
    if (r->attempts > st->retries && !st->give_up) {
        st->give_up = 1;
        cql_textf(st->give_up_msg, sizeof(st->give_up_msg), "%s (after %d retries)", why,
                  st->retries);
    }
    st->api->log(st->inst, SPOKE_LOG_DEBUG, "request of %u rows will be resent: %s", r->n, why);
}

/* The server refused request r's rows (Invalid): a batch is resent row by
 * row to find the culprits; a single row is reported failed. */
static void req_reject(struct cs_state *st, uint32_t idx, const char *msg)
{
    struct cs_req *r = &st->reqs[idx];
    uint32_t first = r->first, n = r->n;
    req_done(st, r); /* r may move below */
    if (n > 1) {
        st->m_splits++;
        st->api->log(st->inst, SPOKE_LOG_DEBUG, "batch of %u rows refused (%s): resending its rows "
                     "one by one", n, msg);
        for (uint32_t i = 0; i < n; i++)
            if (req_add(st, first + i, 1) < 0) {
                cs_set_fatal(st, SPOKE_ERR_NOMEM, "out of memory");
                return;
            }
        return;
    }
    st->m_rejected++;
    int rc = st->api->sink_record_failed(st->inst, st->rows[first].rec, SPOKE_ERR_INVALID, msg);
    if (rc != SPOKE_OK)
        st->api->log(st->inst, SPOKE_LOG_WARN, "a refused row could not be reported (%s): %s",
                     st->api->strerror(rc), msg);
}

static struct cs_stmt *stmt_by_id(struct cs_state *st, struct cql_str id)
{
    for (size_t k = 0; k < st->nstmts; k++)
        if (st->stmts[k].id && id.n == st->stmts[k].idlen &&
            memcmp(st->stmts[k].id, id.p, (size_t)id.n) == 0)
            return &st->stmts[k];
    return NULL;
}

static void on_request(struct cs_state *st, uint32_t idx, const struct cql_frame *f)
{
    struct cs_req *r = &st->reqs[idx];
    char why[SPOKE_ERRSTR_SIZE], msg[SPOKE_ERRSTR_SIZE];
    struct cql_error e;

    if (r->state != R_INFLIGHT)
        return;
    if (f->h.opcode == CQL_OP_RESULT) {
        st->m_rows += r->n;
        if (r->n > 1)
            st->m_batches++;
        req_done(st, r);
        return;
    }
    if (f->h.opcode != CQL_OP_ERROR) {
        cql_textf(st->broken, sizeof(st->broken), "unexpected %s in answer to %s",
                  cql_opcode_name(f->h.opcode), r->n > 1 ? "BATCH" : "EXECUTE");
        req_retry(st, idx, st->broken);
        return;
    }
    if (cql_decode_error(f->body, f->len, &e, why, sizeof(why)) < 0) {
        cql_textf(st->broken, sizeof(st->broken), "%s", why);
        req_retry(st, idx, why);
        return;
    }
    cql_error_text(&e, msg, sizeof(msg));
    if (e.code == CQL_ERR_UNPREPARED) {
        struct cs_stmt *s = stmt_by_id(st, e.id);
        if (r->unprepared++ >= 3) {
            req_retry(st, idx, msg);
            return;
        }
        if (s == NULL) {
            /* Unknown id: prepare everything this request uses again. */
            for (uint32_t i = 0; i < r->n; i++) {
                struct cs_stmt *t = &st->stmts[st->rows[r->first + i].stmt];
                if (t->state == S_READY)
                    t->state = S_NEED;
            }
        } else if (s->state == S_READY) {
            s->state = S_NEED;
            st->m_reprepares++;
            st->api->log(st->inst, SPOKE_LOG_INFO, "the server forgot the prepared INSERT: "
                         "preparing it again");
        }
        r->state = R_QUEUED;
        if (q_push(st, idx, 1) < 0)
            cs_set_fatal(st, SPOKE_ERR_NOMEM, "out of memory");
        return;
    }
    if (is_transient(e.code)) {
        req_retry(st, idx, msg);
        return;
    }
    if (e.code == CQL_ERR_INVALID || e.code == CQL_ERR_FUNC_FAILURE) {
        req_reject(st, idx, msg);
        return;
    }
    /* Syntax, Unauthorized, Config, Protocol, Bad credentials: resending
     * cannot help and no row is to blame. */
    r->state = R_QUEUED;
    if (q_push(st, idx, 1) < 0) {
        cs_set_fatal(st, SPOKE_ERR_NOMEM, "out of memory");
        return;
    }
    cs_set_fatal(st, SPOKE_ERR, "the server refused the write to %s.%s: %s", st->ks, st->table, msg);
}

static void on_setup(struct cs_state *st, const struct cql_frame *f)
{
    st->setup_waiting = 0;
    st->setup_op = f->h.opcode;
    st->setup_reply.len = 0;
    cql_put_raw(&st->setup_reply, f->body, f->len);
}

static void on_frame(void *ctx, uint32_t token, const struct cql_frame *f)
{
    struct cs_state *st = ctx;
    if (f->nwarnings > 0) {
        int64_t now = cql_mono_ms();
        if (st->last_warning_ms == 0 || now - st->last_warning_ms > 60000) {
            struct cql_rd w = f->warnings;
            struct cql_str s = cql_get_string(&w);
            st->api->log(st->inst, SPOKE_LOG_WARN, "server warning: %.*s", (int)(s.n > 0 ? s.n : 0),
                         s.p ? s.p : "");
            st->last_warning_ms = now;
        }
    }
    if ((token & TOKEN_SETUP) == TOKEN_SETUP)
        on_setup(st, f);
    else if (token & TOKEN_PREPARE)
        on_prepared(st, token & ~TOKEN_PREPARE, f);
    else if (token - 1 < st->nreqs)
        on_request(st, token - 1, f);
}

/* Every request in flight on a closing connection goes back to the queue. */
static void on_lost(void *ctx, uint32_t token)
{
    struct cs_state *st = ctx;
    if ((token & TOKEN_SETUP) == TOKEN_SETUP) {
        st->setup_waiting = 0;
        st->setup_op = 0xFF;
    } else if (token & TOKEN_PREPARE) {
        struct cs_stmt *s = &st->stmts[token & ~TOKEN_PREPARE];
        if (s->state == S_PREPARING)
            s->state = s->has_meta ? S_NEED : S_NEW;
    } else if (token - 1 < st->nreqs && st->reqs[token - 1].state == R_INFLIGHT) {
        req_retry(st, token - 1, st->conn_err);
    }
}

/* Closes the connection after a failure; requests in flight are resent. */
static void conn_lost(struct cs_state *st, const char *why)
{
    size_t n = cql_conn_inflight(st->conn);
    cql_textf(st->conn_err, sizeof(st->conn_err), "connection to %s lost: %s",
              cql_conn_peer(st->conn), why);
    st->api->log(st->inst, SPOKE_LOG_WARN, "%s (%zu requests in flight will be resent)",
                 st->conn_err, n);
    cql_conn_close(st->conn, on_lost, st);
    for (size_t k = 0; k < st->nstmts; k++)
        if (st->stmts[k].state == S_READY || st->stmts[k].state == S_PREPARING)
            st->stmts[k].state = S_NEED;
    st->broken[0] = '\0';
    cs_report_metrics(st);
}

/* Writes queued requests while streams, the gate and statements allow. */
static void send_queued(struct cs_state *st)
{
    int64_t now = 0;
    struct cql_buf *out;

    if (!cql_conn_is_open(st->conn) || st->qlen == 0)
        return;
    out = cql_conn_out(st->conn);
    if (st->gate_ms) {
        now = cql_mono_ms();
        if (now < st->gate_ms)
            return;
        st->gate_ms = 0;
    }
    while (st->qlen > 0 && cql_conn_inflight(st->conn) < (size_t)st->max_inflight &&
           cql_conn_unsent(st->conn) < CS_OUT_MAX && !st->fatal) {
        uint32_t idx = st->q[st->qhead];
        struct cs_req *r = &st->reqs[idx];
        int blocked = 0;
        if (r->state != R_QUEUED) { /* done meanwhile: drop the stale entry */
            st->qhead = (st->qhead + 1) % st->qcap;
            st->qlen--;
            continue;
        }
        for (uint32_t i = 0; i < r->n; i++) {
            uint32_t k = st->rows[r->first + i].stmt;
            struct cs_stmt *s = &st->stmts[k];
            if (s->state == S_READY)
                continue;
            blocked = 1;
            if (s->state == S_NEED || s->state == S_NEW)
                send_prepare(st, k);
            if (st->nstmts == 1)
                break;
        }
        if (blocked)
            return;
        int stream = cql_conn_acquire(st->conn, idx + 1);
        if (stream < 0)
            return;
        if (r->n == 1) {
            const struct cs_row *row = &st->rows[r->first];
            const struct cs_stmt *s = &st->stmts[row->stmt];
            cql_enc_execute(out, (int16_t)stream, s->id, s->idlen, st->consistency,
                            (uint16_t)(s->map.n + (st->client_ts ? 1 : 0)),
                            st->rowbuf.p + row->off, row->len);
        } else {
            size_t off = cql_enc_batch_begin(out, (int16_t)stream, CQL_BATCH_UNLOGGED,
                                             (uint16_t)r->n);
            for (uint32_t i = 0; i < r->n; i++) {
                const struct cs_row *row = &st->rows[r->first + i];
                const struct cs_stmt *s = &st->stmts[row->stmt];
                cql_enc_batch_prepared(out, s->id, s->idlen,
                                       (uint16_t)(s->map.n + (st->client_ts ? 1 : 0)),
                                       st->rowbuf.p + row->off, row->len);
            }
            cql_enc_batch_end(out, off, st->consistency);
        }
        r->state = R_INFLIGHT;
        st->m_requests++;
        if (cql_conn_inflight(st->conn) > st->inflight_peak)
            st->inflight_peak = cql_conn_inflight(st->conn);
        st->qhead = (st->qhead + 1) % st->qcap;
        st->qlen--;
    }
}

/* One turn: send, wait up to wait_ms for responses, handle them, check the
 * oldest request's age. */
void cs_turn(struct cs_state *st, int wait_ms_)
{
    char why[SPOKE_ERRSTR_SIZE];

    send_queued(st);
    if (cql_conn_pump(st->conn, wait_ms_, on_frame, st, why, sizeof(why)) < 0) {
        conn_lost(st, why);
        return;
    }
    if (st->broken[0]) {
        cql_textf(why, sizeof(why), "%s", st->broken);
        conn_lost(st, why);
        return;
    }
    /* The age check scans every stream: a few times a second is enough. */
    int64_t now = cql_mono_ms();
    if (now >= st->next_age_check_ms) {
        int64_t oldest = cql_conn_oldest_ms(st->conn);
        st->next_age_check_ms = now + 50;
        if (oldest >= 0 && now - oldest > st->request_timeout_ms) {
            cql_textf(why, sizeof(why), "no response within request.timeout.ms (%" PRId64 " ms)",
                      st->request_timeout_ms);
            conn_lost(st, why);
            return;
        }
    }
    send_queued(st);
}

/* How long a turn may wait for input: until a response, the backoff gate,
 * or the next look at the requests' age. */
static int turn_wait(struct cs_state *st)
{
    int64_t now = cql_mono_ms(), w = 50;
    if (st->qlen > 0 && st->gate_ms && st->gate_ms - now < w)
        w = st->gate_ms - now;
    return w < 0 ? 0 : (int)w;
}

/* ------------------------------------------------------------------------ */
/* Connecting and setup                                                      */
/* ------------------------------------------------------------------------ */

/* Sends one setup QUERY and waits for its answer. SPOKE_OK (RESULT or
 * Already_exists), SPOKE_RETRY (transient), or fatal. */
static int setup_query(struct cs_state *st, const char *what, const char *cql)
{
    int64_t deadline = cql_mono_ms() + st->request_timeout_ms;
    char msg[SPOKE_ERRSTR_SIZE];
    int stream = cql_conn_acquire(st->conn, TOKEN_SETUP);

    if (stream < 0)
        return SPOKE_RETRY;
    cql_enc_query(cql_conn_out(st->conn), (int16_t)stream, cql, strlen(cql), st->consistency,
                  0, NULL, 0);
    st->setup_waiting = 1;
    while (st->setup_waiting && cql_conn_is_open(st->conn)) {
        if (cql_mono_ms() > deadline) {
            conn_lost(st, "no answer to a schema query within request.timeout.ms");
            return SPOKE_RETRY;
        }
        cs_turn(st, 50);
    }
    if (st->setup_waiting || st->setup_op == 0xFF || !cql_conn_is_open(st->conn))
        return SPOKE_RETRY;
    if (st->setup_op == CQL_OP_RESULT)
        return SPOKE_OK;
    if (st->setup_op == CQL_OP_ERROR) {
        struct cql_error e;
        if (cql_decode_error(st->setup_reply.p, st->setup_reply.len, &e, msg, sizeof(msg)) < 0) {
            conn_lost(st, msg);
            return SPOKE_RETRY;
        }
        if (e.code == CQL_ERR_ALREADY_EXISTS)
            return SPOKE_OK;
        cql_error_text(&e, msg, sizeof(msg));
        if (is_transient(e.code)) {
            cql_textf(st->conn_err, sizeof(st->conn_err), "%s: %s", what, msg);
            return SPOKE_RETRY;
        }
        cs_set_fatal(st, SPOKE_ERR_INVALID, "%s: %s (statement: %s)", what, msg, cql);
        return st->fatal;
    }
    conn_lost(st, "unexpected answer to a schema query");
    return SPOKE_RETRY;
}

/* After connecting: schema creation (once), then every statement prepared. */
static int setup(struct cs_state *st)
{
    int rc;
    if (!st->schema_done) {
        if (st->create_ks && (rc = setup_query(st, "create.keyspace", st->create_ks)) != SPOKE_OK)
            return rc;
        if (st->create_table &&
            (rc = setup_query(st, "create.table", st->create_table)) != SPOKE_OK)
            return rc;
        st->schema_done = 1;
    }
    for (size_t k = 0; k < st->nstmts; k++)
        if (st->stmts[k].state == S_NEW || st->stmts[k].state == S_NEED)
            send_prepare(st, (uint32_t)k);
    int64_t deadline = cql_mono_ms() + st->request_timeout_ms;
    for (;;) {
        int preparing = 0;
        for (size_t k = 0; k < st->nstmts; k++)
            preparing |= st->stmts[k].state == S_PREPARING;
        if (st->fatal)
            return st->fatal;
        if (!cql_conn_is_open(st->conn))
            return SPOKE_RETRY;
        if (!preparing)
            break;
        if (st->give_up) {
            /* A PREPARE failed transiently too often: try again later. */
            st->give_up = 0;
            cql_textf(st->conn_err, sizeof(st->conn_err), "%s", st->give_up_msg);
            return SPOKE_RETRY;
        }
        if (cql_mono_ms() > deadline) {
            conn_lost(st, "no answer to PREPARE within request.timeout.ms");
            return SPOKE_RETRY;
        }
        cs_turn(st, 50);
    }
    return SPOKE_OK;
}

/* Connects (one round over the contact points) and sets up. SPOKE_OK,
 * SPOKE_RETRY (st->conn_err says why) or the fatal status. */
int cs_connect(struct cs_state *st)
{
    char err[SPOKE_ERRSTR_SIZE];
    int rc;

    if (st->fatal)
        return st->fatal;
    if (cql_conn_is_open(st->conn))
        return SPOKE_OK;
    rc = cql_conn_open(st->conn, err, sizeof(err));
    if (rc == CQL_CONN_FATAL) {
        cs_set_fatal(st, SPOKE_ERR, "%s", err);
        return st->fatal;
    }
    if (rc != CQL_CONN_OK) {
        cql_textf(st->conn_err, sizeof(st->conn_err), "%s", err);
        if (!st->outage_logged) {
            st->api->log(st->inst, SPOKE_LOG_WARN, "%s", err);
            st->outage_logged = 1;
        }
        cs_report_metrics(st);
        return SPOKE_RETRY;
    }
    st->m_connects++;
    st->api->log(st->inst, SPOKE_LOG_INFO, "%s %s (CQL %s%s%s)",
                 st->ever_connected ? "reconnected to" : "connected to", cql_conn_peer(st->conn),
                 cql_conn_cql_versions(st->conn)[0] ? cql_conn_cql_versions(st->conn) : "?",
                 cql_conn_authenticator(st->conn)[0] ? ", authenticated with " : "",
                 cql_conn_authenticator(st->conn));
    st->ever_connected = 1;
    rc = setup(st);
    if (rc == SPOKE_OK) {
        st->outage_logged = 0;
    } else if (rc == SPOKE_RETRY) {
        if (cql_conn_is_open(st->conn))
            conn_lost(st, st->conn_err[0] ? st->conn_err : "setup failed");
    }
    cs_report_metrics(st);
    return rc;
}

/*
 * Sends everything queued and waits until every request is answered.
 * SPOKE_OK; SPOKE_RETRY with errstr when a request (or reconnecting) failed
 * more than `retries` times in this call; or the fatal status.
 */
int cs_drive(struct cs_state *st, char *errstr, size_t errstr_size)
{
    int rounds = 0;

    for (size_t i = 0; i < st->nreqs; i++)
        st->reqs[i].attempts = 0;
    for (size_t k = 0; k < st->nstmts; k++)
        st->stmts[k].prepare_failures = 0;
    st->give_up = 0;
    for (;;) {
        if (st->fatal) {
            cql_textf(errstr, errstr_size, "%s", st->fatal_msg);
            return st->fatal;
        }
        if (st->pending == 0)
            return SPOKE_OK;
        if (st->give_up) {
            cql_textf(errstr, errstr_size, "%s", st->give_up_msg);
            return SPOKE_RETRY;
        }
        if (!cql_conn_is_open(st->conn)) {
            if (rounds > st->retries) {
                cql_textf(errstr, errstr_size, "%s", st->conn_err);
                return SPOKE_RETRY;
            }
            /* Backoff between rounds within this call only: the host spaces
             * its own calls (errors.retry.delay.max.ms), so one flush stays
             * short and a server that comes back is seen soon. */
            if (rounds > 0)
                wait_ms(backoff(st, rounds));
            rounds++;
            int rc = cs_connect(st);
            if (rc != SPOKE_OK && rc != SPOKE_RETRY) {
                cql_textf(errstr, errstr_size, "%s", st->fatal_msg);
                return rc;
            }
            continue;
        }
        cs_turn(st, turn_wait(st));
    }
}

/* Forgets the cycle: records put since the last successful flush. */
void cs_cycle_reset(struct cs_state *st)
{
    st->nrows = 0;
    st->rowbuf.len = 0;
    st->rowbuf.oom = 0;
    st->nreqs = 0;
    st->qhead = st->qlen = 0;
    st->open_first = 0;
    st->pending = 0;
    st->gate_ms = 0;
}

/* The host gave up on the previous batch (a put() after a flush that did
 * not succeed): its records will be delivered again, forget them. */
void cs_cycle_abandon(struct cs_state *st)
{
    if (st->conn && cql_conn_is_open(st->conn))
        cql_conn_orphan_all(st->conn);
    for (size_t k = 0; k < st->nstmts; k++)
        if (st->stmts[k].state == S_PREPARING)
            st->stmts[k].state = st->stmts[k].has_meta ? S_NEED : S_NEW;
    cs_cycle_reset(st);
}

/* Waits until statement k is no longer being prepared (put() of a new
 * shape). SPOKE_OK, SPOKE_RETRY (errstr) or fatal. */
int cs_wait_prepared(struct cs_state *st, uint32_t k, char *errstr, size_t errstr_size)
{
    int64_t deadline = cql_mono_ms() + st->request_timeout_ms;
    if (st->stmts[k].state == S_NEW || st->stmts[k].state == S_NEED)
        send_prepare(st, k);
    while (st->stmts[k].state == S_PREPARING && cql_conn_is_open(st->conn) && !st->fatal) {
        if (cql_mono_ms() > deadline) {
            conn_lost(st, "no answer to PREPARE within request.timeout.ms");
            break;
        }
        cs_turn(st, 50);
    }
    if (st->fatal) {
        cql_textf(errstr, errstr_size, "%s", st->fatal_msg);
        return st->fatal;
    }
    if (st->stmts[k].state == S_READY || st->stmts[k].state == S_FAILED)
        return SPOKE_OK;
    cql_textf(errstr, errstr_size, "%s", st->give_up ? st->give_up_msg : st->conn_err);
    st->give_up = 0;
    return SPOKE_RETRY;
}
