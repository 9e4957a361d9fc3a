//! Writes the test: the function as given, made a test, with a prologue that registers its
//! settings and, outside a container, runs the body in one (see `cvtest::__private::run`).
//!
//! Generated code names only `::cvtest::__private`, never the crates behind it.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemFn;

use crate::validate::Registration;

/// What `expand` needs to know about a valid test.
pub(crate) struct Test<'a> {
    pub(crate) func: ItemFn,
    /// Validated `(key, value)` pairs, in the order written.
    pub(crate) settings: &'a [(String, String)],
    pub(crate) should_panic: &'a Option<Option<String>>,
    pub(crate) ignored: bool,
    pub(crate) registration: Registration,
}

pub(crate) fn test(test: Test<'_>) -> TokenStream {
    let Test { mut func, settings, should_panic, ignored, registration } = test;
    // As libtest names it: a raw identifier keeps its `r#`.
    let name = func.sig.ident.to_string();
    let keys = settings.iter().map(|(k, _)| k);
    let values = settings.iter().map(|(_, v)| v);
    let should_panic = match should_panic {
        None => quote!(::cvtest::__private::ShouldPanic::No),
        Some(None) => quote!(::cvtest::__private::ShouldPanic::Yes),
        Some(Some(expected)) => quote!(::cvtest::__private::ShouldPanic::Expected(#expected)),
    };
    let test_attr = match registration {
        Registration::Builtin => quote!(#[::core::prelude::v1::test]),
        Registration::Runtime => quote!(),
    };

    let prologue: syn::Block = syn::parse_quote! {{
        static __CVTEST_TEST: ::cvtest::__private::Test = ::cvtest::__private::Test {
            module_path: ::core::module_path!(),
            fn_name: #name,
            settings: &[#((#keys, #values)),*],
            should_panic: #should_panic,
            ignored: #ignored,
            manifest_dir: ::core::env!("CARGO_MANIFEST_DIR"),
        };
        // Registration runs before the list is read: every `default` constructor runs before
        // any `late` one, whatever order the linker put them in.
        ::cvtest::__private::ctor::declarative::ctor! {
            #[ctor(unsafe, anonymous, priority = default)]
            fn register() {
                ::cvtest::__private::register(&__CVTEST_TEST)
            }
        }
        ::cvtest::__private::ctor::declarative::ctor! {
            #[ctor(unsafe, anonymous, priority = late)]
            fn list_settings() {
                ::cvtest::__private::list_settings()
            }
        }
        if let ::core::option::Option::Some(done) = ::cvtest::__private::run(&__CVTEST_TEST) {
            return done;
        }
    }};
    let body = &mut func.block.stmts;
    body.splice(0..0, prologue.stmts);
    quote! {
        #test_attr
        #func
    }
}

/// The function as written, for when it cannot be made a test; the errors go beside it so that
/// the rest of the crate still type-checks and editors keep working.
pub(crate) fn fallback(item: TokenStream, errors: syn::Error) -> TokenStream {
    let errors = errors.to_compile_error();
    quote! {
        #[allow(dead_code)]
        #item
        #errors
    }
}
