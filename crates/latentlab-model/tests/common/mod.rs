//! Helpers shared by the PyTorch fixture tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use latentlab_data::npy;
use ndarray::Array2;

/// A file of the fixture folder `tests/data/<dir>/`.
pub fn fixture(dir: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir)
        .join(name)
}

/// A 2-D float32 `.npy` of the fixture folder.
pub fn expected(dir: &str, name: &str) -> Array2<f32> {
    let a = npy::read(fixture(dir, name)).expect("fixture .npy");
    let shape = a.shape().to_vec();
    let npy::NpyData::F32(v) = a.data() else {
        panic!("{name}: float32 expected")
    };
    Array2::from_shape_vec((shape[0], shape[1]), v.clone()).expect("2-D")
}

/// The largest elementwise difference of two equal-shaped arrays.
pub fn max_abs_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The step of the PyTorch parity fixtures: `mean(rec + 4·KL)`, no free
/// bits, capacity or clipping (the learning rate is unused: no update).
pub fn parity_step() -> latentlab_model::StepParams {
    latentlab_model::StepParams {
        beta: 4.0,
        free_bits: None,
        capacity: None,
        clip_grad_norm: None,
        seed: 0,
        step: 1,
        lr: 1e-4,
        weight_decay: 0.0,
        objective: latentlab_model::objective::Objective::Elbo,
        dataset_size: 1 << 20,
    }
}

/// The largest difference relative to the larger of `want`'s largest
/// magnitude and `floor`: f32 sums in another order differ by rounding,
/// which scales with the tensor's size.
pub fn relative_to(got: &[f32], want: &[f32], floor: f32) -> f32 {
    let scale = want.iter().fold(floor, |m, v| m.max(v.abs())).max(1e-12);
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
        / scale
}
