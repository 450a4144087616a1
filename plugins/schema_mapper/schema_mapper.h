/*
 * schema_mapper.h - internals of the schema_mapper transform, shared by its
 * parts. Not an ABI: nothing here crosses the plugin boundary.
 *
 *   schema_mapper.c         plugin descriptor, config table, callbacks, metrics
 *   schema_mapper_schema.c  schema file (YAML) -> compiled mapper; lookups; filters
 *   schema_mapper_expr.c    computed-field expressions: compile and evaluate
 *   schema_mapper_json.c    the single-pass validating JSON extractor
 *   schema_mapper_walk.c    extraction from rows and simdjson DOMs; CSV lines
 *   schema_mapper_value.c   coercions, numbers, timestamps, text, hash maps, arena
 *   schema_mapper_map.c     one record: extract -> type -> lookup -> compute -> filter -> row
 *
 * Model. The schema declares output fields. Source fields (path, column,
 * meta) are extracted into capture slots as raw source values (struct
 * sm_src: a view into the input, not yet typed), then coerced to the field's
 * type (struct sm_val). Lookup fields and computed fields are derived from
 * earlier fields. Filters run as soon as the field they test is known, and
 * decide before typing errors: a record that fails but that a filter on a
 * field that did type rejects is dropped (schema_mapper_map.c).
 *
 * JSON paths compile into a trie of nodes (struct sm_node). The extractor
 * walks the input once and, at each object member or array element, follows
 * the trie edges that match; everything else is validated and skipped.
 */
#ifndef SCHEMA_MAPPER_H
#define SCHEMA_MAPPER_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <spoke/plugin.h>

#include "problems.h"
#include "sjson.h"

/* Longest error text a part writes (the host's errstr is 256 bytes). */
#define SM_ERR SPOKE_ERRSTR_SIZE

/* Field types of the schema language. */
enum sm_ftype {
    SM_T_NONE = 0,
    SM_T_STRING,
    SM_T_INT,        /* 32-bit signed, stored as a row INT */
    SM_T_LONG,       /* 64-bit signed */
    SM_T_DOUBLE,
    SM_T_BOOL,
    SM_T_TIMESTAMP,  /* ms since the epoch, UTC */
    SM_T_LIST,
    SM_T_ANY         /* list items only: each element keeps its own type */
};

/* Where a field's value comes from. */
enum sm_srckind { SM_SRC_PATH = 1, SM_SRC_COLUMN, SM_SRC_META, SM_SRC_LOOKUP, SM_SRC_EXPR };
enum sm_meta { SM_META_KEY = 1, SM_META_TOPIC, SM_META_PARTITION, SM_META_OFFSET, SM_META_TIMESTAMP };
enum sm_missing { SM_MISS_NULL = 1, SM_MISS_DEFAULT, SM_MISS_DROP, SM_MISS_ERROR };
enum sm_format { SM_FMT_JSON = 1, SM_FMT_CSV };
enum sm_parser { SM_PARSER_EXTRACTOR = 1, SM_PARSER_SIMDJSON };

/* Kinds of raw source values. */
enum sm_sk {
    SM_SK_MISSING = 0, /* the path matched nothing */
    SM_SK_NULL,
    SM_SK_BOOL,        /* u.b */
    SM_SK_INT,         /* u.i */
    SM_SK_UINT,        /* u.u, above INT64_MAX */
    SM_SK_DOUBLE,      /* u.d */
    SM_SK_NUMTXT,      /* u.s: a validated JSON number's text */
    SM_SK_STR,         /* u.s: valid UTF-8 bytes */
    SM_SK_ESTR,        /* u.s: a validated JSON string body holding escapes */
    SM_SK_TS,          /* u.i: ms since the epoch */
    SM_SK_ARRAY,       /* container: see bk */
    SM_SK_OBJECT
};
/* How a container is held. */
enum sm_bk { SM_BK_TEXT = 1, SM_BK_SJ, SM_BK_ROW };

struct sm_src {
    uint8_t k;   /* enum sm_sk */
    uint8_t bk;  /* enum sm_bk, for containers */
    union {
        int b;
        int64_t i;
        uint64_t u;
        double d;
        struct {
            const char *p;
            size_t n;
        } s;                          /* also the raw span of a BK_TEXT container */
        struct sj_value sj;
        const struct spoke_row *row;
    } u;
};

