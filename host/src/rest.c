/* rest - Kafka Connect-compatible REST API: request checks, routing and
 * body validation (rest_dispatch), and the libmicrohttpd glue that collects
 * requests with limits and sends the answers.
 *
 * Order of the checks in rest_dispatch, so a hostile request learns as
 * little as possible and never reaches ctl:
 *   1. Host header allow-list            -> 421 Misdirected Request
 *   2. Origin header (browsers) allow-list -> 403
 *   3. bearer token on mutating methods    -> 401
 *   4. body over max_body                  -> 413
 *   5. a body needs application/json       -> 415
 *   6. path decoding and route             -> 400 / 404 / 405
 *   7. path parameters (names, task ids)   -> 404 (400 when the call creates)
 *   8. query parameters                    -> 400
 *   9. JSON body: syntax, depth, types     -> 400
 * Only then is ctl called. Nothing here logs a body.
 */
#include "rest.h"
#include "textfmt.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "ctl.h"
#include "log.h"
#include "memtrim.h"

#define REST_JSON_MAX_DEPTH 32
#define REST_MAX_SEGMENTS 8
#define REST_MAX_QUERY_PARAMS 32
#define REST_TOKEN_MAX 4096
#define REST_NAME_RE "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

static const char ct_json[] = "application/json";
static const char ct_metrics[] = "text/plain; version=0.0.4; charset=utf-8";

struct rest {
    struct runtime *rt;
    struct MHD_Daemon *daemon;
    int family;                      /* AF_INET or AF_INET6 */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    unsigned port;
    char listen_name[300];           /* host as written, IPv6 in brackets, lower case */
    char **hosts;                    /* extra allowed Host values, lower case */
    size_t nhosts;
    unsigned char *token;            /* NULL = no token */
    size_t token_len;
    unsigned max_connections;
    unsigned timeout_ms;
    size_t max_body;
};

/* ---------------------------------------------------------------- helpers */

static void set_err(char *err, size_t errsize, const char *fmt, ...) SPOKE_PRINTF(3, 4);
static void set_err(char *err, size_t errsize, const char *fmt, ...)
{
    if (!err || !errsize)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
}

static int is_name_char(unsigned char c)
{
    return isalnum(c) || c == '.' || c == '_' || c == '-';
}

/* ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$ over exactly len bytes. */
static int valid_name(const char *s, size_t len)
{
    if (len == 0 || len > 128 || !isalnum((unsigned char)s[0]))
        return 0;
    for (size_t i = 1; i < len; i++)
        if (!is_name_char((unsigned char)s[i]))
            return 0;
    return 1;
}

/* A short printable rendering of untrusted text for messages: at most 64
 * bytes, non-printable bytes as '?', "..." when cut. */
