//! Every reader of outside input, fed mutated valid files: none panics, hangs or allocates
//! without bound, and every failure is an error that names the file.
//!
//! Each reader starts from valid files (its seeds) and reads `GLOWFLOW_FUZZ_CASES` mutations of
//! them (default 150 per reader; set it higher for a long run, e.g.
//! `GLOWFLOW_FUZZ_CASES=20000 cargo test --release --test fuzz -- --nocapture`). The mutations are
//! seeded, so a failure repeats; the failing input is written beside the test's scratch files
//! and its path printed. The process runs under an address-space limit, so an unbounded
//! allocation aborts the test instead of passing unseen.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Once;
use std::time::Duration;

use burn::tensor::Device;
use common::{scratch_dir, tiny_config, tiny_train_config, write_idx_dataset};
use glowflow::data::folder::{load_image_files, FolderOptions};
use glowflow::{CouplingKind, GlowError, PermutationKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The longest one input may take to be read before the reader counts as hung.
const HANG_LIMIT: Duration = Duration::from_secs(20);

/// The address space the test process may use; far above what any of these readers needs.
const ADDRESS_SPACE_LIMIT: u64 = 16 << 30;

fn cases() -> usize {
    std::env::var("GLOWFLOW_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150)
}

fn limit_address_space() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let limit = libc::rlimit {
            rlim_cur: ADDRESS_SPACE_LIMIT,
            rlim_max: ADDRESS_SPACE_LIMIT,
        };
        // SAFETY: setrlimit only reads the struct passed to it.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
    });
}

/// Values that break parsers more often than random bytes do: lengths and counts at their
/// limits, signs and zero.
const INTERESTING_U32: [u32; 8] = [0, 1, 0x7f, 0xff, 0xffff, 0x7fff_ffff, 0x8000_0000, u32::MAX];

/// One to four random edits of `seed`: bit flips, interesting bytes and words (both byte
/// orders), truncation, deletion, duplication and insertion of random bytes.
fn mutate(seed: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = bytes.len();
        let at = if len == 0 {
            0
        } else {
            rng.random_range(0..len)
        };
        match rng.random_range(0..8) {
            0 if len > 0 => bytes[at] ^= 1 << rng.random_range(0..8),
            1 if len > 0 => bytes[at] = [0, 0xff, 0x7f, 0x80, b'-', b'9'][rng.random_range(0..6)],
            2 if len >= 4 => {
                let at = rng.random_range(0..=len - 4);
                let word = INTERESTING_U32[rng.random_range(0..INTERESTING_U32.len())];
                let word = if rng.random() {
                    word.to_be_bytes()
                } else {
                    word.to_le_bytes()
                };
                bytes[at..at + 4].copy_from_slice(&word);
            }
            3 => bytes.truncate(at),
            4 if len > 0 => {
                let end = (at + rng.random_range(1..=16)).min(len);
                bytes.drain(at..end);
            }
            5 if len > 0 => {
                let end = (at + rng.random_range(1..=64)).min(len);
                let chunk = bytes[at..end].to_vec();
                let to = rng.random_range(0..=len);
                bytes.splice(to..to, chunk);
            }
            _ => {
                let junk: Vec<u8> = (0..rng.random_range(1..=16))
                    .map(|_| rng.random())
                    .collect();
                bytes.splice(at..at, junk);
            }
        }
    }
    bytes
}

/// What the mutated inputs of one reader did.
#[derive(Debug, Default)]
struct Tally {
    tried: usize,
    accepted: usize,
    rejected: usize,
}

