/* runtime - connectors, their task threads, shutdown, reload, housekeeping. */
#include "runtime_int.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <regex.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cfgval.h"
#include "clock.h"
#include "counter.h"
#include "conncfg.h"
#include "cpubudget.h"
#include "ctl.h"
#include "fsutil.h"
#include "grow.h"
#include "instance.h"
#include "log.h"
#include "memtrim.h"
#include "recycle.h"
#include "record.h"
#include "status.h"

/* Snapshot file: "SPOKESNAP 2 <data length>\n", one line of JSON with the
 * input positions the state covers, "\n", then the plugin's bytes.
 * Version 1 files (no positions line) are still read. */
#define SNAP_MAGIC "SPOKESNAP"


/* ------------------------------------------------------------------------ */
/* time and small helpers                                                    */
/* ------------------------------------------------------------------------ */

struct router *runtime_router(struct runtime *rt) { return rt->router; }
const struct worker_settings *runtime_worker(struct runtime *rt) { return &rt->ws; }

const char *rt_worker_id(const struct runtime *rt)
{
    /* Connect's worker_id is host:port, without the listener's scheme. */
    const char *l = rt->ws.listeners ? rt->ws.listeners : "";
    const char *p = strstr(l, "://");
    return p ? p + 3 : l;
}
struct offset_store *runtime_offsets(struct runtime *rt) { return rt->offsets; }

const char *rt_state_name(enum conn_state s)
{
    switch (s) {
    case CONN_UNASSIGNED: return "UNASSIGNED";
    case CONN_RUNNING: return "RUNNING";
    case CONN_PAUSED: return "PAUSED";
    case CONN_STOPPED: return "STOPPED";
    case CONN_FAILED: return "FAILED";
    case CONN_RESTARTING: return "RESTARTING";
    }
    return "UNASSIGNED";
}

const char *rt_target_name(enum conn_target t)
{
    switch (t) {
    case TARGET_RUNNING: return "RUNNING";
    case TARGET_PAUSED: return "PAUSED";
    case TARGET_STOPPED: return "STOPPED";
    }
    return "RUNNING";
}

int rt_target_parse(const char *s)
{
    if (strcmp(s, "RUNNING") == 0)
        return TARGET_RUNNING;
    if (strcmp(s, "PAUSED") == 0)
        return TARGET_PAUSED;
    if (strcmp(s, "STOPPED") == 0)
        return TARGET_STOPPED;
    return -1;
}

static int valid_topic(const char *t)
{
    size_t n = strlen(t);
    if (n < 1 || n > 249)
        return 0;
    for (const char *p = t; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

/* Wakes the housekeeping thread (state change: write status now). */
static void hk_kick(struct runtime *rt)
{
    pthread_mutex_lock(&rt->hk_lock);
    rt->hk_kick = 1;
    pthread_cond_signal(&rt->hk_cond);
    pthread_mutex_unlock(&rt->hk_lock);
}

/* ------------------------------------------------------------------------ */
/* validation                                                                */
/* ------------------------------------------------------------------------ */

void worker_settings_free(struct worker_settings *ws)
{
    for (size_t i = 0; i < ws->npath; i++)
        free(ws->plugin_path[i]);
    free(ws->plugin_path);
    free(ws->state_dir);
    free(ws->listeners);
    free(ws->rest_token_file);
    for (size_t i = 0; i < ws->nrest_hosts; i++)
        free(ws->rest_hosts[i]);
    free(ws->rest_hosts);
    cfgval_free(ws->wcfg);
    memset(ws, 0, sizeof(*ws));
}

/* A connector that passed validation. */
struct conn_spec {
    const char *name;                 /* borrowed from the desired entry */
    const struct spoke_plugin *plugin;
    struct spoke_config *hcfg, *pcfg;
    char *fingerprint;
    json_t *config;                   /* object of strings, with "name" */
    enum conn_target target;
    int from_rest;
    char *file_fp;
    const char *bridge_of;            /* a Kafka bridge of this topic (interned) */
};

static void spec_clear(struct conn_spec *s)
{
    cfgval_free(s->hcfg);
    cfgval_free(s->pcfg);
    free(s->fingerprint);
    json_decref(s->config);
    free(s->file_fp);
    memset(s, 0, sizeof(*s));
}

/* "file:line:col: what: " or, for configs without positions (REST),
 * "file: what: ". */
static void err_prefix(struct buf *errs, const char *path, struct cfg_pos pos, const char *what)
{
    if (pos.line > 0)
        buf_printf(errs, "%s:%d:%d: %s: ", path, pos.line, pos.col, what);
    else
        buf_printf(errs, "%s: %s: ", path, what);
}

static void report_cfgval(struct buf *errs, const char *path, const struct cfg_section *sec,
                          const char *what, const struct cfgval_errors *ce)
{
    for (size_t i = 0; i < ce->n; i++) {
        const struct cfgval_error *e = &ce->e[i];
        struct cfg_pos pos = sec->pos;
        if (e->kv_index >= 0 && (size_t)e->kv_index < sec->nkv)
            pos = sec->kv[e->kv_index].key_pos;
        err_prefix(errs, path, pos, what);
        buf_printf(errs, "%s\n", e->msg);
    }
}

static int cmp_kv(const void *a, const void *b)
{
    const struct cfg_kv *const *x = a, *const *y = b;
    return strcmp((*x)->key, (*y)->key);
}

/* Canonical text of a connector config: sorted key=value lines. Two configs
 * with the same text run identically, so reload keeps such a connector. */
static char *fingerprint(const struct cfg_section *sec)
{
    const struct cfg_kv **v = calloc(sec->nkv + 1, sizeof(*v));
    if (!v)
        return NULL;
    for (size_t i = 0; i < sec->nkv; i++)
        v[i] = &sec->kv[i];
    qsort(v, sec->nkv, sizeof(*v), cmp_kv);
    struct buf b = BUF_INIT;
    buf_puts(&b, "");
    for (size_t i = 0; i < sec->nkv; i++)
        buf_printf(&b, "%s=%s\n", v[i]->key, v[i]->value);
    free(v);
    return buf_steal(&b, NULL);
}

static void plugin_names(const struct registry *reg, struct buf *out)
{
    for (size_t i = 0; i < reg->nplugins; i++)
        buf_printf(out, "%s%s", i ? ", " : "", reg->plugins[i].name);
    if (reg->nplugins == 0)
        buf_puts(out, "none");
}

/* Validates one connector section into spec; returns the number of errors. */
static size_t check_connector(const char *path, const struct cfg_section *sec,
                              struct registry *reg, struct conn_spec *spec, struct buf *errs)
{
    size_t before = errs->len, nerr = 0;
    char what[200];
    snprintf(what, sizeof(what), "connector '%s'", sec->name);
    memset(spec, 0, sizeof(*spec));
    spec->name = sec->name;

    const struct cfg_kv *cls = cfg_section_get(sec, "connector.class");
    if (!cls) {
        err_prefix(errs, path, sec->pos, what);
        buf_puts(errs, "missing required configuration key 'connector.class'\n");
        return 1;
    }
    if (!registry_valid_name(cls->value)) {
        err_prefix(errs, path, cls->value_pos, what);
        buf_printf(errs, "key 'connector.class': '%s' is not a plugin name "
                   "(names match [a-z0-9_]{1,64})\n", cls->value);
        return 1;
    }
    const struct plugin_entry *entry = registry_find(reg, cls->value);
    if (!entry) {
        struct buf names = BUF_INIT;
        plugin_names(reg, &names);
        err_prefix(errs, path, cls->value_pos, what);
        buf_printf(errs, "key 'connector.class': no plugin named '%s' in plugin.path "
                   "(found: %s)\n", cls->value, names.p);
        buf_free(&names);
        return 1;
    }
    spec->plugin = entry->desc;
    struct cfgval_errors ce = { 0 };
    if (cfgval_validate(conncfg_fields, spec->plugin->config, sec->kv, sec->nkv,
                        &spec->hcfg, &spec->pcfg, &ce) != 0) {
        report_cfgval(errs, path, sec, what, &ce);
        nerr += ce.n ? ce.n : 1;
        cfgval_errors_free(&ce);
        return nerr;
    }

    enum spoke_kind kind = spec->plugin->kind;
    const char *topic = cfgval_string(spec->hcfg, "topic");
    const char *regex = cfgval_string(spec->hcfg, "topics.regex");
    const char *const *topics = NULL;
    size_t ntopics = cfgval_list(spec->hcfg, "topics", &topics);
    const char *dlq = cfgval_string(spec->hcfg, "errors.deadletterqueue.topic.name");
    struct cfg_pos pos = sec->pos;
#define ERR_AT(key, ...) do { \
        const struct cfg_kv *kv_ = cfg_section_get(sec, key); \
        struct cfg_pos p_ = kv_ ? kv_->key_pos : pos; \
        err_prefix(errs, path, p_, what); \
        buf_printf(errs, __VA_ARGS__); buf_putc(errs, '\n'); nerr++; } while (0)

    if (kind == SPOKE_KIND_SOURCE) {
        if (!topic)
            ERR_AT("topic", "a source needs `topic`, the topic it writes");
        if (ntopics || regex)
            ERR_AT(ntopics ? "topics" : "topics.regex",
                   "a source reads no topics: remove `%s`", ntopics ? "topics" : "topics.regex");
    } else {
        if (!ntopics && !regex)
            ERR_AT("topics", "a %s needs `topics` or `topics.regex`, the topics it reads",
                   kind == SPOKE_KIND_SINK ? "sink" : "transform");
        if (ntopics && regex)
            ERR_AT("topics.regex", "give `topics` or `topics.regex`, not both");
        if (kind == SPOKE_KIND_TRANSFORM && !topic)
            ERR_AT("topic", "a transform needs `topic`, the topic it writes");
        if (kind == SPOKE_KIND_SINK && topic)
            ERR_AT("topic", "a sink writes no topic: remove `topic` (it reads `topics`)");
    }
    if (topic && !valid_topic(topic))
        ERR_AT("topic", "'%s' is not a valid topic name ([A-Za-z0-9._-]{1,249})", topic);
    if (dlq && !valid_topic(dlq))
        ERR_AT("errors.deadletterqueue.topic.name",
               "'%s' is not a valid topic name ([A-Za-z0-9._-]{1,249})", dlq);
    for (size_t i = 0; i < ntopics; i++) {
        if (!valid_topic(topics[i]))
            ERR_AT("topics", "'%s' is not a valid topic name ([A-Za-z0-9._-]{1,249})", topics[i]);
        if (dlq && strcmp(dlq, topics[i]) == 0)
            ERR_AT("errors.deadletterqueue.topic.name",
                   "the dead-letter topic '%s' is also an input topic (records would loop)", dlq);
        if (topic && strcmp(topic, topics[i]) == 0)
            ERR_AT("topic", "'%s' is both read and written (records would loop)", topic);
    }
    if (regex) {
        regex_t re;
        int rc = regcomp(&re, regex, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char why[128];
            regerror(rc, &re, why, sizeof(why));
            ERR_AT("topics.regex", "'%s' is not a valid POSIX extended regex: %s", regex, why);
        } else {
            regfree(&re);
        }
    }
    if (nerr == 0) {
        /* What the plugin's table cannot say (keys that go together). */
        char why[SPOKE_ERRSTR_SIZE];
        const char *key = NULL;
        struct check_problems more;
        if (registry_check_config(spec->plugin, &api_table, spec->pcfg, &key, why,
                                  sizeof(why), &more) != SPOKE_OK) {
            /* Each at its key (at the connector when it names none). */
            for (size_t i = 0; i <= more.n; i++) {
                const char *k = i ? more.v[i - 1].key : key;
                const char *m = i ? more.v[i - 1].msg : why;
                if (k) {
                    ERR_AT(k, "%s", m);
                } else {
                    err_prefix(errs, path, pos, what);
                    buf_printf(errs, "%s\n", m);
                    nerr++;
                }
            }
            check_problems_free(&more);
        }
    }
#undef ERR_AT
    if (nerr == 0 && !(spec->fingerprint = fingerprint(sec))) {
        buf_printf(errs, "%s: out of memory\n", what);
        nerr++;
    }
    if (nerr)
        spec_clear(spec);
    (void)before;
    return nerr;
}

static int load_worker(const struct cfg_file *f, const struct runtime_opts *opts,
                       struct worker_settings *ws, struct buf *errs)
{
    struct spoke_config *wc = NULL;
    struct cfgval_errors ce = { 0 };
    if (cfgval_validate(conncfg_worker_fields, NULL, f->worker.kv, f->worker.nkv, &wc, NULL, &ce) != 0) {
        report_cfgval(errs, f->path, &f->worker, "worker", &ce);
        size_t n = ce.n ? ce.n : 1;
        cfgval_errors_free(&ce);
        return (int)n;
    }
    memset(ws, 0, sizeof(*ws));
    const char *const *items = NULL;
    size_t n = cfgval_list(wc, "plugin.path", &items);
    size_t extra = opts ? opts->nplugin_dirs : 0;
    ws->plugin_path = calloc(n + extra + 1, sizeof(char *));
    for (size_t i = 0; ws->plugin_path && i < n; i++)
        ws->plugin_path[ws->npath++] = strdup(items[i]);
    for (size_t i = 0; ws->plugin_path && i < extra; i++)
        ws->plugin_path[ws->npath++] = strdup(opts->plugin_dirs[i]);
    ws->state_dir = strdup(opts && opts->state_dir ? opts->state_dir
                                                    : cfgval_string(wc, "state.dir"));
    ws->listeners = strdup(opts && opts->listen ? opts->listen : cfgval_string(wc, "listeners"));
    ws->rest_enable = cfgval_bool(wc, "rest.enable");
    const char *tf = cfgval_string(wc, "rest.token.file");
    ws->rest_token_file = tf ? strdup(tf) : NULL;
    n = cfgval_list(wc, "rest.hosts.allowed", &items);
    ws->rest_hosts = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; ws->rest_hosts && i < n; i++)
        ws->rest_hosts[ws->nrest_hosts++] = strdup(items[i]);
    ws->rest_max_connections = (unsigned)cfgval_int(wc, "rest.max.connections");
    ws->rest_timeout_ms = (unsigned)cfgval_int(wc, "rest.connection.timeout.ms");
    ws->rest_threads_set = cfgval_is_set(wc, "rest.threads");
    ws->rest_max_body = (size_t)cfgval_int(wc, "rest.max.body.bytes");
    ws->log_level = opts && opts->log_level >= 0 ? opts->log_level
                                                 : log_level_parse(cfgval_string(wc, "log.level"));
    ws->shutdown_timeout_ms = cfgval_int(wc, "shutdown.timeout.ms");
    ws->offset_flush_ms = cfgval_int(wc, "offset.flush.interval.ms");
    ws->status_interval_ms = cfgval_int(wc, "status.interval.ms");
    memtrim_unmap_after(cfgval_int(wc, "idle.unmap.after.ms"));
    const char *sched = cfgval_string(wc, "tasks.scheduling");
    ws->tasks_batch = strcmp(sched, "batch") == 0 ||
                      (strcmp(sched, "auto") == 0 && cpubudget() == 1);
    ws->wcfg = wc;
    return 0;
}

static size_t check_topics(const struct cfg_file *f, struct buf *errs)
{
    size_t nerr = 0;
    for (size_t i = 0; i < f->ntopics; i++) {
        const struct cfg_section *t = &f->topics[i];
        char what[300];
        snprintf(what, sizeof(what), "topic '%s'", t->name);
        if (!valid_topic(t->name)) {
            buf_printf(errs, "%s:%d:%d: %s: not a valid topic name ([A-Za-z0-9._-]{1,249})\n",
                       f->path, t->pos.line, t->pos.col, what);
            nerr++;
            continue;
        }
        struct spoke_config *tc = NULL;
        struct cfgval_errors ce = { 0 };
        if (cfgval_validate(conncfg_topic_fields, NULL, t->kv, t->nkv, &tc, NULL, &ce) != 0) {
            report_cfgval(errs, f->path, t, what, &ce);
            nerr += ce.n ? ce.n : 1;
            cfgval_errors_free(&ce);
        }
        cfgval_free(tc);
    }
    return nerr;
}

/* Validates everything and, when specs is not NULL, returns the specs. */
static size_t check_all(const struct cfg_file *f, const struct runtime_opts *opts,
                        struct registry *reg, struct worker_settings *ws,
                        struct conn_spec **specs, struct buf *errs)
{
    size_t nerr = 0;
    struct worker_settings local;
    struct worker_settings *w = ws ? ws : &local;
    if (load_worker(f, opts, w, errs) != 0)
        return 1;
    registry_scan(reg, (const char *const *)w->plugin_path, w->npath);
    nerr += check_topics(f, errs);
    struct conn_spec *sp = calloc(f->nconnectors + 1, sizeof(*sp));
    if (!sp) {
        buf_puts(errs, "out of memory\n");
        nerr++;
    }
    for (size_t i = 0; sp && i < f->nconnectors; i++)
        nerr += check_connector(f->path, &f->connectors[i], reg, &sp[i], errs);
    if (nerr || !specs) {
        for (size_t i = 0; sp && i < f->nconnectors; i++)
            spec_clear(&sp[i]);
        free(sp);
        sp = NULL;
    }
    if (specs)
        *specs = sp;
    if (!ws)
        worker_settings_free(&local);
    else if (nerr)
        worker_settings_free(ws);
    return nerr;
}

size_t runtime_check(const struct cfg_file *f, const struct runtime_opts *opts,
                     struct registry *reg, struct worker_settings *ws, struct buf *errs)
{
    return check_all(f, opts, reg, ws, NULL, errs);
}

/* ------------------------------------------------------------------------ */
/* instances                                                                 */
/* ------------------------------------------------------------------------ */

static void set_state(struct spoke_instance *inst, enum conn_state s, const char *trace)
{
    pthread_mutex_lock(&inst->lock);
    if (s == CONN_RUNNING && inst->state != CONN_RUNNING)
        inst->running_since_ms = clock_mono_ms();
    inst->state = s;
    if (trace)
        snprintf(inst->trace, sizeof(inst->trace), "%s", trace);
    else if (s != CONN_FAILED)
        inst->trace[0] = '\0';
    inst->retrying = 0;
    pthread_cond_broadcast(&inst->cond);
    pthread_mutex_unlock(&inst->lock);
    hk_kick(inst->rt);
}

