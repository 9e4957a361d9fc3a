//! cgroup v2: one unified directory.
