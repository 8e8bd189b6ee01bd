//! Where decoding blows up: samples a model's latents at a temperature, decodes them layer by
//! layer (every ActNorm, 1×1 convolution, coupling and prior of the inverse walk), and prints,
//! for each layer, how many samples are still finite and the largest |value| among them, and for
//! every sample that overflows the layer where it first stops being finite.
//!
//!     cargo run --release --example decode_trace -- RUN [TEMPERATURE] [N] [SEED]
//!
//! The latents are those of the run's sample grids at the last step when SEED is omitted
//! (`stream_rng(seed, SAMPLE_STREAM, step)` of `glowflow train`).

use burn::tensor::{Device, Tensor};
use glowflow::data::batches::{stream_rng, SAMPLE_STREAM};
use glowflow::flow::InvertibleMap;
use glowflow::model::walk::{GlowMap, Leaves};
use glowflow::train::config::read_run_configs;
use glowflow::train::metrics::MetricsFile;

/// Per sample: whether every value is finite, and the largest |value|.
fn per_sample(x: &Tensor<4>) -> Vec<(bool, f64)> {
    let [n, c, h, w] = x.dims();
    let values: Vec<f32> = x.clone().into_data().iter::<f32>().collect();
    let per = c * h * w;
    (0..n)
        .map(|i| {
            let row = &values[i * per..(i + 1) * per];
            let finite = row.iter().all(|v| v.is_finite());
            let max = row
                .iter()
                .filter(|v| v.is_finite())
                .fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
            (finite, max)
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = std::path::PathBuf::from(
        args.first()
            .expect("usage: decode_trace RUN [T] [N] [SEED]"),
    );
    let temperature: f64 = args.get(1).map_or(1.0, |t| t.parse().expect("temperature"));
    let n: usize = args.get(2).map_or(64, |t| t.parse().expect("sample count"));
    let device = Device::flex();
    let model = glowflow::load_model(&run, &device).expect("a model directory");
    let (_, train) = read_run_configs(&run).expect("a run");
    let step = MetricsFile::read(&run.join("metrics.csv"))
        .ok()
        .and_then(|rows| rows.last().map(|r| r.step))
        .unwrap_or(0);
    let seed = args.get(3).map_or(train.seed, |s| s.parse().expect("seed"));
    let mut rng = stream_rng(seed, SAMPLE_STREAM, step);
    let latents = model.random_latents(n, temperature, &mut rng, &device);

    let maps = model.maps();
    let mut remaining = latents.levels.iter().rev();
    let mut flowing: Option<Tensor<4>> = None;
    let mut first_bad: Vec<Option<String>> = vec![None; n];
    let (mut level, mut k) = (
        maps.iter()
            .filter(|m| m.leaves() != Leaves::Nothing)
            .count(),
        0,
    );
    let report = |name: String, x: &Tensor<4>, first_bad: &mut Vec<Option<String>>| {
        let stats = per_sample(x);
        let finite = stats.iter().filter(|s| s.0).count();
        let max = stats.iter().map(|s| s.1).fold(0.0f64, f64::max);
        for (i, (ok, _)) in stats.iter().enumerate() {
            if !ok && first_bad[i].is_none() {
                first_bad[i] = Some(name.clone());
            }
        }
        println!("{name:<36} finite {finite:>3}/{n}  max |x| {max:.3e}");
    };
    for map in maps.iter().rev() {
        let latent =
            (map.leaves() != Leaves::Nothing).then(|| remaining.next().expect("a latent").clone());
        let y = map.leaves().join(flowing.take(), latent);
        let x = match map {
            GlowMap::Step(s) => {
                k -= 1;
                let (h, _) = s.coupling.inverse(y, None);
                report(
                    format!("level {level} step {k} coupling⁻¹"),
                    &h,
                    &mut first_bad,
                );
                let (h, _) = s.permutation.inverse(h, None);
                report(
                    format!("level {level} step {k} 1x1 conv⁻¹"),
                    &h,
                    &mut first_bad,
                );
                let (h, _) = s.actnorm.inverse(h, None);
                report(
                    format!("level {level} step {k} actnorm⁻¹"),
                    &h,
                    &mut first_bad,
                );
                h
            }
            GlowMap::Squeeze(m) => {
                let (h, _) = m.inverse(y, None);
                level -= 1;
                h
            }
            other => {
                let (h, _) = other.as_map().inverse(y, None);
                let what = if matches!(other, GlowMap::Top(_)) {
                    "top prior⁻¹"
                } else {
                    "split prior⁻¹"
                };
                report(format!("level {level} {what}"), &h, &mut first_bad);
                k = model.config().steps;
                h
            }
        };
        flowing = Some(x);
    }
    let mut counts = std::collections::BTreeMap::new();
    for name in first_bad.iter().flatten() {
        *counts.entry(name.clone()).or_insert(0) += 1;
    }
    println!(
        "\nfirst non-finite layer of the {} overflowing samples:",
        first_bad.iter().flatten().count()
    );
    for (name, count) in counts {
        println!("  {count:>3}  {name}");
    }
}
