/* Unit tests for yamlcfg: connectors.yaml into plain data with positions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "yamlcfg.h"

static char err[512];

/* Parses text that must be refused; returns the message. */
static const char *refuse(const char *yaml)
{
    struct cfg_file *f = (struct cfg_file *)1;
    err[0] = '\0';
    int rc = yamlcfg_parse(yaml, strlen(yaml), "connectors.yaml", &f, err, sizeof(err));
    CHECK_MSG(rc == -1, "accepted:\n%s", yaml);
    CHECK(f == NULL);
    if (rc == 0)
        yamlcfg_free(f);
    return err;
}

static struct cfg_file *accept(const char *yaml)
{
    struct cfg_file *f = NULL;
    err[0] = '\0';
    int rc = yamlcfg_parse(yaml, strlen(yaml), "connectors.yaml", &f, err, sizeof(err));
    CHECK_MSG(rc == 0 && f, "refused: %s", err);
    return rc == 0 ? f : NULL;
}

static void test_valid_file(void)
{
    static const char yaml[] =
        "# Velib pipeline\n"                                  /* 1 */
        "worker:\n"                                           /* 2 */
        "  rest.port: 8083\n"                                 /* 3 */
        "  plugin.path: [/opt/a, \"/opt/b\"]\n"               /* 4 */
        "topics:\n"                                           /* 5 */
        "  velib.status:\n"                                   /* 6 */
        "    backend: kafka\n"                                /* 7 */
        "    partitions: 3\n"                                 /* 8 */
        "  plain.topic:\n"                                    /* 9 */
        "connectors:\n"                                       /* 10 */
        "  - name: velib\n"                                   /* 11 */
        "    connector.class: velib_source\n"                 /* 12 */
        "    poll.interval.ms: 500\n"                         /* 13 */
        "    enabled: true\n"                                 /* 14 */
        "    label: 'it''s: quoted'\n"                        /* 15 */
        "    ratio: 0.50\n"                                   /* 16 */
        "    stations:\n"                                     /* 17 */
        "      - \"16107\"\n"                                 /* 18 */
        "      - 8004\n"                                      /* 19 */
        "  - connector.class: console_sink\n"                 /* 20 */
        "    name: console\n"                                 /* 21 */
        "    topics: velib.status\n"                          /* 22 */
        "    empty.list: []\n";                               /* 23 */
    struct cfg_file *f = accept(yaml);
    if (!f)
        return;
    CHECK_STR(f->path, "connectors.yaml");

    CHECK(f->worker.name == NULL);
    CHECK(f->worker.pos.line == 2 && f->worker.pos.col == 1);
    CHECK(f->worker.nkv == 2);
    const struct cfg_kv *kv = cfg_section_get(&f->worker, "rest.port");
    CHECK(kv && !kv->is_list && kv->items == NULL);
    if (kv) {
        CHECK_STR(kv->value, "8083");
        CHECK(kv->key_pos.line == 3 && kv->key_pos.col == 3);
        CHECK(kv->value_pos.line == 3 && kv->value_pos.col == 14);
    }
    kv = cfg_section_get(&f->worker, "plugin.path");
    CHECK(kv && kv->is_list && kv->nitems == 2);
    if (kv && kv->nitems == 2) {
        CHECK_STR(kv->items[0], "/opt/a");
        CHECK_STR(kv->items[1], "/opt/b");
        CHECK_STR(kv->value, "/opt/a,/opt/b");
    }

    CHECK(f->ntopics == 2);
    if (f->ntopics == 2) {
        CHECK_STR(f->topics[0].name, "velib.status");
        CHECK(f->topics[0].pos.line == 6 && f->topics[0].pos.col == 3);
        CHECK(f->topics[0].nkv == 2);
        kv = cfg_section_get(&f->topics[0], "partitions");
        CHECK(kv && strcmp(kv->value, "3") == 0);
        CHECK(kv && kv->key_pos.line == 8 && kv->key_pos.col == 5);
        CHECK_STR(f->topics[1].name, "plain.topic");
        CHECK(f->topics[1].nkv == 0);
    }

    CHECK(f->nconnectors == 2);
    const struct cfg_section *c = cfg_file_connector(f, "velib");
    CHECK(c == &f->connectors[0]);
    if (c) {
        /* pos is where the name's value starts. */
        CHECK(c->pos.line == 11 && c->pos.col == 11);
        CHECK(c->nkv == 6);              /* every key but name */
        CHECK(cfg_section_get(c, "name") == NULL);
        CHECK_STR(c->kv[0].key, "connector.class");
        CHECK_STR(c->kv[0].value, "velib_source");
        kv = cfg_section_get(c, "poll.interval.ms");
        CHECK(kv && strcmp(kv->value, "500") == 0);
        CHECK(kv && kv->key_pos.line == 13 && kv->key_pos.col == 5);
        CHECK(kv && kv->value_pos.line == 13 && kv->value_pos.col == 23);
        kv = cfg_section_get(c, "enabled");
        CHECK(kv && strcmp(kv->value, "true") == 0);
        kv = cfg_section_get(c, "label");
        CHECK(kv && strcmp(kv->value, "it's: quoted") == 0);
        kv = cfg_section_get(c, "ratio");
        CHECK(kv && strcmp(kv->value, "0.50") == 0);
        kv = cfg_section_get(c, "stations");
        CHECK(kv && kv->is_list && kv->nitems == 2);
        if (kv && kv->nitems == 2) {
            CHECK_STR(kv->items[0], "16107");
            CHECK_STR(kv->items[1], "8004");
            CHECK(kv->items[2] == NULL);
            CHECK_STR(kv->value, "16107,8004");
            CHECK(kv->value_pos.line == 18 && kv->value_pos.col == 7);
        }
    }
    c = cfg_file_connector(f, "console");
    CHECK(c == &f->connectors[1]);
    if (c) {
        CHECK(c->pos.line == 21 && c->pos.col == 11);
        CHECK(c->nkv == 3);
        kv = cfg_section_get(c, "empty.list");
        CHECK(kv && kv->is_list && kv->nitems == 0 && strcmp(kv->value, "") == 0);
    }
    CHECK(cfg_file_connector(f, "nope") == NULL);
    CHECK(cfg_section_get(NULL, "x") == NULL);
    yamlcfg_free(f);
    yamlcfg_free(NULL);
}

