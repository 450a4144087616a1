/*
 * schema_mapper_json.c - the single-pass validating JSON extractor.
 *
 * One pass over the bytes validates the whole document against RFC 8259
 * (grammar, string escapes, paired UTF-16 surrogates in \u escapes, UTF-8 of
 * every string, no leading zeros, nothing after the value) with a depth
 * limit, and captures the values the schema's path trie asks for on the
 * way. Nothing is built: a captured value is a view into the input (a
 * string body, a number's text, a container's span), typed later, and only
 * when a field needs it.
 *
 * The trie drives the walk: a value is parsed together with the set of trie
 * nodes it feeds (several when paths such as a[0] and a[*] meet). A value
 * that feeds no node is validated by skip_value, an iterative scanner with
 * a bit stack (no recursion, so 10,000 levels of nesting cost nothing but
 * the error). Recursion happens only along the trie, whose depth is the
 * longest path.
 *
 * Duplicate keys: the first occurrence feeds the trie (later ones are
 * validated and ignored), the same rule as simdjson's at_key.
 *
 * Speed (see bench/README.md): strings and digit runs are scanned 8 bytes
 * at a time; an object's keys are first compared with the `"key":` bytes
 * the same trie node saw at that position last time (struct sm_pred), so
 * a stream of same-shaped objects matches a key with one comparison; and
 * an integer's value is computed while its digits are in cache.
 *
 * Shapes: a stream's records are mostly one shape, the same keys in the
 * same order with other scalar values. After a record is accepted, its
 * bytes with each scalar value cut out are kept (struct sm_shape: the
 * literal text between values, and the trie node each value fed). The
 * next record is first matched against that shape: each literal compared
 * byte for byte (16 at a time), each value scanned and validated by the
 * same scalar scanners as the full walk and captured into its node's
 * slots. Every byte of an accepted record is thus either equal to the
 * byte at the same place of a record this file validated in full, or part
 * of a scalar validated here, and a scalar swapped for another one keeps
 * the document valid and every path where it was: a match gives the
 * full walk's result, duplicate keys and [?k] selections included. The
 * first difference (another key, a blank, a container where a scalar was,
 * a bad byte) abandons the match, clears the captures and runs the full
 * walk, which reports any error as always and learns the new shape.
 * Records whose walk does more than capture scalars into plain slots
 * (wildcard lists, container captures, structure mismatches, nodes that
 * expect a container) teach no shape.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "schema_mapper.h"
#include "textfmt.h"

/* Longest depth limit the configuration allows (json.max.depth). */
#define JX_DEPTH_MAX 1024

/* Largest record and most values a shape is learned from. */
#define SM_SHAPE_MAX_BYTES 65536
#define SM_SHAPE_MAX_VALUES 4096
/* Full walks to wait before trying again to learn a shape, after a record
 * that teaches none. */
#define SM_SHAPE_COOL 256

struct jx {
    const unsigned char *base, *p, *end;
    struct sm_mapper *m;         /* NULL: validation only */
    int depth, max_depth;
    const char *msg;             /* first error */
    size_t off;
    struct sm_shape *rec;        /* learning: scalar spans go here (NULL: not learning) */
    int norec;                   /* this record cannot be a shape */
};

static const char DEPTH_MSG[] = "nesting too deep";

static int jerr(struct jx *x, const unsigned char *at, const char *msg)
{
    if (!x->msg) {
        x->msg = msg;
        x->off = (size_t)(at - x->base);
    }
    return -1;
}

#define TRUNC "unexpected end of input (truncated)"

static void ws_skip(struct jx *x)
{
    const unsigned char *p = x->p, *end = x->end;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    x->p = p;
}

/* Compact JSON has no whitespace: one comparison in the common case (every
 * JSON whitespace byte is <= ' '). */
static inline void ws(struct jx *x)
{
    if (x->p < x->end && *x->p <= ' ')
        ws_skip(x);
}

/* Non-zero when one of the 8 bytes is '"', '\\', below 0x20 or above 0x7f. */
static inline uint64_t has_special(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t q = w ^ (ones * '"');
    uint64_t b = w ^ (ones * '\\');
    uint64_t zq = (q - ones) & ~q;
    uint64_t zb = (b - ones) & ~b;
    uint64_t ctl = (w - ones * 0x20) & ~w;
    return (zq | zb | ctl | w) & high;
}

static inline int hexv(unsigned c)
{
    if (c - '0' < 10)
        return (int)(c - '0');
    c |= 0x20;
    if (c - 'a' < 6)
        return (int)(c - 'a' + 10);
    return -1;
}

static int hex4v(const unsigned char *p)
{
    int a = hexv(p[0]), b = hexv(p[1]), c = hexv(p[2]), d = hexv(p[3]);
    if ((a | b | c | d) < 0)
        return -1;
    return a << 12 | b << 8 | c << 4 | d;
}


