//! Training, resume, checkpoints and evaluation, end to end on small shapes.

use std::path::PathBuf;

use latentlab_data::{Dataset, dsprites, mnist_10k};
use latentlab_model::{
    AdamState, Checkpoint, Control, Event, LatentModel, Likelihood, LoadOptions, ModelConfig,
    ModelError, ModelKind, SavePolicy, TrainConfig, Trainer, Vae, checkpoint, evaluate,
    importance_weighted_nll,
};
use latentlab_tensor::{Backend, Cpu, Shape, conformance::test_gpu};
use ndarray::{Array2, s};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("latentlab-model-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn small_mnist(n_train: usize, n_test: usize) -> (Dataset, Dataset) {
    let m = mnist_10k();
    let cut = |d: &Dataset, n: usize| Dataset {
        images: d.images.slice(s![..n, ..]).to_owned(),
        labels: d.labels.as_ref().map(|l| l[..n].to_vec()),
        factor_classes: None,
        image_shape: d.image_shape,
        channels: d.channels,
    };
    (cut(&m.train, n_train), cut(&m.test, n_test))
}

fn small_config() -> ModelConfig {
    ModelConfig {
        hidden: vec![64, 32],
        latent: 6,
        ..ModelConfig::mnist(6)
    }
}

fn run(epochs: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 50,
        seed,
        ..TrainConfig::default()
    }
}

fn weights<B: Backend>(m: &Vae<B>) -> Vec<Vec<f32>> {
    m.to_host()
        .unwrap()
        .into_iter()
        .map(|(_, _, v)| v)
        .collect()
}

fn go(_: Event<'_>) -> Control {
    Control::Continue
}

#[test]
fn training_learns_and_is_deterministic_on_cpu() {
    let (train, test) = small_mnist(600, 200);
    let fit = |seed| {
        let mut t = Trainer::new(Cpu::new(), small_config(), run(3, seed)).unwrap();
        let r = t
            .fit(&train, &test, &SavePolicy::default(), &mut go)
            .unwrap();
        (weights(t.model()), r)
    };
    let (w1, r1) = fit(7);
    let (w2, r2) = fit(7);
    let (w3, _) = fit(8);
    assert_eq!(w1, w2, "the same seed gives identical weights");
    assert_ne!(w1, w3);
    assert_eq!(r1.len(), 3);
    assert_eq!(r1[2].test, r2[2].test);
    assert!(
        r1[2].train_neg_elbo < r1[0].train_neg_elbo - 20.0,
        "the loss falls: {} → {}",
        r1[0].train_neg_elbo,
        r1[2].train_neg_elbo
    );
    let t = &r1[2].test;
    assert!((t.neg_elbo - t.rec - t.kl).abs() < 1e-9);
    assert!((t.kl - t.kl_per_dim.iter().sum::<f64>()).abs() < 1e-9);
    assert!(t.active_units <= 6);
}

#[test]
fn stopping_mid_epoch_and_resuming_ends_at_the_same_weights() {
    let (train, test) = small_mnist(500, 100);
    let dir = scratch("resume");
    let state = dir.join("run.resume");
    let save = SavePolicy {
        model: Some(dir.join("m.safetensors")),
        state: Some(state.clone()),
        every_steps: 3,
        fault: None,
    };
    let mut straight = Trainer::new(Cpu::new(), small_config(), run(3, 1)).unwrap();
    let want = straight
        .fit(&train, &test, &SavePolicy::default(), &mut go)
        .unwrap();

    // 10 steps per epoch: stop at step 14, in the middle of epoch 2.
    let mut t = Trainer::new(Cpu::new(), small_config(), run(3, 1)).unwrap();
    let stop_at = |e: Event<'_>| match e {
        Event::Step { step: 14, .. } => Control::Stop,
        _ => Control::Continue,
    };
    let err = t.fit(&train, &test, &save, &mut { stop_at }).unwrap_err();
    assert!(matches!(err, ModelError::Stopped { step: 14 }), "{err}");
    drop(t);
    let mut resumed = Trainer::resume(Cpu::new(), &state, None).unwrap();
    assert_eq!(resumed.progress().step, 14);
    let got = resumed.fit(&train, &test, &save, &mut go).unwrap();
    assert_eq!(weights(resumed.model()), weights(straight.model()));
    assert_eq!(got.len(), 3);
    for (a, b) in got.iter().zip(&want) {
        assert_eq!(a.test, b.test);
        assert!((a.train_neg_elbo - b.train_neg_elbo).abs() < 1e-9);
    }
    // The model checkpoint beside it resumes too, through its .resume file.
    let ck = dir.join("m.safetensors");
    std::fs::copy(&state, latentlab_model::state_path(&ck)).unwrap();
    let r = Trainer::resume(Cpu::new(), &ck, Some(4)).unwrap();
    assert_eq!(r.config().epochs, 4);
    std::fs::remove_dir_all(dir).ok();
}

