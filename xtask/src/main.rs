//! `cargo xtask bench [--json] [--quick]`: runs latentlab's criterion benches,
//! measures numpy's sgemm in the same run where `python3` with numpy exists,
//! writes `docs/benchmarks.md`, and prints the figures (as one JSON document
//! with `--json`; progress goes to stderr).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use serde_json::{Value, json};

const SHAPES: [(u64, u64, u64); 4] = [
    (128, 784, 512),
    (128, 512, 256),
    (128, 256, 512),
    (1024, 1024, 1024),
];
const MLP_BATCH: f64 = 128.0;

const NUMPY_SGEMM: &str = r#"
import json, sys, time
import numpy as np
shapes = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
out = []
for m, k, n in shapes:
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    for _ in range(3):
        a @ b
    # The median of repeated timings: the same statistic criterion reports.
    reps = max(1, int(2e8 / (2 * m * n * k)))
    times = []
    for _ in range(31):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        times.append((time.perf_counter() - t) / reps)
    times.sort()
    out.append({"m": m, "k": k, "n": n, "gflops": 2 * m * n * k / times[len(times) // 2] / 1e9})
try:
    cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    blas = f"{cfg.get('name')} {cfg.get('version')}"
except Exception:
    blas = "unknown BLAS"
print(json.dumps({"numpy": np.__version__, "blas": blas, "sgemm": out}))
"#;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench") => bench(&args[1..]),
        _ => Err("usage: cargo xtask bench [--json] [--quick]".to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository")
        .to_path_buf()
}

fn bench(args: &[String]) -> Result<(), String> {
    let mut json_out = false;
    let mut quick = false;
    for a in args {
        match a.as_str() {
            "--json" => json_out = true,
            "--quick" => quick = true,
            other => {
                return Err(format!(
                    "unknown flag {other:?}; expected --json or --quick"
                ));
            }
        }
    }
    let root = root();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let crit = target.join("criterion");
    for group in ["matmul", "mlp_forward_backward"] {
        let _ = std::fs::remove_dir_all(crit.join(group));
    }

    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root).args([
        "bench",
        "-p",
        "latentlab-benches",
        "--bench",
        "matmul",
        "--bench",
        "mlp",
        "--",
        "--noplot",
    ]);
    if quick {
        cmd.args([
            "--warm-up-time",
            "1",
            "--measurement-time",
            "2",
            "--sample-size",
            "20",
        ]);
    }
    // Criterion's report goes to stderr so that stdout holds only our figures.
    let status = cmd
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .map_err(|e| format!("cargo bench: {e}"))?;
    if !status.success() {
        return Err(format!("cargo bench failed: {status}"));
    }

    let numpy = measure_numpy(&root);
    let adapter = gpu_adapter(&root);
    let mut rows = Vec::new();
    for backend in ["cpu", "gpu"] {
        for &(m, k, n) in &SHAPES {
            let Some(ns) = median_ns(
                &crit
                    .join("matmul")
                    .join(backend)
                    .join(format!("{m}x{k}x{n}")),
            ) else {
                continue;
            };
            let gflops = 2.0 * (m * k * n) as f64 / ns;
            let numpy_gflops = numpy.as_ref().and_then(|np| {
                np["sgemm"]
                    .as_array()?
                    .iter()
                    .find(|r| r["m"] == m && r["k"] == k && r["n"] == n)?["gflops"]
                    .as_f64()
            });
            rows.push(json!({"backend": backend, "m": m, "k": k, "n": n, "gflops": round2(gflops), "numpy_gflops": numpy_gflops.map(round2)}));
        }
    }
    let mut mlp = Vec::new();
    for backend in ["cpu", "gpu"] {
        if let Some(ns) = median_ns(&crit.join("mlp_forward_backward").join(backend)) {
            mlp.push(json!({"backend": backend, "ms": round2(ns / 1e6), "images_per_s": round2(MLP_BATCH / (ns / 1e9))}));
        }
    }
    if rows.is_empty() {
        return Err(format!("no criterion results under {}", crit.display()));
    }
    let doc = json!({
        "matmul": rows,
        "mlp_forward_backward": mlp,
        "numpy": numpy.as_ref().map(|np| json!({"version": np["numpy"], "blas": np["blas"]})),
        "gpu_adapter": adapter,
        "machine": machine(),
        "quick": quick,
    });
    let md = markdown(&doc);
    write_atomic(&root.join("docs/benchmarks.md"), &md)?;
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?
        );
    } else {
        print!("{md}");
    }
    Ok(())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Criterion's median estimate, in nanoseconds.
