/* unit-cql_sink: the cassandra_sink plugin itself (all its sources compiled
 * in), driven through its descriptor with a host API table that records
 * metrics, log lines and sink_record_failed calls, against an in-process
 * scriptable CQL server (the codec's server side, on a thread):
 *
 *  - rows are batched by batch.size and pipelined; single rows are EXECUTEs;
 *    every row carries its own increasing write timestamp;
 *  - a BATCH the server refuses (Invalid) is resent row by row and only the
 *    culprits are reported, with the server's code and message;
 *  - Unprepared: prepared again and resent; transient errors: resent, then
 *    flush returns SPOKE_RETRY with the reason after `retries`, and a later
 *    flush completes; a connection closed mid-flight: reconnected, resent;
 *    the server gone: SPOKE_RETRY "cannot connect to any contact point";
 *  - counter columns and syntax errors fail start(); conversion errors fail
 *    put() for that record only; a put() after a failed flush forgets the
 *    abandoned cycle; the no-mapping form prepares one INSERT per field set.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../plugins/cassandra_sink/cassandra_sink.c"
#include "../../plugins/cassandra_sink/cassandra_sink_rows.c"
#include "../../plugins/cassandra_sink/cassandra_sink_send.c"
#include "../../plugins/cassandra_sink/cql_conn.c"
#include "../../plugins/cassandra_sink/cql_tls.c"
#include "../../plugins/cassandra_sink/cql_frame.c"
#include "../../plugins/cassandra_sink/cql_mapping.c"
#include "../../plugins/cassandra_sink/cql_types.c"

#include "instance.h"
#include "record.h"
#include "test.h"

/* ------------------------------------------------------------------------ */
/* A scriptable fake server                                                  */
/* ------------------------------------------------------------------------ */

#define MAX_ROWS 20000

struct srv {
    int lfd, port;
    pthread_t th;
    volatile int stop;
    pthread_mutex_t lock;
    /* table: column name -> type id */
    const char *cols[8];
    uint16_t types[8];
    int syntax_error_on_create;
    /* scripts (under lock) */
    int unprepared_next;       /* answer the next N writes with Unprepared */
    int fail_next;             /* answer the next N writes with fail_code */
    int32_t fail_code;
    int close_after;           /* close the connection after N more writes (0: never) */
    /* what was seen */
    int prepares, executes, batches, batch_rows, writes, connections;
    char *ids[MAX_ROWS];       /* first value of every stored row */
    int64_t ts[MAX_ROWS];      /* its write timestamp (last value), or 0 */
    int nids;
    int max_batch_rows;
    volatile int cur_fd;       /* the connection being served, -1 */
};

static int t_listen(int *port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 8) < 0)
        return -1;
    getsockname(fd, (struct sockaddr *)&a, &al);
    *port = ntohs(a.sin_port);
    return fd;
}

static void t_error(struct cql_buf *out, int16_t stream, int32_t code, const char *msg,
                    const void *id, int idlen)
{
    struct cql_error e = { .code = code, .msg = { msg, (int32_t)strlen(msg) } };
    if (code == CQL_ERR_WRITE_TIMEOUT) {
        e.cl = CQL_ONE;
        e.blockfor = 1;
        e.write_type = (struct cql_str){ "UNLOGGED_BATCH", 14 };
    }
    if (code == CQL_ERR_UNPREPARED)
        e.id = (struct cql_str){ id, idlen };
    cql_enc_error(out, stream, &e);
}

/* Column names of "INSERT INTO ks.t (a, b) VALUES ..." into names[]. */
static int t_insert_cols(const char *q, size_t n, char names[8][64], int *with_ts)
{
    const char *p = memchr(q, '(', n), *end = q + n;
    int k = 0;
    *with_ts = n > 11 && memmem(q, n, "TIMESTAMP ?", 11) != NULL;
    if (!p)
        return -1;
    p++;
    while (p < end && *p != ')' && k < 8) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *s = p;
        while (p < end && *p != ',' && *p != ')')
            p++;
        size_t l = (size_t)(p - s);
        if (l > 1 && s[0] == '"')
            s++, l -= 2;
        snprintf(names[k++], 64, "%.*s", (int)l, s);
    }
    return k;
}

