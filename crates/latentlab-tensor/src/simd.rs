//! Elementwise CPU kernels written for the vectoriser.
//!
//! Each kernel is a plain loop over slices, compiled twice: once for the
//! baseline target and once with AVX2 and FMA enabled, picked at run time.
//! Both builds do the same IEEE operations in the same order (Rust never
//! contracts `a * b + c` into a fused multiply-add on its own), so a result
//! does not depend on which one ran. Parallel kernels split the slices into
//! fixed chunks of independent elements, so they are also bit-identical to
//! the sequential ones.
//!
//! The transcendental functions here (`exp` of a non-positive argument and
//! `ln(1 + e)` for `e` in `[0, 1]`) are branch-free polynomial forms, accurate
//! to a few units in the last place, so that loops calling them vectorise;
//! `libm`'s `expf` and `log1pf` are scalar calls.

// The kernels index their slices in counted loops on purpose: once the
// slices are cut to one length the bounds checks vanish and the loops
// vectorise.
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// A loop to compile for the widest vector unit the CPU has. `run` must be
/// `#[inline(always)]` so that its body is compiled inside [`vectorised`]'s
/// feature-enabled function rather than called from it.
trait Kernel {
    fn run(self);
}

/// Runs `k` in a function compiled for AVX2 and FMA when the CPU has them.
#[inline(always)]
fn vectorised<K: Kernel>(k: K) {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2() {
            #[target_feature(enable = "avx2,fma")]
            fn with_avx2<K: Kernel>(k: K) {
                k.run()
            }
            // SAFETY: the CPU was checked to support AVX2 and FMA.
            #[allow(unsafe_code)]
            unsafe {
                with_avx2(k)
            };
            return;
        }
    }
    k.run()
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

/// Whether a loop over `len` elements is worth splitting across threads.
fn split(parallel: bool, len: usize) -> bool {
    parallel && len >= 2 * CHUNK
}

struct Map<'a, F> {
    x: &'a mut [f32],
    f: &'a F,
}

impl<F: Fn(f32) -> f32> Kernel for Map<'_, F> {
    #[inline(always)]
    fn run(self) {
        for v in self.x.iter_mut() {
            *v = (self.f)(*v);
        }
    }
}

/// `f(x)` for every element, in place.
pub(crate) fn map_inplace(parallel: bool, x: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    let f = &f;
    if split(parallel, x.len()) {
        x.par_chunks_mut(CHUNK)
            .for_each(|x| vectorised(Map { x, f }));
    } else {
        vectorised(Map { x, f });
    }
}

struct Zip<'a, F> {
    out: &'a mut [f32],
    a: &'a [f32],
    f: &'a F,
}

impl<F: Fn(f32, f32) -> f32> Kernel for Zip<'_, F> {
    #[inline(always)]
    fn run(self) {
        let n = self.out.len();
        let a = &self.a[..n];
        for i in 0..n {
            self.out[i] = (self.f)(self.out[i], a[i]);
        }
    }
}

/// `out ← f(out, a)` for every element.
pub(crate) fn zip_inplace(
    parallel: bool,
    out: &mut [f32],
    a: &[f32],
    f: impl Fn(f32, f32) -> f32 + Sync,
) {
    assert_eq!(out.len(), a.len(), "zip_inplace: lengths");
    let f = &f;
    if split(parallel, out.len()) {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .for_each(|(out, a)| vectorised(Zip { out, a, f }));
    } else {
        vectorised(Zip { out, a, f });
    }
}

struct Zip3<'a, F> {
    out: &'a mut [f32],
    a: &'a [f32],
    b: &'a [f32],
    f: &'a F,
}

impl<F: Fn(f32, f32, f32) -> f32> Kernel for Zip3<'_, F> {
    #[inline(always)]
    fn run(self) {
        let n = self.out.len();
        let (a, b) = (&self.a[..n], &self.b[..n]);
        for i in 0..n {
            self.out[i] = (self.f)(self.out[i], a[i], b[i]);
        }
    }
}

/// `out ← f(out, a, b)` for every element.
pub(crate) fn zip3_inplace(
    parallel: bool,
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    f: impl Fn(f32, f32, f32) -> f32 + Sync,
) {
    assert!(out.len() == a.len() && a.len() == b.len(), "zip3: lengths");
    let f = &f;
    if split(parallel, out.len()) {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .zip(b.par_chunks(CHUNK))
            .for_each(|((out, a), b)| vectorised(Zip3 { out, a, b, f }));
    } else {
        vectorised(Zip3 { out, a, b, f });
    }
}

