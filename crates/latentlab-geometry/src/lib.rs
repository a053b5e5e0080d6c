//! # latentlab-geometry
//!
//! The geometry of a VAE's latent space under the prior `N(0, I_d)`, on plain
//! `ndarray` arrays (no model needed):
//!
//! - [`shell`]: exact statistics of `‖z‖` (the chi distribution): mean,
//!   standard deviation, quantiles, the log-probability of a ball, and how
//!   typical a code's norm is; stable for `d` up to 10⁵ and beyond.
//! - [`interpolate`]: linear, SLERP, the page's normalise-then-rescale SLERP
//!   and norm-corrected interpolation, with every edge case defined, plus the
//!   norm profile and prior log-density along any path.
//! - [`sample`]: seeded draws from the prior and uniformly on its shell.

pub mod interpolate;
pub mod sample;
pub mod shell;
mod special;

/// Errors of the geometry functions.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum GeometryError {
    /// An argument outside its valid range.
    #[error("{what}: {detail}")]
    Invalid {
        /// Which argument or function.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
}

pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> GeometryError {
    GeometryError::Invalid {
        what,
        detail: detail.into(),
    }
}
