#!/bin/bash
# Inner half of the peers' environment; bench.py runs it as
#   unshare --mount --cgroup --propagation private -- bash peer-env.sh BUNDLE -- CMD...
# after moving the process into a bench cgroup (below its own cgroup) in every v1 hierarchy.
#
# In this private mount namespace (nothing here is visible to the host):
# - every cgroup v1 hierarchy is mounted again, so that it is rooted at the bench cgroup (the root
#   of the new cgroup namespace): crun and runc place container cgroups by absolute path from the
#   mount root, and would otherwise create them at the machine's root cgroup;
# - the hybrid layout's cgroup2 mount (/sys/fs/cgroup/unified) is unmounted, since crun refuses
#   hybrid mode when that hierarchy has any controller (here: hugetlb); crun and runc then run in
#   plain v1 mode;
# - the host's / is bind-mounted (recursively) onto BUNDLE/rootfs, the OCI bundle's root: pivot_root
#   needs a mount point of its own, which / itself is not.
# Then CMD runs (spawn-timer with all the peer cases).
set -euo pipefail

bundle=$1
shift
[[ ${1-} == -- ]] && shift

# Collect first, act after: mounting while reading mountinfo would feed our own mounts back in.
mounts=()
while IFS= read -r line; do
    read -r _ _ _ _ mnt _ <<<"${line%% - *}"
    read -r fstype _ super <<<"${line#* - }"
    mounts+=("$fstype $mnt $super")
done </proc/self/mountinfo

for m in "${mounts[@]}"; do
    read -r fstype mnt super <<<"$m"
    case $fstype in
        cgroup)
            opts=$(tr ',' '\n' <<<"$super" | grep -vx -e rw -e ro | paste -sd, -)
            [[ $opts == name=* ]] && opts="none,$opts"
            # The kernel refuses the same superblock on top of itself: unmount, then mount again.
            umount -l "$mnt"
            mount -t cgroup -o "$opts" cgroup "$mnt"
            ;;
        cgroup2)
            # Hybrid: the v1 hierarchies are the real ones; hide the v2 one from the runtimes.
            if [[ $mnt != /sys/fs/cgroup ]]; then
                umount -l "$mnt"
            fi
            ;;
    esac
done

if [[ -d $bundle ]]; then
    mkdir -p "$bundle/rootfs"
    mount --rbind / "$bundle/rootfs"
fi
exec "$@"
