//! The selection: the tests that the filters and the partition keep, of every binary, each with its
//! effective settings and expected outcome.

use crate::discovery::{BinaryEntry, BinaryTests};
use crate::errors::UsageError;
use crate::expect::Expect;
use crate::filter::{Disposition, NameFilter};
use crate::leak::LeakPolicy;
use crate::partition::Partition;
use crate::settings::{Effective, Resolver};

/// One selected test.
#[derive(Debug, Clone)]
pub(crate) struct TestCase {
    /// Index into [`TestList::binaries`].
    pub(crate) binary: usize,
    /// The libtest name; for a whole binary (custom harness), the binary id.
    pub(crate) name: String,
    pub(crate) ignored: bool,
    /// A custom-harness binary run whole, as one test.
    pub(crate) whole_binary: bool,
    /// Uses `#[cv_test]` (its own settings apply).
    pub(crate) cv: bool,
    pub(crate) should_panic: bool,
    pub(crate) settings: Effective,
    pub(crate) expect: Expect,
    /// Whether processes left running when it ends fail it (config's `leak`).
    pub(crate) leak: LeakPolicy,
    /// Times it runs again after a failed attempt (`--retries`, config's `retries`).
    pub(crate) retries: u32,
    /// `--slow-timeout` / `slow_timeout` and `terminate_after`.
    pub(crate) slow: Option<crate::policy::SlowTimeout>,
    /// `Run`, or `Ignored` (reported, not run). Excluded tests are not in the list.
    pub(crate) disposition: Disposition,
}

#[derive(Debug)]
pub(crate) struct TestList {
    pub(crate) binaries: Vec<BinaryEntry>,
    pub(crate) tests: Vec<TestCase>,
    /// Tests that the filters or the partition left out.
    pub(crate) filtered_out: usize,
    /// The filters as arguments, for binaries run whole (custom harnesses), as cargo test passes them.
    pub(crate) whole_binary_args: Vec<String>,
}

impl TestList {
    pub(crate) fn new(
        binaries: Vec<BinaryEntry>,
        filter: &NameFilter,
        partition: Option<Partition>,
        resolver: &Resolver,
    ) -> Result<TestList, UsageError> {
        let mut tests = Vec::new();
        let mut filtered_out = 0;
        let mut index = 0usize;
        for (bi, b) in binaries.iter().enumerate() {
            let candidates: Vec<(String, bool, Option<&cvtest_spec::DumpedTest>, bool)> = match &b.tests {
                BinaryTests::Listed(list) => {
                    let mut v: Vec<_> =
                        list.iter().map(|t| (t.name.clone(), t.ignored, t.cv.as_ref(), false)).collect();
                    v.sort_by(|a, b| a.0.cmp(&b.0));
                    v
                }
                BinaryTests::Whole => vec![(b.bin.id.clone(), false, None, true)],
            };
            for (name, ignored, cv, whole) in candidates {
                // A whole binary gets the filters as arguments, as cargo test passes them.
                let disposition = if whole { Disposition::Run } else { filter.disposition(&name, ignored) };
                if disposition == Disposition::Excluded {
                    filtered_out += 1;
                    continue;
                }
                let in_shard = partition.is_none_or_contains(index, &b.bin.id, &name);
                index += 1;
                if !in_shard {
                    filtered_out += 1;
                    continue;
                }
                let (settings, expect) = resolver
                    .resolve(&b.package, &b.bin.id, &name, cv.map(|c| &c.settings))
                    .map_err(|source| UsageError::Settings {
                        binary: b.bin.id.clone(),
                        test: name.clone(),
                        source,
                    })?;
                let leak = resolver.config.leak(&b.package, &b.bin.id, &name);
                tests.push(TestCase {
                    binary: bi,
                    name,
                    ignored,
                    whole_binary: whole,
                    cv: cv.is_some(),
                    should_panic: cv.is_some_and(|c| c.should_panic),
                    settings,
                    expect,
                    leak,
                    retries: 0,
                    slow: None,
                    disposition,
                });
            }
        }
        Ok(TestList { binaries, tests, filtered_out, whole_binary_args: filter.as_libtest_args() })
    }

    pub(crate) fn binary_of(&self, t: &TestCase) -> &BinaryEntry {
        &self.binaries[t.binary]
    }

    pub(crate) fn to_run(&self) -> impl Iterator<Item = (usize, &TestCase)> {
        self.tests.iter().enumerate().filter(|(_, t)| t.disposition == Disposition::Run)
    }
}

trait PartitionExt {
    fn is_none_or_contains(&self, index: usize, binary: &str, name: &str) -> bool;
}

impl PartitionExt for Option<Partition> {
    fn is_none_or_contains(&self, index: usize, binary: &str, name: &str) -> bool {
        self.as_ref().map_or(true, |p| p.contains(index, binary, name))
    }
}
