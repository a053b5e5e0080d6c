//! Convolutional models through the binary: `--arch conv64` on colour
//! dSprites trains, resumes after a crash to the same weights, encodes,
//! decodes (`latentlab decode`) and draws colour pictures; architectures that
//! do not fit the data, or do not chain, are clear errors.

use std::process::Command;

mod common;
use common::{assert_clean_errors, latentlab, scratch};

const CONV: &[&str] = &[
    "--data",
    "color-dsprites:120",
    "--arch",
    "conv64",
    "--latent",
    "3",
    "--batch",
    "36",
    "--device",
    "cpu",
    "--save-every",
    "1",
];

fn train(out: &std::path::Path, extra: &[&str], fault: Option<&str>) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_latentlab"));
    c.arg("train").args(CONV).arg("--out").arg(out).args(extra);
    if let Some(f) = fault {
        c.env("LATENTLAB_FAULT", f);
    }
    c.output().expect("the binary runs")
}

fn tensors(path: &std::path::Path) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.shape().to_vec(), t.data().to_vec()))
        .collect();
    out.sort();
    out
}

#[test]
fn conv64_on_colour_images_trains_resumes_decodes_and_draws() {
    let dir = scratch("conv64");
    let straight = dir.join("straight.safetensors");
    let out = train(&straight, &["--epochs", "2"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Killed after step 4 of 6, then resumed: the same weights.
    let crashed = dir.join("crashed.safetensors");
    let out = train(&crashed, &["--epochs", "2"], Some("step:4"));
    assert!(!out.status.success(), "the fault point aborts the run");
    let mut resume = dir.join("crashed.safetensors").into_os_string();
    resume.push(".resume");
    let out = Command::new(env!("CARGO_BIN_EXE_latentlab"))
        .args([
            "train",
            "--data",
            "color-dsprites:120",
            "--device",
            "cpu",
            "--resume",
        ])
        .arg(&resume)
        .arg("--out")
        .arg(&crashed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The weights, not the file bytes: safetensors writes its metadata map
    // in no fixed order.
    assert_eq!(
        tensors(&straight),
        tensors(&crashed),
        "a resumed conv run ends on the same weights"
    );

    // Decode codes made elsewhere: N×3×64×64 probabilities, or logits.
    let z = dir.join("z.npy");
    let codes: Vec<f32> = (0..15).map(|i| (i as f32 - 7.0) / 4.0).collect();
    latentlab::data::npy::write_f32(&z, &[5, 3], &codes).unwrap();
    let ck = straight.to_str().unwrap();
    for (flag, probs) in [(None, true), (Some("--logits"), false)] {
        let x = dir.join("x.npy");
        let mut args = vec![
            "decode",
            "--checkpoint",
            ck,
            "--latents",
            z.to_str().unwrap(),
            "--out",
            x.to_str().unwrap(),
            "--device",
            "cpu",
        ];
        args.extend(flag);
        let out = latentlab(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let a = latentlab::data::npy::read(&x).unwrap();
        assert_eq!(a.shape(), [5, 3, 64, 64]);
        let v = a.to_f64();
        let inside = v.iter().all(|p| (0.0..=1.0).contains(p));
        assert_eq!(
            inside, probs,
            "probabilities lie in [0, 1], logits need not"
        );
    }

    // Pictures are in colour (PNG colour type 2).
    let png = dir.join("s.png");
    let out = latentlab(&[
        "sample",
        "--checkpoint",
        ck,
        "--out",
        png.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&png).unwrap()[25], 2, "an RGB picture");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn architectures_that_do_not_fit_are_clear_errors() {
    let dir = scratch("conv-bad");
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"encoder": [{"layer": "conv2d", "out": 8, "kernel": 3}], "decoder": []}"#,
    )
    .unwrap();
    let typo = dir.join("typo.json");
    std::fs::write(
        &typo,
        r#"{"encoder": [{"layer": "conv3d", "out": 8}], "decoder": []}"#,
    )
    .unwrap();
    let z = dir.join("z.npy");
    latentlab::data::npy::write_f32(&z, &[2, 7], &[0.0; 14]).unwrap();
    let (bad, typo) = (bad.to_str().unwrap(), typo.to_str().unwrap());
    assert_clean_errors(&[
        (
            vec![
                "train",
                "--data",
                "mnist-10k",
                "--arch",
                "conv64",
                "--epochs",
                "1",
            ],
            "the decoder gives 1×64×64 images, but the model's input is 1×28×28 images",
        ),
        (
            vec!["train", "--arch", bad, "--epochs", "1"],
            "fc_mu (linear) on 8×26×26 images: needs flat features",
        ),
        (vec!["train", "--arch", typo], "not a layer specification"),
        (vec!["train", "--arch", "conv65"], "neither mlp"),
        (vec!["train", "--arch", "mlp:12,x"], "not a layer width"),
    ]);
    std::fs::remove_dir_all(dir).ok();
}

/// A PyTorch state_dict with batch normalisation, under another naming
/// scheme, read by the commands through `--checkpoint-arch` and `--rename`.
#[test]
fn pytorch_files_load_with_their_stacks_and_renamed_tensors() {
    let dir = scratch("conv-torch-bn");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../latentlab-model/tests/data/torch-bn");
    let bytes = std::fs::read(fixture.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let renamed: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (format!("module.{n}"), t))
        .collect();
    let model = dir.join("ddp.safetensors");
    std::fs::write(&model, safetensors::serialize(renamed, None).unwrap()).unwrap();
    let arch = fixture.join("arch.json");
    let (model, arch) = (model.to_str().unwrap(), arch.to_str().unwrap());
    let out = dir.join("codes.safetensors");
    let run = latentlab(&[
        "encode",
        "--checkpoint",
        model,
        "--rename",
        "module.=",
        "--checkpoint-arch",
        arch,
        "--data",
        "mnist-10k",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        run.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let codes = tensors(&out);
    let mu = codes.iter().find(|t| t.0 == "mu").expect("mu");
    assert_eq!(mu.1, vec![2000, 4], "the test split's codes, latent 4");
    assert_clean_errors(&[
        (
            vec![
                "encode",
                "--checkpoint",
                model,
                "--checkpoint-arch",
                arch,
                "--data",
                "mnist-10k",
                "--out",
                "x",
            ],
            "fc_mu.weight",
        ),
        (
            vec![
                "encode",
                "--checkpoint",
                model,
                "--rename",
                "module.=",
                "--data",
                "mnist-10k",
                "--out",
                "x",
            ],
            "--checkpoint-arch",
        ),
        (
            vec![
                "encode",
                "--checkpoint",
                model,
                "--rename",
                "nothing",
                "--data",
                "mnist-10k",
                "--out",
                "x",
            ],
            "FROM=TO",
        ),
        (
            vec![
                "encode",
                "--checkpoint",
                model,
                "--rename",
                "modul.=",
                "--data",
                "mnist-10k",
                "--out",
                "x",
            ],
            "no tensor name starts with modul.",
        ),
        (
            vec![
                "encode",
                "--checkpoint",
                model,
                "--checkpoint-arch",
                "conv64",
                "--data",
                "mnist-10k",
                "--out",
                "x",
            ],
            "expected a JSON file of stacks",
        ),
    ]);
    std::fs::remove_dir_all(dir).ok();
}
