//! Composable layers: the serialisable [`LayerSpec`], the [`Layer`] it builds
//! once the input's [`Dims`] are known (shape inference, parameters with
//! PyTorch's names and N-D shapes, forward, backward), and the [`Stack`]
//! that chains layers and names them by index as `nn.Sequential` does.
//!
//! Everything a layer kind needs lives in this file: adding one is a
//! [`LayerSpec`] variant, its arm in [`Layer::new`], [`Layer::forward`] and
//! [`Layer::backward`], its kernels in the tensor crate, and its tests.
//!
//! Tensors stay `batch × features` matrices: a batch of `C×H×W` images is
//! `batch × C·H·W` in PyTorch's order, so `Flatten` and `Unflatten` change
//! only the [`Dims`] the next layer is checked against, never the data.

use std::fmt;

use latentlab_tensor::{
    Activation, Backend, Conv2dGeometry, ConvTranspose2dGeometry, NormStats, Shape,
};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result, config_err};

/// What flows between layers: flat features or `C×H×W` images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dims {
    /// `n` features.
    Flat(usize),
    /// `[channels, height, width]`.
    Image([usize; 3]),
}

impl Dims {
    /// Values per example.
    pub fn len(&self) -> usize {
        match *self {
            Dims::Flat(n) => n,
            Dims::Image([c, h, w]) => c * h * w,
        }
    }

    /// True when there is no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Dims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dims::Flat(n) => write!(f, "{n} features"),
            Dims::Image([c, h, w]) => write!(f, "{c}×{h}×{w} images"),
        }
    }
}

/// A kernel size, stride, padding or dilation: one number for both axes, or
/// `[height, width]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Pair {
    /// The same along both axes.
    Both(usize),
    /// `[height, width]`.
    Each([usize; 2]),
}

impl Pair {
    /// `[height, width]`.
    pub fn get(self) -> [usize; 2] {
        match self {
            Pair::Both(v) => [v, v],
            Pair::Each(v) => v,
        }
    }
}

fn one() -> Pair {
    Pair::Both(1)
}
fn zero() -> Pair {
    Pair::Both(0)
}
fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn bn_eps() -> f32 {
    1e-5
}
fn bn_momentum() -> f32 {
    0.1
}

/// One layer of a stack, as a checkpoint's config and `--arch FILE.json`
/// describe it. Input sizes are inferred from the layer before; parameters
/// are named and shaped as PyTorch's modules name and shape them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "layer", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// `nn.Linear(in, out)`: weight `[out, in]`, bias `[out]`.
    Linear {
        /// Output features.
        out: usize,
        /// Whether the layer has a bias.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        bias: bool,
    },
    /// `nn.Conv2d(in, out, kernel, stride, padding, dilation)`: weight
    /// `[out, in, kh, kw]`, bias `[out]`.
    Conv2d {
        /// Output channels.
        out: usize,
        /// Kernel size.
        kernel: Pair,
        /// Stride.
        #[serde(default = "one")]
        stride: Pair,
        /// Zero padding on each side.
        #[serde(default = "zero")]
        padding: Pair,
        /// Spacing of the kernel taps.
        #[serde(default = "one")]
        dilation: Pair,
        /// Whether the layer has a bias.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        bias: bool,
    },
    /// `nn.ConvTranspose2d(in, out, kernel, stride, padding, output_padding,
    /// dilation)`: weight `[in, out, kh, kw]`, bias `[out]`.
    ConvTranspose2d {
        /// Output channels.
        out: usize,
        /// Kernel size.
        kernel: Pair,
        /// Stride.
        #[serde(default = "one")]
        stride: Pair,
        /// Padding removed from each side of the output.
        #[serde(default = "zero")]
        padding: Pair,
        /// Extra size on one side of the output.
        #[serde(default = "zero")]
        output_padding: Pair,
        /// Spacing of the kernel taps.
        #[serde(default = "one")]
        dilation: Pair,
        /// Whether the layer has a bias.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        bias: bool,
    },
    /// `nn.BatchNorm1d(features)` on flat features: γ `[features]` (`weight`),
    /// β `[features]` (`bias`) and the buffers `running_mean`, `running_var`
    /// and `num_batches_tracked`, as PyTorch names them.
    BatchNorm1d {
        /// Added to the variance (PyTorch's default 1e-5).
        #[serde(default = "bn_eps")]
        eps: f32,
        /// Weight of the batch in the running averages (PyTorch's 0.1;
        /// cumulative averaging, `momentum=None`, is not supported).
        #[serde(default = "bn_momentum")]
        momentum: f32,
        /// Whether the layer has γ and β.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        affine: bool,
    },
    /// `nn.BatchNorm2d(channels)` on images: per-channel statistics over the
    /// batch and the plane, parameters and buffers as [`LayerSpec::BatchNorm1d`].
    BatchNorm2d {
        /// Added to the variance (PyTorch's default 1e-5).
        #[serde(default = "bn_eps")]
        eps: f32,
        /// Weight of the batch in the running averages (PyTorch's 0.1).
        #[serde(default = "bn_momentum")]
        momentum: f32,
        /// Whether the layer has γ and β.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        affine: bool,
    },
    /// `nn.Flatten()`: images to flat features.
    Flatten,
    /// `nn.Unflatten(1, (channels, height, width))`: flat features to images.
    Unflatten {
        /// Channels.
        channels: usize,
        /// Height.
        height: usize,
        /// Width.
        width: usize,
    },
    /// An elementwise activation (`nn.ReLU()`, `nn.Tanh()`, …).
    Activation(Activation),
}