/* Why a value is null (for the message of a required field). */
enum sm_why { SM_WHY_MISSING = 0, SM_WHY_NULL, SM_WHY_NULLTEXT, SM_WHY_OPERAND, SM_WHY_DIV0,
              SM_WHY_RANGE, SM_WHY_LOOKUP };

/* A typed value. t is an enum spoke_type (NULL, BOOL, INT, DOUBLE, STRING,
 * TIMESTAMP, LIST). Strings point into the input, the arena or the schema's
 * own storage; they live until the next record. */
struct sm_val {
    uint8_t t;
    uint8_t why;     /* enum sm_why when t is NULL */
    int16_t arg;     /* SM_WHY_OPERAND: field index of the null operand */
    union {
        int b;
        int64_t i;
        double d;
        struct {
            const char *p;
            size_t n;
        } s;
        struct {
            struct sm_val *v;
            size_t n;
        } l;
    } u;
};

/* A growable vector of raw values (the captures of a wildcard path). */
struct sm_srcvec {
    struct sm_src *v;
    size_t n, cap;
    int present;     /* the array the wildcard runs over was there */
};

/* A growable vector of typed values (the elements of a list field). */
struct sm_valvec {
    struct sm_val *v;
    size_t n, cap;
};

/* ---- arena: per-record scratch memory, reset between records ---- */
struct sm_chunk;
struct sm_arena {
    struct sm_chunk *head;
};
void *sm_arena_alloc(struct sm_arena *a, size_t n);
void sm_arena_reset(struct sm_arena *a);
void sm_arena_free(struct sm_arena *a);

/* ---- hash map: text key -> value (lookups, `in` filters) ----
 * Compact for the per-record lookup: a slot array of 8 bytes per slot (a
 * 32-bit hash tag and an entry index), the entries back to back in
 * insertion order, and every key in one byte array. A 1,500-key table is
 * 32 KB of slots, 60 KB of entries and 9 KB of keys. */
struct sm_hent {
    struct sm_val val;  /* strings owned (see sm_val_own) */
    uint32_t koff;      /* the key: keys + koff, klen bytes, NUL-terminated */
    uint32_t klen;
    int line;           /* where it was defined (file line), for duplicate messages */
};
struct sm_hmap {
    uint64_t *slot;     /* cap: 0 empty, else (hash >> 32) << 32 | entry index + 1 */
    struct sm_hent *ent;
    char *keys;
    size_t cap, n, ecap, kused, kcap;
};
uint64_t sm_hash(const void *p, size_t n);
/* Finds key; NULL when absent. */
struct sm_hent *sm_hmap_get(const struct sm_hmap *h, const char *key, size_t klen);
/* Finds or inserts key; *existed tells which. NULL on out-of-memory (or
 * more than 2^32 - 2 entries or key bytes). A new entry's value is NULL;
 * the caller sets it and passes ownership of its strings. The pointer is
 * valid until the next put. */
struct sm_hent *sm_hmap_put(struct sm_hmap *h, const char *key, size_t klen, int *existed);
void sm_hmap_free(struct sm_hmap *h);

/* ---- the compiled schema ---- */

struct sm_node;
struct sm_edge {
    char *key;               /* NUL-terminated (no NUL inside) */
    size_t klen;
    struct sm_node *child;
};
struct sm_idx {
    int64_t i;
    struct sm_node *child;
};

/* The member layout an object node saw last, by member position: the
 * bytes `"key":` and the edge they lead to. Streams of same-shaped objects
 * then match a key with one comparison instead of scanning and hashing it
 * (the cached bytes were validated when stored; equal bytes are equally
 * valid). Two entries per position, for alternating shapes such as the
 * one-key objects [{"mechanical":1},{"ebike":0}]. */
#define SM_PRED_POS 32
#define SM_PRED_KEY 58
struct sm_pred {
    uint8_t len;             /* 0 = empty */
    uint8_t next;            /* entry 0 only: which entry a miss replaces */
    int16_t edge;            /* -1: the key leads nowhere in the trie */
    char bytes[SM_PRED_KEY];
};

