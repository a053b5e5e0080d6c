//! The tensor crate's error type.

use crate::Shape;

/// Everything that can go wrong in a tensor op. Every variant names the op.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TensorError {
    /// Operand shapes do not fit together.
    #[error("{op}: shape mismatch: {detail}")]
    ShapeMismatch {
        /// The op that was called.
        op: &'static str,
        /// Which shapes, and what was expected of them.
        detail: String,
    },
    /// A tensor with no elements; latentlab tensors always hold at least one.
    #[error("{op}: empty tensor of shape {shape} (tensors need at least one row and one column)")]
    Empty {
        /// The op that was called.
        op: &'static str,
        /// The empty shape.
        shape: Shape,
    },
    /// Host data whose length does not match the requested shape.
    #[error("{op}: {len} values given for shape {shape}, which needs {expected}")]
    DataLength {
        /// The op that was called.
        op: &'static str,
        /// Number of values given.
        len: usize,
        /// The requested shape.
        shape: Shape,
        /// Number of values the shape needs.
        expected: usize,
    },
    /// An argument outside its valid range (a non-finite learning rate, say).
    #[error("{op}: invalid argument: {detail}")]
    InvalidArgument {
        /// The op that was called.
        op: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A tensor larger than the device can hold in one buffer.
    #[error(
        "{op}: tensor of shape {shape} needs {bytes} bytes, beyond this device's limit of {limit} bytes per buffer"
    )]
    TooLarge {
        /// The op that was called.
        op: &'static str,
        /// The shape asked for.
        shape: Shape,
        /// Bytes it needs.
        bytes: u64,
        /// The device's per-buffer limit.
        limit: u64,
    },
    /// No GPU adapter could be opened.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    /// The GPU reported an error (validation, out of memory, lost device, timeout).
    #[error("GPU error in {op}: {detail}")]
    Gpu {
        /// The op during which it was noticed.
        op: &'static str,
        /// What the driver said.
        detail: String,
    },
}

/// Result alias for tensor ops.
pub type Result<T> = std::result::Result<T, TensorError>;
