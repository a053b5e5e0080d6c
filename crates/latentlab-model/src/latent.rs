//! The [`LatentModel`] trait: what the analysis layers see of a model.

use latentlab_tensor::Backend;
use ndarray::{Array2, ArrayView2, Axis};

use crate::config::ModelKind;
use crate::error::{ModelError, Result};
use crate::eval::upload_rows;
use crate::vae::Vae;

/// Log-variance reported for the autoencoder's point-mass "posterior".
pub const POINT_MASS_LOGVAR: f32 = -30.0;

/// A posterior's parameters for a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Posterior {
    /// Means (`n × d`).
    pub mu: Array2<f32>,
    /// Log-variances (`n × d`).
    pub logvar: Array2<f32>,
}

/// A model with a Gaussian encoder and a decoder, seen through host arrays,
/// so diagnostics and manipulation work with any implementation (a latentlab
/// model on any backend, or a PyTorch model loaded from safetensors).
pub trait LatentModel {
    /// Latent dimension `d`.
    fn latent_dim(&self) -> usize;
    /// Values per input.
    fn input_dim(&self) -> usize;
    /// Height and width of an input image, when inputs are images.
    fn image_shape(&self) -> Option<(usize, usize)>;
    /// `q(z|x)`: posterior means and log-variances (`n × d` each).
    fn encode(&self, x: ArrayView2<'_, f32>) -> Result<Posterior>;
    /// The mean of `p(x|z)` (`n × input_dim`).
    fn decode(&self, z: ArrayView2<'_, f32>) -> Result<Array2<f32>>;

    /// `n` images decoded from prior draws (seeded).
    fn sample(&self, n: usize, seed: u64) -> Result<Array2<f32>> {
        let d = self.latent_dim();
        let mut buf = vec![0.0f32; n * d];
        latentlab_tensor::philox::fill_normal(
            crate::streams::prior_sample_key(seed),
            0,
            0,
            &mut buf,
        );
        let z = Array2::from_shape_vec((n, d), buf).map_err(|e| ModelError::Data(e.to_string()))?;
        self.decode(z.view())
    }

    /// `decode(encode(x).mu)`.
    fn reconstruct(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let p = self.encode(x)?;
        self.decode(p.mu.view())
    }
}

/// Rows processed per device call.
const CHUNK: usize = 2048;

/// An error naming the first value of `x` that is not finite, by row and
/// column (`what` names the rows: "input", "code").
pub fn check_finite(x: ArrayView2<'_, f32>, what: &str) -> Result<()> {
    if let Some((i, v)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        let c = x.ncols().max(1);
        return Err(ModelError::Data(format!(
            "{what} row {} column {} is {v}",
            i / c,
            i % c
        )));
    }
    Ok(())
}

impl<B: Backend> LatentModel for Vae<B> {
    fn latent_dim(&self) -> usize {
        self.config().latent
    }

    fn input_dim(&self) -> usize {
        self.config().input_dim
    }

    fn image_shape(&self) -> Option<(usize, usize)> {
        self.config().image_shape
    }

    fn encode(&self, x: ArrayView2<'_, f32>) -> Result<Posterior> {
        if x.ncols() != self.input_dim() {
            return Err(ModelError::Data(format!(
                "inputs have {} values each but the model expects {}",
                x.ncols(),
                self.input_dim()
            )));
        }
        check_finite(x, "input")?;
        let d = self.latent_dim();
        let mut mu = Array2::<f32>::zeros((x.nrows(), d));
        let mut logvar = Array2::<f32>::from_elem((x.nrows(), d), POINT_MASS_LOGVAR);
        let be = self.backend();
        be.run(|| -> Result<()> {
            for (k, chunk) in x.axis_chunks_iter(Axis(0), CHUNK).enumerate() {
                if chunk.nrows() == 0 {
                    continue;
                }
                let (m, lv) = self.encode_device(&upload_rows(be, chunk)?)?;
                let rows = k * CHUNK..k * CHUNK + chunk.nrows();
                let m = Array2::from_shape_vec((chunk.nrows(), d), be.download(&m)?)
                    .map_err(|e| ModelError::Data(e.to_string()))?;
                mu.slice_mut(ndarray::s![rows.clone(), ..]).assign(&m);
                if let (Some(lv), ModelKind::Vae) = (lv, self.config().kind) {
                    let lv = Array2::from_shape_vec((chunk.nrows(), d), be.download(&lv)?)
                        .map_err(|e| ModelError::Data(e.to_string()))?;
                    logvar.slice_mut(ndarray::s![rows, ..]).assign(&lv);
                }
            }
            Ok(())
        })?;
        Ok(Posterior { mu, logvar })
    }

    fn decode(&self, z: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        if z.ncols() != self.latent_dim() {
            return Err(ModelError::Data(format!(
                "codes have {} dimensions but the model's latent size is {}",
                z.ncols(),
                self.latent_dim()
            )));
        }
        check_finite(z, "code")?;
        let be = self.backend();
        let dim = self.input_dim();
        let mut out = Array2::<f32>::zeros((z.nrows(), dim));
        be.run(|| -> Result<()> {
            for (k, chunk) in z.axis_chunks_iter(Axis(0), CHUNK).enumerate() {
                if chunk.nrows() == 0 {
                    continue;
                }
                let mean = self.decode_mean_device(&upload_rows(be, chunk)?)?;
                let mean = Array2::from_shape_vec((chunk.nrows(), dim), be.download(&mean)?)
                    .map_err(|e| ModelError::Data(e.to_string()))?;
                out.slice_mut(ndarray::s![k * CHUNK..k * CHUNK + chunk.nrows(), ..])
                    .assign(&mean);
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// A model whose codes are its inputs (posterior log-variance 0) and whose
/// decoder is the identity: for testing code written against any
/// [`LatentModel`], where every move in latent space is visible as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentityModel(pub usize);

impl LatentModel for IdentityModel {
    fn latent_dim(&self) -> usize {
        self.0
    }

    fn input_dim(&self) -> usize {
        self.0
    }

    fn image_shape(&self) -> Option<(usize, usize)> {
        None
    }

    fn encode(&self, x: ArrayView2<'_, f32>) -> Result<Posterior> {
        if x.ncols() != self.0 {
            return Err(ModelError::Data(format!(
                "inputs have {} values each but the model expects {}",
                x.ncols(),
                self.0
            )));
        }
        Ok(Posterior {
            mu: x.to_owned(),
            logvar: Array2::zeros(x.dim()),
        })
    }

    fn decode(&self, z: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        if z.ncols() != self.0 {
            return Err(ModelError::Data(format!(
                "codes have {} dimensions but the model's latent size is {}",
                z.ncols(),
                self.0
            )));
        }
        Ok(z.to_owned())
    }
}