static const char *shorten(const char *s, char *out, size_t outsize)
{
    size_t n = 0, i = 0;
    if (!s)
        s = "";
    for (; s[i] && n + 4 < outsize && i < 64; i++)
        out[n++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[i] && n + 4 <= outsize) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

static const char *json_type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

/* Strict percent-decoding of [s, s+n) into a new NUL-terminated string:
 * every '%' must start a two-digit hex escape; NUL, CR and LF (raw or
 * escaped) are refused. plus_is_space for query strings. NULL on error
 * (*oom tells out-of-memory apart). */
static char *pct_decode(const char *s, size_t n, int plus_is_space, int *oom)
{
    *oom = 0;
    char *out = malloc(n + 1);
    if (!out) {
        *oom = 1;
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 2 < n ? textfmt_hexval((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < n ? textfmt_hexval((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                goto bad;
            c = hi * 16 + lo;
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (c == 0 || c == '\r' || c == '\n')
            goto bad;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

/* Nesting depth of a JSON text, counted before parsing so a deep document
 * never reaches the parser's recursion. 1 when within max. */
static int json_depth_ok(const char *p, size_t n, int max)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '"')
            in_str = 1;
        else if (c == '[' || c == '{') {
            if (++depth > max)
                return 0;
        } else if (c == ']' || c == '}')
            depth--;
    }
    return 1;
}

/* Constant-time (in the secret) comparison of the presented token. */
static int token_equal(const unsigned char *secret, size_t slen, const char *given, size_t glen)
{
    volatile unsigned char diff = (unsigned char)((slen ^ glen) != 0);
    for (size_t i = 0; i < slen; i++) {
        unsigned char g = i < glen ? (unsigned char)given[i] : 0;
        diff |= (unsigned char)(secret[i] ^ g);
    }
    return diff == 0;
}

/* ------------------------------------------------------------- responses */

/* Serializes j (stolen) as the answer. NULL j: a 500 (ctl ran out of memory). */
static void reply_json(struct rest_response *resp, int status, json_t *j)
{
    resp->status = status;
    buf_reset(&resp->body);
    resp->content_type = ct_json;
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (!s) {
        resp->status = 500;
        buf_puts(&resp->body, "{\"error_code\":500,\"message\":\"out of memory\"}");
        return;
    }
    /* The serialized text becomes the body's storage (both are malloc'd). */
    buf_free(&resp->body);
    resp->body.len = strlen(s);
    resp->body.cap = resp->body.len + 1;
    resp->body.p = s;
}

static void reply_empty(struct rest_response *resp, int status)
{
    resp->status = status;
    buf_reset(&resp->body);
    resp->content_type = ct_json;
}

static void reply_err(struct rest_response *resp, int status, const char *fmt, ...)
    SPOKE_PRINTF(3, 4);
static void reply_err(struct rest_response *resp, int status, const char *fmt, ...)
{
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *j = json_object();
    if (j) {
        json_object_set_new(j, "error_code", json_integer(status));
        /* jansson refuses invalid UTF-8, e.g. a multibyte character cut by
         * the truncation above: then non-ASCII bytes become '?'. */
        json_t *m = json_string(msg);
        if (!m) {
            for (char *p = msg; *p; p++)
                if ((unsigned char)*p >= 0x80)
                    *p = '?';
            m = json_string(msg);
        }
        json_object_set_new(j, "message", m);
    }
    reply_json(resp, status, j);
}

static void reply_ctl_err(struct rest_response *resp, const struct ctl_err *e)
{
    int code = e->code >= 400 && e->code <= 599 ? e->code : 500;
    reply_err(resp, code, "%s", e->msg[0] ? e->msg : "internal error");
}

/* ------------------------------------------------------- Host and Origin */

/* Splits "name[:port]" ("[v6][:port]"). name is [v, v+*nlen); *port = -1
 * when absent. 0 when malformed. */
static int split_hostport(const char *v, size_t *nlen, long *port)
{
    const char *colon;
    *port = -1;
    if (v[0] == '[') {
        const char *e = strchr(v, ']');
        if (!e)
            return 0;
        *nlen = (size_t)(e - v) + 1;
        colon = e[1] == ':' ? e + 1 : NULL;
        if (!colon && e[1] != '\0')
            return 0;
    } else {
        colon = strchr(v, ':');
        if (colon && strchr(colon + 1, ':'))
            return 0;
        *nlen = colon ? (size_t)(colon - v) : strlen(v);
    }
    if (*nlen == 0)
        return 0;
    if (colon) {
        const char *p = colon + 1;
        long n = 0;
        if (!*p || strlen(p) > 5)
            return 0;
        for (; *p; p++) {
            if (!isdigit((unsigned char)*p))
                return 0;
            n = n * 10 + (*p - '0');
        }
        *port = n;
    }
    return 1;
}

static int name_is(const char *v, size_t nlen, const char *name)
{
    return strlen(name) == nlen && strncasecmp(v, name, nlen) == 0;
}

/* Host (or Origin authority) allowed? strict_port: the port must be present
 * (browsers always send it for a non-default port; an origin without it
 * is another site). */
static int host_allowed(const struct rest *r, const char *v, int strict_port)
{
    static const char *const loopback[] = { "localhost", "127.0.0.1", "[::1]" };
    size_t nlen;
    long port;
    if (!v || !split_hostport(v, &nlen, &port))
        return 0;
    int port_ok = port == (long)r->port || (port < 0 && !strict_port);
    for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++)
        if (name_is(v, nlen, loopback[i]))
            return port_ok;
    if (r->listen_name[0] && name_is(v, nlen, r->listen_name))
        return port_ok;
    for (size_t i = 0; i < r->nhosts; i++) {
        size_t hlen;
        long hport;
        if (!split_hostport(r->hosts[i], &hlen, &hport))
            continue;
        if (hport >= 0) {
            if (strcasecmp(v, r->hosts[i]) == 0)
                return 1;
        } else if (hlen == nlen && strncasecmp(v, r->hosts[i], nlen) == 0) {
            return 1;
        }
    }
    return 0;
}

static int origin_allowed(const struct rest *r, const char *origin)
{
    const char *rest;
    if (strncasecmp(origin, "http://", 7) == 0)
        rest = origin + 7;
    else if (strncasecmp(origin, "https://", 8) == 0)
        rest = origin + 8;
    else
        return 0;   /* "null" (sandboxed or file pages) and anything odd */
    return host_allowed(r, rest, 1);
}

/* application/json, optionally followed by parameters (charset=...). */
static int is_json_content_type(const char *ct)
{
    if (!ct)
        return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, "application/json", 16) != 0)
        return 0;
    ct += 16;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

/* -------------------------------------------------------------- routing */

struct call;
typedef void (*handler_fn)(struct call *c);

enum { BODY_NONE = 0, BODY_JSON = 1 };

struct route {
    const char *seg[6];   /* literal segments; "{c}" connector, "{t}" task,
                             "{p}" plugin, "{l}" logger; NULL-terminated */
    const char *method;
    handler_fn fn;
    int body;
    int creates;          /* an invalid {c} is a 400 (creating), not a 404 */
};

struct qparam {
    char *key;
    char *value;
};

struct call {
    struct rest *r;
    const struct rest_request *req;
    struct rest_response *resp;
    const char *conn;
    int task;
    const char *plugin;
    const char *logger;
    struct qparam q[REST_MAX_QUERY_PARAMS];
    size_t nq;
    json_t *body;
};

static const char *query_get(const struct call *c, const char *key, size_t *from)
{
    for (size_t i = from ? *from : 0; i < c->nq; i++)
        if (strcmp(c->q[i].key, key) == 0) {
            if (from)
                *from = i + 1;
            return c->q[i].value;
        }
    return NULL;
}

/* A boolean query parameter: true/false (case-insensitive, like Connect's
 * Boolean parameters); 400 on anything else. -1 after answering. */
static int query_bool(struct call *c, const char *key, int def)
{
    const char *v = query_get(c, key, NULL);
    if (!v)
        return def;
    if (strcasecmp(v, "true") == 0)
        return 1;
    if (strcasecmp(v, "false") == 0)
        return 0;
    char s[80];
    reply_err(c->resp, 400, "query parameter %s must be true or false, not '%s'", key,
              shorten(v, s, sizeof(s)));
    return -1;
}

/* Checks obj is an object whose values are strings (or null when
 * allow_null); answers 400 naming the field otherwise. 0 or -1. */
static int check_string_map(struct call *c, json_t *obj, const char *what, int allow_null)
{
    if (!json_is_object(obj)) {
        reply_err(c->resp, 400, "%s must be an object, not %s", what, json_type_name(obj));
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        if (json_is_string(v) || (allow_null && json_is_null(v)))
            continue;
        char s[80];
        reply_err(c->resp, 400, "%s.%s must be a string%s, not %s", what,
                  shorten(k, s, sizeof(s)), allow_null ? " or null" : "", json_type_name(v));
        return -1;
    }
    return 0;
}

/* Refuses fields of obj not in allowed (NULL-terminated). 0 or -1. */
static int check_fields(struct call *c, json_t *obj, const char *what,
                        const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        const char *const *a = allowed;
        while (*a && strcmp(*a, k) != 0)
            a++;
        if (!*a) {
            char s[80];
            reply_err(c->resp, 400, "unknown field '%s' in %s", shorten(k, s, sizeof(s)), what);
            return -1;
        }
    }
    return 0;
}

static int require_object_body(struct call *c)
{
    if (!json_is_object(c->body)) {
        reply_err(c->resp, 400, "request body must be a JSON object, not %s",
                  json_type_name(c->body));
        return -1;
    }
    return 0;
}

/* Location of a connector, absolute like Connect's. */
static void set_location(struct call *c, const char *name)
{
    const char *host = c->req->host;
    char def[320];
    if (!host || !*host) {
        snprintf(def, sizeof(def), "%s:%u", c->r->listen_name[0] ? c->r->listen_name : "127.0.0.1",
                 c->r->port);
        host = def;
    }
    int n = snprintf(c->resp->location, sizeof(c->resp->location), "http://%s/connectors/%s",
                     host, name);
    if (n < 0 || (size_t)n >= sizeof(c->resp->location))
        snprintf(c->resp->location, sizeof(c->resp->location), "/connectors/%s", name);
}

/* ------------------------------------------------------------- handlers */

static void h_root(struct call *c) { reply_json(c->resp, 200, ctl_root(c->r->rt)); }

static void h_health(struct call *c)
{
    json_t *j = json_object();
    if (ctl_ready(c->r->rt)) {
        json_object_set_new(j, "status", json_string("healthy"));
        json_object_set_new(j, "message", json_string(
            "Worker has completed startup and is ready to handle requests."));
        reply_json(c->resp, 200, j);
    } else {
        json_object_set_new(j, "status", json_string("starting"));
        json_object_set_new(j, "message", json_string("Worker is still starting up."));
        reply_json(c->resp, 503, j);
    }
}

static void h_connectors(struct call *c)
{
    int st = 0, info = 0;
    size_t at = 0;
    const char *v;
    /* Unknown expand values are ignored, as Connect does. */
    while ((v = query_get(c, "expand", &at))) {
        if (strcmp(v, "status") == 0)
            st = 1;
        else if (strcmp(v, "info") == 0)
            info = 1;
    }
    reply_json(c->resp, 200, ctl_connectors(c->r->rt, st, info));
}

static void h_create(struct call *c)
{
    static const char *const fields[] = { "name", "config", "initial_state", NULL };
    if (require_object_body(c) || check_fields(c, c->body, "request body", fields))
        return;
    json_t *name = json_object_get(c->body, "name");
    json_t *config = json_object_get(c->body, "config");
    json_t *init = json_object_get(c->body, "initial_state");
    if (!name) {
        reply_err(c->resp, 400, "missing field 'name' in request body");
        return;
    }
    if (!json_is_string(name)) {
        reply_err(c->resp, 400, "name must be a string, not %s", json_type_name(name));
        return;
    }
    const char *n = json_string_value(name);
    if (!valid_name(n, json_string_length(name))) {
        char s[80];
        reply_err(c->resp, 400, "connector name '%s' is invalid: it must match " REST_NAME_RE,
                  shorten(n, s, sizeof(s)));
        return;
    }
    if (!config) {
        reply_err(c->resp, 400, "missing field 'config' in request body");
        return;
    }
    if (check_string_map(c, config, "config", 0))
        return;
    char state[16];
    const char *initial = NULL;
    if (init && !json_is_null(init)) {
        if (!json_is_string(init)) {
            reply_err(c->resp, 400, "initial_state must be a string, not %s",
                      json_type_name(init));
            return;
        }
        const char *s = json_string_value(init);
        if (strcasecmp(s, "RUNNING") && strcasecmp(s, "PAUSED") && strcasecmp(s, "STOPPED")) {
            char sh[80];
            reply_err(c->resp, 400, "initial_state must be one of RUNNING, PAUSED, STOPPED, "
                      "not '%s'", shorten(s, sh, sizeof(sh)));
            return;
        }
        size_t i = 0;
        for (; s[i] && i + 1 < sizeof(state); i++)
            state[i] = (char)toupper((unsigned char)s[i]);
        state[i] = '\0';
        initial = state;
    }
    struct ctl_err e = { 0 };
    int created = 0;
    json_t *info = ctl_put(c->r->rt, n, config, 1, initial, &created, &e);
    if (!info) {
        reply_ctl_err(c->resp, &e);
        return;
    }
    set_location(c, n);
    reply_json(c->resp, 201, info);
}

/* GET-style calls that take a connector name and return one object. */
static void reply_result(struct call *c, json_t *j, const struct ctl_err *e, int status)
{
    if (j)
        reply_json(c->resp, status, j);
    else
        reply_ctl_err(c->resp, e);
}

static void h_info(struct call *c)
{
    struct ctl_err e = { 0 };
    reply_result(c, ctl_info(c->r->rt, c->conn, &e), &e, 200);
}

static void h_delete(struct call *c)
{
    struct ctl_err e = { 0 };
    if (ctl_delete(c->r->rt, c->conn, &e) == 0)
        reply_empty(c->resp, 204);
    else
        reply_ctl_err(c->resp, &e);
}

static void h_config(struct call *c)
{
    struct ctl_err e = { 0 };
    reply_result(c, ctl_config(c->r->rt, c->conn, &e), &e, 200);
}

static void h_put_config(struct call *c)
{
    if (check_string_map(c, c->body, "config", 0))
        return;
    struct ctl_err e = { 0 };
    int created = 0;
    json_t *info = ctl_put(c->r->rt, c->conn, c->body, 0, NULL, &created, &e);
    if (!info) {
        reply_ctl_err(c->resp, &e);
        return;
    }
    if (created)
        set_location(c, c->conn);
    reply_json(c->resp, created ? 201 : 200, info);
}

static void h_patch_config(struct call *c)
{
    if (check_string_map(c, c->body, "config", 1))
        return;
    struct ctl_err e = { 0 };
    reply_result(c, ctl_patch(c->r->rt, c->conn, c->body, &e), &e, 200);
}

static void h_status(struct call *c)
{
    struct ctl_err e = { 0 };
    reply_result(c, ctl_status(c->r->rt, c->conn, &e), &e, 200);
}

static void h_restart(struct call *c)
{
    int tasks = query_bool(c, "includeTasks", 0);
    if (tasks < 0)
        return;
    int failed = query_bool(c, "onlyFailed", 0);
    if (failed < 0)
        return;
    struct ctl_err e = { 0 };
    json_t *status = NULL;
    int rc = ctl_restart(c->r->rt, c->conn, tasks, failed, &status, &e);
    if (rc < 0) {
        json_decref(status);
        reply_ctl_err(c->resp, &e);
    } else if (status) {
        reply_json(c->resp, rc == 200 || rc == 202 ? rc : 202, status);
    } else {
        reply_empty(c->resp, 204);
    }
}

static void h_pause(struct call *c)
{
    struct ctl_err e = { 0 };
    if (ctl_pause(c->r->rt, c->conn, &e) == 0)
        reply_empty(c->resp, 202);
    else
        reply_ctl_err(c->resp, &e);
}

static void h_resume(struct call *c)
{
    struct ctl_err e = { 0 };
    if (ctl_resume(c->r->rt, c->conn, &e) == 0)
        reply_empty(c->resp, 202);
    else
        reply_ctl_err(c->resp, &e);
}

static void h_stop(struct call *c)
{
    struct ctl_err e = { 0 };
    if (ctl_stop(c->r->rt, c->conn, &e) == 0)
        reply_empty(c->resp, 204);
    else
        reply_ctl_err(c->resp, &e);
}

static void h_tasks(struct call *c)
{
    struct ctl_err e = { 0 };
    reply_result(c, ctl_tasks(c->r->rt, c->conn, &e), &e, 200);
}

static void h_task_status(struct call *c)
{
    struct ctl_err e = { 0 };
    reply_result(c, ctl_task_status(c->r->rt, c->conn, c->task, &e), &e, 200);
}

static void h_task_restart(struct call *c)
{
    struct ctl_err e = { 0 };
    if (ctl_task_restart(c->r->rt, c->conn, c->task, &e) == 0)
        reply_empty(c->resp, 204);
    else
        reply_ctl_err(c->resp, &e);
}

static void h_topics(struct call *c)
{
    struct ctl_err e = { 0 };
    reply_result(c, ctl_topics(c->r->rt, c->conn, &e), &e, 200);
}

static void h_topics_reset(struct call *c)
{
    struct ctl_err e = { 0 };
    if (ctl_topics_reset(c->r->rt, c->conn, &e) == 0)
        reply_empty(c->resp, 200);
    else
        reply_ctl_err(c->resp, &e);
}

static void h_offsets(struct call *c)
{
    struct ctl_err e = { 0 };
    reply_result(c, ctl_offsets(c->r->rt, c->conn, &e), &e, 200);
}

/* {"offsets": [{"partition": {...}, "offset": {...} | null}, ...]}; the
 * contents of partition and offset are the connector's business (ctl). */
static void h_offsets_alter(struct call *c)
{
    static const char *const top[] = { "offsets", NULL };
    static const char *const elem[] = { "partition", "offset", NULL };
    if (require_object_body(c) || check_fields(c, c->body, "request body", top))
        return;
    json_t *offs = json_object_get(c->body, "offsets");
    if (!offs) {
        reply_err(c->resp, 400, "missing field 'offsets' in request body");
        return;
    }
    if (!json_is_array(offs)) {
        reply_err(c->resp, 400, "offsets must be an array, not %s", json_type_name(offs));
        return;
    }
    size_t i;
    json_t *o;
    json_array_foreach(offs, i, o) {
        char what[48];
        snprintf(what, sizeof(what), "offsets[%zu]", i);
        if (!json_is_object(o)) {
            reply_err(c->resp, 400, "%s must be an object, not %s", what, json_type_name(o));
            return;
        }
        if (check_fields(c, o, what, elem))
            return;
        json_t *p = json_object_get(o, "partition");
        json_t *v = json_object_get(o, "offset");
        if (!p) {
            reply_err(c->resp, 400, "missing field 'partition' in %s", what);
            return;
        }
        if (!json_is_object(p)) {
            reply_err(c->resp, 400, "%s.partition must be an object, not %s", what,
                      json_type_name(p));
            return;
        }
        if (!v) {
            reply_err(c->resp, 400, "missing field 'offset' in %s", what);
            return;
        }
        if (!json_is_object(v) && !json_is_null(v)) {
            reply_err(c->resp, 400, "%s.offset must be an object or null, not %s", what,
                      json_type_name(v));
            return;
        }
    }
    struct ctl_err e = { 0 };
    reply_result(c, ctl_offsets_alter(c->r->rt, c->conn, c->body, &e), &e, 200);
}

static void h_offsets_reset(struct call *c)
{
    struct ctl_err e = { 0 };
    reply_result(c, ctl_offsets_reset(c->r->rt, c->conn, &e), &e, 200);
}

static void h_plugins(struct call *c)
{
    int only = query_bool(c, "connectorsOnly", 1);
    if (only < 0)
        return;
    reply_json(c->resp, 200, ctl_plugins(c->r->rt, only));
}

static void h_plugin_config(struct call *c)
{
    struct ctl_err e = { 0 };
    reply_result(c, ctl_plugin_config(c->r->rt, c->plugin, &e), &e, 200);
}

static void h_validate(struct call *c)
{
    if (check_string_map(c, c->body, "config", 0))
        return;
    struct ctl_err e = { 0 };
    reply_result(c, ctl_plugin_validate(c->r->rt, c->plugin, c->body, &e), &e, 200);
}

static void h_loggers(struct call *c) { reply_json(c->resp, 200, ctl_loggers(c->r->rt)); }

static void h_logger(struct call *c)
{
    struct ctl_err e = { 0 };
    reply_result(c, ctl_logger(c->r->rt, c->logger, &e), &e, 200);
}

static void h_logger_set(struct call *c)
{
    static const char *const fields[] = { "level", NULL };
    if (require_object_body(c) || check_fields(c, c->body, "request body", fields))
        return;
    json_t *level = json_object_get(c->body, "level");
    if (!level) {
        reply_err(c->resp, 400, "missing field 'level' in request body");
        return;
    }
    if (!json_is_string(level)) {
        reply_err(c->resp, 400, "level must be a string, not %s", json_type_name(level));
        return;
    }
    struct ctl_err e = { 0 };
    reply_result(c, ctl_logger_set(c->r->rt, c->logger, json_string_value(level), &e), &e, 200);
}

static void h_metrics(struct call *c)
{
    c->resp->status = 200;
    buf_reset(&c->resp->body);
    c->resp->content_type = ct_metrics;
    ctl_metrics(c->r->rt, &c->resp->body);
}

static const struct route routes[] = {
    { { NULL }, "GET", h_root, BODY_NONE, 0 },
    { { "health", NULL }, "GET", h_health, BODY_NONE, 0 },
    { { "metrics", NULL }, "GET", h_metrics, BODY_NONE, 0 },
    { { "connectors", NULL }, "GET", h_connectors, BODY_NONE, 0 },
    { { "connectors", NULL }, "POST", h_create, BODY_JSON, 0 },
    { { "connectors", "{c}", NULL }, "GET", h_info, BODY_NONE, 0 },
    { { "connectors", "{c}", NULL }, "DELETE", h_delete, BODY_NONE, 0 },
    { { "connectors", "{c}", "config", NULL }, "GET", h_config, BODY_NONE, 0 },
    { { "connectors", "{c}", "config", NULL }, "PUT", h_put_config, BODY_JSON, 1 },
    { { "connectors", "{c}", "config", NULL }, "PATCH", h_patch_config, BODY_JSON, 0 },
    { { "connectors", "{c}", "status", NULL }, "GET", h_status, BODY_NONE, 0 },
    { { "connectors", "{c}", "restart", NULL }, "POST", h_restart, BODY_NONE, 0 },
    { { "connectors", "{c}", "pause", NULL }, "PUT", h_pause, BODY_NONE, 0 },
    { { "connectors", "{c}", "resume", NULL }, "PUT", h_resume, BODY_NONE, 0 },
    { { "connectors", "{c}", "stop", NULL }, "PUT", h_stop, BODY_NONE, 0 },
    { { "connectors", "{c}", "tasks", NULL }, "GET", h_tasks, BODY_NONE, 0 },
    { { "connectors", "{c}", "tasks", "{t}", "status", NULL }, "GET", h_task_status, BODY_NONE, 0 },
    { { "connectors", "{c}", "tasks", "{t}", "restart", NULL }, "POST", h_task_restart, BODY_NONE, 0 },
    { { "connectors", "{c}", "topics", NULL }, "GET", h_topics, BODY_NONE, 0 },
    { { "connectors", "{c}", "topics", "reset", NULL }, "PUT", h_topics_reset, BODY_NONE, 0 },
    { { "connectors", "{c}", "offsets", NULL }, "GET", h_offsets, BODY_NONE, 0 },
    { { "connectors", "{c}", "offsets", NULL }, "PATCH", h_offsets_alter, BODY_JSON, 0 },
    { { "connectors", "{c}", "offsets", NULL }, "DELETE", h_offsets_reset, BODY_NONE, 0 },
    { { "connector-plugins", NULL }, "GET", h_plugins, BODY_NONE, 0 },
    { { "connector-plugins", "{p}", "config", NULL }, "GET", h_plugin_config, BODY_NONE, 0 },
    { { "connector-plugins", "{p}", "config", "validate", NULL }, "PUT", h_validate, BODY_JSON, 0 },
    { { "admin", "loggers", NULL }, "GET", h_loggers, BODY_NONE, 0 },
    { { "admin", "loggers", "{l}", NULL }, "GET", h_logger, BODY_NONE, 0 },
    { { "admin", "loggers", "{l}", NULL }, "PUT", h_logger_set, BODY_JSON, 0 },
};

#define NROUTES (sizeof(routes) / sizeof(routes[0]))

static int route_matches(const struct route *rt, char **seg, size_t nseg)
{
    size_t i = 0;
    for (; rt->seg[i]; i++) {
        if (i >= nseg)
            return 0;
        if (rt->seg[i][0] != '{' && strcmp(rt->seg[i], seg[i]) != 0)
            return 0;
    }
    return i == nseg;
}

/* Splits the raw path into percent-decoded segments. A single trailing
 * slash is ignored; empty segments are not. 0, 400 (bad encoding), 404
 * (too many segments) or -1 (out of memory). */
static int split_path(const char *path, char **seg, size_t *nseg)
{
    *nseg = 0;
    if (path[0] != '/')
        return 400;
    size_t len = strlen(path);
    if (len > 1 && path[len - 1] == '/')
        len--;
    if (len == 1)
        return 0;
    const char *p = path + 1, *end = path + len;
    while (p <= end) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *e = slash ? slash : end;
        if (*nseg == REST_MAX_SEGMENTS)
            return 404;
        int oom;
        char *s = pct_decode(p, (size_t)(e - p), 0, &oom);
        if (!s)
            return oom ? -1 : 400;
        seg[(*nseg)++] = s;
        if (!slash)
            break;
        p = slash + 1;
    }
    return 0;
}

