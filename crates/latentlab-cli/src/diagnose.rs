//! `latentlab diagnose` and `latentlab disentanglement`.

use std::path::{Path, PathBuf};

use latentlab::data::matrix::RawMatrix;
use latentlab::diagnostics::disentangle::{
    self, Code, CodeOptions, Encoder, FactorKind, Labelled, SapMode, Settings, dsprites_truth,
};
use latentlab::diagnostics::{
    Accumulator, Diagnosis, Latents, Options, diagnose, diagnose_streamed,
};
use latentlab::tensor::{Backend, Device, DeviceChoice};
use ndarray::Array2;

use crate::error::{CliError, Context, Result};
use crate::load::{load_data, split_rows};
use crate::model::{Model, ModelFlags, Need, load_for, open};

/// `latentlab diagnose`.
#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct DiagnoseArgs {
    /// A .safetensors file with tensors `mu` and `logvar` (N × d, f32 or f64), as `latentlab encode` writes.
    #[arg(long, conflicts_with_all = ["mu", "logvar", "checkpoint", "encoder"])]
    pub latents: Option<PathBuf>,
    /// Posterior means, a 2-D .npy file (N × d, f32 or f64); needs --logvar.
    #[arg(long, requires = "logvar", conflicts_with_all = ["checkpoint", "encoder"])]
    pub mu: Option<PathBuf>,
    /// Posterior log-variances, a 2-D .npy file of the same shape as --mu.
    #[arg(long, requires = "mu")]
    pub logvar: Option<PathBuf>,
    /// A model to encode --data with (--checkpoint, or --encoder).
    #[command(flatten)]
    pub model: ModelFlags,
    /// With a model: mnist-10k, `[color-]dsprites[:N]`, `FILE.npz[:N]`, a .npy file of images, a folder of PNG/JPEG images or a folder of IDX files.
    #[arg(long, default_value = "mnist-10k")]
    pub data: String,
    /// With a model: test, train or all.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// With a model: cpu, gpu or auto.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Monte Carlo draws for the mutual information and KL(q(z) ‖ p(z)).
    #[arg(long, default_value_t = 2000)]
    pub samples: usize,
    /// Prior draws probed for holes.
    #[arg(long, default_value_t = 2000)]
    pub probes: usize,
    /// A prior draw is in a hole when the aggregate posterior's density there is below this share of the prior's.
    #[arg(long, default_value_t = 0.01)]
    pub hole_ratio: f64,
    /// Seed of every draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

fn latents_from_model<B: Backend>(backend: B, a: &DiagnoseArgs) -> Result<Latents> {
    let model = open(backend, &a.model, Need::Encoder)?;
    let s = load_for(&a.data, &model)?;
    let (images, _) = split_rows(&s, &a.split)?;
    Ok(Latents::encode(&model, images.view())?)
}

/// Rows per chunk when streaming latents from disk.
const CHUNK_ROWS: usize = 1 << 16;

/// Rows of posterior parameters read a chunk at a time: a file on disk
/// ([`RawMatrix`]) or an array in memory (the Python package's).
pub trait RowSource {
    /// Rows.
    fn rows(&self) -> usize;
    /// Columns.
    fn cols(&self) -> usize;
    /// Up to `count` rows from `start`, as f64.
    fn read_rows(&mut self, start: usize, count: usize)
    -> std::result::Result<Array2<f64>, String>;
    /// The rows `idx`, in that order, as f64.
    fn read_selected(&mut self, idx: &[usize]) -> std::result::Result<Array2<f64>, String>;
}

impl RowSource for RawMatrix {
    fn rows(&self) -> usize {
        RawMatrix::rows(self)
    }
    fn cols(&self) -> usize {
        RawMatrix::cols(self)
    }
    fn read_rows(
        &mut self,
        start: usize,
        count: usize,
    ) -> std::result::Result<Array2<f64>, String> {
        RawMatrix::read_rows(self, start, count)
    }
    fn read_selected(&mut self, idx: &[usize]) -> std::result::Result<Array2<f64>, String> {
        RawMatrix::read_selected(self, idx)
    }
}

impl<T: Copy + Into<f64>> RowSource for ndarray::ArrayView2<'_, T> {
    fn rows(&self) -> usize {
        self.nrows()
    }
    fn cols(&self) -> usize {
        self.ncols()
    }
    fn read_rows(
        &mut self,
        start: usize,
        count: usize,
    ) -> std::result::Result<Array2<f64>, String> {
        let end = (start + count).min(self.nrows());
        Ok(self.slice(ndarray::s![start..end, ..]).mapv(Into::into))
    }
    fn read_selected(&mut self, idx: &[usize]) -> std::result::Result<Array2<f64>, String> {
        Ok(self.select(ndarray::Axis(0), idx).mapv(Into::into))
    }
}

