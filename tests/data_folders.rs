//! Image folders (PNG / JPEG, centre-crop + Pillow's resize, channels, bad images) and the CelebA
//! attribute list: each test writes synthetic files into its own temp directory and checks the
//! shapes, pixels, labels and errors that come back.

use std::path::PathBuf;

use glowflow::data::celeba::read_celeba_attributes;
use glowflow::data::folder::{
    load_image_files, load_image_folder, BadImage, FolderLoad, FolderOptions,
};
use glowflow::data::image_cache::{load_folder, ImageCache};
use glowflow::GlowError;
use image::{GrayImage, Luma, Rgb, RgbImage};

mod common;
use common::{assert_error_mentions, cache_files, TempDir};

/// Saves `image` as `name` in `dir` (format from the extension) and returns its path.
fn save_rgb(dir: &TempDir, name: &str, image: &RgbImage) -> PathBuf {
    let path = dir.path(name);
    image.save(&path).expect("save test image");
    path
}

/// Saves the grey `image` as `name` in `dir` (format from the extension) and returns its path.
fn save_grey(dir: &TempDir, name: &str, image: &GrayImage) -> PathBuf {
    let path = dir.path(name);
    image.save(&path).expect("save test image");
    path
}

/// A `width x height` image of one colour.
fn solid(width: u32, height: u32, colour: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(width, height, Rgb(colour))
}

/// Options that only set what to do with bad images.
fn on_bad(on_bad_image: BadImage) -> FolderOptions {
    FolderOptions {
        on_bad_image,
        ..FolderOptions::default()
    }
}

/// Checks that every sample of channel plane `c` of image `i` is within 3 of `value`
/// (JPEG is lossy).
fn assert_plane_near(load: &FolderLoad, i: usize, c: usize, value: u8) {
    let [_, h, w] = load.dataset.shape;
    let plane = &load.dataset.image(i)[c * h * w..(c + 1) * h * w];
    for &v in plane {
        assert!(
            v.abs_diff(value) <= 3,
            "image {i} channel {c}: {v} not near {value}"
        );
    }
}

#[test]
fn png_and_jpeg_in_one_folder_load_with_the_right_shape_in_name_order() {
    let dir = TempDir::new("mixed");
    let png = RgbImage::from_fn(6, 4, |x, y| Rgb([x as u8, y as u8, 200]));
    save_rgb(&dir, "a.png", &png);
    save_rgb(&dir, "b.jpg", &solid(6, 4, [200, 40, 90]));
    save_rgb(&dir, "c.JPEG", &solid(6, 4, [10, 250, 120]));
    dir.write("notes.txt", b"not an image");
    let load = load_image_folder(&dir.0, &FolderOptions::default()).expect("load folder");
    assert!(load.skipped.is_empty());
    let data = &load.dataset;
    assert_eq!(data.shape, [3, 4, 6]);
    assert_eq!(data.len(), 3);
    assert_eq!((data.labels.clone(), data.n_classes), (None, 0));
    let red: Vec<u8> = (0..4).flat_map(|_| 0..6).collect();
    let green: Vec<u8> = (0..4).flat_map(|y| [y; 6]).collect();
    assert_eq!(data.image(0), [red, green, vec![200; 24]].concat());
    for (c, value) in [200, 40, 90].into_iter().enumerate() {
        assert_plane_near(&load, 1, c, value);
    }
    for (c, value) in [10, 250, 120].into_iter().enumerate() {
        assert_plane_near(&load, 2, c, value);
    }
}

#[test]
fn class_subfolders_of_png_and_jpeg_give_labels() {
    let dir = TempDir::new("classes");
    save_grey(&dir, "cats/x.jpg", &GrayImage::from_pixel(3, 2, Luma([50])));
    save_grey(
        &dir,
        "dogs/y.png",
        &GrayImage::from_pixel(3, 2, Luma([100])),
    );
    save_grey(
        &dir,
        "dogs/z.jpeg",
        &GrayImage::from_pixel(3, 2, Luma([150])),
    );
    let load = load_image_folder(&dir.0, &FolderOptions::default()).expect("load folder");
    assert_eq!(load.dataset.shape, [1, 2, 3]);
    assert_eq!(load.dataset.labels, Some(vec![0, 1, 1]));
    assert_eq!(load.dataset.n_classes, 2);
    for (i, value) in [50, 100, 150].into_iter().enumerate() {
        assert_plane_near(&load, i, 0, value);
    }
}

#[test]
fn two_to_one_image_cropped_to_its_shorter_side_keeps_exactly_its_middle_half() {
    let dir = TempDir::new("crop-2to1");
    // 40 wide, 20 high: the middle half (columns 10..30) red, the outer quarters blue.
    let image = RgbImage::from_fn(40, 20, |x, _| {
        Rgb(if (10..30).contains(&x) {
            [255, 0, 0]
        } else {
            [0, 0, 255]
        })
    });
    save_rgb(&dir, "wide.png", &image);
    let options = FolderOptions {
        size: Some(20),
        ..FolderOptions::default()
    };
    let data = load_image_folder(&dir.0, &options).expect("load").dataset;
    assert_eq!(data.shape, [3, 20, 20]);
    assert_eq!(data.pixels, [vec![255; 400], vec![0; 800]].concat());
}

#[test]
fn resize_then_centre_crop_of_a_tall_image_gives_size_and_keeps_the_centre() {
    let dir = TempDir::new("crop-resize");
    // 60 wide, 120 high: a green 40x40 square in the middle, grey elsewhere. Scaled to 16x32,
    // the crop keeps rows 8..24 of the scaled image (rows 30..90 of the original).
    let image = RgbImage::from_fn(60, 120, |x, y| {
        Rgb(if (10..50).contains(&x) && (40..80).contains(&y) {
            [0, 200, 0]
        } else {
            [128, 128, 128]
        })
    });
    save_rgb(&dir, "tall.png", &image);
    let options = FolderOptions {
        size: Some(16),
        ..FolderOptions::default()
    };
    let data = load_image_folder(&dir.0, &options).expect("load").dataset;
    assert_eq!(data.shape, [3, 16, 16]);
    let at = |c: usize, y: usize, x: usize| data.pixels[c * 256 + y * 16 + x];
    let centre: Vec<u8> = (0..3).map(|c| at(c, 8, 8)).collect();
    assert_eq!(centre, [0, 200, 0]);
    let corner: Vec<u8> = (0..3).map(|c| at(c, 0, 0)).collect();
    assert_eq!(corner, [128, 128, 128]);
}

