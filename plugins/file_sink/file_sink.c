/*
 * file_sink - appends every record's value to a file as one NDJSON line.
 *
 * put() only buffers in memory; flush() writes the whole buffer with
 * write(2) (O_APPEND), then fsync(2)s it when `fsync` is on, and only then
 * reports success: the host acknowledges records after flush, so a record
 * is never acknowledged before it is on disk. Delivery is at-least-once: a
 * crash between the write and the acknowledgement replays those records and
 * the file holds them twice.
 *
 * Values are written as their bytes. A value holding a line break (CR or
 * LF) would split the line: it must then be JSON, checked by the grammar
 * here rather than parsed (a parser refuses valid JSON it cannot represent,
 * such as 1e400, 2^64 or "\u0000", and re-serializing would change numbers
 * like 0.1). Its bytes are copied with each line break between tokens
 * turned into a space and one inside a string turned into the escape \r or
 * \n: the same JSON value, on one line. A value with a line break that is
 * not JSON is refused.
 *
 * format value writes the value alone (a null value, a tombstone, as
 * `null`); format keyed writes {"key":...,"value":...}, so a tombstone says
 * which key it deletes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spoke/plugin.h>

static const char *const fk_formats[] = { "value", "keyed", NULL };

static const struct spoke_config_field fk_config[] = {
    { .name = "file", .type = SPOKE_CFG_STRING, .flags = SPOKE_CFG_REQUIRED,
      .doc = "Path of the NDJSON file to append to (created if missing)" },
    { .name = "fsync", .type = SPOKE_CFG_BOOL, .default_value = "true",
      .doc = "fsync the file on every flush, before records are acknowledged" },
    { .name = "format", .type = SPOKE_CFG_STRING, .default_value = "value",
      .doc = "value: each record's value on a line (a null value as null); keyed: "
             "{\"key\":...,\"value\":...} on a line, so a tombstone names its key",
      .allowed = fk_formats },
    { 0 }
};

struct fk_state {
    const struct spoke_host_api *api;
    struct spoke_instance *inst;
    const char *path;        /* config value, host-owned */
    int do_fsync;            /* config, and the file is a regular file */
    int keyed;               /* format keyed */
    int fd;                  /* -1 until start() */

    char *buf;               /* lines put since the last successful flush */
    size_t len, cap;
    int64_t pending;         /* records in buf (or written but not yet synced) */
    int64_t pending_bytes;
    int unsynced;            /* bytes were written since the last fsync */
    int sync_errno;          /* an fsync failed: nothing written since is trusted */

    unsigned char *nest;     /* fk_json_check: the open arrays and objects */
    size_t nest_cap;
};

static int fk_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                   const struct spoke_config *cfg, void **out,
                   char *errstr, size_t errstr_size)
{
    struct fk_state *st = calloc(1, sizeof(*st));
    const char *format;

    if (st == NULL) {
        snprintf(errstr, errstr_size, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    st->api = api;
    st->inst = inst;
    st->path = api->config_string(cfg, "file");
    st->do_fsync = api->config_bool(cfg, "fsync");
    format = api->config_string(cfg, "format");
    st->keyed = format != NULL && strcmp(format, "keyed") == 0;
    st->fd = -1;
    assert(st->path != NULL); /* required: the host validated it */
    *out = st;
    return SPOKE_OK;
}

/* Writes all of p[0..n) to fd, retrying short writes and EINTR. Returns the
 * bytes written; fewer than n means errno tells why. */
static size_t fk_write_all(int fd, const char *p, size_t n)
{
    size_t done = 0;

    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return done;
        }
        if (w == 0) {
            errno = EIO; /* no progress and no reason: do not spin */
            return done;
        }
        done += (size_t)w;
    }
    return done;
}

/*
 * A file that does not end with a newline holds the torn tail of a write
 * cut short (a crash, a full disk). The records of that write were never
 * acknowledged and will be written again, so end the fragment with a line
 * break rather than glue the next record to it. The check needs read
 * access; without it the file is left as it is.
 */
