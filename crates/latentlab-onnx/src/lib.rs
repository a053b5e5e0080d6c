//! # latentlab-onnx
//!
//! A VAE trained in any framework, exported to ONNX, as a
//! [`LatentModel`]: every diagnosis, map, traversal, edit and metric of
//! latentlab then runs on it unchanged.
//!
//! - The **encoder** graph maps a batch of inputs (`batch × C × H × W`, or
//!   `batch × D` for flat rows) to two outputs, the posterior means and
//!   log-variances (`batch × d` each), in that order.
//! - The **decoder** graph maps codes (`batch × d`) to one output of the
//!   encoder's input shape: Bernoulli logits ([`DecoderOutput::Logits`],
//!   the default; the mean is their sigmoid) or the mean itself
//!   ([`DecoderOutput::Mean`]).
//!
//! Inference runs on the CPU through [tract](https://github.com/sonos/tract),
//! a pure-Rust ONNX runtime, in batches spread over rayon's threads. Every
//! shape is read from the graphs when they are opened and checked against
//! the other graph, so a mismatch is an error before any data is read.
//!
//! Exporting from PyTorch (eval mode, a dynamic batch axis):
//!
//! ```python
//! enc.eval(); dec.eval()
//! torch.onnx.export(enc, (torch.zeros(2, 1, 64, 64),), "encoder.onnx",
//!                   input_names=["x"], output_names=["mu", "logvar"],
//!                   dynamic_axes={"x": {0: "batch"}, "mu": {0: "batch"},
//!                                 "logvar": {0: "batch"}})
//! torch.onnx.export(dec, (torch.zeros(2, 10),), "decoder.onnx",
//!                   input_names=["z"], output_names=["logits"],
//!                   dynamic_axes={"z": {0: "batch"}, "logits": {0: "batch"}})
//! ```
//!
//! A graph exported with a fixed batch size also works: its rows are run
//! that many at a time.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use latentlab_model::{LatentModel, ModelError, Posterior, check_finite};
use ndarray::{Array2, ArrayView2, Axis, s};
use rayon::prelude::*;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::Factoid;

/// What can go wrong opening or running an ONNX graph. Every variant names
/// the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// The file could not be read or is not an ONNX model.
    #[error("{}: not a readable ONNX model: {detail}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        detail: String,
        /// The reader's error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The graph uses operators the runtime does not implement.
    #[error(
        "{}: the ONNX operator{} {} {} not supported by tract, latentlab's ONNX runtime; re-export without {}, or with a lower opset",
        path.display(),
        if ops.len() == 1 { "" } else { "s" },
        ops.join(", "),
        if ops.len() == 1 { "is" } else { "are" },
        if ops.len() == 1 { "it" } else { "them" }
    )]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The operator types (`Col2Im`, …).
        ops: Vec<String>,
    },
    /// The graph's inputs or outputs do not have the form latentlab needs.
    #[error("{}: {detail}", path.display())]
    Form {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The runtime failed on a batch (or panicked, which is caught).
    #[error("{}: the ONNX runtime failed: {detail}", path.display())]
    Run {
        /// The file.
        path: PathBuf,
        /// What the runtime said.
        detail: String,
        /// The runtime's error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The encoder and decoder disagree, or a graph is missing.
    #[error("{0}")]
    Mismatch(String),
}

impl From<OnnxError> for ModelError {
    fn from(e: OnnxError) -> Self {
        ModelError::External(Box::new(e))
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = OnnxError> = std::result::Result<T, E>;

/// What the decoder graph outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DecoderOutput {
    /// Bernoulli logits; the mean of `p(x|z)` is their sigmoid.
    #[default]
    Logits,
    /// The mean of `p(x|z)` itself.
    Mean,
}

impl std::str::FromStr for DecoderOutput {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "logits" => Ok(Self::Logits),
            "mean" => Ok(Self::Mean),
            other => Err(format!(
                "unknown decoder output `{other}`; expected logits or mean"
            )),
        }
    }
}

impl fmt::Display for DecoderOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Logits => "logits",
            Self::Mean => "mean",
        })
    }
}

/// `a×b×c`, as the messages write shapes.
fn dims(d: &[usize]) -> String {
    if d.is_empty() {
        return "1".into();
    }
    d.iter().map(usize::to_string).collect::<Vec<_>>().join("×")
}

/// A tract error with its whole chain, on one line.
fn chain(e: &TractError) -> String {
    format!("{e:#}")
}

/// The message of a caught panic.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