/// Feeds `reader` the seeds themselves (each must be accepted) and then `cases()` mutations of
/// them, each written to `target` first (which holds the first seed again afterwards). Every
/// input must be read within [`HANG_LIMIT`] without a panic, and every error must name `target`.
fn fuzz<F>(name: &str, seeds: &[Vec<u8>], target: &Path, reader: F) -> Tally
where
    F: Fn(&Path) -> glowflow::Result<()> + Send + Sync + Clone + 'static,
{
    limit_address_space();
    let mut rng = StdRng::seed_from_u64(
        name.bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
    );
    let mut tally = Tally::default();
    let inputs = seeds
        .iter()
        .cloned()
        .map(|s| (true, s))
        .chain((0..cases()).map(|i| (false, mutate(&seeds[i % seeds.len()], &mut rng))));
    for (case, (is_seed, bytes)) in inputs.enumerate() {
        std::fs::write(target, &bytes).expect("write the input");
        let (sender, receiver) = mpsc::channel();
        let (read, path) = (reader.clone(), target.to_path_buf());
        std::thread::spawn(move || {
            let _ = sender.send(read(&path));
        });
        let keep = |why: &str| -> ! {
            let kept = target.with_extension(format!("failing-{case}"));
            let _ = std::fs::write(&kept, &bytes);
            panic!(
                "{name}: case {case} {why}; the input is kept in {}",
                kept.display()
            );
        };
        let outcome = match receiver.recv_timeout(HANG_LIMIT) {
            Ok(outcome) => outcome,
            Err(mpsc::RecvTimeoutError::Timeout) => keep("hung"),
            Err(mpsc::RecvTimeoutError::Disconnected) => keep("panicked"),
        };
        tally.tried += 1;
        match outcome {
            Ok(()) => tally.accepted += 1,
            Err(_) if is_seed => keep("is a valid seed but was rejected"),
            Err(err) => {
                let message = err.to_string();
                if !message.contains(&target.display().to_string()) {
                    keep(&format!(
                        "gave an error that does not name the file: {message}"
                    ));
                }
                tally.rejected += 1;
            }
        }
    }
    // The reader's file is left valid, for whatever reads it next.
    std::fs::write(target, &seeds[0]).expect("restore the seed");
    println!(
        "fuzz {name}: {} inputs ({} seeds), {} read, {} rejected with an error naming the file",
        tally.tried,
        seeds.len(),
        tally.accepted - seeds.len(),
        tally.rejected
    );
    tally
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

#[test]
fn idx_readers_survive_mutated_files() {
    let dir = scratch_dir("fuzz-idx");
    write_idx_dataset(&dir, 6, 2, 4);
    let images = std::fs::read(dir.join("train-images-idx3-ubyte")).expect("idx");
    let labels = std::fs::read(dir.join("train-labels-idx1-ubyte")).expect("idx");
    let read_images = |p: &Path| glowflow::data::idx::read_idx_images(p).map(|_| ());
    let read_labels = |p: &Path| glowflow::data::idx::read_idx_labels(p).map(|_| ());
    fuzz(
        "idx images",
        std::slice::from_ref(&images),
        &dir.join("images.idx"),
        read_images,
    );
    fuzz(
        "idx labels",
        &[labels],
        &dir.join("labels.idx"),
        read_labels,
    );
    // Gzipped: mutations of the compressed stream, and compressions of mutated files.
    let mut rng = StdRng::seed_from_u64(3);
    let mut seeds = vec![gzip(&images)];
    seeds.extend((0..8).map(|_| gzip(&mutate(&images, &mut rng))));
    let gz = dir.join("images.idx.gz");
    let tally = fuzz("idx images (gzip)", &seeds[..1], &gz, read_images);
    assert_eq!(tally.accepted + tally.rejected, tally.tried);
    for (i, seed) in seeds[1..].iter().enumerate() {
        std::fs::write(&gz, seed).expect("write");
        if let Err(err) = read_images(&gz) {
            assert!(
                err.to_string().contains(&gz.display().to_string()),
                "{i}: {err}"
            );
        }
    }
}

#[test]
fn a_gzip_bomb_idx_file_is_refused_without_decompressing_it() {
    // Announces one 4x4 image (16 bytes) but decompresses to 64 MiB: the reader stops after the
    // announced bytes and 1 MiB more (before, it decompressed everything into memory).
    let dir = scratch_dir("fuzz-idx-bomb");
    let mut idx = vec![0, 0, 8, 3];
    for d in [1u32, 4, 4] {
        idx.extend(d.to_be_bytes());
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&idx).expect("gzip");
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        encoder.write_all(&zeros).expect("gzip");
    }
    let path = dir.join("bomb-images-idx3-ubyte.gz");
    std::fs::write(&path, encoder.finish().expect("gzip")).expect("write");
    let err = glowflow::data::idx::read_idx_images(&path).expect_err("a bomb");
    let message = err.to_string();
    assert!(
        message.contains(&path.display().to_string())
            && message.contains("at least 1048576 extra bytes"),
        "{message}"
    );
}

#[test]
fn cifar_reader_survives_mutated_files() {
    let dir = scratch_dir("fuzz-cifar");
    let mut rng = StdRng::seed_from_u64(4);
    let batch: Vec<u8> = (0..3)
        .flat_map(|i| {
            let mut record = vec![i as u8];
            record.extend((0..3072).map(|_| rng.random::<u8>()));
            record
        })
        .collect();
    fuzz(
        "cifar-10 batch",
        &[batch],
        &dir.join("data_batch_1.bin"),
        |p| glowflow::data::cifar::read_cifar_batch(p).map(|_| ()),
    );
}

