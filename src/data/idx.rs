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
        pixels: pixels.into(),
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

/// The bytes of `path`, decompressed if the name ends in `.gz`, as a stream.
fn open_maybe_gz(path: &Path) -> Result<Box<dyn Read>> {
    let file = std::fs::File::open(path).map_err(|e| GlowError::io(path, e))?;
    Ok(if path.extension().is_some_and(|ext| ext == "gz") {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(std::io::BufReader::new(file))
    })
}

/// Reads at most `limit` bytes of `reader` (the stream of `path`); a corrupt gzip stream is an
/// error naming the file.
fn read_up_to(reader: &mut dyn Read, limit: usize, path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(limit as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => GlowError::file(
                path,
                format!("corrupt gzip stream ({e}); re-download the file"),
            ),
            _ => GlowError::io(path, e),
        })?;
    Ok(bytes)
}

/// Trailing bytes beyond the announced data that are read to report how many there are; a file
/// with more is reported as having more, without reading (or decompressing) them all.
const TRAILING_BYTES_READ: usize = 1 << 20;

/// Reads the IDX file at `path`, checks its magic number, that no dimension is 0 (no images, or
/// images of no pixels) and that its body holds exactly the number of bytes its header
/// announces, and returns the dimensions and the body. No more than the announced bytes (and
/// [`TRAILING_BYTES_READ`]) are read, so a gzip bomb cannot exhaust memory.
fn read_idx(path: &Path, magic: u32, kind: &str) -> Result<(Vec<usize>, Vec<u8>)> {
    let mut reader = open_maybe_gz(path)?;
    let header_len = 4 * (1 + (magic & 0xff) as usize);
    let header = read_up_to(&mut *reader, header_len, path)?;
    let dims = parse_header(path, &header, magic, kind)?;
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
        .filter(|&n| n <= isize::MAX as usize - TRAILING_BYTES_READ)
        .ok_or_else(|| {
            GlowError::file(
                path,
                format!(
                    "header dimensions {dims:?} overflow the address space; the file is corrupt, \
                 re-download it"
                ),
            )
        })?;
    let mut body = read_up_to(&mut *reader, expected + TRAILING_BYTES_READ, path)?;
    if body.len() != expected {
        // All of the body was read, unless TRAILING_BYTES_READ extra bytes were: then there may
        // be more.
        let at_least = if body.len() == expected + TRAILING_BYTES_READ {
            "at least "
        } else {
            ""
        };
        let problem = match body.len().checked_sub(expected) {
            None => "the file is truncated, re-download it".to_string(),
            Some(extra) => format!(
                "{at_least}{extra} extra bytes follow the data, the file is corrupt or not an IDX \
                 file; re-download it"
            ),
        };
        return Err(GlowError::file(
            path,
            format!(
                "header announces {kind} of dimensions {dims:?} ({expected} bytes) but the file \
                 has {at_least}{} bytes after its {header_len}-byte header: {problem}",
                body.len()
            ),
        ));
    }
    body.shrink_to_fit();
    Ok((dims, body))
}

/// Parses the IDX header at the start of `bytes`: checks the magic number and returns the
/// dimensions (one big-endian u32 each; the count is the magic's low byte).
fn parse_header(path: &Path, bytes: &[u8], magic: u32, kind: &str) -> Result<Vec<usize>> {
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
    (1..=ndims)
        .map(|i| word(i).map(|d| d as usize).ok_or_else(too_short))
        .collect()
}
