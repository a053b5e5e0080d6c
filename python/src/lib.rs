//! `latentlab._latentlab`: the command line's own functions
//! (`latentlab_cli`) on numpy arrays and on models given as Python
//! callbacks. The Python package (`python/latentlab/__init__.py`) wraps
//! these with keyword arguments, docstrings and array conversion; every
//! figure comes from the same Rust code `latentlab` runs.
//!
//! Long work runs with the GIL released. Progress callbacks and model
//! callbacks take it back briefly, check for Ctrl-C and keep the first
//! Python exception, which the call then raises as itself.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::PathBuf;
use std::sync::Mutex;

use latentlab::data::Dataset;
use latentlab::diagnostics::disentangle::{self, Code, Encoder, Labelled};
use latentlab::diagnostics::{Latents, holes as find_holes};
use latentlab::geometry::interpolate::Method;
use latentlab::manipulate::{self, GeodesicParams};
use latentlab::model::{LatentModel, ModelError, Posterior};
use latentlab::tensor::{Cpu, DeviceChoice};
use latentlab_cli::error::CliError;
use latentlab_cli::model::{Model, ModelFlags, Need};
use ndarray::{Array1, Array2, ArrayView2};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// The first Python exception raised while the GIL was released (by a
/// model callback, a progress callback, or Ctrl-C); the call that is
/// running raises it instead of the error it leads to.
static PENDING: Mutex<Option<PyErr>> = Mutex::new(None);

/// The payload that unwinds out of a callback which cannot return an error
/// (a map's progress) once [`PENDING`] holds the exception.
struct Interrupted;

fn keep(e: PyErr) {
    let mut p = PENDING.lock().unwrap_or_else(|p| p.into_inner());
    if p.is_none() {
        *p = Some(e);
    }
}

fn take_pending() -> Option<PyErr> {
    PENDING.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Ctrl-C since the last check, kept as pending; true when the work must stop.
fn interrupted() -> bool {
    match Python::attach(|py| py.check_signals()) {
        Ok(()) => false,
        Err(e) => {
            keep(e);
            true
        }
    }
}

/// Runs `f` with the GIL released. Its error becomes a ValueError with the
/// message the command line prints, unless a Python exception is pending;
/// a panic becomes a RuntimeError.
fn run<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> latentlab_cli::error::Result<T> + Send,
) -> PyResult<T> {
    drop(take_pending());
    let r = py.detach(|| catch_unwind(AssertUnwindSafe(f)));
    if let Some(e) = take_pending() {
        return Err(e);
    }
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(PyValueError::new_err(e.to_string())),
        Err(payload) => {
            if payload.is::<Interrupted>() {
                return Err(PyRuntimeError::new_err("interrupted"));
            }
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(PyRuntimeError::new_err(format!(
                "latentlab failed inside (a bug; please report it): {msg}"
            )))
        }
    }
}

/// Two arrays handed back to Python.
type Pair<'py, A, B> = (Bound<'py, A>, Bound<'py, B>);

/// PCA's explained variance ratios (None for the other maps).
type Ratios = Option<Vec<f64>>;

/// A 2-D array of f32 or f64 in any memory order, borrowed without a copy.
#[derive(FromPyObject)]
enum Arr2<'py> {
    F64(PyReadonlyArray2<'py, f64>),
    F32(PyReadonlyArray2<'py, f32>),
}

/// A 1-D array of f32 or f64, borrowed without a copy.
#[derive(FromPyObject)]
enum Arr1<'py> {
    F64(PyReadonlyArray1<'py, f64>),
    F32(PyReadonlyArray1<'py, f32>),
}

impl Arr2<'_> {
    fn f64(&self) -> Array2<f64> {
        match self {
            Self::F64(a) => a.as_array().to_owned(),
            Self::F32(a) => a.as_array().mapv(f64::from),
        }
    }
    fn f32(&self) -> Array2<f32> {
        match self {
            Self::F64(a) => a.as_array().mapv(|v| v as f32),
            Self::F32(a) => a.as_array().to_owned(),
        }
    }
}

impl Arr1<'_> {
    fn f64(&self) -> Array1<f64> {
        match self {
            Self::F64(a) => a.as_array().to_owned(),
            Self::F32(a) => a.as_array().mapv(f64::from),
        }
    }
    fn f32(&self) -> Array1<f32> {
        match self {
            Self::F64(a) => a.as_array().mapv(|v| v as f32),
            Self::F32(a) => a.as_array().to_owned(),
        }
    }
}

