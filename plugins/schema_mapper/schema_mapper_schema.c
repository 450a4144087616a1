/*
 * schema_mapper_schema.c - the schema file: YAML -> a compiled mapper.
 *
 * Everything that can be checked before the first record is checked here,
 * and every problem is reported with the file, line and column of the node
 * at fault: unknown keys (with a suggestion), types, paths, expressions,
 * defaults and filter values (coerced to the field type once), lookup
 * tables (each CSV line or JSON entry coerced to the field type once).
 * The output schema is built once and shared by every row.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jansson.h>
#include <yaml.h>

#include "schema_mapper.h"

/* Largest lookup file read (bytes). */
#define SM_LOOKUP_MAX ((size_t)512 << 20)
/* Most fields in a schema (the error path packs field indexes in 16 bits). */
#define SM_FIELDS_MAX 4096

struct yl {
    yaml_document_t doc;
    int have_doc;
    const char *file;
    char *err;
    size_t errsz;
};

static int yerr(struct yl *y, const yaml_node_t *n, const char *fmt, ...) SPOKE_PRINTF(3, 4);

static int yerr(struct yl *y, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[SM_ERR];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n)
        snprintf(y->err, y->errsz, "%s:%zu:%zu: %s", y->file, n->start_mark.line + 1,
                 n->start_mark.column + 1, msg);
    else
        snprintf(y->err, y->errsz, "%s: %s", y->file, msg);
    return -1;
}

static yaml_node_t *ynode(struct yl *y, int i) { return yaml_document_get_node(&y->doc, i); }

static const char *yscalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int is_null_scalar(const yaml_node_t *n)
{
    if (!n || n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

/* 0 with *out set, or -1 with *out NULL and the error set. */
static int ystr(struct yl *y, const yaml_node_t *n, const char *what, const char **out)
{
    const char *s = yscalar(n);
    *out = NULL;
    if (!s) {
        yerr(y, n, "%s must be a string", what);
        return -1;
    }
    if (strlen(s) != n->data.scalar.length) {
        yerr(y, n, "%s holds a NUL character", what);
        return -1;
    }
    *out = s;
    return 0;
}

static int ybool(struct yl *y, const yaml_node_t *n, const char *what, int *out)
{
    const char *s = yscalar(n);
    if (s && (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on"))) {
        *out = 1;
        return 0;
    }
    if (s && (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off"))) {
        *out = 0;
        return 0;
    }
    return yerr(y, n, "%s must be true or false", what);
}

/* Edit distance, for "did you mean". */
static size_t lev(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40)
        return 99;
    size_t d[41][41];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c)
                c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c)
                c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

/* Checks a mapping's keys: all known, none twice. known is NULL-terminated. */
static int ykeys(struct yl *y, const yaml_node_t *map, const char *where,
                 const char *const *known)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return yerr(y, map, "%s must be a mapping", where);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = ynode(y, p->key);
        const char *ks = yscalar(k);
        if (!ks)
            return yerr(y, k, "%s: keys must be strings", where);
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++)
            if (!strcmp(yscalar(ynode(y, q->key)), ks))
                return yerr(y, k, "%s: duplicate key '%s'", where, ks);
        size_t i;
        for (i = 0; known[i]; i++)
            if (!strcmp(known[i], ks))
                break;
        if (known[i])
            continue;
        const char *best = NULL;
        size_t bd = 3;
        for (i = 0; known[i]; i++) {
            size_t d = lev(known[i], ks);
            if (d < bd) {
                bd = d;
                best = known[i];
            }
        }
        if (best)
            return yerr(y, k, "%s: unknown key '%s' (did you mean '%s'?)", where, ks, best);
        return yerr(y, k, "%s: unknown key '%s'", where, ks);
    }
    return 0;
}

/* Checks that a mapping has no key twice. */
static int ydupkeys(struct yl *y, const yaml_node_t *map, const char *where)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = ynode(y, p->key);
        const char *ks = yscalar(k);
        if (!ks)
            return yerr(y, k, "%s: keys must be strings", where);
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++)
            if (!strcmp(yscalar(ynode(y, q->key)), ks))
                return yerr(y, k, "%s: duplicate key '%s'", where, ks);
    }
    return 0;
}

/* Value of key in a mapping, or NULL. */
static yaml_node_t *yget(struct yl *y, const yaml_node_t *map, const char *key)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++)
        if (!strcmp(yscalar(ynode(y, p->key)), key))
            return ynode(y, p->value);
    return NULL;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

#define OOM(y) yerr((y), NULL, "out of memory")

/* A sequence of strings -> a malloc'd array of copies. */
static int ystrlist(struct yl *y, const yaml_node_t *n, const char *what, char ***out,
                    size_t *count)
{
    if (!n || n->type != YAML_SEQUENCE_NODE)
        return yerr(y, n, "%s must be a list", what);
    size_t k = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    char **arr = calloc(k + 1, sizeof(*arr));
    if (!arr)
        return OOM(y);
    *out = arr;
    *count = 0;
    for (size_t i = 0; i < k; i++) {
        const char *s;
        if (ystr(y, ynode(y, n->data.sequence.items.start[i]), what, &s) < 0)
            return -1;
        if (!(arr[i] = xstrdup(s)))
            return OOM(y);
        (*count)++;
    }
    return 0;
}

static void strlist_free(char **arr, size_t n)
{
    if (!arr)
        return;
    for (size_t i = 0; i < n; i++)
        free(arr[i]);
    free(arr);
}

/* ------------------------------------------------------------------------ */
/* Paths and the trie                                                        */
/* ------------------------------------------------------------------------ */

enum stepk { ST_KEY = 1, ST_INDEX, ST_WILD, ST_SEL };
struct step {
    enum stepk k;
    char *key;
    size_t klen;
    int64_t idx;
};

static void steps_free(struct step *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i].key);
    free(s);
}

/* A quoted key "..." with \" and \\ escapes at s[*i]; *i ends after the
 * closing quote. */
static int quoted_key(const char *s, size_t *i, char **out, size_t *outn)
{
    size_t j = *i + 1, k = 0;
    char *o = malloc(strlen(s) + 1);
    if (!o)
        return -1;
    while (s[j] && s[j] != '"') {
        if (s[j] == '\\' && (s[j + 1] == '"' || s[j + 1] == '\\'))
            j++;
        o[k++] = s[j++];
    }
    if (s[j] != '"') {
        free(o);
        return -2;
    }
    o[k] = '\0';
    *i = j + 1;
    *out = o;
    *outn = k;
    return 0;
}

/* Parses a path: name(.name | [n] | [*] | [?key] | ["name"])*. */
static int parse_path(const char *s, struct step **out, size_t *nout, char *msg, size_t msgsz)
{
    size_t cap = strlen(s) + 1, n = 0, i = 0;
    struct step *st = calloc(cap, sizeof(*st));
    if (!st) {
        snprintf(msg, msgsz, "out of memory");
        return -1;
    }
    int first = 1;
    while (s[i] || first) {
        if (!first && s[i] == '.') {
            i++;
            if (!s[i] || s[i] == '.' || s[i] == '[') {
                snprintf(msg, msgsz, "empty name after '.' at column %zu", i + 1);
                goto fail;
            }
        } else if (!first && s[i] != '[') {
            snprintf(msg, msgsz, "expected '.' or '[' at column %zu", i + 1);
            goto fail;
        }
        if (s[i] == '[') {
            size_t open = i++;
            struct step *p = &st[n];
            if (s[i] == '*') {
                p->k = ST_WILD;
                i++;
            } else if (s[i] == '?') {
                p->k = ST_SEL;
                i++;
                if (s[i] == '"') {
                    int rc = quoted_key(s, &i, &p->key, &p->klen);
                    if (rc < 0) {
                        snprintf(msg, msgsz, rc == -1 ? "out of memory"
                                 : "unterminated quoted key at column %zu", i + 1);
                        goto fail;
                    }
                } else {
                    size_t start = i;
                    while (s[i] && s[i] != ']')
                        i++;
                    p->klen = i - start;
                    p->key = xstrndup(s + start, p->klen);
                }
                if (!p->key || !p->klen) {
                    snprintf(msg, msgsz, "empty key in [?key] at column %zu", open + 1);
                    goto fail;
                }
            } else if (s[i] == '"') {
                p->k = ST_KEY;
                int rc = quoted_key(s, &i, &p->key, &p->klen);
                if (rc < 0) {
                    snprintf(msg, msgsz, rc == -1 ? "out of memory"
                             : "unterminated quoted key at column %zu", i + 1);
                    goto fail;
                }
            } else if (s[i] >= '0' && s[i] <= '9') {
                p->k = ST_INDEX;
                int64_t v = 0;
                while (s[i] >= '0' && s[i] <= '9') {
                    if (v > 100000000) {
                        snprintf(msg, msgsz, "index too large at column %zu", open + 2);
                        goto fail;
                    }
                    v = v * 10 + (s[i++] - '0');
                }
                p->idx = v;
            } else {
                snprintf(msg, msgsz, "expected a number, '*', '?key' or a quoted name after '[' "
                         "at column %zu (negative indexes are not supported)", open + 1);
                goto fail;
            }
            if (s[i] != ']') {
                snprintf(msg, msgsz, "expected ']' at column %zu", i + 1);
                goto fail;
            }
            i++;
            n++;
        } else {
            size_t start = i;
            while (s[i] && s[i] != '.' && s[i] != '[' && s[i] != ']')
                i++;
            if (s[i] == ']') {
                snprintf(msg, msgsz, "unexpected ']' at column %zu", i + 1);
                goto fail;
            }
            if (i == start) {
                snprintf(msg, msgsz, "empty name at column %zu", i + 1);
                goto fail;
            }
            st[n].k = ST_KEY;
            st[n].klen = i - start;
            if (!(st[n].key = xstrndup(s + start, i - start))) {
                snprintf(msg, msgsz, "out of memory");
                goto fail;
            }
            n++;
        }
        first = 0;
    }
    *out = st;
    *nout = n;
    return 0;
fail:
    steps_free(st, cap);
    return -1;
}

