//! The sample grids a training run writes as it goes: one grid per temperature from the same
//! noise, so that the grids differ only by the temperature. A class-conditional model's samples
//! cycle through its classes with one class per column ([`ClassGrid`]), as `glowflow sample`
//! lays them out without `--class`.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::png_grid::write_png_grid;
use crate::data::batches::{stream_rng, SAMPLE_STREAM};
use crate::error::{GlowError, Result};
use crate::likelihood::to_pixels;
use crate::model::glow::Glow;
use crate::tensor_ops::non_finite_samples;

/// Samples in each grid (8 x 8, or whole rows of classes for a class-conditional model).
const SAMPLES: usize = 64;
/// Columns of a grid (of an unconditional model).
const COLUMNS: usize = 8;
/// The temperatures of the grids, one grid each.
const TEMPERATURES: [f64; 2] = [0.7, 1.0];
/// The most classes a grid shows one per column; more cycle through its rows.
const MAX_CLASS_COLUMNS: usize = 16;

/// How samples of a class-conditional model are laid out when no class is chosen: sample `i`
/// is of class `i mod K`, in a grid of a multiple of `K` columns (the classes repeated to fill
/// 8 columns where `K < 8`), so that every column holds one class; a model of more than 16
/// classes keeps the grid's columns, its classes cycling through the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassGrid {
    /// The class of each sample.
    pub labels: Vec<usize>,
    /// Columns of the grid.
    pub columns: usize,
}

impl ClassGrid {
    /// At least `n` samples of `n_classes` classes (whole rows of classes), for a grid of
    /// `columns` columns where the classes do not fit one per column.
    pub fn new(n_classes: usize, n: usize, columns: usize) -> Self {
        let columns = match n_classes {
            k if k <= MAX_CLASS_COLUMNS => k * (COLUMNS / k).max(1),
            _ => columns,
        };
        let n = n.div_ceil(columns) * columns;
        ClassGrid {
            labels: (0..n).map(|i| i % n_classes).collect(),
            columns,
        }
    }
}

/// The samples of a model's grid and its columns: 64 in 8 columns, or a class-conditional
/// model's [`ClassGrid`] of at least 64.
fn grid_of(model: &Glow) -> (usize, usize, Option<Vec<usize>>) {
    match model.config().n_classes {
        0 => (SAMPLES, COLUMNS, None),
        k => {
            let grid = ClassGrid::new(k, SAMPLES, COLUMNS);
            (grid.labels.len(), grid.columns, Some(grid.labels))
        }
    }
}

/// Samples decoded for one set of a model's grids (every temperature).
pub fn sample_grid_images(model: &Glow) -> usize {
    grid_of(model).0 * TEMPERATURES.len()
}

/// Writes `dir/step-<step>-t<T>.png`, 64 samples of `model` at temperatures 0.7 and 1.0 from the
/// same noise (seeded by `(seed, step)`), a class-conditional model's one class per column
/// ([`ClassGrid`]). Samples whose decoding overflowed are reported through `warn` (they show
/// as black and white). Returns the files written.
pub fn write_sample_grids(
    dir: &Path,
    model: &Glow,
    seed: u64,
    step: u64,
    device: &Device,
    warn: &mut dyn FnMut(String),
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| GlowError::io(dir, e))?;
    let (n, columns, labels) = grid_of(model);
    let classes = labels
        .map(|labels| model.one_hot(&labels, device))
        .transpose()?;
    let mut written = Vec::new();
    for temperature in TEMPERATURES {
        let x = model.sample(
            n,
            temperature,
            classes.as_ref(),
            &mut stream_rng(seed, SAMPLE_STREAM, step),
        )?;
        let path = dir.join(format!("step-{step:08}-t{temperature:.1}.png"));
        let overflowed = non_finite_samples(&x);
        if overflowed > 0 {
            warn(format!(
                "{overflowed} of {n} samples at temperature {temperature} overflowed when decoded \
                 ({})",
                path.display()
            ));
        }
        write_png_grid(&path, to_pixels(x, model.config().n_bits), columns, 1)?;
        written.push(path);
    }
    Ok(written)
}
