//! End-to-end tests of `latentlab study`: plan, run (and kill and resume),
//! run-one, slurm, status, collect (Parquet) and report.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use arrow_array::Array;
use common::{latentlab, ok_json, scratch};

/// A tiny grid: MLPs on 400 procedural dSprites, `runs` = 2 families ×
/// settings × 2 seeds. `extra` is appended to the top level.
fn grid(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

const TINY: &str = r#"
data = "dsprites:400"
arch = "mlp:32"
seeds = [0, 1]
steps = 24

[train]
latent = 4
batch = 64
device = "cpu"
save_every = 2

[score]
samples = 100
probes = 100
factors = false

[[family]]
name = "beta-vae"
objective = "elbo"
beta = 4

[[family]]
objective = "beta-tcvae"
tc_beta = 6
"#;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn plan_ids(study: &Path) -> Vec<String> {
    std::fs::read_to_string(study.join("plan.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn a_study_plans_runs_collects_and_reports() {
    let d = scratch("study-full");
    let body = TINY
        .replace("factors = false", "num_train = 20\nnum_eval = 10")
        .replace("steps = 24", "steps = 6")
        .replace("beta = 4", "beta = [1, 4]");
    let g = grid(&d, "grid.toml", &body);
    let study = d.join("study");
    let p = ok_json(&latentlab(&[
        "study",
        "plan",
        s(&g),
        "--out",
        s(&study),
        "--json",
    ]));
    assert_eq!(p["runs"], 6, "{p}");
    let ids = plan_ids(&study);
    // Stable ids: planning again gives the same ones, and a third seed
    // adds runs without renaming the others.
    latentlab(&["study", "plan", s(&g), "--out", s(&study)]);
    assert_eq!(plan_ids(&study), ids);
    let wider = grid(
        &d,
        "wider.toml",
        &body.replace("seeds = [0, 1]", "seeds = [0, 1, 2]"),
    );
    let other = d.join("other");
    latentlab(&["study", "plan", s(&wider), "--out", s(&other)]);
    let more = plan_ids(&other);
    assert_eq!(more.len(), 9);
    assert!(ids.iter().all(|i| more.contains(i)), "{ids:?} {more:?}");
    assert!(ids[0].starts_with("beta-vae-beta=1-s0-"), "{}", ids[0]);

    let r = ok_json(&latentlab(&[
        "study",
        "run",
        s(&study),
        "--jobs",
        "2",
        "--json",
    ]));
    assert_eq!(
        (r["finished"].as_u64(), r["skipped"].as_u64()),
        (Some(6), Some(0)),
        "{r}"
    );
    // Run again: everything is skipped.
    let again = ok_json(&latentlab(&["study", "run", s(&study), "--json"]));
    assert_eq!(again["skipped"], 6, "{again}");
    let st = ok_json(&latentlab(&["study", "status", s(&study), "--json"]));
    assert_eq!(
        (st["finished"].as_u64(), st["pending"].as_u64()),
        (Some(6), Some(0))
    );

    // The table: one row per run, the grid's values as typed columns (null
    // where a family lacks them), and every metric.
    let out = d.join("results.parquet");
    let c = ok_json(&latentlab(&[
        "study",
        "collect",
        s(&study),
        "--out",
        s(&out),
        "--json",
    ]));
    assert_eq!(c["rows"], 6);
    let file = std::fs::File::open(&out).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let b = &batches[0];
    assert_eq!(b.num_rows(), 6);
    let f64s = |name: &str| {
        b.column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"))
            .as_any()
            .downcast_ref::<arrow_array::Float64Array>()
            .unwrap_or_else(|| panic!("{name} is not Float64"))
            .clone()
    };
    let beta = f64s("beta");
    let tc = f64s("tc_beta");
    let vals: Vec<Option<f64>> = beta.iter().collect();
    assert_eq!(
        vals,
        vec![Some(1.0), Some(1.0), Some(4.0), Some(4.0), None, None]
    );
    assert_eq!(tc.iter().flatten().collect::<Vec<_>>(), vec![6.0, 6.0]);
    for m in [
        "mig",
        "beta_vae",
        "dci_disentanglement",
        "test_neg_elbo",
        "wall_seconds",
    ] {
        let col = f64s(m);
        assert_eq!(col.null_count(), 0, "{m}");
        assert!(col.iter().flatten().all(f64::is_finite), "{m}");
    }
    let au = b
        .column_by_name("active_units")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .unwrap()
        .clone();
    assert!(au.iter().flatten().all(|a| (0..=4).contains(&a)));
    let steps = b
        .column_by_name("steps")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .unwrap()
        .clone();
    // 360 training images in batches of 64: 6 steps per epoch.
    assert!(steps.iter().all(|v| v == Some(6)));

    let out = latentlab(&["study", "report", s(&study)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(study.join("report/index.html")).unwrap();
    for needle in [
        "Spread over seeds",
        "Rank correlation",
        "MIG",
        "best:",
        "worst:",
        "beta-vae beta=4",
    ] {
        assert!(html.contains(needle), "{needle}");
    }
    assert_eq!(html.matches("data:image/png;base64,").count(), 2);
    assert!(!html.contains("<script"));
}

/// Runs `study run` and kills its whole process group after it has printed
/// `lines` lines (or lets it end); returns its stderr and whether it ended
/// on its own.
fn run_and_kill(study: &Path, lines: usize, fault: Option<&str>) -> (String, bool) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latentlab"));
    if let Some(f) = fault {
        cmd.env("LATENTLAB_FAULT", f);
    }
    let mut child = cmd
        .args(["study", "run", s(study), "--jobs", "2"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut err = String::new();
    let mut killed = false;
    for (i, line) in BufReader::new(child.stderr.take().unwrap())
        .lines()
        .enumerate()
    {
        err.push_str(&line.unwrap());
        err.push('\n');
        if i + 1 == lines {
            Command::new("kill")
                .args(["-KILL", &format!("-{pid}")])
                .status()
                .unwrap();
            killed = true;
            break;
        }
    }
    let status = child.wait().unwrap();
    (err, !killed && status.success())
}

#[test]
fn killing_a_study_at_any_moment_then_resuming_gives_the_same_checkpoints() {
    let d = scratch("study-kill");
    let g = grid(&d, "grid.toml", TINY);
    let (a, b) = (d.join("a"), d.join("b"));
    for st in [&a, &b] {
        ok_json(&latentlab(&[
            "study",
            "plan",
            s(&g),
            "--out",
            s(st),
            "--json",
        ]));
    }
    ok_json(&latentlab(&[
        "study",
        "run",
        s(&a),
        "--jobs",
        "2",
        "--json",
    ]));
    // First every run crashes after its 5th step (as kill -9 would, its
    // state saved at step 4), so that resuming mid-run is certain; then
    // kills after a varying number of log lines (mid-training, between
    // runs, during scoring); then a run left to finish.
    let (mut all, done) = run_and_kill(&b, usize::MAX, Some("step:5"));
    assert!(!done && all.contains("interrupted"), "{all}");
    let mut ended = false;
    for (attempt, lines) in [3usize, 9, 5, 14, 2, 11, 7, 20].iter().enumerate() {
        let (err, done) = run_and_kill(&b, *lines, None);
        all.push_str(&err);
        assert!(!err.contains("panicked"), "attempt {attempt}: {err}");
        if done {
            ended = true;
            break;
        }
    }
    if !ended {
        let (err, done) = run_and_kill(&b, usize::MAX, None);
        all.push_str(&err);
        assert!(done, "{err}");
    }
    assert!(
        all.contains("resuming"),
        "no run was resumed mid-way:\n{all}"
    );
    for id in plan_ids(&a) {
        let ck =
            |st: &Path| std::fs::read(st.join("runs").join(&id).join("model.safetensors")).unwrap();
        assert!(ck(&a) == ck(&b), "{id}: the checkpoints differ");
        let row = |st: &Path| -> serde_json::Value {
            let mut v: serde_json::Value = serde_json::from_slice(
                &std::fs::read(st.join("runs").join(&id).join("row.json")).unwrap(),
            )
            .unwrap();
            v.as_object_mut().unwrap().remove("train_seconds");
            v.as_object_mut().unwrap().remove("score_seconds");
            v
        };
        assert_eq!(row(&a), row(&b), "{id}");
        assert_eq!(row(&b)["status"], "finished");
        // Finished exactly once: no run is trained again after its row.
        let n = all.matches(&format!("{id}: finished")).count();
        assert!(n <= 1, "{id} finished {n} times:\n{all}");
    }
    let again = ok_json(&latentlab(&["study", "run", s(&b), "--json"]));
    assert_eq!(again["skipped"], 4);
}

#[test]
fn bad_grids_and_edited_plans_are_clear_errors_before_anything_trains() {
    let d = scratch("study-bad");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown family",
            TINY.replace("objective = \"beta-tcvae\"", "objective = \"beta-xvae\""),
            "unknown objective `beta-xvae`",
        ),
        (
            "out of range",
            TINY.replace("beta = 4", "beta = -1"),
            "β = -1 must be finite and ≥ 0",
        ),
        (
            "duplicate run",
            TINY.replace("beta = 4", "beta = [4, 4]"),
            "duplicate",
        ),
        (
            "duplicate seed",
            TINY.replace("seeds = [0, 1]", "seeds = [0, 0]"),
            "0 appears twice",
        ),
        (
            "same family twice",
            format!("{TINY}\n[[family]]\nname = \"beta-vae\"\nobjective = \"elbo\"\nbeta = 4\n"),
            "duplicate",
        ),
        (
            "flag of another family",
            TINY.replace("beta = 4", "tc_beta = 4"),
            "apply to --objective beta-tcvae",
        ),
        (
            "unknown flag",
            TINY.replace("beta = 4", "bogus_knob = 4"),
            "--bogus-knob",
        ),
        (
            "empty axis",
            TINY.replace("beta = 4", "beta = []"),
            "beta = [] has no values",
        ),
        (
            "epochs and steps",
            TINY.replace("steps = 24", "steps = 24\nepochs = 2"),
            "not both",
        ),
        (
            "reserved flag",
            TINY.replace("beta = 4", "seed = 3"),
            "the study's to set",
        ),
        (
            "unknown key",
            TINY.replace("seeds = [0, 1]", "seeds = [0, 1]\nsteeps = 3"),
            "steeps",
        ),
        (
            "bad data",
            TINY.replace("dsprites:400", "no-such-data.npy"),
            "no-such-data.npy",
        ),
        (
            "no families",
            TINY.split("[[family]]").next().unwrap().to_string(),
            "no [[family]]",
        ),
        (
            "arch on the data",
            TINY.replace("mlp:32", "conv28"),
            "--arch conv28",
        ),
    ];
    let mut failures = Vec::new();
    for (what, body, needle) in &cases {
        let g = grid(&d, "g.toml", body);
        let st = d.join(format!("s-{}", what.replace(' ', "-")));
        let out = latentlab(&["study", "plan", s(&g), "--out", s(&st)]);
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success()
            || !err.contains(needle)
            || err.contains("panicked")
            || st.join("plan.jsonl").exists()
        {
            failures.push(format!("{what}: {err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A plan edited by hand.
    let g = grid(&d, "good.toml", TINY);
    let st = d.join("edited");
    ok_json(&latentlab(&[
        "study",
        "plan",
        s(&g),
        "--out",
        s(&st),
        "--json",
    ]));
    let plan = std::fs::read_to_string(st.join("plan.jsonl")).unwrap();
    let lines: Vec<&str> = plan.lines().collect();
    let edits: Vec<(&str, String, &str)> = vec![
        (
            "changed argument",
            plan.replacen("\"--beta\",\"4\"", "\"--beta\",\"5\"", 1),
            "were edited",
        ),
        (
            "garbage",
            format!("{plan}not json\n"),
            "line 5: not a planned run",
        ),
        (
            "swapped lines",
            format!("{}\n{}\n{}\n{}\n", lines[1], lines[0], lines[2], lines[3]),
            "line 1: its index is 1",
        ),
        (
            "escaping output",
            plan.replacen("\"checkpoint\":\"runs/", "\"checkpoint\":\"../runs/", 1),
            "its checkpoint must be",
        ),
        (
            "duplicated line",
            format!(
                "{plan}{}\n",
                lines[0].replacen("\"index\":0", "\"index\":4", 1)
            ),
            "appears twice",
        ),
        ("empty", String::new(), "the plan has no runs"),
    ];
    for (what, text, needle) in &edits {
        std::fs::write(st.join("plan.jsonl"), text).unwrap();
        for cmd in [
            vec!["study", "run", s(&st)],
            vec!["study", "run-one", s(&st), "--index", "0"],
        ] {
            let out = latentlab(&cmd);
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || !err.contains(needle) || err.contains("panicked") {
                failures.push(format!("{what} ({}): {err}", cmd[1]));
            }
        }
    }
    std::fs::write(st.join("plan.jsonl"), &plan).unwrap();
    for (args, needle) in [
        (
            vec!["study", "run-one", s(&st), "--index", "9"],
            "the plan has 4 runs (0 to 3)",
        ),
        (vec!["study", "run-one", s(&st)], "SLURM_ARRAY_TASK_ID"),
        (
            vec!["study", "run", s(&st), "--jobs", "0"],
            "--jobs: must be at least 1",
        ),
        (vec!["study", "slurm", s(&st), "--time", "1h"], "--time 1h"),
        (
            vec!["study", "slurm", s(&st), "--partition", "a b"],
            "--partition",
        ),
        (vec!["study", "report", s(&st)], "no run has finished"),
        (
            vec!["study", "run", s(&d.join("nowhere"))],
            "make a plan with",
        ),
    ] {
        let out = latentlab(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !err.contains(needle) || err.contains("panicked") {
            failures.push(format!("{args:?}: {err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Nothing trained.
    let trained = std::fs::read_dir(st.join("runs")).unwrap().count();
    assert_eq!(trained, 0);
}

#[test]
fn the_slurm_script_is_an_array_of_run_one_and_the_index_comes_from_the_scheduler() {
    let d = scratch("study-slurm");
    let g = grid(&d, "grid.toml", &TINY.replace("steps = 24", "steps = 6"));
    let st = d.join("study");
    ok_json(&latentlab(&[
        "study",
        "plan",
        s(&g),
        "--out",
        s(&st),
        "--json",
    ]));
    let out = latentlab(&[
        "study",
        "slurm",
        s(&st),
        "--partition",
        "debug",
        "--time",
        "0:10:00",
        "--cpus",
        "1",
        "--max-parallel",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let submit = String::from_utf8_lossy(&out.stdout);
    assert!(
        submit.starts_with("sbatch '") && submit.trim_end().ends_with("slurm.sbatch'"),
        "{submit}"
    );
    let script = std::fs::read_to_string(st.join("slurm.sbatch")).unwrap();
    let abs = std::path::absolute(&st).unwrap();
    for needle in [
        "#!/bin/bash\n",
        "#SBATCH --array=0-3%2\n",
        "#SBATCH --cpus-per-task=1\n",
        "#SBATCH --partition=debug\n",
        "#SBATCH --time=0:10:00\n",
        &format!(
            "study run-one '{}' --index \"$SLURM_ARRAY_TASK_ID\"",
            abs.display()
        ),
    ] {
        assert!(script.contains(needle), "{needle}\n{script}");
    }
    // A Kubernetes Indexed Job's index works the same way.
    let out = Command::new(env!("CARGO_BIN_EXE_latentlab"))
        .args(["study", "run-one", s(&st)])
        .env("JOB_COMPLETION_INDEX", "2")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids = plan_ids(&st);
    let row = st.join("runs").join(&ids[2]).join("row.json");
    let first = std::fs::read(&row).unwrap();
    // A repeated task (a requeue) skips its finished run.
    let out = latentlab(&["study", "run-one", s(&st), "--index", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && err.contains("finished before; skipped")
            && !err.contains("training"),
        "{err}"
    );
    assert_eq!(std::fs::read(&row).unwrap(), first);
    // --pending-only leaves out the finished run.
    latentlab(&["study", "slurm", s(&st), "--pending-only"]);
    let script = std::fs::read_to_string(st.join("slurm.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-1,3\n"), "{script}");
}
