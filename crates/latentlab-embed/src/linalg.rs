//! A symmetric eigensolver (cyclic Jacobi) and a QR orthonormalisation:
//! all PCA needs, accurate to rounding for the small d of latent spaces.

use ndarray::{Array1, Array2};

/// Eigenvalues (descending) and eigenvectors (columns) of a symmetric matrix.
pub(crate) fn symmetric_eigen(a: &Array2<f64>) -> (Array1<f64>, Array2<f64>) {
    let n = a.nrows();
    let mut a = a.clone();
    let mut v = Array2::<f64>::eye(n);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[[i, j]] * a[[i, j]])
            .sum();
        let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
        if off <= 1e-30 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[[p, q]];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[[q, q]] - a[[p, p]]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let akp = a[[k, p]];
                    let akq = a[[k, q]];
                    a[[k, p]] = c * akp - s * akq;
                    a[[k, q]] = s * akp + c * akq;
                }
                for k in 0..n {
                    let apk = a[[p, k]];
                    let aqk = a[[q, k]];
                    a[[p, k]] = c * apk - s * aqk;
                    a[[q, k]] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let vkp = v[[k, p]];
                    let vkq = v[[k, q]];
                    v[[k, p]] = c * vkp - s * vkq;
                    v[[k, q]] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[[j, j]].total_cmp(&a[[i, i]]));
    let vals = Array1::from_iter(order.iter().map(|&i| a[[i, i]]));
    let mut vecs = Array2::<f64>::zeros((n, n));
    for (c, &i) in order.iter().enumerate() {
        vecs.column_mut(c).assign(&v.column(i));
    }
    (vals, vecs)
}

/// Orthonormalises the columns of `m` in place (modified Gram–Schmidt, twice).
pub(crate) fn orthonormalise(m: &mut Array2<f64>) {
    for _ in 0..2 {
        for j in 0..m.ncols() {
            for i in 0..j {
                let d = m.column(i).dot(&m.column(j));
                let ci = m.column(i).to_owned();
                m.column_mut(j).scaled_add(-d, &ci);
            }
            let norm = m.column(j).dot(&m.column(j)).sqrt();
            if norm > 0.0 {
                m.column_mut(j).mapv_inplace(|x| x / norm);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn eigen_reconstructs_and_orders() {
        let a = array![[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 1.0]];
        let (w, v) = symmetric_eigen(&a);
        assert!(w[0] >= w[1] && w[1] >= w[2]);
        let back = v.dot(&Array2::from_diag(&w)).dot(&v.t());
        for (x, y) in back.iter().zip(a.iter()) {
            assert!((x - y).abs() < 1e-12);
        }
        let id = v.t().dot(&v);
        for ((i, j), x) in id.indexed_iter() {
            assert!((x - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
        }
    }
}
