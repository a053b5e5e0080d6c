//! t-SNE (van der Maaten & Hinton 2008; Barnes–Hut as van der Maaten 2014),
//! with the reference implementations' optimiser: 250 iterations of early
//! exaggeration 12 with momentum 0.5, then 500 with momentum 0.8
//! (openTSNE's count); gains +0.2 / ×0.8 (floor 0.01); learning rate
//! max(N / exaggeration / 4, 50) (scikit-learn's "auto"); PCA initialisation
//! scaled to std 1e-4; input affinities from the 3·perplexity nearest
//! neighbours by binary search on the precision.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Phase;
use crate::error::{Result, param};
use crate::interp::{self, FftParams};
use crate::pca::{Pca, PcaParams, PcaSolver};
use latentlab_rng::{Purpose, SplitMix64 as Rng};

/// How gradients are computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TsneMethod {
    /// Exact up to 1,000 points, Barnes–Hut up to [`FFT_FROM`], FFT from
    /// there on.
    #[default]
    Auto,
    /// O(N²) exact gradients and dense affinities.
    Exact,
    /// O(N log N) Barnes–Hut with sparse affinities.
    BarnesHut,
    /// Sparse affinities and the repulsion by interpolation on a grid with
    /// FFT convolutions, O(N) per iteration (FIt-SNE's; [`crate::interp`]).
    Fft,
}

/// The size from which [`TsneMethod::Auto`] interpolates the repulsion
/// with FFTs instead of Barnes–Hut: measured on 2 threads with
/// `benches/peers/tsne_crossover.py`, Barnes–Hut is faster at 3,000 points
/// (2.03 s against 2.41 s) and the FFT at 3,500 (2.14 s against 2.46 s),
/// with equal trustworthiness (docs/benchmarks.md).
pub const FFT_FROM: usize = 3_300;

/// t-SNE settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TsneParams {
    /// Output dimension (1 or 2 for Barnes–Hut; any for exact).
    pub dim: usize,
    /// Perplexity (effective neighbours), < N.
    pub perplexity: f64,
    /// Early exaggeration factor.
    pub early_exaggeration: f64,
    /// Iterations with exaggeration.
    pub exaggeration_iters: usize,
    /// Total iterations (openTSNE: 250 + 500).
    pub iterations: usize,
    /// Learning rate; `None` for max(N / exaggeration / 4, 50)
    /// (scikit-learn's "auto").
    pub learning_rate: Option<f64>,
    /// Barnes–Hut accuracy (0 is exact).
    pub theta: f64,
    /// Gradient method.
    pub method: TsneMethod,
    /// Initialise from PCA (else small seeded Gaussian noise).
    pub pca_init: bool,
    /// Seed.
    pub seed: u64,
}

impl Default for TsneParams {
    fn default() -> Self {
        Self {
            dim: 2,
            perplexity: 30.0,
            early_exaggeration: 12.0,
            exaggeration_iters: 250,
            iterations: 750,
            learning_rate: None,
            theta: 0.5,
            method: TsneMethod::Auto,
            pca_init: true,
            seed: 0,
        }
    }
}

/// A fitted t-SNE map.
#[derive(Clone, Debug)]
pub struct Tsne {
    /// N × dim coordinates.
    pub embedding: Array2<f64>,
    /// KL(P ‖ Q) at the end (exact path only; `None` for Barnes–Hut).
    pub kl_divergence: Option<f64>,
}

/// Sparse symmetric affinities (CSR). Columns are `u32`: at 10⁶ points
/// and perplexity 30 the matrix holds up to 2Nk = 1.8 × 10⁸ entries.
struct Sparse {
    start: Vec<usize>,
    col: Vec<u32>,
    val: Vec<f64>,
}

