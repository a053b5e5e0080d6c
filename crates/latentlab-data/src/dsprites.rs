//! Procedural dSprites (Matthey et al. 2017): 64×64 binary images of a
//! square, an ellipse or a heart over the original factor grid, generated on
//! demand and deterministically, so disentanglement metrics have ground-truth
//! factors to score against without a download.
//!
//! | factor | classes | values |
//! |---|---|---|
//! | shape | 3 | 1 square, 2 ellipse, 3 heart |
//! | scale | 6 | 0.5 … 1 (linear) |
//! | orientation | 40 | k·2π/40, in [0, 2π) |
//! | pos_x | 32 | 0 … 1 (linear) |
//! | pos_y | 32 | 0 … 1 (linear) |
//!
//! Image `i` has the factor classes of the original's ordering (y fastest,
//! then x, orientation, scale, shape): 737,280 images in all.
//!
//! Rendering: a shape of half-size `10·scale` pixels centred at
//! `(16 + 32·pos_x, 16 + 32·pos_y)` (x to the right, y down), rotated by the
//! orientation, sampled at pixel centres. The ellipse's axes are `1 : ½`; the
//! heart is the curve `(x² + y² − 1)³ = x² y³`. Every sprite stays inside the
//! frame. The pixels are not those of the original files (which are a
//! download); the factor grid and its semantics are.

use ndarray::Array2;
use rayon::prelude::*;

use crate::dataset::{Dataset, Split};
use crate::rng;

/// Side of an image in pixels.
pub const SIDE: usize = 64;
/// Factor names, in index order.
pub const FACTOR_NAMES: [&str; 5] = ["shape", "scale", "orientation", "pos_x", "pos_y"];
/// Number of classes of each factor.
pub const FACTOR_SIZES: [usize; 5] = [3, 6, 40, 32, 32];
/// Number of images in the full grid.
pub const LEN: usize = 3 * 6 * 40 * 32 * 32;

/// The factor classes of image `index` (`< LEN`).
pub fn classes_of(index: usize) -> Option<[usize; 5]> {
    if index >= LEN {
        return None;
    }
    let mut rest = index;
    let mut c = [0usize; 5];
    for k in (0..5).rev() {
        c[k] = rest % FACTOR_SIZES[k];
        rest /= FACTOR_SIZES[k];
    }
    Some(c)
}

/// The index of the image with these factor classes.
pub fn index_of(classes: [usize; 5]) -> Option<usize> {
    let mut index = 0;
    for k in 0..5 {
        if classes[k] >= FACTOR_SIZES[k] {
            return None;
        }
        index = index * FACTOR_SIZES[k] + classes[k];
    }
    Some(index)
}

/// The factor values of these classes (shape as 1, 2, 3 like the original).
pub fn values_of(classes: [usize; 5]) -> [f64; 5] {
    let lin = |k: usize, lo: f64, hi: f64| {
        lo + (hi - lo) * classes[k] as f64 / (FACTOR_SIZES[k] - 1) as f64
    };
    [
        classes[0] as f64 + 1.0,
        lin(1, 0.5, 1.0),
        classes[2] as f64 * std::f64::consts::TAU / FACTOR_SIZES[2] as f64,
        lin(3, 0.0, 1.0),
        lin(4, 0.0, 1.0),
    ]
}

/// Renders one sprite into `out` (`SIDE²` pixels, 0 or 1).
pub fn render_into(classes: [usize; 5], out: &mut [f32]) {
    let [shape, _, _, _, _] = classes;
    let v = values_of(classes);
    let half = 10.0 * v[1];
    let (cx, cy) = (16.0 + 32.0 * v[3], 16.0 + 32.0 * v[4]);
    let (s, c) = v[2].sin_cos();
    for r in 0..SIDE {
        for col in 0..SIDE {
            let dx = col as f64 + 0.5 - cx;
            let dy = r as f64 + 0.5 - cy;
            // Into the sprite's frame (rotate by −θ).
            let u = (c * dx + s * dy) / half;
            let w = (-s * dx + c * dy) / half;
            let inside = match shape {
                0 => u.abs() <= 1.0 && w.abs() <= 1.0,
                1 => u * u + 4.0 * w * w <= 1.0,
                _ => {
                    let x = 1.15 * u;
                    let y = -1.15 * w + 0.15;
                    let a = x * x + y * y - 1.0;
                    a * a * a - x * x * y * y * y <= 0.0
                }
            };
            out[r * SIDE + col] = if inside { 1.0 } else { 0.0 };
        }
    }
}

