//! `#[cv_test]`: runs a test in its own container. Use it through the `cvtest` crate, which
//! documents it; this crate only parses, validates and expands.
//!
//! Values are checked here, at compile time, by the same parser (`cvtest-spec`) that the library
//! and `cargo cvtest` use. On an error the function is still emitted, with a `compile_error!`
//! beside it, so that the rest of the crate type-checks and editors keep working.

mod expand;
mod parse;
mod validate;

use proc_macro::TokenStream;

/// Makes a function a test that runs in its own container: new PID, mount, UTS, IPC and network
/// namespaces, and a cgroup with the limits given here.
///
/// ```no_run
/// use cvtest::cv_test;
///
/// #[cv_test(memory = "512M", pids = "64", network = "10.0.0.2/24", timeout = "30s")]
/// fn talks_to_peer() {
///     // runs as PID 2 of its own PID namespace, with 10.0.0.2/24 on a veth
/// }
/// # fn main() {}
/// ```
///
/// # Keys
/// Every value is a string (`privileged` takes `true` or `false`), checked when the test crate
/// compiles by the same parser that `cargo cvtest` and the library use; a bad value is a compile
/// error on the literal.
///
/// | key | value | unset |
/// |---|---|---|
/// | `memory` | `"512M"`, `"1G"`, `"1048576"` (binary units), `"max"` | 1 GiB |
/// | `pids` | processes plus threads, `"64"`, `"max"` | 256 |
/// | `cpu_weight` | `"1"` to `"10000"` | 100 |
/// | `cpus` | a CPU quota, `"0.5"`, `"2"`, `"max"` | no quota |
/// | `network` | the container's address, `"10.0.0.2/24"`: a veth links it to the host; or `"auto"`: a free /30 of the pool (`CVTEST_NET_POOL`, default `198.19.0.0/16`). Tests on overlapping subnets take turns, machine-wide; the test reads `CVTEST_NET_ADDRESS`, `CVTEST_NET_HOST`, `CVTEST_NET_PREFIX` | only `lo` |
/// | `host` | the host end's address in that subnet | the first other usable address |
/// | `host_access` | with a network, what of the host it reaches: `"host-end"` (that address alone) or `"all"` (every address of the host) | `"host-end"` |
/// | `timeout` | `"500ms"`, `"30s"`, `"2m"`, `"1m30s"` | none |
/// | `hostname` | the container's UTS hostname | the library's default |
/// | `caps` | capabilities added to the default set, `"NET_ADMIN,SYS_PTRACE"` (with or without `CAP_`, any case) | none added |
/// | `privileged` | `true`: every capability, /proc unhardened | `false` |
///
/// Bare `#[cv_test]` takes the defaults.
///
/// # What happens when the test runs
/// Under `cargo test` or `cargo nextest run`, the test re-executes its own test binary for
/// itself alone (`NAME --exact --nocapture --test-threads=1 --include-ignored`) inside a
/// container with its settings, waits, and passes or fails as the test did in there. The
/// container's output and a usage line (`cvtest: container ID: peak memory 12.3 MiB (limit 512
/// MiB), peak pids 3 (limit 64), cpu ..., wall ...`) are printed as the test's output: libtest
/// shows them on failure, or always with `--nocapture`. A panic fails the test with the
/// container's output; an OOM kill fails it with `killed: out of memory (limit 512 MiB, peak
/// 512.0 MiB)`; a refused fork or clone says it reached the pids limit; a timeout fails it with
/// `timed out after 30s`.
///
/// Where `CVTEST_CONTAINER` is set — inside a container, started by `cargo cvtest` or by the
/// re-execution — the body runs directly: never a container inside a container.
///
/// The test may return `()` or `Result<(), E: Debug>`. `#[should_panic]` (with or without
/// `expected`) and `#[ignore]` mean what they mean for `#[test]`, written above or below
/// `#[cv_test]`. Under `#[should_panic]`, a test killed by the OOM killer or the timeout fails,
/// as does one that did not panic.
///
/// The test can write where `cargo test` tests write: its package directory and the target
/// directory are the host's, writable; `/tmp` and `/run` are the container's own; the rest of
/// the host's root is read-only. It has no controlling terminal and its own empty session
/// keyring. With a network it reaches its host end's address and nothing else of the host,
/// unless `host_access = "all"`.
///
/// # Capabilities
/// The test runs as root with Docker's default capabilities without `MKNOD` (`CHOWN`,
/// `DAC_OVERRIDE`, `FOWNER`, `FSETID`, `KILL`, `SETGID`, `SETUID`, `SETPCAP`, `NET_BIND_SERVICE`,
/// `NET_RAW`, `SYS_CHROOT`, `AUDIT_WRITE`, `SETFCAP`), cut in every set before it starts, and
/// with the kernel knobs of its `/proc` read-only (`/proc/sys`, `/proc/sysrq-trigger`, ...) and
/// `/proc/kcore`, `/proc/keys` and the like masked: it cannot remount the read-only root, mount,
/// make device nodes, load modules or set the clock. `caps = "NET_ADMIN"` adds capabilities;
/// `privileged = true` keeps them all and leaves `/proc` as it is, for a test that mounts things
/// or makes containers itself (it can then undo the read-only root: so can one given
/// `SYS_ADMIN`, `SYS_PTRACE`, `SYS_MODULE`, `DAC_READ_SEARCH` or `SYS_RAWIO`).
///
/// ```no_run
/// use cvtest::cv_test;
///
/// #[cv_test(caps = "NET_ADMIN")]
/// fn sets_up_its_own_routes() {}
///
/// #[cv_test(privileged = true)]
/// fn mounts_a_tmpfs() {}
/// # fn main() {}
/// ```
///
/// # Async tests
/// Put `#[cv_test]` first, then the runtime's test attribute, which makes the test and runs the
/// body (`#[cv_test]` only adds its prologue to the body):
///
/// ```no_run
/// use cvtest::cv_test;
///
/// #[cv_test(memory = "128M")]
/// #[tokio::test]
/// async fn serves() {}
/// # fn main() {}
/// ```
///
/// The other order is a compile error that says so.
///
/// # Without privileges
/// As an ordinary user the container is rootless (a user namespace in which the test is root,
/// mapped to you; README, Security), if the kernel allows unprivileged user namespaces; limits
/// then need a cgroup delegated to you. Otherwise the test fails, saying what is missing (and
/// `sudo -E cargo test` is one way out). `CVTEST_UNSANDBOXED=skip` makes such
/// tests pass without running (saying why in their output); `CVTEST_UNSANDBOXED=run` runs their
/// bodies in the test process, without isolation or limits.
///
/// On cgroup v2 below the root cgroup, cvtest needs a cgroup to itself (see the `cgroup`
/// module); under `cargo test` the test binary shares its cgroup with cargo. Under systemd
/// cvtest asks for a delegated scope of its own (`Delegate=yes`) and goes on; without systemd
/// the test fails saying so (run `cargo test` from a cgroup of its own, e.g. with
/// `systemd-run --scope -p Delegate=yes`). The root cgroup and cgroup v1 or hybrid machines have
/// no such limit.
///
/// # Registration and `unsafe_code`
/// Each test registers itself from a constructor (a function the loader runs before `main`),
/// which needs `#[link_section]`, an `unsafe_code` item: a crate with `#![deny(unsafe_code)]`
/// works, one with `#![forbid(unsafe_code)]` does not (write
/// `#![cfg_attr(not(test), forbid(unsafe_code))]` instead).
///
/// # Settings dump
/// With `CVTEST_LIST_SETTINGS=1`, a test binary that has `#[cv_test]` tests prints one line,
/// `cvtest-settings: {"version":1,"tests":[...]}`, before libtest starts (see
/// `cvtest::spec::SettingsDump`); `cargo cvtest` reads it with `--list`.
#[proc_macro_attribute]
pub fn cv_test(args: TokenStream, item: TokenStream) -> TokenStream {
    cv_test_impl(args.into(), item.into()).into()
}

fn cv_test_impl(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    let func = match parse::function(item.clone()) {
        Ok(func) => func,
        Err(e) => {
            let e = e.to_compile_error();
            return quote::quote!(#item #e);
        }
    };
    let attrs = parse::test_attrs(&func);
    let registration = match validate::function(&func, &attrs) {
        Ok(r) => r,
        Err(e) => return expand::fallback(item, e),
    };
    let (settings, errors) = match parse::args(args).and_then(|args| validate::settings(&args)) {
        Ok(settings) => (settings, None),
        // Expand with the defaults, so only the errors are reported.
        Err(e) => (Vec::new(), Some(e.to_compile_error())),
    };
    let should_panic = attrs.should_panic.clone();
    let ignored = attrs.ignored;
    let test = expand::test(expand::Test {
        func,
        settings: &settings,
        should_panic: &should_panic,
        ignored,
        registration,
    });
    quote::quote!(#test #errors)
}
