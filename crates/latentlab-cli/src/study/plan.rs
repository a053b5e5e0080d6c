//! A study's plan: `plan.jsonl` in the study folder, one run per line, and
//! the checks that make a hand-edited plan an error before anything trains.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{CliError, Result};
use crate::train::{TrainArgs, fresh_configs, parse_train_args};

/// The plan's file name in a study folder.
pub const PLAN_FILE: &str = "plan.jsonl";
/// The folder of the runs' outputs, one folder per run id.
pub const RUNS_DIR: &str = "runs";
/// A run's checkpoint, in its folder.
pub const CHECKPOINT: &str = "model.safetensors";
/// A run's row (its figures, or its error), in its folder.
pub const ROW: &str = "row.json";

/// How a finished run is scored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scoring {
    /// The data the diagnostics encode (the test split).
    pub data: String,
    /// Monte Carlo draws of the diagnosis (`diagnose --samples`).
    pub samples: usize,
    /// Prior draws probed for holes (`diagnose --probes`).
    pub probes: usize,
    /// The data of the disentanglement metrics, when they apply (the
    /// training data has ground-truth factors); `None` skips them.
    pub factors: Option<String>,
    /// `disentanglement --num-train`.
    pub num_train: usize,
    /// `disentanglement --num-eval`.
    pub num_eval: usize,
}

impl Scoring {
    fn check(&self) -> std::result::Result<(), String> {
        if self.samples == 0 || self.probes == 0 {
            return Err("score samples and probes must be at least 1".into());
        }
        if self.num_train < 2 || self.num_eval < 1 {
            return Err("score num_train must be at least 2 and num_eval at least 1".into());
        }
        Ok(())
    }
}

/// One run of a study: a line of `plan.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedRun {
    /// Its line in the plan, from 0: `study run-one --index`.
    pub index: usize,
    /// Stable id: family, grid values, seed and a hash of the arguments.
    pub id: String,
    /// The family's name in the grid.
    pub family: String,
    /// `--objective`.
    pub objective: String,
    /// The family's grid values (the axes the study varies), by flag name
    /// with `_` for `-`.
    pub params: BTreeMap<String, Value>,
    /// `--seed`.
    pub seed: u64,
    /// `--epochs`.
    pub epochs: usize,
    /// Training steps: epochs × steps per epoch.
    pub steps: u64,
    /// The full `latentlab train` arguments (paths relative to the study
    /// folder).
    pub train: Vec<String>,
    /// How the run is scored once trained.
    pub score: Scoring,
    /// The checkpoint, relative to the study folder.
    pub checkpoint: String,
    /// The row, relative to the study folder.
    pub row: String,
}

impl PlannedRun {
    /// The run's folder.
    pub fn dir(&self, study: &Path) -> PathBuf {
        study.join(RUNS_DIR).join(&self.id)
    }

    /// The checkpoint's path.
    pub fn checkpoint_path(&self, study: &Path) -> PathBuf {
        study.join(&self.checkpoint)
    }

    /// The row's path.
    pub fn row_path(&self, study: &Path) -> PathBuf {
        study.join(&self.row)
    }

    /// The `latentlab train` flags, `--out` resolved inside `study`.
    pub fn train_args(&self, study: &Path) -> Result<TrainArgs> {
        let mut a = parse_train_args(&self.train)?;
        a.out = self.checkpoint_path(study);
        Ok(a)
    }
}

/// The hash in a run's id: 64-bit FNV-1a over the arguments that decide
/// what it trains (everything but `--out`), stable across builds and
/// platforms (unlike std's hasher), as 8 hex digits.
pub fn args_hash(train: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut skip = false;
    for a in train {
        if std::mem::take(&mut skip) {
            continue;
        }
        if a == "--out" {
            skip = true;
            continue;
        }
        for b in a.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{:08x}", (h >> 32) ^ (h & 0xffff_ffff))
}

/// Characters a run id may hold: it names a folder.
pub fn id_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=' | '+')
}

/// The value of `flag` in `train`, when given once.
fn flag_value<'a>(train: &'a [String], flag: &str) -> Option<&'a str> {
    let i = train.iter().position(|a| a == flag)?;
    train.get(i + 1).map(String::as_str)
}

