//! End-to-end tests of `latentlab train` and `latentlab encode`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

mod common;
use common::{latentlab, ok_json, scratch};

const SMALL: &[&str] = &[
    "--hidden", "48", "--latent", "4", "--batch", "100", "--device", "cpu",
];

#[test]
fn train_json_then_encode() {
    let dir = scratch("json");
    let ck = dir.join("m.safetensors");
    let mut args = vec![
        "train",
        "--data",
        "dsprites:600",
        "--epochs",
        "2",
        "--json",
        "--out",
    ];
    args.push(ck.to_str().unwrap());
    args.extend(SMALL);
    let v = ok_json(&latentlab(&args));
    for key in ["samples_per_s", "epochs", "active_units", "device"] {
        assert!(!v[key].is_null(), "{key} missing: {v}");
    }
    assert_eq!(v["epochs"], 2);
    for part in ["train", "test"] {
        let f = &v[part];
        let (rec, kl, ne) = (
            f["rec"].as_f64().unwrap(),
            f["kl"].as_f64().unwrap(),
            f["neg_elbo"].as_f64().unwrap(),
        );
        assert!((rec + kl - ne).abs() < 1e-6 * ne.abs(), "{part}: {f}");
    }
    assert!(v["samples_per_s"].as_f64().unwrap() > 0.0);
    // The two splits partition the 600 images.
    let test_n = v["history"][1]["test"]["n"].as_u64().unwrap();
    assert_eq!(v["train_images"].as_u64().unwrap() + test_n, 600, "{v}");
    assert!(ck.exists());
    assert!(dir.join("m.safetensors.resume").exists());

    let lat = dir.join("lat.safetensors");
    let e = ok_json(&latentlab(&[
        "encode",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--data",
        "dsprites:600",
        "--out",
        lat.to_str().unwrap(),
        "--json",
        "--device",
        "cpu",
    ]));
    assert_eq!(e["n"], 60);
    let bytes = std::fs::read(&lat).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("mu").unwrap().shape(), &[60, 4]);
    assert_eq!(st.tensor("logvar").unwrap().shape(), &[60, 4]);
    assert_eq!(st.tensor("labels").unwrap().shape(), &[60]);
    std::fs::remove_dir_all(dir).ok();
}

fn tensors(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<(String, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.data().to_vec()))
        .collect();
    v.sort();
    v
}