static int fk_end_torn_line(struct fk_state *st, off_t size, char *errstr, size_t errstr_size)
{
    char last = '\n';
    int rfd;

    if (size == 0)
        return SPOKE_OK;
    rfd = open(st->path, O_RDONLY | O_CLOEXEC);
    if (rfd < 0)
        return SPOKE_OK;
    if (pread(rfd, &last, 1, size - 1) != 1)
        last = '\n';
    close(rfd);
    if (last == '\n')
        return SPOKE_OK;
    st->api->log(st->inst, SPOKE_LOG_WARN,
                 "%s does not end with a newline (an earlier write was cut short): "
                 "starting a new line", st->path);
    if (fk_write_all(st->fd, "\n", 1) != 1) {
        snprintf(errstr, errstr_size, "cannot write %s: %s", st->path, strerror(errno));
        return SPOKE_ERR_IO;
    }
    st->unsynced = 1;
    return SPOKE_OK;
}

static int fk_start(void *vst, char *errstr, size_t errstr_size)
{
    struct fk_state *st = vst;
    struct stat sb;

    st->fd = open(st->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (st->fd < 0) {
        snprintf(errstr, errstr_size, "cannot open %s: %s", st->path, strerror(errno));
        return SPOKE_ERR_IO;
    }
    if (fstat(st->fd, &sb) < 0) {
        snprintf(errstr, errstr_size, "cannot stat %s: %s", st->path, strerror(errno));
        return SPOKE_ERR_IO;
    }
    if (!S_ISREG(sb.st_mode)) {
        /* A device or a pipe (/dev/stdout): nothing to sync or repair. */
        st->do_fsync = 0;
        return SPOKE_OK;
    }
    return fk_end_torn_line(st, sb.st_size, errstr, errstr_size);
}

/* Ensures room for n more bytes in the buffer. */
static int fk_reserve(struct fk_state *st, size_t n)
{
    size_t ncap;
    char *nbuf;

    if (st->cap - st->len >= n)
        return 0;
    ncap = st->cap ? st->cap : 64 * 1024;
    while (ncap - st->len < n) {
        if (ncap > SIZE_MAX / 2)
            return -1;
        ncap *= 2;
    }
    nbuf = realloc(st->buf, ncap);
    if (nbuf == NULL)
        return -1;
    st->buf = nbuf;
    st->cap = ncap;
    return 0;
}

/* ---- JSON without a parser --------------------------------------------- */

enum fk_json { FK_JSON_OK = 0, FK_JSON_BAD = 1, FK_JSON_NOMEM = 2 };

static int fk_is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int fk_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int fk_is_hex(unsigned char c)
{
    return fk_is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Scans the string starting at the quote v[*pi]; on success *pi is just
 * past the closing quote. Raw control characters inside are let through
 * (lenient, as many producers are; they are copied as they are). On failure
 * *pi is where the string goes wrong and *why says how. */
static int fk_scan_string(const unsigned char *v, size_t n, size_t *pi, const char **why)
{
    size_t i = *pi + 1, k;

    while (i < n) {
        unsigned char c = v[i];
        if (c == '"') {
            *pi = i + 1;
            return 1;
        }
        if (c != '\\') {
            i++;
            continue;
        }
        if (i + 1 >= n)
            break;
        c = v[i + 1];
        if (c == 'u') {
            for (k = 2; k < 6; k++)
                if (i + k >= n || !fk_is_hex(v[i + k])) {
                    *why = "bad \\u escape in a string";
                    *pi = i;
                    return 0;
                }
            i += 6;
        } else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n'
                   || c == 'r' || c == 't') {
            i += 2;
        } else {
            *why = "bad escape in a string";
            *pi = i;
            return 0;
        }
    }
    *why = "unterminated string";
    return 0; /* *pi stays at the opening quote */
}

/* Scans the number starting at v[*pi] (RFC 8259 grammar; any size). */
static int fk_scan_number(const unsigned char *v, size_t n, size_t *pi, const char **why)
{
    size_t i = *pi;

    if (v[i] == '-')
        i++;
    if (i < n && v[i] == '0') {
        i++;
    } else if (i < n && fk_is_digit(v[i])) {
        while (i < n && fk_is_digit(v[i]))
            i++;
    } else {
        *why = "bad number";
        *pi = i;
        return 0;
    }
    if (i < n && v[i] == '.') {
        if (++i >= n || !fk_is_digit(v[i])) {
            *why = "bad number (no digit after '.')";
            *pi = i;
            return 0;
        }
        while (i < n && fk_is_digit(v[i]))
            i++;
    }
    if (i < n && (v[i] == 'e' || v[i] == 'E')) {
        if (++i < n && (v[i] == '+' || v[i] == '-'))
            i++;
        if (i >= n || !fk_is_digit(v[i])) {
            *why = "bad number (no digit in the exponent)";
            *pi = i;
            return 0;
        }
        while (i < n && fk_is_digit(v[i]))
            i++;
    }
    *pi = i;
    return 1;
}

/*
 * Checks that v[0..n) is one JSON value (RFC 8259), by its grammar only:
 * numbers of any size and any escape are fine, nothing is converted. One
 * leniency: strings may hold raw control characters. Returns FK_JSON_OK,
 * FK_JSON_BAD with *why and *at (the byte offset) set, or FK_JSON_NOMEM.
 */
static int fk_json_check(struct fk_state *st, const unsigned char *v, size_t n,
                         const char **why, size_t *at)
{
    enum { S_VALUE, S_VALUE_OR_CLOSE, S_KEY, S_KEY_OR_CLOSE, S_COLON, S_NEXT } state = S_VALUE;
    size_t i = 0, depth = 0;

    for (;;) {
        unsigned char c, top;

        while (i < n && fk_is_ws(v[i]))
            i++;
        if (i == n) {
            if (state == S_NEXT && depth == 0)
                return FK_JSON_OK;
            *why = depth == 0 && state == S_VALUE ? "no value" : "unexpected end";
            goto bad;
        }
        c = v[i];
        switch (state) {
        case S_NEXT:
            if (depth == 0) {
                *why = "text after the value";
                goto bad;
            }
            top = st->nest[depth - 1];
            if (c == ',') {
                state = top == '[' ? S_VALUE : S_KEY;
                i++;
            } else if (c == (top == '[' ? ']' : '}')) {
                depth--;
                i++;
            } else {
                *why = top == '[' ? "expected ',' or ']'" : "expected ',' or '}'";
                goto bad;
            }
            continue;
        case S_KEY_OR_CLOSE:
            if (c == '}') {
                depth--;
                i++;
                state = S_NEXT;
                continue;
            }
            /* fall through */
        case S_KEY:
            if (c != '"') {
                *why = "expected a string (an object key)";
                goto bad;
            }
            if (!fk_scan_string(v, n, &i, why))
                goto bad;
            state = S_COLON;
            continue;
        case S_COLON:
            if (c != ':') {
                *why = "expected ':'";
                goto bad;
            }
            i++;
            state = S_VALUE;
            continue;
        case S_VALUE_OR_CLOSE:
            if (c == ']') {
                depth--;
                i++;
                state = S_NEXT;
                continue;
            }
            /* fall through */
        case S_VALUE:
            break;
        }
        /* A value. */
        if (c == '[' || c == '{') {
            if (depth == st->nest_cap) {
                size_t ncap = st->nest_cap ? st->nest_cap * 2 : 64;
                unsigned char *p = realloc(st->nest, ncap);
                if (p == NULL)
                    return FK_JSON_NOMEM;
                st->nest = p;
                st->nest_cap = ncap;
            }
            st->nest[depth++] = c;
            i++;
            state = c == '[' ? S_VALUE_OR_CLOSE : S_KEY_OR_CLOSE;
            continue;
        }
        if (c == '"') {
            if (!fk_scan_string(v, n, &i, why))
                goto bad;
        } else if (c == '-' || fk_is_digit(c)) {
            if (!fk_scan_number(v, n, &i, why))
                goto bad;
        } else if (n - i >= 4 && (memcmp(v + i, "true", 4) == 0 || memcmp(v + i, "null", 4) == 0)) {
            i += 4;
        } else if (n - i >= 5 && memcmp(v + i, "false", 5) == 0) {
            i += 5;
        } else {
            *why = "unexpected character";
            goto bad;
        }
        state = S_NEXT;
    }

bad:
    *at = i;
    return FK_JSON_BAD;
}

/* Copies the JSON value v[0..n) (fk_json_check passed) to out on one line:
 * a CR or LF between tokens (whitespace) becomes a space, one inside a
 * string (only a lenient producer writes it raw) the escape \r or \n. out
 * has room for 2n bytes. Returns the bytes written. */
static size_t fk_one_line(char *out, const unsigned char *v, size_t n)
{
    size_t i, o = 0;
    int in_string = 0;

    for (i = 0; i < n; i++) {
        unsigned char c = v[i];
        if (in_string) {
            if (c == '\\') {
                out[o++] = (char)c;
                c = v[++i]; /* the escaped character: never CR or LF */
            } else if (c == '"') {
                in_string = 0;
            } else if (c == '\n' || c == '\r') {
                out[o++] = '\\';
                c = c == '\n' ? 'n' : 'r';
            }
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '\n' || c == '\r') {
            c = ' ';
        }
        out[o++] = (char)c;
    }
    return o;
}

static int fk_has_line_break(const char *v, size_t n)
{
    return memchr(v, '\n', n) != NULL || memchr(v, '\r', n) != NULL;
}

/* True when s[0..n) is UTF-8 (shortest forms, no surrogates, <= U+10FFFF). */
static int fk_utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0, len, k;

    while (i < n) {
        unsigned char c = s[i];
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

/* Writes the UTF-8 text s[0..n) as a JSON string literal at out (room for
 * 6n + 2 bytes); returns the bytes written. */
static size_t fk_json_string(char *out, const unsigned char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, o = 0;

    out[o++] = '"';
    for (i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            out[o++] = (char)c;
            continue;
        }
        out[o++] = '\\';
        switch (c) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '\n': out[o++] = 'n'; break;
        case '\r': out[o++] = 'r'; break;
        case '\t': out[o++] = 't'; break;
        case '\b': out[o++] = 'b'; break;
        case '\f': out[o++] = 'f'; break;
        default:
            memcpy(out + o, "u00", 3);
            o += 3;
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 0xf];
        }
    }
    out[o++] = '"';
    return o;
}

