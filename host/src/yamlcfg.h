/* yamlcfg - connectors.yaml (libyaml) into plain data with positions.
 *
 * File shape:
 *   worker:            map of key -> scalar | sequence of scalars
 *   topics:            (optional) map of topic name -> map of key -> scalar
 *   connectors:        sequence of maps; each has `name` and flat key -> value
 * Every scalar may contain ${env:NAME} references, resolved at load (an unset
 * variable is an error; ${env:NAME:-fallback} gives a fallback). Aliases and
 * anchors are refused, as are duplicate keys, duplicate connector names,
 * nested maps where a value is expected and unknown top-level sections.
 * Every error reads "<file>:<line>:<col>: <what>" and names the key.
 */
#ifndef SPOKE_YAMLCFG_H
#define SPOKE_YAMLCFG_H

#include <stddef.h>

struct cfg_pos {
    int line;   /* 1-based */
    int col;    /* 1-based */
};

/* One key and its value: a scalar (value != NULL, items == NULL) or a
 * sequence of scalars (is_list = 1, items[nitems], value = the items joined
 * with ","). Strings are owned by the cfg_file. */
struct cfg_kv {
    char *key;
    char *value;
    char **items;
    size_t nitems;
    int is_list;
    struct cfg_pos key_pos;
    struct cfg_pos value_pos;
};

struct cfg_section {
    char *name;            /* connector or topic name; NULL for worker */
    struct cfg_pos pos;    /* where the section (or its name) starts */
    struct cfg_kv *kv;     /* for connectors: every key but `name` */
    size_t nkv;
};

struct cfg_file {
    char *path;            /* as given, used in messages */
    struct cfg_section worker;
    struct cfg_section *topics;
    size_t ntopics;
    struct cfg_section *connectors;
    size_t nconnectors;
};

/* Loads and parses a file. 0, or -1 with a positioned message in err. */
int yamlcfg_load(const char *path, struct cfg_file **out, char *err, size_t errsize);
/* Same for a buffer; name is used in messages. */
int yamlcfg_parse(const char *data, size_t len, const char *name, struct cfg_file **out,
                  char *err, size_t errsize);
void yamlcfg_free(struct cfg_file *f);

/* Lookup helpers; NULL when absent. */
const struct cfg_kv *cfg_section_get(const struct cfg_section *s, const char *key);
const struct cfg_section *cfg_file_connector(const struct cfg_file *f, const char *name);

#endif
