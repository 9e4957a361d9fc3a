//! Help and error output (snapshots), and the exit codes of usage, config and build errors.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use libtest_mimic::{Completion, Failed, Trial};

use crate::support::{
    check, cvtest, cvtest_bare, cvtest_command, exit_code, missing_privileges, plain, text,
};

pub fn trials() -> Vec<Trial> {
    vec![
        plain("help_snapshot", help_snapshot),
        plain("bad_flag_values_are_usage_errors", bad_flag_values_are_usage_errors),
        plain("bad_config_is_a_usage_error", bad_config_is_a_usage_error),
        plain("build_errors_show_as_cargo_shows_them", build_errors_show_as_cargo_shows_them),
        Trial::ignorable_test("sudo_build_with_a_toolchain_the_user_cannot_run", || {
            sudo_build_with_a_toolchain_the_user_cannot_run()
        }),
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

/// `sudo cargo cvtest` with root's own toolchain (under a directory other users may not enter,
/// as rustup's under `/root`): the build would run as the user who ran `sudo`, who cannot start
/// that cargo. One message says so and what to do; `CVTEST_BUILD_AS_ROOT=1` builds as root.
fn sudo_build_with_a_toolchain_the_user_cannot_run() -> Result<Completion, Failed> {
    if let Some(reason) = missing_privileges() {
        return Ok(Completion::ignored_with(reason));
    }
    let Some(cargo) = std::env::var_os("CARGO").map(PathBuf::from) else {
        return Ok(Completion::ignored_with(
            "CARGO is not set (not run by cargo test): no toolchain path to check",
        ));
    };
    let reachable = cargo
        .ancestors()
        .skip(1)
        .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    if reachable {
        return Ok(Completion::ignored_with(format!(
            "{} is reachable by every user here: nothing refuses the build as nobody",
            cargo.display()
        )));
    }
    let as_nobody = |extra: &[(&str, &str)]| {
        let mut cmd = cvtest_command("basic", &["--list"]);
        cmd.env("SUDO_UID", "65534").env("SUDO_GID", "65534").env("SUDO_USER", "nobody");
        extra.iter().for_each(|(k, v)| {
            cmd.env(k, v);
        });
        cmd.output()
    };
    let out = as_nobody(&[])?;
    exit_code(&out, 102)?;
    let err = text(&out.stderr);
    let want = format!("who cannot run {}", cargo.display());
    check(
        err.contains("under sudo the build runs as nobody (uid 65534)") && err.contains(&want),
        "what",
        &out,
    )?;
    check(err.contains("CVTEST_BUILD_AS_ROOT=1") && err.contains("sudo -E env"), "what to do", &out)?;
    // (This checkout is root's: the containers keep real root, not nobody, to write in it.)
    let out = as_nobody(&[("CVTEST_BUILD_AS_ROOT", "1"), ("CVTEST_MAP_ROOT_TO", "0")])?;
    exit_code(&out, 0)?;
    Ok(Completion::Completed)
}
