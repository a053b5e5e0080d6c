//! `latentlab study run-one` and `latentlab study run`: one run of a plan,
//! trained (or resumed), scored and written as a row; and every pending run
//! of a plan, N at a time, each in its own process.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use latentlab::model::{Control, state_path};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::diagnose::{DiagnoseArgs, DisentanglementArgs, diagnosis_of_model, scores_of_model};
use crate::error::{CliError, Context, Result};
use crate::flags;
use crate::study::plan::{Plan, PlannedRun};
use crate::train::train_with;

/// A run's figures, by name: the last epoch's losses, the diagnosis and,
/// where the data has factors, every disentanglement metric. A row holds
/// each one (null where it does not apply or the run failed).
pub const FIGURES: [&str; 22] = [
    "train_rec",
    "train_kl",
    "train_neg_elbo",
    "test_rec",
    "test_kl",
    "test_neg_elbo",
    "active_units",
    "mean_kl",
    "aggregate_kl",
    "mutual_information",
    "aggregate_kl_mc",
    "hole_fraction",
    "beta_vae",
    "factor_vae",
    "mig",
    "sap",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness",
    "modularity",
    "explicitness",
    "explicitness_normalized",
];

/// A run's status in its row.
pub const FINISHED: &str = "finished";
/// A run whose training or scoring failed: its row holds the error.
pub const FAILED: &str = "failed";

/// What a run left: `runs/ID/row.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The run's index in the plan.
    pub index: usize,
    /// Its id.
    pub id: String,
    /// `finished` or `failed`.
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Seconds of training steps (over every attempt: they survive a resume).
    pub train_seconds: Option<f64>,
    /// Seconds of scoring.
    pub score_seconds: Option<f64>,
    /// The backend that trained.
    pub device: Option<String>,
    /// The diagnosis's verdict, one sentence.
    pub verdict: Option<String>,
    /// The verdict's state: healthy, posterior collapse or holes.
    pub verdict_state: Option<String>,
    /// The page's diagnosis.
    pub diagnosis: Option<String>,
    /// Every name of [`FIGURES`], null where it does not apply.
    pub figures: BTreeMap<String, Option<f64>>,
    /// Objective-specific terms of the last epoch (TC, MMD, the
    /// discriminator's accuracy …), by name.
    #[serde(default)]
    pub terms: BTreeMap<String, f64>,
}

impl Row {
    fn empty(r: &PlannedRun) -> Self {
        Self {
            index: r.index,
            id: r.id.clone(),
            status: FAILED.into(),
            error: None,
            train_seconds: None,
            score_seconds: None,
            device: None,
            verdict: None,
            verdict_state: None,
            diagnosis: None,
            figures: FIGURES.iter().map(|f| (f.to_string(), None)).collect(),
            terms: BTreeMap::new(),
        }
    }

    fn set(&mut self, name: &str, v: f64) {
        debug_assert!(FIGURES.contains(&name), "{name}");
        self.figures
            .insert(name.to_string(), v.is_finite().then_some(v));
    }
}

/// A run's row, when it has one.
pub fn read_row(study: &Path, r: &PlannedRun) -> Result<Option<Row>> {
    let p = r.row_path(study);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| CliError::from(format!("{}: not a run's row: {e}", p.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::from(format!("{}: {e}", p.display()))),
    }
}

/// What `run_one` did.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Trained (or resumed) and scored.
    Finished,
    /// Had a row already (`finished` or `failed`).
    Skipped(String),
}

