//! The training loop: seeded mini-batches, the whole step on the device,
//! per-epoch figures through a callback, atomic checkpoints and exact resume.

use std::path::{Path, PathBuf};
use std::time::Instant;

use latentlab_data::Dataset;
use latentlab_tensor::{Backend, Shape};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Checkpoint, LoadOptions};
use crate::config::{ModelConfig, TrainConfig};
use crate::discriminator::Discriminator;
use crate::error::{ModelError, Result, ckpt_err};
use crate::eval::{Metrics, evaluate};
use crate::objective::Objective;
use crate::vae::{AdamState, StepParams, Vae};

/// Figures of one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// The epoch (from 1).
    pub epoch: usize,
    /// Optimiser steps so far.
    pub step: u64,
    /// Training figures, averaged over the epoch's batches as they were
    /// trained (nats per image): reconstruction.
    pub train_rec: f64,
    /// Training KL.
    pub train_kl: f64,
    /// Training −ELBO.
    pub train_neg_elbo: f64,
    /// Test figures after the epoch.
    pub test: Metrics,
    /// The KL weight at the epoch's last step.
    pub kl_weight: f32,
    /// Wall-clock seconds of the epoch's training steps (not evaluation).
    pub seconds: f64,
    /// The objective's latent parts averaged over the epoch's batches
    /// (β-TCVAE's `mi`, `tc`, `dwkl`, …; nats, or the regulariser's units);
    /// empty for the ELBO.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub terms: std::collections::BTreeMap<String, f64>,
}

/// Where a run stands: what a resume needs beyond weights and moments.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The run's settings.
    pub config: Option<TrainConfig>,
    /// Optimiser steps applied.
    pub step: u64,
    /// Sums over the current epoch so far: reconstruction, KL, images.
    pub epoch_rec: f64,
    /// KL sum of the current epoch so far.
    pub epoch_kl: f64,
    /// Images of the current epoch so far.
    pub epoch_images: u64,
    /// Training seconds of the current epoch so far.
    pub epoch_seconds: f64,
    /// Sums over the current epoch's batches of the objective's latent
    /// parts, each weighted by its batch's images.
    #[serde(default)]
    pub epoch_terms: std::collections::BTreeMap<String, f64>,
    /// Reports of finished epochs.
    pub history: Vec<EpochReport>,
    /// The version of the random-stream derivation the run draws from
    /// ([`crate::streams::VERSION`]); files without one predate hashed keys
    /// and read as version 1.
    #[serde(default = "first_streams")]
    pub streams: u32,
    /// FactorVAE: the discriminator's Adam steps so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub discriminator_steps: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn first_streams() -> u32 {
    1
}

/// What the callback sees.
#[derive(Debug)]
pub enum Event<'a> {
    /// A step was applied.
    Step {
        /// Step number (from 1).
        step: u64,
        /// Total steps of the run.
        total: u64,
        /// The epoch (from 1).
        epoch: usize,
        /// The optimised loss per image.
        loss: f64,
        /// KL(q(z|x) ‖ p(z)) per image of this step's batch, nats.
        kl: f64,
    },
    /// An epoch ended.
    Epoch(&'a EpochReport),
}

/// The callback's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop after saving the training state.
    Stop,
}

/// Where and how often to save.
#[derive(Clone, Debug, Default)]
pub struct SavePolicy {
    /// The model checkpoint (PyTorch layout), written after every epoch.
    pub model: Option<PathBuf>,
    /// The training state for `--resume`, written every `every_steps` steps
    /// and after every epoch.
    pub state: Option<PathBuf>,
    /// Steps between training-state saves (0: only at epoch ends).
    pub every_steps: u64,
    /// A deliberate crash, for tests of resume: the process aborts (as a
    /// `kill -9` would end it: no destructor, no flush) at this point.
    pub fault: Option<FaultPoint>,
}

/// Where a test makes a run crash (`LATENTLAB_FAULT` on the command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPoint {
    /// Right after step N's update, before anything of it is saved.
    AfterStep(u64),
    /// At the end of epoch E (from 1), after the weights were written and
    /// before the training state is.
    BetweenWrites(usize),
}

impl FaultPoint {
    /// Parses `step:N` or `between-writes:E`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            ModelError::Data(format!(
                "fault point `{text}`: expected step:N or between-writes:EPOCH"
            ))
        };
        let (kind, n) = text.split_once(':').ok_or_else(bad)?;
        let n: u64 = n.parse().map_err(|_| bad())?;
        match kind {
            "step" if n >= 1 => Ok(Self::AfterStep(n)),
            "between-writes" if n >= 1 => Ok(Self::BetweenWrites(n as usize)),
            _ => Err(bad()),
        }
    }

    fn hit(fault: Option<Self>, here: Self) {
        if fault == Some(here) {
            eprintln!("latentlab: fault injected at {here:?}: aborting");
            std::process::abort();
        }
    }
}

