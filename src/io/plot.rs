//! Learning-curve charts: named (x, y) series drawn as a PNG line chart with axes, ticks, labels
//! and a legend, using a built-in bitmap font (no font files or system libraries).

use std::path::Path;

use super::atomic::write_atomic;
use crate::error::{GlowError, Result};

/// One curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The name shown in the legend.
    pub name: String,
    /// The (x, y) points, joined in order; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
    /// An optional band of (x, low, high), shaded in a light version of the curve's colour.
    pub band: Option<Vec<(f64, f64, f64)>>,
}

type Rgb = [u8; 3];
/// A glyph: 8 rows of 5 pixels (bit 4 is the left column); capitals and digits use rows 0-6,
/// row 7 holds descenders.
type Glyph = [u8; 8];

const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [0, 0, 0];
const GRID: Rgb = [228, 228, 228];
const BORDER: Rgb = [150, 150, 150];
/// Series colours as 0xRRGGBB, reused in turn after the eighth series.
const PALETTE: [u32; 8] = [
    0x1F77B4, 0xFF7F0E, 0x2CA02C, 0xD62728, 0x9467BD, 0x8C564B, 0xE377C2, 0x17BECF,
];
/// The font: each glyph's rows packed top row first into a u64.
#[rustfmt::skip]
const FONT: [(char, u64); 73] = [
    (' ', 0x0000000000000000), ('0', 0x0E11131519110E00), ('1', 0x040C040404040E00),
    ('2', 0x0E11010204081F00), ('3', 0x1F02040201110E00), ('4', 0x02060A121F020200),
    ('5', 0x1F101E0101110E00), ('6', 0x0608101E11110E00), ('7', 0x1F01020408080800),
    ('8', 0x0E11110E11110E00), ('9', 0x0E11110F01020C00), ('.', 0x00000000000C0C00),
    (',', 0x00000000000C0408), ('-', 0x0000000E00000000), ('+', 0x0004041F04040000),
    ('/', 0x0001020408100000), (':', 0x000C0C000C0C0000), ('(', 0x0204080808040200),
    (')', 0x0804020202040800), ('=', 0x00001F001F000000), ('_', 0x000000000000001F),
    ('a', 0x00000E010F110F00), ('b', 0x1010161911111E00), ('c', 0x00000E1010110E00),
    ('d', 0x01010D1311110F00), ('e', 0x00000E111F100E00), ('f', 0x0609081C08080800),
    ('g', 0x00000F11110F010E), ('h', 0x1010161911111100), ('i', 0x04000C0404040E00),
    ('j', 0x020006020202120C), ('k', 0x1010121418141200), ('l', 0x0C04040404040E00),
    ('m', 0x00001A1515111100), ('n', 0x0000161911111100), ('o', 0x00000E1111110E00),
    ('p', 0x00001E11111E1010), ('q', 0x00000F11110F0101), ('r', 0x0000161910101000),
    ('s', 0x00000F100E011E00), ('t', 0x08081C0808090600), ('u', 0x0000111111130D00),
    ('v', 0x00001111110A0400), ('w', 0x0000111115150A00), ('x', 0x0000110A040A1100),
    ('y', 0x00001111110F010E), ('z', 0x00001F0204081F00), ('A', 0x0E11111F11111100),
    ('B', 0x1E11111E11111E00), ('C', 0x0E11101010110E00), ('D', 0x1C12111111121C00),
    ('E', 0x1F10101E10101F00), ('F', 0x1F10101E10101000), ('G', 0x0E11101711110F00),
    ('H', 0x1111111F11111100), ('I', 0x0E04040404040E00), ('J', 0x0702020202120C00),
    ('K', 0x1112141814121100), ('L', 0x1010101010101F00), ('M', 0x111B151511111100),
    ('N', 0x1111191513111100), ('O', 0x0E11111111110E00), ('P', 0x1E11111E10101000),
    ('Q', 0x0E11111115120D00), ('R', 0x1E11111E14121100), ('S', 0x0F10100E01011E00),
    ('T', 0x1F04040404040400), ('U', 0x1111111111110E00), ('V', 0x11111111110A0400),
    ('W', 0x1111111515150A00), ('X', 0x11110A040A111100), ('Y', 0x1111110A04040400),
    ('Z', 0x1F01020408101F00),
];
/// What a character missing from the font renders as: a small box.
const BOX: Glyph = [0x00, 0x1F, 0x11, 0x11, 0x11, 0x1F, 0x00, 0x00];

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
    let too_small = || GlowError::file(path, format!("a {width}x{height} chart is too small"));
    let frame = chart_frame(series, title, width, height).ok_or_else(too_small)?;
    let mut canvas = Canvas::new(width, height);
    draw_grid(&mut canvas, &frame);
    canvas.clip = [frame.left, frame.top, frame.right, frame.bottom];
    for (i, s) in series.iter().enumerate() {
        let band = s.band.as_deref().unwrap_or(&[]);
        draw_band(&mut canvas, &frame, band, light(colour(i)));
    }
    for (i, s) in series.iter().enumerate() {
        draw_curve(&mut canvas, &frame, &s.points, colour(i));
    }
    canvas.clip = [0, 0, canvas.width - 1, canvas.height - 1];
    draw_axes(&mut canvas, &frame);
    draw_titles(&mut canvas, &frame, title, x_label, y_label);
    draw_legend(&mut canvas, &frame, series);
    write_atomic(path, &encode_png(path, &canvas)?)
}

