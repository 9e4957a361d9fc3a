//! The settings dump: how a test binary that uses `#[cv_test]` tells `cargo cvtest` the settings
//! of its tests without running any.
//!
//! With [`ENV_LIST_SETTINGS`]`=1` in its environment, such a binary prints one line,
//! [`SETTINGS_LINE_PREFIX`] followed by a [`SettingsDump`] as JSON, before libtest starts, then
//! goes on as usual. So `bin --list --format terse` gives the test list and the settings at once;
//! a binary without `#[cv_test]` tests prints only the list.

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

impl SettingsDump {
    /// The JSON of the settings line in a test binary's output, if it has one.
    pub fn find_json(stdout: &str) -> Option<&str> {
        stdout.lines().find_map(|line| line.strip_prefix(SETTINGS_LINE_PREFIX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_reads_the_line() {
        let out = "cvtest-settings: {\"version\":1,\"tests\":[{\"name\":\"net::peer\",\"settings\":{\"memory\":\"64M\"},\"should_panic\":false,\"ignored\":true}]}\nnet::peer: test\n";
        let dump: SettingsDump = serde_json::from_str(SettingsDump::find_json(out).unwrap()).unwrap();
        assert_eq!(dump.version, SETTINGS_DUMP_VERSION);
        assert_eq!(dump.tests[0].name, "net::peer");
        assert_eq!(dump.tests[0].settings.memory.unwrap().to_string(), "64M");
        assert!(dump.tests[0].ignored && !dump.tests[0].should_panic);
        assert_eq!(SettingsDump::find_json("net::peer: test\n"), None);
    }
}
