//! JPEG decoding as Pillow decodes it, and so as openai/glow's and the PyTorch peers' data
//! loaders saw their JPEG images (CelebA's among them): libjpeg-turbo's decoder with libjpeg's
//! defaults, the accurate integer inverse DCT (`JDCT_ISLOW`) and fancy (triangle-filter) chroma
//! upsampling. The decoder is mozjpeg's, which is libjpeg-turbo's; tests/data_folders.rs checks
//! its pixels against Pillow's own decoding (libjpeg-turbo 3.1) of files with every chroma
//! subsampling, progressive, arithmetic-coded, grey and CMYK files, and a file with damaged
//! entropy-coded data.
//!
//! What a file gives follows Pillow, by its number of components: one is grey; three (YCbCr or
//! RGB) are RGB; four (CMYK or YCCK) are CMYK in Adobe's inverted convention, which Pillow always
//! assumes, made RGB as Pillow's `convert("RGB")` makes it: with `c, m, y, k` the CMYK values
//! (`255 − stored`) and `n = 255 − k`, `R = n − round(c·n / 255)` (Pillow's `MULDIV255`), and G
//! and B likewise from `m` and `y`. Data that ends before the image's end marker is refused, as
//! Pillow refuses a truncated file (libjpeg would fake the marker and give grey for what is
//! missing); damage that libjpeg only warns about decodes as libjpeg decodes it, as in Pillow.

use std::any::Any;
use std::cell::Cell;
use std::io::{self, BufRead, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::{DynamicImage, GrayImage, RgbImage};
use mozjpeg::{ColorSpace, Decompress};

use super::decode::{truncated, DecodeFailure, DecodeSize};

/// Decodes the JPEG file `source` holds into grey or RGB pixels, as Pillow would (see the module
/// doc). Once the header is read, `admit` sees the image's size and may refuse it: the most
/// bytes decoding holds are the decoded samples and beside them, for a progressive or multi-scan
/// file, the whole image's DCT coefficients (2 bytes a sample, over the blocks padded to 16 x 16
/// pixels): `3 · padded width · padded height · components`.
pub(crate) fn decode<R: BufRead>(
    source: R,
    admit: impl FnOnce(DecodeSize) -> Result<(), String>,
) -> Result<DynamicImage, DecodeFailure> {
    let ended = Cell::new(false);
    let reader = EndIsAnError {
        source,
        ended: &ended,
    };
    // libjpeg's fatal errors unwind out of mozjpeg (its `unwinding` error manager, which does not
    // call the panic hook); they end here as errors.
    let decoded = catch_unwind(AssertUnwindSafe(|| decode_unguarded(reader, admit)))
        .unwrap_or_else(|payload| Err(DecodeFailure::Unreadable(unwind_message(payload))));
    match decoded {
        Err(DecodeFailure::Unreadable(_)) if ended.get() => {
            Err(DecodeFailure::Unreadable(truncated()))
        }
        decoded => decoded,
    }
}

/// [`decode`]'s work, which libjpeg's fatal errors unwind out of.
fn decode_unguarded<R: BufRead>(
    reader: R,
    admit: impl FnOnce(DecodeSize) -> Result<(), String>,
) -> Result<DynamicImage, DecodeFailure> {
    let unreadable = |e: io::Error| DecodeFailure::Unreadable(e.to_string());
    let decompress = Decompress::new_reader(reader).map_err(unreadable)?;
    let components = decompress.components().len();
    let colour_space = match components {
        1 => ColorSpace::JCS_GRAYSCALE,
        3 => ColorSpace::JCS_RGB,
        4 => ColorSpace::JCS_CMYK,
        n => {
            return Err(DecodeFailure::Unreadable(format!(
                "a JPEG image with {n} colour components (only 1, 3 and 4 are images)"
            )))
        }
    };
    let (width, height) = decompress.size();
    let padded = |side: usize| side.div_ceil(16) as u64 * 16;
    admit(DecodeSize {
        width: width as u32,
        height: height as u32,
        bytes: 3 * padded(width) * padded(height) * components as u64,
    })
    .map_err(DecodeFailure::Refused)?;
    let mut started = decompress.to_colorspace(colour_space).map_err(unreadable)?;
    let mut samples: Vec<u8> = started.read_scanlines().map_err(unreadable)?;
    started.finish().map_err(unreadable)?;
    let (width, height) = (width as u32, height as u32);
    let image = match components {
        1 => GrayImage::from_raw(width, height, samples).map(DynamicImage::ImageLuma8),
        3 => RgbImage::from_raw(width, height, samples).map(DynamicImage::ImageRgb8),
        _ => {
            inverted_cmyk_to_rgb(&mut samples);
            RgbImage::from_raw(width, height, samples).map(DynamicImage::ImageRgb8)
        }
    };
    image.ok_or_else(|| {
        DecodeFailure::Unreadable("libjpeg returned fewer samples than the image holds".to_string())
    })
}

/// Turns libjpeg's CMYK samples (as stored: Adobe's inverted values), 4 a pixel, into RGB ones, 3
/// a pixel, in place (the vector is shortened), as Pillow reads them (`255 − stored`) and
/// converts them (`R = n − MULDIV255(c, n)` with `n = 255 − k`; see the module doc).
fn inverted_cmyk_to_rgb(samples: &mut Vec<u8>) {
    let pixels = samples.len() / 4;
    for pixel in 0..pixels {
        let [stored_c, stored_m, stored_y, stored_k] =
            [0, 1, 2, 3].map(|i| u32::from(samples[4 * pixel + i]));
        let n = stored_k;
        for (channel, stored) in [stored_c, stored_m, stored_y].into_iter().enumerate() {
            // Pillow's MULDIV255(a, b): round(a·b / 255) for 8-bit a and b.
            let product = (255 - stored) * n + 128;
            let scaled = ((product >> 8) + product) >> 8;
            samples[3 * pixel + channel] = (n - scaled) as u8;
        }
    }
    samples.truncate(3 * pixels);
}

/// The message of a libjpeg error that unwound out of mozjpeg.
fn unwind_message(payload: Box<dyn Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "libjpeg failed without a message".to_string())
}

/// The JPEG file's bytes for libjpeg, whose end is an error (and sets `ended`): at the end of the
/// data libjpeg fakes an end-of-image marker and decodes what it has, where Pillow refuses a
/// truncated file. A whole file is read up to its end marker and never past it.
struct EndIsAnError<'a, R> {
    source: R,
    ended: &'a Cell<bool>,
}

impl<R: BufRead> Read for EndIsAnError<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let count = available.len().min(buf.len());
        buf[..count].copy_from_slice(&available[..count]);
        self.consume(count);
        Ok(count)
    }
}

impl<R: BufRead> BufRead for EndIsAnError<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let data = self.source.fill_buf()?;
        if data.is_empty() {
            self.ended.set(true);
            // Not `UnexpectedEof`, which mozjpeg's source manager takes for the end of the file.
            return Err(io::Error::other("the JPEG data ends early"));
        }
        Ok(data)
    }

    fn consume(&mut self, amount: usize) {
        self.source.consume(amount);
    }
}
