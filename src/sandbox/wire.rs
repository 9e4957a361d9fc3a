//! An init plan on the wire: what a process sends its zygote (`crate::zygote`) so that the
//! zygote clones the container's init in its place.
//!
//! A request is one message: a header (protocol, clone flags, fd count), then the [`InitPlan`]
//! field by field (integers in native byte order, byte strings length-prefixed), with every fd of
//! the plan replaced by its index in the message's `SCM_RIGHTS` list. The receiver rebuilds the
//! plan around the fds it received ([`Received`]), with its own fd numbers. Both ends are the same
//! binary on the same machine (the zygote is this program re-executed), so there is no
//! versioning beyond [`PROTOCOL`]. Decoding checks every length and index: a malformed request
//! is refused, never trusted.
//!
//! Every struct and enum of the plan is destructured without `..` and every mount step matched
//! without `_`, so a new field or step does not compile until it crosses the wire too.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Mutex;

use super::init::{CapPlan, InitPlan, MainPlan, UserNsPlan};
use super::mounts::{MountPlan, Step};
use crate::sys::CStrArray;

/// Changes whenever the encoding does.
pub(crate) const PROTOCOL: u32 = 7;

/// The most fds a request carries (the plan's fds and the cgroup directory): far more than a plan
/// has (life, status, /dev/null, two output pipes, inherited stdio).
pub(crate) const MAX_FDS: usize = 32;

/// A request ready to send: the bytes, and the fds to pass along (in this order), as raw
/// numbers of fds the plan and the caller hold open until the request is sent.
pub(crate) struct Encoded {
    pub(crate) bytes: Vec<u8>,
    pub(crate) fds: Vec<RawFd>,
}

/// Why a request could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Another [`PROTOCOL`].
    Protocol,
    /// Fewer or more fds than the header says.
    Fds,
    /// Truncated, trailing bytes, a bad tag, an index out of range, a NUL inside a string.
    Content,
}

/// Encodes `clone3(flags)` of `plan`, into the cgroup directory `cgroup` when given.
pub(crate) fn encode(flags: u64, cgroup: Option<BorrowedFd<'_>>, plan: &InitPlan<'_>) -> Encoded {
    let InitPlan {
        join_cgroups,
        new_cgroup_ns,
        keep_fds,
        life,
        status,
        hostname,
        mounts,
        pid_ns,
        caps,
        userns,
        run_netns,
        join_netns,
        // Not sent: the zygote resets what it knows it changed.
        reset_signals: _,
        oom_adjust,
        main,
    } = plan;
    let MainPlan { program, argv, envp, cwd, stdio, keep_caps } = main;
    // The plan's fds, each once, in order of first mention; referred to by index. Every one of
    // them is an fd the init keeps (in the receiver they are all at 3 or above, stdio sources
    // included).
    let mut table: Vec<RawFd> = Vec::new();
    let mut index = |fd: RawFd| -> u32 {
        let i = table.iter().position(|&t| t == fd).unwrap_or_else(|| {
            table.push(fd);
            table.len() - 1
        });
        i as u32
    };
    let mut body = Out::default();
    body.u32(index(*life));
    body.u32(index(*status));
    for fd in stdio {
        body.u32(index(*fd));
    }
    body.bool(join_netns.is_some());
    if let Some(fd) = join_netns {
        body.u32(index(*fd));
    }
    for fd in keep_fds.iter() {
        index(*fd);
    }
    body.strings(join_cgroups.iter().map(CString::as_c_str));
    body.bool(*new_cgroup_ns);
    body.bytes(hostname);
    body.bool(*pid_ns);
    body.cstr(program);
    body.strings(argv.iter());
    body.strings(envp.iter());
    body.opt_cstr(*cwd);
    body.bool(caps.is_some());
    // The bounding set is not sent: the zygote knows its own.
    if let Some(CapPlan { last_cap, keep, init_keeps, bounding: _ }) = caps {
        body.u32(*last_cap);
        body.u64(*keep);
        body.u64(*init_keeps);
    }
    body.bool(keep_caps.is_some());
    if let Some(keep) = keep_caps {
        body.u64(*keep);
    }
    body.bool(userns.is_some());
    if let Some(UserNsPlan { clear_groups }) = userns {
        body.bool(*clear_groups);
    }
    body.bool(*oom_adjust);
    body.bool(*run_netns);
    encode_mounts(&mut body, mounts);

    let mut out = Out::default();
    out.u32(PROTOCOL);
    out.u64(flags);
    out.u32(table.len() as u32);
    out.bool(cgroup.is_some());
    out.0.extend_from_slice(&body.0);
    let mut fds = table;
    fds.extend(cgroup.map(|fd| fd.as_raw_fd()));
    Encoded { bytes: out.0, fds }
}