static void fail(struct spoke_instance *inst, const char *stage, int rc, const char *err)
{
    char trace[INST_TRACE_MAX];
    snprintf(trace, sizeof(trace), "%s failed (%s): %s", stage, status_text(rc),
             err && *err ? err : "no details given by the plugin");
    LOG_E(inst->name, "%s", trace);
    if (inst->inq) {
        size_t n = rqueue_set_discard(inst->inq, 1);
        LOG_W(inst->name, "failed: records for it are discarded until it restarts (%zu queued "
              "now); their source offsets are not committed, so they are replayed after a "
              "restart", n);
    }
    if (inst->restart_max != 0 && !inst->rt->stopping &&
        (inst->restart_max < 0 || inst->restart_attempts < inst->restart_max)) {
        /* Exponential backoff with +-20% jitter, capped; hk_thread restarts it. */
        int64_t d = inst->restart_backoff_ms;
        for (int i = 0; i < inst->restart_attempts && d < inst->restart_backoff_max_ms; i++)
            d *= 2;
        if (d > inst->restart_backoff_max_ms)
            d = inst->restart_backoff_max_ms;
        d = d * (80 + rand() % 41) / 100;
        pthread_mutex_lock(&inst->lock);
        inst->restart_at_ms = clock_mono_ms() + d;
        pthread_mutex_unlock(&inst->lock);
        LOG_I(inst->name, "automatic restart %d of %s in %lld ms (restart.max.retries)",
              inst->restart_attempts + 1,
              inst->restart_max < 0 ? "unlimited" : cfgval_string(inst->hcfg, "restart.max.retries"),
              (long long)d);
    }
    set_state(inst, CONN_FAILED, trace);
}

static void set_retrying(struct spoke_instance *inst, const char *stage, const char *err)
{
    pthread_mutex_lock(&inst->lock);
    int was = inst->retrying;
    inst->retrying = 1;
    snprintf(inst->trace, sizeof(inst->trace), "retrying %s: %s", stage,
             err && *err ? err : "transient failure");
    pthread_mutex_unlock(&inst->lock);
    if (!was) {
        LOG_W(inst->name, "%s: transient failure, retrying with backoff: %s", stage,
              err && *err ? err : "no details");
        hk_kick(inst->rt);
    }
}

static void clear_retrying(struct spoke_instance *inst)
{
    if (!inst->retrying)
        return;
    pthread_mutex_lock(&inst->lock);
    inst->retrying = 0;
    inst->trace[0] = '\0';
    pthread_mutex_unlock(&inst->lock);
    LOG_I(inst->name, "recovered");
    hk_kick(inst->rt);
}

/* Waits until the deadline or a stop/pause change. */
static void inst_wait(struct spoke_instance *inst, int64_t deadline_ms)
{
    struct timespec ts;
    clock_deadline_ts(&ts, deadline_ms);
    pthread_mutex_lock(&inst->lock);
    while (!inst->stop_req && clock_mono_ms() < deadline_ms &&
           (inst->target == TARGET_PAUSED) == (inst->state == CONN_PAUSED))
        if (pthread_cond_timedwait(&inst->cond, &inst->lock, &ts) != 0)
            break;
    pthread_mutex_unlock(&inst->lock);
}

/* Applies pause/resume; returns 1 while paused (after waiting a while). */
static int handle_pause(struct spoke_instance *inst)
{
    pthread_mutex_lock(&inst->lock);
    int want_pause = inst->target == TARGET_PAUSED;
    enum conn_state s = inst->state;
    pthread_mutex_unlock(&inst->lock);
    if (want_pause && s != CONN_PAUSED) {
        set_state(inst, CONN_PAUSED, NULL);
        LOG_I(inst->name, "paused");
    } else if (!want_pause && s == CONN_PAUSED) {
        set_state(inst, CONN_RUNNING, NULL);
        LOG_I(inst->name, "resumed");
    }
    if (want_pause) {
        pthread_mutex_lock(&inst->lock);
        while (inst->target == TARGET_PAUSED && !inst->stop_req)
            pthread_cond_wait(&inst->cond, &inst->lock);
        pthread_mutex_unlock(&inst->lock);
        return 1;
    }
    return 0;
}

/*
 * Waits before retrying a SPOKE_RETRY: exponential backoff from 100 ms,
 * capped by errors.retry.delay.max.ms, with +-20% jitter. Returns 0 to retry,
 * -1 when errors.retry.timeout is spent or the instance is stopping.
 */
static int retry_backoff(struct spoke_instance *inst, int attempt, int64_t first_ms)
{
    int64_t now = clock_mono_ms();
    if (inst->retry_timeout_ms >= 0 && now - first_ms >= inst->retry_timeout_ms)
        return -1;
    int64_t d = 100;
    for (int i = 0; i < attempt && d < inst->retry_delay_max_ms; i++)
        d *= 2;
    if (d > inst->retry_delay_max_ms)
        d = inst->retry_delay_max_ms;
    d = d * (80 + rand() % 41) / 100;
    if (inst->retry_timeout_ms >= 0 && now + d > first_ms + inst->retry_timeout_ms)
        d = first_ms + inst->retry_timeout_ms - now;
    atomic_fetch_add(&inst->retries, 1);
    inst_wait(inst, now + (d > 0 ? d : 0));
    return inst->stop_req ? -1 : 0;
}

static void add_error_headers(struct spoke_instance *inst, struct spoke_record *rec,
                              const char *stage, const char *err)
{
    char num[32];
    rec_header_add(rec, "__connect.errors.topic", rec->topic, strlen(rec->topic));
    if (rec->part) {
        rec_header_add(rec, "__connect.errors.partition", rec->part, strlen(rec->part));
        snprintf(num, sizeof(num), "%lld", (long long)rec->off);
        rec_header_add(rec, "__connect.errors.offset", num, strlen(num));
    }
    rec_header_add(rec, "__connect.errors.connector.name", inst->name, strlen(inst->name));
    rec_header_add(rec, "__connect.errors.task.id", "0", 1);
    rec_header_add(rec, "__connect.errors.stage", stage, strlen(stage));
    rec_header_add(rec, "__connect.errors.class.name", inst->plugin->name,
                   strlen(inst->plugin->name));
    rec_header_add(rec, "__connect.errors.exception.message", err, strlen(err));
}

/* Logs the failed records errors.log.enable did not log one by one, once
 * their second is over (force: now, e.g. when the task stops). */
static void elog_flush(struct spoke_instance *inst, int force)
{
    if (!inst->elog_more)
        return;
    int64_t now = clock_mono_ms();
    if (!force && now < inst->elog_window_ms + 1000)
        return;
    LOG_W(inst->name, "%lld more records failed in the last %.1f s, not logged one by one (at "
          "most %d a second are: errors.log.max.per.second; the errors counter%s has every "
          "one); the last: %s",
          inst->elog_more, (double)(now - inst->elog_window_ms) / 1000.0, inst->elog_per_s,
          inst->dlq_topic ? " and the dead-letter topic" : "", inst->elog_last);
    inst->elog_more = 0;
    inst->elog_logged = 0;
    inst->elog_window_ms = now;
}

/* When elog_flush has a summary due (-1: none), for a task's wait. */
static int64_t elog_due(const struct spoke_instance *inst)
{
    return inst->elog_more ? inst->elog_window_ms + 1000 : -1;
}

/*
 * A record failed in stage. With errors.tolerance=all it is consumed here:
 * dead-lettered (published with error headers, still carrying its origin)
 * or acknowledged as deliberately skipped. Returns 1 when consumed, 0 when
 * the connector must fail (the caller keeps the record).
 */
static int error_path(struct spoke_instance *inst, struct spoke_record *rec, const char *stage,
                      int rc, const char *err)
{
    atomic_fetch_add(&inst->errors, 1);
    if (!inst->tolerance_all)
        return 0;
    const char *why = err && *err ? err : status_text(rc);
    if (inst->errors_log) {
        int64_t now = clock_mono_ms();
        if (now >= inst->elog_window_ms + 1000) {
            elog_flush(inst, 1);
            inst->elog_window_ms = now;
            inst->elog_logged = 0;
        }
        if (inst->elog_per_s == 0 || inst->elog_logged < inst->elog_per_s) {
            inst->elog_logged++;
            LOG_W(inst->name, "%s failed on a record of topic '%s' (%s): %s; %s", stage,
                  rec->topic, status_text(rc), why,
                  inst->dlq_topic ? "sent to the dead-letter topic"
                                  : "skipped (errors.tolerance=all)");
        } else {
            inst->elog_more++;
            snprintf(inst->elog_last, sizeof(inst->elog_last), "%s failed on a record of topic "
                     "'%s': %s", stage, rec->topic, why);
        }
    }
    if (inst->dlq_topic) {
        add_error_headers(inst, rec, stage, why);
        rec->topic = inst->dlq_topic;
        atomic_fetch_add(&inst->dead_lettered, 1);
        inst->staging[inst->nstaging++] = rec;
        if (inst->nstaging == INST_STAGE_MAX)
            inst_flush_staging(inst);
    } else {
        rec_ack(rec);
        rec_free(rec);
    }
    return 1;
}

int inst_source_error(struct spoke_instance *inst, struct spoke_record *rec, int status,
                      const char *reason)
{
    if (error_path(inst, rec, "TASK_POLL", status, reason))
        return SPOKE_OK;
    /* errors.tolerance=none: the position is never acknowledged; the
     * connector fails once poll() returns. */
    if (!inst->poll_error) {
        char msg[SPOKE_ERRSTR_SIZE + 64];
        snprintf(msg, sizeof(msg), "record at %s:%lld: %s", rec->part ? rec->part : "",
                 (long long)rec->off, reason && *reason ? reason : status_text(status));
        inst->poll_error = strdup(msg);
    }
    rec_free(rec); /* abandons its origin: never committed */
    return SPOKE_ERR_STATE;
}

void inst_note_topic(struct spoke_instance *inst, const char *topic)
{
    if (topic == inst->last_topic)
        return;
    inst->last_topic = topic;
    pthread_mutex_lock(&inst->lock);
    size_t i;
    for (i = 0; i < inst->ntopics_seen; i++)
        if (inst->topics_seen[i] == topic)
            break;
    if (i == inst->ntopics_seen &&
        inst->ntopics_seen < sizeof(inst->topics_seen) / sizeof(inst->topics_seen[0]))
        inst->topics_seen[inst->ntopics_seen++] = topic;
    pthread_mutex_unlock(&inst->lock);
}

/* ---- snapshots (stateful transforms) ---- */

static void snap_path(struct spoke_instance *inst, char *out, size_t size)
{
    /* state.dir is bounded at validation (4000 bytes) and names at 128, so
     * this always fits PATH_MAX; the check keeps it honest. */
    if (snprintf(out, size, "%s/%s.snap", inst->rt->snap_dir, inst->name) >= (int)size)
        out[0] = '\0';
}

static char *covered_json(const struct spoke_instance *inst)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < inst->ncovered; i++) {
        const struct covered_pos *c = &inst->covered[i];
        /* A stateful transform's outputs are numbered in its gate, not
         * placed in a partition. */
        json_t *e = c->part == inst_out_part
            ? json_pack("{s:s,s:I}", "source", c->source, "emitted", (json_int_t)c->off)
            : json_pack("{s:s,s:s,s:I}", "source", c->source, "partition", c->part, "offset",
                        (json_int_t)c->off);
        /* Records at the same offset before the last one covered. */
        if (e && c->sub)
            json_object_set_new(e, "sub", json_integer(c->sub));
        json_array_append_new(arr, e);
    }
    char *text = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    return text;
}

/* Ends the units of the records absorbed since the last call, once their
 * holds count them (one tracker lock per run of a source's records). */
static void flush_acks(struct spoke_instance *inst)
{
    for (size_t i = 0; i < inst->nholds; i++) {
        if (inst->holds[i].pending) {
            ack_hold_count(inst->holds[i].h, inst->holds[i].pending);
            inst->holds[i].pending = 0;
        }
    }
    if (inst->nacks) {
        origins_done(inst->acks, inst->nacks);
        inst->nacks = 0;
    }
}

/* Ends n holds: ok, the positions they held back commit; else their
 * trackers block (their sources replay from the last commit before them). */
static void holds_end(struct inst_hold *v, size_t n, int ok)
{
    for (size_t i = 0; i < n; i++)
        ack_hold_end(v[i].h, ok);
}

/* A snapshot no longer waited for: the records its holds hold are
 * abandoned with it. */
static void snap_drop(struct spoke_instance *inst)
{
    struct pending_snap *ps = &inst->snap;
    if (!ps->active)
        return;
    holds_end(ps->holds, ps->nholds, 0);
    free(ps->holds);
    buf_free(&ps->file);
    *ps = (struct pending_snap){ .active = 0 };
}

/* ok: a durable snapshot covers what the holds hold; else they are
 * abandoned, and so is a snapshot still waiting for its rows. */
static void end_holds(struct spoke_instance *inst, int ok)
{
    flush_acks(inst);
    holds_end(inst->holds, inst->nholds, ok);
    inst->nholds = 0;
    if (!ok)
        snap_drop(inst);
}

/* The position the gate committed: every output numbered up to it was
 * delivered. */
static void gate_committed(void *ctx, const char *partition, int64_t offset)
{
    if (partition == inst_out_part)
        *(int64_t *)ctx = offset;
}

/*
 * The gate: the pending snapshot becomes durable once every record the
 * transform emitted before it was taken is delivered. Its state has
 * absorbed the input those rows derive from; were it durable while a row
 * was still undelivered and then lost (a FAILED consumer discards what
 * reaches it), a restart would restore the state, skip the input as
 * already held, and the row would never come again. Returns 1 while it
 * still waits.
 */
static int snap_settle(struct spoke_instance *inst)
{
    struct pending_snap *ps = &inst->snap;
    if (!ps->active)
        return 0;
    int64_t now = clock_mono_ms();
    int64_t done = 0;
    if (ps->upto)
        tracker_committed(inst->out, gate_committed, &done);
    if ((uint64_t)done < ps->upto || inst->gate_lost) {
        if (inst->gate_lost || tracker_blocked(inst->out)) {
            LOG_W(inst->name, "rows it emitted were not delivered (a connector reading them "
                  "failed, or the host stopped before they went out): no snapshot of its "
                  "state is written from now on in this run, and the input since the last "
                  "one is not committed; after a restart the host restores that snapshot and "
                  "the sources replay the input, which derives those rows again");
            /* Nothing it absorbs can commit any more: its sources stop
             * waiting for it. */
            inst->gate_blocked = 1;
            end_holds(inst, 0);
            return 1;
        }
        ps->check_at_ms = now + ps->poll_ms;
        if (ps->poll_ms < 100)
            ps->poll_ms *= 2;
        return 1;
    }
    char err[SPOKE_ERRSTR_SIZE] = "";
    char path[PATH_MAX];
    snap_path(inst, path, sizeof(path));
    if (atomic_write_file(path, ps->file.p, ps->file.len, err, sizeof(err)) != 0) {
        LOG_E(inst->name, "cannot save snapshot: %s; acknowledgements held", err);
        ps->check_at_ms = now + inst->snapshot_interval_ms;
        return 1;
    }
    /* The state covering these records is durable: the positions their
     * holds kept back commit. */
    holds_end(ps->holds, ps->nholds, 1);
    free(ps->holds);
    buf_free(&ps->file);
    *ps = (struct pending_snap){ .active = 0 };
    return 0;
}

/* Serializes the state and the positions it covers into inst->snap, with
 * the holds of what it absorbed since the last one, then settles it at
 * once when the rows it emitted are all delivered. -1 when the plugin or
 * memory fails (the holds stay for the next snapshot). */
static int take_snapshot(struct spoke_instance *inst)
{
    char err[SPOKE_ERRSTR_SIZE] = "";
    void *data = NULL;
    size_t len = 0;
    int rc = inst->plugin->snapshot(inst->st, &data, &len, err, sizeof(err));
    if (rc != SPOKE_OK) {
        free(data);
        LOG_E(inst->name, "snapshot failed (%s): %s; state not saved, acknowledgements held",
              status_text(rc), err);
        return -1;
    }
    char *pos = covered_json(inst);
    struct pending_snap *ps = &inst->snap;
    /* Version 3: the number of rows it emitted so far, which the next run
     * goes on from, so that a consumer that is stateful too recognizes the
     * rows derived again from replayed input. */
    int ok = pos && buf_printf(&ps->file, "%s 3 %zu %" PRIu64 "\n%s\n", SNAP_MAGIC, len,
                               inst->out_seq, pos) == 0 &&
             buf_append(&ps->file, data, len) == 0;
    free(pos);
    free(data);
    if (!ok) {
        buf_free(&ps->file);
        LOG_E(inst->name, "cannot save snapshot: out of memory; acknowledgements held");
        return -1;
    }
    flush_acks(inst);
    ps->holds = inst->holds;
    ps->nholds = inst->nholds;
    inst->holds = NULL;
    inst->nholds = inst->capholds = 0;
    ps->upto = inst->out_seq;
    ps->active = 1;
    ps->poll_ms = 1;
    snap_settle(inst);
    return 0;
}

/* The task ends: a last snapshot covers what it absorbed, once the rows it
 * emitted are delivered (the consumers are still running), for at most
 * shutdown.timeout.ms. */
static void snap_final(struct spoke_instance *inst)
{
    int64_t deadline = clock_mono_ms() + inst->rt->ws.shutdown_timeout_ms;
    for (;;) {
        if (!inst->snap.active) {
            if (!inst->nholds || take_snapshot(inst) != 0)
                return;
            continue; /* settled at once, or waits */
        }
        if (!tracker_wait_idle(inst->out, deadline)) {
            LOG_W(inst->name, "rows it emitted are still undelivered after %lld ms: its last "
                  "snapshot is not written, and the input it absorbed since the one before "
                  "is replayed after a restart", (long long)inst->rt->ws.shutdown_timeout_ms);
            return;
        }
        /* Nothing in flight: it settles, or the gate is blocked or the
         * write failed (both said). */
        if (snap_settle(inst))
            return;
    }
}