/// tests/fixtures/pillow: Pillow's own resizes (tests/fixtures/make_pillow.py).
fn pillow_fixture(name: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pillow")
        .join(name)
}

/// A fixture PNG's `[channels, height, width]` and its pixels, interleaved (HWC) and in CHW
/// order.
fn pillow_png(name: &str) -> ([usize; 3], Vec<u8>, Vec<u8>) {
    let image = image::open(pillow_fixture(name)).expect("fixture PNG");
    let channels = usize::from(image.color().channel_count());
    let (width, height) = (image.width() as usize, image.height() as usize);
    let hwc = image.into_bytes();
    let chw = (0..channels)
        .flat_map(|c| hwc.iter().skip(c).step_by(channels).copied())
        .collect();
    ([channels, height, width], hwc, chw)
}

#[test]
fn lanczos_resize_is_pillows_bit_for_bit() {
    use glowflow::data::resample::lanczos;
    let ([_, height, width], source, _) = pillow_png("source-rgb.png");
    // One axis down, the other kept; the other way round; one up and one down.
    for (new_width, new_height) in [(37, 70), (100, 23), (150, 45)] {
        let ([_, h, w], expected, _) =
            pillow_png(&format!("resized-rgb-{new_width}x{new_height}.png"));
        assert_eq!([h, w], [new_height, new_width]);
        let resized = lanczos(&source, [height, width, 3], [new_height, new_width]);
        let differing = resized
            .iter()
            .zip(&expected)
            .filter(|(a, b)| a != b)
            .count();
        assert!(
            resized.len() == expected.len() && differing == 0,
            "{new_width}x{new_height}: {differing} of {} samples differ from Pillow's",
            expected.len()
        );
    }
    // The saturated bars ring: Pillow clips values beyond 0 and 255, and so must the resize.
    let ([_, h, w], expected, _) = pillow_png("resized-rgb-150x45.png");
    assert!(expected.contains(&0) && expected.contains(&255), "{h}x{w}");
}

#[test]
fn lanczos_resize_keeps_a_constant_image_constant_at_any_size() {
    use glowflow::data::resample::lanczos;
    use rand::{Rng, SeedableRng};
    // The weights of every output sample add up to one, so a flat image stays flat: the fixed
    // point's rounding must not move any sample, whatever the scale, down or up, on either axis.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for case in 0..200 {
        let shape = [rng.random_range(1..90), rng.random_range(1..90), 3];
        let size = [rng.random_range(1..90), rng.random_range(1..90)];
        let value: u8 = rng.random();
        let flat = vec![value; shape.iter().product()];
        let resized = lanczos(&flat, shape, size);
        assert!(
            resized.len() == size[0] * size[1] * 3 && resized.iter().all(|&v| v == value),
            "case {case}: {shape:?} -> {size:?} of {value}"
        );
    }
}

#[test]
fn folders_are_fitted_to_a_size_as_openai_glow_made_its_lsun_data() {
    // The central square, then Pillow's Lanczos: down by 2.2 and by 3.5, up by 1.4, and a grey
    // image only cropped (its shorter side is the size).
    for (source, sizes) in [("rgb", &[32, 20, 96][..]), ("grey", &[12, 29][..])] {
        let dir = TempDir::new(&format!("pillow-{source}"));
        let png = std::fs::read(pillow_fixture(&format!("source-{source}.png"))).expect("fixture");
        dir.write("image.png", &png);
        for &size in sizes {
            let options = FolderOptions {
                size: Some(size),
                ..FolderOptions::default()
            };
            let data = load_image_folder(&dir.0, &options).expect("load").dataset;
            let (shape, _, expected) = pillow_png(&format!("fitted-{source}-{size}.png"));
            assert_eq!(data.shape, shape, "{source} at {size}");
            assert!(
                data.pixels == expected,
                "{source} at {size}: not Pillow's pixels"
            );
        }
    }
}

#[test]
fn colour_images_turn_grey_as_pillows_convert_l_makes_them() {
    let dir = TempDir::new("pillow-grey");
    let png = std::fs::read(pillow_fixture("source-rgb.png")).expect("fixture");
    dir.write("image.png", &png);
    let options = FolderOptions {
        channels: Some(1),
        ..FolderOptions::default()
    };
    let data = load_image_folder(&dir.0, &options).expect("load").dataset;
    let (shape, _, expected) = pillow_png("grey-of-rgb.png");
    assert_eq!(data.shape, shape);
    assert!(data.pixels == expected, "not Pillow's grey");
}

#[test]
fn lsun_webp_files_are_decoded_and_fitted_as_openai_glows_pillow_did() {
    // A lossy WebP (LSUN's format): decoded exactly as Pillow's libwebp decodes it, and fitted to
    // 64x64 exactly as openai/glow's pipeline (decode, centre crop, Pillow's Lanczos) makes it.
    let dir = TempDir::new("pillow-webp");
    let webp = std::fs::read(pillow_fixture("lsun.webp")).expect("fixture");
    dir.write("image.webp", &webp);
    for (size, expected) in [(None, "decoded-webp.png"), (Some(64), "fitted-webp-64.png")] {
        let options = FolderOptions {
            size,
            ..FolderOptions::default()
        };
        let data = load_image_folder(&dir.0, &options).expect("load").dataset;
        let (shape, _, pixels) = pillow_png(expected);
        assert_eq!(data.shape, shape, "{expected}");
        assert!(data.pixels == pixels, "{expected}: not Pillow's pixels");
    }
}

/// The JPEG fixtures (tests/fixtures/make_pillow.py): each with Pillow's decoding of it.
const JPEG_KINDS: [&str; 10] = [
    "420",
    "422",
    "444",
    "411",
    "440",
    "progressive",
    "arithmetic",
    "grey",
    "cmyk",
    "damaged",
];

