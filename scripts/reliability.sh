#!/usr/bin/env bash
# The reliability suite (issue 5): the real `cargo cvtest` on tests/reliability (tests that panic,
# OOM, fork-bomb, daemonize, ignore SIGTERM, close or flood stdout, hang; 500 networked and 2,000
# plain load tests), checking outcomes, leftovers, the host's network, and bad-input errors.
# Results: docs/RELIABILITY.md. Run as root from anywhere.
#
#   scripts/reliability.sh            native run, then the cgroup v2 VM legs
#   scripts/reliability.sh --native   only the native run (also part of `cargo test --workspace`)
#   scripts/reliability.sh --vm       only the VM legs (scripts/test.sh runs these)
#
# VM legs (../shared/tools/run-in-v2-vm.sh, pure cgroup v2, kernel 6.1):
#   1. every reliability trial except the load ones, root cgroup;
#   1b. the load trials at a fifth of their size (emulation makes the whole take minutes);
#   2. below the root without the pids controller: a missing controller is a clean setup error;
#   3. with net.ipv4.ip_forward=1 (as on hosts that run Docker): subnet isolation.
# Trials named *finding_* check promises the code does not keep yet; they fail until fixed (none
# is open now).
set -uo pipefail
cd "$(dirname "$0")/.."
VM=${CV2VM:-../shared/tools/run-in-v2-vm.sh}
mode=${1:-all}
failed=()

step() { printf '\n=== reliability: %s\n' "$*"; }
leg() { # name, command...
  local name=$1; shift
  local t0=$SECONDS rc=0
  "$@" || rc=$?
  # A VM leg that hangs ends as the VM's timeout (124). On 2026-12-05 the load leg, which takes
  # 80 s, stood for its whole 1500 s once (QEMU busy on both vCPUs, no test line), and passed in
  # 23 s when run again: the VM's rare hang (scripts/test.sh). Such a leg runs once more.
  if [ "$rc" = 124 ]; then
    echo "--- $name: HUNG ($((SECONDS - t0)) s): once more"
    t0=$SECONDS rc=0
    "$@" || rc=$?
  fi
  if [ "$rc" = 0 ]; then echo "--- $name: ok ($((SECONDS - t0)) s)"; else echo "--- $name: FAILED ($((SECONDS - t0)) s)"; failed+=("$name"); fi
}

cli_bin=$(cargo test -p cargo-cvtest --test cli --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*\/cli-[^"]*\)".*/\1/p' | tail -n1)
[ -x "$cli_bin" ] || { echo "cannot build the cli test binary" >&2; exit 1; }

if [ "$mode" = all ] || [ "$mode" = --native ]; then
  step "native ($(stat -fc %T /sys/fs/cgroup | sed 's/cgroup2fs/cgroup v2/; s/tmpfs/cgroup v1 or hybrid/'))"
  leg native "$cli_bin" reliability::
fi

if [ "$mode" = all ] || [ "$mode" = --vm ]; then
  if [ ! -x "$VM" ]; then
    echo "warning: $VM not found: the cgroup v2 legs did not run" >&2
  else
    # The fixture must be built (natively) before the VM legs: the VM's writes are discarded.
    "$cli_bin" reliability::faults::panic >/dev/null 2>&1 || true
    step "cgroup v2 VM, root cgroup (all but load)"
    leg vm-v2 env CV2VM_TIMEOUT=1500 CV2VM_MEM=4096 "$VM" "$cli_bin" reliability:: --skip reliability::load
    step "cgroup v2 VM, root cgroup, load at a fifth (100 networked, 400 plain)"
    leg vm-v2-load env CV2VM_TIMEOUT=600 CV2VM_MEM=4096 RELIABILITY_LOAD_PARTS=5 "$VM" "$cli_bin" reliability::load
    step "cgroup v2 VM, below the root without the pids controller"
    leg vm-v2-no-pids env CV2VM_TIMEOUT=600 CV2VM_CGROUP=test.slice CV2VM_CONTROLLERS="+memory +cpu" \
      "$VM" "$cli_bin" --exact reliability::setup::controller_missing
    step "cgroup v2 VM with net.ipv4.ip_forward=1"
    leg vm-v2-forwarding env CV2VM_TIMEOUT=600 "$VM" /bin/sh -c \
      "echo 1 > /proc/sys/net/ipv4/ip_forward && exec '$cli_bin' --exact reliability::safety::subnet_isolation"
  fi
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "reliability: failed legs: ${failed[*]}" >&2
  exit 1
fi
echo "reliability: all legs passed"
