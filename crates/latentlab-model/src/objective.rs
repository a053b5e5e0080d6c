//! The latent terms of the disentanglement_lib family of objectives, on a
//! batch of posterior parameters and samples: each a loss with its
//! gradients with respect to `mu`, `logvar` and `z`, in f64 on the host.
//!
//! These terms couple the images of a batch (an aggregate posterior, a
//! covariance, a kernel mean) and cost `O(B² d)` for a batch of `B` codes of
//! `d` dimensions: nothing next to the networks, so one host implementation
//! serves every backend. The reconstruction term, and the gradients through
//! the networks, stay where they are. Every function here is checked
//! against an independent PyTorch implementation written from the papers'
//! equations, with autograd's gradients
//! (`benches/peers/objectives_fixture.py`).
//!
//! - [`beta_tcvae`]: Chen et al. (2018), the ELBO's KL split into
//!   index-code mutual information, total correlation and dimension-wise KL,
//!   weighted α, β, γ, with log q(z) estimated by minibatch-weighted or
//!   minibatch-stratified sampling;
//! - [`dip`]: DIP-VAE-I and -II (Kumar et al. 2018), the covariance of the
//!   aggregate posterior pushed towards the identity;
//! - [`mmd`]: the maximum mean discrepancy between the batch's samples and
//!   prior samples (InfoVAE, WAE-MMD), with an RBF or inverse multiquadratic
//!   kernel;
//! - [`iwae`]: the importance-weighted bound of Burda et al. (2016) over
//!   `k` samples per image, with its partial gradients (the decoder's part
//!   goes back through the network as per-sample weights on the
//!   reconstruction NLL).

use serde::{Deserialize, Serialize};

use crate::error::{Result, config_err};

const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// The most importance samples per image IWAE takes (the decoder runs on
/// `batch × k` codes each step).
pub const MAX_IWAE_SAMPLES: usize = 5000;

/// A batch of codes: `rows × dims` row-major arrays.
#[derive(Clone, Copy, Debug)]
pub struct LatentBatch<'a> {
    /// Posterior means.
    pub mu: &'a [f64],
    /// Posterior log-variances.
    pub logvar: &'a [f64],
    /// Samples `z = mu + exp(logvar / 2) ⊙ ε`.
    pub z: &'a [f64],
    /// Codes in the batch (`B`).
    pub rows: usize,
    /// Latent dimensions (`d`).
    pub dims: usize,
}

impl LatentBatch<'_> {
    fn check(&self, what: &'static str) -> Result<()> {
        let n = self.rows * self.dims;
        if self.mu.len() != n || self.logvar.len() != n || self.z.len() != n {
            return Err(config_err(
                what,
                format!(
                    "mu, logvar and z must each hold {} × {} values; they hold {}, {} and {}",
                    self.rows,
                    self.dims,
                    self.mu.len(),
                    self.logvar.len(),
                    self.z.len()
                ),
            ));
        }
        if self.rows < 2 || self.dims == 0 {
            return Err(config_err(
                what,
                format!(
                    "needs a batch of at least 2 codes of at least 1 dimension, not {} × {}",
                    self.rows, self.dims
                ),
            ));
        }
        Ok(())
    }
}

/// A latent term: its value (per image, averaged over the batch), its
/// gradients, and its named parts for the per-epoch figures.
#[derive(Clone, Debug, PartialEq)]
pub struct LatentLoss {
    /// The weighted term that is optimised.
    pub loss: f64,
    /// `∂loss/∂mu` (`rows × dims`).
    pub grad_mu: Vec<f64>,
    /// `∂loss/∂logvar`, with `z` held fixed (the path through `z` is in
    /// [`LatentLoss::grad_z`]).
    pub grad_logvar: Vec<f64>,
    /// `∂loss/∂z`.
    pub grad_z: Vec<f64>,
    /// The unweighted parts, by name (`mi`, `tc`, `dwkl`, `mmd`, …).
    pub parts: Vec<(&'static str, f64)>,
}

/// How β-TCVAE estimates log q(z) from a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TcEstimator {
    /// Minibatch-weighted sampling: every code of the batch weighs
    /// `1 / (N B)`.
    Mws,
    /// Minibatch-stratified sampling: the code's own image weighs `1 / N`,
    /// one other `(N − M) / (N M)` and the rest `1 / M`, `M = B − 1`.
    Mss,
    /// The batch is the whole data set (`N = B`): every image weighs
    /// `1 / B`, and the terms are exact for the mixture the batch defines.
    Full,
}