/* Row input: where an object node's edges are in one input schema (the
 * field index of each edge's key, -1 when the schema has no such field).
 * Rows of one upstream schema come in streams, so the names are resolved
 * once per schema instead of once per record. The entry holds a reference
 * on the schema: while it is cached its address cannot be reused by
 * another schema, so comparing pointers is enough. A schema is frozen once
 * a row uses it, so the indexes never go stale. */
#define SM_RPLAN 4
struct sm_rop {
    int32_t idx;                    /* the edge's field in the schema, -1: none */
    int32_t slot;                   /* the child is a leaf feeding this one plain
                                     * capture slot, else -1 */
};
struct sm_rplan {
    const struct spoke_schema *sc;  /* NULL = empty entry */
    struct sm_rop *op;              /* nedges entries */
};

#define SM_WANT_OBJECT 0x1
#define SM_WANT_ARRAY  0x2

struct sm_node {
    struct sm_edge *edges;   /* object members */
    size_t nedges;
    int32_t *htab;           /* edges by sm_key_hash: open addressing, -1 = empty */
    uint32_t hmask;
    struct sm_pred *pred;    /* SM_PRED_POS * 2 entries, for object nodes */
    struct sm_node *wild;    /* [*] */
    struct sm_idx *idx;      /* [n] */
    size_t nidx;
    struct sm_node *sel;     /* [?k]: an object node whose edges are the selected keys */
    int *slots;              /* capture slots fed by this node's value */
    size_t nslots;
    int *present;            /* wildcard slots made present when this node sees an array */
    size_t npresent;
    int want;                /* SM_WANT_* */
    int is_sel;              /* this is a [?k] selector node */
    uint64_t mark;           /* id of the container instance that last fed this node */
    struct sm_rplan *rplan;  /* row input: SM_RPLAN entries, allocated on first use */
    uint32_t rnext;          /* the entry a miss replaces when all are used */
    char *where;             /* path up to here, for messages */
};

/* Hash of a member name for sm_node.htab: its length and its first and
 * last 8 bytes, multiplied and folded. Cheap, and enough to tell apart the
 * handful of names one object level of a schema holds. */
static inline uint32_t sm_key_hash(const char *k, size_t n)
{
    uint64_t w = 0;
    if (n >= 8) {
        uint64_t t;
        memcpy(&w, k, 8);
        memcpy(&t, k + n - 8, 8);
        w ^= t * 0x9E3779B97F4A7C15ull;
    } else {
        for (size_t i = 0; i < n; i++)
            w |= (uint64_t)(unsigned char)k[i] << (8 * i);
    }
    w ^= (uint64_t)n * 0xC2B2AE3D27D4EB4Full;
    w *= 0x9E3779B97F4A7C15ull;
    return (uint32_t)(w >> 32);
}

/* Equality of n bytes, inline for the short names of real schemas. */
static inline int sm_key_eq(const char *a, const char *b, size_t n)
{
    if (n >= 8 && n <= 16) {
        uint64_t x0, y0, x1, y1;
        memcpy(&x0, a, 8);
        memcpy(&y0, b, 8);
        memcpy(&x1, a + n - 8, 8);
        memcpy(&y1, b + n - 8, 8);
        return x0 == y0 && x1 == y1;
    }
    if (n < 8) {
        for (size_t i = 0; i < n; i++)
            if (a[i] != b[i])
                return 0;
        return 1;
    }
    return memcmp(a, b, n) == 0;
}

/* The edge of node n named key, or NULL. */
static inline struct sm_edge *sm_node_edge(const struct sm_node *nd, const char *key, size_t klen,
                                           uint32_t h)
{
    for (uint32_t k = h & nd->hmask;; k = (k + 1) & nd->hmask) {
        int32_t e = nd->htab[k];
        if (e < 0)
            return NULL;
        struct sm_edge *ed = &nd->edges[e];
        if (ed->klen == klen && sm_key_eq(ed->key, key, klen))
            return ed;
    }
}

/* One entry of the set of trie nodes a JSON value feeds (extractor). */
struct sm_setent {
    struct sm_node *n;
    uint64_t inst;           /* selector nodes: the array instance they belong to */
};

