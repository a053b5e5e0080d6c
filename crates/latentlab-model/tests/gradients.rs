//! Finite-difference checks of the whole hand-written backward pass: the
//! model's f32 gradients against central differences of an independent f64
//! re-implementation of the loss, with the same weights and the same ε.

use latentlab_model::discriminator::{Discriminator, DiscriminatorSpec};
use latentlab_model::objective::{DipVariant, LatentBatch, MmdKernel, Objective, TcEstimator};
use latentlab_model::{Likelihood, ModelConfig, ModelKind, StepParams, Vae, streams};
use latentlab_tensor::{Activation, Backend, Cpu, Shape};

#[derive(Clone, Copy)]
struct Setup {
    kind: ModelKind,
    likelihood: Likelihood,
    activation: Activation,
    beta: f32,
    free_bits: Option<f32>,
    capacity: Option<(f32, f32)>,
    objective: Objective,
}

const SEED: u64 = 11;
const STEP: u64 = 3;

fn act(a: Activation, x: f64) -> f64 {
    match a {
        Activation::Tanh => x.tanh(),
        Activation::Elu { alpha } => {
            if x > 0.0 {
                x
            } else {
                f64::from(alpha) * (x.exp() - 1.0)
            }
        }
        Activation::Softplus => (1.0 + x.exp()).ln(),
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        _ => unreachable!("smooth activations only"),
    }
}

/// `x · wᵀ + b` in f64 (`w` is `[out, in]`).
fn linear(x: &[Vec<f64>], w: &[f64], b: &[f64], out: usize) -> Vec<Vec<f64>> {
    let inp = w.len() / out;
    x.iter()
        .map(|row| {
            (0..out)
                .map(|o| b[o] + (0..inp).map(|i| row[i] * w[o * inp + i]).sum::<f64>())
                .collect()
        })
        .collect()
}

/// FactorVAE's discriminator weights (nn.Linear layout) for the f64 loss.
type DiscWeights<'a> = Option<&'a [Vec<f64>]>;

fn loss_f64(
    cfg: &ModelConfig,
    s: &Setup,
    p: &[Vec<f64>],
    x: &[Vec<f64>],
    eps: &[Vec<f64>],
    disc: DiscWeights<'_>,
) -> f64 {
    terms_f64(cfg, s, p, x, eps, disc).0
}

/// The discriminator's mean `logit₀ − logit₁` on codes `z`, in f64.
fn tc_f64(w: &[Vec<f64>], z: &[Vec<f64>]) -> f64 {
    let layers = w.len() / 2;
    let mut h = z.to_vec();
    for l in 0..layers {
        let out = w[2 * l + 1].len();
        h = linear(&h, &w[2 * l], &w[2 * l + 1], out);
        if l + 1 < layers {
            h = h
                .into_iter()
                .map(|r| {
                    r.into_iter()
                        .map(|v| if v > 0.0 { v } else { 0.2 * v })
                        .collect()
                })
                .collect();
        }
    }
    h.iter().map(|r| r[0] - r[1]).sum::<f64>() / h.len() as f64
}

/// The encoder in f64: `(mu, logvar, index of the decoder's first
/// parameter)`; `logvar` is empty for an autoencoder.
#[allow(clippy::type_complexity)]
fn encode_f64(
    cfg: &ModelConfig,
    s: &Setup,
    p: &[Vec<f64>],
    x: &[Vec<f64>],
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>, usize) {
    let shapes = cfg.parameter_shapes();
    let mut k = 0;
    let mut h = x.to_vec();
    for _ in &cfg.hidden {
        let out = shapes[k].1[0];
        h = linear(&h, &p[k], &p[k + 1], out)
            .into_iter()
            .map(|r| r.into_iter().map(|v| act(s.activation, v)).collect())
            .collect();
        k += 2;
    }
    let d = cfg.latent;
    let mu = linear(&h, &p[k], &p[k + 1], d);
    k += 2;
    let lv = if cfg.kind == ModelKind::Vae {
        k += 2;
        linear(&h, &p[k - 2], &p[k - 1], d)
    } else {
        Vec::new()
    };
    (mu, lv, k)
}