/// The reference arguments of the resume tests: 2 epochs of 80 steps,
/// a training state every 7 steps.
fn resume_args(out: &std::path::Path, epochs: &str) -> Vec<String> {
    let mut a: Vec<String> = [
        "train",
        "--data",
        "mnist-10k",
        "--epochs",
        epochs,
        "--save-every",
        "7",
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(out.to_str().unwrap().into());
    a.extend(
        [
            "--hidden", "64", "--latent", "4", "--batch", "100", "--device", "cpu",
        ]
        .map(String::from),
    );
    a
}

/// The step a training-state file says the run reached.
fn saved_step(resume: &std::path::Path) -> u64 {
    let bytes = std::fs::read(resume).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("never a torn file");
    let progress = &meta.metadata().as_ref().unwrap()["latentlab.train"];
    serde_json::from_str::<serde_json::Value>(progress).unwrap()["step"]
        .as_u64()
        .unwrap()
}

/// Runs `latentlab ARGS` to its end and asserts that it succeeded.
fn run_to_end(args: &[String]) {
    let out = Command::new(env!("CARGO_BIN_EXE_latentlab"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `resume_args` with `--resume` of `out`'s training state.
fn resumed_args(out: &std::path::Path, epochs: &str) -> Vec<String> {
    let mut a = resume_args(out, epochs);
    let resume = latentlab::model::state_path(out);
    a.extend([
        "--resume".to_string(),
        resume.to_string_lossy().into_owned(),
    ]);
    a
}

fn straight_run(dir: &std::path::Path, epochs: &str) -> PathBuf {
    let straight = dir.join("straight.safetensors");
    run_to_end(&resume_args(&straight, epochs));
    straight
}

/// Crashes injected at fixed points (`LATENTLAB_FAULT`: the process aborts
/// there, as kill -9 would end it), each followed by `--resume`: every
/// crash leaves the training state it must, and the final weights equal an
/// uninterrupted run's, bit for bit (CPU). Nothing here depends on timing.
#[test]
fn crashes_at_fixed_points_resume_to_the_same_weights() {
    let dir = scratch("fault");
    let straight = straight_run(&dir, "2");
    let killed = dir.join("killed.safetensors");
    let resume = dir.join("killed.safetensors.resume");
    // (fault, the step the saved state must hold afterwards; None: no state yet)
    let plan: [(&str, Option<u64>); 6] = [
        ("step:5", None),                // before the first save: start again
        ("step:14", Some(7)),            // on a save step, before its save
        ("step:15", Some(14)),           // just after one
        ("between-writes:1", Some(77)),  // weights of epoch 1 written, state not
        ("step:100", Some(98)),          // inside epoch 2
        ("between-writes:2", Some(154)), // the last weights written, state not
    ];
    for (fault, want) in plan {
        let args = if resume.exists() {
            resumed_args(&killed, "2")
        } else {
            resume_args(&killed, "2")
        };
        let out = Command::new(env!("CARGO_BIN_EXE_latentlab"))
            .args(&args)
            .env("LATENTLAB_FAULT", fault)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("fault injected"),
            "{fault}: the run was not crashed: {err}"
        );
        match want {
            None => assert!(!resume.exists(), "{fault}: a state was saved"),
            Some(step) => assert_eq!(saved_step(&resume), step, "{fault}"),
        }
    }
    run_to_end(&resumed_args(&killed, "2"));
    assert_eq!(saved_step(&resume), 160);
    assert_eq!(tensors(&killed), tensors(&straight));
    // A fault point that means nothing is a clear error.
    let out = Command::new(env!("CARGO_BIN_EXE_latentlab"))
        .args(resume_args(&dir.join("x.safetensors"), "1"))
        .env("LATENTLAB_FAULT", "soon")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("LATENTLAB_FAULT: fault point `soon`"));
    std::fs::remove_dir_all(dir).ok();
}

/// Real SIGKILLs, sent when the run reports an epoch's end (read from its
/// progress lines, not after a sleep), each followed by `--resume`. Counts
/// the runs the kill really interrupted and asserts them: a kill that came
/// after the run finished would not have tested anything.
#[test]
fn killed_runs_resume_to_the_same_weights() {
    use std::io::{BufRead, BufReader};
    let dir = scratch("kill");
    let straight = straight_run(&dir, "3");
    let killed = dir.join("killed.safetensors");
    let resume = dir.join("killed.safetensors.resume");
    let mut interrupted = 0;
    for epoch in 1..=2 {
        let args = if resume.exists() {
            resumed_args(&killed, "3")
        } else {
            resume_args(&killed, "3")
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_latentlab"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let marker = format!("epoch {epoch:>3}/3:");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        assert!(
            lines.any(|l| l.is_ok_and(|l| l.contains(&marker))),
            "no progress line {marker}"
        );
        // One more epoch is still to run: the kill lands inside it.
        if child.try_wait().unwrap().is_none() {
            interrupted += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Whatever survived is a whole file, at or past that epoch's end.
        assert!(saved_step(&resume) >= 80 * epoch as u64);
    }
    assert_eq!(interrupted, 2, "each kill interrupted a running training");
    run_to_end(&resumed_args(&killed, "3"));
    assert_eq!(tensors(&killed), tensors(&straight));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_flags_and_files_are_clear_errors() {
    let dir = scratch("bad");
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"not a checkpoint at all").unwrap();
    let j = junk.to_str().unwrap();
    let d = dir.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["train", "--epochs", "0"], "epochs"),
        (vec!["train", "--batch", "0"], "batch"),
        (vec!["train", "--batch", "-5"], "--batch"),
        (vec!["train", "--lr", "nan"], "lr"),
        (vec!["train", "--latent", "0"], "latent"),
        (vec!["train", "--hidden", "512,0"], "--hidden"),
        (vec!["train", "--beta", "-1"], "beta"),
        (vec!["train", "--kl-schedule", "cosine"], "kl-schedule"),
        (vec!["train", "--free-bits", "-2"], "free_bits"),
        (vec!["train", "--capacity", "x"], "--capacity"),
        (vec!["train", "--likelihood", "poisson"], "poisson"),
        (vec!["train", "--model", "gan"], "gan"),
        (
            vec!["train", "--data", "/nonexistent/folder"],
            "/nonexistent/folder",
        ),
        (vec!["train", "--data", "dsprites:1"], "dsprites:1"),
        (vec!["train", "--data", d], "training-image"),
        (vec!["train", "--resume", j], "junk.safetensors"),
        (vec!["train", "--out", d], "directory"),
        (vec!["train", "--device", "tpu"], "tpu"),
        (vec!["encode", "--checkpoint", j], "junk.safetensors"),
        (
            vec!["encode", "--checkpoint", "/nonexistent.safetensors"],
            "/nonexistent.safetensors",
        ),
        (vec!["encode", "--checkpoint", d], "directory"),
        // The objectives: out-of-range weights, flags of another family,
        // families that do not fit the model or the run.
        (
            vec!["train", "--objective", "vq-vae"],
            "unknown objective `vq-vae`",
        ),
        (
            vec!["train", "--objective", "beta-tcvae", "--tc-beta", "-1"],
            "--tc-beta",
        ),
        (
            vec![
                "train",
                "--objective",
                "beta-tcvae",
                "--tc-estimator",
                "exact",
            ],
            "unknown estimator `exact`",
        ),
        (
            vec!["train", "--objective", "beta-tcvae", "--beta", "4"],
            "do not apply",
        ),
        (
            vec![
                "train",
                "--objective",
                "dip-vae-i",
                "--dip-lambda-od",
                "nan",
            ],
            "--dip-lambda-od",
        ),
        (
            vec!["train", "--objective", "mmd", "--mmd-scale", "0"],
            "bandwidth",
        ),
        (
            vec!["train", "--objective", "mmd", "--mmd-kernel", "laplace"],
            "unknown kernel `laplace`",
        ),
        (
            vec!["train", "--objective", "elbo", "--tc-beta", "6"],
            "apply to --objective beta-tcvae",
        ),
        (
            vec!["train", "--objective", "dip-vae-ii", "--mmd-lambda", "6"],
            "apply to --objective mmd",
        ),
        (vec!["train", "--objective", "annealed-vae"], "--capacity"),
        (
            vec!["train", "--objective", "iwae", "--iwae-k", "0"],
            "0 importance samples per image",
        ),
        (
            vec!["train", "--objective", "iwae", "--free-bits", "0.5"],
            "no separate KL term",
        ),
        (
            vec!["train", "--objective", "elbo", "--iwae-k", "5"],
            "apply to --objective iwae",
        ),
        (
            vec![
                "train",
                "--objective",
                "iwae",
                "--model",
                "ae",
                "--epochs",
                "1",
            ],
            "autoencoder has no posterior",
        ),
        (
            vec![
                "train",
                "--objective",
                "dip-vae-i",
                "--model",
                "ae",
                "--epochs",
                "1",
            ],
            "autoencoder has no posterior",
        ),
        (
            vec!["train", "--objective", "factor-vae", "--factor-gamma", "-2"],
            "--factor-gamma",
        ),
        (
            vec![
                "train",
                "--objective",
                "factor-vae",
                "--factor-disc-lr",
                "0",
            ],
            "learning rate 0",
        ),
        (
            vec![
                "train",
                "--objective",
                "factor-vae",
                "--factor-disc-depth",
                "0",
            ],
            "0 hidden layers",
        ),
        (
            vec!["train", "--objective", "beta-tcvae", "--factor-gamma", "10"],
            "apply to --objective factor-vae",
        ),
        (
            vec![
                "train",
                "--objective",
                "factor-vae",
                "--model",
                "ae",
                "--epochs",
                "1",
            ],
            "autoencoder has no posterior",
        ),
    ];
    common::assert_clean_errors(&cases);
    std::fs::remove_dir_all(dir).ok();
}
