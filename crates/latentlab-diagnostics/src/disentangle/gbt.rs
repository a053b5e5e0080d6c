//! Gradient-boosted trees for classification, as scikit-learn's
//! `GradientBoostingClassifier()` defaults (100 stages, learning rate 0.1,
//! depth 3, log-loss, one regression tree per class and stage on the
//! residuals, Newton leaf values), with impurity-based feature importances.
//! Exact splits through per-feature presorted orders; ties between equally
//! good features are broken at random (seeded), as scikit-learn's random
//! feature order does, so duplicated codes share importance.

use latentlab_data::rng::{Purpose, SplitMix64, stream_key};
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use super::classify::{Classes, argmax};

/// Settings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GbtConfig {
    pub stages: usize,
    pub learning_rate: f64,
    pub depth: usize,
}

impl Default for GbtConfig {
    fn default() -> Self {
        Self {
            stages: 100,
            learning_rate: 0.1,
            depth: 3,
        }
    }
}

#[derive(Clone, Debug)]
enum Node {
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
    },
    Leaf(f64),
}

#[derive(Clone, Debug)]
struct Tree(Vec<Node>);

impl Tree {
    fn predict(&self, x: &[f64]) -> f64 {
        let mut i = 0;
        loop {
            match &self.0[i] {
                Node::Leaf(v) => return *v,
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    i = if x[*feature] <= *threshold {
                        *left
                    } else {
                        *right
                    }
                }
            }
        }
    }
}

/// A fitted ensemble.
pub(crate) struct Gbt {
    classes: Classes,
    init: Vec<f64>,
    /// Per stage, one tree per score column.
    trees: Vec<Vec<Tree>>,
    learning_rate: f64,
    /// Normalised impurity decrease per feature (sums to 1, or all 0).
    pub importance: Vec<f64>,
}

/// Per-feature sample orders, sorted by value then index.
fn presort(x: ArrayView2<'_, f64>) -> Vec<Vec<u32>> {
    (0..x.ncols())
        .into_par_iter()
        .map(|f| {
            let mut o: Vec<u32> = (0..x.nrows() as u32).collect();
            o.sort_by(|&a, &b| {
                x[[a as usize, f]]
                    .total_cmp(&x[[b as usize, f]])
                    .then(a.cmp(&b))
            });
            o
        })
        .collect()
}

