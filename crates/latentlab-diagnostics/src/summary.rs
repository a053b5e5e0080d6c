//! The page's `diagnose_latent_space`, exactly, and the full diagnosis.

use ndarray::{Array1, ArrayView2, Axis};
use serde::Serialize;

use crate::aggregate;
use crate::error::{Result, input};
use crate::input::{Latents, Options};
use crate::verdict::{Evidence, Verdict};

/// The page's figures (its dictionary, keys unchanged).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PageMetrics {
    /// Mean over points of KL(q(z|x) ‖ N(0, I)), nats.
    pub mean_kl: f64,
    /// Dimensions whose unbiased variance of mu across points exceeds 0.01.
    pub active_dims: usize,
    /// Latent dimension.
    pub total_dims: usize,
    /// Mean of exp(logvar / 2) over every point and dimension.
    pub mean_posterior_std: f64,
    /// KL(N(m, diag v) ‖ N(0, I)) with m the mean of mu and v the unbiased
    /// variance of mu plus the mean of exp(logvar): the aggregate posterior
    /// approximated by one Gaussian.
    pub aggregate_kl: f64,
    /// The page's verdict string.
    pub diagnosis: String,
}

/// The threshold on the variance of mu above which a dimension is active.
pub const ACTIVE_VARIANCE: f64 = 0.01;

pub(crate) struct Moments {
    pub kl_per_dim: Array1<f64>,
    pub mu_mean: Array1<f64>,
    pub mu_var: Array1<f64>,
    pub var_mean: Array1<f64>,
    pub std_mean: f64,
}

/// Mean over points of each dimension's KL(q(z|x) ‖ N(0, 1)), nats.
pub fn kl_per_dim(l: &Latents) -> Array1<f64> {
    (&l.mu().mapv(|m| m * m) + &l.logvar().mapv(f64::exp) - l.logvar() - 1.0).sum_axis(Axis(0))
        * (0.5 / l.len() as f64)
}

pub(crate) fn moments(l: &Latents) -> Moments {
    let n = l.len() as f64;
    let kl_per_dim = kl_per_dim(l);
    let mu_mean = l.mu().sum_axis(Axis(0)) / n;
    let mu_var = l.mu().var_axis(Axis(0), 1.0);
    let var_mean = l.logvar().mapv(f64::exp).sum_axis(Axis(0)) / n;
    let std_mean = l.logvar().iter().map(|v| (0.5 * v).exp()).sum::<f64>() / (n * l.dim() as f64);
    Moments {
        kl_per_dim,
        mu_mean,
        mu_var,
        var_mean,
        std_mean,
    }
}

/// The page's `diagnose_latent_space` on posterior parameters.
pub fn page_metrics(l: &Latents) -> PageMetrics {
    page_from_parts(l.dim(), &moments(l))
}

fn page_from_parts(dim: usize, m: &Moments) -> PageMetrics {
    let mean_kl = m.kl_per_dim.sum();
    let active_dims = m.mu_var.iter().filter(|v| **v > ACTIVE_VARIANCE).count();
    let aggregate_kl = 0.5
        * m.mu_var
            .iter()
            .zip(&m.var_mean)
            .zip(&m.mu_mean)
            .map(|((v, e), mean)| {
                let var = v + e;
                var + mean * mean - 1.0 - var.ln()
            })
            .sum::<f64>();
    PageMetrics {
        mean_kl,
        active_dims,
        total_dims: dim,
        mean_posterior_std: m.std_mean,
        aggregate_kl,
        diagnosis: diagnose_from_metrics(mean_kl, active_dims, dim, m.std_mean),
    }
}

/// The page's verdict string, thresholds and wording unchanged.
pub fn diagnose_from_metrics(
    mean_kl: f64,
    active_dims: usize,
    total_dims: usize,
    mean_std: f64,
) -> String {
    let mut issues = Vec::new();
    if mean_kl < 1.0 {
        issues.push("SEVERE: Likely posterior collapse (KL near zero)");
    } else if mean_kl < 5.0 {
        issues.push("WARNING: Low KL, possible weak encoding");
    }
    let active_ratio = active_dims as f64 / total_dims as f64;
    if active_ratio < 0.1 {
        issues.push("SEVERE: Most dimensions inactive (posterior collapse)");
    } else if active_ratio < 0.3 {
        issues.push("WARNING: Many inactive dimensions");
    }
    if mean_std > 0.9 {
        issues.push("WARNING: High posterior variance, weak encoding");
    }
    if issues.is_empty() {
        "HEALTHY: Metrics look reasonable".to_string()
    } else {
        issues.join("; ")
    }
}

