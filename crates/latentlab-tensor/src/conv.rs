//! The geometry of 2-D convolutions, and the host kernels both backends'
//! convolutions are built from.
//!
//! A batch of images is a row-major `N × (C·H·W)` tensor: row `n` holds image
//! `n` in PyTorch's `C×H×W` order, so the memory is exactly that of an
//! `N×C×H×W` tensor. A convolution is lowered to a matrix product over
//! patches ("im2col"): [`Conv2dGeometry::patches`] rows (one per output
//! position of every image) of [`Conv2dGeometry::patch_len`] values, laid out
//! as PyTorch's weight `[out, in, kh, kw]` is flattened, so the product with
//! the weight as an `out × (in·kh·kw)` matrix is the convolution.

use crate::{Result, TensorError};

/// A 2-D convolution's geometry: what PyTorch's `nn.Conv2d` is given, plus
/// the input's spatial size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Conv2dGeometry {
    /// Input channels.
    pub in_channels: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Output channels.
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Zero padding on each side, along height and width.
    pub padding: [usize; 2],
    /// Spacing between kernel taps, along height and width (1: none).
    pub dilation: [usize; 2],
}

/// A transposed 2-D convolution's geometry: what PyTorch's
/// `nn.ConvTranspose2d` is given, plus the input's spatial size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ConvTranspose2dGeometry {
    /// Input channels.
    pub in_channels: usize,
    /// Input height and width.
    pub input: [usize; 2],
    /// Output channels.
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Padding removed from each side of the output, along height and width.
    pub padding: [usize; 2],
    /// Extra rows and columns added to one side of the output.
    pub output_padding: [usize; 2],
    /// Spacing between kernel taps, along height and width (1: none).
    pub dilation: [usize; 2],
}

/// Largest size of any one dimension a geometry may have: far above any image
/// model, and low enough that every index fits `u32` on the GPU.
const MAX_DIM: usize = 1 << 16;

fn invalid(op: &'static str, detail: String) -> TensorError {
    TensorError::InvalidArgument { op, detail }
}

impl Conv2dGeometry {
    /// A square-kernel convolution with equal stride, padding and dilation 1
    /// along both axes (the common case).
    pub fn square(
        in_channels: usize,
        input: [usize; 2],
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Self {
        Self {
            in_channels,
            input,
            out_channels,
            kernel: [kernel; 2],
            stride: [stride; 2],
            padding: [padding; 2],
            dilation: [1; 2],
        }
    }

    /// Output height and width, `None` when the kernel does not fit the
    /// padded input.
    #[allow(clippy::needless_range_loop)]
    pub fn output_size(&self) -> Option<[usize; 2]> {
        let mut out = [0; 2];
        for a in 0..2 {
            let span = self.dilation[a].checked_mul(self.kernel[a].checked_sub(1)?)? + 1;
            let padded = self.input[a].checked_add(2 * self.padding[a])?;
            if self.stride[a] == 0 || padded < span {
                return None;
            }
            out[a] = (padded - span) / self.stride[a] + 1;
        }
        Some(out)
    }

    /// Checks every size; returns the output height and width.
    pub fn validate(&self, op: &'static str) -> Result<[usize; 2]> {
        let sizes = [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("input height", self.input[0]),
            ("input width", self.input[1]),
            ("kernel height", self.kernel[0]),
            ("kernel width", self.kernel[1]),
            ("stride", self.stride[0]),
            ("stride", self.stride[1]),
            ("dilation", self.dilation[0]),
            ("dilation", self.dilation[1]),
        ];
        for (name, v) in sizes {
            if v == 0 || v > MAX_DIM {
                return Err(invalid(
                    op,
                    format!("{name} is {v}; it must lie in 1..={MAX_DIM}"),
                ));
            }
        }
        if self.padding.iter().any(|&p| p > MAX_DIM) {
            return Err(invalid(
                op,
                format!("padding {:?} exceeds {MAX_DIM}", self.padding),
            ));
        }
        let out = self.output_size().ok_or_else(|| {
            invalid(
                op,
                format!(
                    "a {}×{} kernel (dilation {:?}) does not fit a {}×{} input padded by {:?}",
                    self.kernel[0],
                    self.kernel[1],
                    self.dilation,
                    self.input[0],
                    self.input[1],
                    self.padding
                ),
            )
        })?;
        let big = [
            self.input_len(),
            self.patch_len(),
            self.out_channels * out[0] * out[1],
        ];
        if big.iter().any(|&v| v > u32::MAX as usize / 4) {
            return Err(invalid(op, format!("{self:?} is too large")));
        }
        Ok(out)
    }

    /// Values per input image, `C·H·W`.
    pub fn input_len(&self) -> usize {
        self.in_channels * self.input[0] * self.input[1]
    }

    /// Values per output image, `O·OH·OW` (0 when the kernel does not fit).
    pub fn output_len(&self) -> usize {
        self.out_channels * self.positions()
    }

    /// Output positions per image, `OH·OW` (0 when the kernel does not fit).
    pub fn positions(&self) -> usize {
        self.output_size().map_or(0, |[h, w]| h * w)
    }

    /// Values in one patch, `C·kh·kw`: the weight's columns.
    pub fn patch_len(&self) -> usize {
        self.in_channels * self.kernel[0] * self.kernel[1]
    }
}

impl ConvTranspose2dGeometry {
    /// Output height and width:
    /// `(in − 1)·stride − 2·padding + dilation·(kernel − 1) + output_padding + 1`,
    /// `None` when that is not positive.
    #[allow(clippy::needless_range_loop)]
    pub fn output_size(&self) -> Option<[usize; 2]> {
        let mut out = [0; 2];
        for a in 0..2 {
            let full = (self.input[a].checked_sub(1)?)
                .checked_mul(self.stride[a])?
                .checked_add(self.dilation[a].checked_mul(self.kernel[a].checked_sub(1)?)?)?
                .checked_add(self.output_padding[a] + 1)?;
            out[a] = full.checked_sub(2 * self.padding[a]).filter(|&v| v > 0)?;
        }
        Some(out)
    }

