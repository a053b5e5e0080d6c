//! Batch normalisation against PyTorch: a checkpoint PyTorch wrote from a
//! small convolutional VAE with `BatchNorm2d` (with and without γ/β, another
//! momentum) and `BatchNorm1d` (another ε) loads through its stacks given as
//! JSON; it encodes and decodes in evaluation mode (running statistics) as
//! PyTorch does; one training-mode step from the same weights, batch and ε
//! gives PyTorch's loss, gradients and updated running statistics; and
//! latentlab writes the same `state_dict` back, `num_batches_tracked` as an
//! `int64` scalar.
//!
//! `tests/data/torch-bn/` was written by `benches/peers/torch_bn_fixture.py`.

mod common;
use common::max_abs_diff;

use latentlab_model::{Checkpoint, LatentModel, LoadOptions, Role, Stacks, Vae};
use latentlab_tensor::{Backend, Cpu, Shape, conformance::test_gpu};
use ndarray::Array2;
use safetensors::{Dtype, SafeTensors};

const DIR: &str = "torch-bn";

fn fixture(name: &str) -> std::path::PathBuf {
    common::fixture(DIR, name)
}

fn expected(name: &str) -> Array2<f32> {
    common::expected(DIR, name)
}

fn options() -> LoadOptions {
    let json = std::fs::read_to_string(fixture("arch.json")).unwrap();
    let stacks: Stacks = serde_json::from_str(&json).expect("the fixture's stacks");
    LoadOptions {
        stacks: Some(stacks),
        ..LoadOptions::default()
    }
}

/// A tensor of a safetensors file as f32 (int64 counts converted).
fn values(st: &SafeTensors<'_>, name: &str) -> Vec<f32> {
    let t = st
        .tensor(name)
        .unwrap_or_else(|_| panic!("{name} in the fixture"));
    match t.dtype() {
        Dtype::F32 => t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::I64 => t
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect(),
        d => panic!("{name}: {d:?}"),
    }
}

fn check<B: Backend>(backend: B) {
    let ck = Checkpoint::read(fixture("model.safetensors"), &options())
        .expect("PyTorch's batch-norm file loads with its stacks");
    assert!(!ck.has_config);
    assert_eq!(
        (ck.config.channels, ck.config.image_shape),
        (1, Some((28, 28)))
    );
    let model: Vae<B> = ck.model(backend).expect("model");
    let be = model.backend().clone();
    let name = be.name();
    let x = expected("x.npy");

    // Evaluation mode.
    let post = model.encode(x.view()).expect("encode");
    let d_mu = max_abs_diff(&post.mu, &expected("mu.npy"));
    let d_lv = max_abs_diff(&post.logvar, &expected("logvar.npy"));
    let mu = expected("mu.npy");
    let z = be.upload(mu.as_slice().unwrap(), Shape::new(8, 4)).unwrap();
    let logits = be.download(&model.decode_raw_device(&z).unwrap()).unwrap();
    let logits = Array2::from_shape_vec((8, 784), logits).unwrap();
    let d_logits = max_abs_diff(&logits, &expected("logits.npy"));
    eprintln!("{name}: eval |Δmu| {d_mu:e} |Δlogvar| {d_lv:e} |Δlogits| {d_logits:e}");
    for (what, d) in [("mu", d_mu), ("logvar", d_lv), ("logits", d_logits)] {
        assert!(d <= 1e-5, "{name}: {what} differs from PyTorch's by {d}");
    }

    // One training-mode step.
    let xt = be
        .upload(x.as_slice().unwrap(), Shape::new(8, 784))
        .unwrap();
    let eps = expected("eps.npy");
    let et = be
        .upload(eps.as_slice().unwrap(), Shape::new(8, 4))
        .unwrap();
    let hp = common::parity_step();
    let (stats, grads) = model.gradients_with_noise(&xt, &et, &hp).unwrap();
    let want_loss = f64::from(expected("loss.npy")[[0, 0]]);
    assert!(
        (stats.loss - want_loss).abs() <= 1e-5 * want_loss.abs(),
        "{name}: loss {} vs PyTorch's {want_loss}",
        stats.loss
    );
    let grads = grads.expect("a finite loss");
    let gbytes = std::fs::read(fixture("grads.safetensors")).unwrap();
    let torch_grads = SafeTensors::deserialize(&gbytes).unwrap();
    let bbytes = std::fs::read(fixture("buffers.safetensors")).unwrap();
    let torch_buffers = SafeTensors::deserialize(&bbytes).unwrap();
    let params = model.config().parameters();
    let mut worst = (0.0f32, String::new());
    let mut buffers = 0;
    for (k, p) in params.iter().enumerate() {
        let (got, want) = match (&grads.grads[k], p.role) {
            (Some(g), Role::Trainable) => (be.download(g).unwrap(), values(&torch_grads, &p.name)),
            (None, Role::Buffer | Role::Count) => {
                let (_, t) = grads
                    .buffers
                    .iter()
                    .find(|(i, _)| *i == k)
                    .unwrap_or_else(|| panic!("{}: updated by the step", p.name));
                buffers += 1;
                (be.download(t).unwrap(), values(&torch_buffers, &p.name))
            }
            (g, role) => panic!("{}: {role:?} with a gradient {}", p.name, g.is_some()),
        };
        // A bias that feeds a batch normalisation has no gradient (the
        // normalisation removes it): both sides hold rounding noise, which
        // is measured against the layer's weight gradient instead.
        let weight = p.name.replace(".bias", ".weight");
        let floor = match p.role {
            Role::Trainable if weight != p.name && torch_grads.tensor(&weight).is_ok() => {
                values(&torch_grads, &weight)
                    .iter()
                    .fold(0.0f32, |m, v| m.max(v.abs()))
            }
            _ => 0.0,
        };
        let d = common::relative_to(&got, &want, floor);
        if d > worst.0 {
            worst = (d, p.name.clone());
        }
    }
    eprintln!(
        "{name}: train step: worst gradient or buffer {:e} ({}), loss {} vs {want_loss}",
        worst.0, worst.1, stats.loss
    );
    assert_eq!(
        buffers,
        4 * 3,
        "four batch normalisations, three buffers each"
    );
    assert!(
        worst.0 <= 1e-5,
        "{name}: {} differs by {:e}",
        worst.1,
        worst.0
    );
}