/// The full diagnosis. The page's keys come first and keep its names.
#[derive(Clone, Debug, Serialize)]
pub struct Diagnosis {
    /// See [`PageMetrics::mean_kl`].
    pub mean_kl: f64,
    /// See [`PageMetrics::active_dims`].
    pub active_dims: usize,
    /// See [`PageMetrics::total_dims`].
    pub total_dims: usize,
    /// See [`PageMetrics::mean_posterior_std`].
    pub mean_posterior_std: f64,
    /// See [`PageMetrics::aggregate_kl`].
    pub aggregate_kl: f64,
    /// The page's verdict string.
    pub diagnosis: String,
    /// Points diagnosed.
    pub n: usize,
    /// Mean KL of each dimension, nats (sums to `mean_kl`).
    pub kl_per_dim: Vec<f64>,
    /// Unbiased variance of mu of each dimension (Burda et al.'s activity).
    pub mu_variance: Vec<f64>,
    /// Whether each dimension is active (variance of mu above 0.01).
    pub active_per_dim: Vec<bool>,
    /// Dimensions ordered by KL, most informative first.
    pub dims_by_kl: Vec<usize>,
    /// I(x; z) under q, nats (Monte Carlo; at most ln N).
    pub mutual_information: f64,
    /// Its standard error.
    pub mutual_information_se: f64,
    /// KL(q(z) ‖ p(z)) with q(z) the mixture of the posteriors, nats.
    pub aggregate_kl_mc: f64,
    /// Its standard error.
    pub aggregate_kl_mc_se: f64,
    /// Standard error of the sum `mutual_information + aggregate_kl_mc`,
    /// which estimates `mean_kl` (ELBO surgery).
    pub surgery_se: f64,
    /// Share of prior draws where the aggregate posterior's density is below
    /// `hole_ratio` times the prior's.
    pub hole_fraction: f64,
    /// The same share when the aggregate posterior is the prior itself: what
    /// the estimate gives by chance.
    pub hole_fraction_null: f64,
    /// The density-ratio threshold used.
    pub hole_ratio: f64,
    /// The prior draws with the lowest estimated density ratio, emptiest
    /// first; decode them to see what lives in the holes.
    pub emptiest: Vec<Vec<f64>>,
    /// The plain verdict.
    pub verdict: Verdict,
}

impl Diagnosis {
    /// The numbers the verdict is drawn from.
    pub fn evidence(&self) -> Evidence {
        Evidence {
            mean_kl: self.mean_kl,
            active_dims: self.active_dims,
            total_dims: self.total_dims,
            mean_posterior_std: self.mean_posterior_std,
            mutual_information: self.mutual_information,
            mutual_information_se: self.mutual_information_se,
            n: self.n,
            hole_fraction: self.hole_fraction,
            hole_fraction_null: self.hole_fraction_null,
            hole_ratio: self.hole_ratio,
        }
    }
}

/// Diagnoses posterior parameters.
pub fn diagnose(l: &Latents, opts: &Options) -> Result<Diagnosis> {
    opts.validate()?;
    finish(&moments(l), l.len(), l, opts)
}

/// Streams posterior parameters chunk by chunk: the page's moments over
/// every point (means and sums of squares merged as Chan et al.), in memory
/// that follows the latent dimension, not N.
#[derive(Clone, Debug)]
pub struct Accumulator {
    n: usize,
    mean: Array1<f64>,
    m2: Array1<f64>,
    kl: Array1<f64>,
    var_sum: Array1<f64>,
    std_sum: f64,
}

impl Accumulator {
    /// An empty accumulator for `d` dimensions.
    pub fn new(d: usize) -> Self {
        Self {
            n: 0,
            mean: Array1::zeros(d),
            m2: Array1::zeros(d),
            kl: Array1::zeros(d),
            var_sum: Array1::zeros(d),
            std_sum: 0.0,
        }
    }