/// The decoder from parameter `k` on, and each row's `−log p(x|z)`.
fn nll_f64(
    cfg: &ModelConfig,
    s: &Setup,
    p: &[Vec<f64>],
    mut k: usize,
    z: Vec<Vec<f64>>,
    x: &[Vec<f64>],
) -> Vec<f64> {
    let mut h = z;
    let widths: Vec<usize> = cfg
        .hidden
        .iter()
        .rev()
        .copied()
        .chain([cfg.input_dim])
        .collect();
    for (li, &w) in widths.iter().enumerate() {
        h = linear(&h, &p[k], &p[k + 1], w);
        if li + 1 < widths.len() {
            h = h
                .into_iter()
                .map(|r| r.into_iter().map(|v| act(s.activation, v)).collect())
                .collect();
        }
        k += 2;
    }
    match s.likelihood {
        Likelihood::Bernoulli => x
            .iter()
            .zip(&h)
            .map(|(xr, lr)| {
                xr.iter()
                    .zip(lr)
                    .map(|(&t, &l)| l.max(0.0) - l * t + (1.0 + (-l.abs()).exp()).ln())
                    .sum::<f64>()
            })
            .collect(),
        Likelihood::Gaussian { logvar, learned } => {
            let lv: Vec<f64> = if learned {
                p[k].clone()
            } else {
                vec![f64::from(logvar); cfg.input_dim]
            };
            x.iter()
                .zip(&h)
                .map(|(xr, mr)| {
                    xr.iter()
                        .zip(mr)
                        .zip(&lv)
                        .map(|((&t, &m), &v)| {
                            0.5 * ((2.0 * std::f64::consts::PI).ln()
                                + v
                                + (t - m).powi(2) * (-v).exp())
                        })
                        .sum::<f64>()
                })
                .collect()
        }
    }
}

/// The loss and each latent dimension's batch-mean KL, in f64.
fn terms_f64(
    cfg: &ModelConfig,
    s: &Setup,
    p: &[Vec<f64>],
    x: &[Vec<f64>],
    eps: &[Vec<f64>],
    disc: DiscWeights<'_>,
) -> (f64, Vec<f64>) {
    let (mu, lv, k) = encode_f64(cfg, s, p, x);
    let d = cfg.latent;
    if let Objective::Iwae { samples } = s.objective {
        // Burda et al.'s bound, written out: image i's sample j is ε's row
        // i·k + j.
        let ln2pi = (2.0 * std::f64::consts::PI).ln();
        let mut z = Vec::new();
        let mut xr = Vec::new();
        for (r, e) in eps.iter().enumerate() {
            let i = r / samples;
            z.push(
                (0..d)
                    .map(|j| mu[i][j] + (0.5 * lv[i][j]).exp() * e[j])
                    .collect::<Vec<f64>>(),
            );
            xr.push(x[i].clone());
        }
        let nll = nll_f64(cfg, s, p, k, z.clone(), &xr);
        let mut loss = 0.0;
        for i in 0..x.len() {
            let lw: Vec<f64> = (0..samples)
                .map(|j| {
                    let r = i * samples + j;
                    -nll[r]
                        + (0..d)
                            .map(|t| {
                                let zt = z[r][t];
                                let q = -0.5
                                    * (ln2pi
                                        + lv[i][t]
                                        + (zt - mu[i][t]).powi(2) * (-lv[i][t]).exp());
                                -0.5 * (ln2pi + zt * zt) - q
                            })
                            .sum::<f64>()
                })
                .collect();
            let m = lw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + lw.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            loss -= lse - (samples as f64).ln();
        }
        return (loss / x.len() as f64, vec![0.0; d]);
    }
    let mut latent = 0.0;
    let (z, kl_dims) = if cfg.kind == ModelKind::Vae {
        let z: Vec<Vec<f64>> = (0..x.len())
            .map(|i| {
                (0..d)
                    .map(|j| mu[i][j] + (0.5 * lv[i][j]).exp() * eps[i][j])
                    .collect()
            })
            .collect();
        let kl: Vec<f64> = (0..d)
            .map(|j| {
                (0..x.len())
                    .map(|i| 0.5 * (mu[i][j].powi(2) + lv[i][j].exp() - 1.0 - lv[i][j]))
                    .sum::<f64>()
                    / x.len() as f64
            })
            .collect();
        // The objective's latent term, through objective.rs in f64 (that
        // module is checked against PyTorch in tests/objectives.rs; here
        // the step's wiring of its gradients is).
        let flat = |a: &[Vec<f64>]| a.concat();
        let (m, l, zz) = (flat(&mu), flat(&lv), flat(&z));
        let mut prior = vec![0.0f32; m.len()];
        latentlab_tensor::philox::fill_normal(
            streams::objective_noise_key(SEED),
            STEP,
            0,
            &mut prior,
        );
        let prior: Vec<f64> = prior.into_iter().map(f64::from).collect();
        let b = LatentBatch {
            mu: &m,
            logvar: &l,
            z: &zz,
            rows: x.len(),
            dims: d,
        };
        if let Objective::FactorVae { gamma, .. } = s.objective {
            latent = gamma * tc_f64(disc.expect("FactorVAE's weights"), &z);
        } else if let Some(t) = s.objective.latent_term(&b, Some(&prior), 1 << 20).unwrap() {
            latent = t.loss;
        }
        (z, kl)
    } else {
        (mu, vec![0.0; d])
    };
    let n = x.len() as f64;
    let rec: f64 = nll_f64(cfg, s, p, k, z, x).iter().sum::<f64>() / n;
    if cfg.kind == ModelKind::Autoencoder {
        return (rec, kl_dims);
    }
    let total: f64 = kl_dims.iter().sum();
    let kl_term = if s.objective.replaces_kl() {
        0.0
    } else if let Some((c, g)) = s.capacity {
        f64::from(g) * (total - f64::from(c)).abs()
    } else if let Some(fb) = s.free_bits {
        f64::from(s.beta) * kl_dims.iter().map(|&k| k.max(f64::from(fb))).sum::<f64>()
    } else {
        f64::from(s.beta) * total
    };
    (rec + kl_term + latent, kl_dims)
}

