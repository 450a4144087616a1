/*
 * httpc - libcurl GETs for the polling sources (see httpc.h).
 *
 * A GET is three steps, whichever interface runs it: prepare (reset the
 * last response, build the request headers), perform (curl_easy_perform,
 * or a transfer of a multi handle), finish (classify the CURLcode and the
 * status into an outcome and one sentence). The two interfaces therefore
 * report failures with the same words.
 */
#include "httpc.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "memwarm.h"
#include "problems.h"
#include "tlspem.h"

#define VALIDATOR_MAX 256  /* longest ETag / Last-Modified kept */
#define SHOWN_MAX 96       /* longest URL in a message, so the reason fits */
#define HTTPC_RECV_BUFFER (256L * 1024)  /* libcurl's receive buffer (CURLOPT_BUFFERSIZE) */

struct httpc {
    CURL *curl;
    struct curl_slist *hdrs;    /* the headers of the request in progress */
    const char *url;
    const char *shown;
    struct httpc_opts o;
    const atomic_int *abort_flag;
    char errbuf[CURL_ERROR_SIZE];
    char **extra;               /* the caller's header lines (copies) */
    size_t nextra;
    int has_accept;             /* one of them is an Accept */
    int in_multi;               /* added to a multi handle */
    int ended;                  /* the multi transfer started last has ended */

    /* Streaming (httpc_stream): the body of a 200/203 goes to stream_fn as
     * it arrives, never into body. */
    httpc_stream_fn stream_fn;
    void *stream_ud;
    int stream_stopped;         /* stream_fn asked to end the transfer */
    int64_t last_rx_ms;         /* monotonic ms of the last byte received, or the start */

    char *body;                 /* the response body, kept across requests, and */
    size_t len, cap;            /* HTTPC_BODY_PADDING bytes past cap */
    size_t trimmed_len;         /* the body's length when httpc_trim released it */
    int too_large;              /* the write callback refused more bytes */

    /* Headers of the current response (reset by each status line, so after
     * redirects they are the last response's). */
    char reason[64];
    char etag[VALIDATOR_MAX];
    char last_modified[VALIDATOR_MAX];
    char retry_after[64];
    char date[64];

    /* Validators of the last 200, and those sent with each request. */
    char got_etag[VALIDATOR_MAX], got_lm[VALIDATOR_MAX];
    char send_etag[VALIDATOR_MAX], send_lm[VALIDATOR_MAX];

    /* Outcome of the last GET. */
    enum httpc_result result;
    struct httpc_info info;
    char err[SPOKE_ERRSTR_SIZE];
};

struct httpc_multi {
    CURLM *multi;
    struct httpc **running;     /* transfers added and not ended */
    size_t n, cap;
};

/* ------------------------------------------------------------------------ */
/* Options, global state, URLs                                               */
/* ------------------------------------------------------------------------ */

void httpc_opts_read(const struct spoke_host_api *api, const struct spoke_config *cfg,
                     struct httpc_opts *o)
{
    o->connect_timeout_ms = api->config_int(cfg, "connect.timeout.ms");
    o->request_timeout_ms = api->config_int(cfg, "request.timeout.ms");
    o->max_body = api->config_int(cfg, "max.body.bytes");
    o->max_redirects = (long)api->config_int(cfg, "max.redirects");
    o->user_agent = api->config_string(cfg, "user.agent");
    o->backoff_initial_ms = api->config_int(cfg, "backoff.initial.ms");
    o->backoff_max_ms = api->config_int(cfg, "backoff.max.ms");
    o->tls = (struct tlspem_opts){
        .ca_pem = api->config_string(cfg, "ssl.ca.pem"),
        .crl_pem = api->config_string(cfg, "ssl.crl.pem"),
        .cert_pem = api->config_string(cfg, "ssl.certificate.pem"),
        .key_pem = api->config_string(cfg, "ssl.key.pem"),
        .key_password = api->config_string(cfg, "ssl.key.password"),
    };
    o->ca_file = o->crl_file = o->cert_file = o->key_file = (struct httpc_pem_file){ -1, "" };
}

