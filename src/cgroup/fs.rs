//! cgroupfs I/O: small reads and writes whose errors carry the path, keyed-file parsing, and the
//! bounded waits of teardown (the only places that sleep, and only when actually waiting).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::CgroupError;

/// Reads a cgroupfs or procfs file: open, read to EOF, close (no stat, no seek).
pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    read_io(path).map_err(|source| CgroupError::Read { path: path.to_owned(), source })
}

/// Files of a cgroup that lives on, opened at their first use and kept: each later read is one
/// `pread(2)` from offset 0 (kernfs starts the text again there), each write one `pwrite(2)`,
/// without an open and a close. A recycled v1 cgroup's counters are read, and reset, once per
/// container that had it. Not for v1's `cgroup.procs` and `tasks`: an open file keeps its pid
/// list (for a second after its last read), and a read from 0 through it may show that list
/// again instead of the cgroup's processes now.
#[derive(Debug, Default)]
pub(crate) struct KeptFiles(std::sync::Mutex<Vec<(PathBuf, bool, File)>>);

impl KeptFiles {
    /// The whole text of `path`, through the file kept open for it.
    pub(crate) fn read(&self, path: &Path) -> Result<String, CgroupError> {
        let error = |source| CgroupError::Read { path: path.to_owned(), source };
        self.with(path, false, read_whole).map_err(error)
    }

    /// Writes `value` to `path` in one `pwrite(2)`, through the file kept open for writing it.
    pub(crate) fn write(&self, path: &Path, value: &str) -> Result<(), CgroupError> {
        self.with(path, true, |file| {
            let n = std::os::unix::fs::FileExt::write_at(file, value.as_bytes(), 0)?;
            if n == value.len() {
                Ok(())
            } else {
                Err(io::Error::new(io::ErrorKind::WriteZero, "short write"))
            }
        })
        .map_err(|source| write_error(path, value, source))
    }

    fn with<T>(&self, path: &Path, write: bool, f: impl FnOnce(&File) -> io::Result<T>) -> io::Result<T> {
        let mut files = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let i = match files.iter().position(|(p, w, _)| p == path && *w == write) {
            Some(i) => i,
            None => {
                let file = if write { OpenOptions::new().write(true).open(path)? } else { File::open(path)? };
                files.push((path.to_owned(), write, file));
                files.len() - 1
            }
        };
        f(&files[i].2)
    }

    /// Closes every kept file.
    pub(crate) fn close(&self) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}

/// Like [`read`], but a file the kernel does not have is `None`.
pub(crate) fn read_if_exists(path: &Path) -> Result<Option<String>, CgroupError> {
    match read_io(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read { path: path.to_owned(), source }),
    }
}

pub(crate) fn read_io(path: &Path) -> io::Result<String> {
    read_whole(&File::open(path)?)
}

