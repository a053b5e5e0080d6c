//! `cargo xtask test [--rust-only | --python-only]`: every test, Rust and
//! Python, as one command (the README's test command; `.ci/run` calls it).
//!
//! 1. `cargo test --workspace --release`.
//! 2. The Python package: a virtual environment in `target/python-venv`
//!    (seeing the system's packages, so an installed torch is reused), the
//!    test requirements installed where missing, `pip install ./python`
//!    (maturin building into the shared `target/`), then pytest on
//!    `python/tests` against the `target/release/latentlab` just built.

use std::path::Path;
use std::process::Command;

use crate::root;

/// Packages the Python tests import, by import name and pip name.
const REQUIREMENTS: &[(&str, &str)] = &[
    ("numpy", "numpy>=1.24"),
    ("pytest", "pytest"),
    ("safetensors", "safetensors"),
    ("torch", "torch"),
    ("maturin", "maturin>=1.9,<2"),
];

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    eprintln!("xtask test: {what}");
    let status = cmd
        .status()
        .map_err(|e| format!("{what}: could not start {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// `cargo xtask test`.
pub fn test_cmd(args: &[String]) -> Result<(), String> {
    let (mut rust, mut python) = (true, true);
    for a in args {
        match a.as_str() {
            "--rust-only" => python = false,
            "--python-only" => rust = false,
            other => {
                return Err(format!(
                    "test: unknown flag {other:?}; expected --rust-only or --python-only"
                ));
            }
        }
    }
    let root = root();
    if rust {
        run(
            Command::new(env!("CARGO"))
                .args(["test", "--workspace", "--release"])
                .current_dir(&root),
            "cargo test --workspace --release",
        )?;
    }
    if python {
        python_tests(&root)?;
    }
    Ok(())
}

fn python_tests(root: &Path) -> Result<(), String> {
    let target = root.join("target");
    // The binary the parity tests compare against (built by the Rust tests;
    // built here when only the Python side runs).
    run(
        Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "latentlab-cli"])
            .current_dir(root),
        "cargo build --release -p latentlab-cli",
    )?;
    let venv = target.join("python-venv");
    let py = venv.join("bin").join("python");
    if !py.exists() {
        let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run(
            Command::new(&system)
                .args(["-m", "venv", "--system-site-packages"])
                .arg(&venv),
            &format!("{system} -m venv {}", venv.display()),
        )?;
    }
    let missing: Vec<&str> = REQUIREMENTS
        .iter()
        .filter(|(module, _)| {
            !Command::new(&py)
                .args(["-c", &format!("import {module}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|(_, pip)| *pip)
        .collect();
    if !missing.is_empty() {
        run(
            Command::new(&py)
                .args(["-m", "pip", "install", "--quiet"])
                .args(&missing),
            &format!("pip install {}", missing.join(" ")),
        )?;
    }
    run(
        Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-build-isolation",
                "--force-reinstall",
                "--no-deps",
                "./python",
            ])
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(root),
        "pip install ./python",
    )?;
    run(
        Command::new(&py)
            .args(["-m", "pytest", "-q", "python/tests"])
            .env("LATENTLAB_BIN", target.join("release").join("latentlab"))
            // The tests import the installed package, not the source tree.
            .env("PYTHONSAFEPATH", "1")
            .current_dir(root),
        "pytest python/tests",
    )
}
