//! Folders of PNG and JPEG images, as torchvision's `ImageFolder` reads
//! them: the images at the folder's top level, or one sub-folder per class
//! (the sub-folders' sorted names are the labels), grey or colour, any size.
//!
//! Every header is read before any image is decoded, so a folder's shape
//! (how many images, what size, grey or colour) is checked, and its memory
//! bounded, first: an image whose header claims more than
//! [`MAX_IMAGE_PIXELS`] pixels is refused unread, and the whole set may hold
//! at most 2³² values. Images of different sizes need
//! [`ImageFolderOptions::size`]; they are then resized with a triangle
//! (bilinear, antialiased) filter, stretched or, with
//! [`ImageFolderOptions::center_crop`], resized on their shorter side and
//! cropped at the centre (torchvision's `Resize(s)` + `CenterCrop(s)`).

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use ndarray::Array2;
use rayon::prelude::*;

use crate::dataset::{DataError, Dataset, Split, fixed_split, invalid};

/// The most pixels one image's header may claim (2²⁶, e.g. 8192 × 8192).
pub const MAX_IMAGE_PIXELS: u64 = 1 << 26;
/// The largest image file read (256 MiB).
const MAX_FILE_BYTES: u64 = 1 << 28;
/// The most values (images × channels × height × width) a folder may hold.
const MAX_VALUES: u64 = 1 << 32;
/// The extensions read (case-insensitive).
const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// How [`load_image_dir`] reads a folder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageFolderOptions {
    /// Every image resized to `(height, width)`; `None` keeps the images'
    /// own size, which must then be the same for all.
    pub size: Option<(usize, usize)>,
    /// With `size`: resize the shorter side (keeping the aspect) and crop
    /// the centre, instead of stretching to the size.
    pub center_crop: bool,
}

/// An image file and its class (when the folder has class folders).
type Labelled = (PathBuf, Option<i64>);

/// One image file and its class.
struct Entry {
    path: PathBuf,
    label: Option<i64>,
    width: u32,
    height: u32,
    colour: bool,
}

fn is_image(p: &Path) -> bool {
    p.is_file()
        && p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| invalid(dir, e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// True when `dir` holds PNG or JPEG files, at its top level or one
/// folder down: the folders [`load_image_dir`] reads.
pub fn is_image_dir(dir: &Path) -> bool {
    let Ok(entries) = sorted_entries(dir) else {
        return false;
    };
    entries.iter().any(|p| is_image(p))
        || entries
            .iter()
            .filter(|p| p.is_dir())
            .any(|d| sorted_entries(d).is_ok_and(|v| v.iter().any(|p| is_image(p))))
}

fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_alloc = Some(MAX_IMAGE_PIXELS * 4 * 2);
    l
}

/// What an image file's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Whether the pixels have colour (grey otherwise; alpha is dropped).
    pub colour: bool,
}

fn reader(bytes: &[u8]) -> Result<ImageReader<std::io::Cursor<&[u8]>>, String> {
    let mut r = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    if r.format().is_none() {
        return Err("neither PNG nor JPEG (unrecognised signature)".into());
    }
    r.limits(limits());
    Ok(r)
}

/// Reads the header of a PNG or JPEG file's bytes, refusing sizes beyond
/// [`MAX_IMAGE_PIXELS`] before any pixel is decoded.
pub fn image_header(bytes: &[u8]) -> Result<ImageHeader, String> {
    let decoder = reader(bytes)?.into_decoder().map_err(|e| e.to_string())?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_IMAGE_PIXELS {
        return Err(format!(
            "the header claims {width} × {height} pixels, more than the {MAX_IMAGE_PIXELS} read per image"
        ));
    }
    if width == 0 || height == 0 {
        return Err(format!("an empty image ({width} × {height})"));
    }
    Ok(ImageHeader {
        width,
        height,
        colour: decoder.color_type().has_color(),
    })
}

