//! Units of work: which tests share a container.
//!
//! A unit is one test in its own container, or with [`ContainerScope::Binary`] a group of a
//! binary's tests that share their settings, run as one `<binary> --exact <name>...`.

use crate::scheduler::Demand;
use crate::selection::TestList;
use crate::settings::Effective;

/// What one container holds (`--isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContainerScope {
    /// Each test in its own container.
    Test,
    /// The tests of a binary that share their settings in one container.
    Binary,
}

impl ContainerScope {
    /// `test` or `binary`, as the reports name it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ContainerScope::Test => "test",
            ContainerScope::Binary => "binary",
        }
    }
}

/// The most test names given to one binary-isolation run (keeps argv small).
const MAX_TESTS_PER_BINARY_UNIT: usize = 512;

/// A unit of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unit {
    /// One test (index into [`TestList::tests`]) in its own container.
    Test(usize),
    /// Several tests of one binary, with equal settings, in one container.
    Binary { binary: usize, tests: Vec<usize> },
}

/// Splits the tests to run into units.
pub(crate) fn plan(list: &TestList, scope: ContainerScope) -> Vec<Unit> {
    match scope {
        ContainerScope::Test => list.to_run().map(|(i, _)| Unit::Test(i)).collect(),
        ContainerScope::Binary => {
            let mut units: Vec<Unit> = Vec::new();
            // Group by (binary, settings); networked, whole-binary and expected-failure tests
            // keep their own container so that their limits and outcome are their own.
            let mut groups: Vec<(usize, Effective, Vec<usize>)> = Vec::new();
            for (i, t) in list.to_run() {
                let alone =
                    t.whole_binary || t.settings.network().is_some() || t.expect != Default::default();
                if alone {
                    units.push(Unit::Test(i));
                    continue;
                }
                match groups.iter_mut().find(|(b, s, v)| {
                    *b == t.binary && *s == t.settings && v.len() < MAX_TESTS_PER_BINARY_UNIT
                }) {
                    Some((_, _, v)) => v.push(i),
                    None => groups.push((t.binary, t.settings.clone(), vec![i])),
                }
            }
            units.extend(groups.into_iter().map(|(binary, _, tests)| Unit::Binary { binary, tests }));
            units
        }
    }
}

/// What a unit needs from the scheduler.
pub(crate) fn demand(list: &TestList, unit: &Unit) -> Demand {
    let settings = match unit {
        Unit::Test(i) => &list.tests[*i].settings,
        Unit::Binary { tests, .. } => &list.tests[tests[0]].settings,
    };
    // `auto` networks never clash: each container's lease takes a free subnet.
    Demand {
        memory: settings.memory_bytes(),
        networks: settings.network().and_then(|n| n.fixed()).into_iter().collect(),
    }
}