/// `log w_ij`, the weight of image `j` in the estimate of `log q(z_i)`.
fn log_weights(estimator: TcEstimator, b: usize, n: usize) -> Vec<f64> {
    let (bf, nf) = (b as f64, n as f64);
    match estimator {
        TcEstimator::Mws => vec![-(nf * bf).ln(); b * b],
        TcEstimator::Full => vec![-bf.ln(); b * b],
        TcEstimator::Mss => {
            let m = bf - 1.0;
            let strat = ((nf - m) / (nf * m)).ln();
            let mut w = vec![-m.ln(); b * b];
            for i in 0..b {
                w[i * b + i] = -nf.ln();
                // The paper's stratum: the next image of the batch (the
                // last row wraps to the first). The reference code of Chen
                // et al. strides the flat matrix by B instead of B + 1 and
                // so fills columns 0 and 1, not these diagonals.
                w[i * b + (i + 1) % b] = strat;
            }
            w
        }
    }
}

/// `log N(z; mu, exp(lv))` of one value and its derivatives with respect to
/// `z`, `mu` and `lv`.
fn log_normal(z: f64, mu: f64, lv: f64) -> (f64, f64, f64, f64) {
    let inv = (-lv).exp();
    let d = z - mu;
    let v = -0.5 * (LN_2PI + lv + d * d * inv);
    (v, -d * inv, d * inv, -0.5 + 0.5 * d * d * inv)
}

/// Softmax weights and log-sum-exp of `x`.
fn softmax(x: &[f64]) -> (Vec<f64>, f64) {
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    (e.iter().map(|v| v / s).collect(), m + s.ln())
}

/// β-TCVAE's latent term on a batch from a data set of `dataset_size`
/// images: `α·MI + β·TC + γ·DWKL`, each averaged over the batch, where for
/// each code `z_i`
///
/// - `MI = log q(z_i|x_i) − log q(z_i)` (index-code mutual information),
/// - `TC = log q(z_i) − Σ_d log q(z_id)` (total correlation),
/// - `DWKL = Σ_d log q(z_id) − log p(z_i)` (dimension-wise KL),
///
/// with `q(z_i) ≈ Σ_j w_ij q(z_i|x_j)` and `q(z_id) ≈ Σ_j w_ij q(z_id|x_j)`
/// over the batch ([`TcEstimator`]). With α = β = γ = 1 the sum is the
/// Monte Carlo estimate of KL(q(z|x) ‖ p(z)).
pub fn beta_tcvae(
    batch: &LatentBatch<'_>,
    (alpha, beta, gamma): (f64, f64, f64),
    estimator: TcEstimator,
    dataset_size: usize,
) -> Result<LatentLoss> {
    batch.check("beta-tcvae")?;
    let (b, d) = (batch.rows, batch.dims);
    if dataset_size < b {
        return Err(config_err(
            "beta-tcvae",
            format!("the data set ({dataset_size} images) is smaller than the batch ({b})"),
        ));
    }
    if estimator == TcEstimator::Full && dataset_size != b {
        return Err(config_err(
            "beta-tcvae",
            format!(
                "the full estimate needs the whole data set in the batch: {b} codes of {dataset_size}"
            ),
        ));
    }
    let lw = log_weights(estimator, b, dataset_size);
    let (mut mi, mut tc, mut dwkl) = (0.0, 0.0, 0.0);
    let mut g_mu = vec![0.0; b * d];
    let mut g_lv = vec![0.0; b * d];
    let mut g_z = vec![0.0; b * d];
    let inv_b = 1.0 / b as f64;
    // Per code i: M[j][k] = log q(z_ik | x_j) and its derivatives.
    let mut m = vec![0.0; b * d];
    let mut dz = vec![0.0; b * d];
    let mut dmu = vec![0.0; b * d];
    let mut dlv = vec![0.0; b * d];
    let mut col = vec![0.0; b];
    let mut c_jk = vec![0.0; b * d];
    for i in 0..b {
        for j in 0..b {
            for k in 0..d {
                let (v, a, bm, c) = log_normal(
                    batch.z[i * d + k],
                    batch.mu[j * d + k],
                    batch.logvar[j * d + k],
                );
                m[j * d + k] = v;
                dz[j * d + k] = a;
                dmu[j * d + k] = bm;
                dlv[j * d + k] = c;
            }
        }
        // log q(z_i|x_i), log q(z_i), Σ_k log q(z_ik), log p(z_i).
        let own: f64 = m[i * d..(i + 1) * d].iter().sum();
        for j in 0..b {
            col[j] = lw[i * b + j] + m[j * d..(j + 1) * d].iter().sum::<f64>();
        }
        let (a_j, joint) = softmax(&col);
        let mut prod = 0.0;
        for k in 0..d {
            for j in 0..b {
                col[j] = lw[i * b + j] + m[j * d + k];
            }
            let (c, l) = softmax(&col);
            prod += l;
            for j in 0..b {
                c_jk[j * d + k] = c[j];
            }
        }
        let prior: f64 = (0..d)
            .map(|k| {
                let zk = batch.z[i * d + k];
                -0.5 * (LN_2PI + zk * zk)
            })
            .sum();
        mi += own - joint;
        tc += joint - prod;
        dwkl += prod - prior;
        // loss_i = α own + (β − α) joint + (γ − β) prod − γ prior.
        for j in 0..b {
            for k in 0..d {
                let w = inv_b
                    * (if i == j { alpha } else { 0.0 }
                        + (beta - alpha) * a_j[j]
                        + (gamma - beta) * c_jk[j * d + k]);
                g_z[i * d + k] += w * dz[j * d + k];
                g_mu[j * d + k] += w * dmu[j * d + k];
                g_lv[j * d + k] += w * dlv[j * d + k];
            }
        }
        for k in 0..d {
            g_z[i * d + k] += gamma * inv_b * batch.z[i * d + k];
        }
    }
    let (mi, tc, dwkl) = (mi * inv_b, tc * inv_b, dwkl * inv_b);
    Ok(LatentLoss {
        loss: alpha * mi + beta * tc + gamma * dwkl,
        grad_mu: g_mu,
        grad_logvar: g_lv,
        grad_z: g_z,
        parts: vec![("mi", mi), ("tc", tc), ("dwkl", dwkl)],
    })
}

