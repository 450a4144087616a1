/*
 * cql_frame.h - the CQL native protocol v4 codec used by cassandra_sink
 * (internal; nothing here crosses the plugin boundary).
 *
 * Written from the protocol specification (native_protocol_v4.spec in
 * apache/cassandra). Both directions are implemented: the client encodes
 * requests and decodes responses; the server side (decode requests, encode
 * responses) serves the unit tests' in-process fake server and the fuzz
 * seeds, and keeps every message testable as a round trip.
 *
 * Conventions
 *  - Writers append to a struct cql_buf and never fail on the spot: an
 *    allocation failure sets buf->oom, and every later write is a no-op, so
 *    a caller checks once at the end.
 *  - Readers consume a struct cql_rd. Running past the end, or a length that
 *    does not fit, sets rd->err (a static reason) and every later read
 *    returns zeros; decoders check once at the end. Nothing the peer sends
 *    can make a reader read out of bounds, allocate more than a small
 *    multiple of the body size, or recurse deeper than CQL_TYPE_DEPTH.
 *  - Decoded strings and byte strings are slices into the decoded body
 *    (struct cql_str): valid as long as the body is.
 *  - Decoders that build arrays or type trees allocate them from a struct
 *    cql_arena the caller frees with cql_arena_free.
 */
#ifndef CQL_FRAME_H
#define CQL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define CQL_VERSION_REQ  0x04u
#define CQL_VERSION_RESP 0x84u
#define CQL_HEADER_SIZE  9
/* The spec's limit on a frame body. */
#define CQL_MAX_BODY     (256u * 1024 * 1024)
/* Deepest type nesting decoded (list<map<text, frozen<list<...>>>>). */
#define CQL_TYPE_DEPTH   16

/* Header flags. */
#define CQL_FLAG_COMPRESSION 0x01u
#define CQL_FLAG_TRACING     0x02u
#define CQL_FLAG_PAYLOAD     0x04u
#define CQL_FLAG_WARNING     0x08u

enum cql_opcode {
    CQL_OP_ERROR          = 0x00,
    CQL_OP_STARTUP        = 0x01,
    CQL_OP_READY          = 0x02,
    CQL_OP_AUTHENTICATE   = 0x03,
    CQL_OP_OPTIONS        = 0x05,
    CQL_OP_SUPPORTED      = 0x06,
    CQL_OP_QUERY          = 0x07,
    CQL_OP_RESULT         = 0x08,
    CQL_OP_PREPARE        = 0x09,
    CQL_OP_EXECUTE        = 0x0A,
    CQL_OP_REGISTER       = 0x0B,
    CQL_OP_EVENT          = 0x0C,
    CQL_OP_BATCH          = 0x0D,
    CQL_OP_AUTH_CHALLENGE = 0x0E,
    CQL_OP_AUTH_RESPONSE  = 0x0F,
    CQL_OP_AUTH_SUCCESS   = 0x10
};

enum cql_consistency {
    CQL_ANY = 0x0000, CQL_ONE = 0x0001, CQL_TWO = 0x0002, CQL_THREE = 0x0003,
    CQL_QUORUM = 0x0004, CQL_ALL = 0x0005, CQL_LOCAL_QUORUM = 0x0006,
    CQL_EACH_QUORUM = 0x0007, CQL_SERIAL = 0x0008, CQL_LOCAL_SERIAL = 0x0009,
    CQL_LOCAL_ONE = 0x000A
};

enum cql_result_kind {
    CQL_RESULT_VOID = 1, CQL_RESULT_ROWS = 2, CQL_RESULT_SET_KEYSPACE = 3,
    CQL_RESULT_PREPARED = 4, CQL_RESULT_SCHEMA_CHANGE = 5
};

enum cql_batch_type { CQL_BATCH_LOGGED = 0, CQL_BATCH_UNLOGGED = 1, CQL_BATCH_COUNTER = 2 };

