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
 *
 * When no task thread has been busy for idle.unmap.after.ms (default
 * MEMTRIM_FILES_IDLE_MS), the whole process is idle, yet the pages of the
 * executable, the libraries and the plugins it touched while starting or
 * working (relocation tables, init code, the last poll's code) stay
 * mapped: about 10 MB. The housekeeping thread then unmaps the resident
 * pages of the loaded objects' read-only segments (memtrim_file_pages):
 * they stay in the page cache, and whatever runs next faults back what it
 * needs (minor faults: a few ms for the next Vélib' poll, hence the wait,
 * long enough for a trim to pay for itself). Pages holding a private copy,
 * writable, locked or outside loaded objects are left alone, so no content
 * changes.
 */
#ifndef SPOKE_MEMTRIM_H
#define SPOKE_MEMTRIM_H

#include <stdbool.h>

/* Input-less time after which a task thread counts as idle. */
#define MEMTRIM_IDLE_MS 1000
/* Time without any busy task after which file pages are unmapped, by
 * default. */
#define MEMTRIM_FILES_IDLE_MS 5000

/* Drops the calling thread's allocator cache until memtrim_thread_busy.
 * Call it once per idle period, not per wait. */
void memtrim_thread_idle(void);

/* Gives the calling thread its cache back after memtrim_thread_idle; a
 * thread-local flag test otherwise. */
void memtrim_thread_busy(void);

/* The calling thread runs without a cache from now on (threads that
 * allocate rarely: signals, housekeeping, REST). Cheap when repeated. */
void memtrim_thread_uncached(void);

/* A task thread starts (counted busy) or ends: around the task loops, so
 * that the last one going idle knows the process is idle. */
void memtrim_task_begin(void);
void memtrim_task_end(void);

/* Unmaps the resident pages of the loaded objects' read-only segments that
 * hold no private copy (see above); returns the kB unmapped, -1 when
 * /proc/self/smaps is unreadable. Called by memtrim_process_check; exposed
 * for tests. */
long memtrim_file_pages(void);

/* How long no task must be busy before file pages are unmapped (worker
 * idle.unmap.after.ms, default MEMTRIM_FILES_IDLE_MS); 0 = never. */
void memtrim_unmap_after(long long ms);

/* The housekeeping thread's periodic look (at each status write): trims
 * once when no task has been busy for idle.unmap.after.ms (or since the
 * start), until a task is busy again. */
void memtrim_process_check(void);

/* Idle trims so far and the kB of file pages they unmapped (/metrics). */
void memtrim_stats(long long *trims, long long *kb);

#endif