/// Which DIP-VAE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DipVariant {
    /// The covariance of the posterior means.
    I,
    /// That plus the mean posterior variance on the diagonal: the
    /// covariance of the aggregate posterior.
    Ii,
}

/// DIP-VAE's regulariser: with `C` the batch covariance of `mu` (divided by
/// `B`, as disentanglement_lib computes it), plus `diag(mean exp(logvar))`
/// for DIP-VAE-II,
/// `λ_od Σ_{i≠j} C_ij² + λ_d Σ_i (C_ii − 1)²`.
pub fn dip(
    batch: &LatentBatch<'_>,
    variant: DipVariant,
    lambda_od: f64,
    lambda_d: f64,
) -> Result<LatentLoss> {
    batch.check("dip-vae")?;
    let (b, d) = (batch.rows, batch.dims);
    let bf = b as f64;
    let mean: Vec<f64> = (0..d)
        .map(|k| (0..b).map(|n| batch.mu[n * d + k]).sum::<f64>() / bf)
        .collect();
    let mut c = vec![0.0; d * d];
    for n in 0..b {
        for i in 0..d {
            let a = batch.mu[n * d + i] - mean[i];
            for j in 0..d {
                c[i * d + j] += a * (batch.mu[n * d + j] - mean[j]) / bf;
            }
        }
    }
    if variant == DipVariant::Ii {
        for i in 0..d {
            c[i * d + i] += (0..b).map(|n| batch.logvar[n * d + i].exp()).sum::<f64>() / bf;
        }
    }
    let (mut off, mut diag) = (0.0, 0.0);
    // G = ∂R/∂C.
    let mut g = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            let v = c[i * d + j];
            if i == j {
                diag += (v - 1.0) * (v - 1.0);
                g[i * d + j] = 2.0 * lambda_d * (v - 1.0);
            } else {
                off += v * v;
                g[i * d + j] = 2.0 * lambda_od * v;
            }
        }
    }
    // ∂R/∂mu_n = (2 / B) G (mu_n − mean); for II, ∂R/∂logvar_nk = G_kk exp(logvar_nk) / B.
    let mut g_mu = vec![0.0; b * d];
    let mut g_lv = vec![0.0; b * d];
    for n in 0..b {
        for k in 0..d {
            let s: f64 = (0..d)
                .map(|j| g[k * d + j] * (batch.mu[n * d + j] - mean[j]))
                .sum();
            g_mu[n * d + k] = 2.0 * s / bf;
            if variant == DipVariant::Ii {
                g_lv[n * d + k] = g[k * d + k] * batch.logvar[n * d + k].exp() / bf;
            }
        }
    }
    Ok(LatentLoss {
        loss: lambda_od * off + lambda_d * diag,
        grad_mu: g_mu,
        grad_logvar: g_lv,
        grad_z: vec![0.0; b * d],
        parts: vec![("dip_off_diagonal", off), ("dip_diagonal", diag)],
    })
}

