//! The CPU backend: `ndarray` tensors, `rayon` parallelism, and a packed,
//! SIMD matrix product (the `gemm` crate, the kernel behind faer).

use std::ops::Range;

use ndarray::{Array2, ArrayView2, Zip};

use crate::backend::{
    Activation, AdamStep, Backend, BatchNormGrads, ConvGrads, NormStats, Transpose, Unary,
};
use crate::conv::{self, Conv2dGeometry, ConvTranspose2dGeometry, Wide};
use crate::{Result, Shape, TensorError, checks, philox, simd};

/// Below this many elements an elementwise op stays on the calling thread.
const PAR_MIN_ELEMS: usize = 1 << 15;
/// Below this many multiply-adds a matrix product stays on the calling thread.
const PAR_MIN_FLOPS: usize = 1 << 18;
/// The fewest images whose weight gradients one task of a convolution's
/// backward pass sums ([`Cpu::per_group`]).
const CONV_GROUP: usize = 4;

/// The CPU backend. Parallelism is explicit: [`Cpu::sequential`] runs every op
/// on the calling thread; [`Cpu::new`] uses rayon's pool for large ops. Both
/// give bit-identical results (work is split only across independent outputs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    parallel: bool,
}

impl Default for Cpu {
    fn default() -> Self {
        Self::new()
    }
}

impl Cpu {
    /// A CPU backend that uses rayon's global pool for large ops.
    pub fn new() -> Self {
        Self { parallel: true }
    }

    /// A CPU backend that never leaves the calling thread.
    pub fn sequential() -> Self {
        Self { parallel: false }
    }

    /// Whether large ops run on rayon's pool.
    pub fn is_parallel(&self) -> bool {
        self.parallel
    }

    fn par(&self, len: usize) -> bool {
        self.parallel && len >= PAR_MIN_ELEMS
    }

    /// Runs `f(inputs, outputs)` over matching chunks of `images` images
    /// of `input` (`in_len` values each) and `out` (`out_len` each; the
    /// last chunk may be shorter), on rayon's pool when the work is large.
    fn per_images(
        &self,
        input: &[f32],
        in_len: usize,
        out: &mut [f32],
        out_len: usize,
        images: usize,
        f: impl Fn(&[f32], &mut [f32]) + Sync + Send,
    ) {
        let (ins, outs) = (images * in_len, images * out_len);
        if self.par(out.len().max(input.len())) {
            use rayon::prelude::*;
            input
                .par_chunks(ins)
                .zip(out.par_chunks_mut(outs))
                .for_each(|(i, o)| f(i, o));
        } else {
            input
                .chunks(ins)
                .zip(out.chunks_mut(outs))
                .for_each(|(i, o)| f(i, o));
        }
    }

    /// The backward pass of a convolution over `n` images: `f(images,
    /// partial, ∂x)` adds the weight gradient of a chunk of at most `chunk`
    /// consecutive images into its group's `partial` (`w_len` values, zero
    /// at the start) and, when `need_x`, writes their input gradients
    /// (`x_len` values each). A group is the fewest whole chunks that make
    /// [`CONV_GROUP`] images or more, so the summation order depends on
    /// the geometry, never on threads. Groups run on the pool when the
    /// backend is parallel; their partials are then summed in group order.
    /// Returns `(∂w, ∂x)`.
    fn per_group(
        &self,
        n: usize,
        chunk: usize,
        w_len: usize,
        x_len: usize,
        need_x: bool,
        f: impl Fn(Range<usize>, &mut [f32], Option<&mut [f32]>) + Sync + Send,
    ) -> (Vec<f32>, Option<Vec<f32>>) {
        let size = chunk * CONV_GROUP.div_ceil(chunk);
        let groups = n.div_ceil(size);
        let mut partials = vec![0.0f32; groups * w_len];
        let mut gx = vec![0.0f32; if need_x { n * x_len } else { 0 }];
        let group = |gi: usize, part: &mut [f32], mut gx: Option<&mut [f32]>| {
            let (first, end) = (gi * size, ((gi + 1) * size).min(n));
            for start in (first..end).step_by(chunk) {
                let images = start..(start + chunk).min(end);
                let gx_c = gx
                    .as_deref_mut()
                    .map(|v| &mut v[(start - first) * x_len..][..images.len() * x_len]);
                f(images, part, gx_c);
            }
        };
        use rayon::prelude::*;
        match (need_x, self.parallel && groups > 1) {
            (true, true) => partials
                .par_chunks_mut(w_len)
                .zip(gx.par_chunks_mut(size * x_len))
                .enumerate()
                .for_each(|(gi, (p, x))| group(gi, p, Some(x))),
            (true, false) => partials
                .chunks_mut(w_len)
                .zip(gx.chunks_mut(size * x_len))
                .enumerate()
                .for_each(|(gi, (p, x))| group(gi, p, Some(x))),
            (false, true) => partials
                .par_chunks_mut(w_len)
                .enumerate()
                .for_each(|(gi, p)| group(gi, p, None)),
            (false, false) => partials
                .chunks_mut(w_len)
                .enumerate()
                .for_each(|(gi, p)| group(gi, p, None)),
        }
        let mut gw = partials[..w_len].to_vec();
        for p in partials.chunks(w_len).skip(1) {
            gw.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        (gw, need_x.then_some(gx))
    }

    fn map1(&self, x: &Array2<f32>, f: impl Fn(f32) -> f32 + Sync + Send) -> Array2<f32> {
        let mut out = standard(x);
        simd::map_inplace(self.parallel, slice_mut(&mut out), f);
        out
    }

    fn map2(
        &self,
        x: &Array2<f32>,
        y: &Array2<f32>,
        f: impl Fn(f32, f32) -> f32 + Sync + Send,
    ) -> Array2<f32> {
        let mut out = standard(x);
        let y = y.as_standard_layout();
        simd::zip_inplace(self.parallel, slice_mut(&mut out), slice(&y), f);
        out
    }
}

/// Scratch buffers a convolution's kernels take per group of images: its
/// phase planes, patches and wide products.
const SCRATCH_BUFFERS: usize = 4;

thread_local! {
    /// Scratch buffers per thread for a convolution's work on a group of
    /// images, reused across groups and steps.
    static SCRATCH: std::cell::RefCell<[Vec<f32>; SCRATCH_BUFFERS]> =
        const { std::cell::RefCell::new([const { Vec::new() }; SCRATCH_BUFFERS]) };
}

/// Runs `f` with this thread's scratch buffers, `lens[i]` values long.
/// Their contents are stale: `f` writes every value before reading it, and
/// does not call into the pool (which could run another image's `f` on this
/// thread).
fn with_scratch<R>(
    lens: [usize; SCRATCH_BUFFERS],
    f: impl FnOnce([&mut [f32]; SCRATCH_BUFFERS]) -> R,
) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let mut bufs = s.iter_mut().zip(lens);
        f(std::array::from_fn(|_| {
            let (buf, len) = bufs.next().expect("one length per buffer");
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            &mut buf[..len]
        }))
    })
}

