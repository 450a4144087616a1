/*
 * http_source - a generic JSON poller: GETs one URL, or one URL per item of
 * a list (url is a template: {item}, {api.key}), every poll.interval.ms, and
 * emits the JSON documents (or the elements of an array inside them) as
 * records.
 *
 * Record: value = the JSON bytes, key = the item or a value read by a path
 * (or none), timestamp = a value read by a path (or the time of the
 * response), source position = (the URL with the key masked, offset). The
 * offset of a response is its largest record timestamp with timestamp.path,
 * else the time it was received (epoch ms); it is carried by the response's
 * last record, the records before it carry the previous delivered
 * response's, so the committed offset only reaches a response once all of
 * it is delivered (as velib_source does with snapshots).
 *
 * Scheduling, per URL: after a good response the URL is polled again
 * poll.interval.ms after the previous poll started; after a failure, after
 * the backoff (exponential with jitter) or the server's Retry-After. URLs
 * that are due at the same time are fetched concurrently (lib/httpc's multi
 * interface), so a slow or failing URL never holds up the others. While any
 * URL is failing, poll() returns SPOKE_RETRY with the latest reason (the
 * connector's status trace); the others keep emitting.
 *
 * mode stream: one long GET per URL instead, whose endless NDJSON body is
 * read line by line as it arrives (see "Streaming" below); a stream that
 * ends, drops or falls silent reconnects on the same backoff, and is
 * "failing" (SPOKE_RETRY, the reason in the trace) until it flows again.
 * A record's offset is the arrival time of its line: a live stream cannot
 * be replayed, so the offset only says how far delivery got.
 *
 * The secret api.key never appears in logs, traces or source positions:
 * every URL is shown with the key replaced by ***, and every message is
 * scrubbed of the key (as given and URL-encoded) before it leaves.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_source.h"
#include "httpc.h"
#include "problems.h"

#define HS_USER_AGENT "spoke-http_source/0.1.0"
#define HS_MASK "***"
/* Longest a poll() call blocks while requests are in flight. */
#define HS_SLICE_MS 200
/* Longest URL quoted in a message, so the reason after it still fits. */
#define HS_URL_SHOWN 100

static const char *const hs_modes[] = { "poll", "stream", NULL };
static const char *const hs_formats[] = { "json", "ndjson", NULL };
static const char *const hs_units[] = { "s", "ms", NULL };

static const struct spoke_config_field hs_config[] = {
    { .name = "url", .type = SPOKE_CFG_STRING, .flags = SPOKE_CFG_REQUIRED,
      .doc = "URL to poll (http or https only); {item} is replaced by each entry of items "
             "(URL-encoded), {api.key} by api.key", .min = 1, .max = 4096 },
    { .name = "items", .type = SPOKE_CFG_LIST,
      .doc = "Values of {item} in url, one URL each, e.g. [Paris, Lyon]; empty: url as is",
      .min = 0, .max = 1000 },
    { .name = "api.key", .type = SPOKE_CFG_PASSWORD,
      .doc = "Secret for {api.key} in url and headers, e.g. ${env:OWM_API_KEY}; never logged, "
             "shown as ***", .min = 0, .max = 4096 },
    { .name = "headers", .type = SPOKE_CFG_LIST,
      .doc = "Extra request headers, each 'Name: value' ({api.key} is replaced in values)",
      .min = 0, .max = 64 },
    { .name = "mode", .type = SPOKE_CFG_STRING, .default_value = "poll",
      .doc = "poll: GET each URL every poll.interval.ms; stream: one long GET per URL whose "
             "body is an endless NDJSON feed, each line emitted as soon as it arrives, "
             "reconnecting (with the backoff) when the response ends, drops or stays silent",
      .allowed = hs_modes },
    { .name = "poll.interval.ms", .type = SPOKE_CFG_LONG, .default_value = "60000",
      .doc = "Time (ms) from one poll of a URL to the next", .min = 100, .max = 86400000 },
    { .name = "format", .type = SPOKE_CFG_STRING,
      .doc = "json: the body is one JSON document; ndjson: each non-blank line is one; unset: "
             "json, or ndjson with mode stream (which reads only ndjson)",
      .allowed = hs_formats },
    { .name = "records.path", .type = SPOKE_CFG_STRING,
      .doc = "Path to an array in each document whose elements are the records, e.g. list; "
             "unset: the document is the record", .min = 1, .max = 256 },
    { .name = "key", .type = SPOKE_CFG_STRING, .default_value = "item",
      .doc = "Record key: item (the URL's item; none without items), none, or a path into the "
             "record, e.g. name or sys.id (.item: a field named item)", .min = 1, .max = 256 },
    { .name = "timestamp.path", .type = SPOKE_CFG_STRING,
      .doc = "Path to a number in the record (epoch, in timestamp.unit) that becomes the "
             "record timestamp; unset: the time of the response", .min = 1, .max = 256 },
    { .name = "timestamp.unit", .type = SPOKE_CFG_STRING, .default_value = "s",
      .doc = "Unit of the timestamp.path value: s or ms", .allowed = hs_units },
    { .name = "emit.unchanged", .type = SPOKE_CFG_BOOL, .default_value = "false",
      .doc = "false: a response identical to the previous one of the same URL (or a 304) "
             "emits nothing; true: every response is emitted" },
    { .name = "max.parallel.requests", .type = SPOKE_CFG_INT, .default_value = "4",
      .doc = "Most requests in flight at once (URLs due together are fetched concurrently); "
             "mode stream holds one open per URL, so it needs at least one per URL",
      .min = 1, .max = 64 },
    { .name = "stream.idle.timeout.ms", .type = SPOKE_CFG_LONG, .default_value = "90000",
      .doc = "mode stream: reconnect when no byte (not even a keep-alive newline) arrived for "
             "this long", .min = 100, .max = 86400000 },
    { .name = "max.line.bytes", .type = SPOKE_CFG_INT, .default_value = "1048576",
      .doc = "mode stream: longest line, without its line ending; a longer one takes the error "
             "path and the stream goes on after its newline", .min = 16, .max = 67108864 },
    HTTPC_CONFIG_FIELDS(HS_USER_AGENT),
    { 0 }
};

struct hs_state;

/* One URL. */
struct hs_target {
    struct hs_state *st;    /* for the stream callbacks */
    char *url;              /* what is fetched: may hold the key */
    char *shown;            /* url with the key masked: messages, partition */
    const char *item;       /* host-owned; NULL without items */
    struct httpc *http;
    int64_t due;            /* monotonic ms of the next fetch */
    int64_t started;        /* monotonic ms the fetch in flight (or the last) began */
    int inflight;           /* started, outcome not handled yet */
    unsigned failures;      /* in a row */
    int64_t failed_at;      /* monotonic ms of the last failure */
    int64_t wait_ms;        /* the wait it announced */
    char err[SPOKE_ERRSTR_SIZE];  /* the last failure's reason, while failing */
    int have_digest;
    uint64_t digest;        /* of the last body emitted */
    int64_t delivered;      /* offset of the last response emitted (or committed) */
    int resume;             /* the first body may be the one committed before a restart */

