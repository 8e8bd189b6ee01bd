//! Whether two models describe the same images: the same shape and bit depth, so that their
//! samples can share one grid and their bits per dimension be compared.

use crate::error::{GlowError, Result};
use crate::model::config::GlowConfig;

/// Checks that `other` (named `other_name` in the error) models images of the shape and bit
/// depth of `reference`.
pub fn check_same_images(
    reference: &GlowConfig,
    other: &GlowConfig,
    other_name: &str,
) -> Result<()> {
    if reference.image == other.image && reference.n_bits == other.n_bits {
        return Ok(());
    }
    let describe = |c: &GlowConfig| {
        format!(
            "{}x{}x{} images at {} bits",
            c.image.channels, c.image.height, c.image.width, c.n_bits
        )
    };
    Err(GlowError::Config(format!(
        "{other_name} models {}, unlike the first model ({}); compare models of one dataset",
        describe(other),
        describe(reference)
    )))
}