static struct sm_node *node_new(struct sm_mapper *m, const char *where)
{
    struct sm_node *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    if (!(n->where = xstrdup(where))) {
        free(n);
        return NULL;
    }
    m->nnodes++;
    return n;
}

/* Builds every node's member hash table (after the last path is added). */
static int node_index(struct sm_node *n)
{
    if (!n)
        return 0;
    if (n->nedges) {
        uint32_t size = 4;
        while (size < n->nedges * 2)
            size *= 2;
        if (!(n->htab = malloc(size * sizeof(*n->htab))) ||
            !(n->pred = calloc(SM_PRED_POS * 2, sizeof(*n->pred))))
            return -1;
        for (uint32_t k = 0; k < size; k++)
            n->htab[k] = -1;
        n->hmask = size - 1;
        for (size_t e = 0; e < n->nedges; e++) {
            uint32_t k = sm_key_hash(n->edges[e].key, n->edges[e].klen) & n->hmask;
            while (n->htab[k] >= 0)
                k = (k + 1) & n->hmask;
            n->htab[k] = (int32_t)e;
        }
    }
    for (size_t e = 0; e < n->nedges; e++)
        if (node_index(n->edges[e].child) < 0)
            return -1;
    for (size_t i = 0; i < n->nidx; i++)
        if (node_index(n->idx[i].child) < 0)
            return -1;
    if (node_index(n->wild) < 0 || node_index(n->sel) < 0)
        return -1;
    return 0;
}

static void node_free(const struct spoke_host_api *api, struct sm_node *n)
{
    if (!n)
        return;
    for (size_t k = 0; n->rplan && k < SM_RPLAN; k++) {
        if (n->rplan[k].sc)
            api->schema_unref((struct spoke_schema *)n->rplan[k].sc);
        free(n->rplan[k].op);
    }
    free(n->rplan);
    free(n->htab);
    free(n->pred);
    for (size_t i = 0; i < n->nedges; i++) {
        free(n->edges[i].key);
        node_free(api, n->edges[i].child);
    }
    free(n->edges);
    node_free(api, n->wild);
    for (size_t i = 0; i < n->nidx; i++)
        node_free(api, n->idx[i].child);
    free(n->idx);
    node_free(api, n->sel);
    free(n->slots);
    free(n->present);
    free(n->where);
    free(n);
}

static int int_push(int **arr, size_t *n, int v)
{
    int *a = realloc(*arr, (*n + 1) * sizeof(*a));
    if (!a)
        return -1;
    a[(*n)++] = v;
    *arr = a;
    return 0;
}

/* The child for key under n (created when missing). */
static struct sm_node *edge_child(struct sm_mapper *m, struct sm_node *n, const char *key,
                                  size_t klen, const char *where)
{
    for (size_t i = 0; i < n->nedges; i++)
        if (n->edges[i].klen == klen && !memcmp(n->edges[i].key, key, klen))
            return n->edges[i].child;
    struct sm_edge *e = realloc(n->edges, (n->nedges + 1) * sizeof(*e));
    if (!e)
        return NULL;
    n->edges = e;
    e = &n->edges[n->nedges];
    memset(e, 0, sizeof(*e));
    if (!(e->key = xstrndup(key, klen)) || !(e->child = node_new(m, where))) {
        free(e->key);
        return NULL;
    }
    e->klen = klen;
    n->nedges++;
    return e->child;
}