static void test_empty(void)
{
    static const char *const docs[] = { "", "# nothing here\n", "---\n", "---\n...\n", "~\n",
                                        "worker:\nconnectors:\ntopics:\n", "connectors: []\n" };
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        struct cfg_file *f = accept(docs[i]);
        CHECK_MSG(f && f->nconnectors == 0 && f->ntopics == 0 && f->worker.nkv == 0,
                  "doc %zu", i);
        yamlcfg_free(f);
    }
}

static void test_shape_errors(void)
{
    const char *m;

    m = refuse("worker: {}\nsources: []\n");
    CHECK_MSG(CONTAINS(m, "connectors.yaml:2:1: ") && CONTAINS(m, "unknown top-level key 'sources'"),
              "%s", m);

    m = refuse("- a\n- b\n");
    CHECK_MSG(CONTAINS(m, "connectors.yaml:1:1: ") && CONTAINS(m, "top level must be a map"),
              "%s", m);

    m = refuse("worker: 5\n");
    CHECK_MSG(CONTAINS(m, ":1:9: ") && CONTAINS(m, "worker"), "%s", m);

    m = refuse("connectors:\n  name: x\n");
    CHECK_MSG(CONTAINS(m, ":2:3: ") && CONTAINS(m, "connectors"), "%s", m);

    m = refuse("connectors:\n  - name: a\n  - just-a-string\n");
    CHECK_MSG(CONTAINS(m, ":3:5: ") && CONTAINS(m, "item 2 must be a map"), "%s", m);

    /* The example of the spec, word for word. */
    m = refuse("worker: {}\n"
               "connectors:\n"
               "  - name: velib\n"
               "    poll.interval.ms:\n"
               "      value: 500\n");
    CHECK_MSG(strcmp(m, "connectors.yaml:5:7: connector 'velib': key 'poll.interval.ms': "
                        "value must be a scalar or a list of scalars, not a map") == 0, "%s", m);

    /* The connector is named even when `name` comes last. */
    m = refuse("connectors:\n  - url: {a: 1}\n    name: late\n");
    CHECK_MSG(CONTAINS(m, ":2:10: ") && CONTAINS(m, "connector 'late'") && CONTAINS(m, "key 'url'"),
              "%s", m);

    m = refuse("connectors:\n  - name: a\n    stations: [1, [2, 3]]\n");
    CHECK_MSG(CONTAINS(m, ":3:19: ") && CONTAINS(m, "key 'stations'") &&
              CONTAINS(m, "list item 2 must be a scalar"), "%s", m);

    m = refuse("topics:\n  t1:\n    partitions: [1, 2]\n");
    CHECK_MSG(CONTAINS(m, ":3:17: ") && CONTAINS(m, "topic 't1'") && CONTAINS(m, "key 'partitions'"),
              "%s", m);

    m = refuse("topics: [a]\n");
    CHECK_MSG(CONTAINS(m, ":1:9: ") && CONTAINS(m, "topics"), "%s", m);

    m = refuse("topics:\n  ok.topic: {}\n  \"bad topic\": {}\n");
    CHECK_MSG(CONTAINS(m, ":3:3: ") && CONTAINS(m, "'bad topic' is not a valid topic name"), "%s", m);

    m = refuse("connectors:\n  - name: a\n    ? [k]\n    : v\n");
    CHECK_MSG(CONTAINS(m, ":3:7: ") && CONTAINS(m, "keys must be scalars"), "%s", m);

    /* Nesting is cut short early (libyaml slows down quadratically). */
    char deep[4096] = "connectors:\n  - name: a\n    x: ";
    for (int i = 0; i < 1000; i++)
        strcat(deep, "[");
    m = refuse(deep);
    CHECK_MSG(CONTAINS(m, ":3:") && CONTAINS(m, "nesting deeper than"), "%s", m);
}

