//! Exact k-nearest neighbours through blocked matrix products.

use ndarray::{Array1, Array2, ArrayView2};
use rayon::prelude::*;

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

/// Exact k nearest neighbours of every row of `x` among the other rows.
pub fn knn(x: ArrayView2<'_, f64>, k: usize) -> Result<Neighbours> {
    crate::check_input(x, 2)?;
    let n = x.nrows();
    if k == 0 || k >= n {
        return Err(param(
            "neighbours",
            format!("{k} is not in 1..{n} (it must be below the number of points)"),
        ));
    }
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
                let mut cand: Vec<(f64, usize)> = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| ((norms[i] + norms[j] - 2.0 * row[j]).max(0.0), j))
                    .collect();
                cand.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                cand.truncate(k);
                cand.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                (
                    cand.iter().map(|c| c.1).collect(),
                    cand.iter().map(|c| c.0.sqrt()).collect(),
                )
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
