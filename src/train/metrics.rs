//! `metrics.csv`: one row per logged or evaluated step.
//!
//! ```text
//! step,train_bpd,test_bpd,lr,grad_norm,images_per_s,train_class_bits,train_class_error,
//!     test_marginal_bpd,test_bayes_error,test_class_bits,test_class_error
//! ```
//!
//! (one line in the file). Empty cells mean "not measured at this step". A class-conditional
//! model's evaluations also log the test set's [`ClassFigures`] (`test_bpd` is then given each
//! image's label, `test_marginal_bpd` is not); the `*_class_*` columns are the classifier head's
//! ([`HeadFigures`]), empty for a model without one. Files written before a column was added
//! read with it empty. Rows are appended as training goes; on resume, rows past the
//! checkpoint's step are dropped so the file matches the run that continues.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::eval::{ClassFigures, HeadFigures, TestFigures};
use crate::error::{GlowError, Result};
use crate::io::atomic::write_atomic;
use crate::io::plot::{write_line_chart, Series};

const HEADER: &str = "step,train_bpd,test_bpd,lr,grad_norm,images_per_s,train_class_bits,\
                      train_class_error,test_marginal_bpd,test_bayes_error,test_class_bits,\
                      test_class_error";

/// One row of `metrics.csv`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsRow {
    /// Steps completed.
    pub step: u64,
    /// Mean training bits/dim since the previous row.
    pub train_bpd: Option<f64>,
    /// Test bits/dim of the EMA weights (given each image's label, for a class-conditional
    /// model).
    pub test_bpd: Option<f64>,
    /// Learning rate of the last step.
    pub lr: Option<f64>,
    /// Mean global gradient norm (before clipping) since the previous row.
    pub grad_norm: Option<f64>,
    /// Training throughput since the previous row.
    pub images_per_s: Option<f64>,
    /// Mean cross-entropy of the classifier head (bits per image) since the previous row.
    pub train_class_bits: Option<f64>,
    /// Mean error of the classifier head since the previous row.
    pub train_class_error: Option<f64>,
    /// A class-conditional model's figures on the test set (EMA weights).
    pub test_classes: Option<ClassFigures>,
    /// The classifier head's figures on the test set (EMA weights).
    pub test_head: Option<HeadFigures>,
}

impl MetricsRow {
    /// Records an evaluation's figures.
    pub fn set_test(&mut self, figures: TestFigures) {
        self.test_bpd = Some(figures.bpd);
        self.test_classes = figures.classes;
        self.test_head = figures.head;
    }

    /// The evaluation's figures, where the row has one.
    pub fn test(&self) -> Option<TestFigures> {
        self.test_bpd.map(|bpd| TestFigures {
            bpd,
            classes: self.test_classes,
            head: self.test_head,
        })
    }

    fn to_csv(&self) -> String {
        let cell = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            self.step,
            cell(self.train_bpd),
            cell(self.test_bpd),
            self.lr.map(|x| format!("{x:.3e}")).unwrap_or_default(),
            cell(self.grad_norm),
            self.images_per_s
                .map(|x| format!("{x:.1}"))
                .unwrap_or_default(),
            cell(self.train_class_bits),
            cell(self.train_class_error),
            cell(self.test_classes.map(|c| c.marginal_bpd)),
            cell(self.test_classes.map(|c| c.error)),
            cell(self.test_head.map(|h| h.bits)),
            cell(self.test_head.map(|h| h.error)),
        )
    }

    fn from_csv(line: &str) -> Option<Self> {
        let cells: Vec<&str> = line.split(',').collect();
        let num = |i: usize| cells.get(i).and_then(|c| c.parse::<f64>().ok());
        let pair = |i: usize| num(i).zip(num(i + 1));
        Some(MetricsRow {
            step: cells.first()?.parse().ok()?,
            train_bpd: num(1),
            test_bpd: num(2),
            lr: num(3),
            grad_norm: num(4),
            images_per_s: num(5),
            train_class_bits: num(6),
            train_class_error: num(7),
            test_classes: pair(8).map(|(marginal_bpd, error)| ClassFigures {
                marginal_bpd,
                error,
            }),
            test_head: pair(10).map(|(bits, error)| HeadFigures { bits, error }),
        })
    }
}

/// The metrics file of a run.
pub struct MetricsFile {
    path: PathBuf,
}

impl MetricsFile {
    /// Opens `RUN/metrics.csv`, keeping only rows up to `step` (all of a fresh run's file is
    /// replaced by the header).
    pub fn open(run: &Path, step: u64) -> Result<Self> {
        let path = run.join("metrics.csv");
        let kept: Vec<MetricsRow> = Self::read(&path)?
            .into_iter()
            .filter(|r| r.step <= step)
            .collect();
        let mut text = format!("{HEADER}\n");
        for row in &kept {
            text.push_str(&row.to_csv());
            text.push('\n');
        }
        write_atomic(&path, text.as_bytes())?;
        Ok(MetricsFile { path })
    }

    /// Appends a row.
    pub fn append(&self, row: &MetricsRow) -> Result<()> {
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| GlowError::io(&self.path, e))?;
        writeln!(file, "{}", row.to_csv()).map_err(|e| GlowError::io(&self.path, e))
    }

    /// Whether the file holds a row of `step` with a test bits/dim: the final evaluation of a run
    /// that ended at `step` and is resumed again (its row is written after the last checkpoint).
    pub fn has_evaluation_at(&self, step: u64) -> Result<bool> {
        Ok(Self::read(&self.path)?
            .iter()
            .any(|row| row.step == step && row.test_bpd.is_some()))
    }

    /// Every row of the file at `path` (none if it does not exist).
    pub fn read(path: &Path) -> Result<Vec<MetricsRow>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(text
                .lines()
                .skip(1)
                .filter_map(MetricsRow::from_csv)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(GlowError::io(path, e)),
        }
    }
}

/// Draws the learning curves of `metrics.csv` (train and test bits/dim against steps, and a
/// class-conditional model's marginal test bits/dim) to `RUN/curves.png`.
pub fn write_curves(run: &Path) -> Result<PathBuf> {
    let rows = MetricsFile::read(&run.join("metrics.csv"))?;
    let series = |name: &str, pick: fn(&MetricsRow) -> Option<f64>| Series {
        name: name.into(),
        points: rows
            .iter()
            .filter_map(|r| pick(r).map(|v| (r.step as f64, v)))
            .collect(),
        band: None,
    };
    let mut curves = vec![
        series("train", |r| r.train_bpd),
        series("test (EMA)", |r| r.test_bpd),
    ];
    let marginal = series("test marginal (EMA)", |r| {
        r.test_classes.map(|c| c.marginal_bpd)
    });
    if !marginal.points.is_empty() {
        curves.push(marginal);
    }
    let path = run.join("curves.png");
    write_line_chart(
        &path,
        "Learning curves",
        "step",
        "bits/dim",
        &curves,
        800,
        500,
    )?;
    Ok(path)
}
