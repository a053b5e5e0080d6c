//! # latentlab-report
//!
//! One self-contained HTML page that shows a latent space: the verdict on
//! its health, training curves, reconstructions and samples, PCA / t-SNE /
//! UMAP maps, traversals, interpolations with the decoder geodesic,
//! attribute edits and, where the data has factors, every disentanglement
//! metric. Each section is one function over a [`Page`], so that any front
//! end (the CLI, the Python package) assembles the same report, or a part
//! of it, for any [`LatentModel`].
//!
//! ```no_run
//! use latentlab_model::IdentityModel;
//! // Any LatentModel: here the identity on MNIST's 784 pixels.
//! let test = latentlab_data::mnist_10k().test;
//! let report = latentlab_report::build(
//!     &IdentityModel(784),
//!     &test,
//!     &latentlab_report::Settings::default(),
//!     &latentlab_report::About::default(),
//! )?;
//! std::fs::write("index.html", report.html)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Instant;

use latentlab_data::Dataset;
use latentlab_diagnostics::disentangle::{self, Encoder, Labelled, Scores};
use latentlab_diagnostics::{Diagnosis, Latents, Options, State, diagnose};
use latentlab_embed::{
    Pca, PcaParams, Tsne, TsneParams, Umap, UmapParams, knn_accuracy, trustworthiness,
};
use latentlab_geometry::interpolate::{Method, interpolate};
use latentlab_manipulate::{self as manipulate, Geodesic, GeodesicParams, Manipulator};
use latentlab_model::{EpochReport, LatentModel};
use latentlab_viz::chart::{Series, bars, lines, scatter};
use latentlab_viz::grid::{GridLayout, image_grid};
use latentlab_viz::html::Page;
use ndarray::{Array2, Axis, concatenate};
use serde_json::{Value, json};

