/* rest - Kafka Connect-compatible REST API over libmicrohttpd.
 *
 * rest_dispatch is the whole API as a pure function of one request (no
 * sockets), so tests and the fuzzer drive exactly what the server runs; the
 * libmicrohttpd glue only collects requests (with limits) and sends answers.
 * Routes, status codes and bodies follow Kafka Connect 3.9 (see ctl.h);
 * every error answers {"error_code": <status>, "message": "..."}.
 *
 * Security: listens on the configured address (default 127.0.0.1:8083);
 * refuses a non-loopback address unless a token file is configured; with a
 * token, every mutating request (POST, PUT, PATCH, DELETE) needs
 * "Authorization: Bearer <token>" (constant-time compare); Host header
 * allow-list; a body requires Content-Type: application/json; bodies over
 * max_body are answered 413; JSON depth and types are checked strictly.
 */
#ifndef SPOKE_REST_H
#define SPOKE_REST_H

#include <stddef.h>

#include "buf.h"

struct runtime;
struct rest;

struct rest_opts {
    const char *listen;              /* "http://127.0.0.1:8083", "127.0.0.1:8083", "[::1]:8083" */
    const char *token_file;          /* NULL = no token; else a file of mode 0600 or stricter */
    const char *const *hosts;        /* extra Host header values allowed (besides loopback names
                                        and the listen address) */
    size_t nhosts;
    unsigned max_connections;        /* concurrent connections */
    unsigned timeout_ms;             /* idle connection timeout */
    size_t max_body;                 /* bytes; larger bodies get 413 */
};

/* One request, as received. Strings are NUL-terminated; body may contain NULs. */
struct rest_request {
    const char *method;
    const char *path;                /* raw (still percent-encoded), no query string */
    const char *query;               /* raw query string without '?', or NULL */
    const char *host;                /* Host header or NULL */
    const char *content_type;        /* or NULL */
    const char *authorization;       /* or NULL */
    const char *origin;              /* Origin header or NULL: browsers send it on cross-site
                                        requests, which are refused unless it names an
                                        allowed host */
    const char *body;                /* or NULL */
    size_t body_len;
    int body_too_large;              /* the glue stopped reading: answer 413 */
};

struct rest_response {
    int status;
    struct buf body;                 /* JSON (or Prometheus text for /metrics) */
    const char *content_type;        /* static string */
    char location[600];              /* Location header for 201, or "" */
    char allow[64];                  /* Allow header for 405, or "" */
};

/* Validates options (token file mode, loopback rule, listen syntax) and
 * builds the API without listening. NULL with err. */
struct rest *rest_new(struct runtime *rt, const struct rest_opts *opts, char *err, size_t errsize);
/* Starts listening. 0, or -1 with err (e.g. address in use). */
int rest_listen(struct rest *r, char *err, size_t errsize);
/* Stops listening (waits for in-flight requests) and frees. NULL ok. */
void rest_free(struct rest *r);

/* Answers one request. resp->body must be initialized (BUF_INIT); the caller
 * frees it. Never crashes on any input. Thread-safe (r is read-only after
 * rest_new; ctl is thread-safe). */
void rest_dispatch(struct rest *r, const struct rest_request *req, struct rest_response *resp);

#endif
