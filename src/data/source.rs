//! Where a run's images come from ([`DataSource`]: IDX, CIFAR-10 binary, the downsampled
//! ImageNet's NumPy archives or image folders), the names of their classes, and loading one split
//! as a model of a given config will see it (padded, with its shape and labels checked against
//! the model).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::dataset::{ImageDataset, Split};
use super::folder::{self, BadImage, FolderOptions};
use super::image_cache;
use super::{cifar, downsampled_imagenet, idx};
use crate::error::{GlowError, Result};
use crate::model::config::{GlowConfig, ImageShape};

/// Fashion-MNIST's class names, by label.
pub const FASHION_MNIST_CLASS_NAMES: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
];

/// CIFAR-10's class names, by label.
pub const CIFAR10_CLASS_NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Where the images come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DataSource {
    /// MNIST-format IDX files (MNIST, Fashion-MNIST), plain or gzipped, in `dir`.
    Idx {
        /// Directory with `train-images-idx3-ubyte[.gz]` and the other three files.
        dir: PathBuf,
    },
    /// CIFAR-10 binary batches in `dir` (or `dir/cifar-10-batches-bin`).
    Cifar10 {
        /// Directory with `data_batch_1.bin` ... `test_batch.bin`.
        dir: PathBuf,
    },
    /// The downsampled ImageNet with its 1000 class labels (Chrabaszcz et al. 2017), as
    /// image-net.org distributes it: NumPy archives `train_data_batch_1.npz` … and
    /// `val_data.npz` ([`downsampled_imagenet`]).
    DownsampledImagenet {
        /// Directory with the archives, or with the folders they unpack to.
        dir: PathBuf,
    },
    /// Folders of PNG/JPEG/WebP images (one subfolder per class, or images directly),
    /// centre-cropped and resized to the model's (square) image size
    /// ([`crate::data::folder::FolderOptions::size`]) and converted to its channel count.
    Folder {
        /// Training images.
        train: PathBuf,
        /// Test images.
        test: PathBuf,
        /// Skip unreadable or unusable images with a warning instead of failing.
        #[serde(default)]
        skip_bad_images: bool,
        /// Centre-crop and resize the images to this square size instead of the model's, and
        /// train on a random model-size window of each image at each step (RealNVP's and
        /// openai/glow's LSUN: 64x64 crops of 96x96 images). Everything else that reads the
        /// images (evaluation, the latent tools, the explorer) sees their central window.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        random_crop_from: Option<usize>,
    },
}

impl DataSource {
    /// Loads one split for a model of images `image`; a missing dataset is an error that says
    /// how to get it. Folders and the downsampled ImageNet's archives load through this
    /// process's image cache ([`image_cache::of_this_process`]); images skipped in folders, and
    /// notes on the cache, are reported through `warn`.
    pub fn load(
        &self,
        split: Split,
        image: &ImageShape,
        warn: &mut dyn FnMut(String),
    ) -> Result<ImageDataset> {
        Ok(self.load_with_files(split, image, warn)?.0)
    }

    /// [`DataSource::load`], with the file of each image for folder datasets (`None` for the
    /// others).
    pub fn load_with_files(
        &self,
        split: Split,
        image: &ImageShape,
        warn: &mut dyn FnMut(String),
    ) -> Result<(ImageDataset, Option<Vec<PathBuf>>)> {
        match self {
            DataSource::Idx { dir } => Ok((idx::load_mnist_split(dir, split)?, None)),
            DataSource::Cifar10 { dir } => Ok((cifar::load_cifar10_split(dir, split)?, None)),
            DataSource::DownsampledImagenet { dir } => Ok((
                image_cache::load_archives(dir, split, image_cache::of_this_process(), warn)?,
                None,
            )),
            DataSource::Folder {
                train,
                test,
                skip_bad_images,
                random_crop_from,
            } => {
                let options = FolderOptions {
                    size: random_crop_from
                        .or((image.height == image.width).then_some(image.height)),
                    channels: Some(image.channels),
                    on_bad_image: if *skip_bad_images {
                        BadImage::Skip
                    } else {
                        BadImage::Error
                    },
                };
                let dir = match split {
                    Split::Train => train,
                    Split::Test => test,
                };
                let loaded =
                    image_cache::load_folder(dir, &options, image_cache::of_this_process(), warn)?;
                for (path, reason) in &loaded.skipped {
                    warn(format!("skipped {}: {reason}", path.display()));
                }
                Ok((loaded.dataset, Some(loaded.files)))
            }
        }
    }

