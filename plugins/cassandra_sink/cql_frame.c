/*
 * cql_frame.c - CQL native protocol v4 codec: buffers, frame headers, every
 * request and response message, type options and metadata. See cql_frame.h.
 *
 * Decoders treat the body as hostile: every length is checked against what
 * is left before it is used, counts are checked against the smallest size
 * their elements could take before anything is allocated, and type options
 * nest at most CQL_TYPE_DEPTH deep.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cql_frame.h"

/* ------------------------------------------------------------------------ */
/* Buffers                                                                   */
/* ------------------------------------------------------------------------ */

void cql_buf_free(struct cql_buf *b)
{
    if (b == NULL)
        return;
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

static int buf_grow(struct cql_buf *b, size_t n);

int cql_buf_reserve(struct cql_buf *b, size_t n)
{
    if (__builtin_expect(b->cap - b->len >= n && !b->oom, 1))
        return 0;
    return buf_grow(b, n);
}

static int buf_grow(struct cql_buf *b, size_t n)
{
    size_t cap;
    uint8_t *np;

    if (b->oom)
        return -1;
    if (b->cap - b->len >= n)
        return 0;
    if (n > SIZE_MAX / 2 - b->len) {
        b->oom = 1;
        return -1;
    }
    cap = b->cap ? b->cap : 256;
    while (cap - b->len < n)
        cap *= 2;
    np = realloc(b->p, cap);
    if (np == NULL) {
        b->oom = 1;
        return -1;
    }
    b->p = np;
    b->cap = cap;
    return 0;
}

void cql_put_raw(struct cql_buf *b, const void *p, size_t n)
{
    if (n == 0 || cql_buf_reserve(b, n) < 0)
        return;
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

void cql_put_u8(struct cql_buf *b, uint8_t v)
{
    if (cql_buf_reserve(b, 1) < 0)
        return;
    b->p[b->len++] = v;
}

void cql_put_u16(struct cql_buf *b, uint16_t v)
{
    if (cql_buf_reserve(b, 2) < 0)
        return;
    b->p[b->len++] = (uint8_t)(v >> 8);
    b->p[b->len++] = (uint8_t)v;
}

void cql_put_i32(struct cql_buf *b, int32_t v)
{
    uint32_t u = (uint32_t)v;
    if (cql_buf_reserve(b, 4) < 0)
        return;
    b->p[b->len++] = (uint8_t)(u >> 24);
    b->p[b->len++] = (uint8_t)(u >> 16);
    b->p[b->len++] = (uint8_t)(u >> 8);
    b->p[b->len++] = (uint8_t)u;
}

void cql_put_i64(struct cql_buf *b, int64_t v)
{
    uint64_t u = (uint64_t)v;
    if (cql_buf_reserve(b, 8) < 0)
        return;
    for (int s = 56; s >= 0; s -= 8)
        b->p[b->len++] = (uint8_t)(u >> s);
}

void cql_put_string(struct cql_buf *b, const char *s, size_t n)
{
    if (n > 0xFFFF)
        n = 0xFFFF;
    cql_put_u16(b, (uint16_t)n);
    cql_put_raw(b, s, n);
}

void cql_put_long_string(struct cql_buf *b, const char *s, size_t n)
{
    if (n > INT32_MAX)
        n = INT32_MAX;
    cql_put_i32(b, (int32_t)n);
    cql_put_raw(b, s, n);
}

void cql_put_bytes(struct cql_buf *b, const void *p, int32_t n)
{
    if (p == NULL || n < 0) {
        cql_put_i32(b, -1);
        return;
    }
    cql_put_i32(b, n);
    cql_put_raw(b, p, (size_t)n);
}

void cql_put_short_bytes(struct cql_buf *b, const void *p, uint16_t n)
{
    cql_put_u16(b, n);
    cql_put_raw(b, p, n);
}

void cql_put_string_map(struct cql_buf *b, const char *const *kv, size_t n)
{
    cql_put_u16(b, (uint16_t)n);
    for (size_t i = 0; i < n; i++) {
        cql_put_string(b, kv[2 * i], strlen(kv[2 * i]));
        cql_put_string(b, kv[2 * i + 1], strlen(kv[2 * i + 1]));
    }
}

void cql_patch_i32(struct cql_buf *b, size_t off, int32_t v)
{
    uint32_t u = (uint32_t)v;
    if (b->oom || off + 4 > b->len)
        return;
    b->p[off] = (uint8_t)(u >> 24);
    b->p[off + 1] = (uint8_t)(u >> 16);
    b->p[off + 2] = (uint8_t)(u >> 8);
    b->p[off + 3] = (uint8_t)u;
}

/* ---- readers ---- */

void cql_rd_init(struct cql_rd *r, const void *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->pos = 0;
    r->err = NULL;
}

/* Claims n bytes; NULL (and the sticky error) when they are not there. */
static const uint8_t *rd_take(struct cql_rd *r, size_t n, const char *what)
{
    const uint8_t *p;
    if (r->err)
        return NULL;
    if (n > r->len - r->pos) {
        r->err = what;
        return NULL;
    }
    p = r->p + r->pos;
    r->pos += n;
    return p;
}

const uint8_t *cql_get_raw(struct cql_rd *r, size_t n)
{
    return rd_take(r, n, "truncated bytes");
}

uint8_t cql_get_u8(struct cql_rd *r)
{
    const uint8_t *p = rd_take(r, 1, "truncated byte");
    return p ? p[0] : 0;
}

uint16_t cql_get_u16(struct cql_rd *r)
{
    const uint8_t *p = rd_take(r, 2, "truncated short");
    return p ? (uint16_t)(p[0] << 8 | p[1]) : 0;
}

int32_t cql_get_i32(struct cql_rd *r)
{
    const uint8_t *p = rd_take(r, 4, "truncated int");
    if (p == NULL)
        return 0;
    return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
}

int64_t cql_get_i64(struct cql_rd *r)
{
    const uint8_t *p = rd_take(r, 8, "truncated long");
    uint64_t u = 0;
    if (p == NULL)
        return 0;
    for (int i = 0; i < 8; i++)
        u = u << 8 | p[i];
    return (int64_t)u;
}

struct cql_str cql_get_string(struct cql_rd *r)
{
    struct cql_str s = { NULL, 0 };
    uint16_t n = cql_get_u16(r);
    const uint8_t *p = rd_take(r, n, "truncated string");
    if (p) {
        s.p = (const char *)p;
        s.n = n;
    }
    return s;
}

struct cql_str cql_get_long_string(struct cql_rd *r)
{
    struct cql_str s = { NULL, 0 };
    int32_t n = cql_get_i32(r);
    const uint8_t *p;
    if (n < 0) {
        if (!r->err)
            r->err = "negative long string length";
        return s;
    }
    p = rd_take(r, (size_t)n, "truncated long string");
    if (p) {
        s.p = (const char *)p;
        s.n = n;
    }
    return s;
}

struct cql_str cql_get_bytes(struct cql_rd *r)
{
    struct cql_str s = { NULL, -1 };
    int32_t n = cql_get_i32(r);
    const uint8_t *p;
    if (r->err || n < 0)
        return s;
    p = rd_take(r, (size_t)n, "truncated bytes");
    if (p) {
        s.p = (const char *)p;
        s.n = n;
    }
    return s;
}

struct cql_str cql_get_value(struct cql_rd *r)
{
    struct cql_str s = { NULL, -1 };
    int32_t n = cql_get_i32(r);
    const uint8_t *p;
    if (r->err)
        return s;
    if (n < -2) {
        r->err = "invalid value length";
        return s;
    }
    if (n < 0) {
        s.n = n;
        return s;
    }
    p = rd_take(r, (size_t)n, "truncated value");
    if (p) {
        s.p = (const char *)p;
        s.n = n;
    }
    return s;
}

struct cql_str cql_get_short_bytes(struct cql_rd *r)
{
    struct cql_str s = { NULL, 0 };
    uint16_t n = cql_get_u16(r);
    const uint8_t *p = rd_take(r, n, "truncated short bytes");
    if (p) {
        s.p = (const char *)p;
        s.n = n;
    }
    return s;
}

/* ---- arena ---- */

struct cql_chunk {
    struct cql_chunk *next;
    size_t used, cap;
    max_align_t data[];
};

void *cql_arena_alloc(struct cql_arena *a, size_t n)
{
    struct cql_chunk *c = a->head;
    size_t need = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    void *p;

    if (need == 0)
        need = sizeof(max_align_t);
    if (c == NULL || c->cap - c->used < need) {
        size_t cap = need > 4096 ? need : 4096;
        c = malloc(sizeof(*c) + cap);
        if (c == NULL)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    p = (char *)c->data + c->used;
    c->used += need;
    memset(p, 0, need);
    return p;
}

void cql_arena_free(struct cql_arena *a)
{
    struct cql_chunk *c = a ? a->head : NULL;
    while (c) {
        struct cql_chunk *next = c->next;
        free(c);
        c = next;
    }
    if (a)
        a->head = NULL;
}

/* ------------------------------------------------------------------------ */
/* Frame header                                                              */
/* ------------------------------------------------------------------------ */

void cql_header_encode(uint8_t out[CQL_HEADER_SIZE], const struct cql_header *h)
{
    uint16_t s = (uint16_t)h->stream;
    out[0] = h->version;
    out[1] = h->flags;
    out[2] = (uint8_t)(s >> 8);
    out[3] = (uint8_t)s;
    out[4] = h->opcode;
    out[5] = (uint8_t)(h->length >> 24);
    out[6] = (uint8_t)(h->length >> 16);
    out[7] = (uint8_t)(h->length >> 8);
    out[8] = (uint8_t)h->length;
}

int cql_header_decode(const uint8_t in[CQL_HEADER_SIZE], struct cql_header *h,
                      size_t max_body, char *errstr, size_t errstr_size)
{
    h->version = in[0];
    h->flags = in[1];
    h->stream = (int16_t)(uint16_t)(in[2] << 8 | in[3]);
    h->opcode = in[4];
    h->length = (uint32_t)in[5] << 24 | (uint32_t)in[6] << 16 | (uint32_t)in[7] << 8 | in[8];
    if (max_body > CQL_MAX_BODY)
        max_body = CQL_MAX_BODY;
    if (h->length > max_body) {
        snprintf(errstr, errstr_size, "frame body of %u bytes exceeds the limit of %zu bytes",
                 h->length, max_body);
        return -1;
    }
    return 0;
}

size_t cql_frame_begin(struct cql_buf *b, uint8_t version, uint8_t opcode, int16_t stream)
{
    uint8_t hdr[CQL_HEADER_SIZE];
    struct cql_header h = { version, 0, stream, opcode, 0 };
    size_t off = b->len;
    cql_header_encode(hdr, &h);
    cql_put_raw(b, hdr, sizeof(hdr));
    return off;
}

void cql_frame_end(struct cql_buf *b, size_t frame_off)
{
    if (b->oom || frame_off + CQL_HEADER_SIZE > b->len)
        return;
    cql_patch_i32(b, frame_off + 5, (int32_t)(uint32_t)(b->len - frame_off - CQL_HEADER_SIZE));
}

/* ------------------------------------------------------------------------ */
/* Names                                                                     */
/* ------------------------------------------------------------------------ */

const char *cql_error_name(int32_t code)
{
    switch (code) {
    case CQL_ERR_SERVER: return "Server_error";
    case CQL_ERR_PROTOCOL: return "Protocol_error";
    case CQL_ERR_AUTH: return "Bad_credentials";
    case CQL_ERR_UNAVAILABLE: return "Unavailable";
    case CQL_ERR_OVERLOADED: return "Overloaded";
    case CQL_ERR_BOOTSTRAPPING: return "Is_bootstrapping";
    case CQL_ERR_TRUNCATE: return "Truncate_error";
    case CQL_ERR_WRITE_TIMEOUT: return "Write_timeout";
    case CQL_ERR_READ_TIMEOUT: return "Read_timeout";
    case CQL_ERR_READ_FAILURE: return "Read_failure";
    case CQL_ERR_FUNC_FAILURE: return "Function_failure";
    case CQL_ERR_WRITE_FAILURE: return "Write_failure";
    case CQL_ERR_SYNTAX: return "Syntax_error";
    case CQL_ERR_UNAUTHORIZED: return "Unauthorized";
    case CQL_ERR_INVALID: return "Invalid";
    case CQL_ERR_CONFIG: return "Config_error";
    case CQL_ERR_ALREADY_EXISTS: return "Already_exists";
    case CQL_ERR_UNPREPARED: return "Unprepared";
    default: return "unknown";
    }
}

static const char *const consistency_names[] = {
    "any", "one", "two", "three", "quorum", "all", "local_quorum", "each_quorum",
    "serial", "local_serial", "local_one"
};

const char *cql_consistency_name(uint16_t cl)
{
    return cl < sizeof(consistency_names) / sizeof(consistency_names[0]) ? consistency_names[cl]
                                                                          : NULL;
}

int cql_consistency_parse(const char *name)
{
    for (size_t i = 0; i < sizeof(consistency_names) / sizeof(consistency_names[0]); i++)
        if (strcmp(name, consistency_names[i]) == 0)
            return (int)i;
    return -1;
}

const char *cql_opcode_name(uint8_t op)
{
    static const char *const names[] = {
        "ERROR", "STARTUP", "READY", "AUTHENTICATE", "opcode 0x04", "OPTIONS", "SUPPORTED",
        "QUERY", "RESULT", "PREPARE", "EXECUTE", "REGISTER", "EVENT", "BATCH",
        "AUTH_CHALLENGE", "AUTH_RESPONSE", "AUTH_SUCCESS"
    };
    return op < sizeof(names) / sizeof(names[0]) ? names[op] : "unknown opcode";
}

/* Appends printf output to out[*used..size), never past the end. */
static void text_add(char *out, size_t size, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void text_add(char *out, size_t size, size_t *used, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (*used >= size)
        return;
    va_start(ap, fmt);
    n = vsnprintf(out + *used, size - *used, fmt, ap);
    va_end(ap);
    if (n > 0)
        *used = *used + (size_t)n < size ? *used + (size_t)n : size - 1;
}

void cql_textf(char *out, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, size, fmt, ap);
    va_end(ap);
}

const char *cql_error_text(const struct cql_error *e, char *out, size_t size)
{
    size_t used = 0;
    const char *cl = cql_consistency_name(e->cl);

    if (size == 0)
        return out;
    out[0] = '\0';
    text_add(out, size, &used, "server error 0x%04x (%s): %.*s", (unsigned)e->code,
             cql_error_name(e->code), (int)(e->msg.n > 0 ? e->msg.n : 0),
             e->msg.p ? e->msg.p : "");
    switch (e->code) {
    case CQL_ERR_UNAVAILABLE:
        text_add(out, size, &used, " [consistency %s, %d replicas required, %d alive]",
                 cl ? cl : "?", e->required, e->alive);
        break;
    case CQL_ERR_WRITE_TIMEOUT:
    case CQL_ERR_WRITE_FAILURE:
        text_add(out, size, &used, " [consistency %s, %d of %d replicas acknowledged, "
                 "write type %.*s]", cl ? cl : "?", e->received, e->blockfor,
                 (int)(e->write_type.n > 0 ? e->write_type.n : 0),
                 e->write_type.p ? e->write_type.p : "");
        break;
    case CQL_ERR_READ_TIMEOUT:
    case CQL_ERR_READ_FAILURE:
        text_add(out, size, &used, " [consistency %s, %d of %d replicas responded]",
                 cl ? cl : "?", e->received, e->blockfor);
        break;
    default:
        break;
    }
    return out;
}

/* ------------------------------------------------------------------------ */
/* Types                                                                     */
/* ------------------------------------------------------------------------ */

static const struct cql_type simple_types[0x15] = {
    [0x01] = { .id = 0x01 }, [0x02] = { .id = 0x02 }, [0x03] = { .id = 0x03 },
    [0x04] = { .id = 0x04 }, [0x05] = { .id = 0x05 }, [0x06] = { .id = 0x06 },
    [0x07] = { .id = 0x07 }, [0x08] = { .id = 0x08 }, [0x09] = { .id = 0x09 },
    [0x0A] = { .id = 0x0A }, [0x0B] = { .id = 0x0B }, [0x0C] = { .id = 0x0C },
    [0x0D] = { .id = 0x0D }, [0x0E] = { .id = 0x0E }, [0x0F] = { .id = 0x0F },
    [0x10] = { .id = 0x10 }, [0x11] = { .id = 0x11 }, [0x12] = { .id = 0x12 },
    [0x13] = { .id = 0x13 }, [0x14] = { .id = 0x14 },
};

const struct cql_type *cql_type_simple(uint16_t id)
{
    return id >= 1 && id < 0x15 && id != 0x0A ? &simple_types[id] : NULL;
}

const struct cql_type *cql_type_decode(struct cql_rd *r, struct cql_arena *a, int depth)
{
    uint16_t id = cql_get_u16(r);
    struct cql_type *t;

    if (r->err)
        return NULL;
    if (depth >= CQL_TYPE_DEPTH) {
        r->err = "type nested too deeply";
        return NULL;
    }
    if (cql_type_simple(id))
        return cql_type_simple(id);
    t = cql_arena_alloc(a, sizeof(*t));
    if (t == NULL) {
        r->err = "out of memory";
        return NULL;
    }
    t->id = id;
    switch (id) {
    case CQL_T_CUSTOM:
        t->custom = cql_get_string(r);
        break;
    case CQL_T_LIST:
    case CQL_T_SET:
    case CQL_T_MAP:
        t->n = id == CQL_T_MAP ? 2 : 1;
        t->sub = cql_arena_alloc(a, t->n * sizeof(*t->sub));
        if (t->sub == NULL) {
            r->err = "out of memory";
            return NULL;
        }
        for (uint16_t i = 0; i < t->n; i++)
            if ((t->sub[i] = cql_type_decode(r, a, depth + 1)) == NULL)
                return NULL;
        break;
    case CQL_T_UDT:
    case CQL_T_TUPLE:
        if (id == CQL_T_UDT) {
            t->custom = cql_get_string(r);
            t->udt_name = cql_get_string(r);
        }
        t->n = cql_get_u16(r);
        /* Each element takes at least 2 bytes (udt: 4): no allocation beyond
         * what the body could describe. */
        if (r->err || (size_t)t->n * (id == CQL_T_UDT ? 4 : 2) > cql_rd_left(r)) {
            if (!r->err)
                r->err = "type element count exceeds the body";
            return NULL;
        }
        t->sub = cql_arena_alloc(a, (t->n ? t->n : 1) * sizeof(*t->sub));
        if (id == CQL_T_UDT)
            t->names = cql_arena_alloc(a, (t->n ? t->n : 1) * sizeof(*t->names));
        if (t->sub == NULL || (id == CQL_T_UDT && t->names == NULL)) {
            r->err = "out of memory";
            return NULL;
        }
        for (uint16_t i = 0; i < t->n; i++) {
            if (id == CQL_T_UDT)
                t->names[i] = cql_get_string(r);
            if ((t->sub[i] = cql_type_decode(r, a, depth + 1)) == NULL)
                return NULL;
        }
        break;
    default:
        r->err = "unknown type option id";
        return NULL;
    }
    return r->err ? NULL : t;
}

void cql_type_encode(struct cql_buf *b, const struct cql_type *t)
{
    cql_put_u16(b, t->id);
    switch (t->id) {
    case CQL_T_CUSTOM:
        cql_put_string(b, t->custom.p, (size_t)t->custom.n);
        break;
    case CQL_T_LIST:
    case CQL_T_SET:
    case CQL_T_MAP:
        for (uint16_t i = 0; i < t->n; i++)
            cql_type_encode(b, t->sub[i]);
        break;
    case CQL_T_UDT:
        cql_put_string(b, t->custom.p, (size_t)t->custom.n);
        cql_put_string(b, t->udt_name.p, (size_t)t->udt_name.n);
        /* fall through */
    case CQL_T_TUPLE:
        cql_put_u16(b, t->n);
        for (uint16_t i = 0; i < t->n; i++) {
            if (t->id == CQL_T_UDT)
                cql_put_string(b, t->names[i].p, (size_t)t->names[i].n);
            cql_type_encode(b, t->sub[i]);
        }
        break;
    default:
        break;
    }
}

static int str_eq(struct cql_str a, struct cql_str b)
{
    return a.n == b.n && (a.n <= 0 || memcmp(a.p, b.p, (size_t)a.n) == 0);
}

int cql_type_equal(const struct cql_type *a, const struct cql_type *b)
{
    if (a == b)
        return 1;
    if (a == NULL || b == NULL || a->id != b->id || a->n != b->n)
        return 0;
    if ((a->id == CQL_T_CUSTOM || a->id == CQL_T_UDT) && !str_eq(a->custom, b->custom))
        return 0;
    if (a->id == CQL_T_UDT && !str_eq(a->udt_name, b->udt_name))
        return 0;
    for (uint16_t i = 0; i < a->n; i++) {
        if (a->id == CQL_T_UDT && !str_eq(a->names[i], b->names[i]))
            return 0;
        if (!cql_type_equal(a->sub[i], b->sub[i]))
            return 0;
    }
    return 1;
}

static void type_name_add(const struct cql_type *t, char *out, size_t size, size_t *used,
                          int depth)
{
    static const char *const names[0x15] = {
        [0x01] = "ascii", [0x02] = "bigint", [0x03] = "blob", [0x04] = "boolean",
        [0x05] = "counter", [0x06] = "decimal", [0x07] = "double", [0x08] = "float",
        [0x09] = "int", [0x0B] = "timestamp", [0x0C] = "uuid", [0x0D] = "text",
        [0x0E] = "varint", [0x0F] = "timeuuid", [0x10] = "inet", [0x11] = "date",
        [0x12] = "time", [0x13] = "smallint", [0x14] = "tinyint",
    };
    if (depth > CQL_TYPE_DEPTH) {
        text_add(out, size, used, "...");
        return;
    }
    if (t->id < 0x15 && names[t->id]) {
        text_add(out, size, used, "%s", names[t->id]);
        return;
    }
    switch (t->id) {
    case CQL_T_CUSTOM:
        text_add(out, size, used, "'%.*s'", (int)(t->custom.n > 0 ? t->custom.n : 0),
                 t->custom.p ? t->custom.p : "");
        return;
    case CQL_T_LIST:
    case CQL_T_SET:
    case CQL_T_MAP:
    case CQL_T_TUPLE:
        text_add(out, size, used, "%s<", t->id == CQL_T_LIST ? "list" : t->id == CQL_T_SET
                 ? "set" : t->id == CQL_T_MAP ? "map" : "tuple");
        for (uint16_t i = 0; i < t->n; i++) {
            if (i)
                text_add(out, size, used, ", ");
            type_name_add(t->sub[i], out, size, used, depth + 1);
        }
        text_add(out, size, used, ">");
        return;
    case CQL_T_UDT:
        text_add(out, size, used, "%.*s.%.*s", (int)(t->custom.n > 0 ? t->custom.n : 0),
                 t->custom.p ? t->custom.p : "", (int)(t->udt_name.n > 0 ? t->udt_name.n : 0),
                 t->udt_name.p ? t->udt_name.p : "");
        return;
    default:
        text_add(out, size, used, "type 0x%04x", (unsigned)t->id);
    }
}

const char *cql_type_name(const struct cql_type *t, char *out, size_t size)
{
    size_t used = 0;
    if (size == 0)
        return out;
    out[0] = '\0';
    type_name_add(t, out, size, &used, 0);
    return out;
}

/* ------------------------------------------------------------------------ */
/* Metadata                                                                  */
/* ------------------------------------------------------------------------ */

static int fail(char *errstr, size_t errstr_size, const char *what, const char *why)
{
    cql_textf(errstr, errstr_size, "malformed %s: %s", what, why ? why : "invalid");
    return -1;
}

/* Reads <metadata> (rows) or the prepared bind metadata (prepared = 1:
 * with pk_count/pk_index and without paging state). */
static int meta_decode(struct cql_rd *r, struct cql_arena *a, struct cql_meta *m, int prepared)
{
    memset(m, 0, sizeof(*m));
    m->paging_state.n = -1;
    m->flags = cql_get_i32(r);
    m->ncols = cql_get_i32(r);
    if (r->err)
        return -1;
    if (m->ncols < 0) {
        r->err = "negative column count";
        return -1;
    }
    if (prepared) {
        m->npk = cql_get_i32(r);
        if (r->err)
            return -1;
        if (m->npk < 0 || (size_t)m->npk * 2 > cql_rd_left(r)) {
            r->err = "invalid partition key count";
            return -1;
        }
        m->pk = cql_arena_alloc(a, (size_t)(m->npk ? m->npk : 1) * sizeof(*m->pk));
        if (m->pk == NULL) {
            r->err = "out of memory";
            return -1;
        }
        for (int32_t i = 0; i < m->npk; i++)
            m->pk[i] = cql_get_u16(r);
    } else if (m->flags & CQL_META_MORE_PAGES) {
        m->paging_state = cql_get_bytes(r);
    }
    if (m->flags & CQL_META_NO_METADATA)
        return r->err ? -1 : 0;
    if (m->flags & CQL_META_GLOBAL_SPEC) {
        m->ks = cql_get_string(r);
        m->table = cql_get_string(r);
    }
    /* A column spec takes at least 4 bytes (name + type). */
    if (r->err || (size_t)m->ncols * 4 > cql_rd_left(r)) {
        if (!r->err)
            r->err = "column count exceeds the body";
        return -1;
    }
    m->cols = cql_arena_alloc(a, (size_t)(m->ncols ? m->ncols : 1) * sizeof(*m->cols));
    if (m->cols == NULL) {
        r->err = "out of memory";
        return -1;
    }
    for (int32_t i = 0; i < m->ncols && !r->err; i++) {
        struct cql_col *c = &m->cols[i];
        if (m->flags & CQL_META_GLOBAL_SPEC) {
            c->ks = m->ks;
            c->table = m->table;
        } else {
            c->ks = cql_get_string(r);
            c->table = cql_get_string(r);
        }
        c->name = cql_get_string(r);
        c->type = cql_type_decode(r, a, 0);
    }
    if (!r->err) {
        for (int32_t i = 0; i < m->npk; i++)
            if (m->pk[i] >= (uint32_t)m->ncols) {
                r->err = "partition key index out of range";
                break;
            }
    }
    return r->err ? -1 : 0;
}

void cql_enc_meta(struct cql_buf *b, const struct cql_meta *m, int prepared)
{
    int32_t flags = m->flags & ~CQL_META_GLOBAL_SPEC;
    int global = m->ks.p != NULL && !(m->flags & CQL_META_NO_METADATA);

    if (global)
        flags |= CQL_META_GLOBAL_SPEC;
    if (!prepared && m->paging_state.n >= 0 && m->paging_state.p)
        flags |= CQL_META_MORE_PAGES;
    else
        flags &= ~CQL_META_MORE_PAGES;
    cql_put_i32(b, flags);
    cql_put_i32(b, m->ncols);
    if (prepared) {
        cql_put_i32(b, m->npk);
        for (int32_t i = 0; i < m->npk; i++)
            cql_put_u16(b, m->pk[i]);
    } else if (flags & CQL_META_MORE_PAGES) {
        cql_put_bytes(b, m->paging_state.p, m->paging_state.n);
    }
    if (flags & CQL_META_NO_METADATA)
        return;
    if (global) {
        cql_put_string(b, m->ks.p, (size_t)m->ks.n);
        cql_put_string(b, m->table.p, (size_t)m->table.n);
    }
    for (int32_t i = 0; i < m->ncols; i++) {
        const struct cql_col *c = &m->cols[i];
        if (!global) {
            cql_put_string(b, c->ks.p, (size_t)c->ks.n);
            cql_put_string(b, c->table.p, (size_t)c->table.n);
        }
        cql_put_string(b, c->name.p, (size_t)c->name.n);
        cql_type_encode(b, c->type);
    }
}

/* ------------------------------------------------------------------------ */
/* Responses                                                                 */
/* ------------------------------------------------------------------------ */

int cql_response_body(const struct cql_header *h, const uint8_t *in, size_t inlen,
                      const uint8_t **body, size_t *len, struct cql_rd *warnings,
                      uint16_t *nwarnings, char *errstr, size_t errstr_size)
{
    struct cql_rd r;

    cql_rd_init(&r, in, inlen);
    if (nwarnings)
        *nwarnings = 0;
    if (h->flags & CQL_FLAG_COMPRESSION)
        return fail(errstr, errstr_size, "frame",
                    "compressed body (no compression was negotiated)");
    if (h->flags & CQL_FLAG_TRACING)
        cql_get_raw(&r, 16);
    if (h->flags & CQL_FLAG_WARNING) {
        size_t start = r.pos;
        uint16_t n = cql_get_u16(&r);
        for (uint16_t i = 0; i < n && !r.err; i++)
            cql_get_string(&r);
        if (!r.err && warnings) {
            cql_rd_init(warnings, in + start, r.pos - start);
            if (nwarnings)
                *nwarnings = n;
            cql_get_u16(warnings);
        }
    }
    if (h->flags & CQL_FLAG_PAYLOAD) {
        uint16_t n = cql_get_u16(&r);
        for (uint16_t i = 0; i < n && !r.err; i++) {
            cql_get_string(&r);
            cql_get_bytes(&r);
        }
    }
    if (r.err)
        return fail(errstr, errstr_size, "frame prefix", r.err);
    *body = in + r.pos;
    *len = inlen - r.pos;
    return 0;
}

int cql_decode_error(const uint8_t *body, size_t len, struct cql_error *e,
                     char *errstr, size_t errstr_size)
{
    struct cql_rd r;

    memset(e, 0, sizeof(*e));
    cql_rd_init(&r, body, len);
    e->code = cql_get_i32(&r);
    e->msg = cql_get_string(&r);
    switch (e->code) {
    case CQL_ERR_UNAVAILABLE:
        e->cl = cql_get_u16(&r);
        e->required = cql_get_i32(&r);
        e->alive = cql_get_i32(&r);
        break;
    case CQL_ERR_WRITE_TIMEOUT:
        e->cl = cql_get_u16(&r);
        e->received = cql_get_i32(&r);
        e->blockfor = cql_get_i32(&r);
        e->write_type = cql_get_string(&r);
        break;
    case CQL_ERR_READ_TIMEOUT:
        e->cl = cql_get_u16(&r);
        e->received = cql_get_i32(&r);
        e->blockfor = cql_get_i32(&r);
        e->data_present = cql_get_u8(&r);
        break;
    case CQL_ERR_READ_FAILURE:
        e->cl = cql_get_u16(&r);
        e->received = cql_get_i32(&r);
        e->blockfor = cql_get_i32(&r);
        e->numfailures = cql_get_i32(&r);
        e->data_present = cql_get_u8(&r);
        break;
    case CQL_ERR_WRITE_FAILURE:
        e->cl = cql_get_u16(&r);
        e->received = cql_get_i32(&r);
        e->blockfor = cql_get_i32(&r);
        e->numfailures = cql_get_i32(&r);
        e->write_type = cql_get_string(&r);
        break;
    case CQL_ERR_FUNC_FAILURE:
        e->ks = cql_get_string(&r);
        e->table = cql_get_string(&r);
        e->nargs = cql_get_u16(&r);
        for (uint16_t i = 0; i < e->nargs && !r.err; i++)
            cql_get_string(&r);
        break;
    case CQL_ERR_ALREADY_EXISTS:
        e->ks = cql_get_string(&r);
        e->table = cql_get_string(&r);
        break;
    case CQL_ERR_UNPREPARED:
        e->id = cql_get_short_bytes(&r);
        break;
    default:
        break;
    }
    return r.err ? fail(errstr, errstr_size, "ERROR", r.err) : 0;
}

int cql_decode_authenticate(const uint8_t *body, size_t len, struct cql_str *authenticator,
                            char *errstr, size_t errstr_size)
{
    struct cql_rd r;
    cql_rd_init(&r, body, len);
    *authenticator = cql_get_string(&r);
    return r.err ? fail(errstr, errstr_size, "AUTHENTICATE", r.err) : 0;
}

int cql_decode_token(const uint8_t *body, size_t len, struct cql_str *token,
                     char *errstr, size_t errstr_size)
{
    struct cql_rd r;
    cql_rd_init(&r, body, len);
    *token = cql_get_bytes(&r);
    return r.err ? fail(errstr, errstr_size, "authentication token", r.err) : 0;
}

/* A [string multimap] (lists = 1) or [string list] read as one key with
 * the values (lists = 0, used by REGISTER). */
static int multimap_decode(struct cql_rd *r, struct cql_arena *a, struct cql_multimap *mm,
                           int lists)
{
    memset(mm, 0, sizeof(*mm));
    mm->n = cql_get_u16(r);
    if (r->err || (size_t)mm->n * (lists ? 4 : 2) > cql_rd_left(r)) {
        if (!r->err)
            r->err = "entry count exceeds the body";
        return -1;
    }
    mm->keys = cql_arena_alloc(a, (mm->n ? mm->n : 1) * sizeof(*mm->keys));
    mm->nvals = cql_arena_alloc(a, (mm->n ? mm->n : 1) * sizeof(*mm->nvals));
    mm->vals = cql_arena_alloc(a, (mm->n ? mm->n : 1) * sizeof(*mm->vals));
    if (!mm->keys || !mm->nvals || !mm->vals) {
        r->err = "out of memory";
        return -1;
    }
    for (uint16_t i = 0; i < mm->n && !r->err; i++) {
        mm->keys[i] = cql_get_string(r);
        if (!lists)
            continue;
        mm->nvals[i] = cql_get_u16(r);
        if (r->err || (size_t)mm->nvals[i] * 2 > cql_rd_left(r)) {
            if (!r->err)
                r->err = "value count exceeds the body";
            return -1;
        }
        mm->vals[i] = cql_arena_alloc(a, (mm->nvals[i] ? mm->nvals[i] : 1) * sizeof(**mm->vals));
        if (mm->vals[i] == NULL) {
            r->err = "out of memory";
            return -1;
        }
        for (uint16_t k = 0; k < mm->nvals[i]; k++)
            mm->vals[i][k] = cql_get_string(r);
    }
    return r->err ? -1 : 0;
}

int cql_decode_supported(const uint8_t *body, size_t len, struct cql_arena *a,
                         struct cql_multimap *mm, char *errstr, size_t errstr_size)
{
    struct cql_rd r;
    cql_rd_init(&r, body, len);
    if (multimap_decode(&r, a, mm, 1) < 0)
        return fail(errstr, errstr_size, "SUPPORTED", r.err);
    return 0;
}

const struct cql_str *cql_multimap_get(const struct cql_multimap *mm, const char *key,
                                       uint16_t *n)
{
    size_t kl = strlen(key);
    for (uint16_t i = 0; i < mm->n; i++)
        if ((size_t)mm->keys[i].n == kl && memcmp(mm->keys[i].p, key, kl) == 0) {
            *n = mm->nvals[i];
            return mm->vals[i];
        }
    *n = 0;
    return NULL;
}

int cql_decode_result(const uint8_t *body, size_t len, struct cql_arena *a,
                      struct cql_result *res, char *errstr, size_t errstr_size)
{
    struct cql_rd r;

    memset(res, 0, sizeof(*res));
    cql_rd_init(&r, body, len);
    res->kind = cql_get_i32(&r);
    switch (res->kind) {
    case CQL_RESULT_VOID:
        break;
    case CQL_RESULT_SET_KEYSPACE:
        res->keyspace = cql_get_string(&r);
        break;
    case CQL_RESULT_PREPARED:
        res->id = cql_get_short_bytes(&r);
        if (meta_decode(&r, a, &res->bind, 1) == 0)
            meta_decode(&r, a, &res->meta, 0);
        break;
    case CQL_RESULT_ROWS: {
        size_t start;
        if (meta_decode(&r, a, &res->meta, 0) < 0)
            break;
        res->nrows = cql_get_i32(&r);
        if (r.err)
            break;
        if (res->nrows < 0) {
            r.err = "negative row count";
            break;
        }
        /* Every cell is at least 4 bytes: bounds the loop by the body. */
        if (res->meta.ncols > 0 &&
            (uint64_t)res->nrows * (uint64_t)res->meta.ncols * 4 > cql_rd_left(&r)) {
            r.err = "row count exceeds the body";
            break;
        }
        start = r.pos;
        if (res->meta.ncols > 0)
            for (int64_t i = 0; i < (int64_t)res->nrows * res->meta.ncols && !r.err; i++)
                cql_get_bytes(&r);
        res->rows.p = (const char *)body + start;
        res->rows.n = (int32_t)(r.pos - start);
        break;
    }
    case CQL_RESULT_SCHEMA_CHANGE:
        res->change = cql_get_string(&r);
        res->target = cql_get_string(&r);
        res->sc_ks = cql_get_string(&r);
        if (r.err)
            break;
        if ((res->target.n == 5 && memcmp(res->target.p, "TABLE", 5) == 0) ||
            (res->target.n == 4 && memcmp(res->target.p, "TYPE", 4) == 0)) {
            res->sc_name = cql_get_string(&r);
        } else if ((res->target.n == 8 && memcmp(res->target.p, "FUNCTION", 8) == 0) ||
                   (res->target.n == 9 && memcmp(res->target.p, "AGGREGATE", 9) == 0)) {
            res->sc_name = cql_get_string(&r);
            res->sc_nargs = cql_get_u16(&r);
            if (r.err || (size_t)res->sc_nargs * 2 > cql_rd_left(&r)) {
                if (!r.err)
                    r.err = "argument count exceeds the body";
                break;
            }
            res->sc_args = cql_arena_alloc(a, (res->sc_nargs ? res->sc_nargs : 1) *
                                              sizeof(*res->sc_args));
            if (res->sc_args == NULL) {
                r.err = "out of memory";
                break;
            }
            for (uint16_t i = 0; i < res->sc_nargs; i++)
                res->sc_args[i] = cql_get_string(&r);
        }
        break;
    default:
        if (!r.err)
            r.err = "unknown result kind";
    }
    return r.err ? fail(errstr, errstr_size, "RESULT", r.err) : 0;
}

struct cql_str cql_rows_cell(const struct cql_result *res, int32_t row, int32_t col)
{
    struct cql_rd r;
    struct cql_str s = { NULL, -1 };
    int64_t want = (int64_t)row * res->meta.ncols + col;

    if (row < 0 || col < 0 || row >= res->nrows || col >= res->meta.ncols)
        return s;
    cql_rd_init(&r, res->rows.p, (size_t)res->rows.n);
    for (int64_t i = 0; i <= want && !r.err; i++)
        s = cql_get_bytes(&r);
    return s;
}

int cql_decode_event(const uint8_t *body, size_t len, struct cql_event *ev,
                     char *errstr, size_t errstr_size)
{
    struct cql_rd r;

    memset(ev, 0, sizeof(*ev));
    cql_rd_init(&r, body, len);
    ev->type = cql_get_string(&r);
    ev->change = cql_get_string(&r);
    if (r.err)
        return fail(errstr, errstr_size, "EVENT", r.err);
    if (ev->type.n == 13 && memcmp(ev->type.p, "SCHEMA_CHANGE", 13) == 0) {
        ev->target = cql_get_string(&r);
        ev->ks = cql_get_string(&r);
        if (!(ev->target.n == 8 && memcmp(ev->target.p, "KEYSPACE", 8) == 0))
            ev->name = cql_get_string(&r);
    } else {
        const uint8_t *p;
        ev->addrlen = cql_get_u8(&r);
        if (!r.err && ev->addrlen != 4 && ev->addrlen != 16)
            r.err = "inet address is neither 4 nor 16 bytes";
        p = cql_get_raw(&r, ev->addrlen);
        if (p)
            memcpy(ev->addr, p, ev->addrlen);
        ev->port = cql_get_i32(&r);
    }
    return r.err ? fail(errstr, errstr_size, "EVENT", r.err) : 0;
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                  */
/* ------------------------------------------------------------------------ */

void cql_enc_startup(struct cql_buf *b, int16_t stream, const char *const *kv, size_t npairs)
{
    size_t off = cql_frame_begin(b, CQL_VERSION_REQ, CQL_OP_STARTUP, stream);
    cql_put_string_map(b, kv, npairs);
    cql_frame_end(b, off);
}

void cql_enc_options(struct cql_buf *b, int16_t stream)
{
    size_t off = cql_frame_begin(b, CQL_VERSION_REQ, CQL_OP_OPTIONS, stream);
    cql_frame_end(b, off);
}

void cql_enc_auth_response(struct cql_buf *b, int16_t stream, const void *token, int32_t n)
{
    size_t off = cql_frame_begin(b, CQL_VERSION_REQ, CQL_OP_AUTH_RESPONSE, stream);
    cql_put_bytes(b, token, n);
    cql_frame_end(b, off);
}

void cql_enc_register(struct cql_buf *b, int16_t stream, const char *const *events, size_t n)
{
    size_t off = cql_frame_begin(b, CQL_VERSION_REQ, CQL_OP_REGISTER, stream);
    cql_put_u16(b, (uint16_t)n);
    for (size_t i = 0; i < n; i++)
        cql_put_string(b, events[i], strlen(events[i]));
    cql_frame_end(b, off);
}

void cql_enc_prepare(struct cql_buf *b, int16_t stream, const char *cql, size_t len)
{
    size_t off = cql_frame_begin(b, CQL_VERSION_REQ, CQL_OP_PREPARE, stream);
    cql_put_long_string(b, cql, len);
    cql_frame_end(b, off);
}

static void put_params(struct cql_buf *b, uint16_t consistency, uint16_t n, const void *values,
                       size_t vlen)
{
    cql_put_u16(b, consistency);
    cql_put_u8(b, n ? 0x01 : 0x00);
    if (n) {
        cql_put_u16(b, n);
        cql_put_raw(b, values, vlen);
    }
}

void cql_enc_query(struct cql_buf *b, int16_t stream, const char *cql, size_t len,
                   uint16_t consistency, uint16_t n, const void *values, size_t vlen)
{
    size_t off = cql_frame_begin(b, CQL_VERSION_REQ, CQL_OP_QUERY, stream);
    cql_put_long_string(b, cql, len);
    put_params(b, consistency, n, values, vlen);
    cql_frame_end(b, off);
}

void cql_enc_execute(struct cql_buf *b, int16_t stream, const void *id, uint16_t idlen,
                     uint16_t consistency, uint16_t n, const void *values, size_t vlen)
{
    size_t off = cql_frame_begin(b, CQL_VERSION_REQ, CQL_OP_EXECUTE, stream);
    cql_put_short_bytes(b, id, idlen);
    put_params(b, consistency, n, values, vlen);
    cql_frame_end(b, off);
}

size_t cql_enc_batch_begin(struct cql_buf *b, int16_t stream, uint8_t type, uint16_t n)
{
    size_t off = cql_frame_begin(b, CQL_VERSION_REQ, CQL_OP_BATCH, stream);
    cql_put_u8(b, type);
    cql_put_u16(b, n);
    return off;
}

void cql_enc_batch_prepared(struct cql_buf *b, const void *id, uint16_t idlen, uint16_t n,
                            const void *values, size_t vlen)
{
    cql_put_u8(b, 1);
    cql_put_short_bytes(b, id, idlen);
    cql_put_u16(b, n);
    cql_put_raw(b, values, vlen);
}

void cql_enc_batch_query(struct cql_buf *b, const char *cql, size_t len, uint16_t n,
                         const void *values, size_t vlen)
{
    cql_put_u8(b, 0);
    cql_put_long_string(b, cql, len);
    cql_put_u16(b, n);
    cql_put_raw(b, values, vlen);
}

void cql_enc_batch_end(struct cql_buf *b, size_t frame_off, uint16_t consistency)
{
    cql_put_u16(b, consistency);
    cql_put_u8(b, 0);
    cql_frame_end(b, frame_off);
}

/* ------------------------------------------------------------------------ */
/* Server side                                                               */
/* ------------------------------------------------------------------------ */

int cql_decode_startup(const uint8_t *body, size_t len, struct cql_arena *a,
                       struct cql_multimap *opts, char *errstr, size_t errstr_size)
{
    struct cql_rd r;
    cql_rd_init(&r, body, len);
    /* A string map: read as a multimap of single values. */
    memset(opts, 0, sizeof(*opts));
    opts->n = cql_get_u16(&r);
    if (r.err || (size_t)opts->n * 4 > cql_rd_left(&r))
        return fail(errstr, errstr_size, "STARTUP", r.err ? r.err : "entry count exceeds the body");
    opts->keys = cql_arena_alloc(a, (opts->n ? opts->n : 1) * sizeof(*opts->keys));
    opts->nvals = cql_arena_alloc(a, (opts->n ? opts->n : 1) * sizeof(*opts->nvals));
    opts->vals = cql_arena_alloc(a, (opts->n ? opts->n : 1) * sizeof(*opts->vals));
    if (!opts->keys || !opts->nvals || !opts->vals)
        return fail(errstr, errstr_size, "STARTUP", "out of memory");
    for (uint16_t i = 0; i < opts->n && !r.err; i++) {
        opts->keys[i] = cql_get_string(&r);
        opts->vals[i] = cql_arena_alloc(a, sizeof(**opts->vals));
        if (opts->vals[i] == NULL)
            return fail(errstr, errstr_size, "STARTUP", "out of memory");
        opts->nvals[i] = 1;
        opts->vals[i][0] = cql_get_string(&r);
    }
    return r.err ? fail(errstr, errstr_size, "STARTUP", r.err) : 0;
}

static void params_decode(struct cql_rd *r, struct cql_params *p)
{
    memset(p, 0, sizeof(*p));
    p->paging_state.n = -1;
    p->consistency = cql_get_u16(r);
    p->flags = cql_get_u8(r);
    if (p->flags & 0x01) {
        size_t start;
        p->nvalues = cql_get_u16(r);
        start = r->pos;
        for (uint16_t i = 0; i < p->nvalues && !r->err; i++) {
            if (p->flags & 0x40)
                cql_get_string(r);
            cql_get_value(r);
        }
        if (!r->err) {
            p->values.p = (const char *)r->p + start;
            p->values.n = (int32_t)(r->pos - start);
        }
    }
    if (p->flags & 0x04)
        p->page_size = cql_get_i32(r);
    if (p->flags & 0x08)
        p->paging_state = cql_get_bytes(r);
    if (p->flags & 0x10)
        p->serial_consistency = cql_get_u16(r);
    if (p->flags & 0x20)
        p->timestamp = cql_get_i64(r);
}

int cql_decode_query(const uint8_t *body, size_t len, struct cql_str *cql,
                     struct cql_params *p, char *errstr, size_t errstr_size)
{
    struct cql_rd r;
    cql_rd_init(&r, body, len);
    *cql = cql_get_long_string(&r);
    params_decode(&r, p);
    return r.err ? fail(errstr, errstr_size, "QUERY", r.err) : 0;
}

int cql_decode_prepare(const uint8_t *body, size_t len, struct cql_str *cql,
                       char *errstr, size_t errstr_size)
{
    struct cql_rd r;
    cql_rd_init(&r, body, len);
    *cql = cql_get_long_string(&r);
    return r.err ? fail(errstr, errstr_size, "PREPARE", r.err) : 0;
}

int cql_decode_execute(const uint8_t *body, size_t len, struct cql_str *id,
                       struct cql_params *p, char *errstr, size_t errstr_size)
{
    struct cql_rd r;
    cql_rd_init(&r, body, len);
    *id = cql_get_short_bytes(&r);
    params_decode(&r, p);
    return r.err ? fail(errstr, errstr_size, "EXECUTE", r.err) : 0;
}

int cql_decode_batch(const uint8_t *body, size_t len, struct cql_arena *a,
                     struct cql_batch *bt, char *errstr, size_t errstr_size)
{
    struct cql_rd r;

    memset(bt, 0, sizeof(*bt));
    cql_rd_init(&r, body, len);
    bt->type = cql_get_u8(&r);
    bt->n = cql_get_u16(&r);
    /* A statement takes at least 5 bytes (kind, short id, count). */
    if (r.err || (size_t)bt->n * 5 > cql_rd_left(&r))
        return fail(errstr, errstr_size, "BATCH",
                    r.err ? r.err : "statement count exceeds the body");
    bt->stmts = cql_arena_alloc(a, (bt->n ? bt->n : 1) * sizeof(*bt->stmts));
    if (bt->stmts == NULL)
        return fail(errstr, errstr_size, "BATCH", "out of memory");
    for (uint16_t i = 0; i < bt->n && !r.err; i++) {
        struct cql_batch_stmt *s = &bt->stmts[i];
        size_t start;
        s->kind = cql_get_u8(&r);
        if (s->kind == 0)
            s->query_or_id = cql_get_long_string(&r);
        else if (s->kind == 1)
            s->query_or_id = cql_get_short_bytes(&r);
        else if (!r.err)
            r.err = "statement kind is neither 0 nor 1";
        s->nvalues = cql_get_u16(&r);
        start = r.pos;
        for (uint16_t k = 0; k < s->nvalues && !r.err; k++)
            cql_get_value(&r);
        if (!r.err) {
            s->values.p = (const char *)body + start;
            s->values.n = (int32_t)(r.pos - start);
        }
    }
    bt->consistency = cql_get_u16(&r);
    bt->flags = cql_get_u8(&r);
    if (bt->flags & 0x10)
        bt->serial_consistency = cql_get_u16(&r);
    if (bt->flags & 0x20)
        bt->timestamp = cql_get_i64(&r);
    return r.err ? fail(errstr, errstr_size, "BATCH", r.err) : 0;
}

int cql_decode_register(const uint8_t *body, size_t len, struct cql_arena *a,
                        struct cql_multimap *events, char *errstr, size_t errstr_size)
{
    struct cql_rd r;
    cql_rd_init(&r, body, len);
    if (multimap_decode(&r, a, events, 0) < 0)
        return fail(errstr, errstr_size, "REGISTER", r.err);
    return 0;
}

void cql_enc_error(struct cql_buf *b, int16_t stream, const struct cql_error *e)
{
    size_t off = cql_frame_begin(b, CQL_VERSION_RESP, CQL_OP_ERROR, stream);
    cql_put_i32(b, e->code);
    cql_put_string(b, e->msg.p, e->msg.n > 0 ? (size_t)e->msg.n : 0);
    switch (e->code) {
    case CQL_ERR_UNAVAILABLE:
        cql_put_u16(b, e->cl);
        cql_put_i32(b, e->required);
        cql_put_i32(b, e->alive);
        break;
    case CQL_ERR_WRITE_TIMEOUT:
    case CQL_ERR_WRITE_FAILURE:
        cql_put_u16(b, e->cl);
        cql_put_i32(b, e->received);
        cql_put_i32(b, e->blockfor);
        if (e->code == CQL_ERR_WRITE_FAILURE)
            cql_put_i32(b, e->numfailures);
        cql_put_string(b, e->write_type.p, e->write_type.n > 0 ? (size_t)e->write_type.n : 0);
        break;
    case CQL_ERR_READ_TIMEOUT:
    case CQL_ERR_READ_FAILURE:
        cql_put_u16(b, e->cl);
        cql_put_i32(b, e->received);
        cql_put_i32(b, e->blockfor);
        if (e->code == CQL_ERR_READ_FAILURE)
            cql_put_i32(b, e->numfailures);
        cql_put_u8(b, e->data_present);
        break;
    case CQL_ERR_FUNC_FAILURE:
        cql_put_string(b, e->ks.p, e->ks.n > 0 ? (size_t)e->ks.n : 0);
        cql_put_string(b, e->table.p, e->table.n > 0 ? (size_t)e->table.n : 0);
        cql_put_u16(b, 0);
        break;
    case CQL_ERR_ALREADY_EXISTS:
        cql_put_string(b, e->ks.p, e->ks.n > 0 ? (size_t)e->ks.n : 0);
        cql_put_string(b, e->table.p, e->table.n > 0 ? (size_t)e->table.n : 0);
        break;
    case CQL_ERR_UNPREPARED:
        cql_put_short_bytes(b, e->id.p, e->id.n > 0 ? (uint16_t)e->id.n : 0);
        break;
    default:
        break;
    }
    cql_frame_end(b, off);
}

void cql_enc_ready(struct cql_buf *b, int16_t stream)
{
    size_t off = cql_frame_begin(b, CQL_VERSION_RESP, CQL_OP_READY, stream);
    cql_frame_end(b, off);
}

void cql_enc_authenticate(struct cql_buf *b, int16_t stream, const char *authenticator)
{
    size_t off = cql_frame_begin(b, CQL_VERSION_RESP, CQL_OP_AUTHENTICATE, stream);
    cql_put_string(b, authenticator, strlen(authenticator));
    cql_frame_end(b, off);
}

void cql_enc_token(struct cql_buf *b, uint8_t op, int16_t stream, const void *token, int32_t n)
{
    size_t off = cql_frame_begin(b, CQL_VERSION_RESP, op, stream);
    cql_put_bytes(b, token, n);
    cql_frame_end(b, off);
}

void cql_enc_supported(struct cql_buf *b, int16_t stream, const char *const *keys,
                       const char *const *const *vals, const uint16_t *nvals, uint16_t n)
{
    size_t off = cql_frame_begin(b, CQL_VERSION_RESP, CQL_OP_SUPPORTED, stream);
    cql_put_u16(b, n);
    for (uint16_t i = 0; i < n; i++) {
        cql_put_string(b, keys[i], strlen(keys[i]));
        cql_put_u16(b, nvals[i]);
        for (uint16_t k = 0; k < nvals[i]; k++)
            cql_put_string(b, vals[i][k], strlen(vals[i][k]));
    }
    cql_frame_end(b, off);
}

void cql_enc_result_void(struct cql_buf *b, int16_t stream)
{
    size_t off = cql_frame_begin(b, CQL_VERSION_RESP, CQL_OP_RESULT, stream);
    cql_put_i32(b, CQL_RESULT_VOID);
    cql_frame_end(b, off);
}

void cql_enc_result_set_keyspace(struct cql_buf *b, int16_t stream, const char *ks)
{
    size_t off = cql_frame_begin(b, CQL_VERSION_RESP, CQL_OP_RESULT, stream);
    cql_put_i32(b, CQL_RESULT_SET_KEYSPACE);
    cql_put_string(b, ks, strlen(ks));
    cql_frame_end(b, off);
}

void cql_enc_result_prepared(struct cql_buf *b, int16_t stream, const void *id, uint16_t idlen,
                             const struct cql_meta *bind, const struct cql_meta *result)
{
    size_t off = cql_frame_begin(b, CQL_VERSION_RESP, CQL_OP_RESULT, stream);
    cql_put_i32(b, CQL_RESULT_PREPARED);
    cql_put_short_bytes(b, id, idlen);
    cql_enc_meta(b, bind, 1);
    cql_enc_meta(b, result, 0);
    cql_frame_end(b, off);
}

void cql_enc_result_rows(struct cql_buf *b, int16_t stream, const struct cql_meta *m,
                         int32_t nrows, const void *rows, size_t rlen)
{
    size_t off = cql_frame_begin(b, CQL_VERSION_RESP, CQL_OP_RESULT, stream);
    cql_put_i32(b, CQL_RESULT_ROWS);
    cql_enc_meta(b, m, 0);
    cql_put_i32(b, nrows);
    cql_put_raw(b, rows, rlen);
    cql_frame_end(b, off);
}

void cql_enc_result_schema_change(struct cql_buf *b, int16_t stream, const char *change,
                                  const char *target, const char *ks, const char *name)
{
    size_t off = cql_frame_begin(b, CQL_VERSION_RESP, CQL_OP_RESULT, stream);
    cql_put_i32(b, CQL_RESULT_SCHEMA_CHANGE);
    cql_put_string(b, change, strlen(change));
    cql_put_string(b, target, strlen(target));
    cql_put_string(b, ks, strlen(ks));
    if (name)
        cql_put_string(b, name, strlen(name));
    cql_frame_end(b, off);
}

void cql_enc_event_status(struct cql_buf *b, const char *type, const char *change,
                          const uint8_t *addr, uint8_t addrlen, int32_t port)
{
    size_t off = cql_frame_begin(b, CQL_VERSION_RESP, CQL_OP_EVENT, -1);
    cql_put_string(b, type, strlen(type));
    cql_put_string(b, change, strlen(change));
    cql_put_u8(b, addrlen);
    cql_put_raw(b, addr, addrlen);
    cql_put_i32(b, port);
    cql_frame_end(b, off);
}
