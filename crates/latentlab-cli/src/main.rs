//! `latentlab`: the command line.
//!
//! Every command that reports numbers takes `--json` and then prints one JSON
//! document on stdout; logs go to stderr. Errors end with a one-line message
//! and a non-zero exit.

use std::process::ExitCode;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use latentlab::tensor::DeviceChoice;

/// mimalloc keeps freed memory in the process: a training step allocates and
/// frees the same large buffers (patches, activations) every step, which the
/// system allocator returns to the kernel and then faults in again as zeroed
/// pages (a quarter of a conv64 step's time on the CPU with glibc).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_e` values of the mimalloc 2.3.2 that `libmimalloc-sys` 0.1.49
/// vendors (the workspace pins that version).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory committed in the process instead of returning it to
/// the kernel after 10 ms: the next step reuses it without page faults
/// (conv64 training on the CPU: 320 → 420 images/s on the 2-core machine of
/// docs/benchmarks.md). The peak memory is the same; it is held until exit.
#[allow(unsafe_code)]
fn keep_freed_memory() {
    // SAFETY: mi_option_set stores an option value in mimalloc's option
    // table; both options are read when mimalloc next purges or creates an
    // arena, and any value is valid for them.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 1);
    }
}

use latentlab_cli::{diagnose, embed, geometry, info, load, manip, model, report, study, train};

