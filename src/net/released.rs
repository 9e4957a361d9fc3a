//! Veths this process released: their network namespace went, and the kernel deletes the pair
//! asynchronously (tens of ms; up to a second under load). A route of one is ours and going:
//! the route check says so ([`super::NetError::RouteClash`]'s `ours`), and `Container::create`
//! waits it out instead of refusing a new container on the same subnet; another process's
//! `create` meets a cvtest veth (its alias says so) and waits it out too. So `destroy` does not
//! wait for its own veth: a process that is about to exit calls [`wait_released`] once.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::Veth;

/// Host ends (index and name) of veths this process released, until the kernel removed them.
fn released() -> MutexGuard<'static, Vec<(u32, String)>> {
    static RELEASED: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());
    RELEASED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Leaves `veth` to the kernel (it goes with its network namespace) and remembers it until it
/// is gone.
pub(crate) fn release(veth: Veth) {
    released().push((veth.host_index(), veth.host_name().to_owned()));
    veth.release();
}

/// Whether the host link with this index is a veth this process released.
pub(crate) fn is_released(ifindex: u32) -> bool {
    released().iter().any(|(index, _)| *index == ifindex)
}

/// Forgets the released veths the kernel has removed. A link being unregistered leaves the
/// name index before its sysfs entry goes: until that is gone too it still counts (another
/// process listing `/sys/class/net` would still see it, alias and all).
///
/// Names are looked up over netlink: `if_nametoindex` of a name that is gone would make the
/// kernel run the module loader twice (see [`super::VethName::next`]). Without a netlink
/// socket nothing is forgotten this time.
pub(crate) fn forget_removed() {
    let mut released = released();
    if released.is_empty() {
        return;
    }
    let Ok(mut netlink) = super::Netlink::open() else { return };
    released.retain(|(index, name)| match netlink.link_index(name) {
        Ok(Some(now)) => now == *index,
        Ok(None) => std::path::Path::new("/sys/class/net").join(name).exists(),
        Err(_) => true,
    });
}

/// Waits until the kernel has removed every veth this process released, or `timeout` passed.
/// Returns the host ends still present then (none, normally).
pub fn wait_released(timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    loop {
        forget_removed();
        let left: Vec<String> = released().iter().map(|(_, name)| name.clone()).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
