//! Current usage of one cgroup (memory, pids, CPU time), cheap enough to read every few ms.
//!
//! A [`UsageProbe`] opens the counter files once and re-reads each with one `pread(2)` at
//! offset 0 (kernfs restarts the file's text on a read at 0): per sample three syscalls
//! instead of three open/read/close triples. It holds no reference to its [`super::Cgroup`]:
//! once the cgroup is removed the reads fail (ENODEV), which is how a sampler learns that the
//! container is gone. A counter the kernel does not have is `None`, never 0.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{fs, CgroupError};

/// What a probe read: `None` for what the kernel does not count in this cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// `memory.current` (v2) / `memory.usage_in_bytes` (v1).
    pub memory_bytes: Option<u64>,
    /// `pids.current`.
    pub pids: Option<u64>,
    /// CPU time used so far, user + system: `cpu.stat` `usage_usec` (v2), `cpuacct.usage` (v1,
    /// ns), else `cpuacct.stat` (clock ticks).
    pub cpu: Option<Duration>,
}

/// How a counter file's text becomes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// One number (bytes, count).
    Number,
    /// One number of nanoseconds.
    Nanos,
    /// `usage_usec N` in a keyed file (v2 `cpu.stat`).
    UsageUsec,
    /// `user N` + `system N` clock ticks (v1 `cpuacct.stat`); the tick length in ns.
    Ticks(u64),
}

#[derive(Debug)]
struct Counter {
    file: File,
    path: PathBuf,
    format: Format,
}

/// Open counter files of one cgroup; see the module docs. `Send`, so one sampler thread can
/// hold the probes of every running container.
#[derive(Debug)]
pub struct UsageProbe {
    memory: Option<Counter>,
    pids: Option<Counter>,
    cpu: Option<Counter>,
}

impl Counter {
    /// Opens `path`; a file the kernel does not have is `None`.
    fn open(path: PathBuf, format: Format) -> Result<Option<Counter>, CgroupError> {
        match File::open(&path) {
            Ok(file) => Ok(Some(Counter { file, path, format })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CgroupError::Read { path, source }),
        }
    }

    fn read(&self, buf: &mut [u8]) -> Result<u64, CgroupError> {
        let n = loop {
            match self.file.read_at(buf, 0) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(CgroupError::Read { path: self.path.clone(), source }),
            }
        };
        let text = std::str::from_utf8(&buf[..n])
            .map_err(|_| CgroupError::Parse { path: self.path.clone(), reason: "not UTF-8".into() })?;
        parse(&self.path, text, self.format)
    }
}

/// The value of a counter file's `text`.
pub(crate) fn parse(path: &Path, text: &str, format: Format) -> Result<u64, CgroupError> {
    let missing = |key: &str| CgroupError::Parse {
        path: path.to_owned(),
        reason: format!("no {key:?} line in {text:?}"),
    };
    match format {
        Format::Number | Format::Nanos => fs::parse_u64(path, text),
        Format::UsageUsec => fs::keyed(path, text, "usage_usec")?.ok_or_else(|| missing("usage_usec")),
        Format::Ticks(tick_ns) => {
            let user = fs::keyed(path, text, "user")?.ok_or_else(|| missing("user"))?;
            let system = fs::keyed(path, text, "system")?.ok_or_else(|| missing("system"))?;
            Ok(user.saturating_add(system).saturating_mul(tick_ns))
        }
    }
}

impl UsageProbe {
    /// Opens the counters at these paths (`None`: the kernel has no such counter here).
    pub(crate) fn open(
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
        cpu: Option<(PathBuf, Format)>,
    ) -> Result<UsageProbe, CgroupError> {
        Ok(UsageProbe {
            memory: memory.map(|p| Counter::open(p, Format::Number)).transpose()?.flatten(),
            pids: pids.map(|p| Counter::open(p, Format::Number)).transpose()?.flatten(),
            cpu: cpu.map(|(p, f)| Counter::open(p, f)).transpose()?.flatten(),
        })
    }

    /// Reads every counter once. An error (the cgroup was removed: ENODEV) names the file.
    pub fn read(&self) -> Result<Usage, CgroupError> {
        let mut buf = [0u8; 1024];
        let mut value = |c: &Option<Counter>| c.as_ref().map(|c| c.read(&mut buf)).transpose();
        let memory_bytes = value(&self.memory)?;
        let pids = value(&self.pids)?;
        let cpu = match &self.cpu {
            Some(c @ Counter { format: Format::UsageUsec, .. }) => {
                Some(Duration::from_micros(c.read(&mut buf)?))
            }
            Some(c) => Some(Duration::from_nanos(c.read(&mut buf)?)),
            None => None,
        };
        Ok(Usage { memory_bytes, pids, cpu })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counters_again_and_again_and_none_for_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("memory.current"), "1048576\n").unwrap();
        std::fs::write(p("cpu.stat"), "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n").unwrap();
        let probe = UsageProbe::open(
            Some(p("memory.current")),
            Some(p("pids.current")),
            Some((p("cpu.stat"), Format::UsageUsec)),
        )
        .unwrap();
        let u = probe.read().unwrap();
        assert_eq!(
            u,
            Usage { memory_bytes: Some(1 << 20), pids: None, cpu: Some(Duration::from_micros(2500)) }
        );
        // Rewritten in place, read again through the same fd.
        std::fs::write(p("memory.current"), "2097152\n").unwrap();
        assert_eq!(probe.read().unwrap().memory_bytes, Some(2 << 20));
    }

    #[test]
    fn parses_v1_cpu_formats_and_names_the_file_on_errors() {
        let path = Path::new("/sys/fs/cgroup/cpuacct/x/cpuacct.stat");
        assert_eq!(parse(path, "user 3\nsystem 2\n", Format::Ticks(10_000_000)).unwrap(), 50_000_000);
        assert_eq!(parse(path, "123456\n", Format::Nanos).unwrap(), 123_456);
        let e = parse(path, "user 3\n", Format::Ticks(10_000_000)).unwrap_err();
        assert!(e.to_string().contains("cpuacct.stat"), "{e}");
    }
}