/* The shape of a JSON record the full extractor accepted (struct sm_shape):
 * the record's bytes with each scalar value cut out. Entry k is the literal
 * text before value k (keys, punctuation, blanks: bytes[off, off + len))
 * and the trie node value k fed (NULL: none, or a node without slots); the
 * last entry holds only the literal after the last value. */
struct sm_shapev {
    uint32_t off, len;
    int32_t slot;            /* the node's one plain capture slot, or -1 */
    const struct sm_node *node;
};

struct sm_shape {
    char *bytes;             /* the record the shape was learned from */
    size_t nbytes, bcap;
    struct sm_shapev *v;     /* nv values + the closing literal */
    size_t nv, vcap;
    int ok;                  /* v and bytes hold a usable shape */
    int off;                 /* never use shapes (tests: the reference path) */
    uint32_t cool;           /* full parses to wait before learning again */
};

/* A capture slot whose field reads source text: stringify (numbers and
 * containers as written) or int/long (a number with a fraction or an
 * exponent is decided by its exact decimal value). */
struct sm_textslot {
    int slot;
    int strfy;               /* 1: stringify, 0: int or long */
};

#define SM_BAD_MORE 8         /* structure mismatches kept after the first */

struct sm_tsfmt;             /* a compiled timestamp format (schema_mapper_value.c) */
struct sm_expr;              /* a compiled expression (schema_mapper_expr.c) */

struct sm_field {
    char *name;              /* output name */
    int line, col;           /* position of the field in the schema file */
    enum sm_ftype type;
    enum sm_ftype items;     /* list element type */
    enum sm_srckind src;
    char *path;              /* path or column as written (messages) */
    int slot;                /* capture slot (path, column) */
    int multi;               /* the slot collects several values (wildcard) */
    int column;              /* CSV column index */
    enum sm_meta meta;
    int required, hidden, stringify;
    int has_default;
    struct sm_val def;       /* owned strings */
    int64_t unit_num, unit_den;  /* epoch numbers -> ms: v * num / den */
    struct sm_tsfmt *fmt;    /* NULL: ISO-8601 */
    int tz_min;              /* offset of zone-less timestamps, minutes east of UTC */
    char *strip;             /* characters removed before reading a number */
    char **nulls;            /* strings that mean null */
    size_t nnulls;
    int null_empty;          /* nulls is exactly { "" } (the default) */
    /* lookup */
    int lk_key;              /* field index of the key */
    struct sm_hmap lk;
    enum sm_missing lk_missing;
    char *lk_desc;           /* where the table came from (messages) */
    /* computed */
    struct sm_expr *expr;
    int stage;               /* 0 source, 1 lookup, 2 computed */
    int out;                 /* index in the output schema, -1 when hidden */
};

enum sm_fop { SM_F_EQ = 1, SM_F_NE, SM_F_IN, SM_F_NOT_IN, SM_F_MIN, SM_F_MAX };
struct sm_filter {
    int field;
    enum sm_fop op;
    struct sm_val v;         /* EQ NE MIN MAX; owned strings */
    struct sm_hmap set;      /* IN NOT_IN: canonical text of each value */
    int stage;
    char *desc;              /* "stationCode in [..]", for debug logs */
};

struct sm_mapper {
    const struct spoke_host_api *api;
    char *file;              /* schema file path, as given */
    char *name;              /* schema name (the file's `schema:` or the basename) */

    struct sm_field *f;
    size_t nf;
    struct sm_filter *flt;
    size_t nflt;
    int key_field, ts_field; /* -1 = unset */
    struct spoke_schema *schema;  /* output schema, built once */

    enum sm_format format;
    enum sm_parser parser;
    size_t max_bytes;
    int max_depth;

    /* JSON */
    struct sm_node *root;
    size_t nnodes;           /* trie nodes, selector nodes included */
    size_t trie_depth;       /* longest path, in steps */
    struct sm_setent *setbuf; /* extractor: (trie_depth + 2) * nnodes node-set entries */
    struct sm_shape shape;   /* extractor: the last record's shape (schema_mapper_json.c) */
    struct sj_parser *sj;
    /* simdjson: the slots whose field needs a number's or a container's
     * source text, which the DOM does not keep (see sm_map_bytes); whether
     * one of them is stringified (zeros and containers lose their text
     * too); whether the last walk met a double */
    struct sm_textslot *text;
    size_t ntext;
    int text_strfy;
    unsigned sj_lost;

