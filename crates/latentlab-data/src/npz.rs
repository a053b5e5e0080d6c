//! The original dSprites file, `dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`:
//! a zip (deflate) of `.npy` members, `imgs` (u8 0/1, N × 64 × 64),
//! `latents_classes` (int64, N × 6) and `latents_values` (float64, N × 6).
//!
//! `imgs` is streamed out of the archive and held bit-packed (737,280
//! images in 377 MB, where bytes would take 3 GB and floats 12 GB); images
//! are unpacked to floats only for the rows a command uses. Nothing is
//! trusted: each member's `.npy` header must agree with the size the
//! archive declares for it, and exactly that many bytes are read, so a
//! zip bomb or a lying header is an error, not an allocation.

use std::io::Read;
use std::path::Path;

use ndarray::Array2;

use crate::dataset::{DataError, Dataset, Split, invalid};
use crate::npy::{self, NpyData};

/// The most pixels (images × height × width) `imgs` may hold: 2³³, whose
/// bits take 1 GiB.
const MAX_PIXELS: u64 = 1 << 33;
/// The most bytes `latents_classes` or `latents_values` may hold.
const MAX_LATENT_BYTES: u64 = 1 << 30;
/// Images read from the stream at a time.
const CHUNK_IMAGES: usize = 256;

/// Binary images held one bit per pixel.
#[derive(Clone, Debug)]
pub struct PackedImages {
    n: usize,
    h: usize,
    w: usize,
    /// Bytes per image (`⌈h·w / 8⌉`).
    stride: usize,
    bits: Vec<u8>,
}

impl PackedImages {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True when there is no image.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// `(height, width)`.
    pub fn image_shape(&self) -> (usize, usize) {
        (self.h, self.w)
    }

    /// Image `i` as `h·w` values 0.0 or 1.0 in `out`.
    pub fn unpack_into(&self, i: usize, out: &mut [f32]) {
        let bits = &self.bits[i * self.stride..][..self.stride];
        for (j, o) in out.iter_mut().enumerate().take(self.h * self.w) {
            *o = f32::from((bits[j / 8] >> (j % 8)) & 1);
        }
    }

    /// The images at `rows`, one per row (`rows.len() × h·w`).
    pub fn rows(&self, rows: &[usize]) -> Array2<f32> {
        let d = self.h * self.w;
        let mut out = Array2::zeros((rows.len(), d));
        for (o, &i) in out.rows_mut().into_iter().zip(rows) {
            self.unpack_into(
                i,
                o.into_slice().expect("rows of a new array are contiguous"),
            );
        }
        out
    }
}

/// The dSprites file's contents.
#[derive(Clone, Debug)]
pub struct DspritesNpz {
    /// `imgs`, bit-packed.
    pub images: PackedImages,
    /// `latents_classes`: N × 6 classes (colour, shape, scale,
    /// orientation, x, y).
    pub classes: Array2<usize>,
    /// `latents_values`: N × 6 values.
    pub values: Array2<f64>,
}

/// The names of the file's six latent columns.
pub const LATENT_NAMES: [&str; 6] = ["color", "shape", "scale", "orientation", "pos_x", "pos_y"];

/// Reads a member's `.npy` header from its stream, checking it against the
/// size the archive declares (`declared`, uncompressed).
fn member_header(
    path: &Path,
    name: &str,
    r: &mut impl Read,
    declared: u64,
) -> Result<npy::NpyHeader, DataError> {
    let at = |detail: String| invalid(path, format!("member {name}: {detail}"));
    // npy's errors name the member (as their path).
    let npy_err = |e: npy::NpyError| invalid(path, format!("member {e}"));
    let member = Path::new(name);
    let mut prefix = [0u8; 12];
    let got = read_full(r, &mut prefix).map_err(|e| at(e.to_string()))?;
    let len = npy::header_len(member, &prefix[..got]).map_err(npy_err)?;
    if len as u64 > declared {
        return Err(at(format!(
            "the header claims {len} bytes, the archive {declared} for the whole member"
        )));
    }
    let mut head = prefix[..got.min(len)].to_vec();
    if len > got {
        let mut rest = vec![0u8; len - got];
        let n = read_full(r, &mut rest).map_err(|e| at(e.to_string()))?;
        head.extend_from_slice(&rest[..n]);
    }
    let h = npy::parse_header(member, &head).map_err(npy_err)?;
    let data = h.data_len().unwrap_or(usize::MAX) as u64;
    if (h.data_start as u64).checked_add(data) != Some(declared) {
        return Err(at(format!(
            "shape {:?} of {} needs {} bytes after the header, but the archive declares {} for the member",
            h.shape,
            h.dtype(),
            data,
            declared.saturating_sub(h.data_start as u64)
        )));
    }
    Ok(h)
}