/// `latentlab diagnose`'s settings, checked as the command checks its flags.
pub fn options(samples: usize, probes: usize, hole_ratio: f64, seed: u64) -> Result<Options> {
    if samples == 0 {
        return Err("--samples: must be at least 1".into());
    }
    if probes == 0 {
        return Err("--probes: must be at least 1".into());
    }
    if !(hole_ratio > 0.0 && hole_ratio < 1.0) {
        return Err(CliError::from(format!(
            "--hole-ratio: {hole_ratio} is not in (0, 1)"
        )));
    }
    Ok(Options {
        samples,
        hole_probes: probes,
        hole_ratio,
        seed,
        ..Options::default()
    })
}

/// Streams mu and logvar: the page's figures over every row, the Monte
/// Carlo figures over a seeded subset of at most 10,000 rows. Memory follows
/// the chunk and the subset, not the file. `latentlab diagnose --mu/--logvar`
/// and `--latents`, and the Python package's `diagnose`, all run this.
pub fn streamed(
    mut mu: impl RowSource,
    mut lv: impl RowSource,
    opts: &Options,
) -> Result<Diagnosis> {
    if (mu.rows(), mu.cols()) != (lv.rows(), lv.cols()) {
        return Err(CliError::from(format!(
            "mu is {}×{} but logvar is {}×{}; they must have the same shape",
            mu.rows(),
            mu.cols(),
            lv.rows(),
            lv.cols()
        )));
    }
    let (n, d) = (mu.rows(), mu.cols());
    if d == 0 {
        return Err("the latent dimension is 0".into());
    }
    if n < 2 {
        return Err(CliError::from(format!(
            "{n} point(s): the variance of the means needs at least 2"
        )));
    }
    let mut acc = Accumulator::new(d);
    let mut start = 0;
    while start < n {
        let m = mu.read_rows(start, CHUNK_ROWS)?;
        let l = lv.read_rows(start, CHUNK_ROWS)?;
        acc.push(m.view(), l.view(), start)?;
        start += m.nrows();
    }
    let mut pick = if n > opts.max_components {
        latentlab::data::rng::subset(n, opts.max_components, opts.seed, 3)
    } else {
        (0..n).collect()
    };
    pick.sort_unstable();
    let sample = Latents::new(mu.read_selected(&pick)?, lv.read_selected(&pick)?)?;
    Ok(diagnose_streamed(&acc, &sample, opts)?)
}

/// The diagnosis of `a`'s model on `a`'s data and split (`latentlab
/// diagnose --checkpoint …`'s figures).
pub fn diagnosis_of_model(a: &DiagnoseArgs) -> Result<Diagnosis> {
    let opts = options(a.samples, a.probes, a.hole_ratio, a.seed)?;
    let l = on_device!(crate::model::device(&a.model, a.device), backend => latents_from_model(backend, a))?;
    Ok(diagnose(&l, &opts)?)
}