static void test_names(void)
{
    const char *m;

    m = refuse("connectors:\n  - connector.class: x\n");
    CHECK_MSG(CONTAINS(m, ":2:5: ") && CONTAINS(m, "connector #1") && CONTAINS(m, "missing key 'name'"),
              "%s", m);

    m = refuse("connectors:\n  - name: ok\n  - name: \"bad name\"\n");
    CHECK_MSG(CONTAINS(m, ":3:11: ") && CONTAINS(m, "connector #2") &&
              CONTAINS(m, "'bad name' is not a valid connector name"), "%s", m);

    m = refuse("connectors:\n  - name: -starts-with-dash\n");
    CHECK_MSG(CONTAINS(m, ":2:11: ") && CONTAINS(m, "not a valid connector name"), "%s", m);

    char longname[200] = "connectors:\n  - name: ";
    for (int i = 0; i < 129; i++)
        strcat(longname, "a");
    m = refuse(longname);
    CHECK_MSG(CONTAINS(m, ":2:11: ") && CONTAINS(m, "not a valid connector name"), "%s", m);
    longname[strlen(longname) - 1] = '\0';  /* 128 characters is fine */
    struct cfg_file *f = accept(longname);
    yamlcfg_free(f);

    m = refuse("connectors:\n  - name: [a]\n");
    CHECK_MSG(CONTAINS(m, ":2:11: ") && CONTAINS(m, "key 'name'"), "%s", m);

    m = refuse("connectors:\n"
               "  - name: velib\n"
               "    connector.class: a\n"
               "  - connector.class: b\n"
               "    name: velib\n");
    CHECK_MSG(CONTAINS(m, "connectors.yaml:5:11: ") && CONTAINS(m, "connector 'velib'") &&
              CONTAINS(m, "duplicate connector name") && CONTAINS(m, "line 2, column 11"), "%s", m);
}

