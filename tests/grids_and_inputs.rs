//! The library functions behind the latent-space commands' grids and inputs: laying variants out
//! one row per image, padding to whole rows, a class-conditional model's samples one class per
//! column, picking test images or image files as model inputs,
//! reconstructions and moves along a direction, and the same-images check of `sample`.

mod common;

use burn::tensor::Tensor;
use common::*;

use glowflow::data::dataset::ImageDataset;
use glowflow::io::png_grid::{pad_to_full_rows, rows_per_image};
use glowflow::io::sample_grid::ClassGrid;
use glowflow::latent::inputs::{image_file_inputs, test_set_inputs};
use glowflow::latent::{along_direction, reconstructions};
use glowflow::model::compatible::check_same_images;
use glowflow::tensor_ops::to_f64_vec;
use glowflow::{CouplingKind, Glow, GlowConfig, Latents, PermutationKind};
use rand::SeedableRng;

/// `count` 1x2x2 images, image `k` filled with the value `k`.
fn numbered_images(count: usize) -> Tensor<4> {
    let values = (0..count).flat_map(|k| [k as f32; 4]).collect();
    tensor4(values, [count, 1, 2, 2], &f32_device())
}

/// The value of each image of a batch of constant images.
fn image_values(x: Tensor<4>) -> Vec<f64> {
    to_f64_vec(x).chunks(4).map(|c| c[0]).collect()
}

#[test]
fn class_grids_hold_one_class_per_column_in_whole_rows() {
    for k in 1..=40 {
        let grid = ClassGrid::new(k, 64, 8);
        let n = grid.labels.len();
        assert!(
            n >= 64 && n.is_multiple_of(grid.columns),
            "{k} classes: {n} samples in rows of {}",
            grid.columns
        );
        assert!(
            n < 64 + grid.columns,
            "{k} classes: {n} samples, one row at most past 64"
        );
        assert!(grid
            .labels
            .iter()
            .enumerate()
            .all(|(i, &label)| label == i % k));
        if k <= 16 {
            // Every column one class, every class in a column, at least 8 columns where the
            // classes are fewer.
            assert_eq!(
                grid.columns % k,
                0,
                "{k} classes in {} columns",
                grid.columns
            );
            assert!(
                grid.columns <= 16,
                "{k} classes in {} columns",
                grid.columns
            );
            for (i, &label) in grid.labels.iter().enumerate() {
                assert_eq!(label, (i % grid.columns) % k, "{k} classes: sample {i}");
            }
        } else {
            assert_eq!(
                grid.columns, 8,
                "{k} classes cycle in the grid's own columns"
            );
        }
    }
    assert_eq!(ClassGrid::new(10, 64, 8).columns, 10);
    assert_eq!(ClassGrid::new(3, 64, 8).columns, 6);
    assert_eq!(ClassGrid::new(10, 16, 8).labels.len(), 20);
}

#[test]
fn rows_per_image_puts_the_variants_of_each_image_side_by_side() {
    // 3 variants of 2 images: block v holds images 0, 1 at variant v, valued 2v + i.
    let grid = rows_per_image(numbered_images(6), 3).expect("6 = 3 blocks of 2");
    // Row i, column v must be image i at variant v, i.e. value 2v + i.
    let want: Vec<f64> = (0..2)
        .flat_map(|i| (0..3).map(move |v| (2 * v + i) as f64))
        .collect();
    assert_eq!(image_values(grid), want);
    let err = rows_per_image(numbered_images(5), 3).expect_err("5 images are not 3 blocks");
    assert!(err.to_string().contains("5 images"), "{err}");
    assert!(rows_per_image(numbered_images(3), 0).is_err());
}

