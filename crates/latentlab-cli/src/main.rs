//! `latentlab`: the command line.
//!
//! Every command that reports numbers takes `--json` and then prints one JSON
//! document on stdout; logs go to stderr. Errors end with a one-line message
//! and a non-zero exit.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use latentlab::tensor::DeviceChoice;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info { device, json } => info::run(device, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latentlab: error: {e}");
            ExitCode::FAILURE
        }
    }
}
