/* problems - the problems one check() of a plugin finds, each at its config
 * key, reported the way the ABI asks (plugin.h, check and check_problem):
 *
 *   struct problems p;
 *   problems_init(&p);
 *   if (!url) problem(&p, "url", "url is required");
 *   ...
 *   return problems_report_api(&p, api, cfg, key, errstr, errstr_size);
 *
 * The first problem goes in errstr and *key. On a host with check_problem
 * each other one goes there with its own key; on an older host they are
 * joined into errstr with "; " as far as room allows, then counted ("; and
 * 3 more problems"). At most PROBLEMS_MAX are kept; past that they are
 * counted, and the count is reported as one more problem without a key.
 *
 * Keys are kept as pointers: give string literals (config key names). */
#ifndef SPOKE_PROBLEMS_H
#define SPOKE_PROBLEMS_H

#include <stddef.h>

#include "spoke/plugin.h"

#define PROBLEMS_MAX 16

struct problems {
    char msg[PROBLEMS_MAX][SPOKE_ERRSTR_SIZE];
    const char *keys[PROBLEMS_MAX];
    size_t n;  /* found (may exceed PROBLEMS_MAX) */
};

void problems_init(struct problems *p);

/* One more problem, about config key `key` (NULL: no one key). */
void problem(struct problems *p, const char *key, const char *fmt, ...) SPOKE_PRINTF(3, 4);

/* The problems found so far. */
static inline size_t problems_count(const struct problems *p) { return p->n; }

/* SPOKE_OK (and *key NULL) when none was found; else SPOKE_ERR_INVALID with
 * the first in err and *key, and the others given to each(ctx, key, msg)
 * when each is not NULL, else joined into err. */
int problems_report(const struct problems *p, const char **key, char *err, size_t errsz,
                    void (*each)(void *ctx, const char *key, const char *msg), void *ctx);

/* problems_report through the host's check_problem when it has one; api
 * NULL: joined into err (init, where check_problem is not to be called). */
int problems_report_api(const struct problems *p, const struct spoke_host_api *api,
                        const struct spoke_config *cfg, const char **key, char *err,
                        size_t errsz);

/* The end of a plugin's rules, from check() (from_check) or from init:
 * rc, what the rules returned, SPOKE_OK or SPOKE_ERR_NOMEM ("out of
 * memory" in err); then the problems, through check_problem from check(),
 * joined into err from init (check_problem is for check() alone). */
int problems_finish(int rc, const struct problems *p, const struct spoke_host_api *api,
                    const struct spoke_config *cfg, int from_check, const char **key, char *err,
                    size_t errsz);

#endif
