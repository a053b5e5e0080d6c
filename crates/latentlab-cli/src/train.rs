//! `latentlab train` and `latentlab encode`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use latentlab::data;
use latentlab::diagnostics::CollapseWatch;
use latentlab::model::objective::Objective;
use latentlab::model::{
    Capacity, Control, Event, FaultPoint, KlSchedule, LatentModel, Likelihood, ModelConfig,
    ModelKind, SavePolicy, TrainConfig, Trainer, state_path,
};
use latentlab::tensor::{Activation, Backend, Device, DeviceChoice};
use serde::Serialize;

use crate::arch::{Arch, Hidden, parse_arch, parse_hidden};
use crate::error::{CliError, Context, Result};
use crate::load::{load_data, read_matrix, split_rows};
use crate::model::{ModelFlags, Need, load_for, open};

/// Parses an activation name.
pub fn parse_activation(text: &str) -> Result<Activation, String> {
    Ok(match text {
        "relu" => Activation::Relu,
        "leaky-relu" | "leaky_relu" => Activation::LeakyRelu { slope: 0.01 },
        "elu" => Activation::Elu { alpha: 1.0 },
        "tanh" => Activation::Tanh,
        "sigmoid" => Activation::Sigmoid,
        "softplus" => Activation::Softplus,
        other => {
            return Err(format!(
                "unknown activation `{other}`; expected relu, leaky-relu, elu, tanh, sigmoid or softplus"
            ));
        }
    })
}

/// Parses `bernoulli`, `gaussian[:LOGVAR]` or `gaussian-learned[:LOGVAR]`.
pub fn parse_likelihood(text: &str) -> Result<Likelihood, String> {
    let (name, lv) = match text.split_once(':') {
        Some((n, v)) => (
            n,
            v.parse::<f32>()
                .ok()
                .filter(|v| v.is_finite() && v.abs() <= 30.0)
                .ok_or_else(|| format!("`{v}` is not a log-variance in [−30, 30]"))?,
        ),
        None => (text, 0.0),
    };
    match name {
        "bernoulli" => Ok(Likelihood::Bernoulli),
        "gaussian" => Ok(Likelihood::Gaussian {
            logvar: lv,
            learned: false,
        }),
        "gaussian-learned" => Ok(Likelihood::Gaussian {
            logvar: lv,
            learned: true,
        }),
        other => Err(format!(
            "unknown likelihood `{other}`; expected bernoulli, gaussian[:LOGVAR] or gaussian-learned[:LOGVAR]"
        )),
    }
}

/// Parses `MAX[:STEPS[:GAMMA]]`.
pub fn parse_capacity(text: &str) -> Result<Capacity, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let num = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
    let bad = || format!("`{text}`: expected MAX_NATS[:STEPS[:GAMMA]] with non-negative numbers");
    if parts.is_empty() || parts.len() > 3 {
        return Err(bad());
    }
    let max = num(parts[0]).ok_or_else(bad)? as f32;
    let steps = parts
        .get(1)
        .map(|s| num(s).ok_or_else(bad))
        .transpose()?
        .unwrap_or(10_000.0) as u64;
    let gamma = parts
        .get(2)
        .map(|s| num(s).ok_or_else(bad))
        .transpose()?
        .unwrap_or(1000.0) as f32;
    Ok(Capacity { max, steps, gamma })
}

