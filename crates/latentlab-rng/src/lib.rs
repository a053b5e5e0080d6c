//! # latentlab-rng
//!
//! Every random number latentlab draws comes from a *stream*, and every
//! stream is named by a key hashed from `(seed, purpose, index)`:
//!
//! - `seed` is the user's seed (`--seed`);
//! - [`Purpose`] says what the draws are for (initial weights, the epoch
//!   order, training noise, evaluation noise, …);
//! - `index` says which one of them (the parameter tensor, the epoch, …).
//!
//! [`stream_key`] hashes the three words through three rounds of a 64-bit
//! avalanche mixer, so keys of neighbouring seeds, purposes or indices share
//! no structure: no two streams of a run, and no two runs, overlap or
//! correlate (the [`audit`] statistics and this crate's tests check it on
//! the streams a training run draws). Sequential streams are [`SplitMix64`]
//! generators started at their key; noise drawn on a device comes from
//! [`philox`], keyed by the same hash, so the CPU and the GPU draw the same ε.
//!
//! An earlier derivation put the seed itself into every stream, as
//! `seed ^ stream·C` for SplitMix64 and as the Philox key: two runs whose
//! seeds differ by `C·a ⊕ C·b` then shared streams exactly, and the key of a
//! run's noise was the user's number. `docs/model.md` ("Random streams")
//! records what was measured of both.
//!
//! ```
//! use latentlab_rng::{Purpose, SplitMix64, stream_key};
//!
//! // The initial weights of parameter tensor 2 in a run seeded with 7.
//! let mut g = SplitMix64::new(7, Purpose::Init, 2);
//! let u = g.uniform();
//! assert!((0.0..1.0).contains(&u));
//! // The same key always gives the same stream.
//! assert_eq!(SplitMix64::from_key(stream_key(7, Purpose::Init, 2)).uniform(), u);
//! // Another purpose or index gives an unrelated one.
//! assert_ne!(SplitMix64::new(7, Purpose::Order, 2).uniform(), u);
//! ```

pub mod audit;
pub mod philox;

/// The golden-ratio increment of SplitMix64 (Steele, Lea & Flood 2014).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
/// Separates latentlab's keys from any other use of the same mixer.
const DOMAIN: u64 = 0x6C61_7465_6E74_6C62; // "latentlb"
/// Spreads the small purpose and index numbers over all 64 bits before
/// they are absorbed (odd, so multiplication by it is a bijection).
const SPREAD: u64 = 0xD1B5_4A32_D192_ED03;

/// The 64-bit finaliser of SplitMix64 (Stafford's "mix13"): a bijection in
/// which every input bit changes each output bit with probability ≈ ½.
#[inline]
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What a random stream is for. Its number is part of every key, so two
/// purposes never share a stream whatever the seeds and indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
#[non_exhaustive]
pub enum Purpose {
    /// A model's initial weights; index: the parameter tensor's position.
    Init = 1,
    /// A training run's example order; index: the epoch.
    Order = 2,
    /// Training's reparameterisation noise, a Philox key (index 0); the
    /// step is the Philox stream.
    TrainNoise = 3,
    /// Evaluation's one `z` per image, a Philox key (index 0); the batch is
    /// the Philox stream.
    EvalNoise = 4,
    /// The importance-weighted bound's samples, a Philox key (index 0).
    ImportanceNoise = 5,
    /// Prior draws decoded into images, a Philox key (index 0).
    PriorSample = 6,
    /// Subsets and splits of data sets; index: which subset.
    Subset = 7,
    /// The diagnostics' Monte Carlo draws; index: which estimate.
    Diagnostics = 8,
    /// The disentanglement metrics' sampling; index: the metric.
    Metric = 9,
    /// Gradient-boosted trees' subsampling; index: the tree.
    Trees = 10,
    /// Random walks in latent space.
    Walk = 11,
    /// Latent maps (PCA, t-SNE, UMAP, neighbour graphs); index: the step.
    Embed = 12,
    /// Geometry's prior and shell samples.
    Geometry = 13,
    /// Data made up for tests and benchmarks.
    Test = 14,
    /// A training objective's own draws (MMD's prior samples), a Philox key
    /// (index 0); the step is the Philox stream.
    ObjectiveNoise = 15,
    /// FactorVAE discriminator's initial weights; index: the parameter
    /// tensor's position.
    DiscriminatorInit = 16,
    /// FactorVAE's permutation of each code dimension within a batch;
    /// index: the step.
    CodeShuffle = 17,
}

