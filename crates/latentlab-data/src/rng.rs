//! Seeded shuffles and subsets on [`latentlab_rng`]'s streams: the same seed
//! gives the same order on every machine.

pub use latentlab_rng::{Purpose, SplitMix64, stream_key};

/// The order of `n` examples in `epoch` of a run seeded with `seed` (the
/// stream `(seed, Order, epoch)`).
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed, Purpose::Order, epoch).shuffle(&mut p);
    p
}

/// `k` distinct indices from `0..n` (`k ≤ n`), in random order, drawn from
/// the stream `(seed, Subset, which)`; `which` names the subset, so two
/// subsets taken with one seed are independent.
pub fn subset(n: usize, k: usize, seed: u64, which: u64) -> Vec<usize> {
    let k = k.min(n);
    let mut g = SplitMix64::new(seed, Purpose::Subset, which);
    let mut p: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = i + g.below((n - i) as u64) as usize;
        p.swap(i, j);
    }
    p.truncate(k);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_seeded_permutations() {
        let a = epoch_permutation(1000, 1, 0);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
        assert_eq!(a, epoch_permutation(1000, 1, 0));
        assert_ne!(a, epoch_permutation(1000, 1, 1));
        assert_ne!(a, epoch_permutation(1000, 2, 0));
    }

    #[test]
    fn subsets_are_distinct_and_uniform() {
        let s = subset(100, 30, 4, 0);
        let mut u = s.clone();
        u.sort();
        u.dedup();
        assert_eq!(u.len(), 30);
        assert_ne!(s, subset(100, 30, 4, 1));
        // Each index is picked with probability k/n = 0.3.
        let mut hits = [0u32; 10];
        for seed in 0..10_000 {
            for i in subset(10, 3, seed, 0) {
                hits[i] += 1;
            }
        }
        assert!(
            hits.iter().all(|&c| (2_850..3_150).contains(&c)),
            "{hits:?}"
        );
    }
}