/* x->p is just after the opening quote. On success x->p is just after the
 * closing quote and *esc tells whether the body holds escapes. */
static int scan_string_slow(struct jx *x, int *esc)
{
    const unsigned char *p = x->p, *end = x->end;
    int e = 0;
    for (;;) {
        while (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            uint64_t sp = has_special(w);
            if (sp) {
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                /* The lowest flagged byte is always a real one. */
                p += __builtin_ctzll(sp) >> 3;
#endif
                break;
            }
            p += 8;
        }
        if (p >= end)
            return jerr(x, p, TRUNC);
        unsigned c = *p;
        if (c == '"') {
            x->p = p + 1;
            *esc = e;
            return 0;
        }
        if (c == '\\') {
            e = 1;
            if (end - p < 2)
                return jerr(x, end, TRUNC);
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                continue;
            case 'u': {
                if (end - p < 6)
                    return jerr(x, end, TRUNC);
                int cp = hex4v(p + 2);
                if (cp < 0)
                    return jerr(x, p, "invalid \\u escape (needs 4 hex digits)");
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    return jerr(x, p, "unpaired UTF-16 surrogate in a \\u escape");
                p += 6;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (end - p < 6)
                        return jerr(x, end - p < 2 || (p[0] == '\\' && p[1] == 'u') ? end : p,
                                    end - p < 2 || (p[0] == '\\' && p[1] == 'u')
                                        ? TRUNC : "unpaired UTF-16 surrogate in a \\u escape");
                    int lo = p[0] == '\\' && p[1] == 'u' ? hex4v(p + 2) : -1;
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        return jerr(x, p, "unpaired UTF-16 surrogate in a \\u escape");
                    p += 6;
                }
                continue;
            }
            default:
                return jerr(x, p, "invalid escape in a string");
            }
        }
        if (c < 0x20)
            return jerr(x, p, "control character in a string (must be escaped)");
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t k = textfmt_utf8_seq(p, end);
        if (!k)
            return jerr(x, p, "invalid UTF-8 in a string");
        p += k;
    }
}

/* The common case inline: a string without escapes or non-ASCII bytes
 * whose closing quote is found 8 bytes at a time. Anything else goes on in
 * scan_string_slow from where this stopped. */
static inline int scan_string(struct jx *x, int *esc)
{
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const unsigned char *p = x->p, *end = x->end;
    while (end - p >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        uint64_t sp = has_special(w);
        if (sp) {
            p += __builtin_ctzll(sp) >> 3;
            if (*p == '"') {
                x->p = p + 1;
                *esc = 0;
                return 0;
            }
            break;
        }
        p += 8;
    }
    /* Fewer than 8 bytes left: the last string of a record ("01000"}) ends
     * here. Plain ASCII up to the quote stays inline. */
    for (; p < end && *p != '"'; p++)
        if (*p < 0x20 || *p >= 0x80 || *p == '\\')
            goto slow;
    if (p < end) {
        x->p = p + 1;
        *esc = 0;
        return 0;
    }
slow:
    x->p = p;
#endif
    return scan_string_slow(x, esc);
}

static inline int is_digit(unsigned c) { return c - '0' < 10; }

/* Bytes that may follow a number: whitespace, ',', ']' and '}'. */
static const unsigned char num_end[256] = {
    [' '] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1, [','] = 1, [']'] = 1, ['}'] = 1,
};

/* Non-zero bytes where w's bytes are not ASCII digits. A byte is a digit
 * when its high nibble is 3 and its low one is at most 9 (adding 6 keeps
 * the high nibble 3). A carry out of a non-digit byte can only disturb the
 * bytes above it. */
static inline uint64_t non_digits(uint64_t w)
{
    return ((w & 0xF0F0F0F0F0F0F0F0ull) ^ 0x3030303030303030ull) |
           (((w + 0x0606060606060606ull) & 0xF0F0F0F0F0F0F0F0ull) ^ 0x3030303030303030ull);
}

static const uint64_t pow10_u64[9] = { 1, 10, 100, 1000, 10000, 100000, 1000000, 10000000,
                                       100000000 };

/* The value of the d (1..8) ASCII digits in the first bytes of w (little
 * endian: the first digit is the lowest byte): the digits are moved to the
 * top bytes (leading zeros below), then combined pairwise. A borrow from a
 * non-digit byte only reaches the bytes above it, which the shift drops. */
static inline uint64_t swar_digits(uint64_t w, unsigned d)
{
    w -= 0x3030303030303030ull;
    w <<= 8 * (8 - d);
    w = w * 10 + (w >> 8);
    return (((w & 0x000000FF000000FFull) * (100 + (1000000ull << 32))) +
            (((w >> 16) & 0x000000FF000000FFull) * (1 + (10000ull << 32)))) >> 32;
}

