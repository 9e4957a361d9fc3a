/*
 * cgroup-migrate: what it costs to put a new child into a cgroup v1 hierarchy, two ways.
 *
 *   cgroup-migrate DIR ITERATIONS GAP_MS
 *
 * DIR is an empty cgroup v1 directory (bench.py creates it below its own cgroup and removes it).
 * Each iteration forks a child, moves it into DIR, lets it exit, then sleeps GAP_MS, and the two
 * ways alternate:
 *   procs: the parent writes the child's pid to DIR/cgroup.procs (what a runtime does from the
 *          parent side). The kernel takes cgroup_threadgroup_rwsem for writing, a percpu rwsem:
 *          when it has gone idle (no writer for about one RCU grace period, which GAP_MS ensures)
 *          the writer waits a full grace period.
 *   tasks: the child writes "0" (itself, one thread) to DIR/tasks. The kernel migrates the
 *          calling thread without that global lock, so there is no grace period to wait for.
 * Prints one tab-separated line per way: NAME  MEDIAN_US  P90_US  MAX_US (the time of the write).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int write_str(const char *path, const char *s) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, s, strlen(s));
    close(fd);
    return n == (ssize_t)strlen(s) ? 0 : -1;
}

/* One iteration; returns the write's duration in µs, or -1. */
static double once(const char *dir, int self_join) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, self_join ? "tasks" : "cgroup.procs");
    int p[2];
    if (pipe(p) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(p[0]);
        double t0 = now_us();
        int rc = self_join ? write_str(path, "0") : 0;
        double elapsed = now_us() - t0;
        if (write(p[1], &elapsed, sizeof elapsed) != sizeof elapsed)
            _exit(2);
        _exit(rc == 0 ? 0 : 3);
    }
    close(p[1]);
    double elapsed = -1;
    if (!self_join) {
        char buf[32];
        snprintf(buf, sizeof buf, "%d", (int)pid);
        double t0 = now_us();
        int rc = write_str(path, buf);
        elapsed = rc == 0 ? now_us() - t0 : -1;
    }
    double child_elapsed;
    ssize_t got = read(p[0], &child_elapsed, sizeof child_elapsed);
    close(p[0]);
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || got != sizeof child_elapsed)
        return -1;
    return self_join ? child_elapsed : elapsed;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: cgroup-migrate DIR ITERATIONS GAP_MS\n");
        return 2;
    }
    const char *dir = argv[1];
    int n = atoi(argv[2]), gap_ms = atoi(argv[3]);
    if (n < 1 || gap_ms < 0) {
        fprintf(stderr, "cgroup-migrate: ITERATIONS must be >= 1 and GAP_MS >= 0\n");
        return 2;
    }
    double *s[2] = {calloc((size_t)n, sizeof(double)), calloc((size_t)n, sizeof(double))};
    for (int i = 0; i < n; i++) {
        for (int way = 0; way < 2; way++) {
            double t = once(dir, way);
            if (t < 0) {
                fprintf(stderr, "cgroup-migrate: moving a child into %s failed (%s)\n", dir,
                        way ? "tasks" : "cgroup.procs");
                return 1;
            }
            s[way][i] = t;
            usleep((useconds_t)gap_ms * 1000);
        }
    }
    const char *names[2] = {"parent writes pid to cgroup.procs", "child writes 0 to tasks"};
    for (int way = 0; way < 2; way++) {
        qsort(s[way], (size_t)n, sizeof(double), cmp_double);
        printf("%s\t%.0f\t%.0f\t%.0f\n", names[way], s[way][n / 2], s[way][(n - 1) * 9 / 10], s[way][n - 1]);
    }
    return 0;
}