#[test]
fn downsampled_imagenet_reader_survives_mutated_archives() {
    // numpy's own archives (tests/fixtures/make_downsampled_imagenet.py): stored with int64
    // labels and a mean, deflated with big-endian int32 labels, stored with uint16 labels.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/downsampled-imagenet");
    let seeds: Vec<Vec<u8>> = [
        "Imagenet8_train_npz/train_data_batch_1.npz",
        "Imagenet8_train_npz/train_data_batch_2.npz",
        "Imagenet8_val_npz/val_data.npz",
    ]
    .iter()
    .map(|name| std::fs::read(fixture.join(name)).expect("fixture"))
    .collect();
    let dir = scratch_dir("fuzz-downsampled-imagenet");
    fuzz(
        "downsampled imagenet archive",
        &seeds,
        &dir.join("train_data_batch_1.npz"),
        |p| glowflow::data::downsampled_imagenet::read_npz_batch(p).map(|_| ()),
    );
}

/// A PNG of `width x height` pixels of the given colour type and bit depth, a checkerboard of
/// the lowest and highest sample values (so that every conversion to 8 bits is exact: 0 and 255),
/// alpha opaque; plain or Adam7-interlaced. Written here from the PNG specification (chunks,
/// filter type 0, zlib), so that the decoder under test is checked against an independent
/// encoder.
fn png(
    width: u32,
    height: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    interlaced: bool,
) -> Vec<u8> {
    let (code, samples) = match color {
        png::ColorType::Grayscale => (0u8, 1),
        png::ColorType::Rgb => (2, 3),
        png::ColorType::Indexed => (3, 1),
        png::ColorType::GrayscaleAlpha => (4, 2),
        png::ColorType::Rgba => (6, 4),
    };
    let bits = depth as usize;
    let top = ((1u32 << bits) - 1) as u16;
    let max = if color == png::ColorType::Indexed {
        1
    } else {
        top
    };
    let has_alpha = matches!(color, png::ColorType::GrayscaleAlpha | png::ColorType::Rgba);
    let pixel = |x: u32, y: u32| -> Vec<u16> {
        let value = if (x + y).is_multiple_of(2) { 0 } else { max };
        (0..samples)
            .map(|s| {
                if has_alpha && s == samples - 1 {
                    top
                } else {
                    value
                }
            })
            .collect()
    };
    // Adam7's passes as (x0, y0, dx, dy); a plain image is one pass over every pixel.
    let passes: &[(u32, u32, u32, u32)] = if interlaced {
        &[
            (0, 0, 8, 8),
            (4, 0, 8, 8),
            (0, 4, 4, 8),
            (2, 0, 4, 4),
            (0, 2, 2, 4),
            (1, 0, 2, 2),
            (0, 1, 1, 2),
        ]
    } else {
        &[(0, 0, 1, 1)]
    };
    let mut raw = Vec::new();
    for &(x0, y0, dx, dy) in passes {
        let xs: Vec<u32> = (x0..width).step_by(dx as usize).collect();
        if xs.is_empty() {
            continue;
        }
        for y in (y0..height).step_by(dy as usize) {
            let mut row = RowPacker::new(bits);
            for &x in &xs {
                for v in pixel(x, y) {
                    row.push(v);
                }
            }
            raw.push(0); // filter type None
            raw.extend(row.finish());
        }
    }
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zlib.write_all(&raw).expect("zlib");
    let idat = zlib.finish().expect("zlib");
    let mut header = Vec::new();
    header.extend(width.to_be_bytes());
    header.extend(height.to_be_bytes());
    header.extend([bits as u8, code, 0, 0, u8::from(interlaced)]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8; 4], data: &[u8]| {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    };
    chunk(b"IHDR", &header);
    if color == png::ColorType::Indexed {
        chunk(b"PLTE", &[0, 0, 0, 255, 255, 255]);
    }
    chunk(b"IDAT", &idat);
    chunk(b"IEND", &[]);
    out
}

/// Packs samples of `bits` bits into a PNG row (big-endian within bytes, padded at the end).
struct RowPacker {
    bits: usize,
    bytes: Vec<u8>,
    used: usize,
}

impl RowPacker {
    fn new(bits: usize) -> Self {
        RowPacker {
            bits,
            bytes: Vec::new(),
            used: 0,
        }
    }

    fn push(&mut self, value: u16) {
        match self.bits {
            16 => self.bytes.extend(value.to_be_bytes()),
            8 => self.bytes.push(value as u8),
            bits => {
                if self.used.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                let shift = 8 - bits - self.used % 8;
                *self.bytes.last_mut().expect("a byte") |= (value as u8) << shift;
                self.used += bits;
            }
        }
    }

    fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// A BMP file of `width` x `height` top-row-first `pixels` of 1 channel (8 bits through the grey
/// ramp, plain or, with `rle`, run-length encoded, a run a pixel) or 3 (24 bits), written from
/// the format's definition: rows bottom-up, blue first, padded to 4 bytes.
fn bmp(width: usize, height: usize, channels: usize, pixels: &[u8], rle: bool) -> Vec<u8> {
    let mut data = Vec::new();
    for row in pixels.chunks_exact(width * channels).rev() {
        if rle {
            data.extend(row.iter().flat_map(|&v| [1, v]));
            data.extend([0, 0]);
        } else {
            data.extend(row.chunks_exact(channels).flat_map(|px| px.iter().rev()));
            data.resize(data.len().next_multiple_of(4), 0);
        }
    }
    let palette: Vec<u8> = match channels {
        1 => (0..=255u8).flat_map(|i| [i, i, i, 0]).collect(),
        _ => Vec::new(),
    };
    let offset = 14 + 40 + palette.len();
    let mut file = b"BM".to_vec();
    for value in [(offset + data.len()) as u32, 0, offset as u32, 40] {
        file.extend(value.to_le_bytes());
    }
    file.extend((width as i32).to_le_bytes());
    file.extend((height as i32).to_le_bytes());
    file.extend(1u16.to_le_bytes());
    file.extend((8 * channels as u16).to_le_bytes());
    for value in [u32::from(rle), data.len() as u32, 2835, 2835, 0, 0] {
        file.extend(value.to_le_bytes());
    }
    file.extend(palette);
    file.extend(data);
    file
}

/// Every colour type and bit depth PNG allows, plain and interlaced, and JPEGs, lossless WebPs,
/// TIFFs, Netpbm files (binary and plain) and BMPs (and a grey RLE8 one) in grey and colour: each is read, with its channels and (but for the JPEGs) the checkerboard's
/// exact 0/255 values.
fn image_seeds() -> Vec<(String, Vec<u8>, usize)> {
    use png::{BitDepth::*, ColorType::*};
    let mut seeds = Vec::new();
    let kinds: [(png::ColorType, &[png::BitDepth], usize); 5] = [
        (Grayscale, &[One, Two, Four, Eight, Sixteen], 1),
        (Rgb, &[Eight, Sixteen], 3),
        (Indexed, &[One, Two, Four, Eight], 3),
        (GrayscaleAlpha, &[Eight, Sixteen], 1),
        (Rgba, &[Eight, Sixteen], 3),
    ];
    for (color, depths, channels) in kinds {
        for &depth in depths {
            for interlaced in [false, true] {
                let name = format!(
                    "{color:?} {} bits{}",
                    depth as u8,
                    if interlaced { " interlaced" } else { "" }
                );
                seeds.push((
                    format!("{name}.png"),
                    png(5, 3, color, depth, interlaced),
                    channels,
                ));
            }
        }
    }
    for (color, channels) in [
        (image::ExtendedColorType::L8, 1),
        (image::ExtendedColorType::Rgb8, 3),
    ] {
        let pixels: Vec<u8> = (0..5 * 3 * channels)
            .map(|i| if (i / channels) % 2 == 0 { 0 } else { 255 })
            .collect();
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 100)
            .encode(&pixels, 5, 3, color)
            .expect("jpeg");
        seeds.push((format!("{color:?}.jpg"), jpeg, channels));
        let mut webp = Vec::new();
        image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
            .encode(&pixels, 5, 3, color)
            .expect("webp");
        // WebP has no grey colour type: a grey image decodes as RGB.
        seeds.push((format!("{color:?}.webp"), webp, 3));
        let mut tiff = std::io::Cursor::new(Vec::new());
        image::ImageEncoder::write_image(
            image::codecs::tiff::TiffEncoder::new(&mut tiff),
            &pixels,
            5,
            3,
            color,
        )
        .expect("tiff");
        seeds.push((format!("{color:?}.tif"), tiff.into_inner(), channels));
        seeds.push((
            format!("{color:?}.bmp"),
            bmp(5, 3, channels, &pixels, false),
            channels,
        ));
        if channels == 1 {
            seeds.push((
                format!("{color:?} rle8.bmp"),
                bmp(5, 3, channels, &pixels, true),
                channels,
            ));
        }
        // Netpbm, binary and plain, written from the format's definition.
        let magic = if channels == 1 {
            ["P5", "P2"]
        } else {
            ["P6", "P3"]
        };
        let header = |magic: &str| format!("{magic}\n# a comment\n5 3\n255\n").into_bytes();
        let plain: Vec<String> = pixels.iter().map(|v| v.to_string()).collect();
        seeds.push((
            format!("{color:?}.pnm"),
            [header(magic[0]), pixels.clone()].concat(),
            channels,
        ));
        seeds.push((
            format!("{color:?} plain.pnm"),
            [header(magic[1]), plain.join(" ").into_bytes()].concat(),
            channels,
        ));
    }
    seeds
}