    /* mode stream: the connection in flight, or the last one */
    struct hs_lines *lines; /* the line being received */
    unsigned connections;   /* connections started */
    int connected;          /* it answered 200: the stream is flowing */
    uint64_t conn_lines;    /* lines it delivered (blank ones aside) */
    int64_t wire_counted;   /* its bytes already in bytes_downloaded */
    int idle_aborted;       /* given up for silence */
    int64_t listen_from;    /* silence counts from here at the earliest */
    int64_t last_off;       /* offset of the last line: its arrival, never decreasing */
};

struct hs_state {
    const struct spoke_host_api *api;
    struct spoke_instance *inst;
    int httpc_inited;

    /* config (host-owned strings) */
    const char *key;        /* api.key; NULL when unset or empty */
    char *key_escaped;      /* as it appears in a URL */
    int64_t poll_ms;
    int emit_unchanged;
    long max_parallel;
    struct httpc_opts hopts;
    struct hs_path *records_path, *key_path, *ts_path;
    struct hs_body_opts bo;
    char **headers;         /* with the key substituted */
    size_t nheaders;

    struct hs_target *t;
    size_t nt;
    struct httpc_multi *multi;
    struct hs_body *body;
    struct hs_batch batch;
    uint64_t rng;
    int stopping;
    int in_stream_poll;     /* inside stream_poll: the host takes poll_data_at */

    /* mode stream */
    int stream;
    int64_t idle_ms;        /* stream.idle.timeout.ms */
    size_t max_line;        /* max.line.bytes */
    size_t emitted;         /* records (and error records) handed over in this poll() */
    int64_t poll_end;       /* monotonic ms the last poll() returned */
    int fail_rc;            /* a line could not be handed over: the connector fails */
    char fail_reason[SPOKE_ERRSTR_SIZE];
};

/* ------------------------------------------------------------------------ */
/* Secrets                                                                   */
/* ------------------------------------------------------------------------ */

/* Replaces every occurrence of secret in s (NUL-terminated, in a buffer of
 * size bytes) with ***, cutting the tail if it no longer fits. */
static void mask_in(char *s, size_t size, const char *secret)
{
    size_t n = secret ? strlen(secret) : 0, len = strlen(s);
    char *p = s;
    if (!n)
        return;
    while ((p = strstr(p, secret))) {
        size_t at = (size_t)(p - s), rest = len - at - n;
        if (at + 3 >= size) {
            *p = '\0';
            return;
        }
        if (at + 3 + rest >= size)
            rest = size - 1 - at - 3;
        memmove(p + 3, p + n, rest);
        memcpy(p, HS_MASK, 3);
        p[3 + rest] = '\0';
        len = at + 3 + rest;
        p += 3;
    }
}

/* The key as given and as it appears in a URL (either may be NULL) masked
 * in s. */
static void scrub_key(const char *key, const char *key_escaped, char *s, size_t size)
{
    mask_in(s, size, key);
    mask_in(s, size, key_escaped);
}

/* Every message that leaves the plugin goes through here. */
static void scrub(const struct hs_state *st, char *s, size_t size)
{
    scrub_key(st->key, st->key_escaped, s, size);
}

/* ------------------------------------------------------------------------ */
/* Templates                                                                 */
/* ------------------------------------------------------------------------ */

enum { PH_NONE, PH_ITEM, PH_KEY };

static int placeholder(const char *p, size_t *len)
{
    if (strncmp(p, "{item}", 6) == 0) {
        *len = 6;
        return PH_ITEM;
    }
    if (strncmp(p, "{api.key}", 9) == 0) {
        *len = 9;
        return PH_KEY;
    }
    return PH_NONE;
}

/* tmpl with {item} -> item and {api.key} -> key where those are not NULL
 * (a placeholder without a value stays as it is). Writes to out when it is
 * not NULL; returns the length. */
static size_t subst(const char *tmpl, const char *item, const char *key, char *out)
{
    size_t n = 0, plen;
    for (const char *p = tmpl; *p;) {
        int ph = *p == '{' ? placeholder(p, &plen) : PH_NONE;
        const char *v = ph == PH_ITEM ? item : ph == PH_KEY ? key : NULL;
        if (v) {
            size_t k = strlen(v);
            if (out)
                memcpy(out + n, v, k);
            n += k;
            p += plen;
        } else {
            if (out)
                out[n] = *p;
            n++;
            p++;
        }
    }
    if (out)
        out[n] = '\0';
    return n;
}

static char *expand(const char *tmpl, const char *item, const char *key)
{
    char *s = malloc(subst(tmpl, item, key, NULL) + 1);
    if (s)
        subst(tmpl, item, key, s);
    return s;
}

/* Whether s holds placeholder ph. */
static int has_placeholder(const char *s, int ph)
{
    size_t plen;
    for (const char *p = strchr(s, '{'); p; p = strchr(p + 1, '{'))
        if (placeholder(p, &plen) == ph)
            return 1;
    return 0;
}

/* Checks the url template against items and api.key (has_secret: set and
 * not empty). 0, or -1 with errstr set and *key the key at fault. */
static int check_url_template(const char *url, size_t nitems, int has_secret, const char **key,
                              char *errstr, size_t errstr_size)
{
    size_t plen;
    for (const char *p = strchr(url, '{'); p; p = strchr(p + 1, '{'))
        if (placeholder(p, &plen) == PH_NONE) {
            *key = "url";
            snprintf(errstr, errstr_size, "url: unknown placeholder at '%.20s' (only {item} and "
                     "{api.key}; write a literal brace as %%7B)", p);
            return -1;
        }
    int has_item = has_placeholder(url, PH_ITEM);
    if (has_item && !nitems) {
        *key = "url";
        snprintf(errstr, errstr_size, "url uses {item} but items is empty");
        return -1;
    }
    if (nitems && !has_item) {
        *key = "items";
        snprintf(errstr, errstr_size, "items has %zu entries but url has no {item}: every one "
                 "would poll the same URL", nitems);
        return -1;
    }
    if (!has_secret && has_placeholder(url, PH_KEY)) {
        *key = "url";
        snprintf(errstr, errstr_size, "url uses {api.key} but api.key is not set");
        return -1;
    }
    return 0;
}

/* A header line "Name: value": a token, a colon, no control characters;
 * {api.key} only with an api.key (has_secret). 0, or -1 with errstr set. */
static int check_header(const char *h, int has_secret, char *errstr, size_t errstr_size)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    const char *p = h;
    while (*p && (((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z') || (*p >= '0' && *p <= '9') ||
                  strchr(tchar, *p)))
        p++;
    if (p == h || *p != ':') {
        snprintf(errstr, errstr_size, "headers: '%.60s' is not 'Name: value'", h);
        return -1;
    }
    for (; *p; p++)
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f) {
            snprintf(errstr, errstr_size, "headers: '%.60s' holds a control character (0x%02x at "
                     "byte %zu)", h, (unsigned)(unsigned char)*p, (size_t)(p - h));
            return -1;
        }
    if (!has_secret && has_placeholder(h, PH_KEY)) {
        snprintf(errstr, errstr_size, "headers use {api.key} but api.key is not set");
        return -1;
    }
    return 0;
}

/* The URL of one item (NULL without items), as fetched (the key escaped in
 * it; NULL: {api.key} left as is) and as shown (the key masked). 0 with two
 * new strings (free()), or -1 on out-of-memory with both NULL. */
