//! A PyTorch VAE whose modules are not a flat `nn.Sequential` (an encoder
//! of `nn.Sequential` blocks with BatchNorm under `features`, heads `mu`
//! and `logvar`, a decoder with `project` and `blocks`) loads through a
//! layer specification that names each layer's module, and encodes and
//! decodes as PyTorch does.
//!
//! `tests/data/torch-nested/` was written by
//! `benches/peers/torch_nested_fixture.py`.

mod common;
use common::max_abs_diff;

use latentlab_model::{Checkpoint, LatentModel, LoadOptions, Vae, parse_named_stacks};
use latentlab_tensor::{Backend, Cpu, Shape};
use ndarray::Array2;

const DIR: &str = "torch-nested";

fn options() -> LoadOptions {
    let json = std::fs::read_to_string(common::fixture(DIR, "arch.json")).unwrap();
    let named = parse_named_stacks(&json).expect("the fixture's named stacks");
    LoadOptions {
        stacks: Some(named.stacks),
        renames: named.renames,
        ..LoadOptions::default()
    }
}

#[test]
fn a_nested_module_tree_loads_by_its_names_and_matches_pytorch() {
    let ck = Checkpoint::read(common::fixture(DIR, "model.safetensors"), &options())
        .expect("the nested state_dict loads through its names");
    let model: Vae<Cpu> = ck.model(Cpu::new()).expect("model");
    let be = *model.backend();
    let x = common::expected(DIR, "x.npy");
    let post = model.encode(x.view()).expect("encode");
    let mu = common::expected(DIR, "mu.npy");
    let z = be.upload(mu.as_slice().unwrap(), Shape::new(8, 4)).unwrap();
    let logits = be.download(&model.decode_raw_device(&z).unwrap()).unwrap();
    let logits = Array2::from_shape_vec((8, 784), logits).unwrap();
    for (what, d) in [
        ("mu", max_abs_diff(&post.mu, &mu)),
        (
            "logvar",
            max_abs_diff(&post.logvar, &common::expected(DIR, "logvar.npy")),
        ),
        (
            "logits",
            max_abs_diff(&logits, &common::expected(DIR, "logits.npy")),
        ),
    ] {
        assert!(d <= 1e-5, "{what} differs from PyTorch's by {d}");
    }
}

#[test]
fn names_that_do_not_fit_are_errors() {
    let json = std::fs::read_to_string(common::fixture(DIR, "arch.json")).unwrap();
    // Without the names the file's tensors are not latentlab's.
    let bare: serde_json::Value = serde_json::from_str(&json).unwrap();
    let strip = |mut v: serde_json::Value| {
        for part in ["encoder", "decoder"] {
            for l in v[part].as_array_mut().unwrap() {
                l.as_object_mut().unwrap().remove("name");
            }
        }
        v.as_object_mut().unwrap().remove("heads");
        v
    };
    let plain = parse_named_stacks(&strip(bare).to_string()).unwrap();
    assert!(plain.renames.is_empty());
    let opts = LoadOptions {
        stacks: Some(plain.stacks),
        ..LoadOptions::default()
    };
    let err = Checkpoint::read(common::fixture(DIR, "model.safetensors"), &opts)
        .and_then(|ck| ck.model(Cpu::new()).map(|_| ()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("encoder.0.weight") || err.contains("fc_mu"),
        "{err}"
    );

    let bad = [
        (
            json.replacen("\"enc.fc\"", "\"enc.features.0.0\"", 1),
            "named twice",
        ),
        (
            json.replacen(
                "\"kind\": \"relu\"",
                "\"kind\": \"relu\", \"name\": \"x\"",
                1,
            ),
            "no tensors to name",
        ),
        (
            json.replacen("\"enc.fc\"", "\"enc.fc.\"", 1),
            "not a module path",
        ),
        (
            json.replacen("\"fc_mu\"", "\"fc_sigma\"", 1),
            "neither fc_mu nor fc_logvar",
        ),
        (
            json.replacen("\"heads\"", "\"tails\"", 1),
            "unknown key `tails`",
        ),
        (
            json.replacen("\"name\": \"enc.fc\"", "\"name\": 3", 1),
            "must be a string",
        ),
    ];
    for (text, want) in bad {
        let err = parse_named_stacks(&text).unwrap_err();
        assert!(err.contains(want), "{want}: {err}");
    }
    // A name for a module the file does not have.
    let wrong = parse_named_stacks(&json.replacen("\"enc.fc\"", "\"enc.head\"", 1)).unwrap();
    let opts = LoadOptions {
        stacks: Some(wrong.stacks),
        renames: wrong.renames,
        ..LoadOptions::default()
    };
    let err = Checkpoint::read(common::fixture(DIR, "model.safetensors"), &opts)
        .and_then(|ck| ck.model(Cpu::new()).map(|_| ()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("enc.head."), "{err}");
}
