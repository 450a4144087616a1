/*
 * cql_conn.c - one pipelined CQL v4 connection: contact points, TCP,
 * handshake (OPTIONS, STARTUP, SASL PLAIN), stream ids, frame I/O.
 * See cql_conn.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <lz4.h>

#include "cql_conn.h"
#include "cql_tls.h"

/* Bytes read per pump at most, so one busy connection cannot starve the
 * caller's other work (timeouts, sending). */
#define READ_BUDGET (4u * 1024 * 1024)

struct cql_conn {
    struct cql_conn_opts o;
    char *username, *password;     /* copies; password wiped on free */
    int fd;
    struct cql_tls_session *ts;    /* over fd when o.tls is set */
    int refused;                   /* the server ended the TLS session with a
                                      fatal alert: retrying cannot help */
    size_t next_ep;                /* contact point tried first next time */
    /* "host:port" (host < 256). Messages print at most 120 bytes of it
     * (%.120s), so the reason after it still fits the error buffers (256
     * and 300 bytes) and -Wformat-truncation can check that it does. */
    char peer[300];
    char authenticator[128];
    char cql_versions[128];

    struct cql_buf out;
    size_t out_off;                /* bytes of out already written */
    int compressing;               /* lz4 agreed and STARTUP sent */
    size_t out_final;              /* out[0, out_final): frames in their wire form */
    struct cql_buf zout;           /* compress_out's scratch */
    struct cql_buf zin;            /* the decompressed body of the last frame */
    uint64_t z_raw, z_wire;        /* request bodies before and after compression */
    uint8_t *in;
    size_t in_len, in_cap, in_off; /* unread bytes are in[in_off, in_len) */

    uint32_t *tokens;              /* per stream; 0 = free */
    int64_t *sent_ms;
    int *free_ids;                 /* stack of free stream ids */
    int nfree;
    size_t inflight;               /* non-free streams (orphans included) */
};

int64_t cql_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void reset_streams(struct cql_conn *c)
{
    c->nfree = 0;
    for (int i = c->o.max_streams - 1; i >= 0; i--) {
        c->tokens[i] = 0;
        c->free_ids[c->nfree++] = i;
    }
    c->inflight = 0;
}

struct cql_conn *cql_conn_new(const struct cql_conn_opts *o)
{
    struct cql_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->o = *o;
    if (c->o.max_streams < 1)
        c->o.max_streams = 1;
    if (c->o.max_streams > 32768)
        c->o.max_streams = 32768;
    if (c->o.max_frame == 0 || c->o.max_frame > CQL_MAX_BODY)
        c->o.max_frame = CQL_MAX_BODY;
    c->fd = -1;
    c->username = dup_or_null(o->username);
    c->password = dup_or_null(o->password);
    c->o.username = c->username;
    c->o.password = c->password;
    c->tokens = calloc((size_t)c->o.max_streams, sizeof(*c->tokens));
    c->sent_ms = calloc((size_t)c->o.max_streams, sizeof(*c->sent_ms));
    c->free_ids = calloc((size_t)c->o.max_streams, sizeof(*c->free_ids));
    if (!c->tokens || !c->sent_ms || !c->free_ids || (o->username && !c->username) ||
        (o->password && !c->password)) {
        cql_conn_free(c);
        return NULL;
    }
    reset_streams(c);
    return c;
}

void cql_conn_free(struct cql_conn *c)
{
    if (c == NULL)
        return;
    cql_conn_close(c, NULL, NULL);
    if (c->password) {
        explicit_bzero(c->password, strlen(c->password));
        free(c->password);
    }
    free(c->username);
    free(c->tokens);
    free(c->sent_ms);
    free(c->free_ids);
    cql_buf_free(&c->out);
    cql_buf_free(&c->zout);
    cql_buf_free(&c->zin);
    free(c->in);
    free(c);
}

int cql_conn_is_open(const struct cql_conn *c) { return c->fd >= 0; }
const char *cql_conn_peer(const struct cql_conn *c) { return c->peer; }
const char *cql_conn_authenticator(const struct cql_conn *c) { return c->authenticator; }
const char *cql_conn_cql_versions(const struct cql_conn *c) { return c->cql_versions; }
struct cql_buf *cql_conn_out(struct cql_conn *c) { return &c->out; }

