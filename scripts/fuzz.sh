#!/usr/bin/env bash
# Fuzzes cvtest-spec, the one value parser (limits, CIDRs, durations, settings JSON), with the
# cargo-fuzz targets in fuzz/: each target runs for SECONDS_PER_TARGET (default 20).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      # all targets when none is named
#
# Installs cargo-fuzz if it is missing. cargo fuzz needs a nightly compiler: `cargo +nightly` when
# rustup has a nightly toolchain, otherwise the stable one with RUSTC_BOOTSTRAP=1 (what a machine
# with a single stable toolchain, such as CI's, uses). FUZZ_TOOLCHAIN=nightly|stable forces one.
# FUZZ_SANITIZER=none|address picks the sanitizer: none by default, since cvtest-spec has no
# unsafe code for AddressSanitizer to watch and runs about 2-3 times as many inputs without it
# (overflow checks and debug assertions stay on either way). Both work on stable and nightly.
#
# Starts from the checked-in seeds (fuzz/seeds/<target>) plus whatever earlier runs left in
# fuzz/corpus/<target> (not checked in). Exits 1 if any target crashed or broke a property,
# after printing the reproducer's path and the command that replays it; 2 on a usage or build
# error. Logs: fuzz/artifacts/<target>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# "== [+12s] what": progress lines with the time since the start, so CI logs show where time goes.
step() { echo "== [+${SECONDS}s] $*"; }
usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
secs=${1:-20}
[[ $secs =~ ^[1-9][0-9]*$ ]] || usage
shift $(($# > 0 ? 1 : 0))

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  step "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version 0.13.2
fi

toolchain=${FUZZ_TOOLCHAIN:-}
if [ -z "$toolchain" ]; then
  if cargo +nightly --version >/dev/null 2>&1; then toolchain=nightly; else toolchain=stable; fi
fi
case $toolchain in
  nightly) fuzz=(cargo +nightly fuzz); rustc_version=$(rustc +nightly --version) ;;
  # The stable compiler accepts the nightly-only flags cargo fuzz passes (-Zsanitizer, the
  # sanitizer-coverage options) when told it is bootstrapping itself.
  stable) export RUSTC_BOOTSTRAP=1; fuzz=(cargo fuzz); rustc_version=$(rustc --version) ;;
  *) echo "FUZZ_TOOLCHAIN must be nightly or stable, not $toolchain" >&2; exit 2 ;;
esac
sanitizer=${FUZZ_SANITIZER:-none}
# The same flags for build and run, so that `run` does not rebuild.
flags=(--fuzz-dir "$root/fuzz" --sanitizer "$sanitizer")

if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <("${fuzz[@]}" list --fuzz-dir "$root/fuzz"); fi
step "building ${#targets[@]} fuzz targets with $rustc_version (toolchain $toolchain," \
  "RUSTC_BOOTSTRAP=${RUSTC_BOOTSTRAP:-unset}, sanitizer $sanitizer)"
if [ $# -gt 0 ]; then
  for t in "${targets[@]}"; do "${fuzz[@]}" build "${flags[@]}" "$t" || { echo "fuzz: cannot build $t" >&2; exit 2; }; done
else
  "${fuzz[@]}" build "${flags[@]}" || { echo "fuzz: cannot build the fuzz targets" >&2; exit 2; }
fi

failed=()
summary=()
for t in "${targets[@]}"; do
  corpus=$root/fuzz/corpus/$t
  artifacts=$root/fuzz/artifacts/$t
  log=$root/fuzz/artifacts/$t.log
  mkdir -p "$corpus" "$artifacts"
  before=$(find "$artifacts" -type f | sort)
  step "fuzzing $t for ${secs}s"
  status=0
  # New inputs go to the first directory (the scratch corpus); the seeds are only read.
  "${fuzz[@]}" run "${flags[@]}" "$t" "$corpus" "$root/fuzz/seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -dict="$root/fuzz/spec.dict" \
    -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -n1 || true)
  summary+=("$(printf '%-14s %10s runs %8s exec/s   %s' "$t" "${runs:-?}" "${speed:-?}" "${cov:-}")")
  if [ $status -ne 0 ]; then
    failed+=("$t")
    echo "!! $t FAILED (exit $status); log: $log"
    # The panic message and where, without libFuzzer's progress lines.
    grep -vE '^#[0-9]+|^INFO:|^\s*$' "$log" | grep -m 12 -A 6 -E "panicked at|ERROR: " || tail -n 30 "$log"
    new=$(comm -13 <(echo "$before") <(find "$artifacts" -type f | sort) | grep -v '^$' || true)
    for f in $new; do
      echo "!! reproducer: $f"
      echo "!!   input bytes: $(head -c 300 "$f" | od -An -c | tr -s ' \n' ' ')"
      echo "!!   replay: ${fuzz[*]} run ${flags[*]} $t $f"
    done
  fi
done

step "fuzz summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crash and no broken property"