/// Renders the images with these indices (`n × 4096`), in parallel.
///
/// # Panics
/// Never for indices `< LEN`; larger indices are clamped by the caller's
/// contract (use [`classes_of`] to check).
pub fn images(indices: &[usize]) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros((indices.len(), SIDE * SIDE));
    out.as_slice_mut()
        .expect("a fresh array is contiguous")
        .par_chunks_mut(SIDE * SIDE)
        .zip(indices.par_iter())
        .for_each(|(row, &i)| render_into(classes_of(i % LEN).expect("in range"), row));
    out
}

/// A dataset of the images with these indices, with factor classes and the
/// shape class as label.
pub fn dataset(indices: &[usize]) -> Dataset {
    let mut classes = Array2::<usize>::zeros((indices.len(), 5));
    for (mut row, &i) in classes.rows_mut().into_iter().zip(indices) {
        let c = classes_of(i % LEN).expect("in range");
        for k in 0..5 {
            row[k] = c[k];
        }
    }
    Dataset {
        images: images(indices),
        labels: Some(classes.column(0).iter().map(|&c| c as i64).collect()),
        factor_classes: Some(classes),
        image_shape: (SIDE, SIDE),
        channels: 1,
    }
}

/// The colour of image `index` in the colour variant under `seed`: each RGB
/// channel uniform in `[0.5, 1)`, as disentanglement_lib's color-dSprites
/// draws it (the colour is a nuisance, not a factor).
pub fn colour_of(index: usize, seed: u64) -> [f32; 3] {
    let mut g =
        latentlab_rng::SplitMix64::new(seed, latentlab_rng::Purpose::Subset, 1 + index as u64);
    [0; 3].map(|_| (0.5 + 0.5 * g.uniform()) as f32)
}

/// [`dataset`] in colour: `3 × 64 × 64` images, the sprite in the random
/// colour [`colour_of`] gives each image under `seed` on a black ground.
pub fn colour_dataset(indices: &[usize], seed: u64) -> Dataset {
    let grey = dataset(indices);
    let plane = SIDE * SIDE;
    let mut images = Array2::<f32>::zeros((indices.len(), 3 * plane));
    images
        .as_slice_mut()
        .expect("a fresh array is contiguous")
        .par_chunks_mut(3 * plane)
        .zip(
            grey.images
                .as_slice()
                .expect("contiguous")
                .par_chunks(plane),
        )
        .zip(indices.par_iter())
        .for_each(|((out, g), &i)| {
            for (c, colour) in colour_of(i, seed).into_iter().enumerate() {
                for (o, &v) in out[c * plane..(c + 1) * plane].iter_mut().zip(g) {
                    *o = v * colour;
                }
            }
        });
    Dataset {
        images,
        channels: 3,
        ..grey
    }
}

/// [`split`] in colour (disentanglement_lib's color-dSprites).
pub fn colour_split(n_train: usize, n_test: usize, seed: u64) -> Split {
    let idx = rng::subset(LEN, n_train + n_test, seed, 0);
    let (train, test) = idx.split_at(n_train.min(idx.len()));
    Split {
        name: "color-dsprites".into(),
        train: colour_dataset(train, seed),
        test: colour_dataset(test, seed),
        label_names: None,
    }
}