/// P = (P_cond + P_condᵀ) / 2N as CSR with each row's columns ascending,
/// from each point's first `k` neighbours (`idx`, N × ≥k) and their
/// conditional affinities (`cond`, row i's at i·k). Row i merges its own
/// neighbours with the points whose neighbour it is; a pair listed both
/// ways sums its two halves. Nothing of size 2Nk is built twice: the
/// reverse lists hold one `u32` per affinity, and the rows are merged
/// once to count and once to fill.
fn symmetrise(idx: ArrayView2<'_, usize>, k: usize, cond: &[f64]) -> Result<Sparse> {
    let n = idx.nrows();
    if u32::try_from(n * k).is_err() {
        return Err(crate::EmbedError::Input(format!(
            "{n} points × {k} neighbours are more affinities than t-SNE indexes (2³²)"
        )));
    }
    let half = 2.0 * n as f64;
    // Reverse lists: for each j, the positions i·k + c with idx[i][c] = j,
    // ascending in i.
    let mut rstart = vec![0usize; n + 1];
    for i in 0..n {
        for &j in idx.row(i).iter().take(k) {
            rstart[j + 1] += 1;
        }
    }
    for j in 0..n {
        rstart[j + 1] += rstart[j];
    }
    let mut fill = rstart[..n].to_vec();
    let mut rev = vec![0u32; n * k];
    for i in 0..n {
        for (c, &j) in idx.row(i).iter().take(k).enumerate() {
            rev[fill[j]] = (i * k + c) as u32;
            fill[j] += 1;
        }
    }
    drop(fill);
    // Row i, columns ascending, through `out`.
    let row = |i: usize, out: &mut dyn FnMut(u32, f64)| {
        let mut fwd: Vec<(usize, f64)> = idx
            .row(i)
            .iter()
            .take(k)
            .zip(&cond[i * k..(i + 1) * k])
            .map(|(&j, &v)| (j, v / half))
            .collect();
        fwd.sort_unstable_by_key(|e| e.0);
        let back = rev[rstart[i]..rstart[i + 1]]
            .iter()
            .map(|&pos| (pos as usize / k, cond[pos as usize] / half));
        let mut back = back.peekable();
        let mut fwd = fwd.into_iter().peekable();
        loop {
            let (j, v) = match (fwd.peek().copied(), back.peek().copied()) {
                (Some(a), Some(b)) if a.0 == b.0 => {
                    fwd.next();
                    back.next();
                    (a.0, a.1 + b.1)
                }
                (Some(a), Some(b)) if a.0 < b.0 => {
                    fwd.next();
                    a
                }
                (_, Some(b)) => {
                    back.next();
                    b
                }
                (Some(a), None) => {
                    fwd.next();
                    a
                }
                (None, None) => break,
            };
            out(j as u32, v);
        }
    };
    let counts: Vec<usize> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut c = 0;
            row(i, &mut |_, _| c += 1);
            c
        })
        .collect();
    let mut start = Vec::with_capacity(n + 1);
    start.push(0);
    for c in &counts {
        start.push(start.last().copied().unwrap_or(0) + c);
    }
    drop(counts);
    let nnz = start[n];
    let (mut col, mut val) = (vec![0u32; nnz], vec![0.0f64; nnz]);
    let mut slices = Vec::with_capacity(n);
    let (mut c_rest, mut v_rest) = (col.as_mut_slice(), val.as_mut_slice());
    for i in 0..n {
        let len = start[i + 1] - start[i];
        let (c, cr) = std::mem::take(&mut c_rest).split_at_mut(len);
        let (v, vr) = std::mem::take(&mut v_rest).split_at_mut(len);
        slices.push((c, v));
        (c_rest, v_rest) = (cr, vr);
    }
    slices.into_par_iter().enumerate().for_each(|(i, (c, v))| {
        let mut t = 0;
        row(i, &mut |j, p| {
            c[t] = j;
            v[t] = p;
            t += 1;
        });
    });
    Ok(Sparse { start, col, val })
}

/// Conditional affinities of one point from its squared distances by binary
/// search on the precision β so that the entropy equals ln(perplexity).
fn calibrate(d2: &[f64], perplexity: f64) -> Vec<f64> {
    let target = perplexity.ln();
    let (mut beta, mut lo, mut hi) = (1.0f64, 0.0f64, f64::INFINITY);
    let dmin = d2.iter().copied().fold(f64::INFINITY, f64::min);
    let mut p = vec![0.0; d2.len()];
    for _ in 0..200 {
        let mut sum = 0.0;
        for (pi, d) in p.iter_mut().zip(d2) {
            *pi = (-(d - dmin) * beta).exp();
            sum += *pi;
        }
        let mut h = 0.0;
        for (pi, d) in p.iter_mut().zip(d2) {
            *pi /= sum;
            h += *pi * (d - dmin) * beta;
        }
        h += sum.ln();
        let diff = h - target;
        if diff.abs() < 1e-10 {
            break;
        }
        if diff > 0.0 {
            lo = beta;
            beta = if hi.is_finite() {
                0.5 * (beta + hi)
            } else {
                beta * 2.0
            };
        } else {
            hi = beta;
            beta = 0.5 * (beta + lo);
        }
    }
    p
}