/// Every flag of `latentlab train`.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct TrainArgs {
    /// mnist-10k (embedded), dsprites or dsprites:N (procedural, N images), color-dsprites or color-dsprites:N (the sprite in a random colour), a .npy file of images (N×C×H×W, N×H×W or N×D; uint8, or floats in [0, 1]) or a folder of IDX files.
    #[arg(long, default_value = "mnist-10k")]
    pub data: String,
    /// Passes over the training data (default 20; with --resume, the saved run's).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Latent size.
    #[arg(long, default_value_t = 20)]
    pub latent: usize,
    /// Hidden widths of the encoder (the decoder mirrors them), for the MLP.
    #[arg(long, default_value = "512,256", value_parser = parse_hidden)]
    pub hidden: Hidden,
    /// mlp (the --hidden MLP), mlp:WIDTHS, conv64 (64×64 images), conv28 (28×28) or FILE.json with {"encoder": [...], "decoder": [...]} layer stacks.
    #[arg(long, default_value = "mlp", value_parser = parse_arch)]
    pub arch: Arch,
    /// vae, or ae for a deterministic autoencoder of the same shape.
    #[arg(long, default_value = "vae")]
    pub model: String,
    /// relu, leaky-relu, elu, tanh, sigmoid or softplus.
    #[arg(long, default_value = "relu", value_parser = parse_activation)]
    pub activation: Activation,
    /// bernoulli, gaussian or gaussian:LOGVAR (fixed variance), gaussian-learned or gaussian-learned:LOGVAR.
    #[arg(long, default_value = "bernoulli", value_parser = parse_likelihood)]
    pub likelihood: Likelihood,
    /// The KL weight β (1 is the ELBO; > 1 a β-VAE).
    #[arg(long, default_value_t = 1.0)]
    pub beta: f32,
    /// constant, linear:STEPS (warm-up), cyclical:CYCLES or cyclical:CYCLES:RATIO (Fu et al. 2019).
    #[arg(long, default_value = "constant")]
    pub kl_schedule: String,
    /// Free bits: a floor in nats on each latent dimension's KL.
    #[arg(long)]
    pub free_bits: Option<f32>,
    /// Capacity annealing γ·|KL − C|: MAX_NATS, MAX_NATS:STEPS or MAX_NATS:STEPS:GAMMA (defaults 10000 steps, γ = 1000).
    #[arg(long, value_parser = parse_capacity)]
    pub capacity: Option<Capacity>,
    /// The objective: elbo (with --beta, --kl-schedule, --free-bits, --capacity), annealed-vae (disentanglement_lib's name for the ELBO with --capacity), beta-tcvae, factor-vae, dip-vae-i, dip-vae-ii, mmd or iwae (see docs/model.md).
    #[arg(long, default_value = "elbo")]
    pub objective: String,
    /// beta-tcvae: weight α of the index-code mutual information (default 1).
    #[arg(long)]
    pub tc_alpha: Option<f64>,
    /// beta-tcvae: weight β of the total correlation (default 6, disentanglement_lib's middle setting).
    #[arg(long)]
    pub tc_beta: Option<f64>,
    /// beta-tcvae: weight γ of the dimension-wise KL (default 1).
    #[arg(long)]
    pub tc_gamma: Option<f64>,
    /// beta-tcvae: how log q(z) is estimated from a batch: mss (minibatch-stratified, the default) or mws (minibatch-weighted).
    #[arg(long)]
    pub tc_estimator: Option<String>,
    /// dip-vae-i/-ii: λ_od, the weight of the off-diagonal covariances (default 5).
    #[arg(long)]
    pub dip_lambda_od: Option<f64>,
    /// dip-vae-i/-ii: λ_d, the weight of the diagonal (default 10·λ_od for -I, λ_od for -II).
    #[arg(long)]
    pub dip_lambda_d: Option<f64>,
    /// mmd: the weight λ of MMD² between the batch's codes and as many prior draws (default 100).
    #[arg(long)]
    pub mmd_lambda: Option<f64>,
    /// mmd: rbf (exp(−‖x−y‖²/C)) or imq (C/(C + ‖x−y‖²), the default).
    #[arg(long)]
    pub mmd_kernel: Option<String>,
    /// mmd: the kernel bandwidth C (default 2·latent, Tolstikhin et al.'s choice for N(0, I)).
    #[arg(long)]
    pub mmd_scale: Option<f64>,
    /// factor-vae: γ, the weight of the discriminator's total-correlation estimate (default 20, the middle of disentanglement_lib's sweep).
    #[arg(long)]
    pub factor_gamma: Option<f64>,
    /// factor-vae: the discriminator's Adam learning rate (default 1e-4, with β1 0.5 and β2 0.9 as in disentanglement_lib).
    #[arg(long)]
    pub factor_disc_lr: Option<f32>,
    /// factor-vae: units per hidden layer of the discriminator (default 1000).
    #[arg(long)]
    pub factor_disc_width: Option<usize>,
    /// factor-vae: hidden layers of the discriminator (default 6).
    #[arg(long)]
    pub factor_disc_depth: Option<usize>,
    /// iwae: importance samples per image, k (default 5; 1 is the ELBO's one-sample estimate).
    #[arg(long)]
    pub iwae_k: Option<usize>,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    /// Decoupled weight decay (AdamW).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Clip the global gradient norm to this value.
    #[arg(long)]
    pub clip_grad: Option<f32>,
    /// Seed of the weights, shuffles and noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, gpu or auto.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// The checkpoint to write (PyTorch-layout safetensors); FILE.resume holds the training state.
    #[arg(long, default_value = "vae.safetensors")]
    pub out: PathBuf,
    /// Continue the run saved in FILE (a .resume file, or a checkpoint with one beside it).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Steps between training-state saves (0: at epoch ends only).
    #[arg(long, default_value_t = 50)]
    pub save_every: u64,
    /// After training, estimate the test −log p(x) with K importance samples (0: skip; 5000 in the literature).
    #[arg(long, default_value_t = 0)]
    pub iw_samples: usize,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// `--objective` and its flags; a flag of another objective is an error.
