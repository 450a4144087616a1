/*
 * cql_types.c - record values to CQL [value]s and back to text. See
 * cql_types.h. Serialization formats follow section 6 of the v4 spec.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cql_types.h"
#include "textfmt.h"

/* ------------------------------------------------------------------------ */
/* Calendar                                                                  */
/* ------------------------------------------------------------------------ */


void cql_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int64_t y, unsigned m)
{
    static const int dim[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 ? 28 + leap : dim[m - 1];
}

/* Reads exactly k digits at s[*i]. */
static int digits(const char *s, size_t n, size_t *i, int k, int64_t *out)
{
    int64_t v = 0;
    if (*i + (size_t)k > n)
        return -1;
    for (int j = 0; j < k; j++) {
        char c = s[*i + (size_t)j];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *i += (size_t)k;
    *out = v;
    return 0;
}

static int parse_ymd(const char *s, size_t n, size_t *i, int64_t *days)
{
    int64_t y, m, d;
    if (digits(s, n, i, 4, &y) < 0 || *i >= n || s[*i] != '-')
        return -1;
    (*i)++;
    if (digits(s, n, i, 2, &m) < 0 || *i >= n || s[*i] != '-')
        return -1;
    (*i)++;
    if (digits(s, n, i, 2, &d) < 0)
        return -1;
    if (m < 1 || m > 12 || d < 1 || d > days_in_month(y, (unsigned)m))
        return -1;
    *days = textfmt_days_from_civil(y, (unsigned)m, (unsigned)d);
    return 0;
}

int cql_parse_date(const char *s, size_t n, int64_t *days)
{
    size_t i = 0;
    if (parse_ymd(s, n, &i, days) < 0 || i != n)
        return -1;
    return 0;
}

/* HH:MM[:SS[.frac]] at s[*i]; ns since midnight. need_seconds: "HH:MM:SS". */
static int parse_hms(const char *s, size_t n, size_t *i, int need_seconds, int64_t *ns)
{
    int64_t h, mi, sec = 0, frac = 0;
    if (digits(s, n, i, 2, &h) < 0 || *i >= n || s[*i] != ':')
        return -1;
    (*i)++;
    if (digits(s, n, i, 2, &mi) < 0)
        return -1;
    if (*i < n && s[*i] == ':') {
        (*i)++;
        if (digits(s, n, i, 2, &sec) < 0)
            return -1;
        if (*i < n && s[*i] == '.') {
            int k = 0;
            (*i)++;
            while (*i < n && s[*i] >= '0' && s[*i] <= '9') {
                if (k < 9) {
                    frac = frac * 10 + (s[*i] - '0');
                    k++;
                }
                (*i)++;
            }
            if (k == 0)
                return -1;
            for (; k < 9; k++)
                frac *= 10;
        }
    } else if (need_seconds) {
        return -1;
    }
    if (h > 23 || mi > 59 || sec > 59)
        return -1;
    *ns = ((h * 60 + mi) * 60 + sec) * 1000000000LL + frac;
    return 0;
}

int cql_parse_time(const char *s, size_t n, int64_t *ns)
{
    size_t i = 0;
    if (parse_hms(s, n, &i, 1, ns) < 0 || i != n)
        return -1;
    return 0;
}

/* A strict decimal integer: [+-]digits, nothing else. */
static int parse_int64(const char *s, size_t n, int64_t *out, int *overflow)
{
    size_t i = 0;
    int neg = 0;
    uint64_t v = 0, lim;

    *overflow = 0;
    if (n == 0)
        return -1;
    if (s[0] == '+' || s[0] == '-') {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == n)
        return -1;
    lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned dgt = (unsigned)(s[i] - '0');
        if (v > (lim - dgt) / 10)
            *overflow = 1;
        else
            v = v * 10 + dgt;
    }
    if (*overflow)
        return -1;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

int cql_parse_timestamp(const char *s, size_t n, int64_t *ms)
{
    size_t i = 0;
    int64_t days, ns = 0, off_min = 0;
    int ovf;

    if (parse_int64(s, n, ms, &ovf) == 0)
        return 0;
    if (parse_ymd(s, n, &i, &days) < 0)
        return -1;
    if (i < n && (s[i] == 'T' || s[i] == 't' || s[i] == ' ')) {
        i++;
        if (parse_hms(s, n, &i, 0, &ns) < 0)
            return -1;
    }
    if (i < n) {
        if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == n) {
            i++;
        } else if (s[i] == '+' || s[i] == '-') {
            int sign = s[i] == '-' ? -1 : 1;
            int64_t oh, om = 0;
            i++;
            if (digits(s, n, &i, 2, &oh) < 0)
                return -1;
            if (i < n && s[i] == ':')
                i++;
            if (i < n && digits(s, n, &i, 2, &om) < 0)
                return -1;
            if (oh > 23 || om > 59)
                return -1;
            off_min = sign * (oh * 60 + om);
        }
    }
    if (i != n)
        return -1;
    *ms = days * 86400000LL + ns / 1000000 - off_min * 60000;
    return 0;
}

void cql_format_timestamp(int64_t ms, char *out, size_t size)
{
    int64_t days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
    int64_t rem = ms - days * 86400000;
    int64_t y;
    unsigned m, d;
    cql_civil_from_days(days, &y, &m, &d);
    snprintf(out, size, "%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ", (long long)y, m, d,
             (int)(rem / 3600000), (int)(rem / 60000 % 60), (int)(rem / 1000 % 60),
             (int)(rem % 1000));
}

void cql_format_double(double d, char *out, size_t size)
{
    if (isnan(d)) {
        snprintf(out, size, "NaN");
        return;
    }
    if (isinf(d)) {
        snprintf(out, size, d > 0 ? "Infinity" : "-Infinity");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, size, "%.*g", prec, d);
        if (strtod(out, NULL) == d)
            return;
    }
}

