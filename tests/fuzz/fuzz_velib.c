/* fuzz_velib - libFuzzer harness for velib_source's snapshot handling: the
 * bytes an HTTP server answers go through the parse (sjson), the check of
 * every station, the digest and the rows, as poll_once runs them.
 *
 * Input: a station_status body. An input whose first byte is EDITS is
 * instead a list of edits of a small GBFS snapshot (4 bytes each: operation,
 * position high and low byte, byte: replace, insert or delete), so that
 * most inputs are near copies of a valid snapshot, which random bytes
 * seldom give; one whose first byte is INFO is a station_information body,
 * which, when accepted, is joined to that valid snapshot: it must stay
 * accepted, every station built.
 *
 * Each status body goes to three feeds: every station joined with a fixed
 * station_information table ("all"), station.codes [16107, 99999] joined
 * with it ("sel"), and every station without it ("bare": name, lat, lon
 * and capacity are then plain extra fields, of any scalar type, where
 * "all" wants a string, numbers and an integer).
 * What must hold, besides no crash, leak or out-of-bounds access:
 *   1. all or nothing: a refused snapshot says why (parse or check) and
 *      leaves an empty batch; an accepted one gives a row per selected
 *      station, each of them built; "all" and "sel" accept the same
 *      snapshots (every station is checked, selected or not);
 *   2. jansson, an independent parser, accepts what the parse accepts
 *      (but for the differences listed at oracle()), and the batches of
 *      "all" and "bare" are data.stations as jansson reads it: the same
 *      count and the same stationCode, in order; that of "sel" is the
 *      stations of station.codes, in order;
 *   3. the same bytes checked again give the same digest and the same
 *      rows (as JSON), byte for byte.
 * A broken rule aborts with the input's size and the two sides printed, so
 * libFuzzer keeps the input as a reproducer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../plugins/velib_source/velib_source_feed.c"

#include "buf.h"
#include "fuzz_edits.h"
#include "instance.h"
#include "record.h"

#define EDITS 0xE0
#define INFO 0xE1
#define MAX_BODY (1u << 20)

/* A GBFS station_status snapshot of three stations (made-up values, the
 * feed's shape): the base the edit mode changes. */
static const char base_status[] =
    "{\"lastUpdatedOther\": 1732001704, \"ttl\": 60, \"data\": {\"stations\": [\n"
    "{\"stationCode\": \"16107\", \"station_id\": 213688169, \"num_bikes_available\": 3, "
    "\"numBikesAvailable\": 3, \"num_bikes_available_types\": [{\"mechanical\": 2}, "
    "{\"ebike\": 1}], \"num_docks_available\": 32, \"numDocksAvailable\": 32, "
    "\"is_installed\": 1, \"is_returning\": 1, \"is_renting\": 1, "
    "\"last_reported\": 1732001580},\n"
    "{\"stationCode\": \"32017\", \"station_id\": 1515015, \"num_bikes_available\": 0, "
    "\"numBikesAvailable\": 0, \"num_bikes_available_types\": [{\"mechanical\": 0}, "
    "{\"ebike\": 0}], \"num_docks_available\": 20, \"numDocksAvailable\": 20, "
    "\"is_installed\": 1, \"is_returning\": 0, \"is_renting\": 1, "
    "\"last_reported\": 1732001000, \"extra\": \"x\"},\n"
    "{\"stationCode\": \"99999\", \"station_id\": 42, \"num_bikes_available\": 7, "
    "\"numBikesAvailable\": 7, \"num_bikes_available_types\": [{\"ebike\": 7}], "
    "\"num_docks_available\": 1, \"numDocksAvailable\": 1, \"is_installed\": 1, "
    "\"is_returning\": 1, \"is_renting\": 1, \"last_reported\": 1732001700}\n"
    "]}}";

static const char base_info[] =
    "{\"lastUpdatedOther\": 1732000000, \"ttl\": 3600, \"data\": {\"stations\": [\n"
    "{\"station_id\": 213688169, \"stationCode\": \"16107\", \"name\": \"Rue A\", "
    "\"lat\": 48.86, \"lon\": 2.27, \"capacity\": 35},\n"
    "{\"station_id\": 1515015, \"stationCode\": \"32017\", \"name\": \"Place \\u00c9\", "
    "\"lat\": 48.93, \"lon\": 2.35, \"capacity\": 20}\n"
    "]}}";

static const char *const codes[] = { "16107", "99999" };

static struct vs_feed *all, *sel, *bare;
static struct sj_parser *info_parser;
static struct vs_info *info;

