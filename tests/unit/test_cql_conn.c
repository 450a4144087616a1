/* unit-cql_conn: cassandra_sink's connection (cql_conn.c, compiled in)
 * against an in-process fake CQL server built from the codec's server side:
 *
 *  - handshake: OPTIONS/SUPPORTED, STARTUP/READY; PasswordAuthenticator with
 *    the right password, a wrong one, none (fatal, clear messages, the
 *    password never in them);
 *  - contact points: failover past a refused one, every one down (message
 *    names each), a server that never answers (timeout);
 *  - pipelining: max_streams requests in flight, answered out of order,
 *    each token back exactly once, stream ids reused over many rounds;
 *  - hostile servers: a response on a stream nobody used, a frame longer
 *    than allowed, a request frame, a v3 error, a closed connection: the
 *    connection breaks with a reason and gives back every token in flight.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../plugins/cassandra_sink/cql_conn.c"
#include "../../plugins/cassandra_sink/cql_tls.c"
#include "../../plugins/cassandra_sink/cql_frame.c"

#include "test.h"

enum fake_mode {
    FAKE_OK = 0,
    FAKE_BAD_STREAM,      /* answers an EXECUTE on stream 999 */
    FAKE_HUGE_FRAME,      /* a header announcing 1 GiB */
    FAKE_REQUEST_FRAME,   /* a frame with version 0x04 */
    FAKE_CLOSE,           /* closes after reading one EXECUTE */
    FAKE_V3,              /* answers OPTIONS with a v3 ERROR */
    FAKE_SILENT           /* never answers anything */
};

struct fake {
    int lfd, port;
    pthread_t th;
    enum fake_mode mode;
    const char *user, *pass;  /* auth required when set */
    int reverse;              /* answer the EXECUTEs of one read in reverse order */
    int max_batch;            /* most EXECUTEs seen in one read */
    int executes;
    char auth_seen[64];
};

static int listen_any(int *port)
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

