/*
 * console_sink - prints records for a human, on stdout or stderr.
 *
 * Two formats:
 *  - line:  "<topic> <key or -> <value>" per record, the value as its bytes;
 *  - table: the value read as a typed row, one aligned row per record, with
 *           a header repeated every header.every rows. Column widths start
 *           at the header's and grow with the widest value seen so far.
 * Control characters in printed text are escaped (\n, \t, \x1b ...) so that
 * one record stays one line and a value cannot drive the terminal; so are
 * C1 controls and bytes that are not UTF-8. Table columns are aligned by
 * display width: wide (CJK, emoji) characters take two columns, combining
 * marks none (console_sink_width.h, generated from the Unicode database).
 *
 * Output goes through stdio: put() writes into the stream's buffer and
 * flush() is fflush(), so a closed pipe or a full disk surfaces as an error
 * from flush (or put) instead of being ignored.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <spoke/plugin.h>

/* A range of code points, first..last inclusive. */
struct cs_range {
    uint32_t first, last;
};

#include "console_sink_width.h"

static const char *const cs_formats[] = { "line", "table", NULL };
static const char *const cs_outputs[] = { "stdout", "stderr", NULL };

static const struct spoke_config_field cs_config[] = {
    { .name = "format", .type = SPOKE_CFG_STRING, .default_value = "line",
      .doc = "line: topic, key and value per line; table: the value's fields in aligned columns",
      .allowed = cs_formats },
    { .name = "columns", .type = SPOKE_CFG_LIST,
      .doc = "Table columns, in order; default: the fields of the first row" },
    { .name = "output", .type = SPOKE_CFG_STRING, .default_value = "stdout",
      .doc = "Stream to print to", .allowed = cs_outputs },
    { .name = "header.every", .type = SPOKE_CFG_INT, .default_value = "20",
      .doc = "Repeat the table header every N rows", .min = 1, .max = 100000 },
    { 0 }
};

/* A growable byte buffer. */
struct cs_buf {
    char *p;
    size_t len, cap;
};

/* Column separator in table format. */
#define CS_SEP "  "

struct cs_state {
    const struct spoke_host_api *api;
    struct spoke_instance *inst;
    FILE *out;
    const char *out_name;
    int table;
    int64_t header_every;

    /* Table columns: borrowed from the config, or copies of the first row's
     * field names (then owned != NULL and holds them). known = 0 until set. */
    const char *const *cols;
    char **owned;
    size_t ncols;
    int known;
    size_t *width;           /* display width of each column so far */
    struct cs_buf heads;     /* the column names as printed (escaped) */
    size_t *head_off;        /* each name's text in `heads` */
    size_t *head_len;
    size_t *cell_off;        /* current row: each cell's text in `cells` */
    size_t *cell_len;
    unsigned char *cell_right; /* current row: right-align the cell (numbers) */
    uint64_t rows;           /* table rows printed */

    struct cs_buf line;      /* the text being printed */
    struct cs_buf cells;     /* the current row's cells */
};

static int buf_reserve(struct cs_buf *b, size_t n)
{
    size_t ncap;
    char *np;

    if (b->cap - b->len >= n)
        return 0;
    ncap = b->cap ? b->cap : 256;
    while (ncap - b->len < n) {
        if (ncap > SIZE_MAX / 2)
            return -1;
        ncap *= 2;
    }
    np = realloc(b->p, ncap);
    if (np == NULL)
        return -1;
    b->p = np;
    b->cap = ncap;
    return 0;
}

