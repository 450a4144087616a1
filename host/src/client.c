#include "client.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "buf.h"
#include "yamlcfg.h"

#define CLIENT_DEFAULT_URL "http://127.0.0.1:8083"
#define CLIENT_FILE_MAX (4u << 20)

struct client {
    char url[512];          /* without a trailing slash */
    char auth[4200];        /* "Authorization: Bearer ..." or "" */
    int include_tasks;
    int only_failed;
};

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: spoke connectors [-c FILE] [--url URL] [--token-file F] COMMAND [ARGS]\n"
            "\n"
            "  list                  every connector with its type and state\n"
            "  status NAME           connector and task states (and the trace when failed)\n"
            "  create FILE           FILE.json ({\"name\", \"config\"} or a flat map) or FILE.yaml\n"
            "                        (one connectors.yaml entry: name and keys)\n"
            "  config NAME           the config, as YAML that create accepts back\n"
            "  pause NAME | resume NAME | stop NAME | delete NAME\n"
            "  restart NAME [--include-tasks] [--only-failed]\n"
            "\n"
            "  --url URL         the REST API (default: -c FILE's listeners, else %s)\n"
            "  --token-file F    bearer token for changes (default: -c FILE's rest.token.file)\n"
            "  -c FILE           a connectors.yaml to take those defaults from\n",
            CLIENT_DEFAULT_URL);
}

static int read_file(const char *path, struct buf *out)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "spoke connectors: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
        if (out->len + n > CLIENT_FILE_MAX) {
            fprintf(stderr, "spoke connectors: %s is larger than 4 MiB\n", path);
            fclose(fp);
            return -1;
        }
        if (buf_append(out, chunk, n) < 0) {
            fprintf(stderr, "spoke connectors: out of memory\n");
            fclose(fp);
            return -1;
        }
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        fprintf(stderr, "spoke connectors: cannot read %s\n", path);
        return -1;
    }
    return 0;
}

static int set_token(struct client *cl, const char *path)
{
    struct buf b = BUF_INIT;
    if (read_file(path, &b) < 0)
        return -1;
    size_t s = 0, e = b.len;
    while (s < e && isspace((unsigned char)b.p[s]))
        s++;
    while (e > s && isspace((unsigned char)b.p[e - 1]))
        e--;
    if (e == s || e - s > 4096) {
        fprintf(stderr, "spoke connectors: %s holds no usable token\n", path);
        buf_free(&b);
        return -1;
    }
    snprintf(cl->auth, sizeof(cl->auth), "Authorization: Bearer %.*s", (int)(e - s), b.p + s);
    memset(b.p, 0, b.len);
    buf_free(&b);
    return 0;
}

/* A listeners value ("http://0.0.0.0:8083", "127.0.0.1:8083") as a URL a
 * client can reach: wildcard addresses become loopback. */
static void url_from_listener(const char *l, char *out, size_t outsize)
{
    if (strncasecmp(l, "http://", 7) == 0)
        l += 7;
    if (strncmp(l, "0.0.0.0:", 8) == 0)
        snprintf(out, outsize, "http://127.0.0.1%s", l + 7);
    else if (strncmp(l, "[::]:", 5) == 0)
        snprintf(out, outsize, "http://[::1]%s", l + 4);
    else if (l[0] == ':')
        snprintf(out, outsize, "http://127.0.0.1%s", l);
    else
        snprintf(out, outsize, "http://%s", l);
}

/* Defaults from connectors.yaml's worker section. */
static int config_defaults(struct client *cl, const char *path, int want_url, int want_token)
{
    char err[512];
    struct cfg_file *f = NULL;
    if (yamlcfg_load(path, &f, err, sizeof(err)) != 0) {
        fprintf(stderr, "spoke connectors: %s\n", err);
        return -1;
    }
    int rc = 0;
    const struct cfg_kv *l = cfg_section_get(&f->worker, "listeners");
    if (want_url && l && l->value)
        url_from_listener(l->value, cl->url, sizeof(cl->url));
    const struct cfg_kv *t = cfg_section_get(&f->worker, "rest.token.file");
    if (want_token && t && t->value)
        rc = set_token(cl, t->value);
    yamlcfg_free(f);
    return rc;
}

static size_t on_body(char *data, size_t size, size_t n, void *userdata)
{
    struct buf *b = userdata;
    if (b->len + size * n > (64u << 20) || buf_append(b, data, size * n) < 0)
        return 0;
    return size * n;
}

/* One call. body may be NULL (no body, no Content-Type). Fills *status and
 * out; -1 when the server could not be reached. */