/// Reads until `buf` is full or the stream ends; the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads exactly `buf.len()` bytes of member `name`.
fn read_exact(path: &Path, name: &str, r: &mut impl Read, buf: &mut [u8]) -> Result<(), DataError> {
    let n = read_full(r, buf).map_err(|e| invalid(path, format!("member {name}: {e}")))?;
    if n < buf.len() {
        return Err(invalid(
            path,
            format!("member {name}: truncated ({} bytes short)", buf.len() - n),
        ));
    }
    Ok(())
}

/// Reads `latents_classes` or `latents_values`: N × 6, whole.
fn latents(
    path: &Path,
    archive: &mut zip::ZipArchive<impl Read + std::io::Seek>,
    name: &str,
    n: usize,
) -> Result<NpyData, DataError> {
    let member = format!("{name}.npy");
    let mut f = archive
        .by_name(&member)
        .map_err(|e| invalid(path, format!("no member {member}: {e}")))?;
    let declared = declared_size(path, &member, &f)?;
    if declared > MAX_LATENT_BYTES {
        return Err(invalid(
            path,
            format!("member {member}: {declared} bytes is too large (limit {MAX_LATENT_BYTES})"),
        ));
    }
    let h = member_header(path, &member, &mut f, declared)?;
    if h.shape != [n, 6] {
        return Err(invalid(
            path,
            format!(
                "member {member}: shape {:?}, expected [{n}, 6] (one row of 6 per image)",
                h.shape
            ),
        ));
    }
    let mut body = vec![0u8; declared as usize - h.data_start];
    read_exact(path, &member, &mut f, &mut body)?;
    Ok(npy::decode_body(&h, &body))
}

/// Reads the dSprites `.npz` file at `path`.
pub fn read_dsprites_npz(path: impl AsRef<Path>) -> Result<DspritesNpz, DataError> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| invalid(path, e.to_string()))?;
    parse_dsprites_npz(path, std::io::BufReader::new(file))
}

/// The most a deflate stream expands (about 1032:1), with room to spare: a
/// member declaring more than this many bytes per compressed byte is a zip
/// bomb or a broken archive.
const MAX_RATIO: u64 = 1100;

/// The uncompressed size a member declares, refused when its compressed
/// bytes cannot hold it.
fn declared_size<R: Read>(
    path: &Path,
    name: &str,
    f: &zip::read::ZipFile<'_, R>,
) -> Result<u64, DataError> {
    let (size, packed) = (f.size(), f.compressed_size());
    if size > packed.saturating_mul(MAX_RATIO).saturating_add(1 << 12) {
        return Err(invalid(
            path,
            format!(
                "member {name} declares {size} bytes from {packed} compressed ones, more than deflate expands (a zip bomb or a broken archive)"
            ),
        ));
    }
    Ok(size)
}

/// Reads a dSprites `.npz` archive from `reader` (`path` names it in
/// messages).
pub fn parse_dsprites_npz(
    path: &Path,
    reader: impl Read + std::io::Seek,
) -> Result<DspritesNpz, DataError> {
    let mut archive = zip::ZipArchive::new(reader)
        .map_err(|e| invalid(path, format!("not a readable .npz (zip) archive: {e}")))?;
    let images = {
        let mut f = archive
            .by_name("imgs.npy")
            .map_err(|e| invalid(path, format!("no member imgs.npy: {e}")))?;
        let declared = declared_size(path, "imgs.npy", &f)?;
        let h = member_header(path, "imgs.npy", &mut f, declared)?;
        let [n, ih, iw] = h.shape[..] else {
            return Err(invalid(
                path,
                format!("member imgs.npy: shape {:?}, expected N × H × W", h.shape),
            ));
        };
        if h.dtype() != "uint8" {
            return Err(invalid(
                path,
                format!(
                    "member imgs.npy: {} images, expected uint8 (0/1)",
                    h.dtype()
                ),
            ));
        }
        let pixels = (n as u64) * (ih as u64) * (iw as u64);
        if pixels > MAX_PIXELS || n == 0 || ih == 0 || iw == 0 {
            return Err(invalid(
                path,
                format!(
                    "member imgs.npy: shape {:?} (at least one pixel, at most {MAX_PIXELS})",
                    h.shape
                ),
            ));
        }
        let d = ih * iw;
        let stride = d.div_ceil(8);
        let mut bits = vec![0u8; n * stride];
        let mut buf = vec![0u8; CHUNK_IMAGES * d];
        for (c, packed) in bits.chunks_mut(CHUNK_IMAGES * stride).enumerate() {
            let k = packed.len() / stride;
            let chunk = &mut buf[..k * d];
            read_exact(path, "imgs.npy", &mut f, chunk)?;
            for (j, (img, out)) in chunk
                .chunks_exact(d)
                .zip(packed.chunks_exact_mut(stride))
                .enumerate()
            {
                for (p, &v) in img.iter().enumerate() {
                    match v {
                        0 => {}
                        1 => out[p / 8] |= 1 << (p % 8),
                        other => {
                            return Err(invalid(
                                path,
                                format!(
                                    "member imgs.npy: image {} holds {other}; dSprites images are 0/1",
                                    c * CHUNK_IMAGES + j
                                ),
                            ));
                        }
                    }
                }
            }
        }
        PackedImages {
            n,
            h: ih,
            w: iw,
            stride,
            bits,
        }
    };
    let n = images.len();
    let classes = match latents(path, &mut archive, "latents_classes", n)? {
        NpyData::I64(v) => {
            if let Some(i) = v.iter().position(|c| *c < 0 || *c > 1 << 20) {
                return Err(invalid(
                    path,
                    format!(
                        "member latents_classes.npy: element {i} is {}, not a class",
                        v[i]
                    ),
                ));
            }
            Array2::from_shape_vec((n, 6), v.into_iter().map(|c| c as usize).collect())
                .expect("n × 6 checked")
        }
        other => {
            return Err(invalid(
                path,
                format!(
                    "member latents_classes.npy: {} classes, expected int64",
                    other.dtype()
                ),
            ));
        }
    };
    let values = match latents(path, &mut archive, "latents_values", n)? {
        NpyData::F64(v) => Array2::from_shape_vec((n, 6), v).expect("n × 6 checked"),
        NpyData::F32(v) => Array2::from_shape_vec((n, 6), v.into_iter().map(f64::from).collect())
            .expect("n × 6 checked"),
        other => {
            return Err(invalid(
                path,
                format!(
                    "member latents_values.npy: {} values, expected float64",
                    other.dtype()
                ),
            ));
        }
    };
    Ok(DspritesNpz {
        images,
        classes,
        values,
    })
}