impl LayerSpec {
    /// A short name for messages (`conv2d`, `relu`, …).
    pub fn kind(&self) -> String {
        match self {
            LayerSpec::Linear { .. } => "linear".into(),
            LayerSpec::Conv2d { .. } => "conv2d".into(),
            LayerSpec::ConvTranspose2d { .. } => "conv_transpose2d".into(),
            LayerSpec::BatchNorm1d { .. } => "batch_norm1d".into(),
            LayerSpec::BatchNorm2d { .. } => "batch_norm2d".into(),
            LayerSpec::Flatten => "flatten".into(),
            LayerSpec::Unflatten { .. } => "unflatten".into(),
            LayerSpec::Activation(a) => a.to_string(),
        }
    }
}

/// How a parameter starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Uniform in `±1/√fan_in`, PyTorch's default for `nn.Linear` and the
    /// convolutions.
    Uniform {
        /// The fan-in.
        fan_in: usize,
    },
    /// Every value the same (batch normalisation's γ = 1, β = 0, running
    /// mean 0, running variance 1, batch count 0).
    Constant(f32),
}

/// What a tensor of the model is to training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Optimised by gradient descent.
    Trainable,
    /// A buffer the forward pass updates in training mode (batch
    /// normalisation's running statistics); it has no gradient.
    Buffer,
    /// `num_batches_tracked`: a buffer PyTorch stores as an `int64` scalar.
    Count,
}

/// One parameter or buffer: PyTorch's name and shape, and how it is stored
/// on the device (a matrix: a weight `[out, in, kh, kw]` is `out ×
/// in·kh·kw`, a bias `1 × out`, a scalar `1 × 1`).
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The `state_dict` name (`encoder.0.weight`).
    pub name: String,
    /// The PyTorch shape (`[32, 1, 4, 4]`, `[32]`, `[]` for a scalar).
    pub dims: Vec<usize>,
    /// The device matrix's shape.
    pub shape: Shape,
    /// How it is initialised.
    pub init: Init,
    /// Whether it is trained or a buffer.
    pub role: Role,
}

impl Param {
    /// A trainable parameter initialised uniformly in `±1/√fan_in`.
    pub fn new(name: String, dims: Vec<usize>, fan_in: usize) -> Self {
        Self::with(name, dims, Init::Uniform { fan_in }, Role::Trainable)
    }

    /// A parameter or buffer with its initialisation and role.
    pub fn with(name: String, dims: Vec<usize>, init: Init, role: Role) -> Self {
        let rows = if dims.len() <= 1 { 1 } else { dims[0] };
        let cols = dims.iter().product::<usize>() / rows.max(1);
        Self {
            name,
            dims,
            shape: Shape::new(rows, cols),
            init,
            role,
        }
    }

    /// Whether gradient descent updates it.
    pub fn trainable(&self) -> bool {
        self.role == Role::Trainable
    }
}

/// The runtime form of a layer.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Linear,
    Conv(Conv2dGeometry),
    ConvTranspose(ConvTranspose2dGeometry),
    BatchNorm(Norm),
    /// Flatten and Unflatten: the data is unchanged.
    Identity,
    Act(Activation),
}

/// A batch normalisation as it runs: its channels and where its buffers sit.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Norm {
    channels: usize,
    eps: f32,
    momentum: f32,
    /// `running_mean`, `running_var`, `num_batches_tracked`.
    buffers: [usize; 3],
}

/// A batch's per-channel mean and biased variance.
pub type Moments<T> = (T, T);

/// A layer's output in a mode, with the batch moments a training-mode batch
/// normalisation normalised with.
pub type Trained<T> = (T, Option<Moments<T>>);

/// Whether a forward pass trains (batch statistics, running averages
/// updated) or evaluates (running averages used), as PyTorch's
/// `model.train()` and `model.eval()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Training mode.
    Train,
    /// Evaluation mode.
    Eval,
}

/// A layer built for its input: the spec, the dims it maps, and where its
/// weight and bias sit in the model's parameter list.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// The name its parameters are prefixed with (`encoder.3`, `fc_mu`).
    pub name: String,
    /// What it is.
    pub spec: LayerSpec,
    /// What it takes.
    pub input: Dims,
    /// What it gives.
    pub output: Dims,
    op: Op,
    weight: Option<usize>,
    bias: Option<usize>,
}

const MAX_SIZE: usize = 1 << 16;

