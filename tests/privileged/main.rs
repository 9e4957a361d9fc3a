//! Privileged integration tests of the `cvtest` library: real cgroups, namespaces, veths and
//! child processes. As root they run for real; otherwise each reports itself ignored with the
//! reason (never passed, never failed).
//!
//! Each module exposes `pub fn trials() -> Vec<Trial>` built with [`support::privileged`].
//! Workloads inside containers are this binary itself in a helper mode ([`helpers`]), selected
//! by an environment variable before libtest starts.

mod background;
mod cgroup;
mod confinement;
mod container;
mod helpers;
mod lab_rootless;
mod lease;
mod macro_fixture;
mod net;
mod netns_pool;
mod owner;
mod support;
mod userns;
mod zygote;

fn main() {
    // Zygotes started by the tests are this binary re-executed.
    cvtest::zygote::serve_if_requested();
    cgroup::run_helper_if_requested();
    if let Some(code) = helpers::run_if_requested() {
        std::process::exit(code);
    }
    let args = libtest_mimic::Arguments::from_args();
    let mut trials: Vec<libtest_mimic::Trial> = Vec::new();
    trials.extend(background::trials());
    trials.extend(cgroup::trials());
    trials.extend(confinement::trials());
    trials.extend(container::trials());
    trials.extend(lab_rootless::trials());
    trials.extend(lease::trials());
    trials.extend(macro_fixture::trials());
    trials.extend(net::trials());
    trials.extend(netns_pool::trials());
    trials.extend(owner::trials());
    trials.extend(userns::trials());
    trials.extend(zygote::trials());
    let conclusion = libtest_mimic::run(&args, trials);
    conclusion.exit();
}
