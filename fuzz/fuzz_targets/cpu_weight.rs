//! `CpuWeight`: "1" to "10000". Any bytes; invalid UTF-8 is replaced (U+FFFD), so it still reaches the parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cvtest_spec::props::cpu_weight(&String::from_utf8_lossy(data));
});