/* Error codes (spec section 9). */
enum cql_error_code {
    CQL_ERR_SERVER         = 0x0000,
    CQL_ERR_PROTOCOL       = 0x000A,
    CQL_ERR_AUTH           = 0x0100,
    CQL_ERR_UNAVAILABLE    = 0x1000,
    CQL_ERR_OVERLOADED     = 0x1001,
    CQL_ERR_BOOTSTRAPPING  = 0x1002,
    CQL_ERR_TRUNCATE       = 0x1003,
    CQL_ERR_WRITE_TIMEOUT  = 0x1100,
    CQL_ERR_READ_TIMEOUT   = 0x1200,
    CQL_ERR_READ_FAILURE   = 0x1300,
    CQL_ERR_FUNC_FAILURE   = 0x1400,
    CQL_ERR_WRITE_FAILURE  = 0x1500,
    CQL_ERR_SYNTAX         = 0x2000,
    CQL_ERR_UNAUTHORIZED   = 0x2100,
    CQL_ERR_INVALID        = 0x2200,
    CQL_ERR_CONFIG         = 0x2300,
    CQL_ERR_ALREADY_EXISTS = 0x2400,
    CQL_ERR_UNPREPARED     = 0x2500
};

/* Type option ids (spec 4.2.5.2). */
enum cql_type_id {
    CQL_T_CUSTOM = 0x0000, CQL_T_ASCII = 0x0001, CQL_T_BIGINT = 0x0002, CQL_T_BLOB = 0x0003,
    CQL_T_BOOLEAN = 0x0004, CQL_T_COUNTER = 0x0005, CQL_T_DECIMAL = 0x0006,
    CQL_T_DOUBLE = 0x0007, CQL_T_FLOAT = 0x0008, CQL_T_INT = 0x0009,
    CQL_T_TIMESTAMP = 0x000B, CQL_T_UUID = 0x000C, CQL_T_VARCHAR = 0x000D,
    CQL_T_VARINT = 0x000E, CQL_T_TIMEUUID = 0x000F, CQL_T_INET = 0x0010,
    CQL_T_DATE = 0x0011, CQL_T_TIME = 0x0012, CQL_T_SMALLINT = 0x0013,
    CQL_T_TINYINT = 0x0014, CQL_T_LIST = 0x0020, CQL_T_MAP = 0x0021, CQL_T_SET = 0x0022,
    CQL_T_UDT = 0x0030, CQL_T_TUPLE = 0x0031
};

/* ---- buffers ---------------------------------------------------------- */

struct cql_buf {
    uint8_t *p;
    size_t len, cap;
    int oom;             /* sticky: an allocation failed, later writes are dropped */
};

/* A byte string that is not NUL-terminated. n < 0 (bytes only): null. */
struct cql_str {
    const char *p;
    int32_t n;
};

struct cql_rd {
    const uint8_t *p;
    size_t len, pos;
    const char *err;     /* sticky: NULL while everything fit */
};

void cql_buf_free(struct cql_buf *b);
/* Makes room for n more bytes; 0, or -1 (and oom set). */
int cql_buf_reserve(struct cql_buf *b, size_t n);
void cql_put_raw(struct cql_buf *b, const void *p, size_t n);
void cql_put_u8(struct cql_buf *b, uint8_t v);
void cql_put_u16(struct cql_buf *b, uint16_t v);
void cql_put_i32(struct cql_buf *b, int32_t v);
void cql_put_i64(struct cql_buf *b, int64_t v);
/* [string] (n <= 65535: longer text is cut there), [long string]. */
void cql_put_string(struct cql_buf *b, const char *s, size_t n);
void cql_put_long_string(struct cql_buf *b, const char *s, size_t n);
/* [bytes] (p NULL: null), [short bytes]. */
void cql_put_bytes(struct cql_buf *b, const void *p, int32_t n);
void cql_put_short_bytes(struct cql_buf *b, const void *p, uint16_t n);
/* [string map] of n pairs kv[2i] -> kv[2i+1] (NUL-terminated). */
void cql_put_string_map(struct cql_buf *b, const char *const *kv, size_t n);
/* Overwrites a 32-bit big-endian integer at off (off + 4 <= len). */
void cql_patch_i32(struct cql_buf *b, size_t off, int32_t v);

void cql_rd_init(struct cql_rd *r, const void *p, size_t len);
uint8_t cql_get_u8(struct cql_rd *r);
uint16_t cql_get_u16(struct cql_rd *r);
int32_t cql_get_i32(struct cql_rd *r);
int64_t cql_get_i64(struct cql_rd *r);
struct cql_str cql_get_string(struct cql_rd *r);
struct cql_str cql_get_long_string(struct cql_rd *r);
/* [bytes]: n < 0 is null. */
struct cql_str cql_get_bytes(struct cql_rd *r);
/* [value]: like bytes, -2 is "not set"; below -2 is an error. */
struct cql_str cql_get_value(struct cql_rd *r);
struct cql_str cql_get_short_bytes(struct cql_rd *r);
/* Skips n bytes. */
const uint8_t *cql_get_raw(struct cql_rd *r, size_t n);
static inline size_t cql_rd_left(const struct cql_rd *r) { return r->err ? 0 : r->len - r->pos; }

