/*
 * spoke/plugin.h - the Spoke plugin ABI.
 *
 * This is the ONLY header a Spoke plugin includes. It depends on libc headers
 * and <jansson.h> (jansson is the project's declared JSON library and the one
 * third-party type in the ABI) and on nothing else.
 *
 * Compatibility rules
 * -------------------
 *  - A plugin is a shared object exporting exactly one symbol,
 *    spoke_plugin_entry(), which returns a pointer to a constant descriptor.
 *    No other code of the plugin runs before the host has checked the
 *    descriptor's header (magic, ABI version, size, reserved == 0).
 *  - SPOKE_ABI_VERSION changes whenever a public struct changes in a way an
 *    older plugin could not survive. The host refuses a plugin built for a
 *    newer ABI than its own, and one older than SPOKE_ABI_MIN_VERSION.
 *  - struct spoke_host_api is append-only: entries are never removed or
 *    reordered. Each group is tagged with the ABI version that added it. A
 *    plugin that uses an entry added after the ABI it was built against checks
 *    SPOKE_API_HAS(api, entry) first.
 *  - enum spoke_status is append-only and values are never renumbered.
 *  - Records, rows, schemas, configs and instances are opaque handles: their
 *    layout is private to the host and may change at any time.
 *
 * Ownership, in one line: the host owns every record in flight; a plugin owns
 * only what it created and has not handed over yet. Every declaration below
 * says who owns what and for how long. Memory that crosses the boundary is
 * allocated with api->alloc and released with api->free.
 *
 * Threading: the host calls one instance's callbacks from a single thread at
 * a time (its task thread), never concurrently. Host API functions are
 * thread-safe unless stated otherwise.
 */
#ifndef SPOKE_PLUGIN_H
#define SPOKE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SPOKE_PLUGIN_MAGIC     0x454b5053u /* "SPKE" read as little-endian bytes */
#define SPOKE_ABI_VERSION      1u          /* the ABI this header describes */
#define SPOKE_ABI_MIN_VERSION  1u          /* oldest plugin ABI a host accepts */

#if defined(__GNUC__)
#define SPOKE_EXPORT __attribute__((visibility("default")))
#define SPOKE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SPOKE_EXPORT
#define SPOKE_PRINTF(a, b)
#endif

/* Size the host gives every errstr buffer. Plugins write at most
 * errstr_size bytes including the terminating NUL (use snprintf). */
#define SPOKE_ERRSTR_SIZE 256

/*
 * Status codes. SPOKE_OK is success, failures are negative, and positive
 * values are non-failure outcomes that tell the host what to do next.
 * Append-only; never renumber. spoke_strerror() in the host maps each value
 * (plugins get the text through api->strerror).
 */
enum spoke_status {
    SPOKE_OK            = 0,
    SPOKE_RETRY         = 1,   /* transient failure: call again later with the same input */
    SPOKE_DROP          = 2,   /* transform: the record is consumed, forward nothing */
    SPOKE_PENDING       = 3,   /* sink flush: delivery under way (asynchronous sinks) */

    SPOKE_ERR           = -1,  /* generic failure; details in errstr */
    SPOKE_ERR_INVALID   = -2,  /* invalid argument, config or input record */
    SPOKE_ERR_NOMEM     = -3,  /* out of memory */
    SPOKE_ERR_IO        = -4,  /* I/O error (file, socket) */
    SPOKE_ERR_PARSE     = -5,  /* malformed input data */
    SPOKE_ERR_NOTFOUND  = -6,  /* no such key, field, offset or plugin */
    SPOKE_ERR_STATE     = -7,  /* call not valid in the current state */
    SPOKE_ERR_TIMEOUT   = -8,  /* operation timed out */
    SPOKE_ERR_STOPPED   = -9,  /* the host is stopping this instance */
    SPOKE_ERR_TYPE      = -10, /* value has another type than asked for */
    SPOKE_ERR_RANGE     = -11  /* value out of range */
};

/* What a plugin is. */
enum spoke_kind {
    SPOKE_KIND_SOURCE    = 1,  /* produces records: poll() */
    SPOKE_KIND_TRANSFORM = 2,  /* changes, filters or fans out records: process() */
    SPOKE_KIND_SINK      = 3   /* delivers records elsewhere: put() + flush() */
};

/* Log levels, most to least severe. */
enum spoke_log_level {
    SPOKE_LOG_ERROR = 0,
    SPOKE_LOG_WARN  = 1,
    SPOKE_LOG_INFO  = 2,
    SPOKE_LOG_DEBUG = 3,
    SPOKE_LOG_TRACE = 4
};