/// What went wrong while a report was assembled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// A setting is out of range.
    #[error("{0}")]
    Settings(String),
    /// The diagnostics or the disentanglement metrics failed.
    #[error(transparent)]
    Diagnostics(#[from] latentlab_diagnostics::DiagnosticsError),
    /// A latent map failed.
    #[error(transparent)]
    Embed(#[from] latentlab_embed::EmbedError),
    /// A traversal, interpolation or edit failed.
    #[error(transparent)]
    Manipulate(#[from] latentlab_manipulate::ManipulateError),
    /// The model failed to encode or decode.
    #[error(transparent)]
    Model(#[from] latentlab_model::ModelError),
    /// A path could not be interpolated.
    #[error(transparent)]
    Geometry(#[from] latentlab_geometry::GeometryError),
    /// Arrays of mismatched shapes (a bug, reported rather than a panic).
    #[error(transparent)]
    Shape(#[from] ndarray::ShapeError),
    /// The summary could not be serialised.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// `Result` with [`ReportError`].
pub type Result<T, E = ReportError> = std::result::Result<T, E>;

/// The report's settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Test points in the latent maps (at least 50).
    pub map_points: usize,
    /// Seed of every draw.
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            map_points: 10_000,
            seed: 0,
        }
    }
}

/// What the page says about its subject, beyond what the model and data
/// show.
#[derive(Clone, Debug, Default)]
pub struct About {
    /// The page's title (the checkpoint's name, say).
    pub title: String,
    /// One sentence on the model and data.
    pub description: String,
    /// The run's per-epoch figures, when known: drawn as training curves.
    pub history: Vec<EpochReport>,
}

/// A finished report.
#[derive(Clone, Debug)]
pub struct Report {
    /// The self-contained page.
    pub html: String,
    /// Its figures as JSON: verdict, maps, geodesic, disentanglement.
    pub summary: Value,
}

/// The model's image shape, or the closest square.
pub fn shape_of<M: LatentModel + ?Sized>(m: &M) -> (usize, usize) {
    m.image_shape().unwrap_or_else(|| {
        let d = m.input_dim();
        let s = (d as f64).sqrt().round() as usize;
        if s * s == d { (s, s) } else { (1, d) }
    })
}

/// Images as one PNG grid, `cols` per row, each pixel drawn 2 × 2.
pub fn grid_png(images: &Array2<f32>, shape: (usize, usize), cols: usize) -> Vec<u8> {
    image_grid(
        images.view(),
        shape,
        GridLayout {
            cols,
            pad: 2,
            scale: 2,
        },
    )
}

fn rows(a: &Array2<f32>, idx: &[usize]) -> Array2<f32> {
    a.select(Axis(0), idx)
}

fn stack(parts: &[Array2<f32>]) -> Result<Array2<f32>> {
    let v: Vec<_> = parts.iter().map(|p| p.view()).collect();
    Ok(concatenate(Axis(0), &v)?)
}

/// Every section, in order, on the test split `test`.
pub fn build<M: LatentModel + Sync + ?Sized>(
    model: &M,
    test: &Dataset,
    settings: &Settings,
    about: &About,
) -> Result<Report> {
    let started = Instant::now();
    if settings.map_points < 50 {
        return Err(ReportError::Settings(format!(
            "--map-points: {} is below 50",
            settings.map_points
        )));
    }
    let mut page = Page::new(&about.title);
    if !about.description.is_empty() {
        page.para(&about.description);
    }
    let (latents, diag) = health(&mut page, model, test, settings.seed)?;
    training(&mut page, &about.history);
    reconstructions(&mut page, model, test, &diag, settings.seed)?;
    let maps = latent_maps(&mut page, &latents, test, settings)?;
    traversals(&mut page, model, &latents, &diag)?;
    let geo = interpolation(&mut page, model, &latents, test)?;
    attribute_edits(&mut page, model, test, settings.seed)?;
    let dis = disentanglement(&mut page, model, test, settings.seed)?;
    page.para(&format!(
        "Report written in {:.1} s.",
        started.elapsed().as_secs_f64()
    ));
    let summary = json!({
        "verdict": diag.verdict,
        "mean_kl": diag.mean_kl,
        "active_dims": diag.active_dims,
        "maps": maps,
        "geodesic": geo,
        "disentanglement": dis.map(|s| serde_json::to_value(&s)).transpose()?,
        "seconds": started.elapsed().as_secs_f64(),
    });
    Ok(Report {
        html: page.render(),
        summary,
    })
}

/// "Is the latent space healthy?": the verdict, its numbers and the KL of
/// each dimension. Returns the test codes and the diagnosis.
pub fn health<M: LatentModel + ?Sized>(
    page: &mut Page,
    model: &M,
    test: &Dataset,
    seed: u64,
) -> Result<(Latents, Diagnosis)> {
    let latents = Latents::encode(model, test.view())?;
    let diag = diagnose(
        &latents,
        &Options {
            seed,
            ..Options::default()
        },
    )?;
    page.heading("Is the latent space healthy?");
    page.callout(&diag.verdict.summary, diag.verdict.state == State::Healthy);
    let mut table = vec![
        ("mean KL".to_string(), format!("{:.3} nats", diag.mean_kl)),
        (
            "active dimensions".to_string(),
            format!("{} of {}", diag.active_dims, diag.total_dims),
        ),
        (
            "mean posterior std".to_string(),
            format!("{:.3}", diag.mean_posterior_std),
        ),
        (
            "aggregate KL (one Gaussian)".to_string(),
            format!("{:.3} nats", diag.aggregate_kl),
        ),
        (
            "I(x; z)".to_string(),
            format!(
                "{:.3} ± {:.3} nats",
                diag.mutual_information, diag.mutual_information_se
            ),
        ),
        (
            "KL(q(z) ‖ p(z))".to_string(),
            format!(
                "{:.3} ± {:.3} nats",
                diag.aggregate_kl_mc, diag.aggregate_kl_mc_se
            ),
        ),
        (
            "prior mass in holes".to_string(),
            format!(
                "{:.1} % ({:.1} % by chance)",
                100.0 * diag.hole_fraction,
                100.0 * diag.hole_fraction_null
            ),
        ),
        ("the page's diagnosis".to_string(), diag.diagnosis.clone()),
    ];
    for f in &diag.verdict.findings {
        table.push(("finding".into(), f.clone()));
    }
    page.table(&table);
    let names: Vec<String> = (0..model.latent_dim()).map(|j| format!("z{j}")).collect();
    page.svg(
        &bars(&diag.kl_per_dim, &names, "KL per latent dimension", "nats per image", None),
        "Mean KL(q(z|x) ‖ p(z)) of each dimension on the test set: dimensions near zero carry no information (inactive).",
    );
    Ok((latents, diag))
}

/// "Training": loss and KL per epoch, when the run's history is known.
pub fn training(page: &mut Page, history: &[EpochReport]) {
    if history.is_empty() {
        return;
    }
    let pts = |f: &dyn Fn(&EpochReport) -> f64| -> Vec<(f64, f64)> {
        history.iter().map(|r| (r.epoch as f64, f(r))).collect()
    };
    page.heading("Training");
    page.svg(
        &lines(
            &[
                Series {
                    name: "train −ELBO".into(),
                    points: pts(&|r| r.train_neg_elbo),
                },
                Series {
                    name: "test −ELBO".into(),
                    points: pts(&|r| r.test.neg_elbo),
                },
                Series {
                    name: "test reconstruction".into(),
                    points: pts(&|r| r.test.rec),
                },
            ],
            "Training curves",
            "epoch",
            "nats per image",
            None,
        ),
        "Loss per epoch, from the run's .resume file.",
    );
    page.svg(
        &lines(
            &[Series {
                name: "test KL".into(),
                points: pts(&|r| r.test.kl),
            }],
            "KL over training",
            "epoch",
            "nats per image",
            None,
        ),
        "The KL term per epoch: a fall towards zero would be posterior collapse.",
    );
    // The objective's own terms (β-TCVAE's MI, TC and DWKL; DIP-VAE's
    // covariance penalties; MMD), when the run optimised one.
    let mut names: Vec<&String> = history.iter().flat_map(|r| r.terms.keys()).collect();
    names.sort();
    names.dedup();
    if !names.is_empty() {
        let series: Vec<Series> = names
            .iter()
            .map(|name| Series {
                name: (*name).clone(),
                points: history
                    .iter()
                    .filter_map(|r| r.terms.get(*name).map(|v| (r.epoch as f64, *v)))
                    .collect(),
            })
            .collect();
        page.svg(
            &lines(&series, "Objective terms", "epoch", "per image", None),
            "The objective's own terms per epoch, averaged over the epoch's batches (see docs/model.md, \"Objectives\"): mi, tc and dwkl for β-TCVAE, the covariance penalties for DIP-VAE, mmd for MMD, tc_estimate, disc_loss and disc_accuracy (the discriminator's) for FactorVAE, iw_bound (the k-sample bound on log p(x)) for IWAE.",
        );
    }
}

/// "Reconstructions and samples", and what lives in the holes.
pub fn reconstructions<M: LatentModel + ?Sized>(
    page: &mut Page,
    model: &M,
    test: &Dataset,
    diag: &Diagnosis,
    seed: u64,
) -> Result<()> {
    let shape = shape_of(model);
    page.heading("Reconstructions and samples");
    let n_show = 10.min(test.len());
    let idx: Vec<usize> = (0..n_show).collect();
    let inputs = rows(&test.images, &idx);
    let recon = model.reconstruct(inputs.view())?;
    page.png(
        &grid_png(&stack(&[inputs.clone(), recon])?, shape, n_show),
        "Top row: test images; bottom row: their reconstructions decode(encode(x).mean).",
    );
    let samples = model.sample(40, seed)?;
    page.png(
        &grid_png(&samples, shape, 10),
        "40 samples decoded from the prior N(0, I).",
    );
    if !diag.emptiest.is_empty() {
        let empt = Array2::from_shape_vec(
            (diag.emptiest.len(), model.latent_dim()),
            diag.emptiest.iter().flatten().map(|v| *v as f32).collect(),
        )?;
        let dec = model.decode(empt.view())?;
        page.png(&grid_png(&dec, shape, 8), "Prior draws where the aggregate posterior is thinnest (the emptiest first): what lives in the holes.");
    }
    Ok(())
}

/// "Latent maps": PCA, t-SNE and UMAP of the first `map_points` test
/// means, with trustworthiness and k-NN label accuracy. Returns their
/// figures.
pub fn latent_maps(
    page: &mut Page,
    latents: &Latents,
    test: &Dataset,
    settings: &Settings,
) -> Result<Vec<Value>> {
    page.heading("Latent maps");
    let m = settings.map_points.min(test.len());
    let mu = latents.mu().slice(ndarray::s![..m, ..]).to_owned();
    let labels: Option<Vec<i64>> = test.labels.as_ref().map(|l| l[..m].to_vec());
    let mut maps = Vec::new();
    for method in ["pca", "tsne", "umap"] {
        let t0 = Instant::now();
        let y = match method {
            "pca" => {
                let p = Pca::fit(mu.view(), &PcaParams::default())?;
                p.transform(mu.view())?
            }
            "tsne" => {
                Tsne::fit(
                    mu.view(),
                    &TsneParams {
                        seed: settings.seed,
                        perplexity: 30f64.min((m - 1) as f64 / 3.0),
                        ..TsneParams::default()
                    },
                    &mut |_, _, _| {},
                )?
                .embedding
            }
            _ => {
                Umap::fit(
                    mu.view(),
                    &UmapParams {
                        seed: settings.seed,
                        n_neighbors: 15.min(m - 1),
                        ..UmapParams::default()
                    },
                    &mut |_, _, _| {},
                )?
                .embedding
            }
        };
        let secs = t0.elapsed().as_secs_f64();
        // 10 neighbours, or fewer where a small test split has fewer than
        // 2k + 1 points (the measures need k < N/2); none below 3 points.
        let k = 10.min(m.saturating_sub(1) / 2);
        let tw = (k > 0)
            .then(|| trustworthiness(mu.view(), y.view(), k))
            .transpose()?;
        let acc = labels
            .as_ref()
            .filter(|_| k > 0)
            .map(|l| knn_accuracy(y.view(), l, k))
            .transpose()?;
        let label = method.to_uppercase().replace("TSNE", "t-SNE");
        page.svg(
            &scatter(
                y.view(),
                labels.as_deref(),
                &format!("{label} of the latent means"),
                &format!("{label} 1"),
                &format!("{label} 2"),
            ),
            &format!(
                "{m} test latent means mapped by {label} ({secs:.1} s){}{}.",
                tw.map(|t| format!(": trustworthiness@{k} {t:.4}"))
                    .unwrap_or_default(),
                acc.map(|a| format!(", {k}-NN label accuracy {a:.3}"))
                    .unwrap_or_default()
            ),
        );
        // The keys keep their names when a small split lowers `k`, which
        // `neighbours` states.
        maps.push(json!({"method": method, "seconds": secs, "neighbours": k, "trustworthiness10": tw, "knn_accuracy10": acc}));
    }
    Ok(maps)
}

/// "Traversals": the five most informative dimensions and the least, swept
/// from −3 to 3 around the first test image's code.
pub fn traversals<M: LatentModel + ?Sized>(
    page: &mut Page,
    model: &M,
    latents: &Latents,
    diag: &Diagnosis,
) -> Result<()> {
    page.heading("Traversals");
    let z0 = latents.mu().row(0).mapv(|v| v as f32);
    let mut chosen: Vec<usize> = diag.dims_by_kl.iter().copied().take(5).collect();
    if let Some(&last) = diag.dims_by_kl.last()
        && !chosen.contains(&last)
    {
        chosen.push(last);
    }
    let mut trav = Vec::new();
    for &k in &chosen {
        trav.push(manipulate::traverse(model, z0.view(), k, -3.0, 3.0, 9)?);
    }
    let desc: Vec<String> = chosen
        .iter()
        .map(|k| {
            format!(
                "z{k} ({:.2} nats{})",
                diag.kl_per_dim[*k],
                if diag.active_per_dim[*k] {
                    ""
                } else {
                    ", inactive"
                }
            )
        })
        .collect();
    page.png(
        &grid_png(&stack(&trav)?, shape_of(model), 9),
        &format!("Each row sweeps one dimension of the first test image's code from −3 to 3, the most informative first: {}.", desc.join("; ")),
    );
    Ok(())
}

/// "Interpolation": linear, SLERP and the decoder geodesic between two
/// test images (of different labels when there are labels), with their
/// path energies and norm profiles. Returns the geodesic.
pub fn interpolation<M: LatentModel + ?Sized>(
    page: &mut Page,
    model: &M,
    latents: &Latents,
    test: &Dataset,
) -> Result<Geodesic> {
    page.heading("Interpolation");
    let d = model.latent_dim();
    let (i1, i2) = match &test.labels {
        Some(l) => (
            0,
            (1..l.len())
                .find(|&j| l[j] != l[0])
                .unwrap_or(1.min(test.len() - 1)),
        ),
        None => (0, 1.min(test.len() - 1)),
    };
    let z1 = latents.mu().row(i1).mapv(|v| v as f32);
    let z2 = latents.mu().row(i2).mapv(|v| v as f32);
    let steps = 10;
    let (lin_codes, lin) =
        manipulate::interpolation_strip(model, z1.view(), z2.view(), steps, Method::Linear)?;
    let (sl_codes, sl) =
        manipulate::interpolation_strip(model, z1.view(), z2.view(), steps, Method::Slerp)?;
    let geo = manipulate::geodesic(
        model,
        z1.view(),
        z2.view(),
        &GeodesicParams {
            segments: steps - 1,
            iterations: 40,
            ..GeodesicParams::default()
        },
    )?;
    let geo_img = model.decode(geo.path.view())?;
    page.png(
        &grid_png(&stack(&[lin, sl, geo_img])?, shape_of(model), steps),
        &format!(
            "Rows: linear, SLERP and the decoder geodesic between test images {i1} and {i2}. Path energy under the decoder: linear {:.2}, SLERP {:.2}, geodesic {:.2}.",
            geo.linear_energy, geo.slerp_energy, geo.energy
        ),
    );
    let norms = |c: &Array2<f32>| -> Vec<(f64, f64)> {
        c.rows()
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    i as f64,
                    r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt(),
                )
            })
            .collect()
    };
    let cn = interpolate(z1.view(), z2.view(), steps, Method::ConstantNorm)?;
    page.svg(
        &lines(
            &[
                Series { name: "linear".into(), points: norms(&lin_codes) },
                Series { name: "SLERP".into(), points: norms(&sl_codes) },
                Series { name: "constant norm".into(), points: norms(&cn) },
                Series { name: "geodesic".into(), points: norms(&geo.path) },
            ],
            "Norm along the path",
            "step",
            "‖z‖",
            Some(((d as f64).sqrt(), "√d shell")),
        ),
        "Linear paths dip inside the typical shell of N(0, I) (radius ≈ √d) where the prior has little mass; SLERP keeps the norm.",
    );
    Ok(geo)
}

