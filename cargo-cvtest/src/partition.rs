//! Splitting the test list across CI machines: `count:K/N` and `hash:K/N`.
//!
//! Both are deterministic: the same list gives the same shards on every machine. `count` deals the
//! sorted list round-robin (shards differ in size by at most one); `hash` puts each test where the
//! FNV-1a hash of `binary id + NUL + test name` sends it, so a test stays in its shard when others
//! are added or removed.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Partition {
    /// Every Nth test of the sorted list, starting at the Kth (1-based).
    Count { shard: u64, total: u64 },
    /// The tests whose hash modulo N is K - 1.
    Hash { shard: u64, total: u64 },
}

const ACCEPTED: &str = "expected count:K/N or hash:K/N with whole numbers 1 <= K <= N, such as count:1/3";

/// A `--partition` value that is not `count:K/N` or `hash:K/N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid partition {input:?}: {why}; {ACCEPTED}")]
pub(crate) struct InvalidPartition {
    input: String,
    /// What is wrong with it.
    why: String,
}

impl FromStr for Partition {
    type Err = InvalidPartition;
    fn from_str(s: &str) -> Result<Self, InvalidPartition> {
        let bad = |why: &str| InvalidPartition { input: s.to_owned(), why: why.to_owned() };
        let (kind, spec) = s.split_once(':').ok_or_else(|| bad("no \"count:\" or \"hash:\" prefix"))?;
        let (k, n) = spec.split_once('/').ok_or_else(|| bad("no \"/\" between K and N"))?;
        let k: u64 = k.parse().map_err(|_| bad(&format!("K {k:?} is not a whole number")))?;
        let n: u64 = n.parse().map_err(|_| bad(&format!("N {n:?} is not a whole number")))?;
        if n == 0 || k == 0 || k > n {
            return Err(bad("K must be between 1 and N"));
        }
        match kind {
            "count" => Ok(Partition::Count { shard: k, total: n }),
            "hash" => Ok(Partition::Hash { shard: k, total: n }),
            other => Err(bad(&format!("unknown kind {other:?}"))),
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partition::Count { shard, total } => write!(f, "count:{shard}/{total}"),
            Partition::Hash { shard, total } => write!(f, "hash:{shard}/{total}"),
        }
    }
}

impl Partition {
    /// Whether the test at `index` of the sorted list, with this binary id and name, is in the shard.
    pub(crate) fn contains(&self, index: usize, binary_id: &str, name: &str) -> bool {
        match *self {
            Partition::Count { shard, total } => index as u64 % total == shard - 1,
            Partition::Hash { shard, total } => {
                let h = fnv1a(binary_id.as_bytes().iter().chain([0u8].iter()).chain(name.as_bytes()));
                h % total == shard - 1
            }
        }
    }
}

/// 64-bit FNV-1a: stable across platforms, Rust versions and runs (unlike `DefaultHasher`).
fn fnv1a<'a>(bytes: impl Iterator<Item = &'a u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!("count:1/3".parse(), Ok(Partition::Count { shard: 1, total: 3 }));
        assert_eq!("hash:2/2".parse(), Ok(Partition::Hash { shard: 2, total: 2 }));
        for bad in ["count:0/3", "count:4/3", "hash:1/0", "slice:1/2", "count:1", "1/2", "count:a/2"] {
            let e = bad.parse::<Partition>().unwrap_err();
            assert!(e.to_string().contains("count:K/N"), "{bad}: {e}");
        }
    }

    #[test]
    fn shards_cover_everything_once() {
        let names: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
        for kind in ["count", "hash"] {
            let mut seen = vec![0; names.len()];
            for k in 1..=3 {
                let p: Partition = format!("{kind}:{k}/3").parse().unwrap();
                for (i, n) in names.iter().enumerate() {
                    if p.contains(i, "bin", n) {
                        seen[i] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "{kind}: {seen:?}");
        }
    }

    #[test]
    fn fnv_known_value() {
        // FNV-1a 64 of "a" (published test vector).
        assert_eq!(fnv1a(b"a".iter()), 0xaf63_dc4c_8601_ec8c);
    }
}
