/*
 * aggregator.h - private to the aggregator plugin (never installed, never
 * seen by the host). The plugin is split by concern:
 *
 *   aggregator.c        descriptor, config table, init/destroy, process, tick
 *   aggregator_spec.c   parsing and checking the configuration
 *   aggregator_state.c  hash tables, windows, groups, entities, aggregates
 *   aggregator_emit.c   output schema, rows, ordering and top-N, emission
 *   aggregator_snap.c   snapshot and restore (versioned binary format)
 *
 * Everything here has hidden visibility (the plugin is built with
 * -fvisibility=hidden): only spoke_plugin_entry is exported.
 */
#ifndef AGGREGATOR_H
#define AGGREGATOR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <spoke/plugin.h>

#include "problems.h"

#define AGG_MAX_KEY_FIELDS 16      /* group.by and entity.key items */
#define AGG_MAX_AGGS       64      /* aggregates items */
#define AGG_MAX_NAME       64      /* column and field names, bytes */
#define AGG_MAX_WINDOWS_PER_RECORD 1000  /* hopping: window.size.ms / window.advance.ms */
#define AGG_MAX_KEY_BYTES  (64 * 1024)   /* encoded group or entity key */
#define AGG_SCHEMA_CACHE   4       /* input schemas whose field indices are cached */

enum agg_semantics { AGG_STREAM = 0, AGG_TABLE = 1 };
enum agg_window_kind { AGG_WIN_NONE = 0, AGG_WIN_TUMBLING = 1, AGG_WIN_HOPPING = 2 };
enum agg_time { AGG_TIME_PROCESSING = 0, AGG_TIME_EVENT = 1 };
enum agg_emit { AGG_EMIT_UPDATE = 0, AGG_EMIT_COMPLETE = 1, AGG_EMIT_FINAL = 2 };

enum agg_fn {
    AGG_FN_COUNT = 0,
    AGG_FN_SUM,
    AGG_FN_AVG,
    AGG_FN_MIN,
    AGG_FN_MAX,
    AGG_FN_VARIANCE,    /* sample variance (n - 1), like SQL VAR_SAMP / Spark variance */
    AGG_FN_STDDEV,      /* sample standard deviation */
    AGG_FN_VAR_POP,     /* population variance (n) */
    AGG_FN_STDDEV_POP,  /* population standard deviation */
    AGG_FN_FIRST,
    AGG_FN_LAST
};

/* Bit of a spoke_type in a type mask. */
#define AGG_T(t) (1u << (t))
#define AGG_KEY_TYPES (AGG_T(SPOKE_TYPE_STRING) | AGG_T(SPOKE_TYPE_INT) | AGG_T(SPOKE_TYPE_BOOL) | \
                       AGG_T(SPOKE_TYPE_TIMESTAMP))
#define AGG_SCALAR_TYPES (AGG_KEY_TYPES | AGG_T(SPOKE_TYPE_DOUBLE))
#define AGG_NUM_TYPES (AGG_T(SPOKE_TYPE_INT) | AGG_T(SPOKE_TYPE_DOUBLE))

/* Roles of an input field (a field can have several). */
#define AGG_ROLE_GROUP  0x1u
#define AGG_ROLE_ENTITY 0x2u
#define AGG_ROLE_TIME   0x4u
#define AGG_ROLE_VALUE  0x8u

/* A typed scalar. type SPOKE_TYPE_NULL = no value. Strings either borrow
 * (s.p points into a row or a key) or own a buffer of s.cap bytes (cap > 0). */
struct agg_val {
    uint8_t type;
    union {
        int64_t i;      /* INT, TIMESTAMP, BOOL (0/1) */
        double d;
        struct {
            char *p;
            uint32_t len;
            uint32_t cap;   /* 0: borrowed */
        } s;
    } u;
};

