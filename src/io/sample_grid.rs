//! The sample grids a training run writes as it goes: one grid per temperature from the same
//! noise, so that the grids differ only by the temperature.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::png_grid::write_png_grid;
use crate::data::batches::{stream_rng, SAMPLE_STREAM};
use crate::error::{GlowError, Result};
use crate::likelihood::to_pixels;
use crate::model::glow::Glow;
use crate::tensor_ops::non_finite_samples;

/// Samples in each grid (8 x 8).
const SAMPLES: usize = 64;
/// The temperatures of the grids, one grid each.
const TEMPERATURES: [f64; 2] = [0.7, 1.0];
/// Samples decoded for one set of grids.
pub const SAMPLE_GRID_IMAGES: usize = SAMPLES * TEMPERATURES.len();

/// Writes `dir/step-<step>-t<T>.png`, 64 samples of `model` at temperatures 0.7 and 1.0 from the
/// same noise (seeded by `(seed, step)`), the samples of a class-conditional model cycling
/// through its classes. Samples whose decoding overflowed are reported through `warn` (they show
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
    let n = SAMPLES;
    let classes = match model.config().n_classes {
        0 => None,
        k => Some(model.one_hot(&(0..n).map(|i| i % k).collect::<Vec<_>>(), device)?),
    };
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
        write_png_grid(&path, to_pixels(x, model.config().n_bits), 8, 1)?;
        written.push(path);
    }
    Ok(written)
}
