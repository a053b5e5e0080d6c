//! `cargo xtask test [--rust-only | --python-only]`: every test, Rust and
//! Python (see [`test`]): the README's test command.
//!
//! `cargo xtask bench [--json] [--quick] [--quality-seeds K]`: runs
//! latentlab's criterion benches, measures numpy's sgemm in the same run
//! where `python3` with numpy exists, the latent-map, training and quality
//! figures against their peers, writes `docs/benchmarks.md`, and prints the
//! figures (as one JSON document with `--json`; progress goes to stderr).
//!
//! `cargo xtask onnx [--rounds R] [--threads T] [--json]`: the ONNX encode
//! benchmark alone (see [`onnx`]), spliced into its section.
//!
//! `cargo xtask quality [--seeds K] [--first S] [--epochs E] [--threads T]
//! [--no-peer] [--json]`: the quality benchmark alone (see [`quality`]); it
//! rewrites only its own section of `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use serde_json::{Value, json};

mod conv;
mod onnx;
mod quality;
mod test;

/// Images per step of the training-step bench (`benches/lib.rs`'s
/// `TRAIN_BATCH`).
const TRAIN_BATCH: f64 = 128.0;

/// The thread count both sides of every comparison are pinned to.
static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// Pins `cmd`'s thread pools to [`THREADS`]: latentlab's rayon pool, torch
/// (`PEER_THREADS`, read by the peer scripts), OpenMP and the BLAS libraries.
fn pinned(cmd: &mut Command) -> &mut Command {
    let n = THREADS
        .get()
        .copied()
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .to_string();
    for var in [
        "RAYON_NUM_THREADS",
        "PEER_THREADS",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMBA_NUM_THREADS",
    ] {
        cmd.env(var, &n);
    }
    cmd
}

