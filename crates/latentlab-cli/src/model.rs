//! The model a command analyses: a latentlab checkpoint (or PyTorch
//! state_dict) through `--checkpoint`, or ONNX graphs from any framework
//! through `--encoder` and `--decoder`. Both are one [`LatentModel`](latentlab::model::LatentModel), so
//! every command runs the same code on either.

use std::path::PathBuf;

use latentlab::model::{LatentModel, ModelKind, Posterior, Vae, checkpoint};
use latentlab::onnx::{DecoderOutput, OnnxModel};
use latentlab::tensor::{Backend, DeviceChoice};
use ndarray::{Array2, ArrayView2};

use crate::error::{CliError, Context, Result};

/// The flags that name a model, shared by every command that takes one.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ModelFlags {
    /// The checkpoint (latentlab's, or a PyTorch state_dict in safetensors).
    #[arg(long, conflicts_with_all = ["encoder", "decoder"])]
    pub checkpoint: Option<PathBuf>,
    /// Instead of --checkpoint, a model from any framework: an ONNX encoder
    /// from a batch of inputs (batch × C × H × W, or batch × D) to two
    /// outputs, the posterior means and log-variances (batch × d each).
    #[arg(long, value_name = "E.onnx")]
    pub encoder: Option<PathBuf>,
    /// With --encoder: the ONNX decoder from codes (batch × d) to the
    /// input's shape; not needed by commands that only encode.
    #[arg(long, value_name = "D.onnx")]
    pub decoder: Option<PathBuf>,
    /// What --decoder outputs: logits (Bernoulli; the mean is their
    /// sigmoid) or mean.
    #[arg(long, default_value = "logits", value_name = "logits|mean")]
    pub decoder_output: DecoderOutput,
}

impl ModelFlags {
    /// A checkpoint's flags (as `demo` passes them on).
    pub fn checkpoint(path: PathBuf) -> Self {
        Self {
            checkpoint: Some(path),
            ..Self::default()
        }
    }

    /// Whether any flag names a model.
    pub fn given(&self) -> bool {
        self.checkpoint.is_some() || self.encoder.is_some() || self.decoder.is_some()
    }

    /// The file that stands for the model in titles and messages.
    pub fn name(&self) -> String {
        self.checkpoint
            .as_ref()
            .or(self.encoder.as_ref())
            .or(self.decoder.as_ref())
            .map_or_else(|| "model".into(), |p| p.display().to_string())
    }
}

/// Which parts of a model a command uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Only the encoder (encode, diagnose, disentanglement).
    Encoder,
    /// Only the decoder (decode, sample).
    Decoder,
    /// Both.
    Both,
}

/// A latentlab model on a backend, or ONNX graphs.
pub enum Model<B: Backend> {
    /// From `--checkpoint`.
    Vae(Box<Vae<B>>),
    /// From `--encoder`/`--decoder`.
    Onnx(Box<OnnxModel>),
}

/// Opens the model the flags name, with the parts `need` says.
pub fn open<B: Backend>(backend: B, flags: &ModelFlags, need: Need) -> Result<Model<B>> {
    if flags.decoder_output != DecoderOutput::Logits && flags.decoder.is_none() {
        return Err("--decoder-output says what --decoder outputs; give --decoder".into());
    }
    if let Some(path) = &flags.checkpoint {
        let vae = checkpoint::load(backend, path, &crate::load::load_options())
            .context("--checkpoint")?;
        return Ok(Model::Vae(Box::new(vae)));
    }
    let (enc, dec) = (flags.encoder.as_deref(), flags.decoder.as_deref());
    match (need, enc, dec) {
        (_, None, None) => {
            return Err(CliError::from(match need {
                Need::Decoder => "give --checkpoint, or --decoder D.onnx",
                Need::Encoder => "give --checkpoint, or --encoder E.onnx",
                Need::Both => "give --checkpoint, or --encoder E.onnx and --decoder D.onnx",
            }));
        }
        (Need::Encoder | Need::Both, None, _) => {
            return Err("--encoder E.onnx is needed too: this command encodes images".into());
        }
        (Need::Both | Need::Decoder, _, None) => {
            return Err("--decoder D.onnx is needed too: this command decodes codes".into());
        }
        _ => {}
    }
    let m = OnnxModel::open(enc, dec, flags.decoder_output)?;
    Ok(Model::Onnx(Box::new(m)))
}