fn objective_of(a: &TrainArgs) -> Result<Objective> {
    use latentlab::model::discriminator::DiscriminatorSpec;
    use latentlab::model::objective::{DipVariant, MmdKernel, TcEstimator};
    let family = a.objective.as_str();
    let dip = |variant, factor: f64| {
        let od = a.dip_lambda_od.unwrap_or(5.0);
        Objective::DipVae {
            variant,
            lambda_od: od,
            lambda_d: a.dip_lambda_d.unwrap_or(factor * od),
        }
    };
    // The name first: an unknown one is the error, not the flags it takes.
    let objective = match family {
        "elbo" => Objective::Elbo,
        "annealed-vae" | "annealed_vae" => {
            if a.capacity.is_none() {
                return Err(
                    "--objective annealed-vae is the ELBO with capacity annealing: give --capacity MAX_NATS[:STEPS[:GAMMA]] (disentanglement_lib's middle setting: 25:100000:1000)"
                        .into(),
                );
            }
            Objective::Elbo
        }
        "beta-tcvae" | "beta_tcvae" => Objective::BetaTcvae {
            alpha: a.tc_alpha.unwrap_or(1.0),
            beta: a.tc_beta.unwrap_or(6.0),
            gamma: a.tc_gamma.unwrap_or(1.0),
            estimator: match a.tc_estimator.as_deref().unwrap_or("mss") {
                "mss" => TcEstimator::Mss,
                "mws" => TcEstimator::Mws,
                other => {
                    return Err(CliError::from(format!(
                        "--tc-estimator: unknown estimator `{other}`; expected mss or mws"
                    )));
                }
            },
        },
        "dip-vae-i" | "dip_vae_i" => dip(DipVariant::I, 10.0),
        "dip-vae-ii" | "dip_vae_ii" => dip(DipVariant::Ii, 1.0),
        "mmd" => {
            let scale = a.mmd_scale.unwrap_or(2.0 * a.latent as f64);
            Objective::Mmd {
                kernel: match a.mmd_kernel.as_deref().unwrap_or("imq") {
                    "imq" => MmdKernel::InverseMultiquadratic { scale },
                    "rbf" => MmdKernel::Rbf { scale },
                    other => {
                        return Err(CliError::from(format!(
                            "--mmd-kernel: unknown kernel `{other}`; expected imq or rbf"
                        )));
                    }
                },
                lambda: a.mmd_lambda.unwrap_or(100.0),
            }
        }
        "iwae" => Objective::Iwae {
            samples: a.iwae_k.unwrap_or(5),
        },
        "factor-vae" | "factor_vae" => {
            let d = DiscriminatorSpec::default();
            Objective::FactorVae {
                gamma: a.factor_gamma.unwrap_or(20.0),
                discriminator: DiscriminatorSpec {
                    lr: a.factor_disc_lr.unwrap_or(d.lr),
                    width: a.factor_disc_width.unwrap_or(d.width),
                    depth: a.factor_disc_depth.unwrap_or(d.depth),
                    ..d
                },
            }
        }
        other => {
            return Err(CliError::from(format!(
                "--objective: unknown objective `{other}`; expected elbo, annealed-vae, beta-tcvae, factor-vae, dip-vae-i, dip-vae-ii, mmd or iwae"
            )));
        }
    };
    let flags: [(&str, bool, &[&str]); 5] = [
        (
            "--tc-alpha/--tc-beta/--tc-gamma/--tc-estimator",
            a.tc_alpha.is_some()
                || a.tc_beta.is_some()
                || a.tc_gamma.is_some()
                || a.tc_estimator.is_some(),
            &["beta-tcvae"],
        ),
        (
            "--dip-lambda-od/--dip-lambda-d",
            a.dip_lambda_od.is_some() || a.dip_lambda_d.is_some(),
            &["dip-vae-i", "dip-vae-ii"],
        ),
        (
            "--mmd-lambda/--mmd-kernel/--mmd-scale",
            a.mmd_lambda.is_some() || a.mmd_kernel.is_some() || a.mmd_scale.is_some(),
            &["mmd"],
        ),
        (
            "--factor-gamma/--factor-disc-lr/--factor-disc-width/--factor-disc-depth",
            a.factor_gamma.is_some()
                || a.factor_disc_lr.is_some()
                || a.factor_disc_width.is_some()
                || a.factor_disc_depth.is_some(),
            &["factor-vae"],
        ),
        ("--iwae-k", a.iwae_k.is_some(), &["iwae"]),
    ];
    for (names, given, families) in flags {
        if given && !families.contains(&family) {
            return Err(CliError::from(format!(
                "{names} apply to --objective {}, not {family}",
                families.join(" or ")
            )));
        }
    }
    Ok(objective)
}