/// One axis: its data range and its ticks, multiples of a step m x 10^`exponent`.
#[derive(Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    exponent: i32,
}

/// The plot area in pixels (inclusive edges), its axes, and the text scales.
struct Frame {
    x: Axis,
    y: Axis,
    left: i64,
    right: i64,
    top: i64,
    bottom: i64,
    scale: i64,
    title_scale: i64,
}

impl Frame {
    /// Maps a data point to its (rounded) pixel.
    fn to_pixel(&self, x: f64, y: f64) -> (i64, i64) {
        let fx = (x - self.x.lo) / (self.x.hi - self.x.lo);
        let fy = (y - self.y.lo) / (self.y.hi - self.y.lo);
        let px = self.left as f64 + fx * (self.right - self.left) as f64;
        let py = self.bottom as f64 - fy * (self.bottom - self.top) as f64;
        (px.round() as i64, py.round() as i64)
    }
}

/// Lays out the chart: axes from the data (y padded by 5 %), margins from the label sizes.
/// `None` when the image is too small for a plot area.
fn chart_frame(series: &[Series], title: &str, width: u32, height: u32) -> Option<Frame> {
    let (xs, ys) = data_values(series);
    let (x_lo, x_hi) = range(&xs).unwrap_or((0.0, 1.0));
    let (y_lo, y_hi) = range(&ys).unwrap_or((0.0, 1.0));
    let y_pad = 0.05 * (y_hi - y_lo);
    let (x, y) = (nice_axis(x_lo, x_hi), nice_axis(y_lo - y_pad, y_hi + y_pad));
    let (w, h) = (i64::from(width), i64::from(height));
    let scale = ((w.min(h) + 150) / 300).max(1);
    let title_scale = scale + i64::from(text_width(title, scale + 1) < w);
    let (pad, text_h, tick) = (4 * scale + 4, 8 * scale, 3 * scale + 2);
    let left = pad + text_h + pad + widest_label(&y, scale) + tick + 2 * scale;
    let right = w - pad - widest_label(&x, scale) / 2;
    let (top, bottom) = (
        2 * pad + 8 * title_scale,
        h - 2 * pad - 2 * text_h - tick - 2 * scale,
    );
    (right - left >= 10 && bottom - top >= 10).then_some(Frame {
        x,
        y,
        left,
        right,
        top,
        bottom,
        scale,
        title_scale,
    })
}

/// The width in pixels of the widest tick label of `axis`.
fn widest_label(axis: &Axis, scale: i64) -> i64 {
    let widths = axis
        .ticks
        .iter()
        .map(|&t| text_width(&format_tick(t, axis.exponent), scale));
    widths.max().unwrap_or(0)
}

