//! `latentlab geometry …` and `latentlab interpolate`: the geometry layer on
//! `.npy` files.

use std::path::{Path, PathBuf};

use crate::error::{CliError, Context, Result};
use latentlab::data::npy::{self, NpyData};
use latentlab::geometry::interpolate::{Method, interpolate, log_prior, norm_profile};
use latentlab::geometry::sample;
use latentlab::geometry::shell::{self, percent_text};
use ndarray::Array1;
use serde::Serialize;

/// Largest dimension the shell table accepts (the formulas hold far beyond;
/// this only keeps a typo from running for minutes).
const MAX_DIM: usize = 100_000_000;

/// Parses one dimension of `--dims 2,10,64` (each at least 1).
pub fn parse_dim(text: &str) -> Result<usize, String> {
    let t = text.trim();
    match t.parse::<usize>() {
        Ok(d) if (1..=MAX_DIM).contains(&d) => Ok(d),
        _ => Err(format!(
            "`{t}` is not a dimension (a whole number from 1 to {MAX_DIM})"
        )),
    }
}

/// One row of `latentlab geometry shell --json`: the norm of a standard
/// normal code of dimension `dim`.
#[derive(Serialize)]
pub struct ShellRow {
    dim: usize,
    mean_norm: f64,
    std_norm: f64,
    norm_q05: f64,
    norm_q95: f64,
    log10_mass_within_radius_1: f64,
}

/// The rows `latentlab geometry shell --json` prints for `dims`, each
/// checked as `--dims` is.
pub fn shell_rows(dims: &[usize]) -> Result<Vec<ShellRow>> {
    for d in dims {
        parse_dim(&d.to_string()).map_err(|e| format!("--dims: {e}"))?;
    }
    Ok(shell::table(dims)?
        .iter()
        .map(|s| ShellRow {
            dim: s.dim,
            mean_norm: s.mean_norm,
            std_norm: s.std_norm,
            norm_q05: s.norm_q05,
            norm_q95: s.norm_q95,
            log10_mass_within_radius_1: s.log10_mass_within_radius_1,
        })
        .collect())
}

/// `latentlab geometry shell`.
pub fn shell(dims: &[usize], json: bool) -> Result<()> {
    let stats = shell::table(dims)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&shell_rows(dims)?)?);
        return Ok(());
    }
    println!(
        "{:>8}  {:>10}  {:>10}  {:>9}  {:>10}  {:>10}  {:>22}",
        "dim", "√d", "E‖z‖", "sd ‖z‖", "5 % ‖z‖", "95 % ‖z‖", "P(‖z‖ < 1)"
    );
    for s in &stats {
        println!(
            "{:>8}  {:>10.4}  {:>10.4}  {:>9.4}  {:>10.4}  {:>10.4}  {:>22}",
            s.dim,
            s.sqrt_d,
            s.mean_norm,
            s.std_norm,
            s.norm_q05,
            s.norm_q95,
            percent_text(s.log10_mass_within_radius_1)
        );
    }
    Ok(())
}

/// A 1-D code read from a `.npy` file, and whether it was f32.
fn read_code(path: &Path, flag: &str) -> Result<(Array1<f64>, bool)> {
    let arr = npy::read(path).context(flag)?;
    let is_f32 = match arr.data() {
        NpyData::F32(_) => true,
        NpyData::F64(_) => false,
        _ => {
            return Err(CliError::from(format!(
                "{flag}: {}: a latent code must be float32 or float64, not {}",
                path.display(),
                arr.dtype()
            )));
        }
    };
    let len = match arr.shape() {
        [n] => *n,
        [1, n] => *n,
        shape => {
            return Err(CliError::from(format!(
                "{flag}: {}: a latent code must be 1-D (d,), but the array has shape {shape:?}",
                path.display()
            )));
        }
    };
    if len == 0 {
        return Err(CliError::from(format!(
            "{flag}: {}: the code is empty",
            path.display()
        )));
    }
    let values = arr.to_f64();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(CliError::from(format!(
            "{flag}: {}: element {i} is {} (codes must be finite)",
            path.display(),
            values[i]
        )));
    }
    Ok((Array1::from(values), is_f32))
}

#[derive(Serialize)]
struct PathReport {
    method: String,
    steps: usize,
    dim: usize,
    points: Vec<Vec<f64>>,
    norms: Vec<f64>,
    log_prior: Vec<f64>,
    shell_radius: f64,
}

/// The arguments of `latentlab interpolate` on `.npy` codes.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct InterpolateArgs {
    /// The first code (a 1-D .npy array).
    #[arg(
        long,
        required_unless_present_any = ["checkpoint", "encoder"],
        conflicts_with_all = ["checkpoint", "encoder"]
    )]
    pub z1: Option<PathBuf>,
    /// The second code (a 1-D .npy array of the same length).
    #[arg(
        long,
        required_unless_present_any = ["checkpoint", "encoder"],
        conflicts_with_all = ["checkpoint", "encoder"]
    )]
    pub z2: Option<PathBuf>,
    /// Interpolate between the codes of two test images of a model instead
    /// (--checkpoint, or --encoder and --decoder), writing decoded strips
    /// to --image.
    #[command(flatten)]
    pub model: crate::model::ModelFlags,
    /// With a model: the data whose test images are used.
    #[arg(long, default_value = "mnist-10k")]
    pub data: String,
    /// With a model: the first test image.
    #[arg(long, default_value_t = 0)]
    pub from: usize,
    /// With a model: the second test image.
    #[arg(long, default_value_t = 1)]
    pub to: usize,
    /// With a model: the PNG strip to write (the method's path, then the decoder geodesic).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// With a model: cpu, gpu or auto.
    #[arg(long, default_value = "auto")]
    pub device: latentlab::tensor::DeviceChoice,
    /// Number of points on the path, endpoints included.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// linear, slerp, seed-slerp or constant-norm.
    #[arg(long, default_value = "slerp")]
    pub method: Method,
    /// Write the path (steps × d) to this .npy file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print one JSON document: points, norms and log-prior of each point.
    #[arg(long)]
    pub json: bool,
}