/// Writes `bytes` as `name` in `dir` and asserts that loading it is refused with an error that
/// names the file and mentions each of `facts`.
fn assert_refused(dir: &TempDir, name: &str, bytes: &[u8], facts: &[&str]) {
    let file = dir.write(name, bytes);
    let err =
        load_image_files(std::slice::from_ref(&file), &FolderOptions::default()).expect_err(name);
    assert_error_mentions(err, &file, facts);
}

/// Loads each fixture `{format}-{kind}.{extension}` of `kinds` as a folder image, with default
/// options, and asserts that its shape and every sample are those of the fixture
/// `decoded-{format}-{kind}.png`, Pillow's reading of it.
fn assert_read_as_pillow_reads(format: &str, extension: &str, kinds: &[&str]) {
    let dir = TempDir::new(&format!("pillow-kinds-{format}"));
    for kind in kinds {
        let source = pillow_fixture(&format!("{format}-{kind}.{extension}"));
        let file = dir.write(
            &format!("{kind}.{extension}"),
            &std::fs::read(source).expect("fixture"),
        );
        let load = load_image_files(&[file], &FolderOptions::default())
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        let (shape, _, pixels) = pillow_png(&format!("decoded-{format}-{kind}.png"));
        assert_eq!(load.dataset.shape, shape, "{kind}");
        let differing = load
            .dataset
            .pixels
            .iter()
            .zip(&pixels)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(differing, 0, "{kind}: samples that differ from Pillow's");
    }
}

#[test]
fn jpeg_files_are_decoded_exactly_as_pillows_libjpeg_turbo_decodes_them() {
    // Every chroma subsampling (CelebA's is 4:2:0), progressive and arithmetic coding, grey, CMYK
    // (stored inverted, made RGB as Pillow's convert("RGB") makes it), and damaged entropy-coded
    // data, which libjpeg decodes with a warning: the pixels Pillow gives, every one.
    assert_read_as_pillow_reads("jpeg", "jpg", &JPEG_KINDS);
}

/// Every PNG colour type and bit depth, with and without tRNS, and interlaced
/// (`tests/fixtures/make_pillow.py`, which writes the files by hand).
const PNG_KINDS: [&str; 22] = [
    "grey1",
    "grey2",
    "grey4",
    "grey8",
    "grey16",
    "grey8-trns",
    "grey16-trns",
    "rgb8",
    "rgb16",
    "rgb8-trns",
    "rgb16-trns",
    "palette1",
    "palette2",
    "palette4",
    "palette8",
    "palette8-trns",
    "greyalpha8",
    "greyalpha16",
    "rgba8",
    "rgba16",
    "rgb8-interlaced",
    "palette4-interlaced",
];

#[test]
fn png_files_of_every_colour_type_and_depth_are_read_as_pillow_reads_them() {
    // Pillow's convert("RGB") of colour and palette files and convert("L") of grey ones: alpha
    // and tRNS dropped, sub-byte grey scaled to 0..=255, 16-bit samples cut to their high byte.
    assert_read_as_pillow_reads("png", "png", &PNG_KINDS);
}

/// The WebP fixtures beside `lsun.webp` (`tests/fixtures/make_pillow.py`, `write_webps`).
const WEBP_KINDS: [&str; 5] = [
    "lossy-alpha",
    "lossy-q100",
    "lossless",
    "lossless-alpha",
    "animated",
];

#[test]
fn webp_files_of_every_kind_are_read_as_pillow_reads_them() {
    // Lossy (LSUN's kind) at the highest quality and with an alpha channel, lossless with and
    // without alpha, and an animation, of which Pillow reads the first frame.
    assert_read_as_pillow_reads("webp", "webp", &WEBP_KINDS);
}

/// The TIFF fixtures (`tests/fixtures/make_pillow.py`, `write_tiffs`).
const TIFF_KINDS: [&str; 10] = [
    "rgb-raw",
    "rgb-lzw",
    "rgb-deflate",
    "rgb-packbits",
    "grey",
    "bilevel",
    "rgba",
    "cmyk",
    "grey16",
    "rgb16",
];

#[test]
fn tiff_files_are_read_as_pillow_reads_them() {
    // Uncompressed, LZW, Deflate and PackBits; grey, bilevel, RGBA, CMYK (Pillow's CMYK to RGB),
    // 16-bit colour (the high byte, as Pillow) and 16-bit grey (the high byte, where Pillow's
    // convert clips to white).
    assert_read_as_pillow_reads("tiff", "tif", &TIFF_KINDS);
}

/// The Netpbm fixtures (`tests/fixtures/make_pillow.py`, `write_pnms`), each with the extension
/// of its first three letters.
const PNM_KINDS: [&str; 13] = [
    "pbm",
    "pgm",
    "ppm",
    "pbm-plain",
    "pgm-plain",
    "ppm-plain",
    "ppm-maxval100",
    "pgm-maxval6",
    "pgm-plain-maxval6",
    "pgm-above-maxval",
    "ppm-16bit",
    "pgm-16bit",
    "pgm-maxval1000",
];

#[test]
fn netpbm_files_are_read_as_pillow_reads_them() {
    // Binary and plain bitmaps, greymaps and pixmaps; comments in the header (one inside the
    // width) and the data; maxvals whose scaling ties (6: 1/6 * 255 = 42.5, rounded to even);
    // binary samples above maxval; 16 bits. Pillow's pixels, but where Pillow clips greymaps
    // with maxval above 255 to white.
    for kind in PNM_KINDS {
        assert_read_as_pillow_reads("pnm", &kind[..3], &[kind]);
    }
}