/* ------------------------------------------------------------------------ */
/* UUIDs                                                                     */
/* ------------------------------------------------------------------------ */

void cql_uuidgen_init(struct cql_uuidgen *g)
{
    uint8_t rnd[8];
    memset(g, 0, sizeof(*g));
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)g;
        memcpy(rnd, &x, sizeof(rnd));
    }
    memcpy(g->node, rnd, 6);
    g->node[0] |= 0x01; /* multicast bit: a random node id, not a MAC (RFC 4122 4.5) */
    g->clock_seq = (uint16_t)((rnd[6] << 8 | rnd[7]) & 0x3FFF);
}

void cql_uuid_v1(struct cql_uuidgen *g, uint8_t out[16])
{
    struct timespec ts;
    uint64_t t;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* 100 ns intervals since 1582-10-15 00:00 UTC. */
    t = (uint64_t)ts.tv_sec * 10000000u + (uint64_t)ts.tv_nsec / 100 + 0x01B21DD213814000ull;
    if (t <= g->last)
        t = g->last + 1;
    g->last = t;
    uint32_t time_low = (uint32_t)t;
    uint16_t time_mid = (uint16_t)(t >> 32);
    uint16_t time_hi = (uint16_t)((t >> 48) & 0x0FFF) | 0x1000;
    out[0] = (uint8_t)(time_low >> 24);
    out[1] = (uint8_t)(time_low >> 16);
    out[2] = (uint8_t)(time_low >> 8);
    out[3] = (uint8_t)time_low;
    out[4] = (uint8_t)(time_mid >> 8);
    out[5] = (uint8_t)time_mid;
    out[6] = (uint8_t)(time_hi >> 8);
    out[7] = (uint8_t)time_hi;
    out[8] = (uint8_t)(0x80 | (g->clock_seq >> 8));
    out[9] = (uint8_t)g->clock_seq;
    memcpy(out + 10, g->node, 6);
}

int cql_uuid_parse(const char *s, size_t n, uint8_t out[16])
{
    size_t i = 0, k = 0;
    if (n != 36)
        return -1;
    while (i < n) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return -1;
            i++;
            continue;
        }
        int hi = textfmt_hexval(s[i]), lo = textfmt_hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[k++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    return k == 16 ? 0 : -1;
}

void cql_uuid_format(const uint8_t u[16], char out[37])
{
    static const char hex[] = "0123456789abcdef";
    size_t k = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[k++] = '-';
        out[k++] = hex[u[i] >> 4];
        out[k++] = hex[u[i] & 15];
    }
    out[k] = '\0';
}

/* ------------------------------------------------------------------------ */
/* Varint and decimal                                                        */
/* ------------------------------------------------------------------------ */

/* Minimal two's complement of a signed 64-bit integer. */
static void varint_from_i64(int64_t v, struct cql_buf *out)
{
    uint8_t b[8];
    int k = 0;
    for (int i = 7; i >= 0; i--)
        b[7 - i] = (uint8_t)((uint64_t)v >> (i * 8));
    /* Drop leading bytes that only repeat the sign. */
    while (k < 7 && ((b[k] == 0x00 && !(b[k + 1] & 0x80)) || (b[k] == 0xFF && (b[k + 1] & 0x80))))
        k++;
    cql_put_raw(out, b + k, (size_t)(8 - k));
}