thread_local! {
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is inside a call into tract whose panic this crate
/// catches and reports as an [`OnnxError`]: a program's panic hook can stay
/// quiet then, so a malformed graph reads as one clear error.
pub fn inside_guarded_call() -> bool {
    GUARDED.with(std::cell::Cell::get)
}

/// `f()`, with a panic caught (and [`inside_guarded_call`] true meanwhile).
fn guarded<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    let before = GUARDED.with(|g| g.replace(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(before));
    r
}

/// The structure tract assumes and does not check: every value a node
/// reads, and every graph output, is defined (a graph input, an
/// initializer, a node's output, or, in a subgraph, a value of an
/// enclosing graph), and no value is defined twice.
fn check_graph(
    g: &tract_onnx::pb::GraphProto,
    outer: &std::collections::HashSet<String>,
    depth: usize,
) -> std::result::Result<(), String> {
    if depth > 16 {
        return Err("subgraphs nest more than 16 deep".into());
    }
    let mut defined = outer.clone();
    // A graph input may repeat an initializer's name (ONNX IR < 4, where
    // the initializer is the input's default): one definition.
    let inits: std::collections::HashSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut own = std::collections::HashSet::new();
    let names = g
        .input
        .iter()
        .map(|v| &v.name)
        .filter(|n| !inits.contains(n.as_str()))
        .chain(g.initializer.iter().map(|t| &t.name))
        .chain(g.node.iter().flat_map(|n| n.output.iter()))
        .filter(|n| !n.is_empty());
    for name in names {
        if !own.insert(name.as_str()) {
            return Err(format!("the value `{name}` is defined twice"));
        }
        defined.insert(name.clone());
    }
    for n in &g.node {
        if let Some(i) = n
            .input
            .iter()
            .find(|i| !i.is_empty() && !defined.contains(*i))
        {
            return Err(format!(
                "node `{}` ({}) reads `{i}`, which nothing defines",
                n.name, n.op_type
            ));
        }
        check_arity(n)?;
        check_window(n)?;
        for a in &n.attribute {
            for sub in a.g.iter().chain(a.graphs.iter()) {
                check_graph(sub, &defined, depth + 1)?;
            }
        }
    }
    if let Some(o) = g.output.iter().find(|o| !defined.contains(&o.name)) {
        return Err(format!(
            "the graph's output `{}` is not computed by any node",
            o.name
        ));
    }
    Ok(())
}

/// `what`, said of node `n`.
fn at(n: &tract_onnx::pb::NodeProto, what: String) -> String {
    format!("node `{}` ({}): {what}", n.name, n.op_type)
}

/// A node has an output, and the inputs its operator cannot do without:
/// tract's shape rules index `inputs[k]` and `outputs[0]` unchecked. The
/// table lists the operators whose required inputs are the same in every
/// opset (not Reshape: its opset-1 form takes the shape as an attribute);
/// the others need one input, except the generators and Loop.
fn check_arity(n: &tract_onnx::pb::NodeProto) -> std::result::Result<(), String> {
    if n.output.first().is_none_or(String::is_empty) {
        return Err(at(n, "it has no output".into()));
    }
    let required = match n.op_type.as_str() {
        // Loop's trip count and condition are both optional.
        "Constant" | "RandomNormal" | "RandomUniform" | "Loop" | "Optional" | "SequenceEmpty" => 0,
        "BatchNormalization" => 5,
        "Range" | "Where" | "InstanceNormalization" | "ScatterElements" | "ScatterND" => 3,
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "MatMul" | "MatMulInteger" | "Gemm"
        | "Conv" | "ConvTranspose" | "PRelu" | "Equal" | "Greater" | "GreaterOrEqual" | "Less"
        | "LessOrEqual" | "And" | "Or" | "Xor" | "BitShift" | "Expand" | "Tile" | "Gather"
        | "GatherElements" | "GatherND" | "LayerNormalization" => 2,
        _ => 1,
    };
    let given = n.input.iter().take_while(|i| !i.is_empty()).count();
    if given < required {
        return Err(at(
            n,
            format!(
                "it has {given} of the {required} inputs {} needs",
                n.op_type
            ),
        ));
    }
    Ok(())
}

/// The window attributes of a convolution or pooling node agree with
/// each other: tract indexes `pads`, `strides` and `dilations` by spatial
/// axis without checking their lengths. With `kernel_shape` there are `k`
/// spatial axes; `strides`, `dilations` and `output_padding` have `k`
/// entries and `pads` has `2k` (each axis's start, then each axis's end).
/// Without it, the lengths still agree with each other. Strides,
/// dilations and kernel sizes are at least 1, pads at least 0.
fn check_window(n: &tract_onnx::pb::NodeProto) -> std::result::Result<(), String> {
    if !matches!(
        n.op_type.as_str(),
        "Conv"
            | "ConvTranspose"
            | "ConvInteger"
            | "QLinearConv"
            | "MaxPool"
            | "AveragePool"
            | "LpPool"
    ) {
        return Ok(());
    }
    let ints = |name: &str| {
        n.attribute
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.ints.as_slice())
    };
    let mut axes = ints("kernel_shape").map(<[i64]>::len);
    for (name, per_axis, least) in [
        ("kernel_shape", 1, 1),
        ("strides", 1, 1),
        ("dilations", 1, 1),
        ("output_padding", 1, 0),
        ("pads", 2, 0),
    ] {
        let Some(v) = ints(name) else { continue };
        if v.len() % per_axis != 0 {
            return Err(at(
                n,
                format!(
                    "`{name}` has {} entries; it needs two per spatial axis",
                    v.len()
                ),
            ));
        }
        let k = v.len() / per_axis;
        match axes {
            Some(want) if want != k => {
                return Err(at(
                    n,
                    format!(
                        "`{name}` has {} entries for {want} spatial axes (it needs {})",
                        v.len(),
                        want * per_axis
                    ),
                ));
            }
            _ => axes = Some(k),
        }
        if let Some(bad) = v.iter().find(|&&x| x < least) {
            return Err(at(
                n,
                format!("`{name}` holds {bad}; its entries must be at least {least}"),
            ));
        }
    }
    Ok(())
}