static void test_duplicates_and_nulls(void)
{
    const char *m;

    m = refuse("connectors:\n"
               "  - name: velib\n"
               "    poll.interval.ms: 500\n"
               "    topic: t\n"
               "    poll.interval.ms: 600\n");
    CHECK_MSG(CONTAINS(m, "connectors.yaml:5:5: ") && CONTAINS(m, "connector 'velib'") &&
              CONTAINS(m, "duplicate key 'poll.interval.ms'") && CONTAINS(m, "line 3, column 5"),
              "%s", m);

    m = refuse("connectors:\n  - name: a\n    name: b\n");
    CHECK_MSG(CONTAINS(m, ":3:5: ") && CONTAINS(m, "duplicate key 'name'"), "%s", m);

    m = refuse("worker:\n  a: 1\n  a: 2\n");
    CHECK_MSG(CONTAINS(m, ":3:3: ") && CONTAINS(m, "worker") && CONTAINS(m, "duplicate key 'a'"),
              "%s", m);

    m = refuse("topics:\n  t: {}\n  t: {}\n");
    CHECK_MSG(CONTAINS(m, ":3:3: ") && CONTAINS(m, "duplicate topic 't'") &&
              CONTAINS(m, "line 2, column 3"), "%s", m);

    m = refuse("worker: {}\nworker: {}\n");
    CHECK_MSG(CONTAINS(m, ":2:1: ") && CONTAINS(m, "'worker'"), "%s", m);

    m = refuse("connectors:\n  - name: velib\n    url:\n    topic: t\n");
    CHECK_MSG(CONTAINS(m, ":3:9: ") && CONTAINS(m, "key 'url' has no value"), "%s", m);

    m = refuse("connectors:\n  - name: velib\n    url: ~\n");
    CHECK_MSG(CONTAINS(m, ":3:10: ") && CONTAINS(m, "key 'url' has no value"), "%s", m);

    m = refuse("worker:\n  rest.port: null\n");
    CHECK_MSG(CONTAINS(m, ":2:14: ") && CONTAINS(m, "key 'rest.port' has no value"), "%s", m);

    m = refuse("connectors:\n  - name: a\n    stations: [1, ~]\n");
    CHECK_MSG(CONTAINS(m, ":3:19: ") && CONTAINS(m, "list item 2 has no value"), "%s", m);

    m = refuse("connectors:\n  - name:\n");
    CHECK_MSG(CONTAINS(m, ":2:10: ") && CONTAINS(m, "key 'name' has no value"), "%s", m);

    /* Quoted "" and "null" are strings, not nulls. */
    struct cfg_file *f = accept("connectors:\n  - name: a\n    x: \"\"\n    y: \"null\"\n");
    if (f) {
        CHECK_STR(cfg_section_get(&f->connectors[0], "x")->value, "");
        CHECK_STR(cfg_section_get(&f->connectors[0], "y")->value, "null");
    }
    yamlcfg_free(f);
}

