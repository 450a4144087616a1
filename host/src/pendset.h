/* pendset - the records a sink holds: put() and not settled yet.
 *
 * A ring in put order. Each pending record carries its sequence number
 * (rec->pend_seq), so finding the entry of a record a plugin names is one
 * range check and one comparison, touching memory that settling the record
 * touches anyway; a record whose slot does not hold it is not pending, so a
 * stale or uninitialized pend_seq is harmless. Settled entries leave holes
 * the head skips. Not thread-safe: only the instance's task thread uses it. */
#ifndef SPOKE_PENDSET_H
#define SPOKE_PENDSET_H

#include <stddef.h>
#include <stdint.h>

struct spoke_record;

enum pend_state { PEND_PUT = 0, PEND_DONE, PEND_FAILED };

struct pend_entry {
    struct spoke_record *rec;   /* NULL = settled (a hole) */
    int state;                  /* enum pend_state */
    int status;                 /* PEND_FAILED: the plugin's status */
    char *reason;               /* PEND_FAILED: owned */
};

struct pendset {
    struct pend_entry *ring;
    size_t cap;                 /* 0 or a power of two */
    uint64_t head, tail;        /* sequence numbers: entries [head, tail) */
    size_t n;                   /* records in the ring (not holes) */
};

/* Adds rec in state PEND_PUT. Returns 0, or -1 out of memory. rec must not
 * be in the set. */
int pendset_add(struct pendset *s, struct spoke_record *rec);
/* The entry of rec, or NULL when rec is not in the set. Valid until the
 * next add. rec must point to a live record. */
struct pend_entry *pendset_find(const struct pendset *s, const struct spoke_record *rec);
/* Removes rec (frees its reason); no-op when absent. */
void pendset_del(struct pendset *s, struct spoke_record *rec);
/* Removes every record not in state PEND_FAILED, in put order, calling
 * fn(ctx, rec) for each; failed ones stay. */
void pendset_take_unfailed(struct pendset *s, void (*fn)(void *ctx, struct spoke_record *rec),
                           void *ctx);
/* Moves every record, in put order, into out[0, n) (capacity s->n),
 * frees their reasons and empties the set. */
size_t pendset_drain(struct pendset *s, struct spoke_record **out);
void pendset_free(struct pendset *s);

#endif