#[test]
fn truncated_and_malformed_netpbm_files_are_refused_naming_the_file() {
    let dir = TempDir::new("pnm-bad");
    let ppm = std::fs::read(pillow_fixture("pnm-ppm.ppm")).expect("fixture");
    let header = ppm.len() - 13 * 11 * 3;
    let plain = b"P2 3 1 255\n1 2 256\n";
    for (name, bytes, fact) in [
        ("cut.ppm", &ppm[..header + 100], "truncated"),
        ("header.ppm", &ppm[..header], "truncated"),
        ("no-maxval.ppm", &ppm[..8], "before its maxval"),
        ("above.pgm", &plain[..], "above the maxval 255"),
        ("short.pgm", &plain[..plain.len() - 5], "truncated"),
        ("maxval0.pgm", b"P5 1 1 0\n\0", "maxval 0"),
        ("pam.pnm", b"P7\nWIDTH 1\n", "P7"),
        ("letters.pbm", b"P1 2 1\n0 x\n", "only 0 and 1"),
        ("long.pgm", b"P2 1 1 255\n00000000000\n", "longer than 10"),
    ] {
        assert_refused(&dir, name, bytes, &["not a readable Netpbm", fact]);
    }
    for (name, bytes) in [
        ("empty.pgm", &b"P5 0 0 255\n"[..]),
        ("empty.pbm", b"P1 0 3\n"),
    ] {
        assert_refused(&dir, name, bytes, &["no pixels"]);
    }
}

/// The BMP fixtures (`tests/fixtures/make_pillow.py`, `write_bmps`).
const BMP_KINDS: [&str; 13] = [
    "rgb24",
    "rgba32",
    "grey8",
    "bilevel",
    "palette8",
    "palette4",
    "palette8-os2",
    "rgb555",
    "rgb565",
    "bgra-v5",
    "topdown",
    "rle8",
    "rle4",
];

#[test]
fn bmp_files_are_read_as_pillow_reads_them() {
    // 1-, 4- and 8-bit palettes (grey ramps read as grey, as Pillow's modes 1 and L), 16-bit
    // fields (5-5-5 and 5-6-5, scaled down as Pillow's BGR;15 and BGR;16), 24 and 32 bits, bit
    // fields in a Windows 5 header, OS/2's header, top-down rows, RLE8 and RLE4 with rows ended
    // early and deltas.
    assert_read_as_pillow_reads("bmp", "bmp", &BMP_KINDS);
}

#[test]
fn truncated_and_malformed_bmp_files_are_refused_naming_the_file() {
    let dir = TempDir::new("bmp-bad");
    let rgb = std::fs::read(pillow_fixture("bmp-rgb24.bmp")).expect("fixture");
    let rle = std::fs::read(pillow_fixture("bmp-rle8.bmp")).expect("fixture");
    let with = |bytes: &[u8], at: usize, value: &[u8]| {
        let mut changed = bytes.to_vec();
        changed[at..at + value.len()].copy_from_slice(value);
        changed
    };
    // The 40-byte header: size at 14, bits at 28, compression at 30.
    for (name, bytes, fact) in [
        ("cut.bmp", rgb[..rgb.len() - 7].to_vec(), "truncated"),
        ("header.bmp", rgb[..30].to_vec(), "truncated"),
        (
            "header-size.bmp",
            with(&rgb, 14, &20u32.to_le_bytes()),
            "header of 20 bytes",
        ),
        (
            "depth.bmp",
            with(&rgb, 28, &2u16.to_le_bytes()),
            "2 bits a pixel",
        ),
        (
            "jpeg.bmp",
            with(&rgb, 30, &4u32.to_le_bytes()),
            "compression 4",
        ),
        (
            "fields.bmp",
            with(&rgb, 30, &3u32.to_le_bytes()),
            "bit fields",
        ),
        ("early-end.bmp", rle[..rle.len() - 40].to_vec(), "sets"),
        (
            "no-width.bmp",
            with(&rgb, 18, &0u32.to_le_bytes()),
            "no pixels",
        ),
    ] {
        assert_refused(&dir, name, &bytes, &["not a readable BMP", fact]);
    }
}

#[test]
fn uploads_of_every_format_decode_as_their_files_do() {
    // The explorer's uploads go through the same decoders as folder files.
    use glowflow::data::folder::decode_image_bytes;
    let dir = TempDir::new("uploads");
    for fixture in [
        "jpeg-420.jpg",
        "png-rgb16.png",
        "webp-lossy-alpha.webp",
        "tiff-cmyk.tif",
        "pnm-pgm-maxval6.pgm",
        "bmp-rle4.bmp",
    ] {
        let bytes = std::fs::read(pillow_fixture(fixture)).expect("fixture");
        let file = dir.write(fixture, &bytes);
        let options = FolderOptions::default();
        let load = load_image_files(&[file], &options).expect(fixture);
        let upload = decode_image_bytes(&bytes, &options, 1024).expect(fixture);
        assert_eq!(upload.shape, load.dataset.shape, "{fixture}");
        assert!(upload.pixels == load.dataset.pixels, "{fixture}");
    }
}

#[test]
fn palette_tiff_files_are_refused_naming_the_file() {
    // The image crate's TIFF decoder has no palette images; Pillow reads them.
    let dir = TempDir::new("tiff-palette");
    let bytes = std::fs::read(pillow_fixture("tiff-palette.tif")).expect("fixture");
    assert_refused(
        &dir,
        "palette.tif",
        &bytes,
        &["not a readable TIFF", "RGBPalette"],
    );
}

#[test]
fn truncated_jpeg_files_are_refused_as_pillow_refuses_them() {
    // libjpeg would fake the missing end and return grey for the rest; Pillow refuses the file.
    let dir = TempDir::new("jpeg-truncated");
    for kind in ["420", "progressive"] {
        let jpeg = std::fs::read(pillow_fixture(&format!("jpeg-{kind}.jpg"))).expect("fixture");
        let scan = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xDA])
            .expect("a scan");
        for length in [
            scan,
            (scan + jpeg.len()) / 2,
            jpeg.len() - 2,
            jpeg.len() - 1,
        ] {
            let facts = ["not a readable JPEG", "truncated"];
            assert_refused(&dir, "cut.jpg", &jpeg[..length], &facts);
        }
        // Bytes after the end marker are never read, as in Pillow.
        let file = dir.write("tail.jpg", &[&jpeg[..], b"trailing bytes"].concat());
        let load = load_image_files(&[file], &FolderOptions::default()).expect("whole JPEG");
        let (_, _, pixels) = pillow_png(&format!("decoded-jpeg-{kind}.png"));
        assert!(load.dataset.pixels == pixels, "{kind}: not Pillow's pixels");
    }
}

