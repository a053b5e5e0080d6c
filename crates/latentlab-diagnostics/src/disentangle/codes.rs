//! The metrics that need only codes and factors (MIG, SAP, DCI, modularity
//! and explicitness), on bare arrays from any framework.
//!
//! As in disentanglement_lib, MIG and modularity read the training points;
//! SAP's classifiers, DCI's trees and explicitness's regressions fit on
//! them and score on the test points. The β-VAE and FactorVAE scores need
//! observations drawn with a factor held fixed, which bare codes cannot
//! give: they are reported as not computable, never as a number.

use std::collections::BTreeMap;

use latentlab_data::rng::subset;
use ndarray::{Array2, Axis};
use serde::Serialize;

use super::classify::{digitize, histogram_edges};
use super::metrics::{Dci, SapMode, dci_of, mig_of, modularity_explicitness_of, sap_of};
use crate::error::{Result, input};

/// Codes with the factors of the same points: what the code-level metrics
/// read.
#[derive(Clone, Debug)]
pub struct Coded {
    /// n × d codes.
    pub codes: Array2<f64>,
    /// n × K factor classes: what MIG, DCI, modularity, explicitness and
    /// SAP's classifier score.
    pub classes: Array2<usize>,
    /// n × K factor values: what SAP's R² mode correlates with the codes.
    pub values: Array2<f64>,
}

impl Coded {
    /// Codes of points with discrete factor classes (the values are the
    /// class numbers).
    pub fn from_classes(codes: Array2<f64>, classes: Array2<usize>) -> Self {
        let values = classes.mapv(|c| c as f64);
        Self {
            codes,
            classes,
            values,
        }
    }
}

/// How bare factor arrays are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorKind {
    /// Whole numbers naming classes (any integers; only equality matters).
    #[default]
    Discrete,
    /// Real values: cut into histogram bins where a metric needs classes.
    Continuous,
}

/// How [`evaluate_codes`] reads and scores bare arrays.
#[derive(Clone, Debug)]
pub struct CodeOptions {
    /// Discrete or continuous factors.
    pub factors: FactorKind,
    /// Histogram bins of the codes (MIG, modularity) and of continuous
    /// factors (20, disentanglement_lib's).
    pub bins: usize,
    /// SAP's per-pair score (the R² mode is disentanglement_lib's for
    /// continuous factors).
    pub sap_mode: SapMode,
    /// Seed of the train/test split (when no test arrays are given) and of
    /// DCI's tie-breaking.
    pub seed: u64,
    /// The share of rows the seeded split holds out when no test arrays
    /// are given.
    pub test_fraction: f64,
}

impl Default for CodeOptions {
    fn default() -> Self {
        Self {
            factors: FactorKind::Discrete,
            bins: 20,
            sap_mode: SapMode::Classifier,
            seed: 0,
            test_fraction: 0.2,
        }
    }
}

/// What [`evaluate_codes`] did, echoed beside the scores.
#[derive(Clone, Debug, Serialize)]
pub struct CodeSettings {
    /// Discrete or continuous factors.
    pub factors: FactorKind,
    /// How the factors were turned into what each metric reads.
    pub factor_treatment: String,
    /// Histogram bins.
    pub bins: usize,
    /// SAP's per-pair score.
    pub sap_mode: SapMode,
    /// The seed.
    pub seed: u64,
    /// Training points.
    pub num_train: usize,
    /// Test points.
    pub num_test: usize,
    /// Where the test points came from.
    pub split: String,
}

/// The code-level metrics of bare arrays. The keys match
/// [`Scores`](super::Scores)'s; the two scores bare codes cannot give are
/// `None`, with the reason under `not_computable`.
#[derive(Clone, Debug, Serialize)]
pub struct CodeScores {
    /// Not computable from codes alone (see `not_computable`).
    pub beta_vae: Option<f64>,
    /// Not computable from codes alone (see `not_computable`).
    pub factor_vae: Option<f64>,
    /// MIG.
    pub mig: f64,
    /// MIG's gap per factor.
    pub mig_per_factor: Vec<f64>,
    /// SAP.
    pub sap: f64,
    /// DCI.
    pub dci: Dci,
    /// Modularity.
    pub modularity: f64,
    /// Explicitness (mean test ROC AUC; 0.5 is chance).
    pub explicitness: f64,
    /// The same on the training points.
    pub explicitness_train: f64,
    /// Explicitness rescaled so chance is 0: max(0, 2·AUC − 1).
    pub explicitness_normalized: f64,
    /// Each score that was not computed, with the reason.
    pub not_computable: BTreeMap<&'static str, &'static str>,
    /// What was done.
    pub settings: CodeSettings,
    /// The factors.
    pub factors: Vec<String>,
}