void cql_conn_take_bytes(struct cql_conn *c, uint64_t *raw, uint64_t *wire)
{
    *raw = c->z_raw;
    *wire = c->z_wire;
    c->z_raw = c->z_wire = 0;
}
size_t cql_conn_inflight(const struct cql_conn *c) { return c->inflight; }
size_t cql_conn_unsent(const struct cql_conn *c) { return c->out.len - c->out_off; }

void cql_conn_close(struct cql_conn *c, void (*fn)(void *ctx, uint32_t token), void *ctx)
{
    if (c->ts) {
        cql_tls_close(c->ts);
        c->ts = NULL;
    }
    c->refused = 0;
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    for (int i = 0; i < c->o.max_streams; i++) {
        uint32_t t = c->tokens[i];
        c->tokens[i] = 0;
        if (t != 0 && t != CQL_TOKEN_ORPHAN && fn)
            fn(ctx, t);
    }
    reset_streams(c);
    c->out.len = 0;
    c->out.oom = 0;
    c->out_off = 0;
    c->out_final = 0;
    c->compressing = 0;
    c->in_len = c->in_off = 0;
}

int cql_conn_acquire(struct cql_conn *c, uint32_t token)
{
    int id;
    if (c->nfree == 0 || token == 0 || token == CQL_TOKEN_ORPHAN)
        return -1;
    id = c->free_ids[--c->nfree];
    c->tokens[id] = token;
    c->sent_ms[id] = cql_mono_ms();
    c->inflight++;
    return id;
}

static uint32_t release(struct cql_conn *c, int id)
{
    uint32_t t = c->tokens[id];
    c->tokens[id] = 0;
    c->free_ids[c->nfree++] = id;
    c->inflight--;
    return t;
}

int64_t cql_conn_oldest_ms(const struct cql_conn *c)
{
    int64_t oldest = -1;
    if (c->inflight == 0)
        return -1;
    for (int i = 0; i < c->o.max_streams; i++)
        if (c->tokens[i] != 0 && c->tokens[i] != CQL_TOKEN_ORPHAN &&
            (oldest < 0 || c->sent_ms[i] < oldest))
            oldest = c->sent_ms[i];
    return oldest;
}

void cql_conn_orphan_all(struct cql_conn *c)
{
    for (int i = 0; i < c->o.max_streams; i++)
        if (c->tokens[i] != 0)
            c->tokens[i] = CQL_TOKEN_ORPHAN;
}

/* ------------------------------------------------------------------------ */
/* I/O                                                                       */
/* ------------------------------------------------------------------------ */

#define IO_AGAIN (-1)  /* the socket is not ready */
#define IO_ERROR (-2)  /* errstr is set */

/* One send, through TLS when it is on: the bytes sent, IO_AGAIN or
 * IO_ERROR. */
static ssize_t io_send(struct cql_conn *c, const void *p, size_t n, char *errstr,
                       size_t errstr_size)
{
    char why[200];
    ssize_t w;
    if (c->ts) {
        if ((w = cql_tls_send(c->ts, p, n, why, sizeof(why))) == CQL_TLS_AGAIN)
            return IO_AGAIN;
        c->refused = w == CQL_TLS_REFUSED;
    } else {
        while ((w = send(c->fd, p, n, MSG_NOSIGNAL)) < 0 && errno == EINTR)
            ;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return IO_AGAIN;
        if (w < 0)
            snprintf(why, sizeof(why), "%s", strerror(errno));
    }
    if (w < 0) {
        snprintf(errstr, errstr_size, "cannot write to %.120s: %s", c->peer, why);
        return IO_ERROR;
    }
    return w;
}

/* One receive, through TLS when it is on: the bytes read, IO_AGAIN, or
 * IO_ERROR (the peer closed, or an error). */
