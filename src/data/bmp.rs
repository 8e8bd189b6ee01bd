//! Windows BMP files decoded as Pillow decodes them (`BmpImagePlugin`), and so as torchvision's
//! `ImageFolder` saw them.
//!
//! Headers of 12 bytes (OS/2 1.x) and of 40 to 124 bytes (Windows 3 to 5, OS/2 2.x); rows
//! bottom-up, or top-down for a negative height; 1, 4 and 8 bits a pixel through a palette
//! (beyond which an index is black), plain or run-length encoded (RLE8, RLE4: runs clipped at
//! the row's end, deltas and row ends filling with index 0, absolute runs padded to 16 bits; data
//! that leaves pixels unset is refused, as Pillow refuses it); 16, 24 and 32 bits of blue, green,
//! red (and a fourth byte, ignored), or the bit fields Pillow accepts (5-6-5 and 5-5-5 at 16
//! bits, byte-aligned ones at 24 and 32). A field of `n` bits holding `c` gives
//! `⌊c · 255 / (2^n − 1)⌋`, as Pillow's `BGR;15` and `BGR;16` unpack it. A palette whose entries
//! are the grey ramp (entry `i` is `(i, i, i)`; with two entries, black and white) makes a grey
//! image whose samples are the indices, as Pillow reads such files as mode `L` or `1`; any other
//! palette makes an RGB image. Data that ends before the image does is refused.
//!
//! Pillow 12 reads an RLE4 absolute run of an odd length as one pixel short (and then refuses the
//! file); Pillow 13, like the format's definition, reads it whole, and so does glowflow.

use std::io::{BufRead, Seek, SeekFrom};

use image::{DynamicImage, GrayImage, RgbImage};

use super::decode::{read_bytes, DecodeFailure, DecodeSize};

/// The colour masks of BI_BITFIELDS that Pillow reads, by bits a pixel: red, green, blue (at 32
/// bits, whatever the alpha mask, which is never read; all zero means blue, green, red).
const BIT_FIELDS: [(u16, [u32; 3]); 8] = [
    (32, [0xFF_0000, 0xFF00, 0xFF]),
    (32, [0xFF00_0000, 0xFF_0000, 0xFF00]),
    (32, [0xFF00_0000, 0xFF00, 0xFF]),
    (32, [0xFF, 0xFF00, 0xFF_0000]),
    (32, [0, 0, 0]),
    (24, [0xFF_0000, 0xFF00, 0xFF]),
    (16, [0xF800, 0x7E0, 0x1F]),
    (16, [0x7C00, 0x3E0, 0x1F]),
];

/// The masks of 16-bit pixels without bit fields: 5-5-5.
const RGB555: [u32; 3] = [0x7C00, 0x3E0, 0x1F];
/// The masks of 24- and 32-bit pixels without bit fields: blue, green, red in byte order.
const BGR: [u32; 3] = [0xFF_0000, 0xFF00, 0xFF];

/// How a file stores its pixels.
enum Layout {
    /// Indices into `palette` (RGB triples) of `bits` each, run-length encoded (`rle`: `Some(4)`
    /// or `Some(8)`) or not; `grey` when the palette is the grey ramp.
    Indexed {
        bits: u16,
        rle: Option<u16>,
        palette: Vec<[u8; 3]>,
        grey: bool,
    },
    /// Little-endian pixels of `bits` whose red, green and blue are under `masks`.
    Fields { bits: u16, masks: [u32; 3] },
}

/// What a BMP file's headers and palette say.
struct Header {
    width: u32,
    height: u32,
    /// Whether the rows are stored top first (a negative height), not bottom first.
    top_down: bool,
    /// Where the pixel data starts in the file (0: after what the header took).
    offset: u64,
    layout: Layout,
}

