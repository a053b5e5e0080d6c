//! Shared pieces of latentlab's criterion benches (run them through
//! `cargo xtask bench`, which also measures numpy and writes
//! `docs/benchmarks.md`).

use latentlab_tensor::conformance::{data, test_gpu};
use latentlab_tensor::{Backend, Shape, Wgpu};

/// Matrix-product shapes `(m, k, n)`: the VAE's layers at batch 128, and 1024³.
pub const MATMUL_SHAPES: [(usize, usize, usize); 4] = [
    (128, 784, 512),
    (128, 512, 256),
    (128, 256, 512),
    (1024, 1024, 1024),
];

/// Batch size of the training-step bench (the reference run's).
pub const TRAIN_BATCH: usize = 128;

/// The GPU, when one can be opened (the bench skips it otherwise).
pub fn gpu() -> Option<Wgpu> {
    test_gpu()
}

/// A tensor of uniform values in `[-1, 1)`.
pub fn random<B: Backend>(b: &B, rows: usize, cols: usize, seed: u64) -> B::Tensor {
    b.upload(&data(seed, rows * cols, -1.0, 1.0), Shape::new(rows, cols))
        .expect("upload")
}
