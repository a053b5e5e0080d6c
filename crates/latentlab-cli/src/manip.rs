//! `sample`, `traverse`, `attribute`, `analogy`, `walk` and
//! `interpolate --checkpoint`: latent moves written as PNG image grids.

use std::path::{Path, PathBuf};

use latentlab::data::Split;
use latentlab::manipulate::{self, GeodesicParams, Manipulator};
use latentlab::model::LatentModel;
use latentlab::tensor::{Backend, Device, DeviceChoice};
use ndarray::{Array2, Axis, concatenate};
use serde_json::{Value, json};

use crate::error::{CliError, Context, Result};
use crate::load::index_of;
use crate::model::{ModelFlags, Need, load_for, open};
use crate::picture::{shape_of, write_png};

/// Flags every manipulation command shares.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelFlags,
    /// Images to start from: mnist-10k, `[color-]dsprites[:N]`, `FILE.npz[:N]`, a .npy file of images, a folder of PNG/JPEG images or a folder of IDX files (their test split).
    #[arg(long, default_value = "mnist-10k")]
    pub data: String,
    /// cpu, gpu or auto.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// The PNG to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Print one JSON document with the figures.
    #[arg(long)]
    pub json: bool,
}

fn finish(a: &ModelArgs, figures: Value) -> Result<()> {
    if a.json {
        println!("{figures}");
    } else {
        eprintln!("latentlab: wrote {}", a.out.display());
    }
    Ok(())
}

fn class_rows(s: &Split, class: i64, flag: &str) -> Result<Array2<f32>> {
    let labels = s
        .test
        .labels
        .as_ref()
        .ok_or_else(|| format!("{flag}: the data carry no labels"))?;
    let rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
    if rows.is_empty() {
        return Err(CliError::from(format!(
            "{flag}: no test image has label {class}"
        )));
    }
    Ok(s.test.images.select(Axis(0), &rows))
}

/// `latentlab sample`.
#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct SampleArgs {
    /// The model, data and output.
    #[command(flatten)]
    pub m: ModelArgs,
    /// Number of samples.
    #[arg(long, default_value_t = 40)]
    pub n: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `latentlab traverse`.
#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct TraverseArgs {
    /// The model, data and output.
    #[command(flatten)]
    pub m: ModelArgs,
    /// The test image whose code is traversed.
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// Dimensions to sweep, comma-separated (default: every dimension).
    #[arg(long, value_delimiter = ',')]
    pub dims: Vec<usize>,
    /// Lowest value of the swept dimension.
    #[arg(long, default_value_t = -3.0)]
    pub low: f32,
    /// Highest value.
    #[arg(long, default_value_t = 3.0)]
    pub high: f32,
    /// Values per dimension.
    #[arg(long, default_value_t = 9)]
    pub steps: usize,
}

/// `latentlab attribute`.
#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct AttributeArgs {
    /// The model, data and output.
    #[command(flatten)]
    pub m: ModelArgs,
    /// Class the vector starts from (its images are edited).
    #[arg(long)]
    pub from_class: i64,
    /// Class the vector points to.
    #[arg(long)]
    pub to_class: i64,
    /// Strengths, comma-separated (negative removes).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,1,2,3,4",
        allow_hyphen_values = true
    )]
    pub strengths: Vec<f32>,
    /// Images of the start class to edit.
    #[arg(long, default_value_t = 5)]
    pub count: usize,
    /// Also save the vector to this .safetensors file.
    #[arg(long)]
    pub save: Option<PathBuf>,
}

/// `latentlab analogy`.
#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct AnalogyArgs {
    /// The model, data and output.
    #[command(flatten)]
    pub m: ModelArgs,
    /// Class A.
    #[arg(long)]
    pub a: i64,
    /// Class B.
    #[arg(long)]
    pub b: i64,
    /// Test images C, comma-separated: each gets C − A + B.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4")]
    pub c: Vec<usize>,
}

