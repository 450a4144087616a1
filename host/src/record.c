/* record - records in flight and the interned-string table.
 *
 * The value of a record is held in up to three forms (bytes, row, jansson
 * tree; see record.h). A getter for a missing form derives it from one that
 * is there and caches it; a setter replaces every form. The source of a
 * conversion is the bytes when present (they are what a producer sent),
 * else the row, else the tree.
 */
#include "record.h"

#include <assert.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "ack.h"
#include "clock.h"
#include "log.h"
#include "recycle.h"

/* ------------------------------------------------------------------------ */
/* Interned strings                                                          */
/* ------------------------------------------------------------------------ */

struct intern_slot {
    char *s;
    uint32_t hash;
};

static pthread_mutex_t intern_lock = PTHREAD_MUTEX_INITIALIZER;
static struct intern_slot *intern_tab;  /* open addressing; power-of-two size */
static size_t intern_cap, intern_n;

static uint32_t str_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u;  /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

/* Doubles the table (lock held). */
static int intern_grow(void)
{
    size_t cap = intern_cap ? intern_cap * 2 : 64;
    struct intern_slot *tab = calloc(cap, sizeof(*tab));
    if (!tab)
        return -1;
    for (size_t i = 0; i < intern_cap; i++) {
        if (!intern_tab[i].s)
            continue;
        size_t k = intern_tab[i].hash & (cap - 1);
        while (tab[k].s)
            k = (k + 1) & (cap - 1);
        tab[k] = intern_tab[i];
    }
    free(intern_tab);
    intern_tab = tab;
    intern_cap = cap;
    return 0;
}

static const char *intern_lookup(const char *s);

/* Sources set the same topic and partition names on record after record: a
 * small cache per thread answers those without the lock (one entry was not
 * enough: a topic and a partition looked up in turn evicted each other).
 * An interned pointer passed back in is recognized without a comparison.
 * intern_gen changes when the table is freed, so a cached pointer never
 * outlives its string. */
#define INTERN_CACHE 4
static atomic_uint intern_gen;
static _Thread_local const char *intern_cache[INTERN_CACHE];
static _Thread_local unsigned intern_cache_gen, intern_cache_next;

const char *intern_str(const char *s)
{
    assert(s);
    unsigned gen = atomic_load_explicit(&intern_gen, memory_order_relaxed);
    if (intern_cache_gen == gen) {
        for (unsigned i = 0; i < INTERN_CACHE; i++)
            if (intern_cache[i] == s)
                return s;
        for (unsigned i = 0; i < INTERN_CACHE; i++)
            if (intern_cache[i] && strcmp(intern_cache[i], s) == 0)
                return intern_cache[i];
    } else {
        memset(intern_cache, 0, sizeof(intern_cache));
        intern_cache_gen = gen;
    }
    const char *r = intern_lookup(s);
    if (r) {
        intern_cache[intern_cache_next] = r;
        intern_cache_next = (intern_cache_next + 1) % INTERN_CACHE;
    }
    return r;
}

static const char *intern_lookup(const char *s)
{
    size_t len = strlen(s);
    uint32_t h = str_hash(s, len);
    const char *found = NULL;
    pthread_mutex_lock(&intern_lock);
    /* Kept at most half full, so probing always ends at an empty slot. */
    if ((intern_n + 1) * 2 > intern_cap && intern_grow() < 0)
        goto out;
    size_t k = h & (intern_cap - 1);
    for (; intern_tab[k].s; k = (k + 1) & (intern_cap - 1)) {
        if (intern_tab[k].hash == h && strcmp(intern_tab[k].s, s) == 0) {
            found = intern_tab[k].s;
            goto out;
        }
    }
    char *copy = malloc(len + 1);
    if (!copy)
        goto out;
    memcpy(copy, s, len + 1);
    intern_tab[k].s = copy;
    intern_tab[k].hash = h;
    intern_n++;
    found = copy;
out:
    pthread_mutex_unlock(&intern_lock);
    return found;
}

void intern_free_all(void)
{
    atomic_fetch_add(&intern_gen, 1);
    pthread_mutex_lock(&intern_lock);
    for (size_t i = 0; i < intern_cap; i++)
        free(intern_tab[i].s);
    free(intern_tab);
    intern_tab = NULL;
    intern_cap = intern_n = 0;
    pthread_mutex_unlock(&intern_lock);
}

