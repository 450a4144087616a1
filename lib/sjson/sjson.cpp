// sjson - C shim over simdjson's DOM API (see sjson.h).
#include "sjson.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <type_traits>

#include <simdjson.h>

#include "memwarm.h"

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

static_assert(sizeof(element) <= sizeof(sj_value), "dom::element fits sj_value");
static_assert(std::is_trivially_copyable<element>::value, "dom::element is copyable");

namespace {

/* Iteration state lives in sj_iter: a kind tag, then the current and end
 * iterators (trivially copyable, so memcpy in and out is well defined). */
template <class It> struct iter_state {
    uint64_t is_object;
    It cur;
    It end;
};
static_assert(sizeof(iter_state<array::iterator>) <= sizeof(sj_iter), "array state fits");
static_assert(sizeof(iter_state<object::iterator>) <= sizeof(sj_iter), "object state fits");
static_assert(std::is_trivially_copyable<array::iterator>::value, "array iterator copyable");
static_assert(std::is_trivially_copyable<object::iterator>::value, "object iterator copyable");

inline element el(const sj_value *v)
{
    element e;
    std::memcpy(static_cast<void *>(&e), v->opaque, sizeof(e));
    return e;
}

inline void put(sj_value *v, const element &e)
{
    std::memset(v->opaque, 0, sizeof(v->opaque));
    std::memcpy(v->opaque, static_cast<const void *>(&e), sizeof(e));
}

} // namespace

struct sj_parser {
    simdjson::dom::parser parser;
    size_t max_bytes;
    size_t max_depth;
    size_t last_len;  /* the last document parsed whole, or 0 */
};

extern "C" struct sj_parser *sj_parser_new(size_t max_bytes, size_t max_depth)
{
    sj_parser *p = new (std::nothrow) sj_parser;
    if (!p)
        return nullptr;
    p->max_bytes = max_bytes;
    p->max_depth = max_depth;
    /* Capacity grows on demand up to max_bytes; the depth limit is fixed. */
    if (p->parser.allocate(4096, max_depth) != simdjson::SUCCESS) {
        delete p;
        return nullptr;
    }
    /* No parser.set_max_capacity(): in simdjson 3.0.1 it clamps every limit
     * above 32 bytes down to 32. sj_parse enforces max_bytes itself. */
    return p;
}

extern "C" void sj_parser_free(struct sj_parser *p)
{
    delete p;
}

static_assert(SJ_PADDING >= simdjson::SIMDJSON_PADDING, "SJ_PADDING covers simdjson's padding");

static int parse(struct sj_parser *p, const void *buf, size_t len, bool copy,
                 struct sj_value *root, char *err, size_t errsize)
{
    if (len > p->max_bytes) {
        std::snprintf(err, errsize, "document of %zu bytes is larger than the limit %zu", len,
                      p->max_bytes);
        return -1;
    }
    if (len > p->parser.capacity()) {
        /* Grow in steps so a stream of similar documents allocates once. */
        size_t cap = p->parser.capacity() ? p->parser.capacity() : 4096;
        while (cap < len)
            cap *= 2;
        if (cap > p->max_bytes)
            cap = p->max_bytes;
        if (p->parser.allocate(cap, p->max_depth) != simdjson::SUCCESS) {
            std::snprintf(err, errsize, "out of memory for a %zu-byte document", len);
            return -1;
        }
    }
    if (!buf && len == 0) {
        /* Nothing to copy (memcpy takes no NULL): a padded empty buffer. */
        static const char empty[SJ_PADDING] = {0};
        buf = empty;
        copy = false;
    }
    element e;
    p->last_len = 0;
    auto rc = p->parser.parse(static_cast<const char *>(buf), len, copy).get(e);
    if (rc != simdjson::SUCCESS) {
        switch (rc) {
        case simdjson::DEPTH_ERROR:
            std::snprintf(err, errsize, "nesting deeper than %zu", p->max_depth);
            break;
        case simdjson::UTF8_ERROR:
            std::snprintf(err, errsize, "invalid UTF-8");
            break;
        case simdjson::EMPTY:
            std::snprintf(err, errsize, "empty document");
            break;
        default:
            std::snprintf(err, errsize, "invalid JSON: %s", simdjson::error_message(rc));
        }
        return -1;
    }
    put(root, e);
    p->last_len = len;
    return 0;
}