/* The first byte at or after p that is not a digit, 8 bytes at a time. */
static inline const unsigned char *skip_digits(const unsigned char *p, const unsigned char *end)
{
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (end - p >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        uint64_t nd = non_digits(w);
        if (nd)
            return p + (__builtin_ctzll(nd) >> 3);
        p += 8;
    }
#endif
    while (p < end && is_digit(*p))
        p++;
    return p;
}

/* Validates a number at x->p. Returns 1 when it is an integer (no
 * fraction, no exponent), 0 otherwise, -1 when invalid. */
static int scan_number(struct jx *x)
{
    const unsigned char *p = x->p, *end = x->end;
    int whole = 1;
    if (*p == '-')
        p++;
    if (p >= end)
        return jerr(x, p, TRUNC);
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p))
            return jerr(x, p - 1, "invalid number (leading zero)");
    } else if (is_digit(*p)) {
        p = skip_digits(p + 1, end);
    } else {
        return jerr(x, x->p, "invalid number");
    }
    if (p < end && *p == '.') {
        p++;
        whole = 0;
        if (p >= end || !is_digit(*p))
            return jerr(x, p, p >= end ? TRUNC : "invalid number (no digit after the decimal point)");
        p = skip_digits(p + 1, end);
    }
    if (p < end && (*p | 0x20) == 'e') {
        p++;
        whole = 0;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !is_digit(*p))
            return jerr(x, p, p >= end ? TRUNC : "invalid number (no digit in the exponent)");
        while (p < end && is_digit(*p))
            p++;
    }
    /* A number ends at a delimiter; anything else glued to it ("1.2.3",
     * "12abc", "1-2") makes it an invalid number. */
    if (p < end && !num_end[*p])
        return jerr(x, p, "invalid number");
    x->p = p;
    return whole;
}

