//! Image folders (PNG / JPEG, resize + centre-crop, channels, bad images) and the CelebA
//! attribute list: each test writes synthetic files into its own temp directory and checks the
//! shapes, pixels, labels and errors that come back.

use std::path::PathBuf;

use glowflow::data::celeba::read_celeba_attributes;
use glowflow::data::folder::{load_image_folder, BadImage, FolderLoad, FolderOptions};
use glowflow::GlowError;
use image::{GrayImage, Luma, Rgb, RgbImage};

mod common;
use common::{assert_error_mentions, TempDir};

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
    assert_error_mentions(err, &empty.0, &["no .png files", ".jpg"]);

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
