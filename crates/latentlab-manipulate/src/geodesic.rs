//! Decoder-aware interpolation: a discrete geodesic under the pull-back
//! metric of the decoder mean f (Arvanitidis, Hansen & Hauberg 2018).
//!
//! A path z₀ … z_N with fixed ends has energy
//! `E = N Σᵢ ‖f(zᵢ₊₁) − f(zᵢ)‖²` (the discretised ∫‖∂f(γ(t))/∂t‖² dt). Its
//! gradient at an interior point is `2N Jᵢᵀ (2f(zᵢ) − f(zᵢ₋₁) − f(zᵢ₊₁))`,
//! with the decoder's Jacobian Jᵢ applied through central-difference
//! Jacobian-vector products (one batched decode per iteration). Descent
//! starts from the better of the linear and SLERP paths and accepts only
//! steps that lower the energy, so the result is never worse than either.

use latentlab_geometry::interpolate::{Method, interpolate};
use latentlab_model::LatentModel;
use ndarray::{Array2, ArrayView1, ArrayView2};
use serde::Serialize;

use crate::error::{Result, input};

/// Settings.
#[derive(Clone, Debug)]
pub struct GeodesicParams {
    /// Segments of the discrete path (N ≥ 2).
    pub segments: usize,
    /// Descent iterations.
    pub iterations: usize,
    /// Step of the central differences.
    pub fd_step: f32,
}

impl Default for GeodesicParams {
    fn default() -> Self {
        Self {
            segments: 16,
            iterations: 60,
            fd_step: 1e-2,
        }
    }
}

/// A geodesic and the energies it is compared with.
#[derive(Clone, Debug, Serialize)]
pub struct Geodesic {
    /// The path's codes ((segments + 1) × d), ends included.
    #[serde(skip)]
    pub path: Array2<f32>,
    /// Its energy.
    pub energy: f64,
    /// The linear path's energy.
    pub linear_energy: f64,
    /// The SLERP path's energy.
    pub slerp_energy: f64,
    /// Accepted descent steps.
    pub accepted_steps: usize,
}

fn energy_of(decoded: &Array2<f32>) -> f64 {
    let n = decoded.nrows() - 1;
    let mut e = 0.0;
    for i in 0..n {
        e += decoded
            .row(i + 1)
            .iter()
            .zip(decoded.row(i))
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
            .sum::<f64>();
    }
    e * n as f64
}

/// The discrete energy of a path of codes under the decoder.
pub fn path_energy<M: LatentModel + ?Sized>(model: &M, path: ArrayView2<'_, f32>) -> Result<f64> {
    if path.nrows() < 2 {
        return Err(input("a path needs at least 2 points"));
    }
    Ok(energy_of(&model.decode(path)?))
}

/// A discrete geodesic from `z0` to `z1`.
pub fn geodesic<M: LatentModel + ?Sized>(
    model: &M,
    z0: ArrayView1<'_, f32>,
    z1: ArrayView1<'_, f32>,
    p: &GeodesicParams,
) -> Result<Geodesic> {
    let d = model.latent_dim();
    if z0.len() != d || z1.len() != d {
        return Err(input(format!(
            "the codes have {} and {} dimensions but the model's latent size is {d}",
            z0.len(),
            z1.len()
        )));
    }
    if p.segments < 2 {
        return Err(input("a geodesic needs at least 2 segments"));
    }
    if !(p.fd_step > 0.0 && p.fd_step.is_finite()) {
        return Err(input("the finite-difference step must be positive"));
    }
    let steps = p.segments + 1;
    let geo = |m| interpolate(z0, z1, steps, m).map_err(|e| input(e.to_string()));
    let linear = geo(Method::Linear)?;
    let slerp = geo(Method::Slerp)?;
    let linear_energy = path_energy(model, linear.view())?;
    let slerp_energy = path_energy(model, slerp.view())?;
    let (mut path, mut energy) = if slerp_energy < linear_energy {
        (slerp, slerp_energy)
    } else {
        (linear, linear_energy)
    };
    let n = p.segments;
    let interior = n - 1;
    let h = p.fd_step;
    let span = (&z1 - &z0).mapv(|v| f64::from(v).powi(2)).sum().sqrt();
    let mut lr: Option<f64> = None;
    let mut accepted = 0;
    let mut decoded = model.decode(path.view())?;
    for _ in 0..p.iterations {
        // Residuals 2f_i − f_{i−1} − f_{i+1} at interior points.
        let dim = decoded.ncols();
        let mut probes = Array2::<f32>::zeros((interior * 2 * d, d));
        for i in 0..interior {
            for k in 0..d {
                let mut plus = path.row(i + 1).to_owned();
                let mut minus = plus.clone();
                plus[k] += h;
                minus[k] -= h;
                probes.row_mut((i * d + k) * 2).assign(&plus);
                probes.row_mut((i * d + k) * 2 + 1).assign(&minus);
            }
        }
        let fp = model.decode(probes.view())?;
        let mut grad = Array2::<f64>::zeros((interior, d));
        for i in 0..interior {
            let r: Vec<f64> = (0..dim)
                .map(|c| {
                    2.0 * f64::from(decoded[[i + 1, c]])
                        - f64::from(decoded[[i, c]])
                        - f64::from(decoded[[i + 2, c]])
                })
                .collect();
            for k in 0..d {
                let a = fp.row((i * d + k) * 2);
                let b = fp.row((i * d + k) * 2 + 1);
                let jv: f64 = a
                    .iter()
                    .zip(b)
                    .zip(&r)
                    .map(|((x, y), ri)| (f64::from(*x) - f64::from(*y)) / (2.0 * f64::from(h)) * ri)
                    .sum();
                grad[[i, k]] = 2.0 * n as f64 * jv;
            }
        }
        let gmax = grad
            .rows()
            .into_iter()
            .map(|r| r.dot(&r).sqrt())
            .fold(0.0, f64::max);
        if gmax.is_nan() || gmax <= 0.0 || !gmax.is_finite() {
            break;
        }
        let mut step = lr.unwrap_or(0.2 * span / n as f64 / gmax);
        let mut moved = false;
        for _ in 0..12 {
            let mut trial = path.clone();
            for i in 0..interior {
                for k in 0..d {
                    trial[[i + 1, k]] -= (step * grad[[i, k]]) as f32;
                }
            }
            let dec = model.decode(trial.view())?;
            let e = energy_of(&dec);
            if e < energy {
                path = trial;
                decoded = dec;
                energy = e;
                accepted += 1;
                moved = true;
                lr = Some(step * 1.5);
                break;
            }
            step *= 0.5;
        }
        if !moved {
            break;
        }
    }
    Ok(Geodesic {
        path,
        energy,
        linear_energy,
        slerp_energy,
        accepted_steps: accepted,
    })
}