/// The kernel of [`mmd`], with its scale `C`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MmdKernel {
    /// `k(x, y) = exp(−‖x − y‖² / C)`.
    Rbf {
        /// The bandwidth `C` (`2σ²`), above 0.
        scale: f64,
    },
    /// `k(x, y) = C / (C + ‖x − y‖²)` (Tolstikhin et al. use `C = 2 d` for
    /// a standard normal prior).
    InverseMultiquadratic {
        /// `C`, above 0.
        scale: f64,
    },
}

impl MmdKernel {
    /// `k` and `∂k/∂x` as a multiple of `x − y`.
    fn eval(self, r2: f64) -> (f64, f64) {
        match self {
            Self::Rbf { scale } => {
                let k = (-r2 / scale).exp();
                (k, -2.0 * k / scale)
            }
            Self::InverseMultiquadratic { scale } => {
                let k = scale / (scale + r2);
                (k, -2.0 * k * k / scale)
            }
        }
    }

    fn scale(self) -> f64 {
        match self {
            Self::Rbf { scale } | Self::InverseMultiquadratic { scale } => scale,
        }
    }
}

/// `λ · MMD²(z, prior)`, the biased (V-statistic) estimate over all pairs:
/// `mean k(z_i, z_j) + mean k(p_i, p_j) − 2 mean k(z_i, p_j)`, which is 0
/// when the two sets are equal. `prior` holds `rows × dims` draws of
/// `N(0, I)`; only `z` carries a gradient.
pub fn mmd(
    batch: &LatentBatch<'_>,
    prior: &[f64],
    kernel: MmdKernel,
    lambda: f64,
) -> Result<LatentLoss> {
    batch.check("mmd")?;
    let (b, d) = (batch.rows, batch.dims);
    if prior.len() != b * d {
        return Err(config_err(
            "mmd",
            format!("{} prior values for {b} × {d} codes", prior.len()),
        ));
    }
    if !(kernel.scale().is_finite() && kernel.scale() > 0.0) {
        return Err(config_err(
            "mmd",
            format!("the kernel scale {} must be finite and > 0", kernel.scale()),
        ));
    }
    let r2 = |a: &[f64], c: &[f64]| a.iter().zip(c).map(|(x, y)| (x - y) * (x - y)).sum::<f64>();
    fn row(x: &[f64], i: usize, d: usize) -> &[f64] {
        &x[i * d..(i + 1) * d]
    }
    let inv = 1.0 / (b * b) as f64;
    let (mut zz, mut pp, mut zp) = (0.0, 0.0, 0.0);
    let mut g_z = vec![0.0; b * d];
    for i in 0..b {
        let zi = row(batch.z, i, d);
        for j in 0..b {
            let (zj, pj) = (row(batch.z, j, d), row(prior, j, d));
            let (k, dk) = kernel.eval(r2(zi, zj));
            zz += k;
            // d/dz_i of k(z_i, z_j) + k(z_j, z_i).
            for t in 0..d {
                g_z[i * d + t] += lambda * inv * 2.0 * dk * (zi[t] - zj[t]);
            }
            let (k, dk) = kernel.eval(r2(zi, pj));
            zp += k;
            for t in 0..d {
                g_z[i * d + t] -= lambda * inv * 2.0 * dk * (zi[t] - pj[t]);
            }
            pp += kernel.eval(r2(row(prior, i, d), pj)).0;
        }
    }
    let value = (zz + pp - 2.0 * zp) * inv;
    Ok(LatentLoss {
        loss: lambda * value,
        grad_mu: vec![0.0; b * d],
        grad_logvar: vec![0.0; b * d],
        grad_z: g_z,
        parts: vec![("mmd", value)],
    })
}

/// A batch of IWAE's importance samples: `rows` images with `samples`
/// codes each. Sample `s` of image `i` is row `i · samples + s` of `z` and
/// `nll`.
#[derive(Clone, Copy, Debug)]
pub struct IwaeBatch<'a> {
    /// Posterior means (`rows × dims`).
    pub mu: &'a [f64],
    /// Posterior log-variances (`rows × dims`).
    pub logvar: &'a [f64],
    /// The samples (`rows · samples × dims`).
    pub z: &'a [f64],
    /// `−log p(x_i | z_is)` of each sample (`rows · samples`).
    pub nll: &'a [f64],
    /// Images (`B`).
    pub rows: usize,
    /// Latent dimensions (`d`).
    pub dims: usize,
    /// Samples per image (`k`).
    pub samples: usize,
}

