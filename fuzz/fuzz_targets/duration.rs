//! `parse_duration` / `format_duration`: "30s", "1m30s", "1.5s", .... Any bytes; invalid UTF-8 is replaced (U+FFFD), so it still reaches the parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cvtest_spec::props::duration(&String::from_utf8_lossy(data));
});
