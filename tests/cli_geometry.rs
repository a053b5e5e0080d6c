//! End-to-end tests of `latentlab geometry …` and `latentlab interpolate`.

use std::path::Path;

use latentlab::data::npy;

mod common;
use common::{latentlab, ok_json as json, scratch};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn shell_json_has_the_issue_fields_and_exact_values() {
    let v = json(&latentlab(&[
        "geometry",
        "shell",
        "--dims",
        "2,10,64,256",
        "--json",
    ]));
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for (row, d) in rows.iter().zip([2u64, 10, 64, 256]) {
        assert_eq!(row["dim"], d);
        for key in [
            "mean_norm",
            "std_norm",
            "norm_q05",
            "norm_q95",
            "log10_mass_within_radius_1",
        ] {
            assert!(row[key].as_f64().unwrap().is_finite(), "{key}");
        }
    }
    // d = 2: ‖z‖ is Rayleigh, E = √(π/2), P(‖z‖<1) = 1 − e^{−1/2}.
    let r = &rows[0];
    assert!((r["mean_norm"].as_f64().unwrap() - (std::f64::consts::PI / 2.0).sqrt()).abs() < 1e-12);
    let p = 1.0 - (-0.5f64).exp();
    assert!((r["log10_mass_within_radius_1"].as_f64().unwrap() - p.log10()).abs() < 1e-12);
    // Rayleigh quantile: √(−2 ln(1 − q)).
    let q95 = (-2.0 * 0.05f64.ln()).sqrt();
    assert!((r["norm_q95"].as_f64().unwrap() - q95).abs() < 1e-10);
}

