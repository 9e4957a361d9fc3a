//! The settings dump: how a test binary that uses `#[cv_test]` tells `cargo cvtest` the settings
//! of its tests without running any.
//!
//! With [`ENV_LIST_SETTINGS`]`=1` in its environment, such a binary prints one line,
//! [`SETTINGS_LINE_PREFIX`] followed by a [`SettingsDump`] as JSON, before libtest starts, then
//! goes on as usual. So `bin --list --format terse` gives the test list and the settings at once;
//! a binary without `#[cv_test]` tests prints only the list.
//!
//! This module is the whole contract: the writer (the `#[cv_test]` runtime) and the reader
//! (`cargo cvtest`, through [`SettingsDump::from_json`]) use only what is defined here. A change
//! of the format bumps [`SETTINGS_DUMP_VERSION`]; the reader then refuses the other version with
//! [`DumpError::Version`] before it reads anything else.

use serde::{Deserialize, Serialize};

use crate::TestSettings;

/// Set to `1` to make a test binary print its settings line before libtest starts.
pub const ENV_LIST_SETTINGS: &str = "CVTEST_LIST_SETTINGS";
/// What the settings line starts with; the rest of the line is the JSON.
pub const SETTINGS_LINE_PREFIX: &str = "cvtest-settings: ";
/// The [`SettingsDump::version`] this crate writes.
pub const SETTINGS_DUMP_VERSION: u32 = 1;

/// Everything one test binary declares with `#[cv_test]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsDump {
    pub version: u32,
    /// Sorted by name.
    pub tests: Vec<DumpedTest>,
}

/// One `#[cv_test]` test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpedTest {
    /// The name exactly as libtest's `--list` prints it: the module path without the crate's
    /// name, then the function's name.
    pub name: String,
    /// Only the keys the attribute sets.
    pub settings: TestSettings,
    pub should_panic: bool,
    pub ignored: bool,
}

/// A settings line that this version of the contract cannot read.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(
        "the settings dump has version {found}; this cargo-cvtest reads version {SETTINGS_DUMP_VERSION} \
         (rebuild with a matching cvtest)"
    )]
    Version { found: u64 },
    #[error("bad `cvtest-settings:` line")]
    Json(#[source] serde_json::Error),
}

impl SettingsDump {
    /// The JSON of the settings line in a test binary's output, if it has one.
    pub fn find_json(stdout: &str) -> Option<&str> {
        stdout.lines().find_map(|line| line.strip_prefix(SETTINGS_LINE_PREFIX))
    }

    /// Reads the JSON of a settings line. The version is read first, alone, so that a dump of
    /// another version is refused as such, whatever the shape of the rest.
    pub fn from_json(json: &str) -> Result<SettingsDump, DumpError> {
        #[derive(Deserialize)]
        struct Head {
            version: u64,
        }
        let head: Head = serde_json::from_str(json).map_err(DumpError::Json)?;
        if head.version != u64::from(SETTINGS_DUMP_VERSION) {
            return Err(DumpError::Version { found: head.version });
        }
        serde_json::from_str(json).map_err(DumpError::Json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_reads_the_line() {
        let out = "cvtest-settings: {\"version\":1,\"tests\":[{\"name\":\"net::peer\",\"settings\":{\"memory\":\"64M\"},\"should_panic\":false,\"ignored\":true}]}\nnet::peer: test\n";
        let dump = SettingsDump::from_json(SettingsDump::find_json(out).unwrap()).unwrap();
        assert_eq!(dump.version, SETTINGS_DUMP_VERSION);
        assert_eq!(dump.tests[0].name, "net::peer");
        assert_eq!(dump.tests[0].settings.memory.unwrap().to_string(), "64M");
        assert!(dump.tests[0].ignored && !dump.tests[0].should_panic);
        assert_eq!(SettingsDump::find_json("net::peer: test\n"), None);
    }

    #[test]
    fn refuses_another_version_whatever_its_shape() {
        for json in [r#"{"version":2,"tests":[]}"#, r#"{"tests":{"renamed":true},"version":2}"#] {
            match SettingsDump::from_json(json) {
                Err(e @ DumpError::Version { found: 2 }) => {
                    let text = e.to_string();
                    assert!(text.contains("version 2") && text.contains("reads version 1"), "{text}");
                }
                other => panic!("{json}: {other:?}"),
            }
        }
        assert!(matches!(SettingsDump::from_json(r#"{"tests":[]}"#), Err(DumpError::Json(_))));
        let bad_value = r#"{"version":1,"tests":[{"name":"x","settings":{"memory":"1X"},"should_panic":false,"ignored":false}]}"#;
        assert!(matches!(SettingsDump::from_json(bad_value), Err(DumpError::Json(_))));
    }
}