/// The training-state file that goes with a model checkpoint.
pub fn state_path(model: &Path) -> PathBuf {
    let mut s = model.as_os_str().to_owned();
    s.push(".resume");
    PathBuf::from(s)
}

/// A model with its optimiser and progress.
#[derive(Debug)]
pub struct Trainer<B: Backend> {
    model: Vae<B>,
    adam: AdamState<B>,
    config: TrainConfig,
    progress: Progress,
    /// FactorVAE's discriminator, with its own optimiser.
    disc: Option<Discriminator<B>>,
}

/// A new discriminator for a FactorVAE run, `None` for other objectives.
fn new_discriminator<B: Backend>(
    backend: &B,
    model: &ModelConfig,
    config: &TrainConfig,
) -> Result<Option<Discriminator<B>>> {
    match config.objective {
        Objective::FactorVae { discriminator, .. } => Ok(Some(Discriminator::new(
            backend.clone(),
            model.latent,
            discriminator,
            config.seed,
        )?)),
        _ => Ok(None),
    }
}

impl<B: Backend> Trainer<B> {
    /// A fresh run: a new model seeded with `config.seed`.
    pub fn new(backend: B, model: ModelConfig, config: TrainConfig) -> Result<Self> {
        config.validate()?;
        if model.kind == crate::config::ModelKind::Autoencoder
            && config.objective != crate::objective::Objective::Elbo
        {
            return Err(crate::error::config_err(
                "objective",
                format!(
                    "{} needs the posterior q(z|x), and an autoencoder has no posterior (use --model vae)",
                    config.objective.name()
                ),
            ));
        }
        let disc = new_discriminator(&backend, &model, &config)?;
        let model = Vae::new(backend, model, config.seed)?;
        let adam = AdamState::new(&model)?;
        Ok(Self {
            model,
            adam,
            disc,
            progress: Progress {
                config: Some(config.clone()),
                streams: crate::streams::VERSION,
                ..Progress::default()
            },
            config,
        })
    }

    /// Continues a run from a training-state file (or from a model checkpoint
    /// whose `.resume` file lies beside it). `epochs`, when given, extends or
    /// shortens the run; every other setting is the saved one.
    pub fn resume(backend: B, path: &Path, epochs: Option<usize>) -> Result<Self> {
        let mut file = path.to_path_buf();
        let ckpt = Checkpoint::read(&file, &LoadOptions::default())?;
        let ckpt = if ckpt.progress.is_some() {
            ckpt
        } else {
            file = state_path(path);
            if !file.exists() {
                return Err(ckpt_err(
                    path,
                    format!(
                        "holds weights but no training state, and {} does not exist; resume from the .resume file training wrote",
                        file.display()
                    ),
                ));
            }
            Checkpoint::read(&file, &LoadOptions::default())?
        };
        let progress: Progress = serde_json::from_str(ckpt.progress.as_deref().unwrap_or(""))
            .map_err(|e| ckpt_err(&file, format!("training progress is unreadable: {e}")))?;
        if progress.streams != crate::streams::VERSION {
            return Err(ckpt_err(
                &file,
                format!(
                    "was written by a latentlab whose random streams differ (version {}, this one draws version {}): resuming would not continue the same run; start it again",
                    progress.streams,
                    crate::streams::VERSION
                ),
            ));
        }
        let mut config = progress
            .config
            .clone()
            .ok_or_else(|| ckpt_err(&file, "training progress has no settings"))?;
        if let Some(e) = epochs {
            config.epochs = e;
        }
        config.validate()?;
        let model = ckpt.model(backend.clone())?;
        let adam = ckpt
            .adam_state(&backend)?
            .ok_or_else(|| ckpt_err(&file, "no optimiser state"))?;
        let disc = match config.objective {
            Objective::FactorVae {
                discriminator: spec,
                ..
            } => {
                // Its weights and moments, by name, from the state file.
                let latent = model.config().latent;
                let names = Discriminator::<B>::names_for(&spec, latent)?;
                let take = |prefix: &str| -> Result<Vec<Vec<f32>>> {
                    names
                        .iter()
                        .map(|n| {
                            let key = format!("{prefix}{n}");
                            ckpt.extra.get(&key).cloned().ok_or_else(|| {
                                ckpt_err(&file, format!("a FactorVAE state needs tensor {key}"))
                            })
                        })
                        .collect()
                };
                let (w, m, v) = (take("")?, take("adam.m.")?, take("adam.v.")?);
                Some(
                    Discriminator::from_host(
                        backend.clone(),
                        latent,
                        spec,
                        w,
                        Some((m, v)),
                        progress.discriminator_steps,
                    )
                    .map_err(|e| ckpt_err(&file, e.to_string()))?,
                )
            }
            _ => None,
        };
        Ok(Self {
            model,
            adam,
            config,
            progress,
            disc,
        })
    }

