/*
 * aggregator_spec.c - reads and checks the aggregator's configuration.
 *
 * The host has already checked types, bounds and allowed values against the
 * config table; what is checked here is what a table cannot say: the
 * aggregate syntax (`name=function(field)`), which keys go together (table
 * semantics needs entity.key, hopping windows need window.advance.ms, ...),
 * and that every output column name is unique. Every error names the key
 * and, for lists, the item.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator.h"

static const struct {
    const char *name;
    enum agg_fn fn;
} fn_names[] = {
    { "count", AGG_FN_COUNT },       { "sum", AGG_FN_SUM },
    { "avg", AGG_FN_AVG },           { "min", AGG_FN_MIN },
    { "max", AGG_FN_MAX },           { "variance", AGG_FN_VARIANCE },
    { "stddev", AGG_FN_STDDEV },     { "var_pop", AGG_FN_VAR_POP },
    { "stddev_pop", AGG_FN_STDDEV_POP }, { "first", AGG_FN_FIRST },
    { "last", AGG_FN_LAST },
};
#define NFN (sizeof(fn_names) / sizeof(fn_names[0]))

const char *agg_fn_name(enum agg_fn fn)
{
    for (size_t i = 0; i < NFN; i++)
        if (fn_names[i].fn == fn)
            return fn_names[i].name;
    return "?";
}

const char *agg_type_name(int type)
{
    switch (type) {
    case SPOKE_TYPE_NULL: return "null";
    case SPOKE_TYPE_BOOL: return "BOOL";
    case SPOKE_TYPE_INT: return "INT";
    case SPOKE_TYPE_DOUBLE: return "DOUBLE";
    case SPOKE_TYPE_STRING: return "STRING";
    case SPOKE_TYPE_TIMESTAMP: return "TIMESTAMP";
    case SPOKE_TYPE_LIST: return "LIST";
    case SPOKE_TYPE_MAP: return "MAP";
    }
    return "?";
}

/* Types an aggregate accepts for its field. */
static unsigned fn_types(enum agg_fn fn)
{
    switch (fn) {
    case AGG_FN_COUNT:
    case AGG_FN_FIRST:
    case AGG_FN_LAST:
        return AGG_SCALAR_TYPES;
    case AGG_FN_MIN:
    case AGG_FN_MAX:
        return AGG_NUM_TYPES | AGG_T(SPOKE_TYPE_TIMESTAMP);
    default:
        return AGG_NUM_TYPES;
    }
}

static void types_text(unsigned mask, char *out, size_t outsz)
{
    size_t n = 0;
    out[0] = '\0';
    for (int t = SPOKE_TYPE_BOOL; t <= SPOKE_TYPE_MAP; t++) {
        if (!(mask & AGG_T(t)))
            continue;
        int w = snprintf(out + n, outsz - n, "%s%s", n ? ", " : "", agg_type_name(t));
        if (w < 0 || (size_t)w >= outsz - n)
            break;
        n += (size_t)w;
    }
}

static const char *role_text(unsigned role)
{
    switch (role) {
    case AGG_ROLE_GROUP: return "group.by";
    case AGG_ROLE_ENTITY: return "entity.key";
    case AGG_ROLE_TIME: return "time.field";
    default: return "an aggregate";
    }
}

/* The config key that gives a field a role. */
static const char *role_key(unsigned role)
{
    return role == AGG_ROLE_VALUE ? "aggregates" : role_text(role);
}

/* Finds or adds the input field `name` with a role; returns its index, or
 * -1 with the problem in pr, at the key of the role, its message after
 * `what` (the item it comes from, or ""). */
