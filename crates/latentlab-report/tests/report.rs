//! The report assembled by the library for a model that is not latentlab's
//! own VAE: any `LatentModel` gets every section.

use latentlab_data::Dataset;
use latentlab_model::{LatentModel, ModelError, Posterior};
use latentlab_report::{About, Settings, build};
use latentlab_viz::html::Page;
use ndarray::{Array2, ArrayView2, Axis};

/// Codes are the mean grey level of each image's four quadrants (minus ½,
/// times 4); decoding paints each quadrant with its code.
struct Quadrants {
    side: usize,
}

impl LatentModel for Quadrants {
    fn latent_dim(&self) -> usize {
        4
    }
    fn input_dim(&self) -> usize {
        self.side * self.side
    }
    fn image_shape(&self) -> Option<(usize, usize)> {
        Some((self.side, self.side))
    }
    fn encode(&self, x: ArrayView2<'_, f32>) -> Result<Posterior, ModelError> {
        let s = self.side;
        let h = s / 2;
        let mu = Array2::from_shape_fn((x.nrows(), 4), |(i, q)| {
            let (r0, c0) = ((q / 2) * h, (q % 2) * h);
            let mut sum = 0.0;
            for r in r0..r0 + h {
                for c in c0..c0 + h {
                    sum += x[[i, r * s + c]];
                }
            }
            4.0 * (sum / (h * h) as f32 - 0.5)
        });
        Ok(Posterior {
            logvar: Array2::from_elem(mu.dim(), -2.0),
            mu,
        })
    }
    fn decode(&self, z: ArrayView2<'_, f32>) -> Result<Array2<f32>, ModelError> {
        let s = self.side;
        let h = s / 2;
        Ok(Array2::from_shape_fn((z.nrows(), s * s), |(i, p)| {
            let (r, c) = (p / s, p % s);
            let q = (r / h).min(1) * 2 + (c / h).min(1);
            (z[[i, q]] / 4.0 + 0.5).clamp(0.0, 1.0)
        }))
    }
}

fn subset(d: &Dataset, n: usize) -> Dataset {
    let idx: Vec<usize> = (0..n).collect();
    Dataset {
        images: d.images.select(Axis(0), &idx),
        labels: d.labels.as_ref().map(|l| l[..n].to_vec()),
        factor_classes: d.factor_classes.as_ref().map(|f| f.select(Axis(0), &idx)),
        image_shape: d.image_shape,
        channels: d.channels,
    }
}

#[test]
fn any_latent_model_gets_every_section() {
    let test = subset(&latentlab_data::mnist_10k().test, 300);
    let about = About {
        title: "quadrants & more".into(),
        description: "A hand-made four-code model.".into(),
        history: Vec::new(),
    };
    let settings = Settings {
        map_points: 120,
        seed: 3,
    };
    let r = build(&Quadrants { side: 28 }, &test, &settings, &about).unwrap();
    for heading in [
        "Is the latent space healthy?",
        "Reconstructions and samples",
        "Latent maps",
        "Traversals",
        "Interpolation",
        "Attribute edits",
    ] {
        assert!(r.html.contains(heading), "no section {heading}");
    }
    // No history, no factors: those sections are left out, not drawn empty.
    assert!(!r.html.contains(">Training<") && !r.html.contains("Disentanglement"));
    assert!(r.html.contains("quadrants &amp; more"));
    assert_eq!(r.summary["maps"].as_array().unwrap().len(), 3);
    for m in r.summary["maps"].as_array().unwrap() {
        let tw = m["trustworthiness10"].as_f64().unwrap();
        assert!(tw > 0.5 && tw <= 1.0, "{m}");
    }
    assert_eq!(r.summary["active_dims"], 4);
    // Seeded: the same settings give the same figures.
    let again = build(&Quadrants { side: 28 }, &test, &settings, &about).unwrap();
    assert_eq!(r.summary["mean_kl"], again.summary["mean_kl"]);
    assert_eq!(r.summary["geodesic"], again.summary["geodesic"]);
}

#[test]
fn factors_add_the_disentanglement_section_and_sections_stand_alone() {
    let split = latentlab_data::dsprites::split(10, 400, 0);
    let test = split.test;
    let model = Quadrants { side: 64 };
    let mut page = Page::new("one section");
    let s = latentlab_report::disentanglement(&mut page, &model, &test, 0)
        .unwrap()
        .expect("dSprites has factors");
    assert!(page.render().contains("Disentanglement"));
    assert!((0.0..=1.0).contains(&s.mig));
    // A section that has nothing to show adds nothing.
    let mut empty = Page::new("empty");
    latentlab_report::training(&mut empty, &[]);
    assert_eq!(empty.render(), Page::new("empty").render());
}

#[test]
fn too_few_map_points_is_an_error() {
    let test = subset(&latentlab_data::mnist_10k().test, 60);
    let e = build(
        &Quadrants { side: 28 },
        &test,
        &Settings {
            map_points: 10,
            seed: 0,
        },
        &About::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("--map-points: 10 is below 50"),
        "{e}"
    );
}