const NUMPY_SGEMM: &str = r#"
import json, sys, time
import numpy as np
shapes = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
out = []
for m, k, n in shapes:
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    for _ in range(3):
        a @ b
    # The median of repeated timings: the same statistic criterion reports.
    reps = max(1, int(2e8 / (2 * m * n * k)))
    times = []
    for _ in range(31):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        times.append((time.perf_counter() - t) / reps)
    times.sort()
    out.append({"m": m, "k": k, "n": n, "gflops": 2 * m * n * k / times[len(times) // 2] / 1e9})
try:
    cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    blas = f"{cfg.get('name')} {cfg.get('version')}"
except Exception:
    blas = "unknown BLAS"
print(json.dumps({"numpy": np.__version__, "blas": blas, "sgemm": out}))
"#;

const USAGE: &str = "usage: cargo xtask test [--rust-only | --python-only]\n       cargo xtask bench [--json] [--quick] [--threads T] [--quality-seeds K] [--conv-seeds K]\n       cargo xtask quality [--seeds K] [--first S] [--epochs E] [--threads T] [--no-peer] [--json]\n       cargo xtask conv [--seeds K] [--epochs E] [--images N] [--rounds R] [--threads T] [--json]\n       cargo xtask onnx [--rounds R] [--threads T] [--json]\n       cargo xtask maps [--sizes 10000,60000] [--threads T] [--no-peers]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test::test_cmd(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("quality") => quality_cmd(&args[1..]),
        Some("conv") => conv_cmd(&args[1..]),
        Some("onnx") => onnx_cmd(&args[1..]),
        Some("maps") => maps_cmd(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository")
        .to_path_buf()
}

fn bench(args: &[String]) -> Result<(), String> {
    let mut json_out = false;
    let mut quick = false;
    let mut quality_args = quality::QualityArgs::default();
    let mut conv_args = conv::ConvArgs::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json_out = true,
            "--quick" => quick = true,
            "--quality-seeds" => quality_args.seeds = number(it.next(), a)?,
            "--conv-seeds" => conv_args.seeds = number(it.next(), a)?,
            "--threads" => quality_args.threads = number(it.next(), a)?,
            other => {
                return Err(format!(
                    "unknown flag {other:?}; expected --json, --quick, --threads T, --quality-seeds K or --conv-seeds K\n{USAGE}"
                ));
            }
        }
    }
    if quality_args.threads == 0 {
        return Err("--threads needs at least 1".into());
    }
    let _ = THREADS.set(quality_args.threads);
    let root = root();
    let target = target_dir(&root);
    let crit = target.join("criterion");
    for group in ["matmul", "train_step"] {
        let _ = std::fs::remove_dir_all(crit.join(group));
    }

    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root).args([
        "bench",
        "-p",
        "latentlab-benches",
        "--bench",
        "matmul",
        "--bench",
        "train_step",
        "--",
        "--noplot",
    ]);
    if quick {
        cmd.args([
            "--warm-up-time",
            "1",
            "--measurement-time",
            "2",
            "--sample-size",
            "20",
        ]);
    }
    // Criterion's report goes to stderr so that stdout holds only our figures.
    let status = pinned(&mut cmd)
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .map_err(|e| format!("cargo bench: {e}"))?;
    if !status.success() {
        return Err(format!("cargo bench failed: {status}"));
    }

    // The shapes are the ones criterion ran (benches/lib.rs lists them).
    let shapes = matmul_shapes(&crit.join("matmul").join("cpu"));
    let numpy = measure_numpy(&root, &shapes);
    let adapter = gpu_adapter(&root);
    let mut rows = Vec::new();
    for backend in ["cpu", "gpu"] {
        for &(m, k, n) in &shapes {
            let Some(ns) = median_ns(
                &crit
                    .join("matmul")
                    .join(backend)
                    .join(format!("{m}x{k}x{n}")),
            ) else {
                continue;
            };
            let gflops = 2.0 * (m * k * n) as f64 / ns;
            let numpy_gflops = numpy.as_ref().and_then(|np| {
                np["sgemm"]
                    .as_array()?
                    .iter()
                    .find(|r| r["m"] == m && r["k"] == k && r["n"] == n)?["gflops"]
                    .as_f64()
            });
            rows.push(json!({"backend": backend, "m": m, "k": k, "n": n, "gflops": round2(gflops), "numpy_gflops": numpy_gflops.map(round2)}));
        }
    }
    let mut steps = Vec::new();
    for backend in ["cpu", "gpu"] {
        if let Some(ns) = median_ns(&crit.join("train_step").join(backend)) {
            steps.push(json!({"backend": backend, "ms": round2(ns / 1e6), "images_per_s": round2(TRAIN_BATCH / (ns / 1e9))}));
        }
    }
    if rows.is_empty() {
        return Err(format!("no criterion results under {}", crit.display()));
    }
    let maps = latent_maps(&root, &target)?;
    let bin = build_cli(&root, &target)?;
    let quality = quality::run(&root, &bin, &target.join("xtask-quality"), &quality_args)?;
    conv_args.threads = quality_args.threads;
    let conv = conv::run(&root, &bin, &target.join("xtask-conv"), &conv_args)?;
    let onnx_args = onnx::OnnxArgs {
        threads: quality_args.threads,
        ..onnx::OnnxArgs::default()
    };
    let onnx = onnx::run(&root, &bin, &target.join("xtask-onnx"), &onnx_args)?;
    // Maps at 10,000 and 60,000 against openTSNE and umap-learn (minutes;
    // not with --quick): the script writes its own section.
    let scale_md = target.join("xtask-maps-scale.md");
    let _ = std::fs::remove_file(&scale_md);
    if !quick {
        let sizes = "10000,60000".to_string();
        if let Err(why) = maps_scale(&root, &bin, &sizes, quality_args.threads, false, &scale_md) {
            eprintln!(
                "xtask: the maps-at-scale benchmark did not run ({why}); its old figures are kept"
            );
        }
    }
    let doc = json!({
        "onnx": onnx,
        "quality": quality,
        "conv": conv,
        "latent_maps": maps,
        "matmul": rows,
        "train_step": steps,
        "threads": quality_args.threads,
        "numpy": numpy.as_ref().map(|np| json!({"version": np["numpy"], "blas": np["blas"]})),
        "gpu_adapter": adapter,
        "machine": machine(),
        "quick": quick,
    });
    let mut md = markdown(&doc);
    md.push_str(&quality_section(&doc["quality"], "cargo xtask bench"));
    md.push_str(&conv_section(&doc["conv"], "cargo xtask bench"));
    md.push_str(&onnx_section(&doc["onnx"], "cargo xtask bench"));
    let scale = kept_section(&scale_md, SCALE_BEGIN, SCALE_END);
    md.push_str(&if scale.is_empty() {
        kept_section(&root.join("docs/benchmarks.md"), SCALE_BEGIN, SCALE_END)
    } else {
        scale
    });
    md.push_str(&kept_section(
        &root.join("docs/benchmarks.md"),
        PYTHON_BEGIN,
        PYTHON_END,
    ));
    write_atomic(&root.join("docs/benchmarks.md"), &md)?;
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?
        );
    } else {
        print!("{md}");
    }
    Ok(())
}