/// Runs `latentlab diagnose`.
pub fn run(a: &DiagnoseArgs) -> Result<()> {
    let opts = options(a.samples, a.probes, a.hole_ratio, a.seed)?;
    let d = match (&a.latents, &a.mu, &a.logvar, a.model.given()) {
        (Some(p), ..) => {
            if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
                return Err(CliError::from(format!(
                    "--latents {}: expects a .safetensors file with `mu` and `logvar`; give .npy files as --mu and --logvar",
                    p.display()
                )));
            }
            let mu = RawMatrix::open_safetensors(p, "mu").map_err(|e| format!("--latents: {e}"))?;
            let lv =
                RawMatrix::open_safetensors(p, "logvar").map_err(|e| format!("--latents: {e}"))?;
            streamed(mu, lv, &opts).context(format!("--latents {}", p.display()))?
        }
        (None, Some(m), Some(l), _) => {
            let mu = RawMatrix::open_npy(m).map_err(|e| format!("--mu: {e}"))?;
            let lv = RawMatrix::open_npy(l).map_err(|e| format!("--logvar: {e}"))?;
            streamed(mu, lv, &opts).context("--mu/--logvar")?
        }
        (None, None, None, true) => diagnosis_of_model(a)?,
        _ => {
            return Err(
                "give --latents FILE.safetensors, --mu A.npy --logvar B.npy, or a model (--checkpoint CKPT or --encoder E.onnx) and --data D"
                    .into(),
            );
        }
    };
    if a.json {
        println!("{}", serde_json::to_string(&d)?);
        return Ok(());
    }
    println!("{} points, {} latent dimensions", d.n, d.total_dims);
    println!("  mean KL               {:>10.4} nats", d.mean_kl);
    println!(
        "  active dimensions     {:>10} of {}",
        d.active_dims, d.total_dims
    );
    println!("  mean posterior std    {:>10.4}", d.mean_posterior_std);
    println!("  aggregate KL (Gauss)  {:>10.4} nats", d.aggregate_kl);
    println!(
        "  I(x; z)               {:>10.4} ± {:.4} nats",
        d.mutual_information, d.mutual_information_se
    );
    println!(
        "  KL(q(z) ‖ p(z))       {:>10.4} ± {:.4} nats",
        d.aggregate_kl_mc, d.aggregate_kl_mc_se
    );
    println!(
        "  prior mass in holes   {:>9.1} %  ({:.1} % by chance)",
        100.0 * d.hole_fraction,
        100.0 * d.hole_fraction_null
    );
    println!("  KL per dimension, most informative first:");
    for &j in &d.dims_by_kl {
        println!(
            "    z{j:<4} {:>8.4} nats  var(mu) {:>8.4}{}",
            d.kl_per_dim[j],
            d.mu_variance[j],
            if d.active_per_dim[j] {
                ""
            } else {
                "  inactive"
            }
        );
    }
    println!("page's diagnosis: {}", d.diagnosis);
    println!("verdict: {}", d.verdict.summary);
    for f in &d.verdict.findings {
        println!("  - {f}");
    }
    Ok(())
}

/// `latentlab disentanglement`.
#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct DisentanglementArgs {
    /// The model whose encoder gives the codes (--checkpoint, or --encoder).
    #[command(flatten)]
    pub model: ModelFlags,
    /// Codes from any model, scored without one: a 2-D .npy file (N × d, float32 or float64); needs --factors (N × K, or N for one factor: whole-number classes of any numeric type, or real values with --continuous). MIG, SAP, DCI, modularity and explicitness are computed; the β-VAE and FactorVAE scores need a model and are reported as not computable.
    #[arg(long, conflicts_with_all = ["data", "code", "num_train", "num_eval", "checkpoint", "encoder", "decoder"])]
    pub codes: Option<PathBuf>,
    /// Held-out codes (with --test-factors) that SAP, DCI and explicitness are scored on; without them a seeded 20 % of --codes' rows is held out.
    #[arg(long, requires_all = ["codes", "test_factors"])]
    pub test_codes: Option<PathBuf>,
    /// The factors of --test-codes' rows, as --factors.
    #[arg(long, requires = "test_codes")]
    pub test_factors: Option<PathBuf>,
    /// With --codes: the factors are real values. SAP uses R²; MIG, modularity, DCI and explicitness cut each factor into 20 equal-width bins over its training range.
    #[arg(long, requires = "codes")]
    pub continuous: bool,
    /// dsprites (the full factor grid), or labelled data (mnist-10k, dsprites:N, an IDX folder) whose labels are the factor.
    #[arg(long, default_value = "dsprites")]
    pub data: String,
    /// Which code: mean (the encoder mean) or sample (z drawn from q(z|x)).
    #[arg(long, default_value = "mean", value_parser = ["mean", "sample"])]
    pub code: String,
    /// Training points of every metric.
    #[arg(long, default_value_t = 10_000)]
    pub num_train: usize,
    /// Evaluation points of every metric.
    #[arg(long, default_value_t = 5_000)]
    pub num_eval: usize,
    /// SAP's score per code and factor: classifier (one-feature linear SVM; the default) or correlation (R²; the default with --continuous).
    #[arg(long, value_parser = ["classifier", "correlation"])]
    pub sap: Option<String>,
    /// Seed of every draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, gpu or auto.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// The settings of every metric of `latentlab disentanglement` with a
/// model, checked as the command checks its flags.
pub fn settings(
    num_train: usize,
    num_eval: usize,
    sap: Option<&str>,
    seed: u64,
) -> Result<Settings> {
    if num_train < 2 {
        return Err("--num-train: must be at least 2".into());
    }
    if num_eval < 1 {
        return Err("--num-eval: must be at least 1".into());
    }
    let sap_mode = match sap {
        Some("correlation") => SapMode::Correlation,
        None | Some("classifier") => SapMode::Classifier,
        Some(other) => {
            return Err(CliError::from(format!(
                "--sap: unknown score `{other}`; expected classifier or correlation"
            )));
        }
    };
    Ok(Settings {
        seed,
        num_train,
        num_eval,
        num_variance_estimate: num_train,
        sap_mode,
        ..Settings::default()
    })
}

