//! The real training step, per backend: `Vae::train_step` on the reference
//! model (784-512-256-20, ReLU, Bernoulli, Adam), batch 128 — forward,
//! loss, backward and the Adam update, as `latentlab train` runs it.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use latentlab_benches::{TRAIN_BATCH, gpu};
use latentlab_model::{AdamState, ModelConfig, StepParams, Vae};
use latentlab_tensor::conformance::data;
use latentlab_tensor::{Backend, Cpu, Shape};

fn bench_backend<B: Backend>(c: &mut Criterion, id: &str, b: &B) {
    let mut vae = Vae::new(b.clone(), ModelConfig::mnist(20), 0).expect("model");
    let mut adam = AdamState::new(&vae).expect("adam");
    let x = b
        .upload(
            &data(3, TRAIN_BATCH * 784, 0.0, 1.0),
            Shape::new(TRAIN_BATCH, 784),
        )
        .expect("upload");
    let mut hp = StepParams {
        beta: 1.0,
        free_bits: None,
        capacity: None,
        clip_grad_norm: None,
        seed: 0,
        step: 0,
        lr: 1e-3,
        weight_decay: 0.0,
        objective: latentlab_model::objective::Objective::Elbo,
        dataset_size: 1 << 20,
    };
    let mut group = c.benchmark_group("train_step");
    group.throughput(Throughput::Elements(TRAIN_BATCH as u64));
    group.bench_function(id, |bench| {
        bench.iter(|| {
            hp.step += 1;
            let stats = b
                .run(|| vae.train_step(black_box(&x), &hp, &mut adam))
                .expect("step");
            b.sync().expect("sync");
            stats.loss
        })
    });
    group.finish();
}

fn train_step(c: &mut Criterion) {
    bench_backend(c, "cpu", &Cpu::new());
    if let Some(g) = gpu() {
        bench_backend(c, "gpu", &g);
    }
}

#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, train_step);
}
criterion_main!(group::benches);
