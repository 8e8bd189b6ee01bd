//! The in-memory image dataset every reader produces, and the operations on it.

use std::path::Path;

use super::pixels::Pixels;
use crate::error::{GlowError, Result};

/// Which part of a dataset to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The training images.
    Train,
    /// The held-out test images.
    Test,
}

/// A set of equally shaped 8-bit images with optional class labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDataset {
    /// Shape of one image: `[channels, height, width]`.
    pub shape: [usize; 3],
    /// All pixels, `N * C * H * W` bytes in NCHW order (image, then channel plane, then row),
    /// in memory or mapped from the image cache.
    pub pixels: Pixels,
    /// One class label per image, each `< n_classes`; `None` for an unlabelled dataset.
    pub labels: Option<Vec<usize>>,
    /// Number of classes; 0 if the dataset has no labels.
    pub n_classes: usize,
}

impl ImageDataset {
    /// Bytes in one image (`C * H * W`).
    pub fn image_size(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.pixels
            .len()
            .checked_div(self.image_size())
            .unwrap_or(0)
    }

    /// Whether the dataset holds no images.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pixels of image `i`, `C * H * W` bytes in CHW order.
    ///
    /// # Panics
    /// If `i >= self.len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.image_size();
        &self.pixels[i * size..(i + 1) * size]
    }

    /// The `size = [height, width]` window of image `i` whose top-left pixel is `at = [row,
    /// column]`, as CHW bytes.
    ///
    /// # Panics
    /// If `i >= self.len()` or the window does not fit in the image.
    pub fn window(
        &self,
        i: usize,
        at: [usize; 2],
        size: [usize; 2],
    ) -> impl Iterator<Item = u8> + '_ {
        let ([_, h, w], [top, left], [height, width]) = (self.shape, at, size);
        assert!(
            top + height <= h && left + width <= w,
            "a {height}x{width} window at ({top}, {left}) does not fit in {h}x{w} images"
        );
        self.image(i).chunks_exact(h * w).flat_map(move |plane| {
            plane[top * w..]
                .chunks_exact(w)
                .take(height)
                .flat_map(move |row| row[left..left + width].iter().copied())
        })
    }

    /// Returns a copy with every image cut to its central `height x width` window, keeping
    /// labels: the window starts `floor(excess / 2)` from the top (left), so when the excess is
    /// odd the extra pixel is dropped at the bottom (right), as the folder reader's centre crop
    /// drops it. Fails if the images are smaller than the window.
    pub fn central_crop(&self, height: usize, width: usize) -> Result<ImageDataset> {
        let [channels, h, w] = self.shape;
        if height > h || width > w || height == 0 || width == 0 {
            return Err(GlowError::shape(
                "ImageDataset::central_crop",
                format!(
                    "cannot cut a {height}x{width} window out of {h}x{w} images; choose a \
                     window of at least 1x1 and at most {h}x{w}"
                ),
            ));
        }
        let at = [(h - height) / 2, (w - width) / 2];
        Ok(ImageDataset {
            shape: [channels, height, width],
            pixels: (0..self.len())
                .flat_map(|i| self.window(i, at, [height, width]))
                .collect(),
            labels: self.labels.clone(),
            n_classes: self.n_classes,
        })
    }

    /// Returns a copy with every image zero-padded to `height x width` (e.g. MNIST's 28x28 to
    /// 32x32, 2 pixels on each side), keeping labels.
    ///
    /// The padding is split evenly between top and bottom (left and right); when it is odd the
    /// extra pixel goes at the bottom (right). Fails if the target is smaller than the images.
    pub fn pad_to(&self, height: usize, width: usize) -> Result<ImageDataset> {
        let [channels, h, w] = self.shape;
        if height < h || width < w {
            return Err(GlowError::shape(
                "ImageDataset::pad_to",
                format!(
                    "cannot pad {h}x{w} images to the smaller size {height}x{width}; \
                     choose a target at least {h}x{w}"
                ),
            ));
        }
        let (top, left) = ((height - h) / 2, (width - w) / 2);
        let mut pixels = vec![0u8; self.len() * channels * height * width];
        if h * w > 0 {
            let src_planes = self.pixels.chunks_exact(h * w);
            for (src, dst) in src_planes.zip(pixels.chunks_exact_mut(height * width)) {
                for (row, src_row) in src.chunks_exact(w).enumerate() {
                    let start = (top + row) * width + left;
                    dst[start..start + w].copy_from_slice(src_row);
                }
            }
        }
        Ok(ImageDataset {
            shape: [channels, height, width],
            pixels: pixels.into(),
            labels: self.labels.clone(),
            n_classes: self.n_classes,
        })
    }
}

/// Converts raw label bytes read from `path` to class indices, failing on any label
/// `>= n_classes` (the error gives its position and value).
pub(crate) fn checked_labels(path: &Path, labels: &[u8], n_classes: usize) -> Result<Vec<usize>> {
    labels
        .iter()
        .enumerate()
        .map(|(i, &label)| {
            let label = usize::from(label);
            if label < n_classes {
                Ok(label)
            } else {
                Err(GlowError::file(
                    path,
                    format!(
                        "label {label} of record {i} is out of range (the dataset has \
                         {n_classes} classes, labels 0..{}); the file is corrupt, re-download it",
                        n_classes - 1
                    ),
                ))
            }
        })
        .collect()
}
