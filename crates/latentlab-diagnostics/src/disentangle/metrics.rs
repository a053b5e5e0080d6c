//! The metrics.

use latentlab_data::rng::{Purpose, SplitMix64};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rayon::prelude::*;
use serde::Serialize;

use super::classify::{
    Logistic, OneFeatureSvm, accuracy, histogram_discretize, mutual_info, roc_auc,
};
use super::gbt::{Gbt, GbtConfig};
use super::{Coded, GroundTruth, Representation, Settings, factor_codes};
use crate::error::{Result, input};

fn stream(settings: &Settings, metric: u64) -> SplitMix64 {
    SplitMix64::new(settings.seed, Purpose::Metric, metric)
}

fn column(a: &Array2<usize>, k: usize) -> Vec<usize> {
    a.column(k).to_vec()
}

/// β-VAE score (Higgins et al. 2017).
#[derive(Clone, Debug, Serialize)]
pub struct BetaVaeScore {
    /// Accuracy on the training points.
    pub train_accuracy: f64,
    /// Accuracy on the evaluation points: the score.
    pub eval_accuracy: f64,
}

fn beta_points(
    truth: &dyn GroundTruth,
    rep: &dyn Representation,
    n: usize,
    batch: usize,
    rng: &mut SplitMix64,
) -> Result<(Array2<f64>, Vec<usize>)> {
    let factors = truth.factor_sizes().len();
    let mut feats: Option<Array2<f64>> = None;
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let k = rng.below(factors as u64) as usize;
        let (a, b) = truth.sample_pairs(batch, k, rng)?;
        let ca = rep.codes(a.view(), rng)?;
        let cb = rep.codes(b.view(), rng)?;
        let f = (&ca - &cb)
            .mapv(f64::abs)
            .mean_axis(Axis(0))
            .expect("batch ≥ 1");
        let fm = feats.get_or_insert_with(|| Array2::zeros((n, f.len())));
        fm.row_mut(i).assign(&f);
        labels.push(k);
    }
    Ok((feats.unwrap_or_else(|| Array2::zeros((0, 0))), labels))
}

/// β-VAE score: pairs of `batch_size` observations sharing one factor; the
/// feature is the mean absolute code difference; a logistic regression
/// predicts the shared factor; the score is its evaluation accuracy.
pub fn beta_vae(
    truth: &dyn GroundTruth,
    rep: &dyn Representation,
    s: &Settings,
) -> Result<BetaVaeScore> {
    s.validate()?;
    let mut rng = stream(s, 1);
    let (xt, yt) = beta_points(truth, rep, s.num_train, s.batch_size, &mut rng)?;
    let (xe, ye) = beta_points(truth, rep, s.num_eval, s.batch_size, &mut rng)?;
    let m = Logistic::fit(xt.view(), &yt);
    Ok(BetaVaeScore {
        train_accuracy: accuracy(&m.predict(xt.view()), &yt),
        eval_accuracy: accuracy(&m.predict(xe.view()), &ye),
    })
}

/// FactorVAE score (Kim & Mnih 2018).
#[derive(Clone, Debug, Serialize)]
pub struct FactorVaeScore {
    /// Majority-vote accuracy on the training votes.
    pub train_accuracy: f64,
    /// On the evaluation votes: the score.
    pub eval_accuracy: f64,
    /// Codes kept after pruning (std ≥ 0.05).
    pub active_codes: usize,
}

/// FactorVAE score: codes normalised by their global std, codes with std
/// below `prune_std` pruned; each vote fixes one factor over `batch_size`
/// points and votes for the code of least normalised variance; a majority
/// vote classifier maps codes to factors.
pub fn factor_vae(
    truth: &dyn GroundTruth,
    rep: &dyn Representation,
    s: &Settings,
) -> Result<FactorVaeScore> {
    s.validate()?;
    let mut rng = stream(s, 2);
    let codes = factor_codes(truth, rep, s.num_variance_estimate, &mut rng)?.codes;
    let global = codes.var_axis(Axis(0), 1.0);
    let active: Vec<usize> = (0..global.len())
        .filter(|&j| global[j].sqrt() >= s.prune_std)
        .collect();
    if active.is_empty() {
        return Ok(FactorVaeScore {
            train_accuracy: 0.0,
            eval_accuracy: 0.0,
            active_codes: 0,
        });
    }
    let factors = truth.factor_sizes().len();
    let votes = |n: usize, rng: &mut SplitMix64| -> Result<Array2<f64>> {
        let mut v = Array2::<f64>::zeros((factors, active.len()));
        for _ in 0..n {
            let k = rng.below(factors as u64) as usize;
            let x = truth.sample_sharing(s.batch_size, k, rng)?;
            let c = rep.codes(x.view(), rng)?;
            let local = c.var_axis(Axis(0), 1.0);
            let best = active
                .iter()
                .enumerate()
                .map(|(i, &j)| (i, local[j] / global[j]))
                .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a })
                .0;
            v[[k, best]] += 1.0;
        }
        Ok(v)
    };
    let train = votes(s.num_train, &mut rng)?;
    let eval = votes(s.num_eval, &mut rng)?;
    let classifier: Vec<usize> = (0..active.len())
        .map(|j| super::classify::argmax(train.column(j).iter().copied()))
        .collect();
    let acc = |v: &Array2<f64>| {
        (0..active.len())
            .map(|j| v[[classifier[j], j]])
            .sum::<f64>()
            / v.sum().max(1.0)
    };
    Ok(FactorVaeScore {
        train_accuracy: acc(&train),
        eval_accuracy: acc(&eval),
        active_codes: active.len(),
    })
}