void httpc_opts_check(const struct httpc_opts *o, struct problems *pr)
{
    if (o->backoff_initial_ms > o->backoff_max_ms)
        problem(pr, "backoff.initial.ms", "backoff.initial.ms (%lld) is above backoff.max.ms "
                "(%lld)", (long long)o->backoff_initial_ms, (long long)o->backoff_max_ms);
    /* Parsed now, as libcurl's GnuTLS will at each connection: a mistake is
     * said with the config rather than at each poll. */
    tlspem_check(&o->tls, pr);
}

/* text in a new memfd, f its descriptor and /proc path. 0, or -1 with errstr. */
static int pem_file(const char *key, const char *text, struct httpc_pem_file *f, char *errstr,
                    size_t errstr_size)
{
    int fd = memfd_create(key, MFD_CLOEXEC);
    size_t len = strlen(text), off = 0;
    if (fd < 0) {
        snprintf(errstr, errstr_size, "%s: memfd_create: %s", key, strerror(errno));
        return -1;
    }
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(errstr, errstr_size, "%s: write: %s", key, strerror(errno));
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    f->fd = fd;
    snprintf(f->path, sizeof(f->path), "/proc/self/fd/%d", fd);
    return 0;
}

int httpc_opts_open(struct httpc_opts *o, char *errstr, size_t errstr_size)
{
    const struct tlspem_opts *t = &o->tls;
    if ((t->ca_pem && pem_file("ssl.ca.pem", t->ca_pem, &o->ca_file, errstr, errstr_size)) ||
        (t->crl_pem && pem_file("ssl.crl.pem", t->crl_pem, &o->crl_file, errstr, errstr_size)) ||
        (t->cert_pem && pem_file("ssl.certificate.pem", t->cert_pem, &o->cert_file, errstr,
                                 errstr_size)) ||
        (t->key_pem && pem_file("ssl.key.pem", t->key_pem, &o->key_file, errstr, errstr_size))) {
        httpc_opts_close(o);
        return -1;
    }
    return 0;
}

void httpc_opts_close(struct httpc_opts *o)
{
    /* By the path: a zeroed struct (a state freed before its options were
     * read) has fd 0 and no path. */
    struct httpc_pem_file *f[] = { &o->ca_file, &o->crl_file, &o->cert_file, &o->key_file };
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        if (f[i]->path[0] && f[i]->fd >= 0)
            close(f[i]->fd);
        *f[i] = (struct httpc_pem_file){ -1, "" };
    }
}

int httpc_global_init(char *errstr, size_t errstr_size)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(errstr, errstr_size, "libcurl initialization failed");
        return -1;
    }
    return 0;
}

void httpc_global_cleanup(void)
{
    curl_global_cleanup();
}

int httpc_url_check(const char *key, const char *url, const char *shown, char *errstr,
                    size_t errstr_size)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = -1;
    CURLUcode uc;

    if (!shown)
        shown = url;
    if (!u) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        snprintf(errstr, errstr_size, "%s '%.120s' is not a valid absolute URL: %s", key, shown,
                 curl_url_strerror(uc));
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)) {
        snprintf(errstr, errstr_size, "%s '%.120s': scheme '%.20s' is not allowed, only http "
                 "and https", key, shown, scheme ? scheme : "");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host) {
        snprintf(errstr, errstr_size, "%s '%.120s' has no host", key, shown);
        goto out;
    }
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

char *httpc_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

/* ------------------------------------------------------------------------ */
/* Callbacks                                                                 */
/* ------------------------------------------------------------------------ */

/* A streamed body: bytes of a 200/203 go to the reader, others (an error
 * page) are dropped unread, as no message quotes a body. */
static size_t on_stream(struct httpc *h, char *p, size_t add)
{
    long status = 0;
    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200 && status != 203)
        return add;
    int rc = h->stream_fn(h->stream_ud, p, add);
    /* The reader may have been slow (it hands records on, which can wait
     * for room downstream): that time is not the server's silence. */
    h->last_rx_ms = httpc_mono_ms();
    if (rc != 0) {
        h->stream_stopped = 1;
        return 0;  /* CURLE_WRITE_ERROR: the transfer stops here */
    }
    return add;
}

/* The size of a body buffer allocated for the first bytes of a response:
 * the length the server announced, or that of the last body httpc_trim
 * released (a feed fetched again is about as large), when larger than
 * 64 KiB. Grown
 * from 64 KiB by doubling, a 1 MB body was copied four times and twice its
 * size was faulted in, on each fetch after a trim (bench/README). Never more
 * than max.body.bytes. With a compressed response the announced length is
 * the encoded one: the buffer then grows from there. */
