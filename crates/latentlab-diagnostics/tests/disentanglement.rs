//! Disentanglement metrics on the oracles disentanglement_lib's own tests
//! use, and the closed-form cases of DCI and modularity.

use latentlab_diagnostics::disentangle::{
    Labelled, SapMode, Settings, beta_vae, completeness, dci, dci_from_importance, disentanglement,
    evaluate_all, factor_vae, identity_truth, mig, modularity, modularity_explicitness, sap,
};
use ndarray::{Array2, ArrayView2, Axis, concatenate};

fn small() -> Settings {
    Settings {
        num_train: 2000,
        num_eval: 1000,
        num_variance_estimate: 2000,
        seed: 11,
        ..Settings::default()
    }
}

fn identity(x: ArrayView2<'_, f32>) -> Array2<f64> {
    x.mapv(f64::from)
}

fn constant(x: ArrayView2<'_, f32>) -> Array2<f64> {
    Array2::zeros(x.dim())
}

fn duplicated(x: ArrayView2<'_, f32>) -> Array2<f64> {
    let c = x.mapv(f64::from);
    concatenate(Axis(1), &[c.view(), c.view()]).unwrap()
}

#[test]
fn the_identity_code_scores_high_on_every_metric() {
    let truth = identity_truth(10, 10);
    let s = Settings {
        sap_mode: SapMode::Correlation,
        ..small()
    };
    let r = evaluate_all(&truth, &identity, &s).unwrap();
    eprintln!("identity: {}", serde_json::to_string(&r).unwrap());
    let mut fails = Vec::new();
    for (name, v) in [
        ("beta_vae", r.beta_vae),
        ("factor_vae", r.factor_vae),
        ("mig", r.mig),
        ("sap", r.sap),
        ("dci.disentanglement", r.dci.disentanglement),
        ("dci.completeness", r.dci.completeness),
        ("dci.informativeness", r.dci.informativeness),
        ("modularity", r.modularity),
        ("explicitness", r.explicitness),
        ("explicitness_normalized", r.explicitness_normalized),
    ] {
        if !(0.9..=1.0 + 1e-12).contains(&v) {
            fails.push(format!("{name} = {v}"));
        }
    }
    assert!(fails.is_empty(), "{}", fails.join(", "));
    // The known values: the code is the factors, so every classifier is
    // exact and the importance matrix is the identity.
    for (name, v, tol) in [
        ("beta_vae", r.beta_vae, 0.0),
        ("factor_vae", r.factor_vae, 0.0),
        ("dci.informativeness", r.dci.informativeness, 0.0),
        ("dci.disentanglement", r.dci.disentanglement, 1e-8),
        ("dci.completeness", r.dci.completeness, 1e-8),
    ] {
        assert!((v - 1.0).abs() <= tol, "{name} = {v}, not 1");
    }
    // MIG = 1 − max_{j≠k} I(z_j; v_k) / H(v_k): I(z_k; v_k) = H(v_k) = ln 10
    // exactly, and the plug-in MI of independent 10-valued codes has the
    // Miller–Madow bias (K − 1)² / 2N; the spurious maximum lies within a
    // factor 2 of it.
    let bias = 81.0 / (2.0 * small().num_train as f64);
    let spurious = (1.0 - r.mig) * 10f64.ln();
    assert!(
        (0.5 * bias..2.0 * bias).contains(&spurious),
        "MIG {}: spurious MI {spurious} vs bias {bias}",
        r.mig
    );
}

#[test]
fn a_constant_code_scores_low_on_every_metric() {
    let truth = identity_truth(10, 10);
    let r = evaluate_all(&truth, &constant, &small()).unwrap();
    eprintln!("constant: {}", serde_json::to_string(&r).unwrap());
    let mut fails = Vec::new();
    for (name, v) in [
        ("beta_vae", r.beta_vae),
        ("factor_vae", r.factor_vae),
        ("mig", r.mig),
        ("sap", r.sap),
        ("dci.disentanglement", r.dci.disentanglement),
        ("dci.completeness", r.dci.completeness),
        ("modularity", r.modularity),
        ("explicitness_normalized", r.explicitness_normalized),
    ] {
        if !(0.0..=0.2).contains(&v) {
            fails.push(format!("{name} = {v}"));
        }
    }
    assert!(fails.is_empty(), "{}", fails.join(", "));
    // The known values: a constant code carries no information, so every
    // information-based score is exactly 0, the AUC is chance, and the
    // β-VAE classifier can only name the majority factor (chance, 1/10, to
    // within 4 binomial standard errors of its evaluation batches).
    for (name, v) in [
        ("mig", r.mig),
        ("sap", r.sap),
        ("dci.disentanglement", r.dci.disentanglement),
        ("dci.completeness", r.dci.completeness),
        ("modularity", r.modularity),
        ("explicitness_normalized", r.explicitness_normalized),
        ("factor_vae", r.factor_vae),
    ] {
        assert!(v.abs() < 1e-12, "{name} = {v}, not 0");
    }
    assert!(
        (r.explicitness - 0.5).abs() < 1e-9,
        "chance AUC: {}",
        r.explicitness
    );
    let n = small().num_eval as f64;
    assert!(
        (r.beta_vae - 0.1).abs() < 4.0 * (0.1f64 * 0.9 / n).sqrt(),
        "β-VAE {} vs chance 0.1",
        r.beta_vae
    );
}

