#!/usr/bin/env bash
# The project's test command (README "Set-up", second command). Run as root from the repo root.
#   1. format and lint
#   2. every test natively (cgroup v1 or v2, whatever this machine has)
#   3. the privileged tests again inside a throw-away VM with a pure cgroup v2 hierarchy,
#      once in the root cgroup and once below it (no-internal-processes rule)
#      (and the reliability suite's v2 legs: scripts/reliability.sh --vm)
#   4. the privileged tests as an unprivileged user: each must report itself ignored, with why
#   5. a short fuzzing pass over the value parsers (scripts/fuzz.sh)
#   6. a leak check: nothing of ours (cgroup, veth, netns, process) is left
set -euo pipefail
cd "$(dirname "$0")/.."
VM=$(realpath -m "${CV2VM:-../shared/tools/run-in-v2-vm.sh}")

step() { printf '\n=== %s\n' "$*"; }

step "fmt + clippy"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings

step "tests (native: $(stat -fc %T /sys/fs/cgroup | sed 's/cgroup2fs/cgroup v2/; s/tmpfs/cgroup v1 or hybrid/'))"
cargo test --workspace

priv_bin=$(cargo test --test privileged --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*privileged[^"]*\)".*/\1/p' | tail -n1)

if [ -x "$VM" ]; then
  step "privileged tests in a pure cgroup v2 VM (root cgroup)"
  CV2VM_TIMEOUT=1800 "$VM" "$priv_bin" --test-threads=2
  step "privileged tests in a pure cgroup v2 VM (below the root: test.slice)"
  CV2VM_TIMEOUT=1800 CV2VM_CGROUP=test.slice "$VM" "$priv_bin" --test-threads=2
  step "cargo cvtest's tests in a pure cgroup v2 VM (root cgroup)"
  cli_bin=$(cargo test -p cargo-cvtest --test cli --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*\/cli-[^"]*\)".*/\1/p' | tail -n1)
  # (the reliability trials have their own VM legs below, without the slow load runs)
  (cd cargo-cvtest && CV2VM_TIMEOUT=1800 "$VM" "$cli_bin" --test-threads=1 --skip reliability::)
  step "reliability suite in pure cgroup v2 VMs (scripts/reliability.sh)"
  CV2VM="$VM" ./scripts/reliability.sh --vm
else
  echo "warning: $VM not found: the cgroup v2 leg did not run" >&2
fi

step "privileged tests without privileges (each must be ignored with a reason)"
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$priv_bin" 2>&1) || { echo "$out"; exit 1; }
echo "$out" | tail -n 3
if echo "$out" | grep -qE '^test .* \.\.\. ok$'; then echo "a privileged test passed without privileges" >&2; exit 1; fi

step "fuzzing the value parsers (${FUZZ_SECONDS:-10} s per target)"
./scripts/fuzz.sh "${FUZZ_SECONDS:-10}"

step "leak check"
./scripts/leak-check.sh