/* Parses a raw query string into decoded key/value pairs. 0, 400 or -1. */
static int parse_query(struct call *c, const char *q)
{
    if (!q)
        return 0;
    const char *p = q;
    while (*p) {
        const char *amp = strchr(p, '&');
        const char *e = amp ? amp : p + strlen(p);
        if (e > p) {
            if (c->nq == REST_MAX_QUERY_PARAMS)
                return 400;
            const char *eq = memchr(p, '=', (size_t)(e - p));
            const char *ke = eq ? eq : e;
            int oom;
            char *k = pct_decode(p, (size_t)(ke - p), 1, &oom);
            if (!k)
                return oom ? -1 : 400;
            char *v = eq ? pct_decode(eq + 1, (size_t)(e - eq - 1), 1, &oom) : strdup("");
            if (!v) {
                free(k);
                return eq && !oom ? 400 : -1;
            }
            c->q[c->nq].key = k;
            c->q[c->nq].value = v;
            c->nq++;
        }
        if (!amp)
            break;
        p = amp + 1;
    }
    return 0;
}

/* Converts a {t} segment: decimal, no sign, no leading zeros beyond "0". */
static int parse_task(const char *s, int *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 9 || (n > 1 && s[0] == '0'))
        return 0;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

/* Binds the parameters of the matched route; answers and returns -1 when
 * one is invalid (names never reach ctl unless they match REST_NAME_RE). */
