//! Model and training configuration, serialised into checkpoints.

use latentlab_tensor::Activation;
use serde::{Deserialize, Serialize};

use crate::error::{Result, config_err};
use crate::layers::{Dims, Init, Layer, LayerSpec, Param, Role, Stack};

/// A VAE, or a deterministic autoencoder of the same shape to compare with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Gaussian encoder `q(z|x) = N(mu, exp(logvar))`, prior `N(0, I)`.
    Vae,
    /// `z = mu(x)`, no KL term.
    Autoencoder,
}

/// The decoder's likelihood `p(x|z)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Likelihood {
    /// Bernoulli with logits (grey levels in `[0, 1]` as soft targets).
    Bernoulli,
    /// Gaussian with the decoder output as mean and a per-pixel log-variance,
    /// fixed at `logvar` or learned from that start.
    Gaussian {
        /// The (initial) log-variance of every pixel.
        logvar: f32,
        /// Whether the log-variance is a trained parameter (`decoder_logvar`).
        learned: bool,
    },
}

/// The architecture of an MLP VAE: `input → hidden… → latent → …hidden → input`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// VAE or autoencoder.
    pub kind: ModelKind,
    /// Pixels per image.
    pub input_dim: usize,
    /// Hidden widths of the encoder; the decoder mirrors them.
    pub hidden: Vec<usize>,
    /// Latent dimension.
    pub latent: usize,
    /// The hidden layers' activation.
    pub activation: Activation,
    /// The decoder's likelihood.
    pub likelihood: Likelihood,
    /// Height and width of an image, for pictures.
    #[serde(default)]
    pub image_shape: Option<(usize, usize)>,
    /// Channels of an image (1: grey, 3: colour); `input_dim` is
    /// `channels · height · width`.
    #[serde(default = "one_channel")]
    pub channels: usize,
    /// The encoder and decoder as layer stacks. `None`: the MLP that
    /// `hidden` and `activation` describe (every checkpoint written before
    /// stacks existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacks: Option<Stacks>,
}

fn one_channel() -> usize {
    1
}

/// An encoder stack (whose output feeds the `fc_mu` and `fc_logvar` heads)
/// and a decoder stack from the latent code to the decoder's raw output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stacks {
    /// `encoder.{i}`: images to flat features.
    pub encoder: Vec<LayerSpec>,
    /// `decoder.{i}`: latent codes to logits or means, one per input value.
    pub decoder: Vec<LayerSpec>,
}

impl Stacks {
    /// The convolutional VAE of Burgess et al. (2018) as disentanglement_lib
    /// trains it, for `channels × 64 × 64` images: four 4×4, stride-2
    /// convolutions (32, 32, 64, 64 channels), a 256-unit linear layer, and
    /// the mirror image with transposed convolutions; ReLU throughout, the
    /// decoder's output left as logits.
    pub fn conv64(channels: usize) -> Self {
        Self::strided(channels, &[32, 32, 64, 64], 4)
    }

    /// The same idea for `channels × 28 × 28` images: two 4×4, stride-2
    /// convolutions (32, 64 channels) to 64×7×7, a 256-unit linear layer,
    /// and the mirror image.
    pub fn conv28(channels: usize) -> Self {
        Self::strided(channels, &[32, 64], 7)
    }

    /// 4×4, stride-2, padding-1 convolutions with `widths` channels down to
    /// `side × side`, then linear layers of 256; the decoder mirrors it.
    fn strided(channels: usize, widths: &[usize], side: usize) -> Self {
        use crate::layers::Pair;
        let relu = LayerSpec::Activation(Activation::Relu);
        let lin = |out| LayerSpec::Linear { out, bias: true };
        let conv = |out| LayerSpec::Conv2d {
            out,
            kernel: Pair::Both(4),
            stride: Pair::Both(2),
            padding: Pair::Both(1),
            dilation: Pair::Both(1),
            bias: true,
        };
        let deconv = |out| LayerSpec::ConvTranspose2d {
            out,
            kernel: Pair::Both(4),
            stride: Pair::Both(2),
            padding: Pair::Both(1),
            output_padding: Pair::Both(0),
            dilation: Pair::Both(1),
            bias: true,
        };
        let last = *widths.last().expect("at least one convolution");
        let flat = last * side * side;
        let mut encoder = Vec::new();
        for &w in widths {
            encoder.extend([conv(w), relu]);
        }
        encoder.extend([LayerSpec::Flatten, lin(256), relu]);
        let mut decoder = vec![
            lin(256),
            relu,
            lin(flat),
            relu,
            LayerSpec::Unflatten {
                channels: last,
                height: side,
                width: side,
            },
        ];
        let outs: Vec<usize> = widths
            .iter()
            .rev()
            .skip(1)
            .copied()
            .chain([channels])
            .collect();
        for (i, &o) in outs.iter().enumerate() {
            decoder.push(deconv(o));
            if i + 1 < outs.len() {
                decoder.push(relu);
            }
        }
        Self { encoder, decoder }
    }
}

