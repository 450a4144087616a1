/* memtrim - see memtrim.h. */
#include "memtrim.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include "clock.h"
#include "grow.h"
#include "log.h"
#include "recycle.h"

/* jemalloc's control interface, resolved only when jemalloc is linked. */
extern int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen)
    __attribute__((weak));

/* The calling thread's cache: on, dropped while idle, or off for good. */
static _Thread_local enum { CACHE_ON, CACHE_IDLE, CACHE_OFF } state;
/* The calling thread is a task counted in nbusy while not idle. */
static _Thread_local bool task;

/* Task threads not idle; whether a task ran since the last trim (the
 * start counts); since when no task is busy (0: not known yet); the idle
 * trims and what they unmapped. */
static atomic_int nbusy;
static atomic_bool dirty = true;
static atomic_llong idle_since_ms, ntrims, trimmed_kb;
static atomic_llong unmap_after_ms = MEMTRIM_FILES_IDLE_MS;

void memtrim_unmap_after(long long ms)
{
    atomic_store(&unmap_after_ms, ms);
}

static void trim(void)
{
    atomic_store(&dirty, false);
    int64_t t0 = clock_mono_ns();
    size_t recycled = recycle_trim();
    if (recycled)
        LOG_D("spoke", "idle: freed %zu kB of recycled record memory", recycled / 1024);
    long kb = memtrim_file_pages();
    if (kb >= 0) {
        atomic_fetch_add(&ntrims, 1);
        atomic_fetch_add(&trimmed_kb, kb);
        LOG_D("spoke", "idle: unmapped %ld kB of read-only file pages in %.2f ms", kb,
              (double)(clock_mono_ns() - t0) / 1e6);
    }
}

static void busy(void)
{
    atomic_fetch_add(&nbusy, 1);
    atomic_store(&dirty, true);
}

static void not_busy(void)
{
    if (atomic_fetch_sub(&nbusy, 1) == 1)
        atomic_store(&idle_since_ms, clock_mono_ms());
}

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
    recycle_thread_flush();
    set_cache(false);
    state = CACHE_IDLE;
    if (task)
        not_busy();
}

void memtrim_thread_busy(void)
{
    if (state != CACHE_IDLE)
        return;
    set_cache(true);
    state = CACHE_ON;
    if (task)
        busy();
}

void memtrim_thread_uncached(void)
{
    if (state == CACHE_OFF)
        return;
    recycle_thread_off();
    set_cache(false);
    state = CACHE_OFF;
}

void memtrim_task_begin(void)
{
    task = true;
    busy();
}

void memtrim_task_end(void)
{
    if (task && state != CACHE_IDLE)
        not_busy();
    task = false;
}

void memtrim_process_check(void)
{
    if (atomic_load(&idle_since_ms) == 0) {
        atomic_store(&idle_since_ms, clock_mono_ms()); /* the first check: the start */
        return;
    }
    long long after = atomic_load(&unmap_after_ms);
    if (after > 0 && atomic_load(&nbusy) == 0 && atomic_load(&dirty) &&
        clock_mono_ms() - atomic_load(&idle_since_ms) >= after)
        trim();
}

void memtrim_stats(long long *trims, long long *kb)
{
    *trims = atomic_load(&ntrims);
    *kb = atomic_load(&trimmed_kb);
}

/* One mapping of /proc/self/smaps, as far as the trim needs it. */
struct mapping {
    uintptr_t lo, hi;
    long rss; /* kB */
};

/* Read-only file mappings whose pages are all the file's: nothing written
 * (no private copy: Anonymous 0), not locked, something resident. */
struct mappings {
    struct mapping *v;
    size_t n, cap;
    long kb; /* unmapped so far */
    size_t page;
};

static int collect(struct mappings *ms)
{
    FILE *f = fopen("/proc/self/smaps", "re");
    if (!f)
        return -1;
    struct mapping cur = { 0 };
    bool have = false, ok = false;
    long anon = 0, locked = 0;
    char *line = NULL;
    size_t len = 0;
    int rc = 0;
    for (;;) {
        ssize_t got = getline(&line, &len, f);
        bool header = got > 0 && ((line[0] >= '0' && line[0] <= '9') ||
                                  (line[0] >= 'a' && line[0] <= 'f'));
        if ((got < 0 || header) && have && ok && cur.rss > 0 && anon == 0 && locked == 0) {
            if (GROW_ONE(ms->v, ms->cap, ms->n, 64) != 0) {
                rc = -1;
                break;
            }
            ms->v[ms->n++] = cur;
        }
        if (got < 0)
            break;
        if (header) {
            unsigned long lo, hi;
            char perms[5];
            int path = 0;
            have = sscanf(line, "%lx-%lx %4s %*s %*s %*s %n", &lo, &hi, perms, &path) == 3;
            cur = (struct mapping){ .lo = lo, .hi = hi };
            anon = locked = 0;
            ok = have && perms[0] == 'r' && perms[1] != 'w' && line[path] == '/';
        } else if (have) {
            long kb;
            if (sscanf(line, "Rss: %ld kB", &kb) == 1)
                cur.rss = kb;
            else if (sscanf(line, "Anonymous: %ld kB", &kb) == 1)
                anon = kb;
            else if (sscanf(line, "Locked: %ld kB", &kb) == 1)
                locked = kb;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

/* For each loaded object (the executable, libraries, plugins): its
 * segments that are not writable, where they lie in collected mappings.
 * dl_iterate_phdr holds the loader's lock while it calls this, so no
 * object is unloaded meanwhile: the range unmapped is still that object's,
 * never memory mapped anew at the same address. */
static int unmap_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct mappings *ms = arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_DYNAMIC) {
            /* Text relocations write into read-only segments: leave the
             * object alone (none on Debian's amd64 libraries). */
            const ElfW(Dyn) *d = (const ElfW(Dyn) *)(info->dlpi_addr + ph->p_vaddr);
            for (; d->d_tag != DT_NULL; d++)
                if (d->d_tag == DT_TEXTREL ||
                    (d->d_tag == DT_FLAGS && (d->d_un.d_val & DF_TEXTREL)))
                    return 0;
        }
    }
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || (ph->p_flags & PF_W) || ph->p_memsz == 0)
            continue;
        uintptr_t lo = (info->dlpi_addr + ph->p_vaddr) & ~(uintptr_t)(ms->page - 1);
        uintptr_t hi = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + ms->page - 1) &
                       ~(uintptr_t)(ms->page - 1);
        for (size_t k = 0; k < ms->n; k++) {
            struct mapping *m = &ms->v[k];
            uintptr_t a = m->lo > lo ? m->lo : lo, b = m->hi < hi ? m->hi : hi;
            if (a >= b || m->rss == 0)
                continue;
            if (madvise((void *)a, b - a, MADV_DONTNEED) == 0 && a == m->lo && b == m->hi) {
                ms->kb += m->rss;
                m->rss = 0; /* counted once */
            }
        }
    }
    return 0;
}

long memtrim_file_pages(void)
{
    struct mappings ms = { .page = (size_t)sysconf(_SC_PAGESIZE) };
    long kb = -1;
    if (collect(&ms) == 0) {
        dl_iterate_phdr(unmap_object, &ms);
        kb = ms.kb;
    }
    free(ms.v);
    return kb;
}
