#!/usr/bin/env python3
"""The cost of `cargo cvtest --timeline` (and `--html`) against a plain run (issue 16).

    timeline.py --cvtest-bin target/release/cargo-cvtest [--rounds 3] [--tests 1000]

Runs, alternating in one session so that the machine's load falls on every variant alike:
a generated suite of trivial tests (gen_suite.py) and the examples crate, each plain, with
`--timeline`, and with `--html`. Prints per variant the median wall time, the median CPU time of
the runner and everything it waited for (getrusage of children: containers included), and the
difference to plain per test. Needs root; builds the suite's tests first.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def timed(argv, env):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.run(argv, env=env, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, p.returncode, p.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cvtest-bin", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tests", type=int, default=1000)
    ap.add_argument("--skip-examples", action="store_true")
    a = ap.parse_args()
    work = os.path.join(REPO, "target", "bench-timeline")
    suite = os.path.join(work, f"trivial-{a.tests}")
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(work, "target"), CARGO_TERM_COLOR="never")
    subprocess.run([sys.executable, os.path.join(HERE, "gen_suite.py"), "--out", suite, "--tests", str(a.tests), "--kind", "trivial"], check=True)
    manifest = os.path.join(suite, "Cargo.toml")
    subprocess.run(["cargo", "test", "--no-run", "-q", "--manifest-path", manifest], env=env, cwd="/", check=True)
    html = tempfile.mktemp(suffix=".html")
    targets = [(f"{a.tests} trivial tests", ["--manifest-path", manifest], env, a.tests)]
    if not a.skip_examples:
        repo_env = dict(os.environ, CARGO_TERM_COLOR="never")
        sel = ["--manifest-path", os.path.join(REPO, "Cargo.toml"), "-p", "cvtest-examples"]
        subprocess.run(["cargo", "test", "--no-run", "-q"] + sel, env=repo_env, cwd="/", check=True)
        targets.append(("examples crate", sel, repo_env, None))
    variants = [("plain", []), ("--timeline", ["--timeline"]), ("--html", ["--html", html])]
    for title, sel, tenv, n in targets:
        res = {v: [] for v, _ in variants}
        for r in range(a.rounds):
            for v, extra in variants:
                wall, cpu, rc, err = timed([a.cvtest_bin, "cvtest"] + sel + extra, tenv)
                res[v].append((wall, cpu, rc))
        print(f"### {title}" + (f" ({n} tests)" if n else ""))
        print()
        print("| variant | wall (median) | CPU, runner + containers (median) | wall Δ per test | CPU Δ per test | exit codes |")
        print("|---|---|---|---|---|---|")
        base_w = statistics.median(w for w, _, _ in res["plain"])
        base_c = statistics.median(c for _, c, _ in res["plain"])
        for v, _ in variants:
            w = statistics.median(x for x, _, _ in res[v])
            c = statistics.median(x for _, x, _ in res[v])
            per = (lambda d: f"{d / n * 1e3:+.2f} ms") if n else (lambda d: f"{d:+.2f} s total")
            print(f"| {v} | {w:.2f} s | {c:.2f} s | {per(w - base_w)} | {per(c - base_c)} | {sorted({rc for _, _, rc in res[v]})} |")
        if os.path.exists(html):
            print(f"\n`--html` file: {os.path.getsize(html)} bytes")
            os.remove(html)
        print()


if __name__ == "__main__":
    main()