/* A port nothing listens on (bound, then closed). */
static int dead_port(void)
{
    int port = 0, fd = listen_any(&port);
    close(fd);
    return port;
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    int fd = accept(f->lfd, NULL, NULL);
    uint8_t *in = malloc(1 << 20);
    size_t have = 0;
    struct cql_buf out = { 0 };

    if (fd < 0) {
        free(in);
        return NULL;
    }
    for (;;) {
        ssize_t r = read(fd, in + have, (1 << 20) - have);
        if (r <= 0)
            break;
        have += (size_t)r;
        size_t off = 0;
        int16_t streams[4096];
        int nexec = 0;
        out.len = 0;
        while (have - off >= CQL_HEADER_SIZE) {
            struct cql_header h;
            char err[128];
            if (cql_header_decode(in + off, &h, 1 << 19, err, sizeof(err)) < 0)
                goto done;
            if (have - off < CQL_HEADER_SIZE + h.length)
                break;
            const uint8_t *body = in + off + CQL_HEADER_SIZE;
            off += CQL_HEADER_SIZE + h.length;
            if (f->mode == FAKE_SILENT)
                continue;
            switch (h.opcode) {
            case CQL_OP_OPTIONS:
                if (f->mode == FAKE_V3) {
                    struct cql_error e = { .code = CQL_ERR_PROTOCOL };
                    e.msg.p = "Invalid or unsupported protocol version (4); supported versions are (3/v3)";
                    e.msg.n = (int32_t)strlen(e.msg.p);
                    size_t start = out.len;
                    cql_enc_error(&out, h.stream, &e);
                    out.p[start] = 0x83;
                } else {
                    static const char *const keys[] = { "CQL_VERSION", "COMPRESSION" };
                    static const char *const v0[] = { "3.4.5" };
                    static const char *const v1[] = { "lz4" };
                    static const char *const *const vals[] = { v0, v1 };
                    static const uint16_t nv[] = { 1, 1 };
                    cql_enc_supported(&out, h.stream, keys, vals, nv, 2);
                }
                break;
            case CQL_OP_STARTUP:
                if (f->user)
                    cql_enc_authenticate(&out, h.stream, "org.apache.cassandra.auth.PasswordAuthenticator");
                else
                    cql_enc_ready(&out, h.stream);
                break;
            case CQL_OP_AUTH_RESPONSE: {
                struct cql_str tok;
                char want[128];
                size_t wl = (size_t)snprintf(want, sizeof(want), "%c%s%c%s", 0, f->user, 0, f->pass);
                cql_decode_token(body, h.length, &tok, want + 100, 20);
                snprintf(f->auth_seen, sizeof(f->auth_seen), "%.*s", (int)(tok.n > 0 ? tok.n - 1 : 0),
                         tok.p ? tok.p + 1 : "");
                if (tok.n == (int32_t)wl && memcmp(tok.p, want, wl) == 0) {
                    cql_enc_token(&out, CQL_OP_AUTH_SUCCESS, h.stream, NULL, 0);
                } else {
                    struct cql_error e = { .code = CQL_ERR_AUTH };
                    e.msg.p = "Provided username and/or password are incorrect";
                    e.msg.n = (int32_t)strlen(e.msg.p);
                    cql_enc_error(&out, h.stream, &e);
                }
                break;
            }
            case CQL_OP_EXECUTE:
                f->executes++;
                if (f->mode == FAKE_CLOSE)
                    goto done;
                if (f->mode == FAKE_BAD_STREAM) {
                    cql_enc_result_void(&out, 999);
                    break;
                }
                if (f->mode == FAKE_HUGE_FRAME) {
                    uint8_t hdr[9];
                    struct cql_header hh = { 0x84, 0, h.stream, CQL_OP_RESULT, 1u << 30 };
                    cql_header_encode(hdr, &hh);
                    cql_put_raw(&out, hdr, 9);
                    break;
                }
                if (f->mode == FAKE_REQUEST_FRAME) {
                    cql_enc_options(&out, h.stream);
                    break;
                }
                if (nexec < 4096)
                    streams[nexec++] = h.stream;
                if (!f->reverse)
                    cql_enc_result_void(&out, h.stream);
                break;
            default: {
                struct cql_error e = { .code = CQL_ERR_PROTOCOL, .msg = { "unexpected", 10 } };
                cql_enc_error(&out, h.stream, &e);
            }
            }
        }
        if (nexec > f->max_batch)
            f->max_batch = nexec;
        if (f->reverse)
            for (int i = nexec - 1; i >= 0; i--)
                cql_enc_result_void(&out, streams[i]);
        memmove(in, in + off, have - off);
        have -= off;
        if (out.len && write_all(fd, out.p, out.len) < 0)
            break;
    }
done:
    close(fd);
    free(in);
    cql_buf_free(&out);
    return NULL;
}

static void fake_start(struct fake *f)
{
    f->lfd = listen_any(&f->port);
    CHECK(f->lfd >= 0);
    pthread_create(&f->th, NULL, fake_main, f);
}