static int buf_add(struct cs_buf *b, const void *data, size_t n)
{
    if (n == 0)
        return 0; /* b->p may still be NULL: memcpy must not see it */
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static int buf_str(struct cs_buf *b, const char *s)
{
    return buf_add(b, s, strlen(s));
}

static int buf_fill(struct cs_buf *b, char c, size_t n)
{
    if (n == 0)
        return 0;
    if (buf_reserve(b, n) < 0)
        return -1;
    memset(b->p + b->len, c, n);
    b->len += n;
    return 0;
}

/*
 * Decodes the UTF-8 sequence at s[0..n) (n >= 1): returns its length and
 * sets *cp, or returns 0 when s does not start with one (a stray or
 * truncated byte, an overlong form, a surrogate, beyond U+10FFFF).
 */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t len, k;
    uint32_t c = s[0], min;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, c &= 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, c &= 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, c &= 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (s[k] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

/* True for a code point a terminal may take as a command: C0, DEL, C1. */
static int is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
}

/*
 * Appends bytes with control characters escaped, C style, so the text stays
 * on one line and cannot carry terminal escape sequences: \n, \r, \t, and
 * \xNN for each byte of other controls (C1 ones included: U+009B is \xc2\x9b)
 * and for each byte that is not UTF-8. Everything else is copied.
 */
static int buf_escaped(struct cs_buf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0, len, k;

    while (i < n) {
        uint32_t cp = 0;
        char esc[8];
        if (u[i] >= 0x20 && u[i] < 0x7f) {
            i++;
            continue;
        }
        len = utf8_next(u + i, n - i, &cp);
        if (len > 0 && !is_control(cp)) {
            i += len;
            continue;
        }
        if (len == 0)
            len = 1; /* not UTF-8: escape this byte, resync on the next */
        if (buf_add(b, s + run, i - run) < 0)
            return -1;
        for (k = 0; k < len; k++) {
            unsigned char c = u[i + k];
            if (c == '\n')
                snprintf(esc, sizeof(esc), "\\n");
            else if (c == '\r')
                snprintf(esc, sizeof(esc), "\\r");
            else if (c == '\t')
                snprintf(esc, sizeof(esc), "\\t");
            else
                snprintf(esc, sizeof(esc), "\\x%02x", c);
            if (buf_str(b, esc) < 0)
                return -1;
        }
        i += len;
        run = i;
    }
    return buf_add(b, s + run, n - run);
}

/* Appends a JSON string literal (for strings nested in lists and maps), with
 * controls (C0, DEL, C1) as JSON escapes. Row strings are UTF-8; a byte that
 * is not would print as \xNN (not JSON, but never raw). */
static int buf_json_string(struct cs_buf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0, len;

    if (buf_add(b, "\"", 1) < 0)
        return -1;
    while (i < n) {
        uint32_t cp = 0;
        char esc[8];
        if (u[i] >= 0x20 && u[i] < 0x7f && u[i] != '"' && u[i] != '\\') {
            i++;
            continue;
        }
        len = utf8_next(u + i, n - i, &cp);
        if (len > 0 && !is_control(cp) && cp != '"' && cp != '\\') {
            i += len;
            continue;
        }
        if (buf_add(b, s + run, i - run) < 0)
            return -1;
        if (len == 0) {
            snprintf(esc, sizeof(esc), "\\x%02x", u[i]);
            len = 1;
        } else if (cp == '"' || cp == '\\') {
            snprintf(esc, sizeof(esc), "\\%c", (char)cp);
        } else if (cp == '\n') {
            snprintf(esc, sizeof(esc), "\\n");
        } else if (cp == '\t') {
            snprintf(esc, sizeof(esc), "\\t");
        } else {
            snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)cp);
        }
        if (buf_str(b, esc) < 0)
            return -1;
        i += len;
        run = i;
    }
    if (buf_add(b, s + run, n - run) < 0)
        return -1;
    return buf_add(b, "\"", 1);
}

/* Shortest text that reads back as the same double. A NaN or an infinity
 * prints as null, as the record's JSON has it (the host writes non-finite
 * doubles as null, JSON having no such numbers). */