/* ------------------------------------------------------------------------ */
/* Configuration tables                                                      */
/* ------------------------------------------------------------------------ */

/* Types of config values. Every value arrives as text (YAML scalar or REST
 * string) and is checked against the type before init() sees it. */
enum spoke_cfg_type {
    SPOKE_CFG_STRING   = 1,
    SPOKE_CFG_INT      = 2,  /* 32-bit signed integer */
    SPOKE_CFG_LONG     = 3,  /* 64-bit signed integer */
    SPOKE_CFG_DOUBLE   = 4,
    SPOKE_CFG_BOOL     = 5,  /* true/false (case-insensitive) */
    SPOKE_CFG_LIST     = 6,  /* comma-separated string or YAML sequence of strings */
    SPOKE_CFG_PASSWORD = 7   /* a string that is secret: never logged, masked on output */
};

/* Flags of a config field. */
#define SPOKE_CFG_REQUIRED 0x1u  /* must be given; a default is then meaningless */
#define SPOKE_CFG_SECRET   0x2u  /* mask on output (implied by SPOKE_CFG_PASSWORD) */
/* The name is a prefix ending in '.', e.g. "kafka.": the field accepts every
 * key `<prefix><property>` whose property is in `allowed` (the plugin's
 * allow-list of a client library's pass-through properties), each a STRING.
 * The host also refuses, whatever the list says, properties that load code
 * or files or name token endpoints (`*.location`, `plugin.library.paths`,
 * `sasl.kerberos.kinit.cmd`, `sasl.oauthbearer.token.endpoint.url`, ...):
 * those may only be set in the worker section of the file. Read the values
 * with config_prefixed(). Properties whose name holds "password" or
 * "secret" are masked on output. */
#define SPOKE_CFG_PREFIX   0x4u

/*
 * One configuration key a plugin accepts. A plugin declares an array of these
 * terminated by an all-zero sentinel ({ 0 }). The host rejects unknown keys,
 * checks types, required keys, bounds and allowed values, applies defaults,
 * and only then calls init().
 *
 * Bounds: for INT, LONG and DOUBLE, [min, max] applies when min != 0 or
 * max != 0. For STRING, LIST and PASSWORD they bound the length in bytes
 * (LIST: the number of items) the same way.
 * allowed: NULL, or a NULL-terminated list of the only values accepted
 * (compared case-sensitively).
 */
struct spoke_config_field {
    const char *name;           /* e.g. "poll.interval.ms"; [a-z0-9._-]+ */
    enum spoke_cfg_type type;
    const char *default_value;  /* text form, or NULL for no default */
    unsigned flags;             /* SPOKE_CFG_REQUIRED | SPOKE_CFG_SECRET */
    const char *doc;            /* one sentence, shown by `spoke plugins` and REST */
    double min;
    double max;
    const char *const *allowed;
};

/* ------------------------------------------------------------------------ */
/* Opaque handles                                                            */
/* ------------------------------------------------------------------------ */

struct spoke_instance;  /* one running connector task, owned by the host */
struct spoke_config;    /* validated config of an instance, owned by the host */
struct spoke_record;    /* a record in flight, owned by the host */
struct spoke_row;       /* a typed row: a schema plus one value per field */
struct spoke_schema;    /* ordered (name, type) pairs shared by many rows; refcounted */

/* Types of row values. */
enum spoke_type {
    SPOKE_TYPE_NULL      = 0,
    SPOKE_TYPE_BOOL      = 1,
    SPOKE_TYPE_INT       = 2,  /* int64_t */
    SPOKE_TYPE_DOUBLE    = 3,
    SPOKE_TYPE_STRING    = 4,  /* UTF-8 bytes with a length; not NUL-terminated on input */
    SPOKE_TYPE_TIMESTAMP = 5,  /* int64_t milliseconds since the Unix epoch, UTC */
    SPOKE_TYPE_LIST      = 6,  /* a nested row without field names */
    SPOKE_TYPE_MAP       = 7   /* a nested row with field names */
};

/*
 * A value as a row holds it, for reading a whole row at once (row_values):
 * one call per row instead of row_type and a getter per field. The union
 * member follows type; a NULL value has no member. Read-only and borrowed
 * for the row's lifetime, like the getters' results.
 */
struct spoke_value {
    uint8_t type;                /* enum spoke_type */
    uint8_t host_private[7];     /* the host's own; do not read */
    union {
        int b;                   /* BOOL: 0 or 1 */
        int64_t i;               /* INT; TIMESTAMP in ms since the epoch */
        double d;                /* DOUBLE */
        const struct spoke_row *row;  /* LIST, MAP: a nested row */
        struct {
            const char *p;       /* STRING: valid UTF-8, NUL at p[len] */
            size_t len;
        } s;
    } u;
};