/// IWAE's loss with its partial gradients.
#[derive(Clone, Debug, PartialEq)]
pub struct IwaeLoss {
    /// `−(1/B) Σ_i log (1/k) Σ_s w_is`: the negative k-sample bound per
    /// image.
    pub loss: f64,
    /// `∂loss/∂nll_is`: each sample's normalised importance weight over
    /// `B`. The reconstruction's gradient through the decoder is the
    /// per-sample NLL gradient scaled by it.
    pub nll_weights: Vec<f64>,
    /// `∂loss/∂mu` with the samples held fixed (`rows × dims`).
    pub grad_mu: Vec<f64>,
    /// `∂loss/∂logvar` with the samples held fixed (`rows × dims`).
    pub grad_logvar: Vec<f64>,
    /// `∂loss/∂z` through the prior and the posterior density, not through
    /// the decoder (`rows · samples × dims`).
    pub grad_z: Vec<f64>,
    /// `iw_bound`, the k-sample bound on log p(x) per image (nats).
    pub parts: Vec<(&'static str, f64)>,
}

/// The importance-weighted bound of Burda et al. (2016): for each image,
/// `log (1/k) Σ_s w_is` with `log w_is = log p(x_i|z_is) + log p(z_is) −
/// log q(z_is|x_i)`, averaged over the batch and negated. With `k = 1` it is
/// the one-sample Monte Carlo ELBO; it does not decrease in `k` in
/// expectation, and tends to `log p(x)`.
pub fn iwae(batch: &IwaeBatch<'_>) -> Result<IwaeLoss> {
    let (b, d, k) = (batch.rows, batch.dims, batch.samples);
    if b == 0 || d == 0 || k == 0 {
        return Err(config_err(
            "iwae",
            format!("needs at least 1 image, 1 dimension and 1 sample, not {b} × {d} × {k}"),
        ));
    }
    if batch.mu.len() != b * d
        || batch.logvar.len() != b * d
        || batch.z.len() != b * k * d
        || batch.nll.len() != b * k
    {
        return Err(config_err(
            "iwae",
            format!(
                "{b} images of {d} dimensions with {k} samples need {} means and log-variances, {} sample values and {} NLLs; got {}, {}, {} and {}",
                b * d,
                b * k * d,
                b * k,
                batch.mu.len(),
                batch.logvar.len(),
                batch.z.len(),
                batch.nll.len()
            ),
        ));
    }
    let inv_b = 1.0 / b as f64;
    let mut out = IwaeLoss {
        loss: 0.0,
        nll_weights: vec![0.0; b * k],
        grad_mu: vec![0.0; b * d],
        grad_logvar: vec![0.0; b * d],
        grad_z: vec![0.0; b * k * d],
        parts: Vec::new(),
    };
    let mut log_w = vec![0.0; k];
    // The posterior density's derivatives of image i's samples, kept from
    // the bound for the gradients.
    let mut derivs = vec![(0.0, 0.0, 0.0); k * d];
    for i in 0..b {
        for (s, lw) in log_w.iter_mut().enumerate() {
            let r = i * k + s;
            let mut v = -batch.nll[r];
            for j in 0..d {
                let z = batch.z[r * d + j];
                let (lq, dz, dmu, dlv) =
                    log_normal(z, batch.mu[i * d + j], batch.logvar[i * d + j]);
                derivs[s * d + j] = (dz, dmu, dlv);
                v += -0.5 * (LN_2PI + z * z) - lq;
            }
            *lw = v;
        }
        let (a, lse) = softmax(&log_w);
        out.loss -= inv_b * (lse - (k as f64).ln());
        // ∂loss/∂log w_is = −a_s / B.
        for (s, &a_s) in a.iter().enumerate() {
            let r = i * k + s;
            let c = a_s * inv_b;
            out.nll_weights[r] = c;
            for j in 0..d {
                let (dz, dmu, dlv) = derivs[s * d + j];
                // log w = … − z²/2 − log q: ∂/∂z = −z − dz, ∂/∂mu = −dmu,
                // ∂/∂logvar = −dlv.
                out.grad_z[r * d + j] = c * (batch.z[r * d + j] + dz);
                out.grad_mu[i * d + j] += c * dmu;
                out.grad_logvar[i * d + j] += c * dlv;
            }
        }
    }
    out.parts = vec![("iw_bound", -out.loss)];
    Ok(out)
}

/// The training objective: the ELBO (with today's β, warm-up, free bits
/// and capacity), or one of the disentanglement_lib family, saved in the
/// checkpoint's training config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Objective {
    /// Reconstruction + β·KL(q(z|x) ‖ p(z)) (analytic), as configured.
    #[default]
    Elbo,
    /// Reconstruction + [`beta_tcvae`]'s `α·MI + β·TC + γ·DWKL` in place
    /// of the KL.
    BetaTcvae {
        /// Weight of the index-code mutual information.
        alpha: f64,
        /// Weight of the total correlation.
        beta: f64,
        /// Weight of the dimension-wise KL.
        gamma: f64,
        /// How log q(z) is estimated.
        estimator: TcEstimator,
    },
    /// The ELBO + [`dip`]'s regulariser.
    DipVae {
        /// I or II.
        variant: DipVariant,
        /// λ_od, the off-diagonal weight.
        lambda_od: f64,
        /// λ_d, the diagonal weight (disentanglement_lib: 10·λ_od for -I,
        /// λ_od for -II).
        lambda_d: f64,
    },
    /// The ELBO (β·KL, β = 0 for WAE-MMD with a stochastic encoder) +
    /// [`mmd`]`·λ` against as many prior draws as the batch has codes.
    Mmd {
        /// The kernel and its scale.
        kernel: MmdKernel,
        /// λ, the MMD's weight.
        lambda: f64,
    },
    /// The ELBO + γ·TC, the total correlation estimated by a discriminator
    /// between the batch's codes and their dimension-wise permutation
    /// (Kim & Mnih 2018; [`crate::discriminator`]).
    FactorVae {
        /// γ, the weight of the TC estimate.
        gamma: f64,
        /// The discriminator and its optimiser.
        #[serde(default)]
        discriminator: crate::discriminator::DiscriminatorSpec,
    },
    /// The negative importance-weighted bound ([`iwae`]) over `samples`
    /// codes per image, in place of the ELBO.
    Iwae {
        /// Importance samples per image (`k`; 1 is the ELBO).
        samples: usize,
    },
}

