//! t-SNE's repulsive forces by polynomial interpolation on an equispaced
//! grid, with the kernel sums done as FFT convolutions (FIt-SNE: Linderman
//! et al. 2019, "Fast interpolation-based t-SNE for improved visualization
//! of single-cell RNA-seq data"; the parameters openTSNE uses).
//!
//! For a 2-D map `y`, with `w_ij = 1 / (1 + ‖y_i − y_j‖²)`, the gradient's
//! repulsion needs, for every point, `Σ_j w_ij² (y_i − y_j)` and the
//! normaliser `Z = Σ_{i≠j} w_ij`. Both follow from sums of the one kernel
//! `K(d) = (1 + ‖d‖²)⁻²` against four charges `q_j ∈ {1, y_j1, y_j2, ‖y_j‖²}`:
//!
//! - `Σ_j w² (y_i − y_j) = y_i φ₀(i) − φ_y(i)`,
//! - `Z = Σ_i [(1 + ‖y_i‖²) φ₀(i) − 2 y_i·φ_y(i) + φ₃(i)] − N`,
//!   since `w = w² (1 + ‖y_i‖² − 2 y_i·y_j + ‖y_j‖²)` (the `−N` removes
//!   the `j = i` terms, each `K(0) = 1`).
//!
//! The square holding the points is cut into `B × B` boxes (`B` at least
//! [`FftParams::min_boxes`], and boxes at most
//! [`FftParams::max_box_width`] wide), with [`FftParams::nodes_per_box`]
//! equispaced Lagrange nodes per box and axis. The charges are spread onto
//! the `m × m` nodes (`m = B·p`) by the points' interpolation weights, the
//! kernel sums between nodes are one 2-D convolution (zero-padded to
//! `2m × 2m`, done with FFTs), and the potentials are interpolated back to
//! the points with the same weights: `O(N + m² log m)` per iteration
//! instead of Barnes–Hut's `O(N log N)`.

use std::sync::Arc;

use ndarray::Array2;
use rayon::prelude::*;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// The grid's resolution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FftParams {
    /// Lagrange nodes per box and axis (openTSNE and FIt-SNE: 3; at most
    /// [`MAX_NODES`]).
    pub nodes_per_box: usize,
    /// The fewest boxes per axis (openTSNE: 50).
    pub min_boxes: usize,
    /// The widest a box may be, in map units (openTSNE's
    /// `ints_in_interval`: 1).
    pub max_box_width: f64,
}

impl Default for FftParams {
    fn default() -> Self {
        Self {
            nodes_per_box: 3,
            min_boxes: 50,
            max_box_width: 1.0,
        }
    }
}

/// Lagrange weights on a box's nodes along one axis.
#[derive(Clone, Copy)]
struct Weights {
    len: usize,
    w: [f64; MAX_NODES],
}

impl Weights {
    fn iter(&self) -> std::slice::Iter<'_, f64> {
        self.w[..self.len].iter()
    }
}

/// The most Lagrange nodes per box and axis.
pub const MAX_NODES: usize = 8;

/// The most boxes per axis: keeps a map that has blown up (an enormous
/// learning rate) from asking for a grid of gigabytes.
const MAX_BOXES: usize = 2000;

