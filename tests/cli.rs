//! End-to-end tests of the `latentlab` binary.

use std::process::Command;

mod common;
use common::latentlab;

#[test]
fn info_json_names_version_and_backends() {
    let out = latentlab(&["info", "--json"]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let backends: Vec<&str> = v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    assert!(backends.contains(&"cpu"));
    let gpu = &v["gpu"];
    if gpu["available"].as_bool().unwrap() {
        assert!(backends.contains(&"gpu"));
        let a = &gpu["adapter"];
        assert!(!a["name"].as_str().unwrap().is_empty());
        assert!(a["max_storage_buffer_binding_size"].as_u64().unwrap() > 0);
    } else {
        assert!(
            gpu["reason"].as_str().unwrap().contains("GPU"),
            "a missing GPU must say why"
        );
        assert!(
            std::env::var("LATENTLAB_REQUIRE_GPU").as_deref() != Ok("1"),
            "LATENTLAB_REQUIRE_GPU=1 but info found no GPU: {gpu}"
        );
    }
}

#[test]
fn info_text_is_readable() {
    let out = latentlab(&["info"]);
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(s.starts_with("latentlab "), "{s}");
    assert!(s.contains("backends: cpu"), "{s}");
    assert!(s.contains("gpu: "), "{s}");
}

#[test]
fn nonsense_flags_are_a_clear_error() {
    let out = latentlab(&["info", "--frobnicate"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--frobnicate"), "{err}");
    let out = latentlab(&["no-such-command"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-command"));
}

/// With no usable adapter (`WGPU_BACKEND` names a backend this platform lacks),
/// `--device gpu` is a clear error and `--device auto` falls back, saying so.
#[test]
fn device_choice_without_an_adapter() {
    let run = |device: &str| {
        Command::new(env!("CARGO_BIN_EXE_latentlab"))
            .args(["info", "--json", "--device", device])
            .env("WGPU_BACKEND", "dx12")
            .output()
            .expect("the binary runs")
    };
    let out = run("gpu");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--device gpu") && err.contains("no GPU adapter"),
        "{err}"
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("latentlab: error"))
            .count(),
        1,
        "one line: {err}"
    );

    let out = run("auto");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["selected"]["device"], "cpu");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("running on the CPU").count(),
        1,
        "auto says so once: {err}"
    );

    let out = latentlab(&["info", "--device", "tpu"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tpu"));
}