/// Decodes the BMP file `source` holds into grey or RGB pixels, as Pillow would (see the module
/// doc). Once the header is read, `admit` sees the image's size and the bytes decoding holds
/// (the indices and the RGB samples, `4 · width · height`), and may refuse it.
pub(crate) fn decode<R: BufRead + Seek>(
    mut source: R,
    admit: impl FnOnce(DecodeSize) -> Result<(), String>,
) -> Result<DynamicImage, DecodeFailure> {
    let unreadable = DecodeFailure::Unreadable;
    let Header {
        width,
        height,
        top_down,
        offset,
        layout,
    } = read_header(&mut source).map_err(unreadable)?;
    let pixels = u64::from(width) * u64::from(height);
    admit(DecodeSize {
        width,
        height,
        bytes: 4 * pixels,
    })
    .map_err(DecodeFailure::Refused)?;
    if pixels == 0 {
        return Err(unreadable("the image has no pixels".to_string()));
    }
    match offset {
        0 => source.stream_position(),
        offset => source.seek(SeekFrom::Start(offset)),
    }
    .map_err(|e| unreadable(e.to_string()))?;
    let (columns, rows) = (width as usize, height as usize);
    let top_row_first = |mut samples: Vec<u8>, channels: usize| {
        if !top_down {
            reverse_rows(&mut samples, columns * channels);
        }
        samples
    };
    let image = match layout {
        Layout::Indexed {
            bits,
            rle,
            palette,
            grey,
        } => {
            let indices = match rle {
                Some(rle) => run_length_decoded(&mut source, rle, columns, rows),
                None => plain_indices(&mut source, bits, columns, rows),
            }
            .map_err(unreadable)?;
            let indices = top_row_first(indices, 1);
            if grey {
                // The ramp's entries, or for an index beyond it the index itself (Pillow's L).
                let grey = |i: u8| palette.get(usize::from(i)).map_or(i, |entry| entry[0]);
                let samples = indices.into_iter().map(grey).collect();
                GrayImage::from_raw(width, height, samples).map(DynamicImage::ImageLuma8)
            } else {
                let colour = |i: u8| palette.get(usize::from(i)).copied().unwrap_or([0; 3]);
                let samples = indices.into_iter().flat_map(colour).collect();
                RgbImage::from_raw(width, height, samples).map(DynamicImage::ImageRgb8)
            }
        }
        Layout::Fields { bits, masks } => {
            let samples =
                field_samples(&mut source, bits, masks, columns, rows).map_err(unreadable)?;
            RgbImage::from_raw(width, height, top_row_first(samples, 3))
                .map(DynamicImage::ImageRgb8)
        }
    };
    image.ok_or_else(|| unreadable("fewer samples than the image holds".to_string()))
}

