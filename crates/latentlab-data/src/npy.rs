//! NumPy `.npy` files (format versions 1, 2 and 3), little- or big-endian,
//! C order, element types f32, f64, u8 and i64.
//!
//! Reading never trusts the header: the shape must multiply out to exactly
//! the number of bytes that follow it, so a hostile header cannot make the
//! reader allocate more than the file holds. Every error names the file and
//! what is wrong. Writing goes through a temporary file, `fsync` and a rename,
//! so a crash never leaves a torn file.
//!
//! ```
//! use latentlab_data::npy::{self, NpyArray};
//! let dir = std::env::temp_dir().join(format!("npy-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("z.npy");
//! npy::write_f64(&path, &[3], &[1.0, 2.0, 3.0]).unwrap();
//! let a = npy::read(&path).unwrap();
//! assert_eq!(a.shape(), &[3]);
//! assert_eq!(a.to_f64(), vec![1.0, 2.0, 3.0]);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::path::{Path, PathBuf};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Headers longer than this are refused (NumPy itself writes < 1 KiB).
const MAX_HEADER: usize = 1 << 20;

/// What can go wrong with a `.npy` file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not a valid `.npy` file.
    #[error("{path}: not a valid .npy file: {detail}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The array is valid but not what the caller needs.
    #[error("{path}: {detail}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// The element data of a `.npy` array.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    /// `<f4`
    F32(Vec<f32>),
    /// `<f8`
    F64(Vec<f64>),
    /// `|u1`
    U8(Vec<u8>),
    /// `<i8`
    I64(Vec<i64>),
}

impl NpyData {
    /// The `numpy` name of the element type.
    pub fn dtype(&self) -> &'static str {
        match self {
            NpyData::F32(_) => "float32",
            NpyData::F64(_) => "float64",
            NpyData::U8(_) => "uint8",
            NpyData::I64(_) => "int64",
        }
    }
}

/// An array read from a `.npy` file, in C order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    shape: Vec<usize>,
    data: NpyData,
}

impl NpyArray {
    /// The array's shape (empty for a scalar).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element data.
    pub fn data(&self) -> &NpyData {
        &self.data
    }

    /// The `numpy` name of the element type.
    pub fn dtype(&self) -> &'static str {
        self.data.dtype()
    }

    /// Every element as `f64` (exact for all four types but large i64).
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            NpyData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::F64(v) => v.clone(),
            NpyData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }
}

fn format_err(path: &Path, detail: impl Into<String>) -> NpyError {
    NpyError::Format {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

/// Reads a `.npy` file.
pub fn read(path: impl AsRef<Path>) -> Result<NpyArray, NpyError> {
    let path = path.as_ref();
    if path.is_dir() {
        return Err(NpyError::Unsupported {
            path: path.into(),
            detail: "is a directory, not a .npy file".into(),
        });
    }
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io {
        path: path.into(),
        source,
    })?;
    parse(path, &bytes)
}

/// What a `.npy` header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// The array's shape.
    pub shape: Vec<usize>,
    /// The element type: `f` f32, `d` f64, `b` u8, `l` i64.
    pub(crate) kind: char,
    /// Bytes per element.
    pub item_size: usize,
    /// Big-endian elements.
    pub(crate) big: bool,
    /// Where the data start (the header's length).
    pub data_start: usize,
}

impl NpyHeader {
    /// The number of data bytes the shape and type need.
    pub fn data_len(&self) -> Option<usize> {
        self.shape
            .iter()
            .try_fold(self.item_size, |acc, &d| acc.checked_mul(d))
    }

    /// The `numpy` name of the element type.
    pub fn dtype(&self) -> &'static str {
        match self.kind {
            'f' => "float32",
            'd' => "float64",
            'b' => "uint8",
            _ => "int64",
        }
    }
}

