//! Disentanglement metrics against ground-truth factors, following
//! disentanglement_lib's definitions and study defaults (see
//! `docs/diagnostics.md` for what each number depends on).
//!
//! A [`GroundTruth`] gives observations for factor values (procedural
//! dSprites, any labelled data set, or the identity oracle); a code function
//! turns observations into codes (the encoder mean by default, sampled codes
//! on request: [`Code`]).

mod classify;
mod codes;
mod gbt;
mod metrics;

use latentlab_data::dsprites;
use latentlab_data::rng::SplitMix64;
use latentlab_model::LatentModel;
use ndarray::{Array2, ArrayView2, Axis};
use serde::Serialize;

use crate::error::{Result, input};

pub use codes::{CodeOptions, CodeScores, CodeSettings, Coded, FactorKind, evaluate_codes};
pub use metrics::{
    BetaVaeScore, Dci, FactorVaeScore, Mig, ModularityExplicitness, Sap, SapMode, beta_vae,
    completeness, dci, dci_from_importance, dci_of, disentanglement, factor_vae, mig, mig_of,
    modularity, modularity_explicitness, modularity_explicitness_of, sap, sap_of,
};

/// Observations with known, discrete generative factors.
pub trait GroundTruth: Sync {
    /// Number of values of each factor.
    fn factor_sizes(&self) -> Vec<usize>;
    /// Names of the factors.
    fn factor_names(&self) -> Vec<String> {
        (0..self.factor_sizes().len())
            .map(|i| format!("factor {i}"))
            .collect()
    }
    /// `n` random points: factor classes (n × factors) and observations.
    fn sample(&self, n: usize, rng: &mut SplitMix64) -> Result<(Array2<usize>, Array2<f32>)>;
    /// `n` random points sharing one (random) value of factor `k`.
    fn sample_sharing(&self, n: usize, k: usize, rng: &mut SplitMix64) -> Result<Array2<f32>>;
    /// `n` random pairs, each pair sharing the value of factor `k`.
    fn sample_pairs(
        &self,
        n: usize,
        k: usize,
        rng: &mut SplitMix64,
    ) -> Result<(Array2<f32>, Array2<f32>)>;
}

/// A full factor grid rendered on demand: every combination exists, factors
/// are drawn uniformly and independently.
pub struct FactorGrid<R> {
    sizes: Vec<usize>,
    names: Vec<String>,
    obs_dim: usize,
    render: R,
}

impl<R: Fn(&[usize], &mut [f32]) + Sync> FactorGrid<R> {
    /// A grid of `sizes`, whose observation of `obs_dim` values `render`
    /// writes from factor classes.
    pub fn new(sizes: Vec<usize>, names: Vec<String>, obs_dim: usize, render: R) -> Self {
        Self {
            sizes,
            names,
            obs_dim,
            render,
        }
    }

    fn factors(&self, n: usize, rng: &mut SplitMix64) -> Array2<usize> {
        let mut f = Array2::<usize>::zeros((n, self.sizes.len()));
        for mut row in f.rows_mut() {
            for (v, s) in row.iter_mut().zip(&self.sizes) {
                *v = rng.below(*s as u64) as usize;
            }
        }
        f
    }

    fn observe(&self, f: &Array2<usize>) -> Array2<f32> {
        use rayon::prelude::*;
        let mut out = Array2::<f32>::zeros((f.nrows(), self.obs_dim));
        out.axis_iter_mut(Axis(0))
            .into_par_iter()
            .zip(f.axis_iter(Axis(0)).into_par_iter())
            .for_each(|(mut o, r)| {
                let r = r.to_vec();
                (self.render)(&r, o.as_slice_mut().expect("rows are contiguous"));
            });
        out
    }
}

