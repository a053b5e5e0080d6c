//! `latentlab-diagnostics`: is this latent space healthy?
//!
//! - [`diagnose`] takes posterior means and log-variances (from a
//!   [`LatentModel`](latentlab_model::LatentModel) through [`Latents::encode`],
//!   or from any framework through [`Latents::new`]) and reports the page's
//!   figures (mean KL, active dimensions, posterior spread, the Gaussian
//!   aggregate KL and its verdict string, reproduced exactly) together with
//!   KL per dimension, the mutual information I(x; z), a Monte Carlo
//!   KL(q(z) ‖ p(z)) against the full mixture, the share of prior mass in
//!   holes of the aggregate posterior, and a [`Verdict`] that names the
//!   number behind each sentence.
//! - [`CollapseWatch`] warns during training when the KL falls towards
//!   collapse.
//! - [`disentangle`] scores codes against ground-truth factors: β-VAE,
//!   FactorVAE, MIG, SAP, DCI, modularity and explicitness.

mod aggregate;
pub mod disentangle;
mod error;
mod input;
mod summary;
mod verdict;
mod watch;

pub use aggregate::{Estimate, Holes, aggregate_kl_mc, holes, log_aggregate_density};
pub use error::{DiagnosticsError, Result};
pub use input::{Latents, Options};
pub use summary::{
    Accumulator, Diagnosis, PageMetrics, diagnose, diagnose_from_metrics, diagnose_streamed,
    kl_per_dim, page_metrics,
};
pub use verdict::{Evidence, State, Verdict};
pub use watch::CollapseWatch;
