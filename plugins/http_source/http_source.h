/*
 * http_source.h - internal interfaces between the parts of http_source
 * (not part of any ABI; nothing here crosses the plugin boundary).
 *
 *   http_source.c       descriptor, config, the URL list, scheduling
 *                       (per-URL backoff), emission; HTTP through lib/httpc
 *   http_source_body.c  a response body -> records: JSON or NDJSON parsed
 *                       and fully validated (sjson), records.path, key and
 *                       timestamp paths; all or nothing. For streams, an
 *                       endless body cut into lines as it arrives (bounded)
 *                       and one line -> records
 */
#ifndef HTTP_SOURCE_H
#define HTTP_SOURCE_H

#include <stddef.h>
#include <stdint.h>

/* A path into a JSON value: names and array indexes, e.g. main.temp,
 * list[0].name, [2]. */
struct hs_path;

/* Parses text (a leading '.' is dropped: ".item" is the path "item").
 * key names the config key in the message. NULL with errstr set when text
 * is malformed or out of memory. */
struct hs_path *hs_path_new(const char *key, const char *text, char *errstr,
                            size_t errstr_size);
/* Accepts NULL. */
void hs_path_free(struct hs_path *p);

enum hs_format { HS_FORMAT_JSON, HS_FORMAT_NDJSON };
enum hs_key { HS_KEY_NONE, HS_KEY_ITEM, HS_KEY_PATH };

struct hs_body_opts {
    enum hs_format format;
    const struct hs_path *records;  /* NULL: each document is one record */
    enum hs_key key;
    const struct hs_path *key_path; /* HS_KEY_PATH */
    const struct hs_path *ts_path;  /* NULL: no timestamp from the record */
    int ts_ms;                      /* the timestamp is in ms, not s */
};

/* One record of a response: offsets into the batch's arena or the body. */
struct hs_rec {
    size_t voff, vlen;
    int vin_body;       /* the value is body[voff..], else arena[voff..] */
    size_t koff, klen;  /* the key in the arena */
    int has_key;
    int64_t ts_ms;      /* with a timestamp path */
};

/* The records of one response, reused from response to response. */
struct hs_batch {
    struct hs_rec *recs;
    size_t n, cap;
    char *arena;
    size_t alen, acap;
    int64_t max_ts_ms;  /* largest record timestamp (with a timestamp path) */
};

struct hs_body;

/* max_bytes: the largest document (max.body.bytes). The paths are borrowed
 * and must outlive the parser. NULL on out-of-memory. */
struct hs_body *hs_body_new(const struct hs_body_opts *o, size_t max_bytes);
void hs_body_free(struct hs_body *b);

/*
 * Turns a body into records (item: the URL's item, or NULL). Every
 * document is parsed and fully validated, and every record's key and
 * timestamp read, before the batch is handed back: on failure the batch is
 * empty and errstr says why (not valid JSON, wrong shape), never quoting
 * the body. The batch's values point into body (must stay unchanged while
 * the batch is used) or its arena. 0, or -1 with errstr set.
 */
int hs_body_parse(struct hs_body *b, const char *body, size_t len, const char *item,
                  struct hs_batch *out, char *errstr, size_t errstr_size);

void hs_batch_free(struct hs_batch *b);

/* One line of a stream (lineno: its number in the response, for
 * messages) -> records, as hs_body_parse does with an NDJSON body of that
 * one line: the batch's values point into line or the arena. 0, or -1
 * with errstr set ("line 17: not valid JSON: ..."). */
int hs_line_parse(struct hs_body *b, const char *line, size_t len, const char *item,
                  uint64_t lineno, struct hs_batch *out, char *errstr, size_t errstr_size);

/* 1 when p[0..n) holds only blanks (space, tab, CR, LF). */
int hs_blank(const char *p, size_t n);

/*
 * Lines of an endless body, cut as its pieces arrive. A line ends at '\n'
 * (a '\r' before it is part of the ending); only the line in progress is
 * held, in a buffer that grows to max bytes at most (+1). Lines are
 * numbered from 1 in each response, blank ones included.
 */
struct hs_lines;

struct hs_lines_cb {
    /* A complete line (p[0..n), without its ending), valid during the call. */
    int (*line)(void *ud, const char *p, size_t n, uint64_t lineno);
    /* Line lineno is longer than max: head holds its first n (= max) bytes;
     * the rest of it, up to its '\n', is skipped. */
    int (*too_long)(void *ud, const char *head, size_t n, uint64_t lineno);
    /* No memory to hold the line in progress: it is skipped. */
    int (*nomem)(void *ud);
};

/* NULL on out-of-memory. */
struct hs_lines *hs_lines_new(size_t max);
/* Accepts NULL. */
void hs_lines_free(struct hs_lines *l);

/* Feeds the next piece of the body: calls cb for each line it completes
 * (or finds too long). Returns 0, or the first non-zero value a callback
 * returned (the rest of the piece is then not read). */
int hs_lines_feed(struct hs_lines *l, const char *p, size_t n, const struct hs_lines_cb *cb,
                  void *ud);

/* The response ended: returns how many bytes of an unfinished line it
 * left (0 when none, or when that line was already found too long), with
 * *held pointing to them (valid until the next feed) and *lineno its
 * number; then starts over for the next response. */
size_t hs_lines_end(struct hs_lines *l, const char **held, uint64_t *lineno);

#endif
