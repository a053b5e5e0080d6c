//! Invariants of the interpolation methods and edge cases.

use latentlab_geometry::interpolate::{
    Method, interpolate, interpolate_batch, log_prior, norm_profile,
};
use latentlab_geometry::shell::{norm_quantile, norm_typicality, std_norm, table};
use ndarray::{Array1, Array2, array};
use proptest::prelude::*;

const ALL: [Method; 4] = [
    Method::Linear,
    Method::Slerp,
    Method::SeedSlerp,
    Method::ConstantNorm,
];

fn code(d: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-10.0f64..10.0, d)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn endpoints_exact_and_no_nan((z1, z2) in (1usize..12).prop_flat_map(|d| (code(d), code(d))), steps in 2usize..20) {
        let (a, b) = (Array1::from(z1), Array1::from(z2));
        for m in ALL {
            let p = interpolate(a.view(), b.view(), steps, m).unwrap();
            prop_assert!(p.iter().all(|v| v.is_finite()), "{m:?} gave a non-finite value");
            if matches!(m, Method::Linear | Method::Slerp) {
                prop_assert_eq!(p.row(0), a.view());
                prop_assert_eq!(p.row(steps - 1), b.view());
            }
        }
    }

    #[test]
    fn slerp_norms_between_endpoints_and_angles_monotone((z1, z2) in (2usize..12).prop_flat_map(|d| (code(d), code(d))), steps in 3usize..20) {
        let (a, b) = (Array1::from(z1), Array1::from(z2));
        let (na, nb) = (a.dot(&a).sqrt(), b.dot(&b).sqrt());
        prop_assume!(na > 1e-3 && nb > 1e-3);
        let omega = (a.dot(&b) / (na * nb)).clamp(-1.0, 1.0).acos();
        let p = interpolate(a.view(), b.view(), steps, Method::Slerp).unwrap();
        if omega <= std::f64::consts::FRAC_PI_2 {
            let (lo, hi) = (na.min(nb), na.max(nb));
            for n in norm_profile(p.view()) {
                prop_assert!(n >= lo * (1.0 - 1e-12) && n <= hi * (1.0 + 1e-12), "norm {n} outside [{lo}, {hi}]");
            }
        }
        // The angle to z1 grows along the path.
        let mut last = -1.0;
        for row in p.rows() {
            let ang = (row.dot(&a) / (row.dot(&row).sqrt() * na)).clamp(-1.0, 1.0).acos();
            prop_assert!(ang >= last - 1e-9, "angle went back: {ang} < {last}");
            last = ang;
        }
    }

    #[test]
    fn batched_equals_one_by_one((z1, z2) in (1usize..8).prop_flat_map(|d| (prop::collection::vec(code(d), 3), prop::collection::vec(code(d), 3))), steps in 1usize..9) {
        let d = z1[0].len();
        let a = Array2::from_shape_vec((3, d), z1.concat()).unwrap();
        let b = Array2::from_shape_vec((3, d), z2.concat()).unwrap();
        for m in ALL {
            let batch = interpolate_batch(a.view(), b.view(), steps, m).unwrap();
            for i in 0..3 {
                let one = interpolate(a.row(i), b.row(i), steps, m).unwrap();
                prop_assert_eq!(batch.index_axis(ndarray::Axis(0), i), one.view());
            }
        }
    }
}

#[test]
fn edge_cases() {
    let z1 = array![1.0, 2.0, 3.0];
    let z2 = array![-1.0, 0.5, 2.0];
    for m in ALL {
        assert!(
            interpolate(z1.view(), z2.view(), 0, m)
                .unwrap_err()
                .to_string()
                .contains("steps")
        );
        let one = interpolate(z1.view(), z2.view(), 1, m).unwrap();
        assert_eq!(one.nrows(), 1);
        if m != Method::SeedSlerp && m != Method::ConstantNorm {
            assert_eq!(one.row(0), z1.view());
        }
        let bad = array![1.0, f64::NAN, 0.0];
        assert!(
            interpolate(z1.view(), bad.view(), 5, m)
                .unwrap_err()
                .to_string()
                .contains("z2[1] is not finite")
        );
        let short = array![1.0, 2.0];
        assert!(interpolate(z1.view(), short.view(), 5, m).is_err());
        // A zero vector: no direction, linear fallback (SeedSlerp/Slerp) and never NaN.
        let zero = Array1::zeros(3);
        assert!(
            interpolate(zero.view(), z2.view(), 5, m)
                .unwrap()
                .iter()
                .all(|v| v.is_finite())
        );
        // Antipodal codes follow a deterministic great circle, never NaN.
        let anti = z1.mapv(|v| -2.0 * v);
        let p = interpolate(z1.view(), anti.view(), 9, m).unwrap();
        assert!(p.iter().all(|v| v.is_finite()), "{m:?} antipodal");
        assert_eq!(p, interpolate(z1.view(), anti.view(), 9, m).unwrap());
    }
    // Antipodal SLERP: exact ends, norm interpolated, midpoint orthogonal to both.
    let anti = z1.mapv(|v| -v);
    let p = interpolate(z1.view(), anti.view(), 3, Method::Slerp).unwrap();
    assert_eq!(p.row(2), anti.view());
    assert!(p.row(1).dot(&z1).abs() < 1e-12);
    // Parallel codes fall back to linear.
    let par = z1.mapv(|v| 2.0 * v);
    assert_eq!(
        interpolate(z1.view(), par.view(), 4, Method::Slerp).unwrap(),
        interpolate(z1.view(), par.view(), 4, Method::Linear).unwrap()
    );
}

#[test]
fn linear_leaves_the_shell_and_slerp_does_not() {
    // Two orthogonal typical codes in d = 256: linear's midpoint has norm √(d/2).
    let d = 256;
    let mut a = Array1::<f64>::zeros(d);
    let mut b = Array1::<f64>::zeros(d);
    a[0] = 16.0;
    b[1] = 16.0;
    let lin = interpolate(a.view(), b.view(), 3, Method::Linear).unwrap();
    let sl = interpolate(a.view(), b.view(), 3, Method::Slerp).unwrap();
    assert!((norm_profile(lin.view())[1] - 128f64.sqrt()).abs() < 1e-12);
    assert!((norm_profile(sl.view())[1] - 16.0).abs() < 1e-12);
    // The midpoint of linear is far more probable as a point, yet atypical as a norm.
    assert!(log_prior(lin.view())[1] > log_prior(sl.view())[1]);
    assert!(norm_typicality(d, 128f64.sqrt()).unwrap().p_value < 1e-10);
    assert!(norm_typicality(d, 16.0).unwrap().p_value > 0.5);
}

#[test]
fn shell_is_stable_in_huge_dimensions() {
    for d in [1_000usize, 100_000, 10_000_000] {
        let s = std_norm(d).unwrap();
        assert!(
            (s - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-3,
            "d={d}: std {s}"
        );
        let q = norm_quantile(d, 0.5).unwrap();
        assert!((q - (d as f64).sqrt()).abs() < 1.0, "d={d}: median {q}");
    }
    let t = table(&[2, 10, 64, 256, 100_000]).unwrap();
    assert!(t.iter().all(|r| r.log10_mass_within_radius_1.is_finite()));
    assert!(t[4].log10_mass_within_radius_1 < -100_000.0);
    assert!(norm_quantile(10, 1.0).is_err() && norm_quantile(0, 0.5).is_err());
}