static void fake_stop(struct fake *f)
{
    /* Unblocks an accept that never came: connect once and go. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)f->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    connect(fd, (struct sockaddr *)&a, sizeof(a));
    close(fd);
    pthread_join(f->th, NULL);
    close(f->lfd);
}

static struct cql_conn *mk(struct cql_endpoint *eps, size_t n, const char *user, const char *pass,
                           int streams, int64_t timeout_ms)
{
    struct cql_conn_opts o = { .eps = eps, .neps = n, .connect_timeout_ms = timeout_ms,
                               .username = user, .password = pass, .max_frame = 1 << 20,
                               .max_streams = streams };
    return cql_conn_new(&o);
}

static struct cql_endpoint ep(int port)
{
    struct cql_endpoint e = { "127.0.0.1", port };
    return e;
}

struct seen {
    int count[1024];
    int total;
    int lost[1024];
    int nlost;
};

static void on_frame(void *ctx, uint32_t token, const struct cql_frame *f)
{
    struct seen *s = ctx;
    if (token < 1024 && f->h.opcode == CQL_OP_RESULT)
        s->count[token]++;
    s->total++;
}

static void on_lost(void *ctx, uint32_t token)
{
    struct seen *s = ctx;
    if (token < 1024)
        s->lost[token]++;
    s->nlost++;
}

static void test_handshake(void)
{
    struct fake f = { 0 };
    char err[300];
    fake_start(&f);
    struct cql_endpoint e[1] = { ep(f.port) };
    struct cql_conn *c = mk(e, 1, NULL, NULL, 8, 2000);
    CHECK_MSG(cql_conn_open(c, err, sizeof(err)) == CQL_CONN_OK, "%s", err);
    CHECK(cql_conn_is_open(c));
    CHECK_STR(cql_conn_cql_versions(c), "3.4.5");
    CHECK_STR(cql_conn_authenticator(c), "");
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%d", f.port);
    CHECK_STR(cql_conn_peer(c), want);
    cql_conn_free(c);
    fake_stop(&f);
}

static void test_auth(void)
{
    char err[300];
    /* Right password. */
    struct fake f = { .user = "spoke", .pass = "s3cret!" };
    fake_start(&f);
    struct cql_endpoint e[1] = { ep(f.port) };
    struct cql_conn *c = mk(e, 1, "spoke", "s3cret!", 8, 2000);
    CHECK_MSG(cql_conn_open(c, err, sizeof(err)) == CQL_CONN_OK, "%s", err);
    CHECK(CONTAINS(cql_conn_authenticator(c), "PasswordAuthenticator"));
    CHECK(memcmp(f.auth_seen, "spoke", 5) == 0); /* SASL PLAIN: \0user\0password */
    cql_conn_free(c);
    fake_stop(&f);

    /* Wrong password: fatal, the server's message, no password in it. */
    struct fake g = { .user = "spoke", .pass = "s3cret!" };
    fake_start(&g);
    e[0] = ep(g.port);
    c = mk(e, 1, "spoke", "wrong-pw", 8, 2000);
    CHECK(cql_conn_open(c, err, sizeof(err)) == CQL_CONN_FATAL);
    CHECK_MSG(CONTAINS(err, "authentication as 'spoke' failed") &&
              CONTAINS(err, "Provided username and/or password are incorrect") &&
              CONTAINS(err, "0x0100"), "%s", err);
    CHECK(!CONTAINS(err, "wrong-pw"));
    CHECK(!cql_conn_is_open(c));
    cql_conn_free(c);
    fake_stop(&g);

    /* No credentials configured. */
    struct fake h = { .user = "spoke", .pass = "x" };
    fake_start(&h);
    e[0] = ep(h.port);
    c = mk(e, 1, NULL, NULL, 8, 2000);
    CHECK(cql_conn_open(c, err, sizeof(err)) == CQL_CONN_FATAL);
    CHECK_MSG(CONTAINS(err, "requires authentication") && CONTAINS(err, "set username and password"),
              "%s", err);
    cql_conn_free(c);
    fake_stop(&h);
}

