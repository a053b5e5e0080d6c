//! Evaluation: reconstruction, KL, −ELBO and active units over a dataset, and
//! the importance-weighted estimate of `log p(x)` (Burda et al. 2016).

use latentlab_tensor::{Backend, Shape};
use ndarray::{ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::config::ModelKind;
use crate::error::{ModelError, Result};
use crate::streams;
use crate::vae::Vae;

/// Figures over a dataset, in nats per image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// `E_q[−log p(x|z)]`, one sample of `z` per image.
    pub rec: f64,
    /// `KL(q(z|x) ‖ p(z))`.
    pub kl: f64,
    /// `rec + kl`, the negative ELBO.
    pub neg_elbo: f64,
    /// Units with `Var_x(E_q[z_j]) > 0.01` (Burda et al. 2016).
    pub active_units: usize,
    /// KL of each dimension (nats per image).
    pub kl_per_dim: Vec<f64>,
    /// Variance over the data of each dimension's posterior mean.
    pub mu_variance: Vec<f64>,
    /// Number of images.
    pub n: usize,
}

pub(crate) fn upload_rows<B: Backend>(be: &B, x: ArrayView2<'_, f32>) -> Result<B::Tensor> {
    let (r, c) = x.dim();
    let owned;
    let slice = match x.as_slice() {
        Some(s) => s,
        None => {
            // Row-major whatever the input's layout (a transposed view is
            // column-major, and `to_owned` would keep that).
            owned = x.iter().copied().collect::<Vec<f32>>();
            &owned[..]
        }
    };
    Ok(be.upload(slice, Shape::new(r, c))?)
}

fn check_data(x: ArrayView2<'_, f32>, dim: usize) -> Result<()> {
    if x.nrows() == 0 {
        return Err(ModelError::Data("no images to evaluate".into()));
    }
    if x.ncols() != dim {
        return Err(ModelError::Data(format!(
            "images have {} values each but the model expects {dim}",
            x.ncols()
        )));
    }
    Ok(())
}

/// Reconstruction, KL, −ELBO and active units of `model` on `x`, in batches
/// of `batch`, with one seeded sample of `z` per image.
pub fn evaluate<B: Backend>(
    model: &Vae<B>,
    x: ArrayView2<'_, f32>,
    batch: usize,
    seed: u64,
) -> Result<Metrics> {
    model.backend().run(|| evaluate_here(model, x, batch, seed))
}

fn evaluate_here<B: Backend>(
    model: &Vae<B>,
    x: ArrayView2<'_, f32>,
    batch: usize,
    seed: u64,
) -> Result<Metrics> {
    let cfg = model.config();
    check_data(x, cfg.input_dim)?;
    let be = model.backend();
    let d = cfg.latent;
    let (mut rec, mut kl_dims) = (0.0f64, vec![0.0f64; d]);
    // Welford over posterior means, per dimension.
    let (mut mean, mut m2) = (vec![0.0f64; d], vec![0.0f64; d]);
    let mut seen = 0usize;
    for (k, chunk) in x.axis_chunks_iter(Axis(0), batch.max(1)).enumerate() {
        let xt = upload_rows(be, chunk)?;
        let (mu, lv) = model.encode_device(&xt)?;
        let z = match &lv {
            Some(lv) => {
                be.reparameterize(&mu, lv, streams::eval_noise_key(seed), k as u64)?
                    .0
            }
            None => mu.clone(),
        };
        let raw = model.decode_raw_device(&z)?;
        let nll = model.reconstruction_nll_device(&xt, &raw)?;
        rec += f64::from(be.scalar(&be.sum_all(&nll)?)?);
        if let Some(lv) = &lv {
            let kl = be.kl_normal(&mu, lv)?;
            for (a, b) in kl_dims
                .iter_mut()
                .zip(be.download(&be.sum_rows(&kl.elementwise)?)?)
            {
                *a += f64::from(b);
            }
        }
        let mu_host = be.download(&mu)?;
        for row in mu_host.chunks_exact(d) {
            seen += 1;
            for j in 0..d {
                let v = f64::from(row[j]);
                let delta = v - mean[j];
                mean[j] += delta / seen as f64;
                m2[j] += delta * (v - mean[j]);
            }
        }
    }
    let n = x.nrows() as f64;
    let mu_variance: Vec<f64> = m2
        .iter()
        .map(|s| if seen > 1 { s / (seen - 1) as f64 } else { 0.0 })
        .collect();
    let kl_per_dim: Vec<f64> = kl_dims.iter().map(|k| k / n).collect();
    let kl: f64 = kl_per_dim.iter().sum();
    let rec = rec / n;
    let active_units = mu_variance.iter().filter(|&&v| v > 0.01).count();
    Ok(Metrics {
        rec,
        kl,
        neg_elbo: rec + kl,
        active_units,
        kl_per_dim,
        mu_variance,
        n: x.nrows(),
    })
}