/* (source, part) is covered up to (off, sub) at least: its index in v, or
 * -1 when memory ran out. */
static long covered_add(struct covered_pos **v, size_t *n, size_t *cap, const char *source,
                        const char *part, int64_t off, uint32_t sub)
{
    for (size_t i = 0; i < *n; i++) {
        if ((*v)[i].source == source && (*v)[i].part == part) {
            if (!covered_pos_has(&(*v)[i], off, sub)) {
                (*v)[i].off = off;
                (*v)[i].sub = sub;
            }
            return (long)i;
        }
    }
    if (GROW_ONE(*v, *cap, *n, 4) != 0)
        return -1;
    (*v)[*n].source = source;
    (*v)[*n].part = part;
    (*v)[*n].off = off;
    (*v)[*n].sub = sub;
    return (long)(*n)++;
}

/* A record at (source, part, off, sub) was processed (a transform) or put
 * (a sink): once per record, so the partition last seen is tried first. */
static inline int covered_note(struct spoke_instance *inst, const char *source, const char *part,
                               int64_t off, uint32_t sub)
{
    size_t h = inst->cov_hint;
    if (h < inst->ncovered && inst->covered[h].source == source && inst->covered[h].part == part) {
        struct covered_pos *c = &inst->covered[h];
        if (!covered_pos_has(c, off, sub)) {
            c->off = off;
            c->sub = sub;
        }
        return 0;
    }
    long i = covered_add(&inst->covered, &inst->ncovered, &inst->capcovered, source, part, off,
                         sub);
    if (i < 0)
        return -1;
    inst->cov_hint = (size_t)i;
    return 0;
}

/* Reads the positions line of a version 2 or 3 snapshot into inst->replay (and
 * inst->covered, so the next snapshot still covers them). */
static int load_covered(struct spoke_instance *inst, const char *line, size_t len, char *err,
                        size_t errsize)
{
    json_error_t jerr;
    json_t *arr = json_loadb(line, len, 0, &jerr);
    size_t i;
    json_t *e;
    if (!json_is_array(arr))
        goto bad;
    inst->replay = calloc(json_array_size(arr) + 1, sizeof(*inst->replay));
    if (!inst->replay)
        goto bad;
    json_array_foreach(arr, i, e) {
        const char *src = NULL, *part = NULL;
        json_int_t off = 0;
        if (json_unpack(e, "{s:s,s:I}", "source", &src, "emitted", &off) == 0)
            part = inst_out_part;
        else if (json_unpack(e, "{s:s,s:s,s:I}", "source", &src, "partition", &part, "offset",
                             &off))
            goto bad;
        json_t *sub = json_object_get(e, "sub");
        if (sub && (!json_is_integer(sub) || json_integer_value(sub) < 0 ||
                    json_integer_value(sub) > UINT32_MAX))
            goto bad;
        struct covered_pos cp = { intern_str(src), part == inst_out_part ? part : intern_str(part),
                                  off, sub ? (uint32_t)json_integer_value(sub) : 0 };
        if (!cp.source || !cp.part)
            goto bad;
        inst->replay[inst->nreplay++] = cp;
        if (covered_add(&inst->covered, &inst->ncovered, &inst->capcovered, cp.source, cp.part,
                        cp.off, cp.sub) < 0)
            goto bad;
    }
    json_decref(arr);
    return 0;
bad:
    json_decref(arr);
    snprintf(err, errsize, "snapshot %s.snap in state.dir is not valid (bad positions line)",
             inst->name);
    return -1;
}

static int restore_snapshot(struct spoke_instance *inst, char *err, size_t errsize)
{
    char path[PATH_MAX];
    snap_path(inst, path, sizeof(path));
    size_t len = 0;
    int missing = 0;
    char *data = read_file(path, (size_t)1 << 31, &len, &missing, err, errsize);
    if (!data)
        return missing ? SPOKE_OK : SPOKE_ERR_IO;
    int rc = SPOKE_ERR_PARSE;
    int version = 0;
    size_t declared = 0;
    uint64_t emitted = 0;
    char *nl = memchr(data, '\n', len);
    char *body = nl ? nl + 1 : NULL;
    if (!nl || sscanf(data, SNAP_MAGIC " %d %zu", &version, &declared) != 2 ||
        version < 1 || version > 3 ||
        (version == 3 && sscanf(data, SNAP_MAGIC " 3 %*u %" SCNu64, &emitted) != 1))
        goto bad;
    if (version >= 2) {
        char *nl2 = memchr(body, '\n', len - (size_t)(body - data));
        if (!nl2 || load_covered(inst, body, (size_t)(nl2 - body), err, errsize) != 0)
            goto out;
        body = nl2 + 1;
    }
    if (declared != len - (size_t)(body - data))
        goto bad;
    rc = inst->plugin->restore(inst->st, body, declared, err, errsize);
    inst->out_seq = emitted;
    if (rc == SPOKE_OK)
        LOG_I(inst->name, "state restored from %s (%zu bytes, covering %zu input partitions)",
              path, declared, inst->nreplay);
    goto out;
bad:
    snprintf(err, errsize, "snapshot %s.snap in state.dir is not valid (bad header or "
             "truncated)", inst->name);
out:
    free(data);
    return rc;
}

/*
 * Stateful transforms after a restore: a record at or before a position the
 * snapshot covers is already in the state (its offset may not have been
 * committed when the host stopped, e.g. kill -9 between the snapshot and the
 * next offset flush), so it is acknowledged without processing it again.
 * Positions grow within a partition: once a record passes the covered
 * position, that partition needs no more checks.
 */
static int replayed(struct spoke_instance *inst, const char *source, const char *part,
                    int64_t off, uint32_t sub)
{
    for (size_t i = 0; i < inst->nreplay; i++) {
        if (inst->replay[i].source == source && inst->replay[i].part == part) {
            if (covered_pos_has(&inst->replay[i], off, sub))
                return 1;
            inst->replay[i] = inst->replay[--inst->nreplay];
            return 0;
        }
    }
    return 0;
}

/*
 * A replayed record (its source emitted it in an earlier run of its task:
 * a restart, a FAILED consumer's replay, a new config) at or before the
 * furthest position processed in its partition: processed already. A
 * partition's records reach a consumer in order, so the first copy came
 * before the replay unless it was discarded on the way (a FAILED consumer
 * upstream), and then the position processed stayed behind it. Without
 * this, a healthy aggregator beside a FAILED sink counted the replay that
 * sink needed a second time.
 */
static int processed_already(const struct spoke_instance *inst, const char *source,
                             const char *part, int64_t off, uint32_t sub)
{
    for (size_t i = 0; i < inst->ncovered; i++)
        if (inst->covered[i].source == source && inst->covered[i].part == part)
            return covered_pos_has(&inst->covered[i], off, sub);
    return 0;
}

/* A stateful transform folded rec into its state: its source's tracker
 * commits nothing from rec on until a snapshot is durable (a hold per
 * tracker), and rec's unit ends with the next flush_acks. */
static int absorb(struct spoke_instance *inst, struct spoke_record *rec)
{
    struct origin *o = rec->origin;
    if (!o)
        return 0;
    struct tracker *t = origin_tracker(o);
    struct inst_hold *ih = NULL;
    for (size_t i = 0; i < inst->nholds; i++) {
        if (inst->holds[i].t == t) {
            ih = &inst->holds[i];
            break;
        }
    }
    if (ih) {
        ack_hold_cover(ih->h, o);
    } else {
        if (inst->nholds == inst->capholds) {
            size_t cap = inst->capholds ? inst->capholds * 2 : 4;
            struct inst_hold *v = realloc(inst->holds, cap * sizeof(*v));
            if (!v)
                return -1;
            inst->holds = v;
            inst->capholds = cap;
        }
        struct ack_hold *h = ack_hold_new(o);
        if (!h)
            return -1;
        ih = &inst->holds[inst->nholds++];
        *ih = (struct inst_hold){ .h = h, .t = t };
    }
    ih->pending++;
    inst->acks[inst->nacks++] = o;
    rec->origin = NULL;
    if (inst->nacks == INST_STAGE_MAX)
        flush_acks(inst);
    return 0;
}

/* ---- the gate: a stateful transform's output (see snap_settle) ---- */

/* Not interned: positions compare by pointer, and no partition a source
 * names (interned) can be this one. */
static const char out_part[] = "<emitted>";
const char *const inst_out_part = out_part;

int inst_gate_origin(struct spoke_instance *inst, struct spoke_record *rec)
{
    int64_t born = 0;
    if (rec->origin) {
        /* Derived from an input (e.g. a copy of it): the input's own unit
         * and the snapshot cover that input; the gate covers this record. */
        born = origin_born_ns(rec->origin);
        rec_ack(rec);
    } else if (inst->cur && inst->cur->origin) {
        born = origin_born_ns(inst->cur->origin);
    }
    struct origin *o = tracker_add(inst->out, inst_out_part, (int64_t)(inst->out_seq + 1), born);
    if (!o) {
        rec_free(rec);
        return SPOKE_ERR_NOMEM;
    }
    inst->out_seq++;
    rec_set_origin(rec, o);
    return SPOKE_OK;
}

/* A stateful transform forwards its input record rec (process() returned
 * SPOKE_OK): the next snapshot covers the input, as for an absorbed one,
 * and rec goes out through the gate. */
static void gate_forward(struct spoke_instance *inst, struct spoke_record *rec)
{
    int64_t born = rec->origin ? origin_born_ns(rec->origin) : 0;
    if (rec->origin && absorb(inst, rec) != 0) {
        LOG_E(inst->name, "out of memory holding an acknowledgement: its offset will not be "
              "committed");
        return; /* it keeps its origin: delivered, it is acknowledged as before */
    }
    struct origin *o = tracker_add(inst->out, inst_out_part, (int64_t)(inst->out_seq + 1), born);
    if (!o) {
        /* Untracked, the gate cannot vouch for it: no snapshot passes. */
        LOG_E(inst->name, "out of memory tracking a record it forwards");
        inst->gate_lost = 1;
        return;
    }
    inst->out_seq++;
    rec_set_origin(rec, o);
}

/* ---- source task ---- */

struct commit_list {
    struct covered_pos *v;  /* source unused: (partition, offset) pairs */
    size_t n, cap;
    int oom;
};

static void collect_commit(void *ctx, const char *partition, int64_t offset)
{
    struct commit_list *cl = ctx;
    if (GROW_ONE(cl->v, cl->cap, cl->n, 64) != 0) {
        cl->oom = 1;
        return;
    }
    cl->v[cl->n++] = (struct covered_pos){ NULL, partition, offset };
}

static void store_commit(void *ctx, const char *partition, int64_t offset)
{
    struct spoke_instance *inst = ctx;
    offsets_set(inst->rt->offsets, inst->name, partition, offset);
}

/* Tells the plugin about newly committed positions (its own thread). */
static void notify_committed(struct spoke_instance *inst)
{
    if (!inst->plugin->committed)
        return;
    uint64_t gen = tracker_generation(inst->tracker);
    if (gen == inst->notified_gen)
        return;
    struct commit_list cl = { 0 };
    tracker_committed(inst->tracker, collect_commit, &cl);
    if (cl.oom) {
        free(cl.v);
        return; /* tried again at the next call */
    }
    inst->notified_gen = gen;
    /* Every committed partition, also the unchanged ones: a plugin may
     * ignore a position while it does not own the partition (a Kafka
     * consumer during a rebalance) and needs it again once it does. */
    for (size_t i = 0; i < cl.n; i++)
        inst->plugin->committed(inst->st, cl.v[i].part, cl.v[i].off);
    free(cl.v);
}

static int source_loop(struct spoke_instance *inst)
{
    const struct spoke_plugin *d = inst->plugin;
    char err[SPOKE_ERRSTR_SIZE];
    int64_t next_poll = clock_mono_ms(), next_tick = d->tick ? clock_mono_ms() : -1;
    int attempt = 0;
    int64_t first_retry = 0;
    while (!inst->stop_req) {
        if (handle_pause(inst))
            continue;
        elog_flush(inst, 0);
        int64_t now = clock_mono_ms();
        int64_t due = next_poll;
        if (next_tick >= 0 && next_tick < due)
            due = next_tick;
        if (elog_due(inst) >= 0 && elog_due(inst) < due)
            due = elog_due(inst);
        if (now < due) {
            if (due - now >= MEMTRIM_IDLE_MS)
                memtrim_thread_idle(); /* e.g. a poll a minute: idle until then */
            inst_wait(inst, due);
            continue;
        }
        memtrim_thread_busy();
        if (next_tick >= 0 && now >= next_tick) {
            int64_t nt = -1;
            err[0] = '\0';
            int rc = d->tick(inst->st, clock_wall_ms(), &nt, err, sizeof(err));
            if (inst_flush_staging(inst) != SPOKE_OK && inst->stop_req)
                break;
            if (rc < 0) {
                fail(inst, "tick", rc, err);
                return -1;
            }
            next_tick = nt >= 0 ? now + nt : -1;
        }
        if (now >= next_poll) {
            int64_t np = 0;
            err[0] = '\0';
            inst->poll_started_ns = clock_mono_ns();
            rec_clock_begin();
            inst->in_poll = 1;
            int rc = d->poll(inst->st, &np, err, sizeof(err));
            inst->in_poll = 0;
            rec_clock_end();
            atomic_store(&inst->last_poll_ms, clock_wall_ms());
            if (inst_flush_staging(inst) != SPOKE_OK && inst->stop_req)
                break;
            if (rc == SPOKE_RETRY) {
                if (attempt == 0)
                    first_retry = now;
                set_retrying(inst, "poll", err);
                /* Deliveries keep being acknowledged while the source retries. */
                notify_committed(inst);
                /* The plugin knows best when to come back (e.g. Retry-After);
                 * otherwise back off exponentially. */
                if (np > 0) {
                    /* errors.retry.timeout bounds it, whoever sets the pace. */
                    int64_t end = first_retry + inst->retry_timeout_ms;
                    if (inst->retry_timeout_ms >= 0 && now >= end) {
                        fail(inst, "poll", rc, err);
                        return -1;
                    }
                    if (inst->retry_timeout_ms >= 0 && now + np > end)
                        np = end - now;
                    next_poll = now + np;
                    attempt++;
                    atomic_fetch_add(&inst->retries, 1);
                } else if (retry_backoff(inst, attempt++, first_retry) != 0) {
                    if (inst->stop_req)
                        break;
                    fail(inst, "poll", rc, err);
                    return -1;
                }
                continue;
            }
            if (inst->poll_error) {
                fail(inst, "poll", SPOKE_ERR_INVALID, inst->poll_error);
                free(inst->poll_error);
                inst->poll_error = NULL;
                return -1;
            }
            if (rc < 0) {
                fail(inst, "poll", rc, err);
                return -1;
            }
            attempt = 0;
            clear_retrying(inst);
            next_poll = now + (np > 0 ? np : 0);
        }
        notify_committed(inst);
    }
    elog_flush(inst, 1);
    return 0;
}

/* After the loop: wait (bounded) for what the source emitted to be
 * delivered, then commit its offsets and tell the plugin. */
static void source_finish(struct spoke_instance *inst)
{
    int64_t deadline = clock_mono_ms() + inst->rt->ws.shutdown_timeout_ms;
    /* Restarting, it keeps its tracker: what stateful transforms hold
     * commits when their snapshots do, without keeping the restart (and
     * the REST call) waiting for them. */
    if (inst->restarting ? !tracker_wait_settled(inst->tracker, deadline)
                         : !tracker_wait_idle(inst->tracker, deadline))
        LOG_W(inst->name, "%zu records still in flight after %lld ms; their offsets are not "
              "committed and they will be replayed after a restart",
              tracker_inflight(inst->tracker), inst->rt->ws.shutdown_timeout_ms);
    tracker_committed(inst->tracker, store_commit, inst);
    char err[256];
    if (offsets_flush(inst->rt->offsets, err, sizeof(err)) != 0)
        LOG_E(inst->name, "cannot write offsets: %s", err);
    notify_committed(inst);
}

/* ---- transform and sink tasks ---- */

/* Puts unfinished records back at the head of the input queue so a restart
 * delivers them again; NULL slots are skipped. */
static void give_back(struct spoke_instance *inst, struct spoke_record **recs, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (recs[i])
            recs[k++] = recs[i];
    rqueue_unget(inst->inq, recs, k);
}