/// The repulsion of every point, `Σ_j w_ij² (y_i − y_j)` (`n × 2`), and
/// `Z = Σ_{i≠j} w_ij`, by interpolation.
pub fn repulsion(y: &Array2<f64>, params: &FftParams) -> (Array2<f64>, f64) {
    let n = y.nrows();
    assert_eq!(y.ncols(), 2, "the interpolation is 2-D");
    let p = params.nodes_per_box.clamp(1, MAX_NODES);
    // A square domain over both axes, as openTSNE's.
    let (lo, hi) = y
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let span = (hi - lo).max(1e-12);
    let boxes = params
        .min_boxes
        .max((span / params.max_box_width).ceil() as usize)
        .clamp(1, MAX_BOXES);
    // More boxes (each narrower) until the FFT's length 2·boxes·p has no
    // prime factor above 7: a length with a large prime factor is several
    // times slower to transform (FIt-SNE rounds the same way).
    let boxes = (boxes..)
        .find(|&b| is_smooth(2 * b * p))
        .expect("7-smooth numbers are unbounded");
    let width = span / boxes as f64;
    let m = boxes * p;
    let h = width / p as f64;
    // Each point's box and Lagrange weights on its box's p nodes, per axis.
    let nodes: Vec<f64> = (0..p).map(|k| (k as f64 + 0.5) / p as f64).collect();
    let denom: Vec<f64> = (0..p)
        .map(|k| {
            (0..p)
                .filter(|&l| l != k)
                .map(|l| nodes[k] - nodes[l])
                .product()
        })
        .collect();
    let weights = |v: f64| -> (usize, Weights) {
        let t = (v - lo) / width;
        let b = (t.floor() as usize).min(boxes - 1);
        let u = t - b as f64;
        let mut w = Weights {
            len: p,
            w: [0.0; MAX_NODES],
        };
        for (k, (wk, dk)) in w.w.iter_mut().zip(&denom).enumerate() {
            *wk = (0..p)
                .filter(|&l| l != k)
                .map(|l| u - nodes[l])
                .product::<f64>()
                / dk;
        }
        (b * p, w)
    };
    let interp: Vec<[(usize, Weights); 2]> = (0..n)
        .into_par_iter()
        .map(|i| [weights(y[[i, 0]]), weights(y[[i, 1]])])
        .collect();
    // Spread the four charges onto the nodes. A point in box row b only
    // reaches node rows b·p … b·p + p − 1, so each box row's block of the
    // grid is filled by one task from its own points, in index order: the
    // sums are the same for any thread count.
    let mut by_row: Vec<Vec<usize>> = vec![Vec::new(); boxes];
    for (i, [(bx, _), _]) in interp.iter().enumerate() {
        by_row[bx / p].push(i);
    }
    let mut charges = vec![[0.0f64; 4]; m * m];
    charges
        .par_chunks_mut(p * m)
        .zip(&by_row)
        .enumerate()
        .for_each(|(b, (block, points))| {
            for &i in points {
                let [(bx, wx), (by, wy)] = &interp[i];
                debug_assert_eq!(*bx, b * p);
                let (a, c) = (y[[i, 0]], y[[i, 1]]);
                let q = [1.0, a, c, a * a + c * c];
                for (s, &ws) in wx.iter().enumerate() {
                    for (t, &wt) in wy.iter().enumerate() {
                        let cell = &mut block[s * m + by + t];
                        let wst = ws * wt;
                        for (v, qv) in cell.iter_mut().zip(q) {
                            *v += wst * qv;
                        }
                    }
                }
            }
        });
    let potentials = convolve(&charges, m, h);
    // Back to the points.
    let phi: Vec<[f64; 4]> = interp
        .par_iter()
        .map(|[(bx, wx), (by, wy)]| {
            let mut v = [0.0f64; 4];
            for (s, &ws) in wx.iter().enumerate() {
                for (t, &wt) in wy.iter().enumerate() {
                    let node = &potentials[(bx + s) * m + by + t];
                    for c in 0..4 {
                        v[c] += ws * wt * node[c];
                    }
                }
            }
            v
        })
        .collect();
    let mut rep = Array2::<f64>::zeros((n, 2));
    let mut z = 0.0;
    for (i, v) in phi.iter().enumerate() {
        let (a, b) = (y[[i, 0]], y[[i, 1]]);
        rep[[i, 0]] = a * v[0] - v[1];
        rep[[i, 1]] = b * v[0] - v[2];
        z += (1.0 + a * a + b * b) * v[0] - 2.0 * (a * v[1] + b * v[2]) + v[3];
    }
    (rep, z - n as f64)
}