/// Rows per run of a graph with a dynamic batch axis.
const MAX_CHUNK: usize = 256;

/// One opened graph: its plan, its input's shape without the batch axis,
/// and its outputs' shapes.
struct Graph {
    path: PathBuf,
    plan: Arc<TypedRunnableModel>,
    /// For a dynamic batch axis: the plan for batches of [`MAX_CHUNK`].
    full: Option<Arc<TypedRunnableModel>>,
    /// The input's shape without the batch axis.
    input: Vec<usize>,
    /// The batch size the graph was exported with, when fixed.
    fixed_batch: Option<usize>,
    /// Each output's shape without the batch axis.
    outputs: Vec<Vec<usize>>,
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("path", &self.path)
            .field("input", &self.input)
            .field("fixed_batch", &self.fixed_batch)
            .field("outputs", &self.outputs)
            .finish()
    }
}

impl Graph {
    /// Opens `bytes` (the contents of `path`) as a graph of one input.
    /// `external_data` is the folder of tensors stored outside the file.
    fn open(path: &Path, bytes: &[u8], external_data: Option<&Path>) -> Result<Graph> {
        // tract is not written for hostile input: a panic on a malformed
        // graph is caught and reported as an unreadable file.
        match guarded(|| Self::open_inner(path, bytes, external_data)) {
            Ok(r) => r,
            Err(p) => Err(OnnxError::Read {
                path: path.into(),
                detail: format!("the reader failed ({})", panic_text(&*p)),
                source: None,
            }),
        }
    }