static int bind_params(struct call *c, const struct route *rt, char **seg)
{
    for (size_t i = 0; rt->seg[i]; i++) {
        const char *p = rt->seg[i], *v = seg[i];
        if (p[0] != '{')
            continue;
        char s[80];
        if (p[1] == 't') {
            if (!parse_task(v, &c->task)) {
                reply_err(c->resp, 404, "Task %s not found", shorten(v, s, sizeof(s)));
                return -1;
            }
            continue;
        }
        if (!valid_name(v, strlen(v))) {
            if (p[1] == 'c' && rt->creates)
                reply_err(c->resp, 400, "connector name '%s' is invalid: it must match "
                          REST_NAME_RE, shorten(v, s, sizeof(s)));
            else if (p[1] == 'c')
                reply_err(c->resp, 404, "Connector %s not found", shorten(v, s, sizeof(s)));
            else if (p[1] == 'p')
                reply_err(c->resp, 404, "Plugin %s not found", shorten(v, s, sizeof(s)));
            else
                reply_err(c->resp, 404, "Logger %s not found", shorten(v, s, sizeof(s)));
            return -1;
        }
        if (p[1] == 'c')
            c->conn = v;
        else if (p[1] == 'p')
            c->plugin = v;
        else
            c->logger = v;
    }
    return 0;
}