static size_t first_cap(struct httpc *h)
{
    curl_off_t announced = -1;
    size_t cap = h->trimmed_len > 65536 ? h->trimmed_len : 65536;
    if (curl_easy_getinfo(h->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced) == CURLE_OK &&
        announced > 0 && (uint64_t)announced > cap)
        cap = (uint64_t)announced < (uint64_t)h->o.max_body ? (size_t)announced
                                                            : (size_t)h->o.max_body;
    return cap;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct httpc *h = ud;
    size_t add = size * n;
    h->last_rx_ms = httpc_mono_ms();
    if (h->stream_fn)
        return on_stream(h, p, add);
    if (add > (size_t)h->o.max_body - h->len) {
        h->too_large = 1;
        return 0;  /* CURLE_WRITE_ERROR: the transfer stops here */
    }
    if (h->len + add > h->cap) {
        size_t cap = h->cap ? h->cap : first_cap(h);
        while (cap < h->len + add)
            cap *= 2;
        if (cap > (size_t)h->o.max_body)
            cap = (size_t)h->o.max_body;
        char *nb = realloc(h->body, cap + HTTPC_BODY_PADDING);
        if (!nb)
            return 0;
        h->body = nb;
        h->cap = cap;
    }
    memcpy(h->body + h->len, p, add);
    h->len += add;
    return add;
}

/* Copies a header value without surrounding blanks or control bytes;
 * values that do not fit are dropped (an ETag cut short would never match). */
static void keep_value(char *dst, size_t size, const char *v, size_t len)
{
    while (len && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' ' ||
                   v[len - 1] == '\t'))
        len--;
    dst[0] = '\0';
    if (len >= size)
        return;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
            return;
    memcpy(dst, v, len);
    dst[len] = '\0';
}

static int header_is(const char *line, size_t len, const char *name, const char **val,
                     size_t *vlen)
{
    size_t n = strlen(name);
    if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0)
        return 0;
    *val = line + n + 1;
    *vlen = len - n - 1;
    return 1;
}

static void forget_response(struct httpc *h)
{
    h->etag[0] = h->last_modified[0] = h->retry_after[0] = h->date[0] = '\0';
    h->reason[0] = '\0';
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct httpc *h = ud;
    size_t len = size * n;
    const char *v;
    size_t vlen;

    h->last_rx_ms = httpc_mono_ms();
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* A new response (after a redirect or a 1xx): forget the last one. */
        forget_response(h);
        const char *sp = memchr(p, ' ', len);
        if (sp) {
            sp = memchr(sp + 1, ' ', len - (size_t)(sp + 1 - p));
            if (sp) {
                /* The reason phrase, printable ASCII only: it goes into logs. */
                size_t k = 0;
                for (sp++; sp < p + len && k + 1 < sizeof(h->reason); sp++)
                    if (*sp >= 0x20 && *sp < 0x7f)
                        h->reason[k++] = *sp;
                while (k && h->reason[k - 1] == ' ')
                    k--;
                h->reason[k] = '\0';
            }
        }
    } else if (header_is(p, len, "etag", &v, &vlen)) {
        keep_value(h->etag, sizeof(h->etag), v, vlen);
    } else if (header_is(p, len, "last-modified", &v, &vlen)) {
        keep_value(h->last_modified, sizeof(h->last_modified), v, vlen);
    } else if (header_is(p, len, "retry-after", &v, &vlen)) {
        keep_value(h->retry_after, sizeof(h->retry_after), v, vlen);
    } else if (header_is(p, len, "date", &v, &vlen)) {
        keep_value(h->date, sizeof(h->date), v, vlen);
    }
    return len;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct httpc *h = ud;
    return h->abort_flag && atomic_load(h->abort_flag) ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Handles                                                                   */
/* ------------------------------------------------------------------------ */

static int copy_headers(struct httpc *h, const char *const *headers, size_t n,
                        char *errstr, size_t errstr_size)
{
    if (!n)
        return 0;
    if (!(h->extra = calloc(n, sizeof(*h->extra)))) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(h->extra[i] = strdup(headers[i]))) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
        h->nextra++;
        if (strncasecmp(headers[i], "accept:", 7) == 0)
            h->has_accept = 1;
    }
    return 0;
}

