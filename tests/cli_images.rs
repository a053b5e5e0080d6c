//! A user's own data: a folder of PNG images of two sizes in two class
//! folders (it trains, encodes with the folders' labels, reports),
//! `--labels`/`--factors` on a `.npy` file's rows, and the dSprites `.npz`.

use std::path::Path;

use latentlab::data::npy;
use latentlab::viz::png;

mod common;
use common::{assert_clean_errors, latentlab, ok_json, scratch};

/// `n` PNGs in `dir`: a bright disc (class "disc") or bar ("bar") on a
/// dark ground, `w × h`, in colour when `rgb`.
fn draw(dir: &Path, shape: &str, n: usize, (w, h): (usize, usize), rgb: bool) {
    std::fs::create_dir_all(dir.join(shape)).unwrap();
    for i in 0..n {
        let (cx, cy) = (
            w as f64 * (0.3 + 0.4 * (i % 5) as f64 / 4.0),
            h as f64 / 2.0,
        );
        let r = (w.min(h) as f64) * (0.15 + 0.02 * (i % 3) as f64);
        let mut px = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let (dx, dy) = (x as f64 - cx, y as f64 - cy);
                let on = match shape {
                    "disc" => dx * dx + dy * dy < r * r,
                    _ => dx.abs() < r * 0.5 && dy.abs() < r * 2.0,
                };
                let v = if on { 230u8 } else { 20 };
                if rgb {
                    px.extend_from_slice(&[v, v / 2, 255 - v]);
                } else {
                    px.push(v);
                }
            }
        }
        let bytes = png::encode(w, h, if rgb { 3 } else { 1 }, &px);
        std::fs::write(dir.join(shape).join(format!("{i:03}.png")), bytes).unwrap();
    }
}

