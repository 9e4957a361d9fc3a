//! `cargo-cvtest`, run by cargo as `cargo cvtest`. Everything lives in the library.

fn main() -> std::process::ExitCode {
    cargo_cvtest::main()
}