/// Checks one run as read from `plan.jsonl` line `line` (1-based).
fn check_run(r: &PlannedRun, line: usize) -> std::result::Result<(), String> {
    if r.index != line - 1 {
        return Err(format!(
            "its index is {} but it is on line {line} (index {}); the plan's lines must stay in order",
            r.index,
            line - 1
        ));
    }
    if r.id.is_empty() || r.id.starts_with('.') || r.id.len() > 200 || !r.id.chars().all(id_safe) {
        return Err(format!(
            "id `{}` is not a folder name (letters, digits and - _ . = + only, not starting with .)",
            r.id
        ));
    }
    let hash = args_hash(&r.train);
    if !r.id.ends_with(&format!("-{hash}")) {
        return Err(format!(
            "run `{}`: its train arguments were edited (its id no longer matches them, which ends in -{hash}); plan again from the grid",
            r.id
        ));
    }
    let dir = format!("{RUNS_DIR}/{}", r.id);
    for (what, got, want) in [
        ("checkpoint", &r.checkpoint, format!("{dir}/{CHECKPOINT}")),
        ("row", &r.row, format!("{dir}/{ROW}")),
    ] {
        if *got != want {
            return Err(format!(
                "run `{}`: its {what} must be {want}, not {got}",
                r.id
            ));
        }
    }
    for banned in ["--resume", "--json"] {
        if r.train.iter().any(|a| a == banned) {
            return Err(format!(
                "run `{}`: {banned} is the study's to set, not the plan's",
                r.id
            ));
        }
    }
    if flag_value(&r.train, "--out") != Some(r.checkpoint.as_str()) {
        return Err(format!(
            "run `{}`: its train arguments must write --out {}",
            r.id, r.checkpoint
        ));
    }
    let a = parse_train_args(&r.train).map_err(|e| format!("run `{}`: {e}", r.id))?;
    let (_, cfg) = fresh_configs(&a).map_err(|e| format!("run `{}`: {e}", r.id))?;
    if cfg.seed != r.seed || cfg.epochs != r.epochs || a.objective != r.objective {
        return Err(format!(
            "run `{}`: seed {}, epochs {} and objective {} disagree with its train arguments (--seed {}, --epochs {}, --objective {})",
            r.id, r.seed, r.epochs, r.objective, cfg.seed, cfg.epochs, a.objective
        ));
    }
    if r.steps == 0 || !r.steps.is_multiple_of(r.epochs as u64) {
        return Err(format!(
            "run `{}`: {} steps is not a whole number of its {} epochs",
            r.id, r.steps, r.epochs
        ));
    }
    r.score.check().map_err(|e| format!("run `{}`: {e}", r.id))
}

/// A study folder's plan, every line checked.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The study folder.
    pub dir: PathBuf,
    /// Its runs, in order.
    pub runs: Vec<PlannedRun>,
}

impl Plan {
    /// Reads and checks `dir/plan.jsonl`: every line a run, in order, with
    /// unique ids whose hashes match their arguments, arguments that
    /// `latentlab train` accepts, and outputs inside the run's folder.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(PLAN_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            CliError::from(format!(
                "{}: {e}; make a plan with `latentlab study plan GRID.toml --out {}`",
                path.display(),
                dir.display()
            ))
        })?;
        Self::parse(&text, dir)
    }

    /// Checks the text of `dir`'s plan as [`Plan::read`] does.
    pub fn parse(text: &str, dir: &Path) -> Result<Self> {
        let path = dir.join(PLAN_FILE);
        let mut runs = Vec::new();
        let mut ids = HashSet::new();
        for (i, line) in text.lines().enumerate() {
            let at = |e: String| CliError::from(format!("{} line {}: {e}", path.display(), i + 1));
            if line.trim().is_empty() {
                return Err(at("an empty line; every line is one run".into()));
            }
            let r: PlannedRun =
                serde_json::from_str(line).map_err(|e| at(format!("not a planned run: {e}")))?;
            check_run(&r, i + 1).map_err(at)?;
            if !ids.insert(r.id.clone()) {
                return Err(at(format!("run `{}` appears twice", r.id)));
            }
            runs.push(r);
        }
        if runs.is_empty() {
            return Err(CliError::from(format!(
                "{}: the plan has no runs",
                path.display()
            )));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            runs,
        })
    }

    /// The run at `index`.
    pub fn run(&self, index: usize) -> Result<&PlannedRun> {
        self.runs.get(index).ok_or_else(|| {
            CliError::from(format!(
                "--index {index}: the plan has {} runs (0 to {})",
                self.runs.len(),
                self.runs.len() - 1
            ))
        })
    }

    /// The plan as `plan.jsonl`'s text.
    pub fn to_jsonl(runs: &[PlannedRun]) -> Result<String> {
        let mut s = String::new();
        for r in runs {
            s.push_str(&serde_json::to_string(r)?);
            s.push('\n');
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_ignores_out_and_sees_every_other_argument() {
        let a: Vec<String> = ["--beta", "4", "--out", "x"].map(String::from).into();
        let b: Vec<String> = ["--beta", "4", "--out", "y"].map(String::from).into();
        let c: Vec<String> = ["--beta", "5", "--out", "x"].map(String::from).into();
        let d: Vec<String> = ["--beta4", "--out", "x"].map(String::from).into();
        assert_eq!(args_hash(&a), args_hash(&b));
        assert_ne!(args_hash(&a), args_hash(&c));
        assert_ne!(args_hash(&a), args_hash(&d));
        assert_eq!(args_hash(&a).len(), 8);
        // Pinned (FNV-1a computed independently in Python): the same grid
        // gives the same ids on every build.
        assert_eq!(args_hash(&a), "b2def2e8");
    }
}
