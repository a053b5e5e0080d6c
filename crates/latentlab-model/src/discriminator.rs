//! FactorVAE's discriminator (Kim & Mnih 2018) as disentanglement_lib
//! builds it: an MLP from the codes to two logits ("a sample of q(z)" and
//! "a sample of the product of its marginals"), `depth` hidden layers of
//! `width` units with leaky ReLU (slope 0.2, TensorFlow's default), Glorot
//! uniform weights and zero biases, trained by its own Adam.
//!
//! Each step, on a batch of codes `z` and the same codes with every
//! dimension permuted independently within the batch ([`shuffle_codes`]):
//!
//! - the VAE adds `γ·TC` with `TC ≈ mean(logit₀(z) − logit₁(z))` (the
//!   density-ratio estimate) and takes its gradient with respect to `z`
//!   through the discriminator;
//! - the discriminator minimises `−½ mean log p₀(z) − ½ mean log p₁(z̃)`,
//!   its probabilities clipped to `[1e-6, 1 − 1e-6]` as in
//!   disentanglement_lib, with both gradients taken at the same weights.
//!
//! The discriminator runs on the model's backend with the same layers as
//! the networks ([`crate::layers`]).

use latentlab_tensor::{Activation, AdamStep, Backend, Shape};
use serde::{Deserialize, Serialize};

use crate::error::{Result, config_err};
use crate::layers::{Dims, LayerSpec, Mode, Param, Stack};
use crate::streams;

/// The discriminator's shape and optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiscriminatorSpec {
    /// Units per hidden layer (disentanglement_lib: 1000).
    pub width: usize,
    /// Hidden layers (disentanglement_lib: 6).
    pub depth: usize,
    /// Adam's learning rate (disentanglement_lib: 1e-4).
    pub lr: f32,
    /// Adam's β₁ (disentanglement_lib: 0.5).
    pub beta1: f32,
    /// Adam's β₂ (disentanglement_lib: 0.9).
    pub beta2: f32,
}

impl Default for DiscriminatorSpec {
    fn default() -> Self {
        Self {
            width: 1000,
            depth: 6,
            lr: 1e-4,
            beta1: 0.5,
            beta2: 0.9,
        }
    }
}

/// The leaky ReLU's slope, TensorFlow's `tf.nn.leaky_relu` default that
/// disentanglement_lib's discriminator uses.
pub const LEAKY_SLOPE: f32 = 0.2;

/// Probabilities are clipped to `[CLIP, 1 − CLIP]` before the log.
const CLIP: f64 = 1e-6;

impl DiscriminatorSpec {
    /// Checks the shape and the optimiser's settings.
    pub fn validate(&self) -> Result<()> {
        if self.width == 0 || self.depth == 0 || self.width > 1 << 14 || self.depth > 64 {
            return Err(config_err(
                "factor-discriminator",
                format!(
                    "{} hidden layers of {} units: give 1 to 64 layers of 1 to 16384",
                    self.depth, self.width
                ),
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(config_err(
                "factor-disc-lr",
                format!(
                    "the discriminator's learning rate {} must be finite and > 0",
                    self.lr
                ),
            ));
        }
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(config_err(
                    "factor-discriminator",
                    format!("Adam's {name} = {b} must lie in [0, 1)"),
                ));
            }
        }
        Ok(())
    }

    fn layers(&self) -> Vec<LayerSpec> {
        let mut l = Vec::with_capacity(2 * self.depth + 1);
        for _ in 0..self.depth {
            l.push(LayerSpec::Linear {
                out: self.width,
                bias: true,
            });
            l.push(LayerSpec::Activation(Activation::LeakyRelu {
                slope: LEAKY_SLOPE,
            }));
        }
        l.push(LayerSpec::Linear { out: 2, bias: true });
        l
    }
}

