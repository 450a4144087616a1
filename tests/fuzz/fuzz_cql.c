/* fuzz_cql - libFuzzer harness for cassandra_sink's CQL v4 frame decoder.
 *
 * Input: the bytes a server sends on a connection. They are written into
 * one end of a socketpair and the real connection code (cql_conn_pump:
 * frame splitting, header checks, tracing/warning/payload prefixes, stream
 * bookkeeping) reads them from the other end, with every stream id in
 * flight. Each frame it hands over is decoded the way the sink would:
 * ERROR (and its text), RESULT (prepared metadata, then every bound type is
 * named and bound from a few sources; rows, every cell turned into text),
 * SUPPORTED, AUTHENTICATE, AUTH_CHALLENGE/SUCCESS, EVENT; the server-side
 * request decoders run on the same bodies. Nothing may crash, leak or read
 * out of bounds; a malformed frame must only break the connection.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../plugins/cassandra_sink/cql_conn.c"
#include "../../plugins/cassandra_sink/cql_tls.c"
#include "../../plugins/cassandra_sink/cql_frame.c"
#include "../../plugins/cassandra_sink/cql_types.c"

#define STREAMS 64

static int elem_of(const struct cql_src *self, size_t i, struct cql_src *key, struct cql_src *val)
{
    (void)self;
    memset(key, 0, sizeof(*key));
    key->kind = CQL_SRC_TEXT;
    key->s = "k";
    key->n = 1;
    memset(val, 0, sizeof(*val));
    val->kind = i % 2 ? CQL_SRC_INT : CQL_SRC_TEXT;
    val->i = (int64_t)i;
    val->s = "12";
    val->n = 2;
    return 0;
}

static void bind_all(const struct cql_type *t)
{
    struct cql_src srcs[7];
    struct cql_buf b = { 0 };
    char err[256], name[128];

    memset(srcs, 0, sizeof(srcs));
    srcs[0].kind = CQL_SRC_INT, srcs[0].i = -129;
    srcs[1].kind = CQL_SRC_DOUBLE, srcs[1].d = 12.5;
    srcs[2].kind = CQL_SRC_TEXT, srcs[2].s = "2024-11-19", srcs[2].n = 10;
    srcs[3].kind = CQL_SRC_BOOL, srcs[3].b = 1;
    srcs[4].kind = CQL_SRC_TIMESTAMP, srcs[4].i = 1732001704000;
    srcs[5].kind = CQL_SRC_LIST, srcs[5].count = 3, srcs[5].elem = elem_of;
    srcs[6].kind = CQL_SRC_MAP, srcs[6].count = 2, srcs[6].elem = elem_of;
    cql_type_name(t, name, sizeof(name));
    (void)cql_type_bindable(t);
    for (size_t i = 0; i < sizeof(srcs) / sizeof(srcs[0]); i++) {
        b.len = 0;
        if (cql_bind(&b, t, &srcs[i], "c", 0, err, sizeof(err)) == 0) {
            /* What was bound reads back as a value of the type. */
            struct cql_rd r;
            struct cql_buf txt = { 0 };
            cql_rd_init(&r, b.p, b.len);
            struct cql_str v = cql_get_value(&r);
            if (!r.err)
                cql_value_text(t, (const uint8_t *)v.p, v.n, &txt);
            cql_buf_free(&txt);
        }
    }
    cql_buf_free(&b);
}

