//! Learning-curve charts: named (x, y) series, each with an optional shaded band, drawn as a PNG
//! line chart with a title, axes, ticks, axis labels and a legend by `plotters` (bitmap backend).
//!
//! Text is set in DejaVu Sans embedded in the binary (`fonts/DejaVuSans.ttf`, Bitstream Vera
//! licence, which allows bundling it: see `fonts/LICENSE-DejaVu.txt`) and rasterised by
//! `ab_glyph`, so drawing reads no font file and needs no system font library.

use std::error::Error;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;

use super::atomic::write_atomic;
use crate::error::{GlowError, Result};

/// One curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The name shown in the legend.
    pub name: String,
    /// The (x, y) points, joined in order; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
    /// An optional band of (x, low, high), shaded in a translucent version of the curve's colour.
    pub band: Option<Vec<(f64, f64, f64)>>,
}

/// The embedded font, registered with plotters under [`FAMILY`] on first use.
const FONT: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";
/// Series colours (matplotlib's tab10), reused in turn after the eighth series.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0x1F, 0x77, 0xB4),
    RGBColor(0xFF, 0x7F, 0x0E),
    RGBColor(0x2C, 0xA0, 0x2C),
    RGBColor(0xD6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xBD),
    RGBColor(0x8C, 0x56, 0x4B),
    RGBColor(0xE3, 0x77, 0xC2),
    RGBColor(0x17, 0xBE, 0xCF),
];
const GRID: RGBColor = RGBColor(228, 228, 228);
const LEGEND_BORDER: RGBColor = RGBColor(150, 150, 150);
/// The opacity of a band over the white background and over other bands.
const BAND_OPACITY: f64 = 0.25;
/// At most this many ticks (and grid lines) per axis.
const MAX_TICKS: usize = 8;
/// The smallest plot area, in pixels either way, worth drawing.
const MIN_PLOT_AREA: u32 = 10;

/// Coordinates of the plot area: data (x, y) to image pixels.
type Coordinates = Cartesian2d<RangedCoordf64, RangedCoordf64>;

/// Writes a line chart of `series` to `path` as a PNG (width x height pixels), with `x_label` and
/// `y_label` as axis titles and `title` on top. Series get distinct colours and a legend.
/// Non-finite points are skipped; an empty chart (no finite points) still renders axes. The file
/// is written atomically.
pub fn write_line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    width: u32,
    height: u32,
) -> Result<()> {
    let (rgb, _) = render(title, x_label, y_label, series, width, height)
        .map_err(|e| GlowError::file(path, format!("cannot draw the chart: {e}")))?;
    write_atomic(path, &encode_png(path, &rgb, width, height)?)
}

/// Draws the chart into RGB bytes (row-major, 3 per pixel), returning them with the plot area's
/// coordinates.
fn render(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    width: u32,
    height: u32,
) -> std::result::Result<(Vec<u8>, Coordinates), Box<dyn Error>> {
    static FONT_REGISTERED: OnceLock<bool> = OnceLock::new();
    if !*FONT_REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok()) {
        return Err("the embedded font does not parse".into());
    }
    let (x_range, y_range) = data_ranges(series);
    let layout = Layout::new(title, (&x_range, &y_range), width, height).ok_or_else(|| {
        format!("a {width}x{height} chart is too small for its labels; draw it larger")
    })?;
    let mut rgb = vec![255; width as usize * height as usize * 3];
    let coordinates = {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        let coordinates = draw(
            &root,
            &layout,
            (title, x_label, y_label),
            series,
            x_range,
            y_range,
        )?;
        root.present()?;
        coordinates
    };
    Ok((rgb, coordinates))
}

/// Text sizes and the margins around the plot area, all in pixels, scaled with the image.
struct Layout {
    text: f64,
    title: f64,
    margin: u32,
    right_margin: u32,
    tick: u32,
    x_label_area: u32,
    y_label_area: u32,
}

impl Layout {
    /// The layout for a `width x height` image with the tick labels of `x_range` and `y_range`;
    /// the title shrinks to fit the width. `None` when no plot area of [`MIN_PLOT_AREA`] is left.
    fn new(
        title: &str,
        (x_range, y_range): (&Range<f64>, &Range<f64>),
        width: u32,
        height: u32,
    ) -> Option<Layout> {
        let text = (f64::from(width.min(height)) / 24.0).max(12.0);
        let (margin, tick) = ((text * 0.6) as u32, (text * 0.35) as u32 + 2);
        let fits = |&size: &f64| text_width(title, size) + 2 * margin <= width;
        let title = [1.3, 1.15, 1.0, 0.85]
            .map(|f| f * text)
            .into_iter()
            .find(fits)
            .unwrap_or(0.85 * text);
        let x_label_area = tick + (2.6 * text) as u32 + margin / 2;
        let y_label_area = tick + widest_tick_label(y_range, text) + (1.6 * text) as u32 + margin;
        // The last x tick label is centred on the right edge of the plot.
        let right_margin = margin.max(widest_tick_label(x_range, text) / 2 + margin / 2);
        let caption = (title * 1.5) as u32;
        let plot_width = width.checked_sub(margin + right_margin + y_label_area)?;
        let plot_height = height.checked_sub(2 * margin + x_label_area + caption)?;
        (plot_width >= MIN_PLOT_AREA && plot_height >= MIN_PLOT_AREA).then_some(Layout {
            text,
            title,
            margin,
            right_margin,
            tick,
            x_label_area,
            y_label_area,
        })
    }
}

