//! Trains the reference set-up and writes everything random about the run,
//! so that `benches/peers/torch_parity.py` can replay it in PyTorch:
//! `init.safetensors` (the initial weights), `perm.npy` (`[epochs, n]`, the
//! batch order of every epoch), `eps.npy` (`[steps, 128, 20]`, the ε of
//! every step; the last batch of an epoch uses its first rows) and
//! `final.safetensors` (the trained weights).
//!
//! `cargo run --release -p latentlab-model --example dump_randomness -- EPOCHS SEED OUT_DIR`
use std::path::PathBuf;

use latentlab_model::{Control, ModelConfig, TrainConfig, Trainer, checkpoint};
use latentlab_tensor::{Backend, Cpu, Shape};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: dump_randomness EPOCHS SEED OUT_DIR";
    let epochs: usize = args.next().ok_or(usage)?.parse()?;
    let seed: u64 = args.next().ok_or(usage)?.parse()?;
    let out = PathBuf::from(args.next().ok_or(usage)?);
    std::fs::create_dir_all(&out)?;
    let data = latentlab_data::mnist_10k();
    let n = data.train.len();
    let run = TrainConfig {
        epochs,
        seed,
        ..TrainConfig::default()
    };
    let (batch, latent) = (run.batch_size, 20);
    let be = Cpu::new();
    let mut t = Trainer::new(be, ModelConfig::mnist(latent), run)?;
    checkpoint::save(t.model(), out.join("init.safetensors"))?;
    let perm: Vec<i64> = (0..epochs as u64)
        .flat_map(|e| latentlab_model::streams::order(n, seed, e))
        .map(|i| i as i64)
        .collect();
    latentlab_data::npy::write_i64(out.join("perm.npy"), &[epochs, n], &perm)?;
    let steps = epochs * n.div_ceil(batch);
    let mut eps = Vec::with_capacity(steps * batch * latent);
    for step in 1..=steps as u64 {
        eps.extend(be.download(&be.randn(
            Shape::new(batch, latent),
            latentlab_model::streams::train_noise_key(seed),
            step,
        )?)?);
    }
    latentlab_data::npy::write_f32(out.join("eps.npy"), &[steps, batch, latent], &eps)?;
    t.fit(&data.train, &data.test, &Default::default(), &mut |_| {
        Control::Continue
    })?;
    checkpoint::save(t.model(), out.join("final.safetensors"))?;
    println!("wrote {}", out.display());
    Ok(())
}