static int add_field(struct agg_state *st, const char *name, unsigned role, unsigned types,
                     struct problems *pr, const char *what)
{
    size_t len = strlen(name);
    if (len == 0 || len > AGG_MAX_NAME) {
        problem(pr, role_key(role), "%s%s: field name '%.80s' must be 1 to %d bytes", what,
                role_text(role), name, AGG_MAX_NAME);
        return -1;
    }
    size_t i;
    for (i = 0; i < st->nfields; i++)
        if (strcmp(st->fields[i].name, name) == 0)
            break;
    if (i == st->nfields) {
        struct agg_field *f = realloc(st->fields, (st->nfields + 1) * sizeof(*f));
        if (!f) {
            problem(pr, NULL, "out of memory");
            return -1;
        }
        st->fields = f;
        memset(&f[i], 0, sizeof(f[i]));
        memcpy(f[i].name, name, len + 1);
        f[i].allowed = AGG_SCALAR_TYPES;
        f[i].type = SPOKE_TYPE_NULL;
        f[i].vslot = -1;
        st->nfields++;
    }
    struct agg_field *f = &st->fields[i];
    if ((f->allowed & types) == 0) {
        char a[96], b[96];
        types_text(f->allowed, a, sizeof(a));
        types_text(types, b, sizeof(b));
        problem(pr, role_key(role), "%sfield '%s' cannot be both used as it is elsewhere (%s) "
                "and by %s (%s): no type fits both", what, name, a, role_text(role), b);
        return -1;
    }
    f->allowed &= types;
    f->roles |= role;
    return (int)i;
}

static char *trim(char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Output column names end up as row fields, console headers and table
 * columns downstream: keep them to identifiers. */
static int column_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > AGG_MAX_NAME || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return 0;
    return 1;
}

/* Parses one `name=function(field)` item. */
static int parse_aggregate(struct agg_state *st, size_t item, const char *text,
                           struct agg_spec *a, struct problems *pr)
{
    char buf[512];
    if (strlen(text) >= sizeof(buf)) {
        problem(pr, "aggregates", "aggregates item %zu is longer than %zu bytes", item + 1,
                sizeof(buf) - 1);
        return -1;
    }
    strcpy(buf, text);
#define BAD(...)                                                                             \
    do {                                                                                     \
        char why_[200];                                                                      \
        snprintf(why_, sizeof(why_), __VA_ARGS__);                                           \
        problem(pr, "aggregates", "aggregates item %zu '%.60s': %s", item + 1, text, why_);  \
        return -1;                                                                           \
    } while (0)
    char *eq = strchr(buf, '=');
    if (!eq)
        BAD("expected name=function(field), e.g. total=sum(num_bikes_available)");
    *eq = '\0';
    char *name = trim(buf), *rhs = trim(eq + 1);
    if (!column_name_ok(name))
        BAD("column name '%.40s' must be a letter or _ followed by letters, digits or _ "
            "(at most %d)", name, AGG_MAX_NAME);
    char *open = strchr(rhs, '(');
    if (!open)
        BAD("expected function(field) after '=', e.g. sum(num_bikes_available)");
    char *close = strrchr(rhs, ')');
    if (!close || close < open)
        BAD("missing ')' after the field name");
    if (*trim(close + 1) != '\0')
        BAD("unexpected text after ')'");
    *open = '\0';
    *close = '\0';
    char *fname = trim(rhs), *arg = trim(open + 1);
    size_t k;
    for (k = 0; k < NFN; k++)
        if (strcasecmp(fn_names[k].name, fname) == 0)
            break;
    if (k == NFN)
        BAD("unknown function '%.30s' (known: count, sum, avg, min, max, variance, stddev, "
            "var_pop, stddev_pop, first, last)", fname);
    if (strpbrk(arg, "()=,"))
        BAD("the field name may not hold '(', ')', '=' or ','");
    memset(a, 0, sizeof(*a));
    memcpy(a->name, name, strlen(name) + 1);
    a->fn = fn_names[k].fn;
    a->field = -1;
    a->mset = -1;
    if (arg[0] == '\0' || strcmp(arg, "*") == 0) {
        if (a->fn != AGG_FN_COUNT)
            BAD("%s() needs a field, e.g. %s(num_bikes_available)", fn_names[k].name,
                fn_names[k].name);
        return 0;
    }
    char what[48];
    snprintf(what, sizeof(what), "aggregates item %zu: ", item + 1);
    int fi = add_field(st, arg, AGG_ROLE_VALUE, fn_types(a->fn), pr, what);
    if (fi < 0)
        return -1;
    a->field = fi;
    return 0;
#undef BAD
}

