/*
 * cql_tls - TLS for the CQL connection (GnuTLS, the TLS library libcurl and
 * libmicrohttpd already bring into the process): credentials built from PEM
 * text in the config, a non-blocking client handshake that verifies the
 * server's chain and that its certificate names the contact point, and
 * record I/O for cql_conn.c.
 */
#ifndef CQL_TLS_H
#define CQL_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tlspem.h"

struct problems;  /* lib/problems */

struct cql_tls_opts {
    struct tlspem_opts pem; /* CAs (NULL: the system's), CRLs, client certificate and key */
    int verify;             /* the chain, and that the certificate names the host */
};

/* Credentials, shared by the sessions of one connection. */
struct cql_tls;

/* NULL with why on a PEM that does not parse, a key that does not match
 * its certificate or that its password does not decrypt, a revocation list
 * no trusted CA signed, or a system trust store that cannot be read. why
 * never holds key material. */
struct cql_tls *cql_tls_new(const struct cql_tls_opts *o, char *why, size_t whysz);
void cql_tls_free(struct cql_tls *t);

/* The config check (tlspem_check): every problem of the PEM texts and the
 * key's password, each at its key. Reads no file (the system trust store
 * is not loaded). */
void cql_tls_check(const struct cql_tls_opts *o, struct problems *pr);

/* A TLS session over a connected non-blocking socket. */
struct cql_tls_session;

/* Handshakes with host (SNI when host is a name; the certificate must name
 * it, a name or an IP address, when verify is on) before deadline_ms
 * (cql_mono_ms). CQL_CONN_OK with *out set, CQL_CONN_TRANSIENT (timeout,
 * connection lost) or CQL_CONN_FATAL (certificate not trusted, no TLS on
 * the server's side: every node would answer the same) with why. */
int cql_tls_connect(const struct cql_tls *t, int fd, const char *host, int64_t deadline_ms,
                    struct cql_tls_session **out, char *why, size_t whysz);

#define CQL_TLS_AGAIN   (-1)  /* the socket is not ready: poll and call again */
#define CQL_TLS_ERROR   (-2)  /* why is set */
#define CQL_TLS_REFUSED (-3)  /* the server sent a fatal alert (why is set): a new
                                 connection would be refused the same way */

/* Sends up to n bytes of p: how many, CQL_TLS_AGAIN (call again later; the
 * data is kept, so the next call finishes it whatever it is given),
 * CQL_TLS_ERROR or CQL_TLS_REFUSED. */
ssize_t cql_tls_send(struct cql_tls_session *s, const void *p, size_t n, char *why,
                     size_t whysz);
/* Receives up to n bytes: how many, 0 when the server closed,
 * CQL_TLS_AGAIN, CQL_TLS_ERROR or CQL_TLS_REFUSED. */
ssize_t cql_tls_recv(struct cql_tls_session *s, void *p, size_t n, char *why, size_t whysz);
/* Whether the server asked for a client certificate and there was none to
 * give: with TLS 1.3 it refuses the session only after the handshake, and
 * may close the connection without saying why. */
int cql_tls_no_client_cert(const struct cql_tls_session *s);
/* Whether decrypted bytes are waiting (poll() does not see them). */
int cql_tls_pending(const struct cql_tls_session *s);
/* Sends close_notify if the socket takes it, frees the session (not the fd). */
void cql_tls_close(struct cql_tls_session *s);

#endif
