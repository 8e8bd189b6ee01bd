//! The latent-space subcommands end to end on a small model and the synthetic 8x8 dataset:
//! `encode` / `decode` reproduce the images through the files they write, `manipulate` moves
//! images along a cached class direction, a class-conditional model encodes image files under
//! their most likely class unless given one, and bad inputs fail with clear messages.

mod common;

use std::path::Path;

use common::{f32_device, fails, max_abs_diff, perturb, scratch_dir, succeeds, write_idx_dataset};
use glowflow::io::latent_file::load_latents;
use glowflow::tensor_ops::{from_f64, to_f64_vec};
use glowflow::{load_model, save_model, Latents};
use rand::SeedableRng;

/// Runs a command that must fail, and checks that its message mentions every one of `facts`.
fn fails_mentioning(args: &[&str], facts: &[&str]) {
    let stderr = fails(args);
    for fact in facts {
        assert!(stderr.contains(fact), "{args:?}: no {fact:?} in {stderr}");
    }
}

/// A grey PNG as (width, height, pixels).
fn read_png(path: &Path) -> (usize, usize, Vec<u8>) {
    common::grey_png(std::fs::File::open(path).expect("png exists"))
}

fn write_png(path: &Path, size: usize, pixels: &[u8]) {
    let file = std::fs::File::create(path).expect("create png");
    let mut encoder = png::Encoder::new(file, size as u32, size as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("header");
    writer.write_image_data(pixels).expect("pixels");
}

/// Image `(row, col)` of a grid of 8x8 images with 1-pixel gaps.
fn grid_cell(grid: &(usize, usize, Vec<u8>), row: usize, col: usize) -> Vec<u8> {
    let (width, _, pixels) = grid;
    let (top, left) = (1 + row * 9, 1 + col * 9);
    (0..8)
        .flat_map(|y| (0..8).map(move |x| pixels[(top + y) * width + left + x]))
        .collect()
}

/// The 8x8 images of the synthetic test set, as the IDX file holds them.
fn test_images(dir: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(dir.join("t10k-images-idx3-ubyte")).expect("idx");
    bytes[16..].chunks(64).map(<[u8]>::to_vec).collect()
}

/// A model built by `glowflow new` (no data-dependent init): its couplings and priors end in
/// zero-initialised convolutions, so as written it is a linear map (ActNorm identity, rotations,
/// `sigmoid(2)` coupling scales).
fn new_model(dir: &Path, image: &str) -> String {
    let model = dir.join(format!("model-{image}"));
    let model = model.to_str().expect("utf-8").to_string();
    succeeds(&[
        "new", "--image", image, "--levels", "2", "--depth", "2", "--width", "8", "--lu", "true",
        "--out", &model,
    ]);
    model
}

/// The spread of every trained parameter: `N(0, 0.05²)` noise.
const PERTURBATION: f64 = 0.05;

/// `new_model` with every trained parameter perturbed by [`PERTURBATION`] (and saved over it),
/// so that the commands below go through non-trivial couplings and priors. Checks, on the
/// test images, that the perturbation moved the latents by more than 20 % and made the map
/// non-linear (log|det| differs between images), and returns the perturbed model's latents of
/// `indices` as the library computes them.
fn perturbed_model(dir: &Path, image: &str, indices: &[usize]) -> (String, Latents) {
    let path = new_model(dir, image);
    let device = f32_device();
    let built = load_model(Path::new(&path), &device).expect("load the new model");
    let model = perturb(built.clone(), PERTURBATION, 11);
    save_model(&model, Path::new(&path)).expect("save the perturbed model");
    let originals = test_images(dir);
    let pixels: Vec<f64> = indices
        .iter()
        .flat_map(|&i| {
            originals[i]
                .iter()
                .map(|&v| (f64::from(v) + 0.5) / 256.0 - 0.5)
        })
        .collect();
    let x = from_f64(pixels, [indices.len(), 1, 8, 8], &device);
    let flat = |l: &Latents| -> Vec<f64> {
        l.levels
            .iter()
            .flat_map(|t| to_f64_vec(t.clone()))
            .collect()
    };
    let (before, ld_before) = built.encode(x.clone(), None).expect("encode");
    let (after, ld_after) = model.encode(x, None).expect("encode");
    let (before_v, after_v) = (flat(&before), flat(&after));
    let moved = before_v
        .iter()
        .zip(&after_v)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        .sqrt()
        / before_v.iter().map(|a| a * a).sum::<f64>().sqrt();
    let spread = |ld: Vec<f64>| {
        ld.iter().fold(f64::NEG_INFINITY, |m, v| m.max(*v))
            - ld.iter().fold(f64::INFINITY, |m, v| m.min(*v))
    };
    let (spread_before, spread_after) =
        (spread(to_f64_vec(ld_before)), spread(to_f64_vec(ld_after)));
    println!("{image}: perturbation moved the latents by {moved:.3} (relative); log|det| spread over images {spread_before:.2e} -> {spread_after:.2e}");
    assert!(
        moved > 0.2,
        "the perturbation moved the latents by only {moved:.3e}"
    );
    assert!(
        spread_before < 1e-3 && spread_after > 0.1,
        "log|det| spreads {spread_before:.3e} -> {spread_after:.3e}"
    );
    (path, after)
}

#[test]
fn encode_then_decode_reproduces_the_images_through_the_files() {
    let dir = scratch_dir("encode");
    write_idx_dataset(&dir, 24, 8, 8);
    let data = dir.to_str().expect("utf-8");
    let (model, expected) = perturbed_model(&dir, "1x8x8", &[0, 3, 5]);
    let path = |name: &str| dir.join(name).to_str().expect("utf-8").to_string();

    // Test images by index.
    succeeds(&[
        "encode",
        "--model",
        &model,
        "--data",
        data,
        "--index",
        "0",
        "3",
        "5",
        "--out",
        &path("z.safetensors"),
    ]);
    // The file holds the perturbed model's latents: the commands ran through its couplings.
    let reloaded = load_model(Path::new(&model), &f32_device()).expect("load");
    let (written, _) =
        load_latents(&dir.join("z.safetensors"), &reloaded, &f32_device()).expect("latents");
    for (a, b) in written.levels.iter().zip(&expected.levels) {
        let gap = max_abs_diff(a.clone(), b.clone());
        assert!(
            gap < 1e-5,
            "written latents differ from the library's by {gap:.3e}"
        );
    }
    succeeds(&[
        "decode",
        "--model",
        &model,
        "--latents",
        &path("z.safetensors"),
        "--columns",
        "3",
        "--out",
        &path("back.png"),
    ]);
    let grid = read_png(&dir.join("back.png"));
    assert_eq!((grid.0, grid.1), (3 * 9 + 1, 9 + 1));
    let originals = test_images(&dir);
    for (col, index) in [0, 3, 5].into_iter().enumerate() {
        assert_eq!(
            grid_cell(&grid, 0, col),
            originals[index],
            "test image {index}"
        );
    }
    succeeds(&[
        "decode",
        "--model",
        &model,
        "--latents",
        &path("z.safetensors"),
        "--columns",
        "3",
        "--zoom",
        "2",
        "--out",
        &path("big-back.png"),
    ]);
    let zoomed = read_png(&dir.join("big-back.png"));
    assert_eq!((zoomed.0, zoomed.1), (2 * grid.0, 2 * grid.1));
    assert_eq!(
        zoomed.2[(2 * 3 + 1) * zoomed.0 + 2 * 5],
        grid.2[3 * grid.0 + 5],
        "nearest neighbour"
    );

    // Image files.
    write_png(&dir.join("a.png"), 8, &originals[1]);
    write_png(&dir.join("b.png"), 8, &originals[2]);
    succeeds(&[
        "encode",
        "--model",
        &model,
        "--image",
        &path("a.png"),
        &path("b.png"),
        "--out",
        &path("files.safetensors"),
    ]);
    succeeds(&[
        "decode",
        "--model",
        &model,
        "--latents",
        &path("files.safetensors"),
        "--out",
        &path("files.png"),
    ]);
    let grid = read_png(&dir.join("files.png"));
    assert_eq!(grid_cell(&grid, 0, 0), originals[1]);
    assert_eq!(grid_cell(&grid, 0, 1), originals[2]);

    // An image of the wrong size, and latents decoded by another architecture.
    write_png(&dir.join("big.png"), 16, &[90; 256]);
    fails_mentioning(
        &[
            "encode",
            "--model",
            &model,
            "--image",
            &path("big.png"),
            "--out",
            &path("x.safetensors"),
        ],
        &["big.png is 16x16 pixels but the model takes 8x8"],
    );
    assert!(!dir.join("x.safetensors").exists());
    fails_mentioning(
        &[
            "encode",
            "--model",
            &model,
            "--image",
            &path("missing.png"),
            "--out",
            &path("x.safetensors"),
        ],
        &["missing.png", "check the path"],
    );
    let other = new_model(&dir, "1x16x16");
    fails_mentioning(
        &[
            "decode",
            "--model",
            &other,
            "--latents",
            &path("z.safetensors"),
            "--out",
            &path("x.png"),
        ],
        &["z.safetensors", "another architecture"],
    );
}

#[test]
fn manipulate_moves_images_along_a_cached_class_direction() {
    let dir = scratch_dir("manipulate");
    write_idx_dataset(&dir, 40, 8, 8);
    let data = dir.to_str().expect("utf-8");
    let (model, _) = perturbed_model(&dir, "1x8x8", &[0, 1]);
    let out = dir.join("moved.png");
    let out_arg = out.to_str().expect("utf-8");
    let args = [
        "manipulate",
        "--model",
        &model,
        "--data",
        data,
        "--index",
        "0",
        "1",
        "--attribute",
        "2",
        "--alphas",
        "-1,0,1",
        "--out",
        out_arg,
    ];
    let (_, stderr) = succeeds(&args);
    assert!(
        stderr.contains("10 training images with it, 30 without") && stderr.contains("written to"),
        "{stderr}"
    );
    let grid = read_png(&out);
    assert_eq!(
        (grid.0, grid.1),
        (3 * 9 + 1, 2 * 9 + 1),
        "2 images x 3 alphas"
    );
    let originals = test_images(&dir);
    for (row, original) in originals.iter().enumerate().take(2) {
        assert_eq!(&grid_cell(&grid, row, 1), original, "alpha 0 is the image");
        assert_ne!(&grid_cell(&grid, row, 2), original, "alpha 1 moves it");
    }
    assert!(
        succeeds(&args).1.contains("cached in"),
        "the second run reads the cache"
    );

    fails_mentioning(
        &[
            "manipulate",
            "--model",
            &model,
            "--data",
            data,
            "--attribute",
            "hat",
            "--out",
            out_arg,
        ],
        &["no class `hat`", "0, 1, 2"],
    );
    let other = new_model(&dir, "1x16x16");
    fails_mentioning(
        &[
            "manipulate",
            "--model",
            &other,
            "--data",
            data,
            "--attribute",
            "1",
            "--out",
            out_arg,
        ],
        &["8x8", "model expects 1x16x16"],
    );
}

#[test]
fn two_manipulates_at_once_write_one_cache_that_both_agree_with() {
    let dir = scratch_dir("manipulate-twice");
    write_idx_dataset(&dir, 40, 8, 8);
    let data = dir.to_str().expect("utf-8");
    let (model, _) = perturbed_model(&dir, "1x8x8", &[0, 1]);
    let run = |out: &str| {
        common::glowflow_command()
            .args(["manipulate", "--model", &model, "--data", data])
            .args(["--index", "0", "--attribute", "1", "--alphas", "0,1"])
            .args(["--out", dir.join(out).to_str().expect("utf-8")])
            .output()
            .expect("runs")
    };
    // Both compute the direction and write the cache (atomically) at about the same time.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run("a.png"));
        let b = s.spawn(|| run("b.png"));
        (a.join().expect("a"), b.join().expect("b"))
    });
    for out in [&a, &b] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(read_png(&dir.join("a.png")), read_png(&dir.join("b.png")));
    let third = run("c.png");
    assert!(
        String::from_utf8_lossy(&third.stderr).contains("cached in"),
        "the cache left behind is whole and read"
    );
    assert_eq!(read_png(&dir.join("c.png")), read_png(&dir.join("a.png")));
    let directions = Path::new(&model).join("directions");
    let leftovers: Vec<_> = std::fs::read_dir(&directions)
        .expect("directions")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A class-conditional model of 3 classes with a classifier head, built by `glowflow new` in
