//! PNG and JPEG files, as a folder of images reads them (`--data DIR`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(h) = latentlab_data::images::image_header(data) else {
        return;
    };
    // Decode only what is cheap to decode; the header already bounds it.
    if u64::from(h.width) * u64::from(h.height) <= 1 << 16 {
        let mut row = vec![0.0f32; 3 * 8 * 6];
        let _ = latentlab_data::images::decode_image(data, 3, (8, 6), true, &mut row);
        let mut grey = vec![0.0f32; 5 * 7];
        let _ = latentlab_data::images::decode_image(data, 1, (5, 7), false, &mut grey);
    }
});
