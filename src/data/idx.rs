//! Reader for the IDX files of MNIST and Fashion-MNIST (plain or gzipped).
//!
//! An IDX file is a big-endian header followed by raw bytes:
//!
//! | bytes | content |
//! |-------|---------|
//! | 0..4  | magic number: `0x00000803` for images (unsigned bytes, 3 dimensions), `0x00000801` for labels (unsigned bytes, 1 dimension) |
//! | 4..8  | number of items `N` (u32) |
//! | 8..16 | images only: rows, then columns (u32 each) |
//! | rest  | `N * rows * cols` pixel bytes, image by image, row by row; or `N` label bytes |

use std::io::Read;
use std::path::{Path, PathBuf};

use super::dataset::{checked_labels, ImageDataset, Split};
use crate::error::{GlowError, Result};

/// Magic number of an IDX file of unsigned-byte images (3 dimensions).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned-byte labels (1 dimension).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Number of classes in MNIST and Fashion-MNIST.
pub const MNIST_CLASSES: usize = 10;
/// Where `apt-get install dataset-fashion-mnist` puts the Fashion-MNIST files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Reads an IDX image file: returns `(n, rows, cols, pixels)` with `n * rows * cols` pixel bytes.
pub fn read_idx_images(path: &Path) -> Result<(usize, usize, usize, Vec<u8>)> {
    let (dims, pixels) = read_idx(path, IMAGES_MAGIC, "images")?;
    Ok((dims[0], dims[1], dims[2], pixels))
}

/// Reads an IDX label file: returns one byte per item.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    Ok(read_idx(path, LABELS_MAGIC, "labels")?.1)
}

/// Loads one split of MNIST or Fashion-MNIST from `dir`, which must hold
/// `train-images-idx3-ubyte` and `train-labels-idx1-ubyte` (train) or `t10k-images-idx3-ubyte`
/// and `t10k-labels-idx1-ubyte` (test), each plain or with a `.gz` suffix.
///
/// The result has shape `[1, rows, cols]` and 10 classes.
pub fn load_mnist_split(dir: &Path, split: Split) -> Result<ImageDataset> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let images_path = find_file(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (n, rows, cols, pixels) = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path)?;
    if labels.len() != n {
        return Err(GlowError::file(
            &labels_path,
            format!(
                "has {} labels but {} has {n} images; the two files must come from the same \
                 split of the same dataset, re-download them",
                labels.len(),
                images_path.display()
            ),
        ));
    }
    Ok(ImageDataset {
        shape: [1, rows, cols],
        pixels,
        labels: Some(checked_labels(&labels_path, &labels, MNIST_CLASSES)?),
        n_classes: MNIST_CLASSES,
    })
}

/// Returns `dir/name` or `dir/name.gz`, whichever exists (the plain file first).
fn find_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let candidates = [dir.join(name), dir.join(format!("{name}.gz"))];
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let what = if dir.is_dir() {
        format!("no file {name} or {name}.gz in this directory")
    } else {
        format!("directory does not exist (looked for {name} or {name}.gz in it)")
    };
    Err(GlowError::file(
        dir,
        format!(
            "{what}; put the MNIST-format IDX files there (Fashion-MNIST can be installed with \
             `apt-get install dataset-fashion-mnist`, which puts them in {FASHION_MNIST_DIR})"
        ),
    ))
}

/// Reads all bytes of `path`, decompressing them if the name ends in `.gz`.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| GlowError::io(path, e))?;
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|ext| ext == "gz") {
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut bytes)
            .map_err(|e| {
                GlowError::file(
                    path,
                    format!("corrupt gzip stream ({e}); re-download the file"),
                )
            })?;
    } else {
        std::io::BufReader::new(file)
            .read_to_end(&mut bytes)
            .map_err(|e| GlowError::io(path, e))?;
    }
    Ok(bytes)
}

/// Reads the IDX file at `path`, checks its magic number, that no dimension is 0 (no images, or
/// images of no pixels) and that its body holds exactly the number of bytes its header
/// announces, and returns the dimensions and the body.
fn read_idx(path: &Path, magic: u32, kind: &str) -> Result<(Vec<usize>, Vec<u8>)> {
    let mut bytes = read_maybe_gz(path)?;
    let (dims, header_len) = parse_header(path, &bytes, magic, kind)?;
    if dims.contains(&0) {
        return Err(GlowError::file(
            path,
            format!(
                "header announces {kind} of dimensions {dims:?}: an empty set cannot train or \
                 evaluate a model; the file is corrupt or incomplete, re-download it"
            ),
        ));
    }
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            GlowError::file(
                path,
                format!(
                    "header dimensions {dims:?} overflow the address space; the file is corrupt, \
                 re-download it"
                ),
            )
        })?;
    let found = bytes.len() - header_len;
    if found != expected {
        let problem = if found < expected {
            "the file is truncated, re-download it".to_string()
        } else {
            format!(
                "{} extra bytes follow the data, the file is corrupt or not an IDX file; \
                 re-download it",
                found - expected
            )
        };
        return Err(GlowError::file(
            path,
            format!(
                "header announces {kind} of dimensions {dims:?} ({expected} bytes) but the file \
                 has {found} bytes after its {header_len}-byte header: {problem}"
            ),
        ));
    }
    bytes.drain(..header_len);
    Ok((dims, bytes))
}

/// Parses the IDX header at the start of `bytes`: checks the magic number and returns the
/// dimensions (one big-endian u32 each; the count is the magic's low byte) and the header length.
fn parse_header(path: &Path, bytes: &[u8], magic: u32, kind: &str) -> Result<(Vec<usize>, usize)> {
    let word = |i: usize| -> Option<u32> {
        let field = bytes.get(4 * i..4 * i + 4)?;
        Some(u32::from_be_bytes(field.try_into().ok()?))
    };
    let ndims = (magic & 0xff) as usize;
    let header_len = 4 * (1 + ndims);
    let too_short = || {
        GlowError::file(
            path,
            format!(
                "only {} bytes, shorter than the {header_len}-byte IDX {kind} header; \
                 the file is truncated, re-download it",
                bytes.len()
            ),
        )
    };
    let found = word(0).ok_or_else(too_short)?;
    if found != magic {
        return Err(GlowError::file(
            path,
            format!(
                "magic number is {found:#010x}, expected {magic:#010x} for IDX {kind}; \
                 is this the right file (images vs labels) and is it decompressed?"
            ),
        ));
    }
    let dims = (1..=ndims)
        .map(|i| word(i).map(|d| d as usize).ok_or_else(too_short))
        .collect::<Result<Vec<_>>>()?;
    Ok((dims, header_len))
}