/// `dir` and perturbed so that its classes differ (saved over it), and its path.
fn conditional_model(dir: &Path) -> (String, glowflow::Glow) {
    let model = dir.join("conditional");
    let model_arg = model.to_str().expect("utf-8").to_string();
    // The tiny architecture (the first 8 arguments of a tiny run).
    let mut args = vec!["new"];
    args.extend(&common::TINY_RUN[..8]);
    args.extend([
        "--n-classes",
        "3",
        "--class-head",
        "true",
        "--out",
        &model_arg,
    ]);
    succeeds(&args);
    let glow = perturb(load_model(&model, &f32_device()).expect("load"), 0.3, 5);
    save_model(&glow, &model).expect("save the perturbed model");
    (model_arg, glow)
}

#[test]
fn sample_without_a_class_puts_one_class_in_each_column() {
    let dir = scratch_dir("sample-classes");
    let (model, glow) = conditional_model(&dir);
    let out = dir.join("samples.png");
    let (stdout, _) = succeeds(&[
        "sample",
        "--model",
        &model,
        "--n",
        "16",
        "--temperature",
        "0.8",
        "--seed",
        "3",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(stdout.contains("one class per column"), "{stdout}");
    // A grid of no columns is refused, naming the option.
    let out_arg = out.to_str().expect("utf-8");
    let stderr = fails(&[
        "sample",
        "--model",
        &model,
        "--columns",
        "0",
        "--out",
        out_arg,
    ]);
    assert!(stderr.contains("--columns"), "{stderr}");
    // 16 samples of 3 classes: 6 columns (the classes twice), rounded up to 3 whole rows.
    let grid = read_png(&out);
    assert_eq!((grid.0, grid.1), (6 * 9 + 1, 3 * 9 + 1));
    let labels: Vec<usize> = (0..18).map(|i| i % 3).collect();
    let classes = glow.one_hot(&labels, &f32_device()).expect("one-hot");
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let x = glow
        .sample(18, 0.8, Some(&classes), &mut rng)
        .expect("samples");
    let pixels = to_f64_vec(glowflow::likelihood::to_pixels(x, 8));
    for (i, expected) in pixels.chunks(64).enumerate() {
        let expected: Vec<u8> = expected.iter().map(|&v| v as u8).collect();
        assert_eq!(
            grid_cell(&grid, i / 6, i % 6),
            expected,
            "sample {i}, class {}",
            i % 3
        );
    }
}

#[test]
fn encode_labels_each_image_with_its_most_likely_class_unless_given_one() {
    let dir = scratch_dir("encode-likely-class");
    let (model, glow) = conditional_model(&dir);
    let model_arg = model.as_str();
    let device = f32_device();
    // Six images, and the model's inputs for them (pixels at their bin centres).
    let pixels: Vec<Vec<u8>> = (0..6u8)
        .map(|i| (0..64u8).map(|p| i * 45 + p % 8).collect())
        .collect();
    let files: Vec<String> = pixels
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let path = dir.join(format!("image-{i}.png"));
            write_png(&path, 8, image);
            path.to_str().expect("utf-8").to_string()
        })
        .collect();
    let centres: Vec<f64> = pixels
        .iter()
        .flatten()
        .map(|&v| (f64::from(v) + 0.5) / 256.0 - 0.5)
        .collect();
    let x = from_f64(centres, [6, 1, 8, 8], &device);
    let likely = glow.predicted_classes(x.clone()).expect("classes").bayes;
    println!("the model's classes of the six images: {likely:?}");
    assert!(likely.iter().any(|&k| k != likely[0]), "{likely:?}");

    for (class, expected) in [(None, likely.clone()), (Some("1"), vec![1; 6])] {
        let out = dir.join("z.safetensors");
        let mut args = vec![
            "encode",
            "--model",
            model_arg,
            "--out",
            out.to_str().expect("utf-8"),
        ];
        args.push("--image");
        args.extend(files.iter().map(String::as_str));
        if let Some(class) = class {
            args.extend(["--class", class]);
        }
        let (stdout, _) = succeeds(&args);
        for (file, label) in files.iter().zip(&expected) {
            assert!(
                stdout.contains(&format!("{file}: "))
                    && stdout.contains(&format!("class {label})")),
                "{file} as class {label}: {stdout}"
            );
        }
        let (latents, meta) = load_latents(&out, &glow, &device).expect("latents");
        let labels: Vec<String> = expected.iter().map(usize::to_string).collect();
        assert_eq!(meta["labels"], labels.join(","), "{class:?}");
        let classes = glow.one_hot(&expected, &device).expect("one-hot");
        let (mine, _) = glow.encode(x.clone(), Some(&classes)).expect("encode");
        for (a, b) in latents.levels.iter().zip(&mine.levels) {
            assert!(max_abs_diff(a.clone(), b.clone()) < 1e-6, "{class:?}");
        }
    }
}