/* How a setter treats a buffer it is handed. */
enum spoke_buf_mode {
    SPOKE_COPY = 0,  /* the host copies the bytes; the caller keeps its buffer */
    SPOKE_TAKE = 1   /* the host takes the buffer, which must come from api->alloc,
                        and frees it with api->free, even when the call fails */
};

/* ------------------------------------------------------------------------ */
/* Host services                                                             */
/* ------------------------------------------------------------------------ */

/*
 * The host services table, passed to init(). Valid until destroy() returns.
 * Append-only: see the compatibility rules at the top of this file.
 */
struct spoke_host_api {
    uint32_t abi_version;   /* SPOKE_ABI_VERSION of the host */
    uint32_t struct_size;   /* sizeof(struct spoke_host_api) of the host */

    /* ---- ABI 1+: general ---- */

    /* Writes one log line tagged with the instance's connector name. A line
     * below the current level costs one comparison. Never log secret values.
     * inst may be NULL (host-wide line). */
    void (*log)(struct spoke_instance *inst, enum spoke_log_level level,
                const char *fmt, ...) SPOKE_PRINTF(3, 4);

    /* Text for a status code; static storage, never NULL. */
    const char *(*strerror)(int status);

    /* Memory that crosses the boundary (SPOKE_TAKE buffers, snapshots).
     * alloc returns NULL only on out-of-memory. free accepts NULL. */
    void *(*alloc)(size_t size);
    void (*free)(void *ptr);

    /* Milliseconds: wall clock since the Unix epoch, and a monotonic clock. */
    int64_t (*wall_ms)(void);
    int64_t (*mono_ms)(void);

    /* The connector name of an instance; valid until destroy() returns. */
    const char *(*instance_name)(const struct spoke_instance *inst);

    /* ---- ABI 1+: config access (values valid until destroy() returns) ---- */

    /* Value of a key declared in the plugin's table, after defaults. Returns
     * NULL when the key has no value (optional, no default). The key must be
     * declared in the table; asking for another one returns NULL. */
    const char *(*config_string)(const struct spoke_config *cfg, const char *key);
    /* Typed views of a declared key. Return 0 / 0.0 / 0 when unset. */
    int64_t (*config_int)(const struct spoke_config *cfg, const char *key);
    double (*config_double)(const struct spoke_config *cfg, const char *key);
    int (*config_bool)(const struct spoke_config *cfg, const char *key);
    /* A LIST key: sets *items to a host-owned array of n strings. Returns n. */
    size_t (*config_list)(const struct spoke_config *cfg, const char *key,
                          const char *const **items);

    /* ---- ABI 1+: records ---- */

    /*
     * Creates a record. topic NULL means the connector's configured output
     * topic. key may be NULL (no key); val may be NULL (a null value, e.g. a
     * tombstone). Bytes are copied. Returns NULL only on out-of-memory.
     * The caller owns the new record until it passes it to emit() or
     * record_free().
     */
    struct spoke_record *(*record_new)(struct spoke_instance *inst, const char *topic,
                                       const void *key, size_t klen,
                                       const void *val, size_t vlen);

    /* Frees a record the plugin created and did not emit. Accepts NULL. */
    void (*record_free)(struct spoke_record *rec);

    /*
     * Hands a record to the host, which routes it to its topic. ALWAYS takes
     * ownership of rec, even when it returns an error. May block while a
     * subscriber's queue is full (backpressure). Returns SPOKE_OK, or
     * SPOKE_ERR_STOPPED when the instance is being stopped (the record is
     * then dropped without acknowledging its source position, so it is
     * replayed after a restart).
     * A record emitted from a transform's process() derives from the record
     * being processed and inherits its source position.
     * Call it only from the instance's own callbacks (its task thread).
     */
    int (*emit)(struct spoke_instance *inst, struct spoke_record *rec);

    /* Source only: sets the record's source position, the point at which the
     * source resumes once this record is fully delivered. partition names an
     * independent stream inside the source ("" when there is one); offset
     * grows within a partition. partition is copied. */
    int (*record_set_position)(struct spoke_record *rec, const char *partition,
                               int64_t offset);
    /* The record's source position; *partition is NULL if it has none. */
    void (*record_position)(const struct spoke_record *rec, const char **partition,
                            int64_t *offset);