/// Reads the file header, the bitmap header, the bit fields and the palette at the start of
/// `source`, or says why they are none that Pillow reads.
fn read_header(source: &mut impl BufRead) -> Result<Header, String> {
    let file_header = read_bytes(source, 14)?;
    if &file_header[..2] != b"BM" {
        return Err("no BMP signature (BM)".to_string());
    }
    let mut offset = u64::from(u32_at(&file_header, 10));
    let header_size = u32_at(&read_bytes(source, 4)?, 0);
    if ![12, 40, 52, 56, 64, 108, 124].contains(&header_size) {
        return Err(format!(
            "a BMP header of {header_size} bytes, none that Pillow reads"
        ));
    }
    let header = read_bytes(source, header_size as usize - 4)?;
    let u16_at = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]);
    let (width, height, top_down, bits, compression, colours, entry_size) = if header_size == 12 {
        let (width, height) = (u32::from(u16_at(0)), u32::from(u16_at(2)));
        (width, height, false, u16_at(6), 0, 0, 3)
    } else {
        // A negative height (its top byte 0xFF) means top-down rows.
        let stored_height = u32_at(&header, 4);
        let top_down = header[7] == 0xFF;
        let height = if top_down {
            stored_height.wrapping_neg()
        } else {
            stored_height
        };
        let (width, compression, colours) =
            (u32_at(&header, 0), u32_at(&header, 12), u32_at(&header, 28));
        (width, height, top_down, u16_at(10), compression, colours, 4)
    };
    if ![1, 4, 8, 16, 24, 32].contains(&bits) {
        return Err(format!("{bits} bits a pixel, not 1, 4, 8, 16, 24 or 32"));
    }
    let layout = match compression {
        0..=2 if bits <= 8 => {
            let rle = match compression {
                1 => Some(8),
                2 => Some(4),
                _ => None,
            };
            if let Some(rle) = rle.filter(|&rle| rle != bits) {
                return Err(format!(
                    "run-length encoding for {rle} bits in a file of {bits} bits a pixel"
                ));
            }
            let colours = if colours == 0 { 1 << bits } else { colours };
            if !(1..=65_536).contains(&colours) {
                return Err(format!("a palette of {colours} colours"));
            }
            if offset == 14 + u64::from(header_size) {
                // The data's offset points at the palette: Pillow reads the pixels after it.
                offset += u64::from(colours) * entry_size as u64;
            }
            let table = read_bytes(source, colours as usize * entry_size)?;
            let palette: Vec<[u8; 3]> = table
                .chunks_exact(entry_size)
                .map(|bgr| [bgr[2], bgr[1], bgr[0]])
                .collect();
            let grey = match palette.as_slice() {
                [black, white] => *black == [0; 3] && *white == [255; 3],
                entries => entries
                    .iter()
                    .enumerate()
                    .all(|(i, entry)| i < 256 && *entry == [i as u8; 3]),
            };
            Layout::Indexed {
                bits,
                rle,
                palette,
                grey,
            }
        }
        0 if bits == 16 => Layout::Fields {
            bits,
            masks: RGB555,
        },
        0 => Layout::Fields { bits, masks: BGR },
        3 => {
            let masks = if header.len() >= 48 {
                [36, 40, 44].map(|at| u32_at(&header, at))
            } else {
                let fields = read_bytes(source, 12)?;
                [0, 4, 8].map(|at| u32_at(&fields, at))
            };
            if !BIT_FIELDS.contains(&(bits, masks)) {
                return Err(format!(
                    "bit fields {masks:#x?} at {bits} bits a pixel, a layout Pillow does not read"
                ));
            }
            let masks = if masks == [0; 3] { BGR } else { masks };
            Layout::Fields { bits, masks }
        }
        other => {
            return Err(format!(
                "compression {other}, none that Pillow reads in a file of {bits} bits a pixel"
            ))
        }
    };
    Ok(Header {
        width,
        height,
        top_down,
        offset,
        layout,
    })
}

/// Reverses the order of the rows of `row` bytes that `samples` holds, in place.
fn reverse_rows(samples: &mut [u8], row: usize) {
    let rows = samples.len() / row;
    for top in 0..rows / 2 {
        let (upper, lower) = samples.split_at_mut((rows - 1 - top) * row);
        upper[top * row..(top + 1) * row].swap_with_slice(&mut lower[..row]);
    }
}

/// The little-endian `u32` at `at` in `bytes`.
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The bytes of one stored row of `width` pixels of `bits`: padded to 4 bytes.
fn row_bytes(width: usize, bits: u16) -> usize {
    (width * usize::from(bits)).div_ceil(32) * 4
}

/// The palette indices of uncompressed rows of `bits` (1, 4 or 8; the first pixel in the high
/// bits), in file order.
fn plain_indices(
    source: &mut impl BufRead,
    bits: u16,
    width: usize,
    height: usize,
) -> Result<Vec<u8>, String> {
    let per_byte = 8 / usize::from(bits);
    let mask = ((1u16 << bits) - 1) as u8;
    let mut indices = Vec::with_capacity(width * height);
    for _ in 0..height {
        let row = read_bytes(source, row_bytes(width, bits))?;
        indices.extend((0..width).map(|x| {
            let shift = 8 - usize::from(bits) * (x % per_byte + 1);
            (row[x / per_byte] >> shift) & mask
        }));
    }
    Ok(indices)
}

