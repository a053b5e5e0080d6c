//! `latentlab study report`: one self-contained HTML page of a study — per
//! metric, the spread over seeds of each family and setting; the rank
//! correlations between metrics; and the best and the worst model's
//! traversals side by side.

use std::collections::BTreeMap;
use std::path::Path;

use latentlab::diagnostics::{Latents, kl_per_dim};
use latentlab::report::{grid_png, shape_of};
use latentlab::tensor::Cpu;
use latentlab::viz::chart::strips;
use latentlab::viz::html::Page;
use ndarray::{Axis, concatenate};

use crate::error::{CliError, Context, Result};
use crate::model::{ModelFlags, Need, load_for, open};
use crate::study::collect::{Entry, entries};
use crate::study::plan::Plan;
use crate::study::run::FINISHED;

/// The figures the page plots, with their readable names.
const SHOWN: [(&str, &str); 12] = [
    ("test_neg_elbo", "test −ELBO (nats)"),
    ("active_units", "active units"),
    ("mutual_information", "I(x; z) (nats)"),
    ("hole_fraction", "prior mass in holes"),
    ("beta_vae", "β-VAE score"),
    ("factor_vae", "FactorVAE score"),
    ("mig", "MIG"),
    ("sap", "SAP"),
    ("dci_disentanglement", "DCI disentanglement"),
    ("dci_completeness", "DCI completeness"),
    ("modularity", "modularity"),
    ("explicitness", "explicitness (AUC)"),
];

/// Whether a smaller value of `figure` is the better model.
pub fn lower_is_better(figure: &str) -> bool {
    figure.ends_with("neg_elbo") || figure.ends_with("_rec") || figure == "hole_fraction"
}

/// Ranks from 1, ties sharing their mean rank.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation of paired values: the Pearson correlation
/// of their ranks (ties at mean ranks); `None` when either is constant or
/// there are fewer than 3 pairs.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 3 {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

/// A run's setting: its family and grid values, without the seed.
fn setting(e: &Entry<'_>) -> String {
    let mut s = e.run.family.clone();
    for (k, v) in &e.run.params {
        let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
        s.push_str(&format!(" {k}={v}"));
    }
    s
}

/// Five traversals of `checkpoint`'s most informative dimensions around
/// its first test image's code, as a PNG grid (rows: dimensions, from −3
/// to 3 in 9 steps), with a caption naming them.
fn traversal_png(checkpoint: &Path, data: &str) -> Result<(Vec<u8>, String)> {
    let model = open(
        Cpu::new(),
        &ModelFlags::checkpoint(checkpoint.to_path_buf()),
        Need::Both,
    )?;
    let split = load_for(data, &model)?;
    let n = split.test.len().min(500);
    let latents = Latents::encode(&model, split.test.images.slice(ndarray::s![..n, ..]))?;
    let kl = kl_per_dim(&latents);
    let d = kl.len();
    let mut dims: Vec<usize> = (0..d).collect();
    dims.sort_by(|&a, &b| kl[b].total_cmp(&kl[a]));
    dims.truncate(5);
    let z0 = latents.mu().row(0).mapv(|v| v as f32);
    let mut rows = Vec::new();
    for &k in &dims {
        rows.push(latentlab::manipulate::traverse(
            &model,
            z0.view(),
            k,
            -3.0,
            3.0,
            9,
        )?);
    }
    let views: Vec<_> = rows.iter().map(|r| r.view()).collect();
    let grid = concatenate(Axis(0), &views)?;
    let caption = dims
        .iter()
        .map(|k| format!("z{k} ({:.2} nats)", kl[*k]))
        .collect::<Vec<_>>()
        .join(", ");
    Ok((grid_png(&grid, shape_of(&model), 9), caption))
}

