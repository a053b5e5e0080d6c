//! # latentlab-data
//!
//! Array files and datasets for latentlab. Today: [`npy`], NumPy's `.npy`
//! format (f32, f64, u8, i64), read with every header field checked and
//! allocation bounded by the file's real size, written atomically. The IDX
//! reader, the embedded MNIST-10k and procedural dSprites come with the model
//! issue.

pub mod npy;
