//! Every case of the reference file (tests/reference, a copy of
//! ../shared/reference/seed_reference.json) reproduced.

use latentlab_geometry::interpolate::{Method, interpolate};
use latentlab_geometry::shell::ShellStats;
use ndarray::Array1;
use serde_json::Value;

fn reference() -> Value {
    // A copy of ../shared/reference, kept in the repository.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/reference/seed_reference.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("valid JSON")
}

fn vec(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Relative comparison, with an absolute floor for values near zero.
fn close(got: f64, want: f64, rel: f64, what: &str, failures: &mut Vec<String>) {
    if (got - want).abs() > rel * want.abs().max(1e-3) {
        failures.push(format!("{what}: {got} vs {want}"));
    }
}

#[test]
fn interpolation_cases_f64_and_f32() {
    let r = reference();
    let mut failures = Vec::new();
    for (ci, case) in r["interpolation"].as_array().unwrap().iter().enumerate() {
        let z1 = Array1::from(vec(&case["z1"]));
        let z2 = Array1::from(vec(&case["z2"]));
        let steps = case["steps"].as_u64().unwrap() as usize;
        for (key, method) in [
            ("linear", Method::Linear),
            ("slerp", Method::Slerp),
            ("seed_slerp", Method::SeedSlerp),
            ("constant_norm", Method::ConstantNorm),
        ] {
            let want: Vec<Vec<f64>> = case[key].as_array().unwrap().iter().map(vec).collect();
            let got = interpolate(z1.view(), z2.view(), steps, method).unwrap();
            let got32 = interpolate(
                z1.mapv(|v| v as f32).view(),
                z2.mapv(|v| v as f32).view(),
                steps,
                method,
            )
            .unwrap();
            for (i, row) in want.iter().enumerate() {
                for (j, &w) in row.iter().enumerate() {
                    close(
                        got[[i, j]],
                        w,
                        1e-9,
                        &format!("case {ci} {key} f64 [{i},{j}]"),
                        &mut failures,
                    );
                    close(
                        f64::from(got32[[i, j]]),
                        w,
                        1e-4,
                        &format!("case {ci} {key} f32 [{i},{j}]"),
                        &mut failures,
                    );
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
}

#[test]
fn shell_cases() {
    let r = reference();
    let mut failures = Vec::new();
    for case in r["shell"].as_array().unwrap() {
        let d = case["dim"].as_u64().unwrap() as usize;
        let s = ShellStats::new(d).unwrap();
        for (key, got) in [
            ("sqrt_d", s.sqrt_d),
            ("mean_norm", s.mean_norm),
            ("std_norm", s.std_norm),
            ("norm_q05", s.norm_q05),
            ("norm_q95", s.norm_q95),
            ("log10_mass_within_radius_1", s.log10_mass_within_radius_1),
        ] {
            close(
                got,
                case[key].as_f64().unwrap(),
                1e-9,
                &format!("d={d} {key}"),
                &mut failures,
            );
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
