//! The `glowflow` binary end to end: build a model, sample a PNG grid from it, and fail clearly
//! on bad arguments.

use std::path::PathBuf;
use std::process::Command;

fn glowflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_glowflow"))
        .args(args)
        .output()
        .expect("the glowflow binary runs")
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("glowflow-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Width, height and colour type from a PNG's IHDR chunk.
fn png_header(bytes: &[u8]) -> (u32, u32, u8) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (be(16), be(20), bytes[25])
}

#[test]
fn new_then_sample_writes_a_png_grid() {
    let dir = scratch_dir("sample");
    let model = dir.join("model");
    let out = glowflow(&[
        "new",
        "--image",
        "1x8x8",
        "--levels",
        "2",
        "--steps",
        "2",
        "--width",
        "8",
        "--out",
        model.to_str().expect("utf-8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(model.join("config.json").exists() && model.join("model.safetensors").exists());
    let grid = dir.join("grid.png");
    let out = glowflow(&[
        "sample",
        "--model",
        model.to_str().expect("utf-8"),
        "--n",
        "6",
        "--columns",
        "3",
        "--temperature",
        "0.7",
        "--out",
        grid.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 3 columns x 2 rows of 8x8 images with 1-pixel gaps, greyscale.
    let bytes = std::fs::read(&grid).expect("grid written");
    assert_eq!(png_header(&bytes), (3 * 9 + 1, 2 * 9 + 1, 0));
}

#[test]
fn bad_arguments_fail_with_a_message_and_no_output() {
    let dir = scratch_dir("bad");
    let model = dir.join("model");
    let out = glowflow(&[
        "new",
        "--image",
        "1x28x28",
        "--levels",
        "3",
        "--out",
        model.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not divisible by 2^L"), "{stderr}");
    assert!(!model.exists(), "nothing is written for an invalid config");

    let out = glowflow(&[
        "sample",
        "--model",
        model.to_str().expect("utf-8"),
        "--out",
        "x.png",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config.json"),
        "names the missing file: {stderr}"
    );

    let out = glowflow(&[
        "new",
        "--coupling",
        "cubic",
        "--out",
        model.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cubic"));
}