static ssize_t io_recv(struct cql_conn *c, void *p, size_t n, char *errstr, size_t errstr_size)
{
    char why[200];
    ssize_t r;
    if (c->ts) {
        if ((r = cql_tls_recv(c->ts, p, n, why, sizeof(why))) == CQL_TLS_AGAIN)
            return IO_AGAIN;
        c->refused = r == CQL_TLS_REFUSED;
        if (r == 0 && cql_tls_no_client_cert(c->ts)) {
            c->refused = 1;
            snprintf(errstr, errstr_size, "connection closed by %.120s: it asked for a TLS "
                     "client certificate and none is configured (ssl.certificate.pem and "
                     "ssl.key.pem)", c->peer);
            return IO_ERROR;
        }
    } else {
        while ((r = recv(c->fd, p, n, 0)) < 0 && errno == EINTR)
            ;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return IO_AGAIN;
        if (r < 0)
            snprintf(why, sizeof(why), "%s", strerror(errno));
    }
    if (r < 0) {
        snprintf(errstr, errstr_size, "cannot read from %.120s: %s", c->peer, why);
        return IO_ERROR;
    }
    if (r == 0) {
        snprintf(errstr, errstr_size, "connection closed by %.120s", c->peer);
        return IO_ERROR;
    }
    return r;
}

/* The frames appended to out since the last call, in their wire form: each
 * body LZ4-compressed once compression is on, when that makes it smaller
 * (the protocol lets any frame go uncompressed). 0, or -1 on out of
 * memory. */
static int compress_out(struct cql_conn *c)
{
    if (!c->compressing || c->out_final >= c->out.len) {
        c->out_final = c->out.len;
        return 0;
    }
    struct cql_buf *z = &c->zout;
    z->len = 0;
    size_t pos = c->out_final;
    while (pos + CQL_HEADER_SIZE <= c->out.len) {
        const uint8_t *h = c->out.p + pos;
        struct cql_header hd;
        char why[8];
        if (cql_header_decode(h, &hd, CQL_MAX_BODY, why, sizeof(why)) < 0 ||
            hd.length > c->out.len - pos - CQL_HEADER_SIZE)
            break;  /* not a whole frame: cannot happen, and nothing is guessed */
        size_t blen = hd.length, at = z->len, bound;
        const uint8_t *body = h + CQL_HEADER_SIZE;
        c->z_raw += blen;
        if (blen > 0 && blen <= LZ4_MAX_INPUT_SIZE &&
            (bound = (size_t)LZ4_compressBound((int)blen)) > 0 &&
            cql_buf_reserve(z, CQL_HEADER_SIZE + 4 + bound) == 0) {
            z->len += CQL_HEADER_SIZE;           /* the header, once the length is known */
            cql_put_i32(z, (int32_t)blen);      /* room reserved: no reallocation */
            int n = LZ4_compress_default((const char *)body, (char *)z->p + z->len, (int)blen,
                                         (int)bound);
            if (n > 0 && (size_t)n + 4 < blen) {
                hd.flags |= CQL_FLAG_COMPRESSION;
                hd.length = (uint32_t)n + 4;
                cql_header_encode(z->p + at, &hd);
                z->len += (size_t)n;
                c->z_wire += (uint64_t)n + 4;
                pos += CQL_HEADER_SIZE + blen;
                continue;
            }
            z->len = at;  /* it would not shrink: the frame goes as it is */
        }
        cql_put_raw(z, h, CQL_HEADER_SIZE + blen);
        c->z_wire += blen;
        pos += CQL_HEADER_SIZE + blen;
    }
    if (pos < c->out.len)
        cql_put_raw(z, c->out.p + pos, c->out.len - pos);
    if (z->oom) {
        z->oom = 0;
        return -1;
    }
    if (c->out_final == 0) {
        /* The usual case, nothing held back: the scratch becomes the buffer
         * and the old buffer the next scratch, with no copy. */
        struct cql_buf t = c->out;
        c->out = *z;
        *z = t;
    } else {
        c->out.len = c->out_final;
        cql_put_raw(&c->out, z->p, z->len);
    }
    c->out_final = c->out.len;
    return c->out.oom ? -1 : 0;
}

/* Writes as much of out as the socket takes. 0, or -1 with errstr. */
static int write_some(struct cql_conn *c, char *errstr, size_t errstr_size)
{
    if (c->out.oom || compress_out(c) < 0) {
        snprintf(errstr, errstr_size, "out of memory building a request");
        return -1;
    }
    while (c->out_off < c->out.len) {
        ssize_t w = io_send(c, c->out.p + c->out_off, c->out.len - c->out_off, errstr,
                            errstr_size);
        if (w == IO_AGAIN)
            return 0;
        if (w == IO_ERROR)
            return -1;
        c->out_off += (size_t)w;
    }
    c->out.len = c->out_off = c->out_final = 0;
    return 0;
}