/// The key of stream `(seed, purpose, index)`: three absorptions of the
/// [`mix64`] bijection, so for a fixed purpose and index distinct seeds give
/// distinct keys, and otherwise keys collide only by chance (≈ 2⁻⁶⁴).
#[inline]
pub const fn stream_key(seed: u64, purpose: Purpose, index: u64) -> u64 {
    let h = mix64(seed ^ DOMAIN);
    let h = mix64(h ^ (purpose as u64).wrapping_mul(SPREAD));
    mix64(h ^ index.wrapping_mul(SPREAD).wrapping_add(GAMMA))
}

/// SplitMix64 (Steele, Lea & Flood 2014): output `n` of the stream with key
/// `k` is `mix64(k + (n + 1)·γ)`, so any draw can be reached directly
/// ([`SplitMix64::at`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The stream `(seed, purpose, index)` (see [`stream_key`]).
    pub const fn new(seed: u64, purpose: Purpose, index: u64) -> Self {
        Self(stream_key(seed, purpose, index))
    }

    /// The stream whose key is `key`.
    pub const fn from_key(key: u64) -> Self {
        Self(key)
    }

    /// Output `n` (from 0) of the stream with key `key`, without drawing
    /// the ones before it.
    #[inline]
    pub const fn at(key: u64, n: u64) -> u64 {
        mix64(key.wrapping_add(n.wrapping_add(1).wrapping_mul(GAMMA)))
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix64(self.0)
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
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        unit_f64(self.next_u64())
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

/// The top 53 bits of `bits` as a uniform in `[0, 1)`.
#[inline]
pub fn unit_f64(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys are a contract: checkpoints' runs are reproduced from them.
    /// A change here changes every seeded result latentlab prints.
    #[test]
    fn keys_are_pinned() {
        let got = [
            stream_key(0, Purpose::Init, 0),
            stream_key(1, Purpose::Init, 0),
            stream_key(0, Purpose::Order, 5),
            stream_key(u64::MAX, Purpose::TrainNoise, 0),
        ];
        // Written by an independent Python transcription of the hash.
        let want = [
            0xa48f_68e2_dd32_5363,
            0xfcfb_f8c7_ca25_a5e4,
            0xfa6d_9419_6c14_b3d2,
            0x44c0_f63a_a1f4_ae4a,
        ];
        assert_eq!(got, want, "{got:#018x?}");
    }

    #[test]
    fn random_access_matches_the_sequence() {
        let key = stream_key(3, Purpose::Walk, 9);
        let mut g = SplitMix64::from_key(key);
        for n in 0..100 {
            assert_eq!(g.next_u64(), SplitMix64::at(key, n));
        }
    }

    #[test]
    fn distinct_seeds_give_distinct_keys() {
        let mut keys: Vec<u64> = (0..100_000)
            .map(|s| stream_key(s, Purpose::Init, 0))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 100_000);
    }

    #[test]
    fn normals_have_unit_moments() {
        let mut g = SplitMix64::new(5, Purpose::Test, 0);
        let v: Vec<f64> = (0..200_000).map(|_| g.normal()).collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
        let k = v.iter().map(|x| (x - m).powi(4)).sum::<f64>() / v.len() as f64 / (var * var);
        assert!(m.abs() < 0.01 && (var - 1.0).abs() < 0.01 && (k - 3.0).abs() < 0.05);
        let u: Vec<f64> = (0..10_000).map(|_| g.uniform()).collect();
        assert!(u.iter().all(|x| (0.0..1.0).contains(x)));
    }

    #[test]
    fn below_is_uniform() {
        let mut counts = [0u32; 10];
        let mut g = SplitMix64::new(9, Purpose::Test, 0);
        for _ in 0..100_000 {
            counts[g.below(10) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_500..10_500).contains(&c)),
            "{counts:?}"
        );
    }
}
