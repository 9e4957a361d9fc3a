//! Test name filters, with `cargo test`'s (libtest's) semantics: a test runs when its name
//! contains one of the positional filters (or equals one, with `--exact`) and no `--skip`
//! matches; `--ignored` runs only `#[ignore]`d tests, `--include-ignored` runs both.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum RunIgnored {
    /// Ignored tests are reported as ignored, not run.
    #[default]
    Default,
    /// Only ignored tests run; the others are filtered out.
    Only,
    /// Both run.
    All,
}

/// What becomes of a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Filtered out: not run, not reported.
    Excluded,
    /// Reported as ignored, not run.
    Ignored,
    Run,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct NameFilter {
    pub(crate) patterns: Vec<String>,
    pub(crate) exact: bool,
    pub(crate) skip: Vec<String>,
    pub(crate) run_ignored: RunIgnored,
}

impl NameFilter {
    fn hit(&self, pattern: &str, name: &str) -> bool {
        if self.exact {
            name == pattern
        } else {
            name.contains(pattern)
        }
    }

    pub(crate) fn matches_name(&self, name: &str) -> bool {
        (self.patterns.is_empty() || self.patterns.iter().any(|p| self.hit(p, name)))
            && !self.skip.iter().any(|s| self.hit(s, name))
    }

    pub(crate) fn disposition(&self, name: &str, ignored: bool) -> Disposition {
        if !self.matches_name(name) {
            return Disposition::Excluded;
        }
        match (self.run_ignored, ignored) {
            (RunIgnored::Default, true) => Disposition::Ignored,
            (RunIgnored::Default, false) | (RunIgnored::Only, true) | (RunIgnored::All, _) => {
                Disposition::Run
            }
            (RunIgnored::Only, false) => Disposition::Excluded,
        }
    }

    /// The same selection as arguments for a test binary that cvtest cannot list (custom harness).
    pub(crate) fn as_libtest_args(&self) -> Vec<String> {
        let mut v = self.patterns.clone();
        if self.exact {
            v.push("--exact".into());
        }
        for s in &self.skip {
            v.push("--skip".into());
            v.push(s.clone());
        }
        match self.run_ignored {
            RunIgnored::Default => {}
            RunIgnored::Only => v.push("--ignored".into()),
            RunIgnored::All => v.push("--include-ignored".into()),
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(patterns: &[&str], exact: bool, skip: &[&str], ri: RunIgnored) -> NameFilter {
        NameFilter {
            patterns: patterns.iter().map(|s| s.to_string()).collect(),
            exact,
            skip: skip.iter().map(|s| s.to_string()).collect(),
            run_ignored: ri,
        }
    }

    #[test]
    fn substring_exact_and_skip() {
        let x = f(&["net"], false, &["slow"], RunIgnored::Default);
        assert_eq!(x.disposition("a::net_ping", false), Disposition::Run);
        assert_eq!(x.disposition("a::net_slow", false), Disposition::Excluded);
        assert_eq!(x.disposition("a::cpu", false), Disposition::Excluded);
        let x = f(&["a::net"], true, &[], RunIgnored::Default);
        assert_eq!(x.disposition("a::net", false), Disposition::Run);
        assert_eq!(x.disposition("a::net2", false), Disposition::Excluded);
        let x = f(&[], true, &["a::b"], RunIgnored::Default);
        assert_eq!(x.disposition("a::b", false), Disposition::Excluded);
        assert_eq!(x.disposition("a::bc", false), Disposition::Run);
    }

    #[test]
    fn ignored_modes() {
        let d = f(&[], false, &[], RunIgnored::Default);
        assert_eq!(d.disposition("x", true), Disposition::Ignored);
        let o = f(&[], false, &[], RunIgnored::Only);
        assert_eq!(o.disposition("x", true), Disposition::Run);
        assert_eq!(o.disposition("y", false), Disposition::Excluded);
        let a = f(&[], false, &[], RunIgnored::All);
        assert_eq!(a.disposition("x", true), Disposition::Run);
        assert_eq!(a.disposition("y", false), Disposition::Run);
    }
}
