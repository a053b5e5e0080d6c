//! A convolutional checkpoint PyTorch wrote loads, encodes, decodes and takes
//! the same gradient step as PyTorch; latentlab's own conv checkpoint keeps
//! PyTorch's names and shapes.
//!
//! `tests/data/torch-conv64/` was written by
//! `benches/peers/torch_conv_fixture.py`: DESIGN.md's conv64 module (one
//! channel, latent 6) after 20 Adam steps, saved with
//! `safetensors.torch.save_file(model.state_dict())`, with PyTorch's outputs
//! on 8 zero-padded test digits and its gradients of `mean(rec + 4·KL)` at a
//! given ε.

mod common;
use common::max_abs_diff;

use latentlab_model::{Checkpoint, LatentModel, LayerSpec, LoadOptions, ModelKind, Stacks, Vae};
use latentlab_tensor::{Backend, Cpu, Shape, conformance::test_gpu};
use ndarray::Array2;
use safetensors::SafeTensors;

const DIR: &str = "torch-conv64";

fn fixture(name: &str) -> std::path::PathBuf {
    common::fixture(DIR, name)
}

fn expected(name: &str) -> Array2<f32> {
    common::expected(DIR, name)
}

fn check<B: Backend>(backend: B, tol: f32) {
    let ck = Checkpoint::read(fixture("model.safetensors"), &LoadOptions::default())
        .expect("PyTorch's conv file loads");
    assert!(!ck.has_config);
    assert_eq!(ck.config.kind, ModelKind::Vae);
    assert_eq!(
        ck.config.stacks,
        Some(Stacks::conv64(1)),
        "the conv64 stack is inferred from names and shapes"
    );
    assert_eq!((ck.config.input_dim, ck.config.latent), (4096, 6));
    let model: Vae<B> = ck.model(backend).expect("model");
    let be = model.backend().clone();
    let name = be.name();
    let x = expected("x.npy");

    let post = model.encode(x.view()).expect("encode");
    let d_mu = max_abs_diff(&post.mu, &expected("mu.npy"));
    let d_lv = max_abs_diff(&post.logvar, &expected("logvar.npy"));
    let mu = expected("mu.npy");
    let d_dec = max_abs_diff(
        &model.decode(mu.view()).expect("decode"),
        &expected("decoded.npy"),
    );
    let logits = be
        .download(
            &model
                .decode_raw_device(&be.upload(mu.as_slice().unwrap(), Shape::new(8, 6)).unwrap())
                .unwrap(),
        )
        .unwrap();
    let logits = Array2::from_shape_vec((8, 4096), logits).unwrap();
    let d_logits = max_abs_diff(&logits, &expected("logits.npy"));
    eprintln!(
        "{name}: |Δmu| {d_mu:e} |Δlogvar| {d_lv:e} |Δdecoded| {d_dec:e} |Δlogits| {d_logits:e}"
    );
    for (what, d) in [
        ("mu", d_mu),
        ("logvar", d_lv),
        ("decoded", d_dec),
        ("logits", d_logits),
    ] {
        assert!(d <= tol, "{name}: {what} differs from PyTorch's by {d}");
    }

    // One step's gradients from the same weights, batch and ε.
    let xt = be
        .upload(x.as_slice().unwrap(), Shape::new(8, 4096))
        .unwrap();
    let eps = expected("eps.npy");
    let et = be
        .upload(eps.as_slice().unwrap(), Shape::new(8, 6))
        .unwrap();
    let hp = common::parity_step();
    let (stats, grads) = model
        .gradients_with_noise(&xt, &et, &hp)
        .expect("gradients");
    let want_loss = f64::from(expected("loss.npy")[[0, 0]]);
    assert!(
        (stats.loss - want_loss).abs() <= 1e-5 * want_loss.abs(),
        "{name}: loss {} vs PyTorch's {want_loss}",
        stats.loss
    );
    let bytes = std::fs::read(fixture("grads.safetensors")).unwrap();
    let torch = SafeTensors::deserialize(&bytes).unwrap();
    let grads = grads.expect("a finite loss");
    let mut worst = (0.0f64, String::new());
    for (p, g) in model.config().parameters().iter().zip(&grads.grads) {
        let g = g.as_ref().expect("conv64 has no buffer");
        let t = torch
            .tensor(&p.name)
            .unwrap_or_else(|_| panic!("{} in the fixture", p.name));
        assert_eq!(t.shape(), p.dims, "{}", p.name);
        let want: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let got = be.download(g).unwrap();
        // Relative to the tensor's largest gradient.
        let rel = f64::from(common::relative_to(&got, &want, 0.0));
        if rel > worst.0 {
            worst = (rel, p.name.clone());
        }
    }
    eprintln!(
        "{name}: worst gradient {:e} relative ({})",
        worst.0, worst.1
    );
    assert!(
        worst.0 <= 1e-5,
        "{name}: gradient {} differs by {:e} of its largest value",
        worst.1,
        worst.0
    );
}

