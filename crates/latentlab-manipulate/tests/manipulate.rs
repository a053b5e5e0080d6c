//! Manipulation over models whose geometry is known by construction, and
//! over a trained VAE.

use latentlab_manipulate::{
    GeodesicParams, Manipulator, geodesic, interpolation_strip, path_energy, traverse, traverse_all,
};
use latentlab_model::{IdentityModel, LatentModel, ModelError, Posterior};
use ndarray::{Array2, ArrayView2, array};

/// A curved decoder: (z₀, z₁) ↦ (cos z₀, sin z₀, z₁)·(1 + z₁²)^½, whose
/// straight lines are not its geodesics.
struct Curved;

impl LatentModel for Curved {
    fn latent_dim(&self) -> usize {
        2
    }
    fn input_dim(&self) -> usize {
        3
    }
    fn image_shape(&self) -> Option<(usize, usize)> {
        None
    }
    fn encode(&self, x: ArrayView2<'_, f32>) -> Result<Posterior, ModelError> {
        let mu = Array2::from_shape_fn((x.nrows(), 2), |(i, j)| x[[i, j]]);
        Ok(Posterior {
            logvar: Array2::zeros(mu.dim()),
            mu,
        })
    }
    fn decode(&self, z: ArrayView2<'_, f32>) -> Result<Array2<f32>, ModelError> {
        Ok(Array2::from_shape_fn((z.nrows(), 3), |(i, j)| {
            let (a, b) = (z[[i, 0]], z[[i, 1]]);
            let s = 3.0 * (-(a * a + b * b)).exp() + 0.2;
            match j {
                0 => a * s,
                1 => b * s,
                _ => s,
            }
        }))
    }
}

