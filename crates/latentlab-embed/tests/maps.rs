//! PCA, t-SNE and UMAP end to end on data whose structure is known.

use latentlab_embed::{
    Pca, PcaParams, PcaSolver, Tsne, TsneMethod, TsneParams, Umap, UmapParams, knn_accuracy,
    trustworthiness,
};
use ndarray::{Array2, Axis};

/// A small deterministic normal generator for the tests.
fn normals(n: usize, d: usize, seed: u64) -> Array2<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    Array2::from_shape_simple_fn((n, d), || {
        let (u1, u2) = (1.0 - next(), next());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    })
}

/// `k` Gaussian clusters in `d` dimensions, well apart.
fn clusters(n: usize, d: usize, k: usize, seed: u64) -> (Array2<f64>, Vec<i64>) {
    let mut x = normals(n, d, seed);
    let centres = normals(k, d, seed + 1) * 8.0;
    let labels: Vec<i64> = (0..n).map(|i| (i % k) as i64).collect();
    for (i, mut row) in x.rows_mut().into_iter().enumerate() {
        row += &centres.row(i % k);
    }
    (x, labels)
}

#[test]
fn pca_matches_the_covariance_eigenvectors_and_the_randomized_solver_agrees() {
    // Anisotropic data with known axes: scales 5, 3, 1, 0.1 along a rotation.
    let z = normals(2000, 4, 3);
    let scales = ndarray::arr1(&[5.0, 3.0, 1.0, 0.1]);
    let theta: f64 = 0.3;
    let rot = ndarray::arr2(&[
        [theta.cos(), -theta.sin(), 0.0, 0.0],
        [theta.sin(), theta.cos(), 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]);
    let x = (&z * &scales).dot(&rot.t()) + 7.0;
    let p = Pca::fit(
        x.view(),
        &PcaParams {
            components: 4,
            ..PcaParams::default()
        },
    )
    .unwrap();
    let r = p.explained_variance_ratio();
    assert!((r.sum() - 1.0).abs() < 1e-12);
    assert!(r[0] > r[1] && r[1] > r[2] && r[2] > r[3]);
    // The first axis is the rotated e₁.
    let c0 = p.components().row(0);
    assert!(
        (c0[0].abs() - theta.cos()).abs() < 0.02 && (c0[1].abs() - theta.sin()).abs() < 0.02,
        "{c0}"
    );
    // Projections have the explained variances.
    let y = p.transform(x.view()).unwrap();
    for c in 0..4 {
        let v = y.column(c).var(1.0);
        assert!((v - p.explained_variance()[c]).abs() < 1e-9 * v.max(1.0));
    }
    // Randomized on a wide, low-rank matrix agrees with exact up to sign.
    let wide = normals(300, 5, 4).dot(&normals(5, 700, 5)) + normals(300, 700, 6) * 0.01;
    let e = Pca::fit(
        wide.view(),
        &PcaParams {
            components: 3,
            solver: PcaSolver::Exact,
            seed: 0,
        },
    )
    .unwrap();
    let q = Pca::fit(
        wide.view(),
        &PcaParams {
            components: 3,
            solver: PcaSolver::Randomized,
            seed: 0,
        },
    )
    .unwrap();
    for c in 0..3 {
        let dot = e.components().row(c).dot(&q.components().row(c));
        assert!((dot - 1.0).abs() < 1e-6, "axis {c}: {dot}");
        let (a, b) = (e.explained_variance()[c], q.explained_variance()[c]);
        assert!((a - b).abs() < 1e-6 * a, "{a} vs {b}");
    }
}

#[test]
fn tsne_separates_clusters_on_both_gradient_paths_and_is_seeded() {
    let (x, labels) = clusters(1200, 10, 5, 7);
    let quick = TsneParams {
        iterations: 400,
        perplexity: 20.0,
        ..TsneParams::default()
    };
    let mut calls = 0;
    let bh = Tsne::fit(
        x.view(),
        &TsneParams {
            method: TsneMethod::BarnesHut,
            ..quick.clone()
        },
        &mut |ph, i, _| calls += usize::from(ph == latentlab_embed::Phase::Optimisation && i > 0),
    )
    .unwrap();
    assert_eq!(calls, 40, "progress every 10 iterations");
    assert!(knn_accuracy(bh.embedding.view(), &labels, 10).unwrap() > 0.99);
    assert!(trustworthiness(x.view(), bh.embedding.view(), 10).unwrap() > 0.9);
    let again = Tsne::fit(
        x.view(),
        &TsneParams {
            method: TsneMethod::BarnesHut,
            ..quick.clone()
        },
        &mut |_, _, _| {},
    )
    .unwrap();
    assert_eq!(bh.embedding, again.embedding, "same seed, same map");
    let small = x.select(Axis(0), &(0..300).collect::<Vec<_>>());
    let ex = Tsne::fit(
        small.view(),
        &TsneParams {
            method: TsneMethod::Exact,
            ..quick
        },
        &mut |_, _, _| {},
    )
    .unwrap();
    assert!(knn_accuracy(ex.embedding.view(), &labels[..300], 10).unwrap() > 0.99);
    let kl = ex.kl_divergence.unwrap();
    assert!(kl > 0.0 && kl < 2.0, "KL {kl}");
    // The interpolated repulsion (FIt-SNE's): a map as trustworthy as
    // Barnes–Hut's, the same for any thread count.
    let fft_params = TsneParams {
        method: TsneMethod::Fft,
        ..quick
    };
    let fft = Tsne::fit(x.view(), &fft_params, &mut |_, _, _| {}).unwrap();
    assert!(knn_accuracy(fft.embedding.view(), &labels, 10).unwrap() > 0.99);
    let (tb, tf) = (
        trustworthiness(x.view(), bh.embedding.view(), 10).unwrap(),
        trustworthiness(x.view(), fft.embedding.view(), 10).unwrap(),
    );
    assert!((tb - tf).abs() < 0.005, "Barnes–Hut {tb}, FFT {tf}");
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| Tsne::fit(x.view(), &fft_params, &mut |_, _, _| {}).unwrap());
    assert_eq!(one.embedding, fft.embedding, "one thread, the same map");
}

