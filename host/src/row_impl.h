/* row_impl - the layout of schemas and rows, for the host modules that walk
 * rows on every record (row.c builds them, rowjson.c writes them). Everything
 * else, and every plugin, goes through the row_* functions of record.h.
 *
 * Invariants the readers rely on:
 *   - v[i].type is an enum spoke_type; the union member follows it.
 *   - a STRING value is valid UTF-8 with a NUL at u.s.p[u.s.len].
 *   - v[i].owns is set iff the value holds memory of its own (a string
 *     outside the row's reserve, or a child row); nown counts those values.
 */
#ifndef SPOKE_ROW_IMPL_H
#define SPOKE_ROW_IMPL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "spoke/plugin.h"

/* Above this many fields schema_index switches from a linear scan to the
 * hash table: a scan comparing lengths first beats hashing for a handful of
 * short names. */
#define SCHEMA_LINEAR_MAX 16

struct schema_field {
    char *name;           /* "name\0" followed by the JSON key text (jkey) */
    size_t len;           /* strlen(name) */
    const char *jkey;     /* "\"name\":" escaped, inside the same block */
    size_t jlen;
    uint32_t hash;
    enum spoke_type type;
};

/* Largest string reserve row_new gives a row of a schema by itself. */
#define ROW_RES_HINT_MAX 256

struct spoke_schema {
    atomic_int frozen;
    /* String bytes that rows of this schema turned out to need (learned by
     * row_set_string, at most ROW_RES_HINT_MAX): row_new reserves that much,
     * so a producer that builds rows field by field stops paying a malloc
     * per string once the first rows have been seen. */
    atomic_size_t res_hint;
    size_t n, cap;
    struct schema_field *f;
    int32_t *slots;       /* open addressing, -1 = empty; built once n > SCHEMA_LINEAR_MAX */
    size_t nslots;        /* power of two, or 0 */
    /* On a cache line of its own: a row's producer and consumer threads
     * change it for every row, and would otherwise keep evicting the
     * read-mostly fields above from each other's caches. */
    _Alignas(64) atomic_uint refs;
    char pad_refs[64 - sizeof(atomic_uint)];
};

/* The layout of the ABI's struct spoke_value (row_values lends v[] as
 * that; row.c checks the two agree): owns is in its host_private bytes. */
struct row_val {
    unsigned char type;     /* enum spoke_type */
    unsigned char owns;     /* frees something when cleared: a string outside
                               the reserve, or a child row */
    union {
        int b;
        int64_t i;          /* INT and TIMESTAMP */
        double d;
        struct spoke_row *child;
        struct {
            char *p;
            size_t len;
        } s;
    } u;
};

struct spoke_row {
    struct spoke_schema *schema;  /* NULL for a list */
    size_t n;
    char *res;                    /* string reserve, inside this allocation */
    size_t res_used, res_cap;
    size_t nown;                  /* values with owns set: 0 lets row_free skip
                                     the walk over the values */
    uint8_t pool;                 /* recycle class of this allocation (recycle.h) */
    struct row_val v[];
};

#endif