/// A model's layers built for its input, and its parameters in checkpoint
/// order.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    /// The encoder stack.
    pub encoder: Stack,
    /// The mean head.
    pub mu: Layer,
    /// The log-variance head (VAEs only).
    pub logvar: Option<Layer>,
    /// The decoder stack.
    pub decoder: Stack,
    /// Every parameter: encoder, heads, decoder, then `decoder_logvar`.
    pub params: Vec<Param>,
}

impl ModelConfig {
    /// The reference set-up of the issue: 784-512-256-20, ReLU, Bernoulli.
    pub fn mnist(latent: usize) -> Self {
        Self {
            kind: ModelKind::Vae,
            input_dim: 784,
            hidden: vec![512, 256],
            latent,
            activation: Activation::Relu,
            likelihood: Likelihood::Bernoulli,
            image_shape: Some((28, 28)),
            channels: 1,
            stacks: None,
        }
    }

    /// The stacks: the given ones, or the MLP of `hidden` (linear layers
    /// at even indices, the activation between them).
    pub fn layer_specs(&self) -> Stacks {
        if let Some(s) = &self.stacks {
            return s.clone();
        }
        let act = LayerSpec::Activation(self.activation);
        let lin = |out| LayerSpec::Linear { out, bias: true };
        let mut encoder = Vec::new();
        for &h in &self.hidden {
            encoder.extend([lin(h), act]);
        }
        let mut decoder = Vec::new();
        for &h in self.hidden.iter().rev() {
            decoder.extend([lin(h), act]);
        }
        decoder.push(lin(self.input_dim));
        Stacks { encoder, decoder }
    }