static int parse_body(struct call *c)
{
    const struct rest_request *req = c->req;
    if (!req->body || req->body_len == 0) {
        reply_err(c->resp, 400, "request body is required (a JSON document)");
        return -1;
    }
    if (!json_depth_ok(req->body, req->body_len, REST_JSON_MAX_DEPTH)) {
        reply_err(c->resp, 400, "request body nests deeper than %d levels",
                  REST_JSON_MAX_DEPTH);
        return -1;
    }
    json_error_t jerr;
    c->body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!c->body) {
        reply_err(c->resp, 400, "request body is not valid JSON: %s (line %d, column %d)",
                  jerr.text, jerr.line, jerr.column);
        return -1;
    }
    return 0;
}

static int is_mutating(const char *method)
{
    return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
}

static void dispatch(struct rest *r, const struct rest_request *req, struct rest_response *resp)
{
    char s[80];
    if (!req->method || !req->path) {
        reply_err(resp, 400, "malformed request");
        return;
    }
    if (req->host && !host_allowed(r, req->host, 0)) {
        reply_err(resp, 421, "Host '%s' is not allowed: use localhost, 127.0.0.1, [::1], the "
                  "listen address, or add it to rest.hosts.allowed", shorten(req->host, s, sizeof(s)));
        return;
    }
    if (req->origin && !origin_allowed(r, req->origin)) {
        reply_err(resp, 403, "cross-origin request from '%s' refused",
                  shorten(req->origin, s, sizeof(s)));
        return;
    }
    if (r->token && is_mutating(req->method)) {
        const char *a = req->authorization;
        int ok = a && strncasecmp(a, "Bearer ", 7) == 0;
        if (ok) {
            a += 7;
            while (*a == ' ')
                a++;
            size_t n = strlen(a);
            while (n && (a[n - 1] == ' ' || a[n - 1] == '\t'))
                n--;
            ok = token_equal(r->token, r->token_len, a, n);
        }
        if (!ok) {
            reply_err(resp, 401, "this call needs the header 'Authorization: Bearer <token>' "
                      "with the token of rest.token.file");
            return;
        }
    }
    if (req->body_too_large) {
        reply_err(resp, 413, "request body is larger than %zu bytes", r->max_body);
        return;
    }
    if (req->body_len > 0 && !is_json_content_type(req->content_type)) {
        reply_err(resp, 415, "a request body needs 'Content-Type: application/json', not '%s'",
                  shorten(req->content_type ? req->content_type : "(none)", s, sizeof(s)));
        return;
    }

    char *seg[REST_MAX_SEGMENTS] = { 0 };
    size_t nseg = 0;
    struct call c = { .r = r, .req = req, .resp = resp };
    int rc = split_path(req->path, seg, &nseg);
    if (rc == 400) {
        reply_err(resp, 400, "invalid path: bad percent-encoding, or an encoded NUL, CR or LF");
        goto out;
    }
    if (rc) {
        if (rc < 0)
            reply_err(resp, 500, "out of memory");
        else
            reply_err(resp, 404, "path not found");
        goto out;
    }

    const char *method = strcmp(req->method, "HEAD") == 0 ? "GET" : req->method;
    const struct route *match = NULL;
    int path_known = 0;
    char allow[64] = "";
    for (size_t i = 0; i < NROUTES; i++) {
        if (!route_matches(&routes[i], seg, nseg))
            continue;
        path_known = 1;
        size_t used = strlen(allow);
        snprintf(allow + used, sizeof(allow) - used, "%s%s", used ? ", " : "", routes[i].method);
        if (strcmp(routes[i].method, method) == 0)
            match = &routes[i];
    }
    if (!match) {
        if (path_known) {
            reply_err(resp, 405, "method %s is not allowed here (allowed: %s)",
                      shorten(req->method, s, sizeof(s)), allow);
            snprintf(resp->allow, sizeof(resp->allow), "%s", allow);
        } else {
            reply_err(resp, 404, "path not found");
        }
        goto out;
    }
    if (bind_params(&c, match, seg))
        goto out;
    rc = parse_query(&c, req->query);
    if (rc) {
        if (rc < 0)
            reply_err(resp, 500, "out of memory");
        else
            reply_err(resp, 400, "invalid query string: bad percent-encoding, an encoded NUL, "
                      "CR or LF, or more than %d parameters", REST_MAX_QUERY_PARAMS);
        goto out;
    }
    if (match->body == BODY_JSON && parse_body(&c))
        goto out;
    match->fn(&c);
out:
    json_decref(c.body);
    for (size_t i = 0; i < c.nq; i++) {
        free(c.q[i].key);
        free(c.q[i].value);
    }
    for (size_t i = 0; i < nseg; i++)
        free(seg[i]);
}