fn validate(n: usize, p: &TsneParams) -> Result<()> {
    if p.dim == 0 {
        return Err(param("dim", "must be at least 1"));
    }
    if !(p.perplexity > 0.0 && p.perplexity.is_finite()) {
        return Err(param(
            "perplexity",
            format!("{} must be positive", p.perplexity),
        ));
    }
    if 3.0 * p.perplexity >= n as f64 {
        return Err(param(
            "perplexity",
            format!(
                "{} must be below a third of the number of points ({n}): each point's affinities use its 3·perplexity nearest neighbours",
                p.perplexity
            ),
        ));
    }
    if p.iterations == 0 || p.exaggeration_iters > p.iterations {
        return Err(param(
            "iterations",
            "must be at least 1 and at least the exaggeration iterations",
        ));
    }
    if !(p.theta >= 0.0 && p.theta.is_finite()) {
        return Err(param("theta", "must be ≥ 0"));
    }
    if let Some(lr) = p.learning_rate
        && !(lr > 0.0 && lr.is_finite())
    {
        return Err(param("learning_rate", "must be positive"));
    }
    if !(p.early_exaggeration > 0.0 && p.early_exaggeration.is_finite()) {
        return Err(param("early_exaggeration", "must be positive"));
    }
    Ok(())
}

impl Tsne {
    /// Fits a map of `x` (N × d); `progress` is called with each
    /// [`Phase`] as it starts and ends, and every 10 iterations of the
    /// optimisation.
    pub fn fit(
        x: ArrayView2<'_, f64>,
        p: &TsneParams,
        progress: &mut dyn FnMut(Phase, usize, usize),
    ) -> Result<Self> {
        Self::fit_with_neighbours(x, None, p, progress)
    }

    /// The number of neighbours the affinities use: ⌊3·perplexity⌋, below N.
    pub fn neighbours_needed(n: usize, p: &TsneParams) -> usize {
        ((3.0 * p.perplexity).floor() as usize).clamp(1, n.saturating_sub(1).max(1))
    }