    /* Topic the record is routed to; never NULL. */
    const char *(*record_topic)(const struct spoke_record *rec);
    /* Retargets a record (before emit, or in process()). topic is copied. */
    int (*record_set_topic)(struct spoke_record *rec, const char *topic);

    /* Key bytes (NULL, *len 0 when there is no key). Borrowed: valid until the
     * record changes or the callback that received it returns. */
    const void *(*record_key)(const struct spoke_record *rec, size_t *len);
    int (*record_set_key)(struct spoke_record *rec, void *key, size_t len,
                          enum spoke_buf_mode mode);

    /* Timestamp, milliseconds since the epoch. record_new sets the wall
     * time: inside poll() and a transform's or sink's batch of calls, as
     * read at the callback's start or at the kernel clock's last tick since
     * (so at most one tick, 1-4 ms, early; never late); elsewhere read per
     * record. */
    int64_t (*record_timestamp)(const struct spoke_record *rec);
    void (*record_set_timestamp)(struct spoke_record *rec, int64_t ts_ms);

    /* Headers: (name, bytes) pairs, in insertion order, duplicates allowed.
     * name and value are copied. */
    int (*record_header_add)(struct spoke_record *rec, const char *name,
                             const void *val, size_t len);
    size_t (*record_header_count)(const struct spoke_record *rec);
    /* i-th header; borrowed like record_key. Returns SPOKE_ERR_NOTFOUND past
     * the end. */
    int (*record_header_get)(const struct spoke_record *rec, size_t i,
                             const char **name, const void **val, size_t *len);

    /*
     * The value as bytes (JSON text unless a plugin set other bytes). If the
     * record holds a row or JSON tree, it is serialized once and cached (the
     * three value getters take a const record: the cache is not a change, so
     * sinks call them on the record put() lends them).
     * Returns NULL and *len 0 for a null value. Borrowed: valid until the
     * value changes or the callback returns.
     */
    const void *(*record_value_bytes)(const struct spoke_record *rec, size_t *len);
    int (*record_set_value)(struct spoke_record *rec, void *val, size_t len,
                            enum spoke_buf_mode mode);

    /*
     * The value as a typed row. Bytes holding a JSON object are parsed once
     * (fully validated) and cached. Returns NULL if the value is null or is
     * not a JSON object; then *why (if not NULL) points to a static reason.
     * Borrowed, read-only: to change it, build a row and set it.
     */
    const struct spoke_row *(*record_value_row)(const struct spoke_record *rec,
                                                const char **why);
    /* Replaces the value with a row. ALWAYS takes ownership of row. */
    int (*record_set_row)(struct spoke_record *rec, struct spoke_row *row);

    /*
     * The value as a jansson tree, parsed once and cached; NULL if the value
     * is null or not valid JSON. Borrowed and read-only: do not modify it;
     * to change the value, build a tree and call record_set_json.
     */
    json_t *(*record_value_json)(const struct spoke_record *rec);
    /* Replaces the value with a JSON tree. ALWAYS steals the reference. */
    int (*record_set_json)(struct spoke_record *rec, json_t *value);

    /* ---- ABI 1+: typed rows ---- */

    /* A new empty schema (refcount 1). NULL on out-of-memory. */
    struct spoke_schema *(*schema_new)(void);
    /* Appends a field; returns its index, or a negative status (duplicate
     * name, schema already used by a row). name is copied. */
    int (*schema_add)(struct spoke_schema *schema, const char *name, enum spoke_type type);
    /* Index of a field by name, or -1. */
    int (*schema_index)(const struct spoke_schema *schema, const char *name);
    size_t (*schema_count)(const struct spoke_schema *schema);
    const char *(*schema_name)(const struct spoke_schema *schema, size_t i);
    enum spoke_type (*schema_type)(const struct spoke_schema *schema, size_t i);
    /* Reference counting; unref accepts NULL. */
    void (*schema_ref)(struct spoke_schema *schema);
    void (*schema_unref)(struct spoke_schema *schema);

    /* A new row of the schema with every field null. Holds a reference on the
     * schema and freezes it. The caller owns the row until it is set on a
     * record (record_set_row) or freed. */
    struct spoke_row *(*row_new)(struct spoke_schema *schema);
    /* A new list of n null elements. */
    struct spoke_row *(*row_new_list)(size_t n);
    void (*row_free)(struct spoke_row *row);

    /* Number of fields (or list elements); schema (NULL for a list). */
    size_t (*row_count)(const struct spoke_row *row);
    const struct spoke_schema *(*row_schema)(const struct spoke_row *row);
    /* Index of a field by name, or -1. */
    int (*row_index)(const struct spoke_row *row, const char *name);