/// Runs `latentlab` and returns the JSON document it printed.
fn latentlab_json(bin: &Path, args: &[&str]) -> Result<Value, String> {
    let out = pinned(&mut Command::new(bin))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!("latentlab {args:?} failed: {}", out.status));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("latentlab {args:?}: {e}"))
}

/// Peak resident memory of a child, polled from /proc (Linux): VmHWM is a
/// high-water mark, so the last reading before exit is the peak.
fn run_with_peak(bin: &Path, args: &[&str]) -> Result<(Value, Option<f64>, f64), String> {
    let started = std::time::Instant::now();
    let mut child = pinned(&mut Command::new(bin))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib: Option<f64> = None;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:"))
            && let Some(kib) = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        {
            peak_kib = Some(peak_kib.map_or(kib, |p| p.max(kib)));
        }
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("latentlab {args:?} failed: {}", out.status));
    }
    let v = serde_json::from_slice(&out.stdout).map_err(|e| format!("latentlab {args:?}: {e}"))?;
    Ok((
        v,
        peak_kib.map(|k| k / 1024.0),
        started.elapsed().as_secs_f64(),
    ))
}

/// Diagnoses 1,000,000 latent codes of dimension 64 (a 512 MB safetensors
/// file of f32 mu and logvar) and records the peak memory.
fn diagnose_memory(bin: &Path, dir: &Path) -> Result<Value, String> {
    let (n, d) = (1_000_000usize, 64usize);
    let path = dir.join("million.safetensors");
    let bytes = (n * d * 4) as u64;
    let header = format!(
        r#"{{"mu":{{"dtype":"F32","shape":[{n},{d}],"data_offsets":[0,{bytes}]}},"logvar":{{"dtype":"F32","shape":[{n},{d}],"data_offsets":[{bytes},{}]}}}}"#,
        2 * bytes
    );
    let mut header = header.into_bytes();
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    {
        use std::io::Write;
        let f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut w = std::io::BufWriter::new(f);
        let io = |e: std::io::Error| format!("{}: {e}", path.display());
        w.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io)?;
        w.write_all(&header).map_err(io)?;
        // Means: a deterministic spread in (−1.6, 1.6); log-variances ≈ ln 0.36.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for part in 0..2 {
            for _ in 0..n * d {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state >> 40) as f32 / (1u64 << 24) as f32;
                let v = if part == 0 {
                    3.2 * u - 1.6
                } else {
                    -1.02 + 0.1 * u
                };
                w.write_all(&v.to_le_bytes()).map_err(io)?;
            }
        }
        w.flush().map_err(io)?;
    }
    let p = path.to_string_lossy().to_string();
    let (r, peak, secs) = run_with_peak(bin, &["diagnose", "--latents", &p, "--json"])?;
    let _ = std::fs::remove_file(&path);
    Ok(json!({
        "n": r["n"], "dim": d, "file_mib": (2 * bytes) as f64 / (1 << 20) as f64,
        "peak_rss_mib": peak, "seconds": secs, "verdict": r["verdict"]["state"],
    }))
}

/// Runs `benches/peers/SCRIPT ARG` with python3: its standard output when it
/// succeeds, else why not (the last line it printed to stderr, e.g. the
/// missing module).
fn python_peer(root: &Path, script: &str, arg: &Path) -> Result<String, String> {
    let out = pinned(&mut Command::new("python3"))
        .arg(root.join("benches/peers").join(script))
        .arg(arg)
        .output()
        .map_err(|e| format!("python3 could not be run: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "{script} failed: {}",
            err.lines().last().unwrap_or("no message")
        ))
    }
}