static size_t accepted[3];  /* snapshots accepted by all, sel and bare */

static void report(void)
{
    fprintf(stderr, "fuzz_velib: snapshots accepted: %zu with every station, %zu with "
            "station.codes, %zu without station_information\n", accepted[0], accepted[1],
            accepted[2]);
}

static void setup(void)
{
    atexit(report);
    char err[256];
    size_t skipped = 0;
    struct vs_feed_opts oa = { .with_info = 1 }, ob = { 0 },
                        os = { .codes = codes, .ncodes = 2, .with_info = 1 };
    all = vs_feed_new(&api_table, NULL, &oa, MAX_BODY, err, sizeof(err));
    sel = all ? vs_feed_new(&api_table, NULL, &os, MAX_BODY, err, sizeof(err)) : NULL;
    bare = sel ? vs_feed_new(&api_table, NULL, &ob, MAX_BODY, err, sizeof(err)) : NULL;
    info_parser = sj_parser_new(MAX_BODY, 64);
    if (!bare || !info_parser ||
        vs_info_parse(info_parser, base_info, sizeof(base_info) - 1, &info, &skipped, err,
                      sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_velib: setup: %s\n", err);
        abort();
    }
}

static void broken(const char *rule, size_t n, const char *a, const char *b)
{
    fprintf(stderr, "fuzz_velib: %s (input of %zu bytes)\n  %s\n  %s\n", rule, n, a, b);
    abort();
}

/* The fixed snapshot with the edits of e[0..n) applied. */
static size_t edited(const uint8_t *e, size_t n, char *doc, size_t cap)
{
    return fuzz_edit(base_status, sizeof(base_status) - 1, e, n, doc, cap);
}

/* The result of one feed on p[0..n): "ERR <reason>", or "OK <digest>"
 * followed by each row as JSON. Rule 1 is checked here. */
static void run_feed(struct vs_feed *f, const struct vs_info *inf, const char *p, size_t n,
                     struct buf *out, struct vs_batch **bp)
{
    char err[512] = "";
    struct vs_header hdr;
    struct vs_batch *b = NULL;
    buf_reset(out);
    *bp = NULL;
    if (vs_feed_parse(f, p, n, &hdr, err, sizeof(err)) != 0) {
        if (!err[0])
            broken("a refused parse gave no reason", n, "", "");
        buf_printf(out, "ERR parse %s", err);
        return;
    }
    if (vs_feed_check(f, inf, &b, err, sizeof(err)) != 0) {
        if (!err[0])
            broken("a refused check gave no reason", n, "", "");
        if (f->batch.n != 0)
            broken("a refused check left stations in the batch", n, err, "");
        buf_printf(out, "ERR check %s", err);
        return;
    }
    if (b->n > hdr.nstations)
        broken("more stations selected than the snapshot has", n, "", "");
    buf_printf(out, "OK %llu", (unsigned long long)b->digest);
    for (size_t i = 0; i < b->n; i++) {
        struct spoke_row *row = vs_feed_row(f, inf, i);
        if (!row)
            broken("an accepted station built no row", n, "", "");
        buf_putc(out, '\n');
        if (rowjson_write(row, out) != 0)
            broken("a station row does not write as JSON", n, "", "");
        row_free(row);
    }
    *bp = b;
}

/* run_feed, its result NUL-terminated. */
static void run(struct vs_feed *f, const struct vs_info *inf, const char *p, size_t n,
                struct buf *out, struct vs_batch **bp)
{
    run_feed(f, inf, p, n, out, bp);
    if (buf_putc(out, '\0') != 0)
        broken("out of memory", n, "", "");
}

/* jansson's reading of the snapshot: NULL when it refuses it. *other set
 * when it refused for a reason the two parsers see differently: a number
 * beyond 64 bits (jansson refuses integers past INT64_MAX, simdjson reads
 * them), a duplicate key (refused here, since jansson would keep the last
 * and simdjson's lookups the first) or \u0000 in a key (valid JSON that
 * jansson does not support). */
static json_t *oracle(const char *p, size_t n, int *other)
{
    json_error_t je;
    json_t *doc = json_loadb(p, n, JSON_ALLOW_NUL | JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
                             &je);
    *other = !doc && (strstr(je.text, "too big") || strstr(je.text, "overflow") ||
                      strstr(je.text, "duplicate") || strstr(je.text, "NUL byte"));
    return doc;
}

/* Rule 2 for a feed of every station: its batch is jansson's
 * data.stations, stationCode for stationCode. */
static void every_station(const struct vs_batch *b, json_t *stations, size_t n, const char *res)
{
    if (!json_is_array(stations))
        broken("accepted, but jansson sees no data.stations array", n, res, "");
    if (json_array_size(stations) != b->n)
        broken("the batch does not have every station", n, res, "");
    for (size_t i = 0; i < b->n; i++) {
        json_t *code = json_object_get(json_array_get(stations, i), "stationCode");
        if (!json_is_string(code) || json_string_length(code) != b->klens[i] ||
            memcmp(json_string_value(code), b->keys[i], b->klens[i]))
            broken("a station's key is not its stationCode", n, res,
                   json_is_string(code) ? json_string_value(code) : "-");
    }
}

static int is_code(const char *s, size_t len, const char *code)
{
    return len == strlen(code) && memcmp(s, code, len) == 0;
}

static void status_body(const char *p, size_t n)
{
    struct buf r1 = { 0 }, r2 = { 0 }, rs = { 0 }, rb = { 0 };
    struct vs_batch *b1, *b2, *bs, *bb;
    run(all, info, p, n, &r1, &b1);
    int big = 0;
    json_t *doc = oracle(p, n, &big);
    if (!doc && !big && strncmp(r1.p, "ERR parse", 9) != 0)
        broken("jansson refuses what the parse accepted", n, r1.p, "");
    json_t *stations = json_object_get(json_object_get(doc, "data"), "stations");
    if (b1 && doc)
        every_station(b1, stations, n, r1.p);
    /* Rule 3: the same bytes again. */
    run(all, info, p, n, &r2, &b2);
    if (r1.len != r2.len || memcmp(r1.p, r2.p, r1.len) != 0)
        broken("the same snapshot checked twice differs", n, r1.p, r2.p);

    run(sel, info, p, n, &rs, &bs);
    if (!bs != !b1)
        broken("station.codes and the full feed disagree on the snapshot", n, rs.p, r1.p);
    if (bs) {
        size_t k = 0;
        for (size_t i = 0; stations && i < json_array_size(stations); i++) {
            json_t *code = json_object_get(json_array_get(stations, i), "stationCode");
            size_t len = json_string_length(code);
            const char *c = json_string_value(code);
            if (!json_is_string(code) || !(is_code(c, len, codes[0]) || is_code(c, len, codes[1])))
                continue;
            if (k >= bs->n || len != bs->klens[k] || memcmp(c, bs->keys[k], len))
                broken("station.codes did not select its stations in order", n, rs.p, c);
            k++;
        }
        if (stations && k != bs->n)
            broken("station.codes selected other stations", n, rs.p, "");
    }
    run(bare, NULL, p, n, &rb, &bb);
    accepted[0] += b1 != NULL;
    accepted[1] += bs != NULL;
    accepted[2] += bb != NULL;
    if (bb && doc)
        every_station(bb, stations, n, rb.p);
    else if (!bb && !strncmp(r1.p, "OK", 2))
        broken("accepted with station_information, refused without it", n, r1.p, rb.p);
    json_decref(doc);
    buf_free(&r1);
    buf_free(&r2);
    buf_free(&rs);
    buf_free(&rb);
}

static void info_body(const char *p, size_t n)
{
    struct vs_info *t = NULL;
    size_t skipped = 0;
    char err[512] = "";
    if (vs_info_parse(info_parser, p, n, &t, &skipped, err, sizeof(err)) != 0) {
        if (!err[0])
            broken("a refused station_information gave no reason", n, "", "");
        return;
    }
    int big = 0;
    json_t *doc = oracle(p, n, &big);
    json_t *stations = json_object_get(json_object_get(doc, "data"), "stations");
    if (doc && vs_info_count(t) > json_array_size(stations))
        broken("more station_information entries than stations", n, "", "");
    json_decref(doc);
    /* The valid base snapshot joined with this table: accepted whatever the
     * table holds, every station built. */
    struct buf r = { 0 };
    struct vs_batch *b;
    run(all, t, base_status, sizeof(base_status) - 1, &r, &b);
    if (!b || b->n != 3)
        broken("the base snapshot joined with a station_information table was refused", n,
               r.p, "");
    buf_free(&r);
    vs_info_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!all)
        setup();
    if (size && data[0] == EDITS) {
        static char doc[sizeof(base_status) + 4096];
        size_t n = edited(data + 1, size - 1, doc, sizeof(doc));
        status_body(doc, n);
    } else if (size && data[0] == INFO) {
        info_body((const char *)data + 1, size - 1);
    } else {
        status_body((const char *)data, size);
    }
    return 0;
}