const NEEDS_INTERVENTIONS: &str = "needs observations drawn with one factor held fixed, \
     which only a model with data can give; bare codes cannot";

/// The stream of the seeded train/test split (`(seed, Subset, 4)`).
const SPLIT_STREAM: u64 = 4;

/// MIG, SAP, DCI, modularity and explicitness of `codes` (n × d) with
/// `factors` (n × K, one column per factor), scored on `test` (codes and
/// factors of other points) or, when it is `None`, on a seeded share of
/// the rows ([`CodeOptions::test_fraction`]).
pub fn evaluate_codes(
    codes: Array2<f64>,
    factors: Array2<f64>,
    test: Option<(Array2<f64>, Array2<f64>)>,
    opts: &CodeOptions,
) -> Result<CodeScores> {
    if opts.bins < 2 {
        return Err(input("at least 2 histogram bins are needed"));
    }
    check_pair(&codes, &factors, "training", opts.factors)?;
    let (train, test, split) = match test {
        Some((tc, tf)) => {
            check_pair(&tc, &tf, "test", opts.factors)?;
            if tc.ncols() != codes.ncols() {
                return Err(input(format!(
                    "the test codes have {} columns but the training codes {}",
                    tc.ncols(),
                    codes.ncols()
                )));
            }
            if tf.ncols() != factors.ncols() {
                return Err(input(format!(
                    "the test factors have {} columns but the training factors {}",
                    tf.ncols(),
                    factors.ncols()
                )));
            }
            let split = "test arrays given".to_string();
            ((codes, factors), (tc, tf), split)
        }
        None => {
            let n = codes.nrows();
            if !(opts.test_fraction > 0.0 && opts.test_fraction < 1.0) {
                return Err(input(format!(
                    "the test fraction must lie in (0, 1), not {}",
                    opts.test_fraction
                )));
            }
            let n_test = ((n as f64 * opts.test_fraction).round() as usize).max(1);
            if n < n_test + 2 {
                return Err(input(format!(
                    "{n} rows are too few to hold out a test set and keep 2 training rows"
                )));
            }
            let mut held = subset(n, n_test, opts.seed, SPLIT_STREAM);
            held.sort_unstable();
            let mut is_test = vec![false; n];
            held.iter().for_each(|&i| is_test[i] = true);
            let kept: Vec<usize> = (0..n).filter(|&i| !is_test[i]).collect();
            let split = format!(
                "no test arrays: a seeded draw (seed {}, stream (seed, Subset, {SPLIT_STREAM})) \
                 held out {n_test} of {n} rows ({} %) as the test set, the rest kept in order",
                opts.seed,
                opts.test_fraction * 100.0
            );
            let take = |a: &Array2<f64>, idx: &[usize]| a.select(Axis(0), idx);
            (
                (take(&codes, &kept), take(&factors, &kept)),
                (take(&codes, &held), take(&factors, &held)),
                split,
            )
        }
    };
    let (train_classes, test_classes, treatment) = match opts.factors {
        FactorKind::Discrete => discrete_classes(&train.1, &test.1),
        FactorKind::Continuous => continuous_classes(&train.1, &test.1, opts.bins),
    };
    for (k, col) in train_classes.axis_iter(Axis(1)).enumerate() {
        if col.iter().all(|c| *c == col[0]) {
            return Err(input(format!(
                "factor {k} takes one value in every training row: it has nothing to score"
            )));
        }
    }
    let train = Coded {
        codes: train.0,
        classes: train_classes,
        values: train.1,
    };
    let test = Coded {
        codes: test.0,
        classes: test_classes,
        values: test.1,
    };
    let mig = mig_of(&train, opts.bins)?;
    let sap = sap_of(&train, &test, opts.sap_mode)?;
    let dci = dci_of(&train, &test, opts.seed)?;
    let me = modularity_explicitness_of(&train, &test, opts.bins)?;
    Ok(CodeScores {
        beta_vae: None,
        factor_vae: None,
        mig: mig.score,
        mig_per_factor: mig.per_factor,
        sap: sap.score,
        dci,
        modularity: me.modularity,
        explicitness: me.explicitness,
        explicitness_train: me.explicitness_train,
        explicitness_normalized: (2.0 * me.explicitness - 1.0).max(0.0),
        not_computable: BTreeMap::from([
            ("beta_vae", NEEDS_INTERVENTIONS),
            ("factor_vae", NEEDS_INTERVENTIONS),
        ]),
        settings: CodeSettings {
            factors: opts.factors,
            factor_treatment: treatment,
            bins: opts.bins,
            sap_mode: opts.sap_mode,
            seed: opts.seed,
            num_train: train.codes.nrows(),
            num_test: test.codes.nrows(),
            split,
        },
        factors: (0..train.classes.ncols())
            .map(|k| format!("factor {k}"))
            .collect(),
    })
}

