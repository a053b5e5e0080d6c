//! `latentlab`: the command line.
//!
//! Every command that reports numbers takes `--json` and then prints one JSON
//! document on stdout; logs go to stderr. Errors end with a one-line message
//! and a non-zero exit.

use std::process::ExitCode;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use latentlab::geometry::interpolate::Method;
use latentlab::tensor::DeviceChoice;

mod geometry;
mod info;
mod train;

#[derive(Parser)]
#[command(
    name = "latentlab",
    version,
    about = "Train VAEs and make their latent spaces visible, measurable and editable."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Version, available backends, and the GPU adapter with its limits (or why none was found).
    Info {
        /// Which device to select: cpu, gpu (an error without an adapter) or auto.
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Geometry of the prior N(0, I): the shell table and seeded samples.
    Geometry {
        #[command(subcommand)]
        command: GeometryCommand,
    },
    /// Trains a VAE (or autoencoder) and writes a checkpoint.
    Train(TrainFlags),
    /// Encodes a dataset with a checkpoint: mu, logvar and labels to a .safetensors file.
    #[command(allow_negative_numbers = true)]
    Encode {
        /// The checkpoint (latentlab's or a PyTorch state_dict in safetensors).
        #[arg(long)]
        checkpoint: PathBuf,
        /// mnist-10k, dsprites, dsprites:N or a folder of IDX files.
        #[arg(long, default_value = "mnist-10k")]
        data: String,
        /// test, train or all.
        #[arg(long, default_value = "test")]
        split: String,
        /// Output .safetensors file.
        #[arg(long, default_value = "latents.safetensors")]
        out: PathBuf,
        /// cpu, gpu or auto.
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Interpolates between two latent codes (1-D .npy files, f32 or f64).
    #[command(allow_negative_numbers = true)]
    Interpolate {
        /// The first code (a 1-D .npy array).
        #[arg(long)]
        z1: PathBuf,
        /// The second code (a 1-D .npy array of the same length).
        #[arg(long)]
        z2: PathBuf,
        /// Number of points on the path, endpoints included.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// linear, slerp, seed-slerp or constant-norm.
        #[arg(long, default_value = "slerp")]
        method: Method,
        /// Write the path (steps × d) to this .npy file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print one JSON document: points, norms and log-prior of each point.
        #[arg(long)]
        json: bool,
    },
}

/// The flags of `latentlab train`.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
struct TrainFlags {
    /// mnist-10k (embedded), dsprites or dsprites:N (procedural, N images) or a folder of IDX files.
    #[arg(long, default_value = "mnist-10k")]
    data: String,
    /// Passes over the training data (default 20; with --resume, the saved run's).
    #[arg(long)]
    epochs: Option<usize>,
    /// Latent size.
    #[arg(long, default_value_t = 20)]
    latent: usize,
    /// Hidden widths of the encoder (the decoder mirrors them).
    #[arg(long, default_value = "512,256", value_parser = train::parse_hidden)]
    hidden: std::vec::Vec<usize>,
    /// vae, or ae for a deterministic autoencoder of the same shape.
    #[arg(long, default_value = "vae")]
    model: String,
    /// relu, leaky-relu, elu, tanh, sigmoid or softplus.
    #[arg(long, default_value = "relu", value_parser = train::parse_activation)]
    activation: latentlab::tensor::Activation,
    /// bernoulli, gaussian or gaussian:LOGVAR (fixed variance), gaussian-learned or gaussian-learned:LOGVAR.
    #[arg(long, default_value = "bernoulli", value_parser = train::parse_likelihood)]
    likelihood: latentlab::model::Likelihood,
    /// The KL weight β (1 is the ELBO; > 1 a β-VAE).
    #[arg(long, default_value_t = 1.0)]
    beta: f32,
    /// constant, linear:STEPS (warm-up), cyclical:CYCLES or cyclical:CYCLES:RATIO (Fu et al. 2019).
    #[arg(long, default_value = "constant")]
    kl_schedule: String,
    /// Free bits: a floor in nats on each latent dimension's KL.
    #[arg(long)]
    free_bits: Option<f32>,
    /// Capacity annealing γ·|KL − C|: MAX_NATS, MAX_NATS:STEPS or MAX_NATS:STEPS:GAMMA (defaults 10000 steps, γ = 1000).
    #[arg(long, value_parser = train::parse_capacity)]
    capacity: Option<latentlab::model::Capacity>,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Decoupled weight decay (AdamW).
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    /// Clip the global gradient norm to this value.
    #[arg(long)]
    clip_grad: Option<f32>,
    /// Seed of the weights, shuffles and noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, gpu or auto.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// The checkpoint to write (PyTorch-layout safetensors); FILE.resume holds the training state.
    #[arg(long, default_value = "vae.safetensors")]
    out: PathBuf,
    /// Continue the run saved in FILE (a .resume file, or a checkpoint with one beside it).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Steps between training-state saves (0: at epoch ends only).
    #[arg(long, default_value_t = 50)]
    save_every: u64,
    /// After training, estimate the test −log p(x) with K importance samples (0: skip; 5000 in the literature).
    #[arg(long, default_value_t = 0)]
    iw_samples: usize,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum GeometryCommand {
    /// Exact statistics of ‖z‖ for z ~ N(0, I_d): the "thin shell".
    #[command(allow_negative_numbers = true)]
    Shell {
        /// Comma-separated dimensions.
        #[arg(long, default_value = "1,2,5,10,20,50,100,512", value_delimiter = ',', value_parser = geometry::parse_dim)]
        dims: Vec<usize>,
        /// Print one JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Seeded codes from the prior, or uniform on the shell of radius √d.
    #[command(allow_negative_numbers = true)]
    Sample {
        /// Number of codes.
        #[arg(long)]
        n: usize,
        /// Latent dimension.
        #[arg(long)]
        dim: usize,
        /// Random seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Sample uniformly on the sphere of radius √d instead of N(0, I).
        #[arg(long)]
        shell: bool,
        /// Output .npy file (n × dim, float32).
        #[arg(long)]
        out: PathBuf,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info { device, json } => info::run(device, json),
        Command::Geometry { command } => match command {
            GeometryCommand::Shell { dims, json } => geometry::shell(&dims, json),
            GeometryCommand::Sample {
                n,
                dim,
                seed,
                shell,
                out,
                json,
            } => geometry::sample_codes(n, dim, seed, shell, &out, json),
        },
        Command::Train(f) => train::train(train::TrainArgs {
            data: f.data,
            epochs: f.epochs,
            latent: f.latent,
            hidden: f.hidden,
            model: f.model,
            activation: f.activation,
            likelihood: f.likelihood,
            beta: f.beta,
            kl_schedule: f.kl_schedule,
            free_bits: f.free_bits,
            capacity: f.capacity,
            batch: f.batch,
            lr: f.lr,
            weight_decay: f.weight_decay,
            clip_grad: f.clip_grad,
            seed: f.seed,
            device: f.device,
            out: f.out,
            resume: f.resume,
            save_every: f.save_every,
            iw_samples: f.iw_samples,
            json: f.json,
        }),
        Command::Encode {
            checkpoint,
            data,
            split,
            out,
            device,
            json,
        } => train::encode(&checkpoint, &data, &split, &out, device, json),
        Command::Interpolate {
            z1,
            z2,
            steps,
            method,
            out,
            json,
        } => geometry::interpolate_codes(&geometry::InterpolateArgs {
            z1,
            z2,
            steps,
            method,
            out,
            json,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latentlab: error: {e}");
            ExitCode::FAILURE
        }
    }
}