/// Checks every gradient; returns the per-dimension KLs at the weights.
fn check(s: Setup) -> Vec<f64> {
    let cfg = ModelConfig {
        kind: s.kind,
        input_dim: 6,
        hidden: vec![5, 4],
        latent: 3,
        activation: s.activation,
        likelihood: s.likelihood,
        image_shape: None,
        channels: 1,
        stacks: None,
    };
    let cpu = Cpu::sequential();
    let model = Vae::new(cpu, cfg.clone(), 5).unwrap();
    let batch = 4;
    let xs: Vec<f32> = (0..batch * 6)
        .map(|i| ((i * 7 % 11) as f32) / 10.0)
        .collect();
    let x_t = cpu.upload(&xs, Shape::new(batch, 6)).unwrap();
    let hp = StepParams {
        beta: s.beta,
        free_bits: s.free_bits,
        capacity: s.capacity,
        clip_grad_norm: None,
        seed: SEED,
        step: STEP,
        lr: 0.0,
        weight_decay: 0.0,
        objective: s.objective,
        dataset_size: 1 << 20,
    };
    let samples = match s.objective {
        Objective::Iwae { samples } => samples,
        _ => 1,
    };
    let disc = match s.objective {
        Objective::FactorVae { discriminator, .. } => {
            Some(Discriminator::new(cpu, cfg.latent, discriminator, 8).unwrap())
        }
        _ => None,
    };
    let disc_w: Option<Vec<Vec<f64>>> = disc.as_ref().map(|d| {
        d.to_host()
            .unwrap()
            .0
            .into_iter()
            .map(|v| v.into_iter().map(f64::from).collect())
            .collect()
    });
    let (stats, grads) = match &disc {
        Some(d) => model
            .gradients_with_discriminator(&x_t, None, &hp, d)
            .unwrap(),
        None => model.gradients(&x_t, &hp).unwrap(),
    };
    let loss = stats.loss;
    let grads: Vec<Vec<f32>> = grads
        .expect("a finite loss")
        .grads
        .iter()
        .map(|g| {
            cpu.download(g.as_ref().expect("an MLP has no buffer"))
                .unwrap()
        })
        .collect();
    let eps_flat = cpu
        .download(
            &cpu.randn(
                Shape::new(batch * samples, 3),
                streams::train_noise_key(SEED),
                STEP,
            )
            .unwrap(),
        )
        .unwrap();
    let eps: Vec<Vec<f64>> = eps_flat
        .chunks(3)
        .map(|c| c.iter().map(|&v| f64::from(v)).collect())
        .collect();
    let x: Vec<Vec<f64>> = xs
        .chunks(6)
        .map(|c| c.iter().map(|&v| f64::from(v)).collect())
        .collect();
    let params: Vec<Vec<f64>> = model
        .to_host()
        .unwrap()
        .into_iter()
        .map(|(_, _, v)| v.into_iter().map(f64::from).collect())
        .collect();
    let (l0, kl_dims) = terms_f64(&cfg, &s, &params, &x, &eps, disc_w.as_deref());
    assert!(
        (l0 - loss).abs() < 1e-4 * (1.0 + l0.abs()),
        "loss {loss} vs f64 {l0}"
    );
    let h = 1e-6;
    let mut worst = (0.0, String::new());
    for (k, (name, _)) in cfg.parameter_shapes().iter().enumerate() {
        for i in 0..params[k].len() {
            let mut p = params.clone();
            p[k][i] += h;
            let up = loss_f64(&cfg, &s, &p, &x, &eps, disc_w.as_deref());
            p[k][i] -= 2.0 * h;
            let down = loss_f64(&cfg, &s, &p, &x, &eps, disc_w.as_deref());
            let fd = (up - down) / (2.0 * h);
            let g = f64::from(grads[k][i]);
            let err = (g - fd).abs() / (1e-3 + fd.abs());
            if err > worst.0 {
                worst = (
                    err,
                    format!("{name}[{i}]: backward {g}, finite difference {fd}"),
                );
            }
        }
    }
    assert!(worst.0 < 2e-3, "worst gradient: {}", worst.1);
    kl_dims
}