/* Returns -1 when the connector failed, 1 when stopping, 0 to go on. */
static int transform_records(struct spoke_instance *inst, struct spoke_record **recs, size_t n)
{
    const struct spoke_plugin *d = inst->plugin;
    char err[SPOKE_ERRSTR_SIZE];
    int stateful = d->snapshot != NULL;
    for (size_t i = 0; i < n; i++) {
        struct spoke_record *rec = recs[i];
        const char *in_topic = rec->topic;
        int attempt = 0, rc;
        int64_t first = 0;
        const char *src = NULL, *part = NULL;
        int64_t off = 0;
        uint32_t sub = 0;
        if (stateful && rec->origin) {
            int again;
            origin_position(rec->origin, &src, &part, &off, &sub, &again);
            if (part && ((inst->nreplay && replayed(inst, src, part, off, sub)) ||
                         (again && processed_already(inst, src, part, off, sub)))) {
                atomic_fetch_add(&inst->replayed_skipped, 1);
                recs[i] = NULL;
                rec_ack(rec);
                rec_free(rec);
                continue;
            }
        }
        for (;;) {
            err[0] = '\0';
            inst->cur = rec;
            atomic_store_explicit(&inst->batch_rest, n - i - 1, memory_order_relaxed);
            rc = d->process(inst->st, rec, err, sizeof(err));
            inst->cur = NULL;
            atomic_store_explicit(&inst->batch_rest, 0, memory_order_relaxed);
            if (rc != SPOKE_RETRY)
                break;
            if (attempt == 0)
                first = clock_mono_ms();
            set_retrying(inst, "process", err);
            if (retry_backoff(inst, attempt++, first) != 0)
                break;
        }
        if (rc == SPOKE_RETRY && inst->stop_req) {
            give_back(inst, recs + i, n - i);
            return 1;
        }
        if (part && (rc == SPOKE_OK || rc == SPOKE_DROP) &&
            covered_note(inst, src, part, off, sub) != 0)
            LOG_E(inst->name, "out of memory recording a covered position");
        if (rc == SPOKE_OK) {
            clear_retrying(inst);
            if (rec->topic == in_topic)
                rec->topic = inst->out_topic;
            if (inst->out && !inst->gate_blocked)
                gate_forward(inst, rec);
            inst_note_topic(inst, rec->topic);
            recs[i] = NULL;
            COUNTER_ADD(&inst->records_out, 1);
            inst->staging[inst->nstaging++] = rec;
            if (inst->nstaging == INST_STAGE_MAX && inst_flush_staging(inst) != SPOKE_OK) {
                give_back(inst, recs + i + 1, n - i - 1);
                return 1;
            }
        } else if (rc == SPOKE_DROP) {
            clear_retrying(inst);
            recs[i] = NULL;
            if (d->snapshot && (inst->gate_blocked || absorb(inst, rec) != 0)) {
                if (!inst->gate_blocked)
                    LOG_E(inst->name, "out of memory holding an acknowledgement: its offset "
                          "will not be committed");
            } else {
                rec_ack(rec);
            }
            rec_free(rec); /* still holding its unit: abandoned, never committed */
        } else {
            if (error_path(inst, rec, "TRANSFORMATION", rc, err)) {
                recs[i] = NULL;
                continue;
            }
            inst_flush_staging(inst);
            give_back(inst, recs + i, n - i);
            char trace[SPOKE_ERRSTR_SIZE + 320];
            snprintf(trace, sizeof(trace), "record from topic '%s': %s", in_topic,
                     err[0] ? err : status_text(rc));
            fail(inst, "process", rc, trace);
            return -1;
        }
    }
    inst_flush_staging(inst);
    return 0;
}

/* A batch of a transform; the units of what it absorbed end with it. */
static int transform_batch(struct spoke_instance *inst, struct spoke_record **recs, size_t n)
{
    int rc = transform_records(inst, recs, n);
    flush_acks(inst);
    return rc;
}

static int sink_flush(struct spoke_instance *inst, char *err, size_t errsize)
{
    int attempt = 0, rc;
    int64_t first = 0;
    for (;;) {
        err[0] = '\0';
        rc = inst->plugin->flush(inst->st, err, errsize);
        if (rc != SPOKE_RETRY)
            return rc;
        if (attempt == 0)
            first = clock_mono_ms();
        set_retrying(inst, "flush", err);
        if (retry_backoff(inst, attempt++, first) != 0)
            return rc;
    }
}

/* Acknowledgements gathered so each tracker's lock is taken once per run. */
struct ackbuf {
    struct origin *o[256];
    size_t n;
};

static void ackbuf_flush(struct ackbuf *ab)
{
    origins_done(ab->o, ab->n);
    ab->n = 0;
}

static void sink_ack(struct spoke_instance *inst, struct spoke_record *rec, int64_t now_ns,
                     struct ackbuf *ab)
{
    struct origin *o = rec->origin;
    if (o) {
        int64_t born = origin_born_ns(o);
        if (inst->latency && born > 0) /* 0: derived from no source poll */
            hist_add(inst->latency, now_ns - born);
        rec->origin = NULL;
        ab->o[ab->n++] = o;
        if (ab->n == sizeof(ab->o) / sizeof(ab->o[0]))
            ackbuf_flush(ab);
    }
    rec_free(rec);
}

/* A record the sink reported failed takes the error path. When the error
 * path refuses it (errors.tolerance=none) it stays pending, unacknowledged,
 * and the first such failure goes to *frc / ferr: the connector fails. */
static void sink_failed(struct spoke_instance *inst, struct spoke_record *rec, int status,
                        char *reason, int *frc, char *ferr, size_t fsize)
{
    pendset_del(&inst->pend, rec);
    if (error_path(inst, rec, "TASK_PUT", status, reason)) {
        free(reason);
        return;
    }
    if (*frc == SPOKE_OK) {
        *frc = status;
        snprintf(ferr, fsize, "record from topic '%s': %s", rec->topic, reason);
    }
    struct pend_entry *e = pendset_add(&inst->pend, rec) == 0 ? pendset_find(&inst->pend, rec)
                                                                : NULL;
    if (e) {
        e->state = PEND_FAILED;
        e->status = status;
        e->reason = reason;
    } else {
        free(reason);
        rec_free(rec); /* out of memory: not acknowledged, replayed after a restart */
    }
}

struct settle_ctx {
    struct spoke_instance *inst;
    int64_t now_ns;
    struct ackbuf *ab;
};

static void settle_one(void *arg, struct spoke_record *rec)
{
    struct settle_ctx *c = arg;
    sink_ack(c->inst, rec, c->now_ns, c->ab);
}

/* Settles the outcomes the plugin reported since the last call: delivered
 * records are acknowledged, failed ones take the error path. With all (the
 * flush returned SPOKE_OK) every other pending record counts as delivered. */
static void sink_settle(struct spoke_instance *inst, int all, int *frc, char *ferr, size_t fsize)
{
    int64_t now_ns = clock_mono_ns();
    struct ackbuf ab;
    ab.n = 0;
    for (size_t i = 0; i < inst->nsettled; i++) {
        struct spoke_record *rec = inst->settled[i];
        struct pend_entry *e = pendset_find(&inst->pend, rec);
        if (!e || e->state == PEND_PUT)
            continue; /* settled already (a put error), or a newer record at that address */
        if (e->state == PEND_DONE) {
            pendset_del(&inst->pend, rec);
            sink_ack(inst, rec, now_ns, &ab);
        } else if (e->reason) { /* PEND_FAILED, not on the error path yet */
            char *reason = e->reason;
            e->reason = NULL;
            sink_failed(inst, rec, e->status, reason, frc, ferr, fsize);
        }
    }
    inst->nsettled = 0;
    if (all && inst->pend.n) {
        /* Every record not reported failed is delivered; a refused failure
         * kept from an earlier settle stays pending. */
        struct settle_ctx ctx = { inst, now_ns, &ab };
        pendset_take_unfailed(&inst->pend, settle_one, &ctx);
    }
    ackbuf_flush(&ab);
}

/* Stopping or failing: what the sink reported delivered is acknowledged;
 * every other pending record goes back to the head of the input queue, in
 * put order, ahead of rest[0, nrest) (the batch's records not put yet). */
static void sink_give_back(struct spoke_instance *inst, struct spoke_record **rest, size_t nrest)
{
    struct ackbuf ab;
    ab.n = 0;
    for (size_t i = 0; i < inst->nsettled; i++) {
        struct pend_entry *e = pendset_find(&inst->pend, inst->settled[i]);
        if (e && e->state == PEND_DONE) {
            struct spoke_record *rec = e->rec;
            pendset_del(&inst->pend, rec);
            sink_ack(inst, rec, clock_mono_ns(), &ab);
        }
    }
    ackbuf_flush(&ab);
    inst->nsettled = 0;
    give_back(inst, rest, nrest);
    size_t n = inst->pend.n;
    if (n == 0)
        return;
    struct spoke_record **recs = malloc(n * sizeof(*recs));
    if (!recs) {
        LOG_E(inst->name, "out of memory returning %zu records to the queue; they are replayed "
              "after a restart", n);
        pendset_free(&inst->pend); /* leaks the records rather than acknowledging them */
        return;
    }
    n = pendset_drain(&inst->pend, recs);
    rqueue_unget(inst->inq, recs, n);
    free(recs);
}

/* Puts recs[0, n) (n may be 0: flush only), then flushes. Records put stay
 * in inst->pend until settled: acknowledged when the sink reports them
 * delivered or the flush returns SPOKE_OK, on the error path when reported
 * failed. Returns -1 when the connector failed, 1 when stopping, 0 to go on. */
static int sink_batch(struct spoke_instance *inst, struct spoke_record **recs, size_t n)
{
    const struct spoke_plugin *d = inst->plugin;
    char err[SPOKE_ERRSTR_SIZE];
    size_t i;
    int failed_rc = SPOKE_OK;
    char failed_err[SPOKE_ERRSTR_SIZE + 320] = "";
    for (i = 0; i < n; i++) {
        int attempt = 0, rc;
        int64_t first = 0;
        struct spoke_record *rec = recs[i];
        if (pendset_add(&inst->pend, rec) != 0) {
            failed_rc = SPOKE_ERR_NOMEM;
            snprintf(failed_err, sizeof(failed_err), "out of memory tracking pending records");
            break;
        }
        atomic_store_explicit(&inst->batch_rest, n - i - 1, memory_order_relaxed);
        for (;;) {
            err[0] = '\0';
            rc = d->put(inst->st, rec, err, sizeof(err));
            if (rc != SPOKE_RETRY)
                break;
            if (attempt == 0)
                first = clock_mono_ms();
            set_retrying(inst, "put", err);
            if (retry_backoff(inst, attempt++, first) != 0)
                break;
        }
        if (rc == SPOKE_OK || rc == SPOKE_DROP) {
            recs[i] = NULL;
            continue;
        }
        /* Not put: any outcome reported for it is void. */
        pendset_del(&inst->pend, rec);
        for (size_t k = inst->nsettled; k-- > 0;)
            if (inst->settled[k] == rec)
                inst->settled[k] = inst->settled[--inst->nsettled];
        if (rc == SPOKE_RETRY && inst->stop_req)
            break;
        if (error_path(inst, rec, "TASK_PUT", rc, err)) {
            recs[i] = NULL;
            continue;
        }
        failed_rc = rc;
        snprintf(failed_err, sizeof(failed_err), "record from topic '%s': %s", rec->topic,
                 err[0] ? err : status_text(rc));
        break;
    }
    atomic_store_explicit(&inst->batch_rest, 0, memory_order_relaxed);
    /* Make what was put durable (or, pipelined, push it on). */
    int frc = sink_flush(inst, err, sizeof(err));
    if (frc == SPOKE_OK || frc == SPOKE_PENDING) {
        clear_retrying(inst);
        sink_settle(inst, frc == SPOKE_OK, &failed_rc, failed_err, sizeof(failed_err));
    }
    inst_flush_staging(inst);
    if ((frc != SPOKE_OK && frc != SPOKE_PENDING) || failed_rc != SPOKE_OK) {
        sink_give_back(inst, recs, n);
        if (frc != SPOKE_OK && frc != SPOKE_PENDING) {
            if (inst->stop_req && frc == SPOKE_RETRY)
                return 1;
            fail(inst, "flush", frc, err);
            return -1;
        }
        fail(inst, "put", failed_rc, failed_err);
        return -1;
    }
    give_back(inst, recs, n);
    return i < n ? 1 : 0;
}

/* The sink task ends (stopping, or no more input): waits for what is
 * pending; what cannot be confirmed goes back to the queue. */
static void sink_finish(struct spoke_instance *inst)
{
    int attempt = 0;
    int64_t first = clock_mono_ms();
    while (inst->pend.n > 0) {
        size_t before = inst->pend.n;
        if (sink_batch(inst, NULL, 0) != 0)
            return; /* failed or stopping: sink_batch gave everything back */
        if (inst->pend.n == 0)
            return;
        /* SPOKE_PENDING although no input waits: give the sink time. */
        if (inst->pend.n < before)
            attempt = 0;
        if (retry_backoff(inst, attempt++, first) != 0) {
            sink_give_back(inst, NULL, 0);
            return;
        }
    }
}

static int consumer_loop(struct spoke_instance *inst)
{
    const struct spoke_plugin *d = inst->plugin;
    char err[SPOKE_ERRSTR_SIZE];
    struct spoke_record **recs = malloc(inst->batch_max * sizeof(*recs));
    if (!recs) {
        fail(inst, "start", SPOKE_ERR_NOMEM, "cannot allocate the batch buffer");
        return -1;
    }
    int64_t next_tick = d->tick ? clock_mono_ms() : -1;
    int64_t snap_every = inst->snapshot_interval_ms;
    inst->next_snapshot_ms = d->snapshot ? clock_mono_ms() + snap_every : -1;
    /* MEMTRIM_IDLE_MS after the last input the task counts as idle and
     * trims once (memtrim.h); -1 once trimmed, until input arrives. */
    int64_t trim_at = clock_mono_ms() + MEMTRIM_IDLE_MS;
    int rc = 0;
    while (!inst->stop_req) {
        if (handle_pause(inst))
            continue;
        int64_t now = clock_mono_ms();
        if (next_tick >= 0 && now >= next_tick && !inst->draining) {
            int64_t nt = -1;
            err[0] = '\0';
            int trc = d->tick(inst->st, clock_wall_ms(), &nt, err, sizeof(err));
            inst_flush_staging(inst);
            if (trc < 0) {
                fail(inst, "tick", trc, err);
                rc = -1;
                break;
            }
            next_tick = nt >= 0 ? now + nt : -1;
        }
        if (inst->snap.active && inst->snap.check_at_ms >= 0 &&
            (now >= inst->snap.check_at_ms || inst->rt->stopping))
            snap_settle(inst);
        if (inst->next_snapshot_ms >= 0 &&
            (now >= inst->next_snapshot_ms || (inst->rt->stopping && inst->nholds))) {
            /* One snapshot waits for its rows at a time; what is absorbed
             * meanwhile goes into the next one. */
            if (inst->nholds && !inst->snap.active)
                take_snapshot(inst);
            inst->next_snapshot_ms = now + snap_every;
        }
        int64_t deadline = -1;
        if (next_tick >= 0 && !inst->draining)
            deadline = next_tick;
        if (inst->next_snapshot_ms >= 0 && (deadline < 0 || inst->next_snapshot_ms < deadline))
            deadline = inst->next_snapshot_ms;
        if (inst->snap.active && inst->snap.check_at_ms >= 0 &&
            (deadline < 0 || inst->snap.check_at_ms < deadline))
            deadline = inst->snap.check_at_ms;
        if (elog_due(inst) >= 0 && (deadline < 0 || elog_due(inst) < deadline))
            deadline = elog_due(inst);
        if (inst->pend.n && rqueue_depth(inst->inq) == 0) {
            /* A pipelined sink with deliveries under way and no input: let
             * it finish them now (it waits, seeing no backlog). */
            int brc = sink_batch(inst, NULL, 0);
            if (brc < 0) {
                rc = -1;
                break;
            }
            if (brc > 0)
                break;
            if (inst->pend.n) {
                int64_t soon = clock_mono_ms() + 1;
                if (deadline < 0 || soon < deadline)
                    deadline = soon;
            }
        }
        size_t n = 0;
        int64_t wait = trim_at >= 0 && (deadline < 0 || trim_at < deadline) ? trim_at : deadline;
        int prc = rqueue_pop(inst->inq, recs, inst->batch_max, &n, wait);
        elog_flush(inst, 0);
        if (prc == RQ_CLOSED)
            break;
        if (prc != RQ_OK) {
            if (trim_at >= 0 && clock_mono_ms() >= trim_at) {
                memtrim_thread_idle();
                trim_at = -1;
            }
            continue;
        }
        memtrim_thread_busy();
        trim_at = clock_mono_ms() + MEMTRIM_IDLE_MS;
        atomic_fetch_add(&inst->records_in, (long long)n);
        for (size_t i = 0; i < n; i++) {
            for (size_t k = 0; k < inst->nalias; k++)
                if (recs[i]->topic == inst->alias_from[k])
                    recs[i]->topic = inst->alias_to[k];
            inst_note_topic(inst, recs[i]->topic);
        }
        rec_clock_begin();
        int brc = inst->kind == SPOKE_KIND_SINK ? sink_batch(inst, recs, n)
                                                : transform_batch(inst, recs, n);
        rec_clock_end();
        rqueue_done(inst->inq);
        if (brc < 0) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && inst->pend.n)
        sink_finish(inst);
    if (rc == 0 && d->snapshot)
        snap_final(inst);
    elog_flush(inst, 1);
    free(recs);
    return rc;
}

/* Names the calling thread (top -H, ps -L, perf, gdb): the kernel keeps
 * 15 bytes. Connector names are ASCII ([A-Za-z0-9._-]), so a plain cut. */
static void name_thread(const char *name)
{
    char buf[16];
    snprintf(buf, sizeof(buf), "%s", name);
    pthread_setname_np(pthread_self(), buf);
}

/* tasks.scheduling batch: the calling task thread runs under SCHED_BATCH,
 * which the kernel does not let preempt a running thread when it wakes.
 * Without it, on one CPU, each batch a producer hands over wakes its
 * consumer, which preempts the producer at once: two switches per batch
 * and per connector, a quarter of the CPU time in the kernel (bench/README.md,
 * "Task scheduling"). Threads the task creates (librdkafka's) inherit it. */
static void sched_batch(const struct spoke_instance *inst)
{
    struct sched_param sp = { .sched_priority = 0 };
    int rc = pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
    if (rc != 0)
        LOG_W(inst->name, "tasks.scheduling: cannot run the task thread as SCHED_BATCH: %s",
              strerror(rc));
}

