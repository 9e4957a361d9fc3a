#!/usr/bin/env bash
# Fails if anything cvtest makes is still on this machine: a cvtest.* cgroup below this shell's
# own cgroups, a veth whose alias says cvtest, or a process running from this repo's target dir.
set -u
cd "$(dirname "$0")/.."
bad=0
while IFS=: read -r _ ctrls path; do
  if [ -z "$ctrls" ]; then mnt=$(awk '$3=="cgroup2"{print $2; exit}' /proc/mounts)
  else mnt=$(awk -v c="$ctrls" '$3=="cgroup" && ("," $4 ",") ~ ("," c ",") {print $2; exit}' /proc/mounts); fi
  [ -n "$mnt" ] && [ -d "$mnt$path" ] || continue
  found=$(find "$mnt$path" -mindepth 1 -maxdepth 2 -type d -name 'cvtest.*' 2>/dev/null)
  [ -n "$found" ] && { echo "leaked cgroup(s):"; echo "$found"; bad=1; }
done < /proc/self/cgroup
links=$(ip -o link show type veth 2>/dev/null | grep -i 'alias cvtest' || true)
[ -n "$links" ] && { echo "leaked veth(s):"; echo "$links"; bad=1; }
for p in /proc/[0-9]*; do
  exe=$(readlink "$p/exe" 2>/dev/null) || continue
  case "$exe" in "$PWD"/target/*) echo "leaked process ${p#/proc/}: $exe"; bad=1;; esac
done
[ $bad = 0 ] && echo "no leaks: no cvtest cgroup, veth or process left"
exit $bad
