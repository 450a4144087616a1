/* problems - see problems.h. */
#include "problems.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void problems_init(struct problems *p)
{
    p->n = 0;
}

void problem(struct problems *p, const char *key, const char *fmt, ...)
{
    if (p->n < PROBLEMS_MAX) {
        p->keys[p->n] = key;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->msg[p->n], sizeof(p->msg[p->n]), fmt, ap);
        va_end(ap);
    }
    p->n++;
}

/* "and 3 more problems" for the n left out. */
static void left_out(char *buf, size_t size, const char *sep, size_t n)
{
    snprintf(buf, size, "%sand %zu more problem%s", sep, n, n == 1 ? "" : "s");
}

int problems_report(const struct problems *p, const char **key, char *err, size_t errsz,
                    void (*each)(void *ctx, const char *key, const char *msg), void *ctx)
{
    /* The room a joined message keeps for the count of those left out. */
    static const char more[] = "; and 18446744073709551615 more problems";
    size_t kept = p->n < PROBLEMS_MAX ? p->n : PROBLEMS_MAX;
    size_t len = 0, shown = 0;

    *key = p->n ? p->keys[0] : NULL;
    if (!p->n)
        return SPOKE_OK;
    err[0] = '\0';
    if (each) {
        snprintf(err, errsz, "%s", p->msg[0]);
        for (size_t i = 1; i < kept; i++)
            each(ctx, p->keys[i], p->msg[i]);
        if (p->n > kept) {
            char left[64];
            left_out(left, sizeof(left), "", p->n - kept);
            each(ctx, NULL, left);
        }
        return SPOKE_ERR_INVALID;
    }
    for (size_t i = 0; i < kept; i++) {
        /* A problem that is not the last must leave room for the count. */
        size_t need = (i ? 2 : 0) + strlen(p->msg[i]) + (i + 1 < p->n ? sizeof(more) : 1);
        if (i && len + need > errsz)
            break;
        int w = snprintf(err + len, errsz - len, "%s%s", i ? "; " : "", p->msg[i]);
        len += w > 0 ? (size_t)w : 0;
        if (len >= errsz)
            return SPOKE_ERR_INVALID;  /* the first one alone fills err */
        shown++;
    }
    if (shown < p->n)
        left_out(err + len, errsz - len, "; ", p->n - shown);
    return SPOKE_ERR_INVALID;
}

struct api_ctx {
    const struct spoke_host_api *api;
    const struct spoke_config *cfg;
};

static void to_host(void *ctx, const char *key, const char *msg)
{
    const struct api_ctx *c = ctx;
    c->api->check_problem(c->cfg, key, msg);
}

int problems_report_api(const struct problems *p, const struct spoke_host_api *api,
                        const struct spoke_config *cfg, const char **key, char *err,
                        size_t errsz)
{
    struct api_ctx c = { api, cfg };
    int each = api && SPOKE_API_HAS(api, check_problem) && api->check_problem;
    return problems_report(p, key, err, errsz, each ? to_host : NULL, &c);
}

int problems_finish(int rc, const struct problems *p, const struct spoke_host_api *api,
                    const struct spoke_config *cfg, int from_check, const char **key, char *err,
                    size_t errsz)
{
    if (rc == SPOKE_ERR_NOMEM) {
        *key = NULL;
        snprintf(err, errsz, "out of memory");
        return rc;
    }
    return problems_report_api(p, from_check ? api : NULL, cfg, key, err, errsz);
}