/// Every usable x and every usable y value of the points and bands.
fn data_values(series: &[Series]) -> (Vec<f64>, Vec<f64>) {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for s in series {
        for &(x, y) in s.points.iter().filter(|&&(x, y)| usable(x) && usable(y)) {
            xs.push(x);
            ys.push(y);
        }
        for &(x, lo, hi) in band_points(s.band.as_deref().unwrap_or(&[])) {
            xs.push(x);
            ys.extend([lo, hi]);
        }
    }
    (xs, ys)
}

/// The band entries whose three values are all usable.
fn band_points(band: &[(f64, f64, f64)]) -> impl Iterator<Item = &(f64, f64, f64)> {
    band.iter()
        .filter(|&&(x, lo, hi)| usable(x) && usable(lo) && usable(hi))
}

/// Whether a value can be plotted: finite and small enough that ranges of such values stay finite.
fn usable(v: f64) -> bool {
    v.is_finite() && v.abs() < 1e300
}

/// The smallest and largest value, `None` when there are none.
fn range(values: &[f64]) -> Option<(f64, f64)> {
    let lo = values.iter().copied().reduce(f64::min)?;
    Some((lo, values.iter().copied().fold(lo, f64::max)))
}

/// The axis for `lo..hi`: the smallest 1, 2 or 5 x 10^k step giving at most 8 ticks inside the
/// range; when that gives fewer than 4, the range is widened outward to the next ticks.
fn nice_axis(lo: f64, hi: f64) -> Axis {
    let (lo, hi) = widen_degenerate(lo, hi);
    // A step of 10^k0 gives at least 10 ticks, and 5 x 10^(k0+1) at most 2.
    let k0 = (hi - lo).log10().floor() as i32 - 1;
    let (m, k) = [k0, k0 + 1]
        .into_iter()
        .flat_map(|k| [(1, k), (2, k), (5, k)])
        .find(|&(m, k)| ticks_within(lo, hi, m, k).len() <= 8)
        .expect("a step of 5 x 10^(k0+1) gives at most 2 ticks");
    let (lo, hi) = if ticks_within(lo, hi, m, k).len() >= 4 {
        (lo, hi)
    } else {
        let s = tick_value(1, m, k);
        let (first, last) = ((lo / s).floor() as i64, (hi / s).ceil() as i64);
        (tick_value(first, m, k), tick_value(last, m, k))
    };
    let ticks = ticks_within(lo, hi, m, k);
    Axis {
        lo,
        hi,
        ticks,
        exponent: k,
    }
}

/// Widens an empty or vanishingly small range so that it can carry ticks.
fn widen_degenerate(lo: f64, hi: f64) -> (f64, f64) {
    if hi - lo > 1e-9 * lo.abs().max(hi.abs()) {
        (lo, hi)
    } else if lo == 0.0 {
        (-1.0, 1.0)
    } else {
        (lo - 0.1 * lo.abs(), hi + 0.1 * hi.abs())
    }
}

/// The tick `i x m x 10^k`, divided rather than multiplied by a power of ten when k < 0 so that
/// e.g. 3 x 0.2 comes out as the double nearest 0.6.
fn tick_value(i: i64, m: i64, k: i32) -> f64 {
    let units = (i * m) as f64;
    if k >= 0 {
        units * 10f64.powi(k)
    } else {
        units / 10f64.powi(-k)
    }
}

/// The multiples of `m x 10^k` within `lo..=hi` (with a little slack for rounding).
fn ticks_within(lo: f64, hi: f64, m: i64, k: i32) -> Vec<f64> {
    let s = tick_value(1, m, k);
    let (first, last) = (
        (lo / s - 1e-9).ceil() as i64,
        (hi / s + 1e-9).floor() as i64,
    );
    (first..=last).map(|i| tick_value(i, m, k)).collect()
}

/// A compact tick label: decimals as fine as the step m x 10^`exponent` needs, or scientific
/// notation (`1e-4`, `2.5e5`) for very small or large values.
fn format_tick(v: f64, exponent: i32) -> String {
    if v == 0.0 {
        "0".to_string()
    } else if v.abs() >= 1e5 || v.abs() < 1e-3 {
        format!("{v:e}")
    } else {
        format!("{v:.*}", (-exponent).max(0) as usize)
    }
}

