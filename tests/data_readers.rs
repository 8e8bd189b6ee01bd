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
    assert_error_mentions(err, &empty.0, &["no .png / .jpg"]);
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

/// The miniature downsampled ImageNet that numpy itself wrote
/// (tests/fixtures/make_downsampled_imagenet.py): 8x8 images, two training archives (stored and
/// deflated) and a validation archive, each in the folder its zip unpacks to.
fn imagenet_fixture() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/downsampled-imagenet")
}

/// The fixture's pixels, from the script's formula: image i, channel c, row y, column x holds
/// (offset + 37 i + 101 c + 7 y + 3 x) mod 256, in CHW order.
fn imagenet_pixels(images: std::ops::Range<usize>, offset: usize) -> Vec<u8> {
    let mut pixels = Vec::new();
    for i in images {
        for c in 0..3 {
            for y in 0..8 {
                for x in 0..8 {
                    pixels.push(((offset + 37 * i + 101 * c + 7 * y + 3 * x) % 256) as u8);
                }
            }
        }
    }
    pixels
}

/// A `.npy` file, format version 1: the header dict `dict` padded with spaces and a newline to
/// a multiple of 64 bytes (as numpy pads it), then `data`.
fn npy(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    bytes
}

/// A zip archive of the stored `members` (name, bytes), as `numpy.savez` writes one.
fn npz(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in members {
        zip.start_file(*name, options).expect("zip member");
        zip.write_all(bytes).expect("zip write");
    }
    zip.finish().expect("zip").into_inner()
}

/// An archive of `labels` (little-endian int64) and `data` with the header dict `data_dict`.
fn imagenet_npz(labels: &[i64], data_dict: &str, data: &[u8]) -> Vec<u8> {
    let label_bytes: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    let labels_dict = format!(
        "{{'descr': '<i8', 'fortran_order': False, 'shape': ({},), }}",
        labels.len()
    );
    npz(&[
        ("labels.npy", npy(&labels_dict, &label_bytes)),
        ("data.npy", npy(data_dict, data)),
    ])
}

#[test]
fn downsampled_imagenet_splits_read_numpys_own_archives_exactly() {
    use glowflow::data::downsampled_imagenet::{load_split, read_npz_batch};
    let train = load_split(&imagenet_fixture(), Split::Train).expect("train split");
    assert_eq!(train.shape, [3, 8, 8]);
    assert_eq!(train.pixels, imagenet_pixels(0..5, 0));
    // The files' labels 1, 1000, 7, 512, 3, from 0.
    assert_eq!(train.labels, Some(vec![0, 999, 6, 511, 2]));
    assert_eq!(train.n_classes, 1000);
    let test = load_split(&imagenet_fixture(), Split::Test).expect("test split");
    assert_eq!(test.shape, [3, 8, 8]);
    assert_eq!(test.pixels, imagenet_pixels(0..2, 50));
    assert_eq!(test.labels, Some(vec![999, 6]));
    // The deflated archive with big-endian int32 labels, alone.
    let batch =
        read_npz_batch(&imagenet_fixture().join("Imagenet8_train_npz/train_data_batch_2.npz"))
            .expect("batch 2");
    assert_eq!(batch.pixels, imagenet_pixels(3..5, 0));
    assert_eq!(batch.labels, Some(vec![511, 2]));
    // Through a run's data source, named as train.json names it.
    let source: glowflow::data::source::DataSource = serde_json::from_str(&format!(
        r#"{{"format": "downsampled-imagenet", "dir": {:?}}}"#,
        imagenet_fixture()
    ))
    .expect("source");
    let shape = glowflow::ImageShape {
        channels: 3,
        height: 8,
        width: 8,
    };
    let loaded = source
        .load(Split::Test, &shape, &mut |w| panic!("{w}"))
        .expect("load");
    assert_eq!(loaded, test);
}

#[test]
fn downsampled_imagenet_reads_python2_headers_and_four_dimensional_data() {
    let dir = TempDir::new("imagenet-py2");
    let data: Vec<u8> = (0..2 * 3 * 4 * 4).map(|i| (i * 5 % 256) as u8).collect();
    let dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (2L, 3L, 4L, 4L), }";
    let path = dir.write(
        "train_data_batch_1.npz",
        &imagenet_npz(&[5, 1000], dict, &data),
    );
    let batch = glowflow::data::downsampled_imagenet::read_npz_batch(&path).expect("read");
    assert_eq!(batch.shape, [3, 4, 4]);
    assert_eq!(batch.pixels, data);
    assert_eq!(batch.labels, Some(vec![4, 999]));
}