fn encode_mounts(out: &mut Out, mounts: &MountPlan) {
    let MountPlan { steps, slots } = mounts;
    out.u32(slots.len() as u32);
    out.u32(steps.len() as u32);
    for step in steps {
        match step {
            Step::MakePrivate => out.u8(0),
            Step::ReadOnlyTree { target } => {
                out.u8(1);
                out.cstr(target);
            }
            Step::RemountReadOnly { target, flags } => {
                out.u8(2);
                out.cstr(target);
                out.ulong(*flags);
            }
            Step::CloneTree { source, slot } => {
                out.u8(3);
                out.cstr(source);
                out.u32(*slot as u32);
            }
            Step::AttachTree { slot, target } => {
                out.u8(4);
                out.u32(*slot as u32);
                out.cstr(target);
            }
            Step::BindSelf { path } => {
                out.u8(5);
                out.cstr(path);
            }
            Step::Mount { source, target, fstype, flags, data } => {
                out.u8(6);
                out.cstr(source);
                out.cstr(target);
                out.cstr(fstype);
                out.ulong(*flags);
                out.opt_cstr(*data);
            }
            Step::Mkdir { path, mode, exist_ok } => {
                out.u8(7);
                out.cstr(path);
                out.u32(*mode);
                out.bool(*exist_ok);
            }
            Step::Mknod { path, major, minor } => {
                out.u8(8);
                out.cstr(path);
                out.u32(*major);
                out.u32(*minor);
            }
            Step::Symlink { target, link } => {
                out.u8(9);
                out.cstr(target);
                out.cstr(link);
            }
            Step::Chdir { path } => {
                out.u8(10);
                out.cstr(path);
            }
            Step::PivotRoot => out.u8(11),
            Step::Mask { target, dir } => {
                out.u8(12);
                out.cstr(target);
                out.bool(*dir);
            }
            Step::Touch { path } => {
                out.u8(13);
                out.cstr(path);
            }
            Step::MaskAs { first, target } => {
                out.u8(14);
                out.cstr(first);
                out.cstr(target);
            }
            Step::Overlay { target, userxattr } => {
                out.u8(15);
                out.cstr(target);
                out.bool(*userxattr);
            }
        }
    }
}

/// A decoded request: the plan rebuilt around the fds received with it.
pub(crate) struct Received {
    pub(crate) flags: u64,
    pub(crate) cgroup: Option<OwnedFd>,
    join_cgroups: Vec<CString>,
    new_cgroup_ns: bool,
    /// Every fd of the plan, sorted: the init keeps them all.
    keep: Vec<RawFd>,
    life: RawFd,
    status: RawFd,
    stdio: [RawFd; 3],
    hostname: Vec<u8>,
    mounts: MountPlan,
    pid_ns: bool,
    caps: Option<CapPlan>,
    keep_caps: Option<u64>,
    userns: Option<UserNsPlan>,
    oom_adjust: bool,
    run_netns: bool,
    join_netns: Option<RawFd>,
    program: CString,
    argv: CStrArray,
    envp: CStrArray,
    cwd: Option<CString>,
    /// Owns the fds the numbers above stand for.
    _fds: Vec<OwnedFd>,
}