    /// The model.
    pub fn model(&self) -> &Vae<B> {
        &self.model
    }

    /// The model, taken out.
    pub fn into_model(self) -> Vae<B> {
        self.model
    }

    /// The run's settings.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Where the run stands.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// FactorVAE's discriminator.
    pub fn discriminator(&self) -> Option<&Discriminator<B>> {
        self.disc.as_ref()
    }

    /// Writes the training state atomically.
    pub fn save_state(&self, path: &Path) -> Result<()> {
        let mut p = self.progress.clone();
        p.config = Some(self.config.clone());
        let mut extra = Vec::new();
        if let Some(d) = &self.disc {
            p.discriminator_steps = d.step();
            let (w, m, v) = d.to_host()?;
            for (prefix, values) in [("", w), ("adam.m.", m), ("adam.v.", v)] {
                for ((name, dims), x) in d.names().zip(values) {
                    extra.push((format!("{prefix}{name}"), dims.to_vec(), x));
                }
            }
        }
        let json = serde_json::to_string(&p).expect("progress serialises");
        checkpoint::save_state_with(&self.model, &self.adam, &json, extra, path)
    }

    /// Trains to the configured number of epochs on `train`, evaluating on
    /// `test` after each epoch. Returns the epoch reports (all of them,
    /// including those before a resume).
    pub fn fit(
        &mut self,
        train: &Dataset,
        test: &Dataset,
        save: &SavePolicy,
        callback: &mut dyn FnMut(Event<'_>) -> Control,
    ) -> Result<Vec<EpochReport>> {
        let dim = self.model.config().input_dim;
        for (name, d) in [("training", train), ("test", test)] {
            if d.is_empty() {
                return Err(ModelError::Data(format!("the {name} set is empty")));
            }
            if d.dim() != dim {
                return Err(ModelError::Data(format!(
                    "{name} images have {} values each but the model expects {dim}",
                    d.dim()
                )));
            }
        }
        // One pass over the pixels: finite, and in [0, 1] for a Bernoulli
        // likelihood.
        let bernoulli = self.model.config().likelihood == crate::config::Likelihood::Bernoulli;
        if let Some(v) = train
            .images
            .iter()
            .find(|v| !v.is_finite() || (bernoulli && !(0.0..=1.0).contains(*v)))
        {
            return Err(ModelError::Data(if v.is_finite() {
                format!(
                    "a Bernoulli likelihood needs pixel values in [0, 1]; the training data hold {v}"
                )
            } else {
                format!("the training data hold a non-finite value ({v})")
            }));
        }
        let cfg = self.config.clone();
        let n = train.len();
        let bs = cfg.batch_size.min(n);
        let per_epoch = n.div_ceil(bs) as u64;
        let total = per_epoch * cfg.epochs as u64;
        let be = self.model.backend().clone();
        let flat = train
            .images
            .as_slice()
            .ok_or_else(|| ModelError::Data("training images must be contiguous".into()))?;
        let mut batch_buf = vec![0.0f32; bs * dim];
        if self.progress.step >= total {
            // Resumed from a finished run: make sure its weights are on disk.
            if let Some(p) = &save.model {
                checkpoint::save(&self.model, p)?;
            }
        }
        while self.progress.step < total {
            let step0 = self.progress.step;
            let epoch = (step0 / per_epoch) as usize;
            let perm = crate::streams::order(n, cfg.seed, epoch as u64);
            let first = (step0 % per_epoch) as usize;
            let started = Instant::now();
            let mut stop = false;
            for b in first..per_epoch as usize {
                let idx = &perm[b * bs..((b + 1) * bs).min(n)];
                let rows = idx.len();
                for (k, &i) in idx.iter().enumerate() {
                    batch_buf[k * dim..(k + 1) * dim]
                        .copy_from_slice(&flat[i * dim..(i + 1) * dim]);
                }
                let x = be.upload(&batch_buf[..rows * dim], Shape::new(rows, dim))?;
                let step = self.progress.step + 1;
                let kl_weight = cfg.kl_schedule.weight(step - 1, total);
                let hp = StepParams {
                    beta: cfg.beta * kl_weight,
                    free_bits: cfg.free_bits,
                    capacity: cfg.capacity.map(|c| (c.at(step - 1), c.gamma)),
                    clip_grad_norm: cfg.clip_grad_norm,
                    seed: cfg.seed,
                    step,
                    lr: cfg.lr,
                    weight_decay: cfg.weight_decay,
                    objective: cfg.objective,
                    dataset_size: n,
                };
                let (model, adam, disc) = (&mut self.model, &mut self.adam, self.disc.as_mut());
                let stats = be.run(|| model.train_step_with(&x, &hp, adam, disc))?;
                if !stats.loss.is_finite() {
                    return Err(ModelError::Diverged {
                        step,
                        epoch: epoch + 1,
                        last_good: step - 1,
                        lr: cfg.lr,
                        detail: format!(
                            "the loss is not finite (reconstruction sum {}, KL sum {})",
                            stats.rec_sum,
                            stats.kl_dims_sum.iter().sum::<f64>()
                        ),
                    });
                }
                self.progress.step = step;
                FaultPoint::hit(save.fault, FaultPoint::AfterStep(step));
                self.progress.epoch_rec += stats.rec_sum;
                self.progress.epoch_kl += stats.kl_dims_sum.iter().sum::<f64>();
                self.progress.epoch_images += rows as u64;
                for (name, v) in &stats.terms {
                    *self
                        .progress
                        .epoch_terms
                        .entry((*name).to_string())
                        .or_default() += v * rows as f64;
                }
                let control = callback(Event::Step {
                    step,
                    total,
                    epoch: epoch + 1,
                    loss: stats.loss,
                    kl: stats.kl_dims_sum.iter().sum::<f64>() / rows as f64,
                });
                let last_of_epoch = b + 1 == per_epoch as usize;
                if !last_of_epoch {
                    let due = save.every_steps > 0 && step.is_multiple_of(save.every_steps);
                    if control == Control::Stop || due {
                        self.progress.epoch_seconds += started.elapsed().as_secs_f64();
                        if let Some(p) = &save.state {
                            self.save_state(p)?;
                        }
                        self.progress.epoch_seconds -= started.elapsed().as_secs_f64();
                    }
                    if control == Control::Stop {
                        stop = true;
                        break;
                    }
                }
                if last_of_epoch && control == Control::Stop {
                    stop = true;
                }
            }
            if stop && !self.progress.step.is_multiple_of(per_epoch) {
                self.progress.epoch_seconds += started.elapsed().as_secs_f64();
                return Err(ModelError::Stopped {
                    step: self.progress.step,
                });
            }
            be.sync()?;
            let seconds = self.progress.epoch_seconds + started.elapsed().as_secs_f64();
            let images = self.progress.epoch_images.max(1) as f64;
            let test_metrics = evaluate(&self.model, test.view(), 500, cfg.seed)?;
            let report = EpochReport {
                epoch: epoch + 1,
                step: self.progress.step,
                train_rec: self.progress.epoch_rec / images,
                train_kl: self.progress.epoch_kl / images,
                train_neg_elbo: (self.progress.epoch_rec + self.progress.epoch_kl) / images,
                test: test_metrics,
                kl_weight: cfg.kl_schedule.weight(self.progress.step - 1, total),
                seconds,
                terms: std::mem::take(&mut self.progress.epoch_terms)
                    .into_iter()
                    .map(|(k, v)| (k, v / images))
                    .collect(),
            };
            self.progress.history.push(report.clone());
            self.progress.epoch_rec = 0.0;
            self.progress.epoch_kl = 0.0;
            self.progress.epoch_images = 0;
            self.progress.epoch_seconds = 0.0;
            // The weights first: a run killed between the two writes resumes
            // from the older state and writes both again.
            if let Some(p) = &save.model {
                checkpoint::save(&self.model, p)?;
            }
            FaultPoint::hit(save.fault, FaultPoint::BetweenWrites(epoch + 1));
            if let Some(p) = &save.state {
                self.save_state(p)?;
            }
            let control = callback(Event::Epoch(&report));
            if stop || control == Control::Stop {
                if self.progress.step < total {
                    return Err(ModelError::Stopped {
                        step: self.progress.step,
                    });
                }
                break;
            }
        }
        Ok(self.progress.history.clone())
    }
}
