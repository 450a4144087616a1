/*
 * cql_types.h - binding record values to CQL types (internal to
 * cassandra_sink; no host API here, so the unit tests and the fuzz harness
 * use it alone).
 *
 * A value to bind is described by a struct cql_src: what the record holds
 * (null, boolean, 64-bit integer, double, text, timestamp, a generated uuid,
 * or a nested list/map reached through a callback). cql_bind() converts it
 * to the column's CQL type (from the PREPARED bound-variable metadata) and
 * appends the protocol [value]. Conversions that would change the value
 * (12.5 into an int, 70000 into a smallint, "abc" into a timestamp) are
 * refused with a message naming the column, its type and the value.
 */
#ifndef CQL_TYPES_H
#define CQL_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include "cql_frame.h"

enum cql_src_kind {
    CQL_SRC_NULL = 0,   /* absent or null */
    CQL_SRC_BOOL,
    CQL_SRC_INT,        /* int64 */
    CQL_SRC_DOUBLE,
    CQL_SRC_TEXT,       /* bytes (UTF-8 expected for text columns) */
    CQL_SRC_TIMESTAMP,  /* int64 ms since the epoch */
    CQL_SRC_UUID,       /* 16 bytes (now()) */
    CQL_SRC_LIST,       /* count elements through elem() */
    CQL_SRC_MAP         /* count (name, value) entries through elem() */
};

struct cql_src {
    enum cql_src_kind kind;
    int b;
    int64_t i;          /* INT, TIMESTAMP */
    double d;
    const char *s;      /* TEXT */
    size_t n;
    uint8_t uuid[16];
    /* LIST / MAP: element i into *val (and its name into *key for maps, as
     * TEXT). Returns 0, or -1 when the element cannot be read. */
    size_t count;
    int (*elem)(const struct cql_src *self, size_t i, struct cql_src *key, struct cql_src *val);
    const void *ctx, *ctx2;
};

/*
 * Appends v as a [value] of type t to out. A null source is written as null
 * ([int] -1), or as "not set" (-2) when null_unset is true, which leaves the
 * column untouched and writes no tombstone. col names the column in errors.
 * Returns 0; or -1 with errstr set ("column 'temp' is int: value 12.5 is not
 * an integer") and out unchanged.
 */
int cql_bind(struct cql_buf *out, const struct cql_type *t, const struct cql_src *v,
             const char *col, int null_unset, char *errstr, size_t errstr_size);

/* True when values of t can be bound at all (counter and custom types
 * cannot; collections only of bindable types). */
int cql_type_bindable(const struct cql_type *t);

/*
 * Appends a readable form of the serialized value (p, n; n < 0: null) of
 * type t to out: numbers in decimal, timestamp as epoch ms, date as
 * YYYY-MM-DD, uuid canonical, decimal/varint exact, blob as 0x..., text as
 * is, collections as [a, b] / {k: v}. Returns 0, or -1 when the bytes are
 * not a valid value of t (then out holds a partial text).
 */
int cql_value_text(const struct cql_type *t, const uint8_t *p, int32_t n, struct cql_buf *out);

/* ---- helpers, exposed for the tests ---- */

/* Version-1 (time-based) UUIDs: 100 ns ticks since 1582-10-15, a random
 * clock sequence and a random multicast node id chosen at init; strictly
 * increasing within a generator. */
struct cql_uuidgen {
    uint64_t last;
    uint16_t clock_seq;
    uint8_t node[6];
};
void cql_uuidgen_init(struct cql_uuidgen *g);
void cql_uuid_v1(struct cql_uuidgen *g, uint8_t out[16]);
/* Parses 8-4-4-4-12 hex (either case); 0 or -1. */
int cql_uuid_parse(const char *s, size_t n, uint8_t out[16]);
void cql_uuid_format(const uint8_t u[16], char out[37]);

/* ISO 8601 date-time (YYYY-MM-DD[(T| )HH:MM[:SS[.fraction]]][Z|(+|-)HH[:MM]])
 * or epoch milliseconds as an integer, to ms. 0 or -1. */
int cql_parse_timestamp(const char *s, size_t n, int64_t *ms);
/* YYYY-MM-DD to days since 1970-01-01. 0 or -1. */
int cql_parse_date(const char *s, size_t n, int64_t *days);
/* HH:MM:SS[.fraction] to nanoseconds since midnight. 0 or -1. */
int cql_parse_time(const char *s, size_t n, int64_t *ns);
void cql_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);
/* ms since the epoch as 2024-11-19T07:35:04.000Z into out (>= 32 bytes). */
void cql_format_timestamp(int64_t ms, char *out, size_t size);
/* Shortest text that reads back as exactly d (%.17g at most). */
void cql_format_double(double d, char *out, size_t size);

/* An arbitrary-size decimal integer ([+-]digits) as a varint (minimal two's
 * complement, big-endian) appended to out. 0, or -1 when malformed or longer
 * than CQL_VARINT_MAX_DIGITS. */
#define CQL_VARINT_MAX_DIGITS 1000
int cql_varint_from_text(const char *s, size_t n, struct cql_buf *out);
/* A decimal number ([+-]digits[.digits][(e|E)[+-]digits]) as the CQL
 * decimal encoding (scale, varint). 0 or -1. */
int cql_decimal_from_text(const char *s, size_t n, struct cql_buf *out);

#endif