extern "C" int sj_parse(struct sj_parser *p, const void *buf, size_t len, struct sj_value *root,
                        char *err, size_t errsize)
{
    return parse(p, buf, len, true, root, err, errsize);
}

extern "C" int sj_parse_padded(struct sj_parser *p, const void *buf, size_t len, size_t cap,
                               struct sj_value *root, char *err, size_t errsize)
{
    bool in_place = buf && cap >= len && cap - len >= SJ_PADDING;
    return parse(p, buf, len, !in_place, root, err, errsize);
}

/*
 * The buffers of simdjson 3.0's DOM parser (public members, though marked
 * private in its documentation): the structural index (4 bytes per
 * structural character), the document's tape (8-byte entries; entry 0, the
 * root, holds the number of entries; a number takes two, its value in the
 * second) and its string buffer (each string as a 4-byte length, the bytes
 * and a NUL, in document order). Checked against the tape's own layout by
 * unit-sjson.
 */
extern "C" void sj_parser_usage(const struct sj_parser *p, struct sj_usage *u)
{
    *u = sj_usage{};
    const auto &dp = p->parser;
    if (!p->last_len || !dp.implementation || !dp.doc.tape || !dp.doc.string_buf)
        return;
    const uint64_t *tape = dp.doc.tape.get();
    const uint64_t mask = simdjson::internal::JSON_VALUE_MASK;
    size_t n = (size_t)(tape[0] & mask);
    if ((tape[0] >> 56) != 'r' || n < 2)
        return;
    u->doc = p->last_len;
    /* Stage 1 writes three more slots past the last structural. */
    u->structurals = ((size_t)dp.implementation->n_structural_indexes + 3) * sizeof(uint32_t);
    u->tape = n * sizeof(uint64_t);
    for (size_t i = 1; i < n; i++) {
        switch (tape[i] >> 56) {
        case '"': {
            uint32_t len;
            std::memcpy(&len, dp.doc.string_buf.get() + (tape[i] & mask), sizeof(len));
            u->strings = (size_t)(tape[i] & mask) + sizeof(len) + len + 1;
            break;
        }
        case 'l':
        case 'u':
        case 'd':
            i++;  /* the number's value */
            break;
        }
    }
}

extern "C" int sj_parser_warm(struct sj_parser *p, const struct sj_usage *u)
{
    if (!u->doc)
        return 0;
    size_t cap = u->doc + u->doc / 8;
    if (cap < u->doc || cap > p->max_bytes)
        cap = p->max_bytes > u->doc ? p->max_bytes : u->doc;
    auto &dp = p->parser;
    /* As parse() and simdjson's own ensure_capacity would, ahead of time. */
    if (cap > dp.capacity() && dp.allocate(cap, p->max_depth) != simdjson::SUCCESS)
        return -1;
    if (dp.doc.capacity() < cap && dp.doc.allocate(cap) != simdjson::SUCCESS)
        return -1;
    /* Never past what simdjson allocated for cap bytes: at least cap
     * structural slots, cap + 3 tape entries, 5 * cap / 3 string bytes. */
    memwarm_pages(dp.implementation->structural_indexes.get(),
                  std::min(u->structurals, cap * sizeof(uint32_t)));
    memwarm_pages(dp.doc.tape.get(), std::min(u->tape, (cap + 3) * sizeof(uint64_t)));
    memwarm_pages(dp.doc.string_buf.get(), std::min(u->strings, 5 * cap / 3));
    return 0;
}

static inline enum sj_type type_of(element_type t)
{
    switch (t) {
    case element_type::ARRAY: return SJ_ARRAY;
    case element_type::OBJECT: return SJ_OBJECT;
    case element_type::INT64: return SJ_INT;
    case element_type::UINT64: return SJ_UINT;
    case element_type::DOUBLE: return SJ_DOUBLE;
    case element_type::STRING: return SJ_STRING;
    case element_type::BOOL: return SJ_BOOL;
    case element_type::NULL_VALUE: return SJ_NULL;
    }
    return SJ_NULL;
}