impl Received {
    /// The plan, borrowing from the request.
    pub(crate) fn plan(&self) -> InitPlan<'_> {
        InitPlan {
            join_cgroups: &self.join_cgroups,
            new_cgroup_ns: self.new_cgroup_ns,
            keep_fds: &self.keep,
            life: self.life,
            status: self.status,
            hostname: &self.hostname,
            mounts: &self.mounts,
            pid_ns: self.pid_ns,
            caps: self.caps.as_ref().map(|c| CapPlan {
                last_cap: c.last_cap,
                keep: c.keep,
                init_keeps: c.init_keeps,
                bounding: c.bounding,
            }),
            userns: self.userns,
            run_netns: self.run_netns,
            join_netns: self.join_netns,
            // The receiver (a zygote) narrows it to what it knows it changed.
            reset_signals: crate::sys::ALL_SIGNALS,
            oom_adjust: self.oom_adjust,
            main: MainPlan {
                program: &self.program,
                argv: &self.argv,
                envp: &self.envp,
                cwd: self.cwd.as_deref(),
                stdio: self.stdio,
                keep_caps: self.keep_caps,
            },
        }
    }
}

/// Decodes a request and takes ownership of the fds that came with it (closed again on error).
pub(crate) fn decode(bytes: &[u8], mut fds: Vec<OwnedFd>) -> Result<Received, Malformed> {
    let mut r = In { buf: bytes, pos: 0 };
    if r.u32()? != PROTOCOL {
        return Err(Malformed::Protocol);
    }
    let flags = r.u64()?;
    let plan_fds = r.u32()? as usize;
    let with_cgroup = r.bool()?;
    if fds.len() != plan_fds + usize::from(with_cgroup) || plan_fds == 0 {
        return Err(Malformed::Fds);
    }
    let cgroup = if with_cgroup { fds.pop() } else { None };
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let fd = |r: &mut In<'_>| -> Result<RawFd, Malformed> {
        raw.get(r.u32()? as usize).copied().ok_or(Malformed::Content)
    };
    let life = fd(&mut r)?;
    let status = fd(&mut r)?;
    let stdio = [fd(&mut r)?, fd(&mut r)?, fd(&mut r)?];
    let join_netns = if r.bool()? { Some(fd(&mut r)?) } else { None };
    let join_cgroups = r.strings()?;
    let new_cgroup_ns = r.bool()?;
    let hostname = r.bytes()?.to_vec();
    let pid_ns = r.bool()?;
    let program = r.cstring()?;
    let argv = r.cstr_array()?;
    let envp = r.cstr_array()?;
    let cwd = r.opt_cstring()?;
    let caps = if r.bool()? {
        Some(CapPlan { last_cap: r.u32()?, keep: r.u64()?, init_keeps: r.u64()?, bounding: u64::MAX })
    } else {
        None
    };
    let keep_caps = if r.bool()? { Some(r.u64()?) } else { None };
    let userns = if r.bool()? { Some(UserNsPlan { clear_groups: r.bool()? }) } else { None };
    let oom_adjust = r.bool()?;
    let run_netns = r.bool()?;
    let mounts = decode_mounts(&mut r)?;
    if r.pos != bytes.len() {
        return Err(Malformed::Content);
    }
    let mut keep = raw.clone();
    keep.sort_unstable();
    Ok(Received {
        flags,
        cgroup,
        join_cgroups,
        new_cgroup_ns,
        keep,
        life,
        status,
        stdio,
        hostname,
        mounts,
        pid_ns,
        caps,
        keep_caps,
        userns,
        oom_adjust,
        run_netns,
        join_netns,
        program,
        argv,
        envp,
        cwd,
        _fds: fds,
    })
}

