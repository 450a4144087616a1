/*
 * velib_source_http - GETs of one feed URL with libcurl.
 *
 * One easy handle per URL, reused, so connections (and TLS sessions) are
 * kept alive between polls. Only http and https are allowed, for the URL
 * and for every redirect, and redirects are capped. The body is collected
 * into a buffer kept across polls; a body larger than max.body.bytes is
 * refused from its Content-Length before any byte of it is read, or, when
 * the length is not announced (chunked, compressed), aborted as soon as the
 * limit is passed. A Content-Length that the connection does not deliver is
 * a truncated body (CURLE_PARTIAL_FILE), never a short document.
 *
 * Conditional requests: the ETag and Last-Modified of a 200 are sent back as
 * If-None-Match and If-Modified-Since (verbatim, as RFC 9110 recommends),
 * but only once the caller accepted that body (vs_http_accept): a body that
 * failed validation must not be answered with 304 later.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "velib_source.h"

#define VALIDATOR_MAX 256  /* longest ETag / Last-Modified kept */

struct vs_http {
    CURL *curl;
    struct curl_slist *hdrs;
    const char *url;
    struct vs_http_opts o;
    const atomic_int *abort_flag;
    char errbuf[CURL_ERROR_SIZE];

    char *body;                 /* the response body, kept across requests */
    size_t len, cap;
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
};

int vs_url_check(const char *key, const char *url, char *errstr, size_t errstr_size)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = -1;
    CURLUcode uc;

    if (!u) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        snprintf(errstr, errstr_size, "%s '%.120s' is not a valid absolute URL: %s", key, url,
                 curl_url_strerror(uc));
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)) {
        snprintf(errstr, errstr_size, "%s '%.120s': scheme '%.20s' is not allowed, only http "
                 "and https", key, url, scheme ? scheme : "");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host) {
        snprintf(errstr, errstr_size, "%s '%.120s' has no host", key, url);
        goto out;
    }
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct vs_http *h = ud;
    size_t add = size * n;
    if (add > (size_t)h->o.max_body - h->len) {
        h->too_large = 1;
        return 0;  /* CURLE_WRITE_ERROR: the transfer stops here */
    }
    if (h->len + add > h->cap) {
        size_t cap = h->cap ? h->cap : 65536;
        while (cap < h->len + add)
            cap *= 2;
        if (cap > (size_t)h->o.max_body)
            cap = (size_t)h->o.max_body;
        char *nb = realloc(h->body, cap);
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

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct vs_http *h = ud;
    size_t len = size * n;
    const char *v;
    size_t vlen;

    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* A new response (after a redirect or a 1xx): forget the last one. */
        h->etag[0] = h->last_modified[0] = h->retry_after[0] = h->date[0] = '\0';
        h->reason[0] = '\0';
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
    struct vs_http *h = ud;
    return h->abort_flag && atomic_load(h->abort_flag) ? 1 : 0;
}

struct vs_http *vs_http_new(const char *url, const struct vs_http_opts *o,
                            const atomic_int *abort_flag, char *errstr, size_t errstr_size)
{
    struct vs_http *h = calloc(1, sizeof(*h));
    CURLcode rc = CURLE_OK;

    if (!h || !(h->curl = curl_easy_init())) {
        free(h);
        snprintf(errstr, errstr_size, "out of memory (curl_easy_init)");
        return NULL;
    }
    h->url = url;
    h->o = *o;
    h->abort_flag = abort_flag;
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
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, h);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, h);
    SET(CURLOPT_XFERINFOFUNCTION, on_progress);
    SET(CURLOPT_XFERINFODATA, h);
    SET(CURLOPT_NOPROGRESS, 0L);
#undef SET
    if (rc != CURLE_OK) {
        snprintf(errstr, errstr_size, "libcurl refused an option: %s", curl_easy_strerror(rc));
        vs_http_free(h);
        return NULL;
    }
    return h;
}

void vs_http_free(struct vs_http *h)
{
    if (!h)
        return;
    curl_easy_cleanup(h->curl);
    curl_slist_free_all(h->hdrs);
    free(h->body);
    free(h);
}

const char *vs_http_body(const struct vs_http *h, size_t *len)
{
    *len = h->len;
    return h->body;
}

void vs_http_trim(struct vs_http *h)
{
    free(h->body);
    h->body = NULL;
    h->len = h->cap = 0;
}

void vs_http_accept(struct vs_http *h)
{
    memcpy(h->send_etag, h->got_etag, sizeof(h->send_etag));
    memcpy(h->send_lm, h->got_lm, sizeof(h->send_lm));
}

