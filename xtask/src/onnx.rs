//! The ONNX benchmark: encode throughput of the fixture encoder (a PyTorch
//! conv VAE with BatchNorm, `benches/peers/torch_onnx_fixture.py`) on the
//! 10,000 mnist-10k digits, latentlab (`latentlab encode --encoder … --split
//! all --json`, its `encode_seconds`) against onnxruntime's CPU provider
//! (`benches/peers/onnx_peer.py`, batches of 256), interleaved rounds at
//! each thread count from 1 to `--threads`, the same count on both sides.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::{fmt as f, pinned};

/// What `cargo xtask onnx` was asked for.
pub struct OnnxArgs {
    /// Interleaved rounds per thread count.
    pub rounds: usize,
    /// The largest thread count.
    pub threads: usize,
}

impl Default for OnnxArgs {
    fn default() -> Self {
        Self {
            rounds: 5,
            threads: 2,
        }
    }
}

fn encoder(root: &Path) -> String {
    root.join("crates/latentlab-onnx/tests/data/torch-onnx/encoder.onnx")
        .to_string_lossy()
        .into_owned()
}

/// One latentlab round at `threads`: images/s over the encode alone.
fn ours(root: &Path, bin: &Path, work: &Path, threads: usize) -> Result<f64, String> {
    let out = work.join("latents.safetensors");
    let o = pinned(&mut Command::new(bin))
        .env("RAYON_NUM_THREADS", threads.to_string())
        .args(["encode", "--encoder", &encoder(root), "--split", "all"])
        .args(["--data", "mnist-10k", "--json", "--out"])
        .arg(&out)
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    if !o.status.success() {
        return Err(format!(
            "latentlab encode failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let v: Value = serde_json::from_slice(&o.stdout).map_err(|e| e.to_string())?;
    match (v["n"].as_f64(), v["encode_seconds"].as_f64()) {
        (Some(n), Some(s)) if s > 0.0 => Ok(n / s),
        _ => Err(format!("latentlab encode --json printed {v}")),
    }
}

/// One onnxruntime round at `threads`: (images/s, version), or why not.
fn peer(root: &Path, threads: usize) -> Result<(f64, String), String> {
    let o = pinned(&mut Command::new("python3"))
        .env("PEER_THREADS", threads.to_string())
        .arg(root.join("benches/peers/onnx_peer.py"))
        .args([encoder(root).as_str(), "1"])
        .output()
        .map_err(|e| format!("python3 could not be run: {e}"))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        return Err(format!(
            "onnx_peer.py failed: {}",
            err.lines().last().unwrap_or("no message")
        ));
    }
    let line = String::from_utf8_lossy(&o.stdout);
    let v: Value =
        serde_json::from_str(line.lines().last().unwrap_or("")).map_err(|e| e.to_string())?;
    match (v["images_per_s"].as_f64(), v["onnxruntime"].as_str()) {
        (Some(r), Some(ver)) => Ok((r, ver.to_string())),
        _ => Err(format!("onnx_peer.py printed {v}")),
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[v.len() / 2])
}

/// Runs the benchmark and returns its figures.
pub fn run(root: &Path, bin: &Path, work: &Path, a: &OnnxArgs) -> Result<Value, String> {
    std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
    let mut rows = Vec::new();
    let mut note = None;
    let mut version = None;
    for threads in 1..=a.threads.max(1) {
        let (mut l, mut o) = (Vec::new(), Vec::new());
        for _ in 0..a.rounds {
            let mine = ours(root, bin, work, threads)?;
            let theirs = match peer(root, threads) {
                Ok((r, v)) => {
                    version = Some(v);
                    Some(r)
                }
                Err(why) => {
                    note = Some(why);
                    None
                }
            };
            eprintln!(
                "xtask onnx: {threads} thread(s): latentlab {mine:.0}, onnxruntime {theirs:?} images/s"
            );
            l.push(mine);
            o.extend(theirs);
        }
        let (lm, om) = (median(l), median(o));
        rows.push(json!({
            "threads": threads,
            "latentlab": lm,
            "onnxruntime": om,
            "ratio": lm.zip(om).map(|(l, o)| l / o),
        }));
    }
    Ok(json!({
        "rounds": a.rounds,
        "images": 10_000,
        "by_threads": rows,
        "onnxruntime_version": version,
        "peer_note": note,
    }))
}

/// The section of `docs/benchmarks.md`.
pub fn markdown(c: &Value, command: &str) -> String {
    let mut s = String::new();
    let ort = c["onnxruntime_version"]
        .as_str()
        .map_or("onnxruntime".to_string(), |v| format!("onnxruntime {v}"));
    let _ = writeln!(
        s,
        "## ONNX encode throughput against onnxruntime\n\n`{command}`: the fixture encoder of `benches/peers/torch_onnx_fixture.py` (a PyTorch conv VAE with BatchNorm: two Conv-BatchNorm-ReLU blocks, a Linear, two heads; 1×28×28 inputs, 8 latents) encodes the {} mnist-10k digits; latentlab through tract (`latentlab encode --encoder … --split all --json`, images over its `encode_seconds`) against {ort}'s CPU provider (`benches/peers/onnx_peer.py`, batches of 256, `intra_op_num_threads` = the thread count). Medians of {} interleaved rounds, images/s, higher is better.\n",
        c["images"], c["rounds"]
    );
    if let Some(why) = c["peer_note"].as_str() {
        let _ = writeln!(s, "The peer did not run: {why}.\n");
    }
    let _ = writeln!(
        s,
        "| threads | latentlab (tract) | {ort} | ratio |\n|---:|---:|---:|---:|"
    );
    for r in c["by_threads"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {} | {} | {} | **{}×** |",
            r["threads"],
            f(&r["latentlab"], 0),
            f(&r["onnxruntime"], 0),
            f(&r["ratio"], 2)
        );
    }
    s.push('\n');
    s
}
