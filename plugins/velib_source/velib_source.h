/*
 * velib_source.h - internal interfaces between the parts of velib_source
 * (not part of any ABI; nothing here crosses the plugin boundary).
 *
 *   velib_source.c       descriptor, config, scheduling (ttl, backoff),
 *                        emission, the station_information thread; HTTP
 *                        through lib/httpc (one handle per feed: conditional
 *                        GETs, limits, redirects, Retry-After, error text)
 *   velib_source_feed.c  snapshot parsing and validation (sjson), typed rows,
 *                        the station_information table; no libcurl, so
 *                        bench/velib_source_bench.c links it alone
 */
#ifndef VELIB_SOURCE_H
#define VELIB_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include <spoke/plugin.h>

#include "sjson.h"

/* ------------------------------------------------------------------------ */
/* Feeds (velib_source_feed.c)                                              */
/* ------------------------------------------------------------------------ */

/* station_information, indexed by station_id: immutable once built, so the
 * thread that builds it can hand it to the poll thread as a whole. */
struct vs_info;

/* What parsing a station_information table noticed in its entries. Each
 * count comes with its first case described for a log line ("station_id
 * 213688169 (stationCode 16107): capacity \"35\""). */
struct vs_info_notes {
    size_t skipped;             /* entries without an integer station_id, or repeating one */
    size_t coerced;             /* capacity, lat or lon given as a string holding a number
                                   (a plain integer for capacity): read as that number */
    size_t refused;             /* name, lat, lon or capacity of another type: left out */
    char first_coerced[192];
    char first_refused[192];
};

/* Parses a station_information document (full validation by sjson; the
 * top-level shape is required, individual stations are lenient: entries
 * without an integer station_id are skipped, a field of another type is
 * left out; both are counted in *notes, never silent). *out is a new table
 * owned by the caller. 0, or -1 with errstr set (a number beyond 64 bits
 * or a double where the table reads it is named with its place, and
 * ignored elsewhere, as vs_feed_parse does). */
int vs_info_parse_notes(struct sj_parser *p, const void *body, size_t len, struct vs_info **out,
                        struct vs_info_notes *notes, char *errstr, size_t errstr_size);
/* vs_info_parse_notes, with only the count of skipped entries. */
int vs_info_parse(struct sj_parser *p, const void *body, size_t len, struct vs_info **out,
                  size_t *skipped, char *errstr, size_t errstr_size);
/* Accepts NULL (0). */
size_t vs_info_count(const struct vs_info *info);
void vs_info_free(struct vs_info *info);
/* The station_ids of a table: a new array (free()) of *n ids, or NULL on
 * out-of-memory. */
int64_t *vs_info_ids(const struct vs_info *info, size_t *n);
/* How many of ids[0..n) the table lacks. */
size_t vs_info_lacking(const struct vs_info *info, const int64_t *ids, size_t n);
/* 1 when two tables (either may be NULL: no table) join the same name,
 * lat, lon and capacity to every station_id, else 0. */
int vs_info_same(const struct vs_info *a, const struct vs_info *b);

/* Top-level fields of a station_status snapshot. */
struct vs_header {
    int64_t last_updated;   /* lastUpdatedOther (or GBFS last_updated), epoch s */
    int64_t ttl;            /* seconds, or -1 when absent */
    size_t nstations;       /* entries in data.stations */
};

/* Stations selected from one checked snapshot. The arrays belong to the
 * feed and are reused; keys point into the parsed document: valid until the
 * next vs_feed_parse or vs_feed_trim. */
struct vs_batch {
    size_t n;
    const char **keys;      /* stationCode bytes, not NUL-terminated */
    size_t *klens;
    int64_t *ts_ms;         /* record timestamps: last_reported * 1000 */
    uint64_t digest;        /* content of every selected row, for "identical" */
};

struct vs_feed_opts {
    const char *const *codes;   /* station.codes; ncodes == 0: every station */
    size_t ncodes;
    int with_info;              /* add name, lat, lon, capacity to the schema */
};

struct vs_feed;

/* NULL with errstr set on failure. api must stay valid until vs_feed_free. */
struct vs_feed *vs_feed_new(const struct spoke_host_api *api, struct spoke_instance *inst,
                            const struct vs_feed_opts *o, size_t max_bytes,
                            char *errstr, size_t errstr_size);
void vs_feed_free(struct vs_feed *f);

/* Parses and fully validates the JSON body[0..len), then reads the
 * top-level shape: an object with an integer lastUpdatedOther (or
 * last_updated), an optional integer ttl and a data.stations array. The
 * body is not needed after the call. 0, or -1 with errstr set. A number
 * beyond 64 bits or a double is an error named with its place where the
 * plugin reads it (top-level fields it reads, a station's members), and
 * ignored elsewhere (the document is parsed again from a copy where it is
 * 0: only after simdjson refused it). */
int vs_feed_parse(struct vs_feed *f, const void *body, size_t len, struct vs_header *hdr,
                  char *errstr, size_t errstr_size);
/* The same, where cap bytes are readable at body (cap >= len): with
 * SJ_PADDING of them past len, the body is parsed in place instead of being
 * copied into the parser's own buffer first. */
int vs_feed_parse_padded(struct vs_feed *f, const void *body, size_t len, size_t cap,
                         struct vs_header *hdr, char *errstr, size_t errstr_size);

/* Validates every station of the parsed snapshot, selects the ones to emit
 * (station.codes) and computes the digest of their rows joined with info
 * (may be NULL), without building any row; the selected stations' values
 * are kept (about 200 bytes each) for vs_feed_row. All or nothing: on
 * failure the batch is empty and errstr names the station and field. The
 * batch stays valid until the next vs_feed_parse, vs_feed_check or
 * vs_feed_trim, and info must stay valid as long. */
int vs_feed_check(struct vs_feed *f, const struct vs_info *info, struct vs_batch **out,
                  char *errstr, size_t errstr_size);

/* The row of the batch's i-th station, joined with the same info as
 * vs_feed_check (passed again: it must be the same), built from the values
 * the check kept: a new row owned by the caller, or NULL on out-of-memory.
 * Rows are built one at a time so the caller can emit each at once. */
struct spoke_row *vs_feed_row(struct vs_feed *f, const struct vs_info *info, size_t i);

/* 1 when the batch's i-th station joins other name, lat, lon or capacity
 * values with the table it was checked with than with old (NULL: no
 * table), counting only the fields the station does not hold itself. */
int vs_feed_joined_changed(const struct vs_feed *f, size_t i, const struct vs_info *old);

/* Empties the batch. */
void vs_feed_batch_clear(struct vs_feed *f);

/* Releases what only a snapshot being handled needs: the parser's buffers
 * (sized for the largest document seen: several MB for a 1 MB snapshot)
 * and the batch's arrays. The parsed document is gone; the next
 * vs_feed_parse allocates them again. Schemas and settings stay. */
void vs_feed_trim(struct vs_feed *f);

/* After vs_feed_trim: makes the parser again and faults in the parts of its
 * buffers that the last document parsed before the trim used, so that
 * parsing the next one, if it is about as large, costs no page faults.
 * Returns the bytes faulted in (0: nothing to warm, or out of memory; the
 * next parse allocates as it goes). The batch's lists, about 60 faults a
 * poll more, made no difference that could be measured (bench/README). */
size_t vs_feed_warm(struct vs_feed *f);

/* Codes of station.codes that the last checked snapshot did not contain and
 * that were not reported yet; calls fn once per such code. */
void vs_feed_missing_codes(struct vs_feed *f, void (*fn)(void *ctx, const char *code),
                           void *ctx);

#endif
