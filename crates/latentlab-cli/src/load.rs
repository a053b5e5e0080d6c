//! What the commands read: data sets (`--data`), checkpoints
//! (`--checkpoint`), and latent arrays (`.npy`, `.safetensors`).

use std::path::{Path, PathBuf};

use crate::error::{CliError, Context, Result};
use latentlab::data::npy::{self, NpyData};
use latentlab::data::{self, ImageFolderOptions, Split};
use latentlab::model::{LoadOptions, Rename};
use ndarray::Array2;

/// The global flags that say how `--data` is read.
#[derive(Clone, Debug, Default)]
pub struct DataOptions {
    /// `--image-size` and `--center-crop`, for folders of images.
    pub image: ImageFolderOptions,
    /// `--labels`: labels of the rows read.
    pub labels: Option<PathBuf>,
    /// `--factors`: factor classes of the rows read.
    pub factors: Option<PathBuf>,
}

static DATA_OPTIONS: std::sync::OnceLock<DataOptions> = std::sync::OnceLock::new();

/// `H` or `HxW` (as `--image-size` takes it) as (height, width).
fn parse_size(s: &str) -> Result<(usize, usize)> {
    let side = |v: &str| v.trim().parse::<usize>().ok().filter(|&n| n > 0);
    let size = match s.split_once(['x', 'X', '×']) {
        None => side(s).map(|n| (n, n)),
        Some((h, w)) => side(h).zip(side(w)),
    };
    size.ok_or_else(|| {
        CliError::from(format!(
            "--image-size {s}: expected a size H or HxW in pixels (e.g. 64 or 64x48), each at least 1"
        ))
    })
}

/// Sets how `--data` is read (once, from `main`).
pub fn set_data_options(
    image_size: Option<&str>,
    center_crop: bool,
    labels: Option<PathBuf>,
    factors: Option<PathBuf>,
) -> Result<()> {
    let size = image_size.map(parse_size).transpose()?;
    if center_crop && size.is_none() {
        return Err("--center-crop needs --image-size (the size to crop to)".into());
    }
    let _ = DATA_OPTIONS.set(DataOptions {
        image: ImageFolderOptions { size, center_crop },
        labels,
        factors,
    });
    Ok(())
}

/// How `--data` is read: the global flags, or the defaults.
pub fn data_options() -> DataOptions {
    DATA_OPTIONS.get().cloned().unwrap_or_default()
}

/// `--labels`: N whole numbers (a 1-D .npy file, or N × 1).
pub fn read_labels(path: &Path) -> Result<Vec<i64>> {
    let f = read_factors(path, "--labels")?;
    if f.ncols() != 1 {
        return Err(CliError::from(format!(
            "--labels: {}: labels are one per row (N or N × 1), but the array is {} × {}",
            path.display(),
            f.nrows(),
            f.ncols()
        )));
    }
    f.iter()
        .enumerate()
        .map(|(i, &v)| {
            if v.fract() == 0.0 && v.abs() < 9.0e15 {
                Ok(v as i64)
            } else {
                Err(CliError::from(format!(
                    "--labels: {}: label {i} is {v}, not a whole number",
                    path.display()
                )))
            }
        })
        .collect()
}

/// `--factors` as classes: N × K non-negative whole numbers.
fn read_factor_classes(path: &Path) -> Result<Array2<usize>> {
    let f = read_factors(path, "--factors")?;
    if let Some(((r, c), v)) = f
        .indexed_iter()
        .find(|(_, v)| !(v.fract() == 0.0 && **v >= 0.0 && **v < 1e9))
    {
        return Err(CliError::from(format!(
            "--factors: {}: row {r}, column {c} is {v}; the factors of --data are classes, non-negative whole numbers",
            path.display()
        )));
    }
    Ok(f.mapv(|v| v as usize))
}