impl<R: Fn(&[usize], &mut [f32]) + Sync> GroundTruth for FactorGrid<R> {
    fn factor_sizes(&self) -> Vec<usize> {
        self.sizes.clone()
    }
    fn factor_names(&self) -> Vec<String> {
        self.names.clone()
    }
    fn sample(&self, n: usize, rng: &mut SplitMix64) -> Result<(Array2<usize>, Array2<f32>)> {
        let f = self.factors(n, rng);
        let o = self.observe(&f);
        Ok((f, o))
    }
    fn sample_sharing(&self, n: usize, k: usize, rng: &mut SplitMix64) -> Result<Array2<f32>> {
        let mut f = self.factors(n, rng);
        let v = f[[0, k]];
        f.column_mut(k).fill(v);
        Ok(self.observe(&f))
    }
    fn sample_pairs(
        &self,
        n: usize,
        k: usize,
        rng: &mut SplitMix64,
    ) -> Result<(Array2<f32>, Array2<f32>)> {
        let a = self.factors(n, rng);
        let mut b = self.factors(n, rng);
        b.column_mut(k).assign(&a.column(k));
        Ok((self.observe(&a), self.observe(&b)))
    }
}

type Render = fn(&[usize], &mut [f32]);

/// Procedural dSprites (3 × 6 × 40 × 32 × 32 factors, 64 × 64 images).
pub fn dsprites_truth() -> FactorGrid<Render> {
    fn render(c: &[usize], out: &mut [f32]) {
        dsprites::render_into([c[0], c[1], c[2], c[3], c[4]], out);
    }
    FactorGrid::new(
        dsprites::FACTOR_SIZES.to_vec(),
        dsprites::FACTOR_NAMES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        dsprites::SIDE * dsprites::SIDE,
        render as Render,
    )
}

/// The identity oracle: `factors` factors of `values` values each whose
/// observations are the factor values themselves (disentanglement_lib's
/// `IdentityObservationsData` is `identity_truth(10, 10)`).
pub fn identity_truth(
    factors: usize,
    values: usize,
) -> FactorGrid<impl Fn(&[usize], &mut [f32]) + Sync> {
    FactorGrid::new(
        vec![values; factors],
        (0..factors).map(|i| format!("factor {i}")).collect(),
        factors,
        |c: &[usize], out: &mut [f32]| {
            for (o, v) in out.iter_mut().zip(c) {
                *o = *v as f32 + 1.0;
            }
        },
    )
}

/// A finite labelled data set: rows with their factor classes. Sampling
/// draws rows; points sharing a factor are drawn among the rows with that
/// factor's value, so factor combinations need not all be present.
pub struct Labelled {
    x: Array2<f32>,
    classes: Array2<usize>,
    /// Per factor, per value, the rows with it.
    by_value: Vec<Vec<Vec<usize>>>,
    names: Vec<String>,
}

impl Labelled {
    /// Checks and indexes the data.
    pub fn new(x: Array2<f32>, classes: Array2<usize>, names: Option<Vec<String>>) -> Result<Self> {
        if x.nrows() != classes.nrows() {
            return Err(input(format!(
                "{} observations but {} rows of factor classes",
                x.nrows(),
                classes.nrows()
            )));
        }
        if x.nrows() < 2 || classes.ncols() == 0 {
            return Err(input("labelled data need at least 2 rows and 1 factor"));
        }
        let by_value = (0..classes.ncols())
            .map(|k| {
                let size = classes.column(k).iter().max().copied().unwrap_or(0) + 1;
                let mut v = vec![Vec::new(); size];
                for (i, c) in classes.column(k).iter().enumerate() {
                    v[*c].push(i);
                }
                v
            })
            .collect();
        let names = names.unwrap_or_else(|| {
            (0..classes.ncols())
                .map(|i| format!("factor {i}"))
                .collect()
        });
        Ok(Self {
            x,
            classes,
            by_value,
            names,
        })
    }

    fn rows(&self, idx: &[usize]) -> Array2<f32> {
        self.x.select(Axis(0), idx)
    }
}

