//! The permutation ablation (Glow §5.1, Figure 3): the same model and training budget with the
//! channels mixed by a fixed reverse, a fixed random shuffle or a learned invertible 1x1
//! convolution, each with additive and with affine coupling, over several seeds.
//!
//! Every (variant, seed) is an ordinary training run in `OUT/<variant>/seed-<s>` (resumable, so an
//! interrupted ablation continues where it stopped). The results are gathered from their
//! `metrics.csv` files into
//!
//! - `OUT/ablation.csv`: `variant,coupling,permutation,seed,step,test_bpd`, one row per evaluation;
//! - `OUT/ablation.png`: test bits/dim against steps, the mean over seeds of each variant with a
//!   band from the lowest to the highest seed;
//! - `OUT/ablation.md`: the final test bits/dim (whole test set) of each variant, mean ± sample
//!   standard deviation over seeds, best first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use burn::tensor::Device;

use crate::cluster::Cluster;
use crate::error::{GlowError, Result};
use crate::flow::coupling::CouplingKind;
use crate::flow::permute::PermutationKind;
use crate::io::atomic::write_atomic;
use crate::io::plot::{write_line_chart, Series};
use crate::model::config::GlowConfig;
use crate::train::checkpoint::list_checkpoints;
use crate::train::config::TrainConfig;
use crate::train::metrics::MetricsFile;
use crate::train::schedule::LrDecay;
use crate::train::trainer::{train_on, Placement, TrainEvent};

/// One arm of the ablation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// Coupling layer.
    pub coupling: CouplingKind,
    /// Channel mixing (the 1x1 convolution is the plain, non-LU one, as in the paper's figure).
    pub permutation: PermutationKind,
}

impl Variant {
    /// The six arms of Figure 3: {additive, affine} x {reverse, shuffle, 1x1 conv}.
    pub fn all() -> Vec<Variant> {
        let mut all = Vec::new();
        for coupling in [CouplingKind::Additive, CouplingKind::Affine] {
            for permutation in [
                PermutationKind::Reverse,
                PermutationKind::Shuffle,
                PermutationKind::InvConv,
            ] {
                all.push(Variant {
                    coupling,
                    permutation,
                });
            }
        }
        all
    }

    /// `additive-reverse`, `affine-inv-conv`, ...: the run directory and the name in the results.
    pub fn name(&self) -> String {
        format!("{}-{}", kebab(&self.coupling), kebab(&self.permutation))
    }

    /// Parses a name written by [`Variant::name`].
    pub fn parse(name: &str) -> Result<Variant> {
        Variant::all()
            .into_iter()
            .find(|v| v.name() == name)
            .ok_or_else(|| {
                let names: Vec<String> = Variant::all().iter().map(Variant::name).collect();
                GlowError::Config(format!(
                    "no ablation variant named `{name}`; choose from {}",
                    names.join(", ")
                ))
            })
    }

    /// The base model config with this arm's coupling and mixing, initialised from `seed`.
    pub fn model(&self, base: &GlowConfig, seed: u64) -> GlowConfig {
        GlowConfig {
            coupling: self.coupling,
            permutation: self.permutation,
            lu: false,
            seed,
            ..base.clone()
        }
    }
}

/// The serde (config-file) spelling of an enum value.
fn kebab<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("unit enum variants serialise to strings")
}

/// The ablation at CPU scale, sized so that its 18 runs (6 arms x 3 seeds) take under an hour on
/// 2 cores (about 2 minutes each): L = 2, K = 4, width 64, 800 steps of 32 images (0.43 of a
/// Fashion-MNIST epoch), Adam at a constant 1e-3, the paper's couplings (no scale floor), test
/// bits/dim on 2000 test images every 100 steps and on all
/// of them at the end.
pub fn cpu_scale(base: (GlowConfig, TrainConfig)) -> (GlowConfig, TrainConfig) {
    let (model, train) = base;
    (
        GlowConfig {
            levels: 2,
            steps: 4,
            width: 64,
            scale_floor: 0.0,
            ..model
        },
        TrainConfig {
            steps: 800,
            batch_size: 32,
            lr: 1e-3,
            warmup_steps: 100,
            lr_decay: LrDecay::Constant,
            eval_every: 100,
            eval_images: 2000,
            sample_every: 0,
            checkpoint_every: 800,
            keep_checkpoints: 1,
            log_every: 50,
            ..train
        },
    )
}

