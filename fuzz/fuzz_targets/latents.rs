//! Streamed latents (`latentlab diagnose --latents/--mu`): the `.npy` and
//! `.safetensors` headers read without the data, then a few rows.
#![no_main]
use latentlab_data::matrix::RawMatrix;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("latentlab-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("input");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    for mut m in [
        RawMatrix::open_npy(&path),
        RawMatrix::open_safetensors(&path, "mu"),
    ]
    .into_iter()
    .flatten()
    {
        let rows = m.rows().min(4);
        let _ = m.read_rows(0, rows);
        let _ = m.read_selected(&[0, m.rows().saturating_sub(1)]);
    }
});
