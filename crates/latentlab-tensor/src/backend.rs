//! The [`Backend`] trait: every op a VAE training step needs.
//!
//! Primitives have no default and each backend implements them natively (the
//! GPU backend as WGSL compute shaders: no primitive runs on the host).
//! Composite ops (sums into means, linear layers and their backward pass, the
//! per-row losses) have default bodies built from primitives.

use std::fmt;

use crate::conv::{Conv2dGeometry, ConvTranspose2dGeometry};
use crate::{Result, Shape, TensorError, checks};

/// Whether a matrix operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transpose {
    /// Use the operand as stored.
    No,
    /// Use the transpose of the operand.
    Yes,
}

impl Transpose {
    /// The shape of `op(x)` for an operand of shape `s`.
    pub fn apply(self, s: Shape) -> Shape {
        match self {
            Transpose::No => s,
            Transpose::Yes => s.t(),
        }
    }
}

/// Elementwise activation functions, with their parameters.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `x` for `x > 0`, else `slope · x`.
    LeakyRelu {
        /// Slope on the negative side (PyTorch's default is 0.01).
        slope: f32,
    },
    /// `x` for `x > 0`, else `alpha · (exp(x) − 1)`.
    Elu {
        /// Scale of the negative side (PyTorch's default is 1).
        alpha: f32,
    },
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic sigmoid `1 / (1 + exp(−x))`.
    Sigmoid,
    /// `log(1 + exp(x))`, computed stably.
    Softplus,
}

impl Activation {
    /// Code and parameter as the shaders see them.
    pub(crate) fn code(self) -> (u32, f32) {
        match self {
            Activation::Relu => (0, 0.0),
            Activation::LeakyRelu { slope } => (1, slope),
            Activation::Elu { alpha } => (2, alpha),
            Activation::Tanh => (3, 0.0),
            Activation::Sigmoid => (4, 0.0),
            Activation::Softplus => (5, 0.0),
        }
    }

    /// Whether the gradient through this activation can be computed from its
    /// output alone, so that [`Backend::activation_backward`] may be given the
    /// output in place of the pre-activation (true for ReLU, tanh, sigmoid,
    /// and leaky ReLU and ELU with a non-negative parameter, where `y > 0`
    /// exactly when `x > 0`).
    pub fn output_determines_gradient(self) -> bool {
        match self {
            Activation::Relu | Activation::Tanh | Activation::Sigmoid => true,
            Activation::LeakyRelu { slope } => slope >= 0.0,
            Activation::Elu { alpha } => alpha >= 0.0,
            Activation::Softplus => false,
        }
    }

    /// Every activation, with typical parameters (for tests and benches).
    pub fn all() -> [Activation; 6] {
        [
            Activation::Relu,
            Activation::LeakyRelu { slope: 0.01 },
            Activation::Elu { alpha: 1.0 },
            Activation::Tanh,
            Activation::Sigmoid,
            Activation::Softplus,
        ]
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activation::Relu => write!(f, "relu"),
            Activation::LeakyRelu { slope } => write!(f, "leaky_relu({slope})"),
            Activation::Elu { alpha } => write!(f, "elu({alpha})"),
            Activation::Tanh => write!(f, "tanh"),
            Activation::Sigmoid => write!(f, "sigmoid"),
            Activation::Softplus => write!(f, "softplus"),
        }
    }
}

/// Elementwise maps without parameters, for the objectives that work with
/// log-densities and importance weights (β-TCVAE, MMD, IWAE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unary {
    /// `exp(x)`.
    Exp,
    /// The natural logarithm (`−inf` at 0, NaN below).
    Log,
}

impl Unary {
    /// The code the shaders see.
    pub(crate) fn code(self) -> u32 {
        match self {
            Unary::Exp => 0,
            Unary::Log => 1,
        }
    }

    /// Every map (for tests and benches).
    pub fn all() -> [Unary; 2] {
        [Unary::Exp, Unary::Log]
    }
}

impl fmt::Display for Unary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unary::Exp => "exp",
            Unary::Log => "log",
        })
    }
}

/// How [`Backend::batch_norm_backward`] treats the statistics it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NormStats {
    /// They are the batch's own (training mode): the gradient flows through
    /// the mean and variance too.
    Batch,
    /// They are constants (evaluation mode, running averages).
    Fixed,
}