    /// The convolution this one is the transpose of: its input is this one's
    /// output, and its output this one's input. Transposed convolution runs
    /// as that convolution's backward pass.
    pub fn forward_conv(&self) -> Conv2dGeometry {
        Conv2dGeometry {
            in_channels: self.out_channels,
            input: self.output_size().unwrap_or([0, 0]),
            out_channels: self.in_channels,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
        }
    }

    /// Checks every size; returns the output height and width.
    pub fn validate(&self, op: &'static str) -> Result<[usize; 2]> {
        for a in 0..2 {
            if self.output_padding[a] >= self.stride[a].max(1) {
                return Err(invalid(
                    op,
                    format!(
                        "output padding {:?} must be smaller than the stride {:?}",
                        self.output_padding, self.stride
                    ),
                ));
            }
        }
        if self.input.contains(&0) || self.kernel.contains(&0) || self.stride.contains(&0) {
            return Err(invalid(
                op,
                format!(
                    "input {:?}, kernel {:?} and stride {:?} must be positive",
                    self.input, self.kernel, self.stride
                ),
            ));
        }
        let out = self.output_size().ok_or_else(|| {
            invalid(
                op,
                format!(
                    "padding {:?} leaves no output for a {}×{} input",
                    self.padding, self.input[0], self.input[1]
                ),
            )
        })?;
        let conv = self.forward_conv();
        let back = conv.validate(op)?;
        // With output padding below the stride the forward convolution maps
        // the output back onto exactly this input.
        debug_assert_eq!(back, self.input);
        Ok(out)
    }

    /// Values per input image, `C_in·H·W`.
    pub fn input_len(&self) -> usize {
        self.in_channels * self.input[0] * self.input[1]
    }

