//! Every input of the fuzz corpus (`fuzz/corpus/<target>/`) and every crash
//! the fuzzers ever found (`fuzz/regressions/<target>/`) goes through the
//! same code as its fuzz target, in the normal suite: a clean result or a
//! clean error, never a panic.

use std::path::{Path, PathBuf};

use latentlab::data::matrix::RawMatrix;
use latentlab::data::{idx, npy};
use latentlab::manipulate::Manipulator;
use latentlab::model::{Checkpoint, IdentityModel, LoadOptions, ModelConfig, Stacks};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut files = Vec::new();
    for kind in ["corpus", "regressions"] {
        if let Ok(dir) = std::fs::read_dir(root.join(kind).join(target)) {
            files.extend(dir.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    files
}

/// Runs `f` on every input of `target`; returns how many parsed.
fn each(target: &str, f: impl Fn(&Path, &[u8]) -> bool) -> usize {
    let files = inputs(target);
    assert!(!files.is_empty(), "no corpus for {target}");
    files
        .iter()
        .filter(|p| f(p, &std::fs::read(p).unwrap()))
        .count()
}

#[test]
fn idx_inputs() {
    let ok = each("idx", |p, b| idx::parse(p, b).is_ok());
    assert!(ok >= 3, "the seed files parse");
}

#[test]
fn image_inputs() {
    use latentlab::data::images::{decode_image, image_header};
    let ok = each("image", |_, b| {
        let Ok(h) = image_header(b) else {
            return false;
        };
        let mut row = vec![0.0f32; 3 * 8 * 6];
        u64::from(h.width) * u64::from(h.height) <= 1 << 16
            && decode_image(b, 3, (8, 6), true, &mut row).is_ok()
    });
    assert!(ok >= 2, "the seed PNG and JPEG decode ({ok})");
}

#[test]
fn npz_inputs() {
    let ok = each("npz", |p, b| {
        latentlab::data::npz::parse_dsprites_npz(p, std::io::Cursor::new(b))
            .map(|f| f.images.rows(&[0]).len())
            .is_ok()
    });
    assert!(ok >= 1, "the seed grid reads ({ok})");
}

#[test]
fn onnx_inputs() {
    use latentlab::model::LatentModel;
    use latentlab::onnx::{DecoderOutput, OnnxModel};
    // A panic inside tract is caught and reported as "the reader failed
    // (…)"; no input of the corpus may need that net.
    let caught = |p: &Path, e: &dyn std::fmt::Display| {
        let e = e.to_string();
        assert!(!e.contains("the reader failed"), "{}: {e}", p.display());
        if p.ends_with("conv_three_pads.onnx") {
            assert!(e.contains("`pads` has 3 entries"), "{e}");
        }
    };
    let ok = each("onnx", |p, b| {
        let enc = match OnnxModel::from_bytes(Some((p, b)), None, DecoderOutput::Logits) {
            Ok(m) => {
                m.input_dim() <= 1 << 12
                    && m.encode(ndarray::Array2::zeros((1, m.input_dim())).view())
                        .is_ok()
            }
            Err(e) => {
                caught(p, &e);
                false
            }
        };
        let dec = match OnnxModel::from_bytes(None, Some((p, b)), DecoderOutput::Mean) {
            Ok(_) => true,
            Err(e) => {
                caught(p, &e);
                false
            }
        };
        enc || dec
    });
    assert!(
        ok >= 3,
        "the seed encoders encode and the decoder opens ({ok})"
    );
}

#[test]
fn npy_inputs() {
    let ok = each("npy", |p, b| npy::parse(p, b).map(|a| a.to_f64()).is_ok());
    assert!(ok >= 4);
}

#[test]
fn checkpoint_inputs() {
    let ok = each("checkpoint", |p, b| {
        match Checkpoint::parse(p, b, &LoadOptions::default()) {
            Ok(ck) if ck.config.input_dim * ck.config.latent < 1 << 20 => {
                ck.model(latentlab::tensor::Cpu::new()).is_ok()
            }
            _ => false,
        }
    });
    assert!(ok >= 3, "the seed checkpoints load ({ok})");
}

#[test]
fn arch_inputs() {
    let ok = each("arch", |_, b| {
        let Ok(stacks) = serde_json::from_slice::<Stacks>(b) else {
            return false;
        };
        let mut any = false;
        for (c, h, w) in [(1, 28, 28), (3, 64, 64), (1, 1, 5)] {
            let cfg = ModelConfig {
                input_dim: c * h * w,
                image_shape: Some((h, w)),
                channels: c,
                stacks: Some(stacks.clone()),
                ..ModelConfig::mnist(4)
            };
            if cfg.validate().is_ok() {
                any = cfg.parameter_count() > 0 && !cfg.describe().is_empty();
            }
        }
        any
    });
    assert!(ok >= 3, "the seed stacks build ({ok})");
}

#[test]
fn attribute_inputs() {
    let m = IdentityModel(4);
    let ok = each("attributes", |p, b| {
        Manipulator::new(&m).load_bytes(p, b).is_ok()
    });
    assert!(ok >= 1);
}

#[test]
fn latent_inputs() {
    let ok = each("latents", |p, _| {
        let mut any = false;
        for mut m in [RawMatrix::open_npy(p), RawMatrix::open_safetensors(p, "mu")]
            .into_iter()
            .flatten()
        {
            let rows = m.rows().min(4);
            any |= m.read_rows(0, rows).is_ok();
            let _ = m.read_selected(&[0, m.rows().saturating_sub(1)]);
        }
        any
    });
    assert!(ok >= 2);
}

#[test]
fn study_inputs() {
    use latentlab_cli::study::grid::check_without_data;
    use latentlab_cli::study::plan::Plan;
    let ok = each("study", |_, b| {
        let Ok(text) = std::str::from_utf8(b) else {
            return false;
        };
        let grid = check_without_data(text).is_ok();
        let plan = Plan::parse(text, Path::new("study")).is_ok();
        grid || plan
    });
    assert!(ok >= 2, "the seed grid and plan parse ({ok})");
}
