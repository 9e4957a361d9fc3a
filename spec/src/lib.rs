//! The one value parser of cvtest.
//!
//! Every limit, address, duration and capability list that a user can write — in `#[cv_test(...)]` (checked at
//! compile time by the macro), on the `cargo cvtest` command line, in a config file, or through
//! the library's builder — is parsed here, so that all front ends accept exactly the same
//! language and report the same errors.
//!
//! Errors name the value and say what is accepted; the caller adds *where* (a span, a flag, a
//! file and key).

#![deny(unsafe_code)]

mod caps;
mod dump;
pub mod libtest;
mod network;
mod parse;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod props;
mod settings;

pub use caps::{Capabilities, CAPABILITY_NAMES};
pub use dump::{
    DumpError, DumpedTest, SettingsDump, ENV_LIST_SETTINGS, SETTINGS_DUMP_VERSION, SETTINGS_LINE_PREFIX,
};
pub use network::{
    subnets_overlap, HostAccess, NetworkPool, NetworkSetting, NetworkSpec, AUTO_PREFIX, DEFAULT_POOL,
    ENV_POOL,
};
pub use parse::{
    format_duration, parse_cpus, parse_duration, CpuList, CpuQuota, CpuWeight, MemoryLimit, ParseError,
    PidsLimit, ValueKind, MAX_DURATION,
};
pub use settings::{parse_bool, parse_hostname, SetError, TestSettings, SETTINGS_KEYS};

/// Default memory limit when cgroups are on and none is given: 1 GiB.
pub const DEFAULT_MEMORY: MemoryLimit = MemoryLimit::Bytes(1 << 30);
/// Default CPU weight when cgroups are on and none is given.
pub const DEFAULT_CPU_WEIGHT: CpuWeight = CpuWeight::DEFAULT;
/// Default pids limit when cgroups are on and none is given.
pub const DEFAULT_PIDS: PidsLimit = PidsLimit::Count(256);