/// The RGB samples of uncompressed rows of little-endian pixels of `bits` (16, 24 or 32), in
/// file order: each of red, green and blue is the field under its mask, `c` of `n` bits giving
/// `⌊c · 255 / (2^n − 1)⌋`.
fn field_samples(
    source: &mut impl BufRead,
    bits: u16,
    masks: [u32; 3],
    width: usize,
    height: usize,
) -> Result<Vec<u8>, String> {
    let size = usize::from(bits / 8);
    let mut samples = Vec::with_capacity(3 * width * height);
    for _ in 0..height {
        let row = read_bytes(source, row_bytes(width, bits))?;
        for pixel in row.chunks_exact(size).take(width) {
            let mut word = [0; 4];
            word[..size].copy_from_slice(pixel);
            let value = u32::from_le_bytes(word);
            samples.extend(masks.map(|mask| {
                let shift = mask.trailing_zeros();
                let field = (value & mask) >> shift;
                (u64::from(field) * 255 / u64::from(mask >> shift)) as u8
            }));
        }
    }
    Ok(samples)
}

/// The palette indices of the RLE8 or RLE4 (`rle`) data `source` holds from its position on, in
/// file order, as Pillow's `BmpRleDecoder` reads them (see the module doc): a count and a byte
/// repeat the byte's index (RLE4: its two nibbles in turn), clipped at the row's end; a zero
/// count escapes: 0 ends the row (the rest index 0), 1 ends the image, 2 moves right and up by
/// the next two bytes (the pixels passed index 0), and a larger number `n` is followed by `n`
/// indices (RLE4: two a byte) and a byte of padding when the file position is odd.
fn run_length_decoded(
    source: &mut (impl BufRead + Seek),
    rle: u16,
    width: usize,
    height: usize,
) -> Result<Vec<u8>, String> {
    let total = width * height;
    let mut indices: Vec<u8> = Vec::with_capacity(total);
    let mut x = 0;
    while indices.len() < total {
        let Some(pair) = read_bytes(source, 2).ok() else {
            break;
        };
        let (count, byte) = (usize::from(pair[0]), pair[1]);
        if count > 0 {
            let count = count.min(width.saturating_sub(x));
            let nibbles = [byte >> 4, byte & 0x0F];
            indices.extend((0..count).map(|i| if rle == 4 { nibbles[i % 2] } else { byte }));
            x += count;
            continue;
        }
        match byte {
            0 => {
                let row_end = indices.len().next_multiple_of(width.max(1));
                indices.resize(row_end, 0);
                x = 0;
            }
            1 => break,
            2 => {
                let Some(delta) = read_bytes(source, 2).ok() else {
                    break;
                };
                let skipped = usize::from(delta[0]) + usize::from(delta[1]) * width;
                indices.resize(indices.len() + skipped, 0);
                x = indices.len() % width.max(1);
            }
            count => {
                let count = usize::from(count);
                let stored = if rle == 4 { count.div_ceil(2) } else { count };
                let Some(bytes) = read_bytes(source, stored).ok() else {
                    break;
                };
                if rle == 4 {
                    let nibbles = bytes.iter().flat_map(|b| [b >> 4, b & 0x0F]);
                    indices.extend(nibbles.take(count));
                } else {
                    indices.extend(bytes);
                }
                x += count;
                let odd = source.stream_position().is_ok_and(|at| at % 2 == 1);
                if odd && read_bytes(source, 1).ok().is_none() {
                    break;
                }
            }
        }
    }
    if indices.len() < total {
        return Err(format!(
            "the run-length encoded data sets {} of the image's {total} pixels",
            indices.len().min(total)
        ));
    }
    indices.truncate(total);
    Ok(indices)
}
