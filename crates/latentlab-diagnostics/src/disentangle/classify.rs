//! The small classifiers the metrics need: multinomial logistic regression
//! (L2, C = 1, as scikit-learn's default), a one-feature linear SVM
//! (squared hinge, C = 0.01, balanced class weights, as LinearSVC), the
//! ROC AUC, and discrete mutual information.

use std::collections::BTreeMap;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

/// Maps arbitrary class labels to `0..k`.
#[derive(Clone, Debug)]
pub(crate) struct Classes {
    pub labels: Vec<usize>,
}

impl Classes {
    pub fn of(y: &[usize]) -> Self {
        let mut labels = y.to_vec();
        labels.sort_unstable();
        labels.dedup();
        Self { labels }
    }
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn index(&self, label: usize) -> Option<usize> {
        self.labels.binary_search(&label).ok()
    }
}

/// Multinomial logistic regression minimising
/// `Σᵢ −log softmax(W xᵢ + b)_{yᵢ} + ½‖W‖²` (the intercept unpenalised),
/// by L-BFGS to a gradient norm of 1e-6 or 500 iterations.
pub(crate) struct Logistic {
    classes: Classes,
    /// K × (d + 1): weights, then the intercept.
    theta: Array2<f64>,
}

fn softmax_rows(s: &mut Array2<f64>) {
    for mut r in s.rows_mut() {
        let m = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        r.mapv_inplace(|v| (v - m).exp());
        let z = r.sum();
        r /= z;
    }
}

impl Logistic {
    pub fn fit(x: ArrayView2<'_, f64>, y: &[usize]) -> Self {
        let classes = Classes::of(y);
        let k = classes.len();
        let (n, d) = x.dim();
        let yi: Vec<usize> = y.iter().map(|v| classes.index(*v).unwrap_or(0)).collect();
        let mut xb = Array2::<f64>::ones((n, d + 1));
        xb.slice_mut(ndarray::s![.., ..d]).assign(&x);
        let theta0 = Array2::<f64>::zeros((k, d + 1));
        if k < 2 {
            return Self {
                classes,
                theta: theta0,
            };
        }
        let f = |t: &Array1<f64>| -> (f64, Array1<f64>) {
            let th = t.view().into_shape_with_order((k, d + 1)).expect("shape");
            let mut s = xb.dot(&th.t());
            let mut loss = 0.0;
            for (i, r) in s.rows().into_iter().enumerate() {
                let m = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = m + r.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
                loss += lse - r[yi[i]];
            }
            softmax_rows(&mut s);
            for (i, &c) in yi.iter().enumerate() {
                s[[i, c]] -= 1.0;
            }
            let mut g = s.t().dot(&xb);
            let mut reg = 0.0;
            for c in 0..k {
                for j in 0..d {
                    reg += th[[c, j]] * th[[c, j]];
                    g[[c, j]] += th[[c, j]];
                }
            }
            (
                loss + 0.5 * reg,
                g.into_shape_with_order(k * (d + 1)).expect("shape"),
            )
        };
        let t = lbfgs(Array1::zeros(k * (d + 1)), f, 500, 1e-6);
        Self {
            classes,
            theta: t.into_shape_with_order((k, d + 1)).expect("shape"),
        }
    }

    /// Class probabilities (n × K, columns in the order of `labels()`).
    pub fn proba(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let d = x.ncols();
        let w = self.theta.slice(ndarray::s![.., ..d]);
        let b = self.theta.column(d);
        let mut s = x.dot(&w.t()) + b;
        softmax_rows(&mut s);
        s
    }

    pub fn labels(&self) -> &[usize] {
        &self.classes.labels
    }

    pub fn predict(&self, x: ArrayView2<'_, f64>) -> Vec<usize> {
        let p = self.proba(x);
        p.rows()
            .into_iter()
            .map(|r| self.classes.labels[argmax(r.iter().copied())])
            .collect()
    }
}

pub(crate) fn argmax(v: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, x) in v.enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best.0
}

pub(crate) fn accuracy(pred: &[usize], y: &[usize]) -> f64 {
    pred.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len().max(1) as f64
}

