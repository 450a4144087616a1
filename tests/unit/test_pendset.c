/* unit-pendset: the sink's pending-record ring against a plain array model,
 * over random adds, finds and deletes (holes, growth, wrap-around), and
 * records that are not pending (never added, stale pend_seq). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pendset.h"
#include "record.h"
#include "test.h"

#define NKEYS 3000

struct taken {
    struct spoke_record *rec[16];
    size_t n;
};

static void take(void *ctx, struct spoke_record *rec)
{
    struct taken *t = ctx;
    if (t->n < 16)
        t->rec[t->n] = rec;
    t->n++;
}

int main(void)
{
    struct spoke_record *keys[NKEYS];
    for (size_t i = 0; i < NKEYS; i++) {
        keys[i] = malloc(sizeof(struct spoke_record));
        memset(keys[i], 0xab, sizeof(struct spoke_record)); /* garbage pend_seq */
    }
    static int in[NKEYS];
    static uint64_t added_at[NKEYS];
    struct pendset s = { 0 };
    uint64_t order = 0;
    size_t n = 0;
    unsigned seed = 12345;
    int ok = 1, found_ok = 1;
    for (int step = 0; step < 300000; step++) {
        seed = seed * 1103515245u + 12345u;
        size_t k = (seed >> 8) % NKEYS;
        int op = (int)((seed >> 4) & 3);
        if (op <= 1 && !in[k]) {
            if (pendset_add(&s, keys[k]) != 0)
                ok = 0;
            in[k] = 1;
            added_at[k] = order++;
            n++;
        } else if (op == 2 && in[k]) {
            pendset_del(&s, keys[k]);
            in[k] = 0;
            n--;
        } else {
            struct pend_entry *e = pendset_find(&s, keys[k]);
            if ((e != NULL) != in[k] || (e && e->rec != keys[k]))
                found_ok = 0;
            if (e && e->state == PEND_PUT && (seed & 0x100)) {
                e->state = PEND_FAILED;
                e->reason = strdup("why");
            }
        }
        if (s.n != n)
            ok = 0;
    }
    CHECK_MSG(ok, "set and model disagree");
    CHECK_MSG(found_ok, "find disagrees with the model");
    for (size_t i = 0; i < NKEYS; i++)
        if ((pendset_find(&s, keys[i]) != NULL) != in[i])
            found_ok = 0;
    CHECK(found_ok);
    CHECK(pendset_find(&s, NULL) == NULL);
    /* A record never added, with a pend_seq in the live range: not found. */
    struct spoke_record *other = calloc(1, sizeof(*other));
    other->pend_seq = s.head;
    CHECK(pendset_find(&s, other) == NULL);
    pendset_del(&s, other); /* not a member: no-op */
    CHECK(s.n == n);
    /* Drain: all members, in the order they were added. */
    struct spoke_record **out = malloc((n + 1) * sizeof(*out));
    size_t m = pendset_drain(&s, out);
    CHECK(m == n);
    CHECK(s.n == 0);
    int order_ok = 1;
    for (size_t i = 0; i < m; i++) {
        size_t k = 0;
        while (k < NKEYS && keys[k] != out[i])
            k++;
        if (k == NKEYS || !in[k])
            order_ok = 0;
        else if (i) {
            size_t p = 0;
            while (keys[p] != out[i - 1])
                p++;
            if (added_at[k] <= added_at[p])
                order_ok = 0;
        }
    }
    CHECK(order_ok);
    /* After the drain the old sequence numbers are stale. */
    CHECK(m == 0 || pendset_find(&s, out[0]) == NULL);
    CHECK(pendset_add(&s, keys[0]) == 0 && pendset_find(&s, keys[0]) != NULL);
    /* take_unfailed: every record not failed, in put order; failed stay. */
    struct pendset t = { 0 };
    for (size_t i = 0; i < 10; i++)
        pendset_add(&t, keys[i]);
    pendset_find(&t, keys[3])->state = PEND_FAILED;
    pendset_find(&t, keys[7])->state = PEND_DONE;
    pendset_del(&t, keys[5]);
    struct taken tk = { .n = 0 };
    pendset_take_unfailed(&t, take, &tk);
    CHECK(tk.n == 8 && tk.rec[0] == keys[0] && tk.rec[3] == keys[4] && tk.rec[7] == keys[9]);
    CHECK(t.n == 1 && pendset_find(&t, keys[3]) && !pendset_find(&t, keys[0]));
    CHECK(t.head == keys[3]->pend_seq);
    pendset_free(&t);
    pendset_free(&s);
    free(out);
    free(other);
    for (size_t i = 0; i < NKEYS; i++)
        free(keys[i]);
    return TEST_REPORT();
}
