//! The conformance suite: every op of a [`Backend`] checked against an
//! independent `f64` reference, written once and expanded for each backend
//! with [`conformance_tests!`](crate::conformance_tests).
//!
//! The reference ([`mod@reference`]) is plain `f64` loops, sharing no code with the
//! backends except Philox's integer core (itself pinned by Random123's
//! known-answer vectors). Shapes include ones that are not multiples of the GPU
//! tile, `1×N`, `N×1` and a large inner dimension. A third-party backend can run
//! the same suite:
//!
//! ```ignore
//! mod my_backend { latentlab_tensor::conformance_tests!(Some(MyBackend::new())); }
//! ```

use std::sync::OnceLock;

use crate::{
    Activation, AdamStep, Backend, Conv2dGeometry, ConvTranspose2dGeometry, NormStats, Shape,
    TensorError, Transpose, Unary, Wgpu,
};

/// A comparison tolerance: `|got − want| ≤ abs + rel · |want|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Relative part.
    pub rel: f64,
    /// Absolute part.
    pub abs: f64,
}

impl Tolerance {
    /// A tolerance with relative and absolute parts.
    pub const fn new(rel: f64, abs: f64) -> Self {
        Self { rel, abs }
    }

    /// Compares `got` with `want`, naming the worst element on failure.
    pub fn check(&self, what: &str, got: &[f32], want: &[f64]) -> std::result::Result<(), String> {
        if got.len() != want.len() {
            return Err(format!(
                "{what}: {} values, expected {}",
                got.len(),
                want.len()
            ));
        }
        let mut worst: Option<(usize, f64)> = None;
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let g = f64::from(g);
            let ok = if w.is_nan() {
                g.is_nan()
            } else if w.is_infinite() {
                g == w
            } else {
                (g - w).abs() <= self.abs + self.rel * w.abs()
            };
            if !ok {
                let excess = if g.is_finite() {
                    (g - w).abs() / (self.abs + self.rel * w.abs())
                } else {
                    f64::INFINITY
                };
                if worst.is_none_or(|(_, e)| excess > e) {
                    worst = Some((i, excess));
                }
            }
        }
        match worst {
            None => Ok(()),
            Some((i, e)) => Err(format!(
                "{what}: element {i} is {} but the reference says {} ({e:.1}× the tolerance {self:?}; {} elements)",
                got[i],
                want[i],
                got.len()
            )),
        }
    }

    /// Like [`Tolerance::check`], panicking with the message (for tests).
    #[track_caller]
    pub fn assert(&self, what: &str, got: &[f32], want: &[f64]) {
        if let Err(msg) = self.check(what, got, want) {
            panic!("{msg}");
        }
    }
}