/* Adds a field's path to the trie. msg gets the reason on failure. */
static int trie_add(struct sm_mapper *m, struct sm_field *f, struct step *st, size_t n,
                    char *msg, size_t msgsz)
{
    struct sm_node *node = m->root;
    char where[512];
    size_t wl = 0, depth = 0;
    where[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int want = st[i].k == ST_KEY ? SM_WANT_OBJECT : SM_WANT_ARRAY;
        if (node->want && node->want != want) {
            snprintf(msg, msgsz, "'%s' is used both as an object and as an array by the paths "
                     "of the schema", wl ? where : "(the record)");
            return -1;
        }
        node->want = want;
        int k;
        switch (st[i].k) {
        case ST_KEY:
            k = snprintf(where + wl, sizeof(where) - wl, "%s%s", wl ? "." : "", st[i].key);
            wl += k > 0 && (size_t)k < sizeof(where) - wl ? (size_t)k : 0;
            node = edge_child(m, node, st[i].key, st[i].klen, where);
            break;
        case ST_INDEX: {
            k = snprintf(where + wl, sizeof(where) - wl, "[%lld]", (long long)st[i].idx);
            wl += k > 0 && (size_t)k < sizeof(where) - wl ? (size_t)k : 0;
            struct sm_node *c = NULL;
            for (size_t j = 0; j < node->nidx; j++)
                if (node->idx[j].i == st[i].idx)
                    c = node->idx[j].child;
            if (!c) {
                struct sm_idx *a = realloc(node->idx, (node->nidx + 1) * sizeof(*a));
                if (!a)
                    goto oom;
                node->idx = a;
                if (!(c = node_new(m, where)))
                    goto oom;
                a[node->nidx].i = st[i].idx;
                a[node->nidx++].child = c;
            }
            node = c;
            break;
        }
        case ST_WILD:
            if (!f->multi && int_push(&node->present, &node->npresent, f->slot) < 0)
                goto oom;
            f->multi = 1;
            k = snprintf(where + wl, sizeof(where) - wl, "[*]");
            wl += k > 0 && (size_t)k < sizeof(where) - wl ? (size_t)k : 0;
            if (!node->wild && !(node->wild = node_new(m, where)))
                goto oom;
            node = node->wild;
            break;
        case ST_SEL:
            if (!node->sel) {
                k = snprintf(where + wl, sizeof(where) - wl, "[?]");
                if (!(node->sel = node_new(m, where)))
                    goto oom;
                node->sel->want = SM_WANT_OBJECT;
                node->sel->is_sel = 1;
            }
            k = snprintf(where + wl, sizeof(where) - wl, "[?%s]", st[i].key);
            wl += k > 0 && (size_t)k < sizeof(where) - wl ? (size_t)k : 0;
            node = edge_child(m, node->sel, st[i].key, st[i].klen, where);
            break;
        }
        if (!node)
            goto oom;
        /* The extractor's recursion levels: [?k] takes two (the element
         * object, then its member). */
        depth += st[i].k == ST_SEL ? 2 : 1;
        if (depth > m->trie_depth)
            m->trie_depth = depth;
    }
    if (int_push(&node->slots, &node->nslots, f->slot) < 0)
        goto oom;
    return 0;
oom:
    snprintf(msg, msgsz, "out of memory");
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Fields                                                                    */
/* ------------------------------------------------------------------------ */

static enum sm_ftype type_of(const char *s)
{
    static const struct { const char *n; enum sm_ftype t; } tab[] = {
        { "string", SM_T_STRING }, { "int", SM_T_INT }, { "long", SM_T_LONG },
        { "double", SM_T_DOUBLE }, { "bool", SM_T_BOOL }, { "timestamp", SM_T_TIMESTAMP },
        { "list", SM_T_LIST },
    };
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        if (!strcmp(tab[i].n, s))
            return tab[i].t;
    return SM_T_NONE;
}

/* A value type (lists: their items). */
static enum sm_ftype vtype(const struct sm_field *f)
{
    return f->type == SM_T_LIST ? f->items : f->type;
}

static int parse_tz(const char *s, int *out)
{
    if (!strcmp(s, "UTC") || !strcmp(s, "Z") || !strcmp(s, "utc")) {
        *out = 0;
        return 0;
    }
    int sign;
    if (s[0] == '+')
        sign = 1;
    else if (s[0] == '-')
        sign = -1;
    else
        return -1;
    unsigned h = 0, mi = 0;
    size_t n = strlen(s);
    if (n == 3 && sscanf(s + 1, "%2u", &h) == 1)
        ;
    else if (n == 5 && sscanf(s + 1, "%2u%2u", &h, &mi) == 2)
        ;
    else if (n == 6 && s[3] == ':' && sscanf(s + 1, "%2u:%2u", &h, &mi) == 2)
        ;
    else
        return -1;
    for (size_t i = 1; i < n; i++)
        if (s[i] != ':' && (s[i] < '0' || s[i] > '9'))
            return -1;
    if (h > 23 || mi > 59)
        return -1;
    *out = sign * (int)(h * 60 + mi);
    return 0;
}

/* Coerces scalar text to field f's value type, as a schema constant
 * (null_values do not apply). 0, or -1 with the reason in msg. */
static int const_val(struct sm_mapper *m, const struct sm_field *f, const char *text, size_t len,
                     struct sm_val *out, char *msg, size_t msgsz)
{
    struct sm_field tmp = *f;
    tmp.nnulls = 0;
    struct sm_src src = { .k = SM_SK_STR };
    src.u.s.p = text;
    src.u.s.n = len;
    size_t bad;
    if (!sm_utf8_valid(text, len, &bad)) {
        snprintf(msg, msgsz, "invalid UTF-8");
        return -1;
    }
    if (sm_coerce(m, &tmp, vtype(f), &src, out, msg, msgsz) < 0)
        return -1;
    if (sm_val_own(out) < 0) {
        snprintf(msg, msgsz, "out of memory");
        return -1;
    }
    sm_arena_reset(&m->arena);
    return 0;
}

static const char *const field_keys[] = {
    "name", "type", "items", "path", "column", "meta", "lookup", "expr", "required", "default",
    "hidden", "stringify", "unit", "format", "tz", "strip", "null_values", "doc", NULL
};

/* First pass over one field: everything that does not depend on other
 * fields. Lookup and expr nodes are kept for the second pass. */
static int field_parse(struct yl *y, struct sm_mapper *m, const yaml_node_t *fn,
                       struct sm_field *f, const yaml_node_t **lookup_node,
                       const yaml_node_t **expr_node)
{
    const char *s;
    yaml_node_t *v;
    char where[160];

    f->line = (int)fn->start_mark.line + 1;
    f->col = (int)fn->start_mark.column + 1;
    f->out = -1;
    f->lk_key = -1;
    f->unit_num = 1;  /* ms */
    f->unit_den = 1;
    if (fn->type != YAML_MAPPING_NODE)
        return yerr(y, fn, "each field must be a mapping with at least name and type");
    if (!(v = yget(y, fn, "name")))
        return yerr(y, fn, "field without a name");
    if (ystr(y, v, "name", &s) < 0)
        return -1;
    if (!*s)
        return yerr(y, v, "empty field name");
    if (!(f->name = xstrdup(s)))
        return OOM(y);
    snprintf(where, sizeof(where), "field '%s'", f->name);
    if (ykeys(y, fn, where, field_keys) < 0)
        return -1;

    if (!(v = yget(y, fn, "type")))
        return yerr(y, fn, "%s: no type (string, int, long, double, bool, timestamp, list)",
                    where);
    if (ystr(y, v, "type", &s) < 0)
        return -1;
    if ((f->type = type_of(s)) == SM_T_NONE)
        return yerr(y, v, "%s: unknown type '%s' (string, int, long, double, bool, timestamp, "
                    "list)", where, s);
    f->items = SM_T_ANY;
    if ((v = yget(y, fn, "items"))) {
        if (f->type != SM_T_LIST)
            return yerr(y, v, "%s: items is only for type list", where);
        if (ystr(y, v, "items", &s) < 0)
            return -1;
        if (strcmp(s, "any") != 0) {
            f->items = type_of(s);
            if (f->items == SM_T_NONE || f->items == SM_T_LIST)
                return yerr(y, v, "%s: unknown item type '%s' (any, string, int, long, double, "
                            "bool, timestamp)", where, s);
        }
    }

    /* Where the value comes from: one of path, column, meta, lookup, expr. */
    static const char *const srcs[] = { "path", "column", "meta", "lookup", "expr" };
    const yaml_node_t *srcn = NULL;
    int nsrc = 0;
    for (int i = 0; i < 5; i++) {
        if ((v = yget(y, fn, srcs[i]))) {
            if (nsrc++)
                return yerr(y, v, "%s: give only one of path, column, meta, lookup, expr", where);
            srcn = v;
            f->src = (enum sm_srckind)(i + 1);
        }
    }
    if (!nsrc)
        f->src = m->format == SM_FMT_CSV ? SM_SRC_COLUMN : SM_SRC_PATH;
    if (f->src == SM_SRC_PATH && m->format == SM_FMT_CSV)
        return yerr(y, srcn, "%s: path is for JSON input; CSV input uses column", where);
    if (f->src == SM_SRC_COLUMN && m->format == SM_FMT_JSON)
        return yerr(y, srcn, "%s: column is for CSV input; JSON input uses path", where);
    if (f->src == SM_SRC_PATH || f->src == SM_SRC_COLUMN) {
        if (srcn) {
            if (ystr(y, srcn, srcs[f->src - 1], &s) < 0)
                return -1;
        } else {
            s = f->name;
        }
        if (!(f->path = xstrdup(s)))
            return OOM(y);
    }
    if (f->src == SM_SRC_META) {
        static const char *const metas[] = { "key", "topic", "partition", "offset", "timestamp" };
        if (ystr(y, srcn, "meta", &s) < 0)
            return -1;
        for (int i = 0; i < 5; i++)
            if (!strcmp(metas[i], s))
                f->meta = (enum sm_meta)(i + 1);
        if (!f->meta)
            return yerr(y, srcn, "%s: unknown meta '%s' (key, topic, partition, offset, "
                        "timestamp)", where, s);
    }
    if (f->src == SM_SRC_LOOKUP)
        *lookup_node = srcn;
    if (f->src == SM_SRC_EXPR) {
        *expr_node = srcn;
        if (f->type != SM_T_INT && f->type != SM_T_LONG && f->type != SM_T_DOUBLE &&
            f->type != SM_T_TIMESTAMP)
            return yerr(y, srcn, "%s: a computed field is int, long, double or timestamp",
                        where);
    }
    if (f->type == SM_T_LIST && f->src != SM_SRC_PATH)
        return yerr(y, fn, "%s: a list comes from a JSON path", where);

    int flag;
    if ((v = yget(y, fn, "required"))) {
        if (ybool(y, v, "required", &flag) < 0)
            return -1;
        f->required = flag;
        if (flag && f->src == SM_SRC_LOOKUP)
            return yerr(y, v, "%s: a lookup field is never required; use lookup missing: error",
                        where);
    }
    if ((v = yget(y, fn, "hidden"))) {
        if (ybool(y, v, "hidden", &flag) < 0)
            return -1;
        f->hidden = flag;
    }
    if ((v = yget(y, fn, "stringify"))) {
        if (ybool(y, v, "stringify", &flag) < 0)
            return -1;
        if (flag && vtype(f) != SM_T_STRING)
            return yerr(y, v, "%s: stringify is for string fields", where);
        f->stringify = flag;
    }
    enum sm_ftype vt = vtype(f);
    if ((v = yget(y, fn, "unit"))) {
        if (vt != SM_T_TIMESTAMP)
            return yerr(y, v, "%s: unit is for timestamp fields", where);
        if (ystr(y, v, "unit", &s) < 0)
            return -1;
        if (!strcmp(s, "s"))
            f->unit_num = 1000;
        else if (!strcmp(s, "ms"))
            ;
        else if (!strcmp(s, "us"))
            f->unit_den = 1000;
        else if (!strcmp(s, "ns"))
            f->unit_den = 1000000;
        else
            return yerr(y, v, "%s: unknown unit '%s' (s, ms, us, ns)", where, s);
    }
    if ((v = yget(y, fn, "format"))) {
        char msg[SM_ERR];
        if (vt != SM_T_TIMESTAMP)
            return yerr(y, v, "%s: format is for timestamp fields", where);
        if (ystr(y, v, "format", &s) < 0)
            return -1;
        if (!(f->fmt = sm_tsfmt_compile(s, msg, sizeof(msg))))
            return yerr(y, v, "%s: %s", where, msg);
    }
    if ((v = yget(y, fn, "tz"))) {
        if (vt != SM_T_TIMESTAMP)
            return yerr(y, v, "%s: tz is for timestamp fields", where);
        if (ystr(y, v, "tz", &s) < 0)
            return -1;
        if (parse_tz(s, &f->tz_min) < 0)
            return yerr(y, v, "%s: tz must be UTC or a fixed offset like +01:00 (got '%s')",
                        where, s);
    }
    if ((v = yget(y, fn, "strip"))) {
        if (vt != SM_T_INT && vt != SM_T_LONG && vt != SM_T_DOUBLE && vt != SM_T_TIMESTAMP)
            return yerr(y, v, "%s: strip is for number and timestamp fields", where);
        if (ystr(y, v, "strip", &s) < 0)
            return -1;
        if (!(f->strip = xstrdup(s)))
            return OOM(y);
    }
    if ((v = yget(y, fn, "null_values"))) {
        if (ystrlist(y, v, "null_values", &f->nulls, &f->nnulls) < 0)
            return -1;
    } else if (m->nnulls_default) {
        f->nulls = calloc(m->nnulls_default + 1, sizeof(char *));
        if (!f->nulls)
            return OOM(y);
        for (size_t i = 0; i < m->nnulls_default; i++) {
            if (!(f->nulls[i] = xstrdup(m->nulls_default[i])))
                return OOM(y);
            f->nnulls++;
        }
    }
    if ((v = yget(y, fn, "default")) && !is_null_scalar(v)) {
        char msg[SM_ERR];
        if (f->type == SM_T_LIST)
            return yerr(y, v, "%s: a list has no default", where);
        if (f->required)
            return yerr(y, v, "%s: required and default exclude each other", where);
        if (ystr(y, v, "default", &s) < 0)
            return -1;
        if (const_val(m, f, s, strlen(s), &f->def, msg, sizeof(msg)) < 0)
            return yerr(y, v, "%s: default: %s", where, msg);
        f->has_default = 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Lookups                                                                   */
/* ------------------------------------------------------------------------ */

/* Adds key -> text (coerced to the field type; NULL/empty text = null). */
static int lk_put(struct sm_mapper *m, struct sm_field *f, const char *key, size_t klen,
                  const char *text, size_t tlen, int line, int replace, char *msg, size_t msgsz)
{
    struct sm_val v = { .t = SPOKE_TYPE_NULL };
    size_t bad;
    if (!klen) {
        snprintf(msg, msgsz, "empty key");
        return -1;
    }
    if (!sm_utf8_valid(key, klen, &bad)) {
        snprintf(msg, msgsz, "key is not valid UTF-8");
        return -1;
    }
    if (text && tlen) {
        char why[SM_ERR];
        if (const_val(m, f, text, tlen, &v, why, sizeof(why)) < 0) {
            snprintf(msg, msgsz, "%.64s: %.180s", f->name, why);
            return -1;
        }
    }
    int existed;
    struct sm_hent *e = sm_hmap_put(&f->lk, key, klen, &existed);
    if (!e) {
        sm_val_release(&v);
        snprintf(msg, msgsz, "out of memory");
        return -1;
    }
    if (existed && !replace) {
        char q[64];
        sm_val_release(&v);
        sm_quote(key, klen, q, sizeof(q));
        if (e->line)
            snprintf(msg, msgsz, "duplicate key %s (first at line %d)", q, e->line);
        else
            snprintf(msg, msgsz, "duplicate key %s", q);
        return -1;
    }
    sm_val_release(&e->val);
    e->val = v;
    e->line = line;
    return 0;
}

static char *read_all(const char *path, size_t max, size_t *len, char *msg, size_t msgsz)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(msg, msgsz, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fileno(fp), &sb) < 0 || !S_ISREG(sb.st_mode)) {
        snprintf(msg, msgsz, "%s is not a regular file", path);
        fclose(fp);
        return NULL;
    }
    if ((size_t)sb.st_size > max) {
        snprintf(msg, msgsz, "%s is larger than %zu bytes", path, max);
        fclose(fp);
        return NULL;
    }
    char *buf = malloc((size_t)sb.st_size + 1);
    if (!buf) {
        snprintf(msg, msgsz, "out of memory reading %s", path);
        fclose(fp);
        return NULL;
    }
    size_t n = fread(buf, 1, (size_t)sb.st_size, fp);
    if (ferror(fp)) {
        snprintf(msg, msgsz, "cannot read %s: %s", path, strerror(errno));
        free(buf);
        fclose(fp);
        return NULL;
    }
    fclose(fp);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Next CSV record of buf at *pos (a record ends at a line break outside
 * quotes); sets [*s, *e) without the line ending. 0 at the end. */
static int csv_record(const char *buf, size_t len, size_t *pos, size_t *s, size_t *e,
                      int *lines)
{
    if (*pos >= len)
        return 0;
    size_t i = *pos;
    int q = 0;
    *s = i;
    *lines = 1;
    while (i < len) {
        if (buf[i] == '"')
            q = !q;
        else if (buf[i] == '\n' && !q)
            break;
        else if (buf[i] == '\n')
            (*lines)++;
        i++;
    }
    *e = i;
    if (*e > *s && buf[*e - 1] == '\r')
        (*e)--;
    *pos = i + 1;
    return 1;
}

/* A CSV table: a header line naming the columns, then a line per entry.
 * Tables are often written by hand or exported with padding, so the spaces
 * and tabs around an unquoted cell (header names included) are not part of
 * it: "16107, 75016\t" is the key 16107 and the value 75016, where a
 * padded key would otherwise never match and every record would silently
 * miss. Quoted cells are kept byte for byte (the way to mean a blank). */
static int lk_load_csv(struct sm_mapper *m, struct sm_field *f, const char *path, const char *buf,
                       size_t len, const char *kcol, const char *vcol, char *err, size_t errsz)
{
    struct sm_csvcell *cells = NULL;
    size_t cap = 0, nc, pos = 0, s, e, hdr_n = 0, ki = SIZE_MAX, vi = SIZE_MAX;
    int line = 1, lines, rc = -1;
    char msg[SM_ERR];
    char **hdr = NULL;

    if (len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3))
        pos = 3;  /* a UTF-8 byte order mark */
    if (!csv_record(buf, len, &pos, &s, &e, &lines)) {
        snprintf(err, errsz, "%s: empty file (a header line is needed)", path);
        return -1;
    }
    if (sm_csv_split_blanks(buf + s, e - s, ',', &cells, &cap, &nc, msg, sizeof(msg)) < 0) {
        snprintf(err, errsz, "%s:%d: %s", path, line, msg);
        goto out;
    }
    hdr = calloc(nc, sizeof(*hdr));
    if (!hdr)
        goto oom;
    for (size_t i = 0; i < nc; i++) {
        const char *t;
        size_t tn;
        sm_csv_cell_text(&m->arena, &cells[i], &t, &tn);
        if (!t || !(hdr[i] = xstrndup(t, tn)))
            goto oom;
        hdr_n++;
        /* A column the table is read by must be named once: which one
         * would be meant is not for the loader to guess. */
        for (int kv = 0; kv < 2; kv++) {
            size_t *at = kv ? &vi : &ki;
            if (strcmp(hdr[i], kv ? vcol : kcol))
                continue;
            if (*at != SIZE_MAX && *at != i) {
                snprintf(err, errsz, "%s:1: column '%s' is in the header twice (columns %zu and "
                         "%zu)", path, hdr[i], *at + 1, i + 1);
                goto out;
            }
            *at = i;
        }
    }
    sm_arena_reset(&m->arena);
    if (ki == SIZE_MAX || vi == SIZE_MAX) {
        char cols[160];
        size_t k = 0;
        cols[0] = '\0';
        for (size_t i = 0; i < nc && k + 4 < sizeof(cols); i++) {
            int w = snprintf(cols + k, sizeof(cols) - k, "%s%s", i ? ", " : "", hdr[i]);
            k += w > 0 ? (size_t)w : 0;
        }
        snprintf(err, errsz, "%s:1: no column '%s' in the header (columns: %s)", path,
                 ki == SIZE_MAX ? kcol : vcol, cols);
        goto out;
    }
    line += lines;
    while (csv_record(buf, len, &pos, &s, &e, &lines)) {
        int at = line;
        line += lines;
        size_t b = s;
        while (b < e && (buf[b] == ' ' || buf[b] == '\t'))
            b++;
        if (b == e)
            continue;  /* blank line, or only blanks */
        size_t bad;
        if (!sm_utf8_valid(buf + s, e - s, &bad)) {
            snprintf(err, errsz, "%s:%d: invalid UTF-8 at byte %zu of the line", path, at, bad);
            goto out;
        }
        if (sm_csv_split_blanks(buf + s, e - s, ',', &cells, &cap, &nc, msg, sizeof(msg)) < 0) {
            snprintf(err, errsz, "%s:%d: %s", path, at, msg);
            goto out;
        }
        if (nc != hdr_n) {
            snprintf(err, errsz, "%s:%d: %zu columns, the header has %zu", path, at, nc, hdr_n);
            goto out;
        }
        const char *k, *v;
        size_t kn, vn;
        sm_csv_cell_text(&m->arena, &cells[ki], &k, &kn);
        sm_csv_cell_text(&m->arena, &cells[vi], &v, &vn);
        if (!k || !v)
            goto oom;
        if (lk_put(m, f, k, kn, v, vn, at, 0, msg, sizeof(msg)) < 0) {
            snprintf(err, errsz, "%s:%d: %s", path, at, msg);
            goto out;
        }
        sm_arena_reset(&m->arena);
    }
    rc = 0;
    goto out;
oom:
    snprintf(err, errsz, "out of memory loading %s", path);
out:
    strlist_free(hdr, hdr_n);
    free(cells);
    sm_arena_reset(&m->arena);
    return rc;
}

/* Text of a JSON scalar for lk_put (NULL for null). */
static int json_scalar_text(const json_t *v, char *buf, size_t bufsz, const char **t, size_t *n)
{
    switch (json_typeof(v)) {
    case JSON_NULL:
        *t = NULL;
        *n = 0;
        return 0;
    case JSON_STRING:
        *t = json_string_value(v);
        *n = json_string_length(v);
        return 0;
    case JSON_INTEGER:
        *n = sm_fmt_int((int64_t)json_integer_value(v), buf);
        *t = buf;
        return 0;
    case JSON_REAL:
        *n = sm_fmt_double(json_real_value(v), buf);
        *t = buf;
        return 0;
    case JSON_TRUE:
    case JSON_FALSE:
        *t = json_is_true(v) ? "true" : "false";
        *n = strlen(*t);
        return 0;
    default:
        (void)bufsz;
        return -1;
    }
}

static int lk_load_json(struct sm_mapper *m, struct sm_field *f, const char *path,
                        const char *buf, size_t len, const char *kcol, const char *vcol,
                        char *err, size_t errsz)
{
    json_error_t je;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    char msg[SM_ERR], num[40], kb[40];
    int rc = -1;
    if (!root) {
        snprintf(err, errsz, "%s:%d:%d: invalid JSON: %s", path, je.line, je.column, je.text);
        return -1;
    }
    if (json_is_object(root)) {
        const char *k;
        json_t *v;
        json_object_foreach(root, k, v) {
            const char *t;
            size_t tn;
            char q[64];
            sm_quote(k, strlen(k), q, sizeof(q));
            if (json_scalar_text(v, num, sizeof(num), &t, &tn) < 0) {
                snprintf(err, errsz, "%s: key %s: the value must be a string, number, boolean "
                         "or null", path, q);
                goto out;
            }
            if (lk_put(m, f, k, strlen(k), t, tn, 0, 0, msg, sizeof(msg)) < 0) {
                snprintf(err, errsz, "%s: key %s: %s", path, q, msg);
                goto out;
            }
        }
    } else if (json_is_array(root)) {
        size_t i;
        json_t *o;
        json_array_foreach(root, i, o) {
            json_t *kv = json_is_object(o) ? json_object_get(o, kcol) : NULL;
            json_t *vv = json_is_object(o) ? json_object_get(o, vcol) : NULL;
            const char *kt, *vt;
            size_t kn, vn;
            if (!kv || json_scalar_text(kv, kb, sizeof(kb), &kt, &kn) < 0 || !kt) {
                snprintf(err, errsz, "%s: element %zu: no scalar member '%s'", path, i, kcol);
                goto out;
            }
            if (vv && json_scalar_text(vv, num, sizeof(num), &vt, &vn) < 0) {
                snprintf(err, errsz, "%s: element %zu: member '%s' must be a string, number, "
                         "boolean or null", path, i, vcol);
                goto out;
            }
            if (!vv) {
                vt = NULL;
                vn = 0;
            }
            if (lk_put(m, f, kt, kn, vt, vn, 0, 0, msg, sizeof(msg)) < 0) {
                snprintf(err, errsz, "%s: element %zu: %s", path, i, msg);
                goto out;
            }
        }
    } else {
        snprintf(err, errsz, "%s: a JSON lookup file is an object {key: value} or an array of "
                 "objects", path);
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

static int lk_load_file(struct sm_mapper *m, struct sm_field *f, const char *path,
                        const char *kcol, const char *vcol, char *err, size_t errsz)
{
    size_t len;
    char msg[SM_ERR];
    char *buf = read_all(path, SM_LOOKUP_MAX, &len, msg, sizeof(msg));
    if (!buf) {
        snprintf(err, errsz, "lookup for '%s': %s", f->name, msg);
        return -1;
    }
    /* A UTF-8 byte order mark (editors on Windows write one) is not JSON:
     * skipped for both formats. */
    size_t bom = len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3) ? 3 : 0, i = bom;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r'))
        i++;
    size_t pl = strlen(path);
    int is_json = (pl > 5 && !strcmp(path + pl - 5, ".json")) ||
                  (i < len && (buf[i] == '{' || buf[i] == '['));
    int rc = is_json ? lk_load_json(m, f, path, buf + bom, len - bom, kcol, vcol, err, errsz)
                     : lk_load_csv(m, f, path, buf, len, kcol, vcol, err, errsz);
    free(buf);
    return rc;
}

/* A path relative to the schema file's directory (absolute paths as is). */
static char *rel_to(const char *schema_file, const char *p)
{
    if (p[0] == '/')
        return xstrdup(p);
    const char *slash = strrchr(schema_file, '/');
    if (!slash)
        return xstrdup(p);
    size_t dl = (size_t)(slash - schema_file) + 1, pl = strlen(p);
    char *r = malloc(dl + pl + 1);
    if (r) {
        memcpy(r, schema_file, dl);
        memcpy(r + dl, p, pl + 1);
    }
    return r;
}

static const char *const missing_names[] = { "null", "default", "drop", "error" };

static int missing_of(const char *s, enum sm_missing *out)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(missing_names[i], s)) {
            *out = (enum sm_missing)(i + 1);
            return 0;
        }
    return -1;
}

