/*
 * httpc - the HTTP client of Spoke's polling sources (velib_source,
 * http_source): libcurl GETs with the project's failure handling.
 *
 *  - Only http and https, for the URL and for every redirect; redirects
 *    are capped (max.redirects).
 *  - Connect and whole-request time limits; a body larger than
 *    max.body.bytes is refused from its Content-Length before a byte of it
 *    is read, or aborted as soon as the limit is passed (the limit applies
 *    to the decoded body: gzip, br, zstd are accepted). A Content-Length
 *    that the connection does not deliver is a truncated body, never a
 *    short document.
 *  - Conditional requests: the ETag / Last-Modified of a 200 are sent back
 *    as If-None-Match / If-Modified-Since, but only once the caller accepted
 *    that body (httpc_accept), so a body that failed validation is never
 *    answered with 304 later.
 *  - Retry-After (seconds or an HTTP date, measured against the server's own
 *    Date), and exponential backoff with jitter between failed attempts.
 *  - Every failure comes with one clear sentence naming the URL as the
 *    caller wants it shown (e.g. with a secret masked).
 *
 * One handle per URL, reused, so connections (and TLS sessions) are kept
 * alive between polls. A handle is used by one thread at a time.
 *
 * A handle can also read an endless response as a stream (httpc_stream),
 * its body handed over piece by piece as it arrives.
 *
 * This is plugin-side code (a static library linked into the plugins that
 * poll HTTP); it is not part of the host ABI, and no libcurl type appears
 * in this header.
 */
#ifndef SPOKE_HTTPC_H
#define SPOKE_HTTPC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <spoke/plugin.h>

#include "tlspem.h"

struct problems;  /* lib/problems */

/* Longest Retry-After honoured: a server asking for more is asked again
 * after a day. */
#define HTTPC_RETRY_AFTER_MAX_MS (24LL * 3600 * 1000)
/* Added to a wait that must not end early (Retry-After, a ttl): the host
 * schedules the next poll from a clock read taken just before poll(), so a
 * wait computed exactly could fire a hair early. */
#define HTTPC_SCHEDULE_MARGIN_MS 25

/* What every request of a plugin obeys; read from its config by
 * httpc_opts_read. Strings are borrowed (host-owned config values). */
struct httpc_opts {
    int64_t connect_timeout_ms;
    int64_t request_timeout_ms;
    int64_t max_body;           /* bytes of (decoded) body accepted */
    long max_redirects;
    const char *user_agent;
    int64_t backoff_initial_ms; /* wait after a first failure */
    int64_t backoff_max_ms;     /* longest wait between failures */
    struct tlspem_opts tls;     /* the ssl.* keys (lib/tlspem) */
    /* httpc_opts_open: each PEM text in an anonymous file (memfd) libcurl
     * reads by its path; -1 / "" when closed or not needed. */
    struct httpc_pem_file {
        int fd;
        char path[32];
    } ca_file, crl_file, cert_file, key_file;
};

/*
 * The config keys httpc_opts_read reads, as entries of a plugin's config
 * table (spliced in where the plugin lists them), so every polling plugin
 * documents and bounds them the same way. ua: the default User-Agent.
 */
