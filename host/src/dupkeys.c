#include "dupkeys.h"

#include <stdlib.h>
#include <string.h>

struct dup_ent {
    const char *s;
    size_t idx;
};

/* Ties keep input order, so within a group the earliest index comes first. */
static int dup_cmp(const void *a, const void *b)
{
    const struct dup_ent *x = a, *y = b;
    int c = strcmp(x->s, y->s);
    if (c)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

int dupkeys_mark(const char *const *strs, size_t n, unsigned char *dup)
{
    if (n < 2)
        return 0;
    struct dup_ent *e = malloc(n * sizeof(*e));
    if (!e)
        return -1;
    for (size_t i = 0; i < n; i++) {
        e[i].s = strs[i];
        e[i].idx = i;
    }
    qsort(e, n, sizeof(*e), dup_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(e[i].s, e[i - 1].s) == 0)
            dup[e[i].idx] = 1;
    free(e);
    return 0;
}

int dupkeys_first(const char *const *strs, size_t n, size_t *first, size_t *second)
{
    if (n < 2)
        return 0;
    unsigned char *dup = calloc(n, 1);
    if (!dup || dupkeys_mark(strs, n, dup) < 0) {
        free(dup);
        return -1;
    }
    int found = 0;
    for (size_t i = 0; i < n && !found; i++) {
        if (!dup[i])
            continue;
        for (size_t j = 0; j < i; j++)
            if (strcmp(strs[j], strs[i]) == 0) {
                *first = j;
                *second = i;
                found = 1;
                break;
            }
    }
    free(dup);
    return found;
}