static void on_frame(void *ctx, uint32_t token, const struct cql_frame *f)
{
    struct cql_arena a = { 0 };
    char err[256], text[512];
    struct cql_error e;
    struct cql_result res;
    struct cql_multimap mm;
    struct cql_event ev;
    struct cql_str s;
    struct cql_batch bt;
    struct cql_params p;
    (void)ctx;
    (void)token;

    if (f->nwarnings) {
        struct cql_rd w = f->warnings;
        for (uint16_t i = 0; i < f->nwarnings; i++)
            cql_get_string(&w);
    }
    switch (f->h.opcode) {
    case CQL_OP_ERROR:
        if (cql_decode_error(f->body, f->len, &e, err, sizeof(err)) == 0)
            cql_error_text(&e, text, sizeof(text));
        break;
    case CQL_OP_RESULT:
        if (cql_decode_result(f->body, f->len, &a, &res, err, sizeof(err)) < 0)
            break;
        if (res.kind == CQL_RESULT_PREPARED && res.bind.cols) {
            for (int32_t i = 0; i < res.bind.ncols && i < 32; i++)
                bind_all(res.bind.cols[i].type);
        }
        if (res.kind == CQL_RESULT_ROWS && res.meta.cols && res.meta.ncols > 0) {
            struct cql_buf txt = { 0 };
            int32_t cells = 0;
            for (int32_t r = 0; r < res.nrows && cells < 64; r++)
                for (int32_t c = 0; c < res.meta.ncols && cells < 64; c++, cells++) {
                    struct cql_str v = cql_rows_cell(&res, r, c);
                    txt.len = 0;
                    cql_value_text(res.meta.cols[c].type, (const uint8_t *)v.p, v.n, &txt);
                }
            cql_buf_free(&txt);
        }
        break;
    case CQL_OP_SUPPORTED:
        if (cql_decode_supported(f->body, f->len, &a, &mm, err, sizeof(err)) == 0) {
            uint16_t n;
            cql_multimap_get(&mm, "CQL_VERSION", &n);
        }
        break;
    case CQL_OP_AUTHENTICATE:
        cql_decode_authenticate(f->body, f->len, &s, err, sizeof(err));
        break;
    case CQL_OP_AUTH_CHALLENGE:
    case CQL_OP_AUTH_SUCCESS:
        cql_decode_token(f->body, f->len, &s, err, sizeof(err));
        break;
    case CQL_OP_EVENT:
        cql_decode_event(f->body, f->len, &ev, err, sizeof(err));
        break;
    default:
        /* The server-side decoders, on whatever else arrives. */
        cql_decode_startup(f->body, f->len, &a, &mm, err, sizeof(err));
        cql_decode_query(f->body, f->len, &s, &p, err, sizeof(err));
        cql_decode_execute(f->body, f->len, &s, &p, err, sizeof(err));
        cql_decode_batch(f->body, f->len, &a, &bt, err, sizeof(err));
        cql_decode_register(f->body, f->len, &a, &mm, err, sizeof(err));
        cql_decode_prepare(f->body, f->len, &s, err, sizeof(err));
        break;
    }
    cql_arena_free(&a);
}

static void on_lost(void *ctx, uint32_t token)
{
    (void)ctx;
    (void)token;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* The bytes as a server's answers on a connection without compression,
 * then with lz4 agreed (compressed bodies decompressed first). */
static void run(const uint8_t *data, size_t size, int lz4)
{
    static struct cql_endpoint ep = { "127.0.0.1", 9042 };
    struct cql_conn_opts o = { .eps = &ep, .neps = 1, .connect_timeout_ms = 100,
                               .max_frame = 1 << 20, .max_streams = STREAMS, .lz4 = lz4 };
    struct cql_conn *c;
    int sv[2];
    char err[256];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return;
    c = cql_conn_new(&o);
    if (c == NULL) {
        close(sv[0]);
        close(sv[1]);
        return;
    }
    c->fd = sv[0];
    c->compressing = lz4;
    snprintf(c->peer, sizeof(c->peer), "fuzz");
    for (uint32_t t = 1; t <= STREAMS; t++)
        cql_conn_acquire(c, t);
    /* Half the streams become orphans: their answers are dropped. */
    for (int i = 0; i < STREAMS / 2; i++)
        c->tokens[i] = CQL_TOKEN_ORPHAN;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(sv[1], data + off, size - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    shutdown(sv[1], SHUT_WR);
    for (int i = 0; i < 64 && cql_conn_is_open(c); i++)
        if (cql_conn_pump(c, 0, on_frame, NULL, err, sizeof(err)) < 0)
            break;
    cql_conn_close(c, on_lost, NULL);
    cql_conn_free(c);
    close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    run(data, size, 0);
    run(data, size, 1);
    return 0;
}
