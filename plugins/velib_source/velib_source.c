/*
 * velib_source - polls a GBFS station_status feed (Vélib' Métropole by
 * default) and emits one record per station per new snapshot, joined with
 * station_information (name, lat, lon, capacity).
 *
 * Record: key = stationCode, value = a typed row (velib_source_feed.c),
 * timestamp = last_reported * 1000, source position = (url, offset). The
 * offset is the snapshot's lastUpdatedOther on the last record of a
 * snapshot and the previous delivered snapshot's on the others, so the
 * committed offset only reaches a snapshot once all of it is delivered; a
 * restart does not emit that snapshot again.
 *
 * Tombstones (emit.tombstones): a station of the previous emitted snapshot
 * (within station.codes) that a new snapshot lacks gets a record with its
 * stationCode as key and a null value, after the snapshot's stations, so a
 * table downstream (aggregator, semantics: table) forgets it, as a Kafka
 * compacted topic would. They follow the same position rule: the last
 * record of the snapshot, tombstone or not, carries its lastUpdatedOther.
 * What the previous snapshot held lives in memory only: after a restart the
 * first snapshot emits no tombstones.
 *
 * Scheduling: after a good poll the next one comes after poll.interval.ms,
 * or later when the feed's ttl says the data will not change before
 * (lastUpdatedOther + ttl, at most ttl.max.ms away). A failed poll returns
 * SPOKE_RETRY with the reason and the backoff (exponential with jitter, or
 * the server's Retry-After), keeping the previous state. The status GET
 * runs through libcurl's multi interface a slice (VS_SLICE_MS) at a time,
 * poll() returning to the host between slices: the host can only stop a
 * source between two poll() calls, so a stalled server never holds up a
 * stop for request.timeout.ms.
 *
 * station_information is fetched by a thread of its own on its own
 * interval, so a slow or failing information feed never delays status
 * polls; the poll thread adopts each new table as a whole. A table that
 * lacks half or more of the previous one's stations is held back for up
 * to information.interval.ms (a glitch of the feed); when an adopted table
 * joins other values, the stations whose values changed are emitted again
 * at the next poll, even if their status did not change.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "httpc.h"
#include "problems.h"
#include "velib_source.h"

#define VS_STATUS_URL \
    "https://velib-metropole-opendata.smovengo.cloud/opendata/Velib_Metropole/station_status.json"
#define VS_INFO_URL \
    "https://velib-metropole-opendata.smovengo.cloud/opendata/Velib_Metropole/station_information.json"

static const struct spoke_config_field vs_config[] = {
    { .name = "url", .type = SPOKE_CFG_STRING, .default_value = VS_STATUS_URL,
      .doc = "GBFS station_status URL to poll (http or https only)", .min = 1, .max = 4096 },
    { .name = "information.url", .type = SPOKE_CFG_STRING, .default_value = VS_INFO_URL,
      .doc = "GBFS station_information URL joined by station_id (name, lat, lon, capacity); "
             "empty disables the join", .min = 0, .max = 4096 },
    { .name = "information.interval.ms", .type = SPOKE_CFG_LONG, .default_value = "3600000",
      .doc = "How often (ms) station_information is fetched again (after a failure: backoff, "
             "at most this)", .min = 100, .max = 604800000 },
    { .name = "station.codes", .type = SPOKE_CFG_LIST,
      .doc = "stationCode values to emit, e.g. [16107, 32017]; empty: every station",
      .min = 0, .max = 100000 },
    { .name = "poll.interval.ms", .type = SPOKE_CFG_LONG, .default_value = "60000",
      .doc = "Least time (ms) between two polls of url; the feed's ttl can make it longer "
             "(see ttl.max.ms)", .min = 100, .max = 86400000 },
    { .name = "ttl.max.ms", .type = SPOKE_CFG_LONG, .default_value = "3600000",
      .doc = "Longest (ms) the feed's ttl may delay the next poll (until lastUpdatedOther + "
             "ttl); 0 ignores the ttl", .min = 0, .max = 86400000 },
    HTTPC_CONFIG_FIELDS("spoke-velib_source/0.1.0"),
    { .name = "emit.tombstones", .type = SPOKE_CFG_BOOL, .default_value = "true",
      .doc = "Emit a tombstone (key stationCode, null value) for each station of the previous "
             "snapshot (within station.codes) that a new snapshot lacks; not across restarts" },
    { 0 }
};

/* A set of stationCodes: the stations of one emitted snapshot. Codes are
 * stored back to back in bytes; slots index them (open addressing, linear
 * probing). Reset keeps the buffers for the next snapshot. */
struct vs_code {
    uint64_t hash;
    uint32_t off;           /* in bytes (a body is at most 1 GiB: codes fit) */
    uint32_t len;           /* 0: empty slot (a stationCode is never empty) */
};

struct vs_codeset {
    char *bytes;
    size_t blen, bcap;
    struct vs_code *slots;
    size_t nslots;          /* 0 or a power of two */
    size_t n;
};

/* A station that left: its code, borrowed from the previous set. */
struct vs_gone {
    const char *code;
    size_t len;
};

struct vs_state {
    const struct spoke_host_api *api;
    struct spoke_instance *inst;
    int httpc_inited;

    /* config (host-owned strings) */
    const char *url;
    const char *info_url;       /* NULL: no join */
    int64_t poll_ms, ttl_max_ms, info_interval_ms;
    struct httpc_opts hopts;    /* timeouts, limits, backoff */

    /* status feed: poll thread only */
    struct httpc *http;
    struct httpc_multi *multi;  /* runs the status GET a slice at a time (VS_SLICE_MS) */
    int inflight;               /* a status GET is running */
    int64_t fetch_t0;           /* when it started (mono ms) */
    int64_t fetch_us0;          /* the same in µs, for snapshot_fetch_us */
    char last_err[SPOKE_ERRSTR_SIZE];   /* the last failed poll's trace (failures > 0) */
    int64_t first_info_deadline;        /* how long the first poll waits for it, or -1 */
    struct vs_feed *feed;
    struct vs_info *info;       /* adopted station_information */
    /* station_information changed since the last emitted rows: those rows'
     * table (NULL: none), kept until the stations whose joined values
     * changed are emitted again, and the status GET that must bring the
     * snapshot back whole (no validators: never a 304). */
    int reemit;
    struct vs_info *info_emitted;
    int refetch;
    int have_prev;              /* prev_luo / prev_digest are set */
    int64_t prev_luo;           /* lastUpdatedOther of the last accepted snapshot */
    int have_digest;
    uint64_t prev_digest;       /* content of the last emitted rows */
    int64_t delivered_luo;      /* offset of records before a snapshot's last one */
    int64_t expiry_mono;        /* when the current snapshot's ttl runs out, or -1 */
    unsigned failures;          /* consecutive failed polls */
    uint64_t rng;
    int first_poll_done;
    int stopping;
    int64_t warm_due;           /* after a trim: when the poll is due (mono ms), or 0 */