/* One input field read from every record. */
struct agg_field {
    char name[AGG_MAX_NAME + 1];
    unsigned roles;
    unsigned allowed;     /* AGG_T mask of accepted types */
    uint8_t type;         /* observed so far (SPOKE_TYPE_NULL = none yet); fixed by the
                             first record, except INT -> DOUBLE promotion of values */
    int vslot;            /* index among value fields (entity storage), or -1 */
};

/* One aggregate column. */
struct agg_spec {
    char name[AGG_MAX_NAME + 1];
    enum agg_fn fn;
    int field;            /* index into fields, -1 for count() */
    int mset;             /* table min/max: index of the group's multiset, else -1 */
};

/* Intrusive hash node: first member of groups and entities. */
struct agg_node {
    uint64_t hash;
    int64_t win;          /* window start (0 without windows) */
    uint32_t klen;
    uint8_t *key;         /* encoded key bytes, inside the owner's allocation */
};

struct agg_slot {
    uint64_t hash;
    struct agg_node *node;
};

struct agg_table {
    struct agg_slot *slots;
    size_t mask;          /* capacity - 1; capacity is a power of two */
    size_t n;
};

/* Per-group state of one aggregate. */
struct agg_cell {
    int64_t n;            /* values counted (count(): contributions) */
    union {
        struct {
            uint64_t isum;    /* INT values: their sum wrapped to an int64 */
            int64_t ihi;      /* and how many times it wrapped: isum + ihi * 2^64 is exact
                                 (isum_add in aggregator_state.c) */
            double dsum;      /* DOUBLE values: Neumaier compensated sum */
            double comp;
        } sum;
        struct {
            double k;         /* shift: the first value (keeps the sums small) */
            double s, sc;     /* sum of (x - k), Neumaier compensated */
            double q, qc;     /* sum of (x - k)^2, Neumaier compensated */
        } var;
        struct {
            struct agg_val v; /* stream min/max/first/last */
            int64_t t;        /* first/last: event time (or 0) of v */
            uint64_t seq;     /* first/last: arrival sequence of v */
        } pick;
    } u;
};

/* Table semantics min/max: the values of the group's entities, sorted, with
 * how many entities hold each one. */
struct agg_mset_item {
    struct agg_val v;     /* INT, DOUBLE or TIMESTAMP */
    uint64_t count;
};

struct agg_mset {
    struct agg_mset_item *items;
    size_t n, cap;
};

struct agg_window;
struct agg_entity;

struct agg_group {
    struct agg_node node;
    struct agg_window *win;
    struct agg_group *wprev, *wnext;   /* window's groups */
    struct agg_group *dprev, *dnext;   /* dirty list (changed since last emitted) */
    struct agg_entity *ehead, *etail;  /* table: entities, ordered by (t, seq) */
    int64_t nrec;          /* stream: records; table: entities */
    int64_t ts;            /* event time the row reflects (max applied), if has_ts */
    uint8_t has_ts;
    uint8_t dirty;
    size_t bytes;          /* allocation size, for state_bytes */
    char *text;            /* output key text, NUL-terminated, inside the allocation */
    uint32_t tlen;
    struct agg_mset *msets;  /* table min/max: nmsets multisets (inside the allocation) */
    struct agg_cell cells[]; /* one per aggregate */
};

struct agg_entity {
    struct agg_node node;
    struct agg_group *group;
    struct agg_entity *gprev, *gnext;  /* group's entities */
    int64_t t;             /* event time of the contribution (0 with processing time) */
    uint64_t seq;          /* arrival sequence of the contribution */
    size_t bytes;
    struct agg_val vals[]; /* one per value field; strings owned */
};

struct agg_window {
    int64_t start, end;    /* [start, end); none: 0, INT64_MAX */
    struct agg_group *ghead, *gtail;
    size_t ngroups;
};

struct agg_schema_entry {
    const struct spoke_schema *schema;  /* referenced (schema_ref) while cached */
    int *idx;                           /* per field: index in the row, or -1 */
};

