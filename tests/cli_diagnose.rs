//! End-to-end tests of `latentlab diagnose` and `latentlab disentanglement`.

use std::collections::HashMap;
use std::path::Path;

use latentlab::data::npy;
use serde_json::Value;

mod common;
use common::{assert_clean_errors, latentlab, ok_json, scratch};

fn reference() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/reference/seed_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn flat(v: &Value) -> (Vec<usize>, Vec<f64>) {
    let rows = v.as_array().unwrap();
    let d = rows[0].as_array().unwrap().len();
    let data: Vec<f64> = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
        .collect();
    (vec![rows.len(), d], data)
}

fn write_safetensors(path: &Path, tensors: &[(&str, &[usize], &[f64])]) {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, d)| d.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views: HashMap<String, TensorView<'_>> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            (
                n.to_string(),
                TensorView::new(Dtype::F64, s.to_vec(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(&views, None).unwrap()).unwrap();
}

#[test]
fn the_reference_cases_from_npy_and_safetensors() {
    let dir = scratch("diag-ref");
    let r = reference();
    let mut failures = Vec::new();
    for c in r["diagnostics"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let (shape, mu) = flat(&c["mu"]);
        let (_, lv) = flat(&c["logvar"]);
        let mu_p = dir.join(format!("{name}-mu.npy"));
        let lv_p = dir.join(format!("{name}-lv.npy"));
        npy::write_f64(&mu_p, &shape, &mu).unwrap();
        npy::write_f64(&lv_p, &shape, &lv).unwrap();
        let st = dir.join(format!("{name}.safetensors"));
        write_safetensors(&st, &[("mu", &shape, &mu), ("logvar", &shape, &lv)]);
        for args in [
            vec![
                "diagnose",
                "--mu",
                mu_p.to_str().unwrap(),
                "--logvar",
                lv_p.to_str().unwrap(),
                "--json",
            ],
            vec!["diagnose", "--latents", st.to_str().unwrap(), "--json"],
        ] {
            let got = ok_json(&latentlab(&args));
            let e = &c["expected"];
            for key in ["mean_kl", "mean_posterior_std", "aggregate_kl"] {
                let (g, w) = (got[key].as_f64().unwrap(), e[key].as_f64().unwrap());
                if (g - w).abs() > 1e-9 * w.abs().max(1e-12) {
                    failures.push(format!("{name} {key}: {g} vs {w}"));
                }
            }
            for key in ["active_dims", "total_dims", "diagnosis"] {
                if got[key] != e[key] {
                    failures.push(format!("{name} {key}: {} vs {}", got[key], e[key]));
                }
            }
            for key in [
                "kl_per_dim",
                "mutual_information",
                "aggregate_kl_mc",
                "hole_fraction",
                "verdict",
            ] {
                if got.get(key).is_none() {
                    failures.push(format!("{name}: no {key}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    std::fs::remove_dir_all(dir).ok();
}

/// Trains; returns the checkpoint and what training printed on stderr.
fn train(dir: &Path, name: &str, extra: &[&str]) -> (String, String) {
    let ck = dir.join(format!("{name}.safetensors"));
    let mut args = vec![
        "train",
        "--data",
        "mnist-10k",
        "--out",
        ck.to_str().unwrap(),
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    let out = latentlab(&args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    (ck.to_str().unwrap().to_string(), err)
}

#[test]
fn a_healthy_model_and_a_collapsed_one() {
    let dir = scratch("diag-models");
    let (healthy, log) = train(
        &dir,
        "healthy",
        &["--epochs", "8", "--hidden", "256", "--latent", "8"],
    );
    assert!(!log.contains("collapsing"), "{log}");
    let d = ok_json(&latentlab(&[
        "diagnose",
        "--checkpoint",
        &healthy,
        "--device",
        "cpu",
        "--json",
    ]));
    assert_eq!(d["verdict"]["state"], "healthy", "{d}");
    assert_eq!(d["diagnosis"], "HEALTHY: Metrics look reasonable");
    assert_eq!(d["n"], 2000);
    check_surgery(&d);
    // encode → --latents gives the same figures.
    let lat = dir.join("lat.safetensors");
    ok_json(&latentlab(&[
        "encode",
        "--checkpoint",
        &healthy,
        "--out",
        lat.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
    ]));
    let e = ok_json(&latentlab(&[
        "diagnose",
        "--latents",
        lat.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(e["mean_kl"], d["mean_kl"]);
    assert_eq!(e["hole_fraction"], d["hole_fraction"]);
    // The text report says the same.
    let out = latentlab(&["diagnose", "--checkpoint", &healthy, "--device", "cpu"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("verdict: HEALTHY"), "{text}");

    let (collapsed, log) = train(
        &dir,
        "collapsed",
        &[
            "--epochs", "2", "--hidden", "64", "--latent", "8", "--beta", "20",
        ],
    );
    // Training warned early, once.
    assert_eq!(log.matches("collapsing").count(), 1, "{log}");
    let c = ok_json(&latentlab(&[
        "diagnose",
        "--checkpoint",
        &collapsed,
        "--device",
        "cpu",
        "--json",
    ]));
    assert_eq!(c["verdict"]["state"], "posterior_collapse", "{c}");
    assert!(c["mean_kl"].as_f64().unwrap() < 1.0);
    check_surgery(&c);
    std::fs::remove_dir_all(dir).ok();
}

/// The figures a diagnosis must satisfy exactly or by a known identity:
/// the per-dimension KLs sum to the mean KL; ELBO surgery (Hoffman &
/// Johnson 2016), mean KL = I(x; z) + KL(q(z) ‖ p(z)), holds within 4 of
/// its Monte Carlo standard errors; and I(x; z) ≤ ln N.
fn check_surgery(d: &serde_json::Value) {
    let f = |k: &str| d[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {d}"));
    let per_dim: f64 = d["kl_per_dim"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!(
        (per_dim - f("mean_kl")).abs() < 1e-9 * f("mean_kl").max(1.0),
        "{d}"
    );
    let gap = f("mean_kl") - (f("mutual_information") + f("aggregate_kl_mc"));
    assert!(
        gap.abs() < 4.0 * f("surgery_se") + 1e-9,
        "surgery: mean KL {} vs I {} + KL(q‖p) {} (se {})",
        f("mean_kl"),
        f("mutual_information"),
        f("aggregate_kl_mc"),
        f("surgery_se")
    );
    assert!(f("mutual_information") <= f("n").ln() + 1e-9, "{d}");
}

/// DCI's disentanglement and completeness recomputed from the importance
/// matrix the command printed (Eastwood & Williams 2018, written here
/// independently): 1 − H_K(P_i·) per code, weighted by the code's share.
fn dci_from(importance: &serde_json::Value) -> (f64, f64) {
    let r: Vec<Vec<f64>> = importance
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect();
    let score = |rows: &[Vec<f64>]| {
        let k = rows[0].len() as f64;
        let total: f64 = rows.iter().flatten().sum();
        rows.iter()
            .map(|row| {
                let p: Vec<f64> = row.iter().map(|v| v + 1e-11).collect();
                let s: f64 = p.iter().sum();
                let h = -p.iter().map(|v| v / s * (v / s).ln() / k.ln()).sum::<f64>();
                let weight = if total > 0.0 {
                    row.iter().sum::<f64>() / total
                } else {
                    1.0 / rows.len() as f64
                };
                (1.0 - h) * weight
            })
            .sum::<f64>()
    };
    let t: Vec<Vec<f64>> = (0..r[0].len())
        .map(|j| r.iter().map(|row| row[j]).collect())
        .collect();
    (score(&r), score(&t))
}

#[test]
fn disentanglement_on_dsprites() {
    let dir = scratch("dis");
    let ck = dir.join("d.safetensors");
    let out = latentlab(&[
        "train",
        "--data",
        "dsprites:1200",
        "--epochs",
        "1",
        "--hidden",
        "32",
        "--latent",
        "4",
        "--out",
        ck.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = ck.to_str().unwrap();
    for data in ["dsprites", "dsprites:600"] {
        let s = ok_json(&latentlab(&[
            "disentanglement",
            "--checkpoint",
            c,
            "--data",
            data,
            "--num-train",
            "120",
            "--num-eval",
            "60",
            "--device",
            "cpu",
            "--json",
        ]));
        for key in [
            "beta_vae",
            "factor_vae",
            "mig",
            "sap",
            "modularity",
            "explicitness",
        ] {
            let v = s[key].as_f64().unwrap_or(f64::NAN);
            assert!((0.0..=1.0).contains(&v), "{data} {key}: {}", s[key]);
        }
        for key in ["disentanglement", "completeness", "informativeness"] {
            let v = s["dci"][key].as_f64().unwrap_or(f64::NAN);
            assert!(
                (0.0..=1.0).contains(&v),
                "{data} dci.{key}: {}",
                s["dci"][key]
            );
        }
        assert_eq!(s["factors"].as_array().unwrap().len(), 5);
        let (d, c) = dci_from(&s["dci"]["importance"]);
        let got = |k: &str| s["dci"][k].as_f64().unwrap();
        assert!(
            (d - got("disentanglement")).abs() < 1e-9,
            "D {d} vs {}",
            got("disentanglement")
        );
        assert!(
            (c - got("completeness")).abs() < 1e-9,
            "C {c} vs {}",
            got("completeness")
        );
        let e = s["explicitness"].as_f64().unwrap();
        assert!(
            (s["explicitness_normalized"].as_f64().unwrap() - (2.0 * e - 1.0).max(0.0)).abs()
                < 1e-12
        );
    }
    // Seeded: the same run twice gives the same numbers; sampled codes work.
    let args = [
        "disentanglement",
        "--checkpoint",
        c,
        "--num-train",
        "60",
        "--num-eval",
        "30",
        "--device",
        "cpu",
        "--code",
        "sample",
        "--json",
    ];
    assert_eq!(ok_json(&latentlab(&args)), ok_json(&latentlab(&args)));
    std::fs::remove_dir_all(dir).ok();
}

/// More rows than one streaming chunk (65,536): the figures equal those of
/// the whole array computed in memory.
#[test]
fn large_inputs_stream_across_chunks() {
    let dir = scratch("diag-stream");
    let (n, d) = (70_001usize, 2usize);
    let mu: Vec<f64> = (0..n * d)
        .map(|i| ((i * 7919) % 1000) as f64 / 250.0 - 2.0)
        .collect();
    let lv: Vec<f64> = (0..n * d)
        .map(|i| -1.0 - ((i * 104_729) % 100) as f64 / 100.0)
        .collect();
    let (mp, lp) = (dir.join("mu.npy"), dir.join("lv.npy"));
    npy::write_f64(&mp, &[n, d], &mu).unwrap();
    npy::write_f64(&lp, &[n, d], &lv).unwrap();
    let got = ok_json(&latentlab(&[
        "diagnose",
        "--mu",
        mp.to_str().unwrap(),
        "--logvar",
        lp.to_str().unwrap(),
        "--json",
    ]));
    let l = latentlab::diagnostics::Latents::new(
        ndarray::Array2::from_shape_vec((n, d), mu).unwrap(),
        ndarray::Array2::from_shape_vec((n, d), lv).unwrap(),
    )
    .unwrap();
    let want = latentlab::diagnostics::page_metrics(&l);
    for (key, w) in [
        ("mean_kl", want.mean_kl),
        ("aggregate_kl", want.aggregate_kl),
        ("mean_posterior_std", want.mean_posterior_std),
    ] {
        let g = got[key].as_f64().unwrap();
        assert!((g - w).abs() <= 1e-9 * w.abs(), "{key}: {g} vs {w}");
    }
    assert_eq!(got["n"], n);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = scratch("diag-bad");
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    npy::write_f64(p("a.npy"), &[3, 2], &[0.0; 6]).unwrap();
    npy::write_f64(p("b.npy"), &[3, 3], &[0.0; 9]).unwrap();
    npy::write_f64(p("one.npy"), &[1, 2], &[0.0; 2]).unwrap();
    npy::write_f64(p("flat.npy"), &[6], &[0.0; 6]).unwrap();
    npy::write_f64(p("nan.npy"), &[3, 2], &[0.0, 1.0, f64::NAN, 0.0, 0.0, 0.0]).unwrap();
    npy::write_i64(p("int.npy"), &[3, 2], &[0; 6]).unwrap();
    npy::write_f64(p("zero.npy"), &[3, 0], &[]).unwrap();
    std::fs::write(
        p("junk.safetensors"),
        b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage",
    )
    .unwrap();
    std::fs::write(p("empty.npy"), b"").unwrap();
    write_safetensors(
        &dir.join("nomu.safetensors"),
        &[("means", &[3, 2], &[0.0; 6])],
    );
    write_safetensors(
        &dir.join("rank3.safetensors"),
        &[
            ("mu", &[1, 3, 2], &[0.0; 6]),
            ("logvar", &[3, 2], &[0.0; 6]),
        ],
    );
    let d = dir.to_str().unwrap().to_string();
    let (a, b, one, flat, nan, int, zero, junk, empty, nomu, rank3) = (
        p("a.npy"),
        p("b.npy"),
        p("one.npy"),
        p("flat.npy"),
        p("nan.npy"),
        p("int.npy"),
        p("zero.npy"),
        p("junk.safetensors"),
        p("empty.npy"),
        p("nomu.safetensors"),
        p("rank3.safetensors"),
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["diagnose"], "--latents"),
        (vec!["diagnose", "--mu", &a, "--logvar", &b], "same shape"),
        (
            vec!["diagnose", "--mu", &one, "--logvar", &one],
            "at least 2",
        ),
        (vec!["diagnose", "--mu", &flat, "--logvar", &flat], "2-D"),
        (vec!["diagnose", "--mu", &nan, "--logvar", &a], "NaN"),
        (
            vec!["diagnose", "--mu", &a, "--logvar", &nan],
            "logvar row 1 column 0 is NaN",
        ),
        (
            vec!["diagnose", "--mu", &int, "--logvar", &a],
            "float32 or float64",
        ),
        (
            vec!["diagnose", "--mu", &zero, "--logvar", &zero],
            "dimension is 0",
        ),
        (vec!["diagnose", "--mu", &empty, "--logvar", &a], "--mu"),
        (vec!["diagnose", "--mu", &d, "--logvar", &a], "--mu"),
        (
            vec!["diagnose", "--mu", "/no/such.npy", "--logvar", &a],
            "/no/such.npy",
        ),
        (vec!["diagnose", "--mu", &a], "--logvar"),
        (vec!["diagnose", "--latents", &junk], "safetensors"),
        (vec!["diagnose", "--latents", &nomu], "no tensor `mu`"),
        (vec!["diagnose", "--latents", &rank3], "2-D"),
        (vec!["diagnose", "--latents", &d], "--latents"),
        (
            vec!["diagnose", "--latents", &a, "--mu", &a],
            "cannot be used with",
        ),
        (
            vec!["diagnose", "--mu", &a, "--logvar", &a, "--samples", "0"],
            "--samples",
        ),
        (
            vec!["diagnose", "--mu", &a, "--logvar", &a, "--hole-ratio", "2"],
            "--hole-ratio",
        ),
        (
            vec!["diagnose", "--mu", &a, "--logvar", &a, "--samples", "-3"],
            "-3",
        ),
        (vec!["diagnose", "--checkpoint", &junk], "--checkpoint"),
        (
            vec!["disentanglement", "--checkpoint", &junk],
            "--checkpoint",
        ),
        (
            vec!["disentanglement", "--checkpoint", &junk, "--num-train", "1"],
            "--num-train",
        ),
        (
            vec!["disentanglement", "--checkpoint", &junk, "--code", "median"],
            "median",
        ),
        (
            vec!["disentanglement", "--checkpoint", &junk, "--sap", "svm"],
            "svm",
        ),
    ];
    assert_clean_errors(&cases);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_codes_and_factors_are_clear_errors() {
    let dir = scratch("codes-bad");
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let codes: Vec<f64> = (0..12).map(|i| (i * 7 % 5) as f64).collect();
    npy::write_f64(p("codes.npy"), &[6, 2], &codes).unwrap();
    npy::write_f64(p("codes3.npy"), &[6, 3], &[0.5; 18]).unwrap();
    npy::write_f64(p("narrow.npy"), &[6, 1], &codes[..6]).unwrap();
    let mut nan = codes.clone();
    nan[5] = f64::NAN;
    npy::write_f64(p("nan.npy"), &[6, 2], &nan).unwrap();
    npy::write_i64(p("factors.npy"), &[6], &[0, 1, 0, 1, 0, 1]).unwrap();
    npy::write_i64(p("short.npy"), &[5], &[0, 1, 0, 1, 0]).unwrap();
    npy::write_i64(p("constant.npy"), &[6], &[3; 6]).unwrap();
    npy::write_f64(p("half.npy"), &[6], &[0.0, 1.0, 0.5, 1.0, 0.0, 1.0]).unwrap();
    npy::write_i64(p("rank3.npy"), &[6, 1, 1], &[0, 1, 0, 1, 0, 1]).unwrap();
    let (c, c3, narrow, nan, f, short, constant, half, rank3) = (
        p("codes.npy"),
        p("codes3.npy"),
        p("narrow.npy"),
        p("nan.npy"),
        p("factors.npy"),
        p("short.npy"),
        p("constant.npy"),
        p("half.npy"),
        p("rank3.npy"),
    );
    let d = |extra: &[&str]| {
        let mut v = vec!["disentanglement", "--codes", &c, "--factors"];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let owned: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["disentanglement".into(), "--codes".into(), c.clone()],
            "--factors",
        ),
        (d(&[&short]), "5 rows of factors for 6 rows of --codes"),
        (d(&[&constant]), "factor 0 takes one value"),
        (d(&[&half]), "whole-number"),
        (d(&[&rank3]), "N × K"),
        (
            d(&[&f, "--continuous", "--sap", "classifier"]),
            "--sap classifier",
        ),
        (d(&[&f, "--checkpoint", &c]), "cannot be used with"),
        (d(&[&f, "--num-train", "10"]), "cannot be used with"),
        (d(&[&f, "--test-codes", &c]), "--test-factors"),
        (
            d(&[&f, "--test-codes", &c3, "--test-factors", &f]),
            "the test codes have 3 columns but the training codes 2",
        ),
        (d(&["/no/such.npy"]), "/no/such.npy"),
        (
            vec![
                "disentanglement".into(),
                "--codes".into(),
                nan.clone(),
                "--factors".into(),
                f.clone(),
            ],
            "non-finite value (NaN) at row 2, column 1",
        ),
        (
            vec![
                "disentanglement".into(),
                "--codes".into(),
                narrow.clone(),
                "--factors".into(),
                f.clone(),
            ],
            "at least 2 are needed",
        ),
    ];
    let cases: Vec<(Vec<&str>, &str)> = owned
        .iter()
        .map(|(a, want)| (a.iter().map(String::as_str).collect(), *want))
        .collect();
    assert_clean_errors(&cases);
    std::fs::remove_dir_all(dir).ok();
}

/// `disentanglement --codes` on arrays disentanglement_lib scored (the
/// fixture of crates/latentlab-diagnostics/tests/dlib_metrics.rs), with
/// the test arrays and with the seeded split.
#[test]
fn disentanglement_of_bare_codes() {
    let case = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../crates/latentlab-diagnostics/tests/data/dlib-metrics/identity_noisy"
    );
    let f = |n: &str| format!("{case}/{n}.npy");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{case}/expected.json")).unwrap())
            .unwrap();
    let (ct, ft, ce, fe) = (
        f("codes_train"),
        f("factors_train"),
        f("codes_test"),
        f("factors_test"),
    );
    let given = ok_json(&latentlab(&[
        "disentanglement",
        "--codes",
        &ct,
        "--factors",
        &ft,
        "--test-codes",
        &ce,
        "--test-factors",
        &fe,
        "--json",
    ]));
    let want = |k: &str| expected["scores"][k].as_f64().unwrap();
    assert!((given["mig"].as_f64().unwrap() - want("mig")).abs() < 1e-6);
    assert!((given["modularity"].as_f64().unwrap() - want("modularity")).abs() < 1e-6);
    assert!((given["sap"].as_f64().unwrap() - want("sap")).abs() < 0.02);
    assert!(given["beta_vae"].is_null() && given["factor_vae"].is_null());
    assert!(
        given["not_computable"]["factor_vae"]
            .as_str()
            .unwrap()
            .contains("held fixed")
    );
    assert_eq!(given["settings"]["num_train"], 1000);
    assert_eq!(given["settings"]["num_test"], 500);
    assert_eq!(given["settings"]["sap_mode"], "classifier");

    // Without test arrays a seeded fifth of the rows is held out: the
    // same draw for the same seed, another for another.
    let split = |seed: &str| {
        ok_json(&latentlab(&[
            "disentanglement",
            "--codes",
            &ct,
            "--factors",
            &ft,
            "--seed",
            seed,
            "--json",
        ]))
    };
    let (a, b, c) = (split("0"), split("0"), split("1"));
    assert_eq!(a, b);
    assert_eq!(a["settings"]["num_train"], 800);
    assert_eq!(a["settings"]["num_test"], 200);
    assert!(a["settings"]["split"].as_str().unwrap().contains("seed 0"));
    assert_ne!(a["dci"], c["dci"]);
    // MIG reads the training rows: 800 of the 1000 here, so it moves a
    // little but stays the same representation's score.
    assert!((a["mig"].as_f64().unwrap() - want("mig")).abs() < 0.05);
}
