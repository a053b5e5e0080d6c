//! UMAP (McInnes, Healy & Melville 2018), following umap-learn: exact k
//! nearest neighbours, the fuzzy simplicial set (smooth k-NN distances, fuzzy
//! union), spectral initialisation, and SGD with negative sampling on the
//! curve 1 / (1 + a·d^(2b)) fitted to `min_dist` and `spread`.

use ndarray::{Array1, Array2, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Phase;
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
    progress: &mut dyn FnMut(Phase, usize, usize),
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
            progress(Phase::Neighbours, 0, 1);
            owned = crate::knn::knn_auto(x, k - 1, seed)?;
            progress(Phase::Neighbours, 1, 1);
            &owned
        }
    };
    progress(Phase::Affinities, 0, 1);
    let target = (k as f64).log2();
    let mean_all: f64 = nb.distances.iter().sum::<f64>() / nb.distances.len() as f64;
    // Each point's directed memberships, from its smooth k-NN distance.
    let directed: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|i| {
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
            d.iter()
                .map(|&v| {
                    let t = v - rho;
                    if t > 0.0 { (-t / sigma).exp() } else { 1.0 }
                })
                .collect()
        })
        .collect();
    // The fuzzy union w + w' − w·w' of the two directions of each pair, with
    // w the lower-to-higher index's: sort the directed entries by pair, then
    // merge each pair's one or two.
    let mut dir: Vec<(usize, usize, bool, f64)> = Vec::with_capacity(n * (k - 1));
    for (i, ws) in directed.iter().enumerate() {
        for (&j, &w) in nb.indices.row(i).iter().zip(ws) {
            if i != j {
                dir.push((i.min(j), i.max(j), i > j, w));
            }
        }
    }
    drop(directed);
    dir.par_sort_unstable_by(|p, q| (p.0, p.1, p.2).cmp(&(q.0, q.1, q.2)));
    dir.dedup_by(|p, q| (p.0, p.1, p.2) == (q.0, q.1, q.2));
    let mut edges: Vec<(usize, usize, f64)> = Vec::with_capacity(dir.len());
    let mut t = 0;
    while t < dir.len() {
        let (a, b, _, w) = dir[t];
        if t + 1 < dir.len() && (dir[t + 1].0, dir[t + 1].1) == (a, b) {
            // dir[t] is a → b (lower first), dir[t + 1] is b → a.
            let back = dir[t + 1].3;
            edges.push((a, b, w + back - w * back));
            t += 2;
        } else {
            edges.push((a, b, w));
            t += 1;
        }
    }
    progress(Phase::Affinities, 1, 1);
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
    // The symmetric operator as CSR, so each row gathers in parallel (and in
    // a fixed order, whatever the thread count).
    let mut start = vec![0usize; n + 1];
    for &(i, j, _) in edges {
        start[i + 1] += 1;
        start[j + 1] += 1;
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    let mut fill = start[..n].to_vec();
    let mut adj = vec![(0usize, 0.0f64); start[n]];
    for &(i, j, w) in edges {
        let c = 0.5 * w * inv_sqrt[i] * inv_sqrt[j];
        adj[fill[i]] = (j, c);
        fill[i] += 1;
        adj[fill[j]] = (i, c);
        fill[j] += 1;
    }
    let apply = |x: &Array2<f64>| -> Array2<f64> {
        let m = x.ncols();
        let xs = x.as_slice().expect("standard layout");
        let mut y = Array2::<f64>::zeros((n, m));
        y.as_slice_mut()
            .expect("standard layout")
            .par_chunks_mut(m)
            .enumerate()
            .for_each(|(i, out)| {
                for (o, v) in out.iter_mut().zip(&xs[i * m..(i + 1) * m]) {
                    *o = 0.5 * v;
                }
                for &(j, c) in &adj[start[i]..start[i + 1]] {
                    for (o, v) in out.iter_mut().zip(&xs[j * m..(j + 1) * m]) {
                        *o += c * v;
                    }
                }
            });
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

/// `x^b` in f32, as umap-learn's float32 SGD computes it: the gradient
/// coefficients need no more, and f32's `powf` is about twice as fast.
#[inline]
fn pow32(x: f64, b: f32) -> f64 {
    f64::from((x as f32).powf(b))
}

/// A draw from `0..n` by multiply-shift on 32 random bits (Lemire's
/// reduction without its rejection step: a bias below n / 2³² for the
/// negative samples, instead of a 64-bit division per draw).
#[inline]
fn below_fast(g: &mut Rng, n: usize) -> usize {
    (((g.next_u64() >> 32) * n as u64) >> 32) as usize
}

/// The low-dimensional similarity curve 1 / (1 + a·d^(2b)) and the
/// repulsion weight.
struct Curve {
    a: f64,
    b: f64,
    b32: f32,
    gamma: f64,
}

/// Each kept edge and when it, and its negative samples, are next due.
struct Schedule<'a> {
    edges: &'a [&'a (usize, usize, f64)],
    eps: &'a [f64],
    eps_neg: &'a [f64],
    next: &'a mut [f64],
    next_neg: &'a mut [f64],
}

