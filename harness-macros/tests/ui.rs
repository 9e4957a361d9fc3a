//! Compile-time checks of `#[cv_test]`: each `ui/*.rs` must fail to compile with exactly the
//! errors in its `.stderr` (regenerate with `TRYBUILD=overwrite`, then review the diff).

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