/// Codes and factors of one set, as given (so that rows are the caller's):
/// as many rows, at least 2 codes and 1 factor, every value finite, and
/// discrete factors whole numbers.
fn check_pair(
    codes: &Array2<f64>,
    factors: &Array2<f64>,
    set: &str,
    kind: FactorKind,
) -> Result<()> {
    if codes.nrows() != factors.nrows() {
        return Err(input(format!(
            "the {set} codes have {} rows but the {set} factors {}",
            codes.nrows(),
            factors.nrows()
        )));
    }
    let least = if set == "training" { 2 } else { 1 };
    if codes.nrows() < least {
        return Err(input(format!(
            "the {set} set has {} rows; at least {least} are needed",
            codes.nrows()
        )));
    }
    if codes.ncols() < 2 {
        return Err(input(format!(
            "the {set} codes have {} column(s); MIG and SAP compare the two most \
             informative codes, so at least 2 are needed",
            codes.ncols()
        )));
    }
    if factors.ncols() == 0 {
        return Err(input(format!("the {set} factors have no columns")));
    }
    for (what, a) in [("codes", codes), ("factors", factors)] {
        if let Some(((r, c), v)) = a.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(input(format!(
                "the {set} {what} hold a non-finite value ({v}) at row {r}, column {c}"
            )));
        }
    }
    if kind == FactorKind::Discrete
        && let Some(((r, c), v)) = factors.indexed_iter().find(|(_, v)| v.fract() != 0.0)
    {
        return Err(input(format!(
            "the {set} factors hold {v} at row {r}, column {c}: discrete factors are \
             whole-number classes (real-valued factors are read as continuous: --continuous)"
        )));
    }
    Ok(())
}

/// Whole-number factor values as classes, numbered by value over both
/// sets (so a class seen only in the test set is its own class).
fn discrete_classes(
    train: &Array2<f64>,
    test: &Array2<f64>,
) -> (Array2<usize>, Array2<usize>, String) {
    let mut a = Array2::zeros(train.dim());
    let mut b = Array2::zeros(test.dim());
    for k in 0..train.ncols() {
        let mut values: Vec<f64> = train
            .column(k)
            .iter()
            .chain(test.column(k))
            .copied()
            .collect();
        values.sort_by(f64::total_cmp);
        values.dedup();
        let class = |v: &f64| values.partition_point(|u| u < v);
        a.column_mut(k).assign(&train.column(k).map(class));
        b.column_mut(k).assign(&test.column(k).map(class));
    }
    let treatment = "discrete: each distinct value is a class; SAP's R² mode reads the \
                     values themselves"
        .to_string();
    (a, b, treatment)
}