const BASE: Setup = Setup {
    kind: ModelKind::Vae,
    likelihood: Likelihood::Bernoulli,
    activation: Activation::Tanh,
    beta: 1.0,
    free_bits: None,
    capacity: None,
    objective: Objective::Elbo,
};

#[test]
fn vae_objectives() {
    // Every family's latent term, wired into the whole step: the backward
    // pass against finite differences of the f64 loss.
    for objective in [
        Objective::BetaTcvae {
            alpha: 1.0,
            beta: 6.0,
            gamma: 1.0,
            estimator: TcEstimator::Mss,
        },
        Objective::BetaTcvae {
            alpha: 0.5,
            beta: 3.0,
            gamma: 2.0,
            estimator: TcEstimator::Mws,
        },
        Objective::DipVae {
            variant: DipVariant::I,
            lambda_od: 5.0,
            lambda_d: 50.0,
        },
        Objective::DipVae {
            variant: DipVariant::Ii,
            lambda_od: 5.0,
            lambda_d: 5.0,
        },
        Objective::Mmd {
            kernel: MmdKernel::InverseMultiquadratic { scale: 6.0 },
            lambda: 50.0,
        },
        Objective::Mmd {
            kernel: MmdKernel::Rbf { scale: 6.0 },
            lambda: 50.0,
        },
    ] {
        check(Setup { objective, ..BASE });
    }
}

#[test]
fn vae_factor_vae() {
    // γ·TC through the discriminator into z, with the ELBO's KL beside it.
    check(Setup {
        objective: Objective::FactorVae {
            gamma: 20.0,
            discriminator: DiscriminatorSpec {
                width: 7,
                depth: 2,
                ..DiscriminatorSpec::default()
            },
        },
        ..BASE
    });
}

#[test]
fn vae_iwae() {
    // The bound over k decoded samples per image, with each sample's
    // reconstruction gradient weighted by its importance weight; k = 1 is
    // the one-sample ELBO. A learned Gaussian variance checks the
    // decoder's weighted variance gradient too.
    for samples in [1, 3] {
        check(Setup {
            objective: Objective::Iwae { samples },
            ..BASE
        });
        check(Setup {
            objective: Objective::Iwae { samples },
            likelihood: Likelihood::Gaussian {
                logvar: -1.0,
                learned: true,
            },
            activation: Activation::Softplus,
            ..BASE
        });
    }
}

#[test]
fn vae_bernoulli() {
    check(BASE);
}

#[test]
fn beta_vae_elu() {
    check(Setup {
        beta: 4.0,
        activation: Activation::Elu { alpha: 1.0 },
        ..BASE
    });
}

#[test]
fn gaussian_decoder_fixed_and_learned_variance() {
    check(Setup {
        likelihood: Likelihood::Gaussian {
            logvar: -1.0,
            learned: false,
        },
        activation: Activation::Softplus,
        ..BASE
    });
    check(Setup {
        likelihood: Likelihood::Gaussian {
            logvar: 0.5,
            learned: true,
        },
        ..BASE
    });
}

#[test]
fn free_bits_masks_dimensions_below_the_floor() {
    // A floor between the dimensions' KLs (measured at these weights), so
    // some dimensions are masked and some are not.
    let mut kls = check(BASE);
    kls.sort_by(f64::total_cmp);
    let floor = 0.5 * (kls[0] + kls[kls.len() - 1]);
    assert!(
        kls[0] < floor && floor < kls[kls.len() - 1] && kls[kls.len() - 1] - kls[0] > 1e-3,
        "the dimensions' KLs {kls:?} leave no floor between them"
    );
    check(Setup {
        free_bits: Some(floor as f32),
        ..BASE
    });
    // Every dimension masked: only the reconstruction drives the encoder.
    check(Setup {
        free_bits: Some(100.0),
        ..BASE
    });
}

#[test]
fn capacity_on_both_sides_of_c() {
    check(Setup {
        capacity: Some((0.0, 10.0)),
        ..BASE
    });
    check(Setup {
        capacity: Some((50.0, 10.0)),
        ..BASE
    });
}

#[test]
fn autoencoder() {
    check(Setup {
        kind: ModelKind::Autoencoder,
        ..BASE
    });
}