/// Scoring of a trained checkpoint into `row`.
fn score(r: &PlannedRun, checkpoint: &Path, device: &str, row: &mut Row) -> Result<()> {
    let ckpt = checkpoint.display().to_string();
    let s = &r.score;
    // Every run is scored on the same draws (seed 0), so that runs differ
    // by their models only.
    let d: DiagnoseArgs = flags::parse(
        "latentlab diagnose",
        [
            "--checkpoint",
            &ckpt,
            "--data",
            &s.data,
            "--split",
            "test",
            "--device",
            device,
            "--samples",
            &s.samples.to_string(),
            "--probes",
            &s.probes.to_string(),
            "--seed",
            "0",
        ],
    )?;
    let diag = diagnosis_of_model(&d).context("diagnose")?;
    row.set("mean_kl", diag.mean_kl);
    row.set("aggregate_kl", diag.aggregate_kl);
    row.set("mutual_information", diag.mutual_information);
    row.set("aggregate_kl_mc", diag.aggregate_kl_mc);
    row.set("hole_fraction", diag.hole_fraction);
    row.verdict = Some(diag.verdict.summary.clone());
    row.verdict_state = Some(
        serde_json::to_value(diag.verdict.state)?
            .as_str()
            .unwrap_or_default()
            .to_string(),
    );
    row.diagnosis = Some(diag.diagnosis.clone());
    if let Some(f) = &s.factors {
        let a: DisentanglementArgs = flags::parse(
            "latentlab disentanglement",
            [
                "--checkpoint",
                &ckpt,
                "--data",
                f,
                "--device",
                device,
                "--num-train",
                &s.num_train.to_string(),
                "--num-eval",
                &s.num_eval.to_string(),
                "--seed",
                "0",
            ],
        )?;
        let m = scores_of_model(&a).context("disentanglement")?;
        row.set("beta_vae", m.beta_vae);
        row.set("factor_vae", m.factor_vae);
        row.set("mig", m.mig);
        row.set("sap", m.sap);
        row.set("dci_disentanglement", m.dci.disentanglement);
        row.set("dci_completeness", m.dci.completeness);
        row.set("dci_informativeness", m.dci.informativeness);
        row.set("modularity", m.modularity);
        row.set("explicitness", m.explicitness);
        row.set("explicitness_normalized", m.explicitness_normalized);
    }
    Ok(())
}

/// Trains run `index` of `plan` (resuming its saved state when there is
/// one), scores it and writes its row atomically. A run with a row is
/// skipped (a failed one is started again from scratch with
/// `retry_failed`). The run's folder is locked while it works, so that two
/// processes given the same run (a study restarted while an orphaned run
/// of the killed one goes on, or a scheduler's requeue) train it once.
/// A failed run writes its row and returns the error.
pub fn run_one(plan: &Plan, index: usize, retry_failed: bool) -> Result<Outcome> {
    let r = plan.run(index)?;
    let dir = r.dir(&plan.dir);
    std::fs::create_dir_all(&dir).context(format!("{}", dir.display()))?;
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))
        .context(format!("{}", dir.display()))?;
    lock.lock().context(format!("locking {}", dir.display()))?;
    let mut args = r.train_args(&plan.dir)?;
    let state = state_path(&args.out);
    if let Some(row) = read_row(&plan.dir, r)? {
        if row.status == FINISHED || !retry_failed {
            return Ok(Outcome::Skipped(row.status));
        }
        // Start a failed run over: its state led to the failure.
        for p in [&state, &args.out] {
            if p.exists() {
                std::fs::remove_file(p).context(format!("{}", p.display()))?;
            }
        }
        std::fs::remove_file(r.row_path(&plan.dir)).context("the failed row")?;
    }
    let resuming = state.is_file();
    if resuming {
        args.resume = Some(state);
    }
    eprintln!(
        "latentlab: study: run {index} {}: {}",
        r.id,
        if resuming { "resuming" } else { "training" }
    );
    let mut row = Row::empty(r);
    let result = train_with(&args, &mut |_| Control::Continue).and_then(|t| {
        row.device = Some(t.device.clone());
        row.train_seconds = Some(t.history.iter().map(|e| e.seconds).sum());
        for (name, f) in [("train", &t.train), ("test", &t.test)] {
            row.set(&format!("{name}_rec"), f.rec);
            row.set(&format!("{name}_kl"), f.kl);
            row.set(&format!("{name}_neg_elbo"), f.neg_elbo);
        }
        row.set("active_units", t.active_units as f64);
        if let Some(last) = t.history.last() {
            row.terms = last
                .terms
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect();
        }
        let started = Instant::now();
        let scored = score(r, &args.out, &args.device.to_string(), &mut row);
        row.score_seconds = Some(started.elapsed().as_secs_f64());
        scored
    });
    if let Err(e) = &result {
        row.error = Some(e.to_string());
    } else {
        row.status = FINISHED.into();
    }
    let bytes = serde_json::to_vec_pretty(&row)?;
    latentlab::data::fs::write_atomic(&r.row_path(&plan.dir), &bytes)
        .context(format!("{}", r.row_path(&plan.dir).display()))?;
    drop(lock);
    match result {
        Ok(()) => {
            eprintln!("latentlab: study: run {index} {}: finished", r.id);
            Ok(Outcome::Finished)
        }
        Err(e) => Err(CliError::from(format!(
            "run {index} {} failed (its row records it): {e}",
            r.id
        ))),
    }
}