    /* strings that mean null in every field without its own null_values */
    char **nulls_default;
    size_t nnulls_default;

    /* CSV */
    char **columns;
    size_t ncol;
    int header;
    char delim;
    struct sm_csvcell *cells;
    size_t cellcap;

    /* captures */
    size_t nslots;
    struct sm_src *cap;
    struct sm_srcvec *mcap;  /* per slot; used by wildcard slots */
    uint8_t *slot_multi;
    int *multi;              /* the wildcard slots */
    size_t nmulti;
    int *stage[3];           /* field indexes of each stage, in order */
    size_t nstage[3];
    uint64_t next_id;

    /* the record being mapped */
    struct sm_val *vals;     /* one per field */
    struct sm_valvec *lists; /* element storage of list fields, one per field */
    struct sm_arena arena;
    const struct sm_node *bad_node;  /* first structure mismatch */
    uint8_t bad_got;                 /* enum sm_sk of what was there */
    /* the other mismatches of the record (set when bad_node is), for the
     * filters that still decide (schema_mapper_map.c drop_or_fail);
     * bad_over: more than SM_BAD_MORE */
    uint8_t nbad_more, bad_over;
    const struct sm_node *bad_more[SM_BAD_MORE];
    int lookup_misses;               /* of the last record */
    int header_line;                 /* the last record was the CSV header */
};

/* Options from the connector config that complete or override the schema
 * file. NULL / 0 = not given. */
struct sm_opts {
    const char *schema_file;
    const char *input_format;
    const char *key_field;
    const char *ts_field;
    const char *filter_field;
    const char *const *filter_values;
    size_t nfilter_values;
    const char *lookup_field;
    const char *lookup_file;
    const char *lookup_key_column;
    const char *lookup_value_column;
    const char *lookup_missing;
    const char *lookup_default;
    const char *const *lookup_inline;
    size_t nlookup_inline;
    size_t max_bytes;
    int max_depth;
    const char *parser;      /* "extractor" | "simdjson" */
};

/* ---- schema_mapper_schema.c ---- */
/* Checks the options that need no file (keys that go together, the syntax
 * of lookup.inline entries): SPOKE_OK, or SPOKE_ERR_INVALID with every
 * problem found in err, joined with "; " (those that do not fit counted at
 * the end), and *key the config key of the first. The plugin's check
 * callback (spoke validate, the REST API) and sm_mapper_new run it. */
int sm_opts_check(const struct sm_opts *o, const char **key, char *err, size_t errsz);
/* The same, with the problems after the first given one by one to more
 * (their key, or NULL, and message) instead of joined into err, which then
 * holds the first alone. */
int sm_opts_check_each(const struct sm_opts *o, const char **key, char *err, size_t errsz,
                       void (*more)(void *ctx, const char *key, const char *msg), void *ctx);
/* The problems themselves, for problems_report_api (lib/problems). */
void sm_opts_problems(const struct sm_opts *o, struct problems *p);
/* Loads and compiles the schema file with the options. NULL with a
 * positioned reason in err on any problem. */
struct sm_mapper *sm_mapper_new(const struct spoke_host_api *api, const struct sm_opts *o,
                                char *err, size_t errsz);
void sm_mapper_free(struct sm_mapper *m);

/* ---- schema_mapper_map.c ---- */
/* Maps one record: SPOKE_OK (the record now holds the row, and its key and
 * timestamp when configured), SPOKE_DROP (filtered out), or an error status
 * with the reason in err. */
int sm_process(struct sm_mapper *m, struct spoke_record *rec, char *err, size_t errsz);
/* The extraction core on bytes, without a record: fills m->vals. Returns
 * SPOKE_OK, SPOKE_DROP or an error (used by sm_process and the benchmark). */
int sm_map_bytes(struct sm_mapper *m, const char *p, size_t n, const struct spoke_record *rec,
                 char *err, size_t errsz);
/* The same from a row. */
int sm_map_row(struct sm_mapper *m, const struct spoke_row *row, const struct spoke_record *rec,
               char *err, size_t errsz);
