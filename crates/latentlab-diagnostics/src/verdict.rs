//! A plain verdict: healthy, posterior collapse, or holes, each sentence
//! naming the number behind it. The page's comparison table is the guide:
//! collapse shows as KL near zero and inactive dimensions; holes as prior
//! mass the aggregate posterior does not cover.

use serde::Serialize;

/// Below this mean KL (nats) the page calls collapse.
pub const COLLAPSE_KL: f64 = 1.0;
/// Below this mean KL (nats) the page warns of a weak encoding.
pub const WEAK_KL: f64 = 5.0;
/// Below this share of active dimensions the page calls collapse.
pub const COLLAPSE_ACTIVE: f64 = 0.1;
/// Below this share of active dimensions the page warns.
pub const FEW_ACTIVE: f64 = 0.3;
/// Above this mean posterior std the page warns.
pub const WIDE_POSTERIOR: f64 = 0.9;
/// Holes are called when the hole share exceeds its chance level by this.
pub const HOLE_EXCESS: f64 = 0.2;

/// The state of a latent space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Informative and covering the prior.
    #[default]
    Healthy,
    /// The posterior (or most of its dimensions) equals the prior.
    PosteriorCollapse,
    /// The aggregate posterior leaves much of the prior's mass empty.
    Holes,
}

/// The verdict.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Verdict {
    /// The state.
    pub state: State,
    /// One sentence for a person.
    pub summary: String,
    /// Every finding, each with its number.
    pub findings: Vec<String>,
}

/// The numbers a verdict is drawn from (a [`crate::Diagnosis`] gives them
/// through `evidence()`).
#[derive(Clone, Debug, PartialEq)]
pub struct Evidence {
    /// Mean KL per point, nats.
    pub mean_kl: f64,
    /// Active dimensions (variance of mu above 0.01).
    pub active_dims: usize,
    /// All dimensions.
    pub total_dims: usize,
    /// Mean posterior standard deviation.
    pub mean_posterior_std: f64,
    /// I(x; z), nats.
    pub mutual_information: f64,
    /// Its standard error.
    pub mutual_information_se: f64,
    /// Points diagnosed.
    pub n: usize,
    /// Share of prior draws in holes.
    pub hole_fraction: f64,
    /// The same share by chance.
    pub hole_fraction_null: f64,
    /// The density-ratio threshold of a hole.
    pub hole_ratio: f64,
}

impl Verdict {
    /// The verdict on a diagnosis's evidence.
    pub fn of(d: &Evidence) -> Self {
        let ratio = d.active_dims as f64 / d.total_dims as f64;
        let excess = d.hole_fraction - d.hole_fraction_null;
        let mut findings = Vec::new();
        let collapsed_kl = d.mean_kl < COLLAPSE_KL;
        let collapsed_dims = ratio < COLLAPSE_ACTIVE;
        if collapsed_kl {
            findings.push(format!(
                "mean KL is {:.3} nats per point, below {COLLAPSE_KL}: the posterior barely leaves the prior",
                d.mean_kl
            ));
        } else if d.mean_kl < WEAK_KL {
            findings.push(format!(
                "mean KL is {:.2} nats per point, below {WEAK_KL}: a weak encoding",
                d.mean_kl
            ));
        }
        if collapsed_dims {
            findings.push(format!(
                "only {} of {} dimensions are active (variance of mu above 0.01)",
                d.active_dims, d.total_dims
            ));
        } else if ratio < FEW_ACTIVE {
            findings.push(format!(
                "{} of {} dimensions are active (variance of mu above 0.01)",
                d.active_dims, d.total_dims
            ));
        }
        if d.mean_posterior_std > WIDE_POSTERIOR {
            findings.push(format!(
                "mean posterior std is {:.3}, above {WIDE_POSTERIOR}",
                d.mean_posterior_std
            ));
        }
        findings.push(format!(
            "I(x; z) ≈ {:.2} ± {:.2} nats (at most ln N = {:.2})",
            d.mutual_information,
            d.mutual_information_se,
            (d.n as f64).ln()
        ));
        findings.push(format!(
            "{:.1} % of prior draws fall where the aggregate posterior's density is below {} of the prior's ({:.1} % by chance)",
            100.0 * d.hole_fraction,
            d.hole_ratio,
            100.0 * d.hole_fraction_null
        ));
        let state = if collapsed_kl || collapsed_dims {
            State::PosteriorCollapse
        } else if excess > HOLE_EXCESS {
            State::Holes
        } else {
            State::Healthy
        };
        let summary = match state {
            State::PosteriorCollapse => format!(
                "POSTERIOR COLLAPSE: mean KL {:.3} nats, {} of {} dimensions active; the decoder ignores most of z",
                d.mean_kl, d.active_dims, d.total_dims
            ),
            State::Holes => format!(
                "HOLES: {:.1} % of the prior's mass lies where the aggregate posterior is thin ({:.1} % by chance); samples from the prior there decode poorly",
                100.0 * d.hole_fraction,
                100.0 * d.hole_fraction_null
            ),
            State::Healthy => format!(
                "HEALTHY: mean KL {:.2} nats over {} active of {} dimensions, and the aggregate posterior covers the prior ({:.1} % in holes, {:.1} % by chance)",
                d.mean_kl,
                d.active_dims,
                d.total_dims,
                100.0 * d.hole_fraction,
                100.0 * d.hole_fraction_null
            ),
        };
        Self {
            state,
            summary,
            findings,
        }
    }
}