    /// A one-line description: `784-[512, 256]-20` for the MLP, the
    /// encoder's layer kinds and the latent size for stacks.
    pub fn describe(&self) -> String {
        match &self.stacks {
            None => format!("{}-{:?}-{}", self.input_dim, self.hidden, self.latent),
            Some(s) => {
                let weights = |l: &[LayerSpec]| {
                    l.iter()
                        .filter(|s| !matches!(s, LayerSpec::Activation(_)))
                        .map(LayerSpec::kind)
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                format!(
                    "{} → [{}] → {} → [{}]",
                    self.input_dims(),
                    weights(&s.encoder),
                    self.latent,
                    weights(&s.decoder)
                )
            }
        }
    }

    /// What the encoder takes: images when the stacks are given and the
    /// image size is known, flat features otherwise (the MLP).
    pub fn input_dims(&self) -> Dims {
        match (&self.stacks, self.image_shape) {
            (Some(_), Some((h, w))) => Dims::Image([self.channels, h, w]),
            _ => Dims::Flat(self.input_dim),
        }
    }

    /// Builds the layers for the input, checking that every shape chains.
    pub fn network(&self) -> Result<Network> {
        let specs = self.layer_specs();
        let mut params = Vec::new();
        let encoder = Stack::new("encoder", &specs.encoder, self.input_dims(), &mut params)?;
        let head = LayerSpec::Linear {
            out: self.latent,
            bias: true,
        };
        let mu = Layer::new("fc_mu", head, encoder.output(), &mut params)?;
        let logvar = match self.kind {
            ModelKind::Vae => Some(Layer::new(
                "fc_logvar",
                head,
                encoder.output(),
                &mut params,
            )?),
            ModelKind::Autoencoder => None,
        };
        let decoder = Stack::new(
            "decoder",
            &specs.decoder,
            Dims::Flat(self.latent),
            &mut params,
        )?;
        // Flat output of the input's size fits images (the same memory);
        // images must match exactly.
        let fits = match (decoder.output(), self.input_dims()) {
            (Dims::Image(a), Dims::Image(b)) => a == b,
            (out, _) => out.len() == self.input_dim,
        };
        if !fits {
            return Err(config_err(
                "architecture",
                format!(
                    "the decoder gives {}, but the model's input is {}",
                    decoder.output(),
                    self.input_dims()
                ),
            ));
        }
        if let Likelihood::Gaussian {
            learned: true,
            logvar,
        } = self.likelihood
        {
            params.push(Param::with(
                "decoder_logvar".into(),
                vec![self.input_dim],
                Init::Constant(logvar),
                Role::Trainable,
            ));
        }
        Ok(Network {
            encoder,
            mu,
            logvar,
            decoder,
            params,
        })
    }

    /// Checks every size and parameter.
    pub fn validate(&self) -> Result<()> {
        if self.input_dim == 0 {
            return Err(config_err("input_dim", "must be at least 1"));
        }
        if self.latent == 0 {
            return Err(config_err("latent", "the latent size must be at least 1"));
        }
        if self.latent > 65_536 {
            return Err(config_err(
                "latent",
                format!("{} is implausibly large", self.latent),
            ));
        }
        if let Some(i) = self.hidden.iter().position(|&h| h == 0 || h > 65_536) {
            return Err(config_err(
                "hidden",
                format!(
                    "layer {i} has width {}; widths must lie in 1..=65536",
                    self.hidden[i]
                ),
            ));
        }
        if self.channels == 0 || self.channels > 4096 {
            return Err(config_err(
                "channels",
                format!("{} must lie in 1..=4096", self.channels),
            ));
        }
        if let Some((h, w)) = self.image_shape
            && h.checked_mul(w)
                .and_then(|hw| hw.checked_mul(self.channels))
                != Some(self.input_dim)
        {
            return Err(config_err(
                "image_shape",
                format!(
                    "{} channel(s) of {h}×{w} do not match input_dim {}",
                    self.channels, self.input_dim
                ),
            ));
        }
        if let Likelihood::Gaussian { logvar, .. } = self.likelihood
            && !(logvar.is_finite() && logvar.abs() <= 30.0)
        {
            return Err(config_err(
                "likelihood",
                format!("decoder log-variance {logvar} must lie in [−30, 30]"),
            ));
        }
        match self.activation {
            Activation::LeakyRelu { slope } if !slope.is_finite() => {
                Err(config_err("activation", "leaky-relu slope must be finite"))
            }
            Activation::Elu { alpha } if !alpha.is_finite() => {
                Err(config_err("activation", "elu alpha must be finite"))
            }
            _ => self.network().map(|_| ()),
        }
    }

    /// Every parameter in checkpoint order, with PyTorch's names and shapes
    /// and its device matrix shape (empty for an invalid config).
    pub fn parameters(&self) -> Vec<Param> {
        self.network().map(|n| n.params).unwrap_or_default()
    }

    /// `(name, [rows, cols])` of every parameter in checkpoint order: the
    /// device matrices (weights `[out, in]` or `out × in·kh·kw`, biases
    /// `[1, out]`; files store PyTorch's shapes, [`ModelConfig::parameters`]).
    pub fn parameter_shapes(&self) -> Vec<(String, [usize; 2])> {
        self.parameters()
            .into_iter()
            .map(|p| (p.name, [p.shape.rows, p.shape.cols]))
            .collect()
    }

    /// Number of trainable scalars (buffers such as batch normalisation's
    /// running statistics are not counted).
    pub fn parameter_count(&self) -> usize {
        self.parameters()
            .iter()
            .filter(|p| p.trainable())
            .map(|p| p.shape.len())
            .sum()
    }
}

/// How the KL weight grows over training (it multiplies β).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KlSchedule {
    /// Weight 1 from the start.
    Constant,
    /// Linear warm-up from 0 to 1 over `steps` optimiser steps.
    Linear {
        /// Length of the warm-up.
        steps: u64,
    },
    /// Cyclical annealing (Fu et al. 2019): the run is cut into `cycles`
    /// equal cycles; in each the weight rises linearly from 0 to 1 over the
    /// first `ratio` of the cycle, then stays at 1.
    Cyclical {
        /// Number of cycles over the run.
        cycles: u32,
        /// Share of each cycle spent rising (Fu et al. use 0.5).
        ratio: f32,
    },
}

