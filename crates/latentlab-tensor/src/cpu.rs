//! The CPU backend: `ndarray` tensors, `rayon` parallelism, and a packed,
//! SIMD matrix product (the `gemm` crate, the kernel behind faer).

use ndarray::{Array2, ArrayView2, Zip};

use crate::backend::{Activation, AdamStep, Backend, Transpose};
use crate::conv::{self, Conv2dGeometry};
use crate::{Result, Shape, TensorError, checks, philox, simd};

/// Below this many elements an elementwise op stays on the calling thread.
const PAR_MIN_ELEMS: usize = 1 << 15;
/// Below this many multiply-adds a matrix product stays on the calling thread.
const PAR_MIN_FLOPS: usize = 1 << 18;

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

    /// Runs `f(input_chunk, output_chunk)` over matching chunks of `input`
    /// and `out` (one per image), on rayon's pool when the work is large.
    fn per_image(
        &self,
        input: &[f32],
        in_len: usize,
        out: &mut [f32],
        out_len: usize,
        f: impl Fn(&[f32], &mut [f32]) + Sync + Send,
    ) {
        if self.par(out.len().max(input.len())) {
            use rayon::prelude::*;
            input
                .par_chunks(in_len)
                .zip(out.par_chunks_mut(out_len))
                .for_each(|(i, o)| f(i, o));
        } else {
            input
                .chunks(in_len)
                .zip(out.chunks_mut(out_len))
                .for_each(|(i, o)| f(i, o));
        }
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
    let (m, k) = a.dim();
    let n = b.ncols();
    let [a_rs, a_cs] = [a.strides()[0], a.strides()[1]];
    let [b_rs, b_cs] = [b.strides()[0], b.strides()[1]];
    let par = if parallel && m * n * k >= PAR_MIN_FLOPS {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    let mut c: Vec<f32> = match bias {
        Some(bias) => {
            debug_assert_eq!(bias.len(), n);
            let mut c = Vec::with_capacity(m * n);
            for _ in 0..m {
                c.extend_from_slice(bias);
            }
            c
        }
        None => Vec::with_capacity(m * n),
    };
    let read_dst = bias.is_some();
    let c_ptr = c.as_mut_ptr();
    // SAFETY: `a` (m×k) and `b` (k×n) are live views whose elements are all
    // reachable through their pointers and strides; `c` owns room for m×n
    // contiguous values and aliases neither. With `read_dst = false` gemm
    // writes `c = a·b` into every element without reading any, so the
    // capacity may be uninitialised; with `read_dst = true` every element was
    // initialised to the bias above and gemm writes `c = 1·c + a·b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c_ptr,
            1,
            n as isize,
            read_dst,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            if read_dst { 1.0f32 } else { 0.0f32 },
            1.0f32,
            false,
            false,
            false,
            par,
        );
        c.set_len(m * n);
    }
    Array2::from_shape_vec((m, n), c).expect("m×n values")
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
        self.per_image(slice(&x), g.input_len(), &mut out, l * k, |img, o| {
            conv::im2col_image(g, img, o)
        });
        Ok(Array2::from_shape_vec((n * l, k), out).expect("n·l×k values"))
    }

    fn col2im(&self, cols: &Array2<f32>, g: &Conv2dGeometry) -> Result<Array2<f32>> {
        let n = checks::patches("col2im", shape_of(cols), g)?;
        let (l, k) = (g.positions(), g.patch_len());
        let cols = cols.as_standard_layout();
        let mut out = vec![0.0f32; n * g.input_len()];
        self.per_image(slice(&cols), l * k, &mut out, g.input_len(), |c, o| {
            conv::col2im_image(g, c, o)
        });
        Ok(Array2::from_shape_vec((n, g.input_len()), out).expect("n×input values"))
    }

    fn batch_transpose(&self, x: &Array2<f32>, p: usize, q: usize) -> Result<Array2<f32>> {
        checks::blocks("batch_transpose", shape_of(x), p, q)?;
        let x = x.as_standard_layout();
        let mut out = vec![0.0f32; x.len()];
        self.per_image(slice(&x), p * q, &mut out, p * q, |a, o| {
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

    fn mul(&self, a: &Array2<f32>, b: &Array2<f32>) -> Result<Array2<f32>> {
        checks::same("mul", shape_of(a), shape_of(b))?;
        Ok(self.map2(a, b, |x, y| x * y))
    }
}
