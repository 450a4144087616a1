/* registry - plugin discovery and loading; see registry.h.
 *
 * Not thread-safe: the caller serializes registry_scan/registry_load/
 * registry_free against each other and against readers. A scan may move the
 * `plugins` array, so callers keep entry->desc, entry->name or entry->path
 * (stable until registry_free) rather than pointers to entries.
 */
#include "registry.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cfgval.h"
#include "conncfg.h"
#include "grow.h"
#include "log.h"

/* Room for a reason that quotes a path and a dlerror() text. */
#define REASON_SIZE 2048
/* Longest file name quoted in a reason (NAME_MAX on Linux). */
#define SHOWN_SIZE 256

/* What identifies one version of a file on disk. A refused file is retried
 * when any of this changes: mtime/size/inode catch a replaced or rewritten
 * file, mode catches a `chmod go-w` that fixes a refusal (ctime alone may not,
 * as its clock ticks coarsely). */
struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    mode_t mode;
    struct timespec mtime;
    struct timespec ctime;
};

struct refusal_meta {
    struct file_id id;
    int has_id;      /* 0: the path could not be stat'ed (or is a directory) */
    int scanned;     /* found by registry_scan, so a later scan may prune it */
    unsigned gen;    /* last scan that saw the path */
};

/* The public struct registry plus bookkeeping the header does not show. The
 * arrays here run parallel to pub.plugins and pub.refused. Every registry
 * comes from registry_new, so a struct registry * is always the first member
 * of one of these. */
struct registry_impl {
    struct registry pub;
    struct file_id *loaded_ids;
    size_t plugins_cap;
    struct refusal_meta *refused_meta;
    size_t refused_cap;
    unsigned gen;
};

static struct registry_impl *impl_of(struct registry *reg)
{
    return (struct registry_impl *)reg;
}

static char *dupf(const char *fmt, ...) SPOKE_PRINTF(1, 2);
static char *dupf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Plugin-supplied strings and file names end up in logs and REST bodies:
 * control bytes become '?' so they cannot forge lines or terminal escapes. */