#[test]
fn every_png_colour_type_and_bit_depth_jpeg_webp_tiff_netpbm_and_bmp_is_read_exactly() {
    let dir = scratch_dir("fuzz-image-kinds");
    for (name, bytes, channels) in image_seeds() {
        let extension = name.rsplit('.').next().expect("an extension");
        let path = dir.join(format!("image.{extension}"));
        std::fs::write(&path, &bytes).expect("write");
        let load = load_image_files(std::slice::from_ref(&path), &FolderOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(load.dataset.shape, [channels, 3, 5], "{name}");
        if extension != "jpg" {
            let want: Vec<u8> = (0..channels)
                .flat_map(|_| (0..15).map(|i| if (i % 5 + i / 5) % 2 == 0 { 0 } else { 255 }))
                .collect();
            assert_eq!(load.dataset.pixels, want, "{name}");
        }
    }
}

#[test]
fn image_reader_survives_mutated_corrupt_huge_and_bomb_files() {
    let dir = scratch_dir("fuzz-images");
    let read =
        |p: &Path| load_image_files(&[p.to_path_buf()], &FolderOptions::default()).map(|_| ());
    let seeds = image_seeds();
    let of_format = |extension: &str| -> Vec<Vec<u8>> {
        seeds
            .iter()
            .filter(|s| s.0.ends_with(extension))
            .map(|s| s.1.clone())
            .collect()
    };
    let (pngs, jpegs, webps, tiffs, netpbms, bmps) = (
        of_format(".png"),
        of_format(".jpg"),
        of_format(".webp"),
        of_format(".tif"),
        of_format(".pnm"),
        of_format(".bmp"),
    );
    fuzz("png images", &pngs, &dir.join("image.png"), read);
    fuzz("jpeg images", &jpegs, &dir.join("image.jpg"), read);
    fuzz("webp images", &webps, &dir.join("image.webp"), read);
    fuzz("tiff images", &tiffs, &dir.join("image.tif"), read);
    fuzz("netpbm images", &netpbms, &dir.join("image.pnm"), read);
    fuzz("bmp images", &bmps, &dir.join("image.bmp"), read);

    // Each is written as special.EXTENSION, the extension of `what`'s format.
    let rejected_as = |extension: &str, bytes: &[u8], what: &str, fact: &str| {
        let path = dir.join(format!("special.{extension}"));
        std::fs::write(&path, bytes).expect("write");
        let err = read(&path).expect_err(what);
        let message = err.to_string();
        assert!(
            message.contains(&path.display().to_string()) && message.contains(fact),
            "{what}: {message}"
        );
    };
    let rejected = |bytes: &[u8], what: &str, fact: &str| rejected_as("png", bytes, what, fact);
    rejected(b"", "a zero-byte file", "not a readable PNG");
    let small = png(5, 3, png::ColorType::Rgb, png::BitDepth::Eight, false);
    rejected(
        &small[..small.len() / 2],
        "a truncated file",
        "not a readable PNG",
    );
    // A header claiming 100000 x 100000 pixels: refused by the dimension limit, nothing decoded.
    let mut huge = small.clone();
    huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&huge[12..29]);
    huge[29..33].copy_from_slice(&crc.to_be_bytes());
    rejected(
        &huge,
        "huge dimensions",
        "larger than the 16384x16384 accepted",
    );
    // A decompression bomb: a valid 12000 x 12000 RGBA PNG of zeros (about 600 KB) that would
    // decode to 576 MB, above the decoding limit.
    rejected(
        &bomb(12_000),
        "a decompression bomb",
        "550 MiB, more than the 512 MiB allowed",
    );

    // JPEG headers claiming more than is decoded: refused once the header is read.
    let rejected = |bytes: &[u8], what: &str, fact: &str| rejected_as("jpg", bytes, what, fact);
    let jpeg = &jpegs[1];
    let sized = |height: u16, width: u16| {
        // The baseline frame header: FF C0, length (2 bytes), precision, height, width.
        let frame = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("a baseline frame header");
        let mut bytes = jpeg.clone();
        bytes[frame + 5..frame + 7].copy_from_slice(&height.to_be_bytes());
        bytes[frame + 7..frame + 9].copy_from_slice(&width.to_be_bytes());
        bytes
    };
    rejected(
        &sized(3, 20_000),
        "a JPEG 20000 wide",
        "larger than the 16384x16384",
    );
    // 9000 x 9000 RGB is 243 MB of pixels; with a progressive file's coefficients beside them,
    // up to three times that.
    rejected(
        &sized(9_000, 9_000),
        "a JPEG 9000 x 9000",
        "more than the 512 MiB allowed",
    );
    rejected(b"", "a zero-byte JPEG", "truncated");
    rejected(
        &jpeg[..jpeg.len() - 2],
        "a JPEG without its end marker",
        "truncated",
    );

    // BMP and Netpbm headers claiming more than is decoded: refused before anything is allocated.
    let rle = bmp(5, 3, 1, &[0; 15], true);
    let sized = |width: i32, height: i32| {
        let mut bytes = rle.clone();
        bytes[18..22].copy_from_slice(&width.to_le_bytes());
        bytes[22..26].copy_from_slice(&height.to_le_bytes());
        bytes
    };
    rejected_as(
        "bmp",
        &sized(20_000, 3),
        "a BMP 20000 wide",
        "larger than the 16384x16384",
    );
    rejected_as(
        "bmp",
        &sized(12_000, -12_000),
        "a top-down RLE8 BMP of 12000 x 12000 in 1 KB",
        "more than the 512 MiB allowed",
    );
    rejected_as(
        "pgm",
        b"P5 16000 16000 255\n",
        "a PGM of 16000 x 16000 without data",
        "truncated",
    );
    rejected_as(
        "ppm",
        b"P3 16384 16384 255\n1 2 3",
        "a plain PPM of 16384 x 16384",
        "more than the 512 MiB allowed",
    );
}

