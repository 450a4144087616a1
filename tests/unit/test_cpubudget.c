/* unit-cpubudget: the cgroup CPU quota read from a directory tree laid out
 * like "/" (proc/self/cgroup, sys/fs/cgroup): cgroup v2 cpu.max and v1
 * cpu.cfs_quota_us / cpu.cfs_period_us, rounded up, the smallest of the
 * process's cgroup and its ancestors, the container case where the
 * reported path does not exist under the mount, and every way of having
 * no quota. cpubudget() agrees with the affinity mask when no quota is set. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpubudget.h"
#include "test.h"

static char root[256];

/* Writes text to root/rel, creating the directories on the way. */
static void put(const char *rel, const char *text)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    for (char *s = path + strlen(root) + 1; (s = strchr(s, '/')); s++) {
        *s = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            fprintf(stderr, "mkdir %s: %s\n", path, strerror(errno));
        *s = '/';
    }
    FILE *f = fopen(path, "w");
    CHECK_MSG(f != NULL, "cannot write %s", path);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void fresh_root(void)
{
    if (root[0]) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        CHECK(system(cmd) == 0);
    }
    /* A new directory per tree: this process's id and a count. */
    static int n;
    snprintf(root, sizeof(root), "/tmp/spoke-cpubudget-%d-%d", (int)getpid(), n++);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
    CHECK(mkdir(root, 0700) == 0);
}

static void test_v2_quota_of_the_cgroup_or_an_ancestor(void)
{
    fresh_root();
    put("proc/self/cgroup", "0::/a/b\n");
    put("sys/fs/cgroup/a/b/cpu.max", "max 100000\n");
    put("sys/fs/cgroup/a/cpu.max", "150000 100000\n");
    CHECK(cpubudget_quota(root) == 2);  /* 1.5 CPUs keep 2 busy in part */
    put("sys/fs/cgroup/a/b/cpu.max", "50000 100000\n");
    CHECK(cpubudget_quota(root) == 1);  /* the smaller one, rounded up */
    put("sys/fs/cgroup/cpu.max", "400000 100000\n");
    CHECK(cpubudget_quota(root) == 1);
    put("sys/fs/cgroup/a/b/cpu.max", "max 100000\n");
    put("sys/fs/cgroup/a/cpu.max", "max 100000\n");
    CHECK(cpubudget_quota(root) == 4);  /* the root's own */
}

static void test_v1_quota_and_the_container_path(void)
{
    fresh_root();
    /* The kernel names the host's path; the container sees its own cgroup
     * at the mount point. */
    put("proc/self/cgroup", "5:memory:/docker/x\n4:cpu,cpuacct:/docker/x\n0::/\n");
    put("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "300000\n");
    put("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    CHECK(cpubudget_quota(root) == 3);
    put("sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_quota_us", "100001\n");
    put("sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_period_us", "100000\n");
    CHECK(cpubudget_quota(root) == 2);
    put("sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_quota_us", "-1\n");
    CHECK(cpubudget_quota(root) == 3);
    /* A controller list that only contains "cpu" as part of a name. */
    fresh_root();
    put("proc/self/cgroup", "4:cpuacct:/\n3:cpuset:/\n");
    put("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "100000\n");
    put("sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n");
    CHECK(cpubudget_quota(root) == 0);
    put("proc/self/cgroup", "4:cpuacct:/\n2:cpu:/\n");
    CHECK(cpubudget_quota(root) == 1);
}

static void test_no_quota(void)
{
    fresh_root();
    CHECK(cpubudget_quota(root) == 0);  /* no proc/self/cgroup */
    put("proc/self/cgroup", "0::/a\n");
    CHECK(cpubudget_quota(root) == 0);  /* no cpu.max anywhere */
    put("sys/fs/cgroup/a/cpu.max", "max 100000\n");
    CHECK(cpubudget_quota(root) == 0);
    put("sys/fs/cgroup/a/cpu.max", "0 100000\n");
    CHECK(cpubudget_quota(root) == 0);
    put("sys/fs/cgroup/a/cpu.max", "garbage\n");
    CHECK(cpubudget_quota(root) == 0);
    put("proc/self/cgroup", "not a cgroup line\n::\n0:\n");
    CHECK(cpubudget_quota(root) == 0);
    put("proc/self/cgroup", "2:cpu:/\n");
    put("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "200000\n");  /* no period */
    CHECK(cpubudget_quota(root) == 0);
}

static void test_the_process_budget(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CHECK(sched_getaffinity(0, sizeof(set), &set) == 0);
    CHECK(cpubudget_affinity() == CPU_COUNT(&set));
    int q = cpubudget_quota("");
    int want = q > 0 && q < CPU_COUNT(&set) ? q : CPU_COUNT(&set);
    CHECK(cpubudget() == want);
    CHECK(cpubudget() >= 1);
}

int main(void)
{
    RUN(test_v2_quota_of_the_cgroup_or_an_ancestor);
    RUN(test_v1_quota_and_the_container_path);
    RUN(test_no_quota);
    RUN(test_the_process_budget);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
    return TEST_REPORT();
}