/// Deterministic test data: `n` values uniform in `[lo, hi)` (the stream
/// `(seed, Test, 0)`).
pub fn data(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut g = latentlab_rng::SplitMix64::new(seed, latentlab_rng::Purpose::Test, 0);
    (0..n)
        .map(|_| {
            let u = (g.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
            lo + (hi - lo) * u
        })
        .collect()
}

/// Plain `f64` implementations of every op, the suite's reference.
pub mod reference {
    use crate::{Activation, AdamStep, philox};

    fn up(x: &[f32]) -> Vec<f64> {
        x.iter().map(|&v| f64::from(v)).collect()
    }

    /// `op(a) · op(b)`: `a` is stored `ar × ac`, `b` is stored `br × bc`.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        a: &[f32],
        ar: usize,
        ac: usize,
        ta: bool,
        b: &[f32],
        br: usize,
        bc: usize,
        tb: bool,
    ) -> Vec<f64> {
        let (m, k) = if ta { (ac, ar) } else { (ar, ac) };
        let n = if tb { br } else { bc };
        let at = |i: usize, kk: usize| f64::from(if ta { a[kk * ac + i] } else { a[i * ac + kk] });
        let bt = |kk: usize, j: usize| f64::from(if tb { b[j * bc + kk] } else { b[kk * bc + j] });
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|kk| at(i, kk) * bt(kk, j)).sum();
            }
        }
        c
    }

    /// `x + bias` row by row.
    pub fn add_row(x: &[f32], cols: usize, bias: &[f32]) -> Vec<f64> {
        x.iter()
            .enumerate()
            .map(|(i, &v)| f64::from(v) + f64::from(bias[i % cols]))
            .collect()
    }

    /// Column sums.
    pub fn sum_rows(x: &[f32], rows: usize, cols: usize) -> Vec<f64> {
        (0..cols)
            .map(|j| (0..rows).map(|r| f64::from(x[r * cols + j])).sum())
            .collect()
    }

    /// Row sums.
    pub fn sum_cols(x: &[f32], rows: usize, cols: usize) -> Vec<f64> {
        (0..rows)
            .map(|r| {
                x[r * cols..(r + 1) * cols]
                    .iter()
                    .map(|&v| f64::from(v))
                    .sum()
            })
            .collect()
    }

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// An activation in `f64`.
    pub fn act(a: Activation, x: f64) -> f64 {
        match a {
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu { slope } => {
                if x > 0.0 {
                    x
                } else {
                    f64::from(slope) * x
                }
            }
            Activation::Elu { alpha } => {
                if x > 0.0 {
                    x
                } else {
                    f64::from(alpha) * x.exp_m1()
                }
            }
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => sigmoid(x),
            Activation::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        }
    }

    /// The derivative of [`act`] at `x`, written independently of the backends
    /// (and checked against finite differences in this module's tests).
    pub fn act_derivative(a: Activation, x: f64) -> f64 {
        match a {
            Activation::Relu => f64::from(u8::from(x > 0.0)),
            Activation::LeakyRelu { slope } => {
                if x > 0.0 {
                    1.0
                } else {
                    f64::from(slope)
                }
            }
            Activation::Elu { alpha } => {
                if x > 0.0 {
                    1.0
                } else {
                    f64::from(alpha) * x.exp()
                }
            }
            Activation::Tanh => 1.0 / x.cosh().powi(2),
            Activation::Sigmoid => sigmoid(x) * (1.0 - sigmoid(x)),
            Activation::Softplus => sigmoid(x),
        }
    }

    fn softplus(x: f64) -> f64 {
        x.max(0.0) + (-x.abs()).exp().ln_1p()
    }

    /// BCE with logits per element and its gradient.
    pub fn bce(l: &[f32], t: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let (l, t) = (up(l), up(t));
        let loss = l
            .iter()
            .zip(&t)
            // log σ(l) = −softplus(−l) and log(1 − σ(l)) = −softplus(l),
            // finite in f64 where 1 − σ(l) itself rounds to 0.
            .map(|(&l, &t)| t * softplus(-l) + (1.0 - t) * softplus(l))
            .collect();
        let grad = l.iter().zip(&t).map(|(&l, &t)| sigmoid(l) - t).collect();
        (loss, grad)
    }

    /// Gaussian NLL per element and its gradients (`lv` indexed by `lv_at(i)`).
    pub fn gaussian_nll(
        x: &[f32],
        m: &[f32],
        lv: &[f32],
        cols: usize,
        shared: bool,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let n = x.len();
        let lvi = |i: usize| f64::from(if shared { lv[i % cols] } else { lv[i] });
        let mut out = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        for i in 0..n {
            let var = lvi(i).exp();
            let d = f64::from(x[i]) - f64::from(m[i]);
            out.0[i] = 0.5 * ((2.0 * std::f64::consts::PI * var).ln() + d * d / var);
            out.1[i] = -d / var;
            out.2[i] = 0.5 - 0.5 * d * d / var;
        }
        out
    }

    /// KL(N(mu, e^lv) ‖ N(0, 1)) per element and its gradients.
    pub fn kl(mu: &[f32], lv: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (mu, lv) = (up(mu), up(lv));
        let kl = mu
            .iter()
            .zip(&lv)
            .map(|(&m, &v)| 0.5 * (m * m + v.exp() - 1.0 - v))
            .collect();
        let gv = lv.iter().map(|&v| 0.5 * (v.exp() - 1.0)).collect();
        (kl, mu, gv)
    }

    /// Normal draws `0..n` of `(seed, stream)`, Box–Muller in `f64` on the
    /// same Philox words.
    pub fn randn(n: usize, seed: u64, stream: u64) -> Vec<f64> {
        let unit = |w: u32| (f64::from(w >> 9) + 0.5) / 8_388_608.0;
        (0..n)
            .map(|i| {
                let w = philox::block(seed, stream, (i / 4) as u64);
                let pair = (i % 4) / 2;
                let r = (-2.0 * unit(w[2 * pair]).ln()).sqrt();
                let th = std::f64::consts::TAU * unit(w[2 * pair + 1]) - std::f64::consts::PI;
                if i % 2 == 0 {
                    r * th.cos()
                } else {
                    r * th.sin()
                }
            })
            .collect()
    }

    /// `steps` Adam updates with the same gradient each step.
    pub fn adam(p: &[f32], g: &[f32], hp: &AdamStep, steps: u64) -> Vec<f64> {
        let (mut p, g) = (up(p), up(g));
        let (mut m, mut v) = (vec![0.0; p.len()], vec![0.0; p.len()]);
        let (b1, b2) = (f64::from(hp.beta1), f64::from(hp.beta2));
        for t in 1..=steps {
            let t = t as i32;
            for i in 0..p.len() {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                let mh = m[i] / (1.0 - b1.powi(t));
                let vh = v[i] / (1.0 - b2.powi(t));
                p[i] = p[i] * (1.0 - f64::from(hp.lr) * f64::from(hp.weight_decay))
                    - f64::from(hp.lr) * mh / (vh.sqrt() + f64::from(hp.eps));
            }
        }
        p
    }

    /// Calls `f(input_index, output_index, weight_index)` for every
    /// multiply-add of the convolution `g` on image `n`, written directly
    /// from the definition (no patches).
    fn conv_taps(g: &crate::Conv2dGeometry, n: usize, mut f: impl FnMut(usize, usize, usize)) {
        let [h, w] = g.input;
        let [oh, ow] = g.output_size().expect("a valid geometry");
        let [kh, kw] = g.kernel;
        for o in 0..g.out_channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    for c in 0..g.in_channels {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * g.stride[0] + ky * g.dilation[0]) as i64
                                    - g.padding[0] as i64;
                                let ix = (ox * g.stride[1] + kx * g.dilation[1]) as i64
                                    - g.padding[1] as i64;
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                                    continue;
                                }
                                let xi =
                                    ((n * g.in_channels + c) * h + iy as usize) * w + ix as usize;
                                let yi = ((n * g.out_channels + o) * oh + oy) * ow + ox;
                                let wi = ((o * g.in_channels + c) * kh + ky) * kw + kx;
                                f(xi, yi, wi);
                            }
                        }
                    }
                }
            }
        }
    }

    /// `exp` or `log` in `f64`.
    pub fn unary(op: crate::Unary, x: f64) -> f64 {
        match op {
            crate::Unary::Exp => x.exp(),
            crate::Unary::Log => x.ln(),
        }
    }

    /// The derivative of [`unary`] at `x`.
    pub fn unary_derivative(op: crate::Unary, x: f64) -> f64 {
        match op {
            crate::Unary::Exp => x.exp(),
            crate::Unary::Log => 1.0 / x,
        }
    }

    /// `log Σ exp` of every row, by the definition (in `f64`, whose range
    /// covers every `f32` input the suite uses without taking a maximum out),
    /// with PyTorch's answers for rows of `−inf`, `+inf` and NaN.
    pub fn logsumexp_rows(x: &[f32], rows: usize, cols: usize) -> Vec<f64> {
        (0..rows)
            .map(|r| {
                let row = &x[r * cols..(r + 1) * cols];
                if row.iter().any(|v| v.is_nan()) {
                    f64::NAN
                } else if row.contains(&f32::INFINITY) {
                    f64::INFINITY
                } else {
                    row.iter().map(|&v| f64::from(v).exp()).sum::<f64>().ln()
                }
            })
            .collect()
    }

    /// The gradient of `Σᵢ g[i] · lse(x[i, ·])`: `g[i] · softmax(x[i, ·])`.
    pub fn logsumexp_backward(x: &[f32], rows: usize, cols: usize, g: &[f32]) -> Vec<f64> {
        let lse = logsumexp_rows(x, rows, cols);
        (0..rows * cols)
            .map(|i| f64::from(g[i / cols]) * (f64::from(x[i]) - lse[i / cols]).exp())
            .collect()
    }

    /// Per-channel mean and biased variance of `n` rows of `c` planes of `l`.
    pub fn channel_moments(x: &[f64], n: usize, c: usize, l: usize) -> (Vec<f64>, Vec<f64>) {
        let count = (n * l) as f64;
        let plane = |ch: usize| (0..n).flat_map(move |r| (0..l).map(move |k| (r * c + ch) * l + k));
        let mean: Vec<f64> = (0..c)
            .map(|ch| plane(ch).map(|i| x[i]).sum::<f64>() / count)
            .collect();
        let var = (0..c)
            .map(|ch| plane(ch).map(|i| (x[i] - mean[ch]).powi(2)).sum::<f64>() / count)
            .collect();
        (mean, var)
    }

    /// Batch normalisation with the given statistics and affine parameters.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        x: &[f64],
        c: usize,
        l: usize,
        mean: &[f64],
        var: &[f64],
        gamma: &[f64],
        beta: &[f64],
        eps: f64,
    ) -> Vec<f64> {
        x.iter()
            .enumerate()
            .map(|(i, &v)| {
                let ch = (i / l) % c;
                (v - mean[ch]) / (var[ch] + eps).sqrt() * gamma[ch] + beta[ch]
            })
            .collect()
    }

    /// Training-mode batch normalisation: the statistics are the batch's own.
    pub fn batch_norm_train(
        x: &[f64],
        n: usize,
        c: usize,
        l: usize,
        gamma: &[f64],
        beta: &[f64],
        eps: f64,
    ) -> Vec<f64> {
        let (mean, var) = channel_moments(x, n, c, l);
        batch_norm(x, c, l, &mean, &var, gamma, beta, eps)
    }

    /// The gradients `(∂x, ∂γ, ∂β)` of `Σ gy ⊙ y`: through the batch's own
    /// statistics when `batch` (training mode), else with them held fixed.
    /// Written from the chain rule through `μ` and `σ²` term by term, not
    /// from the backends' closed form.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_backward(
        x: &[f64],
        n: usize,
        c: usize,
        l: usize,
        mean: &[f64],
        var: &[f64],
        gamma: &[f64],
        gy: &[f64],
        eps: f64,
        batch: bool,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let count = (n * l) as f64;
        let ch = |i: usize| (i / l) % c;
        let sd: Vec<f64> = var.iter().map(|v| (v + eps).sqrt()).collect();
        let xhat = |i: usize| (x[i] - mean[ch(i)]) / sd[ch(i)];
        let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
        // ∂L/∂x̂, then ∂L/∂σ² and ∂L/∂μ per channel.
        let (mut dvar, mut dmean) = (vec![0.0; c], vec![0.0; c]);
        for i in 0..x.len() {
            let k = ch(i);
            dg[k] += gy[i] * xhat(i);
            db[k] += gy[i];
            let dxhat = gy[i] * gamma[k];
            dvar[k] += dxhat * (x[i] - mean[k]) * -0.5 * sd[k].powi(-3);
            dmean[k] += -dxhat / sd[k];
        }
        let dx = (0..x.len())
            .map(|i| {
                let k = ch(i);
                let direct = gy[i] * gamma[k] / sd[k];
                if batch {
                    // dμ/dx = 1/count; dσ²/dx = 2(x − μ)/count (the term
                    // through μ in σ² sums to zero).
                    direct + dvar[k] * 2.0 * (x[i] - mean[k]) / count + dmean[k] / count
                } else {
                    direct
                }
            })
            .collect();
        (dx, dg, db)
    }

    /// `nn.Conv2d` on a batch of `n` images: `y[n, o, oy, ox]`.
    pub fn conv2d(
        x: &[f64],
        w: &[f64],
        b: Option<&[f64]>,
        g: &crate::Conv2dGeometry,
        n: usize,
    ) -> Vec<f64> {
        let l = g.positions();
        let mut y: Vec<f64> = (0..n * g.output_len())
            .map(|i| b.map_or(0.0, |b| b[(i / l) % g.out_channels]))
            .collect();
        for img in 0..n {
            conv_taps(g, img, |xi, yi, wi| y[yi] += x[xi] * w[wi]);
        }
        y
    }

    /// The gradients of `Σ gy ⊙ conv2d(x, w, b)`: `(∂x, ∂w, ∂b)`.
    pub fn conv2d_backward(
        x: &[f64],
        w: &[f64],
        gy: &[f64],
        g: &crate::Conv2dGeometry,
        n: usize,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (mut gx, mut gw) = (vec![0.0; x.len()], vec![0.0; w.len()]);
        for img in 0..n {
            conv_taps(g, img, |xi, yi, wi| {
                gx[xi] += gy[yi] * w[wi];
                gw[wi] += gy[yi] * x[xi];
            });
        }
        let l = g.positions();
        let mut gb = vec![0.0; g.out_channels];
        for (i, v) in gy.iter().enumerate() {
            gb[(i / l) % g.out_channels] += v;
        }
        (gx, gw, gb)
    }

    /// `nn.ConvTranspose2d` on a batch of `n` inputs, written as the scatter
    /// of every input value through the kernel (its own definition, not the
    /// adjoint of [`conv2d`]): `y[n, o, iy·s − p + ky·d, ix·s − p + kx·d] +=
    /// x[n, i, iy, ix] · w[i, o, ky, kx]`.
    pub fn conv_transpose2d(
        x: &[f64],
        w: &[f64],
        b: Option<&[f64]>,
        g: &crate::ConvTranspose2dGeometry,
        n: usize,
    ) -> Vec<f64> {
        let [oh, ow] = g.output_size().expect("a valid geometry");
        let mut y: Vec<f64> = (0..n * g.output_len())
            .map(|i| b.map_or(0.0, |b| b[(i / (oh * ow)) % g.out_channels]))
            .collect();
        transpose_taps(g, n, |xi, yi, wi| y[yi] += x[xi] * w[wi]);
        y
    }

    /// The gradients of `Σ gy ⊙ conv_transpose2d(x, w, b)`: `(∂x, ∂w, ∂b)`.
    pub fn conv_transpose2d_backward(
        x: &[f64],
        w: &[f64],
        gy: &[f64],
        g: &crate::ConvTranspose2dGeometry,
        n: usize,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (mut gx, mut gw) = (vec![0.0; x.len()], vec![0.0; w.len()]);
        transpose_taps(g, n, |xi, yi, wi| {
            gx[xi] += gy[yi] * w[wi];
            gw[wi] += gy[yi] * x[xi];
        });
        let [oh, ow] = g.output_size().expect("a valid geometry");
        let mut gb = vec![0.0; g.out_channels];
        for (i, v) in gy.iter().enumerate() {
            gb[(i / (oh * ow)) % g.out_channels] += v;
        }
        (gx, gw, gb)
    }

    fn transpose_taps(
        g: &crate::ConvTranspose2dGeometry,
        n: usize,
        mut f: impl FnMut(usize, usize, usize),
    ) {
        let [h, w] = g.input;
        let [oh, ow] = g.output_size().expect("a valid geometry");
        let [kh, kw] = g.kernel;
        for img in 0..n {
            for i in 0..g.in_channels {
                for iy in 0..h {
                    for ix in 0..w {
                        for o in 0..g.out_channels {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let oy = (iy * g.stride[0] + ky * g.dilation[0]) as i64
                                        - g.padding[0] as i64;
                                    let ox = (ix * g.stride[1] + kx * g.dilation[1]) as i64
                                        - g.padding[1] as i64;
                                    if oy < 0 || ox < 0 || oy >= oh as i64 || ox >= ow as i64 {
                                        continue;
                                    }
                                    let xi = ((img * g.in_channels + i) * h + iy) * w + ix;
                                    let yi = ((img * g.out_channels + o) * oh + oy as usize) * ow
                                        + ox as usize;
                                    let wi = ((i * g.out_channels + o) * kh + ky) * kw + kx;
                                    f(xi, yi, wi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The reference derivatives against central differences in f64.
        #[test]
        fn derivatives_match_finite_differences() {
            let h = 1e-6;
            for a in Activation::all() {
                for &x in &[-3.0, -0.7, -1e-3, 0.25, 1.3, 4.0] {
                    let fd = (act(a, x + h) - act(a, x - h)) / (2.0 * h);
                    let an = act_derivative(a, x);
                    assert!(
                        (fd - an).abs() < 1e-7 * (1.0 + an.abs()),
                        "{a} at {x}: fd {fd} vs {an}"
                    );
                }
            }
            // BCE, Gaussian NLL and KL gradients.
            let (l, t) = (0.75f32, 0.3f32);
            let fd = (bce(&[(l as f64 + 1e-3) as f32], &[t]).0[0]
                - bce(&[(l as f64 - 1e-3) as f32], &[t]).0[0])
                / 2e-3;
            assert!((fd - bce(&[l], &[t]).1[0]).abs() < 1e-3);
            let g = |x: f64, m: f64, v: f64| {
                0.5 * ((2.0 * std::f64::consts::PI).ln() + v + (x - m).powi(2) / v.exp())
            };
            let (x, m, v) = (0.3, -0.4, 0.2);
            let (_, gm, gv) = gaussian_nll(&[x as f32], &[m as f32], &[v as f32], 1, false);
            let (x, m, v) = (
                f64::from(x as f32),
                f64::from(m as f32),
                f64::from(v as f32),
            );
            assert!(((g(x, m + h, v) - g(x, m - h, v)) / (2.0 * h) - gm[0]).abs() < 1e-6);
            assert!(((g(x, m, v + h) - g(x, m, v - h)) / (2.0 * h) - gv[0]).abs() < 1e-6);
            let k = |m: f64, v: f64| 0.5 * (m * m + v.exp() - 1.0 - v);
            let (_, km, kv) = kl(&[m as f32], &[v as f32]);
            assert!(((k(m + h, v) - k(m - h, v)) / (2.0 * h) - km[0]).abs() < 1e-6);
            assert!(((k(m, v + h) - k(m, v - h)) / (2.0 * h) - kv[0]).abs() < 1e-6);
        }

        /// The convolution references' gradients against central differences
        /// of their forward passes, in f64.
        #[test]
        fn conv_gradients_match_finite_differences() {
            let g = crate::Conv2dGeometry {
                dilation: [1, 2],
                stride: [2, 1],
                padding: [1, 1],
                ..crate::Conv2dGeometry::square(2, [5, 6], 3, 3, 1, 0)
            };
            let t = crate::ConvTranspose2dGeometry {
                in_channels: 2,
                input: [3, 4],
                out_channels: 3,
                kernel: [3, 2],
                stride: [2, 2],
                padding: [1, 0],
                output_padding: [1, 0],
                dilation: [1, 2],
            };
            let n = 2;
            let wave = |len: usize, s: f64| -> Vec<f64> {
                (0..len).map(|i| (i as f64 * s + 0.3).sin()).collect()
            };
            type Forward<'a> = &'a dyn Fn(&[f64], &[f64], &[f64]) -> Vec<f64>;
            let check = |name: &str,
                         fwd: Forward<'_>,
                         (x, w, b): (Vec<f64>, Vec<f64>, Vec<f64>),
                         grads: (Vec<f64>, Vec<f64>, Vec<f64>),
                         gy: &[f64]| {
                let loss = |x: &[f64], w: &[f64], b: &[f64]| -> f64 {
                    fwd(x, w, b).iter().zip(gy).map(|(y, g)| y * g).sum()
                };
                let h = 1e-6;
                for (which, (base, an)) in [(&x, &grads.0), (&w, &grads.1), (&b, &grads.2)]
                    .into_iter()
                    .enumerate()
                {
                    for i in 0..base.len() {
                        let mut up = base.clone();
                        let mut dn = base.clone();
                        up[i] += h;
                        dn[i] -= h;
                        let (lu, ld) = match which {
                            0 => (loss(&up, &w, &b), loss(&dn, &w, &b)),
                            1 => (loss(&x, &up, &b), loss(&x, &dn, &b)),
                            _ => (loss(&x, &w, &up), loss(&x, &w, &dn)),
                        };
                        let fd = (lu - ld) / (2.0 * h);
                        assert!(
                            (fd - an[i]).abs() < 1e-6 * (1.0 + an[i].abs()),
                            "{name}: operand {which} element {i}: fd {fd} vs {}",
                            an[i]
                        );
                    }
                }
            };
            let (x, w, b) = (
                wave(n * g.input_len(), 0.7),
                wave(g.out_channels * g.patch_len(), 1.3),
                wave(g.out_channels, 2.1),
            );
            let gy = wave(n * g.output_len(), 0.37);
            let grads = conv2d_backward(&x, &w, &gy, &g, n);
            check(
                "conv2d",
                &|x, w, b| conv2d(x, w, Some(b), &g, n),
                (x, w, b),
                grads,
                &gy,
            );
            let (x, w, b) = (
                wave(n * t.input_len(), 0.9),
                wave(t.in_channels * t.out_channels * 6, 1.1),
                wave(t.out_channels, 2.3),
            );
            let gy = wave(n * t.output_len(), 0.41);
            let grads = conv_transpose2d_backward(&x, &w, &gy, &t, n);
            check(
                "conv_transpose2d",
                &|x, w, b| conv_transpose2d(x, w, Some(b), &t, n),
                (x, w, b),
                grads,
                &gy,
            );
        }

        /// Central differences of a scalar function of one vector.
        fn fd(f: &dyn Fn(&[f64]) -> f64, x: &[f64], i: usize) -> f64 {
            let h = 1e-6;
            let (mut up, mut dn) = (x.to_vec(), x.to_vec());
            up[i] += h;
            dn[i] -= h;
            (f(&up) - f(&dn)) / (2.0 * h)
        }

        fn close(what: &str, fd: f64, an: f64) {
            assert!(
                (fd - an).abs() < 1e-6 * (1.0 + an.abs()),
                "{what}: fd {fd} vs {an}"
            );
        }

        /// exp, log and logsumexp against central differences.
        #[test]
        fn unary_and_logsumexp_gradients_match_finite_differences() {
            for op in crate::Unary::all() {
                for &x in &[0.05, 0.7, 1.0, 3.5] {
                    let f = |v: &[f64]| unary(op, v[0]);
                    close(
                        &format!("{op} at {x}"),
                        fd(&f, &[x], 0),
                        unary_derivative(op, x),
                    );
                }
            }
            let (rows, cols) = (3, 5);
            let x: Vec<f32> = (0..rows * cols)
                .map(|i| ((i as f32) * 0.77).sin() * 3.0)
                .collect();
            let g = [0.3f32, -1.2, 2.0];
            let loss = |v: &[f64]| -> f64 {
                let v: Vec<f32> = v.iter().map(|&a| a as f32).collect();
                logsumexp_rows(&v, rows, cols)
                    .iter()
                    .zip(&g)
                    .map(|(l, &g)| l * f64::from(g))
                    .sum()
            };
            // f32 inputs: step on the f32 grid, so a wider step and bound.
            let an = logsumexp_backward(&x, rows, cols, &g);
            for i in 0..x.len() {
                let h = 1e-2;
                let mut up: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
                let mut dn = up.clone();
                up[i] += h;
                dn[i] -= h;
                let fd = (loss(&up) - loss(&dn)) / (2.0 * h);
                assert!(
                    (fd - an[i]).abs() < 1e-4 * (1.0 + an[i].abs()),
                    "lse {i}: {fd} vs {}",
                    an[i]
                );
            }
        }

        /// Batch normalisation's gradients, in training mode (through the
        /// batch statistics) and with fixed statistics, against central
        /// differences of the forward pass.
        #[test]
        fn batch_norm_gradients_match_finite_differences() {
            let (n, c, l, eps) = (3, 2, 4, 1e-5);
            let wave = |len: usize, s: f64| -> Vec<f64> {
                (0..len).map(|i| (i as f64 * s + 0.3).sin() * 2.0).collect()
            };
            let x = wave(n * c * l, 0.71);
            let gamma = vec![1.3, -0.6];
            let beta = vec![0.2, 0.9];
            let gy = wave(n * c * l, 0.37);
            let dot = |y: Vec<f64>| -> f64 { y.iter().zip(&gy).map(|(a, b)| a * b).sum() };
            let (mean, var) = channel_moments(&x, n, c, l);
            let (dx, dg, db) =
                batch_norm_backward(&x, n, c, l, &mean, &var, &gamma, &gy, eps, true);
            for (i, &an) in dx.iter().enumerate() {
                let f = |v: &[f64]| dot(batch_norm_train(v, n, c, l, &gamma, &beta, eps));
                close(&format!("train ∂x[{i}]"), fd(&f, &x, i), an);
            }
            for k in 0..c {
                let f = |v: &[f64]| dot(batch_norm_train(&x, n, c, l, v, &beta, eps));
                close(&format!("∂γ[{k}]"), fd(&f, &gamma, k), dg[k]);
                let f = |v: &[f64]| dot(batch_norm_train(&x, n, c, l, &gamma, v, eps));
                close(&format!("∂β[{k}]"), fd(&f, &beta, k), db[k]);
            }
            let (rm, rv) = (vec![0.1, -0.4], vec![0.8, 2.5]);
            let (dx, _, _) = batch_norm_backward(&x, n, c, l, &rm, &rv, &gamma, &gy, eps, false);
            for (i, &an) in dx.iter().enumerate() {
                let f = |v: &[f64]| dot(batch_norm(v, c, l, &rm, &rv, &gamma, &beta, eps));
                close(&format!("eval ∂x[{i}]"), fd(&f, &x, i), an);
            }
        }

        #[test]
        fn kl_is_zero_at_the_prior_and_positive_elsewhere() {
            let (k, _, _) = kl(&[0.0, 0.5, 0.0], &[0.0, 0.0, -1.0]);
            assert_eq!(k[0], 0.0);
            assert!(k[1] > 0.0 && k[2] > 0.0);
        }
    }
}

/// The GPU backend for tests, opened once per test binary. `None` (the GPU
/// tests skip) when no adapter exists, unless `LATENTLAB_REQUIRE_GPU=1`, which
/// turns a missing adapter into a failure.
pub fn test_gpu() -> Option<Wgpu> {
    static GPU: OnceLock<std::result::Result<Wgpu, String>> = OnceLock::new();
    let required = std::env::var("LATENTLAB_REQUIRE_GPU").is_ok_and(|v| v == "1");
    match GPU.get_or_init(|| Wgpu::new().map_err(|e| e.to_string())) {
        Ok(g) => Some(g.clone()),
        Err(e) if required => {
            panic!("LATENTLAB_REQUIRE_GPU=1 but no GPU adapter could be opened: {e}")
        }
        Err(e) => {
            eprintln!("GPU tests skipped: {e}");
            None
        }
    }
}

fn up<B: Backend>(b: &B, x: &[f32], r: usize, c: usize) -> B::Tensor {
    b.upload(x, Shape::new(r, c))
        .unwrap_or_else(|e| panic!("upload [{r}×{c}] on {}: {e}", b.name()))
}

fn down<B: Backend>(b: &B, t: &B::Tensor) -> Vec<f32> {
    b.download(t)
        .unwrap_or_else(|e| panic!("download on {}: {e}", b.name()))
}

fn mm_case<B: Backend>(b: &B, m: usize, k: usize, n: usize, ta: bool, tb: bool, seed: u64) {
    let (ar, ac) = if ta { (k, m) } else { (m, k) };
    let (br, bc) = if tb { (n, k) } else { (k, n) };
    let a = data(seed, ar * ac, -1.0, 1.0);
    let bb = data(seed + 1, br * bc, -1.0, 1.0);
    let t = |x| if x { Transpose::Yes } else { Transpose::No };
    let got = b
        .matmul(&up(b, &a, ar, ac), t(ta), &up(b, &bb, br, bc), t(tb))
        .expect("matmul");
    assert_eq!(b.shape(&got), Shape::new(m, n), "matmul output shape");
    let want = reference::matmul(&a, ar, ac, ta, &bb, br, bc, tb);
    // f32 accumulation: the error grows with the inner dimension.
    Tolerance::new(1e-4, 2e-6 * k as f64).assert(
        &format!("{} matmul m={m} k={k} n={n} ta={ta} tb={tb}", b.name()),
        &down(b, &got),
        &want,
    );
}

/// All four transpose combinations at shapes on and off the 64-tile.
pub fn matmul_all_transposes<B: Backend>(b: &B) {
    for &(m, k, n) in &[(3, 5, 7), (64, 64, 64), (65, 17, 63), (128, 96, 130)] {
        for ta in [false, true] {
            for tb in [false, true] {
                mm_case(b, m, k, n, ta, tb, (m * 1000 + k * 10 + n) as u64);
            }
        }
    }
}

/// `1×1`, `1×N`, `N×1`, vector–matrix and matrix–vector products.
pub fn matmul_edge_shapes<B: Backend>(b: &B) {
    for &(m, k, n) in &[
        (1, 1, 1),
        (1, 300, 1),
        (1, 7, 200),
        (200, 7, 1),
        (300, 1, 300),
        (1, 129, 65),
        (130, 1, 1),
    ] {
        mm_case(b, m, k, n, false, false, 11);
        mm_case(b, m, k, n, true, true, 12);
    }
}

/// A large inner dimension (several K tiles, not a multiple of 16).
pub fn matmul_large_k<B: Backend>(b: &B) {
    mm_case(b, 5, 4099, 3, false, false, 21);
    mm_case(b, 33, 2053, 70, false, true, 22);
}

/// Bias add, column, row and total sums, means.
pub fn add_row_and_sums<B: Backend>(b: &B) {
    let tol = Tolerance::new(1e-5, 1e-5);
    for &(r, c) in &[(1, 1), (1, 300), (300, 1), (37, 19), (513, 260)] {
        let x = data(31, r * c, -2.0, 2.0);
        let bias = data(32, c, -1.0, 1.0);
        let xt = up(b, &x, r, c);
        let what = |op: &str| format!("{} {op} [{r}×{c}]", b.name());
        tol.assert(
            &what("add_row"),
            &down(b, &b.add_row(&xt, &up(b, &bias, 1, c)).expect("add_row")),
            &reference::add_row(&x, c, &bias),
        );
        let cs = reference::sum_rows(&x, r, c);
        let rs = reference::sum_cols(&x, r, c);
        let s = b.sum_rows(&xt).expect("sum_rows");
        assert_eq!(b.shape(&s), Shape::new(1, c));
        tol.assert(&what("sum_rows"), &down(b, &s), &cs);
        let s = b.sum_cols(&xt).expect("sum_cols");
        assert_eq!(b.shape(&s), Shape::new(r, 1));
        tol.assert(&what("sum_cols"), &down(b, &s), &rs);
        let total: f64 = cs.iter().sum();
        tol.assert(
            &what("sum_all"),
            &down(b, &b.sum_all(&xt).expect("sum_all")),
            &[total],
        );
        tol.assert(
            &what("mean_all"),
            &down(b, &b.mean_all(&xt).expect("mean_all")),
            &[total / (r * c) as f64],
        );
        let mr: Vec<f64> = cs.iter().map(|v| v / r as f64).collect();
        tol.assert(
            &what("mean_rows"),
            &down(b, &b.mean_rows(&xt).expect("mean_rows")),
            &mr,
        );
        let mc: Vec<f64> = rs.iter().map(|v| v / c as f64).collect();
        tol.assert(
            &what("mean_cols"),
            &down(b, &b.mean_cols(&xt).expect("mean_cols")),
            &mc,
        );
    }
}

/// Every activation forward, over a range that includes large |x|.
pub fn activations_forward<B: Backend>(b: &B) {
    let mut x = data(41, 999, -6.0, 6.0);
    x.extend([-80.0, -20.0, -1e-4, 0.0, 1e-4, 20.0, 80.0]);
    let n = x.len();
    let xt = up(b, &x, 1, n);
    for a in Activation::all() {
        let want: Vec<f64> = x.iter().map(|&v| reference::act(a, f64::from(v))).collect();
        let got = down(b, &b.activation(a, &xt).expect("activation"));
        let tol = Tolerance::new(2e-5, 2e-6);
        tol.assert(&format!("{} {a} forward", b.name()), &got, &want);
        let mut inplace = xt.clone();
        b.activation_inplace(a, &mut inplace)
            .expect("activation_inplace");
        tol.assert(
            &format!("{} {a} forward in place", b.name()),
            &down(b, &inplace),
            &want,
        );
        assert_eq!(down(b, &xt), x, "{}: the input is left alone", b.name());
    }
}

/// Every activation backward: `∂L/∂x = act'(x) · ∂L/∂y`.
pub fn activations_backward<B: Backend>(b: &B) {
    let x = data(42, 40 * 25, -5.0, 5.0);
    let gy = data(43, 40 * 25, -1.0, 1.0);
    let (xt, gt) = (up(b, &x, 40, 25), up(b, &gy, 40, 25));
    for a in Activation::all() {
        let y = b.activation(a, &xt).expect("activation");
        let got = down(
            b,
            &b.activation_backward(a, &xt, &y, &gt)
                .expect("activation_backward"),
        );
        let want: Vec<f64> = x
            .iter()
            .zip(&gy)
            .map(|(&v, &g)| reference::act_derivative(a, f64::from(v)) * f64::from(g))
            .collect();
        let tol = Tolerance::new(1e-4, 2e-6);
        tol.assert(&format!("{} {a} backward", b.name()), &got, &want);
        // In place, given the pre-activation, and (where it suffices) the
        // output standing in for it.
        let mut inputs = vec![(&xt, "in place")];
        if a.output_determines_gradient() {
            inputs.push((&y, "from the output alone"));
        }
        for (input, how) in inputs {
            let mut g = gt.clone();
            b.activation_backward_inplace(a, input, &y, &mut g)
                .expect("activation_backward_inplace");
            tol.assert(
                &format!("{} {a} backward {how}", b.name()),
                &down(b, &g),
                &want,
            );
        }
    }
}

/// BCE with logits, per element and per row, on grey-level targets.
pub fn bce_with_logits<B: Backend>(b: &B) {
    let (r, c) = (17, 70);
    let mut l = data(51, r * c, -8.0, 8.0);
    l[0] = 40.0;
    l[1] = -40.0;
    let t = data(52, r * c, 0.0, 1.0);
    let (lt, tt) = (up(b, &l, r, c), up(b, &t, r, c));
    let (loss, grad) = reference::bce(&l, &t);
    let (gl, gg) = b.bce_with_logits_elementwise(&lt, &tt).expect("bce");
    let tol = Tolerance::new(1e-5, 2e-6);
    tol.assert(&format!("{} bce loss", b.name()), &down(b, &gl), &loss);
    tol.assert(&format!("{} bce grad", b.name()), &down(b, &gg), &grad);
    let rows: Vec<f64> = loss.chunks(c).map(|ch| ch.iter().sum()).collect();
    let (pr, _) = b.bce_with_logits(&lt, &tt).expect("bce per row");
    Tolerance::new(1e-5, 1e-4).assert(&format!("{} bce per row", b.name()), &down(b, &pr), &rows);
}

/// Gaussian NLL with one variance per element and with a shared row.
pub fn gaussian_nll<B: Backend>(b: &B) {
    let (r, c) = (9, 33);
    let x = data(61, r * c, -2.0, 2.0);
    let m = data(62, r * c, -2.0, 2.0);
    for shared in [false, true] {
        let lv = data(63, if shared { c } else { r * c }, -3.0, 2.0);
        let lvt = up(b, &lv, if shared { 1 } else { r }, c);
        let (l, gm, glv) = reference::gaussian_nll(&x, &m, &lv, c, shared);
        let out = b
            .gaussian_nll_elementwise(&up(b, &x, r, c), &up(b, &m, r, c), &lvt)
            .expect("gaussian_nll");
        let tol = Tolerance::new(2e-5, 2e-5);
        let what = |s: &str| format!("{} gaussian_nll {s} (shared logvar: {shared})", b.name());
        tol.assert(&what("loss"), &down(b, &out.0), &l);
        tol.assert(&what("∂mean"), &down(b, &out.1), &gm);
        tol.assert(&what("∂logvar"), &down(b, &out.2), &glv);
        let full = b
            .gaussian_nll(&up(b, &x, r, c), &up(b, &m, r, c), &lvt)
            .expect("gaussian_nll");
        let rows: Vec<f64> = l.chunks(c).map(|ch| ch.iter().sum()).collect();
        Tolerance::new(2e-5, 2e-4).assert(&what("per row"), &down(b, &full.per_row), &rows);
        let want_glv = if shared {
            reference::sum_rows(&glv.iter().map(|&v| v as f32).collect::<Vec<_>>(), r, c)
        } else {
            glv
        };
        Tolerance::new(2e-5, 2e-4).assert(
            &what("∂logvar summed"),
            &down(b, &full.grad_logvar),
            &want_glv,
        );
    }
}

/// KL to the standard normal, its gradients, and its zero at the prior.
pub fn kl_normal<B: Backend>(b: &B) {
    let (r, c) = (31, 20);
    let mu = data(71, r * c, -3.0, 3.0);
    let mut lv = data(72, r * c, -6.0, 3.0);
    lv[0] = 1e-5;
    let (kl, gm, glv) = reference::kl(&mu, &lv);
    let out = b
        .kl_normal(&up(b, &mu, r, c), &up(b, &lv, r, c))
        .expect("kl_normal");
    let tol = Tolerance::new(2e-5, 2e-6);
    tol.assert(
        &format!("{} kl elementwise", b.name()),
        &down(b, &out.elementwise),
        &kl,
    );
    tol.assert(&format!("{} kl ∂mu", b.name()), &down(b, &out.grad_mu), &gm);
    tol.assert(
        &format!("{} kl ∂logvar", b.name()),
        &down(b, &out.grad_logvar),
        &glv,
    );
    let rows: Vec<f64> = kl.chunks(c).map(|ch| ch.iter().sum()).collect();
    Tolerance::new(2e-5, 1e-5).assert(
        &format!("{} kl per row", b.name()),
        &down(b, &out.per_row),
        &rows,
    );
    let zero = b
        .kl_normal(
            &b.zeros(Shape::new(2, 3)).expect("zeros"),
            &b.zeros(Shape::new(2, 3)).expect("zeros"),
        )
        .expect("kl");
    assert!(
        down(b, &zero.per_row).iter().all(|&v| v == 0.0),
        "{}: KL at the prior must be exactly 0",
        b.name()
    );
}

/// Philox normals agree with the `f64` reference on the same counters.
pub fn randn_matches_reference<B: Backend>(b: &B) {
    for &(r, c, seed, stream) in &[
        (1, 1, 0, 0),
        (3, 5, 42, 7),
        (129, 67, u64::MAX, 1 << 40),
        (1000, 1, 9, 2),
    ] {
        let got = down(b, &b.randn(Shape::new(r, c), seed, stream).expect("randn"));
        let want = reference::randn(r * c, seed, stream);
        Tolerance::new(1e-4, 2e-5).assert(
            &format!("{} randn [{r}×{c}] seed {seed} stream {stream}", b.name()),
            &got,
            &want,
        );
    }
}

/// `z = mu + exp(½ lv) ε`, with ε the generator's draws.
pub fn reparameterize<B: Backend>(b: &B) {
    let (r, c) = (50, 21);
    let mu = data(81, r * c, -2.0, 2.0);
    let lv = data(82, r * c, -4.0, 1.0);
    let (z, eps) = b
        .reparameterize(&up(b, &mu, r, c), &up(b, &lv, r, c), 1234, 5)
        .expect("reparameterize");
    let e = reference::randn(r * c, 1234, 5);
    Tolerance::new(1e-4, 2e-5).assert(
        &format!("{} reparameterize ε", b.name()),
        &down(b, &eps),
        &e,
    );
    let want: Vec<f64> = (0..r * c)
        .map(|i| f64::from(mu[i]) + (0.5 * f64::from(lv[i])).exp() * e[i])
        .collect();
    Tolerance::new(1e-4, 3e-5).assert(
        &format!("{} reparameterize z", b.name()),
        &down(b, &z),
        &want,
    );
}

/// Three Adam steps, plain and with decoupled weight decay.
pub fn adam<B: Backend>(b: &B) {
    let (r, c) = (70, 13);
    let p0 = data(91, r * c, -1.0, 1.0);
    let g = data(92, r * c, -0.1, 0.1);
    for wd in [0.0, 0.1] {
        let mut p = up(b, &p0, r, c);
        let mut m = b.zeros(Shape::new(r, c)).expect("zeros");
        let mut v = b.zeros(Shape::new(r, c)).expect("zeros");
        let gt = up(b, &g, r, c);
        let mut hp = AdamStep::new(1e-2, 1);
        hp.weight_decay = wd;
        for t in 1..=3 {
            hp.step = t;
            b.adam_step(&mut p, &gt, &mut m, &mut v, &hp)
                .expect("adam_step");
        }
        let want = reference::adam(&p0, &g, &hp, 3);
        Tolerance::new(1e-5, 1e-6).assert(
            &format!("{} adam (weight decay {wd})", b.name()),
            &down(b, &p),
            &want,
        );
    }
}

/// axpy, scale, mul, add, sub, sum of squares.
pub fn axpy_scale_mul<B: Backend>(b: &B) {
    let (r, c) = (23, 45);
    let x = data(101, r * c, -3.0, 3.0);
    let y = data(102, r * c, -3.0, 3.0);
    let (xt, yt) = (up(b, &x, r, c), up(b, &y, r, c));
    let tol = Tolerance::new(1e-6, 1e-6);
    let zip = |f: &dyn Fn(f64, f64) -> f64| {
        x.iter()
            .zip(&y)
            .map(|(&a, &c)| f(f64::from(a), f64::from(c)))
            .collect::<Vec<_>>()
    };
    let mut acc = yt.clone();
    b.axpy(-0.75, &xt, &mut acc).expect("axpy");
    tol.assert(
        &format!("{} axpy", b.name()),
        &down(b, &acc),
        &zip(&|a, c| c - 0.75 * a),
    );
    tol.assert(
        &format!("{} scale", b.name()),
        &down(b, &b.scale(2.5, &xt).expect("scale")),
        &zip(&|a, _| 2.5 * a),
    );
    let mut scaled = xt.clone();
    b.scale_inplace(2.5, &mut scaled).expect("scale_inplace");
    tol.assert(
        &format!("{} scale in place", b.name()),
        &down(b, &scaled),
        &zip(&|a, _| 2.5 * a),
    );
    tol.assert(
        &format!("{} mul", b.name()),
        &down(b, &b.mul(&xt, &yt).expect("mul")),
        &zip(&|a, c| a * c),
    );
    tol.assert(
        &format!("{} add", b.name()),
        &down(b, &b.add(&xt, &yt).expect("add")),
        &zip(&|a, c| a + c),
    );
    tol.assert(
        &format!("{} sub", b.name()),
        &down(b, &b.sub(&xt, &yt).expect("sub")),
        &zip(&|a, c| a - c),
    );
    let ss: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum();
    Tolerance::new(1e-5, 1e-4).assert(
        &format!("{} sum_squares", b.name()),
        &down(b, &b.sum_squares(&xt).expect("sum_squares")),
        &[ss],
    );
}

/// A linear layer and its backward pass against the reference products.
pub fn linear_layer<B: Backend>(b: &B) {
    let (batch, inp, out) = (19, 37, 11);
    let x = data(111, batch * inp, -1.0, 1.0);
    let w = data(112, out * inp, -1.0, 1.0);
    let bias = data(113, out, -1.0, 1.0);
    let gy = data(114, batch * out, -1.0, 1.0);
    let (xt, wt) = (up(b, &x, batch, inp), up(b, &w, out, inp));
    let y = b.linear(&xt, &wt, &up(b, &bias, 1, out)).expect("linear");
    let xw: Vec<f32> = reference::matmul(&x, batch, inp, false, &w, out, inp, true)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let tol = Tolerance::new(1e-5, 1e-5);
    tol.assert(
        &format!("{} linear", b.name()),
        &down(b, &y),
        &reference::add_row(&xw, out, &bias),
    );
    let g = b
        .linear_backward(&xt, &wt, &up(b, &gy, batch, out))
        .expect("linear_backward");
    tol.assert(
        &format!("{} linear ∂x", b.name()),
        &down(b, &g.x),
        &reference::matmul(&gy, batch, out, false, &w, out, inp, false),
    );
    tol.assert(
        &format!("{} linear ∂w", b.name()),
        &down(b, &g.w),
        &reference::matmul(&gy, batch, out, true, &x, batch, inp, false),
    );
    tol.assert(
        &format!("{} linear ∂b", b.name()),
        &down(b, &g.b),
        &reference::sum_rows(&gy, batch, out),
    );
}

/// Upload/download round trip, zeros, and deep clones.
pub fn round_trip_and_clone<B: Backend>(b: &B) {
    let x = data(121, 6 * 7, -5.0, 5.0);
    let t = up(b, &x, 6, 7);
    assert_eq!(
        down(b, &t),
        x,
        "{}: upload/download must be exact",
        b.name()
    );
    assert!(
        down(b, &b.zeros(Shape::new(3, 4)).expect("zeros"))
            .iter()
            .all(|&v| v == 0.0)
    );
    let mut c = t.clone();
    b.axpy(1.0, &t, &mut c).expect("axpy");
    assert_eq!(
        down(b, &t),
        x,
        "{}: changing a clone must not change the original",
        b.name()
    );
    assert_eq!(down(b, &c), x.iter().map(|v| v * 2.0).collect::<Vec<_>>());
}

fn up64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| f64::from(v)).collect()
}

/// Convolution geometries the suite runs: the conv64 module's layers, odd
/// sizes, rectangular kernels, dilation, stride 1 and 3, several channels.
pub fn conv_geometries() -> Vec<Conv2dGeometry> {
    vec![
        Conv2dGeometry::square(1, [64, 64], 32, 4, 2, 1),
        Conv2dGeometry::square(32, [8, 8], 64, 4, 2, 1),
        Conv2dGeometry::square(3, [7, 5], 4, 3, 1, 1),
        Conv2dGeometry {
            kernel: [2, 3],
            stride: [3, 1],
            padding: [0, 2],
            dilation: [2, 1],
            ..Conv2dGeometry::square(2, [9, 6], 5, 1, 1, 0)
        },
        Conv2dGeometry::square(1, [1, 1], 1, 1, 1, 0),
        Conv2dGeometry::square(17, [3, 3], 1, 3, 1, 0),
    ]
}

/// Transposed-convolution geometries: the conv64 decoder's layers, output
/// padding, dilation, rectangular kernels.
pub fn conv_transpose_geometries() -> Vec<ConvTranspose2dGeometry> {
    let base = ConvTranspose2dGeometry {
        in_channels: 64,
        input: [4, 4],
        out_channels: 32,
        kernel: [4, 4],
        stride: [2, 2],
        padding: [1, 1],
        output_padding: [0, 0],
        dilation: [1, 1],
    };
    vec![
        base,
        ConvTranspose2dGeometry {
            in_channels: 32,
            input: [32, 32],
            out_channels: 3,
            ..base
        },
        ConvTranspose2dGeometry {
            in_channels: 3,
            input: [5, 3],
            out_channels: 2,
            kernel: [3, 3],
            output_padding: [1, 1],
            ..base
        },
        ConvTranspose2dGeometry {
            in_channels: 2,
            input: [4, 6],
            out_channels: 3,
            kernel: [2, 3],
            stride: [1, 3],
            padding: [0, 1],
            output_padding: [0, 2],
            dilation: [2, 1],
        },
        ConvTranspose2dGeometry {
            in_channels: 1,
            input: [1, 1],
            out_channels: 1,
            kernel: [1, 1],
            stride: [1, 1],
            padding: [0, 0],
            ..base
        },
    ]
}

/// Images a convolution case runs, from the values of its larger side: a
/// few when the images are large; 19 when small, which is past the 16 that
/// the CPU lowers together at most, so group boundaries and a short last
/// group are covered.
fn images_per_case(values: usize) -> usize {
    match values {
        0..=200 => 19,
        201..=2000 => 3,
        _ => 2,
    }
}

/// Convolution forward and backward, with and without a bias, against the
/// direct f64 definition.
pub fn conv2d<B: Backend>(b: &B) {
    for (gi, g) in conv_geometries().iter().enumerate() {
        let n = images_per_case(g.input_len());
        let seed = 600 + 10 * gi as u64;
        let x = data(seed, n * g.input_len(), -1.0, 1.0);
        let w = data(seed + 1, g.out_channels * g.patch_len(), -0.5, 0.5);
        let bias = data(seed + 2, g.out_channels, -0.5, 0.5);
        let gy = data(seed + 3, n * g.output_len(), -1.0, 1.0);
        let (xt, wt, bt) = (
            up(b, &x, n, g.input_len()),
            up(b, &w, g.out_channels, g.patch_len()),
            up(b, &bias, 1, g.out_channels),
        );
        let tol = Tolerance::new(1e-4, 2e-6 * (g.patch_len() as f64).max(16.0));
        let what = |op: &str| format!("{} {op} {g:?}", b.name());
        for with_bias in [true, false] {
            let y = b
                .conv2d(&xt, &wt, with_bias.then_some(&bt), g)
                .unwrap_or_else(|e| panic!("{}: {e}", what("conv2d")));
            assert_eq!(b.shape(&y), Shape::new(n, g.output_len()));
            let bias64 = up64(&bias);
            let want =
                reference::conv2d(&up64(&x), &up64(&w), with_bias.then_some(&bias64[..]), g, n);
            tol.assert(&what("conv2d"), &down(b, &y), &want);
        }
        let grads = b
            .conv2d_backward(&xt, &wt, true, &up(b, &gy, n, g.output_len()), g, true)
            .unwrap_or_else(|e| panic!("{}: {e}", what("conv2d_backward")));
        let (gx, gw, gb) = reference::conv2d_backward(&up64(&x), &up64(&w), &up64(&gy), g, n);
        let inner = (n * g.positions()).max(g.out_channels * g.kernel[0] * g.kernel[1]);
        let gtol = Tolerance::new(1e-4, 2e-6 * (inner as f64).max(16.0));
        gtol.assert(
            &what("conv2d ∂x"),
            &down(b, grads.x.as_ref().expect("asked for")),
            &gx,
        );
        gtol.assert(&what("conv2d ∂w"), &down(b, &grads.w), &gw);
        gtol.assert(
            &what("conv2d ∂b"),
            &down(b, grads.b.as_ref().expect("has a bias")),
            &gb,
        );
        let lean = b
            .conv2d_backward(&xt, &wt, false, &up(b, &gy, n, g.output_len()), g, false)
            .expect("conv2d_backward");
        assert!(lean.x.is_none() && lean.b.is_none());
        gtol.assert(&what("conv2d ∂w (lean)"), &down(b, &lean.w), &gw);
    }
}

/// Transposed convolution forward and backward against the direct f64
/// definition.
pub fn conv_transpose2d<B: Backend>(b: &B) {
    for (gi, g) in conv_transpose_geometries().iter().enumerate() {
        let n = images_per_case(g.output_len());
        let seed = 700 + 10 * gi as u64;
        let wlen = g.in_channels * g.out_channels * g.kernel[0] * g.kernel[1];
        let x = data(seed, n * g.input_len(), -1.0, 1.0);
        let w = data(seed + 1, wlen, -0.5, 0.5);
        let bias = data(seed + 2, g.out_channels, -0.5, 0.5);
        let gy = data(seed + 3, n * g.output_len(), -1.0, 1.0);
        let (xt, wt, bt) = (
            up(b, &x, n, g.input_len()),
            up(b, &w, g.in_channels, wlen / g.in_channels),
            up(b, &bias, 1, g.out_channels),
        );
        let what = |op: &str| format!("{} {op} {g:?}", b.name());
        let tol = Tolerance::new(1e-4, 2e-6 * (g.in_channels as f64 * 16.0).max(16.0));
        for with_bias in [true, false] {
            let y = b
                .conv_transpose2d(&xt, &wt, with_bias.then_some(&bt), g)
                .unwrap_or_else(|e| panic!("{}: {e}", what("conv_transpose2d")));
            assert_eq!(b.shape(&y), Shape::new(n, g.output_len()));
            let bias64 = up64(&bias);
            let want = reference::conv_transpose2d(
                &up64(&x),
                &up64(&w),
                with_bias.then_some(&bias64[..]),
                g,
                n,
            );
            tol.assert(&what("conv_transpose2d"), &down(b, &y), &want);
        }
        let grads = b
            .conv_transpose2d_backward(&xt, &wt, true, &up(b, &gy, n, g.output_len()), g, true)
            .unwrap_or_else(|e| panic!("{}: {e}", what("conv_transpose2d_backward")));
        let (gx, gw, gb) =
            reference::conv_transpose2d_backward(&up64(&x), &up64(&w), &up64(&gy), g, n);
        let inner = (n * g.input[0] * g.input[1]).max(g.out_channels * 16);
        let gtol = Tolerance::new(1e-4, 2e-6 * (inner as f64).max(16.0));
        gtol.assert(
            &what("conv_transpose2d ∂x"),
            &down(b, grads.x.as_ref().expect("asked for")),
            &gx,
        );
        gtol.assert(&what("conv_transpose2d ∂w"), &down(b, &grads.w), &gw);
        gtol.assert(
            &what("conv_transpose2d ∂b"),
            &down(b, grads.b.as_ref().expect("has a bias")),
            &gb,
        );
    }
}

/// The layout ops convolutions are built from: reshape, the per-row
/// transpose, the channel bias and channel sums, and im2col against col2im
/// (adjoint: ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩).
pub fn conv_layout_ops<B: Backend>(b: &B) {
    let (rows, p, q) = (3, 37, 21);
    let x = data(801, rows * p * q, -1.0, 1.0);
    let xt = up(b, &x, rows, p * q);
    let t = b.batch_transpose(&xt, p, q).expect("batch_transpose");
    let want: Vec<f64> = (0..rows * p * q)
        .map(|i| {
            let (r, o) = (i / (p * q), i % (p * q));
            f64::from(x[r * p * q + (o % p) * q + o / p])
        })
        .collect();
    Tolerance::new(0.0, 0.0).assert(
        &format!("{} batch_transpose", b.name()),
        &down(b, &t),
        &want,
    );
    let back = b.batch_transpose(&t, q, p).expect("batch_transpose");
    assert_eq!(down(b, &back), x, "{}: transposing twice", b.name());
    let r = b
        .reshape(xt.clone(), Shape::new(rows * p, q))
        .expect("reshape");
    assert_eq!(b.shape(&r), Shape::new(rows * p, q));
    assert_eq!(down(b, &r), x, "{}: reshape keeps the order", b.name());

    let (c, l) = (7, 33);
    let y = data(802, rows * c * l, -1.0, 1.0);
    let bias = data(803, c, -1.0, 1.0);
    let yt = up(b, &y, rows, c * l);
    let got = b
        .add_channel_bias(&yt, &up(b, &bias, 1, c))
        .expect("add_channel_bias");
    let want: Vec<f64> = y
        .iter()
        .enumerate()
        .map(|(i, &v)| f64::from(v) + f64::from(bias[(i / l) % c]))
        .collect();
    Tolerance::new(1e-6, 1e-6).assert(
        &format!("{} add_channel_bias", b.name()),
        &down(b, &got),
        &want,
    );
    let sums = b.sum_channels(&yt, c).expect("sum_channels");
    let mut want = vec![0.0f64; c];
    for (i, &v) in y.iter().enumerate() {
        want[(i / l) % c] += f64::from(v);
    }
    Tolerance::new(1e-5, 1e-5).assert(
        &format!("{} sum_channels", b.name()),
        &down(b, &sums),
        &want,
    );

    for g in conv_geometries() {
        let n = 2;
        let x = data(804, n * g.input_len(), -1.0, 1.0);
        let cl = n * g.positions() * g.patch_len();
        let cv = data(805, cl, -1.0, 1.0);
        let cols = b.im2col(&up(b, &x, n, g.input_len()), &g).expect("im2col");
        assert_eq!(b.shape(&cols), Shape::new(n * g.positions(), g.patch_len()));
        let img = b
            .col2im(&up(b, &cv, n * g.positions(), g.patch_len()), &g)
            .expect("col2im");
        let lhs: f64 = down(b, &cols)
            .iter()
            .zip(&cv)
            .map(|(a, c)| f64::from(*a) * f64::from(*c))
            .sum();
        let rhs: f64 = down(b, &img)
            .iter()
            .zip(&x)
            .map(|(a, c)| f64::from(*a) * f64::from(*c))
            .sum();
        assert!(
            (lhs - rhs).abs() <= 1e-4 * (1.0 + lhs.abs()),
            "{}: im2col and col2im are not adjoint for {g:?}: {lhs} vs {rhs}",
            b.name()
        );
    }
}

/// Convolution operands that do not fit are errors naming the op and shapes.
pub fn conv_errors<B: Backend>(b: &B) {
    let g = Conv2dGeometry::square(3, [8, 8], 4, 3, 1, 1);
    let x = up(b, &vec![0.5; 2 * 3 * 64], 2, 3 * 64);
    let grey = up(b, &vec![0.5; 2 * 64], 2, 64);
    let w = up(b, &vec![0.1; 4 * 27], 4, 27);
    let wrong_w = up(b, &[0.1; 4 * 9], 4, 9);
    let bias = up(b, &[0.0; 4], 1, 4);
    let msg = |r: crate::Result<B::Tensor>| match r {
        Ok(_) => panic!("{}: should have failed", b.name()),
        Err(e) => e.to_string(),
    };
    let m = msg(b.conv2d(&grey, &w, Some(&bias), &g));
    assert!(
        m.contains("conv2d") && m.contains("3 channels of 8×8"),
        "{m}"
    );
    let m = msg(b.conv2d(&x, &wrong_w, Some(&bias), &g));
    assert!(m.contains("[4, 3, 3, 3]") && m.contains("[4×9]"), "{m}");
    let m = msg(b.conv2d(&x, &w, Some(&up(b, &[0.0; 3], 1, 3)), &g));
    assert!(m.contains("bias"), "{m}");
    let tiny = Conv2dGeometry::square(3, [8, 8], 4, 11, 1, 1);
    let m = msg(b.conv2d(&x, &w, None, &tiny));
    assert!(m.contains("does not fit"), "{m}");
    let m = msg(b.reshape(x.clone(), Shape::new(5, 5)));
    assert!(m.contains("reshape") && m.contains("[5×5]"), "{m}");
    let m = msg(b.batch_transpose(&x, 5, 5));
    assert!(m.contains("batch_transpose"), "{m}");
}

/// exp and log forward and backward, including log at 0 (−inf) and below
/// (NaN) and exp of large arguments.
pub fn unary_ops<B: Backend>(b: &B) {
    for op in Unary::all() {
        let (lo, hi) = match op {
            Unary::Exp => (-20.0, 20.0),
            Unary::Log => (1e-4, 50.0),
        };
        let mut x = data(901, 37 * 29, lo, hi);
        let edges: &[f32] = match op {
            Unary::Exp => &[-100.0, 0.0, 88.0, 100.0, f32::NEG_INFINITY],
            Unary::Log => &[0.0, -1.0, 1.0, 1e-30, f32::INFINITY],
        };
        x[..edges.len()].copy_from_slice(edges);
        let xt = up(b, &x, 37, 29);
        let y = b.unary(op, &xt).expect("unary");
        let want: Vec<f64> = x
            .iter()
            .map(|&v| reference::unary(op, f64::from(v)))
            .collect();
        // f32's exp overflows at 88.7; the reference's f64 does not.
        let want_f32: Vec<f64> = want
            .iter()
            .map(|&w| {
                if w > f64::from(f32::MAX) {
                    f64::INFINITY
                } else {
                    w
                }
            })
            .collect();
        let tol = Tolerance::new(2e-6, 1e-6);
        tol.assert(&format!("{} {op}", b.name()), &down(b, &y), &want_f32);
        let gy = data(902, x.len(), -1.0, 1.0);
        let g = b
            .unary_backward(op, &xt, &y, &up(b, &gy, 37, 29))
            .expect("unary_backward");
        let want: Vec<f64> = x
            .iter()
            .zip(&gy)
            .zip(&want_f32)
            .map(|((&v, &g), &yv)| match op {
                Unary::Exp => f64::from(g) * yv,
                Unary::Log => f64::from(g) * reference::unary_derivative(op, f64::from(v)),
            })
            .skip(edges.len())
            .collect();
        tol.assert(
            &format!("{} {op} backward", b.name()),
            &down(b, &g)[edges.len()..],
            &want,
        );
    }
}

/// The row-wise logsumexp and its gradient: wide and narrow rows, values
/// whose exponentials overflow f32 (the maximum must be taken out), and rows
/// of −inf, +inf and NaN.
pub fn logsumexp<B: Backend>(b: &B) {
    for (rows, cols, seed) in [(5, 1, 911), (7, 13, 912), (3, 300, 913), (2, 1000, 914)] {
        let mut x = data(seed, rows * cols, -30.0, 30.0);
        // Row 0 shifted far up: exp would overflow without the maximum.
        x[..cols].iter_mut().for_each(|v| *v += 150.0);
        let xt = up(b, &x, rows, cols);
        let lse = b.logsumexp_rows(&xt).expect("logsumexp_rows");
        assert_eq!(b.shape(&lse), Shape::new(rows, 1));
        // The reference in f64 without a maximum: exact for |x| < 700.
        let want = reference::logsumexp_rows(&x, rows, cols);
        let tol = Tolerance::new(1e-6, 1e-5);
        tol.assert(
            &format!("{} logsumexp {rows}×{cols}", b.name()),
            &down(b, &lse),
            &want,
        );
        let g = data(seed + 100, rows, -2.0, 2.0);
        let gx = b
            .logsumexp_backward(&xt, &lse, &up(b, &g, rows, 1))
            .expect("logsumexp_backward");
        Tolerance::new(1e-4, 1e-6).assert(
            &format!("{} logsumexp backward {rows}×{cols}", b.name()),
            &down(b, &gx),
            &reference::logsumexp_backward(&x, rows, cols, &g),
        );
    }
    let inf = f32::INFINITY;
    let x = [
        -inf,
        -inf,
        -inf,
        1.0,
        inf,
        -inf,
        2.0,
        f32::NAN,
        0.5,
        -inf,
        3.0,
        -inf,
    ];
    let got = down(b, &b.logsumexp_rows(&up(b, &x, 4, 3)).expect("lse"));
    let want = [f64::NEG_INFINITY, f64::INFINITY, f64::NAN, 3.0];
    Tolerance::new(1e-6, 1e-6).assert(&format!("{} logsumexp edges", b.name()), &got, &want);
}

/// Batch normalisation: per-channel moments, the normalisation with and
/// without γ and β, and both backward modes, on 2-D (planes of many values,
/// some longer than a workgroup) and 1-D (planes of one) layouts.
pub fn batch_norm<B: Backend>(b: &B) {
    let eps = 1e-5f32;
    for (n, c, l, seed) in [
        (4, 3, 50, 921),
        (64, 16, 1, 922),
        (2, 5, 1000, 923),
        (1, 2, 3, 924),
    ] {
        let what = |s: &str| format!("{} batch_norm {n}×{c}×{l} {s}", b.name());
        // An offset per channel, so that a wrong mean shows.
        let x: Vec<f32> = data(seed, n * c * l, -1.0, 1.0)
            .iter()
            .enumerate()
            .map(|(i, v)| v * (1.0 + ((i / l) % c) as f32) + 3.0 * ((i / l) % c) as f32)
            .collect();
        let xt = up(b, &x, n, c * l);
        let (mean, var) = b.channel_moments(&xt, c).expect("channel_moments");
        let x64 = up64(&x);
        let (rm, rv) = reference::channel_moments(&x64, n, c, l);
        let tol = Tolerance::new(1e-5, 1e-5);
        tol.assert(&what("mean"), &down(b, &mean), &rm);
        tol.assert(&what("variance"), &down(b, &var), &rv);
        let gamma = data(seed + 1, c, 0.5, 1.5);
        let beta = data(seed + 2, c, -1.0, 1.0);
        let (gt, bt) = (up(b, &gamma, 1, c), up(b, &beta, 1, c));
        for affine in [true, false] {
            let (g64, b64) = if affine {
                (up64(&gamma), up64(&beta))
            } else {
                (vec![1.0; c], vec![0.0; c])
            };
            let (ga, ba) = if affine {
                (Some(&gt), Some(&bt))
            } else {
                (None, None)
            };
            let y = b
                .batch_norm(&xt, &mean, &var, ga, ba, eps)
                .expect("batch_norm");
            let want = reference::batch_norm(&x64, c, l, &rm, &rv, &g64, &b64, f64::from(eps));
            Tolerance::new(1e-4, 1e-4).assert(
                &what(&format!("affine {affine}")),
                &down(b, &y),
                &want,
            );
            let gy = data(seed + 3, x.len(), -1.0, 1.0);
            let gyt = up(b, &gy, n, c * l);
            for stats in [NormStats::Batch, NormStats::Fixed] {
                let r = b
                    .batch_norm_backward(&xt, &mean, &var, ga, &gyt, eps, stats)
                    .expect("batch_norm_backward");
                let (dx, dg, db) = reference::batch_norm_backward(
                    &x64,
                    n,
                    c,
                    l,
                    &rm,
                    &rv,
                    &g64,
                    &up64(&gy),
                    f64::from(eps),
                    stats == NormStats::Batch,
                );
                let tol = Tolerance::new(2e-4, 2e-4);
                let s = format!("affine {affine} {stats:?}");
                tol.assert(&what(&format!("∂x {s}")), &down(b, &r.x), &dx);
                tol.assert(&what(&format!("∂γ {s}")), &down(b, &r.gamma), &dg);
                tol.assert(&what(&format!("∂β {s}")), &down(b, &r.beta), &db);
            }
        }
    }
}

/// Batch normalisation and logsumexp operands that do not fit are errors
/// naming the op.
pub fn norm_errors<B: Backend>(b: &B) {
    let x = up(b, &[0.5; 24], 2, 12);
    let s3 = up(b, &[1.0; 3], 1, 3);
    let s5 = up(b, &[1.0; 5], 1, 5);
    let msg = |r: crate::Result<B::Tensor>| match r {
        Ok(_) => panic!("{}: should have failed", b.name()),
        Err(e) => e.to_string(),
    };
    let m = msg(b.channel_moments(&x, 5).map(|r| r.0));
    assert!(
        m.contains("channel_moments") && m.contains("5 equal channel planes"),
        "{m}"
    );
    let m = msg(b.batch_norm(&x, &s3, &s5, None, None, 1e-5));
    assert!(m.contains("batch_norm") && m.contains("variance"), "{m}");
    let m = msg(b.batch_norm(&x, &s3, &s3, Some(&s5), None, 1e-5));
    assert!(m.contains("γ"), "{m}");
    let m = msg(b.batch_norm(&x, &s5, &s5, None, None, 1e-5));
    assert!(m.contains("5 equal channel planes"), "{m}");
    let m = msg(b.batch_norm(&x, &s3, &s3, None, None, 0.0));
    assert!(m.contains("eps"), "{m}");
    let m = msg(b
        .batch_norm_backward(&x, &s3, &s3, None, &s3, 1e-5, NormStats::Batch)
        .map(|r| r.x));
    assert!(m.contains("batch_norm_backward"), "{m}");
    let lse = up(b, &[0.0; 3], 3, 1);
    let m = msg(b.logsumexp_backward(&x, &lse, &lse));
    assert!(
        m.contains("logsumexp_backward") && m.contains("[2×1]"),
        "{m}"
    );
}

/// Wrong shapes, empty tensors and bad arguments are typed errors naming the op.
pub fn errors<B: Backend>(b: &B) {
    let a = up(b, &[1.0; 6], 2, 3);
    let c = up(b, &[1.0; 6], 3, 2);
    let expect = |r: crate::Result<B::Tensor>, op: &str, needle: &str| match r {
        Ok(_) => panic!("{}: {op} should have failed", b.name()),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(op) && msg.contains(needle),
                "{}: {op}: unhelpful error {msg:?}",
                b.name()
            );
        }
    };
    expect(
        b.matmul(&a, Transpose::No, &a, Transpose::No),
        "matmul",
        "[2×3]",
    );
    expect(
        b.matmul(&a, Transpose::Yes, &c, Transpose::No),
        "matmul",
        "[3×2]",
    );
    expect(b.add_row(&a, &c), "add_row", "[1×3]");
    expect(b.mul(&a, &c), "mul", "[2×3]");
    expect(b.upload(&[1.0; 5], Shape::new(2, 3)), "upload", "5 values");
    expect(b.upload(&[], Shape::new(0, 3)), "upload", "empty");
    expect(b.zeros(Shape::new(4, 0)), "zeros", "empty");
    expect(b.scale(f32::NAN, &a), "scale", "NaN");
    let mut s = a.clone();
    match b.scale_inplace(f32::INFINITY, &mut s) {
        Err(TensorError::InvalidArgument { op: "scale", .. }) => {}
        other => panic!("{}: scale_inplace by infinity gave {other:?}", b.name()),
    }
    expect(b.linear(&a, &a, &c), "", "[1×2]");
    expect(b.linear(&a, &c, &c), "matmul", "[3×2]");
    expect(
        b.gaussian_nll_elementwise(&a, &a, &c).map(|o| o.0),
        "gaussian_nll",
        "logvar",
    );
    let mut p = a.clone();
    let (mut m, mut v) = (a.clone(), a.clone());
    let bad = AdamStep::new(f32::INFINITY, 1);
    match b.adam_step(&mut p, &a, &mut m, &mut v, &bad) {
        Err(TensorError::InvalidArgument {
            op: "adam_step", ..
        }) => {}
        other => panic!(
            "{}: adam with an infinite learning rate gave {other:?}",
            b.name()
        ),
    }
    match b.axpy(1.0, &c, &mut p) {
        Err(TensorError::ShapeMismatch { op: "axpy", .. }) => {}
        other => panic!("{}: axpy with mismatched shapes gave {other:?}", b.name()),
    }
}

/// Expands the conformance suite into one `#[test]` per check for the backend
/// that `$make` (an expression of type `Option<B>`) yields; `None` skips.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            matmul_all_transposes, matmul_edge_shapes, matmul_large_k, add_row_and_sums,
            activations_forward, activations_backward, bce_with_logits, gaussian_nll, kl_normal,
            randn_matches_reference, reparameterize, adam, axpy_scale_mul, linear_layer,
            round_trip_and_clone, errors, conv2d, conv_transpose2d, conv_layout_ops, conv_errors,
            unary_ops, logsumexp, batch_norm, norm_errors);
    };
    (@each $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                match $make {
                    Some(backend) => $crate::conformance::$check(&backend),
                    None => eprintln!(concat!(stringify!($check), ": skipped, no device")),
                }
            }
        )*
    };
}
