/* yamlcfg - connectors.yaml (libyaml) into plain data with positions.
 *
 * Two passes. The first reads libyaml events into a small tree of our own,
 * never resolving aliases (so "billion laughs" files cost nothing) and
 * recording anchors, tags and positions. The second walks the tree in
 * document order, checks the shape of the file and copies values into a
 * struct cfg_file. Building the tree first lets every error name the
 * connector it belongs to even when `name` is not its first key.
 */
#include "yamlcfg.h"

#include "dupkeys.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "buf.h"
#include "grow.h"

/* Refuse bigger files: a config this size is a mistake, and the cap bounds
 * the memory the tree can take. */
#define YAMLCFG_MAX_BYTES ((size_t)4 << 20)

/* Deepest nesting accepted. A valid file nests at most 4 levels (root >
 * connectors > connector > list value); the pass over the tree gives the
 * precise message for anything up to twice that. Stopping early also keeps
 * libyaml out of its cost that grows with the square of the depth (a file
 * of 200000 '[' takes minutes to scan) and bounds our own recursion. */
#define YN_MAX_DEPTH 8

/* Longest name, key or value quoted inside a message. */
#define QMAX 128

/* Context buffers: section ("connector 'x'"), key, list item. Each one is
 * large enough for the one it extends, so messages are never cut short. */
#define SCTX 384
#define KCTX (SCTX + QMAX + 16)
#define ICTX (KCTX + 48)

enum yn_kind { YN_SCALAR, YN_SEQ, YN_MAP, YN_ALIAS };

struct ynode {
    enum yn_kind kind;
    int line, col;          /* 1-based */
    int is_null;            /* plain untagged "", "~" or null */
    int has_nul;            /* scalar holds a NUL byte ("\0" escape) */
    char *text;             /* scalar value */
    char *anchor;           /* anchor, or alias target for YN_ALIAS */
    char *bad_tag;          /* an explicit tag we do not accept */
    struct ynode **kids;    /* sequence items, or map key, value, key, ... */
    size_t nkids;
    size_t cap;
};

struct ld {
    yaml_parser_t parser;
    const char *name;       /* file name for messages */
    const char *data;
    size_t len;
    char *err;
    size_t errsize;
};

static const char *const kind_names[] = { "a scalar", "a list", "a map", "an alias" };

static int vfail(struct ld *ld, int line, int col, const char *fmt, va_list ap)
{
    if (!ld->err || ld->errsize == 0)
        return -1;
    int n = snprintf(ld->err, ld->errsize, "%s:%d:%d: ", ld->name, line, col);
    if (n >= 0 && (size_t)n < ld->errsize)
        vsnprintf(ld->err + n, ld->errsize - (size_t)n, fmt, ap);
    return -1;
}

/* Writes "<file>:<line>:<col>: <what>" into the caller's buffer; returns -1
 * so call sites can `return fail(...)`. */
static int fail(struct ld *ld, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct ld *ld, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(ld, line, col, fmt, ap);
    va_end(ap);
    return -1;
}