/// Reconstruction, KL and −ELBO, in nats per image.
#[derive(Serialize)]
pub struct Figures {
    /// Reconstruction term.
    pub rec: f64,
    /// KL(q(z|x) ‖ p(z)).
    pub kl: f64,
    /// Their sum, the negative ELBO.
    pub neg_elbo: f64,
}

/// What `latentlab train --json` prints: the run's figures and history.
#[derive(Serialize)]
pub struct TrainReport {
    /// Training throughput over the run's epochs.
    pub samples_per_s: f64,
    /// Images in the training split: each epoch's `seconds` in `history`
    /// trains each of them once.
    pub train_images: usize,
    /// Epochs trained.
    pub epochs: usize,
    /// The `--objective`.
    pub objective: &'static str,
    /// The last epoch's training figures.
    pub train: Figures,
    /// The last epoch's test figures.
    pub test: Figures,
    /// Test latent dimensions with a KL above the activity threshold.
    pub active_units: usize,
    /// The backend that trained.
    pub device: String,
    /// The checkpoint written.
    pub checkpoint: String,
    /// The training state written beside it.
    pub resume_state: String,
    /// The last epoch's test KL per dimension.
    pub kl_per_dim: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// `--iw-samples`' importance-weighted test −log p(x).
    pub test_iw_nll: Option<f64>,
    /// Every epoch's report.
    pub history: Vec<latentlab::model::EpochReport>,
}

/// `latentlab train`.
pub fn train(args: TrainArgs) -> Result<()> {
    let report = train_with(&args, &mut |_| Control::Continue)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// `latentlab train`'s flags from its command line (without the command).
pub fn parse_train_args<I, T>(argv: I) -> Result<TrainArgs>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    crate::flags::parse("latentlab train", argv)
}

/// The model and training configurations of a fresh run (no `--resume`),
/// every flag checked; the input size is set from the data by [`on_data`].
pub fn fresh_configs(a: &TrainArgs) -> Result<(ModelConfig, TrainConfig)> {
    let kind = match a.model.as_str() {
        "vae" => ModelKind::Vae,
        "ae" | "autoencoder" => ModelKind::Autoencoder,
        other => {
            return Err(CliError::from(format!(
                "--model: unknown model `{other}`; expected vae or ae"
            )));
        }
    };
    let schedule = KlSchedule::parse(&a.kl_schedule).context("--kl-schedule")?;
    let objective = objective_of(a)?;
    let run = TrainConfig {
        epochs: a.epochs.unwrap_or(20),
        batch_size: a.batch,
        lr: a.lr,
        weight_decay: a.weight_decay,
        seed: a.seed,
        beta: a.beta,
        kl_schedule: schedule,
        free_bits: a.free_bits,
        capacity: a.capacity,
        clip_grad_norm: a.clip_grad,
        objective,
    };
    run.validate().map_err(|e| CliError::prefixed("--", e))?;
    let hidden = match &a.arch {
        Arch::Mlp(Some(w)) => w.clone(),
        Arch::Mlp(None) => a.hidden.0.clone(),
        _ => Vec::new(),
    };
    let model = ModelConfig {
        kind,
        input_dim: 1,
        hidden,
        latent: a.latent,
        activation: a.activation,
        likelihood: a.likelihood,
        image_shape: None,
        channels: 1,
        stacks: None,
    };
    model.validate().map_err(|e| CliError::prefixed("--", e))?;
    Ok((model, run))
}

