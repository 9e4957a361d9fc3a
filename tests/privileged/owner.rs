//! Owners and kills that must never reach a stranger (issue 11 items 5 and 6): a live runner in
//! another PID namespace keeps its cgroups through our sweep; the kill of listed pids skips a
//! pid that is no longer in the cgroup; a `KillHandle` of an ended container without a PID
//! namespace spares a new process group that got the main process's number.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cvtest::{Container, Isolation, Limits, Options, Stdio as CStdio};
use libtest_mimic::{Failed, Trial};

use crate::container::{sweep_as_a_new_runner, token_running, unique_token};
use crate::helpers::{self, HELPER_ENV};
use crate::support::{privileged, privileged_unless};

pub fn trials() -> Vec<Trial> {
    vec![
        privileged_unless(
            "owner::live_owner_in_another_pid_namespace_is_not_swept",
            live_owner_in_another_pid_namespace_is_not_swept,
        ),
        privileged(
            "owner::listed_pid_that_left_the_cgroup_is_not_killed",
            listed_pid_that_left_is_not_killed,
        ),
        privileged_unless(
            "owner::kill_handle_spares_a_reused_process_group",
            kill_handle_spares_a_reused_process_group,
        ),
    ]
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {{
        let ok: bool = $cond;
        if !ok {
            return Err(Failed::from(format!($($msg)+)));
        }
    }};
}

/// Kills and reaps the child on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn unshare_available() -> Option<String> {
    match Command::new("unshare").arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => None,
        _ => Some("no unshare(1) here".to_owned()),
    }
}

/// Helper mode `own-until-eof`: makes a container running `linger TOKEN`, prints its cgroups and
/// this process's owner tag, then keeps it until stdin closes, and destroys it.
pub fn own_until_eof(token: &str) -> i32 {
    let mut c = match Container::create(&Options::new()) {
        Ok(c) => c,
        Err(e) => {
            println!("create failed: {}", cvtest::error_chain(&e));
            return 1;
        }
    };
    if let Err(e) = c.spawn(&helpers::command("linger", &[token])) {
        println!("spawn failed: {}", cvtest::error_chain(&e));
        return 1;
    }
    for p in c.cgroup_paths() {
        println!("cgroup={}", p.display());
    }
    println!("tag={}", cvtest::test_support::owner_tag());
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut rest);
    match c.destroy() {
        Ok(()) => 0,
        Err(e) => {
            println!("destroy failed: {}", cvtest::error_chain(&e));
            2
        }
    }
}

/// A runner in its own PID namespace (`unshare --pid --fork`) sharing our cgroups: its tag's
/// pid means another process here (pid 1 is our init). The old tag, `<pid>.<start>`, made it
/// look dead and its live cgroups were swept. Now its tag names its PID namespace, which we
/// can see (it is a child of ours): its process there is found, and nothing of it is swept.
fn live_owner_in_another_pid_namespace_is_not_swept() -> Result<Option<String>, Failed> {
    if let Some(why) = unshare_available() {
        return Ok(Some(why));
    }
    let token = unique_token("pidns-owner");
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let child = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child"])
        .arg(&exe)
        .arg(&token)
        .env(HELPER_ENV, "own-until-eof")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn unshare: {e}"))?;
    let mut owner = Reaped(child);
    let stdout = owner.0.stdout.take().ok_or("no stdout")?;
    let (mut cgroups, mut tag) = (Vec::<PathBuf>::new(), String::new());
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("read owner: {e}"))?;
        if let Some(p) = line.strip_prefix("cgroup=") {
            cgroups.push(PathBuf::from(p));
        } else if let Some(t) = line.strip_prefix("tag=") {
            tag = t.to_owned();
        } else if line == "ready" {
            break;
        } else if line.contains("cannot enable") {
            return Ok(Some(format!("a child of this test cannot be a runner here: {line}")));
        } else {
            return Err(format!("owner: {line}").into());
        }
    }
    ensure!(!cgroups.is_empty(), "the owner reported no cgroups (tag {tag:?})");
    let pid_in_tag: u32 = tag.split('.').next().and_then(|p| p.parse().ok()).unwrap_or(0);
    ensure!(
        pid_in_tag != owner.0.id() && pid_in_tag < 10,
        "the owner's tag {tag} does not look like a pid of a new PID namespace"
    );
    ensure!(cvtest::test_support::owner_may_be_alive(&tag), "the live owner's tag {tag} reads as dead");
    // Two sweeps: this process's, and a fresh runner's first create.
    cvtest::test_support::sweep_stale_cgroups_now().map_err(|e| cvtest::error_chain(&e))?;
    sweep_as_a_new_runner()?;
    for cg in &cgroups {
        ensure!(cg.exists(), "the sweep removed {} of a live owner in another PID namespace", cg.display());
    }
    ensure!(token_running(&token), "the live owner's container was killed by the sweep");
    // The owner cleans up after itself when its stdin closes.
    drop(owner.0.stdin.take());
    let status = owner.0.wait().map_err(|e| format!("wait owner: {e}"))?;
    ensure!(status.success(), "the owner ended {status}");
    for cg in &cgroups {
        ensure!(!cg.exists(), "the owner left {}", cg.display());
    }
    Ok(None)
}