/// The whole text of an open cgroupfs or procfs file, read from offset 0 (kernfs starts the
/// text again there, so a kept file reads its current value).
fn read_whole(file: &File) -> io::Result<String> {
    let mut buf = Vec::with_capacity(4096);
    let len = read_from_start(file, &mut buf)?;
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads all of an open cgroupfs or procfs file from offset 0 into `buf`, which keeps its size
/// between calls (zeroed once, doubled when a read fills it): a `pread` and the one that sees
/// the end. Returns the length read; `buf` past it is stale.
pub(crate) fn read_from_start(file: &File, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.len() < buf.capacity().max(4096) {
        buf.resize(buf.capacity().max(4096), 0);
    }
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match std::os::unix::fs::FileExt::read_at(file, &mut buf[len..], len as u64) {
            Ok(0) => return Ok(len),
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes `value` to a cgroupfs file in one write(2) (no create, no truncate).
pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    write_io(path, value).map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

pub(crate) fn write_io(path: &Path, value: &str) -> io::Result<()> {
    OpenOptions::new().write(true).open(path)?.write_all(value.as_bytes())
}

/// The error of a failed [`write_io`], with its path and value.
pub(crate) fn write_error(path: &Path, value: &str, source: io::Error) -> CgroupError {
    CgroupError::Write { path: path.to_owned(), value: value.to_owned(), source }
}

/// Parses a file holding one unsigned number.
pub(crate) fn parse_u64(path: &Path, text: &str) -> Result<u64, CgroupError> {
    let t = text.trim();
    t.parse().map_err(|_| CgroupError::Parse {
        path: path.to_owned(),
        reason: format!("expected a number, found {t:?}"),
    })
}

/// Reads a file holding one unsigned number.
pub(crate) fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    parse_u64(path, &read(path)?)
}

/// The value of `key` in a flat keyed file (`key value` per line: cpu.stat, memory.events,
/// pids.events, memory.oom_control, cgroup.events). `None` when the key is absent.
pub(crate) fn keyed(path: &Path, text: &str, key: &str) -> Result<Option<u64>, CgroupError> {
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        if it.next() == Some(key) {
            let v = it.next().unwrap_or("");
            return v.parse().map(Some).map_err(|_| CgroupError::Parse {
                path: path.to_owned(),
                reason: format!("the value of {key:?} is not a number: {line:?}"),
            });
        }
    }
    Ok(None)
}

/// The pids listed in a `cgroup.procs` text.
pub(crate) fn parse_pids(path: &Path, text: &str) -> Result<Vec<i32>, CgroupError> {
    text.split_ascii_whitespace()
        .map(|s| {
            s.parse().map_err(|_| CgroupError::Parse {
                path: path.to_owned(),
                reason: format!("not a pid: {s:?}"),
            })
        })
        .collect()
}

/// The processes in `dir/cgroup.procs`; an empty list when the cgroup is gone.
pub(crate) fn procs(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let path = dir.join("cgroup.procs");
    match read_if_exists(&path)? {
        Some(text) => parse_pids(&path, &text),
        None => Ok(Vec::new()),
    }
}

/// SIGKILLs each of `pids` (read from `dir/cgroup.procs`) that is still in `dir`, never a pid
/// reused meanwhile by a process outside: each gets a pidfd first, then `cgroup.procs` is read
/// again, and only a pid still listed is signalled, through its pidfd. While the process of a
/// pidfd runs, its pid is its own; so a pid listed after the pidfd was opened is that process's,
/// unless it already ended (then the signal goes nowhere). A pid already gone is fine.
pub(crate) fn kill_pids(dir: &Path, pids: &[i32]) -> Result<(), CgroupError> {
    let opened: Vec<(i32, std::os::fd::OwnedFd)> =
        pids.iter().filter_map(|&pid| crate::sys::pidfd_open(pid).ok().map(|fd| (pid, fd))).collect();
    if opened.is_empty() {
        return Ok(());
    }
    let still = procs(dir)?;
    for (pid, fd) in &opened {
        if still.contains(pid) {
            // ESRCH: it is already gone. EPERM cannot happen as root; nothing useful to do with it.
            let _ = crate::sys::pidfd_send_signal(std::os::fd::AsFd::as_fd(fd), libc::SIGKILL);
        }
    }
    Ok(())
}

/// SIGKILLs whatever `dir/cgroup.procs` lists until it lists nothing, at most until `deadline`
/// (no freezing: for cgroups without a freezer, and for stragglers after a frozen kill).
pub(crate) fn kill_listed(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
    let started = Instant::now();
    let mut backoff = Backoff::new(deadline);
    loop {
        let pids = procs(dir)?;
        if pids.is_empty() {
            return Ok(());
        }
        kill_pids(dir, &pids)?;
        if !backoff.wait() {
            return Err(CgroupError::NotEmpty { path: dir.to_owned(), waited: started.elapsed() });
        }
    }
}

/// Short exponential backoff, for the waits that have no kernel notification (v1 emptiness,
/// freezing, rmdir EBUSY). Starts at 50 µs, caps at 10 ms.
pub(crate) struct Backoff {
    next: Duration,
    deadline: Instant,
}

impl Backoff {
    pub(crate) fn new(deadline: Instant) -> Self {
        Backoff { next: Duration::from_micros(50), deadline }
    }

    /// Sleeps a little; `false` once the deadline has passed.
    pub(crate) fn wait(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        std::thread::sleep(self.next.min(self.deadline - now));
        self.next = (self.next * 2).min(Duration::from_millis(10));
        true
    }
}

/// How long teardown waits for a cgroup to empty, and for rmdir to stop saying EBUSY.
pub(crate) const DESTROY_TIMEOUT: Duration = Duration::from_secs(10);

/// Removes a cgroup directory with a bounded retry on EBUSY. Child cgroups found inside (a test
/// may make its own) are emptied with `kill_inside` and removed first, deepest first. A directory
/// that is already gone counts as removed.
pub(crate) fn remove_dir(
    dir: &Path,
    deadline: Instant,
    kill_inside: &dyn Fn(&Path, Instant) -> Result<(), CgroupError>,
) -> Result<(), CgroupError> {
    let mut backoff = Backoff::new(deadline);
    loop {
        let err = match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => e,
        };
        if !matches!(Errno::from_raw(err.raw_os_error().unwrap_or(0)), Errno::EBUSY | Errno::ENOTEMPTY) {
            return Err(CgroupError::Remove { path: dir.to_owned(), source: err });
        }
        for child in child_dirs(dir)? {
            kill_inside(&child, deadline)?;
            remove_dir(&child, deadline, kill_inside)?;
        }
        if !procs(dir)?.is_empty() {
            kill_inside(dir, deadline)?;
        }
        if !backoff.wait() {
            return Err(CgroupError::Remove { path: dir.to_owned(), source: err });
        }
    }
}

/// The sub-directories (child cgroups) of a cgroup directory.
pub(crate) fn child_dirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(CgroupError::Read { path: dir.to_owned(), source }),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CgroupError::Read { path: dir.to_owned(), source })?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(entry.path());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_finds_the_exact_key() {
        let p = Path::new("/x/memory.events");
        let text = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(keyed(p, text, "oom_kill").unwrap(), Some(2));
        assert_eq!(keyed(p, text, "oom").unwrap(), Some(3));
        assert_eq!(keyed(p, text, "absent").unwrap(), None);
        let err = keyed(p, "max x\n", "max").unwrap_err().to_string();
        assert!(err.contains("/x/memory.events"), "{err}");
    }

    #[test]
    fn pids_and_numbers_parse_or_name_the_file() {
        let p = Path::new("/x/cgroup.procs");
        assert_eq!(parse_pids(p, "12\n345\n").unwrap(), vec![12, 345]);
        assert_eq!(parse_pids(p, "").unwrap(), Vec::<i32>::new());
        assert!(parse_pids(p, "12\nab\n").unwrap_err().to_string().contains("/x/cgroup.procs"));
        assert_eq!(parse_u64(p, "67108864\n").unwrap(), 67108864);
        assert!(parse_u64(p, "max\n").is_err());
    }
}
