/* tlspem - see tlspem.h. */
#include "tlspem.h"

#include <stdio.h>
#include <string.h>

#include <gnutls/gnutls.h>

static gnutls_datum_t datum(const char *pem)
{
    gnutls_datum_t d = { (unsigned char *)pem, (unsigned int)strlen(pem) };
    return d;
}

int tlspem_ca(const char *ca_pem, char *why, size_t whysz)
{
    gnutls_x509_crt_t *crts = NULL;
    unsigned n = 0;
    gnutls_datum_t d = datum(ca_pem);
    int rc = gnutls_x509_crt_list_import2(&crts, &n, &d, GNUTLS_X509_FMT_PEM, 0);
    for (unsigned i = 0; i < n; i++)
        gnutls_x509_crt_deinit(crts[i]);
    gnutls_free(crts);
    if (rc < 0 || n == 0) {
        snprintf(why, whysz, "ssl.ca.pem: %s", rc < 0 ? gnutls_strerror(rc)
                                                      : "no PEM certificate in it");
        return -1;
    }
    return (int)n;
}

void tlspem_pair_free(struct tlspem_pair *p)
{
    for (unsigned i = 0; i < p->ncrts; i++)
        gnutls_x509_crt_deinit(p->crts[i]);
    gnutls_free(p->crts);
    if (p->key)
        gnutls_x509_privkey_deinit(p->key);
    p->crts = NULL;
    p->ncrts = 0;
    p->key = NULL;
}

/* Each is parsed and the key matched here rather than by GnuTLS's loaders:
 * gnutls_certificate_set_x509_key_mem leaks on a mismatch (3.7.9). */
int tlspem_pair_parse(const char *cert_pem, const char *key_pem, struct tlspem_pair *p,
                      const char **bad, char *why, size_t whysz)
{
    gnutls_datum_t cert = datum(cert_pem), keyd = datum(key_pem);
    int rc;

    memset(p, 0, sizeof(*p));
    rc = gnutls_x509_crt_list_import2(&p->crts, &p->ncrts, &cert, GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0 || p->ncrts == 0) {
        *bad = "ssl.certificate.pem";
        snprintf(why, whysz, "ssl.certificate.pem: %s",
                 rc < 0 ? gnutls_strerror(rc) : "no PEM certificate in it");
        goto fail;
    }
    if (gnutls_x509_privkey_init(&p->key) < 0) {
        p->key = NULL;
        *bad = NULL;
        snprintf(why, whysz, "out of memory");
        goto fail;
    }
    if ((rc = gnutls_x509_privkey_import(p->key, &keyd, GNUTLS_X509_FMT_PEM)) < 0) {
        *bad = "ssl.key.pem";
        snprintf(why, whysz, "ssl.key.pem: %s (an unencrypted PEM private key is expected)",
                 gnutls_strerror(rc));
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

int tlspem_pair_check(const char *cert_pem, const char *key_pem, const char **bad, char *why,
                      size_t whysz)
{
    struct tlspem_pair pair;
    if ((cert_pem == NULL) != (key_pem == NULL)) {
        *bad = cert_pem ? "ssl.certificate.pem" : "ssl.key.pem";
        snprintf(why, whysz, "%s is set but %s is not", *bad,
                 cert_pem ? "ssl.key.pem" : "ssl.certificate.pem");
        return -1;
    }
    if (!cert_pem)
        return 0;
    if (tlspem_pair_parse(cert_pem, key_pem, &pair, bad, why, whysz) < 0)
        return -1;
    tlspem_pair_free(&pair);
    return 0;
}
