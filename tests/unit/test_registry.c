/* test_registry - plugin discovery and loading against the built fixtures in
 * $SPOKE_TEST_PLUGIN_DIR (built from tests/plugins). Every case works in its
 * own mkdtemp directory, into which fixtures are copied (possibly renamed,
 * chmod'ed or symlinked) before a scan. */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "instance.h"
#include "log.h"
#include "registry.h"
#include "test.h"

#define DIRSZ 512    /* a temp dir; small, so paths under it fit PATHSZ */
#define PATHSZ 4096

static const char *fixtures;

/* Under the build directory when ctest names it: /tmp may be mounted
 * noexec, and dlopen needs to map the copies executable. */
static void make_tmpdir(char *out)
{
    const char *t = getenv("SPOKE_BUILD_DIR");
    if (!t || !*t)
        t = getenv("TMPDIR");
    snprintf(out, DIRSZ, "%s/spoke-registry-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(out)) {
        fprintf(stderr, "mkdtemp %s: %s\n", out, strerror(errno));
        exit(1);
    }
}

/* Removes a directory made by make_tmpdir with the files in it. */
static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[PATHSZ];
    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        if (unlink(p) != 0 && errno == EISDIR)
            rmdir(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Copies src to dst (which must not exist) with exactly `mode` (umask does
 * not apply). 0 or -1. */
static int copy_file(const char *src, const char *dst, mode_t mode)
{
    char b[65536];
    ssize_t n;
    int rc = -1;
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (in < 0 || out < 0)
        goto done;
    while ((n = read(in, b, sizeof(b))) > 0)
        if (write(out, b, (size_t)n) != n)
            goto done;
    if (n == 0 && fchmod(out, mode) == 0)
        rc = 0;
done:
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) != 0)
        rc = -1;
    if (rc != 0)
        fprintf(stderr, "copy %s -> %s failed: %s\n", src, dst, strerror(errno));
    return rc;
}

/* Copies fixture <name>.so into dir as file `as` (NULL: same name). */
static int put_fixture(const char *dir, const char *name, const char *as, mode_t mode)
{
    char src[PATHSZ], dst[PATHSZ];
    snprintf(src, sizeof(src), "%s/%s.so", fixtures, name);
    if (as)
        snprintf(dst, sizeof(dst), "%s/%s", dir, as);
    else
        snprintf(dst, sizeof(dst), "%s/%s.so", dir, name);
    return copy_file(src, dst, mode);
}

static const struct plugin_refusal *refusal_for(const struct registry *reg, const char *path)
{
    for (size_t i = 0; i < reg->nrefused; i++)
        if (strcmp(reg->refused[i].path, path) == 0)
            return &reg->refused[i];
    return NULL;
}

static size_t refusals_for(const struct registry *reg, const char *path)
{
    size_t n = 0;
    for (size_t i = 0; i < reg->nrefused; i++)
        n += strcmp(reg->refused[i].path, path) == 0;
    return n;
}

/* The refusal reason of dir/file, or NULL. */
static const char *reason_for(const struct registry *reg, const char *dir, const char *file)
{
    char p[PATHSZ];
    snprintf(p, sizeof(p), "%s/%s", dir, file);
    const struct plugin_refusal *r = refusal_for(reg, p);
    return r ? r->reason : NULL;
}

/* CONTAINS on a char array trips -Waddress; pass arrays through this. */
static const char *str(const char *s) { return s; }

static int scan1(struct registry *reg, const char *dir)
{
    const char *dirs[] = { dir };
    return registry_scan(reg, dirs, 1);
}

/* Counts lines containing needle in a log capture file. */
static int count_lines(FILE *fp, const char *needle)
{
    char line[4096];
    int n = 0;
    rewind(fp);
    while (fgets(line, sizeof(line), fp))
        n += strstr(line, needle) != NULL;
    return n;
}

/* ---- cases ---- */