static int scan_literal(struct jx *x, const char *lit, size_t n)
{
    const unsigned char *p = x->p;
    if ((size_t)(x->end - p) < n) {
        if (memcmp(p, lit, (size_t)(x->end - p)) == 0)
            return jerr(x, x->end, TRUNC);
        return jerr(x, p, "invalid literal");
    }
    if (memcmp(p, lit, n) != 0)
        return jerr(x, p, "invalid literal");
    p += n;
    if (p < x->end && (((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z') || is_digit(*p)))
        return jerr(x, x->p, "invalid literal");
    x->p = p;
    return 0;
}

/* A scalar at x->p (the caller checked it is not a container). */
static int scan_scalar(struct jx *x)
{
    int esc;
    switch (*x->p) {
    case '"':
        x->p++;
        return scan_string(x, &esc);
    case 't':
        return scan_literal(x, "true", 4);
    case 'f':
        return scan_literal(x, "false", 5);
    case 'n':
        return scan_literal(x, "null", 4);
    case '-': case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7':
    case '8': case '9':
        return scan_number(x) < 0 ? -1 : 0;
    default:
        if (*x->p >= 0x80)
            return jerr(x, x->p, "unexpected byte (not a JSON value; invalid UTF-8 outside a string?)");
        return jerr(x, x->p, "unexpected character (not a JSON value)");
    }
}

/* Reads `"key"` and the colon after it; x->p is at the quote. */
static int scan_key(struct jx *x)
{
    int esc;
    if (x->p >= x->end)
        return jerr(x, x->p, TRUNC);
    if (*x->p != '"')
        return jerr(x, x->p, "expected a string key");
    x->p++;
    if (scan_string(x, &esc) < 0)
        return -1;
    ws(x);
    if (x->p >= x->end)
        return jerr(x, x->p, TRUNC);
    if (*x->p != ':')
        return jerr(x, x->p, "expected ':' after an object key");
    x->p++;
    ws(x);
    return 0;
}

static void shape_stop(struct jx *x)
{
    x->rec = NULL;
    x->norec = 1;
}

/* Learning: the scalar at start..x->p fed node (NULL: nothing). */
static void shape_value(struct jx *x, const unsigned char *start, const struct sm_node *node)
{
    struct sm_shape *sh = x->rec;
    if (sh->nv + 1 >= sh->vcap) {
        size_t cap = sh->vcap ? sh->vcap * 2 : 32;
        struct sm_shapev *nv = cap <= SM_SHAPE_MAX_VALUES + 1 ? realloc(sh->v, cap * sizeof(*nv))
                                                               : NULL;
        if (!nv) {
            shape_stop(x);
            return;
        }
        sh->v = nv;
        sh->vcap = cap;
    }
    sh->v[sh->nv].off = (uint32_t)(start - x->base);
    sh->v[sh->nv].len = (uint32_t)(x->p - start);
    sh->v[sh->nv].node = node;
    sh->nv++;
}

/* A scalar that feeds nothing. */
static inline int skip_scalar(struct jx *x)
{
    const unsigned char *start = x->p;
    if (scan_scalar(x) < 0)
        return -1;
    if (x->rec)
        shape_value(x, start, NULL);
    return 0;
}

/* Validates one value without capturing anything. Containers are walked
 * iteratively; stk holds one bit per open level (1 = object). */
static int skip_value(struct jx *x)
{
    uint64_t stk[JX_DEPTH_MAX / 64 + 1];
    int sp = 0;

    if (x->p >= x->end)
        return jerr(x, x->p, TRUNC);
    if (*x->p != '{' && *x->p != '[')
        return skip_scalar(x);
    for (;;) {
        /* A value starts at x->p. */
        if (x->p >= x->end)
            return jerr(x, x->p, TRUNC);
        unsigned c = *x->p;
        if (c == '{' || c == '[') {
            if (x->depth + sp + 1 > x->max_depth)
                return jerr(x, x->p, DEPTH_MSG);
            if (c == '{')
                stk[sp / 64] |= 1ull << (sp % 64);
            else
                stk[sp / 64] &= ~(1ull << (sp % 64));
            sp++;
            x->p++;
            ws(x);
            if (x->p >= x->end)
                return jerr(x, x->p, TRUNC);
            if (*x->p == (c == '{' ? '}' : ']')) {
                x->p++;
                sp--;
                goto after;
            }
            if (c == '{' && scan_key(x) < 0)
                return -1;
            continue;
        }
        if (skip_scalar(x) < 0)
            return -1;
after:
        /* A value ended; what closes or continues its container? */
        for (;;) {
            if (sp == 0)
                return 0;
            ws(x);
            if (x->p >= x->end)
                return jerr(x, x->p, TRUNC);
            int obj = (int)(stk[(sp - 1) / 64] >> ((sp - 1) % 64) & 1);
            if (*x->p == ',') {
                x->p++;
                ws(x);
                if (obj && scan_key(x) < 0)
                    return -1;
                break;
            }
            if (*x->p == (obj ? '}' : ']')) {
                x->p++;
                sp--;
                continue;
            }
            return jerr(x, x->p, obj ? "expected ',' or '}' after an object member"
                                     : "expected ',' or ']' after an array element");
        }
    }
}

/* Stores a value into the slots of one node. A plain slot gets the fields
 * the extractor writes (kind and the 16 bytes of scalars and spans), copied
 * one by one: see scalar_src on whole-struct copies. */
static inline void capture_one(struct sm_mapper *m, const struct sm_node *nd,
                               const struct sm_src *v)
{
    if (nd->nslots == 1 && !m->slot_multi[nd->slots[0]]) {
        struct sm_src *c = &m->cap[nd->slots[0]];
        if (c->k == SM_SK_MISSING) {
            c->k = v->k;
            c->bk = v->bk;
            c->u.s = v->u.s;
        }
    } else if (nd->nslots) {
        sm_capture(m, nd, v);
    }
}

/* Stores a value into the capture slots of the nodes set[0..n). */
static inline void capture_all(struct sm_mapper *m, const struct sm_setent *set, size_t n,
                               const struct sm_src *v)
{
    for (size_t i = 0; i < n; i++)
        capture_one(m, set[i].n, v);
}

/* Scans and validates the scalar at x->p (x->p < x->end) into *vp; -1 on
 * an invalid value or a container (the error of the container's first
 * byte: callers that get here have a scalar or nothing). *vp is written
 * field by field, never copied whole: a 16-byte load of a struct just
 * written in 1- and 8-byte stores stalls on store forwarding (perf: a
 * third of the shape match's time went to that one load). */
static inline __attribute__((always_inline)) int scalar_src(struct jx *x, struct sm_src *vp)
{
    const unsigned char *start = x->p;
    int esc;
    switch (*start) {
    case '"':
        x->p++;
        if (scan_string(x, &esc) < 0)
            return -1;
        vp->k = esc ? SM_SK_ESTR : SM_SK_STR;
        vp->u.s.p = (const char *)start + 1;
        vp->u.s.n = (size_t)(x->p - start) - 2;
        break;
    case 't':
    case 'f':
        if (scan_scalar(x) < 0)
            return -1;
        vp->k = SM_SK_BOOL;
        vp->u.b = *start == 't';
        break;
    case 'n':
        if (scan_scalar(x) < 0)
            return -1;
        vp->k = SM_SK_NULL;
        break;
    case '-': case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7':
    case '8': case '9': {
        /* The common case in one pass: an integer of at most 18 characters
         * (sign included), no leading zero, ending at a delimiter. Anything
         * else (fractions, exponents, zero, longer numbers, errors) takes
         * the general path below, which gives the same value. */
        const unsigned char *q = start + (*start == '-'), *end = x->end;
        if (q < end && (unsigned)(*q - '1') < 9) {
            /* One or two digits (counts, flags: most integers of a feed)
             * end before word arithmetic would pay off. A byte num_end
             * accepts is not a digit. */
            int64_t sv = -1;
            if (end - q > 2) {
                if (num_end[q[1]]) {
                    sv = *q - '0';
                    x->p = q + 1;
                } else if (is_digit(q[1]) && num_end[q[2]]) {
                    sv = (*q - '0') * 10 + (q[1] - '0');
                    x->p = q + 2;
                }
            }
            if (sv >= 0) {
                vp->k = SM_SK_INT;
                vp->u.i = *start == '-' ? -sv : sv;
                break;
            }
            uint64_t iv = 0;  /* wraps harmlessly past 18 characters: then unused */
            for (;;) {
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                if (end - q >= 8) {
                    uint64_t w;
                    memcpy(&w, q, 8);
                    uint64_t nd = non_digits(w);
                    unsigned d = nd ? (unsigned)__builtin_ctzll(nd) >> 3 : 8;
                    if (d) {
                        iv = iv * pow10_u64[d] + swar_digits(w, d);
                        q += d;
                    }
                    if (d < 8 || q - start > 18)
                        break;
                    continue;
                }
#endif
                while (q < end && is_digit(*q) && q - start <= 18)
                    iv = iv * 10 + (uint64_t)(*q++ - '0');
                break;
            }
            if (q - start <= 18 && q < end && num_end[*q]) {
                x->p = q;
                vp->k = SM_SK_INT;
                vp->u.i = *start == '-' ? -(int64_t)iv : (int64_t)iv;
                break;
            }
        } else if (start + 1 < end && *start == '0' && num_end[start[1]]) {
            x->p = start + 1;  /* 0 (-0 keeps its text below, for stringify) */
            vp->k = SM_SK_INT;
            vp->u.i = 0;
            break;
        }
        int whole = scan_number(x);
        if (whole < 0)
            return -1;
        size_t len = (size_t)(x->p - start);
        if (whole && len <= 18 && !(len == 2 && start[1] == '0')) {
            /* An integer that fits int64 for sure: its value now, while the
             * digits are in cache (no second pass when it is typed). -0 is
             * left as text: stringify writes it as it is. */
            const unsigned char *d = start + (*start == '-');
            int64_t iv = 0;
            for (; d < x->p; d++)
                iv = iv * 10 + (*d - '0');
            vp->k = SM_SK_INT;
            vp->u.i = *start == '-' ? -iv : iv;
        } else {
            vp->k = SM_SK_NUMTXT;
            vp->u.s.p = (const char *)start;
            vp->u.s.n = len;
        }
        break;
    }
    default:
        scan_scalar(x);  /* not a value: the error */
        return -1;
    }
    return 0;
}

/* A scalar feeding set[0..n) (x->p is at its first byte, not { or [).
 * Inlined into the member loop: it runs once per captured value. */
static inline __attribute__((always_inline)) int jx_scalar(struct jx *x, struct sm_setent *set, size_t n)
{
    const unsigned char *start = x->p;
    struct sm_src v;
    v.bk = 0;  /* scalars have none; capture_one copies it */
    if (scalar_src(x, &v) < 0)
        return -1;
    if (x->rec) {
        /* A shape replays one plain node per value; a node expecting a
         * container decides by the value's kind (null or not). */
        if (n > 1 || (n == 1 && set[0].n->want))
            shape_stop(x);
        else
            shape_value(x, start, n && set[0].n->nslots ? set[0].n : NULL);
    }
    for (size_t i = 0; i < n; i++)
        if (set[i].n->want && v.k != SM_SK_NULL)
            sm_mismatch(x->m, set[i].n, v.k);  /* a container was expected here */
    capture_all(x->m, set, n, &v);
    return 0;
}

static int jx_value(struct jx *x, struct sm_setent *set, size_t n, size_t lvl);

static inline int pred_hit(const struct jx *x, const struct sm_pred *pr)
{
    size_t n = pr->len;
    if (!n || (size_t)(x->end - x->p) < n)
        return 0;
    const char *a = pr->bytes, *b = (const char *)x->p;
    if (n < 8) {
        for (size_t i = 0; i < n; i++)
            if (a[i] != b[i])
                return 0;
        return 1;
    }
    uint64_t u, v;
    for (size_t i = 0; i + 8 < n; i += 8) {
        memcpy(&u, a + i, 8);
        memcpy(&v, b + i, 8);
        if (u != v)
            return 0;
    }
    memcpy(&u, a + n - 8, 8);
    memcpy(&v, b + n - 8, 8);
    return u == v;
}

/* Adds edge ed's child to the child set (once per container instance: a
 * duplicate key feeds nothing). Returns the new count. */
static inline size_t add_child(struct sm_setent *cs, size_t cn, const struct sm_setent *from,
                               struct sm_edge *ed, uint64_t inst)
{
    uint64_t owner = from->inst ? from->inst : inst;
    if (ed->child->mark == owner)
        return cn;
    ed->child->mark = owner;
    cs[cn].n = ed->child;
    cs[cn].inst = 0;
    return cn + 1;
}

static int jx_object(struct jx *x, struct sm_setent *set, size_t n, size_t lvl)
{
    struct sm_mapper *m = x->m;
    struct sm_setent *cs = (struct sm_setent *)m->setbuf + (lvl + 1) * m->nnodes;
    uint64_t inst = ++m->next_id;

    if (++x->depth > x->max_depth)
        return jerr(x, x->p, DEPTH_MSG);
    x->p++;
    ws(x);
    if (x->p >= x->end)
        return jerr(x, x->p, TRUNC);
    if (*x->p == '}') {
        x->p++;
        x->depth--;
        return 0;
    }
    for (size_t pos = 0;; pos++) {
        int esc, rc;
        size_t cn = 0;
        struct sm_pred *pr = NULL;
        if (x->p >= x->end)
            return jerr(x, x->p, TRUNC);
        if (*x->p != '"')
            return jerr(x, x->p, "expected a string key");
        if (n == 1 && set[0].n->pred && pos < SM_PRED_POS) {
            pr = &set[0].n->pred[pos * 2];
            const struct sm_pred *hit = pred_hit(x, &pr[0]) ? &pr[0]
                                      : pred_hit(x, &pr[1]) ? &pr[1] : NULL;
            if (hit) {
                x->p += hit->len;
                ws(x);
                if (hit->edge >= 0)
                    cn = add_child(cs, 0, &set[0], &set[0].n->edges[hit->edge], inst);
                goto value;
            }
        }
        const unsigned char *quote = x->p;
        const char *key = (const char *)++x->p;
        if (scan_string(x, &esc) < 0)
            return -1;
        size_t klen = (size_t)((const char *)x->p - 1 - key);
        ws(x);
        if (x->p >= x->end)
            return jerr(x, x->p, TRUNC);
        if (*x->p != ':')
            return jerr(x, x->p, "expected ':' after an object key");
        x->p++;
        size_t span = (size_t)(x->p - quote);
        ws(x);
        if (esc)
            sm_json_unescape(&m->arena, key, klen, &key, &klen);
        uint32_t h = key ? sm_key_hash(key, klen) : 0;
        struct sm_edge *first = NULL;
        for (size_t i = 0; i < n && key; i++) {
            struct sm_node *nd = set[i].n;
            struct sm_edge *ed;
            if (!nd->nedges || !(ed = sm_node_edge(nd, key, klen, h)))
                continue;
            if (i == 0)
                first = ed;
            cn = add_child(cs, cn, &set[i], ed, inst);
        }
        if (pr && !esc && span == klen + 3 && span <= SM_PRED_KEY) {
            /* `"key":` without escapes or blanks: remember it here. */
            struct sm_pred *slot = !pr[0].len ? &pr[0] : !pr[1].len ? &pr[1] : &pr[pr[0].next];
            pr[0].next = (uint8_t)(slot == &pr[0]);
            slot->len = (uint8_t)span;
            slot->edge = (int16_t)(first ? first - set[0].n->edges : -1);
            memcpy(slot->bytes, quote, span);
        }
value:
        if (!cn)
            rc = skip_value(x);
        else if (x->p < x->end && *x->p != '{' && *x->p != '[')
            rc = jx_scalar(x, cs, cn);
        else
            rc = jx_value(x, cs, cn, lvl + 1);
        if (rc < 0)
            return -1;
        ws(x);
        if (x->p >= x->end)
            return jerr(x, x->p, TRUNC);
        if (*x->p == ',') {
            x->p++;
            ws(x);
            continue;
        }
        if (*x->p == '}') {
            x->p++;
            break;
        }
        return jerr(x, x->p, "expected ',' or '}' after an object member");
    }
    x->depth--;
    return 0;
}

static int jx_array(struct jx *x, struct sm_setent *set, size_t n, size_t lvl)
{
    struct sm_mapper *m = x->m;
    struct sm_setent *es = (struct sm_setent *)m->setbuf + (lvl + 1) * m->nnodes;
    uint64_t inst = ++m->next_id;

    if (++x->depth > x->max_depth)
        return jerr(x, x->p, DEPTH_MSG);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < set[i].n->npresent; k++)
            m->mcap[set[i].n->present[k]].present = 1;
    x->p++;
    ws(x);
    if (x->p >= x->end)
        return jerr(x, x->p, TRUNC);
    if (*x->p == ']') {
        x->p++;
        x->depth--;
        return 0;
    }
    for (int64_t idx = 0;; idx++) {
        size_t en = 0;
        for (size_t i = 0; i < n; i++) {
            struct sm_node *nd = set[i].n;
            if (nd->wild) {
                es[en].n = nd->wild;
                es[en++].inst = 0;
            }
            for (size_t k = 0; k < nd->nidx; k++) {
                if (nd->idx[k].i == idx) {
                    es[en].n = nd->idx[k].child;
                    es[en++].inst = 0;
                }
            }
            if (nd->sel) {
                es[en].n = nd->sel;
                es[en++].inst = inst;
            }
        }
        if ((en ? jx_value(x, es, en, lvl + 1) : skip_value(x)) < 0)
            return -1;
        ws(x);
        if (x->p >= x->end)
            return jerr(x, x->p, TRUNC);
        if (*x->p == ',') {
            x->p++;
            ws(x);
            continue;
        }
        if (*x->p == ']') {
            x->p++;
            break;
        }
        return jerr(x, x->p, "expected ',' or ']' after an array element");
    }
    x->depth--;
    return 0;
}

/* A value feeding the trie nodes set[0..n). */
static int jx_value(struct jx *x, struct sm_setent *set, size_t n, size_t lvl)
{
    const unsigned char *start = x->p;
    if (start >= x->end)
        return jerr(x, start, TRUNC);
    if (*start != '{' && *start != '[')
        return jx_scalar(x, set, n);
    uint8_t k = *start == '{' ? SM_SK_OBJECT : SM_SK_ARRAY;
    int want = k == SM_SK_OBJECT ? SM_WANT_OBJECT : SM_WANT_ARRAY;
    /* Entries whose node needs the other kind of container: a mismatch (an
     * error once the document proved valid), and no descent. Their slots
     * still capture the value. */
    size_t keep = 0;
    int any_slots = 0;
    for (size_t i = 0; i < n; i++) {
        struct sm_node *nd = set[i].n;
        any_slots |= nd->nslots != 0;
        if (nd->want && !(nd->want & want)) {
            sm_mismatch(x->m, nd, k);
            continue;
        }
        set[keep++] = set[i];
    }
    int rc = k == SM_SK_OBJECT ? jx_object(x, set, keep, lvl) : jx_array(x, set, keep, lvl);
    if (rc < 0 || !any_slots)
        return rc;
    if (x->rec)
        shape_stop(x);  /* a container's text is captured: not a shape's */
    struct sm_src v;
    v.k = k;
    v.bk = SM_BK_TEXT;
    v.u.s.p = (const char *)start;
    v.u.s.n = (size_t)(x->p - start);
    capture_all(x->m, set, keep, &v);
    return 0;
}

static void format_err(const struct jx *x, char *err, size_t errsz)
{
    if (x->msg == DEPTH_MSG)
        snprintf(err, errsz, "invalid JSON at byte %zu: nesting deeper than %d", x->off,
                 x->max_depth);
    else
        snprintf(err, errsz, "invalid JSON at byte %zu: %s", x->off, x->msg);
}

int sm_json_validate(const char *p, size_t n, int max_depth, char *err, size_t errsz)
{
    struct jx x = { .base = (const unsigned char *)p, .p = (const unsigned char *)p,
                    .end = (const unsigned char *)p + n, .max_depth = max_depth };
    ws(&x);
    if (x.p >= x.end) {
        snprintf(err, errsz, "invalid JSON: empty value");
        return -1;
    }
    if (skip_value(&x) == 0) {
        ws(&x);
        if (x.p == x.end)
            return 0;
        jerr(&x, x.p, "trailing characters after the JSON value");
    }
    format_err(&x, err, errsz);
    return -1;
}

/* Equality of n bytes (both readable), 16 at a time. */
static inline int lit_eq(const unsigned char *a, const unsigned char *b, size_t n)
{
#if defined(__SSE2__)
    if (n >= 16) {
        for (size_t i = 0; i + 16 < n; i += 16)
            if (_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(a + i)),
                                                 _mm_loadu_si128((const __m128i *)(b + i))))
                != 0xFFFF)
                return 0;
        return _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(a + n - 16)),
                                                _mm_loadu_si128((const __m128i *)(b + n - 16))))
               == 0xFFFF;
    }
