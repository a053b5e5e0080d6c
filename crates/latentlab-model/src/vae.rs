//! The MLP VAE (and autoencoder) on any [`Backend`], with its hand-written
//! backward pass. Every op of a training step runs on the backend's device;
//! one small read-back per step (the batch's reconstruction sum and the KL of
//! each latent dimension, `d + 1` floats) lets the step detect a non-finite
//! loss *before* the update and drive free bits and capacity annealing.

use latentlab_tensor::{AdamStep, Backend, Shape, Transpose};

use crate::config::{Likelihood, ModelConfig, ModelKind};
use crate::error::{ModelError, Result, config_err};
use crate::streams;

/// An MLP VAE or autoencoder whose parameters live on `B`'s device.
#[derive(Clone, Debug)]
pub struct Vae<B: Backend> {
    backend: B,
    config: ModelConfig,
    params: Vec<B::Tensor>,
    /// The decoder's fixed log-variance (`1 × input`) for a fixed-variance
    /// Gaussian likelihood.
    fixed_logvar: Option<B::Tensor>,
}

/// Indices of a linear layer's weight and bias in the parameter list.
#[derive(Clone, Copy, Debug)]
struct Layer {
    w: usize,
    b: usize,
}

/// What a layer's forward pass keeps for its backward pass. Its input is the
/// previous layer's `out` (or the stack's input).
struct LayerCache<T> {
    /// The pre-activation, kept only when the activation's gradient cannot be
    /// computed from its output.
    pre: Option<T>,
    /// The layer's output: after the activation when `activated`.
    out: T,
    activated: bool,
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
}