/// What one step gives: the VAE's term and its gradient, and the
/// discriminator's loss, accuracy and gradients (applied with
/// [`Discriminator::apply`]).
#[derive(Clone, Debug)]
pub struct FactorTerms<T> {
    /// The TC estimate, `mean(logit₀(z) − logit₁(z))`.
    pub tc: f64,
    /// `∂(γ·TC)/∂z` (`batch × latent`).
    pub grad_z: T,
    /// The discriminator's loss.
    pub loss: f64,
    /// The fraction of `z` and of the permuted codes it classifies right.
    pub accuracy: f64,
    /// The gradient of its loss for each of its parameters.
    pub grads: Vec<T>,
}

/// The discriminator's weights and Adam state on `B`'s device.
#[derive(Clone, Debug)]
pub struct Discriminator<B: Backend> {
    backend: B,
    spec: DiscriminatorSpec,
    latent: usize,
    stack: Stack,
    names: Vec<Param>,
    params: Vec<B::Tensor>,
    m: Vec<B::Tensor>,
    v: Vec<B::Tensor>,
    step: u64,
}

/// One host vector per parameter, in [`Discriminator::names`] order.
pub type HostWeights = Vec<Vec<f32>>;

impl<B: Backend> Discriminator<B> {
    fn build(spec: &DiscriminatorSpec, latent: usize) -> Result<(Stack, Vec<Param>)> {
        spec.validate()?;
        let mut names = Vec::new();
        let stack = Stack::new(
            "discriminator",
            &spec.layers(),
            Dims::Flat(latent),
            &mut names,
        )?;
        Ok((stack, names))
    }

    /// A new discriminator for codes of `latent` dimensions: Glorot
    /// uniform weights (`±√(6 / (fan_in + fan_out))`) and zero biases, as
    /// TensorFlow's dense layers start, seeded.
    pub fn new(backend: B, latent: usize, spec: DiscriminatorSpec, seed: u64) -> Result<Self> {
        let (_, names) = Self::build(&spec, latent)?;
        let host = names
            .iter()
            .enumerate()
            .map(|(k, p)| {
                if p.dims.len() == 2 {
                    let bound = (6.0 / (p.dims[0] + p.dims[1]) as f64).sqrt();
                    let mut g = streams::discriminator_init(seed, k);
                    (0..p.shape.len())
                        .map(|_| ((2.0 * g.uniform() - 1.0) * bound) as f32)
                        .collect()
                } else {
                    vec![0.0; p.shape.len()]
                }
            })
            .collect();
        Self::from_host(backend, latent, spec, host, None, 0)
    }

    /// A discriminator from host weights in [`Discriminator::names`] order,
    /// with Adam's moments (zero when `None`) after `step` updates.
    pub fn from_host(
        backend: B,
        latent: usize,
        spec: DiscriminatorSpec,
        params: HostWeights,
        moments: Option<(HostWeights, HostWeights)>,
        step: u64,
    ) -> Result<Self> {
        let (stack, names) = Self::build(&spec, latent)?;
        let check = |what: &str, xs: &[Vec<f32>]| -> Result<()> {
            if xs.len() != names.len() {
                return Err(config_err(
                    "discriminator",
                    format!("{} {what} tensors given, it has {}", xs.len(), names.len()),
                ));
            }
            for (p, x) in names.iter().zip(xs) {
                if x.len() != p.shape.len() {
                    return Err(config_err(
                        "discriminator",
                        format!(
                            "{what} {} has {} values, expected {}",
                            p.name,
                            x.len(),
                            p.shape.len()
                        ),
                    ));
                }
                if let Some(i) = x.iter().position(|v| !v.is_finite()) {
                    return Err(config_err(
                        "discriminator",
                        format!("{what} {}[{i}] is not finite", p.name),
                    ));
                }
            }
            Ok(())
        };
        check("weight", &params)?;
        let up = |xs: &[Vec<f32>]| -> Result<Vec<B::Tensor>> {
            names
                .iter()
                .zip(xs)
                .map(|(p, x)| Ok(backend.upload(x, p.shape)?))
                .collect()
        };
        let (m, v) = match moments {
            Some((m, v)) => {
                check("first-moment", &m)?;
                check("second-moment", &v)?;
                (up(&m)?, up(&v)?)
            }
            None => {
                let zeros = || -> Result<Vec<B::Tensor>> {
                    names.iter().map(|p| Ok(backend.zeros(p.shape)?)).collect()
                };
                (zeros()?, zeros()?)
            }
        };
        let params = up(&params)?;
        Ok(Self {
            backend,
            spec,
            latent,
            stack,
            names,
            params,
            m,
            v,
            step,
        })
    }