/// A standard-layout (row-major, contiguous) copy of `x`.
fn standard(x: &Array2<f32>) -> Array2<f32> {
    x.as_standard_layout().into_owned()
}

/// The elements of a standard-layout array.
fn slice(x: &ndarray::ArrayRef2<f32>) -> &[f32] {
    x.as_slice().expect("standard layout")
}

/// The elements of an array, made standard-layout first if need be.
fn slice_mut(x: &mut Array2<f32>) -> &mut [f32] {
    if !x.is_standard_layout() {
        *x = standard(x);
    }
    x.as_slice_mut().expect("standard layout")
}

/// Runs `f(row_index, row)` over the `cols`-long rows of `data`, on rayon's
/// pool when `parallel`.
fn for_rows(parallel: bool, data: &mut [f32], cols: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if parallel {
        use rayon::prelude::*;
        data.par_chunks_mut(cols)
            .enumerate()
            .for_each(|(i, r)| f(i, r));
    } else {
        data.chunks_mut(cols).enumerate().for_each(|(i, r)| f(i, r));
    }
}

/// `Σ f(row, plane)` over the rows of `x` (`cols` wide) and plane `c` of
/// `l` values, in `f64`, rows in order.
fn plane_sum(x: &[f32], cols: usize, c: usize, l: usize, f: impl Fn(usize, &[f32]) -> f64) -> f64 {
    x.chunks(cols)
        .enumerate()
        .map(|(n, row)| f(n, &row[c * l..(c + 1) * l]))
        .sum()
}

/// Per-channel values computed independently (on rayon's pool when `parallel`).
fn per_channel<T: Send>(
    parallel: bool,
    channels: usize,
    f: impl Fn(usize) -> T + Sync + Send,
) -> Vec<T> {
    if parallel {
        use rayon::prelude::*;
        (0..channels).into_par_iter().map(f).collect()
    } else {
        (0..channels).map(f).collect()
    }
}

/// The `cols × rows` transpose of the row-major `rows × cols` matrix `v`.
fn transposed(v: &[f32], rows: usize, cols: usize) -> Array2<f32> {
    ArrayView2::from_shape((rows, cols), v)
        .expect("rows×cols")
        .t()
        .as_standard_layout()
        .into_owned()
}

fn row_vec(v: impl IntoIterator<Item = f32>) -> Array2<f32> {
    let v: Vec<f32> = v.into_iter().collect();
    Array2::from_shape_vec((1, v.len()), v).expect("1×n")
}

fn shape_of(t: &Array2<f32>) -> Shape {
    Shape::new(t.nrows(), t.ncols())
}

/// `op(a) · op(b)`, plus `bias` on every row when given, into a new
/// standard-layout array.
#[allow(unsafe_code)]
fn gemm(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    bias: Option<&[f32]>,
    parallel: bool,
) -> Array2<f32> {
    let (m, n) = (a.nrows(), b.ncols());
    let c = match bias {
        Some(bias) => {
            debug_assert_eq!(bias.len(), n);
            let mut c = bias.repeat(m);
            gemm_into(a, b, &mut c, true, parallel);
            c
        }
        None => {
            let mut c: Vec<f32> = Vec::with_capacity(m * n);
            // SAFETY: without accumulation gemm writes every one of the m×n
            // elements without reading any, so the capacity may start
            // uninitialised; it is initialised when `set_len` runs.
            unsafe {
                gemm_raw(a, b, c.as_mut_ptr(), false, parallel);
                c.set_len(m * n);
            }
            c
        }
    };
    Array2::from_shape_vec((m, n), c).expect("m×n values")
}

/// `c ← a · b` (or `c ← c + a · b` when `accumulate`) into the row-major
/// `m × n` slice `c`; `a` and `b` may have any strides.
#[allow(unsafe_code)]
fn gemm_into(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    c: &mut [f32],
    accumulate: bool,
    parallel: bool,
) {
    assert_eq!(c.len(), a.nrows() * b.ncols(), "output size");
    // SAFETY: `c` is an exclusive, initialised slice of m×n values.
    unsafe { gemm_raw(a, b, c.as_mut_ptr(), accumulate, parallel) }
}