static int item_urls(const char *url, const char *item, const char *key_escaped, char **fetched,
                     char **shown)
{
    char *esc = NULL;
    *fetched = *shown = NULL;
    if (item && !(esc = httpc_escape(item)))
        return -1;
    *fetched = expand(url, esc, key_escaped);
    *shown = expand(url, esc, HS_MASK);
    free(esc);
    if (!*fetched || !*shown) {
        free(*fetched);
        free(*shown);
        *fetched = *shown = NULL;
        return -1;
    }
    return 0;
}

/* The headers with the key substituted (hs_check accepted them). */
static int setup_headers(struct hs_state *st, const char *const *hdrs, size_t n, char *errstr,
                         size_t errstr_size)
{
    if (!n)
        return SPOKE_OK;
    if (!(st->headers = calloc(n, sizeof(*st->headers))))
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        if (!(st->headers[i] = expand(hdrs[i], NULL, st->key)))
            goto nomem;
        st->nheaders++;
    }
    return SPOKE_OK;
nomem:
    snprintf(errstr, errstr_size, "out of memory");
    return SPOKE_ERR_NOMEM;
}

static int stream_rx(void *ud, const char *p, size_t n);

/* One target per item (or one for url as is; hs_check accepted them). */
static int setup_targets(struct hs_state *st, const char *url, const char *const *items,
                         size_t nitems, char *errstr, size_t errstr_size)
{
    size_t n = nitems ? nitems : 1;
    if (!(st->t = calloc(n, sizeof(*st->t))))
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        struct hs_target *t = &st->t[i];
        t->item = nitems ? items[i] : NULL;
        if (item_urls(url, t->item, st->key_escaped, &t->url, &t->shown) != 0)
            goto nomem;
        st->nt++;
        t->st = st;
        if (!(t->http = httpc_new(t->url, t->shown, &st->hopts,
                                  (const char *const *)st->headers, st->nheaders, NULL, errstr,
                                  errstr_size)))
            return SPOKE_ERR;
        if (st->stream) {
            if (!(t->lines = hs_lines_new(st->max_line)))
                goto nomem;
            if (httpc_stream(t->http, stream_rx, t, errstr, errstr_size) != 0)
                return SPOKE_ERR;
        }
    }
    return SPOKE_OK;
nomem:
    snprintf(errstr, errstr_size, "out of memory");
    return SPOKE_ERR_NOMEM;
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                 */
/* ------------------------------------------------------------------------ */

static void hs_destroy(void *vst);

/* api.key, or NULL when unset or empty. */
static const char *config_secret(const struct spoke_host_api *api,
                                 const struct spoke_config *cfg)
{
    const char *s = api->config_string(cfg, "api.key");
    return s && *s ? s : NULL;
}

/* What the key value asks for (NULL: the default, item). */
static enum hs_key key_mode(const char *key)
{
    if (!key || strcmp(key, "item") == 0)
        return HS_KEY_ITEM;
    return strcmp(key, "none") == 0 ? HS_KEY_NONE : HS_KEY_PATH;
}

/* mode stream. */
static int is_stream(const struct spoke_host_api *api, const struct spoke_config *cfg)
{
    const char *mode = api->config_string(cfg, "mode");
    return mode && strcmp(mode, "stream") == 0;
}

/* 0 when the value of path key `key` is unset or a path, else -1 with
 * errstr set. */
static int check_path(const char *key, const char *v, char *errstr, size_t errstr_size)
{
    struct hs_path *p;
    if (!v || !*v)
        return 0;
    if (!(p = hs_path_new(key, v, errstr, errstr_size)))
        return -1;
    hs_path_free(p);
    return 0;
}

/*
 * The rules the config table cannot say, from the values alone: backoff
 * bounds, the paths' syntax, api.key without control characters, the url
 * template against items and api.key, headers, mode stream's format and
 * connections, items given once, every URL an absolute http(s) one. The
 * host runs it before the connector runs (spoke validate, load and reload,
 * REST), with no instance; hs_init runs it too, so the rules live here
 * only. No side effects: nothing read but cfg, nothing kept. Every message is scrubbed of api.key. SPOKE_OK, or
 * SPOKE_ERR_INVALID with errstr set and *key the key at fault (a literal),
 * or SPOKE_ERR_NOMEM (*key NULL).
 */
/* One problem of hs_rules, with the key masked in its message. */
static void key_problem(struct problems *pb, const char *key, char *msg, size_t size,
                        const char *secret, const char *secret_esc)
{
    scrub_key(secret, secret_esc, msg, size);
    problem(pb, key, "%s", msg);
}

/* The rules between keys, every problem in pb: SPOKE_OK, or
 * SPOKE_ERR_NOMEM. */
static int hs_rules(const struct spoke_host_api *api, const struct spoke_config *cfg,
                    struct problems *pb)
{
    static const char *const path_keys[] = { "records.path", "timestamp.path", NULL };
    const char *const *items = NULL, *const *hdrs = NULL;
    const char *url = api->config_string(cfg, "url");
    size_t nitems = api->config_list(cfg, "items", &items);
    size_t nhdrs = api->config_list(cfg, "headers", &hdrs);
    const char *secret = config_secret(api, cfg), *rkey = api->config_string(cfg, "key");
    char *secret_esc = NULL, *fetched, *shown;
    struct httpc_opts o;
    char msg[SPOKE_ERRSTR_SIZE];
    const char *at;