/// The README's main job (training throughput, with the PyTorch peer),
/// then PCA, t-SNE and UMAP maps of its 10,000 latent means, with
/// scikit-learn, openTSNE and umap-learn on the same latents.
fn latent_maps(root: &Path, target: &Path) -> Result<Value, String> {
    let bin = build_cli(root, target)?;
    let dir = target.join("xtask-maps");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ck = dir.join("vae.safetensors");
    let lat = dir.join("latents.safetensors");
    let (ck_s, lat_s) = (ck.to_string_lossy(), lat.to_string_lossy());
    let train = latentlab_json(
        &bin,
        &[
            "train",
            "--data",
            "mnist-10k",
            "--epochs",
            "20",
            "--device",
            "cpu",
            "--out",
            &ck_s,
            "--json",
        ],
    )?;
    latentlab_json(
        &bin,
        &[
            "encode",
            "--checkpoint",
            &ck_s,
            "--split",
            "all",
            "--device",
            "cpu",
            "--out",
            &lat_s,
            "--json",
        ],
    )?;
    let mut ours = Vec::new();
    for method in ["pca", "tsne", "umap"] {
        let r = latentlab_json(
            &bin,
            &["embed", "--latents", &lat_s, "--method", method, "--json"],
        )?;
        ours.push(r);
    }
    let (peers, peers_note): (Vec<Value>, Option<String>) =
        match python_peer(root, "embed_peers.py", &lat) {
            Ok(out) => (
                out.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect(),
                None,
            ),
            Err(why) => {
                eprintln!(
                    "xtask: the map peers did not run ({why}); maps are recorded without them"
                );
                (Vec::new(), Some(why))
            }
        };
    // "pytorch VERSION: N images/s (T threads, batch 128)"
    let mut torch_note: Option<String> = None;
    let mut torch_once = || -> Option<(f64, Option<u64>)> {
        let out = python_peer(root, "torch_vae.py", &dir)
            .map_err(|why| torch_note = Some(why))
            .ok()?;
        let line = out.lines().find(|l| l.contains("images/s"))?;
        let after = line.split(": ").nth(1)?;
        let rate = after.split(' ').next()?.parse::<f64>().ok()?;
        let threads = after
            .split('(')
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|t| t.parse::<u64>().ok());
        Some((rate, threads))
    };
    // Throughput: five interleaved rounds of a 5-epoch latentlab run and the
    // PyTorch peer, so that both sides see the same machine; medians count.
    let speed_ck = dir.join("speed.safetensors");
    let speed_ck = speed_ck.to_string_lossy();
    let mut rounds = Vec::new();
    let mut torch_threads = None;
    for _ in 0..5 {
        let ours = latentlab_json(
            &bin,
            &[
                "train",
                "--data",
                "mnist-10k",
                "--epochs",
                "5",
                "--device",
                "cpu",
                "--out",
                &speed_ck,
                "--json",
            ],
        )?["samples_per_s"]
            .as_f64();
        let torch = torch_once();
        torch_threads = torch_threads.or(torch.and_then(|t| t.1));
        rounds.push(json!({"latentlab": ours, "torch": torch.map(|t| t.0)}));
    }
    let median = |key: &str| {
        let mut v: Vec<f64> = rounds.iter().filter_map(|r| r[key].as_f64()).collect();
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| v[v.len() / 2])
    };
    let speed = json!({
        "rounds": rounds,
        "latentlab_median": median("latentlab"),
        "torch_median": median("torch"),
        "torch_threads": torch_threads,
        "torch_note": torch_note,
    });
    let memory = diagnose_memory(&bin, &dir)?;
    Ok(json!({
        "diagnose_memory": memory,
        "train_images_per_s": train["samples_per_s"],
        "train_device": train["device"],
        "test_neg_elbo": train["test"]["neg_elbo"],
        "speed": speed,
        "latentlab": ours,
        "peers": peers,
        "peers_note": peers_note,
    }))
}

/// Builds the release `latentlab` binary and returns its path.
fn build_cli(root: &Path, target: &Path) -> Result<PathBuf, String> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args(["build", "--release", "-p", "latentlab-cli"])
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !status.success() {
        return Err("cargo build -p latentlab-cli failed".into());
    }
    Ok(target.join("release").join("latentlab"))
}

/// A flag's numeric value.
fn number<T: std::str::FromStr>(v: Option<&String>, flag: &str) -> Result<T, String> {
    v.and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{flag} needs a number\n{USAGE}"))
}

const QUALITY_BEGIN: &str = "<!-- quality: written by cargo xtask bench or cargo xtask quality -->";
const QUALITY_END: &str = "<!-- /quality -->";

fn quality_section(q: &Value, command: &str) -> String {
    format!(
        "\n{QUALITY_BEGIN}\n{}{QUALITY_END}\n",
        quality::markdown(q, command)
    )
}