fn disentangle_on<B: Backend>(backend: B, a: &DisentanglementArgs) -> Result<disentangle::Scores>
where
    Model<B>: Sync,
{
    if !a.model.given() {
        return Err("give a model (--checkpoint, or --encoder) or --codes".into());
    }
    let model = open(backend, &a.model, Need::Encoder)?;
    let settings = settings(a.num_train, a.num_eval, a.sap.as_deref(), a.seed)?;
    let code = if a.code == "sample" {
        Code::Sample
    } else {
        Code::Mean
    };
    let rep = Encoder::new(&model, code);
    let check = |h: usize, w: usize| model.check_input(&a.data, [1, h, w]);
    let scores = if a.data == "dsprites" {
        let side = latentlab::data::dsprites::SIDE;
        check(side, side)?;
        disentangle::evaluate_all(&dsprites_truth(), &rep, &settings)
    } else if let Some((file, None)) = crate::load::npz_spec(&a.data)? {
        // The whole file: its ordered factor grid, unpacked image by image.
        let f = latentlab::data::npz::read_dsprites_npz(file).context("--data")?;
        if !f.is_ordered_grid() {
            return Err(CliError::from(format!(
                "--data {}: its rows are not the full factor grid in order (as the original file's are); score N of its images with --data {}:N",
                a.data, a.data
            )));
        }
        let (h, w) = f.images.image_shape();
        check(h, w)?;
        let cols = f.factor_columns();
        let counts = f.class_counts();
        let names = cols
            .iter()
            .map(|&k| latentlab::data::npz::LATENT_NAMES[k].to_string())
            .collect();
        let sizes = cols.iter().map(|&k| counts[k]).collect();
        let render = |classes: &[usize], out: &mut [f32]| {
            let mut all = [0usize; 6];
            for (&k, &c) in cols.iter().zip(classes) {
                all[k] = c;
            }
            f.images.unpack_into(f.grid_index(&all), out);
        };
        let truth = disentangle::FactorGrid::new(sizes, names, h * w, render);
        disentangle::evaluate_all(&truth, &rep, &settings)
    } else {
        let s = load_data(&a.data, a.seed)?;
        model.check_input(&a.data, s.train.chw())?;
        let parts = [&s.train, &s.test];
        let x = ndarray::concatenate(
            ndarray::Axis(0),
            &parts.iter().map(|d| d.images.view()).collect::<Vec<_>>(),
        )?;
        let (classes, names) = if parts.iter().all(|d| d.factor_classes.is_some()) {
            let c = ndarray::concatenate(
                ndarray::Axis(0),
                &parts
                    .iter()
                    .map(|d| d.factor_classes.as_ref().expect("checked").view())
                    .collect::<Vec<_>>(),
            )?;
            let names = (c.ncols() == 5 && s.name.contains("dsprites")).then(|| {
                latentlab::data::dsprites::FACTOR_NAMES
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            });
            (c, names)
        } else {
            let labels: Vec<i64> = parts
                .iter()
                .map(|d| d.labels.clone())
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| format!("--data {}: the data carry no labels or factors", a.data))?
                .concat();
            if labels.iter().any(|l| *l < 0) {
                return Err(CliError::from(format!(
                    "--data {}: labels must be non-negative classes",
                    a.data
                )));
            }
            let c = Array2::from_shape_vec(
                (labels.len(), 1),
                labels.iter().map(|l| *l as usize).collect(),
            )?;
            (c, Some(vec!["label".to_string()]))
        };
        let truth = Labelled::new(x, classes, names)?;
        disentangle::evaluate_all(&truth, &rep, &settings)
    };
    Ok(scores?)
}

