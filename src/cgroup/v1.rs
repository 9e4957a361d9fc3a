//! cgroup v1: one directory per controller hierarchy (memory, pids, cpu, cpuacct, freezer).