static void t_prepare(struct srv *sv, struct cql_buf *out, int16_t stream, struct cql_str q)
{
    char names[8][64];
    int with_ts, n = t_insert_cols(q.p, (size_t)q.n, names, &with_ts);
    struct cql_col cols[9];
    struct cql_arena a = { 0 };
    memset(cols, 0, sizeof(cols));
    if (n < 0) {
        t_error(out, stream, CQL_ERR_SYNTAX, "not an INSERT", NULL, 0);
        return;
    }
    for (int i = 0; i < n; i++) {
        int found = -1;
        for (int c = 0; c < 8 && sv->cols[c]; c++)
            if (strcmp(sv->cols[c], names[i]) == 0)
                found = c;
        if (found < 0) {
            char msg[128];
            cql_textf(msg, sizeof(msg), "Undefined column name %s", names[i]);
            t_error(out, stream, CQL_ERR_INVALID, msg, NULL, 0);
            return;
        }
        cols[i].name = (struct cql_str){ sv->cols[found], (int32_t)strlen(sv->cols[found]) };
        cols[i].type = cql_type_simple(sv->types[found]);
    }
    if (with_ts) {
        cols[n].name = (struct cql_str){ "[timestamp]", 11 };
        cols[n].type = cql_type_simple(CQL_T_BIGINT);
    }
    uint16_t pk[1] = { 0 };
    struct cql_meta bind = { .ncols = n + with_ts, .npk = 1, .pk = pk, .ks = { "ks", 2 },
                             .table = { "t", 1 }, .cols = cols, .paging_state = { NULL, -1 } };
    struct cql_meta none = { .flags = CQL_META_NO_METADATA, .paging_state = { NULL, -1 } };
    cql_enc_result_prepared(out, stream, "ID-1", 4, &bind, &none);
    cql_arena_free(&a);
}

/* Stores the rows of one write (values: first = id, last = timestamp). */
static void t_store(struct srv *sv, const struct cql_str *vals, const uint16_t *nvals, int nrows)
{
    for (int r = 0; r < nrows && sv->nids < MAX_ROWS; r++) {
        struct cql_rd rd;
        cql_rd_init(&rd, vals[r].p, (size_t)vals[r].n);
        struct cql_str first = cql_get_value(&rd), last = first;
        for (uint16_t k = 1; k < nvals[r]; k++)
            last = cql_get_value(&rd);
        sv->ids[sv->nids] = first.n >= 0 ? strndup(first.p, (size_t)first.n) : strdup("(null)");
        sv->ts[sv->nids] = last.n == 8 ? (int64_t)(((uint64_t)(uint8_t)last.p[0] << 56) |
                           ((uint64_t)(uint8_t)last.p[1] << 48) | ((uint64_t)(uint8_t)last.p[2] << 40) |
                           ((uint64_t)(uint8_t)last.p[3] << 32) | ((uint64_t)(uint8_t)last.p[4] << 24) |
                           ((uint64_t)(uint8_t)last.p[5] << 16) | ((uint64_t)(uint8_t)last.p[6] << 8) |
                           (uint8_t)last.p[7]) : 0;
        sv->nids++;
    }
}

static int t_bad_row(const struct cql_str *vals, int nrows)
{
    for (int r = 0; r < nrows; r++) {
        struct cql_rd rd;
        cql_rd_init(&rd, vals[r].p, (size_t)vals[r].n);
        struct cql_str first = cql_get_value(&rd);
        if (first.n < 0 || (first.n >= 3 && memcmp(first.p, "BAD", 3) == 0))
            return 1;
    }
    return 0;
}

/* One write request (EXECUTE or BATCH): 0 answered, -1 close the connection. */
static int t_write(struct srv *sv, struct cql_buf *out, int16_t stream, const struct cql_str *vals,
                   const uint16_t *nvals, int nrows)
{
    int rc = 0;
    pthread_mutex_lock(&sv->lock);
    sv->writes++;
    if (sv->close_after > 0 && --sv->close_after == 0) {
        rc = -1;
    } else if (sv->unprepared_next > 0) {
        sv->unprepared_next--;
        t_error(out, stream, CQL_ERR_UNPREPARED, "Prepared query with ID 49442d31 not found", "ID-1", 4);
    } else if (sv->fail_next > 0) {
        sv->fail_next--;
        t_error(out, stream, sv->fail_code, "injected", NULL, 0);
    } else if (t_bad_row(vals, nrows)) {
        t_error(out, stream, CQL_ERR_INVALID, "Invalid null value in condition for column id", NULL, 0);
    } else {
        t_store(sv, vals, nvals, nrows);
        if (nrows > sv->max_batch_rows)
            sv->max_batch_rows = nrows;
        cql_enc_result_void(out, stream);
    }
    pthread_mutex_unlock(&sv->lock);
    return rc;
}

