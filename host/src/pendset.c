/* pendset - see pendset.h. */
#include "pendset.h"

#include <stdlib.h>
#include <string.h>

#include "record.h"

static int grow(struct pendset *s)
{
    size_t cap = s->cap ? s->cap * 2 : 256;
    struct pend_entry *ring = calloc(cap, sizeof(*ring));
    if (!ring)
        return -1;
    for (uint64_t q = s->head; q < s->tail; q++)
        ring[q & (cap - 1)] = s->ring[q & (s->cap - 1)];
    free(s->ring);
    s->ring = ring;
    s->cap = cap;
    return 0;
}

int pendset_add(struct pendset *s, struct spoke_record *rec)
{
    if (s->tail - s->head == s->cap && grow(s) != 0)
        return -1;
    s->ring[s->tail & (s->cap - 1)] = (struct pend_entry){ .rec = rec, .state = PEND_PUT };
    rec->pend_seq = s->tail++;
    s->n++;
    return 0;
}

struct pend_entry *pendset_find(const struct pendset *s, const struct spoke_record *rec)
{
    if (!rec || !s->cap)
        return NULL;
    uint64_t q = rec->pend_seq;
    if (q < s->head || q >= s->tail)
        return NULL;
    struct pend_entry *e = &s->ring[q & (s->cap - 1)];
    return e->rec == rec ? e : NULL;
}

void pendset_del(struct pendset *s, struct spoke_record *rec)
{
    struct pend_entry *e = pendset_find(s, rec);
    if (!e)
        return;
    free(e->reason);
    memset(e, 0, sizeof(*e));
    s->n--;
    while (s->head < s->tail && !s->ring[s->head & (s->cap - 1)].rec)
        s->head++;
    if (s->n == 0)
        s->head = s->tail;
}

void pendset_take_unfailed(struct pendset *s, void (*fn)(void *ctx, struct spoke_record *rec),
                           void *ctx)
{
    for (uint64_t q = s->head; q < s->tail; q++) {
        struct pend_entry *e = &s->ring[q & (s->cap - 1)];
        if (!e->rec || e->state == PEND_FAILED)
            continue;
        struct spoke_record *rec = e->rec;
        memset(e, 0, sizeof(*e));
        s->n--;
        fn(ctx, rec);
    }
    while (s->head < s->tail && !s->ring[s->head & (s->cap - 1)].rec)
        s->head++;
    if (s->n == 0)
        s->head = s->tail;
}

size_t pendset_drain(struct pendset *s, struct spoke_record **out)
{
    size_t n = 0;
    for (uint64_t q = s->head; q < s->tail; q++) {
        struct pend_entry *e = &s->ring[q & (s->cap - 1)];
        if (!e->rec)
            continue;
        out[n++] = e->rec;
        free(e->reason);
        memset(e, 0, sizeof(*e));
    }
    s->head = s->tail;
    s->n = 0;
    return n;
}

void pendset_free(struct pendset *s)
{
    for (uint64_t q = s->head; q < s->tail; q++)
        free(s->ring[q & (s->cap - 1)].reason);
    free(s->ring);
    memset(s, 0, sizeof(*s));
}
