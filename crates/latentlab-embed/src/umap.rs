//! UMAP (McInnes, Healy & Melville 2018), following umap-learn: exact k
//! nearest neighbours, the fuzzy simplicial set (smooth k-NN distances, fuzzy
//! union), spectral initialisation, and SGD with negative sampling on the
//! curve 1 / (1 + a·d^(2b)) fitted to `min_dist` and `spread`.

use ndarray::{Array1, Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::error::{Result, param};
use crate::linalg::orthonormalise;
use latentlab_rng::{Purpose, SplitMix64 as Rng};

/// UMAP settings (umap-learn's defaults).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UmapParams {
    /// Neighbourhood size, the point itself included (umap-learn counts it).
    pub n_neighbors: usize,
    /// Output dimension.
    pub dim: usize,
    /// Smallest distance between embedded points.
    pub min_dist: f64,
    /// Scale of embedded distances.
    pub spread: f64,
    /// Epochs; `None` for 500 up to 10,000 points, 200 beyond.
    pub epochs: Option<usize>,
    /// Negative samples per positive one.
    pub negative_sample_rate: usize,
    /// Initial learning rate.
    pub learning_rate: f64,
    /// Repulsion weight.
    pub repulsion_strength: f64,
    /// Seed.
    pub seed: u64,
}

impl Default for UmapParams {
    fn default() -> Self {
        Self {
            n_neighbors: 15,
            dim: 2,
            min_dist: 0.1,
            spread: 1.0,
            epochs: None,
            negative_sample_rate: 5,
            learning_rate: 1.0,
            repulsion_strength: 1.0,
            seed: 0,
        }
    }
}

/// A fitted UMAP map.
#[derive(Clone, Debug)]
pub struct Umap {
    /// N × dim coordinates.
    pub embedding: Array2<f64>,
    /// The curve's a and b.
    pub ab: (f64, f64),
}

/// Fits a and b of 1 / (1 + a x^(2b)) to the target membership curve by
/// Gauss–Newton (umap-learn uses scipy's curve_fit on the same 300 points).
pub fn find_ab(spread: f64, min_dist: f64) -> (f64, f64) {
    let xs: Vec<f64> = (0..300).map(|i| 3.0 * spread * i as f64 / 299.0).collect();
    let ys: Vec<f64> = xs
        .iter()
        .map(|&x| {
            if x < min_dist {
                1.0
            } else {
                (-(x - min_dist) / spread).exp()
            }
        })
        .collect();
    let sse = |a: f64, b: f64| -> f64 {
        xs.iter()
            .zip(&ys)
            .map(|(&x, &y)| {
                let f = 1.0 / (1.0 + a * x.powf(2.0 * b));
                (f - y) * (f - y)
            })
            .sum()
    };
    let (mut a, mut b) = (1.0f64, 1.0f64);
    let mut lambda = 1e-3;
    for _ in 0..500 {
        let (mut jtj, mut jtr) = ([[0.0f64; 2]; 2], [0.0f64; 2]);
        for (&x, &y) in xs.iter().zip(&ys) {
            if x == 0.0 {
                continue;
            }
            let p = x.powf(2.0 * b);
            let den = 1.0 + a * p;
            let f = 1.0 / den;
            let r = f - y;
            let da = -p / (den * den);
            let db = -a * p * 2.0 * x.ln() / (den * den);
            jtj[0][0] += da * da;
            jtj[0][1] += da * db;
            jtj[1][1] += db * db;
            jtr[0] += da * r;
            jtr[1] += db * r;
        }
        let m00 = jtj[0][0] * (1.0 + lambda);
        let m11 = jtj[1][1] * (1.0 + lambda);
        let det = m00 * m11 - jtj[0][1] * jtj[0][1];
        if det.abs() < 1e-300 {
            break;
        }
        let sa = -(m11 * jtr[0] - jtj[0][1] * jtr[1]) / det;
        let sb = -(m00 * jtr[1] - jtj[0][1] * jtr[0]) / det;
        let (na, nb) = (a + sa, b + sb);
        if na > 0.0 && nb > 0.0 && sse(na, nb) < sse(a, b) {
            a = na;
            b = nb;
            lambda *= 0.3;
            if sa.abs() + sb.abs() < 1e-12 {
                break;
            }
        } else {
            lambda *= 10.0;
            if lambda > 1e12 {
                break;
            }
        }
    }
    (a, b)
}

