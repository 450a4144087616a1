#include "textfmt.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* strtod and %g obey LC_NUMERIC; JSON always uses '.'. The host does not
 * change the locale, but a plugin could: numbers are parsed with strtod_l in
 * the C locale and the writer normalizes snprintf's decimal point. */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void) { c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0); }

double textfmt_strtod(const char *s, char **end)
{
    pthread_once(&c_locale_once, c_locale_init);
    return c_locale ? strtod_l(s, end, c_locale) : strtod(s, end);
}

int textfmt_utf8_valid(const void *buf, size_t len, size_t *bad)
{
    const unsigned char *s = buf, *end = s + len;
    while (s < end) {
        /* ASCII runs dominate real data: check eight bytes at a time. */
        while (end - s >= 8) {
            uint64_t w;
            memcpy(&w, s, 8);
            if (w & 0x8080808080808080ull)
                break;
            s += 8;
        }
        if (s >= end)
            break;
        if (*s < 0x80) {
            s++;
            continue;
        }
        size_t n = textfmt_utf8_seq(s, end);
        if (!n) {
            if (bad)
                *bad = (size_t)(s - (const unsigned char *)buf);
            return 0;
        }
        s += n;
    }
    return 1;
}

int textfmt_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int64_t textfmt_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static const char digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* Writes v in decimal at o; returns the number of bytes (at most 20).
 * Counts the digits first, then writes them backwards two per division:
 * integers are most of the values in typical rows. */
size_t textfmt_int(int64_t v, char *o)
{
    if (v >= 0 && v < 10) {
        o[0] = (char)('0' + v);
        return 1;
    }
    size_t k = 0;
    /* Through uint64_t so that INT64_MIN negates without overflow. */
    uint64_t u = (uint64_t)v;
    if (v < 0) {
        o[k++] = '-';
        u = 0 - u;
    }
    size_t nd = 1;
    for (uint64_t p = 10; nd < 20 && u >= p; p *= 10)
        nd++;
    char *e = o + k + nd;
    while (u >= 100) {
        unsigned r = (unsigned)(u % 100);
        u /= 100;
        e -= 2;
        memcpy(e, digit_pairs + 2 * r, 2);
    }
    if (u >= 10)
        memcpy(e - 2, digit_pairs + 2 * u, 2);
    else
        e[-1] = (char)('0' + u);
    return k + nd;
}

/* Writes d as the shortest of its %.15g, %.16g and %.17g forms that strtod
 * reads back as the same double (17 digits always do), so 0.1 is "0.1",
 * not "0.10000000000000001". The text is always recognisable as a double by
 * a reader that tells integers apart (rowjson_parse does): a whole value
 * gets ".0" ("3.0", "-0.0", "9007199254740994.0"), and an exponent form
 * keeps its "e", tidied to "1e300" / "1e-7". Non-finite values have no JSON
 * form: "null". o must hold 32 bytes; returns the length. */
