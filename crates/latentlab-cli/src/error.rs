//! The command line's error: a message for the user that names the flag or
//! file at fault, with the library layer's error kept as its
//! [`source`](std::error::Error::source).

use std::error::Error as StdError;
use std::fmt;

/// What went wrong in a command.
#[derive(Debug)]
#[non_exhaustive]
pub enum CliError {
    /// A flag's value or an input does not make sense; the message says why.
    Invalid(String),
    /// A library layer failed; `prefix` names the flag or file, printed
    /// verbatim before the layer's message (empty when that message already
    /// names it).
    Layer {
        /// E.g. `--checkpoint: `, or `--` before a setting's own name.
        prefix: String,
        /// The layer's error.
        source: Box<dyn StdError + Send + Sync + 'static>,
    },
}

/// `Result` with [`CliError`].
pub type Result<T, E = CliError> = std::result::Result<T, E>;

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(m) => f.write_str(m),
            Self::Layer { prefix, source } => write!(f, "{prefix}{source}"),
        }
    }
}

impl StdError for CliError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Invalid(_) => None,
            Self::Layer { source, .. } => Some(source.as_ref()),
        }
    }
}

impl From<String> for CliError {
    fn from(m: String) -> Self {
        Self::Invalid(m)
    }
}

impl From<&str> for CliError {
    fn from(m: &str) -> Self {
        Self::Invalid(m.to_string())
    }
}

/// Every layer error converts with `?`, its message unchanged.
macro_rules! from_layer {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for CliError {
            fn from(e: $t) -> Self {
                Self::Layer { prefix: String::new(), source: Box::new(e) }
            }
        }
    )*};
}

from_layer!(
    latentlab::tensor::TensorError,
    latentlab::data::DataError,
    latentlab::data::npy::NpyError,
    latentlab::model::ModelError,
    latentlab::onnx::OnnxError,
    latentlab::geometry::GeometryError,
    latentlab::diagnostics::DiagnosticsError,
    latentlab::embed::EmbedError,
    latentlab::manipulate::ManipulateError,
    latentlab::report::ReportError,
    std::io::Error,
    serde_json::Error,
    ndarray::ShapeError,
    safetensors::SafeTensorError,
);

/// `.context("--flag")`: the error, named by the flag or file it concerns.
pub trait Context<T> {
    /// Wraps the error with `context` in front of its message.
    fn context(self, context: impl Into<String>) -> Result<T>;
}

impl<T, E: StdError + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| CliError::Layer {
            prefix: format!("{}: ", context.into()),
            source: Box::new(e),
        })
    }
}

impl CliError {
    /// The layer's error `e` with `prefix` printed before it, verbatim.
    pub fn prefixed(prefix: &str, e: impl StdError + Send + Sync + 'static) -> Self {
        Self::Layer {
            prefix: prefix.to_string(),
            source: Box::new(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_unchanged_and_sources_kept() {
        let io = std::fs::read("/nonexistent/x").context("--data /nonexistent/x");
        let e = io.unwrap_err();
        assert!(e.to_string().starts_with("--data /nonexistent/x: "), "{e}");
        let src = e.source().expect("the io error is kept");
        assert!(src.downcast_ref::<std::io::Error>().is_some());
        let plain: CliError = "--steps: must be at least 1".into();
        assert_eq!(plain.to_string(), "--steps: must be at least 1");
        assert!(plain.source().is_none());
    }
}