static void test_refusal_fixtures(void)
{
    static const struct {
        const char *fixture;
        const char *want;
        const char *want2;
    } cases[] = {
        { "bad_magic", "bad_magic.so: bad magic 0xdeadbeef, expected 0x454b5053 (not a Spoke plugin)", NULL },
        { "abi_future", NULL /* built below */, NULL },
        { "abi_past", "abi_past.so: built for ABI 0, host speaks 1", "accepts ABI 1 at the oldest" },
        { "short_struct", "short_struct.so: struct_size ", "smaller than the ABI 1 descriptor" },
        { "reserved_set", "reserved_set.so: header field reserved is 0x00000001, must be 0", NULL },
        { "no_entry", "no_entry.so: no symbol spoke_plugin_entry", NULL },
        { "null_entry", "null_entry.so: spoke_plugin_entry() returned NULL", NULL },
        { "name_mismatch",
          "name_mismatch.so: descriptor name 'mismatched_name' differs from file name 'name_mismatch'", NULL },
        { "bad_kind", "bad_kind.so: invalid kind 7", NULL },
        { "missing_callback", "missing_callback.so: sink plugin lacks required callback flush", NULL },
        { "foreign_callback", "foreign_callback.so: sink plugin sets process, which only transform plugins use", NULL },
        { "half_snapshot", "half_snapshot.so: snapshot and restore must be set together", NULL },
        /* The rest of these two reasons is cfgval's wording. */
        { "bad_config", "bad_config.so: ", "'retries'" },
        { "reserved_key", "reserved_key.so: ", "'topic'" },
    };
    const size_t n = sizeof(cases) / sizeof(cases[0]);
    char dir[DIRSZ], abi_msg[128];
    snprintf(abi_msg, sizeof(abi_msg), "abi_future.so: built for ABI %u, host speaks %u",
             SPOKE_ABI_VERSION + 1, SPOKE_ABI_VERSION);

    make_tmpdir(dir);
    for (size_t i = 0; i < n; i++)
        CHECK(put_fixture(dir, cases[i].fixture, NULL, 0644) == 0);

    FILE *logf = tmpfile();
    CHECK(logf != NULL);
    log_set_stream(logf);
    struct registry *reg = registry_new();
    CHECK(reg != NULL);
    int loaded = scan1(reg, dir);
    log_set_stream(NULL);

    CHECK(loaded == 0);
    CHECK(reg->nplugins == 0);
    CHECK_MSG(reg->nrefused == n, "%zu refusals for %zu fixtures", reg->nrefused, n);
    for (size_t i = 0; i < n; i++) {
        char file[128];
        snprintf(file, sizeof(file), "%s.so", cases[i].fixture);
        const char *why = reason_for(reg, dir, file);
        const char *want = cases[i].want ? cases[i].want : abi_msg;
        CHECK_MSG(CONTAINS(why, want), "%s: reason \"%s\", expected \"%s\"",
                  file, why ? why : "(none)", want);
        if (cases[i].want2)
            CHECK_MSG(CONTAINS(why, cases[i].want2), "%s: reason \"%s\" lacks \"%s\"",
                      file, why ? why : "(none)", cases[i].want2);
        CHECK(registry_find(reg, cases[i].fixture) == NULL);
        /* One warning line per refusal, carrying the reason. */
        CHECK_MSG(logf && why && count_lines(logf, why) == 1, "%s: not logged once", file);
    }
    if (logf) {
        /* ... and nothing else at warn level. */
        CHECK(count_lines(logf, "") == (int)n);
        CHECK(count_lines(logf, "plugin refused") == (int)n);
        fclose(logf);
    }
    registry_free(reg);
    rm_tree(dir);
}