/// One evaluation of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct AblationPoint {
    /// The arm.
    pub variant: Variant,
    /// Seed of the run (model initialisation, data order and noise).
    pub seed: u64,
    /// Steps completed.
    pub step: u64,
    /// Test bits/dim of the EMA weights.
    pub test_bpd: f64,
}

/// The run directory of one arm and seed.
pub fn run_dir(out: &Path, variant: &Variant, seed: u64) -> PathBuf {
    out.join(variant.name()).join(format!("seed-{seed}"))
}

/// Trains every (variant, seed) that has not finished yet (resuming interrupted runs), then
/// writes the results files. Returns every evaluation point. `report` gets each run's events,
/// tagged with the run's directory. Every run trains on `device`.
// The arms, the recipe, the device and the run's controls: one call, no natural grouping.
#[allow(clippy::too_many_arguments)]
pub fn run_ablation(
    out: &Path,
    variants: &[Variant],
    seeds: &[u64],
    model: &GlowConfig,
    train_config: &TrainConfig,
    device: &Device,
    stop: &AtomicBool,
    report: &mut dyn FnMut(&Path, TrainEvent),
) -> Result<Vec<AblationPoint>> {
    if variants.is_empty() || seeds.is_empty() {
        return Err(GlowError::Config(
            "the ablation needs at least one variant and one seed".into(),
        ));
    }
    for variant in variants {
        for &seed in seeds {
            let run = run_dir(out, variant, seed);
            let done = finished_step(&run)?;
            if done == Some(train_config.steps) {
                continue;
            }
            let on = Placement {
                cluster: &Cluster::single(),
                device,
            };
            let summary = train_on(
                &on,
                &run,
                &variant.model(model, seed),
                &TrainConfig {
                    seed,
                    ..train_config.clone()
                },
                done.is_some(),
                stop,
                &mut |event| report(&run, event),
            )?;
            if summary.interrupted {
                return Err(GlowError::Config(format!(
                    "ablation interrupted during {}; run the same command again to continue",
                    run.display()
                )));
            }
        }
    }
    let points = collect_points(out, variants, seeds)?;
    write_results(out, &points)?;
    Ok(points)
}

/// The step of a run's latest checkpoint, `None` when the run has not started.
fn finished_step(run: &Path) -> Result<Option<u64>> {
    let Some(latest) = list_checkpoints(run)?.pop() else {
        return Ok(None);
    };
    let name = latest.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.strip_prefix("step-")
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or_else(|| GlowError::file(&latest, "not a checkpoint directory name (step-N)"))
}

/// Every evaluation in the runs' metrics files.
pub fn collect_points(
    out: &Path,
    variants: &[Variant],
    seeds: &[u64],
) -> Result<Vec<AblationPoint>> {
    let mut points = Vec::new();
    for variant in variants {
        for &seed in seeds {
            let rows = MetricsFile::read(&run_dir(out, variant, seed).join("metrics.csv"))?;
            points.extend(rows.iter().filter_map(|row| {
                row.test_bpd.map(|test_bpd| AblationPoint {
                    variant: *variant,
                    seed,
                    step: row.step,
                    test_bpd,
                })
            }));
        }
    }
    Ok(points)
}

/// Mean, sample standard deviation (0 for one value), minimum and maximum.
fn statistics(values: &[f64]) -> (f64, f64, f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (mean, var.sqrt(), min, max)
}

