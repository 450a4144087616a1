/*
 * cql_conn.h - one CQL native protocol v4 connection with pipelining
 * (internal to cassandra_sink).
 *
 * The connection is non-blocking and driven by its owner's thread: requests
 * are appended as complete frames to cql_conn_out() under a stream id taken
 * with cql_conn_acquire(token); cql_conn_pump() writes what it can, waits
 * for input up to a timeout, and hands every complete response to a
 * callback with the token its stream carried. Many requests are in flight
 * at once, each on its own stream id (at most max_streams).
 *
 * cql_conn_open() tries the contact points in turn, starting with the one
 * that worked last, and performs the handshake synchronously: OPTIONS /
 * SUPPORTED, STARTUP (CQL_VERSION 3.0.0, and COMPRESSION lz4 when asked
 * for: a server that does not list it is refused), and when the server asks
 * for it AUTHENTICATE / AUTH_RESPONSE with SASL PLAIN
 * (PasswordAuthenticator).
 *
 * With lz4, each request after STARTUP goes out with its body compressed
 * (the protocol's form: the uncompressed length as an [int], then an LZ4
 * block) unless that would not make it smaller, and a response with the
 * compression flag is decompressed before it is decoded.
 *
 * Anything malformed from the server (bad header, a body that does not
 * decode, a response on a stream nobody used) breaks the connection with a
 * reason; it never crashes and never reads out of bounds.
 */
#ifndef CQL_CONN_H
#define CQL_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "cql_frame.h"

struct cql_endpoint {
    char host[256];
    int port;
};

struct cql_conn_opts {
    const struct cql_endpoint *eps;   /* borrowed; outlives the connection */
    size_t neps;
    int64_t connect_timeout_ms;       /* TCP connect + handshake, per contact point */
    const char *username;             /* NULL: no credentials */
    const char *password;             /* secret: never written to any message */
    size_t max_frame;                 /* largest response body accepted */
    int max_streams;                  /* 1..32768 stream ids in flight */
    const struct cql_tls *tls;        /* borrowed; NULL: plain TCP (cql_tls.h) */
    int lz4;                          /* COMPRESSION lz4: every frame after STARTUP */
};

/* cql_conn_open results. */
#define CQL_CONN_OK         0
#define CQL_CONN_TRANSIENT (-1)   /* no contact point reachable now: retry later */
#define CQL_CONN_FATAL     (-2)   /* retrying cannot help (credentials, protocol) */

/* Token of a stream whose requester gave up: its response is discarded. */
#define CQL_TOKEN_ORPHAN 0xFFFFFFFFu

struct cql_frame {
    struct cql_header h;
    const uint8_t *body;       /* after the tracing id / warnings / payload */
    size_t len;
    uint16_t nwarnings;
    struct cql_rd warnings;    /* positioned on the first [string] */
};

struct cql_conn;

/* NULL on out-of-memory. o and its arrays are copied except eps. */
struct cql_conn *cql_conn_new(const struct cql_conn_opts *o);
/* Closes and frees; accepts NULL. */
void cql_conn_free(struct cql_conn *c);

/* Connects and handshakes; CQL_CONN_OK, _TRANSIENT or _FATAL with errstr
 * set ("cannot connect to any contact point: 127.0.0.1:9042: Connection
 * refused; ..."). */
int cql_conn_open(struct cql_conn *c, char *errstr, size_t errstr_size);
int cql_conn_is_open(const struct cql_conn *c);
/* "host:port" of the open connection (or the last one tried). */
const char *cql_conn_peer(const struct cql_conn *c);
/* The authenticator class the server asked for ("" when none). */
const char *cql_conn_authenticator(const struct cql_conn *c);
/* The server's CQL versions from SUPPORTED, comma-separated ("" if none). */
const char *cql_conn_cql_versions(const struct cql_conn *c);

/* Closes the socket. fn (may be NULL) is called with the token of every
 * request still in flight (orphans excluded); all streams become free. */
void cql_conn_close(struct cql_conn *c, void (*fn)(void *ctx, uint32_t token), void *ctx);

/* Where requests go: append complete frames (cql_enc_*) with a stream id
 * from cql_conn_acquire. */
struct cql_buf *cql_conn_out(struct cql_conn *c);
/* With lz4: the request body bytes compressed so far, before (*raw) and
 * after (*wire) compression; both counters are reset. */
void cql_conn_take_bytes(struct cql_conn *c, uint64_t *raw, uint64_t *wire);
/* Takes a free stream id for a request identified by token (not 0, not
 * CQL_TOKEN_ORPHAN); -1 when all are in use. */
int cql_conn_acquire(struct cql_conn *c, uint32_t token);
size_t cql_conn_inflight(const struct cql_conn *c);
/* Monotonic ms at which the oldest request in flight was acquired, or -1. */
int64_t cql_conn_oldest_ms(const struct cql_conn *c);
/* Every request in flight becomes an orphan (responses discarded). */
void cql_conn_orphan_all(struct cql_conn *c);
/* Bytes appended to out and not written yet. */
size_t cql_conn_unsent(const struct cql_conn *c);

/*
 * Writes pending output, waits at most timeout_ms (0: not at all) for input,
 * reads, and calls fn once per complete response frame with the token of
 * its stream; the stream is free again when fn runs, so fn may send more.
 * fn must not close the connection (set a flag; close after pump returns).
 * EVENT frames are ignored. Returns 0, or -1 when the connection broke
 * (errstr says why; the caller then calls cql_conn_close).
 */
int cql_conn_pump(struct cql_conn *c, int timeout_ms,
                  void (*fn)(void *ctx, uint32_t token, const struct cql_frame *f), void *ctx,
                  char *errstr, size_t errstr_size);

/* Monotonic clock, ms. */
int64_t cql_mono_ms(void);

#endif
