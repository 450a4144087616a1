/* counting_sink - test fixture: counts the records put. With `file` set,
 * every flush replaces that file (write a temp file, then rename, so a
 * reader never sees a partial one) with the count as decimal text and a
 * newline: the number of records the host may now acknowledge. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spoke/plugin.h>

static const struct spoke_config_field counting_sink_config[] = {
    { .name = "file", .type = SPOKE_CFG_STRING,
      .doc = "If set, each flush atomically rewrites this file with the record count" },
    { 0 }
};

struct counting_sink_state {
    const char *path;   /* host-owned, valid until destroy() returns; NULL: no file */
    char *tmp;          /* path + ".tmp" */
    int64_t count;
};

static int counting_sink_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                              const struct spoke_config *cfg, void **st,
                              char *errstr, size_t errstr_size)
{
    (void)inst;
    struct counting_sink_state *s = calloc(1, sizeof(*s));
    if (!s)
        goto nomem;
    s->path = api->config_string(cfg, "file");
    if (s->path && *s->path) {
        size_t n = strlen(s->path);
        if (!(s->tmp = malloc(n + sizeof(".tmp"))))
            goto nomem;
        memcpy(s->tmp, s->path, n);
        memcpy(s->tmp + n, ".tmp", sizeof(".tmp"));
    } else {
        s->path = NULL;
    }
    *st = s;
    return SPOKE_OK;

nomem:
    free(s);
    snprintf(errstr, errstr_size, "counting_sink: out of memory");
    return SPOKE_ERR_NOMEM;
}

static int counting_sink_put(void *st, const struct spoke_record *rec,
                             char *errstr, size_t errstr_size)
{
    (void)rec; (void)errstr; (void)errstr_size;
    struct counting_sink_state *s = st;
    s->count++;
    return SPOKE_OK;
}

static int counting_sink_flush(void *st, char *errstr, size_t errstr_size)
{
    struct counting_sink_state *s = st;
    FILE *fp;

    if (!s->path)
        return SPOKE_OK;
    if (!(fp = fopen(s->tmp, "w")))
        goto fail;
    int werr = fprintf(fp, "%lld\n", (long long)s->count) < 0;
    if (fclose(fp) != 0 || werr)
        goto fail;
    if (rename(s->tmp, s->path) != 0)
        goto fail;
    return SPOKE_OK;

fail:
    snprintf(errstr, errstr_size, "counting_sink: cannot write %s: %s", s->path, strerror(errno));
    remove(s->tmp);
    return SPOKE_ERR_IO;
}

static void counting_sink_destroy(void *st)
{
    struct counting_sink_state *s = st;
    free(s->tmp);
    free(s);
}

static const struct spoke_plugin counting_sink = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "counting_sink",
    .kind        = SPOKE_KIND_SINK,
    .version     = "0.1.0",
    .description = "Test fixture: counts records, optionally writes the count on every flush",
    .config      = counting_sink_config,
    .init        = counting_sink_init,
    .put         = counting_sink_put,
    .flush       = counting_sink_flush,
    .destroy     = counting_sink_destroy,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &counting_sink; }