/// The device a command runs on: `--device` for a checkpoint; the CPU for
/// ONNX graphs, which tract runs there whatever `--device` says.
pub fn device(flags: &ModelFlags, choice: DeviceChoice) -> DeviceChoice {
    if flags.checkpoint.is_none() && (flags.encoder.is_some() || flags.decoder.is_some()) {
        if choice == DeviceChoice::Gpu {
            eprintln!(
                "latentlab: ONNX graphs run on the CPU (through tract); --device gpu does not apply to them"
            );
        }
        DeviceChoice::Cpu
    } else {
        choice
    }
}

/// `--data`, checked against the model's input.
pub fn load_for<B: Backend>(spec: &str, model: &Model<B>) -> Result<latentlab::data::Split> {
    let s = crate::load::load_data(spec, 0)?;
    model.check_input(spec, s.test.chw())?;
    Ok(s)
}

/// `a×b×c`.
fn dims(d: &[usize]) -> String {
    d.iter().map(usize::to_string).collect::<Vec<_>>().join("×")
}

impl<B: Backend> Model<B> {
    /// Channels per image.
    pub fn channels(&self) -> usize {
        match self {
            Model::Vae(v) => v.config().channels,
            Model::Onnx(o) => o.channels(),
        }
    }

    /// The decoder's raw output: logits for a Bernoulli decoder, means for
    /// a Gaussian one (or for `--decoder-output mean`, which has no logits).
    pub fn decode_raw(&self, z: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        match self {
            Model::Vae(v) => {
                let be = v.backend();
                let (n, d) = z.dim();
                let flat: Vec<f32> = z.iter().copied().collect();
                let zt = be.upload(&flat, latentlab::tensor::Shape::new(n, d))?;
                let x = v.decode_raw_device(&zt)?;
                Ok(Array2::from_shape_vec(
                    (n, v.input_dim()),
                    be.download(&x)?,
                )?)
            }
            Model::Onnx(o) => {
                if o.decoder_output() == DecoderOutput::Mean {
                    return Err(
                        "--logits: the decoder outputs means (--decoder-output mean), not logits"
                            .into(),
                    );
                }
                Ok(o.decode_raw(z)?)
            }
        }
    }

    /// One sentence on what the model is, for the report.
    pub fn describe(&self) -> String {
        match self {
            Model::Vae(v) => {
                let cfg = v.config();
                format!(
                    "A {}-{:?}-{} {}",
                    cfg.input_dim,
                    cfg.hidden,
                    cfg.latent,
                    match cfg.kind {
                        ModelKind::Vae => "VAE",
                        ModelKind::Autoencoder => "autoencoder",
                    }
                )
            }
            Model::Onnx(o) => format!(
                "An ONNX model ({}) of {} inputs and {} latents",
                o.describe(),
                dims(o.input_shape()),
                o.latent_dim()
            ),
        }
    }

    /// An error unless images of shape `chw` (from `--data spec`) fit the
    /// model's input.
    pub fn check_input(&self, spec: &str, chw: [usize; 3]) -> Result<()> {
        let have: usize = chw.iter().product();
        match self {
            Model::Vae(v) => {
                let want = v.input_dim();
                if have != want {
                    return Err(CliError::from(format!(
                        "--data {spec}: images have {have} values each but the checkpoint's model expects {want}"
                    )));
                }
            }
            Model::Onnx(o) => {
                let want = o.input_shape();
                let fits = if want.len() == 3 {
                    want == chw
                } else {
                    want.iter().product::<usize>() == have
                };
                if !fits {
                    return Err(CliError::from(format!(
                        "--data {spec}: the encoder expects {} inputs, --data gives {} ({} values)",
                        dims(want),
                        dims(&chw),
                        have
                    )));
                }
            }
        }
        Ok(())
    }
}

impl<B: Backend> LatentModel for Model<B> {
    fn latent_dim(&self) -> usize {
        match self {
            Model::Vae(v) => v.latent_dim(),
            Model::Onnx(o) => o.latent_dim(),
        }
    }

    fn input_dim(&self) -> usize {
        match self {
            Model::Vae(v) => v.input_dim(),
            Model::Onnx(o) => o.input_dim(),
        }
    }

    fn image_shape(&self) -> Option<(usize, usize)> {
        match self {
            Model::Vae(v) => v.image_shape(),
            Model::Onnx(o) => o.image_shape(),
        }
    }

    fn encode(&self, x: ArrayView2<'_, f32>) -> latentlab::model::Result<Posterior> {
        match self {
            Model::Vae(v) => v.encode(x),
            Model::Onnx(o) => o.encode(x),
        }
    }

    fn decode(&self, z: ArrayView2<'_, f32>) -> latentlab::model::Result<Array2<f32>> {
        match self {
            Model::Vae(v) => v.decode(z),
            Model::Onnx(o) => o.decode(z),
        }
    }
}