static void test_aliases_and_syntax(void)
{
    const char *m;

    m = refuse("connectors:\n  - name: a\n    x: &v 1\n    y: *v\n");
    CHECK_MSG(CONTAINS(m, ":3:8: ") && CONTAINS(m, "key 'x'") && CONTAINS(m, "anchors are not allowed"),
              "%s", m);

    m = refuse("connectors:\n  - name: a\n    y: *v\n");
    /* The event parser does not resolve aliases, so even a dangling one
     * reaches us, and is refused as an alias. */
    CHECK_MSG(CONTAINS(m, ":3:8: ") && CONTAINS(m, "key 'y'") && CONTAINS(m, "aliases are not allowed"),
              "%s", m);

    /* Billion laughs: refused at the first anchor, nothing expanded. */
    m = refuse("connectors:\n"
               "  - name: lol\n"
               "    a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
               "    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
               "    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
               "    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n");
    CHECK_MSG(CONTAINS(m, ":3:8: ") && CONTAINS(m, "anchors are not allowed"), "%s", m);

    m = refuse("connectors: &all\n  - name: a\n");
    CHECK_MSG(CONTAINS(m, ":1:13: ") && CONTAINS(m, "connectors") && CONTAINS(m, "anchors"), "%s", m);

    m = refuse("connectors:\n  - name: a\n    x: !!int 5\n");
    CHECK_MSG(CONTAINS(m, ":3:8: ") && CONTAINS(m, "tag") && CONTAINS(m, "key 'x'"), "%s", m);

    /* A tab in indentation: libyaml's own problem and position. */
    m = refuse("worker:\n\trest.port: 8083\n");
    CHECK_MSG(CONTAINS(m, "connectors.yaml:2:1: ") &&
              CONTAINS(m, "found character that cannot start any token"), "%s", m);

    m = refuse("connectors:\n  - name: a\n    x: \"open\n");
    CHECK_MSG(CONTAINS(m, "connectors.yaml:4:1: ") && CONTAINS(m, "unexpected end of stream") &&
              CONTAINS(m, "quoted scalar"), "%s", m);

    m = refuse("worker:\n  a: 1\n b: 2\n");
    CHECK_MSG(CONTAINS(m, "connectors.yaml:3:") && CONTAINS(m, "did not find expected key"), "%s", m);

    m = refuse("worker:\n  a: [1, 2\n");
    CHECK_MSG(CONTAINS(m, "connectors.yaml:3:1: ") && CONTAINS(m, "flow sequence"), "%s", m);

    m = refuse("worker:\n  a: x\x01y\n");
    CHECK_MSG(CONTAINS(m, "connectors.yaml:2:7: ") && CONTAINS(m, "control characters"), "%s", m);

    m = refuse("worker: {}\n---\nconnectors: []\n");
    CHECK_MSG(CONTAINS(m, "connectors.yaml:2:1: ") && CONTAINS(m, "second YAML document"), "%s", m);

    m = refuse("worker: {}\n---\n");
    CHECK_MSG(CONTAINS(m, ":2:1: ") && CONTAINS(m, "second YAML document"), "%s", m);
}

static void test_size_limit(void)
{
    size_t limit = (size_t)4 << 20;
    char *big = malloc(limit + 1);
    struct cfg_file *f = NULL;
    if (!big) {
        CHECK(big != NULL);
        return;
    }
    /* Exactly 4 MiB of comment is fine; one byte more is not. */
    memset(big, '#', limit + 1);
    CHECK(yamlcfg_parse(big, limit, "big.yaml", &f, err, sizeof(err)) == 0);
    yamlcfg_free(f);
    f = (struct cfg_file *)1;
    CHECK(yamlcfg_parse(big, limit + 1, "big.yaml", &f, err, sizeof(err)) == -1);
    CHECK(f == NULL);
    CHECK_MSG(CONTAINS(err, "big.yaml:1:1: ") && CONTAINS(err, "4 MiB"), "%s", err);
    free(big);
}