    /// Values per output image, `C_out·OH·OW` (0 when there is no output).
    pub fn output_len(&self) -> usize {
        self.output_size()
            .map_or(0, |[h, w]| self.out_channels * h * w)
    }
}

/// The geometry as the shaders see it: 16 `u32`s.
pub(crate) fn gpu_words(g: &Conv2dGeometry, batch: usize) -> [u32; 16] {
    let [oh, ow] = g.output_size().unwrap_or([0, 0]);
    [
        batch as u32,
        g.in_channels as u32,
        g.input[0] as u32,
        g.input[1] as u32,
        oh as u32,
        ow as u32,
        g.kernel[0] as u32,
        g.kernel[1] as u32,
        g.stride[0] as u32,
        g.stride[1] as u32,
        g.padding[0] as u32,
        g.padding[1] as u32,
        g.dilation[0] as u32,
        g.dilation[1] as u32,
        0,
        0,
    ]
}

/// Where the kernel row of output column `ox` reads in an input row of
/// width `w`: the first tap's column, and whether all `kw` taps fall inside
/// the row one after another (then the taps are one slice).
#[inline]
fn taps_of(g: &Conv2dGeometry, ox: usize, w: usize) -> (isize, bool) {
    let ix0 = (ox * g.stride[1]) as isize - g.padding[1] as isize;
    let contiguous = g.dilation[1] == 1 && ix0 >= 0 && ix0 as usize + g.kernel[1] <= w;
    (ix0, contiguous)
}

/// The input row `iy` of a plane of height `h`, if inside.
#[inline]
fn input_row(g: &Conv2dGeometry, oy: usize, ky: usize, h: usize) -> Option<usize> {
    let iy = (oy * g.stride[0] + ky * g.dilation[0]) as isize - g.padding[0] as isize;
    (iy >= 0 && (iy as usize) < h).then_some(iy as usize)
}

/// Fills `out` (`positions × patch_len`, row-major) with the patches of one
/// image `x` (`C·H·W`).
pub(crate) fn im2col_image(g: &Conv2dGeometry, x: &[f32], out: &mut [f32]) {
    let [h, w] = g.input;
    let [oh, ow] = g.output_size().expect("validated");
    let [kh, kw] = g.kernel;
    let k = g.patch_len();
    for oy in 0..oh {
        for ox in 0..ow {
            let (ix0, contiguous) = taps_of(g, ox, w);
            let row = &mut out[(oy * ow + ox) * k..][..k];
            for (c, taps) in row.chunks_exact_mut(kh * kw).enumerate() {
                let plane = &x[c * h * w..][..h * w];
                for (ky, dst) in taps.chunks_exact_mut(kw).enumerate() {
                    let Some(iy) = input_row(g, oy, ky, h) else {
                        dst.fill(0.0);
                        continue;
                    };
                    let src = &plane[iy * w..][..w];
                    if contiguous {
                        dst.copy_from_slice(&src[ix0 as usize..][..kw]);
                        continue;
                    }
                    for (kx, d) in dst.iter_mut().enumerate() {
                        let ix = ix0 + (kx * g.dilation[1]) as isize;
                        *d = if ix >= 0 && (ix as usize) < w {
                            src[ix as usize]
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col_image`]: sums one image's patch values
/// (`positions × patch_len`) back onto its pixels (`C·H·W`). Positions are
/// visited in a fixed order, so the result does not depend on threads.
pub(crate) fn col2im_image(g: &Conv2dGeometry, cols: &[f32], out: &mut [f32]) {
    let [h, w] = g.input;
    let [oh, ow] = g.output_size().expect("validated");
    let [kh, kw] = g.kernel;
    let k = g.patch_len();
    out.fill(0.0);
    for oy in 0..oh {
        for ox in 0..ow {
            let (ix0, contiguous) = taps_of(g, ox, w);
            let row = &cols[(oy * ow + ox) * k..][..k];
            for (c, taps) in row.chunks_exact(kh * kw).enumerate() {
                let plane = &mut out[c * h * w..][..h * w];
                for (ky, src) in taps.chunks_exact(kw).enumerate() {
                    let Some(iy) = input_row(g, oy, ky, h) else {
                        continue;
                    };
                    let dst = &mut plane[iy * w..][..w];
                    if contiguous {
                        for (d, v) in dst[ix0 as usize..][..kw].iter_mut().zip(src) {
                            *d += v;
                        }
                        continue;
                    }
                    for (kx, v) in src.iter().enumerate() {
                        let ix = ix0 + (kx * g.dilation[1]) as isize;
                        if ix >= 0 && (ix as usize) < w {
                            dst[ix as usize] += v;
                        }
                    }
                }
            }
        }
    }
}

/// The columns `[lo, hi)` of an output row whose tap `kx` falls inside an
/// input row of width `w`, and the input column of column `lo`.
#[inline]
fn tap_span(g: &Conv2dGeometry, kx: usize, ow: usize, w: usize) -> (usize, usize, usize) {
    let (s, off) = (
        g.stride[1],
        (kx * g.dilation[1]) as isize - g.padding[1] as isize,
    );
    // ix = ox·s + off must lie in [0, w).
    let lo = if off >= 0 { 0 } else { (-off) as usize }.div_ceil(s);
    let hi = if (w as isize) <= off {
        0
    } else {
        ((w as isize - off) as usize).div_ceil(s).min(ow)
    };
    let lo = lo.min(hi);
    (lo, hi, (lo as isize * s as isize + off) as usize)
}

/// Where tap `kx` of output column `ox` reads in a row split into stride
/// phases: input column `ox·s + off` is element `ox + j0` of phase `ph`
/// (phase `ph` holding columns `ph, ph + s, ph + 2s, …`).
#[inline]
fn phase_of(g: &Conv2dGeometry, kx: usize) -> (usize, isize) {
    let s = g.stride[1] as isize;
    let off = (kx * g.dilation[1]) as isize - g.padding[1] as isize;
    let ph = off.rem_euclid(s);
    (ph as usize, (off - ph) / s)
}

/// Phase `ph` of a plane's rows at column stride `s`: `out[iy·pw + j] =
/// plane[iy·w + j·s + ph]` for the `pw = ⌈w / s⌉` columns (zero past the row).
fn split_phase(plane: &[f32], w: usize, s: usize, ph: usize, out: &mut [f32]) {
    let pw = w.div_ceil(s);
    for (src, dst) in plane.chunks_exact(w).zip(out.chunks_exact_mut(pw)) {
        let src = &src[ph.min(w)..];
        // Whole groups of `s` columns first (stride 2 vectorises as a
        // deinterleave), then the last, partial one.
        let full = src.len() / s;
        if s == 2 {
            for (d, pair) in dst[..full].iter_mut().zip(src.chunks_exact(2)) {
                *d = pair[0];
            }
        } else {
            for (d, group) in dst[..full].iter_mut().zip(src.chunks_exact(s)) {
                *d = group[0];
            }
        }
        let rest = &mut dst[full..];
        if let Some(first) = rest.first_mut() {
            *first = src.get(full * s).copied().unwrap_or(0.0);
            rest[1..].fill(0.0);
        }
    }
}

/// Runs `f` with a thread's scratch buffer of `len` values for a plane's
/// column phases (reused across calls; its contents are unspecified).
fn with_phase_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    thread_local! {
        static PHASES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    PHASES.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}

/// Fills `out` (`patch_len × positions`, row-major: one row per kernel tap
/// `(c, ky, kx)`, the transpose of [`im2col_image`]'s layout) with the
/// patches of one image `x` (`C·H·W`). Each row is runs of output columns
/// read from one input row; at a column stride `s > 1` the plane is first
/// split into its `s` column phases, so every run is a contiguous copy (the
/// CPU's convolutions then move long runs instead of one kernel row per
/// position).
pub(crate) fn im2col_t_image(g: &Conv2dGeometry, x: &[f32], out: &mut [f32]) {
    let [h, w] = g.input;
    let [oh, ow] = g.output_size().expect("validated");
    let [kh, kw] = g.kernel;
    let (l, s) = (oh * ow, g.stride[1]);
    let pw = w.div_ceil(s);
    with_phase_scratch(if s > 1 { s * h * pw } else { 0 }, |phases| {
        for c in 0..g.in_channels {
            let plane = &x[c * h * w..][..h * w];
            if s > 1 {
                for (ph, buf) in phases.chunks_exact_mut(h * pw).enumerate() {
                    split_phase(plane, w, s, ph, buf);
                }
            }
            for ky in 0..kh {
                for kx in 0..kw {
                    let row = &mut out[((c * kh + ky) * kw + kx) * l..][..l];
                    let (lo, hi, ix0) = tap_span(g, kx, ow, w);
                    let (ph, j0) = phase_of(g, kx);
                    for (oy, dst) in row.chunks_exact_mut(ow).enumerate() {
                        let Some(iy) = input_row(g, oy, ky, h) else {
                            dst.fill(0.0);
                            continue;
                        };
                        // Most runs cover the whole row: no padding to fill.
                        if lo > 0 {
                            dst[..lo].fill(0.0);
                        }
                        if hi < ow {
                            dst[hi..].fill(0.0);
                        }
                        let src = if s == 1 {
                            &plane[iy * w + ix0..][..hi - lo]
                        } else {
                            let start = (lo as isize + j0) as usize;
                            &phases[(ph * h + iy) * pw + start..][..hi - lo]
                        };
                        for (d, v) in dst[lo..hi].iter_mut().zip(src) {
                            *d = *v;
                        }
                    }
                }
            }
        }
    });
}

/// The adjoint of [`im2col_t_image`]: sums one image's patch values
/// (`patch_len × positions`) back onto its pixels (`C·H·W`), taps in a fixed
/// order (into the column phases first at a stride `s > 1`), so the result
/// does not depend on threads.
pub(crate) fn col2im_t_image(g: &Conv2dGeometry, cols: &[f32], out: &mut [f32]) {
    let [h, w] = g.input;
    let [oh, ow] = g.output_size().expect("validated");
    let [kh, kw] = g.kernel;
    let (l, s) = (oh * ow, g.stride[1]);
    let pw = w.div_ceil(s);
    if s == 1 {
        out.fill(0.0);
    }
    with_phase_scratch(if s > 1 { s * h * pw } else { 0 }, |phases| {
        for c in 0..g.in_channels {
            let plane = &mut out[c * h * w..][..h * w];
            phases.fill(0.0);
            for ky in 0..kh {
                for kx in 0..kw {
                    let row = &cols[((c * kh + ky) * kw + kx) * l..][..l];
                    let (lo, hi, ix0) = tap_span(g, kx, ow, w);
                    let (ph, j0) = phase_of(g, kx);
                    for (oy, src) in row.chunks_exact(ow).enumerate() {
                        let Some(iy) = input_row(g, oy, ky, h) else {
                            continue;
                        };
                        let dst = if s == 1 {
                            &mut plane[iy * w + ix0..][..hi - lo]
                        } else {
                            let start = (lo as isize + j0) as usize;
                            &mut phases[(ph * h + iy) * pw + start..][..hi - lo]
                        };
                        for (d, v) in dst.iter_mut().zip(&src[lo..hi]) {
                            *d += v;
                        }
                    }
                }
            }
            if s > 1 {
                // Every pixel lies in exactly one phase: written, not added.
                for (ph, buf) in phases.chunks_exact(h * pw).enumerate() {
                    for (dst, src) in plane.chunks_exact_mut(w).zip(buf.chunks_exact(pw)) {
                        for (d, v) in dst[ph.min(w)..].iter_mut().step_by(s).zip(src) {
                            *d = *v;
                        }
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_sizes_follow_pytorch() {
        // nn.Conv2d(1, 32, 4, 2, 1) on 64×64 gives 32×32.
        let g = Conv2dGeometry::square(1, [64, 64], 32, 4, 2, 1);
        assert_eq!(g.validate("t").unwrap(), [32, 32]);
        // Dilation 2, kernel 3, no padding on 7×9: span 5 → 3×5.
        let g = Conv2dGeometry {
            dilation: [2, 2],
            ..Conv2dGeometry::square(2, [7, 9], 3, 3, 1, 0)
        };
        assert_eq!(g.output_size(), Some([3, 5]));
        // nn.ConvTranspose2d(64, 32, 4, 2, 1) on 4×4 gives 8×8; with output
        // padding 1 on a stride-2, kernel-3 layer 5×5 gives 10×10.
        let t = ConvTranspose2dGeometry {
            in_channels: 64,
            input: [4, 4],
            out_channels: 32,
            kernel: [4, 4],
            stride: [2, 2],
            padding: [1, 1],
            output_padding: [0, 0],
            dilation: [1, 1],
        };
        assert_eq!(t.validate("t").unwrap(), [8, 8]);
        let t = ConvTranspose2dGeometry {
            input: [5, 5],
            kernel: [3, 3],
            output_padding: [1, 1],
            ..t
        };
        assert_eq!(t.validate("t").unwrap(), [10, 10]);
        assert_eq!(t.forward_conv().output_size(), Some([5, 5]));
    }

    #[test]
    fn bad_geometries_are_errors_naming_the_problem() {
        let g = Conv2dGeometry::square(1, [3, 3], 4, 5, 1, 0);
        let e = g.validate("conv2d").unwrap_err().to_string();
        assert!(e.contains("conv2d") && e.contains("does not fit"), "{e}");
        let g = Conv2dGeometry::square(0, [3, 3], 4, 1, 1, 0);
        assert!(
            g.validate("conv2d")
                .unwrap_err()
                .to_string()
                .contains("in_channels")
        );
        let g = Conv2dGeometry::square(1, [3, 3], 4, 1, 0, 0);
        assert!(
            g.validate("conv2d")
                .unwrap_err()
                .to_string()
                .contains("stride")
        );
        let t = ConvTranspose2dGeometry {
            in_channels: 1,
            input: [4, 4],
            out_channels: 1,
            kernel: [3, 3],
            stride: [2, 2],
            padding: [0, 0],
            output_padding: [2, 0],
            dilation: [1, 1],
        };
        let e = t.validate("conv_transpose2d").unwrap_err().to_string();
        assert!(e.contains("output padding"), "{e}");
        let t = ConvTranspose2dGeometry {
            input: [1, 1],
            kernel: [1, 1],
            padding: [3, 3],
            output_padding: [0, 0],
            ..t
        };
        assert!(t.validate("conv_transpose2d").is_err());
    }

    /// im2col and col2im are adjoint: ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩.
    #[test]
    fn im2col_and_col2im_are_adjoint() {
        let g = Conv2dGeometry {
            dilation: [1, 2],
            stride: [2, 1],
            padding: [1, 2],
            ..Conv2dGeometry::square(2, [5, 6], 1, 3, 1, 0)
        };
        g.validate("t").unwrap();
        let n_in = g.input_len();
        let n_cols = g.positions() * g.patch_len();
        let x: Vec<f32> = (0..n_in).map(|i| ((i * 7 % 11) as f32) - 5.0).collect();
        let c: Vec<f32> = (0..n_cols).map(|i| ((i * 5 % 13) as f32) - 6.0).collect();
        let mut cols = vec![0.0; n_cols];
        im2col_image(&g, &x, &mut cols);
        let mut back = vec![0.0; n_in];
        col2im_image(&g, &c, &mut back);
        let lhs: f64 = cols.iter().zip(&c).map(|(a, b)| f64::from(a * b)).sum();
        let rhs: f64 = x.iter().zip(&back).map(|(a, b)| f64::from(a * b)).sum();
        assert_eq!(lhs, rhs);
    }

    /// The tap-major layout is the transpose of the position-major one, for
    /// strides, paddings, dilations and kernels that overhang both borders,
    /// and its col2im sums the same values onto the pixels.
    #[test]
    fn tap_major_patches_are_the_transpose() {
        let geometries = [
            Conv2dGeometry::square(1, [64, 64], 32, 4, 2, 1),
            Conv2dGeometry::square(3, [7, 9], 2, 3, 1, 1),
            Conv2dGeometry::square(2, [5, 5], 2, 5, 3, 2),
            Conv2dGeometry {
                dilation: [2, 3],
                stride: [1, 2],
                padding: [2, 3],
                ..Conv2dGeometry::square(2, [6, 11], 1, 3, 1, 0)
            },
            Conv2dGeometry::square(1, [4, 4], 1, 4, 2, 3),
        ];
        for g in geometries {
            g.validate("t").unwrap();
            let (l, k) = (g.positions(), g.patch_len());
            let x: Vec<f32> = (0..g.input_len()).map(|i| (i % 17) as f32 - 8.0).collect();
            let mut pm = vec![0.0; l * k];
            im2col_image(&g, &x, &mut pm);
            let mut tm = vec![f32::NAN; l * k];
            im2col_t_image(&g, &x, &mut tm);
            for p in 0..l {
                for t in 0..k {
                    assert_eq!(tm[t * l + p], pm[p * k + t], "{g:?}: tap {t}, position {p}");
                }
            }
            let c: Vec<f32> = (0..l * k).map(|i| (i % 13) as f32 - 6.0).collect();
            let ct: Vec<f32> = (0..l * k).map(|i| c[(i % l) * k + i / l]).collect();
            let (mut a, mut b) = (vec![0.0; g.input_len()], vec![f32::NAN; g.input_len()]);
            col2im_image(&g, &c, &mut a);
            col2im_t_image(&g, &ct, &mut b);
            assert_eq!(a, b, "{g:?}: col2im");
        }
    }
}
