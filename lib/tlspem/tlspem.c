/* tlspem - see tlspem.h. */
#include "tlspem.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <gnutls/gnutls.h>

#include "problems.h"

static gnutls_datum_t datum(const char *pem)
{
    gnutls_datum_t d = { (unsigned char *)pem, (unsigned int)strlen(pem) };
    return d;
}

struct crts {
    gnutls_x509_crt_t *v;
    unsigned n;
};

static void crts_free(struct crts *c)
{
    for (unsigned i = 0; i < c->n; i++)
        gnutls_x509_crt_deinit(c->v[i]);
    gnutls_free(c->v);
    c->v = NULL;
    c->n = 0;
}

#define PEM_CERT "-----BEGIN CERTIFICATE-----"
#define PEM_CRL "-----BEGIN X509 CRL-----"

/* The certificates of pem (key names it in why). 0, or -1 with why. */
static int crts_parse(const char *key, const char *pem, struct crts *c, char *why, size_t whysz)
{
    gnutls_datum_t d = datum(pem);
    c->v = NULL;
    c->n = 0;
    if (!strstr(pem, PEM_CERT)) {
        snprintf(why, whysz, "%s: no PEM certificate (" PEM_CERT ") in it", key);
        return -1;
    }
    int rc = gnutls_x509_crt_list_import2(&c->v, &c->n, &d, GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0 || c->n == 0) {
        crts_free(c);
        snprintf(why, whysz, "%s: %s", key, rc < 0 ? gnutls_strerror(rc)
                                                   : "no PEM certificate (" PEM_CERT ") in it");
        return -1;
    }
    return 0;
}

struct crls {
    gnutls_x509_crl_t *v;
    unsigned n;
};

static void crls_free(struct crls *c)
{
    for (unsigned i = 0; i < c->n; i++)
        gnutls_x509_crl_deinit(c->v[i]);
    gnutls_free(c->v);
    c->v = NULL;
    c->n = 0;
}

/* The revocation lists of pem. 0, or -1 with why. */
static int crls_parse(const char *pem, struct crls *c, char *why, size_t whysz)
{
    gnutls_datum_t d = datum(pem);
    c->v = NULL;
    c->n = 0;
    if (!strstr(pem, PEM_CRL)) {
        snprintf(why, whysz, "ssl.crl.pem: no PEM revocation list (" PEM_CRL ") in it");
        return -1;
    }
    int rc = gnutls_x509_crl_list_import2(&c->v, &c->n, &d, GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0 || c->n == 0) {
        crls_free(c);
        snprintf(why, whysz, "ssl.crl.pem: %s", rc < 0 ? gnutls_strerror(rc)
                                                       : "no PEM revocation list (" PEM_CRL ") in it");
        return -1;
    }
    return 0;
}

/* A PEM private key protected by a password: PKCS#8 ("ENCRYPTED PRIVATE
 * KEY") or OpenSSL's traditional form ("Proc-Type: 4,ENCRYPTED"). */
static int key_encrypted(const char *pem)
{
    return strstr(pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----") != NULL ||
           strstr(pem, "Proc-Type: 4,ENCRYPTED") != NULL;
}

void tlspem_pair_free(struct tlspem_pair *p)
{
    struct crts c = { p->crts, p->ncrts };
    crts_free(&c);
    if (p->key)
        gnutls_x509_privkey_deinit(p->key);
    p->crts = NULL;
    p->ncrts = 0;
    p->key = NULL;
}

/* Each is parsed and the key matched here rather than by GnuTLS's loaders:
 * gnutls_certificate_set_x509_key_mem leaks on a mismatch (3.7.9). */
int tlspem_pair_parse(const struct tlspem_opts *o, struct tlspem_pair *p, const char **bad,
                      char *why, size_t whysz)
{
    gnutls_datum_t keyd = datum(o->key_pem);
    struct crts c;
    int rc;

    memset(p, 0, sizeof(*p));
    if (crts_parse("ssl.certificate.pem", o->cert_pem, &c, why, whysz) < 0) {
        *bad = "ssl.certificate.pem";
        return -1;
    }
    p->crts = c.v;
    p->ncrts = c.n;
    if (gnutls_x509_privkey_init(&p->key) < 0) {
        p->key = NULL;
        *bad = NULL;
        snprintf(why, whysz, "out of memory");
        goto fail;
    }
    int encrypted = key_encrypted(o->key_pem);
    if (!encrypted && o->key_password) {
        *bad = "ssl.key.password";
        snprintf(why, whysz, "ssl.key.password is set but ssl.key.pem is not encrypted");
        goto fail;
    }
    /* No pin callback is set: a missing password fails, never prompts. */
    rc = gnutls_x509_privkey_import2(p->key, &keyd, GNUTLS_X509_FMT_PEM, o->key_password, 0);
    if (rc == GNUTLS_E_DECRYPTION_FAILED) {
        *bad = "ssl.key.password";
        snprintf(why, whysz, o->key_password ? "ssl.key.password does not decrypt ssl.key.pem"
                                             : "ssl.key.password is required: ssl.key.pem is "
                                               "encrypted");
        goto fail;
    }
    if (rc < 0) {
        *bad = "ssl.key.pem";
        snprintf(why, whysz, "ssl.key.pem: %s (a PEM private key is expected%s)",
                 gnutls_strerror(rc), encrypted ? ", encrypted with ssl.key.password" : "");
        goto fail;
    }
    unsigned char cid[64], kid[64];
    size_t cn = sizeof(cid), kn = sizeof(kid);
    if (gnutls_x509_crt_get_key_id(p->crts[0], 0, cid, &cn) < 0 ||
        gnutls_x509_privkey_get_key_id(p->key, 0, kid, &kn) < 0 || cn != kn ||
        memcmp(cid, kid, cn) != 0) {
        *bad = "ssl.key.pem";
        snprintf(why, whysz, "ssl.key.pem: the key does not belong to ssl.certificate.pem");
        goto fail;
    }
    return 0;
fail:
    tlspem_pair_free(p);
    return -1;
}

/* The rules of ssl.crl.pem against the CAs of ssl.ca.pem (ca: parsed, or
 * NULL when ssl.ca.pem was refused: then only the lists are parsed). */
static void crl_check(const char *crl_pem, const struct crts *ca, struct problems *pr)
{
    char why[SPOKE_ERRSTR_SIZE];
    struct crls crls;
    if (crls_parse(crl_pem, &crls, why, sizeof(why)) < 0) {
        problem(pr, "ssl.crl.pem", "%s", why);
        return;
    }
    for (unsigned i = 0; ca && i < crls.n; i++) {
        unsigned status = 0;
        int rc = gnutls_x509_crl_verify(crls.v[i], ca->v, ca->n, 0, &status);
        if (rc >= 0 && status == 0)
            continue;
        char issuer[256], when[64] = "?";
        size_t in = sizeof(issuer);
        if (gnutls_x509_crl_get_issuer_dn(crls.v[i], issuer, &in) < 0)
            snprintf(issuer, sizeof(issuer), "?");
        time_t next = gnutls_x509_crl_get_next_update(crls.v[i]);
        struct tm tm;
        if (next != (time_t)-1 && gmtime_r(&next, &tm))
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        if (rc < 0 || (status & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNATURE_FAILURE |
                                 GNUTLS_CERT_INVALID)) == status)
            problem(pr, "ssl.crl.pem", "ssl.crl.pem: list %u (issuer %s) is not signed by a CA "
                    "of ssl.ca.pem", i + 1, issuer);
        else if (status & GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED)
            problem(pr, "ssl.crl.pem", "ssl.crl.pem: list %u (issuer %s) expired at %s (its "
                    "next update): give the CA's current list", i + 1, issuer, when);
        else {
            char text[256];
            if (tlspem_status_text(status, text, sizeof(text)) < 0)
                snprintf(text, sizeof(text), "status 0x%x", status);
            problem(pr, "ssl.crl.pem", "ssl.crl.pem: list %u (issuer %s) is refused: %s", i + 1,
                    issuer, text);
        }
        break;
    }
    crls_free(&crls);
}

