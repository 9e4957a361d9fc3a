#!/usr/bin/env python3
"""cvtest benchmarks: per-container overhead beside the peers, suite wall time, scale.

Run through scripts/bench/run.sh (which installs the peers first); see docs/BENCHMARKS.md.
Everything is measured in ONE run on the same machine and reported as ratios, because absolute
times on a shared machine drift from run to run. Whatever cannot run (a peer not installed, cvtest
not built or not able to run containers yet, no root) is skipped with the reason, never silently.

Scratch files (generated suites, the OCI bundle, the timer binary, results) go to
<target dir>/bench/, never into the source tree.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
WORK = os.path.join(TARGET, "bench")
SUITES = os.path.join(WORK, "suites")
SUITES_TARGET = os.path.join(WORK, "suites-target")
# Runners are started from here, with --manifest-path: inside the repository, its
# .cargo/config.toml alias `cvtest` (cargo run -p cargo-cvtest) would shadow the built runner.
OUTSIDE = "/"

# Reference ratios to fork+exec measured on this machine and quoted in issue 6.
REFERENCE = {"bwrap": "≈7.7×", "crun": "≈12.5×", "runc": "≈34×", "minimal C launcher (ns+cgroups+veth)": "≈5.7×"}


class Skip(Exception):
    """A part of the benchmark that cannot run here; the message says why."""


# ---------------------------------------------------------------------------------------------
# Output


class Report:
    """Prints as it goes and keeps a Markdown copy for docs/BENCHMARKS.md."""

    def __init__(self):
        self.lines = []
        self.data = {}

    def say(self, text=""):
        print(text, flush=True)
        self.lines.append(text)

    def note(self, text):
        """Progress lines: printed, not kept in the Markdown."""
        print(f"  .. {text}", file=sys.stderr, flush=True)

    def table(self, header, rows):
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        fmt = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |"
        self.say(fmt(header))
        self.say("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for r in rows:
            self.say(fmt(r))
        self.say()


R = Report()


def run(cmd, timeout=600, env=None, cwd=None, check=True, capture=True):
    """Runs a command; returns CompletedProcess. Raises Skip on a missing program."""
    try:
        p = subprocess.run(
            cmd,
            env=env,
            cwd=cwd,
            timeout=timeout,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=subprocess.PIPE if capture else subprocess.DEVNULL,
            text=True,
        )
    except FileNotFoundError as e:
        raise Skip(f"{cmd[0]} not found") from e
    if check and p.returncode != 0:
        tail = (p.stderr or "").strip().splitlines()[-8:]
        raise Skip(f"`{' '.join(cmd[:4])} ...` exited {p.returncode}: " + " / ".join(tail))
    return p


def fmt_us(us):
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def fmt_s(s):
    return f"{s:.2f} s"


def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "–"


# ---------------------------------------------------------------------------------------------
# Machine


def cgroup_layout():
    """(kind, description, v1 mounts) from /proc/self/mountinfo; v1 mounts are (mnt, root, opts)."""
    v1, v2 = [], []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, post = line.split(" - ", 1)
            pre_f, post_f = pre.split(), post.split()
            fstype, super_opts = post_f[0], post_f[2]
            root, mnt = pre_f[3], pre_f[4]
            if fstype == "cgroup":
                opts = [o for o in super_opts.split(",") if o not in ("rw", "ro")]
                v1.append((mnt, root, opts))
            elif fstype == "cgroup2":
                try:
                    with open(os.path.join(mnt, "cgroup.controllers")) as c:
                        ctrls = c.read().split()
                except OSError:
                    ctrls = []
                v2.append((mnt, ctrls))
    if v1 and v2:
        kind = "hybrid"
    elif v1:
        kind = "v1"
    elif v2:
        kind = "v2"
    else:
        kind = "none"
    desc = []
    if v1:
        desc.append("v1: " + ", ".join("+".join(o) for _, _, o in v1))
    for mnt, ctrls in v2:
        desc.append(f"v2 at {mnt} (controllers: {' '.join(ctrls) or 'none'})")
    return kind, "; ".join(desc), v1


def machine_info():
    with open("/proc/meminfo") as f:
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        m = re.search(r"model name\s*:\s*(.*)", f.read())
        if m:
            cpu = m.group(1).strip()
    kind, desc, _ = cgroup_layout()
    try:
        commit = run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]).stdout.strip()
    except Skip:
        commit = "?"
    return {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "nproc": os.cpu_count(),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "cpu": cpu,
        "kernel": platform.release(),
        "cgroups": f"{kind} ({desc})",
        "commit": commit,
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# ---------------------------------------------------------------------------------------------
# Part 1: per-container overhead


def build_timer():
    src = os.path.join(HERE, "spawn-timer.c")
    out = os.path.join(WORK, "spawn-timer")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc:
            raise Skip("no C compiler (cc) to build spawn-timer")
        run([cc, "-O2", "-Wall", "-o", out, src])
    return out


def build_bundle():
    """An OCI bundle whose root is the host's / (read-only), running /bin/true."""
    tool = shutil.which("crun") or shutil.which("runc")
    if not tool:
        raise Skip("neither crun nor runc is installed")
    bundle = os.path.join(WORK, "oci-bundle")
    os.makedirs(os.path.join(bundle, "rootfs"), exist_ok=True)
    cfg_path = os.path.join(bundle, "config.json")
    if os.path.exists(cfg_path):
        os.remove(cfg_path)
    run([tool, "spec"], cwd=bundle)
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/true"]
    cfg["root"] = {"path": "rootfs", "readonly": True}
    cfg["hostname"] = "cvbench"
    linux = cfg.setdefault("linux", {})
    # The same limits cvtest sets by default (memory 1G, pids 256, cpu weight 100 = 1024 shares),
    # so that the runtimes write cgroup files as cvtest does.
    linux.setdefault("resources", {}).update(
        {"memory": {"limit": 1 << 30}, "pids": {"limit": 256}, "cpu": {"shares": 1024}}
    )
    linux["cgroupsPath"] = "/cvbench-oci"
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=1)
    return bundle


