/* unit-memtrim: memtrim_file_pages unmaps the resident pages of the loaded
 * objects' read-only segments (here libjansson's code, loaded with dlopen)
 * and changes nothing: the code runs again afterwards; a private mapping
 * written and then made read-only (as the loader does with relocated RELRO
 * data) keeps its private copy; a writable one keeps what was written; a
 * file mapped read-only by the program itself is not touched. */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "memtrim.h"
#include "test.h"

#define PAGES 16

/* Rss of the mapping holding addr, in kB, from /proc/self/smaps; -1 when
 * not found. */
static long rss_kb(const void *addr)
{
    FILE *f = fopen("/proc/self/smaps", "re");
    if (!f)
        return -1;
    char line[512];
    int in = 0;
    long rss = -1;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = lo <= (uintptr_t)addr && (uintptr_t)addr < hi;
            continue;
        }
        if (in && sscanf(line, "Rss: %ld kB", &rss) == 1)
            break;
    }
    fclose(f);
    return rss;
}

/* Byte i of the file: a pattern no page shares with the next. */
static unsigned char file_byte(size_t i)
{
    return (unsigned char)(i * 7 + i / 4096);
}

static int same_as_file(const unsigned char *p, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (p[i] != file_byte(i))
            return 0;
    return 1;
}

typedef void *(*obj_fn)(void);
typedef char *(*dumps_fn)(const void *, size_t);
typedef void (*decref_fn)(void *);

int main(void)
{
    /* A library loaded and its code run: resident read-only pages. */
    void *lib = dlopen("libjansson.so.4", RTLD_NOW | RTLD_LOCAL);
    CHECK(lib != NULL);
    obj_fn obj = (obj_fn)dlsym(lib, "json_object");
    dumps_fn dumps = (dumps_fn)dlsym(lib, "json_dumps");
    decref_fn del = (decref_fn)dlsym(lib, "json_delete");
    CHECK(obj && dumps && del);
    void *o = obj();
    char *text = dumps(o, 0);
    CHECK_STR(text, "{}");
    free(text);
    long code_before = rss_kb((const void *)dumps);
    CHECK_MSG(code_before > 0, "libjansson's code: %ld kB", code_before);

    size_t pg = (size_t)sysconf(_SC_PAGESIZE), len = PAGES * pg;
    int fd = memfd_create("spoke-memtrim", MFD_CLOEXEC);
    CHECK(fd >= 0);
    unsigned char *buf = malloc(len);
    for (size_t i = 0; i < len; i++)
        buf[i] = file_byte(i);
    CHECK(write(fd, buf, len) == (ssize_t)len);
    free(buf);

    /* A read-only mapping, every page read. */
    unsigned char *ro = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    /* Private, first page written, then read-only: a private copy. */
    unsigned char *relro = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    /* Private and writable, first page written. */
    unsigned char *rw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    CHECK(ro != MAP_FAILED && relro != MAP_FAILED && rw != MAP_FAILED);
    close(fd);
    volatile unsigned sum = 0;
    for (size_t i = 0; i < len; i += pg)
        sum += ro[i] + relro[i] + rw[i];
    memset(relro, 0xAB, pg);
    CHECK(mprotect(relro, len, PROT_READ) == 0);
    memset(rw, 0xCD, pg);
    CHECK_MSG(rss_kb(ro) == (long)(len / 1024), "read-only mapping rss %ld kB", rss_kb(ro));

    long kb = memtrim_file_pages();
    CHECK_MSG(kb >= code_before, "unmapped %ld kB", kb);
    long code_after = rss_kb((const void *)dumps);
    CHECK_MSG(code_after == 0, "libjansson's code: %ld kB before, %ld kB after", code_before,
              code_after);
    text = dumps(o, 0);
    CHECK_STR(text, "{}");
    free(text);
    CHECK(rss_kb((const void *)dumps) > 0);
    /* Not trimmed: not a loaded object's; private copies inside. */
    CHECK_MSG(rss_kb(ro) == (long)(len / 1024), "read-only data mapping rss %ld kB", rss_kb(ro));
    CHECK_MSG(rss_kb(relro) == (long)(len / 1024), "relro mapping rss %ld kB", rss_kb(relro));
    CHECK_MSG(rss_kb(rw) == (long)(len / 1024), "writable mapping rss %ld kB", rss_kb(rw));

    /* Content: the file again where nothing was written; what was
     * written, where it was. */
    CHECK(same_as_file(ro, 0, len));
    int copy_kept = 1;
    for (size_t i = 0; i < pg; i++)
        copy_kept &= relro[i] == 0xAB && rw[i] == 0xCD;
    CHECK(copy_kept);
    CHECK(same_as_file(relro, pg, len) && same_as_file(rw, pg, len));

    /* The idle trims count nothing here: no task ever went idle. */
    long long trims, tkb;
    memtrim_stats(&trims, &tkb);
    CHECK(trims == 0 && tkb == 0);
    del(o);
    dlclose(lib);
    munmap(ro, len);
    munmap(relro, len);
    munmap(rw, len);
    (void)sum;
    return TEST_REPORT();
}