/// One Adam update's hyper-parameters. `step` counts from 1 and drives the
/// bias correction `1 − βᵗ`. Weight decay is decoupled (AdamW); 0 gives Adam.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Added to the root of the second moment.
    pub eps: f32,
    /// Decoupled weight decay (AdamW); 0 for plain Adam.
    pub weight_decay: f32,
    /// The step number, from 1.
    pub step: u64,
}

impl AdamStep {
    /// PyTorch's defaults at the given learning rate and step.
    pub fn new(lr: f32, step: u64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            step,
        }
    }

    /// Checks the hyper-parameters; returns the bias corrections `(1 − β1ᵗ, 1 − β2ᵗ)`.
    pub fn validate(&self) -> Result<(f32, f32)> {
        let bad = |detail: String| {
            Err(TensorError::InvalidArgument {
                op: "adam_step",
                detail,
            })
        };
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad(format!("learning rate {} must be finite and ≥ 0", self.lr));
        }
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(format!("{name} = {b} must lie in [0, 1)"));
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad(format!("eps = {} must be finite and > 0", self.eps));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight decay {} must be finite and ≥ 0",
                self.weight_decay
            ));
        }
        if self.step == 0 {
            return bad("step counts from 1".into());
        }
        let t = i32::try_from(self.step.min(1 << 30)).unwrap_or(i32::MAX);
        let bc1 = 1.0 - (self.beta1 as f64).powi(t);
        let bc2 = 1.0 - (self.beta2 as f64).powi(t);
        Ok((bc1 as f32, bc2 as f32))
    }
}

/// Per-row KL divergence `KL(N(mu, exp(logvar)) ‖ N(0, I))` and its gradients.
#[derive(Clone, Debug)]
pub struct KlOutput<T> {
    /// KL of every element (`rows × d`); its column means are the per-dimension KL.
    pub elementwise: T,
    /// KL of every row (`rows × 1`), in nats.
    pub per_row: T,
    /// ∂KL/∂mu (`rows × d`) of the summed KL.
    pub grad_mu: T,
    /// ∂KL/∂logvar (`rows × d`) of the summed KL.
    pub grad_logvar: T,
}

/// Per-row Gaussian negative log-likelihood and its gradients.
#[derive(Clone, Debug)]
pub struct GaussianNllOutput<T> {
    /// NLL of every row (`rows × 1`), in nats.
    pub per_row: T,
    /// ∂NLL/∂mean (`rows × d`).
    pub grad_mean: T,
    /// ∂NLL/∂logvar, the shape of the logvar given (`rows × d`, or `1 × d`
    /// summed over rows when one variance per dimension is shared).
    pub grad_logvar: T,
}

/// Gradients of a linear layer `y = x · wᵀ + b` (PyTorch's weight layout
/// `[out, in]`).
#[derive(Clone, Debug)]
pub struct LinearGrads<T> {
    /// ∂L/∂x (`batch × in`).
    pub x: T,
    /// ∂L/∂w (`out × in`).
    pub w: T,
    /// ∂L/∂b (`1 × out`).
    pub b: T,
}

/// Gradients of a (transposed) convolution.
#[derive(Clone, Debug)]
pub struct ConvGrads<T> {
    /// ∂L/∂x (`batch × input_len`), when it was asked for.
    pub x: Option<T>,
    /// ∂L/∂w, the weight's shape.
    pub w: T,
    /// ∂L/∂b (`1 × out_channels`), when the layer has a bias.
    pub b: Option<T>,
}

/// Gradients of a batch normalisation.
#[derive(Clone, Debug)]
pub struct BatchNormGrads<T> {
    /// ∂L/∂x, the shape of `x`.
    pub x: T,
    /// ∂L/∂γ (`1 × channels`): `Σ ∂L/∂y ⊙ x̂` per channel.
    pub gamma: T,
    /// ∂L/∂β (`1 × channels`): `Σ ∂L/∂y` per channel.
    pub beta: T,
}

