/* memtrim - give memory back when a thread goes idle.
 *
 * jemalloc (which the spoke executable links, see main.c) gives every thread
 * a cache of freed blocks (tcache) and trims it only while that thread
 * allocates: a task thread waiting for input keeps both the blocks its last
 * batch freed, pinning partly used pages, and the cache's own slot arrays
 * (tens of KB per thread once used). So a thread about to wait long drops
 * its cache (memtrim_thread_idle) and takes a fresh one when work resumes
 * (memtrim_thread_busy); threads that allocate little run without one
 * (memtrim_thread_uncached). jemalloc's background thread then returns the
 * pages that became free (dirty_decay_ms). All are no-ops without jemalloc
 * (sanitizer builds, unit tests).
 */
#ifndef SPOKE_MEMTRIM_H
#define SPOKE_MEMTRIM_H

/* Input-less time after which a task thread counts as idle. */
#define MEMTRIM_IDLE_MS 1000

/* Drops the calling thread's allocator cache until memtrim_thread_busy.
 * Call it once per idle period, not per wait. */
void memtrim_thread_idle(void);

/* Gives the calling thread its cache back after memtrim_thread_idle; a
 * thread-local flag test otherwise. */
void memtrim_thread_busy(void);

/* The calling thread runs without a cache from now on (threads that
 * allocate rarely: signals, housekeeping, REST). Cheap when repeated. */
void memtrim_thread_uncached(void);

#endif