static void fmt_double(char *out, size_t size, double v)
{
    int prec;

    if (!isfinite(v)) {
        snprintf(out, size, "null");
        return;
    }
    for (prec = 15; prec < 17; prec++) {
        snprintf(out, size, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
    snprintf(out, size, "%.17g", v);
}

/* ISO-8601 UTC with milliseconds, e.g. 2024-11-19T08:22:18.000Z. */
static void fmt_timestamp(char *out, size_t size, int64_t ms)
{
    int64_t secs = ms / 1000;
    int64_t frac = ms % 1000;
    time_t t;
    struct tm tm;
    size_t n;

    if (frac < 0) {
        frac += 1000;
        secs -= 1;
    }
    t = (time_t)secs;
    if (gmtime_r(&t, &tm) == NULL) {
        snprintf(out, size, "%" PRId64, ms);
        return;
    }
    n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, size - n, ".%03dZ", (int)frac);
}

/*
 * Appends field i of row as readable text. nested: inside a list or map,
 * where strings and timestamps are quoted as in JSON.
 */
static int render_value(const struct spoke_host_api *api, struct cs_buf *b,
                        const struct spoke_row *row, size_t i, int nested)
{
    char num[64];
    size_t len = 0, j, n;
    const char *s;
    const struct spoke_row *child;
    const struct spoke_schema *schema;

    switch (api->row_type(row, i)) {
    case SPOKE_TYPE_NULL:
        return buf_str(b, "null");
    case SPOKE_TYPE_BOOL:
        return buf_str(b, api->row_get_bool(row, i) ? "true" : "false");
    case SPOKE_TYPE_INT:
        snprintf(num, sizeof(num), "%" PRId64, api->row_get_int(row, i));
        return buf_str(b, num);
    case SPOKE_TYPE_DOUBLE:
        fmt_double(num, sizeof(num), api->row_get_double(row, i));
        return buf_str(b, num);
    case SPOKE_TYPE_STRING:
        s = api->row_get_string(row, i, &len);
        if (s == NULL)
            return buf_str(b, "null");
        return nested ? buf_json_string(b, s, len) : buf_escaped(b, s, len);
    case SPOKE_TYPE_TIMESTAMP:
        fmt_timestamp(num, sizeof(num), api->row_get_timestamp(row, i));
        return nested ? buf_json_string(b, num, strlen(num)) : buf_str(b, num);
    case SPOKE_TYPE_LIST:
    case SPOKE_TYPE_MAP:
        child = api->row_get_row(row, i);
        if (child == NULL)
            return buf_str(b, "null");
        schema = api->row_schema(child);
        n = api->row_count(child);
        if (buf_str(b, schema != NULL ? "{" : "[") < 0)
            return -1;
        for (j = 0; j < n; j++) {
            if (j > 0 && buf_str(b, ",") < 0)
                return -1;
            if (schema != NULL) {
                const char *name = api->schema_name(schema, j);
                if (buf_json_string(b, name, strlen(name)) < 0 || buf_str(b, ":") < 0)
                    return -1;
            }
            if (render_value(api, b, child, j, 1) < 0)
                return -1;
        }
        return buf_str(b, schema != NULL ? "}" : "]");
    }
    return buf_str(b, "?");
}

/* True when cp is in one of the sorted, disjoint ranges r[0..n). */
static int in_ranges(uint32_t cp, const struct cs_range *r, size_t n)
{
    size_t lo = 0, hi = n;

    if (n == 0 || cp < r[0].first || cp > r[n - 1].last)
        return 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp > r[mid].last)
            lo = mid + 1;
        else if (cp < r[mid].first)
            hi = mid;
        else
            return 1;
    }
    return 0;
}

/*
 * Columns a terminal gives printed text (escaped: no controls): two for a
 * wide or fullwidth character, none for a combining mark or a format
 * character, one otherwise (as wcwidth(3), but independent of the locale).
 * A byte that is not UTF-8 (the escaping leaves none) counts one.
 */
static size_t display_width(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, w = 0, len;

    while (i < n) {
        uint32_t cp;
        if (u[i] < 0x80) {
            w++;
            i++;
            continue;
        }
        len = utf8_next(u + i, n - i, &cp);
        if (len == 0) {
            w++;
            i++;
            continue;
        }
        i += len;
        if (in_ranges(cp, cs_zero_width, sizeof(cs_zero_width) / sizeof(cs_zero_width[0])))
            continue;
        w += in_ranges(cp, cs_double_width, sizeof(cs_double_width) / sizeof(cs_double_width[0]))
             ? 2 : 1;
    }
    return w;
}

static void cs_free_columns(struct cs_state *st)
{
    size_t i;

    if (st->owned != NULL) {
        for (i = 0; i < st->ncols; i++)
            free(st->owned[i]);
        free(st->owned);
        st->owned = NULL;
    }
    free(st->width);
    free(st->head_off);
    free(st->head_len);
    free(st->heads.p);
    st->heads.p = NULL;
    st->heads.len = st->heads.cap = 0;
    st->head_off = st->head_len = NULL;
    free(st->cell_off);
    free(st->cell_len);
    free(st->cell_right);
    st->width = st->cell_off = st->cell_len = NULL;
    st->cell_right = NULL;
}

/* Sets the table columns (names borrowed; the caller keeps them alive) and
 * sizes the per-column arrays. 0, or -1 on out-of-memory. */
static int cs_set_columns(struct cs_state *st, const char *const *cols, size_t n)
{
    size_t i, alloc = n ? n : 1;

    st->cols = cols;
    st->ncols = n;
    st->width = calloc(alloc, sizeof(*st->width));
    st->head_off = calloc(alloc, sizeof(*st->head_off));
    st->head_len = calloc(alloc, sizeof(*st->head_len));
    st->cell_off = calloc(alloc, sizeof(*st->cell_off));
    st->cell_len = calloc(alloc, sizeof(*st->cell_len));
    st->cell_right = calloc(alloc, sizeof(*st->cell_right));
    if (st->width == NULL || st->head_off == NULL || st->head_len == NULL
        || st->cell_off == NULL || st->cell_len == NULL || st->cell_right == NULL)
        return -1;
    for (i = 0; i < n; i++) {
        /* A field name is text from the data too: escaped like a value. */
        st->head_off[i] = st->heads.len;
        if (buf_escaped(&st->heads, cols[i], strlen(cols[i])) < 0)
            return -1;
        st->head_len[i] = st->heads.len - st->head_off[i];
        st->width[i] = display_width(st->heads.p + st->head_off[i], st->head_len[i]);
    }
    st->known = 1;
    return 0;
}