/// The bytes the header of a `.npy` file takes, from its first 12 bytes
/// (or fewer, for a truncated file): magic, version, length and text.
pub fn header_len(path: &Path, prefix: &[u8]) -> Result<usize, NpyError> {
    if prefix.len() < 10 {
        return Err(format_err(
            path,
            format!("{} bytes is too short for a .npy header", prefix.len()),
        ));
    }
    if &prefix[..6] != MAGIC {
        return Err(format_err(path, "wrong magic (expected \\x93NUMPY)"));
    }
    let (major, minor) = (prefix[6], prefix[7]);
    let (len, start) = match major {
        1 => (usize::from(u16::from_le_bytes([prefix[8], prefix[9]])), 10),
        2 | 3 => {
            if prefix.len() < 12 {
                return Err(format_err(path, "truncated header length"));
            }
            (
                u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as usize,
                12,
            )
        }
        _ => {
            return Err(format_err(
                path,
                format!("unsupported format version {major}.{minor}"),
            ));
        }
    };
    if len > MAX_HEADER {
        return Err(format_err(
            path,
            format!("header claims {len} bytes (limit {MAX_HEADER})"),
        ));
    }
    Ok(start + len)
}

/// Parses the header at the start of `bytes` (which need hold no more
/// than the header; `path` is used in messages only).
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<NpyHeader, NpyError> {
    let end = header_len(path, &bytes[..bytes.len().min(12)])?;
    let start = if bytes[6] == 1 { 10 } else { 12 };
    if bytes.len() < end {
        return Err(format_err(
            path,
            format!(
                "truncated: header claims {} bytes, file has {}",
                end - start,
                bytes.len() - start
            ),
        ));
    }
    let header = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| format_err(path, "header is not text"))?;
    let descr =
        dict_value(header, "descr").ok_or_else(|| format_err(path, "header has no 'descr'"))?;
    let fortran = dict_value(header, "fortran_order")
        .ok_or_else(|| format_err(path, "header has no 'fortran_order'"))?;
    let shape_text =
        dict_value(header, "shape").ok_or_else(|| format_err(path, "header has no 'shape'"))?;
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    if fortran.trim() != "False" {
        return Err(NpyError::Unsupported {
            path: path.into(),
            detail: "Fortran-order arrays are not supported; save with np.ascontiguousarray".into(),
        });
    }
    let shape = parse_shape(shape_text)
        .ok_or_else(|| format_err(path, format!("unreadable shape {shape_text:?}")))?;
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format_err(path, format!("shape {shape:?} overflows")))?;
    let (kind, item_size) = match descr {
        "<f4" | ">f4" | "=f4" => ('f', 4),
        "<f8" | ">f8" | "=f8" => ('d', 8),
        "|u1" | "<u1" | ">u1" | "u1" => ('b', 1),
        "<i8" | ">i8" | "=i8" => ('l', 8),
        other => {
            return Err(NpyError::Unsupported {
                path: path.into(),
                detail: format!(
                    "element type {other:?} is not supported (use float32, float64, uint8 or int64)"
                ),
            });
        }
    };
    let h = NpyHeader {
        shape,
        kind,
        item_size,
        big: descr.starts_with('>'),
        data_start: end,
    };
    h.data_len()
        .ok_or_else(|| format_err(path, "size overflows"))?;
    Ok(h)
}

/// Parses the bytes of a `.npy` file (`path` is used in messages only).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<NpyArray, NpyError> {
    let h = parse_header(path, bytes)?;
    let (shape, descr) = (h.shape.clone(), h.dtype());
    let body = &bytes[h.data_start..];
    let need = h
        .data_len()
        .ok_or_else(|| format_err(path, "size overflows"))?;
    if body.len() != need {
        return Err(format_err(
            path,
            format!(
                "shape {shape:?} of {descr} needs {need} data bytes but the file has {} (truncated or padded)",
                body.len()
            ),
        ));
    }
    let data = decode_body(&h, body);
    Ok(NpyArray { shape, data })
}