    /// [`Tsne::fit`] with neighbours computed elsewhere (e.g. on the GPU by
    /// [`crate::knn_on`]); they must hold at least
    /// [`Tsne::neighbours_needed`] per point.
    pub fn fit_with_neighbours(
        x: ArrayView2<'_, f64>,
        neighbours: Option<&crate::Neighbours>,
        p: &TsneParams,
        progress: &mut dyn FnMut(Phase, usize, usize),
    ) -> Result<Self> {
        crate::check_points(x)?;
        let n = x.nrows();
        validate(n, p)?;
        let method = match p.method {
            TsneMethod::Auto if n >= FFT_FROM => TsneMethod::Fft,
            TsneMethod::Auto if n > 1000 => TsneMethod::BarnesHut,
            TsneMethod::Auto => TsneMethod::Exact,
            m => m,
        };
        let bh = method != TsneMethod::Exact;
        if bh && p.dim != 2 {
            return Err(param(
                "dim",
                "Barnes–Hut and FFT maps are 2-D; use the exact method",
            ));
        }
        let k = Self::neighbours_needed(n, p);
        let owned;
        let nb = match neighbours {
            Some(nb) if nb.indices.nrows() == n && nb.indices.ncols() >= k => nb,
            Some(nb) => {
                return Err(crate::EmbedError::Input(format!(
                    "the given neighbours are {}×{}; t-SNE needs {n}×{k}",
                    nb.indices.nrows(),
                    nb.indices.ncols()
                )));
            }
            None => {
                progress(Phase::Neighbours, 0, 1);
                owned = crate::knn::knn_auto(x, k, p.seed)?;
                progress(Phase::Neighbours, 1, 1);
                &owned
            }
        };
        progress(Phase::Affinities, 0, 1);
        // Conditional affinities over the k neighbours (row i's k values
        // at i·k), then symmetrised.
        let mut cond = vec![0.0f64; n * k];
        cond.par_chunks_mut(k).enumerate().for_each(|(i, out)| {
            let d2: Vec<f64> = nb.distances.row(i).iter().take(k).map(|d| d * d).collect();
            out.copy_from_slice(&calibrate(&d2, p.perplexity));
        });
        let pm = symmetrise(nb.indices.view(), k, &cond)?;
        drop(cond);
        progress(Phase::Affinities, 1, 1);
        progress(Phase::Initialisation, 0, 1);
        let mut y = if p.pca_init && x.ncols() >= p.dim {
            let pca = Pca::fit(
                x,
                &PcaParams {
                    components: p.dim,
                    solver: PcaSolver::Auto,
                    seed: p.seed,
                },
            )?;
            let mut y = pca.transform(x)?;
            let sd = y.column(0).std(0.0);
            if sd > 0.0 {
                y.mapv_inplace(|v| v / sd * 1e-4);
            }
            y
        } else {
            let mut g = Rng::new(p.seed, Purpose::Embed, 3);
            Array2::from_shape_simple_fn((n, p.dim), || 1e-4 * g.normal())
        };
        progress(Phase::Initialisation, 1, 1);
        progress(Phase::Optimisation, 0, p.iterations);
        let lr = p
            .learning_rate
            .unwrap_or_else(|| (n as f64 / p.early_exaggeration / 4.0).max(50.0));
        let mut update = Array2::<f64>::zeros((n, p.dim));
        let mut gains = Array2::<f64>::ones((n, p.dim));
        for it in 0..p.iterations {
            let (exag, momentum) = if it < p.exaggeration_iters {
                (p.early_exaggeration, 0.5)
            } else {
                (1.0, 0.8)
            };
            let grad = match method {
                TsneMethod::Fft => fft_gradient(&y, &pm, exag, &FftParams::default()),
                TsneMethod::BarnesHut => bh_gradient(&y, &pm, exag, p.theta),
                _ => exact_gradient(&y, &pm, exag),
            };
            for ((u, g), (gr, _)) in update
                .iter_mut()
                .zip(gains.iter_mut())
                .zip(grad.iter().zip(0..))
            {
                *g = if (*gr > 0.0) != (*u > 0.0) {
                    *g + 0.2
                } else {
                    (*g * 0.8).max(0.01)
                };
                *u = momentum * *u - lr * *g * gr;
            }
            y += &update;
            // Keep the map centred.
            let mean = y.mean_axis(ndarray::Axis(0)).expect("n ≥ 3");
            y -= &mean;
            if (it + 1) % 10 == 0 || it + 1 == p.iterations {
                progress(Phase::Optimisation, it + 1, p.iterations);
            }
        }
        let kl = (!bh).then(|| exact_kl(&y, &pm));
        Ok(Self {
            embedding: y,
            kl_divergence: kl,
        })
    }
}

/// The exact gradient: 4 Σⱼ (exag·pᵢⱼ − qᵢⱼ) (1 + ‖yᵢ − yⱼ‖²)⁻¹ (yᵢ − yⱼ).
fn exact_gradient(y: &Array2<f64>, pm: &Sparse, exag: f64) -> Array2<f64> {
    let (n, d) = y.dim();
    let w: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|i| {
            (0..n)
                .map(|j| {
                    if i == j {
                        0.0
                    } else {
                        let mut s = 0.0;
                        for c in 0..d {
                            let t = y[[i, c]] - y[[j, c]];
                            s += t * t;
                        }
                        1.0 / (1.0 + s)
                    }
                })
                .collect()
        })
        .collect();
    let z: f64 = w.iter().map(|r| r.iter().sum::<f64>()).sum();
    let rows: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut g = vec![0.0; d];
            let mut pi = vec![0.0; n];
            for t in pm.start[i]..pm.start[i + 1] {
                pi[pm.col[t] as usize] = pm.val[t];
            }
            for j in 0..n {
                if j == i {
                    continue;
                }
                let f = (exag * pi[j] - w[i][j] / z) * w[i][j];
                for c in 0..d {
                    g[c] += 4.0 * f * (y[[i, c]] - y[[j, c]]);
                }
            }
            g
        })
        .collect();
    Array2::from_shape_vec((n, d), rows.concat()).expect("n × d")
}