/// Discrete mutual information between every (code, factor): codes × factors.
fn mi_matrix(codes: &Array2<usize>, factors: &Array2<usize>) -> Array2<f64> {
    let (nc, nf) = (codes.ncols(), factors.ncols());
    let vals: Vec<f64> = (0..nc * nf)
        .into_par_iter()
        .map(|t| mutual_info(&column(codes, t / nf), &column(factors, t % nf)))
        .collect();
    Array2::from_shape_vec((nc, nf), vals).expect("nc × nf values")
}

/// MIG (Chen et al. 2018).
#[derive(Clone, Debug, Serialize)]
pub struct Mig {
    /// Mean over factors of the normalised gap.
    pub score: f64,
    /// The gap of each factor (NaN-free; factors of zero entropy are skipped
    /// and reported as 0).
    pub per_factor: Vec<f64>,
}

/// MIG: codes discretised into `bins` equal-width bins, discrete mutual
/// information with each factor (nats), the gap between the two most
/// informative codes divided by the factor's entropy, averaged.
pub fn mig(truth: &dyn GroundTruth, rep: &dyn Representation, s: &Settings) -> Result<Mig> {
    s.validate()?;
    let mut rng = stream(s, 3);
    mig_of(&factor_codes(truth, rep, s.num_train, &mut rng)?, s.bins)
}

/// MIG of fixed codes and factor classes (`bins` histogram bins per code).
pub fn mig_of(train: &Coded, bins: usize) -> Result<Mig> {
    let factors = &train.classes;
    if train.codes.ncols() < 2 {
        return Err(input("MIG needs at least 2 codes"));
    }
    let m = mi_matrix(&histogram_discretize(train.codes.view(), bins), factors);
    let mut per_factor = Vec::new();
    let mut used = Vec::new();
    for k in 0..factors.ncols() {
        let f = column(factors, k);
        let h = mutual_info(&f, &f);
        let mut col = m.column(k).to_vec();
        col.sort_by(|a, b| b.total_cmp(a));
        let gap = if h > 0.0 { (col[0] - col[1]) / h } else { 0.0 };
        per_factor.push(gap);
        if h > 0.0 {
            used.push(gap);
        }
    }
    let score = if used.is_empty() {
        0.0
    } else {
        used.iter().sum::<f64>() / used.len() as f64
    };
    Ok(Mig { score, per_factor })
}

/// What SAP scores each (code, factor) pair with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SapMode {
    /// Test accuracy of a one-feature linear SVM (discrete factors; the
    /// study default).
    #[default]
    Classifier,
    /// Squared correlation R² (factors read as continuous, as the
    /// reference's own oracle tests do).
    Correlation,
}

/// SAP (Kumar et al. 2018).
#[derive(Clone, Debug, Serialize)]
pub struct Sap {
    /// Mean over factors of the gap between the two best codes.
    pub score: f64,
    /// codes × factors score matrix.
    pub matrix: Vec<Vec<f64>>,
}

/// SAP: a score per (code, factor) (a one-feature classifier's test
/// accuracy, or R²), then the mean over factors of the gap between the top
/// two codes.
pub fn sap(truth: &dyn GroundTruth, rep: &dyn Representation, s: &Settings) -> Result<Sap> {
    s.validate()?;
    let mut rng = stream(s, 4);
    let train = factor_codes(truth, rep, s.num_train, &mut rng)?;
    let test = factor_codes(truth, rep, s.num_eval, &mut rng)?;
    sap_of(&train, &test, s.sap_mode)
}

