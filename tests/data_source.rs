//! Loading a run's dataset for a model ([`glowflow::data::source`]): padding, the shape and
//! class checks against the model, and the class names of each kind of source.

mod common;

use common::{write_idx_dataset, TempDir};
use glowflow::data::dataset::{ImageDataset, Split};
use glowflow::data::source::{load_datasets, load_split, DataSource, FASHION_MNIST_CLASS_NAMES};
use glowflow::{GlowConfig, GlowError, ImageShape};

fn grey(size: usize, n_classes: usize) -> GlowConfig {
    GlowConfig {
        image: ImageShape {
            channels: 1,
            height: size,
            width: size,
        },
        levels: 2,
        steps: 1,
        width: 8,
        n_classes,
        ..GlowConfig::default()
    }
}

fn no_warnings() -> impl FnMut(String) {
    |w| panic!("unexpected warning: {w}")
}

#[test]
fn a_conditional_model_with_fewer_classes_than_the_labels_is_refused() {
    let dir = TempDir::new("source-classes");
    write_idx_dataset(&dir.0, 8, 4, 8);
    let source = DataSource::Idx { dir: dir.0.clone() };
    // MNIST-format data has 10 classes: a model conditioned on 5 cannot take its labels.
    let err = load_split(&grey(8, 5), &source, 0, Split::Test, &mut no_warnings())
        .expect_err("5 < 10 classes");
    assert!(matches!(err, GlowError::Config(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("5 classes") && msg.contains("10 classes"),
        "{msg}"
    );
    // Conditioned on all 10, every label is one the model knows.
    let (test, files) =
        load_split(&grey(8, 10), &source, 0, Split::Test, &mut no_warnings()).expect("10 classes");
    assert_eq!(test.len(), 4);
    assert!(files.is_none(), "IDX images have no files of their own");
    let labels = test.labels.expect("labelled");
    assert_eq!(labels, [0, 1, 2, 3], "the synthetic labels are i % 4");
}

#[test]
fn images_are_padded_to_pad_to_and_must_then_have_the_models_shape() {
    let dir = TempDir::new("source-pad");
    write_idx_dataset(&dir.0, 8, 4, 8);
    let source = DataSource::Idx { dir: dir.0.clone() };
    let err = load_split(&grey(16, 0), &source, 0, Split::Train, &mut no_warnings())
        .expect_err("8x8 images for a 16x16 model");
    assert!(
        err.to_string().contains("1x8x8") && err.to_string().contains("1x16x16"),
        "{err}"
    );
    let (train, test) =
        load_datasets(&grey(16, 0), &source, 16, &mut no_warnings()).expect("padded to 16");
    assert_eq!((train.shape, train.len()), ([1, 16, 16], 8));
    assert_eq!((test.shape, test.len()), ([1, 16, 16], 4));
    // The 8x8 image sits 4 pixels in from the top left; the border is zero.
    let raw = load_split(&grey(8, 0), &source, 0, Split::Test, &mut no_warnings())
        .expect("unpadded")
        .0;
    let padded = test.image(1);
    assert_eq!(padded[4 * 16 + 4], raw.image(1)[0]);
    assert_eq!(padded[0], 0);
    assert_eq!(padded[15 * 16 + 15], 0);
}

#[test]
fn class_names_follow_the_source() {
    let fashion = DataSource::Idx {
        dir: "/data/Fashion-MNIST".into(),
    };
    let names = fashion.class_names().expect("names");
    assert_eq!(names, FASHION_MNIST_CLASS_NAMES);
    assert_eq!(names[9], "ankle-boot");
    let digits = DataSource::Idx {
        dir: "/data/mnist".into(),
    };
    let digit_names = digits.class_names().expect("names");
    assert_eq!(
        digit_names,
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    );
    let cifar = DataSource::Cifar10 { dir: "x".into() };
    assert_eq!(cifar.class_names().expect("names")[0], "airplane");
    // --data keeps the format, its options and its folders' names.
    for ((train, test), (moved_train, moved_test)) in [
        (
            ("data/celeba64/train", "data/celeba64/test"),
            ("/d/train", "/d/test"),
        ),
        (
            ("data/imagenet32/train_32x32", "data/imagenet32/valid_32x32"),
            ("/d/train_32x32", "/d/valid_32x32"),
        ),
        (("a", "b/"), ("/d/a", "/d/b")),
    ] {
        let folder = DataSource::Folder {
            train: train.into(),
            test: test.into(),
            skip_bad_images: true,
            random_crop_from: None,
        };
        assert_eq!(
            folder.at(std::path::Path::new("/d")),
            DataSource::Folder {
                train: moved_train.into(),
                test: moved_test.into(),
                skip_bad_images: true,
                random_crop_from: None,
            },
            "{train} and {test} at /d"
        );
    }
}

#[test]
fn a_central_crop_keeps_the_middle_window_and_drops_an_odd_pixel_at_the_bottom_right() {
    // Two 1x5x6 images whose pixels say where they lie: 100 i + 10 r + c.
    let data = ImageDataset {
        shape: [1, 5, 6],
        pixels: (0..2)
            .flat_map(|i| {
                (0..5).flat_map(move |r| (0..6).map(move |c| (100 * i + 10 * r + c) as u8))
            })
            .collect(),
        labels: Some(vec![1, 0]),
        n_classes: 2,
    };
    // Excess 3 rows and 3 columns: the window starts at row 1 and column 1.
    let cropped = data.central_crop(2, 3).expect("fits");
    assert_eq!(cropped.shape, [1, 2, 3]);
    assert_eq!(
        cropped.pixels[..],
        [11, 12, 13, 21, 22, 23, 111, 112, 113, 121, 122, 123]
    );
    assert_eq!(cropped.labels, Some(vec![1, 0]));
    assert_eq!(data.central_crop(5, 6).expect("whole").pixels, data.pixels);
    let err = data.central_crop(6, 6).expect_err("too tall");
    assert!(
        err.to_string().contains("6x6") && err.to_string().contains("5x6"),
        "{err}"
    );
}

#[test]
fn a_source_with_random_crops_gives_training_its_whole_images_and_everyone_else_the_central_window()
{
    let dir = TempDir::new("random-crop-source");
    // 10x10 grey images whose pixels say where they lie: 100 i + 10 r + c (i < 2).
    let value = |i: u32, r: u32, c: u32| (100 * i + 10 * r + c) as u8;
    for (split, n) in [("train", 2), ("test", 1)] {
        for i in 0..n {
            image::GrayImage::from_fn(10, 10, |c, r| image::Luma([value(i, r, c)]))
                .save(dir.path(&format!("{split}/{i}.png")))
                .expect("save");
        }
    }
    let source = DataSource::Folder {
        train: dir.0.join("train"),
        test: dir.0.join("test"),
        skip_bad_images: false,
        random_crop_from: Some(10),
    };
    let (train, test) = load_datasets(&grey(8, 0), &source, 0, &mut no_warnings()).expect("load");
    let whole: Vec<u8> = (0..2)
        .flat_map(|i| (0..10).flat_map(move |r| (0..10).map(move |c| value(i, r, c))))
        .collect();
    assert_eq!((train.shape, &train.pixels[..]), ([1, 10, 10], &whole[..]));
    let central: Vec<u8> = (1..9)
        .flat_map(|r| (1..9).map(move |c| value(0, r, c)))
        .collect();
    assert_eq!((test.shape, &test.pixels[..]), ([1, 8, 8], &central[..]));
    let (train_windows, _) =
        load_split(&grey(8, 0), &source, 0, Split::Train, &mut no_warnings()).expect("load");
    assert_eq!(train_windows.shape, [1, 8, 8]);
    assert_eq!(&train_windows.pixels[..64], &central[..]);
}