static int http(struct client *cl, const char *method, const char *path, const char *body,
                long *status, struct buf *out)
{
    char url[2048];
    snprintf(url, sizeof(url), "%s%s", cl->url, path);
    CURL *h = curl_easy_init();
    if (!h) {
        fprintf(stderr, "spoke connectors: cannot initialize libcurl\n");
        return -1;
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdr = NULL;
    hdr = curl_slist_append(hdr, "Accept: application/json");
    if (cl->auth[0])
        hdr = curl_slist_append(hdr, cl->auth);
    if (body)
        hdr = curl_slist_append(hdr, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 120000L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    }
    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    else
        fprintf(stderr, "spoke connectors: cannot reach %s: %s\n", cl->url,
                errbuf[0] ? errbuf : curl_easy_strerror(rc));
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    return rc == CURLE_OK ? 0 : -1;
}

/* Reports a 4xx/5xx with the server's message. Returns 1 (exit code). */
static int report_error(long status, const struct buf *body)
{
    json_t *j = body->len ? json_loadb(body->p, body->len, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(j, "message"));
    if (msg)
        fprintf(stderr, "spoke connectors: %s (HTTP %ld)\n", msg, status);
    else
        fprintf(stderr, "spoke connectors: the server answered HTTP %ld\n", status);
    json_decref(j);
    return 1;
}

/* Calls and parses the JSON answer (NULL for an empty one). Returns 0, or
 * the exit code after reporting. */
static int call_json(struct client *cl, const char *method, const char *path, const char *body,
                     long *status, json_t **out)
{
    struct buf b = BUF_INIT;
    *out = NULL;
    if (http(cl, method, path, body, status, &b) < 0) {
        buf_free(&b);
        return 1;
    }
    if (*status >= 400) {
        int rc = report_error(*status, &b);
        buf_free(&b);
        return rc;
    }
    if (b.len) {
        json_error_t jerr;
        *out = json_loadb(b.p, b.len, 0, &jerr);
        if (!*out) {
            fprintf(stderr, "spoke connectors: the server's answer is not JSON: %s\n", jerr.text);
            buf_free(&b);
            return 1;
        }
    }
    buf_free(&b);
    return 0;
}

/* /connectors/<escaped name><suffix> */
static int conn_path(const char *name, const char *suffix, char *out, size_t outsize)
{
    char *esc = curl_easy_escape(NULL, name, 0);
    if (!esc)
        return -1;
    int n = snprintf(out, outsize, "/connectors/%s%s", esc, suffix);
    curl_free(esc);
    return n < 0 || (size_t)n >= outsize ? -1 : 0;
}

static const char *str_or(json_t *j, const char *key, const char *def)
{
    const char *s = json_string_value(json_object_get(j, key));
    return s ? s : def;
}

static void print_trace(const char *who, json_t *st)
{
    const char *trace = json_string_value(json_object_get(st, "trace"));
    if (trace && *trace)
        printf("trace (%s): %s\n", who, trace);
}

/* ------------------------------------------------------------- commands */

static int cmd_list(struct client *cl)
{
    long status = 0;
    json_t *j;
    int rc = call_json(cl, "GET", "/connectors?expand=status&expand=info", NULL, &status, &j);
    if (rc)
        return rc;
    if (!json_is_object(j) || json_object_size(j) == 0) {
        printf("no connectors\n");
        json_decref(j);
        return 0;
    }
    /* Sorted output: collect and sort the names. */
    size_t n = json_object_size(j), i = 0;
    const char **names = calloc(n, sizeof(*names));
    if (!names) {
        json_decref(j);
        return 1;
    }
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
        names[i++] = k;
    for (size_t a = 1; a < n; a++)
        for (size_t b = a; b > 0 && strcmp(names[b - 1], names[b]) > 0; b--) {
            const char *t = names[b];
            names[b] = names[b - 1];
            names[b - 1] = t;
        }
    int w = 4;
    for (i = 0; i < n; i++)
        if ((int)strlen(names[i]) > w)
            w = (int)strlen(names[i]);
    printf("%-*s  %-10s %-11s %s\n", w, "NAME", "TYPE", "STATE", "TASKS");
    for (i = 0; i < n; i++) {
        json_t *e = json_object_get(j, names[i]);
        json_t *st = json_object_get(e, "status");
        json_t *tasks = json_object_get(st, "tasks");
        size_t running = 0, ti;
        json_t *t;
        json_array_foreach(tasks, ti, t)
            if (strcmp(str_or(t, "state", ""), "RUNNING") == 0)
                running++;
        printf("%-*s  %-10s %-11s %zu/%zu running\n", w, names[i],
               str_or(st, "type", str_or(json_object_get(e, "info"), "type", "?")),
               str_or(json_object_get(st, "connector"), "state", "?"), running,
               json_array_size(tasks));
    }
    free(names);
    json_decref(j);
    return 0;
}

static int cmd_status(struct client *cl, const char *name)
{
    char path[600];
    if (conn_path(name, "/status", path, sizeof(path)) < 0)
        return 1;
    long status = 0;
    json_t *j;
    int rc = call_json(cl, "GET", path, NULL, &status, &j);
    if (rc)
        return rc;
    json_t *c = json_object_get(j, "connector");
    printf("%-10s %-11s %-10s %s\n", "CONNECTOR", "STATE", "TYPE", "WORKER");
    printf("%-10s %-11s %-10s %s\n", str_or(j, "name", name), str_or(c, "state", "?"),
           str_or(j, "type", "?"), str_or(c, "worker_id", ""));
    json_t *tasks = json_object_get(j, "tasks");
    size_t i;
    json_t *t;
    if (json_array_size(tasks)) {
        printf("\n%-10s %-11s %-10s %s\n", "TASK", "STATE", "", "WORKER");
        json_array_foreach(tasks, i, t)
            printf("%-10lld %-11s %-10s %s\n", (long long)json_integer_value(json_object_get(t, "id")),
                   str_or(t, "state", "?"), "", str_or(t, "worker_id", ""));
    }
    print_trace("connector", c);
    json_array_foreach(tasks, i, t) {
        char who[32];
        snprintf(who, sizeof(who), "task %lld", (long long)json_integer_value(json_object_get(t, "id")));
        print_trace(who, t);
    }
    json_decref(j);
    return 0;
}

/* Rewrites "<path>:<line>:<col>: ..." of the wrapped document to the
 * user's file (one line and four columns less). */
static void unwrap_position(const char *path, char *err, size_t errsize)
{
    size_t pl = strlen(path);
    int line, col, used = 0;
    if (strncmp(err, path, pl) != 0 || sscanf(err + pl, ":%d:%d:%n", &line, &col, &used) < 2 ||
        used == 0)
        return;
    struct buf b = BUF_INIT;
    if (buf_printf(&b, "%s:%d:%d:%s", path, line > 1 ? line - 1 : 1, col > 4 ? col - 4 : 1,
                   err + pl + used) == 0)
        snprintf(err, errsize, "%s", b.p);
    buf_free(&b);
}

/* A YAML file holding one connector as a flat map (name + keys), read with
 * yamlcfg by wrapping it into a connectors list; or a whole connectors.yaml
 * with exactly one connector. */
static json_t *yaml_connector(const char *path, const struct buf *text)
{
    struct buf w = BUF_INIT;
    buf_puts(&w, "connectors:\n");
    const char *p = text->p ? text->p : "";
    const char *end = p + text->len;
    for (int first = 1; p < end; first = 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        size_t t = n;
        while (t && (p[t - 1] == ' ' || p[t - 1] == '\r'))
            t--;
        int marker = t == 3 && (memcmp(p, "---", 3) == 0 || memcmp(p, "...", 3) == 0);
        buf_puts(&w, first ? "  - " : "    ");
        if (!marker)
            buf_append(&w, p, n);
        buf_putc(&w, '\n');
        p += n + (nl ? 1 : 0);
    }
    char err[1024];
    struct cfg_file *f = NULL;
    const struct cfg_section *s = NULL;
    if (yamlcfg_parse(w.p, w.len, path, &f, err, sizeof(err)) == 0 && f->nconnectors == 1) {
        s = &f->connectors[0];
    } else {
        char err2[1024];
        struct cfg_file *g = NULL;
        if (yamlcfg_parse(text->p ? text->p : "", text->len, path, &g, err2, sizeof(err2)) == 0 &&
            g->nconnectors == 1) {
            yamlcfg_free(f);
            f = g;
            s = &f->connectors[0];
        } else {
            if (g)
                snprintf(err, sizeof(err), "%s: holds %zu connectors; create takes one", path,
                         g->nconnectors);
            else if (f)
                snprintf(err, sizeof(err), "%s: holds no connector", path);
            else
                unwrap_position(path, err, sizeof(err));
            yamlcfg_free(g);
        }
    }
    buf_free(&w);
    if (!s) {
        fprintf(stderr, "spoke connectors: %s\n", err);
        yamlcfg_free(f);
        return NULL;
    }
    json_t *config = json_object();
    for (size_t i = 0; i < s->nkv; i++)
        json_object_set_new(config, s->kv[i].key, json_string(s->kv[i].value ? s->kv[i].value : ""));
    json_t *req = json_pack("{s:s, s:o}", "name", s->name, "config", config);
    yamlcfg_free(f);
    return req;
}

/* JSON: Connect's body {"name", "config"[, "initial_state"]} as is, or a
 * flat map {"name": ..., key: value, ...}. */
static json_t *json_connector(const char *path, const struct buf *text)
{
    json_error_t jerr;
    json_t *j = json_loadb(text->p ? text->p : "", text->len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j) {
        fprintf(stderr, "spoke connectors: %s:%d:%d: %s\n", path, jerr.line, jerr.column,
                jerr.text);
        return NULL;
    }
    if (!json_is_object(j) || !json_is_string(json_object_get(j, "name"))) {
        fprintf(stderr, "spoke connectors: %s: expected an object with a string \"name\"\n", path);
        json_decref(j);
        return NULL;
    }
    if (json_object_get(j, "config"))
        return j;
    json_t *name = json_incref(json_object_get(j, "name"));
    json_object_del(j, "name");
    json_t *req = json_pack("{s:o, s:o}", "name", name, "config", j);
    return req;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcasecmp(s + n - m, suf) == 0;
}

static int cmd_create(struct client *cl, const char *file)
{
    struct buf text = BUF_INIT;
    if (read_file(file, &text) < 0) {
        buf_free(&text);
        return 1;
    }
    int is_json = has_suffix(file, ".json");
    if (!is_json && !has_suffix(file, ".yaml") && !has_suffix(file, ".yml")) {
        const char *p = text.p ? text.p : "";
        while (isspace((unsigned char)*p))
            p++;
        is_json = *p == '{';
    }
    json_t *req = is_json ? json_connector(file, &text) : yaml_connector(file, &text);
    buf_free(&text);
    if (!req)
        return 1;
    char *body = json_dumps(req, JSON_COMPACT);
    char name[256];
    snprintf(name, sizeof(name), "%s", str_or(req, "name", "?"));
    json_decref(req);
    if (!body)
        return 1;
    long status = 0;
    json_t *j;
    int rc = call_json(cl, "POST", "/connectors", body, &status, &j);
    free(body);
    if (rc)
        return rc;
    printf("created %s (%s)\n", str_or(j, "name", name), str_or(j, "type", "?"));
    json_decref(j);
    return 0;
}

/* A config value as a YAML scalar: plain when unambiguous, else a JSON
 * (= YAML double-quoted) string. */
static void print_yaml_scalar(const char *v)
{
    int plain = *v != '\0';
    for (const char *p = v; *p && plain; p++)
        plain = isalnum((unsigned char)*p) || strchr("_./-", *p);
    if (plain && (strcasecmp(v, "null") == 0 || strcmp(v, "~") == 0))
        plain = 0;
    if (plain) {
        printf("%s\n", v);
        return;
    }
    json_t *s = json_string(v);
    char *q = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    printf("%s\n", q ? q : "\"\"");
    free(q);
    json_decref(s);
}

static int cmd_config(struct client *cl, const char *name)
{
    char path[600];
    if (conn_path(name, "/config", path, sizeof(path)) < 0)
        return 1;
    long status = 0;
    json_t *j;
    int rc = call_json(cl, "GET", path, NULL, &status, &j);
    if (rc)
        return rc;
    printf("name: ");
    print_yaml_scalar(name);
    size_t n = json_object_size(j), i = 0;
    const char **keys = calloc(n ? n : 1, sizeof(*keys));
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
        if (strcmp(k, "name") != 0 && keys)
            keys[i++] = k;
    for (size_t a = 1; a < i; a++)
        for (size_t b = a; b > 0 && strcmp(keys[b - 1], keys[b]) > 0; b--) {
            const char *t = keys[b];
            keys[b] = keys[b - 1];
            keys[b - 1] = t;
        }
    for (size_t a = 0; a < i; a++) {
        printf("%s: ", keys[a]);
        const char *s = json_string_value(json_object_get(j, keys[a]));
        print_yaml_scalar(s ? s : "");
    }
    free(keys);
    json_decref(j);
    return 0;
}

/* pause, resume, stop, restart, delete: bodyless calls. */
static int cmd_action(struct client *cl, const char *what, const char *name)
{
    char path[700];
    const char *method = "PUT", *done = NULL;
    char suffix[80] = "";
    if (strcmp(what, "pause") == 0) {
        snprintf(suffix, sizeof(suffix), "/pause");
        done = "pause requested";
    } else if (strcmp(what, "resume") == 0) {
        snprintf(suffix, sizeof(suffix), "/resume");
        done = "resume requested";
    } else if (strcmp(what, "stop") == 0) {
        snprintf(suffix, sizeof(suffix), "/stop");
        done = "stopped";
    } else if (strcmp(what, "delete") == 0) {
        method = "DELETE";
        done = "deleted";
    } else {
        method = "POST";
        snprintf(suffix, sizeof(suffix), "/restart%s%s%s",
                 cl->include_tasks || cl->only_failed ? "?" : "",
                 cl->include_tasks ? "includeTasks=true" : "",
                 cl->only_failed ? (cl->include_tasks ? "&onlyFailed=true" : "onlyFailed=true") : "");
        done = "restarted";
    }
    if (conn_path(name, suffix, path, sizeof(path)) < 0)
        return 1;
    long status = 0;
    json_t *j;
    int rc = call_json(cl, method, path, NULL, &status, &j);
    if (rc)
        return rc;
    if (j && json_object_get(j, "connector")) {
        /* 202 from restart with includeTasks/onlyFailed: the status. */
        printf("%s: restart accepted; connector %s", name,
               str_or(json_object_get(j, "connector"), "state", "?"));
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(j, "tasks"), i, t)
            printf(", task %lld %s", (long long)json_integer_value(json_object_get(t, "id")),
                   str_or(t, "state", "?"));
        printf("\n");
    } else {
        printf("%s: %s\n", name, done);
    }
    json_decref(j);
    return 0;
}