static int lookup_choice(const char *v, const char *const *names, int dflt)
{
    if (!v)
        return dflt;
    for (int i = 0; names[i]; i++)
        if (strcmp(v, names[i]) == 0)
            return i;
    return dflt;
}

static int key_set(const struct spoke_config *cfg, const struct spoke_host_api *api,
                   const char *key)
{
    return api->config_string(cfg, key) != NULL;
}

/* Appends to the canonical text (what a snapshot must agree with). */
static int canon_add(char **canon, size_t *len, const char *fmt, ...) SPOKE_PRINTF(3, 4);

static int canon_add(char **canon, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    char *p = realloc(*canon, *len + (size_t)n + 1);
    if (!p)
        return -1;
    va_start(ap, fmt);
    vsnprintf(p + *len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    *canon = p;
    *len += (size_t)n;
    return 0;
}

static int key_list(struct agg_state *st, const struct spoke_config *cfg, const char *key,
                    unsigned role, int *out, size_t *nout, struct problems *pr)
{
    const struct spoke_host_api *api = st->api;
    const char *const *items = NULL;
    size_t n = api->config_list(cfg, key, &items);
    if (n > AGG_MAX_KEY_FIELDS) {
        problem(pr, key, "%s: at most %d fields", key, AGG_MAX_KEY_FIELDS);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < i; j++)
            if (strcmp(items[i], items[j]) == 0) {
                problem(pr, key, "%s: field '%.64s' is listed twice", key, items[i]);
                return -1;
            }
        int fi = add_field(st, items[i], role, AGG_KEY_TYPES, pr, "");
        if (fi < 0)
            return -1;
        out[i] = fi;
    }
    *nout = n;
    return 0;
}

static const char *const semantics[] = { "stream", "table", NULL };
static const char *const windows[] = { "none", "tumbling", "hopping", NULL };
static const char *const times[] = { "processing", "event", NULL };
static const char *const emits[] = { "update", "complete", "final", NULL };

/* Every rule between keys, each problem at its key in pr (a problem found
 * does not hide the others: a check lists them all). A rule whose input
 * was itself refused is skipped, so that one mistake gives one problem.
 * SPOKE_OK (problems or not), or SPOKE_ERR_NOMEM. */
static int configure_rules(struct agg_state *st, const struct spoke_config *cfg,
                           struct problems *pr)
{
    const struct spoke_host_api *api = st->api;

    st->semantics = (enum agg_semantics)lookup_choice(api->config_string(cfg, "semantics"),
                                                      semantics, 0);
    st->window = (enum agg_window_kind)lookup_choice(api->config_string(cfg, "window"),
                                                     windows, 0);
    st->emit = (enum agg_emit)lookup_choice(api->config_string(cfg, "emit"), emits, 0);
    st->tfield = -1;

    /* Keys first, then values: a field's roles decide its allowed types. */
    int group_ok = key_list(st, cfg, "group.by", AGG_ROLE_GROUP, st->gfields, &st->ngf, pr) == 0;
    int entity_ok =
        key_list(st, cfg, "entity.key", AGG_ROLE_ENTITY, st->efields, &st->nef, pr) == 0;
    const char *nulls = api->config_string(cfg, "group.by.nulls");
    st->null_groups = nulls && strcmp(nulls, "group") == 0;
    if (st->null_groups && st->ngf == 0 && group_ok)
        problem(pr, "group.by.nulls", "group.by.nulls: group needs group.by (the fields whose "
                "nulls form a group)");
    /* One plain value is its own record key; several, or a null among
     * them, need escaping for two groups never to share a key. */
    st->key_escape = st->ngf > 1 || st->null_groups;
    if (st->semantics == AGG_TABLE && st->nef == 0 && entity_ok)
        problem(pr, "semantics", "semantics table needs entity.key: the field(s) naming the "
                "entity whose latest record counts (e.g. stationCode)");
    if (st->semantics == AGG_STREAM && st->nef > 0)
        problem(pr, "entity.key", "entity.key is only used with semantics: table (each record "
                "of a stream counts; set semantics: table to replace per entity)");