/* Reads what is available (up to the budget). 1 = data or nothing, 0 never;
 * -1 on EOF or error with errstr. */
static int read_some(struct cql_conn *c, char *errstr, size_t errstr_size)
{
    size_t budget = READ_BUDGET;
    while (budget > 0) {
        if (c->in_off > 0 && c->in_off == c->in_len)
            c->in_off = c->in_len = 0;
        if (c->in_cap - c->in_len < 65536) {
            if (c->in_off > 0) {
                memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
                c->in_len -= c->in_off;
                c->in_off = 0;
            }
            if (c->in_cap - c->in_len < 65536) {
                size_t ncap = c->in_cap ? c->in_cap * 2 : 131072;
                uint8_t *p = realloc(c->in, ncap);
                if (p == NULL) {
                    snprintf(errstr, errstr_size, "out of memory reading from %.120s", c->peer);
                    return -1;
                }
                c->in = p;
                c->in_cap = ncap;
            }
        }
        ssize_t r = io_recv(c, c->in + c->in_len, c->in_cap - c->in_len, errstr, errstr_size);
        if (r == IO_AGAIN)
            return 1;
        if (r == IO_ERROR)
            return -1;
        c->in_len += (size_t)r;
        budget = (size_t)r >= budget ? 0 : budget - (size_t)r;
    }
    return 1;
}

/*
 * The next complete frame in the input buffer: 1 (f set, consumed), 0 (need
 * more bytes), -1 (malformed: errstr).
 */
static int next_frame(struct cql_conn *c, struct cql_frame *f, char *errstr, size_t errstr_size)
{
    size_t avail = c->in_len - c->in_off;
    char why[160];
    const uint8_t *p = c->in + c->in_off;

    if (avail < CQL_HEADER_SIZE)
        return 0;
    if (cql_header_decode(p, &f->h, c->o.max_frame, why, sizeof(why)) < 0) {
        snprintf(errstr, errstr_size, "bad frame from %.120s: %s", c->peer, why);
        return -1;
    }
    if ((f->h.version & 0x80) == 0) {
        snprintf(errstr, errstr_size, "bad frame from %.120s: a request frame (version byte "
                 "0x%02x)", c->peer, f->h.version);
        return -1;
    }
    if (avail < CQL_HEADER_SIZE + (size_t)f->h.length)
        return 0;
    c->in_off += CQL_HEADER_SIZE + f->h.length;
    const uint8_t *body = p + CQL_HEADER_SIZE;
    size_t blen = f->h.length;
    if (f->h.flags & CQL_FLAG_COMPRESSION) {
        if (!c->o.lz4) {
            snprintf(errstr, errstr_size, "bad frame from %.120s: a compressed body, and no "
                     "compression was agreed", c->peer);
            return -1;
        }
        struct cql_rd rd;
        cql_rd_init(&rd, body, blen);
        uint32_t raw = (uint32_t)cql_get_i32(&rd);  /* 0 when shorter than an [int] */
        if (blen < 4 || raw > c->o.max_frame || raw > LZ4_MAX_INPUT_SIZE) {
            snprintf(errstr, errstr_size, "bad frame from %.120s: compressed body of %zu bytes "
                     "announces %u bytes (at most %zu accepted)", c->peer, blen, raw,
                     c->o.max_frame);
            return -1;
        }
        c->zin.len = 0;
        if (cql_buf_reserve(&c->zin, raw ? raw : 1) < 0) {
            c->zin.oom = 0;
            snprintf(errstr, errstr_size, "out of memory reading from %.120s", c->peer);
            return -1;
        }
        int n = LZ4_decompress_safe((const char *)body + 4, (char *)c->zin.p, (int)(blen - 4),
                                    (int)raw);
        if (n < 0 || (uint32_t)n != raw) {
            snprintf(errstr, errstr_size, "bad frame from %.120s: its lz4 body does not "
                     "decompress to the %u bytes it announces", c->peer, raw);
            return -1;
        }
        body = c->zin.p;
        blen = raw;
        f->h.flags &= (uint8_t)~CQL_FLAG_COMPRESSION;  /* what follows reads a plain body */
    }
    if (cql_response_body(&f->h, body, blen, &f->body, &f->len,
                          &f->warnings, &f->nwarnings, why, sizeof(why)) < 0) {
        snprintf(errstr, errstr_size, "bad frame from %.120s: %s", c->peer, why);
        return -1;
    }
    return 1;
}

