//! Checkpoints: the safetensors header, the tensors, the `latentlab.config`
//! metadata and the training progress; a parsed one is built into a model.
#![no_main]
use latentlab_model::{Checkpoint, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.safetensors");
    if let Ok(ck) = Checkpoint::parse(path, data, &LoadOptions::default())
        && ck.config.input_dim * ck.config.latent < 1 << 20
    {
        let _ = ck.model(latentlab_tensor::Cpu::new());
    }
});
