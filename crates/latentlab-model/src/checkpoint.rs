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

use crate::config::{Likelihood, ModelConfig, ModelKind, Stacks};
use crate::error::{Result, ckpt_err};
use crate::layers::{LayerSpec, Pair, Param, Role};
use crate::vae::{AdamState, Vae};

/// Metadata key of the model config.
pub const CONFIG_KEY: &str = "latentlab.config";
/// Metadata key of the training progress.
pub const TRAIN_KEY: &str = "latentlab.train";
/// Largest checkpoint read (8 GiB).
const MAX_FILE: u64 = 8 << 30;

/// Assumptions for files without a latentlab config (PyTorch's), and the
/// renaming rules that map another naming scheme onto latentlab's.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The hidden activation.
    pub activation: Activation,
    /// The likelihood, when the file has no `decoder_logvar`.
    pub likelihood: Likelihood,
    /// Image height and width, when known.
    pub image_shape: Option<(usize, usize)>,
    /// Prefix rules applied to the file's tensor names, in order (the first
    /// that matches a name rewrites it).
    pub renames: Vec<Rename>,
    /// The stacks of a file without a config, when they are not the MLP or
    /// the conv64-like stack that names and shapes reveal (batch
    /// normalisation, other kernels, strides or activations).
    pub stacks: Option<Stacks>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            activation: Activation::Relu,
            likelihood: Likelihood::Bernoulli,
            image_shape: None,
            renames: Vec::new(),
            stacks: None,
        }
    }
}

/// A prefix rule `FROM=TO`: a tensor name that starts with `FROM` is read
/// as `TO` followed by the rest (`module.=` strips DataParallel's prefix,
/// `enc.net.=encoder.` maps a module's children onto the encoder).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rename {
    /// The prefix in the file.
    pub from: String,
    /// What it becomes.
    pub to: String,
}

impl std::str::FromStr for Rename {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.split_once('=') {
            Some((from, to)) if !from.is_empty() => Ok(Self {
                from: from.into(),
                to: to.into(),
            }),
            _ => Err(format!(
                "`{s}` is not a rule FROM=TO with a non-empty FROM (e.g. module.= or enc.=encoder.)"
            )),
        }
    }
}

impl std::fmt::Display for Rename {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.from, self.to)
    }
}

/// A layer specification that also names a foreign checkpoint's modules:
/// the stacks, and the renaming rules that read each named module's
/// tensors as latentlab's (`enc.blocks.0.0.` → `encoder.0.`).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedStacks {
    /// The stacks.
    pub stacks: Stacks,
    /// One rule per named module, exact to the module (its name and a dot).
    pub renames: Vec<Rename>,
}