static void test_working_fixtures(void)
{
    static const struct {
        const char *name;
        enum spoke_kind kind;
    } cases[] = {
        { "echo_transform", SPOKE_KIND_TRANSFORM },
        { "failing_sink", SPOKE_KIND_SINK },
        { "counting_sink", SPOKE_KIND_SINK },
    };
    char dir[DIRSZ], p[PATHSZ];
    make_tmpdir(dir);
    for (size_t i = 0; i < 3; i++)
        CHECK(put_fixture(dir, cases[i].name, NULL, 0755) == 0);
    /* Not named *.so: ignored, neither loaded nor refused. */
    CHECK(put_fixture(dir, "echo_transform", "echo_transform.so.bak", 0644) == 0);
    CHECK(put_fixture(dir, "echo_transform", "README", 0644) == 0);

    struct registry *reg = registry_new();
    CHECK(scan1(reg, dir) == 3);
    CHECK(reg->nplugins == 3);
    CHECK_MSG(reg->nrefused == 0, "unexpected refusal: %s",
              reg->nrefused ? reg->refused[0].reason : "");
    for (size_t i = 0; i < 3; i++) {
        const struct plugin_entry *e = registry_find(reg, cases[i].name);
        CHECK_MSG(e != NULL, "%s not loaded", cases[i].name);
        if (!e)
            continue;
        snprintf(p, sizeof(p), "%s/%s.so", dir, cases[i].name);
        CHECK_STR(e->name, cases[i].name);
        CHECK_STR(e->path, p);
        CHECK(e->dl != NULL);
        CHECK(e->desc != NULL);
        CHECK_STR(e->desc->name, cases[i].name);
        CHECK(e->desc->kind == cases[i].kind);
        CHECK_STR(e->desc->version, "0.1.0");
        CHECK(e->desc->hdr.abi_version == SPOKE_ABI_VERSION);
        CHECK(e->desc->init != NULL && e->desc->destroy != NULL);
    }
    /* Sorted discovery order. */
    CHECK_STR(reg->plugins[0].name, "counting_sink");
    CHECK_STR(reg->plugins[1].name, "echo_transform");
    CHECK_STR(reg->plugins[2].name, "failing_sink");

    CHECK_STR(registry_kind_name(SPOKE_KIND_SOURCE), "source");
    CHECK_STR(registry_kind_name(SPOKE_KIND_TRANSFORM), "transform");
    CHECK_STR(registry_kind_name(SPOKE_KIND_SINK), "sink");
    CHECK_STR(registry_kind_name((enum spoke_kind)42), "unknown");
    registry_free(reg);
    registry_free(NULL);
    rm_tree(dir);
}

static void test_writable_files(void)
{
    char dir[DIRSZ], p[PATHSZ];
    make_tmpdir(dir);
    CHECK(put_fixture(dir, "echo_transform", NULL, 0666) == 0);
    CHECK(put_fixture(dir, "counting_sink", NULL, 0664) == 0);
    CHECK(put_fixture(dir, "failing_sink", NULL, 0602) == 0);

    struct registry *reg = registry_new();
    CHECK(scan1(reg, dir) == 0);
    CHECK(reg->nplugins == 0);
    const char *why = reason_for(reg, dir, "echo_transform.so");
    CHECK_MSG(CONTAINS(why, "echo_transform.so: mode 0666 is group- and world-writable"),
              "reason: %s", why ? why : "(none)");
    why = reason_for(reg, dir, "counting_sink.so");
    CHECK_MSG(CONTAINS(why, "counting_sink.so: mode 0664 is group-writable"),
              "reason: %s", why ? why : "(none)");
    why = reason_for(reg, dir, "failing_sink.so");
    CHECK_MSG(CONTAINS(why, "failing_sink.so: mode 0602 is world-writable"),
              "reason: %s", why ? why : "(none)");

    /* Unchanged: not loaded, and the refusal is not recorded twice. */
    CHECK(scan1(reg, dir) == 0);
    CHECK(reg->nrefused == 3);

    /* chmod go-w changes neither mtime nor (reliably, at clock
     * granularity) ctime, but it fixes the refusal: the rescan retries. */
    snprintf(p, sizeof(p), "%s/echo_transform.so", dir);
    CHECK(chmod(p, 0644) == 0);
    CHECK(scan1(reg, dir) == 1);
    CHECK(registry_find(reg, "echo_transform") != NULL);
    CHECK(refusal_for(reg, p) == NULL);
    CHECK(reg->nrefused == 2);
    registry_free(reg);
    rm_tree(dir);
}