fn model_error(e: impl std::fmt::Display) -> ModelError {
    ModelError::Data(e.to_string())
}

/// A model whose encoder and decoder are Python callables: the package's
/// `Model` object, whose `_encode_flat(x)` returns `(mu, logvar)` as f32
/// arrays (`n × d`) for `x` of `n × input_dim`, batching as it likes, and
/// whose `_decode_flat(z)` returns `n × input_dim`.
#[pyclass(module = "latentlab._latentlab", frozen)]
struct CallbackModel {
    obj: Py<PyAny>,
    latent_dim: usize,
    channels: usize,
    height: usize,
    width: usize,
}

#[pymethods]
impl CallbackModel {
    #[new]
    fn new(
        obj: Py<PyAny>,
        latent_dim: usize,
        channels: usize,
        height: usize,
        width: usize,
    ) -> PyResult<Self> {
        if latent_dim == 0 || channels == 0 || height == 0 || width == 0 {
            return Err(PyValueError::new_err(format!(
                "the latent size ({latent_dim}) and the input shape ({channels}, {height}, {width}) must be positive"
            )));
        }
        Ok(Self {
            obj,
            latent_dim,
            channels,
            height,
            width,
        })
    }
}

impl CallbackModel {
    /// Calls `method` with `x`, turning a raised exception into a pending
    /// one and the returned arrays into f32 matrices of `cols` columns.
    fn call(
        &self,
        method: &str,
        x: ArrayView2<'_, f32>,
        outputs: usize,
        cols: usize,
    ) -> Result<Vec<Array2<f32>>, ModelError> {
        let n = x.nrows();
        let got = Python::attach(|py| -> PyResult<Vec<Array2<f32>>> {
            py.check_signals()?;
            let arr = PyArray2::from_array(py, &x);
            let r = self.obj.bind(py).call_method1(method, (arr,))?;
            let parts: Vec<Bound<'_, PyAny>> = if outputs == 1 {
                vec![r]
            } else {
                r.cast::<PyTuple>()?.iter().collect()
            };
            parts
                .iter()
                .map(|p| {
                    let a: PyReadonlyArray2<'_, f32> = p.extract()?;
                    Ok(a.as_array().to_owned())
                })
                .collect()
        });
        let out = got.map_err(|e| {
            keep(e);
            model_error(format!("{method} raised an exception"))
        })?;
        if out.len() != outputs || out.iter().any(|a| a.dim() != (n, cols)) {
            let shapes: Vec<_> = out.iter().map(|a| a.dim()).collect();
            return Err(model_error(format!(
                "{method} returned arrays of shapes {shapes:?}; expected {outputs} of {n}×{cols}"
            )));
        }
        Ok(out)
    }
}

impl LatentModel for CallbackModel {
    fn latent_dim(&self) -> usize {
        self.latent_dim
    }
    fn input_dim(&self) -> usize {
        self.channels * self.height * self.width
    }
    fn image_shape(&self) -> Option<(usize, usize)> {
        Some((self.height, self.width))
    }
    fn encode(&self, x: ArrayView2<'_, f32>) -> Result<Posterior, ModelError> {
        if x.ncols() != self.input_dim() {
            return Err(model_error(format!(
                "inputs have {} values per row but the model takes {}",
                x.ncols(),
                self.input_dim()
            )));
        }
        latentlab::model::check_finite(x, "input")?;
        let mut out = self.call("_encode_flat", x, 2, self.latent_dim)?;
        let logvar = out.pop().expect("two outputs");
        let mu = out.pop().expect("two outputs");
        Ok(Posterior { mu, logvar })
    }
    fn decode(&self, z: ArrayView2<'_, f32>) -> Result<Array2<f32>, ModelError> {
        if z.ncols() != self.latent_dim {
            return Err(model_error(format!(
                "codes have {} dimensions but the latent size is {}",
                z.ncols(),
                self.latent_dim
            )));
        }
        latentlab::model::check_finite(z, "code")?;
        Ok(self
            .call("_decode_flat", z, 1, self.input_dim())?
            .pop()
            .expect("one output"))
    }
}

