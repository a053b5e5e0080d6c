//! Exact k-nearest neighbours through blocked matrix products.

use ndarray::{Array1, Array2, ArrayView2};
use rayon::prelude::*;

use latentlab_rng::{Purpose, SplitMix64 as Rng};

use crate::error::{Result, param};

/// Each point's k nearest other points.
#[derive(Clone, Debug)]
pub struct Neighbours {
    /// N × k indices, nearest first.
    pub indices: Array2<usize>,
    /// N × k Euclidean distances, ascending.
    pub distances: Array2<f64>,
}

const BLOCK: usize = 256;

/// The `k` points nearest to `i` among `0..n` (itself excluded) from
/// squared distances `d2(j)` (negative rounding clamped to 0): indices and
/// Euclidean distances, ascending, ties by index.
fn nearest(i: usize, n: usize, k: usize, d2: impl Fn(usize) -> f64) -> (Vec<usize>, Vec<f64>) {
    let mut cand: Vec<(f64, usize)> = (0..n)
        .filter(|&j| j != i)
        .map(|j| (d2(j).max(0.0), j))
        .collect();
    cand.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    cand.truncate(k);
    cand.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    (
        cand.iter().map(|c| c.1).collect(),
        cand.iter().map(|c| c.0.sqrt()).collect(),
    )
}

/// Checks the points and `k` for every k-NN search; returns the number of
/// points.
fn check_neighbours(x: ArrayView2<'_, f64>, k: usize) -> Result<usize> {
    crate::check_input(x, 2)?;
    let n = x.nrows();
    if k == 0 || k >= n {
        return Err(param(
            "neighbours",
            format!("{k} is not in 1..{n} (it must be below the number of points)"),
        ));
    }
    Ok(n)
}

/// Exact k nearest neighbours of every row of `x` among the other rows.
pub fn knn(x: ArrayView2<'_, f64>, k: usize) -> Result<Neighbours> {
    let n = check_neighbours(x, k)?;
    let norms: Array1<f64> = x.rows().into_iter().map(|r| r.dot(&r)).collect();
    let rows: Vec<(Vec<usize>, Vec<f64>)> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .flat_map_iter(|b| {
            let lo = b * BLOCK;
            let hi = (lo + BLOCK).min(n);
            let g = x.slice(ndarray::s![lo..hi, ..]).dot(&x.t());
            let norms = &norms;
            (lo..hi).map(move |i| {
                let row = g.row(i - lo);
                nearest(i, n, k, |j| norms[i] + norms[j] - 2.0 * row[j])
            })
        })
        .collect();
    let mut indices = Array2::<usize>::zeros((n, k));
    let mut distances = Array2::<f64>::zeros((n, k));
    for (i, (idx, dist)) in rows.into_iter().enumerate() {
        indices.row_mut(i).assign(&Array1::from(idx));
        distances.row_mut(i).assign(&Array1::from(dist));
    }
    Ok(Neighbours { indices, distances })
}

/// Rows of one Gram block on a backend.
const DEVICE_BLOCK: usize = 2048;