#[test]
fn downsampled_imagenet_bad_archives_are_errors_that_name_the_file() {
    let dir = TempDir::new("imagenet-bad");
    let rows = |shape: &str, descr: &str, order: &str| {
        format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}")
    };
    let good = rows("(2, 48)", "|u1", "False");
    // An int64 labels header claiming `shape` (the data holds two labels).
    let claimed_labels = |shape: &str| rows(shape, "<i8", "False");
    let data = vec![7u8; 96];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "label-0",
            imagenet_npz(&[3, 0], &good, &data),
            "label 0 of image 1 is not from 1 to 1000",
        ),
        (
            "label-1001",
            imagenet_npz(&[1001, 3], &good, &data),
            "label 1001 of image 0",
        ),
        (
            "row-100",
            imagenet_npz(&[1, 2], &rows("(2, 100)", "|u1", "False"), &[0; 200]),
            "must be [2, 3·S·S]",
        ),
        (
            "three-labels",
            imagenet_npz(&[1, 2, 3], &good, &data),
            "with 3 labels it must be [3, 3·S·S]",
        ),
        (
            "floats",
            imagenet_npz(&[1, 2], &rows("(2, 48)", "<f4", "False"), &data),
            "not bytes (u1) in C order",
        ),
        (
            "fortran",
            imagenet_npz(&[1, 2], &rows("(2, 48)", "|u1", "True"), &data),
            "in Fortran order",
        ),
        (
            "short",
            imagenet_npz(&[1, 2], &good, &data[..90]),
            "holds 90 bytes",
        ),
        (
            "no-labels",
            npz(&[("data.npy", npy(&good, &data))]),
            "no array `labels`",
        ),
        (
            "labels-claim-a-million",
            npz(&[
                ("labels.npy", npy(&claimed_labels("(1000000,)"), &[1; 16])),
                ("data.npy", npy(&good, &data)),
            ]),
            "array `labels` holds 16 bytes, not the 8000000",
        ),
        (
            "labels-beyond-memory",
            npz(&[
                (
                    "labels.npy",
                    npy(&claimed_labels("(4611686018427387904,)"), &[1; 16]),
                ),
                ("data.npy", npy(&good, &data)),
            ]),
            "more bytes than memory can hold",
        ),
        (
            "not-npy",
            npz(&[
                ("labels.npy", b"0,1".to_vec()),
                ("data.npy", npy(&good, &data)),
            ]),
            "not a NumPy array",
        ),
        (
            "not-zip",
            b"PK but not a zip archive".to_vec(),
            "not a NumPy .npz archive",
        ),
    ];
    for (name, bytes, fact) in cases {
        let path = dir.write(&format!("{name}.npz"), &bytes);
        let err = glowflow::data::downsampled_imagenet::read_npz_batch(&path).expect_err(name);
        assert_error_mentions(err, &path, &[fact, "unpack it again"]);
    }
}

#[test]
fn downsampled_imagenet_finds_every_numbered_batch_or_says_which_is_missing() {
    use glowflow::data::downsampled_imagenet::load_split;
    let fixture = imagenet_fixture().join("Imagenet8_train_npz");
    let batch = |n: usize| {
        std::fs::read(fixture.join(format!("train_data_batch_{n}.npz"))).expect("fixture")
    };
    // Batches 1 and 3 beside each other: 2 is missing.
    let gap = TempDir::new("imagenet-gap");
    gap.write("train_data_batch_1.npz", &batch(1));
    gap.write("train_data_batch_3.npz", &batch(2));
    let err = load_split(&gap.0, Split::Train).expect_err("a gap");
    assert_error_mentions(err, &gap.0, &["train_data_batch_2.npz is missing"]);
    // The same number twice, in two folders.
    let twice = TempDir::new("imagenet-twice");
    twice.write("a/train_data_batch_1.npz", &batch(1));
    twice.write("b/train_data_batch_1.npz", &batch(1));
    let err = load_split(&twice.0, Split::Train).expect_err("twice");
    assert_error_mentions(err, &twice.0, &["train_data_batch_1.npz is there twice"]);
    // Nothing there, or archives that hold no images: where to download the split.
    let empty = TempDir::new("imagenet-empty");
    let hollow = TempDir::new("imagenet-hollow");
    hollow.write("train_data_batch_1.npz", &hollow_npz());
    hollow.write("val_data.npz", &hollow_npz());
    for (dir, fact) in [
        (&empty.0, "image-net.org"),
        (&hollow.0, "no images in its archives"),
    ] {
        for split in [Split::Train, Split::Test] {
            let err = load_split(dir, split).expect_err("no images");
            assert_error_mentions(err, dir, &[fact, "Imagenet32_train_npz.zip"]);
        }
    }
    let missing = empty.0.join("nowhere");
    let err = load_split(&missing, Split::Train).expect_err("missing");
    assert_error_mentions(err, &missing, &["does not exist"]);
    // Batches of two sizes.
    let mixed = TempDir::new("imagenet-mixed");
    mixed.write("train_data_batch_1.npz", &batch(1));
    let small = imagenet_npz(
        &[1],
        "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 48), }",
        &[0; 48],
    );
    let second = mixed.write("train_data_batch_2.npz", &small);
    let err = load_split(&mixed.0, Split::Train).expect_err("two sizes");
    assert_error_mentions(err, &second, &["4 pixels wide", "8"]);
}