/// A latentlab checkpoint or a pair of ONNX graphs, on the CPU.
#[pyclass(module = "latentlab._latentlab", frozen)]
struct NativeModel {
    model: Model<Cpu>,
    name: String,
}

#[pymethods]
impl NativeModel {
    /// Opens a checkpoint (latentlab's, or a PyTorch state_dict).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let flags = ModelFlags::checkpoint(path.clone());
        let model = run(py, || {
            latentlab_cli::model::open(Cpu::new(), &flags, Need::Both)
        })?;
        Ok(Self {
            model,
            name: path.display().to_string(),
        })
    }

    /// Opens ONNX graphs: an encoder to (mu, logvar) and, optionally, a decoder.
    #[staticmethod]
    #[pyo3(signature = (encoder, decoder=None, decoder_output="logits"))]
    fn onnx(
        py: Python<'_>,
        encoder: PathBuf,
        decoder: Option<PathBuf>,
        decoder_output: &str,
    ) -> PyResult<Self> {
        let flags = ModelFlags {
            checkpoint: None,
            encoder: Some(encoder.clone()),
            decoder,
            decoder_output: decoder_output
                .parse()
                .map_err(|e| PyValueError::new_err(format!("--decoder-output: {e}")))?,
        };
        let need = if flags.decoder.is_some() {
            Need::Both
        } else {
            Need::Encoder
        };
        let model = run(py, || latentlab_cli::model::open(Cpu::new(), &flags, need))?;
        Ok(Self {
            model,
            name: encoder.display().to_string(),
        })
    }

    /// Writes the model as a latentlab checkpoint (atomically).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let Model::Vae(vae) = &self.model else {
            return Err(PyTypeError::new_err(
                "an ONNX model is saved by the framework that exported it; only latentlab's own models have checkpoints",
            ));
        };
        run(py, || {
            latentlab::model::checkpoint::save(vae, &path)
                .map_err(|e| CliError::prefixed(&format!("{}: ", path.display()), e))
        })
    }

    /// `(mu, logvar)`, each `n × latent_dim` (f32), of `x` (`n × input_dim`).
    fn encode<'py>(
        &self,
        py: Python<'py>,
        x: Arr2<'py>,
    ) -> PyResult<Pair<'py, PyArray2<f32>, PyArray2<f32>>> {
        let x = x.f32();
        let p = run(py, || Ok(self.model.encode(x.view())?))?;
        Ok((p.mu.into_pyarray(py), p.logvar.into_pyarray(py)))
    }

    /// The decoder's mean, `n × input_dim` (f32), of codes `z`.
    fn decode<'py>(&self, py: Python<'py>, z: Arr2<'py>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let z = z.f32();
        Ok(run(py, || Ok(self.model.decode(z.view())?))?.into_pyarray(py))
    }

    #[getter]
    fn latent_dim(&self) -> usize {
        self.model.latent_dim()
    }

    #[getter]
    fn input_dim(&self) -> usize {
        self.model.input_dim()
    }

    /// `(height, width)` of an input image, when inputs are images.
    #[getter]
    fn image_shape(&self) -> Option<(usize, usize)> {
        self.model.image_shape()
    }

    /// One line on the architecture.
    fn describe(&self) -> String {
        self.model.describe()
    }

    #[getter]
    fn name(&self) -> String {
        self.name.clone()
    }
}

/// Either kind of model, borrowed for one call.
#[derive(FromPyObject)]
enum AnyModel<'py> {
    Native(PyRef<'py, NativeModel>),
    Callback(PyRef<'py, CallbackModel>),
}

impl AnyModel<'_> {
    fn get(&self) -> &(dyn LatentModel + Sync) {
        match self {
            Self::Native(m) => &m.model,
            Self::Callback(m) => &**m,
        }
    }
}

fn code_f32(z: &Arr1<'_>) -> Array1<f32> {
    z.f32()
}

/// The library's version.
#[pyfunction]
fn version() -> &'static str {
    latentlab::VERSION
}

