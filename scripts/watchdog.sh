#!/usr/bin/env bash
# watchdog.sh SECONDS COMMAND [ARGS...]: runs COMMAND; if it has not ended after SECONDS, prints
# what every process is doing (state, kernel wait channel and stack, every thread's user stack
# when gdb is there), the cgroup tree and its processes, the links and the kernel's log, then
# kills COMMAND's process group and exits 124. Otherwise exits with COMMAND's code.
#
# For the CI's VM legs: a hang there used to end as the VM's own timeout with nothing but
# "running N tests" to read. Run inside the VM (it dumps the guest's processes).
#
# With WATCHDOG_OWN_CGROUP=1 (only in a throw-away VM: it makes a cgroup below the root) and
# cgroup v2, the watchdog leaves COMMAND's cgroup before COMMAND starts, into a cgroup of its
# own, cvtest-watchdog: some tests check which processes share their cgroup, and a cgroup that
# holds another process cannot hand controllers down.
set -uo pipefail
secs=$1
shift
own=$(sed -n 's/^0:://p' /proc/self/cgroup 2>/dev/null)
if [ "${WATCHDOG_OWN_CGROUP:-}" = 1 ] && [ -n "$own" ] && [ -w /sys/fs/cgroup/cgroup.procs ] && mkdir -p /sys/fs/cgroup/cvtest-watchdog 2>/dev/null &&
   echo $$ > /sys/fs/cgroup/cvtest-watchdog/cgroup.procs 2>/dev/null; then
  back="/sys/fs/cgroup${own%/}/cgroup.procs"
  # COMMAND goes back where the watchdog was, then runs.
  setsid sh -c 'echo $$ > "$0" && exec "$@"' "$back" "$@" &
else
  setsid "$@" &
fi
pid=$!
deadline=$((SECONDS + secs))
# A pipe nobody writes: `read -t 1` on it is a one-second sleep without a process per second.
exec 9<> <(:)
while kill -0 "$pid" 2>/dev/null; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    {
      printf '\n=== watchdog: %s still running after %ss; what every process is doing\n' "$1" "$secs"
      ps -eLo pid,tid,ppid,pgid,stat,wchan:32,etimes,comm,args --sort=pid 2>&1 | awk '$1 != 2 && $3 != 2'
      for p in /proc/[0-9]*; do
        n=${p#/proc/}
        [ "$n" = "$$" ] && continue
        # Kernel threads (no command line) are left out.
        [ -s "$p/cmdline" ] || [ -n "$(head -c1 "$p/cmdline" 2>/dev/null)" ] || continue
        [ -r "$p/stack" ] || continue
        printf -- '--- pid %s (%s) cgroup %s\n' "$n" "$(cat "$p/comm" 2>/dev/null)" "$(tr '\n' ' ' <"$p/cgroup" 2>/dev/null)"
        for t in "$p"/task/*; do
          printf '  tid %s %s\n' "${t##*/}" "$(cat "$t/wchan" 2>/dev/null)"
          sed 's/^/    /' "$t/stack" 2>/dev/null
        done
      done
      printf -- '--- cgroups\n'
      find /sys/fs/cgroup -name cgroup.procs 2>/dev/null | while read -r f; do
        procs=$(tr '\n' ' ' <"$f" 2>/dev/null)
        [ -n "$procs" ] && printf '%s: %s\n' "${f%/cgroup.procs}" "$procs"
      done
      printf -- '--- links\n'
      ip -br link 2>&1
      printf -- '--- the kernel log, last 60 lines\n'
      dmesg 2>&1 | tail -n 60
      if command -v gdb >/dev/null; then
        exe=$(readlink "/proc/$pid/exe" 2>/dev/null)
        # COMMAND's process group, and every process running its executable (in containers:
        # other sessions and PID namespaces), at most 16.
        for p in $({ pgrep -g "$pid"; for q in /proc/[0-9]*; do
                     [ -n "$exe" ] && [ "$(readlink "$q/exe" 2>/dev/null)" = "$exe" ] && echo "${q#/proc/}"
                   done; } 2>/dev/null | sort -nu | head -16); do
          printf -- '--- user stacks of %s (%s)\n' "$p" "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-200)"
          timeout 60 gdb -q -batch -p "$p" -ex 'thread apply all bt 30' 2>&1 | grep -vE '^\[|^Using host|^warning' | head -300
        done
      fi
      printf '=== watchdog: end of the dump; killing %s\n' "$1"
    } >&2
    kill -KILL -- "-$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    exit 124
  fi
  read -r -t 1 -u 9 _
done
wait "$pid"
