/*
 * schema_mapper - a transform driven by a schema file: typed field
 * extraction from JSON objects, CSV lines or upstream rows, with renames,
 * coercions, defaults, required fields, filters, lookup enrichment and
 * computed fields. Each record becomes one typed row of a schema built once.
 *
 * This file is the plugin glue: the config table, the callbacks and the
 * metrics. The schema language is compiled in schema_mapper_schema.c and a
 * record is mapped in schema_mapper_map.c (see schema_mapper.h for the map
 * of the parts).
 *
 * Errors: a record that cannot be parsed, typed or validated returns an
 * error status with the reason (the host then applies errors.tolerance and
 * the dead-letter topic); a record a filter rejects returns SPOKE_DROP.
 *
 * Tombstones: a record with a null value (e.g. velib_source's for a station
 * that left the feed) has nothing to map; it is forwarded unchanged, key
 * included, so that a table downstream (aggregator, semantics: table)
 * deletes that key, as on a Kafka compacted topic.
 * Metrics are counted locally and handed to the host in batches (every
 * 4096 records and on a 200 ms tick): a mutex per record would cost more
 * than the mapping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spoke/plugin.h>

#include "schema_mapper.h"

#define SM_METRIC_BATCH 4096
#define SM_TICK_MS 200

static const char *const format_values[] = { "json", "csv", NULL };
static const char *const parser_values[] = { "extractor", "simdjson", NULL };
static const char *const missing_values[] = { "null", "default", "drop", "error", NULL };

static const struct spoke_config_field sm_config[] = {
    { .name = "schema.file", .type = SPOKE_CFG_STRING, .flags = SPOKE_CFG_REQUIRED,
      .doc = "Path of the schema file (YAML) that declares the output fields",
      .min = 1, .max = 4096 },
    { .name = "input.format", .type = SPOKE_CFG_STRING,
      .doc = "Input format, overriding the schema's input.format: json (an object per record) "
             "or csv (a line per record)", .allowed = format_values },
    { .name = "json.parser", .type = SPOKE_CFG_STRING, .default_value = "extractor",
      .doc = "JSON parser: extractor (single pass, validates and extracts) or simdjson (DOM "
             "parse, then lookups); both validate the whole record", .allowed = parser_values },
    { .name = "json.max.depth", .type = SPOKE_CFG_INT, .default_value = "64",
      .doc = "Deepest nesting of objects and arrays accepted in a JSON record",
      .min = 1, .max = 1024 },
    { .name = "max.record.bytes", .type = SPOKE_CFG_INT, .default_value = "1048576",
      .doc = "Largest record accepted, in bytes; a larger one takes the error path",
      .min = 16, .max = 67108864 },
    { .name = "key.field", .type = SPOKE_CFG_STRING,
      .doc = "Field whose value becomes the record key (overrides the schema's key)",
      .min = 1, .max = 256 },
    { .name = "timestamp.field", .type = SPOKE_CFG_STRING,
      .doc = "Timestamp field that becomes the record timestamp (overrides the schema's "
             "timestamp)", .min = 1, .max = 256 },
    { .name = "filter.field", .type = SPOKE_CFG_STRING,
      .doc = "Field that filter.values tests", .min = 1, .max = 256 },
    { .name = "filter.values", .type = SPOKE_CFG_LIST,
      .doc = "Keep only records whose filter.field is one of these values (read as the "
             "field's type); other records are dropped" },
    { .name = "lookup.field", .type = SPOKE_CFG_STRING,
      .doc = "Lookup field of the schema that the lookup.* keys configure (needed only when "
             "the schema has several)", .min = 1, .max = 256 },
    { .name = "lookup.file", .type = SPOKE_CFG_STRING,
      .doc = "CSV file with a header line, or JSON file, holding the lookup table; replaces "
             "the schema's table", .min = 1, .max = 4096 },
    { .name = "lookup.inline", .type = SPOKE_CFG_LIST,
      .doc = "Lookup entries as key=value; they replace the schema's table, or override "
             "entries of lookup.file" },
    { .name = "lookup.key.column", .type = SPOKE_CFG_STRING,
      .doc = "Column (CSV) or member (JSON array) of the lookup file holding the keys; "
             "default: the schema's key_column, else the name of the lookup key field",
      .min = 1, .max = 256 },
    { .name = "lookup.value.column", .type = SPOKE_CFG_STRING,
      .doc = "Column or member of the lookup file holding the values; default: the schema's "
             "value_column, else the lookup field's name", .min = 1, .max = 256 },
    { .name = "lookup.missing", .type = SPOKE_CFG_STRING,
      .doc = "When a key has no entry: null, default (lookup.default or the field's default), "
             "drop the record, or error; default: the schema's missing, else null",
      .allowed = missing_values },
    { .name = "lookup.default", .type = SPOKE_CFG_STRING,
      .doc = "Value of the lookup field for a missing key; only with lookup.missing default "
             "(or, when lookup.missing is not set, the schema's missing: default): with "
             "another policy it would never be used, and the config is refused",
      .max = 4096 },
    { 0 }
};

struct sm_state {
    const struct spoke_host_api *api;
    struct spoke_instance *inst;
    struct sm_mapper *m;
    /* counts not yet handed to the host */
    int64_t mapped, filtered, failed, misses, rows, tombstones, pending;
};