struct agg_metrics {
    int64_t invalid, late_dropped, stale_ignored, groups_refused, entities_refused,
            rows_emitted, windows_closed, emit_failed;
    int64_t tombstones_applied, tombstones_unknown, tombstones_ignored;
};

struct agg_state {
    const struct spoke_host_api *api;
    struct spoke_instance *inst;

    /* ---- configuration ---- */
    enum agg_semantics semantics;
    enum agg_window_kind window;
    enum agg_time time;
    int order_event;  /* table.order: event (an older record of an entity is stale) */
    enum agg_emit emit;
    int64_t size_ms, advance_ms, lateness_ms, interval_ms;
    int emit_on_idle;           /* update: also emit when no input waits */
    int64_t max_groups, max_entities;
    int64_t top_n;
    int top_col;           /* aggregate index ordered by, -1: none */
    int top_desc;
    int null_groups;       /* group.by.nulls: group (a null group field is a key value) */
    int key_escape;        /* group key text escapes strings (agg_key_text): several
                              group.by fields, or nulls grouped */
    struct agg_field *fields;
    size_t nfields;
    int gfields[AGG_MAX_KEY_FIELDS];   /* group.by -> field index */
    size_t ngf;
    int efields[AGG_MAX_KEY_FIELDS];   /* entity.key -> field index */
    size_t nef;
    int tfield;            /* time.field -> field index, or -1 */
    size_t nvals;          /* value fields (entity storage slots) */
    int *vfield;           /* value slot -> field index */
    struct agg_spec *aggs;
    size_t naggs;
    size_t nmsets;
    int *mset_field;       /* multiset -> field index */
    char *canon;           /* canonical text of the state-shaping config */
    int has_firstlast;
    int has_string_vals;   /* a value field may hold strings (entities store copies) */

    /* ---- state ---- */
    struct agg_table groups, entities;
    struct agg_window **wins;          /* open windows, sorted by start */
    size_t nwins, capwins;
    struct agg_group *dhead, *dtail;   /* dirty groups */
    int reemit_all;                    /* update mode after a restore: emit every group */
    size_t ngroups, nentities;
    int64_t bytes;                     /* state_bytes */
    uint64_t seq;
    int64_t max_t;                     /* highest event time seen */
    uint8_t has_max_t;
    int64_t close_bound;               /* windows with end <= this are closed */

    /* ---- per-record scratch ---- */
    struct agg_val *cur;               /* per field */
    uint8_t *ntype;                    /* per field: type to commit if the record is taken */
    int types_pending;                 /* some ntype[] is set */
    char **sbufs;                      /* table: [maxwin][nvals] string buffers prepared
                                          before a record changes anything */
    uint8_t *gkey, *ekey;              /* encoded keys, built only when needed */
    size_t gklen, eklen;
    int gready, eready;                /* gkey / ekey hold this record's key */
    int64_t *wstarts;
    struct agg_group **wgroups;
    struct agg_entity **wents;
    uint8_t *wflag;
    size_t maxwin;
    struct agg_schema_entry scache[AGG_SCHEMA_CACHE];
    unsigned scache_next;

    /* ---- output ---- */
    struct spoke_schema *out_schema;
    unsigned type_epoch, schema_epoch;  /* schema rebuilt when a column type changes */
    int64_t now_ms;                     /* wall clock of the current tick/emission */
    int now_pending;                    /* now_ms is to be read at the emission's first record */
    int64_t next_emit_ms, next_metrics_ms;
    void *sortbuf;                      /* emission ordering scratch (aggregator_emit.c) */
    size_t sortcap;

    struct agg_metrics m, m_pub;       /* counters, and what was published */
    int m_published;                    /* every counter was published once */
    unsigned tomb_warned;               /* reasons tombstones are ignored, logged once */
    unsigned drop_warned;               /* AGG_WARN_*: the first stale / late record logged */
};

