/* grow.h - room for one more element at the end of an array that grows by
 * doubling. The host's lists (marks, positions, mappings, names, kids...)
 * all grow this way; one place says how. */
#ifndef SPOKE_GROW_H
#define SPOKE_GROW_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* *pp points to an array of *cap elements of elem bytes, n of them used.
 * When n == *cap the array is reallocated with twice the room (first
 * elements the first time). 0, or -1 on out-of-memory or overflow, the
 * array then unchanged. pp is the address of the caller's typed pointer
 * (read and written with memcpy, so any object pointer type will do). */
static inline int grow_one(void *pp, size_t *cap, size_t n, size_t elem, size_t first)
{
    if (n < *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : first;
    if (nc <= n || nc > SIZE_MAX / elem)
        return -1;
    void *old, *v;
    memcpy(&old, pp, sizeof(old));
    if (!(v = realloc(old, nc * elem)))
        return -1;
    memcpy(pp, &v, sizeof(v));
    *cap = nc;
    return 0;
}

/* grow_one on a typed array: GROW_ONE(s->v, s->cap, s->n, 8). */
#define GROW_ONE(arr, cap, n, first) grow_one(&(arr), &(cap), (n), sizeof(*(arr)), (first))

#endif