static void t_serve(struct srv *sv, int fd)
{
    size_t cap = 1 << 22, have = 0;
    uint8_t *in = malloc(cap);
    struct cql_buf out = { 0 };
    struct cql_arena a = { 0 };

    for (;;) {
        ssize_t r = read(fd, in + have, cap - have);
        if (r <= 0)
            break;
        have += (size_t)r;
        size_t off = 0;
        out.len = 0;
        while (have - off >= CQL_HEADER_SIZE) {
            struct cql_header h;
            char err[128];
            if (cql_header_decode(in + off, &h, cap - CQL_HEADER_SIZE, err, sizeof(err)) < 0)
                goto done;
            if (have - off < CQL_HEADER_SIZE + h.length)
                break;
            const uint8_t *body = in + off + CQL_HEADER_SIZE;
            off += CQL_HEADER_SIZE + h.length;
            struct cql_str q, id;
            struct cql_params p;
            struct cql_batch bt;
            cql_arena_free(&a);
            switch (h.opcode) {
            case CQL_OP_OPTIONS: {
                static const char *const keys[] = { "CQL_VERSION" };
                static const char *const v0[] = { "3.4.5" };
                static const char *const *const vals[] = { v0 };
                static const uint16_t nv[] = { 1 };
                cql_enc_supported(&out, h.stream, keys, vals, nv, 1);
                break;
            }
            case CQL_OP_STARTUP:
                cql_enc_ready(&out, h.stream);
                break;
            case CQL_OP_QUERY:
                cql_decode_query(body, h.length, &q, &p, err, sizeof(err));
                if (sv->syntax_error_on_create)
                    t_error(&out, h.stream, CQL_ERR_SYNTAX, "line 1:10 no viable alternative", NULL, 0);
                else
                    cql_enc_result_schema_change(&out, h.stream, "CREATED", "TABLE", "ks", "t");
                break;
            case CQL_OP_PREPARE:
                pthread_mutex_lock(&sv->lock);
                sv->prepares++;
                pthread_mutex_unlock(&sv->lock);
                cql_decode_prepare(body, h.length, &q, err, sizeof(err));
                t_prepare(sv, &out, h.stream, q);
                break;
            case CQL_OP_EXECUTE: {
                cql_decode_execute(body, h.length, &id, &p, err, sizeof(err));
                pthread_mutex_lock(&sv->lock);
                sv->executes++;
                pthread_mutex_unlock(&sv->lock);
                if (t_write(sv, &out, h.stream, &p.values, &p.nvalues, 1) < 0)
                    goto done;
                break;
            }
            case CQL_OP_BATCH: {
                if (cql_decode_batch(body, h.length, &a, &bt, err, sizeof(err)) < 0 ||
                    bt.type != CQL_BATCH_UNLOGGED) {
                    t_error(&out, h.stream, CQL_ERR_PROTOCOL, "bad batch", NULL, 0);
                    break;
                }
                struct cql_str vals[256];
                uint16_t nv[256];
                int n = bt.n < 256 ? bt.n : 256;
                for (int i = 0; i < n; i++) {
                    vals[i] = bt.stmts[i].values;
                    nv[i] = bt.stmts[i].nvalues;
                }
                pthread_mutex_lock(&sv->lock);
                sv->batches++;
                sv->batch_rows += n;
                pthread_mutex_unlock(&sv->lock);
                if (t_write(sv, &out, h.stream, vals, nv, n) < 0)
                    goto done;
                break;
            }
            default:
                t_error(&out, h.stream, CQL_ERR_PROTOCOL, "unexpected", NULL, 0);
            }
        }
        memmove(in, in + off, have - off);
        have -= off;
        if (out.len) {
            size_t w = 0;
            while (w < out.len) {
                ssize_t k = write(fd, out.p + w, out.len - w);
                if (k <= 0)
                    goto done;
                w += (size_t)k;
            }
        }
    }
done:
    close(fd);
    free(in);
    cql_buf_free(&out);
    cql_arena_free(&a);
}

static void *t_srv_main(void *arg)
{
    struct srv *sv = arg;
    while (!sv->stop) {
        int fd = accept(sv->lfd, NULL, NULL);
        if (fd < 0 || sv->stop) {
            if (fd >= 0)
                close(fd);
            break;
        }
        sv->connections++;
        sv->cur_fd = fd;
        t_serve(sv, fd);
        sv->cur_fd = -1;
    }
    return NULL;
}