static void test_symlink(void)
{
    char real[DIRSZ], links[DIRSZ], target[PATHSZ], p[PATHSZ];
    make_tmpdir(real);
    make_tmpdir(links);
    CHECK(put_fixture(real, "echo_transform", NULL, 0644) == 0);
    snprintf(target, sizeof(target), "%s/echo_transform.so", real);
    snprintf(p, sizeof(p), "%s/echo_transform.so", links);
    CHECK(symlink(target, p) == 0);

    struct registry *reg = registry_new();
    CHECK(scan1(reg, links) == 0);
    const char *why = reason_for(reg, links, "echo_transform.so");
    CHECK_MSG(CONTAINS(why, "echo_transform.so: is a symbolic link"), "reason: %s",
              why ? why : "(none)");
    CHECK(registry_find(reg, "echo_transform") == NULL);
    /* The target itself, scanned directly, is fine. */
    CHECK(scan1(reg, real) == 1);
    const struct plugin_entry *e = registry_find(reg, "echo_transform");
    CHECK(e != NULL && strcmp(e->path, target) == 0);
    registry_free(reg);
    rm_tree(links);
    rm_tree(real);
}

static void test_file_names(void)
{
    static const char *const bad[] = {
        "Echo_transform.so", "echo-transform.so", "a..b.so", ".so", "echo transform.so",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.so", /* 65 */
    };
    const size_t nbad = sizeof(bad) / sizeof(bad[0]);
    const char *at64 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.so";
    char dir[DIRSZ], want[PATHSZ];
    make_tmpdir(dir);
    for (size_t i = 0; i < nbad; i++)
        CHECK(put_fixture(dir, "echo_transform", bad[i], 0644) == 0);
    /* Valid names whose content is echo_transform: refused as mismatches. */
    CHECK(put_fixture(dir, "echo_transform", "other_name.so", 0644) == 0);
    CHECK(put_fixture(dir, "echo_transform", at64, 0644) == 0);

    struct registry *reg = registry_new();
    CHECK(scan1(reg, dir) == 0);
    CHECK(reg->nplugins == 0);
    CHECK(reg->nrefused == nbad + 2);
    for (size_t i = 0; i < nbad; i++) {
        const char *why = reason_for(reg, dir, bad[i]);
        snprintf(want, sizeof(want), "%s: plugin file names must match [a-z0-9_]{1,64}.so", bad[i]);
        CHECK_MSG(CONTAINS(why, str(want)), "%s: reason %s", bad[i], why ? why : "(none)");
    }
    const char *why = reason_for(reg, dir, "other_name.so");
    CHECK_MSG(CONTAINS(why, "other_name.so: descriptor name 'echo_transform' differs from file name 'other_name'"),
              "reason: %s", why ? why : "(none)");
    why = reason_for(reg, dir, at64);
    CHECK_MSG(CONTAINS(why, "descriptor name 'echo_transform' differs from file name 'aaaa"),
              "reason: %s", why ? why : "(none)");
    CHECK(registry_find(reg, "echo_transform") == NULL);
    CHECK(registry_find(reg, "other_name") == NULL);
    registry_free(reg);
    rm_tree(dir);
}