static void test_env(void)
{
    const char *m;
    setenv("SPOKE_T_SECRET", "hunter2-secret", 1);
    setenv("SPOKE_T_EMPTY", "", 1);
    setenv("SPOKE_T_HOST", "example.org", 1);
    unsetenv("SPOKE_T_UNSET");

    struct cfg_file *f = accept(
        "worker:\n"
        "  rest.token: ${env:SPOKE_T_SECRET}\n"
        "topics:\n"
        "  t:\n"
        "    bootstrap: ${env:SPOKE_T_HOST}:9092\n"
        "connectors:\n"
        "  - name: ${env:SPOKE_T_UNSET:-velib}\n"
        "    url: \"https://${env:SPOKE_T_HOST}/a?k=${env:SPOKE_T_SECRET}&h=${env:SPOKE_T_HOST}\"\n"
        "    fb.unset: ${env:SPOKE_T_UNSET:-fallback value}\n"
        "    fb.empty: ${env:SPOKE_T_EMPTY:-used}\n"
        "    fb.set: ${env:SPOKE_T_HOST:-unused}\n"
        "    fb.blank: x${env:SPOKE_T_UNSET:-}y\n"
        "    empty: ${env:SPOKE_T_EMPTY}\n"
        "    escaped: \"$${env:SPOKE_T_SECRET} costs $5 and $$ stays\"\n"
        "    hosts: [\"${env:SPOKE_T_HOST}\", other]\n");
    if (f) {
        CHECK_STR(cfg_section_get(&f->worker, "rest.token")->value, "hunter2-secret");
        CHECK_STR(cfg_section_get(&f->topics[0], "bootstrap")->value, "example.org:9092");
        const struct cfg_section *c = cfg_file_connector(f, "velib");
        CHECK(c != NULL);
        if (c) {
            CHECK_STR(cfg_section_get(c, "url")->value,
                      "https://example.org/a?k=hunter2-secret&h=example.org");
            CHECK_STR(cfg_section_get(c, "fb.unset")->value, "fallback value");
            CHECK_STR(cfg_section_get(c, "fb.empty")->value, "used");
            CHECK_STR(cfg_section_get(c, "fb.set")->value, "example.org");
            CHECK_STR(cfg_section_get(c, "fb.blank")->value, "xy");
            CHECK_STR(cfg_section_get(c, "empty")->value, "");
            CHECK_STR(cfg_section_get(c, "escaped")->value,
                      "${env:SPOKE_T_SECRET} costs $5 and $$ stays");
            const struct cfg_kv *kv = cfg_section_get(c, "hosts");
            CHECK(kv && kv->nitems == 2 && strcmp(kv->items[0], "example.org") == 0 &&
                  strcmp(kv->value, "example.org,other") == 0);
        }
    }
    yamlcfg_free(f);

    /* Unset: names the variable, at the scalar, and never shows what the
     * other references in the same scalar resolved to. */
    m = refuse("connectors:\n"
               "  - name: velib\n"
               "    api.key: \"${env:SPOKE_T_SECRET}/${env:SPOKE_T_UNSET}\"\n");
    CHECK_MSG(CONTAINS(m, "connectors.yaml:3:14: ") && CONTAINS(m, "key 'api.key'") &&
              CONTAINS(m, "'SPOKE_T_UNSET'") && CONTAINS(m, "not set"), "%s", m);
    CHECK_MSG(!CONTAINS(m, "hunter2"), "%s", m);

    m = refuse("connectors:\n  - name: a\n    l: [ok, \"${env:SPOKE_T_UNSET}\"]\n");
    CHECK_MSG(CONTAINS(m, ":3:13: ") && CONTAINS(m, "list item 2") && CONTAINS(m, "SPOKE_T_UNSET"),
              "%s", m);

    /* A resolved name that is invalid is not echoed either. */
    m = refuse("connectors:\n  - name: \"${env:SPOKE_T_SECRET}!\"\n");
    CHECK_MSG(CONTAINS(m, ":2:11: ") && CONTAINS(m, "not a valid connector name") &&
              !CONTAINS(m, "hunter2"), "%s", m);

    m = refuse("connectors:\n  - name: a\n    x: ${env:}\n");
    CHECK_MSG(CONTAINS(m, ":3:8: ") && CONTAINS(m, "key 'x'") && CONTAINS(m, "malformed"), "%s", m);

    m = refuse("connectors:\n  - name: a\n    x: ${env:9LIVES}\n");
    CHECK_MSG(CONTAINS(m, ":3:8: ") && CONTAINS(m, "malformed"), "%s", m);

    m = refuse("connectors:\n  - name: a\n    x: ${env:BAD-NAME}\n");
    CHECK_MSG(CONTAINS(m, ":3:8: ") && CONTAINS(m, "malformed"), "%s", m);

    m = refuse("connectors:\n  - name: a\n    x: \"abc ${env:SPOKE_T_HOST\"\n");
    CHECK_MSG(CONTAINS(m, ":3:8: ") && CONTAINS(m, "unterminated") && !CONTAINS(m, "example.org"),
              "%s", m);

    m = refuse("connectors:\n  - name: a\n    x: \"${env:SPOKE_T_UNSET:-never closed\"\n");
    CHECK_MSG(CONTAINS(m, ":3:8: ") && CONTAINS(m, "unterminated"), "%s", m);

    m = refuse("connectors:\n  - name: a\n    x: ${HOME}\n");
    CHECK_MSG(CONTAINS(m, ":3:8: ") && CONTAINS(m, "only ${env:NAME}") && CONTAINS(m, "$${"), "%s", m);

    m = refuse("worker:\n  x: ${env:SPOKE_T_UNSET:-${env:SPOKE_T_HOST}}\n");
    CHECK_MSG(CONTAINS(m, ":2:6: ") && CONTAINS(m, "nested"), "%s", m);

    unsetenv("SPOKE_T_SECRET");
    unsetenv("SPOKE_T_EMPTY");
    unsetenv("SPOKE_T_HOST");
}

