//! The latent terms of β-TCVAE (both estimators), DIP-VAE-I/-II and MMD
//! (both kernels) against an independent PyTorch implementation written
//! from the papers' equations, with autograd's gradients
//! (`benches/peers/objectives_fixture.py`): the same batch, weights and
//! prior draws, to 1e-5 relative.

use latentlab_model::objective::{
    DipVariant, LatentBatch, LatentLoss, MmdKernel, TcEstimator, beta_tcvae, dip, mmd,
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

#[test]
fn latent_terms_match_pytorch_autograd() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/objectives.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
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
