//! Dataset readers: each test writes small synthetic IDX / CIFAR-10 files into its own temp
//! directory, reads them back, and checks exact values, shapes and the errors on bad input.

use std::io::Write;

use glowflow::data::cifar::{load_cifar10_split, read_cifar_batch};
use glowflow::data::dataset::{ImageDataset, Split};
use glowflow::data::folder::load_png_folder;
use glowflow::data::idx::{load_mnist_split, read_idx_images, read_idx_labels};

mod common;
use common::{assert_error_mentions, TempDir};

/// `n` distinct-looking bytes starting from `seed`.
fn pattern(n: usize, seed: usize) -> Vec<u8> {
    (0..n)
        .map(|i| ((i * 7 + seed * 13 + 1) % 256) as u8)
        .collect()
}

fn idx_images(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for field in [0x0000_0803, n, rows, cols] {
        bytes.extend(field.to_be_bytes());
    }
    bytes.extend(pixels);
    bytes
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for field in [0x0000_0801, labels.len() as u32] {
        bytes.extend(field.to_be_bytes());
    }
    bytes.extend(labels);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// CIFAR-10 records: one label byte then 3072 pixel bytes each.
fn cifar_records(labels: &[u8], pixels: &[u8]) -> Vec<u8> {
    labels
        .iter()
        .zip(pixels.chunks_exact(3072))
        .flat_map(|(&label, image)| std::iter::once(label).chain(image.iter().copied()))
        .collect()
}

#[test]
fn idx_images_round_trip_exact_values_and_shape() {
    let dir = TempDir::new("idx-images");
    let pixels = pattern(3 * 4 * 5, 0);
    let path = dir.write("imgs", &idx_images(3, 4, 5, &pixels));
    let (n, rows, cols, read) = read_idx_images(&path).expect("read images");
    assert_eq!((n, rows, cols), (3, 4, 5));
    assert_eq!(read, pixels);
}

#[test]
fn idx_labels_round_trip_exact_values() {
    let dir = TempDir::new("idx-labels");
    let labels = [9, 0, 3, 3, 7];
    let path = dir.write("labels", &idx_labels(&labels));
    assert_eq!(read_idx_labels(&path).expect("read labels"), labels);
}

#[test]
fn mnist_train_split_reads_plain_files() {
    let dir = TempDir::new("mnist-train");
    let pixels = pattern(2 * 28 * 28, 1);
    dir.write("train-images-idx3-ubyte", &idx_images(2, 28, 28, &pixels));
    dir.write("train-labels-idx1-ubyte", &idx_labels(&[5, 8]));
    let data = load_mnist_split(&dir.0, Split::Train).expect("load train split");
    assert_eq!(data.shape, [1, 28, 28]);
    assert_eq!(data.len(), 2);
    assert_eq!(data.pixels, pixels);
    assert_eq!(data.labels, Some(vec![5, 8]));
    assert_eq!(data.n_classes, 10);
}

#[test]
fn mnist_test_split_reads_gzipped_t10k_files() {
    let dir = TempDir::new("mnist-test-gz");
    let pixels = pattern(3 * 6 * 4, 2);
    dir.write(
        "t10k-images-idx3-ubyte.gz",
        &gzip(&idx_images(3, 6, 4, &pixels)),
    );
    dir.write("t10k-labels-idx1-ubyte.gz", &gzip(&idx_labels(&[0, 9, 4])));
    // A train split beside it must not be picked for the test split.
    dir.write(
        "train-images-idx3-ubyte",
        &idx_images(1, 6, 4, &pattern(24, 3)),
    );
    let data = load_mnist_split(&dir.0, Split::Test).expect("load test split");
    assert_eq!(data.shape, [1, 6, 4]);
    assert_eq!(data.pixels, pixels);
    assert_eq!(data.labels, Some(vec![0, 9, 4]));
}

#[test]
fn idx_wrong_magic_names_file_and_magic_found() {
    let dir = TempDir::new("idx-magic");
    let path = dir.write("labels-not-images", &idx_labels(&[1, 2]));
    let err = read_idx_images(&path).expect_err("labels file read as images");
    assert_error_mentions(err, &path, &["0x00000801", "0x00000803"]);
}

#[test]
fn idx_truncated_images_are_an_error() {
    let dir = TempDir::new("idx-truncated");
    let mut bytes = idx_images(2, 3, 3, &pattern(18, 0));
    bytes.truncate(bytes.len() - 5);
    let path = dir.write("imgs", &bytes);
    let err = read_idx_images(&path).expect_err("truncated file");
    assert_error_mentions(err, &path, &["truncated", "18 bytes", "13 bytes"]);
}

#[test]
fn idx_file_shorter_than_header_is_an_error() {
    let dir = TempDir::new("idx-short-header");
    let path = dir.write("imgs", &idx_images(2, 3, 3, &[])[..10]);
    let err = read_idx_images(&path).expect_err("header cut short");
    assert_error_mentions(err, &path, &["truncated", "only 10 bytes"]);
}

#[test]
fn idx_trailing_bytes_are_an_error() {
    let dir = TempDir::new("idx-trailing");
    let mut bytes = idx_labels(&[1, 2, 3]);
    bytes.extend([0xde, 0xad]);
    let path = dir.write("labels", &bytes);
    let err = read_idx_labels(&path).expect_err("trailing garbage");
    assert_error_mentions(err, &path, &["2 extra bytes", "(3 bytes)", "5 bytes"]);
}

#[test]
fn mnist_count_mismatch_names_both_files_and_counts() {
    let dir = TempDir::new("mnist-mismatch");
    let images = dir.write(
        "train-images-idx3-ubyte",
        &idx_images(3, 2, 2, &pattern(12, 0)),
    );
    let labels = dir.write("train-labels-idx1-ubyte", &idx_labels(&[1, 2]));
    let err = load_mnist_split(&dir.0, Split::Train).expect_err("3 images, 2 labels");
    assert_error_mentions(
        err,
        &labels,
        &[&images.display().to_string(), "2 labels", "3 images"],
    );
}

#[test]
fn mnist_label_out_of_range_is_an_error() {
    let dir = TempDir::new("mnist-label-range");
    dir.write(
        "train-images-idx3-ubyte",
        &idx_images(2, 2, 2, &pattern(8, 0)),
    );
    let labels = dir.write("train-labels-idx1-ubyte", &idx_labels(&[3, 10]));
    let err = load_mnist_split(&dir.0, Split::Train).expect_err("label 10");
    assert_error_mentions(err, &labels, &["label 10", "record 1"]);
}

#[test]
fn mnist_missing_directory_says_how_to_install_fashion_mnist() {
    let dir = TempDir::new("mnist-missing-dir");
    let missing = dir.0.join("no-such-dir");
    let err = load_mnist_split(&missing, Split::Train).expect_err("missing dir");
    assert_error_mentions(
        err,
        &missing,
        &[
            "does not exist",
            "train-images-idx3-ubyte.gz",
            "apt-get install dataset-fashion-mnist",
            "/usr/share/datasets/fashion-mnist",
        ],
    );
}

#[test]
fn mnist_missing_label_file_names_the_names_looked_for() {
    let dir = TempDir::new("mnist-missing-labels");
    dir.write(
        "t10k-images-idx3-ubyte",
        &idx_images(1, 2, 2, &pattern(4, 0)),
    );
    let err = load_mnist_split(&dir.0, Split::Test).expect_err("no label file");
    assert_error_mentions(
        err,
        &dir.0,
        &[
            "t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz",
            "dataset-fashion-mnist",
        ],
    );
}

#[test]
fn corrupt_gzip_streams_are_errors() {
    let dir = TempDir::new("corrupt-gzip");
    let good = gzip(&idx_labels(&pattern(500, 0)));
    let cut = dir.write("cut-labels.gz", &good[..good.len() / 2]);
    let mut flipped = good.clone();
    flipped[12..40].fill(0xff);
    let garbled = dir.write("garbled-labels.gz", &flipped);
    let not_gzip = dir.write("plain-labels.gz", &idx_labels(&[1]));
    for path in [cut, garbled, not_gzip] {
        let err = read_idx_labels(&path).expect_err("corrupt gzip");
        assert_error_mentions(err, &path, &["gzip"]);
    }
}

#[test]
fn cifar_batch_round_trip_exact_values_and_shape() {
    let dir = TempDir::new("cifar-batch");
    let pixels = pattern(3 * 3072, 4);
    let path = dir.write("data_batch_1.bin", &cifar_records(&[6, 0, 9], &pixels));
    let data = read_cifar_batch(&path).expect("read batch");
    assert_eq!(data.shape, [3, 32, 32]);
    assert_eq!(data.len(), 3);
    assert_eq!(data.pixels, pixels);
    assert_eq!(data.labels, Some(vec![6, 0, 9]));
    assert_eq!(data.n_classes, 10);
    // The red plane of image 1 is the 1024 bytes right after its label byte.
    assert_eq!(&data.image(1)[..1024], &pixels[3072..3072 + 1024]);
}

#[test]
fn cifar_train_split_concatenates_five_batches_in_order_from_subfolder() {
    let dir = TempDir::new("cifar-train");
    let pixels: Vec<Vec<u8>> = (0..5).map(|i| pattern(3072, 10 + i)).collect();
    for (i, image) in pixels.iter().enumerate() {
        let name = format!("cifar-10-batches-bin/data_batch_{}.bin", i + 1);
        dir.write(&name, &cifar_records(&[i as u8 * 2], image));
    }
    let data = load_cifar10_split(&dir.0, Split::Train).expect("load train split");
    assert_eq!(data.shape, [3, 32, 32]);
    assert_eq!(data.pixels, pixels.concat());
    assert_eq!(data.labels, Some(vec![0, 2, 4, 6, 8]));
}

#[test]
fn cifar_test_split_reads_test_batch_from_dir() {
    let dir = TempDir::new("cifar-test");
    let pixels = pattern(2 * 3072, 20);
    dir.write("test_batch.bin", &cifar_records(&[1, 7], &pixels));
    let data = load_cifar10_split(&dir.0, Split::Test).expect("load test split");
    assert_eq!(data.pixels, pixels);
    assert_eq!(data.labels, Some(vec![1, 7]));
}

#[test]
fn cifar_label_out_of_range_is_an_error() {
    let dir = TempDir::new("cifar-label");
    let path = dir.write(
        "test_batch.bin",
        &cifar_records(&[2, 10], &pattern(2 * 3072, 0)),
    );
    let err = read_cifar_batch(&path).expect_err("label 10");
    assert_error_mentions(err, &path, &["label 10", "record 1"]);
}

#[test]
fn cifar_size_not_multiple_of_record_is_an_error() {
    let dir = TempDir::new("cifar-size");
    let mut bytes = cifar_records(&[2], &pattern(3072, 0));
    bytes.push(0);
    let path = dir.write("test_batch.bin", &bytes);
    let err = read_cifar_batch(&path).expect_err("3074 bytes");
    assert_error_mentions(err, &path, &["3074 bytes", "3073-byte"]);
    let empty = dir.write("empty.bin", &[]);
    let err = read_cifar_batch(&empty).expect_err("empty file");
    assert_error_mentions(err, &empty, &["0 bytes"]);
}

#[test]
fn cifar_missing_files_lists_the_names_looked_for() {
    let dir = TempDir::new("cifar-missing");
    // Four of the five train batches are not enough.
    for i in 1..=4 {
        dir.write(
            &format!("data_batch_{i}.bin"),
            &cifar_records(&[0], &pattern(3072, 0)),
        );
    }
    let err = load_cifar10_split(&dir.0, Split::Train).expect_err("data_batch_5 missing");
    assert_error_mentions(err, &dir.0, &["data_batch_5.bin", "cifar-10-batches-bin"]);
    let err = load_cifar10_split(&dir.0, Split::Test).expect_err("test_batch missing");
    assert_error_mentions(err, &dir.0, &["test_batch.bin"]);
}

#[test]
fn pad_to_centres_28x28_in_32x32_and_keeps_labels() {
    let pixels: Vec<u8> = (0..2 * 28 * 28).map(|i| (i % 255 + 1) as u8).collect();
    let data = ImageDataset {
        shape: [1, 28, 28],
        pixels: pixels.clone().into(),
        labels: Some(vec![4, 1]),
        n_classes: 10,
    };
    let padded = data.pad_to(32, 32).expect("pad");
    assert_eq!(padded.shape, [1, 32, 32]);
    assert_eq!(padded.len(), 2);
    assert_eq!(padded.labels, Some(vec![4, 1]));
    for n in 0..2 {
        for r in 0..32 {
            for c in 0..32 {
                let inside = (2..30).contains(&r) && (2..30).contains(&c);
                let expected = if inside {
                    pixels[n * 784 + (r - 2) * 28 + (c - 2)]
                } else {
                    0
                };
                assert_eq!(
                    padded.image(n)[r * 32 + c],
                    expected,
                    "image {n} at ({r},{c})"
                );
            }
        }
    }
}

#[test]
fn pad_to_odd_padding_puts_extra_pixel_bottom_right() {
    let data = ImageDataset {
        shape: [2, 2, 3],
        pixels: (1..=12).collect(),
        labels: None,
        n_classes: 0,
    };
    let padded = data.pad_to(5, 4).expect("pad");
    assert_eq!(padded.shape, [2, 5, 4]);
    #[rustfmt::skip]
    let expected: Vec<u8> = vec![
        0, 0, 0, 0,   1, 2, 3, 0,   4, 5, 6, 0,     0, 0, 0, 0,   0, 0, 0, 0,
        0, 0, 0, 0,   7, 8, 9, 0,   10, 11, 12, 0,  0, 0, 0, 0,   0, 0, 0, 0,
    ];
    assert_eq!(padded.pixels, expected);
    assert_eq!(padded.labels, None);
}

#[test]
fn pad_to_smaller_target_is_an_error() {
    let data = ImageDataset {
        shape: [1, 28, 28],
        pixels: vec![0; 784].into(),
        labels: None,
        n_classes: 0,
    };
    let msg = data.pad_to(32, 27).expect_err("narrower").to_string();
    assert!(msg.contains("28x28") && msg.contains("32x27"), "{msg}");
}

#[test]
fn len_is_empty_and_image_index_whole_images() {
    let data = ImageDataset {
        shape: [2, 1, 2],
        pixels: (0..12).collect(),
        labels: None,
        n_classes: 0,
    };
    assert_eq!(data.len(), 3);
    assert!(!data.is_empty());
    assert_eq!(data.image(2), &[8, 9, 10, 11]);
    let empty = ImageDataset {
        pixels: Vec::<u8>::new().into(),
        ..data
    };
    assert!(empty.is_empty());
}

/// Encodes an 8-bit PNG of `color` from interleaved (HWC) samples.
fn png_bytes(width: u32, height: u32, color: png::ColorType, samples: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("png header");
        writer.write_image_data(samples).expect("png data");
    }
    bytes
}

