//! Judges what `parse` read: every value through `cvtest-spec` (the one value parser, so the
//! attribute accepts exactly what a config file or the CLI accepts), and the function's shape.
//!
//! Errors are spanned on the literal at fault (on the key for unknown and duplicate keys), and
//! as many as possible are reported at once.

use cvtest_spec::{SetError, TestSettings, ValueKind, SETTINGS_KEYS};
use syn::spanned::Spanned;
use syn::{Error, ItemFn};

use crate::parse::{Arg, TestAttrs};

/// Checks every argument; returns the `(key, value)` pairs in the order written.
pub(crate) fn settings(args: &[Arg]) -> Result<Vec<(String, String)>, Error> {
    let mut errors: Option<Error> = None;
    let mut push = |e: Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };

    let mut seen: Vec<&Arg> = Vec::new();
    for arg in args {
        let key = arg.key.to_string();
        if !SETTINGS_KEYS.contains(&key.as_str()) {
            push(Error::new(arg.key.span(), SetError::UnknownKey(key).to_string()));
        } else if let Some(first) = seen.iter().find(|a| a.key == arg.key) {
            let mut e =
                Error::new(arg.key.span(), format!("duplicate key `{key}`: each key may be given once"));
            e.combine(Error::new(first.key.span(), format!("`{key}` is first given here")));
            push(e);
        } else {
            seen.push(arg);
        }
    }

    // Set the values in the order written, as a config file would be read; `host` is checked
    // against `network` whichever comes first.
    let host = seen.iter().find(|a| a.key == "host");
    let mut settings = TestSettings::default();
    let mut pending_host = None;
    for arg in &seen {
        let key = arg.key.to_string();
        match settings.set(&key, &arg.value.value(), &mut pending_host) {
            Ok(()) => {}
            Err(SetError::Value(e)) => {
                // A bad host end surfaces when `network` is set after it: blame the host literal.
                let at = match (e.kind, host) {
                    (ValueKind::HostAddress, Some(h)) => &h.value,
                    _ => &arg.value,
                };
                push(Error::new(at.span(), e.to_string()));
            }
            Err(e @ SetError::UnknownKey(_)) => push(Error::new(arg.key.span(), e.to_string())),
        }
    }
    if let (Some(h), None) = (host, seen.iter().find(|a| a.key == "network")) {
        push(Error::new(
            h.key.span(),
            "`host` sets the host end of the container's network: add `network`, as in `network = \"10.0.0.2/24\", host = \"10.0.0.1\"`",
        ));
    }

    match errors {
        Some(e) => Err(e),
        None => Ok(seen.iter().map(|a| (a.key.to_string(), a.value.value())).collect()),
    }
}

/// How the test function gets its `#[test]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Registration {
    /// `#[cv_test]` adds the built-in `#[test]`.
    Builtin,
    /// An attribute after `#[cv_test]`, such as `#[tokio::test]`, makes the test (and runs the
    /// async body); `#[cv_test]` only adds its prologue to the body.
    Runtime,
}