/// Parses a layer specification (`{"encoder": [...], "decoder": [...]}`)
/// in which a layer may carry `"name"`, the module path of its tensors in
/// the checkpoint (`"enc.blocks.0.0"` for `enc.blocks.0.0.weight`), and an
/// optional `"heads": {"fc_mu": "...", "fc_logvar": "..."}` names the two
/// heads; for state_dicts whose module tree is not a flat `nn.Sequential`
/// (blocks of `nn.Sequential`, other attribute names). Layers without a
/// name keep latentlab's (`encoder.{i}`).
pub fn parse_named_stacks(json: &str) -> std::result::Result<NamedStacks, String> {
    use serde_json::Value;
    let mut top: serde_json::Map<String, Value> =
        serde_json::from_str(json).map_err(|e| format!("not a JSON object: {e}"))?;
    let mut renames = Vec::new();
    let mut rule = |module: String, ours: String, at: &str| -> std::result::Result<(), String> {
        if module.is_empty() || module.ends_with('.') || module.starts_with('.') {
            return Err(format!(
                "{at}: `{module}` is not a module path (like enc.blocks.0.0)"
            ));
        }
        if renames
            .iter()
            .any(|r: &Rename| r.from == format!("{module}."))
        {
            return Err(format!("{at}: the module `{module}` is named twice"));
        }
        renames.push(Rename {
            from: format!("{module}."),
            to: format!("{ours}."),
        });
        Ok(())
    };
    let mut stacks = Vec::new();
    for part in ["encoder", "decoder"] {
        let Some(Value::Array(layers)) = top.remove(part) else {
            return Err(format!("no \"{part}\" list of layers"));
        };
        let mut specs = Vec::with_capacity(layers.len());
        for (i, mut layer) in layers.into_iter().enumerate() {
            let at = format!("{part}[{i}]");
            let name = match layer.as_object_mut().and_then(|o| o.remove("name")) {
                None => None,
                Some(Value::String(n)) => Some(n),
                Some(other) => return Err(format!("{at}: \"name\" must be a string, not {other}")),
            };
            let spec: LayerSpec =
                serde_json::from_value(layer).map_err(|e| format!("{at}: {e}"))?;
            if let Some(n) = name {
                if matches!(
                    spec,
                    LayerSpec::Flatten | LayerSpec::Unflatten { .. } | LayerSpec::Activation(_)
                ) {
                    return Err(format!(
                        "{at}: a {} layer has no tensors to name",
                        spec.kind()
                    ));
                }
                rule(n, format!("{part}.{i}"), &at)?;
            }
            specs.push(spec);
        }
        stacks.push(specs);
    }
    if let Some(heads) = top.remove("heads") {
        let Value::Object(heads) = heads else {
            return Err("\"heads\" must be an object {\"fc_mu\": ..., \"fc_logvar\": ...}".into());
        };
        for (head, module) in heads {
            if head != "fc_mu" && head != "fc_logvar" {
                return Err(format!("heads: `{head}` is neither fc_mu nor fc_logvar"));
            }
            let Value::String(module) = module else {
                return Err(format!("heads.{head}: the module path must be a string"));
            };
            rule(module, head.clone(), &format!("heads.{head}"))?;
        }
    }
    if let Some(key) = top.keys().next() {
        return Err(format!(
            "unknown key `{key}` (expected encoder, decoder and optionally heads)"
        ));
    }
    let decoder = stacks.pop().expect("two parts");
    let encoder = stacks.pop().expect("two parts");
    // Longer module paths first, so that `enc.0.1.` is tried before a
    // rule for `enc.0.` could claim its tensors.
    renames.sort_by_key(|r| std::cmp::Reverse(r.from.len()));
    Ok(NamedStacks {
        stacks: Stacks { encoder, decoder },
        renames,
    })
}

/// A file's tensors under latentlab's names (after the renaming rules).
struct Tensors<'a> {
    st: SafeTensors<'a>,
    /// latentlab's name → the file's.
    names: std::collections::BTreeMap<String, String>,
}

impl<'a> Tensors<'a> {
    fn new(path: &Path, st: SafeTensors<'a>, renames: &[Rename]) -> Result<Self> {
        let mut names = std::collections::BTreeMap::new();
        let mut used = vec![false; renames.len()];
        for file in st.names() {
            let ours = match renames.iter().position(|r| file.starts_with(&r.from)) {
                Some(i) => {
                    used[i] = true;
                    format!("{}{}", renames[i].to, &file[renames[i].from.len()..])
                }
                None => file.to_string(),
            };
            if let Some(other) = names.insert(ours.clone(), file.to_string()) {
                return Err(ckpt_err(
                    path,
                    format!("tensors {other} and {file} would both be read as {ours}"),
                ));
            }
        }
        if let Some(i) = used.iter().position(|u| !u) {
            return Err(ckpt_err(
                path,
                format!(
                    "renaming rule {} (--rename, or a name in --checkpoint-arch): no tensor name starts with {}",
                    renames[i], renames[i].from
                ),
            ));
        }
        Ok(Self { st, names })
    }

    fn tensor(&self, name: &str) -> Option<TensorView<'a>> {
        self.st.tensor(self.names.get(name)?).ok()
    }

    fn names(&self) -> Vec<&str> {
        self.names.keys().map(String::as_str).collect()
    }
}