/// The width in pixels of the widest tick label of an axis over `range`, at `size` pixels.
fn widest_tick_label(range: &Range<f64>, size: f64) -> u32 {
    let exponent = tick_exponent(range);
    let ticks = RangedCoordf64::from(range.clone()).key_points(MAX_TICKS);
    let widths = ticks
        .into_iter()
        .map(|v| text_width(&format_tick(v, exponent), size));
    widths.max().unwrap_or(0)
}

/// The width in pixels of `s` set at `size` pixels.
fn text_width(s: &str, size: f64) -> u32 {
    text_style(size).font.box_size(s).map_or(0, |(w, _)| w)
}

/// The embedded font at `size` pixels, in black.
fn text_style(size: f64) -> TextStyle<'static> {
    TextStyle::from((FAMILY, size).into_font()).color(&BLACK)
}

/// Draws the grid, the bands, the curves, the plot frame, the axes with their ticks and labels,
/// the title and the legend on `root`.
fn draw(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    layout: &Layout,
    (title, x_label, y_label): (&str, &str, &str),
    series: &[Series],
    x_range: Range<f64>,
    y_range: Range<f64>,
) -> std::result::Result<Coordinates, Box<dyn Error>> {
    root.fill(&WHITE)?;
    let (x_exponent, y_exponent) = (tick_exponent(&x_range), tick_exponent(&y_range));
    let mut chart = ChartBuilder::on(root)
        .caption(title, text_style(layout.title))
        .margin(layout.margin)
        .margin_right(layout.right_margin)
        .x_label_area_size(layout.x_label_area)
        .y_label_area_size(layout.y_label_area)
        .build_cartesian_2d(x_range, y_range)?;
    chart
        .configure_mesh()
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(BLACK)
        .set_all_tick_mark_size(layout.tick)
        .x_labels(MAX_TICKS)
        .y_labels(MAX_TICKS)
        .x_label_formatter(&|&v| format_tick(v, x_exponent))
        .y_label_formatter(&|&v| format_tick(v, y_exponent))
        .label_style(text_style(layout.text))
        .axis_desc_style(text_style(layout.text))
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let outline = band_outline(s.band.as_deref().unwrap_or(&[]));
        if outline.len() >= 4 {
            let fill = colour(i).mix(BAND_OPACITY).filled();
            chart.draw_series(std::iter::once(Polygon::new(outline, fill)))?;
        }
    }
    let line_width = (layout.text / 8.0).round().max(2.0) as u32;
    for (i, s) in series.iter().enumerate() {
        let style = colour(i).stroke_width(line_width);
        let points: Vec<(f64, f64)> = s.points.iter().copied().filter(usable_point).collect();
        if let [only] = points[..] {
            chart.draw_series(std::iter::once(Circle::new(
                only,
                line_width,
                style.filled(),
            )))?;
        }
        // The legend sample is raised to the middle of the lower-case letters beside it.
        let (sample, raise) = ((1.5 * layout.text) as i32, (0.1 * layout.text) as i32);
        chart
            .draw_series(LineSeries::new(points, style))?
            .label(s.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new([(x, y - raise), (x + sample, y - raise)], style)
            });
    }
    // The frame's left and bottom edges lie on the axis lines, just outside the plot area.
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    let corners = [(xs.start - 1, ys.start), (xs.end - 1, ys.end)];
    root.draw(&Rectangle::new(corners, BLACK))?;
    if !series.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .margin(layout.margin)
            .legend_area_size((2.0 * layout.text) as u32)
            .background_style(WHITE)
            .border_style(LEGEND_BORDER)
            .label_font(text_style(layout.text))
            .draw()?;
    }
    Ok(chart.as_coord_spec().clone())
}