class BenchCgroups:
    """A cgroup below this process's own cgroup in every v1 hierarchy, removed on exit.

    The peers run inside it, in a cgroup namespace rooted there, so the cgroups crun and runc make
    land below it and never anywhere else.
    """

    def __init__(self, v1_mounts):
        self.dirs = []
        own = {}
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                if ctrls:
                    own[frozenset(ctrls.split(","))] = path
        name = f"cvbench-peers.{os.getpid()}"
        for mnt, root, opts in v1_mounts:
            key = frozenset(o for o in opts if o in own_keys(own))
            path = own.get(frozenset(opts)) or own.get(key)
            if path is None:
                raise Skip(f"no /proc/self/cgroup entry for the v1 hierarchy at {mnt} ({','.join(opts)})")
            rel = os.path.relpath(path, root) if root != "/" else path.lstrip("/")
            if rel.startswith(".."):
                raise Skip(f"own cgroup {path} is not visible under the mount {mnt} (root {root})")
            parent = os.path.normpath(os.path.join(mnt, rel))
            d = os.path.join(parent, name)
            os.mkdir(d)
            self.dirs.append(d)
            for f in ("cpuset.cpus", "cpuset.mems"):
                if os.path.exists(os.path.join(parent, f)):
                    with open(os.path.join(parent, f)) as src, open(os.path.join(d, f), "w") as dst:
                        dst.write(src.read())

    def join(self):
        """preexec_fn: moves the (forked) child into every bench cgroup."""
        pid = str(os.getpid())
        for d in self.dirs:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(pid)

    def remove(self):
        """Removes the bench cgroups and anything a runtime left below them, deepest first."""
        left = []
        for d in self.dirs:
            subdirs = [os.path.join(r, s) for r, ds, _ in os.walk(d) for s in ds]
            for sub in sorted(subdirs, key=len, reverse=True) + [d]:
                for _ in range(100):
                    try:
                        os.rmdir(sub)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.02)
                else:
                    left.append(sub)
        self.dirs = []
        if left:
            R.say(f"WARNING: could not remove bench cgroups: {', '.join(left)}")


def own_keys(own):
    keys = set()
    for k in own:
        keys |= k
    return keys


def parse_timer(out):
    res = {}
    for line in out.strip().splitlines():
        label, status, n, med, p10, p90, mean, mn = line.split("\t")
        res[label] = {"status": status, "n": int(n), "median": float(med), "p10": float(p10), "p90": float(p90), "min": float(mn)}
    return res