#[test]
fn duplicated_latents_fool_mig_and_sap_but_not_dci() {
    let truth = identity_truth(10, 10);
    let s = Settings {
        sap_mode: SapMode::Correlation,
        ..small()
    };
    // Two identical codes per factor: the gap between the best and the
    // second-best code is exactly 0 for both MIG and SAP.
    let m = mig(&truth, &duplicated, &s).unwrap();
    assert!(m.score.abs() < 1e-12, "MIG {}", m.score);
    let p = sap(&truth, &duplicated, &s).unwrap();
    assert!(p.score.abs() < 1e-12, "SAP {}", p.score);
    eprintln!("duplicated: MIG {} SAP {}", m.score, p.score);
    let d = dci(
        &truth,
        &duplicated,
        &Settings {
            num_train: 1000,
            num_eval: 1000,
            ..s
        },
    )
    .unwrap();
    assert!(d.disentanglement >= 0.9, "D {}", d.disentanglement);
    let target = 1.0 - 2f64.ln() / 10f64.ln();
    assert!(
        (d.completeness - target).abs() < 0.1,
        "C {} vs {target}",
        d.completeness
    );
}

#[test]
fn a_permuted_code_has_low_dci() {
    // Each observation's factors shuffled among the codes: every code
    // carries a bit of every factor.
    let truth = identity_truth(10, 10);
    let shuffled = |x: ArrayView2<'_, f32>| {
        let mut c = x.mapv(f64::from);
        let mut g = latentlab_data::rng::SplitMix64::new(
            x.nrows() as u64,
            latentlab_data::rng::Purpose::Test,
            0,
        );
        for mut r in c.rows_mut() {
            let mut v = r.to_vec();
            g.shuffle(&mut v);
            r.assign(&ndarray::Array1::from(v));
        }
        c
    };
    let d = dci(
        &truth,
        &shuffled,
        &Settings {
            num_train: 1000,
            num_eval: 1000,
            ..small()
        },
    )
    .unwrap();
    assert!(d.disentanglement <= 0.2 && d.completeness <= 0.2, "{d:?}");
}