/// Decodes a PNG or JPEG file's bytes into `row` (`channels × h × w`,
/// PyTorch's C×H×W order, values in [0, 1]: grey as one channel, or
/// replicated into three; colour as RGB, or as luma when `channels` is 1),
/// resized to `(h, w)`: stretched, or with `crop` resized on the shorter
/// side and cropped at the centre.
pub fn decode_image(
    bytes: &[u8],
    channels: usize,
    (h, w): (usize, usize),
    crop: bool,
    row: &mut [f32],
) -> Result<(), String> {
    let plane = h * w;
    if !matches!(channels, 1 | 3) || plane == 0 || row.len() != channels * plane {
        return Err(format!(
            "cannot decode into {} values as {channels} × {h} × {w}",
            row.len()
        ));
    }
    image_header(bytes)?;
    let img = reader(bytes)?
        .decode()
        .map_err(|e| format!("cannot decode: {e}"))?;
    let (tw, th) = (w as u32, h as u32);
    let (rw, rh) = if crop {
        // The shorter side to its target, the other by the same factor, at
        // least its target (so that the centre crop fits).
        let (iw, ih) = (f64::from(img.width()), f64::from(img.height()));
        let s = (f64::from(tw) / iw).max(f64::from(th) / ih);
        (
            ((iw * s).round() as u32).max(tw),
            ((ih * s).round() as u32).max(th),
        )
    } else {
        (tw, th)
    };
    let (x0, y0) = ((rw - tw) / 2, (rh - th) / 2);
    let fit = |img: DynamicImage| {
        if (img.width(), img.height()) == (rw, rh) {
            img
        } else {
            img.resize_exact(rw, rh, FilterType::Triangle)
        }
        .crop_imm(x0, y0, tw, th)
    };
    if channels == 1 {
        let g = fit(DynamicImage::ImageLuma8(img.to_luma8())).to_luma8();
        for (o, p) in row.iter_mut().zip(g.pixels()) {
            *o = f32::from(p.0[0]) / 255.0;
        }
    } else {
        let c = fit(DynamicImage::ImageRgb8(img.to_rgb8())).to_rgb8();
        for (i, p) in c.pixels().enumerate() {
            for (k, v) in p.0.iter().enumerate() {
                row[k * plane + i] = f32::from(*v) / 255.0;
            }
        }
    }
    Ok(())
}

/// A file's bytes, refusing files over [`MAX_FILE_BYTES`].
fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    let meta = std::fs::metadata(path).map_err(|e| invalid(path, e.to_string()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(invalid(
            path,
            format!(
                "{} bytes is too large for one image (limit {MAX_FILE_BYTES})",
                meta.len()
            ),
        ));
    }
    std::fs::read(path).map_err(|e| invalid(path, e.to_string()))
}

/// Reads one image's header.
fn header(path: &Path, label: Option<i64>) -> Result<Entry, DataError> {
    let h = image_header(&read_file(path)?)
        .map_err(|e| invalid(path, format!("not a readable PNG or JPEG image: {e}")))?;
    Ok(Entry {
        path: path.to_path_buf(),
        label,
        width: h.width,
        height: h.height,
        colour: h.colour,
    })
}

