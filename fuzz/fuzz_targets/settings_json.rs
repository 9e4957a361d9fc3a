//! `TestSettings` read from JSON (the settings dump of a test binary), as raw bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cvtest_spec::props::settings_json(data);
});
