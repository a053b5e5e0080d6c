//! `latentlab study collect`: one table row per planned run, written as
//! Parquet with the Arrow project's writer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use serde_json::Value;

use crate::error::{CliError, Context, Result};
use crate::study::plan::{Plan, PlannedRun};
use crate::study::run::{FIGURES, Row, read_row};

/// A run with its row (none while pending).
pub struct Entry<'a> {
    /// The planned run.
    pub run: &'a PlannedRun,
    /// Its row.
    pub row: Option<Row>,
}

impl Entry<'_> {
    /// `finished`, `failed` or `pending`.
    pub fn status(&self) -> &str {
        self.row.as_ref().map_or("pending", |r| r.status.as_str())
    }

    /// Figure `name`, when the run has it.
    pub fn figure(&self, name: &str) -> Option<f64> {
        self.row
            .as_ref()
            .and_then(|r| r.figures.get(name).copied().flatten())
    }
}

/// Every run of `plan` with its row.
pub fn entries(plan: &Plan) -> Result<Vec<Entry<'_>>> {
    plan.runs
        .iter()
        .map(|r| {
            Ok(Entry {
                run: r,
                row: read_row(&plan.dir, r)?,
            })
        })
        .collect()
}

/// Columns before the grid's parameters, in order.
const LEADING: [&str; 11] = [
    "index",
    "id",
    "family",
    "objective",
    "status",
    "error",
    "seed",
    "epochs",
    "steps",
    "data",
    "device",
];

/// Columns after the figures.
const TRAILING: [&str; 6] = [
    "train_seconds",
    "score_seconds",
    "wall_seconds",
    "verdict",
    "verdict_state",
    "diagnosis",
];

/// A column of a study's table.
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its Arrow type.
    pub ty: DataType,
    /// The grid parameter it holds, for a parameter's column.
    pub param: Option<String>,
}

/// The columns of a study's table, in order: the fixed ones and one per
/// grid parameter (Float64 when every value is a number, else Utf8). A
/// parameter named like a fixed column is prefixed `param_`.
pub fn columns(plan: &Plan) -> Vec<Column> {
    let mut params: BTreeMap<&str, bool> = BTreeMap::new();
    for r in &plan.runs {
        for (k, v) in &r.params {
            let numeric = params.entry(k).or_insert(true);
            *numeric &= v.is_number();
        }
    }
    let fixed: BTreeSet<&str> = LEADING
        .iter()
        .chain(FIGURES.iter())
        .chain(TRAILING.iter())
        .copied()
        .collect();
    let int = |c: &str| matches!(c, "index" | "seed" | "epochs" | "steps" | "active_units");
    let col = |name: &str, ty: DataType, param: Option<&str>| Column {
        name: name.to_string(),
        ty,
        param: param.map(str::to_string),
    };
    let mut out: Vec<Column> = LEADING
        .iter()
        .map(|c| {
            let ty = if int(c) {
                DataType::Int64
            } else {
                DataType::Utf8
            };
            col(c, ty, None)
        })
        .collect();
    for (k, numeric) in params {
        let name = if fixed.contains(k) {
            format!("param_{k}")
        } else {
            k.to_string()
        };
        let ty = if numeric {
            DataType::Float64
        } else {
            DataType::Utf8
        };
        out.push(col(&name, ty, Some(k)));
    }
    for f in FIGURES {
        let ty = if int(f) {
            DataType::Int64
        } else {
            DataType::Float64
        };
        out.push(col(f, ty, None));
    }
    for c in TRAILING {
        let t = if c.ends_with("seconds") {
            DataType::Float64
        } else {
            DataType::Utf8
        };
        out.push(col(c, t, None));
    }
    out
}

/// One cell: a number or a string, or null.
enum Cell {
    Num(Option<f64>),
    Text(Option<String>),
}