impl Layer {
    /// Builds `spec` for `input`, appending its parameters to `params`.
    /// Errors name the layer and the shapes that do not chain.
    pub fn new(name: &str, spec: LayerSpec, input: Dims, params: &mut Vec<Param>) -> Result<Self> {
        let fail = |detail: String| {
            config_err(
                "architecture",
                format!("{name} ({}) on {input}: {detail}", spec.kind()),
            )
        };
        let size = |what: &str, v: usize| {
            if v == 0 || v > MAX_SIZE {
                Err(fail(format!("{what} {v} must lie in 1..={MAX_SIZE}")))
            } else {
                Ok(v)
            }
        };
        let image = || match input {
            Dims::Image(d) => Ok(d),
            Dims::Flat(n) => Err(fail(format!(
                "needs C×H×W images but gets {n} flat features (unflatten them first)"
            ))),
        };
        let mut weight = None;
        let mut bias = None;
        let mut add = |suffix: &str, dims: Vec<usize>, init: Init, role: Role| {
            params.push(Param::with(format!("{name}.{suffix}"), dims, init, role));
            params.len() - 1
        };
        let uniform = |fan_in| Init::Uniform { fan_in };
        let (op, output) = match spec {
            LayerSpec::Linear {
                out,
                bias: has_bias,
            } => {
                let Dims::Flat(n) = input else {
                    return Err(fail(
                        "needs flat features but gets images (flatten them first)".into(),
                    ));
                };
                size("output size", out)?;
                weight = Some(add("weight", vec![out, n], uniform(n), Role::Trainable));
                if has_bias {
                    bias = Some(add("bias", vec![out], uniform(n), Role::Trainable));
                }
                (Op::Linear, Dims::Flat(out))
            }
            LayerSpec::Conv2d {
                out,
                kernel,
                stride,
                padding,
                dilation,
                bias: has_bias,
            } => {
                let [c, h, w] = image()?;
                size("output channels", out)?;
                let g = Conv2dGeometry {
                    in_channels: c,
                    input: [h, w],
                    out_channels: out,
                    kernel: kernel.get(),
                    stride: stride.get(),
                    padding: padding.get(),
                    dilation: dilation.get(),
                };
                let [oh, ow] = g.validate("conv2d").map_err(|e| fail(e.to_string()))?;
                let [kh, kw] = g.kernel;
                let fan_in = c * kh * kw;
                weight = Some(add(
                    "weight",
                    vec![out, c, kh, kw],
                    uniform(fan_in),
                    Role::Trainable,
                ));
                if has_bias {
                    bias = Some(add("bias", vec![out], uniform(fan_in), Role::Trainable));
                }
                (Op::Conv(g), Dims::Image([out, oh, ow]))
            }
            LayerSpec::ConvTranspose2d {
                out,
                kernel,
                stride,
                padding,
                output_padding,
                dilation,
                bias: has_bias,
            } => {
                let [c, h, w] = image()?;
                size("output channels", out)?;
                let g = ConvTranspose2dGeometry {
                    in_channels: c,
                    input: [h, w],
                    out_channels: out,
                    kernel: kernel.get(),
                    stride: stride.get(),
                    padding: padding.get(),
                    output_padding: output_padding.get(),
                    dilation: dilation.get(),
                };
                let [oh, ow] = g
                    .validate("conv_transpose2d")
                    .map_err(|e| fail(e.to_string()))?;
                let [kh, kw] = g.kernel;
                // PyTorch takes a transposed convolution's fan-in from the
                // weight's second dimension: the output channels.
                let fan_in = out * kh * kw;
                weight = Some(add(
                    "weight",
                    vec![c, out, kh, kw],
                    uniform(fan_in),
                    Role::Trainable,
                ));
                if has_bias {
                    bias = Some(add("bias", vec![out], uniform(fan_in), Role::Trainable));
                }
                (Op::ConvTranspose(g), Dims::Image([out, oh, ow]))
            }
            LayerSpec::BatchNorm1d {
                eps,
                momentum,
                affine,
            }
            | LayerSpec::BatchNorm2d {
                eps,
                momentum,
                affine,
            } => {
                let channels = match (spec, input) {
                    (LayerSpec::BatchNorm1d { .. }, Dims::Flat(n)) => n,
                    (LayerSpec::BatchNorm2d { .. }, Dims::Image([c, _, _])) => c,
                    (LayerSpec::BatchNorm1d { .. }, _) => {
                        return Err(fail(
                            "needs flat features (batch_norm2d normalises images)".into(),
                        ));
                    }
                    _ => {
                        return Err(fail(
                            "needs C×H×W images (batch_norm1d normalises flat features)".into(),
                        ));
                    }
                };
                if !(eps.is_finite() && eps > 0.0) {
                    return Err(fail(format!("eps {eps} must be finite and > 0")));
                }
                if !(momentum > 0.0 && momentum <= 1.0) {
                    return Err(fail(format!("momentum {momentum} must lie in (0, 1]")));
                }
                if affine {
                    weight = Some(add(
                        "weight",
                        vec![channels],
                        Init::Constant(1.0),
                        Role::Trainable,
                    ));
                    bias = Some(add(
                        "bias",
                        vec![channels],
                        Init::Constant(0.0),
                        Role::Trainable,
                    ));
                }
                let mean = add(
                    "running_mean",
                    vec![channels],
                    Init::Constant(0.0),
                    Role::Buffer,
                );
                let var = add(
                    "running_var",
                    vec![channels],
                    Init::Constant(1.0),
                    Role::Buffer,
                );
                let count = add(
                    "num_batches_tracked",
                    vec![],
                    Init::Constant(0.0),
                    Role::Count,
                );
                let norm = Norm {
                    channels,
                    eps,
                    momentum,
                    buffers: [mean, var, count],
                };
                (Op::BatchNorm(norm), input)
            }
            LayerSpec::Flatten => (Op::Identity, Dims::Flat(input.len())),
            LayerSpec::Unflatten {
                channels,
                height,
                width,
            } => {
                for (what, v) in [("channels", channels), ("height", height), ("width", width)] {
                    size(what, v)?;
                }
                let out = Dims::Image([channels, height, width]);
                if out.len() != input.len() {
                    return Err(fail(format!(
                        "{channels}×{height}×{width} holds {} values, not {}",
                        out.len(),
                        input.len()
                    )));
                }
                (Op::Identity, out)
            }
            LayerSpec::Activation(a) => {
                match a {
                    Activation::LeakyRelu { slope: v } | Activation::Elu { alpha: v }
                        if !v.is_finite() =>
                    {
                        return Err(fail(format!("parameter {v} must be finite")));
                    }
                    _ => {}
                }
                (Op::Act(a), input)
            }
        };
        Ok(Self {
            name: name.to_string(),
            spec,
            input,
            output,
            op,
            weight,
            bias,
        })
    }

