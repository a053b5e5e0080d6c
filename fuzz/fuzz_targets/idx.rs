//! IDX files, raw or gzip: any bytes give an array or an error, never a panic
//! or an allocation beyond the bound.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = latentlab_data::idx::parse(std::path::Path::new("fuzz.idx"), data);
});
