#include "cpubudget.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads the first line of path into buf; 0 on success. */
static int read_line(const char *path, char *buf, size_t bufsz)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    int ok = fgets(buf, (int)bufsz, f) != NULL;
    fclose(f);
    return ok ? 0 : -1;
}

static int ceil_div(long long q, long long p)
{
    long long n = (q + p - 1) / p;
    return n < 1 ? 1 : n > 1000000 ? 1000000 : (int)n;
}

/* The quota set in one cgroup directory: whole CPUs, 0 for none. */
static int dir_quota(const char *dir, int v2)
{
    char path[4096], line[128];
    long long q, p;
    if (v2) {
        if (snprintf(path, sizeof(path), "%s/cpu.max", dir) >= (int)sizeof(path) ||
            read_line(path, line, sizeof(line)) != 0 ||
            sscanf(line, "%lld %lld", &q, &p) != 2 || q <= 0 || p <= 0)
            return 0;  /* "max 100000", absent or unreadable: no quota */
        return ceil_div(q, p);
    }
    if (snprintf(path, sizeof(path), "%s/cpu.cfs_quota_us", dir) >= (int)sizeof(path) ||
        read_line(path, line, sizeof(line)) != 0 || sscanf(line, "%lld", &q) != 1 || q <= 0)
        return 0;  /* -1: no quota */
    if (snprintf(path, sizeof(path), "%s/cpu.cfs_period_us", dir) >= (int)sizeof(path) ||
        read_line(path, line, sizeof(line)) != 0 || sscanf(line, "%lld", &p) != 1 || p <= 0)
        return 0;
    return ceil_div(q, p);
}

/* The smallest quota from base/cgpath up to base itself (0: none). A
 * directory that does not exist is skipped: in a container the path the
 * kernel reports is the host's, and the container's own cgroup is mounted
 * at base. */
static int walk_quota(const char *base, const char *cgpath, int v2)
{
    char dir[4096];
    if (snprintf(dir, sizeof(dir), "%s%s", base, cgpath) >= (int)sizeof(dir))
        return 0;
    size_t blen = strlen(base);
    int best = 0;
    for (;;) {
        int q = dir_quota(dir, v2);
        if (q > 0 && (best == 0 || q < best))
            best = q;
        char *slash = strrchr(dir + blen, '/');
        if (!slash)
            break;
        *slash = '\0';
    }
    return best;
}

static int min_quota(int a, int b)
{
    return a == 0 ? b : b == 0 ? a : a < b ? a : b;
}

/* Whether the comma-separated controller list names "cpu". */
static int has_cpu(const char *list, size_t len)
{
    const char *p = list, *end = list + len;
    while (p < end) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        size_t n = (size_t)((c ? c : end) - p);
        if (n == 3 && memcmp(p, "cpu", 3) == 0)
            return 1;
        p += n + 1;
    }
    return 0;
}

int cpubudget_quota(const char *root)
{
    char path[4096], line[4096];
    if (snprintf(path, sizeof(path), "%s/proc/self/cgroup", root) >= (int)sizeof(path))
        return 0;
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    int best = 0;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2 || c2[1] != '/')
            continue;
        const char *cgpath = strcmp(c2 + 1, "/") == 0 ? "" : c2 + 1;
        char base[4096];
        if (c2 == c1 + 1) {  /* "0::/path": the v2 hierarchy */
            static const char *const v2[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/unified" };
            for (size_t i = 0; i < sizeof(v2) / sizeof(v2[0]); i++)
                if (snprintf(base, sizeof(base), "%s%s", root, v2[i]) < (int)sizeof(base))
                    best = min_quota(best, walk_quota(base, cgpath, 1));
        } else if (has_cpu(c1 + 1, (size_t)(c2 - c1 - 1))) {
            static const char *const v1[] = { "cpu", "cpu,cpuacct", "cpuacct,cpu" };
            for (size_t i = 0; i < sizeof(v1) / sizeof(v1[0]); i++)
                if (snprintf(base, sizeof(base), "%s/sys/fs/cgroup/%s", root, v1[i]) <
                    (int)sizeof(base))
                    best = min_quota(best, walk_quota(base, cgpath, 0));
        }
    }
    fclose(f);
    return best;
}

int cpubudget_affinity(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return 1;
    int n = CPU_COUNT(&set);
    return n < 1 ? 1 : n;
}

static int budget;
static pthread_once_t budget_once = PTHREAD_ONCE_INIT;

static void budget_init(void)
{
    int n = cpubudget_affinity();
    int q = cpubudget_quota("");
    budget = q > 0 && q < n ? q : n;
}

int cpubudget(void)
{
    pthread_once(&budget_once, budget_init);
    return budget;
}