size_t textfmt_double(double d, char *o)
{
    if (!isfinite(d)) {
        memcpy(o, "null", 4);
        return 4;
    }
    /* Whole numbers below 1e15 are exact and print as integers: skip the
     * snprintf/strtod round trip, the expensive part of this function. */
    if (fabs(d) < 1e15 && d == (double)(int64_t)d) {
        size_t n = 0;
        if (d == 0 && signbit(d))
            o[n++] = '-';
        n += textfmt_int((int64_t)d, o + n);
        memcpy(o + n, ".0", 2);
        return n + 2;
    }
    /* Fixed-point fast path (coordinates, prices, ratios): the smallest k
     * such that r = round(d * 10^k) gives r / 10^k == d in double. Both sides
     * are then the correctly rounded value of the same rational r * 10^-k
     * (r < 2^53 and 10^k <= 10^15 are exact), so strtod reads the decimal
     * text back as d: the same guarantee as the round trip below, without
     * snprintf and strtod. Small magnitudes keep the exponent form. */
    if (fabs(d) >= 1e-4 && fabs(d) < 1e15) {
        static const double p10[] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8,
                                      1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15 };
        for (int k = 1; k <= 15; k++) {
            double sc = d * p10[k];
            if (fabs(sc) >= 9007199254740992.0)
                break;
            double r = nearbyint(sc);
            if (r / p10[k] != d)
                continue;
            uint64_t u = (uint64_t)fabs(r), pk = (uint64_t)p10[k];
            size_t n = 0;
            if (d < 0)
                o[n++] = '-';
            n += textfmt_int((int64_t)(u / pk), o + n);
            o[n++] = '.';
            uint64_t frac = u % pk;
            for (int i = k - 1; i >= 0; i--) {
                o[n + (size_t)i] = (char)('0' + frac % 10);
                frac /= 10;
            }
            return n + (size_t)k;
        }
    }
    char tmp[40];
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
        for (int k = 0; k < n; k++)
            if (tmp[k] == ',')
                tmp[k] = '.';   /* a locale with a decimal comma */
        if (textfmt_strtod(tmp, NULL) == d)
            break;
    }
    /* Tidy the exponent ("1e+300" -> "1e300", "1e-07" -> "1e-7") and note
     * whether the text would read back as an integer. */
    size_t k = 0;
    int looks_int = 1;
    for (int i = 0; i < n; i++) {
        char c = tmp[i];
        if (c == '.') {
            looks_int = 0;
        } else if (c == 'e') {
            looks_int = 0;
            o[k++] = 'e';
            i++;
            if (tmp[i] == '-')
                o[k++] = '-';
            else if (tmp[i] != '+')
                i--;
            while (i + 1 < n - 1 && tmp[i + 1] == '0')
                i++;
            continue;
        }
        o[k++] = c;
    }
    if (looks_int) {
        memcpy(o + k, ".0", 2);
        k += 2;
    }
    return k;
}

/* Gregorian date of a day count since 1970-01-01 (H. Hinnant's
 * civil_from_days); exact for the whole int64 millisecond range. */
void textfmt_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

static char *put2(char *o, unsigned v)
{
    o[0] = (char)('0' + v / 10);
    o[1] = (char)('0' + v % 10);
    return o + 2;
}

/* Writes ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC). Years outside 0000-9999
 * use ISO 8601's expanded form with a sign and at least six digits, as
 * ECMAScript's toISOString does ("+010000-01-01T...", "-000001-..."). No
 * gmtime/strftime: this runs once per timestamp field of every row.
 * o must hold 40 bytes; returns the length. */
size_t textfmt_timestamp(int64_t ms, char *o)
{
    int64_t secs = ms / 1000, rem = ms % 1000;
    if (rem < 0) {
        rem += 1000;
        secs--;
    }
    int64_t days = secs / 86400, sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days--;
    }
    int64_t y;
    unsigned mon, day;
    textfmt_civil_from_days(days, &y, &mon, &day);
    char *p = o;
    if (y >= 0 && y <= 9999) {
        p = put2(p, (unsigned)(y / 100));
        p = put2(p, (unsigned)(y % 100));
    } else {
        char digits[24];
        size_t nd = textfmt_int(y < 0 ? -y : y, digits);
        *p++ = y < 0 ? '-' : '+';
        for (size_t z = nd; z < 6; z++)
            *p++ = '0';
        memcpy(p, digits, nd);
        p += nd;
    }
    *p++ = '-';
    p = put2(p, mon);
    *p++ = '-';
    p = put2(p, day);
    *p++ = 'T';
    p = put2(p, (unsigned)(sod / 3600));
    *p++ = ':';
    p = put2(p, (unsigned)(sod / 60 % 60));
    *p++ = ':';
    p = put2(p, (unsigned)(sod % 60));
    *p++ = '.';
    *p++ = (char)('0' + rem / 100);
    p = put2(p, (unsigned)(rem % 100));
    *p++ = 'Z';
    return (size_t)(p - o);
}

