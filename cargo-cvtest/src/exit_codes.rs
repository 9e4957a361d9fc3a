//! The exit codes of `cargo cvtest`. Documented in `--help` and the README; stable.

/// Every selected test passed (or ended as it was expected to, such as an expected OOM).
pub(crate) const OK: i32 = 0;
/// A usage error: a bad flag or value, a bad config file. Nothing was built or run.
pub(crate) const USAGE: i32 = 2;
/// At least one test failed: FAIL, OOM, TIMEOUT, a signal, or a container that could not be set up.
pub(crate) const TEST_FAILED: i32 = 100;
/// `cargo test --no-run` failed; cargo's output says why.
pub(crate) const BUILD_FAILED: i32 = 101;
/// Setup failed before tests could run: cargo metadata, listing the tests, missing privileges.
pub(crate) const SETUP_FAILED: i32 = 102;
/// Interrupted by a signal: the exit code is 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
pub(crate) const INTERRUPTED_BASE: i32 = 128;