    fn is_identity(&self) -> bool {
        self.op == Op::Identity
    }

    /// An activation whose gradient its output determines may overwrite its
    /// input.
    fn may_run_in_place(&self) -> bool {
        matches!(self.op, Op::Act(a) if a.output_determines_gradient())
    }

    /// Whether the backward pass reads this layer's own output.
    fn backward_needs_output(&self) -> bool {
        matches!(self.op, Op::Act(_))
    }

    /// The layer's output for `x`.
    pub fn forward<B: Backend>(
        &self,
        be: &B,
        params: &[B::Tensor],
        x: &B::Tensor,
    ) -> Result<B::Tensor> {
        let p = |i: Option<usize>| i.map(|i| &params[i]);
        let w = p(self.weight);
        Ok(match self.op {
            Op::Linear => {
                let w = w.expect("a linear layer has a weight");
                match p(self.bias) {
                    Some(b) => be.linear(x, w, b)?,
                    None => be.matmul(
                        x,
                        latentlab_tensor::Transpose::No,
                        w,
                        latentlab_tensor::Transpose::Yes,
                    )?,
                }
            }
            Op::Conv(g) => be.conv2d(x, w.expect("a weight"), p(self.bias), &g)?,
            Op::ConvTranspose(g) => {
                be.conv_transpose2d(x, w.expect("a weight"), p(self.bias), &g)?
            }
            Op::BatchNorm(n) => be.batch_norm(
                x,
                &params[n.buffers[0]],
                &params[n.buffers[1]],
                w,
                p(self.bias),
                n.eps,
            )?,
            Op::Identity => x.clone(),
            Op::Act(a) => be.activation(a, x)?,
        })
    }

    /// The layer's output for `x` in `mode`. In training mode a batch
    /// normalisation normalises with the batch's own statistics (returned,
    /// for the backward pass) and appends its buffers' new values (running
    /// averages with the unbiased variance, the batch count plus one) to
    /// `updates`, as PyTorch's `train()` mode does; every other layer is
    /// [`Layer::forward`].
    pub fn forward_mode<B: Backend>(
        &self,
        be: &B,
        params: &[B::Tensor],
        x: &B::Tensor,
        mode: Mode,
        updates: &mut Vec<(usize, B::Tensor)>,
    ) -> Result<Trained<B::Tensor>> {
        let (Op::BatchNorm(n), Mode::Train) = (self.op, mode) else {
            return Ok((self.forward(be, params, x)?, None));
        };
        let s = be.shape(x);
        let count = s.rows * (s.cols / n.channels);
        if count < 2 {
            return Err(ModelError::Data(format!(
                "{} ({}) needs more than one value per channel to train; a batch of {} gives {count}",
                self.name,
                self.spec.kind(),
                s.rows
            )));
        }
        let p = |i: Option<usize>| i.map(|i| &params[i]);
        let (mean, var) = be.channel_moments(x, n.channels)?;
        let y = be.batch_norm(x, &mean, &var, p(self.weight), p(self.bias), n.eps)?;
        let [im, iv, ic] = n.buffers;
        let keep = 1.0 - n.momentum;
        let mut rm = be.scale(keep, &params[im])?;
        be.axpy(n.momentum, &mean, &mut rm)?;
        let unbiased = count as f32 / (count - 1) as f32;
        let mut rv = be.scale(keep, &params[iv])?;
        be.axpy(n.momentum * unbiased, &var, &mut rv)?;
        let one = be.upload(&[1.0], Shape::new(1, 1))?;
        let batches = be.add(&params[ic], &one)?;
        updates.extend([(im, rm), (iv, rv), (ic, batches)]);
        Ok((y, Some((mean, var))))
    }

