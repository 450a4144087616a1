/* record - records in flight, typed rows and schemas (host side of the ABI).
 *
 * A record's value exists in up to three forms - bytes, typed row, jansson
 * tree - and is converted lazily between them; each conversion runs at most
 * once per value and is cached. Setting one form drops the others.
 *   row   -> bytes: rowjson_write (dedicated writer, not jansson)
 *   bytes -> row  : rowjson_parse (YAJL SAX parser, full validation)
 *   bytes -> json : json_loadb;  json -> bytes: json_dumpb
 *   row  <-> json : rowjson_to_json / rowjson_from_json
 *
 * Records are used by one thread at a time (the host hands them over through
 * queues); they are not internally locked. Schemas are immutable once a row
 * uses them and their refcount is atomic, so rows of one schema may live on
 * several threads.
 */
#ifndef SPOKE_RECORD_H
#define SPOKE_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "buf.h"
#include "spoke/plugin.h"

struct origin; /* ack.h */

/* Which value forms are currently valid (bit set). */
#define REC_FORM_BYTES 0x1u
#define REC_FORM_ROW   0x2u
#define REC_FORM_JSON  0x4u

struct record_header {
    char *name;
    unsigned char *val;
    size_t len;
};

/* Keys up to this many bytes (NUL excluded) live inside the record. */
#define REC_KEY_INLINE 23

struct spoke_record {
    const char *topic;           /* interned (intern_str): never freed */
    unsigned char *key;          /* NULL = no key; may point to kinl */
    size_t klen;
    int64_t ts;                  /* ms since epoch */
    struct record_header *hdrs;
    size_t nhdrs, caphdrs;

    unsigned forms;              /* REC_FORM_*; 0 = null value */
    uint8_t pool;                /* recycle class of this allocation (recycle.h); 0 = malloc */
    unsigned char *bytes;        /* valid iff forms & REC_FORM_BYTES */
    size_t blen;
    struct spoke_row *row;       /* valid iff forms & REC_FORM_ROW */
    json_t *json;                /* valid iff forms & REC_FORM_JSON */
    const char *row_error;       /* static reason the bytes are not a row, once tried */

    const char *part;            /* source position: interned partition, NULL = none */
    int64_t off;

    struct origin *origin;       /* ack tracking; NULL = derives from nothing */
    uint64_t pend_seq;           /* a sink's pendset slot (pendset.c); trusted only when
                                    that slot holds this record, so never initialized */

    /* Storage that saves an allocation per record: a short key, and the
     * value bytes given to rec_new (bytes == inl then; never freed alone). */
    unsigned char kinl[REC_KEY_INLINE + 1];
    unsigned char inl[];
};

/* Interns a string for the process lifetime (topic and partition names);
 * thread-safe. Returns NULL on out-of-memory. */
const char *intern_str(const char *s);
/* Frees every interned string; only at exit, after all records are gone. */
void intern_free_all(void);

/* New record; key/val copied (NULL val = null value); ts = wall clock now
 * (between rec_clock_begin and rec_clock_end: as read at the start or at
 * the kernel clock's last tick since, so at most one tick, <= 4 ms, early).
 * topic must not be NULL (the caller resolves the default). NULL on OOM. */
struct spoke_record *rec_new(const char *topic, const void *key, size_t klen,
                             const void *val, size_t vlen);
/* Brackets a task callback on this thread (the runtime: a source's poll,
 * a transform's or a sink's batch): records created inside share a clock reading until
 * the kernel's clock ticks, instead of a precise read each. Not nested. */
void rec_clock_begin(void);
void rec_clock_end(void);
/* rec_new with a topic already interned (intern_str): no lookup. */
struct spoke_record *rec_new_interned(const char *topic, const void *key, size_t klen,
                                      const void *val, size_t vlen);
/* Deep copy: value forms, headers, position. The copy holds its own unit of
 * the same origin (origin_hold). NULL on OOM. */
struct spoke_record *rec_clone(const struct spoke_record *rec);
/* Frees a record. If it still holds an origin, that unit is abandoned
 * (origin_done(o, 0)): its source position will not be committed. NULL ok. */
void rec_free(struct spoke_record *rec);
/* Marks the record delivered (origin_done(o, 1)) and detaches the origin.
 * Does not free. */
void rec_ack(struct spoke_record *rec);
/* Attaches an origin unit the caller already holds (origin_hold or a new
 * tracker entry). Replaces no existing origin (asserts there is none). */
void rec_set_origin(struct spoke_record *rec, struct origin *o);

/* Accessors behind the ABI (see plugin.h for contracts). */
int rec_set_topic(struct spoke_record *rec, const char *topic);
int rec_set_position(struct spoke_record *rec, const char *partition, int64_t offset);
void rec_position(const struct spoke_record *rec, const char **partition, int64_t *offset);
int rec_set_key(struct spoke_record *rec, void *key, size_t len, enum spoke_buf_mode mode);
int rec_header_add(struct spoke_record *rec, const char *name, const void *val, size_t len);
int rec_header_get(const struct spoke_record *rec, size_t i, const char **name,
                   const void **val, size_t *len);