/// SAP of fixed codes and factors: the classifier fits on `train` and
/// scores on `test`; the R² mode reads `train`'s factor values only.
pub fn sap_of(train: &Coded, test: &Coded, mode: SapMode) -> Result<Sap> {
    let (ct, ft, fv) = (&train.codes, &train.classes, &train.values);
    let (ce, fe) = (&test.codes, &test.classes);
    let (nc, nf) = (ct.ncols(), ft.ncols());
    if nc < 2 {
        return Err(input("SAP needs at least 2 codes"));
    }
    let vals: Vec<f64> = (0..nc * nf)
        .into_par_iter()
        .map(|t| {
            let (i, j) = (t / nf, t % nf);
            let x = ct.column(i).to_vec();
            match mode {
                SapMode::Classifier => {
                    let m = OneFeatureSvm::fit(&x, &column(ft, j), 0.01);
                    accuracy(&m.predict(&ce.column(i).to_vec()), &column(fe, j))
                }
                SapMode::Correlation => r_squared(&x, &fv.column(j).to_vec()),
            }
        })
        .collect();
    let m = Array2::from_shape_vec((nc, nf), vals).expect("nc × nf");
    let score = (0..nf)
        .map(|j| {
            let mut col = m.column(j).to_vec();
            col.sort_by(|a, b| b.total_cmp(a));
            col[0] - col[1]
        })
        .sum::<f64>()
        / nf as f64;
    Ok(Sap {
        score,
        matrix: m.rows().into_iter().map(|r| r.to_vec()).collect(),
    })
}

fn r_squared(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    let d = n - 1.0;
    let (cov, vx, vy) = (sxy / d, sxx / d, syy / d);
    if vx > 1e-12 && vy > 0.0 {
        cov * cov / (vx * vy)
    } else {
        0.0
    }
}

/// DCI (Eastwood & Williams 2018).
#[derive(Clone, Debug, Serialize)]
pub struct Dci {
    /// Importance-weighted mean of 1 − H(code's importance over factors).
    pub disentanglement: f64,
    /// Importance-weighted mean of 1 − H(factor's importance over codes).
    pub completeness: f64,
    /// Mean test accuracy of the per-factor classifiers.
    pub informativeness: f64,
    /// The same on the training points.
    pub informativeness_train: f64,
    /// codes × factors importance matrix.
    pub importance: Vec<Vec<f64>>,
}

fn entropy_base(p: &[f64], base: f64) -> f64 {
    // scipy.stats.entropy: normalise, then −Σ p ln p / ln base.
    let z: f64 = p.iter().sum();
    -p.iter()
        .map(|v| {
            let q = v / z;
            if q > 0.0 { q * q.ln() } else { 0.0 }
        })
        .sum::<f64>()
        / base.ln()
}

/// DCI disentanglement of an importance matrix (codes × factors).
pub fn disentanglement(r: ArrayView2<'_, f64>) -> f64 {
    let (nc, nf) = r.dim();
    let per_code: Vec<f64> = (0..nc)
        .map(|i| {
            let row: Vec<f64> = r.row(i).iter().map(|v| v + 1e-11).collect();
            1.0 - entropy_base(&row, nf as f64)
        })
        .collect();
    let total = r.sum();
    let weights: Vec<f64> = if total == 0.0 {
        vec![1.0 / nc as f64; nc]
    } else {
        (0..nc).map(|i| r.row(i).sum() / total).collect()
    };
    per_code.iter().zip(&weights).map(|(a, b)| a * b).sum()
}

/// DCI completeness of an importance matrix (codes × factors).
pub fn completeness(r: ArrayView2<'_, f64>) -> f64 {
    disentanglement(r.t())
}

/// Disentanglement and completeness of an importance matrix.
pub fn dci_from_importance(r: ArrayView2<'_, f64>) -> (f64, f64) {
    (disentanglement(r), completeness(r))
}

/// DCI: per factor, gradient-boosted trees predict the factor from the codes;
/// their impurity importances form the codes × factors matrix.
pub fn dci(truth: &dyn GroundTruth, rep: &dyn Representation, s: &Settings) -> Result<Dci> {
    s.validate()?;
    let mut rng = stream(s, 5);
    let train = factor_codes(truth, rep, s.num_train, &mut rng)?;
    let test = factor_codes(truth, rep, s.num_eval, &mut rng)?;
    dci_of(&train, &test, s.seed)
}

