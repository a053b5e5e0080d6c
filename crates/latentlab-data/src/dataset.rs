//! Datasets as the model sees them: images flattened to rows of grey levels
//! in `[0, 1]`, with labels and, for dSprites, ground-truth factors.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView2};

use crate::idx::{self, IdxError};

/// A set of images with optional labels and factors.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Images, one per row (`n × channels·height·width`, PyTorch's `C×H×W`
    /// order within a row), values in `[0, 1]`.
    pub images: Array2<f32>,
    /// Class labels (`n`), when the data has them.
    pub labels: Option<Vec<i64>>,
    /// Ground-truth factor class indices (`n × factors`), when known.
    pub factor_classes: Option<Array2<usize>>,
    /// Image height and width.
    pub image_shape: (usize, usize),
    /// Channels per image (1: grey, 3: RGB).
    pub channels: usize,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.nrows()
    }

    /// True when there is no image.
    pub fn is_empty(&self) -> bool {
        self.images.nrows() == 0
    }

    /// `[channels, height, width]`.
    pub fn chw(&self) -> [usize; 3] {
        [self.channels, self.image_shape.0, self.image_shape.1]
    }

    /// Values per image (`channels · height · width`).
    pub fn dim(&self) -> usize {
        self.images.ncols()
    }

    /// The images as a view.
    pub fn view(&self) -> ArrayView2<'_, f32> {
        self.images.view()
    }
}

/// A train/test pair of datasets.
#[derive(Clone, Debug)]
pub struct Split {
    /// A short name (`mnist-10k`, `dsprites`, the folder's name).
    pub name: String,
    /// Training images.
    pub train: Dataset,
    /// Held-out images.
    pub test: Dataset,
}