/// Applies `--labels` and `--factors` to a data set read from one file or
/// folder.
fn label_file_rows(s: &mut Split, opts: &DataOptions) -> Result<()> {
    let labels = opts.labels.as_deref().map(read_labels).transpose()?;
    let factors = opts
        .factors
        .as_deref()
        .map(read_factor_classes)
        .transpose()?;
    if let (Some(p), Some(l)) = (opts.labels.as_deref(), labels.as_deref()) {
        data::label_rows(s, Some((p, l)), None).context("--labels")?;
    }
    if let (Some(p), Some(f)) = (opts.factors.as_deref(), factors.as_ref()) {
        data::label_rows(s, None, Some((p, f.view()))).context("--factors")?;
    }
    Ok(())
}

/// `FILE.npz` or `FILE.npz:N` (the original dSprites file, N of its
/// images): the file and N.
pub fn npz_spec(spec: &str) -> Result<Option<(&Path, Option<usize>)>> {
    let (file, n) = match spec.rsplit_once(':') {
        Some((f, n)) if f.ends_with(".npz") => (f, Some(n)),
        _ if spec.ends_with(".npz") => (spec, None),
        _ => return Ok(None),
    };
    let n = n
        .map(|n| {
            n.parse::<usize>().ok().filter(|&n| n >= 2).ok_or_else(|| {
                CliError::from(format!(
                    "--data {spec}: expected FILE.npz or FILE.npz:N with N ≥ 2 images"
                ))
            })
        })
        .transpose()?;
    Ok(Some((Path::new(file), n)))
}

/// Which data to use: `mnist-10k`, `[color-]dsprites[:N]`, a `.npy` file of
/// images (`N×C×H×W`, `N×H×W` or `N×D`), the original dSprites file
/// (`FILE.npz[:N]`, N seeded images of it, 20,000 by default), a folder of
/// PNG/JPEG images (flat, or one sub-folder per class) or a folder of IDX
/// files. `--labels`,
/// `--factors`, `--image-size` and `--center-crop` ([`data_options`])
/// apply to the files and folders.
pub fn load_data(spec: &str, seed: u64) -> Result<Split> {
    let opts = data_options();
    let path = Path::new(spec);
    let is_images = path.is_dir() && data::is_image_dir(path);
    if opts.image != ImageFolderOptions::default() && !is_images {
        return Err(CliError::from(format!(
            "--image-size/--center-crop resize folders of images; --data {spec} is not one"
        )));
    }
    if spec.ends_with(".npy") || is_images {
        let mut s = if is_images {
            data::load_image_dir(path, opts.image).context("--data")?
        } else {
            data::load_npy(path).context("--data")?
        };
        label_file_rows(&mut s, &opts)?;
        return Ok(s);
    }
    if let Some((file, n)) = npz_spec(spec)? {
        if opts.labels.is_some() || opts.factors.is_some() {
            return Err(CliError::from(format!(
                "--labels/--factors: --data {spec} carries its own factors"
            )));
        }
        let f = data::npz::read_dsprites_npz(file).context("--data")?;
        let n = n.unwrap_or(20_000).min(f.images.len());
        if n < 2 {
            return Err(CliError::from(format!(
                "--data {spec}: need at least two images (one to train on, one to test)"
            )));
        }
        let test = (n / 10).max(1);
        let name = file
            .file_stem()
            .map_or_else(|| "npz".into(), |s| s.to_string_lossy().into_owned());
        return Ok(f.split(n - test, test, seed, name));
    }
    if opts.labels.is_some() || opts.factors.is_some() {
        return Err(CliError::from(format!(
            "--labels/--factors label the rows of a .npy file or a folder of images; --data {spec} is neither"
        )));
    }
    if spec == "mnist-10k" || spec == "mnist" {
        return Ok(data::mnist_10k());
    }
    let (colour, dsprites) = match spec
        .strip_prefix("color-")
        .or_else(|| spec.strip_prefix("colour-"))
    {
        Some(rest) => (true, rest),
        None => (false, spec),
    };
    if let Some(rest) = dsprites.strip_prefix("dsprites") {
        let n = match rest.strip_prefix(':') {
            None if rest.is_empty() => 20_000,
            Some(n) => n
                .parse::<usize>()
                .ok()
                .filter(|&n| (2..=data::dsprites::LEN).contains(&n))
                .ok_or_else(|| {
                    format!(
                        "--data {spec}: the image count must lie in 2..={}",
                        data::dsprites::LEN
                    )
                })?,
            None => {
                return Err(CliError::from(format!(
                    "--data {spec}: expected dsprites or dsprites:N"
                )));
            }
        };
        let test = (n / 10).max(1);
        return Ok(if colour {
            data::dsprites::colour_split(n - test, test, seed)
        } else {
            data::dsprites::split(n - test, test, seed)
        });
    }
    if !path.exists() {
        return Err(CliError::from(format!(
            "--data {spec}: no such folder (expected mnist-10k, dsprites[:N], color-dsprites[:N], a .npy file of images, a folder of PNG/JPEG images or a folder of IDX files)"
        )));
    }
    data::load_idx_dir(path).context("--data")
}