static const char *cfg_str(const struct spoke_host_api *api, const struct spoke_config *cfg,
                           const char *key)
{
    const char *s = api->config_string(cfg, key);
    return s && *s ? s : NULL;
}

/* The connector config as mapper options (strings owned by the host). */
static void read_opts(const struct spoke_host_api *api, const struct spoke_config *cfg,
                      struct sm_opts *out)
{
    struct sm_opts o;
    memset(&o, 0, sizeof(o));
    o.schema_file = api->config_string(cfg, "schema.file");
    o.input_format = cfg_str(api, cfg, "input.format");
    o.parser = cfg_str(api, cfg, "json.parser");
    o.max_depth = (int)api->config_int(cfg, "json.max.depth");
    o.max_bytes = (size_t)api->config_int(cfg, "max.record.bytes");
    o.key_field = cfg_str(api, cfg, "key.field");
    o.ts_field = cfg_str(api, cfg, "timestamp.field");
    o.filter_field = cfg_str(api, cfg, "filter.field");
    o.nfilter_values = api->config_list(cfg, "filter.values", &o.filter_values);
    o.lookup_field = cfg_str(api, cfg, "lookup.field");
    o.lookup_file = cfg_str(api, cfg, "lookup.file");
    o.nlookup_inline = api->config_list(cfg, "lookup.inline", &o.lookup_inline);
    o.lookup_key_column = cfg_str(api, cfg, "lookup.key.column");
    o.lookup_value_column = cfg_str(api, cfg, "lookup.value.column");
    o.lookup_missing = cfg_str(api, cfg, "lookup.missing");
    o.lookup_default = api->config_string(cfg, "lookup.default");
    *out = o;
}

/* What can be checked without reading a file (spoke validate, the REST
 * API): filter.field and filter.values together, lookup.inline entries
 * well formed (key=value, a key, no key twice), lookup.default only with a
 * lookup.missing that uses it (default). Every problem is reported at
 * once: each at its key through check_problem, or, with a host that has
 * none, joined in errstr. The schema file and lookup files are checked
 * when the connector starts. */
static int sm_check(const struct spoke_host_api *api, const struct spoke_config *cfg,
                    const char **key, char *errstr, size_t errstr_size)
{
    struct sm_opts o;
    struct problems p;
    read_opts(api, cfg, &o);
    sm_opts_problems(&o, &p);
    return problems_report_api(&p, api, cfg, key, errstr, errstr_size);
}

