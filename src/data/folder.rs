//! Reader for a folder of PNG / JPEG / WebP / TIFF / Netpbm / BMP images, unlabelled or with one
//! subfolder per class.
//!
//! Every image is decoded to 8 bits per sample as Pillow decodes it (16-bit grey aside, see
//! `eight_bit`): PNG, WebP and TIFF files by the `image` crate, a 16-bit sample keeping its high
//! byte; JPEG files by libjpeg-turbo (src/data/jpeg.rs); Netpbm and BMP files by src/data/pnm.rs
//! and src/data/bmp.rs. Without a `channels` option, grey images (with or without alpha; a BMP
//! with a grey-ramp palette) give 1 channel and colour images (RGB, RGBA, CMYK, palette) give 3;
//! an alpha channel is dropped, never blended. With `size`, every image is centre-cropped and
//! resized to `size x size` (see [`FolderOptions::size`]). All images must then share one
//! `[channels, height, width]` shape; the first usable image sets it.

use std::path::{Path, PathBuf};

use image::imageops;
use image::{ImageBuffer, ImageFormat, ImageReader, Pixel};
use rayon::prelude::*;

use super::dataset::ImageDataset;
use super::decode::{DecodeFailure, DecodeSize};
use super::{bmp, jpeg, pnm, resample};
use crate::error::{GlowError, Result};

/// The formats read as images: each with its name for messages and its file extensions
/// (compared case-insensitively), those of torchvision's `ImageFolder` and `.pbm`, `.pnm`.
const IMAGE_FORMATS: [(ImageFormat, &str, &[&str]); 6] = [
    (ImageFormat::Png, "PNG", &["png"]),
    (ImageFormat::Jpeg, "JPEG", &["jpg", "jpeg"]),
    (ImageFormat::WebP, "WebP", &["webp"]),
    (ImageFormat::Tiff, "TIFF", &["tif", "tiff"]),
    (ImageFormat::Pnm, "Netpbm", &["ppm", "pgm", "pbm", "pnm"]),
    (ImageFormat::Bmp, "BMP", &["bmp"]),
];

/// The names of the [`IMAGE_FORMATS`], for messages: "PNG, JPEG, WebP, TIFF, Netpbm or BMP".
fn format_names() -> String {
    let names: Vec<&str> = IMAGE_FORMATS.iter().map(|&(_, name, _)| name).collect();
    let (last, rest) = names.split_last().expect("formats");
    format!("{} or {last}", rest.join(", "))
}

/// What to tell the user to do about a bad image when it stops the load.
pub(crate) const BAD_IMAGE_HELP: &str = "fix or remove the file, or pass --skip-bad-images \
                              (BadImage::Skip) to skip it";

/// What to do with an image that cannot be decoded or does not fit the dataset's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BadImage {
    /// Stop the load with an error naming the file.
    #[default]
    Error,
    /// Leave the image out and list it in [`FolderLoad::skipped`].
    Skip,
}

/// How [`load_image_folder`] turns the files into equally shaped images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FolderOptions {
    /// Centre-crop and resize every image to `size x size`, as openai/glow made its LSUN data:
    /// the central square of side `shorter = min(width, height)` is cut out, starting at
    /// `floor((longer − shorter) / 2)` (when the excess is odd, the extra pixel is dropped at
    /// the right or bottom), and resized to `size x size` with Pillow's Lanczos filter
    /// (`Image.ANTIALIAS`), bit for bit ([`super::resample::lanczos`]). An image whose shorter
    /// side already is `size` is only cropped, never resampled.
    ///
    /// `None` keeps every image's size; an image whose height and width differ from the first
    /// image's is then a bad image.
    pub size: Option<usize>,
    /// Convert every image to 1 (grey: a colour image's ITU-R 601-2 luma, as Pillow's
    /// `convert("L")` computes it) or 3 (RGB, grey replicated) channels.
    /// `None` keeps each image's own channels (1 for grey, 3 for colour); an image whose
    /// channel count differs from the first image's is then a bad image.
    pub channels: Option<usize>,
    /// What to do with an unreadable or wrongly shaped image.
    pub on_bad_image: BadImage,
}