    /// Points seen.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether no point was seen.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Adds a chunk whose first row is point `first_row` (for messages).
    pub fn push(
        &mut self,
        mu: ArrayView2<'_, f64>,
        logvar: ArrayView2<'_, f64>,
        first_row: usize,
    ) -> Result<()> {
        let d = self.mean.len();
        if mu.dim() != logvar.dim() || mu.ncols() != d {
            return Err(input(format!(
                "a chunk of mu is {}×{} and of logvar {}×{}; both must have {d} columns",
                mu.nrows(),
                mu.ncols(),
                logvar.nrows(),
                logvar.ncols()
            )));
        }
        for (name, a) in [("mu", mu), ("logvar", logvar)] {
            if let Some((i, v)) = a.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(input(format!(
                    "{name} row {} column {} is {v}; every value must be finite",
                    first_row + i / d.max(1),
                    i % d.max(1)
                )));
            }
        }
        let m = mu.nrows();
        if m == 0 {
            return Ok(());
        }
        let mf = m as f64;
        let cmean = mu.sum_axis(Axis(0)) / mf;
        let cm2 = mu
            .rows()
            .into_iter()
            .fold(Array1::<f64>::zeros(d), |acc, r| {
                acc + (&r - &cmean).mapv(|v| v * v)
            });
        let nf = self.n as f64;
        let tot = nf + mf;
        let delta = &cmean - &self.mean;
        self.m2 = &self.m2 + &cm2 + &(delta.mapv(|v| v * v) * (nf * mf / tot));
        self.mean = &self.mean + &(delta * (mf / tot));
        self.n += m;
        self.kl = &self.kl
            + &(&mu.mapv(|v| v * v) + &logvar.mapv(f64::exp) - logvar - 1.0).sum_axis(Axis(0));
        self.var_sum = &self.var_sum + &logvar.mapv(f64::exp).sum_axis(Axis(0));
        self.std_sum += logvar.iter().map(|v| (0.5 * v).exp()).sum::<f64>();
        Ok(())
    }

    fn moments(&self) -> Moments {
        let n = self.n as f64;
        Moments {
            kl_per_dim: &self.kl * (0.5 / n),
            mu_mean: self.mean.clone(),
            mu_var: &self.m2 / (n - 1.0),
            var_mean: &self.var_sum / n,
            std_mean: self.std_sum / (n * self.mean.len() as f64),
        }
    }
}

/// Diagnoses streamed data: the page's figures from every point in `acc`,
/// the Monte Carlo figures from `sample` (a seeded subset of the same points).
pub fn diagnose_streamed(acc: &Accumulator, sample: &Latents, opts: &Options) -> Result<Diagnosis> {
    opts.validate()?;
    if acc.len() < 2 {
        return Err(input(format!(
            "{} point(s): the variance of the means needs at least 2",
            acc.len()
        )));
    }
    if sample.dim() != acc.mean.len() {
        return Err(input("the subset's dimension differs from the stream's"));
    }
    finish(&acc.moments(), acc.len(), sample, opts)
}

fn finish(m: &Moments, n: usize, mc: &Latents, opts: &Options) -> Result<Diagnosis> {
    let dim = m.kl_per_dim.len();
    let page = page_from_parts(dim, m);
    let mut dims_by_kl: Vec<usize> = (0..dim).collect();
    dims_by_kl.sort_by(|&a, &b| m.kl_per_dim[b].total_cmp(&m.kl_per_dim[a]));
    let (mi, kl_mc, surgery_se) = aggregate::surgery(mc, opts)?;
    let holes = aggregate::holes(mc, opts)?;
    let mut d = Diagnosis {
        mean_kl: page.mean_kl,
        active_dims: page.active_dims,
        total_dims: page.total_dims,
        mean_posterior_std: page.mean_posterior_std,
        aggregate_kl: page.aggregate_kl,
        diagnosis: page.diagnosis,
        n,
        kl_per_dim: m.kl_per_dim.to_vec(),
        mu_variance: m.mu_var.to_vec(),
        active_per_dim: m.mu_var.iter().map(|v| *v > ACTIVE_VARIANCE).collect(),
        dims_by_kl,
        mutual_information: mi.value,
        mutual_information_se: mi.std_error,
        aggregate_kl_mc: kl_mc.value,
        aggregate_kl_mc_se: kl_mc.std_error,
        surgery_se,
        hole_fraction: holes.fraction,
        hole_fraction_null: holes.fraction_null,
        hole_ratio: opts.hole_ratio,
        emptiest: holes.emptiest,
        verdict: Verdict::default(),
    };
    d.verdict = Verdict::of(&d.evidence());
    Ok(d)
}
