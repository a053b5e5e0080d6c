//! Interpolation between latent codes, with every edge case defined.
//!
//! Points are `α = i / (steps − 1)` for `i = 0 … steps − 1` (`steps = 1` gives
//! `α = 0`, the point `z1`; `steps = 0` is an error). Methods:
//!
//! - [`Method::Linear`]: `(1 − α) z1 + α z2`; exact ends.
//! - [`Method::Slerp`]: the page's formula on the raw vectors,
//!   `sin((1−α)Ω)/sin Ω · z1 + sin(αΩ)/sin Ω · z2` with Ω the angle between
//!   them; exact ends. Its norms stay between the endpoint norms when
//!   `Ω ≤ π/2` or the norms are equal; for nearly opposite codes of unequal
//!   norm the raw formula overshoots (use [`Method::SeedSlerp`] or
//!   [`Method::ConstantNorm`] there).
//! - [`Method::SeedSlerp`]: the page's `spherical_interpolation`: SLERP between
//!   the unit vectors, every point rescaled to the mean of the two norms (ends
//!   differ from `z1`, `z2` unless the norms agree). Kept for parity.
//! - [`Method::ConstantNorm`]: linear, every point rescaled to the mean norm.
//!
//! Edge cases (never NaN for finite input):
//! - an angle below 1e-6 (identical or nearly parallel codes) falls back to
//!   linear, as the page does; so does a zero vector (no direction);
//! - nearly opposite codes (`π − Ω < 1e-6`), where `sin Ω` vanishes, follow a
//!   deterministic great circle: through `u1 = z1/‖z1‖` and the unit vector
//!   `v ⊥ u1` obtained by Gram–Schmidt from the coordinate axis on which `u1`
//!   is smallest (first such axis on ties), with the norm interpolated
//!   linearly, ends exact (SeedSlerp: at the mean norm);
//! - a linear point of zero norm under ConstantNorm takes the direction of
//!   that great circle at the same `α`;
//! - non-finite input or mismatched lengths are errors.

use ndarray::{Array1, Array2, Array3, ArrayView1, ArrayView2, Axis};
use num_traits::Float;

use crate::{GeometryError, invalid};

/// Angle below which codes count as parallel (the page's threshold).
pub const PARALLEL_EPS: f64 = 1e-6;

/// An interpolation method; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// `(1 − α) z1 + α z2`.
    Linear,
    /// SLERP on the raw vectors (exact ends).
    Slerp,
    /// The page's normalise-then-rescale SLERP.
    SeedSlerp,
    /// Linear, rescaled to the mean norm.
    ConstantNorm,
}

impl Method {
    /// The method's name as the CLI spells it (`seed-slerp`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Slerp => "slerp",
            Self::SeedSlerp => "seed-slerp",
            Self::ConstantNorm => "constant-norm",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = GeometryError;
    fn from_str(s: &str) -> Result<Self, GeometryError> {
        match s {
            "linear" => Ok(Self::Linear),
            "slerp" => Ok(Self::Slerp),
            "seed-slerp" | "seed_slerp" => Ok(Self::SeedSlerp),
            "constant-norm" | "constant_norm" => Ok(Self::ConstantNorm),
            other => Err(invalid(
                "method",
                format!(
                    "unknown method {other:?}; expected linear, slerp, seed-slerp or constant-norm"
                ),
            )),
        }
    }
}

fn c<F: Float>(x: f64) -> F {
    F::from(x).expect("f64 constants convert to any float type")
}

fn norm<F: Float>(z: ArrayView1<'_, F>) -> F {
    z.iter().fold(F::zero(), |acc, &v| acc + v * v).sqrt()
}

fn alphas<F: Float>(steps: usize) -> Vec<F> {
    if steps == 1 {
        return vec![F::zero()];
    }
    let last = steps - 1;
    (0..steps)
        .map(|i| {
            if i == last {
                F::one()
            } else {
                c::<F>(i as f64) / c::<F>(last as f64)
            }
        })
        .collect()
}

/// The deterministic unit vector orthogonal to the unit vector `u`.
fn orthogonal<F: Float>(u: ArrayView1<'_, F>) -> Array1<F> {
    let d = u.len();
    let mut j = 0;
    for i in 1..d {
        if u[i].abs() < u[j].abs() {
            j = i;
        }
    }
    let mut v = Array1::<F>::zeros(d);
    v[j] = F::one();
    let proj = u[j];
    v.zip_mut_with(&u, |a, &b| *a = *a - proj * b);
    let n = norm(v.view());
    if n > F::zero() {
        v.mapv_inplace(|x| x / n);
    }
    v
}

fn linear<F: Float>(z1: ArrayView1<'_, F>, z2: ArrayView1<'_, F>, al: &[F]) -> Array2<F> {
    let mut out = Array2::<F>::zeros((al.len(), z1.len()));
    for (mut row, &a) in out.rows_mut().into_iter().zip(al) {
        for ((o, &x), &y) in row.iter_mut().zip(z1).zip(z2) {
            *o = (F::one() - a) * x + a * y;
        }
    }
    out
}

/// Great circle through `u1` and `v`, radius interpolated from `r1` to `r2`.
fn great_circle<F: Float>(u1: &Array1<F>, v: &Array1<F>, r1: F, r2: F, al: &[F]) -> Array2<F> {
    let pi = c::<F>(std::f64::consts::PI);
    let mut out = Array2::<F>::zeros((al.len(), u1.len()));
    for (mut row, &a) in out.rows_mut().into_iter().zip(al) {
        let r = (F::one() - a) * r1 + a * r2;
        let (s, co) = (a * pi).sin_cos();
        for ((o, &x), &y) in row.iter_mut().zip(u1).zip(v) {
            *o = r * (co * x + s * y);
        }
    }
    out
}

