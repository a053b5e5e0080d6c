//! The quality benchmark: the reference run (784-512-256-20, 20 epochs on
//! mnist-10k) over K seeds with latentlab and with PyTorch
//! (`benches/peers/torch_elbo.py`) in one run, with each side's mean test
//! −ELBO and standard error, their difference, and Spearman's ρ of the
//! result against the seed number (a trend there means the seed's *number*,
//! not just its draws, shapes the run).

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use latentlab_rng::{Purpose, SplitMix64, audit};
use serde_json::{Value, json};

use crate::{latentlab_json, pinned};

/// What `cargo xtask quality` was asked for.
pub struct QualityArgs {
    /// Seeds `first .. first + seeds` on each side.
    pub seeds: usize,
    pub first: u64,
    pub epochs: usize,
    /// Threads for latentlab's pool and for torch (the caller pins both
    /// through `crate::pinned`).
    pub threads: usize,
    pub peer: bool,
}

impl Default for QualityArgs {
    fn default() -> Self {
        Self {
            seeds: 12,
            first: 0,
            epochs: 20,
            threads: 2,
            peer: true,
        }
    }
}

/// Mean, standard error, Spearman's ρ against the seed and its p-value.
pub(crate) fn summary(seeds: &[u64], values: &[f64]) -> Value {
    let n = values.len();
    if n == 0 {
        return Value::Null;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let sd = if n > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        f64::NAN
    };
    let x: Vec<f64> = seeds.iter().map(|&s| s as f64).collect();
    let rho = audit::spearman(&x, values);
    json!({
        "n": n,
        "mean": mean,
        "sd": sd,
        "se": sd / (n as f64).sqrt(),
        "spearman_rho": rho,
        "spearman_p": permutation_p(&x, values, rho),
        "values": values,
    })
}

/// Two-sided permutation p-value of Spearman's ρ (20,000 seeded shuffles).
fn permutation_p(x: &[f64], y: &[f64], rho: f64) -> f64 {
    let mut g = SplitMix64::new(0, Purpose::Test, 0x0070_686f);
    let mut y = y.to_vec();
    let reps = 20_000;
    let mut hits = 0;
    for _ in 0..reps {
        g.shuffle(&mut y);
        if audit::spearman(x, &y).abs() >= rho.abs() - 1e-12 {
            hits += 1;
        }
    }
    (hits + 1) as f64 / (reps + 1) as f64
}

