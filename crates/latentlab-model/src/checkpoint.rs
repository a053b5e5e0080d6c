//! Checkpoints: one safetensors file in the PyTorch layout of DESIGN.md
//! (`encoder.0.weight`, …, `fc_mu.*`, `fc_logvar.*`, `decoder.*`; weights
//! `[out, in]`, biases 1-D, f32), with latentlab's config as JSON under the
//! metadata key `latentlab.config` and `format: pt`. A file PyTorch wrote
//! (`save_file(model.state_dict(), f)`) has no config: the architecture is
//! inferred from the names and shapes, with ReLU and Bernoulli logits unless
//! the caller says otherwise.
//!
//! Training state (for `--resume`) is a second safetensors file holding the
//! same weights plus Adam's moments (`adam.m.<name>`, `adam.v.<name>`) and the
//! run's progress as JSON (`latentlab.train`). Both are written atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use latentlab_tensor::{Activation, Backend, Shape};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::config::{Likelihood, ModelConfig, ModelKind};
use crate::error::{Result, ckpt_err};
use crate::vae::{AdamState, Vae};

/// Metadata key of the model config.
pub const CONFIG_KEY: &str = "latentlab.config";
/// Metadata key of the training progress.
pub const TRAIN_KEY: &str = "latentlab.train";
/// Largest checkpoint read (8 GiB).
const MAX_FILE: u64 = 8 << 30;

/// Assumptions for files without a latentlab config (PyTorch's).
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// The hidden activation.
    pub activation: Activation,
    /// The likelihood, when the file has no `decoder_logvar`.
    pub likelihood: Likelihood,
    /// Image height and width, when known.
    pub image_shape: Option<(usize, usize)>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            activation: Activation::Relu,
            likelihood: Likelihood::Bernoulli,
            image_shape: None,
        }
    }
}

fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn file_shape(name: &str, [r, c]: [usize; 2]) -> Vec<usize> {
    if r == 1 && (name.ends_with(".bias") || name == "decoder_logvar") {
        vec![c]
    } else {
        vec![r, c]
    }
}

fn serialize(
    path: &Path,
    tensors: Vec<NamedBytes>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(n, s, b)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| ckpt_err(path, e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::tensor::serialize(views, Some(metadata)).map_err(|e| ckpt_err(path, e.to_string()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    latentlab_data::fs::write_atomic(path, bytes).map_err(|e| ckpt_err(path, e.to_string()))
}

/// A tensor ready to serialise: name, file shape, little-endian bytes.
type NamedBytes = (String, Vec<usize>, Vec<u8>);

/// Host copies of one value per parameter, in checkpoint order.
pub type HostTensors = Vec<Vec<f32>>;

fn model_tensors<B: Backend>(model: &Vae<B>) -> Result<Vec<NamedBytes>> {
    Ok(model
        .to_host()?
        .into_iter()
        .map(|(n, s, v)| {
            let shape = file_shape(&n, s);
            (n, shape, to_bytes(&v))
        })
        .collect())
}

fn base_metadata<B: Backend>(model: &Vae<B>) -> HashMap<String, String> {
    HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (
            CONFIG_KEY.to_string(),
            serde_json::to_string(model.config()).expect("configs serialise"),
        ),
    ])
}

/// Writes the model's checkpoint atomically.
pub fn save<B: Backend>(model: &Vae<B>, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let bytes = serialize(path, model_tensors(model)?, base_metadata(model))?;
    write(path, &bytes)
}

/// Writes weights, Adam's moments and `progress` (JSON) atomically.
pub fn save_state<B: Backend>(
    model: &Vae<B>,
    adam: &AdamState<B>,
    progress: &str,
    path: impl AsRef<Path>,
) -> Result<()> {
    let path = path.as_ref();
    let mut tensors = model_tensors(model)?;
    let shapes = model.config().parameter_shapes();
    let be = model.backend();
    for (prefix, moments) in [("adam.m.", &adam.m), ("adam.v.", &adam.v)] {
        for ((name, s), t) in shapes.iter().zip(moments) {
            tensors.push((
                format!("{prefix}{name}"),
                file_shape(name, *s),
                to_bytes(&be.download(t)?),
            ));
        }
    }
    let mut meta = base_metadata(model);
    meta.insert(TRAIN_KEY.into(), progress.into());
    let bytes = serialize(path, tensors, meta)?;
    write(path, &bytes)
}

/// A checkpoint read from disk, before it is placed on a device.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The file.
    pub path: PathBuf,
    /// The architecture (from the metadata, or inferred).
    pub config: ModelConfig,
    /// Whether the config came from latentlab's metadata.
    pub has_config: bool,
    /// Parameters in [`ModelConfig::parameter_shapes`] order.
    pub params: HostTensors,
    /// Adam's moments, when the file is a training state.
    pub adam: Option<(HostTensors, HostTensors)>,
    /// The training progress JSON, when the file is a training state.
    pub progress: Option<String>,
}