/* ------------------------------------------------------------------------ */
/* Records                                                                   */
/* ------------------------------------------------------------------------ */

/* Inside a task callback (rec_clock_begin .. rec_clock_end), new records
 * share a precise reading until the kernel's clock ticks; elsewhere each
 * record reads the clock. */
static _Thread_local struct {
    int on;
    int64_t tick;  /* clock_wall_tick_ns() when ms was read */
    int64_t ms;
} rclock;

void rec_clock_begin(void)
{
    rclock.tick = clock_wall_tick_ns();  /* first: a tick between the reads refreshes */
    rclock.ms = clock_wall_ms();
    rclock.on = 1;
}

void rec_clock_end(void) { rclock.on = 0; }

static int64_t rec_now_ms(void)
{
    /* perf: a precise read per record was 3% of a saturated file
     * pipeline; inside a callback, one per kernel tick. */
    if (!rclock.on)
        return clock_wall_ms();
    int64_t t = clock_wall_tick_ns();
    if (t != rclock.tick) {
        rclock.tick = t;
        rclock.ms = clock_wall_ms();
    }
    return rclock.ms;
}

/* A malloc'd copy with a NUL after it, so that a consumer that wrongly
 * treats text bytes as a C string still stops inside the buffer. */
static unsigned char *memdup0(const void *p, size_t len)
{
    if (len == SIZE_MAX)
        return NULL;
    unsigned char *q = malloc(len + 1);
    if (!q)
        return NULL;
    if (len)
        memcpy(q, p, len);
    q[len] = '\0';
    return q;
}

/* Frees the key unless it lives inside the record. */
static void key_release(struct spoke_record *rec)
{
    if (rec->key && rec->key != rec->kinl)
        free(rec->key);
    rec->key = NULL;
    rec->klen = 0;
}

/* Sets a copy of key (not NULL) as the record's key: inside the record when
 * it is short. The old key is released only once the copy exists (key may
 * point into it). -1 on OOM, the old key kept. */
static int key_copy(struct spoke_record *rec, const void *key, size_t len)
{
    if (len <= REC_KEY_INLINE) {
        unsigned char *old = rec->key;
        if (len)
            memmove(rec->kinl, key, len);
        rec->kinl[len] = '\0';
        rec->key = rec->kinl;
        if (old && old != rec->kinl)
            free(old);
    } else {
        unsigned char *k = memdup0(key, len);
        if (!k)
            return -1;
        key_release(rec);
        rec->key = k;
    }
    rec->klen = len;
    return 0;
}

/* Drops every value form: the record's value becomes null. */
static void value_clear(struct spoke_record *rec)
{
    if ((rec->forms & REC_FORM_BYTES) && rec->bytes != rec->inl)
        free(rec->bytes);
    if (rec->forms & REC_FORM_ROW)
        row_free(rec->row);
    if (rec->forms & REC_FORM_JSON)
        json_decref(rec->json);
    rec->bytes = NULL;
    rec->blen = 0;
    rec->row = NULL;
    rec->json = NULL;
    rec->row_error = NULL;
    rec->forms = 0;
}

/* Frees everything but the origin. */
static void rec_release(struct spoke_record *rec)
{
    /* Most records have neither a heap key nor headers: no free(NULL)
     * calls for them (each is a call into the allocator). */
    key_release(rec);
    if (rec->hdrs) {
        for (size_t i = 0; i < rec->nhdrs; i++) {
            free(rec->hdrs[i].name);
            free(rec->hdrs[i].val);
        }
        free(rec->hdrs);
    }
    if (rec->forms)
        value_clear(rec);
    recycle_free(rec, rec->pool);
}

struct spoke_record *rec_new(const char *topic, const void *key, size_t klen,
                             const void *val, size_t vlen)
{
    assert(topic);
    const char *t = intern_str(topic);
    return t ? rec_new_interned(t, key, klen, val, vlen) : NULL;
}

/* rec_new_interned sets each field by hand: a field added to the struct
 * must be added there too. */
_Static_assert(offsetof(struct spoke_record, kinl) == 136,
               "struct spoke_record changed: update rec_new_interned");

