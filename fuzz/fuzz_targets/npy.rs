//! `.npy` files.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.npy");
    if let Ok(a) = latentlab_data::npy::parse(path, data) {
        let _ = a.to_f64();
        // The same array read as a data set of images (`--data x.npy`).
        let _ = latentlab_data::images_from_npy(path, &a);
    }
});