impl GroundTruth for Labelled {
    fn factor_sizes(&self) -> Vec<usize> {
        self.by_value.iter().map(Vec::len).collect()
    }
    fn factor_names(&self) -> Vec<String> {
        self.names.clone()
    }
    fn sample(&self, n: usize, rng: &mut SplitMix64) -> Result<(Array2<usize>, Array2<f32>)> {
        let idx: Vec<usize> = (0..n)
            .map(|_| rng.below(self.x.nrows() as u64) as usize)
            .collect();
        Ok((self.classes.select(Axis(0), &idx), self.rows(&idx)))
    }
    fn sample_sharing(&self, n: usize, k: usize, rng: &mut SplitMix64) -> Result<Array2<f32>> {
        let first = rng.below(self.x.nrows() as u64) as usize;
        let pool = &self.by_value[k][self.classes[[first, k]]];
        let idx: Vec<usize> = (0..n)
            .map(|_| pool[rng.below(pool.len() as u64) as usize])
            .collect();
        Ok(self.rows(&idx))
    }
    fn sample_pairs(
        &self,
        n: usize,
        k: usize,
        rng: &mut SplitMix64,
    ) -> Result<(Array2<f32>, Array2<f32>)> {
        let mut a = Vec::with_capacity(n);
        let mut b = Vec::with_capacity(n);
        for _ in 0..n {
            let i = rng.below(self.x.nrows() as u64) as usize;
            let pool = &self.by_value[k][self.classes[[i, k]]];
            a.push(i);
            b.push(pool[rng.below(pool.len() as u64) as usize]);
        }
        Ok((self.rows(&a), self.rows(&b)))
    }
}

/// Which code a model's encoder gives the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The posterior mean (disentanglement_lib's default).
    #[default]
    Mean,
    /// One draw z ~ q(z|x).
    Sample,
}

/// Something that turns observations into codes (n × d, f64).
pub trait Representation: Sync {
    /// The codes of `x`.
    fn codes(&self, x: ArrayView2<'_, f32>, rng: &mut SplitMix64) -> Result<Array2<f64>>;
}

impl<F> Representation for F
where
    F: Fn(ArrayView2<'_, f32>) -> Array2<f64> + Sync,
{
    fn codes(&self, x: ArrayView2<'_, f32>, _: &mut SplitMix64) -> Result<Array2<f64>> {
        Ok(self(x))
    }
}

/// A model's encoder as a representation.
pub struct Encoder<'a, M: ?Sized> {
    model: &'a M,
    code: Code,
}

impl<'a, M: LatentModel + Sync + ?Sized> Encoder<'a, M> {
    /// Codes from `model`.
    pub fn new(model: &'a M, code: Code) -> Self {
        Self { model, code }
    }
}

impl<M: LatentModel + Sync + ?Sized> Representation for Encoder<'_, M> {
    fn codes(&self, x: ArrayView2<'_, f32>, rng: &mut SplitMix64) -> Result<Array2<f64>> {
        let p = self.model.encode(x)?;
        Ok(match self.code {
            Code::Mean => p.mu.mapv(f64::from),
            Code::Sample => {
                let mut z = p.mu.mapv(f64::from);
                for (v, lv) in z.iter_mut().zip(p.logvar.iter()) {
                    *v += (0.5 * f64::from(*lv)).exp() * rng.normal();
                }
                z
            }
        })
    }
}

/// Sample counts and settings of every metric (disentanglement_lib's study
/// defaults).
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// Seed of every draw.
    pub seed: u64,
    /// Training points of the β-VAE, FactorVAE, SAP, DCI and modularity
    /// classifiers; points of MIG (10,000).
    pub num_train: usize,
    /// Evaluation points (5,000).
    pub num_eval: usize,
    /// Observations per β-VAE pair set and FactorVAE vote (64).
    pub batch_size: usize,
    /// Points of FactorVAE's global variances (10,000).
    pub num_variance_estimate: usize,
    /// FactorVAE prunes codes whose std is below this (0.05).
    pub prune_std: f64,
    /// Histogram bins of MIG and modularity (20).
    pub bins: usize,
    /// SAP's per-pair score.
    pub sap_mode: SapMode,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            seed: 0,
            num_train: 10_000,
            num_eval: 5_000,
            batch_size: 64,
            num_variance_estimate: 10_000,
            prune_std: 0.05,
            bins: 20,
            sap_mode: SapMode::Classifier,
        }
    }
}