static void *inst_thread(void *arg)
{
    struct spoke_instance *inst = arg;
    const struct spoke_plugin *d = inst->plugin;
    char err[SPOKE_ERRSTR_SIZE] = "";
    name_thread(inst->name); /* a task thread is named after its connector */
    pthread_mutex_lock(&inst->lock);
    inst->note[0] = '\0'; /* a note belongs to the run that gave it */
    pthread_mutex_unlock(&inst->lock);
    if (inst->rt->ws.tasks_batch)
        sched_batch(inst);
    int rc = d->init(&api_table, inst, inst->pcfg, &inst->st, err, sizeof(err));
    if (rc != SPOKE_OK) {
        inst->st = NULL;
        fail(inst, "init", rc, err);
        return NULL;
    }
    if (d->snapshot && inst->kind == SPOKE_KIND_TRANSFORM) {
        struct tracker *out = tracker_new(inst->name);
        pthread_mutex_lock(&inst->lock); /* gate_lost_rows reads it */
        inst->out = out;
        pthread_mutex_unlock(&inst->lock);
        if (!out) {
            fail(inst, "start", SPOKE_ERR_NOMEM, "cannot allocate the output tracker");
            goto out;
        }
    }
    /* Restored, it emits again (numbered as before) rows an earlier run
     * emitted: marked replayed, a stateful consumer that has them skips
     * them. */
    if (inst->out && inst->out_hwm)
        tracker_replay_set(inst->out, inst_out_part, (int64_t)inst->out_hwm, 0);
    /* What an earlier run of the task read from a snapshot (or covered
     * since) is not this run's: the snapshot may be gone or refused. */
    free(inst->replay);
    inst->replay = NULL;
    inst->nreplay = 0;
    inst->ncovered = 0;
    if (d->restore && (rc = restore_snapshot(inst, err, sizeof(err))) != SPOKE_OK) {
        fail(inst, "restore", rc, err);
        goto out;
    }
    if (d->start && (rc = d->start(inst->st, err, sizeof(err))) != SPOKE_OK) {
        fail(inst, "start", rc, err);
        goto out;
    }
    set_state(inst, CONN_RUNNING, NULL);
    LOG_I(inst->name, "running (%s %s %s)", registry_kind_name(inst->kind), inst->plugin->name,
          d->version);
    memtrim_task_begin();
    int lrc = inst->kind == SPOKE_KIND_SOURCE ? source_loop(inst) : consumer_loop(inst);
    memtrim_task_end();
    if (inst->kind == SPOKE_KIND_SOURCE)
        source_finish(inst);
    if (d->stop)
        d->stop(inst->st);
    if (lrc == 0 && inst->state != CONN_FAILED)
        set_state(inst, CONN_STOPPED, NULL);
out:
    /* Anything a failing callback staged still goes out. */
    inst_flush_staging(inst);
    /* Not covered by a durable snapshot: their positions never commit. */
    end_holds(inst, 0);
    pthread_mutex_lock(&inst->lock);
    struct tracker *gate = inst->out;
    inst->out = NULL;
    pthread_mutex_unlock(&inst->lock);
    tracker_release(gate); /* lives on while its records are in flight */
    if (inst->out_seq > inst->out_hwm)
        inst->out_hwm = inst->out_seq;
    inst->out_seq = 0;
    inst->gate_blocked = inst->gate_lost = 0;
    d->destroy(inst->st);
    inst->st = NULL;
    return NULL;
}

static void inst_free(struct spoke_instance *inst)
{
    if (!inst)
        return;
    if (inst->inq)
        router_unsubscribe(inst->rt->router, inst->inq);
    tracker_release(inst->tracker);
    tracker_release(inst->replay_src);
    cfgval_free(inst->hcfg);
    cfgval_free(inst->pcfg);
    free(inst->fingerprint);
    json_decref(inst->config);
    free(inst->file_fp);
    free(inst->in_topics);
    free(inst->alias_from);
    free(inst->alias_to);
    free(inst->latency);
    free(inst->holds);
    pendset_free(&inst->pend);
    free(inst->settled);
    free(inst->poll_error);
    free(inst->covered);
    free(inst->replay);
    free(inst->metrics);
    free(inst->name);
    pthread_mutex_destroy(&inst->lock);
    pthread_cond_destroy(&inst->cond);
    free(inst);
}

/* Builds an instance from a spec; takes the spec's configs. */
const struct ktopic *rt_ktopic(const struct runtime *rt, const char *t)
{
    for (size_t i = 0; t && i < rt->nktopics; i++)
        if (rt->ktopics[i].name == t)
            return &rt->ktopics[i];
    return NULL;
}

/* A reader of a Kafka-backed topic T subscribes to its private route
 * "T#<name>" instead, which its consumer bridge feeds from Kafka. */
static int inst_alias_kafka_topics(struct spoke_instance *inst)
{
    if (!inst->rt->nktopics || inst->bridge_of)
        return 0; /* a bridge reads the in-memory topic itself */
    inst->alias_from = calloc(inst->nin + 1, sizeof(*inst->alias_from));
    inst->alias_to = calloc(inst->nin + 1, sizeof(*inst->alias_to));
    if (!inst->alias_from || !inst->alias_to)
        return -1;
    for (size_t i = 0; i < inst->nin; i++) {
        if (!rt_ktopic(inst->rt, inst->in_topics[i]))
            continue;
        char route[600];
        snprintf(route, sizeof(route), "%s#%s", inst->in_topics[i], inst->name);
        const char *r = intern_str(route);
        if (!r)
            return -1;
        inst->alias_from[inst->nalias] = r;
        inst->alias_to[inst->nalias++] = inst->in_topics[i];
        inst->in_topics[i] = r;
    }
    return 0;
}

static struct spoke_instance *inst_new(struct runtime *rt, struct conn_spec *spec)
{
    struct spoke_instance *inst = calloc(1, sizeof(*inst));
    if (!inst)
        return NULL;
    inst->rt = rt;
    pthread_mutex_init(&inst->lock, NULL);
    clock_cond_init(&inst->cond);
    inst->name = strdup(spec->name);
    inst->plugin = spec->plugin;
    inst->kind = spec->plugin->kind;
    inst->hcfg = spec->hcfg;
    inst->pcfg = spec->pcfg;
    inst->fingerprint = spec->fingerprint;
    inst->config = spec->config;
    inst->file_fp = spec->file_fp;
    inst->from_rest = spec->from_rest;
    inst->target = spec->target;
    inst->bridge_of = spec->bridge_of;
    inst->log_level = -1;
    spec->hcfg = spec->pcfg = NULL;
    spec->fingerprint = NULL;
    spec->config = NULL;
    spec->file_fp = NULL;
    const char *t = cfgval_string(inst->hcfg, "topic");
    inst->out_topic = t ? intern_str(t) : NULL;
    t = cfgval_string(inst->hcfg, "errors.deadletterqueue.topic.name");
    inst->dlq_topic = t ? intern_str(t) : NULL;
    const char *const *topics = NULL;
    inst->nin = cfgval_list(inst->hcfg, "topics", &topics);
    inst->in_topics = calloc(inst->nin + 1, sizeof(*inst->in_topics));
    for (size_t i = 0; inst->in_topics && i < inst->nin; i++)
        inst->in_topics[i] = intern_str(topics[i]);
    inst->in_regex = cfgval_string(inst->hcfg, "topics.regex");
    if (inst->in_topics && inst_alias_kafka_topics(inst) != 0) {
        inst_free(inst);
        return NULL;
    }
    inst->tolerance_all = strcmp(cfgval_string(inst->hcfg, "errors.tolerance"), "all") == 0;
    inst->errors_log = cfgval_bool(inst->hcfg, "errors.log.enable");
    inst->elog_per_s = (int)cfgval_int(inst->hcfg, "errors.log.max.per.second");
    inst->retry_timeout_ms = cfgval_int(inst->hcfg, "errors.retry.timeout");
    inst->retry_delay_max_ms = cfgval_int(inst->hcfg, "errors.retry.delay.max.ms");
    inst->batch_max = (size_t)cfgval_int(inst->hcfg, "batch.max");
    inst->queue_cap = (size_t)cfgval_int(inst->hcfg, "queue.capacity");
    if (cpubudget() == 1) {
        if (!cfgval_is_set(inst->hcfg, "batch.max"))
            inst->batch_max = CONNCFG_BATCH_MAX_ONE_CPU;
        if (!cfgval_is_set(inst->hcfg, "queue.capacity"))
            inst->queue_cap = CONNCFG_QUEUE_CAPACITY_ONE_CPU;
    }
    inst->snapshot_interval_ms = cfgval_int(inst->hcfg, "snapshot.interval.ms");
    if (inst->kind == SPOKE_KIND_SINK && !(inst->latency = calloc(1, sizeof(*inst->latency)))) {
        inst_free(inst);
        return NULL;
    }
    inst->restart_max = (int)cfgval_int(inst->hcfg, "restart.max.retries");
    inst->restart_backoff_ms = cfgval_int(inst->hcfg, "restart.backoff.ms");
    inst->restart_backoff_max_ms = cfgval_int(inst->hcfg, "restart.backoff.max.ms");
    if (!inst->name || !inst->in_topics) {
        inst_free(inst);
        return NULL;
    }
    return inst;
}

/* Same input subscription: a reconfigured connector keeps its queue. */
static int same_inputs(const struct spoke_instance *a, const struct spoke_instance *b)
{
    if (a->kind == SPOKE_KIND_SOURCE || b->kind == SPOKE_KIND_SOURCE || a->nin != b->nin ||
        a->queue_cap != b->queue_cap)
        return 0;
    if ((a->in_regex == NULL) != (b->in_regex == NULL) ||
        (a->in_regex && strcmp(a->in_regex, b->in_regex) != 0))
        return 0;
    for (size_t i = 0; i < a->nin; i++)
        if (a->in_topics[i] != b->in_topics[i])
            return 0;
    return 1;
}

/* Creates the tracker (sources) or input queue (consumers). Every connector
 * is prepared before any thread starts, so no source can publish before a
 * sink declared in the same file subscribes. */
static int inst_prepare(struct spoke_instance *inst)
{
    char err[256];
    if (inst->kind == SPOKE_KIND_SOURCE && !inst->tracker) {
        struct tracker *t = tracker_new(inst->name);
        struct tracker *prev = NULL;
        pthread_mutex_lock(&inst->rt->lock);
        inst->tracker = t;
        if (t) {
            prev = inst->replay_src;
            inst->replay_src = NULL;
        }
        pthread_mutex_unlock(&inst->rt->lock);
        if (!inst->tracker) {
            fail(inst, "start", SPOKE_ERR_NOMEM, "cannot allocate the delivery tracker");
            return -1;
        }
        if (prev) {
            /* What the previous run emitted comes again: marked replayed. */
            tracker_replay_inherit(t, prev);
            tracker_release(prev);
        }
    } else if (inst->kind == SPOKE_KIND_SOURCE && inst->replay_self) {
        tracker_replay_inherit(inst->tracker, inst->tracker);
    }
    inst->replay_self = 0;
    if (inst->kind != SPOKE_KIND_SOURCE && !inst->inq) {
        inst->inq = router_subscribe(inst->rt->router, inst->name, inst->in_topics, inst->nin,
                                     inst->in_regex, inst->queue_cap, err, sizeof(err));
        if (!inst->inq) {
            fail(inst, "subscribe", SPOKE_ERR_INVALID, err);
            return -1;
        }
    }
    if (inst->out_topic)
        router_declare(inst->rt->router, inst->out_topic);
    return 0;
}

static int inst_launch(struct spoke_instance *inst)
{
    if (inst->state == CONN_FAILED)
        return -1; /* prepare failed */
    inst->stop_req = inst->cancel = inst->draining = 0;
    if (inst->inq) {
        rqueue_reopen(inst->inq);
        rqueue_set_discard(inst->inq, 0);
    }
    if (pthread_create(&inst->thread, NULL, inst_thread, inst) != 0) {
        fail(inst, "start", SPOKE_ERR, "cannot create the task thread");
        return -1;
    }
    inst->has_thread = 1;
    return 0;
}

/* Asks a task to stop and joins it; forced (cancel) after deadline. */
static void inst_join(struct spoke_instance *inst, int64_t deadline_ms)
{
    if (!inst->has_thread)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t left = deadline_ms - clock_mono_ms();
    if (left < 0)
        left = 0;
    ts.tv_sec += left / 1000;
    ts.tv_nsec += (left % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    if (pthread_timedjoin_np(inst->thread, NULL, &ts) != 0) {
        LOG_W(inst->name, "did not stop in time; abandoning its in-flight records");
        pthread_mutex_lock(&inst->lock);
        inst->stop_req = 1; /* ends retry loops (e.g. a flush that keeps retrying) */
        inst->cancel = 1;
        pthread_cond_broadcast(&inst->cond);
        pthread_mutex_unlock(&inst->lock);
        if (inst->inq)
            rqueue_wake(inst->inq);
        router_interrupt(inst->rt->router);
        pthread_join(inst->thread, NULL);
    }
    inst->has_thread = 0;
}

static void inst_request_stop(struct spoke_instance *inst)
{
    pthread_mutex_lock(&inst->lock);
    inst->stop_req = 1;
    pthread_cond_broadcast(&inst->cond);
    pthread_mutex_unlock(&inst->lock);
    if (inst->inq)
        rqueue_wake(inst->inq);
}

/* ------------------------------------------------------------------------ */
/* status and housekeeping                                                   */
/* ------------------------------------------------------------------------ */

static void topic_json(void *ctx, const struct router_topic_stats *s)
{
    json_t *o = json_pack("{s:I,s:I,s:I,s:I}", "records", (json_int_t)s->records, "unrouted",
                          (json_int_t)s->unrouted, "subscribers", (json_int_t)s->subscribers,
                          "depth", (json_int_t)s->depth);
    if (o)
        json_object_set_new(ctx, s->name, o);
}

static json_t *inst_json(struct spoke_instance *inst)
{
    json_t *m = json_object();
    json_object_set_new(m, "records_in", json_integer(atomic_load(&inst->records_in)));
    json_object_set_new(m, "records_out", json_integer(atomic_load(&inst->records_out)));
    json_object_set_new(m, "errors", json_integer(atomic_load(&inst->errors)));
    json_object_set_new(m, "dead_lettered", json_integer(atomic_load(&inst->dead_lettered)));
    json_object_set_new(m, "retries", json_integer(atomic_load(&inst->retries)));
    struct rqueue *q = inst->inq;
    if (q) {
        json_object_set_new(m, "queue_depth", json_integer((json_int_t)rqueue_depth(q)));
        json_object_set_new(m, "queue_capacity", json_integer((json_int_t)rqueue_capacity(q)));
        json_object_set_new(m, "batch_max", json_integer((json_int_t)inst->batch_max));
        json_object_set_new(m, "discarded", json_integer(rqueue_discarded(q)));
    }
    if (inst->tracker)
        json_object_set_new(m, "inflight",
                            json_integer((json_int_t)tracker_inflight(inst->tracker)));
    if (inst->kind == SPOKE_KIND_SOURCE)
        json_object_set_new(m, "last_poll_ms", json_integer(atomic_load(&inst->last_poll_ms)));
    if (inst->latency) {
        json_object_set_new(m, "latency_p50_us",
                            json_integer(hist_quantile(inst->latency, 0.50) / 1000));
        json_object_set_new(m, "latency_p99_us",
                            json_integer(hist_quantile(inst->latency, 0.99) / 1000));
        json_object_set_new(m, "latency_max_us",
                            json_integer(hist_quantile(inst->latency, 1.0) / 1000));
    }
    if (inst->plugin->snapshot)
        json_object_set_new(m, "replayed_skipped",
                            json_integer(atomic_load(&inst->replayed_skipped)));
    pthread_mutex_lock(&inst->lock);
    json_t *plugin = json_object();
    for (size_t i = 0; i < inst->nmetrics; i++)
        json_object_set_new(plugin, inst->metrics[i].name, json_integer(inst->metrics[i].value));
    json_object_set_new(m, "plugin", plugin);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:b,s:o}", "plugin", inst->plugin->name, "type",
                          registry_kind_name(inst->kind), "state", rt_state_name(inst->state),
                          "worker_id", rt_worker_id(inst->rt), "retrying", inst->retrying,
                          "metrics", m);
    if (o) {
        json_object_set_new(o, "trace", inst->trace[0] ? json_string(inst->trace) : json_null());
        json_object_set_new(o, "note", inst->note[0] ? json_string(inst->note) : json_null());
    }
    pthread_mutex_unlock(&inst->lock);
    return o;
}

static void write_status(struct runtime *rt)
{
    json_t *conns = json_object(), *topics = json_object();
    pthread_mutex_lock(&rt->lock);
    for (size_t i = 0; i < rt->nconns; i++) {
        json_t *o = inst_json(rt->conns[i]);
        if (o)
            json_object_set_new(conns, rt->conns[i]->name, o);
    }
    pthread_mutex_unlock(&rt->lock);
    router_topics(rt->router, topic_json, topics);
    json_t *root = json_pack("{s:s,s:s,s:I,s:I,s:o,s:o}", "version", SPOKE_VERSION, "worker_id",
                             rt_worker_id(rt), "pid", (json_int_t)getpid(), "uptime_ms",
                             (json_int_t)(clock_mono_ms() - rt->started_ms), "connectors", conns,
                             "topics", topics);
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    char err[256];
    if (!text || atomic_write_file(rt->status_path, text, strlen(text), err, sizeof(err)) != 0)
        LOG_W(NULL, "cannot write %s: %s", rt->status_path, text ? err : "out of memory");
    free(text);
    json_decref(root);
}

static void commit_offsets(struct runtime *rt)
{
    pthread_mutex_lock(&rt->lock);
    for (size_t i = 0; i < rt->nconns; i++)
        if (rt->conns[i]->tracker)
            tracker_committed(rt->conns[i]->tracker, store_commit, rt->conns[i]);
    pthread_mutex_unlock(&rt->lock);
    char err[256];
    if (offsets_flush(rt->offsets, err, sizeof(err)) != 0)
        LOG_E(NULL, "cannot write offsets: %s", err);
}

/* The connectors as they are now, in a new array (NULL when there are none
 * or memory ran out), *n their number: for loops that stop and start some,
 * which must not hold rt->lock meanwhile. */
static struct spoke_instance **conns_copy(struct runtime *rt, size_t *n)
{
    pthread_mutex_lock(&rt->lock);
    *n = rt->nconns;
    struct spoke_instance **v = *n ? malloc(*n * sizeof(*v)) : NULL;
    if (v)
        memcpy(v, rt->conns, *n * sizeof(*v));
    pthread_mutex_unlock(&rt->lock);
    return v;
}

/* FAILED connectors with restart.max.retries: restart those whose backoff
 * has passed; forget the attempts of those healthy for restart.backoff.max.ms.
 * Returns the next time (mono ms) something is due, or -1. */
