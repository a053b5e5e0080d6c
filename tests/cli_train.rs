//! End-to-end tests of `latentlab train` and `latentlab encode`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

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

/// SIGKILL at random moments, then `--resume`: the final weights equal an
/// uninterrupted run's, bit for bit (CPU).
#[test]
fn killed_runs_resume_to_the_same_weights() {
    let dir = scratch("kill");
    let base = |out: &PathBuf| -> Vec<String> {
        let mut a: Vec<String> = [
            "train",
            "--data",
            "mnist-10k",
            "--epochs",
            "2",
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
    };
    let straight = dir.join("straight.safetensors");
    let out = Command::new(env!("CARGO_BIN_EXE_latentlab"))
        .args(base(&straight))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let killed = dir.join("killed.safetensors");
    let resume = dir.join("killed.safetensors.resume");
    let mut kills = 0;
    for attempt in 0..40 {
        let mut args = base(&killed);
        if resume.exists() {
            args.extend(["--resume".to_string(), resume.to_str().unwrap().to_string()]);
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_latentlab"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Pseudo-random delays between 80 and 400 ms.
        let delay = 80 + (attempt * 7919 % 320) as u64;
        std::thread::sleep(Duration::from_millis(delay));
        match child.try_wait().unwrap() {
            Some(status) => {
                let mut err = String::new();
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                assert!(status.success(), "{err}");
                break;
            }
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                // Whatever survived is a whole file.
                if resume.exists() {
                    let bytes = std::fs::read(&resume).unwrap();
                    safetensors::SafeTensors::deserialize(&bytes).expect("never a torn file");
                }
            }
        }
        assert!(attempt < 39, "the run never finished");
    }
    assert!(
        kills >= 1,
        "no kill happened; the test did not test anything"
    );
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
    ];
    common::assert_clean_errors(&cases);
    std::fs::remove_dir_all(dir).ok();
}
