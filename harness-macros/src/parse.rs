//! Reads what `#[cv_test(...)]` is given: the `key = "value"` arguments and the item under it.
//!
//! Nothing here judges a value; `validate` does, with the one value parser of `cvtest-spec`.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::{Attribute, Expr, ExprLit, Ident, ItemFn, Lit, LitStr, Meta};

/// One `key = "value"` argument, with the tokens kept for spans.
pub(crate) struct Arg {
    pub(crate) key: Ident,
    pub(crate) value: LitStr,
}

/// Parses `key = "value", ...`. Every value must be a string literal: the same text a config file
/// or a command-line flag would hold; `privileged` takes `true` or `false` as well (kept as the
/// string `"true"` or `"false"`, spanned on the literal).
pub(crate) fn args(tokens: TokenStream) -> syn::Result<Vec<Arg>> {
    let mut args = Vec::new();
    let parser = syn::meta::parser(|meta| {
        let key = meta.path.get_ident().cloned().ok_or_else(|| {
            meta.error(format!(
                "expected a key such as `memory`; valid keys are: {}",
                cvtest_spec::SETTINGS_KEYS.join(", ")
            ))
        })?;
        let value = match meta.value()?.parse::<Lit>()? {
            Lit::Str(s) => s,
            Lit::Bool(b) if key == "privileged" => LitStr::new(&b.value.to_string(), b.span),
            other if key == "privileged" => {
                return Err(syn::Error::new(
                    other.span(),
                    "expected `true` or `false`, as in `privileged = true`",
                ))
            }
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    format!("expected a string literal, as in `{key} = \"{}\"`", example(&key.to_string())),
                ))
            }
        };
        args.push(Arg { key, value });
        Ok(())
    });
    parser.parse2(tokens)?;
    Ok(args)
}

/// A value to show in an error about a key's syntax.
fn example(key: &str) -> &'static str {
    match key {
        "memory" => "512M",
        "pids" => "64",
        "cpu_weight" => "200",
        "cpus" => "0.5",
        "network" => "10.0.0.2/24",
        "host" => "10.0.0.1",
        "timeout" => "30s",
        "hostname" => "test-host",
        "caps" => "NET_ADMIN",
        _ => "...",
    }
}

/// Parses the item under the attribute, which must be a function.
pub(crate) fn function(item: TokenStream) -> syn::Result<ItemFn> {
    syn::parse2::<ItemFn>(item.clone()).map_err(|_| {
        // Span the whole item (start to end), not just its first token.
        syn::Error::new_spanned(
            item,
            "#[cv_test] goes on a test function, such as `#[cv_test(memory = \"512M\")] fn uses_memory() { ... }`",
        )
    })
}

/// What the function's other attributes say about it as a test.
#[derive(Default)]
pub(crate) struct TestAttrs<'a> {
    /// `#[should_panic]` (`Some(None)`) or `#[should_panic(expected = "...")]`.
    pub(crate) should_panic: Option<Option<String>>,
    /// `#[ignore]`, with or without a reason.
    pub(crate) ignored: bool,
    /// A plain `#[test]`, which `#[cv_test]` already implies.
    pub(crate) plain_test: Option<&'a Attribute>,
    /// An attribute that makes a test of its own, such as `#[tokio::test]`.
    pub(crate) runtime_test: Option<&'a Attribute>,
    /// `#[::core::prelude::v1::test]`, as `#[tokio::test]` and its kind emit: such an attribute
    /// expanded before `#[cv_test]`, which had to come first.
    pub(crate) expanded_test: Option<&'a Attribute>,
}

pub(crate) fn test_attrs(func: &ItemFn) -> TestAttrs<'_> {
    let mut found = TestAttrs::default();
    for attr in &func.attrs {
        let path = attr.path();
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match segments.as_slice() {
            ["should_panic"] => found.should_panic = Some(expected_message(attr)),
            ["ignore"] => found.ignored = true,
            ["test"] => found.plain_test = Some(attr),
            ["core" | "std", "prelude", _, "test"] => found.expanded_test = Some(attr),
            [_, .., "test"] => found.runtime_test = Some(attr),
            _ => {}
        }
    }
    found
}

/// The `expected` substring of a `#[should_panic]`, in either of its spellings.
fn expected_message(attr: &Attribute) -> Option<String> {
    let lit_str = |e: &Expr| match e {
        Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => Some(s.value()),
        _ => None,
    };
    match &attr.meta {
        Meta::Path(_) => None,
        Meta::NameValue(nv) => lit_str(&nv.value),
        Meta::List(_) => {
            let mut expected = None;
            // A malformed list is rustc's to report when it expands `#[test]`.
            let _ = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("expected") {
                    expected = lit_str(&meta.value()?.parse()?);
                }
                Ok(())
            });
            expected
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn reads_key_value_pairs() {
        let args = args(quote!(memory = "64M", network = "10.0.0.2/24")).unwrap();
        let pairs: Vec<_> = args.iter().map(|a| (a.key.to_string(), a.value.value())).collect();
        assert_eq!(pairs, [("memory".into(), "64M".into()), ("network".into(), "10.0.0.2/24".into())]);
        assert!(super::args(quote!()).unwrap().is_empty());
    }

    #[test]
    fn refuses_non_string_values() {
        let e = args(quote!(pids = 64)).err().unwrap();
        assert_eq!(e.to_string(), "expected a string literal, as in `pids = \"64\"`");
        assert!(args(quote!(a::b = "1")).is_err());
        let e = args(quote!(caps = true)).err().unwrap();
        assert_eq!(e.to_string(), "expected a string literal, as in `caps = \"NET_ADMIN\"`");
        let e = args(quote!(privileged = 1)).err().unwrap();
        assert_eq!(e.to_string(), "expected `true` or `false`, as in `privileged = true`");
    }

    #[test]
    fn privileged_takes_a_bool() {
        let args = args(quote!(privileged = true, caps = "SYS_PTRACE")).unwrap();
        let pairs: Vec<_> = args.iter().map(|a| (a.key.to_string(), a.value.value())).collect();
        assert_eq!(pairs, [("privileged".into(), "true".into()), ("caps".into(), "SYS_PTRACE".into())]);
    }

    #[test]
    fn reads_test_attributes() {
        let f: ItemFn = syn::parse2(quote! {
            #[should_panic(expected = "boom")]
            #[ignore = "slow"]
            #[tokio::test]
            fn t() {}
        })
        .unwrap();
        let a = test_attrs(&f);
        assert_eq!(a.should_panic, Some(Some("boom".to_owned())));
        assert!(a.ignored && a.runtime_test.is_some() && a.plain_test.is_none());

        let f: ItemFn =
            syn::parse2(quote! { #[should_panic = "bang"] #[::core::prelude::v1::test] fn t() {} }).unwrap();
        let a = test_attrs(&f);
        assert_eq!(a.should_panic, Some(Some("bang".to_owned())));
        assert!(
            !a.ignored && a.expanded_test.is_some() && a.plain_test.is_none() && a.runtime_test.is_none()
        );

        let f: ItemFn = syn::parse2(quote! { #[should_panic] #[test] fn t() {} }).unwrap();
        assert_eq!(test_attrs(&f).should_panic, Some(None));
    }
}