static struct srv *srv_start(void)
{
    struct srv *sv = calloc(1, sizeof(*sv));
    pthread_mutex_init(&sv->lock, NULL);
    sv->cols[0] = "id", sv->types[0] = CQL_T_VARCHAR;
    sv->cols[1] = "n", sv->types[1] = CQL_T_INT;
    sv->cols[2] = "name", sv->types[2] = CQL_T_VARCHAR;
    sv->cur_fd = -1;
    sv->lfd = t_listen(&sv->port);
    pthread_create(&sv->th, NULL, t_srv_main, sv);
    return sv;
}

static void srv_stop(struct srv *sv)
{
    sv->stop = 1;
    shutdown(sv->lfd, SHUT_RDWR);
    if (sv->cur_fd >= 0)
        shutdown(sv->cur_fd, SHUT_RDWR);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)sv->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    connect(fd, (struct sockaddr *)&a, sizeof(a));
    close(fd);
    pthread_join(sv->th, NULL);
    close(sv->lfd);
}

static void srv_free(struct srv *sv)
{
    for (int i = 0; i < sv->nids; i++)
        free(sv->ids[i]);
    pthread_mutex_destroy(&sv->lock);
    free(sv);
}

static int srv_count(struct srv *sv, const char *id)
{
    int n = 0;
    pthread_mutex_lock(&sv->lock);
    for (int i = 0; i < sv->nids; i++)
        n += strcmp(sv->ids[i], id) == 0;
    pthread_mutex_unlock(&sv->lock);
    return n;
}

/* ------------------------------------------------------------------------ */
/* A fake host                                                               */
/* ------------------------------------------------------------------------ */

struct t_cfg {
    const char *keys[24];
    const char *vals[24];
    size_t n;
};

static struct spoke_host_api host;
static char logbuf[1 << 16];
static size_t loglen;
struct t_failure {
    const struct spoke_record *rec;
    int status;
    char reason[256];
};
static struct t_failure failures[64];
static int nfailures;
static struct { char name[65]; int64_t v; } metrics[32];
static int nmetrics;

static const char *t_cfg_string(const struct spoke_config *c, const char *key)
{
    const struct t_cfg *cfg = (const struct t_cfg *)c;
    for (size_t i = cfg->n; i > 0; i--) /* the last setting wins */
        if (strcmp(cfg->keys[i - 1], key) == 0)
            return cfg->vals[i - 1];
    for (const struct spoke_config_field *f = cs_config; f->name; f++)
        if (strcmp(f->name, key) == 0)
            return f->default_value;
    return NULL;
}

static int64_t t_cfg_int(const struct spoke_config *c, const char *key)
{
    const char *v = t_cfg_string(c, key);
    return v ? strtoll(v, NULL, 10) : 0;
}

static int t_cfg_bool(const struct spoke_config *c, const char *key)
{
    const char *v = t_cfg_string(c, key);
    return v && strcmp(v, "true") == 0;
}

static size_t t_cfg_list(const struct spoke_config *c, const char *key, const char *const **items)
{
    static char buf[512];
    static const char *it[16];
    size_t n = 0;
    const char *v = t_cfg_string(c, key);
    snprintf(buf, sizeof(buf), "%s", v ? v : "");
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok && n < 16;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        it[n++] = tok;
    }
    *items = it;
    return n;
}

static void t_log(struct spoke_instance *inst, enum spoke_log_level level, const char *fmt, ...)
{
    va_list ap;
    (void)inst;
    (void)level;
    va_start(ap, fmt);
    int w = vsnprintf(logbuf + loglen, sizeof(logbuf) - loglen, fmt, ap);
    va_end(ap);
    if (w > 0 && loglen + (size_t)w + 2 < sizeof(logbuf)) {
        loglen += (size_t)w;
        logbuf[loglen++] = '\n';
        logbuf[loglen] = '\0';
    }
}

static void t_metric(struct spoke_instance *inst, const char *name, int64_t v, int add)
{
    (void)inst;
    for (int i = 0; i < nmetrics; i++)
        if (strcmp(metrics[i].name, name) == 0) {
            metrics[i].v = add ? metrics[i].v + v : v;
            return;
        }
    if (nmetrics < 32) {
        snprintf(metrics[nmetrics].name, sizeof(metrics[nmetrics].name), "%s", name);
        metrics[nmetrics++].v = v;
    }
}
static void t_metric_add(struct spoke_instance *i, const char *n, int64_t v) { t_metric(i, n, v, 1); }
static void t_metric_set(struct spoke_instance *i, const char *n, int64_t v) { t_metric(i, n, v, 0); }

