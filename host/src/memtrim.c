/* memtrim - see memtrim.h. */
#include "memtrim.h"

#include <stdbool.h>
#include <stddef.h>

/* jemalloc's control interface, resolved only when jemalloc is linked. */
extern int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen)
    __attribute__((weak));

/* The calling thread's cache: on, dropped while idle, or off for good. */
static _Thread_local enum { CACHE_ON, CACHE_IDLE, CACHE_OFF } state;

static void set_cache(bool on)
{
    /* Disabling flushes the cache and frees it; enabling makes a new one. */
    if (mallctl)
        (void)mallctl("thread.tcache.enabled", NULL, NULL, &on, sizeof(on));
}

void memtrim_thread_idle(void)
{
    if (state != CACHE_ON)
        return;
    set_cache(false);
    state = CACHE_IDLE;
}

void memtrim_thread_busy(void)
{
    if (state != CACHE_IDLE)
        return;
    set_cache(true);
    state = CACHE_ON;
}

void memtrim_thread_uncached(void)
{
    if (state == CACHE_OFF)
        return;
    set_cache(false);
    state = CACHE_OFF;
}
