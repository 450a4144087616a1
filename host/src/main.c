/* spoke - the command line: run a pipeline, validate a config, list plugins. */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "client.h"
#include "conncfg.h"
#include "log.h"
#include "memtrim.h"
#include "recycle.h"
#include "registry.h"
#include "rest.h"
#include "runtime.h"
#include "yamlcfg.h"

/*
 * jemalloc's options (read by jemalloc itself when the executable links it;
 * an unused global otherwise, e.g. in sanitizer builds). One arena instead
 * of four per CPU: the task threads hand records to each other, so an
 * arena per thread bought no speed on the Velib' pipeline benchmark
 * (bench/velib) while each kept its own free pages, about 3 MB of resident
 * memory; dirty pages go back to the system after 1 s instead of 10.
 * jemalloc only purges decayed pages while some thread allocates, so an idle
 * host (a Velib' source polls once a minute) kept the pages its last poll
 * freed until the next one; jemalloc's background thread purges them on
 * time and sleeps while nothing is dirty (bench/README.md, idle RSS).
 * MALLOC_CONF in the environment still overrides these.
 */
extern const char *malloc_conf;
const char *malloc_conf = "narenas:1,dirty_decay_ms:1000,background_thread:true";

/*
 * libcurl's global init (run by the HTTP source plugins) calls
 * libssh2_init(0), which initializes OpenSSL's libcrypto - its config and
 * every algorithm, ~1.7 MB of resident pages (bench/README.md, idle RSS) -
 * although the sources allow only http and https, and TLS runs on GnuTLS
 * (libcurl's GnuTLS flavour, dev.sh). libssh2 sets up its crypto backend on
 * its first libssh2_init only, so asking first with LIBSSH2_INIT_NO_CRYPTO,
 * while the process is still single-threaded, skips that. (OpenSSL 3 also
 * initializes itself on first use, should anything use it.) libssh2 is
 * mapped already, as libcurl's dependency: RTLD_NOLOAD loads nothing, and a
 * libcurl built without libssh2 skips this.
 */
static void ssh2_skip_crypto_init(void)
{
    void *dl = dlopen("libssh2.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (!dl)
        return;
    void *sym = dlsym(dl, "libssh2_init");
    if (sym) {
        int (*init)(int);
        _Static_assert(sizeof(init) == sizeof(sym), "function and data pointers differ in size");
        memcpy(&init, &sym, sizeof(init));
        (void)init(0x0001 /* LIBSSH2_INIT_NO_CRYPTO */);
    }
    dlclose(dl);
}

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: spoke [run]      [-c FILE] [--state-dir DIR] [--plugin-path DIR]... [--log-level L]\n"
            "                        [--listen ADDR]\n"
            "       spoke validate   [-c FILE] [--plugin-path DIR]...\n"
            "       spoke plugins    [-c FILE] [--plugin-path DIR]... [--doc NAME]\n"
            "       spoke config-doc worker|connector|topic\n"
            "       spoke connectors [-c FILE] [--url URL] [--token-file F] list|status|create|config|\n"
            "                        pause|resume|stop|restart|delete ...\n"
            "       spoke version\n"
            "\n"
            "  run       start the connectors of FILE (default connectors.yaml); SIGTERM/SIGINT\n"
            "            drain and stop, SIGHUP reloads FILE (only changed connectors restart)\n"
            "  validate  check FILE completely (worker, topics, every connector against its\n"
            "            plugin's config table); exit 0 when valid, 1 with every error\n"
            "  plugins   list the plugins found in plugin.path and the files refused, with why;\n"
            "            --doc NAME prints NAME's config keys as a Markdown table\n"
            "  connectors  a thin client of the REST API (see `spoke connectors --help`)\n"
            "  config-doc  the host's own keys (worker section, every connector, topics) as a\n"
            "            Markdown table\n");
}

static const char *type_name(enum spoke_cfg_type t)
{
    switch (t) {
    case SPOKE_CFG_STRING: return "string";
    case SPOKE_CFG_INT: return "int";
    case SPOKE_CFG_LONG: return "long";
    case SPOKE_CFG_DOUBLE: return "double";
    case SPOKE_CFG_BOOL: return "bool";
    case SPOKE_CFG_LIST: return "list";
    case SPOKE_CFG_PASSWORD: return "password";
    }
    return "?";
}