static const char *const lookup_keys[] = {
    "key", "missing", "file", "key_column", "value_column", "map", NULL
};

/* Second pass for a lookup field: key, missing, and the table (from the
 * connector config when it gives one, else from the schema). */

/* A lookup.inline entry "key=value": the key and the value without the
 * spaces and tabs around them (as a CSV table's unquoted cells), the value
 * may be empty or hold '='. -1 without '='. */
static int inline_split(const char *ent, const char **k, size_t *kn, const char **v, size_t *vn)
{
    const char *eq = strchr(ent, '=');
    if (!eq)
        return -1;
    const char *a = ent, *b = eq;
    while (a < b && (*a == ' ' || *a == '\t'))
        a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
        b--;
    const char *c = eq + 1, *d = c + strlen(c);
    while (c < d && (*c == ' ' || *c == '\t'))
        c++;
    while (d > c && (d[-1] == ' ' || d[-1] == '\t'))
        d--;
    *k = a;
    *kn = (size_t)(b - a);
    *v = c;
    *vn = (size_t)(d - c);
    return 0;
}

static int lookup_setup(struct yl *y, struct sm_mapper *m, size_t fi, const yaml_node_t *ln,
                        const struct sm_opts *o, int configured)
{
    struct sm_field *f = &m->f[fi];
    char where[160], msg[SM_ERR];
    const char *s;
    yaml_node_t *v;
    snprintf(where, sizeof(where), "field '%s': lookup", f->name);
    if (ykeys(y, ln, where, lookup_keys) < 0)
        return -1;
    if (!(v = yget(y, ln, "key")))
        return yerr(y, ln, "%s: no key (the field whose value is looked up)", where);
    if (ystr(y, v, "key", &s) < 0)
        return -1;
    for (size_t i = 0; i < fi; i++)
        if (!strcmp(m->f[i].name, s))
            f->lk_key = (int)i;
    if (f->lk_key < 0)
        return yerr(y, v, "%s: key '%s' is not a field declared before this one", where, s);
    const struct sm_field *kf = &m->f[f->lk_key];
    if (kf->stage != 0 || kf->type == SM_T_LIST)
        return yerr(y, v, "%s: key '%s' must be a source field (path, column or meta) and not "
                    "a list", where, s);

    f->lk_missing = SM_MISS_NULL;
    if ((v = yget(y, ln, "missing"))) {
        if (ystr(y, v, "missing", &s) < 0)
            return -1;
        if (missing_of(s, &f->lk_missing) < 0)
            return yerr(y, v, "%s: missing must be null, default, drop or error (got '%s')",
                        where, s);
    }
    /* A lookup field's value is its default only on a miss with missing:
     * default; any other policy would leave a default silently unused. */
    const enum sm_missing schema_missing = f->lk_missing;
    if (f->has_default && schema_missing != SM_MISS_DEFAULT && !(configured && o->lookup_missing))
        return yerr(y, ln, "%s: a default is used only with missing: default (here missing: "
                    "%s): set missing: default, or remove the field's default", where,
                    missing_names[schema_missing - 1]);

    const char *kcol = kf->name, *vcol = f->name;
    if ((v = yget(y, ln, "key_column")) && ystr(y, v, "key_column", &kcol) < 0)
        return -1;
    if ((v = yget(y, ln, "value_column")) && ystr(y, v, "value_column", &vcol) < 0)
        return -1;

    if (configured) {
        if (o->lookup_missing && missing_of(o->lookup_missing, &f->lk_missing) < 0) {
            snprintf(y->err, y->errsz, "lookup.missing must be null, default, drop or error");
            return -1;
        }
        /* The schema's default stays usable when the schema's own missing
         * is default (this connector chose another policy on purpose). */
        if (f->has_default && f->lk_missing != SM_MISS_DEFAULT &&
            schema_missing != SM_MISS_DEFAULT)
            return yerr(y, ln, "%s: a default is used only with missing: default (lookup.missing "
                        "is %s): set lookup.missing: default, or remove the field's default",
                        where, o->lookup_missing);
        /* sm_opts_check refused lookup.missing other than default; without
         * lookup.missing, the schema's missing decides. */
        if (o->lookup_default && f->lk_missing != SM_MISS_DEFAULT) {
            snprintf(y->err, y->errsz, "lookup.default is used only with missing: default, "
                     "and field '%.64s' has missing: %s in the schema (lookup.missing is not "
                     "set): set lookup.missing: default, or remove lookup.default", f->name,
                     missing_names[f->lk_missing - 1]);
            return -1;
        }
        if (o->lookup_default) {
            sm_val_release(&f->def);
            if (const_val(m, f, o->lookup_default, strlen(o->lookup_default), &f->def, msg,
                          sizeof(msg)) < 0) {
                snprintf(y->err, y->errsz, "lookup.default: %s", msg);
                return -1;
            }
            f->has_default = 1;
        }
        if (o->lookup_key_column)
            kcol = o->lookup_key_column;
        if (o->lookup_value_column)
            vcol = o->lookup_value_column;
    }
    if (f->lk_missing == SM_MISS_DEFAULT && !f->has_default)
        return yerr(y, ln, "%s: missing: default needs a default (the field's default, or "
                    "lookup.default in the connector config)", where);

    char desc[SM_ERR];
    desc[0] = '\0';
    if (configured && (o->lookup_file || o->nlookup_inline)) {
        /* The connector's table replaces the schema's. */
        if (o->lookup_file) {
            if (lk_load_file(m, f, o->lookup_file, kcol, vcol, y->err, y->errsz) < 0)
                return -1;
            snprintf(desc, sizeof(desc), "%s", o->lookup_file);
        }
        for (size_t i = 0; i < o->nlookup_inline; i++) {
            const char *ent = o->lookup_inline[i], *ik, *iv;
            size_t ikn, ivn;
            if (inline_split(ent, &ik, &ikn, &iv, &ivn) < 0) {
                snprintf(y->err, y->errsz, "lookup.inline: entry %zu '%.60s' is not key=value",
                         i + 1, ent);
                return -1;
            }
            /* Inline entries override the file's (a patch over a table). */
            if (lk_put(m, f, ik, ikn, iv, ivn, 0, o->lookup_file != NULL, msg, sizeof(msg)) < 0) {
                snprintf(y->err, y->errsz, "lookup.inline: entry %zu '%.60s': %s", i + 1, ent,
                         msg);
                return -1;
            }
        }
        if (o->nlookup_inline)
            snprintf(desc + strlen(desc), sizeof(desc) - strlen(desc), "%slookup.inline",
                     desc[0] ? " + " : "");
    } else {
        const yaml_node_t *fnode = yget(y, ln, "file"), *mnode = yget(y, ln, "map");
        if (!fnode && !mnode)
            return yerr(y, ln, "%s: no table: give file or map here, or lookup.file / "
                        "lookup.inline in the connector config", where);
        if (fnode) {
            if (ystr(y, fnode, "file", &s) < 0)
                return -1;
            char *path = rel_to(y->file, s);
            if (!path)
                return OOM(y);
            int rc = lk_load_file(m, f, path, kcol, vcol, y->err, y->errsz);
            snprintf(desc, sizeof(desc), "%s", path);
            free(path);
            if (rc < 0)
                return -1;
        }
        if (mnode) {
            if (mnode->type != YAML_MAPPING_NODE)
                return yerr(y, mnode, "%s: map must be a mapping of key: value", where);
            if (ydupkeys(y, mnode, "lookup map") < 0)
                return -1;
            for (yaml_node_pair_t *p = mnode->data.mapping.pairs.start;
                 p < mnode->data.mapping.pairs.top; p++) {
                yaml_node_t *kn = ynode(y, p->key), *vn = ynode(y, p->value);
                const char *ks, *vs = NULL;
                if (ystr(y, kn, "lookup map key", &ks) < 0)
                    return -1;
                if (!is_null_scalar(vn) && ystr(y, vn, "lookup map value", &vs) < 0)
                    return -1;
                if (lk_put(m, f, ks, strlen(ks), vs, vs ? strlen(vs) : 0, 0, fnode != NULL, msg,
                           sizeof(msg)) < 0)
                    return yerr(y, kn, "%s: %s", where, msg);
            }
            snprintf(desc + strlen(desc), sizeof(desc) - strlen(desc), "%sschema map",
                     desc[0] ? " + " : "");
        }
    }
    /* A table where every key misses is a mistake (a header-only CSV, an
     * empty export, a value column never filled): refused, not run with
     * every record null, dropped or failed. */
    size_t with_value = 0;
    for (size_t i = 0; i < f->lk.n; i++)
        with_value += f->lk.ent[i].val.t != SPOKE_TYPE_NULL;
    if (!with_value) {
        char what[SM_ERR];
        if (f->lk.n)
            snprintf(what, sizeof(what), "none of its %zu entries has a value", f->lk.n);
        else
            snprintf(what, sizeof(what), "it has no entries");
        if (configured && (o->lookup_file || o->nlookup_inline))
            snprintf(y->err, y->errsz, "lookup for '%s': the table (%s) is empty: %s, so every "
                     "key would miss", f->name, desc, what);
        else
            yerr(y, ln, "%s: the table (%s) is empty: %s, so every key would miss", where,
                 desc, what);
        return -1;
    }
    if (!(f->lk_desc = xstrdup(desc)))
        return OOM(y);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Filters                                                                   */
/* ------------------------------------------------------------------------ */

static int field_index(const struct sm_mapper *m, const char *name)
{
    for (size_t i = 0; i < m->nf; i++)
        if (!strcmp(m->f[i].name, name))
            return (int)i;
    return -1;
}

static struct sm_filter *filter_new(struct sm_mapper *m)
{
    struct sm_filter *a = realloc(m->flt, (m->nflt + 1) * sizeof(*a));
    if (!a)
        return NULL;
    m->flt = a;
    memset(&a[m->nflt], 0, sizeof(a[0]));
    return &a[m->nflt++];
}

/* Adds text (coerced to the field's type, canonical form) to a filter set. */
static int set_add(struct sm_mapper *m, struct sm_filter *fl, const char *text, char *msg,
                   size_t msgsz)
{
    struct sm_val v;
    char buf[64];
    const char *p;
    size_t n;
    int existed;
    if (const_val(m, &m->f[fl->field], text, strlen(text), &v, msg, msgsz) < 0)
        return -1;
    sm_canon(&v, buf, &p, &n);
    struct sm_hent *e = sm_hmap_put(&fl->set, p, n, &existed);
    sm_val_release(&v);
    if (!e) {
        snprintf(msg, msgsz, "out of memory");
        return -1;
    }
    return 0;
}

static const char *const filter_keys[] = { "field", "eq", "ne", "in", "not_in", "min", "max", NULL };

/* A filter value for a message: strings quoted, others as text. */
static void filter_val_text(const struct sm_val *v, char *buf, size_t bufsz)
{
    char tmp[64];
    const char *p;
    size_t n;
    sm_text(v, tmp, &p, &n);
    if (v->t == SPOKE_TYPE_STRING)
        sm_quote(p, n, buf, bufsz);
    else
        snprintf(buf, bufsz, "%.*s", (int)(n > 40 ? 40 : n), p);
}

/* After the filter at node fn on field fi, whose conditions are
 * m->flt[first..]: refuses conditions no record can meet, so that a typo
 * does not silently drop everything: an empty in, and a min above a max on
 * the same field (in this filter, or this one and an earlier one). */
static int filter_contradiction(struct yl *y, struct sm_mapper *m, int fi, const yaml_node_t *fn,
                                size_t first)
{
    const yaml_node_t *v = yget(y, fn, "in");
    if (v && v->data.sequence.items.top == v->data.sequence.items.start)
        return yerr(y, v, "filter on '%s': in is empty: no record can pass", m->f[fi].name);
    for (size_t a = 0; a < m->nflt; a++) {
        const struct sm_filter *lo = &m->flt[a];
        if (lo->field != fi || lo->op != SM_F_MIN)
            continue;
        for (size_t b = 0; b < m->nflt; b++) {
            const struct sm_filter *hi = &m->flt[b];
            if (hi->field != fi || hi->op != SM_F_MAX || (a < first && b < first) ||
                sm_val_cmp(&lo->v, &hi->v) <= 0)
                continue;
            char lt[64], ht[64];
            filter_val_text(&lo->v, lt, sizeof(lt));
            filter_val_text(&hi->v, ht, sizeof(ht));
            const yaml_node_t *at = yget(y, fn, b >= first ? "max" : "min");
            return yerr(y, at, "filter on '%s': min %s is above max %s: no record can pass",
                        m->f[fi].name, lt, ht);
        }
    }
    return 0;
}

static int filters_parse(struct yl *y, struct sm_mapper *m, const yaml_node_t *seq)
{
    char msg[SM_ERR];
    if (seq->type != YAML_SEQUENCE_NODE)
        return yerr(y, seq, "filters must be a list");
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top;
         it++) {
        yaml_node_t *fn = ynode(y, *it), *v;
        const char *s;
        if (ykeys(y, fn, "filter", filter_keys) < 0)
            return -1;
        if (!(v = yget(y, fn, "field")))
            return yerr(y, fn, "filter without a field");
        if (ystr(y, v, "field", &s) < 0)
            return -1;
        int fi = field_index(m, s);
        if (fi < 0)
            return yerr(y, v, "filter: no field '%s'", s);
        if (m->f[fi].type == SM_T_LIST)
            return yerr(y, v, "filter: '%s' is a list; filters test single values", s);
        int nops = 0;
        size_t first = m->nflt;
        for (int op = SM_F_EQ; op <= SM_F_MAX; op++) {
            if (!(v = yget(y, fn, filter_keys[op])))
                continue;
            nops++;
            struct sm_filter *fl = filter_new(m);
            if (!fl)
                return OOM(y);
            fl->field = fi;
            fl->op = (enum sm_fop)op;
            fl->stage = m->f[fi].stage;
            if (op == SM_F_IN || op == SM_F_NOT_IN) {
                if (v->type != YAML_SEQUENCE_NODE)
                    return yerr(y, v, "filter: %s must be a list", filter_keys[op]);
                for (yaml_node_item_t *e = v->data.sequence.items.start;
                     e < v->data.sequence.items.top; e++) {
                    yaml_node_t *en = ynode(y, *e);
                    if (ystr(y, en, filter_keys[op], &s) < 0)
                        return -1;
                    if (set_add(m, fl, s, msg, sizeof(msg)) < 0)
                        return yerr(y, en, "filter on '%s': %s", m->f[fi].name, msg);
                }
                continue;
            }
            if (ystr(y, v, filter_keys[op], &s) < 0)
                return -1;
            if ((op == SM_F_MIN || op == SM_F_MAX) && m->f[fi].type == SM_T_BOOL)
                return yerr(y, v, "filter: min and max do not apply to bool fields");
            if (const_val(m, &m->f[fi], s, strlen(s), &fl->v, msg, sizeof(msg)) < 0)
                return yerr(y, v, "filter on '%s': %s", m->f[fi].name, msg);
        }
        if (!nops)
            return yerr(y, fn, "filter on '%s' has no condition (eq, ne, in, not_in, min, max)",
                        m->f[fi].name);
        if (filter_contradiction(y, m, fi, fn, first) < 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The mapper                                                                */
/* ------------------------------------------------------------------------ */

void sm_mapper_free(struct sm_mapper *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nf; i++) {
        struct sm_field *f = &m->f[i];
        free(f->name);
        free(f->path);
        sm_val_release(&f->def);
        sm_tsfmt_free(f->fmt);
        free(f->strip);
        strlist_free(f->nulls, f->nnulls);
        sm_hmap_free(&f->lk);
        free(f->lk_desc);
        sm_expr_free(f->expr);
    }
    free(m->f);
    for (size_t i = 0; i < m->nflt; i++) {
        sm_val_release(&m->flt[i].v);
        sm_hmap_free(&m->flt[i].set);
    }
    free(m->flt);
    if (m->schema)
        m->api->schema_unref(m->schema);
    node_free(m->api, m->root);
    free(m->setbuf);
    free(m->shape.bytes);
    free(m->shape.v);
    if (m->sj)
        sj_parser_free(m->sj);
    free(m->text);
    strlist_free(m->columns, m->ncol);
    strlist_free(m->nulls_default, m->nnulls_default);
    free(m->cells);
    free(m->cap);
    if (m->mcap)
        for (size_t i = 0; i < m->nslots; i++)
            free(m->mcap[i].v);
    free(m->mcap);
    free(m->slot_multi);
    free(m->multi);
    for (int st = 0; st < 3; st++)
        free(m->stage[st]);
    for (size_t i = 0; i < m->nf && m->lists; i++)
        free(m->lists[i].v);
    free(m->lists);
    free(m->vals);
    sm_arena_free(&m->arena);
    free(m->file);
    free(m->name);
    free(m);
}

static const char *const top_keys[] = {
    "schema", "description", "input", "key", "timestamp", "fields", "filters", NULL
};
static const char *const input_keys[] = {
    "format", "columns", "header", "delimiter", "null_values", NULL
};

static int input_parse(struct yl *y, struct sm_mapper *m, const yaml_node_t *in,
                       const struct sm_opts *o)
{
    const char *s = NULL;
    yaml_node_t *v;
    m->format = SM_FMT_JSON;
    m->delim = ',';
    if (in && ykeys(y, in, "input", input_keys) < 0)
        return -1;
    if (in && (v = yget(y, in, "format"))) {
        if (ystr(y, v, "format", &s) < 0)
            return -1;
        if (strcmp(s, "json") && strcmp(s, "csv"))
            return yerr(y, v, "input format must be json or csv (got '%s')", s);
    }
    if (o->input_format)
        s = o->input_format;
    if (s && !strcmp(s, "csv"))
        m->format = SM_FMT_CSV;
    if (in && (v = yget(y, in, "columns")) &&
        ystrlist(y, v, "columns", &m->columns, &m->ncol) < 0)
        return -1;
    if (in && (v = yget(y, in, "header")) && ybool(y, v, "header", &m->header) < 0)
        return -1;
    if (in && (v = yget(y, in, "delimiter"))) {
        if (ystr(y, v, "delimiter", &s) < 0)
            return -1;
        if (strlen(s) != 1 || *s == '"' || *s == '\n' || *s == '\r')
            return yerr(y, v, "delimiter must be one character (not a quote or a line break)");
        m->delim = *s;
    }
    if (in && (v = yget(y, in, "null_values"))) {
        if (ystrlist(y, v, "null_values", &m->nulls_default, &m->nnulls_default) < 0)
            return -1;
    } else if (m->format == SM_FMT_CSV) {
        /* CSV has no null: an empty cell is the usual way to say it. */
        m->nulls_default = calloc(2, sizeof(char *));
        if (!m->nulls_default || !(m->nulls_default[0] = xstrdup("")))
            return OOM(y);
        m->nnulls_default = 1;
    }
    if (m->format == SM_FMT_CSV && !m->ncol)
        return yerr(y, in, "CSV input needs input.columns: the column names in order (a header "
                    "line in the stream is not enough: a restart resumes after it)");
    if (m->format == SM_FMT_JSON && (m->ncol || m->header))
        return yerr(y, in, "columns and header are for CSV input");
    return 0;
}

static int load_yaml(struct yl *y, const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(y->err, y->errsz, "cannot open schema file %s: %s", path, strerror(errno));
        return -1;
    }
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        fclose(fp);
        return OOM(y);
    }
    yaml_parser_set_input_file(&parser, fp);
    int ok = yaml_parser_load(&parser, &y->doc);
    if (!ok) {
        snprintf(y->err, y->errsz, "%s:%zu:%zu: invalid YAML: %s%s%s", path,
                 parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                 parser.problem ? parser.problem : "syntax error",
                 parser.context ? " " : "", parser.context ? parser.context : "");
    }
    yaml_parser_delete(&parser);
    fclose(fp);
    if (!ok)
        return -1;
    y->have_doc = 1;
    if (!yaml_document_get_root_node(&y->doc)) {
        snprintf(y->err, y->errsz, "%s: empty schema file", path);
        return -1;
    }
    return 0;
}