void rest_dispatch(struct rest *r, const struct rest_request *req, struct rest_response *resp)
{
    resp->status = 500;
    resp->content_type = ct_json;
    resp->location[0] = '\0';
    resp->allow[0] = '\0';
    buf_reset(&resp->body);
    dispatch(r, req, resp);
}

/* ---------------------------------------------------------- construction */

static int parse_listen(struct rest *r, const char *listen, char *err, size_t errsize)
{
    const char *p = listen;
    if (strstr(p, "://")) {
        if (strncasecmp(p, "http://", 7) == 0) {
            p += 7;
        } else if (strncasecmp(p, "https://", 8) == 0) {
            set_err(err, errsize, "listeners: '%s': https is not supported; listen on loopback "
                    "and put a TLS proxy in front", listen);
            return -1;
        } else {
            set_err(err, errsize, "listeners: '%s': the scheme must be http://", listen);
            return -1;
        }
    }
    if (strchr(p, ',')) {
        set_err(err, errsize, "listeners: '%s': only one listener is supported", listen);
        return -1;
    }
    char hostport[300];
    size_t n = strlen(p);
    if (n && p[n - 1] == '/')
        n--;
    if (n == 0 || n >= sizeof(hostport) || memchr(p, '/', n)) {
        set_err(err, errsize, "listeners: '%s' is not of the form http://HOST:PORT", listen);
        return -1;
    }
    memcpy(hostport, p, n);
    hostport[n] = '\0';

    char host[300];
    const char *portstr;
    if (hostport[0] == '[') {
        char *e = strchr(hostport, ']');
        if (!e || e[1] != ':') {
            set_err(err, errsize, "listeners: '%s' is not of the form http://[ADDRESS]:PORT",
                    listen);
            return -1;
        }
        *e = '\0';
        snprintf(host, sizeof(host), "%s", hostport + 1);
        portstr = e + 2;
    } else {
        char *colon = strrchr(hostport, ':');
        if (!colon || strchr(hostport, ':') != colon) {
            set_err(err, errsize, "listeners: '%s' is not of the form http://HOST:PORT (IPv6 "
                    "addresses go in brackets)", listen);
            return -1;
        }
        *colon = '\0';
        snprintf(host, sizeof(host), "%s", hostport);
        portstr = colon + 1;
    }
    char *end;
    errno = 0;
    long port = strtol(portstr, &end, 10);
    if (!*portstr || *end || errno || port < 1 || port > 65535 || !isdigit((unsigned char)*portstr)) {
        set_err(err, errsize, "listeners: '%s': the port must be 1..65535", listen);
        return -1;
    }
    r->port = (unsigned)port;

    memset(&r->addr, 0, sizeof(r->addr));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&r->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&r->addr;
    if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0) {
        r->family = AF_INET;
        a4->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (strcasecmp(host, "localhost") == 0) {
        r->family = AF_INET;
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        r->family = AF_INET;
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        r->family = AF_INET6;
    } else {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC };
        struct addrinfo *ai = NULL;
        int g = getaddrinfo(host, NULL, &hints, &ai);
        if (g != 0 || !ai) {
            set_err(err, errsize, "listeners: cannot resolve '%s': %s", host, gai_strerror(g));
            return -1;
        }
        memcpy(&r->addr, ai->ai_addr, ai->ai_addrlen);
        r->family = ai->ai_family;
        freeaddrinfo(ai);
    }
    if (r->family == AF_INET) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        r->addrlen = sizeof(*a4);
    } else {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        r->addrlen = sizeof(*a6);
    }
    if (host[0]) {
        int v6 = strchr(host, ':') != NULL;
        snprintf(r->listen_name, sizeof(r->listen_name), v6 ? "[%s]" : "%s", host);
        for (char *q = r->listen_name; *q; q++)
            *q = (char)tolower((unsigned char)*q);
    }
    return 0;
}