static void shown(char *out, size_t outsize, const char *s)
{
    size_t i = 0;
    for (; s[i] && i + 1 < outsize; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    out[i] = '\0';
}

static void file_id_of(struct file_id *id, const struct stat *st)
{
    id->dev = st->st_dev;
    id->ino = st->st_ino;
    id->size = st->st_size;
    id->mode = st->st_mode;
    id->mtime = st->st_mtim;
    id->ctime = st->st_ctim;
}

static int same_inode(const struct file_id *a, const struct file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino;
}

static int same_version(const struct file_id *a, const struct file_id *b)
{
    return same_inode(a, b) && a->size == b->size && a->mode == b->mode &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

int registry_valid_name(const char *name)
{
    if (!name)
        return 0;
    size_t n = 0;
    for (; name[n]; n++) {
        char c = name[n];
        if (n >= 64 || !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return n > 0;
}

const char *registry_kind_name(enum spoke_kind kind)
{
    switch (kind) {
    case SPOKE_KIND_SOURCE:    return "source";
    case SPOKE_KIND_TRANSFORM: return "transform";
    case SPOKE_KIND_SINK:      return "sink";
    }
    return "unknown";
}

struct registry *registry_new(void)
{
    struct registry_impl *impl = calloc(1, sizeof(*impl));
    return impl ? &impl->pub : NULL;
}

void registry_free(struct registry *reg)
{
    if (!reg)
        return;
    struct registry_impl *impl = impl_of(reg);
    /* Reverse load order, like destructors. */
    for (size_t i = reg->nplugins; i-- > 0;) {
        dlclose(reg->plugins[i].dl);
        free(reg->plugins[i].name);
        free(reg->plugins[i].path);
    }
    for (size_t i = 0; i < reg->nrefused; i++) {
        free(reg->refused[i].path);
        free(reg->refused[i].reason);
    }
    free(reg->plugins);
    free(reg->refused);
    free(impl->loaded_ids);
    free(impl->refused_meta);
    free(impl);
}

/* ---- refusals ---- */

static long refusal_index(const struct registry_impl *impl, const char *path)
{
    for (size_t i = 0; i < impl->pub.nrefused; i++)
        if (strcmp(impl->pub.refused[i].path, path) == 0)
            return (long)i;
    return -1;
}

static void refusal_remove(struct registry_impl *impl, size_t i)
{
    struct registry *reg = &impl->pub;
    free(reg->refused[i].path);
    free(reg->refused[i].reason);
    /* Keep the order: it is discovery order, which users read. */
    memmove(&reg->refused[i], &reg->refused[i + 1],
            (reg->nrefused - i - 1) * sizeof(reg->refused[0]));
    memmove(&impl->refused_meta[i], &impl->refused_meta[i + 1],
            (reg->nrefused - i - 1) * sizeof(impl->refused_meta[0]));
    reg->nrefused--;
}

static void refusal_forget(struct registry_impl *impl, const char *path)
{
    long i = refusal_index(impl, path);
    if (i >= 0)
        refusal_remove(impl, (size_t)i);
}

/* One line: the reason (which starts with the file's basename) and the full
 * path, unless the reason already starts with it (directories). */
static void log_refusal(enum spoke_log_level level, const char *path, const char *reason,
                        const char *suffix)
{
    if (strncmp(reason, path, strlen(path)) == 0)
        log_write(level, NULL, "plugin refused: %s%s", reason, suffix);
    else
        log_write(level, NULL, "plugin refused: %s (%s)%s", reason, path, suffix);
}

/* Records (or updates) the refusal of path and logs it. id may be NULL. A
 * refusal that repeats the recorded reason word for word is not logged again,
 * so a periodic rescan of a missing directory does not flood the log. */
static void refuse(struct registry_impl *impl, const char *path, const struct file_id *id,
                   int scanned, const char *reason)
{
    struct registry *reg = &impl->pub;
    long i = refusal_index(impl, path);
    char *r = strdup(reason);
    char *p = NULL;

    if (!r)
        goto fail;
    if (i >= 0) {
        int repeat = strcmp(reg->refused[i].reason, reason) == 0;
        free(reg->refused[i].reason);
        reg->refused[i].reason = r;
        if (!repeat)
            log_refusal(SPOKE_LOG_WARN, path, reason, "");
    } else {
        if (reg->nrefused == impl->refused_cap) {
            size_t cap = impl->refused_cap ? impl->refused_cap * 2 : 8;
            struct plugin_refusal *a = realloc(reg->refused, cap * sizeof(*a));
            if (!a)
                goto fail;
            reg->refused = a;
            struct refusal_meta *metas = realloc(impl->refused_meta, cap * sizeof(*metas));
            if (!metas)
                goto fail;
            impl->refused_meta = metas;
            impl->refused_cap = cap;
        }
        if (!(p = strdup(path)))
            goto fail;
        i = (long)reg->nrefused++;
        reg->refused[i].path = p;
        reg->refused[i].reason = r;
        log_refusal(SPOKE_LOG_WARN, path, reason, "");
    }
    struct refusal_meta *m = &impl->refused_meta[i];
    memset(m, 0, sizeof(*m));
    if (id) {
        m->id = *id;
        m->has_id = 1;
    }
    m->scanned = scanned;
    m->gen = impl->gen;
    return;

fail:
    /* The refusal still happens; only its record is lost. */
    free(p);
    free(r);
    log_refusal(SPOKE_LOG_ERROR, path, reason, "; out of memory recording it");
}

/* ---- loading ---- */

static long loaded_by_path(const struct registry_impl *impl, const char *path)
{
    for (size_t i = 0; i < impl->pub.nplugins; i++)
        if (strcmp(impl->pub.plugins[i].path, path) == 0)
            return (long)i;
    return -1;
}

static long loaded_by_name(const struct registry_impl *impl, const char *name)
{
    for (size_t i = 0; i < impl->pub.nplugins; i++)
        if (strcmp(impl->pub.plugins[i].name, name) == 0)
            return (long)i;
    return -1;
}

/* Smallest descriptor a plugin built for ABI `abi` can have. A future ABI
 * that appends fields keeps accepting the older, shorter descriptors. */
static size_t descriptor_size(uint32_t abi)
{
    switch (abi) {
    case 1:
        /* The first ABI 1 descriptor ends at destroy; entries appended
         * since are optional (SPOKE_PLUGIN_HAS). */
        return offsetof(struct spoke_plugin, destroy) + sizeof(void (*)(void *));
    }
    return sizeof(struct spoke_plugin);
}

/* The check running on this thread: what api->check_problem adds to. */
static _Thread_local struct {
    const struct spoke_config *cfg;
    struct check_problems *more;
} checking;

void check_problems_free(struct check_problems *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].key);
        free(p->v[i].msg);
    }
    p->n = 0;
}

void registry_check_problem(const struct spoke_config *cfg, const char *key,
                            const char *message)
{
    if (!checking.cfg || cfg != checking.cfg || !message) {
        LOG_E(NULL, "check_problem: only a plugin's check() calls it, with the config it was "
              "given and a message");
        return;
    }
    struct check_problems *p = checking.more;
    if (p->n == REGISTRY_CHECK_MORE)
        return;
    char *k = key ? strdup(key) : NULL, *m = strdup(message[0] ? message : "(no reason given)");
    if ((key && !k) || !m) {
        free(k);
        free(m);
        return;
    }
    log_one_line(m);
    p->v[p->n].key = k;
    p->v[p->n].msg = m;
    p->n++;
}

int registry_check_config(const struct spoke_plugin *desc, const struct spoke_host_api *api,
                          const struct spoke_config *cfg, const char **key, char *err,
                          size_t errsize, struct check_problems *more)
{
    struct check_problems dropped;
    *key = NULL;
    if (!more)
        more = &dropped;
    more->n = 0;
    if (!SPOKE_PLUGIN_HAS(desc, check) || !desc->check)
        return SPOKE_OK;
    err[0] = '\0';
    checking.cfg = cfg;
    checking.more = more;
    int rc = desc->check(api, cfg, key, err, errsize);
    checking.cfg = NULL;
    checking.more = NULL;
    if (rc == SPOKE_OK || more == &dropped)
        check_problems_free(more);
    if (rc == SPOKE_OK)
        return SPOKE_OK;
    err[errsize - 1] = '\0';
    log_one_line(err);  /* validate prints one error per line; REST quotes it */
    if (!err[0])
        snprintf(err, errsize, "the plugin refused the configuration (error %d, no reason given)",
                 rc);
    return rc < 0 ? rc : SPOKE_ERR_INVALID;
}

int registry_offsets_change(const struct spoke_plugin *desc, const struct spoke_host_api *api,
                            const char *name, const struct spoke_config *cfg,
                            const char *const *partitions, const int64_t *offsets, size_t n,
                            int reset, char *err, size_t errsize)
{
    if (!SPOKE_PLUGIN_HAS(desc, offsets_change) || !desc->offsets_change)
        return SPOKE_OK;
    err[0] = '\0';
    int rc = desc->offsets_change(api, name, cfg, partitions, offsets, n, reset, err, errsize);
    if (rc == SPOKE_OK)
        return SPOKE_OK;
    err[errsize - 1] = '\0';
    log_one_line(err);
    if (!err[0])
        snprintf(err, errsize, "the plugin refused the offsets change (error %d, no reason "
                 "given)", rc);
    return rc < 0 ? rc : SPOKE_ERR_INVALID;
}

/* Only the 16 header bytes are read here: until they check out, nothing
 * says the rest of the descriptor has the layout this host expects. */
static int check_header(const struct spoke_plugin *desc, const char *file,
                        char *err, size_t errsize)
{
    const struct spoke_plugin_header *hdr = &desc->hdr;

    if (hdr->magic != SPOKE_PLUGIN_MAGIC) {
        snprintf(err, errsize, "%s: bad magic 0x%08x, expected 0x%08x (not a Spoke plugin)",
                 file, (unsigned)hdr->magic, (unsigned)SPOKE_PLUGIN_MAGIC);
        return -1;
    }
    if (hdr->abi_version > SPOKE_ABI_VERSION) {
        snprintf(err, errsize, "%s: built for ABI %u, host speaks %u",
                 file, (unsigned)hdr->abi_version, (unsigned)SPOKE_ABI_VERSION);
        return -1;
    }
    if (hdr->abi_version < SPOKE_ABI_MIN_VERSION) {
        snprintf(err, errsize, "%s: built for ABI %u, host speaks %u and accepts ABI %u at the oldest",
                 file, (unsigned)hdr->abi_version, (unsigned)SPOKE_ABI_VERSION,
                 (unsigned)SPOKE_ABI_MIN_VERSION);
        return -1;
    }
    if (hdr->struct_size < descriptor_size(hdr->abi_version)) {
        snprintf(err, errsize, "%s: struct_size %u is smaller than the ABI %u descriptor (%zu bytes)",
                 file, (unsigned)hdr->struct_size, (unsigned)hdr->abi_version,
                 descriptor_size(hdr->abi_version));
        return -1;
    }
    if (hdr->reserved != 0) {
        snprintf(err, errsize, "%s: header field reserved is 0x%08x, must be 0",
                 file, (unsigned)hdr->reserved);
        return -1;
    }
    return 0;
}

static int missing(const char *file, const char *kind, const char *cb, char *err, size_t errsize)
{
    snprintf(err, errsize, "%s: %s plugin lacks required callback %s", file, kind, cb);
    return -1;
}

static int foreign(const char *file, const char *kind, const char *cb, const char *owner,
                   char *err, size_t errsize)
{
    snprintf(err, errsize, "%s: %s plugin sets %s, which only %s plugins use",
             file, kind, cb, owner);
    return -1;
}

/* Everything after the header. name is the file's basename. A callback that
 * belongs to another kind is refused too: the host would never call it, and
 * a plugin that sets it was almost certainly declared with the wrong kind. */
static int check_descriptor(const struct spoke_plugin *desc, const char *name, const char *file,
                            char *err, size_t errsize)
{
    char s[SHOWN_SIZE];

    if (!desc->name) {
        snprintf(err, errsize, "%s: descriptor has no name", file);
        return -1;
    }
    if (strcmp(desc->name, name) != 0) {
        shown(s, 80, desc->name);
        snprintf(err, errsize, "%s: descriptor name '%s' differs from file name '%s'",
                 file, s, name);
        return -1;
    }
    if (desc->kind != SPOKE_KIND_SOURCE && desc->kind != SPOKE_KIND_TRANSFORM &&
        desc->kind != SPOKE_KIND_SINK) {
        snprintf(err, errsize, "%s: invalid kind %d (expected source, transform or sink)",
                 file, (int)desc->kind);
        return -1;
    }
    if (!desc->version) {
        snprintf(err, errsize, "%s: descriptor has no version", file);
        return -1;
    }
    if (!desc->description) {
        snprintf(err, errsize, "%s: descriptor has no description", file);
        return -1;
    }

    const char *kind = registry_kind_name(desc->kind);
    if (!desc->init)
        return missing(file, kind, "init", err, errsize);
    if (!desc->destroy)
        return missing(file, kind, "destroy", err, errsize);
    if (desc->kind == SPOKE_KIND_SOURCE && !desc->poll)
        return missing(file, kind, "poll", err, errsize);
    if (desc->kind == SPOKE_KIND_TRANSFORM && !desc->process)
        return missing(file, kind, "process", err, errsize);
    if (desc->kind == SPOKE_KIND_SINK && !desc->put)
        return missing(file, kind, "put", err, errsize);
    if (desc->kind == SPOKE_KIND_SINK && !desc->flush)
        return missing(file, kind, "flush", err, errsize);
    if (desc->kind != SPOKE_KIND_SOURCE && desc->poll)
        return foreign(file, kind, "poll", "source", err, errsize);
    if (desc->kind != SPOKE_KIND_SOURCE && desc->committed)
        return foreign(file, kind, "committed", "source", err, errsize);
    if (desc->kind != SPOKE_KIND_TRANSFORM && desc->process)
        return foreign(file, kind, "process", "transform", err, errsize);
    if (desc->kind != SPOKE_KIND_SINK && desc->put)
        return foreign(file, kind, "put", "sink", err, errsize);
    if (desc->kind != SPOKE_KIND_SINK && desc->flush)
        return foreign(file, kind, "flush", "sink", err, errsize);
    if (!desc->snapshot != !desc->restore) {
        snprintf(err, errsize, "%s: snapshot and restore must be set together (it sets only %s)",
                 file, desc->snapshot ? "snapshot" : "restore");
        return -1;
    }

    if (desc->config) {
        char cerr[512];
        if (cfgval_check_table(desc->config, conncfg_fields, cerr, sizeof(cerr)) != 0) {
            snprintf(err, errsize, "%s: %s", file, cerr);
            return -1;
        }
    }
    return 0;
}

static int append_plugin(struct registry_impl *impl, const char *name, const char *path,
                         void *dl, const struct spoke_plugin *desc, const struct file_id *id)
{
    struct registry *reg = &impl->pub;
    char *n = NULL, *p = NULL;

    if (reg->nplugins == impl->plugins_cap) {
        size_t cap = impl->plugins_cap ? impl->plugins_cap * 2 : 8;
        struct plugin_entry *a = realloc(reg->plugins, cap * sizeof(*a));
        if (!a)
            goto fail;
        reg->plugins = a;
        struct file_id *ids = realloc(impl->loaded_ids, cap * sizeof(*ids));
        if (!ids)
            goto fail;
        impl->loaded_ids = ids;
        impl->plugins_cap = cap;
    }
    if (!(n = strdup(name)) || !(p = strdup(path)))
        goto fail;
    reg->plugins[reg->nplugins] = (struct plugin_entry){ .name = n, .path = p, .dl = dl, .desc = desc };
    impl->loaded_ids[reg->nplugins] = *id;
    reg->nplugins++;
    return 0;

fail:
    free(p);
    free(n);
    return -1;
}

/*
 * Loads one file. path contains a '/', so dlopen never searches the library
 * path for it. scanned: called by registry_scan, which skips a refused file
 * whose version is unchanged (registry_load always retries).
 * Returns 1 when newly loaded, 0 when skipped (already loaded, or refused
 * and unchanged), -1 when refused, with the reason in err.
 */
static int load_file(struct registry_impl *impl, const char *path, int scanned,
                     char *err, size_t errsize)
{
    const char *slash = strrchr(path, '/');
    const char *fname = slash ? slash + 1 : path;
    char file[SHOWN_SIZE];
    char name[65];
    struct stat st;
    struct file_id id;
    int have_id = 0;
    void *dl = NULL;
    void *sym;
    spoke_plugin_entry_fn entry;
    const struct spoke_plugin *desc;

    shown(file, sizeof(file), fname);

    /* A loaded plugin may have running instances: never touch it again. */
    if (loaded_by_path(impl, path) >= 0)
        return 0;

    if (lstat(path, &st) != 0) {
        snprintf(err, errsize, "%s: %s", file, strerror(errno));
        goto fail;
    }
    file_id_of(&id, &st);
    have_id = 1;

    long ri = refusal_index(impl, path);
    if (scanned && ri >= 0 && impl->refused_meta[ri].has_id &&
        same_version(&impl->refused_meta[ri].id, &id)) {
        impl->refused_meta[ri].scanned = 1;
        impl->refused_meta[ri].gen = impl->gen;
        return 0;
    }

    size_t flen = strlen(fname);
    if (flen < 4 || flen - 3 > 64 || strcmp(fname + flen - 3, ".so") != 0)
        goto bad_name;
    memcpy(name, fname, flen - 3);
    name[flen - 3] = '\0';
    if (!registry_valid_name(name))
        goto bad_name;

    if (S_ISLNK(st.st_mode)) {
        snprintf(err, errsize, "%s: is a symbolic link; plugin files must be regular files", file);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errsize, "%s: not a regular file", file);
        goto fail;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        /* Anyone who can write the file can run code inside the host. */
        const char *who = (st.st_mode & S_IWGRP) && (st.st_mode & S_IWOTH)
                              ? "group- and world-writable"
                              : (st.st_mode & S_IWOTH) ? "world-writable" : "group-writable";
        snprintf(err, errsize, "%s: mode %04o is %s; plugin files must not be writable "
                 "by group or others (chmod go-w)", file, (unsigned)(st.st_mode & 07777), who);
        goto fail;
    }

    long li = loaded_by_name(impl, name);
    if (li >= 0) {
        /* The same file reached through another spelling of its directory
         * (e.g. "plugins" and "./plugins") is not a duplicate. */
        if (same_inode(&impl->loaded_ids[li], &id))
            return 0;
        snprintf(err, errsize, "%s: duplicate plugin '%s': already loaded from %s",
                 file, name, impl->pub.plugins[li].path);
        goto fail;
    }

    /* RTLD_NOW: a missing symbol refuses the plugin now, not mid-stream.
     * RTLD_LOCAL: plugins cannot clash with each other's symbols. */
    dlerror();
    dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        const char *e = dlerror();
        snprintf(err, errsize, "%s: dlopen failed: %s", file, e ? e : "unknown error");
        goto fail;
    }

    /* What was checked must be what got loaded: a file swapped in between
     * lstat and dlopen is refused (and retried by the next scan). */
    struct stat st2;
    if (lstat(path, &st2) != 0 || st2.st_dev != st.st_dev || st2.st_ino != st.st_ino) {
        snprintf(err, errsize, "%s: file was replaced while being loaded", file);
        goto fail;
    }

    dlerror();
    sym = dlsym(dl, SPOKE_PLUGIN_ENTRY_SYMBOL);
    if (!sym) {
        snprintf(err, errsize, "%s: no symbol %s", file, SPOKE_PLUGIN_ENTRY_SYMBOL);
        goto fail;
    }
    /* ISO C has no object-to-function pointer conversion; POSIX guarantees
     * the representations match, so copy the bits. */
    _Static_assert(sizeof(entry) == sizeof(sym), "function and data pointers differ in size");
    memcpy(&entry, &sym, sizeof(entry));

    desc = entry();
    if (!desc) {
        snprintf(err, errsize, "%s: %s() returned NULL", file, SPOKE_PLUGIN_ENTRY_SYMBOL);
        goto fail;
    }
    if ((uintptr_t)desc % _Alignof(struct spoke_plugin) != 0) {
        snprintf(err, errsize, "%s: %s() returned a misaligned descriptor",
                 file, SPOKE_PLUGIN_ENTRY_SYMBOL);
        goto fail;
    }
    if (check_header(desc, file, err, errsize) != 0)
        goto fail;
    if (check_descriptor(desc, name, file, err, errsize) != 0)
        goto fail;

    if (append_plugin(impl, name, path, dl, desc, &id) != 0) {
        snprintf(err, errsize, "%s: out of memory", file);
        goto fail;
    }
    refusal_forget(impl, path);
    {
        char version[40];
        shown(version, sizeof(version), desc->version);
        LOG_I(NULL, "loaded plugin %s %s (%s) from %s", name, version,
              registry_kind_name(desc->kind), path);
    }
    return 1;

