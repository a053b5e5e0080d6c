//! `latentlab study`: grids of models across families, settings and seeds,
//! planned into a folder, run on this machine or as a scheduler's job
//! array, collected into Parquet and shown on one page (docs/study.md).

use std::path::PathBuf;

use clap::Subcommand;

use crate::error::{CliError, Result};

/// The study's table: `study collect`.
pub mod collect;
/// The TOML grid and `study plan`.
pub mod grid;
/// `study report`'s page.
pub mod page;
/// The plan file and its checks.
pub mod plan;
/// `study run-one` and `study run`.
pub mod run;
/// `study slurm`'s array script.
pub mod slurm;

use plan::Plan;

/// `latentlab study`'s commands.
#[derive(Subcommand, Debug)]
pub enum StudyCommand {
    /// Expands a TOML grid into STUDY/plan.jsonl: one run per line with a stable id.
    Plan {
        /// The grid (docs/study.md describes its keys).
        grid: PathBuf,
        /// The study folder (made when missing; an existing study keeps its finished runs).
        #[arg(long)]
        out: PathBuf,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Runs every pending run of the plan on this machine, N at a time; finished runs are skipped.
    Run {
        /// The study folder.
        study: PathBuf,
        /// Runs at a time, each in its own process with cores/N threads.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Start failed runs again from scratch.
        #[arg(long)]
        retry_failed: bool,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Runs one run of the plan: trains or resumes it, scores it and writes its row.
    RunOne {
        /// The study folder.
        study: PathBuf,
        /// The run's index in the plan (default: $SLURM_ARRAY_TASK_ID, else $JOB_COMPLETION_INDEX).
        #[arg(long)]
        index: Option<usize>,
        /// Start a failed run again from scratch.
        #[arg(long)]
        retry_failed: bool,
    },
    /// Writes STUDY/slurm.sbatch, a job array of `study run-one`, and prints the command that submits it.
    Slurm {
        /// The study folder.
        study: PathBuf,
        /// The partition.
        #[arg(long)]
        partition: Option<String>,
        /// Each task's wall-clock limit (MINUTES, H:M:S or D-H:M:S).
        #[arg(long)]
        time: Option<String>,
        /// CPUs per task (its threads).
        #[arg(long, default_value_t = 2)]
        cpus: usize,
        /// Memory per task (4G, 2000M …).
        #[arg(long)]
        mem: Option<String>,
        /// At most this many tasks at once.
        #[arg(long)]
        max_parallel: Option<usize>,
        /// Only runs without a finished row.
        #[arg(long)]
        pending_only: bool,
        /// The latentlab binary the tasks run (this one by default); every node must see it.
        #[arg(long)]
        bin: Option<PathBuf>,
    },
    /// How many runs are finished, failed, started and pending.
    Status {
        /// The study folder.
        study: PathBuf,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// One Parquet row per run: the grid's values, seed, steps, times, losses, diagnosis and every metric.
    Collect {
        /// The study folder.
        study: PathBuf,
        /// The Parquet file to write.
        #[arg(long, default_value = "results.parquet")]
        out: PathBuf,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// One HTML page: each metric's spread over seeds, the metrics' rank correlations, the best and worst model's traversals.
    Report {
        /// The study folder.
        study: PathBuf,
        /// The folder to write index.html into (default: STUDY/report).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The figure that picks the best and worst models (default: mig, else test_neg_elbo).
        #[arg(long)]
        rank_by: Option<String>,
    },
}

/// The index a scheduler gave this task.
fn scheduler_index() -> Result<usize> {
    for var in ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"] {
        if let Ok(v) = std::env::var(var) {
            return v
                .trim()
                .parse()
                .map_err(|_| CliError::from(format!("${var} = `{v}` is not an index")));
        }
    }
    Err("give --index, or run under a scheduler that sets SLURM_ARRAY_TASK_ID (Slurm job arrays) or JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs)".into())
}

/// Runs a `latentlab study` command.
pub fn run(command: StudyCommand) -> Result<()> {
    match command {
        StudyCommand::Plan { grid, out, json } => {
            let p = grid::plan(&grid, &out)?;
            if json {
                println!("{}", serde_json::to_string(&p)?);
            } else {
                eprintln!(
                    "latentlab: planned {} runs in {} ({} already finished{})",
                    p.runs,
                    p.plan,
                    p.finished,
                    if p.dropped > 0 {
                        format!(
                            "; {} runs of the previous plan are no longer in it, their folders kept",
                            p.dropped
                        )
                    } else {
                        String::new()
                    }
                );
            }
            Ok(())
        }
        StudyCommand::Run {
            study,
            jobs,
            retry_failed,
            json,
        } => {
            let plan = Plan::read(&study)?;
            let s = run::run_all(&plan, jobs, retry_failed)?;
            if json {
                println!("{}", serde_json::to_string(&s)?);
            }
            eprintln!(
                "latentlab: study: {} finished now, {} before, {} failed, {} interrupted ({:.1} s)",
                s.finished,
                s.skipped,
                s.failed.len(),
                s.interrupted.len(),
                s.seconds
            );
            if !s.interrupted.is_empty() {
                return Err(CliError::from(format!(
                    "{} runs ended without a row (killed?): {}; run the study again to resume them",
                    s.interrupted.len(),
                    s.interrupted.join(", ")
                )));
            }
            if !s.failed.is_empty() {
                return Err(CliError::from(format!(
                    "{} runs failed: {}; their rows hold the errors (`latentlab study collect`), and --retry-failed starts them again",
                    s.failed.len(),
                    s.failed.join(", ")
                )));
            }
            Ok(())
        }
        StudyCommand::RunOne {
            study,
            index,
            retry_failed,
        } => {
            let plan = Plan::read(&study)?;
            let index = match index {
                Some(i) => i,
                None => scheduler_index()?,
            };
            match run::run_one(&plan, index, retry_failed)? {
                run::Outcome::Finished => {}
                run::Outcome::Skipped(status) => eprintln!(
                    "latentlab: study: run {index} {}: {status} before; skipped",
                    plan.run(index)?.id
                ),
            }
            Ok(())
        }
        StudyCommand::Slurm {
            study,
            partition,
            time,
            cpus,
            mem,
            max_parallel,
            pending_only,
            bin,
        } => {
            let plan = Plan::read(&study)?;
            let (path, submit) = slurm::write_script(
                &plan,
                &slurm::SlurmOptions {
                    partition,
                    time,
                    cpus,
                    mem,
                    max_parallel,
                    pending_only,
                    bin,
                },
            )?;
            if plan.runs.len() > 1000 {
                eprintln!(
                    "latentlab: warning: {} tasks; Slurm's default MaxArraySize is 1001 (raise it in slurm.conf)",
                    plan.runs.len()
                );
            }
            eprintln!("latentlab: wrote {}; submit it with:", path.display());
            println!("{submit}");
            Ok(())
        }
        StudyCommand::Status { study, json } => {
            let plan = Plan::read(&study)?;
            let s = run::status(&plan)?;
            if json {
                println!("{s}");
            } else {
                println!(
                    "{} runs: {} finished, {} failed, {} started, {} pending",
                    s["runs"], s["finished"], s["failed"], s["started"], s["pending"]
                );
            }
            Ok(())
        }
        StudyCommand::Collect { study, out, json } => {
            let plan = Plan::read(&study)?;
            let c = collect::collect(&plan, &out)?;
            if json {
                println!("{}", serde_json::to_string(&c)?);
            } else {
                eprintln!(
                    "latentlab: wrote {} rows ({} finished, {} failed, {} pending) × {} columns to {}",
                    c.rows,
                    c.finished,
                    c.failed,
                    c.pending,
                    c.columns.len(),
                    c.out
                );
            }
            Ok(())
        }
        StudyCommand::Report {
            study,
            out,
            rank_by,
        } => {
            let plan = Plan::read(&study)?;
            let out = out.unwrap_or_else(|| study.join("report"));
            let p = page::report(&plan, &out, rank_by.as_deref())?;
            eprintln!("latentlab: wrote {}", p.display());
            Ok(())
        }
    }
}