    assert(url);  /* required: the host validated the table first */
    problems_init(pb);
    /* Every message is masked (the key may be quoted), and a control
     * character quoted in one is the host's to fold: it prints every check
     * reason and log line as one line of text. */
#define KEY_PROBLEM(k) key_problem(pb, (k), msg, sizeof(msg), secret, secret_esc)
    if (secret) {
        /* It goes into URLs and header values as it is. */
        for (const char *p = secret; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                snprintf(msg, sizeof(msg), "api.key holds a control character");
                KEY_PROBLEM("api.key");
                break;
            }
        if (!(secret_esc = httpc_escape(secret)))
            goto nomem;
    }
    httpc_opts_read(api, cfg, &o);
    size_t before = problems_count(pb);
    httpc_opts_check(&o, pb);
    for (size_t i = before; i < problems_count(pb) && i < PROBLEMS_MAX; i++)
        scrub_key(secret, secret_esc, pb->msg[i], sizeof(pb->msg[i]));
    for (size_t i = 0; path_keys[i]; i++)
        if (check_path(path_keys[i], api->config_string(cfg, path_keys[i]), msg,
                       sizeof(msg)) != 0)
            KEY_PROBLEM(path_keys[i]);
    if (key_mode(rkey) == HS_KEY_PATH && check_path("key", rkey, msg, sizeof(msg)) != 0)
        KEY_PROBLEM("key");
    /* The URLs are built from the template only once it is right. */
    int template_ok = check_url_template(url, nitems, secret != NULL, &at, msg, sizeof(msg)) == 0;
    if (!template_ok)
        KEY_PROBLEM(at);
    for (size_t i = 0; i < nhdrs; i++)
        if (check_header(hdrs[i], secret != NULL, msg, sizeof(msg)) != 0)
            KEY_PROBLEM("headers");
    if (is_stream(api, cfg)) {
        const char *fmt = api->config_string(cfg, "format");
        int64_t par = api->config_int(cfg, "max.parallel.requests");
        size_t nurls = nitems ? nitems : 1;
        if (fmt && strcmp(fmt, "ndjson") != 0) {
            snprintf(msg, sizeof(msg), "format %.20s reads a response as one document; mode "
                     "stream reads a feed of NDJSON lines: set format: ndjson, or leave it unset",
                     fmt);
            KEY_PROBLEM("format");
        }
        if ((int64_t)nurls > par) {
            snprintf(msg, sizeof(msg), "mode stream keeps one connection per URL open: %zu URLs "
                     "need max.parallel.requests of at least %zu (it is %" PRId64 ")", nurls,
                     nurls, par);
            KEY_PROBLEM("max.parallel.requests");
        }
    }
    /* Each item listed more than once; the first URL refused (the others
     * most likely for the same reason). */
    int url_ok = 1;
    for (size_t i = 0; i < (nitems ? nitems : 1); i++) {
        const char *item = nitems ? items[i] : NULL;
        size_t earlier = 0;
        for (size_t j = 0; j < i; j++)
            earlier += strcmp(items[j], item) == 0;
        if (earlier == 1) {  /* its second time: said once */
            snprintf(msg, sizeof(msg), "items: '%.100s' appears twice", item);
            KEY_PROBLEM("items");
        }
        if (!template_ok || !url_ok)
            continue;
        if (item_urls(url, item, secret_esc, &fetched, &shown) != 0)
            goto nomem;
        url_ok = httpc_url_check("url", fetched, shown, msg, sizeof(msg)) == 0;
        free(fetched);
        free(shown);
        if (!url_ok)
            KEY_PROBLEM("url");
    }
#undef KEY_PROBLEM
    free(secret_esc);
    return SPOKE_OK;
nomem:
    free(secret_esc);
    return SPOKE_ERR_NOMEM;
}

static int hs_check(const struct spoke_host_api *api, const struct spoke_config *cfg,
                    const char **key, char *errstr, size_t errstr_size)
{
    struct problems pb;  /* each at its key, through check_problem */
    return problems_finish(hs_rules(api, cfg, &pb), &pb, api, cfg, 1, key, errstr, errstr_size);
}

/* An optional path key: NULL when unset. */
static int opt_path(const struct spoke_host_api *api, const struct spoke_config *cfg,
                    const char *key, struct hs_path **out, char *errstr, size_t errstr_size)
{
    const char *v = api->config_string(cfg, key);
    *out = NULL;
    if (!v || !*v)
        return SPOKE_OK;
    return (*out = hs_path_new(key, v, errstr, errstr_size)) ? SPOKE_OK : SPOKE_ERR_INVALID;
}

static int hs_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                   const struct spoke_config *cfg, void **out, char *errstr, size_t errstr_size)
{
    struct hs_state *st;
    const char *const *items = NULL, *const *hdrs = NULL;
    const char *bad_key;  /* the host ran hs_check already; init keeps the rules for itself */
    struct problems pb;   /* joined: check_problem is for check() alone */
    int rc, uses_key;

    if ((rc = problems_finish(hs_rules(api, cfg, &pb), &pb, api, cfg, 0, &bad_key, errstr,
                              errstr_size)) != SPOKE_OK)
        return rc;
    if (!(st = calloc(1, sizeof(*st)))) {
        snprintf(errstr, errstr_size, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    st->api = api;
    st->inst = inst;
    st->rng = httpc_rng_seed(st);
    const char *url = api->config_string(cfg, "url");
    size_t nitems = api->config_list(cfg, "items", &items);
    size_t nhdrs = api->config_list(cfg, "headers", &hdrs);
    st->key = config_secret(api, cfg);
    st->poll_ms = api->config_int(cfg, "poll.interval.ms");
    st->emit_unchanged = api->config_bool(cfg, "emit.unchanged");
    st->max_parallel = (long)api->config_int(cfg, "max.parallel.requests");
    const char *fmt = api->config_string(cfg, "format");
    st->stream = is_stream(api, cfg);
    st->idle_ms = api->config_int(cfg, "stream.idle.timeout.ms");
    st->max_line = (size_t)api->config_int(cfg, "max.line.bytes");
    st->bo.format = st->stream || (fmt && strcmp(fmt, "ndjson") == 0) ? HS_FORMAT_NDJSON
                                                                         : HS_FORMAT_JSON;
    if (st->stream && !SPOKE_API_HAS(api, emit_error)) {
        snprintf(errstr, errstr_size, "mode stream needs a newer host (emit_error)");
        rc = SPOKE_ERR_INVALID;
        goto fail;
    }
    const char *unit = api->config_string(cfg, "timestamp.unit");
    st->bo.ts_ms = unit && strcmp(unit, "ms") == 0;
    const char *key = api->config_string(cfg, "key");

    httpc_opts_read(api, cfg, &st->hopts);
    if ((rc = httpc_opts_open(&st->hopts, errstr, errstr_size) ? SPOKE_ERR : SPOKE_OK) ||
        (rc = opt_path(api, cfg, "records.path", &st->records_path, errstr, errstr_size)) ||
        (rc = opt_path(api, cfg, "timestamp.path", &st->ts_path, errstr, errstr_size)))
        goto fail;
    st->bo.key = key_mode(key);
    if (st->bo.key == HS_KEY_PATH && !(st->key_path = hs_path_new("key", key, errstr,
                                                                   errstr_size))) {
        rc = SPOKE_ERR_INVALID;
        goto fail;
    }
    st->bo.records = st->records_path;
    st->bo.key_path = st->key_path;
    st->bo.ts_path = st->ts_path;

    if (st->key && !(st->key_escaped = httpc_escape(st->key))) {
        rc = SPOKE_ERR_NOMEM;
        goto nomem;
    }
    if ((rc = setup_headers(st, hdrs, nhdrs, errstr, errstr_size)) != SPOKE_OK)
        goto fail;
    uses_key = has_placeholder(url, PH_KEY);
    for (size_t i = 0; i < nhdrs; i++)
        uses_key |= has_placeholder(hdrs[i], PH_KEY);
    if (st->key && !uses_key)
        api->log(inst, SPOKE_LOG_WARN, "api.key is set but neither url nor headers use "
                 "{api.key}: it is not sent");

    if (httpc_global_init(errstr, errstr_size) != 0) {
        rc = SPOKE_ERR;
        goto fail;
    }
    st->httpc_inited = 1;
    if ((rc = setup_targets(st, url, items, nitems, errstr, errstr_size)) != SPOKE_OK)
        goto fail;
    if (!(st->multi = httpc_multi_new()) ||
        !(st->body = hs_body_new(&st->bo, st->stream ? st->max_line
                                                     : (size_t)st->hopts.max_body))) {
        rc = SPOKE_ERR_NOMEM;
        goto nomem;
    }
    *out = st;
    return SPOKE_OK;

nomem:
    snprintf(errstr, errstr_size, "out of memory");
fail:
    scrub(st, errstr, errstr_size);
    hs_destroy(st);
    return rc;
}

/* Epoch ms as UTC text, e.g. 2024-11-19T07:35:04.123Z. */
static const char *utc_text(int64_t ms, char *buf, size_t size)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm))
        snprintf(buf, size, "%" PRId64 " ms", ms);
    else
        snprintf(buf + strlen(buf), size - strlen(buf), ".%03dZ", (int)(ms % 1000));
    return buf;
}

