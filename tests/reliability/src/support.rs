//! Shared helpers. After `fork` in a (multi-threaded) test process the child calls only
//! async-signal-safe libc functions.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The directory shared with the driver (and other tests of the same run).
pub fn rendezvous_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("RELIABILITY_DIR").expect(
        "RELIABILITY_DIR is not set: these tests are run by cargo-cvtest's reliability suite, not by hand",
    ))
}

/// Creates `name` in the rendezvous directory.
pub fn signal(name: &str) {
    let path = rendezvous_dir().join(name);
    std::fs::write(&path, b"").unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
}

/// Waits until `path` exists, at most `timeout`.
pub fn wait_for(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Forks a child that sleeps for `secs` seconds and exits.
pub fn fork_sleeper(secs: u32) -> libc::pid_t {
    // SAFETY: the child runs only async-signal-safe functions (sleep, _exit).
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => panic!("fork failed: {}", std::io::Error::last_os_error()),
        0 => unsafe {
            libc::sleep(secs);
            libc::_exit(0)
        },
        pid => pid,
    }
}

/// Starts a daemon the classic way (fork, setsid, fork, parent exits) that sleeps for `secs`
/// seconds. The daemon keeps stdout and stderr open, so the runner's pipes stay open after the
/// test's process is gone. Returns once the daemon has created `alive` in the rendezvous
/// directory (proof that it runs).
pub fn daemonize(secs: u32, alive: &str) {
    let path = rendezvous_dir().join(alive);
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL in the path");
    // SAFETY: the children run only async-signal-safe functions (setsid, fork, open, close,
    // sleep, _exit) on a C string made before the fork.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => panic!("fork failed: {}", std::io::Error::last_os_error()),
        // SAFETY: in the forked child, only the async-signal-safe calls listed above.
        0 => unsafe {
            libc::setsid();
            if libc::fork() == 0 {
                let fd = libc::open(c_path.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644);
                if fd >= 0 {
                    libc::close(fd);
                }
                libc::sleep(secs);
            }
            libc::_exit(0)
        },
        pid => {
            let mut status = 0;
            // SAFETY: waits for our own child; status is a valid out-pointer.
            unsafe { libc::waitpid(pid, &mut status, 0) };
        }
    }
    assert!(
        wait_for(&path, Duration::from_secs(30)),
        "the daemon never started ({} missing)",
        path.display()
    );
}

/// Sleeps `secs` seconds (a bound, in case the driver loses track of us).
pub fn sleep(secs: u64) {
    std::thread::sleep(Duration::from_secs(secs));
}