static void test_find_and_names(void)
{
    char dir[DIRSZ];
    make_tmpdir(dir);
    CHECK(put_fixture(dir, "echo_transform", NULL, 0644) == 0);
    struct registry *reg = registry_new();
    CHECK(scan1(reg, dir) == 1);

    /* The positive lookup proves the negative ones are not vacuous. */
    CHECK(registry_find(reg, "echo_transform") != NULL);
    CHECK(registry_find(reg, "../echo_transform") == NULL);
    CHECK(registry_find(reg, "a/b") == NULL);
    CHECK(registry_find(reg, "ECHO") == NULL);
    CHECK(registry_find(reg, "Echo_transform") == NULL);
    CHECK(registry_find(reg, "echo_transform.so") == NULL);
    CHECK(registry_find(reg, "") == NULL);
    CHECK(registry_find(reg, NULL) == NULL);
    CHECK(registry_find(reg, "counting_sink") == NULL);

    char n64[66], n65[67];
    memset(n64, 'a', 64);
    n64[64] = '\0';
    memset(n65, 'a', 65);
    n65[65] = '\0';
    CHECK(registry_valid_name("velib_source") == 1);
    CHECK(registry_valid_name("a") == 1);
    CHECK(registry_valid_name("0_9") == 1);
    CHECK(registry_valid_name(n64) == 1);
    CHECK(registry_valid_name(n65) == 0);
    CHECK(registry_valid_name("") == 0);
    CHECK(registry_valid_name(NULL) == 0);
    CHECK(registry_valid_name("../x") == 0);
    CHECK(registry_valid_name("a/b") == 0);
    CHECK(registry_valid_name("Upper") == 0);
    CHECK(registry_valid_name("a-b") == 0);
    CHECK(registry_valid_name("a.b") == 0);
    CHECK(registry_valid_name("a b") == 0);
    registry_free(reg);
    rm_tree(dir);
}

static void test_missing_dir(void)
{
    char good[DIRSZ], missing[PATHSZ], notdir[PATHSZ], want[2 * PATHSZ];
    make_tmpdir(good);
    snprintf(missing, sizeof(missing), "%s/does-not-exist", good);
    snprintf(notdir, sizeof(notdir), "%s/echo_transform.so", good);
    CHECK(put_fixture(good, "echo_transform", NULL, 0644) == 0);

    struct registry *reg = registry_new();
    const char *dirs[] = { missing, good, notdir };
    CHECK(registry_scan(reg, dirs, 3) == 1);
    CHECK(registry_find(reg, "echo_transform") != NULL);
    const struct plugin_refusal *r = refusal_for(reg, missing);
    snprintf(want, sizeof(want), "%s: cannot open plugin directory: %s", missing, strerror(ENOENT));
    CHECK_MSG(r && CONTAINS(r->reason, str(want)), "reason: %s", r ? r->reason : "(none)");
    r = refusal_for(reg, notdir);
    snprintf(want, sizeof(want), "%s: cannot open plugin directory: %s", notdir, strerror(ENOTDIR));
    CHECK_MSG(r && CONTAINS(r->reason, str(want)), "reason: %s", r ? r->reason : "(none)");
    CHECK(reg->nrefused == 2);

    /* Still missing: still one refusal each, nothing reloaded. */
    CHECK(registry_scan(reg, dirs, 3) == 0);
    CHECK(reg->nrefused == 2);
    CHECK(refusals_for(reg, missing) == 1);
    CHECK(reg->nplugins == 1);

    /* The directory appears: its refusal goes away. */
    CHECK(mkdir(missing, 0755) == 0);
    CHECK(registry_scan(reg, dirs, 3) == 0);
    CHECK(refusal_for(reg, missing) == NULL);
    CHECK(reg->nrefused == 1);
    registry_free(reg);
    rmdir(missing);
    rm_tree(good);
}

static void test_rescan_new_file(void)
{
    char dir[DIRSZ];
    make_tmpdir(dir);
    CHECK(put_fixture(dir, "echo_transform", NULL, 0644) == 0);
    struct registry *reg = registry_new();
    CHECK(scan1(reg, dir) == 1);
    const struct plugin_entry *e = registry_find(reg, "echo_transform");
    const struct spoke_plugin *desc = e ? e->desc : NULL;
    void *dl = e ? e->dl : NULL;
    CHECK(desc != NULL);

    CHECK(put_fixture(dir, "counting_sink", NULL, 0644) == 0);
    CHECK(scan1(reg, dir) == 1);
    CHECK(reg->nplugins == 2);
    CHECK(registry_find(reg, "counting_sink") != NULL);
    e = registry_find(reg, "echo_transform");
    CHECK(e != NULL && e->desc == desc && e->dl == dl);

    /* Nothing new: nothing loaded, nothing refused. */
    CHECK(scan1(reg, dir) == 0);
    CHECK(reg->nplugins == 2);
    CHECK(reg->nrefused == 0);
    registry_free(reg);
    rm_tree(dir);
}