/// The one call into `gemm`.
///
/// # Safety
/// `c` must point to `a.nrows() × b.ncols()` writable values, row-major,
/// aliasing neither operand, initialised when `accumulate`.
#[allow(unsafe_code)]
unsafe fn gemm_raw(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    c: *mut f32,
    accumulate: bool,
    parallel: bool,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert_eq!(b.nrows(), k, "inner dimensions");
    let [a_rs, a_cs] = [a.strides()[0], a.strides()[1]];
    let [b_rs, b_cs] = [b.strides()[0], b.strides()[1]];
    let par = if parallel && m * n * k >= PAR_MIN_FLOPS {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `a` (m×k) and `b` (k×n) are live views whose elements are all
    // reachable through their pointers and strides; the caller vouches for
    // `c`. gemm writes `c = a·b`, or `c = 1·c + a·b` when `accumulate`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            if accumulate { 1.0f32 } else { 0.0f32 },
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
}

#[inline]
fn stable_sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[inline]
pub(crate) fn act_forward(act: Activation, x: f32) -> f32 {
    match act {
        Activation::Relu => {
            if x.is_nan() {
                x
            } else {
                x.max(0.0)
            }
        }
        Activation::LeakyRelu { slope } => {
            if x > 0.0 {
                x
            } else {
                slope * x
            }
        }
        Activation::Elu { alpha } => {
            if x > 0.0 {
                x
            } else {
                alpha * x.exp_m1()
            }
        }
        Activation::Tanh => x.tanh(),
        Activation::Sigmoid => stable_sigmoid(x),
        Activation::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
    }
}

#[inline]
pub(crate) fn act_backward(act: Activation, x: f32, y: f32, g: f32) -> f32 {
    match act {
        Activation::Relu => {
            if x > 0.0 {
                g
            } else {
                0.0
            }
        }
        Activation::LeakyRelu { slope } => {
            if x > 0.0 {
                g
            } else {
                slope * g
            }
        }
        Activation::Elu { alpha } => {
            if x > 0.0 {
                g
            } else {
                g * (y + alpha)
            }
        }
        Activation::Tanh => g * (1.0 - y * y),
        Activation::Sigmoid => g * y * (1.0 - y),
        Activation::Softplus => g * stable_sigmoid(x),
    }
}

impl Backend for Cpu {
    type Tensor = Array2<f32>;

    fn name(&self) -> String {
        if self.parallel {
            format!("cpu ({} threads)", rayon::current_num_threads())
        } else {
            "cpu (sequential)".into()
        }
    }

    fn shape(&self, t: &Array2<f32>) -> Shape {
        shape_of(t)
    }

    fn upload(&self, data: &[f32], shape: Shape) -> Result<Array2<f32>> {
        checks::upload("upload", data.len(), shape)?;
        Array2::from_shape_vec((shape.rows, shape.cols), data.to_vec()).map_err(|e| {
            TensorError::InvalidArgument {
                op: "upload",
                detail: e.to_string(),
            }
        })
    }

    fn download(&self, t: &Array2<f32>) -> Result<Vec<f32>> {
        Ok(t.iter().copied().collect())
    }

    fn zeros(&self, shape: Shape) -> Result<Array2<f32>> {
        checks::upload("zeros", shape.len(), shape)?;
        Ok(Array2::zeros((shape.rows, shape.cols)))
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        if self.parallel && rayon::current_thread_index().is_none() {
            // `scope` runs its closure on a worker of the global pool when
            // called from outside it, and waits for it.
            rayon::scope(|_| f())
        } else {
            f()
        }
    }

    fn reshape(&self, t: Array2<f32>, shape: Shape) -> Result<Array2<f32>> {
        checks::reshape(shape_of(&t), shape)?;
        let data = if t.is_standard_layout() {
            t.into_raw_vec_and_offset().0
        } else {
            t.iter().copied().collect()
        };
        Ok(Array2::from_shape_vec((shape.rows, shape.cols), data).expect("checked length"))
    }

    fn im2col(&self, x: &Array2<f32>, g: &Conv2dGeometry) -> Result<Array2<f32>> {
        checks::images("im2col", shape_of(x), g)?;
        let (n, l, k) = (x.nrows(), g.positions(), g.patch_len());
        let x = x.as_standard_layout();
        let mut out = vec![0.0f32; n * l * k];
        self.per_images(slice(&x), g.input_len(), &mut out, l * k, 1, |img, o| {
            conv::im2col_image(g, img, o)
        });
        Ok(Array2::from_shape_vec((n * l, k), out).expect("n·l×k values"))
    }

    fn col2im(&self, cols: &Array2<f32>, g: &Conv2dGeometry) -> Result<Array2<f32>> {
        let n = checks::patches("col2im", shape_of(cols), g)?;
        let (l, k) = (g.positions(), g.patch_len());
        let cols = cols.as_standard_layout();
        let mut out = vec![0.0f32; n * g.input_len()];
        self.per_images(slice(&cols), l * k, &mut out, g.input_len(), 1, |c, o| {
            conv::col2im_image(g, c, o)
        });
        Ok(Array2::from_shape_vec((n, g.input_len()), out).expect("n×input values"))
    }

    fn batch_transpose(&self, x: &Array2<f32>, p: usize, q: usize) -> Result<Array2<f32>> {
        checks::blocks("batch_transpose", shape_of(x), p, q)?;
        let x = x.as_standard_layout();
        let mut out = vec![0.0f32; x.len()];
        self.per_images(slice(&x), p * q, &mut out, p * q, 1, |a, o| {
            // Tiles of 16 keep both sides in cache.
            const T: usize = 16;
            for i0 in (0..p).step_by(T) {
                for j0 in (0..q).step_by(T) {
                    for i in i0..(i0 + T).min(p) {
                        for j in j0..(j0 + T).min(q) {
                            o[j * p + i] = a[i * q + j];
                        }
                    }
                }
            }
        });
        Ok(Array2::from_shape_vec(x.raw_dim(), out).expect("same shape"))
    }

    // Convolutions in small groups of images (`Wide::group`: one image
    // when its output is large, up to 16 when it is small): a group's
    // patches stay small (in cache, no large short-lived buffers), its
    // products run on one thread over the group's images side by side and
    // the groups share the pool; weight gradients are summed over fixed
    // groups of images in order, so results do not depend on threads. The
    // patches are built in `conv::Wide`'s layout (one contiguous copy per
    // kernel tap), and products run over its `oh·wq` wide positions.

    fn conv2d(
        &self,
        x: &Array2<f32>,
        w: &Array2<f32>,
        b: Option<&Array2<f32>>,
        g: &Conv2dGeometry,
    ) -> Result<Array2<f32>> {
        checks::conv("conv2d", shape_of(x), shape_of(w), b.map(shape_of), g)?;
        let (wd, k, o) = (Wide::new(g), g.patch_len(), g.out_channels);
        let (width, in_len, out_len) = (wd.width(), g.input_len(), g.output_len());
        let (x, w) = (x.as_standard_layout(), w.as_standard_layout());
        let bias = b.map(|b| b.iter().copied().collect::<Vec<f32>>());
        let mut out = vec![0.0f32; x.nrows() * out_len];
        self.per_images(
            slice(&x),
            in_len,
            &mut out,
            out_len,
            wd.group(),
            |imgs, ys| {
                let stride = imgs.len() / in_len * width;
                let lens = [wd.phases_len(), k * stride, o * stride, 0];
                with_scratch(lens, |[phases, cols, y_wide, _]| {
                    for (j, img) in imgs.chunks_exact(in_len).enumerate() {
                        wd.split(img, phases);
                        wd.patches(phases, &mut cols[j * width..], stride);
                    }
                    let cols = ArrayView2::from_shape((k, stride), &*cols).expect("k×stride");
                    // y (out × stride) = w (out × k) · cols (k × stride).
                    gemm_into(w.view(), cols, y_wide, false, false);
                    for (j, y) in ys.chunks_exact_mut(out_len).enumerate() {
                        wd.narrow(&y_wide[j * width..], stride, o, y, bias.as_deref());
                    }
                });
            },
        );
        Ok(Array2::from_shape_vec((x.nrows(), out_len), out).expect("n×output"))
    }

    fn conv2d_backward(
        &self,
        x: &Array2<f32>,
        w: &Array2<f32>,
        has_bias: bool,
        grad_y: &Array2<f32>,
        g: &Conv2dGeometry,
        need_x: bool,
    ) -> Result<ConvGrads<Array2<f32>>> {
        let op = "conv2d_backward";
        checks::conv(op, shape_of(x), shape_of(w), None, g)?;
        checks::same(op, shape_of(grad_y), Shape::new(x.nrows(), g.output_len()))?;
        let (wd, k, o) = (Wide::new(g), g.patch_len(), g.out_channels);
        let (width, in_len, out_len) = (wd.width(), g.input_len(), g.output_len());
        let (x, w, gy) = (
            x.as_standard_layout(),
            w.as_standard_layout(),
            grad_y.as_standard_layout(),
        );
        let (x, gy) = (slice(&x), slice(&gy));
        let n = x.len() / in_len;
        let (gw, gx) = self.per_group(n, wd.group(), o * k, in_len, need_x, |imgs, part, gx| {
            let stride = imgs.len() * width;
            let gcols_len = if gx.is_some() { k * stride } else { 0 };
            let lens = [wd.phases_len(), k * stride, o * stride, gcols_len];
            with_scratch(lens, |[phases, cols, gy_wide, gcols]| {
                for (j, i) in imgs.enumerate() {
                    wd.split(&x[i * in_len..][..in_len], phases);
                    wd.patches(phases, &mut cols[j * width..], stride);
                    let gy_i = &gy[i * out_len..][..out_len];
                    wd.widen(gy_i, o, &mut gy_wide[j * width..], stride);
                }
                let cols = ArrayView2::from_shape((k, stride), &*cols).expect("k×stride");
                let gy_wide = ArrayView2::from_shape((o, stride), &*gy_wide).expect("o×stride");
                // ∂wᵀ (k × out) += cols (k × stride) · ∂yᵀ (stride × out);
                // the spare columns of ∂y are zero. (gemm ran this
                // orientation 1.6× faster than ∂y · colsᵀ on conv64's
                // second layer.)
                gemm_into(cols, gy_wide.t(), part, true, false);
                if let Some(gx) = gx {
                    // ∂cols (k × stride) = wᵀ · ∂y, then back onto the pixels.
                    gemm_into(w.t(), gy_wide, gcols, false, false);
                    for (j, gx) in gx.chunks_exact_mut(in_len).enumerate() {
                        wd.scatter(&gcols[j * width..], stride, phases);
                        wd.merge(phases, gx);
                    }
                }
            });
        });
        Ok(ConvGrads {
            x: gx.map(|v| Array2::from_shape_vec((n, in_len), v).expect("n×input")),
            w: transposed(&gw, k, o),
            b: if has_bias {
                Some(self.sum_channels(grad_y, o)?)
            } else {
                None
            },
        })
    }

    fn conv_transpose2d(
        &self,
        x: &Array2<f32>,
        w: &Array2<f32>,
        b: Option<&Array2<f32>>,
        g: &ConvTranspose2dGeometry,
    ) -> Result<Array2<f32>> {
        let conv = checks::conv_transpose(
            "conv_transpose2d",
            shape_of(x),
            shape_of(w),
            b.map(shape_of),
            g,
        )?;
        // The transposed convolution is the input gradient of `conv`.
        let (wd, ck, cin) = (Wide::new(&conv), conv.patch_len(), g.in_channels);
        let (width, in_len, out_len) = (wd.width(), g.input_len(), g.output_len());
        let (x, w) = (x.as_standard_layout(), w.as_standard_layout());
        let bias = b.map(|b| b.iter().copied().collect::<Vec<f32>>());
        let plane = conv.input[0] * conv.input[1];
        let mut out = vec![0.0f32; x.nrows() * out_len];
        self.per_images(
            slice(&x),
            in_len,
            &mut out,
            out_len,
            wd.group(),
            |imgs, ys| {
                let stride = imgs.len() / in_len * width;
                let lens = [wd.phases_len(), ck * stride, cin * stride, 0];
                with_scratch(lens, |[phases, cols, x_wide, _]| {
                    for (j, img) in imgs.chunks_exact(in_len).enumerate() {
                        wd.widen(img, cin, &mut x_wide[j * width..], stride);
                    }
                    let x_wide =
                        ArrayView2::from_shape((cin, stride), &*x_wide).expect("in×stride");
                    // cols (out·kh·kw × stride) = wᵀ · x, summed onto the output.
                    gemm_into(w.t(), x_wide, cols, false, false);
                    for (j, y) in ys.chunks_exact_mut(out_len).enumerate() {
                        wd.scatter(&cols[j * width..], stride, phases);
                        wd.merge(phases, y);
                        if let Some(bias) = &bias {
                            for (p, &bv) in y.chunks_mut(plane).zip(bias) {
                                p.iter_mut().for_each(|v| *v += bv);
                            }
                        }
                    }
                });
            },
        );
        Ok(Array2::from_shape_vec((x.nrows(), out_len), out).expect("n×output"))
    }

    fn conv_transpose2d_backward(
        &self,
        x: &Array2<f32>,
        w: &Array2<f32>,
        has_bias: bool,
        grad_y: &Array2<f32>,
        g: &ConvTranspose2dGeometry,
        need_x: bool,
    ) -> Result<ConvGrads<Array2<f32>>> {
        let op = "conv_transpose2d_backward";
        let conv = checks::conv_transpose(op, shape_of(x), shape_of(w), None, g)?;
        checks::same(op, shape_of(grad_y), Shape::new(x.nrows(), g.output_len()))?;
        let (wd, ck, cin) = (Wide::new(&conv), conv.patch_len(), g.in_channels);
        let width = wd.width();
        let (x, w, gy) = (
            x.as_standard_layout(),
            w.as_standard_layout(),
            grad_y.as_standard_layout(),
        );
        let (x, gy) = (slice(&x), slice(&gy));
        let (in_len, out_len) = (g.input_len(), g.output_len());
        let n = x.len() / in_len;
        let (gw, gx) = self.per_group(n, wd.group(), cin * ck, in_len, need_x, |imgs, part, gx| {
            let stride = imgs.len() * width;
            let gx_len = if gx.is_some() { cin * stride } else { 0 };
            let lens = [wd.phases_len(), ck * stride, cin * stride, gx_len];
            with_scratch(lens, |[phases, gcols, x_wide, gx_wide]| {
                for (j, i) in imgs.enumerate() {
                    wd.split(&gy[i * out_len..][..out_len], phases);
                    wd.patches(phases, &mut gcols[j * width..], stride);
                    let x_i = &x[i * in_len..][..in_len];
                    wd.widen(x_i, cin, &mut x_wide[j * width..], stride);
                }
                let gcols = ArrayView2::from_shape((ck, stride), &*gcols).expect("k×stride");
                let x_wide = ArrayView2::from_shape((cin, stride), &*x_wide).expect("in×stride");
                // ∂wᵀ (out·kh·kw × in) += ∂cols (· × stride) · xᵀ (stride ×
                // in); the spare columns of x are zero.
                gemm_into(gcols, x_wide.t(), part, true, false);
                if let Some(gx) = gx {
                    // ∂x (in × stride) = w · ∂cols, the spare columns dropped.
                    gemm_into(w.view(), gcols, gx_wide, false, false);
                    for (j, gx) in gx.chunks_exact_mut(in_len).enumerate() {
                        wd.narrow(&gx_wide[j * width..], stride, cin, gx, None);
                    }
                }
            });
        });
        Ok(ConvGrads {
            x: gx.map(|v| Array2::from_shape_vec((n, in_len), v).expect("n×input")),
            w: transposed(&gw, ck, cin),
            b: if has_bias {
                Some(self.sum_channels(grad_y, g.out_channels)?)
            } else {
                None
            },
        })
    }

    fn add_channel_bias(&self, x: &Array2<f32>, bias: &Array2<f32>) -> Result<Array2<f32>> {
        let plane = checks::channel_bias("add_channel_bias", shape_of(x), shape_of(bias))?;
        let bias = bias.as_standard_layout();
        let bias = slice(&bias);
        let mut out = standard(x);
        let cols = out.ncols();
        let data = slice_mut(&mut out);
        let add = |row: &mut [f32]| {
            for (plane, &b) in row.chunks_mut(plane).zip(bias) {
                plane.iter_mut().for_each(|v| *v += b);
            }
        };
        if self.par(data.len()) {
            use rayon::prelude::*;
            data.par_chunks_mut(cols).for_each(add);
        } else {
            data.chunks_mut(cols).for_each(add);
        }
        Ok(out)
    }

    fn matmul(
        &self,
        a: &Array2<f32>,
        ta: Transpose,
        b: &Array2<f32>,
        tb: Transpose,
    ) -> Result<Array2<f32>> {
        checks::nonempty("matmul", shape_of(a))?;
        checks::nonempty("matmul", shape_of(b))?;
        checks::matmul(shape_of(a), ta, shape_of(b), tb)?;
        let av = if ta == Transpose::Yes {
            a.t()
        } else {
            a.view()
        };
        let bv = if tb == Transpose::Yes {
            b.t()
        } else {
            b.view()
        };
        Ok(gemm(av, bv, None, self.parallel))
    }

    fn linear(&self, x: &Array2<f32>, w: &Array2<f32>, b: &Array2<f32>) -> Result<Array2<f32>> {
        checks::nonempty("linear", shape_of(x))?;
        checks::nonempty("linear", shape_of(w))?;
        checks::matmul(shape_of(x), Transpose::No, shape_of(w), Transpose::Yes)?;
        let out = Shape::new(x.nrows(), w.nrows());
        checks::row_vector("linear", out, shape_of(b))?;
        let b = b.as_standard_layout();
        Ok(gemm(x.view(), w.t(), Some(slice(&b)), self.parallel))
    }

    fn add_row(&self, x: &Array2<f32>, bias: &Array2<f32>) -> Result<Array2<f32>> {
        checks::row_vector("add_row", shape_of(x), shape_of(bias))?;
        Ok(x + bias)
    }

    fn sum_rows(&self, x: &Array2<f32>) -> Result<Array2<f32>> {
        // Row after row in order: deterministic and vectorised along columns.
        let mut acc = vec![0f32; x.ncols()];
        for row in x.rows() {
            for (a, &v) in acc.iter_mut().zip(row.iter()) {
                *a += v;
            }
        }
        Ok(Array2::from_shape_vec((1, x.ncols()), acc).expect("1×cols"))
    }

    fn sum_cols(&self, x: &Array2<f32>) -> Result<Array2<f32>> {
        let mut out = Array2::<f32>::zeros((x.nrows(), 1));
        let z = Zip::from(out.rows_mut()).and(x.rows());
        if self.par(x.len()) {
            z.par_for_each(|mut o, r| o[0] = r.sum());
        } else {
            z.for_each(|mut o, r| o[0] = r.sum());
        }
        Ok(out)
    }

    fn activation(&self, act: Activation, x: &Array2<f32>) -> Result<Array2<f32>> {
        let mut out = standard(x);
        self.activation_inplace(act, &mut out)?;
        Ok(out)
    }

    fn activation_inplace(&self, act: Activation, x: &mut Array2<f32>) -> Result<()> {
        let data = slice_mut(x);
        match act {
            // The common case gets its own loop, free of the dispatch.
            Activation::Relu => {
                simd::map_inplace(self.parallel, data, |v| if v < 0.0 { 0.0 } else { v })
            }
            _ => simd::map_inplace(self.parallel, data, move |v| act_forward(act, v)),
        }
        Ok(())
    }

    fn activation_backward(
        &self,
        act: Activation,
        x: &Array2<f32>,
        y: &Array2<f32>,
        grad_y: &Array2<f32>,
    ) -> Result<Array2<f32>> {
        let mut out = standard(grad_y);
        self.activation_backward_inplace(act, x, y, &mut out)?;
        Ok(out)
    }

    fn activation_backward_inplace(
        &self,
        act: Activation,
        x: &Array2<f32>,
        y: &Array2<f32>,
        grad: &mut Array2<f32>,
    ) -> Result<()> {
        checks::same("activation_backward", shape_of(x), shape_of(y))?;
        checks::same("activation_backward", shape_of(x), shape_of(grad))?;
        let (x, y) = (x.as_standard_layout(), y.as_standard_layout());
        let g = slice_mut(grad);
        match act {
            Activation::Relu => {
                simd::zip_inplace(
                    self.parallel,
                    g,
                    slice(&x),
                    |g, x| {
                        if x > 0.0 { g } else { 0.0 }
                    },
                )
            }
            _ => simd::zip3_inplace(self.parallel, g, slice(&x), slice(&y), move |g, x, y| {
                act_backward(act, x, y, g)
            }),
        }
        Ok(())
    }

    fn bce_with_logits_elementwise(
        &self,
        logits: &Array2<f32>,
        targets: &Array2<f32>,
    ) -> Result<(Array2<f32>, Array2<f32>)> {
        checks::same("bce_with_logits", shape_of(logits), shape_of(targets))?;
        let (l, t) = (logits.as_standard_layout(), targets.as_standard_layout());
        let n = l.len();
        let mut loss = vec![0.0f32; n];
        let mut grad = vec![0.0f32; n];
        simd::bce_with_logits(self.parallel, slice(&l), slice(&t), &mut loss, &mut grad);
        let dim = logits.raw_dim();
        Ok((
            Array2::from_shape_vec(dim, loss).expect("same shape"),
            Array2::from_shape_vec(dim, grad).expect("same shape"),
        ))
    }

    fn gaussian_nll_elementwise(
        &self,
        x: &Array2<f32>,
        mean: &Array2<f32>,
        logvar: &Array2<f32>,
    ) -> Result<(Array2<f32>, Array2<f32>, Array2<f32>)> {
        let op = "gaussian_nll";
        checks::same(op, shape_of(x), shape_of(mean))?;
        checks::logvar_like(op, shape_of(mean), shape_of(logvar))?;
        let lv = logvar
            .broadcast(x.raw_dim())
            .expect("checked: logvar broadcasts to mean");
        let half_log_2pi = 0.5 * (std::f32::consts::TAU).ln();
        let mut loss = Array2::<f32>::zeros(x.raw_dim());
        let mut gm = Array2::<f32>::zeros(x.raw_dim());
        let mut glv = Array2::<f32>::zeros(x.raw_dim());
        let f = |l: &mut f32, g1: &mut f32, g2: &mut f32, &xv: &f32, &m: &f32, &v: &f32| {
            let inv = (-v).exp();
            let d = xv - m;
            let q = d * d * inv;
            *l = half_log_2pi + 0.5 * (v + q);
            *g1 = -d * inv;
            *g2 = 0.5 * (1.0 - q);
        };
        let z = Zip::from(&mut loss)
            .and(&mut gm)
            .and(&mut glv)
            .and(x)
            .and(mean)
            .and(&lv);
        if self.par(x.len()) {
            z.par_for_each(f)
        } else {
            z.for_each(f)
        }
        Ok((loss, gm, glv))
    }

    fn kl_normal_elementwise(
        &self,
        mu: &Array2<f32>,
        logvar: &Array2<f32>,
    ) -> Result<(Array2<f32>, Array2<f32>, Array2<f32>)> {
        checks::same("kl_normal", shape_of(mu), shape_of(logvar))?;
        let kl = self.map2(mu, logvar, |m, v| 0.5 * (m * m + v.exp_m1() - v));
        let glv = self.map1(logvar, |v| 0.5 * v.exp_m1());
        Ok((kl, mu.clone(), glv))
    }

    fn randn(&self, shape: Shape, key: u64, stream: u64) -> Result<Array2<f32>> {
        let mut out = self.zeros(shape)?;
        let data = out.as_slice_mut().expect("standard layout");
        const CHUNK: usize = 4096;
        if self.par(data.len()) {
            use rayon::prelude::*;
            data.par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(c, ch)| philox::fill_normal(key, stream, (c * CHUNK) as u64, ch));
        } else {
            philox::fill_normal(key, stream, 0, data);
        }
        Ok(out)
    }

    fn reparameterize(
        &self,
        mu: &Array2<f32>,
        logvar: &Array2<f32>,
        key: u64,
        stream: u64,
    ) -> Result<(Array2<f32>, Array2<f32>)> {
        checks::same("reparameterize", shape_of(mu), shape_of(logvar))?;
        let eps = self.randn(shape_of(mu), key, stream)?;
        let mut z = Array2::<f32>::zeros(mu.raw_dim());
        let f = |o: &mut f32, &m: &f32, &v: &f32, &e: &f32| *o = m + (0.5 * v).exp() * e;
        let zz = Zip::from(&mut z).and(mu).and(logvar).and(&eps);
        if self.par(mu.len()) {
            zz.par_for_each(f)
        } else {
            zz.for_each(f)
        }
        Ok((z, eps))
    }

    fn adam_step(
        &self,
        param: &mut Array2<f32>,
        grad: &Array2<f32>,
        m: &mut Array2<f32>,
        v: &mut Array2<f32>,
        hp: &AdamStep,
    ) -> Result<()> {
        let op = "adam_step";
        checks::same(op, shape_of(param), shape_of(grad))?;
        checks::same(op, shape_of(param), shape_of(m))?;
        checks::same(op, shape_of(param), shape_of(v))?;
        let (bc1, bc2) = hp.validate()?;
        let consts = simd::AdamConsts {
            b1: hp.beta1,
            b2: hp.beta2,
            bc1,
            bc2,
            lr: hp.lr,
            eps: hp.eps,
            decay: 1.0 - hp.lr * hp.weight_decay,
        };
        let g = grad.as_standard_layout();
        simd::adam(
            self.parallel,
            slice_mut(param),
            slice_mut(m),
            slice_mut(v),
            slice(&g),
            consts,
        );
        Ok(())
    }

    fn axpy(&self, alpha: f32, x: &Array2<f32>, y: &mut Array2<f32>) -> Result<()> {
        checks::same("axpy", shape_of(x), shape_of(y))?;
        checks::finite_scalar("axpy", "alpha", alpha)?;
        let x = x.as_standard_layout();
        simd::zip_inplace(self.parallel, slice_mut(y), slice(&x), |o, a| o + alpha * a);
        Ok(())
    }

    fn scale(&self, alpha: f32, x: &Array2<f32>) -> Result<Array2<f32>> {
        checks::finite_scalar("scale", "alpha", alpha)?;
        Ok(self.map1(x, move |v| alpha * v))
    }

    fn scale_inplace(&self, alpha: f32, x: &mut Array2<f32>) -> Result<()> {
        checks::finite_scalar("scale", "alpha", alpha)?;
        simd::map_inplace(self.parallel, slice_mut(x), move |v| alpha * v);
        Ok(())
    }

    fn unary(&self, op: Unary, x: &Array2<f32>) -> Result<Array2<f32>> {
        Ok(match op {
            Unary::Exp => self.map1(x, f32::exp),
            Unary::Log => self.map1(x, f32::ln),
        })
    }

    fn unary_backward(
        &self,
        op: Unary,
        x: &Array2<f32>,
        y: &Array2<f32>,
        grad_y: &Array2<f32>,
    ) -> Result<Array2<f32>> {
        checks::same("unary_backward", shape_of(x), shape_of(y))?;
        checks::same("unary_backward", shape_of(x), shape_of(grad_y))?;
        Ok(match op {
            Unary::Exp => self.map2(grad_y, y, |g, y| g * y),
            Unary::Log => self.map2(grad_y, x, |g, x| g / x),
        })
    }

    fn logsumexp_rows(&self, x: &Array2<f32>) -> Result<Array2<f32>> {
        checks::nonempty("logsumexp_rows", shape_of(x))?;
        let x = x.as_standard_layout();
        let (xs, cols) = (slice(&x), x.ncols());
        let mut out = vec![0.0f32; x.nrows()];
        for_rows(self.par(xs.len()), &mut out, 1, |i, o| {
            o[0] = logsumexp(&xs[i * cols..(i + 1) * cols]);
        });
        Ok(Array2::from_shape_vec((x.nrows(), 1), out).expect("rows×1"))
    }

    fn logsumexp_backward(
        &self,
        x: &Array2<f32>,
        lse: &Array2<f32>,
        grad: &Array2<f32>,
    ) -> Result<Array2<f32>> {
        let op = "logsumexp_backward";
        checks::per_row(op, shape_of(x), shape_of(lse), "lse")?;
        checks::per_row(op, shape_of(x), shape_of(grad), "∂L/∂lse")?;
        let mut out = standard(x);
        let cols = out.ncols();
        let (lse, grad) = (lse.as_standard_layout(), grad.as_standard_layout());
        let (lse, grad) = (slice(&lse), slice(&grad));
        let par = self.par(out.len());
        for_rows(par, slice_mut(&mut out), cols, |i, row| {
            let (m, g) = (lse[i], grad[i]);
            row.iter_mut().for_each(|v| *v = g * (*v - m).exp());
        });
        Ok(out)
    }

    fn channel_moments(
        &self,
        x: &Array2<f32>,
        channels: usize,
    ) -> Result<(Array2<f32>, Array2<f32>)> {
        let l = checks::planes("channel_moments", shape_of(x), channels)?;
        let x = x.as_standard_layout();
        let (xs, cols) = (slice(&x), x.ncols());
        let count = (x.nrows() * l) as f64;
        let par = self.par(xs.len());
        // Two passes in f64 (as PyTorch's CPU kernel accumulates in double).
        let mean = per_channel(par, channels, |c| {
            plane_sum(xs, cols, c, l, |_, p| p.iter().map(|&v| f64::from(v)).sum()) / count
        });
        let var = per_channel(par, channels, |c| {
            let m = mean[c];
            plane_sum(xs, cols, c, l, |_, p| {
                p.iter().map(|&v| (f64::from(v) - m).powi(2)).sum()
            }) / count
        });
        Ok((
            row_vec(mean.iter().map(|&v| v as f32)),
            row_vec(var.iter().map(|&v| v as f32)),
        ))
    }

    fn batch_norm(
        &self,
        x: &Array2<f32>,
        mean: &Array2<f32>,
        var: &Array2<f32>,
        gamma: Option<&Array2<f32>>,
        beta: Option<&Array2<f32>>,
        eps: f32,
    ) -> Result<Array2<f32>> {
        let l = checks::batch_norm(
            "batch_norm",
            shape_of(x),
            shape_of(mean),
            shape_of(var),
            [gamma.map(shape_of), beta.map(shape_of)],
            eps,
        )?;
        let (scale, shift) = norm_affine(mean, var, gamma, beta, eps);
        let mut out = standard(x);
        let cols = out.ncols();
        let par = self.par(out.len());
        for_rows(par, slice_mut(&mut out), cols, |_, row| {
            for ((p, &a), &b) in row.chunks_mut(l).zip(&scale).zip(&shift) {
                p.iter_mut().for_each(|v| *v = *v * a + b);
            }
        });
        Ok(out)
    }

    fn batch_norm_backward(
        &self,
        x: &Array2<f32>,
        mean: &Array2<f32>,
        var: &Array2<f32>,
        gamma: Option<&Array2<f32>>,
        grad_y: &Array2<f32>,
        eps: f32,
        stats: NormStats,
    ) -> Result<BatchNormGrads<Array2<f32>>> {
        let op = "batch_norm_backward";
        let l = checks::batch_norm(
            op,
            shape_of(x),
            shape_of(mean),
            shape_of(var),
            [gamma.map(shape_of), None],
            eps,
        )?;
        checks::same(op, shape_of(x), shape_of(grad_y))?;
        let channels = mean.ncols();
        let (x, gy) = (x.as_standard_layout(), grad_y.as_standard_layout());
        let (xs, gs, cols) = (slice(&x), slice(&gy), x.ncols());
        let m: Vec<f64> = mean.iter().map(|&v| f64::from(v)).collect();
        let inv: Vec<f64> = var
            .iter()
            .map(|&v| 1.0 / (f64::from(v) + f64::from(eps)).sqrt())
            .collect();
        let g: Vec<f64> = match gamma {
            Some(g) => g.iter().map(|&v| f64::from(v)).collect(),
            None => vec![1.0; channels],
        };
        let par = self.par(xs.len());
        // Σ ∂y and Σ ∂y ⊙ x̂ of each channel, in one pass over its planes.
        let sums: Vec<(f64, f64)> = per_channel(par, channels, |c| {
            let (mut sb, mut sg) = (0.0f64, 0.0f64);
            for (xr, gr) in xs.chunks(cols).zip(gs.chunks(cols)) {
                let span = c * l..(c + 1) * l;
                for (&d, &v) in gr[span.clone()].iter().zip(&xr[span]) {
                    sb += f64::from(d);
                    sg += f64::from(d) * (f64::from(v) - m[c]) * inv[c];
                }
            }
            (sb, sg)
        });
        let (dbeta, dgamma): (Vec<f64>, Vec<f64>) = sums.into_iter().unzip();
        let count = (x.nrows() * l) as f64;
        // ∂x = a·∂y + b·x + k per channel.
        let coef: Vec<[f32; 3]> = (0..channels)
            .map(|c| {
                let a = g[c] * inv[c];
                match stats {
                    NormStats::Fixed => [a as f32, 0.0, 0.0],
                    NormStats::Batch => {
                        let (mb, mg) = (dbeta[c] / count, dgamma[c] / count);
                        let b = -a * mg * inv[c];
                        let k = -a * mb - b * m[c];
                        [a as f32, b as f32, k as f32]
                    }
                }
            })
            .collect();
        let mut dx = vec![0.0f32; xs.len()];
        for_rows(par, &mut dx, cols, |n, row| {
            let (xr, gr) = (&xs[n * cols..(n + 1) * cols], &gs[n * cols..(n + 1) * cols]);
            for (c, [a, b, k]) in coef.iter().enumerate() {
                let span = c * l..(c + 1) * l;
                for ((o, &d), &v) in row[span.clone()]
                    .iter_mut()
                    .zip(&gr[span.clone()])
                    .zip(&xr[span])
                {
                    *o = a * d + b * v + k;
                }
            }
        });
        Ok(BatchNormGrads {
            x: Array2::from_shape_vec(x.raw_dim(), dx).expect("x's shape"),
            gamma: row_vec(dgamma.iter().map(|&v| v as f32)),
            beta: row_vec(dbeta.iter().map(|&v| v as f32)),
        })
    }

    fn mul(&self, a: &Array2<f32>, b: &Array2<f32>) -> Result<Array2<f32>> {
        checks::same("mul", shape_of(a), shape_of(b))?;
        Ok(self.map2(a, b, |x, y| x * y))
    }
}

