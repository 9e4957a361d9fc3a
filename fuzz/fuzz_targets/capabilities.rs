//! `Capabilities`: "NET_ADMIN,cap_sys_ptrace", "", .... Any bytes; invalid UTF-8 is replaced (U+FFFD), so it still reaches the parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cvtest_spec::props::capabilities(&String::from_utf8_lossy(data));
});