    /* tombstones: poll thread only */
    int tombstones;             /* emit.tombstones */
    struct vs_codeset prev;     /* stations of the last emitted snapshot */
    struct vs_codeset next;     /* stations of the snapshot being emitted */
    struct vs_gone *gone;       /* prev minus next */
    size_t ngone, gone_cap;

    /* station_information thread */
    pthread_t info_thread;
    int info_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* CLOCK_MONOTONIC */
    int sync_inited;
    atomic_int info_stop;
    struct vs_info *info_pending;   /* under lock: a new table for the poll thread */
    int info_first_done;            /* under lock: the first attempt has ended */
    struct httpc *info_http;        /* info thread only (after start) */
};

/* ------------------------------------------------------------------------ */
/* Sets of stationCodes (tombstones)                                         */
/* ------------------------------------------------------------------------ */

static uint64_t code_hash(const char *s, size_t len)
{
    /* FNV-1a with a final avalanche: codes are a few bytes long. */
    uint64_t h = 0xcbf29ce484222325ull ^ len;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static void codeset_reset(struct vs_codeset *cs)
{
    if (cs->slots)
        memset(cs->slots, 0, cs->nslots * sizeof(*cs->slots));
    cs->n = 0;
    cs->blen = 0;
}

static void codeset_free(struct vs_codeset *cs)
{
    free(cs->bytes);
    free(cs->slots);
    memset(cs, 0, sizeof(*cs));
}

static int codeset_has(const struct vs_codeset *cs, uint64_t h, const char *s, size_t len)
{
    if (!cs->nslots)
        return 0;
    for (size_t k = h & (cs->nslots - 1);; k = (k + 1) & (cs->nslots - 1)) {
        const struct vs_code *c = &cs->slots[k];
        if (!c->len)
            return 0;
        if (c->hash == h && c->len == len && memcmp(cs->bytes + c->off, s, len) == 0)
            return 1;
    }
}

/* Room for n codes (load at most 1/2) and nbytes more bytes. 0, or -1 on
 * out-of-memory (the set is unchanged). */
static int codeset_reserve(struct vs_codeset *cs, size_t n, size_t nbytes)
{
    if (nbytes > UINT32_MAX - cs->blen)
        return -1;
    if (cs->blen + nbytes > cs->bcap) {
        size_t cap = cs->bcap ? cs->bcap : 1024;
        while (cap < cs->blen + nbytes)
            cap *= 2;
        char *nb = realloc(cs->bytes, cap);
        if (!nb)
            return -1;
        cs->bytes = nb;
        cs->bcap = cap;
    }
    if (2 * n > cs->nslots) {
        size_t ns = cs->nslots ? cs->nslots : 64;
        while (ns < 2 * n)
            ns *= 2;
        struct vs_code *slots = calloc(ns, sizeof(*slots));
        if (!slots)
            return -1;
        for (size_t i = 0; i < cs->nslots; i++) {
            if (!cs->slots[i].len)
                continue;
            size_t k = cs->slots[i].hash & (ns - 1);
            while (slots[k].len)
                k = (k + 1) & (ns - 1);
            slots[k] = cs->slots[i];
        }
        free(cs->slots);
        cs->slots = slots;
        cs->nslots = ns;
    }
    return 0;
}

/* Adds a code (once); the caller reserved room for it. */
static void codeset_add(struct vs_codeset *cs, const char *s, size_t len)
{
    uint64_t h = code_hash(s, len);
    if (codeset_has(cs, h, s, len))
        return;
    size_t k = h & (cs->nslots - 1);
    while (cs->slots[k].len)
        k = (k + 1) & (cs->nslots - 1);
    memcpy(cs->bytes + cs->blen, s, len);
    cs->slots[k] = (struct vs_code){ .hash = h, .off = (uint32_t)cs->blen,
                                     .len = (uint32_t)len };
    cs->blen += len;
    cs->n++;
}

/* Adds every code of src to dst. 0, or -1 on out-of-memory. */
static int codeset_merge(struct vs_codeset *dst, const struct vs_codeset *src)
{
    if (codeset_reserve(dst, dst->n + src->n, src->blen) != 0)
        return -1;
    for (size_t i = 0; i < src->nslots; i++)
        if (src->slots[i].len)
            codeset_add(dst, src->bytes + src->slots[i].off, src->slots[i].len);
    return 0;
}

/* st->next = the batch's codes; st->gone = st->prev minus st->next. 0, or
 * -1 on out-of-memory (nothing emitted yet: the poll fails and retries). */
static int tombstones_prepare(struct vs_state *st, const struct vs_batch *b)
{
    size_t nbytes = 0;
    for (size_t i = 0; i < b->n; i++)
        nbytes += b->klens[i];
    codeset_reset(&st->next);
    if (codeset_reserve(&st->next, b->n, nbytes) != 0)
        return -1;
    for (size_t i = 0; i < b->n; i++)
        codeset_add(&st->next, b->keys[i], b->klens[i]);
    st->ngone = 0;
    if (st->prev.n > st->gone_cap) {
        struct vs_gone *g = realloc(st->gone, st->prev.n * sizeof(*g));
        if (!g)
            return -1;
        st->gone = g;
        st->gone_cap = st->prev.n;
    }
    for (size_t i = 0; i < st->prev.nslots; i++) {
        const struct vs_code *c = &st->prev.slots[i];
        if (c->len && !codeset_has(&st->next, c->hash, st->prev.bytes + c->off, c->len))
            st->gone[st->ngone++] = (struct vs_gone){ st->prev.bytes + c->off, c->len };
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* station_information thread                                                */
/* ------------------------------------------------------------------------ */

/* What the station_information thread carries from one attempt to the
 * next. */
struct info_run {
    unsigned failures;          /* attempts failed (or held back) in a row */
    uint64_t rng;
    size_t published;           /* stations in the last table handed over */
    int64_t *ids;               /* its station_ids, to tell a table that lacks most */
    size_t nids;
    int64_t held_since;         /* tables lacking most stations held back since (mono ms), or -1 */
};

/* Says what parsing a table noticed in its entries: never silent about a
 * value it read from a string or left out. */
static void info_notes_log(struct vs_state *st, const struct vs_info_notes *nt)
{
    const struct spoke_host_api *api = st->api;
    if (nt->coerced)
        api->log(st->inst, SPOKE_LOG_INFO, "station_information: %zu value(s) given as strings "
                 "holding numbers were read as those numbers (the first: %s)", nt->coerced,
                 nt->first_coerced);
    if (nt->refused)
        api->log(st->inst, SPOKE_LOG_WARN, "station_information: %zu value(s) of another type "
                 "were left out, null in the rows (the first: %s)", nt->refused,
                 nt->first_refused);
}

/* The connector's status says what station_information lacks while it
 * does (the host's status_note, when it has one); NULL: nothing. */
static void info_note(struct vs_state *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void info_note(struct vs_state *st, const char *fmt, ...)
{
    if (!SPOKE_API_HAS(st->api, status_note))
        return;
    char note[SPOKE_ERRSTR_SIZE];
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(note, sizeof(note), fmt, ap);
        va_end(ap);
    }
    st->api->status_note(st->inst, fmt ? note : NULL);
}

/* A table that lacks half or more of the last handed-over table's stations
 * (an empty stations array from a glitching feed would strip every row of
 * its name, position and capacity) is held back while the previous one
 * stays; it is taken once the feed has given no better for a whole
 * information.interval.ms. Returns 1 when ni is held back (and freed),
 * with *wait set. */
static int info_hold_back(struct vs_state *st, struct info_run *ir, struct vs_info *ni,
                          int64_t *wait)
{
    const struct spoke_host_api *api = st->api;
    size_t lacking = ir->nids ? vs_info_lacking(ni, ir->ids, ir->nids) : 0;
    int64_t now = httpc_mono_ms();
    char wt[32];

    if (lacking == 0 || lacking * 2 < ir->nids) {
        ir->held_since = -1;
        return 0;
    }
    if (ir->held_since < 0)
        ir->held_since = now;
    if (now - ir->held_since >= st->info_interval_ms) {
        api->log(st->inst, SPOKE_LOG_WARN, "station_information has lacked half or more of the "
                 "stations of the previous table for %s (information.interval.ms): taking it "
                 "(%zu stations; %zu of the %zu previous ones are gone)",
                 httpc_wait_text(now - ir->held_since, wt, sizeof(wt)), vs_info_count(ni),
                 lacking, ir->nids);
        ir->held_since = -1;
        return 0;
    }
    vs_info_free(ni);
    ir->failures++;
    api->metric_add(st->inst, "info_held_back", 1);
    *wait = httpc_backoff_ms(st->hopts.backoff_initial_ms, st->hopts.backoff_max_ms,
                             ir->failures, &ir->rng);
    /* The next attempt no later than when such a table would be taken. */
    if (*wait > ir->held_since + st->info_interval_ms - now)
        *wait = ir->held_since + st->info_interval_ms - now;
    api->log(st->inst, SPOKE_LOG_WARN, "station_information lacks %zu of the %zu stations of "
             "the previous table (a glitch of the feed?): keeping the previous one (taken if it "
             "stays so for information.interval.ms); next attempt in %s", lacking, ir->nids,
             httpc_wait_text(*wait, wt, sizeof(wt)));
    info_note(st, "station_information lacks %zu of the %zu stations of the previous table: "
              "the stations keep the previous one", lacking, ir->nids);
    return 1;
}

/* What one station_information fetch (outcome r) leads to: a new table
 * handed to the poll thread, or a logged failure. Returns how long to wait
 * before the next attempt. err: the fetch's error text (also used as
 * scratch). */
static int64_t info_outcome(struct vs_state *st, struct info_run *ir, enum httpc_result r,
                            const struct httpc_info *fi, char *err)
{
    const struct spoke_host_api *api = st->api;
    struct vs_info *ni = NULL;
    struct vs_info_notes notes;
    size_t len;
    char wt[32];

    if (fi->wire_bytes > 0)
        api->metric_add(st->inst, "bytes_downloaded", fi->wire_bytes);
    if (r == HTTPC_NOT_MODIFIED) {
        api->metric_add(st->inst, "info_not_modified", 1);
        ir->failures = 0;
        info_note(st, NULL);
        return st->info_interval_ms;
    }
    if (r == HTTPC_BODY) {
        const char *body = httpc_body(st->info_http, &len);
        char why[SPOKE_ERRSTR_SIZE];
        /* The body and the parser's buffers (several times the document)
         * are only needed now: released until the next refresh. */
        struct sj_parser *p = sj_parser_new((size_t)st->hopts.max_body, 64);
        int prc = p ? vs_info_parse_notes(p, body, len, &ni, &notes, why, sizeof(why)) : -1;
        if (!p)
            snprintf(why, sizeof(why), "out of memory");
        sj_parser_free(p);
        int64_t wait;
        if (prc == 0 && info_hold_back(st, ir, ni, &wait))
            return wait;  /* not accepted: the next attempt fetches it whole again */
        if (prc == 0) {
            size_t n = vs_info_count(ni), nids;
            int64_t *ids = vs_info_ids(ni, &nids);
            if (ids) {  /* else the last ones stay: a comparison with an older table */
                free(ir->ids);
                ir->ids = ids;
                ir->nids = nids;
            }
            httpc_accept(st->info_http);
            pthread_mutex_lock(&st->lock);
            vs_info_free(st->info_pending);  /* never adopted: superseded */
            st->info_pending = ni;
            pthread_mutex_unlock(&st->lock);
            api->metric_add(st->inst, "info_fetches", 1);
            api->metric_set(st->inst, "info_stations", (int64_t)n);
            if (n != ir->published || ir->failures)
                api->log(st->inst, SPOKE_LOG_INFO, "station_information: %zu stations%s", n,
                         notes.skipped ? " (entries without an integer station_id or "
                                         "repeating one were skipped)" : "");
            info_notes_log(st, &notes);
            info_note(st, NULL);
            ir->published = n;
            ir->failures = 0;
            return st->info_interval_ms;
        }
        snprintf(err, SPOKE_ERRSTR_SIZE, "%s", why);
    }
    if (atomic_load(&st->info_stop))
        return 0;
    ir->failures++;
    api->metric_add(st->inst, "info_errors", 1);
    int64_t wait = httpc_backoff_ms(st->hopts.backoff_initial_ms, st->hopts.backoff_max_ms,
                                    ir->failures, &ir->rng);
    if (wait > st->info_interval_ms)
        wait = st->info_interval_ms;
    if (fi->retry_after_ms > wait)  /* the server's word wins, within a day */
        wait = fi->retry_after_ms < HTTPC_RETRY_AFTER_MAX_MS ? fi->retry_after_ms
                                                             : HTTPC_RETRY_AFTER_MAX_MS;
    if (ir->published) {
        api->log(st->inst, SPOKE_LOG_WARN, "station_information failed: %s; keeping the "
                 "previous one (%zu stations); next attempt in %s", err, ir->published,
                 httpc_wait_text(wait, wt, sizeof(wt)));
        info_note(st, "station_information failed: %s; the stations keep the previous one "
                  "(%zu stations)", err, ir->published);
    } else {
        api->log(st->inst, SPOKE_LOG_WARN, "station_information failed: %s; stations have "
                 "no name, lat, lon, capacity until it succeeds; next attempt in %s", err,
                 httpc_wait_text(wait, wt, sizeof(wt)));
        info_note(st, "station_information failed: %s; stations have no name, lat, lon, "
                  "capacity until it succeeds", err);
    }
    return wait;
}

/* One station_information attempt; returns the wait before the next. */
static int64_t info_refresh(struct vs_state *st, struct info_run *ir)
{
    struct httpc_info fi;
    char err[SPOKE_ERRSTR_SIZE];

    enum httpc_result r = httpc_get(st->info_http, &fi, err, sizeof(err));
    int64_t wait = info_outcome(st, ir, r, &fi, err);
    httpc_trim(st->info_http);
    return wait;
}

static void *info_main(void *arg)
{
    struct vs_state *st = arg;
    struct info_run ir = { .held_since = -1 };
    ir.rng = httpc_rng_seed(&ir);

    pthread_mutex_lock(&st->lock);
    while (!atomic_load(&st->info_stop)) {
        pthread_mutex_unlock(&st->lock);
        int64_t wait = info_refresh(st, &ir);
        int64_t deadline = httpc_mono_ms() + wait;
        pthread_mutex_lock(&st->lock);
        st->info_first_done = 1;
        pthread_cond_broadcast(&st->cond);
        while (!atomic_load(&st->info_stop) && httpc_mono_ms() < deadline) {
            struct timespec ts = { .tv_sec = deadline / 1000,
                                   .tv_nsec = (long)(deadline % 1000) * 1000000 };
            pthread_cond_timedwait(&st->cond, &st->lock, &ts);
        }
    }
    pthread_mutex_unlock(&st->lock);
    free(ir.ids);
    return NULL;
}

/* Longest a poll() call blocks on the network (or on the first
 * station_information attempt): the host learns of a stop only between
 * two calls, so a server that stalls a response never holds up stopping
 * for longer (http_source does the same). */
#define VS_SLICE_MS 200

/* Before the very first status poll: the first station_information attempt
 * should have ended, so the first snapshot is joined. Waits at most a slice
 * for it; 1 once it ended or took longer than one request may (connect and
 * request timeouts, and a second), 0 when poll() should come back for it. */
static int first_info_ready(struct vs_state *st)
{
    int64_t now = httpc_mono_ms();
    if (st->first_info_deadline < 0)
        st->first_info_deadline = now + st->hopts.connect_timeout_ms +
                                  st->hopts.request_timeout_ms + 1000;
    int64_t until = now + VS_SLICE_MS < st->first_info_deadline ? now + VS_SLICE_MS
                                                                 : st->first_info_deadline;
    pthread_mutex_lock(&st->lock);
    while (!st->info_first_done && httpc_mono_ms() < until) {
        struct timespec ts = { .tv_sec = until / 1000,
                               .tv_nsec = (long)(until % 1000) * 1000000 };
        pthread_cond_timedwait(&st->cond, &st->lock, &ts);
    }
    int done = st->info_first_done;
    pthread_mutex_unlock(&st->lock);
    return done || httpc_mono_ms() >= st->first_info_deadline;
}

/* The rows emitted last were built with the current table again: nothing
 * to emit again. */
static void reemit_done(struct vs_state *st)
{
    vs_info_free(st->info_emitted);
    st->info_emitted = NULL;
    st->reemit = 0;
}

/* Takes the table the station_information thread handed over, if any. When
 * it joins other values than the table of the rows emitted last, the next
 * poll emits again the stations whose values changed, even if the status
 * feed did not change (same lastUpdatedOther, or a 304). */
static void adopt_info(struct vs_state *st)
{
    struct vs_info *ni, *base;
    pthread_mutex_lock(&st->lock);
    ni = st->info_pending;
    st->info_pending = NULL;
    pthread_mutex_unlock(&st->lock);
    if (!ni)
        return;
    if (!st->have_digest) {  /* nothing emitted yet */
        vs_info_free(st->info);
        st->info = ni;
        return;
    }
    base = st->reemit ? st->info_emitted : st->info;
    if (st->reemit)
        vs_info_free(st->info);  /* no row was built with it */
    st->info = ni;
    st->info_emitted = NULL;
    st->reemit = 0;
    if (vs_info_same(base, ni)) {
        vs_info_free(base);
        return;
    }
    st->info_emitted = base;
    st->reemit = 1;
    st->refetch = 1;
    st->api->log(st->inst, SPOKE_LOG_INFO, "station_information changed: the stations whose "
                 "name, lat, lon or capacity changed are emitted again with the next poll");
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                 */
/* ------------------------------------------------------------------------ */

static void vs_destroy(void *vst);

/* What init checks of the config before it opens anything: both URLs
 * (absolute, http or https, a host) and the backoff bounds. */
/* The rules between keys, every problem in p. */
static void vs_rules(const struct spoke_host_api *api, const struct spoke_config *cfg,
                     struct problems *p)
{
    const char *info = api->config_string(cfg, "information.url");
    struct httpc_opts o;
    char msg[SPOKE_ERRSTR_SIZE];
    problems_init(p);
    if (httpc_url_check("url", api->config_string(cfg, "url"), NULL, msg, sizeof(msg)) != 0)
        problem(p, "url", "%s", msg);
    if (info && *info && httpc_url_check("information.url", info, NULL, msg, sizeof(msg)) != 0)
        problem(p, "information.url", "%s", msg);
    httpc_opts_read(api, cfg, &o);
    httpc_opts_check(&o, p);
}

static int vs_check(const struct spoke_host_api *api, const struct spoke_config *cfg,
                    const char **key, char *errstr, size_t errstr_size)
{
    struct problems p;
    vs_rules(api, cfg, &p);
    return problems_report_api(&p, api, cfg, key, errstr, errstr_size);
}

static int vs_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                   const struct spoke_config *cfg, void **out, char *errstr, size_t errstr_size)
{
    struct vs_state *st = calloc(1, sizeof(*st));
    const char *const *codes = NULL;
    struct vs_feed_opts fo;
    pthread_condattr_t ca;

    if (!st) {
        snprintf(errstr, errstr_size, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    st->api = api;
    st->inst = inst;
    st->expiry_mono = -1;
    st->first_info_deadline = -1;
    st->rng = httpc_rng_seed(st);
    atomic_init(&st->info_stop, 0);
    st->url = api->config_string(cfg, "url");
    st->info_url = api->config_string(cfg, "information.url");
    if (st->info_url && !*st->info_url)
        st->info_url = NULL;
    st->info_interval_ms = api->config_int(cfg, "information.interval.ms");
    fo.ncodes = api->config_list(cfg, "station.codes", &codes);
    fo.codes = codes;
    st->poll_ms = api->config_int(cfg, "poll.interval.ms");
    st->ttl_max_ms = api->config_int(cfg, "ttl.max.ms");
    st->tombstones = api->config_bool(cfg, "emit.tombstones");

    if (pthread_mutex_init(&st->lock, NULL) != 0) {
        free(st);
        snprintf(errstr, errstr_size, "cannot create a mutex");
        return SPOKE_ERR;
    }
    if (pthread_condattr_init(&ca) != 0 ||
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&st->cond, &ca) != 0) {
        pthread_mutex_destroy(&st->lock);
        free(st);
        snprintf(errstr, errstr_size, "cannot create a condition variable");
        return SPOKE_ERR;
    }
    pthread_condattr_destroy(&ca);
    st->sync_inited = 1;

    /* The host ran vs_check already; init keeps the rules for itself (the
     * problems joined: check_problem is for check() alone). */
    const char *bad_key;
    struct problems p;
    vs_rules(api, cfg, &p);
    if (problems_report(&p, &bad_key, errstr, errstr_size, NULL, NULL) != SPOKE_OK)
        goto invalid;
    httpc_opts_read(api, cfg, &st->hopts);
    if (httpc_opts_open(&st->hopts, errstr, errstr_size) != 0)
        goto fail;

    if (httpc_global_init(errstr, errstr_size) != 0)
        goto fail;
    st->httpc_inited = 1;
    if (!(st->http = httpc_new(st->url, NULL, &st->hopts, NULL, 0, NULL, errstr, errstr_size)))
        goto fail;
    if (!(st->multi = httpc_multi_new())) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    if (st->info_url) {
        if (!(st->info_http = httpc_new(st->info_url, NULL, &st->hopts, NULL, 0, &st->info_stop,
                                        errstr, errstr_size)))
            goto fail;
    }
    fo.with_info = st->info_url != NULL;
    if (!(st->feed = vs_feed_new(api, inst, &fo, (size_t)st->hopts.max_body, errstr,
                                 errstr_size)))
        goto fail;
    *out = st;
    return SPOKE_OK;

invalid:
    vs_destroy(st);
    return SPOKE_ERR_INVALID;
fail:
    vs_destroy(st);
    return SPOKE_ERR;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Where an emitted snapshot's time went, in microseconds: the HTTP
 * exchange, the parse, the check, then building and emitting its records
 * (waits on a full queue included). Summed over snapshots (the metrics
 * snapshot_*_us): divided by `snapshots`, a mean per snapshot. */
static const char *const stage_metrics[4] = { "snapshot_fetch_us", "snapshot_parse_us",
                                               "snapshot_check_us", "snapshot_emit_us" };

static void note_stages(struct vs_state *st, const int64_t us[5])
{
    for (int k = 0; k < 4; k++)
        st->api->metric_add(st->inst, stage_metrics[k], us[k + 1] - us[k]);
}

static int vs_start(void *vst, char *errstr, size_t errstr_size)
{
    struct vs_state *st = vst;
    const struct spoke_host_api *api = st->api;
    static const char *const metrics[] = {
        "polls", "snapshots", "stations_emitted", "not_modified", "unchanged", "errors",
        "last_snapshot_ts", "bytes_downloaded", "tombstones_emitted", NULL
    };
    int64_t off = 0;

    for (size_t i = 0; metrics[i]; i++)
        api->metric_set(st->inst, metrics[i], 0);
    for (size_t i = 0; i < 4; i++)
        api->metric_set(st->inst, stage_metrics[i], 0);
    if (st->info_url) {
        api->metric_set(st->inst, "info_fetches", 0);
        api->metric_set(st->inst, "info_errors", 0);
        api->metric_set(st->inst, "info_not_modified", 0);
        api->metric_set(st->inst, "info_stations", 0);
        api->metric_set(st->inst, "info_held_back", 0);
        api->metric_set(st->inst, "info_reemitted", 0);
    }

    /* Resume: the snapshot at the committed offset was delivered whole. */
    if (api->offset_get(st->inst, st->url, &off) == SPOKE_OK && off > 0) {
        st->have_prev = 1;
        st->prev_luo = off;
        st->delivered_luo = off;
        api->log(st->inst, SPOKE_LOG_INFO, "resuming: the snapshot with lastUpdatedOther "
                 "%" PRId64 " was delivered; it is not emitted again", off);
    }

    if (st->info_url) {
        int rc = pthread_create(&st->info_thread, NULL, info_main, st);
        if (rc != 0) {
            snprintf(errstr, errstr_size, "cannot start the station_information thread: %s",
                     strerror(rc));
            return SPOKE_ERR;
        }
        st->info_started = 1;
    }
    api->log(st->inst, SPOKE_LOG_INFO, "polling %s every %" PRId64 " ms%s%s", st->url,
             st->poll_ms, st->info_url ? ", joined with " : "",
             st->info_url ? st->info_url : "");
    return SPOKE_OK;
}

static void stop_info_thread(struct vs_state *st)
{
    if (!st->info_started)
        return;
    pthread_mutex_lock(&st->lock);
    atomic_store(&st->info_stop, 1);
    pthread_cond_broadcast(&st->cond);
    pthread_mutex_unlock(&st->lock);
    pthread_join(st->info_thread, NULL);
    st->info_started = 0;
}

/* Called once poll() has returned (never during it): a status GET still
 * running (poll() runs it a slice at a time) is dropped here, its
 * connection closed. */
static void vs_stop(void *vst)
{
    struct vs_state *st = vst;
    st->stopping = 1;
    stop_info_thread(st);
    httpc_multi_free(st->multi);
    st->multi = NULL;
    st->inflight = 0;
}

static void vs_destroy(void *vst)
{
    struct vs_state *st = vst;
    if (!st)
        return;
    stop_info_thread(st);
    httpc_multi_free(st->multi);  /* before the handle it may still run */
    vs_feed_free(st->feed);
    vs_info_free(st->info);
    vs_info_free(st->info_emitted);
    vs_info_free(st->info_pending);
    httpc_free(st->http);
    httpc_free(st->info_http);
    httpc_opts_close(&st->hopts);
    codeset_free(&st->prev);
    codeset_free(&st->next);
    free(st->gone);
    if (st->httpc_inited)
        httpc_global_cleanup();
    if (st->sync_inited) {
        pthread_cond_destroy(&st->cond);
        pthread_mutex_destroy(&st->lock);
    }
    free(st);
}

/* ------------------------------------------------------------------------ */
/* Polling                                                                   */
/* ------------------------------------------------------------------------ */

/* The wait after a poll that went well: poll.interval.ms from the start of
 * its GET (fetch_t0), or until the snapshot's ttl runs out when that is
 * later, counted from t_call, the start of the poll() call that ended it
 * (the host counts the wait from there). */
static int64_t next_after_success(const struct vs_state *st, int64_t t_call)
{
    int64_t next = st->fetch_t0 + st->poll_ms - t_call;
    if (st->expiry_mono >= 0 && st->expiry_mono - t_call > next)
        next = st->expiry_mono - t_call;
    return next > 0 ? next : 0;
}

/* Remembers when the ttl of a snapshot runs out: lastUpdatedOther + ttl,
 * measured on the server's clock (its Date header) when it sent one, never
 * more than ttl (a clock ahead of the server's) or ttl.max.ms away. */
static void note_ttl(struct vs_state *st, const struct vs_header *hdr,
                     const struct httpc_info *fi)
{
    st->expiry_mono = -1;
    if (hdr->ttl < 0 || st->ttl_max_ms == 0)
        return;
    /* A ttl of more than a day would be cut by ttl.max.ms anyway. */
    int64_t ttl_ms = (hdr->ttl > 86400 ? 86400 : hdr->ttl) * 1000;
    int64_t now = fi->server_now_ms >= 0 ? fi->server_now_ms : st->api->wall_ms();
    int64_t left = hdr->last_updated * 1000 + ttl_ms - now;
    if (left <= 0)
        return;
    if (left > ttl_ms)
        left = ttl_ms;
    if (left > st->ttl_max_ms)
        left = st->ttl_max_ms;
    st->expiry_mono = httpc_mono_ms() + left + HTTPC_SCHEDULE_MARGIN_MS;
}

/* A failed poll: previous state kept, SPOKE_RETRY with the reason and the
 * wait (backoff, or the server's Retry-After when that is longer). t_call:
 * the start of this poll() call. */
static int poll_failed(struct vs_state *st, int64_t t_call, const char *reason,
                       int64_t retry_after_ms, int64_t *next_poll_ms,
                       char *errstr, size_t errstr_size)
{
    const struct spoke_host_api *api = st->api;
    int64_t wait;
    char wt[32];

    st->failures++;
    api->metric_add(st->inst, "errors", 1);
    /* A Retry-After counts from the response, which came (now - t_call)
     * into poll(), and the host counts the wait from poll()'s start. */
    wait = httpc_retry_wait(&st->hopts, st->failures, &st->rng, retry_after_ms,
                            httpc_mono_ms() - t_call);
    httpc_wait_text(wait, wt, sizeof(wt));
    api->log(st->inst, SPOKE_LOG_WARN, "poll failed (%u in a row): %s; next attempt in %s",
             st->failures, reason, wt);
    snprintf(errstr, errstr_size, "%s; next attempt in %s", reason, wt);
    /* Shown again while the next attempt's GET runs (poll() returns
     * between its slices). */
    snprintf(st->last_err, sizeof(st->last_err), "%s", errstr);
    *next_poll_ms = wait;
    return SPOKE_RETRY;
}

static void report_missing(void *ctx, const char *code)
{
    struct vs_state *st = ctx;
    st->api->log(st->inst, SPOKE_LOG_WARN, "station.codes: %s is not in the feed (lastUpdatedOther "
                 "%" PRId64 "); it gets no row until it appears", code, st->prev_luo);
}

/* Hands one record to the host: position, timestamp, emit. Returns
 * SPOKE_OK, 1 when the host is stopping (st->stopping is set), or an error
 * with errstr set. Takes rec. */
static int emit_one(struct vs_state *st, struct spoke_record *rec, int64_t off, int64_t ts_ms,
                    char *errstr, size_t errstr_size)
{
    const struct spoke_host_api *api = st->api;
    int rc = api->record_set_position(rec, st->url, off);
    if (rc != SPOKE_OK) {
        api->record_free(rec);
        snprintf(errstr, errstr_size, "cannot build a record: %s", api->strerror(rc));
        return rc;
    }
    api->record_set_timestamp(rec, ts_ms);
    rc = api->emit(st->inst, rec);  /* takes rec, whatever it returns */
    if (rc == SPOKE_ERR_STOPPED) {
        st->stopping = 1;
        return 1;
    }
    if (rc != SPOKE_OK) {
        snprintf(errstr, errstr_size, "emit failed: %s", api->strerror(rc));
        return rc;
    }
    return SPOKE_OK;
}

/* Emits the batch (idx NULL), then a tombstone per station in st->gone
 * (none unless tombstones_prepare ran for this batch); or only the n
 * stations of the batch idx lists, and no tombstone. The last record of
 * them all carries luo, the others the delivered snapshot's offset. Each
 * station's row is built just before its record is emitted: the host hands
 * records on in groups as they come, so the next task works on the first
 * stations while the last ones are being built. Returns SPOKE_OK (all
 * emitted, or the host is stopping) or an error with errstr set. */
static int emit_batch(struct vs_state *st, struct vs_batch *b, const size_t *idx, size_t n,
                      int64_t luo, size_t *emitted, size_t *tombs, char *errstr,
                      size_t errstr_size)
{
    const struct spoke_host_api *api = st->api;
    size_t ngone = idx ? 0 : st->ngone, total = n + ngone;
    int rc;
    *emitted = *tombs = 0;
    for (size_t k = 0; k < n; k++) {
        size_t i = idx ? idx[k] : k;
        struct spoke_row *row = vs_feed_row(st->feed, st->info, i);
        if (!row) {
            snprintf(errstr, errstr_size, "out of memory building the row of station %.*s",
                     (int)(b->klens[i] > 40 ? 40 : b->klens[i]), b->keys[i]);
            return SPOKE_ERR_NOMEM;
        }
        struct spoke_record *rec = api->record_new(st->inst, NULL, b->keys[i], b->klens[i],
                                                   NULL, 0);
        if (!rec) {
            api->row_free(row);
            snprintf(errstr, errstr_size, "out of memory creating a record");
            return SPOKE_ERR_NOMEM;
        }
        rc = api->record_set_row(rec, row);  /* takes the row, always */
        if (rc != SPOKE_OK) {
            api->record_free(rec);
            snprintf(errstr, errstr_size, "cannot build a record: %s", api->strerror(rc));
            return rc;
        }
        rc = emit_one(st, rec, k + 1 == total ? luo : st->delivered_luo, b->ts_ms[i], errstr,
                      errstr_size);
        if (rc != SPOKE_OK)
            return rc > 0 ? SPOKE_OK : rc;
        (*emitted)++;
    }
    /* Tombstones: the station is gone as of this snapshot. */
    for (size_t j = 0; j < ngone; j++) {
        struct spoke_record *rec = api->record_new(st->inst, NULL, st->gone[j].code,
                                                   st->gone[j].len, NULL, 0);
        if (!rec) {
            snprintf(errstr, errstr_size, "out of memory creating a tombstone");
            return SPOKE_ERR_NOMEM;
        }
        rc = emit_one(st, rec, n + j + 1 == total ? luo : st->delivered_luo, luo * 1000,
                      errstr, errstr_size);
        if (rc != SPOKE_OK)
            return rc > 0 ? SPOKE_OK : rc;
        (*tombs)++;
    }
    return SPOKE_OK;
}

/* Emits again the stations of the checked batch (the snapshot emitted
 * last, under the same lastUpdatedOther) whose joined name, lat, lon or
 * capacity differ from those of the rows emitted last (st->info_emitted).
 * Returns SPOKE_OK or an error with errstr set; *emitted: records out. */
static int reemit_changed(struct vs_state *st, struct vs_batch *b, int64_t luo, size_t *emitted,
                          char *errstr, size_t errstr_size)
{
    size_t n = 0, tombs = 0, *idx = malloc((b->n ? b->n : 1) * sizeof(*idx));
    *emitted = 0;
    if (!idx) {
        snprintf(errstr, errstr_size, "out of memory listing the stations to emit again");
        return SPOKE_ERR_NOMEM;
    }
    for (size_t i = 0; i < b->n; i++)
        if (vs_feed_joined_changed(st->feed, i, st->info_emitted))
            idx[n++] = i;
    int rc = emit_batch(st, b, idx, n, luo, emitted, &tombs, errstr, errstr_size);
    free(idx);
    return rc;
}

/* Starts a status GET: the station_information table handed over since the
 * last one is adopted first. 0, or -1 with reason set. */
static int start_fetch(struct vs_state *st, int64_t t_call, char *reason, size_t reason_size)
{
    adopt_info(st);
    if (st->refetch) {
        /* The snapshot must come back whole, even if unchanged: a new
         * handle has no validators to send (the connection stays in the
         * multi handle's cache). */
        struct httpc *h = httpc_new(st->url, NULL, &st->hopts, NULL, 0, NULL, reason,
                                    reason_size);
        if (!h)
            return -1;
        httpc_free(st->http);
        st->http = h;
        st->refetch = 0;
    }
    st->api->metric_add(st->inst, "polls", 1);
    st->fetch_t0 = t_call;
    st->fetch_us0 = mono_us();
    httpc_multi_start(st->multi, st->http);
    st->inflight = 1;
    return 0;
}

/*
 * One poll() call. A status GET runs a slice (VS_SLICE_MS) at a time: while
 * it runs, poll() returns to the host between slices (SPOKE_OK and no wait,
 * or SPOKE_RETRY with the last failure while the connector is retrying),
 * so stopping never waits for a stalled server. The GET that ends is
 * handled in the call where it ended.
 */
static int poll_once(struct vs_state *st, int64_t *next_poll_ms, char *errstr,
                     size_t errstr_size)
{
    const struct spoke_host_api *api = st->api;
    int64_t t_call = httpc_mono_ms();
    struct httpc_info fi;
    struct vs_header hdr;
    struct vs_batch *b = NULL;
    char reason[SPOKE_ERRSTR_SIZE];
    const char *err;
    size_t len, emitted = 0, tombs = 0;
    int rc;

    *next_poll_ms = st->poll_ms;
    if (st->stopping)
        return SPOKE_OK;
    if (!st->first_poll_done) {
        if (st->info_started && !first_info_ready(st)) {
            *next_poll_ms = 0;
            return SPOKE_OK;
        }
        st->first_poll_done = 1;
    }
    if (!st->inflight && start_fetch(st, t_call, reason, sizeof(reason)) != 0)
        return poll_failed(st, t_call, reason, -1, next_poll_ms, errstr, errstr_size);
    for (;;) {
        if (httpc_ended(st->http))
            break;
        int64_t left = t_call + VS_SLICE_MS - httpc_mono_ms();
        if (left <= 0) {
            if (st->failures) {
                snprintf(errstr, errstr_size, "%s", st->last_err);
                *next_poll_ms = 1;  /* 0 would let the host apply its own backoff */
                return SPOKE_RETRY;
            }
            *next_poll_ms = 0;
            return SPOKE_OK;
        }
        httpc_multi_wait(st->multi, left);
    }
    st->inflight = 0;
    /* Its records' latency counts from the GET's start, not from this
     * call's (the GET's last slice when the server was slow). */
    if (SPOKE_API_HAS(api, poll_started_at))
        api->poll_started_at(st->inst, st->fetch_us0 * 1000);

    int64_t us[5];
    us[0] = st->fetch_us0;
    us[1] = mono_us();
    enum httpc_result r = httpc_outcome(st->http, &fi, &err);
    if (fi.wire_bytes > 0)
        api->metric_add(st->inst, "bytes_downloaded", fi.wire_bytes);
    if (r == HTTPC_FAILED) {
        snprintf(reason, sizeof(reason), "%s", err);
        return poll_failed(st, t_call, reason, fi.retry_after_ms, next_poll_ms, errstr,
                           errstr_size);
    }
    if (r == HTTPC_NOT_MODIFIED) {
        api->metric_add(st->inst, "not_modified", 1);
        goto good;
    }

    const char *body = httpc_body(st->http, &len);
    char why[SPOKE_ERRSTR_SIZE];
    /* The body's padding lets the parser read it in place (no copy). */
    _Static_assert(HTTPC_BODY_PADDING >= SJ_PADDING, "httpc pads bodies enough for sjson");
    if (vs_feed_parse_padded(st->feed, body, len, len + HTTPC_BODY_PADDING, &hdr, why,
                             sizeof(why)) != 0) {
        snprintf(reason, sizeof(reason), "bad snapshot: %.230s", why);
        return poll_failed(st, t_call, reason, -1, next_poll_ms, errstr, errstr_size);
    }
    us[2] = mono_us();
    note_ttl(st, &hdr, &fi);
    /* The snapshot emitted last (as far as the feed says). */
    int same = st->have_prev && hdr.last_updated == st->prev_luo;
    if (same && !st->reemit) {
        api->metric_add(st->inst, "unchanged", 1);
        httpc_accept(st->http);
        goto good;
    }
    if (vs_feed_check(st->feed, st->info, &b, why, sizeof(why)) != 0) {
        snprintf(reason, sizeof(reason), "bad snapshot (lastUpdatedOther %" PRId64 "): %.200s",
                 hdr.last_updated, why);
        return poll_failed(st, t_call, reason, -1, next_poll_ms, errstr, errstr_size);
    }
    us[3] = mono_us();
    st->prev_luo = hdr.last_updated;
    st->have_prev = 1;
    vs_feed_missing_codes(st->feed, report_missing, st);
    if (st->have_digest && b->digest == st->prev_digest) {
        /* A new lastUpdatedOther over the same content, or a
         * station_information change no selected station shows: nothing
         * new to say. */
        api->metric_add(st->inst, "unchanged", 1);
        vs_feed_batch_clear(st->feed);
        reemit_done(st);
        httpc_accept(st->http);
        goto good;
    }
    if (same) {
        /* Only station_information changed since these rows went out. */
        rc = reemit_changed(st, b, hdr.last_updated, &emitted, reason, sizeof(reason));
        vs_feed_batch_clear(st->feed);
        /* Counted apart: stations_emitted stays the stations of the
         * snapshots emitted. */
        if (emitted)
            api->metric_add(st->inst, "info_reemitted", (int64_t)emitted);
        if (rc != SPOKE_OK) {
            st->have_prev = 0;  /* the whole snapshot again once the host can take it */
            return poll_failed(st, t_call, reason, -1, next_poll_ms, errstr, errstr_size);
        }
        if (st->stopping)
            return SPOKE_OK;
        api->log(st->inst, SPOKE_LOG_INFO, "station_information changed: %zu station(s) of "
                 "snapshot %" PRId64 " emitted again with their new name, lat, lon or capacity",
                 emitted, hdr.last_updated);
        st->prev_digest = b->digest;
        st->delivered_luo = hdr.last_updated;
        reemit_done(st);
        httpc_accept(st->http);
        goto good;
    }

    st->ngone = 0;
    if (st->tombstones && tombstones_prepare(st, b) != 0) {
        vs_feed_batch_clear(st->feed);
        st->have_prev = 0;
        snprintf(reason, sizeof(reason), "out of memory listing the stations of snapshot "
                 "%" PRId64, hdr.last_updated);
        return poll_failed(st, t_call, reason, -1, next_poll_ms, errstr, errstr_size);
    }
    if (st->tombstones && st->next.n < b->n)
        api->log(st->inst, SPOKE_LOG_WARN, "snapshot %" PRId64 " lists %zu stationCode(s) "
                 "more than once: every copy is emitted, and downstream the last one counts",
                 hdr.last_updated, b->n - st->next.n);
    if (st->ngone > 0 && st->ngone * 2 >= st->prev.n)
        api->log(st->inst, SPOKE_LOG_WARN, "snapshot %" PRId64 " lacks %zu of the %zu "
                 "stations of the previous one (a glitch of the feed?): each gets a tombstone",
                 hdr.last_updated, st->ngone, st->prev.n);
    rc = emit_batch(st, b, NULL, b->n, hdr.last_updated, &emitted, &tombs, reason,
                    sizeof(reason));
    us[4] = mono_us();
    vs_feed_batch_clear(st->feed);
    if (emitted)
        api->metric_add(st->inst, "stations_emitted", (int64_t)emitted);
    if (tombs)
        api->metric_add(st->inst, "tombstones_emitted", (int64_t)tombs);
    if (rc != SPOKE_OK) {
        st->have_prev = 0;  /* emit this snapshot again once the host can take it */
        /* Some of its stations may be downstream now: the next snapshot
         * must tombstone them too if they are gone by then. */
        if (st->tombstones && codeset_merge(&st->prev, &st->next) != 0) {
            codeset_reset(&st->prev);
            api->log(st->inst, SPOKE_LOG_WARN, "out of memory: the next snapshot emits no "
                     "tombstones");
        }
        return poll_failed(st, t_call, reason, -1, next_poll_ms, errstr, errstr_size);
    }
    if (st->stopping)
        return SPOKE_OK;
    if (st->tombstones) {
        struct vs_codeset t = st->prev;
        st->prev = st->next;
        st->next = t;
    }
    st->prev_digest = b->digest;
    st->have_digest = 1;
    st->delivered_luo = hdr.last_updated;
    reemit_done(st);  /* these rows have the current table */
    httpc_accept(st->http);
    note_stages(st, us);
    api->metric_add(st->inst, "snapshots", 1);
    api->metric_set(st->inst, "last_snapshot_ts", hdr.last_updated);
    api->log(st->inst, SPOKE_LOG_DEBUG, "snapshot %" PRId64 ": %zu stations emitted of %zu, "
             "%zu tombstones", hdr.last_updated, emitted, hdr.nstations, tombs);

good:
    if (st->failures)
        api->log(st->inst, SPOKE_LOG_INFO, "poll succeeded after %u failures", st->failures);
    st->failures = 0;
    *next_poll_ms = next_after_success(st, t_call);
    return SPOKE_OK;
}

/* Between polls at least this far apart (ms), the buffers sized for a
 * snapshot are released: the body, the parser's (about 3 MB resident for
 * the 1 MB Vélib' feed) and the scratch lists of a snapshot. Allocating
 * them again costs each poll about 700 page faults, 1 to 1.5 ms on the
 * development VM (done ahead of the poll: VS_WARM_AHEAD_MS): from one
 * second on that is at most 0.15% of a core. The host's allocator returns
 * freed pages to the system after about a second, so releasing them for a
 * shorter wait would cost that time without lowering RSS. */
#define VS_TRIM_MIN_MS 1000

/* After a good poll that released them, the body and parser buffers are
 * allocated and faulted in again this long before the next poll
 * (a call of its own), out of the time from poll to output: at 60 s between
 * polls they are resident for 50 ms of each minute more. bench/README:
 * faulting them in during the poll cost about 0.7 ms of parse and 0.7 of
 * fetch. */
#define VS_WARM_AHEAD_MS 50

/* The call VS_WARM_AHEAD_MS before a poll: warms the buffers. */
static void warm_buffers(struct vs_state *st)
{
    int body = httpc_warm(st->http) == 0;
    size_t feed = vs_feed_warm(st->feed);
    if (feed)
        st->api->metric_add(st->inst, "buffers_warmed", 1);
    st->api->log(st->inst, SPOKE_LOG_DEBUG, "snapshot buffers warmed for the next poll "
                 "(parser %zu KiB%s)", feed / 1024,
                 body ? "" : "; not the body: out of memory");
}

static int vs_poll(void *vst, int64_t *next_poll_ms, char *errstr, size_t errstr_size)
{
    struct vs_state *st = vst;
    /* The host counts the next wait from this call's start. */
    int64_t t0 = httpc_mono_ms();
    if (st->warm_due) {
        int64_t due = st->warm_due;
        st->warm_due = 0;
        if (!st->stopping)
            warm_buffers(st);
        if (due > t0 && !st->stopping) {
            *next_poll_ms = due - t0;
            return SPOKE_OK;
        }
    }
    int rc = poll_once(st, next_poll_ms, errstr, errstr_size);
    if (*next_poll_ms >= VS_TRIM_MIN_MS && !st->inflight) {
        vs_feed_trim(st->feed);
        httpc_trim(st->http);
        /* What tombstones need (st->prev) stays; the rest is rebuilt. */
        codeset_free(&st->next);
        free(st->gone);
        st->gone = NULL;
        st->ngone = st->gone_cap = 0;
        st->api->log(st->inst, SPOKE_LOG_DEBUG, "snapshot buffers released until the next poll "
                     "(in %" PRId64 " ms)", *next_poll_ms);
        /* Not after a failure: the call in between would clear the
         * connector's retrying state. */
        if (rc == SPOKE_OK && !st->failures) {
            st->warm_due = t0 + *next_poll_ms;
            *next_poll_ms -= VS_WARM_AHEAD_MS;
        }
    }
    return rc;
}

static const struct spoke_plugin velib_source = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "velib_source",
    .kind        = SPOKE_KIND_SOURCE,
    .version     = "0.1.0",
    .description = "Polls a GBFS station_status feed (Velib) and emits one typed row per "
                   "station per new snapshot",
    .config      = vs_config,
    .init        = vs_init,
    .start       = vs_start,
    .poll        = vs_poll,
    .stop        = vs_stop,
    .destroy     = vs_destroy,
    .check       = vs_check,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void)
{
    return &velib_source;
}