    /* Setters. A schema field's type is the type a setter must use (or
     * row_set_null); SPOKE_ERR_TYPE otherwise. Out-of-range i:
     * SPOKE_ERR_RANGE. Lists accept any type per element. */
    int (*row_set_null)(struct spoke_row *row, size_t i);
    int (*row_set_bool)(struct spoke_row *row, size_t i, int v);
    int (*row_set_int)(struct spoke_row *row, size_t i, int64_t v);
    int (*row_set_double)(struct spoke_row *row, size_t i, double v);
    int (*row_set_string)(struct spoke_row *row, size_t i, const char *s, size_t len);
    int (*row_set_timestamp)(struct spoke_row *row, size_t i, int64_t ms);
    /* Nested list or map: ALWAYS takes ownership of child. */
    int (*row_set_row)(struct spoke_row *row, size_t i, struct spoke_row *child);

    /* Getters. row_type returns SPOKE_TYPE_NULL past the end. Asking a getter
     * for another type returns 0 / 0.0 / NULL. Strings are NUL-terminated and
     * borrowed for the row's lifetime; *len may be NULL. */
    enum spoke_type (*row_type)(const struct spoke_row *row, size_t i);
    int (*row_get_bool)(const struct spoke_row *row, size_t i);
    int64_t (*row_get_int)(const struct spoke_row *row, size_t i);
    double (*row_get_double)(const struct spoke_row *row, size_t i);
    const char *(*row_get_string)(const struct spoke_row *row, size_t i, size_t *len);
    int64_t (*row_get_timestamp)(const struct spoke_row *row, size_t i);
    const struct spoke_row *(*row_get_row)(const struct spoke_row *row, size_t i);

    /* ---- ABI 1+: offsets and metrics ---- */

    /* The committed offset of one of this source's partitions, as restored
     * at start. Returns SPOKE_OK or SPOKE_ERR_NOTFOUND. */
    int (*offset_get)(struct spoke_instance *inst, const char *partition, int64_t *offset);
    /* Number of committed partitions, and the i-th one (borrowed). */
    size_t (*offset_count)(struct spoke_instance *inst);
    int (*offset_at)(struct spoke_instance *inst, size_t i, const char **partition,
                     int64_t *offset);

    /* Per-connector custom metrics: counters add, gauges set. name matches
     * [a-z0-9_]{1,64}. */
    void (*metric_add)(struct spoke_instance *inst, const char *name, int64_t delta);
    void (*metric_set)(struct spoke_instance *inst, const char *name, int64_t value);

    /* ---- ABI 1+: value forms ---- */

    /* Which forms the value holds right now (SPOKE_FORM_* bits; 0 = null),
     * so a plugin can read the cheapest one, e.g. a row already built
     * upstream instead of serializing it and parsing it back. */
    unsigned (*record_value_forms)(const struct spoke_record *rec);

    /* ---- ABI 1+: asynchronous sink outcomes ---- */

    /*
     * Sink only, called from put() or flush(): the delivery of rec, a record
     * put() and still pending (not acknowledged: see flush()), failed for
     * good (the target rejected it, or the plugin's retries are exhausted).
     * When flush() returns SPOKE_OK or SPOKE_PENDING, rec takes the
     * connector's error path (dead-letter topic or errors.tolerance) with
     * status and reason instead of being acknowledged; every other record is
     * acknowledged as usual. The host keeps pending records alive, so a sink
     * that delivers asynchronously may keep the pointer put() lent it as an
     * identity to pass here (and must not read it after put() returned).
     * The first outcome reported for a record wins. Returns SPOKE_OK, or
     * SPOKE_ERR_INVALID when rec is not pending on inst. reason is copied.
     * Only name records put() lent since: once the host has settled a
     * record (an outcome reported and flush() returned, or flush() returned
     * SPOKE_OK) it may be freed, and naming it is undefined.
     */
    int (*sink_record_failed)(struct spoke_instance *inst, const struct spoke_record *rec,
                              int status, const char *reason);

    /* ---- ABI 1+: pass-through properties ---- */

    /*
     * The keys given under a SPOKE_CFG_PREFIX field `prefix` (e.g. "kafka.").
     * Returns how many there are; when i is below that, sets *name to the
     * property (the key without the prefix) and *value to its text, both
     * borrowed like config_string.
     */
    size_t (*config_prefixed)(const struct spoke_config *cfg, const char *prefix, size_t i,
                              const char **name, const char **value);
    /* The worker section of the file, validated (read it with config_string
     * and config_prefixed, e.g. its "kafka." properties shared by every
     * Kafka connector). Valid until destroy() returns. */
    const struct spoke_config *(*worker_config)(struct spoke_instance *inst);