    const char *tfield = api->config_string(cfg, "time.field");
    const char *tmode = api->config_string(cfg, "time");
    st->time = tmode ? (enum agg_time)lookup_choice(tmode, times, 0)
                     : (tfield ? AGG_TIME_EVENT : AGG_TIME_PROCESSING);
    if (st->time == AGG_TIME_EVENT && !tfield)
        problem(pr, "time", "time: event needs time.field (a TIMESTAMP field, or an INT field "
                "of epoch milliseconds)");
    if (st->time == AGG_TIME_PROCESSING && tfield)
        problem(pr, "time.field", "time.field '%.64s' is only read with time: event (time is "
                "processing)", tfield);
    const char *order = api->config_string(cfg, "table.order");
    st->order_event = st->time == AGG_TIME_EVENT && (!order || strcmp(order, "event") == 0);
    if (order && st->semantics != AGG_TABLE)
        problem(pr, "table.order", "table.order is only used with semantics: table (which "
                "record of an entity counts)");
    else if (order && st->time != AGG_TIME_EVENT && strcmp(order, "event") == 0)
        problem(pr, "table.order", "table.order: event needs time: event and a time.field (with "
                "processing time the last record to arrive counts)");
    if (tfield && st->time == AGG_TIME_EVENT) {
        st->tfield = add_field(st, tfield, AGG_ROLE_TIME,
                               AGG_T(SPOKE_TYPE_INT) | AGG_T(SPOKE_TYPE_TIMESTAMP), pr, "");
    }

    /* Windows: the first problem of the window keys. */
    int size_set = key_set(cfg, api, "window.size.ms");
    int adv_set = key_set(cfg, api, "window.advance.ms");
    st->size_ms = api->config_int(cfg, "window.size.ms");
    st->advance_ms = api->config_int(cfg, "window.advance.ms");
    st->lateness_ms = api->config_int(cfg, "allowed.lateness.ms");
    if (st->window == AGG_WIN_NONE) {
        if (size_set || adv_set)
            problem(pr, size_set ? "window.size.ms" : "window.advance.ms",
                    "%s needs window: tumbling or hopping (window is none)",
                    size_set ? "window.size.ms" : "window.advance.ms");
        if (st->lateness_ms > 0)
            problem(pr, "allowed.lateness.ms", "allowed.lateness.ms applies to windows (window "
                    "is none)");
        st->size_ms = st->advance_ms = 0;
    } else if (!size_set || st->size_ms <= 0) {
        problem(pr, size_set ? "window.size.ms" : "window", "window: %s needs window.size.ms",
                st->window == AGG_WIN_TUMBLING ? "tumbling" : "hopping");
    } else if (st->window == AGG_WIN_TUMBLING) {
        if (adv_set && st->advance_ms != st->size_ms)
            problem(pr, "window.advance.ms", "window.advance.ms is for hopping windows "
                    "(tumbling windows advance by window.size.ms)");
        st->advance_ms = st->size_ms;
    } else if (!adv_set || st->advance_ms <= 0) {
        problem(pr, adv_set ? "window.advance.ms" : "window", "window: hopping needs "
                "window.advance.ms (time between window starts)");
    } else if (st->advance_ms > st->size_ms) {
        problem(pr, "window.advance.ms", "window.advance.ms (%lld) must not exceed "
                "window.size.ms (%lld): records between windows would be lost",
                (long long)st->advance_ms, (long long)st->size_ms);
    } else if ((st->size_ms + st->advance_ms - 1) / st->advance_ms > AGG_MAX_WINDOWS_PER_RECORD) {
        problem(pr, "window.size.ms", "window.size.ms / window.advance.ms is above %d windows "
                "per record", AGG_MAX_WINDOWS_PER_RECORD);
    }

