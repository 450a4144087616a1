/* fuzz_rest - libFuzzer harness for the REST request router and body
 * validation: rest_dispatch on a live runtime (file_source -> null_sink),
 * no sockets.
 *
 * Input: one or more requests separated by a line "%%":
 *   METHOD TARGET            (TARGET = raw path [?query])
 *   name: value              (host, content-type, authorization, origin,
 *   ...                       too-large, token; other names are ignored)
 *   <empty line>
 *   body bytes
 * A "token: 1" header sends the request to a second API instance that has
 * a bearer token ("fuzz-token"). After each input the runtime is put back:
 * connectors the input created are deleted, the two base connectors get
 * their config and RUNNING state back, and the log level returns to error.
 */
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "buf.h"
#include "ctl.h"
#include "log.h"
#include "rest.h"
#include "runtime.h"

#ifndef FUZZ_PLUGIN_DIR
#define FUZZ_PLUGIN_DIR "plugins"
#endif

static struct runtime *rt;
static struct rest *api;        /* no token */
static struct rest *api_token;  /* token "fuzz-token" */
static json_t *base_config[2];
static const char *const base_names[2] = { "src", "sink" };

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_rest: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static char workdir[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* At exit (end of -max_total_time or -runs): stop the runtime, free
 * everything (so LeakSanitizer sees only real leaks) and remove the
 * temp dir. */
static void teardown(void)
{
    rest_free(api);
    rest_free(api_token);
    if (rt)
        runtime_shutdown(rt);
    for (int i = 0; i < 2; i++)
        json_decref(base_config[i]);
    if (workdir[0])
        nftw(workdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *fp = fopen(path, "w");
    if (!fp || fputs(text, fp) < 0 || fclose(fp) != 0)
        die("cannot write", path);
    chmod(path, mode);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* tmpfs when there is one: the runtime fsyncs its state files. */
    snprintf(workdir, sizeof(workdir), "/dev/shm/spoke-fuzz-XXXXXX");
    if (access("/dev/shm", W_OK) != 0 || !mkdtemp(workdir)) {
        snprintf(workdir, sizeof(workdir), "/tmp/spoke-fuzz-XXXXXX");
        if (!mkdtemp(workdir)) {
            workdir[0] = '\0';
            die("mkdtemp failed", strerror(errno));
        }
    }
    const char *d = workdir;

    const char *pdir = getenv("FUZZ_PLUGIN_DIR");
    if (!pdir)
        pdir = FUZZ_PLUGIN_DIR;
    char path[512], cfg[512], tok[512], text[4096];
    snprintf(path, sizeof(path), "%s/in.ndjson", d);
    write_file(path, "{\"seq\":0}\n{\"seq\":1}\n{\"seq\":2}\n", 0600);
    snprintf(tok, sizeof(tok), "%s/token", d);
    write_file(tok, "fuzz-token\n", 0600);
    snprintf(cfg, sizeof(cfg), "%s/connectors.yaml", d);
    snprintf(text, sizeof(text),
             "worker:\n"
             "  plugin.path: [\"%s\"]\n"
             "  state.dir: \"%s/state\"\n"
             "  log.level: error\n"
             "  rest.enable: false\n"
             "  listeners: http://127.0.0.1:18083\n"
             "  shutdown.timeout.ms: 1000\n"
             "connectors:\n"
             "  - name: src\n"
             "    connector.class: file_source\n"
             "    topic: t\n"
             "    file: \"%s\"\n"
             "  - name: sink\n"
             "    connector.class: null_sink\n"
             "    topics: t\n",
             pdir, d, path);
    write_file(cfg, text, 0600);

    struct runtime_opts opts = { .config_path = cfg, .log_level = SPOKE_LOG_ERROR };
    struct buf errs = BUF_INIT;
    log_set_level(SPOKE_LOG_ERROR);
    rt = runtime_start(&opts, &errs);
    if (!rt)
        die("runtime_start failed", errs.p);
    buf_free(&errs);

    char err[512];
    static const char *const hosts[] = { "spoke.example:8083", "proxy.example" };
    struct rest_opts ro = {
        .listen = "http://127.0.0.1:18083", .hosts = hosts, .nhosts = 2,
        .max_connections = 8, .timeout_ms = 1000, .max_body = 65536,
    };
    api = rest_new(rt, &ro, err, sizeof(err));
    if (!api)
        die("rest_new failed", err);
    ro.token_file = tok;
    api_token = rest_new(rt, &ro, err, sizeof(err));
    if (!api_token)
        die("rest_new (token) failed", err);
    for (int i = 0; i < 2; i++) {
        struct ctl_err e = { 0 };
        base_config[i] = ctl_config(rt, base_names[i], &e);
        if (!base_config[i])
            die("ctl_config failed", e.msg);
    }
    atexit(teardown);
    return 0;
}

/* Copies [p, p+n) into a new NUL-terminated string. */
static char *dupn(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static const char *line_end(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    return nl ? nl : end;
}

static void run_one(const char *p, const char *end)
{
    char *hdr[5] = { 0 };   /* host, content-type, authorization, origin, method */
    int too_large = 0, use_token = 0;
    const char *le = line_end(p, end);
    const char *sp = memchr(p, ' ', (size_t)(le - p));
    char *method = dupn(p, sp ? (size_t)(sp - p) : (size_t)(le - p));
    char *target = sp ? dupn(sp + 1, (size_t)(le - sp - 1)) : dupn("/", 1);
    p = le < end ? le + 1 : end;
    while (p < end) {
        le = line_end(p, end);
        if (le == p) {
            p++;
            break;
        }
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon) {
            size_t kl = (size_t)(colon - p);
            const char *v = colon + 1;
            while (v < le && *v == ' ')
                v++;
            static const char *const names[] = { "host", "content-type", "authorization",
                                                 "origin" };
            for (int i = 0; i < 4; i++)
                if (kl == strlen(names[i]) && strncmp(p, names[i], kl) == 0) {
                    free(hdr[i]);
                    hdr[i] = dupn(v, (size_t)(le - v));
                }
            if (kl == 9 && strncmp(p, "too-large", 9) == 0)
                too_large = 1;
            if (kl == 5 && strncmp(p, "token", 5) == 0)
                use_token = 1;
        }
        p = le < end ? le + 1 : end;
    }
    char *q = strchr(target, '?');
    if (q)
        *q++ = '\0';
    /* The body is a separate allocation of exactly its size, so ASan sees
     * any read past it. */
    size_t blen = (size_t)(end - p);
    char *body = blen ? dupn(p, blen) : NULL;
    struct rest_request req = {
        .method = method, .path = target, .query = q, .host = hdr[0], .content_type = hdr[1],
        .authorization = hdr[2], .origin = hdr[3], .body = body, .body_len = blen,
        .body_too_large = too_large,
    };
    struct rest_response resp = { .body = BUF_INIT };
    rest_dispatch(use_token ? api_token : api, &req, &resp);
    if (resp.status < 200 || resp.status > 599)
        abort();
    if (resp.status >= 400) {
        /* Every error is {"error_code": status, "message": "..."}. */
        json_t *j = json_loadb(resp.body.p ? resp.body.p : "", resp.body.len, 0, NULL);
        if (!j || json_integer_value(json_object_get(j, "error_code")) != resp.status ||
            !json_is_string(json_object_get(j, "message")))
            abort();
        json_decref(j);
    }
    buf_free(&resp.body);
    free(body);
    for (int i = 0; i < 5; i++)
        free(hdr[i]);
    free(method);
    free(target);
}

/* Puts the runtime back the way LLVMFuzzerInitialize left it. */
static void restore(void)
{
    json_t *names = ctl_connectors(rt, 0, 0);
    size_t i;
    json_t *n;
    json_array_foreach(names, i, n) {
        const char *s = json_string_value(n);
        if (s && strcmp(s, "src") != 0 && strcmp(s, "sink") != 0) {
            struct ctl_err e = { 0 };
            ctl_delete(rt, s, &e);
        }
    }
    json_decref(names);
    for (int k = 0; k < 2; k++) {
        struct ctl_err e = { 0 };
        json_t *cfg = ctl_config(rt, base_names[k], &e);
        if (!cfg || !json_equal(cfg, base_config[k])) {
            int created = 0;
            json_decref(ctl_put(rt, base_names[k], base_config[k], 0, NULL, &created, &e));
        }
        json_decref(cfg);
        json_t *st = ctl_status(rt, base_names[k], &e);
        const char *state = json_string_value(json_object_get(json_object_get(st, "connector"),
                                                              "state"));
        if (state && strcmp(state, "RUNNING") != 0)
            ctl_resume(rt, base_names[k], &e);
        json_decref(st);
    }
    struct ctl_err e = { 0 };
    json_t *root = ctl_logger(rt, "root", &e);
    const char *level = json_string_value(json_object_get(root, "level"));
    if (!level || strcmp(level, "ERROR") != 0)
        json_decref(ctl_logger_set(rt, "root", "ERROR", &e));
    json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    for (int n = 0; p < end && n < 8; n++) {
        /* The next line that is exactly "%%" ends this request. */
        const char *sep = NULL;
        for (const char *s = p; s + 2 <= end; s++)
            if ((s == p || s[-1] == '\n') && s[0] == '%' && s[1] == '%' &&
                (s + 2 == end || s[2] == '\n')) {
                sep = s;
                break;
            }
        const char *e = sep ? sep : end;
        if (sep && e > p && e[-1] == '\n')
            e--;
        if (e > p)
            run_one(p, e);
        p = sep ? (sep + 3 <= end ? sep + 3 : end) : end;
    }
    restore();
    return 0;
}
