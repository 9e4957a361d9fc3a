//! Running the real `cargo-cvtest` on the reliability fixture (`tests/reliability`), watching
//! its peak RSS, and reading its JSON events.

use std::ffi::CString;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use libtest_mimic::Failed;
use serde_json::Value;

use super::host::Owner;

/// The fixture's manifest.
pub fn manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/reliability/Cargo.toml")
}

/// The fixture builds here, below the root target dir, so that this nested cargo never waits on
/// the lock of the `cargo test` running us.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // <target>/debug/deps/cli-HASH -> <target>/cvtest-reliability
    exe.ancestors().nth(3).expect("target dir").join("cvtest-reliability")
}

/// The runner binary under test.
pub fn runner_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cargo-cvtest"))
}

/// A fresh directory below the fixture's target dir (writable inside containers), passed to the
/// fixture's tests as `RELIABILITY_DIR` for meeting the driver.
pub fn rendezvous() -> tempfile::TempDir {
    let base = target_dir();
    std::fs::create_dir_all(&base).expect("create the fixture target dir");
    tempfile::Builder::new().prefix("rdv-").tempdir_in(base).expect("create a rendezvous dir")
}

/// What happens in the runner's process between fork and exec.
#[derive(Debug, Clone, Default)]
pub enum Prelude {
    #[default]
    None,
    /// It stops (SIGSTOP) before it execs the runner, so that the driver can prepare things that
    /// depend on its pid; [`Started::resume`] lets it go on.
    Stopped,
    /// It runs in a private mount namespace without the cgroup hierarchy mounted here.
    HideMount(PathBuf),
}

/// `cargo cvtest` on the fixture, with JSON events on stdout.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub prelude: Prelude,
    /// Leave out `--manifest-path`/`--target-dir`/`--message-format json` (bad-input cases).
    pub bare: bool,
}

impl Invocation {
    pub fn new(args: &[&str]) -> Self {
        Invocation { args: args.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }
    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.env.push((k.to_owned(), v.as_ref().to_string_lossy().into_owned()));
        self
    }
    pub fn prelude(mut self, p: Prelude) -> Self {
        self.prelude = p;
        self
    }

