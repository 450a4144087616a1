/* api - the host services table (struct spoke_host_api). Thin wrappers:
 * records and rows live in record.c/row.c, config in cfgval.c; what needs
 * the instance (emit, offsets, metrics) is here. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfgval.h"
#include "clock.h"
#include "counter.h"
#include "instance.h"
#include "log.h"
#include "record.h"
#include "registry.h"
#include "runtime.h"
#include "status.h"

static void api_log(struct spoke_instance *inst, enum spoke_log_level level, const char *fmt, ...)
{
    /* A connector's own logger level (PUT /admin/loggers/{name}) wins. */
    int threshold = inst && inst->log_level >= 0 ? inst->log_level : log_threshold;
    if ((int)level > threshold)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vemit(level, inst ? inst->name : NULL, fmt, ap);
    va_end(ap);
}

static void *api_alloc(size_t size) { return malloc(size ? size : 1); }
static void api_free(void *p) { free(p); }

/* NULL for no instance, as log takes it (unit tests drive plugins so). */
static const char *api_instance_name(const struct spoke_instance *inst)
{
    return inst ? inst->name : NULL;
}

static struct spoke_record *api_record_new(struct spoke_instance *inst, const char *topic,
                                           const void *key, size_t klen, const void *val,
                                           size_t vlen)
{
    const char *t = topic ? intern_str(topic) : inst->out_topic;
    if (!t) {
        LOG_E(inst->name, "record_new: no topic given and the connector has no `topic`");
        return NULL;
    }
    return rec_new_interned(t, key, klen, val, vlen);
}

static void api_record_free(struct spoke_record *rec) { rec_free(rec); }

int inst_flush_staging(struct spoke_instance *inst)
{
    if (inst->nstaging == 0)
        return SPOKE_OK;
    size_t n = inst->nstaging;
    inst->nstaging = 0;
    return router_publish(runtime_router(inst->rt), inst->staging, n, &inst->cancel);
}

/* A source's record joins its tracker at its position. Frees rec on failure. */
static int source_origin(struct spoke_instance *inst, struct spoke_record *rec)
{
    struct origin *o = tracker_add(inst->tracker, rec->part, rec->off, inst->poll_started_ns);
    if (!o) {
        rec_free(rec);
        return SPOKE_ERR_NOMEM;
    }
    rec_set_origin(rec, o);
    return SPOKE_OK;
}

static int api_emit_error(struct spoke_instance *inst, struct spoke_record *rec, int status,
                          const char *reason)
{
    if (!rec)
        return SPOKE_ERR_INVALID;
    if (inst->kind != SPOKE_KIND_SOURCE) {
        LOG_E(inst->name, "emit_error: only sources call it");
        rec_free(rec);
        return SPOKE_ERR_STATE;
    }
    if (inst->cancel || inst->stop_req) {
        rec_free(rec);
        return SPOKE_ERR_STOPPED;
    }
    if (!rec->origin && source_origin(inst, rec) != SPOKE_OK)
        return SPOKE_ERR_NOMEM;
    return inst_source_error(inst, rec, status >= 0 ? SPOKE_ERR : status, reason);
}

static int api_emit(struct spoke_instance *inst, struct spoke_record *rec)
{
    if (!rec)
        return SPOKE_ERR_INVALID;
    if (inst->kind == SPOKE_KIND_SINK) {
        LOG_E(inst->name, "emit: sinks cannot emit records");
        rec_free(rec);
        return SPOKE_ERR_STATE;
    }
    if (inst->cancel || inst->stop_req) {
        /* Not acknowledged: the source replays it after a restart. */
        rec_free(rec);
        return SPOKE_ERR_STOPPED;
    }
    if (inst->out) {
        if (inst_gate_origin(inst, rec) != SPOKE_OK)
            return SPOKE_ERR_NOMEM;
    } else if (!rec->origin) {
        if (inst->kind == SPOKE_KIND_SOURCE) {
            if (source_origin(inst, rec) != SPOKE_OK)
                return SPOKE_ERR_NOMEM;
        } else if (inst->cur && inst->cur->origin) {
            origin_hold(inst->cur->origin);
            rec_set_origin(rec, inst->cur->origin);
        }
    }
    COUNTER_ADD(&inst->records_out, 1);  /* only the task thread emits */
    inst_note_topic(inst, rec->topic);
    inst->staging[inst->nstaging++] = rec;
    if (inst->nstaging == INST_STAGE_MAX)
        return inst_flush_staging(inst);
    return SPOKE_OK;
}

/* The value caches are logically const (deriving a form changes no value). */
static const void *api_value_bytes(const struct spoke_record *rec, size_t *len)
{
    return rec_value_bytes((struct spoke_record *)rec, len);
}

static const struct spoke_row *api_value_row(const struct spoke_record *rec, const char **why)
{
    return rec_value_row((struct spoke_record *)rec, why);
}

static json_t *api_value_json(const struct spoke_record *rec)
{
    return rec_value_json((struct spoke_record *)rec);
}

