//! Shape checks shared by every backend, so that both reject the same inputs
//! with the same errors before any kernel runs.

use crate::{Conv2dGeometry, ConvTranspose2dGeometry, Result, Shape, TensorError, Transpose};

pub(crate) fn nonempty(op: &'static str, s: Shape) -> Result<()> {
    if s.is_empty() {
        return Err(TensorError::Empty { op, shape: s });
    }
    Ok(())
}

pub(crate) fn upload(op: &'static str, len: usize, shape: Shape) -> Result<()> {
    nonempty(op, shape)?;
    let expected = shape
        .checked_len()
        .ok_or_else(|| TensorError::InvalidArgument {
            op,
            detail: format!("shape {shape} overflows the address space"),
        })?;
    if len != expected {
        return Err(TensorError::DataLength {
            op,
            len,
            shape,
            expected,
        });
    }
    Ok(())
}

pub(crate) fn same(op: &'static str, a: Shape, b: Shape) -> Result<()> {
    if a != b {
        return Err(TensorError::ShapeMismatch {
            op,
            detail: format!("{a} and {b} must be equal"),
        });
    }
    Ok(())
}

/// Returns `(m, k, n)` for `op(a) · op(b)`.
pub(crate) fn matmul(
    a: Shape,
    ta: Transpose,
    b: Shape,
    tb: Transpose,
) -> Result<(usize, usize, usize)> {
    let (oa, ob) = (ta.apply(a), tb.apply(b));
    if oa.cols != ob.rows {
        return Err(TensorError::ShapeMismatch {
            op: "matmul",
            detail: format!(
                "op(a) is {oa} (a {a}, transposed: {}) and op(b) is {ob} (b {b}, transposed: {}): inner dimensions {} ≠ {}",
                ta == Transpose::Yes,
                tb == Transpose::Yes,
                oa.cols,
                ob.rows
            ),
        });
    }
    Ok((oa.rows, oa.cols, ob.cols))
}

pub(crate) fn row_vector(op: &'static str, x: Shape, v: Shape) -> Result<()> {
    if v.rows != 1 || v.cols != x.cols {
        return Err(TensorError::ShapeMismatch {
            op,
            detail: format!("expected a [1×{}] row vector for x {x}, got {v}", x.cols),
        });
    }
    Ok(())
}

/// `logvar` of a Gaussian likelihood: the shape of `mean`, or one row shared.
pub(crate) fn logvar_like(op: &'static str, mean: Shape, lv: Shape) -> Result<bool> {
    if lv == mean {
        Ok(false)
    } else if lv.rows == 1 && lv.cols == mean.cols {
        Ok(true)
    } else {
        Err(TensorError::ShapeMismatch {
            op,
            detail: format!("logvar {lv} must be {mean} or [1×{}]", mean.cols),
        })
    }
}

pub(crate) fn finite_scalar(op: &'static str, name: &str, v: f32) -> Result<()> {
    if !v.is_finite() {
        return Err(TensorError::InvalidArgument {
            op,
            detail: format!("{name} = {v} must be finite"),
        });
    }
    Ok(())
}

pub(crate) fn reshape(from: Shape, to: Shape) -> Result<()> {
    nonempty("reshape", to)?;
    if from.checked_len() != to.checked_len() {
        return Err(TensorError::ShapeMismatch {
            op: "reshape",
            detail: format!("{from} cannot be viewed as {to}: the element counts differ"),
        });
    }
    Ok(())
}

/// A batch of `channels × input` images: `x` must have their values per row.
fn image_rows(
    op: &'static str,
    x: Shape,
    what: &str,
    channels: usize,
    input: [usize; 2],
) -> Result<()> {
    nonempty(op, x)?;
    let need = channels * input[0] * input[1];
    if x.cols != need {
        return Err(TensorError::ShapeMismatch {
            op,
            detail: format!(
                "{what} {x} have {} values each; {channels} channels of {}×{} need {need}",
                x.cols, input[0], input[1]
            ),
        });
    }
    Ok(())
}

/// A batch of images for the convolution `g`.
pub(crate) fn images(op: &'static str, x: Shape, g: &Conv2dGeometry) -> Result<()> {
    g.validate(op)?;
    image_rows(op, x, "images", g.in_channels, g.input)
}

/// A (transposed) convolution's weight `dims` (PyTorch's order), stored as
/// `dims[0] × dims[1]·dims[2]·dims[3]`, and its optional `1 × channels` bias.
fn weight_and_bias(
    op: &'static str,
    w: Shape,
    dims: [usize; 4],
    bias: Option<Shape>,
    channels: usize,
) -> Result<()> {
    let want = Shape::new(dims[0], dims[1] * dims[2] * dims[3]);
    if w != want {
        return Err(TensorError::ShapeMismatch {
            op,
            detail: format!("the weight is {w}; {dims:?} is stored as {want}"),
        });
    }
    if let Some(b) = bias
        && b != Shape::new(1, channels)
    {
        return Err(TensorError::ShapeMismatch {
            op,
            detail: format!("the bias is {b}, expected [1×{channels}]"),
        });
    }
    Ok(())
}