/// "Attribute edits", when the test images have at least two labels: a
/// class-to-class vector (3 → 8 where both exist) at strengths 0–5, and a
/// seeded random walk.
pub fn attribute_edits<M: LatentModel + ?Sized>(
    page: &mut Page,
    model: &M,
    test: &Dataset,
    seed: u64,
) -> Result<()> {
    let Some(l) = &test.labels else {
        return Ok(());
    };
    let mut classes: Vec<i64> = l.clone();
    classes.sort_unstable();
    classes.dedup();
    let (from, to) = if classes.contains(&3) && classes.contains(&8) {
        (3, 8)
    } else if classes.len() >= 2 {
        (classes[0], classes[1])
    } else {
        return Ok(());
    };
    let shape = shape_of(model);
    page.heading("Attribute edits");
    let mut man = Manipulator::new(model);
    man.class_vector(test.images.view(), l, from, to)?;
    let name = format!("class:{from}->{to}");
    let src_idx: Vec<usize> = (0..l.len()).filter(|&i| l[i] == from).take(5).collect();
    let src = rows(&test.images, &src_idx);
    let strengths = [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0];
    let mut out = Array2::<f32>::zeros((src.nrows() * strengths.len(), model.input_dim()));
    for (k, &s) in strengths.iter().enumerate() {
        let dec = man.apply(src.view(), &name, s)?;
        for r in 0..src.nrows() {
            out.row_mut(r * strengths.len() + k).assign(&dec.row(r));
        }
    }
    page.png(&grid_png(&out, shape, strengths.len()), &format!("Test images of label {from} moved along the {from} → {to} vector (normalised difference of the class means) with strength 0 to 5."));
    let (_, walk) = man.random_walk(test.images.row(0), 10, 0.6, seed, false)?;
    page.png(
        &grid_png(&walk, shape, 11),
        "A seeded random walk (steps of 0.6) from the first test image's code.",
    );
    Ok(())
}