/* Checks the version of a response; a server that does not speak v4
 * answers with an ERROR in its own version. -1 with errstr when wrong. */
static int check_version(const struct cql_conn *c, const struct cql_frame *f, char *errstr,
                         size_t errstr_size)
{
    if (f->h.version == CQL_VERSION_RESP)
        return 0;
    if (f->h.opcode == CQL_OP_ERROR) {
        struct cql_error e;
        char why[8];
        if (cql_decode_error(f->body, f->len, &e, why, sizeof(why)) == 0) {
            snprintf(errstr, errstr_size, "%.120s does not speak CQL native protocol v4: %.*s",
                     c->peer, (int)(e.msg.n > 0 ? e.msg.n : 0), e.msg.p ? e.msg.p : "");
            return -1;
        }
    }
    snprintf(errstr, errstr_size, "%.120s answered with protocol version %u (v4 expected)",
             c->peer, f->h.version & 0x7F);
    return -1;
}

int cql_conn_pump(struct cql_conn *c, int timeout_ms,
                  void (*fn)(void *ctx, uint32_t token, const struct cql_frame *f), void *ctx,
                  char *errstr, size_t errstr_size)
{
    struct pollfd pfd;
    struct cql_frame f;
    int rc;

    if (c->fd < 0) {
        snprintf(errstr, errstr_size, "not connected");
        return -1;
    }
    if (write_some(c, errstr, errstr_size) < 0)
        return -1;
    pfd.fd = c->fd;
    pfd.events = POLLIN | (c->out_off < c->out.len ? POLLOUT : 0);
    pfd.revents = 0;
    /* Bytes TLS already decrypted are not on the socket: poll() does not
     * see them. */
    rc = poll(&pfd, 1, timeout_ms < 0 || (c->ts && cql_tls_pending(c->ts)) ? 0 : timeout_ms);
    if (rc == 0 && c->ts && cql_tls_pending(c->ts)) {
        rc = 1;
        pfd.revents |= POLLIN;
    }
    if (rc < 0 && errno != EINTR) {
        snprintf(errstr, errstr_size, "poll: %s", strerror(errno));
        return -1;
    }
    if (rc <= 0)
        return 0;
    if ((pfd.revents & POLLOUT) && write_some(c, errstr, errstr_size) < 0)
        return -1;
    if (!(pfd.revents & (POLLIN | POLLHUP | POLLERR)))
        return 0;
    int rr = read_some(c, errstr, errstr_size);
    for (;;) {
        int nf = next_frame(c, &f, errstr, errstr_size);
        if (nf < 0)
            return -1;
        if (nf == 0)
            break;
        if (check_version(c, &f, errstr, errstr_size) < 0)
            return -1;
        if (f.h.stream < 0) {
            if (f.h.opcode == CQL_OP_EVENT)
                continue;
            snprintf(errstr, errstr_size, "bad frame from %.120s: %s on stream %d", c->peer,
                     cql_opcode_name(f.h.opcode), f.h.stream);
            return -1;
        }
        if (f.h.stream >= c->o.max_streams || c->tokens[f.h.stream] == 0) {
            snprintf(errstr, errstr_size, "bad frame from %.120s: %s on stream %d, which has no "
                     "request", c->peer, cql_opcode_name(f.h.opcode), f.h.stream);
            return -1;
        }
        uint32_t token = release(c, f.h.stream);
        if (token != CQL_TOKEN_ORPHAN)
            fn(ctx, token, &f);
    }
    if (rr < 0)
        return -1;
    return write_some(c, errstr, errstr_size);
}

/* ------------------------------------------------------------------------ */
/* Connecting                                                                */
/* ------------------------------------------------------------------------ */

static int remaining(int64_t deadline)
{
    int64_t left = deadline - cql_mono_ms();
    return left <= 0 ? 0 : left > 60000 ? 60000 : (int)left;
}