static void test_contact_points(void)
{
    char err[400];
    struct fake f = { 0 };
    fake_start(&f);
    int d1 = dead_port(), d2 = dead_port();
    struct cql_endpoint e[3] = { ep(d1), { "no-such-host.invalid", 9042 }, ep(f.port) };
    struct cql_conn *c = mk(e, 3, NULL, NULL, 8, 2000);
    CHECK_MSG(cql_conn_open(c, err, sizeof(err)) == CQL_CONN_OK, "%s", err);
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%d", f.port);
    CHECK_STR(cql_conn_peer(c), want);
    cql_conn_free(c);
    fake_stop(&f);

    struct cql_endpoint down[2] = { ep(d1), ep(d2) };
    c = mk(down, 2, NULL, NULL, 8, 2000);
    CHECK(cql_conn_open(c, err, sizeof(err)) == CQL_CONN_TRANSIENT);
    char w1[64], w2[64];
    snprintf(w1, sizeof(w1), "127.0.0.1:%d: Connection refused", d1);
    snprintf(w2, sizeof(w2), "127.0.0.1:%d: Connection refused", d2);
    CHECK_MSG(CONTAINS(err, "cannot connect to any contact point: ") && CONTAINS(err, w1) &&
              CONTAINS(err, w2), "%s", err);
    cql_conn_free(c);

    /* A server that accepts and never answers: the handshake times out. */
    struct fake s = { .mode = FAKE_SILENT };
    fake_start(&s);
    struct cql_endpoint se[1] = { ep(s.port) };
    c = mk(se, 1, NULL, NULL, 8, 300);
    int64_t t0 = cql_mono_ms();
    CHECK(cql_conn_open(c, err, sizeof(err)) == CQL_CONN_TRANSIENT);
    CHECK(cql_mono_ms() - t0 < 3000);
    CHECK_MSG(CONTAINS(err, "handshake timed out"), "%s", err);
    cql_conn_free(c);
    fake_stop(&s);

    /* A server that only speaks v3. */
    struct fake v = { .mode = FAKE_V3 };
    fake_start(&v);
    struct cql_endpoint ve[1] = { ep(v.port) };
    c = mk(ve, 1, NULL, NULL, 8, 2000);
    CHECK(cql_conn_open(c, err, sizeof(err)) == CQL_CONN_FATAL);
    CHECK_MSG(CONTAINS(err, "does not speak CQL native protocol v4") &&
              CONTAINS(err, "supported versions are (3/v3)"), "%s", err);
    cql_conn_free(c);
    fake_stop(&v);
}

static void test_pipelining(void)
{
    char err[300];
    struct fake f = { .reverse = 1 };
    fake_start(&f);
    struct cql_endpoint e[1] = { ep(f.port) };
    struct cql_conn *c = mk(e, 1, NULL, NULL, 64, 2000);
    CHECK_MSG(cql_conn_open(c, err, sizeof(err)) == CQL_CONN_OK, "%s", err);
    struct seen *s = calloc(1, sizeof(*s));
    for (int round = 0; round < 20; round++) {
        memset(s, 0, sizeof(*s));
        for (uint32_t t = 1; t <= 64; t++) {
            int stream = cql_conn_acquire(c, t);
            CHECK(stream >= 0 && stream < 64);
            cql_enc_execute(cql_conn_out(c), (int16_t)stream, "id", 2, CQL_ONE, 0, NULL, 0);
        }
        CHECK(cql_conn_acquire(c, 65) == -1); /* every stream in use */
        CHECK(cql_conn_inflight(c) == 64);
        CHECK(cql_conn_oldest_ms(c) >= 0);
        int64_t deadline = cql_mono_ms() + 5000;
        while (s->total < 64 && cql_mono_ms() < deadline)
            CHECK(cql_conn_pump(c, 100, on_frame, s, err, sizeof(err)) == 0);
        int once = 1;
        for (uint32_t t = 1; t <= 64; t++)
            once &= s->count[t] == 1;
        CHECK(once && s->total == 64);
        CHECK(cql_conn_inflight(c) == 0 && cql_conn_oldest_ms(c) == -1);
    }
    CHECK(f.executes == 20 * 64);
    CHECK_MSG(f.max_batch > 1, "the server never saw two requests in flight (%d)", f.max_batch);

    /* Orphans: their answers are dropped, their streams come back. */
    memset(s, 0, sizeof(*s));
    for (uint32_t t = 1; t <= 10; t++) {
        int stream = cql_conn_acquire(c, t);
        cql_enc_execute(cql_conn_out(c), (int16_t)stream, "id", 2, CQL_ONE, 0, NULL, 0);
    }
    cql_conn_orphan_all(c);
    CHECK(cql_conn_oldest_ms(c) == -1);
    int64_t deadline = cql_mono_ms() + 5000;
    while (cql_conn_inflight(c) > 0 && cql_mono_ms() < deadline)
        CHECK(cql_conn_pump(c, 100, on_frame, s, err, sizeof(err)) == 0);
    CHECK(cql_conn_inflight(c) == 0 && s->total == 0);
    free(s);
    cql_conn_free(c);
    fake_stop(&f);
}

