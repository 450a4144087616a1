/* cpubudget - how many CPUs this process can keep busy at once.
 *
 * The fewer of: the CPUs in the process's affinity mask (taskset, a
 * cpuset), and the CPU quota of its cgroup and of every ancestor, rounded
 * up (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`;
 * a container limited to 1.5 CPUs counts 2). Unknown or unlimited parts
 * are left out, so the answer is at least 1.
 *
 * The host sizes its queues from it: on one CPU every task thread runs on
 * the same core in turn, and the records a deep queue holds between two
 * turns no longer fit its cache (see bench/README.md, "Queue depth on one
 * CPU").
 */
#ifndef SPOKE_CPUBUDGET_H
#define SPOKE_CPUBUDGET_H

/* The budget of this process, computed on the first call. */
int cpubudget(void);

/* CPUs in the affinity mask of this process (at least 1). */
int cpubudget_affinity(void);

/* The cgroup quota, in whole CPUs rounded up, read under root (a directory
 * standing for "/", which holds proc/self/cgroup and sys/fs/cgroup; "" for
 * the real one): the smallest over the process's cgroup and its ancestors,
 * 0 when none sets one or nothing can be read. */
int cpubudget_quota(const char *root);

#endif
