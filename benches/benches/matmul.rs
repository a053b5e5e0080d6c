//! Matrix product at the VAE's shapes and 1024³, on every available backend.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use latentlab_benches::{MATMUL_SHAPES, gpu, random};
use latentlab_tensor::{Backend, Cpu, Transpose};

fn bench_backend<B: Backend>(c: &mut Criterion, id: &str, b: &B) {
    let mut group = c.benchmark_group("matmul");
    for &(m, k, n) in &MATMUL_SHAPES {
        let (x, y) = (random(b, m, k, 1), random(b, k, n, 2));
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        group.bench_with_input(
            BenchmarkId::new(id, format!("{m}x{k}x{n}")),
            &(),
            |bench, ()| {
                bench.iter(|| {
                    let out = b
                        .matmul(black_box(&x), Transpose::No, black_box(&y), Transpose::No)
                        .expect("matmul");
                    // Synchronise inside the timed closure (a no-op on the CPU).
                    b.sync().expect("sync");
                    out
                })
            },
        );
    }
    group.finish();
}

fn matmul(c: &mut Criterion) {
    bench_backend(c, "cpu", &Cpu::new());
    if let Some(g) = gpu() {
        bench_backend(c, "gpu", &g);
    }
}

#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, matmul);
}
criterion_main!(group::benches);