/// The fuzzy simplicial set as a symmetric edge list (i < j, weight).
fn fuzzy_graph(
    x: ArrayView2<'_, f64>,
    k: usize,
    seed: u64,
    given: Option<&crate::Neighbours>,
) -> Result<Vec<(usize, usize, f64)>> {
    let n = x.nrows();
    let owned;
    let nb = match given {
        Some(nb) if nb.indices.nrows() == n && nb.indices.ncols() >= k - 1 => nb,
        Some(nb) => {
            return Err(crate::EmbedError::Input(format!(
                "the given neighbours are {}×{}; UMAP needs {n}×{}",
                nb.indices.nrows(),
                nb.indices.ncols(),
                k - 1
            )));
        }
        None => {
            owned = crate::knn::knn_auto(x, k - 1, seed)?;
            &owned
        }
    };
    let target = (k as f64).log2();
    let mean_all: f64 = nb.distances.iter().sum::<f64>() / nb.distances.len() as f64;
    let mut dir: std::collections::HashMap<(usize, usize), f64> = Default::default();
    for i in 0..n {
        let d = nb.distances.row(i);
        let d = d.slice(ndarray::s![..k - 1]);
        let rho = d.iter().copied().find(|v| *v > 0.0).unwrap_or(0.0);
        let (mut lo, mut hi, mut mid) = (0.0f64, f64::INFINITY, 1.0f64);
        for _ in 0..64 {
            // The point itself counts with membership 1, as umap-learn's
            // neighbour list includes it.
            let psum: f64 = 1.0
                + d.iter()
                    .map(|&v| {
                        let t = v - rho;
                        if t > 0.0 { (-t / mid).exp() } else { 1.0 }
                    })
                    .sum::<f64>();
            if (psum - target).abs() < 1e-5 {
                break;
            }
            if psum > target {
                hi = mid;
                mid = 0.5 * (lo + hi);
            } else {
                lo = mid;
                mid = if hi.is_finite() {
                    0.5 * (lo + hi)
                } else {
                    mid * 2.0
                };
            }
        }
        let mean_i = d.iter().sum::<f64>() / d.len() as f64;
        let floor = 1e-3 * if rho > 0.0 { mean_i } else { mean_all };
        let sigma = mid.max(floor);
        for (c, &j) in nb.indices.row(i).iter().take(k - 1).enumerate() {
            let t = d[c] - rho;
            let w = if t > 0.0 { (-t / sigma).exp() } else { 1.0 };
            dir.insert((i, j), w);
        }
    }
    let mut edges: Vec<(usize, usize, f64)> = Vec::new();
    for (&(i, j), &w) in &dir {
        let back = dir.get(&(j, i)).copied().unwrap_or(0.0);
        if i < j || back == 0.0 {
            let u = w + back - w * back;
            let (a, b) = if i < j { (i, j) } else { (j, i) };
            edges.push((a, b, u));
        }
    }
    edges.sort_by(|p, q| p.0.cmp(&q.0).then(p.1.cmp(&q.1)));
    edges.dedup_by(|p, q| p.0 == q.0 && p.1 == q.1);
    Ok(edges)
}