static enum spoke_type out_type(enum sm_ftype t)
{
    switch (t) {
    case SM_T_STRING: return SPOKE_TYPE_STRING;
    case SM_T_INT: case SM_T_LONG: return SPOKE_TYPE_INT;
    case SM_T_DOUBLE: return SPOKE_TYPE_DOUBLE;
    case SM_T_BOOL: return SPOKE_TYPE_BOOL;
    case SM_T_TIMESTAMP: return SPOKE_TYPE_TIMESTAMP;
    default: return SPOKE_TYPE_LIST;
    }
}

/* Which lookup field the connector's lookup.* keys configure. */
static int lookup_target(struct sm_mapper *m, const struct sm_opts *o, char *err, size_t errsz)
{
    int given = o->lookup_file || o->nlookup_inline || o->lookup_key_column ||
                o->lookup_value_column || o->lookup_missing || o->lookup_default;
    if (o->lookup_field) {
        int i = field_index(m, o->lookup_field);
        if (i < 0 || m->f[i].src != SM_SRC_LOOKUP) {
            snprintf(err, errsz, "lookup.field: the schema has no lookup field '%s'",
                     o->lookup_field);
            return -2;
        }
        return i;
    }
    int found = -1, count = 0;
    char names[160] = "";
    for (size_t i = 0; i < m->nf; i++) {
        if (m->f[i].src != SM_SRC_LOOKUP)
            continue;
        found = (int)i;
        size_t l = strlen(names);
        snprintf(names + l, sizeof(names) - l, "%s%s", count++ ? ", " : "", m->f[i].name);
    }
    if (!given)
        return -1;
    if (count == 0) {
        snprintf(err, errsz, "lookup.* keys are set but the schema has no lookup field");
        return -2;
    }
    if (count > 1) {
        snprintf(err, errsz, "the schema has several lookup fields (%s): set lookup.field to "
                 "the one the lookup.* keys configure", names);
        return -2;
    }
    return found;
}