#[test]
fn pytorch_conv64_matches_on_the_cpu() {
    check(Cpu::new(), 1e-5);
}

#[test]
fn pytorch_conv64_matches_on_the_gpu() {
    if let Some(gpu) = test_gpu() {
        check(gpu, 1e-5);
    }
}

#[test]
fn conv_checkpoints_keep_pytorch_names_and_shapes() {
    let ck = Checkpoint::read(fixture("model.safetensors"), &LoadOptions::default()).unwrap();
    let model = ck.model(Cpu::new()).unwrap();
    let dir = std::env::temp_dir().join(format!("latentlab-conv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("conv.safetensors");
    latentlab_model::checkpoint::save(&model, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let ours = SafeTensors::deserialize(&bytes).unwrap();
    let theirs_bytes = std::fs::read(fixture("model.safetensors")).unwrap();
    let theirs = SafeTensors::deserialize(&theirs_bytes).unwrap();
    let mut a = ours.names();
    let mut b = theirs.names();
    a.sort();
    b.sort();
    assert_eq!(a, b, "the same state_dict keys");
    for n in b {
        let (x, y) = (ours.tensor(n).unwrap(), theirs.tensor(n).unwrap());
        assert_eq!(x.shape(), y.shape(), "{n}");
        assert_eq!(x.data(), y.data(), "{n}: the values round-trip bit for bit");
    }
    // And it reads back with its config.
    let back = Checkpoint::read(&path, &LoadOptions::default()).unwrap();
    assert!(back.has_config);
    assert_eq!(back.config.stacks, Some(Stacks::conv64(1)));
    assert!(matches!(
        back.config.stacks.as_ref().unwrap().encoder[0],
        LayerSpec::Conv2d { out: 32, .. }
    ));
    std::fs::remove_dir_all(&dir).ok();
}

/// The conv64 fixture under another naming scheme (DataParallel's `module.`
/// and other child names), written to `dir`.
fn renamed_copy(dir: &std::path::Path) -> std::path::PathBuf {
    let bytes = std::fs::read(fixture("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let rename = |n: &str| {
        let n = n
            .replacen("encoder.", "enc.net.", 1)
            .replacen("decoder.", "dec.net.", 1);
        format!("module.{n}")
    };
    let tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (rename(&n), t))
        .collect();
    let out = dir.join("renamed.safetensors");
    std::fs::write(&out, safetensors::serialize(tensors, None).unwrap()).unwrap();
    out
}

#[test]
fn renamed_state_dicts_load_through_prefix_rules() {
    use latentlab_model::Rename;
    let dir = std::env::temp_dir().join(format!("latentlab-rename-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = renamed_copy(&dir);
    let rules = |r: &[&str]| LoadOptions {
        renames: r.iter().map(|s| s.parse::<Rename>().unwrap()).collect(),
        ..LoadOptions::default()
    };
    let e = Checkpoint::read(&path, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("fc_mu.weight") && e.contains("module."), "{e}");
    // The first rule that matches applies: the catch-all comes last.
    let ck = Checkpoint::read(
        &path,
        &rules(&[
            "module.enc.net.=encoder.",
            "module.dec.net.=decoder.",
            "module.=",
        ]),
    )
    .expect("the renamed file loads");
    let original = Checkpoint::read(fixture("model.safetensors"), &LoadOptions::default()).unwrap();
    assert_eq!(ck.config, original.config);
    assert_eq!(
        ck.params, original.params,
        "the same tensors under our names"
    );
    // A rule that matches nothing is a mistake worth naming.
    let e = Checkpoint::read(&path, &rules(&["module.=", "modul.enc.=encoder."]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("renaming rule modul.enc.=encoder.") && e.contains("no tensor"),
        "{e}"
    );
    // Two tensors mapped onto one name.
    let e = Checkpoint::read(
        &path,
        &rules(&["module.enc.net.=x.", "module.dec.net.=x.", "module.="]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("would both be read as x."), "{e}");
    assert!("=encoder.".parse::<Rename>().is_err());
    assert!("encoder".parse::<Rename>().is_err());
    std::fs::remove_dir_all(&dir).ok();
}
