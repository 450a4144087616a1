/* count_transform - test fixture: a stateful transform. It absorbs every
 * record (SPOKE_DROP) into a running count and, every `emit.every` records,
 * emits {"count": N}. The count is its state: snapshot/restore carry it
 * across restarts, so a restart must continue the count exactly. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spoke/plugin.h>

static const struct spoke_config_field count_transform_config[] = {
    { .name = "emit.every", .type = SPOKE_CFG_LONG, .default_value = "1",
      .doc = "Emit the running count every N records", .min = 1, .max = 1e12 },
    { 0 }
};

struct count_state {
    const struct spoke_host_api *api;
    struct spoke_instance *inst;
    int64_t every;
    int64_t count;
};

static int count_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                      const struct spoke_config *cfg, void **st, char *errstr, size_t errstr_size)
{
    struct count_state *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(errstr, errstr_size, "count_transform: out of memory");
        return SPOKE_ERR_NOMEM;
    }
    s->api = api;
    s->inst = inst;
    s->every = api->config_int(cfg, "emit.every");
    *st = s;
    return SPOKE_OK;
}

static int count_process(void *st, struct spoke_record *rec, char *errstr, size_t errstr_size)
{
    struct count_state *s = st;
    (void)rec;
    s->count++;
    if (s->count % s->every == 0) {
        char v[64];
        int n = snprintf(v, sizeof(v), "{\"count\":%" PRId64 "}", s->count);
        struct spoke_record *out = s->api->record_new(s->inst, NULL, NULL, 0, v, (size_t)n);
        if (!out) {
            snprintf(errstr, errstr_size, "count_transform: out of memory");
            return SPOKE_ERR_NOMEM;
        }
        int rc = s->api->emit(s->inst, out);
        if (rc != SPOKE_OK && rc != SPOKE_ERR_STOPPED) {
            snprintf(errstr, errstr_size, "count_transform: emit: %s", s->api->strerror(rc));
            return rc;
        }
    }
    return SPOKE_DROP;
}

static int count_snapshot(void *st, void **data, size_t *len, char *errstr, size_t errstr_size)
{
    struct count_state *s = st;
    char *buf = s->api->alloc(32);
    if (!buf) {
        snprintf(errstr, errstr_size, "count_transform: out of memory");
        return SPOKE_ERR_NOMEM;
    }
    int n = snprintf(buf, 32, "%" PRId64, s->count);
    *data = buf;
    *len = (size_t)n;
    return SPOKE_OK;
}

static int count_restore(void *st, const void *data, size_t len, char *errstr, size_t errstr_size)
{
    struct count_state *s = st;
    char tmp[32];
    if (len == 0 || len >= sizeof(tmp)) {
        snprintf(errstr, errstr_size, "count_transform: snapshot of %zu bytes is not a count", len);
        return SPOKE_ERR_PARSE;
    }
    memcpy(tmp, data, len);
    tmp[len] = '\0';
    char *end;
    s->count = strtoll(tmp, &end, 10);
    if (*end) {
        snprintf(errstr, errstr_size, "count_transform: snapshot is not a count");
        return SPOKE_ERR_PARSE;
    }
    return SPOKE_OK;
}

static void count_destroy(void *st) { free(st); }

static const struct spoke_plugin count_transform = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "count_transform",
    .kind        = SPOKE_KIND_TRANSFORM,
    .version     = "0.1.0",
    .description = "Test fixture: stateful running count with snapshot/restore",
    .config      = count_transform_config,
    .init        = count_init,
    .process     = count_process,
    .snapshot    = count_snapshot,
    .restore     = count_restore,
    .destroy     = count_destroy,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &count_transform; }