/* The problems sm_opts_check finds (lib/problems): a host with
 * check_problem takes them one by one, each at its key (sm_opts_check_each);
 * otherwise they are joined into the check's one errstr. */
int sm_opts_check(const struct sm_opts *o, const char **key, char *err, size_t errsz)
{
    return sm_opts_check_each(o, key, err, errsz, NULL, NULL);
}

int sm_opts_check_each(const struct sm_opts *o, const char **key, char *err, size_t errsz,
                       void (*more)(void *ctx, const char *key, const char *msg), void *ctx)
{
    struct problems p;
    sm_opts_problems(o, &p);
    return problems_report(&p, key, err, errsz, more, ctx);
}

void sm_opts_problems(const struct sm_opts *o, struct problems *pp)
{
    struct problems *p = pp;
    problems_init(p);
    if (o->filter_field && !o->nfilter_values)
        problem(p, "filter.field", "filter.field '%.64s' needs filter.values (the values of "
                "the field to keep)", o->filter_field);
    if (o->nfilter_values && !o->filter_field)
        problem(p, "filter.values", "filter.values needs filter.field (the field whose values "
                "they are)");
    /* Without lookup.missing the schema's missing decides, which only the
     * start can tell (it reads the schema). */
    /* lookup.inline alone replaces the schema's table: no file to read
     * columns from. */
    if (o->nlookup_inline && !o->lookup_file && (o->lookup_key_column || o->lookup_value_column))
        problem(p, o->lookup_key_column ? "lookup.key.column" : "lookup.value.column",
                "%s is used only with a lookup file, and lookup.inline alone replaces the "
                "schema's table: remove it, or give lookup.file",
                o->lookup_key_column ? "lookup.key.column" : "lookup.value.column");
    if (o->lookup_default && o->lookup_missing && strcmp(o->lookup_missing, "default"))
        problem(p, "lookup.default", "lookup.default is used only with lookup.missing: default "
                "(it is %.16s): set lookup.missing: default, or remove lookup.default",
                o->lookup_missing);
    for (size_t i = 0; i < o->nlookup_inline; i++) {
        const char *ent = o->lookup_inline[i], *k, *v;
        size_t kn, vn;
        if (inline_split(ent, &k, &kn, &v, &vn) < 0) {
            problem(p, "lookup.inline", "lookup.inline: entry %zu '%.60s' is not key=value "
                    "(no '=')", i + 1, ent);
            continue;
        }
        if (kn == 0) {
            problem(p, "lookup.inline", "lookup.inline: entry %zu '%.60s' has an empty key",
                    i + 1, ent);
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            const char *pk, *pv;
            size_t pkn, pvn;
            if (inline_split(o->lookup_inline[j], &pk, &pkn, &pv, &pvn) == 0 && pkn == kn &&
                !memcmp(pk, k, kn)) {
                problem(p, "lookup.inline", "lookup.inline: entries %zu and %zu both give key "
                        "'%.*s'", j + 1, i + 1, (int)(kn > 60 ? 60 : kn), k);
                break;
            }
        }
    }
}

