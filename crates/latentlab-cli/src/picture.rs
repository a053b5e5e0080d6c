//! What the commands write as pictures: PNG grids of decoded images.

use std::path::Path;

use crate::error::{CliError, Context, Result};
use ndarray::Array2;

pub use latentlab::report::{grid_png, shape_of};

/// Images as one PNG grid written atomically to `path` (`--out`).
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