/* A bump allocator for decoded arrays and type trees. */
struct cql_arena {
    struct cql_chunk *head;
};
void *cql_arena_alloc(struct cql_arena *a, size_t n);
void cql_arena_free(struct cql_arena *a);

/* ---- frame header ----------------------------------------------------- */

struct cql_header {
    uint8_t version;     /* 0x04 request, 0x84 response */
    uint8_t flags;
    int16_t stream;
    uint8_t opcode;
    uint32_t length;     /* body bytes */
};

void cql_header_encode(uint8_t out[CQL_HEADER_SIZE], const struct cql_header *h);
/* Decodes a header and checks the length against max_body. It does not
 * judge the version (callers do). 0, or -1 with errstr set. */
int cql_header_decode(const uint8_t in[CQL_HEADER_SIZE], struct cql_header *h,
                      size_t max_body, char *errstr, size_t errstr_size);

/* Starts a frame (version 0x04 or 0x84 by direction) at the end of b and
 * returns its offset; cql_frame_end writes the body length once the body
 * is appended. */
size_t cql_frame_begin(struct cql_buf *b, uint8_t version, uint8_t opcode, int16_t stream);
void cql_frame_end(struct cql_buf *b, size_t frame_off);

/* ---- types ------------------------------------------------------------ */

struct cql_type {
    uint16_t id;                 /* enum cql_type_id */
    uint16_t n;                  /* children: 1 list/set, 2 map, fields/elements for udt/tuple */
    struct cql_str custom;       /* CUSTOM: class name; UDT: keyspace */
    struct cql_str udt_name;     /* UDT */
    struct cql_str *names;       /* UDT field names (n) */
    const struct cql_type **sub; /* n children */
};

/* Decodes an [option] type; NULL (and rd->err) when malformed or deeper
 * than CQL_TYPE_DEPTH. */
const struct cql_type *cql_type_decode(struct cql_rd *r, struct cql_arena *a, int depth);
void cql_type_encode(struct cql_buf *b, const struct cql_type *t);
/* "int", "list<text>", "map<text, frozen<tuple<int, int>>>"... into out
 * (always NUL-terminated, cut when too long). Returns out. */
const char *cql_type_name(const struct cql_type *t, char *out, size_t size);
/* Two types are the same (deep comparison). */
int cql_type_equal(const struct cql_type *a, const struct cql_type *b);
/* A simple (childless) type of the given id, static storage. */
const struct cql_type *cql_type_simple(uint16_t id);

/* ---- metadata (RESULT rows / prepared) -------------------------------- */

#define CQL_META_GLOBAL_SPEC 0x0001
#define CQL_META_MORE_PAGES  0x0002
#define CQL_META_NO_METADATA 0x0004

struct cql_col {
    struct cql_str ks, table;    /* the global spec's, or the column's own */
    struct cql_str name;
    const struct cql_type *type;
};

struct cql_meta {
    int32_t flags;
    int32_t ncols;
    int32_t npk;                 /* prepared bind metadata only */
    uint16_t *pk;
    struct cql_str paging_state; /* n < 0: none */
    struct cql_str ks, table;    /* global table spec, when flagged */
    struct cql_col *cols;        /* NULL with NO_METADATA */
};

/* ---- responses (server -> client) ------------------------------------- */

struct cql_error {
    int32_t code;
    struct cql_str msg;
    /* extras, by code */
    uint16_t cl;                 /* unavailable, timeouts, failures */
    int32_t required, alive;     /* unavailable */
    int32_t received, blockfor;  /* timeouts, failures */
    int32_t numfailures;         /* read/write failure */
    uint8_t data_present;        /* read timeout/failure */
    struct cql_str write_type;   /* write timeout/failure */
    struct cql_str ks, table;    /* already exists; function failure: ks, function */
    struct cql_str id;           /* unprepared */
    uint16_t nargs;              /* function failure: arg types (skipped) */
};

