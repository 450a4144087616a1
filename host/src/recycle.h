/*
 * recycle - the memory of records and rows, handed back to the threads
 * that allocate it.
 *
 * A record is allocated on its source's thread and freed on another task's
 * thread (its last consumer's); so is the row a transform builds for it.
 * With jemalloc, such a free goes into the freeing thread's cache, which
 * flushes it back to its slab, and the allocating thread's cache refills
 * from there: about 260 instructions per record on the Vélib' pipeline
 * (bench/README.md, "Recycled record memory").
 *
 * recycle keeps blocks of four size classes (256, 512, 1024 and 2048
 * bytes) on per-thread magazines of RECYCLE_MAG blocks. A thread frees into
 * its own magazine; a full one goes to a shared depot; an allocating
 * thread whose magazines are empty takes a whole magazine from the depot.
 * So a block crosses threads with one lock per RECYCLE_MAG blocks.
 *
 * Bounds: the depot keeps at most RECYCLE_DEPOT_BYTES of blocks per
 * class (64 magazines of 256 bytes, 8 of 2048; more are freed), and each
 * thread two magazines per class. A thread's magazines go to
 * the depot when it goes idle (recycle_thread_flush) and when it exits;
 * recycle_trim frees the depot (the host's idle trim).
 *
 * Freed blocks are poisoned for AddressSanitizer (all but their first
 * word, the magazine's link), and so is the rest of a class's block past
 * the size asked for: a use after free or an overflow is still reported in
 * sanitizer builds.
 */
#ifndef SPOKE_RECYCLE_H
#define SPOKE_RECYCLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RECYCLE_MAG 64
#define RECYCLE_DEPOT_BYTES (1024 * 1024)
/* Magazines the depot keeps for blocks of size bytes (a class's size). */
#define RECYCLE_DEPOT_MAGS(size) (RECYCLE_DEPOT_BYTES / RECYCLE_MAG / (size))

/* size bytes (or more); *cls is what recycle_free needs back: 0 when the
 * block is a plain malloc (size over 2048, or a thread without magazines).
 * NULL on out-of-memory. */
void *recycle_alloc(size_t size, uint8_t *cls);
/* Frees p, allocated by recycle_alloc with class cls. */
void recycle_free(void *p, uint8_t cls);

/* Whether threads that start using recycle from now on keep magazines
 * (off by default: then recycle_alloc is malloc). The host turns it on
 * when it runs on one CPU: on two, the blocks crossed cores and the
 * Vélib' bench ran 28% slower than with the allocator's own caches
 * (bench/README.md). A thread decides once, at its first recycled free
 * or allocation past its magazines. */
void recycle_enable(bool on);

/* The calling thread's magazines go to the depot (the thread is idle). */
void recycle_thread_flush(void);
/* The calling thread keeps no magazines from now on (threads that free
 * rarely: REST, housekeeping). */
void recycle_thread_off(void);

/* Frees every block in the depot; returns how many bytes. */
size_t recycle_trim(void);

/* Blocks of the classes allocated from malloc, blocks taken from the
 * depot, blocks freed because the depot was full, blocks allocated and not
 * freed (in use, on a thread's magazine or in the depot), and blocks in
 * the depot now (tests, metrics). */
struct recycle_stats {
    uint64_t fresh, from_depot, overflow, held;
    size_t depot_blocks;
};
void recycle_stats(struct recycle_stats *st);

#endif
