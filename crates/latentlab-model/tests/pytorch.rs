//! A checkpoint PyTorch wrote loads and behaves like the PyTorch model.
//!
//! `tests/data/torch/` was written by `benches/peers/torch_fixture.py`:
//! DESIGN.md's module (784-48-24-6, ReLU, Bernoulli), trained briefly, saved
//! with `safetensors.torch.save_file(model.state_dict())`, and PyTorch's own
//! outputs on the first 32 test digits of mnist-10k.

mod common;
use common::max_abs_diff;

use latentlab_data::mnist_10k;
use latentlab_model::{Checkpoint, LatentModel, LoadOptions, ModelKind, Vae};
use latentlab_tensor::{Backend, Cpu, Shape, conformance::test_gpu};
use ndarray::{Array2, s};

const DIR: &str = "torch";

fn fixture(name: &str) -> std::path::PathBuf {
    common::fixture(DIR, name)
}

fn expected(name: &str) -> Array2<f32> {
    common::expected(DIR, name)
}

fn check<B: Backend>(backend: B, tol: f32) {
    let ck = Checkpoint::read(fixture("model.safetensors"), &LoadOptions::default())
        .expect("PyTorch's file loads");
    assert!(!ck.has_config, "PyTorch wrote no latentlab metadata");
    assert_eq!(ck.config.kind, ModelKind::Vae);
    assert_eq!(
        (
            ck.config.input_dim,
            ck.config.hidden.clone(),
            ck.config.latent
        ),
        (784, vec![48, 24], 6),
        "the architecture is inferred from names and shapes"
    );
    let model: Vae<B> = ck.model(backend).expect("model");
    let name = model.backend().name();
    let x = mnist_10k().test.images.slice(s![..32, ..]).to_owned();

    let post = model.encode(x.view()).expect("encode");
    let (mu, logvar) = (expected("mu.npy"), expected("logvar.npy"));
    let d_mu = max_abs_diff(&post.mu, &mu);
    let d_lv = max_abs_diff(&post.logvar, &logvar);
    let decoded = model.decode(mu.view()).expect("decode");
    let d_dec = max_abs_diff(&decoded, &expected("decoded.npy"));
    let z = model
        .backend()
        .upload(mu.as_slice().expect("standard layout"), Shape::new(32, 6))
        .expect("upload");
    let logits = model.decode_raw_device(&z).expect("decode raw");
    let logits = Array2::from_shape_vec(
        (32, 784),
        model.backend().download(&logits).expect("download"),
    )
    .expect("32×784");
    let d_logits = max_abs_diff(&logits, &expected("logits.npy"));
    eprintln!(
        "{name}: max |Δ| against PyTorch: mu {d_mu:.2e}, logvar {d_lv:.2e}, decoded {d_dec:.2e}, logits {d_logits:.2e}"
    );
    assert!(d_mu <= tol && d_lv <= tol, "{name}: encode differs");
    assert!(d_dec <= tol, "{name}: decode differs");
    // Logits reach ±20; compare them relative to their size.
    assert!(d_logits <= tol * 20.0, "{name}: raw decoder output differs");
}

#[test]
fn a_pytorch_checkpoint_encodes_and_decodes_as_pytorch_does_on_the_cpu() {
    check(Cpu::new(), 1e-5);
}

#[test]
fn a_pytorch_checkpoint_encodes_and_decodes_as_pytorch_does_on_the_gpu() {
    if let Some(gpu) = test_gpu() {
        check(gpu, 1e-5);
    }
}
