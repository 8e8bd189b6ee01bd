//! The latent-space subcommands end to end on a small model and the synthetic 8x8 dataset:
//! `encode` / `decode` reproduce the images through the files they write, `manipulate` moves
//! images along a cached class direction, and bad inputs fail with clear messages.

mod common;

use std::path::Path;
use std::process::Command;

use common::{scratch_dir, write_idx_dataset};

fn glowflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_glowflow"))
        .args(args)
        .output()
        .expect("the glowflow binary runs")
}

fn succeeds(args: &[&str]) -> String {
    let out = glowflow(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {stderr}");
    stderr
}

/// Runs a command that must fail, and checks that its message mentions every one of `facts`.
fn fails(args: &[&str], facts: &[&str]) {
    let out = glowflow(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for fact in facts {
        assert!(stderr.contains(fact), "{args:?}: no {fact:?} in {stderr}");
    }
}

/// A grey PNG as (width, height, pixels).
fn read_png(path: &Path) -> (usize, usize, Vec<u8>) {
    let decoder = png::Decoder::new(std::fs::File::open(path).expect("png exists"));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, buf)
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

/// A data-initialised-free 1x8x8 model (random weights): enough for exactness checks.
fn new_model(dir: &Path, image: &str) -> String {
    let model = dir.join(format!("model-{image}"));
    let model = model.to_str().expect("utf-8").to_string();
    succeeds(&[
        "new", "--image", image, "--levels", "2", "--depth", "2", "--width", "8", "--lu", "true",
        "--out", &model,
    ]);
    model
}

#[test]
fn encode_then_decode_reproduces_the_images_through_the_files() {
    let dir = scratch_dir("encode");
    write_idx_dataset(&dir, 24, 8, 8);
    let data = dir.to_str().expect("utf-8");
    let model = new_model(&dir, "1x8x8");
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
    fails(
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
    fails(
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
    fails(
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
    let model = new_model(&dir, "1x8x8");
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
    let stderr = succeeds(&args);
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
        succeeds(&args).contains("cached in"),
        "the second run reads the cache"
    );

    fails(
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
    fails(
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
