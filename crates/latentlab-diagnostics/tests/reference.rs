//! The page's `diagnose_latent_space`: every reference case (numbers to 1e-9
//! relative, verdict strings exactly), and random cases of the same
//! construction against a direct transcription of the page's formulas.

use latentlab_diagnostics::{
    Latents, Options, State, diagnose, diagnose_from_metrics, page_metrics,
};
use ndarray::Array2;
use proptest::prelude::*;
use serde_json::Value;

fn reference() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/reference/seed_reference.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("valid JSON")
}

fn matrix(v: &Value) -> Array2<f64> {
    let rows: Vec<Vec<f64>> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    let d = rows[0].len();
    Array2::from_shape_vec((rows.len(), d), rows.concat()).unwrap()
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * want.abs().max(1e-12)
}

#[test]
fn every_reference_case_is_reproduced() {
    let r = reference();
    let cases = r["diagnostics"].as_array().unwrap();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let l = Latents::new(matrix(&c["mu"]), matrix(&c["logvar"])).unwrap();
        let got = page_metrics(&l);
        let e = &c["expected"];
        for (key, g) in [
            ("mean_kl", got.mean_kl),
            ("mean_posterior_std", got.mean_posterior_std),
            ("aggregate_kl", got.aggregate_kl),
        ] {
            let w = e[key].as_f64().unwrap();
            if !close(g, w) {
                failures.push(format!("{name}.{key}: {g} vs {w}"));
            }
        }
        for (key, g) in [
            ("active_dims", got.active_dims),
            ("total_dims", got.total_dims),
        ] {
            if g as u64 != e[key].as_u64().unwrap() {
                failures.push(format!("{name}.{key}: {g} vs {}", e[key]));
            }
        }
        if got.diagnosis != e["diagnosis"].as_str().unwrap() {
            failures.push(format!(
                "{name}.diagnosis: {:?} vs {}",
                got.diagnosis, e["diagnosis"]
            ));
        }
        // The full diagnosis carries the same figures under the same keys.
        let full = diagnose(&l, &Options::default()).unwrap();
        let json = serde_json::to_value(&full).unwrap();
        for key in [
            "mean_kl",
            "active_dims",
            "total_dims",
            "mean_posterior_std",
            "aggregate_kl",
            "diagnosis",
        ] {
            if json[key] != serde_json::to_value(&got).unwrap()[key] {
                failures.push(format!("{name}: full diagnosis differs at {key}"));
            }
        }
        let want_state = if name == "healthy" {
            State::Healthy
        } else {
            State::PosteriorCollapse
        };
        if name != "weak" && full.verdict.state != want_state {
            failures.push(format!("{name}: verdict {:?}", full.verdict));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The page's formulas, transcribed loop by loop.
fn naive(mu: &Array2<f64>, lv: &Array2<f64>) -> (f64, usize, f64, f64) {
    let (n, d) = mu.dim();
    let nf = n as f64;
    let mut kl = 0.0;
    for i in 0..n {
        let mut k = 0.0;
        for j in 0..d {
            k += 1.0 + lv[[i, j]] - mu[[i, j]].powi(2) - lv[[i, j]].exp();
        }
        kl += -0.5 * k;
    }
    let mut active = 0;
    let mut std = 0.0;
    let mut agg = 0.0;
    for j in 0..d {
        let m: f64 = (0..n).map(|i| mu[[i, j]]).sum::<f64>() / nf;
        let v: f64 = (0..n).map(|i| (mu[[i, j]] - m).powi(2)).sum::<f64>() / (nf - 1.0);
        if v > 0.01 {
            active += 1;
        }
        let e: f64 = (0..n).map(|i| lv[[i, j]].exp()).sum::<f64>() / nf;
        let var = v + e;
        agg += 0.5 * (var + m * m - 1.0 - var.ln());
        std += (0..n).map(|i| (0.5 * lv[[i, j]]).exp()).sum::<f64>();
    }
    (kl / nf, active, std / (nf * d as f64), agg)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_cases_match_the_page(
        n in 2usize..40, d in 1usize..12,
        scale in prop::sample::select(vec![1e-3, 0.05, 0.3, 1.0, 3.0]),
        lv_shift in -5.0f64..1.0,
        seed in 0u64..1000,
    ) {
        let mut g = latentlab_data::rng::SplitMix64::new(seed, latentlab_data::rng::Purpose::Test, 0);
        let mu = Array2::from_shape_simple_fn((n, d), || scale * g.normal());
        let lv = Array2::from_shape_simple_fn((n, d), || lv_shift + 0.3 * g.normal());
        let l = Latents::new(mu.clone(), lv.clone()).unwrap();
        let p = page_metrics(&l);
        let (kl, active, std, agg) = naive(&mu, &lv);
        prop_assert!(close(p.mean_kl, kl), "{} {}", p.mean_kl, kl);
        prop_assert_eq!(p.active_dims, active);
        prop_assert!(close(p.mean_posterior_std, std));
        prop_assert!(close(p.aggregate_kl, agg), "{} {}", p.aggregate_kl, agg);
        prop_assert_eq!(p.diagnosis, diagnose_from_metrics(kl, active, d, std));
    }
}

#[test]
fn verdict_strings_at_every_threshold() {
    let h = "HEALTHY: Metrics look reasonable";
    assert_eq!(diagnose_from_metrics(10.0, 10, 10, 0.5), h);
    assert_eq!(diagnose_from_metrics(5.0, 3, 10, 0.9), h);
    assert_eq!(
        diagnose_from_metrics(4.999, 3, 10, 0.5),
        "WARNING: Low KL, possible weak encoding"
    );
    assert_eq!(
        diagnose_from_metrics(0.999, 0, 10, 0.91),
        "SEVERE: Likely posterior collapse (KL near zero); SEVERE: Most dimensions inactive (posterior collapse); WARNING: High posterior variance, weak encoding"
    );
    assert_eq!(
        diagnose_from_metrics(1.0, 1, 10, 0.5),
        "WARNING: Low KL, possible weak encoding; WARNING: Many inactive dimensions"
    );
    assert_eq!(
        diagnose_from_metrics(9.0, 2, 10, 0.5),
        "WARNING: Many inactive dimensions"
    );
    assert_eq!(
        diagnose_from_metrics(9.0, 0, 11, 0.5),
        "SEVERE: Most dimensions inactive (posterior collapse)"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Streaming in chunks of any size gives the page's figures of the whole.
    #[test]
    fn streamed_moments_equal_the_whole(
        n in 2usize..300, d in 1usize..6, chunk in 1usize..97, seed in 0u64..500,
    ) {
        use latentlab_diagnostics::{Accumulator, diagnose_streamed};
        let mut g = latentlab_data::rng::SplitMix64::new(seed, latentlab_data::rng::Purpose::Test, 1);
        let mu = Array2::from_shape_simple_fn((n, d), || 3.0 * g.normal() + 1.0);
        let lv = Array2::from_shape_simple_fn((n, d), || -1.0 + 0.5 * g.normal());
        let l = Latents::new(mu.clone(), lv.clone()).unwrap();
        let whole = page_metrics(&l);
        let mut acc = Accumulator::new(d);
        let mut start = 0;
        while start < n {
            let end = (start + chunk).min(n);
            acc.push(
                mu.slice(ndarray::s![start..end, ..]),
                lv.slice(ndarray::s![start..end, ..]),
                start,
            )
            .unwrap();
            start = end;
        }
        let opts = latentlab_diagnostics::Options { samples: 50, hole_probes: 50, ..Default::default() };
        let s = diagnose_streamed(&acc, &l, &opts).unwrap();
        prop_assert!(close(s.mean_kl, whole.mean_kl));
        prop_assert!(close(s.aggregate_kl, whole.aggregate_kl), "{} {}", s.aggregate_kl, whole.aggregate_kl);
        prop_assert!(close(s.mean_posterior_std, whole.mean_posterior_std));
        prop_assert_eq!(s.active_dims, whole.active_dims);
        prop_assert_eq!(s.diagnosis, whole.diagnosis);
    }
}