/* ---- put --------------------------------------------------------------- */

/*
 * Checks a value that must be JSON (one with a line break, or any value in
 * format keyed). SPOKE_OK, or an error with errstr set; `what` starts the
 * message.
 */
static int fk_value_check(struct fk_state *st, const char *val, size_t vlen, const char *what,
                          char *errstr, size_t errstr_size)
{
    const char *why = NULL;
    size_t at = 0;

    switch (fk_json_check(st, (const unsigned char *)val, vlen, &why, &at)) {
    case FK_JSON_OK:
        return SPOKE_OK;
    case FK_JSON_BAD:
        snprintf(errstr, errstr_size, "%s is not JSON (%s at byte %zu)", what, why, at);
        return SPOKE_ERR_INVALID;
    default:
        snprintf(errstr, errstr_size, "out of memory checking a value of %zu bytes", vlen);
        return SPOKE_ERR_NOMEM;
    }
}

/* Appends the value (checked JSON when it has a line break) on one line;
 * room for 2 * vlen bytes is reserved. */
static size_t fk_append_value(struct fk_state *st, const char *val, size_t vlen, int line_break)
{
    if (line_break)
        return fk_one_line(st->buf + st->len, (const unsigned char *)val, vlen);
    memcpy(st->buf + st->len, val, vlen);
    return vlen;
}

