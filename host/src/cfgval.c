/* cfgval - validating key/value configs against spoke_config_field tables.
 *
 * A config keeps one entry per declared key, in table order, so lookups and
 * display follow the plugin's own declaration. Every value, given or
 * defaulted, goes through the same parser, so a default can never hold
 * something a user could not have written.
 */
#include "cfgval.h"

#include "dupkeys.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"

struct cfgval_entry {
    const struct spoke_config_field *field;
    char *text;        /* NULL: no value (optional, no default) */
    int64_t i;         /* INT, LONG; BOOL as 0/1 */
    double d;          /* DOUBLE; INT and LONG converted */
    int b;             /* BOOL */
    char **items;      /* LIST: nitems strings, NULL-terminated */
    size_t nitems;
    int set;           /* given explicitly, not defaulted */
};

/* A key given under a SPOKE_CFG_PREFIX field. */
struct cfgval_extra {
    const struct spoke_config_field *field;
    char *key;         /* the whole key, prefix included */
    char *text;
};

struct spoke_config {
    struct cfgval_entry *e;
    size_t n;
    struct cfgval_extra *x;
    size_t nx, capx;
};

/* Longest value quoted in a message; longer ones end in "...". */
#define QMAX 48

/* Suggestions ("did you mean") go up to this many edits. */
#define SUGGEST_MAX 2

static const char *const empty_list[] = { NULL };

static const char *type_name(enum spoke_cfg_type t)
{
    switch (t) {
    case SPOKE_CFG_STRING:   return "string";
    case SPOKE_CFG_INT:      return "int (32-bit integer)";
    case SPOKE_CFG_LONG:     return "long (64-bit integer)";
    case SPOKE_CFG_DOUBLE:   return "double (finite number)";
    case SPOKE_CFG_BOOL:     return "boolean (true or false)";
    case SPOKE_CFG_LIST:     return "list";
    case SPOKE_CFG_PASSWORD: return "password";
    }
    return "unknown type";
}

static int is_secret(const struct spoke_config_field *fld)
{
    return fld->type == SPOKE_CFG_PASSWORD || (fld->flags & SPOKE_CFG_SECRET);
}

static int bounded(const struct spoke_config_field *fld)
{
    return fld->min != 0 || fld->max != 0;
}

/* Quotes a value for a message, cut to QMAX bytes. */
static void quote(char *out, size_t outsize, const char *s)
{
    size_t n = strlen(s);
    if (n > QMAX)
        snprintf(out, outsize, "'%.*s...'", QMAX, s);
    else
        snprintf(out, outsize, "'%s'", s);
}

/* A bound as people write it: integers without a fraction. */
static void fmt_bound(char *out, size_t outsize, double v)
{
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(out, outsize, "%.0f", v);
    else
        snprintf(out, outsize, "%.15g", v);
}

int cfgval_parse_bool(const char *s)
{
    if (strcasecmp(s, "true") == 0)
        return 1;
    if (strcasecmp(s, "false") == 0)
        return 0;
    return -1;
}

