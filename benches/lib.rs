//! Shared pieces of latentlab's criterion benches (run them through
//! `cargo xtask bench`, which also measures numpy and writes
//! `docs/benchmarks.md`).

use latentlab_tensor::conformance::{data, test_gpu};
use latentlab_tensor::{Activation, Backend, Shape, Wgpu};

/// Matrix-product shapes `(m, k, n)`: the VAE's layers at batch 128, and 1024³.
pub const MATMUL_SHAPES: [(usize, usize, usize); 4] = [
    (128, 784, 512),
    (128, 512, 256),
    (128, 256, 512),
    (1024, 1024, 1024),
];

/// The MLP of the forward+backward bench: the VAE encoder 784-512-256-20.
pub const MLP_LAYERS: [usize; 4] = [784, 512, 256, 20];
/// Batch size of the MLP bench.
pub const MLP_BATCH: usize = 128;

/// The GPU, when one can be opened (the bench skips it otherwise).
pub fn gpu() -> Option<Wgpu> {
    test_gpu()
}

/// A tensor of uniform values in `[-1, 1)`.
pub fn random<B: Backend>(b: &B, rows: usize, cols: usize, seed: u64) -> B::Tensor {
    b.upload(&data(seed, rows * cols, -1.0, 1.0), Shape::new(rows, cols))
        .expect("upload")
}

/// An MLP's weights and biases in PyTorch layout.
pub struct Mlp<B: Backend> {
    /// `(weight [out × in], bias [1 × out])` per layer.
    pub layers: Vec<(B::Tensor, B::Tensor)>,
}

impl<B: Backend> Mlp<B> {
    /// Random weights for `sizes[0] → sizes[1] → …`.
    pub fn new(b: &B, sizes: &[usize]) -> Self {
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let scale = 1.0 / (w[0] as f32).sqrt();
                let wt = b
                    .scale(scale, &random(b, w[1], w[0], 10 + i as u64))
                    .expect("scale");
                (wt, random(b, 1, w[1], 20 + i as u64))
            })
            .collect();
        Self { layers }
    }

    /// Forward through ReLU hidden layers and a linear output, then backward
    /// from `∂L/∂y = y` (the loss ½‖y‖²); returns the weight gradients.
    pub fn forward_backward(&self, b: &B, x: &B::Tensor) -> Vec<B::Tensor> {
        let n = self.layers.len();
        let mut inputs = Vec::with_capacity(n);
        let mut pre = Vec::with_capacity(n);
        let mut h = x.clone();
        for (i, (w, bias)) in self.layers.iter().enumerate() {
            let z = b.linear(&h, w, bias).expect("linear");
            inputs.push(h);
            h = if i + 1 < n {
                b.activation(Activation::Relu, &z).expect("relu")
            } else {
                z.clone()
            };
            pre.push(z);
        }
        let mut grad = h.clone();
        let mut grads = Vec::with_capacity(n);
        for i in (0..n).rev() {
            if i + 1 < n {
                let y = b.activation(Activation::Relu, &pre[i]).expect("relu");
                grad = b
                    .activation_backward(Activation::Relu, &pre[i], &y, &grad)
                    .expect("relu backward");
            }
            let g = b
                .linear_backward(&inputs[i], &self.layers[i].0, &grad)
                .expect("linear backward");
            grads.push(g.w);
            grad = g.x;
        }
        grads
    }
}