#endif
    if (n >= 8) {
        uint64_t u0, v0, u1, v1;
        for (size_t i = 0; i + 8 < n; i += 8) {
            memcpy(&u0, a + i, 8);
            memcpy(&v0, b + i, 8);
            if (u0 != v0)
                return 0;
        }
        memcpy(&u1, a + n - 8, 8);
        memcpy(&v1, b + n - 8, 8);
        return u1 == v1;
    }
    if (n >= 4) {
        uint32_t u0, v0, u1, v1;
        memcpy(&u0, a, 4);
        memcpy(&v0, b, 4);
        memcpy(&u1, a + n - 4, 4);
        memcpy(&v1, b + n - 4, 4);
        return u0 == v0 && u1 == v1;
    }
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

/* The record p[0..n) against the learned shape: 0 when it matches (the
 * captures are in), -1 at the first difference (captures half done). */
static int shape_match(struct sm_mapper *m, const unsigned char *p, size_t n)
{
    const struct sm_shape *sh = &m->shape;
    const unsigned char *tb = (const unsigned char *)sh->bytes;
    struct jx x = { .base = p, .p = p, .end = p + n, .m = m, .max_depth = m->max_depth };
    for (size_t k = 0;; k++) {
        const struct sm_shapev *e = &sh->v[k];
        if ((size_t)(x.end - x.p) < e->len || !lit_eq(x.p, tb + e->off, e->len))
            return -1;
        x.p += e->len;
        if (k == sh->nv)
            return x.p == x.end ? 0 : -1;
        /* Straight into a plain slot still empty (the first of duplicate
         * keys wins). */
        struct sm_src tmp;
        struct sm_src *dst = e->slot >= 0 && m->cap[e->slot].k == SM_SK_MISSING
                                 ? &m->cap[e->slot] : &tmp;
        if (x.p >= x.end || scalar_src(&x, dst) < 0)
            return -1;
        if (e->slot < 0 && e->node)
            capture_one(m, e->node, &tmp);
    }
}