struct httpc *httpc_new(const char *url, const char *shown, const struct httpc_opts *o,
                        const char *const *headers, size_t nheaders,
                        const atomic_int *abort_flag, char *errstr, size_t errstr_size)
{
    struct httpc *h = calloc(1, sizeof(*h));
    CURLcode rc = CURLE_OK;

    if (!h || !(h->curl = curl_easy_init())) {
        free(h);
        snprintf(errstr, errstr_size, "out of memory (curl_easy_init)");
        return NULL;
    }
    h->url = url;
    h->shown = shown ? shown : url;
    h->o = *o;
    h->abort_flag = abort_flag;
    if (copy_headers(h, headers, nheaders, errstr, errstr_size) != 0) {
        httpc_free(h);
        return NULL;
    }
    CURL *c = h->curl;
#define SET(opt, val) \
    do { if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val); } while (0)
    SET(CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500  /* 7.85: the _STR forms; the bitmasks are deprecated */
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    SET(CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, o->max_redirects);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, (long)o->request_timeout_ms);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_body);
    SET(CURLOPT_USERAGENT, o->user_agent);
    SET(CURLOPT_ACCEPT_ENCODING, "");  /* whatever this libcurl decodes (gzip, br, zstd) */
    SET(CURLOPT_NOSIGNAL, 1L);         /* several threads; the resolver is threaded */
    SET(CURLOPT_ERRORBUFFER, h->errbuf);
    /* Bodies such as a Vélib' snapshot (~1 MB) arrive in fewer, larger
     * reads than with the default 16 KB: ~60 recv and poll calls a
     * snapshot become a handful. */
    SET(CURLOPT_BUFFERSIZE, HTTPC_RECV_BUFFER);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, h);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, h);
    SET(CURLOPT_XFERINFOFUNCTION, on_progress);
    SET(CURLOPT_XFERINFODATA, h);
    SET(CURLOPT_NOPROGRESS, 0L);
    SET(CURLOPT_PRIVATE, (void *)h);
    if (o->ca_file.path[0]) {
        /* Only these CAs: not the system's bundle nor its directory. */
        SET(CURLOPT_CAINFO, o->ca_file.path);
        SET(CURLOPT_CAPATH, (char *)NULL);
    }
    if (o->crl_file.path[0])
        SET(CURLOPT_CRLFILE, o->crl_file.path);
    if (o->cert_file.path[0]) {
        SET(CURLOPT_SSLCERT, o->cert_file.path);
        SET(CURLOPT_SSLCERTTYPE, "PEM");
        SET(CURLOPT_SSLKEY, o->key_file.path);
        SET(CURLOPT_SSLKEYTYPE, "PEM");
        if (o->tls.key_password)
            SET(CURLOPT_KEYPASSWD, o->tls.key_password);
    }
#undef SET
    if (rc != CURLE_OK) {
        snprintf(errstr, errstr_size, "libcurl refused an option: %s", curl_easy_strerror(rc));
        httpc_free(h);
        return NULL;
    }
    return h;
}

void httpc_free(struct httpc *h)
{
    if (!h)
        return;
    curl_easy_cleanup(h->curl);
    curl_slist_free_all(h->hdrs);
    for (size_t i = 0; i < h->nextra; i++)
        free(h->extra[i]);
    free(h->extra);
    free(h->body);
    free(h);
}

const char *httpc_body(const struct httpc *h, size_t *len)
{
    /* No body buffer yet (an empty body): still a padded one. */
    static const char empty[HTTPC_BODY_PADDING];
    *len = h->len;
    return h->body ? h->body : empty;
}

void httpc_trim(struct httpc *h)
{
    if (h->len > 0)  /* not after a 304 or an error */
        h->trimmed_len = h->len;
    free(h->body);
    h->body = NULL;
    h->len = h->cap = 0;
}

int httpc_warm(struct httpc *h)
{
    if (h->body || !h->trimmed_len)
        return 0;
    size_t cap = h->trimmed_len + h->trimmed_len / 8;
    if (cap > (size_t)h->o.max_body)
        cap = (size_t)h->o.max_body;
    char *nb = malloc(cap + HTTPC_BODY_PADDING);
    if (!nb)
        return -1;
    memwarm_pages(nb, h->trimmed_len < cap ? h->trimmed_len : cap);
    h->body = nb;
    h->cap = cap;
    h->len = 0;
    return 0;
}

