//! Writing a batch of images as one PNG grid.

use std::path::Path;

use burn::tensor::Tensor;

use super::atomic::write_atomic;
use crate::error::{GlowError, Result};
use crate::tensor_ops::to_f64_vec;

/// Writes 8-bit images `[N, C, H, W]` (values `0..=255` as floats; C = 1 or 3) as a PNG grid of
/// `columns` images per row with a 1-pixel gap.
pub fn write_png_grid(path: &Path, images: Tensor<4>, columns: usize) -> Result<()> {
    let [n, c, h, w] = images.dims();
    if c != 1 && c != 3 {
        return Err(GlowError::shape(
            "PNG grid",
            format!("images have {c} channels; a PNG grid needs 1 (grey) or 3 (RGB)"),
        ));
    }
    let columns = columns.clamp(1, n.max(1));
    let rows = n.div_ceil(columns);
    let (gw, gh) = (columns * (w + 1) + 1, rows * (h + 1) + 1);
    let values = to_f64_vec(images);
    let mut canvas = vec![0u8; gw * gh * c];
    for (i, image) in values.chunks(c * h * w).enumerate() {
        let (top, left) = ((i / columns) * (h + 1) + 1, (i % columns) * (w + 1) + 1);
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let v = image[ch * h * w + y * w + x].round().clamp(0.0, 255.0) as u8;
                    canvas[((top + y) * gw + left + x) * c + ch] = v;
                }
            }
        }
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, gw as u32, gh as u32);
        encoder.set_color(if c == 1 {
            png::ColorType::Grayscale
        } else {
            png::ColorType::Rgb
        });
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| GlowError::file(path, format!("PNG encoding failed: {e}")))?;
        writer
            .write_image_data(&canvas)
            .map_err(|e| GlowError::file(path, format!("PNG encoding failed: {e}")))?;
    }
    write_atomic(path, &bytes)
}
