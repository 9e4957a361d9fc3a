//! `TestSettings::set`, as attributes, config files and flags use it: one `key=value` a line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cvtest_spec::props::settings_set(&String::from_utf8_lossy(data));
});
