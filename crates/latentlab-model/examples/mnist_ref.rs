//! The reference set-up on the embedded MNIST-10k, printing each epoch.
use latentlab_model::{Control, Event, ModelConfig, TrainConfig, Trainer};
use latentlab_tensor::Cpu;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = latentlab_data::mnist_10k();
    let epochs = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20);
    let seed = std::env::args()
        .nth(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(0);
    let run = TrainConfig {
        epochs,
        seed,
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(Cpu::new(), ModelConfig::mnist(20), run)?;
    t.fit(&data.train, &data.test, &Default::default(), &mut |e| {
        if let Event::Epoch(r) = e {
            println!(
                "epoch {:2}  train −ELBO {:7.2}  test rec {:6.2} kl {:5.2} −ELBO {:7.2}  AU {:2}  {:.2}s ({:.0} img/s)",
                r.epoch, r.train_neg_elbo, r.test.rec, r.test.kl, r.test.neg_elbo, r.test.active_units,
                r.seconds, 8000.0 / r.seconds
            );
        }
        Control::Continue
    })?;
    Ok(())
}