#[test]
fn pad_to_full_rows_appends_blank_images_up_to_a_whole_row() {
    let padded = pad_to_full_rows(numbered_images(5), 4);
    assert_eq!(padded.dims(), [8, 1, 2, 2]);
    assert_eq!(
        image_values(padded),
        [0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(pad_to_full_rows(numbered_images(4), 4).dims()[0], 4);
    assert_eq!(pad_to_full_rows(numbered_images(3), 0).dims()[0], 3);
}

fn model(n_classes: usize) -> Glow {
    let device = f64_device();
    let config = GlowConfig {
        n_classes,
        ..tiny_config(1, CouplingKind::Affine, PermutationKind::InvConv, false)
    };
    let x = normal([6, 1, 4, 4], 0.3, 1, &device);
    let glow = config.init(&device).expect("valid");
    let classes =
        (n_classes > 0).then(|| glow.one_hot(&[0, 1, 2, 0, 1, 2], &device).expect("one-hot"));
    let glow = glow.data_init(x, classes.as_ref()).expect("init");
    perturb(glow, 0.02, 2)
}

/// Four 1x4x4 images with distinct pixel values and labels 2, 0, 1, 2.
fn test_set() -> ImageDataset {
    ImageDataset {
        shape: [1, 4, 4],
        pixels: (0..64).map(|v| (v * 4) as u8).collect(),
        labels: Some(vec![2, 0, 1, 2]),
        n_classes: 3,
    }
}

/// `(v + 0.5) / 256 - 0.5`: an 8-bit value at the centre of its bin in model space.
fn bin_centre(v: u8) -> f64 {
    (f64::from(v) + 0.5) / 256.0 - 0.5
}

#[test]
fn test_set_inputs_take_the_chosen_images_and_their_labels() {
    let data = test_set();
    let inputs = test_set_inputs(&model(3), &data, &[3, 1]).expect("in range");
    assert_eq!(inputs.names, ["test[3]", "test[1]"]);
    assert_eq!(inputs.labels, Some(vec![2, 0]));
    let want: Vec<f64> = [data.image(3), data.image(1)]
        .concat()
        .into_iter()
        .map(bin_centre)
        .collect();
    let got = to_f64_vec(inputs.x);
    assert_eq!(got.len(), want.len());
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12));

    let unconditional = test_set_inputs(&model(0), &data, &[0]).expect("in range");
    assert_eq!(
        unconditional.labels, None,
        "labels only for conditional models"
    );
    let err = test_set_inputs(&model(0), &data, &[4]).expect_err("out of range");
    assert!(err.to_string().contains("index 4"), "{err}");
}

fn write_grey_png(path: &std::path::Path, width: u32, height: u32, pixels: &[u8]) {
    let file = std::fs::File::create(path).expect("create png");
    let mut encoder = png::Encoder::new(file, width, height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("header");
    writer.write_image_data(pixels).expect("pixels");
}

#[test]
fn image_file_inputs_check_size_and_class_and_read_the_pixels() {
    let dir = TempDir::new("file-inputs");
    let pixels: Vec<u8> = (0..16).map(|v| (v * 16 + 3) as u8).collect();
    let good = dir.path("good.png");
    write_grey_png(&good, 4, 4, &pixels);
    let wide = dir.path("wide.png");
    write_grey_png(&wide, 6, 4, &[0; 24]);

    let inputs = image_file_inputs(&model(0), &[good.clone(), good.clone()], None).expect("ok");
    assert_eq!(
        inputs.names,
        [good.display().to_string(), good.display().to_string()]
    );
    assert_eq!(inputs.labels, None);
    let want: Vec<f64> = pixels
        .iter()
        .chain(&pixels)
        .map(|&v| bin_centre(v))
        .collect();
    let got = to_f64_vec(inputs.x);
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12));

    let err = image_file_inputs(&model(0), std::slice::from_ref(&wide), None)
        .expect_err("6x4 for a 4x4 model");
    assert_error_mentions(err, &wide, &["4x6", "4x4"]);

    let conditional =
        image_file_inputs(&model(3), std::slice::from_ref(&good), Some(1)).expect("class 1");
    assert_eq!(conditional.labels, Some(vec![1]));
    // Without a class, each image's most likely one.
    let guessed = image_file_inputs(&model(3), std::slice::from_ref(&good), None)
        .expect("its most likely class");
    let likely = model(3)
        .predicted_classes(guessed.x.clone())
        .expect("classes");
    assert_eq!(guessed.labels, Some(likely.bayes));
    let too_big =
        image_file_inputs(&model(3), std::slice::from_ref(&good), Some(3)).expect_err("3 classes");
    assert!(too_big.to_string().contains("class 3"), "{too_big}");
    let unwanted = image_file_inputs(&model(0), &[good], Some(0)).expect_err("unconditional");
    assert!(unwanted.to_string().contains("unconditional"), "{unwanted}");
}

