//! Support for `#[cv_test]`'s generated code. Not a public API: only the macro calls it.