#[test]
fn shell_table_and_bad_dims() {
    let out = latentlab(&["geometry", "shell", "--dims", "3,64"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    for bad in ["0", "x", "3,,4", "-2", "99999999999999999999999"] {
        let out = latentlab(&["geometry", "shell", "--dims", bad]);
        assert!(!out.status.success(), "--dims {bad} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--dims"), "--dims {bad}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn interpolate_json_and_out_file() {
    let dir = scratch("interp");
    let (a, b, out) = (dir.join("a.npy"), dir.join("b.npy"), dir.join("path.npy"));
    npy::write_f64(&a, &[3], &[1.0, 2.0, 3.0]).unwrap();
    npy::write_f32(&b, &[3], &[-1.0, 0.5, 2.0]).unwrap();
    for method in ["linear", "slerp", "seed-slerp", "constant-norm"] {
        let v = json(&latentlab(&[
            "interpolate",
            "--z1",
            s(&a),
            "--z2",
            s(&b),
            "--steps",
            "5",
            "--method",
            method,
            "--out",
            s(&out),
            "--json",
        ]));
        let points = v["points"].as_array().unwrap();
        assert_eq!(points.len(), 5);
        let norms = v["norms"].as_array().unwrap();
        let lp = v["log_prior"].as_array().unwrap();
        assert_eq!((norms.len(), lp.len()), (5, 5));
        for ((p, n), l) in points.iter().zip(norms).zip(lp) {
            let p: Vec<f64> = p
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            let norm = p.iter().map(|x| x * x).sum::<f64>().sqrt();
            assert!((norm - n.as_f64().unwrap()).abs() < 1e-12);
            let want = -0.5 * (3.0 * (2.0 * std::f64::consts::PI).ln() + norm * norm);
            assert!((want - l.as_f64().unwrap()).abs() < 1e-12);
        }
        if method != "seed-slerp" && method != "constant-norm" {
            assert_eq!(points[0], serde_json::json!([1.0, 2.0, 3.0]), "{method}");
            assert_eq!(points[4], serde_json::json!([-1.0, 0.5, 2.0]), "{method}");
        }
        let file = npy::read(&out).unwrap();
        assert_eq!(file.shape(), &[5, 3]);
        // One f64 input: the path is written in f64.
        assert_eq!(file.dtype(), "float64");
        let on_disk = file.to_f64();
        let flat: Vec<f64> = points
            .iter()
            .flat_map(|p| p.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
            .collect();
        assert_eq!(on_disk, flat);
    }
    // Two f32 inputs: an f32 path.
    let a32 = dir.join("a32.npy");
    npy::write_f32(&a32, &[3], &[1.0, 2.0, 3.0]).unwrap();
    let out32 = dir.join("p32.npy");
    let ok = latentlab(&[
        "interpolate",
        "--z1",
        s(&a32),
        "--z2",
        s(&b),
        "--out",
        s(&out32),
    ]);
    assert!(ok.status.success());
    assert_eq!(npy::read(&out32).unwrap().dtype(), "float32");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn interpolate_bad_input_is_a_clear_error() {
    let dir = scratch("bad");
    let good = dir.join("good.npy");
    npy::write_f64(&good, &[3], &[1.0, 2.0, 3.0]).unwrap();
    let short = dir.join("short.npy");
    npy::write_f64(&short, &[2], &[1.0, 2.0]).unwrap();
    let nan = dir.join("nan.npy");
    npy::write_f64(&nan, &[3], &[1.0, f64::NAN, 3.0]).unwrap();
    let inf = dir.join("inf.npy");
    npy::write_f32(&inf, &[3], &[1.0, 2.0, f32::INFINITY]).unwrap();
    let ints = dir.join("ints.npy");
    npy::write_i64(&ints, &[3], &[1, 2, 3]).unwrap();
    let matrix = dir.join("matrix.npy");
    npy::write_f64(&matrix, &[2, 3], &[0.0; 6]).unwrap();
    let empty = dir.join("empty.npy");
    std::fs::write(&empty, b"").unwrap();
    let garbage = dir.join("garbage.npy");
    std::fs::write(&garbage, b"\x93NUMPY\x01\x00\xff\xff{'descr'").unwrap();
    let missing = dir.join("missing.npy");

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--z2", s(&short)], "differ in length"),
        (vec!["--z2", s(&nan)], "nan.npy"),
        (vec!["--z2", s(&inf)], "inf.npy"),
        (vec!["--z2", s(&ints)], "int64"),
        (vec!["--z2", s(&matrix)], "1-D"),
        (vec!["--z2", s(&empty)], "empty.npy"),
        (vec!["--z2", s(&garbage)], "garbage.npy"),
        (vec!["--z2", s(&missing)], "missing.npy"),
        (vec!["--z2", s(&dir)], "directory"),
        (vec!["--z2", s(&good), "--steps", "0"], "--steps"),
        (vec!["--z2", s(&good), "--steps", "-3"], "--steps"),
        (vec!["--z2", s(&good), "--method", "cubic"], "cubic"),
    ];
    let cases: Vec<(Vec<&str>, &str)> = cases
        .into_iter()
        .map(|(extra, needle)| {
            let mut args = vec!["interpolate", "--z1", s(&good)];
            args.extend(extra);
            args.push("--json");
            (args, needle)
        })
        .collect();
    common::assert_clean_errors(&cases);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn sample_writes_seeded_codes() {
    let dir = scratch("sample");
    let (p1, p2) = (dir.join("a.npy"), dir.join("b.npy"));
    for p in [&p1, &p2] {
        let v = json(&latentlab(&[
            "geometry",
            "sample",
            "--n",
            "50",
            "--dim",
            "16",
            "--seed",
            "3",
            "--shell",
            "--out",
            s(p),
            "--json",
        ]));
        assert!((v["mean_norm"].as_f64().unwrap() - 4.0).abs() < 1e-5);
    }
    let (a, b) = (npy::read(&p1).unwrap(), npy::read(&p2).unwrap());
    assert_eq!(a.shape(), &[50, 16]);
    assert_eq!(a, b, "same seed, same codes");
    let out = latentlab(&[
        "geometry",
        "sample",
        "--n",
        "0",
        "--dim",
        "4",
        "--out",
        s(&p1),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("n:"));
    std::fs::remove_dir_all(dir).ok();
}