impl Checkpoint {
    /// Reads and checks a checkpoint.
    pub fn read(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Self> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| ckpt_err(path, e.to_string()))?;
        if meta.is_dir() {
            return Err(ckpt_err(path, "is a directory, not a checkpoint file"));
        }
        if meta.len() > MAX_FILE {
            return Err(ckpt_err(
                path,
                format!("{} bytes is too large for a checkpoint", meta.len()),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| ckpt_err(path, e.to_string()))?;
        Self::parse(path, &bytes, opts)
    }

    /// Parses checkpoint bytes (`path` is used in messages only).
    pub fn parse(path: &Path, bytes: &[u8], opts: &LoadOptions) -> Result<Self> {
        let bad = |d: String| ckpt_err(path, d);
        if bytes.len() < 8 {
            return Err(bad(format!(
                "too short for a safetensors file ({} bytes)",
                bytes.len()
            )));
        }
        let (_, metadata) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        let meta = metadata.metadata().clone().unwrap_or_default();
        let (config, has_config) = match meta.get(CONFIG_KEY) {
            Some(json) => {
                let c: ModelConfig = serde_json::from_str(json).map_err(|e| {
                    bad(format!("metadata {CONFIG_KEY} is not a valid config: {e}"))
                })?;
                c.validate()
                    .map_err(|e| bad(format!("metadata {CONFIG_KEY}: {e}")))?;
                (c, true)
            }
            None => (infer(path, &st, opts)?, false),
        };
        let read = |name: &str, [r, c]: [usize; 2]| -> Result<Vec<f32>> {
            let t = st
                .tensor(name)
                .map_err(|_| bad(format!("tensor {name} is missing")))?;
            if t.dtype() != Dtype::F32 {
                return Err(bad(format!(
                    "tensor {name} is {:?}; latentlab reads F32",
                    t.dtype()
                )));
            }
            let ok = t.shape() == [r, c] || (r == 1 && t.shape() == [c]);
            if !ok {
                return Err(bad(format!(
                    "tensor {name} has shape {:?}, the architecture needs {:?}",
                    t.shape(),
                    file_shape(name, [r, c])
                )));
            }
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(bad(format!(
                    "tensor {name} holds a non-finite value at {i}"
                )));
            }
            Ok(v)
        };
        let shapes = config.parameter_shapes();
        let params = shapes
            .iter()
            .map(|(n, s)| read(n, *s))
            .collect::<Result<Vec<_>>>()?;
        let progress = meta.get(TRAIN_KEY).cloned();
        let adam = if progress.is_some() {
            let m = shapes
                .iter()
                .map(|(n, s)| read(&format!("adam.m.{n}"), *s))
                .collect::<Result<Vec<_>>>()?;
            let v = shapes
                .iter()
                .map(|(n, s)| read(&format!("adam.v.{n}"), *s))
                .collect::<Result<Vec<_>>>()?;
            Some((m, v))
        } else {
            None
        };
        Ok(Self {
            path: path.into(),
            config,
            has_config,
            params,
            adam,
            progress,
        })
    }

    /// Places the model on `backend`.
    pub fn model<B: Backend>(&self, backend: B) -> Result<Vae<B>> {
        Vae::from_host(backend, self.config.clone(), self.params.clone())
            .map_err(|e| ckpt_err(&self.path, e.to_string()))
    }

