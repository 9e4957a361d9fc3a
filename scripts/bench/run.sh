#!/bin/bash
# One command for all of cvtest's benchmarks; see docs/BENCHMARKS.md.
#
#   scripts/bench/run.sh [--quick] [--only peers,suites,scale] [--no-cvtest] [--cvtest-bin PATH] [--out FILE]
#
# Installs the peers it compares against from Debian when they are missing (bubblewrap, crun,
# runc, hyperfine, time; `apt-get update` at most once), then runs bench.py, which measures
# everything in one run and prints Markdown tables of medians and ratios. A peer that cannot be
# installed is skipped with the reason. Needs root (namespaces, cgroups). Full mode takes about
# 10-20 minutes on a 2-core machine; --quick a few minutes.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

need=()
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v crun >/dev/null || need+=(crun)
command -v runc >/dev/null || need+=(runc)
command -v hyperfine >/dev/null || need+=(hyperfine)
[[ -x /usr/bin/time ]] || need+=(time)
if ((${#need[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "installing: ${need[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null 2>&1 || echo "apt-get update failed; trying the install anyway" >&2
        for pkg in "${need[@]}"; do
            # One at a time, so that one missing package does not stop the others.
            apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null 2>&1 ||
                echo "could not install $pkg: the benchmark skips it" >&2
        done
    else
        echo "missing (not installed: not root or no apt-get): ${need[*]}; the benchmark skips them" >&2
    fi
fi

command -v python3 >/dev/null || { echo "run.sh: python3 is required" >&2; exit 1; }
command -v cargo-nextest >/dev/null || echo "cargo-nextest is not installed: its columns will show failures" >&2
exec python3 "$here/bench.py" "$@"
