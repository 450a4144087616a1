/*
 * velib_source_feed - GBFS station_status / station_information snapshots:
 * parsing (sjson: the whole document is validated before a value is read),
 * shape checks, typed rows, the station_information table and the content
 * digest that tells an identical snapshot apart.
 *
 * A station becomes one row of one schema, built once and reused while the
 * field set is unchanged: the feed's own fields with the feed's names and
 * types (station_id, stationCode, num_bikes_available, numBikesAvailable,
 * num_bikes_available_types, num_docks_available, numDocksAvailable,
 * is_installed, is_returning, is_renting, last_reported), then name, lat,
 * lon and capacity when station_information is joined, then any other
 * scalar field the feed carries ("extras", in the order first seen).
 *
 * Validation is all or nothing: vs_feed_check checks every station, selected
 * or not, and computes the digest of the selected ones' rows without building
 * any; a snapshot with one bad station yields nothing, so the caller never
 * emits part of a bad snapshot. The check keeps each selected station's
 * values in a compact form (typed scalars, string spans into the parsed
 * document, the num_bikes_available_types items by cached shape, the joined
 * station_information entry), so the caller then builds the rows one by one
 * (vs_feed_row) from those without reading the document again, and emits
 * each as soon as it is built: the next task starts on the first stations
 * while the last ones are being built. Objects are read through sjson's
 * sj_next_n, a whole station per call with its scalars decoded.
 */
#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "velib_source.h"

#define VS_MAX_EXTRAS  32   /* extra scalar fields carried; more are ignored */
#define VS_MAX_IGNORED 64   /* names remembered so each is reported once */
#define VS_MAX_SHAPES  16   /* cached schemas of num_bikes_available_types items */
#define VS_SHAPE_KEYS  256  /* bytes of an item's key list that can be cached */
/* Latest lastUpdatedOther accepted (year 33658): far beyond any real feed,
 * and small enough that milliseconds plus a ttl never overflow. */
#define VS_MAX_EPOCH_S 1000000000000ll

/* ------------------------------------------------------------------------ */
/* Known fields                                                              */
/* ------------------------------------------------------------------------ */

enum vs_field {
    F_STATION_ID, F_CODE, F_NBA, F_NBA_CAMEL, F_TYPES, F_NDA, F_NDA_CAMEL,
    F_INSTALLED, F_RETURNING, F_RENTING, F_LAST_REPORTED,
    F_NAME, F_LAT, F_LON, F_CAPACITY,   /* from station_information */
    F_KNOWN
};
#define F_INFO_FIRST F_NAME

/* How a field's JSON value is checked and stored. */
enum vs_kind { K_INT, K_FLAG, K_STRING, K_DOUBLE, K_TYPES };

static const struct {
    const char *name;
    size_t len;
    enum vs_kind kind;
    enum spoke_type type;
} known[F_KNOWN] = {
#define KF(n, k, t) { n, sizeof(n) - 1, k, t }
    [F_STATION_ID]    = KF("station_id", K_INT, SPOKE_TYPE_INT),
    [F_CODE]          = KF("stationCode", K_STRING, SPOKE_TYPE_STRING),
    [F_NBA]           = KF("num_bikes_available", K_INT, SPOKE_TYPE_INT),
    [F_NBA_CAMEL]     = KF("numBikesAvailable", K_INT, SPOKE_TYPE_INT),
    [F_TYPES]         = KF("num_bikes_available_types", K_TYPES, SPOKE_TYPE_LIST),
    [F_NDA]           = KF("num_docks_available", K_INT, SPOKE_TYPE_INT),
    [F_NDA_CAMEL]     = KF("numDocksAvailable", K_INT, SPOKE_TYPE_INT),
    [F_INSTALLED]     = KF("is_installed", K_FLAG, SPOKE_TYPE_INT),
    [F_RETURNING]     = KF("is_returning", K_FLAG, SPOKE_TYPE_INT),
    [F_RENTING]       = KF("is_renting", K_FLAG, SPOKE_TYPE_INT),
    [F_LAST_REPORTED] = KF("last_reported", K_INT, SPOKE_TYPE_INT),
    [F_NAME]          = KF("name", K_STRING, SPOKE_TYPE_STRING),
    [F_LAT]           = KF("lat", K_DOUBLE, SPOKE_TYPE_DOUBLE),
    [F_LON]           = KF("lon", K_DOUBLE, SPOKE_TYPE_DOUBLE),
    [F_CAPACITY]      = KF("capacity", K_INT, SPOKE_TYPE_INT),
#undef KF
};

/* The known field a key names, or -1. A switch on the length leaves one or
 * two candidates, so a key costs at most two memcmp. */
static int known_field(const char *k, size_t len)
{
#define IS(f) (memcmp(k, known[f].name, len) == 0 ? (f) : -1)
    switch (len) {
    case 3:  return k[1] == 'a' ? IS(F_LAT) : IS(F_LON);
    case 4:  return IS(F_NAME);
    case 8:  return IS(F_CAPACITY);
    case 10: return k[0] == 's' ? IS(F_STATION_ID) : IS(F_RENTING);
    case 11: return IS(F_CODE);
    case 12: return k[3] == 'i' ? IS(F_INSTALLED) : IS(F_RETURNING);
    case 13: return IS(F_LAST_REPORTED);
    case 17: return k[3] == 'B' ? IS(F_NBA_CAMEL) : IS(F_NDA_CAMEL);
    case 19: return k[4] == 'b' ? IS(F_NBA) : IS(F_NDA);
    case 25: return IS(F_TYPES);
    default: return -1;
    }
#undef IS
}

static const char *json_type_name(enum sj_type t)
{
    switch (t) {
    case SJ_NULL: return "null";
    case SJ_BOOL: return "a boolean";
    case SJ_INT: return "an integer";
    case SJ_UINT: return "an integer above 2^63";
    case SJ_DOUBLE: return "a fractional number";
    case SJ_STRING: return "a string";
    case SJ_ARRAY: return "an array";
    case SJ_OBJECT: return "an object";
    }
    return "?";
}

static const char *kind_expect(enum vs_kind k)
{
    switch (k) {
    case K_INT: return "an integer";
    case K_FLAG: return "an integer or a boolean";
    case K_STRING: return "a string";
    case K_DOUBLE: return "a number";
    case K_TYPES: return "an array";
    }
    return "?";
}

/* ------------------------------------------------------------------------ */
/* Digest                                                                    */
/* ------------------------------------------------------------------------ */

/* One step of the content digest: rotate, xor, multiply by an odd
 * constant. For a fixed input each step is a bijection of the state, so
 * two snapshots that differ in a single value always get different
 * digests; several differences cancel out with probability about 2^-64. */
static inline uint64_t mix64(uint64_t h, uint64_t v)
{
    return (((h << 5) | (h >> 59)) ^ v) * 0x9e3779b97f4a7c15ull;
}

/* A full avalanche, for hashing into tables (ids, codes). */
static inline uint64_t fmix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t mix_bytes(uint64_t h, const char *s, size_t len)
{
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = mix64(h, w);
    }
    if (i < len) {
        uint64_t w = 0;
        memcpy(&w, s + i, len - i);
        h = mix64(h, w);
    }
    return mix64(h, len);
}

static uint64_t mix_double(uint64_t h, double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return mix64(h, u);
}

/* ------------------------------------------------------------------------ */
/* station_information                                                       */
/* ------------------------------------------------------------------------ */

#define INFO_NAME 0x1u
#define INFO_LAT  0x2u
#define INFO_LON  0x4u
#define INFO_CAP  0x8u
#define INFO_USED 0x80u

struct vs_info_entry {
    int64_t id;
    double lat, lon;
    int64_t capacity;
    uint32_t name_off, name_len;
    unsigned flags;
};

struct vs_info {
    size_t count;                 /* stations held */
    size_t mask;                  /* slots - 1 (a power of two) */
    struct vs_info_entry *slots;
    char *names;                  /* every name, back to back */
};

static inline size_t id_hash(int64_t id)
{
    return (size_t)fmix64((uint64_t)id);
}

/* Inlined: check_station looks every selected station up (the table
 * comparisons call it too, and would otherwise make it a call there). */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline const struct vs_info_entry *info_find(const struct vs_info *info, int64_t id)
{
    size_t k = id_hash(id) & info->mask;
    for (;;) {
        const struct vs_info_entry *e = &info->slots[k];
        if (!(e->flags & INFO_USED))
            return NULL;
        if (e->id == id)
            return e;
        k = (k + 1) & info->mask;
    }
}

size_t vs_info_count(const struct vs_info *info) { return info ? info->count : 0; }

void vs_info_free(struct vs_info *info)
{
    if (!info)
        return;
    free(info->slots);
    free(info->names);
    free(info);
}

