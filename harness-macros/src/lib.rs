//! `#[cv_test]`: see the `cvtest` crate.

use proc_macro::TokenStream;

/// Runs the test in its own container. See the `cvtest` crate's documentation.
#[proc_macro_attribute]
pub fn cv_test(args: TokenStream, item: TokenStream) -> TokenStream {
    let _ = args;
    item
}