impl DspritesNpz {
    /// The latent columns that vary (the file's colour column holds one
    /// value): their indices into the six.
    pub fn factor_columns(&self) -> Vec<usize> {
        (0..6)
            .filter(|&k| {
                let c = self.classes.column(k);
                c.iter().any(|v| *v != c[0])
            })
            .collect()
    }

    /// The number of classes of each latent column (its largest class + 1).
    pub fn class_counts(&self) -> [usize; 6] {
        let mut s = [0; 6];
        for (k, v) in s.iter_mut().enumerate() {
            *v = self.classes.column(k).iter().max().map_or(0, |m| m + 1);
        }
        s
    }

    /// True when row `i` holds the classes whose mixed-radix number (the
    /// last column fastest) is `i`, for every row: the full factor grid in
    /// order, as the original file is.
    pub fn is_ordered_grid(&self) -> bool {
        let sizes = self.class_counts();
        if sizes.iter().product::<usize>() != self.images.len() {
            return false;
        }
        self.classes.rows().into_iter().enumerate().all(|(i, row)| {
            let mut rest = i;
            for k in (0..6).rev() {
                if row[k] != rest % sizes[k] {
                    return false;
                }
                rest /= sizes[k];
            }
            true
        })
    }

    /// The row of the image with latent classes `classes` (all six), in an
    /// ordered grid ([`DspritesNpz::is_ordered_grid`]).
    pub fn grid_index(&self, classes: &[usize; 6]) -> usize {
        let sizes = self.class_counts();
        classes.iter().zip(sizes).fold(0, |acc, (c, s)| acc * s + c)
    }

    /// `n_train` and `n_test` disjoint images drawn with `seed` (as the
    /// procedural [`crate::dsprites::split`] draws its indices), with the
    /// varying latent columns as factor classes.
    pub fn split(&self, n_train: usize, n_test: usize, seed: u64, name: String) -> Split {
        let idx = crate::rng::subset(self.images.len(), n_train + n_test, seed, 0);
        let (train, test) = idx.split_at(n_train.min(idx.len()));
        let cols = self.factor_columns();
        let part = |rows: &[usize]| Dataset {
            images: self.images.rows(rows),
            labels: None,
            factor_classes: Some(Array2::from_shape_fn((rows.len(), cols.len()), |(r, k)| {
                self.classes[[rows[r], cols[k]]]
            })),
            image_shape: self.images.image_shape(),
            channels: 1,
        };
        Split {
            name,
            train: part(train),
            test: part(test),
            label_names: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_images_unpack_to_their_bits() {
        let (n, h, w) = (3usize, 3usize, 5usize);
        let stride = (h * w).div_ceil(8);
        let mut bits = vec![0u8; n * stride];
        // Image i has pixel p on when (p + i) % 3 == 0.
        for i in 0..n {
            for p in 0..h * w {
                if (p + i) % 3 == 0 {
                    bits[i * stride + p / 8] |= 1 << (p % 8);
                }
            }
        }
        let img = PackedImages {
            n,
            h,
            w,
            stride,
            bits,
        };
        let rows = img.rows(&[2, 0]);
        for (r, i) in [2usize, 0].iter().enumerate() {
            for p in 0..h * w {
                assert_eq!(rows[[r, p]], f32::from(u8::from((p + i) % 3 == 0)));
            }
        }
    }
}