/// `log Σ exp(v)`, the maximum taken out first: `−inf` when every value is
/// `−inf`, `+inf` when one is `+inf`, NaN when one is NaN.
fn logsumexp(row: &[f32]) -> f32 {
    if row.iter().any(|v| v.is_nan()) {
        return f32::NAN;
    }
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if m.is_infinite() {
        return m;
    }
    let s: f64 = row.iter().map(|&v| f64::from(v - m).exp()).sum();
    m + s.ln() as f32
}

/// Batch normalisation as `x · scale[c] + shift[c]`.
fn norm_affine(
    mean: &Array2<f32>,
    var: &Array2<f32>,
    gamma: Option<&Array2<f32>>,
    beta: Option<&Array2<f32>>,
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let c = mean.ncols();
    let g: Vec<f32> = gamma.map_or(vec![1.0; c], |g| g.iter().copied().collect());
    let b: Vec<f32> = beta.map_or(vec![0.0; c], |b| b.iter().copied().collect());
    let scale: Vec<f32> = var
        .iter()
        .zip(&g)
        .map(|(&v, &g)| g / (v + eps).sqrt())
        .collect();
    let shift = mean
        .iter()
        .zip(&scale)
        .zip(&b)
        .map(|((&m, &a), &b)| b - m * a)
        .collect();
    (scale, shift)
}
