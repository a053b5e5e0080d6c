//! The dSprites `.npz` reader on small files in the original's layout,
//! written by numpy (`benches/peers/dsprites_npz_fixture.py`).

use std::path::{Path, PathBuf};

use latentlab_data::npz::read_dsprites_npz;
use serde_json::Value;

fn file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/npz")
        .join(name)
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(file("expected.json")).unwrap()).unwrap()
}

#[test]
fn the_grid_reads_as_numpy_wrote_it() {
    let e = expected();
    let f = read_dsprites_npz(file("grid.npz")).unwrap();
    let n = e["n"].as_u64().unwrap() as usize;
    assert_eq!(f.images.len(), n);
    assert_eq!(f.images.image_shape(), (64, 64));
    let all: Vec<usize> = (0..n).collect();
    let x = f.images.rows(&all);
    for i in 0..n {
        let row = x.row(i);
        assert!(row.iter().all(|v| *v == 0.0 || *v == 1.0));
        let lit = row.iter().filter(|v| **v == 1.0).count();
        assert_eq!(lit as u64, e["pixels"][i].as_u64().unwrap(), "image {i}");
        let first = row.iter().position(|v| *v == 1.0).map_or(-1, |p| p as i64);
        assert_eq!(first, e["first_on"][i].as_i64().unwrap(), "image {i}");
        for k in 0..6 {
            assert_eq!(
                f.classes[[i, k]] as u64,
                e["classes"][i][k].as_u64().unwrap()
            );
            assert_eq!(f.values[[i, k]], e["values"][i][k].as_f64().unwrap());
        }
    }
    assert!(f.is_ordered_grid());
    assert_eq!(
        f.factor_columns(),
        vec![1, 2, 3, 4, 5],
        "the colour column is constant"
    );
    assert_eq!(f.grid_index(&[0, 2, 1, 0, 1, 1]), 2 * 16 + 8 + 2 + 1);
    let s = f.split(40, 8, 3, "grid".into());
    assert_eq!((s.train.len(), s.test.len()), (40, 8));
    assert_eq!(s.train.factor_classes.as_ref().unwrap().ncols(), 5);
}

#[test]
fn shuffled_rows_keep_their_classes_but_are_no_grid() {
    let e = expected();
    let g = read_dsprites_npz(file("grid.npz")).unwrap();
    let f = read_dsprites_npz(file("shuffled.npz")).unwrap();
    assert!(!f.is_ordered_grid());
    for (i, p) in e["shuffled_order"].as_array().unwrap().iter().enumerate() {
        let p = p.as_u64().unwrap() as usize;
        assert_eq!(f.images.rows(&[i]), g.images.rows(&[p]));
        assert_eq!(f.classes.row(i), g.classes.row(p));
    }
}

#[test]
fn broken_and_hostile_files_are_named_errors() {
    let err = |p: &Path| read_dsprites_npz(p).unwrap_err().to_string();
    let e = err(&file("bad_values.npz"));
    assert!(e.contains("image 5 holds 2"), "{e}");
    let e = err(&file("lying.npz"));
    assert!(e.contains("imgs.npy") && e.contains("declares"), "{e}");
    let dir = std::env::temp_dir().join(format!("npz-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = std::fs::read(file("grid.npz")).unwrap();
    for cut in [10, bytes.len() / 2, bytes.len() - 30] {
        let p = dir.join(format!("cut{cut}.npz"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let e = err(&p);
        assert!(e.contains(&format!("cut{cut}.npz")), "{e}");
    }
    let p = dir.join("text.npz");
    std::fs::write(&p, "not a zip").unwrap();
    assert!(err(&p).contains("not a readable .npz"));
    assert!(err(&dir.join("missing.npz")).contains("missing.npz"));
    std::fs::remove_dir_all(dir).ok();
}
