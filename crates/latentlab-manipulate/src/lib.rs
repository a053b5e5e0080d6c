//! `latentlab-manipulate`: moving through a latent space, over any
//! [`LatentModel`].
//!
//! - [`Manipulator`]: encode to means; attribute vectors from positive and
//!   negative sets (normalised difference of means), from class labels
//!   (class a → class b) or from ground-truth factors; kept by name, saved
//!   and loaded as safetensors; applied with a strength (negative removes);
//!   analogies (B − A + C over sets); seeded random walks, optionally held on
//!   the typical shell.
//! - [`traverse`] and [`traverse_all`]: one dimension, or every dimension,
//!   around a code.
//! - [`interpolation_strip`]: decoded interpolation with any geometry method.
//! - [`geodesic`]: a path minimising the decoder's pull-back energy
//!   (Arvanitidis et al. 2018), compared with linear and SLERP by
//!   [`path_energy`].

mod error;
mod geodesic;

use std::collections::BTreeMap;
use std::path::Path;

use latentlab_geometry::interpolate::{Method, interpolate};
use latentlab_model::LatentModel;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

pub use error::{ManipulateError, Result};
pub use geodesic::{Geodesic, GeodesicParams, geodesic, path_energy};

use error::input;

/// Attribute vectors over a model, kept by name.
pub struct Manipulator<'a, M: ?Sized> {
    model: &'a M,
    vectors: BTreeMap<String, Array1<f32>>,
}

fn unit(v: Array1<f32>, what: &str) -> Result<Array1<f32>> {
    let n = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if n.is_nan() || n <= 1e-12 || !n.is_finite() {
        return Err(input(format!(
            "{what}: the two sets have the same mean code, so there is no direction"
        )));
    }
    Ok(v.mapv(|x| (f64::from(x) / n) as f32))
}

fn mean_code(z: &Array2<f32>, what: &str) -> Result<Array1<f32>> {
    z.mean_axis(Axis(0))
        .ok_or_else(|| input(format!("{what}: the set is empty")))
}

/// The attribute direction of codes: mean(`positive`) − mean(`negative`),
/// normalised to unit length (an error when the means coincide). The
/// manipulator's vectors are this of its model's posterior means.
pub fn attribute_direction(
    positive: ArrayView2<'_, f32>,
    negative: ArrayView2<'_, f32>,
    name: &str,
) -> Result<Array1<f32>> {
    check_codes(positive, "positive examples")?;
    check_codes(negative, "negative examples")?;
    let p = mean_code(&positive.to_owned(), "positive examples")?;
    let n = mean_code(&negative.to_owned(), "negative examples")?;
    unit(p - n, name)
}

/// The code that completes "A is to B as C is to ?": mean(`b`) − mean(`a`)
/// + mean(`c`). [`Manipulator::analogy`] decodes it.
pub fn analogy_code(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    c: ArrayView2<'_, f32>,
) -> Result<Array1<f32>> {
    for (z, what) in [(a, "A"), (b, "B"), (c, "C")] {
        check_codes(z, what)?;
    }
    if a.ncols() != b.ncols() || a.ncols() != c.ncols() {
        return Err(input(format!(
            "A, B and C have {}, {} and {} dimensions",
            a.ncols(),
            b.ncols(),
            c.ncols()
        )));
    }
    let za = mean_code(&a.to_owned(), "A")?;
    let zb = mean_code(&b.to_owned(), "B")?;
    let zc = mean_code(&c.to_owned(), "C")?;
    Ok(zb - za + zc)
}

/// An error when a set of codes holds a non-finite value.
fn check_codes(z: ArrayView2<'_, f32>, what: &str) -> Result<()> {
    if let Some(i) = z.iter().position(|v| !v.is_finite()) {
        let c = z.ncols().max(1);
        return Err(input(format!(
            "{what}: code {} dimension {} is not finite",
            i / c,
            i % c
        )));
    }
    Ok(())
}

impl<'a, M: LatentModel + ?Sized> Manipulator<'a, M> {
    /// A manipulator with no vectors yet.
    pub fn new(model: &'a M) -> Self {
        Self {
            model,
            vectors: BTreeMap::new(),
        }
    }

    /// The model.
    pub fn model(&self) -> &M {
        self.model
    }

    /// Posterior means of `x`.
    pub fn encode_to_mean(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        Ok(self.model.encode(x)?.mu)
    }