#[test]
fn odd_excess_drops_the_extra_pixel_at_the_right() {
    let dir = TempDir::new("crop-odd");
    // 5 wide, 2 high, column x has grey value 10 * x: cropping to 2x2 removes 3 columns, one
    // on the left and two on the right, keeping columns 1 and 2.
    let image = GrayImage::from_fn(5, 2, |x, _| Luma([10 * x as u8]));
    save_grey(&dir, "row.png", &image);
    let options = FolderOptions {
        size: Some(2),
        ..FolderOptions::default()
    };
    let data = load_image_folder(&dir.0, &options).expect("load").dataset;
    assert_eq!(data.shape, [1, 2, 2]);
    assert_eq!(data.pixels, vec![10, 20, 10, 20]);
}

#[test]
fn wrong_size_image_is_an_error_naming_it_without_skip() {
    let dir = TempDir::new("wrong-size-error");
    let first = save_rgb(&dir, "a.png", &solid(4, 4, [1, 2, 3]));
    let odd = save_rgb(&dir, "b.png", &solid(5, 4, [1, 2, 3]));
    let err = load_image_folder(&dir.0, &on_bad(BadImage::Error)).expect_err("sizes differ");
    assert_error_mentions(
        err,
        &odd,
        &[
            &first.display().to_string(),
            "[3, 4, 5]",
            "[3, 4, 4]",
            "--skip-bad-images",
            "remove the file",
        ],
    );
}

#[test]
fn wrong_size_image_is_skipped_and_listed_with_skip() {
    let dir = TempDir::new("wrong-size-skip");
    save_rgb(&dir, "a.png", &solid(4, 4, [1, 2, 3]));
    let odd = save_rgb(&dir, "b.png", &solid(5, 4, [9, 9, 9]));
    save_rgb(&dir, "c.png", &solid(4, 4, [4, 5, 6]));
    let load = load_image_folder(&dir.0, &on_bad(BadImage::Skip)).expect("skip the odd one");
    assert_eq!(load.dataset.shape, [3, 4, 4]);
    assert_eq!(load.dataset.len(), 2);
    assert_eq!(load.dataset.image(1)[0], 4);
    assert_eq!(load.skipped.len(), 1);
    assert_eq!(load.skipped[0].0, odd);
    assert!(
        load.skipped[0].1.contains("[3, 4, 5]"),
        "{:?}",
        load.skipped
    );
}

#[test]
fn corrupt_jpeg_is_an_error_or_skipped() {
    let dir = TempDir::new("corrupt");
    save_rgb(&dir, "a.png", &solid(3, 3, [7, 8, 9]));
    let noise: Vec<u8> = (0..500u32).map(|i| (i * 97 % 251) as u8).collect();
    let bad = dir.write("b.jpg", &noise);
    let err = load_image_folder(&dir.0, &on_bad(BadImage::Error)).expect_err("random bytes");
    assert_error_mentions(err, &bad, &["not a readable JPEG", "--skip-bad-images"]);
    let load = load_image_folder(&dir.0, &on_bad(BadImage::Skip)).expect("skip the bad one");
    assert_eq!(load.dataset.len(), 1);
    assert_eq!(
        load.dataset.pixels,
        [vec![7; 9], vec![8; 9], vec![9; 9]].concat()
    );
    assert_eq!(load.skipped.len(), 1);
    assert_eq!(load.skipped[0].0, bad);
}

/// Many images (decoded a chunk of 1024 at a time on all threads) keep name order across the
/// chunks, and the bad ones are skipped in that order, or the first of them stops the load.
#[test]
fn a_large_folder_loads_in_name_order_with_its_bad_images_skipped_in_order() {
    let dir = TempDir::new("large");
    let n = 2600;
    let (wrong_size, corrupt) = (1024, 2047);
    for i in 0..n {
        let name = format!("{i:05}.png");
        match i {
            _ if i == wrong_size => {
                save_grey(&dir, &name, &GrayImage::new(2, 1));
            }
            _ if i == corrupt => {
                dir.write(&name, b"not a png");
            }
            _ => {
                save_grey(
                    &dir,
                    &name,
                    &GrayImage::from_pixel(1, 1, Luma([(i % 251) as u8])),
                );
            }
        }
    }
    let load = load_image_folder(&dir.0, &on_bad(BadImage::Skip)).expect("load");
    let kept: Vec<usize> = (0..n)
        .filter(|&i| i != wrong_size && i != corrupt)
        .collect();
    let expected: Vec<u8> = kept.iter().map(|&i| (i % 251) as u8).collect();
    assert_eq!(load.dataset.shape, [1, 1, 1]);
    assert_eq!(load.dataset.pixels, expected);
    assert_eq!(load.files.len(), kept.len());
    assert_eq!(
        load.files[wrong_size],
        dir.0.join(format!("{:05}.png", wrong_size + 1))
    );
    let skipped: Vec<PathBuf> = load.skipped.iter().map(|(path, _)| path.clone()).collect();
    assert_eq!(
        skipped,
        [wrong_size, corrupt].map(|i| dir.0.join(format!("{i:05}.png")))
    );
    let err = load_image_folder(&dir.0, &on_bad(BadImage::Error)).expect_err("bad images");
    assert_error_mentions(
        err,
        &dir.0.join(format!("{wrong_size:05}.png")),
        &["[1, 1, 2]"],
    );
}

#[test]
fn folder_without_usable_images_is_an_error() {
    let missing = TempDir::new("missing");
    let nowhere = missing.0.join("nowhere");
    let err = load_image_folder(&nowhere, &FolderOptions::default()).expect_err("no folder");
    assert_error_mentions(
        err,
        &nowhere,
        &["does not exist", "put the images there", "--data"],
    );

    let empty = TempDir::new("empty");
    let err = load_image_folder(&empty.0, &FolderOptions::default()).expect_err("empty");
    assert_error_mentions(err, &empty.0, &["no .png / .jpg", ".bmp files"]);

    let hollow = TempDir::new("empty-classes");
    hollow.write("cats/readme.txt", b"no images");
    let err = load_image_folder(&hollow.0, &FolderOptions::default()).expect_err("no images");
    assert_error_mentions(err, &hollow.0, &["class subfolders hold no"]);

    let all_bad = TempDir::new("all-bad");
    all_bad.write("x.png", b"garbage");
    let err = load_image_folder(&all_bad.0, &on_bad(BadImage::Skip)).expect_err("none usable");
    assert_error_mentions(err, &all_bad.0, &["no usable image", "x.png"]);
}

