//! ONNX graphs (`--encoder`, `--decoder`): the protobuf, the graph's
//! operators, its input and output shapes, typing and optimisation by
//! tract; a graph that opens as an encoder encodes one row of zeros.
#![no_main]
use latentlab_model::LatentModel;
use latentlab_onnx::{DecoderOutput, OnnxModel};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.onnx");
    if let Ok(m) = OnnxModel::from_bytes(Some((path, data)), None, DecoderOutput::Logits) {
        if m.input_dim() <= 1 << 12 {
            let _ = m.encode(ndarray::Array2::zeros((1, m.input_dim())).view());
        }
    }
    let _ = OnnxModel::from_bytes(None, Some((path, data)), DecoderOutput::Mean);
});