/// The images of `dir` (see the module's description), split as a `.npy`
/// file is: a fixed, seeded shuffle puts a tenth (at least one) in the
/// test part.
pub fn load_image_dir(dir: impl AsRef<Path>, opts: ImageFolderOptions) -> Result<Split, DataError> {
    let dir = dir.as_ref();
    if opts.center_crop && opts.size.is_none() {
        return Err(invalid(
            dir,
            "a centre crop needs the size to crop to (--image-size)",
        ));
    }
    if let Some((h, w)) = opts.size
        && (h == 0 || w == 0 || (h as u64) * (w as u64) > MAX_IMAGE_PIXELS)
    {
        return Err(invalid(
            dir,
            format!(
                "cannot resize to {h} × {w}: each side must be at least 1 and the area at most {MAX_IMAGE_PIXELS} pixels"
            ),
        ));
    }
    let entries = sorted_entries(dir)?;
    let top: Vec<&PathBuf> = entries.iter().filter(|p| is_image(p)).collect();
    let mut class_dirs = Vec::new();
    for d in entries.iter().filter(|p| p.is_dir()) {
        let files: Vec<PathBuf> = sorted_entries(d)?
            .into_iter()
            .filter(|p| is_image(p))
            .collect();
        if !files.is_empty() {
            class_dirs.push((d, files));
        }
    }
    let (files, names): (Vec<Labelled>, Option<Vec<String>>) = match (
        top.is_empty(),
        class_dirs.is_empty(),
    ) {
        (true, true) => {
            return Err(invalid(
                dir,
                "holds no PNG or JPEG files, at its top level or in sub-folders",
            ));
        }
        (false, false) => {
            return Err(invalid(
                dir,
                format!(
                    "holds images both at its top level ({}) and in class sub-folders ({}): put every image in a class folder, or none",
                    top[0].display(),
                    class_dirs[0].0.display()
                ),
            ));
        }
        (false, true) => (top.into_iter().map(|p| (p.clone(), None)).collect(), None),
        (true, false) => {
            let names = class_dirs
                .iter()
                .map(|(d, _)| {
                    d.file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                })
                .collect();
            let files = class_dirs
                .into_iter()
                .enumerate()
                .flat_map(|(c, (_, files))| files.into_iter().map(move |p| (p, Some(c as i64))))
                .collect();
            (files, Some(names))
        }
    };
    if files.len() < 2 {
        return Err(invalid(
            dir,
            "holds one image; at least two are needed (one to train on, one to test)",
        ));
    }
    let heads: Vec<Entry> = files
        .par_iter()
        .map(|(p, l)| header(p, *l))
        .collect::<Result<_, _>>()?;
    let channels = if heads.iter().any(|e| e.colour) { 3 } else { 1 };
    let (h, w) = match opts.size {
        Some(s) => s,
        None => {
            let first = &heads[0];
            if let Some(other) = heads
                .iter()
                .find(|e| (e.width, e.height) != (first.width, first.height))
            {
                return Err(invalid(
                    dir,
                    format!(
                        "images of different sizes ({} is {} × {}, {} is {} × {}, width × height): pass --image-size H[xW] to resize them",
                        first.path.display(),
                        first.width,
                        first.height,
                        other.path.display(),
                        other.width,
                        other.height
                    ),
                ));
            }
            (first.height as usize, first.width as usize)
        }
    };
    let dim = channels * h * w;
    if (heads.len() as u64) * (dim as u64) > MAX_VALUES {
        return Err(invalid(
            dir,
            format!(
                "{} images of {channels} × {h} × {w} values exceed the 2³² values a data set may hold",
                heads.len()
            ),
        ));
    }
    let part = |idx: &[usize]| -> Result<Dataset, DataError> {
        let mut images = Array2::<f32>::zeros((idx.len(), dim));
        images
            .as_slice_mut()
            .expect("a new array is contiguous")
            .par_chunks_mut(dim)
            .zip(idx.par_iter())
            .try_for_each(|(row, &i)| {
                let e = &heads[i];
                decode_image(
                    &read_file(&e.path)?,
                    channels,
                    (h, w),
                    opts.center_crop,
                    row,
                )
                .map_err(|err| invalid(&e.path, err))
            })?;
        Ok(Dataset {
            images,
            labels: names
                .is_some()
                .then(|| idx.iter().map(|&i| heads[i].label.unwrap_or(0)).collect()),
            factor_classes: None,
            image_shape: (h, w),
            channels,
        })
    };
    let (train_idx, test_idx) = fixed_split(heads.len());
    Ok(Split {
        name: dir
            .file_name()
            .map_or_else(|| "images".into(), |n| n.to_string_lossy().into_owned()),
        train: part(&train_idx)?,
        test: part(&test_idx)?,
        label_names: names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb, RgbImage};

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("latentlab-images-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn grey(path: &Path, w: u32, h: u32, v: u8) {
        GrayImage::from_pixel(w, h, Luma([v])).save(path).unwrap();
    }

    fn rgb(path: &Path, w: u32, h: u32, v: [u8; 3]) {
        RgbImage::from_pixel(w, h, Rgb(v)).save(path).unwrap();
    }

    fn all_rows(s: &Split) -> Vec<Vec<f32>> {
        let mut v: Vec<Vec<f32>> = [&s.train, &s.test]
            .iter()
            .flat_map(|d| d.images.rows().into_iter().map(|r| r.to_vec()))
            .collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    }

    #[test]
    fn a_flat_folder_of_two_sizes_reads_resized() {
        let d = scratch("sizes");
        for i in 0..6u8 {
            grey(&d.join(format!("a{i}.png")), 8, 8, i * 40);
        }
        for i in 0..4u8 {
            grey(&d.join(format!("b{i}.png")), 16, 12, 10 + i);
        }
        std::fs::write(d.join("notes.txt"), "not an image").unwrap();
        let err = load_image_dir(&d, ImageFolderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("different sizes") && err.contains("16 × 12"),
            "{err}"
        );
        let opts = ImageFolderOptions {
            size: Some((4, 6)),
            center_crop: false,
        };
        let s = load_image_dir(&d, opts).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (9, 1));
        assert_eq!(s.train.chw(), [1, 4, 6]);
        assert!(s.train.labels.is_none() && s.label_names.is_none());
        // A uniform image stays uniform through the resize.
        let rows = all_rows(&s);
        for (r, v) in rows
            .iter()
            .zip([0u8, 10, 11, 12, 13, 40, 80, 120, 160, 200])
        {
            assert!(
                r.iter().all(|x| (x - f32::from(v) / 255.0).abs() < 1e-6),
                "{r:?} vs {v}"
            );
        }
    }

    #[test]
    fn class_folders_label_and_colour_spreads_to_every_image() {
        let d = scratch("classes");
        for c in ["dog", "cat"] {
            std::fs::create_dir_all(d.join(c)).unwrap();
        }
        grey(&d.join("cat/1.png"), 5, 5, 100);
        grey(&d.join("cat/2.png"), 5, 5, 100);
        rgb(&d.join("dog/1.png"), 5, 5, [255, 0, 51]);
        let s = load_image_dir(&d, ImageFolderOptions::default()).unwrap();
        assert_eq!(s.label_names, Some(vec!["cat".to_string(), "dog".into()]));
        assert_eq!(s.train.channels, 3);
        for ds in [&s.train, &s.test] {
            for (row, l) in ds
                .images
                .rows()
                .into_iter()
                .zip(ds.labels.as_ref().unwrap())
            {
                let px = [row[0], row[25], row[50]];
                let want = if *l == 0 {
                    [100.0 / 255.0; 3]
                } else {
                    [1.0, 0.0, 0.2]
                };
                assert!(
                    px.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
                    "{l}: {px:?}"
                );
            }
        }
        grey(&d.join("loose.png"), 5, 5, 0);
        let err = load_image_dir(&d, ImageFolderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("both at its top level"), "{err}");
    }

    #[test]
    fn the_centre_crop_keeps_the_middle() {
        let d = scratch("crop");
        // 12 wide, 4 high: columns 0–3 black, 4–7 white, 8–11 black.
        let img = GrayImage::from_fn(12, 4, |x, _| {
            Luma([if (4..8).contains(&x) { 255 } else { 0 }])
        });
        img.save(d.join("a.png")).unwrap();
        img.save(d.join("b.png")).unwrap();
        let opts = ImageFolderOptions {
            size: Some((4, 4)),
            center_crop: true,
        };
        let s = load_image_dir(&d, opts).unwrap();
        assert!(
            s.train.images.iter().all(|v| *v == 1.0),
            "{:?}",
            s.train.images
        );
        let stretched = load_image_dir(
            &d,
            ImageFolderOptions {
                center_crop: false,
                ..opts
            },
        )
        .unwrap();
        assert!(stretched.train.images.iter().any(|v| *v < 0.5));
    }

    #[test]
    fn hostile_and_broken_files_are_named_errors() {
        // A well-formed PNG claiming 100,000 × 100,000 pixels over a few
        // bytes of image data.
        let chunk = |out: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
            let mut crc = flate2::Crc::new();
            crc.update(kind);
            crc.update(data);
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            out.extend_from_slice(&crc.sum().to_be_bytes());
        };
        let mut ihdr = 100_000u32.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut z, &[0u8; 64]).unwrap();
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(&mut png, b"IDAT", &z.finish().unwrap());
        chunk(&mut png, b"IEND", &[]);
        let err = image_header(&png).unwrap_err();
        assert!(err.contains("100000") || err.contains("limit"), "{err}");

        let d = scratch("hostile");
        grey(&d.join("good.png"), 4, 4, 9);
        let good = std::fs::read(d.join("good.png")).unwrap();
        std::fs::write(d.join("huge.png"), &png).unwrap();
        let err = load_image_dir(&d, ImageFolderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("huge.png"), "{err}");
        std::fs::remove_file(d.join("huge.png")).unwrap();
        std::fs::write(d.join("cut.png"), &good[..good.len() / 2]).unwrap();
        let err = load_image_dir(&d, ImageFolderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cut.png"), "{err}");
        std::fs::write(d.join("cut.png"), b"GIF89a not really").unwrap();
        let err = load_image_dir(&d, ImageFolderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cut.png"), "{err}");
        std::fs::remove_file(d.join("cut.png")).unwrap();
        let err = load_image_dir(&d, ImageFolderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("one image"), "{err}");
        let empty = scratch("empty");
        let err = load_image_dir(&empty, ImageFolderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no PNG or JPEG"), "{err}");
        let mut row = vec![0.0; 3];
        assert!(decode_image(&good, 3, (2, 2), false, &mut row).is_err());
    }

    #[test]
    fn jpeg_files_read_as_png_files_do() {
        let d = scratch("jpeg");
        rgb(&d.join("a.jpg"), 8, 8, [200, 100, 50]);
        rgb(&d.join("b.JPEG"), 8, 8, [200, 100, 50]);
        let s = load_image_dir(&d, ImageFolderOptions::default()).unwrap();
        assert_eq!(s.train.chw(), [3, 8, 8]);
        // JPEG is lossy: a flat colour comes back within a few levels.
        let px = [
            s.train.images[[0, 0]],
            s.train.images[[0, 64]],
            s.train.images[[0, 128]],
        ];
        for (a, b) in px.iter().zip([200.0 / 255.0, 100.0 / 255.0, 50.0 / 255.0]) {
            assert!((a - b).abs() < 4.0 / 255.0, "{px:?}");
        }
    }
}