/// One regression tree on `r`, with Newton leaf values `num/den` from
/// (`r`, `h`); returns the tree, each sample's leaf value, and the gain per
/// feature.
fn grow(
    x: ArrayView2<'_, f64>,
    order: &[Vec<u32>],
    r: &[f64],
    h: &[f64],
    leaf_scale: f64,
    depth: usize,
    key: u64,
) -> (Tree, Vec<f64>, Vec<f64>) {
    let n = r.len();
    let d = x.ncols();
    let mut g = SplitMix64::from_key(key);
    let mut nodes: Vec<Node> = vec![Node::Leaf(0.0)];
    let mut node_of = vec![0usize; n];
    let mut frontier: Vec<usize> = vec![0];
    let mut gains = vec![0.0; d];
    for _ in 0..depth {
        if frontier.is_empty() {
            break;
        }
        // Totals per frontier node.
        let slot: std::collections::HashMap<usize, usize> = frontier
            .iter()
            .enumerate()
            .map(|(i, &nd)| (nd, i))
            .collect();
        let m = frontier.len();
        let mut tot_n = vec![0.0; m];
        let mut tot_s = vec![0.0; m];
        for i in 0..n {
            if let Some(&k) = slot.get(&node_of[i]) {
                tot_n[k] += 1.0;
                tot_s[k] += r[i];
            }
        }
        // Best split per (feature, node).
        let best: Vec<Vec<(f64, f64)>> = (0..d)
            .into_par_iter()
            .map(|f| {
                let mut cnt = vec![0.0; m];
                let mut sum = vec![0.0; m];
                let mut last = vec![f64::NAN; m];
                let mut out = vec![(0.0f64, 0.0f64); m];
                for &i in &order[f] {
                    let i = i as usize;
                    let Some(&k) = slot.get(&node_of[i]) else {
                        continue;
                    };
                    let v = x[[i, f]];
                    if cnt[k] > 0.0 && v > last[k] {
                        let nl = cnt[k];
                        let nr = tot_n[k] - nl;
                        let ml = sum[k] / nl;
                        let mr = (tot_s[k] - sum[k]) / nr;
                        let gain = nl * nr / tot_n[k] * (ml - mr) * (ml - mr);
                        if gain > out[k].0 {
                            out[k] = (gain, 0.5 * (last[k] + v));
                        }
                    }
                    cnt[k] += 1.0;
                    sum[k] += r[i];
                    last[k] = v;
                }
                out
            })
            .collect();
        let mut next = Vec::new();
        for (k, &nd) in frontier.iter().enumerate() {
            let top = (0..d).map(|f| best[f][k].0).fold(0.0, f64::max);
            if top <= 1e-12 {
                continue;
            }
            let tied: Vec<usize> = (0..d).filter(|&f| best[f][k].0 == top).collect();
            let f = tied[g.below(tied.len() as u64) as usize];
            gains[f] += top;
            let left = nodes.len();
            nodes.push(Node::Leaf(0.0));
            nodes.push(Node::Leaf(0.0));
            nodes[nd] = Node::Split {
                feature: f,
                threshold: best[f][k].1,
                left,
                right: left + 1,
            };
            next.push(left);
            next.push(left + 1);
        }
        for i in 0..n {
            if let Node::Split {
                feature,
                threshold,
                left,
                right,
            } = nodes[node_of[i]]
            {
                node_of[i] = if x[[i, feature]] <= threshold {
                    left
                } else {
                    right
                };
            }
        }
        frontier = next;
    }
    // Newton leaf values.
    let mut num = vec![0.0; nodes.len()];
    let mut den = vec![0.0; nodes.len()];
    for i in 0..n {
        num[node_of[i]] += r[i];
        den[node_of[i]] += h[i];
    }
    for (i, nd) in nodes.iter_mut().enumerate() {
        if let Node::Leaf(v) = nd {
            *v = if den[i].abs() < 1e-150 {
                0.0
            } else {
                leaf_scale * num[i] / den[i]
            };
        }
    }
    let values: Vec<f64> = node_of
        .iter()
        .map(|&l| match nodes[l] {
            Node::Leaf(v) => v,
            Node::Split { .. } => 0.0,
        })
        .collect();
    (Tree(nodes), values, gains)
}