/* mode stream: what a start makes of the committed offsets. A live stream
 * cannot be replayed: the offset is the arrival time of the last line
 * delivered, kept so that offsets keep growing, and said in the log. */
static void stream_start(struct hs_state *st)
{
    const struct spoke_host_api *api = st->api;
    int64_t off;
    char when[40];

    for (size_t i = 0; i < st->nt; i++) {
        struct hs_target *t = &st->t[i];
        if (api->offset_get(st->inst, t->shown, &off) != SPOKE_OK)
            continue;
        t->last_off = off;
        api->log(st->inst, SPOKE_LOG_INFO, "%s: the last line delivered before this start "
                 "arrived at %s; a live stream cannot be replayed: what the server sent since "
                 "is not recovered", t->shown, utc_text(off, when, sizeof(when)));
    }
    api->log(st->inst, SPOKE_LOG_INFO, "streaming %s%s (reconnecting after %" PRId64 " ms "
             "without a byte)", st->t[0].shown, st->nt > 1 ? " and the other items" : "",
             st->idle_ms);
}

static int hs_start(void *vst, char *errstr, size_t errstr_size)
{
    struct hs_state *st = vst;
    const struct spoke_host_api *api = st->api;
    static const char *const metrics[] = {
        "requests", "responses", "records_emitted", "not_modified", "unchanged", "errors",
        "bytes_downloaded", "urls_failing", NULL
    };
    static const char *const stream_metrics[] = {
        "requests", "records_emitted", "errors", "bytes_downloaded", "urls_failing", "lines",
        "blank_lines", "invalid_lines", "partial_lines", "reconnects", "idle_timeouts", NULL
    };
    int64_t now = httpc_mono_ms(), off;

    for (const char *const *m = st->stream ? stream_metrics : metrics; *m; m++)
        api->metric_set(st->inst, *m, 0);
    api->metric_set(st->inst, "urls", (int64_t)st->nt);
    for (size_t i = 0; i < st->nt; i++)
        st->t[i].due = now;
    if (st->stream) {
        stream_start(st);
        return SPOKE_OK;
    }
    for (size_t i = 0; i < st->nt; i++) {
        struct hs_target *t = &st->t[i];
        if (api->offset_get(st->inst, t->shown, &off) == SPOKE_OK) {
            t->delivered = off;
            /* Only a timestamp tells the same data apart across a restart. */
            t->resume = st->ts_path && !st->emit_unchanged;
        }
    }
    api->log(st->inst, SPOKE_LOG_INFO, "polling %s%s every %" PRId64 " ms", st->t[0].shown,
             st->nt > 1 ? " and the other items" : "", st->poll_ms);
    if (st->nt > 1)
        api->log(st->inst, SPOKE_LOG_INFO, "%zu URLs, one per item, at most %ld at once",
                 st->nt, st->max_parallel);
    return SPOKE_OK;
}

static void hs_stop(void *vst)
{
    struct hs_state *st = vst;
    st->stopping = 1;
}

static void hs_destroy(void *vst)
{
    struct hs_state *st = vst;
    if (!st)
        return;
    httpc_multi_free(st->multi);
    for (size_t i = 0; i < st->nt; i++) {
        httpc_free(st->t[i].http);
        hs_lines_free(st->t[i].lines);
        free(st->t[i].url);
        free(st->t[i].shown);
    }
    free(st->t);
    for (size_t i = 0; i < st->nheaders; i++)
        free(st->headers[i]);
    free(st->headers);
    hs_body_free(st->body);
    hs_batch_free(&st->batch);
    hs_path_free(st->records_path);
    hs_path_free(st->key_path);
    hs_path_free(st->ts_path);
    free(st->key_escaped);
    httpc_opts_close(&st->hopts);
    if (st->httpc_inited)
        httpc_global_cleanup();
    free(st);
}

/* ------------------------------------------------------------------------ */
/* Polling                                                                   */
/* ------------------------------------------------------------------------ */

/* A digest of a body, to tell a response identical to the previous one:
 * eight bytes per step, each folded in by a multiply and a shift. Not a
 * defence against a server crafting collisions: the server owns its data
 * anyway. */