/* Finds data.stations in a parsed GBFS document. 0, or -1 with errstr. */
static int find_stations(const struct sj_value *root, struct sj_value *stations,
                         char *errstr, size_t errstr_size)
{
    struct sj_value data;
    if (sj_type(root) != SJ_OBJECT) {
        snprintf(errstr, errstr_size, "wrong shape: the document is %s, not an object",
                 json_type_name(sj_type(root)));
        return -1;
    }
    if (sj_object_get(root, "data", 4, &data) != 0 || sj_type(&data) != SJ_OBJECT) {
        snprintf(errstr, errstr_size, "wrong shape: no \"data\" object");
        return -1;
    }
    if (sj_object_get(&data, "stations", 8, stations) != 0 || sj_type(stations) != SJ_ARRAY) {
        snprintf(errstr, errstr_size, "wrong shape: no data.stations array");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Numbers out of range                                                      */
/* ------------------------------------------------------------------------ */

/*
 * RFC 8259 lets a number have any size; simdjson refuses an integer outside
 * [-2^63, 2^64) and a number beyond a double's range ("Problem while
 * parsing a number"), so a whole document fails for one such value. What
 * follows, run only after such a failure (a valid document costs nothing
 * more), finds those values again. One at a place the plugin reads is said
 * with its place, as the check says a value of a wrong type; one that
 * nothing reads (a member the plugin ignores, a nested extra field, which
 * is not carried) must not cost the snapshot: the document is parsed again
 * from a copy where such numbers are 0.
 */

#define LOC_DEPTH 96        /* deeper than the parser's limit (64) */
#define LOC_SHOWN 40        /* longest key or code quoted */

struct loc_frame {
    int is_obj;
    size_t index;           /* arrays: the element being read */
    const char *key;        /* objects: the member being read (raw bytes) */
    size_t klen;
};

static size_t loc_ws(const char *p, size_t i, size_t n)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

/* A string at p[i] (a quote): its raw bytes in *s, *slen; returns the
 * index past its closing quote, or 0 when it has none. */
static size_t loc_string(const char *p, size_t i, size_t n, const char **s, size_t *slen)
{
    size_t j = i + 1;
    while (j < n && p[j] != '"')
        j += p[j] == '\\' ? 2 : 1;
    if (j >= n)
        return 0;
    *s = p + i + 1;
    *slen = j - i - 1;
    return j + 1;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A number token at p[i]: returns its end, or 0 when it is not one as JSON
 * writes them; *out: 1 when simdjson cannot hold its value. */
static size_t loc_number(const char *p, size_t i, size_t n, int *out)
{
    size_t j = i, d0;
    int integer = 1, neg = 0;
    if (j < n && p[j] == '-') {
        neg = 1;
        j++;
    }
    d0 = j;
    if (j >= n || !is_digit(p[j]))
        return 0;
    if (p[j] == '0')
        j++;
    else
        while (j < n && is_digit(p[j]))
            j++;
    size_t ndig = j - d0;
    if (j < n && p[j] == '.') {
        integer = 0;
        if (++j >= n || !is_digit(p[j]))
            return 0;
        while (j < n && is_digit(p[j]))
            j++;
    }
    if (j < n && (p[j] == 'e' || p[j] == 'E')) {
        integer = 0;
        if (++j < n && (p[j] == '+' || p[j] == '-'))
            j++;
        if (j >= n || !is_digit(p[j]))
            return 0;
        while (j < n && is_digit(p[j]))
            j++;
    }
    if (integer) {
        /* The largest that fit: 2^64 - 1, and -2^63. */
        const char *lim = neg ? "9223372036854775808" : "18446744073709551615";
        size_t llen = strlen(lim);
        *out = ndig > llen || (ndig == llen && memcmp(p + d0, lim, llen) > 0);
    } else {
        char small[64], *buf = small;
        if (j - i >= sizeof(small) && !(buf = malloc(j - i + 1)))
            return 0;
        memcpy(buf, p + i, j - i);
        buf[j - i] = '\0';
        double d = strtod(buf, NULL);
        *out = isinf(d);
        if (buf != small)
            free(buf);
    }
    return j;
}

/* Appends the path of frames [from, depth) to buf: key.key[index]... */
static void loc_path(const struct loc_frame *fr, int from, int depth, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int k = from; k < depth && len < size; k++) {
        int w;
        if (fr[k].is_obj)
            w = snprintf(buf + len, size - len, "%s%.*s", len ? "." : "",
                         (int)(fr[k].klen > LOC_SHOWN ? LOC_SHOWN : fr[k].klen), fr[k].key);
        else
            w = snprintf(buf + len, size - len, "[%zu]", fr[k].index);
        if (w < 0)
            break;
        len += (size_t)w;
    }
}

/* In data.stations[i], a station's own members at frame 3. */
static int loc_in_station(const struct loc_frame *fr, int depth)
{
    return depth >= 4 && fr[0].is_obj && fr[0].klen == 4 && !memcmp(fr[0].key, "data", 4) &&
           fr[1].is_obj && fr[1].klen == 8 && !memcmp(fr[1].key, "stations", 8) &&
           !fr[2].is_obj && fr[3].is_obj;
}

/* Which document a scan reads: what the plugin reads of it differs. */
enum loc_doc {
    LOC_STATUS,         /* station_status without station_information */
    LOC_STATUS_INFO,    /* station_status joined: name, lat, lon, capacity are known */
    LOC_INFO            /* station_information */
};

static int loc_key_is(const struct loc_frame *f, const char *key, size_t len)
{
    return f->is_obj && f->klen == len && !memcmp(f->key, key, len);
}
#define LOC_KEY_IS(f, lit) loc_key_is(f, lit, sizeof(lit) - 1)

/*
 * Whether the plugin reads the value at frames [0, depth) or one holding
 * it, where a number out of range is an error: the document itself, the
 * top-level members the plugin reads (data; lastUpdatedOther, last_updated
 * and ttl in station_status), data.stations and its elements, and a
 * station's members: in station_status every one (known fields and extras
 * alike: a scalar extra is carried) and anything within a known field; in
 * station_information station_id, name, lat, lon and capacity and anything
 * within them. Elsewhere nothing reads it: in a document that is not an
 * object, or whose data or stations has another type, the shape is refused
 * for that anyway.
 */
static int loc_used(const struct loc_frame *fr, int depth, enum loc_doc doc)
{
    if (depth == 0)
        return 1;
    if (depth == 1)
        return LOC_KEY_IS(&fr[0], "data") ||
               (doc != LOC_INFO && (LOC_KEY_IS(&fr[0], "lastUpdatedOther") ||
                                    LOC_KEY_IS(&fr[0], "last_updated") ||
                                    LOC_KEY_IS(&fr[0], "ttl")));
    if (!LOC_KEY_IS(&fr[0], "data") || !LOC_KEY_IS(&fr[1], "stations"))
        return 0;
    if (depth <= 3)
        return depth == 2 || !fr[2].is_obj;
    if (fr[2].is_obj || !fr[3].is_obj)
        return 0;
    if (doc == LOC_INFO)
        return LOC_KEY_IS(&fr[3], "station_id") || LOC_KEY_IS(&fr[3], "name") ||
               LOC_KEY_IS(&fr[3], "lat") || LOC_KEY_IS(&fr[3], "lon") ||
               LOC_KEY_IS(&fr[3], "capacity");
    if (depth == 4)
        return 1;
    /* Not known_field(): a second caller would keep it out of check_pass. */
    for (int k = 0; k < (doc == LOC_STATUS_INFO ? F_KNOWN : F_INFO_FIRST); k++)
        if (loc_key_is(&fr[3], known[k].name, known[k].len))
            return 1;
    return 0;
}

/*
 * Looks in the document p[0..n), which the parser refused over a number,
 * for the numbers it cannot hold. 1 with errstr naming the first one at a
 * place the plugin reads (loc_used): "wrong shape: station #3 (stationCode
 * 14111): num_bikes_available is out of range (...)". Otherwise 0, each one
 * found elsewhere written as 0 (then spaces) in q, a copy of p, and
 * counted in *nzeroed: none when the number was malformed or the document
 * is broken otherwise, which the parser says.
 */
static int number_out_of_range(const char *p, size_t n, enum loc_doc doc, char *q,
                               size_t *nzeroed, char *errstr, size_t errstr_size)
{
    struct loc_frame fr[LOC_DEPTH], *top;
    int depth = 0, found = 0, in_station = 0, integer = 0;
    char path[160] = "", shown[48], label[96];
    const char *code = NULL, *tok = NULL, *s;
    size_t codelen = 0, toklen = 0, station = 0, slen, j, i = loc_ws(p, 0, n);

    for (;;) {
        /* A value at p[i]. */
        if (i >= n)
            goto broken;
        if (p[i] == '{' || p[i] == '[') {
            if (depth == LOC_DEPTH)
                goto broken;
            top = &fr[depth++];
            top->is_obj = p[i] == '{';
            top->index = 0;
            top->key = NULL;
            top->klen = 0;
            if (depth == 4 && loc_in_station(fr, depth) && !found)
                code = NULL;  /* a new station */
            i = loc_ws(p, i + 1, n);
            if (i < n && p[i] == (top->is_obj ? '}' : ']')) {
                depth--;
                i++;
                goto after;
            }
            if (top->is_obj)
                goto key;
            continue;
        }
        if (p[i] == '"') {
            if (!(j = loc_string(p, i, n, &s, &slen)))
                goto broken;
            if (depth == 4 && loc_in_station(fr, depth) && !code && fr[3].klen == 11 &&
                !memcmp(fr[3].key, "stationCode", 11)) {
                code = s;  /* the first one, as lookups read it */
                codelen = slen;
            }
            i = j;
        } else if (p[i] == '-' || is_digit(p[i])) {
            int out = 0;
            if (!(j = loc_number(p, i, n, &out)))
                goto broken;
            if (out && !found && !loc_used(fr, depth, doc)) {
                q[i] = '0';
                memset(q + i + 1, ' ', j - i - 1);
                (*nzeroed)++;
            } else if (out && !found) {
                found = 1;
                tok = p + i;
                toklen = j - i;
                integer = !memchr(tok, '.', toklen) && !memchr(tok, 'e', toklen) &&
                          !memchr(tok, 'E', toklen);
                in_station = loc_in_station(fr, depth);
                if (in_station)
                    station = fr[2].index;
                loc_path(fr, in_station ? 3 : 0, depth, path, sizeof(path));
                if (!in_station)
                    break;
            }
            i = j;
        } else if (n - i >= 4 && (!memcmp(p + i, "true", 4) || !memcmp(p + i, "null", 4))) {
            i += 4;
        } else if (n - i >= 5 && !memcmp(p + i, "false", 5)) {
            i += 5;
        } else {
            goto broken;
        }
after:
        /* After a value. The station holding the number is read on until
         * its stationCode (it may come after the number) or its end. */
        if (found && (depth < 4 || code))
            break;
        i = loc_ws(p, i, n);
        if (depth == 0 || i >= n)
            goto broken;
        top = &fr[depth - 1];
        if (p[i] == (top->is_obj ? '}' : ']')) {
            depth--;
            i++;
            goto after;
        }
        if (p[i] != ',')
            goto broken;
        i = loc_ws(p, i + 1, n);
        if (!top->is_obj) {
            top->index++;
            continue;
        }
key:
        if (i >= n || p[i] != '"' || !(j = loc_string(p, i, n, &s, &slen)))
            goto broken;
        fr[depth - 1].key = s;
        fr[depth - 1].klen = slen;
        i = loc_ws(p, j, n);
        if (i >= n || p[i] != ':')
            goto broken;
        i = loc_ws(p, i + 1, n);
    }
    goto report;
broken:
    if (!found)
        return 0;
report:
    snprintf(shown, sizeof(shown), "%.*s%s", (int)(toklen > 30 ? 27 : toklen), tok,
             toklen > 30 ? "..." : "");
    const char *why = integer ? "does not fit in 64 bits" : "is beyond the range of a double";
    if (in_station) {
        if (code)
            snprintf(label, sizeof(label), "station #%zu (stationCode %.*s)", station,
                     (int)(codelen > LOC_SHOWN ? LOC_SHOWN : codelen), code);
        else
            snprintf(label, sizeof(label), "station #%zu", station);
        snprintf(errstr, errstr_size, "wrong shape: %s: %s is out of range (%s %s)", label,
                 path, shown, why);
    } else {
        snprintf(errstr, errstr_size, "wrong shape: %s is out of range (%s %s)",
                 path[0] ? path : "the document", shown, why);
    }
    return 1;
}

/*
 * After the parser refused body[0..len) for the reason why: a number it
 * cannot hold where the plugin reads is an error at its place; when the
 * only ones are where nothing reads, the document is parsed again with
 * those numbers 0 (0 with *root set). -1 with errstr otherwise ("not valid
 * JSON: ...", with the parser's reason).
 */
static int parse_refused(struct sj_parser *parser, const char *body, size_t len,
                         enum loc_doc doc, const char *why, struct sj_value *root,
                         char *errstr, size_t errstr_size)
{
    char again[200];
    size_t nzeroed = 0;
    char *q;
    int rc = -1;

    if (!strstr(why, "number"))
        goto invalid;
    if (!(q = malloc(len + SJ_PADDING))) {
        snprintf(errstr, errstr_size, "out of memory for a copy of a %zu-byte document", len);
        return -1;
    }
    memcpy(q, body, len);
    memset(q + len, 0, SJ_PADDING);
    if (number_out_of_range(body, len, doc, q, &nzeroed, errstr, errstr_size)) {
        free(q);
        return -1;
    }
    if (nzeroed > 0 &&
        (rc = sj_parse_padded(parser, q, len, len + SJ_PADDING, root, again, sizeof(again))) != 0)
        why = again;  /* broken otherwise: that is what to say */
    free(q);
    if (rc == 0)
        return 0;
invalid:
    snprintf(errstr, errstr_size, "not valid JSON: %s", why);
    return -1;
}

/* A string holding a plain integer ("35", "-2"): its value. 0, or -1. */
static int str_int64(const char *s, size_t len, int64_t *out)
{
    size_t i = len && s[0] == '-';
    uint64_t v = 0;
    if (i == len || len - i > 19)
        return -1;
    for (size_t k = i; k < len; k++) {
        if (!is_digit(s[k]))
            return -1;
        v = v * 10 + (uint64_t)(s[k] - '0');  /* 19 digits: no overflow */
    }
    if (v > (uint64_t)INT64_MAX + i)
        return -1;
    *out = !i ? (int64_t)v : v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    return 0;
}

/* A string holding a finite number as JSON writes them ("48.86", "2e0"):
 * its value. 0, or -1. */
static int str_double(const char *s, size_t len, double *out)
{
    char buf[64];
    int big = 0;
    if (len == 0 || len >= sizeof(buf) || loc_number(s, 0, len, &big) != len || big)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    *out = strtod(buf, NULL);  /* the grammar is JSON's: no hex, inf or nan */
    return 0;
}

/* An entry in messages: head (its index or id), then its stationCode
 * when it has one. */
static void entry_label(const struct sj_value *st, const char *head, char *buf, size_t size)
{
    struct sj_value v;
    const char *code;
    size_t len;
    if (sj_object_get(st, "stationCode", 11, &v) == 0 && sj_get_string(&v, &code, &len) == 0)
        snprintf(buf, size, "%s (stationCode %.*s)", head,
                 (int)(len > LOC_SHOWN ? LOC_SHOWN : len), code);
    else
        snprintf(buf, size, "%s", head);
}

/* Describes an entry of a station_information table for a log line. */
static void info_label(const struct sj_value *st, int64_t id, char *buf, size_t size)
{
    char head[40];
    snprintf(head, sizeof(head), "station_id %" PRId64, id);
    entry_label(st, head, buf, size);
}

/* Notes a value of station st read from a string (*coerced) or left out
 * (refused), describing the first of each kind in notes. */
static void info_note(struct vs_info_notes *notes, const struct sj_value *st, int64_t id,
                      const char *field, const struct sj_value *v, int coerced,
                      const char *expect)
{
    char label[96], val[48];
    const char *s;
    size_t len;
    int str = sj_type(v) == SJ_STRING && sj_get_string(v, &s, &len) == 0;
    if (str)
        snprintf(val, sizeof(val), "\"%.*s%s\"", (int)(len > 30 ? 27 : len), s,
                 len > 30 ? "..." : "");
    if (coerced) {
        if (notes->coerced++ == 0) {
            info_label(st, id, label, sizeof(label));
            snprintf(notes->first_coerced, sizeof(notes->first_coerced), "%s: %s %s", label,
                     field, val);
        }
    } else if (notes->refused++ == 0) {
        info_label(st, id, label, sizeof(label));
        snprintf(notes->first_refused, sizeof(notes->first_refused),
                 "%s: %s is %s%s%s, expected %s", label, field, json_type_name(sj_type(v)),
                 str ? " " : "", str ? val : "", expect);
    }
}

/* lat or lon that is not a number: a string holding one (0 with *d), or
 * absent or left out (-1). */
static int info_double(struct vs_info_notes *notes, const struct sj_value *st, int64_t id,
                       const char *field, const struct sj_value *v, double *d)
{
    const char *s;
    size_t len;
    enum sj_type t = sj_type(v);
    if (t == SJ_NULL)
        return -1;  /* absent */
    int ok = t == SJ_STRING && sj_get_string(v, &s, &len) == 0 && str_double(s, len, d) == 0;
    info_note(notes, st, id, field, v, ok, "a number");
    return ok ? 0 : -1;
}

int vs_info_parse_notes(struct sj_parser *p, const void *body, size_t len, struct vs_info **out,
                        struct vs_info_notes *notes, char *errstr, size_t errstr_size)
{
    struct sj_value root, stations, st, v;
    struct sj_iter it;
    char why[200];
    size_t n, nslots = 16, names_len = 0, names_cap;
    struct vs_info *info = NULL;

    *out = NULL;
    memset(notes, 0, sizeof(*notes));
    if (sj_parse(p, body, len, &root, why, sizeof(why)) != 0 &&
        parse_refused(p, body, len, LOC_INFO, why, &root, errstr, errstr_size) != 0)
        return -1;
    if (find_stations(&root, &stations, errstr, errstr_size) != 0)
        return -1;
    n = sj_count(&stations);
    while (nslots < 2 * n)
        nslots *= 2;
    names_cap = 32 * n + 64;
    info = calloc(1, sizeof(*info));
    if (!info || !(info->slots = calloc(nslots, sizeof(*info->slots))) ||
        !(info->names = malloc(names_cap)))
        goto nomem;
    info->mask = nslots - 1;

    sj_array_iter(&stations, &it);
    while (sj_array_next(&it, &st)) {
        int64_t id;
        const char *s;
        size_t slen;
        double d;

        if (sj_object_get(&st, "station_id", 10, &v) != 0 || sj_get_int64(&v, &id) != 0) {
            notes->skipped++;
            continue;
        }
        size_t k = id_hash(id) & info->mask;
        while ((info->slots[k].flags & INFO_USED) && info->slots[k].id != id)
            k = (k + 1) & info->mask;
        struct vs_info_entry *e = &info->slots[k];
        if (e->flags & INFO_USED) {
            notes->skipped++;  /* a duplicate station_id: the first one stays */
            continue;
        }
        e->id = id;
        e->flags = INFO_USED;
        info->count++;
        /* A field of another type is left out, and said so (notes); a
         * number in a string is read as that number: never silently null. */
        if (sj_object_get(&st, "name", 4, &v) == 0) {
            if (sj_get_string(&v, &s, &slen) != 0) {
                if (sj_type(&v) != SJ_NULL)
                    info_note(notes, &st, id, "name", &v, 0, "a string");
            } else if (slen <= UINT32_MAX && names_len + slen <= UINT32_MAX) {
                if (names_len + slen > names_cap) {
                    size_t ncap = names_cap * 2 + slen;
                    char *nn = realloc(info->names, ncap);
                    if (!nn)
                        goto nomem;
                    info->names = nn;
                    names_cap = ncap;
                }
                memcpy(info->names + names_len, s, slen);
                e->name_off = (uint32_t)names_len;
                e->name_len = (uint32_t)slen;
                names_len += slen;
                e->flags |= INFO_NAME;
            }
        }
        if (sj_object_get(&st, "lat", 3, &v) == 0 &&
            (sj_get_double(&v, &d) == 0 || info_double(notes, &st, id, "lat", &v, &d) == 0)) {
            e->lat = d;
            e->flags |= INFO_LAT;
        }
        if (sj_object_get(&st, "lon", 3, &v) == 0 &&
            (sj_get_double(&v, &d) == 0 || info_double(notes, &st, id, "lon", &v, &d) == 0)) {
            e->lon = d;
            e->flags |= INFO_LON;
        }
        if (sj_object_get(&st, "capacity", 8, &v) == 0) {
            if (sj_get_int64(&v, &e->capacity) == 0) {
                e->flags |= INFO_CAP;
            } else if (sj_type(&v) != SJ_NULL) {
                int ok = sj_type(&v) == SJ_STRING && sj_get_string(&v, &s, &slen) == 0 &&
                         str_int64(s, slen, &e->capacity) == 0;
                info_note(notes, &st, id, "capacity", &v, ok, "an integer");
                if (ok)
                    e->flags |= INFO_CAP;
            }
        }
    }
    *out = info;
    return 0;

nomem:
    vs_info_free(info);
    snprintf(errstr, errstr_size, "out of memory");
    return -1;
}

int vs_info_parse(struct sj_parser *p, const void *body, size_t len, struct vs_info **out,
                  size_t *skipped, char *errstr, size_t errstr_size)
{
    struct vs_info_notes notes;
    int rc = vs_info_parse_notes(p, body, len, out, &notes, errstr, errstr_size);
    *skipped = notes.skipped;
    return rc;
}

int64_t *vs_info_ids(const struct vs_info *info, size_t *n)
{
    int64_t *ids = malloc((info->count ? info->count : 1) * sizeof(*ids));
    *n = 0;
    if (!ids)
        return NULL;
    for (size_t k = 0; k <= info->mask; k++)
        if (info->slots[k].flags & INFO_USED)
            ids[(*n)++] = info->slots[k].id;
    return ids;
}

size_t vs_info_lacking(const struct vs_info *info, const int64_t *ids, size_t n)
{
    size_t lacking = 0;
    for (size_t i = 0; i < n; i++)
        lacking += info_find(info, ids[i]) == NULL;
    return lacking;
}

#define INFO_FIELDS (INFO_NAME | INFO_LAT | INFO_LON | INFO_CAP)

/* Entries x of table a and y of table b (either may be NULL) give the same
 * values for the fields of mask: the same present, with the same values. */
static int entry_same(const struct vs_info *a, const struct vs_info_entry *x,
                      const struct vs_info *b, const struct vs_info_entry *y, unsigned mask)
{
    unsigned fx = (x ? x->flags : 0) & mask, fy = (y ? y->flags : 0) & mask;
    if (fx != fy)
        return 0;
    return (!(fx & INFO_NAME) || (x->name_len == y->name_len &&
                                  !memcmp(a->names + x->name_off, b->names + y->name_off,
                                          x->name_len))) &&
           (!(fx & INFO_LAT) || x->lat == y->lat) && (!(fx & INFO_LON) || x->lon == y->lon) &&
           (!(fx & INFO_CAP) || x->capacity == y->capacity);
}

int vs_info_same(const struct vs_info *a, const struct vs_info *b)
{
    if (vs_info_count(a) != vs_info_count(b))
        return 0;
    for (size_t k = 0; a && k <= a->mask; k++) {
        const struct vs_info_entry *x = &a->slots[k];
        if ((x->flags & INFO_USED) &&
            !entry_same(a, x, b, info_find(b, x->id), INFO_FIELDS))
            return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* The feed                                                                  */
/* ------------------------------------------------------------------------ */

struct code_slot {
    const char *code;   /* host-owned config value; NULL = empty slot */
    size_t len;
    int seen;           /* in the last built snapshot */
    int reported;       /* already reported missing */
};

struct extra {
    char *name;
    size_t len;
    enum spoke_type type;   /* INT, DOUBLE, STRING or BOOL */
    int index;              /* in the schema, -1 until the schema is rebuilt */
    int dropped;            /* conflicting types: leaves at the next rebuild */
};

struct shape {
    char keys[VS_SHAPE_KEYS];   /* "k1\0k2\0...": the item's keys in order */
    size_t klen;
    struct spoke_schema *schema;
};

/* A selected station's values, as checked (what its row and its part of
 * the digest are made of). Strings point into the parsed document. Only
 * fields whose bit is set in `present` hold a value; `seen` makes a
 * duplicate key's first value win. */
struct station {
    uint32_t seen, present;
    uint32_t item0, nitems;     /* num_bikes_available_types: f->items[item0 ..] */
    uint32_t x0, nx;            /* extras, ascending: f->xvals[x0 ..] */
    size_t slen[2];             /* stationCode, name */
    const struct vs_info_entry *info;   /* the joined station_information, or NULL */
    union {
        int64_t i;              /* K_INT, K_FLAG */
        double d;               /* K_DOUBLE */
        const char *s;          /* K_STRING: bytes, slen[SLEN(fid)] long */
    } u[F_KNOWN];
};
#define SLEN(fid) ((fid) == F_NAME)

/* One element of a num_bikes_available_types list. */
struct vs_item {
    int32_t shape;      /* in f->shapes; ITEM_NULL: a null element; ITEM_UNCACHED:
                           a shape the cache had no room for (f->xvals[v0]) */
    uint16_t n;         /* values, in key order: f->ivals[v0 ..] */
    uint16_t nulls;     /* bit m: the m-th value is null */
    uint32_t v0;
};
#define ITEM_NULL     (-2)
#define ITEM_UNCACHED (-1)

/* A value kept as a document value: an extra field (j: its index in
 * f->extras), or an item of an uncached shape. */
struct xval {
    uint32_t j;
    struct sj_value v;
};

/* What reading one station needs besides its values: the extras seen, and
 * where its num_bikes_available_types is. */
struct scan {
    uint64_t xseen, xpresent;
    struct sj_value types;
    struct sj_value xv[VS_MAX_EXTRAS];
};

struct vs_feed {
    const struct spoke_host_api *api;
    struct spoke_instance *inst;
    struct sj_parser *parser;   /* NULL after vs_feed_trim until the next parse */
    struct sj_usage usage;      /* what the last parse before a trim used */
    size_t max_bytes;
    struct sj_value stations;
    int parsed;
    int64_t last_updated;
    int with_info;

    struct code_slot *codes;    /* open addressing; NULL when every station is kept */
    size_t codes_mask;

    struct spoke_schema *schema;
    int idx[F_KNOWN];           /* schema index of each known field, -1 = not in it */
    struct extra extras[VS_MAX_EXTRAS];
    size_t nextras;
    int schema_dirty;           /* the extras changed: rebuild, then build again */
    char *ignored[VS_MAX_IGNORED];
    size_t ignored_len[VS_MAX_IGNORED];  /* a name may hold NUL bytes */
    size_t nignored;
    struct shape shapes[VS_MAX_SHAPES];
    size_t nshapes;

    /* The checked snapshot: the batch, and what its rows are built from
     * (vs_feed_check keeps each selected station's values, so vs_feed_row
     * never reads the document again). Cleared with the batch. */
    struct vs_batch batch;
    size_t batch_cap;
    struct station *sta;        /* batch_cap: the selected stations' values */
    struct vs_item *items;      /* their num_bikes_available_types elements */
    size_t nitems, items_cap;
    int64_t *ivals;             /* the items' values */
    size_t nivals, ivals_cap;
    struct xval *xvals;         /* extras' values, and items of an uncached shape */
    size_t nxvals, xvals_cap;
    const struct vs_info *checked_info;
};

static size_t code_hash(const char *s, size_t len)
{
    return (size_t)fmix64(mix_bytes(0, s, len));
}

static struct code_slot *code_find(struct vs_feed *f, const char *s, size_t len)
{
    size_t k = code_hash(s, len) & f->codes_mask;
    for (;;) {
        struct code_slot *c = &f->codes[k];
        if (!c->code)
            return NULL;
        if (c->len == len && memcmp(c->code, s, len) == 0)
            return c;
        k = (k + 1) & f->codes_mask;
    }
}

static int codes_init(struct vs_feed *f, const char *const *codes, size_t n)
{
    size_t nslots = 8;
    if (n == 0)
        return 0;
    while (nslots < 2 * n)
        nslots *= 2;
    if (!(f->codes = calloc(nslots, sizeof(*f->codes))))
        return -1;
    f->codes_mask = nslots - 1;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(codes[i]);
        if (code_find(f, codes[i], len))
            continue;  /* listed twice */
        size_t k = code_hash(codes[i], len) & f->codes_mask;
        while (f->codes[k].code)
            k = (k + 1) & f->codes_mask;
        f->codes[k].code = codes[i];
        f->codes[k].len = len;
    }
    return 0;
}

static void shapes_free(struct vs_feed *f)
{
    for (size_t i = 0; i < f->nshapes; i++)
        f->api->schema_unref(f->shapes[i].schema);
    f->nshapes = 0;
}

static void ignore_field(struct vs_feed *f, const char *k, size_t len, const char *why);
static int is_ignored(const struct vs_feed *f, const char *k, size_t len);

/* (Re)builds the station schema: known fields, then the extras not
 * dropped. A dropped one is forgotten here when is_ignored keeps it out;
 * when the list of ignored names was full, it stays, dropped, in its
 * slot: forgotten, it would be carried again by the next pass, dropped
 * again, and the check would never settle (every snapshot refused). */
static int schema_build(struct vs_feed *f)
{
    const struct spoke_host_api *api = f->api;
    struct spoke_schema *s;
    size_t keep = 0;

    for (size_t j = 0; j < f->nextras; j++) {
        if (f->extras[j].dropped && is_ignored(f, f->extras[j].name, f->extras[j].len))
            free(f->extras[j].name);
        else
            f->extras[keep++] = f->extras[j];
    }
    f->nextras = keep;
    for (size_t j = 0; j < f->nextras; j++)
        f->extras[j].index = -1;
    if (!(s = api->schema_new()))
        return -1;
    for (int i = 0; i < F_KNOWN; i++) {
        int idx = -1;
        if (i < F_INFO_FIRST || f->with_info) {
            idx = api->schema_add(s, known[i].name, known[i].type);
            if (idx < 0)
                goto fail;
        }
        f->idx[i] = idx;
    }
    for (size_t j = 0; j < f->nextras; j++) {
        if (f->extras[j].dropped)
            continue;
        int idx = api->schema_add(s, f->extras[j].name, f->extras[j].type);
        if (idx == SPOKE_ERR_NOMEM)
            goto fail;
        if (idx < 0) {
            /* take_extra keeps out the names the host refuses; should one
             * get through, it is not carried: an extra never fails a
             * snapshot. */
            f->extras[j].dropped = 1;
            ignore_field(f, f->extras[j].name, f->extras[j].len, api->strerror(idx));
            continue;
        }
        f->extras[j].index = idx;
    }
    if (f->schema)
        api->schema_unref(f->schema);
    f->schema = s;
    f->schema_dirty = 0;
    return 0;
fail:
    for (size_t j = 0; j < f->nextras; j++)
        f->extras[j].index = -1;
    api->schema_unref(s);
    return -1;
}

struct vs_feed *vs_feed_new(const struct spoke_host_api *api, struct spoke_instance *inst,
                            const struct vs_feed_opts *o, size_t max_bytes,
                            char *errstr, size_t errstr_size)
{
    struct vs_feed *f = calloc(1, sizeof(*f));
    if (!f)
        goto nomem;
    f->api = api;
    f->inst = inst;
    f->with_info = o->with_info;
    f->max_bytes = max_bytes;
    if (codes_init(f, o->codes, o->ncodes) != 0 || schema_build(f) != 0)
        goto nomem;
    return f;
nomem:
    vs_feed_free(f);
    snprintf(errstr, errstr_size, "out of memory");
    return NULL;
}

void vs_feed_batch_clear(struct vs_feed *f)
{
    f->batch.n = 0;
    f->nitems = f->nivals = f->nxvals = 0;
}

static void batch_release(struct vs_feed *f)
{
    struct vs_batch *b = &f->batch;
    free(b->keys);
    free(b->klens);
    free(b->ts_ms);
    free(f->sta);
    free(f->items);
    free(f->ivals);
    free(f->xvals);
    b->keys = NULL;
    b->klens = NULL;
    b->ts_ms = NULL;
    f->sta = NULL;
    f->items = NULL;
    f->ivals = NULL;
    f->xvals = NULL;
    b->n = 0;
    f->batch_cap = 0;
    f->nitems = f->items_cap = 0;
    f->nivals = f->ivals_cap = 0;
    f->nxvals = f->xvals_cap = 0;
}

void vs_feed_trim(struct vs_feed *f)
{
    batch_release(f);
    if (f->parser) {
        struct sj_usage u;
        sj_parser_usage(f->parser, &u);
        if (u.doc)  /* not after a failed parse: keep the last good one's */
            f->usage = u;
    }
    sj_parser_free(f->parser);
    f->parser = NULL;
    f->parsed = 0;
}

/* The feed's parser, made when there is none (after a trim); NULL on
 * out-of-memory. GBFS nests at most four levels; 64 leaves room and still
 * refuses a pathological document before it costs anything. */
static struct sj_parser *feed_parser(struct vs_feed *f)
{
    if (!f->parser)
        f->parser = sj_parser_new(f->max_bytes, 64);
    return f->parser;
}

size_t vs_feed_warm(struct vs_feed *f)
{
    if (!f->usage.doc || !feed_parser(f) || sj_parser_warm(f->parser, &f->usage) != 0)
        return 0;
    return f->usage.structurals + f->usage.tape + f->usage.strings;
}

void vs_feed_free(struct vs_feed *f)
{
    if (!f)
        return;
    batch_release(f);
    shapes_free(f);
    if (f->schema)
        f->api->schema_unref(f->schema);
    for (size_t j = 0; j < f->nextras; j++)
        free(f->extras[j].name);
    for (size_t j = 0; j < f->nignored; j++)
        free(f->ignored[j]);
    free(f->codes);
    sj_parser_free(f->parser);
    free(f);
}

int vs_feed_parse(struct vs_feed *f, const void *body, size_t len, struct vs_header *hdr,
                  char *errstr, size_t errstr_size)
{
    return vs_feed_parse_padded(f, body, len, len, hdr, errstr, errstr_size);
}

int vs_feed_parse_padded(struct vs_feed *f, const void *body, size_t len, size_t cap,
                         struct vs_header *hdr, char *errstr, size_t errstr_size)
{
    struct sj_value root, v;
    char why[200];
    const char *which = "lastUpdatedOther";

    vs_feed_batch_clear(f);
    f->parsed = 0;
    if (!feed_parser(f)) {
        snprintf(errstr, errstr_size, "out of memory for the JSON parser");
        return -1;
    }
    /* A number too large for the parser is a value out of range, said with
     * its place, not a broken document; or nothing at all where nothing
     * reads it. */
    if (sj_parse_padded(f->parser, body, len, cap, &root, why, sizeof(why)) != 0 &&
        parse_refused(f->parser, body, len, f->with_info ? LOC_STATUS_INFO : LOC_STATUS, why,
                      &root, errstr, errstr_size) != 0)
        return -1;
    if (find_stations(&root, &f->stations, errstr, errstr_size) != 0)
        return -1;
    /* Vélib's feeds carry lastUpdatedOther; standard GBFS says last_updated. */
    if (sj_object_get(&root, "lastUpdatedOther", 16, &v) != 0) {
        which = "last_updated";
        if (sj_object_get(&root, "last_updated", 12, &v) != 0) {
            snprintf(errstr, errstr_size, "wrong shape: no lastUpdatedOther (or last_updated)");
            return -1;
        }
    }
    if (sj_get_int64(&v, &hdr->last_updated) != 0 || hdr->last_updated < 0 ||
        hdr->last_updated > VS_MAX_EPOCH_S) {
        snprintf(errstr, errstr_size, "wrong shape: %s is %s, expected epoch seconds", which,
                 sj_type(&v) == SJ_INT ? "out of range" : json_type_name(sj_type(&v)));
        return -1;
    }
    /* ttl only schedules the next poll: one that is not a non-negative
     * integer counts as absent rather than failing the snapshot. */
    hdr->ttl = -1;
    if (sj_object_get(&root, "ttl", 3, &v) == 0 && sj_get_int64(&v, &hdr->ttl) == 0 &&
        hdr->ttl < 0)
        hdr->ttl = -1;
    hdr->nstations = sj_count(&f->stations);
    f->last_updated = hdr->last_updated;
    f->parsed = 1;
    return 0;
}

static int is_ignored(const struct vs_feed *f, const char *k, size_t len)
{
    for (size_t j = 0; j < f->nignored; j++)
        if (f->ignored_len[j] == len && memcmp(f->ignored[j], k, len) == 0)
            return 1;
    return 0;
}

/* Remembers a field that is not carried and says so once. */
static void ignore_field(struct vs_feed *f, const char *k, size_t len, const char *why)
{
    f->api->log(f->inst, SPOKE_LOG_INFO, "station field '%.*s' is not carried: %s",
                (int)(len > 100 ? 100 : len), k, why);
    if (f->nignored == VS_MAX_IGNORED)
        return;  /* reported again if it comes back: harmless */
    char *name = malloc(len + 1);
    if (!name)
        return;
    memcpy(name, k, len);
    name[len] = '\0';
    f->ignored_len[f->nignored] = len;
    f->ignored[f->nignored++] = name;
}

static int find_extra(const struct vs_feed *f, const char *k, size_t len)
{
    for (size_t j = 0; j < f->nextras; j++)
        if (f->extras[j].len == len && memcmp(f->extras[j].name, k, len) == 0)
            return (int)j;
    return -1;
}

static enum spoke_type scalar_type(enum sj_type t)
{
    switch (t) {
    case SJ_INT: return SPOKE_TYPE_INT;
    case SJ_DOUBLE: return SPOKE_TYPE_DOUBLE;
    case SJ_STRING: return SPOKE_TYPE_STRING;
    case SJ_BOOL: return SPOKE_TYPE_BOOL;
    default: return SPOKE_TYPE_NULL;
    }
}

/* An unknown member of a station: carried as an extra field when it is a
 * scalar of a consistent type. Returns nothing: extras never fail a
 * snapshot, at worst they are not carried. */
static void take_extra(struct vs_feed *f, struct scan *sc, const char *k, size_t len,
                       enum sj_type jt, const struct sj_value *v)
{
    int j = find_extra(f, k, len);

    if (j >= 0) {
        struct extra *x = &f->extras[j];
        uint64_t bit = 1ull << j;
        if ((sc->xseen & bit) || x->dropped)
            return;
        sc->xseen |= bit;
        if (jt == SJ_NULL)
            return;
        enum spoke_type t = scalar_type(jt);
        if (t == x->type || (x->type == SPOKE_TYPE_DOUBLE && t == SPOKE_TYPE_INT)) {
            sc->xpresent |= bit;
            sc->xv[j] = *v;
        } else if (x->type == SPOKE_TYPE_INT && t == SPOKE_TYPE_DOUBLE) {
            x->type = SPOKE_TYPE_DOUBLE;  /* integers and fractions: a double */
            f->schema_dirty = 1;
        } else {
            x->dropped = 1;
            f->schema_dirty = 1;
            ignore_field(f, k, len, "its values have different types");
        }
        return;
    }
    if (jt == SJ_NULL || is_ignored(f, k, len))
        return;
    if (len == 0 || memchr(k, '\0', len)) {
        /* A row's field names are C strings: "a\u0000b" would become "a",
         * perhaps the name of another field. */
        ignore_field(f, k, len, len ? "its name holds a NUL byte (\\u0000)" : "its name is empty");
        return;
    }
    if (scalar_type(jt) == SPOKE_TYPE_NULL) {
        ignore_field(f, k, len, jt == SJ_UINT ? "an integer above 2^63"
                                              : "only scalar extra fields are carried");
        return;
    }
    if (f->nextras == VS_MAX_EXTRAS) {
        ignore_field(f, k, len, "too many extra fields (at most 32 are carried)");
        return;
    }
    struct extra *x = &f->extras[f->nextras];
    if (!(x->name = malloc(len + 1)))
        return;
    memcpy(x->name, k, len);
    x->name[len] = '\0';
    x->len = len;
    x->type = scalar_type(jt);
    x->index = -1;
    x->dropped = 0;
    f->nextras++;
    f->schema_dirty = 1;
    f->api->log(f->inst, SPOKE_LOG_INFO, "carrying the extra station field '%s' (%s)",
                x->name, x->type == SPOKE_TYPE_INT ? "integer" :
                x->type == SPOKE_TYPE_DOUBLE ? "double" :
                x->type == SPOKE_TYPE_STRING ? "string" : "boolean");
}

/* Members of one num_bikes_available_types item, read in one go. */
#define VS_ITEM_MAX 16

struct item {
    size_t n;
    const char *k[VS_ITEM_MAX];
    size_t klen[VS_ITEM_MAX];
    int64_t v[VS_ITEM_MAX];
    int null[VS_ITEM_MAX];
    char keys[VS_SHAPE_KEYS];   /* "k1\0k2\0...", the shape cache key */
    size_t keys_len;
};

/* Reads and checks an item: an object of at most VS_ITEM_MAX distinct,
 * non-empty keys without NUL bytes, whose values are integers or null.
 * 0, or -1 with *why. */
static int read_item(const struct sj_value *el, struct item *it, char *why, size_t whysize)
{
    struct sj_iter oit;
    struct sj_member mem[VS_ITEM_MAX + 1];  /* one more: "too many" is seen */
    size_t nmem;

    it->n = 0;
    it->keys_len = 0;
    sj_object_iter(el, &oit);
    nmem = sj_next_n(&oit, mem, VS_ITEM_MAX + 1);
    for (size_t x = 0; x < nmem; x++) {
        const char *k = mem[x].key;
        size_t klen = mem[x].klen;
        int shown = (int)(klen > 40 ? 40 : klen);
        size_t m = it->n;
        if (m == VS_ITEM_MAX) {
            snprintf(why, whysize, "has more than %d keys", VS_ITEM_MAX);
            return -1;
        }
        if (mem[x].type == SJ_INT) {
            it->v[m] = mem[x].as.i;
            it->null[m] = 0;
        } else if (mem[x].type == SJ_NULL) {
            it->null[m] = 1;
        } else {
            snprintf(why, whysize, ".%.*s is %s, expected an integer", shown, k,
                     json_type_name(mem[x].type));
            return -1;
        }
        if (klen == 0 || it->keys_len + klen + 1 > sizeof(it->keys) || memchr(k, '\0', klen)) {
            snprintf(why, whysize, "has an empty, overlong or NUL-holding key");
            return -1;
        }
        for (size_t d = 0; d < m; d++)
            if (it->klen[d] == klen && memcmp(it->k[d], k, klen) == 0) {
                snprintf(why, whysize, "has the key %.*s twice", shown, k);
                return -1;
            }
        it->k[m] = k;
        it->klen[m] = klen;
        memcpy(it->keys + it->keys_len, k, klen);
        it->keys[it->keys_len + klen] = '\0';
        it->keys_len += klen + 1;
        it->n++;
    }
    return 0;
}

/* The index of the cached shape of an item with these keys, or -1. */
static int shape_find(const struct vs_feed *f, const struct item *it)
{
    for (size_t i = 0; i < f->nshapes; i++)
        if (f->shapes[i].klen == it->keys_len &&
            memcmp(f->shapes[i].keys, it->keys, it->keys_len) == 0)
            return (int)i;
    return -1;
}

/* The schema of an item with these keys (one INT field per key, in order),
 * cached by shape. *shape: its index in the cache, or -1 when it could not
 * be cached. Returns a new reference, NULL on out-of-memory. */
static struct spoke_schema *item_schema(struct vs_feed *f, const struct item *it, int *shape)
{
    const struct spoke_host_api *api = f->api;
    struct spoke_schema *s;

    if ((*shape = shape_find(f, it)) >= 0) {
        api->schema_ref(f->shapes[*shape].schema);
        return f->shapes[*shape].schema;
    }
    if (!(s = api->schema_new()))
        return NULL;
    for (size_t m = 0, off = 0; m < it->n; off += it->klen[m] + 1, m++)
        if (api->schema_add(s, it->keys + off, SPOKE_TYPE_INT) < 0) {
            api->schema_unref(s);
            return NULL;
        }
    if (f->nshapes < VS_MAX_SHAPES) {
        *shape = (int)f->nshapes;
        struct shape *sh = &f->shapes[f->nshapes++];
        memcpy(sh->keys, it->keys, it->keys_len);
        sh->klen = it->keys_len;
        sh->schema = s;
        api->schema_ref(s);  /* one for the cache, one for the caller */
    }
    return s;
}

/* Makes room for need elements of size bytes in *p (capacity *cap). Kept
 * below 2^32 elements: stations and items refer to them by 32-bit index. */
static int pool_reserve(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    if (c > UINT32_MAX || c > SIZE_MAX / size)
        return -1;
    void *np = realloc(*p, c * size);
    if (!np)
        return -1;
    *p = np;
    *cap = c;
    return 0;
}

#define VS_CHUNK 16     /* elements read per call into the shim */

/*
 * Walks a num_bikes_available_types array: every item is checked. When h is
 * not NULL the content is mixed into *h; when keep is not NULL (then h is
 * too) the elements are kept for the row (keep->item0, keep->nitems).
 * Returns 0; -1 with *bad_i and *why for an invalid item; -2 on
 * out-of-memory.
 */
static int types_check(struct vs_feed *f, const struct sj_value *arr, uint64_t *h,
                       struct station *keep, size_t *bad_i, char *why, size_t whysize)
{
    struct sj_iter ait;
    struct sj_member el[VS_CHUNK];
    struct item it;
    size_t i = 0, n;

    assert(!keep || h);
    if (keep) {
        keep->item0 = (uint32_t)f->nitems;
        keep->nitems = 0;
    }
    sj_array_iter(arr, &ait);
    while ((n = sj_next_n(&ait, el, VS_CHUNK)) > 0) {
        for (size_t e = 0; e < n; e++, i++) {
            enum sj_type t = el[e].type;
            struct vs_item *ki = NULL;
            if (keep) {
                if (pool_reserve((void **)&f->items, &f->items_cap, f->nitems + 1,
                                 sizeof(*f->items)) != 0)
                    return -2;
                ki = &f->items[f->nitems++];
                keep->nitems++;
            }
            if (t == SJ_NULL) {
                if (h)
                    *h = mix64(*h, 0x6e756c6cu);
                if (ki)
                    *ki = (struct vs_item){ .shape = ITEM_NULL };
                continue;
            }
            if (t != SJ_OBJECT) {
                *bad_i = i;
                snprintf(why, whysize, "is %s, expected an object", json_type_name(t));
                return -1;
            }
            if (read_item(&el[e].v, &it, why, whysize) != 0) {
                *bad_i = i;
                return -1;
            }
            if (!h)
                continue;
            /* A cached shape stands for its keys (the cache only grows, and
             * is filled here, so the index of a shape never changes). */
            int shape = shape_find(f, &it);
            if (shape < 0) {
                struct spoke_schema *s = item_schema(f, &it, &shape);
                if (!s)
                    return -2;
                f->api->schema_unref(s);
            }
            *h = shape >= 0 ? mix64(*h, (uint64_t)shape) : mix_bytes(*h, it.keys, it.keys_len);
            for (size_t m = 0; m < it.n; m++)
                *h = mix64(*h, it.null[m] ? 0x6e756c6cu : (uint64_t)it.v[m] + 0x100000000ull);
            if (!ki)
                continue;
            ki->n = (uint16_t)it.n;
            ki->nulls = 0;
            if (shape < 0) {
                /* No room in the cache: the row reads the item again. */
                if (pool_reserve((void **)&f->xvals, &f->xvals_cap, f->nxvals + 1,
                                 sizeof(*f->xvals)) != 0)
                    return -2;
                ki->shape = ITEM_UNCACHED;
                ki->v0 = (uint32_t)f->nxvals;
                f->xvals[f->nxvals++] = (struct xval){ .j = UINT32_MAX, .v = el[e].v };
                continue;
            }
            if (pool_reserve((void **)&f->ivals, &f->ivals_cap, f->nivals + it.n,
                             sizeof(*f->ivals)) != 0)
                return -2;
            ki->shape = shape;
            ki->v0 = (uint32_t)f->nivals;
            for (size_t m = 0; m < it.n; m++) {
                f->ivals[f->nivals++] = it.null[m] ? 0 : it.v[m];
                ki->nulls |= (uint16_t)(it.null[m] ? 1u << m : 0);
            }
        }
    }
    return 0;
}

/* The row of an item whose shape is not cached, read again from the
 * document. NULL on out-of-memory. */
static struct spoke_row *uncached_item_row(struct vs_feed *f, const struct sj_value *el)
{
    const struct spoke_host_api *api = f->api;
    struct item it;
    char why[96];
    int shape;

    if (read_item(el, &it, why, sizeof(why)) != 0)
        return NULL;  /* checked by vs_feed_check: cannot happen */
    struct spoke_schema *s = item_schema(f, &it, &shape);
    struct spoke_row *row = s ? api->row_new(s) : NULL;
    if (s)
        api->schema_unref(s);  /* the row holds its own reference */
    for (size_t m = 0; row && m < it.n; m++) {
        if (!it.null[m] && api->row_set_int(row, m, it.v[m]) != SPOKE_OK) {
            api->row_free(row);
            row = NULL;
        }
    }
    return row;
}

/* The num_bikes_available_types list of a kept station: a new row, or NULL
 * on out-of-memory. */
static struct spoke_row *types_row(struct vs_feed *f, const struct station *s)
{
    const struct spoke_host_api *api = f->api;
    struct spoke_row *list = api->row_new_list(s->nitems);

    if (!list)
        return NULL;
    for (uint32_t k = 0; k < s->nitems; k++) {
        const struct vs_item *it = &f->items[s->item0 + k];
        struct spoke_row *row;
        if (it->shape == ITEM_NULL)
            continue;
        if (it->shape == ITEM_UNCACHED) {
            row = uncached_item_row(f, &f->xvals[it->v0].v);
        } else {
            const int64_t *v = f->ivals + it->v0;
            row = api->row_new(f->shapes[it->shape].schema);
            for (size_t m = 0; row && m < it->n; m++) {
                if (!(it->nulls & (1u << m)) && api->row_set_int(row, m, v[m]) != SPOKE_OK) {
                    api->row_free(row);
                    row = NULL;
                }
            }
        }
        if (!row || api->row_set_row(list, k, row) != SPOKE_OK) {
            api->row_free(list);
            return NULL;
        }
    }
    return list;
}

/* Reads one station's members into s (and sc), type-checking the known
 * fields; unknown members may become extras (take_extra). Returns -1 with
 * *bad_field / *bad_type set at the first wrong type. */
static int read_station(struct vs_feed *f, const struct sj_value *st, struct station *s,
                        struct scan *sc, int *bad_field, enum sj_type *bad_type)
{
    struct sj_iter it;
    struct sj_member mem[VS_CHUNK];
    size_t n;

    s->seen = s->present = 0;
    sc->xseen = sc->xpresent = 0;
    sj_object_iter(st, &it);
    while ((n = sj_next_n(&it, mem, VS_CHUNK)) > 0) {
        for (const struct sj_member *v = mem; v < mem + n; v++) {
            int fid = known_field(v->key, v->klen);
            if (fid >= F_INFO_FIRST && !f->with_info)
                fid = -1;  /* without station_information these are plain extras */
            if (fid < 0) {
                take_extra(f, sc, v->key, v->klen, v->type, &v->v);
                continue;
            }
            uint32_t bit = 1u << fid;
            if (s->seen & bit)
                continue;  /* duplicate key: the first one wins */
            s->seen |= bit;
            switch (known[fid].kind) {
            case K_INT:
                if (v->type == SJ_INT) {
                    s->u[fid].i = v->as.i;
                    s->present |= bit;
                    continue;
                }
                break;
            case K_FLAG:
                if (v->type == SJ_INT || v->type == SJ_BOOL) {
                    /* GBFS 2 writes booleans; the row keeps 0/1 */
                    s->u[fid].i = v->type == SJ_INT ? v->as.i : v->as.b;
                    s->present |= bit;
                    continue;
                }
                break;
            case K_STRING:
                if (v->type == SJ_STRING) {
                    s->u[fid].s = v->as.s.p;
                    s->slen[SLEN(fid)] = v->as.s.len;
                    s->present |= bit;
                    continue;
                }
                break;
            case K_DOUBLE:
                if (v->type == SJ_DOUBLE || v->type == SJ_INT || v->type == SJ_UINT) {
                    s->u[fid].d = v->type == SJ_DOUBLE ? v->as.d :
                                  v->type == SJ_INT ? (double)v->as.i : (double)v->as.u;
                    s->present |= bit;
                    continue;
                }
                break;
            case K_TYPES:
                if (v->type == SJ_ARRAY) {
                    sc->types = v->v;
                    s->present |= bit;
                    continue;
                }
                break;
            }
            if (v->type != SJ_NULL) {
                *bad_field = fid;
                *bad_type = v->type;
                return -1;
            }
        }
    }
    return 0;
}

/* The values of a kept station's row, after its stationCode and
 * num_bikes_available_types: mixed into *h when h is not NULL, set in row
 * when row is not NULL (then list, its num_bikes_available_types row or
 * NULL when absent, is always taken). Returns SPOKE_OK or the first
 * setter's error. One walk for both, so the digest and the row always
 * cover the same values. */
static int station_fields(struct vs_feed *f, const struct station *s, struct spoke_row *row,
                          struct spoke_row *list, uint64_t *h)
{
    const struct spoke_host_api *api = f->api;
    const struct vs_info_entry *e = s->info;
    const struct vs_info *info = f->checked_info;
    int rc = SPOKE_OK;

    /* The digest is mixed only when asked for: building the rows skips it. */
#define MIX(expr) do { if (h) *h = (expr); } while (0)
    MIX(mix64(*h, s->present));
    for (int fid = 0; fid < F_KNOWN && rc == SPOKE_OK; fid++) {
        if (!(s->present & (1u << fid)) || f->idx[fid] < 0)
            continue;
        size_t i = (size_t)f->idx[fid];
        switch (known[fid].kind) {
        case K_INT:
        case K_FLAG:
            MIX(mix64(*h, (uint64_t)s->u[fid].i));
            if (row)
                rc = api->row_set_int(row, i, s->u[fid].i);
            break;
        case K_STRING:
            MIX(mix_bytes(*h, s->u[fid].s, s->slen[SLEN(fid)]));
            if (row)
                rc = api->row_set_string(row, i, s->u[fid].s, s->slen[SLEN(fid)]);
            break;
        case K_DOUBLE:
            MIX(mix_double(*h, s->u[fid].d));
            if (row)
                rc = api->row_set_double(row, i, s->u[fid].d);
            break;
        case K_TYPES:
            if (row) {
                rc = api->row_set_row(row, i, list);  /* takes list */
                list = NULL;
            }
            break;
        }
    }
    /* station_information fills what the station itself does not say. */
    if (e && rc == SPOKE_OK) {
        MIX(mix64(*h, e->flags));
        if ((e->flags & INFO_NAME) && !(s->present & (1u << F_NAME))) {
            MIX(mix_bytes(*h, info->names + e->name_off, e->name_len));
            if (row)
                rc = api->row_set_string(row, (size_t)f->idx[F_NAME],
                                         info->names + e->name_off, e->name_len);
        }
        if (rc == SPOKE_OK && (e->flags & INFO_LAT) && !(s->present & (1u << F_LAT))) {
            MIX(mix_double(*h, e->lat));
            if (row)
                rc = api->row_set_double(row, (size_t)f->idx[F_LAT], e->lat);
        }
        if (rc == SPOKE_OK && (e->flags & INFO_LON) && !(s->present & (1u << F_LON))) {
            MIX(mix_double(*h, e->lon));
            if (row)
                rc = api->row_set_double(row, (size_t)f->idx[F_LON], e->lon);
        }
        if (rc == SPOKE_OK && (e->flags & INFO_CAP) && !(s->present & (1u << F_CAPACITY))) {
            MIX(mix64(*h, (uint64_t)e->capacity));
            if (row)
                rc = api->row_set_int(row, (size_t)f->idx[F_CAPACITY], e->capacity);
        }
    }
    for (uint32_t k = 0; k < s->nx && rc == SPOKE_OK; k++) {
        const struct xval *xv = &f->xvals[s->x0 + k];
        const struct extra *x = &f->extras[xv->j];
        const struct sj_value *v = &xv->v;
        if (x->index < 0)
            continue;
        MIX(mix64(*h, xv->j));
        switch (x->type) {
        case SPOKE_TYPE_INT: {
            int64_t n = 0;
            sj_get_int64(v, &n);
            MIX(mix64(*h, (uint64_t)n));
            if (row)
                rc = api->row_set_int(row, (size_t)x->index, n);
            break;
        }
        case SPOKE_TYPE_DOUBLE: {
            double d = 0;
            sj_get_double(v, &d);
            MIX(mix_double(*h, d));
            if (row)
                rc = api->row_set_double(row, (size_t)x->index, d);
            break;
        }
        case SPOKE_TYPE_STRING: {
            const char *str = "";
            size_t len = 0;
            sj_get_string(v, &str, &len);
            MIX(mix_bytes(*h, str, len));
            if (row)
                rc = api->row_set_string(row, (size_t)x->index, str, len);
            break;
        }
        default: {
            int b = 0;
            sj_get_bool(v, &b);
            MIX(mix64(*h, (uint64_t)b + 2));
            if (row)
                rc = api->row_set_bool(row, (size_t)x->index, b);
            break;
        }
        }
    }
    if (row)
        api->row_free(list);  /* not taken when a setter failed first */
    return rc;
#undef MIX
}

static int batch_reserve(struct vs_feed *f, size_t n)
{
    struct vs_batch *b = &f->batch;
    if (n <= f->batch_cap)
        return 0;
    size_t cap = f->batch_cap ? f->batch_cap : 64;
    while (cap < n)
        cap *= 2;
    void *p;
    if (!(p = realloc(f->sta, cap * sizeof(*f->sta))))
        return -1;
    f->sta = p;
    if (!(p = realloc(b->keys, cap * sizeof(*b->keys))))
        return -1;
    b->keys = p;
    if (!(p = realloc(b->klens, cap * sizeof(*b->klens))))
        return -1;
    b->klens = p;
    if (!(p = realloc(b->ts_ms, cap * sizeof(*b->ts_ms))))
        return -1;
    b->ts_ms = p;
    f->batch_cap = cap;
    return 0;
}

/* Describes a station in messages: its index, and its code when it has one. */
static void station_label(const struct sj_value *st, size_t i, char *buf, size_t size)
{
    char head[32];
    snprintf(head, sizeof(head), "station #%zu", i);
    entry_label(st, head, buf, size);
}

/* Checks one station (the i-th): validates it, selects it and, when it is
 * selected and the extras are settled, mixes it into *h and keeps its
 * values for the row. 0, or -1 with errstr set. */
static int check_station(struct vs_feed *f, const struct vs_info *info, const struct sj_value *st,
                         size_t i, uint64_t *h, char *errstr, size_t errstr_size)
{
    struct vs_batch *b = &f->batch;
    struct station s;
    struct scan sc;
    char label[96];
    int bad_field = -1;
    enum sj_type bad_type = SJ_NULL;

    if (read_station(f, st, &s, &sc, &bad_field, &bad_type) != 0) {
        station_label(st, i, label, sizeof(label));
        snprintf(errstr, errstr_size, "wrong shape: %s: %s is %s, expected %s", label,
                 known[bad_field].name, json_type_name(bad_type),
                 kind_expect(known[bad_field].kind));
        return -1;
    }
    if (!(s.present & (1u << F_CODE)) || s.slen[SLEN(F_CODE)] == 0) {
        station_label(st, i, label, sizeof(label));
        snprintf(errstr, errstr_size, "wrong shape: %s has no stationCode%s", label,
                 (s.seen & (1u << F_CODE)) ? " (null or empty)" : "");
        return -1;
    }
    const char *code = s.u[F_CODE].s;
    size_t code_len = s.slen[SLEN(F_CODE)];
    int64_t ts_ms = f->last_updated * 1000;
    if (s.present & (1u << F_LAST_REPORTED)) {
        int64_t lr = s.u[F_LAST_REPORTED].i;
        if (lr < 0 || lr > INT64_MAX / 1000) {
            station_label(st, i, label, sizeof(label));
            snprintf(errstr, errstr_size, "wrong shape: %s: last_reported %" PRId64
                     " is not a time in seconds", label, lr);
            return -1;
        }
        ts_ms = lr * 1000;
    }

    int selected = 1;
    if (f->codes) {
        struct code_slot *c = code_find(f, code, code_len);
        selected = c != NULL;
        if (c)
            c->seen = 1;
    }
    int keep = selected && !f->schema_dirty;
    if (keep)
        *h = mix_bytes(*h, code, code_len);
    s.item0 = s.nitems = 0;
    if (s.present & (1u << F_TYPES)) {
        char why[96];
        size_t bi = 0;
        int rc = types_check(f, &sc.types, keep ? h : NULL, keep ? &s : NULL, &bi, why,
                             sizeof(why));
        if (rc == -2)
            goto nomem;
        if (rc != 0) {
            station_label(st, i, label, sizeof(label));
            snprintf(errstr, errstr_size, "wrong shape: %s: num_bikes_available_types[%zu]%s%s",
                     label, bi, why[0] == '.' ? "" : " ", why);
            return -1;
        }
    }
    if (!keep)
        return 0;
    s.x0 = (uint32_t)f->nxvals;
    s.nx = 0;
    if (sc.xpresent) {
        if (pool_reserve((void **)&f->xvals, &f->xvals_cap,
                         f->nxvals + (size_t)__builtin_popcountll(sc.xpresent),
                         sizeof(*f->xvals)) != 0)
            goto nomem;
        for (uint64_t bits = sc.xpresent; bits; bits &= bits - 1) {
            unsigned j = (unsigned)__builtin_ctzll(bits);
            f->xvals[f->nxvals++] = (struct xval){ .j = j, .v = sc.xv[j] };
            s.nx++;
        }
    }
    s.info = f->with_info && info && (s.present & (1u << F_STATION_ID))
                 ? info_find(info, s.u[F_STATION_ID].i) : NULL;
    station_fields(f, &s, NULL, NULL, h);
    f->sta[b->n] = s;
    b->keys[b->n] = code;
    b->klens[b->n] = code_len;
    b->ts_ms[b->n] = ts_ms;
    b->n++;
    return 0;
nomem:
    snprintf(errstr, errstr_size, "out of memory checking the stations");
    return -1;
}

/* One pass over every station: validates each, selects, digests and keeps
 * the selected ones (no more once the extras changed: the caller then
 * rebuilds the schema and runs the pass again, since the digest covers the
 * extras the schema carries). */
static int check_pass(struct vs_feed *f, const struct vs_info *info,
                      char *errstr, size_t errstr_size)
{
    struct sj_iter it;
    struct sj_member el[VS_CHUNK];
    uint64_t h = mix64(0x76656c6962ull, f->with_info);
    size_t i = 0, n;

    if (batch_reserve(f, sj_count(&f->stations)) != 0) {
        snprintf(errstr, errstr_size, "out of memory checking the stations");
        return -1;
    }
    sj_array_iter(&f->stations, &it);
    while ((n = sj_next_n(&it, el, VS_CHUNK)) > 0) {
        for (size_t e = 0; e < n; e++, i++) {
            if (el[e].type != SJ_OBJECT) {
                snprintf(errstr, errstr_size,
                         "wrong shape: data.stations[%zu] is %s, not an object", i,
                         json_type_name(el[e].type));
                return -1;
            }
            if (check_station(f, info, &el[e].v, i, &h, errstr, errstr_size) != 0)
                return -1;
        }
    }
    f->batch.digest = mix64(h, f->batch.n);
    return 0;
}

int vs_feed_check(struct vs_feed *f, const struct vs_info *info, struct vs_batch **out,
                  char *errstr, size_t errstr_size)
{
    assert(f->parsed);
    vs_feed_batch_clear(f);
    f->checked_info = info;
    for (size_t k = 0; f->codes && k <= f->codes_mask; k++)
        f->codes[k].seen = 0;
    /* The second pass runs only when the first found the extra fields
     * changed; the third would mean they changed again on the same data,
     * which take_extra cannot do (each change is one-way). */
    for (int pass = 0; pass < 3; pass++) {
        if (check_pass(f, info, errstr, errstr_size) != 0) {
            vs_feed_batch_clear(f);
            return -1;
        }
        if (!f->schema_dirty) {
            *out = &f->batch;
            return 0;
        }
        vs_feed_batch_clear(f);
        if (schema_build(f) != 0) {
            snprintf(errstr, errstr_size, "out of memory building the station schema");
            return -1;
        }
    }
    snprintf(errstr, errstr_size, "internal error: the station schema does not settle");
    return -1;
}

struct spoke_row *vs_feed_row(struct vs_feed *f, const struct vs_info *info, size_t i)
{
    const struct spoke_host_api *api = f->api;
    const struct station *s = &f->sta[i];
    struct spoke_row *list = NULL, *row;

    assert(f->parsed && i < f->batch.n && info == f->checked_info);
    (void)info;
    /* Built from the values vs_feed_check kept: the document is not read
     * again (but strings still point into it). */
    if ((s->present & (1u << F_TYPES)) && !(list = types_row(f, s)))
        return NULL;
    if (!(row = api->row_new(f->schema))) {
        api->row_free(list);
        return NULL;
    }
    if (station_fields(f, s, row, list, NULL) != SPOKE_OK) {
        api->row_free(row);
        return NULL;
    }
    return row;
}

void vs_feed_missing_codes(struct vs_feed *f, void (*fn)(void *ctx, const char *code),
                           void *ctx)
{
    for (size_t k = 0; f->codes && k <= f->codes_mask; k++) {
        struct code_slot *c = &f->codes[k];
        if (c->code && !c->seen && !c->reported) {
            c->reported = 1;
            fn(ctx, c->code);
        }
    }
}

int vs_feed_joined_changed(const struct vs_feed *f, size_t i, const struct vs_info *old)
{
    const struct station *s = &f->sta[i];
    const struct vs_info_entry *y = NULL;
    unsigned own = 0;

    assert(f->parsed && i < f->batch.n);
    if (!f->with_info)
        return 0;
    if (old && (s->present & (1u << F_STATION_ID)))
        y = info_find(old, s->u[F_STATION_ID].i);
    /* What the station says itself is not joined (station_fields). */
    own |= (s->present & (1u << F_NAME)) ? INFO_NAME : 0;
    own |= (s->present & (1u << F_LAT)) ? INFO_LAT : 0;
    own |= (s->present & (1u << F_LON)) ? INFO_LON : 0;
    own |= (s->present & (1u << F_CAPACITY)) ? INFO_CAP : 0;
    return !entry_same(f->checked_info, s->info, old, y, INFO_FIELDS & ~own);
}