static int64_t m(const char *name)
{
    for (int i = 0; i < nmetrics; i++)
        if (strcmp(metrics[i].name, name) == 0)
            return metrics[i].v;
    return 0;
}

static int t_failed(struct spoke_instance *inst, const struct spoke_record *rec, int status,
                    const char *reason)
{
    (void)inst;
    if (nfailures < 64) {
        failures[nfailures].rec = rec;
        failures[nfailures].status = status;
        snprintf(failures[nfailures].reason, sizeof(failures[nfailures].reason), "%s", reason);
        nfailures++;
    }
    return SPOKE_OK;
}

static const char *t_name(const struct spoke_instance *inst)
{
    (void)inst;
    return "test";
}

static void host_reset(void)
{
    host = api_table;
    host.log = t_log;
    host.config_string = t_cfg_string;
    host.config_int = t_cfg_int;
    host.config_bool = t_cfg_bool;
    host.config_list = t_cfg_list;
    host.metric_add = t_metric_add;
    host.metric_set = t_metric_set;
    host.sink_record_failed = t_failed;
    host.instance_name = t_name;
    loglen = 0;
    logbuf[0] = '\0';
    nfailures = 0;
    nmetrics = 0;
}

/* A sink on the fake server with extra key/value pairs (NULL-terminated). */
static void *sink_new(struct srv *sv, struct t_cfg *cfg, char *err, const char *const *kv, int *rc)
{
    static char cp[64];
    void *st = NULL;
    host_reset();
    snprintf(cp, sizeof(cp), "127.0.0.1:%d", sv->port);
    cfg->n = 0;
    cfg->keys[cfg->n] = "contact.points", cfg->vals[cfg->n++] = cp;
    cfg->keys[cfg->n] = "keyspace", cfg->vals[cfg->n++] = "ks";
    cfg->keys[cfg->n] = "table", cfg->vals[cfg->n++] = "t";
    cfg->keys[cfg->n] = "reconnect.backoff.ms", cfg->vals[cfg->n++] = "1";
    cfg->keys[cfg->n] = "connect.timeout.ms", cfg->vals[cfg->n++] = "2000";
    for (size_t i = 0; kv && kv[i]; i += 2) {
        cfg->keys[cfg->n] = kv[i];
        cfg->vals[cfg->n++] = kv[i + 1];
    }
    *rc = cassandra_sink.init(&host, (struct spoke_instance *)&host, (const struct spoke_config *)cfg,
                              &st, err, 256);
    if (*rc != SPOKE_OK)
        return NULL;
    *rc = cassandra_sink.start(st, err, 256);
    if (*rc != SPOKE_OK) {
        cassandra_sink.destroy(st);
        return NULL;
    }
    return st;
}

static struct spoke_record *rec_json(const char *json)
{
    return rec_new(intern_str("rows"), NULL, 0, json, strlen(json));
}

static struct spoke_record *recs[20000];

static void make_recs(int n, const char *prefix)
{
    char js[128];
    for (int i = 0; i < n; i++) {
        snprintf(js, sizeof(js), "{\"id\":\"%s%d\",\"n\":%d,\"name\":\"x\"}", prefix, i, i);
        recs[i] = rec_json(js);
    }
}

static void free_recs(int n)
{
    for (int i = 0; i < n; i++) {
        rec_free(recs[i]);
        recs[i] = NULL;
    }
}

static int put_all(void *st, int n, char *err)
{
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (cassandra_sink.put(st, recs[i], err, 256) != SPOKE_OK)
            bad++;
    return bad;
}

static const char *const MAP[] = { "mapping", "id=value.id, n=value.n", NULL };

/* ------------------------------------------------------------------------ */

