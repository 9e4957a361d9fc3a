#!/usr/bin/env bash
# Runs inside ../shared/tools/run-in-v2-vm.sh with CV2VM_INIT=systemd (as root, in cv2vm.service,
# pure cgroup v2, systemd as PID 1 with the user manager of the test user):
#   vm-systemd.sh user CMD...         CMD as the VM's test user (cvuser, uid 1000), with its user bus
#                                     and no logind session: cvtest gets its cgroup as a scope with
#                                     Delegate=yes from the user's systemd manager
#   vm-systemd.sh root-shared CMD...  CMD as root in cv2vm.service, a cgroup it shares with this
#                                     shell: cvtest gets a delegated scope from the system manager
#   vm-systemd.sh sudo DIR CMD...     CMD as root as `sudo -E` leaves it (SUDO_UID/SUDO_GID/SUDO_USER
#                                     of the test user, its toolchain variables kept): afterwards no
#                                     file under DIR (the target dir) may belong to root
# then checks that nothing is left anywhere in the VM: no cvtest cgroup, no cvtest-*.scope unit
# of either manager, no process from the target dir. Exits non-zero if CMD or the check fails.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=$1
shift
uid=${CV2VM_UID:-1000}
user=${CV2VM_USER:-cvuser}
cargo_home=${CARGO_HOME:-/root/.cargo}
user_env=(env "HOME=/home/$user" "XDG_RUNTIME_DIR=/run/user/$uid"
  "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$uid/bus"
  "CARGO_HOME=$cargo_home" "RUSTUP_HOME=${RUSTUP_HOME:-/root/.rustup}" "PATH=$cargo_home/bin:$PATH")
toolchain_for_user() {
  # The toolchain is under /root, 0700 on the host; the VM's overlay discards this change.
  chmod o+x /root
  # cargo takes its package-cache lock in CARGO_HOME (all else there it only reads).
  chmod o+w "$cargo_home" 2>/dev/null
  chmod o+rw "$cargo_home"/.package-cache* 2>/dev/null
}
case $mode in
  user)
    toolchain_for_user
    runuser -u "$user" -- "${user_env[@]}" "$@"
    rc=$?
    ;;
  root-shared)
    "$@"
    rc=$?
    ;;
  sudo)
    dir=$1
    shift
    toolchain_for_user
    # Under sudo the checkout is the user's (here it is root's, as on the host): the tests' root
    # is mapped to the user and writes in the workspace. The overlay discards this change.
    chown "$uid:$uid" "$PWD"
    env SUDO_UID="$uid" SUDO_GID="$uid" SUDO_USER="$user" HOME=/root \
      CARGO_HOME="$cargo_home" RUSTUP_HOME="${RUSTUP_HOME:-/root/.rustup}" "$@"
    rc=$?
    rootowned=$(find "$dir" -uid 0 2>/dev/null | head -n 20)
    if [ -n "$rootowned" ]; then
      echo "under sudo, files in $dir belong to root:"; echo "$rootowned"; [ "$rc" = 0 ] && rc=1
    else
      echo "under sudo, every file in $dir belongs to $user"
    fi
    ;;
  *)
    echo "vm-systemd.sh: unknown mode $mode (user, root-shared or sudo)" >&2
    exit 2
    ;;
esac

# systemd stops a scope when its last process is gone, asynchronously: give it a moment.
bad=0
for _ in $(seq 50); do
  units=$( (systemctl list-units --all --plain --no-legend 'cvtest-*'
    runuser -u "$user" -- "${user_env[@]}" systemctl --user list-units --all --plain --no-legend 'cvtest-*') 2>&1)
  cgroups=$(find /sys/fs/cgroup -mindepth 1 -type d \( -name 'cvtest.*' -o -name 'cvtest-*' \) 2>/dev/null)
  [ -z "$units$cgroups" ] && break
  sleep 0.2
done
[ -n "$units" ] && { echo "leaked unit(s):"; echo "$units"; bad=1; }
[ -n "$cgroups" ] && { echo "leaked cgroup(s):"; echo "$cgroups"; bad=1; }
for p in /proc/[0-9]*; do
  exe=$(readlink "$p/exe" 2>/dev/null) || continue
  case "$exe" in "$PWD"/target/* | */target/debug/* ) echo "leaked process ${p#/proc/}: $exe"; bad=1 ;; esac
done
links=$(ip -o link show type veth 2>/dev/null | grep -i 'alias cvtest' || true)
[ -n "$links" ] && { echo "leaked veth(s):"; echo "$links"; bad=1; }
[ $bad = 0 ] && echo "no leaks: no cvtest cgroup, scope unit, veth or process left in the VM"
[ "$rc" = 0 ] && exit $bad
exit "$rc"
