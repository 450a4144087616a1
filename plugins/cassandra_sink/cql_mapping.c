/*
 * cql_mapping.c - parses `mapping` and builds INSERT statements. See
 * cql_mapping.h.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cql_mapping.h"

/* CQL's reserved keywords: never written unquoted as identifiers. */
static const char *const reserved[] = {
    "add", "allow", "alter", "and", "apply", "asc", "authorize", "batch", "begin", "by",
    "columnfamily", "create", "delete", "desc", "describe", "drop", "entries", "execute",
    "from", "full", "grant", "if", "in", "index", "infinity", "insert", "into", "is",
    "keyspace", "limit", "materialized", "mbean", "mbeans", "modify", "nan", "norecursive",
    "not", "null", "of", "on", "or", "order", "primary", "rename", "replace", "revoke",
    "schema", "select", "set", "table", "to", "token", "truncate", "unlogged", "unset",
    "update", "use", "using", "view", "where", "with", NULL
};

int cql_ident_plain(const char *name)
{
    if (!isalpha((unsigned char)name[0]))
        return 0;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return 0;
    return 1;
}

static int is_reserved(const char *name)
{
    for (size_t i = 0; reserved[i]; i++)
        if (strcasecmp(reserved[i], name) == 0)
            return 1;
    return 0;
}

int cql_ident(const char *name, char *out, size_t size)
{
    size_t k = 0;
    int plain = cql_ident_plain(name) && !is_reserved(name);
    for (const char *p = name; plain && *p; p++)
        if (isupper((unsigned char)*p))
            plain = 0;
    if (plain) {
        size_t n = strlen(name);
        if (n + 1 > size)
            return -1;
        memcpy(out, name, n + 1);
        return (int)n;
    }
    if (size < 3)
        return -1;
    out[k++] = '"';
    for (const char *p = name; *p; p++) {
        if (k + 3 > size)
            return -1;
        if (*p == '"')
            out[k++] = '"';
        out[k++] = *p;
    }
    if (k + 2 > size)
        return -1;
    out[k++] = '"';
    out[k] = '\0';
    return (int)k;
}

static void col_free(struct cql_map_col *c)
{
    free(c->column);
    for (size_t i = 0; i < c->npath; i++)
        free(c->path[i]);
    free(c->path);
    free(c->spec);
}

void cql_mapping_free(struct cql_mapping *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++)
        col_free(&m->cols[i]);
    free(m->cols);
    m->cols = NULL;
    m->n = 0;
}

static struct cql_map_col *add_col(struct cql_mapping *m)
{
    struct cql_map_col *nc = realloc(m->cols, (m->n + 1) * sizeof(*nc));
    if (nc == NULL)
        return NULL;
    m->cols = nc;
    memset(&nc[m->n], 0, sizeof(*nc));
    return &nc[m->n++];
}

static int push_seg(struct cql_map_col *c, const char *s, size_t n)
{
    char **np = realloc(c->path, (c->npath + 1) * sizeof(*np));
    if (np == NULL)
        return -1;
    c->path = np;
    if ((np[c->npath] = strndup(s, n)) == NULL)
        return -1;
    c->npath++;
    return 0;
}

