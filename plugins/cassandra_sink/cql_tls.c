/*
 * cql_tls.c - TLS for the CQL connection, over GnuTLS. See cql_tls.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "cql_conn.h"
#include "cql_tls.h"
#include "tlspem.h"

struct cql_tls {
    gnutls_certificate_credentials_t cred;
    int verify;
    int has_cert;  /* a client certificate to present */
};

struct cql_tls_session {
    gnutls_session_t s;
    int again;     /* the last send returned GNUTLS_E_AGAIN: finish it first */
    int has_cert;
};

/* A PEM text as GnuTLS takes it (the text is not copied). */
static gnutls_datum_t datum(const char *pem)
{
    gnutls_datum_t d = { (unsigned char *)pem, (unsigned int)strlen(pem) };
    return d;
}

/* The credentials of o (checked by cql_tls_check already: a failure here
 * is out of memory, or a system trust store that cannot be read). */
static gnutls_certificate_credentials_t creds(const struct cql_tls_opts *o, char *why,
                                              size_t whysz)
{
    gnutls_certificate_credentials_t cred;
    struct tlspem_pair pair;
    const char *bad;
    int rc;

    if (gnutls_certificate_allocate_credentials(&cred) < 0) {
        snprintf(why, whysz, "out of memory");
        return NULL;
    }
    const struct tlspem_opts *pem = &o->pem;
    if (pem->ca_pem) {
        gnutls_datum_t ca = datum(pem->ca_pem);
        rc = gnutls_certificate_set_x509_trust_mem(cred, &ca, GNUTLS_X509_FMT_PEM);
        if (rc <= 0) {
            snprintf(why, whysz, "ssl.ca.pem: %s",
                     rc < 0 ? gnutls_strerror(rc) : "no PEM certificate (-----BEGIN "
                                                    "CERTIFICATE-----) in it");
            goto fail;
        }
    } else {
        rc = gnutls_certificate_set_x509_system_trust(cred);
        if (rc <= 0) {
            snprintf(why, whysz, "the system's trusted CAs could not be loaded (%s): give "
                     "ssl.ca.pem", rc < 0 ? gnutls_strerror(rc) : "none found");
            goto fail;
        }
    }
    if (pem->crl_pem && tlspem_crl_set(cred, pem, why, whysz) < 0)
        goto fail;
    if (pem->cert_pem && pem->key_pem) {
        if (tlspem_pair_parse(pem, &pair, &bad, why, whysz) < 0)
            goto fail;
        rc = gnutls_certificate_set_x509_key(cred, pair.crts, pair.ncrts, pair.key);
        tlspem_pair_free(&pair);
        if (rc < 0) {
            snprintf(why, whysz, "ssl.certificate.pem: %s", gnutls_strerror(rc));
            goto fail;
        }
    }
    return cred;
fail:
    gnutls_certificate_free_credentials(cred);
    return NULL;
}

struct cql_tls *cql_tls_new(const struct cql_tls_opts *o, char *why, size_t whysz)
{
    struct cql_tls *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(why, whysz, "out of memory");
        return NULL;
    }
    if (!(t->cred = creds(o, why, whysz))) {
        free(t);
        return NULL;
    }
    t->verify = o->verify;
    t->has_cert = o->pem.cert_pem && o->pem.key_pem;
    return t;
}

void cql_tls_free(struct cql_tls *t)
{
    if (!t)
        return;
    gnutls_certificate_free_credentials(t->cred);
    free(t);
}

void cql_tls_check(const struct cql_tls_opts *o, struct problems *pr)
{
    tlspem_check(&o->pem, pr);
}