fn exact_kl(y: &Array2<f64>, pm: &Sparse) -> f64 {
    let n = y.nrows();
    let dist = |i: usize, j: usize| -> f64 {
        let r = &y.row(i) - &y.row(j);
        1.0 / (1.0 + r.dot(&r))
    };
    let z: f64 = (0..n)
        .into_par_iter()
        .map(|i| (0..n).filter(|&j| j != i).map(|j| dist(i, j)).sum::<f64>())
        .sum();
    let mut kl = 0.0;
    for i in 0..n {
        for t in pm.start[i]..pm.start[i + 1] {
            let pij = pm.val[t];
            if pij > 0.0 {
                let q = (dist(i, pm.col[t] as usize) / z).max(1e-300);
                kl += pij * (pij / q).ln();
            }
        }
    }
    kl
}

/// One quadtree cell, packed so a traversal touches one cache line per cell.
#[derive(Clone, Copy)]
struct Cell {
    /// Centre of mass.
    com: [f64; 2],
    /// The cell's width, squared.
    width2: f64,
    /// Points inside.
    count: u32,
    /// First of four children (0 = leaf).
    child: u32,
    /// The point of a leaf holding one point.
    point: u32,
}

/// A quadtree over 2-D points for Barnes–Hut.
struct Quad {
    cells: Vec<Cell>,
    /// Geometric centre and half width of each cell (building only).
    centre: Vec<([f64; 2], f64)>,
}

const NONE: u32 = u32::MAX;