/// `latentlab interpolate --z1 --z2 --steps --method`'s path (steps × d, f64).
#[pyfunction]
fn interpolate<'py>(
    py: Python<'py>,
    z1: Arr1<'py>,
    z2: Arr1<'py>,
    steps: usize,
    method: &str,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let m: Method = method
        .parse()
        .map_err(|e| PyValueError::new_err(format!("--method: {e}")))?;
    let (a, b) = (z1.f64(), z2.f64());
    let p = run(py, || {
        latentlab_cli::geometry::path_between(a.view(), b.view(), steps, m)
    })?;
    Ok(p.into_pyarray(py))
}

/// `latentlab geometry shell --json`'s rows, as JSON.
#[pyfunction]
fn shell_stats(py: Python<'_>, dims: Vec<usize>) -> PyResult<String> {
    run(py, || {
        Ok(serde_json::to_string(
            &latentlab_cli::geometry::shell_rows(&dims)?,
        )?)
    })
}

/// `latentlab diagnose --mu --logvar --json`, on arrays, as JSON.
#[pyfunction]
fn diagnose(
    py: Python<'_>,
    mu: Arr2<'_>,
    logvar: Arr2<'_>,
    samples: usize,
    probes: usize,
    hole_ratio: f64,
    seed: u64,
) -> PyResult<String> {
    use latentlab_cli::diagnose::streamed;
    let opts = run(py, || {
        latentlab_cli::diagnose::options(samples, probes, hole_ratio, seed)
    })?;
    let d = match (&mu, &logvar) {
        (Arr2::F64(m), Arr2::F64(l)) => {
            let (m, l) = (m.as_array(), l.as_array());
            run(py, || streamed(m, l, &opts))
        }
        (Arr2::F32(m), Arr2::F32(l)) => {
            let (m, l) = (m.as_array(), l.as_array());
            run(py, || streamed(m, l, &opts))
        }
        (Arr2::F64(m), Arr2::F32(l)) => {
            let (m, l) = (m.as_array(), l.as_array());
            run(py, || streamed(m, l, &opts))
        }
        (Arr2::F32(m), Arr2::F64(l)) => {
            let (m, l) = (m.as_array(), l.as_array());
            run(py, || streamed(m, l, &opts))
        }
    }?;
    run(py, || Ok(serde_json::to_string(&d)?))
}

/// `latentlab diagnose --checkpoint --json` on a model and inputs, as JSON.
#[pyfunction]
fn diagnose_model(
    py: Python<'_>,
    model: AnyModel<'_>,
    x: Arr2<'_>,
    samples: usize,
    probes: usize,
    hole_ratio: f64,
    seed: u64,
) -> PyResult<String> {
    let x = x.f32();
    let m = model.get();
    run(py, || {
        let opts = latentlab_cli::diagnose::options(samples, probes, hole_ratio, seed)?;
        let l = Latents::encode(m, x.view())?;
        Ok(serde_json::to_string(&latentlab::diagnostics::diagnose(
            &l, &opts,
        )?)?)
    })
}

/// The holes of a model's aggregate posterior on inputs `x`, as JSON.
#[pyfunction]
fn holes(
    py: Python<'_>,
    model: AnyModel<'_>,
    x: Arr2<'_>,
    probes: usize,
    hole_ratio: f64,
    seed: u64,
) -> PyResult<String> {
    let x = x.f32();
    let m = model.get();
    run(py, || {
        let opts = latentlab_cli::diagnose::options(1, probes, hole_ratio, seed)?;
        let l = Latents::encode(m, x.view())?;
        Ok(serde_json::to_string(&find_holes(&l, &opts)?)?)
    })
}

