//! Finite-difference check of a whole convolutional VAE step: the model's f32
//! gradients (through [`Vae::gradients`]) against central differences of an
//! f64 re-implementation of the loss that evaluates the layer specification
//! with the tensor crate's direct f64 convolutions, with the same weights and
//! the same ε. Every layer kind with parameters is in the stack, with odd
//! sizes, dilation, output padding, a bias-free layer and batch
//! normalisation (1-D and 2-D, with and without γ and β) in training mode.

use latentlab_model::{
    Dims, LayerSpec, Likelihood, ModelConfig, ModelKind, Pair, Stacks, StepParams, Vae, streams,
};
use latentlab_tensor::conformance::reference;
use latentlab_tensor::{Activation, Backend, Conv2dGeometry, ConvTranspose2dGeometry, Cpu, Shape};

const SEED: u64 = 5;
const STEP: u64 = 2;
const BETA: f32 = 4.0;

fn stacks() -> Stacks {
    use LayerSpec::*;
    let act = Activation;
    Stacks {
        encoder: vec![
            Conv2d {
                out: 3,
                kernel: Pair::Both(4),
                stride: Pair::Both(2),
                padding: Pair::Both(1),
                dilation: Pair::Both(1),
                bias: true,
            },
            BatchNorm2d {
                eps: 1e-5,
                momentum: 0.1,
                affine: true,
            },
            act(latentlab_tensor::Activation::Tanh),
            Conv2d {
                out: 4,
                kernel: Pair::Each([3, 2]),
                stride: Pair::Both(1),
                padding: Pair::Each([1, 0]),
                dilation: Pair::Each([1, 2]),
                bias: false,
            },
            act(latentlab_tensor::Activation::Softplus),
            Flatten,
            Linear { out: 5, bias: true },
            BatchNorm1d {
                eps: 1e-3,
                momentum: 0.3,
                affine: true,
            },
            act(latentlab_tensor::Activation::Elu { alpha: 1.0 }),
        ],
        decoder: vec![
            Linear {
                out: 18,
                bias: true,
            },
            act(latentlab_tensor::Activation::Tanh),
            Unflatten {
                channels: 2,
                height: 3,
                width: 3,
            },
            ConvTranspose2d {
                out: 3,
                kernel: Pair::Both(3),
                stride: Pair::Both(2),
                padding: Pair::Both(1),
                output_padding: Pair::Both(1),
                dilation: Pair::Both(1),
                bias: true,
            },
            BatchNorm2d {
                eps: 1e-5,
                momentum: 0.1,
                affine: false,
            },
            act(latentlab_tensor::Activation::Sigmoid),
            ConvTranspose2d {
                out: 2,
                kernel: Pair::Each([3, 1]),
                stride: Pair::Both(1),
                padding: Pair::Each([1, 0]),
                output_padding: Pair::Both(0),
                dilation: Pair::Both(1),
                bias: true,
            },
        ],
    }
}

fn act(a: Activation, x: f64) -> f64 {
    reference::act(a, x)
}

/// Runs `specs` on a batch of `n` rows in f64, consuming parameters from
/// `p` in order.
fn stack_f64(
    specs: &[LayerSpec],
    mut dims: Dims,
    x: Vec<f64>,
    n: usize,
    p: &mut std::slice::Iter<'_, Vec<f64>>,
) -> Vec<f64> {
    let mut h = x;
    for spec in specs {
        match *spec {
            LayerSpec::Linear { out, bias } => {
                let inp = dims.len();
                let w = p.next().unwrap();
                let b = if bias { Some(p.next().unwrap()) } else { None };
                h = (0..n * out)
                    .map(|i| {
                        let (r, o) = (i / out, i % out);
                        b.map_or(0.0, |b| b[o])
                            + (0..inp)
                                .map(|k| h[r * inp + k] * w[o * inp + k])
                                .sum::<f64>()
                    })
                    .collect();
                dims = Dims::Flat(out);
            }
            LayerSpec::Conv2d {
                out,
                kernel,
                stride,
                padding,
                dilation,
                bias,
            } => {
                let Dims::Image([c, hh, ww]) = dims else {
                    panic!("images")
                };
                let g = Conv2dGeometry {
                    in_channels: c,
                    input: [hh, ww],
                    out_channels: out,
                    kernel: kernel.get(),
                    stride: stride.get(),
                    padding: padding.get(),
                    dilation: dilation.get(),
                };
                let w = p.next().unwrap();
                let b = if bias {
                    Some(&p.next().unwrap()[..])
                } else {
                    None
                };
                h = reference::conv2d(&h, w, b, &g, n);
                let [oh, ow] = g.output_size().unwrap();
                dims = Dims::Image([out, oh, ow]);
            }
            LayerSpec::ConvTranspose2d {
                out,
                kernel,
                stride,
                padding,
                output_padding,
                dilation,
                bias,
            } => {
                let Dims::Image([c, hh, ww]) = dims else {
                    panic!("images")
                };
                let g = ConvTranspose2dGeometry {
                    in_channels: c,
                    input: [hh, ww],
                    out_channels: out,
                    kernel: kernel.get(),
                    stride: stride.get(),
                    padding: padding.get(),
                    output_padding: output_padding.get(),
                    dilation: dilation.get(),
                };
                let w = p.next().unwrap();
                let b = if bias {
                    Some(&p.next().unwrap()[..])
                } else {
                    None
                };
                h = reference::conv_transpose2d(&h, w, b, &g, n);
                let [oh, ow] = g.output_size().unwrap();
                dims = Dims::Image([out, oh, ow]);
            }
            LayerSpec::BatchNorm1d { eps, affine, .. }
            | LayerSpec::BatchNorm2d { eps, affine, .. } => {
                let (c, l) = match dims {
                    Dims::Flat(k) => (k, 1),
                    Dims::Image([c, hh, ww]) => (c, hh * ww),
                };
                let (g, b) = if affine {
                    (p.next().unwrap().clone(), p.next().unwrap().clone())
                } else {
                    (vec![1.0; c], vec![0.0; c])
                };
                // The running statistics and the batch count: unused in
                // training mode.
                for _ in 0..3 {
                    p.next().unwrap();
                }
                h = reference::batch_norm_train(&h, n, c, l, &g, &b, f64::from(eps));
            }
            LayerSpec::Flatten => dims = Dims::Flat(dims.len()),
            LayerSpec::Unflatten {
                channels,
                height,
                width,
            } => dims = Dims::Image([channels, height, width]),
            LayerSpec::Activation(a) => h = h.into_iter().map(|v| act(a, v)).collect(),
        }
    }
    h
}

