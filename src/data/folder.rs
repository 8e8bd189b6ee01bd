//! Reader for a folder of PNG images, unlabelled or with one subfolder per class.
//!
//! Every PNG is decoded to 8 bits per sample: grey (with or without alpha) gives 1 channel,
//! RGB, RGBA and palette images give 3; an alpha channel is dropped. All images must then share
//! one `[channels, height, width]` shape.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::dataset::ImageDataset;
use crate::error::{GlowError, Result};

/// Loads the PNG images under `dir` (files ending in `.png`, any case, in name order).
///
/// If `dir` holds PNG files itself they form an unlabelled dataset (`labels: None`,
/// `n_classes: 0`) and any subfolders are ignored. Otherwise every subfolder is a class,
/// labelled `0, 1, ...` in name order, and its PNG files are that class's images.
pub fn load_png_folder(dir: &Path) -> Result<ImageDataset> {
    let (files, subdirs) = list_dir(dir)?;
    if !files.is_empty() {
        return build_dataset(dir, files.into_iter().map(|f| (f, None)), 0);
    }
    if subdirs.is_empty() {
        return Err(GlowError::file(
            dir,
            "no .png files and no class subfolders in this directory; put the images there, \
             or one subfolder of images per class",
        ));
    }
    let mut labelled = Vec::new();
    for (label, subdir) in subdirs.iter().enumerate() {
        labelled.extend(list_dir(subdir)?.0.into_iter().map(|f| (f, Some(label))));
    }
    build_dataset(dir, labelled, subdirs.len())
}

/// Lists `dir`: its PNG files and its subfolders, each sorted by name.
fn list_dir(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let entries = std::fs::read_dir(dir).map_err(|e| GlowError::io(dir, e))?;
    let (mut files, mut subdirs) = (Vec::new(), Vec::new());
    for entry in entries {
        let path = entry.map_err(|e| GlowError::io(dir, e))?.path();
        if path.is_dir() {
            subdirs.push(path);
        } else if path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("png"))
        {
            files.push(path);
        }
    }
    files.sort();
    subdirs.sort();
    Ok((files, subdirs))
}

/// Decodes every file of `images` (with its optional label) into one dataset, checking that
/// they all have the shape of the first.
fn build_dataset(
    dir: &Path,
    images: impl IntoIterator<Item = (PathBuf, Option<usize>)>,
    n_classes: usize,
) -> Result<ImageDataset> {
    let mut first: Option<(PathBuf, [usize; 3])> = None;
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for (path, label) in images {
        let (shape, image) = read_png(&path)?;
        match &first {
            None => first = Some((path.clone(), shape)),
            Some((first_path, first_shape)) if *first_shape != shape => {
                return Err(GlowError::file(
                    &path,
                    format!(
                        "image shape {shape:?} (channels, height, width) differs from \
                         {first_shape:?} of {}; all images of a dataset must have one shape",
                        first_path.display()
                    ),
                ));
            }
            Some(_) => {}
        }
        pixels.extend(image);
        labels.extend(label);
    }
    let (_, shape) = first.ok_or_else(|| {
        GlowError::file(dir, "the class subfolders hold no .png files; add images")
    })?;
    Ok(ImageDataset {
        shape,
        pixels,
        labels: (n_classes > 0).then_some(labels),
        n_classes,
    })
}

/// Decodes the PNG at `path` to 8-bit samples and returns its shape and its pixels in CHW order.
fn read_png(path: &Path) -> Result<([usize; 3], Vec<u8>)> {
    let bad = |e: png::DecodingError| {
        GlowError::file(
            path,
            format!("not a readable PNG ({e}); replace or remove it"),
        )
    };
    let file = std::fs::File::open(path).map_err(|e| GlowError::io(path, e))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(bad)?;
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(bad)?;
    let (stride, channels) = match info.color_type {
        png::ColorType::Grayscale => (1, 1),
        png::ColorType::GrayscaleAlpha => (2, 1),
        png::ColorType::Rgb => (3, 3),
        png::ColorType::Rgba => (4, 3),
        png::ColorType::Indexed => {
            return Err(GlowError::file(
                path,
                "palette PNG was not expanded to RGB; re-save it as RGB or grey",
            ))
        }
    };
    let (height, width) = (info.height as usize, info.width as usize);
    let hwc = &buf[..info.buffer_size()];
    let chw = (0..channels)
        .flat_map(|c| hwc.chunks_exact(stride).map(move |px| px[c]))
        .collect();
    Ok(([channels, height, width], chw))
}
