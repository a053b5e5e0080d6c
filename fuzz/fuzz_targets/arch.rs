//! Layer specifications (`--arch FILE.json`, `--checkpoint-arch`): the JSON
//! stacks, then the network built on grey, colour and tiny inputs (shape
//! inference, parameter shapes, every layer's checks).
#![no_main]
use latentlab_model::{ModelConfig, Stacks};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(stacks) = serde_json::from_slice::<Stacks>(data) {
        for (c, h, w) in [(1, 28, 28), (3, 64, 64), (1, 1, 5)] {
            let cfg = ModelConfig {
                input_dim: c * h * w,
                image_shape: Some((h, w)),
                channels: c,
                stacks: Some(stacks.clone()),
                ..ModelConfig::mnist(4)
            };
            if cfg.validate().is_ok() {
                let _ = cfg.parameter_count();
                let _ = cfg.describe();
            }
        }
    }
});