/// The x and y ranges of the usable points and bands: x exactly, y padded by 5 % either side;
/// `0..1` for an axis with no usable value, and a range widened when it is (nearly) empty.
fn data_ranges(series: &[Series]) -> (Range<f64>, Range<f64>) {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for s in series {
        for &(x, y) in s.points.iter().filter(|p| usable_point(p)) {
            xs.push(x);
            ys.push(y);
        }
        for &(x, lo, hi) in band_points(s.band.as_deref().unwrap_or(&[])) {
            xs.push(x);
            ys.extend([lo, hi]);
        }
    }
    let (x_lo, x_hi) = widen_degenerate(range(&xs).unwrap_or((0.0, 1.0)));
    let (y_lo, y_hi) = widen_degenerate(range(&ys).unwrap_or((0.0, 1.0)));
    let y_pad = 0.05 * (y_hi - y_lo);
    (x_lo..x_hi, y_lo - y_pad..y_hi + y_pad)
}

/// The smallest and largest value, `None` when there are none.
fn range(values: &[f64]) -> Option<(f64, f64)> {
    let lo = values.iter().copied().reduce(f64::min)?;
    Some((lo, values.iter().copied().fold(lo, f64::max)))
}

/// Widens an empty or vanishingly small range so that it can carry ticks.
fn widen_degenerate((lo, hi): (f64, f64)) -> (f64, f64) {
    if hi - lo > 1e-9 * lo.abs().max(hi.abs()) {
        (lo, hi)
    } else if lo == 0.0 {
        (-1.0, 1.0)
    } else {
        (lo - 0.1 * lo.abs(), hi + 0.1 * hi.abs())
    }
}

/// The band entries whose three values are all usable.
fn band_points(band: &[(f64, f64, f64)]) -> impl Iterator<Item = &(f64, f64, f64)> {
    band.iter()
        .filter(|&&(x, lo, hi)| usable(x) && usable(lo) && usable(hi))
}

/// The closed outline of a band: along its high edge, then back along its low edge.
fn band_outline(band: &[(f64, f64, f64)]) -> Vec<(f64, f64)> {
    let high = band_points(band).map(|&(x, _, hi)| (x, hi));
    let low: Vec<(f64, f64)> = band_points(band).map(|&(x, lo, _)| (x, lo)).collect();
    high.chain(low.into_iter().rev()).collect()
}

/// Whether both coordinates of a point can be plotted.
fn usable_point(&(x, y): &(f64, f64)) -> bool {
    usable(x) && usable(y)
}

/// Whether a value can be plotted: finite and small enough that ranges of such values stay finite.
fn usable(v: f64) -> bool {
    v.is_finite() && v.abs() < 1e300
}

/// The decimal exponent `k` of the step between the ticks plotters puts on an axis over `range`
/// (steps are 1, 2 or 5 x 10^k), which says how many decimals the tick labels need.
fn tick_exponent(range: &Range<f64>) -> i32 {
    match RangedCoordf64::from(range.clone()).key_points(MAX_TICKS)[..] {
        // The tolerance keeps a step of 10^k computed as 0.99999.. x 10^k at exponent k.
        [a, b, ..] => ((b - a).log10() + 1e-6).floor() as i32,
        _ => 0,
    }
}

/// A compact tick label: decimals as fine as the step m x 10^`exponent` needs, or scientific
/// notation (`1e-4`, `2.5e5`) for very small or large values.
fn format_tick(v: f64, exponent: i32) -> String {
    if v == 0.0 {
        "0".to_string()
    } else if v.abs() >= 1e5 || v.abs() < 1e-3 {
        format!("{:e}", nearest_multiple(v, exponent))
    } else {
        format!("{v:.*}", (-exponent).max(0) as usize)
    }
}

/// The multiple of 10^`exponent` nearest `v`, divided rather than multiplied by a power of ten
/// when the exponent is negative, so that e.g. 3.0000000000000003e-4 comes out as the double
/// nearest 3e-4.
fn nearest_multiple(v: f64, exponent: i32) -> f64 {
    let unit = 10f64.powi(exponent.abs());
    if exponent >= 0 {
        (v / unit).round() * unit
    } else {
        (v * unit).round() / unit
    }
}

