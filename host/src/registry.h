/* registry - plugin discovery and loading.
 *
 * Scans plugin.path directories for files named <name>.so with <name>
 * matching ^[a-z0-9_]{1,64}$, that are regular files (not symlinks) and not
 * group- or world-writable; loads each with dlopen(RTLD_NOW|RTLD_LOCAL);
 * finds spoke_plugin_entry; checks the descriptor header (magic, ABI version,
 * struct size, reserved) before using anything else of it; then checks the
 * descriptor (name == file name, kind, required callbacks, config table via
 * cfgval_check_table with conncfg_fields as reserved names). A refused file
 * is dlclosed, recorded with its reason, logged, and skipped: it never stops
 * the host. A rescan finds new files without touching loaded plugins.
 */
#ifndef SPOKE_REGISTRY_H
#define SPOKE_REGISTRY_H

#include <stddef.h>

#include "spoke/plugin.h"

struct plugin_entry {
    char *name;
    char *path;
    void *dl;                          /* dlopen handle */
    const struct spoke_plugin *desc;
};

struct plugin_refusal {
    char *path;
    char *reason;   /* e.g. "abi_future.so: built for ABI 2, host speaks 1" */
};

struct registry {
    struct plugin_entry *plugins;
    size_t nplugins;
    struct plugin_refusal *refused;
    size_t nrefused;
};

struct registry *registry_new(void);
/* Dlcloses everything. NULL ok. */
void registry_free(struct registry *reg);

/* Scans directories (missing ones are refused entries, not fatal). Files
 * already loaded or already refused with unchanged mtime are skipped; a
 * second file with a loaded plugin's name is refused. Returns the number of
 * plugins newly loaded. */
int registry_scan(struct registry *reg, const char *const *dirs, size_t ndirs);

/* Loads one file. 0, or -1 with the reason (also recorded as refused). */
int registry_load(struct registry *reg, const char *path, char *err, size_t errsize);

/* A loaded plugin by name; NULL when the name is invalid or not loaded. */
const struct plugin_entry *registry_find(const struct registry *reg, const char *name);

/* 1 when name matches ^[a-z0-9_]{1,64}$. */
int registry_valid_name(const char *name);
/* The problems a check reported beyond the first (api->check_problem). */
#define REGISTRY_CHECK_MORE 32
struct check_problems {
    size_t n;
    struct {
        char *key;  /* NULL: no one key */
        char *msg;  /* one line */
    } v[REGISTRY_CHECK_MORE];
};
void check_problems_free(struct check_problems *p);

/* The plugin's check of a validated config (struct spoke_plugin.check), when
 * it has one: SPOKE_OK, or an error with err set (never empty) and *key the
 * key it is about or NULL. more (may be NULL: dropped) gets the problems it
 * reported besides (empty on SPOKE_OK); free with check_problems_free. */
int registry_check_config(const struct spoke_plugin *desc, const struct spoke_host_api *api,
                          const struct spoke_config *cfg, const char **key, char *err,
                          size_t errsize, struct check_problems *more);

/* api->check_problem: adds to the problems of the check running on this
 * thread for cfg. */
void registry_check_problem(const struct spoke_config *cfg, const char *key,
                            const char *message);

/* The plugin's offsets_change for a REST change of a stopped connector's
 * offsets (see plugin.h): SPOKE_OK when it has none or it agrees, else its
 * error with a one-line reason in err. */
int registry_offsets_change(const struct spoke_plugin *desc, const struct spoke_host_api *api,
                            const char *name, const struct spoke_config *cfg,
                            const char *const *partitions, const int64_t *offsets, size_t n,
                            int reset, char *err, size_t errsize);

const char *registry_kind_name(enum spoke_kind kind);

#endif
