//! `latentlab report` and `latentlab demo`: one self-contained HTML page
//! that shows a latent space.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use latentlab::diagnostics::disentangle::{self, Encoder, Labelled, Settings};
use latentlab::diagnostics::{Latents, Options, State, diagnose};
use latentlab::embed::{
    Pca, PcaParams, Tsne, TsneParams, Umap, UmapParams, knn_accuracy, trustworthiness,
};
use latentlab::geometry::interpolate::{Method, interpolate};
use latentlab::manipulate::{self, GeodesicParams, Manipulator};
use latentlab::model::{Checkpoint, LatentModel, LoadOptions, Progress, Vae, state_path};
use latentlab::tensor::{Backend, Device, DeviceChoice};
use latentlab::viz::chart::{Series, bars, lines, scatter};
use latentlab::viz::html::Page;
use ndarray::{Array2, Axis, concatenate};
use serde_json::json;

use crate::error::{CliError, Context, Result};
use crate::load::{load_model, load_test};
use crate::picture::{grid_png as grid, shape_of};

/// `latentlab report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The checkpoint to show.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// mnist-10k, dsprites, dsprites:N or a folder of IDX files; the test split is shown.
    #[arg(long, default_value = "mnist-10k")]
    pub data: String,
    /// The folder to write index.html (and report.json) into.
    #[arg(long)]
    pub out: PathBuf,
    /// Test points in the latent maps.
    #[arg(long, default_value_t = 2000)]
    pub map_points: usize,
    /// cpu, gpu or auto.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Seed of every draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `latentlab demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// The folder for the checkpoint and the report.
    #[arg(long, default_value = "latentlab-demo")]
    pub out: PathBuf,
    /// Training epochs.
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// cpu, gpu or auto.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

fn rows(a: &Array2<f32>, idx: &[usize]) -> Array2<f32> {
    a.select(Axis(0), idx)
}

fn stack(parts: &[Array2<f32>]) -> Result<Array2<f32>> {
    let v: Vec<_> = parts.iter().map(|p| p.view()).collect();
    Ok(concatenate(Axis(0), &v)?)
}

