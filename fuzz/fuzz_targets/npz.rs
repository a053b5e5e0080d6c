//! dSprites `.npz` archives (`--data FILE.npz`): the zip, its members'
//! `.npy` headers and their declared sizes, the bit-packing of `imgs`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.npz");
    if let Ok(f) = latentlab_data::npz::parse_dsprites_npz(path, std::io::Cursor::new(data)) {
        let _ = f.is_ordered_grid();
        let _ = f.images.rows(&[0]);
        let _ = f.split(1, 1, 0, "fuzz".into());
    }
});