    pub fn command(&self) -> Command {
        let mut cmd = match self.prelude {
            // `Command::spawn` waits for the exec, so the stop must come from a process that has
            // exec'd: a shell stops itself, then execs the runner (same pid, same start time).
            Prelude::Stopped => {
                let mut sh = Command::new("/bin/sh");
                sh.args(["-c", "kill -STOP $$ && exec \"$@\"", "sh"]).arg(runner_exe());
                sh
            }
            _ => Command::new(runner_exe()),
        };
        cmd.arg("cvtest");
        if !self.bare {
            cmd.arg("--manifest-path").arg(manifest());
            cmd.arg("--target-dir").arg(target_dir());
            cmd.args(["--message-format", "json"]);
        }
        cmd.args(&self.args);
        cmd.env("CARGO_NET_OFFLINE", "true").env("NO_COLOR", "1").env_remove("CARGO_TERM_COLOR");
        cmd.env_remove("CVTEST_CONTAINER").env_remove("CVTEST_LIST_SETTINGS");
        cmd.env("RUST_BACKTRACE", "0");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        match &self.prelude {
            Prelude::None | Prelude::Stopped => {}
            Prelude::HideMount(path) => {
                let path =
                    CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL in a mount point");
                // SAFETY: only raw syscalls (unshare, mount, umount2) on C strings prepared before
                // the fork; no allocation, no locks.
                unsafe {
                    cmd.pre_exec(move || {
                        if libc::unshare(libc::CLONE_NEWNS) != 0
                            || libc::mount(
                                std::ptr::null(),
                                c"/".as_ptr(),
                                std::ptr::null(),
                                libc::MS_REC | libc::MS_PRIVATE,
                                std::ptr::null(),
                            ) != 0
                            || libc::umount2(path.as_ptr(), libc::MNT_DETACH) != 0
                        {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            }
        }
        cmd
    }

    pub fn start(&self) -> Result<Started, Failed> {
        let started_at = Instant::now();
        let mut child = self.command().spawn().map_err(|e| format!("cannot start cargo-cvtest: {e}"))?;
        let pid = child.id();
        if matches!(self.prelude, Prelude::Stopped) {
            wait_stopped(pid)?;
        }
        let owner = Owner::of(pid).ok_or("the runner vanished before its start time could be read")?;
        let stdout = read_all(child.stdout.take().expect("piped"));
        let stderr = read_all(child.stderr.take().expect("piped"));
        let hwm = std::thread::spawn(move || sample_hwm(pid));
        Ok(Started { child, owner, stdout: Some(stdout), stderr: Some(stderr), hwm: Some(hwm), started_at })
    }

    pub fn run(&self) -> Result<Finished, Failed> {
        self.start()?.finish(Duration::from_secs(600))
    }
}

fn read_all(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Waits until `pid` is stopped (state `T`).
fn wait_stopped(pid: u32) -> Result<(), Failed> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
        if state == Some("T") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the runner (pid {pid}) never stopped before exec: {stat}").into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The largest `VmHWM` (peak RSS, KiB) of `pid` while it runs the runner binary, sampled every
/// 10 ms until it exits. The peak is monotonic, so sampling misses at most the growth of the
/// last 10 ms.
fn sample_hwm(pid: u32) -> u64 {
    let runner = runner_exe();
    let mut peak = 0;
    while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        let exec_done = std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == runner);
        let hwm = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        match hwm {
            Some(kib) if exec_done => peak = peak.max(kib),
            Some(_) => {}
            // A zombie: its memory is gone.
            None => break,
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    peak
}

/// A running runner.
pub struct Started {
    pub child: Child,
    pub owner: Owner,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
    hwm: Option<JoinHandle<u64>>,
    started_at: Instant,
}

impl Started {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGCONT to a runner started with [`Prelude::Stopped`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// Whether it has exited (without reaping it).
    pub fn exited(&mut self) -> bool {
        // SAFETY: siginfo_t is plain old data, for which all zero bytes are a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child with WNOWAIT does not reap; info is a valid out-pointer.
        let r = unsafe {
            libc::waitid(libc::P_PID, self.pid(), &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT)
        };
        // SAFETY: si_pid is valid to read after a successful waitid.
        r == 0 && unsafe { info.si_pid() } != 0
    }

    /// Waits for `path` to exist while the runner runs; fails if it ends first or after `timeout`.
    pub fn wait_for_file(&mut self, path: &Path, timeout: Duration) -> Result<(), Failed> {
        let deadline = Instant::now() + timeout;
        while !path.exists() {
            if self.exited() {
                return Err(format!("the runner exited before {} appeared", path.display()).into());
            }
            if Instant::now() > deadline {
                return Err(format!("{} did not appear within {timeout:?}", path.display()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Waits for the runner to exit, at most `timeout` (then kills it and fails).
    pub fn finish(mut self, timeout: Duration) -> Result<Finished, Failed> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!("cargo-cvtest did not finish within {timeout:?}").into());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let elapsed = self.started_at.elapsed();
        let stdout = self.stdout.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let hwm_kib = self.hwm.take().and_then(|h| h.join().ok()).unwrap_or(0);
        let mut events = Vec::new();
        let mut bad_lines = Vec::new();
        for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Value>(line) {
                Ok(v) => events.push(v),
                Err(e) => bad_lines.push(format!("{e}: {}", truncate(line, 200))),
            }
        }
        Ok(Finished { status, stderr, events, bad_lines, hwm_kib, elapsed, owner: self.owner.clone() })
    }
}

/// A finished run.
pub struct Finished {
    pub status: ExitStatus,
    pub stderr: String,
    pub events: Vec<Value>,
    /// Lines of stdout that are not JSON.
    pub bad_lines: Vec<String>,
    /// Peak RSS of the runner process, KiB.
    pub hwm_kib: u64,
    pub elapsed: Duration,
    pub owner: Owner,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The `test` events.
    pub fn tests(&self) -> Vec<&Value> {
        self.events.iter().filter(|v| v["type"] == "test").collect()
    }

    /// The one `test` event of `name`.
    pub fn test(&self, name: &str) -> Result<&Value, Failed> {
        let found: Vec<_> = self.tests().into_iter().filter(|v| v["name"] == name).collect();
        match found.as_slice() {
            [one] => Ok(one),
            _ => Err(self.fail(&format!("{} test events for {name}, want 1", found.len()))),
        }
    }

    pub fn event(&self, kind: &str) -> Option<&Value> {
        self.events.iter().find(|v| v["type"] == kind)
    }

    /// A failure with the run's context: exit status, the end of stderr, the JSON events.
    pub fn fail(&self, what: &str) -> Failed {
        let events: Vec<String> = self
            .events
            .iter()
            .map(|v| {
                let mut v = v.clone();
                for k in ["stdout", "stderr"] {
                    if let Some(s) = v.get(k).and_then(Value::as_str) {
                        v[k] = Value::String(truncate(s, 600));
                    }
                }
                v.to_string()
            })
            .collect();
        format!(
            "{what}\nexit: {:?}\n--- stderr (end) ---\n{}\n--- events ---\n{}",
            self.status,
            tail(&self.stderr, 3000),
            truncate(&events.join("\n"), 6000)
        )
        .into()
    }

    pub fn expect_code(&self, want: i32) -> Result<(), Failed> {
        if self.code() == Some(want) {
            Ok(())
        } else {
            Err(self.fail(&format!("exit code {:?}, want {want}", self.code())))
        }
    }

    pub fn check(&self, cond: bool, what: &str) -> Result<(), Failed> {
        if cond {
            Ok(())
        } else {
            Err(self.fail(what))
        }
    }

    /// Every line of stdout was JSON, and there is a run-finished event.
    pub fn check_events_complete(&self) -> Result<(), Failed> {
        self.check(
            self.bad_lines.is_empty(),
            &format!("stdout lines that are not JSON: {:?}", self.bad_lines),
        )?;
        self.check(self.event("run-started").is_some(), "no run-started event")?;
        self.check(self.event("run-finished").is_some(), "no run-finished event")
    }

    /// Peak RSS of the runner in MiB.
    pub fn hwm_mib(&self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}[... {} more bytes]", &s[..end], s.len() - end)
}

pub fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("[...]{}", &s[start..])
}

/// A number of milliseconds from an event field.
pub fn ms(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

impl Drop for Started {
    /// A runner left running by a failed check is killed (its containers die with it) and reaped.
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
