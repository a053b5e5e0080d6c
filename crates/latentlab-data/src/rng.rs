//! A small seeded generator (SplitMix64) for shuffles and subsets: the same
//! seed gives the same order on every machine.

/// SplitMix64 (Steele, Lea & Flood 2014).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator for `seed` and an independent `stream`.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut g = Self(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        g.next_u64();
        g
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` without modulo bias (Lemire's method), `n ≥ 1`.
    pub fn below(&mut self, n: u64) -> u64 {
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            let low = m as u64;
            if low >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal draw (Box–Muller; one draw per call, the partner
    /// is discarded so the stream position stays simple).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Shuffles `v` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// The order of `n` examples in `epoch` of a run seeded with `seed`.
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed, 0x5EED_0000 + epoch).shuffle(&mut p);
    p
}

/// `k` distinct indices from `0..n` (`k ≤ n`), in random order.
pub fn subset(n: usize, k: usize, seed: u64) -> Vec<usize> {
    let k = k.min(n);
    let mut g = SplitMix64::new(seed, 0x5B5E7);
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
    fn normals_have_unit_moments() {
        let mut g = SplitMix64::new(5, 0);
        let v: Vec<f64> = (0..200_000).map(|_| g.normal()).collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
        let k = v.iter().map(|x| (x - m).powi(4)).sum::<f64>() / v.len() as f64 / (var * var);
        assert!(m.abs() < 0.01 && (var - 1.0).abs() < 0.01 && (k - 3.0).abs() < 0.05);
        let u: Vec<f64> = (0..10_000).map(|_| g.uniform()).collect();
        assert!(u.iter().all(|x| (0.0..1.0).contains(x)));
    }

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
        let s = subset(100, 30, 4);
        let mut u = s.clone();
        u.sort();
        u.dedup();
        assert_eq!(u.len(), 30);
        let mut counts = [0u32; 10];
        let mut g = SplitMix64::new(9, 0);
        for _ in 0..100_000 {
            counts[g.below(10) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_500..10_500).contains(&c)),
            "{counts:?}"
        );
    }
}
