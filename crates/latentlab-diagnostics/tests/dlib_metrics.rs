//! The code-level metrics against disentanglement_lib's own code, on the
//! arrays `benches/peers/dlib_metrics_fixture.py` wrote with it: MIG and
//! modularity (deterministic) to 1e-6, SAP, DCI and explicitness (learned
//! classifiers that differ in their solvers) within 0.02.

use std::path::{Path, PathBuf};

use latentlab_data::npy;
use latentlab_diagnostics::disentangle::{CodeOptions, FactorKind, SapMode, evaluate_codes};
use ndarray::Array2;
use serde_json::Value;

const CASES: [&str; 6] = [
    "identity_noisy",
    "mixed",
    "redundant",
    "nonlinear",
    "noise",
    "continuous",
];

fn dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/dlib-metrics")
        .join(case)
}

fn matrix(case: &str, name: &str) -> Array2<f64> {
    let a = npy::read(dir(case).join(format!("{name}.npy"))).unwrap();
    let [n, d] = a.shape() else {
        panic!("{case}/{name}: shape {:?}", a.shape())
    };
    Array2::from_shape_vec((*n, *d), a.to_f64()).unwrap()
}

#[test]
fn code_level_metrics_match_disentanglement_lib() {
    let mut report = Vec::new();
    for case in CASES {
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(dir(case).join("expected.json")).unwrap(),
        )
        .unwrap();
        let continuous = expected["continuous"].as_bool().unwrap();
        let opts = CodeOptions {
            factors: if continuous {
                FactorKind::Continuous
            } else {
                FactorKind::Discrete
            },
            sap_mode: if continuous {
                SapMode::Correlation
            } else {
                SapMode::Classifier
            },
            bins: expected["bins"].as_u64().unwrap() as usize,
            ..CodeOptions::default()
        };
        let s = evaluate_codes(
            matrix(case, "codes_train"),
            matrix(case, "factors_train"),
            Some((matrix(case, "codes_test"), matrix(case, "factors_test"))),
            &opts,
        )
        .unwrap();
        let got = [
            ("mig", s.mig, 1e-6),
            ("modularity", s.modularity, 1e-6),
            ("sap", s.sap, 0.02),
            ("dci_disentanglement", s.dci.disentanglement, 0.02),
            ("dci_completeness", s.dci.completeness, 0.02),
            ("dci_informativeness", s.dci.informativeness, 0.02),
            (
                "dci_informativeness_train",
                s.dci.informativeness_train,
                0.02,
            ),
            ("explicitness", s.explicitness, 0.02),
            ("explicitness_train", s.explicitness_train, 0.02),
        ];
        for (key, value, tol) in got {
            let want = expected["scores"][key].as_f64().unwrap();
            report.push(format!("{case:>15} {key:<26} {value:.6} vs {want:.6}"));
            assert!(
                (value - want).abs() <= tol,
                "{case}: {key} is {value}, disentanglement_lib's {want} (tolerance {tol})\n{}",
                report.join("\n")
            );
        }
        assert_eq!(s.beta_vae, None);
        assert_eq!(s.factor_vae, None);
    }
    println!("{}", report.join("\n"));
}
