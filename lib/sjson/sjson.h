/* sjson - a small C interface to simdjson's DOM parser, for plugins that
 * must turn JSON bytes into values fast (Debian's libsimdjson-dev 3.0).
 *
 * The DOM parse validates the whole document (syntax, UTF-8, depth) before
 * any value is read: malformed input is rejected, never half-read. Values
 * are views into the parser's last document: valid until the next sj_parse
 * on the same parser or sj_parser_free. One parser per thread.
 *
 * This is plugin-side code (a static library linked into the plugins that
 * need it); it is not part of the host ABI.
 */
#ifndef SPOKE_SJSON_H
#define SPOKE_SJSON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct sj_parser;

/* A value: opaque copy of a simdjson DOM element (a tape reference). */
struct sj_value {
    uint64_t opaque[2];
};

/* Iteration state over an array or object. */
struct sj_iter {
    uint64_t opaque[6];
};

enum sj_type {
    SJ_NULL = 0,
    SJ_BOOL,
    SJ_INT,      /* fits int64 */
    SJ_UINT,     /* above INT64_MAX, fits uint64 */
    SJ_DOUBLE,
    SJ_STRING,
    SJ_ARRAY,
    SJ_OBJECT
};

/* max_bytes: largest document accepted; max_depth: deepest nesting (both
 * refused with a clear error when exceeded). NULL on out-of-memory. */
struct sj_parser *sj_parser_new(size_t max_bytes, size_t max_depth);
void sj_parser_free(struct sj_parser *p);

/* Parses buf[0..len) (no padding needed: copied into the parser's own
 * padded buffer first). 0, or -1 with a reason ("invalid UTF-8 ...",
 * "nesting deeper than N", ...) in err. */
int sj_parse(struct sj_parser *p, const void *buf, size_t len, struct sj_value *root,
             char *err, size_t errsize);

/* Readable bytes a buffer must have past its document for sj_parse_padded
 * to parse it in place (simdjson's SIMDJSON_PADDING; their value does not
 * matter). */
#define SJ_PADDING 64

/* sj_parse on a buffer of cap readable bytes: when cap >= len + SJ_PADDING
 * the document is parsed where it is, without the copy (a 1 MB document:
 * 1 MB less to write and keep); otherwise it is copied as sj_parse does.
 * Same limits, results and errors as sj_parse. Values do not point into
 * buf: it may be freed or reused after the call. */
int sj_parse_padded(struct sj_parser *p, const void *buf, size_t len, size_t cap,
                    struct sj_value *root, char *err, size_t errsize);

/* What a parse used of the parser's buffers, in bytes: the document's
 * length, and the parts of the structural index, tape and string buffer
 * it wrote. */
struct sj_usage {
    size_t doc, structurals, tape, strings;
};

/* The usage of the last successful parse (all 0 when there was none). It
 * walks the document's tape once: call it rarely, e.g. before releasing the
 * parser. */
void sj_parser_usage(const struct sj_parser *p, struct sj_usage *u);

/* Prepares a parser (a new one, say, after the last was freed) for a
 * document like the one u describes: allocates room for one 1/8 longer and
 * faults in the parts of the buffers such a document writes (memwarm.h), so
 * that parsing it costs no page faults. 0, or -1 on out-of-memory (the
 * parser stays usable). */
int sj_parser_warm(struct sj_parser *p, const struct sj_usage *u);

enum sj_type sj_type(const struct sj_value *v);
/* Getters: 0, or -1 when the value has another type (or is out of range). */
int sj_get_bool(const struct sj_value *v, int *out);
int sj_get_int64(const struct sj_value *v, int64_t *out);
int sj_get_uint64(const struct sj_value *v, uint64_t *out);
/* Any number as a double. */
int sj_get_double(const struct sj_value *v, double *out);
/* String bytes (valid UTF-8, not NUL-terminated). */
int sj_get_string(const struct sj_value *v, const char **s, size_t *len);

/* Member of an object by key: 0 when found, -1 when missing or v is not an
 * object. With duplicate keys, the first wins. */
int sj_object_get(const struct sj_value *v, const char *key, size_t klen, struct sj_value *out);
/* Element count of an array or object; 0 for other types. */
size_t sj_count(const struct sj_value *v);

/* Iteration: 0 to start (v must be an array / object), then next returns 1
 * per element and 0 at the end. */
int sj_array_iter(const struct sj_value *v, struct sj_iter *it);
int sj_array_next(struct sj_iter *it, struct sj_value *out);
int sj_object_iter(const struct sj_value *v, struct sj_iter *it);
int sj_object_next(struct sj_iter *it, const char **key, size_t *klen, struct sj_value *out);

/* Several elements at once, for a caller that reads whole objects: each
 * element's type, its scalar value already decoded, and the value itself. */
struct sj_member {
    const char *key;        /* object members: the key (not NUL-terminated); */
    size_t klen;            /* array elements: NULL, 0 */
    enum sj_type type;
    union {
        int64_t i;          /* SJ_INT */
        uint64_t u;         /* SJ_UINT */
        double d;           /* SJ_DOUBLE */
        int b;              /* SJ_BOOL */
        struct {
            const char *p;  /* SJ_STRING: bytes (valid UTF-8, not NUL-terminated) */
            size_t len;
        } s;
    } as;                   /* SJ_NULL, SJ_ARRAY, SJ_OBJECT: nothing */
    struct sj_value v;      /* the value, for the other getters */
};

/* The next elements of an iteration (sj_object_iter / sj_array_iter) into
 * m[0..max), as sj_object_next / sj_array_next would give them one by one:
 * returns how many were filled, 0 at the end. */
size_t sj_next_n(struct sj_iter *it, struct sj_member *m, size_t max);

/* The raw JSON text of a value re-serialized compactly (minified) into buf;
 * returns the length needed (write happens only when it fits). */
size_t sj_to_json(const struct sj_value *v, char *buf, size_t size);

#ifdef __cplusplus
}
#endif

#endif