/// The `steps` codes from `z1` to `z2` by `method` that `latentlab
/// interpolate --z1 --z2` writes, with its checks of the codes and steps.
pub fn path_between(
    z1: ndarray::ArrayView1<'_, f64>,
    z2: ndarray::ArrayView1<'_, f64>,
    steps: usize,
    method: Method,
) -> Result<ndarray::Array2<f64>> {
    if steps == 0 {
        return Err("--steps: must be at least 1".into());
    }
    for (flag, z) in [("--z1", &z1), ("--z2", &z2)] {
        if z.is_empty() {
            return Err(CliError::from(format!("{flag}: the code is empty")));
        }
        if let Some(i) = z.iter().position(|v| !v.is_finite()) {
            return Err(CliError::from(format!(
                "{flag}: element {i} is {} (codes must be finite)",
                z[i]
            )));
        }
    }
    if z1.len() != z2.len() {
        return Err(CliError::from(format!(
            "--z1 and --z2 differ in length: {} and {} dimensions",
            z1.len(),
            z2.len()
        )));
    }
    Ok(interpolate(z1, z2, steps, method)?)
}

/// `latentlab interpolate --z1 --z2`.
pub fn interpolate_codes(args: &InterpolateArgs) -> Result<()> {
    if args.steps == 0 {
        return Err("--steps: must be at least 1".into());
    }
    if args.model.given() {
        let image = args.image.as_ref().ok_or(
            "--image: interpolating between the codes of a model's test images writes a PNG strip; give --image FILE.png",
        )?;
        let r = crate::manip::interpolate_images(&crate::manip::ImageStrip {
            model: &args.model,
            image,
            data: &args.data,
            from: args.from,
            to: args.to,
            steps: args.steps,
            method: args.method,
            device: args.device,
        })?;
        if args.json {
            println!("{r}");
        } else {
            eprintln!("latentlab: wrote {}", image.display());
        }
        return Ok(());
    }
    let (Some(p1), Some(p2)) = (&args.z1, &args.z2) else {
        return Err(
            "give --z1 and --z2, or a model (--checkpoint, or --encoder and --decoder) and --image"
                .into(),
        );
    };
    let (z1, f1) = read_code(p1, "--z1")?;
    let (z2, f2) = read_code(p2, "--z2")?;
    if z1.len() != z2.len() {
        return Err(CliError::from(format!(
            "--z1 and --z2 differ in length: {} has {} dimensions, {} has {}",
            p1.display(),
            z1.len(),
            p2.display(),
            z2.len()
        )));
    }
    let path = path_between(z1.view(), z2.view(), args.steps, args.method)?;
    let norms = norm_profile(path.view());
    let lp = log_prior(path.view());
    if let Some(out) = &args.out {
        let shape = [path.nrows(), path.ncols()];
        let flat: Vec<f64> = path.iter().copied().collect();
        let written = if f1 && f2 {
            let flat32: Vec<f32> = flat.iter().map(|&v| v as f32).collect();
            npy::write_f32(out, &shape, &flat32)
        } else {
            npy::write_f64(out, &shape, &flat)
        };
        written.context("--out")?;
    }
    let dim = path.ncols();
    if args.json {
        let report = PathReport {
            method: args.method.to_string(),
            steps: args.steps,
            dim,
            points: path.rows().into_iter().map(|r| r.to_vec()).collect(),
            norms: norms.to_vec(),
            log_prior: lp.to_vec(),
            shell_radius: (dim as f64).sqrt(),
        };
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} interpolation, {} steps, d = {dim} (typical norm √d = {:.4})",
            args.method,
            args.steps,
            (dim as f64).sqrt()
        );
        println!(
            "{:>5}  {:>8}  {:>12}  {:>14}",
            "step", "t", "‖z‖", "log N(z;0,I)"
        );
        for (i, (n, l)) in norms.iter().zip(&lp).enumerate() {
            let t = if args.steps > 1 {
                i as f64 / (args.steps - 1) as f64
            } else {
                0.0
            };
            println!("{i:>5}  {t:>8.4}  {n:>12.6}  {l:>14.6}");
        }
        if let Some(out) = &args.out {
            println!("path written to {}", out.display());
        }
    }
    Ok(())
}

/// `latentlab geometry sample`.
pub fn sample_codes(
    n: usize,
    dim: usize,
    seed: u64,
    shell: bool,
    out: &Path,
    json: bool,
) -> Result<()> {
    let z = if shell {
        sample::on_shell(n, dim, seed, None)
    } else {
        sample::prior(n, dim, seed)
    }?;
    let flat: Vec<f32> = z.iter().map(|&v| v as f32).collect();
    npy::write_f32(out, &[n, dim], &flat).context("--out")?;
    let norms = norm_profile(z.view());
    let mean_norm = norms.mean().unwrap_or(0.0);
    if json {
        let v = serde_json::json!({
            "n": n, "dim": dim, "seed": seed,
            "distribution": if shell { "shell" } else { "prior" },
            "mean_norm": mean_norm, "out": out.display().to_string(),
        });
        println!("{v}");
    } else {
        println!(
            "{n} codes of dimension {dim} ({}), mean norm {mean_norm:.4}, written to {}",
            if shell {
                "uniform on the √d shell"
            } else {
                "N(0, I)"
            },
            out.display()
        );
    }
    Ok(())
}