#[test]
fn channels_option_converts_grey_and_rgb_and_none_requires_agreement() {
    let dir = TempDir::new("channels");
    save_grey(&dir, "a.png", &GrayImage::from_pixel(2, 2, Luma([77])));
    let rgb = save_rgb(&dir, "b.png", &solid(2, 2, [100, 100, 100]));

    let err = load_image_folder(&dir.0, &FolderOptions::default()).expect_err("grey and RGB");
    assert_error_mentions(err, &rgb, &["[3, 2, 2]", "[1, 2, 2]"]);

    let as_rgb = FolderOptions {
        channels: Some(3),
        ..FolderOptions::default()
    };
    let data = load_image_folder(&dir.0, &as_rgb).expect("to RGB").dataset;
    assert_eq!(data.shape, [3, 2, 2]);
    assert_eq!(data.pixels, [vec![77; 12], vec![100; 12]].concat());

    let as_grey = FolderOptions {
        channels: Some(1),
        ..FolderOptions::default()
    };
    let data = load_image_folder(&dir.0, &as_grey)
        .expect("to grey")
        .dataset;
    assert_eq!(data.shape, [1, 2, 2]);
    assert_eq!(data.pixels, [vec![77; 4], vec![100; 4]].concat());
}

#[test]
fn invalid_options_are_config_errors() {
    let dir = TempDir::new("bad-options");
    save_rgb(&dir, "a.png", &solid(2, 2, [0, 0, 0]));
    for options in [
        FolderOptions {
            channels: Some(2),
            ..FolderOptions::default()
        },
        FolderOptions {
            size: Some(0),
            ..FolderOptions::default()
        },
    ] {
        let err = load_image_folder(&dir.0, &options).expect_err("invalid option");
        assert!(matches!(err, GlowError::Config(_)), "{err}");
    }
}

/// A small attribute file: 3 attributes, 2 images, irregular spacing and a trailing blank line.
const ATTRIBUTES: &str = "2\n\
    Smiling Male  Young \n\
    000001.jpg  1 -1  1\n\
    000002.jpg -1  1 -1\n\
    \n";

#[test]
fn celeba_attributes_parse_names_files_and_values() {
    let dir = TempDir::new("celeba");
    let path = dir.write("list_attr_celeba.txt", ATTRIBUTES.as_bytes());
    let attrs = read_celeba_attributes(&path).expect("parse");
    assert_eq!(attrs.names, ["Smiling", "Male", "Young"]);
    assert_eq!(attrs.files, ["000001.jpg", "000002.jpg"]);
    assert_eq!(
        attrs.values,
        [vec![true, false, true], vec![false, true, false]]
    );
    assert_eq!(attrs.index("Young").expect("known"), 2);
    assert!(attrs.has("000001.jpg", "Smiling").expect("known"));
    assert!(attrs.has("000002.jpg", "Male").expect("known"));
    assert!(!attrs.has("000002.jpg", "Young").expect("known"));
    let msg = attrs.index("Bald").expect_err("unknown").to_string();
    assert!(
        msg.contains("Bald") && msg.contains("Smiling, Male, Young"),
        "{msg}"
    );
    let msg = attrs
        .has("999.jpg", "Male")
        .expect_err("unknown file")
        .to_string();
    assert!(msg.contains("999.jpg"), "{msg}");
}

/// Writes `text` as an attribute file and returns the error reading it gives.
fn celeba_error(dir: &TempDir, name: &str, text: &str) -> (PathBuf, GlowError) {
    let path = dir.write(name, text.as_bytes());
    let err = read_celeba_attributes(&path).expect_err("malformed attribute file");
    (path, err)
}

#[test]
fn celeba_malformed_files_are_errors_naming_file_and_line() {
    let dir = TempDir::new("celeba-bad");
    let (path, err) = celeba_error(&dir, "count.txt", "3\nA B\nx.jpg 1 -1\ny.jpg -1 1\n");
    assert_error_mentions(err, &path, &["says 3 images", "2 image lines"]);
    let (path, err) = celeba_error(&dir, "width.txt", "2\nA B\nx.jpg 1 -1\ny.jpg -1\n");
    assert_error_mentions(err, &path, &["line 4", "y.jpg", "1 values", "2 attributes"]);
    let (path, err) = celeba_error(&dir, "value.txt", "2\nA B\nx.jpg 1 0\ny.jpg -1 1\n");
    assert_error_mentions(err, &path, &["line 3", "'0'", "attribute B"]);
    let (path, err) = celeba_error(&dir, "header.txt", "many\nA B\n");
    assert_error_mentions(err, &path, &["line 1", "number of images"]);
}

/// A folder with two classes of differently sized colour images and one corrupt file, and the
/// options that bring them to 6x6 RGB, skipping the corrupt one.
fn classes_with_a_bad_image(name: &str) -> (TempDir, FolderOptions) {
    let dir = TempDir::new(name);
    for i in 0..5u8 {
        let image = RgbImage::from_fn(8 + u32::from(i), 6, |x, y| {
            Rgb([(x * 20) as u8, (y * 40) as u8, i * 50])
        });
        save_rgb(&dir, &format!("cats/{i}.png"), &image);
        save_rgb(
            &dir,
            &format!("dogs/{i}.jpg"),
            &solid(6, 7, [i * 40, 90, 200]),
        );
    }
    dir.write("dogs/2b.png", b"not a png at all");
    let options = FolderOptions {
        size: Some(6),
        channels: Some(3),
        on_bad_image: BadImage::Skip,
    };
    (dir, options)
}

