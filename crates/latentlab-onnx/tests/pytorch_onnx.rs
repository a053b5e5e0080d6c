//! A PyTorch conv VAE with BatchNorm, exported to ONNX by
//! `benches/peers/torch_onnx_fixture.py`: latentlab's encode and decode of
//! it match PyTorch's outputs, and malformed graphs are clear errors.

use std::path::{Path, PathBuf};

use latentlab_data::npy;
use latentlab_model::LatentModel;
use latentlab_onnx::{DecoderOutput, OnnxError, OnnxModel};
use ndarray::Array2;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/torch-onnx")
}

fn file(name: &str) -> PathBuf {
    dir().join(name)
}

fn matrix(name: &str) -> Array2<f32> {
    let a = npy::read(file(name)).unwrap();
    let (n, d) = (a.shape()[0], a.shape()[1]);
    Array2::from_shape_vec((n, d), a.to_f64().iter().map(|&v| v as f32).collect()).unwrap()
}

/// Largest |a − b| relative to max(1, |b|).
fn max_rel(a: &Array2<f32>, b: &Array2<f32>) -> f64 {
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from((x - y).abs()) / f64::from(y.abs()).max(1.0))
        .fold(0.0, f64::max)
}

fn model() -> OnnxModel {
    OnnxModel::open(
        Some(&file("encoder.onnx")),
        Some(&file("decoder.onnx")),
        DecoderOutput::Logits,
    )
    .unwrap()
}

#[test]
fn encode_and_decode_match_pytorch() {
    let m = model();
    assert_eq!(m.input_shape(), &[1, 28, 28]);
    assert_eq!((m.latent_dim(), m.input_dim()), (8, 784));
    assert_eq!(m.image_shape(), Some((28, 28)));
    let x = matrix("x.npy");
    let p = m.encode(x.view()).unwrap();
    let (mu, lv) = (matrix("mu.npy"), matrix("logvar.npy"));
    assert!(max_rel(&p.mu, &mu) < 1e-5, "mu: {}", max_rel(&p.mu, &mu));
    assert!(max_rel(&p.logvar, &lv) < 1e-5, "logvar");
    let logits = matrix("logits.npy");
    let raw = m.decode_raw(mu.view()).unwrap();
    assert!(
        max_rel(&raw, &logits) < 1e-5,
        "logits: {}",
        max_rel(&raw, &logits)
    );
    // The mean of p(x|z) is the sigmoid of the logits.
    let mean = m.decode(mu.view()).unwrap();
    let want = logits.mapv(|v| 1.0 / (1.0 + (-v).exp()));
    assert!(max_rel(&mean, &want) < 1e-6);
}

#[test]
fn batches_of_any_size_give_the_same_rows() {
    // 600 rows: several chunks over the threads, and a short last one.
    let m = model();
    let x = matrix("x.npy");
    let idx: Vec<usize> = (0..600).map(|i| (i * 5) % 8).collect();
    let big = x.select(ndarray::Axis(0), &idx);
    let p = m.encode(big.view()).unwrap();
    let one = m.encode(x.view()).unwrap();
    for (r, &i) in idx.iter().enumerate() {
        assert_eq!(p.mu.row(r), one.mu.row(i), "row {r}");
    }
    assert_eq!(
        m.encode(x.slice(ndarray::s![..0, ..])).unwrap().mu.nrows(),
        0
    );
}

#[test]
fn a_graph_of_fixed_batch_runs_row_by_row() {
    // Exported on flat rows with a batch of 1 (no dynamic axis).
    let m = OnnxModel::open(
        Some(&file("encoder_b1.onnx")),
        Some(&file("decoder.onnx")),
        DecoderOutput::Logits,
    )
    .unwrap();
    let x = matrix("x.npy");
    let p = m.encode(x.view()).unwrap();
    assert!(max_rel(&p.mu, &matrix("mu.npy")) < 1e-5);
    // The image shape comes from the decoder when the encoder takes rows.
    assert_eq!(m.image_shape(), Some((28, 28)));
}

#[test]
fn decoder_output_mean_is_passed_through() {
    let m = OnnxModel::open(None, Some(&file("decoder.onnx")), DecoderOutput::Mean).unwrap();
    let mu = matrix("mu.npy");
    assert!(max_rel(&m.decode(mu.view()).unwrap(), &matrix("logits.npy")) < 1e-5);
    let e = m.encode(matrix("x.npy").view()).unwrap_err().to_string();
    assert!(e.contains("--encoder"), "{e}");
}

fn open_err(enc: Option<&Path>, dec: Option<&Path>) -> String {
    OnnxModel::open(enc, dec, DecoderOutput::Logits)
        .unwrap_err()
        .to_string()
}

#[test]
fn malformed_graphs_are_clear_errors() {
    let unsupported = file("unsupported.onnx");
    let e = OnnxModel::open(Some(&unsupported), None, DecoderOutput::Logits).unwrap_err();
    assert!(
        matches!(&e, OnnxError::Unsupported { ops, .. } if ops == &["Col2Im".to_string()]),
        "{e}"
    );
    let e = e.to_string();
    assert!(
        e.contains("unsupported.onnx") && e.contains("Col2Im"),
        "{e}"
    );

    // A decoder (one output) given as the encoder.
    let e = open_err(Some(&file("decoder.onnx")), None);
    assert!(e.contains("two outputs") && e.contains("has 1"), "{e}");
    // An encoder given as the decoder.
    let e = open_err(None, Some(&file("encoder.onnx")));
    assert!(e.contains("one output"), "{e}");
    // Graphs that disagree.
    let e = open_err(Some(&file("encoder.onnx")), Some(&file("decoder_d4.onnx")));
    assert!(
        e.contains("takes 4 latents") && e.contains("gives 8"),
        "{e}"
    );
    // Not ONNX at all, and missing.
    let e = open_err(Some(&file("x.npy")), None);
    assert!(
        e.contains("x.npy") && e.contains("not a readable ONNX model"),
        "{e}"
    );
    let e = open_err(Some(&file("missing.onnx")), None);
    assert!(e.contains("missing.onnx"), "{e}");
    assert!(open_err(None, None).contains("encoder, a decoder or both"));
}

#[test]
fn truncated_files_are_errors_not_panics() {
    let bytes = std::fs::read(file("encoder.onnx")).unwrap();
    let name = Path::new("cut.onnx");
    for cut in [
        0,
        1,
        7,
        100,
        bytes.len() / 3,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        let r = OnnxModel::from_bytes(Some((name, &bytes[..cut])), None, DecoderOutput::Logits);
        let e = r.expect_err("a truncated graph opened").to_string();
        assert!(e.contains("cut.onnx"), "{cut}: {e}");
    }
}

#[test]
fn bad_rows_are_clear_errors() {
    let m = model();
    let mut x = matrix("x.npy");
    x[[3, 5]] = f32::NAN;
    let e = m.encode(x.view()).unwrap_err().to_string();
    assert!(e.contains("row 3") && e.contains("NaN"), "{e}");
    let e = m
        .encode(Array2::<f32>::zeros((2, 100)).view())
        .unwrap_err()
        .to_string();
    assert!(e.contains("1×28×28"), "{e}");
    let e = m
        .decode(Array2::<f32>::zeros((2, 3)).view())
        .unwrap_err()
        .to_string();
    assert!(e.contains("latent size is 8"), "{e}");
}
