//! Statistics for auditing random streams: correlation at every small lag
//! (a shifted copy of a stream is the typical fault of a bad derivation),
//! Kolmogorov–Smirnov distance to a uniform law, and Spearman's rank
//! correlation (for outcomes against seed numbers).
//!
//! Under independence `√n · r` is close to a standard normal, so a test can
//! bound `|r|` by a few `1/√n` and stay deterministic: the draws are seeded.
//!
//! ```
//! use latentlab_rng::{Purpose, SplitMix64, audit};
//!
//! let draw = |index| {
//!     let mut g = SplitMix64::new(0, Purpose::Test, index);
//!     (0..4096).map(|_| g.uniform()).collect::<Vec<f64>>()
//! };
//! let (a, b) = (draw(0), draw(1));
//! assert!(audit::pearson(&a, &b).abs() < 5.0 / 64.0);
//! // A stream shifted by three draws is caught at lag 3.
//! let (r, lag) = audit::max_lagged_correlation(&a[3..], &a, 8);
//! assert!(r > 0.99 && lag == 3);
//! ```

/// Pearson's correlation of the common prefix of `a` and `b` (0 when either
/// is constant or shorter than 2).
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n < 2 {
        return 0.0;
    }
    let (a, b) = (&a[..n], &b[..n]);
    let ma = a.iter().sum::<f64>() / n as f64;
    let mb = b.iter().sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa == 0.0 || sbb == 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}

/// The largest `|r|` between `a[i]` and `b[i + lag]` over lags
/// `-max_lag ..= max_lag` (a negative lag shifts `a` instead), with the
/// signed correlation and its lag. `b` shifted by `l` draws shows at lag `l`.
pub fn max_lagged_correlation(a: &[f64], b: &[f64], max_lag: usize) -> (f64, isize) {
    let mut best = (0.0f64, 0isize);
    for lag in 0..=max_lag {
        for (sign, r) in [
            (1isize, pearson(a, b.get(lag..).unwrap_or(&[]))),
            (-1, pearson(a.get(lag..).unwrap_or(&[]), b)),
        ] {
            if r.abs() > best.0.abs() {
                best = (r, sign * lag as isize);
            }
        }
    }
    best
}

/// The Kolmogorov–Smirnov distance between the sample `x` and the uniform
/// law on `[lo, hi)`. `√n · D` above 1.95 rejects uniformity at 0.1 %.
pub fn ks_uniform(x: &[f64], lo: f64, hi: f64) -> f64 {
    let mut s: Vec<f64> = x.iter().map(|v| (v - lo) / (hi - lo)).collect();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    s.iter()
        .enumerate()
        .map(|(i, &f)| {
            let f = f.clamp(0.0, 1.0);
            (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
        })
        .fold(0.0, f64::max)
}

/// Ranks from 1, ties given their mean rank.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&i, &j| x[i].total_cmp(&x[j]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation of `x` and `y` (ties averaged).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_of_known_pairs() {
        let a = [1.0, 2.0, 3.0, 4.0];
        assert!((pearson(&a, &[2.0, 4.0, 6.0, 8.0]) - 1.0).abs() < 1e-12);
        assert!((pearson(&a, &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // x and x² around 0: uncorrelated.
        assert!(pearson(&[-2.0, -1.0, 1.0, 2.0], &[4.0, 1.0, 1.0, 4.0]).abs() < 1e-12);
        assert_eq!(pearson(&a, &[1.0; 4]), 0.0);
    }

    #[test]
    fn lags_are_found_in_both_directions() {
        let a: Vec<f64> = (0..200).map(|i| ((i * 7919) % 211) as f64).collect();
        let (r, lag) = max_lagged_correlation(&a, &a[5..], 8);
        assert!(r > 0.999 && lag == -5, "{r} {lag}");
        let (r, lag) = max_lagged_correlation(&a[2..], &a, 8);
        assert!(r > 0.999 && lag == 2, "{r} {lag}");
    }

    #[test]
    fn ks_of_a_perfect_grid_and_a_skewed_sample() {
        let grid: Vec<f64> = (0..1000).map(|i| (i as f64 + 0.5) / 1000.0).collect();
        assert!(ks_uniform(&grid, 0.0, 1.0) <= 0.0005 + 1e-12);
        let skew: Vec<f64> = grid.iter().map(|u| u * u).collect();
        // sup |u² − u| = ¼ at u = ½.
        assert!((ks_uniform(&skew, 0.0, 1.0) - 0.25).abs() < 2e-3);
    }

    #[test]
    fn spearman_with_ties() {
        // scipy.stats.spearmanr([1, 2, 2, 3], [1, 3, 2, 4]) = 0.9486832980505138
        let r = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]);
        assert!((r - 0.948_683_298_050_513_8).abs() < 1e-12, "{r}");
        assert!((spearman(&[1.0, 5.0, 9.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
    }
}