/// Runs the benchmark and returns its figures.
pub fn run(root: &Path, bin: &Path, work: &Path, a: &QualityArgs) -> Result<Value, String> {
    std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
    let seeds: Vec<u64> = (a.first..a.first + a.seeds as u64).collect();
    // One scratch checkpoint per process, so that two benchmark runs never
    // share it; removed at the end.
    let ck_path = work.join(format!("quality-{}.safetensors", std::process::id()));
    let ck = ck_path.to_string_lossy();
    let epochs = a.epochs.to_string();
    let mut ours = Vec::new();
    for &s in &seeds {
        let seed = s.to_string();
        let r = latentlab_json(
            bin,
            &[
                "train",
                "--data",
                "mnist-10k",
                "--epochs",
                &epochs,
                "--seed",
                &seed,
                "--device",
                "cpu",
                "--out",
                &ck,
                "--json",
            ],
        )?;
        let v = r["test"]["neg_elbo"]
            .as_f64()
            .ok_or("latentlab train --json printed no test.neg_elbo")?;
        eprintln!("xtask quality: latentlab seed {s}: {v:.2}");
        ours.push(v);
    }
    let mut resume = ck_path.clone().into_os_string();
    resume.push(".resume");
    for p in [ck_path.clone(), resume.into()] {
        let _ = std::fs::remove_file(p);
    }
    let (peer, peer_note) = if a.peer {
        torch(root, a, &seeds)
    } else {
        (None, "not asked for (--no-peer)".to_string())
    };
    let theirs: Vec<f64> = peer
        .as_ref()
        .map(|p: &Value| {
            p["values"]
                .as_array()
                .map(|v| v.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let l = summary(&seeds, &ours);
    let t = if theirs.len() == seeds.len() {
        summary(&seeds, &theirs)
    } else {
        Value::Null
    };
    let diff = match (l["mean"].as_f64(), t["mean"].as_f64()) {
        (Some(a), Some(b)) => {
            let se = (l["se"].as_f64().unwrap_or(f64::NAN).powi(2)
                + t["se"].as_f64().unwrap_or(f64::NAN).powi(2))
            .sqrt();
            json!({"latentlab_minus_torch": a - b, "se": se, "in_se": (a - b) / se})
        }
        _ => Value::Null,
    };
    Ok(json!({
        "seeds": [a.first, a.first + a.seeds as u64 - 1],
        "epochs": a.epochs,
        "threads": a.threads,
        "latentlab": l,
        "torch": t,
        "torch_version": peer.as_ref().map(|p| p["version"].clone()),
        "torch_note": peer_note,
        "difference": diff,
    }))
}

/// PyTorch's side: `(figures, why they are missing)`.
fn torch(root: &Path, a: &QualityArgs, seeds: &[u64]) -> (Option<Value>, String) {
    let mut cmd = Command::new("python3");
    pinned(&mut cmd)
        .arg(root.join("benches/peers/torch_elbo.py"))
        .arg(a.epochs.to_string())
        .args(seeds.iter().map(u64::to_string))
        .stderr(Stdio::piped());
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => return (None, format!("python3 could not be run: {e}")),
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("no output").to_string();
        return (None, format!("torch_elbo.py failed: {last}"));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut version = Value::Null;
    let mut values = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# torch ") {
            // "# torch VERSION threads N"
            let mut words = rest.split_whitespace();
            version = json!({
                "version": words.next(),
                "threads": words.nth(1).and_then(|n| n.parse::<u64>().ok()),
            });
        } else if let Some(Ok(v)) = line
            .split("test -ELBO ")
            .nth(1)
            .map(|v| v.trim().parse::<f64>())
        {
            eprintln!("xtask quality: torch {line}");
            values.push(v);
        }
    }
    if values.len() != seeds.len() {
        return (
            None,
            format!(
                "torch_elbo.py printed {} of {} runs",
                values.len(),
                seeds.len()
            ),
        );
    }
    (
        Some(json!({"version": version, "values": values})),
        String::new(),
    )
}

fn f2(v: &Value) -> String {
    v.as_f64().map_or_else(|| "—".into(), |x| format!("{x:.2}"))
}

/// The section of `docs/benchmarks.md`.
pub fn markdown(q: &Value, command: &str) -> String {
    let mut s = String::new();
    let seeds = &q["seeds"];
    let _ = writeln!(
        s,
        "## Quality over seeds: the reference run\n\n`{command}`: 784-512-256-20, {} epochs on mnist-10k, seeds {}–{} on each side, {} threads on each side; test −ELBO in nats (one z per test digit), lower is better. ρ is Spearman's rank correlation of the result with the seed number, with a permutation p-value.\n",
        q["epochs"], seeds[0], seeds[1], q["threads"]
    );
    let _ = writeln!(
        s,
        "| side | mean | sd | standard error | ρ vs seed | p |\n|---|---:|---:|---:|---:|---:|"
    );
    let tv = &q["torch_version"];
    let torch_name = match (tv["version"].as_str(), tv["threads"].as_u64()) {
        (Some(v), Some(t)) => format!("PyTorch {v} ({t} threads)"),
        (Some(v), None) => format!("PyTorch {v}"),
        _ => "PyTorch".to_string(),
    };
    for (name, side) in [
        ("latentlab (CPU)".to_string(), &q["latentlab"]),
        (torch_name, &q["torch"]),
    ] {
        if side.is_null() {
            let why = q["torch_note"].as_str().unwrap_or("");
            let _ = writeln!(s, "| {name} | — | — | — | — | — ({why}) |");
        } else {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} | {} |",
                f2(&side["mean"]),
                f2(&side["sd"]),
                f2(&side["se"]),
                f2(&side["spearman_rho"]),
                side["spearman_p"]
                    .as_f64()
                    .map_or_else(|| "—".into(), |p| format!("{p:.3}"))
            );
        }
    }
    let d = &q["difference"];
    if d.is_null() {
        let _ = writeln!(s, "\nDifference: — (no PyTorch figures).");
    } else {
        let _ = writeln!(
            s,
            "\nDifference latentlab − PyTorch: {} ± {} nats ({} standard errors).",
            f2(&d["latentlab_minus_torch"]),
            f2(&d["se"]),
            f2(&d["in_se"])
        );
    }
    for (name, side) in [("latentlab", &q["latentlab"]), ("PyTorch", &q["torch"])] {
        if let Some(v) = side["values"].as_array() {
            let list: Vec<String> = v.iter().map(f2).collect();
            let _ = writeln!(s, "\n- {name}, in seed order: {}.", list.join(", "));
        }
    }
    s
}
