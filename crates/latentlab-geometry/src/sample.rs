//! Seeded sampling from the prior `N(0, I_d)` and uniformly on its typical
//! shell (the sphere of radius √d).
//!
//! The generator is counter-based: draw `k` of a call with seed `s` depends
//! only on `(s, k)`, so results are identical on every machine and thread
//! count. Normals come from SplitMix64 bits ([`latentlab_rng`]) through
//! Box–Muller, in f64.
//!
//! ```
//! use latentlab_geometry::sample::{prior, on_shell};
//! let z = prior(4, 16, 7).unwrap();
//! assert_eq!(z.dim(), (4, 16));
//! let s = on_shell(3, 16, 7, None).unwrap();
//! for row in s.rows() {
//!     let n = row.dot(&row).sqrt();
//!     assert!((n - 4.0).abs() < 1e-12);
//! }
//! ```

use std::f64::consts::TAU;

use latentlab_rng::{Purpose, SplitMix64, stream_key};
use ndarray::Array2;

use crate::{GeometryError, invalid};

/// The key of a call's stream, `(seed, Geometry, 0)`: hashed once per call.
fn key(seed: u64) -> u64 {
    stream_key(seed, Purpose::Geometry, 0)
}

/// Uniform in (0, 1), never 0 or 1: draw `counter` of the stream with
/// `key`, reached directly.
fn uniform(key: u64, counter: u64) -> f64 {
    let bits = SplitMix64::at(key, counter);
    ((bits >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// The `k`-th standard normal draw of the stream with `key`.
fn normal(key: u64, k: u64) -> f64 {
    let pair = k / 2;
    let u1 = uniform(key, 2 * pair);
    let u2 = uniform(key, 2 * pair + 1);
    let r = (-2.0 * u1.ln()).sqrt();
    let theta = TAU * u2;
    if k.is_multiple_of(2) {
        r * theta.cos()
    } else {
        r * theta.sin()
    }
}

fn check(n: usize, dim: usize) -> Result<(), GeometryError> {
    if n == 0 {
        return Err(invalid("n", "the number of samples must be at least 1"));
    }
    if dim == 0 {
        return Err(invalid("dim", "the dimension must be at least 1"));
    }
    n.checked_mul(dim)
        .filter(|&len| len <= isize::MAX as usize / 8)
        .ok_or_else(|| invalid("n", format!("{n} × {dim} samples do not fit in memory")))?;
    Ok(())
}

/// `n` draws from `N(0, I_dim)` (`n × dim`), seeded.
pub fn prior(n: usize, dim: usize, seed: u64) -> Result<Array2<f64>, GeometryError> {
    check(n, dim)?;
    let key = key(seed);
    Ok(Array2::from_shape_fn((n, dim), |(i, j)| {
        normal(key, (i * dim + j) as u64)
    }))
}

/// `n` points uniform on the sphere of radius `radius` (default √dim), seeded:
/// prior draws scaled to the radius, which is uniform by rotational symmetry.
pub fn on_shell(
    n: usize,
    dim: usize,
    seed: u64,
    radius: Option<f64>,
) -> Result<Array2<f64>, GeometryError> {
    let radius = radius.unwrap_or((dim as f64).sqrt());
    if !(radius.is_finite() && radius >= 0.0) {
        return Err(invalid(
            "radius",
            format!("must be finite and non-negative, got {radius}"),
        ));
    }
    let mut z = prior(n, dim, seed)?;
    let key = key(seed);
    for (i, mut row) in z.rows_mut().into_iter().enumerate() {
        let mut norm = row.dot(&row).sqrt();
        // A zero draw has no direction (probability ~0); take the next block.
        let mut retry = 0u64;
        while norm == 0.0 {
            retry += 1;
            let base = (n * dim) as u64 + (i as u64 * 1024 + retry) * dim as u64;
            for (j, v) in row.iter_mut().enumerate() {
                *v = normal(key, base + j as u64);
            }
            norm = row.dot(&row).sqrt();
        }
        row.mapv_inplace(|v| v * radius / norm);
    }
    Ok(z)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_of_prior_draws() {
        let z = prior(4000, 8, 1).unwrap();
        let n = z.len() as f64;
        let mean = z.sum() / n;
        let var = z.mapv(|v| (v - mean).powi(2)).sum() / n;
        let kurt = z.mapv(|v| (v - mean).powi(4)).sum() / n / var.powi(2);
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.04, "var {var}");
        assert!((kurt - 3.0).abs() < 0.15, "kurtosis {kurt}");
    }

    #[test]
    fn seeded_and_distinct() {
        assert_eq!(prior(3, 5, 9).unwrap(), prior(3, 5, 9).unwrap());
        assert_ne!(prior(3, 5, 9).unwrap(), prior(3, 5, 10).unwrap());
        // Prefixes agree: draw k depends only on (seed, k).
        let big = prior(6, 5, 9).unwrap();
        assert_eq!(big.slice(ndarray::s![..3, ..]), prior(3, 5, 9).unwrap());
    }

    #[test]
    fn shell_norms_are_the_radius_and_directions_uniform() {
        let z = on_shell(2000, 3, 4, None).unwrap();
        for row in z.rows() {
            assert!((row.dot(&row).sqrt() - 3f64.sqrt()).abs() < 1e-12);
        }
        // Uniform on the sphere: each coordinate has mean 0, E[x²] = r²/d = 1.
        let m = z.mean_axis(ndarray::Axis(0)).unwrap();
        assert!(m.iter().all(|v| v.abs() < 0.08), "{m}");
        let sq = z.mapv(|v| v * v).mean_axis(ndarray::Axis(0)).unwrap();
        assert!(sq.iter().all(|v| (v - 1.0).abs() < 0.08), "{sq}");
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(prior(0, 3, 1).is_err());
        assert!(prior(3, 0, 1).is_err());
        assert!(prior(usize::MAX, 3, 1).is_err());
        assert!(on_shell(2, 3, 1, Some(f64::NAN)).is_err());
        assert!(on_shell(2, 3, 1, Some(-1.0)).is_err());
    }
}
