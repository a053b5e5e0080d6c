//! Row-streaming readers for large float matrices on disk: a 2-D `.npy`
//! array, or a named 2-D tensor of a `.safetensors` file. Only the header is
//! read up front (bounded, checked against the file's real size); rows are
//! then read in chunks, so memory follows the chunk, not the file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use ndarray::Array2;

use crate::npy::decode;

/// Headers longer than this are refused.
const MAX_HEADER: u64 = 100 << 20;

/// Element type of a streamed matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Element {
    /// 4-byte float.
    F32,
    /// 8-byte float.
    F64,
}

impl Element {
    fn size(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::F64 => 8,
        }
    }
}

/// A float matrix on disk, read by rows.
#[derive(Debug)]
pub struct RawMatrix {
    file: File,
    path: PathBuf,
    offset: u64,
    rows: usize,
    cols: usize,
    element: Element,
    big_endian: bool,
}

fn bad(path: &Path, detail: impl Into<String>) -> String {
    format!("{}: {}", path.display(), detail.into())
}

fn open(path: &Path) -> Result<(File, u64), String> {
    if path.is_dir() {
        return Err(bad(path, "is a directory, not a file"));
    }
    let file = File::open(path).map_err(|e| bad(path, e.to_string()))?;
    let len = file.metadata().map_err(|e| bad(path, e.to_string()))?.len();
    Ok((file, len))
}

fn read_prefix(file: &mut File, path: &Path, n: u64) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; n as usize];
    file.read_exact(&mut buf)
        .map_err(|_| bad(path, format!("truncated: the header needs {n} bytes")))?;
    Ok(buf)
}

