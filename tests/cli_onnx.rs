//! Models from any framework through ONNX: every command that takes
//! `--checkpoint` takes `--encoder`/`--decoder`, runs the same code, and
//! rejects graphs and data that do not fit with a clear error. The fixture
//! is a PyTorch conv VAE with BatchNorm
//! (benches/peers/torch_onnx_fixture.py).

use std::path::Path;

use latentlab::data::npy;

mod common;
use common::{assert_clean_errors, latentlab, ok_json, scratch};

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../latentlab-onnx/tests/data/torch-onnx")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn read_f32(path: &str) -> (Vec<usize>, Vec<f32>) {
    let a = npy::read(path).unwrap();
    (
        a.shape().to_vec(),
        a.to_f64().iter().map(|&v| v as f32).collect(),
    )
}

/// Tensor `name` of a safetensors file, as f32.
fn tensor(path: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (t.shape().to_vec(), v)
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= tol * y.abs().max(1.0))
}

#[test]
fn encode_and_decode_give_pytorchs_numbers() {
    let dir = scratch("onnx-encode");
    let lat = dir.join("lat.safetensors");
    let enc = fixture("encoder.onnx");
    let j = ok_json(&latentlab(&[
        "encode",
        "--encoder",
        &enc,
        "--data",
        "mnist-10k",
        "--out",
        lat.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(
        (j["n"].as_u64(), j["latent"].as_u64()),
        (Some(2000), Some(8))
    );
    // The fixture's inputs are the first 8 test digits.
    let (shape, mu) = tensor(&lat, "mu");
    assert_eq!(shape, [2000, 8]);
    let (_, want) = read_f32(&fixture("mu.npy"));
    assert!(
        close(&mu[..64], &want, 1e-5),
        "{:?} vs {:?}",
        &mu[..8],
        &want[..8]
    );
    let (_, lv) = tensor(&lat, "logvar");
    assert!(close(&lv[..64], &read_f32(&fixture("logvar.npy")).1, 1e-5));

    // decode: means by default, the raw logits with --logits.
    let out = dir.join("x.npy");
    for (logits, sig) in [(true, false), (false, true)] {
        let mut args = vec![
            "decode",
            "--decoder",
            &fixture("decoder.onnx"),
            "--latents",
            &fixture("mu.npy"),
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.extend(["--out".into(), out.to_str().unwrap().into()]);
        if logits {
            args.push("--logits".into());
        }
        let o = latentlab(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (shape, x) = read_f32(out.to_str().unwrap());
        assert_eq!(shape, [8, 1, 28, 28]);
        let (_, l) = read_f32(&fixture("logits.npy"));
        let want: Vec<f32> = if sig {
            l.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect()
        } else {
            l
        };
        assert!(close(&x, &want, 1e-5), "logits {logits}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn analysis_commands_run_on_onnx_models_unchanged() {
    let dir = scratch("onnx-commands");
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let (enc, dec) = (fixture("encoder.onnx"), fixture("decoder.onnx"));
    let m = ["--encoder", enc.as_str(), "--decoder", dec.as_str()];
    // diagnose straight from the encoder gives the figures of its latents.
    let lat = p("lat.safetensors");
    ok_json(&latentlab(&[
        "encode",
        "--encoder",
        &enc,
        "--out",
        &lat,
        "--json",
    ]));
    let direct = ok_json(&latentlab(&[
        "diagnose",
        "--encoder",
        &enc,
        "--samples",
        "200",
        "--probes",
        "200",
        "--json",
    ]));
    let from_file = ok_json(&latentlab(&[
        "diagnose",
        "--latents",
        &lat,
        "--samples",
        "200",
        "--probes",
        "200",
        "--json",
    ]));
    // The same numbers (the file's are summed in streamed chunks, so the
    // Monte Carlo estimate may differ in the last bits).
    for key in ["mean_kl", "active_dims", "kl_per_dim", "diagnosis"] {
        assert_eq!(direct[key], from_file[key], "{key}");
    }
    let (a, b) = (
        direct["aggregate_kl"].as_f64(),
        from_file["aggregate_kl"].as_f64(),
    );
    assert!(
        (a.unwrap() - b.unwrap()).abs() < 1e-12 * b.unwrap().abs(),
        "{a:?} {b:?}"
    );
    let d = ok_json(&latentlab(&[
        "disentanglement",
        "--encoder",
        &enc,
        "--data",
        "mnist-10k",
        "--num-train",
        "400",
        "--num-eval",
        "200",
        "--json",
    ]));
    assert!(d["mig"].as_f64().is_some_and(f64::is_finite), "{d}");
    let with = |args: &[&str]| -> serde_json::Value {
        let mut v: Vec<&str> = args.to_vec();
        v.extend(m);
        v.push("--json");
        ok_json(&latentlab(&v))
    };
    let t = with(&["traverse", "--dims", "0,1", "--out", &p("t.png")]);
    assert_eq!(t["dims"], serde_json::json!([0, 1]));
    with(&["sample", "--n", "8", "--out", &p("s.png")]);
    with(&[
        "attribute",
        "--from-class",
        "1",
        "--to-class",
        "7",
        "--out",
        &p("a.png"),
    ]);
    with(&[
        "analogy",
        "--a",
        "1",
        "--b",
        "7",
        "--c",
        "0",
        "--out",
        &p("an.png"),
    ]);
    with(&["walk", "--steps", "5", "--out", &p("w.png")]);
    let i = with(&["interpolate", "--image", &p("i.png"), "--steps", "6"]);
    assert!(i["geodesic_energy"].as_f64().unwrap() <= i["linear_energy"].as_f64().unwrap() + 1e-9);
    for f in ["t.png", "s.png", "a.png", "an.png", "w.png", "i.png"] {
        let b = std::fs::read(dir.join(f)).unwrap();
        assert!(b.starts_with(b"\x89PNG"), "{f}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn graphs_and_data_that_do_not_fit_are_clear_errors() {
    let dir = scratch("onnx-errors");
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let (enc, dec) = (fixture("encoder.onnx"), fixture("decoder.onnx"));
    let cut = p("cut.onnx");
    let bytes = std::fs::read(&enc).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let nan = p("nan.npy");
    let mut px = vec![0.5f32; 4 * 784];
    px[784 + 3] = f32::NAN;
    npy::write_f32(&nan, &[4, 28, 28], &px).unwrap();
    // 784 values per image, as the encoder takes, but 14 × 56.
    let wide = p("wide.npy");
    npy::write_f32(&wide, &[4, 1, 14, 56], &vec![0.5f32; 4 * 784]).unwrap();
    let (out, png, rep) = (p("lat.safetensors"), p("x.png"), p("r"));
    let (unsup, d4, b1) = (
        fixture("unsupported.onnx"),
        fixture("decoder_d4.onnx"),
        fixture("mu.npy"),
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "encode",
                "--encoder",
                &enc,
                "--data",
                "dsprites:100",
                "--out",
                &out,
            ],
            "the encoder expects 1×28×28 inputs, --data gives 1×64×64",
        ),
        (
            vec![
                "encode",
                "--encoder",
                &enc,
                "--data",
                "color-dsprites:100",
                "--out",
                &out,
            ],
            "--data gives 3×64×64",
        ),
        (
            vec!["encode", "--encoder", &enc, "--data", &wide, "--out", &out],
            "--data gives 1×14×56",
        ),
        (
            vec!["encode", "--encoder", &dec, "--out", &out],
            "this graph has 1",
        ),
        (vec!["encode", "--encoder", &unsup, "--out", &out], "Col2Im"),
        (
            vec!["encode", "--encoder", &b1, "--out", &out],
            "mu.npy: not a readable ONNX model",
        ),
        (vec!["encode", "--encoder", &cut, "--out", &out], "cut.onnx"),
        (
            vec!["encode", "--encoder", &enc, "--data", &nan, "--out", &out],
            "NaN",
        ),
        (
            vec![
                "traverse",
                "--encoder",
                &enc,
                "--decoder",
                &d4,
                "--out",
                &png,
            ],
            "takes 4 latents, encoder",
        ),
        (
            vec!["traverse", "--encoder", &enc, "--out", &png],
            "--decoder D.onnx is needed",
        ),
        (
            vec!["sample", "--encoder", &enc, "--out", &png],
            "--decoder",
        ),
        (
            vec!["encode", "--decoder", &dec, "--out", &out],
            "--encoder",
        ),
        (
            vec![
                "traverse",
                "--decoder",
                &dec,
                "--decoder-output",
                "probs",
                "--out",
                &png,
            ],
            "unknown decoder output `probs`",
        ),
        (
            vec![
                "encode",
                "--encoder",
                &enc,
                "--decoder-output",
                "mean",
                "--out",
                &out,
            ],
            "give --decoder",
        ),
        (
            vec![
                "decode",
                "--decoder",
                &dec,
                "--decoder-output",
                "mean",
                "--latents",
                &b1,
                "--logits",
            ],
            "not logits",
        ),
        (
            vec![
                "encode",
                "--checkpoint",
                &enc,
                "--encoder",
                &enc,
                "--out",
                &out,
            ],
            "cannot be used with",
        ),
        (
            vec!["sample", "--decoder", &dec, "--out", &png, "--n", "0"],
            "--n",
        ),
        (
            vec!["report", "--encoder", &enc, "--out", &rep],
            "--decoder",
        ),
    ];
    assert_clean_errors(&cases);
    std::fs::remove_dir_all(dir).ok();
}