/// Writes `out/index.html`: the study's page. `rank_by` picks the figure
/// the best and worst models are chosen by (MIG when the runs have it,
/// else the test −ELBO).
pub fn report(plan: &Plan, out: &Path, rank_by: Option<&str>) -> Result<std::path::PathBuf> {
    if out.is_file() {
        return Err(CliError::from(format!(
            "--out {}: is a file; give a folder",
            out.display()
        )));
    }
    let es = entries(plan)?;
    let done: Vec<&Entry<'_>> = es.iter().filter(|e| e.status() == FINISHED).collect();
    if done.is_empty() {
        return Err(CliError::from(format!(
            "{}: no run has finished yet; run the study first",
            plan.dir.display()
        )));
    }
    let has = |f: &str| done.iter().filter(|e| e.figure(f).is_some()).count() >= 1;
    let rank_by = match rank_by {
        Some(f) if crate::study::run::FIGURES.contains(&f) => {
            if !has(f) {
                return Err(CliError::from(format!(
                    "--rank-by {f}: no finished run has it"
                )));
            }
            f.to_string()
        }
        Some(f) => {
            return Err(CliError::from(format!(
                "--rank-by {f}: not a figure; expected one of {}",
                crate::study::run::FIGURES.join(", ")
            )));
        }
        None if has("mig") => "mig".into(),
        None => "test_neg_elbo".into(),
    };
    let count = |s: &str| es.iter().filter(|e| e.status() == s).count();
    let mut seeds: Vec<u64> = plan.runs.iter().map(|r| r.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let mut settings: Vec<String> = es.iter().map(setting).collect();
    settings.dedup();
    let title = format!(
        "latentlab study: {}",
        std::path::absolute(&plan.dir)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| plan.dir.display().to_string())
    );
    let mut page = Page::new(&title);
    page.heading("Study");
    let steps: Vec<String> = {
        let mut s: Vec<u64> = plan.runs.iter().map(|r| r.steps).collect();
        s.sort_unstable();
        s.dedup();
        s.iter().map(u64::to_string).collect()
    };
    page.table(&[
        ("runs".into(), plan.runs.len().to_string()),
        ("finished".into(), count(FINISHED).to_string()),
        ("failed".into(), count("failed").to_string()),
        ("pending".into(), count("pending").to_string()),
        (
            "settings (family and values)".into(),
            settings.len().to_string(),
        ),
        (
            "seeds".into(),
            seeds
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("steps per run".into(), steps.join(", ")),
        ("data".into(), plan.runs[0].score.data.clone()),
    ]);
    for e in es.iter().filter(|e| e.status() == "failed") {
        let why = e
            .row
            .as_ref()
            .and_then(|r| r.error.clone())
            .unwrap_or_default();
        page.callout(&format!("{} failed: {why}", e.run.id), false);
    }
    page.heading("Spread over seeds");
    page.para("Each column is one family at one setting; each dot is one seed's model, and the bar is their median. Seeds of one setting differ only in their weights' initialisation, the data order and the noise.");
    let shown: Vec<(&str, &str)> = SHOWN.iter().copied().filter(|(f, _)| has(f)).collect();
    for (f, label) in &shown {
        let mut groups: BTreeMap<usize, (String, Vec<f64>)> = BTreeMap::new();
        for e in &done {
            if let Some(v) = e.figure(f) {
                let s = setting(e);
                let at = settings.iter().position(|x| *x == s).unwrap_or(0);
                groups
                    .entry(at)
                    .or_insert_with(|| (s, Vec::new()))
                    .1
                    .push(v);
            }
        }
        let groups: Vec<(String, Vec<f64>)> = groups.into_values().collect();
        page.svg(
            &strips(&groups, label, label),
            &format!(
                "{label} per setting ({}).",
                if lower_is_better(f) {
                    "lower is better"
                } else {
                    "higher is better"
                }
            ),
        );
    }
    page.heading("Rank correlation between metrics");
    page.para("Spearman's ρ over the finished runs that have both figures (— where fewer than 3 runs have both, or one is constant). Locatello et al. (2019) found the disentanglement metrics agree with each other far from perfectly; this table shows how they agree here.");
    let names: Vec<String> = shown.iter().map(|(f, _)| f.to_string()).collect();
    let rows: Vec<(String, Vec<String>)> = shown
        .iter()
        .map(|(a, _)| {
            let cells = shown
                .iter()
                .map(|(b, _)| {
                    let pairs: Vec<(f64, f64)> = done
                        .iter()
                        .filter_map(|e| Some((e.figure(a)?, e.figure(b)?)))
                        .collect();
                    let (x, y): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
                    spearman(&x, &y).map_or_else(|| "—".into(), |r| format!("{r:+.2}"))
                })
                .collect();
            (a.to_string(), cells)
        })
        .collect();
    page.matrix(&names, &rows);
    page.heading(&format!("Best and worst model by {rank_by}"));
    let ranked: Vec<(&Entry<'_>, f64)> = {
        let mut v: Vec<(&Entry<'_>, f64)> = done
            .iter()
            .filter_map(|e| Some((*e, e.figure(&rank_by)?)))
            .collect();
        v.sort_by(|a, b| {
            let o = a.1.total_cmp(&b.1);
            if lower_is_better(&rank_by) {
                o
            } else {
                o.reverse()
            }
        });
        v
    };
    let picks = match ranked.as_slice() {
        [] => vec![],
        [only] => vec![("best and worst", *only)],
        [first, .., last] => vec![("best", *first), ("worst", *last)],
    };
    page.para("Each row sweeps one of the model's five most informative dimensions (by test KL) from −3 to 3 around its first test image's code.");
    for (which, (e, v)) in picks {
        let (png, dims) = traversal_png(&e.run.checkpoint_path(&plan.dir), &e.run.score.data)
            .context(format!("run {}", e.run.id))?;
        page.png(
            &png,
            &format!(
                "{which}: {} ({rank_by} {v:.4}); dimensions {dims}",
                e.run.id
            ),
        );
    }
    std::fs::create_dir_all(out).context(format!("--out {}", out.display()))?;
    let path = out.join("index.html");
    latentlab::data::fs::write_atomic(&path, page.render().as_bytes())
        .context(format!("--out {}", out.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_matches_known_answers() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(spearman(&a, &[10.0, 20.0, 30.0, 40.0, 50.0]), Some(1.0));
        assert_eq!(spearman(&a, &[5.0, 4.0, 3.0, 2.0, 1.0]), Some(-1.0));
        // A monotone but non-linear relation is still ρ = 1.
        assert_eq!(spearman(&a, &[1.0, 8.0, 27.0, 64.0, 1e6]), Some(1.0));
        // scipy.stats.spearmanr([1,2,3,4,5], [2,1,4,3,5]) = 0.8
        let r = spearman(&a, &[2.0, 1.0, 4.0, 3.0, 5.0]).unwrap();
        assert!((r - 0.8).abs() < 1e-12, "{r}");
        // Ties take their mean rank: spearmanr([1,2,2,3], [1,2,3,4]) = 0.9486832980505138
        let r = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((r - 0.948_683_298_050_513_8).abs() < 1e-12, "{r}");
        assert_eq!(spearman(&a, &[1.0; 5]), None);
        assert_eq!(spearman(&a[..2], &a[..2]), None);
    }
}