fn decode_mounts(r: &mut In<'_>) -> Result<MountPlan, Malformed> {
    let slots = r.u32()? as usize;
    let steps = r.u32()? as usize;
    // Each step takes at least a byte: a count beyond the bytes left is a lie.
    if slots > r.left() || steps > r.left() {
        return Err(Malformed::Content);
    }
    let slot = |r: &mut In<'_>| -> Result<usize, Malformed> {
        let s = r.u32()? as usize;
        if s < slots {
            Ok(s)
        } else {
            Err(Malformed::Content)
        }
    };
    let mut out = Vec::with_capacity(steps);
    for _ in 0..steps {
        out.push(match r.u8()? {
            0 => Step::MakePrivate,
            1 => Step::ReadOnlyTree { target: r.cstring()? },
            2 => Step::RemountReadOnly { target: r.cstring()?, flags: r.ulong()? },
            3 => Step::CloneTree { source: r.cstring()?, slot: slot(r)? },
            4 => Step::AttachTree { slot: slot(r)?, target: r.cstring()? },
            5 => Step::BindSelf { path: r.cstring()? },
            6 => Step::Mount {
                source: r.interned()?,
                target: r.cstring()?,
                fstype: r.interned()?,
                flags: r.ulong()?,
                data: if r.bool()? { Some(r.interned()?) } else { None },
            },
            7 => Step::Mkdir { path: r.cstring()?, mode: r.u32()?, exist_ok: r.bool()? },
            8 => Step::Mknod { path: r.cstring()?, major: r.u32()?, minor: r.u32()? },
            9 => Step::Symlink { target: r.interned()?, link: r.cstring()? },
            10 => Step::Chdir { path: r.cstring()? },
            11 => Step::PivotRoot,
            12 => Step::Mask { target: r.cstring()?, dir: r.bool()? },
            13 => Step::Touch { path: r.cstring()? },
            14 => Step::MaskAs { first: r.cstring()?, target: r.cstring()? },
            15 => Step::Overlay { target: r.cstring()?, userxattr: r.bool()? },
            _ => return Err(Malformed::Content),
        });
    }
    Ok(MountPlan { steps: out, slots: (0..slots).map(|_| Cell::new(None)).collect() })
}

#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_ne_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_ne_bytes());
    }
    fn ulong(&mut self, v: libc::c_ulong) {
        self.0.extend_from_slice(&v.to_ne_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn cstr(&mut self, s: &CStr) {
        self.bytes(s.to_bytes());
    }
    fn opt_cstr(&mut self, s: Option<&CStr>) {
        self.bool(s.is_some());
        if let Some(s) = s {
            self.cstr(s);
        }
    }
    fn strings<'s>(&mut self, items: impl ExactSizeIterator<Item = &'s CStr>) {
        self.u32(items.len() as u32);
        for s in items {
            self.cstr(s);
        }
    }
}

struct In<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> In<'a> {
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(Malformed::Content)?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }
    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }
    fn bool(&mut self) -> Result<bool, Malformed> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Malformed::Content),
        }
    }
    fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, Malformed> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_ne_bytes(a))
    }
    fn ulong(&mut self) -> Result<libc::c_ulong, Malformed> {
        let b = self.take(std::mem::size_of::<libc::c_ulong>())?;
        let mut a = [0u8; std::mem::size_of::<libc::c_ulong>()];
        a.copy_from_slice(b);
        Ok(libc::c_ulong::from_ne_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn cstring(&mut self) -> Result<CString, Malformed> {
        CString::new(self.bytes()?).map_err(|_| Malformed::Content)
    }
    fn opt_cstring(&mut self) -> Result<Option<CString>, Malformed> {
        Ok(if self.bool()? { Some(self.cstring()?) } else { None })
    }
    fn strings(&mut self) -> Result<Vec<CString>, Malformed> {
        let n = self.u32()? as usize;
        // Each string takes at least its 4-byte length.
        if n > self.left() / 4 {
            return Err(Malformed::Content);
        }
        (0..n).map(|_| self.cstring()).collect()
    }
    /// [`In::strings`] into one buffer (an environment: no allocation per variable).
    fn cstr_array(&mut self) -> Result<CStrArray, Malformed> {
        let n = self.u32()? as usize;
        if n > self.left() / 4 {
            return Err(Malformed::Content);
        }
        let mut array = crate::sys::CStrArrayBuilder::with_capacity(n, self.left());
        for _ in 0..n {
            array.push(&[self.bytes()?]).map_err(|()| Malformed::Content)?;
        }
        Ok(array.finish())
    }
    /// A string the plan holds as `&'static CStr` (file system types, mount options, link
    /// targets: constants of the mount plan, a handful of distinct values).
    fn interned(&mut self) -> Result<&'static CStr, Malformed> {
        intern(self.bytes()?)
    }
}

