//! The embedding layer's errors.

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// The input points are unusable.
    #[error("{0}")]
    Input(String),
    /// The tensor backend (the GPU) failed.
    #[error("device: {0}")]
    Device(#[from] latentlab_tensor::TensorError),
    /// A parameter is out of range.
    #[error("{name}: {detail}")]
    Param {
        /// The parameter.
        name: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// Result alias.
pub type Result<T> = std::result::Result<T, EmbedError>;

pub(crate) fn param(name: &'static str, detail: impl Into<String>) -> EmbedError {
    EmbedError::Param {
        name,
        detail: detail.into(),
    }
}