    /* Emission. */
    st->interval_ms = api->config_int(cfg, "emit.interval.ms");
    st->emit_on_idle = api->config_bool(cfg, "emit.on.idle");
    if (st->emit_on_idle && st->emit != AGG_EMIT_UPDATE)
        problem(pr, "emit.on.idle", "emit.on.idle is for emit: update (complete and final emit "
                "on their own schedule)");
    else if (st->emit_on_idle && !SPOKE_API_HAS(api, input_backlog))
        problem(pr, "emit.on.idle", "emit.on.idle needs a host that reports its input backlog");
    if (st->emit == AGG_EMIT_FINAL && st->window == AGG_WIN_NONE)
        problem(pr, "emit", "emit: final emits when a window closes: it needs window: tumbling "
                "or hopping");
    if (st->emit == AGG_EMIT_COMPLETE && st->interval_ms <= 0)
        problem(pr, key_set(cfg, api, "emit.interval.ms") ? "emit.interval.ms" : "emit",
                "emit: complete needs emit.interval.ms > 0 (how often the whole table is "
                "emitted)");

    /* Aggregates: each item on its own. */
    const char *const *items = NULL;
    size_t n = api->config_list(cfg, "aggregates", &items);
    int aggs_ok = 0;
    if (n == 0)
        problem(pr, "aggregates", "aggregates: give at least one name=function(field), e.g. "
                "n=count()");
    else if (n > AGG_MAX_AGGS)
        problem(pr, "aggregates", "aggregates: at most %d columns", AGG_MAX_AGGS);
    else if (!(st->aggs = calloc(n, sizeof(*st->aggs))))
        return SPOKE_ERR_NOMEM;
    else
        aggs_ok = 1;
    for (size_t i = 0; aggs_ok && i < n; i++) {
        if (parse_aggregate(st, i, items[i], &st->aggs[st->naggs], pr) < 0)
            continue;
        if (st->aggs[st->naggs].fn == AGG_FN_FIRST || st->aggs[st->naggs].fn == AGG_FN_LAST)
            st->has_firstlast = 1;
        st->naggs++;
    }
    aggs_ok = aggs_ok && st->naggs == n;

    /* Output column names: unique, none of the reserved ones (the first
     * clash found). */
    const char *reserved[3] = { "timestamp", NULL, NULL };
    if (st->window != AGG_WIN_NONE) {
        reserved[1] = "window_start";
        reserved[2] = "window_end";
    }
    int clash = 0;
    for (size_t i = 0; !clash && i < st->ngf + st->naggs; i++) {
        const char *c = i < st->ngf ? st->fields[st->gfields[i]].name
                                    : st->aggs[i - st->ngf].name;
        const char *what = i < st->ngf ? "group.by field" : "aggregate column";
        const char *at = i < st->ngf ? "group.by" : "aggregates";
        for (size_t r = 0; !clash && r < 3; r++)
            if (reserved[r] && strcmp(c, reserved[r]) == 0) {
                problem(pr, at, "%s '%s' clashes with the output column %s: rename it", what, c,
                        reserved[r]);
                clash = 1;
            }
        for (size_t j = 0; !clash && j < i; j++) {
            const char *o = j < st->ngf ? st->fields[st->gfields[j]].name
                                        : st->aggs[j - st->ngf].name;
            if (strcmp(c, o) == 0) {
                problem(pr, at, "output column '%s' appears twice (group.by fields and "
                        "aggregate names share the output row)", c);
                clash = 1;
            }
        }
    }

    /* Top-N. A top.by among aggregates that were refused is not told. */
    const char *top_by = api->config_string(cfg, "top.by");
    st->top_n = api->config_int(cfg, "top.n");
    st->top_desc = strcmp(api->config_string(cfg, "top.order") ? api->config_string(cfg,
                          "top.order") : "desc", "desc") == 0;
    st->top_col = -1;
    if (top_by) {
        for (size_t i = 0; i < st->naggs; i++)
            if (strcmp(st->aggs[i].name, top_by) == 0)
                st->top_col = (int)i;
        if (st->top_col < 0 && aggs_ok)
            problem(pr, "top.by", "top.by '%.64s' is not an aggregate column", top_by);
    }
    if (st->top_n > 0 && !top_by)
        problem(pr, "top.n", "top.n needs top.by (the aggregate column that ranks groups)");
    if ((st->top_n > 0 || top_by) && st->emit == AGG_EMIT_UPDATE)
        problem(pr, top_by ? "top.by" : "top.n", "top.n and top.by apply to emit: complete or "
                "final (emit is update)");
    return SPOKE_OK;
}