/* ---- hashing and lookups: inline, they run for every record ---- */

static inline uint64_t agg_rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t agg_fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

static inline uint64_t agg_load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint32_t agg_load32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* n < 8 bytes as one word, with fixed-size (overlapping) loads instead of a
 * byte loop: 4..7 bytes are two 4-byte loads, 1..3 bytes the first, middle
 * and last byte. Injective for a given n. */
static inline uint64_t agg_small_word(const uint8_t *p, size_t n)
{
    if (n >= 4)
        return agg_load32(p) | ((uint64_t)agg_load32(p + n - 4) << 32);
    if (n == 0)
        return 0;
    return p[0] | ((uint64_t)p[n / 2] << 8) | ((uint64_t)p[n - 1] << 16);
}

/* A fast non-cryptographic hash for short keys (a few to a few dozen bytes):
 * 8 bytes per step, murmur3's finalizer. Keys come from input data; a flood
 * of colliding keys is bounded by max.groups and max.entities. */
static inline uint64_t agg_hash(const void *p, size_t n, uint64_t seed)
{
    const uint8_t *s = p;
    uint64_t h = seed ^ (0x9e3779b97f4a7c15ull * (n + 1));
    if (n < 8) {
        uint64_t w = agg_small_word(s, n);
        h ^= agg_rotl64(w * 0x87c37b91114253d5ull, 31) * 0x4cf5ad432745937full;
        return agg_fmix64(h);
    }
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        h ^= agg_rotl64(agg_load64(s + i) * 0x87c37b91114253d5ull, 31) * 0x4cf5ad432745937full;
        h = agg_rotl64(h, 27) * 5 + 0x52dce729;
    }
    if (i < n)  /* the last 8 bytes, overlapping what came before */
        h ^= agg_rotl64(agg_load64(s + n - 8) * 0x87c37b91114253d5ull, 31) * 0x4cf5ad432745937full;
    return agg_fmix64(h);
}

/* Keys hash field by field: each field's type, then its payload (a
 * string's bytes, the 8 bytes of an int or timestamp, 1 byte for a bool),
 * seeded by the window. The same hash comes from the values of the record
 * being read (no key to build) and from an encoded key (agg_key_hash). */
static inline uint64_t agg_win_seed(int64_t win)
{
    return agg_fmix64((uint64_t)win + 0x2545f4914f6cdd1dull);
}

static inline uint64_t agg_field_hash(uint64_t h, int type, const void *p, size_t n)
{
    return agg_hash(p, n, h ^ ((uint64_t)(unsigned)type * 0x9e3779b97f4a7c15ull));
}

static inline int agg_key_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
    if (n < 8)
        return agg_small_word(a, n) == agg_small_word(b, n);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        if (agg_load64(a + i) != agg_load64(b + i))
            return 0;
    return i == n || agg_load64(a + n - 8) == agg_load64(b + n - 8);
}

static inline struct agg_node *agg_table_find(const struct agg_table *t, uint64_t hash,
                                              int64_t win, const uint8_t *key, uint32_t klen)
{
    if (!t->slots)
        return NULL;
    size_t i = hash & t->mask;
    for (;;) {
        const struct agg_slot *s = &t->slots[i];
        if (!s->node)
            return NULL;
        if (s->hash == hash) {
            const struct agg_node *nd = s->node;
            if (nd->win == win && nd->klen == klen && agg_key_equal(nd->key, key, klen))
                return s->node;
        }
        i = (i + 1) & t->mask;
    }
}

/* ---- aggregator_spec.c ---- */
/* Reads and checks the config into st: SPOKE_OK, SPOKE_ERR_INVALID with
 * every problem found in pr, each at its key (lib/problems), or
 * SPOKE_ERR_NOMEM with err set. */
int agg_configure_problems(struct agg_state *st, const struct spoke_config *cfg,
                           struct problems *pr, char *err, size_t errsz);