/// `cargo xtask quality`: the quality benchmark alone, spliced into its
/// section of `docs/benchmarks.md`.
fn quality_cmd(args: &[String]) -> Result<(), String> {
    let mut a = quality::QualityArgs::default();
    let mut json_out = false;
    let mut it = args.iter();
    while let Some(f) = it.next() {
        match f.as_str() {
            "--seeds" => a.seeds = number(it.next(), f)?,
            "--first" => a.first = number(it.next(), f)?,
            "--epochs" => a.epochs = number(it.next(), f)?,
            "--threads" => a.threads = number(it.next(), f)?,
            "--no-peer" => a.peer = false,
            "--json" => json_out = true,
            other => return Err(format!("unknown flag {other:?}\n{USAGE}")),
        }
    }
    if a.seeds < 2 || a.epochs == 0 || a.threads == 0 {
        return Err("--seeds needs at least 2, --epochs and --threads at least 1".into());
    }
    let _ = THREADS.set(a.threads);
    let root = root();
    let target = target_dir(&root);
    let bin = build_cli(&root, &target)?;
    let q = quality::run(&root, &bin, &target.join("xtask-quality"), &a)?;
    let mut command = format!(
        "cargo xtask quality --seeds {} --threads {}",
        a.seeds, a.threads
    );
    if a.first != 0 {
        let _ = write!(command, " --first {}", a.first);
    }
    if a.epochs != 20 {
        let _ = write!(command, " --epochs {}", a.epochs);
    }
    if !a.peer {
        command.push_str(" --no-peer");
    }
    let section = quality_section(&q, &command);
    publish(&root, (QUALITY_BEGIN, QUALITY_END), &section, &q, json_out)
}

/// The Python package's section, which `benches/peers/python_speed.py
/// --write` splices in (it needs the installed package); a full bench run
/// keeps it as it is.
const PYTHON_BEGIN: &str = "<!-- python: written by benches/peers/python_speed.py --write -->";
const PYTHON_END: &str = "<!-- /python -->";

/// The section between `begin` and `end` (markers included) of the file at
/// `path`, or nothing.
fn kept_section(path: &Path, begin: &str, end: &str) -> String {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    match (old.find(begin), old.find(end)) {
        (Some(b), Some(e)) if b < e => format!("\n{}\n", &old[b..e + end.len()]),
        _ => String::new(),
    }
}

/// Replaces the section between `begin` and `end` in the file at `path`
/// (appending it when the markers are missing), atomically.
fn splice(path: &Path, begin: &str, end: &str, section: &str) -> Result<(), String> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(begin), old.find(end)) {
        (Some(b), Some(e)) if b < e => {
            let before = old[..b].trim_end_matches('\n');
            let after = &old[e + end.len()..];
            format!("{before}\n{section}{}", after.trim_start_matches('\n'))
        }
        _ => format!("{old}{section}"),
    };
    write_atomic(path, &new)
}

const CONV_BEGIN: &str = "<!-- conv: written by cargo xtask bench or cargo xtask conv -->";
const CONV_END: &str = "<!-- /conv -->";

fn conv_section(c: &Value, command: &str) -> String {
    format!("\n{CONV_BEGIN}\n{}{CONV_END}\n", conv::markdown(c, command))
}

/// `cargo xtask conv`: the conv64 benchmark alone, spliced into its section
/// of `docs/benchmarks.md`.
fn conv_cmd(args: &[String]) -> Result<(), String> {
    let mut a = conv::ConvArgs::default();
    let mut json_out = false;
    let mut it = args.iter();
    while let Some(f) = it.next() {
        match f.as_str() {
            "--seeds" => a.seeds = number(it.next(), f)?,
            "--epochs" => a.epochs = number(it.next(), f)?,
            "--images" => a.images = number(it.next(), f)?,
            "--rounds" => a.rounds = number(it.next(), f)?,
            "--threads" => a.threads = number(it.next(), f)?,
            "--json" => json_out = true,
            other => return Err(format!("unknown flag {other:?}\n{USAGE}")),
        }
    }
    if a.seeds == 1 || a.epochs == 0 || a.threads == 0 || a.rounds == 0 || a.images < 200 {
        return Err(
            "--seeds needs 0 (speed only) or at least 2, --images at least 200, --epochs, --rounds and --threads at least 1"
                .into(),
        );
    }
    let _ = THREADS.set(a.threads);
    let root = root();
    let target = target_dir(&root);
    let bin = build_cli(&root, &target)?;
    let c = conv::run(&root, &bin, &target.join("xtask-conv"), &a)?;
    let command = format!(
        "cargo xtask conv --seeds {} --epochs {} --images {} --rounds {} --threads {}",
        a.seeds, a.epochs, a.images, a.rounds, a.threads
    );
    let section = conv_section(&c, &command);
    publish(&root, (CONV_BEGIN, CONV_END), &section, &c, json_out)
}

const ONNX_BEGIN: &str = "<!-- onnx: written by cargo xtask bench or cargo xtask onnx -->";
const ONNX_END: &str = "<!-- /onnx -->";