/// Checks that the function can be a test; says how it becomes one.
pub(crate) fn function(func: &ItemFn, attrs: &TestAttrs<'_>) -> Result<Registration, Error> {
    let mut errors: Vec<Error> = Vec::new();
    if let Some(marker) = attrs.expanded_test {
        errors.push(Error::new_spanned(
            marker,
            "#[cv_test] must come before the other test attribute (such as #[tokio::test]), which has already expanded here: write `#[cv_test(...)]` first, then `#[tokio::test]`",
        ));
    }
    if !func.sig.inputs.is_empty() {
        errors.push(Error::new_spanned(
            &func.sig.inputs,
            "a test function takes no arguments: libtest calls it as `fn()`",
        ));
    }
    if let Some(test) = attrs.plain_test {
        errors.push(Error::new_spanned(
            test,
            "remove this `#[test]`: #[cv_test] already makes the function a test",
        ));
    }
    if func.sig.asyncness.is_some() && attrs.runtime_test.is_none() && attrs.expanded_test.is_none() {
        errors.push(Error::new(
            func.sig.asyncness.span(),
            "an async test needs a runtime: put its test attribute after #[cv_test], as in `#[cv_test] #[tokio::test] async fn ...`",
        ));
    }
    let mut errors = errors.into_iter();
    match errors.next() {
        None if attrs.runtime_test.is_some() => Ok(Registration::Runtime),
        None => Ok(Registration::Builtin),
        Some(mut first) => {
            errors.for_each(|e| first.combine(e));
            Err(first)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn check(tokens: proc_macro2::TokenStream) -> Result<Vec<(String, String)>, String> {
        settings(&crate::parse::args(tokens).unwrap())
            .map_err(|e| e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join(" | "))
    }

    #[test]
    fn accepts_every_key() {
        let pairs = check(quote!(
            memory = "512M",
            pids = "64",
            cpu_weight = "200",
            cpus = "0.5",
            host = "10.0.0.9",
            network = "10.0.0.2/24",
            host_access = "all",
            timeout = "30s",
            hostname = "box",
            privileged = false,
            caps = "cap_net_admin"
        ))
        .unwrap();
        assert_eq!(pairs.len(), SETTINGS_KEYS.len());
        assert_eq!(pairs[4], ("host".to_owned(), "10.0.0.9".to_owned()));
    }

    #[test]
    fn host_access_is_checked() {
        let e = check(quote!(network = "10.0.0.2/24", host_access = "everything")).unwrap_err();
        assert!(e.contains("invalid host access \"everything\"") && e.contains("\"all\""), "{e}");
    }

    #[test]
    fn reports_every_error_at_once() {
        let e = check(quote!(memory = "1X", pids = "0", memroy = "1G", memory = "2G")).unwrap_err();
        assert!(e.contains("invalid memory limit \"1X\": unknown unit \"X\""), "{e}");
        assert!(e.contains("invalid pids limit \"0\""), "{e}");
        assert!(e.contains("unknown key `memroy`; valid keys are: memory, pids, cpu_weight"), "{e}");
        assert!(e.contains("duplicate key `memory`"), "{e}");
    }

    #[test]
    fn caps_and_privileged_are_checked() {
        let e = check(quote!(caps = "NET_ADMIN,SYS_PTRAC", privileged = "yes")).unwrap_err();
        assert!(
            e.contains("invalid capability list \"NET_ADMIN,SYS_PTRAC\": unknown capability \"SYS_PTRAC\""),
            "{e}"
        );
        assert!(e.contains("SYS_PTRACE, SYS_PACCT"), "{e}");
        assert!(e.contains("invalid boolean \"yes\": not true or false; expected true or false"), "{e}");
        assert_eq!(check(quote!(privileged = true)).unwrap(), [("privileged".to_owned(), "true".to_owned())]);
    }

    #[test]
    fn host_is_checked_against_network_in_either_order() {
        for args in [
            quote!(host = "10.0.1.1", network = "10.0.0.2/24"),
            quote!(network = "10.0.0.2/24", host = "10.0.1.1"),
        ] {
            let e = check(args).unwrap_err();
            assert!(
                e.contains(
                    "invalid host address \"10.0.1.1\": it is outside the container's subnet 10.0.0.0/24"
                ),
                "{e}"
            );
        }
        let e = check(quote!(host = "10.0.0.1")).unwrap_err();
        assert!(e.contains("add `network`"), "{e}");
    }

    #[test]
    fn function_shape() {
        let shape = |f: proc_macro2::TokenStream| {
            let f: ItemFn = syn::parse2(f).unwrap();
            function(&f, &crate::parse::test_attrs(&f)).map_err(|e| e.to_string())
        };
        assert_eq!(
            shape(quote!(
                fn t() {}
            )),
            Ok(Registration::Builtin)
        );
        assert_eq!(
            shape(quote!(
                #[tokio::test]
                async fn t() {}
            )),
            Ok(Registration::Runtime)
        );
        assert!(shape(quote!(
            async fn t() {}
        ))
        .unwrap_err()
        .contains("needs a runtime"));
        assert!(shape(quote!(
            fn t(x: u8) {}
        ))
        .unwrap_err()
        .contains("no arguments"));
        assert!(shape(quote!(
            #[test]
            fn t() {}
        ))
        .unwrap_err()
        .contains("remove this `#[test]`"));
    }
}
