//! Attribute-vector files.
#![no_main]
use latentlab_manipulate::Manipulator;
use latentlab_model::IdentityModel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let m = IdentityModel(4);
    let mut man = Manipulator::new(&m);
    let _ = man.load_bytes(std::path::Path::new("fuzz.safetensors"), data);
});