    fn open_inner(path: &Path, bytes: &[u8], external_data: Option<&Path>) -> Result<Graph> {
        let form = |detail: String| OnnxError::Form {
            path: path.into(),
            detail,
        };
        let read = |e: TractError| OnnxError::Read {
            path: path.into(),
            detail: chain(&e),
            source: Some(e.into()),
        };
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(read)?;
        let Some(graph) = proto.graph.as_ref().filter(|g| !g.node.is_empty()) else {
            return Err(form("the model has no graph (no nodes)".into()));
        };
        check_graph(graph, &Default::default(), 0).map_err(|detail| OnnxError::Read {
            path: path.into(),
            detail,
            source: None,
        })?;
        // Tensors stored outside the file (models over 2 GB) are looked up
        // beside it.
        let dir = external_data.and_then(|d| d.to_str());
        let parsed = onnx.parse(&proto, dir).map_err(read)?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(form(format!(
                "the graph uses values it never defines: {}",
                parsed.unresolved_inputs.join(", ")
            )));
        }
        let mut model = parsed.model;
        let mut unsupported: Vec<String> = model
            .nodes()
            .iter()
            .filter_map(|n| {
                let name = n.op().name();
                name.strip_prefix("Unimplemented(")
                    .and_then(|s| s.strip_suffix(')'))
                    .map(str::to_string)
            })
            .collect();
        unsupported.sort();
        unsupported.dedup();
        if !unsupported.is_empty() {
            return Err(OnnxError::Unsupported {
                path: path.into(),
                ops: unsupported,
            });
        }
        let n_in = model.input_outlets().map_err(read)?.len();
        if n_in != 1 {
            return Err(form(format!(
                "the graph has {n_in} inputs; latentlab feeds one (a batch of inputs, or of codes)"
            )));
        }
        // The input's shape: a batch axis, then fixed dimensions.
        let fact = model.input_fact(0).map_err(read)?.clone();
        let shape: Vec<Option<i64>> = fact
            .shape
            .dims()
            .map(|d| d.concretize().and_then(|t| t.as_i64()))
            .collect();
        if fact.shape.is_open() || shape.len() < 2 {
            return Err(form(format!(
                "its input must have a declared shape of a batch axis and at least one more (batch × D or batch × C × H × W), not {}",
                if fact.shape.is_open() {
                    "an open one".to_string()
                } else {
                    format!("rank {}", shape.len())
                }
            )));
        }
        let mut input = Vec::with_capacity(shape.len() - 1);
        for (k, d) in shape[1..].iter().enumerate() {
            match d {
                Some(v) if *v > 0 => input.push(*v as usize),
                _ => {
                    return Err(form(format!(
                        "its input's axis {} has no fixed size; only the batch axis (axis 0) may be dynamic",
                        k + 1
                    )));
                }
            }
        }
        let fixed_batch = shape[0].filter(|&b| b > 0).map(|b| b as usize);
        let fact_for = |batch: TDim| {
            let full: TVec<TDim> = std::iter::once(batch)
                .chain(input.iter().map(|&d| d.to_dim()))
                .collect();
            InferenceFact::dt_shape(f32::datum_type(), full)
        };
        // A dynamic batch axis gets a second plan for full chunks, whose
        // shapes tract then knows when it optimises (about 15 % faster on
        // the fixture's convolutions than the symbolic plan).
        let full = match fixed_batch {
            Some(_) => None,
            None => {
                let mut m = model.clone();
                m.set_input_fact(0, fact_for(MAX_CHUNK.to_dim()))
                    .map_err(read)?;
                Some(
                    m.into_optimized()
                        .and_then(|m| m.into_runnable())
                        .map_err(read)?,
                )
            }
        };
        let batch: TDim = match fixed_batch {
            Some(b) => b.to_dim(),
            None => model.symbols.sym("batch").into(),
        };
        model.set_input_fact(0, fact_for(batch)).map_err(read)?;
        let typed = model.into_typed().map_err(read)?;
        let mut outputs = Vec::new();
        for i in 0..typed.output_outlets().map_err(read)?.len() {
            let f = typed.output_fact(i).map_err(read)?;
            let d: Option<Vec<usize>> = f
                .shape
                .dims()
                .iter()
                .skip(1)
                .map(|d| d.as_i64().and_then(|v| usize::try_from(v).ok()))
                .collect();
            if f.shape.rank() < 1 {
                return Err(form(format!("output {i} is a scalar, not a batch")));
            }
            match d {
                Some(d) => outputs.push(d),
                None => {
                    return Err(form(format!(
                        "output {i} has shape {:?}; only its batch axis may be dynamic",
                        f.shape
                    )));
                }
            }
        }
        let plan = typed
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(read)?;
        Ok(Graph {
            path: path.into(),
            plan,
            full,
            input,
            fixed_batch,
            outputs,
        })
    }

    /// Values per input row.
    fn input_len(&self) -> usize {
        self.input.iter().product()
    }

    /// Values per row of output `i`.
    fn output_len(&self, i: usize) -> usize {
        self.outputs[i].iter().product()
    }

    /// Runs `x` (`n × input_len`) through the graph: each output as
    /// `n × output_len` rows, in batches spread over rayon's threads.
    fn run(&self, x: ArrayView2<'_, f32>) -> Result<Vec<Array2<f32>>> {
        let n = x.nrows();
        let chunk = match self.fixed_batch {
            Some(b) => b,
            None => n
                .div_ceil(rayon::current_num_threads().max(1))
                .clamp(1, MAX_CHUNK),
        };
        let starts: Vec<usize> = (0..n).step_by(chunk.max(1)).collect();
        let parts: Vec<Vec<Array2<f32>>> = starts
            .par_iter()
            .map(|&start| {
                let rows = chunk.min(n - start);
                self.run_batch(x.slice(s![start..start + rows, ..]), chunk)
            })
            .collect::<Result<_>>()?;
        (0..self.outputs.len())
            .map(|i| {
                let views: Vec<_> = parts.iter().map(|p| p[i].view()).collect();
                if views.is_empty() {
                    return Ok(Array2::zeros((0, self.output_len(i))));
                }
                ndarray::concatenate(Axis(0), &views).map_err(|e| self.run_err(e.to_string()))
            })
            .collect()
    }

    fn run_err(&self, detail: String) -> OnnxError {
        OnnxError::Run {
            path: self.path.clone(),
            detail,
            source: None,
        }
    }

    /// One batch; a graph of fixed batch size `batch` gets its rows padded
    /// with zeros up to it.
    fn run_batch(&self, x: ArrayView2<'_, f32>, batch: usize) -> Result<Vec<Array2<f32>>> {
        let rows = x.nrows();
        let b = if self.fixed_batch.is_some() {
            batch
        } else {
            rows
        };
        let mut data = Vec::with_capacity(b * self.input_len());
        data.extend(x.iter().copied());
        data.resize(b * self.input_len(), 0.0);
        let shape: Vec<usize> = std::iter::once(b)
            .chain(self.input.iter().copied())
            .collect();
        let input = Tensor::from_shape(&shape, &data).map_err(|e| self.run_err(chain(&e)))?;
        let plan = match &self.full {
            Some(full) if b == MAX_CHUNK => full,
            _ => &self.plan,
        };
        let out = guarded(|| plan.run(tvec!(input.into())))
            .map_err(|p| self.run_err(format!("it panicked ({})", panic_text(&*p))))?
            .map_err(|e| OnnxError::Run {
                path: self.path.clone(),
                detail: chain(&e),
                source: Some(e.into()),
            })?;
        out.iter()
            .enumerate()
            .map(|(i, t)| {
                let len = self.output_len(i);
                let v = t
                    .to_plain_array_view::<f32>()
                    .map_err(|e| self.run_err(format!("output {i}: {}", chain(&e))))?;
                if v.len() != b * len {
                    return Err(self.run_err(format!(
                        "output {i} has {} values for a batch of {b}; expected {b} × {}",
                        v.len(),
                        dims(&self.outputs[i])
                    )));
                }
                let vals: Vec<f32> = v.iter().take(rows * len).copied().collect();
                Array2::from_shape_vec((rows, len), vals).map_err(|e| self.run_err(e.to_string()))
            })
            .collect()
    }
}