/// An F32 tensor's values, each checked finite.
fn finite_f32(name: &str, t: &TensorView<'_>) -> std::result::Result<Vec<f32>, String> {
    let v: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    match v.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(format!("tensor {name} holds a non-finite value at {i}")),
        None => Ok(v),
    }
}

fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn serialize(
    path: &Path,
    tensors: Vec<NamedBytes>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(n, s, d, b)| {
            TensorView::new(*d, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| ckpt_err(path, e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::tensor::serialize(views, Some(metadata))
        .map_err(|e| ckpt_err(path, e.to_string()))?;
    Ok(sorted_metadata(bytes))
}

/// The same file with its `__metadata__` entries in name order: the
/// safetensors crate writes them in a `HashMap`'s order, which changes from
/// one process to the next, so the same weights saved twice would differ
/// byte for byte (a resumed run's checkpoint from an uninterrupted one's).
/// The header keeps its length (the same entries, reordered).
fn sorted_metadata(mut bytes: Vec<u8>) -> Vec<u8> {
    let Some(n) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    else {
        return bytes;
    };
    let Some(header) = bytes.get(8..8 + n) else {
        return bytes;
    };
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice(header) else {
        return bytes;
    };
    let Some(serde_json::Value::Object(meta)) = map.remove("__metadata__") else {
        return bytes;
    };
    let meta: std::collections::BTreeMap<String, serde_json::Value> = meta.into_iter().collect();
    let mut out = serde_json::Map::new();
    out.insert(
        "__metadata__".into(),
        serde_json::to_value(meta).expect("strings serialise"),
    );
    out.extend(map);
    let Ok(text) = serde_json::to_string(&out) else {
        return bytes;
    };
    if text.len() > n {
        return bytes;
    }
    let mut padded = text.into_bytes();
    padded.resize(n, b' ');
    bytes[8..8 + n].copy_from_slice(&padded);
    bytes
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    latentlab_data::fs::write_atomic(path, bytes).map_err(|e| ckpt_err(path, e.to_string()))
}

/// A tensor ready to serialise: name, file shape, type, little-endian bytes.
type NamedBytes = (String, Vec<usize>, Dtype, Vec<u8>);

/// A parameter's values as the file stores them: `F32`, except the batch
/// count, an `I64` scalar as PyTorch keeps `num_batches_tracked`.
fn param_bytes(p: &Param, v: &[f32]) -> (Dtype, Vec<u8>) {
    match p.role {
        Role::Count => (
            Dtype::I64,
            v.iter().flat_map(|&x| (x as i64).to_le_bytes()).collect(),
        ),
        Role::Trainable | Role::Buffer => (Dtype::F32, to_bytes(v)),
    }
}

/// Host copies of one value per parameter, in checkpoint order.
pub type HostTensors = Vec<Vec<f32>>;

fn model_tensors<B: Backend>(model: &Vae<B>) -> Result<Vec<NamedBytes>> {
    let be = model.backend();
    model
        .config()
        .parameters()
        .into_iter()
        .zip(model.params())
        .map(|(p, t)| {
            let (dtype, bytes) = param_bytes(&p, &be.download(t)?);
            Ok((p.name, p.dims, dtype, bytes))
        })
        .collect()
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
    save_state_with(model, adam, progress, Vec::new(), path)
}

/// [`save_state`] with more of the run's tensors (FactorVAE's
/// discriminator and its moments), each named with a prefix of
/// [`STATE_EXTRA_PREFIXES`].
pub fn save_state_with<B: Backend>(
    model: &Vae<B>,
    adam: &AdamState<B>,
    progress: &str,
    extra: Vec<(String, Vec<usize>, Vec<f32>)>,
    path: impl AsRef<Path>,
) -> Result<()> {
    let path = path.as_ref();
    let mut tensors = model_tensors(model)?;
    for (name, dims, values) in extra {
        debug_assert!(STATE_EXTRA_PREFIXES.iter().any(|p| name.starts_with(p)));
        tensors.push((name, dims, Dtype::F32, to_bytes(&values)));
    }
    let params = model.config().parameters();
    let be = model.backend();
    // Moments of the trainable parameters (buffers have none).
    for (prefix, moments) in [("adam.m.", &adam.m), ("adam.v.", &adam.v)] {
        for (p, t) in params.iter().zip(moments).filter(|(p, _)| p.trainable()) {
            tensors.push((
                format!("{prefix}{}", p.name),
                p.dims.clone(),
                Dtype::F32,
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
    /// A training state's other tensors by name (FactorVAE's
    /// discriminator, `discriminator.*`, and its moments,
    /// `adam.m.discriminator.*` and `adam.v.discriminator.*`).
    pub extra: std::collections::BTreeMap<String, Vec<f32>>,
}

/// The name prefixes of a training state's tensors beyond the model and
/// its moments.
pub const STATE_EXTRA_PREFIXES: [&str; 3] = [
    "discriminator.",
    "adam.m.discriminator.",
    "adam.v.discriminator.",
];

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
        let st = Tensors::new(path, st, &opts.renames)?;
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
        let read = |name: &str, p: &Param| -> Result<Vec<f32>> {
            let t = st
                .tensor(name)
                .ok_or_else(|| bad(format!("tensor {name} is missing")))?;
            // PyTorch's shape, or the device matrix's (biases as `[1, n]`).
            let ok = t.shape() == p.dims
                || t.shape() == [p.shape.rows, p.shape.cols]
                || (p.dims.is_empty() && t.shape() == [1]);
            if !ok {
                return Err(bad(format!(
                    "tensor {name} has shape {:?}, the architecture needs {:?}",
                    t.shape(),
                    p.dims
                )));
            }
            let v: Vec<f32> = match (t.dtype(), p.role) {
                (Dtype::F32, _) => t
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                // A batch count is exact in f32 up to 2²⁴ batches.
                (Dtype::I64, Role::Count) => t
                    .data()
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                    .collect(),
                (d, Role::Count) => {
                    return Err(bad(format!(
                        "tensor {name} is {d:?}; latentlab reads a batch count as I64 or F32"
                    )));
                }
                (d, _) => {
                    return Err(bad(format!("tensor {name} is {d:?}; latentlab reads F32")));
                }
            };
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(bad(format!(
                    "tensor {name} holds a non-finite value at {i}"
                )));
            }
            Ok(v)
        };
        let shapes = config.parameters();
        let params = shapes
            .iter()
            .map(|p| read(&p.name, p))
            .collect::<Result<Vec<_>>>()?;
        let progress = meta.get(TRAIN_KEY).cloned();
        let adam = if progress.is_some() {
            // Buffers have no moments; theirs stay zero.
            let moments = |prefix: &str| {
                shapes
                    .iter()
                    .map(|p| match p.trainable() {
                        true => read(&format!("{prefix}{}", p.name), p),
                        false => Ok(vec![0.0; p.shape.len()]),
                    })
                    .collect::<Result<Vec<_>>>()
            };
            Some((moments("adam.m.")?, moments("adam.v.")?))
        } else {
            None
        };
        let mut extra = std::collections::BTreeMap::new();
        if progress.is_some() {
            for name in st.names() {
                if !STATE_EXTRA_PREFIXES.iter().any(|p| name.starts_with(p)) {
                    continue;
                }
                let t = st.tensor(name).expect("listed");
                if t.dtype() != Dtype::F32 {
                    return Err(bad(format!(
                        "tensor {name} is {:?}; latentlab reads F32",
                        t.dtype()
                    )));
                }
                let v = finite_f32(name, &t).map_err(bad)?;
                extra.insert(name.to_string(), v);
            }
        }
        Ok(Self {
            path: path.into(),
            config,
            has_config,
            params,
            adam,
            progress,
            extra,
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
fn infer(path: &Path, st: &Tensors<'_>, opts: &LoadOptions) -> Result<ModelConfig> {
    let bad = |d: String| ckpt_err(path, d);
    let shape = |name: &str| st.tensor(name).map(|t| t.shape().to_vec());
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
    if let Some(stacks) = &opts.stacks {
        return config_from_stacks(path, st, opts, stacks, mu);
    }
    let four_d = st.names().into_iter().any(|n| {
        (n.starts_with("encoder.") || n.starts_with("decoder."))
            && n.ends_with(".weight")
            && shape(n).is_some_and(|s| s.len() == 4)
    });
    if four_d {
        return infer_stacks(path, st, opts, mu);
    }
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
    let (kind, likelihood) = kind_and_likelihood(st, opts);
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
        channels: 1,
        stacks: None,
    };
    config
        .validate()
        .map_err(|e| bad(format!("inferred architecture: {e}")))?;
    // Every tensor the architecture needs is checked by the caller; here,
    // tensors the architecture does not explain mean a different model.
    unexplained(path, st, &config, || {
        format!(
            "does not belong to an MLP VAE of the inferred shape {input_dim}-{:?}-{}",
            config.hidden, config.latent
        )
    })?;
    Ok(config)
}

/// The config of a file without one whose stacks the user gave: the input's
/// channels from the first convolution's weight, its size from
/// `--image-size` or, failing that, the square side at which the encoder's
/// output fits `fc_mu`; the kind, likelihood and latent size from the file.
fn config_from_stacks(
    path: &Path,
    st: &Tensors<'_>,
    opts: &LoadOptions,
    stacks: &Stacks,
    mu: [usize; 2],
) -> Result<ModelConfig> {
    let bad = |d: String| ckpt_err(path, d);
    let (kind, likelihood) = kind_and_likelihood(st, opts);
    let first = stacks
        .encoder
        .iter()
        .position(|l| !matches!(l, LayerSpec::Activation(_)))
        .ok_or_else(|| bad("the given encoder has no layer with parameters".into()))?;
    let weight = |i: usize| {
        let name = format!("encoder.{i}.weight");
        st.tensor(&name).map(|t| t.shape().to_vec()).ok_or_else(|| {
            bad(format!(
                "the given stacks need {name}, which the file lacks"
            ))
        })
    };
    let config = |input_dim, channels, image_shape| ModelConfig {
        kind,
        input_dim,
        hidden: Vec::new(),
        latent: mu[0],
        activation: opts.activation,
        likelihood,
        image_shape,
        channels,
        stacks: Some(stacks.clone()),
    };
    let built = match stacks.encoder[first] {
        LayerSpec::Linear { .. } => {
            let w = weight(first)?;
            config(w[1], 1, None)
        }
        LayerSpec::Conv2d { .. } => {
            let w = weight(first)?;
            let c = w[1];
            let fits = |h: usize, w: usize| {
                let cfg = config(c * h * w, c, Some((h, w)));
                cfg.validate().is_ok().then_some(cfg)
            };
            match opts.image_shape {
                Some((h, w)) => fits(h, w).ok_or_else(|| {
                    bad(format!(
                        "the given stacks do not fit {c}×{h}×{w} images and fc_mu's {} inputs",
                        mu[1]
                    ))
                })?,
                None => (1..=1024).find_map(|s| fits(s, s)).ok_or_else(|| {
                    bad(format!(
                        "no square image of {c} channels up to 1024×1024 gives the encoder's output fc_mu's {} inputs; give the image size",
                        mu[1]
                    ))
                })?,
            }
        }
        other => {
            return Err(bad(format!(
                "the given encoder starts with {}; a Linear or Conv2d first says what the input is",
                other.kind()
            )));
        }
    };
    built
        .validate()
        .map_err(|e| bad(format!("the given stacks: {e}")))?;
    unexplained(path, st, &built, || {
        "is not a parameter of the given stacks".into()
    })?;
    Ok(built)
}

/// The weight layers of `prefix` (`encoder`, `decoder`) in index order:
/// `(index, weight shape, has bias)`.
fn weight_layers(st: &Tensors<'_>, prefix: &str) -> Vec<(usize, Vec<usize>, bool)> {
    let mut out: Vec<(usize, Vec<usize>, bool)> = st
        .names()
        .into_iter()
        .filter_map(|n| {
            let rest = n.strip_prefix(prefix)?.strip_prefix('.')?;
            let i: usize = rest.strip_suffix(".weight")?.parse().ok()?;
            let shape = st.tensor(n)?.shape().to_vec();
            let bias = st.tensor(&format!("{prefix}.{i}.bias")).is_some();
            Some((i, shape, bias))
        })
        .collect();
    out.sort_by_key(|l| l.0);
    out
}

/// Infers the stacks of a convolutional `state_dict` (the conv64 module of
/// DESIGN.md and any stack like it): every weight layer is followed by the
/// activation (the decoder's last excepted); 4-D encoder weights are
/// `Conv2d` and decoder ones `ConvTranspose2d`, with stride 2 and padding 1
/// for 4×4 kernels; a `Flatten` follows the last convolution's activation
/// and an `Unflatten` precedes the first transposed convolution. The
/// inferred stacks must reproduce the file's names exactly.
fn infer_stacks(
    path: &Path,
    st: &Tensors<'_>,
    opts: &LoadOptions,
    mu: [usize; 2],
) -> Result<ModelConfig> {
    let bad = |d: String| ckpt_err(path, d);
    let act = LayerSpec::Activation(opts.activation);
    let conv_geometry = |name: String, shape: &[usize]| -> Result<(Pair, Pair, Pair)> {
        match shape {
            [_, _, 4, 4] => Ok((Pair::Both(4), Pair::Both(2), Pair::Both(1))),
            [_, _, kh, kw] => Err(bad(format!(
                "{name} is a {kh}×{kw} convolution; only 4×4 kernels (stride 2, padding 1) are inferred from a file without a config: describe the stacks with --checkpoint-arch FILE.json"
            ))),
            s => Err(bad(format!("{name} has shape {s:?}"))),
        }
    };
    // Encoder.
    let enc = weight_layers(st, "encoder");
    let mut encoder = Vec::new();
    let mut convs = 0;
    let mut last_conv_channels = None;
    let mut first_in_channels = None;
    for (k, (i, shape, bias)) in enc.iter().enumerate() {
        let name = format!("encoder.{i}.weight");
        let next_is_linear = enc.get(k + 1).is_some_and(|l| l.1.len() == 2);
        if shape.len() == 4 {
            let (kernel, stride, padding) = conv_geometry(name, shape)?;
            first_in_channels.get_or_insert(shape[1]);
            encoder.push(LayerSpec::Conv2d {
                out: shape[0],
                kernel,
                stride,
                padding,
                dilation: Pair::Both(1),
                bias: *bias,
            });
            encoder.push(act);
            convs += 1;
            last_conv_channels = Some(shape[0]);
            if next_is_linear || k + 1 == enc.len() {
                encoder.push(LayerSpec::Flatten);
            }
        } else {
            encoder.push(LayerSpec::Linear {
                out: shape[0],
                bias: *bias,
            });
            encoder.push(act);
        }
    }
    let (Some(channels), Some(last_c)) = (first_in_channels, last_conv_channels) else {
        return Err(bad(
            "the encoder has no convolution to infer an image size from".into(),
        ));
    };
    // The flattened size after the last convolution gives its spatial size;
    // each 4×4, stride-2 convolution halved it.
    let flat_in = enc
        .iter()
        .find(|l| l.1.len() == 2)
        .map_or(mu[1], |l| l.1[1]);
    let side = ((flat_in / last_c) as f64).sqrt().round() as usize;
    if side * side * last_c != flat_in {
        return Err(bad(format!(
            "the encoder's first linear layer takes {flat_in} inputs, not {last_c} channels of a square image"
        )));
    }
    let (height, width) = opts.image_shape.unwrap_or((side << convs, side << convs));
    // Decoder.
    let dec = weight_layers(st, "decoder");
    let mut decoder = Vec::new();
    for (k, (i, shape, bias)) in dec.iter().enumerate() {
        let name = format!("decoder.{i}.weight");
        if shape.len() == 4 {
            if decoder.is_empty() || k > 0 && dec[k - 1].1.len() == 2 {
                let prev_out = if k == 0 { mu[0] } else { dec[k - 1].1[0] };
                let c = shape[0];
                let hw = prev_out / c.max(1);
                let s = (hw as f64).sqrt().round() as usize;
                if c == 0 || s * s * c != prev_out {
                    return Err(bad(format!(
                        "{name} takes {c} channels, which {prev_out} features do not unflatten into as a square"
                    )));
                }
                decoder.push(LayerSpec::Unflatten {
                    channels: c,
                    height: s,
                    width: s,
                });
            }
            let (kernel, stride, padding) = conv_geometry(name, shape)?;
            decoder.push(LayerSpec::ConvTranspose2d {
                out: shape[1],
                kernel,
                stride,
                padding,
                output_padding: Pair::Both(0),
                dilation: Pair::Both(1),
                bias: *bias,
            });
        } else {
            decoder.push(LayerSpec::Linear {
                out: shape[0],
                bias: *bias,
            });
        }
        if k + 1 < dec.len() {
            decoder.push(act);
        }
    }
    let (kind, likelihood) = kind_and_likelihood(st, opts);
    let config = ModelConfig {
        kind,
        input_dim: channels * height * width,
        hidden: Vec::new(),
        latent: mu[0],
        activation: opts.activation,
        likelihood,
        image_shape: Some((height, width)),
        channels,
        stacks: Some(crate::config::Stacks { encoder, decoder }),
    };
    config
        .validate()
        .map_err(|e| bad(format!("inferred architecture: {e}; describe the stacks with --checkpoint-arch FILE.json when names and shapes do not reveal them")))?;
    unexplained(path, st, &config, || {
        "does not fit the inferred convolutional stack (every weight layer followed by the activation); describe the stacks with --checkpoint-arch FILE.json".into()
    })?;
    Ok(config)
}

/// VAE or autoencoder (is there an `fc_logvar`?) and the likelihood (a
/// `decoder_logvar` means a learned Gaussian variance) of a `state_dict`.
fn kind_and_likelihood(st: &Tensors<'_>, opts: &LoadOptions) -> (ModelKind, Likelihood) {
    let kind = if st.tensor("fc_logvar.weight").is_some() {
        ModelKind::Vae
    } else {
        ModelKind::Autoencoder
    };
    let likelihood = if st.tensor("decoder_logvar").is_some() {
        Likelihood::Gaussian {
            logvar: 0.0,
            learned: true,
        }
    } else {
        opts.likelihood
    };
    (kind, likelihood)
}

/// An error naming the first tensor of the file (training state aside) that
/// `config` has no parameter for; `why` says what it does not fit.
fn unexplained(
    path: &Path,
    st: &Tensors<'_>,
    config: &ModelConfig,
    why: impl Fn() -> String,
) -> Result<()> {
    let known: std::collections::HashSet<String> =
        config.parameters().into_iter().map(|p| p.name).collect();
    match st
        .names()
        .into_iter()
        .find(|n| !known.contains(*n) && !n.starts_with("adam."))
    {
        Some(extra) => Err(ckpt_err(path, format!("tensor {extra} {}", why()))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_tensors_and_metadata_serialise_to_the_same_bytes() {
        let tensors = || -> Vec<NamedBytes> {
            vec![("w".to_string(), vec![2], Dtype::F32, to_bytes(&[1.0, 2.0]))]
        };
        let meta = || -> HashMap<String, String> {
            (0..8)
                .map(|i| (format!("key{i}"), format!("value {i}")))
                .collect()
        };
        let path = Path::new("x.safetensors");
        let first = serialize(path, tensors(), meta()).unwrap();
        // Each HashMap has its own random order: without sorting, 20
        // serialisations of 8 keys all agreeing would be a 1 in 40320^19 chance.
        for _ in 0..20 {
            assert_eq!(serialize(path, tensors(), meta()).unwrap(), first);
        }
        let st = SafeTensors::deserialize(&first).unwrap();
        assert_eq!(
            st.tensor("w").unwrap().data(),
            to_bytes(&[1.0, 2.0]).as_slice()
        );
        let (_, m) = SafeTensors::read_metadata(&first).unwrap();
        assert_eq!(m.metadata().as_ref().unwrap().len(), 8);
    }
}