/// The elements of `body` (the data after header `h`, already checked to
/// be `h.data_len()` bytes long).
pub(crate) fn decode_body(h: &NpyHeader, body: &[u8]) -> NpyData {
    let big = h.big;
    match h.kind {
        'f' => NpyData::F32(decode(body, big, f32::from_le_bytes, f32::from_be_bytes).collect()),
        'd' => NpyData::F64(decode(body, big, f64::from_le_bytes, f64::from_be_bytes).collect()),
        'b' => NpyData::U8(body.to_vec()),
        _ => NpyData::I64(decode(body, big, i64::from_le_bytes, i64::from_be_bytes).collect()),
    }
}

/// Numbers of `N` bytes each from `bytes`, little- or big-endian (a trailing
/// partial number is ignored; callers check lengths first).
pub(crate) fn decode<T: 'static, const N: usize>(
    bytes: &[u8],
    big: bool,
    le: fn([u8; N]) -> T,
    be: fn([u8; N]) -> T,
) -> impl Iterator<Item = T> + '_ {
    let from = if big { be } else { le };
    bytes
        .chunks_exact(N)
        .map(move |c| from(c.try_into().expect("chunks of N bytes")))
}

/// The text of `'key': value` in a Python dict literal (value up to the next
/// top-level comma).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pos = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[pos + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0i32;
    for (i, ch) in rest.char_indices() {
        match ch {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(&rest[..i]),
            _ => {}
        }
        if depth < 0 {
            return None;
        }
    }
    None
}

fn parse_shape(text: &str) -> Option<Vec<usize>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse().ok())
        .collect()
}