static void test_batches_and_timestamps(void)
{
    struct srv *sv = srv_start();
    struct t_cfg cfg;
    char err[256];
    int rc;
    void *st = sink_new(sv, &cfg, err, MAP, &rc);
    CHECK_MSG(st != NULL, "%s", err);
    make_recs(100, "k");
    CHECK(put_all(st, 100, err) == 0);
    CHECK_MSG(cassandra_sink.flush(st, err, sizeof(err)) == SPOKE_OK, "%s", err);
    CHECK(sv->nids == 100 && sv->batches == 4 && sv->batch_rows == 100 && sv->executes == 0);
    CHECK(sv->max_batch_rows == 32);
    CHECK(m("rows_written") == 100 && m("batches") == 4 && m("connected") == 1);
    int increasing = 1;
    for (int i = 1; i < sv->nids; i++)
        increasing &= sv->ts[i] > sv->ts[i - 1];
    CHECK(increasing && sv->ts[0] > 1700000000000000LL); /* microseconds, now-ish */
    CHECK(srv_count(sv, "k0") == 1 && srv_count(sv, "k99") == 1);
    CHECK(CONTAINS(logbuf, "connected to 127.0.0.1:"));
    cassandra_sink.destroy(st);
    free_recs(100);

    /* batch.size 1: EXECUTEs; write.timestamp server: no timestamp bound. */
    static const char *const kv[] = { "mapping", "id=value.id, n=value.n", "batch.size", "1",
                                      "max.inflight", "1", "write.timestamp", "server", NULL };
    st = sink_new(sv, &cfg, err, kv, &rc);
    CHECK_MSG(st != NULL, "%s", err);
    make_recs(10, "e");
    CHECK(put_all(st, 10, err) == 0);
    CHECK(cassandra_sink.flush(st, err, sizeof(err)) == SPOKE_OK);
    CHECK(sv->executes == 10 && srv_count(sv, "e9") == 1);
    CHECK(sv->ts[sv->nids - 1] == 0); /* last value is n (4 bytes), not a timestamp */
    cassandra_sink.destroy(st);
    free_recs(10);
    srv_stop(sv);
    srv_free(sv);
}

static void test_invalid_rows_found_in_batches(void)
{
    struct srv *sv = srv_start();
    struct t_cfg cfg;
    char err[256];
    int rc;
    void *st = sink_new(sv, &cfg, err, MAP, &rc);
    CHECK_MSG(st != NULL, "%s", err);
    make_recs(100, "k");
    rec_free(recs[7]);
    recs[7] = rec_json("{\"id\":\"BAD7\",\"n\":7}");
    rec_free(recs[70]);
    recs[70] = rec_json("{\"n\":70}"); /* no id: unset, refused by the server */
    CHECK(put_all(st, 100, err) == 0);
    CHECK_MSG(cassandra_sink.flush(st, err, sizeof(err)) == SPOKE_OK, "%s", err);
    CHECK(nfailures == 2);
    int got7 = 0, got70 = 0;
    for (int i = 0; i < nfailures; i++) {
        got7 += failures[i].rec == recs[7];
        got70 += failures[i].rec == recs[70];
        CHECK(failures[i].status == SPOKE_ERR_INVALID);
        CHECK_STR(failures[i].reason, "server error 0x2200 (Invalid): Invalid null value in "
                                      "condition for column id");
    }
    CHECK(got7 == 1 && got70 == 1);
    CHECK(sv->nids == 98 && srv_count(sv, "k6") == 1 && srv_count(sv, "k69") == 1);
    CHECK(m("rejected") == 2 && m("batch_splits") == 2 && m("rows_written") == 98);
    cassandra_sink.destroy(st);
    free_recs(100);
    srv_stop(sv);
    srv_free(sv);
}