bad_name:
    snprintf(err, errsize, "%s: plugin file names must match [a-z0-9_]{1,64}.so", file);
fail:
    if (dl)
        dlclose(dl);
    refuse(impl, path, have_id ? &id : NULL, scanned, err);
    return -1;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* dir + "/" + file without doubling a trailing slash. */
static char *join_path(const char *dir, const char *file)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    return dupf("%.*s%s%s", (int)n, dir, (n > 0 && dir[n - 1] == '/') ? "" : "/", file);
}

static int scan_dir(struct registry_impl *impl, const char *dir)
{
    char reason[REASON_SIZE];
    char **names = NULL;
    size_t nnames = 0, cap = 0;
    int loaded = 0;
    DIR *d = opendir(dir);
    struct dirent *de;

    if (!d) {
        snprintf(reason, sizeof(reason), "%s: cannot open plugin directory: %s",
                 dir, strerror(errno));
        refuse(impl, dir, NULL, 1, reason);
        return 0;
    }
    refusal_forget(impl, dir);

    /* Sorted, so load order (and which of two same-named files wins across
     * directories) does not depend on readdir order. */
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 3 || strcmp(de->d_name + len - 3, ".so") != 0)
            continue;
        if (GROW_ONE(names, cap, nnames, 16) != 0)
            goto nomem;
        if (!(names[nnames] = strdup(de->d_name)))
            goto nomem;
        nnames++;
        errno = 0;
    }
    if (errno != 0) {
        snprintf(reason, sizeof(reason), "%s: cannot read plugin directory: %s",
                 dir, strerror(errno));
        refuse(impl, dir, NULL, 1, reason);
    }
    goto load;

