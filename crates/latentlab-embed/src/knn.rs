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

/// Squared Euclidean distance between two rows.
#[inline]
fn sq(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (p, q) in ca.zip(cb) {
        for l in 0..4 {
            let t = p[l] - q[l];
            acc[l] += t * t;
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (p, q) in ra.iter().zip(rb) {
        s += (p - q) * (p - q);
    }
    s
}

/// The points in row-major order, borrowed when `x` already is.
fn rows_of<'a>(x: &'a ArrayView2<'_, f64>) -> std::borrow::Cow<'a, [f64]> {
    match x.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(x.iter().copied().collect()),
    }
}

/// One random-projection tree's leaves: `perm` holds every point once, leaf
/// `l` is `perm[bounds[l]..bounds[l + 1]]`, and `leaf_of[i]` is point i's.
struct Leaves {
    perm: Vec<u32>,
    bounds: Vec<u32>,
    leaf_of: Vec<u32>,
}

/// A random-projection tree (Dasgupta & Freund 2008, as Annoy and
/// pynndescent build them): each node splits its points by the hyperplane
/// halfway between two of them, picked at random, until at most `leaf`
/// remain. A split that leaves a side empty (duplicate points) halves the
/// node at random instead.
fn rp_tree(xs: &[f64], d: usize, n: usize, leaf: usize, mut g: Rng) -> Leaves {
    let mut perm: Vec<u32> = (0..n as u32).collect();
    let mut stack = vec![(0usize, n)];
    let mut ranges = Vec::new();
    let row = |i: u32| &xs[i as usize * d..(i as usize + 1) * d];
    let mut normal = vec![0.0f64; d];
    while let Some((lo, hi)) = stack.pop() {
        let len = hi - lo;
        if len <= leaf {
            ranges.push((lo, hi));
            continue;
        }
        let a = perm[lo + g.below(len as u64) as usize];
        let mut b = perm[lo + g.below(len as u64) as usize];
        for _ in 0..8 {
            if b != a && sq(row(a), row(b)) > 0.0 {
                break;
            }
            b = perm[lo + g.below(len as u64) as usize];
        }
        let (ra, rb) = (row(a), row(b));
        let mut offset = 0.0;
        for c in 0..d {
            normal[c] = ra[c] - rb[c];
            offset += normal[c] * 0.5 * (ra[c] + rb[c]);
        }
        // Partition perm[lo..hi] by the side of the hyperplane.
        let mut mid = lo;
        for t in lo..hi {
            let p = row(perm[t]);
            let margin: f64 = normal.iter().zip(p).map(|(u, v)| u * v).sum::<f64>() - offset;
            let left = if margin == 0.0 {
                g.next_u64() & 1 == 0
            } else {
                margin > 0.0
            };
            if left {
                perm.swap(mid, t);
                mid += 1;
            }
        }
        if mid == lo || mid == hi {
            g.shuffle(&mut perm[lo..hi]);
            mid = lo + len / 2;
        }
        stack.push((mid, hi));
        stack.push((lo, mid));
    }
    ranges.sort_unstable();
    let mut bounds = Vec::with_capacity(ranges.len() + 1);
    let mut leaf_of = vec![0u32; n];
    bounds.push(0);
    for (l, &(lo, hi)) in ranges.iter().enumerate() {
        for &p in &perm[lo..hi] {
            leaf_of[p as usize] = l as u32;
        }
        bounds.push(hi as u32);
    }
    Leaves {
        perm,
        bounds,
        leaf_of,
    }
}

/// The k nearest of `cand` (indices other than `i`, possibly repeated) to
/// point `i`: sorted by (distance², index), duplicates dropped.
fn best_of(xs: &[f64], d: usize, i: usize, k: usize, cand: &mut Vec<u32>) -> (Vec<u32>, Vec<f64>) {
    cand.sort_unstable();
    cand.dedup();
    let xi = &xs[i * d..(i + 1) * d];
    let mut scored: Vec<(f64, u32)> = cand
        .iter()
        .filter(|&&j| j as usize != i)
        .map(|&j| (sq(xi, &xs[j as usize * d..(j as usize + 1) * d]), j))
        .collect();
    let by = |a: &(f64, u32), b: &(f64, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    if scored.len() > k {
        scored.select_nth_unstable_by(k - 1, by);
        scored.truncate(k);
    }
    scored.sort_unstable_by(by);
    scored.into_iter().map(|(d2, j)| (j, d2)).unzip()
}

/// The shortest list [`knn_approx`] searches with.
const MIN_SEARCH: usize = 30;
/// How many of each neighbour's (and reverse neighbour's) nearest a round
/// of [`knn_approx`] tries: on 60,000 posterior samples of mnist-10k, 20
/// gave t-SNE's 90-neighbour lists a recall of 0.88, 30 0.96 and 40 0.98.
const EXPLORE: usize = 40;

/// Approximate k nearest neighbours, as pynndescent finds them: a forest of
/// random-projection trees gives every point the members of its leaves as
/// candidates, then rounds of neighbour-of-neighbour search (NN-descent,
/// Dong, Moses & Li 2011: each point tries its neighbours' and reverse
/// neighbours' nearest) refine the lists until fewer than 0.1 % of the
/// entries change. Every step reads the previous round's lists only, so the
/// result depends on the seed and not on the thread count. Recall against
/// [`knn`] is above 0.95 on latent spaces ([`recall`] measures it).
pub fn knn_approx(x: ArrayView2<'_, f64>, k_out: usize, seed: u64) -> Result<Neighbours> {
    let n = check_neighbours(x, k_out)?;
    // Lists shorter than 30 are searched at 30 and cut: short lists trap
    // NN-descent in local optima (recall 0.90 against 0.99 for k = 14 on
    // 60,000 posterior samples of mnist-10k).
    let k = k_out.max(MIN_SEARCH.min(n - 1));
    let d = x.ncols();
    let xs = rows_of(&x);
    let xs: &[f64] = &xs;
    let trees = (4.0 + (n as f64).sqrt() / 50.0).round().clamp(4.0, 16.0) as usize;
    let leaf = (k + 1).clamp(16, 128);
    let forest: Vec<Leaves> = (0..trees)
        .into_par_iter()
        .map(|t| {
            rp_tree(
                xs,
                d,
                n,
                leaf,
                Rng::new(seed, Purpose::Embed, 100 + t as u64),
            )
        })
        .collect();
    let mut lists: Vec<(Vec<u32>, Vec<f64>)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut cand = Vec::with_capacity(trees * leaf);
            for tree in &forest {
                let l = tree.leaf_of[i] as usize;
                let (lo, hi) = (tree.bounds[l] as usize, tree.bounds[l + 1] as usize);
                cand.extend_from_slice(&tree.perm[lo..hi]);
            }
            // Too few candidates (small leaves): fill with seeded random points.
            let mut g = Rng::new(seed, Purpose::Embed, (1 << 32) | i as u64);
            let mut tries = 0;
            while cand.len() < 2 * k + 2 && tries < 4 * k + 8 {
                cand.push(g.below(n as u64) as u32);
                tries += 1;
            }
            let mut out = best_of(xs, d, i, k, &mut cand);
            // Still short only when N is tiny: take every other point.
            if out.0.len() < k {
                cand.clear();
                cand.extend(0..n as u32);
                out = best_of(xs, d, i, k, &mut cand);
            }
            out
        })
        .collect();
    drop(forest);
    // Neighbour-of-neighbour rounds over the m nearest of each list.
    let m = k.min(EXPLORE);
    let mut changed = vec![true; n];
    for _ in 0..12 {
        let mut reverse: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (i, (idx, _)) in lists.iter().enumerate() {
            for &j in idx.iter().take(m) {
                if reverse[j as usize].len() < m {
                    reverse[j as usize].push(i as u32);
                }
            }
        }
        let next: Vec<Option<(Vec<u32>, Vec<f64>)>> = (0..n)
            .into_par_iter()
            .map(|i| {
                let (idx, _) = &lists[i];
                let via = idx.iter().take(m).chain(reverse[i].iter());
                let mut cand: Vec<u32> = idx.clone();
                let mut any = false;
                for &j in via {
                    if changed[i] || changed[j as usize] {
                        cand.extend(lists[j as usize].0.iter().take(m));
                        any = true;
                    }
                }
                if !any {
                    return None;
                }
                let out = best_of(xs, d, i, k, &mut cand);
                (out.0 != *idx).then_some(out)
            })
            .collect();
        let mut moved = 0usize;
        for (i, new) in next.into_iter().enumerate() {
            changed[i] = false;
            if let Some(new) = new {
                moved += new.0.iter().filter(|j| !lists[i].0.contains(j)).count();
                lists[i] = new;
                changed[i] = true;
            }
        }
        if (moved as f64) < 0.001 * (n * k) as f64 {
            break;
        }
    }
    let mut indices = Array2::<usize>::zeros((n, k_out));
    let mut distances = Array2::<f64>::zeros((n, k_out));
    for (i, (idx, d2)) in lists.iter().enumerate() {
        for c in 0..k_out {
            indices[[i, c]] = idx[c] as usize;
            distances[[i, c]] = d2[c].sqrt();
        }
    }
    Ok(Neighbours { indices, distances })
}

