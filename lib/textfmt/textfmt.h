/* textfmt - number and timestamp text shared by the host's row writer and
 * plugins (a static library, like sjson; never part of the host ABI), so a
 * value reads the same whichever side printed it. */
#ifndef SPOKE_TEXTFMT_H
#define SPOKE_TEXTFMT_H

#include <stddef.h>
#include <stdint.h>

/* v in decimal; o holds 21 bytes. Returns the length (no NUL). */
size_t textfmt_int(int64_t v, char *o);
/* d in its shortest round-trip form, always recognisable as a double ("3.0",
 * "0.1", "1e300", "1e-7"); non-finite: "null". o holds 32 bytes. */
size_t textfmt_double(double d, char *o);
/* ms since the epoch as "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC; expanded years
 * "+010000-..." outside 0000-9999). o holds 32 bytes. */
size_t textfmt_timestamp(int64_t ms, char *o);
/* strtod in the C locale (JSON and CSV numbers always use '.'). */
double textfmt_strtod(const char *s, char **end);
/* Validates the UTF-8 sequence starting at p (p[0] >= 0x80, p < end):
 * returns its length, or 0 when it is invalid (overlong, a UTF-16
 * surrogate, above U+10FFFF, a stray continuation byte or truncated). Inline:
 * parsers call it from their hot loops. */
static inline size_t textfmt_utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;   /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;               /* overlong */
        else if (c == 0xED)
            hi = 0x9F;               /* UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;               /* overlong */
        else if (c == 0xF4)
            hi = 0x8F;               /* above U+10FFFF */
    } else {
        return 0;                    /* continuation byte, C0/C1, F5..FF */
    }
    if ((size_t)(end - p) <= need || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t k = 2; k <= need; k++)
        if ((p[k] & 0xC0) != 0x80)
            return 0;
    return need + 1;
}

/* 1 when buf[0..len) is valid UTF-8; else 0 and *bad (if not NULL) is the
 * offset of the first invalid sequence. */
int textfmt_utf8_valid(const void *buf, size_t len, size_t *bad);

/* Proleptic Gregorian calendar <-> days since 1970-01-01 (H. Hinnant). */
void textfmt_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);
int64_t textfmt_days_from_civil(int64_t y, unsigned m, unsigned d);

/* Value of one hexadecimal digit (either case), or -1. */
int textfmt_hexval(int c);

#endif