/// The images (and labels, when every part has them) of `--split`.
pub fn split_rows(s: &Split, split: &str) -> Result<(ndarray::Array2<f32>, Option<Vec<i64>>)> {
    let sets: Vec<&data::Dataset> = match split {
        "test" => vec![&s.test],
        "train" => vec![&s.train],
        "all" => vec![&s.train, &s.test],
        other => {
            return Err(CliError::from(format!(
                "--split: unknown split `{other}`; expected test, train or all"
            )));
        }
    };
    let images = ndarray::concatenate(
        ndarray::Axis(0),
        &sets.iter().map(|d| d.images.view()).collect::<Vec<_>>(),
    )?;
    let labels = sets
        .iter()
        .map(|d| d.labels.clone())
        .collect::<Option<Vec<_>>>()
        .map(|v| v.concat());
    Ok((images, labels))
}

static LOAD_OPTIONS: std::sync::OnceLock<LoadOptions> = std::sync::OnceLock::new();

/// Sets how every checkpoint read goes (once, from `main`): the `--rename`
/// rules and the `--checkpoint-arch` stacks.
pub fn set_load_options(renames: Vec<Rename>, arch: Option<&Path>) -> Result<()> {
    let (stacks, named) = match arch {
        None => (None, Vec::new()),
        Some(p) if !p.is_file() => {
            return Err(CliError::from(format!(
                "--checkpoint-arch {}: expected a JSON file of stacks",
                p.display()
            )));
        }
        Some(p) => {
            let n =
                crate::arch::read_stacks_file(p).map_err(|e| format!("--checkpoint-arch: {e}"))?;
            (Some(n.stacks), n.renames)
        }
    };
    // The file's module names first (exact to a module), then --rename's.
    let renames = named.into_iter().chain(renames).collect();
    let _ = LOAD_OPTIONS.set(LoadOptions {
        renames,
        stacks,
        ..LoadOptions::default()
    });
    Ok(())
}

/// How the commands read a checkpoint: PyTorch's defaults for a file
/// without a config, with the `--rename` rules and `--checkpoint-arch`.
pub fn load_options() -> LoadOptions {
    LOAD_OPTIONS.get().cloned().unwrap_or_default()
}

/// Test row `i` of `s`, or an error naming `flag`.
pub fn index_of(s: &Split, i: usize, flag: &str) -> Result<usize> {
    if i >= s.test.len() {
        return Err(CliError::from(format!(
            "{flag}: image {i} does not exist (the test split has {})",
            s.test.len()
        )));
    }
    Ok(i)
}