#define HTTPC_CONFIG_FIELDS(ua)                                                              \
    { .name = "connect.timeout.ms", .type = SPOKE_CFG_LONG, .default_value = "10000",       \
      .doc = "Time limit (ms) to connect: DNS, TCP and TLS", .min = 1, .max = 600000 },      \
    { .name = "request.timeout.ms", .type = SPOKE_CFG_LONG, .default_value = "30000",       \
      .doc = "Time limit (ms) of a whole request, body included", .min = 1,                 \
      .max = 3600000 },                                                                     \
    { .name = "max.body.bytes", .type = SPOKE_CFG_LONG, .default_value = "16777216",        \
      .doc = "Largest body accepted (after decompression); a larger one is aborted while "  \
             "downloading", .min = 1024, .max = 1073741824 },                               \
    { .name = "max.redirects", .type = SPOKE_CFG_INT, .default_value = "3",                 \
      .doc = "Most HTTP redirects followed (to http or https URLs only)", .min = 0,         \
      .max = 20 },                                                                          \
    { .name = "backoff.initial.ms", .type = SPOKE_CFG_LONG, .default_value = "1000",        \
      .doc = "Wait (ms) after a first failed poll; doubles with each further failure, with " \
             "jitter", .min = 1, .max = 3600000 },                                          \
    { .name = "backoff.max.ms", .type = SPOKE_CFG_LONG, .default_value = "300000",          \
      .doc = "Longest wait (ms) between failed polls (a server's Retry-After can ask for "  \
             "longer)", .min = 1, .max = 86400000 },                                        \
    { .name = "user.agent", .type = SPOKE_CFG_STRING, .default_value = ua,                  \
      .doc = "User-Agent header of every request", .min = 1, .max = 256 },                  \
    { .name = "ssl.ca.pem", .type = SPOKE_CFG_STRING,                                       \
      .doc = "https: the CA certificates to trust, as PEM text (a YAML block scalar, or "   \
             "${env:NAME}), instead of the system's (a private CA); unset: the system's "  \
             "trusted CAs", .min = 1, .max = 1048576 },                                     \
    { .name = "ssl.crl.pem", .type = SPOKE_CFG_STRING,                                      \
      .doc = "https: revocation lists (PEM text) from a CA of ssl.ca.pem; a server whose "  \
             "certificate they revoke is refused; needs ssl.ca.pem", .min = 1,              \
      .max = 16777216 },                                                                    \
    { .name = "ssl.certificate.pem", .type = SPOKE_CFG_STRING,                              \
      .doc = "https: a client certificate (PEM text, the chain after it) for servers that " \
             "require one; needs ssl.key.pem", .min = 1, .max = 1048576 },                  \
    { .name = "ssl.key.pem", .type = SPOKE_CFG_PASSWORD,                                    \
      .doc = "Private key of ssl.certificate.pem, PEM text, unencrypted or encrypted "      \
             "(PKCS#8 or OpenSSL's) with ssl.key.password (secret: never logged, masked on " \
             "output)", .min = 1, .max = 1048576 },                                         \
    { .name = "ssl.key.password", .type = SPOKE_CFG_PASSWORD,                               \
      .doc = "Password of an encrypted ssl.key.pem (secret); required exactly when the key " \
             "is encrypted", .min = 1, .max = 1024 }

/* Reads the HTTPC_CONFIG_FIELDS keys of a validated config into *o. */
void httpc_opts_read(const struct spoke_host_api *api, const struct spoke_config *cfg,
                     struct httpc_opts *o);
/* Every problem of *o the config table cannot see, each at its key:
 * backoff.initial.ms <= backoff.max.ms, and the ssl.* keys (tlspem_check:
 * PEM texts that parse, a CRL signed by a CA of ssl.ca.pem, the client
 * certificate and its key together and matched, the key's password; no
 * file read). */
void httpc_opts_check(const struct httpc_opts *o, struct problems *pr);
/* For init, after httpc_opts_read (and a check): puts each PEM text where libcurl's TLS
 * backend (GnuTLS, which takes them from files only) reads it, an anonymous
 * in-memory file (memfd) named by /proc/self/fd/N: nothing is written to
 * disk, and no file a config names is read. 0, or -1 with errstr. */
int httpc_opts_open(struct httpc_opts *o, char *errstr, size_t errstr_size);
/* Closes what httpc_opts_open opened, once no handle uses it (a zeroed
 * httpc_opts is left alone). */
void httpc_opts_close(struct httpc_opts *o);

/* libcurl's global state: once per plugin instance, init before any other
 * call, cleanup after the last handle is freed (both are counted by
 * libcurl, so several instances may do so). 0, or -1 with errstr set. */
int httpc_global_init(char *errstr, size_t errstr_size);
void httpc_global_cleanup(void);

/* Checks that url is an absolute http:// or https:// URL with a host. key
 * names the config key in the message; shown is how the URL appears in it
 * (NULL: url itself). 0, or -1 with errstr set. */
int httpc_url_check(const char *key, const char *url, const char *shown, char *errstr,
                    size_t errstr_size);