/// Real factor values cut into `bins` equal-width bins between each
/// factor's training minimum and maximum (numpy's histogram edges), the
/// test values at the training edges.
fn continuous_classes(
    train: &Array2<f64>,
    test: &Array2<f64>,
    bins: usize,
) -> (Array2<usize>, Array2<usize>, String) {
    let mut a = Array2::zeros(train.dim());
    let mut b = Array2::zeros(test.dim());
    for k in 0..train.ncols() {
        let edges = histogram_edges(train.column(k), bins);
        a.column_mut(k)
            .assign(&train.column(k).map(|v| digitize(*v, &edges)));
        b.column_mut(k)
            .assign(&test.column(k).map(|v| digitize(*v, &edges)));
    }
    let treatment = format!(
        "continuous: MIG, modularity, DCI and explicitness read each factor cut into {bins} \
         equal-width bins between its training minimum and maximum (numpy's histogram \
         edges; test values cut at the training edges); SAP's R² mode reads the values \
         themselves, its classifier the bins"
    );
    (a, b, treatment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    /// Two informative codes (the factors plus `noise` times a spread in
    /// [−1, 1]) and one of noise, for two factors of 3 and 4 classes, `n`
    /// rows.
    fn arrays(n: usize, noise: f64) -> (Array2<f64>, Array2<f64>) {
        let f = Array2::from_shape_fn((n, 2), |(i, k)| ((i * (k + 2) + i / 7) % (3 + k)) as f64);
        let c = Array2::from_shape_fn((n, 3), |(i, j)| match j {
            0 | 1 => f[[i, j]] + noise * ((i * (13 + j) % 17) as f64 / 8.0 - 1.0),
            _ => ((i * 31 % 23) as f64).sin(),
        });
        (c, f)
    }

    #[test]
    fn class_numbers_do_not_matter_for_discrete_factors() {
        let (c, f) = arrays(200, 0.1);
        // The same classes under other names: negative, sparse, float.
        let renamed = f.mapv(|v| [-7.0, 3.0, 1e6, 42.0][v as usize]);
        let opts = CodeOptions::default();
        let a = evaluate_codes(c.clone(), f, None, &opts).unwrap();
        let b = evaluate_codes(c, renamed, None, &opts).unwrap();
        assert_eq!(a.mig, b.mig);
        assert_eq!(a.modularity, b.modularity);
        assert_eq!(a.sap, b.sap);
        assert_eq!(a.explicitness, b.explicitness);
        assert_eq!(a.dci.importance, b.dci.importance);
        assert!(a.mig > 0.5, "the codes carry the factors: MIG {}", a.mig);
    }

    #[test]
    fn the_seeded_split_holds_out_a_seeded_fifth() {
        let (c, f) = arrays(101, 0.9);
        let opts = |seed| CodeOptions {
            seed,
            ..CodeOptions::default()
        };
        let a = evaluate_codes(c.clone(), f.clone(), None, &opts(3)).unwrap();
        assert_eq!((a.settings.num_train, a.settings.num_test), (81, 20));
        assert!(a.settings.split.contains("seed 3"), "{}", a.settings.split);
        let b = evaluate_codes(c.clone(), f.clone(), None, &opts(3)).unwrap();
        assert_eq!(a.dci.importance, b.dci.importance);
        let other = evaluate_codes(c, f, None, &opts(4)).unwrap();
        assert_ne!(a.dci.importance, other.dci.importance);
    }

    #[test]
    fn continuous_factors_are_cut_at_the_training_edges() {
        let train = array![[0.0], [0.25], [0.5], [1.0]];
        let test = array![[0.1], [0.99], [-1.0], [2.0]];
        let (a, b, t) = continuous_classes(&train, &test, 4);
        // Edges 0, 0.25, 0.5, 0.75: numpy's digitize numbers bins from 1,
        // 0 below the first edge, 4 from the last on.
        assert_eq!(a.column(0).to_vec(), vec![1, 2, 3, 4]);
        assert_eq!(b.column(0).to_vec(), vec![1, 4, 0, 4]);
        assert!(t.contains("4 equal-width bins"), "{t}");
    }

    #[test]
    fn bad_arrays_are_named_errors() {
        let (c, f) = arrays(20, 0.1);
        let opts = CodeOptions::default();
        let err = |c: Array2<f64>, f: Array2<f64>, test| {
            evaluate_codes(c, f, test, &opts).unwrap_err().to_string()
        };
        let short = f.slice(ndarray::s![..19, ..]).to_owned();
        assert!(err(c.clone(), short, None).contains("20 rows but the training factors 19"));
        let mut nan = c.clone();
        nan[[4, 1]] = f64::NAN;
        assert!(err(nan, f.clone(), None).contains("non-finite value (NaN) at row 4, column 1"));
        let mut half = f.clone();
        half[[2, 0]] = 0.5;
        assert!(err(c.clone(), half, None).contains("0.5 at row 2, column 0"));
        let mut flat = f.clone();
        flat.column_mut(1).fill(2.0);
        assert!(err(c.clone(), flat, None).contains("factor 1 takes one value"));
        let one = c.slice(ndarray::s![.., ..1]).to_owned();
        assert!(err(one, f.clone(), None).contains("at least 2 are needed"));
        let wide = Array2::zeros((5, 4));
        let test = Some((wide, f.slice(ndarray::s![..5, ..]).to_owned()));
        assert!(err(c.clone(), f.clone(), test).contains("test codes have 4 columns"));
        let tiny = (
            c.slice(ndarray::s![..2, ..]).to_owned(),
            f.slice(ndarray::s![..2, ..]).to_owned(),
        );
        assert!(err(tiny.0, tiny.1, None).contains("too few"));
    }
}