static int64_t auto_restart(struct runtime *rt)
{
    int64_t now = clock_mono_ms(), next = -1;
    if (pthread_mutex_trylock(&rt->ctl_lock) != 0)
        return now + 50; /* a lifecycle change is in progress: come back soon */
    size_t n;
    struct spoke_instance **v = conns_copy(rt, &n);
    for (size_t i = 0; v && i < n && !rt->stopping; i++) {
        struct spoke_instance *inst = v[i];
        pthread_mutex_lock(&inst->lock);
        enum conn_state st = inst->state;
        int64_t at = inst->restart_at_ms;
        if (st == CONN_RUNNING && inst->restart_attempts > 0 &&
            now - inst->running_since_ms >= inst->restart_backoff_max_ms)
            inst->restart_attempts = 0;
        pthread_mutex_unlock(&inst->lock);
        if (st != CONN_FAILED || at == 0)
            continue;
        if (now >= at && inst->target != TARGET_STOPPED) {
            inst->restart_attempts++;
            LOG_I(inst->name, "automatic restart %d after failure", inst->restart_attempts);
            rt_restart(rt, inst);
        } else if (next < 0 || at < next) {
            next = at;
        }
    }
    free(v);
    pthread_mutex_unlock(&rt->ctl_lock);
    return next;
}

static void *hk_thread(void *arg)
{
    struct runtime *rt = arg;
    name_thread("spoke-hk");
    memtrim_thread_uncached(); /* a status write a second */
    int64_t next_offsets = clock_mono_ms() + rt->ws.offset_flush_ms;
    int64_t next_status = clock_mono_ms();
    pthread_mutex_lock(&rt->hk_lock);
    int64_t next_restart = -1;
    while (!rt->hk_stop) {
        int64_t due = next_offsets < next_status ? next_offsets : next_status;
        if (next_restart >= 0 && next_restart < due)
            due = next_restart;
        if (!rt->hk_kick && clock_mono_ms() < due) {
            struct timespec ts;
            clock_deadline_ts(&ts, due);
            pthread_cond_timedwait(&rt->hk_cond, &rt->hk_lock, &ts);
            continue;
        }
        int kicked = rt->hk_kick;
        rt->hk_kick = 0;
        pthread_mutex_unlock(&rt->hk_lock);
        int64_t now = clock_mono_ms();
        if (now >= next_offsets) {
            commit_offsets(rt);
            next_offsets = now + rt->ws.offset_flush_ms;
        }
        if (kicked || now >= next_status) {
            write_status(rt);
            next_status = now + rt->ws.status_interval_ms;
        }
        if (kicked || (next_restart >= 0 && now >= next_restart))
            next_restart = auto_restart(rt);
        memtrim_process_check();
        pthread_mutex_lock(&rt->hk_lock);
    }
    pthread_mutex_unlock(&rt->hk_lock);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* start, reload, shutdown                                                   */
/* ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------ */
/* the connector set: connectors.yaml plus what REST changed                 */
/* ------------------------------------------------------------------------ */

/*
 * Precedence between connectors.yaml and REST (state.dir/connectors.json):
 * a REST change to a connector (create, config, pause/resume/stop, delete)
 * is recorded with the fingerprint of the file's entry for that name at the
 * time (none if the file has no such connector). At start and on reload:
 *  - the file's entry is unchanged since the REST change: the REST state
 *    wins (its config and target; a REST delete keeps it deleted);
 *  - the file changed that connector (or added one REST had created): the
 *    file wins and the REST record is dropped;
 *  - a connector only REST knows keeps running as REST left it; one the file
 *    had and no longer has is gone.
 */

static int add_conn(struct runtime *rt, struct spoke_instance *inst)
{
    pthread_mutex_lock(&rt->lock);
    struct spoke_instance **c = realloc(rt->conns, (rt->nconns + 1) * sizeof(*c));
    if (c) {
        rt->conns = c;
        rt->conns[rt->nconns++] = inst;
    }
    pthread_mutex_unlock(&rt->lock);
    return c ? 0 : -1;
}

static void remove_conn(struct runtime *rt, struct spoke_instance *inst)
{
    pthread_mutex_lock(&rt->lock);
    for (size_t i = 0; i < rt->nconns; i++) {
        if (rt->conns[i] == inst) {
            memmove(&rt->conns[i], &rt->conns[i + 1], (rt->nconns - i - 1) * sizeof(*rt->conns));
            rt->nconns--;
            break;
        }
    }
    pthread_mutex_unlock(&rt->lock);
}

struct spoke_instance *rt_find_locked(struct runtime *rt, const char *name)
{
    for (size_t i = 0; i < rt->nconns; i++)
        if (strcmp(rt->conns[i]->name, name) == 0)
            return rt->conns[i];
    return NULL;
}

static void declare_topics(struct runtime *rt, const struct cfg_file *f)
{
    for (size_t i = 0; i < f->ntopics; i++) {
        const char *t = intern_str(f->topics[i].name);
        if (t)
            router_declare(rt->router, t);
    }
}

/* ---- sections and JSON configs ---- */

static void section_clear(struct cfg_section *s)
{
    for (size_t i = 0; i < s->nkv; i++) {
        free(s->kv[i].key);
        free(s->kv[i].value);
        for (size_t k = 0; k < s->kv[i].nitems; k++)
            free(s->kv[i].items[k]);
        free(s->kv[i].items);
    }
    free(s->kv);
    free(s->name);
    memset(s, 0, sizeof(*s));
}

/* Deep copy of name, keys, values, a YAML sequence's items (validation
 * checks them one by one, as `spoke validate` does; downstream the value
 * holds them comma-joined) and positions. */
static int section_copy(struct cfg_section *dst, const struct cfg_section *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->name = strdup(src->name);
    dst->pos = src->pos;
    dst->kv = calloc(src->nkv + 1, sizeof(*dst->kv));
    if (!dst->name || !dst->kv)
        goto oom;
    for (size_t i = 0; i < src->nkv; i++) {
        struct cfg_kv *k = &dst->kv[dst->nkv];
        k->key = strdup(src->kv[i].key);
        k->value = strdup(src->kv[i].value);
        k->key_pos = src->kv[i].key_pos;
        k->value_pos = src->kv[i].value_pos;
        k->is_list = src->kv[i].is_list;
        dst->nkv++;
        if (!k->key || !k->value)
            goto oom;
        if (k->is_list) {
            /* items[nitems] stays NULL, as the loader leaves it. */
            if (!(k->items = calloc(src->kv[i].nitems + 1, sizeof(*k->items))))
                goto oom;
            for (; k->nitems < src->kv[i].nitems; k->nitems++)
                if (!(k->items[k->nitems] = strdup(src->kv[i].items[k->nitems])))
                    goto oom;
        }
    }
    return 0;
oom:
    section_clear(dst);
    return -1;
}

/* A section (no positions) from a JSON object of strings. "name", when
 * present, must equal name. Errors as "key 'k': ..." lines. */
static int section_from_json(const char *name, json_t *config, struct cfg_section *sec,
                             struct buf *errs)
{
    memset(sec, 0, sizeof(*sec));
    if (!json_is_object(config)) {
        buf_puts(errs, "the connector configuration must be a JSON object\n");
        return -1;
    }
    int bad = 0;
    const char *k;
    json_t *v;
    json_object_foreach(config, k, v) {
        if (!json_is_string(v)) {
            buf_printf(errs, "key '%s': configuration values must be strings\n", k);
            bad = 1;
        } else if (strcmp(k, "name") == 0 && strcmp(json_string_value(v), name) != 0) {
            buf_printf(errs, "key 'name': '%s' differs from the connector name '%s'\n",
                       json_string_value(v), name);
            bad = 1;
        }
    }
    if (bad)
        return -1;
    sec->name = strdup(name);
    sec->kv = calloc(json_object_size(config) + 1, sizeof(*sec->kv));
    if (!sec->name || !sec->kv)
        goto oom;
    json_object_foreach(config, k, v) {
        if (strcmp(k, "name") == 0)
            continue;
        struct cfg_kv *kv = &sec->kv[sec->nkv];
        kv->key = strdup(k);
        kv->value = strdup(json_string_value(v));
        sec->nkv++;
        if (!kv->key || !kv->value)
            goto oom;
    }
    return 0;
oom:
    section_clear(sec);
    buf_puts(errs, "out of memory\n");
    return -1;
}

static json_t *config_from_section(const struct cfg_section *sec)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "name", json_string(sec->name));
    for (size_t i = 0; i < sec->nkv; i++)
        json_object_set_new(o, sec->kv[i].key, json_string(sec->kv[i].value));
    return o;
}

static int key_is_secret(const struct spoke_instance *inst, const char *key)
{
    return cfgval_key_secret(inst->plugin->config, key);
}

json_t *rt_masked_config(const struct spoke_instance *inst)
{
    json_t *o = json_deep_copy(inst->config);
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        if (key_is_secret(inst, k))
            json_object_set_new(o, k, json_string(CTL_SECRET_MASK));
    }
    return o;
}

/* ---- connectors.json ---- */

static json_t *persist_load(const char *path, char *err, size_t errsize)
{
    int missing = 0;
    size_t len = 0;
    char *text = read_file(path, 64u << 20, &len, &missing, err, errsize);
    if (!text)
        return missing ? json_pack("{s:{}}", "connectors") : NULL;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    json_t *conns = json_object_get(root, "connectors");
    const char *k;
    json_t *e;
    if (!json_is_object(conns))
        goto bad;
    json_object_foreach(conns, k, e) {
        json_t *cfg = json_object_get(e, "config"), *t = json_object_get(e, "target");
        json_t *fp = json_object_get(e, "file_fingerprint");
        if (!json_is_object(e) || !json_is_boolean(json_object_get(e, "deleted")) ||
            (fp && !json_is_null(fp) && !json_is_string(fp)))
            goto bad;
        if (json_is_false(json_object_get(e, "deleted")) &&
            (!json_is_object(cfg) || !json_is_string(t) || rt_target_parse(json_string_value(t)) < 0))
            goto bad;
    }
    return root;
bad:
    if (snprintf(err, errsize, "%s: not a valid Spoke REST state file%s%s", path,
                 root ? "" : ": ", root ? "" : jerr.text) >= (int)errsize)
        err[errsize - 1] = '\0';
    json_decref(root);
    return NULL;
}

int rt_persist_save(struct runtime *rt)
{
    char err[512];
    char *text = json_dumps(rt->persisted, JSON_INDENT(2) | JSON_SORT_KEYS);
    int rc = text ? atomic_write_file(rt->persist_path, text, strlen(text), err, sizeof(err)) : -1;
    if (rc != 0)
        LOG_E(NULL, "cannot save REST changes to %s: %s", rt->persist_path,
              text ? err : "out of memory");
    free(text);
    return rc;
}

/* ---- stored REST connectors that no longer validate ---- */

static void skipped_forget(struct runtime *rt, const char *name)
{
    pthread_mutex_lock(&rt->skipped_lock);
    if (rt->skipped)
        json_object_del(rt->skipped, name);
    pthread_mutex_unlock(&rt->skipped_lock);
}

char *rt_skipped_reason(struct runtime *rt, const char *name)
{
    pthread_mutex_lock(&rt->skipped_lock);
    const char *r = json_string_value(json_object_get(json_object_get(rt->skipped, name),
                                                      "reason"));
    char *out = r ? strdup(r) : NULL;
    pthread_mutex_unlock(&rt->skipped_lock);
    return out;
}

json_t *rt_skipped(struct runtime *rt)
{
    pthread_mutex_lock(&rt->skipped_lock);
    json_t *o = rt->skipped ? json_deep_copy(rt->skipped) : json_object();
    pthread_mutex_unlock(&rt->skipped_lock);
    return o;
}

/* Records a connector's REST-visible state (config and target). */
static void persist_record(struct runtime *rt, const struct spoke_instance *inst)
{
    json_t *e = json_pack("{s:O,s:s,s:b}", "config", inst->config, "target",
                          rt_target_name(inst->target), "deleted", 0);
    if (!e)
        return;
    json_object_set_new(e, "file_fingerprint",
                        inst->file_fp ? json_string(inst->file_fp) : json_null());
    json_object_set_new(json_object_get(rt->persisted, "connectors"), inst->name, e);
    rt_persist_save(rt);
    skipped_forget(rt, inst->name);
}

static void persist_delete(struct runtime *rt, const char *name, const char *file_fp)
{
    json_t *conns = json_object_get(rt->persisted, "connectors");
    if (file_fp)
        json_object_set_new(conns, name, json_pack("{s:b,s:s}", "deleted", 1,
                                                   "file_fingerprint", file_fp));
    else
        json_object_del(conns, name);
    rt_persist_save(rt);
    skipped_forget(rt, name);
}

/* ---- the desired set ---- */

struct desired {
    struct cfg_section sec;     /* owned */
    const char *path;           /* for messages */
    enum conn_target target;
    int from_rest;
    char *file_fp;              /* owned */
};

static void desired_free(struct desired *d, size_t n)
{
    for (size_t i = 0; d && i < n; i++) {
        section_clear(&d[i].sec);
        free(d[i].file_fp);
    }
    free(d);
}

static void skipped_note(struct runtime *rt, const char *name, const char *errs,
                         const json_t *config);

/* Merges the file and the persisted REST state (see the comment above).
 * Drops stale REST records from rt->persisted and saves it when it changed.
 * Every stored connector is checked again: rt->skipped starts empty. */
static int build_desired(struct runtime *rt, const struct cfg_file *f, struct desired **out,
                         size_t *nout)
{
    pthread_mutex_lock(&rt->skipped_lock);
    json_object_clear(rt->skipped);
    pthread_mutex_unlock(&rt->skipped_lock);
    json_t *conns = json_object_get(rt->persisted, "connectors");
    size_t cap = f->nconnectors + json_object_size(conns) + 1, n = 0;
    struct desired *d = calloc(cap, sizeof(*d));
    int changed = 0;
    struct buf junk = BUF_INIT;
    if (!d)
        goto oom;
    for (size_t i = 0; i < f->nconnectors; i++) {
        const struct cfg_section *sec = &f->connectors[i];
        char *fp = fingerprint(sec);
        if (!fp)
            goto oom;
        json_t *p = json_object_get(conns, sec->name);
        const char *pfp = json_string_value(json_object_get(p, "file_fingerprint"));
        struct desired *x = &d[n];
        x->file_fp = fp;
        if (p && pfp && strcmp(pfp, fp) == 0) {
            if (json_is_true(json_object_get(p, "deleted"))) {
                free(fp);
                x->file_fp = NULL;
                continue; /* deleted over REST, file unchanged since */
            }
            if (section_from_json(sec->name, json_object_get(p, "config"), &x->sec, &junk) != 0)
                goto file_entry;
            x->path = rt->persist_path;
            x->from_rest = 1;
            x->target = rt_target_parse(json_string_value(json_object_get(p, "target")));
            n++;
            continue;
        }
        if (p) {
            LOG_I(sec->name, "%s changed this connector since its REST changes: the file's "
                  "version applies", f->path);
            json_object_del(conns, sec->name);
            changed = 1;
        }
file_entry:
        if (section_copy(&x->sec, sec) != 0)
            goto oom;
        x->path = f->path;
        x->target = TARGET_RUNNING;
        n++;
    }
    const char *name;
    json_t *p, *tmp;
    json_object_foreach_safe(conns, tmp, name, p) {
        if (cfg_file_connector(f, name))
            continue;
        if (!json_is_null(json_object_get(p, "file_fingerprint")) &&
            json_object_get(p, "file_fingerprint")) {
            /* It came from the file, which no longer has it. */
            json_object_del(conns, name);
            changed = 1;
            continue;
        }
        if (json_is_true(json_object_get(p, "deleted")))
            continue;
        struct desired *x = &d[n];
        buf_reset(&junk);
        if (section_from_json(name, json_object_get(p, "config"), &x->sec, &junk) != 0) {
            LOG_E(name, "%s: invalid stored config, connector not started (PUT "
                  "/connectors/%s/config a valid one, or DELETE /connectors/%s to forget it): "
                  "%s", rt->persist_path, name, name, junk.p ? junk.p : "");
            skipped_note(rt, name, junk.p ? junk.p : "", json_object_get(p, "config"));
            continue;
        }
        x->path = rt->persist_path;
        x->from_rest = 1;
        x->target = rt_target_parse(json_string_value(json_object_get(p, "target")));
        n++;
    }
    buf_free(&junk);
    if (changed)
        rt_persist_save(rt);
    *out = d;
    *nout = n;
    return 0;
oom:
    buf_free(&junk);
    desired_free(d, n);
    return -1;
}

/* Keys shown as they are in a skipped connector whose plugin is unknown
 * (nothing says which of its keys are secret). */
static int plain_without_plugin(const char *key)
{
    static const char *const keys[] = { "name", "connector.class", "topic", "topics",
                                        "topics.regex", NULL };
    for (const char *const *k = keys; *k; k++)
        if (strcmp(*k, key) == 0)
            return 1;
    return 0;
}

/* Remembers why the stored REST connector name was not started (its
 * errors, one line), its stored config with secrets masked (every value
 * but a few plain keys when its plugin is unknown) and its plugin's kind
 * (-1 unknown): rt->skipped[name] = {"reason", "config", "kind",
 * "plugin"}. A reload that skips it again replaces the entry; one that
 * starts it, or a REST change, forgets it. */
static void skipped_note(struct runtime *rt, const char *name, const char *errs,
                         const json_t *config)
{
    char line[512];
    size_t n = 0;
    for (const char *p = errs; *p && n + 3 < sizeof(line); p++) {
        if (*p == '\n') {
            if (p[1])
                line[n++] = ';', line[n++] = ' ';
            continue;
        }
        line[n++] = *p;
    }
    if (n + 3 >= sizeof(line))  /* cut: not inside a UTF-8 sequence */
        while (n > 0 && (line[n - 1] & 0x80))
            n--;
    line[n] = '\0';
    json_t *why = json_string(line);
    const char *cls = json_string_value(json_object_get(config, "connector.class"));
    const struct plugin_entry *pe = cls && registry_valid_name(cls) ? registry_find(rt->reg, cls)
                                                                    : NULL;
    json_t *masked = json_is_object(config) ? json_deep_copy(config) : json_object();
    const char *k;
    json_t *v;
    json_object_foreach(masked, k, v) {
        int secret = pe ? cfgval_key_secret(pe->desc->config, k) ||
                          cfgval_key_secret(conncfg_fields, k)
                        : !plain_without_plugin(k);
        if (secret || !json_is_string(v))
            json_object_set_new(masked, k, json_string(CTL_SECRET_MASK));
    }
    json_t *e = json_pack("{s:o,s:o,s:i,s:s}", "reason", why ? why : json_string("see the log"),
                          "config", masked ? masked : json_object(), "kind",
                          pe ? (int)pe->desc->kind : -1, "plugin",
                          cls && registry_valid_name(cls) ? cls : "");
    pthread_mutex_lock(&rt->skipped_lock);
    if (!rt->skipped)
        rt->skipped = json_object();
    if (rt->skipped && e)
        json_object_set_new(rt->skipped, name, e);
    else
        json_decref(e);
    pthread_mutex_unlock(&rt->skipped_lock);
}

