//! # latentlab
//!
//! Train variational autoencoders and make their latent spaces visible,
//! measurable and editable. This facade re-exports the workspace's layers:
//!
//! - [`tensor`]: the `Backend` trait, the CPU and wgpu backends, Philox noise;
//! - [`data`]: datasets and `.npy` files;
//! - [`geometry`]: interpolation, the Gaussian shell, prior sampling;
//! - [`model`]: VAEs and autoencoders, training, checkpoints, `LatentModel`;
//! - [`onnx`]: encoders and decoders from any framework, through ONNX;
//! - the model, data, geometry, diagnostics, embedding, manipulation and
//!   visualisation layers, as their issues fill them.
//!
//! ```
//! use latentlab::prelude::*;
//!
//! let cpu = Cpu::new();
//! let eps = cpu.randn(Shape::new(2, 3), 42, 0)?;
//! assert_eq!(cpu.shape(&eps), Shape::new(2, 3));
//! # Ok::<(), TensorError>(())
//! ```

pub use latentlab_data as data;
pub use latentlab_diagnostics as diagnostics;
pub use latentlab_embed as embed;
pub use latentlab_geometry as geometry;
pub use latentlab_manipulate as manipulate;
pub use latentlab_model as model;
pub use latentlab_onnx as onnx;
pub use latentlab_report as report;
pub use latentlab_tensor as tensor;
pub use latentlab_viz as viz;

/// The version of latentlab.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The names most programs need.
pub mod prelude {
    pub use latentlab_tensor::{
        Activation, AdamStep, Backend, Cpu, Device, DeviceChoice, Shape, TensorError, Transpose,
        Wgpu,
    };
}