/// Spectral initialisation: the eigenvectors of the normalised Laplacian
/// with the smallest non-zero eigenvalues, by subspace iteration on
/// (I + D^-½ W D^-½) / 2 with the trivial vector projected out.
fn spectral(n: usize, edges: &[(usize, usize, f64)], dim: usize, seed: u64) -> Array2<f64> {
    let mut deg = vec![0.0; n];
    for &(i, j, w) in edges {
        deg[i] += w;
        deg[j] += w;
    }
    let inv_sqrt: Vec<f64> = deg
        .iter()
        .map(|d| if *d > 0.0 { 1.0 / d.sqrt() } else { 0.0 })
        .collect();
    let trivial = {
        let v: Array1<f64> = deg.iter().map(|d| d.sqrt()).collect();
        let nrm = v.dot(&v).sqrt().max(f64::MIN_POSITIVE);
        v / nrm
    };
    let apply = |x: &Array2<f64>| -> Array2<f64> {
        let mut y = x * 0.5;
        for &(i, j, w) in edges {
            let c = 0.5 * w * inv_sqrt[i] * inv_sqrt[j];
            for col in 0..x.ncols() {
                y[[i, col]] += c * x[[j, col]];
                y[[j, col]] += c * x[[i, col]];
            }
        }
        y
    };
    let m = dim + 2;
    let mut g = Rng::new(seed, Purpose::Embed, 4);
    let mut v = Array2::from_shape_simple_fn((n, m), || g.normal());
    for it in 0..400 {
        v = apply(&v);
        for mut c in v.columns_mut() {
            let d = c.dot(&trivial);
            c.scaled_add(-d, &trivial);
        }
        if it % 5 == 4 || it == 399 {
            orthonormalise(&mut v);
        }
    }
    orthonormalise(&mut v);
    // Rayleigh–Ritz to order the block.
    let av = apply(&v);
    let h = v.t().dot(&av);
    let (_, u) = crate::linalg::symmetric_eigen(&h);
    let ritz = v.dot(&u);
    ritz.slice(ndarray::s![.., ..dim]).to_owned()
}

impl Umap {
    /// Fits a map of `x` (N × d); `progress` gets (epoch, total).
    pub fn fit(
        x: ArrayView2<'_, f64>,
        p: &UmapParams,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        Self::fit_with_neighbours(x, None, p, progress)
    }

