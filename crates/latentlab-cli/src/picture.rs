//! What the commands write as pictures: PNG grids of decoded images.

use std::path::Path;

use crate::error::{CliError, Context, Result};
use latentlab::model::LatentModel;
use latentlab::viz::grid::{GridLayout, image_grid};
use ndarray::Array2;

/// The model's image shape, or the closest square.
pub fn shape_of<M: LatentModel + ?Sized>(m: &M) -> (usize, usize) {
    m.image_shape().unwrap_or_else(|| {
        let d = m.input_dim();
        let s = (d as f64).sqrt().round() as usize;
        if s * s == d { (s, s) } else { (1, d) }
    })
}

/// Images as one PNG grid, `cols` per row, each pixel drawn 2 × 2.
pub fn grid_png(images: &Array2<f32>, shape: (usize, usize), cols: usize) -> Vec<u8> {
    image_grid(
        images.view(),
        shape,
        GridLayout {
            cols,
            pad: 2,
            scale: 2,
        },
    )
}

pub fn write_png(
    path: &Path,
    images: &Array2<f32>,
    shape: (usize, usize),
    cols: usize,
) -> Result<()> {
    if path.is_dir() {
        return Err(CliError::from(format!(
            "--out {}: is a directory; give a file name",
            path.display()
        )));
    }
    latentlab::data::fs::write_atomic(path, &grid_png(images, shape, cols))
        .context(format!("--out {}", path.display()))
}