/* After a full walk that accepted p[0..n) while learning: keeps its shape,
 * or waits SM_SHAPE_COOL walks when it has none. */
static void shape_learn(struct sm_mapper *m, struct jx *x, const char *p, size_t n)
{
    struct sm_shape *sh = &m->shape;
    if (x->norec || m->bad_node) {
        sh->ok = 0;
        sh->cool = SM_SHAPE_COOL;
        return;
    }
    if (sh->nv + 1 > sh->vcap) {  /* no value at all: room for the literal */
        struct sm_shapev *nv = realloc(sh->v, (sh->nv + 1) * sizeof(*nv));
        if (!nv) {
            sh->ok = 0;
            sh->cool = SM_SHAPE_COOL;
            return;
        }
        sh->v = nv;
        sh->vcap = sh->nv + 1;
    }
    if (n > sh->bcap) {
        char *nb = realloc(sh->bytes, n);
        if (!nb) {
            sh->ok = 0;
            sh->cool = SM_SHAPE_COOL;
            return;
        }
        sh->bytes = nb;
        sh->bcap = n;
    }
    memcpy(sh->bytes, p, n);
    sh->nbytes = n;
    /* Value spans to the literals before them; shape_value left room for
     * the closing literal. */
    uint32_t prev = 0;
    for (size_t k = 0; k < sh->nv; k++) {
        struct sm_shapev *e = &sh->v[k];
        uint32_t start = e->off, len = e->len;
        e->off = prev;
        e->len = start - prev;
        e->slot = e->node && e->node->nslots == 1 && !m->slot_multi[e->node->slots[0]]
                      ? e->node->slots[0] : -1;
        prev = start + len;
    }
    sh->v[sh->nv].off = prev;
    sh->v[sh->nv].len = (uint32_t)(n - prev);
    sh->v[sh->nv].slot = -1;
    sh->v[sh->nv].node = NULL;
    sh->ok = 1;
}