/* s percent-encoded for a URL query or path (every byte but the RFC 3986
 * unreserved ones: A-Z a-z 0-9 - . _ ~). A new string (free()), or NULL on
 * out-of-memory. */
char *httpc_escape(const char *s);

/* Outcome of one GET. */
enum httpc_result {
    HTTPC_BODY = 0,             /* 200 or 203: the body is in httpc_body() */
    HTTPC_NOT_MODIFIED,         /* 304 to a conditional request */
    HTTPC_FAILED                /* anything else: the reason is in the error text */
};

struct httpc_info {
    long status;                /* final HTTP status, 0 when none was received */
    int64_t retry_after_ms;     /* the server's Retry-After from now, or -1 */
    int64_t server_now_ms;      /* the Date header (epoch ms), or -1 */
    int64_t wire_bytes;         /* body bytes received (before decoding) */
};

struct httpc;

/*
 * A handle for one URL. url and shown (the URL as messages show it; NULL:
 * url) are borrowed and must outlive the handle; o is copied (its strings
 * borrowed). headers: nheaders "Name: value" lines sent with every request
 * (copied; "Accept: application/json" is sent unless one of them is an
 * Accept). abort_flag may be NULL; when it becomes non-zero, a running
 * transfer stops. Returns NULL with errstr set on failure.
 */
struct httpc *httpc_new(const char *url, const char *shown, const struct httpc_opts *o,
                        const char *const *headers, size_t nheaders,
                        const atomic_int *abort_flag, char *errstr, size_t errstr_size);
/* Accepts NULL. */
void httpc_free(struct httpc *h);

/* One GET, with If-None-Match / If-Modified-Since when validators were
 * accepted before. Blocks for at most the request timeout. fi and errstr
 * are always set (errstr only for HTTPC_FAILED). */
enum httpc_result httpc_get(struct httpc *h, struct httpc_info *fi, char *errstr,
                            size_t errstr_size);

/* Bytes readable past the end of every body httpc_body returns (their
 * value is unspecified), so a parser that reads ahead, such as simdjson
 * (sjson's SJ_PADDING), can parse the body where it is instead of copying
 * it. Not counted in max.body.bytes. */
#define HTTPC_BODY_PADDING 64

/* The body of the last HTTPC_BODY (never NULL, *len bytes followed by
 * HTTPC_BODY_PADDING more); valid until the next GET of h or httpc_trim. */
const char *httpc_body(const struct httpc *h, size_t *len);

/* Releases the body buffer (the next GET allocates again): for a URL
 * fetched rarely, whose buffer is not worth keeping between fetches. */
void httpc_trim(struct httpc *h);

/* After httpc_trim: allocates the body buffer again, 1/8 larger than the
 * body it released, and faults its pages in (memwarm.h), so that the next
 * GET, if its body is about as large, writes it without page faults or
 * copies. Nothing to do when there is a buffer, or no body was released.
 * 0, or -1 on out-of-memory (the next GET allocates as it goes). */
int httpc_warm(struct httpc *h);

/* The last 200's ETag / Last-Modified become the validators of the next
 * requests. Call it only once that body was accepted. */
void httpc_accept(struct httpc *h);

/*
 * Streaming (an endless response, e.g. a feed of NDJSON lines): from now
 * on the body of a 200 or 203 is handed to fn as it arrives, in pieces of
 * any size, instead of being kept (httpc_body stays empty); the body of any
 * other status is dropped unread (the outcome says the status). fn returns
 * 0 to go on, or non-zero to end the transfer at once (its outcome is then
 * HTTPC_FAILED, "reading <url> stopped by its reader"; the caller knows
 * why). fn runs inside httpc_get or the multi calls, on their thread. The
 * request has no whole-request time limit (request.timeout.ms) and no
 * max.body.bytes: the reader bounds what it keeps, and a silent server is
 * the caller's to notice (httpc_progress). 0, or -1 with errstr set.
 */
typedef int (*httpc_stream_fn)(void *ud, const char *p, size_t n);
int httpc_stream(struct httpc *h, httpc_stream_fn fn, void *ud, char *errstr,
                 size_t errstr_size);

