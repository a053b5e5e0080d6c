//! The latent terms of β-TCVAE (both estimators), DIP-VAE-I/-II and MMD
//! (both kernels), IWAE's bound and FactorVAE's discriminator, against an independent PyTorch implementation written
//! from the papers' equations, with autograd's gradients
//! (`benches/peers/objectives_fixture.py`): the same batch, weights and
//! prior draws, to 1e-5 relative.

use latentlab_model::objective::{
    DipVariant, IwaeBatch, LatentBatch, LatentLoss, MmdKernel, TcEstimator, beta_tcvae, dip, iwae,
    mmd,
};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

/// |a − b| ≤ 1e-5 · max(|b|, scale), elementwise; `scale` keeps entries
/// that are zero up to rounding from demanding a relative match.
fn close(name: &str, a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{name}: lengths");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * y.abs().max(1e-3 * scale),
            "{name}[{i}]: latentlab {x}, PyTorch {y}"
        );
    }
}

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/objectives.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_iwae_bound_matches_pytorch_autograd() {
    let doc = fixture();
    let w = &doc["iwae"];
    let (mu, lv, z, nll) = (
        floats(&doc["mu"]),
        floats(&doc["logvar"]),
        floats(&w["z"]),
        floats(&w["nll"]),
    );
    let got = iwae(&IwaeBatch {
        mu: &mu,
        logvar: &lv,
        z: &z,
        nll: &nll,
        rows: doc["rows"].as_u64().unwrap() as usize,
        dims: doc["dims"].as_u64().unwrap() as usize,
        samples: w["samples"].as_u64().unwrap() as usize,
    })
    .unwrap();
    close("iwae loss", &[got.loss], &[w["loss"].as_f64().unwrap()]);
    assert_eq!(got.parts[0].0, "iw_bound");
    close(
        "iwae bound",
        &[got.parts[0].1],
        &[w["iw_bound"].as_f64().unwrap()],
    );
    close("iwae ∂/∂mu", &got.grad_mu, &floats(&w["grad_mu"]));
    close(
        "iwae ∂/∂logvar",
        &got.grad_logvar,
        &floats(&w["grad_logvar"]),
    );
    close("iwae ∂/∂z", &got.grad_z, &floats(&w["grad_z"]));
    close("iwae ∂/∂nll", &got.nll_weights, &floats(&w["grad_nll"]));
}

/// [`close`] for the discriminator, which runs in f32 on the backend
/// against PyTorch's float64 on the same f32 inputs: each entry to 1e-5
/// relative, or to 1e-6 of its tensor's largest entry where that is looser.
/// A gradient summed over the batch cancels (a bias's ½(softmax − one-hot)
/// terms nearly sum to zero), and f32's rounding of the terms stays.
fn close_f32(name: &str, a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{name}: lengths");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * y.abs().max(0.1 * scale),
            "{name}[{i}]: latentlab {x}, PyTorch {y}"
        );
    }
}