/// The most distinct interned strings: the mount plan has about ten constants.
const MAX_INTERNED: usize = 64;

/// Interns `bytes` as a `&'static CStr`, leaking each distinct value once.
fn intern(bytes: &[u8]) -> Result<&'static CStr, Malformed> {
    static TABLE: Mutex<Vec<&'static CStr>> = Mutex::new(Vec::new());
    let mut table = TABLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(s) = table.iter().find(|s| s.to_bytes() == bytes) {
        return Ok(s);
    }
    if table.len() >= MAX_INTERNED {
        return Err(Malformed::Content);
    }
    let s: &'static CStr = Box::leak(CString::new(bytes).map_err(|_| Malformed::Content)?.into_boxed_c_str());
    table.push(s);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Rootfs;
    use std::os::fd::AsFd;
    use std::path::{Path, PathBuf};

    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
    }

    fn cstrings(v: &[&str]) -> Vec<CString> {
        v.iter().map(|s| CString::new(*s).unwrap()).collect()
    }

    /// A copy of each fd, as the receiving end of `SCM_RIGHTS` would get. `open` are the fds the
    /// numbers may stand for, besides this process's stdin and stderr.
    fn received(fds: &[RawFd], open: &[&OwnedFd]) -> Vec<OwnedFd> {
        let (stdin, stderr) = (std::io::stdin(), std::io::stderr());
        let stdio = [stdin.as_fd(), stderr.as_fd()];
        let all: Vec<BorrowedFd<'_>> = open.iter().map(|fd| fd.as_fd()).chain(stdio).collect();
        fds.iter()
            .map(|&raw| {
                let fd = all.iter().find(|fd| fd.as_raw_fd() == raw).expect("an fd of the test");
                fd.try_clone_to_owned().expect("dup")
            })
            .collect()
    }

    #[test]
    fn a_plan_round_trips_with_the_receivers_fd_numbers() {
        let (life_r, _life_w) = pipe();
        let (_status_r, status_w) = pipe();
        let (_out_r, out_w) = pipe();
        let (cg, _cg_w) = pipe();
        let mounts = MountPlan::build(
            &Rootfs::Host { writable: vec![PathBuf::from("/tmp/w"), PathBuf::from("/srv")] },
            true,
            true,
            &[Path::new("/tmp/ci/repo")],
            true,
            true,
            &[PathBuf::from("/var/lib/u")],
        );
        let join = cstrings(&["/sys/fs/cgroup/pids/cvtest.1.2.3/tasks"]);
        let argv = CStrArray::new(cstrings(&["prog", "--exact", "a b"]));
        let envp = CStrArray::new(cstrings(&["A=1", "CVTEST_CONTAINER=x"]));
        let cwd = CString::new("/work").unwrap();
        let program = CString::new("/bin/prog").unwrap();
        // Stands for a pooled network namespace's fd.
        let (netns, _netns_w) = pipe();
        let mut keep = vec![life_r.as_raw_fd(), status_w.as_raw_fd(), out_w.as_raw_fd(), netns.as_raw_fd()];
        keep.sort_unstable();
        let plan = InitPlan {
            join_cgroups: &join,
            new_cgroup_ns: true,
            keep_fds: &keep,
            life: life_r.as_raw_fd(),
            status: status_w.as_raw_fd(),
            hostname: b"cvtest-7",
            mounts: &mounts,
            pid_ns: true,
            caps: Some(CapPlan { last_cap: 40, keep: 0x3fff_0000_00ff, init_keeps: 1 << 5, bounding: 0xff }),
            userns: Some(UserNsPlan { clear_groups: true }),
            run_netns: true,
            join_netns: Some(netns.as_raw_fd()),
            reset_signals: crate::sys::ALL_SIGNALS,
            oom_adjust: true,
            // stdin from an fd the plan does not otherwise name (inherited 0), stdout to the pipe.
            main: MainPlan {
                program: &program,
                argv: &argv,
                envp: &envp,
                cwd: Some(&cwd),
                stdio: [0, out_w.as_raw_fd(), 2],
                keep_caps: Some(0x3fff_0000_00ff),
            },
        };
        let enc = encode(0x1234, Some(cg.as_fd()), &plan);
        // life, status, 0, out, 2, the network namespace, then the cgroup directory.
        assert_eq!(enc.fds.len(), 7);
        let got = decode(&enc.bytes, received(&enc.fds, &[&life_r, &status_w, &out_w, &netns, &cg]))
            .expect("decodes");
        assert_eq!(got.flags, 0x1234);
        assert!(got.cgroup.is_some());
        let p = got.plan();
        assert!(p.keep_fds.windows(2).all(|w| w[0] < w[1]) && p.keep_fds.len() == 6);
        let joined = p.join_netns.expect("the pooled namespace's fd");
        assert!(p.keep_fds.contains(&joined) && ![p.life, p.status, p.main.stdio[1]].contains(&joined));
        for fd in [p.life, p.status].iter().chain(&p.main.stdio) {
            assert!(p.keep_fds.contains(fd), "{fd} kept");
        }
        assert_ne!(p.life, life_r.as_raw_fd(), "the receiver's own copy");
        assert_eq!(p.join_cgroups, &join[..]);
        assert!(p.new_cgroup_ns && p.pid_ns && p.oom_adjust);
        assert_eq!(p.hostname, b"cvtest-7");
        assert_eq!(p.main.program, program.as_c_str());
        assert!(p.main.argv.iter().eq(argv.iter()));
        assert!(p.main.envp.iter().eq(envp.iter()));
        assert_eq!(p.main.cwd, Some(cwd.as_c_str()));
        let caps = p.caps.as_ref().expect("caps");
        assert_eq!((caps.last_cap, caps.keep, caps.init_keeps), (40, 0x3fff_0000_00ff, 1 << 5));
        // Not sent: the zygote fills in its own.
        assert_eq!(caps.bounding, u64::MAX);
        assert_eq!(p.main.keep_caps, Some(0x3fff_0000_00ff));
        assert!(p.userns.is_some_and(|u| u.clear_groups) && p.run_netns);
        assert!(super::super::mounts::render(p.mounts).contains("masking"), "a hardened plan masks paths");
        assert_eq!(super::super::mounts::render(p.mounts), super::super::mounts::render(&mounts));
        assert_eq!(p.mounts.slots.len(), mounts.slots.len());
    }

    #[test]
    fn malformed_requests_are_refused() {
        let (life_r, _w) = pipe();
        let mounts = MountPlan::new(&Rootfs::default(), false, false, &[]);
        let argv = CStrArray::new(cstrings(&["p"]));
        let envp = CStrArray::new(Vec::new());
        let program = CString::new("/p").unwrap();
        let fd = life_r.as_raw_fd();
        let plan = InitPlan {
            join_cgroups: &[],
            new_cgroup_ns: false,
            keep_fds: &[fd],
            life: fd,
            status: fd,
            hostname: b"h",
            mounts: &mounts,
            pid_ns: false,
            caps: None,
            userns: None,
            run_netns: false,
            join_netns: None,
            reset_signals: crate::sys::ALL_SIGNALS,
            oom_adjust: false,
            main: MainPlan {
                program: &program,
                argv: &argv,
                envp: &envp,
                cwd: None,
                stdio: [fd; 3],
                keep_caps: None,
            },
        };
        let enc = encode(0, None, &plan);
        assert_eq!(enc.fds.len(), 1);
        assert!(decode(&enc.bytes, received(&enc.fds, &[&life_r])).is_ok());
        assert_eq!(decode(&enc.bytes, Vec::new()).err(), Some(Malformed::Fds));
        for cut in [0, 3, 10, enc.bytes.len() - 1] {
            assert!(decode(&enc.bytes[..cut], received(&enc.fds, &[&life_r])).is_err(), "cut at {cut}");
        }
        let mut longer = enc.bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer, received(&enc.fds, &[&life_r])).err(), Some(Malformed::Content));
        let mut other = enc.bytes.clone();
        other[0] ^= 0xff;
        assert_eq!(decode(&other, received(&enc.fds, &[&life_r])).err(), Some(Malformed::Protocol));
    }
}
