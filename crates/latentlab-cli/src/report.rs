//! `latentlab report` and `latentlab demo`: one self-contained HTML page
//! that shows a latent space.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use latentlab::data::Dataset;
use latentlab::model::{Checkpoint, LatentModel, Progress, state_path};
use latentlab::report::{About, Settings};
use latentlab::tensor::{Backend, Device, DeviceChoice};
use serde_json::json;

use crate::error::{CliError, Context, Result};
use crate::model::{Model, ModelFlags, Need, load_for, open};

/// `latentlab report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The model to show.
    #[command(flatten)]
    pub model: ModelFlags,
    /// mnist-10k, `[color-]dsprites[:N]`, `FILE.npz[:N]`, a .npy file of images, a folder of PNG/JPEG images or a folder of IDX files; the test split is shown.
    #[arg(long, default_value = "mnist-10k")]
    pub data: String,
    /// The folder to write index.html (and report.json) into.
    #[arg(long)]
    pub out: PathBuf,
    /// Test points in the latent maps: the first this many (all of the
    /// embedded data sets' test splits). 10,000 costs about 10 s of maps
    /// on 2 cores.
    #[arg(long, default_value_t = 10_000)]
    pub map_points: usize,
    /// cpu, gpu or auto.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Seed of every draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `latentlab demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// The folder for the checkpoint and the report.
    #[arg(long, default_value = "latentlab-demo")]
    pub out: PathBuf,
    /// Training epochs.
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// cpu, gpu or auto.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

/// Checks `--out` (a folder, made when missing) and `--map-points`.
fn check_out(out: &Path, map_points: usize) -> Result<()> {
    if out.is_file() {
        return Err(CliError::from(format!(
            "--out {}: is a file; give a folder",
            out.display()
        )));
    }
    if map_points < 50 {
        return Err(CliError::from(format!(
            "--map-points: {map_points} is below 50"
        )));
    }
    std::fs::create_dir_all(out).context(format!("--out {}", out.display()))?;
    Ok(())
}

/// Writes the report of `model` on `test` into the folder `out`:
/// `index.html` and `report.json`, each atomically. Returns the page's path.
/// `latentlab report` and the Python package's `report` both run this.
pub fn write_report<M: LatentModel + Sync + ?Sized>(
    model: &M,
    test: &Dataset,
    out: &Path,
    settings: &Settings,
    about: &About,
) -> Result<PathBuf> {
    check_out(out, settings.map_points)?;
    let r = latentlab::report::build(model, test, settings, about)?;
    let index = out.join("index.html");
    latentlab::data::fs::write_atomic(&index, r.html.as_bytes())
        .context(format!("{}", index.display()))?;
    let mut summary = r.summary;
    summary["index"] = json!(index.display().to_string());
    let sj = out.join("report.json");
    latentlab::data::fs::write_atomic(&sj, summary.to_string().as_bytes())
        .context(format!("{}", sj.display()))?;
    Ok(index)
}

fn report_on<B: Backend>(backend: B, a: &ReportArgs) -> Result<()>
where
    Model<B>: Sync,
{
    let started = Instant::now();
    check_out(&a.out, a.map_points)?;
    let model = open(backend, &a.model, Need::Both)?;
    let split = load_for(&a.data, &model)?;
    // The run's history, when its .resume file lies beside the checkpoint.
    let history = a
        .model
        .checkpoint
        .as_ref()
        .and_then(|c| Checkpoint::read(state_path(c), &crate::load::load_options()).ok())
        .and_then(|ck| ck.progress)
        .and_then(|p| serde_json::from_str::<Progress>(&p).ok())
        .map(|p| p.history)
        .unwrap_or_default();
    let about = About {
        title: format!("latentlab report: {}", a.model.name()),
        description: format!(
            "{} on {} ({} test images), seed {}. Written by latentlab {}.",
            model.describe(),
            split.name,
            split.test.len(),
            a.seed,
            latentlab::VERSION
        ),
        history,
    };
    let settings = Settings {
        map_points: a.map_points,
        seed: a.seed,
    };
    let index = write_report(&model, &split.test, &a.out, &settings, &about)?;
    eprintln!(
        "latentlab: wrote {} ({:.1} s)",
        index.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs `latentlab report`.
pub fn report(a: &ReportArgs) -> Result<()> {
    on_device!(crate::model::device(&a.model, a.device), backend => report_on(backend, a))
}

#[derive(Parser)]
#[command(name = "latentlab")]
struct TrainOnly {
    #[command(flatten)]
    train: crate::train::TrainArgs,
}

/// Runs `latentlab demo`: trains on the embedded MNIST-10k, then reports.
pub fn demo(a: &DemoArgs) -> Result<()> {
    if a.out.is_file() {
        return Err(CliError::from(format!(
            "--out {}: is a file; give a folder",
            a.out.display()
        )));
    }
    if a.epochs == 0 {
        return Err("--epochs: must be at least 1".into());
    }
    std::fs::create_dir_all(&a.out).context(format!("--out {}", a.out.display()))?;
    let ck = a.out.join("vae.safetensors");
    let ck_s = ck.to_string_lossy().to_string();
    let device = a.device.to_string();
    let epochs = a.epochs.to_string();
    let t = TrainOnly::try_parse_from([
        "latentlab",
        "--data",
        "mnist-10k",
        "--epochs",
        &epochs,
        "--out",
        &ck_s,
        "--device",
        &device,
    ])
    .context("demo")?;
    crate::train::train(t.train)?;
    report(&ReportArgs {
        model: ModelFlags::checkpoint(ck),
        data: "mnist-10k".into(),
        out: a.out.clone(),
        map_points: 10_000,
        device: a.device,
        seed: 0,
    })
}