#[test]
fn factor_vae_s_discriminator_matches_pytorch_autograd() {
    use latentlab_model::discriminator::{Discriminator, DiscriminatorSpec};
    use latentlab_tensor::{Backend, Cpu, Shape};
    let doc = fixture();
    let f = &doc["factor_vae"];
    let (rows, dims) = (
        doc["rows"].as_u64().unwrap() as usize,
        doc["dims"].as_u64().unwrap() as usize,
    );
    let tensors = |v: &Value| -> Vec<Vec<f32>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| floats(t).into_iter().map(|x| x as f32).collect())
            .collect()
    };
    let spec = DiscriminatorSpec {
        width: f["width"].as_u64().unwrap() as usize,
        depth: f["depth"].as_u64().unwrap() as usize,
        ..DiscriminatorSpec::default()
    };
    let cpu = Cpu::sequential();
    let mut d = Discriminator::from_host(cpu, dims, spec, tensors(&f["weights"]), None, 0).unwrap();
    let up = |v: &Value| {
        let x: Vec<f32> = floats(v).into_iter().map(|x| x as f32).collect();
        cpu.upload(&x, Shape::new(rows, dims)).unwrap()
    };
    let (z, shuffled) = (up(&f["z"]), up(&f["z_shuffled"]));
    let t = d
        .terms(&z, &shuffled, f["gamma"].as_f64().unwrap())
        .unwrap();
    let f32s = |t: &<Cpu as Backend>::Tensor| -> Vec<f64> {
        cpu.download(t)
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    };
    close_f32("tc", &[t.tc], &[f["tc"].as_f64().unwrap()]);
    close_f32("∂γTC/∂z", &f32s(&t.grad_z), &floats(&f["grad_z"]));
    close_f32("disc loss", &[t.loss], &[f["disc_loss"].as_f64().unwrap()]);
    assert_eq!(t.accuracy, f["accuracy"].as_f64().unwrap());
    let want = f["disc_grads"].as_array().unwrap();
    for (k, (g, w)) in t.grads.iter().zip(want).enumerate() {
        close_f32(&format!("disc ∂/∂θ{k}"), &f32s(g), &floats(w));
    }
    // Two Adam steps on the same codes (the second tells the betas apart).
    d.apply(&t.grads).unwrap();
    let again = d.terms(&z, &shuffled, 1.0).unwrap();
    d.apply(&again.grads).unwrap();
    assert_eq!(d.step(), 2);
    let (after, _, _) = d.to_host().unwrap();
    for (k, (a, w)) in after
        .iter()
        .zip(f["after_adam"].as_array().unwrap())
        .enumerate()
    {
        let a: Vec<f64> = a.iter().map(|&x| f64::from(x)).collect();
        close_f32(&format!("disc θ{k} after Adam"), &a, &floats(w));
    }
}

#[test]
fn latent_terms_match_pytorch_autograd() {
    let doc = fixture();
    let (mu, lv, z, prior) = (
        floats(&doc["mu"]),
        floats(&doc["logvar"]),
        floats(&doc["z"]),
        floats(&doc["prior"]),
    );
    let batch = LatentBatch {
        mu: &mu,
        logvar: &lv,
        z: &z,
        rows: doc["rows"].as_u64().unwrap() as usize,
        dims: doc["dims"].as_u64().unwrap() as usize,
    };
    let n = doc["dataset_size"].as_u64().unwrap() as usize;
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    for case in cases {
        let p = &case["params"];
        let f = |k: &str| p[k].as_f64().unwrap();
        let got: LatentLoss = match case["objective"].as_str().unwrap() {
            "beta_tcvae" => {
                let est = match p["estimator"].as_str().unwrap() {
                    "mws" => TcEstimator::Mws,
                    _ => TcEstimator::Mss,
                };
                beta_tcvae(&batch, (f("alpha"), f("beta"), f("gamma")), est, n).unwrap()
            }
            "dip" => {
                let v = match p["variant"].as_str().unwrap() {
                    "i" => DipVariant::I,
                    _ => DipVariant::Ii,
                };
                dip(&batch, v, f("lambda_od"), f("lambda_d")).unwrap()
            }
            "mmd" => {
                let k = match p["kernel"].as_str().unwrap() {
                    "rbf" => MmdKernel::Rbf { scale: f("scale") },
                    _ => MmdKernel::InverseMultiquadratic { scale: f("scale") },
                };
                mmd(&batch, &prior, k, f("lambda")).unwrap()
            }
            other => panic!("unknown objective {other}"),
        };
        let name = format!("{} {p}", case["objective"]);
        close(
            &format!("{name} loss"),
            &[got.loss],
            &[case["loss"].as_f64().unwrap()],
        );
        for (part, value) in &got.parts {
            let want = case["parts"][*part].as_f64().unwrap_or(f64::NAN);
            close(&format!("{name} {part}"), &[*value], &[want]);
        }
        close(
            &format!("{name} ∂/∂mu"),
            &got.grad_mu,
            &floats(&case["grad_mu"]),
        );
        close(
            &format!("{name} ∂/∂logvar"),
            &got.grad_logvar,
            &floats(&case["grad_logvar"]),
        );
        close(
            &format!("{name} ∂/∂z"),
            &got.grad_z,
            &floats(&case["grad_z"]),
        );
    }
}