/// DCI of fixed codes and factor classes: the trees fit on `train` and
/// `informativeness` scores them on `test`; `seed` breaks ties between
/// identical codes.
pub fn dci_of(train: &Coded, test: &Coded, seed: u64) -> Result<Dci> {
    let (ct, ft) = (&train.codes, &train.classes);
    let (ce, fe) = (&test.codes, &test.classes);
    let (nc, nf) = (ct.ncols(), ft.ncols());
    let mut importance = Array2::<f64>::zeros((nc, nf));
    let (mut tr, mut te) = (0.0, 0.0);
    for j in 0..nf {
        let y = column(ft, j);
        let m = Gbt::fit(ct.view(), &y, GbtConfig::default(), seed ^ (j as u64 + 1));
        importance
            .column_mut(j)
            .assign(&Array1::from(m.importance.clone()));
        tr += accuracy(&m.predict(ct.view()), &y);
        te += accuracy(&m.predict(ce.view()), &column(fe, j));
    }
    let (d, c) = dci_from_importance(importance.view());
    Ok(Dci {
        disentanglement: d,
        completeness: c,
        informativeness: te / nf as f64,
        informativeness_train: tr / nf as f64,
        importance: importance.rows().into_iter().map(|r| r.to_vec()).collect(),
    })
}

/// Modularity of a codes × factors mutual-information matrix (Ridgeway &
/// Mozer 2018): per code, 1 − (Σ m² − max m²) / (max m² · (factors − 1)),
/// 0 for a code with no information; the mean over codes.
pub fn modularity(mi: ArrayView2<'_, f64>) -> f64 {
    let nf = mi.ncols() as f64;
    let per: Vec<f64> = mi
        .rows()
        .into_iter()
        .map(|r| {
            let sq: Vec<f64> = r.iter().map(|v| v * v).collect();
            let mx = sq.iter().copied().fold(0.0, f64::max);
            if mx == 0.0 {
                0.0
            } else {
                1.0 - (sq.iter().sum::<f64>() - mx) / (mx * (nf - 1.0))
            }
        })
        .collect();
    per.iter().sum::<f64>() / per.len().max(1) as f64
}

/// Modularity and explicitness.
#[derive(Clone, Debug, Serialize)]
pub struct ModularityExplicitness {
    /// Modularity of the discretised codes' mutual information.
    pub modularity: f64,
    /// Mean over factors of the test ROC AUC of a logistic regression on
    /// the standardised codes (0.5 is chance).
    pub explicitness: f64,
    /// The same on the training points.
    pub explicitness_train: f64,
}

/// Modularity and explicitness (Ridgeway & Mozer 2018).
pub fn modularity_explicitness(
    truth: &dyn GroundTruth,
    rep: &dyn Representation,
    s: &Settings,
) -> Result<ModularityExplicitness> {
    s.validate()?;
    let mut rng = stream(s, 6);
    let train = factor_codes(truth, rep, s.num_train, &mut rng)?;
    let test = factor_codes(truth, rep, s.num_eval, &mut rng)?;
    modularity_explicitness_of(&train, &test, s.bins)
}

/// Modularity (of `train`, `bins` histogram bins per code) and
/// explicitness (logistic regressions fit on `train`, scored on `test`) of
/// fixed codes and factor classes.
pub fn modularity_explicitness_of(
    train: &Coded,
    test: &Coded,
    bins: usize,
) -> Result<ModularityExplicitness> {
    let (ct, ft) = (&train.codes, &train.classes);
    let (ce, fe) = (&test.codes, &test.classes);
    let mi = mi_matrix(&histogram_discretize(ct.view(), bins), ft);
    let mean = ct.mean_axis(Axis(0)).expect("n ≥ 1");
    let std = ct
        .std_axis(Axis(0), 0.0)
        .mapv(|v| if v > 0.0 { v } else { 1.0 });
    let nt = (ct - &mean) / &std;
    let ne = (ce - &mean) / &std;
    let nf = ft.ncols();
    let per: Vec<(f64, f64)> = (0..nf)
        .into_par_iter()
        .map(|j| {
            let y = column(ft, j);
            let m = Logistic::fit(nt.view(), &y);
            let auc = |x: &Array2<f64>, y: &[usize]| {
                let p = m.proba(x.view());
                let aucs: Vec<f64> = m
                    .labels()
                    .iter()
                    .enumerate()
                    .filter_map(|(c, l)| {
                        let lab: Vec<bool> = y.iter().map(|v| v == l).collect();
                        roc_auc(&p.column(c).to_vec(), &lab)
                    })
                    .collect();
                if aucs.is_empty() {
                    0.5
                } else {
                    aucs.iter().sum::<f64>() / aucs.len() as f64
                }
            };
            (auc(&nt, &y), auc(&ne, &column(fe, j)))
        })
        .collect();
    Ok(ModularityExplicitness {
        modularity: modularity(mi.view()),
        explicitness: per.iter().map(|p| p.1).sum::<f64>() / nf as f64,
        explicitness_train: per.iter().map(|p| p.0).sum::<f64>() / nf as f64,
    })
}
