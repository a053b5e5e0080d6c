//! `latentlab-embed`: 2-D maps of latent means (N × d) from any framework.
//!
//! - [`Pca`]: exact (covariance eigendecomposition) or randomized.
//! - [`Tsne`]: perplexity calibration, early exaggeration, momentum and
//!   gains; exact O(N²) gradients for small N, Barnes–Hut or FFT-accelerated
//!   interpolation ([`interp`], FIt-SNE's) for large N; PCA initialisation;
//!   seeded, deterministic for any thread count.
//! - [`Umap`]: exact k-NN, the fuzzy simplicial set, spectral
//!   initialisation, SGD with negative sampling; seeded.
//! - [`trustworthiness`] and [`knn_accuracy`] compare maps.
//!
//! ```
//! use latentlab_embed::{Pca, PcaParams};
//! use ndarray::array;
//! let x = array![[1.0, 2.0, 0.0], [2.0, 4.1, 0.1], [3.0, 6.0, -0.1], [4.0, 8.2, 0.0]];
//! let pca = Pca::fit(x.view(), &PcaParams { components: 2, ..PcaParams::default() }).unwrap();
//! assert!(pca.explained_variance_ratio()[0] > 0.99);
//! let y = pca.transform(x.view()).unwrap();
//! assert_eq!(y.dim(), (4, 2));
//! ```

mod error;
pub mod interp;
mod knn;
mod linalg;
mod pca;
mod quality;
mod tsne;
mod umap;

pub use error::{EmbedError, Result};
pub use knn::{EXACT_LIMIT, Neighbours, knn, knn_approx, knn_auto, knn_on};
pub use pca::{Pca, PcaParams, PcaSolver};
pub use quality::{knn_accuracy, trustworthiness};
pub use tsne::{Tsne, TsneMethod, TsneParams};
pub use umap::{Umap, UmapParams, find_ab};

/// Checks an N × d input: N ≥ `min_rows`, d ≥ 1, every value finite.
pub(crate) fn check_input(x: ndarray::ArrayView2<'_, f64>, min_rows: usize) -> Result<()> {
    let (n, d) = x.dim();
    if d == 0 {
        return Err(EmbedError::Input("the points have 0 dimensions".into()));
    }
    if n < min_rows {
        return Err(EmbedError::Input(format!(
            "{n} point(s); at least {min_rows} are needed"
        )));
    }
    for (i, row) in x.rows().into_iter().enumerate() {
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(EmbedError::Input(format!(
                "row {i} column {j} is {}; every value must be finite",
                row[j]
            )));
        }
    }
    Ok(())
}