/*
 * sj_next_n reads the tape directly (see sj_parser_usage for its layout):
 * through simdjson's element API each member cost about 65 instructions,
 * type checks repeated at every step. An element, and an array or object
 * iterator, is a tape reference: the document, and an entry's index.
 * unit-sjson checks sj_next_n against sj_object_next / sj_array_next.
 */
struct tape_pos {
    const simdjson::dom::document *doc;
    size_t idx;
};
static_assert(sizeof(element) == sizeof(tape_pos), "an element is a tape reference");
static_assert(sizeof(array::iterator) == sizeof(tape_pos), "so is an array iterator");
static_assert(sizeof(object::iterator) == sizeof(tape_pos), "and an object iterator");
struct raw_state {
    uint64_t kind;
    tape_pos cur, end;
};
static_assert(sizeof(raw_state) == sizeof(iter_state<array::iterator>) &&
              sizeof(raw_state) == sizeof(iter_state<object::iterator>), "same iteration state");

/* Fills m from the value at tape entry i (its key is set by the caller);
 * returns the index after the value. */
static inline size_t raw_member(const simdjson::dom::document *doc, size_t i, sj_member *m)
{
    const uint64_t *tape = doc->tape.get();
    uint64_t t = tape[i];
    uint64_t payload = t & simdjson::internal::JSON_VALUE_MASK;
    size_t next = i + 1;
    tape_pos at{doc, i};
    std::memcpy(static_cast<void *>(&m->v), &at, sizeof(at));
    switch (t >> 56) {
    case '"': {
        const uint8_t *sb = doc->string_buf.get() + payload;
        uint32_t len;
        std::memcpy(&len, sb, sizeof(len));
        m->type = SJ_STRING;
        m->as.s.p = reinterpret_cast<const char *>(sb + sizeof(len));
        m->as.s.len = len;
        break;
    }
    case 'l':
    case 'u':
    case 'd':
        /* The value is the next entry's 8 bytes: as.i, as.u or as.d. */
        m->type = (t >> 56) == 'l' ? SJ_INT : (t >> 56) == 'u' ? SJ_UINT : SJ_DOUBLE;
        std::memcpy(&m->as, &tape[i + 1], sizeof(uint64_t));
        next = i + 2;
        break;
    case 't':
    case 'f':
        m->type = SJ_BOOL;
        m->as.b = (t >> 56) == 't';
        break;
    case '{':
    case '[':
        m->type = (t >> 56) == '{' ? SJ_OBJECT : SJ_ARRAY;
        m->as.u = 0;
        next = static_cast<uint32_t>(t);  /* the entry after the matching close */
        break;
    default:  /* 'n' */
        m->type = SJ_NULL;
        m->as.u = 0;
        break;
    }
    return next;
}

extern "C" size_t sj_next_n(struct sj_iter *it, struct sj_member *m, size_t max)
{
    size_t n = 0;
    raw_state st;
    if (it->opaque[0] > 1)
        return 0;
    std::memcpy(&st, it->opaque, sizeof(st));
    const simdjson::dom::document *doc = st.cur.doc;
    size_t i = st.cur.idx, end = st.end.idx;
    if (st.kind == 0) {
        for (; n < max && i != end; n++) {
            m[n].key = nullptr;
            m[n].klen = 0;
            i = raw_member(doc, i, &m[n]);
        }
    } else {
        const uint8_t *sb = doc->string_buf.get();
        const uint64_t *tape = doc->tape.get();
        for (; n < max && i != end; n++) {
            const uint8_t *k = sb + (tape[i] & simdjson::internal::JSON_VALUE_MASK);
            uint32_t klen;
            std::memcpy(&klen, k, sizeof(klen));
            m[n].key = reinterpret_cast<const char *>(k + sizeof(klen));
            m[n].klen = klen;
            i = raw_member(doc, i + 1, &m[n]);
        }
    }
    st.cur.idx = i;
    std::memcpy(it->opaque, &st, sizeof(st));
    return n;
}

extern "C" enum sj_type sj_type(const struct sj_value *v)
{
    return type_of(el(v).type());
}

extern "C" int sj_get_bool(const struct sj_value *v, int *out)
{
    bool b;
    if (el(v).get_bool().get(b) != simdjson::SUCCESS)
        return -1;
    *out = b;
    return 0;
}