static unsigned api_value_forms(const struct spoke_record *rec)
{
    /* The host's REC_FORM_* bits are the ABI's SPOKE_FORM_* bits. */
    return rec->forms;
}

static const char *api_record_topic(const struct spoke_record *rec) { return rec->topic; }

static const void *api_record_key(const struct spoke_record *rec, size_t *len)
{
    if (len)
        *len = rec->klen;
    return rec->key;
}

static int64_t api_record_timestamp(const struct spoke_record *rec) { return rec->ts; }
static void api_record_set_timestamp(struct spoke_record *rec, int64_t ts) { rec->ts = ts; }
static size_t api_record_header_count(const struct spoke_record *rec) { return rec->nhdrs; }

static int offsets_lookup(struct spoke_instance *inst, const char *partition, int64_t *offset)
{
    return offsets_get(runtime_offsets(inst->rt), inst->name, partition, offset);
}

static size_t offsets_n(struct spoke_instance *inst)
{
    return offsets_count(runtime_offsets(inst->rt), inst->name);
}

static int offsets_i(struct spoke_instance *inst, size_t i, const char **partition,
                     int64_t *offset)
{
    return offsets_at(runtime_offsets(inst->rt), inst->name, i, partition, offset);
}

static int metric_name_ok(const char *name)
{
    size_t n = 0;
    for (const char *p = name; *p; p++, n++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return 0;
    return n >= 1 && n <= 64;
}

static void metric_update(struct spoke_instance *inst, const char *name, int64_t v, int add)
{
    if (!metric_name_ok(name)) {
        LOG_W(inst->name, "metric name '%s' ignored: names match [a-z0-9_]{1,64}", name);
        return;
    }
    pthread_mutex_lock(&inst->lock);
    size_t i;
    for (i = 0; i < inst->nmetrics; i++)
        if (strcmp(inst->metrics[i].name, name) == 0)
            break;
    if (i == inst->nmetrics) {
        struct inst_metric *m = realloc(inst->metrics, (i + 1) * sizeof(*m));
        if (!m) {
            pthread_mutex_unlock(&inst->lock);
            return;
        }
        inst->metrics = m;
        snprintf(m[i].name, sizeof(m[i].name), "%s", name);
        m[i].value = 0;
        inst->nmetrics++;
    }
    inst->metrics[i].value = add ? inst->metrics[i].value + v : v;
    pthread_mutex_unlock(&inst->lock);
}

static void api_metric_add(struct spoke_instance *inst, const char *name, int64_t d)
{
    metric_update(inst, name, d, 1);
}

static void api_metric_set(struct spoke_instance *inst, const char *name, int64_t v)
{
    metric_update(inst, name, v, 0);
}

/* Records the outcome the plugin reported for a pending record; the host
 * settles it after the callback returns (runtime.c, sink_settle). */
static int sink_report(struct spoke_instance *inst, const struct spoke_record *rec, int state,
                       int status, const char *reason, const char *what)
{
    if (!inst || inst->kind != SPOKE_KIND_SINK || !rec)
        return SPOKE_ERR_INVALID;
    struct pend_entry *e = pendset_find(&inst->pend, rec);
    if (!e) {
        LOG_E(inst->name, "%s: the record is not pending on this connector", what);
        return SPOKE_ERR_INVALID;
    }
    if (e->state != PEND_PUT)
        return SPOKE_OK; /* the first outcome wins */
    if (inst->nsettled == inst->capsettled) {
        size_t cap = inst->capsettled ? inst->capsettled * 2 : 64;
        struct spoke_record **v = realloc(inst->settled, cap * sizeof(*v));
        if (!v)
            return SPOKE_ERR_NOMEM;
        inst->settled = v;
        inst->capsettled = cap;
    }
    if (state == PEND_FAILED) {
        char *why = strdup(reason && *reason ? reason
                                             : status_text(status >= 0 ? SPOKE_ERR : status));
        if (!why)
            return SPOKE_ERR_NOMEM;
        e->reason = why;
        e->status = status >= 0 ? SPOKE_ERR : status;
    }
    e->state = state;
    inst->settled[inst->nsettled++] = e->rec;
    return SPOKE_OK;
}

static int api_sink_record_failed(struct spoke_instance *inst, const struct spoke_record *rec,
                                  int status, const char *reason)
{
    return sink_report(inst, rec, PEND_FAILED, status, reason, "sink_record_failed");
}

static int api_sink_record_done(struct spoke_instance *inst, const struct spoke_record *rec)
{
    return sink_report(inst, rec, PEND_DONE, SPOKE_OK, NULL, "sink_record_done");
}

static void api_status_note(struct spoke_instance *inst, const char *note)
{
    int now = note && *note;
    pthread_mutex_lock(&inst->lock);
    int was = inst->note[0] != '\0';
    snprintf(inst->note, sizeof(inst->note), "%s", now ? note : "");
    pthread_mutex_unlock(&inst->lock);
    /* Only the turns: the plugin logs the details of each attempt. */
    if (now && !was)
        LOG_W(inst->name, "degraded: %s", note);
    else if (was && !now)
        LOG_I(inst->name, "no longer degraded");
}

static void api_poll_started_at(struct spoke_instance *inst, int64_t started_ns)
{
    if (!inst || inst->kind != SPOKE_KIND_SOURCE || !inst->in_poll) {
        LOG_E(inst ? inst->name : NULL, "poll_started_at: only a source calls it, from poll()");
        return;
    }
    /* Only ever earlier: the start of this call stays the latest start. */
    if (started_ns < inst->poll_started_ns)
        inst->poll_started_ns = started_ns;
}

static void api_poll_data_at(struct spoke_instance *inst, int64_t at_ns)
{
    if (!inst || inst->kind != SPOKE_KIND_SOURCE || !inst->in_poll) {
        LOG_E(inst ? inst->name : NULL, "poll_data_at: only a source calls it, from poll()");
        return;
    }
    int64_t now = clock_mono_ns();
    inst->poll_started_ns = at_ns < now ? at_ns : now;
}

static size_t api_input_backlog(struct spoke_instance *inst)
{
    /* Stopping: no more input is handed over, so none waits. */
    if (!inst || !inst->inq || inst->stop_req || inst->draining)
        return 0;
    /* Also the records of the batch being handed over, after this one. */
    return rqueue_depth(inst->inq) +
           atomic_load_explicit(&inst->batch_rest, memory_order_relaxed);
}

static const struct spoke_config *api_worker_config(struct spoke_instance *inst)
{
    return inst ? runtime_worker(inst->rt)->wcfg : NULL;
}

const struct spoke_host_api api_table = {
    .abi_version = SPOKE_ABI_VERSION,
    .struct_size = sizeof(struct spoke_host_api),
    .log = api_log,
    .strerror = status_text,
    .alloc = api_alloc,
    .free = api_free,
    .wall_ms = clock_wall_ms,
    .mono_ms = clock_mono_ms,
    .instance_name = api_instance_name,
    .config_string = cfgval_string,
    .config_int = cfgval_int,
    .config_double = cfgval_double,
    .config_bool = cfgval_bool,
    .config_list = cfgval_list,
    .record_new = api_record_new,
    .record_free = api_record_free,
    .emit = api_emit,
    .record_set_position = rec_set_position,
    .record_position = rec_position,
    .record_topic = api_record_topic,
    .record_set_topic = rec_set_topic,
    .record_key = api_record_key,
    .record_set_key = rec_set_key,
    .record_timestamp = api_record_timestamp,
    .record_set_timestamp = api_record_set_timestamp,
    .record_header_add = rec_header_add,
    .record_header_count = api_record_header_count,
    .record_header_get = rec_header_get,
    .record_value_bytes = api_value_bytes,
    .record_set_value = rec_set_value,
    .record_value_row = api_value_row,
    .record_set_row = rec_set_row,
    .record_value_json = api_value_json,
    .record_set_json = rec_set_json,
    .schema_new = schema_new,
    .schema_add = schema_add,
    .schema_index = schema_index,
    .schema_count = schema_count,
    .schema_name = schema_name,
    .schema_type = schema_type,
    .schema_ref = schema_ref,
    .schema_unref = schema_unref,
    .row_new = row_new,
    .row_new_list = row_new_list,
    .row_free = row_free,
    .row_count = row_count,
    .row_schema = row_schema,
    .row_index = row_index,
    .row_set_null = row_set_null,
    .row_set_bool = row_set_bool,
    .row_set_int = row_set_int,
    .row_set_double = row_set_double,
    .row_set_string = row_set_string,
    .row_set_timestamp = row_set_timestamp,
    .row_set_row = row_set_row,
    .row_type = row_type,
    .row_get_bool = row_get_bool,
    .row_get_int = row_get_int,
    .row_get_double = row_get_double,
    .row_get_string = row_get_string,
    .row_get_timestamp = row_get_timestamp,
    .row_get_row = row_get_row,
    .offset_get = offsets_lookup,
    .offset_count = offsets_n,
    .offset_at = offsets_i,
    .metric_add = api_metric_add,
    .metric_set = api_metric_set,
    .record_value_forms = api_value_forms,
    .sink_record_failed = api_sink_record_failed,
    .config_prefixed = cfgval_prefixed,
    .worker_config = api_worker_config,
    .emit_error = api_emit_error,
    .sink_record_done = api_sink_record_done,
    .input_backlog = api_input_backlog,
    .row_values = row_values,
    .status_note = api_status_note,
    .poll_started_at = api_poll_started_at,
    .check_problem = registry_check_problem,
    .poll_data_at = api_poll_data_at,
};

_Static_assert(REC_FORM_BYTES == SPOKE_FORM_BYTES && REC_FORM_ROW == SPOKE_FORM_ROW &&
               REC_FORM_JSON == SPOKE_FORM_JSON, "value form bits agree");