struct spoke_record *rec_new_interned(const char *topic, const void *key, size_t klen,
                                      const void *val, size_t vlen)
{
    assert(topic);
    /* The value bytes (and their NUL) go in the record's own allocation:
     * one malloc per record instead of two. */
    size_t extra = val ? vlen + 1 : 0;
    if (val && vlen >= SIZE_MAX - sizeof(struct spoke_record) - 1)
        return NULL;
    uint8_t pool;
    struct spoke_record *rec = recycle_alloc(sizeof(*rec) + extra, &pool);
    if (!rec)
        return NULL;
    rec->pool = pool;
    /* Field by field: kinl and pend_seq need no zeroing, and a memset of
     * the whole header compiled to a rep stos, slow to start. */
    rec->topic = topic;
    rec->key = NULL;
    rec->klen = 0;
    rec->hdrs = NULL;
    rec->nhdrs = rec->caphdrs = 0;
    rec->forms = 0;
    rec->bytes = NULL;
    rec->blen = 0;
    rec->row = NULL;
    rec->json = NULL;
    rec->row_error = NULL;
    rec->part = NULL;
    rec->off = 0;
    rec->origin = NULL;
    if (key && key_copy(rec, key, klen) < 0)
        goto fail;
    if (val) {
        if (vlen)
            memcpy(rec->inl, val, vlen);
        rec->inl[vlen] = '\0';
        rec->bytes = rec->inl;
        rec->blen = vlen;
        rec->forms = REC_FORM_BYTES;
    }
    rec->ts = rec_now_ms();
    return rec;
fail:
    rec_release(rec);
    return NULL;
}

struct spoke_record *rec_clone(const struct spoke_record *rec)
{
    assert(rec);
    struct spoke_record *copy = calloc(1, sizeof(*copy));
    if (!copy)
        return NULL;
    copy->topic = rec->topic;
    copy->ts = rec->ts;
    copy->part = rec->part;
    copy->off = rec->off;
    if (rec->key && key_copy(copy, rec->key, rec->klen) < 0)
        goto fail;
    for (size_t i = 0; i < rec->nhdrs; i++)
        if (rec_header_add(copy, rec->hdrs[i].name, rec->hdrs[i].val, rec->hdrs[i].len) != SPOKE_OK)
            goto fail;
    /* One authoritative form is enough: the others are derived on demand. */
    if (rec->forms & REC_FORM_BYTES) {
        if (!(copy->bytes = memdup0(rec->bytes, rec->blen)))
            goto fail;
        copy->blen = rec->blen;
        copy->forms = REC_FORM_BYTES;
        copy->row_error = rec->row_error;  /* same bytes, same verdict */
    } else if (rec->forms & REC_FORM_ROW) {
        if (!(copy->row = row_clone(rec->row)))
            goto fail;
        copy->forms = REC_FORM_ROW;
    } else if (rec->forms & REC_FORM_JSON) {
        if (!(copy->json = json_deep_copy(rec->json)))
            goto fail;
        copy->forms = REC_FORM_JSON;
    }
    /* Last, so that a failed clone never holds a unit. */
    if (rec->origin) {
        origin_hold(rec->origin);
        copy->origin = rec->origin;
    }
    return copy;
fail:
    rec_release(copy);
    return NULL;
}

void rec_free(struct spoke_record *rec)
{
    if (!rec)
        return;
    if (rec->origin)
        origin_done(rec->origin, 0);
    rec_release(rec);
}

void rec_ack(struct spoke_record *rec)
{
    assert(rec);
    if (!rec->origin)
        return;
    struct origin *o = rec->origin;
    rec->origin = NULL;
    origin_done(o, 1);
}

void rec_set_origin(struct spoke_record *rec, struct origin *o)
{
    assert(rec && !rec->origin);
    rec->origin = o;
}

int rec_set_topic(struct spoke_record *rec, const char *topic)
{
    if (!rec || !topic)
        return SPOKE_ERR_INVALID;
    const char *t = intern_str(topic);
    if (!t)
        return SPOKE_ERR_NOMEM;
    rec->topic = t;
    return SPOKE_OK;
}

int rec_set_position(struct spoke_record *rec, const char *partition, int64_t offset)
{
    if (!rec || !partition)
        return SPOKE_ERR_INVALID;
    const char *p = intern_str(partition);
    if (!p)
        return SPOKE_ERR_NOMEM;
    rec->part = p;
    rec->off = offset;
    return SPOKE_OK;
}