/* Builds the output row from m->vals (NULL on out-of-memory). */
struct spoke_row *sm_build_row(struct sm_mapper *m);

/* ---- schema_mapper_json.c ---- */
/* Validates p[0..n) completely (RFC 8259, UTF-8, depth) and captures the
 * values the trie asks for. 0, or -1 with a reason in err. */
int sm_json_extract(struct sm_mapper *m, const char *p, size_t n, char *err, size_t errsz);
/* Validation only, no captures (tests and benchmark). */
int sm_json_validate(const char *p, size_t n, int max_depth, char *err, size_t errsz);

/* ---- schema_mapper_walk.c ---- */
/* Captures from a parsed simdjson document / a row. 0 always (mismatches
 * are recorded in m->bad_node). */
void sm_walk_sj(struct sm_mapper *m, const struct sj_value *root);
void sm_walk_row(struct sm_mapper *m, const struct spoke_row *row);
/* Splits a CSV line into cells (RFC 4180). 0, or -1 with a reason. */
struct sm_csvcell {
    const char *p;
    size_t n;
    int esc;                 /* quoted and holds "" pairs */
};
int sm_csv_split(const char *p, size_t n, char delim, struct sm_csvcell **cells, size_t *cap,
                 size_t *ncells, char *err, size_t errsz);
/* The same for lookup tables: spaces and tabs around a cell (outside its
 * quotes, when quoted) are dropped, so "16107 , 75016" gives 16107 and
 * 75016; a quoted cell keeps its text byte for byte. */
int sm_csv_split_blanks(const char *p, size_t n, char delim, struct sm_csvcell **cells,
                        size_t *cap, size_t *ncells, char *err, size_t errsz);
/* A cell's text with "" pairs undone, in the arena when needed. */
void sm_csv_cell_text(struct sm_arena *a, const struct sm_csvcell *c, const char **p, size_t *n);
/* Captures the cells of one CSV line into the column slots. */
int sm_csv_extract(struct sm_mapper *m, const char *p, size_t n, char *err, size_t errsz);
/* Records a structure mismatch (first one wins). */
void sm_mismatch(struct sm_mapper *m, const struct sm_node *node, uint8_t got);
/* Stores a captured value into a node's slots. */
void sm_capture(struct sm_mapper *m, const struct sm_node *node, const struct sm_src *v);

/* ---- schema_mapper_value.c ---- */
/* Converts a raw value to type t (an item type for list elements) with
 * field f's options. 0, or -1 with the reason (without the field name). */
int sm_coerce(struct sm_mapper *m, const struct sm_field *f, enum sm_ftype t,
              const struct sm_src *src, struct sm_val *out, char *err, size_t errsz);
/* Name of a raw value's kind for messages: "number", "string", ... */
const char *sm_sk_name(uint8_t k);
const char *sm_type_name(enum sm_ftype t);
/* Text forms. sm_canon: the text used for lookup keys and `in` sets (ints
 * in decimal, doubles shortest round-trip, timestamps as ms). sm_text: the
 * text of a record key (timestamps as ISO-8601). buf holds 64 bytes;
 * strings are returned in place. */
void sm_canon(const struct sm_val *v, char *buf, const char **p, size_t *n);
void sm_text(const struct sm_val *v, char *buf, const char **p, size_t *n);
size_t sm_fmt_int(int64_t v, char *o);
size_t sm_fmt_double(double d, char *o);  /* o holds 32 bytes */
size_t sm_fmt_iso(int64_t ms, char *o);   /* o holds 32 bytes */
/* strtod in the C locale over a NUL-terminated copy. */
double sm_strtod(const char *s, size_t n, int *ok);
/* Timestamps: days since 1970-01-01 of a civil date. */
int64_t sm_days_from_civil(int64_t y, unsigned m, unsigned d);
/* Parses ISO-8601 / a compiled format. 0 and *ms, or -1. */
int sm_parse_iso(const char *s, size_t n, int tz_min, int64_t *ms);
struct sm_tsfmt *sm_tsfmt_compile(const char *fmt, char *err, size_t errsz);
void sm_tsfmt_free(struct sm_tsfmt *f);
int sm_tsfmt_parse(const struct sm_tsfmt *f, const char *s, size_t n, int tz_min, int64_t *ms);
/* Unescapes a validated JSON string body into the arena. */
void sm_json_unescape(struct sm_arena *a, const char *p, size_t n, const char **out, size_t *outn);
/* 1 if p[0..n) is valid UTF-8; *bad = offset of the first bad byte. */
int sm_utf8_valid(const char *p, size_t n, size_t *bad);
/* Deep copy of a value's strings into malloc'd memory / release. */
int sm_val_own(struct sm_val *v);
void sm_val_release(struct sm_val *v);
/* Compares two values of the same field type: <0, 0, >0. */
int sm_val_cmp(const struct sm_val *a, const struct sm_val *b);
/* Quotes up to 40 bytes of s for a message ("abc" or "abc..."). */
void sm_quote(const char *s, size_t n, char *buf, size_t bufsz);