impl RawMatrix {
    /// Opens a 2-D float32/float64 `.npy` file.
    pub fn open_npy(path: &Path) -> Result<Self, String> {
        let (mut file, len) = open(path)?;
        if len < 10 {
            return Err(bad(
                path,
                format!("{len} bytes is too short for a .npy header"),
            ));
        }
        let head = read_prefix(&mut file, path, 10)?;
        if &head[..6] != b"\x93NUMPY" {
            return Err(bad(path, "not a .npy file (wrong magic)"));
        }
        let (hlen, start) = match head[6] {
            1 => (u64::from(u16::from_le_bytes([head[8], head[9]])), 10u64),
            2 | 3 => {
                let more = read_prefix(&mut file, path, 2)?;
                (
                    u64::from(u32::from_le_bytes([head[8], head[9], more[0], more[1]])),
                    12,
                )
            }
            v => return Err(bad(path, format!("unsupported .npy version {v}"))),
        };
        if hlen > (1 << 20) || start + hlen > len {
            return Err(bad(
                path,
                format!("header claims {hlen} bytes; the file has {len}"),
            ));
        }
        let header = read_prefix(&mut file, path, hlen)?;
        let header = String::from_utf8(header).map_err(|_| bad(path, "header is not text"))?;
        let field = |key: &str| -> Option<String> {
            let pos = header.find(&format!("'{key}'"))?;
            let rest = header[pos + key.len() + 2..]
                .trim_start()
                .strip_prefix(':')?;
            let end = if rest.trim_start().starts_with('(') {
                rest.find(')')? + 1
            } else {
                rest.find([',', '}'])?
            };
            Some(rest[..end].trim().to_string())
        };
        let descr = field("descr").ok_or_else(|| bad(path, "header has no 'descr'"))?;
        let descr = descr.trim_matches(|c| c == '\'' || c == '"');
        let (element, big_endian) = match descr {
            "<f4" | "=f4" => (Element::F32, false),
            ">f4" => (Element::F32, true),
            "<f8" | "=f8" => (Element::F64, false),
            ">f8" => (Element::F64, true),
            other => {
                return Err(bad(
                    path,
                    format!("latents must be float32 or float64, not {other}"),
                ));
            }
        };
        if field("fortran_order").as_deref() != Some("False") {
            return Err(bad(path, "Fortran-order arrays are not supported"));
        }
        let shape = field("shape").ok_or_else(|| bad(path, "header has no 'shape'"))?;
        let dims: Vec<usize> = shape
            .trim_start_matches('(')
            .trim_end_matches(')')
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad(path, format!("unreadable shape {shape}")))?;
        let [rows, cols] = dims[..] else {
            return Err(bad(
                path,
                format!("latents must be 2-D (N × d), but the array has shape {dims:?}"),
            ));
        };
        Self::checked(
            file,
            path,
            start + hlen,
            rows,
            cols,
            element,
            big_endian,
            len,
        )
    }

    /// Opens tensor `name` of a `.safetensors` file.
    pub fn open_safetensors(path: &Path, name: &str) -> Result<Self, String> {
        let (mut file, len) = open(path)?;
        if len < 8 {
            return Err(bad(path, "not a readable safetensors file (too short)"));
        }
        let n = u64::from_le_bytes(
            read_prefix(&mut file, path, 8)?
                .try_into()
                .expect("8 bytes"),
        );
        if n > MAX_HEADER || 8 + n > len {
            return Err(bad(
                path,
                format!(
                    "not a readable safetensors file (header claims {n} bytes; the file has {len})"
                ),
            ));
        }
        let header = read_prefix(&mut file, path, n)?;
        let meta: serde_json::Value = serde_json::from_slice(&header)
            .map_err(|e| bad(path, format!("not a readable safetensors file ({e})")))?;
        let Some(t) = meta.get(name) else {
            let names: Vec<&str> = meta
                .as_object()
                .map(|o| {
                    o.keys()
                        .filter(|k| *k != "__metadata__")
                        .map(String::as_str)
                        .collect()
                })
                .unwrap_or_default();
            return Err(bad(
                path,
                format!(
                    "no tensor `{name}` (it holds {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        };
        let element = match t.get("dtype").and_then(|d| d.as_str()) {
            Some("F32") => Element::F32,
            Some("F64") => Element::F64,
            other => {
                return Err(bad(
                    path,
                    format!(
                        "`{name}` must be F32 or F64, not {}",
                        other.unwrap_or("unknown")
                    ),
                ));
            }
        };
        let shape: Vec<usize> = t
            .get("shape")
            .and_then(|s| s.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_u64().map(|v| v as usize))
                    .collect()
            })
            .unwrap_or_default();
        let [rows, cols] = shape[..] else {
            return Err(bad(
                path,
                format!("`{name}` must be 2-D (N × d), not {shape:?}"),
            ));
        };
        let offs: Vec<u64> = t
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
            .unwrap_or_default();
        let [a, b] = offs[..] else {
            return Err(bad(path, format!("`{name}` has no data offsets")));
        };
        let need = (rows as u64)
            .checked_mul(cols as u64)
            .and_then(|c| c.checked_mul(element.size()))
            .ok_or_else(|| bad(path, format!("`{name}`'s shape overflows")))?;
        if b < a || b - a != need {
            return Err(bad(
                path,
                format!(
                    "`{name}` claims {} data bytes for shape {shape:?}, which needs {need}",
                    b.saturating_sub(a)
                ),
            ));
        }
        Self::checked(file, path, 8 + n + a, rows, cols, element, false, len)
    }

    #[allow(clippy::too_many_arguments)]
    fn checked(
        file: File,
        path: &Path,
        offset: u64,
        rows: usize,
        cols: usize,
        element: Element,
        big_endian: bool,
        len: u64,
    ) -> Result<Self, String> {
        let need = (rows as u64)
            .checked_mul(cols as u64)
            .and_then(|c| c.checked_mul(element.size()))
            .and_then(|c| c.checked_add(offset))
            .ok_or_else(|| bad(path, "shape overflows"))?;
        if need > len {
            return Err(bad(
                path,
                format!(
                    "truncated: the header promises {rows} × {cols} values ({need} bytes) but the file has {len}"
                ),
            ));
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
            offset,
            rows,
            cols,
            element,
            big_endian,
        })
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Rows `start .. start + count` as f64.
    pub fn read_rows(&mut self, start: usize, count: usize) -> Result<Array2<f64>, String> {
        let count = count.min(self.rows.saturating_sub(start));
        let size = self.element.size() as usize;
        let pos = self.offset + (start as u64) * (self.cols as u64) * self.element.size();
        self.file
            .seek(SeekFrom::Start(pos))
            .map_err(|e| bad(&self.path, e.to_string()))?;
        let mut buf = vec![0u8; count * self.cols * size];
        self.file.read_exact(&mut buf).map_err(|e| {
            bad(
                &self.path,
                format!("reading rows {start}..{}: {e}", start + count),
            )
        })?;
        let big = self.big_endian;
        let v: Vec<f64> = match self.element {
            Element::F32 => decode(&buf, big, f32::from_le_bytes, f32::from_be_bytes)
                .map(f64::from)
                .collect(),
            Element::F64 => decode(&buf, big, f64::from_le_bytes, f64::from_be_bytes).collect(),
        };
        Array2::from_shape_vec((count, self.cols), v).map_err(|e| bad(&self.path, e.to_string()))
    }

    /// Rows at the sorted indices `idx`, reading in one forward pass.
    pub fn read_selected(&mut self, idx: &[usize]) -> Result<Array2<f64>, String> {
        let mut out = Array2::<f64>::zeros((idx.len(), self.cols));
        for (k, &i) in idx.iter().enumerate() {
            if i >= self.rows {
                return Err(bad(&self.path, format!("row {i} does not exist")));
            }
            let r = self.read_rows(i, 1)?;
            out.row_mut(k).assign(&r.row(0));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_and_safetensors_stream_the_same_rows() {
        let dir = std::env::temp_dir().join(format!("latentlab-matrix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<f64> = (0..30).map(|i| i as f64 * 0.5).collect();
        let p = dir.join("m.npy");
        crate::npy::write_f64(&p, &[10, 3], &data).unwrap();
        let mut m = RawMatrix::open_npy(&p).unwrap();
        assert_eq!((m.rows(), m.cols()), (10, 3));
        assert_eq!(
            m.read_rows(2, 2).unwrap().row(1).to_vec(),
            vec![4.5, 5.0, 5.5]
        );
        assert_eq!(
            m.read_selected(&[0, 9]).unwrap().row(1).to_vec(),
            vec![13.5, 14.0, 14.5]
        );
        // Truncated: a header promising more than the file holds.
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(dir.join("t.npy"), &bytes[..bytes.len() - 8]).unwrap();
        assert!(
            RawMatrix::open_npy(&dir.join("t.npy"))
                .unwrap_err()
                .contains("truncated")
        );
        std::fs::write(dir.join("junk.npy"), b"hello").unwrap();
        assert!(RawMatrix::open_npy(&dir.join("junk.npy")).is_err());
        // A hostile safetensors header.
        let mut st = 1_000_000_000u64.to_le_bytes().to_vec();
        st.extend_from_slice(b"{}");
        std::fs::write(dir.join("h.safetensors"), &st).unwrap();
        assert!(
            RawMatrix::open_safetensors(&dir.join("h.safetensors"), "mu")
                .unwrap_err()
                .contains("header claims")
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