/// One epoch of SGD at time `t` with step `alpha` over the edges due, in
/// order: the attraction along each edge (both directions, as umap-learn's
/// graph holds (i, j) and (j, i)) and the repulsion from the negative
/// samples due, gradients clipped at 4. `D` is the layout's dimension when
/// known at compile time (0: read `d`).
fn sgd_epoch<const D: usize>(
    yv: &mut [f64],
    d: usize,
    s: &mut Schedule<'_>,
    c: &Curve,
    t: f64,
    alpha: f64,
    g: &mut Rng,
) {
    let d = if D == 0 { d } else { D };
    let n = yv.len() / d;
    let clip = |v: f64| v.clamp(-4.0, 4.0);
    let (a, b) = (c.a, c.b);
    for (e, &&(i, j, _)) in s.edges.iter().enumerate() {
        if s.next[e] > t {
            continue;
        }
        let n_neg = ((t - s.next_neg[e]) / s.eps_neg[e]).floor().max(0.0);
        for (h, tl) in [(i, j), (j, i)] {
            let mut d2 = 0.0;
            for k in 0..d {
                let diff = yv[h * d + k] - yv[tl * d + k];
                d2 += diff * diff;
            }
            let coeff = if d2 > 0.0 {
                let pb = pow32(d2, c.b32);
                -2.0 * a * b * (pb / d2) / (a * pb + 1.0)
            } else {
                0.0
            };
            for k in 0..d {
                let diff = yv[h * d + k] - yv[tl * d + k];
                let gr = clip(coeff * diff) * alpha;
                yv[h * d + k] += gr;
                yv[tl * d + k] -= gr;
            }
            for _ in 0..n_neg as usize {
                let q = below_fast(g, n);
                if q == h {
                    continue;
                }
                let mut d2 = 0.0;
                for k in 0..d {
                    let diff = yv[h * d + k] - yv[q * d + k];
                    d2 += diff * diff;
                }
                let coeff = if d2 > 0.0 {
                    2.0 * c.gamma * b / ((0.001 + d2) * (a * pow32(d2, c.b32) + 1.0))
                } else {
                    0.0
                };
                for k in 0..d {
                    let diff = yv[h * d + k] - yv[q * d + k];
                    let gr = if coeff > 0.0 { clip(coeff * diff) } else { 4.0 };
                    yv[h * d + k] += gr * alpha;
                }
            }
        }
        s.next[e] += s.eps[e];
        s.next_neg[e] += n_neg * s.eps_neg[e];
    }
}

impl Umap {
    /// Fits a map of `x` (N × d); `progress` is called with each [`Phase`]
    /// as it starts and ends, and every 10 epochs of the optimisation.
    pub fn fit(
        x: ArrayView2<'_, f64>,
        p: &UmapParams,
        progress: &mut dyn FnMut(Phase, usize, usize),
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
        progress: &mut dyn FnMut(Phase, usize, usize),
    ) -> Result<Self> {
        crate::check_points(x)?;
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
        let edges = fuzzy_graph(x, p.n_neighbors, p.seed, neighbours, progress)?;
        let epochs = p.epochs.unwrap_or(if n <= 10_000 { 500 } else { 200 });
        if epochs == 0 {
            return Err(param("epochs", "must be at least 1"));
        }
        // Initial layout, scaled to [0, 10] per axis.
        progress(Phase::Initialisation, 0, 1);
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
        progress(Phase::Initialisation, 1, 1);
        progress(Phase::Optimisation, 0, epochs);
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
        let curve = Curve {
            a,
            b,
            b32: b as f32,
            gamma: p.repulsion_strength,
        };
        let mut yv = y.into_raw_vec_and_offset().0;
        let mut sched = Schedule {
            edges: &kept,
            eps: &eps,
            eps_neg: &eps_neg,
            next: &mut next,
            next_neg: &mut next_neg,
        };
        for epoch in 0..epochs {
            let alpha = p.learning_rate * (1.0 - epoch as f64 / epochs as f64);
            let t = epoch as f64;
            // The 2-d and 3-d layouts get loops the compiler unrolls.
            match d {
                2 => sgd_epoch::<2>(&mut yv, d, &mut sched, &curve, t, alpha, &mut g),
                3 => sgd_epoch::<3>(&mut yv, d, &mut sched, &curve, t, alpha, &mut g),
                _ => sgd_epoch::<0>(&mut yv, d, &mut sched, &curve, t, alpha, &mut g),
            }
            if (epoch + 1) % 10 == 0 || epoch + 1 == epochs {
                progress(Phase::Optimisation, epoch + 1, epochs);
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
            &mut |_, _, _| {},
        )
        .unwrap();
        let labels: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
        assert!(crate::knn_accuracy(u.embedding.view(), &labels, 10).unwrap() > 0.99);
        assert!(u.embedding.iter().all(|v| v.is_finite()));
    }
}