/// A valid PNG of `side x side` black RGBA pixels: a few hundred KB that decode to `4·side²`
/// bytes.
fn bomb(side: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().expect("header");
    let mut stream = writer.stream_writer().expect("stream");
    let row = vec![0u8; 4 * side as usize];
    for _ in 0..side {
        stream.write_all(&row).expect("row");
    }
    stream.finish().expect("finish");
    drop(writer);
    out
}

/// The CRC-32 of PNG chunks (ISO 3309), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn celeba_attribute_reader_survives_mutated_files() {
    let dir = scratch_dir("fuzz-celeba");
    let text = "3\n5_o_Clock_Shadow Smiling Young\n000001.jpg -1  1  1\n000002.jpg  1 -1  1\n000003.jpg -1 -1 -1\n";
    fuzz(
        "celeba attributes",
        &[text.as_bytes().to_vec()],
        &dir.join("list_attr_celeba.txt"),
        |p| glowflow::data::celeba::read_celeba_attributes(p).map(|_| ()),
    );
}

#[test]
fn config_readers_survive_mutated_files() {
    let dir = scratch_dir("fuzz-configs");
    let config = tiny_config(2, CouplingKind::Affine, PermutationKind::InvConv, true);
    fuzz(
        "config.json",
        &[config.to_json().into_bytes()],
        &dir.join("config.json"),
        |p| glowflow::GlowConfig::load(p).map(|_| ()),
    );
    let train = tiny_train_config(&dir);
    let path = dir.join("train.json");
    train.save(&path).expect("save");
    let seed = std::fs::read(&path).expect("read");
    fuzz("train.json", &[seed], &path, |p| {
        glowflow::train::config::TrainConfig::load(p).map(|_| ())
    });
    let metrics = b"step,train_bpd,test_bpd,lr,grad_norm,images_per_s\n1,7.5,,1e-4,3.2,100\n2,7.4,7.6,1e-4,3.1,101\n";
    fuzz(
        "metrics.csv",
        &[metrics.to_vec()],
        &dir.join("metrics.csv"),
        |p| glowflow::train::metrics::MetricsFile::read(p).map(|_| ()),
    );
}

/// A saved tiny model (perturbed, so every value matters) in `dir`.
fn saved_model(dir: &Path) -> glowflow::Glow {
    let device = Device::flex();
    let config = tiny_config(2, CouplingKind::Affine, PermutationKind::InvConv, true);
    let model = common::perturb(config.init(&device).expect("valid"), 0.05, 1);
    glowflow::save_model(&model, dir).expect("save");
    model
}