    /// The backward pass of a layer with parameters (or none: `Flatten`),
    /// reading `∂L/∂output` in place: writes the parameters' gradients into
    /// `grads` and returns `∂L/∂input` when `need_input`. Activations, which
    /// need their output, go through [`Stack::backward`]. A batch
    /// normalisation here is in evaluation mode (its running statistics are
    /// constants); [`Stack::backward`] runs the training-mode gradient.
    pub fn backward<B: Backend>(
        &self,
        be: &B,
        params: &[B::Tensor],
        input: &B::Tensor,
        grad: &B::Tensor,
        grads: &mut [Option<B::Tensor>],
        need_input: bool,
    ) -> Result<Option<B::Tensor>> {
        use latentlab_tensor::Transpose;
        let has_bias = self.bias.is_some();
        let mut set = |i: Option<usize>, g: Option<B::Tensor>| {
            if let (Some(i), Some(g)) = (i, g) {
                grads[i] = Some(g);
            }
        };
        let weight = || &params[self.weight.expect("the layer has a weight")];
        match self.op {
            Op::Linear => {
                set(
                    self.weight,
                    Some(be.matmul(grad, Transpose::Yes, input, Transpose::No)?),
                );
                if has_bias {
                    set(self.bias, Some(be.sum_rows(grad)?));
                }
                if !need_input {
                    return Ok(None);
                }
                Ok(Some(be.matmul(
                    grad,
                    Transpose::No,
                    weight(),
                    Transpose::No,
                )?))
            }
            Op::Conv(g) => {
                let r = be.conv2d_backward(input, weight(), has_bias, grad, &g, need_input)?;
                set(self.weight, Some(r.w));
                set(self.bias, r.b);
                Ok(r.x)
            }
            Op::ConvTranspose(g) => {
                let r =
                    be.conv_transpose2d_backward(input, weight(), has_bias, grad, &g, need_input)?;
                set(self.weight, Some(r.w));
                set(self.bias, r.b);
                Ok(r.x)
            }
            Op::BatchNorm(n) => {
                let stats = (&params[n.buffers[0]], &params[n.buffers[1]]);
                self.norm_backward(be, params, n, input, grad, grads, stats, NormStats::Fixed)
                    .map(|g| need_input.then_some(g))
            }
            Op::Identity => Ok(need_input.then(|| grad.clone())),
            Op::Act(a) => Err(config_err(
                "architecture",
                format!("{} ({a}) needs its output for its backward pass", self.name),
            )),
        }
    }

    /// A batch normalisation's backward pass with the given statistics.
    #[allow(clippy::too_many_arguments)]
    fn norm_backward<B: Backend>(
        &self,
        be: &B,
        params: &[B::Tensor],
        n: Norm,
        input: &B::Tensor,
        grad: &B::Tensor,
        grads: &mut [Option<B::Tensor>],
        (mean, var): (&B::Tensor, &B::Tensor),
        stats: NormStats,
    ) -> Result<B::Tensor> {
        let gamma = self.weight.map(|i| &params[i]);
        let r = be.batch_norm_backward(input, mean, var, gamma, grad, n.eps, stats)?;
        if let (Some(w), Some(b)) = (self.weight, self.bias) {
            grads[w] = Some(r.gamma);
            grads[b] = Some(r.beta);
        }
        Ok(r.x)
    }

    /// The backward pass inside a stack: activations run in place on
    /// `grad`, given the kept input (or output); a batch normalisation
    /// trained on the batch's statistics (`stats`) runs the gradient through
    /// them; other layers as [`Layer::backward`].
    #[allow(clippy::too_many_arguments)]
    fn backward_in_stack<B: Backend>(
        &self,
        be: &B,
        params: &[B::Tensor],
        input: Option<&B::Tensor>,
        output: Option<&B::Tensor>,
        stats: Option<&Moments<B::Tensor>>,
        mut grad: B::Tensor,
        grads: &mut [Option<B::Tensor>],
        need_input: bool,
    ) -> Result<Option<B::Tensor>> {
        let input = || input.expect("the layer's input is kept for its backward pass");
        match self.op {
            Op::BatchNorm(n) if stats.is_some() => {
                let (mean, var) = stats.expect("checked");
                let g = self.norm_backward(
                    be,
                    params,
                    n,
                    input(),
                    &grad,
                    grads,
                    (mean, var),
                    NormStats::Batch,
                )?;
                Ok(need_input.then_some(g))
            }
            Op::Act(a) => {
                let out = output.expect("an activation keeps its output");
                // Without the input the output stands in for it
                // (Activation::output_determines_gradient).
                let pre = if a.output_determines_gradient() {
                    out
                } else {
                    input()
                };
                be.activation_backward_inplace(a, pre, out, &mut grad)?;
                Ok(need_input.then_some(grad))
            }
            Op::Identity => Ok(need_input.then_some(grad)),
            _ => self.backward(be, params, input(), &grad, grads, need_input),
        }
    }
}

/// A chain of layers named `{prefix}.{index}`, as `nn.Sequential` names its
/// children.
#[derive(Clone, Debug, PartialEq)]
pub struct Stack {
    /// The layers in order.
    pub layers: Vec<Layer>,
    /// What the stack takes.
    pub input: Dims,
}

/// What [`Stack::forward_cached`] keeps for [`Stack::backward`]: each layer's
/// output, except those an in-place activation overwrote and those of
/// `Flatten`/`Unflatten`, which alias the layer before.
pub struct StackCache<T> {
    outs: Vec<Option<T>>,
    /// The batch statistics of each training-mode batch normalisation.
    stats: Vec<Option<Moments<T>>>,
    /// New values of buffers, by parameter index.
    updates: Vec<(usize, T)>,
}

