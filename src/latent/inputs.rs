//! The images a latent-space operation starts from, as model inputs at the centres of their
//! pixel bins: test-set images by index, image files of the model's size, or an image sent as
//! bytes (an upload), resized and cropped as folder datasets are. A class-conditional model
//! encodes files under the class given for all of them or, without one, each under the class it
//! finds most likely (Bayes' rule, [`Glow::predicted_classes`]); an upload comes unlabelled, for
//! its caller to choose the class.

use std::path::PathBuf;

use burn::tensor::{Device, Tensor};

use super::images_at_bin_centres;
use crate::data::dataset::ImageDataset;
use crate::data::folder::{decode_image_bytes, load_image_files, BadImage, FolderOptions};
use crate::error::{GlowError, Result};
use crate::model::glow::Glow;

/// Images as model inputs, with a name and (for class-conditional models) a label for each.
#[derive(Debug, Clone)]
pub struct ModelInputs {
    /// The images at their bin centres, `[N, C, H, W]`.
    pub x: Tensor<4>,
    /// A name for each: its file, or `test[i]`.
    pub names: Vec<String>,
    /// Their labels when the model is class-conditional and the labels are known.
    pub labels: Option<Vec<usize>>,
}

impl ModelInputs {
    /// The labels as one-hot rows `[N, n_classes]`, where there are labels.
    pub fn one_hot(&self, model: &Glow, device: &Device) -> Result<Option<Tensor<2>>> {
        self.labels
            .as_ref()
            .map(|labels| model.one_hot(labels, device))
            .transpose()
    }
}

/// Test images `indices` of `test`, with their labels when the model is class-conditional; an
/// index out of range is an error.
pub fn test_set_inputs(
    model: &Glow,
    test: &ImageDataset,
    indices: &[usize],
) -> Result<ModelInputs> {
    let x = images_at_bin_centres(model, test, indices)?;
    let labels = match (&test.labels, model.config().n_classes > 0) {
        (Some(labels), true) => Some(indices.iter().map(|&i| labels[i]).collect()),
        _ => None,
    };
    let names = indices.iter().map(|i| format!("test[{i}]")).collect();
    Ok(ModelInputs { x, names, labels })
}

/// The image files `files` (any format image folders read), converted to the model's channel count; each must have
/// the model's height and width. A class-conditional model labels them `class`, or each with its
/// most likely class without one; an unconditional one must get none.
pub fn image_file_inputs(
    model: &Glow,
    files: &[PathBuf],
    class: Option<usize>,
) -> Result<ModelInputs> {
    let image = model.config().image;
    check_class(model, class)?;
    let loaded = load_image_files(
        files,
        &FolderOptions {
            size: None,
            channels: Some(image.channels),
            on_bad_image: BadImage::Error,
        },
    )?;
    let [_, h, w] = loaded.dataset.shape;
    if [h, w] != [image.height, image.width] {
        return Err(GlowError::Config(format!(
            "{} is {h}x{w} pixels but the model takes {}x{} images; resize the image first",
            files[0].display(),
            image.height,
            image.width
        )));
    }
    let all: Vec<usize> = (0..files.len()).collect();
    let x = images_at_bin_centres(model, &loaded.dataset, &all)?;
    let labels = labels_of(model, class, &x)?;
    let names = files.iter().map(|p| p.display().to_string()).collect();
    Ok(ModelInputs { x, names, labels })
}

/// One image file given as bytes (an upload; any format image folders read), converted to the model's channel count and,
/// for a model of square images, resized and centre-cropped to its size as folder datasets are
/// ([`FolderOptions::size`]); `name` names it. A model of non-square images needs an image of
/// its exact size. An image wider or taller than `max_side` pixels is refused before it is
/// decoded. It has no label: the caller chooses the class it is encoded under (the explorer:
/// the request's, else the most likely).
pub fn image_bytes_input(
    model: &Glow,
    bytes: &[u8],
    name: &str,
    max_side: u32,
) -> Result<ModelInputs> {
    let image = model.config().image;
    let options = FolderOptions {
        size: (image.height == image.width).then_some(image.height),
        channels: Some(image.channels),
        on_bad_image: BadImage::Error,
    };
    let data = decode_image_bytes(bytes, &options, max_side)?;
    let [_, h, w] = data.shape;
    if [h, w] != [image.height, image.width] {
        return Err(GlowError::Image(format!(
            "{name} is {h}x{w} pixels but the model takes {}x{} images (non-square images are \
             not resized); resize the image first",
            image.height, image.width
        )));
    }
    Ok(ModelInputs {
        x: images_at_bin_centres(model, &data, &[0])?,
        names: vec![name.to_string()],
        labels: None,
    })
}

/// A class given for images of `model`: refused by an unconditional model, within range for a
/// class-conditional one.
fn check_class(model: &Glow, class: Option<usize>) -> Result<()> {
    match (model.config().n_classes, class) {
        (0, Some(_)) => Err(GlowError::Label(
            "the model is unconditional; give the images no class (--class)".into(),
        )),
        (k, Some(c)) if c >= k => Err(GlowError::Label(format!(
            "class {c} is out of range: the model has {k} classes (0..{})",
            k - 1
        ))),
        _ => Ok(()),
    }
}

/// The labels of images `x` given `class` (checked by [`check_class`]): none for an
/// unconditional model, `class` for every image of a class-conditional one, or without a class
/// each image's most likely class.
fn labels_of(model: &Glow, class: Option<usize>, x: &Tensor<4>) -> Result<Option<Vec<usize>>> {
    let n = x.dims()[0];
    match (model.config().n_classes, class) {
        (0, _) => Ok(None),
        (_, Some(c)) => Ok(Some(vec![c; n])),
        (_, None) => Ok(Some(model.predicted_classes(x.clone())?.bayes)),
    }
}