/// Limited-memory BFGS (m = 10) with a backtracking Armijo line search.
pub(crate) fn lbfgs(
    mut x: Array1<f64>,
    f: impl Fn(&Array1<f64>) -> (f64, Array1<f64>),
    max_iter: usize,
    tol: f64,
) -> Array1<f64> {
    let m = 10;
    let (mut fx, mut g) = f(&x);
    let mut s_hist: Vec<Array1<f64>> = Vec::new();
    let mut y_hist: Vec<Array1<f64>> = Vec::new();
    for _ in 0..max_iter {
        if g.iter().map(|v| v * v).sum::<f64>().sqrt() < tol {
            break;
        }
        // Two-loop recursion.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(s_hist.len());
        for (s, y) in s_hist.iter().zip(&y_hist).rev() {
            let rho = 1.0 / y.dot(s);
            let a = rho * s.dot(&q);
            q.scaled_add(-a, y);
            alphas.push((a, rho));
        }
        if let (Some(s), Some(y)) = (s_hist.last(), y_hist.last()) {
            q *= s.dot(y) / y.dot(y);
        }
        for ((s, y), (a, rho)) in s_hist.iter().zip(&y_hist).zip(alphas.into_iter().rev()) {
            let b = rho * y.dot(&q);
            q.scaled_add(a - b, s);
        }
        let mut dir = -q;
        let mut slope = dir.dot(&g);
        if slope >= 0.0 {
            dir = -g.clone();
            slope = dir.dot(&g);
            s_hist.clear();
            y_hist.clear();
        }
        let mut step = if s_hist.is_empty() {
            1.0 / g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1.0)
        } else {
            1.0
        };
        let mut accepted = None;
        for _ in 0..40 {
            let xn = &x + &(&dir * step);
            let (fn_, gn) = f(&xn);
            if fn_.is_finite() && fn_ <= fx + 1e-4 * step * slope {
                accepted = Some((xn, fn_, gn));
                break;
            }
            step *= 0.5;
        }
        let Some((xn, fn_, gn)) = accepted else {
            break;
        };
        let s = &xn - &x;
        let y = &gn - &g;
        if y.dot(&s) > 1e-12 {
            s_hist.push(s);
            y_hist.push(y);
            if s_hist.len() > m {
                s_hist.remove(0);
                y_hist.remove(0);
            }
        }
        let done = (fx - fn_).abs() <= 1e-14 * fx.abs().max(1.0);
        x = xn;
        fx = fn_;
        g = gn;
        if done {
            break;
        }
    }
    x
}

/// One-vs-rest linear SVM on a single feature, as scikit-learn's
/// `LinearSVC(C=0.01, class_weight="balanced")` (liblinear's squared hinge
/// with the intercept penalised like a weight; positives weighted by their
/// class's balanced weight).
pub(crate) struct OneFeatureSvm {
    classes: Classes,
    /// (w, b) per class; one pair for two classes.
    lines: Vec<(f64, f64)>,
}

impl OneFeatureSvm {
    pub fn fit(x: &[f64], y: &[usize], c: f64) -> Self {
        let classes = Classes::of(y);
        let k = classes.len();
        let n = y.len() as f64;
        let counts: Vec<f64> = classes
            .labels
            .iter()
            .map(|l| y.iter().filter(|v| *v == l).count() as f64)
            .collect();
        let weight: Vec<f64> = counts.iter().map(|cnt| n / (k as f64 * cnt)).collect();
        let fit_one = |pos: usize| -> (f64, f64) {
            let sign: Vec<f64> = y
                .iter()
                .map(|v| {
                    if classes.index(*v) == Some(pos) {
                        1.0
                    } else {
                        -1.0
                    }
                })
                .collect();
            let cost: Vec<f64> = sign
                .iter()
                .map(|s| if *s > 0.0 { c * weight[pos] } else { c })
                .collect();
            let obj = |w: f64, b: f64| -> f64 {
                0.5 * (w * w + b * b)
                    + x.iter()
                        .zip(&sign)
                        .zip(&cost)
                        .map(|((xi, s), ci)| {
                            let m = (1.0 - s * (w * xi + b)).max(0.0);
                            ci * m * m
                        })
                        .sum::<f64>()
            };
            let (mut w, mut b) = (0.0, 0.0);
            for _ in 0..50 {
                let (mut gw, mut gb) = (w, b);
                let (mut hww, mut hwb, mut hbb) = (1.0, 0.0, 1.0);
                for ((xi, s), ci) in x.iter().zip(&sign).zip(&cost) {
                    let m = 1.0 - s * (w * xi + b);
                    if m > 0.0 {
                        gw -= 2.0 * ci * m * s * xi;
                        gb -= 2.0 * ci * m * s;
                        hww += 2.0 * ci * xi * xi;
                        hwb += 2.0 * ci * xi;
                        hbb += 2.0 * ci;
                    }
                }
                let det = hww * hbb - hwb * hwb;
                if det.abs() < 1e-300 {
                    break;
                }
                let dw = (hbb * gw - hwb * gb) / det;
                let db = (hww * gb - hwb * gw) / det;
                let f0 = obj(w, b);
                let mut t = 1.0;
                while t > 1e-10 && obj(w - t * dw, b - t * db) > f0 {
                    t *= 0.5;
                }
                w -= t * dw;
                b -= t * db;
                if (t * dw).abs() + (t * db).abs() < 1e-12 {
                    break;
                }
            }
            (w, b)
        };
        let lines = match k {
            0 | 1 => Vec::new(),
            2 => vec![fit_one(1)],
            _ => (0..k).map(fit_one).collect(),
        };
        Self { classes, lines }
    }

