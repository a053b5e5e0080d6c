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
    /// The name of each label, where the data name them (an image
    /// folder's class sub-folders): `label_names[l]` for label `l`.
    pub label_names: Option<Vec<String>>,
}

/// What can go wrong loading a dataset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// An IDX file is unreadable or invalid.
    #[error(transparent)]
    Idx(#[from] IdxError),
    /// A `.npy` file is unreadable or invalid.
    #[error(transparent)]
    Npy(#[from] crate::npy::NpyError),
    /// The files do not form a dataset.
    #[error("{path}: {detail}")]
    Invalid {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

pub(crate) fn invalid(path: &Path, detail: impl Into<String>) -> DataError {
    DataError::Invalid {
        path: path.into(),
        detail: detail.into(),
    }
}

/// Largest `.npy` image file read: 2³² values of up to 8 bytes, plus header.
const MAX_NPY_ELEMENTS: u64 = 1 << 32;

/// Which stream shuffles a `.npy` data set into its train and test parts
/// (fixed, so every command sees the same split of one file).
const NPY_SPLIT_SEED: u64 = 0;

/// Images from one `.npy` file, split into train and test.
///
/// The array is `N×C×H×W` (1 or 3 channels), `N×H×W` (grey) or `N×D` (flat
/// features, shown as a square when `D` is one, else as a `1×D` strip).
/// `uint8` values are scaled by 1/255; `float32` and `float64` values must
/// be finite and lie in `[0, 1]`. A fixed, seeded shuffle puts a tenth of
/// the images (at least one) in the test part. The file's size is checked
/// before it is read, so a hostile header cannot make the reader allocate
/// more than 2³² values.
pub fn load_npy(path: impl AsRef<Path>) -> Result<Split, DataError> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).map_err(|e| invalid(path, e.to_string()))?;
    if meta.is_dir() {
        return Err(invalid(path, "is a folder, not a .npy file"));
    }
    if meta.len() > MAX_NPY_ELEMENTS * 8 + (2 << 20) {
        return Err(invalid(
            path,
            format!(
                "{} bytes is too large for a data set (limit 2³² values)",
                meta.len()
            ),
        ));
    }
    let arr = crate::npy::read(path)?;
    images_from_npy(path, &arr)
}

/// The split [`load_npy`] makes of a parsed array (`path` names it in
/// messages).
pub fn images_from_npy(path: &Path, arr: &crate::npy::NpyArray) -> Result<Split, DataError> {
    use crate::npy::NpyData;
    let shape = arr.shape();
    let (n, channels, h, w) = match *shape {
        [n, c, h, w] => (n, c, h, w),
        [n, h, w] => (n, 1, h, w),
        [n, d] => {
            let s = (d as f64).sqrt().round() as usize;
            if s * s == d {
                (n, 1, s, s)
            } else {
                (n, 1, 1, d)
            }
        }
        _ => {
            return Err(invalid(
                path,
                format!(
                    "images must be N×C×H×W, N×H×W or N×D (flat), but the array has shape {shape:?}"
                ),
            ));
        }
    };
    if !matches!(channels, 1 | 3) {
        return Err(invalid(
            path,
            format!(
                "{channels} channels per image: latentlab reads grey (1) or RGB (3) images; flatten other data to N×D"
            ),
        ));
    }
    if n < 2 || h == 0 || w == 0 {
        return Err(invalid(
            path,
            format!(
                "shape {shape:?}: need at least two non-empty images (one to train on, one to test)"
            ),
        ));
    }
    let dim = channels * h * w;
    let out_of_range = |i: usize, v: f64| {
        invalid(
            path,
            format!(
                "{} values must be finite and lie in [0, 1] (scale them, or save uint8); element {i} is {v}",
                arr.dtype()
            ),
        )
    };
    // Checked in place, then copied once, row by row, into the two parts
    // (no whole-array f32 copy between the file's values and the split).
    match arr.data() {
        NpyData::F32(v) => {
            if let Some(i) = v.iter().position(|x| !(0.0..=1.0).contains(x)) {
                return Err(out_of_range(i, f64::from(v[i])));
            }
        }
        NpyData::F64(v) => {
            if let Some(i) = v.iter().position(|x| !(0.0..=1.0).contains(x)) {
                return Err(out_of_range(i, v[i]));
            }
        }
        NpyData::U8(_) => {}
        NpyData::I64(_) => {
            return Err(invalid(
                path,
                "int64 images are not read: save uint8 (0–255) or float32/float64 in [0, 1]",
            ));
        }
    }
    let push_row = |i: usize, rows: &mut Vec<f32>| {
        let span = i * dim..(i + 1) * dim;
        match arr.data() {
            NpyData::U8(v) => rows.extend(v[span].iter().map(|&b| f32::from(b) / 255.0)),
            NpyData::F32(v) => rows.extend_from_slice(&v[span]),
            NpyData::F64(v) => rows.extend(v[span].iter().map(|&x| x as f32)),
            NpyData::I64(_) => unreachable!("refused above"),
        }
    };
    let (train_idx, test_idx) = fixed_split(n);
    let part = |idx: &[usize]| {
        let mut rows = Vec::with_capacity(idx.len() * dim);
        for &i in idx {
            push_row(i, &mut rows);
        }
        Dataset {
            images: Array2::from_shape_vec((idx.len(), dim), rows).expect("rows of dim"),
            labels: None,
            factor_classes: None,
            image_shape: (h, w),
            channels,
        }
    };
    let name = path
        .file_stem()
        .map_or_else(|| "npy".into(), |s| s.to_string_lossy().into_owned());
    Ok(Split {
        name,
        train: part(&train_idx),
        test: part(&test_idx),
        label_names: None,
    })
}

/// Labels and factor classes for the rows of a data set read from one file
/// or folder (a `.npy` array, an image folder), in the rows' original order:
/// they follow the images into the fixed train/test split. `path` names
/// the label or factor file in messages.
pub fn label_rows(
    split: &mut Split,
    labels: Option<(&Path, &[i64])>,
    factors: Option<(&Path, ndarray::ArrayView2<'_, usize>)>,
) -> Result<(), DataError> {
    let n = split.train.len() + split.test.len();
    let (train_idx, test_idx) = fixed_split(n);
    if let Some((path, l)) = labels {
        if l.len() != n {
            return Err(invalid(path, format!("{} labels for {n} images", l.len())));
        }
        let pick = |idx: &[usize]| idx.iter().map(|&i| l[i]).collect();
        split.train.labels = Some(pick(&train_idx));
        split.test.labels = Some(pick(&test_idx));
        split.label_names = None;
    }
    if let Some((path, f)) = factors {
        if f.nrows() != n {
            return Err(invalid(
                path,
                format!("{} rows of factors for {n} images", f.nrows()),
            ));
        }
        if f.ncols() == 0 {
            return Err(invalid(path, "the factor array has no columns"));
        }
        let pick = |idx: &[usize]| f.select(ndarray::Axis(0), idx);
        split.train.factor_classes = Some(pick(&train_idx));
        split.test.factor_classes = Some(pick(&test_idx));
    }
    Ok(())
}

/// The fixed split of a file's `n` rows (a `.npy` array's, an image
/// folder's): a seeded shuffle puts a tenth (at least one) in the test
/// part. Returns the (train, test) row indices.
pub(crate) fn fixed_split(n: usize) -> (Vec<usize>, Vec<usize>) {
    let order = crate::rng::subset(n, n, NPY_SPLIT_SEED, 0);
    let (test, train) = order.split_at((n / 10).max(1));
    (train.to_vec(), test.to_vec())
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
        label_names: None,
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
        label_names: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_factors_follow_their_rows_into_the_split() {
        // Row i's first value is i / 255; its label is i % 7, its factors
        // (i % 2, i % 5).
        let n = 50;
        let mut x = vec![0u8; n * 4];
        for i in 0..n {
            x[i * 4] = i as u8;
        }
        let path = std::env::temp_dir().join(format!("label-rows-{}.npy", std::process::id()));
        crate::npy::write_u8(&path, &[n, 4], &x).unwrap();
        let mut s = load_npy(&path).unwrap();
        std::fs::remove_file(&path).ok();
        let labels: Vec<i64> = (0..n as i64).map(|i| i % 7).collect();
        let f = Array2::from_shape_fn((n, 2), |(i, k)| if k == 0 { i % 2 } else { i % 5 });
        let p = Path::new("y.npy");
        label_rows(&mut s, Some((p, &labels)), Some((p, f.view()))).unwrap();
        for d in [&s.train, &s.test] {
            let l = d.labels.as_ref().unwrap();
            let fc = d.factor_classes.as_ref().unwrap();
            for (r, row) in d.images.rows().into_iter().enumerate() {
                let i = (row[0] * 255.0).round() as usize;
                assert_eq!(l[r], (i % 7) as i64);
                assert_eq!((fc[[r, 0]], fc[[r, 1]]), (i % 2, i % 5));
            }
        }
        let err = label_rows(&mut s, Some((p, &labels[..49])), None).unwrap_err();
        assert!(err.to_string().contains("49 labels for 50 images"), "{err}");
    }

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

    #[test]
    fn npy_images_of_every_layout_split_a_tenth_for_testing() {
        let dir = std::env::temp_dir().join(format!("latentlab-npy-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.npy");
        // 20 RGB images of 2×3, value = image index (as u8).
        let (n, c, h, w) = (20, 3, 2, 3);
        let bytes: Vec<u8> = (0..n * c * h * w)
            .map(|i| (i / (c * h * w)) as u8)
            .collect();
        crate::npy::write_u8(&p, &[n, c, h, w], &bytes).unwrap();
        let s = load_npy(&p).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (18, 2));
        assert_eq!(s.train.chw(), [3, 2, 3]);
        assert_eq!(s.name, "x");
        // Every image once, each intact, scaled by 1/255.
        let mut seen: Vec<u8> = s
            .train
            .images
            .rows()
            .into_iter()
            .chain(s.test.images.rows())
            .map(|r| {
                let v = (r[0] * 255.0).round() as u8;
                assert!(
                    r.iter().all(|&x| (x * 255.0).round() as u8 == v),
                    "an intact image"
                );
                v
            })
            .collect();
        seen.sort();
        assert_eq!(seen, (0..20).collect::<Vec<u8>>());
        // The split is the same on every read.
        assert_eq!(load_npy(&p).unwrap().test.images, s.test.images);
        // N×H×W is grey, N×D square is an image, N×D otherwise a strip.
        crate::npy::write_f32(&p, &[4, 5, 6], &[0.5; 120]).unwrap();
        assert_eq!(load_npy(&p).unwrap().train.chw(), [1, 5, 6]);
        crate::npy::write_f64(&p, &[4, 16], &[0.25; 64]).unwrap();
        let sq = load_npy(&p).unwrap();
        assert_eq!((sq.train.chw(), sq.test.images[[0, 3]]), ([1, 4, 4], 0.25));
        crate::npy::write_f32(&p, &[3, 7], &[1.0; 21]).unwrap();
        assert_eq!(load_npy(&p).unwrap().train.chw(), [1, 1, 7]);
        // Bad input, each named.
        type Writer = Box<dyn Fn(&Path)>;
        let cases: Vec<(Writer, &str)> = vec![
            (
                Box::new(|p| {
                    crate::npy::write_f32(p, &[2, 4], &[0.5, 0.5, 1.5, 0.0, 0.0, 0.0, 0.0, 0.0])
                        .unwrap()
                }),
                "element 2 is 1.5",
            ),
            (
                Box::new(|p| {
                    crate::npy::write_f32(p, &[2, 2], &[0.5, f32::NAN, 0.0, 0.0]).unwrap()
                }),
                "element 1 is NaN",
            ),
            (
                Box::new(|p| crate::npy::write_u8(p, &[2, 2, 3, 3], &[0; 36]).unwrap()),
                "2 channels",
            ),
            (
                Box::new(|p| crate::npy::write_u8(p, &[1, 9], &[0; 9]).unwrap()),
                "at least two",
            ),
            (
                Box::new(|p| crate::npy::write_u8(p, &[12], &[0; 12]).unwrap()),
                "shape [12]",
            ),
            (
                Box::new(|p| crate::npy::write_i64(p, &[2, 2], &[0; 4]).unwrap()),
                "int64",
            ),
            (
                Box::new(|p| std::fs::write(p, b"\x93NUMPY junk").unwrap()),
                "x.npy",
            ),
        ];
        for (write, needle) in cases {
            write(&p);
            let e = load_npy(&p).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("x.npy"), "{needle}: {e}");
        }
        assert!(load_npy(&dir).unwrap_err().to_string().contains("folder"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