/// Whether `n` has no prime factor above 7.
fn is_smooth(mut n: usize) -> bool {
    for f in [2, 3, 5, 7] {
        while n.is_multiple_of(f) {
            n /= f;
        }
    }
    n == 1
}

/// `Φ(a) = Σ_b K(t_a − t_b) W(b)` on the `m × m` node lattice of spacing
/// `h`, for each of the four charge grids, by a circulant embedding in
/// `2m × 2m` and FFTs. The kernel is even in both axes, so its spectrum is
/// real, and two real charge grids ride in one complex one (`W₀ + i W₁`)
/// without mixing. Rows that are zero going in, or not wanted coming out,
/// are not transformed, and the spectra stay transposed between the
/// forward and the inverse transform.
fn convolve(charges: &[[f64; 4]], m: usize, h: f64) -> Vec<[f64; 4]> {
    let size = 2 * m;
    let mut planner = FftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(size);
    let inv = planner.plan_fft_inverse(size);
    // The kernel at every lattice offset, wrapped: offset o and o − 2m
    // (offset m is never reached by a pair of nodes).
    let off = |k: usize| -> f64 {
        if k <= m {
            k as f64
        } else {
            k as f64 - size as f64
        }
    };
    let mut kernel = vec![Complex::new(0.0, 0.0); size * size];
    kernel
        .par_chunks_mut(size)
        .enumerate()
        .for_each(|(r, row)| {
            let dx = off(r) * h;
            for (c, v) in row.iter_mut().enumerate() {
                let dy = off(c) * h;
                let d = 1.0 + dx * dx + dy * dy;
                *v = Complex::new(1.0 / (d * d), 0.0);
            }
        });
    let kernel = forward(kernel, size, size, &fwd);
    let scale = 1.0 / (size * size) as f64;
    let halves: Vec<Vec<Complex<f64>>> = [(0, 1), (2, 3)]
        .into_par_iter()
        .map(|(t0, t1)| {
            let mut a = vec![Complex::new(0.0, 0.0); size * size];
            for r in 0..m {
                for c in 0..m {
                    let q = &charges[r * m + c];
                    a[r * size + c] = Complex::new(q[t0], q[t1]);
                }
            }
            let mut spec = forward(a, size, m, &fwd);
            for (x, k) in spec.iter_mut().zip(&kernel) {
                *x *= k.re;
            }
            inverse(spec, size, m, &inv)
        })
        .collect();
    (0..m * m)
        .map(|i| {
            let (r, c) = (i / m, i % m);
            let (u, v) = (halves[0][r * size + c], halves[1][r * size + c]);
            [u.re * scale, u.im * scale, v.re * scale, v.im * scale]
        })
        .collect()
}

/// The 2-D FFT of a `size × size` row-major grid whose rows from
/// `rows_in` on are zero, returned transposed.
fn forward(
    mut a: Vec<Complex<f64>>,
    size: usize,
    rows_in: usize,
    plan: &Arc<dyn Fft<f64>>,
) -> Vec<Complex<f64>> {
    a[..rows_in * size]
        .par_chunks_mut(size)
        .for_each(|row| plan.process(row));
    let mut t = transpose(&a, size);
    t.par_chunks_mut(size).for_each(|col| plan.process(col));
    t
}

/// The unnormalised inverse 2-D FFT of a transposed spectrum; only its
/// first `rows_out` rows are computed (the rest are left partial).
fn inverse(
    mut t: Vec<Complex<f64>>,
    size: usize,
    rows_out: usize,
    plan: &Arc<dyn Fft<f64>>,
) -> Vec<Complex<f64>> {
    t.par_chunks_mut(size).for_each(|col| plan.process(col));
    let mut a = transpose(&t, size);
    a[..rows_out * size]
        .par_chunks_mut(size)
        .for_each(|row| plan.process(row));
    a
}

