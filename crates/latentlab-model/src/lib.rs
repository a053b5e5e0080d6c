//! # latentlab-model
//!
//! MLP VAEs and autoencoders on any [`latentlab_tensor::Backend`]:
//!
//! - [`config`]: the architecture ([`ModelConfig`]: any hidden sizes and
//!   latent size, Bernoulli or Gaussian decoder with fixed or learned
//!   variance, VAE or deterministic autoencoder) and the run
//!   ([`TrainConfig`]: β, KL warm-up and cycles, free bits, capacity
//!   annealing, Adam/AdamW, gradient clipping);
//! - [`vae`]: the model with its hand-written backward pass, the whole step
//!   on the device;
//! - [`train`]: the seeded training loop with per-epoch reports, atomic
//!   checkpoints and exact resume;
//! - [`eval`]: −ELBO, KL per dimension, active units and the
//!   importance-weighted `log p(x)`;
//! - [`objective`] and [`discriminator`]: the disentanglement_lib family
//!   of objectives and IWAE, and FactorVAE's discriminator;
//! - [`checkpoint`]: PyTorch-compatible safetensors files;
//! - [`latent`]: the [`LatentModel`] trait the analysis layers use.
//!
//! ```
//! use latentlab_model::{ModelConfig, TrainConfig, Trainer, LatentModel};
//! use latentlab_tensor::Cpu;
//!
//! let data = latentlab_data::dsprites::split(64, 16, 0);
//! let model = ModelConfig { input_dim: 4096, hidden: vec![32], latent: 4,
//!                           image_shape: Some((64, 64)), ..ModelConfig::mnist(4) };
//! let run = TrainConfig { epochs: 1, batch_size: 32, ..TrainConfig::default() };
//! let mut t = Trainer::new(Cpu::new(), model, run)?;
//! let reports = t.fit(&data.train, &data.test, &Default::default(), &mut |_| latentlab_model::Control::Continue)?;
//! assert!(reports[0].test.neg_elbo.is_finite());
//! let post = t.model().encode(data.test.images.view())?;
//! assert_eq!(post.mu.dim(), (16, 4));
//! # Ok::<(), latentlab_model::ModelError>(())
//! ```

pub mod checkpoint;
pub mod config;
pub mod discriminator;
pub mod error;
pub mod eval;
pub mod latent;
pub mod layers;
pub mod objective;
pub mod streams;
pub mod train;
pub mod vae;

pub use checkpoint::{Checkpoint, LoadOptions, NamedStacks, Rename, parse_named_stacks};
pub use config::{
    Capacity, KlSchedule, Likelihood, ModelConfig, ModelKind, Network, Stacks, TrainConfig,
};
pub use error::{ModelError, Result};
pub use eval::{IwEstimate, Metrics, evaluate, importance_weighted_nll};
pub use latent::{IdentityModel, LatentModel, POINT_MASS_LOGVAR, Posterior, check_finite};
pub use layers::{Dims, Init, Layer, LayerSpec, Mode, Pair, Param, Role, Stack, StackCache};
pub use train::{
    Control, EpochReport, Event, FaultPoint, Progress, SavePolicy, Trainer, state_path,
};
pub use vae::{AdamState, StepGrads, StepParams, StepStats, Vae};