/* Non-blocking TCP connect to one address before the deadline. fd or -1. */
static int tcp_connect(const struct addrinfo *ai, int64_t deadline, char *why, size_t whysz)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    int one = 1, err = 0;
    socklen_t el = sizeof(err);

    if (fd < 0) {
        snprintf(why, whysz, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            snprintf(why, whysz, "%s", strerror(errno));
            close(fd);
            return -1;
        }
        for (;;) {
            struct pollfd pfd = { fd, POLLOUT, 0 };
            int left = remaining(deadline);
            int rc = poll(&pfd, 1, left);
            if (rc < 0 && errno == EINTR)
                continue;
            if (rc <= 0) {
                snprintf(why, whysz, rc == 0 ? "connect timed out" : "poll: %s",
                         strerror(errno));
                close(fd);
                return -1;
            }
            break;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
            snprintf(why, whysz, "%s", strerror(err ? err : errno));
            close(fd);
            return -1;
        }
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    return fd;
}

/*
 * One synchronous exchange during the handshake: appends nothing (the
 * caller encoded the request on stream 0), writes it all and waits for the
 * response on stream 0, copying its body into reply. 0, or -1 with why, or
 * -2 with why when retrying cannot help (another protocol version, a TLS
 * session the server ended with a fatal alert).
 */
static int handshake_call(struct cql_conn *c, int64_t deadline, struct cql_header *h,
                          struct cql_buf *reply, char *why, size_t whysz)
{
    struct cql_frame f;
    while (c->out_off < c->out.len) {
        struct pollfd pfd = { c->fd, POLLOUT, 0 };
        if (write_some(c, why, whysz) < 0)
            return c->refused ? -2 : -1;
        if (c->out_off >= c->out.len)
            break;
        if (poll(&pfd, 1, remaining(deadline)) == 0) {
            snprintf(why, whysz, "handshake timed out");
            return -1;
        }
    }
    for (;;) {
        int nf = next_frame(c, &f, why, whysz);
        if (nf < 0)
            return -1;
        if (nf > 0) {
            if (f.h.stream < 0 && f.h.opcode == CQL_OP_EVENT)
                continue;
            if (f.h.version != CQL_VERSION_RESP) {
                check_version(c, &f, why, whysz);
                return -2;
            }
            if (f.h.stream != 0) {
                snprintf(why, whysz, "bad frame: response on stream %d during the handshake",
                         f.h.stream);
                return -1;
            }
            *h = f.h;
            reply->len = 0;
            cql_put_raw(reply, f.body, f.len);
            if (reply->oom) {
                snprintf(why, whysz, "out of memory");
                return -1;
            }
            return 0;
        }
        struct pollfd pfd = { c->fd, POLLIN, 0 };
        int left = remaining(deadline);
        int rc = c->ts && cql_tls_pending(c->ts) ? 1 : left > 0 ? poll(&pfd, 1, left) : 0;
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0) {
            snprintf(why, whysz, "handshake timed out");
            return -1;
        }
        if (read_some(c, why, whysz) < 0)
            return c->refused ? -2 : -1;
    }
}

/* Decodes an ERROR reply into text. */
static void error_reply(const struct cql_buf *reply, char *why, size_t whysz)
{
    struct cql_error e;
    char tmp[8];
    if (cql_decode_error(reply->p, reply->len, &e, tmp, sizeof(tmp)) == 0)
        cql_error_text(&e, why, whysz);
    else
        snprintf(why, whysz, "malformed ERROR");
}

