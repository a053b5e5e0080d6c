//! The aggregate posterior q(z) = (1/N) Σₙ q(z|xₙ) against the prior:
//! mutual information, KL(q(z) ‖ p(z)) and holes, by Monte Carlo.

use latentlab_data::rng::{Purpose, SplitMix64, subset};
use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::Result;
use crate::input::{Latents, Options};

const LN_2PI: f64 = 1.837_877_066_409_345_5;
/// Rows of the probe side per block of the S × M matrices.
const BLOCK: usize = 256;

/// A Monte Carlo estimate with its standard error.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Estimate {
    /// The estimate.
    pub value: f64,
    /// Its standard error (sample std / √samples).
    pub std_error: f64,
}

impl Estimate {
    fn of(v: &[f64]) -> Self {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = if v.len() > 1 {
            v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Self {
            value: mean,
            std_error: (var / n).sqrt(),
        }
    }
}

/// The mixture's components: the posteriors of a seeded subset of at most
/// `max` points, in the form the quadratic expansion needs.
struct Mixture {
    /// exp(−logvar), M × d.
    prec: Array2<f64>,
    /// mu · exp(−logvar), M × d.
    prec_mu: Array2<f64>,
    /// Σⱼ muⱼ² exp(−logvarⱼ), per component.
    quad: Array1<f64>,
    /// Σⱼ logvarⱼ + d·ln 2π, per component.
    norm: Array1<f64>,
    /// Which points the components are.
    rows: Vec<usize>,
}

impl Mixture {
    fn new(l: &Latents, max: usize, seed: u64) -> Self {
        let rows = if l.len() > max {
            subset(l.len(), max, seed, 1)
        } else {
            (0..l.len()).collect()
        };
        let mu = l.mu().select(Axis(0), &rows);
        // Clamped so exp(−logvar) stays finite for point masses.
        let logvar = l.logvar().select(Axis(0), &rows).mapv(|v| v.max(-30.0));
        let prec = logvar.mapv(|v| (-v).exp());
        let prec_mu = &mu * &prec;
        let d = l.dim() as f64;
        let quad = (&mu * &prec_mu).sum_axis(Axis(1));
        let norm = logvar.sum_axis(Axis(1)) + d * LN_2PI;
        Self {
            prec,
            prec_mu,
            quad,
            norm,
            rows,
        }
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    /// log q(zᵢ | xₘ) for a block of rows `z` (r × d) against every
    /// component: r × M, through two matrix products.
    fn log_components(&self, z: ArrayView2<'_, f64>) -> Array2<f64> {
        let mut q = z.mapv(|v| v * v).dot(&self.prec.t());
        q -= &(z.dot(&self.prec_mu.t()) * 2.0);
        q += &self.quad;
        // The quadratic form is ≥ 0; rounding may take it just below.
        q.mapv_inplace(|v| v.max(0.0));
        q += &self.norm;
        q.mapv_inplace(|v| -0.5 * v);
        q
    }

    /// log q(zᵢ) for each row.
    fn log_density(&self, z: ArrayView2<'_, f64>) -> Array1<f64> {
        let ln_m = (self.len() as f64).ln();
        let blocks: Vec<Vec<f64>> = (0..z.nrows().div_ceil(BLOCK))
            .into_par_iter()
            .map(|b| {
                let zb = z.slice(s![b * BLOCK..((b + 1) * BLOCK).min(z.nrows()), ..]);
                let q = self.log_components(zb);
                q.rows()
                    .into_iter()
                    .map(|r| log_sum_exp(r.iter().copied()) - ln_m)
                    .collect()
            })
            .collect();
        Array1::from_iter(blocks.into_iter().flatten())
    }
}

fn log_sum_exp(v: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = v.clone().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.map(|x| (x - m).exp()).sum::<f64>().ln()
}

fn log_prior(z: ArrayView2<'_, f64>) -> Array1<f64> {
    let d = z.ncols() as f64;
    z.rows()
        .into_iter()
        .map(|r| -0.5 * (r.dot(&r) + d * LN_2PI))
        .collect()
}

fn log_posterior(mu: &[f64], logvar: &[f64], z: &[f64]) -> f64 {
    mu.iter()
        .zip(logvar)
        .zip(z)
        .map(|((m, lv), z)| {
            let lv = lv.max(-30.0);
            -0.5 * ((z - m) * (z - m) * (-lv).exp() + lv + LN_2PI)
        })
        .sum()
}

fn prior_draws(n: usize, d: usize, seed: u64, stream: u64) -> Array2<f64> {
    let mut g = SplitMix64::new(seed, Purpose::Diagnostics, stream);
    Array2::from_shape_simple_fn((n, d), || g.normal())
}

/// log q(z) of the aggregate posterior at each row of `z`, with q(z) the
/// mixture of the posteriors of at most `max_components` points (a seeded
/// subset when there are more).
pub fn log_aggregate_density(
    l: &Latents,
    z: ArrayView2<'_, f64>,
    max_components: usize,
    seed: u64,
) -> Array1<f64> {
    Mixture::new(l, max_components.max(1), seed).log_density(z)
}

/// I(x; z) and KL(q(z) ‖ p(z)) from the same draws zᵢ ~ q(z|x_{nᵢ}), and
/// the standard error of their sum (which estimates the mean KL).
pub(crate) fn surgery(l: &Latents, opts: &Options) -> Result<(Estimate, Estimate, f64)> {
    let mix = Mixture::new(l, opts.max_components, opts.seed);
    let d = l.dim();
    let mut g = SplitMix64::new(opts.seed, Purpose::Diagnostics, 0x7375_7267);
    let points: Vec<usize> = if opts.samples <= l.len() {
        subset(l.len(), opts.samples, opts.seed, 2)
    } else {
        (0..opts.samples)
            .map(|_| g.below(l.len() as u64) as usize)
            .collect()
    };
    let mut z = Array2::<f64>::zeros((points.len(), d));
    let mut log_cond = Vec::with_capacity(points.len());
    for (i, &n) in points.iter().enumerate() {
        let mu = l.mu().row(n).to_vec();
        let lv = l.logvar().row(n).to_vec();
        let zi: Vec<f64> = mu
            .iter()
            .zip(&lv)
            .map(|(m, v)| m + (0.5 * v).exp() * g.normal())
            .collect();
        log_cond.push(log_posterior(&mu, &lv, &zi));
        z.row_mut(i).assign(&Array1::from(zi));
    }
    let log_q = mix.log_density(z.view());
    let log_p = log_prior(z.view());
    let mi: Vec<f64> = log_cond.iter().zip(&log_q).map(|(c, q)| c - q).collect();
    let kl: Vec<f64> = log_q.iter().zip(&log_p).map(|(q, p)| q - p).collect();
    let sum: Vec<f64> = log_cond.iter().zip(&log_p).map(|(c, p)| c - p).collect();
    Ok((
        Estimate::of(&mi),
        Estimate::of(&kl),
        Estimate::of(&sum).std_error,
    ))
}

/// KL(q(z) ‖ p(z)) by Monte Carlo against the full mixture.
pub fn aggregate_kl_mc(l: &Latents, opts: &Options) -> Result<Estimate> {
    Ok(surgery(l, opts)?.1)
}

/// Holes of the aggregate posterior.
#[derive(Clone, Debug, Serialize)]
pub struct Holes {
    /// Share of prior draws whose estimated q(z)/p(z) is below the threshold.
    pub fraction: f64,
    /// The same share with the prior standing in for q(z).
    pub fraction_null: f64,
    /// The emptiest prior draws, emptiest first.
    pub emptiest: Vec<Vec<f64>>,
    /// ln q(z)/p(z) at every probe, in probe order.
    pub log_ratio: Vec<f64>,
}

/// Squared distance from each row of `a` to its k-th nearest row of `b`.
fn kth_distance(a: ArrayView2<'_, f64>, b: ArrayView2<'_, f64>, k: usize) -> Vec<f64> {
    let bn: Array1<f64> = b.rows().into_iter().map(|r| r.dot(&r)).collect();
    let k = k.min(b.nrows()) - 1;
    let blocks: Vec<Vec<f64>> = (0..a.nrows().div_ceil(BLOCK))
        .into_par_iter()
        .map(|i| {
            let ab = a.slice(s![i * BLOCK..((i + 1) * BLOCK).min(a.nrows()), ..]);
            let mut g = ab.dot(&b.t()) * -2.0;
            g += &bn;
            ab.rows()
                .into_iter()
                .zip(g.rows())
                .map(|(r, row)| {
                    let an = r.dot(&r);
                    // The product's layout is ndarray's choice: copy the row.
                    let mut v = row.to_vec();
                    let (_, kth, _) = v.select_nth_unstable_by(k, f64::total_cmp);
                    (*kth + an).max(1e-300)
                })
                .collect()
        })
        .collect();
    blocks.into_iter().flatten().collect()
}

/// Estimates, at prior draws, the density ratio q(z)/p(z) with the k-NN
/// estimator: `ln r̂ = d · (ln ρ_P − ln ρ_Q)`, where ρ_Q is the distance to the
/// k-th nearest of M draws from the aggregate posterior (one per mixture
/// component) and ρ_P to the k-th nearest of M fresh prior draws. The same
/// statistic on probes against two prior sets gives the chance level.
pub fn holes(l: &Latents, opts: &Options) -> Result<Holes> {
    let mix = Mixture::new(l, opts.max_components, opts.seed);
    let d = l.dim();
    let m = mix.len();
    let mut g = SplitMix64::new(opts.seed, Purpose::Diagnostics, 0x686f_6c65);
    let mut q_ref = Array2::<f64>::zeros((m, d));
    for (i, &n) in mix.rows.iter().enumerate() {
        for j in 0..d {
            q_ref[[i, j]] = l.mu()[[n, j]] + (0.5 * l.logvar()[[n, j]]).exp() * g.normal();
        }
    }
    let p_ref = prior_draws(m, d, opts.seed, 1);
    let p_ref2 = prior_draws(m, d, opts.seed, 2);
    let probes = prior_draws(opts.hole_probes, d, opts.seed, 3);
    let null_probes = prior_draws(opts.hole_probes, d, opts.seed, 4);
    let k = opts.hole_neighbours;
    let half_d = 0.5 * d as f64;
    let ratio = |a: &[f64], b: &[f64]| -> Vec<f64> {
        a.iter()
            .zip(b)
            .map(|(p, q)| half_d * (p.ln() - q.ln()))
            .collect()
    };
    let log_ratio = ratio(
        &kth_distance(probes.view(), p_ref.view(), k),
        &kth_distance(probes.view(), q_ref.view(), k),
    );
    let null = ratio(
        &kth_distance(null_probes.view(), p_ref.view(), k),
        &kth_distance(null_probes.view(), p_ref2.view(), k),
    );
    let cut = opts.hole_ratio.ln();
    let share = |v: &[f64]| v.iter().filter(|r| **r < cut).count() as f64 / v.len() as f64;
    let mut order: Vec<usize> = (0..log_ratio.len()).collect();
    order.sort_by(|&a, &b| log_ratio[a].total_cmp(&log_ratio[b]));
    Ok(Holes {
        fraction: share(&log_ratio),
        fraction_null: share(&null),
        emptiest: order
            .iter()
            .take(opts.emptiest)
            .map(|&i| probes.row(i).to_vec())
            .collect(),
        log_ratio,
    })
}