/// The code-level metrics of `train` (codes, factors) and, when given,
/// held-out `test` codes and factors, with `latentlab disentanglement
/// --codes`'s checks and messages: `continuous` factors are real values,
/// `sap` is `classifier` or `correlation` (None: the factors' default).
pub fn score_codes(
    train: (Array2<f64>, Array2<f64>),
    test: Option<(Array2<f64>, Array2<f64>)>,
    continuous: bool,
    sap: Option<&str>,
    seed: u64,
) -> Result<disentangle::CodeScores> {
    let kind = if continuous {
        FactorKind::Continuous
    } else {
        FactorKind::Discrete
    };
    let sap_mode = match (sap, kind) {
        (Some("classifier"), FactorKind::Continuous) => {
            return Err(
                "--sap classifier: continuous factors have no classes to classify; \
                 with --continuous SAP scores R² (--sap correlation)"
                    .into(),
            );
        }
        (Some("correlation"), _) | (None, FactorKind::Continuous) => SapMode::Correlation,
        (Some("classifier"), _) | (None, _) => SapMode::Classifier,
        (Some(other), _) => {
            return Err(CliError::from(format!(
                "--sap: unknown score `{other}`; expected classifier or correlation"
            )));
        }
    };
    let rows = |(c, f): &(Array2<f64>, Array2<f64>), cflag: &str, fflag: &str| -> Result<()> {
        if c.nrows() != f.nrows() {
            return Err(CliError::from(format!(
                "{fflag}: {} rows of factors for {} rows of {cflag}",
                f.nrows(),
                c.nrows()
            )));
        }
        Ok(())
    };
    rows(&train, "--codes", "--factors")?;
    if let Some(t) = &test {
        rows(t, "--test-codes", "--test-factors")?;
    }
    let opts = CodeOptions {
        factors: kind,
        sap_mode,
        seed,
        ..CodeOptions::default()
    };
    Ok(disentangle::evaluate_codes(train.0, train.1, test, &opts)?)
}

/// `latentlab disentanglement --codes`: the code-level metrics of arrays
/// from any model.
fn disentangle_codes(a: &DisentanglementArgs, codes: &Path) -> Result<()> {
    let factors = crate::load::data_options().factors.ok_or(
        "--codes needs --factors: the factors of its rows, a .npy file of N × K (or N) values",
    )?;
    let pair = |c: &Path, f: &Path, cflag: &str, fflag: &str| -> Result<_> {
        Ok((
            crate::load::read_matrix(c, cflag)?,
            crate::load::read_factors(f, fflag)?,
        ))
    };
    let train = pair(codes, &factors, "--codes", "--factors")?;
    let test = match (&a.test_codes, &a.test_factors) {
        (Some(tc), Some(tf)) => Some(pair(tc, tf, "--test-codes", "--test-factors")?),
        (None, None) => None,
        _ => return Err("--test-codes and --test-factors go together".into()),
    };
    let s = score_codes(train, test, a.continuous, a.sap.as_deref(), a.seed)?;
    if a.json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(());
    }
    println!(
        "{} factors, {} training / {} test codes ({})",
        s.factors.len(),
        s.settings.num_train,
        s.settings.num_test,
        s.settings.split
    );
    for (name, why) in &s.not_computable {
        println!("  {name:<18} not computable: {why}");
    }
    print_code_level(
        s.mig,
        s.sap,
        &s.dci,
        s.modularity,
        (s.explicitness, s.explicitness_normalized),
    );
    println!("factors: {}", s.settings.factor_treatment);
    Ok(())
}

/// Prints the metrics both forms of `latentlab disentanglement` compute.
fn print_code_level(
    mig: f64,
    sap: f64,
    dci: &disentangle::Dci,
    modularity: f64,
    (explicitness, normalized): (f64, f64),
) {
    println!("  MIG                {mig:.4}");
    println!("  SAP                {sap:.4}");
    println!(
        "  DCI                D {:.4}  C {:.4}  I {:.4}",
        dci.disentanglement, dci.completeness, dci.informativeness
    );
    println!("  modularity         {modularity:.4}");
    println!("  explicitness       {explicitness:.4} (AUC; {normalized:.4} with chance at 0)");
}

/// Every metric of `a`'s model against `a`'s data's factors (`latentlab
/// disentanglement --checkpoint …`'s figures).
pub fn scores_of_model(a: &DisentanglementArgs) -> Result<disentangle::Scores> {
    if a.num_train < 2 {
        return Err("--num-train: must be at least 2".into());
    }
    if a.num_eval < 1 {
        return Err("--num-eval: must be at least 1".into());
    }
    on_device!(crate::model::device(&a.model, a.device), backend => disentangle_on(backend, a))
}

/// Runs `latentlab disentanglement`.
pub fn disentanglement(a: &DisentanglementArgs) -> Result<()> {
    if let Some(codes) = &a.codes {
        return disentangle_codes(a, codes);
    }
    let s = scores_of_model(a)?;
    if a.json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(());
    }
    println!("factors: {}", s.factors.join(", "));
    println!("  β-VAE score        {:.4}", s.beta_vae);
    println!("  FactorVAE score    {:.4}", s.factor_vae);
    print_code_level(
        s.mig,
        s.sap,
        &s.dci,
        s.modularity,
        (s.explicitness, s.explicitness_normalized),
    );
    Ok(())
}
