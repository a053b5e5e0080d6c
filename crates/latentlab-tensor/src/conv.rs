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

/// `dst ← src`, inline for short runs: the lowering's copies are rows of
/// a few to a few hundred values, many thousands per batch, and a call
/// into the C library's `memmove` for each costs more than the copy. (A
/// plain loop does not do: the compiler turns it back into that call.)
#[inline]
fn copy(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "copy lengths");
    if dst.len() > 256 {
        dst.copy_from_slice(src);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    {
        use std::arch::x86_64::{_mm_loadu_ps, _mm_storeu_ps};
        let body = dst.len() / 4 * 4;
        for i in (0..body).step_by(4) {
            // SAFETY: `i + 4 ≤ len` of both slices (their lengths are
            // equal), the accesses are unaligned ones, and SSE is part of
            // every x86-64 CPU.
            unsafe { _mm_storeu_ps(dst.as_mut_ptr().add(i), _mm_loadu_ps(src.as_ptr().add(i))) }
        }
        let (d, s) = (&mut dst[body..], &src[body..]);
        match d.len() {
            0 => {}
            1 => d[0] = s[0],
            2 => [d[0], d[1]] = [s[0], s[1]],
            _ => [d[0], d[1], d[2]] = [s[0], s[1], s[2]],
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    dst.copy_from_slice(src);
}

/// `dst ← 0`, inline for short runs, as [`copy`] (the spare columns and
/// padding rows it clears are a few values each).
#[inline]
fn zero(dst: &mut [f32]) {
    if dst.len() > 256 {
        dst.fill(0.0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    {
        use std::arch::x86_64::{_mm_setzero_ps, _mm_storeu_ps};
        let body = dst.len() / 4 * 4;
        for i in (0..body).step_by(4) {
            // SAFETY: `i + 4 ≤ dst.len()`, an unaligned store, and SSE is
            // part of every x86-64 CPU.
            unsafe { _mm_storeu_ps(dst.as_mut_ptr().add(i), _mm_setzero_ps()) }
        }
        let d = &mut dst[body..];
        match d.len() {
            0 => {}
            1 => d[0] = 0.0,
            2 => [d[0], d[1]] = [0.0; 2],
            _ => [d[0], d[1], d[2]] = [0.0; 3],
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    dst.fill(0.0);
}

/// Columns a group of images should give the CPU's convolution products
/// ([`Wide::group`]).
const GROUP_COLUMNS: usize = 320;
/// The most images [`Wide::group`] lowers together.
const MAX_GROUP: usize = 16;

/// The lowering the CPU's convolutions run on, which turns a strided,
/// padded, dilated convolution into long contiguous copies.
///
/// The zero-padded input is split into its `sy·sx` stride phases: phase
/// `(py, px)` holds the padded pixels `(r·sy + py, q·sx + px)` as an
/// `hq × wq` plane. Tap `(ky, kx)` of output `(oy, ox)` reads padded pixel
/// `(oy·sy + ky·dy, ox·sx + kx·dx)`, which is element `(oy + a, ox + b)` of
/// phase `(ky·dy mod sy, kx·dx mod sx)`, with `a = ⌊ky·dy / sy⌋` and
/// `b = ⌊kx·dx / sx⌋`. With the outputs laid out `wq` wide (position
/// `oy·wq + ox`; the columns `ox ≥ ow` are spare), one tap's patch values
/// over all positions are then a single run of a phase plane, `oh·wq` long,
/// from element `a·wq + b`: the patches ("im2col") are `C·kh·kw` copies.
///
/// The spare columns read real pixels of a neighbouring row. They are
/// dropped from outputs ([`Wide::narrow`]) and are zero in output gradients
/// ([`Wide::widen`]), so they never reach a result. (One caveat: a spare
/// column that reads an infinite input adds 0·∞ = NaN to a weight
/// gradient; an infinite input makes the loss non-finite anyway.)
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wide {
    g: Conv2dGeometry,
    out: [usize; 2],
    /// Phase plane height and width.
    hq: usize,
    wq: usize,
    /// Values per phase plane: `hq·wq` and a spare row, which the runs of
    /// taps with `b > 0` reach into.
    plane: usize,
}

impl Wide {
    /// The lowering of a validated geometry.
    pub(crate) fn new(g: &Conv2dGeometry) -> Self {
        let out = g.output_size().expect("validated");
        let [hq, wq] = [0, 1].map(|a| out[a] + (g.kernel[a] - 1) * g.dilation[a] / g.stride[a]);
        Self {
            g: *g,
            out,
            hq,
            wq,
            plane: (hq + 1) * wq,
        }
    }

    /// Positions in the wide layout, `oh·wq`: the columns of its patches.
    pub(crate) fn width(&self) -> usize {
        self.out[0] * self.wq
    }

    /// Values of one image's phase planes.
    pub(crate) fn phases_len(&self) -> usize {
        self.g.in_channels * self.g.stride[0] * self.g.stride[1] * self.plane
    }

    /// Where each tap's run starts in the phase planes, taps `(c, ky, kx)`
    /// in the weight's order.
    fn taps(&self) -> impl Iterator<Item = usize> + '_ {
        let [kh, kw] = self.g.kernel;
        let ([sy, sx], [dy, dx]) = (self.g.stride, self.g.dilation);
        (0..self.g.in_channels * kh * kw).map(move |t| {
            let (c, ky, kx) = (t / (kh * kw), t / kw % kh, t % kw);
            let (y, x) = (ky * dy, kx * dx);
            let phase = (y % sy) * sx + x % sx;
            (c * sy * sx + phase) * self.plane + (y / sy) * self.wq + x / sx
        })
    }

    /// The image row of padded row `pr`, if inside the image.
    fn image_row(&self, pr: usize) -> Option<usize> {
        let iy = pr.checked_sub(self.g.padding[0])?;
        (iy < self.g.input[0]).then_some(iy)
    }

    /// A zeroed buffer for one padded row as the phase planes see it:
    /// `wq·sx` columns, the image row at offset `padding[1]` (cut to fit).
    fn padded_row(&self) -> Vec<f32> {
        vec![0.0; self.wq * self.g.stride[1]]
    }

    /// The columns of an image row that land in a padded row of `len`
    /// columns: `(image columns, padded columns)`.
    fn overlap(&self, len: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let (pad, w) = (self.g.padding[1], self.g.input[1]);
        let n = w.min(len.saturating_sub(pad));
        (0..n, pad.min(len)..pad.min(len) + n)
    }

    /// The phase planes of each channel of one image `x` (`C·H·W`), into
    /// `out` ([`Wide::phases_len`] values, every one written). Each padded
    /// row is assembled once and dealt out to its `sx` column phases.
    pub(crate) fn split(&self, x: &[f32], out: &mut [f32]) {
        let [h, w] = self.g.input;
        let [sy, sx] = self.g.stride;
        let (hq, wq) = (self.hq, self.wq);
        let mut padded = self.padded_row();
        let (cols, into) = self.overlap(padded.len());
        for (c, planes) in out.chunks_exact_mut(sy * sx * self.plane).enumerate() {
            let image = &x[c * h * w..][..h * w];
            for plane in planes.chunks_exact_mut(self.plane) {
                zero(&mut plane[hq * wq..]);
            }
            for pr in 0..hq * sy {
                let (py, r) = (pr % sy, pr / sy);
                let row = |px: usize| (py * sx + px) * self.plane + r * wq;
                let Some(iy) = self.image_row(pr) else {
                    for px in 0..sx {
                        zero(&mut planes[row(px)..][..wq]);
                    }
                    continue;
                };
                copy(&mut padded[into.clone()], &image[iy * w..][cols.clone()]);
                match sx {
                    1 => copy(&mut planes[row(0)..][..wq], &padded),
                    2 => {
                        let (even, odd) = planes[row(0)..].split_at_mut(self.plane);
                        let pairs = padded.chunks_exact(2);
                        for ((e, o), pair) in even[..wq].iter_mut().zip(&mut odd[..wq]).zip(pairs) {
                            (*e, *o) = (pair[0], pair[1]);
                        }
                    }
                    _ => {
                        for px in 0..sx {
                            let dst = &mut planes[row(px)..][..wq];
                            for (d, group) in dst.iter_mut().zip(padded.chunks_exact(sx)) {
                                *d = group[px];
                            }
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of [`Wide::split`]: each pixel of `x` (`C·H·W`, every
    /// one written) takes the one plane element that holds it (zero when no
    /// plane holds it). The spare rows are ignored.
    pub(crate) fn merge(&self, phases: &[f32], x: &mut [f32]) {
        let [h, w] = self.g.input;
        let [sy, sx] = self.g.stride;
        let (hq, wq) = (self.hq, self.wq);
        let mut padded = self.padded_row();
        let (cols, from) = self.overlap(padded.len());
        for (c, planes) in phases.chunks_exact(sy * sx * self.plane).enumerate() {
            let image = &mut x[c * h * w..][..h * w];
            let mut written = 0;
            for pr in 0..hq * sy {
                let Some(iy) = self.image_row(pr) else {
                    continue;
                };
                let (py, r) = (pr % sy, pr / sy);
                let row = |px: usize| &planes[(py * sx + px) * self.plane + r * wq..][..wq];
                let dst = &mut image[iy * w..][..w];
                match sx {
                    1 => copy(&mut dst[cols.clone()], &row(0)[from.clone()]),
                    2 => {
                        let pairs = padded.chunks_exact_mut(2);
                        for (pair, (e, o)) in pairs.zip(row(0).iter().zip(row(1))) {
                            (pair[0], pair[1]) = (*e, *o);
                        }
                    }
                    _ => {
                        for px in 0..sx {
                            for (group, v) in padded.chunks_exact_mut(sx).zip(row(px)) {
                                group[px] = *v;
                            }
                        }
                    }
                }
                if sx > 1 {
                    copy(&mut dst[cols.clone()], &padded[from.clone()]);
                }
                zero(&mut dst[cols.end..]);
                written = written.max(iy + 1);
            }
            image[written * w..].fill(0.0);
        }
    }

    /// Images one task of the CPU's convolutions lowers side by side, so
    /// that its products run over about [`GROUP_COLUMNS`] columns however
    /// small the output: a few hundred, where gemm's throughput levels off
    /// (conv64's 4×4 outputs ran at half of it one image at a time).
    pub(crate) fn group(&self) -> usize {
        (GROUP_COLUMNS / self.width()).clamp(1, MAX_GROUP)
    }

    // The wide buffers below hold a group's images side by side: a row of
    // them is `stride` values (the group's images × `width`), image `j`'s
    // part starts at column `j·width`, and the methods take the buffer from
    // there (`&buf[j * width..]`).

    /// Fills one image's columns of `cols` (`C·kh·kw` rows, `stride` apart,
    /// one per tap in the weight's order) with its patches, from its phase
    /// planes.
    pub(crate) fn patches(&self, phases: &[f32], cols: &mut [f32], stride: usize) {
        let width = self.width();
        for (row, start) in self.taps().enumerate() {
            copy(
                &mut cols[row * stride..][..width],
                &phases[start..][..width],
            );
        }
    }

    /// The adjoint of [`Wide::patches`]: sums one image's patch values
    /// (`cols`, rows `stride` apart) onto its phase planes (`phases`, every
    /// value written), taps in order.
    pub(crate) fn scatter(&self, cols: &[f32], stride: usize, phases: &mut [f32]) {
        let width = self.width();
        phases.fill(0.0);
        for (row, start) in self.taps().enumerate() {
            let dst = &mut phases[start..][..width];
            let src = &cols[row * stride..][..width];
            dst.iter_mut().zip(src).for_each(|(d, v)| *d += v);
        }
    }

    /// One image's `channels` planes of `oh·ow` values (`narrow`) in the
    /// wide layout (`wide`, `channels` rows `stride` apart), the spare
    /// columns zero.
    pub(crate) fn widen(&self, narrow: &[f32], channels: usize, wide: &mut [f32], stride: usize) {
        let [oh, ow] = self.out;
        for (ch, src) in narrow.chunks_exact(oh * ow).take(channels).enumerate() {
            let dst = wide[ch * stride..][..self.width()].chunks_exact_mut(self.wq);
            for (d, s) in dst.zip(src.chunks_exact(ow)) {
                copy(&mut d[..ow], s);
                zero(&mut d[ow..]);
            }
        }
    }

    /// The inverse of [`Wide::widen`]: drops the spare columns, adding
    /// `bias[channel]` to each value when given.
    pub(crate) fn narrow(
        &self,
        wide: &[f32],
        stride: usize,
        channels: usize,
        narrow: &mut [f32],
        bias: Option<&[f32]>,
    ) {
        let [oh, ow] = self.out;
        for (ch, out) in narrow.chunks_exact_mut(oh * ow).take(channels).enumerate() {
            let rows = wide[ch * stride..][..self.width()].chunks_exact(self.wq);
            for (d, s) in out.chunks_exact_mut(ow).zip(rows) {
                match bias {
                    Some(b) => d.iter_mut().zip(s).for_each(|(d, v)| *d = v + b[ch]),
                    None => copy(d, &s[..ow]),
                }
            }
        }
    }
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

    /// Geometries whose kernels overhang both borders, with strides,
    /// paddings and dilations on either axis.
    fn awkward_geometries() -> Vec<Conv2dGeometry> {
        vec![
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
            Conv2dGeometry::square(2, [9, 8], 1, 2, 4, 0),
            Conv2dGeometry::square(1, [5, 7], 1, 1, 1, 0),
        ]
    }

    /// The wide patches hold, at every real position, the position-major
    /// patches transposed; and their adjoint (scatter, then merge) sums the
    /// same values onto the pixels as `col2im_image`.
    #[test]
    fn wide_patches_are_the_transposed_patches() {
        for g in awkward_geometries() {
            g.validate("t").unwrap();
            let wd = Wide::new(&g);
            let ([oh, ow], l, k, width) = (
                g.output_size().unwrap(),
                g.positions(),
                g.patch_len(),
                wd.width(),
            );
            let x: Vec<f32> = (0..g.input_len()).map(|i| (i % 17) as f32 - 8.0).collect();
            let mut pm = vec![0.0; l * k];
            im2col_image(&g, &x, &mut pm);
            let mut phases = vec![f32::NAN; wd.phases_len()];
            wd.split(&x, &mut phases);
            assert!(
                phases.iter().all(|v| v.is_finite()),
                "{g:?}: split writes all"
            );
            let mut wide = vec![f32::NAN; k * width];
            wd.patches(&phases, &mut wide, width);
            assert!(wide.iter().all(|v| v.is_finite()), "{g:?}: spare columns");
            for t in 0..k {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let p = oy * ow + ox;
                        let got = wide[t * width + oy * wd.wq + ox];
                        assert_eq!(got, pm[p * k + t], "{g:?}: tap {t}, position {p}");
                    }
                }
            }
            // The adjoint, from patch values that are zero in the spare columns.
            let c: Vec<f32> = (0..l * k).map(|i| (i % 13) as f32 - 6.0).collect();
            let mut cw = vec![0.0; k * width];
            for t in 0..k {
                let ct: Vec<f32> = (0..l).map(|p| c[p * k + t]).collect();
                wd.widen(&ct, 1, &mut cw[t * width..][..width], width);
            }
            let (mut a, mut b) = (vec![0.0; g.input_len()], vec![f32::NAN; g.input_len()]);
            col2im_image(&g, &c, &mut a);
            let mut phases = vec![f32::NAN; wd.phases_len()];
            wd.scatter(&cw, width, &mut phases);
            wd.merge(&phases, &mut b);
            assert_eq!(a, b, "{g:?}: col2im");
        }
    }

    /// A group's images side by side: each image's columns of the group's
    /// buffers hold what that image's own buffers hold, and reading them
    /// back (scatter, narrow) gives each image's own result.
    #[test]
    fn grouped_images_keep_to_their_columns() {
        for g in awkward_geometries() {
            let wd = Wide::new(&g);
            let (k, width, o) = (g.patch_len(), wd.width(), 2);
            let stride = 3 * width;
            let mut group = vec![f32::NAN; k * stride];
            let mut wide_group = vec![f32::NAN; o * stride];
            let mut own = Vec::new();
            for j in 0..3 {
                let x: Vec<f32> = (0..g.input_len())
                    .map(|i| ((i + 5 * j) % 9) as f32)
                    .collect();
                let mut phases = vec![0.0; wd.phases_len()];
                wd.split(&x, &mut phases);
                let mut cols = vec![0.0; k * width];
                wd.patches(&phases, &mut cols, width);
                wd.patches(&phases, &mut group[j * width..], stride);
                let y: Vec<f32> = (0..o * g.positions())
                    .map(|i| (i * (j + 2)) as f32)
                    .collect();
                wd.widen(&y, o, &mut wide_group[j * width..], stride);
                own.push((cols, y));
            }
            assert!(
                group.iter().chain(&wide_group).all(|v| v.is_finite()),
                "{g:?}: all written"
            );
            for (j, (cols, y)) in own.iter().enumerate() {
                for t in 0..k {
                    let part = &group[t * stride + j * width..][..width];
                    assert_eq!(
                        part,
                        &cols[t * width..][..width],
                        "{g:?}: image {j}, tap {t}"
                    );
                }
                let (mut a, mut b) = (vec![0.0; wd.phases_len()], vec![0.0; wd.phases_len()]);
                wd.scatter(cols, width, &mut a);
                wd.scatter(&group[j * width..], stride, &mut b);
                assert_eq!(a, b, "{g:?}: image {j} scatter");
                let mut back = vec![f32::NAN; y.len()];
                wd.narrow(&wide_group[j * width..], stride, o, &mut back, None);
                assert_eq!(&back, y, "{g:?}: image {j} narrow");
            }
        }
    }

    /// Splitting into phases and merging back are adjoint, for any plane
    /// values; merging a split gives the image back; narrowing undoes
    /// widening.
    #[test]
    fn phases_and_wide_layout_round_trip() {
        for g in awkward_geometries() {
            let wd = Wide::new(&g);
            let x: Vec<f32> = (0..g.input_len())
                .map(|i| (i * 7 % 11) as f32 - 5.0)
                .collect();
            let q: Vec<f32> = (0..wd.phases_len())
                .map(|i| (i * 5 % 13) as f32 - 6.0)
                .collect();
            let (mut split, mut merged) = (vec![0.0; wd.phases_len()], vec![0.0; g.input_len()]);
            wd.split(&x, &mut split);
            wd.merge(&q, &mut merged);
            let lhs: f64 = split.iter().zip(&q).map(|(a, b)| f64::from(a * b)).sum();
            let rhs: f64 = x.iter().zip(&merged).map(|(a, b)| f64::from(a * b)).sum();
            assert_eq!(lhs, rhs, "{g:?}: adjoint");
            // Every pixel a tap reaches comes back, and every pixel is written.
            let mut back = vec![f32::NAN; g.input_len()];
            wd.merge(&split, &mut back);
            let mut reached = vec![0.0; g.input_len()];
            let ones = vec![1.0; g.positions() * g.patch_len()];
            col2im_image(&g, &ones, &mut reached);
            for (i, (&b, &r)) in back.iter().zip(&reached).enumerate() {
                if r > 0.0 {
                    assert_eq!(b, x[i], "{g:?}: pixel {i}");
                }
                assert!(b.is_finite(), "{g:?}: pixel {i} written");
            }
            let o = 3;
            let narrow: Vec<f32> = (0..o * g.positions()).map(|i| i as f32).collect();
            let mut wide = vec![f32::NAN; o * wd.width()];
            wd.widen(&narrow, o, &mut wide, wd.width());
            let mut again = vec![f32::NAN; narrow.len()];
            wd.narrow(&wide, wd.width(), o, &mut again, None);
            assert_eq!(again, narrow, "{g:?}: narrow ∘ widen");
            let spare: f32 = wide.iter().sum::<f32>() - narrow.iter().sum::<f32>();
            assert_eq!(spare, 0.0, "{g:?}: spare columns are zero");
            wd.narrow(&wide, wd.width(), o, &mut again, Some(&[1.0, 2.0, 3.0]));
            let plane = g.positions();
            assert!(
                again
                    .iter()
                    .enumerate()
                    .all(|(i, &v)| v == narrow[i] + (i / plane + 1) as f32)
            );
        }
    }
}
