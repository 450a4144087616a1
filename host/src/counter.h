/* counter - counters with one writer thread and any number of readers.
 *
 * A counter only its owner thread changes needs no read-modify-write:
 * a relaxed load and store cannot lose an update, and readers on other
 * threads see whole values (atomic types), never a torn one. A locked add
 * costs 20-70 ns on the development VM, several of them per record on the
 * hot paths. Counters several threads change keep atomic_fetch_add. */
#ifndef SPOKE_COUNTER_H
#define SPOKE_COUNTER_H

#include <stdatomic.h>

#define COUNTER_ADD(c, v)                                                          \
    atomic_store_explicit((c), atomic_load_explicit((c), memory_order_relaxed) + (v), \
                          memory_order_relaxed)

#endif