    /// mean(code(positive)) − mean(code(negative)), normalised, kept as `name`.
    pub fn attribute_vector(
        &mut self,
        positive: ArrayView2<'_, f32>,
        negative: ArrayView2<'_, f32>,
        name: &str,
    ) -> Result<Array1<f32>> {
        let p = self.encode_to_mean(positive)?;
        let n = self.encode_to_mean(negative)?;
        let v = attribute_direction(p.view(), n.view(), name)?;
        self.vectors.insert(name.to_string(), v.clone());
        Ok(v)
    }

    /// The direction from class `from` to class `to` (e.g. digit 3 → 8),
    /// kept as `class:{from}->{to}`.
    pub fn class_vector(
        &mut self,
        x: ArrayView2<'_, f32>,
        labels: &[i64],
        from: i64,
        to: i64,
    ) -> Result<Array1<f32>> {
        if labels.len() != x.nrows() {
            return Err(input(format!(
                "{} labels for {} inputs",
                labels.len(),
                x.nrows()
            )));
        }
        let pick = |c: i64| -> Vec<usize> {
            labels
                .iter()
                .enumerate()
                .filter(|(_, l)| **l == c)
                .map(|(i, _)| i)
                .collect()
        };
        let (a, b) = (pick(from), pick(to));
        if a.is_empty() || b.is_empty() {
            return Err(input(format!(
                "class {} has no examples",
                if a.is_empty() { from } else { to }
            )));
        }
        let name = format!("class:{from}->{to}");
        let pos = x.select(Axis(0), &b);
        let neg = x.select(Axis(0), &a);
        self.attribute_vector(pos.view(), neg.view(), &name)
    }

    /// One vector per ground-truth factor: mean code of the points in the
    /// factor's upper half of values minus the lower half's, kept as
    /// `factor:{name}`. Returns the names.
    pub fn factor_vectors(
        &mut self,
        x: ArrayView2<'_, f32>,
        factors: ArrayView2<'_, usize>,
        names: &[String],
    ) -> Result<Vec<String>> {
        if factors.nrows() != x.nrows() || names.len() != factors.ncols() {
            return Err(input(format!(
                "{} inputs, {} factor rows and {} names for {} factors",
                x.nrows(),
                factors.nrows(),
                names.len(),
                factors.ncols()
            )));
        }
        let z = self.encode_to_mean(x)?;
        let mut out = Vec::new();
        for (k, name) in names.iter().enumerate() {
            let col = factors.column(k);
            let max = col.iter().copied().max().unwrap_or(0);
            let mid = max as f64 / 2.0;
            let hi: Vec<usize> = (0..col.len()).filter(|&i| col[i] as f64 > mid).collect();
            let lo: Vec<usize> = (0..col.len()).filter(|&i| (col[i] as f64) < mid).collect();
            if hi.is_empty() || lo.is_empty() {
                continue;
            }
            let v = unit(
                mean_code(&z.select(Axis(0), &hi), name)?
                    - mean_code(&z.select(Axis(0), &lo), name)?,
                name,
            )?;
            let key = format!("factor:{name}");
            self.vectors.insert(key.clone(), v);
            out.push(key);
        }
        Ok(out)
    }

    /// Keeps `v` (normalised) as `name`.
    pub fn insert(&mut self, name: &str, v: Array1<f32>) -> Result<()> {
        if v.len() != self.model.latent_dim() {
            return Err(input(format!(
                "{name}: the vector has {} dimensions but the model's latent size is {}",
                v.len(),
                self.model.latent_dim()
            )));
        }
        let v = unit(v, name)?;
        self.vectors.insert(name.to_string(), v);
        Ok(())
    }

