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

/// How a map's neighbours were found.
struct Found {
    neighbours: Neighbours,
    /// exact, exact-gpu or approximate.
    how: &'static str,
}

/// The k nearest neighbours on the chosen backend: on the CPU exact in f64
/// up to [`latentlab::embed::EXACT_LIMIT`] points and approximate beyond,
/// on a GPU exact Gram blocks.
fn neighbours<B: Backend>(backend: B, x: &Array2<f64>, k: usize, seed: u64) -> Result<Found> {
    if backend.name().starts_with("cpu") {
        let exact = x.nrows() <= latentlab::embed::EXACT_LIMIT;
        let neighbours = latentlab::embed::knn_auto(x.view(), k, seed)?;
        return Ok(Found {
            neighbours,
            how: if exact { "exact" } else { "approximate" },
        });
    }
    let neighbours = latentlab::embed::knn_on(&backend, x.view(), k).context("--device")?;
    Ok(Found {
        neighbours,
        how: "exact-gpu",
    })
}

/// Points on which an approximate neighbour graph's recall is estimated.
pub const RECALL_SAMPLES: usize = 1000;

/// A map and what was measured on the way.
#[derive(Clone, Debug)]
pub struct MapOut {
    /// N × 2 coordinates.
    pub embedding: Array2<f64>,
    /// PCA's explained variance ratios.
    pub explained_variance_ratio: Option<Vec<f64>>,
    /// How t-SNE's or UMAP's neighbours were found: exact, exact-gpu or
    /// approximate.
    pub neighbours: Option<String>,
    /// Their recall against exact k-NN: 1 when exact, else estimated on
    /// [`RECALL_SAMPLES`] points (not counted in the phases' seconds).
    pub neighbour_recall: Option<f64>,
    /// Seconds per phase (neighbours, affinities, initialisation,
    /// optimisation), in order.
    pub phase_seconds: Vec<(String, f64)>,
}

/// Times phases from the (phase, done, total) progress calls: a phase
/// starts at its first call and ends at the call with done = total.
struct PhaseClock {
    current: Option<(String, Instant)>,
    done: Vec<(String, f64)>,
}

impl PhaseClock {
    fn tick(&mut self, phase: &str, i: usize, total: usize) {
        if self.current.as_ref().is_none_or(|c| c.0 != phase) {
            self.current = Some((phase.to_string(), Instant::now()));
        }
        if i >= total
            && let Some((name, t0)) = self.current.take()
        {
            self.done.push((name, t0.elapsed().as_secs_f64()));
        }
    }
}

fn embed_error(e: latentlab::embed::EmbedError) -> CliError {
    match e {
        latentlab::embed::EmbedError::Param { name, detail } => CliError::from(format!(
            "--{}: {detail}",
            name.replace('_', "-").replace("n-neighbors", "neighbors")
        )),
        other => CliError::Layer {
            prefix: String::new(),
            source: Box::new(other),
        },
    }
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
    /// t-SNE's gradient: auto (exact up to 1,000 points, Barnes–Hut up to 3,299, fft from 3,300), exact, barnes-hut or fft (the repulsion interpolated on a grid with FFTs, as FIt-SNE and openTSNE do).
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
    /// Seconds per phase, by name.
    phase_seconds: serde_json::Map<String, serde_json::Value>,
    /// exact, exact-gpu or approximate (t-SNE and UMAP).
    neighbours: Option<String>,
    /// Recall of the neighbour graph against exact k-NN.
    neighbour_recall: Option<f64>,
    trustworthiness10: Option<f64>,
    /// The points trustworthiness and k-NN accuracy were measured on: all
    /// of them up to [`QUALITY_SUBSET`], a fixed seeded subset beyond.
    quality_points: Option<usize>,
    knn_accuracy10: Option<f64>,
    explained_variance_ratio: Option<Vec<f64>>,
    out: Option<String>,
    /// The process's peak resident memory so far in MiB (Linux's VmHWM;
    /// absent elsewhere).
    peak_rss_mib: Option<f64>,
}

/// This process's peak resident set in MiB, from /proc/self/status (the
/// high-water mark of its own memory since exec; a parent's memory, which
/// a spawning parent's `ru_maxrss` may carry into its child, is not in it).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Above this many points, the map's trustworthiness and k-NN accuracy are
/// measured on this many, drawn without replacement with the seed (the
/// measures are O(N²)).
pub const QUALITY_SUBSET: usize = 10_000;

/// The rows of a fixed seeded subset of `n` of size [`QUALITY_SUBSET`],
/// ascending; all rows when `n` is no larger.
fn quality_rows(n: usize, seed: u64) -> Vec<usize> {
    latentlab::embed::sample_rows(n, QUALITY_SUBSET, seed)
}

/// A one-line progress bar on standard error, redrawn in place: the phase,
/// a bar for phases with steps, and the seconds since the phase began.
struct Bar {
    phase: String,
    started: Instant,
}