/* The config table as Markdown; plugin READMEs embed exactly this. */
static void print_doc(const struct spoke_config_field *f)
{
    printf("| key | type | default | required | description |\n|---|---|---|---|---|\n");
    for (; f && f->name; f++) {
        if (f->flags & SPOKE_CFG_PREFIX) {
            printf("| `%s*` | %s | | | %s", f->name, type_name(f->type), f->doc ? f->doc : "");
            if (f->allowed) {
                printf(" (allowed properties: ");
                for (const char *const *a = f->allowed; *a; a++)
                    printf("%s`%s`", a == f->allowed ? "" : ", ", *a);
                printf(")");
            }
            printf(" |\n");
            continue;
        }
        printf("| `%s` | %s | %s | %s | %s", f->name, type_name(f->type),
               f->default_value ? f->default_value : "",
               (f->flags & SPOKE_CFG_REQUIRED) ? "yes" : "", f->doc ? f->doc : "");
        if (f->min != 0 || f->max != 0)
            printf(" (%.15g..%.15g)", f->min, f->max);
        if (f->allowed) {
            printf(" (one of: ");
            for (const char *const *a = f->allowed; *a; a++)
                printf("%s%s", a == f->allowed ? "" : ", ", *a);
            printf(")");
        }
        printf(" |\n");
    }
}

struct cli {
    const char *cmd;
    struct runtime_opts opts;
    const char *dirs[64];
    const char *doc;
};

