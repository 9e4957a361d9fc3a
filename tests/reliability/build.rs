//! Generates the load tests: 500 tests with a veth each (a /30 subnet of their own in
//! 10.180.0.0/21, so that they may run at the same time), 500 with `network = "auto"`, and 2,000
//! plain tests.

use std::fmt::Write as _;

/// Tests with a veth.
const NETWORKED: u32 = 500;
/// Tests without one.
const PLAIN: u32 = 2000;

fn main() {
    let mut s = String::new();
    s.push_str("pub mod net {\n");
    for i in 0..NETWORKED {
        // /30 number i: network 10.180.0.0 + 4i, host end +1, container +2.
        let base = 4 * i;
        let (c, d) = (base / 256, base % 256 + 2);
        let addr = format!("10.180.{c}.{d}");
        writeln!(
            s,
            "    #[cvtest::cv_test(network = \"{addr}/30\")]\n    fn n{i:03}() {{ crate::load::check_networked(\"{addr}\"); }}"
        )
        .unwrap();
    }
    s.push_str("}\npub mod auto {\n");
    for i in 0..NETWORKED {
        // `network = "auto"`: a free /30 of the pool each, read from the environment.
        writeln!(
            s,
            "    #[cvtest::cv_test(network = \"auto\")]\n    fn a{i:03}() {{ crate::load::check_networked(&std::env::var(\"CVTEST_NET_ADDRESS\").unwrap()); }}"
        )
        .unwrap();
    }
    s.push_str("}\npub mod plain {\n");
    for i in 0..PLAIN {
        writeln!(s, "    #[test]\n    fn p{i:04}() {{ crate::load::check_plain(); }}").unwrap();
    }
    s.push_str("}\n");
    let out = std::path::Path::new(&std::env::var_os("OUT_DIR").unwrap()).join("load_tests.rs");
    std::fs::write(out, s).unwrap();
    println!("cargo::rerun-if-changed=build.rs");
}