impl Gbt {
    pub fn fit(x: ArrayView2<'_, f64>, y: &[usize], cfg: GbtConfig, seed: u64) -> Self {
        let classes = Classes::of(y);
        let k = classes.len();
        let n = y.len();
        let d = x.ncols();
        let yi: Vec<usize> = y.iter().map(|v| classes.index(*v).unwrap_or(0)).collect();
        let prior: Vec<f64> = (0..k)
            .map(|c| yi.iter().filter(|v| **v == c).count() as f64 / n as f64)
            .collect();
        let cols = if k == 2 { 1 } else { k };
        let init: Vec<f64> = match k {
            0 | 1 => vec![0.0],
            2 => vec![(prior[1] / prior[0]).ln()],
            _ => prior.iter().map(|p| p.ln()).collect(),
        };
        let mut model = Self {
            classes,
            init: init.clone(),
            trees: Vec::new(),
            learning_rate: cfg.learning_rate,
            importance: vec![0.0; d],
        };
        if k < 2 {
            return model;
        }
        let order = presort(x);
        let mut raw = Array2::<f64>::zeros((n, cols));
        for (c, v) in init.iter().enumerate().take(cols) {
            raw.column_mut(c).fill(*v);
        }
        let mut gains = vec![0.0; d];
        for stage in 0..cfg.stages {
            // Residuals and Hessians per column.
            let prob: Array2<f64> = if k == 2 {
                raw.mapv(|v| 1.0 / (1.0 + (-v).exp()))
            } else {
                let mut p = raw.clone();
                for mut row in p.rows_mut() {
                    let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    row.mapv_inplace(|v| (v - m).exp());
                    let z = row.sum();
                    row /= z;
                }
                p
            };
            let grown: Vec<(Tree, Vec<f64>, Vec<f64>)> = (0..cols)
                .into_par_iter()
                .map(|c| {
                    let target = if k == 2 { 1 } else { c };
                    let r: Vec<f64> = (0..n)
                        .map(|i| f64::from(u8::from(yi[i] == target)) - prob[[i, c]])
                        .collect();
                    let h: Vec<f64> = (0..n)
                        .map(|i| prob[[i, c]] * (1.0 - prob[[i, c]]))
                        .collect();
                    let scale = if k == 2 {
                        1.0
                    } else {
                        (k as f64 - 1.0) / k as f64
                    };
                    grow(
                        x,
                        &order,
                        &r,
                        &h,
                        scale,
                        cfg.depth,
                        stream_key(seed, Purpose::Trees, (stage * cols + c) as u64),
                    )
                })
                .collect();
            let mut stage_trees = Vec::with_capacity(cols);
            for (c, (tree, values, g)) in grown.into_iter().enumerate() {
                for i in 0..n {
                    raw[[i, c]] += cfg.learning_rate * values[i];
                }
                for f in 0..d {
                    gains[f] += g[f] / n as f64;
                }
                stage_trees.push(tree);
            }
            model.trees.push(stage_trees);
        }
        let total: f64 = gains.iter().sum();
        if total > 0.0 {
            model.importance = gains.iter().map(|g| g / total).collect();
        }
        model
    }

    pub fn predict(&self, x: ArrayView2<'_, f64>) -> Vec<usize> {
        x.rows()
            .into_iter()
            .map(|row| {
                let row = row.to_vec();
                let k = self.classes.len();
                if k < 2 {
                    return self.classes.labels.first().copied().unwrap_or(0);
                }
                let mut s = self.init.clone();
                for stage in &self.trees {
                    for (c, t) in stage.iter().enumerate() {
                        s[c] += self.learning_rate * t.predict(&row);
                    }
                }
                let c = if k == 2 {
                    usize::from(s[0] > 0.0)
                } else {
                    argmax(s.into_iter())
                };
                self.classes.labels[c]
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disentangle::classify::accuracy;

    #[test]
    fn boosting_learns_a_nonlinear_rule_and_credits_its_feature() {
        let mut g = SplitMix64::new(1, Purpose::Test, 0);
        let n = 600;
        let x = Array2::from_shape_simple_fn((n, 3), || g.uniform());
        // Class = which third of feature 1 the point falls in.
        let y: Vec<usize> = (0..n).map(|i| (x[[i, 1]] * 3.0) as usize).collect();
        let m = Gbt::fit(x.view(), &y, GbtConfig::default(), 0);
        assert!(accuracy(&m.predict(x.view()), &y) > 0.99);
        assert!(m.importance[1] > 0.95, "{:?}", m.importance);
        // Binary too.
        let yb: Vec<usize> = (0..n).map(|i| usize::from(x[[i, 2]] > 0.3)).collect();
        let mb = Gbt::fit(x.view(), &yb, GbtConfig::default(), 0);
        assert!(accuracy(&mb.predict(x.view()), &yb) > 0.99);
        assert!(mb.importance[2] > 0.95, "{:?}", mb.importance);
    }

    #[test]
    fn duplicated_features_share_importance() {
        let mut g = SplitMix64::new(2, Purpose::Test, 0);
        let n = 500;
        let base: Vec<f64> = (0..n).map(|_| g.below(5) as f64).collect();
        let x = Array2::from_shape_fn((n, 2), |(i, _)| base[i]);
        let y: Vec<usize> = base.iter().map(|v| *v as usize).collect();
        let m = Gbt::fit(x.view(), &y, GbtConfig::default(), 3);
        assert!((m.importance[0] - 0.5).abs() < 0.15, "{:?}", m.importance);
    }
}
