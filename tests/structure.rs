//! The code's shape matches its layers:
//!
//! - within a crate, no chain of `crate::…` / `super::…` references between
//!   files comes back to where it started (a parent module naming its own
//!   children, and children naming their ancestors' re-exports, do not
//!   count: the parent declares them);
//! - a crate depends only on crates of a lower layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The layers, lowest first; a crate may depend on crates of lower layers.
const LAYERS: &[&[&str]] = &[
    &["latentlab-rng"],
    &[
        "latentlab-tensor",
        "latentlab-data",
        "latentlab-geometry",
        "latentlab-viz",
    ],
    &["latentlab-model", "latentlab-embed"],
    &[
        "latentlab-diagnostics",
        "latentlab-manipulate",
        "latentlab-onnx",
    ],
    &["latentlab-report"],
    &["latentlab"],
    &["latentlab-cli"],
];

fn layer_of(name: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&name))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under `src/`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("lib" | "main" | "mod")
    ) {
        parts.pop();
    }
    parts
}

/// Every path after `crate::` or `super::` in `text` (comments stripped),
/// brace groups expanded one level: `crate::{a, b::c}` gives `a` and `b::c`.
fn references(text: &str, module: &[String], is_mod_file: bool) -> Vec<Vec<String>> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", {
            // `super` of a file module is its parent; of a `mod.rs`, the
            // parent of the directory's module.
            let mut m = module.to_vec();
            if !is_mod_file || !m.is_empty() {
                m.pop();
            }
            m
        }),
    ] {
        let mut rest = code.as_str();
        while let Some(i) = rest.find(prefix) {
            let after = &rest[i + prefix.len()..];
            let before = rest[..i].chars().last();
            rest = after;
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let heads: Vec<String> = if let Some(group) = after.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end]
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect()
            } else {
                vec![
                    after
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                        .collect(),
                ]
            };
            for h in heads {
                let mut p = base.clone();
                p.extend(
                    h.split("::")
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                );
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let mut cycles = Vec::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let krate = entry.unwrap().path();
        let src = krate.join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeMap<Vec<String>, PathBuf> = files
            .iter()
            .map(|f| (module_of(&src, f), f.clone()))
            .collect();
        // Edges between files, ancestors excluded.
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for (m, f) in &modules {
            let is_mod = f.file_name().is_some_and(|n| n == "mod.rs");
            let text = std::fs::read_to_string(f).unwrap();
            for r in references(&text, m, is_mod) {
                // The longest module prefix of the path is the file it names.
                let Some(target) = (0..=r.len())
                    .rev()
                    .map(|k| r[..k].to_vec())
                    .find(|p| modules.contains_key(p))
                else {
                    continue;
                };
                let ancestor = target.len() < m.len() && m.starts_with(&target);
                let child = m.len() < target.len() && target.starts_with(m);
                if target != *m && !ancestor && !child {
                    edges.entry(m.clone()).or_default().insert(target);
                }
            }
        }
        // Any cycle, found by depth-first search.
        fn visit(
            n: &Vec<String>,
            edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
            stack: &mut Vec<Vec<String>>,
            done: &mut BTreeSet<Vec<String>>,
            found: &mut Vec<String>,
        ) {
            if let Some(i) = stack.iter().position(|s| s == n) {
                let names: Vec<String> =
                    stack[i..].iter().chain([n]).map(|m| m.join("::")).collect();
                found.push(names.join(" → "));
                return;
            }
            if !done.insert(n.clone()) {
                return;
            }
            stack.push(n.clone());
            for t in edges.get(n).into_iter().flatten() {
                visit(t, edges, stack, done, found);
            }
            stack.pop();
        }
        let mut done = BTreeSet::new();
        let mut found = Vec::new();
        for n in modules.keys() {
            visit(n, &edges, &mut Vec::new(), &mut done, &mut found);
        }
        let name = krate.file_name().unwrap().to_string_lossy().to_string();
        cycles.extend(found.into_iter().map(|c| format!("{name}: {c}")));
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn crates_depend_only_on_lower_layers() {
    let mut bad = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let krate = entry.unwrap().path();
        let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
        let name = manifest
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .map(|n| n.trim_matches('"').to_string())
            .unwrap();
        let Some(own) = layer_of(&name) else {
            bad.push(format!("{name} is in no layer of tests/structure.rs"));
            continue;
        };
        seen += 1;
        let deps = manifest
            .split("[dependencies]")
            .nth(1)
            .map(|s| s.split("\n[").next().unwrap_or(""))
            .unwrap_or("");
        for dep in deps.lines().filter_map(|l| l.split(['.', ' ', '=']).next()) {
            if let Some(l) = layer_of(dep)
                && l >= own
            {
                bad.push(format!("{name} (layer {own}) depends on {dep} (layer {l})"));
            }
        }
    }
    assert_eq!(seen, LAYERS.iter().map(|l| l.len()).sum::<usize>());
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_reference_finder_sees_groups_and_super() {
    let m = vec!["a".to_string()];
    let r = references(
        "use crate::{b, c::d};\nuse super::e; // crate::f\nlet x = crate::g::h();",
        &m,
        false,
    );
    let got: Vec<String> = r.iter().map(|p| p.join("::")).collect();
    assert_eq!(got, ["b", "c::d", "g::h", "e"]);
}