/// Exact k nearest neighbours with the Gram blocks `X_b · Xᵀ` computed by
/// `backend` (the GPU through `Wgpu`, in f32), distances assembled and the
/// k smallest selected on the host. Agrees with [`knn`] up to ties that f32
/// rounding reorders.
pub fn knn_on<B: latentlab_tensor::Backend>(
    backend: &B,
    x: ArrayView2<'_, f64>,
    k: usize,
) -> Result<Neighbours> {
    use latentlab_tensor::{Shape, Transpose};
    let (n, d) = (check_neighbours(x, k)?, x.ncols());
    let flat: Vec<f32> = x.iter().map(|v| *v as f32).collect();
    let all = backend.upload(&flat, Shape::new(n, d))?;
    let norms: Vec<f64> = flat
        .chunks_exact(d)
        .map(|r| r.iter().map(|v| f64::from(*v) * f64::from(*v)).sum())
        .collect();
    let mut indices = Array2::<usize>::zeros((n, k));
    let mut distances = Array2::<f64>::zeros((n, k));
    let mut lo = 0;
    while lo < n {
        let hi = (lo + DEVICE_BLOCK).min(n);
        let block = backend.upload(&flat[lo * d..hi * d], Shape::new(hi - lo, d))?;
        let g = backend.matmul(&block, Transpose::No, &all, Transpose::Yes)?;
        let g = backend.download(&g)?;
        let rows: Vec<(Vec<usize>, Vec<f64>)> = (lo..hi)
            .into_par_iter()
            .map(|i| {
                let row = &g[(i - lo) * n..(i - lo + 1) * n];
                nearest(i, n, k, |j| norms[i] + norms[j] - 2.0 * f64::from(row[j]))
            })
            .collect();
        for (r, (idx, dist)) in rows.into_iter().enumerate() {
            indices.row_mut(lo + r).assign(&Array1::from(idx));
            distances.row_mut(lo + r).assign(&Array1::from(dist));
        }
        lo = hi;
    }
    Ok(Neighbours { indices, distances })
}

/// Above this many points the maps use [`knn_approx`] instead of [`knn`].
pub const EXACT_LIMIT: usize = 20_000;

/// Exact neighbours up to [`EXACT_LIMIT`] points, NN-descent beyond.
pub fn knn_auto(x: ArrayView2<'_, f64>, k: usize, seed: u64) -> Result<Neighbours> {
    if x.nrows() <= EXACT_LIMIT {
        knn(x, k)
    } else {
        knn_approx(x, k, seed)
    }
}

fn dist2(x: &ArrayView2<'_, f64>, a: usize, b: usize) -> f64 {
    x.row(a)
        .iter()
        .zip(x.row(b).iter())
        .map(|(p, q)| (p - q) * (p - q))
        .sum()
}

/// A point's current neighbour list: (squared distance, index, new?),
/// ascending, at most k long.
struct Heap {
    items: Vec<(f64, usize, bool)>,
}

impl Heap {
    fn push(&mut self, d: f64, j: usize, k: usize) -> bool {
        if self.items.len() == k && d >= self.items[k - 1].0 {
            return false;
        }
        if self.items.iter().any(|it| it.1 == j) {
            return false;
        }
        let pos = self
            .items
            .partition_point(|it| it.0 < d || (it.0 == d && it.1 < j));
        self.items.insert(pos, (d, j, true));
        self.items.truncate(k);
        true
    }
}