static int sm_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                   const struct spoke_config *cfg, void **out, char *errstr, size_t errstr_size)
{
    struct sm_opts o;
    read_opts(api, cfg, &o);

    struct sm_state *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(errstr, errstr_size, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    st->api = api;
    st->inst = inst;
    st->m = sm_mapper_new(api, &o, errstr, errstr_size);
    if (!st->m) {
        free(st);
        return SPOKE_ERR_INVALID;
    }
    struct sm_mapper *m = st->m;
    size_t visible = 0, lookups = 0, entries = 0;
    for (size_t i = 0; i < m->nf; i++) {
        visible += m->f[i].out >= 0;
        if (m->f[i].src == SM_SRC_LOOKUP) {
            lookups++;
            entries += m->f[i].lk.n;
        }
    }
    api->log(inst, SPOKE_LOG_INFO, "schema %s (%s): %zu fields out of %zu, %s input%s%s, "
             "%zu filters, %zu lookups (%zu entries)", m->name, m->file, visible, m->nf,
             m->format == SM_FMT_CSV ? "CSV" : "JSON",
             m->format == SM_FMT_JSON ? " via " : "",
             m->format == SM_FMT_JSON ? (m->parser == SM_PARSER_SIMDJSON ? "simdjson"
                                                                          : "the extractor") : "",
             m->nflt, lookups, entries);
    *out = st;
    return SPOKE_OK;
}

static void flush_metrics(struct sm_state *st)
{
    const struct spoke_host_api *api = st->api;
    if (!st->pending)
        return;
    /* The per-record details first, the records_* totals last: whoever
     * sees a total in the status (written by another thread at any time)
     * also sees the details of those records. */
    if (st->misses)
        api->metric_add(st->inst, "lookup_misses", st->misses);
    if (st->rows)
        api->metric_add(st->inst, "records_from_rows", st->rows);
    if (st->tombstones)
        api->metric_add(st->inst, "tombstones_forwarded", st->tombstones);
    if (st->mapped)
        api->metric_add(st->inst, "records_mapped", st->mapped);
    if (st->filtered)
        api->metric_add(st->inst, "records_filtered", st->filtered);
    if (st->failed)
        api->metric_add(st->inst, "records_failed", st->failed);
    st->mapped = st->filtered = st->failed = st->misses = st->rows = st->tombstones = 0;
    st->pending = 0;
}

static int sm_process_cb(void *vst, struct spoke_record *rec, char *errstr, size_t errstr_size)
{
    struct sm_state *st = vst;
    unsigned forms = st->api->record_value_forms(rec);
    if (forms == 0) {
        /* A tombstone: forwarded as it is, with its key, past the filters
         * and lookups (there are no fields to test or look up). */
        st->tombstones++;
        if (++st->pending >= SM_METRIC_BATCH)
            flush_metrics(st);
        return SPOKE_OK;
    }
    if (forms & SPOKE_FORM_ROW)
        st->rows++;
    int rc = sm_process(st->m, rec, errstr, errstr_size);
    if (rc == SPOKE_OK)
        st->mapped++;
    else if (rc == SPOKE_DROP)
        st->filtered++;
    else
        st->failed++;
    st->misses += st->m->lookup_misses;
    if (++st->pending >= SM_METRIC_BATCH)
        flush_metrics(st);
    return rc;
}

static int sm_tick(void *vst, int64_t now_ms, int64_t *next_tick_ms, char *errstr,
                   size_t errstr_size)
{
    struct sm_state *st = vst;
    flush_metrics(st);
    *next_tick_ms = SM_TICK_MS;
    return SPOKE_OK;
}

static void sm_destroy(void *vst)
{
    struct sm_state *st = vst;
    if (!st)
        return;
    sm_mapper_free(st->m);
    free(st);
}

static const struct spoke_plugin schema_mapper = {
    .hdr         = SPOKE_PLUGIN_HEADER_INIT,
    .name        = "schema_mapper",
    .kind        = SPOKE_KIND_TRANSFORM,
    .version     = "0.1.0",
    .description = "Maps JSON objects, CSV lines or rows to typed rows with a schema file "
                   "(paths, types, filters, lookups, computed fields)",
    .config      = sm_config,
    .init        = sm_init,
    .process     = sm_process_cb,
    .tick        = sm_tick,
    .destroy     = sm_destroy,
    .check       = sm_check,
};

/* The plugin's only exported symbol: returns the constant descriptor. */
SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void)
{
    return &schema_mapper;
}