/// What can go wrong loading a dataset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// An IDX file is unreadable or invalid.
    #[error(transparent)]
    Idx(#[from] IdxError),
    /// The files do not form a dataset.
    #[error("{path}: {detail}")]
    Invalid {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

fn invalid(path: &Path, detail: impl Into<String>) -> DataError {
    DataError::Invalid {
        path: path.into(),
        detail: detail.into(),
    }
}

/// Turns an image file and a label file into a dataset, checking that they
/// agree.
pub fn from_idx(
    images: &idx::IdxArray,
    labels: Option<&idx::IdxArray>,
    images_path: &Path,
    labels_path: &Path,
) -> Result<Dataset, DataError> {
    let (n, h, w) = match images.dims.as_slice() {
        [n, h, w] => (*n, *h, *w),
        dims => {
            return Err(invalid(
                images_path,
                format!(
                    "an image file must have rank 3 (n × height × width), this one has dimensions {dims:?}"
                ),
            ));
        }
    };
    let pixels: Vec<f32> = images.data.iter().map(|&b| f32::from(b) / 255.0).collect();
    let images = Array2::from_shape_vec((n, h * w), pixels)
        .map_err(|e| invalid(images_path, e.to_string()))?;
    let labels = match labels {
        None => None,
        Some(l) => {
            if l.dims.len() != 1 {
                return Err(invalid(
                    labels_path,
                    format!(
                        "a label file must have rank 1, this one has dimensions {:?}",
                        l.dims
                    ),
                ));
            }
            if l.dims[0] != n {
                return Err(invalid(
                    labels_path,
                    format!(
                        "{} labels for {n} images in {}",
                        l.dims[0],
                        images_path.display()
                    ),
                ));
            }
            Some(l.data.iter().map(|&b| i64::from(b)).collect())
        }
    };
    Ok(Dataset {
        images,
        labels,
        factor_classes: None,
        image_shape: (h, w),
        channels: 1,
    })
}

const MNIST_TRAIN_IMAGES: &[u8] = include_bytes!("../data/mnist-10k/train-images-idx3-ubyte.gz");
const MNIST_TRAIN_LABELS: &[u8] = include_bytes!("../data/mnist-10k/train-labels-idx1-ubyte.gz");
const MNIST_TEST_IMAGES: &[u8] = include_bytes!("../data/mnist-10k/t10k-images-idx3-ubyte.gz");
const MNIST_TEST_LABELS: &[u8] = include_bytes!("../data/mnist-10k/t10k-labels-idx1-ubyte.gz");

/// The embedded MNIST-10k: 8,000 training and 2,000 test digits (28×28)
/// with labels, compiled into the crate.
pub fn mnist_10k() -> Split {
    let load = |img: &[u8], lab: &[u8], name: &str| {
        let ip = PathBuf::from(format!("<embedded>/{name}-images"));
        let lp = PathBuf::from(format!("<embedded>/{name}-labels"));
        let images = idx::parse(&ip, img).expect("the embedded MNIST images are valid");
        let labels = idx::parse(&lp, lab).expect("the embedded MNIST labels are valid");
        from_idx(&images, Some(&labels), &ip, &lp).expect("the embedded MNIST files agree")
    };
    Split {
        name: "mnist-10k".into(),
        train: load(MNIST_TRAIN_IMAGES, MNIST_TRAIN_LABELS, "train"),
        test: load(MNIST_TEST_IMAGES, MNIST_TEST_LABELS, "t10k"),
    }
}

/// Finds the one file in `dir` whose name contains every word of one of
/// `patterns` (e.g. `["train", "images"]`).
fn find(dir: &Path, patterns: &[&[&str]]) -> Result<Option<PathBuf>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| invalid(dir, e.to_string()))?;
    let mut names: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    for words in patterns {
        let hits: Vec<&PathBuf> = names
            .iter()
            .filter(|p| {
                let n = p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_lowercase())
                    .unwrap_or_default();
                words.iter().all(|w| n.contains(w))
            })
            .collect();
        match hits.as_slice() {
            [] => continue,
            [one] => return Ok(Some((*one).clone())),
            many => {
                return Err(invalid(
                    dir,
                    format!(
                        "several files match {words:?}: {}",
                        many.iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
    }
    Ok(None)
}

/// Loads a folder of IDX files in the MNIST naming scheme (Fashion-MNIST and
/// EMNIST use it too): `*train*images*`, `*train*labels*`, and
/// `*t10k*images*` or `*test*images*` with their labels; raw or `.gz`.
/// Labels are optional; a test split is required.
///
/// EMNIST stores every image transposed; the images load as stored.
pub fn load_idx_dir(dir: impl AsRef<Path>) -> Result<Split, DataError> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(invalid(
            dir,
            if dir.exists() {
                "is not a folder (expected a folder of IDX files)"
            } else {
                "no such folder"
            },
        ));
    }
    let need = |found: Option<PathBuf>, what: &str| {
        found.ok_or_else(|| {
            invalid(
                dir,
                format!("no {what} file (names like train-images-idx3-ubyte[.gz])"),
            )
        })
    };
    let train_images = need(find(dir, &[&["train", "images"]])?, "training-image")?;
    let test_images = need(
        find(dir, &[&["t10k", "images"], &["test", "images"]])?,
        "test-image",
    )?;
    let train_labels = find(dir, &[&["train", "labels"]])?;
    let test_labels = find(dir, &[&["t10k", "labels"], &["test", "labels"]])?;
    let load = |ip: &Path, lp: Option<&PathBuf>| -> Result<Dataset, DataError> {
        let images = idx::read(ip)?;
        let labels = lp.map(idx::read).transpose()?;
        let lp = lp.map(PathBuf::as_path).unwrap_or(Path::new(""));
        from_idx(&images, labels.as_ref(), ip, lp)
    };
    let train = load(&train_images, train_labels.as_ref())?;
    let test = load(&test_images, test_labels.as_ref())?;
    if train.image_shape != test.image_shape {
        return Err(invalid(
            &test_images,
            format!(
                "test images are {:?} but training images are {:?}",
                test.image_shape, train.image_shape
            ),
        ));
    }
    Ok(Split {
        name: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "idx".into()),
        train,
        test,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_mnist_is_what_its_readme_says() {
        let m = mnist_10k();
        assert_eq!(m.train.images.dim(), (8000, 784));
        assert_eq!(m.test.images.dim(), (2000, 784));
        assert_eq!(m.train.image_shape, (28, 28));
        let labels = m.train.labels.as_ref().unwrap();
        let mut counts = [0usize; 10];
        for &l in labels {
            counts[l as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (600..1000).contains(&c)),
            "{counts:?}"
        );
        assert!(m.train.images.iter().all(|&p| (0.0..=1.0).contains(&p)));
        let mean = m.train.images.mean().unwrap();
        assert!(
            (0.1..0.15).contains(&mean),
            "MNIST's mean grey level is ≈ 0.13, got {mean}"
        );
    }

    #[test]
    fn idx_folder_round_trip_and_errors() {
        let dir = std::env::temp_dir().join(format!("latentlab-idxdir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("train-images-idx3-ubyte.gz"), MNIST_TRAIN_IMAGES).unwrap();
        std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), MNIST_TRAIN_LABELS).unwrap();
        let e = load_idx_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("no test-image file"), "{e}");
        std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), MNIST_TEST_IMAGES).unwrap();
        // Labels that disagree with the images in count.
        std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), MNIST_TRAIN_LABELS).unwrap();
        let e = load_idx_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("8000 labels for 2000 images"), "{e}");
        std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), MNIST_TEST_LABELS).unwrap();
        let s = load_idx_dir(&dir).unwrap();
        assert_eq!(s.train.len(), 8000);
        assert_eq!(s.test.labels.unwrap().len(), 2000);
        assert!(
            load_idx_dir(dir.join("nope"))
                .unwrap_err()
                .to_string()
                .contains("no such folder")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