fn onnx_section(c: &Value, command: &str) -> String {
    format!("\n{ONNX_BEGIN}\n{}{ONNX_END}\n", onnx::markdown(c, command))
}

/// `cargo xtask onnx`: the ONNX encode benchmark alone, spliced into its
/// section of `docs/benchmarks.md`.
fn onnx_cmd(args: &[String]) -> Result<(), String> {
    let mut a = onnx::OnnxArgs::default();
    let mut json_out = false;
    let mut it = args.iter();
    while let Some(f) = it.next() {
        match f.as_str() {
            "--rounds" => a.rounds = number(it.next(), f)?,
            "--threads" => a.threads = number(it.next(), f)?,
            "--json" => json_out = true,
            other => return Err(format!("unknown flag {other:?}\n{USAGE}")),
        }
    }
    if a.rounds == 0 || a.threads == 0 {
        return Err("--rounds and --threads need at least 1".into());
    }
    let _ = THREADS.set(a.threads);
    let root = root();
    let target = target_dir(&root);
    let bin = build_cli(&root, &target)?;
    let c = onnx::run(&root, &bin, &target.join("xtask-onnx"), &a)?;
    let command = format!(
        "cargo xtask onnx --rounds {} --threads {}",
        a.rounds, a.threads
    );
    let section = onnx_section(&c, &command);
    publish(&root, (ONNX_BEGIN, ONNX_END), &section, &c, json_out)
}

const SCALE_BEGIN: &str = "<!-- maps-scale: written by benches/peers/maps_scale.py --write -->";
const SCALE_END: &str = "<!-- /maps-scale -->";

/// Runs `benches/peers/maps_scale.py` on `bin` (t-SNE and UMAP at `sizes`,
/// with openTSNE and umap-learn unless `no_peers`), splicing its section
/// into the markdown file `write`.
fn maps_scale(
    root: &Path,
    bin: &Path,
    sizes: &str,
    threads: usize,
    no_peers: bool,
    write: &Path,
) -> Result<(), String> {
    let mut cmd = Command::new("python3");
    cmd.arg(root.join("benches/peers/maps_scale.py"))
        .arg("--bin")
        .arg(bin)
        .args(["--sizes", sizes, "--threads", &threads.to_string()])
        .arg("--write")
        .arg(write)
        .stdout(Stdio::from(std::io::stderr()));
    if no_peers {
        cmd.arg("--no-peers");
    }
    let status = pinned(&mut cmd)
        .status()
        .map_err(|e| format!("python3 could not be run: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("maps_scale.py failed: {status}"))
    }
}

/// `cargo xtask maps`: t-SNE and UMAP at scale against their peers alone,
/// spliced into docs/benchmarks.md.
fn maps_cmd(args: &[String]) -> Result<(), String> {
    let (mut sizes, mut threads, mut no_peers) = ("10000,60000".to_string(), 2usize, false);
    let mut it = args.iter();
    while let Some(f) = it.next() {
        match f.as_str() {
            "--sizes" => {
                sizes = it
                    .next()
                    .ok_or("--sizes needs a list, e.g. 10000,60000")?
                    .clone()
            }
            "--threads" => threads = number(it.next(), f)?,
            "--no-peers" => no_peers = true,
            other => return Err(format!("unknown flag {other:?}\n{USAGE}")),
        }
    }
    if threads == 0
        || sizes
            .split(',')
            .any(|s| s.parse::<usize>().map_or(true, |n| n < 100))
    {
        return Err("--threads needs at least 1 and --sizes numbers of at least 100".into());
    }
    let _ = THREADS.set(threads);
    let root = root();
    let target = target_dir(&root);
    let bin = build_cli(&root, &target)?;
    maps_scale(
        &root,
        &bin,
        &sizes,
        threads,
        no_peers,
        &root.join("docs/benchmarks.md"),
    )
}

/// Where cargo builds: `CARGO_TARGET_DIR`, or `target/` in the repository.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// What a single benchmark command ends with: `section` spliced between
/// `begin` and `end` in `docs/benchmarks.md`, then the figures printed (as
/// JSON with `--json`, else the section).
fn publish(
    root: &Path,
    (begin, end): (&str, &str),
    section: &str,
    figures: &Value,
    json_out: bool,
) -> Result<(), String> {
    splice(&root.join("docs/benchmarks.md"), begin, end, section)?;
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(figures).map_err(|e| e.to_string())?
        );
    } else {
        print!("{section}");
    }
    Ok(())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Criterion's median estimate, in nanoseconds.
