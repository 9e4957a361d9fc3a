//! Linux capabilities: the set a test's process keeps, and the `caps` setting that adds to it.
//!
//! A container's main process keeps only [`Capabilities::DEFAULT`] (Docker's default set without
//! `MKNOD`); `caps = "NET_ADMIN,SYS_PTRACE"` adds named ones. Names are written with or without
//! `CAP_`, in any case, separated by commas.

use std::fmt;
use std::ops::BitOr;
use std::str::FromStr;

use crate::parse::{ParseError, ValueKind};

/// Every capability name Linux knows, indexed by its number (`CAP_CHOWN` is 0). Kernels older
/// than the newest name lack the last ones (`/proc/sys/kernel/cap_last_cap`).
pub const CAPABILITY_NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// What the `caps` value accepts, for error messages (checked against [`CAPABILITY_NAMES`] by a
/// test).
pub(crate) const ACCEPTED: &str = "capability names separated by commas, with or without CAP_, in any case (\"NET_ADMIN,SYS_PTRACE\"), from: CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, LINUX_IMMUTABLE, NET_BIND_SERVICE, NET_BROADCAST, NET_ADMIN, NET_RAW, IPC_LOCK, IPC_OWNER, SYS_MODULE, SYS_RAWIO, SYS_CHROOT, SYS_PTRACE, SYS_PACCT, SYS_ADMIN, SYS_BOOT, SYS_NICE, SYS_RESOURCE, SYS_TIME, SYS_TTY_CONFIG, MKNOD, LEASE, AUDIT_WRITE, AUDIT_CONTROL, SETFCAP, MAC_OVERRIDE, MAC_ADMIN, SYSLOG, WAKE_ALARM, BLOCK_SUSPEND, AUDIT_READ, PERFMON, BPF, CHECKPOINT_RESTORE (for every capability, use privileged = true instead)";

/// A set of Linux capabilities, bit `n` for capability number `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u64);

const fn bit(name: &str) -> u64 {
    let mut i = 0;
    while i < CAPABILITY_NAMES.len() {
        if const_eq(CAPABILITY_NAMES[i], name) {
            return 1 << i;
        }
        i += 1;
    }
    panic!("not a capability name")
}

const fn const_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

impl Capabilities {
    /// No capability.
    pub const NONE: Capabilities = Capabilities(0);
    /// What a test keeps unless told otherwise: Docker's default set without `MKNOD`. Enough to
    /// act as root on files (`CHOWN`, `DAC_OVERRIDE`, `FOWNER`, `FSETID`, `SETFCAP`), change
    /// user (`SETUID`, `SETGID`, `SETPCAP`), signal its own processes (`KILL`), bind low ports
    /// and use raw sockets in its own network namespace (`NET_BIND_SERVICE`, `NET_RAW`),
    /// `chroot` (`SYS_CHROOT`) and write to the audit log (`AUDIT_WRITE`); not enough to mount,
    /// load modules, set the clock, trace other processes or make device nodes.
    pub const DEFAULT: Capabilities = Capabilities(
        bit("CHOWN")
            | bit("DAC_OVERRIDE")
            | bit("FOWNER")
            | bit("FSETID")
            | bit("KILL")
            | bit("SETGID")
            | bit("SETUID")
            | bit("SETPCAP")
            | bit("NET_BIND_SERVICE")
            | bit("NET_RAW")
            | bit("SYS_CHROOT")
            | bit("AUDIT_WRITE")
            | bit("SETFCAP"),
    );

    /// The set with bit `n` for capability number `n`; bits past the last known capability are
    /// dropped.
    pub const fn from_bits(bits: u64) -> Capabilities {
        Capabilities(bits & ((1 << CAPABILITY_NAMES.len()) - 1))
    }

    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The capability called `name` (with or without `CAP_`, any case), alone in a set.
    pub fn named(name: &str) -> Option<Capabilities> {
        let upper = name.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        CAPABILITY_NAMES.iter().position(|n| *n == bare).map(|i| Capabilities(1 << i))
    }