/* Takes the columns from a row's own fields (copied: the row is borrowed).
 * On failure nothing is kept and the next row tries again. */
static int cs_columns_from_row(struct cs_state *st, const struct spoke_row *row)
{
    const struct spoke_host_api *api = st->api;
    const struct spoke_schema *schema = api->row_schema(row);
    size_t i, n = schema != NULL ? api->schema_count(schema) : 0;

    st->owned = calloc(n ? n : 1, sizeof(*st->owned));
    if (st->owned == NULL)
        return -1;
    st->ncols = n; /* calloc'd: cs_free_columns frees what was copied so far */
    for (i = 0; i < n; i++) {
        st->owned[i] = strdup(api->schema_name(schema, i));
        if (st->owned[i] == NULL)
            goto fail;
    }
    if (cs_set_columns(st, (const char *const *)st->owned, n) < 0)
        goto fail;
    return 0;

fail:
    cs_free_columns(st);
    st->ncols = 0;
    st->known = 0;
    return -1;
}

/* Appends one cell padded to its column's width; the last column gets no
 * trailing blanks. */
static int cs_cell(struct cs_state *st, size_t c, const char *text, size_t n, int right)
{
    size_t w = display_width(text, n);
    size_t pad = st->width[c] > w ? st->width[c] - w : 0;
    int last = c + 1 == st->ncols;

    if (c > 0 && buf_str(&st->line, CS_SEP) < 0)
        return -1;
    if (right && buf_fill(&st->line, ' ', pad) < 0)
        return -1;
    if (buf_add(&st->line, text, n) < 0)
        return -1;
    if (!right && !last && buf_fill(&st->line, ' ', pad) < 0)
        return -1;
    return 0;
}

static int cs_header(struct cs_state *st)
{
    size_t c;

    for (c = 0; c < st->ncols; c++)
        if (cs_cell(st, c, st->heads.p + st->head_off[c], st->head_len[c], 0) < 0)
            return -1;
    if (buf_str(&st->line, "\n") < 0)
        return -1;
    for (c = 0; c < st->ncols; c++) {
        if (c > 0 && buf_str(&st->line, CS_SEP) < 0)
            return -1;
        if (buf_fill(&st->line, '-', st->width[c]) < 0)
            return -1;
    }
    return buf_str(&st->line, "\n");
}

/* Renders a table row (and the header when due) into st->line. */
static int cs_table_row(struct cs_state *st, const struct spoke_row *row)
{
    const struct spoke_host_api *api = st->api;
    size_t c;

    if (!st->known && cs_columns_from_row(st, row) < 0)
        return -1;
    st->cells.len = 0;
    for (c = 0; c < st->ncols; c++) {
        int idx = api->row_index(row, st->cols[c]);
        size_t w;
        st->cell_off[c] = st->cells.len;
        st->cell_right[c] = 0;
        if (idx >= 0) {
            enum spoke_type t = api->row_type(row, (size_t)idx);
            /* A non-finite double prints as null: aligned as one. */
            st->cell_right[c] = t == SPOKE_TYPE_INT
                || (t == SPOKE_TYPE_DOUBLE && isfinite(api->row_get_double(row, (size_t)idx)));
            if (render_value(api, &st->cells, row, (size_t)idx, 0) < 0)
                return -1;
        }
        st->cell_len[c] = st->cells.len - st->cell_off[c];
        w = display_width(st->cells.p + st->cell_off[c], st->cell_len[c]);
        if (w > st->width[c])
            st->width[c] = w;
    }
    if (st->rows % (uint64_t)st->header_every == 0 && cs_header(st) < 0)
        return -1;
    for (c = 0; c < st->ncols; c++)
        if (cs_cell(st, c, st->cells.p + st->cell_off[c], st->cell_len[c],
                    st->cell_right[c]) < 0)
            return -1;
    st->rows++;
    /* Empty trailing cells would leave blanks at the end of the line. */
    while (st->line.len > 0 && st->line.p[st->line.len - 1] == ' ')
        st->line.len--;
    return buf_str(&st->line, "\n");
}