static int is_ip(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static int left_ms(int64_t deadline)
{
    int64_t left = deadline - cql_mono_ms();
    return left <= 0 ? 0 : left > 60000 ? 60000 : (int)left;
}

/* Why the server's certificate was refused, in GnuTLS's words. */
static void verify_text(gnutls_session_t s, char *why, size_t whysz, const char *host)
{
    char text[512];
    if (tlspem_status_text(gnutls_session_get_verify_cert_status(s), text, sizeof(text)) == 0)
        snprintf(why, whysz, "TLS: the server's certificate is refused for %.64s: %s", host,
                 text);
    else
        snprintf(why, whysz, "TLS: the server's certificate is refused for %.64s", host);
}

int cql_tls_connect(const struct cql_tls *t, int fd, const char *host, int64_t deadline_ms,
                    struct cql_tls_session **out, char *why, size_t whysz)
{
    struct cql_tls_session *ts = calloc(1, sizeof(*ts));
    int rc;

    *out = NULL;
    if (!ts || gnutls_init(&ts->s, GNUTLS_CLIENT | GNUTLS_NONBLOCK) < 0) {
        free(ts);
        snprintf(why, whysz, "out of memory");
        return CQL_CONN_TRANSIENT;
    }
    if (gnutls_set_default_priority(ts->s) < 0 ||
        gnutls_credentials_set(ts->s, GNUTLS_CRD_CERTIFICATE, t->cred) < 0 ||
        (!is_ip(host) && gnutls_server_name_set(ts->s, GNUTLS_NAME_DNS, host, strlen(host)) < 0)) {
        snprintf(why, whysz, "TLS: cannot set up the session");
        goto transient;
    }
    if (t->verify)
        gnutls_session_set_verify_cert(ts->s, host, 0);  /* the chain, and the name or IP */
    ts->has_cert = t->has_cert;
    gnutls_transport_set_int(ts->s, fd);
    for (;;) {
        rc = gnutls_handshake(ts->s);
        if (rc == GNUTLS_E_SUCCESS)
            break;
        if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) {
            struct pollfd pfd = { fd, gnutls_record_get_direction(ts->s) ? POLLOUT : POLLIN, 0 };
            int left = left_ms(deadline_ms);
            int pr = left > 0 ? poll(&pfd, 1, left) : 0;
            if (pr < 0 && errno == EINTR)
                continue;
            if (pr <= 0) {
                snprintf(why, whysz, "TLS handshake timed out");
                goto transient;
            }
            continue;
        }
        if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
            verify_text(ts->s, why, whysz, host);
            goto fatal;
        }
        if (rc == GNUTLS_E_PUSH_ERROR || rc == GNUTLS_E_PULL_ERROR ||
            rc == GNUTLS_E_PREMATURE_TERMINATION) {
            snprintf(why, whysz, "TLS handshake: %s", gnutls_strerror(rc));
            goto transient;
        }
        if (rc == GNUTLS_E_FATAL_ALERT_RECEIVED) {
            snprintf(why, whysz, "TLS handshake: the server refused it (%s)",
                     gnutls_alert_get_name(gnutls_alert_get(ts->s)));
            goto fatal;
        }
        /* Anything else (a plain-text answer, no common version or cipher)
         * is the same on every attempt. */
        snprintf(why, whysz, "TLS handshake failed: %s (does the server take TLS on this "
                 "port?)", gnutls_strerror(rc));
        goto fatal;
    }
    *out = ts;
    return CQL_CONN_OK;
transient:
    gnutls_deinit(ts->s);
    free(ts);
    return CQL_CONN_TRANSIENT;
fatal:
    gnutls_deinit(ts->s);
    free(ts);
    return CQL_CONN_FATAL;
}

/* The text of a record-layer error, and its code: an alert names itself
 * (with TLS 1.3 a server that wants a client certificate says so only
 * after the handshake, in an alert). */
static ssize_t io_error(struct cql_tls_session *ts, ssize_t rc, char *why, size_t whysz)
{
    if (rc == GNUTLS_E_FATAL_ALERT_RECEIVED) {
        gnutls_alert_description_t a = gnutls_alert_get(ts->s);
        if (a == GNUTLS_A_CERTIFICATE_REQUIRED)
            snprintf(why, whysz, "TLS: the server requires a client certificate "
                     "(ssl.certificate.pem and ssl.key.pem)");
        else
            snprintf(why, whysz, "TLS: the server sent the alert %s", gnutls_alert_get_name(a));
        return CQL_TLS_REFUSED;
    }
    snprintf(why, whysz, "TLS: %s", gnutls_strerror((int)rc));
    return CQL_TLS_ERROR;
}

ssize_t cql_tls_send(struct cql_tls_session *ts, const void *p, size_t n, char *why,
                     size_t whysz)
{
    for (;;) {
        /* After GNUTLS_E_AGAIN GnuTLS keeps the record it built and wants
         * to be called again without data. */
        ssize_t w = ts->again ? gnutls_record_send(ts->s, NULL, 0) : gnutls_record_send(ts->s, p, n);
        if (w == GNUTLS_E_INTERRUPTED)
            continue;
        if (w == GNUTLS_E_AGAIN) {
            ts->again = 1;
            return CQL_TLS_AGAIN;
        }
        ts->again = 0;
        if (w < 0)
            return io_error(ts, w, why, whysz);
        return w;
    }
}

ssize_t cql_tls_recv(struct cql_tls_session *ts, void *p, size_t n, char *why, size_t whysz)
{
    for (;;) {
        ssize_t r = gnutls_record_recv(ts->s, p, n);
        if (r == GNUTLS_E_INTERRUPTED || r == GNUTLS_E_REHANDSHAKE)
            continue;  /* a renegotiation request is declined by ignoring it */
        if (r == GNUTLS_E_AGAIN)
            return CQL_TLS_AGAIN;
        if (r == GNUTLS_E_PREMATURE_TERMINATION)
            return 0;  /* closed without close_notify: closed all the same */
        if (r < 0)
            return io_error(ts, r, why, whysz);
        return r;
    }
}

int cql_tls_no_client_cert(const struct cql_tls_session *ts)
{
    return !ts->has_cert && gnutls_certificate_client_get_request_status(ts->s) != 0;
}

int cql_tls_pending(const struct cql_tls_session *ts)
{
    return gnutls_record_check_pending(ts->s) > 0;
}

void cql_tls_close(struct cql_tls_session *ts)
{
    if (!ts)
        return;
    gnutls_bye(ts->s, GNUTLS_SHUT_WR);  /* non-blocking: best effort */
    gnutls_deinit(ts->s);
    free(ts);
}