impl Bar {
    fn draw(&mut self, phase: &str, i: usize, total: usize) {
        if phase != self.phase {
            self.phase = phase.to_string();
            self.started = Instant::now();
        }
        let secs = self.started.elapsed().as_secs_f64();
        let bar = if total > 1 {
            let filled = (30 * i / total.max(1)).min(30);
            format!(
                "[{}{}] {i}/{total}",
                "#".repeat(filled),
                "-".repeat(30 - filled)
            )
        } else if i >= total {
            "done".to_string()
        } else {
            "…".to_string()
        };
        eprint!("\r\x1b[2K  {phase:<15} {bar}  {secs:.1} s");
        if i >= total {
            eprintln!();
        }
    }
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

/// The 2-D map of `x` (N × 2) with what was measured on the way;
/// `progress(phase, i, total)` is called as each phase starts, advances and
/// ends. Errors name the flag at fault, as `latentlab embed` prints them.
pub fn map(
    x: &Array2<f64>,
    spec: &MapSpec,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<MapOut> {
    let n = x.nrows();
    let mut clock = PhaseClock {
        current: None,
        done: Vec::new(),
    };
    let mut tick = |phase: &str, i: usize, total: usize| {
        clock.tick(phase, i, total);
        progress(phase, i, total);
    };
    let mut out = MapOut {
        embedding: Array2::zeros((0, 2)),
        explained_variance_ratio: None,
        neighbours: None,
        neighbour_recall: None,
        phase_seconds: Vec::new(),
    };
    let mut found = None;
    match spec.method.as_str() {
        "pca" => {
            tick("pca", 0, 1);
            let pca = Pca::fit(
                x.view(),
                &PcaParams {
                    seed: spec.seed,
                    ..PcaParams::default()
                },
            )?;
            out.embedding = pca.transform(x.view())?;
            out.explained_variance_ratio = Some(pca.explained_variance_ratio().to_vec());
            tick("pca", 1, 1);
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
            // Each point needs 3·perplexity neighbours that are not itself.
            if !(p.perplexity > 0.0 && 3.0 * p.perplexity < n as f64) {
                return Err(CliError::from(format!(
                    "--perplexity: {} must be positive and below a third of the number of points ({n})",
                    p.perplexity
                )));
            }
            latentlab::embed::check_points(x.view()).map_err(embed_error)?;
            let k = Tsne::neighbours_needed(n, &p);
            tick("neighbours", 0, 1);
            let f = on_device!(spec.device, backend => neighbours(backend, x, k, spec.seed))?;
            tick("neighbours", 1, 1);
            let t = Tsne::fit_with_neighbours(
                x.view(),
                Some(&f.neighbours),
                &p,
                &mut |ph, i, total| tick(ph.as_str(), i, total),
            )
            .map_err(embed_error)?;
            out.embedding = t.embedding;
            found = Some(f);
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
            latentlab::embed::check_points(x.view()).map_err(embed_error)?;
            tick("neighbours", 0, 1);
            let f = on_device!(spec.device, backend => neighbours(backend, x, p.n_neighbors - 1, spec.seed))?;
            tick("neighbours", 1, 1);
            let u = Umap::fit_with_neighbours(
                x.view(),
                Some(&f.neighbours),
                &p,
                &mut |ph, i, total| tick(ph.as_str(), i, total),
            )
            .map_err(embed_error)?;
            out.embedding = u.embedding;
            found = Some(f);
        }
        other => {
            return Err(CliError::from(format!(
                "--method: unknown method `{other}`; expected pca, tsne or umap"
            )));
        }
    }
    out.phase_seconds = clock.done;
    if let Some(f) = found {
        out.neighbour_recall = Some(if f.how == "approximate" {
            latentlab::embed::recall(x.view(), &f.neighbours, RECALL_SAMPLES, spec.seed)?
        } else {
            1.0
        });
        out.neighbours = Some(f.how.to_string());
    }
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
    let mut bar = Bar {
        phase: String::new(),
        started: Instant::now(),
    };
    let m = map(&x, &spec, &mut |phase, i, total| {
        if interactive {
            bar.draw(phase, i, total);
        }
    })
    .map_err(|e| match e {
        CliError::Layer { prefix, source } if prefix.is_empty() => CliError::Layer {
            prefix: format!("--latents {}: ", a.latents.display()),
            source,
        },
        other => other,
    })?;
    let seconds = m.phase_seconds.iter().map(|p| p.1).sum::<f64>();
    let y = m.embedding;
    let rows = quality_rows(n, a.seed);
    let (xq, yq) = if rows.len() < n {
        (
            x.select(ndarray::Axis(0), &rows),
            y.select(ndarray::Axis(0), &rows),
        )
    } else {
        (x.clone(), y.clone())
    };
    let nq = rows.len();
    let tw = if nq > 20 {
        Some(trustworthiness(xq.view(), yq.view(), 10)?)
    } else {
        None
    };
    let acc = match &labels {
        Some(l) if nq > 10 => {
            let lq: Vec<i64> = rows.iter().map(|&r| l[r]).collect();
            Some(knn_accuracy(yq.view(), &lq, 10)?)
        }
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
        phase_seconds: m
            .phase_seconds
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!(v)))
            .collect(),
        neighbours: m.neighbours.clone(),
        neighbour_recall: m.neighbour_recall,
        trustworthiness10: tw,
        quality_points: tw.map(|_| nq),
        knn_accuracy10: acc,
        explained_variance_ratio: m.explained_variance_ratio.clone(),
        out: a.out.as_ref().map(|p| p.display().to_string()),
        peak_rss_mib: peak_rss_mib(),
    };
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{} map of {n} points ({}-d) in {seconds:.2} s",
            r.method, r.dim
        );
        if let (Some(how), Some(rc)) = (&r.neighbours, r.neighbour_recall) {
            println!("  neighbours           {how} (recall {rc:.4})");
        }
        if let Some(t) = tw {
            if nq < n {
                println!("  trustworthiness@10   {t:.4} (on {nq} of the points)");
            } else {
                println!("  trustworthiness@10   {t:.4}");
            }
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
