//! The IDX format of MNIST, Fashion-MNIST and EMNIST, raw or gzip.
//!
//! An IDX file is a 4-byte magic (`0, 0, type, rank`), `rank` big-endian
//! `u32` dimensions, then the elements in C order. latentlab reads unsigned
//! byte files (type `0x08`), the type of every image and label file of those
//! datasets. Every header field is checked against the bytes really present;
//! gzip input is inflated through a limit derived from the header *and* the
//! compressed size (deflate cannot expand more than 1032:1), so a hostile
//! header claiming gigabytes costs nothing.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest element count accepted (4 GiB of bytes).
const MAX_ELEMENTS: u64 = 1 << 32;
/// Deflate's maximal expansion ratio.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// What can go wrong with an IDX file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdxError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not a valid IDX file (or not the one expected).
    #[error("{path}: {detail}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// An unsigned-byte IDX array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions, outermost first (`[n, 28, 28]` for MNIST images).
    pub dims: Vec<usize>,
    /// The elements in C order.
    pub data: Vec<u8>,
}

fn err(path: &Path, detail: impl Into<String>) -> IdxError {
    IdxError::Format {
        path: path.into(),
        detail: detail.into(),
    }
}

/// Reads an IDX file (gzip-compressed when it starts with gzip's magic).
pub fn read(path: impl AsRef<Path>) -> Result<IdxArray, IdxError> {
    let path = path.as_ref();
    if path.is_dir() {
        return Err(err(path, "is a directory, not an IDX file"));
    }
    let bytes = std::fs::read(path).map_err(|source| IdxError::Io {
        path: path.into(),
        source,
    })?;
    parse(path, &bytes)
}

fn type_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "int16",
        0x0C => "int32",
        0x0D => "float32",
        0x0E => "float64",
        _ => "unknown",
    }
}

/// Parses IDX bytes, raw or gzip (`path` is used in messages only).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<IdxArray, IdxError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return parse_gzip(path, bytes);
    }
    let (dims, header_len) = header(path, bytes)?;
    check_body(path, &dims, bytes.len() - header_len)?;
    let body = &bytes[header_len..];
    Ok(IdxArray {
        dims,
        data: body.to_vec(),
    })
}

/// Checks that `len` bytes of data are exactly what `dims` announce.
fn check_body(path: &Path, dims: &[usize], len: usize) -> Result<(), IdxError> {
    let want: usize = dims.iter().product();
    if len < want {
        return Err(err(
            path,
            format!(
                "truncated: the header announces {dims:?} = {want} bytes of data but only {len} follow"
            ),
        ));
    }
    if len > want {
        return Err(err(
            path,
            format!(
                "{} unexpected bytes after the {want} bytes of data the header announces ({dims:?})",
                len - want
            ),
        ));
    }
    Ok(())
}