static int addr_is_loopback(const struct rest *r)
{
    if (r->family == AF_INET) {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)&r->addr;
        return (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
    }
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&r->addr;
    if (IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr))
        return 1;
    return IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr) && a6->sin6_addr.s6_addr[12] == 127;
}

static int read_token(struct rest *r, const char *path, char *err, size_t errsize)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        set_err(err, errsize, "rest.token.file: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        set_err(err, errsize, "rest.token.file: %s is not a regular file", path);
        close(fd);
        return -1;
    }
    if (st.st_mode & 077) {
        set_err(err, errsize, "rest.token.file: %s has mode %04o; it must be 0600 or stricter "
                "(chmod 600 %s)", path, (unsigned)(st.st_mode & 07777), path);
        close(fd);
        return -1;
    }
    if (st.st_size > REST_TOKEN_MAX) {
        set_err(err, errsize, "rest.token.file: %s is larger than %d bytes", path, REST_TOKEN_MAX);
        close(fd);
        return -1;
    }
    unsigned char tok[REST_TOKEN_MAX + 1];
    size_t n = 0;
    for (;;) {
        ssize_t k = read(fd, tok + n, sizeof(tok) - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            set_err(err, errsize, "rest.token.file: cannot read %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (k == 0 || n + (size_t)k == sizeof(tok)) {
            n += (size_t)k;
            break;
        }
        n += (size_t)k;
    }
    close(fd);
    while (n && isspace(tok[n - 1]))
        n--;
    size_t start = 0;
    while (start < n && isspace(tok[start]))
        start++;
    int bad = n == start || n > REST_TOKEN_MAX;
    for (size_t i = start; i < n && !bad; i++)
        bad = tok[i] <= 0x20 || tok[i] >= 0x7f;
    if (bad) {
        set_err(err, errsize, "rest.token.file: %s must hold one token of printable ASCII "
                "characters without spaces", path);
        memset(tok, 0, sizeof(tok));
        return -1;
    }
    r->token = malloc(n - start);
    if (!r->token) {
        set_err(err, errsize, "out of memory");
        return -1;
    }
    memcpy(r->token, tok + start, n - start);
    r->token_len = n - start;
    memset(tok, 0, sizeof(tok));
    return 0;
}

struct rest *rest_new(struct runtime *rt, const struct rest_opts *opts, char *err,
                      size_t errsize)
{
    struct rest *r = calloc(1, sizeof(*r));
    if (!r) {
        set_err(err, errsize, "out of memory");
        return NULL;
    }
    r->rt = rt;
    r->max_connections = opts->max_connections ? opts->max_connections : 64;
    r->timeout_ms = opts->timeout_ms ? opts->timeout_ms : 30000;
    r->max_body = opts->max_body ? opts->max_body : 1048576;
    if (parse_listen(r, opts->listen ? opts->listen : "http://127.0.0.1:8083", err, errsize))
        goto fail;
    if (opts->token_file && read_token(r, opts->token_file, err, errsize))
        goto fail;
    if (!r->token && !addr_is_loopback(r)) {
        set_err(err, errsize, "listeners: %s is not a loopback address; set rest.token.file "
                "(a file of mode 0600 holding a bearer token) to serve the REST API on it",
                opts->listen);
        goto fail;
    }
    if (opts->nhosts) {
        r->hosts = calloc(opts->nhosts, sizeof(*r->hosts));
        if (!r->hosts) {
            set_err(err, errsize, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < opts->nhosts; i++) {
            size_t nlen;
            long port;
            if (!opts->hosts[i] || !split_hostport(opts->hosts[i], &nlen, &port)) {
                set_err(err, errsize, "rest.hosts.allowed: '%s' is not HOST or HOST:PORT",
                        opts->hosts[i] ? opts->hosts[i] : "");
                goto fail;
            }
            r->hosts[r->nhosts] = strdup(opts->hosts[i]);
            if (!r->hosts[r->nhosts]) {
                set_err(err, errsize, "out of memory");
                goto fail;
            }
            r->nhosts++;
        }
    }
    return r;
fail:
    rest_free(r);
    return NULL;
}

/* ------------------------------------------------------ libmicrohttpd glue */

struct req_ctx {
    char *uri;               /* raw request target (path and query) */
    struct buf body;
    size_t discarded;        /* bytes dropped after max_body (chunked bodies) */
    int started;
    int too_large;
    struct timespec t0;
};

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *con)
{
    (void)cls;
    (void)con;
    struct req_ctx *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->uri = strdup(uri ? uri : "");
    if (!x->uri) {
        free(x);
        return NULL;
    }
    clock_gettime(CLOCK_MONOTONIC, &x->t0);
    return x;
}