impl Settings {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.num_train < 2 || self.num_eval < 1 {
            return Err(input(
                "at least 2 training and 1 evaluation points are needed",
            ));
        }
        if self.batch_size < 2 {
            return Err(input("the batch size must be at least 2"));
        }
        if self.num_variance_estimate < 2 {
            return Err(input("the variance estimate needs at least 2 points"));
        }
        if self.bins < 2 {
            return Err(input("at least 2 histogram bins are needed"));
        }
        Ok(())
    }
}

/// Every metric at once.
#[derive(Clone, Debug, Serialize)]
pub struct Scores {
    /// β-VAE score (eval accuracy).
    pub beta_vae: f64,
    /// FactorVAE score (eval accuracy).
    pub factor_vae: f64,
    /// MIG.
    pub mig: f64,
    /// SAP.
    pub sap: f64,
    /// DCI.
    pub dci: Dci,
    /// Modularity.
    pub modularity: f64,
    /// Explicitness (mean test ROC AUC; 0.5 is chance).
    pub explicitness: f64,
    /// Explicitness rescaled so chance is 0: max(0, 2·AUC − 1).
    pub explicitness_normalized: f64,
    /// The settings used.
    pub settings: Settings,
    /// The factors.
    pub factors: Vec<String>,
}

/// Runs every metric.
pub fn evaluate_all(
    truth: &dyn GroundTruth,
    rep: &dyn Representation,
    settings: &Settings,
) -> Result<Scores> {
    settings.validate()?;
    let b = beta_vae(truth, rep, settings)?;
    let f = factor_vae(truth, rep, settings)?;
    let m = mig(truth, rep, settings)?;
    let s = sap(truth, rep, settings)?;
    let d = dci(truth, rep, settings)?;
    let me = modularity_explicitness(truth, rep, settings)?;
    Ok(Scores {
        beta_vae: b.eval_accuracy,
        factor_vae: f.eval_accuracy,
        mig: m.score,
        sap: s.score,
        dci: d,
        modularity: me.modularity,
        explicitness: me.explicitness,
        explicitness_normalized: (2.0 * me.explicitness - 1.0).max(0.0),
        settings: settings.clone(),
        factors: truth.factor_names(),
    })
}

/// Codes and factors of `n` random points, drawn in batches of 4096.
pub(crate) fn factor_codes(
    truth: &dyn GroundTruth,
    rep: &dyn Representation,
    n: usize,
    rng: &mut SplitMix64,
) -> Result<Coded> {
    let (f, x) = truth.sample(n, rng)?;
    let mut codes: Option<Array2<f64>> = None;
    let mut start = 0;
    while start < n {
        let end = (start + 4096).min(n);
        let c = rep.codes(x.slice(ndarray::s![start..end, ..]), rng)?;
        if c.nrows() != end - start {
            return Err(input(format!(
                "the representation returned {} codes for {} observations",
                c.nrows(),
                end - start
            )));
        }
        if let Some((i, v)) = c.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(input(format!(
                "the representation returned a non-finite code ({v}) at {}",
                i
            )));
        }
        codes = Some(match codes {
            None => c,
            Some(prev) => ndarray::concatenate(Axis(0), &[prev.view(), c.view()])
                .map_err(|e| input(e.to_string()))?,
        });
        start = end;
    }
    let codes = codes.unwrap_or_else(|| Array2::zeros((0, 0)));
    Ok(Coded::from_classes(codes, f))
}