#[derive(Parser)]
#[command(
    name = "latentlab",
    version,
    about = "Train VAEs and make their latent spaces visible, measurable and editable."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Read checkpoint tensor names through a prefix rule FROM=TO (repeatable;
    /// the first rule that matches a name applies), for state_dicts saved under
    /// another naming scheme: `module.=` strips DataParallel's prefix,
    /// `enc.=encoder.` maps a module's children onto latentlab's names.
    #[arg(long = "rename", global = true, value_name = "FROM=TO")]
    renames: Vec<latentlab::model::Rename>,
    /// The stacks of a checkpoint without a latentlab config (a PyTorch
    /// state_dict) whose layers names and shapes do not reveal: a JSON file
    /// in --arch's layer specification ({"encoder": [...], "decoder": [...]}).
    #[arg(long, global = true, value_name = "FILE.json")]
    checkpoint_arch: Option<PathBuf>,
    /// Labels of the rows read: of --data (a .npy file or a folder of
    /// images, in the file's row order or the folder's sorted file order),
    /// or of embed's latents. A .npy file of N whole numbers.
    #[arg(long, global = true, value_name = "y.npy")]
    labels: Option<PathBuf>,
    /// Factors of the rows read: of --data (as --labels; N × K classes, the
    /// disentanglement metrics' ground truth), or of disentanglement's
    /// --codes (classes, or real values with --continuous).
    #[arg(long, global = true, value_name = "f.npy")]
    factors: Option<PathBuf>,
    /// Folders of images: resize every image to H × W pixels (`64` or
    /// `64x48`, height first), with a triangle (bilinear, antialiased) filter.
    #[arg(long, global = true, value_name = "H[xW]")]
    image_size: Option<String>,
    /// With --image-size: resize the shorter side and crop the centre
    /// (keeping the aspect), instead of stretching.
    #[arg(long, global = true)]
    center_crop: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Version, available backends, and the GPU adapter with its limits (or why none was found).
    Info {
        /// Which device to select: cpu, gpu (an error without an adapter) or auto.
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Geometry of the prior N(0, I): the shell table and seeded samples.
    Geometry {
        #[command(subcommand)]
        command: GeometryCommand,
    },
    /// Trains a VAE (or autoencoder) and writes a checkpoint.
    Train(Box<train::TrainArgs>),
    /// Encodes a dataset with a model: mu, logvar and labels to a .safetensors file.
    #[command(allow_negative_numbers = true)]
    Encode {
        #[command(flatten)]
        model: model::ModelFlags,
        /// mnist-10k, `[color-]dsprites[:N]`, `FILE.npz[:N]`, a .npy file of images, a folder of PNG/JPEG images or a folder of IDX files.
        #[arg(long, default_value = "mnist-10k")]
        data: String,
        /// test, train or all.
        #[arg(long, default_value = "test")]
        split: String,
        /// Output .safetensors file.
        #[arg(long, default_value = "latents.safetensors")]
        out: PathBuf,
        /// cpu, gpu or auto.
        #[arg(long, default_value = "auto")]
        device: DeviceChoice,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Decodes latent codes (an N × d .npy) to the mean of p(x|z) as an N×C×H×W float32 .npy.
    #[command(allow_negative_numbers = true)]
    Decode(train::DecodeArgs),
    /// Interpolates between two latent codes (1-D .npy files, f32 or f64).
    Interpolate(geometry::InterpolateArgs),
    /// Is this latent space healthy? KL, active units, I(x; z), holes and a verdict.
    #[command(allow_negative_numbers = true)]
    Diagnose(diagnose::DiagnoseArgs),
    /// Disentanglement metrics against ground-truth factors (β-VAE, FactorVAE, MIG, SAP, DCI, modularity).
    #[command(allow_negative_numbers = true)]
    Disentanglement(diagnose::DisentanglementArgs),
    /// 2-D maps of latent means (PCA, t-SNE, UMAP) with their trustworthiness.
    #[command(allow_negative_numbers = true)]
    Embed(embed::EmbedArgs),
    /// Samples from the prior, decoded, as a PNG grid.
    #[command(allow_negative_numbers = true)]
    Sample(manip::SampleArgs),
    /// Sweeps latent dimensions around a test image's code, as a PNG grid.
    #[command(allow_negative_numbers = true)]
    Traverse(manip::TraverseArgs),
    /// Moves images of one class towards another along their attribute vector, as a PNG grid.
    #[command(allow_negative_numbers = true)]
    Attribute(manip::AttributeArgs),
    /// A is to B as C is to ?: decoded analogies over classes, as a PNG grid.
    #[command(allow_negative_numbers = true)]
    Analogy(manip::AnalogyArgs),
    /// A seeded random walk from a test image's code, as a PNG strip.
    #[command(allow_negative_numbers = true)]
    Walk(manip::WalkArgs),
    /// One self-contained HTML report: diagnosis, maps, traversals, interpolations, edits.
    Report(report::ReportArgs),
    /// Trains on the embedded MNIST-10k, then writes the report (the README's main job).
    Demo(report::DemoArgs),
    /// Studies: grids of families, settings and seeds, run here or as a Slurm array, collected into Parquet.
    Study {
        #[command(subcommand)]
        command: study::StudyCommand,
    },
}

#[derive(Subcommand)]
enum GeometryCommand {
    /// Exact statistics of ‖z‖ for z ~ N(0, I_d): the "thin shell".
    #[command(allow_negative_numbers = true)]
    Shell {
        /// Comma-separated dimensions.
        #[arg(long, default_value = "1,2,5,10,20,50,100,512", value_delimiter = ',', value_parser = geometry::parse_dim)]
        dims: Vec<usize>,
        /// Print one JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Seeded codes from the prior, or uniform on the shell of radius √d.
    #[command(allow_negative_numbers = true)]
    Sample {
        /// Number of codes.
        #[arg(long)]
        n: usize,
        /// Latent dimension.
        #[arg(long)]
        dim: usize,
        /// Random seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Sample uniformly on the sphere of radius √d instead of N(0, I).
        #[arg(long)]
        shell: bool,
        /// Output .npy file (n × dim, float32).
        #[arg(long)]
        out: PathBuf,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    keep_freed_memory();
    // A panic inside tract on a malformed ONNX graph is caught and reported
    // as an error naming the file; its message is not printed twice.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !latentlab::onnx::inside_guarded_call() {
            default_hook(info);
        }
    }));
    let cli = Cli::parse();
    if let Err(e) = load::set_load_options(cli.renames, cli.checkpoint_arch.as_deref()) {
        eprintln!("latentlab: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = load::set_data_options(
        cli.image_size.as_deref(),
        cli.center_crop,
        cli.labels,
        cli.factors,
    ) {
        eprintln!("latentlab: error: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Info { device, json } => info::run(device, json),
        Command::Geometry { command } => match command {
            GeometryCommand::Shell { dims, json } => geometry::shell(&dims, json),
            GeometryCommand::Sample {
                n,
                dim,
                seed,
                shell,
                out,
                json,
            } => geometry::sample_codes(n, dim, seed, shell, &out, json),
        },
        Command::Train(args) => train::train(*args),
        Command::Encode {
            model,
            data,
            split,
            out,
            device,
            json,
        } => train::encode(&model, &data, &split, &out, device, json),
        Command::Decode(args) => train::decode(&args),
        Command::Interpolate(args) => geometry::interpolate_codes(&args),
        Command::Diagnose(args) => diagnose::run(&args),
        Command::Disentanglement(args) => diagnose::disentanglement(&args),
        Command::Embed(args) => embed::run(&args),
        Command::Sample(args) => manip::sample(&args),
        Command::Traverse(args) => manip::traverse(&args),
        Command::Attribute(args) => manip::attribute(&args),
        Command::Analogy(args) => manip::analogy(&args),
        Command::Walk(args) => manip::walk(&args),
        Command::Report(args) => report::report(&args),
        Command::Demo(args) => report::demo(&args),
        Command::Study { command } => study::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latentlab: error: {e}");
            ExitCode::FAILURE
        }
    }
}
