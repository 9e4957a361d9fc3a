//! Privileged integration tests of the `cvtest` library: real cgroups, namespaces, veths and
//! child processes. As root they run for real; otherwise each reports itself ignored with the
//! reason (never passed, never failed).
//!
//! Each module exposes `pub fn trials() -> Vec<Trial>` built with [`support::privileged`].

mod macro_fixture;
mod support;

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let mut trials: Vec<libtest_mimic::Trial> = Vec::new();
    // Modules add their trials here, e.g. `trials.extend(cgroup::trials());`
    trials.extend(macro_fixture::trials());
    let conclusion = libtest_mimic::run(&args, trials);
    conclusion.exit();
}