#[test]
fn auto_switches_to_the_fft_at_the_measured_size_and_reports_every_phase() {
    let short = TsneParams {
        iterations: 30,
        exaggeration_iters: 20,
        ..TsneParams::default()
    };
    let fit = |n: usize, method: TsneMethod| {
        let (x, _) = clusters(n, 5, 4, 3);
        let mut phases = Vec::new();
        let t = Tsne::fit(
            x.view(),
            &TsneParams {
                method,
                ..short.clone()
            },
            &mut |ph, i, total| phases.push((ph, i, total)),
        )
        .unwrap();
        (t.embedding, phases)
    };
    let n = latentlab_embed::FFT_FROM;
    let (auto, phases) = fit(n, TsneMethod::Auto);
    assert_eq!(auto, fit(n, TsneMethod::Fft).0, "FFT from {n} points");
    let (below, _) = fit(n - 1, TsneMethod::Auto);
    assert_eq!(
        below,
        fit(n - 1, TsneMethod::BarnesHut).0,
        "Barnes–Hut below"
    );
    use latentlab_embed::Phase::*;
    let started: Vec<_> = phases.iter().filter(|p| p.1 == 0).map(|p| p.0).collect();
    assert_eq!(
        started,
        [Neighbours, Affinities, Initialisation, Optimisation]
    );
    assert_eq!(phases.last(), Some(&(Optimisation, 30, 30)));
}

