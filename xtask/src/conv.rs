//! The conv64 benchmark: DESIGN.md's convolutional VAE as a β-VAE (β = 4,
//! batch 64, Adam 1e-4) on procedural dSprites, latentlab against PyTorch
//! (`benches/peers/torch_conv.py`) in one run, on the same images (written
//! here with latentlab's own generator) and the same thread count:
//!
//! - speed: interleaved rounds on each side, images/s over one training
//!   epoch after a warm-up (latentlab's second epoch of two; PyTorch's epoch
//!   after 5 steps), so neither side's first-step allocations count;
//! - quality: K seeds per side, the same number of steps, the mean final test
//!   −ELBO with its standard error; the criterion is a mean within two
//!   standard errors of PyTorch's, or within 1 % of it, whichever is wider.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use latentlab_data::dsprites;
use serde_json::{Value, json};

use crate::quality::summary;
use crate::{latentlab_json, pinned};

/// What `cargo xtask conv` was asked for.
pub struct ConvArgs {
    /// dSprites images in all (a tenth held out), as `--data dsprites:N`.
    pub images: usize,
    /// Seeds `0..seeds` for quality (0: speed only).
    pub seeds: usize,
    pub epochs: usize,
    /// Interleaved speed rounds.
    pub rounds: usize,
    pub threads: usize,
}

impl Default for ConvArgs {
    fn default() -> Self {
        Self {
            images: 7040,
            seeds: 3,
            epochs: 5,
            rounds: 3,
            threads: 2,
        }
    }
}

