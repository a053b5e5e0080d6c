//! `latentlab study plan`: a TOML grid of families, hyperparameters and
//! seeds, expanded into a plan of runs with stable ids.
//!
//! ```toml
//! data = "dsprites:16000"
//! arch = "conv64"
//! seeds = [0, 1, 2]
//! steps = 2250              # or: epochs = 10
//!
//! [train]                   # flags of every run
//! latent = 10
//! batch = 64
//!
//! [score]                   # how finished runs are scored
//! num_train = 1000
//! num_eval = 500
//!
//! [[family]]
//! name = "beta-vae"
//! objective = "elbo"
//! beta = [1, 4, 16]         # a list is an axis of the grid
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{CliError, Context, Result};
use crate::load::load_data;
use crate::study::plan::{
    CHECKPOINT, PLAN_FILE, Plan, PlannedRun, ROW, RUNS_DIR, Scoring, args_hash, id_safe,
};
use crate::train::{fresh_configs, parse_train_args, steps_per_epoch};

/// A grid as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Grid {
    /// `--data` of every run.
    data: String,
    /// `--arch` of every run.
    arch: Option<String>,
    /// The seeds: every grid point runs once per seed.
    seeds: Vec<u64>,
    /// Epochs per run …
    epochs: Option<usize>,
    /// … or steps per run (rounded up to whole epochs).
    steps: Option<u64>,
    /// Flags of every run (`latentlab train`'s, `_` for `-`).
    #[serde(default)]
    train: BTreeMap<String, toml::Value>,
    /// How runs are scored.
    #[serde(default)]
    score: ScoreGrid,
    /// The families.
    #[serde(default)]
    family: Vec<FamilyGrid>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoreGrid {
    samples: Option<usize>,
    probes: Option<usize>,
    /// The data with factors for the disentanglement metrics, or `false`.
    factors: Option<toml::Value>,
    num_train: Option<usize>,
    num_eval: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct FamilyGrid {
    /// The family's name (its objective's when absent).
    name: Option<String>,
    /// `--objective`.
    objective: Option<String>,
    /// Its flags: a value, or a list of values (an axis of the grid).
    #[serde(flatten)]
    params: BTreeMap<String, toml::Value>,
}

/// The most runs a grid may expand to (disentanglement_lib's whole study
/// is 12,800): a typo such as a long list on every axis is an error, not a
/// plan of millions of lines.
pub const MAX_RUNS: usize = 100_000;

/// Flags a grid may not set: the study sets them.
const RESERVED: [&str; 6] = ["out", "resume", "json", "seed", "epochs", "data"];

/// A TOML value as a flag's text.
fn flag_text(key: &str, v: &toml::Value) -> std::result::Result<Option<String>, String> {
    Ok(match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) if f.is_finite() => Some(f.to_string()),
        toml::Value::Float(f) => return Err(format!("{key} = {f} is not a finite number")),
        toml::Value::Boolean(true) => None,
        other => {
            return Err(format!(
                "{key} = {other}: expected a string, number or true (a list only as a family's axis)"
            ));
        }
    })
}

/// A TOML scalar as JSON, for the run's `params` (numbers stay numbers).
fn json_of(v: &toml::Value) -> Value {
    match v {
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::from(*b),
        other => Value::from(
            other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_string),
        ),
    }
}

/// Appends `--key value` (or `--key` for `true`) to `argv`.
fn push_flag(
    argv: &mut Vec<String>,
    key: &str,
    v: &toml::Value,
) -> std::result::Result<(), String> {
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(format!("`{key}` is not a flag name"));
    }
    if RESERVED.contains(&key) {
        return Err(format!(
            "`{key}` is the study's to set (data, seeds and epochs or steps are top-level keys)"
        ));
    }
    if matches!(v, toml::Value::Boolean(false)) {
        return Ok(());
    }
    argv.push(format!("--{}", key.replace('_', "-")));
    if let Some(t) = flag_text(key, v)? {
        argv.push(t);
    }
    Ok(())
}

/// The default data of the disentanglement metrics: the full factor grid
/// of procedural dSprites, or of a dSprites .npz file; none for data
/// without ground-truth factors.
fn default_factors(data: &str) -> Option<String> {
    let base = data.split(':').next().unwrap_or(data);
    if base == "dsprites" {
        Some("dsprites".into())
    } else if base == "color-dsprites" || base.ends_with(".npz") {
        Some(data.into())
    } else {
        None
    }
}