/* Strict decimal: optional sign, digits, nothing else (no spaces, no hex). */
static int parse_i64(const char *s, int64_t *out)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    if (!*p)
        return -1;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9')
            return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE || *end)
        return -1;
    *out = (int64_t)v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    /* strtod skips leading blanks; the whole string must be the number. */
    if (!*s || *s == ' ' || (*s >= '\t' && *s <= '\r'))
        return -1;
    double v = strtod(s, &end);
    if (*end || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static void free_items(char **items, size_t n)
{
    if (!items)
        return;
    for (size_t i = 0; i < n; i++)
        free(items[i]);
    free(items);
}

static void entry_clear(struct cfgval_entry *ent)
{
    free(ent->text);
    free_items(ent->items, ent->nitems);
    ent->text = NULL;
    ent->items = NULL;
    ent->nitems = 0;
    ent->i = 0;
    ent->d = 0;
    ent->b = 0;
    ent->set = 0;
}

static int is_blank(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Appends item b..e, trimmed, as item n of v. Refuses an empty item and,
 * for a YAML sequence's item (whole), one holding a comma: a connector's
 * config travels and is stored as text, where a list is its items joined
 * by commas (as in Kafka Connect), so such an item would come back split
 * in two. 1 when refused (why says so; a secret's item is not quoted),
 * -1 out of memory. */
static int take_item(char **v, size_t n, const char *b, const char *e, int whole, int secret,
                     char *why, size_t whysize)
{
    while (b < e && is_blank(*b))
        b++;
    while (e > b && is_blank(e[-1]))
        e--;
    if (e == b) {
        if (whole)
            snprintf(why, whysize, "list item %zu is empty", n + 1);
        else
            snprintf(why, whysize, "list item %zu is empty (two commas in a row, or a comma "
                     "at the start or the end)", n + 1);
        return 1;
    }
    if (!(v[n] = strndup(b, (size_t)(e - b))))
        return -1;
    if (whole && strchr(v[n], ',')) {
        char q[QMAX + 8];
        quote(q, sizeof(q), v[n]);
        snprintf(why, whysize, "list item %zu contains ','%s%s%s: config lists are "
                 "comma-separated text; give each part as its own item", n + 1,
                 secret ? "" : " (", secret ? "" : q, secret ? "" : ")");
        return 1;
    }
    return 0;
}

/* The items of a list value: a YAML sequence's (items, nitems) or the
 * comma-separated text, each trimmed. Blank text is the empty list; an
 * empty item is refused, so is a sequence's item with a comma (see
 * take_item). 0, 1 refused (why set), -1 out of memory. */
static int list_items(const char *text, char *const *items, size_t nitems, int is_list,
                      int secret, char ***out, size_t *nout, char *why, size_t whysize)
{
    size_t cap = is_list ? nitems : 1;
    if (!is_list)
        for (const char *p = text; *p; p++)
            cap += *p == ',';
    char **v = calloc(cap + 1, sizeof(*v));
    size_t n = 0;
    int rc = 0;
    if (!v)
        return -1;
    if (is_list) {
        for (; n < nitems && rc == 0; n++)
            rc = take_item(v, n, items[n], items[n] + strlen(items[n]), 1, secret, why,
                           whysize);
    } else {
        const char *p = text;
        while (is_blank(*p))
            p++;
        while (*p && rc == 0) {
            const char *c = strchr(p, ',');
            const char *e = c ? c : p + strlen(p);
            rc = take_item(v, n, p, e, 0, secret, why, whysize);
            n++;
            if (!c)
                break;
            p = c + 1;
            if (!*p && rc == 0)  /* "a," */
                rc = take_item(v, n++, p, p, 0, secret, why, whysize);
        }
    }
    if (rc != 0) {
        free_items(v, n);
        return rc;
    }
    *out = v;
    *nout = n;
    return 0;
}

static char *join_items(char *const *items, size_t n)
{
    struct buf b = BUF_INIT;
    /* Appending nothing still allocates and terminates: "" for no items. */
    if (buf_append(&b, "", 0) < 0)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if ((i && buf_putc(&b, ',') < 0) || buf_puts(&b, items[i]) < 0) {
            buf_free(&b);
            return NULL;
        }
    return buf_steal(&b, NULL);
}

static int is_allowed(const struct spoke_config_field *fld, const char *s)
{
    for (const char *const *a = fld->allowed; *a; a++)
        if (strcmp(*a, s) == 0)
            return 1;
    return 0;
}

static void allowed_text(const struct spoke_config_field *fld, char *out, size_t outsize)
{
    size_t off = 0;
    out[0] = '\0';
    for (const char *const *a = fld->allowed; *a && off < outsize; a++) {
        int n = snprintf(out + off, outsize - off, "%s%s", a == fld->allowed ? "" : ", ", *a);
        if (n < 0)
            break;
        off += (size_t)n;
    }
}

/* Checks a number or length against the field's bounds; what is how the
 * value is shown ("500", "length 3", "item count 2"). */
static int check_bounds(const struct spoke_config_field *fld, long double v, const char *what,
                        char *why, size_t whysize)
{
    char b[64];
    if (!bounded(fld))
        return 0;
    if (v < (long double)fld->min) {
        fmt_bound(b, sizeof(b), fld->min);
        snprintf(why, whysize, "%s is below the minimum %s", what, b);
        return -1;
    }
    if (v > (long double)fld->max) {
        fmt_bound(b, sizeof(b), fld->max);
        snprintf(why, whysize, "%s is above the maximum %s", what, b);
        return -1;
    }
    return 0;
}

/*
 * Parses one value for fld into out (which must be clear). text is the
 * value; a YAML sequence comes as is_list with items. On failure writes the
 * reason (without the key: callers prefix it) and returns SPOKE_ERR_INVALID,
 * or SPOKE_ERR_NOMEM; out stays clear. Values of secret keys are never
 * quoted in the reason.
 */
static int parse_value(const struct spoke_config_field *fld, const char *text,
                       char *const *items, size_t nitems, int is_list,
                       struct cfgval_entry *out, char *why, size_t whysize)
{
    int secret = is_secret(fld);
    char q[QMAX + 8], what[QMAX + 32];

    if (is_list && fld->type != SPOKE_CFG_LIST) {
        snprintf(why, whysize, "expected a %s, not a list", type_name(fld->type));
        return SPOKE_ERR_INVALID;
    }
    if (!is_list && !text) {
        snprintf(why, whysize, "has no value");
        return SPOKE_ERR_INVALID;
    }
    if (text)
        quote(q, sizeof(q), text);
    else
        q[0] = '\0';
    /* What a message shows of the value itself. */
    const char *shown = secret ? "the value" : q;

    switch (fld->type) {
    case SPOKE_CFG_INT:
    case SPOKE_CFG_LONG: {
        int64_t v;
        int is_int = fld->type == SPOKE_CFG_INT;
        if (parse_i64(text, &v) < 0 || (is_int && (v < INT32_MIN || v > INT32_MAX))) {
            snprintf(why, whysize, "%s is not a valid %s", shown, type_name(fld->type));
            return SPOKE_ERR_INVALID;
        }
        snprintf(what, sizeof(what), "%s", secret ? "the value" : text);
        if (check_bounds(fld, (long double)v, what, why, whysize) < 0)
            return SPOKE_ERR_INVALID;
        out->i = v;
        out->d = (double)v;
        break;
    }
    case SPOKE_CFG_DOUBLE: {
        double v;
        if (parse_double(text, &v) < 0) {
            snprintf(why, whysize, "%s is not a valid %s", shown, type_name(fld->type));
            return SPOKE_ERR_INVALID;
        }
        if (secret)
            snprintf(what, sizeof(what), "the value");
        else if (strlen(text) > QMAX)
            snprintf(what, sizeof(what), "%.15g", v);
        else
            snprintf(what, sizeof(what), "%s", text);
        if (check_bounds(fld, (long double)v, what, why, whysize) < 0)
            return SPOKE_ERR_INVALID;
        out->d = v;
        break;
    }
    case SPOKE_CFG_BOOL: {
        int v = cfgval_parse_bool(text);
        if (v < 0) {
            snprintf(why, whysize, "%s is not a valid %s", shown, type_name(fld->type));
            return SPOKE_ERR_INVALID;
        }
        out->b = v;
        out->i = v;
        break;
    }
    case SPOKE_CFG_STRING:
    case SPOKE_CFG_PASSWORD:
        snprintf(what, sizeof(what), "length %zu", strlen(text));
        if (check_bounds(fld, (long double)strlen(text), what, why, whysize) < 0) {
            /* Lengths are bytes: say so once, after the bound. */
            size_t n = strlen(why);
            if (n + 7 < whysize)
                memcpy(why + n, " bytes", 7);
            return SPOKE_ERR_INVALID;
        }
        break;
    case SPOKE_CFG_LIST: {
        int rc = list_items(text, items, nitems, is_list, secret, &out->items, &out->nitems,
                            why, whysize);
        if (rc < 0) {
            snprintf(why, whysize, "out of memory");
            return SPOKE_ERR_NOMEM;
        }
        if (rc > 0)
            return SPOKE_ERR_INVALID;
        snprintf(what, sizeof(what), "item count %zu", out->nitems);
        if (check_bounds(fld, (long double)out->nitems, what, why, whysize) < 0)
            goto list_fail;
        if (fld->allowed)
            for (size_t i = 0; i < out->nitems; i++)
                if (!is_allowed(fld, out->items[i])) {
                    char a[160];
                    allowed_text(fld, a, sizeof(a));
                    if (secret) {
                        snprintf(why, whysize, "an item is not one of: %s", a);
                    } else {
                        quote(q, sizeof(q), out->items[i]);
                        snprintf(why, whysize, "item %s is not one of: %s", q, a);
                    }
                    goto list_fail;
                }
        /* The canonical text: what was split, joined back. */
        if (!(out->text = join_items(out->items, out->nitems))) {
            snprintf(why, whysize, "out of memory");
            free_items(out->items, out->nitems);
            out->items = NULL;
            out->nitems = 0;
            return SPOKE_ERR_NOMEM;
        }
        return SPOKE_OK;
list_fail:
        free_items(out->items, out->nitems);
        out->items = NULL;
        out->nitems = 0;
        return SPOKE_ERR_INVALID;
    }
    default:
        snprintf(why, whysize, "has an unknown type %d", (int)fld->type);
        return SPOKE_ERR_INVALID;
    }

    if (fld->allowed && !is_allowed(fld, text)) {
        char a[160];
        allowed_text(fld, a, sizeof(a));
        snprintf(why, whysize, "%s is not one of: %s", shown, a);
        out->i = 0;
        out->d = 0;
        out->b = 0;
        return SPOKE_ERR_INVALID;
    }
    if (!(out->text = strdup(text))) {
        snprintf(why, whysize, "out of memory");
        return SPOKE_ERR_NOMEM;
    }
    return SPOKE_OK;
}

/* ---- errors ---- */

void cfgval_errors_free(struct cfgval_errors *errs)
{
    if (!errs)
        return;
    free(errs->e);
    errs->e = NULL;
    errs->n = 0;
}

static int push_error(struct cfgval_errors *errs, const char *key, long kv_index,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int push_error(struct cfgval_errors *errs, const char *key, long kv_index,
                      const char *fmt, ...)
{
    /* Grows one at a time: error lists are short and this is not hot. */
    struct cfgval_error *e = realloc(errs->e, (errs->n + 1) * sizeof(*e));
    if (!e)
        return -1;
    errs->e = e;
    e = &errs->e[errs->n++];
    snprintf(e->key, sizeof(e->key), "%s", key ? key : "");
    e->kv_index = kv_index;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return 0;
}

/* ---- configs ---- */

static size_t table_len(const struct spoke_config_field *table)
{
    size_t n = 0;
    if (table)
        while (table[n].name)
            n++;
    return n;
}

static struct spoke_config *config_new(const struct spoke_config_field *table)
{
    struct spoke_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return NULL;
    cfg->n = table_len(table);
    if (cfg->n && !(cfg->e = calloc(cfg->n, sizeof(*cfg->e)))) {
        free(cfg);
        return NULL;
    }
    for (size_t i = 0; i < cfg->n; i++)
        cfg->e[i].field = &table[i];
    return cfg;
}

void cfgval_free(struct spoke_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n; i++)
        entry_clear(&cfg->e[i]);
    for (size_t i = 0; i < cfg->nx; i++) {
        free(cfg->x[i].key);
        free(cfg->x[i].text);
    }
    free(cfg->x);
    free(cfg->e);
    free(cfg);
}

static struct cfgval_entry *lookup(const struct spoke_config *cfg, const char *key)
{
    if (!cfg || !key)
        return NULL;
    for (size_t i = 0; i < cfg->n; i++)
        if (!(cfg->e[i].field->flags & SPOKE_CFG_PREFIX) && strcmp(cfg->e[i].field->name, key) == 0)
            return &cfg->e[i];
    return NULL;
}

/* ---- pass-through properties (SPOKE_CFG_PREFIX) ---- */

static const struct spoke_config_field *prefix_field(const struct spoke_config_field *table,
                                                     const char *key)
{
    for (size_t i = 0; table && table[i].name; i++) {
        const struct spoke_config_field *f = &table[i];
        size_t n = strlen(f->name);
        if ((f->flags & SPOKE_CFG_PREFIX) && strncmp(key, f->name, n) == 0 && key[n])
            return f;
    }
    return NULL;
}

/* Properties that make a client library load code or files, run commands or
 * fetch tokens from a URL: never from a connector config (REST), only from
 * the worker section of the file. */
static int property_denied(const char *prop)
{
    static const char *const exact[] = {
        "plugin.library.paths", "sasl.kerberos.kinit.cmd", "sasl.kerberos.keytab",
        "sasl.oauthbearer.token.endpoint.url", "sasl.oauthbearer.config",
        "sasl.oauthbearer.method", "ssl.engine.id", "ssl_engine_callback_data",
        "oauthbearer_token_refresh_cb", "open_cb", NULL
    };
    for (size_t i = 0; exact[i]; i++)
        if (strcmp(prop, exact[i]) == 0)
            return 1;
    size_t n = strlen(prop);
    static const char *const suffixes[] = { ".location", ".url", ".cmd", ".path", ".paths", NULL };
    for (size_t i = 0; suffixes[i]; i++) {
        size_t m = strlen(suffixes[i]);
        if (n >= m && strcmp(prop + n - m, suffixes[i]) == 0)
            return 1;
    }
    return 0;
}

static int property_secret(const char *prop)
{
    return strstr(prop, "password") || strstr(prop, "secret") || strstr(prop, "key.pem") ||
           strstr(prop, "sasl.oauthbearer.config") || strstr(prop, "sasl.jaas");
}

static int valid_property(const char *prop)
{
    if (!*prop || strlen(prop) > 127)
        return 0;
    for (const char *p = prop; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Validates and stores a key under prefix field f. 0 or a message in why. */
static int add_extra(struct spoke_config *cfg, const struct spoke_config_field *f, const char *key,
                     const char *value, char *why, size_t whysize)
{
    const char *prop = key + strlen(f->name);
    if (!valid_property(prop)) {
        snprintf(why, whysize, "'%s' is not a valid property name ([a-z0-9._-], at most 127)",
                 prop);
        return -1;
    }
    if (!(f->flags & CFGVAL_TRUSTED) && property_denied(prop)) {
        snprintf(why, whysize, "property '%.48s' loads code or files, runs a command or "
                 "names a token endpoint: set it in the worker section of the file only", prop);
        return -1;
    }
    if (f->allowed && !is_allowed(f, prop)) {
        snprintf(why, whysize, "property '%.48s' is not in this plugin's allow-list of "
                 "pass-through properties (`spoke plugins --doc` lists them)", prop);
        return -1;
    }
    if (!value) {
        snprintf(why, whysize, "expects a string");
        return -1;
    }
    if (cfg->nx == cfg->capx) {
        size_t cap = cfg->capx ? cfg->capx * 2 : 8;
        struct cfgval_extra *x = realloc(cfg->x, cap * sizeof(*x));
        if (!x)
            return -2;
        cfg->x = x;
        cfg->capx = cap;
    }
    struct cfgval_extra *x = &cfg->x[cfg->nx];
    x->field = f;
    x->key = strdup(key);
    x->text = strdup(value);
    if (!x->key || !x->text) {
        free(x->key);
        free(x->text);
        return -2;
    }
    cfg->nx++;
    return 0;
}

size_t cfgval_prefixed(const struct spoke_config *cfg, const char *prefix, size_t i,
                       const char **name, const char **value)
{
    if (!cfg || !prefix)
        return 0;
    size_t n = 0, plen = strlen(prefix);
    for (size_t k = 0; k < cfg->nx; k++) {
        const struct cfgval_extra *x = &cfg->x[k];
        if (strcmp(x->field->name, prefix) != 0)
            continue;
        if (n == i) {
            if (name)
                *name = x->key + plen;
            if (value)
                *value = x->text;
        }
        n++;
    }
    return n;
}

int cfgval_key_secret(const struct spoke_config_field *table, const char *key)
{
    for (size_t i = 0; table && table[i].name; i++)
        if (!(table[i].flags & SPOKE_CFG_PREFIX) && strcmp(table[i].name, key) == 0)
            return is_secret(&table[i]);
    const struct spoke_config_field *f = prefix_field(table, key);
    return f && (is_secret(f) || property_secret(key + strlen(f->name)));
}

/* Optimal string alignment distance (adjacent swaps count as one edit),
 * capped at SUGGEST_MAX + 1. Only the diagonal band |i - j| <= SUGGEST_MAX
 * can stay under the cap, so only it is computed: linear time per pair even
 * for a body full of long unknown keys. */
static int edit_distance(const char *a, const char *b)
{
    enum { K = SUGGEST_MAX, BIG = SUGGEST_MAX + 1, W = 130 };
    size_t la = strlen(a), lb = strlen(b);
    int rows[3][W];

    if (la + K < lb || lb + K < la || la >= W - 1 || lb >= W - 1)
        return BIG;
    int *pp = rows[0], *p = rows[1], *c = rows[2];
    for (size_t j = 0; j <= lb; j++) {
        pp[j] = BIG;
        p[j] = j <= K ? (int)j : BIG;
        c[j] = BIG;
    }
    for (size_t i = 1; i <= la; i++) {
        size_t lo = i > K ? i - K : 1, hi = i + K < lb ? i + K : lb;
        int rowmin = BIG;
        c[lo - 1] = lo - 1 == 0 && i <= K ? (int)i : BIG;
        if (lo - 1 == 0)
            rowmin = c[0];
        if (hi + 1 <= lb)
            c[hi + 1] = BIG;
        for (size_t j = lo; j <= hi; j++) {
            int v = p[j - 1] + (a[i - 1] != b[j - 1]);
            if (p[j] + 1 < v)
                v = p[j] + 1;
            if (c[j - 1] + 1 < v)
                v = c[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                pp[j - 2] + 1 < v)
                v = pp[j - 2] + 1;
            c[j] = v > BIG ? BIG : v;
            if (c[j] < rowmin)
                rowmin = c[j];
        }
        if (rowmin >= BIG)
            return BIG;
        int *t = pp;
        pp = p;
        p = c;
        c = t;
    }
    return p[lb] > BIG ? BIG : p[lb];
}

/* The closest declared key within SUGGEST_MAX edits, or NULL. */
static const char *suggest(const char *key, const struct spoke_config_field *t1,
                           const struct spoke_config_field *t2)
{
    const struct spoke_config_field *tables[2] = { t1, t2 };
    const char *best = NULL;
    int bestd = SUGGEST_MAX + 1;
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; tables[t] && tables[t][i].name; i++) {
            int d = edit_distance(key, tables[t][i].name);
            if (d < bestd) {
                bestd = d;
                best = tables[t][i].name;
            }
        }
    return best;
}

/* Marks dup[i] = 1 for every kv whose key appeared earlier. Sorting keeps
 * big REST bodies cheap. 0, or -1 on out-of-memory. */
static int mark_dups(const struct cfg_kv *kvs, size_t nkv, unsigned char *dup)
{
    if (nkv < 2)
        return 0;
    const char **keys = malloc(nkv * sizeof(*keys));
    if (!keys)
        return -1;
    for (size_t i = 0; i < nkv; i++)
        keys[i] = kvs[i].key;
    int rc = dupkeys_mark(keys, nkv, dup);
    free(keys);
    return rc;
}

/* Applies defaults and reports missing required keys of one config. */
static int finish(struct spoke_config *cfg, struct cfgval_errors *errs)
{
    int oom = 0;
    for (size_t i = 0; i < cfg->n; i++) {
        struct cfgval_entry *ent = &cfg->e[i];
        const struct spoke_config_field *fld = ent->field;
        char why[200];
        if (ent->set || (fld->flags & SPOKE_CFG_PREFIX))
            continue;
        if (fld->flags & SPOKE_CFG_REQUIRED) {
            if (push_error(errs, fld->name, -1, "missing required configuration key '%s'",
                           fld->name) < 0)
                oom = 1;
            continue;
        }
        if (!fld->default_value)
            continue;
        if (parse_value(fld, fld->default_value, NULL, 0, 0, ent, why, sizeof(why)) != SPOKE_OK &&
            push_error(errs, fld->name, -1, "key '%s': invalid default: %s", fld->name, why) < 0)
            oom = 1;
    }
    return oom ? -1 : 0;
}

int cfgval_validate(const struct spoke_config_field *table,
                    const struct spoke_config_field *table2,
                    const struct cfg_kv *kvs, size_t nkv,
                    struct spoke_config **cfg, struct spoke_config **cfg2,
                    struct cfgval_errors *errs)
{
    struct spoke_config *c1 = NULL, *c2 = NULL;
    unsigned char *dup = NULL;
    int oom = 0;

    assert(cfg && errs && (!table2 || cfg2));
    *cfg = NULL;
    if (cfg2)
        *cfg2 = NULL;
    errs->e = NULL;
    errs->n = 0;

    if (!(c1 = config_new(table)) || (table2 && !(c2 = config_new(table2))) ||
        (nkv && !(dup = calloc(nkv, 1))) || mark_dups(kvs, nkv, dup) < 0) {
        oom = 1;
        goto fail;
    }
    for (size_t i = 0; i < nkv; i++) {
        const struct cfg_kv *kv = &kvs[i];
        struct cfgval_entry *ent = lookup(c1, kv->key);
        char why[200];
        int rc;

        if (!ent)
            ent = lookup(c2, kv->key);
        const struct spoke_config_field *pf = NULL;
        struct spoke_config *pc = NULL;
        if (!ent && !dup[i]) {
            if ((pf = prefix_field(table, kv->key)))
                pc = c1;
            else if ((pf = prefix_field(table2, kv->key)))
                pc = c2;
        }
        if (dup[i]) {
            rc = push_error(errs, kv->key, (long)i, "duplicate configuration key '%s'", kv->key);
        } else if (pf) {
            int xr = add_extra(pc, pf, kv->key, kv->is_list ? NULL : kv->value, why, sizeof(why));
            if (xr == 0)
                continue;
            rc = xr == -2 ? -1 : push_error(errs, kv->key, (long)i, "key '%s': %s", kv->key, why);
        } else if (!ent) {
            const char *s = suggest(kv->key, table, table2);
            if (s)
                rc = push_error(errs, kv->key, (long)i,
                                "unknown configuration key '%s', did you mean '%s'?", kv->key, s);
            else
                rc = push_error(errs, kv->key, (long)i, "unknown configuration key '%s'", kv->key);
        } else {
            int pr = parse_value(ent->field, kv->value, kv->items, kv->nitems, kv->is_list,
                                 ent, why, sizeof(why));
            /* Given, even when invalid: a bad value of a required key must
             * not also be reported as missing, nor replaced by the default. */
            ent->set = 1;
            if (pr == SPOKE_OK)
                continue;
            rc = push_error(errs, kv->key, (long)i, "key '%s': %s", kv->key, why);
        }
        if (rc < 0)
            oom = 1;
    }
    if (finish(c1, errs) < 0 || (c2 && finish(c2, errs) < 0))
        oom = 1;
    if (oom || errs->n)
        goto fail;
    free(dup);
    *cfg = c1;
    if (cfg2)
        *cfg2 = c2;
    return 0;
fail:
    /* Out of memory with nothing recorded still has to say something. */
    if (oom && errs->n == 0)
        push_error(errs, "", -1, "out of memory");
    free(dup);
    cfgval_free(c1);
    cfgval_free(c2);
    return -1;
}

/* ---- table checks ---- */

/* [a-z0-9][a-z0-9._-]{0,126} */
static int valid_key_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 127)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return 0;
    }
    return 1;
}

int cfgval_check_table(const struct spoke_config_field *table,
                       const struct spoke_config_field *reserved,
                       char *err, size_t errsize)
{
    if (!table)
        return 0;
    for (size_t i = 0; table[i].name; i++) {
        const struct spoke_config_field *fld = &table[i];
        const char *name = fld->name;

        if (!valid_key_name(name)) {
            snprintf(err, errsize, "config key '%.64s' has an invalid name "
                     "(must match [a-z0-9][a-z0-9._-]{0,126})", name);
            return -1;
        }
        if ((int)fld->type < SPOKE_CFG_STRING || (int)fld->type > SPOKE_CFG_PASSWORD) {
            snprintf(err, errsize, "config key '%s' has an invalid type %d", name, (int)fld->type);
            return -1;
        }
        if (fld->flags & ~(SPOKE_CFG_REQUIRED | SPOKE_CFG_SECRET | SPOKE_CFG_PREFIX)) {
            snprintf(err, errsize, "config key '%s' has unknown flags 0x%x", name,
                     fld->flags & ~(SPOKE_CFG_REQUIRED | SPOKE_CFG_SECRET | SPOKE_CFG_PREFIX));
            return -1;
        }
        if ((fld->flags & SPOKE_CFG_PREFIX) &&
            (fld->type != SPOKE_CFG_STRING || (fld->flags & SPOKE_CFG_REQUIRED) ||
             fld->default_value || name[strlen(name) - 1] != '.')) {
            snprintf(err, errsize, "config key '%s': a prefix field is a STRING without default, "
                     "not required, and its name ends in '.'", name);
            return -1;
        }
        if ((fld->flags & SPOKE_CFG_REQUIRED) && fld->default_value) {
            snprintf(err, errsize, "config key '%s' is required and has a default "
                     "(a required key never uses its default)", name);
            return -1;
        }
        if (isnan(fld->min) || isnan(fld->max) || isinf(fld->min) || isinf(fld->max)) {
            snprintf(err, errsize, "config key '%s': min and max must be finite numbers", name);
            return -1;
        }
        if (bounded(fld) && fld->min > fld->max) {
            char a[64], b[64];
            fmt_bound(a, sizeof(a), fld->min);
            fmt_bound(b, sizeof(b), fld->max);
            snprintf(err, errsize, "config key '%s': min %s is above max %s "
                     "(bounds apply when either is non-zero)", name, a, b);
            return -1;
        }
        if (fld->allowed && !fld->allowed[0]) {
            snprintf(err, errsize, "config key '%s': the allowed list is empty", name);
            return -1;
        }
        if (fld->default_value) {
            struct cfgval_entry tmp = { .field = fld };
            char why[200];
            int rc = parse_value(fld, fld->default_value, NULL, 0, 0, &tmp, why, sizeof(why));
            entry_clear(&tmp);
            if (rc != SPOKE_OK) {
                snprintf(err, errsize, "config key '%s': invalid default: %s", name, why);
                return -1;
            }
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(table[j].name, name) == 0) {
                snprintf(err, errsize, "config key '%s' is declared twice", name);
                return -1;
            }
        for (size_t j = 0; reserved && reserved[j].name; j++)
            if (strcmp(reserved[j].name, name) == 0) {
                snprintf(err, errsize, "config key '%s' is reserved by the host", name);
                return -1;
            }
    }
    return 0;
}

/* ---- accessors ---- */

const char *cfgval_string(const struct spoke_config *cfg, const char *key)
{
    const struct cfgval_entry *ent = lookup(cfg, key);
    return ent ? ent->text : NULL;
}

int64_t cfgval_int(const struct spoke_config *cfg, const char *key)
{
    const struct cfgval_entry *ent = lookup(cfg, key);
    if (!ent || !ent->text)
        return 0;
    switch (ent->field->type) {
    case SPOKE_CFG_INT:
    case SPOKE_CFG_LONG:
    case SPOKE_CFG_BOOL:
        return ent->i;
    default:
        return 0;
    }
}

double cfgval_double(const struct spoke_config *cfg, const char *key)
{
    const struct cfgval_entry *ent = lookup(cfg, key);
    if (!ent || !ent->text)
        return 0;
    switch (ent->field->type) {
    case SPOKE_CFG_INT:
    case SPOKE_CFG_LONG:
    case SPOKE_CFG_DOUBLE:
        return ent->d;
    default:
        return 0;
    }
}

int cfgval_bool(const struct spoke_config *cfg, const char *key)
{
    const struct cfgval_entry *ent = lookup(cfg, key);
    if (!ent || !ent->text || ent->field->type != SPOKE_CFG_BOOL)
        return 0;
    return ent->b;
}

size_t cfgval_list(const struct spoke_config *cfg, const char *key, const char *const **items)
{
    const struct cfgval_entry *ent = lookup(cfg, key);
    if (!ent || !ent->text || ent->field->type != SPOKE_CFG_LIST) {
        if (items)
            *items = empty_list;
        return 0;
    }
    if (items)
        *items = (const char *const *)ent->items;
    return ent->nitems;
}

int cfgval_is_set(const struct spoke_config *cfg, const char *key)
{
    const struct cfgval_entry *ent = lookup(cfg, key);
    return ent && ent->set;
}

size_t cfgval_count(const struct spoke_config *cfg)
{
    size_t n = 0;
    if (cfg) {
        for (size_t i = 0; i < cfg->n; i++)
            if (cfg->e[i].text)
                n++;
        n += cfg->nx;
    }
    return n;
}

int cfgval_at(const struct spoke_config *cfg, size_t i, const char **key,
              const char **masked_value)
{
    if (!cfg)
        return -1;
    for (size_t k = 0; k < cfg->n; k++) {
        const struct cfgval_entry *ent = &cfg->e[k];
        if (!ent->text)
            continue;
        if (i-- > 0)
            continue;
        if (key)
            *key = ent->field->name;
        if (masked_value)
            *masked_value = is_secret(ent->field) ? "[hidden]" : ent->text;
        return 0;
    }
    if (i < cfg->nx) {
        const struct cfgval_extra *x = &cfg->x[i];
        if (key)
            *key = x->key;
        if (masked_value)
            *masked_value = is_secret(x->field) ||
                                    property_secret(x->key + strlen(x->field->name))
                                ? "[hidden]" : x->text;
        return 0;
    }
    return -1;
}