fn loss_f64(cfg: &ModelConfig, p: &[Vec<f64>], x: &[f64], eps: &[f64], n: usize) -> f64 {
    let st = cfg.stacks.as_ref().unwrap();
    let mut it = p.iter();
    let h = stack_f64(&st.encoder, cfg.input_dims(), x.to_vec(), n, &mut it);
    let head = [LayerSpec::Linear {
        out: cfg.latent,
        bias: true,
    }];
    let flat = Dims::Flat(h.len() / n);
    let mu = stack_f64(&head, flat, h.clone(), n, &mut it);
    let lv = stack_f64(&head, flat, h, n, &mut it);
    let z: Vec<f64> = (0..mu.len())
        .map(|i| mu[i] + (0.5 * lv[i]).exp() * eps[i])
        .collect();
    let kl: f64 = (0..mu.len())
        .map(|i| 0.5 * (mu[i] * mu[i] + lv[i].exp() - 1.0 - lv[i]))
        .sum();
    let logits = stack_f64(&st.decoder, Dims::Flat(cfg.latent), z, n, &mut it);
    assert!(it.next().is_none(), "every parameter is used");
    let rec: f64 = x
        .iter()
        .zip(&logits)
        .map(|(&t, &l)| l.max(0.0) - l * t + (-l.abs()).exp().ln_1p())
        .sum();
    (rec + f64::from(BETA) * kl) / n as f64
}

#[test]
fn conv_vae_gradients_match_finite_differences() {
    let cfg = ModelConfig {
        kind: ModelKind::Vae,
        input_dim: 2 * 6 * 6,
        hidden: vec![],
        latent: 3,
        activation: Activation::Relu,
        likelihood: Likelihood::Bernoulli,
        image_shape: Some((6, 6)),
        channels: 2,
        stacks: Some(stacks()),
    };
    cfg.validate().unwrap();
    let cpu = Cpu::sequential();
    let model = Vae::new(cpu, cfg.clone(), 9).unwrap();
    let n = 3;
    let xs: Vec<f32> = (0..n * cfg.input_dim)
        .map(|i| ((i * 7 % 11) as f32) / 10.0)
        .collect();
    let x_t = cpu.upload(&xs, Shape::new(n, cfg.input_dim)).unwrap();
    let hp = StepParams {
        beta: BETA,
        free_bits: None,
        capacity: None,
        clip_grad_norm: None,
        seed: SEED,
        step: STEP,
        lr: 1e-3,
        weight_decay: 0.0,
        objective: latentlab_model::objective::Objective::Elbo,
        dataset_size: 1 << 20,
    };
    let (stats, grads) = model.gradients(&x_t, &hp).unwrap();
    let grads: Vec<Option<Vec<f32>>> = grads
        .unwrap()
        .grads
        .iter()
        .map(|g| g.as_ref().map(|g| cpu.download(g).unwrap()))
        .collect();
    let eps: Vec<f64> = cpu
        .download(
            &cpu.randn(Shape::new(n, 3), streams::train_noise_key(SEED), STEP)
                .unwrap(),
        )
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    let x: Vec<f64> = xs.iter().map(|&v| f64::from(v)).collect();
    let params: Vec<Vec<f64>> = model
        .to_host()
        .unwrap()
        .into_iter()
        .map(|(_, _, v)| v.into_iter().map(f64::from).collect())
        .collect();
    let l0 = loss_f64(&cfg, &params, &x, &eps, n);
    assert!(
        (l0 - stats.loss).abs() < 1e-4 * (1.0 + l0.abs()),
        "loss {} vs f64 {l0}",
        stats.loss
    );
    let h = 1e-6;
    let mut worst = (0.0, String::new());
    let mut checked = 0;
    for (k, p) in cfg.parameters().iter().enumerate() {
        let Some(grad) = &grads[k] else {
            assert!(!p.trainable(), "{} has no gradient", p.name);
            continue;
        };
        assert_eq!(grad.len(), params[k].len(), "{}", p.name);
        for i in 0..params[k].len() {
            let mut q = params.clone();
            q[k][i] += h;
            let up = loss_f64(&cfg, &q, &x, &eps, n);
            q[k][i] -= 2.0 * h;
            let down = loss_f64(&cfg, &q, &x, &eps, n);
            let fd = (up - down) / (2.0 * h);
            let g = f64::from(grad[i]);
            // The floor: a bias that feeds a batch normalisation has no
            // gradient (the normalisation removes it), so its backward value
            // is f32 rounding noise of order 10⁻⁶ around 0.
            let err = (g - fd).abs() / (1e-2 + fd.abs());
            if err > worst.0 {
                worst = (
                    err,
                    format!("{}[{i}]: backward {g}, finite difference {fd}", p.name),
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 400, "{checked} parameters checked");
    assert!(worst.0 < 2e-3, "worst gradient: {}", worst.1);
}
