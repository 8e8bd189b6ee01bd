//! The permutation ablation runner on a tiny model and the synthetic 8x8 dataset: every arm and
//! seed is trained once with its own coupling, mixing and seed, finished runs are not trained
//! again, and the summary is computed from the runs' own evaluations.

mod common;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use common::*;
use glowflow::experiments::ablation::{run_ablation, run_dir, summarise, Variant};
use glowflow::train::metrics::MetricsFile;
use glowflow::train::trainer::TrainEvent;
use glowflow::{CouplingKind, GlowConfig, PermutationKind};

#[test]
fn ablation_trains_every_arm_once_and_summarises_the_final_evaluations() {
    let root = scratch_dir("ablation");
    write_idx_dataset(&root, 32, 16, 8);
    let mut train = tiny_train_config(&root);
    train.steps = 2;
    train.warmup_steps = 1;
    train.eval_every = 1;
    let variants = [
        Variant::parse("additive-reverse").expect("a variant"),
        Variant::parse("affine-inv-conv").expect("a variant"),
    ];
    assert_eq!(Variant::all().len(), 6);
    assert!(Variant::parse("affine-lu").is_err());
    let out = root.join("ablation");
    let ablate = || {
        let mut started = 0;
        let points = run_ablation(
            &out,
            &variants,
            &[0, 1],
            &grey8_config(8),
            &train,
            &burn::tensor::Device::flex(),
            &AtomicBool::new(false),
            &mut |_: &Path, event| {
                if let TrainEvent::Started { .. } = event {
                    started += 1;
                }
            },
        )
        .expect("ablation");
        (points, started)
    };
    let (points, started) = ablate();
    assert_eq!(started, 4, "2 arms x 2 seeds");

    for variant in &variants {
        for seed in [0, 1] {
            let run = run_dir(&out, variant, seed);
            let config = GlowConfig::load(&run.join("config.json")).expect("run config");
            assert_eq!(
                (config.coupling, config.permutation, config.seed),
                (variant.coupling, variant.permutation, seed)
            );
            let tests = MetricsFile::read(&run.join("metrics.csv"))
                .expect("metrics")
                .iter()
                .filter(|r| r.test_bpd.is_some())
                .count();
            assert_eq!(tests, 2, "evaluations at steps 1 and 2");
        }
    }
    assert_eq!(
        (variants[0].coupling, variants[0].permutation),
        (CouplingKind::Additive, PermutationKind::Reverse)
    );
    assert_eq!(points.len(), 8);
    let csv = std::fs::read_to_string(out.join("ablation.csv")).expect("csv");
    assert_eq!(csv.lines().count(), 9);
    assert!(out.join("ablation.png").is_file());
    let table = std::fs::read_to_string(out.join("ablation.md")).expect("table");

    let summary = summarise(&points);
    assert_eq!(summary.len(), 2);
    for row in &summary {
        let finals: Vec<f64> = points
            .iter()
            .filter(|p| p.variant == row.variant && p.step == 2)
            .map(|p| p.test_bpd)
            .collect();
        assert_eq!((row.step, row.seeds, finals.len()), (2, 2, 2));
        let mean = (finals[0] + finals[1]) / 2.0;
        let sd = (finals[0] - finals[1]).abs() / 2f64.sqrt();
        assert!((row.mean - mean).abs() < 1e-12 && (row.std - sd).abs() < 1e-12);
        assert_eq!(row.min, finals[0].min(finals[1]));
        assert!(table.contains(&format!("| {} |", row.variant.name())));
    }
    assert!(summary[0].mean <= summary[1].mean, "best first");

    // A second call finds every run finished and trains nothing.
    let (again, started_again) = ablate();
    assert_eq!((started_again, again), (0, points));
}