const void *rec_value_bytes(struct spoke_record *rec, size_t *len);
int rec_set_value(struct spoke_record *rec, void *val, size_t len, enum spoke_buf_mode mode);
const struct spoke_row *rec_value_row(struct spoke_record *rec, const char **why);
int rec_set_row(struct spoke_record *rec, struct spoke_row *row);
json_t *rec_value_json(struct spoke_record *rec);
int rec_set_json(struct spoke_record *rec, json_t *value);

/* ---- schemas ---- */
struct spoke_schema *schema_new(void);
int schema_add(struct spoke_schema *s, const char *name, enum spoke_type type);
int schema_index(const struct spoke_schema *s, const char *name);
/* Same as schema_index with an explicit length (name need not be NUL-terminated). */
int schema_index_n(const struct spoke_schema *s, const char *name, size_t len);
size_t schema_count(const struct spoke_schema *s);
const char *schema_name(const struct spoke_schema *s, size_t i);
enum spoke_type schema_type(const struct spoke_schema *s, size_t i);
void schema_ref(struct spoke_schema *s);
void schema_unref(struct spoke_schema *s);
/* Field i's name as a JSON object key with its colon, e.g. "\"name\":",
 * escaped and precomputed by schema_add so writers copy it in one go.
 * Borrowed for the schema's lifetime; i must be < schema_count. */
const char *schema_json_key(const struct spoke_schema *s, size_t i, size_t *len);

/* ---- rows ---- */
struct spoke_row *row_new(struct spoke_schema *s);
struct spoke_row *row_new_list(size_t n);
/* As row_new / row_new_list, with room for strbytes bytes of strings (each
 * string takes len + 1) inside the row's own allocation: strings set later
 * use it while it lasts instead of a malloc each. Parsers size it exactly. */
struct spoke_row *row_new_reserve(struct spoke_schema *s, size_t strbytes);
struct spoke_row *row_new_list_reserve(size_t n, size_t strbytes);
void row_free(struct spoke_row *row);
struct spoke_row *row_clone(const struct spoke_row *row);
size_t row_count(const struct spoke_row *row);
const struct spoke_schema *row_schema(const struct spoke_row *row);
int row_index(const struct spoke_row *row, const char *name);
int row_set_null(struct spoke_row *row, size_t i);
int row_set_bool(struct spoke_row *row, size_t i, int v);
int row_set_int(struct spoke_row *row, size_t i, int64_t v);
int row_set_double(struct spoke_row *row, size_t i, double v);
/* Copies; the bytes must be valid UTF-8 (SPOKE_ERR_INVALID otherwise). */
int row_set_string(struct spoke_row *row, size_t i, const char *s, size_t len);
int row_set_timestamp(struct spoke_row *row, size_t i, int64_t ms);
int row_set_row(struct spoke_row *row, size_t i, struct spoke_row *child);
enum spoke_type row_type(const struct spoke_row *row, size_t i);
const struct spoke_value *row_values(const struct spoke_row *row, size_t *n);
int row_get_bool(const struct spoke_row *row, size_t i);
int64_t row_get_int(const struct spoke_row *row, size_t i);
double row_get_double(const struct spoke_row *row, size_t i);
const char *row_get_string(const struct spoke_row *row, size_t i, size_t *len);
int64_t row_get_timestamp(const struct spoke_row *row, size_t i);
const struct spoke_row *row_get_row(const struct spoke_row *row, size_t i);
/* 1 if the bytes are valid UTF-8 (no overlong forms, no surrogates, nothing
 * above U+10FFFF), else 0. */
int row_utf8_valid(const void *s, size_t len);

/* ---- rows <-> JSON ---- */

/* Appends the row as compact JSON to out (RFC 8259; timestamps as ISO-8601
 * UTC strings with milliseconds, e.g. "2024-11-19T08:22:18.000Z"; non-finite
 * doubles as null; doubles in shortest round-trip form). 0, or -1 on OOM. */
int rowjson_write(const struct spoke_row *row, struct buf *out);
/* Writes ms as the ISO-8601 UTC text rowjson_write uses, without quotes:
 * exactly textfmt_timestamp's bytes (24 for years 0..9999), from a
 * per-thread cache of the last second's text when it can. o holds 40
 * bytes; returns the length. */
size_t rowjson_timestamp(int64_t ms, char *o);
/* Parses one JSON object (whitespace around it allowed, nothing else) into a
 * row with a schema inferred from it: integers that fit int64 -> INT, other
 * numbers -> DOUBLE, objects -> MAP, arrays -> LIST. Rejects invalid UTF-8,
 * trailing garbage, nesting deeper than 64 and duplicate keys. Returns NULL
 * and a reason in err on failure. */
struct spoke_row *rowjson_parse(const void *buf, size_t len, char *err, size_t errsize);
/* Same as rowjson_parse; on failure it also sets *why (if not NULL) to a
 * static one-line class of the failure ("value is not valid JSON", "value is
 * not a JSON object", ...) that a record can keep as its row_error. */
struct spoke_row *rowjson_parse_why(const void *buf, size_t len, char *err, size_t errsize,
                                    const char **why);
/* Row <-> jansson tree. NULL on failure (rowjson_from_json: not an object). */
json_t *rowjson_to_json(const struct spoke_row *row);
struct spoke_row *rowjson_from_json(const json_t *obj);

#endif