#[test]
fn attribute_vectors_apply_analogise_and_round_trip() {
    let m = IdentityModel(3);
    let mut man = Manipulator::new(&m);
    let pos = array![[2.0f32, 0.0, 1.0], [4.0, 0.0, 1.0]];
    let neg = array![[0.0f32, 0.0, 1.0], [0.0, 0.0, 1.0]];
    let v = man.attribute_vector(pos.view(), neg.view(), "x").unwrap();
    assert_eq!(v, array![1.0f32, 0.0, 0.0]);
    let moved = man.apply(neg.view(), "x", 2.5).unwrap();
    assert_eq!(moved.row(0), array![2.5f32, 0.0, 1.0]);
    let removed = man.apply(pos.view(), "x", -2.0).unwrap();
    assert_eq!(removed.row(0), array![0.0f32, 0.0, 1.0]);
    let d = man
        .analogy(neg.view(), pos.view(), array![[0.0f32, 5.0, 0.0]].view())
        .unwrap();
    assert_eq!(d.row(0), array![3.0f32, 5.0, 0.0]);
    // Class vectors.
    let x = array![
        [0.0f32, 0.0, 0.0],
        [0.0, 2.0, 0.0],
        [0.0, 0.0, 0.0],
        [0.0, 4.0, 0.0]
    ];
    let c = man.class_vector(x.view(), &[3, 8, 3, 8], 3, 8).unwrap();
    assert_eq!(c, array![0.0f32, 1.0, 0.0]);
    // Factor vectors: factor 0 moves dimension 2.
    let f = Array2::from_shape_fn((10, 1), |(i, _)| i);
    let xf = Array2::from_shape_fn((10, 3), |(i, j)| if j == 2 { i as f32 } else { 0.0 });
    let names = man
        .factor_vectors(xf.view(), f.view(), &["pos".into()])
        .unwrap();
    assert_eq!(names, vec!["factor:pos".to_string()]);
    assert_eq!(man.get("factor:pos").unwrap(), &array![0.0f32, 0.0, 1.0]);
    // Save and load.
    let dir = std::env::temp_dir().join(format!("latentlab-manip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("attrs.safetensors");
    man.save(&file).unwrap();
    let mut other = Manipulator::new(&m);
    let loaded = other.load(&file).unwrap();
    assert_eq!(loaded, man.names());
    for n in &loaded {
        assert_eq!(other.get(n).unwrap(), man.get(n).unwrap());
    }
    // A model of another size refuses them.
    let m4 = IdentityModel(4);
    let err = Manipulator::new(&m4).load(&file).unwrap_err().to_string();
    assert!(err.contains("shape [4]"), "{err}");
    std::fs::write(dir.join("junk"), b"nonsense").unwrap();
    assert!(
        Manipulator::new(&m)
            .load(&dir.join("junk"))
            .unwrap_err()
            .to_string()
            .contains("safetensors")
    );
    std::fs::remove_dir_all(dir).ok();
    // Errors name the problem.
    assert!(
        man.apply(pos.view(), "nope", 1.0)
            .unwrap_err()
            .to_string()
            .contains("unknown attribute `nope`")
    );
    assert!(
        man.attribute_vector(pos.view(), pos.view(), "same")
            .unwrap_err()
            .to_string()
            .contains("no direction")
    );
    assert!(
        man.class_vector(x.view(), &[3, 8, 3, 8], 3, 5)
            .unwrap_err()
            .to_string()
            .contains("class 5")
    );
}

#[test]
fn walks_traversals_and_strips() {
    let m = IdentityModel(4);
    let man = Manipulator::new(&m);
    let start = array![1.0f32, 0.0, 0.0, 0.0];
    let (codes, dec) = man.random_walk(start.view(), 10, 0.5, 7, false).unwrap();
    assert_eq!(codes.nrows(), 11);
    assert_eq!(codes, dec);
    for w in 1..11 {
        let step = (&codes.row(w) - &codes.row(w - 1))
            .mapv(|v| v * v)
            .sum()
            .sqrt();
        assert!((step - 0.5).abs() < 1e-5, "{step}");
    }
    let (again, _) = man.random_walk(start.view(), 10, 0.5, 7, false).unwrap();
    assert_eq!(codes, again);
    let (shell, _) = man.random_walk(start.view(), 10, 0.5, 7, true).unwrap();
    for r in shell.rows() {
        assert!((r.dot(&r).sqrt() - 2.0).abs() < 1e-5);
    }
    let z = array![0.5f32, -0.5, 0.25, 0.0];
    let t = traverse(&m, z.view(), 2, -3.0, 3.0, 7).unwrap();
    assert_eq!(
        t.column(2).to_vec(),
        vec![-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    );
    assert!(t.column(0).iter().all(|v| *v == 0.5));
    let all = traverse_all(&m, z.view(), -1.0, 1.0, 3).unwrap();
    assert_eq!(all.nrows(), 12);
    assert!(
        traverse(&m, z.view(), 4, -1.0, 1.0, 3)
            .unwrap_err()
            .to_string()
            .contains("dimension 4")
    );
    let (codes, dec) = interpolation_strip(
        &m,
        array![1.0f32, 0.0, 0.0, 0.0].view(),
        array![0.0f32, 1.0, 0.0, 0.0].view(),
        5,
        latentlab_geometry::interpolate::Method::Slerp,
    )
    .unwrap();
    assert_eq!(codes, dec);
    for r in codes.rows() {
        assert!((r.dot(&r) - 1.0).abs() < 1e-6);
    }
}

/// A decoder-only model of two latents: `f` maps a code `(z₀, z₁)` to its
/// output (encoding is not needed for geodesics).
struct DecoderOnly {
    outputs: usize,
    f: fn(f32, f32) -> Vec<f32>,
}

impl LatentModel for DecoderOnly {
    fn latent_dim(&self) -> usize {
        2
    }
    fn input_dim(&self) -> usize {
        self.outputs
    }
    fn image_shape(&self) -> Option<(usize, usize)> {
        None
    }
    fn encode(&self, _: ArrayView2<'_, f32>) -> Result<Posterior, ModelError> {
        Err(ModelError::Data("decoder only".into()))
    }
    fn decode(&self, z: ArrayView2<'_, f32>) -> Result<Array2<f32>, ModelError> {
        let rows: Vec<f32> = z
            .rows()
            .into_iter()
            .flat_map(|r| (self.f)(r[0], r[1]))
            .collect();
        Array2::from_shape_vec((z.nrows(), self.outputs), rows)
            .map_err(|e| ModelError::Data(e.to_string()))
    }
}

/// f(z) = A·z: the pull-back metric AᵀA is constant, so the geodesic is the
/// straight line at constant speed, with energy ‖A(b − a)‖² exactly (the
/// discrete energy of N equal segments is the same).
const A: [[f32; 2]; 3] = [[1.0, 0.5], [0.0, 2.0], [-1.0, 0.3]];

const LINEAR: DecoderOnly = DecoderOnly {
    outputs: 3,
    f: |a, b| A.iter().map(|r| r[0] * a + r[1] * b).collect(),
};

/// f(z) = (z₀, sinh z₁): an isometry onto the flat (u, v) plane with
/// u = z₀, v = sinh z₁, so the geodesic is the straight line in (u, v):
/// zᵢ = (u(tᵢ), asinh v(tᵢ)) with u, v linear in t, and its energy is
/// (Δu)² + (Δv)². The straight line in z is not it.
const WARPED: DecoderOnly = DecoderOnly {
    outputs: 2,
    f: |a, b| vec![a, b.sinh()],
};

#[test]
fn a_linear_decoders_geodesic_is_the_straight_line() {
    let (a, b) = (array![-1.0f32, 0.5], array![2.0f32, -1.5]);
    let g = geodesic(&LINEAR, a.view(), b.view(), &GeodesicParams::default()).unwrap();
    let d = [f64::from(b[0] - a[0]), f64::from(b[1] - a[1])];
    let want: f64 = A
        .iter()
        .map(|r| (f64::from(r[0]) * d[0] + f64::from(r[1]) * d[1]).powi(2))
        .sum();
    assert!(
        (g.energy - want).abs() < 1e-4 * want,
        "{} vs {want}",
        g.energy
    );
    for (i, row) in g.path.rows().into_iter().enumerate() {
        let t = i as f32 / 16.0;
        for k in 0..2 {
            let z = a[k] + t * (b[k] - a[k]);
            assert!((row[k] - z).abs() < 1e-4, "point {i}: {row} vs line");
        }
    }
}

#[test]
fn a_warped_decoders_geodesic_is_found() {
    let params = GeodesicParams {
        iterations: 3000,
        ..GeodesicParams::default()
    };
    for (a, b) in [
        (array![-1.0f32, -2.0], array![1.0f32, 2.0]),
        (array![0.0f32, 0.5], array![1.0f32, 2.5]),
    ] {
        let g = geodesic(&WARPED, a.view(), b.view(), &params).unwrap();
        let (u0, u1) = (f64::from(a[0]), f64::from(b[0]));
        let (v0, v1) = (f64::from(a[1]).sinh(), f64::from(b[1]).sinh());
        let want = (u1 - u0).powi(2) + (v1 - v0).powi(2);
        assert!(
            g.linear_energy > 1.1 * want,
            "the straight line must not be the answer: {g:?}"
        );
        assert!(
            (g.energy - want).abs() < 0.01 * want,
            "{} vs {want}",
            g.energy
        );
        for (i, row) in g.path.rows().into_iter().enumerate() {
            let t = i as f64 / 16.0;
            let z0 = u0 + t * (u1 - u0);
            let z1 = (v0 + t * (v1 - v0)).asinh();
            assert!(
                (f64::from(row[0]) - z0).abs() < 0.03 && (f64::from(row[1]) - z1).abs() < 0.03,
                "point {i}: {row} vs ({z0:.4}, {z1:.4})"
            );
        }
        assert!((path_energy(&WARPED, g.path.view()).unwrap() - g.energy).abs() < 1e-9 * g.energy);
    }
}

#[test]
fn the_geodesic_descends_on_a_curved_decoder() {
    let m = Curved;
    for (a, b) in [
        (array![-1.5f32, 0.1], array![1.5f32, -0.1]),
        (array![-1.0f32, -1.0], array![1.2f32, 0.9]),
        (array![0.3f32, -2.0], array![-0.2f32, 2.0]),
    ] {
        let g = geodesic(&m, a.view(), b.view(), &GeodesicParams::default()).unwrap();
        assert!(
            g.energy < g.linear_energy.min(g.slerp_energy),
            "descent made progress: {g:?}"
        );
        assert_eq!(g.path.row(0), a);
        assert_eq!(g.path.row(16), b);
        assert!(
            (path_energy(&m, g.path.view()).unwrap() - g.energy).abs() < 1e-9 * g.energy.max(1.0)
        );
    }
    // Identity decoder: the straight line is the geodesic, energy ‖b − a‖².
    let id = IdentityModel(2);
    let g = geodesic(
        &id,
        array![0.0f32, 0.0].view(),
        array![1.0f32, 1.0].view(),
        &GeodesicParams::default(),
    )
    .unwrap();
    assert!((g.energy - 2.0).abs() < 1e-4, "{}", g.energy);
}
