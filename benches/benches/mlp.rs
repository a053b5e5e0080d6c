//! One MLP forward+backward (784-512-256-20, ReLU, batch 128) per backend.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use latentlab_benches::{MLP_BATCH, MLP_LAYERS, Mlp, gpu, random};
use latentlab_tensor::{Backend, Cpu};

fn bench_backend<B: Backend>(c: &mut Criterion, id: &str, b: &B) {
    let mlp = Mlp::new(b, &MLP_LAYERS);
    let x = random(b, MLP_BATCH, MLP_LAYERS[0], 3);
    let mut group = c.benchmark_group("mlp_forward_backward");
    group.throughput(Throughput::Elements(MLP_BATCH as u64));
    group.bench_function(id, |bench| {
        bench.iter(|| {
            let g = mlp.forward_backward(b, black_box(&x));
            b.sync().expect("sync");
            g
        })
    });
    group.finish();
}

fn mlp(c: &mut Criterion) {
    bench_backend(c, "cpu", &Cpu::new());
    if let Some(g) = gpu() {
        bench_backend(c, "gpu", &g);
    }
}

#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, mlp);
}
criterion_main!(group::benches);