impl<B: Backend> Vae<B> {
    /// A new model with PyTorch's default initialisation of `nn.Linear`
    /// (weights and biases uniform in `±1/√fan_in`), seeded.
    pub fn new(backend: B, config: ModelConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let shapes = config.parameter_shapes();
        let mut host = Vec::with_capacity(shapes.len());
        for (k, (name, [rows, cols])) in shapes.iter().enumerate() {
            let (rows, cols) = (*rows, *cols);
            if name == "decoder_logvar" {
                let lv = match config.likelihood {
                    Likelihood::Gaussian { logvar, .. } => logvar,
                    Likelihood::Bernoulli => 0.0,
                };
                host.push(vec![lv; cols]);
                continue;
            }
            // The fan-in of a bias is its weight's: the previous entry's cols.
            let fan_in = if name.ends_with(".bias") {
                shapes[k - 1].1[1]
            } else {
                cols
            };
            let bound = 1.0 / (fan_in as f64).sqrt();
            let mut g = streams::init(seed, k);
            host.push(
                (0..rows * cols)
                    .map(|_| {
                        let u = (g.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                        ((2.0 * u - 1.0) * bound) as f32
                    })
                    .collect(),
            );
        }
        Self::from_host(backend, config, host)
    }

    /// A model from host parameters in [`ModelConfig::parameter_shapes`] order.
    pub fn from_host(backend: B, config: ModelConfig, host: Vec<Vec<f32>>) -> Result<Self> {
        config.validate()?;
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
            params,
            fixed_logvar,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &ModelConfig {
        &self.config
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

    fn layers(&self) -> (Vec<Layer>, Layer, Option<Layer>, Vec<Layer>) {
        let h = self.config.hidden.len();
        let enc = (0..h)
            .map(|i| Layer {
                w: 2 * i,
                b: 2 * i + 1,
            })
            .collect();
        let mu = Layer {
            w: 2 * h,
            b: 2 * h + 1,
        };
        let (lv, first_dec) = match self.config.kind {
            ModelKind::Vae => (
                Some(Layer {
                    w: 2 * h + 2,
                    b: 2 * h + 3,
                }),
                2 * h + 4,
            ),
            ModelKind::Autoencoder => (None, 2 * h + 2),
        };
        let dec = (0..=h)
            .map(|i| Layer {
                w: first_dec + 2 * i,
                b: first_dec + 2 * i + 1,
            })
            .collect();
        (enc, mu, lv, dec)
    }

    fn decoder_logvar(&self) -> Option<&B::Tensor> {
        match self.config.likelihood {
            Likelihood::Bernoulli => None,
            Likelihood::Gaussian { learned: true, .. } => self.params.last(),
            Likelihood::Gaussian { learned: false, .. } => self.fixed_logvar.as_ref(),
        }
    }

    /// One linear layer, activated or not: `(kept pre-activation, output)`.
    /// The activation runs in place unless `keep_pre` asks for the
    /// pre-activation and the activation's gradient needs it.
    fn layer_forward(
        &self,
        l: Layer,
        input: &B::Tensor,
        activated: bool,
        keep_pre: bool,
    ) -> Result<(Option<B::Tensor>, B::Tensor)> {
        let be = &self.backend;
        let act = self.config.activation;
        let mut y = be.linear(input, &self.params[l.w], &self.params[l.b])?;
        if !activated {
            return Ok((None, y));
        }
        if keep_pre && !act.output_determines_gradient() {
            let post = be.activation(act, &y)?;
            return Ok((Some(y), post));
        }
        be.activation_inplace(act, &mut y)?;
        Ok((None, y))
    }

    /// A stack of linear layers; every layer but (optionally) the last is
    /// followed by the activation. Returns the stack's output.
    fn stack(&self, layers: &[Layer], x: &B::Tensor, last_activated: bool) -> Result<B::Tensor> {
        let mut h: Option<B::Tensor> = None;
        for (i, &l) in layers.iter().enumerate() {
            let activated = last_activated || i + 1 < layers.len();
            let input = h.as_ref().unwrap_or(x);
            h = Some(self.layer_forward(l, input, activated, false)?.1);
        }
        Ok(h.unwrap_or_else(|| x.clone()))
    }

    /// [`Vae::stack`] keeping what the backward pass needs; the stack's
    /// output is the last cache's `out` (`x` for an empty stack).
    fn stack_cached(
        &self,
        layers: &[Layer],
        x: &B::Tensor,
        last_activated: bool,
    ) -> Result<Vec<LayerCache<B::Tensor>>> {
        let mut caches: Vec<LayerCache<B::Tensor>> = Vec::with_capacity(layers.len());
        for (i, &l) in layers.iter().enumerate() {
            let activated = last_activated || i + 1 < layers.len();
            let input = caches.last().map_or(x, |c| &c.out);
            let (pre, out) = self.layer_forward(l, input, activated, true)?;
            caches.push(LayerCache {
                pre,
                out,
                activated,
            });
        }
        Ok(caches)
    }

    /// Backward through a stack whose input was `x`: given `∂L/∂output`,
    /// writes each layer's weight and bias gradients into `grads` and returns
    /// `∂L/∂input` (`None` when `need_input_grad` is false, saving a matrix
    /// product).
    fn stack_backward(
        &self,
        layers: &[Layer],
        x: &B::Tensor,
        caches: &[LayerCache<B::Tensor>],
        grad_out: B::Tensor,
        grads: &mut [Option<B::Tensor>],
        need_input_grad: bool,
    ) -> Result<Option<B::Tensor>> {
        let be = &self.backend;
        let mut g = grad_out;
        for (i, (l, c)) in layers.iter().zip(caches).enumerate().rev() {
            if c.activated {
                // Without a kept pre-activation the output stands in for it
                // (Activation::output_determines_gradient).
                let pre = c.pre.as_ref().unwrap_or(&c.out);
                be.activation_backward_inplace(self.config.activation, pre, &c.out, &mut g)?;
            }
            let input = if i == 0 { x } else { &caches[i - 1].out };
            grads[l.w] = Some(be.matmul(&g, Transpose::Yes, input, Transpose::No)?);
            grads[l.b] = Some(be.sum_rows(&g)?);
            if i > 0 || need_input_grad {
                g = be.matmul(&g, Transpose::No, &self.params[l.w], Transpose::No)?;
            } else {
                return Ok(None);
            }
        }
        Ok(Some(g))
    }

    /// Encodes a batch on the device: `(mu, logvar)`; the autoencoder has no
    /// logvar.
    pub fn encode_device(&self, x: &B::Tensor) -> Result<(B::Tensor, Option<B::Tensor>)> {
        self.check_input(x)?;
        let (enc, mu, lv, _) = self.layers();
        let h = self.stack(&enc, x, true)?;
        let m = self
            .backend
            .linear(&h, &self.params[mu.w], &self.params[mu.b])?;
        let v = match lv {
            Some(l) => Some(
                self.backend
                    .linear(&h, &self.params[l.w], &self.params[l.b])?,
            ),
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
        let (_, _, _, dec) = self.layers();
        self.stack(&dec, z, false)
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
                "images have {} values each but the model expects {}",
                s.cols, self.config.input_dim
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
        self.check_input(x)?;
        let be = self.backend.clone();
        let batch = be.shape(x).rows;
        let inv_b = 1.0 / batch as f32;
        let (enc, mu_l, lv_l, dec) = self.layers();
        let is_vae = lv_l.is_some();

        // Forward.
        let enc_cache = self.stack_cached(&enc, x, true)?;
        let h = enc_cache.last().map_or(x, |c| &c.out);
        let mu = be.linear(h, &self.params[mu_l.w], &self.params[mu_l.b])?;
        let lv = match lv_l {
            Some(l) => Some(be.linear(h, &self.params[l.w], &self.params[l.b])?),
            None => None,
        };
        let z = match &lv {
            Some(lv) => {
                be.reparameterize(&mu, lv, streams::train_noise_key(hp.seed), hp.step)?
                    .0
            }
            None => mu.clone(),
        };
        let dec_cache = self.stack_cached(&dec, &z, false)?;
        let out = &dec_cache
            .last()
            .expect("the decoder has an output layer")
            .out;
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
        let kl_bar: Vec<f64> = kl_dims_sum.iter().map(|k| k / batch as f64).collect();
        let kl_total: f64 = kl_bar.iter().sum();
        // The KL term's weight on each dimension, and its value.
        let (coef, kl_term): (Vec<f32>, f64) = if let Some((c, gamma)) = hp.capacity {
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
        let loss = rec_sum / batch as f64 + if is_vae { kl_term } else { 0.0 };
        let stats = StepStats {
            rec_sum,
            kl_dims_sum,
            loss,
        };
        if !loss.is_finite() {
            return Ok(StepStats {
                loss: f64::NAN,
                ..stats
            });
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
        let gz = self
            .stack_backward(&dec, &z, &dec_cache, g_out, &mut grads, true)?
            .expect("the input gradient was asked for");
        let gh = if let (Some(lv_l), Some((_, kg_mu, kg_lv))) = (lv_l, &kl) {
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
            grads[mu_l.w] = Some(be.matmul(&g_mu, Transpose::Yes, h, Transpose::No)?);
            grads[mu_l.b] = Some(be.sum_rows(&g_mu)?);
            grads[lv_l.w] = Some(be.matmul(&g_lv, Transpose::Yes, h, Transpose::No)?);
            grads[lv_l.b] = Some(be.sum_rows(&g_lv)?);
            let mut gh = be.matmul(&g_mu, Transpose::No, &self.params[mu_l.w], Transpose::No)?;
            be.axpy(
                1.0,
                &be.matmul(&g_lv, Transpose::No, &self.params[lv_l.w], Transpose::No)?,
                &mut gh,
            )?;
            gh
        } else {
            grads[mu_l.w] = Some(be.matmul(&gz, Transpose::Yes, h, Transpose::No)?);
            grads[mu_l.b] = Some(be.sum_rows(&gz)?);
            be.matmul(&gz, Transpose::No, &self.params[mu_l.w], Transpose::No)?
        };
        self.stack_backward(&enc, x, &enc_cache, gh, &mut grads, false)?;
        let mut grads: Vec<B::Tensor> = grads
            .into_iter()
            .map(|g| g.expect("every parameter has a gradient"))
            .collect();

        if let Some(max) = hp.clip_grad_norm {
            let mut total = be.sum_squares(&grads[0])?;
            for g in &grads[1..] {
                be.axpy(1.0, &be.sum_squares(g)?, &mut total)?;
            }
            let norm = f64::from(be.scalar(&total)?).sqrt();
            if !norm.is_finite() {
                return Ok(StepStats {
                    loss: f64::NAN,
                    ..stats
                });
            }
            if norm > f64::from(max) {
                let s = (f64::from(max) / norm) as f32;
                for g in &mut grads {
                    *g = be.scale(s, g)?;
                }
            }
        }
        let step = AdamStep {
            weight_decay: hp.weight_decay,
            ..AdamStep::new(hp.lr, hp.step)
        };
        for (i, g) in grads.iter().enumerate() {
            be.adam_step(
                &mut self.params[i],
                g,
                &mut adam.m[i],
                &mut adam.v[i],
                &step,
            )?;
        }
        Ok(stats)
    }

    /// The loss gradients of one batch without an update, as host vectors in
    /// parameter order (for gradient checks).
    #[doc(hidden)]
    pub fn gradients_for_test(
        &self,
        x: &B::Tensor,
        beta: f32,
        free_bits: Option<f32>,
        capacity: Option<(f32, f32)>,
        seed: u64,
        step: u64,
    ) -> Result<(f64, Vec<Vec<f32>>)> {
        // A step with learning rate 0 on a copy: after Adam's first step the
        // first moment is (1 − β1)·g = 0.1·g, and the weights do not move.
        let mut copy = self.clone();
        let mut adam = AdamState::new(&copy)?;
        let hp = StepParams {
            beta,
            free_bits,
            capacity,
            clip_grad_norm: None,
            seed,
            step,
            lr: 0.0,
            weight_decay: 0.0,
        };
        let stats = copy.train_step(x, &hp, &mut adam)?;
        let be = &self.backend;
        let grads = adam
            .m
            .iter()
            .map(|m| Ok(be.download(m)?.into_iter().map(|v| v / 0.1).collect()))
            .collect::<Result<_>>()?;
        Ok((stats.loss, grads))
    }
}