/* A hostile server mode: the connection breaks with a message containing
 * want, and closing gives back the tokens in flight. */
static void hostile(enum fake_mode mode, const char *want)
{
    char err[300];
    struct fake f = { .mode = mode };
    fake_start(&f);
    struct cql_endpoint e[1] = { ep(f.port) };
    struct cql_conn *c = mk(e, 1, NULL, NULL, 16, 2000);
    CHECK_MSG(cql_conn_open(c, err, sizeof(err)) == CQL_CONN_OK, "%s", err);
    struct seen *s = calloc(1, sizeof(*s));
    for (uint32_t t = 1; t <= 3; t++) {
        int stream = cql_conn_acquire(c, t);
        cql_enc_execute(cql_conn_out(c), (int16_t)stream, "id", 2, CQL_ONE, 0, NULL, 0);
    }
    int rc = 0;
    int64_t deadline = cql_mono_ms() + 5000;
    while (rc == 0 && cql_mono_ms() < deadline)
        rc = cql_conn_pump(c, 100, on_frame, s, err, sizeof(err));
    CHECK_MSG(rc < 0 && CONTAINS(err, want), "mode %d: %s (want %s)", mode, err, want);
    cql_conn_close(c, on_lost, s);
    CHECK(!cql_conn_is_open(c) && cql_conn_inflight(c) == 0);
    CHECK_MSG(s->nlost + s->total >= 3 && s->nlost >= 1, "mode %d: %d lost, %d answered", mode,
              s->nlost, s->total);
    CHECK(cql_conn_pump(c, 0, on_frame, s, err, sizeof(err)) < 0); /* closed */
    free(s);
    cql_conn_free(c);
    fake_stop(&f);
}

static void test_hostile(void)
{
    hostile(FAKE_BAD_STREAM, "on stream 999, which has no request");
    hostile(FAKE_HUGE_FRAME, "exceeds the limit");
    hostile(FAKE_REQUEST_FRAME, "a request frame");
    hostile(FAKE_CLOSE, "connection closed by 127.0.0.1:");
}

/* The test's own reading and writing of big-endian [int]s, independent of
 * the codec under test. */
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A connection over a socketpair with lz4 agreed (no handshake): c->fd is
 * one end, *peer the other. */
static struct cql_conn *lz4_pair(int lz4, int *peer)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    struct cql_endpoint e = ep(9042);
    struct cql_conn_opts o = { .eps = &e, .neps = 1, .connect_timeout_ms = 100,
                               .max_frame = 1 << 20, .max_streams = 8, .lz4 = lz4 };
    struct cql_conn *c = cql_conn_new(&o);
    c->fd = sv[0];
    c->compressing = lz4;
    snprintf(c->peer, sizeof(c->peer), "peer");
    *peer = sv[1];
    return c;
}

/* A RESULT Void frame on stream 0, its body lz4-compressed as the protocol
 * says (announced: the uncompressed length written before the block). */
static size_t compressed_void(uint8_t *out, uint32_t announced, int corrupt)
{
    struct cql_buf b = { 0 };
    cql_enc_result_void(&b, 0);
    uint8_t z[64];
    int n = LZ4_compress_default((const char *)b.p + CQL_HEADER_SIZE, (char *)z + 4,
                                 (int)(b.len - CQL_HEADER_SIZE), 60);
    CHECK(n > 0);
    wr32(z, announced);
    if (corrupt)
        z[4] = 0xFF;  /* a literal run longer than the block */
    memcpy(out, b.p, CQL_HEADER_SIZE);
    out[1] |= CQL_FLAG_COMPRESSION;
    wr32(out + 5, (uint32_t)n + 4);
    memcpy(out + CQL_HEADER_SIZE, z, (size_t)n + 4);
    cql_buf_free(&b);
    return CQL_HEADER_SIZE + (size_t)n + 4;
}