#[test]
fn model_and_checkpoint_readers_survive_mutated_weights() {
    let dir = scratch_dir("fuzz-weights");
    let model_dir = dir.join("model");
    saved_model(&model_dir);
    let weights = model_dir.join(glowflow::io::model_dir::WEIGHTS_FILE);
    let seed = std::fs::read(&weights).expect("weights");
    let load = {
        let model_dir = model_dir.clone();
        move |_: &Path| glowflow::load_model(&model_dir, &Device::flex()).map(|_| ())
    };
    fuzz("model.safetensors", &[seed], &weights, load);

    // A checkpoint: its state.json and one of its weights files.
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("dir");
    write_idx_dataset(&data, 16, 8, 8);
    let run = dir.join("run");
    let out = common::glowflow(
        &[
            "train",
            "--data",
            data.to_str().expect("utf-8"),
            "--out",
            run.to_str().expect("utf-8"),
            "--steps",
            "1",
        ]
        .into_iter()
        .chain(common::TINY_RUN)
        .collect::<Vec<_>>(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checkpoint = glowflow::train::checkpoint::list_checkpoints(&run)
        .expect("list")
        .pop()
        .expect("one");
    let config = glowflow::GlowConfig::load(&run.join("config.json")).expect("config");
    for file in ["state.json", "moment2.safetensors"] {
        let path = checkpoint.join(file);
        let seed = std::fs::read(&path).expect("read");
        let (checkpoint, config) = (checkpoint.clone(), config.clone());
        fuzz(&format!("checkpoint {file}"), &[seed], &path, move |_| {
            let device = Device::flex();
            glowflow::train::checkpoint::load_checkpoint(
                &checkpoint,
                &config,
                &device,
                &device.clone().autodiff(),
            )
            .map(|_| ())
        });
    }
}

#[test]
fn latent_files_and_direction_caches_survive_mutation() {
    let dir = scratch_dir("fuzz-latents");
    let model = saved_model(&dir.join("model"));
    let device = Device::flex();
    let x = common::normal([2, 2, 4, 4], 0.2, 5, &device);
    let (latents, _) = model.encode(x, None).expect("encode");
    let path = dir.join("latents.safetensors");
    let mut meta = BTreeMap::new();
    meta.insert("n_with".to_string(), "3".to_string());
    meta.insert("n_without".to_string(), "4".to_string());
    glowflow::io::latent_file::save_latents(&path, &model, &latents, &meta).expect("save");
    let seed = std::fs::read(&path).expect("read");
    {
        let model = model.clone();
        fuzz(
            "latent file",
            std::slice::from_ref(&seed),
            &path,
            move |p| {
                glowflow::io::latent_file::load_latents(p, &model, &Device::flex()).map(|_| ())
            },
        );
    }
    // A corrupt direction cache is recomputed, never trusted: the call succeeds, and whatever it
    // returns decodes to finite images.
    let cache = dir.join("direction.safetensors");
    let key = BTreeMap::new();
    let fallback = latents.clone();
    fuzz("direction cache", &[seed], &cache, move |p| {
        let fresh = fallback.clone();
        let got = glowflow::latent::attribute::cached_direction(p, &model, &key, move || {
            Ok((fresh, glowflow::latent::attribute::DirectionSums::default()))
        })?;
        let (x, _) = model.decode(&got.direction, None)?;
        if glowflow::tensor_ops::non_finite_samples(&x) > 0 {
            return Err(GlowError::Config(format!(
                "{}: a cached direction decoded to non-finite images",
                p.display()
            )));
        }
        Ok(())
    });
}

#[test]
fn a_latent_file_beyond_the_range_of_f32_is_refused_and_such_a_cache_recomputed() {
    // Found by the long fuzz run: a finite f64 latent such as 1e300 became an infinity on the
    // f32 device and reached decode.
    let device = Device::flex();
    let config = tiny_config(2, CouplingKind::Affine, PermutationKind::InvConv, true);
    let model = config.init(&device).expect("valid");
    let latents = glowflow::Latents {
        levels: model
            .latent_shapes()
            .into_iter()
            .map(|[c, h, w]| burn::tensor::Tensor::<4>::zeros([2, c, h, w], &device))
            .collect(),
    };
    let dir = scratch_dir("latents-beyond-f32");
    let path = dir.join("latents.safetensors");
    glowflow::io::latent_file::save_latents(&path, &model, &latents, &Default::default())
        .expect("save");
    // The first level's first value, found through the format: replaced by 1e300 (an f64).
    let mut bytes = std::fs::read(&path).expect("read");
    let offset = {
        let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        let view = file.tensor("level.0").expect("level 0");
        view.data().as_ptr() as usize - bytes.as_ptr() as usize
    };
    bytes[offset..offset + 8].copy_from_slice(&1e300f64.to_le_bytes());
    std::fs::write(&path, &bytes).expect("write");
    let err = glowflow::io::latent_file::load_latents(&path, &model, &device)
        .expect_err("1e300 does not fit an f32");
    let message = err.to_string();
    assert!(
        message.contains(&path.display().to_string()) && message.contains("beyond the range"),
        "{message}"
    );
    let fresh = latents.clone();
    let got =
        glowflow::latent::attribute::cached_direction(&path, &model, &Default::default(), || {
            Ok((fresh, glowflow::latent::attribute::DirectionSums::default()))
        })
        .expect("recomputed");
    assert!(
        !got.from_cache,
        "a cache that does not fit is recomputed, not trusted"
    );
}

/// A damaged image cache entry is decoded again, never a failed load: every load of the folder
/// succeeds with the folder's shape, labels, files and skipped files, whatever the entry holds.
/// Its pixels are not checksummed (a check would read the whole entry at every start), so a
/// mutation of pixel bytes alone is mapped as it is; every other one that changes what the entry
/// says (its length, header, counts, folder or skipped images) is caught and decoded again.
#[test]
fn image_cache_entries_survive_mutations() {
    use glowflow::data::folder::{load_image_folder, BadImage};
    use glowflow::data::image_cache::{load_folder, ImageCache};
    let dir = scratch_dir("fuzz-image-cache");
    let folder = dir.join("images");
    std::fs::create_dir_all(folder.join("a")).expect("folder");
    std::fs::create_dir_all(folder.join("b")).expect("folder");
    for (i, name) in ["a/0.png", "a/1.png", "b/0.png"].into_iter().enumerate() {
        image::GrayImage::from_pixel(3, 2, image::Luma([40 * i as u8]))
            .save(folder.join(name))
            .expect("save");
    }
    std::fs::write(folder.join("b/1.png"), b"no png").expect("bad image");
    let options = FolderOptions {
        size: Some(2),
        channels: Some(1),
        on_bad_image: BadImage::Skip,
    };
    let cache = dir.join("cache");
    let decoded = load_image_folder(&folder, &options).expect("decode");
    let first = load_folder(
        &folder,
        &options,
        &ImageCache::In(cache.clone()),
        &mut |_| {},
    )
    .expect("cached");
    assert_eq!(first, decoded);
    let paths = |skipped: &[(std::path::PathBuf, String)]| -> Vec<std::path::PathBuf> {
        skipped.iter().map(|(p, _)| p.clone()).collect()
    };
    fuzz_cache_entry("image cache entry", cache.clone(), move |note| {
        let load = load_folder(&folder, &options, &ImageCache::In(cache.clone()), note)?;
        let same = load.dataset.shape == decoded.dataset.shape
            && load.dataset.len() == decoded.dataset.len()
            && load.dataset.labels == decoded.dataset.labels
            && load.files == decoded.files
            && paths(&load.skipped) == paths(&decoded.skipped);
        Ok((same, load == decoded, format!("{load:?}")))
    });
}

/// A damaged entry of a split of the downsampled ImageNet's archives is read again, never a
/// failed load, as a folder's entry is decoded again ([`image_cache_entries_survive_mutations`]):
/// every load gives the split's shape and labels, and its pixels where the entry was read again.
#[test]
fn archive_cache_entries_survive_mutations() {
    use glowflow::data::dataset::Split;
    use glowflow::data::downsampled_imagenet::load_split;
    use glowflow::data::image_cache::{load_archives, ImageCache};
    let dir = scratch_dir("fuzz-archive-cache");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/downsampled-imagenet");
    let archives = dir.join("archives");
    std::fs::create_dir_all(&archives).expect("folder");
    for name in ["train_data_batch_1.npz", "train_data_batch_2.npz"] {
        std::fs::copy(
            fixture.join("Imagenet8_train_npz").join(name),
            archives.join(name),
        )
        .expect("copy");
    }
    let cache = dir.join("cache");
    let read = load_split(&archives, Split::Train).expect("read");
    let first = load_archives(
        &archives,
        Split::Train,
        &ImageCache::In(cache.clone()),
        &mut |_| {},
    )
    .expect("cached");
    assert_eq!(first, read);
    fuzz_cache_entry("archive cache entry", cache.clone(), move |note| {
        let load = load_archives(
            &archives,
            Split::Train,
            &ImageCache::In(cache.clone()),
            note,
        )?;
        let same =
            load.shape == read.shape && load.len() == read.len() && load.labels == read.labels;
        Ok((same, load == read, format!("{load:?}")))
    });
}

/// Fuzzes the one entry in the cache directory `cache`, which `load` wrote: `load` loads through
/// the cache, handing the cache's notes to its argument, and says whether the load agrees with
/// the data without the cache in what the entry cannot change unnoticed (its shape, labels,
/// files), whether it agrees in everything, and what it loaded. Every mutation must load and
/// agree, and agree in everything when the entry was read again (a note). Prints how many were.
fn fuzz_cache_entry<L>(name: &'static str, cache: std::path::PathBuf, load: L)
where
    L: Fn(&mut dyn FnMut(String)) -> glowflow::Result<(bool, bool, String)>
        + Send
        + Sync
        + Clone
        + 'static,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let entry = std::fs::read_dir(&cache)
        .expect("cache")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "images"))
        .expect("an entry");
    let seed = std::fs::read(&entry).expect("entry");
    let decoded_again = Arc::new(AtomicUsize::new(0));
    let counter = decoded_again.clone();
    let tally = fuzz(name, &[seed], &entry, move |_| {
        let mut notes = 0;
        let (same, identical, loaded) = load(&mut |_| notes += 1)?;
        counter.fetch_add(usize::from(notes > 0), Ordering::Relaxed);
        match same && (notes == 0 || identical) {
            true => Ok(()),
            false => Err(GlowError::Config(format!(
                "a load through the cache gave another dataset: {loaded}"
            ))),
        }
    });
    assert_eq!(tally.rejected, 0);
    println!(
        "{name}: {} of {} inputs decoded again",
        decoded_again.load(Ordering::Relaxed),
        tally.tried
    );
}