/// Reads a file for [`Graph::open`], naming it in the error.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| OnnxError::Read {
        path: path.into(),
        detail: e.to_string(),
        source: Some(Box::new(e)),
    })
}

/// An encoder graph, a decoder graph or both, as one [`LatentModel`].
///
/// ```no_run
/// use latentlab_model::LatentModel;
/// use latentlab_onnx::{DecoderOutput, OnnxModel};
///
/// let m = OnnxModel::open(
///     Some("encoder.onnx".as_ref()),
///     Some("decoder.onnx".as_ref()),
///     DecoderOutput::Logits,
/// )?;
/// let x = ndarray::Array2::<f32>::zeros((4, m.input_dim()));
/// let post = m.encode(x.view())?;
/// let mean = m.decode(post.mu.view())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct OnnxModel {
    encoder: Option<Graph>,
    decoder: Option<Graph>,
    output: DecoderOutput,
    /// The input shape without the batch axis (`[C, H, W]` or `[D]`).
    input: Vec<usize>,
    latent: usize,
}

impl OnnxModel {
    /// Opens the graphs (at least one) and checks their shapes against each
    /// other.
    pub fn open(
        encoder: Option<&Path>,
        decoder: Option<&Path>,
        output: DecoderOutput,
    ) -> Result<OnnxModel> {
        let enc = encoder
            .map(|p| read_file(p).and_then(|b| Graph::open(p, &b, p.parent())))
            .transpose()?;
        let dec = decoder
            .map(|p| read_file(p).and_then(|b| Graph::open(p, &b, p.parent())))
            .transpose()?;
        Self::from_graphs(enc, dec, output)
    }

