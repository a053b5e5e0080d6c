//! Attribute-vector files.
#![no_main]
use latentlab_manipulate::Manipulator;
use latentlab_model::{LatentModel, ModelError, Posterior};
use libfuzzer_sys::fuzz_target;
use ndarray::{Array2, ArrayView2};

struct Identity;

impl LatentModel for Identity {
    fn latent_dim(&self) -> usize {
        4
    }
    fn input_dim(&self) -> usize {
        4
    }
    fn image_shape(&self) -> Option<(usize, usize)> {
        None
    }
    fn encode(&self, x: ArrayView2<'_, f32>) -> Result<Posterior, ModelError> {
        Ok(Posterior {
            mu: x.to_owned(),
            logvar: Array2::zeros(x.dim()),
        })
    }
    fn decode(&self, z: ArrayView2<'_, f32>) -> Result<Array2<f32>, ModelError> {
        Ok(z.to_owned())
    }
}

fuzz_target!(|data: &[u8]| {
    let m = Identity;
    let mut man = Manipulator::new(&m);
    let _ = man.load_bytes(std::path::Path::new("fuzz.safetensors"), data);
});
