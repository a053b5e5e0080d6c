//! ONNX graphs (`--encoder`, `--decoder`): the protobuf, the graph's
//! operators, its input and output shapes, typing and optimisation by
//! tract; a graph that opens as an encoder encodes one row of zeros.
//!
//! tract is not written for hostile input, and latentlab catches a panic
//! inside it and reports it as an unreadable file (the user sees an error
//! naming the file, as the command line's panic hook keeps quiet then).
//! libFuzzer's hook aborts on every panic, caught or not; this target's
//! hook does the command line's, so what it finds is a panic outside that
//! net. `LATENTLAB_FUZZ_STRICT=1` keeps libFuzzer's hook, to hunt the
//! tract panics a check before tract (`check_graph`) should turn into a
//! precise message; each one found goes into `fuzz/regressions/onnx/`.
#![no_main]
use latentlab_model::LatentModel;
use latentlab_onnx::{DecoderOutput, OnnxModel, inside_guarded_call};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        if std::env::var_os("LATENTLAB_FUZZ_STRICT").is_none() {
            let abort = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if !inside_guarded_call() {
                    abort(info);
                }
            }));
        }
    });
    let path = std::path::Path::new("fuzz.onnx");
    if let Ok(m) = OnnxModel::from_bytes(Some((path, data)), None, DecoderOutput::Logits) {
        if m.input_dim() <= 1 << 12 {
            let _ = m.encode(ndarray::Array2::zeros((1, m.input_dim())).view());
        }
    }
    let _ = OnnxModel::from_bytes(None, Some((path, data)), DecoderOutput::Mean);
});