    /// [`Umap::fit`] with neighbours computed elsewhere (e.g. on the GPU by
    /// [`crate::knn_on`]); they must hold at least `n_neighbors − 1` other
    /// points per point.
    pub fn fit_with_neighbours(
        x: ArrayView2<'_, f64>,
        neighbours: Option<&crate::Neighbours>,
        p: &UmapParams,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        crate::check_input(x, 3)?;
        let n = x.nrows();
        if p.n_neighbors < 2 || p.n_neighbors > n {
            return Err(param(
                "n_neighbors",
                format!("{} is not in 2..={n} (the number of points)", p.n_neighbors),
            ));
        }
        if p.dim == 0 {
            return Err(param("dim", "must be at least 1"));
        }
        if !(p.min_dist >= 0.0 && p.spread > 0.0 && p.min_dist <= p.spread) {
            return Err(param(
                "min_dist",
                "needs 0 ≤ min_dist ≤ spread and spread > 0",
            ));
        }
        if !(p.learning_rate > 0.0 && p.learning_rate.is_finite()) {
            return Err(param("learning_rate", "must be positive"));
        }
        let (a, b) = find_ab(p.spread, p.min_dist);
        let edges = fuzzy_graph(x, p.n_neighbors, p.seed, neighbours)?;
        let epochs = p.epochs.unwrap_or(if n <= 10_000 { 500 } else { 200 });
        if epochs == 0 {
            return Err(param("epochs", "must be at least 1"));
        }
        // Initial layout, scaled to [0, 10] per axis.
        let mut y = spectral(n, &edges, p.dim, p.seed);
        let mut g = Rng::new(p.seed, Purpose::Embed, 5);
        let maxabs = y
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()))
            .max(f64::MIN_POSITIVE);
        y.mapv_inplace(|v| v * 10.0 / maxabs);
        for v in y.iter_mut() {
            *v += 1e-4 * g.normal();
        }
        for mut c in y.columns_mut() {
            let lo = c.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = c.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let span = (hi - lo).max(f64::MIN_POSITIVE);
            c.mapv_inplace(|v| 10.0 * (v - lo) / span);
        }
        let wmax = edges.iter().map(|e| e.2).fold(0.0, f64::max);
        let kept: Vec<&(usize, usize, f64)> = edges
            .iter()
            .filter(|e| e.2 >= wmax / epochs as f64)
            .collect();
        let eps: Vec<f64> = kept.iter().map(|e| wmax / e.2).collect();
        let eps_neg: Vec<f64> = eps
            .iter()
            .map(|e| e / p.negative_sample_rate as f64)
            .collect();
        let mut next: Vec<f64> = eps.clone();
        let mut next_neg: Vec<f64> = eps_neg.clone();
        let d = p.dim;
        let clip = |v: f64| v.clamp(-4.0, 4.0);
        let mut yv = y.into_raw_vec_and_offset().0;
        for epoch in 0..epochs {
            let alpha = p.learning_rate * (1.0 - epoch as f64 / epochs as f64);
            let t = epoch as f64;
            for (e, &&(i, j, _)) in kept.iter().enumerate() {
                if next[e] > t {
                    continue;
                }
                // Both directions of the symmetric edge, as umap-learn's
                // graph holds (i, j) and (j, i).
                for (h, tl) in [(i, j), (j, i)] {
                    let mut d2 = 0.0;
                    for c in 0..d {
                        let diff = yv[h * d + c] - yv[tl * d + c];
                        d2 += diff * diff;
                    }
                    let coeff = if d2 > 0.0 {
                        -2.0 * a * b * d2.powf(b - 1.0) / (a * d2.powf(b) + 1.0)
                    } else {
                        0.0
                    };
                    for c in 0..d {
                        let diff = yv[h * d + c] - yv[tl * d + c];
                        let gr = clip(coeff * diff) * alpha;
                        yv[h * d + c] += gr;
                        yv[tl * d + c] -= gr;
                    }
                    let n_neg = ((t - next_neg[e]) / eps_neg[e]).floor().max(0.0) as usize;
                    for _ in 0..n_neg {
                        let k = (g.next_u64() % n as u64) as usize;
                        if k == h {
                            continue;
                        }
                        let mut d2 = 0.0;
                        for c in 0..d {
                            let diff = yv[h * d + c] - yv[k * d + c];
                            d2 += diff * diff;
                        }
                        let coeff = if d2 > 0.0 {
                            2.0 * p.repulsion_strength * b / ((0.001 + d2) * (a * d2.powf(b) + 1.0))
                        } else {
                            0.0
                        };
                        for c in 0..d {
                            let diff = yv[h * d + c] - yv[k * d + c];
                            let gr = if coeff > 0.0 { clip(coeff * diff) } else { 4.0 };
                            yv[h * d + c] += gr * alpha;
                        }
                    }
                }
                next[e] += eps[e];
                let n_neg = ((t - next_neg[e]) / eps_neg[e]).floor().max(0.0);
                next_neg[e] += n_neg * eps_neg[e];
            }
            if (epoch + 1) % 50 == 0 || epoch + 1 == epochs {
                progress(epoch + 1, epochs);
            }
        }
        let embedding = Array2::from_shape_vec((n, d), yv).expect("n × d");
        Ok(Self {
            embedding,
            ab: (a, b),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_matches_umap_learns_defaults() {
        // umap-learn: find_ab_params(1.0, 0.1) = (1.5769, 0.8951).
        let (a, b) = find_ab(1.0, 0.1);
        assert!(
            (a - 1.577).abs() < 0.01 && (b - 0.895).abs() < 0.005,
            "{a} {b}"
        );
    }

    #[test]
    fn separated_clusters_stay_separated() {
        let mut g = Rng::new(2, Purpose::Test, 0);
        let n = 300;
        let x = Array2::from_shape_fn((n, 5), |(i, _)| (i % 3) as f64 * 20.0 + g.normal());
        let u = Umap::fit(
            x.view(),
            &UmapParams {
                epochs: Some(100),
                ..UmapParams::default()
            },
            &mut |_, _| {},
        )
        .unwrap();
        let labels: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
        assert!(crate::knn_accuracy(u.embedding.view(), &labels, 10).unwrap() > 0.99);
        assert!(u.embedding.iter().all(|v| v.is_finite()));
    }
}