/// The colour of the `i`-th series.
fn colour(i: usize) -> Rgb {
    let [_, r, g, b] = PALETTE[i % PALETTE.len()].to_be_bytes();
    [r, g, b]
}

/// `c` blended three quarters of the way to white.
fn light(c: Rgb) -> Rgb {
    c.map(|v| ((u16::from(v) + 3 * 255) / 4) as u8)
}

/// The glyph for `c`, or [`BOX`] when the font lacks it.
fn glyph(c: char) -> Glyph {
    FONT.iter()
        .find(|(f, _)| *f == c)
        .map_or(BOX, |(_, g)| g.to_be_bytes())
}

/// The width in pixels of `text` drawn at `scale` (6 pixels a character, less the last gap).
fn text_width(text: &str, scale: i64) -> i64 {
    (6 * text.chars().count() as i64 - 1).max(0) * scale
}

/// An RGB image being drawn on; pixel writes outside `clip` (x0, y0, x1, y1 inclusive) are dropped.
struct Canvas {
    width: i64,
    height: i64,
    rgb: Vec<u8>,
    clip: [i64; 4],
}

impl Canvas {
    /// A white canvas clipped to its own bounds.
    fn new(width: u32, height: u32) -> Self {
        let (w, h) = (i64::from(width), i64::from(height));
        let rgb = vec![255; (w * h * 3) as usize];
        Canvas {
            width: w,
            height: h,
            rgb,
            clip: [0, 0, w - 1, h - 1],
        }
    }