nomem:
    snprintf(reason, sizeof(reason), "%s: out of memory listing plugin directory", dir);
    refuse(impl, dir, NULL, 1, reason);
load:
    closedir(d);
    if (nnames)
        qsort(names, nnames, sizeof(*names), cmp_names);
    for (size_t i = 0; i < nnames; i++) {
        char *path = join_path(dir, names[i]);
        if (!path) {
            LOG_E(NULL, "out of memory scanning %s", dir);
            continue;
        }
        if (load_file(impl, path, 1, reason, sizeof(reason)) == 1)
            loaded++;
        free(path);
    }
    for (size_t i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    return loaded;
}

int registry_scan(struct registry *reg, const char *const *dirs, size_t ndirs)
{
    struct registry_impl *impl = impl_of(reg);
    int loaded = 0;

    impl->gen++;
    for (size_t i = 0; i < ndirs; i++)
        loaded += scan_dir(impl, dirs[i]);

    /* A refusal this scan did not see again is for a file that is gone (or
     * a directory no longer on the path): the list shows current state. */
    for (size_t i = reg->nrefused; i-- > 0;)
        if (impl->refused_meta[i].scanned && impl->refused_meta[i].gen != impl->gen)
            refusal_remove(impl, i);
    return loaded;
}

/* Unlike a scan, an explicit load always retries a refused file. A path
 * already loaded returns 0 without touching it. err may be NULL when
 * errsize is 0. */
int registry_load(struct registry *reg, const char *path, char *err, size_t errsize)
{
    char reason[REASON_SIZE];
    char *dotted = NULL;
    int rc;

    /* Without a '/', dlopen would search LD_LIBRARY_PATH and the system
     * directories instead of opening the file that was checked. */
    if (!strchr(path, '/')) {
        if (!(dotted = dupf("./%s", path))) {
            snprintf(reason, sizeof(reason), "%s: out of memory", path);
            rc = -1;
            goto done;
        }
        path = dotted;
    }
    rc = load_file(impl_of(reg), path, 0, reason, sizeof(reason));

done:
    if (rc < 0 && err && errsize)
        snprintf(err, errsize, "%s", reason);
    free(dotted);
    return rc < 0 ? -1 : 0;
}

const struct plugin_entry *registry_find(const struct registry *reg, const char *name)
{
    if (!registry_valid_name(name))
        return NULL;
    for (size_t i = 0; i < reg->nplugins; i++)
        if (strcmp(reg->plugins[i].name, name) == 0)
            return &reg->plugins[i];
    return NULL;
}
