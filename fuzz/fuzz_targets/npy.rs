//! `.npy` files.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = latentlab_data::npy::parse(std::path::Path::new("fuzz.npy"), data) {
        let _ = a.to_f64();
    }
});