struct Bce<'a> {
    logits: &'a [f32],
    targets: &'a [f32],
    loss: &'a mut [f32],
    grad: &'a mut [f32],
}

impl Kernel for Bce<'_> {
    #[inline(always)]
    fn run(self) {
        let n = self.logits.len();
        let (t, loss, grad) = (&self.targets[..n], &mut self.loss[..n], &mut self.grad[..n]);
        for i in 0..n {
            let (l, t) = (self.logits[i], t[i]);
            let e = exp_nonpositive(-l.abs());
            let num = if l >= 0.0 { 1.0 } else { e };
            grad[i] = num / (1.0 + e) - t;
            let relu = if l > 0.0 { l } else { 0.0 };
            loss[i] = relu - l * t + ln_1p_unit(e);
        }
    }
}

/// Binary cross-entropy with logits in one pass: `loss = max(l, 0) − l·t +
/// ln(1 + e^{−|l|})` and `grad = sigmoid(l) − t`, sharing one exponential.
pub(crate) fn bce_with_logits(
    parallel: bool,
    logits: &[f32],
    targets: &[f32],
    loss: &mut [f32],
    grad: &mut [f32],
) {
    let n = logits.len();
    assert!(
        targets.len() == n && loss.len() == n && grad.len() == n,
        "bce: lengths"
    );
    if split(parallel, n) {
        loss.par_chunks_mut(CHUNK)
            .zip(grad.par_chunks_mut(CHUNK))
            .zip(logits.par_chunks(CHUNK))
            .zip(targets.par_chunks(CHUNK))
            .for_each(|(((loss, grad), logits), targets)| {
                vectorised(Bce {
                    logits,
                    targets,
                    loss,
                    grad,
                })
            });
    } else {
        vectorised(Bce {
            logits,
            targets,
            loss,
            grad,
        });
    }
}

/// The constants of one Adam update.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamConsts {
    pub b1: f32,
    pub b2: f32,
    pub bc1: f32,
    pub bc2: f32,
    pub lr: f32,
    pub eps: f32,
    pub decay: f32,
}

struct Adam<'a> {
    p: &'a mut [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    g: &'a [f32],
    c: AdamConsts,
}

impl Kernel for Adam<'_> {
    #[inline(always)]
    fn run(self) {
        let n = self.p.len();
        let c = self.c;
        let (m, v, g) = (&mut self.m[..n], &mut self.v[..n], &self.g[..n]);
        for i in 0..n {
            let g = g[i];
            m[i] = c.b1 * m[i] + (1.0 - c.b1) * g;
            v[i] = c.b2 * v[i] + (1.0 - c.b2) * g * g;
            let mhat = m[i] / c.bc1;
            let vhat = v[i] / c.bc2;
            self.p[i] = self.p[i] * c.decay - c.lr * mhat / (vhat.sqrt() + c.eps);
        }
    }
}

/// One Adam update of `p`, `m` and `v` with gradient `g`.
pub(crate) fn adam(
    parallel: bool,
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    g: &[f32],
    c: AdamConsts,
) {
    let n = p.len();
    assert!(
        m.len() == n && v.len() == n && g.len() == n,
        "adam: lengths"
    );
    if split(parallel, n) {
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| vectorised(Adam { p, m, v, g, c }));
    } else {
        vectorised(Adam { p, m, v, g, c });
    }
}

/// `e^x` for `x ≤ 0` (Cody–Waite reduction and Cephes' `expf` polynomial).
/// Arguments below −87.3 give the smallest normal number's neighbourhood
/// instead of a subnormal; NaN stays NaN.
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const SHIFTER: f32 = 12_582_912.0; // 1.5 · 2²³: adding it rounds to an integer
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = if x < -87.3 { -87.3 } else { x };
    let t = x * LOG2E + SHIFTER;
    let n = t - SHIFTER;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // n sits in the low mantissa bits of t; 2ⁿ is built from its exponent.
    let ni = (t.to_bits() as i32).wrapping_sub(SHIFTER.to_bits() as i32);
    let scale = f32::from_bits((ni.wrapping_add(127) as u32) << 23);
    y * scale
}