/* Validates the desired set into specs (specs[i].name NULL when skipped).
 * Errors of file entries (and of every entry when all_fatal) count and are
 * listed in errs; stored REST entries that no longer validate (e.g. their
 * plugin is gone) are logged and skipped, so they never block a start. */
static size_t check_desired(struct runtime *rt, struct desired *d, size_t n,
                            struct conn_spec *specs, struct buf *errs, int all_fatal)
{
    size_t nerr = 0;
    for (size_t i = 0; i < n; i++) {
        struct buf local = BUF_INIT;
        size_t e = check_connector(d[i].path, &d[i].sec, rt->reg, &specs[i], &local);
        if (e) {
            if (d[i].from_rest && !all_fatal) {
                LOG_E(d[i].sec.name, "stored REST config no longer valid, connector not "
                      "started (PUT /connectors/%s/config a valid one, or DELETE "
                      "/connectors/%s to forget it):\n%s", d[i].sec.name, d[i].sec.name,
                      local.p ? local.p : "");
                json_t *stored = config_from_section(&d[i].sec);
                skipped_note(rt, d[i].sec.name, local.p ? local.p : "", stored);
                json_decref(stored);
                /* Not started: no name (check_connector set it first), and
                 * whatever the check had built is freed. */
                spec_clear(&specs[i]);
            } else {
                buf_append(errs, local.p, local.len);
                nerr += e;
            }
            buf_free(&local);
            continue;
        }
        buf_free(&local);
        specs[i].config = config_from_section(&d[i].sec);
        specs[i].target = d[i].target;
        specs[i].from_rest = d[i].from_rest;
        specs[i].file_fp = d[i].file_fp ? strdup(d[i].file_fp) : NULL;
        if (!specs[i].config) {
            buf_puts(errs, "out of memory\n");
            nerr++;
        }
    }
    return nerr;
}

/* ---- applying targets ---- */

/* Detaches a source's tracker. Status, metrics and offset commits read
 * inst->tracker under rt->lock, so the pointer changes under it too. */
static struct tracker *take_tracker(struct spoke_instance *inst)
{
    pthread_mutex_lock(&inst->rt->lock);
    struct tracker *t = inst->tracker;
    inst->tracker = NULL;
    pthread_mutex_unlock(&inst->rt->lock);
    return t;
}

/* Detaches a stopped source's tracker, kept as replay_src: the next run
 * marks what it emits again as replayed (inst_prepare). */
static void retire_tracker(struct spoke_instance *inst)
{
    struct tracker *t = take_tracker(inst);
    if (!t)
        return;
    pthread_mutex_lock(&inst->rt->lock);
    struct tracker *older = inst->replay_src;
    inst->replay_src = t;
    pthread_mutex_unlock(&inst->rt->lock);
    if (older) {
        tracker_replay_inherit(t, older);
        tracker_release(older);
    }
}

void rt_forget_replays(struct spoke_instance *inst)
{
    pthread_mutex_lock(&inst->rt->lock);
    struct tracker *t = inst->replay_src;
    inst->replay_src = NULL;
    pthread_mutex_unlock(&inst->rt->lock);
    tracker_release(t);
}

/* Stops the task (if any) and waits for it. */
static void inst_halt(struct spoke_instance *inst)
{
    if (!inst->has_thread)
        return;
    inst_request_stop(inst);
    inst_join(inst, clock_mono_ms() + inst->rt->ws.shutdown_timeout_ms);
}

/* Starts the task unless the target is STOPPED. */
static void inst_start(struct spoke_instance *inst)
{
    if (inst->target == TARGET_STOPPED) {
        set_state(inst, CONN_STOPPED, NULL);
        return;
    }
    if (inst->has_thread)
        inst_join(inst, clock_mono_ms() + inst->rt->ws.shutdown_timeout_ms);
    if (inst_prepare(inst) == 0)
        inst_launch(inst);
}

int rt_set_target(struct runtime *rt, struct spoke_instance *inst, enum conn_target target,
                  int persist)
{
    pthread_mutex_lock(&inst->lock);
    enum conn_target old = inst->target;
    inst->target = target;
    enum conn_state state = inst->state;
    pthread_cond_broadcast(&inst->cond);
    pthread_mutex_unlock(&inst->lock);
    /* A consumer waiting for input must notice too. */
    if (inst->inq)
        rqueue_wake(inst->inq);
    if (target == TARGET_STOPPED && (inst->has_thread || state != CONN_STOPPED)) {
        inst_halt(inst);
        set_state(inst, CONN_STOPPED, NULL);
        /* Offsets may be changed while STOPPED: nothing may commit over them
         * (and when they are, rt_forget_replays: what the source reads from
         * them is not a replay). */
        retire_tracker(inst);
        LOG_I(inst->name, "stopped");
    } else if (target != TARGET_STOPPED && old == TARGET_STOPPED && state == CONN_STOPPED) {
        inst_start(inst);
    }
    if (persist)
        persist_record(rt, inst);
    return 0;
}

/* A restart's first half: the task stops, to start again. */
static void restart_halt(struct spoke_instance *inst)
{
    set_state(inst, CONN_RESTARTING, NULL);
    inst->restarting = 1; /* read by its task thread, which inst_halt joins */
    inst_halt(inst);
    atomic_fetch_add(&inst->restarts, 1);
    pthread_mutex_lock(&inst->lock);
    inst->restart_at_ms = 0;
    pthread_mutex_unlock(&inst->lock);
}

/* Its second half. A source resumes from its committed offsets: what it
 * emitted past them comes again, marked replayed (from its own tracker,
 * or from the one retire_tracker kept). */
static void restart_start(struct spoke_instance *inst)
{
    if (inst->kind == SPOKE_KIND_SOURCE)
        inst->replay_self = 1;
    inst_start(inst);
    inst->restarting = 0;
}

static void restart_one(struct spoke_instance *inst)
{
    restart_halt(inst);
    LOG_I(inst->name, "restarting");
    restart_start(inst);
}

/*
 * A consumer that FAILED discarded the records meant for it, which left the
 * sources that emitted them blocked at the first one (their offsets stop
 * there). When such a consumer runs again, those sources restart from their
 * committed offsets, so it receives what it missed (at least once: healthy
 * sinks may see some records twice, stateful transforms skip those they
 * processed; nothing is lost).
 */
static void replay_blocked_sources(struct runtime *rt)
{
    size_t n;
    struct spoke_instance **v = conns_copy(rt, &n);
    for (size_t i = 0; v && i < n; i++) {
        struct spoke_instance *src = v[i];
        if (src->kind != SPOKE_KIND_SOURCE || !src->tracker || !tracker_blocked(src->tracker) ||
            src->target == TARGET_STOPPED)
            continue;
        LOG_I(src->name, "replaying from the committed offsets: records it emitted were "
              "discarded while a consumer was FAILED");
        restart_halt(src);
        /* A fresh tracker: the blocked one keeps only what is still in
         * flight. What it emits again is marked replayed, so the consumers
         * that had it already skip it (see transform_records). */
        retire_tracker(src);
        restart_start(src);
    }
    free(v);
}

/* A stateful transform some of whose rows were discarded (a consumer had
 * FAILED): its gate is blocked, or will be at its next check. */
static int gate_lost_rows(struct spoke_instance *t)
{
    if (t->kind != SPOKE_KIND_TRANSFORM || !t->plugin->snapshot || t->target == TARGET_STOPPED)
        return 0;
    if (atomic_load(&t->gate_blocked))
        return 1;
    pthread_mutex_lock(&t->lock);
    int lost = t->out && tracker_blocked(t->out);
    pthread_mutex_unlock(&t->lock);
    return lost;
}

/*
 * A stateful transform whose rows were discarded writes no snapshot any
 * more, and its input since the last one is not committed. When a consumer
 * runs again, it restarts from that snapshot before its sources replay that
 * input, so the rows come again. Stopping it ends its holds unfulfilled,
 * which discards the rows of a stateful transform upstream in turn: that
 * one restarts too. All stop before any starts, so none of them skips
 * rows another one emits again.
 */
static void rewind_stateful(struct runtime *rt)
{
    size_t n;
    struct spoke_instance **v = conns_copy(rt, &n);
    unsigned char *halted = n ? calloc(n, 1) : NULL;
    for (int more = 1; v && halted && more;) {
        more = 0;
        for (size_t i = 0; i < n; i++) {
            if (halted[i] || !gate_lost_rows(v[i]))
                continue;
            LOG_I(v[i]->name, "restarting from its last snapshot: rows it emitted were "
                  "discarded while a consumer was FAILED; they are derived again from the "
                  "replayed input");
            restart_halt(v[i]);
            halted[i] = more = 1;
        }
    }
    for (size_t i = 0; v && halted && i < n; i++) {
        if (halted[i])
            restart_start(v[i]);
    }
    free(halted);
    free(v);
}

/* A transform or sink runs again (a restart, a new config): what was
 * discarded while it had FAILED comes again. */
static void consumer_back(struct runtime *rt)
{
    rewind_stateful(rt);
    replay_blocked_sources(rt);
}

int rt_restart(struct runtime *rt, struct spoke_instance *inst)
{
    restart_one(inst);
    if (inst->kind != SPOKE_KIND_SOURCE && inst->target != TARGET_STOPPED)
        consumer_back(rt);
    return 0;
}

/* Replaces old (may be NULL) by a new instance built from spec; keeps the
 * input queue when the subscription is the same. */
static struct spoke_instance *replace_conn(struct runtime *rt, struct spoke_instance *old,
                                           struct conn_spec *spec)
{
    struct spoke_instance *n = inst_new(rt, spec);
    if (!n)
        return NULL;
    if (!old) {
        if (add_conn(rt, n) != 0) {
            inst_free(n);
            return NULL;
        }
        return n;
    }
    inst_halt(old);
    if (old->kind == SPOKE_KIND_SOURCE && n->kind == SPOKE_KIND_SOURCE) {
        /* The new config resumes from the committed offsets too. */
        retire_tracker(old);
        n->replay_src = old->replay_src;
        old->replay_src = NULL;
    }
    /* Swap in place under rt->lock: status, metrics and REST reads see the
     * old instance or the new one, never neither, and the queue moves while
     * no reader can look at it. */
    pthread_mutex_lock(&rt->lock);
    for (size_t i = 0; i < rt->nconns; i++)
        if (rt->conns[i] == old)
            rt->conns[i] = n;
    if (same_inputs(old, n)) {
        n->inq = old->inq; /* keep what is queued for it */
        old->inq = NULL;
    }
    pthread_mutex_unlock(&rt->lock);
    inst_free(old);
    return n;
}

/* Bridges created by bridge_sync, to launch (see below). */
struct bridge_list {
    struct spoke_instance **v;
    size_t n;
};
static void bridge_sync(struct runtime *rt, struct bridge_list *out);
static void bridge_launch(struct bridge_list *b);

int rt_put(struct runtime *rt, const char *name, json_t *config, enum conn_target target,
           int *created, struct buf *errs)
{
    struct desired d = { .path = "request", .target = target, .from_rest = 1 };
    if (section_from_json(name, config, &d.sec, errs) != 0)
        return -1;
    pthread_mutex_lock(&rt->lock);
    struct spoke_instance *old = rt_find_locked(rt, name);
    pthread_mutex_unlock(&rt->lock);
    if (old && old->bridge_of) {
        buf_printf(errs, "connector '%s' is managed by the Kafka-backed topic '%s' "
                   "(connectors.yaml, topics section): it cannot be changed over REST\n", name,
                   old->bridge_of);
        section_clear(&d.sec);
        return -1;
    }
    /* Keep the link to the file's entry, so the precedence rule holds. */
    const char *fp = old ? old->file_fp
                         : json_string_value(json_object_get(
                               json_object_get(json_object_get(rt->persisted, "connectors"), name),
                               "file_fingerprint"));
    d.file_fp = fp ? strdup(fp) : NULL;
    registry_scan(rt->reg, (const char *const *)rt->ws.plugin_path, rt->ws.npath);
    struct conn_spec spec;
    if (check_desired(rt, &d, 1, &spec, errs, 1) != 0) {
        spec_clear(&spec);
        section_clear(&d.sec);
        free(d.file_fp);
        return -1;
    }
    *created = old == NULL;
    if (old && strcmp(old->fingerprint, spec.fingerprint) == 0) {
        /* Same config: only the target may change. */
        spec_clear(&spec);
        rt_set_target(rt, old, target, 0);
        persist_record(rt, old);
    } else {
        struct spoke_instance *n = replace_conn(rt, old, &spec);
        spec_clear(&spec);
        if (!n) {
            buf_puts(errs, "out of memory\n");
            section_clear(&d.sec);
            free(d.file_fp);
            return -1;
        }
        n->from_rest = 1;
        struct bridge_list bridges = { 0 };
        bridge_sync(rt, &bridges);
        inst_start(n);
        bridge_launch(&bridges);
        if (n->kind != SPOKE_KIND_SOURCE && n->target != TARGET_STOPPED)
            consumer_back(rt);
        persist_record(rt, n);
        LOG_I(name, "%s over REST", *created ? "created" : "reconfigured");
    }
    section_clear(&d.sec);
    free(d.file_fp);
    hk_kick(rt);
    return 0;
}

int rt_delete(struct runtime *rt, const char *name)
{
    pthread_mutex_lock(&rt->lock);
    struct spoke_instance *inst = rt_find_locked(rt, name);
    pthread_mutex_unlock(&rt->lock);
    pthread_mutex_lock(&rt->skipped_lock);
    int skipped = !inst && json_object_get(rt->skipped, name) != NULL;
    pthread_mutex_unlock(&rt->skipped_lock);
    if (skipped) {
        /* A stored connector that no longer validates: forgotten, as if it
         * had run (a file connector's REST changes become a deletion). */
        json_t *e = json_object_get(json_object_get(rt->persisted, "connectors"), name);
        persist_delete(rt, name, json_string_value(json_object_get(e, "file_fingerprint")));
        LOG_I(name, "deleted over REST (its stored config was not started)");
        return 0;
    }
    if (!inst)
        return -1;
    if (inst->bridge_of) {
        LOG_W(name, "DELETE refused: managed by the Kafka-backed topic '%s'", inst->bridge_of);
        return -2;
    }
    inst_halt(inst);
    remove_conn(rt, inst);
    persist_delete(rt, name, inst->file_fp);
    LOG_I(name, "deleted over REST");
    inst_free(inst);
    struct bridge_list bridges = { 0 };
    bridge_sync(rt, &bridges);
    bridge_launch(&bridges);
    /* A FAILED one blocked its sources' commits: they replay, and the
     * consumers that had those records skip what they processed. */
    consumer_back(rt);
    hk_kick(rt);
    return 0;
}

/* Loads the file and applies it with the REST state: at start (rt has no
 * connectors) or on reload (a diff: only changed connectors restart). */
/* ---- Kafka-backed topics ----
 *
 * A topic declared `backend: kafka` lives in Kafka. The host wires it with
 * managed connectors ("bridges") of the kafka_sink and kafka_source
 * plugins, so the Kafka path is the plugins' own code:
 *  - kafka-out.<T>: a kafka_sink reading the in-memory topic T (everything a
 *    connector writes to T) and producing it to Kafka topic T; sources are
 *    acknowledged only once Kafka has their records.
 *  - kafka-in.<C>.<T>: for each connector C reading T, a kafka_source in
 *    consumer group "spoke-<C>" feeding C's private route "T#C"; offsets are
 *    committed to Kafka once C has delivered (or snapshotted) the records.
 * So every reader gets every record, and several Spoke processes running
 * the same connector share its partitions through the group.
 */
static size_t check_kafka_topics(struct runtime *rt, const struct cfg_file *f, int at_start,
                                 struct buf *errs)
{
    size_t nerr = 0, nk = 0;
    struct ktopic *kt = calloc(f->ntopics + 1, sizeof(*kt));
    if (!kt) {
        buf_puts(errs, "out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < f->ntopics; i++) {
        struct spoke_config *tc = NULL;
        struct cfgval_errors ce = { 0 };
        if (cfgval_validate(conncfg_topic_fields, NULL, f->topics[i].kv, f->topics[i].nkv, &tc,
                            NULL, &ce) != 0) {
            cfgval_errors_free(&ce);
            continue; /* check_topics reported it */
        }
        if (strcmp(cfgval_string(tc, "backend"), "kafka") == 0) {
            kt[nk].name = intern_str(f->topics[i].name);
            kt[nk].partitions = (int)cfgval_int(tc, "partitions");
            kt[nk].replication = (int)cfgval_int(tc, "replication.factor");
            kt[nk].create = cfgval_bool(tc, "create");
            nk++;
        }
        cfgval_free(tc);
    }
    if (nk && (!registry_find(rt->reg, "kafka_sink") || !registry_find(rt->reg, "kafka_source"))) {
        buf_printf(errs, "%s: topics with `backend: kafka` need the kafka_sink and kafka_source "
                   "plugins in plugin.path\n", f->path);
        nerr++;
    }
    int same = nk == rt->nktopics;
    for (size_t i = 0; same && i < nk; i++)
        same = kt[i].name == rt->ktopics[i].name && kt[i].partitions == rt->ktopics[i].partitions &&
               kt[i].replication == rt->ktopics[i].replication && kt[i].create == rt->ktopics[i].create;
    if (nerr || (!at_start && !same)) {
        if (!nerr)
            LOG_W(NULL, "%s: changes to Kafka-backed topics apply at the next start", f->path);
        free(kt);
        return nerr;
    }
    if (at_start) {
        free(rt->ktopics);
        rt->ktopics = kt;
        rt->nktopics = nk;
    } else {
        free(kt);
    }
    return 0;
}

/* Adds the bridge config for `name` to need (an object name -> config). */
static void bridge_need(json_t *need, const char *name, json_t *config)
{
    if (config && !json_object_get(need, name))
        json_object_set_new(need, name, config);
    else
        json_decref(config);
}

static json_t *bridge_producer_config(const struct ktopic *kt)
{
    char parts[16], repl[16];
    snprintf(parts, sizeof(parts), "%d", kt->partitions);
    snprintf(repl, sizeof(repl), "%d", kt->replication);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "connector.class", "kafka_sink", "topics",
                     kt->name, "target.topic", kt->name, "topic.create",
                     kt->create ? "true" : "false", "topic.partitions", parts,
                     "topic.replication.factor", repl);
}

