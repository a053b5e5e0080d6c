//! The Monte Carlo figures: ELBO surgery, the mixture density, holes and the
//! verdict, on latents whose truth is known by construction.

use latentlab_data::rng::{Purpose, SplitMix64};
use latentlab_diagnostics::{Latents, Options, State, diagnose, holes, log_aggregate_density};
use ndarray::{Array2, array};

/// Posteriors N(mu, s²) with mu ~ N(0, 1 − s²): the aggregate is exactly the
/// prior in distribution.
fn matched(n: usize, d: usize, s2: f64, seed: u64) -> Latents {
    let mut g = SplitMix64::new(seed, Purpose::Test, 0);
    let mu = Array2::from_shape_simple_fn((n, d), || (1.0 - s2).sqrt() * g.normal());
    let lv = Array2::from_elem((n, d), s2.ln());
    Latents::new(mu, lv).unwrap()
}

/// Means on four islands at (±2.5, ±2.5) in the first two dimensions.
fn islands(n: usize, d: usize, seed: u64) -> Latents {
    let mut g = SplitMix64::new(seed, Purpose::Test, 1);
    let mut mu = Array2::from_shape_simple_fn((n, d), || 0.9 * g.normal());
    for i in 0..n {
        mu[[i, 0]] = if i % 2 == 0 { 2.5 } else { -2.5 } + 0.1 * g.normal();
        mu[[i, 1]] = if (i / 2) % 2 == 0 { 2.5 } else { -2.5 } + 0.1 * g.normal();
    }
    let lv = Array2::from_elem((n, d), (0.1f64).ln());
    Latents::new(mu, lv).unwrap()
}

#[test]
fn elbo_surgery_holds_within_the_standard_error() {
    for (l, what) in [
        (matched(3000, 4, 0.2, 1), "matched"),
        (islands(3000, 5, 2), "islands"),
    ] {
        let d = diagnose(
            &l,
            &Options {
                samples: 3000,
                ..Options::default()
            },
        )
        .unwrap();
        let sum = d.mutual_information + d.aggregate_kl_mc;
        assert!(
            (sum - d.mean_kl).abs() < 3.0 * d.surgery_se,
            "{what}: I {} + KL {} = {sum} vs mean KL {} (se {})",
            d.mutual_information,
            d.aggregate_kl_mc,
            d.mean_kl,
            d.surgery_se
        );
        assert!(d.mutual_information <= (3000f64).ln() + 3.0 * d.mutual_information_se);
        assert!(d.aggregate_kl_mc > -3.0 * d.aggregate_kl_mc_se);
        assert!(d.mutual_information_se > 0.0 && d.aggregate_kl_mc_se > 0.0);
    }
}

#[test]
fn the_mixture_density_matches_a_direct_sum() {
    let l = Latents::new(
        array![[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]],
        array![[0.0, -1.0], [-4.0, -3.5], [1.0, -3.0]],
    )
    .unwrap();
    let z = array![[0.1, 0.2], [2.0, -1.0], [-3.0, 4.0]];
    let got = log_aggregate_density(&l, z.view(), 100, 0);
    for (i, zi) in z.rows().into_iter().enumerate() {
        let mut q = 0.0;
        for m in 0..3 {
            let mut lp = 0.0;
            for j in 0..2 {
                let v = l.logvar()[[m, j]].exp();
                lp += -0.5
                    * ((zi[j] - l.mu()[[m, j]]).powi(2) / v
                        + v.ln()
                        + (2.0 * std::f64::consts::PI).ln());
            }
            q += lp.exp() / 3.0;
        }
        assert!((got[i] - q.ln()).abs() < 1e-9, "{} vs {}", got[i], q.ln());
    }
}

/// A Gaussian channel: mu ~ N(0, 1 − s²), posterior N(mu, s²) per
/// dimension, so I(x; z) = (d/2)·ln(1/s²) and q(z) = p(z).
#[test]
fn a_gaussian_channel_has_its_known_information() {
    let (d, s2) = (2, 0.1f64);
    let l = matched(4000, d, s2, 9);
    let r = diagnose(
        &l,
        &Options {
            samples: 4000,
            ..Options::default()
        },
    )
    .unwrap();
    let want = 0.5 * d as f64 * (1.0 / s2).ln();
    assert!(
        (r.mutual_information - want).abs() < 0.1,
        "I = {} ± {}, want {want}",
        r.mutual_information,
        r.mutual_information_se
    );
    assert!(
        r.aggregate_kl_mc.abs() < 0.1,
        "KL(q(z)||p(z)) = {}",
        r.aggregate_kl_mc
    );
    // The estimator cannot exceed ln N.
    let tight = diagnose(&matched(500, 6, 0.001, 9), &Options::default()).unwrap();
    assert!(
        tight.mutual_information <= (500f64).ln() + 1e-9,
        "{}",
        tight.mutual_information
    );
    assert!(tight.mutual_information > (500f64).ln() - 0.05);
}