void tlspem_check(const struct tlspem_opts *o, struct problems *pr)
{
    char why[SPOKE_ERRSTR_SIZE];
    const char *bad;
    struct crts ca = { NULL, 0 };
    int ca_ok = 0;

    if (o->ca_pem) {
        if (crts_parse("ssl.ca.pem", o->ca_pem, &ca, why, sizeof(why)) < 0)
            problem(pr, "ssl.ca.pem", "%s", why);
        else
            ca_ok = 1;
    }
    if (o->crl_pem) {
        if (!o->ca_pem)
            problem(pr, "ssl.crl.pem", "ssl.crl.pem needs ssl.ca.pem (the CA that issued the "
                    "lists)");
        else
            crl_check(o->crl_pem, ca_ok ? &ca : NULL, pr);
    }
    crts_free(&ca);

    if ((o->cert_pem == NULL) != (o->key_pem == NULL)) {
        bad = o->cert_pem ? "ssl.certificate.pem" : "ssl.key.pem";
        problem(pr, bad, "%s is set but %s is not", bad,
                o->cert_pem ? "ssl.key.pem" : "ssl.certificate.pem");
    } else if (o->cert_pem) {
        struct tlspem_pair pair;
        if (tlspem_pair_parse(o, &pair, &bad, why, sizeof(why)) < 0)
            problem(pr, bad, "%s", why);
        else
            tlspem_pair_free(&pair);
    }
    if (o->key_password && !o->key_pem)
        problem(pr, "ssl.key.password", "ssl.key.password is set but ssl.key.pem is not");
}

int tlspem_crl_set(gnutls_certificate_credentials_t cred, const struct tlspem_opts *o,
                   char *why, size_t whysz)
{
    struct crls crls;
    if (crls_parse(o->crl_pem, &crls, why, whysz) < 0)
        return -1;
    unsigned n = crls.n;
    crls_free(&crls);
    gnutls_datum_t d = datum(o->crl_pem);
    /* GnuTLS keeps only the lists a trusted CA signed. */
    int rc = gnutls_certificate_set_x509_crl_mem(cred, &d, GNUTLS_X509_FMT_PEM);
    if (rc < 0 || (unsigned)rc != n) {
        snprintf(why, whysz, "ssl.crl.pem: %s", rc < 0 ? gnutls_strerror(rc)
                 : "a list is not signed by a trusted CA");
        return -1;
    }
    return rc;
}

int tlspem_status_text(unsigned status, char *buf, size_t size)
{
    gnutls_datum_t out = { NULL, 0 };
    if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) != 0 ||
        !out.data)
        return -1;
    size_t n = strlen((const char *)out.data);
    while (n > 0 && out.data[n - 1] == ' ')
        n--;  /* GnuTLS ends each reason with a space */
    if (n > 0 && out.data[n - 1] == '.')
        n--;  /* the caller may go on after it */
    snprintf(buf, size, "%.*s", (int)n, (const char *)out.data);
    gnutls_free(out.data);
    return 0;
}