    /// The vector kept as `name`.
    pub fn get(&self, name: &str) -> Result<&Array1<f32>> {
        self.vectors.get(name).ok_or_else(|| {
            input(format!(
                "unknown attribute `{name}` (known: {})",
                if self.vectors.is_empty() {
                    "none".to_string()
                } else {
                    self.vectors.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            ))
        })
    }

    /// Names of the kept vectors.
    pub fn names(&self) -> Vec<String> {
        self.vectors.keys().cloned().collect()
    }

    /// Codes of `x` moved by `strength` along `name`.
    pub fn apply_codes(
        &self,
        x: ArrayView2<'_, f32>,
        name: &str,
        strength: f32,
    ) -> Result<Array2<f32>> {
        if !strength.is_finite() {
            return Err(input(format!("strength {strength} is not finite")));
        }
        let v = self.get(name)?.clone();
        let z = self.encode_to_mean(x)?;
        Ok(z + &(v * strength))
    }

    /// `x` with the attribute added at `strength` (negative removes), decoded.
    pub fn apply(&self, x: ArrayView2<'_, f32>, name: &str, strength: f32) -> Result<Array2<f32>> {
        let z = self.apply_codes(x, name, strength)?;
        Ok(self.model.decode(z.view())?)
    }

    /// A is to B as C is to ?: decode(mean B − mean A + mean C).
    pub fn analogy(
        &self,
        a: ArrayView2<'_, f32>,
        b: ArrayView2<'_, f32>,
        c: ArrayView2<'_, f32>,
    ) -> Result<Array2<f32>> {
        let (za, zb, zc) = (
            self.encode_to_mean(a)?,
            self.encode_to_mean(b)?,
            self.encode_to_mean(c)?,
        );
        let z = analogy_code(za.view(), zb.view(), zc.view())?.insert_axis(Axis(0));
        Ok(self.model.decode(z.view())?)
    }

    /// A seeded random walk from `start`'s code: `steps` moves of length
    /// `step_size` in uniformly random directions; with `on_shell`, every
    /// point is rescaled to the typical norm √d. Returns the codes
    /// (steps + 1 rows) and their decodings.
    pub fn random_walk(
        &self,
        start: ArrayView1<'_, f32>,
        steps: usize,
        step_size: f32,
        seed: u64,
        on_shell: bool,
    ) -> Result<(Array2<f32>, Array2<f32>)> {
        if !(step_size.is_finite() && step_size >= 0.0) {
            return Err(input(format!("step size {step_size} must be ≥ 0")));
        }
        let d = self.model.latent_dim();
        let z0 = self
            .encode_to_mean(start.insert_axis(Axis(0)))?
            .row(0)
            .to_owned();
        let mut g =
            latentlab_data::rng::SplitMix64::new(seed, latentlab_data::rng::Purpose::Walk, 0);
        let shell = (d as f64).sqrt();
        let to_shell = |z: &mut Array1<f32>| {
            let n = z.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
            if n > 0.0 {
                z.mapv_inplace(|v| (f64::from(v) * shell / n) as f32);
            }
        };
        let mut codes = Array2::<f32>::zeros((steps + 1, d));
        let mut z = z0;
        if on_shell {
            to_shell(&mut z);
        }
        codes.row_mut(0).assign(&z);
        for s in 1..=steps {
            let dir: Array1<f64> = (0..d).map(|_| g.normal()).collect();
            let n = dir.dot(&dir).sqrt().max(f64::MIN_POSITIVE);
            for (zi, di) in z.iter_mut().zip(dir.iter()) {
                *zi += (f64::from(step_size) * di / n) as f32;
            }
            if on_shell {
                to_shell(&mut z);
            }
            codes.row_mut(s).assign(&z);
        }
        let decoded = self.model.decode(codes.view())?;
        Ok((codes, decoded))
    }

    /// Writes the kept vectors to a .safetensors file (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        use safetensors::tensor::{Dtype, TensorView};
        let bytes: Vec<(String, Vec<u8>)> = self
            .vectors
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect()))
            .collect();
        let views = bytes
            .iter()
            .map(|(k, b)| {
                TensorView::new(Dtype::F32, vec![b.len() / 4], b)
                    .map(|t| (k.clone(), t))
                    .map_err(|e| input(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_string(), "latentlab.attributes".to_string());
        let data = safetensors::serialize(views, Some(meta)).map_err(|e| input(e.to_string()))?;
        latentlab_data::fs::write_atomic(path, &data).map_err(|e| ManipulateError::Io {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
    }

    /// Reads vectors written by [`Manipulator::save`] (or any safetensors
    /// file of 1-D F32 tensors of the latent size), adding them to those kept.
    pub fn load(&mut self, path: &Path) -> Result<Vec<String>> {
        let bytes = std::fs::read(path).map_err(|e| ManipulateError::Io {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        self.load_bytes(path, &bytes)
    }

    /// [`Manipulator::load`] from bytes (`path` names them in messages).
    /// Nothing is kept unless every vector is valid.
    pub fn load_bytes(&mut self, path: &Path, bytes: &[u8]) -> Result<Vec<String>> {
        use safetensors::tensor::Dtype;
        let io = |detail: String| ManipulateError::Io {
            path: path.to_path_buf(),
            detail,
        };
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| io(format!("not a readable safetensors file ({e})")))?;
        let d = self.model.latent_dim();
        let mut found = Vec::new();
        for (name, t) in st.tensors() {
            if t.dtype() != Dtype::F32 || t.shape() != [d] {
                return Err(io(format!(
                    "`{name}` is {:?} {:?}; attribute vectors are F32 of shape [{d}]",
                    t.dtype(),
                    t.shape()
                )));
            }
            let v: Array1<f32> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if v.iter().any(|x| !x.is_finite()) {
                return Err(io(format!("`{name}` holds a non-finite value")));
            }
            let v = unit(v, &name).map_err(|e| io(e.to_string()))?;
            found.push((name, v));
        }
        let mut names: Vec<String> = found.iter().map(|f| f.0.clone()).collect();
        for (name, v) in found {
            self.vectors.insert(name, v);
        }
        names.sort();
        Ok(names)
    }
}

fn check_code<M: LatentModel + ?Sized>(model: &M, z: ArrayView1<'_, f32>) -> Result<()> {
    if z.len() != model.latent_dim() {
        return Err(input(format!(
            "the code has {} dimensions but the model's latent size is {}",
            z.len(),
            model.latent_dim()
        )));
    }
    if z.iter().any(|v| !v.is_finite()) {
        return Err(input("the code holds a non-finite value"));
    }
    Ok(())
}

/// The codes of a traversal: `z` with dimension `dim` swept over
/// `lo..=hi` in `steps` values.
pub fn traversal_codes(
    z: ArrayView1<'_, f32>,
    dim: usize,
    lo: f32,
    hi: f32,
    steps: usize,
) -> Result<Array2<f32>> {
    if dim >= z.len() {
        return Err(input(format!(
            "dimension {dim} does not exist (the latent size is {})",
            z.len()
        )));
    }
    if steps < 2 || !(lo.is_finite() && hi.is_finite()) {
        return Err(input(
            "a traversal needs at least 2 steps and a finite range",
        ));
    }
    let mut out = Array2::<f32>::zeros((steps, z.len()));
    for s in 0..steps {
        let t = lo + (hi - lo) * s as f32 / (steps - 1) as f32;
        let mut row = z.to_owned();
        row[dim] = t;
        out.row_mut(s).assign(&row);
    }
    Ok(out)
}

/// One dimension of `z` swept over `lo..=hi`, decoded (`steps` rows).
pub fn traverse<M: LatentModel + ?Sized>(
    model: &M,
    z: ArrayView1<'_, f32>,
    dim: usize,
    lo: f32,
    hi: f32,
    steps: usize,
) -> Result<Array2<f32>> {
    check_code(model, z)?;
    let codes = traversal_codes(z, dim, lo, hi, steps)?;
    Ok(model.decode(codes.view())?)
}

/// Every dimension of `z` swept in turn: `d · steps` decoded rows,
/// dimension by dimension.
pub fn traverse_all<M: LatentModel + ?Sized>(
    model: &M,
    z: ArrayView1<'_, f32>,
    lo: f32,
    hi: f32,
    steps: usize,
) -> Result<Array2<f32>> {
    check_code(model, z)?;
    let blocks = (0..z.len())
        .map(|k| traversal_codes(z, k, lo, hi, steps))
        .collect::<Result<Vec<_>>>()?;
    let views: Vec<_> = blocks.iter().map(|b| b.view()).collect();
    let codes = ndarray::concatenate(Axis(0), &views).map_err(|e| input(e.to_string()))?;
    Ok(model.decode(codes.view())?)
}

/// Codes between `z1` and `z2` by `method` and their decodings.
pub fn interpolation_strip<M: LatentModel + ?Sized>(
    model: &M,
    z1: ArrayView1<'_, f32>,
    z2: ArrayView1<'_, f32>,
    steps: usize,
    method: Method,
) -> Result<(Array2<f32>, Array2<f32>)> {
    check_code(model, z1)?;
    check_code(model, z2)?;
    let codes = interpolate(z1, z2, steps, method).map_err(|e| input(e.to_string()))?;
    let decoded = model.decode(codes.view())?;
    Ok((codes, decoded))
}