/// `latentlab walk`.
#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct WalkArgs {
    /// The model, data and output.
    #[command(flatten)]
    pub m: ModelArgs,
    /// The test image the walk starts from.
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// Steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Length of each step.
    #[arg(long, default_value_t = 0.5)]
    pub step_size: f32,
    /// Keep every point on the typical shell (norm √d).
    #[arg(long)]
    pub shell: bool,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn sample_on<B: Backend>(backend: B, a: &SampleArgs) -> Result<()> {
    if a.n == 0 || a.n > 10_000 {
        return Err(CliError::from(format!("--n: {} is not in 1..=10000", a.n)));
    }
    let model = open(backend, &a.m.model, Need::Decoder)?;
    let x = model.sample(a.n, a.seed)?;
    write_png(&a.m.out, &x, shape_of(&model), 10)?;
    finish(
        &a.m,
        json!({"n": a.n, "seed": a.seed, "out": a.m.out.display().to_string()}),
    )
}

fn traverse_on<B: Backend>(backend: B, a: &TraverseArgs) -> Result<()> {
    let model = open(backend, &a.m.model, Need::Both)?;
    let s = load_for(&a.m.data, &model)?;
    let i = index_of(&s, a.index, "--index")?;
    let z = model
        .encode(s.test.images.slice(ndarray::s![i..=i, ..]))?
        .mu;
    let dims: Vec<usize> = if a.dims.is_empty() {
        (0..model.latent_dim()).collect()
    } else {
        a.dims.clone()
    };
    let mut rows = Vec::new();
    for &d in &dims {
        rows.push(
            manipulate::traverse(&model, z.row(0), d, a.low, a.high, a.steps).context("--dims")?,
        );
    }
    let views: Vec<_> = rows.iter().map(|r| r.view()).collect();
    let all = concatenate(Axis(0), &views)?;
    write_png(&a.m.out, &all, shape_of(&model), a.steps)?;
    // Pixels changed end to end, per dimension.
    let change: Vec<f64> = rows
        .iter()
        .map(|r| {
            (&r.row(r.nrows() - 1) - &r.row(0))
                .mapv(|v| f64::from(v).abs())
                .mean()
                .unwrap_or(0.0)
        })
        .collect();
    finish(&a.m, json!({"dims": dims, "mean_abs_pixel_change": change}))
}

fn attribute_on<B: Backend>(backend: B, a: &AttributeArgs) -> Result<()> {
    let model = open(backend, &a.m.model, Need::Both)?;
    let s = load_for(&a.m.data, &model)?;
    let labels = s
        .test
        .labels
        .clone()
        .ok_or("--data: the data carry no labels")?;
    let mut man = Manipulator::new(&model);
    let v = man
        .class_vector(s.test.images.view(), &labels, a.from_class, a.to_class)
        .context("--from-class/--to-class")?;
    let name = format!("class:{}->{}", a.from_class, a.to_class);
    let src = class_rows(&s, a.from_class, "--from-class")?;
    let src = src
        .slice(ndarray::s![..a.count.min(src.nrows()).max(1), ..])
        .to_owned();
    if a.strengths.is_empty() || a.strengths.iter().any(|s| !s.is_finite()) {
        return Err("--strengths: give finite numbers, e.g. 0,1,2".into());
    }
    let mut rows = Array2::<f32>::zeros((src.nrows() * a.strengths.len(), model.input_dim()));
    for (k, &st) in a.strengths.iter().enumerate() {
        let d = man.apply(src.view(), &name, st)?;
        for r in 0..src.nrows() {
            rows.row_mut(r * a.strengths.len() + k).assign(&d.row(r));
        }
    }
    write_png(&a.m.out, &rows, shape_of(&model), a.strengths.len())?;
    if let Some(p) = &a.save {
        man.save(p).context("--save")?;
    }
    finish(
        &a.m,
        json!({"attribute": name, "vector": v.to_vec(), "strengths": a.strengths}),
    )
}

fn analogy_on<B: Backend>(backend: B, a: &AnalogyArgs) -> Result<()> {
    let model = open(backend, &a.m.model, Need::Both)?;
    let s = load_for(&a.m.data, &model)?;
    let xa = class_rows(&s, a.a, "--a")?;
    let xb = class_rows(&s, a.b, "--b")?;
    let man = Manipulator::new(&model);
    let mut out = Vec::new();
    for &c in &a.c {
        let i = index_of(&s, c, "--c")?;
        let xc = s.test.images.slice(ndarray::s![i..=i, ..]);
        out.push(xc.to_owned());
        out.push(man.analogy(xa.view(), xb.view(), xc)?);
    }
    let views: Vec<_> = out.iter().map(|r| r.view()).collect();
    let all = concatenate(Axis(0), &views)?;
    write_png(&a.m.out, &all, shape_of(&model), 2)?;
    finish(&a.m, json!({"a": a.a, "b": a.b, "c": a.c}))
}

