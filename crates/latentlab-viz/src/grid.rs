//! Grids of images (decoded samples, traversals, strips) as PNG.

use ndarray::ArrayView2;

/// How to lay out a grid.
#[derive(Clone, Copy, Debug)]
pub struct GridLayout {
    /// Images per row.
    pub cols: usize,
    /// Pixels between images.
    pub pad: usize,
    /// Each source pixel becomes `scale × scale` pixels.
    pub scale: usize,
}

impl Default for GridLayout {
    fn default() -> Self {
        Self {
            cols: 10,
            pad: 2,
            scale: 2,
        }
    }
}

/// Lays out `images` (one per row, `h × w` values in [0, 1]) as a greyscale
/// PNG: white ink on black as MNIST draws it, padding in mid grey. Rows of
/// `3 · h · w` values are RGB images in PyTorch's `C×H×W` order and give a
/// colour PNG.
pub fn image_grid(
    images: ArrayView2<'_, f32>,
    shape: (usize, usize),
    layout: GridLayout,
) -> Vec<u8> {
    let (h, w) = shape;
    let n = images.nrows();
    let cols = layout.cols.max(1).min(n.max(1));
    let rows = n.div_ceil(cols).max(1);
    let s = layout.scale.max(1);
    let pad = layout.pad;
    let width = cols * (w * s + pad) + pad;
    let height = rows * (h * s + pad) + pad;
    let plane = h * w;
    let channels = if plane > 0 && images.ncols() == 3 * plane {
        3
    } else {
        1
    };
    let mut px = vec![96u8; width * height * channels];
    for (k, img) in images.rows().into_iter().enumerate() {
        let (r, c) = (k / cols, k % cols);
        let (x0, y0) = (pad + c * (w * s + pad), pad + r * (h * s + pad));
        for y in 0..h * s {
            for x in 0..w * s {
                for ch in 0..channels {
                    let v = img
                        .get(ch * plane + (y / s) * w + x / s)
                        .copied()
                        .unwrap_or(0.0);
                    let v = if v.is_finite() {
                        v.clamp(0.0, 1.0)
                    } else {
                        0.0
                    };
                    px[((y0 + y) * width + x0 + x) * channels + ch] = (v * 255.0).round() as u8;
                }
            }
        }
    }
    crate::png::encode(width, height, channels, &px)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn rgb_rows_give_a_colour_png() {
        // One 1×2 image: a red pixel and a blue one.
        let img = Array2::from_shape_vec((1, 6), vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0]).unwrap();
        let layout = GridLayout {
            cols: 1,
            pad: 0,
            scale: 1,
        };
        let png = image_grid(img.view(), (1, 2), layout);
        // IHDR: bit depth 8, colour type 2 (RGB).
        assert_eq!((png[24], png[25]), (8, 2));
        let grey = image_grid(img.slice(ndarray::s![.., ..2]), (1, 2), layout);
        assert_eq!(grey[25], 0, "two values per row stay grey");
    }

    #[test]
    fn grid_size_follows_the_layout() {
        let imgs = Array2::<f32>::from_elem((7, 4 * 3), 0.5);
        let png = image_grid(
            imgs.view(),
            (4, 3),
            GridLayout {
                cols: 3,
                pad: 1,
                scale: 2,
            },
        );
        let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
        assert_eq!((w, h), (3 * (6 + 1) + 1, 3 * (8 + 1) + 1));
    }
}