static uint64_t body_digest(const char *p, size_t n)
{
    uint64_t acc = 0x6a09e667f3bcc909ull ^ (n * 0x9e3779b97f4a7c15ull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        acc = ((acc ^ w) * 0xd6e8feb86659fd93ull);
        acc ^= acc >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t tail = 0;
    memcpy(&tail, p, n);
    acc = (acc ^ tail) * 0xd6e8feb86659fd93ull;
    return acc ^ (acc >> 29);
}

/* A failed fetch or body: logged, the URL backs off. */
static void target_failed(struct hs_state *st, struct hs_target *t, const char *reason,
                          int64_t retry_after_ms, int64_t now)
{
    t->failures++;
    st->api->metric_add(st->inst, "errors", 1);
    /* The response came before now: a Retry-After counted from now is not
     * early. */
    int64_t wait = httpc_retry_wait(&st->hopts, t->failures, &st->rng, retry_after_ms, 0);
    t->due = now + wait;
    t->failed_at = now;
    t->wait_ms = wait;
    snprintf(t->err, sizeof(t->err), "%s", reason);
    scrub(st, t->err, sizeof(t->err));
    char wt[32];
    st->api->log(st->inst, SPOKE_LOG_WARN, "poll failed (%u in a row): %s; next attempt in %s",
                 t->failures, t->err, httpc_wait_text(wait, wt, sizeof(wt)));
}

static void target_ok(struct hs_state *st, struct hs_target *t)
{
    if (t->failures)
        st->api->log(st->inst, SPOKE_LOG_INFO, "%s: poll succeeded after %u failures",
                     t->shown, t->failures);
    t->failures = 0;
    t->err[0] = '\0';
    t->due = t->started + st->poll_ms;
}

/* Emits the batch parsed from body: the last record at offset off, the
 * others at off_before. Returns SPOKE_OK (all emitted, or the host is
 * stopping: st->stopping) or an error with reason set. */
static int emit_batch(struct hs_state *st, struct hs_target *t, const char *body, int64_t off,
                      int64_t off_before, char *reason, size_t reason_size)
{
    const struct spoke_host_api *api = st->api;
    const struct hs_batch *b = &st->batch;
    for (size_t i = 0; i < b->n; i++) {
        const struct hs_rec *r = &b->recs[i];
        const char *v = r->vin_body ? body + r->voff : b->arena + r->voff;
        struct spoke_record *rec = api->record_new(st->inst, NULL,
                                                   r->has_key ? b->arena + r->koff : NULL,
                                                   r->klen, v, r->vlen);
        if (!rec) {
            snprintf(reason, reason_size, "out of memory creating a record");
            return SPOKE_ERR_NOMEM;
        }
        int rc = api->record_set_position(rec, t->shown, i + 1 == b->n ? off : off_before);
        if (rc != SPOKE_OK) {
            api->record_free(rec);
            snprintf(reason, reason_size, "cannot build a record: %s", api->strerror(rc));
            return rc;
        }
        if (st->ts_path)
            api->record_set_timestamp(rec, r->ts_ms);
        rc = api->emit(st->inst, rec);  /* takes rec, whatever it returns */
        if (rc == SPOKE_ERR_STOPPED) {
            st->stopping = 1;
            return SPOKE_OK;
        }
        if (rc != SPOKE_OK) {
            snprintf(reason, reason_size, "emit failed: %s", api->strerror(rc));
            return rc;
        }
        api->metric_add(st->inst, "records_emitted", 1);
    }
    return SPOKE_OK;
}

/* What t's fetch, which ended by now, leads to. */
static void target_outcome(struct hs_state *st, struct hs_target *t, int64_t now)
{
    const struct spoke_host_api *api = st->api;
    struct httpc_info fi;
    const char *err;
    char reason[SPOKE_ERRSTR_SIZE], why[SPOKE_ERRSTR_SIZE];
    size_t len;

    enum httpc_result r = httpc_outcome(t->http, &fi, &err);
    api->metric_add(st->inst, "requests", 1);
    if (fi.wire_bytes > 0)
        api->metric_add(st->inst, "bytes_downloaded", fi.wire_bytes);
    if (r == HTTPC_FAILED) {
        target_failed(st, t, err, fi.retry_after_ms, now);
        return;
    }
    if (r == HTTPC_NOT_MODIFIED) {
        api->metric_add(st->inst, "not_modified", 1);
        target_ok(st, t);
        return;
    }

    const char *body = httpc_body(t->http, &len);
    uint64_t digest = body_digest(body ? body : "", len);
    if (!st->emit_unchanged && t->have_digest && digest == t->digest) {
        api->metric_add(st->inst, "unchanged", 1);
        httpc_accept(t->http);
        target_ok(st, t);
        return;
    }
    if (hs_body_parse(st->body, body, len, t->item, &st->batch, why, sizeof(why)) != 0) {
        snprintf(reason, sizeof(reason), "bad response from %.*s: %.130s", HS_URL_SHOWN, t->shown,
                 why);
        target_failed(st, t, reason, -1, now);
        return;
    }
    int64_t off = st->batch.max_ts_ms >= 0 ? st->batch.max_ts_ms : api->wall_ms();
    if (t->resume) {
        t->resume = 0;
        if (st->batch.n && off == t->delivered) {
            api->log(st->inst, SPOKE_LOG_INFO, "resuming: %s: the response of timestamp "
                     "%" PRId64 " was delivered before the restart; not emitted again",
                     t->shown, off);
            api->metric_add(st->inst, "unchanged", 1);
            t->digest = digest;
            t->have_digest = 1;
            httpc_accept(t->http);
            target_ok(st, t);
            return;
        }
    }
    int rc = emit_batch(st, t, body, off, t->delivered, why, sizeof(why));
    if (st->stopping)
        return;
    if (rc != SPOKE_OK) {
        /* Some records may be out: the next good body is emitted whole again. */
        snprintf(reason, sizeof(reason), "%.*s: %.140s", HS_URL_SHOWN, t->shown, why);
        target_failed(st, t, reason, -1, now);
        return;
    }
    api->metric_add(st->inst, "responses", 1);
    t->digest = digest;
    t->have_digest = 1;
    if (st->batch.n)
        t->delivered = off;
    if (!st->emit_unchanged)
        httpc_accept(t->http);  /* validators only when a 304 can stand for "unchanged" */
    target_ok(st, t);
}

static void stream_begin(struct hs_state *st, struct hs_target *t);
static void stream_ended(struct hs_state *st, struct hs_target *t, int64_t now);

/* Starts the fetches that are due, as many as max.parallel.requests allows,
 * the longest overdue first: with more URLs due than slots, none starves. */
static void start_due(struct hs_state *st, int64_t now)
{
    while (httpc_multi_running(st->multi) < (size_t)st->max_parallel) {
        struct hs_target *next = NULL;
        for (size_t i = 0; i < st->nt; i++) {
            struct hs_target *t = &st->t[i];
            if (!t->inflight && t->due <= now && (!next || t->due < next->due))
                next = t;
        }
        if (!next)
            return;
        next->inflight = 1;
        next->started = now;
        if (st->stream)
            stream_begin(st, next);
        httpc_multi_start(st->multi, next->http);
    }
}

/* Handles every fetch that ended; returns how many. */
static size_t collect(struct hs_state *st)
{
    size_t n = 0;
    for (size_t i = 0; i < st->nt && !st->stopping; i++) {
        struct hs_target *t = &st->t[i];
        if (t->inflight && httpc_ended(t->http)) {
            t->inflight = 0;
            if (st->stream)
                stream_ended(st, t, httpc_mono_ms());
            else
                target_outcome(st, t, httpc_mono_ms());
            n++;
        }
    }
    return n;
}

/* The poll's answer: when to come back, and whether some URL is failing. */
static int report(struct hs_state *st, int64_t t0, int64_t *next_poll_ms, char *errstr,
                  size_t errstr_size)
{
    int64_t first = INT64_MAX;
    const struct hs_target *latest = NULL;
    size_t failing = 0;

    for (size_t i = 0; i < st->nt; i++) {
        const struct hs_target *t = &st->t[i];
        /* A fetch in flight needs poll() again at once to move on. */
        int64_t due = t->inflight ? t0 : t->due;
        if (due < first)
            first = due;
        /* A stream is failing while it is not flowing: between connections,
         * and while one is being made after a failure. */
        if (st->stream ? t->err[0] != '\0' : t->failures != 0) {
            failing++;
            if (!latest || t->failed_at >= latest->failed_at)
                latest = t;
        }
    }
    st->api->metric_set(st->inst, "urls_failing", (int64_t)failing);
    /* The host counts the wait from just before poll() began. */
    int64_t wait = first - t0;
    if (!failing) {
        *next_poll_ms = wait > 0 ? wait : 0;
        return SPOKE_OK;
    }
    /* The wait as announced when it failed (and logged), as velib_source
     * reports it. */
    char wt[48] = "reconnecting";
    if (!st->stream)
        snprintf(wt, sizeof(wt), "next attempt in ");
    else if (!latest->inflight)
        snprintf(wt, sizeof(wt), "reconnecting in ");
    if (!st->stream || !latest->inflight)
        httpc_wait_text(latest->wait_ms, wt + strlen(wt), sizeof(wt) - strlen(wt));
    if (st->nt > 1)
        snprintf(errstr, errstr_size, "%.180s; %s (%zu of %zu URLs failing)", latest->err, wt,
                 failing, st->nt);
    else
        snprintf(errstr, errstr_size, "%.200s; %s", latest->err, wt);
    /* 0 would let the host apply its own backoff to SPOKE_RETRY. */
    *next_poll_ms = wait > 0 ? wait : 1;
    return SPOKE_RETRY;
}

/* ------------------------------------------------------------------------ */
/* Streaming (mode stream)                                                   */
/* ------------------------------------------------------------------------ */

/*
 * One long GET per URL. Its body goes through lib/httpc piece by piece as
 * it arrives (stream_rx, called inside the multi calls of poll()), is cut
 * into lines (hs_lines, holding only the line in progress, at most
 * max.line.bytes), and every complete line is turned into records and
 * emitted at once; poll() returns as soon as a round of the transfers
 * emitted something, so the host hands the records on without waiting for
 * the slice to end. A line that is not valid JSON (or lacks its key or
 * timestamp) and a line over max.line.bytes take the connector's error
 * path (emit_error); the stream goes on. When the response ends, drops or
 * stays silent for stream.idle.timeout.ms, the URL reconnects after the
 * backoff (or the server's Retry-After); an unfinished last line is
 * dropped, never emitted half-read.
 */

/* The offset of a line arriving now: its arrival (epoch ms), never below
 * the previous line's, so offsets grow within the partition. */
static int64_t stream_offset(struct hs_target *t)
{
    int64_t off = t->st->api->wall_ms();
    if (off < t->last_off)
        off = t->last_off;
    t->last_off = off;
    return off;
}

/* A line cannot be handed over (out of memory, emit failed, or
 * errors.tolerance=none refused a bad line): poll() fails the connector. */
static int stream_fail(struct hs_state *st, int rc, const char *reason)
{
    if (!st->fail_rc) {
        st->fail_rc = rc < 0 ? rc : SPOKE_ERR;
        snprintf(st->fail_reason, sizeof(st->fail_reason), "%s", reason);
        scrub(st, st->fail_reason, sizeof(st->fail_reason));
    }
    return -1;
}

/* Line bytes p[0..n) take the connector's error path with reason. */
static int stream_bad_line(struct hs_target *t, const char *p, size_t n, const char *reason)
{
    struct hs_state *st = t->st;
    const struct spoke_host_api *api = st->api;
    char msg[SPOKE_ERRSTR_SIZE];
    int64_t off = stream_offset(t);

    api->metric_add(st->inst, "invalid_lines", 1);
    snprintf(msg, sizeof(msg), "%.*s, %s", HS_URL_SHOWN, t->shown, reason);
    scrub(st, msg, sizeof(msg));
    int with_item = st->bo.key == HS_KEY_ITEM && t->item;
    struct spoke_record *rec = api->record_new(st->inst, NULL, with_item ? t->item : NULL,
                                               with_item ? strlen(t->item) : 0, p, n);
    if (!rec)
        return stream_fail(st, SPOKE_ERR_NOMEM, "out of memory creating a record");
    int rc = api->record_set_position(rec, t->shown, off);
    if (rc != SPOKE_OK) {
        api->record_free(rec);
        return stream_fail(st, rc, "cannot build a record");
    }
    rc = api->emit_error(st->inst, rec, SPOKE_ERR_PARSE, msg);  /* takes rec */
    if (rc == SPOKE_ERR_STOPPED) {
        st->stopping = 1;
        return -1;
    }
    if (rc != SPOKE_OK)
        return stream_fail(st, rc, msg);  /* errors.tolerance=none: the connector fails */
    st->emitted++;
    return 0;
}

/* A line received (any but a blank one): one more for the connection; the
 * first one tells the backoff that this connection was worth it. */
static void stream_counted(struct hs_target *t)
{
    t->st->api->metric_add(t->st->inst, "lines", 1);
    if (!t->conn_lines++)
        t->failures = 0;
}

static int stream_line(void *ud, const char *p, size_t n, uint64_t lineno)
{
    struct hs_target *t = ud;
    struct hs_state *st = t->st;
    char why[SPOKE_ERRSTR_SIZE];

    if (hs_blank(p, n)) {
        st->api->metric_add(st->inst, "blank_lines", 1);  /* a keep-alive */
        return 0;
    }
    stream_counted(t);
    if (hs_line_parse(st->body, p, n, t->item, lineno, &st->batch, why, sizeof(why)) != 0)
        return stream_bad_line(t, p, n, why);
    int64_t off = stream_offset(t);
    int rc = emit_batch(st, t, p, off, off, why, sizeof(why));
    if (st->stopping)
        return -1;
    if (rc != SPOKE_OK)
        return stream_fail(st, rc, why);
    st->emitted += st->batch.n;
    return 0;
}

static int stream_too_long(void *ud, const char *head, size_t n, uint64_t lineno)
{
    struct hs_target *t = ud;
    char why[160];
    stream_counted(t);
    snprintf(why, sizeof(why), "line %" PRIu64 ": longer than max.line.bytes (%zu); its first "
             "%zu bytes are the record, the rest is skipped", lineno, t->st->max_line, n);
    return stream_bad_line(t, head, n, why);
}

static int stream_nomem(void *ud)
{
    struct hs_target *t = ud;
    return stream_fail(t->st, SPOKE_ERR_NOMEM, "out of memory holding a line");
}

static const struct hs_lines_cb stream_cb = {
    .line = stream_line,
    .too_long = stream_too_long,
    .nomem = stream_nomem,
};

/* The response's status is 200 (or 203): the stream flows; the status
 * trace no longer says the URL is reconnecting. */
static void stream_connected(struct hs_target *t)
{
    struct hs_state *st = t->st;
    t->connected = 1;
    t->err[0] = '\0';
    if (t->connections > 1)
        st->api->log(st->inst, SPOKE_LOG_INFO, "%s: streaming again (connection %u)",
                     t->shown, t->connections);
    else
        st->api->log(st->inst, SPOKE_LOG_INFO, "%s: streaming", t->shown);
}

/* httpc hands over each piece of a 200's body as it arrives. The lines it
 * completes count their latency from now, not from the start of a poll()
 * that waited for them. */
static int stream_rx(void *ud, const char *p, size_t n)
{
    struct hs_target *t = ud;
    const struct spoke_host_api *api = t->st->api;
    if (t->st->in_stream_poll && SPOKE_API_HAS(api, poll_data_at)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        api->poll_data_at(t->st->inst, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
    }
    if (!t->connected)
        stream_connected(t);
    return hs_lines_feed(t->lines, p, n, &stream_cb, t);
}

static void stream_begin(struct hs_state *st, struct hs_target *t)
{
    t->connected = 0;
    t->conn_lines = 0;
    t->wire_counted = 0;
    t->idle_aborted = 0;
    if (t->connections++)
        st->api->metric_add(st->inst, "reconnects", 1);
}

/* The bytes t's transfer received since the last look go to the metric. */
static void stream_bytes(struct hs_state *st, struct hs_target *t, int64_t wire)
{
    if (wire > t->wire_counted) {
        st->api->metric_add(st->inst, "bytes_downloaded", wire - t->wire_counted);
        t->wire_counted = wire;
    }
}

/* The running streams: bytes counted, a 200 seen, silence given up. Returns
 * the earliest time one of them falls silent for too long. */
static int64_t stream_watch(struct hs_state *st, int64_t now)
{
    int64_t first = INT64_MAX;
    for (size_t i = 0; i < st->nt; i++) {
        struct hs_target *t = &st->t[i];
        struct httpc_progress p;
        if (!t->inflight || httpc_ended(t->http))
            continue;
        httpc_progress(t->http, &p);
        stream_bytes(st, t, p.wire_bytes);
        if (!t->connected && (p.status == 200 || p.status == 203))
            stream_connected(t);
        int64_t quiet = p.last_rx_ms > t->listen_from ? p.last_rx_ms : t->listen_from;
        if (now - quiet < st->idle_ms) {
            if (quiet + st->idle_ms < first)
                first = quiet + st->idle_ms;
            continue;
        }
        char reason[SPOKE_ERRSTR_SIZE], wt[32];
        snprintf(reason, sizeof(reason), "no data from %.*s for %s (stream.idle.timeout.ms)",
                 HS_URL_SHOWN, t->shown, httpc_wait_text(st->idle_ms, wt, sizeof(wt)));
        t->idle_aborted = 1;
        st->api->metric_add(st->inst, "idle_timeouts", 1);
        httpc_multi_abort(st->multi, t->http, reason);
    }
    return first;
}

/* t's connection ended (the server ended the response, it dropped, it was
 * given up for silence, or it failed before streaming): an unfinished line
 * is dropped, and t reconnects after the backoff or Retry-After. */
static void stream_ended(struct hs_state *st, struct hs_target *t, int64_t now)
{
    const struct spoke_host_api *api = st->api;
    struct httpc_info fi;
    const char *err, *held;
    char reason[SPOKE_ERRSTR_SIZE], wt[32];
    uint64_t lineno;

    enum httpc_result r = httpc_outcome(t->http, &fi, &err);
    api->metric_add(st->inst, "requests", 1);
    stream_bytes(st, t, fi.wire_bytes);
    size_t held_len = hs_lines_end(t->lines, &held, &lineno);
    if (st->stopping || st->fail_rc)
        return;
    if (r == HTTPC_BODY && !t->connected)
        stream_connected(t);  /* a short response, over before a look at it */
    if (held_len && !hs_blank(held, held_len)) {
        api->metric_add(st->inst, "partial_lines", 1);
        api->log(st->inst, SPOKE_LOG_WARN, "%s: the response ended in the middle of line "
                 "%" PRIu64 " (%zu bytes of it received): dropped, never emitted half-read",
                 t->shown, lineno, held_len);
    }
    if (t->idle_aborted)
        snprintf(reason, sizeof(reason), "%s", err);
    else if (r == HTTPC_BODY)
        snprintf(reason, sizeof(reason), "the server ended the stream of %.*s after %" PRIu64
                 " lines", HS_URL_SHOWN, t->shown, t->conn_lines);
    else if (t->connected)
        snprintf(reason, sizeof(reason), "the stream dropped after %" PRIu64 " lines: %.180s",
                 t->conn_lines, err);
    else
        snprintf(reason, sizeof(reason), "%s", r == HTTPC_FAILED ? err : "unexpected answer");
    if (!t->connected)
        api->metric_add(st->inst, "errors", 1);
    t->failures++;
    int64_t wait = httpc_retry_wait(&st->hopts, t->failures, &st->rng, fi.retry_after_ms, 0);
    t->due = now + wait;
    t->failed_at = now;
    t->wait_ms = wait;
    t->connected = 0;
    snprintf(t->err, sizeof(t->err), "%s", reason);
    scrub(st, t->err, sizeof(t->err));
    api->log(st->inst, SPOKE_LOG_WARN, "%s; reconnecting in %s (%u in a row)", t->err,
             httpc_wait_text(wait, wt, sizeof(wt)), t->failures);
}

/*
 * mode stream: moves the streams on (their lines are emitted as they come)
 * until a round emitted something, a connection ended, or HS_SLICE_MS
 * passed, so stopping never waits for a silent server; starts the
 * connections that are due.
 */
static int stream_poll(struct hs_state *st, int64_t *next_poll_ms, char *errstr,
                       size_t errstr_size)
{
    int64_t t0 = httpc_mono_ms();

    /* A gap since the last call (the connector paused, the host busy) is
     * our silence, not the server's. */
    if (t0 - st->poll_end > HS_SLICE_MS)
        for (size_t i = 0; i < st->nt; i++)
            st->t[i].listen_from = t0;
    st->emitted = 0;
    st->in_stream_poll = 1;
    for (;;) {
        size_t handled = collect(st);
        if (st->stopping || st->fail_rc)
            break;
        int64_t now = httpc_mono_ms();
        int64_t quiet_end = stream_watch(st, now);
        start_due(st, now);
        if (handled || st->emitted || now - t0 >= HS_SLICE_MS)
            break;
        int64_t wait = HS_SLICE_MS - (now - t0);
        if (quiet_end - now < wait)
            wait = quiet_end - now;
        for (size_t i = 0; i < st->nt; i++)
            if (!st->t[i].inflight && st->t[i].due - now < wait)
                wait = st->t[i].due - now;
        if (!httpc_multi_running(st->multi) && wait > 0) {
            /* Nothing in flight: the host waits for the next due time. */
            break;
        }
        httpc_multi_run_once(st->multi, wait > 0 ? wait : 0);
    }
    st->in_stream_poll = 0;
    st->poll_end = httpc_mono_ms();
    if (st->fail_rc) {
        snprintf(errstr, errstr_size, "%s", st->fail_reason);
        return st->fail_rc;
    }
    if (st->stopping)
        return SPOKE_OK;
    return report(st, t0, next_poll_ms, errstr, errstr_size);
}

/*
 * Starts what is due, then runs the transfers in flight until one ends (its
 * records are emitted at once), the next URL falls due, or HS_SLICE_MS
 * passed: poll() never blocks longer than that, so the host can stop or
 * pause the connector promptly even while a slow server holds a request.
 */
static int hs_poll(void *vst, int64_t *next_poll_ms, char *errstr, size_t errstr_size)
{
    struct hs_state *st = vst;
    int64_t t0 = httpc_mono_ms();

    *next_poll_ms = st->poll_ms;
    if (st->stopping)
        return SPOKE_OK;
    if (st->stream)
        return stream_poll(st, next_poll_ms, errstr, errstr_size);
    for (;;) {
        size_t handled = collect(st);
        if (st->stopping)
            return SPOKE_OK;
        int64_t now = httpc_mono_ms();
        start_due(st, now);
        size_t running = httpc_multi_running(st->multi);
        if (handled || !running || now - t0 >= HS_SLICE_MS)
            break;
        int64_t wait = HS_SLICE_MS - (now - t0);
        if (running < (size_t)st->max_parallel)
            for (size_t i = 0; i < st->nt; i++)
                if (!st->t[i].inflight && st->t[i].due - now < wait)
                    wait = st->t[i].due - now;
        httpc_multi_wait(st->multi, wait > 0 ? wait : 0);
    }
    return report(st, t0, next_poll_ms, errstr, errstr_size);
}

static const struct spoke_plugin http_source = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "http_source",
    .kind        = SPOKE_KIND_SOURCE,
    .version     = "0.1.0",
    .description = "Polls JSON or NDJSON over HTTP (one URL, or one per item of a list), or "
                   "reads endless NDJSON streams line by line, and emits the documents, or the "
                   "elements of an array in them, as records",
    .config      = hs_config,
    .init        = hs_init,
    .start       = hs_start,
    .poll        = hs_poll,
    .stop        = hs_stop,
    .destroy     = hs_destroy,
    .check       = hs_check,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void)
{
    return &http_source;
}