/// `latentlab embed`'s map of `x` (N × 2, f64), PCA's explained variance
/// ratios and, as JSON, how the map was made (its neighbours, their recall
/// and each phase's seconds); `progress(phase, i, total)` is called as it
/// goes.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn embed<'py>(
    py: Python<'py>,
    x: Arr2<'py>,
    method: String,
    perplexity: f64,
    iterations: usize,
    tsne_method: String,
    neighbors: usize,
    device: &str,
    seed: u64,
    progress: Option<Py<PyAny>>,
) -> PyResult<(Bound<'py, PyArray2<f64>>, Ratios, String)> {
    let device: DeviceChoice = device
        .parse()
        .map_err(|e| PyValueError::new_err(format!("--device: {e}")))?;
    let x = x.f64();
    let spec = latentlab_cli::embed::MapSpec {
        method,
        perplexity,
        iterations,
        tsne_method,
        neighbors,
        device,
        seed,
    };
    let m = run(py, || {
        latentlab_cli::embed::map(&x, &spec, &mut |phase, i, total| {
            let stop = match &progress {
                Some(cb) => Python::attach(|py| {
                    match py
                        .check_signals()
                        .and_then(|()| cb.bind(py).call1((phase, i, total)).map(drop))
                    {
                        Ok(()) => false,
                        Err(e) => {
                            keep(e);
                            true
                        }
                    }
                }),
                None => interrupted(),
            };
            if stop {
                resume_unwind(Box::new(Interrupted));
            }
        })
    })?;
    let info = serde_json::json!({
        "neighbours": m.neighbours,
        "neighbour_recall": m.neighbour_recall,
        "phase_seconds": m
            .phase_seconds
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!(v)))
            .collect::<serde_json::Map<String, serde_json::Value>>(),
    });
    Ok((
        m.embedding.into_pyarray(py),
        m.explained_variance_ratio,
        info.to_string(),
    ))
}

/// Trustworthiness of the map `y` of `x` at `k` neighbours.
#[pyfunction]
fn trustworthiness(py: Python<'_>, x: Arr2<'_>, y: Arr2<'_>, k: usize) -> PyResult<f64> {
    let (x, y) = (x.f64(), y.f64());
    run(py, || {
        latentlab::embed::trustworthiness(x.view(), y.view(), k)
            .map_err(|e| CliError::prefixed("", e))
    })
}

/// `latentlab disentanglement --codes --factors --json`, as JSON.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn disentanglement_codes(
    py: Python<'_>,
    codes: Arr2<'_>,
    factors: Arr2<'_>,
    test_codes: Option<Arr2<'_>>,
    test_factors: Option<Arr2<'_>>,
    continuous: bool,
    sap: Option<String>,
    seed: u64,
) -> PyResult<String> {
    let train = (codes.f64(), factors.f64());
    let test = match (test_codes, test_factors) {
        (Some(c), Some(f)) => Some((c.f64(), f.f64())),
        (None, None) => None,
        _ => {
            return Err(PyValueError::new_err(
                "--test-codes and --test-factors go together; give both or neither",
            ));
        }
    };
    run(py, || {
        let s =
            latentlab_cli::diagnose::score_codes(train, test, continuous, sap.as_deref(), seed)?;
        Ok(serde_json::to_string(&s)?)
    })
}

/// `latentlab disentanglement`'s seven metrics of a model on inputs `x`
/// (`n × input_dim`) whose factor classes are `factors` (`n × k`), as JSON.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn disentanglement_model(
    py: Python<'_>,
    model: AnyModel<'_>,
    x: Arr2<'_>,
    factors: PyReadonlyArray2<'_, i64>,
    names: Option<Vec<String>>,
    num_train: usize,
    num_eval: usize,
    sap: Option<String>,
    code: &str,
    seed: u64,
) -> PyResult<String> {
    let code = match code {
        "mean" => Code::Mean,
        "sample" => Code::Sample,
        other => {
            return Err(PyValueError::new_err(format!(
                "--code: unknown code `{other}`; expected mean or sample"
            )));
        }
    };
    let f = factors.as_array();
    if let Some(v) = f.iter().find(|v| **v < 0) {
        return Err(PyValueError::new_err(format!(
            "factors must be non-negative classes; found {v}"
        )));
    }
    let classes = f.mapv(|v| v as usize);
    let x = x.f32();
    let m = model.get();
    run(py, || {
        if x.ncols() != m.input_dim() {
            return Err(CliError::from(format!(
                "the inputs have {} values per row but the model takes {}",
                x.ncols(),
                m.input_dim()
            )));
        }
        let settings =
            latentlab_cli::diagnose::settings(num_train, num_eval, sap.as_deref(), seed)?;
        let truth = Labelled::new(x, classes, names).map_err(|e| CliError::prefixed("", e))?;
        let rep = Encoder::new(m, code);
        let s = disentangle::evaluate_all(&truth, &rep, &settings)
            .map_err(|e| CliError::prefixed("", e))?;
        Ok(serde_json::to_string(&s)?)
    })
}