/// Every combination of the axes (keys in order), each a map of values.
fn combinations(
    params: &BTreeMap<String, toml::Value>,
) -> std::result::Result<Vec<BTreeMap<String, toml::Value>>, String> {
    let mut out = vec![BTreeMap::new()];
    for (k, v) in params {
        let values: Vec<toml::Value> = match v {
            toml::Value::Array(a) if a.is_empty() => {
                return Err(format!("{k} = [] has no values"));
            }
            toml::Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        if let Some(bad) = values.iter().find(|x| x.is_array() || x.is_table()) {
            return Err(format!("{k}: {bad} is not a single value"));
        }
        if out.len().saturating_mul(values.len()) > MAX_RUNS {
            return Err(format!(
                "its axes make more than {MAX_RUNS} combinations; split the study"
            ));
        }
        let mut next = Vec::with_capacity(out.len() * values.len());
        for base in &out {
            for x in &values {
                let mut m = base.clone();
                m.insert(k.clone(), x.clone());
                next.push(m);
            }
        }
        out = next;
    }
    Ok(out)
}

/// The id's readable part: `name-key=value-…-sSEED`.
fn slug(name: &str, combo: &BTreeMap<String, toml::Value>, seed: u64) -> String {
    let mut s = name.to_string();
    for (k, v) in combo {
        let t = flag_text(k, v)
            .ok()
            .flatten()
            .unwrap_or_else(|| "on".into());
        s.push('-');
        s.push_str(k);
        s.push('=');
        s.push_str(&t);
    }
    let mut s: String = s
        .chars()
        .map(|c| if id_safe(c) { c } else { '_' })
        .collect();
    s.truncate(150);
    format!("{s}-s{seed}")
}

/// What `study plan` did.
#[derive(Debug, serde::Serialize)]
pub struct Planned {
    /// Runs in the plan.
    pub runs: usize,
    /// Of them, already finished (a row beside the checkpoint).
    pub finished: usize,
    /// Runs of a previous plan in the folder that this one drops.
    pub dropped: usize,
    /// The plan file.
    pub plan: String,
}

/// Expands the grid at `grid` into `out/plan.jsonl` (atomically) and keeps
/// a copy of the grid beside it; checks every run as `latentlab train`
/// would, on the data, before writing anything.
pub fn plan(grid: &Path, out: &Path) -> Result<Planned> {
    let text = std::fs::read_to_string(grid).context(format!("{}", grid.display()))?;
    let runs = expand(&text, grid)?;
    if out.is_file() {
        return Err(CliError::from(format!(
            "--out {}: is a file; give a folder",
            out.display()
        )));
    }
    std::fs::create_dir_all(out.join(RUNS_DIR)).context(format!("--out {}", out.display()))?;
    let previous = Plan::read(out).map(|p| p.runs).unwrap_or_default();
    let dropped = previous
        .iter()
        .filter(|p| !runs.iter().any(|r| r.id == p.id))
        .count();
    let finished = runs.iter().filter(|r| r.row_path(out).is_file()).count();
    let write = |name: &str, bytes: &[u8]| {
        latentlab::data::fs::write_atomic(&out.join(name), bytes)
            .context(format!("--out {}", out.display()))
    };
    let jsonl = Plan::to_jsonl(&runs)?;
    // The plan must pass the checks `study run` makes, before it replaces
    // a previous one.
    Plan::parse(&jsonl, out)?;
    write("grid.toml", text.as_bytes())?;
    write(PLAN_FILE, jsonl.as_bytes())?;
    Ok(Planned {
        runs: runs.len(),
        finished,
        dropped,
        plan: out.join(PLAN_FILE).display().to_string(),
    })
}

/// The runs of a grid's text (`path` names it in errors).
pub fn expand(text: &str, path: &Path) -> Result<Vec<PlannedRun>> {
    expand_on(text, path, true)
}

/// Every check of [`expand`] that does not need the data (its steps per
/// epoch taken as 1): the fuzz target's entry, which must not load
/// whatever data a random grid names. Returns the number of runs.
pub fn check_without_data(text: &str) -> Result<usize> {
    Ok(expand_on(text, Path::new("grid.toml"), false)?.len())
}

fn expand_on(text: &str, path: &Path, with_data: bool) -> Result<Vec<PlannedRun>> {
    let g: Grid = toml::from_str(text)
        .map_err(|e| CliError::from(format!("{}: {}", path.display(), e.to_string().trim_end())))?;
    let at = |e: String| CliError::from(format!("{}: {e}", path.display()));
    if g.seeds.is_empty() {
        return Err(at("seeds = [] has no seeds".into()));
    }
    for (i, s) in g.seeds.iter().enumerate() {
        if g.seeds[..i].contains(s) {
            return Err(at(format!(
                "seeds: {s} appears twice, which would run the same model twice"
            )));
        }
    }
    if g.family.is_empty() {
        return Err(at("no [[family]]: name at least one family to train".into()));
    }
    let (epochs, steps) = match (g.epochs, g.steps) {
        (Some(_), Some(_)) => return Err(at("give epochs or steps, not both".into())),
        (None, None) => return Err(at("give epochs or steps: how long each run trains".into())),
        (Some(0), _) | (_, Some(0)) => {
            return Err(at("epochs and steps must be at least 1".into()));
        }
        other => other,
    };
    let score = &g.score;
    let factors = match &score.factors {
        None => default_factors(&g.data),
        Some(toml::Value::Boolean(false)) => None,
        Some(toml::Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(at(format!(
                "[score] factors = {other}: expected the data with factors (a string) or false"
            )));
        }
    };
    let scoring = Scoring {
        data: g.data.clone(),
        samples: score.samples.unwrap_or(2000),
        probes: score.probes.unwrap_or(2000),
        factors,
        num_train: score.num_train.unwrap_or(10_000),
        num_eval: score.num_eval.unwrap_or(5_000),
    };
    // The data is read once, here: a bad --data is an error before any
    // run is written, and steps become epochs on its training split.
    let split = if with_data {
        Some(load_data(&g.data, g.seeds[0]).context(format!("{}: data", path.display()))?)
    } else {
        None
    };
    let mut runs: Vec<PlannedRun> = Vec::new();
    for (fi, f) in g.family.iter().enumerate() {
        let objective = f.objective.clone().ok_or_else(|| {
            at(format!("family {}: give its objective (elbo, annealed-vae, beta-tcvae, factor-vae, dip-vae-i, dip-vae-ii, mmd or iwae)", fi + 1))
        })?;
        let name = f.name.clone().unwrap_or_else(|| objective.clone());
        let fam = |e: String| at(format!("family {} ({name}): {e}", fi + 1));
        if name.is_empty() || !name.chars().all(id_safe) {
            return Err(fam(format!(
                "name `{name}`: letters, digits and - _ . = + only"
            )));
        }
        let combos = combinations(&f.params).map_err(fam)?;
        if (runs.len() + combos.len().saturating_mul(g.seeds.len())) > MAX_RUNS {
            return Err(fam(format!(
                "the grid expands to more than {MAX_RUNS} runs; split the study"
            )));
        }
        for combo in &combos {
            for &seed in &g.seeds {
                let mut flags: BTreeMap<String, toml::Value> = g.train.clone();
                if let Some(a) = &g.arch {
                    flags.insert("arch".into(), toml::Value::String(a.clone()));
                }
                for (k, v) in combo {
                    flags.insert(k.replace('-', "_"), v.clone());
                }
                let mut argv = vec!["--data".to_string(), g.data.clone()];
                for (k, v) in &flags {
                    push_flag(&mut argv, k, v).map_err(fam)?;
                }
                argv.extend(["--objective".into(), objective.clone()]);
                argv.extend(["--seed".into(), seed.to_string()]);
                let probe = parse_train_args(&argv).map_err(|e| fam(e.to_string()))?;
                let per_epoch = match &split {
                    Some(split) => steps_per_epoch(&probe, split),
                    None => fresh_configs(&probe).map(|_| 1),
                }
                .map_err(|e| fam(e.to_string()))?;
                let run_epochs = match (epochs, steps) {
                    (Some(e), _) => e,
                    (_, Some(s)) => usize::try_from(s.div_ceil(per_epoch))
                        .map_err(|_| fam(format!("{s} steps is too many")))?,
                    _ => unreachable!("checked above"),
                };
                argv.extend(["--epochs".into(), run_epochs.to_string()]);
                let hash = args_hash(&argv);
                let id = format!("{}-{hash}", slug(&name, combo, seed));
                let dir = format!("{RUNS_DIR}/{id}");
                let checkpoint = format!("{dir}/{CHECKPOINT}");
                if let Some(twin) = runs
                    .iter()
                    .find(|r| r.train[..r.train.len() - 2] == argv[..])
                {
                    return Err(fam(format!(
                        "run {} (seed {seed}) is the same run as {} of family {}: the grid has a duplicate",
                        runs.len(),
                        twin.id,
                        twin.family
                    )));
                }
                argv.extend(["--out".into(), checkpoint.clone()]);
                runs.push(PlannedRun {
                    index: runs.len(),
                    id,
                    family: name.clone(),
                    objective: objective.clone(),
                    params: combo
                        .iter()
                        .map(|(k, v)| (k.replace('-', "_"), json_of(v)))
                        .collect(),
                    seed,
                    epochs: run_epochs,
                    steps: run_epochs as u64 * per_epoch,
                    train: argv,
                    score: scoring.clone(),
                    checkpoint,
                    row: format!("{dir}/{ROW}"),
                });
            }
        }
    }
    Ok(runs)
}