/// The transpose of a `size × size` grid, in 32 × 32 tiles.
fn transpose(a: &[Complex<f64>], size: usize) -> Vec<Complex<f64>> {
    const TILE: usize = 32;
    let mut t = vec![Complex::new(0.0, 0.0); size * size];
    t.par_chunks_mut(TILE * size)
        .enumerate()
        .for_each(|(band, out)| {
            let c0 = band * TILE;
            let rows = out.len() / size;
            for r0 in (0..size).step_by(TILE) {
                for dc in 0..rows {
                    for r in r0..(r0 + TILE).min(size) {
                        out[dc * size + r] = a[r * size + c0 + dc];
                    }
                }
            }
        });
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use latentlab_rng::{Purpose, SplitMix64};

    /// The exact repulsion and normaliser, `O(N²)`.
    fn exact(y: &Array2<f64>) -> (Array2<f64>, f64) {
        let n = y.nrows();
        let mut rep = Array2::<f64>::zeros((n, 2));
        let mut z = 0.0;
        for i in 0..n {
            for j in 0..n {
                if i == j {
                    continue;
                }
                let (dx, dy) = (y[[i, 0]] - y[[j, 0]], y[[i, 1]] - y[[j, 1]]);
                let w = 1.0 / (1.0 + dx * dx + dy * dy);
                z += w;
                rep[[i, 0]] += w * w * dx;
                rep[[i, 1]] += w * w * dy;
            }
        }
        (rep, z)
    }

    /// Clusters of points spread over `spread` map units.
    fn map(n: usize, spread: f64, seed: u64) -> Array2<f64> {
        let mut g = SplitMix64::new(seed, Purpose::Test, 0);
        let centres: Vec<[f64; 2]> = (0..6)
            .map(|_| [spread * (g.uniform() - 0.5), spread * (g.uniform() - 0.5)])
            .collect();
        Array2::from_shape_fn((n, 2), |(i, c)| centres[i % 6][c] + g.normal())
    }

    /// The forces' error relative to the exact forces (`‖F − F*‖ / ‖F*‖`
    /// over all points), and Z's relative error.
    fn errors(y: &Array2<f64>, params: &FftParams) -> (f64, f64) {
        let (rep, z) = repulsion(y, params);
        let (want, zw) = exact(y);
        let num: f64 = rep.iter().zip(&want).map(|(a, b)| (a - b).powi(2)).sum();
        let den: f64 = want.iter().map(|b| b * b).sum();
        ((num / den).sqrt(), (z - zw).abs() / zw)
    }

    #[test]
    fn interpolated_forces_match_the_exact_ones() {
        // openTSNE's defaults, on maps small and wide (a wide one has
        // more boxes than the minimum, each 1 unit wide). Measured: 5e-5,
        // 1.0e-2 and 2.0e-2 for the forces; 7e-7, 5e-4 and 1.8e-3 for Z.
        for (n, spread, force, norm) in [
            (300, 5.0, 1e-4, 1e-5),
            (500, 40.0, 2e-2, 1e-3),
            (400, 120.0, 3e-2, 3e-3),
        ] {
            let y = map(n, spread, n as u64);
            let (f, z) = errors(&y, &FftParams::default());
            assert!(
                f < force && z < norm,
                "n {n}, spread {spread}: forces {f:e}, Z {z:e}"
            );
        }
    }

    #[test]
    fn finer_grids_are_more_accurate() {
        let y = map(400, 20.0, 9);
        let coarse = errors(
            &y,
            &FftParams {
                nodes_per_box: 2,
                min_boxes: 10,
                max_box_width: 4.0,
            },
        );
        let default = errors(&y, &FftParams::default());
        let fine = errors(
            &y,
            &FftParams {
                nodes_per_box: 4,
                min_boxes: 80,
                max_box_width: 0.5,
            },
        );
        assert!(
            coarse.0 > default.0 && default.0 > fine.0,
            "{coarse:?} {default:?} {fine:?}"
        );
        assert!(fine.0 < 1e-3, "{fine:?}");
    }
}
