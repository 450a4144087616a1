/* tlspem - PEM text from a config, parsed and checked with GnuTLS: the CA
 * certificates to trust, the CA's revocation lists, a client certificate
 * chain and its private key (encrypted or not). Messages name the config
 * key at fault ("ssl.ca.pem", "ssl.crl.pem", "ssl.certificate.pem",
 * "ssl.key.pem", "ssl.key.password") and never hold key material or the
 * password. No file is read. */
#ifndef SPOKE_TLSPEM_H
#define SPOKE_TLSPEM_H

#include <stddef.h>

#include <gnutls/x509.h>

struct problems;  /* lib/problems */

/* The TLS keys of a plugin's config (borrowed strings; NULL when unset). */
struct tlspem_opts {
    const char *ca_pem;        /* ssl.ca.pem: the CAs to trust; NULL: the system's */
    const char *crl_pem;       /* ssl.crl.pem: certificates those CAs revoked */
    const char *cert_pem;      /* ssl.certificate.pem: a client certificate chain */
    const char *key_pem;       /* ssl.key.pem: its private key (secret) */
    const char *key_password;  /* ssl.key.password: decrypts key_pem (secret) */
};

/* Every problem of o, each at its key:
 * - ssl.ca.pem holds PEM certificates;
 * - ssl.crl.pem holds PEM revocation lists, each signed by a CA of
 *   ssl.ca.pem when that is given;
 * - ssl.certificate.pem and ssl.key.pem come together, parse, and the key
 *   is the certificate's;
 * - ssl.key.password is given exactly when ssl.key.pem is encrypted, and
 *   decrypts it.
 * Out of memory is a problem without a key. */
void tlspem_check(const struct tlspem_opts *o, struct problems *pr);

/* A client certificate chain and its key. */
struct tlspem_pair {
    gnutls_x509_crt_t *crts;
    unsigned ncrts;
    gnutls_x509_privkey_t key;
};

/* Parses o->cert_pem (a chain, the client's certificate first) and
 * o->key_pem (decrypted with o->key_password when it is encrypted) and
 * checks the key is the certificate's. 0 with *p to be freed by
 * tlspem_pair_free, or -1 with *bad the key at fault (NULL: out of memory)
 * and why (nothing to free). */
int tlspem_pair_parse(const struct tlspem_opts *o, struct tlspem_pair *p, const char **bad,
                      char *why, size_t whysz);
void tlspem_pair_free(struct tlspem_pair *p);

/* Adds o->crl_pem's lists to cred (after its trusted CAs). The number
 * added, or -1 with why. */
int tlspem_crl_set(gnutls_certificate_credentials_t cred, const struct tlspem_opts *o,
                   char *why, size_t whysz);

/* GnuTLS's words for a certificate verification status (a
 * gnutls_certificate_status_t set), e.g. "The certificate is NOT trusted.
 * The certificate chain is revoked.". 0, or -1 (nothing written) when
 * GnuTLS has none. */
int tlspem_status_text(unsigned status, char *buf, size_t size);

#endif
