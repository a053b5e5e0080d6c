//! `latentlab embed`: 2-D maps of latent means.

use std::path::PathBuf;
use std::time::Instant;

use latentlab::data::npy::{self, NpyData};
use latentlab::embed::{
    Pca, PcaParams, Tsne, TsneMethod, TsneParams, Umap, UmapParams, knn_accuracy, trustworthiness,
};
use ndarray::Array2;
use serde::Serialize;

use latentlab::embed::Neighbours;
use latentlab::tensor::{Backend, Device, DeviceChoice};

use crate::error::{CliError, Context, Result};
use crate::load::{read_latents, read_matrix};

/// Neighbours on the chosen backend; `None` on the CPU (the maps then use
/// their own f64 search).
fn neighbours<B: Backend>(backend: B, x: &Array2<f64>, k: usize) -> Result<Option<Neighbours>> {
    if backend.name().starts_with("cpu") {
        return Ok(None);
    }
    latentlab::embed::knn_on(&backend, x.view(), k)
        .map(Some)
        .context("--device")
}

/// `latentlab embed`.
#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct EmbedArgs {
    /// Latent means: a 2-D .npy file (N × d, f32/f64) or a .safetensors file with `mu` (and `labels`).
    #[arg(long)]
    pub latents: PathBuf,
    /// pca, tsne or umap.
    #[arg(long, default_value = "tsne")]
    pub method: String,
    /// Where to write the map (N × 2, float64 .npy).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// t-SNE perplexity (below N).
    #[arg(long, default_value_t = 30.0)]
    pub perplexity: f64,
    /// t-SNE iterations.
    #[arg(long, default_value_t = 750)]
    pub iterations: usize,
    /// t-SNE's gradient: auto (exact up to 1,000 points, Barnes–Hut above), exact, barnes-hut or fft (the repulsion interpolated on a grid with FFTs, as FIt-SNE and openTSNE do).
    #[arg(long, default_value = "auto")]
    pub tsne_method: String,
    /// UMAP neighbourhood size (the point itself included).
    #[arg(long, default_value_t = 15)]
    pub neighbors: usize,
    /// Where the k nearest neighbours of t-SNE and UMAP are computed: cpu (exact in f64; NN-descent above 20,000 points), gpu (exact Gram blocks on the adapter) or auto.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Report {
    method: String,
    n: usize,
    dim: usize,
    seconds: f64,
    trustworthiness10: Option<f64>,
    knn_accuracy10: Option<f64>,
    explained_variance_ratio: Option<Vec<f64>>,
    out: Option<String>,
}

fn read_labels(path: &std::path::Path, n: usize) -> Result<Vec<i64>> {
    let arr = npy::read(path).context("--labels")?;
    let v: Vec<i64> = match arr.data() {
        NpyData::I64(v) => v.clone(),
        NpyData::U8(v) => v.iter().map(|x| i64::from(*x)).collect(),
        _ => {
            return Err(CliError::from(format!(
                "--labels: {}: labels must be integers, not {}",
                path.display(),
                arr.dtype()
            )));
        }
    };
    if arr.shape().len() != 1 || v.len() != n {
        return Err(CliError::from(format!(
            "--labels: {}: expected {n} labels (1-D), found shape {:?}",
            path.display(),
            arr.shape()
        )));
    }
    Ok(v)
}

/// What to map and how: `latentlab embed`'s flags, which the Python
/// package's `embed` takes as keywords.
#[derive(Clone, Debug)]
pub struct MapSpec {
    /// pca, tsne or umap.
    pub method: String,
    /// t-SNE perplexity.
    pub perplexity: f64,
    /// t-SNE iterations.
    pub iterations: usize,
    /// auto, exact, barnes-hut or fft.
    pub tsne_method: String,
    /// UMAP neighbourhood size.
    pub neighbors: usize,
    /// Where the neighbours are computed.
    pub device: DeviceChoice,
    /// Seed.
    pub seed: u64,
}

