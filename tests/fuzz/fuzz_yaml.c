/* fuzz_yaml - libFuzzer harness for connectors.yaml: the bytes go through
 * yamlcfg_parse (libyaml into sections, ${env:...} references, duplicate
 * keys and names, anchors refused) and, when they parse, through
 * runtime_check, what `spoke validate` and every load run: the worker
 * settings, the topics, and each connector against its plugin's config
 * table and check() (the plugins built for the fuzzers: file_source,
 * null_sink, echo_transform).
 *
 * What must hold, besides no crash, leak or out-of-bounds access:
 *   1. a refused file says where: the message starts with the file name,
 *      then line and column;
 *   2. runtime_check's count and its text agree: errors come with a
 *      message, and no error with none;
 *   3. the same bytes give the same result twice.
 * A file that sets plugin.path is parsed but not checked: the check would
 * load whatever shared objects that directory holds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "registry.h"
#include "runtime.h"
#include "yamlcfg.h"

#ifndef FUZZ_PLUGIN_DIR
#define FUZZ_PLUGIN_DIR "plugins"
#endif

#define NAME "fuzz.yaml"

static void broken(const char *rule, size_t n, const char *a, const char *b)
{
    fprintf(stderr, "fuzz_yaml: %s (input of %zu bytes)\n  %s\n  %s\n", rule, n, a, b);
    abort();
}

/* Inputs refused by the parser, parsed with plugin.path (not checked),
 * checked valid, checked with errors. */
static size_t seen[4];

static void report(void)
{
    fprintf(stderr, "fuzz_yaml: %zu refused by the parser, %zu with plugin.path, %zu valid, "
            "%zu with errors in the check\n", seen[0] / 2, seen[1] / 2, seen[2] / 2, seen[3] / 2);
}

/* One pass over data[0..n): the result as text into out. */
static void one(const char *data, size_t n, struct buf *out)
{
    static const char *const dirs[1] = { FUZZ_PLUGIN_DIR };
    struct runtime_opts opts = { .config_path = NAME, .log_level = SPOKE_LOG_ERROR,
                                 .plugin_dirs = dirs, .nplugin_dirs = 1 };
    char err[1024] = "";
    struct cfg_file *f = NULL;
    buf_reset(out);
    if (yamlcfg_parse(data, n, NAME, &f, err, sizeof(err)) != 0) {
        int line, col;
        if (strncmp(err, NAME ":", sizeof(NAME)) != 0 ||
            sscanf(err + sizeof(NAME), "%d:%d:", &line, &col) != 2 || line < 1 || col < 1)
            broken("a refused file does not say where", n, err, "");
        buf_printf(out, "REFUSED %s", err);
        seen[0]++;
        return;
    }
    if (cfg_section_get(&f->worker, "plugin.path")) {
        buf_printf(out, "PARSED, plugin.path set");
        seen[1]++;
        yamlcfg_free(f);
        return;
    }
    struct registry *reg = registry_new();
    struct worker_settings ws = { 0 };
    struct buf errs = BUF_INIT;
    if (!reg)
        broken("out of memory", n, "", "");
    size_t nerr = runtime_check(f, &opts, reg, &ws, &errs);
    if ((nerr != 0) != (errs.len != 0))
        broken("the error count and the error text disagree", n, errs.p ? errs.p : "(none)",
               "");
    buf_printf(out, "CHECKED %zu\n%s", nerr, errs.p ? errs.p : "");
    seen[nerr ? 3 : 2]++;
    buf_free(&errs);
    worker_settings_free(&ws);
    registry_free(reg);
    yamlcfg_free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct buf r1, r2;
    if (!seen[0] && !seen[1] && !seen[2] && !seen[3])
        atexit(report);
    log_set_level(SPOKE_LOG_ERROR);
    one((const char *)data, size, &r1);
    one((const char *)data, size, &r2);
    if (buf_putc(&r1, '\0') != 0 || buf_putc(&r2, '\0') != 0)
        broken("out of memory", size, "", "");
    if (strcmp(r1.p, r2.p) != 0)
        broken("the same file gives two results", size, r1.p, r2.p);
    return 0;
}