/// The result of [`load_image_folder`]: the images, and the files that were left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderLoad {
    /// The usable images.
    pub dataset: ImageDataset,
    /// The file of each usable image, in dataset order.
    pub files: Vec<PathBuf>,
    /// Each skipped file with the reason (only with [`BadImage::Skip`]; empty otherwise).
    pub skipped: Vec<(PathBuf, String)>,
}

/// Loads the PNG images under `dir` with the default [`FolderOptions`]: no resizing, channels
/// kept, and any bad image an error. See [`load_image_folder`].
pub fn load_png_folder(dir: &Path) -> Result<ImageDataset> {
    load_image_folder(dir, &FolderOptions::default()).map(|load| load.dataset)
}

/// Loads the images under `dir`: files ending in `.png`, `.jpg`, `.jpeg`, `.webp`, `.tif`,
/// `.tiff`, `.ppm`, `.pgm`, `.pbm`, `.pnm` or `.bmp` (any case), in name order.
///
/// If `dir` holds image files itself they form an unlabelled dataset (`labels: None`,
/// `n_classes: 0`) and any subfolders are ignored. Otherwise every subfolder is a class,
/// labelled `0, 1, ...` in name order, and its image files are that class's images.
///
/// A file that cannot be decoded, or whose shape differs from the first usable image's, is
/// handled as `options.on_bad_image` says. Fails on invalid options, on a folder that cannot
/// be listed, and when no usable image is left.
pub fn load_image_folder(dir: &Path, options: &FolderOptions) -> Result<FolderLoad> {
    check_options(options)?;
    list_images(dir)?.decode_in_memory(dir, options, BAD_IMAGE_HELP)
}

/// The image files of a folder dataset in dataset order, each with its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listing {
    /// Every image file, with its class (`None` in an unlabelled dataset).
    pub images: Vec<(PathBuf, Option<usize>)>,
    /// Number of classes; 0 for an unlabelled dataset.
    pub n_classes: usize,
}

/// Which images of a [`Listing`] were decoded into the dataset, and which were left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sorted {
    /// The shape every usable image has, `[channels, height, width]`.
    pub shape: [usize; 3],
    /// Each skipped image's index in the listing, with the reason.
    pub skipped: Vec<(usize, String)>,
}

