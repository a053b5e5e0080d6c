//! Choosing a device at run time: `cpu`, `gpu` or `auto`.

use std::fmt;
use std::str::FromStr;

use crate::{Cpu, Result, TensorError, Wgpu};

/// The `--device` choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The CPU backend.
    Cpu,
    /// The GPU backend; an error when no adapter can be opened.
    Gpu,
    /// The GPU when an adapter exists, else the CPU (saying why).
    #[default]
    Auto,
}

impl FromStr for DeviceChoice {
    type Err = TensorError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "gpu" | "wgpu" => Ok(Self::Gpu),
            "auto" => Ok(Self::Auto),
            other => Err(TensorError::InvalidArgument {
                op: "device",
                detail: format!("unknown device {other:?}; expected cpu, gpu or auto"),
            }),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Gpu => "gpu",
            Self::Auto => "auto",
        })
    }
}

/// The backend a [`DeviceChoice`] resolved to. Code generic over
/// [`crate::Backend`] is called with the one inside.
#[derive(Clone, Debug)]
pub enum Device {
    /// The CPU backend; `fallback` says why `auto` did not get a GPU.
    Cpu {
        /// The backend.
        cpu: Cpu,
        /// Why the GPU was not used, when `auto` fell back.
        fallback: Option<String>,
    },
    /// The GPU backend.
    Gpu(Wgpu),
}

impl Device {
    /// Resolves a choice. `gpu` without an adapter is an error; `auto` falls
    /// back to the CPU and records why in [`Device::Cpu::fallback`] (callers
    /// print it once).
    pub fn select(choice: DeviceChoice) -> Result<Self> {
        match choice {
            DeviceChoice::Cpu => Ok(Device::Cpu {
                cpu: Cpu::new(),
                fallback: None,
            }),
            DeviceChoice::Gpu => Ok(Device::Gpu(Wgpu::new()?)),
            DeviceChoice::Auto => match Wgpu::new() {
                // A software rasteriser (lavapipe/llvmpipe) is far slower
                // than the CPU backend: `auto` means "the fast one".
                Ok(g) if g.info().device_type == "Cpu" => Ok(Device::Cpu {
                    cpu: Cpu::new(),
                    fallback: Some(format!(
                        "the only GPU adapter is a software one ({}), running on the CPU; --device gpu uses it anyway",
                        g.info().name
                    )),
                }),
                Ok(g) => Ok(Device::Gpu(g)),
                Err(e) => Ok(Device::Cpu {
                    cpu: Cpu::new(),
                    fallback: Some(format!("no GPU, running on the CPU: {e}")),
                }),
            },
        }
    }

    /// A short name (`cpu`, `gpu`).
    pub fn kind(&self) -> &'static str {
        match self {
            Device::Cpu { .. } => "cpu",
            Device::Gpu(_) => "gpu",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_choices() {
        assert_eq!("CPU".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("gpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Gpu);
        assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        let e = "tpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(e.contains("tpu") && e.contains("cpu, gpu or auto"), "{e}");
    }

    #[test]
    fn cpu_choice_never_touches_the_gpu() {
        let d = Device::select(DeviceChoice::Cpu).unwrap();
        assert_eq!(d.kind(), "cpu");
    }
}