#[test]
fn a_single_repeated_point_and_too_high_a_perplexity_are_clear_errors() {
    let same = Array2::from_elem((50, 4), 0.5);
    let none = &mut |_: latentlab_embed::Phase, _: usize, _: usize| {};
    let e = Tsne::fit(
        same.view(),
        &TsneParams {
            perplexity: 5.0,
            ..TsneParams::default()
        },
        none,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("all 50 points are the same point"), "{e}");
    let e = Umap::fit(same.view(), &UmapParams::default(), none)
        .unwrap_err()
        .to_string();
    assert!(e.contains("all 50 points are the same point"), "{e}");
    let x = normals(60, 3, 2);
    let e = Tsne::fit(
        x.view(),
        &TsneParams {
            perplexity: 20.0,
            ..TsneParams::default()
        },
        none,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("below a third of the number of points (60)"),
        "{e}"
    );
    let e = latentlab_embed::knn_approx(x.view(), 60, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("below the number of points"), "{e}");
}

#[test]
fn umap_separates_clusters_and_is_seeded() {
    let (x, labels) = clusters(1000, 10, 4, 9);
    let p = UmapParams {
        epochs: Some(200),
        ..UmapParams::default()
    };
    let u = Umap::fit(x.view(), &p, &mut |_, _, _| {}).unwrap();
    assert!(knn_accuracy(u.embedding.view(), &labels, 10).unwrap() > 0.99);
    assert!(trustworthiness(x.view(), u.embedding.view(), 10).unwrap() > 0.9);
    let v = Umap::fit(x.view(), &p, &mut |_, _, _| {}).unwrap();
    assert_eq!(u.embedding, v.embedding);
    let w = Umap::fit(x.view(), &UmapParams { seed: 1, ..p }, &mut |_, _, _| {}).unwrap();
    assert_ne!(u.embedding, w.embedding);
}

#[test]
fn bad_input_is_a_clear_error() {
    let x = normals(20, 3, 1);
    let msg = |e: latentlab_embed::EmbedError| e.to_string();
    let mut nan = x.clone();
    nan[[4, 2]] = f64::NAN;
    let none = |_: latentlab_embed::Phase, _: usize, _: usize| {};
    let cases: Vec<(String, &str)> = vec![
        (
            msg(Tsne::fit(
                x.view(),
                &TsneParams {
                    perplexity: 20.0,
                    ..TsneParams::default()
                },
                &mut { none },
            )
            .unwrap_err()),
            "perplexity",
        ),
        (
            msg(Tsne::fit(nan.view(), &TsneParams::default(), &mut { none }).unwrap_err()),
            "row 4 column 2 is NaN",
        ),
        (
            msg(Tsne::fit(
                Array2::zeros((20, 0)).view(),
                &TsneParams::default(),
                &mut { none },
            )
            .unwrap_err()),
            "0 dimensions",
        ),
        (
            msg(Umap::fit(
                x.view(),
                &UmapParams {
                    n_neighbors: 21,
                    ..UmapParams::default()
                },
                &mut { none },
            )
            .unwrap_err()),
            "n_neighbors",
        ),
        (
            msg(Umap::fit(
                x.slice(ndarray::s![..2, ..]).view(),
                &UmapParams::default(),
                &mut { none },
            )
            .unwrap_err()),
            "at least 3",
        ),
        (
            msg(Pca::fit(
                x.view(),
                &PcaParams {
                    components: 4,
                    ..PcaParams::default()
                },
            )
            .unwrap_err()),
            "components",
        ),
        (
            msg(Pca::fit(x.view(), &PcaParams::default())
                .unwrap()
                .transform(normals(2, 5, 1).view())
                .unwrap_err()),
            "5 dimensions",
        ),
        (
            msg(trustworthiness(x.view(), x.view(), 10).unwrap_err()),
            "N/2",
        ),
        (
            msg(knn_accuracy(x.view(), &[0; 3], 5).unwrap_err()),
            "3 labels",
        ),
    ];
    let bad: Vec<String> = cases
        .iter()
        .filter(|(m, want)| !m.contains(want))
        .map(|(m, want)| format!("{want:?} not in {m:?}"))
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