/* The same with the problems joined into err. */
int agg_configure(struct agg_state *st, const struct spoke_config *cfg, char *err, size_t errsz);
void agg_config_free(struct agg_state *st);
const char *agg_fn_name(enum agg_fn fn);
const char *agg_type_name(int type);

/* ---- aggregator_state.c ---- */
int agg_state_init(struct agg_state *st);
void agg_state_free(struct agg_state *st);
int agg_table_reserve(struct agg_state *st, struct agg_table *t, size_t n);
void agg_table_insert(struct agg_table *t, struct agg_node *node);
void agg_table_remove(struct agg_table *t, struct agg_node *node);
struct agg_window *agg_window_get(struct agg_state *st, int64_t start, int create);
void agg_window_close(struct agg_state *st, struct agg_window *w);
struct agg_group *agg_group_new(struct agg_state *st, struct agg_window *w, uint64_t hash,
                                const uint8_t *key, uint32_t klen);
void agg_group_free(struct agg_state *st, struct agg_group *g);
struct agg_entity *agg_entity_new(struct agg_state *st, int64_t win, uint64_t hash,
                                  const uint8_t *key, uint32_t klen);
void agg_entity_free(struct agg_state *st, struct agg_entity *e);
void agg_entity_link(struct agg_group *g, struct agg_entity *e);
void agg_entity_append(struct agg_group *g, struct agg_entity *e);
void agg_entity_unlink(struct agg_entity *e);
void agg_mark_dirty(struct agg_state *st, struct agg_group *g);
void agg_clear_dirty(struct agg_state *st, struct agg_group *g);
/* vals is indexed by field (byslot 0: the record being read, st->cur) or by
 * value slot (byslot 1: an entity's stored contribution). */
void agg_cells_add(struct agg_state *st, struct agg_group *g, const struct agg_val *vals,
                   int byslot, int sign, int64_t t, uint64_t seq);
void agg_cells_replace(struct agg_state *st, struct agg_group *g, const struct agg_val *olds,
                       int64_t ot, uint64_t oseq, const struct agg_val *news, int64_t t,
                       uint64_t seq);
int agg_msets_add(struct agg_state *st, struct agg_group *g, const struct agg_val *vals,
                  int byslot);
void agg_msets_remove(struct agg_state *st, struct agg_group *g, const struct agg_val *vals,
                      int byslot);
int agg_val_store(struct agg_state *st, struct agg_val *dst, const struct agg_val *src);
void agg_val_release(struct agg_state *st, struct agg_val *v);
int agg_val_equal(const struct agg_val *a, const struct agg_val *b);
int agg_val_cmp(const struct agg_val *a, const struct agg_val *b);
int agg_key_decode(const struct agg_state *st, const uint8_t *key, uint32_t klen,
                   const int *fields, size_t nf, struct agg_val *out);
int agg_key_text(const uint8_t *key, uint32_t klen, int esc, char *out, size_t outsz);
uint64_t agg_key_hash(const uint8_t *key, uint32_t klen, int64_t win);
int64_t agg_floor_div(int64_t a, int64_t b);
size_t agg_windows_of(const struct agg_state *st, int64_t t, int64_t *starts);
int64_t agg_window_end(const struct agg_state *st, int64_t start);

/* ---- aggregator_emit.c ---- */
void agg_column_value(const struct agg_state *st, const struct agg_group *g, size_t a,
                      struct agg_val *out);
int agg_emit_dirty(struct agg_state *st, struct agg_window *only);
int agg_emit_complete(struct agg_state *st);
int agg_close_windows(struct agg_state *st);
void agg_publish_metrics(struct agg_state *st);

/* ---- aggregator_snap.c ---- */
int agg_snapshot(void *vst, void **data, size_t *len, char *err, size_t errsz);
int agg_restore(void *vst, const void *data, size_t len, char *err, size_t errsz);

#endif /* AGGREGATOR_H */