int cql_mapping_add_field(struct cql_mapping *m, const char *field)
{
    struct cql_map_col *c = add_col(m);
    if (c == NULL)
        return -1;
    c->src = CQL_MAP_VALUE_PATH;
    c->column = strdup(field);
    c->spec = malloc(strlen(field) + 7);
    if (c->column == NULL || c->spec == NULL || push_seg(c, field, strlen(field)) < 0)
        return -1;
    if (cql_ident_plain(field))
        for (char *p = c->column; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    snprintf(c->spec, strlen(field) + 7, "value.%s", field);
    return 0;
}

/* A quoted token at *pp ("..." with "" for a quote, or `...` with ``):
 * its unquoted text, malloc'd, or NULL (errstr set). */
static char *quoted(const char **pp, char *errstr, size_t errstr_size)
{
    const char *p = *pp;
    char q = *p++;
    size_t cap = strlen(p) + 1, k = 0;
    char *out = malloc(cap);
    if (out == NULL) {
        snprintf(errstr, errstr_size, "mapping: out of memory");
        return NULL;
    }
    for (;;) {
        if (*p == '\0') {
            snprintf(errstr, errstr_size, "mapping: unterminated %c quote", q);
            free(out);
            return NULL;
        }
        if (*p == q) {
            if (p[1] == q) {
                out[k++] = q;
                p += 2;
                continue;
            }
            p++;
            break;
        }
        out[k++] = *p++;
    }
    out[k] = '\0';
    *pp = p;
    return out;
}

static void skip_ws(const char **pp)
{
    while (**pp == ' ' || **pp == '\t' || **pp == '\n' || **pp == '\r')
        (*pp)++;
}

/* Parses the source at *pp into c (up to ',' or the end). */
static int parse_source(const char **pp, struct cql_map_col *c, char *errstr, size_t errstr_size)
{
    const char *start = *pp, *p = *pp;
    const char *end;
    char head[16];
    size_t hn = 0;

    while (isalnum((unsigned char)*p) || *p == '_' || *p == '(' || *p == ')') {
        if (hn + 1 < sizeof(head))
            head[hn] = (char)tolower((unsigned char)*p);
        hn++;
        p++;
    }
    head[hn < sizeof(head) ? hn : sizeof(head) - 1] = '\0';
    end = p;
    while (*end && *end != ',')
        end++;
    while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    c->spec = strndup(start, (size_t)(end - start));
    if (c->spec == NULL) {
        snprintf(errstr, errstr_size, "mapping: out of memory");
        return -1;
    }
    if (strcmp(head, "now()") == 0 && hn == 5) {
        c->src = CQL_MAP_NOW;
    } else if (strcmp(head, "timestamp") == 0) {
        c->src = CQL_MAP_TIMESTAMP;
    } else if (strcmp(head, "value") == 0 || strcmp(head, "key") == 0 ||
               strcmp(head, "header") == 0) {
        int is_header = head[0] == 'h';
        c->src = head[0] == 'v' ? CQL_MAP_VALUE : head[0] == 'k' ? CQL_MAP_KEY : CQL_MAP_HEADER;
        while (*p == '.') {
            p++;
            if (*p == '"' || *p == '`') {
                char *seg = quoted(&p, errstr, errstr_size);
                if (seg == NULL)
                    return -1;
                int rc = push_seg(c, seg, strlen(seg));
                free(seg);
                if (rc < 0)
                    goto nomem;
            } else {
                const char *s = p;
                /* A header name may hold dots: it runs to the end. */
                while (*p && *p != ',' && *p != ' ' && *p != '\t' && (is_header || *p != '.'))
                    p++;
                if (p == s) {
                    snprintf(errstr, errstr_size, "mapping: empty field name in '%s'", c->spec);
                    return -1;
                }
                if (push_seg(c, s, (size_t)(p - s)) < 0)
                    goto nomem;
            }
            if (is_header)
                break;
        }
        if (c->src == CQL_MAP_HEADER && c->npath != 1) {
            snprintf(errstr, errstr_size, "mapping: '%s': header needs a name (header.<name>)",
                     c->spec);
            return -1;
        }
        if (c->npath > 0 && c->src == CQL_MAP_VALUE)
            c->src = CQL_MAP_VALUE_PATH;
        if (c->npath > 0 && c->src == CQL_MAP_KEY)
            c->src = CQL_MAP_KEY_PATH;
    } else {
        c->src = 0;
    }
    skip_ws(&p);
    if (c->src == 0 || (*p && *p != ',')) {
        snprintf(errstr, errstr_size, "mapping: '%s' is not a source (value, value.<field>, "
                 "key, key.<field>, header.<name>, timestamp, now())", c->spec);
        return -1;
    }
    *pp = p;
    return 0;
nomem:
    snprintf(errstr, errstr_size, "mapping: out of memory");
    return -1;
}

int cql_mapping_parse(const char *text, struct cql_mapping *m, char *errstr, size_t errstr_size)
{
    const char *p = text;

    memset(m, 0, sizeof(*m));
    for (;;) {
        struct cql_map_col *c;
        skip_ws(&p);
        if (*p == '\0' && m->n > 0) {
            snprintf(errstr, errstr_size, "mapping: trailing ','");
            goto fail;
        }
        c = add_col(m);
        if (c == NULL) {
            snprintf(errstr, errstr_size, "mapping: out of memory");
            goto fail;
        }
        if (*p == '"') {
            c->column = quoted(&p, errstr, errstr_size);
            if (c->column == NULL)
                goto fail;
            if (c->column[0] == '\0') {
                snprintf(errstr, errstr_size, "mapping: empty column name");
                goto fail;
            }
        } else {
            const char *s = p;
            while (isalnum((unsigned char)*p) || *p == '_')
                p++;
            if (p == s || !isalpha((unsigned char)*s)) {
                snprintf(errstr, errstr_size, "mapping: expected a column name at '%.40s' "
                         "(letters, digits, _; or \"quoted\")", s);
                goto fail;
            }
            c->column = strndup(s, (size_t)(p - s));
            if (c->column == NULL) {
                snprintf(errstr, errstr_size, "mapping: out of memory");
                goto fail;
            }
            for (char *q = c->column; *q; q++)
                *q = (char)tolower((unsigned char)*q);
        }
        skip_ws(&p);
        if (*p != '=') {
            snprintf(errstr, errstr_size, "mapping: expected '=' after column '%s'", c->column);
            goto fail;
        }
        p++;
        skip_ws(&p);
        if (parse_source(&p, c, errstr, errstr_size) < 0)
            goto fail;
        for (size_t i = 0; i + 1 < m->n; i++)
            if (strcmp(m->cols[i].column, c->column) == 0) {
                snprintf(errstr, errstr_size, "mapping: column '%s' is mapped twice", c->column);
                goto fail;
            }
        skip_ws(&p);
        if (*p == '\0')
            break;
        p++; /* ',' */
    }
    return 0;
fail:
    cql_mapping_free(m);
    return -1;
}

/* Appends s to a growing string. */
struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_add(struct sbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->oom)
        return;
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

static void sb_ident(struct sbuf *b, const char *name)
{
    size_t sz = strlen(name) * 2 + 3;
    char *tmp = malloc(sz);
    if (tmp == NULL || cql_ident(name, tmp, sz) < 0) {
        b->oom = 1;
        free(tmp);
        return;
    }
    sb_add(b, tmp);
    free(tmp);
}

char *cql_insert_statement(const char *ks, const char *table, const struct cql_mapping *m,
                           int64_t ttl, int with_timestamp)
{
    struct sbuf b = { 0 };
    char num[32];

    sb_add(&b, "INSERT INTO ");
    sb_ident(&b, ks);
    sb_add(&b, ".");
    sb_ident(&b, table);
    sb_add(&b, " (");
    for (size_t i = 0; i < m->n; i++) {
        if (i)
            sb_add(&b, ", ");
        sb_ident(&b, m->cols[i].column);
    }
    sb_add(&b, ") VALUES (");
    for (size_t i = 0; i < m->n; i++)
        sb_add(&b, i ? ", ?" : "?");
    sb_add(&b, ")");
    if (ttl > 0) {
        snprintf(num, sizeof(num), " USING TTL %lld", (long long)ttl);
        sb_add(&b, num);
    }
    if (with_timestamp)
        sb_add(&b, ttl > 0 ? " AND TIMESTAMP ?" : " USING TIMESTAMP ?");
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
