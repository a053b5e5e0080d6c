//! End-to-end tests of `latentlab embed`.

use latentlab::data::npy;

mod common;
use common::{assert_clean_errors, latentlab, ok_json, scratch};

/// 240 points in 6-d: three clusters, labels 0, 1, 2.
fn clustered() -> (Vec<f64>, Vec<i64>) {
    let mut x = Vec::new();
    let mut labels = Vec::new();
    for i in 0..240usize {
        let c = (i % 3) as f64;
        for j in 0..6usize {
            let jitter = (((i * 31 + j * 17) % 97) as f64 / 97.0 - 0.5) * 0.8;
            x.push(if j == i % 3 { 10.0 * (c + 1.0) } else { 0.0 } + jitter);
        }
        labels.push((i % 3) as i64);
    }
    (x, labels)
}

#[test]
fn every_method_maps_and_reports() {
    let dir = scratch("embed");
    let (x, labels) = clustered();
    let lat = dir.join("lat.npy");
    let lab = dir.join("labels.npy");
    npy::write_f64(&lat, &[240, 6], &x).unwrap();
    npy::write_i64(&lab, &[240], &labels).unwrap();
    // Every run: the clustered latents with labels, 300 iterations,
    // perplexity 20, JSON out, plus `extra`.
    let embed = |method: &str, extra: &[&str]| {
        let mut args = vec![
            "embed",
            "--latents",
            lat.to_str().unwrap(),
            "--method",
            method,
            "--labels",
            lab.to_str().unwrap(),
            "--iterations",
            "300",
            "--perplexity",
            "20",
            "--json",
        ];
        args.extend_from_slice(extra);
        ok_json(&latentlab(&args))
    };
    for method in ["pca", "tsne", "umap"] {
        let out = dir.join(format!("{method}.npy"));
        let r = embed(method, &["--out", out.to_str().unwrap()]);
        assert_eq!(r["method"], method);
        assert_eq!(r["n"], 240);
        // The run was timed (a real duration, not a placeholder 0).
        let secs = r["seconds"].as_f64().expect("seconds is a number");
        assert!(secs.is_finite() && secs > 0.0, "seconds {secs}");
        let tw = r["trustworthiness10"].as_f64().unwrap();
        assert!(tw > 0.8 && tw <= 1.0, "{method}: {tw}");
        assert!(
            r["knn_accuracy10"].as_f64().unwrap() > 0.95,
            "{method}: {r}"
        );
        let map = npy::read(&out).unwrap();
        assert_eq!(map.shape(), &[240, 2]);
    }
    // Neighbours from the GPU backend (lavapipe in CI) give the same map
    // quality.
    if latentlab::tensor::conformance::test_gpu().is_some() {
        for method in ["tsne", "umap"] {
            let run = |device: &str| embed(method, &["--device", device]);
            let (c, g) = (run("cpu"), run("gpu"));
            let (tc, tg) = (
                c["trustworthiness10"].as_f64().unwrap(),
                g["trustworthiness10"].as_f64().unwrap(),
            );
            assert!((tc - tg).abs() < 0.02, "{method}: cpu {tc} vs gpu {tg}");
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = scratch("embed-bad");
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let (x, _) = clustered();
    npy::write_f64(p("ok.npy"), &[240, 6], &x).unwrap();
    npy::write_f64(p("small.npy"), &[10, 6], &x[..60]).unwrap();
    let mut nan = x.clone();
    nan[7] = f64::NAN;
    npy::write_f64(p("nan.npy"), &[240, 6], &nan).unwrap();
    npy::write_f64(p("zero.npy"), &[240, 0], &[]).unwrap();
    npy::write_f64(p("flat.npy"), &[240], &x[..240]).unwrap();
    npy::write_i64(p("labels3.npy"), &[3], &[0, 1, 2]).unwrap();
    npy::write_f64(p("flabels.npy"), &[240], &x[..240]).unwrap();
    std::fs::write(p("junk.npy"), b"\x93NUMPY\x01\x00\xff\xffgarbage").unwrap();
    let same: Vec<f64> = (0..240).flat_map(|_| x[..6].to_vec()).collect();
    npy::write_f64(p("same.npy"), &[240, 6], &same).unwrap();
    let same = p("same.npy");
    let (ok, small, nanf, zero, flat, l3, fl, junk) = (
        p("ok.npy"),
        p("small.npy"),
        p("nan.npy"),
        p("zero.npy"),
        p("flat.npy"),
        p("labels3.npy"),
        p("flabels.npy"),
        p("junk.npy"),
    );
    let d = dir.to_str().unwrap().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["embed", "--latents", &small, "--method", "tsne"],
            "--perplexity",
        ),
        (
            vec![
                "embed",
                "--latents",
                &ok,
                "--method",
                "tsne",
                "--perplexity",
                "240",
            ],
            "--perplexity",
        ),
        (
            vec![
                "embed",
                "--latents",
                &ok,
                "--method",
                "tsne",
                "--perplexity",
                "-1",
            ],
            "--perplexity",
        ),
        (
            vec![
                "embed",
                "--latents",
                &small,
                "--method",
                "umap",
                "--neighbors",
                "11",
            ],
            "--neighbors",
        ),
        (vec!["embed", "--latents", &nanf, "--method", "pca"], "NaN"),
        (
            vec!["embed", "--latents", &zero, "--method", "umap"],
            "0 dimensions",
        ),
        (vec!["embed", "--latents", &flat], "2-D"),
        (
            vec!["embed", "--latents", &ok, "--method", "isomap"],
            "isomap",
        ),
        (
            vec!["embed", "--latents", &ok, "--tsne-method", "fmm"],
            "--tsne-method: unknown method `fmm`",
        ),
        (
            vec![
                "embed",
                "--latents",
                &ok,
                "--labels",
                &l3,
                "--method",
                "pca",
            ],
            "240 labels",
        ),
        (
            vec![
                "embed",
                "--latents",
                &ok,
                "--labels",
                &fl,
                "--method",
                "pca",
            ],
            "integers",
        ),
        (vec!["embed", "--latents", &junk], "--latents"),
        (vec!["embed", "--latents", "/no/such.npy"], "/no/such.npy"),
        (vec!["embed", "--latents", &d], "--latents"),
        // 3·perplexity neighbours must exist: 80 on 240 points is one too many.
        (
            vec![
                "embed",
                "--latents",
                &ok,
                "--method",
                "tsne",
                "--perplexity",
                "80",
            ],
            "below a third of the number of points (240)",
        ),
        (
            vec!["embed", "--latents", &same, "--method", "tsne"],
            "all 240 points are the same point",
        ),
        (
            vec!["embed", "--latents", &same, "--method", "umap"],
            "all 240 points are the same point",
        ),
        (
            vec![
                "embed",
                "--latents",
                &ok,
                "--iterations",
                "0",
                "--method",
                "tsne",
            ],
            "--iterations",
        ),
    ];
    assert_clean_errors(&cases);
    std::fs::remove_dir_all(dir).ok();
}