static int parse_args(int argc, char **argv, struct cli *cli)
{
    static const struct option longopts[] = {
        { "config", required_argument, NULL, 'c' },
        { "state-dir", required_argument, NULL, 's' },
        { "plugin-path", required_argument, NULL, 'p' },
        { "log-level", required_argument, NULL, 'l' },
        { "doc", required_argument, NULL, 'd' },
        { "listen", required_argument, NULL, 'L' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { 0 }
    };
    memset(cli, 0, sizeof(*cli));
    cli->cmd = "run";
    cli->opts.config_path = "connectors.yaml";
    cli->opts.log_level = -1;
    cli->opts.plugin_dirs = cli->dirs;
    int c;
    while ((c = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': cli->opts.config_path = optarg; break;
        case 's': cli->opts.state_dir = optarg; break;
        case 'p':
            if (cli->opts.nplugin_dirs == 64) {
                fprintf(stderr, "spoke: too many --plugin-path options (64 at most)\n");
                return 2;
            }
            cli->dirs[cli->opts.nplugin_dirs++] = optarg;
            break;
        case 'l':
            cli->opts.log_level = log_level_parse(optarg);
            if (cli->opts.log_level < 0) {
                fprintf(stderr, "spoke: --log-level: '%s' is not one of error, warn, info, "
                        "debug, trace\n", optarg);
                return 2;
            }
            break;
        case 'd': cli->doc = optarg; break;
        case 'L': cli->opts.listen = optarg; break;
        case 'h': usage(stdout); exit(0);
        case 'V': printf("spoke %s\n", SPOKE_VERSION); exit(0);
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc)
        cli->cmd = argv[optind++];
    if (optind < argc && strcmp(cli->cmd, "config-doc") == 0)
        cli->doc = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "spoke: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    return 0;
}

static int cmd_validate(struct cli *cli)
{
    char err[512];
    struct cfg_file *f = NULL;
    if (yamlcfg_load(cli->opts.config_path, &f, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    struct registry *reg = registry_new();
    struct buf errs = BUF_INIT;
    log_set_level(SPOKE_LOG_ERROR);
    size_t n = runtime_check(f, &cli->opts, reg, NULL, &errs);
    if (n)
        fprintf(stderr, "%s%s: invalid: %zu error%s\n", errs.p ? errs.p : "",
                cli->opts.config_path, n, n == 1 ? "" : "s");
    else
        printf("%s: valid: %zu connector%s\n", cli->opts.config_path, f->nconnectors,
               f->nconnectors == 1 ? "" : "s");
    buf_free(&errs);
    registry_free(reg);
    yamlcfg_free(f);
    return n ? 1 : 0;
}

static int cmd_plugins(struct cli *cli)
{
    char err[512];
    struct cfg_file *f = NULL;
    struct worker_settings ws = { 0 };
    struct registry *reg = registry_new();
    log_set_level(SPOKE_LOG_ERROR);
    /* plugin.path from the config file when there is one, plus --plugin-path. */
    const char *const *dirs = cli->opts.plugin_dirs;
    size_t ndirs = cli->opts.nplugin_dirs;
    if (yamlcfg_load(cli->opts.config_path, &f, err, sizeof(err)) == 0) {
        struct buf errs = BUF_INIT;
        if (runtime_check(f, &cli->opts, reg, &ws, &errs) == 0 || ws.npath) {
            dirs = (const char *const *)ws.plugin_path;
            ndirs = ws.npath;
        }
        buf_free(&errs);
    } else if (ndirs == 0) {
        static const char *const def[] = { "build/plugins" };
        dirs = def;
        ndirs = 1;
    }
    registry_scan(reg, dirs, ndirs);
    int rc = 0;
    if (cli->doc) {
        const struct plugin_entry *p = registry_find(reg, cli->doc);
        if (!p) {
            fprintf(stderr, "spoke: no plugin named '%s'\n", cli->doc);
            rc = 1;
        } else {
            print_doc(p->desc->config);
        }
    } else {
        printf("%-24s %-10s %-8s %s\n", "NAME", "KIND", "VERSION", "FILE");
        for (size_t i = 0; i < reg->nplugins; i++)
            printf("%-24s %-10s %-8s %s\n", reg->plugins[i].name,
                   registry_kind_name(reg->plugins[i].desc->kind), reg->plugins[i].desc->version,
                   reg->plugins[i].path);
        if (reg->nrefused) {
            printf("\nrefused:\n");
            for (size_t i = 0; i < reg->nrefused; i++)
                printf("  %s: %s\n", reg->refused[i].path, reg->refused[i].reason);
        }
    }
    registry_free(reg);
    worker_settings_free(&ws);
    yamlcfg_free(f);
    return rc;
}

static int cmd_run(struct cli *cli)
{
    /* Signals are taken synchronously by this thread; every other thread
     * (ours and the plugins' libraries') inherits the blocked mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (cli->opts.log_level >= 0)
        log_set_level(cli->opts.log_level);
    ssh2_skip_crypto_init(); /* before any thread, any plugin */

    struct buf errs = BUF_INIT;
    struct runtime *rt = runtime_start(&cli->opts, &errs);
    if (!rt) {
        fprintf(stderr, "%sspoke: not started\n", errs.p ? errs.p : "");
        buf_free(&errs);
        return 1;
    }
    buf_free(&errs);
    struct rest *rest = NULL;
    const struct worker_settings *ws = runtime_worker(rt);
    if (ws->rest_enable) {
        struct rest_opts ro = {
            .listen = ws->listeners,
            .token_file = ws->rest_token_file,
            .hosts = (const char *const *)ws->rest_hosts,
            .nhosts = ws->nrest_hosts,
            .max_connections = ws->rest_max_connections,
            .timeout_ms = ws->rest_timeout_ms,
            .max_body = ws->rest_max_body,
        };
        char err[512];
        rest = rest_new(rt, &ro, err, sizeof(err));
        if (!rest || rest_listen(rest, err, sizeof(err)) != 0) {
            fprintf(stderr, "spoke: REST API: %s\nspoke: not started\n", err);
            rest_free(rest);
            runtime_shutdown(rt);
            return 1;
        }
        LOG_I(NULL, "REST API on %s%s", ws->listeners,
              ws->rest_token_file ? " (token required for changes)" : "");
        if (ws->rest_threads_set)
            LOG_W(NULL, "rest.threads is ignored: each REST connection has a thread of its own");
    }
    /* This thread only waits for signals from now on. */
    memtrim_thread_uncached();
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            runtime_reload(rt);
            continue;
        }
        LOG_I(NULL, "received %s", sig == SIGINT ? "SIGINT" : "SIGTERM");
        break;
    }
    /* No REST change may start while the runtime drains. */
    rest_free(rest);
    runtime_shutdown(rt);
    recycle_trim(); /* the task threads' magazines reached the depot as they exited */
    return 0;
}

int main(int argc, char **argv)
{
    /* The client has its own options: hand it everything after the word. */
    if (argc >= 2 && strcmp(argv[1], "connectors") == 0)
        return client_main(argc - 1, argv + 1);
    struct cli cli;
    int rc = parse_args(argc, argv, &cli);
    if (rc)
        return rc;
    if (strcmp(cli.cmd, "run") == 0)
        return cmd_run(&cli);
    if (strcmp(cli.cmd, "validate") == 0)
        return cmd_validate(&cli);
    if (strcmp(cli.cmd, "plugins") == 0)
        return cmd_plugins(&cli);
    if (strcmp(cli.cmd, "config-doc") == 0) {
        const char *what = cli.doc ? cli.doc : "";
        if (strcmp(what, "worker") == 0)
            print_doc(conncfg_worker_fields);
        else if (strcmp(what, "connector") == 0)
            print_doc(conncfg_fields);
        else if (strcmp(what, "topic") == 0)
            print_doc(conncfg_topic_fields);
        else {
            fprintf(stderr, "spoke: config-doc takes worker, connector or topic\n");
            return 2;
        }
        return 0;
    }
    if (strcmp(cli.cmd, "version") == 0) {
        printf("spoke %s (plugin ABI %u)\n", SPOKE_VERSION, SPOKE_ABI_VERSION);
        return 0;
    }
    fprintf(stderr, "spoke: unknown command '%s'\n", cli.cmd);
    usage(stderr);
    return 2;
}
