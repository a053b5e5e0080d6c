//! Principal component analysis.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{Result, param};
use crate::linalg::{orthonormalise, symmetric_eigen};
use latentlab_rng::{Purpose, SplitMix64 as Rng};

/// How the components are found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PcaSolver {
    /// Exact for d ≤ 512, randomized beyond.
    #[default]
    Auto,
    /// Eigendecomposition of the d × d covariance (cyclic Jacobi).
    Exact,
    /// Halko–Martinsson–Tropp randomized range finder (10 extra columns,
    /// 7 power iterations), for large d.
    Randomized,
}

/// PCA settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PcaParams {
    /// Components kept (≥ 1, ≤ d).
    pub components: usize,
    /// The solver.
    pub solver: PcaSolver,
    /// Seed of the randomized solver.
    pub seed: u64,
}

impl Default for PcaParams {
    fn default() -> Self {
        Self {
            components: 2,
            solver: PcaSolver::Auto,
            seed: 0,
        }
    }
}

/// A fitted PCA.
#[derive(Clone, Debug)]
pub struct Pca {
    mean: Array1<f64>,
    /// k × d, rows are unit principal axes.
    components: Array2<f64>,
    explained_variance: Array1<f64>,
    total_variance: f64,
}

impl Pca {
    /// Fits on `x` (N × d, N ≥ 2).
    pub fn fit(x: ArrayView2<'_, f64>, p: &PcaParams) -> Result<Self> {
        crate::check_input(x, 2)?;
        let (n, d) = x.dim();
        if p.components == 0 || p.components > d {
            return Err(param(
                "components",
                format!("{} is not in 1..={d} (the data's dimension)", p.components),
            ));
        }
        let mean = x.mean_axis(Axis(0)).expect("n ≥ 2");
        let xc = &x - &mean;
        let total_variance = xc.mapv(|v| v * v).sum() / (n as f64 - 1.0);
        let exact = match p.solver {
            PcaSolver::Exact => true,
            PcaSolver::Randomized => false,
            PcaSolver::Auto => d <= 512,
        };
        let (vals, mut comps) = if exact {
            let cov = xc.t().dot(&xc) / (n as f64 - 1.0);
            let (w, v) = symmetric_eigen(&cov);
            let k = p.components;
            (
                w.slice(ndarray::s![..k]).to_owned(),
                v.slice(ndarray::s![.., ..k]).t().to_owned(),
            )
        } else {
            randomized(&xc, p.components, p.seed)
        };
        // Sign: the largest-magnitude loading of each axis is positive
        // (scikit-learn's svd_flip on the components).
        for mut row in comps.rows_mut() {
            let i = row
                .iter()
                .enumerate()
                .fold(
                    (0, 0.0f64),
                    |b, (i, v)| if v.abs() > b.1 { (i, v.abs()) } else { b },
                )
                .0;
            if row[i] < 0.0 {
                row.mapv_inplace(|v| -v);
            }
        }
        Ok(Self {
            mean,
            components: comps,
            explained_variance: vals.mapv(|v| v.max(0.0)),
            total_variance,
        })
    }

    /// Projects `x` onto the components.
    pub fn transform(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        crate::check_input(x, 1)?;
        if x.ncols() != self.mean.len() {
            return Err(crate::EmbedError::Input(format!(
                "the points have {} dimensions but the PCA was fitted on {}",
                x.ncols(),
                self.mean.len()
            )));
        }
        Ok((&x - &self.mean).dot(&self.components.t()))
    }

    /// The principal axes (k × d).
    pub fn components(&self) -> &Array2<f64> {
        &self.components
    }

    /// The variance along each axis (ddof 1).
    pub fn explained_variance(&self) -> &Array1<f64> {
        &self.explained_variance
    }

    /// Each axis's share of the total variance.
    pub fn explained_variance_ratio(&self) -> Array1<f64> {
        if self.total_variance > 0.0 {
            &self.explained_variance / self.total_variance
        } else {
            Array1::zeros(self.explained_variance.len())
        }
    }

    /// The mean subtracted before projecting.
    pub fn mean(&self) -> &Array1<f64> {
        &self.mean
    }
}

fn randomized(xc: &Array2<f64>, k: usize, seed: u64) -> (Array1<f64>, Array2<f64>) {
    let (n, d) = xc.dim();
    let l = (k + 10).min(d).min(n);
    let mut g = Rng::new(seed, Purpose::Embed, 2);
    let omega = Array2::from_shape_simple_fn((d, l), || g.normal());
    let mut q = xc.dot(&omega);
    orthonormalise(&mut q);
    for _ in 0..7 {
        let mut z = xc.t().dot(&q);
        orthonormalise(&mut z);
        q = xc.dot(&z);
        orthonormalise(&mut q);
    }
    let b = q.t().dot(xc); // l × d
    let (w, u) = symmetric_eigen(&b.dot(&b.t()));
    let mut comps = Array2::<f64>::zeros((k, d));
    for c in 0..k {
        let s = w[c].max(0.0).sqrt();
        if s > 0.0 {
            let v = b.t().dot(&u.column(c)) / s;
            comps.row_mut(c).assign(&v);
        }
    }
    let vals = w
        .slice(ndarray::s![..k])
        .mapv(|v| v.max(0.0) / (n as f64 - 1.0));
    (vals, comps)
}
