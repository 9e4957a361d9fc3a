/*
 * spawn-timer: time N launches of several commands, interleaved, and print the medians.
 *
 *   spawn-timer [-n ITER] [-w WARMUP] [-t SECONDS] CASE [:: CASE]...
 *   CASE = LABEL [--clone-ns] PROGRAM [ARG]...
 *
 * Each iteration launches every case once, round-robin, so that drift on a shared machine (other
 * load, frequency, caches) hits all cases alike. One launch is fork (or a raw clone with new PID,
 * mount, UTS, IPC and network namespaces for --clone-ns) + execv + waitpid, timed with
 * CLOCK_MONOTONIC in this single-threaded process: no shell, no interpreter in the measurement.
 * The child's stdout and stdin are /dev/null; its stderr is kept so a failing peer says why.
 *
 * A case whose command fails (non-zero exit or a signal) is dropped from the remaining
 * iterations and reported as failed, so one broken peer does not sink the others. -t bounds the
 * whole run: iterations stop when the budget is spent (at least 5 measured iterations are kept).
 *
 * Output, one tab-separated line per case:
 *   LABEL  ok|failed:REASON  N  MEDIAN_US  P10_US  P90_US  MEAN_US  MIN_US
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CASES 32

struct bench_case {
    const char *label;
    char **argv;
    int clone_ns;
    int failed;
    char why[64];
    double *samples;
    size_t n;
};

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *sorted, size_t n, int p) {
    return sorted[(n - 1) * (size_t)p / 100];
}

/* One launch; returns the elapsed microseconds, or a negative value on failure. */
static double launch(struct bench_case *c, int devnull) {
    double start = now_us();
    pid_t pid;
    if (c->clone_ns) {
        pid = (pid_t)syscall(SYS_clone,
                             CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | SIGCHLD,
                             NULL, NULL, NULL, 0);
    } else {
        pid = fork();
    }
    if (pid < 0) {
        snprintf(c->why, sizeof c->why, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        execv(c->argv[0], c->argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            snprintf(c->why, sizeof c->why, "waitpid: %s", strerror(errno));
            return -1;
        }
    }
    double elapsed = now_us() - start;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return elapsed;
    if (WIFEXITED(status))
        snprintf(c->why, sizeof c->why, "exit-%d", WEXITSTATUS(status));
    else
        snprintf(c->why, sizeof c->why, "signal-%d", WTERMSIG(status));
    return -1;
}

/* Resolve PROGRAM through PATH once, so execv does no search inside the measurement. */
static char *resolve(const char *prog) {
    if (strchr(prog, '/'))
        return strdup(prog);
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
    char *copy = strdup(path), *save = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s/%s", dir, prog);
        if (access(buf, X_OK) == 0) {
            free(copy);
            return strdup(buf);
        }
    }
    free(copy);
    return NULL;
}

static void usage(void) {
    fprintf(stderr, "usage: spawn-timer [-n ITER] [-w WARMUP] [-t SECONDS] LABEL [--clone-ns] PROGRAM [ARG]... [:: CASE]...\n");
    exit(2);
}

int main(int argc, char **argv) {
    long iters = 200, warmup = 10;
    double budget_s = 0;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc)
            iters = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "-w") && i + 1 < argc)
            warmup = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc)
            budget_s = strtod(argv[++i], NULL);
        else
            usage();
    }
    if (iters < 1 || warmup < 0)
        usage();

    struct bench_case cases[MAX_CASES];
    int ncases = 0;
    while (i < argc) {
        if (ncases == MAX_CASES) {
            fprintf(stderr, "spawn-timer: at most %d cases\n", MAX_CASES);
            return 2;
        }
        struct bench_case *c = &cases[ncases++];
        memset(c, 0, sizeof *c);
        c->label = argv[i++];
        if (i < argc && !strcmp(argv[i], "--clone-ns")) {
            c->clone_ns = 1;
            i++;
        }
        int start = i;
        while (i < argc && strcmp(argv[i], "::"))
            i++;
        if (i == start)
            usage();
        c->argv = calloc((size_t)(i - start + 1), sizeof(char *));
        for (int k = start; k < i; k++)
            c->argv[k - start] = argv[k];
        char *resolved = resolve(c->argv[0]);
        if (!resolved) {
            c->failed = 1;
            snprintf(c->why, sizeof c->why, "not-found");
        } else {
            c->argv[0] = resolved;
        }
        c->samples = calloc((size_t)iters, sizeof(double));
        if (i < argc)
            i++; /* skip "::" */
    }
    if (ncases == 0)
        usage();

    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) {
        perror("spawn-timer: /dev/null");
        return 1;
    }
    double deadline = budget_s > 0 ? now_us() + budget_s * 1e6 : 0;
    for (long it = 0; it < warmup + iters; it++) {
        int measured = it >= warmup;
        for (int k = 0; k < ncases; k++) {
            struct bench_case *c = &cases[k];
            if (c->failed)
                continue;
            double t = launch(c, devnull);
            if (t < 0)
                c->failed = 1;
            else if (measured)
                c->samples[c->n++] = t;
        }
        if (deadline && now_us() > deadline && (it - warmup) >= 5)
            break;
    }
    for (int k = 0; k < ncases; k++) {
        struct bench_case *c = &cases[k];
        if (c->failed || c->n == 0) {
            printf("%s\tfailed:%s\t0\t0\t0\t0\t0\t0\n", c->label, c->why[0] ? c->why : "no-samples");
            continue;
        }
        qsort(c->samples, c->n, sizeof(double), cmp_double);
        double sum = 0;
        for (size_t s = 0; s < c->n; s++)
            sum += c->samples[s];
        printf("%s\tok\t%zu\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\n", c->label, c->n, pct(c->samples, c->n, 50),
               pct(c->samples, c->n, 10), pct(c->samples, c->n, 90), sum / (double)c->n, c->samples[0]);
    }
    return 0;
}