/// A compute backend: owns a device and runs ops on its tensors.
///
/// Tensors are row-major `f32` matrices with value semantics: `clone` copies
/// the data (on the device for GPU tensors), and in-place ops change only the
/// tensor passed. No op accepts an empty tensor. NaN and infinity propagate
/// through every op as IEEE arithmetic says; they are never an error inside a
/// kernel, and callers check losses where it matters.
pub trait Backend: Clone + fmt::Debug + Send + Sync + 'static {
    /// A tensor resident on this backend's device.
    type Tensor: Clone + fmt::Debug + Send + Sync;

    /// A short name for logs and benches (`cpu`, `wgpu:<adapter>`).
    fn name(&self) -> String;

    /// The shape of a tensor.
    fn shape(&self, t: &Self::Tensor) -> Shape;

    /// Copies host data (row-major) to the device.
    fn upload(&self, data: &[f32], shape: Shape) -> Result<Self::Tensor>;

    /// Copies a tensor back to the host (row-major). On the GPU this waits for
    /// all queued work.
    fn download(&self, t: &Self::Tensor) -> Result<Vec<f32>>;

    /// A tensor of zeros.
    fn zeros(&self, shape: Shape) -> Result<Self::Tensor>;

    /// Waits until all queued work has finished (a no-op on the CPU).
    fn sync(&self) -> Result<()>;

    /// Runs `f`, a stretch of work made of many ops, where this backend runs
    /// ops best. The parallel CPU backend runs it on a thread of its pool,
    /// so that the calling thread's sequential work and the pool's parallel
    /// work share the cores instead of competing for them; elsewhere it is
    /// `f()`.
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        f()
    }

    /// `op(a) · op(b)` where `op` transposes or not.
    fn matmul(
        &self,
        a: &Self::Tensor,
        ta: Transpose,
        b: &Self::Tensor,
        tb: Transpose,
    ) -> Result<Self::Tensor>;

    /// `x + bias` with the `1 × cols` bias added to every row.
    fn add_row(&self, x: &Self::Tensor, bias: &Self::Tensor) -> Result<Self::Tensor>;

    /// Column sums: the sum over rows, `1 × cols`.
    fn sum_rows(&self, x: &Self::Tensor) -> Result<Self::Tensor>;

    /// Row sums: the sum over columns, `rows × 1`.
    fn sum_cols(&self, x: &Self::Tensor) -> Result<Self::Tensor>;

    /// `act(x)` elementwise.
    fn activation(&self, act: Activation, x: &Self::Tensor) -> Result<Self::Tensor>;

    /// `x ← act(x)` in place.
    fn activation_inplace(&self, act: Activation, x: &mut Self::Tensor) -> Result<()> {
        *x = self.activation(act, x)?;
        Ok(())
    }

    /// [`Backend::activation_backward`] writing `∂L/∂x` over `grad`.
    fn activation_backward_inplace(
        &self,
        act: Activation,
        x: &Self::Tensor,
        y: &Self::Tensor,
        grad: &mut Self::Tensor,
    ) -> Result<()> {
        *grad = self.activation_backward(act, x, y, grad)?;
        Ok(())
    }

    /// The gradient through `y = act(x)`: given the pre-activation `x`, the
    /// output `y` and `∂L/∂y`, returns `∂L/∂x`.
    fn activation_backward(
        &self,
        act: Activation,
        x: &Self::Tensor,
        y: &Self::Tensor,
        grad_y: &Self::Tensor,
    ) -> Result<Self::Tensor>;

    /// Binary cross-entropy with logits, elementwise: returns the loss of every
    /// element and its gradient `sigmoid(l) − t`. Targets may be grey levels in
    /// `[0, 1]`.
    fn bce_with_logits_elementwise(
        &self,
        logits: &Self::Tensor,
        targets: &Self::Tensor,
    ) -> Result<(Self::Tensor, Self::Tensor)>;

    /// Gaussian negative log-likelihood `½(log 2π + lv + (x − m)² e^{−lv})`,
    /// elementwise, with gradients with respect to `m` and `lv`. `logvar` is
    /// either the shape of `mean` or `1 × cols` (one variance per dimension,
    /// broadcast over rows); the returned gradients are elementwise.
    fn gaussian_nll_elementwise(
        &self,
        x: &Self::Tensor,
        mean: &Self::Tensor,
        logvar: &Self::Tensor,
    ) -> Result<(Self::Tensor, Self::Tensor, Self::Tensor)>;

    /// `KL(N(mu, e^{lv}) ‖ N(0, 1)) = ½(mu² + e^{lv} − 1 − lv)` elementwise, with
    /// gradients `mu` and `½(e^{lv} − 1)`.
    fn kl_normal_elementwise(
        &self,
        mu: &Self::Tensor,
        logvar: &Self::Tensor,
    ) -> Result<(Self::Tensor, Self::Tensor, Self::Tensor)>;

    /// Standard normal draws from the counter-based generator ([`crate::philox`]):
    /// element `i` of stream `stream` under Philox key `key` is the same on
    /// every backend. Callers pass a hashed key
    /// ([`latentlab_rng::stream_key`]), not a user's seed.
    fn randn(&self, shape: Shape, key: u64, stream: u64) -> Result<Self::Tensor>;

    /// The reparameterisation step `z = mu + exp(½ lv) · ε` with `ε` from
    /// [`Backend::randn`]`(shape, key, stream)`; returns `(z, ε)`.
    fn reparameterize(
        &self,
        mu: &Self::Tensor,
        logvar: &Self::Tensor,
        key: u64,
        stream: u64,
    ) -> Result<(Self::Tensor, Self::Tensor)>;

    /// One Adam update in place of `param`, `m` and `v`.
    fn adam_step(
        &self,
        param: &mut Self::Tensor,
        grad: &Self::Tensor,
        m: &mut Self::Tensor,
        v: &mut Self::Tensor,
        hp: &AdamStep,
    ) -> Result<()>;

    /// `y ← y + alpha · x` in place.
    fn axpy(&self, alpha: f32, x: &Self::Tensor, y: &mut Self::Tensor) -> Result<()>;

    /// `alpha · x`.
    fn scale(&self, alpha: f32, x: &Self::Tensor) -> Result<Self::Tensor>;

    /// `x ← alpha · x` in place.
    fn scale_inplace(&self, alpha: f32, x: &mut Self::Tensor) -> Result<()> {
        *x = self.scale(alpha, x)?;
        Ok(())
    }

    /// `a ⊙ b` elementwise.
    fn mul(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;

    /// The same elements under another shape of equal size (row-major order
    /// is kept; free on every backend).
    fn reshape(&self, t: Self::Tensor, shape: Shape) -> Result<Self::Tensor>;

    /// The patches of a batch of images (`batch × C·H·W`) under the
    /// convolution `g`: `(batch · OH·OW) × (C·kh·kw)`, row `n·OH·OW + p`
    /// holding output position `p` of image `n`, zeros where the kernel
    /// overhangs the padded border.
    fn im2col(&self, x: &Self::Tensor, g: &Conv2dGeometry) -> Result<Self::Tensor>;

    /// The adjoint of [`Backend::im2col`]: sums patch values
    /// (`(batch · OH·OW) × (C·kh·kw)`) back onto a batch of images
    /// (`batch × C·H·W`).
    fn col2im(&self, cols: &Self::Tensor, g: &Conv2dGeometry) -> Result<Self::Tensor>;

    /// Each row of `x` (`rows × p·q`) read as a `p × q` matrix and transposed:
    /// `rows × q·p`. This moves a batch between `N × L × C` and `N × C × L`.
    fn batch_transpose(&self, x: &Self::Tensor, p: usize, q: usize) -> Result<Self::Tensor>;

    /// `x + bias` per channel: each row of `x` (`rows × C·L`) holds `C`
    /// planes of `L` values, and `bias` (`1 × C`) adds `bias[c]` to plane `c`.
    fn add_channel_bias(&self, x: &Self::Tensor, bias: &Self::Tensor) -> Result<Self::Tensor>;

    /// `op(x)` elementwise.
    fn unary(&self, op: Unary, x: &Self::Tensor) -> Result<Self::Tensor>;

    /// The gradient through `y = op(x)` given `x`, `y` and `∂L/∂y`: `∂L/∂y ⊙ y`
    /// for exp, `∂L/∂y / x` for log.
    fn unary_backward(
        &self,
        op: Unary,
        x: &Self::Tensor,
        y: &Self::Tensor,
        grad_y: &Self::Tensor,
    ) -> Result<Self::Tensor>;

    /// `log Σⱼ exp(x[i, j])` of every row (`rows × 1`), computed stably (the
    /// row's maximum is taken out first). A row of `−inf` gives `−inf`, a row
    /// holding `+inf` gives `+inf`, as PyTorch's `logsumexp` does.
    fn logsumexp_rows(&self, x: &Self::Tensor) -> Result<Self::Tensor>;

    /// The gradient through [`Backend::logsumexp_rows`]: given `x`, its
    /// `lse` (`rows × 1`) and `∂L/∂lse` (`rows × 1`), returns
    /// `∂L/∂x[i, j] = ∂L/∂lse[i] · exp(x[i, j] − lse[i])` (a softmax per row).
    fn logsumexp_backward(
        &self,
        x: &Self::Tensor,
        lse: &Self::Tensor,
        grad: &Self::Tensor,
    ) -> Result<Self::Tensor>;

    /// The per-channel mean and biased variance of a batch of `C`-plane
    /// rows (`rows × C·L`), over the rows and each plane's `L` values: two
    /// `1 × C` tensors, as batch normalisation computes them in training.
    fn channel_moments(
        &self,
        x: &Self::Tensor,
        channels: usize,
    ) -> Result<(Self::Tensor, Self::Tensor)>;

    /// Batch normalisation with given statistics: `y = (x − mean[c]) /
    /// √(var[c] + eps) · γ[c] + β[c]` on plane `c` of every row, the channel
    /// count being the statistics' width. `γ` and `β` (`1 × C`) are 1 and 0
    /// when absent (`affine=False`).
    #[allow(clippy::too_many_arguments)]
    fn batch_norm(
        &self,
        x: &Self::Tensor,
        mean: &Self::Tensor,
        var: &Self::Tensor,
        gamma: Option<&Self::Tensor>,
        beta: Option<&Self::Tensor>,
        eps: f32,
    ) -> Result<Self::Tensor>;

    /// The backward pass of [`Backend::batch_norm`] given `∂L/∂y`. With
    /// [`NormStats::Batch`] the statistics must be `x`'s own biased moments
    /// and the gradient runs through them (PyTorch's training mode:
    /// `∂x = γ/σ · (∂y − mean(∂y) − x̂ · mean(∂y ⊙ x̂))` per channel); with
    /// [`NormStats::Fixed`] they are constants (`∂x = γ/σ · ∂y`).
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward(
        &self,
        x: &Self::Tensor,
        mean: &Self::Tensor,
        var: &Self::Tensor,
        gamma: Option<&Self::Tensor>,
        grad_y: &Self::Tensor,
        eps: f32,
        stats: NormStats,
    ) -> Result<BatchNormGrads<Self::Tensor>>;

    // ---- composite ops ---------------------------------------------------

    /// `a + b` elementwise.
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor> {
        let mut out = b.clone();
        self.axpy(1.0, a, &mut out)?;
        Ok(out)
    }

    /// `a − b` elementwise.
    fn sub(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor> {
        let mut out = a.clone();
        self.axpy(-1.0, b, &mut out)?;
        Ok(out)
    }

    /// Sum of every element, `1 × 1`.
    fn sum_all(&self, x: &Self::Tensor) -> Result<Self::Tensor> {
        self.sum_cols(&self.sum_rows(x)?)
    }

    /// Column means: the mean over rows, `1 × cols`.
    fn mean_rows(&self, x: &Self::Tensor) -> Result<Self::Tensor> {
        let n = self.shape(x).rows;
        self.scale(1.0 / n as f32, &self.sum_rows(x)?)
    }

    /// Row means: the mean over columns, `rows × 1`.
    fn mean_cols(&self, x: &Self::Tensor) -> Result<Self::Tensor> {
        let n = self.shape(x).cols;
        self.scale(1.0 / n as f32, &self.sum_cols(x)?)
    }

    /// Mean of every element, `1 × 1`.
    fn mean_all(&self, x: &Self::Tensor) -> Result<Self::Tensor> {
        let n = self.shape(x).len();
        self.scale(1.0 / n as f32, &self.sum_all(x)?)
    }

    /// Sum of squares of every element, `1 × 1` (for gradient-norm clipping).
    fn sum_squares(&self, x: &Self::Tensor) -> Result<Self::Tensor> {
        self.sum_all(&self.mul(x, x)?)
    }

    /// A linear layer `y = x · wᵀ + b` with PyTorch's layout: `x` is
    /// `batch × in`, `w` is `out × in`, `b` is `1 × out`.
    fn linear(&self, x: &Self::Tensor, w: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor> {
        self.add_row(&self.matmul(x, Transpose::No, w, Transpose::Yes)?, b)
    }

    /// Backward pass of [`Backend::linear`] given `∂L/∂y`.
    fn linear_backward(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        grad_y: &Self::Tensor,
    ) -> Result<LinearGrads<Self::Tensor>> {
        Ok(LinearGrads {
            x: self.matmul(grad_y, Transpose::No, w, Transpose::No)?,
            w: self.matmul(grad_y, Transpose::Yes, x, Transpose::No)?,
            b: self.sum_rows(grad_y)?,
        })
    }

    /// Per-channel sums of a batch of `C`-plane images (`rows × C·L`): `1 × C`.
    fn sum_channels(&self, x: &Self::Tensor, channels: usize) -> Result<Self::Tensor> {
        let s = self.shape(x);
        if channels == 0 || s.cols % channels != 0 {
            return Err(TensorError::ShapeMismatch {
                op: "sum_channels",
                detail: format!("{s} does not hold {channels} equal channel planes per row"),
            });
        }
        let planes = self.reshape(self.sum_rows(x)?, Shape::new(channels, s.cols / channels))?;
        self.reshape(self.sum_cols(&planes)?, Shape::new(1, channels))
    }

    /// A 2-D convolution with PyTorch's semantics and layouts: `x` is
    /// `batch × C·H·W`, `w` is `[out, in, kh, kw]` stored `out × in·kh·kw`,
    /// `b` is `1 × out`; the result is `batch × out·OH·OW`.
    fn conv2d(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: Option<&Self::Tensor>,
        g: &Conv2dGeometry,
    ) -> Result<Self::Tensor> {
        let [oh, ow] = checks::conv(
            "conv2d",
            self.shape(x),
            self.shape(w),
            b.map(|b| self.shape(b)),
            g,
        )?;
        let batch = self.shape(x).rows;
        let cols = self.im2col(x, g)?;
        // Rows are output positions, columns output channels.
        let y = match b {
            Some(b) => self.linear(&cols, w, b)?,
            None => self.matmul(&cols, Transpose::No, w, Transpose::Yes)?,
        };
        let positions = oh * ow;
        let y = self.reshape(y, Shape::new(batch, positions * g.out_channels))?;
        self.batch_transpose(&y, positions, g.out_channels)
    }

    /// Backward pass of [`Backend::conv2d`] given `∂L/∂y`; `∂L/∂x` only when
    /// `need_x` (the first layer of a network does not need it).
    fn conv2d_backward(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        has_bias: bool,
        grad_y: &Self::Tensor,
        g: &Conv2dGeometry,
        need_x: bool,
    ) -> Result<ConvGrads<Self::Tensor>> {
        let [oh, ow] = checks::conv("conv2d_backward", self.shape(x), self.shape(w), None, g)?;
        let batch = self.shape(x).rows;
        let positions = oh * ow;
        let want = Shape::new(batch, g.out_channels * positions);
        if self.shape(grad_y) != want {
            return Err(TensorError::ShapeMismatch {
                op: "conv2d_backward",
                detail: format!("∂L/∂y is {}, the output is {want}", self.shape(grad_y)),
            });
        }
        let b = if has_bias {
            Some(self.sum_channels(grad_y, g.out_channels)?)
        } else {
            None
        };
        // ∂L/∂y with rows as output positions: (batch·L) × out.
        let gy = self.batch_transpose(grad_y, g.out_channels, positions)?;
        let gy = self.reshape(gy, Shape::new(batch * positions, g.out_channels))?;
        let cols = self.im2col(x, g)?;
        let gw = self.matmul(&gy, Transpose::Yes, &cols, Transpose::No)?;
        let gx = if need_x {
            let gcols = self.matmul(&gy, Transpose::No, w, Transpose::No)?;
            Some(self.col2im(&gcols, g)?)
        } else {
            None
        };
        Ok(ConvGrads { x: gx, w: gw, b })
    }

    /// A transposed 2-D convolution with PyTorch's semantics and layouts: `x`
    /// is `batch × C_in·H·W`, `w` is `[in, out, kh, kw]` stored
    /// `in × out·kh·kw`, `b` is `1 × out`; the result is `batch × out·OH·OW`.
    fn conv_transpose2d(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: Option<&Self::Tensor>,
        g: &ConvTranspose2dGeometry,
    ) -> Result<Self::Tensor> {
        let conv = checks::conv_transpose(
            "conv_transpose2d",
            self.shape(x),
            self.shape(w),
            b.map(|b| self.shape(b)),
            g,
        )?;
        let batch = self.shape(x).rows;
        let positions = g.input[0] * g.input[1];
        // Rows are input positions, columns input channels.
        let xt = self.batch_transpose(x, g.in_channels, positions)?;
        let xt = self.reshape(xt, Shape::new(batch * positions, g.in_channels))?;
        let cols = self.matmul(&xt, Transpose::No, w, Transpose::No)?;
        let y = self.col2im(&cols, &conv)?;
        match b {
            Some(b) => self.add_channel_bias(&y, b),
            None => Ok(y),
        }
    }

    /// Backward pass of [`Backend::conv_transpose2d`] given `∂L/∂y`.
    fn conv_transpose2d_backward(
        &self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        has_bias: bool,
        grad_y: &Self::Tensor,
        g: &ConvTranspose2dGeometry,
        need_x: bool,
    ) -> Result<ConvGrads<Self::Tensor>> {
        let conv = checks::conv_transpose(
            "conv_transpose2d_backward",
            self.shape(x),
            self.shape(w),
            None,
            g,
        )?;
        let batch = self.shape(x).rows;
        let want = Shape::new(batch, g.output_len());
        if self.shape(grad_y) != want {
            return Err(TensorError::ShapeMismatch {
                op: "conv_transpose2d_backward",
                detail: format!("∂L/∂y is {}, the output is {want}", self.shape(grad_y)),
            });
        }
        let b = if has_bias {
            Some(self.sum_channels(grad_y, g.out_channels)?)
        } else {
            None
        };
        let positions = g.input[0] * g.input[1];
        let gcols = self.im2col(grad_y, &conv)?;
        let xt = self.batch_transpose(x, g.in_channels, positions)?;
        let xt = self.reshape(xt, Shape::new(batch * positions, g.in_channels))?;
        let gw = self.matmul(&xt, Transpose::Yes, &gcols, Transpose::No)?;
        let gx = if need_x {
            let gxt = self.matmul(&gcols, Transpose::No, w, Transpose::Yes)?;
            let gxt = self.reshape(gxt, Shape::new(batch, positions * g.in_channels))?;
            Some(self.batch_transpose(&gxt, positions, g.in_channels)?)
        } else {
            None
        };
        Ok(ConvGrads { x: gx, w: gw, b })
    }

    /// Per-row binary cross-entropy with logits (`rows × 1`, nats) and its
    /// gradient with respect to the logits.
    fn bce_with_logits(
        &self,
        logits: &Self::Tensor,
        targets: &Self::Tensor,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        let (loss, grad) = self.bce_with_logits_elementwise(logits, targets)?;
        Ok((self.sum_cols(&loss)?, grad))
    }

    /// Per-row Gaussian negative log-likelihood and its gradients; see
    /// [`Backend::gaussian_nll_elementwise`] for the shapes `logvar` may take.
    fn gaussian_nll(
        &self,
        x: &Self::Tensor,
        mean: &Self::Tensor,
        logvar: &Self::Tensor,
    ) -> Result<GaussianNllOutput<Self::Tensor>> {
        let (loss, grad_mean, grad_lv) = self.gaussian_nll_elementwise(x, mean, logvar)?;
        let shared = self.shape(logvar) != self.shape(mean);
        Ok(GaussianNllOutput {
            per_row: self.sum_cols(&loss)?,
            grad_mean,
            grad_logvar: if shared {
                self.sum_rows(&grad_lv)?
            } else {
                grad_lv
            },
        })
    }

    /// Per-row `KL(N(mu, e^{lv}) ‖ N(0, I))` with its gradients.
    fn kl_normal(
        &self,
        mu: &Self::Tensor,
        logvar: &Self::Tensor,
    ) -> Result<KlOutput<Self::Tensor>> {
        let (elementwise, grad_mu, grad_logvar) = self.kl_normal_elementwise(mu, logvar)?;
        Ok(KlOutput {
            per_row: self.sum_cols(&elementwise)?,
            elementwise,
            grad_mu,
            grad_logvar,
        })
    }

    /// Downloads a `1 × 1` (or any) tensor's first value.
    fn scalar(&self, t: &Self::Tensor) -> Result<f32> {
        self.download(t)?
            .first()
            .copied()
            .ok_or(TensorError::Empty {
                op: "scalar",
                shape: self.shape(t),
            })
    }
}