static void on_completed(void *cls, struct MHD_Connection *con, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)con;
    (void)toe;
    struct req_ctx *x = *con_cls;
    if (!x)
        return;
    buf_free(&x->body);
    free(x->uri);
    free(x);
    *con_cls = NULL;
}

/* libmicrohttpd decodes %xx in the URL it hands to the handler; routing
 * needs the raw path (so "%2F" stays inside a segment), so decoding is
 * left to rest_dispatch. */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (log_threshold < SPOKE_LOG_DEBUG)
        return;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    LOG_D(NULL, "rest: libmicrohttpd: %s", msg);
}

static const char *header(struct MHD_Connection *con, const char *name)
{
    return MHD_lookup_connection_value(con, MHD_HEADER_KIND, name);
}

static enum MHD_Result answer(struct rest *r, struct MHD_Connection *con, struct req_ctx *x,
                              const char *method)
{
    char *q = strchr(x->uri, '?');
    if (q)
        *q++ = '\0';
    struct rest_request req = {
        .method = method,
        .path = x->uri,
        .query = q,
        .host = header(con, MHD_HTTP_HEADER_HOST),
        .content_type = header(con, MHD_HTTP_HEADER_CONTENT_TYPE),
        .authorization = header(con, MHD_HTTP_HEADER_AUTHORIZATION),
        .origin = header(con, "Origin"),
        .body = x->body.p,
        .body_len = x->body.len,
        .body_too_large = x->too_large,
    };
    struct rest_response resp = { .body = BUF_INIT };
    rest_dispatch(r, &req, &resp);

    size_t len = 0;
    char *data = buf_steal(&resp.body, &len);
    if (resp.status == 204 || resp.status == 304) {
        free(data);
        data = NULL;
        len = 0;
    }
    struct MHD_Response *mr = data
        ? MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE)
        : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!mr) {
        free(data);
        return MHD_NO;
    }
    if (len)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, resp.content_type);
    if (resp.location[0])
        MHD_add_response_header(mr, MHD_HTTP_HEADER_LOCATION, resp.location);
    if (resp.allow[0])
        MHD_add_response_header(mr, MHD_HTTP_HEADER_ALLOW, resp.allow);
    if (resp.status == 401)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    MHD_add_response_header(mr, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(mr, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ok = MHD_queue_response(con, (unsigned)resp.status, mr);
    MHD_destroy_response(mr);

    if (log_threshold >= SPOKE_LOG_DEBUG) {
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (double)(t1.tv_sec - x->t0.tv_sec) * 1e3 +
                    (double)(t1.tv_nsec - x->t0.tv_nsec) / 1e6;
        LOG_D(NULL, "rest: %.16s %.200s%s%.200s -> %d (%.3f ms)", method, x->uri,
              q ? "?" : "", q ? q : "", resp.status, ms);
    }
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)url;
    (void)version;
    struct rest *r = cls;
    struct req_ctx *x = *con_cls;
    if (!x)
        return MHD_NO;   /* out of memory in on_uri */
    if (!x->started) {
        x->started = 1;
        memtrim_thread_uncached(); /* REST calls are rare: no per-thread cache */
        /* A declared body over the limit is refused before it is read;
         * libmicrohttpd then closes the connection after the answer. */
        const char *cl = header(con, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno == ERANGE || n > r->max_body) {
                x->too_large = 1;
                return answer(r, con, x, method);
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (!x->too_large && x->body.len + n <= r->max_body) {
            if (buf_append(&x->body, upload_data, n) < 0)
                return MHD_NO;
            return MHD_YES;
        }
        /* Chunked body past the limit: no answer can be queued while the
         * upload is in progress, so the rest is dropped unread-into-memory
         * and 413 answered at its end; a client that keeps sending more
         * than the limit again is disconnected. */
        if (!x->too_large) {
            x->too_large = 1;
            buf_free(&x->body);
        }
        x->discarded += n;
        return x->discarded > r->max_body ? MHD_NO : MHD_YES;
    }
    return answer(r, con, x, method);
}

int rest_listen(struct rest *r, char *err, size_t errsize)
{
    char where[340];
    snprintf(where, sizeof(where), "%s:%u", r->listen_name[0] ? r->listen_name : "*", r->port);
    int fd = socket(r->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        set_err(err, errsize, "rest: cannot create a socket for %s: %s", where, strerror(errno));
        return -1;
    }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (r->family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    if (bind(fd, (struct sockaddr *)&r->addr, r->addrlen) != 0 || listen(fd, 128) != 0) {
        set_err(err, errsize, "rest: cannot listen on %s: %s", where, strerror(errno));
        close(fd);
        return -1;
    }
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ERROR_LOG;
    if (r->family == AF_INET6)
        flags |= MHD_USE_DUAL_STACK;
    /* One client address may hold at most 3/4 of the connections, so a
     * single slow or greedy peer cannot take all of them. */
    unsigned per_ip = r->max_connections - r->max_connections / 4;
    unsigned timeout_s = (r->timeout_ms + 999) / 1000;
    r->daemon = MHD_start_daemon(
        flags, (uint16_t)r->port, NULL, NULL, on_request, r,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, r,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_CONNECTION_LIMIT, r->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip ? per_ip : 1u,
        MHD_OPTION_CONNECTION_TIMEOUT, timeout_s ? timeout_s : 1u,
        MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, r,
        MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, r,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, r,
        MHD_OPTION_END);
    if (!r->daemon) {
        set_err(err, errsize, "rest: cannot start the HTTP server on %s", where);
        close(fd);
        return -1;
    }
    return 0;
}

void rest_free(struct rest *r)
{
    if (!r)
        return;
    if (r->daemon)
        MHD_stop_daemon(r->daemon);
    for (size_t i = 0; i < r->nhosts; i++)
        free(r->hosts[i]);
    free(r->hosts);
    if (r->token) {
        memset(r->token, 0, r->token_len);
        free(r->token);
    }
    free(r);
}