static void test_refused_then_replaced(void)
{
    char dir[DIRSZ], p[PATHSZ], tmp[PATHSZ], src[PATHSZ];
    struct stat st;
    make_tmpdir(dir);
    /* bad_magic's bytes under a good name: refused on the header. */
    CHECK(put_fixture(dir, "bad_magic", "counting_sink.so", 0644) == 0);
    snprintf(p, sizeof(p), "%s/counting_sink.so", dir);

    struct registry *reg = registry_new();
    CHECK(scan1(reg, dir) == 0);
    const struct plugin_refusal *r = refusal_for(reg, p);
    CHECK(r && CONTAINS(r->reason, "counting_sink.so: bad magic"));
    CHECK(scan1(reg, dir) == 0);
    CHECK(reg->nrefused == 1);

    /* Replace it the way a deploy does (write aside, rename over), with an
     * mtime that differs for sure whatever the clock granularity. */
    CHECK(stat(p, &st) == 0);
    snprintf(src, sizeof(src), "%s/counting_sink.so", fixtures);
    snprintf(tmp, sizeof(tmp), "%s/counting_sink.so.new", dir);
    CHECK(copy_file(src, tmp, 0644) == 0);
    struct timespec times[2] = { st.st_atim, st.st_mtim };
    times[1].tv_sec += 100;
    CHECK(utimensat(AT_FDCWD, tmp, times, 0) == 0);
    CHECK(rename(tmp, p) == 0);

    CHECK(scan1(reg, dir) == 1);
    const struct plugin_entry *e = registry_find(reg, "counting_sink");
    CHECK(e != NULL && e->desc->kind == SPOKE_KIND_SINK);
    CHECK(refusal_for(reg, p) == NULL);
    CHECK(reg->nrefused == 0);
    registry_free(reg);
    rm_tree(dir);
}

static void test_removed_refusal_pruned(void)
{
    char dir[DIRSZ], p[PATHSZ];
    make_tmpdir(dir);
    CHECK(put_fixture(dir, "bad_magic", NULL, 0644) == 0);
    snprintf(p, sizeof(p), "%s/bad_magic.so", dir);
    struct registry *reg = registry_new();
    CHECK(scan1(reg, dir) == 0);
    CHECK(reg->nrefused == 1);
    CHECK(unlink(p) == 0);
    CHECK(scan1(reg, dir) == 0);
    CHECK(reg->nrefused == 0);
    registry_free(reg);
    rm_tree(dir);
}

static void test_duplicates(void)
{
    char d1[DIRSZ], d2[DIRSZ], d1dot[PATHSZ], want[2 * PATHSZ];
    make_tmpdir(d1);
    make_tmpdir(d2);
    CHECK(put_fixture(d1, "echo_transform", NULL, 0644) == 0);
    CHECK(put_fixture(d2, "echo_transform", NULL, 0644) == 0);

    struct registry *reg = registry_new();
    const char *dirs[] = { d1, d2 };
    CHECK(registry_scan(reg, dirs, 2) == 1);
    const struct plugin_entry *e = registry_find(reg, "echo_transform");
    char p1[PATHSZ];
    snprintf(p1, sizeof(p1), "%s/echo_transform.so", d1);
    CHECK(e != NULL && strcmp(e->path, p1) == 0);
    const char *why = reason_for(reg, d2, "echo_transform.so");
    snprintf(want, sizeof(want), "duplicate plugin 'echo_transform': already loaded from %s", p1);
    CHECK_MSG(CONTAINS(why, str(want)), "reason: %s", why ? why : "(none)");
    CHECK(registry_scan(reg, dirs, 2) == 0);
    CHECK(reg->nrefused == 1);
    registry_free(reg);

    /* The same directory spelled twice is the same file, not a duplicate. */
    snprintf(d1dot, sizeof(d1dot), "%s/.", d1);
    const char *twice[] = { d1, d1dot };
    reg = registry_new();
    CHECK(registry_scan(reg, twice, 2) == 1);
    CHECK(reg->nplugins == 1);
    CHECK_MSG(reg->nrefused == 0, "refusal: %s", reg->nrefused ? reg->refused[0].reason : "");
    registry_free(reg);
    rm_tree(d2);
    rm_tree(d1);
}