    /* ---- ABI 1+: source-side error path ---- */

    /*
     * Source only, from poll(): rec (created with record_new, its position
     * set) cannot be emitted as data, e.g. a payload that is not valid JSON.
     * ALWAYS takes ownership of rec. It takes the connector's error path:
     * with errors.tolerance=all it is counted, logged and sent to the
     * dead-letter topic (with error headers, stage TASK_POLL) or skipped, and
     * its position is acknowledged like any delivered record; with
     * errors.tolerance=none the connector fails with reason when poll()
     * returns, and the position is never acknowledged. Returns SPOKE_OK, or
     * SPOKE_ERR_STATE when the connector fails (stop polling and return).
     */
    int (*emit_error)(struct spoke_instance *inst, struct spoke_record *rec, int status,
                      const char *reason);

    /* ---- ABI 1+: pipelined (asynchronous) sinks ---- */

    /*
     * Sink only, called from put() or flush(): rec, a record put() and still
     * pending, is durable at the target. The host acknowledges it when the
     * callback returns, without waiting for the rest of its batch (see
     * flush() and SPOKE_PENDING). Returns SPOKE_OK, or SPOKE_ERR_INVALID when
     * rec is not pending on inst. Same rules for rec as sink_record_failed.
     */
    int (*sink_record_done)(struct spoke_instance *inst, const struct spoke_record *rec);

    /* Records waiting for inst right now: in its input queue, and those of
     * the batch being handed over after the one in process() or put(). A
     * sink's flush() can return SPOKE_PENDING while there is more to put,
     * and wait for its deliveries when there is not; a transform can hold
     * back output until a burst of input ends. */
    size_t (*input_backlog)(struct spoke_instance *inst);

    /* ---- ABI 1+: whole-row reads ---- */

    /* The values of row (fields in schema order, or list elements), *n set
     * to their count: what row_type and the getters return, without a call
     * per field. NULL and *n 0 for NULL or an empty row. Borrowed and
     * read-only; valid until the row changes or is freed. */
    const struct spoke_value *(*row_values)(const struct spoke_row *row, size_t *n);

    /* ---- ABI 1+: a running connector's note ---- */

    /* What the connector's status should say while it keeps running, e.g. a
     * side input failing ("station_information: HTTP 503 ...; stations keep
     * the table from 12:03"). REST status gives it as `trace`, with
     * `degraded: true`, while the task is RUNNING (a retry's or a
     * failure's reason comes first); status.json as `note`. NULL or ""
     * clears it; a restart of the task clears it too. The text is copied
     * (its first 1023 bytes). Any thread of the plugin may call it while
     * the instance lives (from init() to destroy()). */
    void (*status_note)(struct spoke_instance *inst, const char *note);

    /* ---- ABI 1+: when a poll's records began ---- */

    /* Source only, from poll(): the records this poll() call emits after it
     * count their latency (spoke_connector_latency_seconds, a sink's
     * latency_*_us) from started_ns, CLOCK_MONOTONIC in nanoseconds
     * (clock_gettime), instead of from the start of this poll() call. For
     * a source whose fetch spans several poll() calls, e.g. a slow HTTP
     * response read in slices so that a stop is never kept waiting: it
     * gives the moment the request went out. A time later than this
     * poll() call's start is ignored (a record's latency never counts
     * from after the call that emitted it); callers other than a source's
     * poll() are refused with an error in the log. */
    void (*poll_started_at)(struct spoke_instance *inst, int64_t started_ns);

    /* ---- ABI 1+: several problems from one check ---- */

    /* From check() only, with the cfg it was given: one more problem of
     * that config, about config key `key` (NULL when no one key is),
     * besides the one check() returns in errstr, which must still be set
     * and comes first. `spoke validate` prints each at its key's line and
     * counts them all; REST config/validate attaches each to its key; a
     * refused file load, create or config change lists them all. Both
     * strings are copied; at most 32 are kept per check. Other calls are
     * refused with an error in the log. With an older host (SPOKE_API_HAS
     * false) a plugin joins its problems into errstr instead. */
    void (*check_problem)(const struct spoke_config *cfg, const char *key, const char *message);

    /* ---- ABI 1+: when a poll's data arrived ---- */

    /* Source only, from poll(): the records this poll() call emits after it
     * count their latency from at_ns (CLOCK_MONOTONIC, nanoseconds), which
     * may be later than the start of the call: for a source whose poll()
     * waits for data that comes when it comes (a stream), the moment it
     * arrived, so the wait before it is not counted. A time in the future
     * counts as now. Unlike poll_started_at it can move the start either
     * way; each call replaces the last. Callers other than a source's
     * poll() are refused with an error in the log. */
    void (*poll_data_at)(struct spoke_instance *inst, int64_t at_ns);
};

