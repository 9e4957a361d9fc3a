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

/// Runs the test in its own container. See the `cvtest` crate's documentation.
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
    let test = expand::test(expand::Test { func, settings: &settings, should_panic: &should_panic, ignored, registration });
    quote::quote!(#test #errors)
}