/// An archive of no images, 8 x 8 ones by its data's shape.
fn hollow_npz() -> Vec<u8> {
    imagenet_npz(
        &[],
        "{'descr': '|u1', 'fortran_order': False, 'shape': (0, 192), }",
        &[],
    )
}

#[test]
fn downsampled_imagenet_class_names_come_from_map_clsloc_or_are_the_labels() {
    use glowflow::data::downsampled_imagenet::class_names;
    let numbers = class_names(&imagenet_fixture()).expect("names");
    assert_eq!(numbers.len(), 1000);
    assert_eq!((numbers[0].as_str(), numbers[999].as_str()), ("1", "1000"));
    // The devkit's map, in another order than its labels, beside the validation archive.
    let dir = TempDir::new("imagenet-names");
    dir.write(
        "Imagenet8_val_npz/val_data.npz",
        &std::fs::read(imagenet_fixture().join("Imagenet8_val_npz/val_data.npz")).expect("fixture"),
    );
    let line = |label: usize| format!("n{:08} {label} class_{label}\n", label * 3);
    let map: String = (1..=1000).rev().map(line).collect();
    let map_path = dir.write("Imagenet8_val_npz/map_clsloc.txt", map.as_bytes());
    let names = class_names(&dir.0).expect("names");
    assert_eq!(names.len(), 1000);
    assert_eq!(
        (names[0].as_str(), names[999].as_str()),
        ("class_1", "class_1000")
    );
    // A label missing, or named twice.
    let short: String = (1..=999).map(line).collect();
    std::fs::write(&map_path, short).expect("write");
    assert_error_mentions(
        class_names(&dir.0).expect_err("short"),
        &map_path,
        &["label 1000 has no line"],
    );
    let twice: String = (1..=1000).map(line).chain([line(7)]).collect();
    std::fs::write(&map_path, twice).expect("write");
    assert_error_mentions(
        class_names(&dir.0).expect_err("twice"),
        &map_path,
        &["line 1001", "label 7 is named twice"],
    );
}