/// Loads `dir` through the cache `cache`, returning the load and the notes.
fn load_cached(
    dir: &TempDir,
    options: &FolderOptions,
    cache: &TempDir,
) -> (FolderLoad, Vec<String>) {
    let mut notes = Vec::new();
    let load = load_folder(
        &dir.0,
        options,
        &ImageCache::In(cache.0.clone()),
        &mut |note| notes.push(note),
    )
    .expect("cached load");
    (load, notes)
}

/// The first load through the cache decodes the folder into an entry and maps it; later loads
/// map the entry without decoding. Either gives what decoding the folder gives: pixels, labels,
/// files, and the skipped files with their reasons. A hit reads the entry, not the images: a
/// file replaced with its size and time kept (the documented blind spot) still loads as it was;
/// a new time makes a new entry, which replaces the folder's old one.
#[test]
fn the_image_cache_gives_what_decoding_gives_and_maps_it_later() {
    let (dir, options) = classes_with_a_bad_image("cached-folder");
    let cache = TempDir::new("cache");
    let decoded = load_image_folder(&dir.0, &options).expect("decode");
    assert!(!decoded.dataset.pixels.is_mapped());
    assert_eq!((decoded.dataset.len(), decoded.skipped.len()), (10, 1));

    let (first, notes) = load_cached(&dir, &options, &cache);
    assert_eq!(first, decoded);
    assert!(first.dataset.pixels.is_mapped());
    assert!(
        notes.len() == 1 && notes[0].contains("decoded the 10 images"),
        "{notes:?}"
    );
    let entries = cache_files(&cache.0);
    assert!(
        entries.len() == 1 && entries[0].ends_with(".images"),
        "{entries:?}"
    );
    let (again, notes) = load_cached(&dir, &options, &cache);
    assert_eq!(again, decoded);
    assert!(again.dataset.pixels.is_mapped());
    assert!(notes.is_empty(), "{notes:?}");
    // Another name of the folder (a symbolic link) finds the same entry.
    let link = TempDir::new("cached-folder-link");
    let other_name = link.0.join("folder");
    std::os::unix::fs::symlink(&dir.0, &other_name).expect("link");
    let mut notes = Vec::new();
    let through_link = load_folder(
        &other_name,
        &options,
        &ImageCache::In(cache.0.clone()),
        &mut |note| notes.push(note),
    )
    .expect("cached load");
    assert_eq!(
        through_link,
        load_image_folder(&other_name, &options).expect("decode")
    );
    assert!(
        notes.is_empty() && through_link.dataset.pixels.is_mapped(),
        "{notes:?}"
    );

    // Another image of the same byte length, with the old time put back: still the entry.
    let replaced = dir.0.join("cats/1.png");
    let modified = std::fs::metadata(&replaced)
        .and_then(|m| m.modified())
        .expect("time");
    let length = std::fs::metadata(&replaced).expect("size").len() as usize;
    std::fs::write(&replaced, vec![0u8; length]).expect("overwrite");
    let file = std::fs::File::options()
        .write(true)
        .open(&replaced)
        .expect("open");
    file.set_modified(modified).expect("set time");
    drop(file);
    assert_eq!(load_cached(&dir, &options, &cache).0, decoded);
    // A new time: decoded again, now with the zeroed file skipped too; one entry left.
    let file = std::fs::File::options()
        .write(true)
        .open(&replaced)
        .expect("open");
    file.set_modified(modified + std::time::Duration::from_secs(5))
        .expect("set time");
    drop(file);
    let (changed, notes) = load_cached(&dir, &options, &cache);
    assert_eq!(
        changed,
        load_image_folder(&dir.0, &options).expect("decode")
    );
    assert_eq!(changed.skipped.len(), 2);
    assert!(
        notes.len() == 1 && notes[0].contains("removed 1 outdated"),
        "{notes:?}"
    );
    assert_eq!(cache_files(&cache.0).len(), 1);
    assert_ne!(cache_files(&cache.0), entries);
}

/// An entry cut short, or one whose header is not the cache's, is decoded again with a note
/// naming it; one whose description names another folder too.
#[test]
fn an_unusable_cache_entry_is_decoded_again() {
    let (dir, options) = classes_with_a_bad_image("damaged-entry");
    let cache = TempDir::new("damaged-cache");
    let decoded = load_image_folder(&dir.0, &options).expect("decode");
    load_cached(&dir, &options, &cache);
    let entry = cache.0.join(&cache_files(&cache.0)[0]);
    let bytes = std::fs::read(&entry).expect("entry");
    let damages: [(&str, Vec<u8>); 3] = [
        ("cut short", bytes[..bytes.len() - 7].to_vec()),
        ("another magic", [b"NOTGLOW!", &bytes[8..]].concat()),
        ("another folder", {
            let text = String::from_utf8_lossy(&bytes[4096 + 10 * 108..]).into_owned();
            let moved = text.replace("damaged-entry", "damaged-elsewh");
            [&bytes[..4096 + 10 * 108], moved.as_bytes()].concat()
        }),
    ];
    for (damage, damaged) in damages {
        std::fs::write(&entry, damaged).expect("damage");
        let (load, notes) = load_cached(&dir, &options, &cache);
        assert_eq!(load, decoded, "{damage}");
        assert!(load.dataset.pixels.is_mapped(), "{damage}");
        assert!(
            notes.len() == 2
                && notes[0].contains("unusable")
                && notes[0].contains(&*entry.to_string_lossy()),
            "{damage}: {notes:?}"
        );
        assert_eq!(std::fs::read(&entry).expect("rewritten"), bytes, "{damage}");
    }
}