int sm_json_extract(struct sm_mapper *m, const char *p, size_t n, char *err, size_t errsz)
{
    struct sm_shape *sh = &m->shape;
    if (sh->ok) {
        if (shape_match(m, (const unsigned char *)p, n) == 0)
            return 0;
        for (size_t s = 0; s < m->nslots; s++)
            m->cap[s].k = SM_SK_MISSING;
    }
    struct jx x = { .base = (const unsigned char *)p, .p = (const unsigned char *)p,
                    .end = (const unsigned char *)p + n, .m = m, .max_depth = m->max_depth };
    if (!sh->off && !m->nmulti && n <= SM_SHAPE_MAX_BYTES) {
        if (sh->cool) {
            sh->cool--;
        } else {
            sh->ok = 0;
            sh->nv = 0;
            x.rec = sh;
        }
    }
    ws(&x);
    if (x.p >= x.end) {
        snprintf(err, errsz, "invalid JSON: empty value");
        return -1;
    }
    if (*x.p != '{') {
        /* Not an object: say so, unless it is not even JSON. */
        if (sm_json_validate(p, n, m->max_depth, err, errsz) < 0)
            return -1;
        snprintf(err, errsz, "expected a JSON object, got %s",
                 *x.p == '[' ? "an array" : *x.p == '"' ? "a string" :
                 *x.p == 'n' ? "null" : (*x.p == 't' || *x.p == 'f') ? "a boolean" : "a number");
        return -1;
    }
    struct sm_setent *root = (struct sm_setent *)m->setbuf;
    root[0].n = m->root;
    root[0].inst = 0;
    if (jx_value(&x, root, 1, 0) == 0) {
        ws(&x);
        if (x.p == x.end) {
            if (x.rec || x.norec)
                shape_learn(m, &x, p, n);
            return 0;
        }
        jerr(&x, x.p, "trailing characters after the JSON value");
    }
    format_err(&x, err, errsz);
    return -1;
}
