//! Integration tests of `cargo cvtest`: the real binary on fixture crates (tests/fixtures), with
//! real cgroups, namespaces and veths. Tests that create containers need root; without it they
//! report themselves ignored with the reason.

mod browser;
mod errors;
mod fixtures;
mod interrupt;
mod lab;
mod leases;
mod nextest;
mod reliability;
mod run;
mod runner_features;
mod select;
mod support;
mod timeline;

fn main() {
    let mut args = libtest_mimic::Arguments::from_args();
    // One at a time: trials share the fixture's target dir, check for leftover processes, and
    // measure overlaps in time, which parallel trials would disturb.
    args.test_threads.get_or_insert(1);
    let mut trials = Vec::new();
    trials.extend(fixtures::trials());
    trials.extend(errors::trials());
    trials.extend(select::trials());
    trials.extend(run::trials());
    trials.extend(interrupt::trials());
    trials.extend(nextest::trials());
    trials.extend(leases::trials());
    trials.extend(lab::trials());
    trials.extend(reliability::trials());
    trials.extend(runner_features::trials());
    trials.extend(timeline::trials());
    trials.extend(browser::trials());
    libtest_mimic::run(&args, trials).exit();
}