/// `ln(1 + e)` for `e` in `[0, 1]`, as `2·atanh(e / (2 + e))`: no cancellation
/// for small `e`, a short odd series since `e / (2 + e) ≤ 1/3`.
#[inline(always)]
pub(crate) fn ln_1p_unit(e: f32) -> f32 {
    let s = e / (2.0 + e);
    let z = s * s;
    let mut p = 1.0 / 13.0_f32;
    p = p * z + 1.0 / 11.0;
    p = p * z + 1.0 / 9.0;
    p = p * z + 1.0 / 7.0;
    p = p * z + 1.0 / 5.0;
    p = p * z + 1.0 / 3.0;
    p = p * z + 1.0;
    2.0 * s * p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f64) -> f64 {
        ((f64::from(a) - b) / b).abs() / f64::from(f32::EPSILON)
    }

    #[test]
    fn exp_is_within_two_ulps() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            worst = worst.max(ulps(exp_nonpositive(x), f64::from(x).exp()));
            x += 1.0e-3;
        }
        assert!(worst < 2.0, "worst error {worst} ulps");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
        assert!(exp_nonpositive(f32::NEG_INFINITY) < 1e-37);
        assert!(exp_nonpositive(-1.0e6) >= 0.0);
    }

    #[test]
    fn ln_1p_is_within_two_ulps_down_to_tiny_arguments() {
        let mut worst = 0.0f64;
        for i in 0..=100_000 {
            let e = i as f32 / 100_000.0;
            if e == 0.0 {
                continue;
            }
            worst = worst.max(ulps(ln_1p_unit(e), f64::from(e).ln_1p()));
        }
        for k in 1..120 {
            let e = 2.0f32.powi(-k);
            worst = worst.max(ulps(ln_1p_unit(e), f64::from(e).ln_1p()));
        }
        assert!(worst < 2.0, "worst error {worst} ulps");
        assert_eq!(ln_1p_unit(0.0), 0.0);
        assert!(ln_1p_unit(f32::NAN).is_nan());
    }

    #[test]
    fn bce_matches_the_libm_forms_and_keeps_nan() {
        let logits: Vec<f32> = (0..70_001)
            .map(|i| (i as f32 - 35_000.0) * 1.0e-3)
            .chain([f32::NAN, 200.0, -200.0])
            .collect();
        let targets: Vec<f32> = (0..logits.len()).map(|i| (i % 7) as f32 / 6.0).collect();
        let n = logits.len();
        let (mut lp, mut gp) = (vec![0.0; n], vec![0.0; n]);
        let (mut ls, mut gs) = (vec![0.0; n], vec![0.0; n]);
        bce_with_logits(true, &logits, &targets, &mut lp, &mut gp);
        bce_with_logits(false, &logits, &targets, &mut ls, &mut gs);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&lp), bits(&ls), "the parallel loss is bit-identical");
        assert_eq!(
            bits(&gp),
            bits(&gs),
            "the parallel gradient is bit-identical"
        );
        for i in 0..n {
            let (l, t) = (f64::from(logits[i]), f64::from(targets[i]));
            if l.is_nan() {
                assert!(lp[i].is_nan() && gp[i].is_nan());
                continue;
            }
            let loss = l.max(0.0) - l * t + (-l.abs()).exp().ln_1p();
            let sig = 1.0 / (1.0 + (-l).exp());
            assert!(
                (f64::from(lp[i]) - loss).abs() <= 4.0e-7 * (1.0 + loss.abs()),
                "loss at {l}: {} vs {loss}",
                lp[i]
            );
            assert!(
                (f64::from(gp[i]) - (sig - t)).abs() <= 2.0e-7,
                "grad at {l}: {} vs {}",
                gp[i],
                sig - t
            );
        }
    }

    #[test]
    fn adam_parallel_equals_sequential() {
        let n = 100_003;
        let g: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let c = AdamConsts {
            b1: 0.9,
            b2: 0.999,
            bc1: 0.1,
            bc2: 0.001,
            lr: 1e-3,
            eps: 1e-8,
            decay: 1.0,
        };
        let run = |par| {
            let (mut p, mut m, mut v) = (vec![0.5f32; n], vec![0.0f32; n], vec![0.0f32; n]);
            adam(par, &mut p, &mut m, &mut v, &g, c);
            (p, m, v)
        };
        assert_eq!(run(true), run(false));
    }
}