fn header_bytes(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if shape.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad with spaces so that magic + version + length + header + '\n' is a multiple of 64.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

fn check_len(path: &Path, shape: &[usize], len: usize) -> Result<(), NpyError> {
    let count: usize = shape.iter().product();
    if count != len {
        return Err(NpyError::Unsupported {
            path: path.into(),
            detail: format!("shape {shape:?} needs {count} values, {len} given"),
        });
    }
    Ok(())
}

/// Writes a header for `descr` and the encoded elements, atomically.
fn write_typed<T: Copy, const N: usize>(
    path: &Path,
    descr: &str,
    shape: &[usize],
    data: &[T],
    encode: fn(T) -> [u8; N],
) -> Result<(), NpyError> {
    check_len(path, shape, data.len())?;
    let mut bytes = header_bytes(descr, shape);
    bytes.extend(data.iter().flat_map(|&v| encode(v)));
    write_atomic(path, &bytes)
}

/// Writes `data` (C order) as a little-endian `float64` `.npy` file, atomically.
pub fn write_f64(path: impl AsRef<Path>, shape: &[usize], data: &[f64]) -> Result<(), NpyError> {
    write_typed(path.as_ref(), "<f8", shape, data, f64::to_le_bytes)
}

/// Writes `data` (C order) as a little-endian `float32` `.npy` file, atomically.
pub fn write_f32(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    write_typed(path.as_ref(), "<f4", shape, data, f32::to_le_bytes)
}

/// Writes `data` as a `uint8` `.npy` file, atomically.
pub fn write_u8(path: impl AsRef<Path>, shape: &[usize], data: &[u8]) -> Result<(), NpyError> {
    write_typed(path.as_ref(), "|u1", shape, data, |v: u8| [v])
}

/// Writes `data` as a little-endian `int64` `.npy` file, atomically.
pub fn write_i64(path: impl AsRef<Path>, shape: &[usize], data: &[i64]) -> Result<(), NpyError> {
    write_typed(path.as_ref(), "<i8", shape, data, i64::to_le_bytes)
}

/// Writes `bytes` to `path` atomically; see [`crate::fs::write_atomic`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NpyError> {
    crate::fs::write_atomic(path, bytes).map_err(|source| NpyError::Io {
        path: path.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("latentlab-npy-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join("a.npy")
    }

    #[test]
    fn round_trips_every_type() {
        let p = tmp("rt");
        write_f32(&p, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap();
        let a = read(&p).unwrap();
        assert_eq!((a.shape(), a.dtype()), (&[2usize, 3][..], "float32"));
        assert_eq!(a.data(), &NpyData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]));
        write_f64(&p, &[1], &[0.1]).unwrap();
        assert_eq!(read(&p).unwrap().data(), &NpyData::F64(vec![0.1]));
        write_u8(&p, &[4], &[0, 1, 2, 255]).unwrap();
        assert_eq!(read(&p).unwrap().data(), &NpyData::U8(vec![0, 1, 2, 255]));
        write_i64(&p, &[2, 1], &[-5, 1 << 40]).unwrap();
        assert_eq!(read(&p).unwrap().data(), &NpyData::I64(vec![-5, 1 << 40]));
        // The header is padded to 64 bytes, as NumPy does.
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((bytes.len() - 16) % 64, 0);
    }

    /// Bytes NumPy 1.26 wrote for `np.save(f, np.arange(3, dtype='<f8'))`.
    #[test]
    fn reads_numpy_output() {
        let mut b =
            b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }"
                .to_vec();
        b.extend(std::iter::repeat_n(b' ', 128 - b.len() - 1));
        b.push(b'\n');
        for v in [0.0f64, 1.0, 2.0] {
            b.extend(v.to_le_bytes());
        }
        let a = parse(Path::new("mem.npy"), &b).unwrap();
        assert_eq!(a.to_f64(), vec![0.0, 1.0, 2.0]);
    }

    /// A `.npy` file with the given header dict and data bytes.
    fn file(dict: &str, body: &[u8]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&((dict.len() + 1) as u16).to_le_bytes());
        b.extend_from_slice(dict.as_bytes());
        b.push(b'\n');
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn hostile_files_are_clear_errors() {
        let dict = |descr: &str, fortran: &str, shape: &str| {
            format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}")
        };
        let good = file(&dict("<f4", "False", "(2, 2)"), &[0u8; 16]);
        assert!(parse(Path::new("good.npy"), &good).is_ok());
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", vec![], "too short"),
            ("magic", b"PK\x03\x04 not numpy at all".to_vec(), "magic"),
            (
                "truncated data",
                good[..good.len() - 3].to_vec(),
                "truncated",
            ),
            ("truncated header", good[..20].to_vec(), "truncated"),
            (
                "huge shape",
                file(&dict("<f4", "False", "(100000, 100000)"), &[0u8; 16]),
                "needs 40000000000",
            ),
            (
                "overflow",
                file(
                    &dict("<f4", "False", "(18446744073709551615, 3)"),
                    &[0u8; 16],
                ),
                "overflow",
            ),
            (
                "bad shape",
                file(&dict("<f4", "False", "(two, 2)"), &[0u8; 16]),
                "shape",
            ),
            (
                "no descr",
                file("{'fortran_order': False, 'shape': (2,), }", &[0u8; 8]),
                "descr",
            ),
            (
                "dtype",
                file(&dict("<c8", "False", "(2, 2)"), &[0u8; 32]),
                "not supported",
            ),
            (
                "fortran",
                file(&dict("<f4", "True", "(2, 2)"), &[0u8; 16]),
                "Fortran",
            ),
            (
                "version",
                [&good[..6], &[9, 0], &good[8..]].concat(),
                "version",
            ),
            (
                "huge header",
                [&good[..6], &[2, 0], &u32::MAX.to_le_bytes(), &good[10..]].concat(),
                "header claims",
            ),
        ];
        let mut failures = Vec::new();
        for (name, bytes, needle) in cases {
            match parse(Path::new("bad.npy"), &bytes) {
                Ok(a) => failures.push(format!("{name}: accepted as {:?}", a.shape())),
                Err(e)
                    if !(e.to_string().contains(needle) && e.to_string().contains("bad.npy")) =>
                {
                    failures.push(format!("{name}: message {e}"))
                }
                Err(_) => {}
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn missing_file_and_directory() {
        let e = read("/definitely/not/here.npy").unwrap_err().to_string();
        assert!(e.contains("/definitely/not/here.npy"), "{e}");
        let e = read(std::env::temp_dir()).unwrap_err().to_string();
        assert!(e.contains("directory"), "{e}");
    }
}
