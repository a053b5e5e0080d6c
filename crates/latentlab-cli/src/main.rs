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