/// A training state written before hashed stream keys (no `streams` field)
/// would resume with other random draws than it started with: refused.
#[test]
fn a_state_from_earlier_streams_is_refused() {
    let dir = scratch("streams");
    let state = dir.join("old.resume");
    let t = Trainer::new(Cpu::new(), small_config(), run(1, 3)).unwrap();
    let adam = AdamState::new(t.model()).unwrap();
    let mut p = serde_json::to_value(t.progress()).unwrap();
    checkpoint::save_state(t.model(), &adam, &p.to_string(), &state).unwrap();
    assert_eq!(
        Trainer::resume(Cpu::new(), &state, None)
            .unwrap()
            .progress()
            .step,
        0
    );
    p.as_object_mut().unwrap().remove("streams");
    checkpoint::save_state(t.model(), &adam, &p.to_string(), &state).unwrap();
    let e = Trainer::resume(Cpu::new(), &state, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("random streams differ (version 1"), "{e}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_factor_vae_state_without_its_discriminator_is_refused() {
    use latentlab_model::discriminator::DiscriminatorSpec;
    use latentlab_model::objective::Objective;
    let dir = scratch("factor-state");
    let state = dir.join("run.resume");
    let cfg = TrainConfig {
        objective: Objective::FactorVae {
            gamma: 10.0,
            discriminator: DiscriminatorSpec {
                width: 8,
                depth: 1,
                ..DiscriminatorSpec::default()
            },
        },
        ..run(1, 3)
    };
    let t = Trainer::new(Cpu::new(), small_config(), cfg).unwrap();
    t.save_state(&state).unwrap();
    assert!(Trainer::resume(Cpu::new(), &state, None).is_ok());
    // The same state written without the discriminator's tensors.
    let adam = AdamState::new(t.model()).unwrap();
    let mut p = t.progress().clone();
    p.config = Some(t.config().clone());
    let json = serde_json::to_string(&p).unwrap();
    checkpoint::save_state(t.model(), &adam, &json, &state).unwrap();
    let e = Trainer::resume(Cpu::new(), &state, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs tensor discriminator.0.weight"), "{e}");
    std::fs::remove_dir_all(dir).ok();
}

/// A run killed after its last state write but before (or during) its last
/// model write: resuming the finished state still leaves the final weights
/// on disk.
#[test]
fn resuming_a_finished_run_writes_its_weights() {
    let (train, test) = small_mnist(200, 50);
    let dir = scratch("finished");
    let model = dir.join("m.safetensors");
    let state = dir.join("m.safetensors.resume");
    let save = SavePolicy {
        model: Some(model.clone()),
        state: Some(state.clone()),
        every_steps: 0,
        fault: None,
    };
    let mut t = Trainer::new(Cpu::new(), small_config(), run(1, 3)).unwrap();
    t.fit(&train, &test, &save, &mut go).unwrap();
    let tensors = |p: &std::path::Path| {
        let bytes = std::fs::read(p).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut v: Vec<(String, Vec<u8>)> = st
            .tensors()
            .into_iter()
            .map(|(n, t)| (n, t.data().to_vec()))
            .collect();
        v.sort();
        v
    };
    let want = tensors(&model);
    // The kill: the weights file is gone (or stale), the state says "done".
    std::fs::remove_file(&model).unwrap();
    let mut r = Trainer::resume(Cpu::new(), &state, None).unwrap();
    assert_eq!(r.fit(&train, &test, &save, &mut go).unwrap().len(), 1);
    // (Compared tensor by tensor: the header's metadata order may differ.)
    assert!(tensors(&model) == want);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_non_finite_loss_stops_with_the_step_and_keeps_the_weights() {
    let (mut train, test) = small_mnist(100, 20);
    let cfg = ModelConfig {
        likelihood: Likelihood::Gaussian {
            logvar: 0.0,
            learned: false,
        },
        ..small_config()
    };
    train.images.slice_mut(s![60.., ..]).fill(1e20);
    let mut t = Trainer::new(
        Cpu::new(),
        cfg,
        TrainConfig {
            batch_size: 100,
            ..run(2, 0)
        },
    )
    .unwrap();
    let before = weights(t.model());
    let err = t
        .fit(&train, &test, &SavePolicy::default(), &mut go)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ModelError::Diverged { step: 1, .. }), "{msg}");
    assert!(
        msg.contains("step 1") && msg.contains("learning rate"),
        "{msg}"
    );
    assert_eq!(weights(t.model()), before, "the bad step was not applied");
}

#[test]
fn bad_data_is_refused() {
    let (mut train, test) = small_mnist(100, 20);
    let mut t = Trainer::new(Cpu::new(), small_config(), run(1, 0)).unwrap();
    train.images[[3, 5]] = 2.0;
    let e = t
        .fit(&train, &test, &SavePolicy::default(), &mut go)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[0, 1]"), "{e}");
    let d = dsprites::split(10, 5, 0);
    let e = t
        .fit(&d.train, &d.test, &SavePolicy::default(), &mut go)
        .unwrap_err()
        .to_string();
    assert!(e.contains("4096") && e.contains("784"), "{e}");
}

#[test]
fn checkpoints_round_trip_and_pytorch_files_load() {
    let (train, test) = small_mnist(200, 50);
    let dir = scratch("ckpt");
    let mut t = Trainer::new(Cpu::new(), small_config(), run(1, 3)).unwrap();
    t.fit(&train, &test, &SavePolicy::default(), &mut go)
        .unwrap();
    let path = dir.join("m.safetensors");
    checkpoint::save(t.model(), &path).unwrap();
    let back = checkpoint::load(Cpu::new(), &path, &LoadOptions::default()).unwrap();
    assert_eq!(back.config(), t.model().config());
    assert_eq!(weights(&back), weights(t.model()));
    let a = t.model().encode(test.view()).unwrap();
    assert_eq!(back.encode(test.view()).unwrap(), a);

    // The same tensors with no latentlab metadata: what PyTorch's
    // save_file(model.state_dict()) writes.
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        st.tensors().into_iter().collect();
    let plain = dir.join("torch.safetensors");
    std::fs::write(
        &plain,
        safetensors::tensor::serialize(views.clone(), None).unwrap(),
    )
    .unwrap();
    let ck = Checkpoint::read(&plain, &LoadOptions::default()).unwrap();
    assert!(!ck.has_config);
    assert_eq!(
        ck.config,
        *t.model().config(),
        "architecture inferred from names and shapes"
    );
    let m = ck.model(Cpu::new()).unwrap();
    assert_eq!(m.encode(test.view()).unwrap(), a);
    let z = a.mu.slice(s![..5, ..]).to_owned();
    assert_eq!(
        m.decode(z.view()).unwrap(),
        t.model().decode(z.view()).unwrap()
    );

    // Broken files: each a clear error naming the file.
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let no_logvar: Vec<_> = views
        .iter()
        .filter(|(n, _)| !n.starts_with("fc_mu"))
        .cloned()
        .collect();
    let missing = dir.join("missing.safetensors");
    std::fs::write(
        &missing,
        safetensors::tensor::serialize(no_logvar, None).unwrap(),
    )
    .unwrap();
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"\xff\xff\xff\xff\xff\xff\xff\x7fhello").unwrap();
    let cases = [
        (truncated, "not a valid safetensors"),
        (missing, "fc_mu.weight"),
        (garbage, "not a valid safetensors"),
        (dir.join("absent.safetensors"), "absent.safetensors"),
        (dir.clone(), "directory"),
    ];
    for (p, needle) in cases {
        let e = Checkpoint::read(&p, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{}: {e}", p.display());
        assert!(
            e.contains(&*p.file_name().unwrap().to_string_lossy()),
            "{e}"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn autoencoder_and_gaussian_decoders_train() {
    let (train, test) = small_mnist(200, 50);
    for cfg in [
        ModelConfig {
            kind: ModelKind::Autoencoder,
            ..small_config()
        },
        ModelConfig {
            likelihood: Likelihood::Gaussian {
                logvar: -2.0,
                learned: true,
            },
            ..small_config()
        },
    ] {
        let mut t = Trainer::new(Cpu::new(), cfg.clone(), run(2, 0)).unwrap();
        let r = t
            .fit(&train, &test, &SavePolicy::default(), &mut go)
            .unwrap();
        assert!(r[1].test.neg_elbo.is_finite());
        assert!(r[1].train_neg_elbo < r[0].train_neg_elbo, "{cfg:?}");
        if cfg.kind == ModelKind::Autoencoder {
            assert_eq!(r[1].test.kl, 0.0);
        }
    }
}

#[test]
fn importance_weighting_tightens_the_bound() {
    let (train, test) = small_mnist(400, 40);
    let mut t = Trainer::new(Cpu::new(), small_config(), run(2, 2)).unwrap();
    t.fit(&train, &test, &SavePolicy::default(), &mut go)
        .unwrap();
    let elbo = evaluate(t.model(), test.view(), 100, 5).unwrap().neg_elbo;
    let iw = importance_weighted_nll(t.model(), test.view(), 500, 5).unwrap();
    assert!(iw.nll.is_finite() && iw.std_error > 0.0);
    assert!(iw.nll < elbo, "IW {} should be below −ELBO {elbo}", iw.nll);
    // With one sample the estimator is unbiased for −ELBO.
    let one = importance_weighted_nll(t.model(), test.view(), 1, 9).unwrap();
    assert!(
        (one.nll - elbo).abs() < 4.0 * one.std_error + 1.0,
        "k = 1 gives {} ± {}, −ELBO is {elbo}",
        one.nll,
        one.std_error
    );
    let again = importance_weighted_nll(t.model(), test.view(), 500, 5).unwrap();
    assert_eq!(iw, again, "seeded");
}

#[test]
fn iwae_with_one_sample_is_the_elbo_and_its_bound_grows_with_k() {
    use latentlab_model::StepParams;
    use latentlab_model::objective::Objective;
    let (train, test) = small_mnist(400, 40);
    let cfg = TrainConfig {
        objective: Objective::Iwae { samples: 5 },
        ..run(2, 3)
    };
    let mut t = Trainer::new(Cpu::new(), small_config(), cfg).unwrap();
    let reports = t
        .fit(&train, &test, &SavePolicy::default(), &mut go)
        .unwrap();
    // The bound for k = 5 lies above the one-sample ELBO on the training
    // batches (−iw_bound below the −ELBO).
    let last = reports.last().unwrap();
    assert!(
        -last.terms["iw_bound"] < last.train_neg_elbo,
        "k = 5 bound {} vs ELBO {}",
        last.terms["iw_bound"],
        -last.train_neg_elbo
    );
    // On the trained model the bound does not decrease in k.
    let mut prev = f64::INFINITY;
    for k in [1, 5, 50, 500] {
        let iw = importance_weighted_nll(t.model(), test.view(), k, 7).unwrap();
        assert!(
            iw.nll <= prev,
            "k = {k}: −log p(x) ≈ {} after {prev}",
            iw.nll
        );
        prev = iw.nll;
    }
    // k = 1: the step's loss is the one-sample ELBO, rec + log q − log p,
    // whose mean over noise draws is the analytic ELBO the ELBO step takes.
    let model = t.model();
    let be = Cpu::new();
    let x = be
        .upload(
            train.images.slice(s![..50, ..]).as_slice().unwrap(),
            Shape::new(50, 784),
        )
        .unwrap();
    let hp = |objective, step| StepParams {
        beta: 1.0,
        free_bits: None,
        capacity: None,
        clip_grad_norm: None,
        seed: 1,
        step,
        lr: 1e-3,
        weight_decay: 0.0,
        objective,
        dataset_size: 400,
    };
    let (mut diffs, mut elbo) = (Vec::new(), 0.0);
    for step in 1..=400 {
        let one = model
            .gradients(&x, &hp(Objective::Iwae { samples: 1 }, step))
            .unwrap()
            .0;
        let e = model.gradients(&x, &hp(Objective::Elbo, step)).unwrap().0;
        // The same noise, so the same sample and reconstruction.
        assert!((one.rec_sum - e.rec_sum).abs() <= 1e-5 * e.rec_sum.abs());
        diffs.push(one.loss - e.loss);
        elbo = e.loss;
    }
    let n = diffs.len() as f64;
    let mean = diffs.iter().sum::<f64>() / n;
    let se = (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt();
    assert!(
        mean.abs() < 4.0 * se + 1e-3 * elbo.abs(),
        "k = 1 minus the ELBO: {mean} ± {se}"
    );
}

#[test]
fn gpu_training_matches_cpu() {
    let Some(gpu) = test_gpu() else { return };
    let (train, test) = small_mnist(100, 20);
    let cfg = ModelConfig {
        hidden: vec![32],
        latent: 4,
        ..ModelConfig::mnist(4)
    };
    let run = TrainConfig {
        epochs: 1,
        batch_size: 25,
        ..TrainConfig::default()
    };
    let mut c = Trainer::new(Cpu::new(), cfg.clone(), run.clone()).unwrap();
    let mut g = Trainer::new(gpu, cfg, run).unwrap();
    let rc = c
        .fit(&train, &test, &SavePolicy::default(), &mut go)
        .unwrap();
    let rg = g
        .fit(&train, &test, &SavePolicy::default(), &mut go)
        .unwrap();
    let (wc, wg) = (weights(c.model()), weights(g.model()));
    let mut worst = 0.0f32;
    for (a, b) in wc.iter().zip(&wg) {
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
    }
    assert!(worst < 1e-3, "CPU and GPU weights differ by {worst}");
    assert!((rc[0].test.neg_elbo - rg[0].test.neg_elbo).abs() < 0.05 * rc[0].test.neg_elbo.abs());
    let x: Array2<f32> = test.images.slice(s![..5, ..]).to_owned();
    let (pc, pg) = (
        c.model().encode(x.view()).unwrap(),
        g.model().encode(x.view()).unwrap(),
    );
    for (a, b) in pc.mu.iter().zip(pg.mu.iter()) {
        assert!((a - b).abs() < 1e-2, "{a} vs {b}");
    }
}

#[test]
fn iwae_and_factor_vae_train_alike_on_the_gpu() {
    use latentlab_model::discriminator::DiscriminatorSpec;
    use latentlab_model::objective::Objective;
    let Some(gpu) = test_gpu() else { return };
    let (train, test) = small_mnist(100, 20);
    let cfg = ModelConfig {
        hidden: vec![32],
        latent: 4,
        ..ModelConfig::mnist(4)
    };
    for objective in [
        Objective::Iwae { samples: 4 },
        Objective::FactorVae {
            gamma: 20.0,
            discriminator: DiscriminatorSpec {
                width: 64,
                depth: 2,
                ..DiscriminatorSpec::default()
            },
        },
    ] {
        let run = TrainConfig {
            epochs: 1,
            batch_size: 25,
            objective,
            ..TrainConfig::default()
        };
        let mut c = Trainer::new(Cpu::new(), cfg.clone(), run.clone()).unwrap();
        let mut g = Trainer::new(gpu.clone(), cfg.clone(), run).unwrap();
        let rc = c
            .fit(&train, &test, &SavePolicy::default(), &mut go)
            .unwrap();
        let rg = g
            .fit(&train, &test, &SavePolicy::default(), &mut go)
            .unwrap();
        let (wc, wg) = (weights(c.model()), weights(g.model()));
        let worst = wc
            .iter()
            .zip(&wg)
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-3,
            "{}: CPU and GPU weights differ by {worst}",
            objective.name()
        );
        for (k, v) in &rc[0].terms {
            let w = rg[0].terms[k];
            assert!(
                (v - w).abs() < 1e-3 * v.abs().max(1.0),
                "{k}: CPU {v}, GPU {w}"
            );
        }
    }
}

/// Inputs in any memory layout (a transposed view is column-major) encode
/// and decode like their row-major copies.
#[test]
fn column_major_inputs_are_accepted() {
    let (train, _) = small_mnist(8, 1);
    let m = Vae::new(Cpu::new(), small_config(), 0).unwrap();
    let x = train.images.clone();
    let xt = x.t().as_standard_layout().into_owned(); // 784 × 8, row-major
    let back = xt.t(); // 8 × 784, column-major view
    assert!(back.as_slice().is_none());
    let a = m.encode(x.view()).unwrap();
    let b = m.encode(back).unwrap();
    assert_eq!(a, b);
    let zt = a.mu.t().as_standard_layout().into_owned();
    assert_eq!(m.decode(zt.t()).unwrap(), m.decode(a.mu.view()).unwrap());
}

#[test]
fn every_objective_trains_resumes_and_reports_its_terms() {
    use latentlab_model::discriminator::DiscriminatorSpec;
    use latentlab_model::objective::{DipVariant, MmdKernel, Objective, TcEstimator};
    // 101 images in batches of 50: each epoch ends on a batch of one,
    // which has no aggregate to estimate and takes the ELBO.
    let (train, test) = small_mnist(101, 50);
    for (objective, parts) in [
        (
            Objective::BetaTcvae {
                alpha: 1.0,
                beta: 6.0,
                gamma: 1.0,
                estimator: TcEstimator::Mss,
            },
            &["dwkl", "mi", "tc"][..],
        ),
        (
            Objective::DipVae {
                variant: DipVariant::Ii,
                lambda_od: 5.0,
                lambda_d: 5.0,
            },
            &["dip_diagonal", "dip_off_diagonal"][..],
        ),
        (
            Objective::Mmd {
                kernel: MmdKernel::InverseMultiquadratic { scale: 12.0 },
                lambda: 100.0,
            },
            &["mmd"][..],
        ),
        (Objective::Iwae { samples: 3 }, &["iw_bound"][..]),
        (
            // The discriminator (weights, moments and step count) goes
            // into the training state and comes back on resume.
            Objective::FactorVae {
                gamma: 20.0,
                discriminator: DiscriminatorSpec {
                    width: 32,
                    depth: 2,
                    ..DiscriminatorSpec::default()
                },
            },
            &["disc_accuracy", "disc_loss", "tc_estimate"][..],
        ),
    ] {
        let cfg = TrainConfig {
            objective,
            ..run(2, 4)
        };
        let mut straight = Trainer::new(Cpu::new(), small_config(), cfg.clone()).unwrap();
        let want = straight
            .fit(&train, &test, &SavePolicy::default(), &mut go)
            .unwrap();
        for r in &want {
            let names: Vec<&str> = r.terms.keys().map(String::as_str).collect();
            assert_eq!(names, parts, "{}", objective.name());
            assert!(r.terms.values().all(|v| v.is_finite()));
            assert!(r.test.neg_elbo.is_finite());
        }
        // Stopped after step 4 (in epoch 2) and resumed: the same weights
        // and the same per-epoch terms.
        let dir = scratch(objective.name());
        let state = dir.join("run.resume");
        let save = SavePolicy {
            model: None,
            state: Some(state.clone()),
            every_steps: 1,
            fault: None,
        };
        let mut t = Trainer::new(Cpu::new(), small_config(), cfg).unwrap();
        let stop = |e: Event<'_>| match e {
            Event::Step { step: 4, .. } => Control::Stop,
            _ => Control::Continue,
        };
        assert!(t.fit(&train, &test, &save, &mut { stop }).is_err());
        let mut resumed = Trainer::resume(Cpu::new(), &state, None).unwrap();
        let got = resumed.fit(&train, &test, &save, &mut go).unwrap();
        assert_eq!(weights(resumed.model()), weights(straight.model()));
        if let Some(d) = straight.discriminator() {
            let r = resumed
                .discriminator()
                .expect("resumed with its discriminator");
            assert_eq!(r.step(), d.step());
            assert!(
                r.to_host().unwrap() == d.to_host().unwrap(),
                "the resumed discriminator's weights or moments differ"
            );
        }
        for (a, b) in got.iter().zip(&want) {
            for (k, v) in &b.terms {
                assert!((a.terms[k] - v).abs() <= 1e-9 * v.abs().max(1.0), "{k}");
            }
        }
        std::fs::remove_dir_all(dir).ok();
    }
}