impl KlSchedule {
    /// The weight at `step` (from 0) of a run of `total` steps.
    pub fn weight(&self, step: u64, total: u64) -> f32 {
        match *self {
            KlSchedule::Constant => 1.0,
            KlSchedule::Linear { steps } => {
                if steps == 0 {
                    1.0
                } else {
                    (step as f64 / steps as f64).min(1.0) as f32
                }
            }
            KlSchedule::Cyclical { cycles, ratio } => {
                let period = (total as f64 / f64::from(cycles.max(1))).max(1.0);
                let tau = (step as f64 % period) / period;
                (tau / f64::from(ratio)).min(1.0) as f32
            }
        }
    }

    /// Parses `constant`, `linear:STEPS` (or `warmup:STEPS`), `cyclical:CYCLES[:RATIO]`.
    pub fn parse(text: &str) -> Result<Self> {
        let parts: Vec<&str> = text.split(':').collect();
        let num = |s: &str, what: &str| -> Result<f64> {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| config_err("kl_schedule", format!("`{s}` is not a valid {what}")))
        };
        let s = match parts.as_slice() {
            ["constant"] => KlSchedule::Constant,
            ["linear" | "warmup", steps] => KlSchedule::Linear {
                steps: num(steps, "number of warm-up steps")? as u64,
            },
            ["cyclical", cycles] | ["cyclical", cycles, _] => {
                let ratio = if parts.len() == 3 {
                    num(parts[2], "ratio")?
                } else {
                    0.5
                };
                KlSchedule::Cyclical {
                    cycles: num(cycles, "number of cycles")? as u32,
                    ratio: ratio as f32,
                }
            }
            _ => {
                return Err(config_err(
                    "kl_schedule",
                    format!("`{text}`: expected constant, linear:STEPS or cyclical:CYCLES[:RATIO]"),
                ));
            }
        };
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<()> {
        match *self {
            KlSchedule::Cyclical { cycles, ratio } => {
                if cycles == 0 {
                    return Err(config_err("kl_schedule", "cyclical needs at least 1 cycle"));
                }
                if !(ratio > 0.0 && ratio <= 1.0) {
                    return Err(config_err(
                        "kl_schedule",
                        format!("ratio {ratio} must lie in (0, 1]"),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Capacity annealing (Burgess et al. 2018): the KL term becomes
/// `γ·|KL − C(t)|` with `C` rising linearly from 0 to `max` nats over `steps`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// The final capacity in nats.
    pub max: f32,
    /// Steps to reach it.
    pub steps: u64,
    /// The weight γ of `|KL − C|` (Burgess et al. use 1000 on dSprites).
    pub gamma: f32,
}

impl Capacity {
    /// `C(t)`.
    pub fn at(&self, step: u64) -> f32 {
        if self.steps == 0 {
            self.max
        } else {
            self.max * (step as f64 / self.steps as f64).min(1.0) as f32
        }
    }
}

/// How to train.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training data.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f32,
    /// Decoupled weight decay (AdamW); 0 for Adam.
    #[serde(default)]
    pub weight_decay: f32,
    /// Seed of the weights, the shuffles and the noise.
    pub seed: u64,
    /// The KL weight β (β-VAE); 1 is the ELBO.
    pub beta: f32,
    /// How the KL weight grows.
    pub kl_schedule: KlSchedule,
    /// Free bits: a floor in nats on each dimension's batch-mean KL
    /// (Kingma et al. 2016); `None` for none.
    #[serde(default)]
    pub free_bits: Option<f32>,
    /// Capacity annealing; replaces β·KL when set.
    #[serde(default)]
    pub capacity: Option<Capacity>,
    /// Clip the global gradient norm to this value.
    #[serde(default)]
    pub clip_grad_norm: Option<f32>,
    /// The objective (the ELBO unless a disentanglement_lib family is
    /// chosen).
    #[serde(default)]
    pub objective: crate::objective::Objective,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 20,
            batch_size: 128,
            lr: 1e-3,
            weight_decay: 0.0,
            seed: 0,
            beta: 1.0,
            kl_schedule: KlSchedule::Constant,
            free_bits: None,
            capacity: None,
            clip_grad_norm: None,
            objective: crate::objective::Objective::Elbo,
        }
    }
}

impl TrainConfig {
    /// Checks every setting.
    pub fn validate(&self) -> Result<()> {
        self.objective.validate()?;
        if self.objective.replaces_kl()
            && (self.beta != 1.0
                || self.kl_schedule != KlSchedule::Constant
                || self.free_bits.is_some()
                || self.capacity.is_some())
        {
            let why = match self.objective {
                crate::objective::Objective::Iwae { .. } => {
                    "iwae optimises the importance-weighted bound, which has no separate KL term"
                }
                _ => "beta-tcvae weighs its own KL terms (--tc-alpha, --tc-beta, --tc-gamma)",
            };
            return Err(config_err(
                "objective",
                format!(
                    "{why}; --beta, --kl-schedule, --free-bits and --capacity do not apply to it"
                ),
            ));
        }
        if self.epochs == 0 {
            return Err(config_err("epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(config_err("batch", "the batch size must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(config_err(
                "lr",
                format!("learning rate {} must be finite and > 0", self.lr),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(config_err("weight_decay", "must be finite and ≥ 0"));
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(config_err(
                "beta",
                format!("β = {} must be finite and ≥ 0", self.beta),
            ));
        }
        self.kl_schedule.validate()?;
        if let Some(fb) = self.free_bits
            && !(fb.is_finite() && fb >= 0.0)
        {
            return Err(config_err(
                "free_bits",
                format!("{fb} must be finite and ≥ 0 nats"),
            ));
        }
        if let Some(c) = self.capacity
            && !(c.max.is_finite() && c.max >= 0.0 && c.gamma.is_finite() && c.gamma >= 0.0)
        {
            return Err(config_err("capacity", "C and γ must be finite and ≥ 0"));
        }
        if let Some(c) = self.clip_grad_norm
            && !(c.is_finite() && c > 0.0)
        {
            return Err(config_err(
                "clip_grad",
                format!("{c} must be finite and > 0"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pytorch_names_and_shapes() {
        let c = ModelConfig::mnist(20);
        let names: Vec<String> = c.parameter_shapes().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "encoder.0.weight",
                "encoder.0.bias",
                "encoder.2.weight",
                "encoder.2.bias",
                "fc_mu.weight",
                "fc_mu.bias",
                "fc_logvar.weight",
                "fc_logvar.bias",
                "decoder.0.weight",
                "decoder.0.bias",
                "decoder.2.weight",
                "decoder.2.bias",
                "decoder.4.weight",
                "decoder.4.bias",
            ]
        );
        let shapes = c.parameter_shapes();
        assert_eq!(shapes[0].1, [512, 784]);
        assert_eq!(shapes[12].1, [784, 512]);
        // 784·512+512 + 512·256+256 + 2(256·20+20) + 20·256+256 + 256·512+512 + 512·784+784
        assert_eq!(c.parameter_count(), 1_082_680);
    }

    #[test]
    fn conv64_has_the_modules_names_and_shapes() {
        let c = ModelConfig {
            input_dim: 3 * 64 * 64,
            image_shape: Some((64, 64)),
            channels: 3,
            stacks: Some(Stacks::conv64(3)),
            latent: 10,
            ..ModelConfig::mnist(10)
        };
        c.validate().unwrap();
        let got: Vec<(String, Vec<usize>)> = c
            .parameters()
            .into_iter()
            .map(|p| (p.name, p.dims))
            .collect();
        let want: Vec<(&str, Vec<usize>)> = vec![
            ("encoder.0.weight", vec![32, 3, 4, 4]),
            ("encoder.0.bias", vec![32]),
            ("encoder.2.weight", vec![32, 32, 4, 4]),
            ("encoder.2.bias", vec![32]),
            ("encoder.4.weight", vec![64, 32, 4, 4]),
            ("encoder.4.bias", vec![64]),
            ("encoder.6.weight", vec![64, 64, 4, 4]),
            ("encoder.6.bias", vec![64]),
            ("encoder.9.weight", vec![256, 1024]),
            ("encoder.9.bias", vec![256]),
            ("fc_mu.weight", vec![10, 256]),
            ("fc_mu.bias", vec![10]),
            ("fc_logvar.weight", vec![10, 256]),
            ("fc_logvar.bias", vec![10]),
            ("decoder.0.weight", vec![256, 10]),
            ("decoder.0.bias", vec![256]),
            ("decoder.2.weight", vec![1024, 256]),
            ("decoder.2.bias", vec![1024]),
            ("decoder.5.weight", vec![64, 64, 4, 4]),
            ("decoder.5.bias", vec![64]),
            ("decoder.7.weight", vec![64, 32, 4, 4]),
            ("decoder.7.bias", vec![32]),
            ("decoder.9.weight", vec![32, 32, 4, 4]),
            ("decoder.9.bias", vec![32]),
            ("decoder.11.weight", vec![32, 3, 4, 4]),
            ("decoder.11.bias", vec![3]),
        ];
        let want: Vec<(String, Vec<usize>)> =
            want.into_iter().map(|(n, d)| (n.to_string(), d)).collect();
        assert_eq!(got, want);
        // conv28 chains on 28×28 and a conv64 on the wrong size says where.
        let c28 = ModelConfig {
            input_dim: 784,
            stacks: Some(Stacks::conv28(1)),
            ..ModelConfig::mnist(10)
        };
        c28.validate().unwrap();
        let wrong = ModelConfig {
            stacks: Some(Stacks::conv64(1)),
            ..ModelConfig::mnist(10)
        };
        let e = wrong.validate().unwrap_err().to_string();
        assert!(
            e.contains("the decoder gives 1×64×64 images") && e.contains("1×28×28"),
            "{e}"
        );
    }

    #[test]
    fn schedules() {
        assert_eq!(KlSchedule::Constant.weight(0, 100), 1.0);
        let l = KlSchedule::parse("linear:10").unwrap();
        assert_eq!(l.weight(0, 100), 0.0);
        assert_eq!(l.weight(5, 100), 0.5);
        assert_eq!(l.weight(50, 100), 1.0);
        let c = KlSchedule::parse("cyclical:4").unwrap();
        assert_eq!(
            c,
            KlSchedule::Cyclical {
                cycles: 4,
                ratio: 0.5
            }
        );
        assert_eq!(c.weight(0, 100), 0.0);
        assert!((c.weight(6, 100) - 0.48).abs() < 1e-6);
        assert_eq!(c.weight(20, 100), 1.0);
        assert_eq!(c.weight(25, 100), 0.0, "a new cycle starts at 0");
        for bad in [
            "",
            "linear",
            "linear:x",
            "cyclical:0",
            "cyclical:2:0",
            "cyclical:2:1.5",
            "cosine",
        ] {
            assert!(KlSchedule::parse(bad).is_err(), "{bad}");
        }
        let cap = Capacity {
            max: 25.0,
            steps: 100,
            gamma: 1000.0,
        };
        assert_eq!(cap.at(50), 12.5);
        assert_eq!(cap.at(500), 25.0);
    }

    #[test]
    fn validation() {
        assert!(ModelConfig::mnist(20).validate().is_ok());
        assert!(
            ModelConfig {
                latent: 0,
                ..ModelConfig::mnist(2)
            }
            .validate()
            .is_err()
        );
        assert!(
            ModelConfig {
                hidden: vec![0],
                ..ModelConfig::mnist(2)
            }
            .validate()
            .is_err()
        );
        assert!(
            ModelConfig {
                input_dim: 100,
                ..ModelConfig::mnist(2)
            }
            .validate()
            .is_err()
        );
        assert!(TrainConfig::default().validate().is_ok());
        for bad in [
            TrainConfig {
                epochs: 0,
                ..Default::default()
            },
            TrainConfig {
                batch_size: 0,
                ..Default::default()
            },
            TrainConfig {
                lr: f32::NAN,
                ..Default::default()
            },
            TrainConfig {
                beta: -1.0,
                ..Default::default()
            },
            TrainConfig {
                free_bits: Some(-0.5),
                ..Default::default()
            },
            TrainConfig {
                clip_grad_norm: Some(0.0),
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
