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
pub use knn::{EXACT_LIMIT, Neighbours, knn, knn_approx, knn_auto, knn_on, recall};
pub use pca::{Pca, PcaParams, PcaSolver};
pub use quality::{knn_accuracy, sample_rows, trustworthiness};
pub use tsne::{FFT_FROM, Tsne, TsneMethod, TsneParams};
pub use umap::{Umap, UmapParams, find_ab};

/// What a map is doing, for progress reports: its callbacks get the phase,
/// the steps done and the steps in the phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The k-nearest-neighbour search.
    Neighbours,
    /// Input affinities: t-SNE's calibrated P, UMAP's fuzzy simplicial set.
    Affinities,
    /// The starting layout (PCA for t-SNE, spectral for UMAP).
    Initialisation,
    /// Gradient descent on the layout.
    Optimisation,
}

impl Phase {
    /// The phase's name as the progress bar and `--json` print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Neighbours => "neighbours",
            Self::Affinities => "affinities",
            Self::Initialisation => "initialisation",
            Self::Optimisation => "optimisation",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks the points of a t-SNE or UMAP map: at least 3, every value
/// finite, and not all one point (the map of N copies of a point would be
/// degenerate: every distance is 0 and no neighbourhood can be calibrated).
pub fn check_points(x: ndarray::ArrayView2<'_, f64>) -> Result<()> {
    check_input(x, 3)?;
    let first = x.row(0);
    if x.rows().into_iter().all(|r| r == first) {
        return Err(EmbedError::Input(format!(
            "all {} points are the same point; a map of them would be degenerate",
            x.nrows()
        )));
    }
    Ok(())
}

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
