/* cfgval - validating key/value configs against spoke_config_field tables.
 *
 * Used for connectors.yaml and (later) REST bodies. A connector's keys are
 * checked against two tables at once: the host's connector keys (conncfg.h)
 * and the plugin's own. A key in neither is unknown and refused.
 */
#ifndef SPOKE_CFGVAL_H
#define SPOKE_CFGVAL_H

#include <stddef.h>
#include <stdint.h>

#include "spoke/plugin.h"
#include "yamlcfg.h"

/* One validation problem. kv_index: index into the input kvs, or -1 when the
 * problem has no input key (a required key is missing). */
struct cfgval_error {
    char key[128];
    char msg[256];
    long kv_index;
};

struct cfgval_errors {
    struct cfgval_error *e;
    size_t n;
};
void cfgval_errors_free(struct cfgval_errors *errs);

/*
 * Validates kvs against table (may be NULL: accepts no keys) and, when
 * table2 is not NULL, against table2 too: each key goes to the table that
 * declares it. Produces one config per table (cfg2 only if table2), with
 * defaults applied and every value parsed. Collects every error, not only the
 * first. Returns 0 when there are none; otherwise -1, *cfg and *cfg2 NULL, and
 * errs filled (the caller frees it).
 */
int cfgval_validate(const struct spoke_config_field *table,
                    const struct spoke_config_field *table2,
                    const struct cfg_kv *kvs, size_t nkv,
                    struct spoke_config **cfg, struct spoke_config **cfg2,
                    struct cfgval_errors *errs);

/* Checks one table for sanity (names, types, defaults valid under their own
 * type/bounds/allowed values, no duplicates, no name in `reserved`).
 * 0, or -1 with the reason. */
int cfgval_check_table(const struct spoke_config_field *table,
                       const struct spoke_config_field *reserved,
                       char *err, size_t errsize);

void cfgval_free(struct spoke_config *cfg);

/* Host-only flag for a SPOKE_CFG_PREFIX field of the host's own tables (the
 * worker section): no property is refused there (the file is trusted). */
#define CFGVAL_TRUSTED 0x100u

/* Pass-through properties (SPOKE_CFG_PREFIX fields), see plugin.h. */
size_t cfgval_prefixed(const struct spoke_config *cfg, const char *prefix, size_t i,
                       const char **name, const char **value);
/* True when key must be masked on output under table (a secret field, or a
 * secret-looking property of a prefix field). */
int cfgval_key_secret(const struct spoke_config_field *table, const char *key);

/* Accessors behind the ABI (see plugin.h). */
const char *cfgval_string(const struct spoke_config *cfg, const char *key);
int64_t cfgval_int(const struct spoke_config *cfg, const char *key);
double cfgval_double(const struct spoke_config *cfg, const char *key);
int cfgval_bool(const struct spoke_config *cfg, const char *key);
size_t cfgval_list(const struct spoke_config *cfg, const char *key, const char *const **items);
/* True if the key was given explicitly (not defaulted). */
int cfgval_is_set(const struct spoke_config *cfg, const char *key);

/* Iteration for display: n keys with a value; the i-th key and its text with
 * secrets replaced by "[hidden]". */
size_t cfgval_count(const struct spoke_config *cfg);
int cfgval_at(const struct spoke_config *cfg, size_t i, const char **key,
              const char **masked_value);

/* Parses a boolean the way configs do ("true"/"false", case-insensitive).
 * 0/1, or -1 when it is neither. */
int cfgval_parse_bool(const char *s);

#endif