/// Checks the magic and dimensions; returns them and the header's length.
fn header(path: &Path, bytes: &[u8]) -> Result<(Vec<usize>, usize), IdxError> {
    if bytes.len() < 4 {
        return Err(err(
            path,
            format!("too short for an IDX file ({} bytes)", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(err(
            path,
            format!(
                "not an IDX file: magic {:02x} {:02x} {:02x} {:02x} (expected 00 00 08 <rank>)",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(err(
            path,
            format!(
                "IDX element type 0x{:02x} ({}) is not supported; latentlab reads unsigned-byte (0x08) files",
                bytes[2],
                type_name(bytes[2])
            ),
        ));
    }
    let rank = usize::from(bytes[3]);
    if rank == 0 || rank > 4 {
        return Err(err(
            path,
            format!("IDX rank {rank} is not supported (1 to 4)"),
        ));
    }
    let header_len = 4 + 4 * rank;
    if bytes.len() < header_len {
        return Err(err(
            path,
            format!("truncated header: rank {rank} needs {header_len} bytes"),
        ));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| {
            let b = &bytes[4 + 4 * i..8 + 4 * i];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
        })
        .collect();
    let total = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&t| t <= MAX_ELEMENTS)
        .ok_or_else(|| err(path, format!("dimensions {dims:?} are implausibly large")))?;
    if total == 0 {
        return Err(err(path, format!("dimensions {dims:?} hold no data")));
    }
    Ok((dims, header_len))
}

fn parse_gzip(path: &Path, bytes: &[u8]) -> Result<IdxArray, IdxError> {
    let limit = (bytes.len() as u64)
        .saturating_mul(MAX_DEFLATE_RATIO)
        .min(MAX_ELEMENTS + 64);
    let mut decoder = flate2::read::MultiGzDecoder::new(bytes).take(limit + 1);
    // The header first: at most 4 + 4·4 bytes.
    let mut head = [0u8; 20];
    let mut got = 0;
    while got < 4 {
        let n = decoder
            .read(&mut head[got..4])
            .map_err(|e| err(path, format!("corrupt gzip stream: {e}")))?;
        if n == 0 {
            return Err(err(path, "the gzip stream ends before the IDX header"));
        }
        got += n;
    }
    let rank = usize::from(head[3]).min(4);
    let header_len = 4 + 4 * rank;
    decoder
        .read_exact(&mut head[4..header_len])
        .map_err(|e| err(path, format!("truncated IDX header inside gzip: {e}")))?;
    let (dims, _) = header(path, &head[..header_len])?;
    let want: usize = dims.iter().product();
    if want as u64 > limit {
        return Err(err(
            path,
            format!(
                "the header announces {dims:?} = {want} bytes, more than a {}-byte gzip file can hold",
                bytes.len()
            ),
        ));
    }
    // Grows with the data really inflated, never with the header's claim.
    let mut data = Vec::new();
    decoder
        .read_to_end(&mut data)
        .map_err(|e| err(path, format!("corrupt gzip stream: {e}")))?;
    check_body(path, &dims, data.len())?;
    Ok(IdxArray { dims, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx(dims: &[u32], body: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend(body);
        v
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn p() -> &'static Path {
        Path::new("x.idx")
    }

    #[test]
    fn reads_raw_and_gzip() {
        let body: Vec<u8> = (0..24).collect();
        let raw = idx(&[2, 3, 4], &body);
        for bytes in [raw.clone(), gz(&raw)] {
            let a = parse(p(), &bytes).unwrap();
            assert_eq!(a.dims, vec![2, 3, 4]);
            assert_eq!(a.data, body);
        }
    }

    #[test]
    fn hostile_files_are_clear_errors() {
        let body: Vec<u8> = (0..24).collect();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "too short"),
            (vec![1, 2, 3, 4, 5], "not an IDX file"),
            (vec![0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0], "float32"),
            (vec![0, 0, 8, 0], "rank 0"),
            (vec![0, 0, 8, 9], "rank 9"),
            (vec![0, 0, 8, 3, 0, 0], "truncated header"),
            (idx(&[2, 3, 4], &body[..20]), "truncated"),
            (
                idx(&[2, 3, 4], &[body.as_slice(), &[1]].concat()),
                "unexpected bytes",
            ),
            (idx(&[0, 3], &[]), "no data"),
            (idx(&[u32::MAX, u32::MAX, 4], &body), "implausibly large"),
            (idx(&[65536, 65535], &body), "truncated"),
            (gz(&idx(&[60000, 28, 28], &body)), "more than"),
            (gz(&idx(&[2, 3, 4], &body[..10])), "truncated"),
            (gz(&[0, 0]), "before the IDX header"),
            ([&[0x1f, 0x8b], &[0u8; 30][..]].concat(), "gzip"),
            (gz(&idx(&[2, 3, 4], &body))[..30].to_vec(), "gzip"),
        ];
        for (bytes, needle) in cases {
            let e = parse(p(), &bytes).unwrap_err().to_string();
            assert!(e.contains(needle), "expected {needle:?} in {e:?}");
            assert!(e.starts_with("x.idx: "), "{e}");
        }
    }

    #[test]
    fn missing_and_directory() {
        let e = read("/nonexistent/t.idx").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/t.idx"), "{e}");
        let e = read(std::env::temp_dir()).unwrap_err().to_string();
        assert!(e.contains("directory"), "{e}");
    }
}
