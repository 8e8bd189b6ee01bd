//! Writing a batch of images as one PNG grid (or as one PNG each), and laying images out for a
//! grid.

use std::path::Path;

use burn::tensor::{Int, Tensor, TensorData};

use super::atomic::write_atomic;
use crate::error::{GlowError, Result};
use crate::tensor_ops::to_f64_vec;

/// Writes 8-bit images `[N, C, H, W]` (values `0..=255` as floats; C = 1 or 3) as a PNG grid of
/// `columns` images per row with a 1-pixel gap, the whole grid enlarged `zoom` times (each pixel
/// a `zoom x zoom` block).
pub fn write_png_grid(path: &Path, images: Tensor<4>, columns: usize, zoom: usize) -> Result<()> {
    let [n, c, h, w] = images.dims();
    if zoom == 0 || zoom > 64 {
        return Err(GlowError::Config(format!(
            "zoom {zoom} must be between 1 and 64"
        )));
    }
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
                    canvas[((top + y) * gw + left + x) * c + ch] =
                        to_byte(image[ch * h * w + y * w + x]);
                }
            }
        }
    }
    let (canvas, gw, gh) = enlarge(&canvas, gw, gh, c, zoom);
    let bytes = encode_png(&canvas, gw, gh, c)
        .map_err(|e| GlowError::file(path, format!("PNG encoding failed: {e}")))?;
    write_atomic(path, &bytes)
}

/// Each of the 8-bit images `[N, C, H, W]` (values `0..=255` as floats; C = 1 or 3) as its own
/// PNG file's bytes, `W x H` pixels, grey or RGB, values rounded as [`write_png_grid`] rounds
/// them.
pub fn png_images(images: Tensor<4>) -> Result<Vec<Vec<u8>>> {
    let [_, c, h, w] = images.dims();
    if c != 1 && c != 3 {
        return Err(GlowError::shape(
            "PNG image",
            format!("images have {c} channels; a PNG needs 1 (grey) or 3 (RGB)"),
        ));
    }
    let values = to_f64_vec(images);
    values
        .chunks(c * h * w)
        .map(|image| {
            // CHW planes to the interleaved rows a PNG holds.
            let interleaved: Vec<u8> = (0..h * w)
                .flat_map(|p| (0..c).map(move |ch| to_byte(image[ch * h * w + p])))
                .collect();
            encode_png(&interleaved, w, h, c)
                .map_err(|e| GlowError::shape("PNG image", format!("PNG encoding failed: {e}")))
        })
        .collect()
}

/// An 8-bit value given as a float, rounded and clamped to `0..=255` (NaN gives 0).
fn to_byte(v: f64) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// The bytes of a PNG file of an interleaved 8-bit `width x height` image of 1 (grey) or 3 (RGB)
/// channels.
fn encode_png(
    canvas: &[u8],
    width: usize,
    height: usize,
    channels: usize,
) -> std::result::Result<Vec<u8>, png::EncodingError> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width as u32, height as u32);
        encoder.set_color(if channels == 1 {
            png::ColorType::Grayscale
        } else {
            png::ColorType::Rgb
        });
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(canvas)?;
    }
    Ok(bytes)
}

/// Reorders `variants` blocks of `n` images each (block `v` holds variant `v` of images
/// `0..n`, as the latent-space operations return them) so that the variants of each image are
/// consecutive: `[image 0 variant 0, image 0 variant 1, ..., image 1 variant 0, ...]`, a grid of
/// one row per image when written with `variants` columns.
pub fn rows_per_image(images: Tensor<4>, variants: usize) -> Result<Tensor<4>> {
    let total = images.dims()[0];
    if variants == 0 || !total.is_multiple_of(variants) {
        return Err(GlowError::shape(
            "rows_per_image",
            format!("{total} images are not {variants} equal blocks of variants"),
        ));
    }
    let n = total / variants;
    let order: Vec<i64> = (0..n)
        .flat_map(|i| (0..variants).map(move |v| (v * n + i) as i64))
        .collect();
    let index = Tensor::<1, Int>::from_data(TensorData::new(order, [total]), &images.device());
    Ok(images.select(0, index))
}

/// `images` followed by blank (zero) images up to a whole number of rows of `columns`, so that
/// whatever is appended after them in a grid starts a new row.
pub fn pad_to_full_rows(images: Tensor<4>, columns: usize) -> Tensor<4> {
    let [n, c, h, w] = images.dims();
    let columns = columns.max(1);
    let blank = n.div_ceil(columns) * columns - n;
    if blank == 0 {
        return images;
    }
    let pad = Tensor::<4>::zeros([blank, c, h, w], &images.device());
    Tensor::cat(vec![images, pad], 0)
}

/// Nearest-neighbour enlargement of an interleaved `width x height x channels` image.
fn enlarge(
    canvas: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    zoom: usize,
) -> (Vec<u8>, usize, usize) {
    if zoom == 1 {
        return (canvas.to_vec(), width, height);
    }
    let (zw, zh) = (width * zoom, height * zoom);
    let mut out = Vec::with_capacity(zw * zh * channels);
    for y in 0..zh {
        for x in 0..zw {
            let at = ((y / zoom) * width + x / zoom) * channels;
            out.extend_from_slice(&canvas[at..at + channels]);
        }
    }
    (out, zw, zh)
}