struct cql_result {
    int32_t kind;
    struct cql_str keyspace;     /* set_keyspace */
    struct cql_str id;           /* prepared */
    struct cql_meta bind;        /* prepared: bound variables */
    struct cql_meta meta;        /* rows; prepared: result metadata */
    int32_t nrows;               /* rows */
    struct cql_str rows;         /* rows: the raw <rows_content>, validated */
    struct cql_str change, target, sc_ks, sc_name; /* schema_change */
    uint16_t sc_nargs;           /* schema_change FUNCTION/AGGREGATE */
    struct cql_str *sc_args;
};

/* SUPPORTED: a string multimap. */
struct cql_multimap {
    uint16_t n;
    struct cql_str *keys;
    uint16_t *nvals;
    struct cql_str **vals;
};

struct cql_event {
    struct cql_str type;         /* TOPOLOGY_CHANGE, STATUS_CHANGE, SCHEMA_CHANGE */
    struct cql_str change;       /* NEW_NODE/REMOVED_NODE/UP/DOWN or CREATED/... */
    uint8_t addr[16];            /* topology/status */
    uint8_t addrlen;
    int32_t port;
    struct cql_str target, ks, name;  /* schema change */
};

/*
 * Strips what the header flags put before a response's own body (tracing
 * id, warnings, custom payload) and points *body, *len at the rest. Warnings
 * are returned as a [string list] slice in *warnings (n = count, or 0).
 * 0, or -1 with errstr set (a compressed body is refused: none is asked for).
 */
int cql_response_body(const struct cql_header *h, const uint8_t *in, size_t inlen,
                      const uint8_t **body, size_t *len, struct cql_rd *warnings,
                      uint16_t *nwarnings, char *errstr, size_t errstr_size);

/* Each decoder reads a whole body (trailing bytes are allowed, as the spec
 * asks) and returns 0, or -1 with errstr naming what was malformed. */
int cql_decode_error(const uint8_t *body, size_t len, struct cql_error *e,
                     char *errstr, size_t errstr_size);
int cql_decode_authenticate(const uint8_t *body, size_t len, struct cql_str *authenticator,
                            char *errstr, size_t errstr_size);
/* AUTH_CHALLENGE and AUTH_SUCCESS: one [bytes] token. */
int cql_decode_token(const uint8_t *body, size_t len, struct cql_str *token,
                     char *errstr, size_t errstr_size);
int cql_decode_supported(const uint8_t *body, size_t len, struct cql_arena *a,
                         struct cql_multimap *mm, char *errstr, size_t errstr_size);
int cql_decode_result(const uint8_t *body, size_t len, struct cql_arena *a,
                      struct cql_result *res, char *errstr, size_t errstr_size);
int cql_decode_event(const uint8_t *body, size_t len, struct cql_event *ev,
                     char *errstr, size_t errstr_size);

/* The values of one multimap key, or NULL. */
const struct cql_str *cql_multimap_get(const struct cql_multimap *mm, const char *key,
                                       uint16_t *n);

/* Walks the validated rows of a RESULT rows: cell (row, col) as [bytes]. */
struct cql_str cql_rows_cell(const struct cql_result *res, int32_t row, int32_t col);

/* "server error 0x2200 (Invalid): <message>" plus the extras that help
 * (consistency, replicas, write type) into out. Returns out. */
const char *cql_error_text(const struct cql_error *e, char *out, size_t size);
/* "Invalid", "Write_timeout"... ("error 0x1234" style for unknown codes is
 * left to cql_error_text). */
const char *cql_error_name(int32_t code);
/* "local_quorum"..., or NULL for an unknown level. */
const char *cql_consistency_name(uint16_t cl);
/* Parses a lowercase name; -1 when unknown. */
int cql_consistency_parse(const char *name);
const char *cql_opcode_name(uint8_t op);

/* snprintf for messages that may be cut on purpose (long server messages
 * into fixed error buffers), without -Wformat-truncation noise. */