static void test_unprepared_and_transient(void)
{
    struct srv *sv = srv_start();
    struct t_cfg cfg;
    char err[256];
    int rc;
    static const char *const kv[] = { "mapping", "id=value.id, n=value.n", "retries", "2", NULL };
    void *st = sink_new(sv, &cfg, err, kv, &rc);
    CHECK_MSG(st != NULL, "%s", err);

    sv->unprepared_next = 3;
    make_recs(64, "u");
    CHECK(put_all(st, 64, err) == 0);
    CHECK_MSG(cassandra_sink.flush(st, err, sizeof(err)) == SPOKE_OK, "%s", err);
    CHECK(sv->nids == 64 && sv->prepares >= 2 && m("reprepares") >= 1);
    CHECK(CONTAINS(logbuf, "preparing it again"));
    free_recs(64);

    /* A few transient errors: resent within the flush. */
    sv->fail_next = 2;
    sv->fail_code = CQL_ERR_OVERLOADED;
    make_recs(64, "t");
    CHECK(put_all(st, 64, err) == 0);
    CHECK_MSG(cassandra_sink.flush(st, err, sizeof(err)) == SPOKE_OK, "%s", err);
    CHECK(srv_count(sv, "t0") == 1 && srv_count(sv, "t63") == 1 && m("retries") >= 2);
    free_recs(64);

    /* Too many: flush returns retry with the reason; later flushes finish. */
    sv->fail_next = 12;
    sv->fail_code = CQL_ERR_WRITE_TIMEOUT;
    make_recs(32, "w");
    CHECK(put_all(st, 32, err) == 0);
    rc = cassandra_sink.flush(st, err, sizeof(err));
    CHECK(rc == SPOKE_RETRY);
    CHECK_MSG(CONTAINS(err, "server error 0x1100 (Write_timeout): injected") &&
              CONTAINS(err, "after 2 retries"), "%s", err);
    for (int i = 0; i < 10 && rc == SPOKE_RETRY; i++)
        rc = cassandra_sink.flush(st, err, sizeof(err));
    CHECK(rc == SPOKE_OK && srv_count(sv, "w0") == 1 && srv_count(sv, "w31") == 1);
    free_recs(32);

    /* The connection closes with requests in flight: reconnect, resend. */
    int conns = sv->connections;
    sv->close_after = 2;
    make_recs(200, "c");
    CHECK(put_all(st, 200, err) == 0);
    CHECK_MSG(cassandra_sink.flush(st, err, sizeof(err)) == SPOKE_OK, "%s", err);
    CHECK(sv->connections == conns + 1);
    int all = 1;
    char id[16];
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof(id), "c%d", i);
        all &= srv_count(sv, id) >= 1;
    }
    CHECK(all);
    CHECK(CONTAINS(logbuf, "lost: connection closed by"));
    free_recs(200);

    /* The server goes away: retry with "cannot connect", quickly. */
    srv_stop(sv);
    make_recs(10, "d");
    CHECK(put_all(st, 10, err) == 0); /* types known: buffered */
    int64_t t0 = cql_mono_ms();
    rc = cassandra_sink.flush(st, err, sizeof(err));
    CHECK(rc == SPOKE_RETRY && cql_mono_ms() - t0 < 5000);
    CHECK_MSG(CONTAINS(err, "cannot connect to any contact point: 127.0.0.1:") &&
              CONTAINS(err, "Connection refused"), "%s", err);
    CHECK(m("connected") == 0 && m("pending_rows") == 10);
    /* The host gives up on that batch: the next put starts a new cycle. */
    struct spoke_record *r = rec_json("{\"id\":\"z\",\"n\":1}");
    CHECK(cassandra_sink.put(st, r, err, sizeof(err)) == SPOKE_OK);
    CHECK(((struct cs_state *)st)->nrows == 1);
    cassandra_sink.destroy(st);
    rec_free(r);
    free_recs(10);
    srv_free(sv);
}