    /// Fills the rectangle with corners (x0, y0) and (x1, y1), inclusive, within the clip.
    fn fill_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        let [cx0, cy0, cx1, cy1] = self.clip;
        for y in y0.min(y1).max(cy0)..=y0.max(y1).min(cy1) {
            for x in x0.min(x1).max(cx0)..=x0.max(x1).min(cx1) {
                let i = ((y * self.width + x) * 3) as usize;
                self.rgb[i..i + 3].copy_from_slice(&c);
            }
        }
    }

    /// Draws the one-pixel outline of a rectangle.
    fn outline(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        self.fill_rect(x0, y0, x1, y0, c);
        self.fill_rect(x0, y1, x1, y1, c);
        self.fill_rect(x0, y0, x0, y1, c);
        self.fill_rect(x1, y0, x1, y1, c);
    }

    /// Draws a 2-pixel-wide line from `a` to `b` (Bresenham, stamping 2x2 squares).
    fn line(&mut self, a: (i64, i64), b: (i64, i64), c: Rgb) {
        let (dx, dy) = ((b.0 - a.0).abs(), -(b.1 - a.1).abs());
        let (sx, sy) = ((b.0 - a.0).signum(), (b.1 - a.1).signum());
        let ((mut x, mut y), mut err) = (a, dx + dy);
        loop {
            self.fill_rect(x, y, x + 1, y + 1, c);
            if (x, y) == b {
                return;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Draws `text` with its top-left corner at (x, y), each font pixel `scale` pixels square;
    /// `vertical` text reads upward with (x, y) as its bottom-left corner.
    fn text(&mut self, text: &str, (x, y): (i64, i64), scale: i64, vertical: bool) {
        for (i, ch) in (0i64..).zip(text.chars()) {
            for (row, bits) in (0i64..).zip(glyph(ch)) {
                for col in (0..5).filter(|col| bits >> (4 - col) & 1 == 1) {
                    let along = 6 * i + col;
                    let (px, py) = if vertical {
                        (x + row * scale, y - (along + 1) * scale + 1)
                    } else {
                        (x + along * scale, y + row * scale)
                    };
                    self.fill_rect(px, py, px + scale - 1, py + scale - 1, BLACK);
                }
            }
        }
    }
}

/// Draws light grid lines at every tick inside the plot area.
fn draw_grid(canvas: &mut Canvas, f: &Frame) {
    for &t in &f.x.ticks {
        let (px, _) = f.to_pixel(t, f.y.lo);
        canvas.fill_rect(px, f.top, px, f.bottom, GRID);
    }
    for &t in &f.y.ticks {
        let (_, py) = f.to_pixel(f.x.lo, t);
        canvas.fill_rect(f.left, py, f.right, py, GRID);
    }
}

/// Shades the band between its low and high edges, interpolated column by column.
fn draw_band(canvas: &mut Canvas, f: &Frame, band: &[(f64, f64, f64)], c: Rgb) {
    let pixel = |&(x, lo, hi)| {
        (
            f.to_pixel(x, lo).0,
            f.to_pixel(x, lo).1,
            f.to_pixel(x, hi).1,
        )
    };
    let edges: Vec<(i64, i64, i64)> = band_points(band).map(pixel).collect();
    for pair in edges.windows(2) {
        let ((xa, la, ha), (xb, lb, hb)) = (pair[0], pair[1]);
        let span = if xa == xb { 1.0 } else { (xb - xa) as f64 };
        for px in xa.min(xb)..=xa.max(xb) {
            let lerp =
                |a: i64, b: i64| a + ((px - xa) as f64 / span * (b - a) as f64).round() as i64;
            canvas.fill_rect(px, lerp(la, lb), px, lerp(ha, hb), c);
        }
    }
}

/// Joins the usable points of a curve with 2-pixel lines (a lone point becomes a dot).
fn draw_curve(canvas: &mut Canvas, f: &Frame, points: &[(f64, f64)], c: Rgb) {
    let usable_points = points.iter().filter(|&&(x, y)| usable(x) && usable(y));
    let pixels: Vec<(i64, i64)> = usable_points.map(|&(x, y)| f.to_pixel(x, y)).collect();
    match pixels.as_slice() {
        [only] => canvas.line(*only, *only, c),
        _ => pixels.windows(2).for_each(|p| canvas.line(p[0], p[1], c)),
    }
}

/// Draws the plot frame, the tick marks and the tick labels.
fn draw_axes(canvas: &mut Canvas, f: &Frame) {
    let (s, tick) = (f.scale, 3 * f.scale + 2);
    canvas.outline(f.left, f.top, f.right, f.bottom, BLACK);
    for &t in &f.x.ticks {
        let (px, _) = f.to_pixel(t, f.y.lo);
        canvas.fill_rect(px, f.bottom, px, f.bottom + tick, BLACK);
        let label = format_tick(t, f.x.exponent);
        let x = px - text_width(&label, s) / 2;
        canvas.text(&label, (x, f.bottom + tick + 2 * s), s, false);
    }
    for &t in &f.y.ticks {
        let (_, py) = f.to_pixel(f.x.lo, t);
        canvas.fill_rect(f.left - tick, py, f.left, py, BLACK);
        let label = format_tick(t, f.y.exponent);
        let x = f.left - tick - 2 * s - text_width(&label, s);
        canvas.text(&label, (x, py - 7 * s / 2), s, false);
    }
}

/// Draws the chart title (top, centred on the image), the x-axis title (bottom) and the y-axis
/// title (left, reading upward), the axis titles centred on the plot area.
fn draw_titles(canvas: &mut Canvas, f: &Frame, title: &str, x_label: &str, y_label: &str) {
    let (s, pad) = (f.scale, 4 * f.scale + 4);
    let x = (canvas.width - text_width(title, f.title_scale)) / 2;
    canvas.text(title, (x, pad), f.title_scale, false);
    let x = (f.left + f.right - text_width(x_label, s)) / 2;
    canvas.text(x_label, (x, canvas.height - pad - 8 * s), s, false);
    let y = (f.top + f.bottom + text_width(y_label, s)) / 2;
    canvas.text(y_label, (pad, y), s, true);
}

/// Draws the legend box in the top-right corner of the plot: a colour sample and each name.
fn draw_legend(canvas: &mut Canvas, f: &Frame, series: &[Series]) {
    let Some(name_w) = series.iter().map(|s| text_width(&s.name, f.scale)).max() else {
        return;
    };
    let (s, row, sample, inner) = (f.scale, 10 * f.scale, 14 * f.scale, 4 * f.scale);
    let (w, h) = (
        3 * inner + sample + name_w,
        2 * inner + row * series.len() as i64 - 2 * s,
    );
    let (x0, y0) = (f.right - inner - w, f.top + inner);
    canvas.fill_rect(x0, y0, x0 + w, y0 + h, WHITE);
    canvas.outline(x0, y0, x0 + w, y0 + h, BORDER);
    for (i, ser) in series.iter().enumerate() {
        let (x, y) = (x0 + inner, y0 + inner + row * i as i64);
        canvas.fill_rect(
            x,
            y + 3 * s,
            x + sample,
            y + 3 * s + s.max(2) - 1,
            colour(i),
        );
        canvas.text(&ser.name, (x + inner + sample, y), s, false);
    }
}

/// Encodes the canvas as an 8-bit RGB PNG.
fn encode_png(path: &Path, canvas: &Canvas) -> Result<Vec<u8>> {
    let err = |e: png::EncodingError| GlowError::file(path, format!("PNG encoding failed: {e}"));
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, canvas.width as u32, canvas.height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(err)?;
    writer.write_image_data(&canvas.rgb).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a chart to a temporary file and decodes it into (width, height, RGB bytes).
    fn render(name: &str, series: &[Series], width: u32, height: u32) -> (u32, u32, Vec<u8>) {
        let path =
            std::env::temp_dir().join(format!("glowflow-plot-{name}-{}.png", std::process::id()));
        write_line_chart(&path, "Title", "x", "y", series, width, height).unwrap();
        let mut reader = png::Decoder::new(std::fs::File::open(&path).unwrap())
            .read_info()
            .unwrap();
        let mut rgb = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut rgb).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            (info.color_type, info.bit_depth),
            (png::ColorType::Rgb, png::BitDepth::Eight)
        );
        (info.width, info.height, rgb)
    }

    /// The colour of pixel `p` in RGB bytes of an image `width` pixels wide.
    fn pixel(rgb: &[u8], width: u32, p: (i64, i64)) -> Rgb {
        let i = ((p.1 * i64::from(width) + p.0) * 3) as usize;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    }

    fn series(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.to_string(),
            points,
            band: None,
        }
    }

    fn assert_ticks(lo: f64, hi: f64, expected: &[f64], range: (f64, f64)) {
        let axis = nice_axis(lo, hi);
        assert_eq!(axis.ticks.len(), expected.len(), "{axis:?}");
        assert!(
            axis.ticks
                .iter()
                .zip(expected)
                .all(|(t, e)| (t - e).abs() < 1e-12),
            "{axis:?}"
        );
        assert_eq!((axis.lo, axis.hi), range);
    }

    #[test]
    fn nice_axis_picks_round_steps() {
        // 0..1: step 0.1 gives 11 ticks, 0.2 gives 6.
        assert_ticks(0.0, 1.0, &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0], (0.0, 1.0));
        // 1.23..4.56: step 0.2 gives 16 ticks (1.4..=4.4), 0.5 gives 7 (1.5..=4.5).
        assert_ticks(
            1.23,
            4.56,
            &[1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5],
            (1.23, 4.56),
        );
        // 2..18: step 2 gives 9 ticks, 5 only 3 (5, 10, 15), so the range widens to 0..20.
        assert_ticks(2.0, 18.0, &[0.0, 5.0, 10.0, 15.0, 20.0], (0.0, 20.0));
        // 0..1500: step 100 gives 16 ticks, 200 gives 8.
        let step_200: Vec<f64> = (0..8).map(|i| 200.0 * i as f64).collect();
        assert_ticks(0.0, 1500.0, &step_200, (0.0, 1500.0));
    }

    #[test]
    fn nice_axis_gives_four_to_eight_ticks_covering_the_range() {
        let ranges = (0..500).map(|i| {
            let lo = (i as f64 * 0.731).sin() * 10f64.powi(i % 9 - 4);
            (
                lo,
                lo + (1.0 + (i as f64 * 1.37).cos().abs() * 99.0) * 10f64.powi(i % 7 - 3),
            )
        });
        for (lo, hi) in ranges.chain([(3.0, 3.0), (0.0, 0.0), (-2e-7, -2e-7)]) {
            let axis = nice_axis(lo, hi);
            assert!((4..=8).contains(&axis.ticks.len()), "{lo}..{hi}: {axis:?}");
            assert!(
                axis.lo <= lo && axis.hi >= hi && axis.lo < axis.hi,
                "{lo}..{hi}: {axis:?}"
            );
            let slack = 1e-6 * (axis.hi - axis.lo);
            assert!(axis
                .ticks
                .iter()
                .all(|&t| t >= axis.lo - slack && t <= axis.hi + slack));
        }
    }

    #[test]
    fn tick_labels_are_compact() {
        let cases = [
            (1500.0, 2, "1500"),
            (0.25, -2, "0.25"),
            (3.1, -1, "3.1"),
            (-0.5, -1, "-0.5"),
        ];
        let more = [
            (2.0, -1, "2.0"),
            (0.0, -3, "0"),
            (1e-4, -4, "1e-4"),
            (2.5e5, 4, "2.5e5"),
        ];
        for (v, exponent, label) in cases.into_iter().chain(more) {
            assert_eq!(format_tick(v, exponent), label);
        }
        assert_eq!(format_tick(tick_value(3, 1, -4), -4), "3e-4");
    }

    #[test]
    fn label_alphabet_glyphs_are_drawn() {
        let alphabet = ('0'..='9')
            .chain('a'..='z')
            .chain('A'..='Z')
            .chain(".-+e/:()=_,".chars());
        for c in alphabet {
            let g = glyph(c);
            assert!(
                g != BOX && g.iter().any(|&row| row != 0),
                "{c:?} has no glyph"
            );
        }
        assert_eq!((glyph(' '), glyph('#')), ([0; 8], BOX));
    }

    #[test]
    fn chart_decodes_to_requested_size() {
        let s = [series(
            "train",
            vec![(0.0, 3.5), (100.0, 2.0), (200.0, 1.5)],
        )];
        let (w, h, rgb) = render("size", &s, 640, 400);
        assert_eq!((w, h, rgb.len()), (640, 400, 640 * 400 * 3));
    }

    #[test]
    fn curve_pixels_have_series_colour() {
        let line = |offset: f64| (0..=10).map(|i| (i as f64, offset - i as f64)).collect();
        let s = [series("upper", line(10.0)), series("lower", line(8.0))];
        let (w, _, rgb) = render("curve", &s, 600, 400);
        let frame = chart_frame(&s, "Title", 600, 400).unwrap();
        // Interior vertices only: the plot frame is drawn over the left and right edges.
        for (i, ser) in s.iter().enumerate() {
            for &(x, y) in &ser.points[1..10] {
                assert_eq!(
                    pixel(&rgb, w, frame.to_pixel(x, y)),
                    colour(i),
                    "{} at {x}",
                    ser.name
                );
            }
        }
        assert_eq!(pixel(&rgb, w, frame.to_pixel(3.0, 4.5)), WHITE);
    }

    #[test]
    fn band_is_shaded_behind_the_line() {
        let mut s = series("mean", vec![(0.0, 1.0), (10.0, 1.0)]);
        s.band = Some(vec![(0.0, 0.0, 2.0), (10.0, 0.0, 2.0)]);
        let s = [s];
        let (w, _, rgb) = render("band", &s, 600, 400);
        let frame = chart_frame(&s, "Title", 600, 400).unwrap();
        assert_eq!(pixel(&rgb, w, frame.to_pixel(3.0, 0.5)), light(colour(0)));
        assert_eq!(pixel(&rgb, w, frame.to_pixel(3.0, 1.0)), colour(0));
        assert_eq!(pixel(&rgb, w, frame.to_pixel(3.0, 2.05)), WHITE);
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
        for (i, s) in [vec![series("a", bad)], vec![series("b", all_bad)], vec![]]
            .iter()
            .enumerate()
        {
            let (w, _, rgb) = render(&format!("empty{i}"), s, 300, 200);
            let f = chart_frame(s, "Title", 300, 200).unwrap();
            assert_eq!(pixel(&rgb, w, (f.left, (f.top + f.bottom) / 2)), BLACK);
            assert_eq!(pixel(&rgb, w, ((f.left + f.right) / 2, f.bottom)), BLACK);
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