fn report_on<B: Backend>(backend: B, a: &ReportArgs) -> Result<()>
where
    Vae<B>: Sync,
{
    let started = Instant::now();
    if a.out.is_file() {
        return Err(CliError::from(format!(
            "--out {}: is a file; give a folder",
            a.out.display()
        )));
    }
    if a.map_points < 50 {
        return Err(CliError::from(format!(
            "--map-points: {} is below 50",
            a.map_points
        )));
    }
    std::fs::create_dir_all(&a.out).context(format!("--out {}", a.out.display()))?;
    let model = load_model(backend, &a.checkpoint)?;
    let split = load_test(&a.data, model.input_dim())?;
    let test = &split.test;
    let shape = shape_of(&model);
    let cfg = model.config().clone();
    let d = model.latent_dim();
    let mut page = Page::new(&format!("latentlab report: {}", a.checkpoint.display()));
    page.para(&format!(
        "A {}-{:?}-{} {} on {} ({} test images), seed {}. Written by latentlab {}.",
        cfg.input_dim,
        cfg.hidden,
        cfg.latent,
        match cfg.kind {
            latentlab::model::ModelKind::Vae => "VAE",
            latentlab::model::ModelKind::Autoencoder => "autoencoder",
        },
        split.name,
        test.len(),
        a.seed,
        latentlab::VERSION
    ));

    // Diagnosis.
    let latents = Latents::encode(&model, test.view())?;
    let diag = diagnose(
        &latents,
        &Options {
            seed: a.seed,
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
    let names: Vec<String> = (0..d).map(|j| format!("z{j}")).collect();
    page.svg(
        &bars(&diag.kl_per_dim, &names, "KL per latent dimension", "nats per image", None),
        "Mean KL(q(z|x) ‖ p(z)) of each dimension on the test set: dimensions near zero carry no information (inactive).",
    );

    // Training curves.
    let state = state_path(&a.checkpoint);
    if let Ok(ck) = Checkpoint::read(&state, &LoadOptions::default())
        && let Some(p) = ck.progress.as_deref()
        && let Ok(progress) = serde_json::from_str::<Progress>(p)
        && !progress.history.is_empty()
    {
        let h = &progress.history;
        let pts = |f: &dyn Fn(&latentlab::model::EpochReport) -> f64| -> Vec<(f64, f64)> {
            h.iter().map(|r| (r.epoch as f64, f(r))).collect()
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
    }

    // Reconstructions and samples.
    page.heading("Reconstructions and samples");
    let n_show = 10.min(test.len());
    let idx: Vec<usize> = (0..n_show).collect();
    let inputs = rows(&test.images, &idx);
    let recon = model.reconstruct(inputs.view())?;
    page.png(
        &grid(&stack(&[inputs.clone(), recon])?, shape, n_show),
        "Top row: test images; bottom row: their reconstructions decode(encode(x).mean).",
    );
    let samples = model.sample(40, a.seed)?;
    page.png(
        &grid(&samples, shape, 10),
        "40 samples decoded from the prior N(0, I).",
    );
    if !diag.emptiest.is_empty() {
        let empt = Array2::from_shape_vec(
            (diag.emptiest.len(), d),
            diag.emptiest.iter().flatten().map(|v| *v as f32).collect(),
        )?;
        let dec = model.decode(empt.view())?;
        page.png(&grid(&dec, shape, 8), "Prior draws where the aggregate posterior is thinnest (the emptiest first): what lives in the holes.");
    }

    // Latent maps.
    page.heading("Latent maps");
    let m = a.map_points.min(test.len());
    let mu = latents.mu().slice(ndarray::s![..m, ..]).to_owned();
    let labels: Option<Vec<i64>> = test.labels.as_ref().map(|l| l[..m].to_vec());
    let mut maps_json = Vec::new();
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
                        seed: a.seed,
                        perplexity: 30f64.min((m - 1) as f64 / 3.0),
                        ..TsneParams::default()
                    },
                    &mut |_, _| {},
                )?
                .embedding
            }
            _ => {
                Umap::fit(
                    mu.view(),
                    &UmapParams {
                        seed: a.seed,
                        n_neighbors: 15.min(m - 1),
                        ..UmapParams::default()
                    },
                    &mut |_, _| {},
                )?
                .embedding
            }
        };
        let secs = t0.elapsed().as_secs_f64();
        let tw = trustworthiness(mu.view(), y.view(), 10)?;
        let acc = labels
            .as_ref()
            .map(|l| knn_accuracy(y.view(), l, 10))
            .transpose()?;
        let label = method.to_uppercase().replace("TSNE", "t-SNE");
        page.svg(
            &scatter(y.view(), labels.as_deref(), &format!("{label} of the latent means"), &format!("{label} 1"), &format!("{label} 2")),
            &format!(
                "{m} test latent means mapped by {label} ({secs:.1} s): trustworthiness@10 {tw:.4}{}.",
                acc.map(|a| format!(", 10-NN label accuracy {a:.3}")).unwrap_or_default()
            ),
        );
        maps_json.push(json!({"method": method, "seconds": secs, "trustworthiness10": tw, "knn_accuracy10": acc}));
    }

    // Traversals.
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
        trav.push(manipulate::traverse(&model, z0.view(), k, -3.0, 3.0, 9)?);
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
        &grid(&stack(&trav)?, shape, 9),
        &format!("Each row sweeps one dimension of the first test image's code from −3 to 3, the most informative first: {}.", desc.join("; ")),
    );

    // Interpolation.
    page.heading("Interpolation");
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
        manipulate::interpolation_strip(&model, z1.view(), z2.view(), steps, Method::Linear)?;
    let (sl_codes, sl) =
        manipulate::interpolation_strip(&model, z1.view(), z2.view(), steps, Method::Slerp)?;
    let geo = manipulate::geodesic(
        &model,
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
        &grid(&stack(&[lin, sl, geo_img])?, shape, steps),
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

    // Attribute edits.
    if let Some(l) = &test.labels {
        let mut classes: Vec<i64> = l.clone();
        classes.sort_unstable();
        classes.dedup();
        let (from, to) = if classes.contains(&3) && classes.contains(&8) {
            (3, 8)
        } else if classes.len() >= 2 {
            (classes[0], classes[1])
        } else {
            (0, 0)
        };
        if from != to {
            page.heading("Attribute edits");
            let mut man = Manipulator::new(&model);
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
            page.png(&grid(&out, shape, strengths.len()), &format!("Test images of label {from} moved along the {from} → {to} vector (normalised difference of the class means) with strength 0 to 5."));
            let (_, walk) = man.random_walk(test.images.row(0), 10, 0.6, a.seed, false)?;
            page.png(
                &grid(&walk, shape, 11),
                "A seeded random walk (steps of 0.6) from the first test image's code.",
            );
        }
    }

    // Disentanglement.
    let mut dis_json = serde_json::Value::Null;
    if let Some(f) = &test.factor_classes {
        page.heading("Disentanglement");
        let names = if f.ncols() == 5 {
            Some(
                latentlab::data::dsprites::FACTOR_NAMES
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            )
        } else {
            None
        };
        let truth = Labelled::new(test.images.clone(), f.clone(), names)?;
        let settings = Settings {
            seed: a.seed,
            num_train: 1000,
            num_eval: 500,
            num_variance_estimate: 1000,
            ..Settings::default()
        };
        let s = disentangle::evaluate_all(
            &truth,
            &Encoder::new(&model, disentangle::Code::Mean),
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
        dis_json = serde_json::to_value(&s)?;
    }

    page.para(&format!(
        "Report written in {:.1} s.",
        started.elapsed().as_secs_f64()
    ));
    let html = page.render();
    let index = a.out.join("index.html");
    latentlab::data::fs::write_atomic(&index, html.as_bytes())
        .context(format!("{}", index.display()))?;
    let summary = json!({
        "index": index.display().to_string(),
        "verdict": diag.verdict,
        "mean_kl": diag.mean_kl,
        "active_dims": diag.active_dims,
        "maps": maps_json,
        "geodesic": geo,
        "disentanglement": dis_json,
        "seconds": started.elapsed().as_secs_f64(),
    });
    let sj = a.out.join("report.json");
    latentlab::data::fs::write_atomic(&sj, summary.to_string().as_bytes())
        .context(format!("{}", sj.display()))?;
    eprintln!(
        "latentlab: wrote {} ({:.1} s)",
        index.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs `latentlab report`.
pub fn report(a: &ReportArgs) -> Result<()> {
    on_device!(a.device, backend => report_on(backend, a))
}

#[derive(Parser)]
#[command(name = "latentlab")]
struct TrainOnly {
    #[command(flatten)]
    train: crate::train::TrainArgs,
}

/// Runs `latentlab demo`: trains on the embedded MNIST-10k, then reports.
pub fn demo(a: &DemoArgs) -> Result<()> {
    if a.out.is_file() {
        return Err(CliError::from(format!(
            "--out {}: is a file; give a folder",
            a.out.display()
        )));
    }
    if a.epochs == 0 {
        return Err("--epochs: must be at least 1".into());
    }
    std::fs::create_dir_all(&a.out).context(format!("--out {}", a.out.display()))?;
    let ck = a.out.join("vae.safetensors");
    let ck_s = ck.to_string_lossy().to_string();
    let device = a.device.to_string();
    let epochs = a.epochs.to_string();
    let t = TrainOnly::try_parse_from([
        "latentlab",
        "--data",
        "mnist-10k",
        "--epochs",
        &epochs,
        "--out",
        &ck_s,
        "--device",
        &device,
    ])
    .context("demo")?;
    crate::train::train(t.train)?;
    report(&ReportArgs {
        checkpoint: ck,
        data: "mnist-10k".into(),
        out: a.out.clone(),
        map_points: 2000,
        device: a.device,
        seed: 0,
    })
}
