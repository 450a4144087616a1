/* echo_transform - test fixture: passes records through unchanged except
 * for one added header, "echo" = config `header.value`; with `drop.every`
 * = N > 0, every Nth record (the Nth, 2Nth, ...) is dropped instead, with a
 * debug log line. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spoke/plugin.h>

static const struct spoke_config_field echo_transform_config[] = {
    { .name = "header.value", .type = SPOKE_CFG_STRING, .default_value = "1",
      .doc = "Value of the \"echo\" header added to each record" },
    { .name = "drop.every", .type = SPOKE_CFG_INT, .default_value = "0",
      .doc = "Drop every Nth record (0 = never)", .min = 0, .max = 1000000000 },
    { 0 }
};

struct echo_transform_state {
    const struct spoke_host_api *api;
    struct spoke_instance *inst;
    const char *value;   /* host-owned, valid until destroy() returns */
    int64_t every;
    int64_t seen;
};

static int echo_transform_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                               const struct spoke_config *cfg, void **st,
                               char *errstr, size_t errstr_size)
{
    struct echo_transform_state *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(errstr, errstr_size, "echo_transform: out of memory");
        return SPOKE_ERR_NOMEM;
    }
    s->api = api;
    s->inst = inst;
    s->value = api->config_string(cfg, "header.value");
    if (!s->value)
        s->value = "1";
    s->every = api->config_int(cfg, "drop.every");
    *st = s;
    return SPOKE_OK;
}

static int echo_transform_process(void *st, struct spoke_record *rec,
                                  char *errstr, size_t errstr_size)
{
    struct echo_transform_state *s = st;
    s->seen++;
    if (s->every > 0 && s->seen % s->every == 0) {
        s->api->log(s->inst, SPOKE_LOG_DEBUG, "dropped record %lld", (long long)s->seen);
        return SPOKE_DROP;
    }
    int rc = s->api->record_header_add(rec, "echo", s->value, strlen(s->value));
    if (rc != SPOKE_OK)
        snprintf(errstr, errstr_size, "echo_transform: adding the echo header failed: %s",
                 s->api->strerror(rc));
    return rc;
}

static void echo_transform_destroy(void *st) { free(st); }

static const struct spoke_plugin echo_transform = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "echo_transform",
    .kind        = SPOKE_KIND_TRANSFORM,
    .version     = "0.1.0",
    .description = "Test fixture: adds an echo header, optionally drops every Nth record",
    .config      = echo_transform_config,
    .init        = echo_transform_init,
    .process     = echo_transform_process,
    .destroy     = echo_transform_destroy,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &echo_transform; }