static int fail_node(struct ld *ld, const struct ynode *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_node(struct ld *ld, const struct ynode *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(ld, n->line, n->col, fmt, ap);
    va_end(ap);
    return -1;
}

/* libyaml's own problem text and position; the context (what it was in the
 * middle of) goes in parentheses so the message stays one line. */
static int fail_parser(struct ld *ld)
{
    const yaml_parser_t *p = &ld->parser;
    const char *problem = p->problem ? p->problem : "invalid YAML";

    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return fail(ld, (int)p->mark.line + 1, (int)p->mark.column + 1, "out of memory");
    case YAML_READER_ERROR: {
        /* Reader errors carry a byte offset, not a mark. */
        int line = 1, col = 1;
        for (size_t i = 0; i < p->problem_offset && i < ld->len; i++) {
            if (ld->data[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        if (p->problem_value != -1)
            return fail(ld, line, col, "%s (byte 0x%02X)", problem, (unsigned)p->problem_value);
        return fail(ld, line, col, "%s", problem);
    }
    default:
        if (p->context && (p->context_mark.line != p->problem_mark.line ||
                           p->context_mark.column != p->problem_mark.column))
            return fail(ld, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1,
                        "%s (%s started at line %d, column %d)", problem, p->context,
                        (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
        if (p->context)
            return fail(ld, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1,
                        "%s (%s)", problem, p->context);
        return fail(ld, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1,
                    "%s", problem);
    }
}

static int next_event(struct ld *ld, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&ld->parser, ev))
        return fail_parser(ld);
    return 0;
}

/* ---- pass 1: events to tree ---- */

static void node_free(struct ynode *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    free(n->text);
    free(n->anchor);
    free(n->bad_tag);
    free(n);
}

static char *dup_str(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int is_null_text(const char *s)
{
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

/* Only tags that do not change what a node means are accepted: the
 * non-specific "!" and the standard str/seq/map for the matching kind. */
static int tag_ok(enum yn_kind kind, const char *tag)
{
    if (!tag || strcmp(tag, "!") == 0)
        return 1;
    switch (kind) {
    case YN_SCALAR: return strcmp(tag, YAML_STR_TAG) == 0;
    case YN_SEQ:    return strcmp(tag, YAML_SEQ_TAG) == 0;
    case YN_MAP:    return strcmp(tag, YAML_MAP_TAG) == 0;
    default:        return 0;
    }
}

static struct ynode *node_new(struct ld *ld, enum yn_kind kind, const yaml_event_t *ev,
                              const yaml_char_t *anchor, const yaml_char_t *tag)
{
    struct ynode *n = calloc(1, sizeof(*n));
    if (!n)
        goto fail;
    n->kind = kind;
    n->line = (int)ev->start_mark.line + 1;
    n->col = (int)ev->start_mark.column + 1;
    if (anchor && !(n->anchor = dup_str((const char *)anchor)))
        goto fail;
    if (!tag_ok(kind, (const char *)tag) && !(n->bad_tag = dup_str((const char *)tag)))
        goto fail;
    return n;
fail:
    node_free(n);
    fail(ld, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1, "out of memory");
    return NULL;
}

static int node_add(struct ld *ld, struct ynode *parent, struct ynode *kid)
{
    if (GROW_ONE(parent->kids, parent->cap, parent->nkids, 4) != 0) {
        node_free(kid);
        return fail(ld, kid ? kid->line : 1, kid ? kid->col : 1, "out of memory");
    }
    parent->kids[parent->nkids++] = kid;
    return 0;
}

/* Builds the node that starts with ev (owned by the caller) and, for a
 * container, everything up to its end event. */
static int build(struct ld *ld, const yaml_event_t *ev, int depth, struct ynode **out)
{
    struct ynode *n = NULL;
    yaml_event_type_t end;

    *out = NULL;
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        n = node_new(ld, YN_ALIAS, ev, ev->data.alias.anchor, NULL);
        if (!n)
            return -1;
        *out = n;
        return 0;
    case YAML_SCALAR_EVENT: {
        const char *v = (const char *)ev->data.scalar.value;
        size_t vlen = ev->data.scalar.length;
        n = node_new(ld, YN_SCALAR, ev, ev->data.scalar.anchor, ev->data.scalar.tag);
        if (!n)
            return -1;
        n->text = malloc(vlen + 1);
        if (!n->text) {
            node_free(n);
            return fail(ld, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                        "out of memory");
        }
        memcpy(n->text, v, vlen);
        n->text[vlen] = '\0';
        n->has_nul = memchr(v, '\0', vlen) != NULL;
        n->is_null = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                     !ev->data.scalar.tag && is_null_text(n->text);
        *out = n;
        return 0;
    }
    case YAML_SEQUENCE_START_EVENT:
        n = node_new(ld, YN_SEQ, ev, ev->data.sequence_start.anchor,
                     ev->data.sequence_start.tag);
        end = YAML_SEQUENCE_END_EVENT;
        break;
    case YAML_MAPPING_START_EVENT:
        n = node_new(ld, YN_MAP, ev, ev->data.mapping_start.anchor,
                     ev->data.mapping_start.tag);
        end = YAML_MAPPING_END_EVENT;
        break;
    default:
        return fail(ld, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                    "unexpected YAML event");
    }
    if (!n)
        return -1;

    if (depth >= YN_MAX_DEPTH) {
        fail_node(ld, n, "nesting deeper than %d levels is not allowed (values are scalars "
                  "or lists of scalars)", YN_MAX_DEPTH);
        goto fail;
    }
    for (;;) {
        yaml_event_t kev;
        struct ynode *kid;
        if (next_event(ld, &kev) < 0)
            goto fail;
        if (kev.type == end) {
            yaml_event_delete(&kev);
            break;
        }
        int rc = build(ld, &kev, depth + 1, &kid);
        yaml_event_delete(&kev);
        if (rc < 0 || node_add(ld, n, kid) < 0)
            goto fail;
    }
    *out = n;
    return 0;
fail:
    node_free(n);
    return -1;
}

/* Reads the whole stream. *root is NULL for a file without a document. */
static int read_tree(struct ld *ld, struct ynode **root)
{
    yaml_event_t ev;
    int have = 0;

    *root = NULL;
    if (next_event(ld, &ev) < 0)           /* STREAM_START */
        goto fail;
    yaml_event_delete(&ev);
    if (next_event(ld, &ev) < 0)
        goto fail;
    have = 1;
    if (ev.type == YAML_STREAM_END_EVENT)
        goto done;
    /* DOCUMENT_START */
    yaml_event_delete(&ev);
    have = 0;
    if (next_event(ld, &ev) < 0)
        goto fail;
    have = 1;
    if (build(ld, &ev, 0, root) < 0)
        goto fail;
    yaml_event_delete(&ev);
    have = 0;
    if (next_event(ld, &ev) < 0)           /* DOCUMENT_END */
        goto fail;
    yaml_event_delete(&ev);
    if (next_event(ld, &ev) < 0)
        goto fail;
    have = 1;
    if (ev.type == YAML_DOCUMENT_START_EVENT) {
        fail(ld, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
             "a second YAML document starts here; the file must hold exactly one");
        goto fail;
    }
done:
    yaml_event_delete(&ev);
    return 0;
fail:
    if (have)
        yaml_event_delete(&ev);
    node_free(*root);
    *root = NULL;
    return -1;
}

/* ---- pass 2: tree to cfg_file ---- */

/* Refuses what the shape checks below never look at: anchors, aliases,
 * foreign tags and NUL bytes. ctx names the key or section. */
static int check_node(struct ld *ld, const struct ynode *n, const char *ctx)
{
    if (n->kind == YN_ALIAS)
        return fail_node(ld, n, "%s: aliases are not allowed (found '*%.*s')", ctx, QMAX,
                         n->anchor);
    if (n->anchor)
        return fail_node(ld, n, "%s: anchors are not allowed (found '&%.*s')", ctx, QMAX,
                         n->anchor);
    if (n->bad_tag)
        return fail_node(ld, n, "%s: tag '%.*s' is not supported", ctx, QMAX, n->bad_tag);
    if (n->has_nul)
        return fail_node(ld, n, "%s: value contains a NUL character", ctx);
    return 0;
}

static int name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$ */
static int valid_connector_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128 || !name_char(s[0]))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!name_char(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return 0;
    return 1;
}

/* ^[A-Za-z0-9._-]{1,249}$ */
static int valid_topic_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 249)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!name_char(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return 0;
    return 1;
}

static int env_first(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int env_rest(char c)
{
    return env_first(c) || (c >= '0' && c <= '9');
}

/*
 * Resolves ${env:NAME} and ${env:NAME:-fallback} in a scalar value; "$${" is
 * a literal "${". Resolved text is never scanned again, and messages name
 * the variable, never its value (it may be a secret). *subst tells whether
 * anything was substituted, so callers know not to quote the result.
 */
static int expand_env(struct ld *ld, const struct ynode *n, const char *ctx, char **out,
                      int *subst)
{
    struct buf b = BUF_INIT;
    char *name = NULL;
    const char *s = n->text;

    *out = NULL;
    if (subst)
        *subst = 0;
    if (buf_reserve(&b, strlen(s)) < 0 || buf_append(&b, "", 0) < 0)
        goto nomem;
    while (*s) {
        if (s[0] == '$' && s[1] == '$' && s[2] == '{') {
            if (buf_puts(&b, "${") < 0)
                goto nomem;
            s += 3;
            continue;
        }
        if (!(s[0] == '$' && s[1] == '{')) {
            if (buf_putc(&b, *s) < 0)
                goto nomem;
            s++;
            continue;
        }
        if (strncmp(s + 2, "env:", 4) != 0) {
            fail_node(ld, n, "%s: unsupported reference: only ${env:NAME} is supported "
                      "(write $${ for a literal ${)", ctx);
            goto fail;
        }
        const char *p = s + 6, *fb = NULL, *end;
        size_t fblen = 0;
        if (!env_first(*p)) {
            fail_node(ld, n, "%s: malformed reference '${env:...}': the variable name "
                      "must match [A-Za-z_][A-Za-z0-9_]*", ctx);
            goto fail;
        }
        while (env_rest(*p))
            p++;
        size_t nlen = (size_t)(p - (s + 6));
        free(name);
        if (!(name = strndup(s + 6, nlen)))
            goto nomem;
        if (*p == '}') {
            end = p + 1;
        } else if (p[0] == ':' && p[1] == '-') {
            fb = p + 2;
            const char *q = strchr(fb, '}');
            const char *nested = strstr(fb, "${");
            if (!q) {
                fail_node(ld, n, "%s: unterminated reference '${env:%.*s:-...' (missing '}')",
                          ctx, QMAX, name);
                goto fail;
            }
            if (nested && nested < q) {
                fail_node(ld, n, "%s: the fallback of '${env:%.*s}' contains a reference; "
                          "nested references are not supported", ctx, QMAX, name);
                goto fail;
            }
            fblen = (size_t)(q - fb);
            end = q + 1;
        } else if (*p == '\0') {
            fail_node(ld, n, "%s: unterminated reference '${env:%.*s' (missing '}')",
                      ctx, QMAX, name);
            goto fail;
        } else {
            fail_node(ld, n, "%s: malformed reference '${env:%.*s...': expected '}' or ':-' "
                      "after the variable name, which must match [A-Za-z_][A-Za-z0-9_]*",
                      ctx, QMAX, name);
            goto fail;
        }
        const char *val = getenv(name);
        int rc;
        if (fb && (!val || !*val)) {
            rc = buf_append(&b, fb, fblen);
        } else if (!val) {
            fail_node(ld, n, "%s: environment variable '%.*s' is not set "
                      "(use ${env:%.*s:-fallback} for a default)", ctx, QMAX, name, QMAX, name);
            goto fail;
        } else {
            rc = buf_puts(&b, val);
        }
        if (rc < 0)
            goto nomem;
        if (subst)
            *subst = 1;
        s = end;
    }
    free(name);
    *out = buf_steal(&b, NULL);
    return 0;
nomem:
    fail_node(ld, n, "%s: out of memory", ctx);
fail:
    free(name);
    buf_free(&b);
    return -1;
}

/* A map key: a non-empty scalar without anchors or tags. */
static int check_key(struct ld *ld, const struct ynode *k, const char *ctx)
{
    if (check_node(ld, k, ctx) < 0)
        return -1;
    if (k->kind != YN_SCALAR)
        return fail_node(ld, k, "%s: keys must be scalars, not %s", ctx, kind_names[k->kind]);
    if (k->is_null || k->text[0] == '\0')
        return fail_node(ld, k, "%s: empty or null key", ctx);
    return 0;
}

/* Checks every key of a map and refuses duplicates. what: "key" or "topic". */
static int check_map_keys(struct ld *ld, const struct ynode *map, const char *ctx,
                          const char *what)
{
    size_t npairs = map->nkids / 2, first, second;
    const char **keys = NULL;
    int rc = -1;

    for (size_t i = 0; i < npairs; i++)
        if (check_key(ld, map->kids[2 * i], ctx) < 0)
            return -1;
    if (npairs < 2)
        return 0;
    if (!(keys = malloc(npairs * sizeof(*keys))))
        return fail_node(ld, map, "%s: out of memory", ctx);
    for (size_t i = 0; i < npairs; i++)
        keys[i] = map->kids[2 * i]->text;
    int d = dupkeys_first(keys, npairs, &first, &second);
    if (d < 0) {
        fail_node(ld, map, "%s: out of memory", ctx);
        goto out;
    }
    if (d > 0) {
        const struct ynode *a = map->kids[2 * first], *b = map->kids[2 * second];
        fail_node(ld, b, "%s: duplicate %s '%.*s' (first at line %d, column %d)", ctx, what,
                  QMAX, b->text, a->line, a->col);
        goto out;
    }
    rc = 0;
out:
    free(keys);
    return rc;
}

static char *join_items(char **items, size_t n)
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

/* One value: a scalar, or (allow_list) a sequence of scalars. kctx names
 * the key, e.g. "connector 'velib': key 'url'". */
static int conv_value(struct ld *ld, const struct ynode *v, const char *kctx, int allow_list,
                      struct cfg_kv *kv)
{
    kv->value_pos.line = v->line;
    kv->value_pos.col = v->col;
    if (check_node(ld, v, kctx) < 0)
        return -1;
    if (v->kind == YN_SCALAR) {
        if (v->is_null)
            return fail_node(ld, v, "%s has no value", kctx);
        return expand_env(ld, v, kctx, &kv->value, NULL);
    }
    if (v->kind != YN_SEQ || !allow_list) {
        if (allow_list)
            return fail_node(ld, v, "%s: value must be a scalar or a list of scalars, not %s",
                             kctx, kind_names[v->kind]);
        return fail_node(ld, v, "%s: value must be a scalar, not %s", kctx, kind_names[v->kind]);
    }
    /* items[nitems] stays NULL: a terminated array is handy for callers. */
    kv->is_list = 1;
    if (!(kv->items = calloc(v->nkids + 1, sizeof(*kv->items))))
        return fail_node(ld, v, "%s: out of memory", kctx);
    for (size_t i = 0; i < v->nkids; i++) {
        const struct ynode *it = v->kids[i];
        char ictx[ICTX];
        snprintf(ictx, sizeof(ictx), "%s: list item %zu", kctx, i + 1);
        if (check_node(ld, it, ictx) < 0)
            return -1;
        if (it->kind != YN_SCALAR)
            return fail_node(ld, it, "%s must be a scalar, not %s", ictx, kind_names[it->kind]);
        if (it->is_null)
            return fail_node(ld, it, "%s has no value", ictx);
        if (expand_env(ld, it, ictx, &kv->items[i], NULL) < 0)
            return -1;
        kv->nitems++;
    }
    if (!(kv->value = join_items(kv->items, kv->nitems)))
        return fail_node(ld, v, "%s: out of memory", kctx);
    return 0;
}

/* Copies a map's pairs into s->kv, skipping `skip` (the connector name).
 * sctx names the section, e.g. "connector 'velib'". */
static int conv_kvs(struct ld *ld, const struct ynode *map, const char *sctx, int allow_list,
                    const char *skip, struct cfg_section *s)
{
    size_t npairs = map->nkids / 2;

    if (check_map_keys(ld, map, sctx, "key") < 0)
        return -1;
    if (npairs == 0)
        return 0;
    if (!(s->kv = calloc(npairs, sizeof(*s->kv))))
        return fail_node(ld, map, "%s: out of memory", sctx);
    for (size_t i = 0; i < npairs; i++) {
        const struct ynode *k = map->kids[2 * i], *v = map->kids[2 * i + 1];
        char kctx[KCTX];
        if (skip && strcmp(k->text, skip) == 0)
            continue;
        struct cfg_kv *kv = &s->kv[s->nkv++];
        kv->key_pos.line = k->line;
        kv->key_pos.col = k->col;
        if (!(kv->key = strdup(k->text)))
            return fail_node(ld, k, "%s: out of memory", sctx);
        snprintf(kctx, sizeof(kctx), "%s: key '%.*s'", sctx, QMAX, k->text);
        if (conv_value(ld, v, kctx, allow_list, kv) < 0)
            return -1;
    }
    return 0;
}

static int conv_worker(struct ld *ld, const struct ynode *k, const struct ynode *v,
                       struct cfg_file *f)
{
    f->worker.pos.line = k->line;
    f->worker.pos.col = k->col;
    if (check_node(ld, v, "worker") < 0)
        return -1;
    if (v->kind == YN_SCALAR && v->is_null)
        return 0;
    if (v->kind != YN_MAP)
        return fail_node(ld, v, "worker: must be a map, not %s", kind_names[v->kind]);
    return conv_kvs(ld, v, "worker", 1, NULL, &f->worker);
}

static int conv_topics(struct ld *ld, const struct ynode *v, struct cfg_file *f)
{
    if (check_node(ld, v, "topics") < 0)
        return -1;
    if (v->kind == YN_SCALAR && v->is_null)
        return 0;
    if (v->kind != YN_MAP)
        return fail_node(ld, v, "topics: must be a map of topic name to settings, not %s",
                         kind_names[v->kind]);
    if (check_map_keys(ld, v, "topics", "topic") < 0)
        return -1;
    size_t n = v->nkids / 2;
    if (n == 0)
        return 0;
    if (!(f->topics = calloc(n, sizeof(*f->topics))))
        return fail_node(ld, v, "topics: out of memory");
    for (size_t i = 0; i < n; i++) {
        const struct ynode *k = v->kids[2 * i], *tv = v->kids[2 * i + 1];
        struct cfg_section *s = &f->topics[f->ntopics++];
        char sctx[SCTX];
        if (!valid_topic_name(k->text))
            return fail_node(ld, k, "topics: '%.*s' is not a valid topic name "
                             "(must match ^[A-Za-z0-9._-]{1,249}$)", QMAX, k->text);
        s->pos.line = k->line;
        s->pos.col = k->col;
        if (!(s->name = strdup(k->text)))
            return fail_node(ld, k, "topics: out of memory");
        snprintf(sctx, sizeof(sctx), "topic '%s'", k->text);
        if (check_node(ld, tv, sctx) < 0)
            return -1;
        /* `name:` alone declares a topic with default settings. */
        if (tv->kind == YN_SCALAR && tv->is_null)
            continue;
        if (tv->kind != YN_MAP)
            return fail_node(ld, tv, "%s: settings must be a map, not %s", sctx,
                             kind_names[tv->kind]);
        if (conv_kvs(ld, tv, sctx, 0, NULL, s) < 0)
            return -1;
    }
    return 0;
}

static int conv_connector(struct ld *ld, const struct ynode *m, size_t idx,
                          struct cfg_section *s)
{
    const struct ynode *nv = NULL;
    char sctx[SCTX], nctx[KCTX];
    int subst;

    snprintf(sctx, sizeof(sctx), "connector #%zu", idx + 1);
    if (check_node(ld, m, sctx) < 0)
        return -1;
    if (m->kind != YN_MAP)
        return fail_node(ld, m, "connectors: item %zu must be a map, not %s", idx + 1,
                         kind_names[m->kind]);
    s->pos.line = m->line;
    s->pos.col = m->col;
    /* The name first, so every later message can use it. */
    for (size_t i = 0; i + 1 < m->nkids; i += 2) {
        const struct ynode *k = m->kids[i];
        if (k->kind == YN_SCALAR && !k->anchor && strcmp(k->text, "name") == 0) {
            nv = m->kids[i + 1];
            break;
        }
    }
    if (!nv)
        return fail_node(ld, m, "%s: missing key 'name'", sctx);
    snprintf(nctx, sizeof(nctx), "%s: key 'name'", sctx);
    if (check_node(ld, nv, nctx) < 0)
        return -1;
    if (nv->kind != YN_SCALAR)
        return fail_node(ld, nv, "%s: value must be a scalar, not %s", nctx,
                         kind_names[nv->kind]);
    if (nv->is_null)
        return fail_node(ld, nv, "%s has no value", nctx);
    if (expand_env(ld, nv, nctx, &s->name, &subst) < 0)
        return -1;
    s->pos.line = nv->line;
    s->pos.col = nv->col;
    if (!valid_connector_name(s->name)) {
        if (subst)
            return fail_node(ld, nv, "%s: the resolved value is not a valid connector name "
                             "(must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$)", nctx);
        return fail_node(ld, nv, "%s: '%.*s' is not a valid connector name "
                         "(must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$)", nctx, QMAX, s->name);
    }
    snprintf(sctx, sizeof(sctx), "connector '%s'", s->name);
    return conv_kvs(ld, m, sctx, 1, "name", s);
}

static int conv_connectors(struct ld *ld, const struct ynode *v, struct cfg_file *f)
{
    const char **names = NULL;
    size_t first, second;
    int rc = -1;

    if (check_node(ld, v, "connectors") < 0)
        return -1;
    if (v->kind == YN_SCALAR && v->is_null)
        return 0;
    if (v->kind != YN_SEQ)
        return fail_node(ld, v, "connectors: must be a list of maps, not %s",
                         kind_names[v->kind]);
    if (v->nkids == 0)
        return 0;
    if (!(f->connectors = calloc(v->nkids, sizeof(*f->connectors))))
        return fail_node(ld, v, "connectors: out of memory");
    for (size_t i = 0; i < v->nkids; i++)
        if (conv_connector(ld, v->kids[i], i, &f->connectors[f->nconnectors++]) < 0)
            return -1;
    if (!(names = malloc(f->nconnectors * sizeof(*names))))
        return fail_node(ld, v, "connectors: out of memory");
    for (size_t i = 0; i < f->nconnectors; i++)
        names[i] = f->connectors[i].name;
    int d = dupkeys_first(names, f->nconnectors, &first, &second);
    if (d < 0) {
        fail_node(ld, v, "connectors: out of memory");
        goto out;
    }
    if (d > 0) {
        const struct cfg_section *a = &f->connectors[first], *b = &f->connectors[second];
        fail(ld, b->pos.line, b->pos.col,
             "connector '%s': duplicate connector name (first at line %d, column %d)",
             b->name, a->pos.line, a->pos.col);
        goto out;
    }
    rc = 0;
out:
    free(names);
    return rc;
}

static int conv_root(struct ld *ld, const struct ynode *root, struct cfg_file *f)
{
    if (!root)
        return 0;
    if (check_node(ld, root, "top level") < 0)
        return -1;
    if (root->kind == YN_SCALAR && root->is_null)
        return 0;
    if (root->kind != YN_MAP)
        return fail_node(ld, root, "the top level must be a map with worker, topics and "
                         "connectors, not %s", kind_names[root->kind]);
    if (check_map_keys(ld, root, "top level", "section") < 0)
        return -1;
    for (size_t i = 0; i + 1 < root->nkids; i += 2) {
        const struct ynode *k = root->kids[i], *v = root->kids[i + 1];
        int rc;
        if (strcmp(k->text, "worker") == 0)
            rc = conv_worker(ld, k, v, f);
        else if (strcmp(k->text, "topics") == 0)
            rc = conv_topics(ld, v, f);
        else if (strcmp(k->text, "connectors") == 0)
            rc = conv_connectors(ld, v, f);
        else
            rc = fail_node(ld, k, "unknown top-level key '%.*s' (expected worker, topics "
                           "or connectors)", QMAX, k->text);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* ---- public ---- */

int yamlcfg_parse(const char *data, size_t len, const char *name, struct cfg_file **out,
                  char *err, size_t errsize)
{
    struct ld ld = { .name = name, .data = data, .len = len, .err = err, .errsize = errsize };
    struct ynode *root = NULL;
    struct cfg_file *f = NULL;
    int parser_ready = 0;

    *out = NULL;
    if (err && errsize)
        err[0] = '\0';
    if (len > YAMLCFG_MAX_BYTES) {
        fail(&ld, 1, 1, "file is larger than the 4 MiB limit");
        goto fail;
    }
    if (!(f = calloc(1, sizeof(*f))) || !(f->path = strdup(name))) {
        fail(&ld, 1, 1, "out of memory");
        goto fail;
    }
    if (!yaml_parser_initialize(&ld.parser)) {
        fail(&ld, 1, 1, "out of memory");
        goto fail;
    }
    parser_ready = 1;
    yaml_parser_set_input_string(&ld.parser, (const unsigned char *)data, len);
    if (read_tree(&ld, &root) < 0 || conv_root(&ld, root, f) < 0)
        goto fail;
    node_free(root);
    yaml_parser_delete(&ld.parser);
    *out = f;
    return 0;
fail:
    node_free(root);
    if (parser_ready)
        yaml_parser_delete(&ld.parser);
    yamlcfg_free(f);
    return -1;
}

int yamlcfg_load(const char *path, struct cfg_file **out, char *err, size_t errsize)
{
    struct buf b = BUF_INIT;
    FILE *fp;
    int rc = -1;

    *out = NULL;
    if (!(fp = fopen(path, "rb"))) {
        snprintf(err, errsize, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    /* Read one byte past the limit to tell "exactly 4 MiB" from "more". */
    for (;;) {
        char chunk[65536];
        size_t n = fread(chunk, 1, sizeof(chunk), fp);
        if (n && buf_append(&b, chunk, n) < 0) {
            snprintf(err, errsize, "%s: out of memory", path);
            goto out;
        }
        if (b.len > YAMLCFG_MAX_BYTES) {
            snprintf(err, errsize, "%s:1:1: file is larger than the 4 MiB limit", path);
            goto out;
        }
        if (n < sizeof(chunk)) {
            if (ferror(fp)) {
                snprintf(err, errsize, "cannot read %s: %s", path, strerror(errno));
                goto out;
            }
            break;
        }
    }
    rc = yamlcfg_parse(b.p ? b.p : "", b.len, path, out, err, errsize);
out:
    fclose(fp);
    buf_free(&b);
    return rc;
}

static void section_free(struct cfg_section *s)
{
    free(s->name);
    for (size_t i = 0; i < s->nkv; i++) {
        struct cfg_kv *kv = &s->kv[i];
        free(kv->key);
        free(kv->value);
        if (kv->items)
            for (size_t j = 0; j < kv->nitems; j++)
                free(kv->items[j]);
        free(kv->items);
    }
    free(s->kv);
}

void yamlcfg_free(struct cfg_file *f)
{
    if (!f)
        return;
    free(f->path);
    section_free(&f->worker);
    for (size_t i = 0; i < f->ntopics; i++)
        section_free(&f->topics[i]);
    free(f->topics);
    for (size_t i = 0; i < f->nconnectors; i++)
        section_free(&f->connectors[i]);
    free(f->connectors);
    free(f);
}

const struct cfg_kv *cfg_section_get(const struct cfg_section *s, const char *key)
{
    if (!s)
        return NULL;
    for (size_t i = 0; i < s->nkv; i++)
        if (strcmp(s->kv[i].key, key) == 0)
            return &s->kv[i];
    return NULL;
}

const struct cfg_section *cfg_file_connector(const struct cfg_file *f, const char *name)
{
    if (!f)
        return NULL;
    for (size_t i = 0; i < f->nconnectors; i++)
        if (strcmp(f->connectors[i].name, name) == 0)
            return &f->connectors[i];
    return NULL;
}