/// "Disentanglement", when the test images have factor classes: every
/// metric on 1,000 training and 500 evaluation points, encoder means.
pub fn disentanglement<M: LatentModel + Sync + ?Sized>(
    page: &mut Page,
    model: &M,
    test: &Dataset,
    seed: u64,
) -> Result<Option<Scores>> {
    let Some(f) = &test.factor_classes else {
        return Ok(None);
    };
    page.heading("Disentanglement");
    let names = (f.ncols() == 5).then(|| {
        latentlab_data::dsprites::FACTOR_NAMES
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    let truth = Labelled::new(test.images.clone(), f.clone(), names)?;
    let settings = disentangle::Settings {
        seed,
        num_train: 1000,
        num_eval: 500,
        num_variance_estimate: 1000,
        ..disentangle::Settings::default()
    };
    let s = disentangle::evaluate_all(
        &truth,
        &Encoder::new(model, disentangle::Code::Mean),
        &settings,
    )?;
    page.table(&[
        ("β-VAE score".into(), format!("{:.3}", s.beta_vae)),
        ("FactorVAE score".into(), format!("{:.3}", s.factor_vae)),
        ("MIG".into(), format!("{:.3}", s.mig)),
        ("SAP".into(), format!("{:.3}", s.sap)),
        (
            "DCI disentanglement / completeness / informativeness".into(),
            format!(
                "{:.3} / {:.3} / {:.3}",
                s.dci.disentanglement, s.dci.completeness, s.dci.informativeness
            ),
        ),
        ("modularity".into(), format!("{:.3}", s.modularity)),
        (
            "explicitness (AUC)".into(),
            format!("{:.3}", s.explicitness),
        ),
    ]);
    page.para("On the test split's factors with 1,000 training and 500 evaluation points per metric, encoder means; see docs/diagnostics.md for what each number depends on.");
    Ok(Some(s))
}