#[test]
fn png_folder_flat_rgb_is_unlabelled_chw_in_name_order() {
    let dir = TempDir::new("png-flat");
    // 3 wide, 2 high, RGB interleaved: pixel p has samples (10p, 10p+1, 10p+2).
    let hwc: Vec<u8> = (0..6)
        .flat_map(|p| [10 * p, 10 * p + 1, 10 * p + 2])
        .collect();
    let second: Vec<u8> = hwc.iter().map(|v| v + 100).collect();
    dir.write("b.png", &png_bytes(3, 2, png::ColorType::Rgb, &second));
    dir.write("a.PNG", &png_bytes(3, 2, png::ColorType::Rgb, &hwc));
    dir.write("notes.txt", b"not an image");
    let data = load_png_folder(&dir.0).expect("load folder");
    assert_eq!(data.shape, [3, 2, 3]);
    assert_eq!((data.labels, data.n_classes), (None, 0));
    let red: Vec<u8> = (0..6).map(|p| 10 * p).collect();
    let green: Vec<u8> = red.iter().map(|v| v + 1).collect();
    let blue: Vec<u8> = red.iter().map(|v| v + 2).collect();
    let first_chw = [red, green, blue].concat();
    let second_chw: Vec<u8> = first_chw.iter().map(|v| v + 100).collect();
    assert_eq!(data.pixels, [first_chw, second_chw].concat());
}

