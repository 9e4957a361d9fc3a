//! A delegated cgroup from systemd, over D-Bus (zbus).
//!
//! cgroup v2 lets a cgroup that holds processes pass no controllers down (the
//! no-internal-processes rule), and an ordinary user may write only the cgroups delegated to it.
//! The sanctioned way to get a subtree of one's own is to ask systemd for a transient scope with
//! `Delegate=yes` holding this process alone: the system manager on the system bus for root, the
//! user's manager (`user@UID.service`) on the user bus for anyone else. systemd moves the process,
//! and the scope's subtree is then ours to manage (what `systemd-run [--user] --scope -p
//! Delegate=yes` does, and podman and crun rootless). Only this process moves, and only through
//! systemd; no other process or cgroup is touched.
//!
//! The scope goes when its last process exits: systemd watches it, and `CollectMode=
//! inactive-or-failed` has it garbage-collected even when it ends failed. Nothing to clean up.
//!
//! Cost: one connection (SASL handshake and `Hello`), an `AddMatch`, one `StartTransientUnit`
//! and its `JobRemoved` signal, once per process, when needed at all.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_lite::StreamExt;
use zbus::zvariant::{OwnedObjectPath, Value};

use super::fs;

/// How long systemd may take to start the scope (the VM's emulated CPU is slow).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Which systemd manager to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// PID 1, on the system bus: for root.
    System,
    /// The user's own manager `user@UID.service`, on the user bus: for anyone else.
    User,
}

impl std::fmt::Display for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Manager::System => "system manager (system bus)",
            Manager::User => "user manager (user bus)",
        })
    }
}

