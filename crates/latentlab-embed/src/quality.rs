//! How faithful a map is: trustworthiness@k and k-NN label accuracy.

use ndarray::{Array1, ArrayView2};
use rayon::prelude::*;

use crate::error::{EmbedError, Result, param};
use crate::knn::knn;

/// `size` distinct rows of `0..n` drawn uniformly with `seed` (a partial
/// Fisher–Yates shuffle), ascending; every row when `n ≤ size`. The fixed
/// subset on which large maps are scored.
pub fn sample_rows(n: usize, size: usize, seed: u64) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    if n <= size {
        return all;
    }
    let mut g = latentlab_rng::SplitMix64::new(seed, latentlab_rng::Purpose::Embed, 8);
    for i in 0..size {
        let j = i + g.below((n - i) as u64) as usize;
        all.swap(i, j);
    }
    all.truncate(size);
    all.sort_unstable();
    all
}

/// Trustworthiness@k (Venna & Kaski; scikit-learn's definition): 1 minus a
/// penalty for every map neighbour that is not a neighbour in the original
/// space, weighted by how far down the original ranking it sits. 1 is
/// perfect; k < N/2.
pub fn trustworthiness(
    original: ArrayView2<'_, f64>,
    embedded: ArrayView2<'_, f64>,
    k: usize,
) -> Result<f64> {
    let n = original.nrows();
    if embedded.nrows() != n {
        return Err(EmbedError::Input(format!(
            "{n} original points but {} embedded",
            embedded.nrows()
        )));
    }
    if k == 0 || 2 * k >= n {
        return Err(param("k", format!("{k} must be in 1..N/2 (N = {n})")));
    }
    crate::check_input(original, 2)?;
    let emb = knn(embedded, k)?;
    let norms: Array1<f64> = original.rows().into_iter().map(|r| r.dot(&r)).collect();
    const BLOCK: usize = 256;
    let penalty: f64 = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let lo = b * BLOCK;
            let hi = (lo + BLOCK).min(n);
            let g = original.slice(ndarray::s![lo..hi, ..]).dot(&original.t());
            let mut d = vec![0.0; n];
            let mut total = 0.0;
            for i in lo..hi {
                let row = g.row(i - lo);
                for (j, dj) in d.iter_mut().enumerate() {
                    *dj = (norms[i] + norms[j] - 2.0 * row[j]).max(0.0);
                }
                for &j in emb.indices.row(i) {
                    // Rank of j among i's original neighbours (1-based,
                    // self excluded, ties broken by index).
                    let dj = d[j];
                    let rank = d
                        .iter()
                        .enumerate()
                        .filter(|&(l, &dl)| l != i && (dl < dj || (dl == dj && l < j)))
                        .count()
                        + 1;
                    total += (rank as f64 - k as f64).max(0.0);
                }
            }
            total
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum();
    let (nf, kf) = (n as f64, k as f64);
    Ok(1.0 - penalty * 2.0 / (nf * kf * (2.0 * nf - 3.0 * kf - 1.0)))
}

/// Leave-one-out k-NN classification accuracy of `labels` in the map
/// (majority vote, ties to the nearest neighbour's label).
pub fn knn_accuracy(embedded: ArrayView2<'_, f64>, labels: &[i64], k: usize) -> Result<f64> {
    if labels.len() != embedded.nrows() {
        return Err(EmbedError::Input(format!(
            "{} labels for {} points",
            labels.len(),
            embedded.nrows()
        )));
    }
    let nb = knn(embedded, k)?;
    let hits = nb
        .indices
        .rows()
        .into_iter()
        .enumerate()
        .filter(|(i, row)| {
            let mut votes: Vec<(i64, usize, usize)> = Vec::new(); // label, count, first rank
            for (r, &j) in row.iter().enumerate() {
                match votes.iter_mut().find(|v| v.0 == labels[j]) {
                    Some(v) => v.1 += 1,
                    None => votes.push((labels[j], 1, r)),
                }
            }
            let best = votes
                .iter()
                .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))
                .map(|v| v.0);
            best == Some(labels[*i])
        })
        .count();
    Ok(hits as f64 / labels.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    #[test]
    fn an_isometry_is_perfectly_trustworthy_and_a_shuffle_is_not() {
        let mut g = latentlab_rng::SplitMix64::new(1, latentlab_rng::Purpose::Test, 0);
        let x = Array2::from_shape_simple_fn((60, 3), || g.normal());
        assert!((trustworthiness(x.view(), x.view(), 5).unwrap() - 1.0).abs() < 1e-12);
        let shuffled = Array2::from_shape_fn((60, 3), |(i, j)| x[[(i * 37) % 60, j]]);
        assert!(trustworthiness(x.view(), shuffled.view(), 5).unwrap() < 0.8);
        assert!(trustworthiness(x.view(), x.view(), 30).is_err());
    }

    #[test]
    fn knn_accuracy_counts_majorities() {
        let y = array![[0.0], [0.1], [0.2], [10.0], [10.1], [10.2]];
        assert_eq!(knn_accuracy(y.view(), &[0, 0, 0, 1, 1, 1], 2).unwrap(), 1.0);
        assert_eq!(knn_accuracy(y.view(), &[0, 1, 0, 1, 0, 1], 2).unwrap(), 0.0);
    }
}