static void test_load_one(void)
{
    char dir[DIRSZ], p[PATHSZ], err[256];
    make_tmpdir(dir);
    CHECK(put_fixture(dir, "bad_magic", NULL, 0644) == 0);
    CHECK(put_fixture(dir, "failing_sink", NULL, 0644) == 0);
    CHECK(put_fixture(dir, "echo_transform", "empty.so", 0644) == 0);
    snprintf(p, sizeof(p), "%s/empty.so", dir);
    CHECK(truncate(p, 0) == 0);
    struct registry *reg = registry_new();

    snprintf(p, sizeof(p), "%s/bad_magic.so", dir);
    err[0] = '\0';
    CHECK(registry_load(reg, p, err, sizeof(err)) == -1);
    CHECK_MSG(CONTAINS(str(err), "bad_magic.so: bad magic"), "err: %s", err);
    CHECK(refusal_for(reg, p) != NULL);
    /* Retried on every explicit load, still one record. */
    CHECK(registry_load(reg, p, NULL, 0) == -1);
    CHECK(refusals_for(reg, p) == 1);

    snprintf(p, sizeof(p), "%s/empty.so", dir);
    CHECK(registry_load(reg, p, err, sizeof(err)) == -1);
    CHECK_MSG(CONTAINS(str(err), "empty.so: dlopen failed: "), "err: %s", err);

    snprintf(p, sizeof(p), "%s/nope.so", dir);
    CHECK(registry_load(reg, p, err, sizeof(err)) == -1);
    CHECK_MSG(CONTAINS(str(err), strerror(ENOENT)), "err: %s", err);

    /* A short buffer gets a truncated, terminated reason. */
    char tiny[8];
    CHECK(registry_load(reg, p, tiny, sizeof(tiny)) == -1);
    CHECK(strlen(tiny) == sizeof(tiny) - 1);

    /* Fixed in place: the explicit load succeeds and the refusal is gone. */
    snprintf(p, sizeof(p), "%s/bad_magic.so", dir);
    CHECK(unlink(p) == 0);
    CHECK(put_fixture(dir, "failing_sink", "bad_magic.so", 0644) == 0);
    CHECK(registry_load(reg, p, err, sizeof(err)) == -1);
    CHECK_MSG(CONTAINS(str(err), "descriptor name 'failing_sink' differs"), "err: %s", err);
    CHECK(unlink(p) == 0);
    CHECK(put_fixture(dir, "bad_magic", NULL, 0644) == 0);

    snprintf(p, sizeof(p), "%s/failing_sink.so", dir);
    CHECK(unlink(p) == 0);
    CHECK(put_fixture(dir, "bad_magic", "failing_sink.so", 0644) == 0);
    CHECK(registry_load(reg, p, err, sizeof(err)) == -1);
    CHECK(refusal_for(reg, p) != NULL);
    CHECK(unlink(p) == 0);
    CHECK(put_fixture(dir, "failing_sink", NULL, 0644) == 0);
    CHECK(registry_load(reg, p, err, sizeof(err)) == 0);
    CHECK(refusal_for(reg, p) == NULL);
    CHECK(registry_load(reg, p, err, sizeof(err)) == 0);
    CHECK(reg->nplugins == 1);
    const struct plugin_entry *e = registry_find(reg, "failing_sink");
    CHECK(e != NULL && e->desc->kind == SPOKE_KIND_SINK && e->desc->put && e->desc->flush);
    /* A scan of the same directory finds it loaded already. */
    CHECK(scan1(reg, dir) == 0);
    CHECK(reg->nplugins == 1);
    registry_free(reg);
    rm_tree(dir);
}