/// Asking systemd for a delegated scope failed.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error(
        "no user D-Bus to reach systemd's user manager: DBUS_SESSION_BUS_ADDRESS is unset and {tried} does not \
         exist; run from a login session (pam_systemd sets XDG_RUNTIME_DIR and DBUS_SESSION_BUS_ADDRESS), or \
         start the user manager without one (`loginctl enable-linger $USER`) and set \
         XDG_RUNTIME_DIR=/run/user/$(id -u); the user bus needs the dbus-user-session (or dbus-broker) package"
    )]
    NoUserBus { tried: PathBuf },
    #[error("no system D-Bus at {socket}: start dbus (systemctl start dbus.socket)")]
    NoSystemBus { socket: PathBuf },
    #[error("cannot connect to the {manager} at {address}")]
    Connect {
        manager: Manager,
        address: String,
        #[source]
        source: zbus::Error,
    },
    #[error("the {manager} refused the delegated scope {unit}")]
    Refused {
        manager: Manager,
        unit: String,
        #[source]
        source: zbus::Error,
    },
    #[error("the {manager} could not start the delegated scope {unit}: its job ended {result:?}")]
    JobFailed { manager: Manager, unit: String, result: String },
    #[error("the {manager} did not move this process into the scope {unit} within {waited:?}")]
    NotMoved { manager: Manager, unit: String, waited: Duration },
    #[error("failed to read {path}")]
    Proc {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Whether systemd is the init system (its documented check).
pub(crate) fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Whether `base` holds processes other than this one and its children, and lacks some of
/// `controllers` in its `cgroup.subtree_control` (so cvtest could not enable them there).
pub(crate) fn shared_without(base: &Path, controllers: &[&str]) -> bool {
    let Ok(enabled) = fs::read(&base.join("cgroup.subtree_control")) else { return false };
    if controllers.iter().all(|c| enabled.split_ascii_whitespace().any(|e| e == *c)) {
        return false;
    }
    let me = std::process::id() as i32;
    let Ok(pids) = fs::procs(base) else { return false };
    pids.iter().any(|&p| p != me && crate::owner::parent_of(p).is_some_and(|pp| pp != me))
}

/// The D-Bus address of `manager`'s bus: `DBUS_SYSTEM_BUS_ADDRESS` or the standard socket for
/// the system; `DBUS_SESSION_BUS_ADDRESS`, else `$XDG_RUNTIME_DIR/bus`, else
/// `/run/user/UID/bus` for the user (the last when a tool such as `runuser` dropped the
/// variables but the user manager runs).
pub(crate) fn bus_address(manager: Manager) -> Result<String, SystemdError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match manager {
        Manager::System => {
            if let Some(address) = var("DBUS_SYSTEM_BUS_ADDRESS") {
                return Ok(address);
            }
            let socket = PathBuf::from("/run/dbus/system_bus_socket");
            if socket.exists() {
                Ok(format!("unix:path={}", socket.display()))
            } else {
                Err(SystemdError::NoSystemBus { socket })
            }
        }
        Manager::User => {
            if let Some(address) = var("DBUS_SESSION_BUS_ADDRESS") {
                return Ok(address);
            }
            let runtime = var("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(format!("/run/user/{}", nix::unistd::geteuid())));
            let socket = runtime.join("bus");
            if socket.exists() {
                Ok(format!("unix:path={}", socket.display()))
            } else {
                Err(SystemdError::NoUserBus { tried: socket })
            }
        }
    }
}

/// Asks `manager` to move this process into a new transient scope `cvtest-<owner tag>.scope`
/// with `Delegate=yes`, waits for the job to end, and checks that `/proc/self/cgroup` shows the
/// move. Returns the unit's name.
pub(crate) fn move_into_delegated_scope(manager: Manager) -> Result<String, SystemdError> {
    let proc_cgroup = Path::new("/proc/self/cgroup");
    let read_proc = || {
        fs::read_io(proc_cgroup).map_err(|source| SystemdError::Proc { path: proc_cgroup.to_owned(), source })
    };
    let before = read_proc()?;
    let unit = format!("cvtest-{}.scope", crate::owner::tag());
    let address = bus_address(manager)?;
    let result = zbus::block_on(start_scope(manager, &address, &unit))?;
    if result != "done" {
        return Err(SystemdError::JobFailed { manager, unit, result });
    }
    // The job is done once the scope runs with this process in it; the read is the proof.
    if read_proc()? == before {
        return Err(SystemdError::NotMoved { manager, unit, waited: START_TIMEOUT });
    }
    Ok(unit)
}

/// `StartTransientUnit(unit, "fail", properties, [])`, then the job's `JobRemoved` result.
async fn start_scope(manager: Manager, address: &str, unit: &str) -> Result<String, SystemdError> {
    let connect = |source| SystemdError::Connect { manager, address: address.to_owned(), source };
    let refused = |source| SystemdError::Refused { manager, unit: unit.to_owned(), source };
    let conn =
        zbus::connection::Builder::address(address).map_err(connect)?.build().await.map_err(connect)?;
    // Subscribed before the call, so that the signal cannot be missed.
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("org.freedesktop.systemd1")
        .and_then(|b| b.interface("org.freedesktop.systemd1.Manager"))
        .and_then(|b| b.member("JobRemoved"))
        .map_err(refused)?
        .build();
    let mut signals = zbus::MessageStream::for_match_rule(rule, &conn, None).await.map_err(refused)?;

    let pid = std::process::id();
    let properties: Vec<(&str, Value<'_>)> = vec![
        ("Description", Value::from("cvtest: the containers of a test run")),
        ("PIDs", Value::from(vec![pid])),
        ("Delegate", Value::from(true)),
        ("CollectMode", Value::from("inactive-or-failed")),
    ];
    let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
    let reply = conn
        .call_method(
            Some("org.freedesktop.systemd1"),
            "/org/freedesktop/systemd1",
            Some("org.freedesktop.systemd1.Manager"),
            "StartTransientUnit",
            &(unit, "fail", properties, aux),
        )
        .await
        .map_err(refused)?;
    let job: OwnedObjectPath = reply.body().deserialize().map_err(refused)?;

    let wait = async {
        while let Some(msg) = signals.next().await {
            let Ok(msg) = msg else { continue };
            // JobRemoved(u id, o job, s unit, s result)
            if let Ok((_, path, _, result)) =
                msg.body().deserialize::<(u32, OwnedObjectPath, String, String)>()
            {
                if path == job {
                    return Ok(result);
                }
            }
        }
        Err(SystemdError::NotMoved { manager, unit: unit.to_owned(), waited: Duration::ZERO })
    };
    let timeout = async {
        async_io::Timer::after(START_TIMEOUT).await;
        Err(SystemdError::NotMoved { manager, unit: unit.to_owned(), waited: START_TIMEOUT })
    };
    futures_lite::future::or(wait, timeout).await
}

/// Empties the scopes `cvtest-<owner tag>.scope` beside `own_scope` whose owners are dead (a
/// runner SIGKILLed while its containers ran leaves them, kept alive by those processes): every
/// process in each is SIGKILLed, its child cgroups (ours) removed, deepest first. systemd then
/// stops the emptied scope and removes it. Returns how many scopes were emptied.
pub(crate) fn sweep_dead_scopes(own_scope: &Path) -> Result<usize, super::CgroupError> {
    let Some(parent) = own_scope.parent() else { return Ok(0) };
    let deadline = std::time::Instant::now() + fs::DESTROY_TIMEOUT;
    let mut emptied = 0;
    for scope in fs::child_dirs(parent)? {
        let Some(name) = scope.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(tag) = name.strip_prefix("cvtest-").and_then(|r| r.strip_suffix(".scope")) else { continue };
        if scope == own_scope
            || tag == crate::owner::tag()
            || crate::owner::status(tag) != crate::owner::Owner::Dead
        {
            continue;
        }
        empty_tree(&scope, deadline)?;
        emptied += 1;
    }
    Ok(emptied)
}

fn empty_tree(dir: &Path, deadline: std::time::Instant) -> Result<(), super::CgroupError> {
    for child in fs::child_dirs(dir)? {
        empty_tree(&child, deadline)?;
        fs::remove_dir(&child, deadline, &fs::kill_listed)?;
    }
    fs::kill_listed(dir, deadline)
}