    /// As [`OnnxModel::open`], from the files' contents (each path stands
    /// for its file in messages; tensors stored outside it are not read).
    pub fn from_bytes(
        encoder: Option<(&Path, &[u8])>,
        decoder: Option<(&Path, &[u8])>,
        output: DecoderOutput,
    ) -> Result<OnnxModel> {
        let enc = encoder.map(|(p, b)| Graph::open(p, b, None)).transpose()?;
        let dec = decoder.map(|(p, b)| Graph::open(p, b, None)).transpose()?;
        Self::from_graphs(enc, dec, output)
    }

    fn from_graphs(
        encoder: Option<Graph>,
        decoder: Option<Graph>,
        output: DecoderOutput,
    ) -> Result<OnnxModel> {
        let form = |g: &Graph, detail: String| OnnxError::Form {
            path: g.path.clone(),
            detail,
        };
        if let Some(e) = &encoder {
            if e.outputs.len() != 2 {
                return Err(form(
                    e,
                    format!(
                        "an encoder has two outputs, the posterior means and log-variances (batch × d each); this graph has {}",
                        e.outputs.len()
                    ),
                ));
            }
            let (m, l) = (e.output_len(0), e.output_len(1));
            if m != l || m == 0 {
                return Err(form(
                    e,
                    format!(
                        "the encoder's outputs, the means and log-variances, must have the same size per input; they give {} and {}",
                        dims(&e.outputs[0]),
                        dims(&e.outputs[1])
                    ),
                ));
            }
        }
        if let Some(d) = &decoder {
            if d.outputs.len() != 1 {
                return Err(form(
                    d,
                    format!(
                        "a decoder has one output (logits or means of the input's shape); this graph has {}",
                        d.outputs.len()
                    ),
                ));
            }
            if d.input.len() != 1 {
                return Err(form(
                    d,
                    format!(
                        "a decoder takes codes as batch × d; this graph takes batch × {}",
                        dims(&d.input)
                    ),
                ));
            }
        }
        let (input, latent) = match (&encoder, &decoder) {
            (None, None) => {
                return Err(OnnxError::Mismatch(
                    "an ONNX model needs an encoder, a decoder or both".into(),
                ));
            }
            (Some(e), None) => (e.input.clone(), e.output_len(0)),
            (None, Some(d)) => (d.outputs[0].clone(), d.input_len()),
            (Some(e), Some(d)) => {
                if d.input_len() != e.output_len(0) {
                    return Err(OnnxError::Mismatch(format!(
                        "decoder {} takes {} latents, encoder {} gives {}",
                        d.path.display(),
                        d.input_len(),
                        e.path.display(),
                        e.output_len(0)
                    )));
                }
                if d.output_len(0) != e.input_len() {
                    return Err(OnnxError::Mismatch(format!(
                        "decoder {} gives {} values per code, encoder {} takes {} inputs",
                        d.path.display(),
                        dims(&d.outputs[0]),
                        e.path.display(),
                        dims(&e.input)
                    )));
                }
                // The image shape from whichever graph states one.
                let input = if e.input.len() >= d.outputs[0].len() {
                    e.input.clone()
                } else {
                    d.outputs[0].clone()
                };
                (input, e.output_len(0))
            }
        };
        Ok(OnnxModel {
            encoder,
            decoder,
            output,
            input,
            latent,
        })
    }

    /// The input shape without the batch axis: `[C, H, W]` for images,
    /// `[D]` for flat rows.
    pub fn input_shape(&self) -> &[usize] {
        &self.input
    }

    /// Channels per image (1 for flat rows).
    pub fn channels(&self) -> usize {
        if self.input.len() == 3 {
            self.input[0]
        } else {
            1
        }
    }

    /// Whether an encoder graph is open.
    pub fn has_encoder(&self) -> bool {
        self.encoder.is_some()
    }

    /// Whether a decoder graph is open.
    pub fn has_decoder(&self) -> bool {
        self.decoder.is_some()
    }

    /// What the decoder outputs.
    pub fn decoder_output(&self) -> DecoderOutput {
        self.output
    }