struct sm_mapper *sm_mapper_new(const struct spoke_host_api *api, const struct sm_opts *o,
                                char *err, size_t errsz)
{
    struct yl y = { .file = o->schema_file, .err = err, .errsz = errsz };
    struct sm_mapper *m = calloc(1, sizeof(*m));
    const yaml_node_t **lookup_nodes = NULL, **expr_nodes = NULL;
    yaml_node_t *root, *v;
    const char *s;

    if (!m) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    const char *bad_key;
    if (sm_opts_check(o, &bad_key, err, errsz) != SPOKE_OK) {
        free(m);
        return NULL;
    }
    m->api = api;
    m->key_field = m->ts_field = -1;
    m->max_bytes = o->max_bytes ? o->max_bytes : 1u << 20;
    m->max_depth = o->max_depth > 0 ? o->max_depth : 64;
    m->parser = o->parser && !strcmp(o->parser, "simdjson") ? SM_PARSER_SIMDJSON
                                                             : SM_PARSER_EXTRACTOR;
    if (!(m->file = xstrdup(o->schema_file)) || !(m->root = node_new(m, "")))
        goto oom;

    if (load_yaml(&y, o->schema_file) < 0)
        goto fail;
    root = yaml_document_get_root_node(&y.doc);
    if (ykeys(&y, root, "schema", top_keys) < 0)
        goto fail;
    if ((v = yget(&y, root, "schema"))) {
        if (ystr(&y, v, "schema", &s) < 0)
            goto fail;
    } else {
        s = strrchr(o->schema_file, '/') ? strrchr(o->schema_file, '/') + 1 : o->schema_file;
    }
    if (!(m->name = xstrdup(s)))
        goto oom;
    if (input_parse(&y, m, yget(&y, root, "input"), o) < 0)
        goto fail;

    /* Fields, first pass. */
    yaml_node_t *fields = yget(&y, root, "fields");
    if (!fields) {
        yerr(&y, root, "no fields: the schema declares its output fields under fields:");
        goto fail;
    }
    if (fields->type != YAML_SEQUENCE_NODE) {
        yerr(&y, fields, "fields must be a list");
        goto fail;
    }
    size_t nf = (size_t)(fields->data.sequence.items.top - fields->data.sequence.items.start);
    if (nf == 0 || nf > SM_FIELDS_MAX) {
        yerr(&y, fields, "a schema has 1 to %d fields (got %zu)", SM_FIELDS_MAX, nf);
        goto fail;
    }
    m->f = calloc(nf, sizeof(*m->f));
    lookup_nodes = calloc(nf, sizeof(*lookup_nodes));
    expr_nodes = calloc(nf, sizeof(*expr_nodes));
    if (!m->f || !lookup_nodes || !expr_nodes)
        goto oom;
    for (size_t i = 0; i < nf; i++) {
        yaml_node_t *fn = ynode(&y, fields->data.sequence.items.start[i]);
        struct sm_field *f = &m->f[i];
        m->nf = i + 1;
        if (field_parse(&y, m, fn, f, &lookup_nodes[i], &expr_nodes[i]) < 0)
            goto fail;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(m->f[j].name, f->name)) {
                yerr(&y, fn, "field '%s' is declared twice (first at line %d)", f->name,
                     m->f[j].line);
                goto fail;
            }
        f->stage = f->src == SM_SRC_LOOKUP ? 1 : f->src == SM_SRC_EXPR ? 2 : 0;
        if (f->src == SM_SRC_PATH || f->src == SM_SRC_COLUMN)
            f->slot = (int)m->nslots++;
    }

    /* Sources: columns and paths. */
    for (size_t i = 0; i < m->nf; i++) {
        struct sm_field *f = &m->f[i];
        yaml_node_t *fn = ynode(&y, fields->data.sequence.items.start[i]);
        yaml_node_t *pn = yget(&y, fn, f->src == SM_SRC_COLUMN ? "column" : "path");
        char msg[SM_ERR];
        if (f->src == SM_SRC_COLUMN) {
            size_t c;
            for (c = 0; c < m->ncol; c++)
                if (!strcmp(m->columns[c], f->path))
                    break;
            if (c == m->ncol) {
                yerr(&y, pn ? pn : fn, "field '%s': no column '%s' in input.columns", f->name,
                     f->path);
                goto fail;
            }
            f->column = (int)c;
        } else if (f->src == SM_SRC_PATH) {
            struct step *st;
            size_t ns;
            if (parse_path(f->path, &st, &ns, msg, sizeof(msg)) < 0) {
                yerr(&y, pn ? pn : fn, "field '%s': path '%s': %s", f->name, f->path, msg);
                goto fail;
            }
            int wild = 0;
            for (size_t k = 0; k < ns; k++)
                wild |= st[k].k == ST_WILD;
            if (wild && f->type != SM_T_LIST) {
                steps_free(st, ns);
                yerr(&y, pn ? pn : fn, "field '%s': a path with [*] gives a list: type must be "
                     "list", f->name);
                goto fail;
            }
            if (!wild && f->type == SM_T_LIST) {
                /* A list field reads the elements of the array at its path. */
                struct step *st2 = realloc(st, (ns + 1) * sizeof(*st));
                if (!st2) {
                    steps_free(st, ns);
                    goto oom;
                }
                st = st2;
                memset(&st[ns], 0, sizeof(st[ns]));
                st[ns++].k = ST_WILD;
            }
            int rc = trie_add(m, f, st, ns, msg, sizeof(msg));
            steps_free(st, ns);
            if (rc < 0) {
                yerr(&y, pn ? pn : fn, "field '%s': path '%s': %s", f->name, f->path, msg);
                goto fail;
            }
        }
    }

    if (node_index(m->root) < 0)
        goto oom;

    /* Lookups and computed fields, in declaration order. */
    char cfgerr[SM_ERR];
    int target = lookup_target(m, o, cfgerr, sizeof(cfgerr));
    if (target == -2) {
        snprintf(err, errsz, "%s", cfgerr);
        goto fail;
    }
    for (size_t i = 0; i < m->nf; i++) {
        struct sm_field *f = &m->f[i];
        if (f->src == SM_SRC_LOOKUP &&
            lookup_setup(&y, m, i, lookup_nodes[i], o, (int)i == target) < 0)
            goto fail;
        if (f->src == SM_SRC_EXPR) {
            char msg[SM_ERR];
            if (ystr(&y, expr_nodes[i], "expr", &s) < 0)
                goto fail;
            if (!(f->expr = sm_expr_compile(s, m->f, m->nf, i, msg, sizeof(msg)))) {
                yerr(&y, expr_nodes[i], "field '%s': %s", f->name, msg);
                goto fail;
            }
        }
    }

    /* Filters: the schema's, then the connector's. */
    if ((v = yget(&y, root, "filters")) && filters_parse(&y, m, v) < 0)
        goto fail;
    if (o->filter_field || o->nfilter_values) {
        char msg[SM_ERR];
        if (!o->filter_field || !o->nfilter_values) {
            snprintf(err, errsz, "filter.field and filter.values go together");
            goto fail;
        }
        int fi = field_index(m, o->filter_field);
        if (fi < 0 || m->f[fi].type == SM_T_LIST) {
            snprintf(err, errsz, "filter.field: %s '%s'", fi < 0 ? "the schema has no field"
                     : "filters test single values, not the list", o->filter_field);
            goto fail;
        }
        struct sm_filter *fl = filter_new(m);
        if (!fl)
            goto oom;
        fl->field = fi;
        fl->op = SM_F_IN;
        fl->stage = m->f[fi].stage;
        for (size_t i = 0; i < o->nfilter_values; i++)
            if (set_add(m, fl, o->filter_values[i], msg, sizeof(msg)) < 0) {
                snprintf(err, errsz, "filter.values: '%.60s': %s", o->filter_values[i], msg);
                goto fail;
            }
    }

    /* Record key and timestamp. */
    const char *kname = o->key_field, *tname = o->ts_field;
    yaml_node_t *kn = yget(&y, root, "key"), *tn = yget(&y, root, "timestamp");
    if (!kname && kn && ystr(&y, kn, "key", &kname) < 0)
        goto fail;
    if (!tname && tn && ystr(&y, tn, "timestamp", &tname) < 0)
        goto fail;
    if (kname) {
        if ((m->key_field = field_index(m, kname)) < 0 || m->f[m->key_field].type == SM_T_LIST) {
            if (o->key_field)
                snprintf(err, errsz, "key.field: the schema has no %sfield '%s'",
                         m->key_field < 0 ? "" : "single-valued ", kname);
            else
                yerr(&y, kn, "key: no %sfield '%s'", m->key_field < 0 ? "" : "single-valued ",
                     kname);
            goto fail;
        }
    }
    if (tname) {
        if ((m->ts_field = field_index(m, tname)) < 0 ||
            m->f[m->ts_field].type != SM_T_TIMESTAMP) {
            if (o->ts_field)
                snprintf(err, errsz, "timestamp.field: the schema has no timestamp field '%s'",
                         tname);
            else
                yerr(&y, tn, "timestamp: no timestamp field '%s'", tname);
            goto fail;
        }
    }

    /* The output schema, once. */
    if (!(m->schema = api->schema_new()))
        goto oom;
    int visible = 0;
    for (size_t i = 0; i < m->nf; i++) {
        struct sm_field *f = &m->f[i];
        if (f->hidden)
            continue;
        int idx = api->schema_add(m->schema, f->name, out_type(f->type));
        if (idx < 0) {
            snprintf(err, errsz, "%s:%d:%d: field '%s': cannot add it to the output schema (%s)",
                     o->schema_file, f->line, f->col, f->name, api->strerror(idx));
            goto fail;
        }
        f->out = idx;
        visible++;
    }
    if (!visible) {
        snprintf(err, errsz, "%s: every field is hidden: the output would be empty",
                 o->schema_file);
        goto fail;
    }

    /* Per-record buffers. */
    m->vals = calloc(m->nf, sizeof(*m->vals));
    m->lists = calloc(m->nf, sizeof(*m->lists));
    m->cap = calloc(m->nslots ? m->nslots : 1, sizeof(*m->cap));
    m->mcap = calloc(m->nslots ? m->nslots : 1, sizeof(*m->mcap));
    m->slot_multi = calloc(m->nslots ? m->nslots : 1, 1);
    m->setbuf = calloc((m->trie_depth + 2) * m->nnodes, sizeof(*m->setbuf));
    if (!m->vals || !m->lists || !m->cap || !m->mcap || !m->slot_multi || !m->setbuf)
        goto oom;
    m->multi = calloc(m->nslots ? m->nslots : 1, sizeof(*m->multi));
    for (int st = 0; st < 3; st++)
        if (!(m->stage[st] = calloc(m->nf, sizeof(int))))
            goto oom;
    if (!m->multi)
        goto oom;
    for (size_t i = 0; i < m->nf; i++) {
        struct sm_field *f = &m->f[i];
        f->null_empty = f->nnulls == 1 && f->nulls[0][0] == '\0';
        if (m->f[i].multi) {
            m->slot_multi[m->f[i].slot] = 1;
            m->multi[m->nmulti++] = m->f[i].slot;
        }
        m->stage[m->f[i].stage][m->nstage[m->f[i].stage]++] = (int)i;
    }
    if (m->format == SM_FMT_JSON && m->parser == SM_PARSER_SIMDJSON) {
        if (!(m->sj = sj_parser_new(m->max_bytes, (size_t)m->max_depth)) ||
            !(m->text = calloc(m->nf, sizeof(*m->text))))
            goto oom;
        for (size_t i = 0; i < m->nf; i++) {
            const struct sm_field *f = &m->f[i];
            enum sm_ftype vt = vtype(f);
            if (f->src == SM_SRC_PATH && (f->stringify || vt == SM_T_INT || vt == SM_T_LONG)) {
                m->text[m->ntext].slot = f->slot;
                m->text[m->ntext++].strfy = f->stringify;
                m->text_strfy |= f->stringify;
            }
        }
    }

    free(lookup_nodes);
    free(expr_nodes);
    yaml_document_delete(&y.doc);
    return m;
oom:
    snprintf(err, errsz, "out of memory");
fail:
    free(lookup_nodes);
    free(expr_nodes);
    if (y.have_doc)
        yaml_document_delete(&y.doc);
    sm_mapper_free(m);
    return NULL;
}