/// The importance-weighted estimate of the test negative log-likelihood.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IwEstimate {
    /// Mean over images of `−log p̂(x)` (nats per image).
    pub nll: f64,
    /// Its standard error over images.
    pub std_error: f64,
    /// Samples per image.
    pub k: usize,
    /// Images.
    pub n: usize,
}

/// `−log p(x) ≈ −log (1/k) Σ_i p(x|z_i) p(z_i) / q(z_i|x)` with `z_i ~ q(z|x)`
/// (Burda et al. 2016; `k = 5000` in the literature), seeded. Samples are
/// decoded `chunk` at a time so memory stays bounded for any `k`.
pub fn importance_weighted_nll<B: Backend>(
    model: &Vae<B>,
    x: ArrayView2<'_, f32>,
    k: usize,
    seed: u64,
) -> Result<IwEstimate> {
    model
        .backend()
        .run(|| importance_weighted_nll_here(model, x, k, seed))
}

fn importance_weighted_nll_here<B: Backend>(
    model: &Vae<B>,
    x: ArrayView2<'_, f32>,
    k: usize,
    seed: u64,
) -> Result<IwEstimate> {
    let cfg = model.config();
    check_data(x, cfg.input_dim)?;
    if cfg.kind != ModelKind::Vae {
        return Err(ModelError::Data(
            "an autoencoder has no posterior: the importance-weighted bound needs a VAE".into(),
        ));
    }
    if k == 0 {
        return Err(ModelError::Data(
            "k, the number of importance samples, must be at least 1".into(),
        ));
    }
    let be = model.backend();
    let key = streams::importance_noise_key(seed);
    let d = cfg.latent;
    let ln2pi = (2.0 * std::f64::consts::PI).ln();
    // Rows decoded per pass: about 4096 samples.
    let per_pass = 4096usize;
    let mut per_image = Vec::with_capacity(x.nrows());
    for (i, img) in x.outer_iter().enumerate() {
        let img_t = upload_rows(be, img.insert_axis(Axis(0)))?;
        let (mu, lv) = model.encode_device(&img_t)?;
        let (mu, lv) = (
            be.download(&mu)?,
            be.download(&lv.expect("a VAE has logvar"))?,
        );
        let img_host: Vec<f32> = img.iter().copied().collect();
        // Streaming log-sum-exp.
        let (mut max, mut acc) = (f64::NEG_INFINITY, 0.0f64);
        let mut done = 0usize;
        let mut pass = 0u64;
        while done < k {
            let m = per_pass.min(k - done);
            let rep = |v: &[f32]| -> Vec<f32> { (0..m).flat_map(|_| v.iter().copied()).collect() };
            let mu_r = be.upload(&rep(&mu), Shape::new(m, d))?;
            let lv_r = be.upload(&rep(&lv), Shape::new(m, d))?;
            let stream = ((i as u64) << 20) + pass;
            let (z, eps) = be.reparameterize(&mu_r, &lv_r, key, stream)?;
            let x_r = be.upload(&rep(&img_host), Shape::new(m, cfg.input_dim))?;
            let raw = model.decode_raw_device(&z)?;
            let nll = be.download(&model.reconstruction_nll_device(&x_r, &raw)?)?;
            let (z, eps) = (be.download(&z)?, be.download(&eps)?);
            for s in 0..m {
                let (zs, es) = (&z[s * d..(s + 1) * d], &eps[s * d..(s + 1) * d]);
                let mut log_pz = 0.0;
                let mut log_q = 0.0;
                for j in 0..d {
                    let (zj, ej, lvj) = (f64::from(zs[j]), f64::from(es[j]), f64::from(lv[j]));
                    log_pz -= 0.5 * (ln2pi + zj * zj);
                    log_q -= 0.5 * (ln2pi + lvj + ej * ej);
                }
                let lw = -f64::from(nll[s]) + log_pz - log_q;
                if lw > max {
                    acc = acc * (max - lw).exp() + 1.0;
                    max = lw;
                } else {
                    acc += (lw - max).exp();
                }
            }
            done += m;
            pass += 1;
        }
        per_image.push(-(max + acc.ln() - (k as f64).ln()));
    }
    let n = per_image.len() as f64;
    let mean = per_image.iter().sum::<f64>() / n;
    let var = if per_image.len() > 1 {
        per_image.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Ok(IwEstimate {
        nll: mean,
        std_error: (var / n).sqrt(),
        k,
        n: per_image.len(),
    })
}