int agg_configure_problems(struct agg_state *st, const struct spoke_config *cfg,
                           struct problems *pr, char *err, size_t errsz)
{
    const struct spoke_host_api *api = st->api;

    problems_init(pr);
    if (configure_rules(st, cfg, pr) != SPOKE_OK) {
        snprintf(err, errsz, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    if (problems_count(pr))
        return SPOKE_ERR_INVALID;
    const char *tfield = st->tfield >= 0 ? st->fields[st->tfield].name : NULL;

    st->max_groups = api->config_int(cfg, "max.groups");
    st->max_entities = api->config_int(cfg, "max.entities");

    /* Value slots (what an entity stores) and table min/max multisets. */
    st->vfield = calloc(st->nfields ? st->nfields : 1, sizeof(int));
    st->mset_field = calloc(st->naggs, sizeof(int));
    if (!st->vfield || !st->mset_field) {
        snprintf(err, errsz, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    for (size_t i = 0; i < st->nfields; i++)
        if (st->fields[i].roles & AGG_ROLE_VALUE) {
            st->fields[i].vslot = (int)st->nvals;
            st->vfield[st->nvals++] = (int)i;
            if (st->fields[i].allowed & AGG_T(SPOKE_TYPE_STRING))
                st->has_string_vals = 1;
        }
    if (st->semantics == AGG_TABLE)
        for (size_t i = 0; i < st->naggs; i++) {
            struct agg_spec *a = &st->aggs[i];
            if (a->fn != AGG_FN_MIN && a->fn != AGG_FN_MAX)
                continue;
            for (size_t m = 0; m < st->nmsets; m++)
                if (st->mset_field[m] == a->field)
                    a->mset = (int)m;
            if (a->mset < 0) {
                a->mset = (int)st->nmsets;
                st->mset_field[st->nmsets++] = a->field;
            }
        }

    /* Canonical text of everything that shapes the state. */
    size_t clen = 0;
    int rc = canon_add(&st->canon, &clen, "semantics=%s;group.by=", semantics[st->semantics]);
    for (size_t i = 0; rc == 0 && i < st->ngf; i++)
        rc = canon_add(&st->canon, &clen, "%s%s", i ? "," : "", st->fields[st->gfields[i]].name);
    if (rc == 0)
        rc = canon_add(&st->canon, &clen, ";entity.key=");
    for (size_t i = 0; rc == 0 && i < st->nef; i++)
        rc = canon_add(&st->canon, &clen, "%s%s", i ? "," : "", st->fields[st->efields[i]].name);
    if (rc == 0)
        rc = canon_add(&st->canon, &clen, ";window=%s/%lld/%lld;time=%s/%s;aggregates=",
                       windows[st->window], (long long)st->size_ms, (long long)st->advance_ms,
                       times[st->time], tfield ? tfield : "");
    for (size_t i = 0; rc == 0 && i < st->naggs; i++)
        rc = canon_add(&st->canon, &clen, "%s%s=%s(%s)", i ? "," : "", st->aggs[i].name,
                       agg_fn_name(st->aggs[i].fn),
                       st->aggs[i].field >= 0 ? st->fields[st->aggs[i].field].name : "");
    if (rc != 0) {
        snprintf(err, errsz, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    return SPOKE_OK;
}

int agg_configure(struct agg_state *st, const struct spoke_config *cfg, char *err, size_t errsz)
{
    struct problems pr;
    const char *key;
    int rc = agg_configure_problems(st, cfg, &pr, err, errsz);
    if (rc == SPOKE_ERR_INVALID)
        problems_report(&pr, &key, err, errsz, NULL, NULL);
    return rc;
}

void agg_config_free(struct agg_state *st)
{
    free(st->fields);
    free(st->aggs);
    free(st->vfield);
    free(st->mset_field);
    free(st->canon);
    st->fields = NULL;
    st->aggs = NULL;
    st->vfield = NULL;
    st->mset_field = NULL;
    st->canon = NULL;
}
