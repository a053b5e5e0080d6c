//! The diagnostics' inputs: checked posterior parameters and the settings
//! of the Monte Carlo figures, shared by the summary and the aggregate
//! estimates.

use latentlab_model::LatentModel;
use ndarray::{Array2, ArrayView2, s};

use crate::error::{DiagnosticsError, Result, input};

/// Posterior parameters of `n` points, `n × d` each, in f64, checked: same
/// shape, `n ≥ 2`, `d ≥ 1`, every value finite.
#[derive(Clone, Debug)]
pub struct Latents {
    mu: Array2<f64>,
    logvar: Array2<f64>,
}

fn check_finite(a: ArrayView2<'_, f64>, name: &str) -> Result<()> {
    if let Some((i, v)) = a.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        let c = a.ncols().max(1);
        return Err(input(format!(
            "{name} row {} column {} is {v}; every value must be finite",
            i / c,
            i % c
        )));
    }
    Ok(())
}

impl Latents {
    /// Checks and wraps the arrays.
    pub fn new(mu: Array2<f64>, logvar: Array2<f64>) -> Result<Self> {
        if mu.dim() != logvar.dim() {
            return Err(input(format!(
                "mu is {}×{} but logvar is {}×{}; they must have the same shape",
                mu.nrows(),
                mu.ncols(),
                logvar.nrows(),
                logvar.ncols()
            )));
        }
        if mu.nrows() < 2 {
            return Err(input(format!(
                "{} point(s): the variance of the means needs at least 2",
                mu.nrows()
            )));
        }
        if mu.ncols() == 0 {
            return Err(input("the latent dimension is 0"));
        }
        check_finite(mu.view(), "mu")?;
        check_finite(logvar.view(), "logvar")?;
        Ok(Self { mu, logvar })
    }

    /// From f32 arrays.
    pub fn from_f32(mu: ArrayView2<'_, f32>, logvar: ArrayView2<'_, f32>) -> Result<Self> {
        Self::new(mu.mapv(f64::from), logvar.mapv(f64::from))
    }

    /// Encodes `x` with `model` in chunks of 4,096 rows.
    pub fn encode<M: LatentModel + ?Sized>(model: &M, x: ArrayView2<'_, f32>) -> Result<Self> {
        let n = x.nrows();
        let d = model.latent_dim();
        let mut mu = Array2::<f64>::zeros((n, d));
        let mut logvar = Array2::<f64>::zeros((n, d));
        let mut start = 0;
        while start < n {
            let end = (start + 4096).min(n);
            let p = model.encode(x.slice(s![start..end, ..]))?;
            mu.slice_mut(s![start..end, ..])
                .assign(&p.mu.mapv(f64::from));
            logvar
                .slice_mut(s![start..end, ..])
                .assign(&p.logvar.mapv(f64::from));
            start = end;
        }
        Self::new(mu, logvar)
    }

    /// Posterior means.
    pub fn mu(&self) -> ArrayView2<'_, f64> {
        self.mu.view()
    }

    /// Posterior log-variances.
    pub fn logvar(&self) -> ArrayView2<'_, f64> {
        self.logvar.view()
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.mu.nrows()
    }

    /// Never true: construction refuses fewer than 2 points.
    pub fn is_empty(&self) -> bool {
        self.mu.nrows() == 0
    }

    /// Latent dimension.
    pub fn dim(&self) -> usize {
        self.mu.ncols()
    }
}

/// Settings of the Monte Carlo figures.
#[derive(Clone, Debug)]
pub struct Options {
    /// Draws from the aggregate posterior for I(x; z) and KL(q(z) ‖ p(z)).
    pub samples: usize,
    /// Mixture components of q(z) (a seeded subset of the points when there
    /// are more).
    pub max_components: usize,
    /// Prior draws probed for holes.
    pub hole_probes: usize,
    /// A probe is in a hole when the estimated density ratio q(z)/p(z) is
    /// below this.
    pub hole_ratio: f64,
    /// Neighbours of the k-NN density-ratio estimate.
    pub hole_neighbours: usize,
    /// How many of the emptiest prior draws to return.
    pub emptiest: usize,
    /// Seed of every draw.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            samples: 2000,
            max_components: 10_000,
            hole_probes: 2000,
            hole_ratio: 0.01,
            hole_neighbours: 10,
            emptiest: 16,
            seed: 0,
        }
    }
}

impl Options {
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |what, detail: &str| {
            Err(DiagnosticsError::Config {
                what,
                detail: detail.to_string(),
            })
        };
        if self.samples == 0 {
            return bad("samples", "must be at least 1");
        }
        if self.max_components < 2 {
            return bad("max_components", "must be at least 2");
        }
        if self.hole_probes == 0 {
            return bad("hole_probes", "must be at least 1");
        }
        if !(self.hole_ratio > 0.0 && self.hole_ratio.is_finite()) {
            return bad("hole_ratio", "must be a positive number");
        }
        if self.hole_neighbours == 0 {
            return bad("hole_neighbours", "must be at least 1");
        }
        Ok(())
    }
}