def peers(args):
    R.say("## 1. Per-container overhead (create → run /bin/true → wait → destroy)")
    R.say()
    timer = build_timer()
    kind, _, v1 = cgroup_layout()
    cases = [("fork+exec+wait /bin/true (baseline)", ["/bin/true"])]
    cases.append(("clone(pid,mnt,uts,ipc,net)+exec (kernel floor)", ["--clone-ns", "/bin/true"]))
    skipped = []
    if shutil.which("unshare"):
        cases.append(("unshare --fork --pid --mount --uts --ipc --net", ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "true"]))
    else:
        skipped.append("unshare: not installed")
    if shutil.which("bwrap"):
        cases.append(("bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc", ["bwrap", "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "true"]))
    else:
        skipped.append("bwrap: not installed (apt-get install bubblewrap)")
    bundle = None
    try:
        bundle = build_bundle()
    except Skip as e:
        skipped.append(f"crun/runc: {e}")
    cgroups_ok = kind in ("v1", "hybrid")
    if bundle:
        state = os.path.join(WORK, "oci-state")
        if shutil.which("crun"):
            cases.append(("crun run, no cgroups", ["crun", "--cgroup-manager=disabled", "--root", state + "/crun", "run", "--bundle", bundle, "cvbench-crun-nocg"]))
            if cgroups_ok:
                cases.append(("crun run, cgroups (memory, pids, cpu limits)", ["crun", "--cgroup-manager=cgroupfs", "--root", state + "/crun", "run", "--bundle", bundle, "cvbench-crun"]))
            else:
                skipped.append("crun with cgroups: only set up for v1/hybrid hosts (on pure v2 the bench cgroup would need a delegated subtree)")
        else:
            skipped.append("crun: not installed (apt-get install crun)")
        if shutil.which("runc"):
            if cgroups_ok:
                cases.append(("runc run, cgroups (memory, pids, cpu limits)", ["runc", "--root", state + "/runc", "run", "--bundle", bundle, "cvbench-runc"]))
            else:
                skipped.append("runc: only set up for v1/hybrid hosts")
        else:
            skipped.append("runc: not installed (apt-get install runc)")

    argv = [timer, "-n", str(args.iterations), "-w", str(max(3, args.iterations // 20)), "-t", str(args.peer_budget)]
    for i, (label, cmd) in enumerate(cases):
        if i:
            argv.append("::")
        argv += [label] + cmd
    R.note(f"peers: {len(cases)} cases × {args.iterations} iterations, interleaved")
    cg = BenchCgroups(v1) if cgroups_ok else None
    try:
        env_argv = ["unshare", "--mount", "--cgroup", "--propagation", "private", "--", "bash", os.path.join(HERE, "peer-env.sh"), bundle or "-", "--"]
        p = subprocess.run(env_argv + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=args.peer_budget + 300, preexec_fn=cg.join if cg else None)
    finally:
        if cg:
            cg.remove()
    if p.returncode != 0:
        raise Skip(f"spawn-timer failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    res = parse_timer(p.stdout)
    if p.stderr.strip():
        R.note("peer stderr: " + p.stderr.strip()[-300:])
    base = res[cases[0][0]]["median"]
    base_min = res[cases[0][0]]["min"]
    rows = []
    for label, _ in cases:
        r = res[label]
        if r["status"] != "ok":
            rows.append([label, r["status"], "", "", "", "", "", "", ""])
            continue
        ref = next((v for k, v in REFERENCE.items() if label.startswith(k)), "")
        rows.append([label, fmt_us(r["median"]), fmt_us(r["min"]), fmt_us(r["p90"]), ratio(r["median"], base), ratio(r["median"], base), ratio(r["min"], base_min), ref])
    R.data["peers"] = res

    cv = cvtest_container_bench(args)
    if cv:
        R.data["cvtest_container"] = cv
        cvbase = cv["baseline"]["median"]
        for key, label, target in (
            ("plain", "cvtest Container, no network", ""),
            ("veth", "cvtest Container with veth", ""),
            ("runner", "cvtest Container as `cargo cvtest` runs one, no network", "target ≤ 3×"),
            ("runner_veth", "cvtest Container as `cargo cvtest` runs one, with veth", "target ≤ 4×"),
        ):
            c = cv.get(key)
            if c:
                cvmin = cv["baseline"].get("min")
                rows.append([label, fmt_us(c["median"]), fmt_us(c["min"]) if c.get("min") else "", fmt_us(c["p90"]),
                             ratio(c["median"], cvbase), ratio(c["median"], base),
                             ratio(c["min"], cvmin) if c.get("min") and cvmin else "", target])
    R.table(["case", "median", "min", "p90", "× fork+exec of its own loop", "× peers' fork+exec", "min ÷ min of its loop", "issue 6 / 17"], rows)
    R.say(
        f"{args.iterations} iterations per case (after warm-up), all peer cases interleaved round-robin by "
        "`spawn-timer` (C: fork/clone + execv + waitpid, CLOCK_MONOTONIC), inside a private mount and "
        "cgroup namespace rooted at a bench cgroup. The peers are whole CLI launches, as a user runs them. "
        "The ratio of minimums is the least sensitive to other load on the machine."
    )
    for line in (cv or {}).get("phase_lines", []):
        R.say(f"- {line}")
    if cv:
        R.say(
            f"cvtest rows: `cargo bench --bench container` ({cv['iterations']} iterations, interleaved with its own "
            f"fork+exec+wait baseline of {fmt_us(cvbase)}, against {fmt_us(base)} in the peers' loop). The two "
            "baselines differ because a fork+exec that runs right after a container shares the CPUs with that "
            "container's asynchronous teardown (the kernel's network-namespace cleanup runs in a kworker), so "
            "both ratios are shown. The library call does not exec a launcher binary, which the CLI peers do."
        )
    for s in skipped:
        R.say(f"- skipped: {s}")
    R.say()


def cvtest_container_bench(args):
    """Runs the library's own benchmark (benches/container.rs, from the sandbox branch)."""
    if not os.path.exists(os.path.join(REPO, "benches", "container.rs")):
        R.say("- skipped: cvtest's container benchmark: benches/container.rs is not in this tree yet (sandbox branch)")
        return None
    if os.geteuid() != 0:
        R.say("- skipped: cvtest's container benchmark needs root")
        return None
    R.note("building cargo bench --bench container")
    try:
        p = run(["cargo", "bench", "--bench", "container", "--no-run", "--message-format=json"], cwd=REPO, timeout=1200)
    except Skip as e:
        R.say(f"- skipped: cvtest's container benchmark does not build: {e}")
        return None
    exe = None
    for line in p.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == "container" and msg.get("executable"):
            exe = msg["executable"]
    if not exe:
        R.say("- skipped: cvtest's container benchmark: no executable in cargo's output")
        return None
    R.note(f"running {os.path.basename(exe)} {args.cv_iterations}")
    try:
        p = run([exe, str(args.cv_iterations)], timeout=900)
    except Skip as e:
        R.say(f"- skipped: cvtest's container benchmark failed: {e}")
        return None
    out = {"iterations": args.cv_iterations}
    # Longest prefix first: "container, no network, pooled netns" is not the plain container.
    names = {"fork+exec+wait": "baseline", "std::process::Command": "std", "container, no network, pooled netns": "pooled", "container, no network": "plain", "container with veth": "veth",
             "as cargo cvtest runs one, no network": "runner", "as cargo cvtest runs one, with veth": "runner_veth"}
    for line in p.stdout.splitlines():
        # "NAME [MIN]µs MEDIANµs P90µs RATIOx [MIN-RATIOx]": older versions print no minimum.
        if line.startswith("container") and "per phase" in line:
            out.setdefault("phase_lines", []).append(line.strip())
            continue
        us = [float(x) for x in re.findall(r"([\d.]+)µs", line)]
        xs = [float(x) for x in re.findall(r"([\d.]+)x\b", line)]
        if len(us) not in (2, 3) or not xs:
            continue
        for prefix, key in names.items():
            if line.startswith(prefix):
                out[key] = {"median": us[-2], "p90": us[-1], "ratio": xs[0], "min": us[0] if len(us) == 3 else None}
                break
    if "baseline" not in out:
        R.say("- skipped: could not parse the container benchmark's output:\n" + p.stdout[-800:])
        return None
    return out


def build_phases():
    """Builds scripts/bench/phases.rs against this tree's cvtest (release) in a scratch crate."""
    if not os.path.exists(os.path.join(REPO, "src", "container.rs")):
        raise Skip("the container library is not in this tree")
    crate = os.path.join(WORK, "phases")
    os.makedirs(os.path.join(crate, "src"), exist_ok=True)
    shutil.copyfile(os.path.join(HERE, "phases.rs"), os.path.join(crate, "src", "main.rs"))
    if os.path.exists(os.path.join(REPO, "Cargo.lock")):
        shutil.copyfile(os.path.join(REPO, "Cargo.lock"), os.path.join(crate, "Cargo.lock"))
    with open(os.path.join(crate, "Cargo.toml"), "w") as f:
        f.write(
            "# Generated by scripts/bench/bench.py\n[package]\nname = \"cvtest-bench-phases\"\nversion = \"0.0.0\"\n"
            "edition = \"2021\"\npublish = false\n\n[dependencies]\n"
            f"cvtest = {{ path = {json.dumps(REPO)} }}\nlibc = \"0.2\"\nnix = {{ version = \"0.32\", features = [\"user\"] }}\n\n[workspace]\n"
        )
    R.note("building the phase breakdown (release)")
    # The repository's target dir, so the release build of cvtest's dependencies is shared.
    run(["cargo", "build", "--release", "-q"], cwd=crate, env=env_with({"CARGO_TARGET_DIR": TARGET}), timeout=1800)
    return os.path.join(TARGET, "release", "cvtest-bench-phases")


def where_time_goes(args):
    R.say("### Where a container's time goes")
    R.say()
    try:
        exe = build_phases()
    except Skip as e:
        R.say(f"- skipped: phase breakdown: {e}")
        R.say()
        exe = None
    if exe:
        programs = [("/bin/true", ["--veth"])]
        env = suite_env()
        manifest = generate("trivial", 1000)
        try:
            prebuild(manifest, None, env)
            bins = sorted(
                os.path.join(SUITES_TARGET, "debug", "deps", f)
                for f in os.listdir(os.path.join(SUITES_TARGET, "debug", "deps"))
                if re.fullmatch(r"b0-[0-9a-f]+", f)
            )
            if bins:
                newest = max(bins, key=os.path.getmtime)
                programs.append((f"a trivial test binary (`b0 --exact t00000`)", ["--", newest, "--exact", "t00000"]))
        except Skip as e:
            R.say(f"- the test-binary variant is skipped: {e}")
        for title, extra in programs:
            R.note(f"phases: {title}")
            try:
                p = run([exe, str(args.phase_iterations)] + extra, timeout=900)
            except Skip as e:
                R.say(f"- skipped: phases with {title}: {e}")
                continue
            lines = [l.split("\t") for l in p.stdout.strip().splitlines()[1:]]
            rows = [[c[0]] + [fmt_us(float(x)) if x else "" for x in c[1:6]] + [c[6] + "×", c[7] + "×"] for c in lines]
            R.say(f"Program: {title}; {args.phase_iterations} iterations, cases interleaved (order rotated every iteration):")
            R.say()
            R.table(["case", "create", "spawn", "wait", "destroy", "total", "× interleaved fork+exec", "× block fork+exec"], rows)
            R.data.setdefault("phases", {})[title] = lines
    kind, _, v1 = cgroup_layout()
    if kind not in ("v1", "hybrid"):
        R.say(f"- skipped: cgroup v1 migration cost: the host has cgroup {kind}")
        return
    src = os.path.join(HERE, "cgroup-migrate.c")
    exe = os.path.join(WORK, "cgroup-migrate")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        run([shutil.which("cc") or "gcc", "-O2", "-Wall", "-o", exe, src])
    with open("/proc/self/cgroup") as f:
        own = {line.split(":")[1]: line.rstrip("\n").split(":", 2)[2] for line in f}
    mnt = next(((m, r, o) for m, r, o in v1 if "pids" in o), None) or v1[0]
    path = own.get(",".join(mnt[2]))
    if path is None:
        R.say("- skipped: cgroup v1 migration cost: own cgroup not found")
        return
    rel = path.lstrip("/") if mnt[1] == "/" else os.path.relpath(path, mnt[1])
    d = os.path.join(mnt[0], rel, f"cvbench-migrate.{os.getpid()}")
    os.mkdir(d)
    R.note("cgroup v1 migration cost")
    try:
        p = run([exe, d, str(args.migrate_iterations), "20"], timeout=300)
    finally:
        for _ in range(100):
            try:
                os.rmdir(d)
                break
            except OSError:
                time.sleep(0.02)
    rows = []
    for line in p.stdout.strip().splitlines():
        name, med, p90, mx = line.split("\t")
        rows.append([name, fmt_us(float(med)), fmt_us(float(p90)), fmt_us(float(mx))])
    R.say(f"Moving a new child into a cgroup v1 hierarchy ({mnt[0]}), {args.migrate_iterations} times each, "
          "20 ms apart (as between tests), time of the write:")
    R.say()
    R.table(["how", "median", "p90", "max"], rows)
    R.data["migrate"] = rows


def hyperfine_crosscheck(args):
    """hyperfine -N on the simple peers: an independent check of spawn-timer's numbers."""
    if not shutil.which("hyperfine"):
        R.say("- skipped: hyperfine cross-check: hyperfine not installed")
        return
    cmds = ["/bin/true", "unshare --fork --pid --mount --uts --ipc --net true"]
    if shutil.which("bwrap"):
        cmds.append("bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc true")
    out = os.path.join(WORK, "hyperfine-peers.json")
    R.note("hyperfine cross-check")
    try:
        run(["hyperfine", "-N", "--warmup", "5", "--runs", str(max(20, args.iterations // 2)), "--export-json", out] + cmds, timeout=300)
    except Skip as e:
        R.say(f"- skipped: hyperfine cross-check: {e}")
        return
    with open(out) as f:
        results = json.load(f)["results"]
    base = results[0]["median"]
    R.say("Cross-check with `hyperfine -N` (not interleaved; one command after the other):")
    R.say()
    R.table(["command", "median", "× /bin/true"], [[r["command"], fmt_us(r["median"] * 1e6), ratio(r["median"], base)] for r in results])


# ---------------------------------------------------------------------------------------------
# cvtest runner discovery


class Runner:
    def __init__(self, name, argv, env=None):
        self.name, self.argv, self.env = name, argv, env


def cvtest_bin(args):
    """Builds cargo-cvtest (release) and returns its path, or raises Skip."""
    if args.cvtest_bin:
        return os.path.abspath(args.cvtest_bin)
    if not os.path.exists(os.path.join(REPO, "cargo-cvtest", "Cargo.toml")):
        raise Skip("cargo-cvtest is not in this tree yet (runner branch)")
    R.note("building cargo-cvtest (release)")
    run(["cargo", "build", "--release", "-p", "cargo-cvtest"], cwd=REPO, timeout=1800)
    exe = os.path.join(TARGET, "release", "cargo-cvtest")
    if not os.path.exists(exe):
        raise Skip(f"built, but {exe} is missing")
    return exe


def env_with(extra):
    env = dict(os.environ)
    env.update(extra)
    return env


def suite_env(cvtest_dir=None):
    extra = {"CARGO_TARGET_DIR": SUITES_TARGET, "CARGO_TERM_COLOR": "never", "NEXTEST_HIDE_PROGRESS_BAR": "1"}
    if cvtest_dir:
        extra["PATH"] = cvtest_dir + os.pathsep + os.environ.get("PATH", "")
    return env_with(extra)


def runners_for(manifest, package, cvtest, target_env, jobs=None):
    sel = ["--manifest-path", manifest] + (["-p", package] if package else [])
    j = ["-j", str(jobs)] if jobs else []
    tj = ["--test-threads", str(jobs)] if jobs else []
    out = [
        Runner("cargo test", ["cargo", "test", "--no-fail-fast"] + sel + ["--"] + tj, target_env),
        Runner("cargo nextest run", ["cargo", "nextest", "run", "--no-fail-fast"] + j + sel, target_env),
    ]
    if cvtest:
        out.append(Runner("cargo cvtest", ["cargo", "cvtest"] + j + sel, target_env))
    return out


def before_dir(args):
    """A directory whose `cargo-cvtest` is the --before-cvtest-bin build, for PATH."""
    d = os.path.join(WORK, "before-bin")
    os.makedirs(d, exist_ok=True)
    link = os.path.join(d, "cargo-cvtest")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(os.path.abspath(args.before_cvtest_bin), link)
    return d


def cvtest_before(args, manifest, package, target_env, jobs=None):
    """`cargo cvtest` with the --before-cvtest-bin build first on PATH (an A/B in the same run)."""
    sel = ["--manifest-path", manifest] + (["-p", package] if package else [])
    j = ["-j", str(jobs)] if jobs else []
    env = dict(target_env)
    env["PATH"] = before_dir(args) + os.pathsep + target_env.get("PATH", "")
    return Runner("cargo cvtest (before)", ["cargo", "cvtest"] + j + sel, env)


def cvtest_extra_jobs(manifest, package, target_env):
    """`cargo cvtest -j CPUs+1`: one more container than CPUs, to overlap a container's setup and
    teardown latency with the others' work."""
    sel = ["--manifest-path", manifest] + (["-p", package] if package else [])
    n = (os.cpu_count() or 1) + 1
    return Runner(f"cargo cvtest -j {n}", ["cargo", "cvtest", "-j", str(n)] + sel, target_env)


def time_cmd(argv, env, timeout):
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, env=env, cwd=OUTSIDE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, text=True)
    except subprocess.TimeoutExpired:
        return None, "timeout", ""
    return time.monotonic() - t0, p.returncode, p.stdout


def generate(kind, n):
    out = os.path.join(SUITES, f"{kind}-{n}")
    run([sys.executable, os.path.join(HERE, "gen_suite.py"), "--out", out, "--tests", str(n), "--kind", kind])
    return os.path.join(out, "Cargo.toml")


def prebuild(manifest, package, env):
    sel = ["--manifest-path", manifest] + (["-p", package] if package else [])
    R.note(f"building tests of {os.path.relpath(manifest, REPO)}")
    run(["cargo", "test", "--no-run", "-q"] + sel, env=env, cwd=OUTSIDE, timeout=1800)


def probe_cvtest(cvtest_exe, env):
    """Can `cargo cvtest` run tests here? Runs it on a 4-test suite; returns None or the reason."""
    manifest = generate("trivial", 4)
    prebuild(manifest, None, env)
    elapsed, rc, out = time_cmd(["cargo", "cvtest", "--manifest-path", manifest], env, 300)
    if rc != 0:
        return f"`cargo cvtest` on a 4-test suite exited {rc}: " + " / ".join(out.strip().splitlines()[-6:])
    return None


# ---------------------------------------------------------------------------------------------
# Part 2: suite wall time


def suites(args, cvtest_exe):
    R.say("## 2. Suite wall time (builds done beforehand)")
    R.say()
    env = suite_env(os.path.dirname(cvtest_exe) if cvtest_exe else None)
    repo_env = env_with({"CARGO_TERM_COLOR": "never", "NEXTEST_HIDE_PROGRESS_BAR": "1", "PATH": env["PATH"]})
    targets = []
    if os.path.exists(os.path.join(REPO, "examples", "Cargo.toml")):
        targets.append(("examples crate (cvtest-examples)", os.path.join(REPO, "Cargo.toml"), "cvtest-examples", repo_env))
    targets.append(("1,000 trivial tests, 4 binaries", generate("trivial", 1000), None, env))
    targets.append(("1,000 × 10 ms CPU-spin tests, 4 binaries", generate("spin10ms", 1000), None, env))
    rows = []
    data = {}
    for title, manifest, package, tenv in targets:
        try:
            prebuild(manifest, package, tenv)
        except Skip as e:
            rows.append([title, f"skipped: {e}", "", "", "", ""])
            continue
        runners = runners_for(manifest, package, cvtest_exe, tenv)
        if cvtest_exe:
            runners.append(cvtest_extra_jobs(manifest, package, tenv))
        if cvtest_exe and args.before_cvtest_bin:
            runners.append(cvtest_before(args, manifest, package, tenv))
        # Warm-up: builds anything a runner builds differently (and fills the page cache).
        for r in runners:
            R.note(f"warm-up: {r.name} on {title}")
            time_cmd(r.argv, r.env, args.suite_timeout)
        times = {r.name: [] for r in runners}
        codes = {r.name: set() for r in runners}
        for i in range(args.runs):
            # The order rotates every round, so that no runner always follows the same one (the
            # kernel tears the previous run's namespaces down asynchronously, into the next run).
            for r in rotated(runners, i):
                R.note(f"run {i + 1}/{args.runs}: {r.name} on {title}")
                t, rc, out = time_cmd(r.argv, r.env, args.suite_timeout)
                codes[r.name].add(rc)
                if t is not None:
                    times[r.name].append(t)
                with open(os.path.join(WORK, f"last-{re.sub('[^a-z]+', '-', r.name)}.log"), "w") as f:
                    f.write(out)
        med = {k: statistics.median(v) if v else None for k, v in times.items()}
        data[title] = {"median_s": med, "exit_codes": {k: sorted(map(str, v)) for k, v in codes.items()}}

        def cell(name):
            if name not in med:
                return "not available"
            s = fmt_s(med[name]) if med[name] else "timeout"
            bad = [c for c in codes[name] if c != 0]
            return s + (f" (exit {','.join(map(str, bad))})" if bad else "")

        extra = f"cargo cvtest -j {(os.cpu_count() or 1) + 1}"
        ct, nx, cv, cv1 = med.get("cargo test"), med.get("cargo nextest run"), med.get("cargo cvtest"), med.get(extra)
        rows.append([title, cell("cargo test"), cell("cargo nextest run"), cell("cargo cvtest"), ratio(cv, nx), ratio(cv, ct), cell(extra), ratio(cv1, nx)])
    extra = f"cargo cvtest -j {(os.cpu_count() or 1) + 1}"
    R.table(["suite", "cargo test", "cargo nextest run", "cargo cvtest", "cvtest ÷ nextest", "cvtest ÷ cargo test", extra, "(-j N+1) ÷ nextest"], rows)
    R.say(
        f"Median of {args.runs} run(s) each, runners interleaved (the order rotated every round), after one warm-up run each; default jobs "
        f"(= {os.cpu_count()} CPUs) everywhere. Target: cvtest ≤ 1.25× nextest on the 10 ms suite. "
        "The generated tests are plain `#[test]` functions (no `#[cv_test]`), so all three runners run the same "
        "binaries; cvtest still gives each test its own container with the default limits."
    )
    R.say()
    R.data["suites"] = data
    if args.before_cvtest_bin and cvtest_exe:
        R.say(f"Before/after in the same run: `cargo cvtest` built from `{args.before_label}` (before) and from this "
              "tree (after), interleaved with the others:")
        R.say()
        ab_rows = []
        for title, d in data.items():
            med = d["median_s"]
            b, a, nx = med.get("cargo cvtest (before)"), med.get("cargo cvtest"), med.get("cargo nextest run")
            ab_rows.append([title, fmt_s(b) if b else "–", fmt_s(a) if a else "–", ratio(a, b), ratio(b, nx), ratio(a, nx)])
        R.table(["suite", "before", "after", "after ÷ before", "before ÷ nextest", "after ÷ nextest"], ab_rows)


# ---------------------------------------------------------------------------------------------
# Part 3: scale


def peak_rss(argv, env, timeout):
    """Runs argv directly; returns (seconds, exit code, runner's own VmHWM in KiB, tree max RSS in KiB).

    VmHWM is polled from /proc/PID/status every 10 ms (it only grows, so the last value read is the
    peak up to the last 10 ms); the tree maximum is wait4's ru_maxrss, which also covers children
    (cargo when the runner calls it, the test processes).
    """
    t0 = time.monotonic()
    p = subprocess.Popen(argv, env=env, cwd=OUTSIDE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hwm = 0
    deadline = t0 + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        try:
            with open(f"/proc/{p.pid}/status") as f:
                m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
                if m:
                    hwm = max(hwm, int(m.group(1)))
        except OSError:
            pass
        if time.monotonic() > deadline:
            p.kill()
        time.sleep(0.01)
    p.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - t0, p.returncode, hwm, ru.ru_maxrss


def linear_fit(points):
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx
    a = my - b * mx
    worst = max(abs(y - (a + b * x)) / y for x, y in points)
    return a, b, worst


def rotated(items, i):
    """`items` rotated left by `i`: round i starts with the i-th (round-robin over the rounds)."""
    k = i % len(items) if items else 0
    return items[k:] + items[:k]


def timed_rounds(jobs, rounds, timeout):
    """Runs every (key, argv, env) of `jobs` once per round, interleaved; returns {key: (median s, exit codes)}."""
    times = {k: [] for k, _, _ in jobs}
    codes = {k: set() for k, _, _ in jobs}
    for i in range(rounds):
        for key, argv, env in rotated(jobs, i):
            R.note(f"round {i + 1}/{rounds}: {key}")
            t, rc, _ = time_cmd(argv, env, timeout)
            codes[key].add(rc)
            if t is not None:
                times[key].append(t)
    return {k: (statistics.median(v) if v else None, codes[k]) for k, v in times.items()}


def exit_note(codes):
    bad = sorted(str(c) for c in codes if c != 0)
    return f" (exit {','.join(bad)})" if bad else ""


def scale(args, cvtest_exe):
    R.say("## 3. Scale")
    R.say()
    env = suite_env(os.path.dirname(cvtest_exe) if cvtest_exe else None)
    manifest = generate("trivial", 1000)
    prebuild(manifest, None, env)
    data = {"throughput": {}, "rss": {}, "growth": {}}
    names = ["cargo nextest run"] + (["cargo cvtest"] if cvtest_exe else [])

    # Tests (containers) per second at -j 1, 2, 4.
    jobs = []
    before = bool(cvtest_exe and args.before_cvtest_bin)
    for j in (1, 2, 4):
        for r in runners_for(manifest, None, cvtest_exe, env, jobs=j)[1:]:
            jobs.append((f"{r.name} -j{j}", r.argv, r.env))
        if before:
            r = cvtest_before(args, manifest, None, env, jobs=j)
            jobs.append((f"{r.name} -j{j}", r.argv, r.env))
    res = timed_rounds(jobs, args.scale_runs, args.suite_timeout)
    rows = []
    for j in (1, 2, 4):
        row = [f"-j {j}"]
        for name in names:
            t, codes = res[f"{name} -j{j}"]
            data["throughput"][f"{name} -j{j}"] = {"s": t, "exit": sorted(map(str, codes))}
            row.append(f"{1000 / t:.0f}/s ({fmt_s(t)}){exit_note(codes)}" if t else "timeout")
        if not cvtest_exe:
            row.append("not available")
        rows.append(row)
    R.say(f"Tests per second on the 1,000-trivial-test suite (each test one process; with cvtest, one container); "
          f"median of {args.scale_runs} interleaved run(s):")
    R.say()
    R.table(["jobs", "cargo nextest run", "cargo cvtest"], rows)
    if before:
        R.table(["jobs", f"cargo cvtest (before: {args.before_label})", "cargo cvtest (after)", "speed-up (before time ÷ after time)"],
                [[f"-j {j}"] + [f"{1000 / res[k][0]:.0f}/s" if res[k][0] else "timeout" for k in (f"cargo cvtest (before) -j{j}", f"cargo cvtest -j{j}")]
                 + [ratio(res[f"cargo cvtest (before) -j{j}"][0], res[f"cargo cvtest -j{j}"][0])] for j in (1, 2, 4)])

    # Peak RSS of the runner process.
    if cvtest_exe:
        rss_rows = []
        for n in args.sizes[-2:]:
            m = generate("trivial", n)
            prebuild(m, None, env)
            R.note(f"peak RSS of cargo-cvtest on {n} tests")
            t, rc, hwm, tree = peak_rss([cvtest_exe, "cvtest", "--manifest-path", m], env, args.suite_timeout)
            data["rss"][n] = {"vmhwm_kib": hwm, "tree_maxrss_kib": tree, "rc": rc}
            ok = "yes" if hwm and hwm < 50 * 1024 else "NO"
            rss_rows.append([f"{n} trivial tests", f"{hwm / 1024:.1f} MiB", f"{tree / 1024:.1f} MiB", ok + ("" if rc == 0 else f" (exit {rc})")])
        R.say("Peak RSS of the runner (target < 50 MB): its own VmHWM (polled every 10 ms), and wait4's maximum "
              "over the runner and everything it waited for (cargo, test processes):")
        R.say()
        R.table(["suite", "runner VmHWM", "max RSS incl. children", "< 50 MB"], rss_rows)
    else:
        R.say("- skipped: runner peak RSS: cargo cvtest not available")
        R.say()

    # Growth from 100 to 10,000 tests.
    jobs = []
    for n in args.sizes:
        m = generate("trivial", n)
        prebuild(m, None, env)
        for r in runners_for(m, None, cvtest_exe, env)[1:]:
            jobs.append((f"{r.name} {n}", r.argv, r.env))
    res = timed_rounds(jobs, args.scale_runs, args.suite_timeout)
    grow_rows = []
    pts = {n: [] for n in names}
    for n in args.sizes:
        row = [str(n)]
        for name in names:
            t, codes = res[f"{name} {n}"]
            data["growth"][f"{name} {n}"] = {"s": t, "exit": sorted(map(str, codes))}
            if t:
                pts[name].append((n, t))
            row.append(f"{fmt_s(t)} = {t / n * 1000:.2f} ms/test{exit_note(codes)}" if t else "timeout")
        grow_rows.append(row)
    R.say(f"Wall time and cost per test from {args.sizes[0]:,} to {args.sizes[-1]:,} trivial tests (4 binaries each, default jobs); median of "
          f"{args.scale_runs} interleaved run(s):")
    R.say()
    R.table(["tests"] + names, grow_rows)
    for name in names:
        if len(pts[name]) >= 3:
            a, b, worst = linear_fit(pts[name])
            R.say(f"- {name}: T ≈ {a:.2f} s + {b * 1000:.2f} ms × tests (least squares; worst point off the line by {worst * 100:.0f}%)")
    R.say()
    R.data["scale"] = data


# ---------------------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description="cvtest benchmarks (see docs/BENCHMARKS.md)")
    p.add_argument("--quick", action="store_true", help="a few minutes in all: fewer iterations and runs")
    p.add_argument("--only", default="peers,suites,scale", help="comma-separated parts: peers,suites,scale")
    p.add_argument("--cvtest-bin", help="use this cargo-cvtest binary instead of building it")
    p.add_argument("--no-cvtest", action="store_true", help="measure only the peers and the other runners")
    p.add_argument("--before-cvtest-bin", help="a cargo-cvtest built from an older commit: timed beside this tree's (A/B)")
    p.add_argument("--before-label", default="an older build", help="what --before-cvtest-bin was built from")
    p.add_argument("--out", help="also write the Markdown report here")
    args = p.parse_args()
    if args.quick:
        args.iterations, args.cv_iterations, args.runs, args.peer_budget = 60, 60, 1, 60
        args.scale_runs = 1
        args.phase_iterations, args.migrate_iterations = 40, 15
        args.sizes = [100, 1000, 10000]
    else:
        args.iterations, args.cv_iterations, args.runs, args.peer_budget = 300, 300, 5, 240
        args.scale_runs = 3
        args.phase_iterations, args.migrate_iterations = 150, 40
        args.sizes = [100, 1000, 3000, 10000]
    args.suite_timeout = 600
    parts = set(args.only.split(","))
    bad = parts - {"peers", "suites", "scale"}
    if bad:
        p.error(f"--only: unknown part(s) {', '.join(sorted(bad))}; accepted: peers, suites, scale")
    os.makedirs(WORK, exist_ok=True)

    info = machine_info()
    started = time.monotonic()
    R.say(f"# cvtest benchmark, {info['date']} ({'quick' if args.quick else 'full'} mode)")
    R.say()
    R.table(["machine", ""], [[k, v] for k, v in info.items()])
    R.data["machine"] = info
    if os.geteuid() != 0:
        R.say("WARNING: not root: the namespace peers and cvtest will be skipped or fail.")

    cvtest_exe = None
    if "suites" in parts or "scale" in parts:
        if args.no_cvtest:
            R.say("- cargo cvtest: left out (--no-cvtest)")
        else:
            try:
                cvtest_exe = cvtest_bin(args)
                reason = probe_cvtest(cvtest_exe, suite_env(os.path.dirname(cvtest_exe)))
                if reason:
                    R.say(f"- skipped: cargo cvtest cannot run tests here yet: {reason}")
                    cvtest_exe = None
            except Skip as e:
                R.say(f"- skipped: cargo cvtest: {e}")
        R.say()

    for name, fn in (("peers", lambda: (peers(args), where_time_goes(args), hyperfine_crosscheck(args) if not args.quick else None)),
                     ("suites", lambda: suites(args, cvtest_exe)),
                     ("scale", lambda: scale(args, cvtest_exe))):
        if name not in parts:
            continue
        try:
            fn()
        except Skip as e:
            R.say(f"- skipped: {name}: {e}")
            R.say()

    R.say(f"Total benchmark time: {(time.monotonic() - started) / 60:.1f} min; load average at the end: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    md = os.path.join(WORK, f"results-{stamp}.md")
    for path in [md] + ([args.out] if args.out else []):
        with open(path, "w") as f:
            f.write("\n".join(R.lines) + "\n")
    with open(os.path.join(WORK, f"results-{stamp}.json"), "w") as f:
        json.dump(R.data, f, indent=1, default=str)
    print(f"\nresults: {md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