/// Writes the split `latentlab train --data dsprites:N --seed S` trains on
/// (`load_data` in the CLI: a tenth, at least one image, held out) as u8
/// `.npy` files the peer reads.
fn write_split(dir: &Path, images: usize, seed: u64) -> Result<(), String> {
    let test = (images / 10).max(1);
    let s = dsprites::split(images - test, test, seed);
    for (part, d) in [("train", &s.train), ("test", &s.test)] {
        let bytes: Vec<u8> = d.images.iter().map(|&v| v.round() as u8).collect();
        latentlab_data::npy::write_u8(
            dir.join(format!("{part}-{seed}.npy")),
            &[d.len(), d.dim()],
            &bytes,
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn train_args<'a>(data: &'a str, epochs: &'a str, seed: &'a str, out: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "train", "--data", data, "--arch", "conv64", "--latent", "10",
    ];
    args.extend([
        "--beta", "4", "--batch", "64", "--lr", "1e-4", "--epochs", epochs,
    ]);
    args.extend([
        "--seed",
        seed,
        "--device",
        "cpu",
        "--out",
        out,
        "--save-every",
        "0",
    ]);
    args.push("--json");
    args
}

/// Runs the peer; its stdout, or why it did not run.
fn peer(root: &Path, args: &[String]) -> Result<String, String> {
    let mut cmd = Command::new("python3");
    pinned(&mut cmd)
        .arg(root.join("benches/peers/torch_conv.py"))
        .args(args)
        .stderr(Stdio::piped());
    let out = cmd
        .output()
        .map_err(|e| format!("python3 could not be run: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "torch_conv.py failed: {}",
            err.lines().last().unwrap_or("no output")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Images/s over the last epoch of a `latentlab train --json` report: its
/// training images over that epoch's training seconds.
fn second_epoch_speed(report: &Value) -> Option<f64> {
    let images = report["train_images"].as_f64()?;
    let seconds = report["history"].as_array()?.last()?["seconds"].as_f64()?;
    (seconds > 0.0).then(|| images / seconds)
}

/// Runs the benchmark and returns its figures.
pub fn run(root: &Path, bin: &Path, work: &Path, a: &ConvArgs) -> Result<Value, String> {
    std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
    let seeds: Vec<u64> = (0..a.seeds.max(1) as u64).collect();
    for &s in &seeds {
        write_split(work, a.images, s)?;
    }
    let data = format!("dsprites:{}", a.images);
    let ck_path = work.join(format!("conv-{}.safetensors", std::process::id()));
    let ck = ck_path.to_string_lossy().into_owned();
    let work_s = work.to_string_lossy().into_owned();

    // Speed: interleaved rounds, medians count.
    let mut rounds = Vec::new();
    let mut torch_note = None;
    let mut torch_version = None;
    for _ in 0..a.rounds {
        let ours = second_epoch_speed(&latentlab_json(bin, &train_args(&data, "2", "0", &ck))?);
        let theirs = match peer(root, &["speed".into(), work_s.clone(), "0".into()]) {
            Ok(out) => out.lines().find_map(|l| {
                let after = l.split(": ").nth(1)?;
                torch_version = l
                    .split_whitespace()
                    .nth(1)
                    .map(|v| v.trim_end_matches(':').to_string());
                after.split(' ').next()?.parse::<f64>().ok()
            }),
            Err(why) => {
                torch_note = Some(why);
                None
            }
        };
        eprintln!("xtask conv: speed round: latentlab {ours:?}, torch {theirs:?} images/s");
        rounds.push(json!({"latentlab": ours, "torch": theirs}));
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
        "ratio": median("latentlab").zip(median("torch")).map(|(l, t)| l / t),
    });

    // Quality: the same steps on each side, K seeds.
    let quality = if a.seeds == 0 {
        Value::Null
    } else {
        let epochs = a.epochs.to_string();
        let mut ours = Vec::new();
        for &s in &seeds {
            let seed = s.to_string();
            let r = latentlab_json(bin, &train_args(&data, &epochs, &seed, &ck))?;
            let v = r["test"]["neg_elbo"]
                .as_f64()
                .ok_or("latentlab train --json printed no test.neg_elbo")?;
            eprintln!("xtask conv: latentlab seed {s}: {v:.2}");
            ours.push(v);
        }
        let mut args = vec!["quality".to_string(), work_s.clone(), epochs];
        args.extend(seeds.iter().map(u64::to_string));
        let theirs: Vec<f64> = match peer(root, &args) {
            Ok(out) => out
                .lines()
                .filter_map(|l| l.split("test -ELBO ").nth(1)?.trim().parse().ok())
                .collect(),
            Err(why) => {
                torch_note = Some(why);
                Vec::new()
            }
        };
        eprintln!("xtask conv: torch {theirs:?}");
        let l = summary(&seeds, &ours);
        let t = if theirs.len() == seeds.len() {
            summary(&seeds, &theirs)
        } else {
            Value::Null
        };
        let verdict = match (l["mean"].as_f64(), t["mean"].as_f64(), t["se"].as_f64()) {
            (Some(a), Some(b), Some(se)) => {
                let bound = (2.0 * se).max(0.01 * b.abs());
                json!({"difference": a - b, "bound": bound, "within": (a - b).abs() <= bound})
            }
            _ => Value::Null,
        };
        json!({"epochs": a.epochs, "latentlab": l, "torch": t, "criterion": verdict})
    };
    let mut resume = ck_path.clone().into_os_string();
    resume.push(".resume");
    for p in [ck_path, resume.into()] {
        let _ = std::fs::remove_file(p);
    }
    Ok(json!({
        "images": a.images,
        "steps_per_epoch": (a.images - (a.images / 10).max(1)).div_ceil(64),
        "threads": a.threads,
        "torch_version": torch_version,
        "torch_note": torch_note,
        "speed": speed,
        "quality": quality,
    }))
}

fn f(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "—".into(), |x| format!("{x:.digits$}"))
}

/// The section of `docs/benchmarks.md`.
pub fn markdown(c: &Value, command: &str) -> String {
    let mut s = String::new();
    let torch = c["torch_version"]
        .as_str()
        .map_or("PyTorch".to_string(), |v| format!("PyTorch {v}"));
    let _ = writeln!(
        s,
        "## conv64 on dSprites: training speed and quality against PyTorch\n\n`{command}`: DESIGN.md's conv64 module (one channel, latent 10) as a β-VAE (β = 4, batch 64, Adam 1e-4) on {} procedural dSprites images (a tenth held out; the peer reads the same images), {} threads on each side, on the CPU.\n",
        c["images"], c["threads"]
    );
    if let Some(why) = c["torch_note"].as_str() {
        let _ = writeln!(s, "The peer did not run: {why}.\n");
    }
    let _ = writeln!(
        s,
        "Speed, interleaved rounds, images/s over one epoch after a warm-up (latentlab: the second of two epochs; PyTorch: an epoch after 5 steps):\n\n| round | latentlab | {torch} | ratio |\n|---:|---:|---:|---:|"
    );
    if let Some(rounds) = c["speed"]["rounds"].as_array() {
        for (i, r) in rounds.iter().enumerate() {
            let ratio = r["latentlab"]
                .as_f64()
                .zip(r["torch"].as_f64())
                .map(|(l, t)| json!(l / t));
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                i + 1,
                f(&r["latentlab"], 0),
                f(&r["torch"], 0),
                f(&ratio.unwrap_or(Value::Null), 2)
            );
        }
    }
    let sp = &c["speed"];
    let _ = writeln!(
        s,
        "| median | {} | {} | **{}×** |\n",
        f(&sp["latentlab_median"], 0),
        f(&sp["torch_median"], 0),
        f(&sp["ratio"], 2)
    );
    let q = &c["quality"];
    if !q.is_null() {
        let _ = writeln!(
            s,
            "Quality: {} epochs ({} steps) per run; final test −ELBO in nats (reconstruction + KL, one z per image), lower is better.\n\n| side | mean | sd | standard error | runs |\n|---|---:|---:|---:|---|",
            q["epochs"],
            q["epochs"].as_u64().unwrap_or(0) * c["steps_per_epoch"].as_u64().unwrap_or(0)
        );
        for (name, side) in [
            ("latentlab", &q["latentlab"]),
            (torch.as_str(), &q["torch"]),
        ] {
            let runs: Vec<String> = side["values"]
                .as_array()
                .map(|v| v.iter().map(|x| f(x, 2)).collect())
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} |",
                f(&side["mean"], 2),
                f(&side["sd"], 2),
                f(&side["se"], 2),
                runs.join(", ")
            );
        }
        let v = &q["criterion"];
        if !v.is_null() {
            let _ = writeln!(
                s,
                "\nlatentlab − PyTorch: {} nats; the bound (2 standard errors of PyTorch's mean, or 1 % of it, the wider) is {}: {}.",
                f(&v["difference"], 2),
                f(&v["bound"], 2),
                if v["within"].as_bool() == Some(true) {
                    "within"
                } else {
                    "outside"
                }
            );
        }
    }
    s
}
