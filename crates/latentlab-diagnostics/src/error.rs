//! The diagnostics layer's errors.

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiagnosticsError {
    /// The inputs are unusable (shapes, non-finite values, too few rows).
    #[error("{0}")]
    Input(String),
    /// A setting is out of range.
    #[error("{what}: {detail}")]
    Config {
        /// The setting.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The model failed.
    #[error(transparent)]
    Model(#[from] latentlab_model::ModelError),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, DiagnosticsError>;

pub(crate) fn input(msg: impl Into<String>) -> DiagnosticsError {
    DiagnosticsError::Input(msg.into())
}
