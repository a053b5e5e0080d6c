//! Several threads sharing one GPU device: each thread's chain of ops must see
//! its own earlier results (submissions reach the queue in recording order).

use latentlab_tensor::conformance::{Tolerance, data, test_gpu};
use latentlab_tensor::{Activation, Backend, Cpu, Shape, Transpose};

fn chain<B: Backend>(b: &B, seed: u64) -> Vec<f32> {
    let x = b
        .upload(&data(seed, 64 * 48, -1.0, 1.0), Shape::new(64, 48))
        .unwrap();
    let w = b
        .upload(&data(seed + 1, 32 * 48, -1.0, 1.0), Shape::new(32, 48))
        .unwrap();
    let bias = b
        .upload(&data(seed + 2, 32, -1.0, 1.0), Shape::new(1, 32))
        .unwrap();
    let mut h = b
        .activation(Activation::Tanh, &b.linear(&x, &w, &bias).unwrap())
        .unwrap();
    for _ in 0..40 {
        let s = b.scale(0.5, &h).unwrap();
        b.axpy(0.5, &s, &mut h).unwrap();
    }
    let g = b.matmul(&h, Transpose::Yes, &h, Transpose::No).unwrap();
    b.download(&b.sum_rows(&g).unwrap()).unwrap()
}

#[test]
fn threads_share_one_device() {
    let Some(gpu) = test_gpu() else { return };
    for round in 0..5u64 {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let gpu = gpu.clone();
                std::thread::spawn(move || (t, chain(&gpu, 100 * round + t)))
            })
            .collect();
        for h in handles {
            let (t, got) = h.join().expect("thread");
            let want: Vec<f64> = chain(&Cpu::new(), 100 * round + t)
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            // Relative to the output's scale: the row sums of a Gram matrix
            // cancel, so an element can be far smaller than its terms. A
            // chain that saw another thread's (or its own stale) results is
            // off by whole factors of 1.25 per missed step.
            let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            Tolerance::new(1e-4, 1e-4 * scale).assert(
                &format!("thread {t}, round {round}"),
                &got,
                &want,
            );
        }
    }
}