/* The request headers: Accept, and the validators when there are some. */
static int set_request_headers(struct vs_http *h)
{
    char line[VALIDATOR_MAX + 32];
    struct curl_slist *l = NULL, *t;

    if (!(l = curl_slist_append(l, "Accept: application/json")))
        return -1;
    if (h->send_etag[0]) {
        snprintf(line, sizeof(line), "If-None-Match: %s", h->send_etag);
        if (!(t = curl_slist_append(l, line)))
            goto fail;
        l = t;
    }
    if (h->send_lm[0]) {
        snprintf(line, sizeof(line), "If-Modified-Since: %s", h->send_lm);
        if (!(t = curl_slist_append(l, line)))
            goto fail;
        l = t;
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
static int64_t retry_after_ms(const struct vs_http *h)
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

enum vs_fetch vs_http_get(struct vs_http *h, struct vs_fetch_info *fi, char *errstr,
                          size_t errstr_size)
{
    char ub[96];
    const char *url = short_url(h->url, ub, sizeof(ub));
    long status = 0;
    curl_off_t wire = 0, announced = -1;
    long redirects = 0;

    fi->status = 0;
    fi->retry_after_ms = -1;
    fi->server_now_ms = -1;
    fi->wire_bytes = 0;
    h->len = 0;
    h->too_large = 0;
    h->errbuf[0] = '\0';
    h->date[0] = h->retry_after[0] = h->etag[0] = h->last_modified[0] = h->reason[0] = '\0';
    if (set_request_headers(h) != 0) {
        snprintf(errstr, errstr_size, "out of memory");
        return VS_FETCH_FAILED;
    }

    CURLcode rc = curl_easy_perform(h->curl);
    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(h->curl, CURLINFO_SIZE_DOWNLOAD_T, &wire);
    curl_easy_getinfo(h->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced);
    curl_easy_getinfo(h->curl, CURLINFO_REDIRECT_COUNT, &redirects);
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
        snprintf(errstr, errstr_size, "DNS lookup failed for %s: %s", url, detail);
        return VS_FETCH_FAILED;
    case CURLE_COULDNT_CONNECT:
        snprintf(errstr, errstr_size, "cannot connect to %s: %s", url, detail);
        return VS_FETCH_FAILED;
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(errstr, errstr_size, "timeout fetching %s: %s", url, detail);
        return VS_FETCH_FAILED;
    case CURLE_PARTIAL_FILE:
        snprintf(errstr, errstr_size, "truncated body from %s (%lld bytes received): %s", url,
                 (long long)wire, detail);
        return VS_FETCH_FAILED;
    case CURLE_FILESIZE_EXCEEDED:
        snprintf(errstr, errstr_size, "body of %s is %lld bytes, over max.body.bytes (%lld): "
                 "not downloaded", url, (long long)announced, (long long)h->o.max_body);
        return VS_FETCH_FAILED;
    case CURLE_TOO_MANY_REDIRECTS:
        snprintf(errstr, errstr_size, "too many redirects from %s (max.redirects is %ld)", url,
                 h->o.max_redirects);
        return VS_FETCH_FAILED;
    case CURLE_UNSUPPORTED_PROTOCOL:
        snprintf(errstr, errstr_size, "%s%s refused: only http and https are allowed (%s)",
                 redirects > 0 || status / 100 == 3 ? "redirect from " : "", url, detail);
        return VS_FETCH_FAILED;
    case CURLE_ABORTED_BY_CALLBACK:
        snprintf(errstr, errstr_size, "fetching %s aborted: the connector is stopping", url);
        return VS_FETCH_FAILED;
    case CURLE_WRITE_ERROR:
        if (h->too_large) {
            snprintf(errstr, errstr_size, "body of %s is over max.body.bytes (%lld): transfer "
                     "aborted after %lld bytes", url, (long long)h->o.max_body, (long long)wire);
            return VS_FETCH_FAILED;
        }
        snprintf(errstr, errstr_size, "out of memory receiving %s", url);
        return VS_FETCH_FAILED;
    default:
        snprintf(errstr, errstr_size, "fetching %s failed: %s", url, detail);
        return VS_FETCH_FAILED;
    }

    if (status == 304) {
        if (!h->send_etag[0] && !h->send_lm[0]) {
            snprintf(errstr, errstr_size, "HTTP 304 from %s to a request that was not "
                     "conditional", url);
            return VS_FETCH_FAILED;
        }
        return VS_FETCH_NOT_MODIFIED;
    }
    if (status == 200 || status == 203) {
        memcpy(h->got_etag, h->etag, sizeof(h->got_etag));
        memcpy(h->got_lm, h->last_modified, sizeof(h->got_lm));
        return VS_FETCH_BODY;
    }
    fi->retry_after_ms = retry_after_ms(h);
    if (status / 100 == 3)
        snprintf(errstr, errstr_size, "HTTP %ld%s%s from %s without a usable Location", status,
                 h->reason[0] ? " " : "", h->reason, url);
    else if (fi->retry_after_ms >= 0)
        snprintf(errstr, errstr_size, "HTTP %ld%s%s from %s (Retry-After: %s)", status,
                 h->reason[0] ? " " : "", h->reason, url, h->retry_after);
    else
        snprintf(errstr, errstr_size, "HTTP %ld%s%s from %s", status, h->reason[0] ? " " : "",
                 h->reason, url);
    return VS_FETCH_FAILED;
}