extern "C" int sj_get_int64(const struct sj_value *v, int64_t *out)
{
    return el(v).get_int64().get(*out) == simdjson::SUCCESS ? 0 : -1;
}

extern "C" int sj_get_uint64(const struct sj_value *v, uint64_t *out)
{
    return el(v).get_uint64().get(*out) == simdjson::SUCCESS ? 0 : -1;
}

extern "C" int sj_get_double(const struct sj_value *v, double *out)
{
    element e = el(v);
    switch (e.type()) {
    case element_type::DOUBLE:
        return e.get_double().get(*out) == simdjson::SUCCESS ? 0 : -1;
    case element_type::INT64: {
        int64_t i;
        if (e.get_int64().get(i) != simdjson::SUCCESS)
            return -1;
        *out = static_cast<double>(i);
        return 0;
    }
    case element_type::UINT64: {
        uint64_t u;
        if (e.get_uint64().get(u) != simdjson::SUCCESS)
            return -1;
        *out = static_cast<double>(u);
        return 0;
    }
    default:
        return -1;
    }
}

extern "C" int sj_get_string(const struct sj_value *v, const char **s, size_t *len)
{
    std::string_view sv;
    if (el(v).get_string().get(sv) != simdjson::SUCCESS)
        return -1;
    *s = sv.data();
    *len = sv.size();
    return 0;
}

extern "C" int sj_object_get(const struct sj_value *v, const char *key, size_t klen,
                             struct sj_value *out)
{
    object o;
    if (el(v).get_object().get(o) != simdjson::SUCCESS)
        return -1;
    element child;
    if (o.at_key(std::string_view(key, klen)).get(child) != simdjson::SUCCESS)
        return -1;
    put(out, child);
    return 0;
}

extern "C" size_t sj_count(const struct sj_value *v)
{
    element e = el(v);
    array a;
    object o;
    if (e.get_array().get(a) == simdjson::SUCCESS)
        return a.size();
    if (e.get_object().get(o) == simdjson::SUCCESS)
        return o.size();
    return 0;
}

extern "C" int sj_array_iter(const struct sj_value *v, struct sj_iter *it)
{
    array a;
    if (el(v).get_array().get(a) != simdjson::SUCCESS)
        return -1;
    iter_state<array::iterator> st{0, a.begin(), a.end()};
    std::memcpy(it->opaque, static_cast<const void *>(&st), sizeof(st));
    return 0;
}

extern "C" int sj_array_next(struct sj_iter *it, struct sj_value *out)
{
    if (it->opaque[0] != 0)
        return 0;
    iter_state<array::iterator> st{0, {}, {}};
    std::memcpy(static_cast<void *>(&st), it->opaque, sizeof(st));
    if (!(st.cur != st.end))
        return 0;
    put(out, *st.cur);
    ++st.cur;
    std::memcpy(it->opaque, static_cast<const void *>(&st), sizeof(st));
    return 1;
}

extern "C" int sj_object_iter(const struct sj_value *v, struct sj_iter *it)
{
    object o;
    if (el(v).get_object().get(o) != simdjson::SUCCESS)
        return -1;
    iter_state<object::iterator> st{1, o.begin(), o.end()};
    std::memcpy(it->opaque, static_cast<const void *>(&st), sizeof(st));
    return 0;
}

extern "C" int sj_object_next(struct sj_iter *it, const char **key, size_t *klen,
                              struct sj_value *out)
{
    if (it->opaque[0] != 1)
        return 0;
    iter_state<object::iterator> st{1, {}, {}};
    std::memcpy(static_cast<void *>(&st), it->opaque, sizeof(st));
    if (!(st.cur != st.end))
        return 0;
    std::string_view k = st.cur.key();
    *key = k.data();
    *klen = k.size();
    put(out, st.cur.value());
    ++st.cur;
    std::memcpy(it->opaque, static_cast<const void *>(&st), sizeof(st));
    return 1;
}

extern "C" size_t sj_to_json(const struct sj_value *v, char *buf, size_t size)
{
    std::string s = simdjson::minify(el(v));
    if (s.size() <= size)
        std::memcpy(buf, s.data(), s.size());
    return s.size();
}