static json_t *bridge_consumer_config(const struct ktopic *kt, const char *reader)
{
    char group[300];
    snprintf(group, sizeof(group), "spoke-%s", reader);
    return json_pack("{s:s,s:s,s:s,s:s,s:s}", "connector.class", "kafka_source", "topic",
                     kt->name, "source.topics", kt->name, "group.id", group, "value.format",
                     "bytes");
}

/* Brings the bridges in line with the connectors: stops the ones nobody
 * needs, creates the missing ones and subscribes their queues. Their tasks
 * start only after the connectors they feed have their queues (a record
 * routed nowhere is discarded): the caller launches them with bridge_launch
 * once its own connectors are prepared. Caller holds ctl_lock. */
static void bridge_launch(struct bridge_list *b)
{
    for (size_t k = 0; k < b->n; k++)
        inst_start(b->v[k]);
    free(b->v);
    b->v = NULL;
    b->n = 0;
}

static void bridge_sync(struct runtime *rt, struct bridge_list *out)
{
    size_t n;
    struct spoke_instance **all = conns_copy(rt, &n);
    if (n && !all) {
        LOG_E(NULL, "out of memory wiring Kafka-backed topics");
        return;
    }
    json_t *need = json_object(), *routes = json_object(), *owner = json_object();
    for (size_t i = 0; need && i < n; i++) {
        struct spoke_instance *c = all[i];
        if (c->bridge_of)
            continue;
        for (size_t k = 0; k < rt->nktopics; k++) {
            const struct ktopic *kt = &rt->ktopics[k];
            if (c->out_topic == kt->name || c->dlq_topic == kt->name) {
                char name[300];
                snprintf(name, sizeof(name), "kafka-out.%s", kt->name);
                bridge_need(need, name, bridge_producer_config(kt));
                json_object_set_new(owner, name, json_string(kt->name));
            }
        }
        for (size_t a = 0; a < c->nalias; a++) {
            const struct ktopic *kt = rt_ktopic(rt, c->alias_to[a]);
            char name[600];
            snprintf(name, sizeof(name), "kafka-in.%s.%s", c->name, kt->name);
            bridge_need(need, name, bridge_consumer_config(kt, c->name));
            json_object_set_new(routes, name, json_string(c->alias_from[a]));
            json_object_set_new(owner, name, json_string(kt->name));
        }
    }
    /* Stop the bridges no longer needed. */
    for (size_t i = 0; i < n; i++) {
        if (!all[i]->bridge_of || json_object_get(need, all[i]->name))
            continue;
        inst_halt(all[i]);
        remove_conn(rt, all[i]);
        LOG_I(all[i]->name, "Kafka bridge no longer needed: stopped");
        inst_free(all[i]);
    }
    free(all);
    struct spoke_instance **fresh = calloc(json_object_size(need) + 1, sizeof(*fresh));
    size_t nfresh = 0;
    const char *name;
    json_t *config;
    json_object_foreach(need, name, config) {
        if (!fresh)
            break;
        struct desired d = { .path = "topics", .target = TARGET_RUNNING };
        struct buf errs = BUF_INIT;
        struct conn_spec spec;
        if (section_from_json(name, config, &d.sec, &errs) != 0 ||
            check_desired(rt, &d, 1, &spec, &errs, 1) != 0) {
            LOG_E(name, "cannot start the Kafka bridge: %s", errs.p ? errs.p : "out of memory");
            spec_clear(&spec);
            section_clear(&d.sec);
            buf_free(&errs);
            continue;
        }
        buf_free(&errs);
        pthread_mutex_lock(&rt->lock);
        struct spoke_instance *o = rt_find_locked(rt, name);
        pthread_mutex_unlock(&rt->lock);
        if (o && !o->bridge_of) {
            LOG_E(name, "a connector has the name the Kafka bridge needs: bridge not started");
            spec_clear(&spec);
            section_clear(&d.sec);
            continue;
        }
        if (o && strcmp(o->fingerprint, spec.fingerprint) == 0) {
            spec_clear(&spec);
            section_clear(&d.sec);
            continue;
        }
        spec.bridge_of = intern_str(json_string_value(json_object_get(owner, name)));
        struct spoke_instance *x = replace_conn(rt, o, &spec); /* spec.name is d.sec's */
        spec_clear(&spec);
        section_clear(&d.sec);
        if (!x) {
            LOG_E(name, "out of memory: Kafka bridge not started");
            continue;
        }
        const char *route = json_string_value(json_object_get(routes, name));
        if (route)
            x->out_topic = intern_str(route);
        fresh[nfresh++] = x;
    }
    for (size_t k = 0; k < nfresh; k++)
        inst_prepare(fresh[k]);
    out->v = fresh;
    out->n = nfresh;
    json_decref(need);
    json_decref(routes);
    json_decref(owner);
}

static int apply_file(struct runtime *rt, struct buf *errs, int at_start)
{
    char err[512];
    struct cfg_file *f = NULL;
    struct worker_settings ws = { 0 };
    struct desired *d = NULL;
    size_t n = 0;
    struct conn_spec *specs = NULL;
    int rc = -1;
    if (yamlcfg_load(rt->config_path, &f, err, sizeof(err)) != 0) {
        buf_printf(errs, "%s\n", err);
        return -1;
    }
    size_t nerr = (size_t)load_worker(f, &rt->opts, &ws, errs);
    if (nerr)
        goto out;
    registry_scan(rt->reg, (const char *const *)ws.plugin_path, ws.npath);
    nerr += check_topics(f, errs);
    if (!nerr)
        nerr += check_kafka_topics(rt, f, at_start, errs);
    if (at_start) {
        rt->ws = ws;
        memset(&ws, 0, sizeof(ws));
        log_set_level(rt->ws.log_level);
        snprintf(rt->snap_dir, sizeof(rt->snap_dir), "%s/snapshots", rt->ws.state_dir);
        snprintf(rt->offsets_path, sizeof(rt->offsets_path), "%s/offsets.json", rt->ws.state_dir);
        snprintf(rt->status_path, sizeof(rt->status_path), "%s/status.json", rt->ws.state_dir);
        snprintf(rt->persist_path, sizeof(rt->persist_path), "%s/connectors.json",
                 rt->ws.state_dir);
        if (mkdir_p(rt->snap_dir, err, sizeof(err)) != 0) {
            buf_printf(errs, "state.dir: %s\n", err);
            goto out;
        }
        if (!(rt->offsets = offsets_open(rt->offsets_path, err, sizeof(err))) ||
            !(rt->persisted = persist_load(rt->persist_path, err, sizeof(err)))) {
            buf_printf(errs, "%s\n", err);
            goto out;
        }
    } else {
        if (ws.log_level != rt->ws.log_level) {
            log_set_level(ws.log_level);
            rt->ws.log_level = ws.log_level;
        }
        if (strcmp(ws.state_dir, rt->ws.state_dir) != 0 || ws.npath != rt->ws.npath ||
            strcmp(ws.listeners, rt->ws.listeners) != 0 || ws.tasks_batch != rt->ws.tasks_batch)
            LOG_W(NULL, "worker settings other than log.level apply at the next start");
    }
    if (nerr)
        goto out;
    if (build_desired(rt, f, &d, &n) != 0 || !(specs = calloc(n + 1, sizeof(*specs)))) {
        buf_puts(errs, "out of memory\n");
        goto out;
    }
    if (check_desired(rt, d, n, specs, errs, 0) != 0)
        goto out;
    declare_topics(rt, f);

    size_t kept = 0, stopped = 0, started = 0;
    struct spoke_instance **fresh = calloc(n + 1, sizeof(*fresh));
    size_t nfresh = 0;
    if (!fresh) {
        buf_puts(errs, "out of memory\n");
        goto out;
    }
    /* Connectors no longer wanted stop first. */
    size_t nold;
    struct spoke_instance **old = conns_copy(rt, &nold);
    for (size_t i = 0; old && i < nold; i++) {
        int wanted = old[i]->bridge_of != NULL; /* bridge_sync's business */
        for (size_t j = 0; j < n; j++)
            wanted |= specs[j].name && strcmp(specs[j].name, old[i]->name) == 0;
        if (!wanted) {
            inst_halt(old[i]);
            remove_conn(rt, old[i]);
            LOG_I(old[i]->name, "removed from the config: stopped");
            inst_free(old[i]);
            stopped++;
        }
    }
    free(old);
    for (size_t j = 0; j < n; j++) {
        if (!specs[j].name)
            continue;
        pthread_mutex_lock(&rt->lock);
        struct spoke_instance *o = rt_find_locked(rt, specs[j].name);
        pthread_mutex_unlock(&rt->lock);
        if (o && strcmp(o->fingerprint, specs[j].fingerprint) == 0) {
            kept++;
            if (o->target != specs[j].target)
                rt_set_target(rt, o, specs[j].target, 0);
            continue;
        }
        if (o) {
            LOG_I(o->name, "config changed: restarting");
            stopped++;
        }
        struct spoke_instance *x = replace_conn(rt, o, &specs[j]);
        if (!x) {
            LOG_E(specs[j].name, "out of memory: connector not started");
            continue;
        }
        fresh[nfresh++] = x;
    }
    /* Every queue, the Kafka bridges' included, exists before any new task
     * runs. */
    struct bridge_list bridges = { 0 };
    bridge_sync(rt, &bridges);
    for (size_t k = 0; k < nfresh; k++)
        if (fresh[k]->target != TARGET_STOPPED)
            inst_prepare(fresh[k]);
    for (size_t k = 0; k < nfresh; k++) {
        inst_start(fresh[k]);
        started++;
    }
    free(fresh);
    bridge_launch(&bridges);
    if (at_start)
        LOG_I(NULL, "spoke %s started: %zu connectors from %s and %s, %zu plugins, state in %s",
              SPOKE_VERSION, rt->nconns, rt->config_path, rt->persist_path, rt->reg->nplugins,
              rt->ws.state_dir);
    else
        LOG_I(NULL, "reloaded: %zu unchanged, %zu stopped, %zu started", kept, stopped, started);
    if (!at_start && (stopped || started))
        consumer_back(rt); /* a consumer replaced or removed may have FAILED */
    rc = 0;
out:
    for (size_t j = 0; specs && j < n; j++)
        spec_clear(&specs[j]);
    free(specs);
    desired_free(d, n);
    worker_settings_free(&ws);
    yamlcfg_free(f);
    return rc;
}

struct runtime *runtime_start(const struct runtime_opts *opts, struct buf *errs)
{
    struct runtime *rt = calloc(1, sizeof(*rt));
    if (!rt) {
        buf_puts(errs, "out of memory\n");
        return NULL;
    }
    rt->started_ms = clock_mono_ms();
    rt->started_wall_ms = clock_wall_ms();
    rt->opts = *opts;
    rt->config_path = strdup(opts->config_path);
    pthread_mutex_init(&rt->lock, NULL);
    pthread_mutex_init(&rt->skipped_lock, NULL);
    pthread_mutex_init(&rt->ctl_lock, NULL);
    pthread_mutex_init(&rt->hk_lock, NULL);
    clock_cond_init(&rt->hk_cond);
    rt->reg = registry_new();
    rt->router = router_new();
    if (!rt->config_path || !rt->reg || !rt->router) {
        buf_puts(errs, "out of memory\n");
        goto fail;
    }
    /* Before any task starts: each thread decides once. */
    recycle_enable(cpubudget() == 1);
    pthread_mutex_lock(&rt->ctl_lock);
    int rc = apply_file(rt, errs, 1);
    if (rc == 0 && pthread_create(&rt->hk_thread, NULL, hk_thread, rt) != 0) {
        buf_puts(errs, "cannot create the housekeeping thread\n");
        rc = -1;
    }
    pthread_mutex_unlock(&rt->ctl_lock);
    if (rc == 0) {
        if (cpubudget() == 1)
            LOG_I(NULL, "one CPU to run on (%d in the affinity mask, cgroup quota %d): "
                  "connectors that do not set them get queue.capacity %d and batch.max %d%s; "
                  "record and row memory is recycled between task threads",
                  cpubudget_affinity(), cpubudget_quota(""), CONNCFG_QUEUE_CAPACITY_ONE_CPU,
                  CONNCFG_BATCH_MAX_ONE_CPU,
                  rt->ws.tasks_batch ? "; task threads run SCHED_BATCH" : "");
        return rt;
    }
    /* Tasks that started must stop before anything is freed. */
    rt->stopping = 1;
    for (size_t i = 0; i < rt->nconns; i++)
        inst_halt(rt->conns[i]);
    router_abort(rt->router);
    for (size_t i = 0; i < rt->nconns; i++)
        inst_free(rt->conns[i]);
fail:
    json_decref(rt->persisted);
    json_decref(rt->skipped);
    offsets_close(rt->offsets);
    router_free(rt->router);
    registry_free(rt->reg);
    worker_settings_free(&rt->ws);
    free(rt->conns);
    free(rt->ktopics);
    free(rt->config_path);
    free(rt);
    return NULL;
}

int runtime_reload(struct runtime *rt)
{
    struct buf errs = BUF_INIT;
    LOG_I(NULL, "reloading %s", rt->config_path);
    pthread_mutex_lock(&rt->ctl_lock);
    int rc = apply_file(rt, &errs, 0);
    pthread_mutex_unlock(&rt->ctl_lock);
    if (rc != 0)
        LOG_E(NULL, "reload refused, running config unchanged:\n%s", errs.p ? errs.p : "");
    buf_free(&errs);
    hk_kick(rt);
    return rc;
}

void runtime_shutdown(struct runtime *rt)
{
    if (!rt)
        return;
    pthread_mutex_lock(&rt->ctl_lock);
    int64_t deadline = clock_mono_ms() + rt->ws.shutdown_timeout_ms;
    rt->stopping = 1;
    LOG_I(NULL, "shutting down: stopping sources, draining in-flight records (timeout %lld ms)",
          rt->ws.shutdown_timeout_ms);
    /* 0. Paused and stopped transforms and sinks cannot drain: what is queued
     * for them is abandoned now (not committed: replayed after the restart),
     * so the pipeline can go quiet. */
    for (size_t i = 0; i < rt->nconns; i++) {
        struct spoke_instance *inst = rt->conns[i];
        if (inst->kind == SPOKE_KIND_SOURCE || inst->target == TARGET_RUNNING)
            continue;
        inst_request_stop(inst);
        if (inst->inq) {
            size_t n = rqueue_set_discard(inst->inq, 1);
            if (n)
                LOG_I(inst->name, "%s: %zu queued records left for replay after the restart",
                      rt_target_name(inst->target), n);
        }
    }
    /* 1. Sources stop producing; each waits for its records to be delivered. */
    for (size_t i = 0; i < rt->nconns; i++)
        if (rt->conns[i]->kind == SPOKE_KIND_SOURCE)
            inst_request_stop(rt->conns[i]);
    for (size_t i = 0; i < rt->nconns; i++)
        if (rt->conns[i]->kind == SPOKE_KIND_SOURCE)
            inst_join(rt->conns[i], deadline);
    /* 2. Everything still queued flows through to the sinks. */
    if (!router_wait_quiet(rt->router, deadline)) {
        LOG_W(NULL, "shutdown timeout: %lld records or batches still in flight are abandoned "
              "and will be replayed from committed offsets", (long long)router_active(rt->router));
        router_abort(rt->router);
    }
    /* 3. Consumers see closed queues, flush, snapshot and stop. */
    for (size_t i = 0; i < rt->nconns; i++) {
        struct spoke_instance *inst = rt->conns[i];
        if (inst->kind != SPOKE_KIND_SOURCE) {
            inst->draining = 1;
            if (inst->inq)
                rqueue_close(inst->inq);
            pthread_mutex_lock(&inst->lock);
            pthread_cond_broadcast(&inst->cond);
            pthread_mutex_unlock(&inst->lock);
        }
    }
    for (size_t i = 0; i < rt->nconns; i++)
        inst_join(rt->conns[i], deadline + 1000);
    /* 4. Final offsets and status. */
    pthread_mutex_lock(&rt->hk_lock);
    rt->hk_stop = 1;
    pthread_cond_signal(&rt->hk_cond);
    pthread_mutex_unlock(&rt->hk_lock);
    pthread_join(rt->hk_thread, NULL);
    commit_offsets(rt);
    write_status(rt);
    for (size_t i = 0; i < rt->nconns; i++)
        inst_free(rt->conns[i]);
    free(rt->conns);
    router_free(rt->router);
    offsets_close(rt->offsets);
    registry_free(rt->reg);
    worker_settings_free(&rt->ws);
    free(rt->config_path);
    json_decref(rt->persisted);
    json_decref(rt->skipped);
    pthread_mutex_unlock(&rt->ctl_lock);
    pthread_mutex_destroy(&rt->ctl_lock);
    pthread_mutex_destroy(&rt->lock);
    pthread_mutex_destroy(&rt->skipped_lock);
    pthread_mutex_destroy(&rt->hk_lock);
    pthread_cond_destroy(&rt->hk_cond);
    LOG_I(NULL, "stopped");
    free(rt->ktopics);
    free(rt);
}
