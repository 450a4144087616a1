/* tlspem - PEM text from a config, parsed and checked with GnuTLS: the CA
 * certificates to trust, a client certificate chain and its private key.
 * Messages name the config key at fault ("ssl.ca.pem", "ssl.certificate.pem",
 * "ssl.key.pem") and never hold key material. No file is read. */
#ifndef SPOKE_TLSPEM_H
#define SPOKE_TLSPEM_H

#include <stddef.h>

#include <gnutls/x509.h>

/* The number of certificates in ca_pem (at least 1), or -1 with why. */
int tlspem_ca(const char *ca_pem, char *why, size_t whysz);

/* A client certificate chain and its key. */
struct tlspem_pair {
    gnutls_x509_crt_t *crts;
    unsigned ncrts;
    gnutls_x509_privkey_t key;
};

/* Parses cert_pem (a chain, the client's certificate first) and key_pem
 * (unencrypted) and checks the key is the certificate's. 0 with *p to be
 * freed by tlspem_pair_free, or -1 with *bad the key at fault and why
 * (nothing to free). */
int tlspem_pair_parse(const char *cert_pem, const char *key_pem, struct tlspem_pair *p,
                      const char **bad, char *why, size_t whysz);
void tlspem_pair_free(struct tlspem_pair *p);

/* The config rule for a client certificate: both texts or neither, each
 * parsed, the key the certificate's. 0 (also when both are NULL), or -1
 * with *bad the key at fault (NULL: out of memory) and why. */
int tlspem_pair_check(const char *cert_pem, const char *key_pem, const char **bad, char *why,
                      size_t whysz);

#endif