/// The unit attribute direction mean(positive) − mean(negative) of codes.
#[pyfunction]
fn attribute_vector<'py>(
    py: Python<'py>,
    positive: Arr2<'py>,
    negative: Arr2<'py>,
    name: &str,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let (p, n) = (positive.f32(), negative.f32());
    let v = run(py, || {
        Ok(manipulate::attribute_direction(p.view(), n.view(), name)?)
    })?;
    Ok(v.into_pyarray(py))
}

/// The code completing "A is to B as C is to ?": mean(b) − mean(a) + mean(c).
#[pyfunction]
fn analogy<'py>(
    py: Python<'py>,
    a: Arr2<'py>,
    b: Arr2<'py>,
    c: Arr2<'py>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let (a, b, c) = (a.f32(), b.f32(), c.f32());
    let v = run(py, || {
        Ok(manipulate::analogy_code(a.view(), b.view(), c.view())?)
    })?;
    Ok(v.into_pyarray(py))
}

/// One dimension of `z` swept over lo..=hi, decoded (steps × input_dim);
/// every dimension in turn when `dim` is None (d·steps rows).
#[pyfunction]
#[pyo3(signature = (model, z, dim, lo, hi, steps))]
fn traverse<'py>(
    py: Python<'py>,
    model: AnyModel<'py>,
    z: Arr1<'py>,
    dim: Option<usize>,
    lo: f32,
    hi: f32,
    steps: usize,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let z = code_f32(&z);
    let m = model.get();
    let out = run(py, || {
        Ok(match dim {
            Some(d) => manipulate::traverse(m, z.view(), d, lo, hi, steps)?,
            None => manipulate::traverse_all(m, z.view(), lo, hi, steps)?,
        })
    })?;
    Ok(out.into_pyarray(py))
}

/// The decoder geodesic from `z0` to `z1`: its path and, as JSON, its
/// energy against the linear and SLERP paths'.
#[pyfunction]
fn geodesic<'py>(
    py: Python<'py>,
    model: AnyModel<'py>,
    z0: Arr1<'py>,
    z1: Arr1<'py>,
    segments: usize,
    iterations: usize,
    fd_step: f32,
) -> PyResult<(Bound<'py, PyArray2<f32>>, String)> {
    let (a, b) = (code_f32(&z0), code_f32(&z1));
    let m = model.get();
    let p = GeodesicParams {
        segments,
        iterations,
        fd_step,
    };
    let (path, stats) = run(py, || {
        let g = manipulate::geodesic(m, a.view(), b.view(), &p)?;
        let stats = serde_json::to_string(&g)?;
        Ok((g.path, stats))
    })?;
    Ok((path.into_pyarray(py), stats))
}

/// `latentlab report`'s page of a model on test images (`n × C·H·W` in
/// [0, 1]) into the folder `out`; returns the page's path.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn report(
    py: Python<'_>,
    model: AnyModel<'_>,
    images: Arr2<'_>,
    channels: usize,
    height: usize,
    width: usize,
    labels: Option<Vec<i64>>,
    out: PathBuf,
    map_points: usize,
    seed: u64,
    title: String,
    description: String,
) -> PyResult<String> {
    let images = images.f32();
    if images.ncols() != channels * height * width {
        return Err(PyValueError::new_err(format!(
            "the images have {} values per row, not {channels}·{height}·{width}",
            images.ncols()
        )));
    }
    if let Some(l) = &labels
        && l.len() != images.nrows()
    {
        return Err(PyValueError::new_err(format!(
            "--labels: {} labels for {} images",
            l.len(),
            images.nrows()
        )));
    }
    let test = Dataset {
        images,
        labels,
        factor_classes: None,
        image_shape: (height, width),
        channels,
    };
    let m = model.get();
    run(py, || {
        if let Some(i) = test.images.iter().position(|v| !v.is_finite()) {
            let c = test.images.ncols();
            return Err(CliError::from(format!(
                "image {} holds {} at value {} (inputs must be finite)",
                i / c,
                test.images[[i / c, i % c]],
                i % c
            )));
        }
        let about = latentlab::report::About {
            title,
            description,
            history: Vec::new(),
        };
        let settings = latentlab::report::Settings { map_points, seed };
        let p = latentlab_cli::report::write_report(m, &test, &out, &settings, &about)?;
        Ok(p.display().to_string())
    })
}