/// The colour of the `i`-th series.
fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Encodes RGB bytes as an 8-bit RGB PNG.
fn encode_png(path: &Path, rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    let err = |e: png::EncodingError| GlowError::file(path, format!("PNG encoding failed: {e}"));
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(err)?;
    writer.write_image_data(rgb).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plotters::coord::CoordTranslate;

    fn series(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.to_string(),
            points,
            band: None,
        }
    }

    /// A chart drawn in memory with the coordinates of its plot area.
    struct Rendered {
        rgb: Vec<u8>,
        width: u32,
        coordinates: Coordinates,
    }

    impl Rendered {
        fn new(series: &[Series], width: u32, height: u32) -> Rendered {
            let (rgb, coordinates) =
                render("Title", "x", "y", series, width, height).expect("the chart draws");
            assert_eq!(rgb.len(), (width * height * 3) as usize);
            Rendered {
                rgb,
                width,
                coordinates,
            }
        }

        fn pixel(&self, (column, row): (i32, i32)) -> [u8; 3] {
            let i = (row as usize * self.width as usize + column as usize) * 3;
            [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
        }

        fn at(&self, x: f64, y: f64) -> [u8; 3] {
            self.pixel(self.coordinates.translate(&(x, y)))
        }
    }

    fn rgb(c: RGBColor) -> [u8; 3] {
        [c.0, c.1, c.2]
    }

    #[test]
    fn tick_labels_are_compact() {
        let cases = [
            (1500.0, 2, "1500"),
            (0.25, -2, "0.25"),
            (3.1, -1, "3.1"),
            (-0.5, -1, "-0.5"),
            (2.0, -1, "2.0"),
            (0.0, -3, "0"),
            (1e-4, -4, "1e-4"),
            (2.5e5, 4, "2.5e5"),
            (3.0000000000000003e-4, -4, "3e-4"),
            (1.7999999999999998e6, 5, "1.8e6"),
        ];
        for (v, exponent, label) in cases {
            assert_eq!(format_tick(v, exponent), label, "{v:e}");
        }
    }

    #[test]
    fn tick_exponent_is_that_of_the_tick_step() {
        // plotters' steps are 1, 2 or 5 x 10^k with at most MAX_TICKS ticks: 0.2 on 0..1,
        // 0.5 on 1.23..4.56, 200 on 0..1500, 1e-4 on 0..4.9e-4.
        for (range, exponent) in [(0.0..1.0, -1), (1.23..4.56, -1), (0.0..1500.0, 2)] {
            assert_eq!(tick_exponent(&range), exponent, "{range:?}");
        }
        assert_eq!(tick_exponent(&(0.0..4.9e-4)), -4);
    }

    #[test]
    fn curve_pixels_have_series_colour() {
        let line = |offset: f64| (0..=10).map(|i| (i as f64, offset - i as f64)).collect();
        let s = [series("upper", line(10.0)), series("lower", line(8.0))];
        let chart = Rendered::new(&s, 600, 400);
        // Interior vertices only: the plot frame is drawn over the left and right edges.
        for (i, ser) in s.iter().enumerate() {
            for &(x, y) in &ser.points[1..10] {
                assert_eq!(chart.at(x, y), rgb(colour(i)), "{} at {x}", ser.name);
            }
        }
        assert_eq!(chart.at(3.0, 4.5), [255; 3]);
    }

    #[test]
    fn band_is_shaded_translucently_behind_the_line() {
        let mut s = series("mean", vec![(0.0, 1.0), (10.0, 1.0)]);
        s.band = Some(vec![(0.0, 0.0, 2.0), (10.0, 0.0, 2.0)]);
        let chart = Rendered::new(&[s], 600, 400);
        // At a point on no grid line, a quarter of the way from white to the colour, to within rounding.
        let expected = rgb(colour(0)).map(|c| 255.0 - BAND_OPACITY * (255.0 - f64::from(c)));
        let shaded = chart.at(3.3, 0.7);
        for (got, want) in shaded.iter().zip(expected) {
            assert!(
                (f64::from(*got) - want).abs() <= 1.0,
                "{shaded:?} vs {expected:?}"
            );
        }
        assert_eq!(chart.at(3.0, 1.0), rgb(colour(0)));
        assert_eq!(chart.at(3.0, 2.05), [255; 3]);
    }

    #[test]
    fn non_finite_points_and_empty_charts_render_axes() {
        let bad = vec![
            (f64::NAN, 1.0),
            (1.0, f64::INFINITY),
            (2.0, 3.0),
            (3.0, f64::NEG_INFINITY),
        ];
        let all_bad = vec![(f64::NAN, f64::NAN)];
        for s in [vec![series("a", bad)], vec![series("b", all_bad)], vec![]] {
            let chart = Rendered::new(&s, 300, 200);
            let columns = chart.coordinates.get_x_axis_pixel_range();
            let rows = chart.coordinates.get_y_axis_pixel_range();
            // An axis is a black line along a whole edge of the plot area, on or just outside it.
            let black_column = |c: i32| rows.clone().all(|r| chart.pixel((c, r)) == [0; 3]);
            let black_row = |r: i32| columns.clone().all(|c| chart.pixel((c, r)) == [0; 3]);
            assert!(
                (columns.start - 2..=columns.start).any(black_column),
                "left axis"
            );
            assert!((rows.end - 1..=rows.end + 1).any(black_row), "bottom axis");
        }
    }

    #[test]
    fn too_small_chart_is_an_error() {
        let path =
            std::env::temp_dir().join(format!("glowflow-plot-tiny-{}.png", std::process::id()));
        assert!(write_line_chart(&path, "t", "x", "y", &[], 20, 20).is_err());
        assert!(!path.exists());
    }
}