/// The 2-D map of `x` (N × 2) and, for PCA, the explained variance ratios;
/// `progress(phase, i, total)` is called as iterations finish. Errors name
/// the flag at fault, as `latentlab embed` prints them.
pub fn map(
    x: &Array2<f64>,
    spec: &MapSpec,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<(Array2<f64>, Option<Vec<f64>>)> {
    let n = x.nrows();
    let out = match spec.method.as_str() {
        "pca" => {
            let pca = Pca::fit(
                x.view(),
                &PcaParams {
                    seed: spec.seed,
                    ..PcaParams::default()
                },
            )?;
            let y = pca.transform(x.view())?;
            (y, Some(pca.explained_variance_ratio().to_vec()))
        }
        "tsne" => {
            let method = match spec.tsne_method.as_str() {
                "auto" => TsneMethod::Auto,
                "exact" => TsneMethod::Exact,
                "barnes-hut" | "bh" => TsneMethod::BarnesHut,
                "fft" => TsneMethod::Fft,
                other => {
                    return Err(CliError::from(format!(
                        "--tsne-method: unknown method `{other}`; expected auto, exact, barnes-hut or fft"
                    )));
                }
            };
            let p = TsneParams {
                method,
                perplexity: spec.perplexity,
                iterations: spec.iterations,
                exaggeration_iters: spec.iterations.min(250),
                seed: spec.seed,
                ..TsneParams::default()
            };
            if !(p.perplexity > 0.0 && p.perplexity < n as f64) {
                return Err(CliError::from(format!(
                    "--perplexity: {} must be positive and below the number of points ({n})",
                    p.perplexity
                )));
            }
            let k = Tsne::neighbours_needed(n, &p);
            let nb = on_device!(spec.device, backend => neighbours(backend, x, k))?;
            let t = Tsne::fit_with_neighbours(x.view(), nb.as_ref(), &p, &mut |i, total| {
                progress("t-SNE iteration", i, total)
            })
            .map_err(|e| match e {
                latentlab::embed::EmbedError::Param { name, detail } => {
                    CliError::from(format!("--{name}: {detail}"))
                }
                other => CliError::Layer {
                    prefix: String::new(),
                    source: Box::new(other),
                },
            })?;
            (t.embedding, None)
        }
        "umap" => {
            let p = UmapParams {
                n_neighbors: spec.neighbors,
                seed: spec.seed,
                ..UmapParams::default()
            };
            if p.n_neighbors < 2 || p.n_neighbors > n {
                return Err(CliError::from(format!(
                    "--neighbors: {} is not in 2..={n} (the number of points)",
                    p.n_neighbors
                )));
            }
            let nb = on_device!(spec.device, backend => neighbours(backend, x, p.n_neighbors - 1))?;
            let u = Umap::fit_with_neighbours(x.view(), nb.as_ref(), &p, &mut |i, total| {
                progress("UMAP epoch", i, total)
            })
            .map_err(|e| match e {
                latentlab::embed::EmbedError::Param { name, detail } => CliError::from(format!(
                    "--{}: {detail}",
                    name.replace('_', "-").replace("n-neighbors", "neighbors")
                )),
                other => CliError::Layer {
                    prefix: String::new(),
                    source: Box::new(other),
                },
            })?;
            (u.embedding, None)
        }
        other => {
            return Err(CliError::from(format!(
                "--method: unknown method `{other}`; expected pca, tsne or umap"
            )));
        }
    };
    Ok(out)
}

/// Runs `latentlab embed`.
pub fn run(a: &EmbedArgs) -> Result<()> {
    let is_st = a
        .latents
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    let (x, file_labels): (Array2<f64>, Option<Vec<i64>>) = if is_st {
        let f = read_latents(&a.latents)?;
        (f.mu, f.labels)
    } else {
        (read_matrix(&a.latents, "--latents")?, None)
    };
    let n = x.nrows();
    // The global --labels: for the k-NN accuracy of the map, N integers.
    let labels = match &crate::load::data_options().labels {
        Some(p) => Some(read_labels(p, n)?),
        None => file_labels,
    };
    let started = Instant::now();
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let spec = MapSpec {
        method: a.method.clone(),
        perplexity: a.perplexity,
        iterations: a.iterations,
        tsne_method: a.tsne_method.clone(),
        neighbors: a.neighbors,
        device: a.device,
        seed: a.seed,
    };
    let (y, ratio) = map(&x, &spec, &mut |phase, i, total| {
        if interactive {
            eprint!("\r  {phase} {i}/{total}   ");
            if i == total {
                eprintln!();
            }
        }
    })
    .map_err(|e| match e {
        CliError::Layer { prefix, source } if prefix.is_empty() => CliError::Layer {
            prefix: format!("--latents {}: ", a.latents.display()),
            source,
        },
        other => other,
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let tw = if n > 20 {
        Some(trustworthiness(x.view(), y.view(), 10)?)
    } else {
        None
    };
    let acc = match &labels {
        Some(l) if n > 10 => Some(knn_accuracy(y.view(), l, 10)?),
        _ => None,
    };
    if let Some(out) = &a.out {
        let flat: Vec<f64> = y.iter().copied().collect();
        npy::write_f64(out, &[y.nrows(), y.ncols()], &flat).context("--out")?;
    }
    let r = Report {
        method: a.method.clone(),
        n,
        dim: x.ncols(),
        seconds,
        trustworthiness10: tw,
        knn_accuracy10: acc,
        explained_variance_ratio: ratio,
        out: a.out.as_ref().map(|p| p.display().to_string()),
    };
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{} map of {n} points ({}-d) in {seconds:.2} s",
            r.method, r.dim
        );
        if let Some(t) = tw {
            println!("  trustworthiness@10   {t:.4}");
        }
        if let Some(a) = acc {
            println!("  10-NN label accuracy {a:.4}");
        }
        if let Some(v) = &r.explained_variance_ratio {
            println!("  explained variance   {v:.4?}");
        }
        if let Some(o) = &r.out {
            println!("  wrote {o}");
        }
    }
    Ok(())
}
