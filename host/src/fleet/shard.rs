//! `--shard I/N`: N runners (a CI matrix) each take their share of a
//! fleet's jobs. A job's shard follows from its own name alone, so every
//! runner agrees on the split without talking to the others, and adding
//! or removing one image moves no other job between shards.

use sha2::Digest as _;

/// Shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Parses `I/N` with 1 ≤ I ≤ N.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("--shard {text:?}: expected I/N with 1 <= I <= N, e.g. 2/4");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let index: u64 = i.trim().parse().map_err(|_| bad())?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || count == 0 || index > count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }

    /// Whether the job with this key (its source reference) is this shard's.
    pub fn owns(&self, key: &str) -> bool {
        let digest = sha2::Sha256::digest(key.as_bytes());
        let bytes: [u8; 8] = digest[..8].try_into().expect("a sha256 has 32 bytes");
        u64::from_be_bytes(bytes) % self.count == self.index - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_takes_one_based_pairs() {
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "1/0", "1", "a/b", "1/2/3", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_job_lands_in_exactly_one_shard() {
        // Realistic keys and odd ones, over several shard counts.
        let keys: Vec<String> = (0..500)
            .map(|i| format!("127.0.0.1:5000/app-{}:{}.{}", i % 37, i / 37, i))
            .chain(["", "x", "oci:/a b/c:d"].map(str::to_owned))
            .collect();
        for count in [1, 2, 3, 7, 20] {
            let shards: Vec<Shard> = (1..=count).map(|index| Shard { index, count }).collect();
            let mut sizes = vec![0usize; shards.len()];
            for key in &keys {
                let owners: Vec<usize> =
                    shards.iter().enumerate().filter(|(_, s)| s.owns(key)).map(|(i, _)| i).collect();
                assert_eq!(owners.len(), 1, "{key:?} with {count} shards: owners {owners:?}");
                sizes[owners[0]] += 1;
            }
            // Spread, not all on one runner: each gets at least half its fair share.
            let fair = keys.len() / shards.len();
            assert!(sizes.iter().all(|&s| s * 2 >= fair), "{count} shards: {sizes:?}");
        }
    }
}