fn validate<F: Float>(
    z1: ArrayView1<'_, F>,
    z2: ArrayView1<'_, F>,
    steps: usize,
) -> Result<(), GeometryError> {
    if steps == 0 {
        return Err(invalid("steps", "must be at least 1"));
    }
    if z1.len() != z2.len() {
        return Err(invalid(
            "codes",
            format!("z1 has {} dimensions but z2 has {}", z1.len(), z2.len()),
        ));
    }
    if z1.is_empty() {
        return Err(invalid("codes", "codes have no dimensions"));
    }
    for (name, z) in [("z1", z1), ("z2", z2)] {
        if let Some(i) = z.iter().position(|v| !v.is_finite()) {
            return Err(invalid("codes", format!("{name}[{i}] is not finite")));
        }
    }
    Ok(())
}

/// Interpolates from `z1` to `z2` in `steps` points (`steps × d`).
pub fn interpolate<F: Float>(
    z1: ArrayView1<'_, F>,
    z2: ArrayView1<'_, F>,
    steps: usize,
    method: Method,
) -> Result<Array2<F>, GeometryError> {
    validate(z1, z2, steps)?;
    let al = alphas::<F>(steps);
    let (n1, n2) = (norm(z1), norm(z2));
    let two = c::<F>(2.0);
    let mean_norm = (n1 + n2) / two;
    if method == Method::Linear {
        return Ok(linear(z1, z2, &al));
    }
    if method == Method::ConstantNorm {
        let mut out = linear(z1, z2, &al);
        let circle = (n1 > F::zero()).then(|| {
            let u1 = z1.mapv(|v| v / n1);
            let v = orthogonal(u1.view());
            great_circle(&u1, &v, mean_norm, mean_norm, &al)
        });
        for (i, mut row) in out.rows_mut().into_iter().enumerate() {
            let n = norm(row.view());
            if n > F::zero() {
                row.mapv_inplace(|v| v * (mean_norm / n));
            } else if let Some(circle) = &circle {
                row.assign(&circle.row(i));
            }
        }
        return Ok(out);
    }
    // Spherical methods: a zero vector has no direction.
    if n1 == F::zero() || n2 == F::zero() {
        return Ok(linear(z1, z2, &al));
    }
    let (u1, u2) = (z1.mapv(|v| v / n1), z2.mapv(|v| v / n2));
    let dot = u1
        .iter()
        .zip(&u2)
        .fold(F::zero(), |acc, (&a, &b)| acc + a * b);
    let cos = dot.max(-F::one()).min(F::one());
    let omega = cos.acos();
    if omega.abs() < c(PARALLEL_EPS) {
        return Ok(linear(z1, z2, &al));
    }
    let pi = c::<F>(std::f64::consts::PI);
    if pi - omega < c(PARALLEL_EPS) {
        let v = orthogonal(u1.view());
        let (r1, r2) = if method == Method::SeedSlerp {
            (mean_norm, mean_norm)
        } else {
            (n1, n2)
        };
        let mut out = great_circle(&u1, &v, r1, r2, &al);
        if method == Method::Slerp {
            out.row_mut(0).assign(&z1);
            if steps > 1 {
                out.row_mut(steps - 1).assign(&z2);
            }
        }
        return Ok(out);
    }
    let sin_omega = omega.sin();
    let (a, b, scale) = match method {
        Method::Slerp => (z1.to_owned(), z2.to_owned(), F::one()),
        _ => (u1, u2, mean_norm),
    };
    let mut out = Array2::<F>::zeros((steps, z1.len()));
    for (mut row, &al) in out.rows_mut().into_iter().zip(&al) {
        let t1 = ((F::one() - al) * omega).sin() / sin_omega;
        let t2 = (al * omega).sin() / sin_omega;
        for ((o, &x), &y) in row.iter_mut().zip(&a).zip(&b) {
            *o = (t1 * x + t2 * y) * scale;
        }
    }
    Ok(out)
}

/// Interpolates many pairs at once: rows of `z1` and `z2` are paired;
/// the result is `pairs × steps × d`.
pub fn interpolate_batch<F: Float>(
    z1: ArrayView2<'_, F>,
    z2: ArrayView2<'_, F>,
    steps: usize,
    method: Method,
) -> Result<Array3<F>, GeometryError> {
    if z1.dim() != z2.dim() {
        return Err(invalid(
            "codes",
            format!("z1 is {:?} but z2 is {:?}", z1.dim(), z2.dim()),
        ));
    }
    if steps == 0 {
        return Err(invalid("steps", "must be at least 1"));
    }
    let mut out = Array3::<F>::zeros((z1.nrows(), steps, z1.ncols()));
    for (i, mut slab) in out.axis_iter_mut(Axis(0)).enumerate() {
        slab.assign(&interpolate(z1.row(i), z2.row(i), steps, method)?);
    }
    Ok(out)
}

/// The norm of every point of a path (`steps × d` → `steps`).
pub fn norm_profile<F: Float>(path: ArrayView2<'_, F>) -> Array1<F> {
    path.rows().into_iter().map(norm).collect()
}

/// `log N(z; 0, I)` of every point of a path: `−½ (d log 2π + ‖z‖²)`.
pub fn log_prior<F: Float>(path: ArrayView2<'_, F>) -> Array1<F> {
    let d = c::<F>(path.ncols() as f64);
    let l2pi = c::<F>((2.0 * std::f64::consts::PI).ln());
    path.rows()
        .into_iter()
        .map(|z| -c::<F>(0.5) * (d * l2pi + norm(z).powi(2)))
        .collect()
}