fn walk_on<B: Backend>(backend: B, a: &WalkArgs) -> Result<()> {
    let model = open(backend, &a.m.model, Need::Both)?;
    let s = load_for(&a.m.data, &model)?;
    let i = index_of(&s, a.index, "--index")?;
    if a.steps == 0 || a.steps > 1000 {
        return Err(CliError::from(format!(
            "--steps: {} is not in 1..=1000",
            a.steps
        )));
    }
    let man = Manipulator::new(&model);
    let (codes, dec) = man
        .random_walk(s.test.images.row(i), a.steps, a.step_size, a.seed, a.shell)
        .context("--step-size")?;
    write_png(&a.m.out, &dec, shape_of(&model), 11)?;
    let norms: Vec<f64> = codes
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt())
        .collect();
    finish(&a.m, json!({"steps": a.steps, "norms": norms}))
}

macro_rules! device_command {
    ($name:ident, $args:ty, $on:ident) => {
        /// Runs the command on the chosen device.
        pub fn $name(a: &$args) -> Result<()> {
            on_device!(crate::model::device(&a.m.model, a.m.device), backend => $on(backend, a))
        }
    };
}

device_command!(sample, SampleArgs, sample_on);
device_command!(traverse, TraverseArgs, traverse_on);
device_command!(attribute, AttributeArgs, attribute_on);
device_command!(analogy, AnalogyArgs, analogy_on);
device_command!(walk, WalkArgs, walk_on);

/// `latentlab interpolate --checkpoint` (or `--encoder --decoder`): decoded strips between two test
/// images' codes (the chosen method, then the decoder geodesic), and the
/// path energies of linear, SLERP and the geodesic.
pub fn interpolate_images(a: &ImageStrip<'_>) -> Result<Value> {
    on_device!(crate::model::device(a.model, a.device), backend => interpolate_on(backend, a))
}

/// What `interpolate --checkpoint` draws: test images `from` and `to` of
/// `data`, `steps` codes by `method`, written to `image`.
pub struct ImageStrip<'a> {
    /// The model.
    pub model: &'a ModelFlags,
    /// The PNG to write.
    pub image: &'a Path,
    /// The data whose test images are the ends.
    pub data: &'a str,
    /// Test index of the first end.
    pub from: usize,
    /// Test index of the second end.
    pub to: usize,
    /// Codes along the path.
    pub steps: usize,
    /// Interpolation method.
    pub method: latentlab::geometry::interpolate::Method,
    /// cpu, gpu or auto.
    pub device: DeviceChoice,
}

fn interpolate_on<B: Backend>(backend: B, a: &ImageStrip<'_>) -> Result<Value> {
    let image = a.image;
    let (data, from, to, steps, method) = (a.data, a.from, a.to, a.steps, a.method);
    let model = open(backend, a.model, Need::Both)?;
    let s = load_for(data, &model)?;
    let (i, j) = (index_of(&s, from, "--from")?, index_of(&s, to, "--to")?);
    if steps < 3 {
        return Err("--steps: an image strip needs at least 3 points".into());
    }
    let z = model
        .encode(s.test.images.select(Axis(0), &[i, j]).view())?
        .mu;
    let (codes, strip) =
        manipulate::interpolation_strip(&model, z.row(0), z.row(1), steps, method)?;
    let g = manipulate::geodesic(
        &model,
        z.row(0),
        z.row(1),
        &GeodesicParams {
            segments: steps - 1,
            ..GeodesicParams::default()
        },
    )?;
    let geo = model.decode(g.path.view())?;
    let all = concatenate(Axis(0), &[strip.view(), geo.view()])?;
    write_png(image, &all, shape_of(&model), steps)?;
    let energy = manipulate::path_energy(&model, codes.view())?;
    Ok(json!({
        "from": from, "to": to, "method": method.name(), "energy": energy,
        "linear_energy": g.linear_energy, "slerp_energy": g.slerp_energy,
        "geodesic_energy": g.energy, "image": image.display().to_string(),
    }))
}