void httpc_accept(struct httpc *h)
{
    memcpy(h->send_etag, h->got_etag, sizeof(h->send_etag));
    memcpy(h->send_lm, h->got_lm, sizeof(h->send_lm));
}

int httpc_stream(struct httpc *h, httpc_stream_fn fn, void *ud, char *errstr,
                 size_t errstr_size)
{
    CURLcode rc = curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, 0L);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(h->curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)0);
    if (rc != CURLE_OK) {
        snprintf(errstr, errstr_size, "libcurl refused an option: %s", curl_easy_strerror(rc));
        return -1;
    }
    h->stream_fn = fn;
    h->stream_ud = ud;
    return 0;
}

void httpc_progress(const struct httpc *h, struct httpc_progress *p)
{
    long status = 0;
    curl_off_t wire = 0;
    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(h->curl, CURLINFO_SIZE_DOWNLOAD_T, &wire);
    p->status = status;
    p->wire_bytes = wire;
    p->last_rx_ms = h->last_rx_ms;
}

/* Appends a line to *l; 0, or -1 (the list is left as it was). */
static int add_line(struct curl_slist **l, const char *line)
{
    struct curl_slist *t = curl_slist_append(*l, line);
    if (!t)
        return -1;
    *l = t;
    return 0;
}

/* The request headers: Accept, the caller's, and the validators when there
 * are some. */
static int set_request_headers(struct httpc *h)
{
    char line[VALIDATOR_MAX + 32];
    struct curl_slist *l = NULL;

    if (!h->has_accept && add_line(&l, "Accept: application/json") != 0)
        goto fail;
    for (size_t i = 0; i < h->nextra; i++)
        if (add_line(&l, h->extra[i]) != 0)
            goto fail;
    if (h->send_etag[0]) {
        snprintf(line, sizeof(line), "If-None-Match: %s", h->send_etag);
        if (add_line(&l, line) != 0)
            goto fail;
    }
    if (h->send_lm[0]) {
        snprintf(line, sizeof(line), "If-Modified-Since: %s", h->send_lm);
        if (add_line(&l, line) != 0)
            goto fail;
    }
    if (curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, l) != CURLE_OK)
        goto fail;
    curl_slist_free_all(h->hdrs);
    h->hdrs = l;
    return 0;
fail:
    curl_slist_free_all(l);
    return -1;
}

/* Retry-After in ms from now: delay-seconds, or an HTTP-date measured
 * against the server's own Date (so the two clocks need not agree). */
static int64_t retry_after_ms(const struct httpc *h)
{
    const char *v = h->retry_after;
    if (!*v)
        return -1;
    if (isdigit((unsigned char)v[0])) {
        char *end;
        unsigned long long s = strtoull(v, &end, 10);
        if (*end)
            return -1;
        return s > 86400ull * 365 ? 86400ll * 365 * 1000 : (int64_t)s * 1000;
    }
    time_t when = curl_getdate(v, NULL);
    if (when < 0)
        return -1;
    time_t now = h->date[0] ? curl_getdate(h->date, NULL) : -1;
    if (now < 0)
        now = time(NULL);
    return when > now ? (int64_t)(when - now) * 1000 : 0;
}

/* A URL short enough to leave room for the rest of a message. */
static const char *short_url(const char *url, char *buf, size_t size)
{
    size_t n = strlen(url);
    if (n < size)
        return url;
    snprintf(buf, size, "%.*s...", (int)(size - 4), url);
    return buf;
}

/* ------------------------------------------------------------------------ */
/* One GET: prepare, (perform), finish                                       */
/* ------------------------------------------------------------------------ */

static void set_failed(struct httpc *h, const char *fmt, ...) SPOKE_PRINTF(2, 3);

static void set_failed(struct httpc *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->err, sizeof(h->err), fmt, ap);
    va_end(ap);
    h->result = HTTPC_FAILED;
}

/* Resets the outcome and the last response. 0, or -1 (out of memory: the
 * outcome says so). */