/* Decimal digits (no sign) to a two's complement varint. */
static int varint_from_digits(const char *dg, size_t nd, int neg, struct cql_buf *out)
{
    /* Magnitude, big-endian, built by multiply-and-add per digit. */
    size_t cap = nd / 2 + 2, len = 1;
    uint8_t *mag = calloc(cap, 1);
    if (mag == NULL)
        return -1;
    for (size_t i = 0; i < nd; i++) {
        unsigned carry = (unsigned)(dg[i] - '0');
        for (size_t k = 0; k < len; k++) {
            unsigned v = mag[cap - 1 - k] * 10u + carry;
            mag[cap - 1 - k] = (uint8_t)v;
            carry = v >> 8;
        }
        while (carry) {
            mag[cap - 1 - len] = (uint8_t)carry;
            carry >>= 8;
            len++;
        }
    }
    uint8_t *m = mag + cap - len;
    while (len > 1 && m[0] == 0) {
        m++;
        len--;
    }
    int zero = len == 1 && m[0] == 0;
    if (zero || !neg) {
        if (m[0] & 0x80)
            cql_put_u8(out, 0x00);
        cql_put_raw(out, m, len);
    } else {
        /* -M: invert and add one, then make sure the top bit says negative. */
        uint8_t *t = malloc(len + 1);
        if (t == NULL) {
            free(mag);
            return -1;
        }
        t[0] = 0xFF;
        unsigned carry = 1;
        for (size_t k = len; k > 0; k--) {
            unsigned v = (uint8_t)~m[k - 1] + carry;
            t[k] = (uint8_t)v;
            carry = v >> 8;
        }
        size_t start = (t[1] & 0x80) ? 1 : 0;
        while (start < len && t[start] == 0xFF && (t[start + 1] & 0x80))
            start++;
        cql_put_raw(out, t + start, len + 1 - start);
        free(t);
    }
    free(mag);
    return out->oom ? -1 : 0;
}

int cql_varint_from_text(const char *s, size_t n, struct cql_buf *out)
{
    size_t i = 0;
    int neg = 0;
    if (n > 0 && (s[0] == '+' || s[0] == '-')) {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == n || n - i > CQL_VARINT_MAX_DIGITS)
        return -1;
    for (size_t k = i; k < n; k++)
        if (s[k] < '0' || s[k] > '9')
            return -1;
    return varint_from_digits(s + i, n - i, neg, out);
}

int cql_decimal_from_text(const char *s, size_t n, struct cql_buf *out)
{
    char dg[CQL_VARINT_MAX_DIGITS + 1];
    size_t i = 0, nd = 0, nint = 0, nfrac = 0;
    int neg = 0;
    int64_t exp = 0, scale;

    if (n > 0 && (s[0] == '+' || s[0] == '-')) {
        neg = s[0] == '-';
        i = 1;
    }
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, nint++)
        if (nd < sizeof(dg))
            dg[nd++] = s[i];
    if (i < n && s[i] == '.') {
        i++;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, nfrac++)
            if (nd < sizeof(dg))
                dg[nd++] = s[i];
    }
    if (nint + nfrac == 0 || nint + nfrac > CQL_VARINT_MAX_DIGITS)
        return -1;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        int ovf;
        i++;
        if (i == n || parse_int64(s + i, n - i, &exp, &ovf) < 0 || exp > INT32_MAX ||
            exp < INT32_MIN)
            return -1;
        i = n;
    }
    if (i != n)
        return -1;
    scale = (int64_t)nfrac - exp;
    if (scale > INT32_MAX || scale < INT32_MIN)
        return -1;
    cql_put_i32(out, (int32_t)scale);
    return varint_from_digits(dg, nd, neg, out);
}