void rec_position(const struct spoke_record *rec, const char **partition, int64_t *offset)
{
    assert(rec);
    if (partition)
        *partition = rec->part;
    if (offset)
        *offset = rec->part ? rec->off : 0;
}

int rec_set_key(struct spoke_record *rec, void *key, size_t len, enum spoke_buf_mode mode)
{
    int rc = SPOKE_OK;
    if (!rec || (mode != SPOKE_COPY && mode != SPOKE_TAKE)) {
        rc = SPOKE_ERR_INVALID;
        goto fail;
    }
    if (!key) {
        key_release(rec);
        return SPOKE_OK;
    }
    if (mode == SPOKE_COPY)
        return key_copy(rec, key, len) < 0 ? SPOKE_ERR_NOMEM : SPOKE_OK;
    key_release(rec);
    rec->key = key;
    rec->klen = len;
    return SPOKE_OK;
fail:
    /* A taken buffer is ours even when the call fails. */
    if (mode == SPOKE_TAKE)
        free(key);
    return rc;
}

int rec_header_add(struct spoke_record *rec, const char *name, const void *val, size_t len)
{
    if (!rec || !name || (!val && len))
        return SPOKE_ERR_INVALID;
    if (rec->nhdrs == rec->caphdrs) {
        size_t cap = rec->caphdrs ? rec->caphdrs * 2 : 4;
        struct record_header *h = realloc(rec->hdrs, cap * sizeof(*h));
        if (!h)
            return SPOKE_ERR_NOMEM;
        rec->hdrs = h;
        rec->caphdrs = cap;
    }
    char *n = strdup(name);
    unsigned char *v = memdup0(val, len);
    if (!n || !v) {
        free(n);
        free(v);
        return SPOKE_ERR_NOMEM;
    }
    rec->hdrs[rec->nhdrs].name = n;
    rec->hdrs[rec->nhdrs].val = v;
    rec->hdrs[rec->nhdrs].len = len;
    rec->nhdrs++;
    return SPOKE_OK;
}

int rec_header_get(const struct spoke_record *rec, size_t i, const char **name,
                   const void **val, size_t *len)
{
    assert(rec);
    int found = i < rec->nhdrs;
    if (name)
        *name = found ? rec->hdrs[i].name : NULL;
    if (val)
        *val = found ? rec->hdrs[i].val : NULL;
    if (len)
        *len = found ? rec->hdrs[i].len : 0;
    return found ? SPOKE_OK : SPOKE_ERR_NOTFOUND;
}

static int dump_cb(const char *p, size_t n, void *data) { return buf_append(data, p, n); }

/* Serialization scratch, one per thread: a value is written there, then
 * copied into an allocation of its exact size (records can sit in queues
 * by the thousand, so no slack stays with them). Growing and shrinking a
 * fresh buffer per record cost two reallocs (~600 instructions with
 * jemalloc); one malloc and a memcpy cost a sixth of that. Kept up to
 * SCRATCH_KEEP bytes between records; the thread-exit destructor of
 * scratch_key frees it. */
#define SCRATCH_KEEP 65536
static _Thread_local struct buf scratch;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_ok;

static void scratch_key_init(void)
{
    scratch_key_ok = pthread_key_create(&scratch_key, free) == 0;
}

/* After writing into scratch: keeps the thread-exit destructor pointing
 * at the current storage, or gives up storage above SCRATCH_KEEP. */
static void scratch_settle(char *before)
{
    if (scratch.cap > SCRATCH_KEEP || !scratch_key_ok) {
        buf_free(&scratch);
        if (scratch_key_ok)
            pthread_setspecific(scratch_key, NULL);
    } else if (scratch.p != before) {
        pthread_setspecific(scratch_key, scratch.p);
    }
}

