//! The VAE (and autoencoder) on any [`Backend`]: an encoder stack, the
//! `fc_mu`/`fc_logvar` heads and a decoder stack ([`crate::Network`]), with
//! the hand-written backward pass of every layer. Every op of a training step runs on the backend's device;
//! one small read-back per step (the batch's reconstruction sum and the KL of
//! each latent dimension, `d + 1` floats) lets the step detect a non-finite
//! loss *before* the update and drive free bits and capacity annealing.
//! The objectives that couple a batch read more back: the codes for the
//! host terms of [`crate::objective`] and for FactorVAE's permutation (with
//! the discriminator's `B × 2` logits), and IWAE's per-sample NLLs and the
//! decoder's gradient with respect to its `B·k` codes.

use latentlab_tensor::{AdamStep, Backend, Shape, Transpose};

use crate::config::{Likelihood, ModelConfig, Network};
use crate::discriminator::{Discriminator, shuffle_codes};
use crate::error::{ModelError, Result, config_err};
use crate::layers::{Init, Mode, StackCache};
use crate::objective::{IwaeBatch, LatentBatch, Objective};
use crate::streams;

/// A VAE or autoencoder whose parameters live on `B`'s device.
#[derive(Clone, Debug)]
pub struct Vae<B: Backend> {
    backend: B,
    config: ModelConfig,
    net: Network,
    params: Vec<B::Tensor>,
    /// The decoder's fixed log-variance (`1 × input`) for a fixed-variance
    /// Gaussian likelihood.
    fixed_logvar: Option<B::Tensor>,
}

/// A parameter on the host: name, `[rows, cols]`, values.
pub type NamedHost = (String, [usize; 2], Vec<f32>);

/// Adam's moments, one pair per parameter.
#[derive(Clone, Debug)]
pub struct AdamState<B: Backend> {
    /// First moments.
    pub m: Vec<B::Tensor>,
    /// Second moments.
    pub v: Vec<B::Tensor>,
}

impl<B: Backend> AdamState<B> {
    /// Zero moments for `model`.
    pub fn new(model: &Vae<B>) -> Result<Self> {
        let zeros = |_| -> Result<Vec<B::Tensor>> {
            model
                .params
                .iter()
                .map(|p| Ok(model.backend.zeros(model.backend.shape(p))?))
                .collect()
        };
        Ok(Self {
            m: zeros(())?,
            v: zeros(())?,
        })
    }
}

/// The per-step knobs of the loss and the update, as [`crate::Trainer`]
/// sets them for each step of a run.
#[derive(Clone, Copy, Debug)]
pub struct StepParams {
    /// β times the schedule's weight.
    pub beta: f32,
    /// The free-bits floor in nats per dimension.
    pub free_bits: Option<f32>,
    /// `(C(t), γ)` of capacity annealing.
    pub capacity: Option<(f32, f32)>,
    /// Clip the global gradient norm to this.
    pub clip_grad_norm: Option<f32>,
    /// The run's seed (the noise is keyed by it, see [`crate::streams`]).
    pub seed: u64,
    /// The step number (from 1): the noise stream and Adam's step.
    pub step: u64,
    /// Adam's learning rate.
    pub lr: f32,
    /// Decoupled weight decay (AdamW).
    pub weight_decay: f32,
    /// The objective's latent term, beside (or for β-TCVAE, instead of)
    /// the KL.
    pub objective: Objective,
    /// Images in the training set (β-TCVAE's estimators weigh by it).
    pub dataset_size: usize,
}

/// What one step's backward pass gives, before its update.
#[derive(Clone, Debug)]
pub struct StepGrads<T> {
    /// The gradient of every trainable parameter, in checkpoint order
    /// (`None` for buffers).
    pub grads: Vec<Option<T>>,
    /// The buffers' new values the step's training-mode forward pass
    /// computed (batch normalisation's running statistics), by parameter
    /// index; [`Vae::train_step`] writes them with the update.
    pub buffers: Vec<(usize, T)>,
    /// FactorVAE: the gradients of the discriminator's own loss, taken at
    /// the same weights, for [`Discriminator::apply`].
    pub discriminator: Option<Vec<T>>,
}