    pub fn predict(&self, x: &[f64]) -> Vec<usize> {
        x.iter()
            .map(|xi| {
                let c = match self.lines.len() {
                    0 => 0,
                    1 => usize::from(self.lines[0].0 * xi + self.lines[0].1 > 0.0),
                    _ => argmax(self.lines.iter().map(|(w, b)| w * xi + b)),
                };
                self.classes.labels[c]
            })
            .collect()
    }
}

/// Area under the ROC curve of `score` for the positives in `label`
/// (Mann–Whitney, ties counted half). `None` without both classes.
pub(crate) fn roc_auc(score: &[f64], label: &[bool]) -> Option<f64> {
    let pos = label.iter().filter(|l| **l).count();
    let neg = label.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let rank_sum: f64 = latentlab_rng::audit::ranks(score)
        .iter()
        .zip(label)
        .filter(|(_, l)| **l)
        .map(|(r, _)| r)
        .sum();
    let p = pos as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * neg as f64))
}

/// Mutual information of two discrete labelings, nats (as scikit-learn's
/// `mutual_info_score`).
pub(crate) fn mutual_info(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len() as f64;
    let mut joint: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    let mut ma: BTreeMap<usize, f64> = BTreeMap::new();
    let mut mb: BTreeMap<usize, f64> = BTreeMap::new();
    for (x, y) in a.iter().zip(b) {
        *joint.entry((*x, *y)).or_default() += 1.0;
        *ma.entry(*x).or_default() += 1.0;
        *mb.entry(*y).or_default() += 1.0;
    }
    joint
        .iter()
        .map(|((x, y), c)| c / n * (n * c / (ma[x] * mb[y])).ln())
        .sum::<f64>()
        .max(0.0)
}

/// Each column of `x` discretised into `bins` equal-width bins between its
/// minimum and maximum, numbered 1..=bins (numpy's histogram edges and
/// `digitize` against all edges but the last).
pub(crate) fn histogram_discretize(x: ArrayView2<'_, f64>, bins: usize) -> Array2<usize> {
    let mut out = Array2::<usize>::zeros(x.dim());
    for (col, mut o) in x.axis_iter(Axis(1)).zip(out.axis_iter_mut(Axis(1))) {
        let edges = histogram_edges(col, bins);
        for (v, t) in col.iter().zip(o.iter_mut()) {
            *t = digitize(*v, &edges);
        }
    }
    out
}

/// The left edges of `bins` equal-width bins between the minimum and
/// maximum of `values` (numpy's `histogram` edges but the last; a constant
/// column spans ±0.5 around its value, as numpy's does).
pub(crate) fn histogram_edges(values: ArrayView1<'_, f64>, bins: usize) -> Vec<f64> {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    };
    let step = (hi - lo) / bins as f64;
    (0..bins).map(|i| lo + i as f64 * step).collect()
}