static void test_lz4_frames(void)
{
    char err[300];
    uint8_t f[128];
    int peer;

    /* A compressed answer decodes to what it holds. */
    struct cql_conn *c = lz4_pair(1, &peer);
    struct seen *s = calloc(1, sizeof(*s));
    CHECK(cql_conn_acquire(c, 7) == 0);
    size_t n = compressed_void(f, 4, 0);  /* RESULT Void: a 4-byte [int] kind */
    CHECK(write(peer, f, n) == (ssize_t)n);
    CHECK_MSG(cql_conn_pump(c, 100, on_frame, s, err, sizeof(err)) >= 0, "%s", err);
    CHECK(s->count[7] == 1);
    cql_conn_free(c);
    close(peer);

    /* Each malformed one breaks the connection with its reason. */
    static const struct {
        int lz4;
        uint32_t announced;
        int corrupt;
        const char *want;
    } bad[] = {
        { 0, 4, 0, "a compressed body, and no compression was agreed" },
        { 1, 2u << 20, 0, "announces 2097152 bytes (at most 1048576 accepted)" },
        { 1, 4, 1, "does not decompress to the 4 bytes it announces" },
        { 1, 9, 0, "does not decompress to the 9 bytes it announces" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        c = lz4_pair(bad[i].lz4, &peer);
        memset(s, 0, sizeof(*s));
        CHECK(cql_conn_acquire(c, 7) == 0);
        n = compressed_void(f, bad[i].announced, bad[i].corrupt);
        CHECK(write(peer, f, n) == (ssize_t)n);
        err[0] = '\0';
        CHECK(cql_conn_pump(c, 100, on_frame, s, err, sizeof(err)) < 0);
        CHECK_MSG(CONTAINS(err, bad[i].want), "%zu: %s", i, err);
        CHECK(s->total == 0);
        cql_conn_free(c);
        close(peer);
    }
    free(s);

    /* Requests: a body that shrinks goes compressed, one that would not
     * goes as it is; both arrive whole and in order. */
    c = lz4_pair(1, &peer);
    char cql[2000];
    memset(cql, 'a', sizeof(cql));
    memcpy(cql, "SELECT ", 7);
    cql_enc_query(cql_conn_out(c), 1, cql, sizeof(cql), 1, 0, NULL, 0);
    cql_enc_options(cql_conn_out(c), 2);
    struct cql_buf plain = { 0 };
    cql_enc_query(&plain, 1, cql, sizeof(cql), 1, 0, NULL, 0);
    CHECK(cql_conn_pump(c, 0, on_frame, NULL, err, sizeof(err)) >= 0);
    uint8_t got[4096];
    ssize_t r = read(peer, got, sizeof(got));
    CHECK(r > (ssize_t)(2 * CQL_HEADER_SIZE));
    uint32_t zlen = rd32(got + 5);
    CHECK((got[1] & CQL_FLAG_COMPRESSION) && zlen < 100);
    CHECK(rd32(got + CQL_HEADER_SIZE) == plain.len - CQL_HEADER_SIZE);
    char back[4096];
    int dn = LZ4_decompress_safe((const char *)got + CQL_HEADER_SIZE + 4, back, (int)zlen - 4,
                                 (int)sizeof(back));
    CHECK(dn == (int)(plain.len - CQL_HEADER_SIZE));
    CHECK(memcmp(back, plain.p + CQL_HEADER_SIZE, (size_t)dn) == 0);
    const uint8_t *opt = got + CQL_HEADER_SIZE + zlen;
    CHECK(r == (ssize_t)(2 * CQL_HEADER_SIZE + zlen));
    CHECK(opt[4] == CQL_OP_OPTIONS && (opt[1] & CQL_FLAG_COMPRESSION) == 0 && rd32(opt + 5) == 0);
    uint64_t raw, wire;
    cql_conn_take_bytes(c, &raw, &wire);
    CHECK(raw == plain.len - CQL_HEADER_SIZE && wire == zlen);
    cql_buf_free(&plain);
    cql_conn_free(c);
    close(peer);
}

int main(void)
{
    RUN(test_handshake);
    RUN(test_auth);
    RUN(test_contact_points);
    RUN(test_pipelining);
    RUN(test_hostile);
    RUN(test_lz4_frames);
    return TEST_REPORT();
}