/* Bits of record_value_forms. */
#define SPOKE_FORM_BYTES 0x1u
#define SPOKE_FORM_ROW   0x2u
#define SPOKE_FORM_JSON  0x4u

/* True when the host's table has entry `field` (it was built with an ABI
 * that has it). */
#define SPOKE_API_HAS(api, field) \
    (offsetof(struct spoke_host_api, field) + sizeof((api)->field) <= (api)->struct_size)

/* ------------------------------------------------------------------------ */
/* The descriptor                                                            */
/* ------------------------------------------------------------------------ */

/* The first 16 bytes of every descriptor; no padding, compared field by field
 * before anything else of the plugin is used. */
struct spoke_plugin_header {
    uint32_t magic;        /* SPOKE_PLUGIN_MAGIC */
    uint32_t abi_version;  /* SPOKE_ABI_VERSION the plugin was built against */
    uint32_t struct_size;  /* sizeof(struct spoke_plugin) the plugin was built with */
    uint32_t reserved;     /* must be 0 */
};
_Static_assert(sizeof(struct spoke_plugin_header) == 16, "header has no padding");

#define SPOKE_PLUGIN_HEADER_INIT \
    { SPOKE_PLUGIN_MAGIC, SPOKE_ABI_VERSION, (uint32_t)sizeof(struct spoke_plugin), 0 }

/*
 * A plugin descriptor: constant data built with designated initializers.
 * Optional callbacks may be NULL. Every callback that can fail returns a
 * spoke_status and writes a human-readable reason into errstr (at most
 * errstr_size bytes, NUL-terminated); the host shows it in logs and in the
 * connector's status trace.
 *
 * Lifecycle of an instance: init -> start? -> (poll | process | put+flush |
 * tick)* -> stop? -> destroy. restore() is called after init() and before
 * start() when a snapshot exists.
 */
struct spoke_plugin {
    struct spoke_plugin_header hdr;

    const char *name;        /* == folder == .so basename; [a-z0-9_]{1,64} */
    enum spoke_kind kind;
    const char *version;     /* semantic version of the plugin, e.g. "0.1.0" */
    const char *description; /* one sentence */
    const struct spoke_config_field *config; /* sentinel-terminated; NULL = no keys */

    /*
     * Required. Creates the instance state in *st (the host passes it back to
     * every other callback). cfg holds validated values only. api and cfg stay
     * valid until destroy() returns. On failure, nothing is left to destroy:
     * init cleans up after itself and the host does not call destroy().
     */
    int (*init)(const struct spoke_host_api *api, struct spoke_instance *inst,
                const struct spoke_config *cfg, void **st,
                char *errstr, size_t errstr_size);

    /* Optional. Opens connections, files; called once before the first
     * poll/process/put. */
    int (*start)(void *st, char *errstr, size_t errstr_size);

    /*
     * Source: required. Produces zero or more records with api->emit. Sets
     * *next_poll_ms to how long the host waits before the next call (0: call
     * again at once, e.g. more data is ready). Returns SPOKE_OK, SPOKE_RETRY
     * (transient: the host logs errstr and calls again after *next_poll_ms),
     * or an error (the connector fails with errstr).
     */
    int (*poll)(void *st, int64_t *next_poll_ms, char *errstr, size_t errstr_size);

    /*
     * Source: optional. Everything up to and including (partition, offset)
     * has been delivered and the offset is committed; e.g. commit it upstream.
     */
    void (*committed)(void *st, const char *partition, int64_t offset);

    /*
     * Transform: required. rec is borrowed; it may be changed in place with
     * the api setters and is never freed by the plugin. Returns SPOKE_OK
     * (forward rec to the connector's output topic, or the topic set on it),
     * SPOKE_DROP (forward nothing; a stateful transform has absorbed it), or
     * an error (the record takes the connector's error path). Records emitted
     * during process() derive from rec.
     */
    int (*process)(void *st, struct spoke_record *rec, char *errstr, size_t errstr_size);

    /*
     * Sink: required. rec is borrowed and read-only, valid only during the
     * call: copy anything kept (naming it to sink_record_failed() is the one
     * use of the pointer allowed after put() returns). Returns SPOKE_OK,
     * SPOKE_RETRY (offer the same record again later) or an error (the
     * record takes the error path).
     */
    int (*put)(void *st, const struct spoke_record *rec, char *errstr, size_t errstr_size);

