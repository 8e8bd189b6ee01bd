//! Reader for the binary version of CIFAR-10 (`cifar-10-binary.tar.gz`).
//!
//! A batch file is a sequence of 3073-byte records, one per image: 1 label byte (0..=9), then
//! 3072 pixel bytes, the 32x32 red plane, then green, then blue, each row by row. The pixel
//! part of a record is therefore already one image in CHW order.

use std::path::{Path, PathBuf};

use super::dataset::{checked_labels, ImageDataset, Split};
use crate::error::{GlowError, Result};

/// Shape of one CIFAR-10 image: `[channels, height, width]`.
pub const CIFAR_SHAPE: [usize; 3] = [3, 32, 32];
/// Bytes in one record: the label byte and `3 * 32 * 32` pixel bytes.
pub const RECORD_SIZE: usize = 1 + 3 * 32 * 32;
/// Number of classes in CIFAR-10.
pub const CIFAR10_CLASSES: usize = 10;
/// The folder the official archive unpacks to; accepted inside the directory given.
pub const SUBFOLDER: &str = "cifar-10-batches-bin";

/// Reads one CIFAR-10 batch file (e.g. `data_batch_1.bin`) into a labelled dataset of shape
/// `[3, 32, 32]` with 10 classes.
pub fn read_cifar_batch(path: &Path) -> Result<ImageDataset> {
    let bytes = std::fs::read(path).map_err(|e| GlowError::io(path, e))?;
    if bytes.is_empty() || bytes.len() % RECORD_SIZE != 0 {
        return Err(GlowError::file(
            path,
            format!(
                "size {} bytes is not a positive multiple of the {RECORD_SIZE}-byte CIFAR-10 \
                 record; the file is truncated or not a CIFAR-10 binary batch, re-download it",
                bytes.len()
            ),
        ));
    }
    let (labels, pixels): (Vec<u8>, Vec<&[u8]>) = bytes
        .chunks_exact(RECORD_SIZE)
        .map(|record| (record[0], &record[1..]))
        .unzip();
    Ok(ImageDataset {
        shape: CIFAR_SHAPE,
        pixels: pixels.concat().into(),
        labels: Some(checked_labels(path, &labels, CIFAR10_CLASSES)?),
        n_classes: CIFAR10_CLASSES,
    })
}

/// Loads one split of CIFAR-10 from `dir` or from `dir/cifar-10-batches-bin/`: the train split
/// is `data_batch_1.bin` .. `data_batch_5.bin` concatenated in that order, the test split
/// `test_batch.bin`.
pub fn load_cifar10_split(dir: &Path, split: Split) -> Result<ImageDataset> {
    let names: Vec<String> = match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".to_string()],
    };
    let base = batch_dir(dir, &names)?;
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for name in &names {
        let batch = read_cifar_batch(&base.join(name))?;
        pixels.extend_from_slice(&batch.pixels);
        labels.extend(batch.labels.into_iter().flatten());
    }
    Ok(ImageDataset {
        shape: CIFAR_SHAPE,
        pixels: pixels.into(),
        labels: Some(labels),
        n_classes: CIFAR10_CLASSES,
    })
}

/// Returns whichever of `dir` and `dir/cifar-10-batches-bin` holds all the files `names`.
fn batch_dir(dir: &Path, names: &[String]) -> Result<PathBuf> {
    let candidates = [dir.to_path_buf(), dir.join(SUBFOLDER)];
    if let Some(found) = candidates
        .iter()
        .find(|d| names.iter().all(|name| d.join(name).is_file()))
    {
        return Ok(found.clone());
    }
    Err(GlowError::file(
        dir,
        format!(
            "CIFAR-10 files not found: looked for {} in this directory and in its {SUBFOLDER}/ \
             subfolder; download and unpack \
             https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz there",
            names.join(", ")
        ),
    ))
}