impl Objective {
    /// The `--objective` name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Elbo => "elbo",
            Self::BetaTcvae { .. } => "beta-tcvae",
            Self::DipVae {
                variant: DipVariant::I,
                ..
            } => "dip-vae-i",
            Self::DipVae { .. } => "dip-vae-ii",
            Self::Mmd { .. } => "mmd",
            Self::FactorVae { .. } => "factor-vae",
            Self::Iwae { .. } => "iwae",
        }
    }

    /// Whether the objective replaces the analytic KL (β-TCVAE's
    /// decomposition is the whole KL; IWAE's bound holds its own
    /// log-density ratio) rather than adding to it.
    pub fn replaces_kl(&self) -> bool {
        matches!(self, Self::BetaTcvae { .. } | Self::Iwae { .. })
    }

    /// Whether [`Objective::latent_term`] needs prior draws.
    pub fn needs_prior_draws(&self) -> bool {
        matches!(self, Self::Mmd { .. })
    }

    /// Checks every weight.
    pub fn validate(&self) -> Result<()> {
        let weight = |what: &'static str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(config_err(what, format!("{v} must be finite and ≥ 0")))
            }
        };
        match *self {
            Self::Elbo => Ok(()),
            Self::BetaTcvae {
                alpha, beta, gamma, ..
            } => {
                weight("tc-alpha", alpha)?;
                weight("tc-beta", beta)?;
                weight("tc-gamma", gamma)
            }
            Self::DipVae {
                lambda_od,
                lambda_d,
                ..
            } => {
                weight("dip-lambda-od", lambda_od)?;
                weight("dip-lambda-d", lambda_d)
            }
            Self::Mmd { kernel, lambda } => {
                weight("mmd-lambda", lambda)?;
                let c = kernel.scale();
                if c.is_finite() && c > 0.0 {
                    Ok(())
                } else {
                    Err(config_err(
                        "mmd-scale",
                        format!("the kernel bandwidth {c} must be finite and > 0"),
                    ))
                }
            }
            Self::FactorVae {
                gamma,
                discriminator,
            } => {
                weight("factor-gamma", gamma)?;
                discriminator.validate()
            }
            Self::Iwae { samples } => {
                if (1..=MAX_IWAE_SAMPLES).contains(&samples) {
                    Ok(())
                } else {
                    Err(config_err(
                        "iwae-k",
                        format!(
                            "{samples} importance samples per image: give 1 to {MAX_IWAE_SAMPLES} (Burda et al. train with 5 and 50)"
                        ),
                    ))
                }
            }
        }
    }

    /// The latent term on a batch (`None` for the ELBO). `prior` holds as
    /// many `N(0, I)` draws as the batch has values, when
    /// [`Objective::needs_prior_draws`].
    pub fn latent_term(
        &self,
        batch: &LatentBatch<'_>,
        prior: Option<&[f64]>,
        dataset_size: usize,
    ) -> Result<Option<LatentLoss>> {
        Ok(Some(match *self {
            Self::Elbo => return Ok(None),
            Self::BetaTcvae {
                alpha,
                beta,
                gamma,
                estimator,
            } => beta_tcvae(batch, (alpha, beta, gamma), estimator, dataset_size)?,
            Self::DipVae {
                variant,
                lambda_od,
                lambda_d,
            } => dip(batch, variant, lambda_od, lambda_d)?,
            Self::Mmd { kernel, lambda } => {
                let p = prior.ok_or_else(|| config_err("mmd", "no prior draws given"))?;
                mmd(batch, p, kernel, lambda)?
            }
            Self::Iwae { .. } => {
                return Err(config_err(
                    "iwae",
                    "the importance-weighted bound is over decoded samples, not a term of the codes alone: see iwae()",
                ));
            }
            Self::FactorVae { .. } => {
                return Err(config_err(
                    "factor-vae",
                    "the TC estimate comes from a trained discriminator, not from the codes alone: see crate::discriminator",
                ));
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded batch: means spread out, log-variances around `lv`.
    fn batch(b: usize, d: usize, lv: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut u = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let mu: Vec<f64> = (0..b * d).map(|_| 2.0 * u()).collect();
        let logvar: Vec<f64> = (0..b * d).map(|_| lv + 0.4 * u()).collect();
        let z: Vec<f64> = (0..b * d)
            .map(|i| mu[i] + (0.5 * logvar[i]).exp() * 2.0 * u())
            .collect();
        (mu, logvar, z)
    }

    fn view<'a>(m: &'a [f64], l: &'a [f64], z: &'a [f64], d: usize) -> LatentBatch<'a> {
        LatentBatch {
            mu: m,
            logvar: l,
            z,
            rows: m.len() / d,
            dims: d,
        }
    }

    /// A latent term of `(mu, logvar, z)`.
    type Term<'a> = &'a dyn Fn(&[f64], &[f64], &[f64]) -> LatentLoss;

    /// Central differences of `f` against the analytic gradients.
    fn check_gradients(f: Term<'_>, b: usize, d: usize) {
        let (mu, lv, z) = batch(b, d, -1.0);
        let at = f(&mu, &lv, &z);
        let h = 1e-6;
        for (which, g) in [(0, &at.grad_mu), (1, &at.grad_logvar), (2, &at.grad_z)] {
            for i in 0..b * d {
                let mut p = [mu.clone(), lv.clone(), z.clone()];
                let mut q = p.clone();
                p[which][i] += h;
                q[which][i] -= h;
                let num = (f(&p[0], &p[1], &p[2]).loss - f(&q[0], &q[1], &q[2]).loss) / (2.0 * h);
                assert!(
                    (num - g[i]).abs() <= 1e-6 * (1.0 + num.abs()),
                    "argument {which}, element {i}: analytic {} numeric {num}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn beta_tcvae_gradients_match_finite_differences() {
        for est in [TcEstimator::Mws, TcEstimator::Mss] {
            check_gradients(
                &|m, l, z| beta_tcvae(&view(m, l, z, 3), (1.5, 6.0, 0.7), est, 100).unwrap(),
                5,
                3,
            );
        }
    }

    #[test]
    fn dip_gradients_match_finite_differences() {
        for v in [DipVariant::I, DipVariant::Ii] {
            check_gradients(
                &|m, l, z| dip(&view(m, l, z, 4), v, 5.0, 50.0).unwrap(),
                6,
                4,
            );
        }
    }

    #[test]
    fn mmd_gradients_match_finite_differences() {
        let prior: Vec<f64> = batch(6, 3, 0.0).2;
        for k in [
            MmdKernel::Rbf { scale: 6.0 },
            MmdKernel::InverseMultiquadratic { scale: 6.0 },
        ] {
            check_gradients(
                &|m, l, z| mmd(&view(m, l, z, 3), &prior, k, 2.0).unwrap(),
                6,
                3,
            );
        }
    }

    #[test]
    fn the_tcvae_terms_sum_to_the_monte_carlo_kl() {
        // α = β = γ = 1: log q(z_i|x_i) − log p(z_i), whatever the estimator.
        let (mu, lv, z) = batch(8, 4, -0.5);
        let b = view(&mu, &lv, &z, 4);
        let mc: f64 = (0..8)
            .map(|i| {
                (0..4)
                    .map(|k| {
                        let t = i * 4 + k;
                        log_normal(z[t], mu[t], lv[t]).0 + 0.5 * (LN_2PI + z[t] * z[t])
                    })
                    .sum::<f64>()
            })
            .sum::<f64>()
            / 8.0;
        for est in [TcEstimator::Mws, TcEstimator::Mss] {
            let l = beta_tcvae(&b, (1.0, 1.0, 1.0), est, 1000).unwrap();
            assert!((l.loss - mc).abs() < 1e-12, "{} vs {mc}", l.loss);
        }
    }

    /// Point masses (log-variance −30) at `codes`, as a batch that is
    /// the whole data set.
    fn full_tc(codes: &[f64], d: usize) -> Vec<(&'static str, f64)> {
        let lv = vec![-30.0; codes.len()];
        let b = view(codes, &lv, codes, d);
        beta_tcvae(&b, (1.0, 1.0, 1.0), TcEstimator::Full, codes.len() / d)
            .unwrap()
            .parts
    }

    #[test]
    fn a_factorised_posterior_has_no_total_correlation() {
        // q(z): uniform on the 8 corners of {−1, 1}³, the product of three
        // uniform marginals on {−1, 1}: TC = 0, MI = log 8.
        let d = 3;
        let grid: Vec<f64> = (0..8usize)
            .flat_map(|n| (0..d).map(move |k| if n >> k & 1 == 1 { 1.0 } else { -1.0 }))
            .collect();
        let parts = full_tc(&grid, d);
        assert!(parts[1].1.abs() < 1e-9, "TC {parts:?}");
        assert!((parts[0].1 - 8f64.ln()).abs() < 1e-9, "MI {parts:?}");
        // Two of the corners only, (−1,−1,−1) and (1,1,1): the dimensions
        // are copies of each other, TC = (d − 1)·log 2.
        let diag = [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0];
        let parts = full_tc(&diag, d);
        assert!((parts[1].1 - 2.0 * 2f64.ln()).abs() < 1e-9, "TC {parts:?}");
    }

    #[test]
    fn identical_samples_have_no_mmd() {
        let (mu, lv, z) = batch(7, 3, -1.0);
        for k in [
            MmdKernel::Rbf { scale: 6.0 },
            MmdKernel::InverseMultiquadratic { scale: 6.0 },
        ] {
            let l = mmd(&view(&mu, &lv, &z, 3), &z, k, 1.0).unwrap();
            assert!(l.loss.abs() < 1e-15, "{}", l.loss);
            assert!(l.grad_z.iter().all(|g| g.abs() < 1e-15));
        }
    }

    #[test]
    fn dip_is_zero_at_the_identity_covariance() {
        // Means ±1 on each axis in turn: the covariance of mu is I (mean 0).
        let d = 2;
        let mu = [1.0, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0, -1.0];
        let scaled: Vec<f64> = mu.iter().map(|v| v * 2f64.sqrt()).collect();
        let lv = vec![-40.0; 8];
        let l = dip(&view(&scaled, &lv, &scaled, d), DipVariant::I, 3.0, 30.0).unwrap();
        assert!(l.loss.abs() < 1e-12, "{}", l.loss);
    }

    #[test]
    fn bad_batches_are_errors() {
        let (mu, lv, z) = batch(4, 2, 0.0);
        let one = view(&mu[..2], &lv[..2], &z[..2], 2);
        assert!(beta_tcvae(&one, (1.0, 1.0, 1.0), TcEstimator::Mws, 10).is_err());
        let b = view(&mu, &lv, &z, 2);
        let e = beta_tcvae(&b, (1.0, 1.0, 1.0), TcEstimator::Mss, 3).unwrap_err();
        assert!(e.to_string().contains("smaller than the batch"), "{e}");
        let e = beta_tcvae(&b, (1.0, 1.0, 1.0), TcEstimator::Full, 40).unwrap_err();
        assert!(e.to_string().contains("whole data set"), "{e}");
        let e = mmd(&b, &z, MmdKernel::Rbf { scale: 0.0 }, 1.0).unwrap_err();
        assert!(e.to_string().contains("scale"), "{e}");
        assert!(mmd(&b, &z[..4], MmdKernel::Rbf { scale: 1.0 }, 1.0).is_err());
    }
}