#[test]
fn reconstructions_start_with_the_images_and_keeping_every_level_gives_them_back() {
    let glow = model(0);
    let x = normal([2, 1, 4, 4], 0.3, 7, &glow.device());
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let all = reconstructions(&glow, x.clone(), None, 0.7, &mut rng).expect("reconstruct");
    let levels = glow.config().levels;
    assert_eq!(all.dims(), [2 * (levels + 1), 1, 4, 4]);
    let block = |v: usize| all.clone().narrow(0, 2 * v, 2);
    assert_eq!(
        max_abs_diff(block(0), x.clone()),
        0.0,
        "the originals first"
    );
    assert!(
        max_abs_diff(block(1), x.clone()) < 1e-9,
        "keeping all L levels is decode(encode(x))"
    );
    assert!(
        max_abs_diff(block(levels), x) > 1e-3,
        "keeping only the top level redraws the rest"
    );
}

#[test]
fn along_direction_adds_alpha_times_the_direction_to_the_latents() {
    let glow = model(0);
    let device = glow.device();
    let x = normal([2, 1, 4, 4], 0.3, 8, &device);
    let (start, _) = glow.encode(x.clone(), None).expect("encode");
    let direction = Latents {
        levels: start
            .levels
            .iter()
            .enumerate()
            .map(|(l, e)| {
                let [_, c, h, w] = e.dims();
                normal([1, c, h, w], 0.1, 20 + l as u64, &device)
            })
            .collect(),
    };
    let moved = along_direction(&glow, x.clone(), &direction, &[0.0, 2.0]).expect("move");
    assert_eq!(moved.dims(), [4, 1, 4, 4]);
    assert!(
        max_abs_diff(moved.clone().narrow(0, 0, 2), x) < 1e-9,
        "alpha 0"
    );
    // Encoding the alpha = 2 images gives back the original latents plus 2 d.
    let (end, _) = glow.encode(moved.narrow(0, 2, 2), None).expect("encode");
    for ((e0, e1), d) in start.levels.iter().zip(&end.levels).zip(&direction.levels) {
        let want = e0.clone() + d.clone() * 2.0;
        assert!(max_abs_diff(e1.clone(), want) < 1e-8);
    }
    let err = along_direction(
        &glow,
        normal([1, 1, 4, 4], 0.3, 9, &device),
        &direction,
        &[f64::NAN],
    )
    .expect_err("NaN alpha");
    assert!(err.to_string().contains("finite"), "{err}");
}

#[test]
fn check_same_images_compares_shape_and_bit_depth() {
    let base = tiny_config(1, CouplingKind::Affine, PermutationKind::InvConv, false);
    let deeper = GlowConfig {
        steps: 4,
        width: 16,
        ..base.clone()
    };
    check_same_images(&base, &deeper, "deep").expect("same images, other architecture");
    let five_bits = GlowConfig {
        n_bits: 5,
        ..base.clone()
    };
    let err = check_same_images(&base, &five_bits, "runs/five").expect_err("other bit depth");
    let msg = err.to_string();
    assert!(
        msg.contains("runs/five") && msg.contains("5 bits") && msg.contains("8 bits"),
        "{msg}"
    );
    let rgb = tiny_config(3, CouplingKind::Affine, PermutationKind::InvConv, false);
    let err = check_same_images(&base, &rgb, "rgb").expect_err("other channels");
    assert!(err.to_string().contains("3x4x4"), "{err}");
}