/// A 2-D float array from a .npy file.
pub fn read_matrix(path: &Path, flag: &str) -> Result<Array2<f64>> {
    let arr = npy::read(path).context(flag)?;
    if !matches!(arr.data(), NpyData::F32(_) | NpyData::F64(_)) {
        return Err(CliError::from(format!(
            "{flag}: {}: latents must be float32 or float64, not {}",
            path.display(),
            arr.dtype()
        )));
    }
    let (n, d) = match arr.shape() {
        [n, d] => (*n, *d),
        shape => {
            return Err(CliError::from(format!(
                "{flag}: {}: latents must be 2-D (N × d), but the array has shape {shape:?}",
                path.display()
            )));
        }
    };
    Array2::from_shape_vec((n, d), arr.to_f64()).context(flag)
}

/// Factors of rows from a .npy file: N × K, or N for one factor, of any
/// numeric type, as f64.
pub fn read_factors(path: &Path, flag: &str) -> Result<Array2<f64>> {
    let arr = npy::read(path).context(flag)?;
    let (n, k) = match arr.shape() {
        [n] => (*n, 1),
        [n, k] => (*n, *k),
        shape => {
            return Err(CliError::from(format!(
                "{flag}: {}: factors must be N × K (or N for one factor), but the array has shape {shape:?}",
                path.display()
            )));
        }
    };
    Array2::from_shape_vec((n, k), arr.to_f64()).context(flag)
}

/// What a latents file holds.
pub struct LatentFile {
    /// Posterior means.
    pub mu: Array2<f64>,
    /// Labels, when the file has an I64 or I32 `labels` vector of N entries.
    pub labels: Option<Vec<i64>>,
}

/// Tensor `mu` (and `labels`, when present) of a .safetensors file.
pub fn read_latents(path: &Path) -> Result<LatentFile> {
    use safetensors::tensor::Dtype;
    let flag = "--latents";
    let bytes = std::fs::read(path).context(format!("{flag}: {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
        format!(
            "{flag}: {}: not a readable safetensors file ({e})",
            path.display()
        )
    })?;
    let matrix = |name: &str| -> Result<Array2<f64>> {
        let t = st.tensor(name).map_err(|_| {
            let names: Vec<String> = st.names().into_iter().map(String::from).collect();
            format!(
                "{flag}: {}: no tensor `{name}` (it holds {})",
                path.display(),
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            )
        })?;
        let (n, d) = match t.shape() {
            [n, d] => (*n, *d),
            s => {
                return Err(CliError::from(format!(
                    "{flag}: {}: `{name}` must be 2-D (N × d), not {s:?}",
                    path.display()
                )));
            }
        };
        let v: Vec<f64> = match t.dtype() {
            Dtype::F32 => t
                .data()
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            Dtype::F64 => t
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
            other => {
                return Err(CliError::from(format!(
                    "{flag}: {}: `{name}` must be F32 or F64, not {other:?}",
                    path.display()
                )));
            }
        };
        Array2::from_shape_vec((n, d), v).context(flag)
    };
    let mu = matrix("mu")?;
    let labels = match st.tensor("labels") {
        Err(_) => None,
        Ok(t) => {
            let v: Vec<i64> = match t.dtype() {
                Dtype::I64 => t
                    .data()
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
                Dtype::I32 => t
                    .data()
                    .chunks_exact(4)
                    .map(|c| i64::from(i32::from_le_bytes(c.try_into().expect("4 bytes"))))
                    .collect(),
                other => {
                    return Err(CliError::from(format!(
                        "{flag}: {}: `labels` must be I64 or I32, not {other:?}",
                        path.display()
                    )));
                }
            };
            if v.len() != mu.nrows() || t.shape().len() != 1 {
                return Err(CliError::from(format!(
                    "{flag}: {}: `labels` has shape {:?} but `mu` has {} rows",
                    path.display(),
                    t.shape(),
                    mu.nrows()
                )));
            }
            Some(v)
        }
    };
    Ok(LatentFile { mu, labels })
}