impl Quad {
    fn build(y: &Array2<f64>) -> Self {
        let n = y.nrows();
        let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
        for i in 0..n {
            for c in 0..2 {
                lo[c] = lo[c].min(y[[i, c]]);
                hi[c] = hi[c].max(y[[i, c]]);
            }
        }
        let half = ((hi[0] - lo[0]).max(hi[1] - lo[1]) / 2.0).max(1e-12) * (1.0 + 1e-9);
        let mut q = Quad {
            cells: Vec::with_capacity(4 * n),
            centre: Vec::with_capacity(4 * n),
        };
        q.new_cell([(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0], half);
        for i in 0..n {
            q.insert(0, i as u32, [y[[i, 0]], y[[i, 1]]], y, 0);
        }
        q
    }

    fn new_cell(&mut self, centre: [f64; 2], half: f64) -> u32 {
        self.cells.push(Cell {
            com: [0.0; 2],
            width2: 4.0 * half * half,
            count: 0,
            child: 0,
            point: NONE,
        });
        self.centre.push((centre, half));
        (self.cells.len() - 1) as u32
    }

    fn quadrant(&self, node: usize, p: [f64; 2]) -> u32 {
        let c = self.centre[node].0;
        u32::from(p[0] > c[0]) + 2 * u32::from(p[1] > c[1])
    }

    fn insert(&mut self, node: usize, i: u32, p: [f64; 2], y: &Array2<f64>, depth: usize) {
        let cell = &mut self.cells[node];
        let cnt = f64::from(cell.count);
        cell.com[0] = (cell.com[0] * cnt + p[0]) / (cnt + 1.0);
        cell.com[1] = (cell.com[1] * cnt + p[1]) / (cnt + 1.0);
        cell.count += 1;
        if cell.count == 1 {
            cell.point = i;
            return;
        }
        // Duplicate points (or too deep): keep them in this leaf.
        if depth > 60 {
            return;
        }
        if self.cells[node].child == 0 {
            let (c, half) = self.centre[node];
            let h = half / 2.0;
            let mut first = 0;
            for q in 0..4 {
                let cx = c[0] + if q & 1 == 1 { h } else { -h };
                let cy = c[1] + if q & 2 == 2 { h } else { -h };
                let id = self.new_cell([cx, cy], h);
                if q == 0 {
                    first = id;
                }
            }
            self.cells[node].child = first;
            let old = std::mem::replace(&mut self.cells[node].point, NONE);
            if old != NONE {
                let op = [y[[old as usize, 0]], y[[old as usize, 1]]];
                let q = self.quadrant(node, op);
                self.insert((first + q) as usize, old, op, y, depth + 1);
            }
        }
        let q = self.quadrant(node, p);
        let first = self.cells[node].child;
        self.insert((first + q) as usize, i, p, y, depth + 1);
    }

    /// Repulsive force on point `i` (unnormalised) and its share of Z.
    fn repulse(&self, i: u32, p: [f64; 2], theta2: f64) -> ([f64; 2], f64) {
        let mut f = [0.0; 2];
        let mut z = 0.0;
        let mut stack = [0u32; 256];
        let mut top = 1;
        while top > 0 {
            top -= 1;
            let cell = &self.cells[stack[top] as usize];
            let cnt = cell.count;
            if cnt == 0 || (cnt == 1 && cell.point == i) {
                continue;
            }
            let dx = p[0] - cell.com[0];
            let dy = p[1] - cell.com[1];
            let d2 = dx * dx + dy * dy;
            let leaf = cell.child == 0;
            if leaf || cell.width2 < theta2 * d2 {
                // A leaf may hold i itself among duplicates.
                let mut m = f64::from(cnt);
                if leaf && cnt > 1 && d2 == 0.0 {
                    m -= 1.0;
                }
                let q = 1.0 / (1.0 + d2);
                z += m * q;
                let s = m * q * q;
                f[0] += s * dx;
                f[1] += s * dy;
            } else {
                let c = cell.child;
                stack[top] = c;
                stack[top + 1] = c + 1;
                stack[top + 2] = c + 2;
                stack[top + 3] = c + 3;
                top += 4;
            }
        }
        (f, z)
    }
}

/// The attraction `Σ_j p_ij w_ij (y_i − y_j)` of every point of a 2-D map.
fn attraction(y: &Array2<f64>, pm: &Sparse) -> Vec<[f64; 2]> {
    (0..y.nrows())
        .into_par_iter()
        .map(|i| {
            let p = [y[[i, 0]], y[[i, 1]]];
            let mut attr = [0.0; 2];
            for t in pm.start[i]..pm.start[i + 1] {
                let j = pm.col[t] as usize;
                let dx = p[0] - y[[j, 0]];
                let dy = p[1] - y[[j, 1]];
                let w = pm.val[t] / (1.0 + dx * dx + dy * dy);
                attr[0] += w * dx;
                attr[1] += w * dy;
            }
            attr
        })
        .collect()
}

/// The gradient with the repulsion interpolated ([`crate::interp`]).
fn fft_gradient(y: &Array2<f64>, pm: &Sparse, exag: f64, params: &FftParams) -> Array2<f64> {
    let attr = attraction(y, pm);
    let (rep, z) = interp::repulsion(y, params);
    let z = z.max(f64::MIN_POSITIVE);
    let mut g = Array2::<f64>::zeros((y.nrows(), 2));
    for (i, a) in attr.iter().enumerate() {
        for c in 0..2 {
            g[[i, c]] = 4.0 * (exag * a[c] - rep[[i, c]] / z);
        }
    }
    g
}

fn bh_gradient(y: &Array2<f64>, pm: &Sparse, exag: f64, theta: f64) -> Array2<f64> {
    let n = y.nrows();
    let tree = Quad::build(y);
    let theta2 = theta * theta;
    let attr = attraction(y, pm);
    let parts: Vec<([f64; 2], f64)> = (0..n)
        .into_par_iter()
        .map(|i| tree.repulse(i as u32, [y[[i, 0]], y[[i, 1]]], theta2))
        .collect();
    let z: f64 = parts
        .iter()
        .map(|p| p.1)
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    let mut g = Array2::<f64>::zeros((n, 2));
    for (i, ((rep, _), a)) in parts.iter().zip(&attr).enumerate() {
        for c in 0..2 {
            g[[i, c]] = 4.0 * (exag * a[c] - rep[c] / z);
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_hits_the_perplexity() {
        let d2: Vec<f64> = (0..90).map(|i| (i as f64 * 0.37).powi(2)).collect();
        let p = calibrate(&d2, 30.0);
        let h: f64 = -p
            .iter()
            .filter(|v| **v > 0.0)
            .map(|v| v * v.ln())
            .sum::<f64>();
        assert!((h.exp() - 30.0).abs() < 1e-6, "{}", h.exp());
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn symmetrised_affinities_are_the_pairwise_sums() {
        let mut g = Rng::new(9, Purpose::Test, 0);
        let (n, k) = (60, 7);
        // Neighbour lists with extra columns beyond k (ignored), many of
        // them mutual, in no particular order.
        let mut idx = Array2::<usize>::zeros((n, k + 2));
        for i in 0..n {
            let mut row: Vec<usize> = Vec::new();
            while row.len() < k + 2 {
                let j = if g.below(2) == 0 {
                    (i + 1 + g.below(4) as usize) % n
                } else {
                    g.below(n as u64) as usize
                };
                if j != i && !row.contains(&j) {
                    row.push(j);
                }
            }
            idx.row_mut(i).assign(&ndarray::Array1::from(row));
        }
        let cond: Vec<f64> = (0..n * k).map(|_| g.uniform()).collect();
        let pm = symmetrise(idx.view(), k, &cond).unwrap();
        let mut want = std::collections::BTreeMap::new();
        for i in 0..n {
            for c in 0..k {
                let (j, v) = (idx[[i, c]], cond[i * k + c] / (2.0 * n as f64));
                *want.entry((i, j)).or_insert(0.0) += v;
                *want.entry((j, i)).or_insert(0.0) += v;
            }
        }
        let mut got = std::collections::BTreeMap::new();
        assert_eq!(pm.start.len(), n + 1);
        for i in 0..n {
            let cols = &pm.col[pm.start[i]..pm.start[i + 1]];
            assert!(cols.windows(2).all(|w| w[0] < w[1]), "row {i}: {cols:?}");
            for t in pm.start[i]..pm.start[i + 1] {
                got.insert((i, pm.col[t] as usize), pm.val[t]);
            }
        }
        assert_eq!(got, want);
        let total: f64 = pm.val.iter().sum();
        let mass: f64 = cond.iter().sum::<f64>() / n as f64;
        assert!((total - mass).abs() < 1e-12, "{total} vs {mass}");
    }

    #[test]
    fn barnes_hut_with_theta_zero_is_the_exact_gradient() {
        let mut g = Rng::new(3, Purpose::Test, 0);
        let n = 40;
        let y = Array2::from_shape_simple_fn((n, 2), || g.normal());
        let mut pm = Sparse {
            start: vec![0],
            col: vec![],
            val: vec![],
        };
        for i in 0..n {
            for j in [(i + 1) % n, (i + n - 1) % n] {
                pm.col.push(j as u32);
                pm.val.push(1.0 / (2.0 * n as f64));
            }
            pm.start.push(pm.col.len());
        }
        let a = exact_gradient(&y, &pm, 3.0);
        let b = bh_gradient(&y, &pm, 3.0, 0.0);
        for (x, z) in a.iter().zip(b.iter()) {
            assert!((x - z).abs() < 1e-12 * (1.0 + x.abs()), "{x} vs {z}");
        }
        // θ = 0.5 stays close.
        let c = bh_gradient(&y, &pm, 3.0, 0.5);
        let err: f64 = a
            .iter()
            .zip(c.iter())
            .map(|(x, z)| (x - z).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!(err < 0.05 * norm, "{err} vs {norm}");
    }

    #[test]
    fn the_exact_gradient_matches_finite_differences_of_the_kl() {
        let mut g = Rng::new(5, Purpose::Test, 0);
        let n = 12;
        let mut y = Array2::from_shape_simple_fn((n, 2), || g.normal());
        let mut pm = Sparse {
            start: vec![0],
            col: vec![],
            val: vec![],
        };
        let mut total = 0.0;
        let mut vals = vec![];
        for i in 0..n {
            for j in 0..n {
                if i != j && (i + j) % 3 != 0 {
                    let v = 1.0 + ((i * j) % 5) as f64;
                    vals.push((i, j, v));
                    total += v;
                }
            }
        }
        let mut row = 0;
        for (i, j, v) in &vals {
            while row < *i {
                pm.start.push(pm.col.len());
                row += 1;
            }
            pm.col.push(*j as u32);
            pm.val.push(v / total);
        }
        while pm.start.len() <= n {
            pm.start.push(pm.col.len());
        }
        let grad = exact_gradient(&y, &pm, 1.0);
        let h = 1e-6;
        for i in 0..n {
            for c in 0..2 {
                y[[i, c]] += h;
                let up = exact_kl(&y, &pm);
                y[[i, c]] -= 2.0 * h;
                let down = exact_kl(&y, &pm);
                y[[i, c]] += h;
                let fd = (up - down) / (2.0 * h);
                assert!((fd - grad[[i, c]]).abs() < 1e-6, "{fd} vs {}", grad[[i, c]]);
            }
        }
    }
}