/// Approximate k nearest neighbours by NN-descent (Dong, Moses & Li 2011):
/// random initial lists improved by local joins of neighbours' neighbours
/// (forward and reverse, new against new and old) until fewer than 0.1 % of
/// the entries change. Sequential and seeded. Typical recall on latent
/// spaces is above 0.95 (tested against [`knn`]).
pub fn knn_approx(x: ArrayView2<'_, f64>, k: usize, seed: u64) -> Result<Neighbours> {
    let n = check_neighbours(x, k)?;
    let mut g = Rng::new(seed, Purpose::Embed, 1);
    let mut heaps: Vec<Heap> = (0..n)
        .map(|_| Heap {
            items: Vec::with_capacity(k + 1),
        })
        .collect();
    for (i, h) in heaps.iter_mut().enumerate() {
        while h.items.len() < k {
            let j = (g.next_u64() % n as u64) as usize;
            if j != i {
                h.push(dist2(&x, i, j), j, k);
            }
        }
    }
    for _ in 0..30 {
        // Forward and reverse candidate lists, split by the "new" flag.
        let mut new_c: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut old_c: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, h) in heaps.iter_mut().enumerate() {
            for it in h.items.iter_mut() {
                if it.2 {
                    new_c[i].push(it.1);
                    new_c[it.1].push(i);
                    it.2 = false;
                } else {
                    old_c[i].push(it.1);
                    old_c[it.1].push(i);
                }
            }
        }
        let mut updates = 0usize;
        for u in 0..n {
            let mut nu = std::mem::take(&mut new_c[u]);
            let mut ou = std::mem::take(&mut old_c[u]);
            nu.sort_unstable();
            nu.dedup();
            ou.sort_unstable();
            ou.dedup();
            // Cap the join at 2k candidates each, sampled.
            for list in [&mut nu, &mut ou] {
                while list.len() > 2 * k {
                    let r = (g.next_u64() % list.len() as u64) as usize;
                    list.swap_remove(r);
                }
            }
            for (a, &p) in nu.iter().enumerate() {
                for &q in nu[a + 1..].iter().chain(ou.iter()) {
                    if p == q {
                        continue;
                    }
                    let d = dist2(&x, p, q);
                    updates += usize::from(heaps[p].push(d, q, k));
                    updates += usize::from(heaps[q].push(d, p, k));
                }
            }
        }
        if (updates as f64) < 0.001 * (n * k) as f64 {
            break;
        }
    }
    let mut indices = Array2::<usize>::zeros((n, k));
    let mut distances = Array2::<f64>::zeros((n, k));
    for (i, h) in heaps.iter().enumerate() {
        for (c, it) in h.items.iter().enumerate() {
            indices[[i, c]] = it.1;
            distances[[i, c]] = it.0.sqrt();
        }
    }
    Ok(Neighbours { indices, distances })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend_agrees<B: latentlab_tensor::Backend>(b: &B) {
        let mut g = Rng::new(8, Purpose::Test, 0);
        let x = Array2::from_shape_simple_fn((2500, 7), || g.normal());
        let exact = knn(x.view(), 10).unwrap();
        let dev = knn_on(b, x.view(), 10).unwrap();
        let mut same = 0;
        for i in 0..2500 {
            for c in 0..10 {
                same += usize::from(exact.indices[[i, c]] == dev.indices[[i, c]]);
                let (e, v) = (exact.distances[[i, c]], dev.distances[[i, c]]);
                assert!((e - v).abs() < 1e-4 * (1.0 + e), "{}: {e} vs {v}", b.name());
            }
        }
        assert!(
            same as f64 > 0.99 * 25_000.0,
            "{}: {same} of 25000 in the same place",
            b.name()
        );
    }

    #[test]
    fn knn_on_every_backend_matches_the_f64_neighbours() {
        backend_agrees(&latentlab_tensor::Cpu::new());
        if let Some(gpu) = latentlab_tensor::conformance::test_gpu() {
            backend_agrees(&gpu);
        }
    }

    #[test]
    fn nn_descent_recalls_the_exact_neighbours() {
        let mut g = Rng::new(4, Purpose::Test, 0);
        // Clustered 10-d data, like latent means.
        let centres = Array2::from_shape_simple_fn((20, 10), || 4.0 * g.normal());
        let x = Array2::from_shape_fn((3000, 10), |(i, j)| centres[[i % 20, j]] + g.normal());
        let exact = knn(x.view(), 15).unwrap();
        let approx = knn_approx(x.view(), 15, 0).unwrap();
        let mut hits = 0;
        for i in 0..3000 {
            let e: std::collections::HashSet<usize> =
                exact.indices.row(i).iter().copied().collect();
            hits += approx
                .indices
                .row(i)
                .iter()
                .filter(|j| e.contains(j))
                .count();
        }
        let recall = hits as f64 / (3000.0 * 15.0);
        assert!(recall > 0.95, "recall {recall}");
        // Distances ascend and match the indices.
        for i in 0..3000 {
            let d = approx.distances.row(i);
            assert!(d.windows(2).into_iter().all(|w| w[0] <= w[1]));
            let j = approx.indices[[i, 0]];
            assert!((d[0] - dist2(&x.view(), i, j).sqrt()).abs() < 1e-12);
        }
    }
}