/// What `study run` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Runs in the plan.
    pub runs: usize,
    /// Runs this call trained (or resumed) to the end.
    pub finished: usize,
    /// Runs that had a row already.
    pub skipped: usize,
    /// Runs whose training or scoring failed (each has a row with its error).
    pub failed: Vec<String>,
    /// Runs whose process ended without a row (killed): run again to resume them.
    pub interrupted: Vec<String>,
    /// Wall seconds of this call.
    pub seconds: f64,
}

/// Runs every pending run of `plan`, `jobs` at a time, each as `latentlab
/// study run-one` in its own process: a crash or abort in one run does not
/// end the others, each process has its own thread pool
/// (`RAYON_NUM_THREADS` = cores / jobs unless set), and it is the same
/// code a scheduler's array task runs.
pub fn run_all(plan: &Plan, jobs: usize, retry_failed: bool) -> Result<Summary> {
    if jobs == 0 {
        return Err("--jobs: must be at least 1".into());
    }
    let exe = std::env::current_exe().context("finding the latentlab binary")?;
    let started = Instant::now();
    let mut summary = Summary {
        runs: plan.runs.len(),
        ..Summary::default()
    };
    let mut pending = Vec::new();
    for r in &plan.runs {
        match read_row(&plan.dir, r)? {
            Some(row) if row.status == FINISHED || !retry_failed => summary.skipped += 1,
            _ => pending.push(r),
        }
    }
    let threads = std::env::var("RAYON_NUM_THREADS").ok().unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / jobs).max(1).to_string()
    });
    eprintln!(
        "latentlab: study: {} runs, {} finished before, {} to run, {jobs} at a time with {threads} threads each",
        plan.runs.len(),
        summary.skipped,
        pending.len()
    );
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    let spawn_error = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.min(pending.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(r) = pending.get(i) else { break };
                    let mut cmd = Command::new(&exe);
                    cmd.arg("study")
                        .arg("run-one")
                        .arg(&plan.dir)
                        .arg("--index")
                        .arg(r.index.to_string())
                        .env("RAYON_NUM_THREADS", &threads);
                    if retry_failed {
                        cmd.arg("--retry-failed");
                    }
                    let status = match cmd.status() {
                        Ok(s) => s,
                        Err(e) => {
                            *spawn_error.lock().expect("not poisoned") =
                                Some(format!("starting {}: {e}", exe.display()));
                            break;
                        }
                    };
                    let row = read_row(&plan.dir, r).ok().flatten();
                    let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                    let what = match (&row, status.success()) {
                        (Some(row), true) if row.status == FINISHED => "finished",
                        (Some(row), false) if row.status == FAILED => "failed",
                        _ => "interrupted",
                    };
                    eprintln!("latentlab: study: [{n}/{}] {} {what}", pending.len(), r.id);
                    results
                        .lock()
                        .expect("not poisoned")
                        .push((r.id.clone(), what));
                }
            });
        }
    });
    if let Some(e) = spawn_error.into_inner().expect("not poisoned") {
        return Err(CliError::from(e));
    }
    for (id, what) in results.into_inner().expect("not poisoned") {
        match what {
            "finished" => summary.finished += 1,
            "failed" => summary.failed.push(id),
            _ => summary.interrupted.push(id),
        }
    }
    summary.failed.sort();
    summary.interrupted.sort();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Counts of a plan's runs by state, for `study status`.
pub fn status(plan: &Plan) -> Result<Value> {
    let (mut finished, mut failed, mut started, mut pending) = (0, 0, 0, 0);
    for r in &plan.runs {
        match read_row(&plan.dir, r)? {
            Some(row) if row.status == FINISHED => finished += 1,
            Some(_) => failed += 1,
            None if state_path(&r.checkpoint_path(&plan.dir)).is_file() => started += 1,
            None => pending += 1,
        }
    }
    Ok(serde_json::json!({
        "runs": plan.runs.len(),
        "finished": finished,
        "failed": failed,
        "started": started,
        "pending": pending,
    }))
}
