//! Property tests of invariants that hold for any input.

use latentlab_tensor::conformance::data;
use latentlab_tensor::{
    Activation, Backend, Conv2dGeometry, ConvTranspose2dGeometry, Cpu, Shape, Transpose,
};
use proptest::prelude::*;

fn t(cpu: &Cpu, r: usize, c: usize, seed: u64, lo: f32, hi: f32) -> ndarray::Array2<f32> {
    cpu.upload(&data(seed, r * c, lo, hi), Shape::new(r, c))
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// (A·B)ᵀ = Bᵀ·Aᵀ, computed through the transpose flags.
    #[test]
    fn transpose_identity(m in 1usize..40, k in 1usize..40, n in 1usize..40, seed in any::<u64>()) {
        let cpu = Cpu::new();
        let (a, b) = (t(&cpu, m, k, seed, -1.0, 1.0), t(&cpu, k, n, seed ^ 1, -1.0, 1.0));
        let ab = cpu.matmul(&a, Transpose::No, &b, Transpose::No).unwrap();
        let btat = cpu.matmul(&b, Transpose::Yes, &a, Transpose::Yes).unwrap();
        for (x, y) in ab.t().iter().zip(btat.iter()) {
            prop_assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs()) * k as f32);
        }
    }

    /// The parallel CPU backend gives bit-identical results to the sequential one.
    #[test]
    fn parallel_equals_sequential(m in 1usize..90, k in 1usize..90, n in 1usize..90, seed in any::<u64>()) {
        let (par, seq) = (Cpu::new(), Cpu::sequential());
        let (a, b) = (t(&par, m, k, seed, -1.0, 1.0), t(&par, k, n, seed ^ 1, -1.0, 1.0));
        prop_assert_eq!(
            par.matmul(&a, Transpose::No, &b, Transpose::No).unwrap(),
            seq.matmul(&a, Transpose::No, &b, Transpose::No).unwrap()
        );
        let big = t(&par, 300, 200, seed, -3.0, 3.0);
        prop_assert_eq!(par.sum_cols(&big).unwrap(), seq.sum_cols(&big).unwrap());
        prop_assert_eq!(par.activation(Activation::Softplus, &big).unwrap(), seq.activation(Activation::Softplus, &big).unwrap());
        prop_assert_eq!(par.randn(Shape::new(300, 200), seed, 3).unwrap(), seq.randn(Shape::new(300, 200), seed, 3).unwrap());
    }

    /// Convolutions, which the CPU runs image by image and sums weight
    /// gradients over fixed groups of images, give bit-identical results on
    /// the pool and on one thread, for any batch size.
    #[test]
    fn conv_parallel_equals_sequential(n in 1usize..11, seed in any::<u64>()) {
        let (par, seq) = (Cpu::new(), Cpu::sequential());
        let g = Conv2dGeometry::square(3, [32, 32], 8, 4, 2, 1);
        let x = t(&par, n, g.input_len(), seed, 0.0, 1.0);
        let w = t(&par, 8, g.patch_len(), seed ^ 1, -0.3, 0.3);
        let b = t(&par, 1, 8, seed ^ 2, -0.3, 0.3);
        let gy = t(&par, n, g.output_len(), seed ^ 3, -1.0, 1.0);
        prop_assert_eq!(par.conv2d(&x, &w, Some(&b), &g).unwrap(), seq.conv2d(&x, &w, Some(&b), &g).unwrap());
        let (p, q) = (
            par.conv2d_backward(&x, &w, true, &gy, &g, true).unwrap(),
            seq.conv2d_backward(&x, &w, true, &gy, &g, true).unwrap(),
        );
        prop_assert_eq!((p.x, p.w, p.b), (q.x, q.w, q.b));
        let tg = ConvTranspose2dGeometry {
            in_channels: 8,
            input: [16, 16],
            out_channels: 3,
            kernel: [4, 4],
            stride: [2, 2],
            padding: [1, 1],
            output_padding: [0, 0],
            dilation: [1, 1],
        };
        let tw = t(&par, 8, 3 * 16, seed ^ 4, -0.3, 0.3);
        let tb = t(&par, 1, 3, seed ^ 5, -0.3, 0.3);
        let ty = par.conv_transpose2d(&gy, &tw, Some(&tb), &tg).unwrap();
        prop_assert_eq!(&ty, &seq.conv_transpose2d(&gy, &tw, Some(&tb), &tg).unwrap());
        let (p, q) = (
            par.conv_transpose2d_backward(&gy, &tw, true, &x, &tg, true).unwrap(),
            seq.conv_transpose2d_backward(&gy, &tw, true, &x, &tg, true).unwrap(),
        );
        prop_assert_eq!((p.x, p.w, p.b), (q.x, q.w, q.b));
    }

    /// KL ≥ 0, with equality exactly at the prior.
    #[test]
    fn kl_is_nonnegative(r in 1usize..20, c in 1usize..20, seed in any::<u64>()) {
        let cpu = Cpu::new();
        let kl = cpu.kl_normal(&t(&cpu, r, c, seed, -4.0, 4.0), &t(&cpu, r, c, seed ^ 7, -8.0, 5.0)).unwrap();
        prop_assert!(kl.elementwise.iter().all(|&v| v >= 0.0));
        prop_assert!(kl.per_row.iter().all(|&v| v >= 0.0));
    }

    /// Activations stay in their ranges for any finite input.
    #[test]
    fn activation_ranges(seed in any::<u64>(), scale in 0.1f32..100.0) {
        let cpu = Cpu::new();
        let x = t(&cpu, 1, 257, seed, -scale, scale);
        let sig = cpu.activation(Activation::Sigmoid, &x).unwrap();
        prop_assert!(sig.iter().all(|&v| (0.0..=1.0).contains(&v)));
        let th = cpu.activation(Activation::Tanh, &x).unwrap();
        prop_assert!(th.iter().all(|&v| (-1.0..=1.0).contains(&v)));
        let sp = cpu.activation(Activation::Softplus, &x).unwrap();
        prop_assert!(sp.iter().zip(x.iter()).all(|(&s, &v)| s >= v.max(0.0) && s.is_finite()));
    }

    /// BCE with grey-level targets is non-negative and its gradient is bounded.
    #[test]
    fn bce_bounds(seed in any::<u64>(), scale in 0.1f32..60.0) {
        let cpu = Cpu::new();
        let (l, g) = cpu.bce_with_logits_elementwise(&t(&cpu, 4, 50, seed, -scale, scale), &t(&cpu, 4, 50, seed ^ 3, 0.0, 1.0)).unwrap();
        prop_assert!(l.iter().all(|&v| v >= -1e-6 && v.is_finite()));
        prop_assert!(g.iter().all(|&v| (-1.0..=1.0).contains(&v)));
    }

    /// The same seed and stream give the same draws; another stream does not.
    #[test]
    fn randn_is_deterministic(seed in any::<u64>(), stream in any::<u64>()) {
        let cpu = Cpu::new();
        let a = cpu.randn(Shape::new(3, 11), seed, stream).unwrap();
        prop_assert_eq!(&a, &cpu.randn(Shape::new(3, 11), seed, stream).unwrap());
        prop_assert_ne!(&a, &cpu.randn(Shape::new(3, 11), seed, stream.wrapping_add(1)).unwrap());
    }
}

/// NaN propagates through the CPU ops (a documented result, not an error).
#[test]
fn nan_propagates_on_the_cpu() {
    let cpu = Cpu::new();
    let x = cpu
        .upload(&[1.0, f32::NAN, 2.0, 3.0], Shape::new(2, 2))
        .unwrap();
    let y = cpu.matmul(&x, Transpose::No, &x, Transpose::No).unwrap();
    assert!(y.iter().any(|v| v.is_nan()));
    for a in Activation::all() {
        assert!(
            cpu.activation(a, &x).unwrap()[[0, 1]].is_nan(),
            "{a} must propagate NaN"
        );
    }
}