void cql_textf(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- requests (client -> server) -------------------------------------- */

/* Each appends one complete frame to b. */
void cql_enc_startup(struct cql_buf *b, int16_t stream, const char *const *kv, size_t npairs);
void cql_enc_options(struct cql_buf *b, int16_t stream);
void cql_enc_auth_response(struct cql_buf *b, int16_t stream, const void *token, int32_t n);
void cql_enc_register(struct cql_buf *b, int16_t stream, const char *const *events, size_t n);
void cql_enc_prepare(struct cql_buf *b, int16_t stream, const char *cql, size_t len);
/* QUERY and EXECUTE: values is n pre-encoded [value]s (vlen bytes); with
 * n == 0 no values flag is sent. */
void cql_enc_query(struct cql_buf *b, int16_t stream, const char *cql, size_t len,
                   uint16_t consistency, uint16_t n, const void *values, size_t vlen);
void cql_enc_execute(struct cql_buf *b, int16_t stream, const void *id, uint16_t idlen,
                     uint16_t consistency, uint16_t n, const void *values, size_t vlen);
/* BATCH: begin with the statement count, add n prepared statements, end. */
size_t cql_enc_batch_begin(struct cql_buf *b, int16_t stream, uint8_t type, uint16_t n);
void cql_enc_batch_prepared(struct cql_buf *b, const void *id, uint16_t idlen, uint16_t n,
                            const void *values, size_t vlen);
void cql_enc_batch_query(struct cql_buf *b, const char *cql, size_t len, uint16_t n,
                         const void *values, size_t vlen);
void cql_enc_batch_end(struct cql_buf *b, size_t frame_off, uint16_t consistency);

/* ---- server side: decode requests, encode responses ------------------- */

struct cql_params {
    uint16_t consistency;
    uint8_t flags;
    uint16_t nvalues;
    struct cql_str values;       /* the n [value]s (names included with 0x40) */
    int32_t page_size;
    struct cql_str paging_state;
    uint16_t serial_consistency;
    int64_t timestamp;
};

struct cql_batch_stmt {
    uint8_t kind;                /* 0 query string, 1 prepared id */
    struct cql_str query_or_id;
    uint16_t nvalues;
    struct cql_str values;
};

struct cql_batch {
    uint8_t type;
    uint16_t n;
    struct cql_batch_stmt *stmts;
    uint16_t consistency;
    uint8_t flags;
    uint16_t serial_consistency;
    int64_t timestamp;
};

int cql_decode_startup(const uint8_t *body, size_t len, struct cql_arena *a,
                       struct cql_multimap *opts, char *errstr, size_t errstr_size);
int cql_decode_query(const uint8_t *body, size_t len, struct cql_str *cql,
                     struct cql_params *p, char *errstr, size_t errstr_size);
int cql_decode_prepare(const uint8_t *body, size_t len, struct cql_str *cql,
                       char *errstr, size_t errstr_size);
int cql_decode_execute(const uint8_t *body, size_t len, struct cql_str *id,
                       struct cql_params *p, char *errstr, size_t errstr_size);
int cql_decode_batch(const uint8_t *body, size_t len, struct cql_arena *a,
                     struct cql_batch *bt, char *errstr, size_t errstr_size);
int cql_decode_register(const uint8_t *body, size_t len, struct cql_arena *a,
                        struct cql_multimap *events, char *errstr, size_t errstr_size);

void cql_enc_error(struct cql_buf *b, int16_t stream, const struct cql_error *e);
void cql_enc_ready(struct cql_buf *b, int16_t stream);
void cql_enc_authenticate(struct cql_buf *b, int16_t stream, const char *authenticator);
/* AUTH_CHALLENGE / AUTH_SUCCESS (op), token NULL: null. */
void cql_enc_token(struct cql_buf *b, uint8_t op, int16_t stream, const void *token, int32_t n);
/* SUPPORTED: keys[i] -> vals[i][0..nvals[i]). */
void cql_enc_supported(struct cql_buf *b, int16_t stream, const char *const *keys,
                       const char *const *const *vals, const uint16_t *nvals, uint16_t n);
void cql_enc_result_void(struct cql_buf *b, int16_t stream);
void cql_enc_result_set_keyspace(struct cql_buf *b, int16_t stream, const char *ks);
/* Metadata with a global table spec when m->ks.p is set; with
 * CQL_META_NO_METADATA in flags only flags and the count are written. */
void cql_enc_meta(struct cql_buf *b, const struct cql_meta *m, int prepared);
void cql_enc_result_prepared(struct cql_buf *b, int16_t stream, const void *id, uint16_t idlen,
                             const struct cql_meta *bind, const struct cql_meta *result);
void cql_enc_result_rows(struct cql_buf *b, int16_t stream, const struct cql_meta *m,
                         int32_t nrows, const void *rows, size_t rlen);
void cql_enc_result_schema_change(struct cql_buf *b, int16_t stream, const char *change,
                                  const char *target, const char *ks, const char *name);
void cql_enc_event_status(struct cql_buf *b, const char *type, const char *change,
                          const uint8_t *addr, uint8_t addrlen, int32_t port);

#endif