    /// The files, for messages: `encoder E, decoder D`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(e) = &self.encoder {
            parts.push(format!("encoder {}", e.path.display()));
        }
        if let Some(d) = &self.decoder {
            parts.push(format!("decoder {} ({})", d.path.display(), self.output));
        }
        parts.join(", ")
    }

    fn need_encoder(&self) -> Result<&Graph> {
        self.encoder.as_ref().ok_or_else(|| {
            OnnxError::Mismatch("this needs the encoder: give --encoder E.onnx".into())
        })
    }

    fn need_decoder(&self) -> Result<&Graph> {
        self.decoder.as_ref().ok_or_else(|| {
            OnnxError::Mismatch("this needs the decoder: give --decoder D.onnx".into())
        })
    }

    /// The decoder's output as is (`n × input_dim`): logits or means, as
    /// [`OnnxModel::decoder_output`] says.
    pub fn decode_raw(&self, z: ArrayView2<'_, f32>) -> latentlab_model::Result<Array2<f32>> {
        let d = self.need_decoder()?;
        if z.ncols() != self.latent {
            return Err(ModelError::Data(format!(
                "codes have {} dimensions but the model's latent size is {}",
                z.ncols(),
                self.latent
            )));
        }
        check_finite(z, "code")?;
        Ok(d.run(z)?.swap_remove(0))
    }
}

impl LatentModel for OnnxModel {
    fn latent_dim(&self) -> usize {
        self.latent
    }

    fn input_dim(&self) -> usize {
        self.input.iter().product()
    }

    fn image_shape(&self) -> Option<(usize, usize)> {
        match self.input[..] {
            [_, h, w] => Some((h, w)),
            [h, w] => Some((h, w)),
            _ => None,
        }
    }

    fn encode(&self, x: ArrayView2<'_, f32>) -> latentlab_model::Result<Posterior> {
        let e = self.need_encoder()?;
        if x.ncols() != self.input_dim() {
            return Err(ModelError::Data(format!(
                "inputs have {} values each but the encoder expects {} = {}",
                x.ncols(),
                dims(&self.input),
                self.input_dim()
            )));
        }
        check_finite(x, "input")?;
        let mut out = e.run(x)?;
        let logvar = out.pop().unwrap_or_default();
        let mu = out.pop().unwrap_or_default();
        check_finite(mu.view(), "encoder mean")?;
        check_finite(logvar.view(), "encoder log-variance")?;
        Ok(Posterior { mu, logvar })
    }

