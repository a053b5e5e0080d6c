//! Every random stream a training run draws, named in one place. Each is
//! keyed by [`latentlab_rng::stream_key`]`(seed, purpose, index)`, so no two
//! of them — across tensors, epochs, steps, training and evaluation, or
//! neighbouring seeds — overlap or correlate (`tests/streams.rs` audits
//! them; `docs/model.md` records what was measured).
//!
//! The noise keys are Philox keys: draw `i` of step `t` is element `i` of
//! Philox stream `t` under [`train_noise_key`], on the CPU and the GPU alike.

use latentlab_rng::{Purpose, SplitMix64, stream_key};

/// The version of this derivation, saved in every training state so that a
/// run is only ever resumed with the streams it started with. Version 1 (no
/// number in the file) keyed streams by `seed ^ stream·C` and Philox by the
/// seed itself; version 2 hashes `(seed, purpose, index)`.
pub const VERSION: u32 = 2;

/// The stream of initial values of parameter tensor `tensor` (its position
/// in [`crate::ModelConfig::parameter_shapes`]).
pub fn init(seed: u64, tensor: usize) -> SplitMix64 {
    SplitMix64::new(seed, Purpose::Init, tensor as u64)
}

/// The order of `n` training examples in `epoch` (from 0).
pub fn order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    latentlab_data::rng::epoch_permutation(n, seed, epoch)
}

/// The Philox key of training's ε; the step (from 1) is the Philox stream.
pub fn train_noise_key(seed: u64) -> u64 {
    stream_key(seed, Purpose::TrainNoise, 0)
}

/// The Philox key of evaluation's one `z` per image; the batch is the stream.
pub fn eval_noise_key(seed: u64) -> u64 {
    stream_key(seed, Purpose::EvalNoise, 0)
}

/// The Philox key of the importance-weighted bound's samples.
pub fn importance_noise_key(seed: u64) -> u64 {
    stream_key(seed, Purpose::ImportanceNoise, 0)
}

/// The Philox key of prior draws decoded into images.
pub fn prior_sample_key(seed: u64) -> u64 {
    stream_key(seed, Purpose::PriorSample, 0)
}

/// The Philox key of a training objective's own draws (MMD's prior
/// samples); the step (from 1) is the Philox stream.
pub fn objective_noise_key(seed: u64) -> u64 {
    stream_key(seed, Purpose::ObjectiveNoise, 0)
}

/// The stream of the FactorVAE discriminator's initial values of parameter
/// tensor `tensor`.
pub fn discriminator_init(seed: u64, tensor: usize) -> SplitMix64 {
    SplitMix64::new(seed, Purpose::DiscriminatorInit, tensor as u64)
}

/// The stream of FactorVAE's within-batch permutations of each code
/// dimension at `step` (from 1).
pub fn code_shuffle(seed: u64, step: u64) -> SplitMix64 {
    SplitMix64::new(seed, Purpose::CodeShuffle, step)
}
