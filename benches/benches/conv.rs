//! conv64's convolutions one by one (DESIGN.md's module, batch 64): each
//! layer's forward pass and its backward pass (weight, bias and, past the
//! first layer, input gradients), per backend. Where `cargo xtask conv`
//! times whole training epochs against PyTorch, this shows which layer a
//! change to the CPU's kernels moved:
//! `cargo bench -p latentlab-benches --bench conv`.

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use latentlab_benches::{gpu, random};
use latentlab_tensor::{Backend, Conv2dGeometry, ConvTranspose2dGeometry, Cpu};

/// Images per batch (the training batch).
const BATCH: usize = 64;

/// The encoder's convolutions: `(in channels, input side, out channels)`,
/// each 4×4, stride 2, padding 1.
const ENCODER: [(usize, usize, usize); 4] = [(1, 64, 32), (32, 32, 32), (32, 16, 64), (64, 8, 64)];

/// The decoder's transposed convolutions, as [`ENCODER`].
const DECODER: [(usize, usize, usize); 4] = [(64, 4, 64), (64, 8, 32), (32, 16, 32), (32, 32, 1)];

/// Times `op` on `b`, waiting for the device after each run.
fn time<B: Backend, T>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    b: &B,
    name: String,
    op: impl Fn() -> latentlab_tensor::Result<T>,
) {
    group.bench_function(name, |bench| {
        bench.iter(|| {
            let out = op().expect("the op runs");
            b.sync().expect("sync");
            out
        })
    });
}

fn bench_backend<B: Backend>(c: &mut Criterion, id: &str, b: &B) {
    let mut group = c.benchmark_group(format!("conv64/{id}"));
    group.throughput(Throughput::Elements(BATCH as u64));
    for (i, &(cin, side, out)) in ENCODER.iter().enumerate() {
        let g = Conv2dGeometry::square(cin, [side, side], out, 4, 2, 1);
        let x = random(b, BATCH, g.input_len(), 1);
        let w = random(b, out, g.patch_len(), 2);
        let bias = random(b, 1, out, 3);
        let gy = random(b, BATCH, g.output_len(), 4);
        let name = format!("conv{i} {cin}→{out} @{side}");
        time(&mut group, b, format!("{name} forward"), || {
            b.conv2d(black_box(&x), &w, Some(&bias), &g)
        });
        // The first layer's input is the data: no input gradient.
        time(&mut group, b, format!("{name} backward"), || {
            b.conv2d_backward(black_box(&x), &w, true, &gy, &g, i > 0)
        });
    }
    for (i, &(cin, side, out)) in DECODER.iter().enumerate() {
        let g = ConvTranspose2dGeometry {
            in_channels: cin,
            input: [side, side],
            out_channels: out,
            kernel: [4, 4],
            stride: [2, 2],
            padding: [1, 1],
            output_padding: [0, 0],
            dilation: [1, 1],
        };
        let x = random(b, BATCH, g.input_len(), 5);
        let w = random(b, cin, out * 16, 6);
        let bias = random(b, 1, out, 7);
        let gy = random(b, BATCH, g.output_len(), 8);
        let name = format!("deconv{i} {cin}→{out} @{side}");
        time(&mut group, b, format!("{name} forward"), || {
            b.conv_transpose2d(black_box(&x), &w, Some(&bias), &g)
        });
        time(&mut group, b, format!("{name} backward"), || {
            b.conv_transpose2d_backward(black_box(&x), &w, true, &gy, &g, true)
        });
    }
    group.finish();
}

fn conv(c: &mut Criterion) {
    bench_backend(c, "cpu", &Cpu::new());
    if let Some(g) = gpu() {
        bench_backend(c, "gpu", &g);
    }
}

#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, conv);
}
criterion_main!(group::benches);
