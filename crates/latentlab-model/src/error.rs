//! The model layer's errors.

use std::path::PathBuf;

use latentlab_tensor::TensorError;

/// What can go wrong building, training, saving or loading a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A tensor op failed (shapes, device faults).
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// A configuration value is out of range.
    #[error("{what}: {detail}")]
    Config {
        /// The setting.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// Input data do not fit the model.
    #[error("{0}")]
    Data(String),
    /// A checkpoint could not be read, written or understood.
    #[error("{path}: {detail}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Training produced a non-finite loss.
    #[error(
        "training diverged at step {step} (epoch {epoch}): {detail}; the weights of step {last_good} are kept. Likely cause: the learning rate ({lr}) is too high for this model; try a smaller --lr or --clip-grad"
    )]
    Diverged {
        /// The step whose loss was not finite (from 1).
        step: u64,
        /// The epoch of that step (from 1).
        epoch: usize,
        /// The last step whose update was applied.
        last_good: u64,
        /// The learning rate in use.
        lr: f32,
        /// What was not finite.
        detail: String,
    },
    /// A model from outside latentlab (an ONNX graph, a callback) failed;
    /// its own error, with what it says.
    #[error(transparent)]
    External(Box<dyn std::error::Error + Send + Sync>),
    /// The caller asked training to stop.
    #[error("training stopped at step {step}")]
    Stopped {
        /// The last step applied.
        step: u64,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

pub(crate) fn config_err(what: &'static str, detail: impl Into<String>) -> ModelError {
    ModelError::Config {
        what,
        detail: detail.into(),
    }
}

pub(crate) fn ckpt_err(path: &std::path::Path, detail: impl Into<String>) -> ModelError {
    ModelError::Checkpoint {
        path: path.into(),
        detail: detail.into(),
    }
}