#[test]
fn pytorch_batch_norm_matches_on_the_cpu() {
    check(Cpu::new());
}

#[test]
fn pytorch_batch_norm_matches_on_the_gpu() {
    if let Some(gpu) = test_gpu() {
        check(gpu);
    }
}

#[test]
fn batch_norm_checkpoints_keep_pytorch_names_types_and_values() {
    let ck = Checkpoint::read(fixture("model.safetensors"), &options()).unwrap();
    let model = ck.model(Cpu::new()).unwrap();
    let dir = std::env::temp_dir().join(format!("latentlab-bn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bn.safetensors");
    latentlab_model::checkpoint::save(&model, &path).unwrap();
    let ours_bytes = std::fs::read(&path).unwrap();
    let ours = SafeTensors::deserialize(&ours_bytes).unwrap();
    let theirs_bytes = std::fs::read(fixture("model.safetensors")).unwrap();
    let theirs = SafeTensors::deserialize(&theirs_bytes).unwrap();
    let (mut a, mut b) = (ours.names(), theirs.names());
    a.sort();
    b.sort();
    assert_eq!(a, b, "the same state_dict keys");
    for n in b {
        let (x, y) = (ours.tensor(n).unwrap(), theirs.tensor(n).unwrap());
        assert_eq!((x.dtype(), x.shape()), (y.dtype(), y.shape()), "{n}");
        assert_eq!(x.data(), y.data(), "{n}: the values round-trip bit for bit");
    }
    // Our own file reads back without the stacks: its config has them.
    let back = Checkpoint::read(&path, &LoadOptions::default()).unwrap();
    assert!(back.has_config);
    assert_eq!(back.params, ck.params);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_negative_running_variance_is_a_clear_error() {
    let mut ck = Checkpoint::read(fixture("model.safetensors"), &options()).unwrap();
    let k = ck
        .config
        .parameters()
        .iter()
        .position(|p| p.name == "encoder.1.running_var")
        .unwrap();
    ck.params[k][3] = -0.5;
    let e = ck.model(Cpu::new()).unwrap_err().to_string();
    assert!(
        e.contains("encoder.1.running_var[3] = -0.5 is a negative variance"),
        "{e}"
    );
}

#[test]
fn a_file_without_its_stacks_is_a_clear_error() {
    let e = Checkpoint::read(fixture("model.safetensors"), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--checkpoint-arch"), "{e}");
}