/* A check that reports n problems: the first returned, the rest through
 * check_problem (n > 0), each about key "k<i>"; one more call with another
 * config, which the host must not count. */
static int check_n;
static int many_check(const struct spoke_host_api *api, const struct spoke_config *cfg,
                      const char **key, char *errstr, size_t errstr_size)
{
    static const struct spoke_config *other = (const struct spoke_config *)&check_n;
    if (!check_n)
        return SPOKE_OK;
    for (int i = 1; i < check_n; i++) {
        char k[16], m[32];
        snprintf(k, sizeof(k), "k%d", i);
        snprintf(m, sizeof(m), "problem %d\nsecond line", i);
        api->check_problem(cfg, i == 2 ? NULL : k, m);
    }
    api->check_problem(other, "x", "not this check's config");
    *key = "k0";
    snprintf(errstr, errstr_size, "problem 0");
    return SPOKE_ERR_INVALID;
}

/* api->check_problem: the problems of the check running, in order, each
 * with its key (or none), on one line; at most REGISTRY_CHECK_MORE; none
 * from a call with another config or outside a check; none left over for
 * a check that passes. */
static void test_check_problems(void)
{
    struct spoke_plugin desc = { .hdr = SPOKE_PLUGIN_HEADER_INIT, .check = many_check };
    struct check_problems more;
    const char *key;
    char err[256];
    check_n = 4;
    CHECK(registry_check_config(&desc, &api_table, (const struct spoke_config *)&desc, &key,
                                err, sizeof(err), &more) == SPOKE_ERR_INVALID);
    CHECK_STR(err, "problem 0");
    CHECK_STR(key, "k0");
    CHECK(more.n == 3);
    CHECK(more.n == 3 && !strcmp(more.v[0].key, "k1") && more.v[1].key == NULL &&
          !strcmp(more.v[2].key, "k3"));
    CHECK(more.n == 3 && !strcmp(more.v[1].msg, "problem 2 second line"));
    check_problems_free(&more);
    CHECK(more.n == 0);
    check_n = REGISTRY_CHECK_MORE + 10;
    CHECK(registry_check_config(&desc, &api_table, (const struct spoke_config *)&desc, &key,
                                err, sizeof(err), &more) == SPOKE_ERR_INVALID);
    CHECK(more.n == REGISTRY_CHECK_MORE);
    check_problems_free(&more);
    /* Dropped when the caller does not want them (more NULL). */
    CHECK(registry_check_config(&desc, &api_table, (const struct spoke_config *)&desc, &key,
                                err, sizeof(err), NULL) == SPOKE_ERR_INVALID);
    check_n = 0;
    CHECK(registry_check_config(&desc, &api_table, (const struct spoke_config *)&desc, &key,
                                err, sizeof(err), &more) == SPOKE_OK && more.n == 0);
    /* Outside a check: refused (an error in the log), nothing kept. */
    api_table.check_problem((const struct spoke_config *)&desc, "k", "late");
    CHECK(registry_check_config(&desc, &api_table, (const struct spoke_config *)&desc, &key,
                                err, sizeof(err), &more) == SPOKE_OK && more.n == 0);
}

int main(void)
{
    fixtures = getenv("SPOKE_TEST_PLUGIN_DIR");
    if (!fixtures || !*fixtures) {
        fprintf(stderr, "test_registry: SPOKE_TEST_PLUGIN_DIR is not set; it must name the "
                        "directory of built test fixtures (build/tests/plugins)\n");
        return 1;
    }
    log_set_level(SPOKE_LOG_WARN);
    RUN(test_refusal_fixtures);
    RUN(test_working_fixtures);
    RUN(test_writable_files);
    RUN(test_symlink);
    RUN(test_file_names);
    RUN(test_find_and_names);
    RUN(test_missing_dir);
    RUN(test_rescan_new_file);
    RUN(test_refused_then_replaced);
    RUN(test_removed_refusal_pruned);
    RUN(test_duplicates);
    RUN(test_load_one);
    RUN(test_check_problems);
    return TEST_REPORT();
}