/// Lists the images of `dir` as [`load_image_folder`] reads them: its own image files,
/// unlabelled, or else every subfolder's, labelled by the subfolder's place in name order.
/// Fails on a folder that cannot be listed and on one without image files or subfolders.
pub(crate) fn list_images(dir: &Path) -> Result<Listing> {
    let (files, subdirs) = list_dir(dir)?;
    if !files.is_empty() {
        return Ok(Listing {
            images: files.into_iter().map(|f| (f, None)).collect(),
            n_classes: 0,
        });
    }
    if subdirs.is_empty() {
        return Err(GlowError::file(
            dir,
            format!(
                "no images here (no {} files) and no class subfolders; put the images there, or \
                 one subfolder of images per class",
                IMAGE_FORMATS
                    .iter()
                    .flat_map(|(_, _, extensions)| extensions.iter())
                    .map(|extension| format!(".{extension}"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            ),
        ));
    }
    let mut images = Vec::new();
    for (label, subdir) in subdirs.iter().enumerate() {
        images.extend(list_dir(subdir)?.0.into_iter().map(|f| (f, Some(label))));
    }
    Ok(Listing {
        images,
        n_classes: subdirs.len(),
    })
}

impl Listing {
    /// Decodes every image into one in-memory dataset (see [`Listing::decode`]).
    pub(crate) fn decode_in_memory(
        self,
        dir: &Path,
        options: &FolderOptions,
        help: &str,
    ) -> Result<FolderLoad> {
        let mut pixels = Vec::new();
        let count = self.images.len();
        let sorted = self.decode(dir, options, help, &mut |image| {
            if pixels.is_empty() {
                // Every image has this many bytes: one allocation for all of them.
                pixels.reserve_exact(image.len() * count);
            }
            pixels.extend_from_slice(image);
            Ok(())
        })?;
        Ok(self.load(sorted, pixels.into()))
    }

    /// Decodes every image as `options` says, handing the CHW pixels of each usable one to
    /// `sink` in listing order, and handling each bad image as `options.on_bad_image` says; an
    /// error for a bad image ends with `help`. The files are decoded on every worker thread, a
    /// chunk at a time ([`DECODE_CHUNK`]), and taken in order, so the pixels, the skipped files
    /// and the error are those of one file after another. Fails when no usable image is left.
    pub(crate) fn decode(
        &self,
        dir: &Path,
        options: &FolderOptions,
        help: &str,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<Sorted> {
        let mut first: Option<(&Path, [usize; 3])> = None;
        let mut skipped = Vec::new();
        for (chunk_index, chunk) in self.images.chunks(DECODE_CHUNK).enumerate() {
            let decoded: Vec<_> = chunk
                .par_iter()
                .map(|(path, _)| decode(path, options))
                .collect();
            for (offset, ((path, _), decoded)) in chunk.iter().zip(decoded).enumerate() {
                let checked = decoded.and_then(|(shape, image)| {
                    check_shape(shape, first.as_ref()).map(|()| (shape, image))
                });
                match (checked, options.on_bad_image) {
                    (Ok((shape, image)), _) => {
                        first.get_or_insert((path, shape));
                        sink(&image)?;
                    }
                    (Err(reason), BadImage::Skip) => {
                        skipped.push((chunk_index * DECODE_CHUNK + offset, reason))
                    }
                    (Err(reason), BadImage::Error) => {
                        return Err(GlowError::file(path, format!("{reason}; {help}")))
                    }
                }
            }
        }
        match first {
            Some((_, shape)) => Ok(Sorted { shape, skipped }),
            None => Err(no_usable_image(dir, &self.skipped_files(&skipped))),
        }
    }

    /// The dataset of the images that `sorted` kept, whose pixels are `pixels`, with the files
    /// it holds and those it left out.
    pub(crate) fn load(&self, sorted: Sorted, pixels: super::pixels::Pixels) -> FolderLoad {
        let mut left_out = sorted.skipped.iter().map(|(i, _)| *i).peekable();
        let mut kept = Vec::with_capacity(self.images.len() - sorted.skipped.len());
        for (i, image) in self.images.iter().enumerate() {
            if left_out.next_if_eq(&i).is_none() {
                kept.push(image);
            }
        }
        let labels = kept.iter().filter_map(|(_, label)| *label).collect();
        FolderLoad {
            dataset: ImageDataset {
                shape: sorted.shape,
                pixels,
                labels: (self.n_classes > 0).then_some(labels),
                n_classes: self.n_classes,
            },
            files: kept.into_iter().map(|(path, _)| path.clone()).collect(),
            skipped: self.skipped_files(&sorted.skipped),
        }
    }

    /// The files of the `skipped` images, each with the reason.
    fn skipped_files(&self, skipped: &[(usize, String)]) -> Vec<(PathBuf, String)> {
        skipped
            .iter()
            .map(|(i, reason)| (self.images[*i].0.clone(), reason.clone()))
            .collect()
    }
}

/// Loads the given image files, in the given order, as one unlabelled dataset (see
/// [`load_image_folder`] for the conversions and the handling of bad images).
pub fn load_image_files(paths: &[PathBuf], options: &FolderOptions) -> Result<FolderLoad> {
    check_options(options)?;
    let Some(first) = paths.first() else {
        return Err(GlowError::Config("no image files given".into()));
    };
    let dir = first.parent().unwrap_or(Path::new("."));
    let listing = Listing {
        images: paths.iter().map(|p| (p.clone(), None)).collect(),
        n_classes: 0,
    };
    listing.decode_in_memory(
        dir,
        options,
        &format!(
            "check the path, and that the file is a {} image",
            format_names()
        ),
    )
}

/// The class names of a folder dataset: its subfolders' names in label order (none when `dir`
/// holds images itself).
pub fn class_folders(dir: &Path) -> Result<Vec<String>> {
    let (files, subdirs) = list_dir(dir)?;
    Ok(if files.is_empty() {
        subdirs
            .iter()
            .map(|d| {
                d.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    } else {
        Vec::new()
    })
}

/// Rejects a zero or oversized `size` and a `channels` other than 1 or 3.
pub(crate) fn check_options(options: &FolderOptions) -> Result<()> {
    if let Some(size) = options.size {
        if size == 0 || u32::try_from(size).is_err() {
            return Err(GlowError::Config(format!(
                "image size {size} is not a usable side length; choose a positive size such as 64"
            )));
        }
    }
    match options.channels {
        None | Some(1) | Some(3) => Ok(()),
        Some(c) => Err(GlowError::Config(format!(
            "{c} image channels requested; choose 1 (grey) or 3 (RGB)"
        ))),
    }
}

/// Lists `dir`: its image files and its subfolders, each sorted by name.
fn list_dir(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let entries = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => GlowError::file(
            dir,
            format!(
                "the image folder does not exist; put the images there ({} files, or one \
                 subfolder of them per class), or give --data the directory that holds the \
                 preset's folders (e.g. train/ and test/; imagenet32's train_32x32/ and \
                 valid_32x32/; lsun64's train/ and val/)",
                format_names()
            ),
        ),
        _ => GlowError::io(dir, e),
    })?;
    let (mut files, mut subdirs) = (Vec::new(), Vec::new());
    for entry in entries {
        let path = entry.map_err(|e| GlowError::io(dir, e))?.path();
        if path.is_dir() {
            subdirs.push(path);
        } else if is_image_file(&path) {
            files.push(path);
        }
    }
    files.sort();
    subdirs.sort();
    Ok((files, subdirs))
}

/// Whether `path` has the extension of one of the [`IMAGE_FORMATS`], in any case.
fn is_image_file(path: &Path) -> bool {
    format_name(path).is_some()
}

/// The name of the format `path`'s extension names ([`IMAGE_FORMATS`]), if it is an image's.
fn format_name(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?;
    IMAGE_FORMATS
        .iter()
        .find(|(_, _, extensions)| {
            extensions
                .iter()
                .any(|known| ext.eq_ignore_ascii_case(known))
        })
        .map(|&(_, name, _)| name)
}

/// One decoded image, `[channels, height, width]` and its CHW pixels.
type Decoded = ([usize; 3], Vec<u8>);

/// Files decoded at once, in parallel, before their pixels join the dataset in order: enough to
/// keep every core busy, few enough that a chunk's images are small beside the dataset's.
const DECODE_CHUNK: usize = 1024;

/// The error for a folder that yielded no image: none found, or all `skipped`.
fn no_usable_image(dir: &Path, skipped: &[(PathBuf, String)]) -> GlowError {
    match skipped.first() {
        None => GlowError::file(
            dir,
            "the class subfolders hold no .png, .jpg, .jpeg or .webp files; add images",
        ),
        Some((path, reason)) => GlowError::file(
            dir,
            format!(
                "no usable image: all {} images were bad (the first, {}: {reason}); fix the \
                 images or change the size / channels options",
                skipped.len(),
                path.display()
            ),
        ),
    }
}

/// Checks `shape` against the first usable image's, returning the reason when they differ.
fn check_shape(
    shape: [usize; 3],
    first: Option<&(&Path, [usize; 3])>,
) -> std::result::Result<(), String> {
    match first {
        Some((first_path, first_shape)) if *first_shape != shape => Err(format!(
            "image shape {shape:?} (channels, height, width) differs from {first_shape:?} of \
             {}; all images of a dataset must have one shape (the size and channels options \
             convert them)",
            first_path.display()
        )),
        _ => Ok(()),
    }
}

/// Decodes the image at `path` (format guessed from its content, else its extension) and
/// converts it as `options` says, returning its shape and CHW pixels, or why it is unusable.
fn decode(path: &Path, options: &FolderOptions) -> std::result::Result<Decoded, String> {
    let reader = ImageReader::open(path)
        .and_then(|reader| reader.with_guessed_format())
        .map_err(|e| format!("cannot be read ({e})"))?;
    let what = format_name(path).unwrap_or("image");
    let image = decode_with(reader, MAX_IMAGE_SIDE, what)?;
    convert(image, options)
}

/// Decodes the image `reader` holds, its format known: a JPEG, Netpbm or BMP file as Pillow
/// decodes it (`super::jpeg`, `super::pnm`, `super::bmp`), a PNG, WebP or TIFF file by the
/// `image` crate. An image wider or taller than `max_side` pixels, or whose decoding could
/// allocate more than [`MAX_DECODE_BYTES`], is refused before its pixels are decoded; an
/// unreadable one is "not a readable `what`".
fn decode_with<R: std::io::BufRead + std::io::Seek>(
    mut reader: ImageReader<R>,
    max_side: u32,
    what: &str,
) -> std::result::Result<image::DynamicImage, String> {
    let unreadable = |e: String| format!("not a readable {what} ({e})");
    let admit = |width: u32, height: u32, bytes: u64| {
        if width > max_side || height > max_side {
            Err(format!(
                "the image is {width}x{height} pixels, larger than the {max_side}x{max_side} \
                 accepted; scale it down first"
            ))
        } else if bytes > MAX_DECODE_BYTES {
            Err(format!(
                "decoding the {width}x{height} image could take {} MiB, more than the {} MiB \
                 allowed; scale it down first",
                bytes.div_ceil(1 << 20),
                MAX_DECODE_BYTES >> 20
            ))
        } else {
            Ok(())
        }
    };
    let format = reader.format();
    if let Some(format @ (ImageFormat::Jpeg | ImageFormat::Pnm | ImageFormat::Bmp)) = format {
        let source = reader.into_inner();
        let admit = |size: DecodeSize| admit(size.width, size.height, size.bytes);
        let decoded = match format {
            ImageFormat::Jpeg => jpeg::decode(source, admit),
            ImageFormat::Pnm => pnm::decode(source, admit),
            _ => bmp::decode(source, admit),
        };
        return decoded.map_err(|failure| match failure {
            DecodeFailure::Refused(why) => why,
            DecodeFailure::Unreadable(why) => unreadable(why),
        });
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let decoder = reader
        .into_decoder()
        .map_err(|e| unreadable(e.to_string()))?;
    let (width, height) = image::ImageDecoder::dimensions(&decoder);
    admit(width, height, image::ImageDecoder::total_bytes(&decoder))?;
    image::DynamicImage::from_decoder(decoder).map_err(|e| unreadable(e.to_string()))
}

/// Checks that `image` has pixels and converts it as `options` says, returning its shape and
/// CHW pixels, or why it is unusable.
fn convert(
    image: image::DynamicImage,
    options: &FolderOptions,
) -> std::result::Result<Decoded, String> {
    if image.width() == 0 || image.height() == 0 {
        return Err("the image has no pixels".to_string());
    }
    let image = eight_bit(image);
    let colour = image.color().has_color();
    let rgb = match options.channels {
        Some(channels) => channels == 3,
        None => colour,
    };
    Ok(if rgb {
        fit(image.into_rgb8(), options.size)
    } else if colour {
        fit(luma_of(&image.into_rgb8()), options.size)
    } else {
        fit(image.into_luma8(), options.size)
    })
}

/// `image` with 8 bits per sample: a 16-bit one keeps each sample's high byte, `v >> 8`, as
/// Pillow reads 16-bit colour PNG and TIFF files (raw modes `RGB;16B`, `RGBA;16B`, `LA;16B`,
/// `RGB;16N`); the `image` crate would round `v / 257` instead. Pillow reads 16-bit grey as mode
/// `I;16`, which its `convert` clips to 255 (a white image); glowflow keeps the high byte there
/// too.
fn eight_bit(image: image::DynamicImage) -> image::DynamicImage {
    use image::DynamicImage as Image;
    match image {
        Image::ImageLuma16(image) => Image::ImageLuma8(high_bytes(image)),
        Image::ImageLumaA16(image) => Image::ImageLumaA8(high_bytes(image)),
        Image::ImageRgb16(image) => Image::ImageRgb8(high_bytes(image)),
        Image::ImageRgba16(image) => Image::ImageRgba8(high_bytes(image)),
        image => image,
    }
}

/// The 8-bit image of the high bytes of `image`'s 16-bit samples, pixel type `Q` having as many
/// channels as `P`.
fn high_bytes<P, Q>(image: ImageBuffer<P, Vec<u16>>) -> Buffer<Q>
where
    P: Pixel<Subpixel = u16>,
    Q: Pixel<Subpixel = u8>,
{
    let (width, height) = image.dimensions();
    let samples = image.into_raw().into_iter().map(|v| (v >> 8) as u8);
    ImageBuffer::from_raw(width, height, samples.collect())
        .expect("one 8-bit sample for every 16-bit sample of the same pixel layout")
}

/// The grey image of `rgb` as Pillow's `convert("L")` makes it (and so torchvision's
/// `Grayscale`): ITU-R 601-2 luma in Pillow's fixed point,
/// `L = (19595 R + 38470 G + 7471 B + 2^15) >> 16`.
fn luma_of(rgb: &image::RgbImage) -> image::GrayImage {
    image::GrayImage::from_fn(rgb.width(), rgb.height(), |x, y| {
        let [r, g, b] = rgb.get_pixel(x, y).0.map(u32::from);
        image::Luma([((19595 * r + 38470 * g + 7471 * b + (1 << 15)) >> 16) as u8])
    })
}

/// Decodes one image held in memory (an upload; the format, any that folders read, is read from
/// the bytes) and converts it as `options` says (`on_bad_image` does not apply: a bad image
/// is an error), as a dataset of that one image. Bytes of no such format, an image wider or
/// taller than `max_side` pixels, and a corrupt image are [`GlowError::Image`] errors saying so;
/// decoding is bounded as for files ([`MAX_IMAGE_SIDE`], [`MAX_DECODE_BYTES`]).
pub fn decode_image_bytes(
    bytes: &[u8],
    options: &FolderOptions,
    max_side: u32,
) -> Result<ImageDataset> {
    check_options(options)?;
    let bad = |message: String| GlowError::Image(message);
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(format!("the bytes cannot be read ({e})")))?;
    let format = reader.format();
    let Some(&(_, name, _)) = IMAGE_FORMATS
        .iter()
        .find(|&&(known, _, _)| Some(known) == format)
    else {
        return Err(bad(format!(
            "the {} bytes are not an image glowflow reads ({}); send a {} file",
            bytes.len(),
            format.map_or("unknown format".to_string(), |f| format!("{f:?}")),
            format_names()
        )));
    };
    let what = format!("{name} image");
    let image = decode_with(reader, max_side.min(MAX_IMAGE_SIDE), &what).map_err(bad)?;
    let (shape, pixels) = convert(image, options).map_err(bad)?;
    Ok(ImageDataset {
        shape,
        pixels: pixels.into(),
        labels: None,
        n_classes: 0,
    })
}

/// The largest width or height of an image that is decoded.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// The most memory one image's decoding may allocate, in bytes.
pub const MAX_DECODE_BYTES: u64 = 512 << 20;

/// An 8-bit image buffer with pixel type `P`.
type Buffer<P> = ImageBuffer<P, Vec<u8>>;

/// The CHW pixels of `image`, centre-cropped and resized to `size x size` as
/// [`FolderOptions::size`] describes (`None` keeps it as it is), and their shape.
fn fit<P: Pixel<Subpixel = u8> + 'static>(image: Buffer<P>, size: Option<usize>) -> Decoded {
    let channels = usize::from(P::CHANNEL_COUNT);
    let (width, height) = image.dimensions();
    let Some(size) = size else {
        return to_chw(image.as_raw(), [channels, height as usize, width as usize]);
    };
    let side = width.min(height);
    let square = if width == height {
        image
    } else {
        imageops::crop_imm(&image, (width - side) / 2, (height - side) / 2, side, side).to_image()
    };
    let side = side as usize;
    let pixels = if side == size {
        square.into_raw()
    } else {
        resample::lanczos(square.as_raw(), [side, side, channels], [size, size])
    };
    to_chw(&pixels, [channels, size, size])
}

/// The shape `[channels, height, width]` and CHW pixels of the interleaved (HWC) pixels `hwc`.
fn to_chw(hwc: &[u8], shape: [usize; 3]) -> Decoded {
    let channels = shape[0];
    let chw = (0..channels)
        .flat_map(|c| hwc.chunks_exact(channels).map(move |px| px[c]))
        .collect();
    (shape, chw)
}