static int fk_put(void *vst, const struct spoke_record *rec, char *errstr, size_t errstr_size)
{
    struct fk_state *st = vst;
    const struct spoke_host_api *api = st->api;
    const char *val, *key = NULL;
    size_t vlen = 0, klen = 0, need, start = st->len;
    int line_break, rc;

    val = api->record_value_bytes(rec, &vlen);
    if (val == NULL && api->record_value_forms(rec) != 0) {
        /* Not a tombstone: the host could not serialize the value. */
        snprintf(errstr, errstr_size, "cannot serialize the value (out of memory)");
        return SPOKE_ERR_NOMEM;
    }
    if (val == NULL) {
        val = "null";
        vlen = 4;
    }
    line_break = fk_has_line_break(val, vlen);
    if (st->keyed) {
        key = api->record_key(rec, &klen);
        if (key != NULL && !fk_utf8_valid((const unsigned char *)key, klen)) {
            snprintf(errstr, errstr_size,
                     "key is not UTF-8 (format keyed writes it as a JSON string)");
            return SPOKE_ERR_INVALID;
        }
        rc = fk_value_check(st, val, vlen, "value (format keyed writes it inside a JSON object)",
                            errstr, errstr_size);
        if (rc != SPOKE_OK)
            return rc;
    } else if (line_break) {
        rc = fk_value_check(st, val, vlen, "value contains a line break and", errstr, errstr_size);
        if (rc != SPOKE_OK)
            return rc;
    }

    /* Room: the value (doubled when line breaks may become escapes), the
     * key (6 bytes per byte at worst, quotes) and the envelope. */
    if (vlen > (SIZE_MAX - 64) / 2 || klen > (SIZE_MAX - 64) / 12)
        goto nomem;
    need = (line_break ? 2 * vlen : vlen) + 1;
    if (st->keyed)
        need += 6 * klen + 32;
    if (fk_reserve(st, need) < 0)
        goto nomem;

    if (st->keyed) {
        static const char k[] = "{\"key\":", v[] = ",\"value\":";
        memcpy(st->buf + st->len, k, sizeof(k) - 1);
        st->len += sizeof(k) - 1;
        if (key != NULL) {
            st->len += fk_json_string(st->buf + st->len, (const unsigned char *)key, klen);
        } else {
            memcpy(st->buf + st->len, "null", 4);
            st->len += 4;
        }
        memcpy(st->buf + st->len, v, sizeof(v) - 1);
        st->len += sizeof(v) - 1;
        st->len += fk_append_value(st, val, vlen, line_break);
        st->buf[st->len++] = '}';
    } else {
        st->len += fk_append_value(st, val, vlen, line_break);
    }
    st->buf[st->len++] = '\n';
    st->pending++;
    st->pending_bytes += (int64_t)(st->len - start);
    return SPOKE_OK;

nomem:
    snprintf(errstr, errstr_size, "out of memory buffering %zu bytes", vlen);
    return SPOKE_ERR_NOMEM;
}

