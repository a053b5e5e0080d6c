//! `latentlab info`: what this build can run on.

use crate::error::{Context, Result};
use latentlab::tensor::{Backend, Cpu, Device, DeviceChoice, GpuInfo, Wgpu};
use serde::Serialize;

#[derive(Serialize)]
struct Info {
    version: &'static str,
    backends: Vec<&'static str>,
    /// What `--device` resolved to.
    selected: Selected,
    cpu: CpuInfo,
    gpu: GpuReport,
}

#[derive(Serialize)]
struct Selected {
    requested: DeviceChoice,
    device: &'static str,
    name: String,
}

#[derive(Serialize)]
struct CpuInfo {
    name: String,
    threads: usize,
}

#[derive(Serialize)]
struct GpuReport {
    available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    adapter: Option<GpuInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Runs `latentlab info`.
pub fn run(choice: DeviceChoice, json: bool) -> Result<()> {
    let cpu = Cpu::new();
    let device = Device::select(choice).context(format!("--device {choice}"))?;
    let (gpu, selected) = match &device {
        Device::Gpu(g) => (
            GpuReport {
                available: true,
                adapter: Some(g.info().clone()),
                reason: None,
            },
            Selected {
                requested: choice,
                device: "gpu",
                name: g.name(),
            },
        ),
        Device::Cpu { cpu, fallback } => {
            if let Some(why) = fallback {
                eprintln!("latentlab: {why}");
            }
            // Whatever was selected, report the adapter this machine has.
            let gpu = match Wgpu::new() {
                Ok(g) => GpuReport {
                    available: true,
                    adapter: Some(g.info().clone()),
                    reason: None,
                },
                Err(e) => GpuReport {
                    available: false,
                    adapter: None,
                    reason: Some(e.to_string()),
                },
            };
            (
                gpu,
                Selected {
                    requested: choice,
                    device: "cpu",
                    name: cpu.name(),
                },
            )
        }
    };
    let mut backends = vec!["cpu"];
    if gpu.available {
        backends.push("gpu");
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let info = Info {
        version: latentlab::VERSION,
        backends,
        selected,
        cpu: CpuInfo {
            name: cpu.name(),
            threads,
        },
        gpu,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    println!("latentlab {}", info.version);
    println!("backends: {}", info.backends.join(", "));
    println!(
        "device: {} → {} ({})",
        info.selected.requested, info.selected.device, info.selected.name
    );
    println!("cpu: {} threads", info.cpu.threads);
    match (&info.gpu.adapter, &info.gpu.reason) {
        (Some(a), _) => {
            println!(
                "gpu: {} ({}, {}; driver {})",
                a.name, a.backend, a.device_type, a.driver
            );
            println!(
                "  max buffer:                {} MiB",
                a.max_buffer_size >> 20
            );
            println!(
                "  max storage binding:       {} MiB",
                a.max_storage_buffer_binding_size >> 20
            );
            println!(
                "  workgroup memory:          {} KiB",
                a.max_compute_workgroup_storage_size >> 10
            );
            println!(
                "  invocations per workgroup: {}",
                a.max_compute_invocations_per_workgroup
            );
            println!(
                "  workgroups per dimension:  {}",
                a.max_compute_workgroups_per_dimension
            );
        }
        (None, reason) => println!("gpu: none ({})", reason.as_deref().unwrap_or("unknown")),
    }
    Ok(())
}