/* OPTIONS, STARTUP, authentication. CQL_CONN_OK, _TRANSIENT or _FATAL. */
static int handshake(struct cql_conn *c, int64_t deadline, char *why, size_t whysz)
{
    struct cql_buf reply = { 0 };
    struct cql_header h;
    struct cql_arena a = { 0 };
    int rc = CQL_CONN_TRANSIENT;
    char *token = NULL;
    size_t toklen = 0;

    /* OPTIONS: what the server supports (logged by the caller). */
    cql_enc_options(&c->out, 0);
    int hc = handshake_call(c, deadline, &h, &reply, why, whysz);
    if (hc < 0) {
        rc = hc == -2 ? CQL_CONN_FATAL : CQL_CONN_TRANSIENT;
        goto out;
    }
    if (h.opcode == CQL_OP_SUPPORTED) {
        struct cql_multimap mm;
        char e[8];
        c->cql_versions[0] = '\0';
        if (cql_decode_supported(reply.p, reply.len, &a, &mm, e, sizeof(e)) == 0) {
            uint16_t n;
            const struct cql_str *v;
            if (c->o.lz4) {
                int has = 0;
                char offered[96] = "";
                size_t used = 0;
                v = cql_multimap_get(&mm, "COMPRESSION", &n);
                for (uint16_t i = 0; i < n; i++) {
                    has |= v[i].n == 3 && memcmp(v[i].p, "lz4", 3) == 0;
                    int w = snprintf(offered + used, sizeof(offered) - used, "%s%.*s",
                                     i ? ", " : "", (int)v[i].n, v[i].p);
                    if (w > 0 && (size_t)w < sizeof(offered) - used)
                        used += (size_t)w;
                }
                if (!has) {
                    snprintf(why, whysz, "compression lz4: %.120s does not support it "
                             "(COMPRESSION: %s)", c->peer, n ? offered : "none");
                    rc = CQL_CONN_FATAL;
                    goto out;
                }
            }
            v = cql_multimap_get(&mm, "CQL_VERSION", &n);
            size_t used = 0;
            for (uint16_t i = 0; i < n && used + 2 < sizeof(c->cql_versions); i++) {
                int w = snprintf(c->cql_versions + used, sizeof(c->cql_versions) - used,
                                 "%s%.*s", i ? "," : "", (int)v[i].n, v[i].p);
                if (w < 0)
                    break;
                used += (size_t)w;
            }
        } else {
            snprintf(why, whysz, "malformed SUPPORTED");
            goto out;
        }
    } else if (h.opcode == CQL_OP_ERROR) {
        error_reply(&reply, why, whysz);
        goto out;
    } else {
        snprintf(why, whysz, "unexpected %s in answer to OPTIONS", cql_opcode_name(h.opcode));
        goto out;
    }

    static const char *const startup[] = { "CQL_VERSION", "3.0.0", "COMPRESSION", "lz4" };
    cql_enc_startup(&c->out, 0, startup, c->o.lz4 ? 2 : 1);
    hc = handshake_call(c, deadline, &h, &reply, why, whysz);
    c->compressing = c->o.lz4;  /* every frame after STARTUP */
    if (hc < 0) {
        rc = hc == -2 ? CQL_CONN_FATAL : CQL_CONN_TRANSIENT;
        goto out;
    }
    c->authenticator[0] = '\0';
    if (h.opcode == CQL_OP_READY) {
        rc = CQL_CONN_OK;
        goto out;
    }
    if (h.opcode == CQL_OP_ERROR) {
        struct cql_error e;
        char e8[8];
        error_reply(&reply, why, whysz);
        if (cql_decode_error(reply.p, reply.len, &e, e8, sizeof(e8)) == 0 &&
            (e.code == CQL_ERR_PROTOCOL || e.code == CQL_ERR_AUTH))
            rc = CQL_CONN_FATAL;
        goto out;
    }
    if (h.opcode != CQL_OP_AUTHENTICATE) {
        snprintf(why, whysz, "unexpected %s in answer to STARTUP", cql_opcode_name(h.opcode));
        goto out;
    }
    {
        struct cql_str cls;
        char e[8];
        if (cql_decode_authenticate(reply.p, reply.len, &cls, e, sizeof(e)) < 0) {
            snprintf(why, whysz, "malformed AUTHENTICATE");
            goto out;
        }
        snprintf(c->authenticator, sizeof(c->authenticator), "%.*s", (int)cls.n, cls.p);
    }
    if (c->username == NULL || c->password == NULL) {
        snprintf(why, whysz, "the server requires authentication (%s): set username and password",
                 c->authenticator);
        rc = CQL_CONN_FATAL;
        goto out;
    }
    /* SASL PLAIN: authzid (empty) NUL authcid NUL password. */
    toklen = strlen(c->username) + strlen(c->password) + 2;
    token = malloc(toklen);
    if (token == NULL) {
        snprintf(why, whysz, "out of memory");
        goto out;
    }
    token[0] = '\0';
    memcpy(token + 1, c->username, strlen(c->username) + 1);
    memcpy(token + 2 + strlen(c->username), c->password, strlen(c->password));
    for (int round = 0; round < 4; round++) {
        cql_enc_auth_response(&c->out, 0, token, (int32_t)toklen);
        hc = handshake_call(c, deadline, &h, &reply, why, whysz);
        if (hc < 0) {
            rc = hc == -2 ? CQL_CONN_FATAL : CQL_CONN_TRANSIENT;
            goto out;
        }
        if (h.opcode == CQL_OP_AUTH_SUCCESS) {
            rc = CQL_CONN_OK;
            goto out;
        }
        if (h.opcode == CQL_OP_ERROR) {
            char msg[200];
            struct cql_error e;
            char e8[8];
            error_reply(&reply, msg, sizeof(msg));
            cql_textf(why, whysz, "authentication as '%s' failed (%s): %s", c->username,
                     c->authenticator, msg);
            if (cql_decode_error(reply.p, reply.len, &e, e8, sizeof(e8)) == 0 &&
                (e.code == CQL_ERR_AUTH || e.code == CQL_ERR_PROTOCOL ||
                 e.code == CQL_ERR_UNAUTHORIZED))
                rc = CQL_CONN_FATAL;
            goto out;
        }
        if (h.opcode != CQL_OP_AUTH_CHALLENGE) {
            snprintf(why, whysz, "unexpected %s during authentication", cql_opcode_name(h.opcode));
            goto out;
        }
        /* PLAIN has no challenge: answer the same token a few times. */
    }
    snprintf(why, whysz, "authentication as '%s' did not complete after 4 challenges",
             c->username);
    rc = CQL_CONN_FATAL;
out:
    if (token) {
        explicit_bzero(token, toklen);
        free(token);
    }
    cql_buf_free(&reply);
    cql_arena_free(&a);
    return rc;
}