/* Appends the decimal text of a two's complement varint. */
static int varint_text(const uint8_t *p, size_t n, int32_t scale, struct cql_buf *out)
{
    /* 512 bytes is over 1,200 digits: enough for any test or message, and
     * the quadratic division stays cheap. */
    if (n == 0 || n > 512)
        return -1;
    int neg = p[0] & 0x80;
    uint8_t *m = malloc(n);
    char *dg = malloc(n * 3 + 2);
    size_t nd = 0;
    if (m == NULL || dg == NULL) {
        free(m);
        free(dg);
        return -1;
    }
    memcpy(m, p, n);
    if (neg) {
        /* magnitude = ~v + 1 */
        unsigned carry = 1;
        for (size_t k = n; k > 0; k--) {
            unsigned v = (uint8_t)~m[k - 1] + carry;
            m[k - 1] = (uint8_t)v;
            carry = v >> 8;
        }
    }
    /* Repeated division by 10. */
    size_t start = 0;
    for (;;) {
        while (start < n && m[start] == 0)
            start++;
        if (start == n)
            break;
        unsigned rem = 0;
        for (size_t k = start; k < n; k++) {
            unsigned v = rem << 8 | m[k];
            m[k] = (uint8_t)(v / 10);
            rem = v % 10;
        }
        dg[nd++] = (char)('0' + rem);
    }
    if (nd == 0)
        dg[nd++] = '0';
    /* dg holds the digits least significant first. */
    if (neg && !(nd == 1 && dg[0] == '0'))
        cql_put_u8(out, '-');
    if (scale <= 0) {
        for (size_t k = nd; k > 0; k--)
            cql_put_u8(out, (uint8_t)dg[k - 1]);
        if (!(nd == 1 && dg[0] == '0'))
            for (int64_t z = 0; z < -(int64_t)scale && z < 4096; z++)
                cql_put_u8(out, '0');
    } else if ((size_t)scale >= nd) {
        cql_put_raw(out, "0.", 2);
        for (int64_t z = 0; z < (int64_t)scale - (int64_t)nd && z < 4096; z++)
            cql_put_u8(out, '0');
        for (size_t k = nd; k > 0; k--)
            cql_put_u8(out, (uint8_t)dg[k - 1]);
    } else {
        for (size_t k = nd; k > 0; k--) {
            cql_put_u8(out, (uint8_t)dg[k - 1]);
            if (k - 1 == (size_t)scale)
                cql_put_u8(out, '.');
        }
    }
    free(m);
    free(dg);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Binding                                                                   */
/* ------------------------------------------------------------------------ */

static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i <= k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* A short readable form of a source value for error messages. */
static const char *describe(const struct cql_src *v, char *out, size_t size)
{
    char tmp[40];
    switch (v->kind) {
    case CQL_SRC_NULL:
        snprintf(out, size, "null");
        break;
    case CQL_SRC_BOOL:
        snprintf(out, size, "%s", v->b ? "true" : "false");
        break;
    case CQL_SRC_INT:
        snprintf(out, size, "%lld", (long long)v->i);
        break;
    case CQL_SRC_DOUBLE:
        cql_format_double(v->d, out, size);
        break;
    case CQL_SRC_TIMESTAMP:
        cql_format_timestamp(v->i, tmp, sizeof(tmp));
        snprintf(out, size, "%s (timestamp)", tmp);
        break;
    case CQL_SRC_UUID:
        cql_uuid_format(v->uuid, tmp);
        snprintf(out, size, "%s", tmp);
        break;
    case CQL_SRC_TEXT: {
        /* Quoted, at most 40 bytes, control bytes as '?'. */
        size_t k = 0, lim = v->n < 40 ? v->n : 40;
        if (size < 8) {
            snprintf(out, size, "\"\"");
            break;
        }
        out[k++] = '"';
        for (size_t i = 0; i < lim && k + 5 < size; i++)
            out[k++] = (unsigned char)v->s[i] < 0x20 || v->s[i] == '"' ? '?' : v->s[i];
        if (v->n > lim && k + 5 < size) {
            memcpy(out + k, "...", 3);
            k += 3;
        }
        out[k++] = '"';
        out[k] = '\0';
        break;
    }
    case CQL_SRC_LIST:
        snprintf(out, size, "a list");
        break;
    case CQL_SRC_MAP:
        snprintf(out, size, "an object");
        break;
    }
    return out;
}

struct bind_ctx {
    const char *col;
    const struct cql_type *coltype; /* the column's type, for messages */
    int null_unset;
    char *err;
    size_t errsz;
    int depth;
    char where[64];                 /* "element 3: " inside collections */
};

static int bind_fail(struct bind_ctx *c, const struct cql_src *v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bind_fail(struct bind_ctx *c, const struct cql_src *v, const char *fmt, ...)
{
    char tn[96], vd[64], why[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errsz, "column '%s' is %s: %svalue %s %s", c->col,
             cql_type_name(c->coltype, tn, sizeof(tn)), c->where, describe(v, vd, sizeof(vd)),
             why);
    return -1;
}

/* The integer a source stands for, within [lo, hi]. */
static int src_int(struct bind_ctx *c, const struct cql_src *v, int64_t lo, int64_t hi,
                   const char *tname, int64_t *out)
{
    int64_t x;
    int ovf = 0;
    switch (v->kind) {
    case CQL_SRC_INT:
    case CQL_SRC_TIMESTAMP:
        x = v->i;
        break;
    case CQL_SRC_DOUBLE:
        if (!isfinite(v->d) || floor(v->d) != v->d)
            return bind_fail(c, v, "is not an integer");
        if (v->d < -9223372036854775808.0 || v->d >= 9223372036854775808.0)
            return bind_fail(c, v, "is out of range for %s (%lld..%lld)", tname, (long long)lo,
                             (long long)hi);
        x = (int64_t)v->d;
        break;
    case CQL_SRC_TEXT:
        if (parse_int64(v->s, v->n, &x, &ovf) < 0) {
            if (ovf)
                return bind_fail(c, v, "is out of range for %s (%lld..%lld)", tname,
                                 (long long)lo, (long long)hi);
            return bind_fail(c, v, "is not an integer");
        }
        break;
    case CQL_SRC_BOOL:
        return bind_fail(c, v, "is a boolean, not an integer");
    default:
        return bind_fail(c, v, "is not an integer");
    }
    if (x < lo || x > hi)
        return bind_fail(c, v, "is out of range for %s (%lld..%lld)", tname, (long long)lo,
                         (long long)hi);
    *out = x;
    return 0;
}

static int src_double(struct bind_ctx *c, const struct cql_src *v, double *out)
{
    switch (v->kind) {
    case CQL_SRC_INT:
        *out = (double)v->i;
        return 0;
    case CQL_SRC_DOUBLE:
        *out = v->d;
        return 0;
    case CQL_SRC_TEXT: {
        char buf[64], *end;
        if (v->n == 0 || v->n >= sizeof(buf))
            return bind_fail(c, v, "is not a number");
        memcpy(buf, v->s, v->n);
        buf[v->n] = '\0';
        if (strcmp(buf, "NaN") == 0)
            *out = NAN;
        else if (strcmp(buf, "Infinity") == 0)
            *out = INFINITY;
        else if (strcmp(buf, "-Infinity") == 0)
            *out = -INFINITY;
        else {
            /* Decimal notation only: strtod would also take hex, "inf", "nan". */
            if (buf[strspn(buf, "0123456789+-.eE")] != '\0')
                return bind_fail(c, v, "is not a number");
            errno = 0;
            *out = strtod(buf, &end);
            if (end != buf + v->n)
                return bind_fail(c, v, "is not a number");
        }
        return 0;
    }
    default:
        return bind_fail(c, v, "is not a number");
    }
}

static int src_text_like(struct bind_ctx *c, const struct cql_src *v, char *tmp, size_t tsz,
                         const char **p, size_t *n)
{
    switch (v->kind) {
    case CQL_SRC_TEXT:
        *p = v->s;
        *n = v->n;
        return 0;
    case CQL_SRC_INT:
        snprintf(tmp, tsz, "%lld", (long long)v->i);
        break;
    case CQL_SRC_DOUBLE:
        cql_format_double(v->d, tmp, tsz);
        break;
    case CQL_SRC_BOOL:
        snprintf(tmp, tsz, "%s", v->b ? "true" : "false");
        break;
    case CQL_SRC_TIMESTAMP:
        cql_format_timestamp(v->i, tmp, tsz);
        break;
    case CQL_SRC_UUID:
        cql_uuid_format(v->uuid, tmp);
        break;
    default:
        return bind_fail(c, v, "is not text");
    }
    *p = tmp;
    *n = strlen(tmp);
    return 0;
}

static int bind_payload(struct cql_buf *out, const struct cql_type *t, const struct cql_src *v,
                        struct bind_ctx *c);

/* [int] length + payload, for a whole value or a collection element. */
static int bind_sized(struct cql_buf *out, const struct cql_type *t, const struct cql_src *v,
                      struct bind_ctx *c, int top)
{
    size_t lenpos = out->len;
    if (v->kind == CQL_SRC_NULL) {
        if (!top)
            return bind_fail(c, v, "is not allowed inside a collection");
        cql_put_i32(out, c->null_unset ? -2 : -1);
        return out->oom ? -1 : 0;
    }
    cql_put_i32(out, 0);
    if (bind_payload(out, t, v, c) < 0) {
        out->len = lenpos;
        return -1;
    }
    if (out->len - lenpos - 4 > INT32_MAX) {
        out->len = lenpos;
        return bind_fail(c, v, "is larger than 2 GiB");
    }
    cql_patch_i32(out, lenpos, (int32_t)(out->len - lenpos - 4));
    return 0;
}

static void put_be(struct cql_buf *out, uint64_t v, int bytes)
{
    if (cql_buf_reserve(out, (size_t)bytes) < 0)
        return;
    for (int i = bytes - 1; i >= 0; i--)
        out->p[out->len++] = (uint8_t)(v >> (i * 8));
}

static int bind_payload(struct cql_buf *out, const struct cql_type *t, const struct cql_src *v,
                        struct bind_ctx *c)
{
    int64_t x;
    double d;
    char tmp[64];
    const char *p = NULL;
    size_t n = 0;

    switch (t->id) {
    case CQL_T_TINYINT:
        if (src_int(c, v, -128, 127, "tinyint", &x) < 0)
            return -1;
        put_be(out, (uint64_t)x, 1);
        return 0;
    case CQL_T_SMALLINT:
        if (src_int(c, v, -32768, 32767, "smallint", &x) < 0)
            return -1;
        put_be(out, (uint64_t)x, 2);
        return 0;
    case CQL_T_INT:
        if (src_int(c, v, INT32_MIN, INT32_MAX, "int", &x) < 0)
            return -1;
        put_be(out, (uint64_t)x, 4);
        return 0;
    case CQL_T_BIGINT:
        if (src_int(c, v, INT64_MIN, INT64_MAX, "bigint", &x) < 0)
            return -1;
        put_be(out, (uint64_t)x, 8);
        return 0;
    case CQL_T_VARINT:
        if (v->kind == CQL_SRC_TEXT) {
            if (cql_varint_from_text(v->s, v->n, out) < 0)
                return bind_fail(c, v, "is not an integer");
            return 0;
        }
        if (v->kind == CQL_SRC_DOUBLE && isfinite(v->d) && floor(v->d) == v->d &&
            fabs(v->d) >= 9223372036854775808.0) {
            snprintf(tmp, sizeof(tmp), "%.0f", v->d);
            if (cql_varint_from_text(tmp, strlen(tmp), out) < 0)
                return bind_fail(c, v, "is too large");
            return 0;
        }
        if (src_int(c, v, INT64_MIN, INT64_MAX, "varint", &x) < 0)
            return -1;
        varint_from_i64(x, out);
        return 0;
    case CQL_T_DECIMAL:
        if (v->kind == CQL_SRC_INT) {
            cql_put_i32(out, 0);
            varint_from_i64(v->i, out);
            return 0;
        }
        if (v->kind == CQL_SRC_DOUBLE) {
            if (!isfinite(v->d))
                return bind_fail(c, v, "is not a finite number");
            cql_format_double(v->d, tmp, sizeof(tmp));
            p = tmp;
            n = strlen(tmp);
        } else if (v->kind == CQL_SRC_TEXT) {
            p = v->s;
            n = v->n;
        } else {
            return bind_fail(c, v, "is not a number");
        }
        if (cql_decimal_from_text(p, n, out) < 0)
            return bind_fail(c, v, "is not a decimal number");
        return 0;
    case CQL_T_DOUBLE:
        if (src_double(c, v, &d) < 0)
            return -1;
        {
            uint64_t u;
            memcpy(&u, &d, 8);
            put_be(out, u, 8);
        }
        return 0;
    case CQL_T_FLOAT:
        if (src_double(c, v, &d) < 0)
            return -1;
        if (isfinite(d) && fabs(d) > FLT_MAX)
            return bind_fail(c, v, "is out of range for float");
        {
            float f = (float)d;
            uint32_t u;
            memcpy(&u, &f, 4);
            put_be(out, u, 4);
        }
        return 0;
    case CQL_T_BOOLEAN:
        if (v->kind == CQL_SRC_BOOL) {
            cql_put_u8(out, v->b ? 1 : 0);
            return 0;
        }
        if (v->kind == CQL_SRC_INT && (v->i == 0 || v->i == 1)) {
            cql_put_u8(out, (uint8_t)v->i);
            return 0;
        }
        if (v->kind == CQL_SRC_TEXT) {
            if (v->n == 4 && strncasecmp(v->s, "true", 4) == 0) {
                cql_put_u8(out, 1);
                return 0;
            }
            if (v->n == 5 && strncasecmp(v->s, "false", 5) == 0) {
                cql_put_u8(out, 0);
                return 0;
            }
        }
        return bind_fail(c, v, "is not a boolean");
    case CQL_T_VARCHAR:
    case CQL_T_ASCII:
        if (src_text_like(c, v, tmp, sizeof(tmp), &p, &n) < 0)
            return -1;
        if (t->id == CQL_T_ASCII) {
            for (size_t i = 0; i < n; i++)
                if ((unsigned char)p[i] >= 0x80)
                    return bind_fail(c, v, "is not ASCII");
        } else if (!utf8_valid((const unsigned char *)p, n)) {
            return bind_fail(c, v, "is not valid UTF-8");
        }
        cql_put_raw(out, p, n);
        return 0;
    case CQL_T_BLOB:
        if (v->kind != CQL_SRC_TEXT)
            return bind_fail(c, v, "is not text (blobs take the bytes of a string)");
        cql_put_raw(out, v->s, v->n);
        return 0;
    case CQL_T_TIMESTAMP:
        if (v->kind == CQL_SRC_TEXT) {
            if (cql_parse_timestamp(v->s, v->n, &x) < 0)
                return bind_fail(c, v, "is not a timestamp (ISO 8601 or epoch milliseconds)");
        } else if (v->kind == CQL_SRC_TIMESTAMP || v->kind == CQL_SRC_INT ||
                   v->kind == CQL_SRC_DOUBLE) {
            if (src_int(c, v, INT64_MIN, INT64_MAX, "timestamp", &x) < 0)
                return -1;
        } else {
            return bind_fail(c, v, "is not a timestamp");
        }
        put_be(out, (uint64_t)x, 8);
        return 0;
    case CQL_T_DATE:
        if (v->kind == CQL_SRC_TEXT) {
            if (cql_parse_date(v->s, v->n, &x) < 0)
                return bind_fail(c, v, "is not a date (YYYY-MM-DD)");
        } else if (v->kind == CQL_SRC_TIMESTAMP) {
            x = v->i >= 0 ? v->i / 86400000 : -((-v->i + 86399999) / 86400000);
        } else if (v->kind == CQL_SRC_INT) {
            x = v->i; /* days since the epoch */
        } else {
            return bind_fail(c, v, "is not a date");
        }
        if (x < -2147483648LL || x > 2147483647LL)
            return bind_fail(c, v, "is out of range for date");
        put_be(out, (uint64_t)(x + 2147483648LL), 4);
        return 0;
    case CQL_T_TIME:
        if (v->kind == CQL_SRC_TEXT) {
            if (cql_parse_time(v->s, v->n, &x) < 0)
                return bind_fail(c, v, "is not a time of day (HH:MM:SS[.fraction])");
        } else if (v->kind == CQL_SRC_INT) {
            x = v->i;
            if (x < 0 || x > 86399999999999LL)
                return bind_fail(c, v, "is out of range for time (0..86399999999999 ns)");
        } else {
            return bind_fail(c, v, "is not a time of day");
        }
        put_be(out, (uint64_t)x, 8);
        return 0;
    case CQL_T_UUID:
    case CQL_T_TIMEUUID: {
        uint8_t u[16];
        if (v->kind == CQL_SRC_UUID)
            memcpy(u, v->uuid, 16);
        else if (v->kind != CQL_SRC_TEXT || cql_uuid_parse(v->s, v->n, u) < 0)
            return bind_fail(c, v, "is not a uuid");
        if (t->id == CQL_T_TIMEUUID && (u[6] >> 4) != 1)
            return bind_fail(c, v, "is not a time-based (version 1) uuid");
        cql_put_raw(out, u, 16);
        return 0;
    }
    case CQL_T_INET: {
        uint8_t a[16];
        char buf[64];
        if (v->kind != CQL_SRC_TEXT || v->n >= sizeof(buf))
            return bind_fail(c, v, "is not an IP address");
        memcpy(buf, v->s, v->n);
        buf[v->n] = '\0';
        if (inet_pton(AF_INET, buf, a) == 1) {
            cql_put_raw(out, a, 4);
            return 0;
        }
        if (inet_pton(AF_INET6, buf, a) == 1) {
            cql_put_raw(out, a, 16);
            return 0;
        }
        return bind_fail(c, v, "is not an IP address");
    }
    case CQL_T_LIST:
    case CQL_T_SET:
    case CQL_T_MAP: {
        int want_map = t->id == CQL_T_MAP;
        if (c->depth >= 8)
            return bind_fail(c, v, "nests collections too deeply");
        if (want_map ? v->kind != CQL_SRC_MAP : v->kind != CQL_SRC_LIST)
            return bind_fail(c, v, "is not %s", want_map ? "an object" : "a list");
        if (v->count > INT32_MAX)
            return bind_fail(c, v, "has too many elements");
        cql_put_i32(out, (int32_t)v->count);
        char saved[sizeof(c->where)];
        memcpy(saved, c->where, sizeof(saved));
        c->depth++;
        for (size_t i = 0; i < v->count; i++) {
            struct cql_src key, val;
            memset(&key, 0, sizeof(key));
            memset(&val, 0, sizeof(val));
            if (v->elem(v, i, &key, &val) < 0) {
                c->depth--;
                return bind_fail(c, v, "has an element that cannot be read");
            }
            if (want_map) {
                cql_textf(c->where, sizeof(c->where), "%skey %.*s: ", saved,
                         (int)(key.n < 24 ? key.n : 24), key.s ? key.s : "");
                if (bind_sized(out, t->sub[0], &key, c, 0) < 0)
                    goto nested_fail;
            } else {
                cql_textf(c->where, sizeof(c->where), "%selement %zu: ", saved, i);
            }
            if (bind_sized(out, t->sub[want_map ? 1 : 0], &val, c, 0) < 0)
                goto nested_fail;
        }
        c->depth--;
        memcpy(c->where, saved, sizeof(saved));
        return 0;
    nested_fail:
        c->depth--;
        memcpy(c->where, saved, sizeof(saved));
        return -1;
    }
    case CQL_T_COUNTER:
        return bind_fail(c, v, "cannot be written: counter columns are refused (idempotent "
                               "upserts only)");
    default:
        return bind_fail(c, v, "cannot be written: the type is not supported");
    }
}

int cql_bind(struct cql_buf *out, const struct cql_type *t, const struct cql_src *v,
             const char *col, int null_unset, char *errstr, size_t errstr_size)
{
    struct bind_ctx c = { col, t, null_unset, errstr, errstr_size, 0, "" };
    size_t start = out->len;
    int rc = bind_sized(out, t, v, &c, 1);
    if (rc == 0 && out->oom) {
        snprintf(errstr, errstr_size, "column '%s': out of memory", col);
        rc = -1;
    }
    if (rc < 0 && !out->oom)
        out->len = start;
    return rc;
}

int cql_type_bindable(const struct cql_type *t)
{
    switch (t->id) {
    case CQL_T_COUNTER:
    case CQL_T_CUSTOM:
    case CQL_T_UDT:
    case CQL_T_TUPLE:
        return 0;
    case CQL_T_LIST:
    case CQL_T_SET:
    case CQL_T_MAP:
        for (uint16_t i = 0; i < t->n; i++)
            if (!cql_type_bindable(t->sub[i]))
                return 0;
        return 1;
    default:
        return cql_type_simple(t->id) != NULL;
    }
}

/* ------------------------------------------------------------------------ */
/* Values to text                                                            */
/* ------------------------------------------------------------------------ */

static uint64_t get_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_text(struct cql_buf *out, const char *s)
{
    cql_put_raw(out, s, strlen(s));
}

static int value_text(const struct cql_type *t, const uint8_t *p, int32_t n, struct cql_buf *out,
                      int depth)
{
    char tmp[128];

    if (n < 0) {
        put_text(out, "null");
        return 0;
    }
    if (depth > CQL_TYPE_DEPTH)
        return -1;
    switch (t->id) {
    case CQL_T_TINYINT:
    case CQL_T_SMALLINT:
    case CQL_T_INT:
    case CQL_T_BIGINT:
    case CQL_T_COUNTER:
    case CQL_T_TIMESTAMP:
    case CQL_T_TIME: {
        int w = t->id == CQL_T_TINYINT ? 1 : t->id == CQL_T_SMALLINT ? 2
              : t->id == CQL_T_INT ? 4 : 8;
        if (n != w)
            return -1;
        uint64_t u = get_be(p, w);
        int64_t v = w == 8 ? (int64_t)u : w == 4 ? (int32_t)(uint32_t)u
                  : w == 2 ? (int16_t)(uint16_t)u : (int8_t)(uint8_t)u;
        snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
        put_text(out, tmp);
        return 0;
    }
    case CQL_T_BOOLEAN:
        if (n != 1)
            return -1;
        put_text(out, p[0] ? "true" : "false");
        return 0;
    case CQL_T_DOUBLE: {
        double d;
        uint64_t u;
        if (n != 8)
            return -1;
        u = get_be(p, 8);
        memcpy(&d, &u, 8);
        cql_format_double(d, tmp, sizeof(tmp));
        put_text(out, tmp);
        return 0;
    }
    case CQL_T_FLOAT: {
        float f;
        uint32_t u;
        if (n != 4)
            return -1;
        u = (uint32_t)get_be(p, 4);
        memcpy(&f, &u, 4);
        if (isnan(f) || isinf(f)) {
            cql_format_double(f, tmp, sizeof(tmp));
        } else {
            for (int prec = 1; prec <= 9; prec++) {
                snprintf(tmp, sizeof(tmp), "%.*g", prec, (double)f);
                if (strtof(tmp, NULL) == f)
                    break;
            }
        }
        put_text(out, tmp);
        return 0;
    }
    case CQL_T_VARCHAR:
    case CQL_T_ASCII:
        cql_put_raw(out, p, (size_t)n);
        return 0;
    case CQL_T_BLOB:
    case CQL_T_CUSTOM:
        put_text(out, "0x");
        for (int32_t i = 0; i < n; i++) {
            snprintf(tmp, sizeof(tmp), "%02x", p[i]);
            put_text(out, tmp);
        }
        return 0;
    case CQL_T_UUID:
    case CQL_T_TIMEUUID:
        if (n != 16)
            return -1;
        cql_uuid_format(p, tmp);
        put_text(out, tmp);
        return 0;
    case CQL_T_DATE: {
        int64_t y;
        unsigned m, d;
        if (n != 4)
            return -1;
        cql_civil_from_days((int64_t)get_be(p, 4) - 2147483648LL, &y, &m, &d);
        snprintf(tmp, sizeof(tmp), "%04lld-%02u-%02u", (long long)y, m, d);
        put_text(out, tmp);
        return 0;
    }
    case CQL_T_INET:
        if (n != 4 && n != 16)
            return -1;
        inet_ntop(n == 4 ? AF_INET : AF_INET6, p, tmp, sizeof(tmp));
        put_text(out, tmp);
        return 0;
    case CQL_T_VARINT:
        return varint_text(p, (size_t)n, 0, out);
    case CQL_T_DECIMAL:
        if (n < 5)
            return -1;
        return varint_text(p + 4, (size_t)n - 4, (int32_t)(uint32_t)get_be(p, 4), out);
    case CQL_T_LIST:
    case CQL_T_SET:
    case CQL_T_MAP:
    case CQL_T_TUPLE:
    case CQL_T_UDT: {
        struct cql_rd r;
        int32_t cnt;
        int is_map = t->id == CQL_T_MAP, is_udt = t->id == CQL_T_UDT;
        int fixed = t->id == CQL_T_TUPLE || is_udt;
        cql_rd_init(&r, p, (size_t)n);
        cnt = fixed ? t->n : cql_get_i32(&r);
        if (r.err || cnt < 0 || (!fixed && (size_t)cnt * 4 > cql_rd_left(&r)))
            return -1;
        put_text(out, is_map || is_udt ? "{" : t->id == CQL_T_TUPLE ? "(" : "[");
        for (int32_t i = 0; i < cnt; i++) {
            struct cql_str k, v;
            if (i)
                put_text(out, ", ");
            if (fixed && cql_rd_left(&r) == 0)
                break; /* a UDT or tuple value may stop early */
            if (is_map) {
                k = cql_get_bytes(&r);
                if (r.err || value_text(t->sub[0], (const uint8_t *)k.p, k.n, out, depth + 1) < 0)
                    return -1;
                put_text(out, ": ");
            } else if (is_udt) {
                cql_put_raw(out, t->names[i].p, t->names[i].n > 0 ? (size_t)t->names[i].n : 0);
                put_text(out, ": ");
            }
            v = cql_get_bytes(&r);
            if (r.err)
                return -1;
            if (value_text(t->sub[is_map ? 1 : fixed ? i : 0], (const uint8_t *)v.p, v.n, out,
                           depth + 1) < 0)
                return -1;
        }
        put_text(out, is_map || is_udt ? "}" : t->id == CQL_T_TUPLE ? ")" : "]");
        return 0;
    }
    default:
        return -1;
    }
}

int cql_value_text(const struct cql_type *t, const uint8_t *p, int32_t n, struct cql_buf *out)
{
    return value_text(t, p, n, out, 0);
}
