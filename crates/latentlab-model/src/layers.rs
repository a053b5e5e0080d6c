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

use latentlab_tensor::{Activation, Backend, Conv2dGeometry, ConvTranspose2dGeometry, Shape};
use serde::{Deserialize, Serialize};

use crate::error::{Result, config_err};

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
            LayerSpec::Flatten => "flatten".into(),
            LayerSpec::Unflatten { .. } => "unflatten".into(),
            LayerSpec::Activation(a) => a.to_string(),
        }
    }
}

/// One parameter: PyTorch's name and shape, and how it is stored on the
/// device (a matrix: a weight `[out, in, kh, kw]` is `out × in·kh·kw`, a
/// bias `1 × out`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// The `state_dict` name (`encoder.0.weight`).
    pub name: String,
    /// The PyTorch shape (`[32, 1, 4, 4]`, `[32]`).
    pub dims: Vec<usize>,
    /// The device matrix's shape.
    pub shape: Shape,
    /// The fan-in PyTorch's default initialisation uses (weights and biases
    /// are uniform in `±1/√fan_in`).
    pub fan_in: usize,
}

impl Param {
    fn new(name: String, dims: Vec<usize>, fan_in: usize) -> Self {
        let rows = if dims.len() == 1 { 1 } else { dims[0] };
        let cols = dims.iter().product::<usize>() / rows.max(1);
        Self {
            name,
            dims,
            shape: Shape::new(rows, cols),
            fan_in,
        }
    }
}

/// The runtime form of a layer.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Linear,
    Conv(Conv2dGeometry),
    ConvTranspose(ConvTranspose2dGeometry),
    /// Flatten and Unflatten: the data is unchanged.
    Identity,
    Act(Activation),
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
        let mut add = |suffix: &str, dims: Vec<usize>, fan_in: usize| {
            params.push(Param::new(format!("{name}.{suffix}"), dims, fan_in));
            params.len() - 1
        };
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
                weight = Some(add("weight", vec![out, n], n));
                if has_bias {
                    bias = Some(add("bias", vec![out], n));
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
                weight = Some(add("weight", vec![out, c, kh, kw], fan_in));
                if has_bias {
                    bias = Some(add("bias", vec![out], fan_in));
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
                weight = Some(add("weight", vec![c, out, kh, kw], fan_in));
                if has_bias {
                    bias = Some(add("bias", vec![out], fan_in));
                }
                (Op::ConvTranspose(g), Dims::Image([out, oh, ow]))
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
            Op::Identity => x.clone(),
            Op::Act(a) => be.activation(a, x)?,
        })
    }

    /// The backward pass of a layer with parameters (or none: `Flatten`),
    /// reading `∂L/∂output` in place: writes the parameters' gradients into
    /// `grads` and returns `∂L/∂input` when `need_input`. Activations, which
    /// need their output, go through [`Stack::backward`].
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
            Op::Identity => Ok(need_input.then(|| grad.clone())),
            Op::Act(a) => Err(config_err(
                "architecture",
                format!("{} ({a}) needs its output for its backward pass", self.name),
            )),
        }
    }

    /// The backward pass inside a stack: activations run in place on
    /// `grad`, given the kept input (or output); other layers as
    /// [`Layer::backward`].
    #[allow(clippy::too_many_arguments)]
    fn backward_in_stack<B: Backend>(
        &self,
        be: &B,
        params: &[B::Tensor],
        input: Option<&B::Tensor>,
        output: Option<&B::Tensor>,
        mut grad: B::Tensor,
        grads: &mut [Option<B::Tensor>],
        need_input: bool,
    ) -> Result<Option<B::Tensor>> {
        let input = || input.expect("the layer's input is kept for its backward pass");
        match self.op {
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

    /// The stack's output, keeping what [`Stack::backward`] needs.
    pub fn forward_cached<B: Backend>(
        &self,
        be: &B,
        params: &[B::Tensor],
        x: &B::Tensor,
    ) -> Result<StackCache<B::Tensor>> {
        let mut cache = StackCache {
            outs: Vec::with_capacity(self.layers.len()),
        };
        for (i, layer) in self.layers.iter().enumerate() {
            if layer.is_identity() {
                cache.outs.push(None);
                continue;
            }
            let prev = self.owner(i.checked_sub(1));
            if let (Op::Act(a), true, Some(j)) = (layer.op, layer.may_run_in_place(), prev)
                && !self.layers[j].backward_needs_output()
            {
                let mut t = cache.outs[j].take().expect("not yet consumed");
                be.activation_inplace(a, &mut t)?;
                cache.outs.push(Some(t));
                continue;
            }
            let input = self.value(&cache, x, i.checked_sub(1)).expect("kept");
            let out = layer.forward(be, params, input)?;
            cache.outs.push(Some(out));
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
            match layer.backward_in_stack(be, params, input, output, g, grads, need)? {
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
        assert_eq!(params[1].fan_in, 48);
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
        assert_eq!((w.dims.clone(), w.fan_in), (vec![32, 3, 4, 4], 48));
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
}
