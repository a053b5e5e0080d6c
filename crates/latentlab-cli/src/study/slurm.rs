//! `latentlab study slurm`: an `sbatch` array script whose tasks each run
//! `latentlab study run-one` on one index of the plan. latentlab schedules
//! nothing itself.

use std::path::{Path, PathBuf};

use crate::error::{CliError, Context, Result};
use crate::study::plan::Plan;
use crate::study::run::{FINISHED, read_row};

/// The script's settings (`#SBATCH` lines).
#[derive(Clone, Debug, Default)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time`: the wall-clock limit of one task.
    pub time: Option<String>,
    /// `--cpus-per-task` (each task's `RAYON_NUM_THREADS`).
    pub cpus: usize,
    /// `--mem`.
    pub mem: Option<String>,
    /// At most this many tasks at once (`--array=…%K`).
    pub max_parallel: Option<usize>,
    /// Only the runs without a finished row.
    pub pending_only: bool,
    /// The latentlab binary the tasks run (this one when not given): a
    /// path every node sees.
    pub bin: Option<PathBuf>,
}

/// Slurm's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
fn valid_time(t: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    days.is_none_or(digits) && parts.iter().all(|p| digits(p)) && parts.len() <= 3
}

/// Indices as Slurm's array ranges: `0-3,5,7-9`.
pub fn ranges(indices: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        let mut end = start;
        while i + 1 < indices.len() && indices[i + 1] == end + 1 {
            i += 1;
            end = indices[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// A path as one single-quoted shell word.
fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// Writes `study/slurm.sbatch` (atomically) and returns its path and the
/// command that submits it.
pub fn write_script(plan: &Plan, o: &SlurmOptions) -> Result<(PathBuf, String)> {
    if o.cpus == 0 {
        return Err("--cpus: must be at least 1".into());
    }
    if let Some(t) = &o.time
        && !valid_time(t)
    {
        return Err(CliError::from(format!(
            "--time {t}: expected Slurm's MINUTES, H:M:S or D-H:M:S"
        )));
    }
    if let Some(p) = &o.partition
        && (p.is_empty()
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ',')))
    {
        return Err(CliError::from(format!(
            "--partition {p}: not a partition name (letters, digits, _ - . and , for several)"
        )));
    }
    if let Some(m) = &o.mem {
        let digits = m.trim_end_matches(['K', 'M', 'G', 'T']);
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || m.len() - digits.len() > 1
        {
            return Err(CliError::from(format!(
                "--mem {m}: expected a size such as 4G or 2000M"
            )));
        }
    }
    if o.max_parallel == Some(0) {
        return Err("--max-parallel: must be at least 1".into());
    }
    let dir = std::path::absolute(&plan.dir).context(format!("{}", plan.dir.display()))?;
    let bin = match &o.bin {
        Some(b) => std::path::absolute(b).context("--bin")?,
        None => std::env::current_exe().context("finding the latentlab binary")?,
    };
    let mut indices = Vec::new();
    for r in &plan.runs {
        let finished = read_row(&plan.dir, r)?.is_some_and(|row| row.status == FINISHED);
        if !(o.pending_only && finished) {
            indices.push(r.index);
        }
    }
    if indices.is_empty() {
        return Err(CliError::from(format!(
            "{}: every run is finished; nothing to submit",
            plan.dir.display()
        )));
    }
    let logs = dir.join("logs");
    if logs.display().to_string().contains(char::is_whitespace) {
        return Err(CliError::from(format!(
            "{}: sbatch's --output cannot name a path with spaces; move the study",
            logs.display()
        )));
    }
    std::fs::create_dir_all(&logs).context(format!("{}", logs.display()))?;
    let mut array = ranges(&indices);
    if let Some(k) = o.max_parallel {
        array.push_str(&format!("%{k}"));
    }
    let mut s = String::new();
    s.push_str("#!/bin/bash\n");
    s.push_str(&format!(
        "# latentlab study: {} of the {} runs of {}, one array task each.\n",
        indices.len(),
        plan.runs.len(),
        dir.display()
    ));
    s.push_str("# Each task trains (or resumes) its run, scores it and writes its row;\n");
    s.push_str("# a requeued or repeated task skips a finished run.\n");
    s.push_str("#SBATCH --job-name=latentlab-study\n");
    s.push_str(&format!("#SBATCH --array={array}\n"));
    s.push_str(&format!("#SBATCH --cpus-per-task={}\n", o.cpus));
    s.push_str("#SBATCH --ntasks=1\n");
    if let Some(t) = &o.time {
        s.push_str(&format!("#SBATCH --time={t}\n"));
    }
    if let Some(p) = &o.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    if let Some(m) = &o.mem {
        s.push_str(&format!("#SBATCH --mem={m}\n"));
    }
    s.push_str(&format!("#SBATCH --output={}/%A_%a.log\n", logs.display()));
    s.push_str("set -euo pipefail\n");
    s.push_str(&format!(
        "export RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-{}}}\"\n",
        o.cpus
    ));
    s.push_str(&format!(
        "exec {} study run-one {} --index \"$SLURM_ARRAY_TASK_ID\"\n",
        quote(&bin),
        quote(&dir)
    ));
    let path = plan.dir.join("slurm.sbatch");
    latentlab::data::fs::write_atomic(&path, s.as_bytes())
        .context(format!("{}", path.display()))?;
    let submit = format!("sbatch {}", quote(&std::path::absolute(&path)?));
    Ok((path, submit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_compress_into_slurm_ranges() {
        assert_eq!(ranges(&[0, 1, 2, 3]), "0-3");
        assert_eq!(ranges(&[0, 2, 3, 4, 7, 9, 10]), "0,2-4,7,9-10");
        assert_eq!(ranges(&[5]), "5");
    }

    #[test]
    fn slurm_times_are_checked() {
        for ok in ["30", "30:00", "1:00:00", "2-0", "2-12:00", "1-00:00:00"] {
            assert!(valid_time(ok), "{ok}");
        }
        for bad in ["", "1h", "1:2:3:4", "-1", "1-", "a:00", "1-2:3:4:5"] {
            assert!(!valid_time(bad), "{bad}");
        }
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(quote(Path::new("/a/it's")), r"'/a/it'\''s'");
    }
}