fn median_ns(dir: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join("new/estimates.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// The `MxKxN` folders criterion wrote for one backend, sorted.
fn matmul_shapes(dir: &Path) -> Vec<(u64, u64, u64)> {
    let mut v: Vec<(u64, u64, u64)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().to_string();
            let mut it = name.split('x').map(|p| p.parse::<u64>().ok());
            Some((it.next()??, it.next()??, it.next()??))
        })
        .collect();
    v.sort_unstable();
    v
}

fn measure_numpy(root: &Path, shapes: &[(u64, u64, u64)]) -> Option<Value> {
    let shapes = serde_json::to_string(shapes).ok()?;
    let out = pinned(&mut Command::new("python3"))
        .current_dir(root)
        .args(["-c", NUMPY_SGEMM, &shapes])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("xtask: numpy not available; figures are recorded without it");
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn gpu_adapter(root: &Path) -> Value {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "latentlab-cli",
            "--",
            "info",
            "--json",
        ])
        .stderr(Stdio::null())
        .output();
    let info: Option<Value> = out
        .ok()
        .and_then(|o| serde_json::from_slice(&o.stdout).ok());
    info.and_then(|i| {
        i["gpu"]["adapter"]["name"]
            .as_str()
            .map(|s| Value::from(s.to_string()))
    })
    .unwrap_or(Value::Null)
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
    });
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    json!({"cpu": cpu, "threads": threads})
}

