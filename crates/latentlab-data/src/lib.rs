//! # latentlab-data
//!
//! Data for latentlab:
//!
//! - [`idx`]: the IDX format of MNIST, Fashion-MNIST and EMNIST, raw or gzip,
//!   with every header field checked and allocation bounded by the real file;
//! - [`dataset`]: images as rows of grey levels in `[0, 1]` with labels; the
//!   embedded MNIST-10k ([`dataset::mnist_10k`]) and folders of IDX files;
//! - [`dsprites`]: procedural dSprites over the original factor grid;
//! - [`images`]: folders of PNG and JPEG images, labelled by sub-folder;
//! - [`npy`]: NumPy's `.npy` format (f32, f64, u8, i64);
//! - [`npz`]: the original dSprites `.npz`, streamed and held bit-packed;
//! - [`rng`]: seeded shuffles and subsets for mini-batches;
//! - [`fs`]: atomic writes.

pub mod dataset;
pub mod dsprites;
pub mod fs;
pub mod idx;
pub mod images;
pub mod matrix;
pub mod npy;
pub mod npz;
pub mod rng;

pub use dataset::{
    DataError, Dataset, Split, images_from_npy, label_rows, load_idx_dir, load_npy, mnist_10k,
};
pub use images::{ImageFolderOptions, is_image_dir, load_image_dir};