const void *rec_value_bytes(struct spoke_record *rec, size_t *len)
{
    assert(rec);
    if (rec->forms && !(rec->forms & REC_FORM_BYTES)) {
        pthread_once(&scratch_once, scratch_key_init);
        char *before = scratch.p;
        buf_reset(&scratch);
        int rc = buf_reserve(&scratch, 512);
        if (rc == 0) {
            if (rec->forms & REC_FORM_ROW)
                rc = rowjson_write(rec->row, &scratch);
            else
                rc = json_dump_callback(rec->json, dump_cb, &scratch,
                                        JSON_COMPACT | JSON_ENCODE_ANY);
        }
        size_t n = scratch.len;
        char *p = rc == 0 ? malloc(n + 1) : NULL;
        if (p) {
            memcpy(p, scratch.p, n);
            p[n] = '\0';
        }
        scratch_settle(before);
        if (!p) {
            LOG_E(NULL, "topic %s: cannot serialize a record value (out of memory)", rec->topic);
            if (len)
                *len = 0;
            return NULL;
        }
        rec->bytes = (unsigned char *)p;
        rec->blen = n;
        rec->forms |= REC_FORM_BYTES;
    }
    if (len)
        *len = rec->blen;
    return rec->bytes;
}

int rec_set_value(struct spoke_record *rec, void *val, size_t len, enum spoke_buf_mode mode)
{
    unsigned char *v = NULL;
    int rc = SPOKE_OK;
    if (!rec || (mode != SPOKE_COPY && mode != SPOKE_TAKE)) {
        rc = SPOKE_ERR_INVALID;
        goto fail;
    }
    if (val) {
        v = mode == SPOKE_TAKE ? val : memdup0(val, len);
        if (!v)
            return SPOKE_ERR_NOMEM;  /* the old value stays */
    }
    value_clear(rec);
    if (v) {
        rec->bytes = v;
        rec->blen = len;
        rec->forms = REC_FORM_BYTES;
    }
    return SPOKE_OK;
fail:
    if (mode == SPOKE_TAKE)
        free(val);
    return rc;
}

const struct spoke_row *rec_value_row(struct spoke_record *rec, const char **why)
{
    assert(rec);
    const char *reason;
    if (rec->forms & REC_FORM_ROW)
        return rec->row;
    if (!rec->forms) {
        reason = "value is null";
        goto fail;
    }
    if (rec->row_error) {
        reason = rec->row_error;
        goto fail;
    }
    struct spoke_row *row;
    if (rec->forms & REC_FORM_BYTES) {
        char err[160];
        reason = NULL;
        row = rowjson_parse_why(rec->bytes, rec->blen, err, sizeof(err), &reason);
        if (!row) {
            if (!reason)
                reason = "value is not valid JSON";
            LOG_D(NULL, "topic %s: value is not a row: %s", rec->topic, err);
        }
    } else {
        row = rowjson_from_json(rec->json);
        reason = !row && json_is_object(rec->json) ? "value cannot be represented as a row"
                                                   : "value is not a JSON object";
    }
    if (!row) {
        /* Remembered: the same value gives the same verdict, except for a
         * lack of memory, which may pass. */
        if (strcmp(reason, "out of memory") != 0)
            rec->row_error = reason;
        goto fail;
    }
    rec->row = row;
    rec->forms |= REC_FORM_ROW;
    return row;
fail:
    if (why)
        *why = reason;
    return NULL;
}

int rec_set_row(struct spoke_record *rec, struct spoke_row *row)
{
    if (!rec || !row || !row_schema(row)) {
        /* A record value is an object: a list row cannot be one. */
        row_free(row);
        return SPOKE_ERR_INVALID;
    }
    value_clear(rec);
    rec->row = row;
    rec->forms = REC_FORM_ROW;
    return SPOKE_OK;
}

json_t *rec_value_json(struct spoke_record *rec)
{
    assert(rec);
    if (rec->forms & REC_FORM_JSON)
        return rec->json;
    if (!rec->forms)
        return NULL;
    json_t *j;
    if (rec->forms & REC_FORM_BYTES)
        j = json_loadb((const char *)rec->bytes, rec->blen, 0, NULL);
    else
        j = rowjson_to_json(rec->row);
    if (!j)
        return NULL;
    rec->json = j;
    rec->forms |= REC_FORM_JSON;
    return j;
}

int rec_set_json(struct spoke_record *rec, json_t *value)
{
    if (!rec || !value) {
        json_decref(value);  /* ALWAYS steals */
        return SPOKE_ERR_INVALID;
    }
    value_clear(rec);
    rec->json = value;
    rec->forms = REC_FORM_JSON;
    return SPOKE_OK;
}