    /// Its shape and optimiser.
    pub fn spec(&self) -> &DiscriminatorSpec {
        &self.spec
    }

    /// Adam updates applied.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The parameters' names for codes of `latent` dimensions, in order.
    pub fn names_for(spec: &DiscriminatorSpec, latent: usize) -> Result<Vec<String>> {
        Ok(Self::build(spec, latent)?
            .1
            .into_iter()
            .map(|p| p.name)
            .collect())
    }

    /// The parameters' names (`discriminator.0.weight`, …) and PyTorch
    /// shapes, in order.
    pub fn names(&self) -> impl Iterator<Item = (&str, &[usize])> {
        self.names.iter().map(|p| (p.name.as_str(), &p.dims[..]))
    }

    /// Weights and Adam's first and second moments, downloaded.
    pub fn to_host(&self) -> Result<(HostWeights, HostWeights, HostWeights)> {
        let down = |xs: &[B::Tensor]| -> Result<HostWeights> {
            xs.iter().map(|t| Ok(self.backend.download(t)?)).collect()
        };
        Ok((down(&self.params)?, down(&self.m)?, down(&self.v)?))
    }

    /// The logits (`rows × 2`) of codes `z`.
    pub fn logits(&self, z: &B::Tensor) -> Result<B::Tensor> {
        self.check_codes(z)?;
        self.stack.forward(&self.backend, &self.params, z)
    }

    fn check_codes(&self, z: &B::Tensor) -> Result<()> {
        let s = self.backend.shape(z);
        if s.cols != self.latent {
            return Err(config_err(
                "discriminator",
                format!("codes have {} dimensions, it takes {}", s.cols, self.latent),
            ));
        }
        Ok(())
    }