static void test_refusals(void)
{
    struct srv *sv = srv_start();
    struct t_cfg cfg;
    char err[256];
    int rc;

    /* A counter column fails start(). */
    sv->types[1] = CQL_T_COUNTER;
    void *st = sink_new(sv, &cfg, err, MAP, &rc);
    CHECK(st == NULL && rc == SPOKE_ERR_INVALID);
    CHECK_MSG(CONTAINS(err, "column 'n' of ks.t is a counter") && CONTAINS(err, "idempotent"),
              "%s", err);
    sv->types[1] = CQL_T_INT;

    /* A column that does not exist: the server's message. */
    static const char *const kv[] = { "mapping", "id=value.id, nope=value.n", NULL };
    st = sink_new(sv, &cfg, err, kv, &rc);
    CHECK(st == NULL);
    CHECK_MSG(CONTAINS(err, "server error 0x2200 (Invalid): Undefined column name nope"), "%s", err);

    /* create.table refused. */
    sv->syntax_error_on_create = 1;
    static const char *const ct[] = { "mapping", "id=value.id", "create.table", "id text PRIMARY", NULL };
    st = sink_new(sv, &cfg, err, ct, &rc);
    CHECK(st == NULL);
    CHECK_MSG(CONTAINS(err, "create.table: server error 0x2000 (Syntax_error): line 1:10") &&
              CONTAINS(err, "CREATE TABLE IF NOT EXISTS ks.t (id text PRIMARY)"), "%s", err);
    sv->syntax_error_on_create = 0;

    /* Config checked at init. */
    static const char *const bad[][5] = {
        { "contact.points", "host:99999", NULL },
        { "username", "u", NULL },
        { "create.keyspace", "3", NULL },
        { "mapping", "id=nope", NULL },
    };
    static const char *const want[] = { "contact.points: 'host:99999'", "password is not",
                                        "create.keyspace: give replication options",
                                        "mapping: 'nope' is not a source" };
    for (size_t i = 0; i < 4; i++) {
        st = sink_new(sv, &cfg, err, bad[i], &rc);
        CHECK_MSG(st == NULL && rc == SPOKE_ERR_INVALID, "%s: rc %d", bad[i][0], rc);
        if (st)
            cassandra_sink.destroy(st);
        CHECK_MSG(CONTAINS(err, want[i]), "%s", err);
    }

    /* Conversion errors fail put() for that record only. */
    st = sink_new(sv, &cfg, err, MAP, &rc);
    CHECK_MSG(st != NULL, "%s", err);
    struct spoke_record *a = rec_json("{\"id\":\"a\",\"n\":12.5}");
    struct spoke_record *b = rec_json("{\"id\":\"b\",\"n\":3}");
    struct spoke_record *c = rec_json("[1,2]");
    struct spoke_record *d = rec_new(intern_str("rows"), "k", 1, NULL, 0);
    CHECK(cassandra_sink.put(st, a, err, sizeof(err)) == SPOKE_ERR_INVALID);
    CHECK_STR(err, "column 'n' is int: value 12.5 is not an integer");
    CHECK(cassandra_sink.put(st, b, err, sizeof(err)) == SPOKE_OK);
    CHECK(cassandra_sink.put(st, c, err, sizeof(err)) == SPOKE_ERR_INVALID);
    CHECK_MSG(CONTAINS(err, "column 'id' (value.id)"), "%s", err);
    CHECK(cassandra_sink.put(st, d, err, sizeof(err)) == SPOKE_ERR_INVALID);
    CHECK_MSG(CONTAINS(err, "tombstone"), "%s", err);
    CHECK(cassandra_sink.flush(st, err, sizeof(err)) == SPOKE_OK);
    CHECK(srv_count(sv, "b") == 1 && srv_count(sv, "a") == 0);
    cassandra_sink.destroy(st);
    rec_free(a);
    rec_free(b);
    rec_free(c);
    rec_free(d);
    srv_stop(sv);
    srv_free(sv);
}

static void test_no_mapping(void)
{
    struct srv *sv = srv_start();
    struct t_cfg cfg;
    char err[256];
    int rc;
    void *st = sink_new(sv, &cfg, err, NULL, &rc);
    CHECK_MSG(st != NULL, "%s", err);
    struct spoke_record *r[5] = {
        rec_json("{\"id\":\"p\",\"n\":1}"),
        rec_json("{\"id\":\"q\",\"n\":2,\"name\":\"z\"}"), /* other fields: another INSERT */
        rec_json("{\"id\":\"r\",\"n\":3,\"color\":1}"),  /* no such column */
        rec_json("{\"id\":\"s\",\"n\":4}"),
        rec_json("{\"id\":\"t\",\"color\":2,\"n\":5}"),  /* refused again, no new PREPARE */
    };
    CHECK(cassandra_sink.put(st, r[0], err, sizeof(err)) == SPOKE_OK);
    CHECK(cassandra_sink.put(st, r[1], err, sizeof(err)) == SPOKE_OK);
    CHECK(cassandra_sink.put(st, r[2], err, sizeof(err)) == SPOKE_ERR_INVALID);
    CHECK_MSG(CONTAINS(err, "no INSERT for the fields of this record: server error 0x2200 "
                            "(Invalid): Undefined column name color"), "%s", err);
    CHECK(cassandra_sink.put(st, r[3], err, sizeof(err)) == SPOKE_OK);
    int prepares = sv->prepares;
    CHECK(cassandra_sink.put(st, r[4], err, sizeof(err)) == SPOKE_ERR_INVALID);
    CHECK(sv->prepares == prepares + 1); /* a third field list, refused */
    CHECK(cassandra_sink.flush(st, err, sizeof(err)) == SPOKE_OK);
    CHECK(srv_count(sv, "p") == 1 && srv_count(sv, "q") == 1 && srv_count(sv, "s") == 1);
    CHECK(srv_count(sv, "r") == 0);
    cassandra_sink.destroy(st);
    for (int i = 0; i < 5; i++)
        rec_free(r[i]);
    srv_stop(sv);
    srv_free(sv);
}

int main(void)
{
    RUN(test_batches_and_timestamps);
    RUN(test_invalid_rows_found_in_batches);
    RUN(test_unprepared_and_transient);
    RUN(test_refusals);
    RUN(test_no_mapping);
    return TEST_REPORT();
}