/* Renders "<topic> <key or -> <value>" into st->line. -1 on out-of-memory,
 * -2 when the value could not be serialized. */
static int cs_line(struct cs_state *st, const struct spoke_record *rec)
{
    const struct spoke_host_api *api = st->api;
    const char *topic = api->record_topic(rec);
    size_t klen = 0, vlen = 0;
    const char *key = api->record_key(rec, &klen);
    const char *val = api->record_value_bytes(rec, &vlen);

    if (val == NULL && api->record_value_forms(rec) != 0)
        return -2; /* not a null value: the host could not serialize it */
    if (buf_escaped(&st->line, topic, strlen(topic)) < 0 || buf_str(&st->line, " ") < 0)
        return -1;
    if ((key != NULL ? buf_escaped(&st->line, key, klen) : buf_str(&st->line, "-")) < 0)
        return -1;
    if (buf_str(&st->line, " ") < 0)
        return -1;
    if ((val != NULL ? buf_escaped(&st->line, val, vlen) : buf_str(&st->line, "null")) < 0)
        return -1;
    return buf_str(&st->line, "\n");
}

static int cs_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                   const struct spoke_config *cfg, void **out,
                   char *errstr, size_t errstr_size)
{
    struct cs_state *st = calloc(1, sizeof(*st));
    const char *fmt, *output;
    const char *const *items = NULL;
    size_t n;

    if (st == NULL) {
        snprintf(errstr, errstr_size, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    st->api = api;
    st->inst = inst;
    fmt = api->config_string(cfg, "format");
    output = api->config_string(cfg, "output");
    st->table = fmt != NULL && strcmp(fmt, "table") == 0;
    st->header_every = api->config_int(cfg, "header.every");
    assert(st->header_every >= 1); /* bounds checked by the host */
    if (output != NULL && strcmp(output, "stderr") == 0) {
        st->out = stderr;
        st->out_name = "stderr";
    } else {
        st->out = stdout;
        st->out_name = "stdout";
    }
    n = api->config_list(cfg, "columns", &items);
    if (n > 0 && !st->table)
        api->log(inst, SPOKE_LOG_WARN, "columns is ignored with format line");
    if (n > 0 && st->table && cs_set_columns(st, items, n) < 0) {
        cs_free_columns(st);
        free(st);
        snprintf(errstr, errstr_size, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    *out = st;
    return SPOKE_OK;
}

static int cs_put(void *vst, const struct spoke_record *rec, char *errstr, size_t errstr_size)
{
    struct cs_state *st = vst;
    int rc;

    st->line.len = 0;
    if (st->table) {
        const char *why = NULL;
        const struct spoke_row *row = st->api->record_value_row(rec, &why);
        if (row == NULL) {
            snprintf(errstr, errstr_size, "value is not a row: %s",
                     why != NULL ? why : "no reason given");
            return SPOKE_ERR_INVALID;
        }
        rc = cs_table_row(st, row);
    } else {
        rc = cs_line(st, rec);
    }
    if (rc == -2) {
        snprintf(errstr, errstr_size, "cannot serialize the value (out of memory)");
        return SPOKE_ERR_NOMEM;
    }
    if (rc < 0) {
        snprintf(errstr, errstr_size, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    if (fwrite(st->line.p, 1, st->line.len, st->out) != st->line.len) {
        snprintf(errstr, errstr_size, "cannot write to %s: %s", st->out_name, strerror(errno));
        clearerr(st->out); /* the stream is shared: do not poison later writers */
        return SPOKE_ERR_IO;
    }
    return SPOKE_OK;
}

static int cs_flush(void *vst, char *errstr, size_t errstr_size)
{
    struct cs_state *st = vst;

    if (fflush(st->out) == EOF) {
        snprintf(errstr, errstr_size, "cannot write to %s: %s", st->out_name, strerror(errno));
        clearerr(st->out);
        return SPOKE_ERR_IO;
    }
    return SPOKE_OK;
}

static void cs_destroy(void *vst)
{
    struct cs_state *st = vst;

    if (st == NULL)
        return;
    cs_free_columns(st);
    free(st->line.p);
    free(st->cells.p);
    free(st);
}

static const struct spoke_plugin console_sink = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "console_sink",
    .kind        = SPOKE_KIND_SINK,
    .version     = "0.1.0",
    .description = "Prints records for a human, as lines or an aligned table",
    .config      = cs_config,
    .init        = cs_init,
    .put         = cs_put,
    .flush       = cs_flush,
    .destroy     = cs_destroy,
};

/* The plugin's only exported symbol: returns the constant descriptor. */
SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void)
{
    return &console_sink;
}
