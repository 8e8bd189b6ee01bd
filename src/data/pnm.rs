//! Netpbm's PBM, PGM and PPM files (P1 to P6) decoded as Pillow decodes them
//! (`PpmImagePlugin`), and so as torchvision's `ImageFolder` saw them.
//!
//! A header is the magic number, the width, the height and, but for bitmaps, `maxval` (1 to
//! 65 535), separated by whitespace, with `#` comments to the end of a line; one whitespace byte
//! ends it. Bitmaps (P1 plain, P4 binary, 8 pixels a byte, rows padded to a byte) are grey, a set
//! bit black (0) and a clear one white (255). Greymaps (P2, P5) are grey and pixmaps (P3, P6) RGB;
//! binary samples are bytes when `maxval < 256`, else big-endian pairs. A sample `v` becomes
//! `round(v / maxval · 255)` in double precision, ties to even (Python's `round`), so `maxval`
//! 255 keeps it; a binary sample above `maxval` gives 255 and a plain one is an error, as in
//! Pillow. Pillow reads a greymap with `maxval` above 255 into 32-bit mode `I`, which its
//! `convert` clips to 255 (a white image); glowflow scales it as a pixmap's samples instead.
//! Data that ends before the image does is refused (Pillow: "image file is truncated" or "not
//! enough image data"); what follows the image is never read.

use std::io::{BufRead, Read};

use image::{DynamicImage, GrayImage, RgbImage};

use super::decode::{read_bytes, truncated, DecodeFailure, DecodeSize};

/// Decodes the Netpbm file `source` holds into grey or RGB pixels, as Pillow would (see the
/// module doc). Once the header is read, `admit` sees the image's size and the bytes decoding
/// holds (the samples as read and as decoded), and may refuse it.
pub(crate) fn decode<R: BufRead>(
    mut source: R,
    admit: impl FnOnce(DecodeSize) -> Result<(), String>,
) -> Result<DynamicImage, DecodeFailure> {
    let unreadable = DecodeFailure::Unreadable;
    let magic = token(&mut source).map_err(unreadable)?;
    let (plain, channels) = match magic.as_slice() {
        b"P1" => (true, 0),
        b"P2" => (true, 1),
        b"P3" => (true, 3),
        b"P4" => (false, 0),
        b"P5" => (false, 1),
        b"P6" => (false, 3),
        other => {
            return Err(unreadable(format!(
                "magic number {:?}, not one of P1 to P6 (PAM's P7 is not read)",
                String::from_utf8_lossy(other)
            )))
        }
    };
    let width = header_number(&mut source, "width")?;
    let height = header_number(&mut source, "height")?;
    // Bitmaps have no maxval; their samples are 0 or 1.
    let maxval = match channels {
        0 => 1,
        _ => match header_number(&mut source, "maxval")? {
            maxval @ 1..=65_535 => maxval,
            maxval => {
                return Err(unreadable(format!(
                    "maxval {maxval}, not between 1 and 65535"
                )))
            }
        },
    };
    let out_channels = channels.max(1);
    let count = u64::from(width) * u64::from(height) * out_channels as u64;
    // The samples as read (a binary file's, 1 or 2 bytes each) and as decoded.
    let read_bytes = if maxval > 255 { 2 } else { 1 };
    admit(DecodeSize {
        width,
        height,
        bytes: count * (1 + read_bytes),
    })
    .map_err(DecodeFailure::Refused)?;
    let count = count as usize;
    let samples = match (plain, channels) {
        (true, 0) => plain_bits(&mut source, count),
        (false, 0) => binary_bits(&mut source, width as usize, height as usize),
        (true, _) => plain_samples(&mut source, count, maxval),
        (false, _) => binary_samples(&mut source, count, maxval),
    }
    .map_err(unreadable)?;
    let image = match out_channels {
        1 => GrayImage::from_raw(width, height, samples).map(DynamicImage::ImageLuma8),
        _ => RgbImage::from_raw(width, height, samples).map(DynamicImage::ImageRgb8),
    };
    image.ok_or_else(|| unreadable("fewer samples than the image holds".to_string()))
}

/// The whitespace of Netpbm headers and plain data, as Pillow's `PpmImagePlugin` has it.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The longest token read, as in Pillow (a sample or side has at most 10 digits).
const MAX_TOKEN: usize = 10;

/// The next byte of `source`, or `None` at its end.
fn next_byte(source: &mut impl BufRead) -> Result<Option<u8>, String> {
    let byte = source
        .fill_buf()
        .map_err(|e| e.to_string())?
        .first()
        .copied();
    if byte.is_some() {
        source.consume(1);
    }
    Ok(byte)
}