int client_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "url", required_argument, NULL, 'u' },
        { "token-file", required_argument, NULL, 't' },
        { "config", required_argument, NULL, 'c' },
        { "include-tasks", no_argument, NULL, 'I' },
        { "only-failed", no_argument, NULL, 'F' },
        { "help", no_argument, NULL, 'h' },
        { 0 }
    };
    struct client cl = { .url = CLIENT_DEFAULT_URL };
    const char *url = NULL, *token_file = NULL, *config = NULL;
    int c;
    optind = 0;   /* glibc: full re-initialization, scanning from argv[1] */
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'u': url = optarg; break;
        case 't': token_file = optarg; break;
        case 'c': config = optarg; break;
        case 'I': cl.include_tasks = 1; break;
        case 'F': cl.only_failed = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    /* Also accept the whole command line ("spoke connectors list"). */
    if (nargs > 0 && strcmp(args[0], "connectors") == 0) {
        nargs--;
        args++;
    }
    if (nargs < 1) {
        usage(stderr);
        return 2;
    }
    const char *cmd = args[0];
    int want_arg = strcmp(cmd, "list") != 0;
    if ((want_arg && nargs != 2) || (!want_arg && nargs != 1)) {
        fprintf(stderr, "spoke connectors: %s takes %s\n", cmd,
                want_arg ? (strcmp(cmd, "create") == 0 ? "one FILE" : "one connector NAME")
                         : "no argument");
        usage(stderr);
        return 2;
    }
    static const char *const cmds[] = { "list", "status", "create", "config", "pause", "resume",
                                         "stop", "restart", "delete", NULL };
    const char *const *k = cmds;
    while (*k && strcmp(*k, cmd) != 0)
        k++;
    if (!*k) {
        fprintf(stderr, "spoke connectors: unknown command '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    if ((cl.include_tasks || cl.only_failed) && strcmp(cmd, "restart") != 0) {
        fprintf(stderr, "spoke connectors: --include-tasks and --only-failed go with restart\n");
        return 2;
    }
    if (config && config_defaults(&cl, config, url == NULL, token_file == NULL) < 0)
        return 1;
    if (url) {
        if (strstr(url, "://"))
            snprintf(cl.url, sizeof(cl.url), "%s", url);
        else
            snprintf(cl.url, sizeof(cl.url), "http://%s", url);
    }
    size_t ul = strlen(cl.url);
    while (ul && cl.url[ul - 1] == '/')
        cl.url[--ul] = '\0';
    if (token_file && set_token(&cl, token_file) < 0)
        return 1;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "spoke connectors: cannot initialize libcurl\n");
        return 1;
    }
    int rc;
    if (strcmp(cmd, "list") == 0)
        rc = cmd_list(&cl);
    else if (strcmp(cmd, "status") == 0)
        rc = cmd_status(&cl, args[1]);
    else if (strcmp(cmd, "create") == 0)
        rc = cmd_create(&cl, args[1]);
    else if (strcmp(cmd, "config") == 0)
        rc = cmd_config(&cl, args[1]);
    else
        rc = cmd_action(&cl, cmd, args[1]);
    curl_global_cleanup();
    memset(cl.auth, 0, sizeof(cl.auth));
    return rc;
}