    /// One step's terms on codes `z` and their permuted copy `shuffled`
    /// (the same shape), at the current weights.
    pub fn terms(
        &self,
        z: &B::Tensor,
        shuffled: &B::Tensor,
        gamma: f64,
    ) -> Result<FactorTerms<B::Tensor>> {
        self.check_codes(z)?;
        let be = &self.backend;
        if be.shape(shuffled) != be.shape(z) {
            return Err(config_err(
                "discriminator",
                format!(
                    "the permuted codes are {}, the codes {}",
                    be.shape(shuffled),
                    be.shape(z)
                ),
            ));
        }
        let rows = be.shape(z).rows;
        let inv = 1.0 / rows as f64;
        let (st, p) = (&self.stack, &self.params[..]);
        let cache_z = st.forward_cached(be, p, z, Mode::Train)?;
        let cache_s = st.forward_cached(be, p, shuffled, Mode::Train)?;
        let lz = be.download(st.cached_output(&cache_z, z))?;
        let ls = be.download(st.cached_output(&cache_s, shuffled))?;
        // The VAE's TC estimate and its seed gradient γ/B · (1, −1).
        let tc = lz
            .chunks_exact(2)
            .map(|l| f64::from(l[0]) - f64::from(l[1]))
            .sum::<f64>()
            * inv;
        let g = (gamma * inv) as f32;
        let seed: Vec<f32> = (0..rows).flat_map(|_| [g, -g]).collect();
        let mut scratch = vec![None; p.len()];
        let grad_z = st
            .backward(
                be,
                p,
                z,
                &cache_z,
                be.upload(&seed, Shape::new(rows, 2))?,
                &mut scratch,
                true,
            )?
            .expect("the input gradient was asked for");
        // The discriminator's cross-entropy: class 0 for z, 1 for the
        // permuted codes, each half weighted; ∂/∂logits = ½ (softmax −
        // one-hot) / B, zero where the probability is clipped.
        let (mut loss, mut right) = (0.0, 0usize);
        let mut seed_of = |logits: &[f32], class: usize| -> Vec<f32> {
            let mut out = Vec::with_capacity(logits.len());
            for l in logits.chunks_exact(2) {
                let (a, b) = (f64::from(l[0]), f64::from(l[1]));
                let m = a.max(b);
                let lse = m + ((a - m).exp() + (b - m).exp()).ln();
                let prob = [(a - lse).exp(), (b - lse).exp()];
                let pc = prob[class];
                loss -= 0.5 * inv * pc.clamp(CLIP, 1.0 - CLIP).ln();
                if (class == 0 && a > b) || (class == 1 && b > a) {
                    right += 1;
                }
                let clipped = !(CLIP..=1.0 - CLIP).contains(&pc);
                for (c, &q) in prob.iter().enumerate() {
                    let hot = if c == class { 1.0 } else { 0.0 };
                    let d = if clipped { 0.0 } else { 0.5 * inv * (q - hot) };
                    out.push(d as f32);
                }
            }
            out
        };
        let (sz, ss) = (seed_of(&lz, 0), seed_of(&ls, 1));
        let mut grads = vec![None; p.len()];
        st.backward(
            be,
            p,
            z,
            &cache_z,
            be.upload(&sz, Shape::new(rows, 2))?,
            &mut grads,
            false,
        )?;
        let mut other = vec![None; p.len()];
        st.backward(
            be,
            p,
            shuffled,
            &cache_s,
            be.upload(&ss, Shape::new(rows, 2))?,
            &mut other,
            false,
        )?;
        let grads = grads
            .into_iter()
            .zip(other)
            .map(|(a, b)| {
                let (mut a, b) = (a.expect("every weight"), b.expect("every weight"));
                be.axpy(1.0, &b, &mut a)?;
                Ok(a)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FactorTerms {
            tc,
            grad_z,
            loss,
            accuracy: right as f64 / (2 * rows) as f64,
            grads,
        })
    }

    /// One Adam step on `grads` (from [`Discriminator::terms`]).
    pub fn apply(&mut self, grads: &[B::Tensor]) -> Result<()> {
        if grads.len() != self.params.len() {
            return Err(config_err(
                "discriminator",
                format!(
                    "{} gradients for {} parameters",
                    grads.len(),
                    self.params.len()
                ),
            ));
        }
        self.step += 1;
        let step = AdamStep {
            beta1: self.spec.beta1,
            beta2: self.spec.beta2,
            ..AdamStep::new(self.spec.lr, self.step)
        };
        for (i, g) in grads.iter().enumerate() {
            self.backend.adam_step(
                &mut self.params[i],
                g,
                &mut self.m[i],
                &mut self.v[i],
                &step,
            )?;
        }
        Ok(())
    }
}

/// `z` (`rows × dims`, row-major) with each dimension permuted
/// independently within the batch (disentanglement_lib's `shuffle_codes`),
/// from the stream of `(seed, step)`.
pub fn shuffle_codes(z: &[f32], rows: usize, dims: usize, seed: u64, step: u64) -> Vec<f32> {
    let mut g = streams::code_shuffle(seed, step);
    let mut out = vec![0.0f32; z.len()];
    let mut order: Vec<usize> = (0..rows).collect();
    for j in 0..dims {
        g.shuffle(&mut order);
        for (i, &src) in order.iter().enumerate() {
            out[i * dims + j] = z[src * dims + j];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use latentlab_tensor::Cpu;

    #[test]
    fn shuffled_codes_keep_each_dimension_s_values() {
        let (rows, dims) = (9, 3);
        let z: Vec<f32> = (0..rows * dims).map(|i| i as f32).collect();
        let s = shuffle_codes(&z, rows, dims, 4, 7);
        assert_ne!(s, z);
        for j in 0..dims {
            let mut a: Vec<f32> = (0..rows).map(|i| z[i * dims + j]).collect();
            let mut b: Vec<f32> = (0..rows).map(|i| s[i * dims + j]).collect();
            a.sort_by(f32::total_cmp);
            b.sort_by(f32::total_cmp);
            assert_eq!(a, b, "dimension {j}");
        }
        assert_eq!(s, shuffle_codes(&z, rows, dims, 4, 7), "seeded");
        assert_ne!(
            s,
            shuffle_codes(&z, rows, dims, 4, 8),
            "a new permutation each step"
        );
    }

    #[test]
    fn the_default_is_disentanglement_lib_s_discriminator() {
        let d = Discriminator::new(Cpu::sequential(), 10, DiscriminatorSpec::default(), 0).unwrap();
        let shapes: Vec<(String, Vec<usize>)> = d
            .names()
            .map(|(n, s)| (n.to_string(), s.to_vec()))
            .collect();
        assert_eq!(shapes.len(), 14);
        assert_eq!(shapes[0], ("discriminator.0.weight".into(), vec![1000, 10]));
        assert_eq!(
            shapes[10],
            ("discriminator.10.weight".into(), vec![1000, 1000])
        );
        assert_eq!(
            shapes[12],
            ("discriminator.12.weight".into(), vec![2, 1000])
        );
        let (w, _, _) = d.to_host().unwrap();
        let bound = (6.0f32 / 1010.0).sqrt();
        assert!(w[0].iter().all(|v| v.abs() <= bound) && w[1].iter().all(|&v| v == 0.0));
    }

    /// Trains a discriminator alone on codes with correlation `rho` between
    /// their two dimensions; returns its last TC estimate and accuracy.
    fn train_on(rho: f64) -> (f64, f64) {
        let cpu = Cpu::sequential();
        let spec = DiscriminatorSpec {
            width: 64,
            depth: 2,
            lr: 1e-3,
            ..DiscriminatorSpec::default()
        };
        let mut d = Discriminator::new(cpu, 2, spec, 1).unwrap();
        let mut g = latentlab_rng::SplitMix64::new(3, latentlab_rng::Purpose::Test, 0);
        let rows = 256;
        let (mut tc, mut acc) = (Vec::new(), Vec::new());
        for step in 1..=400 {
            let z: Vec<f32> = (0..rows)
                .flat_map(|_| {
                    let (a, b) = (g.normal(), g.normal());
                    [a as f32, (rho * a + (1.0 - rho * rho).sqrt() * b) as f32]
                })
                .collect();
            let s = shuffle_codes(&z, rows, 2, 5, step);
            let (zt, st) = (
                cpu.upload(&z, Shape::new(rows, 2)).unwrap(),
                cpu.upload(&s, Shape::new(rows, 2)).unwrap(),
            );
            let t = d.terms(&zt, &st, 1.0).unwrap();
            d.apply(&t.grads).unwrap();
            if step > 300 {
                tc.push(t.tc);
                acc.push(t.accuracy);
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        (mean(&tc), mean(&acc))
    }

    #[test]
    fn the_tc_estimate_finds_correlation_and_not_independence() {
        // Two Gaussians with correlation ρ have TC = −½ log(1 − ρ²): 0.83
        // nats at ρ = 0.9, 0 when independent.
        let (tc, acc) = train_on(0.9);
        let exact = -0.5 * (1.0f64 - 0.81).ln();
        assert!(
            (tc - exact).abs() < 0.15,
            "ρ = 0.9: TC ≈ {tc}, exact {exact}"
        );
        assert!(acc > 0.7, "ρ = 0.9: accuracy {acc}");
        let (tc, acc) = train_on(0.0);
        assert!(tc.abs() < 0.05, "independent: TC ≈ {tc}");
        assert!((acc - 0.5).abs() < 0.05, "independent: accuracy {acc}");
    }

    #[test]
    fn bad_specs_are_errors() {
        for spec in [
            DiscriminatorSpec {
                width: 0,
                ..Default::default()
            },
            DiscriminatorSpec {
                lr: -1.0,
                ..Default::default()
            },
            DiscriminatorSpec {
                beta2: 1.0,
                ..Default::default()
            },
        ] {
            assert!(spec.validate().is_err(), "{spec:?}");
        }
    }
}