    /// Places Adam's moments on `backend`, when the file has them.
    pub fn adam_state<B: Backend>(&self, backend: &B) -> Result<Option<AdamState<B>>> {
        let Some((m, v)) = &self.adam else {
            return Ok(None);
        };
        let up = |xs: &Vec<Vec<f32>>| -> Result<Vec<B::Tensor>> {
            self.config
                .parameter_shapes()
                .iter()
                .zip(xs)
                .map(|((_, [r, c]), x)| Ok(backend.upload(x, Shape::new(*r, *c))?))
                .collect()
        };
        Ok(Some(AdamState {
            m: up(m)?,
            v: up(v)?,
        }))
    }
}

/// Reads a checkpoint and places it on `backend`.
pub fn load<B: Backend>(backend: B, path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Vae<B>> {
    Checkpoint::read(path, opts)?.model(backend)
}

/// Infers the architecture of a PyTorch `state_dict` from names and shapes.
fn infer(path: &Path, st: &SafeTensors<'_>, opts: &LoadOptions) -> Result<ModelConfig> {
    let bad = |d: String| ckpt_err(path, d);
    let shape = |name: &str| st.tensor(name).ok().map(|t| t.shape().to_vec());
    let matrix = |name: &str| -> Result<[usize; 2]> {
        match shape(name).as_deref() {
            Some([r, c]) => Ok([*r, *c]),
            Some(s) => Err(bad(format!(
                "tensor {name} has shape {s:?}, expected a matrix"
            ))),
            None => Err(bad(format!("tensor {name} is missing"))),
        }
    };
    let mu = matrix("fc_mu.weight").map_err(|_| {
        bad(format!(
            "no latentlab config and no fc_mu.weight: not a VAE checkpoint in the PyTorch layout (tensors: {})",
            {
                let mut n = st.names();
                n.sort();
                n.iter().take(8).copied().collect::<Vec<_>>().join(", ")
            }
        ))
    })?;
    let mut hidden = Vec::new();
    let mut input_dim = None;
    let mut k = 0;
    while let Some(s) = shape(&format!("encoder.{k}.weight")) {
        let [r, c] = matrix(&format!("encoder.{k}.weight"))?;
        let _ = s;
        if input_dim.is_none() {
            input_dim = Some(c);
        } else if hidden.last() != Some(&c) {
            return Err(bad(format!(
                "encoder.{k}.weight takes {c} inputs, the layer before gives {}",
                hidden.last().copied().unwrap_or(0)
            )));
        }
        hidden.push(r);
        k += 2;
    }
    let input_dim = input_dim.unwrap_or(mu[1]);
    if let Some(&h) = hidden.last()
        && h != mu[1]
    {
        return Err(bad(format!(
            "fc_mu.weight takes {} inputs, the encoder gives {h}",
            mu[1]
        )));
    }
    let kind = if shape("fc_logvar.weight").is_some() {
        ModelKind::Vae
    } else {
        ModelKind::Autoencoder
    };
    let likelihood = if shape("decoder_logvar").is_some() {
        Likelihood::Gaussian {
            logvar: 0.0,
            learned: true,
        }
    } else {
        opts.likelihood
    };
    let image_shape = opts.image_shape.or_else(|| {
        let side = (input_dim as f64).sqrt().round() as usize;
        (side * side == input_dim).then_some((side, side))
    });
    let config = ModelConfig {
        kind,
        input_dim,
        hidden,
        latent: mu[0],
        activation: opts.activation,
        likelihood,
        image_shape,
    };
    config
        .validate()
        .map_err(|e| bad(format!("inferred architecture: {e}")))?;
    // Every tensor the architecture needs is checked by the caller; here,
    // tensors the architecture does not explain mean a different model.
    let known: std::collections::HashSet<String> = config
        .parameter_shapes()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    if let Some(extra) = st
        .names()
        .into_iter()
        .find(|n| !known.contains(*n) && !n.starts_with("adam."))
    {
        return Err(bad(format!(
            "tensor {extra} does not belong to an MLP VAE of the inferred shape {input_dim}-{:?}-{}",
            config.hidden, config.latent
        )));
    }
    Ok(config)
}