/// Disjoint random train and test subsets of the grid, seeded.
pub fn split(n_train: usize, n_test: usize, seed: u64) -> Split {
    let idx = rng::subset(LEN, n_train + n_test, seed, 0);
    let (train, test) = idx.split_at(n_train.min(idx.len()));
    Split {
        name: "dsprites".into(),
        train: dataset(train),
        test: dataset(test),
        label_names: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn centroid(img: &[f32]) -> (f64, f64, f64) {
        let (mut sx, mut sy, mut m) = (0.0, 0.0, 0.0);
        for (i, &p) in img.iter().enumerate() {
            let p = f64::from(p);
            sx += p * ((i % SIDE) as f64 + 0.5);
            sy += p * ((i / SIDE) as f64 + 0.5);
            m += p;
        }
        (sx / m, sy / m, m)
    }

    #[test]
    fn colour_variant_is_the_sprite_in_one_colour_per_image() {
        let idx = [0usize, 5000, 123_456];
        let grey = dataset(&idx);
        let col = colour_dataset(&idx, 7);
        assert_eq!(col.chw(), [3, SIDE, SIDE]);
        let plane = SIDE * SIDE;
        for (k, &i) in idx.iter().enumerate() {
            let c = colour_of(i, 7);
            assert!(c.iter().all(|v| (0.5..1.0).contains(v)));
            for (ch, colour) in c.iter().enumerate() {
                for p in 0..plane {
                    assert_eq!(
                        col.images[[k, ch * plane + p]],
                        grey.images[[k, p]] * colour
                    );
                }
            }
        }
        assert_ne!(colour_of(0, 7), colour_of(1, 7));
        assert_ne!(colour_of(0, 7), colour_of(0, 8));
    }

    #[test]
    fn index_round_trip_and_grid_size() {
        assert_eq!(LEN, 737_280);
        for i in [0, 1, 31, 32, 12345, LEN - 1] {
            assert_eq!(index_of(classes_of(i).unwrap()), Some(i));
        }
        assert_eq!(classes_of(LEN), None);
        assert_eq!(index_of([3, 0, 0, 0, 0]), None);
        assert_eq!(classes_of(1).unwrap(), [0, 0, 0, 0, 1], "y varies fastest");
        let v = values_of([2, 5, 39, 31, 0]);
        assert_eq!(v[0], 3.0);
        assert_eq!(v[1], 1.0);
        assert!(v[2] < std::f64::consts::TAU);
        assert_eq!((v[3], v[4]), (1.0, 0.0));
    }

    #[test]
    fn factors_move_the_sprite_as_named() {
        let img = |c: [usize; 5]| images(&[index_of(c).unwrap()]).into_raw_vec_and_offset().0;
        // x moves the centroid right, y moves it down, ~1 px per class.
        let (x0, y0, _) = centroid(&img([1, 3, 0, 0, 10]));
        let (x1, y1, _) = centroid(&img([1, 3, 0, 31, 10]));
        assert!(
            (x1 - x0 - 32.0).abs() < 0.5 && (y1 - y0).abs() < 0.5,
            "{x0} {x1} {y0} {y1}"
        );
        let (_, ya, _) = centroid(&img([0, 3, 0, 5, 0]));
        let (_, yb, _) = centroid(&img([0, 3, 0, 5, 31]));
        assert!((yb - ya - 32.0).abs() < 0.5);
        // Scale grows the area; shapes differ; nothing touches the border.
        let (_, _, small) = centroid(&img([0, 0, 0, 16, 16]));
        let (_, _, big) = centroid(&img([0, 5, 0, 16, 16]));
        assert!(
            (big / small - 4.0).abs() < 0.3,
            "area ∝ scale²: {small} {big}"
        );
        assert_ne!(img([0, 5, 0, 16, 16]), img([1, 5, 0, 16, 16]));
        assert_ne!(img([1, 5, 0, 16, 16]), img([2, 5, 0, 16, 16]));
        assert_ne!(
            img([2, 5, 3, 16, 16]),
            img([2, 5, 0, 16, 16]),
            "rotation matters"
        );
        for corner in [[0, 5, 5, 0, 0], [2, 5, 17, 31, 31], [1, 5, 10, 0, 31]] {
            let im = img(corner);
            for k in 0..SIDE {
                assert_eq!(
                    im[k] + im[(SIDE - 1) * SIDE + k] + im[k * SIDE] + im[k * SIDE + SIDE - 1],
                    0.0
                );
            }
        }
    }

    #[test]
    fn deterministic_subsets_with_factors() {
        let a = split(50, 10, 3);
        let b = split(50, 10, 3);
        assert_eq!(a.train.images, b.train.images);
        assert_eq!(a.train.factor_classes, b.train.factor_classes);
        assert_eq!(a.test.len(), 10);
        let fc = a.train.factor_classes.as_ref().unwrap();
        for (row, img) in fc.rows().into_iter().zip(a.train.images.rows()) {
            let c = [row[0], row[1], row[2], row[3], row[4]];
            let want = images(&[index_of(c).unwrap()]);
            assert_eq!(want.row(0), img);
        }
    }
}