/// The kill of the pids a cgroup listed (v1 without a freezer, and the stragglers' loop) must not
/// reach a pid that left the cgroup in between, which here stands for a pid reused by a process
/// outside: a sleeper that is not in the (empty) cgroup survives; moved in, it is killed.
fn listed_pid_that_left_is_not_killed() -> Result<(), Failed> {
    let h = cvtest::test_support::Hierarchy::detect().map_err(|e| cvtest::error_chain(&e))?;
    let cg = h.create(&Limits::default()).map_err(|e| cvtest::error_chain(&e))?;
    let dir = cg.paths().into_iter().next().ok_or("no cgroup dir")?;
    let mut sleeper = Reaped(
        Command::new("/bin/sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn sleep: {e}"))?,
    );
    let pid = sleeper.0.id() as i32;
    cvtest::test_support::kill_pids_still_in(&dir, &[pid]).map_err(|e| cvtest::error_chain(&e))?;
    std::thread::sleep(Duration::from_millis(20));
    ensure!(sleeper.0.try_wait().map_err(|e| e.to_string())?.is_none(), "a pid not in the cgroup was killed");
    for d in cg.paths() {
        std::fs::write(d.join("cgroup.procs"), pid.to_string()).map_err(|e| format!("move in: {e}"))?;
    }
    cvtest::test_support::kill_pids_still_in(&dir, &[pid]).map_err(|e| cvtest::error_chain(&e))?;
    let status = sleeper.0.wait().map_err(|e| e.to_string())?;
    ensure!(
        std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGKILL),
        "the pid in the cgroup ended {status:?}"
    );
    drop(cg);
    Ok(())
}

/// Helper mode `reused-pgid`, run as PID 1 of a fresh PID namespace with its own /proc (where
/// nothing else forks, so a pid number can be handed out on purpose): a container without a PID
/// namespace runs `sh -c 'echo $$'` and ends; a new process group then gets the main process's
/// number (`ns_last_pid`); the container's `KillHandle::kill()` must spare it. Prints `spared`,
/// `killed`, or why it could not try.
pub fn reused_pgid() -> i32 {
    let mut opts = Options::new();
    opts.set_isolation(Isolation::FILESYSTEM | Isolation::IPC);
    let run = || -> Result<String, String> {
        let mut c = Container::create(&opts).map_err(|e| cvtest::error_chain(&e))?;
        let mut cmd = cvtest::Command::new("/bin/sh");
        cmd.args(["-c", "echo $$"]).stdout(CStdio::Capture { limit: 4096 });
        c.spawn(&cmd).map_err(|e| cvtest::error_chain(&e))?;
        let handle = c.kill_handle();
        let outcome = c.wait(Some(Duration::from_secs(30))).map_err(|e| cvtest::error_chain(&e))?;
        let main: i32 =
            String::from_utf8_lossy(&outcome.stdout).trim().parse().map_err(|e| format!("main pid: {e}"))?;
        c.destroy().map_err(|e| cvtest::error_chain(&e))?;
        std::fs::write("/proc/sys/kernel/ns_last_pid", (main - 1).to_string())
            .map_err(|e| format!("ns_last_pid: {e}"))?;
        let stranger = Command::new("/bin/sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawn stranger: {e}"))?;
        let mut stranger = Reaped(stranger);
        if stranger.0.id() as i32 != main {
            return Err(format!("the stranger got pid {}, not {main}", stranger.0.id()));
        }
        handle.kill();
        std::thread::sleep(Duration::from_millis(50));
        Ok(match stranger.0.try_wait() {
            Ok(None) => "spared".to_owned(),
            other => format!("killed ({other:?})"),
        })
    };
    match run() {
        Ok(verdict) => {
            println!("{verdict}");
            0
        }
        Err(e) => {
            println!("cannot try: {e}");
            3
        }
    }
}

fn kill_handle_spares_a_reused_process_group() -> Result<Option<String>, Failed> {
    if let Some(why) = unshare_available() {
        return Ok(Some(why));
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let child = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "--mount-proc"])
        .arg(&exe)
        .env(HELPER_ENV, "reused-pgid")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn unshare: {e}"))?;
    let mut helper = Reaped(child);
    let mut out = String::new();
    std::io::Read::read_to_string(helper.0.stdout.as_mut().ok_or("no stdout")?, &mut out)
        .map_err(|e| format!("read helper: {e}"))?;
    let status = helper.0.wait().map_err(|e| e.to_string())?;
    ensure!(Instant::now() < deadline, "the helper took too long");
    match out.trim() {
        "spared" => Ok(None),
        v if v.starts_with("cannot try: ") && v.contains("a child of this test cannot") => {
            Ok(Some(v.to_owned()))
        }
        v => Err(format!("KillHandle::kill() after the end: {v} (helper {status})").into()),
    }
}
