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
/* Proleptic Gregorian calendar <-> days since 1970-01-01 (H. Hinnant). */
void textfmt_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);
int64_t textfmt_days_from_civil(int64_t y, unsigned m, unsigned d);

#endif