static void test_load_file(void)
{
    char path[] = "/tmp/spoke_test_yamlcfg_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    static const char yaml[] = "connectors:\n  - name: from-file\n    topic: out\n";
    CHECK(write(fd, yaml, sizeof(yaml) - 1) == (ssize_t)(sizeof(yaml) - 1));
    close(fd);

    struct cfg_file *f = NULL;
    CHECK(yamlcfg_load(path, &f, err, sizeof(err)) == 0);
    CHECK(f && strcmp(f->path, path) == 0);
    CHECK(f && f->nconnectors == 1 && cfg_file_connector(f, "from-file") != NULL);
    yamlcfg_free(f);

    /* Errors in a loaded file carry its path. */
    FILE *fp = fopen(path, "w");
    CHECK(fp != NULL);
    if (fp) {
        fputs("connectors:\n  - name: x\n    a: {b: c}\n", fp);
        fclose(fp);
    }
    f = (struct cfg_file *)1;
    CHECK(yamlcfg_load(path, &f, err, sizeof(err)) == -1);
    CHECK(f == NULL);
    char want[128];
    snprintf(want, sizeof(want), "%s:3:8: connector 'x': key 'a'", path);
    CHECK_MSG(CONTAINS(err, want), "%s", err);
    unlink(path);

    f = (struct cfg_file *)1;
    CHECK(yamlcfg_load(path, &f, err, sizeof(err)) == -1);
    CHECK(f == NULL);
    CHECK_MSG(CONTAINS(err, "cannot open") && CONTAINS(err, path) &&
              CONTAINS(err, ": No such file or directory"), "%s", err);

    CHECK(yamlcfg_load("/tmp", &f, err, sizeof(err)) == -1);
    CHECK_MSG(CONTAINS(err, "/tmp"), "%s", err);
}

static void test_small_errbuf(void)
{
    /* Messages are cut to the buffer, never overflow it. */
    char small[16];
    struct cfg_file *f;
    memset(small, 'x', sizeof(small));
    CHECK(yamlcfg_parse("bogus: 1\n", 9, "connectors.yaml", &f, small, sizeof(small)) == -1);
    CHECK(memchr(small, '\0', sizeof(small)) != NULL);
    CHECK(yamlcfg_parse("bogus: 1\n", 9, "connectors.yaml", &f, NULL, 0) == -1);
}

int main(void)
{
    RUN(test_valid_file);
    RUN(test_empty);
    RUN(test_shape_errors);
    RUN(test_names);
    RUN(test_duplicates_and_nulls);
    RUN(test_aliases_and_syntax);
    RUN(test_size_limit);
    RUN(test_env);
    RUN(test_load_file);
    RUN(test_small_errbuf);
    return TEST_REPORT();
}