    fn decode(&self, z: ArrayView2<'_, f32>) -> latentlab_model::Result<Array2<f32>> {
        let raw = self.decode_raw(z)?;
        Ok(match self.output {
            DecoderOutput::Mean => raw,
            DecoderOutput::Logits => raw.mapv_into(|v| 1.0 / (1.0 + (-v).exp())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{AttributeProto, GraphProto, NodeProto, ValueInfoProto};

    fn value(name: &str) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            ..Default::default()
        }
    }

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: op.to_lowercase(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn graph(nodes: Vec<NodeProto>, outputs: &[&str]) -> GraphProto {
        GraphProto {
            node: nodes,
            input: vec![value("x")],
            output: outputs.iter().map(|s| value(s)).collect(),
            ..Default::default()
        }
    }

    fn check(g: &GraphProto) -> std::result::Result<(), String> {
        check_graph(g, &Default::default(), 0)
    }

    #[test]
    fn graphs_must_define_what_they_read_and_return() {
        let ok = graph(
            vec![node("Relu", &["x"], &["a"]), node("Neg", &["a"], &["y"])],
            &["y"],
        );
        assert_eq!(check(&ok), Ok(()));
        let e = check(&graph(vec![node("Relu", &["w"], &["y"])], &["y"])).unwrap_err();
        assert!(e.contains("reads `w`"), "{e}");
        let e = check(&graph(vec![node("Relu", &["x"], &["y"])], &["z"])).unwrap_err();
        assert!(e.contains("output `z`"), "{e}");
        let twice = graph(
            vec![node("Relu", &["x"], &["y"]), node("Neg", &["x"], &["y"])],
            &["y"],
        );
        assert!(check(&twice).unwrap_err().contains("defined twice"));
        // Optional inputs are empty names.
        assert_eq!(
            check(&graph(vec![node("Clip", &["x", "", ""], &["y"])], &["y"])),
            Ok(())
        );
    }

    #[test]
    fn subgraphs_see_their_enclosing_values() {
        let body = GraphProto {
            node: vec![node("Neg", &["x"], &["b"])],
            output: vec![value("b")],
            ..Default::default()
        };
        let mut cond = node("If", &["x"], &["y"]);
        cond.attribute.push(AttributeProto {
            name: "then_branch".into(),
            g: Some(body.clone()),
            ..Default::default()
        });
        assert_eq!(check(&graph(vec![cond.clone()], &["y"])), Ok(()));
        let mut bad = body;
        bad.node[0].input[0] = "nowhere".into();
        cond.attribute[0].g = Some(bad);
        assert!(
            check(&graph(vec![cond], &["y"]))
                .unwrap_err()
                .contains("nowhere")
        );
    }

    fn windowed(op: &str, attrs: &[(&str, &[i64])]) -> GraphProto {
        // A weight for the convolutions (any defined value will do).
        let mut n = node(op, &["x", "x"], &["y"]);
        n.name = "c".into();
        n.attribute = attrs
            .iter()
            .map(|(name, ints)| AttributeProto {
                name: (*name).into(),
                ints: ints.to_vec(),
                ..Default::default()
            })
            .collect();
        graph(vec![n], &["y"])
    }

    #[test]
    fn window_attributes_must_agree_on_the_spatial_axes() {
        let ok: &[(&str, &[i64])] = &[
            ("kernel_shape", &[3, 3]),
            ("pads", &[1, 1, 1, 1]),
            ("strides", &[2, 2]),
            ("dilations", &[1, 1]),
        ];
        for op in ["Conv", "ConvTranspose", "MaxPool", "AveragePool"] {
            assert_eq!(check(&windowed(op, ok)), Ok(()), "{op}");
        }
        // Without kernel_shape (a Conv reads it from its weights).
        assert_eq!(
            check(&windowed("Conv", &[("pads", &[0, 0]), ("strides", &[1])])),
            Ok(())
        );
        // The fuzzer's find: three pads for a 3×3 kernel, which tract
        // indexed past their end.
        let e = check(&windowed(
            "Conv",
            &[("kernel_shape", &[3, 3]), ("pads", &[1, 1, 1])],
        ))
        .unwrap_err();
        assert_eq!(
            e,
            "node `c` (Conv): `pads` has 3 entries; it needs two per spatial axis"
        );
        type Attrs<'a> = &'a [(&'a str, &'a [i64])];
        let bad: [(&str, Attrs<'_>, &str); 4] = [
            (
                "MaxPool",
                &[("kernel_shape", &[3, 3]), ("pads", &[1, 1])],
                "`pads` has 2 entries for 2 spatial axes (it needs 4)",
            ),
            (
                "Conv",
                &[("strides", &[1, 1]), ("dilations", &[1])],
                "`dilations` has 1 entries for 2 spatial axes",
            ),
            (
                "Conv",
                &[("kernel_shape", &[3]), ("strides", &[0])],
                "`strides` holds 0",
            ),
            ("AveragePool", &[("pads", &[1, -1])], "`pads` holds -1"),
        ];
        for (op, attrs, want) in bad {
            let e = check(&windowed(op, attrs)).unwrap_err();
            assert!(e.contains(want), "{op}: {e}");
        }
        // Other operators' attributes of the same names are theirs.
        assert_eq!(check(&windowed("Pad", &[("pads", &[1, 1, 1])])), Ok(()));
    }

    #[test]
    fn nodes_need_an_output_and_their_required_inputs() {
        // The fuzzer's find: a Flatten without outputs.
        let e = check(&graph(vec![node("Flatten", &["x"], &[])], &["x"])).unwrap_err();
        assert_eq!(e, "node `flatten` (Flatten): it has no output");
        let e = check(&graph(vec![node("Gemm", &["x"], &["y"])], &["y"])).unwrap_err();
        assert_eq!(e, "node `gemm` (Gemm): it has 1 of the 2 inputs Gemm needs");
        let e = check(&graph(vec![node("Relu", &[""], &["y"])], &["y"])).unwrap_err();
        assert!(e.contains("0 of the 1 inputs"), "{e}");
        let mut bn = node("BatchNormalization", &["x", "x", "x", "x", "x"], &["y"]);
        assert_eq!(check(&graph(vec![bn.clone()], &["y"])), Ok(()));
        bn.input[3] = String::new();
        assert!(check(&graph(vec![bn], &["y"])).is_err());
        assert_eq!(
            check(&graph(vec![node("Constant", &[], &["y"])], &["y"])),
            Ok(())
        );
        assert_eq!(
            check(&graph(vec![node("Loop", &["", ""], &["y"])], &["y"])),
            Ok(())
        );
    }

    #[test]
    fn a_guarded_panic_is_an_error_and_flagged_while_it_runs() {
        assert!(!inside_guarded_call());
        assert_eq!(guarded(inside_guarded_call).ok(), Some(true));
        let r = guarded(|| -> usize { panic!("tract fell over") });
        assert_eq!(panic_text(&*r.unwrap_err()), "tract fell over");
        assert!(!inside_guarded_call());
    }
}