#[test]
fn png_folder_class_subfolders_give_labels_and_alpha_is_dropped() {
    let dir = TempDir::new("png-classes");
    dir.write(
        "cats/x.png",
        &png_bytes(2, 1, png::ColorType::Grayscale, &[1, 2]),
    );
    dir.write(
        "dogs/y.png",
        &png_bytes(2, 1, png::ColorType::GrayscaleAlpha, &[3, 99, 4, 99]),
    );
    dir.write(
        "dogs/z.png",
        &png_bytes(2, 1, png::ColorType::Grayscale, &[5, 6]),
    );
    let data = load_png_folder(&dir.0).expect("load folder");
    assert_eq!(data.shape, [1, 1, 2]);
    assert_eq!(data.pixels, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(data.labels, Some(vec![0, 1, 1]));
    assert_eq!(data.n_classes, 2);
}

#[test]
fn png_folder_shape_mismatch_names_both_files() {
    let dir = TempDir::new("png-mismatch");
    let first = dir.write(
        "a.png",
        &png_bytes(2, 2, png::ColorType::Grayscale, &[0; 4]),
    );
    let odd = dir.write("b.png", &png_bytes(2, 2, png::ColorType::Rgb, &[0; 12]));
    let err = load_png_folder(&dir.0).expect_err("grey and RGB mixed");
    assert_error_mentions(
        err,
        &odd,
        &[&first.display().to_string(), "[3, 2, 2]", "[1, 2, 2]"],
    );
}

#[test]
fn png_folder_corrupt_or_empty_is_an_error() {
    let dir = TempDir::new("png-corrupt");
    let mut bytes = png_bytes(4, 4, png::ColorType::Rgb, &pattern(48, 0));
    bytes.truncate(bytes.len() - 20);
    let corrupt = dir.write("img.png", &bytes);
    let err = load_png_folder(&dir.0).expect_err("truncated png");
    assert_error_mentions(err, &corrupt, &["not a readable PNG"]);
    let empty = TempDir::new("png-empty");
    let err = load_png_folder(&empty.0).expect_err("empty folder");
    assert_error_mentions(err, &empty.0, &["no .png files"]);
}

#[test]
fn idx_header_dimensions_that_overflow_are_an_error() {
    let dir = TempDir::new("idx-overflow");
    let path = dir.write("imgs", &idx_images(u32::MAX, u32::MAX, u32::MAX, &[0; 8]));
    let err = read_idx_images(&path).expect_err("dimensions overflow");
    assert_error_mentions(err, &path, &["overflow", "4294967295"]);
}

#[test]
fn idx_header_with_no_images_is_an_error() {
    let dir = TempDir::new("idx-empty");
    let images = dir.write("imgs", &idx_images(0, 28, 28, &[]));
    let err = read_idx_images(&images).expect_err("0 images");
    assert_error_mentions(err, &images, &["[0, 28, 28]", "empty"]);
    let labels = dir.write("labels", &idx_labels(&[]));
    let err = read_idx_labels(&labels).expect_err("0 labels");
    assert_error_mentions(err, &labels, &["[0]", "empty"]);
    let no_pixels = dir.write("flat", &idx_images(2, 0, 28, &[]));
    let err = read_idx_images(&no_pixels).expect_err("images of 0 rows");
    assert_error_mentions(err, &no_pixels, &["[2, 0, 28]"]);
}
