//! The manipulation layer's errors.

use std::path::PathBuf;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManipulateError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] latentlab_model::ModelError),
    /// Unusable inputs or settings.
    #[error("{0}")]
    Input(String),
    /// A file could not be read or written.
    #[error("{path}: {detail}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// Result alias.
pub type Result<T> = std::result::Result<T, ManipulateError>;

pub(crate) fn input(msg: impl Into<String>) -> ManipulateError {
    ManipulateError::Input(msg.into())
}