static int prepare(struct httpc *h)
{
    h->result = HTTPC_FAILED;
    h->info = (struct httpc_info){ .status = 0, .retry_after_ms = -1, .server_now_ms = -1 };
    h->err[0] = '\0';
    h->len = 0;
    h->too_large = 0;
    h->stream_stopped = 0;
    h->last_rx_ms = httpc_mono_ms();
    h->errbuf[0] = '\0';
    forget_response(h);
    if (set_request_headers(h) != 0) {
        set_failed(h, "out of memory preparing a request to %s", h->shown);
        return -1;
    }
    return 0;
}

/* A transfer that ended with rc: fills the outcome. */
static void finish(struct httpc *h, CURLcode rc)
{
    char ub[SHOWN_MAX], eb[SHOWN_MAX], both[2 * SHOWN_MAX + 24];
    const char *orig = short_url(h->shown, ub, sizeof(ub)), *url = orig, *eff = NULL;
    struct httpc_info *fi = &h->info;
    long status = 0;
    curl_off_t wire = 0, announced = -1;
    long redirects = 0;

    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(h->curl, CURLINFO_SIZE_DOWNLOAD_T, &wire);
    curl_easy_getinfo(h->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced);
    curl_easy_getinfo(h->curl, CURLINFO_REDIRECT_COUNT, &redirects);
    /* After a redirect, a failure names the URL that failed too (libcurl's
     * effective URL: the last one requested), e.g. "HTTP 503 from
     * https://a/ (redirected to https://b/)". */
    if (redirects > 0 && curl_easy_getinfo(h->curl, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK &&
        eff && strcmp(eff, h->url) != 0) {
        snprintf(both, sizeof(both), "%s (redirected to %s)", orig,
                 short_url(eff, eb, sizeof(eb)));
        url = both;
    }
    fi->status = status;
    fi->wire_bytes = wire;
    if (h->date[0]) {
        time_t d = curl_getdate(h->date, NULL);
        if (d >= 0)
            fi->server_now_ms = (int64_t)d * 1000;
    }
    const char *detail = h->errbuf[0] ? h->errbuf : curl_easy_strerror(rc);

    switch (rc) {
    case CURLE_OK:
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        set_failed(h, "DNS lookup failed for %s: %s", url, detail);
        return;
    case CURLE_COULDNT_CONNECT:
        set_failed(h, "cannot connect to %s: %s", url, detail);
        return;
    case CURLE_OPERATION_TIMEDOUT:
        set_failed(h, "timeout fetching %s: %s", url, detail);
        return;
    case CURLE_PARTIAL_FILE:
        set_failed(h, "truncated body from %s (%lld bytes received): %s", url, (long long)wire,
                   detail);
        return;
    case CURLE_FILESIZE_EXCEEDED:
        set_failed(h, "body of %s is %lld bytes, over max.body.bytes (%lld): not downloaded", url,
                   (long long)announced, (long long)h->o.max_body);
        return;
    case CURLE_TOO_MANY_REDIRECTS:
        set_failed(h, "too many redirects from %s (max.redirects is %ld)", orig,
                   h->o.max_redirects);
        return;
    case CURLE_PEER_FAILED_VERIFICATION: {
        /* libcurl's GnuTLS names the memfds ("CAfile: /proc/self/fd/6"),
         * not why: GnuTLS says why from the status libcurl keeps. */
        long vr = 0;
        char why[512];
        const char *files = strstr(detail, ". CAfile:");
        if (curl_easy_getinfo(h->curl, CURLINFO_SSL_VERIFYRESULT, &vr) == CURLE_OK && vr != 0 &&
            tlspem_status_text((unsigned)vr, why, sizeof(why)) == 0)
            set_failed(h, "fetching %s failed: server certificate verification failed: %s", url,
                       why);
        else
            set_failed(h, "fetching %s failed: %.*s", url,
                       files ? (int)(files - detail) : (int)strlen(detail), detail);
        return;
    }
    case CURLE_UNSUPPORTED_PROTOCOL:
        set_failed(h, "%s%s refused: only http and https are allowed (%s)",
                   redirects > 0 || status / 100 == 3 ? "redirect from " : "", orig, detail);
        return;
    case CURLE_ABORTED_BY_CALLBACK:
        set_failed(h, "fetching %s aborted: the connector is stopping", url);
        return;
    case CURLE_WRITE_ERROR:
        if (h->stream_stopped)
            set_failed(h, "reading %s stopped by its reader", url);
        else if (h->too_large)
            set_failed(h, "body of %s is over max.body.bytes (%lld): transfer aborted after "
                       "%lld bytes", url, (long long)h->o.max_body, (long long)wire);
        else
            set_failed(h, "out of memory receiving %s", url);
        return;
    default:
        set_failed(h, "fetching %s failed: %s", url, detail);
        return;
    }

    if (status == 304) {
        if (!h->send_etag[0] && !h->send_lm[0]) {
            set_failed(h, "HTTP 304 from %s to a request that was not conditional", url);
            return;
        }
        h->result = HTTPC_NOT_MODIFIED;
        return;
    }
    if (status == 200 || status == 203) {
        memcpy(h->got_etag, h->etag, sizeof(h->got_etag));
        memcpy(h->got_lm, h->last_modified, sizeof(h->got_lm));
        h->result = HTTPC_BODY;
        return;
    }
    fi->retry_after_ms = retry_after_ms(h);
    const char *sp = h->reason[0] ? " " : "";
    if (status / 100 == 3)
        set_failed(h, "HTTP %ld%s%s from %s without a usable Location", status, sp, h->reason,
                   url);
    else if (fi->retry_after_ms >= 0)
        set_failed(h, "HTTP %ld%s%s from %s (Retry-After: %s)", status, sp, h->reason, url,
                   h->retry_after);
    else
        set_failed(h, "HTTP %ld%s%s from %s", status, sp, h->reason, url);
}

enum httpc_result httpc_outcome(const struct httpc *h, struct httpc_info *fi, const char **err)
{
    *fi = h->info;
    *err = h->err;
    return h->result;
}

enum httpc_result httpc_get(struct httpc *h, struct httpc_info *fi, char *errstr,
                            size_t errstr_size)
{
    const char *err;
    if (prepare(h) == 0)
        finish(h, curl_easy_perform(h->curl));
    enum httpc_result r = httpc_outcome(h, fi, &err);
    if (r == HTTPC_FAILED)
        snprintf(errstr, errstr_size, "%s", err);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Several at once                                                           */
/* ------------------------------------------------------------------------ */

struct httpc_multi *httpc_multi_new(void)
{
    struct httpc_multi *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    if (!(m->multi = curl_multi_init())) {
        free(m);
        return NULL;
    }
    return m;
}

/* Takes h out of the running list (swap with the last). */
static void multi_detach(struct httpc_multi *m, struct httpc *h)
{
    curl_multi_remove_handle(m->multi, h->curl);
    for (size_t i = 0; i < m->n; i++)
        if (m->running[i] == h) {
            m->running[i] = m->running[--m->n];
            break;
        }
    h->in_multi = 0;
}

void httpc_multi_free(struct httpc_multi *m)
{
    if (!m)
        return;
    while (m->n) {
        struct httpc *h = m->running[m->n - 1];
        multi_detach(m, h);
        set_failed(h, "fetching %s stopped: the connector is stopping", h->shown);
        h->ended = 1;
    }
    curl_multi_cleanup(m->multi);
    free(m->running);
    free(m);
}

void httpc_multi_start(struct httpc_multi *m, struct httpc *h)
{
    CURLMcode mc;
    h->ended = 0;
    if (prepare(h) != 0) {
        h->ended = 1;
        return;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        struct httpc **r = realloc(m->running, cap * sizeof(*r));
        if (!r) {
            set_failed(h, "out of memory starting a request to %s", h->shown);
            h->ended = 1;
            return;
        }
        m->running = r;
        m->cap = cap;
    }
    if ((mc = curl_multi_add_handle(m->multi, h->curl)) != CURLM_OK) {
        set_failed(h, "cannot start a request to %s: %s", h->shown, curl_multi_strerror(mc));
        h->ended = 1;
        return;
    }
    m->running[m->n++] = h;
    h->in_multi = 1;
}

void httpc_multi_abort(struct httpc_multi *m, struct httpc *h, const char *reason)
{
    if (!h->in_multi)
        return;
    /* Read before the handle leaves the multi: what the outcome reports. */
    struct httpc_progress p;
    httpc_progress(h, &p);
    multi_detach(m, h);
    set_failed(h, "%s", reason);
    h->info.status = p.status;
    h->info.wire_bytes = p.wire_bytes;
    h->ended = 1;
}

/* Moves transfers on and finishes those that ended; returns how many did.
 * A failure of the multi handle itself (out of memory) ends every running
 * transfer with the reason. */
static size_t multi_step(struct httpc_multi *m)
{
    int still = 0, queued;
    size_t ended = 0;
    CURLMsg *msg;
    CURLMcode mc = curl_multi_perform(m->multi, &still);

    if (mc != CURLM_OK) {
        while (m->n) {
            struct httpc *h = m->running[m->n - 1];
            multi_detach(m, h);
            set_failed(h, "fetching %s failed: %s", h->shown, curl_multi_strerror(mc));
            h->ended = 1;
            ended++;
        }
        return ended;
    }
    while ((msg = curl_multi_info_read(m->multi, &queued))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        struct httpc *h = (struct httpc *)priv;
        CURLcode rc = msg->data.result;  /* msg is invalid once h is removed */
        multi_detach(m, h);
        finish(h, rc);
        h->ended = 1;
        ended++;
    }
    return ended;
}

size_t httpc_multi_wait(struct httpc_multi *m, int64_t timeout_ms)
{
    int64_t deadline = httpc_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    size_t ended = multi_step(m);
    while (!ended && m->n) {
        int64_t left = deadline - httpc_mono_ms();
        if (left <= 0)
            break;
        /* Sleeps in poll(2) on the transfers' sockets, at most until the
         * earliest of libcurl's own timers and our deadline. */
        curl_multi_poll(m->multi, NULL, 0, left > INT32_MAX ? INT32_MAX : (int)left, NULL);
        ended = multi_step(m);
    }
    return ended;
}

size_t httpc_multi_run_once(struct httpc_multi *m, int64_t timeout_ms)
{
    /* Wait first: a transfer just started has a timer due now, so the
     * wait ends at once for it; one step after the wait, so what arrived
     * is handed over and the caller can act on it before waiting again. */
    if (m->n && timeout_ms > 0)
        curl_multi_poll(m->multi, NULL, 0, timeout_ms > INT32_MAX ? INT32_MAX : (int)timeout_ms,
                        NULL);
    return multi_step(m);
}

size_t httpc_multi_running(const struct httpc_multi *m)
{
    return m->n;
}

int httpc_ended(const struct httpc *h)
{
    return h->ended;
}

/* ------------------------------------------------------------------------ */
/* Waiting                                                                   */
/* ------------------------------------------------------------------------ */

int64_t httpc_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: jitter only needs to spread retries, not be secret. */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

uint64_t httpc_rng_seed(const void *salt)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)salt;
    return s ? s : 0x9e3779b97f4a7c15ull;
}