/// `model` with its input shape from `split`'s images, checked against
/// `--arch`.
pub fn on_data(
    a: &TrainArgs,
    model: ModelConfig,
    split: &latentlab::data::Split,
) -> Result<ModelConfig> {
    let model = ModelConfig {
        input_dim: split.train.dim(),
        image_shape: Some(split.train.image_shape),
        channels: split.train.channels,
        stacks: a.arch.stacks(split.train.channels),
        ..model
    };
    model.validate().map_err(|e| {
        let [c, h, w] = split.train.chw();
        CliError::from(format!(
            "--arch {} on --data {} ({c}×{h}×{w} images): {e}",
            a.arch, a.data
        ))
    })?;
    Ok(model)
}

/// Steps per epoch of a fresh run of `a` on `split` (the trainer's count:
/// the last batch of an epoch may be short), after every check a fresh
/// `latentlab train` makes before it trains.
pub fn steps_per_epoch(a: &TrainArgs, split: &latentlab::data::Split) -> Result<u64> {
    let (model, run) = fresh_configs(a)?;
    on_data(a, model, split)?;
    let n = split.train.len();
    if n == 0 {
        return Err(CliError::from(format!(
            "--data {}: the training split is empty",
            a.data
        )));
    }
    Ok(n.div_ceil(run.batch_size.min(n)) as u64)
}