    pub const fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names in the set, lowest number first, without `CAP_`.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        CAPABILITY_NAMES.iter().enumerate().filter(move |(i, _)| self.0 & (1 << i) != 0).map(|(_, n)| *n)
    }
}

impl BitOr for Capabilities {
    type Output = Capabilities;
    fn bitor(self, rhs: Capabilities) -> Capabilities {
        Capabilities(self.0 | rhs.0)
    }
}

impl FromStr for Capabilities {
    type Err = ParseError;

    /// `"NET_ADMIN,cap_sys_ptrace"`; `""` is the empty set.
    fn from_str(input: &str) -> Result<Self, ParseError> {
        let refuse = |reason: String| ParseError::new(ValueKind::Capabilities, input, reason);
        if input.trim().is_empty() {
            return Ok(Capabilities::NONE);
        }
        let mut set = Capabilities::NONE;
        for name in input.split(',') {
            if name.trim().is_empty() {
                return Err(refuse("an empty name between commas".to_owned()));
            }
            match Capabilities::named(name) {
                Some(c) => set = set | c,
                None if name.trim().eq_ignore_ascii_case("all") => {
                    return Err(refuse("\"ALL\" is not a capability name".to_owned()))
                }
                None => return Err(refuse(format!("unknown capability {:?}", name.trim()))),
            }
        }
        Ok(set)
    }
}

impl fmt::Display for Capabilities {
    /// The names, lowest number first, comma-separated, without `CAP_`: `NET_ADMIN,SYS_PTRACE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_dockers_without_mknod() {
        let names: Vec<&str> = Capabilities::DEFAULT.names().collect();
        assert_eq!(
            names,
            [
                "CHOWN",
                "DAC_OVERRIDE",
                "FOWNER",
                "FSETID",
                "KILL",
                "SETGID",
                "SETUID",
                "SETPCAP",
                "NET_BIND_SERVICE",
                "NET_RAW",
                "SYS_CHROOT",
                "AUDIT_WRITE",
                "SETFCAP"
            ]
        );
        // The kernel's numbers (linux/capability.h).
        // Docker's default is 0xa80425fb, MKNOD (bit 27) included.
        assert_eq!(Capabilities::DEFAULT.bits(), 0xa00425fb);
        assert_eq!(Capabilities::named("SYS_ADMIN").unwrap().bits(), 1 << 21);
        assert_eq!(Capabilities::named("CHECKPOINT_RESTORE").unwrap().bits(), 1 << 40);
    }

    #[test]
    fn parses_names_in_any_spelling() {
        let c: Capabilities = "NET_ADMIN, cap_sys_ptrace,Cap_Net_Admin".parse().unwrap();
        assert_eq!(c.to_string(), "NET_ADMIN,SYS_PTRACE");
        assert_eq!(c.to_string().parse::<Capabilities>().unwrap(), c);
        assert_eq!("".parse::<Capabilities>().unwrap(), Capabilities::NONE);
        assert_eq!(Capabilities::NONE.to_string(), "");
    }

    #[test]
    fn refusals_say_what_is_accepted() {
        for (bad, why) in [
            ("NET_ADMN", "unknown capability \"NET_ADMN\""),
            ("NET_ADMIN,,SYS_TIME", "an empty name"),
            ("all", "\"ALL\" is not a capability name"),
            ("CAP_", "unknown capability"),
        ] {
            let e = bad.parse::<Capabilities>().unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(why) && msg.contains("SYS_PTRACE") && msg.contains("privileged"), "{msg}");
            assert_eq!(e.input, bad);
        }
    }

    #[test]
    fn accepted_lists_every_name() {
        let listed = ACCEPTED.split_once("from: ").unwrap().1;
        let listed = listed.split(" (").next().unwrap();
        let listed: Vec<&str> = listed.split(", ").collect();
        assert_eq!(listed, CAPABILITY_NAMES);
    }
}