#[test]
fn closed_form_importance_matrices() {
    let diag = Array2::from_diag(&ndarray::Array1::from_elem(5, 5.0));
    assert!((disentanglement(diag.view()) - 1.0).abs() < 1e-9);
    assert!((completeness(diag.view()) - 1.0).abs() < 1e-9);
    // Empty codes and missed factors.
    let empty = ndarray::array![[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]];
    assert!((disentanglement(empty.view()) - 1.0).abs() < 1e-9);
    assert!((completeness(empty.view()) - 1.0).abs() < 1e-6);
    // Two codes for five factors, three factors missed: each code is pure
    // (D = 1), and the captured factors carry all the weight (C = 1).
    let missed = diag.slice(ndarray::s![..2, ..]).to_owned();
    let (d, c) = dci_from_importance(missed.view());
    assert!((d - 1.0).abs() < 1e-9 && (c - 1.0).abs() < 1e-6, "{d} {c}");
    // A mixed matrix, by hand: code 0 splits evenly (1 − H₂ = 0), code 1 is
    // pure, each with weight ½, so D = ½; factor 0 is pure (weight ¼) and
    // factor 1 splits ⅓ : ⅔ (weight ¾), so C = ¼ + ¾ (1 − H₂(⅓, ⅔)).
    let mixed = ndarray::array![[1.0, 1.0], [0.0, 2.0]];
    let h = -(1.0f64 / 3.0 * (1.0f64 / 3.0).log2() + 2.0 / 3.0 * (2.0f64 / 3.0).log2());
    let (d, c) = dci_from_importance(mixed.view());
    assert!((d - 0.5).abs() < 1e-9, "{d}");
    assert!((c - (0.25 + 0.75 * (1.0 - h))).abs() < 1e-9, "{c}");
    // Zero matrix.
    let zero = Array2::<f64>::zeros((10, 10));
    assert!(disentanglement(zero.view()).abs() < 1e-9);
    assert!(completeness(zero.view()).abs() < 1e-7);
    // Redundant codes: D = 1, C = 1 − ln2/ln10.
    let target = 1.0 - 2f64.ln() / 10f64.ln();
    let redundant = concatenate(Axis(0), &[diag.view(), diag.view()]).unwrap();
    assert!((disentanglement(redundant.view()) - 1.0).abs() < 1e-9);
    assert!((completeness(redundant.view()) - target).abs() < 1e-9);
    // One code for two factors: D = 1 − ln2/ln10, C = 1.
    let two = concatenate(Axis(1), &[diag.view(), diag.view()]).unwrap();
    assert!((disentanglement(two.view()) - target).abs() < 1e-9);
    assert!((completeness(two.view()) - 1.0).abs() < 1e-9);
    // Modularity of one code informative about two of ten factors: 8/9.
    let mut mi = Array2::<f64>::zeros((1, 10));
    mi[[0, 0]] = 0.7;
    mi[[0, 1]] = 0.7;
    assert!((modularity(mi.view()) - 8.0 / 9.0).abs() < 1e-12);
    assert!(
        (modularity(Array2::from_diag(&ndarray::Array1::from_elem(4, 2.0)).view()) - 1.0).abs()
            < 1e-12
    );
    assert_eq!(modularity(Array2::<f64>::zeros((3, 4)).view()), 0.0);
}

#[test]
fn metrics_are_seeded() {
    let truth = identity_truth(4, 5);
    let s = Settings {
        num_train: 300,
        num_eval: 200,
        num_variance_estimate: 300,
        ..small()
    };
    let a = beta_vae(&truth, &identity, &s).unwrap().eval_accuracy;
    let b = beta_vae(&truth, &identity, &s).unwrap().eval_accuracy;
    assert_eq!(a.to_bits(), b.to_bits());
    let f1 = factor_vae(&truth, &identity, &s).unwrap();
    let f2 = factor_vae(
        &truth,
        &identity,
        &Settings {
            seed: 12,
            ..s.clone()
        },
    )
    .unwrap();
    assert_eq!(f1.active_codes, 4);
    assert!(f1.eval_accuracy > 0.9 && f2.eval_accuracy > 0.9);
    let m = modularity_explicitness(&truth, &identity, &s).unwrap();
    assert!(m.modularity > 0.9 && m.explicitness > 0.9, "{m:?}");
}

#[test]
fn labelled_data_work_and_bad_settings_are_refused() {
    // A finite labelled set: the identity oracle's points, 3 factors.
    let mut g = latentlab_data::rng::SplitMix64::new(4, latentlab_data::rng::Purpose::Test, 0);
    let classes = Array2::from_shape_simple_fn((3000, 3), || g.below(4) as usize);
    let x = classes.mapv(|v| v as f32);
    let data = Labelled::new(x, classes, None).unwrap();
    let s = Settings {
        num_train: 500,
        num_eval: 300,
        num_variance_estimate: 500,
        ..small()
    };
    assert!(beta_vae(&data, &identity, &s).unwrap().eval_accuracy > 0.9);
    assert!(factor_vae(&data, &identity, &s).unwrap().eval_accuracy > 0.9);
    assert!(mig(&data, &identity, &s).unwrap().score > 0.9);
    let e = |r: Result<_, latentlab_diagnostics::DiagnosticsError>| {
        r.map(|_: ()| ()).unwrap_err().to_string()
    };
    assert!(
        e(Labelled::new(Array2::zeros((3, 2)), Array2::zeros((4, 1)), None).map(|_| ()))
            .contains("3 observations but 4")
    );
    assert!(
        e(beta_vae(
            &data,
            &identity,
            &Settings {
                batch_size: 1,
                ..s.clone()
            }
        )
        .map(|_| ()))
        .contains("batch")
    );
    assert!(
        e(mig(
            &data,
            &identity,
            &Settings {
                num_train: 1,
                ..s.clone()
            }
        )
        .map(|_| ()))
        .contains("training")
    );
    let nan = |x: ArrayView2<'_, f32>| Array2::from_elem(x.dim(), f64::NAN);
    assert!(e(mig(&data, &nan, &s).map(|_| ())).contains("non-finite"));
}