static int fk_flush(void *vst, char *errstr, size_t errstr_size)
{
    struct fk_state *st = vst;
    const struct spoke_host_api *api = st->api;
    size_t done;

    /* After a failed fsync the kernel may have dropped the dirty pages and
     * a later fsync can succeed without them: never report success again
     * from this instance (a restart replays the unacknowledged records). */
    if (st->sync_errno != 0) {
        snprintf(errstr, errstr_size, "an earlier fsync of %s failed (%s); data may be lost",
                 st->path, strerror(st->sync_errno));
        return SPOKE_ERR_IO;
    }
    if (st->len > 0) {
        done = fk_write_all(st->fd, st->buf, st->len);
        if (done > 0)
            st->unsynced = 1;
        if (done < st->len) {
            int err = errno;
            /* Keep what was not written, so a second flush goes on from there. */
            memmove(st->buf, st->buf + done, st->len - done);
            st->len -= done;
            snprintf(errstr, errstr_size, "cannot write %s: %s", st->path, strerror(err));
            return SPOKE_ERR_IO;
        }
        st->len = 0;
    }
    if (st->do_fsync && st->unsynced) {
        if (fsync(st->fd) < 0) {
            st->sync_errno = errno;
            snprintf(errstr, errstr_size, "cannot fsync %s: %s", st->path, strerror(errno));
            return SPOKE_ERR_IO;
        }
    }
    st->unsynced = 0;
    if (st->pending > 0) {
        api->metric_add(st->inst, "records_written", st->pending);
        api->metric_add(st->inst, "bytes_written", st->pending_bytes);
        st->pending = 0;
        st->pending_bytes = 0;
    }
    return SPOKE_OK;
}

/* Unflushed lines are dropped: they were never acknowledged, so the host
 * delivers them again after a restart. */
static void fk_destroy(void *vst)
{
    struct fk_state *st = vst;
    if (st == NULL)
        return;
    if (st->fd >= 0)
        close(st->fd);
    free(st->buf);
    free(st->nest);
    free(st);
}

static const struct spoke_plugin file_sink = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "file_sink",
    .kind        = SPOKE_KIND_SINK,
    .version     = "0.1.0",
    .description = "Appends record values to a file as NDJSON, fsynced before acknowledgement",
    .config      = fk_config,
    .init        = fk_init,
    .start       = fk_start,
    .put         = fk_put,
    .flush       = fk_flush,
    .destroy     = fk_destroy,
};

/* The plugin's only exported symbol: returns the constant descriptor. */
SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void)
{
    return &file_sink;
}