impl<T> StackCache<T> {
    /// The buffers' new values the training-mode forward pass computed (the
    /// running statistics of batch normalisation), by parameter index; the
    /// caller writes them once the step is taken.
    pub fn take_updates(&mut self) -> Vec<(usize, T)> {
        std::mem::take(&mut self.updates)
    }
}

impl Stack {
    /// Builds `specs` on `input`, appending parameters to `params`.
    pub fn new(
        prefix: &str,
        specs: &[LayerSpec],
        input: Dims,
        params: &mut Vec<Param>,
    ) -> Result<Self> {
        let mut layers = Vec::with_capacity(specs.len());
        let mut dims = input;
        for (i, spec) in specs.iter().enumerate() {
            let layer = Layer::new(&format!("{prefix}.{i}"), *spec, dims, params)?;
            dims = layer.output;
            layers.push(layer);
        }
        Ok(Self { layers, input })
    }

    /// What the stack gives.
    pub fn output(&self) -> Dims {
        self.layers.last().map_or(self.input, |l| l.output)
    }

    /// The index of the layer whose stored output is the value after layer
    /// `i` (`None`: the stack's input).
    fn owner(&self, i: Option<usize>) -> Option<usize> {
        let mut i = i?;
        loop {
            if !self.layers[i].is_identity() {
                return Some(i);
            }
            i = i.checked_sub(1)?;
        }
    }

    fn value<'a, T>(&self, cache: &'a StackCache<T>, x: &'a T, i: Option<usize>) -> Option<&'a T> {
        match self.owner(i) {
            None => Some(x),
            Some(j) => cache.outs[j].as_ref(),
        }
    }

    /// The stack's output, without keeping anything (activations run in place).
    pub fn forward<B: Backend>(
        &self,
        be: &B,
        params: &[B::Tensor],
        x: &B::Tensor,
    ) -> Result<B::Tensor> {
        let mut h: Option<B::Tensor> = None;
        for layer in &self.layers {
            match (layer.op, h.as_mut()) {
                (Op::Identity, _) => {}
                (Op::Act(a), Some(t)) => be.activation_inplace(a, t)?,
                _ => h = Some(layer.forward(be, params, h.as_ref().unwrap_or(x))?),
            }
        }
        Ok(h.unwrap_or_else(|| x.clone()))
    }

    /// The stack's output in `mode`, keeping what [`Stack::backward`] needs.
    pub fn forward_cached<B: Backend>(
        &self,
        be: &B,
        params: &[B::Tensor],
        x: &B::Tensor,
        mode: Mode,
    ) -> Result<StackCache<B::Tensor>> {
        let mut cache = StackCache {
            outs: Vec::with_capacity(self.layers.len()),
            stats: Vec::with_capacity(self.layers.len()),
            updates: Vec::new(),
        };
        for (i, layer) in self.layers.iter().enumerate() {
            if layer.is_identity() {
                cache.outs.push(None);
                cache.stats.push(None);
                continue;
            }
            let prev = self.owner(i.checked_sub(1));
            if let (Op::Act(a), true, Some(j)) = (layer.op, layer.may_run_in_place(), prev)
                && !self.layers[j].backward_needs_output()
            {
                let mut t = cache.outs[j].take().expect("not yet consumed");
                be.activation_inplace(a, &mut t)?;
                cache.outs.push(Some(t));
                cache.stats.push(None);
                continue;
            }
            let input = self.value(&cache, x, i.checked_sub(1)).expect("kept");
            let mut updates = Vec::new();
            let (out, stats) = layer.forward_mode(be, params, input, mode, &mut updates)?;
            cache.updates.append(&mut updates);
            cache.outs.push(Some(out));
            cache.stats.push(stats);
        }
        Ok(cache)
    }

    /// The output kept in `cache` (the input `x` for a stack of no layer
    /// that computes).
    pub fn cached_output<'a, T>(&self, cache: &'a StackCache<T>, x: &'a T) -> &'a T {
        self.value(cache, x, self.layers.len().checked_sub(1))
            .expect("the last output is kept")
    }