int cql_conn_open(struct cql_conn *c, char *errstr, size_t errstr_size)
{
    size_t used = 0;
    int any_fatal = 0;

    cql_conn_close(c, NULL, NULL);
    errstr[0] = '\0';
    for (size_t k = 0; k < c->o.neps; k++) {
        size_t ep_i = (c->next_ep + k) % c->o.neps;
        const struct cql_endpoint *ep = &c->o.eps[ep_i];
        struct addrinfo hints, *res = NULL, *ai;
        char port[16], why[300] = "no address";
        int64_t deadline = cql_mono_ms() + c->o.connect_timeout_ms;
        int rc;

        snprintf(c->peer, sizeof(c->peer), "%s:%d", ep->host, ep->port);
        snprintf(port, sizeof(port), "%d", ep->port);
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        rc = getaddrinfo(ep->host, port, &hints, &res);
        if (rc != 0) {
            snprintf(why, sizeof(why), "%s", gai_strerror(rc));
        } else {
            for (ai = res; ai; ai = ai->ai_next) {
                c->fd = tcp_connect(ai, deadline, why, sizeof(why));
                if (c->fd < 0)
                    continue;
                rc = c->o.tls ? cql_tls_connect(c->o.tls, c->fd, ep->host, deadline, &c->ts, why,
                                                sizeof(why))
                              : CQL_CONN_OK;
                if (rc == CQL_CONN_OK)
                    rc = handshake(c, deadline, why, sizeof(why));
                if (rc == CQL_CONN_OK) {
                    freeaddrinfo(res);
                    c->next_ep = ep_i;
                    return CQL_CONN_OK;
                }
                cql_conn_close(c, NULL, NULL);
                if (rc == CQL_CONN_FATAL) {
                    any_fatal = 1;
                    break;
                }
            }
            freeaddrinfo(res);
        }
        if (used < errstr_size) {
            int w = snprintf(errstr + used, errstr_size - used, "%s%.120s: %s",
                             used ? "; " : "cannot connect to any contact point: ", c->peer, why);
            if (w > 0)
                used = used + (size_t)w < errstr_size ? used + (size_t)w : errstr_size;
        }
        if (any_fatal) {
            /* Credentials or protocol: every node would say the same. */
            snprintf(errstr, errstr_size, "%.120s: %s", c->peer, why);
            c->next_ep = ep_i;
            return CQL_CONN_FATAL;
        }
    }
    /* Start with the next contact point next time. */
    if (c->o.neps)
        c->next_ep = (c->next_ep + 1) % c->o.neps;
    return CQL_CONN_TRANSIENT;
}
