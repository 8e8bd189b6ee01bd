//! Learning-curve charts as a user gets them: a PNG file of the requested size with curves, a
//! band, axes and text drawn, written atomically.

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::scratch_dir;
use glowflow::io::plot::{write_line_chart, Series};

/// Decodes an 8-bit RGB PNG into (width, height, pixels row by row).
fn decode(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let file = std::fs::File::open(path).expect("the chart was written");
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("a PNG header");
    let mut bytes = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut bytes).expect("PNG image data");
    assert_eq!(
        (info.color_type, info.bit_depth),
        (png::ColorType::Rgb, png::BitDepth::Eight)
    );
    let pixels = bytes.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect();
    (info.width, info.height, pixels)
}

/// The distinct colours in the rectangle of columns `x0..x1` and rows `y0..y1`.
fn colours(
    pixels: &[[u8; 3]],
    width: u32,
    (x0, x1): (u32, u32),
    (y0, y1): (u32, u32),
) -> HashSet<[u8; 3]> {
    (y0..y1)
        .flat_map(|y| (x0..x1).map(move |x| pixels[(y * width + x) as usize]))
        .collect()
}

#[test]
fn chart_decodes_to_its_size_with_curves_band_axes_and_text() {
    let dir = scratch_dir("plots");
    let path = dir.join("curves.png");
    let falling = |start: f64| -> Vec<(f64, f64)> {
        (0..=20)
            .map(|i| (50.0 * i as f64, start * (-(i as f64) / 8.0).exp() + 3.0))
            .collect()
    };
    let mean = falling(4.0);
    let band = mean.iter().map(|&(x, y)| (x, y - 0.3, y + 0.3)).collect();
    let series = [
        Series {
            name: "train".into(),
            points: falling(5.0),
            band: None,
        },
        Series {
            name: "test (EMA)".into(),
            points: mean,
            band: Some(band),
        },
    ];
    write_line_chart(
        &path,
        "Learning curves",
        "step",
        "bits/dim",
        &series,
        640,
        400,
    )
    .expect("the chart is written");

    let (width, height, pixels) = decode(&path);
    assert_eq!((width, height), (640, 400));
    // The middle of the image lies inside the plot area whatever the margins: there the two
    // curves, the band (alone and under a curve), the grid and the white background differ.
    let plot = colours(&pixels, width, (160, 480), (100, 300));
    assert!(plot.len() >= 5, "{} colours in the plot area", plot.len());
    assert!(plot.contains(&[255, 255, 255]), "white background");
    // The title row: dark glyph pixels and the grey levels of anti-aliased edges.
    let title = colours(&pixels, width, (0, width), (0, height / 16));
    let dark = title.iter().filter(|c| c.iter().all(|&v| v < 64)).count();
    let grey = title
        .iter()
        .filter(|c| c.iter().all(|&v| (64..224).contains(&v)))
        .count();
    assert!(dark >= 1 && grey >= 3, "title text: {title:?}");
    // Written by a rename: nothing but the chart is left in the folder.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .expect("the scratch folder")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    assert_eq!(names, ["curves.png"]);
}

#[test]
fn chart_in_a_missing_folder_is_an_error_naming_the_file() {
    let path = scratch_dir("plots-missing").join("no-such-folder/curves.png");
    let err = write_line_chart(&path, "t", "x", "y", &[], 400, 300)
        .expect_err("the folder does not exist");
    assert!(err.to_string().contains("curves.png"), "{err}");
}