/* The common cases of sm_coerce, inline: missing or null; an integer into
 * int, long, bool (0/1) or timestamp (seconds); a plain string into a
 * string without null_values (or a non-empty one when "" is the only null
 * value); a bool, finite double or timestamp into the same type. Returns 1
 * when it handled src, with the result sm_coerce would give. */
static inline int sm_coerce_quick(const struct sm_field *f, enum sm_ftype t,
                                  const struct sm_src *src, struct sm_val *out)
{
    if (src->k == SM_SK_INT) {
        int64_t v = src->u.i;
        if (t == SM_T_LONG || (t == SM_T_INT && v >= INT32_MIN && v <= INT32_MAX)) {
            out->t = SPOKE_TYPE_INT;
            out->u.i = v;
            return 1;
        }
        if (t == SM_T_BOOL && (v == 0 || v == 1)) {
            out->t = SPOKE_TYPE_BOOL;
            out->u.b = (int)v;
            return 1;
        }
        if (t == SM_T_TIMESTAMP && f->unit_num == 1000 && v < 9000000000000ll &&
            v > -9000000000000ll) {
            out->t = SPOKE_TYPE_TIMESTAMP;
            out->u.i = v * 1000;
            return 1;
        }
        return 0;
    }
    if (src->k == SM_SK_STR && t == SM_T_STRING &&
        (!f->nnulls || (f->null_empty && src->u.s.n))) {
        out->t = SPOKE_TYPE_STRING;
        out->u.s.p = src->u.s.p;
        out->u.s.n = src->u.s.n;
        return 1;
    }
    /* Typed values as rows hold them. */
    if (src->k == SM_SK_BOOL && t == SM_T_BOOL) {
        out->t = SPOKE_TYPE_BOOL;
        out->u.b = src->u.b;
        return 1;
    }
    if (src->k == SM_SK_DOUBLE && t == SM_T_DOUBLE && isfinite(src->u.d)) {
        out->t = SPOKE_TYPE_DOUBLE;  /* NaN and infinities are errors: sm_coerce */
        out->u.d = src->u.d;
        return 1;
    }
    if (src->k == SM_SK_TS && t == SM_T_TIMESTAMP) {
        out->t = SPOKE_TYPE_TIMESTAMP;
        out->u.i = src->u.i;
        return 1;
    }
    if (src->k == SM_SK_MISSING || src->k == SM_SK_NULL) {
        out->t = SPOKE_TYPE_NULL;
        out->why = src->k == SM_SK_NULL ? SM_WHY_NULL : SM_WHY_MISSING;
        return 1;
    }
    return 0;
}

/* ---- schema_mapper_expr.c ---- */
/* Compiles expr; names resolve to fields [0, nf) (numeric ones only). NULL
 * with a reason in err. */
struct sm_expr *sm_expr_compile(const char *text, const struct sm_field *f, size_t nf,
                                size_t self, char *err, size_t errsz);
void sm_expr_free(struct sm_expr *e);
/* Evaluates over the record's values into out (type t: int/long/double/
 * timestamp). A null result carries its reason in out->why. */
void sm_expr_eval(const struct sm_expr *e, const struct sm_val *vals, enum sm_ftype t,
                  struct sm_val *out);
/* 1 when e reads a field i with marked[i] set. */
int sm_expr_reads(const struct sm_expr *e, const uint8_t *marked);

#endif
