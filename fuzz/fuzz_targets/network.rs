//! `NetworkSpec`: the input's lines are a CIDR and an optional host address (`from_cidr`), and
//! with a third line also containerv's (address, netmask, host) form (`from_parts`). The first
//! 9 bytes, read as (address, prefix length, host), also go through `NetworkSpec::new`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or("");
    let second = lines.next();
    cvtest_spec::props::network(first, second);
    if let (Some(second), Some(third)) = (second, lines.next()) {
        cvtest_spec::props::network_parts(first, second, third);
    }
    if let Some(raw) = data.get(..9) {
        let word = |b: &[u8]| u32::from_be_bytes(b.try_into().expect("4 bytes"));
        cvtest_spec::props::network_typed(word(&raw[..4]), raw[4], word(&raw[5..9]));
    }
});