/* Where the transfer in flight on h stands (or the last one, once ended). */
struct httpc_progress {
    long status;                /* of the response being received; 0 before its status line */
    int64_t wire_bytes;         /* body bytes received so far (before decoding) */
    int64_t last_rx_ms;         /* monotonic ms of the last byte received (header or body),
                                   or of the start; a streaming reader's own time counts as
                                   received */
};
void httpc_progress(const struct httpc *h, struct httpc_progress *p);

/*
 * Several GETs at once without blocking on any (libcurl's multi interface):
 * a caller starts transfers, lets them run for a while, and handles each
 * as it ends, so a slow URL never holds up the others. Transfers share one
 * connection cache. A multi and its handles are used by one thread at a
 * time.
 */
struct httpc_multi;
/* NULL on out-of-memory. */
struct httpc_multi *httpc_multi_new(void);
/* Stops the transfers still running (their handles stay usable: free m
 * before them) and frees m. Accepts NULL. */
void httpc_multi_free(struct httpc_multi *m);

/* Starts one GET of h (not running already; not used with httpc_get
 * while it runs), as httpc_get would send it.
 * It runs during httpc_multi_wait. A start that fails (out of memory) ends
 * the GET at once with the reason as its outcome. */
void httpc_multi_start(struct httpc_multi *m, struct httpc *h);

/* Runs the transfers until at least one has ended or timeout_ms passed
 * (0: only what is ready now). Returns how many ended in this call. */
size_t httpc_multi_wait(struct httpc_multi *m, int64_t timeout_ms);

/* One round: waits at most timeout_ms for activity on the transfers'
 * sockets (or libcurl's timers; 0: no wait), then moves them on once.
 * Returns how many ended. For a caller that has work as soon as any data
 * arrived (streamed bodies), not only when a transfer ends. */
size_t httpc_multi_run_once(struct httpc_multi *m, int64_t timeout_ms);

/* Ends h's running transfer now (e.g. a stream that stayed silent too
 * long): its outcome is HTTPC_FAILED with reason (copied), and
 * httpc_ended(h) becomes 1. Nothing happens when h is not running in m. */
void httpc_multi_abort(struct httpc_multi *m, struct httpc *h, const char *reason);

/* Transfers started and not ended yet. */
size_t httpc_multi_running(const struct httpc_multi *m);

/* 1 when the GET that httpc_multi_start started on h has ended, so its
 * outcome can be read; 0 while it runs, or when none was started. */
int httpc_ended(const struct httpc *h);

/* The outcome of the last GET of h that ended (httpc_get, or a multi
 * transfer once httpc_ended): fi is set and *err points to the reason
 * (h's own buffer, valid until its next GET; "" unless HTTPC_FAILED). */
enum httpc_result httpc_outcome(const struct httpc *h, struct httpc_info *fi, const char **err);

/* ---- waiting between attempts ---- */

/* A monotonic clock, ms. */
int64_t httpc_mono_ms(void);

/* Seed for httpc_backoff_ms's generator; salt spreads instances created at
 * the same instant (e.g. a pointer). Never 0. */
uint64_t httpc_rng_seed(const void *salt);

/* Exponential backoff with "equal jitter": a uniform wait in [d/2, d] where
 * d = initial * 2^(failures-1), capped at max. Never 0. */
int64_t httpc_backoff_ms(int64_t initial, int64_t max, unsigned failures, uint64_t *rng);

/* A wait as a log line says it: "35 ms" under a second, else "2.5 s".
 * Returns buf. */
const char *httpc_wait_text(int64_t ms, char *buf, size_t size);

/* The wait after the failures-th failure in a row: the backoff of o, or the
 * server's Retry-After (retry_after_ms >= 0, at most a day, counted from the
 * response, which came elapsed_ms ago, plus HTTPC_SCHEDULE_MARGIN_MS) when
 * that is longer. */
int64_t httpc_retry_wait(const struct httpc_opts *o, unsigned failures, uint64_t *rng,
                         int64_t retry_after_ms, int64_t elapsed_ms);

#endif
