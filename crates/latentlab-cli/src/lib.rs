//! The `latentlab` command line as a library: every command's code, which
//! the binary and the Python package (`python/`) both call, so that they
//! print and return the same numbers.

/// Runs `$body` with `$backend` bound to the backend `--device` selects
/// (printing once why `auto` fell back to the CPU); the body is generic over
/// the backend, so it is expanded once per backend type.
#[macro_export]
macro_rules! on_device {
    ($choice:expr, $backend:ident => $body:expr) => {{
        let choice: DeviceChoice = $choice;
        match $crate::error::Context::context(Device::select(choice), format!("--device {choice}"))?
        {
            Device::Cpu {
                cpu: $backend,
                fallback,
            } => {
                if let Some(why) = fallback {
                    eprintln!("latentlab: {why}");
                }
                $body
            }
            Device::Gpu($backend) => $body,
        }
    }};
}

/// `--arch`: the layer stacks of a model.
pub mod arch;
/// `latentlab diagnose` and `latentlab disentanglement`.
pub mod diagnose;
/// `latentlab embed`: 2-D maps of latent means.
pub mod embed;
/// The command line's error type.
pub mod error;
/// Parsing a command's flags from an argument list.
pub mod flags;
/// `latentlab geometry` and `latentlab interpolate`.
pub mod geometry;
/// `latentlab info`.
pub mod info;
/// Reading data, labels, factors and matrices named by flags.
pub mod load;
/// Traversals, attribute vectors, analogies, walks and samples.
pub mod manip;
/// Opening a model named by flags.
pub mod model;
/// PNG grids of decoded images.
pub mod picture;
/// `latentlab report` and `latentlab demo`.
pub mod report;
/// `latentlab study`: grids of runs on this machine or a scheduler.
pub mod study;
/// `latentlab train`, `encode` and `decode`.
pub mod train;
