//! Two-dimensional shapes (rows × columns, row-major).

use std::fmt;

/// The shape of a row-major matrix. Every latentlab tensor is two-dimensional:
/// a batch of vectors is `rows × cols`, a bias or a column sum is `1 × cols`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
}

impl Shape {
    /// A `rows × cols` shape.
    pub const fn new(rows: usize, cols: usize) -> Self {
        Self { rows, cols }
    }

    /// Number of elements; `None` if it overflows `usize`.
    pub fn checked_len(&self) -> Option<usize> {
        self.rows.checked_mul(self.cols)
    }

    /// Number of elements (saturating).
    pub fn len(&self) -> usize {
        self.rows.saturating_mul(self.cols)
    }

    /// True if the shape holds no element.
    pub fn is_empty(&self) -> bool {
        self.rows == 0 || self.cols == 0
    }

    /// The transposed shape.
    pub const fn t(&self) -> Self {
        Self::new(self.cols, self.rows)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}×{}]", self.rows, self.cols)
    }
}

impl From<(usize, usize)> for Shape {
    fn from((rows, cols): (usize, usize)) -> Self {
        Self::new(rows, cols)
    }
}
