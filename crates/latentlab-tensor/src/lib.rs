//! # latentlab-tensor
//!
//! The tensor layer of latentlab: a small [`Backend`] trait with every op a
//! VAE training step needs, implemented twice:
//!
//! - [`Cpu`]: `ndarray` tensors, `rayon` parallelism and a packed SIMD matrix
//!   product;
//! - [`Wgpu`]: hand-written WGSL compute shaders on any Vulkan, Metal or DX12
//!   device (including Mesa's software lavapipe), with tensors resident on the
//!   device.
//!
//! Both draw reparameterisation noise from the same counter-based generator
//! ([`philox`]), so a CPU run and a GPU run with one seed see the same ε. The
//! [`conformance`] suite checks every op of every backend against an
//! independent `f64` reference.
//!
//! ```
//! use latentlab_tensor::{Backend, Cpu, Shape, Transpose};
//!
//! let cpu = Cpu::new();
//! let x = cpu.upload(&[1.0, 2.0, 3.0, 4.0], Shape::new(2, 2))?;
//! let w = cpu.upload(&[1.0, 0.0, 0.0, 1.0], Shape::new(2, 2))?;
//! let b = cpu.upload(&[0.5, -0.5], Shape::new(1, 2))?;
//! let y = cpu.linear(&x, &w, &b)?; // x · wᵀ + b
//! assert_eq!(cpu.download(&y)?, vec![1.5, 1.5, 3.5, 3.5]);
//! let xtx = cpu.matmul(&x, Transpose::Yes, &x, Transpose::No)?;
//! assert_eq!(cpu.download(&xtx)?, vec![10.0, 14.0, 14.0, 20.0]);
//! # Ok::<(), latentlab_tensor::TensorError>(())
//! ```

mod backend;
mod checks;
pub mod conformance;
mod conv;
mod cpu;
mod device;
mod error;
mod gpu;
mod shape;
mod simd;

pub use backend::{
    Activation, AdamStep, Backend, BatchNormGrads, ConvGrads, GaussianNllOutput, KlOutput,
    LinearGrads, NormStats, Transpose, Unary,
};
pub use conv::{Conv2dGeometry, ConvTranspose2dGeometry};
pub use cpu::Cpu;
pub use device::{Device, DeviceChoice};
pub use error::{Result, TensorError};
pub use gpu::{GpuInfo, Wgpu, WgpuTensor};
pub use latentlab_rng::philox;
pub use shape::Shape;