/// Runs `latentlab train` with `hook` called after the command's own
/// handling of every event (a `Stop` ends the run after its state is
/// saved, resumable); returns what `--json` prints.
pub fn train_with(
    args: &TrainArgs,
    hook: &mut dyn FnMut(&Event<'_>) -> Control,
) -> Result<TrainReport> {
    on_device!(args.device, backend => train_on(backend, args, hook))
}

fn train_on<B: Backend>(
    backend: B,
    a: &TrainArgs,
    hook: &mut dyn FnMut(&Event<'_>) -> Control,
) -> Result<TrainReport> {
    if a.out.is_dir() {
        return Err(CliError::from(format!(
            "--out {}: is a directory; give a file name",
            a.out.display()
        )));
    }
    // Check every flag before loading data; the model's input size then
    // comes from the data.
    let fresh = match &a.resume {
        Some(_) => None,
        None => Some(fresh_configs(a)?),
    };
    let (mut trainer, split) = match (&a.resume, fresh) {
        (Some(path), _) => {
            let t = Trainer::resume(backend.clone(), path, a.epochs).context("--resume")?;
            let split = load_data(&a.data, t.config().seed)?;
            if t.model().config().input_dim != split.train.dim() {
                return Err(CliError::from(format!(
                    "--resume: the checkpoint's model takes {} values per image but --data {} has {}",
                    t.model().config().input_dim,
                    a.data,
                    split.train.dim()
                )));
            }
            (t, split)
        }
        (None, Some((model, run))) => {
            let split = load_data(&a.data, run.seed)?;
            let model = on_data(a, model, &split)?;
            (Trainer::new(backend.clone(), model, run)?, split)
        }
        (None, None) => unreachable!("a fresh run has its configs"),
    };
    let seed = trainer.config().seed;
    let state = state_path(&a.out);
    // LATENTLAB_FAULT (tests only): crash at a chosen point, as kill -9 would.
    let fault = match std::env::var("LATENTLAB_FAULT") {
        Ok(f) => Some(FaultPoint::parse(&f).context("LATENTLAB_FAULT")?),
        Err(_) => None,
    };
    let save = SavePolicy {
        model: Some(a.out.clone()),
        state: Some(state.clone()),
        every_steps: a.save_every,
        fault,
    };
    let n = split.train.len();
    let total_epochs = trainer.config().epochs;
    let interactive = std::io::stderr().is_terminal();
    eprintln!(
        "latentlab: training a {} {} on {} ({} train / {} test) on {}",
        trainer.model().config().describe(),
        match trainer.model().config().kind {
            ModelKind::Vae => "VAE",
            ModelKind::Autoencoder => "autoencoder",
        },
        split.name,
        n,
        split.test.len(),
        backend.name()
    );
    let mut last_draw = Instant::now();
    let mut watch = CollapseWatch::default();
    let reports = trainer
        .fit(&split.train, &split.test, &save, &mut |e| {
            if let Some(w) = watch.observe(&e) {
                if interactive {
                    eprintln!();
                }
                eprintln!("latentlab: warning: {w}");
            }
            match e {
                Event::Step {
                    step,
                    total,
                    epoch,
                    loss,
                    ..
                } => {
                    if interactive && (last_draw.elapsed().as_millis() > 100 || step == total) {
                        last_draw = Instant::now();
                        let width = 30;
                        let filled = (step as usize * width) / total.max(1) as usize;
                        eprint!(
                            "\r  epoch {epoch}/{total_epochs} [{}{}] step {step}/{total} loss {loss:.2}   ",
                            "#".repeat(filled),
                            "-".repeat(width - filled)
                        );
                    }
                }
                Event::Epoch(r) => {
                    if interactive {
                        eprint!("\r{:80}\r", "");
                    }
                    eprintln!(
                        "  epoch {:>3}/{total_epochs}: train −ELBO {:.2}  test rec {:.2} KL {:.2} −ELBO {:.2}  active units {}  ({:.1} s)",
                        r.epoch,
                        r.train_neg_elbo,
                        r.test.rec,
                        r.test.kl,
                        r.test.neg_elbo,
                        r.test.active_units,
                        r.seconds
                    );
                }
            }
            hook(&e)
        })
        ?;
    let last = reports
        .last()
        .ok_or_else(|| "training ran no epoch".to_string())?;
    // Every epoch trains each image once; epoch seconds count training steps
    // only and survive a resume.
    let train_seconds: f64 = reports.iter().map(|r| r.seconds).sum();
    let samples_per_s = if train_seconds > 0.0 {
        (n * reports.len()) as f64 / train_seconds
    } else {
        0.0
    };
    let iw = if a.iw_samples > 0 {
        let est = latentlab::model::importance_weighted_nll(
            trainer.model(),
            split.test.view(),
            a.iw_samples,
            seed,
        )?;
        eprintln!(
            "  test −log p(x) ≈ {:.2} ± {:.2} nats (importance-weighted, k = {})",
            est.nll, est.std_error, est.k
        );
        Some(est.nll)
    } else {
        None
    };
    eprintln!(
        "latentlab: wrote {} (and {} for --resume)",
        a.out.display(),
        state.display()
    );
    Ok(TrainReport {
        samples_per_s,
        train_images: n,
        epochs: last.epoch,
        objective: trainer.config().objective.name(),
        train: Figures {
            rec: last.train_rec,
            kl: last.train_kl,
            neg_elbo: last.train_neg_elbo,
        },
        test: Figures {
            rec: last.test.rec,
            kl: last.test.kl,
            neg_elbo: last.test.neg_elbo,
        },
        active_units: last.test.active_units,
        device: backend.name(),
        checkpoint: a.out.display().to_string(),
        resume_state: state.display().to_string(),
        kl_per_dim: last.test.kl_per_dim.clone(),
        test_iw_nll: iw,
        history: reports.clone(),
    })
}

/// `latentlab encode`.
pub fn encode(
    flags: &ModelFlags,
    data: &str,
    split: &str,
    out: &Path,
    device: DeviceChoice,
    json: bool,
) -> Result<()> {
    on_device!(crate::model::device(flags, device), backend => encode_on(backend, flags, data, split, out, json))
}

fn encode_on<B: Backend>(
    backend: B,
    flags: &ModelFlags,
    data: &str,
    split: &str,
    out: &Path,
    json: bool,
) -> Result<()> {
    let model = open(backend, flags, Need::Encoder)?;
    let s = load_for(data, &model)?;
    let (images, labels) = split_rows(&s, split)?;
    let started = Instant::now();
    let post = model.encode(images.view())?;
    let encode_seconds = started.elapsed().as_secs_f64();
    let (n, d) = post.mu.dim();
    let mu_bytes: Vec<u8> = post.mu.iter().flat_map(|v| v.to_le_bytes()).collect();
    let lv_bytes: Vec<u8> = post.logvar.iter().flat_map(|v| v.to_le_bytes()).collect();
    let label_bytes: Option<Vec<u8>> = labels
        .as_ref()
        .map(|l| l.iter().flat_map(|v| v.to_le_bytes()).collect());
    use safetensors::tensor::{Dtype, TensorView};
    let mut views = vec![
        (
            "mu".to_string(),
            TensorView::new(Dtype::F32, vec![n, d], &mu_bytes)?,
        ),
        (
            "logvar".to_string(),
            TensorView::new(Dtype::F32, vec![n, d], &lv_bytes)?,
        ),
    ];
    if let Some(b) = &label_bytes {
        views.push((
            "labels".to_string(),
            TensorView::new(Dtype::I64, vec![n], b)?,
        ));
    }
    let meta = std::collections::HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (
            "latentlab.source".to_string(),
            format!("{} {split}", s.name),
        ),
    ]);
    let bytes = safetensors::tensor::serialize(views, Some(meta))?;
    data::fs::write_atomic(out, &bytes).context(format!("--out {}", out.display()))?;
    if json {
        println!(
            "{}",
            serde_json::json!({"n": n, "latent": d, "split": split, "data": s.name, "out": out.display().to_string(), "labels": labels.is_some(), "encode_seconds": encode_seconds})
        );
    } else {
        eprintln!(
            "latentlab: wrote mu, logvar{} ({n} × {d}) to {}",
            if labels.is_some() { " and labels" } else { "" },
            out.display()
        );
    }
    Ok(())
}