/// Each split of the archives loads through the image cache as it loads without: the first load
/// reads the pixels out of the zips into an entry of its own (one for the training archives, one
/// for the test archive) and maps it, later loads map it without reading the pixels again; the
/// listing names each entry's archives. A rewritten archive (a new time) makes a new entry that
/// replaces its split's old one and leaves the other split's; a damaged entry is read again with
/// a note; a cache that cannot be written leaves the pixels in memory.
#[test]
fn downsampled_imagenet_splits_load_through_the_image_cache() {
    use glowflow::data::image_cache::{contents, load_archives, ImageCache};
    let dir = TempDir::new("imagenet-cached");
    let fixture = imagenet_fixture();
    for name in [
        "Imagenet8_train_npz/train_data_batch_1.npz",
        "Imagenet8_train_npz/train_data_batch_2.npz",
        "Imagenet8_val_npz/val_data.npz",
    ] {
        dir.write(name, &std::fs::read(fixture.join(name)).expect("fixture"));
    }
    let cache = TempDir::new("imagenet-cache");
    let load = |split| {
        let mut notes = Vec::new();
        let loaded = load_archives(
            &dir.0,
            split,
            &ImageCache::In(cache.0.clone()),
            &mut |note| notes.push(note),
        )
        .expect("cached load");
        (loaded, notes)
    };
    let expected = |split| match split {
        Split::Train => (imagenet_pixels(0..5, 0), vec![0, 999, 6, 511, 2]),
        Split::Test => (imagenet_pixels(0..2, 50), vec![999, 6]),
    };
    for (split, archives) in [
        (
            Split::Train,
            "train_data_batch_1.npz, train_data_batch_2.npz",
        ),
        (Split::Test, "val_data.npz"),
    ] {
        let (pixels, labels) = expected(split);
        let (first, notes) = load(split);
        assert!(first.pixels.is_mapped());
        assert_eq!(first.pixels, pixels);
        assert_eq!(
            (first.shape, first.labels, first.n_classes),
            ([3, 8, 8], Some(labels), 1000)
        );
        assert!(
            notes.len() == 1
                && notes[0].contains(&format!("decoded the {} images", pixels.len() / 192))
                && notes[0].contains(archives),
            "{notes:?}"
        );
        let (again, notes) = load(split);
        assert!(again.pixels.is_mapped() && notes.is_empty(), "{notes:?}");
        assert_eq!(again.pixels, pixels);
    }
    let held = contents(&cache.0).expect("contents");
    let mut listed: Vec<_> = held
        .entries
        .iter()
        .map(|e| (e.archives.clone(), e.images, e.shape))
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            (
                Some("train_data_batch_1.npz, train_data_batch_2.npz".to_string()),
                5,
                [3, 8, 8]
            ),
            (Some("val_data.npz".to_string()), 2, [3, 8, 8]),
        ]
    );
    let canonical = dir.0.canonicalize().expect("canonical");
    assert!(held.entries.iter().all(|e| e.folder == canonical));

    // Batch 2 rewritten with a new time: a new training entry replaces the old one.
    let batch_2 = dir.0.join("Imagenet8_train_npz/train_data_batch_2.npz");
    let file = std::fs::File::options()
        .write(true)
        .open(&batch_2)
        .expect("open");
    file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000))
        .expect("set time");
    drop(file);
    let (rewritten, notes) = load(Split::Train);
    assert_eq!(rewritten.pixels, expected(Split::Train).0);
    assert!(
        notes.len() == 1 && notes[0].contains("decoded the 5 images"),
        "{notes:?}"
    );
    let entries = contents(&cache.0).expect("contents").entries;
    assert_eq!(entries.len(), 2, "{entries:?}");

    // The training entry cut short: read again, with a note naming it.
    let train_entry = entries
        .iter()
        .find(|e| e.images == 5)
        .expect("train entry")
        .file
        .clone();
    let bytes = std::fs::read(&train_entry).expect("entry");
    std::fs::write(&train_entry, &bytes[..bytes.len() - 10]).expect("cut");
    let (reread, notes) = load(Split::Train);
    assert_eq!(reread.pixels, expected(Split::Train).0);
    assert!(
        notes.len() == 2 && notes[0].contains("is unusable") && notes[1].contains("decoded"),
        "{notes:?}"
    );

    // A cache under a file cannot be written: the pixels stay in memory.
    let blocker = TempDir::new("imagenet-blocker");
    let file = blocker.write("file", b"a file, not a directory");
    let mut notes = Vec::new();
    let in_memory = load_archives(
        &dir.0,
        Split::Test,
        &ImageCache::In(file.join("cache")),
        &mut |note| notes.push(note),
    )
    .expect("in memory");
    assert!(!in_memory.pixels.is_mapped());
    assert_eq!(in_memory.pixels, expected(Split::Test).0);
    assert!(
        notes.len() == 1 && notes[0].contains("cannot use the image cache"),
        "{notes:?}"
    );
    // An archive whose pixels are cut short, after a whole one was read into the entry: the
    // load fails as without the cache, naming the archive, and leaves no file in the cache.
    let short = imagenet_npz(
        &[1, 2],
        "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 192), }",
        &[7; 300],
    );
    std::fs::write(&batch_2, short).expect("damage");
    let fresh = TempDir::new("imagenet-cache-bad");
    // A load into the fresh cache that fails: its error, with no file left in the cache.
    let fails_in_fresh_cache = |dir: &std::path::Path, split| {
        let err = load_archives(dir, split, &ImageCache::In(fresh.0.clone()), &mut |_| {})
            .expect_err("the load fails");
        let left = common::cache_files(&fresh.0);
        assert!(left.is_empty(), "{left:?}");
        err
    };
    let err = fails_in_fresh_cache(&dir.0, Split::Train);
    assert_error_mentions(err, &batch_2, &["holds 300 bytes, not the 384"]);
    // A split whose archives hold no images fails before an entry is written.
    let hollow = TempDir::new("imagenet-hollow-cached");
    hollow.write("val_data.npz", &hollow_npz());
    let err = fails_in_fresh_cache(&hollow.0, Split::Test);
    assert_error_mentions(
        err,
        &hollow.0,
        &["no images in its archives (val_data.npz)"],
    );
}