    /*
     * Sink: required. Makes every record put so far durable at the target;
     * only then does the host acknowledge them. SPOKE_RETRY: call again later.
     *
     * Pipelined sinks (they need sink_record_done): flush() may instead
     * return SPOKE_PENDING, meaning deliveries are under way. Records
     * reported with sink_record_done() are acknowledged and those reported
     * with sink_record_failed() take the error path; the others stay pending
     * (alive, unacknowledged) while the host goes on putting new input. The
     * host calls flush() again after the next batch, and at once when no
     * input waits; SPOKE_OK then settles everything still pending as
     * delivered. The sink bounds what it keeps pending: it returns
     * SPOKE_PENDING only while input_backlog() is not zero and its own
     * window is not full, and otherwise waits for deliveries (SPOKE_RETRY
     * with the reason when they take too long).
     */
    int (*flush)(void *st, char *errstr, size_t errstr_size);

    /*
     * Optional, any kind. Called when the time the plugin asked for arrives
     * (*next_tick_ms after the previous call; negative = no tick wanted), and
     * once right after start(). Transforms may emit records here (e.g. a
     * window closing); such records derive from nothing.
     */
    int (*tick)(void *st, int64_t now_ms, int64_t *next_tick_ms,
                char *errstr, size_t errstr_size);

    /*
     * Stateful transforms: both or neither. snapshot serializes the whole
     * state into *data (allocated with api->alloc; the host frees it) of
     * *len bytes. The host writes it atomically together with the input
     * positions it covers, and acknowledges the records the transform
     * absorbed (SPOKE_DROP) only after the snapshot is durable. restore is
     * called after init() with the last snapshot.
     */
    int (*snapshot)(void *st, void **data, size_t *len, char *errstr, size_t errstr_size);
    int (*restore)(void *st, const void *data, size_t len, char *errstr, size_t errstr_size);

    /* Optional. Stop producing: the host will drain and then destroy. */
    void (*stop)(void *st);

    /* Required. Releases everything; st is not used afterwards. */
    void (*destroy)(void *st);

    /* ---- ABI 1+, appended: the host reads each only when the descriptor's
     * struct_size covers it (SPOKE_PLUGIN_HAS), so plugins built before them
     * keep loading. ---- */

    /*
     * Optional. Checks what the config table cannot say: keys that go
     * together or exclude each other, the syntax inside a value. cfg holds
     * validated values (as init gets them). Called with no instance, by
     * `spoke validate`, when connectors.yaml is loaded or reloaded, and by
     * the REST API (create, PUT/PATCH config, config/validate), so a bad
     * config is refused there with the reason instead of failing the
     * connector at init. Must have no side effects: no file or network
     * access, nothing kept after it returns. Returns SPOKE_OK, or an error
     * with errstr set and *key the config key it is about (a string that
     * lives as long as the plugin; NULL when no one key is).
     */
    int (*check)(const struct spoke_host_api *api, const struct spoke_config *cfg,
                 const char **key, char *errstr, size_t errstr_size);

    /*
     * Optional, sources. The REST API calls it while the connector is
     * STOPPED, with no instance, before it changes the host's offset store
     * for the connector (PATCH /connectors/{c}/offsets: n pairs of
     * partitions[i] and offsets[i], -1 removing that partition; DELETE:
     * reset 1, n 0). name is the connector's, cfg its validated config.
     * SPOKE_OK lets the change through; an error refuses the whole request
     * (HTTP 400 with errstr), e.g. for a source that resumes from positions
     * kept elsewhere (a Kafka consumer group's), or a partition the source
     * does not have. Same rules as check: no side effects, nothing kept.
     */
    int (*offsets_change)(const struct spoke_host_api *api, const char *name,
                          const struct spoke_config *cfg, const char *const *partitions,
                          const int64_t *offsets, size_t n, int reset,
                          char *errstr, size_t errstr_size);
};

/* True when the descriptor has entry `field` (the plugin was built with a
 * header that has it). */
#define SPOKE_PLUGIN_HAS(desc, field) \
    (offsetof(struct spoke_plugin, field) + sizeof((desc)->field) <= (desc)->hdr.struct_size)

/*
 * The one exported symbol. Must only return the address of a constant
 * descriptor: the host calls it before checking anything.
 */
typedef const struct spoke_plugin *(*spoke_plugin_entry_fn)(void);
#define SPOKE_PLUGIN_ENTRY_SYMBOL "spoke_plugin_entry"

#ifdef __cplusplus
}
#endif

#endif /* SPOKE_PLUGIN_H */
