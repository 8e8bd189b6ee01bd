//! How latents and images travel in the API's JSON.
//!
//! - **Latents** of one image: a base64 string (standard alphabet, with padding) of
//!   little-endian `f32` values, the levels in order (`ε₁`, ..., `ε_L`, as
//!   [`Glow::latent_shapes`] lists them), each level's `C × H × W` values in row-major order.
//!   Its length is `4 · Σ_l C_l·H_l·W_l` bytes before encoding (`latent_length` in
//!   `GET /api/models` counts the values).
//! - **Images** the server returns: `data:image/png;base64,...` URLs of 8-bit PNG files (grey or
//!   RGB, the model's size), usable as an `<img>` source as they are.
//! - **Uploaded images**: base64 of an image file of a format image folders read (PNG, JPEG,
//!   WebP, TIFF, Netpbm, BMP), optionally as a `data:` URL.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use burn::tensor::Tensor;

use crate::error::Result;
use crate::io::png_grid::png_images;
use crate::likelihood::to_pixels;
use crate::model::glow::{Glow, Latents};
use crate::tensor_ops::{from_f64, to_f64_vec};

/// Each image's latents of a batch, as the base64 text described in the module doc.
pub fn latents_to_base64(latents: &Latents) -> Vec<String> {
    let n = latents.levels.first().map_or(0, |e| e.dims()[0]);
    let mut bytes: Vec<Vec<u8>> = vec![Vec::new(); n];
    for level in &latents.levels {
        let per_image = level.dims()[1..].iter().product::<usize>();
        let values = to_f64_vec(level.clone());
        for (image, chunk) in bytes.iter_mut().zip(values.chunks(per_image.max(1))) {
            image.extend(chunk.iter().flat_map(|&v| (v as f32).to_le_bytes()));
        }
    }
    bytes.iter().map(|b| STANDARD.encode(b)).collect()
}

/// The latents of one image (a batch of one) from base64 text, for `model`; the error says
/// what is wrong (not base64, the wrong length for this model, a value that is not finite).
pub fn latents_from_base64(model: &Glow, text: &str) -> std::result::Result<Latents, String> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|e| format!("is not base64 ({e})"))?;
    let shapes = model.latent_shapes();
    let total: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
    if bytes.len() != 4 * total {
        return Err(format!(
            "holds {} bytes, but this model's latents are {total} f32 values ({} bytes); send \
             latents this model returned",
            bytes.len(),
            4 * total
        ));
    }
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if let Some(at) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "value {at} is {}; latents must be finite",
            values[at]
        ));
    }
    let device = model.device();
    let mut start = 0;
    let levels = shapes
        .iter()
        .map(|&[c, h, w]| {
            let part: Vec<f64> = values[start..start + c * h * w]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            start += c * h * w;
            from_f64(part, [1, c, h, w], &device)
        })
        .collect();
    Ok(Latents { levels })
}

/// Model-space images `[N, C, H, W]` (values in `[-0.5, 0.5]`) of a model with `n_bits` bits,
/// each as a PNG `data:` URL of its 8-bit pixels ([`to_pixels`]).
pub fn png_data_urls(x: Tensor<4>, n_bits: u32) -> Result<Vec<String>> {
    Ok(png_images(to_pixels(x, n_bits))?
        .iter()
        .map(|png| format!("data:image/png;base64,{}", STANDARD.encode(png)))
        .collect())
}

/// The bytes of an uploaded image sent as base64, with or without a `data:...;base64,` prefix.
pub fn upload_bytes(text: &str) -> std::result::Result<Vec<u8>, String> {
    let body = match text.split_once(";base64,") {
        Some((prefix, body)) if prefix.starts_with("data:") => body,
        _ => text,
    };
    STANDARD
        .decode(body.trim())
        .map_err(|e| format!("is not base64 ({e}); send the file's bytes in base64"))
}
