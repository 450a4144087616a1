/* memwarm - faults in the pages of a buffer before it is needed.
 *
 * A buffer released between uses (to keep a process small while it waits)
 * is faulted in again, a page at a time, by its next use: a 1 MB document
 * costs a poll some 700 page faults, about 1 ms on a VM. memwarm_pages does
 * that work ahead of time, off the path being timed: with
 * MADV_POPULATE_WRITE (Linux 5.14) when it can, else by writing one byte
 * of each page back with the value it holds. The contents are unchanged
 * (a calloc'd buffer stays zeroed).
 *
 * Plugin-side header (velib_source through httpc and sjson); not part of
 * the host ABI.
 */
#ifndef SPOKE_MEMWARM_H
#define SPOKE_MEMWARM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

/* A write fault on the byte's page that leaves the byte as it was. */
static inline void memwarm_byte(uintptr_t p)
{
    volatile char *c = (volatile char *)p;
    *c = *c;
}

static inline void memwarm_pages(void *buf, size_t n)
{
    if (!buf || n == 0)
        return;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)buf, end = a + n;
#ifdef MADV_POPULATE_WRITE
    /* The whole pages inside the buffer; the partial ones at its ends
     * (shared with other allocations) are touched below. */
    uintptr_t lo = (a + page - 1) & ~(uintptr_t)(page - 1), hi = end & ~(uintptr_t)(page - 1);
    if (hi > lo && madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE) == 0) {
        if (a < lo)
            memwarm_byte(a);
        if (end > hi)
            memwarm_byte(end - 1);
        return;
    }
#endif
    for (uintptr_t p = a; p < end; p = (p | (page - 1)) + 1)
        memwarm_byte(p);
    memwarm_byte(end - 1);
}

#endif