/// Every flag of `latentlab decode`.
#[derive(clap::Args)]
pub struct DecodeArgs {
    /// The model whose decoder is used.
    #[command(flatten)]
    pub model: ModelFlags,
    /// Latent codes: an N × d .npy file (float32 or float64).
    #[arg(long)]
    pub latents: PathBuf,
    /// Output .npy file (float32, N×C×H×W; N × D for a model without an image shape).
    #[arg(long, default_value = "decoded.npy")]
    pub out: PathBuf,
    /// Write the decoder's raw output (logits for Bernoulli, means for Gaussian) instead of the mean of p(x|z).
    #[arg(long)]
    pub logits: bool,
    /// cpu, gpu or auto.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

/// `latentlab decode`.
pub fn decode(args: &DecodeArgs) -> Result<()> {
    on_device!(crate::model::device(&args.model, args.device), backend => decode_on(backend, args))
}

/// Codes decoded per device call.
const DECODE_CHUNK: usize = 1024;

fn decode_on<B: Backend>(backend: B, a: &DecodeArgs) -> Result<()> {
    let model = open(backend, &a.model, Need::Decoder)?;
    let z = read_matrix(&a.latents, "--latents")?;
    let latent = model.latent_dim();
    if z.ncols() != latent {
        return Err(CliError::from(format!(
            "--latents {}: codes have {} dimensions but the model's latent size is {latent}",
            a.latents.display(),
            z.ncols(),
        )));
    }
    if let Some(i) = z.iter().position(|v| !v.is_finite()) {
        return Err(CliError::from(format!(
            "--latents {}: value {i} is not finite",
            a.latents.display()
        )));
    }
    let n = z.nrows();
    let dim = model.input_dim();
    let mut out = Vec::with_capacity(n * dim);
    for start in (0..n).step_by(DECODE_CHUNK) {
        let rows = DECODE_CHUNK.min(n - start);
        let chunk = z
            .slice(ndarray::s![start..start + rows, ..])
            .mapv(|v| v as f32);
        let x = if a.logits {
            model.decode_raw(chunk.view())?
        } else {
            model.decode(chunk.view())?
        };
        out.extend(x.iter().copied());
    }
    let shape = match model.image_shape() {
        Some((h, w)) => vec![n, model.channels(), h, w],
        None => vec![n, dim],
    };
    data::npy::write_f32(&a.out, &shape, &out).context("--out")?;
    eprintln!(
        "latentlab: decoded {n} codes to {} ({})",
        a.out.display(),
        shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("×")
    );
    Ok(())
}