fn markdown(doc: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `cargo xtask bench{} --threads {}`; every figure below comes from that one run on one machine.\n",
        if doc["quick"] == true { " --quick" } else { "" },
        doc["threads"]
    );
    let _ = writeln!(
        s,
        "- machine: {} ({} threads)\n- GPU adapter: {}\n- peer: numpy {} with {}\n",
        doc["machine"]["cpu"].as_str().unwrap_or("unknown CPU"),
        doc["machine"]["threads"],
        doc["gpu_adapter"].as_str().unwrap_or("none"),
        doc["numpy"]["version"]
            .as_str()
            .unwrap_or("(not installed)"),
        doc["numpy"]["blas"].as_str().unwrap_or("-"),
    );
    let maps = &doc["latent_maps"];
    let _ = writeln!(
        s,
        "Both sides of every comparison are pinned to {} threads (`--threads`; latentlab's rayon pool, torch, OpenMP and BLAS through RAYON_NUM_THREADS, PEER_THREADS, OMP_NUM_THREADS and OPENBLAS_NUM_THREADS). A figure that was not measured shows as —, with the reason.\n",
        doc["threads"]
    );
    let _ = writeln!(
        s,
        "## Training throughput (784-512-256-20, batch 128, MNIST-10k, CPU, {} threads)\n\nlatentlab reported its device as `{}`; the PyTorch peer as {}.\n",
        doc["threads"],
        maps["train_device"].as_str().unwrap_or("—"),
        maps["speed"]["torch_threads"].as_u64().map_or_else(
            || format!(
                "— ({})",
                maps["speed"]["torch_note"].as_str().unwrap_or("not run")
            ),
            |t| format!("{t} threads")
        )
    );
    let speed = &maps["speed"];
    let _ = writeln!(
        s,
        "Five interleaved rounds: `latentlab train --epochs 5 --json` (its `samples_per_s`), then `benches/peers/torch_vae.py` (PyTorch, the same model, 3 timed epochs after a warm-up one).\n\n| round | latentlab images/s | PyTorch images/s | ratio |\n|---:|---:|---:|---:|"
    );
    for (i, r) in speed["rounds"].as_array().into_iter().flatten().enumerate() {
        let (l, t) = (r["latentlab"].as_f64(), r["torch"].as_f64());
        let cell = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.0}"));
        let ratio = match (l, t) {
            (Some(l), Some(t)) => format!("{:.2}×", l / t),
            _ => "—".into(),
        };
        let _ = writeln!(s, "| {} | {} | {} | {ratio} |", i + 1, cell(l), cell(t));
    }
    match (
        speed["latentlab_median"].as_f64(),
        speed["torch_median"].as_f64(),
    ) {
        (Some(l), Some(t)) => {
            let _ = writeln!(
                s,
                "\nMedians: latentlab {l:.0}, PyTorch {t:.0} images/s; latentlab / PyTorch {:.2}×.\n",
                l / t
            );
        }
        (Some(l), None) => {
            let _ = writeln!(
                s,
                "\nMedian: latentlab {l:.0} images/s; PyTorch: — ({}).\n",
                speed["torch_note"].as_str().unwrap_or("not run")
            );
        }
        _ => {
            let _ = writeln!(s, "\nMedians: — (no round finished).\n");
        }
    }
    let _ = writeln!(
        s,
        "The main job's 20-epoch run (whose latents the maps below use): {} images/s, test −ELBO {}.\n",
        fmt(&maps["train_images_per_s"], 0),
        fmt(&maps["test_neg_elbo"], 2)
    );
    let _ = writeln!(
        s,
        "## Latent maps (the main job's 10,000 latent means, 20-d)\n\n| method | latentlab s | trustworthiness@10 | peer | peer s | peer trustworthiness@10 | speed-up |\n|---|---:|---:|---|---:|---:|---:|"
    );
    for (r, peer) in maps["latentlab"].as_array().into_iter().flatten().zip([
        "sklearn-pca",
        "opentsne",
        "umap-learn",
    ]) {
        let secs = r["seconds"].as_f64();
        let p = maps["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["method"] == peer);
        let (ps, pt, up) = match p {
            Some(p) => (
                fmt(&p["seconds"], 2),
                fmt(&p["trustworthiness10"], 4),
                match (p["seconds"].as_f64(), secs) {
                    (Some(ps), Some(ls)) if ls > 0.0 => format!("{:.1}×", ps / ls),
                    _ => "—".into(),
                },
            ),
            None => (
                format!(
                    "— ({})",
                    maps["peers_note"].as_str().unwrap_or("no figure for it")
                ),
                "—".into(),
                "—".into(),
            ),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {peer} | {ps} | {pt} | {up} |",
            r["method"].as_str().unwrap_or("?"),
            fmt(&r["seconds"], 2),
            fmt(&r["trustworthiness10"], 4)
        );
    }
    let _ = writeln!(
        s,
        "\nPeers: `benches/peers/embed_peers.py` (scikit-learn PCA; openTSNE with n_jobs = {}; umap-learn after a JIT warm-up run), trustworthiness by scikit-learn.\n",
        doc["threads"]
    );
    let mem = &maps["diagnose_memory"];
    let _ = writeln!(
        s,
        "## Bounded memory\n\n`latentlab diagnose --latents` on {} codes of dimension {} ({} MiB of f32 mu and logvar in one safetensors file): peak resident memory {} MiB (VmHWM, polled), {} s.\n",
        mem["n"],
        mem["dim"],
        fmt(&mem["file_mib"], 0),
        fmt(&mem["peak_rss_mib"], 0),
        fmt(&mem["seconds"], 1)
    );
    let _ = writeln!(
        s,
        "## Matrix product (f32, C = A·B; medians: criterion's for latentlab, of 31 timed repeats for numpy)\n"
    );
    let _ = writeln!(
        s,
        "| backend | m | k | n | GFLOP/s | numpy GFLOP/s | latentlab / numpy |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for r in doc["matmul"].as_array().into_iter().flatten() {
        let g = r["gflops"].as_f64();
        let (np, ratio) = match (r["numpy_gflops"].as_f64(), g) {
            (Some(np), Some(g)) => (format!("{np:.1}"), format!("{:.0} %", 100.0 * g / np)),
            _ => ("— (numpy not installed)".into(), "—".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {np} | {ratio} |",
            r["backend"].as_str().unwrap_or("?"),
            r["m"],
            r["k"],
            r["n"],
            fmt(&r["gflops"], 1)
        );
    }
    let _ = writeln!(
        s,
        "\n## The training step (`Vae::train_step`: forward, loss, backward and Adam; 784-512-256-20, batch 128)\n"
    );
    let _ = writeln!(s, "| backend | ms per step | images/s |");
    let _ = writeln!(s, "|---|---:|---:|");
    for r in doc["train_step"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            r["backend"].as_str().unwrap_or("?"),
            fmt(&r["ms"], 3),
            fmt(&r["images_per_s"], 0)
        );
    }
    let _ = writeln!(
        s,
        "\nThe `gpu` rows run the WGSL kernels on the adapter named above; on a machine without a GPU that is Mesa's lavapipe, a software Vulkan device on the same CPU cores, so they show that the GPU path works, not GPU speed."
    );
    s
}

/// A figure with `digits` decimals, or — when it was not measured.
fn fmt(v: &Value, digits: usize) -> String {
    v.as_f64()
        .filter(|x| x.is_finite())
        .map_or_else(|| "—".to_string(), |x| format!("{x:.digits$}"))
}

fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("md.tmp");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}