/// The next token of `source`: whitespace skipped, then the bytes up to the next whitespace,
/// which is consumed too; a `#` comment, to the end of its line, is skipped wherever it starts
/// (inside a token too, as in Pillow). An empty token means the data ended.
fn token(source: &mut impl BufRead) -> Result<Vec<u8>, String> {
    let mut token = Vec::new();
    let mut in_comment = false;
    while let Some(byte) = next_byte(source)? {
        if in_comment {
            in_comment = !matches!(byte, b'\n' | b'\r');
        } else if byte == b'#' {
            in_comment = true;
        } else if is_space(byte) {
            if !token.is_empty() {
                break;
            }
        } else if token.len() == MAX_TOKEN {
            return Err(format!(
                "a token longer than {MAX_TOKEN} bytes ({}...)",
                String::from_utf8_lossy(&token)
            ));
        } else {
            token.push(byte);
        }
    }
    Ok(token)
}

/// The decimal number `token` spells, or why it is none.
fn number(token: &[u8]) -> Result<u32, String> {
    std::str::from_utf8(token)
        .ok()
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| {
            format!(
                "{:?} is not a non-negative number below 2^32",
                String::from_utf8_lossy(token)
            )
        })
}

/// The header's next number, `what` it is naming it in errors.
fn header_number(source: &mut impl BufRead, what: &str) -> Result<u32, DecodeFailure> {
    let token = token(source).map_err(DecodeFailure::Unreadable)?;
    if token.is_empty() {
        return Err(DecodeFailure::Unreadable(format!(
            "the header ends before its {what} (a truncated file)"
        )));
    }
    number(&token).map_err(|e| DecodeFailure::Unreadable(format!("the {what}: {e}")))
}

/// A sample `value` of a file of `maxval` in 8 bits, as Pillow scales it (see the module doc).
fn scaled(value: u32, maxval: u32) -> u8 {
    if maxval == 255 {
        value.min(255) as u8
    } else {
        (f64::from(value) / f64::from(maxval) * 255.0)
            .round_ties_even()
            .min(255.0) as u8
    }
}

/// The `count` pixels of a plain bitmap: `0` white, `1` black, whitespace and comments between
/// them or not.
fn plain_bits(source: &mut impl BufRead, count: usize) -> Result<Vec<u8>, String> {
    let mut pixels = Vec::with_capacity(count);
    let mut in_comment = false;
    while pixels.len() < count {
        let byte = next_byte(source)?.ok_or_else(truncated)?;
        match byte {
            _ if in_comment => in_comment = !matches!(byte, b'\n' | b'\r'),
            b'#' => in_comment = true,
            b'0' => pixels.push(255),
            b'1' => pixels.push(0),
            _ if is_space(byte) => {}
            _ => {
                return Err(format!(
                    "{:?} in a plain bitmap's data, where only 0 and 1 are pixels",
                    char::from(byte)
                ))
            }
        }
    }
    Ok(pixels)
}

/// The pixels of a binary bitmap of `width` x `height`: rows of 8 pixels a byte, the first in
/// the high bit, padded to a byte; a set bit black.
fn binary_bits(source: &mut impl Read, width: usize, height: usize) -> Result<Vec<u8>, String> {
    let mut pixels = Vec::with_capacity(width * height);
    for _ in 0..height {
        let row = read_bytes(source, width.div_ceil(8))?;
        let black = |x: usize| (row[x / 8] >> (7 - x % 8)) & 1 == 1;
        pixels.extend((0..width).map(|x| if black(x) { 0 } else { 255 }));
    }
    Ok(pixels)
}

/// The `count` samples of a plain greymap or pixmap of `maxval`, scaled to 8 bits.
fn plain_samples(source: &mut impl BufRead, count: usize, maxval: u32) -> Result<Vec<u8>, String> {
    let mut samples = Vec::with_capacity(count);
    while samples.len() < count {
        let token = token(source)?;
        if token.is_empty() {
            return Err(truncated());
        }
        let value = number(&token).map_err(|e| format!("a sample: {e}"))?;
        if value > maxval {
            return Err(format!("a sample of {value}, above the maxval {maxval}"));
        }
        samples.push(scaled(value, maxval));
    }
    Ok(samples)
}

/// The `count` samples of a binary greymap or pixmap of `maxval` (bytes, or big-endian pairs
/// above 255), scaled to 8 bits.
fn binary_samples(source: &mut impl Read, count: usize, maxval: u32) -> Result<Vec<u8>, String> {
    let width = if maxval < 256 { 1 } else { 2 };
    let bytes = read_bytes(source, count * width)?;
    Ok(if width == 1 {
        bytes.iter().map(|&v| scaled(v.into(), maxval)).collect()
    } else {
        bytes
            .chunks_exact(2)
            .map(|pair| scaled(u16::from_be_bytes([pair[0], pair[1]]).into(), maxval))
            .collect()
    })
}
