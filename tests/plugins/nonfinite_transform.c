/* nonfinite_transform - test fixture: turns each record {"g": G, "v": V}
 * into the row {g: string G, value: double}, where V is a number or one of the
 * strings "nan", "inf", "-inf" (which JSON cannot hold): how a plugin hands
 * the sinks a non-finite double. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <spoke/plugin.h>

struct nf_state {
    const struct spoke_host_api *api;
    struct spoke_instance *inst;
    struct spoke_schema *schema;
};

static int nf_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                   const struct spoke_config *cfg, void **st, char *errstr, size_t errstr_size)
{
    (void)cfg;
    struct nf_state *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(errstr, errstr_size, "nonfinite_transform: out of memory");
        return SPOKE_ERR_NOMEM;
    }
    *st = s;
    s->api = api;
    s->inst = inst;
    s->schema = api->schema_new();
    if (!s->schema || api->schema_add(s->schema, "g", SPOKE_TYPE_STRING) < 0 ||
        api->schema_add(s->schema, "value", SPOKE_TYPE_DOUBLE) < 0) {
        snprintf(errstr, errstr_size, "nonfinite_transform: out of memory");
        return SPOKE_ERR_NOMEM;
    }
    return SPOKE_OK;
}

static int nf_process(void *st, struct spoke_record *rec, char *errstr, size_t errstr_size)
{
    struct nf_state *s = st;
    json_t *j = s->api->record_value_json(rec);
    json_t *g = json_object_get(j, "g"), *v = json_object_get(j, "v");
    double d;
    if (!json_is_string(g) || !v) {
        snprintf(errstr, errstr_size, "nonfinite_transform: want {\"g\": string, \"v\": ...}");
        return SPOKE_ERR_INVALID;
    }
    if (json_is_number(v))
        d = json_number_value(v);
    else if (json_is_string(v) && strcmp(json_string_value(v), "nan") == 0)
        d = NAN;
    else if (json_is_string(v) && strcmp(json_string_value(v), "inf") == 0)
        d = INFINITY;
    else if (json_is_string(v) && strcmp(json_string_value(v), "-inf") == 0)
        d = -INFINITY;
    else {
        snprintf(errstr, errstr_size, "nonfinite_transform: v is a number, nan, inf or -inf");
        return SPOKE_ERR_INVALID;
    }
    struct spoke_row *row = s->api->row_new(s->schema);
    if (!row || s->api->row_set_string(row, 0, json_string_value(g), json_string_length(g)) ||
        s->api->row_set_double(row, 1, d) || s->api->record_set_row(rec, row) != SPOKE_OK) {
        snprintf(errstr, errstr_size, "nonfinite_transform: cannot build the row");
        return SPOKE_ERR_NOMEM;
    }
    return SPOKE_OK;
}

static void nf_destroy(void *st)
{
    struct nf_state *s = st;
    s->api->schema_unref(s->schema);
    free(s);
}

static const struct spoke_plugin nonfinite_transform = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "nonfinite_transform",
    .kind        = SPOKE_KIND_TRANSFORM,
    .version     = "0.1.0",
    .description = "Test fixture: rows with NaN or infinite doubles",
    .init        = nf_init,
    .process     = nf_process,
    .destroy     = nf_destroy,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &nonfinite_transform; }