#[test]
fn a_folder_of_pngs_of_two_sizes_trains_encodes_and_reports() {
    let root = scratch("images");
    let data = root.join("shapes");
    draw(&data, "disc", 30, (40, 40), false);
    draw(&data, "bar", 30, (36, 48), true);
    let d = data.to_str().unwrap();
    let ck = root.join("m.safetensors");
    let ck = ck.to_str().unwrap();

    let out = latentlab(&["train", "--data", d, "--epochs", "1", "--out", ck]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("different sizes"),
        "{err}"
    );

    let t = ok_json(&latentlab(&[
        "train",
        "--data",
        d,
        "--image-size",
        "28",
        "--center-crop",
        "--arch",
        "conv28",
        "--latent",
        "4",
        "--epochs",
        "2",
        "--batch",
        "16",
        "--device",
        "cpu",
        "--out",
        ck,
        "--save-every",
        "0",
        "--json",
    ]));
    assert_eq!(t["train_images"], 54);
    assert!(t["test"]["neg_elbo"].as_f64().unwrap().is_finite(), "{t}");
    assert_eq!(t["history"][1]["test"]["n"], 6);

    let lat = root.join("lat.safetensors");
    let e = ok_json(&latentlab(&[
        "encode",
        "--checkpoint",
        ck,
        "--data",
        d,
        "--image-size",
        "28",
        "--center-crop",
        "--split",
        "all",
        "--out",
        lat.to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
    ]));
    assert_eq!(e["n"], 60, "{e}");

    let report = root.join("report");
    let out = latentlab(&[
        "report",
        "--checkpoint",
        ck,
        "--data",
        d,
        "--image-size",
        "28",
        "--center-crop",
        "--out",
        report.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    for section in ["Is the latent space healthy?", "Latent maps", "Traversals"] {
        assert!(
            html.contains(&format!("<h2>{section}</h2>")),
            "missing {section}"
        );
    }
    std::fs::remove_dir_all(root).ok();
}

#[test]
fn labels_and_factors_follow_a_npy_files_rows() {
    let root = scratch("npy-labels");
    let p = |n: &str| root.join(n).to_str().unwrap().to_string();
    // 40 grey 4×4 images whose first pixel is the row number / 40.
    let mut x = vec![0.0f64; 40 * 16];
    for i in 0..40 {
        x[i * 16] = i as f64 / 40.0;
    }
    npy::write_f64(p("x.npy"), &[40, 16], &x).unwrap();
    let labels: Vec<i64> = (0..40).map(|i| i % 3).collect();
    npy::write_i64(p("y.npy"), &[40], &labels).unwrap();
    let factors: Vec<i64> = (0..40).flat_map(|i| [i % 2, i % 5]).collect();
    npy::write_i64(p("f.npy"), &[40, 2], &factors).unwrap();
    let ck = p("m.safetensors");
    ok_json(&latentlab(&[
        "train",
        "--data",
        &p("x.npy"),
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--latent",
        "2",
        "--device",
        "cpu",
        "--out",
        &ck,
        "--save-every",
        "0",
        "--json",
    ]));
    let lat = p("lat.safetensors");
    ok_json(&latentlab(&[
        "encode",
        "--checkpoint",
        &ck,
        "--data",
        &p("x.npy"),
        "--labels",
        &p("y.npy"),
        "--split",
        "all",
        "--out",
        &lat,
        "--device",
        "cpu",
        "--json",
    ]));
    // The split's rows carry the labels (that each row keeps its own is
    // checked in latentlab-data's label_rows test).
    let st = std::fs::read(&lat).unwrap();
    let t = safetensors::SafeTensors::deserialize(&st).unwrap();
    let got: Vec<i64> = t
        .tensor("labels")
        .unwrap()
        .data()
        .chunks(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let mut seen = got.clone();
    seen.sort();
    let mut want = labels.clone();
    want.sort();
    assert_eq!(seen, want, "every label once");
    let d = ok_json(&latentlab(&[
        "disentanglement",
        "--checkpoint",
        &ck,
        "--data",
        &p("x.npy"),
        "--factors",
        &p("f.npy"),
        "--num-train",
        "200",
        "--num-eval",
        "100",
        "--device",
        "cpu",
        "--json",
    ]));
    assert_eq!(d["factors"].as_array().unwrap().len(), 2, "{d}");

    npy::write_i64(p("short.npy"), &[39], &labels[..39]).unwrap();
    npy::write_f64(p("half.npy"), &[40], &vec![0.5; 40]).unwrap();
    let (x, y, short, half, out) = (
        p("x.npy"),
        p("y.npy"),
        p("short.npy"),
        p("half.npy"),
        p("o.st"),
    );
    let enc = |extra: &[&str]| {
        let mut v = vec!["encode", "--checkpoint", &ck, "--out", &out];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let owned = [
        (enc(&["--data", &x, "--labels", &short]), "--labels"),
        (
            enc(&["--data", &x, "--labels", &half]),
            "not a whole number",
        ),
        (
            enc(&["--data", "mnist-10k", "--labels", &y]),
            "--data mnist-10k is neither",
        ),
        (enc(&["--data", &x, "--image-size", "8"]), "is not one"),
        (
            enc(&["--data", &x, "--image-size", "0x3"]),
            "--image-size 0x3",
        ),
        (
            enc(&["--data", &x, "--center-crop"]),
            "--center-crop needs --image-size",
        ),
    ];
    let cases: Vec<(Vec<&str>, &str)> = owned
        .iter()
        .map(|(a, want)| (a.iter().map(String::as_str).collect(), *want))
        .collect();
    assert_clean_errors(&cases);
    std::fs::remove_dir_all(root).ok();
}

/// The dSprites `.npz` layout (a small file numpy wrote): `FILE.npz:N`
/// trains; `FILE.npz` whole is the disentanglement metrics' factor grid.
#[test]
fn a_dsprites_npz_trains_and_scores_on_its_grid() {
    let root = scratch("npz");
    let npz = |n: &str| {
        format!(
            "{}/../../crates/latentlab-data/tests/data/npz/{n}",
            env!("CARGO_MANIFEST_DIR")
        )
    };
    let ck = root.join("m.safetensors");
    let ck = ck.to_str().unwrap();
    let grid = npz("grid.npz");
    let t = ok_json(&latentlab(&[
        "train",
        "--data",
        &format!("{grid}:48"),
        "--epochs",
        "1",
        "--hidden",
        "16",
        "--latent",
        "3",
        "--batch",
        "8",
        "--device",
        "cpu",
        "--out",
        ck,
        "--save-every",
        "0",
        "--json",
    ]));
    assert_eq!(t["train_images"], 44);
    let d = ok_json(&latentlab(&[
        "disentanglement",
        "--checkpoint",
        ck,
        "--data",
        &grid,
        "--num-train",
        "100",
        "--num-eval",
        "50",
        "--device",
        "cpu",
        "--json",
    ]));
    let names: Vec<&str> = d["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(names, ["shape", "scale", "orientation", "pos_x", "pos_y"]);
    let (shuffled, lying, one) = (npz("shuffled.npz"), npz("lying.npz"), format!("{grid}:1"));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["disentanglement", "--checkpoint", ck, "--data", &shuffled],
            "not the full factor grid",
        ),
        (vec!["train", "--data", &one, "--out", ck], "N ≥ 2"),
        (vec!["train", "--data", &lying, "--out", ck], "declares"),
        (
            vec!["train", "--data", "/no/such.npz", "--out", ck],
            "/no/such.npz",
        ),
    ];
    assert_clean_errors(&cases);
    std::fs::remove_dir_all(root).ok();
}
