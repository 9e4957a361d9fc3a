//! Help and error output (snapshots), and the exit codes of usage, config and build errors.

use libtest_mimic::{Failed, Trial};

use crate::support::{check, cvtest, cvtest_bare, exit_code, plain, text};

pub fn trials() -> Vec<Trial> {
    vec![
        plain("help_snapshot", help_snapshot),
        plain("bad_flag_values_are_usage_errors", bad_flag_values_are_usage_errors),
        plain("bad_config_is_a_usage_error", bad_config_is_a_usage_error),
        plain("build_errors_show_as_cargo_shows_them", build_errors_show_as_cargo_shows_them),
    ]
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cli/snapshots"));
    s.set_prepend_module_to_snapshot(false);
    s
}

fn help_snapshot() -> Result<(), Failed> {
    let out = cvtest_bare(&["--help"]);
    exit_code(&out, 0)?;
    settings().bind(|| insta::assert_snapshot!("help", text(&out.stdout)));
    Ok(())
}

fn bad_flag_values_are_usage_errors() -> Result<(), Failed> {
    let cases: &[(&str, &[&str])] = &[
        ("memory", &["--memory", "1X"]),
        ("memory_too_small", &["--memory", "5"]),
        ("memory_budget_max", &["--memory-budget", "max"]),
        ("memory_budget_unit", &["--memory-budget", "8X"]),
        ("cpu_weight", &["--cpu-weight", "0"]),
        ("network", &["--network", "10.0.0.0/24"]),
        ("timeout", &["--timeout", "30"]),
        ("partition", &["--partition", "count:3/2"]),
        ("jobs", &["--jobs", "0"]),
        ("isolation", &["--isolation", "vm"]),
        ("retries", &["--retries", "-1"]),
        ("terminate_after", &["--terminate-after", "0"]),
        ("slow_timeout", &["--slow-timeout", "5"]),
        ("status_level", &["--status-level", "loud"]),
        ("libtest_args", &["--", "--format=json"]),
    ];
    let mut all = String::new();
    for (name, args) in cases {
        let out = cvtest_bare(args);
        exit_code(&out, 2)?;
        check(out.stdout.is_empty(), "usage errors print nothing on stdout", &out)?;
        all.push_str(&format!("=== {name}: {}\n{}\n", args.join(" "), text(&out.stderr).trim_end()));
    }
    settings().bind(|| insta::assert_snapshot!("usage_errors", all));
    Ok(())
}

fn bad_config_is_a_usage_error() -> Result<(), Failed> {
    let out = cvtest("badconfig", &[]);
    exit_code(&out, 2)?;
    let err = text(&out.stderr);
    check(
        err.contains("cvtest.toml: `memory`: invalid memory limit \"1X\""),
        "names file, key and value",
        &out,
    )?;
    check(err.contains("\"max\""), "says what is accepted", &out)?;
    check(!err.contains("Compiling"), "nothing was built", &out)
}

fn build_errors_show_as_cargo_shows_them() -> Result<(), Failed> {
    let out = cvtest("broken", &[]);
    exit_code(&out, 101)?;
    let err = text(&out.stderr);
    check(err.contains("error[E0308]: mismatched types"), "cargo's rendered diagnostic", &out)?;
    check(err.contains("src/lib.rs:2:5"), "with its location", &out)?;
    check(err.contains("error: the build failed"), "and our one-line verdict", &out)
}