/// The number of `edges` at or below `v` (numpy's `digitize` on
/// increasing edges): 0 below the first, `edges.len()` from the last on.
pub(crate) fn digitize(v: f64, edges: &[f64]) -> usize {
    edges.partition_point(|e| *e <= v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn logistic_regression_separates_and_matches_its_optimum() {
        let x = array![
            [0.0, 0.0],
            [0.1, 0.2],
            [3.0, 3.0],
            [3.1, 2.9],
            [0.0, 3.0],
            [0.2, 3.1]
        ];
        let y = [0, 0, 1, 1, 2, 2];
        let m = Logistic::fit(x.view(), &y);
        assert_eq!(m.predict(x.view()), y.to_vec());
        let p = m.proba(x.view());
        for r in p.rows() {
            assert!((r.sum() - 1.0).abs() < 1e-12);
        }
        // The optimum of Σᵢ CE + ½‖W‖² (scikit-learn's C = 1, intercept
        // free): the gradient, recomputed here from the fitted
        // probabilities, vanishes. Overlapping classes keep it finite.
        let x = array![
            [0.0, 0.0],
            [1.0, 0.5],
            [0.5, 1.0],
            [1.5, 1.5],
            [2.0, 1.0],
            [1.0, 2.0],
            [0.2, 0.1]
        ];
        let y = [0, 0, 1, 1, 2, 2, 1];
        let m = Logistic::fit(x.view(), &y);
        let p = m.proba(x.view());
        let (k, d) = (3, 2);
        for c in 0..k {
            let resid: Vec<f64> = (0..y.len())
                .map(|i| p[[i, c]] - f64::from(u8::from(y[i] == c)))
                .collect();
            let gb: f64 = resid.iter().sum();
            assert!(gb.abs() < 1e-4, "intercept {c}: {gb}");
            for j in 0..d {
                let gw = (0..y.len()).map(|i| resid[i] * x[[i, j]]).sum::<f64>() + m.theta[[c, j]];
                assert!(gw.abs() < 1e-4, "weight {c},{j}: {gw}");
            }
        }
        // Not the trivial point: the fit moved away from zero.
        assert!(m.theta.iter().any(|v| v.abs() > 0.1), "{:?}", m.theta);
    }

    #[test]
    fn lbfgs_minimises_a_quadratic() {
        let f = |x: &Array1<f64>| {
            let a = [1.0, 10.0, 100.0];
            let v: f64 = (0..3).map(|i| 0.5 * a[i] * (x[i] - 1.0).powi(2)).sum();
            let g = Array1::from_iter((0..3).map(|i| a[i] * (x[i] - 1.0)));
            (v, g)
        };
        let x = lbfgs(Array1::zeros(3), f, 200, 1e-10);
        for v in x {
            assert!((v - 1.0).abs() < 1e-6, "{v}");
        }
    }

    #[test]
    fn svm_orders_three_classes_on_a_line() {
        let x: Vec<f64> = (0..300)
            .map(|i| (i / 100) as f64 * 10.0 + (i % 7) as f64 * 0.1)
            .collect();
        let y: Vec<usize> = (0..300).map(|i| i / 100).collect();
        let m = OneFeatureSvm::fit(&x, &y, 1.0);
        assert!(accuracy(&m.predict(&x), &y) > 0.6);
        let two = OneFeatureSvm::fit(&x[..200], &y[..200], 0.01);
        assert_eq!(accuracy(&two.predict(&x[..200]), &y[..200]), 1.0);
    }

    #[test]
    fn auc_and_mutual_information_known_values() {
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Some(0.75)
        );
        assert_eq!(roc_auc(&[1.0, 1.0], &[false, true]), Some(0.5));
        assert_eq!(roc_auc(&[1.0], &[true]), None);
        let a = [0, 0, 1, 1];
        assert!((mutual_info(&a, &a) - 2f64.ln()).abs() < 1e-15);
        assert!(mutual_info(&a, &[0, 1, 0, 1]).abs() < 1e-15);
    }

    #[test]
    fn histogram_bins_match_numpy() {
        // np.digitize(x, np.histogram(x, 4)[1][:-1]) for x = 0, 1, 2, 3, 4
        let x = array![[0.0], [1.0], [2.0], [3.0], [4.0]];
        let d = histogram_discretize(x.view(), 4);
        assert_eq!(d.column(0).to_vec(), vec![1, 2, 3, 4, 4]);
        let c = array![[2.0], [2.0]];
        assert_eq!(
            histogram_discretize(c.view(), 20).column(0).to_vec(),
            vec![11, 11]
        );
    }
}