fn median_ns(dir: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join("new/estimates.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn measure_numpy(root: &Path) -> Option<Value> {
    let shapes = serde_json::to_string(&SHAPES).ok()?;
    let out = Command::new("python3")
        .current_dir(root)
        .args(["-c", NUMPY_SGEMM, &shapes])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("xtask: numpy not available; figures are recorded without it");
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn gpu_adapter(root: &Path) -> Value {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "latentlab-cli",
            "--",
            "info",
            "--json",
        ])
        .stderr(Stdio::null())
        .output();
    let info: Option<Value> = out
        .ok()
        .and_then(|o| serde_json::from_slice(&o.stdout).ok());
    info.and_then(|i| {
        i["gpu"]["adapter"]["name"]
            .as_str()
            .map(|s| Value::from(s.to_string()))
    })
    .unwrap_or(Value::Null)
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
    });
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    json!({"cpu": cpu, "threads": threads})
}

fn markdown(doc: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `cargo xtask bench{}`; every figure below comes from that one run on one machine.\n",
        if doc["quick"] == true { " --quick" } else { "" }
    );
    let _ = writeln!(
        s,
        "- machine: {} ({} threads)\n- GPU adapter: {}\n- peer: numpy {} with {}\n",
        doc["machine"]["cpu"].as_str().unwrap_or("unknown CPU"),
        doc["machine"]["threads"],
        doc["gpu_adapter"].as_str().unwrap_or("none"),
        doc["numpy"]["version"]
            .as_str()
            .unwrap_or("(not installed)"),
        doc["numpy"]["blas"].as_str().unwrap_or("-"),
    );
    let _ = writeln!(
        s,
        "## Matrix product (f32, C = A·B; medians: criterion's for latentlab, of 31 timed repeats for numpy)\n"
    );
    let _ = writeln!(
        s,
        "| backend | m | k | n | GFLOP/s | numpy GFLOP/s | latentlab / numpy |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for r in doc["matmul"].as_array().into_iter().flatten() {
        let g = r["gflops"].as_f64().unwrap_or(0.0);
        let (np, ratio) = match r["numpy_gflops"].as_f64() {
            Some(np) => (format!("{np:.1}"), format!("{:.0} %", 100.0 * g / np)),
            None => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {g:.1} | {np} | {ratio} |",
            r["backend"].as_str().unwrap_or("?"),
            r["m"],
            r["k"],
            r["n"]
        );
    }
    let _ = writeln!(
        s,
        "\n## One MLP forward + backward (784-512-256-20, ReLU, batch 128)\n"
    );
    let _ = writeln!(s, "| backend | ms per step | images/s |");
    let _ = writeln!(s, "|---|---:|---:|");
    for r in doc["mlp_forward_backward"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {} | {:.3} | {:.0} |",
            r["backend"].as_str().unwrap_or("?"),
            r["ms"].as_f64().unwrap_or(0.0),
            r["images_per_s"].as_f64().unwrap_or(0.0)
        );
    }
    let _ = writeln!(
        s,
        "\nThe `gpu` rows run the WGSL kernels on the adapter named above; on a machine without a GPU that is Mesa's lavapipe, a software Vulkan device on the same CPU cores, so they show that the GPU path works, not GPU speed."
    );
    s
}

fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("md.tmp");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}