/// What a step measured, before its update.
#[derive(Clone, Debug)]
pub struct StepStats {
    /// Sum over the batch of the per-image reconstruction NLL (nats).
    pub rec_sum: f64,
    /// Sum over the batch of each dimension's KL (nats).
    pub kl_dims_sum: Vec<f64>,
    /// The optimised objective per image.
    pub loss: f64,
    /// The objective's latent parts on this batch (β-TCVAE's `mi`, `tc`,
    /// `dwkl`; DIP-VAE's; `mmd`), unweighted; empty for the ELBO.
    pub terms: Vec<(&'static str, f64)>,
}

impl<B: Backend> Vae<B> {
    /// A new model with PyTorch's default initialisation of `nn.Linear`,
    /// `nn.Conv2d` and `nn.ConvTranspose2d` (weights and biases uniform in
    /// `±1/√fan_in`), seeded.
    pub fn new(backend: B, config: ModelConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let mut host = Vec::new();
        for (k, p) in config.parameters().iter().enumerate() {
            let len = p.shape.len();
            host.push(match p.init {
                Init::Constant(v) => vec![v; len],
                Init::Uniform { fan_in } => {
                    let bound = 1.0 / (fan_in as f64).sqrt();
                    let mut g = streams::init(seed, k);
                    (0..len)
                        .map(|_| {
                            let u = (g.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                            ((2.0 * u - 1.0) * bound) as f32
                        })
                        .collect()
                }
            });
        }
        Self::from_host(backend, config, host)
    }

    /// A model from host parameters in [`ModelConfig::parameter_shapes`] order.
    pub fn from_host(backend: B, config: ModelConfig, host: Vec<Vec<f32>>) -> Result<Self> {
        config.validate()?;
        let net = config.network()?;
        let shapes = config.parameter_shapes();
        if host.len() != shapes.len() {
            return Err(config_err(
                "parameters",
                format!(
                    "{} tensors given, the architecture has {}",
                    host.len(),
                    shapes.len()
                ),
            ));
        }
        let mut params = Vec::with_capacity(host.len());
        for ((name, [r, c]), data) in shapes.iter().zip(&host) {
            if data.len() != r * c {
                return Err(config_err(
                    "parameters",
                    format!("{name} has {} values, expected {r}×{c}", data.len()),
                ));
            }
            if let Some(i) = data.iter().position(|v| !v.is_finite()) {
                return Err(config_err(
                    "parameters",
                    format!("{name}[{i}] is not finite"),
                ));
            }
            // Batch normalisation divides by √(running_var + ε).
            if name.ends_with(".running_var")
                && let Some(i) = data.iter().position(|v| *v < 0.0)
            {
                return Err(config_err(
                    "parameters",
                    format!("{name}[{i}] = {} is a negative variance", data[i]),
                ));
            }
            params.push(backend.upload(data, Shape::new(*r, *c))?);
        }
        let fixed_logvar = match config.likelihood {
            Likelihood::Gaussian {
                logvar,
                learned: false,
            } => Some(backend.upload(
                &vec![logvar; config.input_dim],
                Shape::new(1, config.input_dim),
            )?),
            _ => None,
        };
        Ok(Self {
            backend,
            config,
            net,
            params,
            fixed_logvar,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The layers, built for the model's input.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// The backend the parameters live on.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The parameters on the device, in checkpoint order.
    pub fn params(&self) -> &[B::Tensor] {
        &self.params
    }

    /// Every parameter downloaded: `(name, [rows, cols], values)`.
    pub fn to_host(&self) -> Result<Vec<NamedHost>> {
        self.config
            .parameter_shapes()
            .into_iter()
            .zip(&self.params)
            .map(|((name, shape), p)| Ok((name, shape, self.backend.download(p)?)))
            .collect()
    }

    /// The same model on another backend.
    pub fn to_backend<C: Backend>(&self, backend: C) -> Result<Vae<C>> {
        let host = self.to_host()?.into_iter().map(|(_, _, v)| v).collect();
        Vae::from_host(backend, self.config.clone(), host)
    }

    fn decoder_logvar(&self) -> Option<&B::Tensor> {
        match self.config.likelihood {
            Likelihood::Bernoulli => None,
            Likelihood::Gaussian { learned: true, .. } => self.params.last(),
            Likelihood::Gaussian { learned: false, .. } => self.fixed_logvar.as_ref(),
        }
    }

    /// Encodes a batch on the device: `(mu, logvar)`; the autoencoder has no
    /// logvar.
    pub fn encode_device(&self, x: &B::Tensor) -> Result<(B::Tensor, Option<B::Tensor>)> {
        self.check_input(x)?;
        let (be, net, p) = (&self.backend, &self.net, &self.params[..]);
        let h = net.encoder.forward(be, p, x)?;
        let m = net.mu.forward(be, p, &h)?;
        let v = match &net.logvar {
            Some(l) => Some(l.forward(be, p, &h)?),
            None => None,
        };
        Ok((m, v))
    }

    /// The decoder's raw output on the device: logits (Bernoulli) or means
    /// (Gaussian).
    pub fn decode_raw_device(&self, z: &B::Tensor) -> Result<B::Tensor> {
        let s = self.backend.shape(z);
        if s.cols != self.config.latent {
            return Err(ModelError::Data(format!(
                "codes have {} dimensions but the model's latent size is {}",
                s.cols, self.config.latent
            )));
        }
        self.net.decoder.forward(&self.backend, &self.params, z)
    }

    /// The mean of `p(x|z)` on the device: `sigmoid(logits)` or the Gaussian mean.
    pub fn decode_mean_device(&self, z: &B::Tensor) -> Result<B::Tensor> {
        let raw = self.decode_raw_device(z)?;
        Ok(match self.config.likelihood {
            Likelihood::Bernoulli => self
                .backend
                .activation(latentlab_tensor::Activation::Sigmoid, &raw)?,
            Likelihood::Gaussian { .. } => raw,
        })
    }

    /// Per-image `−log p(x|z)` (`rows × 1`) for images `x` and decoder output `raw`.
    pub fn reconstruction_nll_device(&self, x: &B::Tensor, raw: &B::Tensor) -> Result<B::Tensor> {
        Ok(match self.decoder_logvar() {
            None => self.backend.bce_with_logits(raw, x)?.0,
            Some(lv) => self.backend.gaussian_nll(x, raw, lv)?.per_row,
        })
    }

    fn check_input(&self, x: &B::Tensor) -> Result<()> {
        let s = self.backend.shape(x);
        if s.cols != self.config.input_dim {
            return Err(ModelError::Data(format!(
                "images have {} values each but the model expects {} ({})",
                s.cols,
                self.config.input_dim,
                self.config.input_dims()
            )));
        }
        Ok(())
    }

    /// One optimisation step on the batch `x`: forward, loss read-back,
    /// backward, optional clipping and Adam. On a non-finite loss the
    /// parameters are left untouched and the stats say so (`loss` is NaN).
    pub fn train_step(
        &mut self,
        x: &B::Tensor,
        hp: &StepParams,
        adam: &mut AdamState<B>,
    ) -> Result<StepStats> {
        self.train_step_with(x, hp, adam, None)
    }

    /// [`Vae::train_step`] with FactorVAE's discriminator, which takes its
    /// own Adam step on the same batch after the model's.
    pub fn train_step_with(
        &mut self,
        x: &B::Tensor,
        hp: &StepParams,
        adam: &mut AdamState<B>,
        disc: Option<&mut Discriminator<B>>,
    ) -> Result<StepStats> {
        let (stats, grads) = self.gradients_at(x, hp, None, disc.as_deref())?;
        let Some(StepGrads {
            mut grads,
            buffers,
            discriminator,
        }) = grads
        else {
            return Ok(stats);
        };
        let be = self.backend.clone();
        if let Some(max) = hp.clip_grad_norm {
            let mut total: Option<B::Tensor> = None;
            for g in grads.iter().flatten() {
                let s = be.sum_squares(g)?;
                match &mut total {
                    Some(t) => be.axpy(1.0, &s, t)?,
                    None => total = Some(s),
                }
            }
            let norm = match &total {
                Some(t) => f64::from(be.scalar(t)?).sqrt(),
                None => 0.0,
            };
            if !norm.is_finite() {
                return Ok(StepStats {
                    loss: f64::NAN,
                    ..stats
                });
            }
            if norm > f64::from(max) {
                let s = (f64::from(max) / norm) as f32;
                for g in grads.iter_mut().flatten() {
                    be.scale_inplace(s, g)?;
                }
            }
        }
        let step = AdamStep {
            weight_decay: hp.weight_decay,
            ..AdamStep::new(hp.lr, hp.step)
        };
        for (i, g) in grads.iter().enumerate() {
            if let Some(g) = g {
                be.adam_step(
                    &mut self.params[i],
                    g,
                    &mut adam.m[i],
                    &mut adam.v[i],
                    &step,
                )?;
            }
        }
        for (i, t) in buffers {
            self.params[i] = t;
        }
        if let (Some(d), Some(g)) = (disc, discriminator) {
            d.apply(&g)?;
        }
        Ok(stats)
    }

    /// The step's loss and the gradient of the optimised objective (per
    /// image) with respect to every trainable parameter, in checkpoint
    /// order, with the buffers' new values, without an update. The forward
    /// pass runs in training mode (batch normalisation on the batch's own
    /// statistics). The gradients are `None` when the loss is not finite
    /// (`stats.loss` is then NaN).
    pub fn gradients(
        &self,
        x: &B::Tensor,
        hp: &StepParams,
    ) -> Result<(StepStats, Option<StepGrads<B::Tensor>>)> {
        self.gradients_at(x, hp, None, None)
    }

    /// [`Vae::gradients`] with the reparameterisation noise ε given
    /// (`batch × latent`, or `batch · k × latent` for IWAE's `k` samples
    /// per image, image by image) instead of drawn from the run's stream:
    /// for parity checks against another implementation's step.
    /// `z = mu + σ ⊙ ε` is formed through the host.
    pub fn gradients_with_noise(
        &self,
        x: &B::Tensor,
        eps: &B::Tensor,
        hp: &StepParams,
    ) -> Result<(StepStats, Option<StepGrads<B::Tensor>>)> {
        self.gradients_at(x, hp, Some(eps), None)
    }

    /// [`Vae::gradients`] for FactorVAE, with its discriminator (and,
    /// optionally, the noise ε as [`Vae::gradients_with_noise`] takes it).
    pub fn gradients_with_discriminator(
        &self,
        x: &B::Tensor,
        eps: Option<&B::Tensor>,
        hp: &StepParams,
        disc: &Discriminator<B>,
    ) -> Result<(StepStats, Option<StepGrads<B::Tensor>>)> {
        self.gradients_at(x, hp, eps, Some(disc))
    }

    fn gradients_at(
        &self,
        x: &B::Tensor,
        hp: &StepParams,
        eps: Option<&B::Tensor>,
        disc: Option<&Discriminator<B>>,
    ) -> Result<(StepStats, Option<StepGrads<B::Tensor>>)> {
        self.check_input(x)?;
        let be = &self.backend;
        let (net, params) = (&self.net, &self.params[..]);
        let batch = be.shape(x).rows;
        let inv_b = 1.0 / batch as f32;
        let is_vae = net.logvar.is_some();

        // Forward.
        let mut enc_cache = net.encoder.forward_cached(be, params, x, Mode::Train)?;
        let h = net.encoder.cached_output(&enc_cache, x);
        let mu = net.mu.forward(be, params, h)?;
        let lv = match &net.logvar {
            Some(l) => Some(l.forward(be, params, h)?),
            None => None,
        };
        if let (Objective::Iwae { samples }, Some(lv)) = (hp.objective, &lv) {
            return self.iwae_gradients(x, hp, eps, samples, enc_cache, &mu, lv);
        }
        let z = match (&lv, eps) {
            (Some(lv), None) => {
                be.reparameterize(&mu, lv, streams::train_noise_key(hp.seed), hp.step)?
                    .0
            }
            (Some(lv), Some(eps)) => {
                if be.shape(eps) != be.shape(&mu) {
                    return Err(ModelError::Data(format!(
                        "ε is {}, the codes are {}",
                        be.shape(eps),
                        be.shape(&mu)
                    )));
                }
                let sd: Vec<f32> = be
                    .download(lv)?
                    .into_iter()
                    .map(|v| (0.5 * v).exp())
                    .collect();
                let noise = be.mul(&be.upload(&sd, be.shape(lv))?, eps)?;
                be.add(&mu, &noise)?
            }
            (None, _) => mu.clone(),
        };
        let mut dec_cache = net.decoder.forward_cached(be, params, &z, Mode::Train)?;
        let out = net.decoder.cached_output(&dec_cache, &z);
        let (rec_el, grad_out, grad_dec_lv) = match self.decoder_logvar() {
            None => {
                let (l, g) = be.bce_with_logits_elementwise(out, x)?;
                (l, g, None)
            }
            Some(dlv) => {
                let (l, gm, glv) = be.gaussian_nll_elementwise(x, out, dlv)?;
                (l, gm, Some(glv))
            }
        };
        let kl = match &lv {
            Some(lv) => Some(be.kl_normal_elementwise(&mu, lv)?),
            None => None,
        };

        // The one read-back.
        let rec_sum = f64::from(be.scalar(&be.sum_all(&rec_el)?)?);
        let kl_dims_sum: Vec<f64> = match &kl {
            Some((el, _, _)) => be
                .download(&be.sum_rows(el)?)?
                .into_iter()
                .map(f64::from)
                .collect(),
            None => vec![0.0; self.config.latent],
        };
        // The objective's latent term, on the host (O(B² d), see
        // crate::objective).
        // A lone code (an epoch's last batch of one image) has no batch to
        // estimate an aggregate from: that step optimises the ELBO.
        let latent = match (&lv, hp.objective) {
            (_, Objective::Elbo | Objective::FactorVae { .. }) | (None, _) => None,
            _ if batch < 2 => None,
            (Some(lv), obj) => {
                let host = |t: &B::Tensor| -> Result<Vec<f64>> {
                    Ok(be.download(t)?.into_iter().map(f64::from).collect())
                };
                let (m, l, zz) = (host(&mu)?, host(lv)?, host(&z)?);
                let prior = if obj.needs_prior_draws() {
                    let mut buf = vec![0.0f32; m.len()];
                    latentlab_tensor::philox::fill_normal(
                        streams::objective_noise_key(hp.seed),
                        hp.step,
                        0,
                        &mut buf,
                    );
                    Some(buf.into_iter().map(f64::from).collect::<Vec<_>>())
                } else {
                    None
                };
                let b = LatentBatch {
                    mu: &m,
                    logvar: &l,
                    z: &zz,
                    rows: batch,
                    dims: self.config.latent,
                };
                obj.latent_term(&b, prior.as_deref(), hp.dataset_size)?
            }
        };
        // FactorVAE: γ·TC from the discriminator, on the codes and their
        // dimension-wise permutation (a lone code has none: the ELBO).
        let factor = match (hp.objective, &lv) {
            (Objective::FactorVae { gamma, .. }, Some(_)) if batch >= 2 => {
                let d = disc.ok_or_else(|| {
                    config_err(
                        "factor-vae",
                        "FactorVAE needs its discriminator (the Trainer keeps one)",
                    )
                })?;
                let zh = be.download(&z)?;
                let sh = shuffle_codes(&zh, batch, self.config.latent, hp.seed, hp.step);
                let shuffled = be.upload(&sh, be.shape(&z))?;
                Some((gamma, d.terms(&z, &shuffled, gamma)?))
            }
            _ => None,
        };
        let replaces_kl = latent.is_some() && hp.objective.replaces_kl();
        let kl_bar: Vec<f64> = kl_dims_sum.iter().map(|k| k / batch as f64).collect();
        let kl_total: f64 = kl_bar.iter().sum();
        // The KL term's weight on each dimension, and its value.
        let (coef, kl_term): (Vec<f32>, f64) = if replaces_kl {
            (vec![0.0; kl_bar.len()], 0.0)
        } else if let Some((c, gamma)) = hp.capacity {
            let diff = kl_total - f64::from(c);
            let sign = if diff > 0.0 {
                1.0
            } else if diff < 0.0 {
                -1.0
            } else {
                0.0
            };
            (
                vec![gamma * sign; kl_bar.len()],
                f64::from(gamma) * diff.abs(),
            )
        } else if let Some(fb) = hp.free_bits {
            let fb = f64::from(fb);
            (
                kl_bar
                    .iter()
                    .map(|&k| if k > fb { hp.beta } else { 0.0 })
                    .collect(),
                f64::from(hp.beta) * kl_bar.iter().map(|&k| k.max(fb)).sum::<f64>(),
            )
        } else {
            (vec![hp.beta; kl_bar.len()], f64::from(hp.beta) * kl_total)
        };
        let loss = rec_sum / batch as f64
            + if is_vae { kl_term } else { 0.0 }
            + latent.as_ref().map_or(0.0, |l| l.loss)
            + factor.as_ref().map_or(0.0, |(g, f)| g * f.tc);
        let mut terms = latent.as_ref().map(|l| l.parts.clone()).unwrap_or_default();
        if let Some((_, f)) = &factor {
            terms.extend([
                ("tc_estimate", f.tc),
                ("disc_loss", f.loss),
                ("disc_accuracy", f.accuracy),
            ]);
        }
        let stats = StepStats {
            rec_sum,
            kl_dims_sum,
            loss,
            terms,
        };
        if !loss.is_finite() {
            return Ok((
                StepStats {
                    loss: f64::NAN,
                    ..stats
                },
                None,
            ));
        }

        // Backward.
        let mut grads: Vec<Option<B::Tensor>> = vec![None; self.params.len()];
        if let Some(glv) = grad_dec_lv
            && let Likelihood::Gaussian { learned: true, .. } = self.config.likelihood
        {
            let last = self.params.len() - 1;
            grads[last] = Some(be.scale(inv_b, &be.sum_rows(&glv)?)?);
        }
        let mut g_out = grad_out;
        be.scale_inplace(inv_b, &mut g_out)?;
        let mut gz = net
            .decoder
            .backward(be, params, &z, &dec_cache, g_out, &mut grads, true)?
            .expect("the input gradient was asked for");
        let up = |v: &[f64]| -> Result<B::Tensor> {
            let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            Ok(be.upload(&f, be.shape(&mu))?)
        };
        if let Some(l) = &latent {
            be.axpy(1.0, &up(&l.grad_z)?, &mut gz)?;
        }
        let discriminator = match factor {
            Some((_, f)) => {
                be.axpy(1.0, &f.grad_z, &mut gz)?;
                Some(f.grads)
            }
            None => None,
        };
        let gh = if let (Some(lv_l), Some((_, kg_mu, kg_lv))) = (&net.logvar, &kl) {
            // z = mu + σ ⊙ ε, so ∂z/∂logvar = ½ σ ⊙ ε = ½ (z − mu).
            let mut g_mu = gz.clone();
            let mut g_lv = be.scale(0.5, &be.mul(&gz, &be.sub(&z, &mu)?)?)?;
            let uniform = coef.iter().all(|&c| c == coef[0]);
            if uniform {
                if coef[0] != 0.0 {
                    be.axpy(coef[0] * inv_b, kg_mu, &mut g_mu)?;
                    be.axpy(coef[0] * inv_b, kg_lv, &mut g_lv)?;
                }
            } else {
                let d = coef.len();
                let mut diag = vec![0.0f32; d * d];
                for (j, c) in coef.iter().enumerate() {
                    diag[j * d + j] = c * inv_b;
                }
                let diag = be.upload(&diag, Shape::new(d, d))?;
                be.axpy(
                    1.0,
                    &be.matmul(kg_mu, Transpose::No, &diag, Transpose::No)?,
                    &mut g_mu,
                )?;
                be.axpy(
                    1.0,
                    &be.matmul(kg_lv, Transpose::No, &diag, Transpose::No)?,
                    &mut g_lv,
                )?;
            }
            if let Some(l) = &latent {
                be.axpy(1.0, &up(&l.grad_mu)?, &mut g_mu)?;
                be.axpy(1.0, &up(&l.grad_logvar)?, &mut g_lv)?;
            }
            let head = |l: &crate::Layer, g, grads: &mut [Option<B::Tensor>]| {
                l.backward(be, params, h, g, grads, true)
                    .map(|g| g.expect("the input gradient was asked for"))
            };
            let mut gh = head(&net.mu, &g_mu, &mut grads)?;
            be.axpy(1.0, &head(lv_l, &g_lv, &mut grads)?, &mut gh)?;
            gh
        } else {
            net.mu
                .backward(be, params, h, &gz, &mut grads, true)?
                .expect("the input gradient was asked for")
        };
        net.encoder
            .backward(be, params, x, &enc_cache, gh, &mut grads, false)?;
        assert!(
            net.params
                .iter()
                .zip(&grads)
                .all(|(p, g)| p.trainable() == g.is_some()),
            "every trainable parameter, and no buffer, has a gradient"
        );
        let mut buffers = enc_cache.take_updates();
        buffers.append(&mut dec_cache.take_updates());
        Ok((
            stats,
            Some(StepGrads {
                grads,
                buffers,
                discriminator,
            }),
        ))
    }

    /// The rest of [`Vae::gradients_at`] for IWAE: `k` samples of each
    /// image's code, the decoder on all `batch · k` of them, the bound and
    /// its weights on the host ([`crate::objective::iwae`]), and the
    /// backward pass with each sample's reconstruction gradient scaled by
    /// its normalised importance weight.
    #[allow(clippy::too_many_arguments)]
    fn iwae_gradients(
        &self,
        x: &B::Tensor,
        hp: &StepParams,
        eps: Option<&B::Tensor>,
        k: usize,
        mut enc_cache: StackCache<B::Tensor>,
        mu: &B::Tensor,
        lv: &B::Tensor,
    ) -> Result<(StepStats, Option<StepGrads<B::Tensor>>)> {
        let be = &self.backend;
        let (net, params) = (&self.net, &self.params[..]);
        let (b, d) = (be.shape(x).rows, self.config.latent);
        let rows = b * k;
        let eps = match eps {
            Some(e) => {
                if be.shape(e) != Shape::new(rows, d) {
                    return Err(ModelError::Data(format!(
                        "ε is {}, IWAE's {k} samples of {b} codes need {}",
                        be.shape(e),
                        Shape::new(rows, d)
                    )));
                }
                be.download(e)?
            }
            None => be.download(&be.randn(
                Shape::new(rows, d),
                streams::train_noise_key(hp.seed),
                hp.step,
            )?)?,
        };
        let host = |t: &B::Tensor| -> Result<Vec<f64>> {
            Ok(be.download(t)?.into_iter().map(f64::from).collect())
        };
        let (m, l) = (host(mu)?, host(lv)?);
        let mut zh = vec![0.0f64; rows * d];
        for (r, zr) in zh.chunks_exact_mut(d).enumerate() {
            let i = r / k;
            for (j, v) in zr.iter_mut().enumerate() {
                *v = m[i * d + j] + (0.5 * l[i * d + j]).exp() * f64::from(eps[r * d + j]);
            }
        }
        let up = |v: &[f64], shape: Shape| -> Result<B::Tensor> {
            let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            Ok(be.upload(&f, shape)?)
        };
        let z = up(&zh, Shape::new(rows, d))?;
        // Each image repeated k times, as the decoder's targets.
        let xh = be.download(x)?;
        let dim = self.config.input_dim;
        let mut xr = Vec::with_capacity(rows * dim);
        for img in xh.chunks_exact(dim) {
            for _ in 0..k {
                xr.extend_from_slice(img);
            }
        }
        let x_rep = be.upload(&xr, Shape::new(rows, dim))?;
        let mut dec_cache = net.decoder.forward_cached(be, params, &z, Mode::Train)?;
        let out = net.decoder.cached_output(&dec_cache, &z);
        let (rec_el, grad_out, grad_dec_lv) = match self.decoder_logvar() {
            None => {
                let (l, g) = be.bce_with_logits_elementwise(out, &x_rep)?;
                (l, g, None)
            }
            Some(dlv) => {
                let (l, gm, glv) = be.gaussian_nll_elementwise(&x_rep, out, dlv)?;
                (l, gm, Some(glv))
            }
        };
        let nll = host(&be.sum_cols(&rec_el)?)?;
        let kl_dims_sum: Vec<f64> = be
            .download(&be.sum_rows(&be.kl_normal_elementwise(mu, lv)?.0)?)?
            .into_iter()
            .map(f64::from)
            .collect();
        let bound = crate::objective::iwae(&IwaeBatch {
            mu: &m,
            logvar: &l,
            z: &zh,
            nll: &nll,
            rows: b,
            dims: d,
            samples: k,
        })?;
        let stats = StepStats {
            // The mean over an image's samples, as the ELBO's one sample.
            rec_sum: nll.iter().sum::<f64>() / k as f64,
            kl_dims_sum,
            loss: bound.loss,
            terms: bound.parts.clone(),
        };
        if !bound.loss.is_finite() {
            return Ok((
                StepStats {
                    loss: f64::NAN,
                    ..stats
                },
                None,
            ));
        }

        // Backward: each sample's rows of ∂nll/∂out weighted by a_is / B.
        let mut wh = Vec::with_capacity(rows * dim);
        for &w in &bound.nll_weights {
            wh.extend(std::iter::repeat_n(w as f32, dim));
        }
        let weights = be.upload(&wh, Shape::new(rows, dim))?;
        let mut grads: Vec<Option<B::Tensor>> = vec![None; self.params.len()];
        if let Some(glv) = grad_dec_lv
            && let Likelihood::Gaussian { learned: true, .. } = self.config.likelihood
        {
            let last = self.params.len() - 1;
            grads[last] = Some(be.sum_rows(&be.mul(&glv, &weights)?)?);
        }
        let g_out = be.mul(&grad_out, &weights)?;
        let gz = net
            .decoder
            .backward(be, params, &z, &dec_cache, g_out, &mut grads, true)?
            .expect("the input gradient was asked for");
        let gz = host(&gz)?;
        // z = mu + exp(logvar / 2) ⊙ ε: ∂z/∂mu = 1, ∂z/∂logvar = ½ (z − mu).
        let (mut g_mu, mut g_lv) = (bound.grad_mu, bound.grad_logvar);
        for r in 0..rows {
            let i = r / k;
            for j in 0..d {
                let g = gz[r * d + j] + bound.grad_z[r * d + j];
                g_mu[i * d + j] += g;
                g_lv[i * d + j] += g * 0.5 * (zh[r * d + j] - m[i * d + j]);
            }
        }
        let h = net.encoder.cached_output(&enc_cache, x);
        let lv_layer = net.logvar.as_ref().expect("IWAE runs on a VAE");
        let shape = Shape::new(b, d);
        let mut gh = net
            .mu
            .backward(be, params, h, &up(&g_mu, shape)?, &mut grads, true)?
            .expect("the input gradient was asked for");
        let gh_lv = lv_layer
            .backward(be, params, h, &up(&g_lv, shape)?, &mut grads, true)?
            .expect("the input gradient was asked for");
        be.axpy(1.0, &gh_lv, &mut gh)?;
        net.encoder
            .backward(be, params, x, &enc_cache, gh, &mut grads, false)?;
        let mut buffers = enc_cache.take_updates();
        buffers.append(&mut dec_cache.take_updates());
        Ok((
            stats,
            Some(StepGrads {
                grads,
                buffers,
                discriminator: None,
            }),
        ))
    }
}