/// Entries of another format version are listed as such and never read; writing an entry removes
/// an older version's (an older glowflow decoded its images differently) and keeps a newer one's.
#[test]
fn entries_of_an_older_format_version_are_removed_when_an_entry_is_written() {
    use glowflow::data::image_cache::{contents, VERSION};
    let (dir, options) = classes_with_a_bad_image("versions");
    let cache = TempDir::new("versions-cache");
    load_cached(&dir, &options, &cache);
    let entry = cache.0.join(&cache_files(&cache.0)[0]);
    let bytes = std::fs::read(&entry).expect("entry");
    let with_version = |version: u32| [&bytes[..8], &version.to_le_bytes(), &bytes[12..]].concat();
    let older = cache.write("0000000000000000-older.images", &with_version(VERSION - 1));
    let newer = cache.write("ffffffffffffffff-newer.images", &with_version(VERSION + 1));
    let listed = contents(&cache.0).expect("contents");
    assert_eq!(listed.entries.len(), 1);
    // The older entry is listed as such, with its size; the newer one as unusable, with why.
    assert_eq!(listed.older, [(older.clone(), bytes.len() as u64)]);
    let reasons: Vec<(&PathBuf, &str)> = listed
        .damaged
        .iter()
        .map(|(f, r)| (f, r.as_str()))
        .collect();
    let newer_reason = format!(
        "format version {}, of a newer glowflow, not {VERSION}",
        VERSION + 1
    );
    assert_eq!(reasons, [(&newer, newer_reason.as_str())]);
    // Another folder's entry written: the older version's is gone, the newer one's kept.
    let (other, _) = classes_with_a_bad_image("versions-other");
    load_cached(&other, &options, &cache);
    assert!(!older.exists() && newer.exists());
    assert_eq!(contents(&cache.0).expect("contents").entries.len(), 2);
}

/// A writer killed while it wrote an entry leaves its temporary (`.NAME.tmp-PID`), which the next
/// writer removes once that process no longer runs; an entry is never half-written in place.
#[test]
fn a_killed_cache_writers_temporary_is_removed_by_the_next_writer() {
    let (dir, options) = classes_with_a_bad_image("killed-writer");
    let cache = TempDir::new("killed-writer-cache");
    let mut gone = std::process::Command::new("true")
        .spawn()
        .expect("true runs");
    let pid = gone.id();
    gone.wait().expect("true ends");
    let stale = cache.write(&format!(".half-written.images.tmp-{pid}"), b"half an entry");
    let (load, _) = load_cached(&dir, &options, &cache);
    assert_eq!(load, load_image_folder(&dir.0, &options).expect("decode"));
    assert!(!stale.exists(), "the dead writer's temporary is removed");
    assert_eq!(
        cache_files(&cache.0).len(),
        1,
        "{:?}",
        cache_files(&cache.0)
    );
}

/// Loads of one folder that start together decode it once: one writes the entry while the
/// others wait for the cache's lock, then map what it wrote.
#[test]
fn concurrent_loads_through_the_image_cache_decode_once() {
    let (dir, options) = classes_with_a_bad_image("concurrent");
    let cache = TempDir::new("concurrent-cache");
    let decoded = load_image_folder(&dir.0, &options).expect("decode");
    let results: Vec<(FolderLoad, Vec<String>)> = std::thread::scope(|scope| {
        let loads: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| load_cached(&dir, &options, &cache)))
            .collect();
        loads
            .into_iter()
            .map(|l| l.join().expect("no panic"))
            .collect()
    });
    let decodes = results
        .iter()
        .flat_map(|(_, notes)| notes)
        .filter(|note| note.contains("decoded the"))
        .count();
    assert_eq!(decodes, 1, "{results:?}");
    for (load, _) in &results {
        assert_eq!(*load, decoded);
        assert!(load.dataset.pixels.is_mapped());
    }
    assert_eq!(cache_files(&cache.0).len(), 1, "no temporaries left");
}

/// A cache that cannot be written (here a path under a file) leaves the load to memory, with a
/// note saying why and what to do; a folder that cannot be loaded fails as without a cache and
/// leaves no entry; `off` and the XDG defaults name the right places; writing an entry removes
/// those of folders that no longer exist.
#[test]
fn the_image_cache_steps_aside_when_it_cannot_be_used() {
    let (dir, options) = classes_with_a_bad_image("uncacheable");
    let decoded = load_image_folder(&dir.0, &options).expect("decode");
    let blocker = TempDir::new("blocker");
    let file = blocker.write("file", b"a file, not a directory");
    let mut notes = Vec::new();
    let load = load_folder(
        &dir.0,
        &options,
        &ImageCache::In(file.join("cache")),
        &mut |n| notes.push(n),
    )
    .expect("in memory");
    assert_eq!(load, decoded);
    assert!(!load.dataset.pixels.is_mapped());
    assert!(
        notes.len() == 1
            && notes[0].contains("cannot use the image cache")
            && notes[0].contains("GLOWFLOW_IMAGE_CACHE"),
        "{notes:?}"
    );

    let cache = TempDir::new("refusing-cache");
    let strict = FolderOptions {
        on_bad_image: BadImage::Error,
        ..options
    };
    let cached = load_folder(
        &dir.0,
        &strict,
        &ImageCache::In(cache.0.clone()),
        &mut |_| {},
    );
    let plain = load_image_folder(&dir.0, &strict);
    assert_eq!(
        cached.expect_err("bad image").to_string(),
        plain.expect_err("bad image").to_string()
    );
    assert!(
        cache_files(&cache.0).is_empty(),
        "{:?}",
        cache_files(&cache.0)
    );

    assert_eq!(
        ImageCache::from_setting(Some("off"), Some("/x"), Some("/h")),
        ImageCache::Off
    );
    assert_eq!(
        ImageCache::from_setting(Some("/c"), Some("/x"), None),
        ImageCache::In("/c".into())
    );
    assert_eq!(
        ImageCache::from_setting(Some(""), Some("/x"), Some("/h")),
        ImageCache::In("/x/glowflow/images".into())
    );
    assert_eq!(
        ImageCache::from_setting(None, None, Some("/h")),
        ImageCache::In("/h/.cache/glowflow/images".into())
    );
    assert_eq!(
        ImageCache::from_setting(None, Some(""), None),
        ImageCache::Off
    );

    let (gone, _) = classes_with_a_bad_image("soon-gone");
    load_cached(&gone, &options, &cache);
    drop(gone);
    let (_, notes) = load_cached(&dir, &options, &cache);
    assert!(notes[0].contains("removed 1 outdated"), "{notes:?}");
    assert_eq!(cache_files(&cache.0).len(), 1);
}