/// The data `--data SPEC` names, one split of it (test, train or all):
/// images (`n × C·H·W`, f32 in [0, 1]), labels, factor classes, and the
/// image's `(C, H, W)`.
type Loaded<'py> = (
    Bound<'py, PyArray2<f32>>,
    Option<Vec<i64>>,
    Option<Bound<'py, PyArray2<i64>>>,
    (usize, usize, usize),
);

#[pyfunction]
fn load_data<'py>(
    py: Python<'py>,
    spec: String,
    split: String,
    seed: u64,
) -> PyResult<Loaded<'py>> {
    let (images, labels, factors, chw) = run(py, || {
        let s = latentlab_cli::load::load_data(&spec, seed)?;
        let (images, labels) = latentlab_cli::load::split_rows(&s, &split)?;
        let sets: Vec<&Dataset> = match split.as_str() {
            "test" => vec![&s.test],
            "train" => vec![&s.train],
            _ => vec![&s.train, &s.test],
        };
        let factors = sets
            .iter()
            .map(|d| d.factor_classes.as_ref().map(|f| f.view()))
            .collect::<Option<Vec<_>>>()
            .map(|v| ndarray::concatenate(ndarray::Axis(0), &v))
            .transpose()?
            .map(|f| f.mapv(|c| c as i64));
        let [c, h, w] = s.test.chw();
        Ok((images, labels, factors, (c, h, w)))
    })?;
    Ok((
        images.into_pyarray(py),
        labels,
        factors.map(|f| f.into_pyarray(py)),
        chw,
    ))
}

/// `latentlab train` with `argv` (its flags, without the command); calls
/// `progress(epoch_report_json)` after each epoch (an exception or Ctrl-C
/// stops the run with its state saved, resumable). Returns `--json`'s
/// document.
#[pyfunction]
#[pyo3(signature = (argv, progress=None))]
fn train(py: Python<'_>, argv: Vec<String>, progress: Option<Py<PyAny>>) -> PyResult<String> {
    use latentlab::model::{Control, Event};
    let args = run(py, || latentlab_cli::train::parse_train_args(argv))?;
    run(py, || {
        let r = latentlab_cli::train::train_with(&args, &mut |ev| {
            let stop = match (ev, &progress) {
                (Event::Epoch(e), Some(cb)) => {
                    let doc = serde_json::to_string(e).unwrap_or_default();
                    Python::attach(|py| {
                        match py
                            .check_signals()
                            .and_then(|()| cb.bind(py).call1((doc,)).map(drop))
                        {
                            Ok(()) => false,
                            Err(e) => {
                                keep(e);
                                true
                            }
                        }
                    })
                }
                _ => interrupted(),
            };
            if stop {
                Control::Stop
            } else {
                Control::Continue
            }
        })?;
        Ok(serde_json::to_string(&r)?)
    })
}

#[pymodule]
fn _latentlab(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeModel>()?;
    m.add_class::<CallbackModel>()?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(interpolate, m)?)?;
    m.add_function(wrap_pyfunction!(shell_stats, m)?)?;
    m.add_function(wrap_pyfunction!(diagnose, m)?)?;
    m.add_function(wrap_pyfunction!(diagnose_model, m)?)?;
    m.add_function(wrap_pyfunction!(holes, m)?)?;
    m.add_function(wrap_pyfunction!(embed, m)?)?;
    m.add_function(wrap_pyfunction!(trustworthiness, m)?)?;
    m.add_function(wrap_pyfunction!(disentanglement_codes, m)?)?;
    m.add_function(wrap_pyfunction!(disentanglement_model, m)?)?;
    m.add_function(wrap_pyfunction!(attribute_vector, m)?)?;
    m.add_function(wrap_pyfunction!(analogy, m)?)?;
    m.add_function(wrap_pyfunction!(traverse, m)?)?;
    m.add_function(wrap_pyfunction!(geodesic, m)?)?;
    m.add_function(wrap_pyfunction!(report, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(load_data, m)?)?;
    Ok(())
}
