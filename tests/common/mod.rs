//! Helpers shared by the end-to-end tests of the `latentlab` binary.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs `latentlab` with `args`.
pub fn latentlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latentlab"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// A fresh folder under the temporary directory, unique to this process.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("latentlab-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The one JSON document a successful run printed.
pub fn ok_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

/// Runs every case (`args`, a word the error must contain) and reports all
/// that did not end in a clean error: non-zero exit, the word, no panic.
pub fn assert_clean_errors(cases: &[(Vec<&str>, &str)]) {
    let mut failures = Vec::new();
    for (args, needle) in cases {
        let out = latentlab(args);
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !err.contains(needle) || err.contains("panicked") {
            failures.push(format!(
                "{args:?}: exit {:?}, stderr: {err}",
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