/// The recall of `nb` against the exact neighbours, estimated on `samples`
/// points drawn with `seed`: the share of their listed neighbours that lie
/// no farther than their true k-th nearest (so ties count as found).
pub fn recall(x: ArrayView2<'_, f64>, nb: &Neighbours, samples: usize, seed: u64) -> Result<f64> {
    let n = x.nrows();
    let k = nb.indices.ncols();
    if nb.indices.nrows() != n || k == 0 || k >= n {
        return Err(crate::EmbedError::Input(format!(
            "{}×{k} neighbours for {n} points",
            nb.indices.nrows()
        )));
    }
    let d = x.ncols();
    let xs = rows_of(&x);
    let xs: &[f64] = &xs;
    let mut g = Rng::new(seed, Purpose::Embed, 7);
    let picks: Vec<usize> = if samples >= n {
        (0..n).collect()
    } else {
        (0..samples).map(|_| g.below(n as u64) as usize).collect()
    };
    let found: usize = picks
        .par_iter()
        .map(|&i| {
            let xi = &xs[i * d..(i + 1) * d];
            let mut all: Vec<f64> = (0..n)
                .filter(|&j| j != i)
                .map(|j| sq(xi, &xs[j * d..(j + 1) * d]))
                .collect();
            all.select_nth_unstable_by(k - 1, f64::total_cmp);
            let kth = all[k - 1];
            nb.indices
                .row(i)
                .iter()
                .filter(|&&j| j != i && sq(xi, &xs[j * d..(j + 1) * d]) <= kth * (1.0 + 1e-12))
                .count()
        })
        .sum();
    Ok(found as f64 / (picks.len() * k) as f64)
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
        let recall_all = hits as f64 / (3000.0 * 15.0);
        assert!(recall_all > 0.95, "recall {recall_all}");
        // The sampled estimate agrees with the whole count.
        let est = recall(x.view(), &approx, 3000, 0).unwrap();
        assert!((est - recall_all).abs() < 0.01, "{est} vs {recall_all}");
        assert_eq!(recall(x.view(), &exact, 500, 0).unwrap(), 1.0);
        // Distances ascend and match the indices.
        for i in 0..3000 {
            let d = approx.distances.row(i);
            assert!(d.windows(2).into_iter().all(|w| w[0] <= w[1]));
            let j = approx.indices[[i, 0]];
            let xs = x.as_slice().unwrap();
            assert!(
                (d[0] - sq(&xs[i * 10..(i + 1) * 10], &xs[j * 10..(j + 1) * 10]).sqrt()).abs()
                    < 1e-12
            );
        }
    }

    #[test]
    fn nn_descent_is_the_same_on_any_thread_count_and_recall_sees_a_bad_graph() {
        let mut g = Rng::new(5, Purpose::Test, 0);
        let x = Array2::from_shape_simple_fn((2500, 12), || g.normal());
        let pool = |t: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
        };
        let one = pool(1).install(|| knn_approx(x.view(), 20, 3).unwrap());
        let three = pool(3).install(|| knn_approx(x.view(), 20, 3).unwrap());
        assert_eq!(one.indices, three.indices);
        assert_eq!(one.distances, three.distances);
        // Unstructured 12-d noise is hard for NN-descent; still found.
        let r = recall(x.view(), &one, 500, 0).unwrap();
        assert!(r > 0.9, "recall {r}");
        // Every fifth neighbour swapped for an unrelated point: recall drops
        // by about a fifth.
        let mut bad = one.clone();
        for i in 0..2500 {
            for c in (0..20).step_by(5) {
                bad.indices[[i, c]] = (i + 1250) % 2500;
            }
        }
        let rb = recall(x.view(), &bad, 500, 0).unwrap();
        assert!(rb < r - 0.15, "{rb} vs {r}");
    }
}