/// A convolution's operands; returns the output height and width.
pub(crate) fn conv(
    op: &'static str,
    x: Shape,
    w: Shape,
    bias: Option<Shape>,
    g: &Conv2dGeometry,
) -> Result<[usize; 2]> {
    let out = g.validate(op)?;
    image_rows(op, x, "images", g.in_channels, g.input)?;
    let [kh, kw] = g.kernel;
    weight_and_bias(
        op,
        w,
        [g.out_channels, g.in_channels, kh, kw],
        bias,
        g.out_channels,
    )?;
    Ok(out)
}

/// A transposed convolution's operands; returns the convolution it is the
/// transpose of.
pub(crate) fn conv_transpose(
    op: &'static str,
    x: Shape,
    w: Shape,
    bias: Option<Shape>,
    g: &ConvTranspose2dGeometry,
) -> Result<Conv2dGeometry> {
    g.validate(op)?;
    image_rows(op, x, "inputs", g.in_channels, g.input)?;
    let [kh, kw] = g.kernel;
    weight_and_bias(
        op,
        w,
        [g.in_channels, g.out_channels, kh, kw],
        bias,
        g.out_channels,
    )?;
    Ok(g.forward_conv())
}

/// Patches for the convolution `g`; returns the batch size.
pub(crate) fn patches(op: &'static str, cols: Shape, g: &Conv2dGeometry) -> Result<usize> {
    nonempty(op, cols)?;
    g.validate(op)?;
    let l = g.positions();
    if cols.cols != g.patch_len() || !cols.rows.is_multiple_of(l) {
        return Err(TensorError::ShapeMismatch {
            op,
            detail: format!(
                "patches {cols} must be (batch·{l}) × {} for {} output positions of {} values",
                g.patch_len(),
                l,
                g.patch_len()
            ),
        });
    }
    Ok(cols.rows / l)
}

pub(crate) fn blocks(op: &'static str, x: Shape, p: usize, q: usize) -> Result<()> {
    nonempty(op, x)?;
    if p.checked_mul(q) != Some(x.cols) {
        return Err(TensorError::ShapeMismatch {
            op,
            detail: format!("rows of {x} cannot be read as {p}×{q} matrices"),
        });
    }
    Ok(())
}

/// A per-channel bias for `x`; returns the plane size.
pub(crate) fn channel_bias(op: &'static str, x: Shape, bias: Shape) -> Result<usize> {
    nonempty(op, x)?;
    nonempty(op, bias)?;
    if bias.rows != 1 || !x.cols.is_multiple_of(bias.cols) {
        return Err(TensorError::ShapeMismatch {
            op,
            detail: format!("bias {bias} is not one value per channel plane of rows of {x}"),
        });
    }
    Ok(x.cols / bias.cols)
}

/// Rows of `channels` equal planes; returns the plane size.
pub(crate) fn planes(op: &'static str, x: Shape, channels: usize) -> Result<usize> {
    nonempty(op, x)?;
    if channels == 0 || !x.cols.is_multiple_of(channels) {
        return Err(TensorError::ShapeMismatch {
            op,
            detail: format!("rows of {x} do not hold {channels} equal channel planes"),
        });
    }
    Ok(x.cols / channels)
}

/// A batch normalisation's operands: per-channel statistics (`1 × C`, the
/// channel count), the optional affine parameters of the same shape, and a
/// finite positive `eps`. Returns the plane size.
pub(crate) fn batch_norm(
    op: &'static str,
    x: Shape,
    mean: Shape,
    var: Shape,
    affine: [Option<Shape>; 2],
    eps: f32,
) -> Result<usize> {
    nonempty(op, mean)?;
    let want = Shape::new(1, mean.cols);
    for (what, s) in [("mean", Some(mean)), ("variance", Some(var))]
        .into_iter()
        .chain([("γ", affine[0]), ("β", affine[1])])
    {
        if let Some(s) = s
            && s != want
        {
            return Err(TensorError::ShapeMismatch {
                op,
                detail: format!("the {what} is {s}, expected {want} (one value per channel)"),
            });
        }
    }
    if !(eps.is_finite() && eps > 0.0) {
        return Err(TensorError::InvalidArgument {
            op,
            detail: format!("eps = {eps} must be finite and > 0"),
        });
    }
    planes(op, x, mean.cols)
}

/// `x`, a per-row `rows × 1` value and a matching `rows × 1` gradient.
pub(crate) fn per_row(op: &'static str, x: Shape, v: Shape, what: &str) -> Result<()> {
    nonempty(op, x)?;
    if v != Shape::new(x.rows, 1) {
        return Err(TensorError::ShapeMismatch {
            op,
            detail: format!("{what} is {v}, expected [{}×1] for x {x}", x.rows),
        });
    }
    Ok(())
}