const char *httpc_wait_text(int64_t ms, char *buf, size_t size)
{
    if (ms < 1000)
        snprintf(buf, size, "%lld ms", (long long)ms);
    else
        snprintf(buf, size, "%.1f s", (double)ms / 1000.0);
    return buf;
}

int64_t httpc_backoff_ms(int64_t initial, int64_t max, unsigned failures, uint64_t *rng)
{
    int64_t d = initial;
    for (unsigned i = 1; i < failures && d < max; i++)
        d *= 2;
    if (d > max)
        d = max;
    int64_t half = d / 2;
    int64_t w = half + (int64_t)(rng_next(rng) % (uint64_t)(d - half + 1));
    return w > 0 ? w : 1;
}

int64_t httpc_retry_wait(const struct httpc_opts *o, unsigned failures, uint64_t *rng,
                         int64_t retry_after_ms, int64_t elapsed_ms)
{
    int64_t wait = httpc_backoff_ms(o->backoff_initial_ms, o->backoff_max_ms, failures, rng);
    if (retry_after_ms >= 0) {
        if (retry_after_ms > HTTPC_RETRY_AFTER_MAX_MS)
            retry_after_ms = HTTPC_RETRY_AFTER_MAX_MS;
        int64_t ra = retry_after_ms + elapsed_ms + HTTPC_SCHEDULE_MARGIN_MS;
        if (ra > wait)
            wait = ra;
    }
    return wait;
}