#[test]
fn holes_are_found_where_the_prior_is_empty_and_not_where_it_is_covered() {
    let opts = Options::default();
    let covered = holes(&matched(4000, 6, 0.1, 3), &opts).unwrap();
    assert!(
        (covered.fraction - covered.fraction_null).abs() < 0.08,
        "covered: {} vs chance {}",
        covered.fraction,
        covered.fraction_null
    );
    let gappy = holes(&islands(4000, 6, 4), &opts).unwrap();
    assert!(
        gappy.fraction - gappy.fraction_null > 0.3,
        "islands: {} vs chance {}",
        gappy.fraction,
        gappy.fraction_null
    );
    // The emptiest draws sit between the islands: near the origin of the
    // first two dimensions.
    assert_eq!(gappy.emptiest.len(), opts.emptiest);
    let central = gappy
        .emptiest
        .iter()
        .filter(|z| z[0].abs() < 1.5 && z[1].abs() < 1.5)
        .count();
    assert!(central * 2 > gappy.emptiest.len(), "{:?}", gappy.emptiest);
}

#[test]
fn the_verdict_separates_healthy_collapse_and_holes() {
    let opts = Options::default();
    let healthy = diagnose(&matched(3000, 8, 0.02, 5), &opts).unwrap();
    assert_eq!(
        healthy.verdict.state,
        State::Healthy,
        "{:?}",
        healthy.verdict
    );
    let collapsed = diagnose(&matched(3000, 8, 0.999, 6), &opts).unwrap();
    assert_eq!(
        collapsed.verdict.state,
        State::PosteriorCollapse,
        "{:?}",
        collapsed.verdict
    );
    assert!(collapsed.verdict.summary.starts_with("POSTERIOR COLLAPSE"));
    let holey = diagnose(&islands(3000, 4, 7), &opts).unwrap();
    assert_eq!(holey.verdict.state, State::Holes, "{:?}", holey.verdict);
    // Every sentence names its number.
    for f in healthy
        .verdict
        .findings
        .iter()
        .chain(&holey.verdict.findings)
    {
        assert!(f.chars().any(|c| c.is_ascii_digit()), "{f}");
    }
    // KL per dimension sums to the mean KL and is sorted by dims_by_kl.
    let s: f64 = healthy.kl_per_dim.iter().sum();
    assert!((s - healthy.mean_kl).abs() < 1e-9);
    let k = &healthy.kl_per_dim;
    assert!(healthy.dims_by_kl.windows(2).all(|w| k[w[0]] >= k[w[1]]));
}

#[test]
fn bad_input_is_a_clear_error() {
    let e =
        |r: Result<Latents, latentlab_diagnostics::DiagnosticsError>| r.unwrap_err().to_string();
    assert!(e(Latents::new(Array2::zeros((3, 2)), Array2::zeros((3, 3)))).contains("same shape"));
    assert!(e(Latents::new(Array2::zeros((1, 2)), Array2::zeros((1, 2)))).contains("at least 2"));
    assert!(
        e(Latents::new(Array2::zeros((3, 0)), Array2::zeros((3, 0)))).contains("dimension is 0")
    );
    let mut bad = Array2::zeros((3, 2));
    bad[[1, 1]] = f64::NAN;
    assert!(
        e(Latents::new(bad.clone(), Array2::zeros((3, 2)))).contains("mu row 1 column 1 is NaN")
    );
    bad[[1, 1]] = f64::INFINITY;
    assert!(e(Latents::new(Array2::zeros((3, 2)), bad)).contains("logvar row 1 column 1 is inf"));
    let l = matched(10, 2, 0.5, 0);
    let err = diagnose(
        &l,
        &Options {
            samples: 0,
            ..Options::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("samples"), "{err}");
}