    /// Backward through the stack whose input was `x`: given `∂L/∂output`,
    /// writes every parameter's gradient into `grads` and returns `∂L/∂x`
    /// (`None` unless `need_input_grad`).
    #[allow(clippy::too_many_arguments)]
    pub fn backward<B: Backend>(
        &self,
        be: &B,
        params: &[B::Tensor],
        x: &B::Tensor,
        cache: &StackCache<B::Tensor>,
        grad_out: B::Tensor,
        grads: &mut [Option<B::Tensor>],
        need_input_grad: bool,
    ) -> Result<Option<B::Tensor>> {
        let first = self.layers.iter().position(|l| !l.is_identity());
        let mut g = grad_out;
        for (i, layer) in self.layers.iter().enumerate().rev() {
            if layer.is_identity() {
                continue;
            }
            let need = need_input_grad || Some(i) != first;
            let input = self.value(cache, x, i.checked_sub(1));
            let output = cache.outs[i].as_ref();
            let stats = cache.stats[i].as_ref();
            match layer.backward_in_stack(be, params, input, output, stats, g, grads, need)? {
                Some(next) => g = next,
                None => return Ok(None),
            }
        }
        Ok(Some(g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv64() -> (Vec<LayerSpec>, Vec<LayerSpec>) {
        let c = |out| LayerSpec::Conv2d {
            out,
            kernel: Pair::Both(4),
            stride: Pair::Both(2),
            padding: Pair::Both(1),
            dilation: Pair::Both(1),
            bias: true,
        };
        let relu = LayerSpec::Activation(Activation::Relu);
        let enc = vec![
            c(32),
            relu,
            c(32),
            relu,
            c(64),
            relu,
            c(64),
            relu,
            LayerSpec::Flatten,
        ];
        (enc, vec![])
    }

    #[test]
    fn shapes_chain_and_names_follow_sequential() {
        let mut params = Vec::new();
        let (enc, _) = conv64();
        let s = Stack::new("encoder", &enc, Dims::Image([3, 64, 64]), &mut params).unwrap();
        assert_eq!(s.output(), Dims::Flat(1024));
        let names: Vec<_> = params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "encoder.0.weight",
                "encoder.0.bias",
                "encoder.2.weight",
                "encoder.2.bias",
                "encoder.4.weight",
                "encoder.4.bias",
                "encoder.6.weight",
                "encoder.6.bias"
            ]
        );
        assert_eq!(params[0].dims, [32, 3, 4, 4]);
        assert_eq!(params[0].shape, Shape::new(32, 48));
        assert_eq!(params[1].dims, [32]);
        assert_eq!(params[1].init, Init::Uniform { fan_in: 48 });
        let t = LayerSpec::ConvTranspose2d {
            out: 3,
            kernel: Pair::Both(4),
            stride: Pair::Both(2),
            padding: Pair::Both(1),
            output_padding: Pair::Both(0),
            dilation: Pair::Both(1),
            bias: true,
        };
        let l = Layer::new("decoder.9", t, Dims::Image([32, 32, 32]), &mut params).unwrap();
        assert_eq!(l.output, Dims::Image([3, 64, 64]));
        let w = &params[params.len() - 2];
        assert_eq!(
            (w.dims.clone(), w.init),
            (vec![32, 3, 4, 4], Init::Uniform { fan_in: 48 })
        );
    }

    #[test]
    fn shapes_that_do_not_chain_are_errors_naming_the_layer() {
        let mut p = Vec::new();
        let lin = LayerSpec::Linear { out: 8, bias: true };
        let e = Stack::new("encoder", &[lin], Dims::Image([1, 28, 28]), &mut p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("encoder.0 (linear)") && e.contains("1×28×28"),
            "{e}"
        );
        let (enc, _) = conv64();
        let e = Stack::new("encoder", &enc, Dims::Image([1, 8, 8]), &mut p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("encoder.6 (conv2d) on 64×1×1 images") && e.contains("does not fit"),
            "{e}"
        );
        let un = LayerSpec::Unflatten {
            channels: 64,
            height: 4,
            width: 4,
        };
        let e = Stack::new("decoder", &[un], Dims::Flat(1000), &mut p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("decoder.0 (unflatten)") && e.contains("1024"),
            "{e}"
        );
        let e = Stack::new("decoder", &[enc[0]], Dims::Flat(1024), &mut p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unflatten them first"), "{e}");
    }

    #[test]
    fn specs_read_pytorch_like_json() {
        let json = r#"[{"layer":"conv2d","out":32,"kernel":4,"stride":2,"padding":1},
                       {"layer":"activation","kind":"leaky_relu","slope":0.2},
                       {"layer":"conv_transpose2d","out":3,"kernel":[3,5],"output_padding":0},
                       {"layer":"flatten"},{"layer":"linear","out":10,"bias":false}]"#;
        let specs: Vec<LayerSpec> = serde_json::from_str(json).unwrap();
        assert_eq!(
            specs[0],
            LayerSpec::Conv2d {
                out: 32,
                kernel: Pair::Both(4),
                stride: Pair::Both(2),
                padding: Pair::Both(1),
                dilation: Pair::Both(1),
                bias: true
            }
        );
        assert_eq!(
            specs[1],
            LayerSpec::Activation(Activation::LeakyRelu { slope: 0.2 })
        );
        assert_eq!(
            specs[4],
            LayerSpec::Linear {
                out: 10,
                bias: false
            }
        );
        let back: Vec<LayerSpec> =
            serde_json::from_str(&serde_json::to_string(&specs).unwrap()).unwrap();
        assert_eq!(back, specs);
        let bad = r#"[{"layer":"conv2d","out":32}]"#;
        assert!(serde_json::from_str::<Vec<LayerSpec>>(bad).is_err());
        let typo = r#"[{"layer":"linear","out":3,"outt":4}]"#;
        assert!(serde_json::from_str::<Vec<LayerSpec>>(typo).is_err());
    }

    /// Batch normalisation in a stack: names and roles as PyTorch's, the
    /// training forward normalising with the batch's statistics and giving
    /// the buffers' new values (momentum, unbiased variance, count + 1), and
    /// the evaluation forward using the running statistics.
    #[test]
    fn batch_norm_trains_on_the_batch_and_evaluates_on_running_statistics() {
        use latentlab_tensor::Cpu;
        let bn = LayerSpec::BatchNorm2d {
            eps: 1e-5,
            momentum: 0.25,
            affine: true,
        };
        let mut params = Vec::new();
        let s = Stack::new("encoder", &[bn], Dims::Image([2, 1, 3]), &mut params).unwrap();
        let names: Vec<_> = params.iter().map(|p| (p.name.as_str(), p.role)).collect();
        assert_eq!(
            names,
            [
                ("encoder.0.weight", Role::Trainable),
                ("encoder.0.bias", Role::Trainable),
                ("encoder.0.running_mean", Role::Buffer),
                ("encoder.0.running_var", Role::Buffer),
                ("encoder.0.num_batches_tracked", Role::Count),
            ]
        );
        assert_eq!(params[4].dims, Vec::<usize>::new());
        assert_eq!(params[4].shape, Shape::new(1, 1));
        let cpu = Cpu::sequential();
        let up = |v: &[f32], r, c| cpu.upload(v, Shape::new(r, c)).unwrap();
        let host: [&[f32]; 5] = [&[2.0, 0.5], &[1.0, -1.0], &[0.0, 0.0], &[1.0, 1.0], &[0.0]];
        let p: Vec<_> = host
            .iter()
            .zip(&params)
            .map(|(v, p)| up(v, p.shape.rows, p.shape.cols))
            .collect();
        // Two images of two channels of three values.
        let x = [
            1.0, 2.0, 3.0, 10.0, 10.0, 10.0, 3.0, 4.0, 5.0, 20.0, 20.0, 20.0,
        ];
        let xt = up(&x, 2, 6);
        let mut cache = s.forward_cached(&cpu, &p, &xt, Mode::Train).unwrap();
        let y = cpu.download(s.cached_output(&cache, &xt)).unwrap();
        // Channel 0: mean 3, biased variance 5/3; channel 1: mean 15, var 25.
        let (m0, v0, m1, v1) = (3.0f64, 5.0f64 / 3.0, 15.0f64, 25.0f64);
        let want0 = |v: f64| 2.0 * (v - m0) / (v0 + 1e-5).sqrt() + 1.0;
        let want1 = |v: f64| 0.5 * (v - m1) / (v1 + 1e-5).sqrt() - 1.0;
        for (i, &g) in y.iter().enumerate() {
            let w = if (i / 3) % 2 == 0 {
                want0(x[i].into())
            } else {
                want1(x[i].into())
            };
            assert!((f64::from(g) - w).abs() < 1e-5, "y[{i}] = {g}, want {w}");
        }
        let mut updates = cache.take_updates();
        updates.sort_by_key(|u| u.0);
        let got: Vec<(usize, Vec<f32>)> = updates
            .iter()
            .map(|(i, t)| (*i, cpu.download(t).unwrap()))
            .collect();
        // running = 0.75 · old + 0.25 · batch (the variance unbiased, ×6/5).
        let rv = |v: f64| 0.75 + 0.25 * v * 6.0 / 5.0;
        assert_eq!(got[0].0, 2);
        assert!((got[0].1[0] - 0.75).abs() < 1e-6 && (got[0].1[1] - 3.75).abs() < 1e-6);
        assert_eq!(got[1].0, 3);
        assert!((f64::from(got[1].1[0]) - rv(v0)).abs() < 1e-5);
        assert!((f64::from(got[1].1[1]) - rv(v1)).abs() < 1e-5);
        assert_eq!(got[2], (4, vec![1.0]));
        // Evaluation: the running statistics (here the initial 0 and 1).
        let e = cpu.download(&s.forward(&cpu, &p, &xt).unwrap()).unwrap();
        let want = |v: f32, c: usize| {
            f64::from(host[0][c]) * f64::from(v) / (1.0f64 + 1e-5).sqrt() + f64::from(host[1][c])
        };
        for (i, &g) in e.iter().enumerate() {
            let w = want(x[i], (i / 3) % 2);
            assert!(
                (f64::from(g) - w).abs() < 1e-5,
                "eval y[{i}] = {g}, want {w}"
            );
        }
        // One value per channel cannot be normalised in training.
        let one = up(&x[..6], 1, 6);
        let mut q = Vec::new();
        let bn1 = LayerSpec::BatchNorm1d {
            eps: 1e-5,
            momentum: 0.1,
            affine: false,
        };
        let s1 = Stack::new("decoder", &[bn1], Dims::Flat(6), &mut q).unwrap();
        let p1: Vec<_> = q
            .iter()
            .map(|p| up(&vec![1.0; p.shape.len()], p.shape.rows, p.shape.cols))
            .collect();
        let e = s1
            .forward_cached(&cpu, &p1, &one, Mode::Train)
            .err()
            .expect("a batch of one")
            .to_string();
        assert!(
            e.contains("decoder.0 (batch_norm1d)") && e.contains("more than one value"),
            "{e}"
        );
        // And the wrong kind of input is a clear error.
        let e = Stack::new("decoder", &[bn1], Dims::Image([1, 2, 3]), &mut q)
            .unwrap_err()
            .to_string();
        assert!(e.contains("batch_norm2d normalises images"), "{e}");
    }
}