    /// The names of the dataset's classes: Fashion-MNIST's ten for an IDX directory whose path
    /// mentions "fashion", the digits for other IDX data, CIFAR-10's ten, the downsampled
    /// ImageNet's from its `map_clsloc.txt` (else the labels' numbers, 1 to 1000), and the class
    /// subfolders' names for folders (empty for an unlabelled folder).
    pub fn class_names(&self) -> Result<Vec<String>> {
        let owned = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        match self {
            DataSource::Idx { dir } => {
                let fashion = dir.to_string_lossy().to_lowercase().contains("fashion");
                Ok(if fashion {
                    owned(&FASHION_MNIST_CLASS_NAMES)
                } else {
                    (0..10).map(|d| d.to_string()).collect()
                })
            }
            DataSource::Cifar10 { .. } => Ok(owned(&CIFAR10_CLASS_NAMES)),
            DataSource::DownsampledImagenet { dir } => downsampled_imagenet::class_names(dir),
            DataSource::Folder { train, .. } => folder::class_folders(train),
        }
    }

    /// The same source with its location replaced by `path` (`--data PATH`). Folders keep their
    /// names and move into `path`: `path/train` and `path/test` for celeba64's `…/train` and
    /// `…/test`, `path/train_32x32` and `path/valid_32x32` for imagenet32's.
    pub fn at(&self, path: &Path) -> DataSource {
        let moved = |folder: &Path| match folder.file_name() {
            Some(name) => path.join(name),
            None => path.into(),
        };
        match self {
            DataSource::Idx { .. } => DataSource::Idx { dir: path.into() },
            DataSource::Cifar10 { .. } => DataSource::Cifar10 { dir: path.into() },
            DataSource::DownsampledImagenet { .. } => {
                DataSource::DownsampledImagenet { dir: path.into() }
            }
            DataSource::Folder {
                train,
                test,
                skip_bad_images,
                random_crop_from,
            } => DataSource::Folder {
                train: moved(train),
                test: moved(test),
                skip_bad_images: *skip_bad_images,
                random_crop_from: *random_crop_from,
            },
        }
    }

    /// The size of the square images whose random windows training batches take (a folder
    /// source's `random_crop_from`), if any.
    pub fn random_crop_from(&self) -> Option<usize> {
        match self {
            DataSource::Folder {
                random_crop_from, ..
            } => *random_crop_from,
            _ => None,
        }
    }
}

/// The training and test sets of `source` as training reads them, padded to `pad_to` and checked
/// against the model: the test set as [`load_split`] gives it, and the training set likewise, or
/// at the source's `random_crop_from` size where it has one (its batches take random windows,
/// [`crate::data::batches::BatchSchedule::with_augment`]).
pub fn load_datasets(
    model: &GlowConfig,
    source: &DataSource,
    pad_to: usize,
    warn: &mut dyn FnMut(String),
) -> Result<(ImageDataset, ImageDataset)> {
    let train = match source.random_crop_from() {
        None => load_split(model, source, pad_to, Split::Train, warn)?.0,
        Some(size) => {
            let (data, _) = source.load_with_files(Split::Train, &model.image, warn)?;
            check_against_model(
                model,
                &data,
                Split::Train,
                [model.image.channels, size, size],
            )?;
            data
        }
    };
    Ok((
        train,
        load_split(model, source, pad_to, Split::Test, warn)?.0,
    ))
}

/// One split of `source` as the model sees it: zero-padded to `pad_to x pad_to` (0 keeps the
/// images' size), or cut to its central window of the model's size for a source with
/// `random_crop_from`, and checked against the model: the images must have the model's shape,
/// and a class-conditional model needs labels below its `n_classes`. Returns the file of each
/// image for folder datasets.
pub fn load_split(
    model: &GlowConfig,
    source: &DataSource,
    pad_to: usize,
    split: Split,
    warn: &mut dyn FnMut(String),
) -> Result<(ImageDataset, Option<Vec<PathBuf>>)> {
    let (data, files) = source.load_with_files(split, &model.image, warn)?;
    let data = if source.random_crop_from().is_some() {
        data.central_crop(model.image.height, model.image.width)?
    } else if pad_to > 0 {
        data.pad_to(pad_to, pad_to)?
    } else {
        data
    };
    let want = model.image.chw();
    check_against_model(model, &data, split, want)?;
    Ok((data, files))
}

/// Checks a split against the model: its images must have the shape `want`, and a
/// class-conditional model needs labels below its `n_classes`.
fn check_against_model(
    model: &GlowConfig,
    data: &ImageDataset,
    split: Split,
    want: [usize; 3],
) -> Result<()> {
    if data.shape != want {
        return Err(GlowError::Config(format!(
            "the {split:?} images are {}x{}x{} but the model expects {}x{}x{}; set the model's \
             image shape to match, or pad_to (e.g. 28x28 -> 32 for L = 3)",
            data.shape[0], data.shape[1], data.shape[2], want[0], want[1], want[2]
        )));
    }
    if model.n_classes > 0 && (data.labels.is_none() || data.n_classes > model.n_classes) {
        return Err(GlowError::Config(format!(
            "the model is conditioned on {} classes but the {split:?} set has {}",
            model.n_classes,
            if data.labels.is_some() {
                format!("{} classes", data.n_classes)
            } else {
                "no labels".into()
            }
        )));
    }
    Ok(())
}