/// One row of the summary table: a variant's final test bits/dim over its seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantSummary {
    /// The arm.
    pub variant: Variant,
    /// Step of the final evaluation.
    pub step: u64,
    /// Seeds that reached it.
    pub seeds: usize,
    /// Mean final test bits/dim.
    pub mean: f64,
    /// Sample standard deviation over seeds.
    pub std: f64,
    /// Best and worst seed.
    pub min: f64,
    /// Worst seed.
    pub max: f64,
}

/// The test bits/dim of every seed, grouped by variant (in name order) and then by step.
fn by_variant_and_step(
    points: &[AblationPoint],
) -> BTreeMap<String, (Variant, BTreeMap<u64, Vec<f64>>)> {
    let mut grouped: BTreeMap<String, (Variant, BTreeMap<u64, Vec<f64>>)> = BTreeMap::new();
    for p in points {
        grouped
            .entry(p.variant.name())
            .or_insert_with(|| (p.variant, BTreeMap::new()))
            .1
            .entry(p.step)
            .or_default()
            .push(p.test_bpd);
    }
    grouped
}

/// Per variant, the statistics of the last evaluation step that every seed of it reached;
/// sorted best (lowest mean) first.
pub fn summarise(points: &[AblationPoint]) -> Vec<VariantSummary> {
    let mut rows: Vec<VariantSummary> = by_variant_and_step(points)
        .into_values()
        .filter_map(|(variant, steps)| {
            let seeds = steps.values().map(Vec::len).max()?;
            let (&step, values) = steps.iter().rev().find(|(_, v)| v.len() == seeds)?;
            let (mean, std, min, max) = statistics(values);
            Some(VariantSummary {
                variant,
                step,
                seeds,
                mean,
                std,
                min,
                max,
            })
        })
        .collect();
    rows.sort_by(|a, b| a.mean.total_cmp(&b.mean));
    rows
}

/// Writes `ablation.csv`, `ablation.png` and `ablation.md` into `out`.
pub fn write_results(out: &Path, points: &[AblationPoint]) -> Result<()> {
    let mut csv = String::from("variant,coupling,permutation,seed,step,test_bpd\n");
    for p in points {
        csv.push_str(&format!(
            "{},{},{},{},{},{:.6}\n",
            p.variant.name(),
            kebab(&p.variant.coupling),
            kebab(&p.variant.permutation),
            p.seed,
            p.step,
            p.test_bpd
        ));
    }
    write_atomic(&out.join("ablation.csv"), csv.as_bytes())?;

    let series: Vec<Series> = by_variant_and_step(points)
        .into_values()
        .map(|(variant, steps)| {
            let stats: Vec<(f64, (f64, f64, f64, f64))> = steps
                .iter()
                .map(|(&s, v)| (s as f64, statistics(v)))
                .collect();
            Series {
                name: variant.name(),
                points: stats.iter().map(|&(x, (mean, ..))| (x, mean)).collect(),
                band: Some(
                    stats
                        .iter()
                        .map(|&(x, (_, _, lo, hi))| (x, lo, hi))
                        .collect(),
                ),
            }
        })
        .collect();
    write_line_chart(
        &out.join("ablation.png"),
        "Permutation ablation: test bits/dim (mean, band = min..max over seeds)",
        "step",
        "test bits/dim",
        &series,
        900,
        560,
    )?;

    let mut table = String::from(
        "| variant | coupling | permutation | step | seeds | test bits/dim (mean ± sd) | best | worst |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in summarise(points) {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.4} ± {:.4} | {:.4} | {:.4} |\n",
            r.variant.name(),
            kebab(&r.variant.coupling),
            kebab(&r.variant.permutation),
            r.step,
            r.seeds,
            r.mean,
            r.std,
            r.min,
            r.max
        ));
    }
    write_atomic(&out.join("ablation.md"), table.as_bytes())
}