fn cell(e: &Entry<'_>, column: &Column) -> Cell {
    let r = e.run;
    if let Some(key) = &column.param {
        return match r.params.get(key) {
            Some(Value::Number(n)) => Cell::Num(n.as_f64()),
            Some(Value::String(s)) => Cell::Text(Some(s.clone())),
            Some(other) => Cell::Text(Some(other.to_string())),
            None => Cell::Num(None),
        };
    }
    let row = e.row.as_ref();
    let text = |s: Option<&str>| Cell::Text(s.map(str::to_string));
    match column.name.as_str() {
        "index" => Cell::Num(Some(r.index as f64)),
        "id" => text(Some(&r.id)),
        "family" => text(Some(&r.family)),
        "objective" => text(Some(&r.objective)),
        "status" => text(Some(e.status())),
        "error" => text(row.and_then(|w| w.error.as_deref())),
        "seed" => Cell::Num(Some(r.seed as f64)),
        "epochs" => Cell::Num(Some(r.epochs as f64)),
        "steps" => Cell::Num(Some(r.steps as f64)),
        "data" => text(Some(&r.score.data)),
        "device" => text(row.and_then(|w| w.device.as_deref())),
        "train_seconds" => Cell::Num(row.and_then(|w| w.train_seconds)),
        "score_seconds" => Cell::Num(row.and_then(|w| w.score_seconds)),
        "wall_seconds" => Cell::Num(row.and_then(|w| match (w.train_seconds, w.score_seconds) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        })),
        "verdict" => text(row.and_then(|w| w.verdict.as_deref())),
        "verdict_state" => text(row.and_then(|w| w.verdict_state.as_deref())),
        "diagnosis" => text(row.and_then(|w| w.diagnosis.as_deref())),
        f => Cell::Num(e.figure(f)),
    }
}

/// The study's table as one Arrow record batch.
pub fn table(plan: &Plan) -> Result<RecordBatch> {
    let es = entries(plan)?;
    let cols = columns(plan);
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for c in &cols {
        let cells: Vec<Cell> = es.iter().map(|e| cell(e, c)).collect();
        let required = c.param.is_none()
            && matches!(
                c.name.as_str(),
                "index"
                    | "id"
                    | "family"
                    | "objective"
                    | "status"
                    | "seed"
                    | "epochs"
                    | "steps"
                    | "data"
            );
        fields.push(Field::new(&c.name, c.ty.clone(), !required));
        arrays.push(match c.ty {
            DataType::Int64 => Arc::new(Int64Array::from(
                cells
                    .iter()
                    .map(|c| match c {
                        Cell::Num(v) => v.map(|x| x as i64),
                        Cell::Text(_) => None,
                    })
                    .collect::<Vec<_>>(),
            )),
            DataType::Float64 => Arc::new(Float64Array::from(
                cells
                    .iter()
                    .map(|c| match c {
                        Cell::Num(v) => *v,
                        Cell::Text(_) => None,
                    })
                    .collect::<Vec<_>>(),
            )),
            _ => Arc::new(StringArray::from(
                cells
                    .iter()
                    .map(|c| match c {
                        Cell::Text(v) => v.clone(),
                        Cell::Num(v) => v.map(|x| x.to_string()),
                    })
                    .collect::<Vec<_>>(),
            )),
        });
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| CliError::from(format!("building the table: {e}")))
}

/// What `study collect` wrote.
#[derive(Debug, serde::Serialize)]
pub struct Collected {
    /// The Parquet file.
    pub out: String,
    /// Rows (one per planned run).
    pub rows: usize,
    /// Columns, in order.
    pub columns: Vec<String>,
    /// Rows by status.
    pub finished: usize,
    /// Failed runs.
    pub failed: usize,
    /// Runs without a row yet.
    pub pending: usize,
}

/// Writes the study's table to `out` as Parquet (snappy pages), atomically.
pub fn collect(plan: &Plan, out: &Path) -> Result<Collected> {
    use parquet::arrow::ArrowWriter;
    use parquet::basic::Compression;
    use parquet::file::properties::WriterProperties;
    if out.is_dir() {
        return Err(CliError::from(format!(
            "--out {}: is a folder; give a file name",
            out.display()
        )));
    }
    let batch = table(plan)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by(format!("latentlab {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut bytes = Vec::new();
    let parquet_err = |e: parquet::errors::ParquetError| CliError::from(format!("Parquet: {e}"));
    let mut w =
        ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props)).map_err(parquet_err)?;
    w.write(&batch).map_err(parquet_err)?;
    w.close().map_err(parquet_err)?;
    latentlab::data::fs::write_atomic(out, &bytes).context(format!("--out {}", out.display()))?;
    let status = batch
        .column_by_name("status")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
        .ok_or("the table has no status column")?;
    let count = |s: &str| status.iter().filter(|v| *v == Some(s)).count();
    Ok(Collected {
        out: out.display().to_string(),
        rows: batch.num_rows(),
        columns: batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
        finished: count("finished"),
        failed: count("failed"),
        pending: count("pending"),
    })
}
