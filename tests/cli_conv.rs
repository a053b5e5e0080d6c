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

/// `--data x.npy`: a user's colour images train a conv model, which encodes
/// them; what `latentlab decode` writes reads back as data; bad arrays are
/// clear errors.
#[test]
fn npy_images_train_and_decoded_arrays_read_back_as_data() {
    let dir = scratch("conv-npy");
    let x = dir.join("images.npy");
    // 40 RGB 8×8 images: a bright square whose corner moves.
    let (n, side) = (40usize, 8usize);
    let mut px = vec![0u8; n * 3 * side * side];
    for i in 0..n {
        let (oy, ox) = (i % 5, (i / 5) % 5);
        for c in 0..3 {
            for y in oy..oy + 3 {
                for xx in ox..ox + 3 {
                    px[((i * 3 + c) * side + y) * side + xx] = (80 + 60 * c) as u8;
                }
            }
        }
    }
    latentlab::data::npy::write_u8(&x, &[n, 3, side, side], &px).unwrap();
    let arch = dir.join("small.json");
    std::fs::write(
        &arch,
        r#"{"encoder": [{"layer": "conv2d", "out": 4, "kernel": 4, "stride": 2, "padding": 1},
                        {"layer": "batch_norm2d"}, {"layer": "activation", "kind": "relu"},
                        {"layer": "flatten"}],
            "decoder": [{"layer": "linear", "out": 64}, {"layer": "activation", "kind": "relu"},
                        {"layer": "unflatten", "channels": 4, "height": 4, "width": 4},
                        {"layer": "conv_transpose2d", "out": 3, "kernel": 4, "stride": 2, "padding": 1}]}"#,
    )
    .unwrap();
    let model = dir.join("m.safetensors");
    let (xs, archs, models) = (
        x.to_str().unwrap(),
        arch.to_str().unwrap(),
        model.to_str().unwrap(),
    );
    let run = latentlab(&[
        "train", "--data", xs, "--arch", archs, "--latent", "2", "--epochs", "2", "--batch", "12",
        "--device", "cpu", "--out", models, "--json",
    ]);
    assert!(
        run.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let z = dir.join("z.npy");
    latentlab::data::npy::write_f32(
        &z,
        &[5, 2],
        &[0.0, 0.5, -1.0, 1.0, 0.3, 0.2, 2.0, -2.0, 0.0, 0.0],
    )
    .unwrap();
    let decoded = dir.join("decoded.npy");
    let run = latentlab(&[
        "decode",
        "--checkpoint",
        models,
        "--latents",
        z.to_str().unwrap(),
        "--out",
        decoded.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(
        run.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let codes = dir.join("codes.safetensors");
    let run = latentlab(&[
        "encode",
        "--checkpoint",
        models,
        "--data",
        decoded.to_str().unwrap(),
        "--split",
        "all",
        "--device",
        "cpu",
        "--out",
        codes.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mu = tensors(&codes).into_iter().find(|t| t.0 == "mu").unwrap();
    assert_eq!(
        mu.1,
        vec![5, 2],
        "the five decoded images, read back as data"
    );
    let bad = dir.join("bad.npy");
    latentlab::data::npy::write_f32(&bad, &[2, 4], &[0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
        .unwrap();
    let grey = dir.join("grey.npy");
    latentlab::data::npy::write_u8(&grey, &[4, 1, 8, 8], &[0; 256]).unwrap();
    let missing = dir.join("missing.npy");
    assert_clean_errors(&[
        (
            vec!["train", "--data", bad.to_str().unwrap(), "--epochs", "1"],
            "element 1 is 2",
        ),
        (
            vec![
                "train",
                "--data",
                missing.to_str().unwrap(),
                "--epochs",
                "1",
            ],
            "missing.npy",
        ),
        (
            vec![
                "encode",
                "--checkpoint",
                models,
                "--data",
                grey.to_str().unwrap(),
                "--out",
                "x",
            ],
            "images have 64 values each but the checkpoint's model expects 192",
        ),
    ]);
    std::fs::remove_dir_all(dir).ok();
}
