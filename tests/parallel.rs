//! Data parallelism over the batch: the shards cover the batch, and encoding, decoding and
//! gradients computed in concurrent shards equal those computed in one piece.

mod common;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use common::*;
use glowflow::cluster::Cluster;
use glowflow::parallel::{map_ranges, split};
use glowflow::train::gradients::{loss_and_gradients, FlatGrads, GradientPass};
use glowflow::{CouplingKind, Glow, GlowConfig, Latents, PermutationKind};

/// `f` run in a rayon pool of `threads` worker threads (so `threads` shards at most).
fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool")
        .install(f)
}

#[test]
fn shards_cover_the_batch_in_contiguous_near_equal_pieces() {
    for count in 1..=4 {
        for n in 0..11 {
            // The count alone decides the pieces, not the pool that runs them.
            let pieces = with_threads(1, || split(n, count));
            assert_eq!(pieces, with_threads(3, || split(n, count)), "n = {n}");
            assert_eq!(pieces.len(), count.min(n).max(1), "{count} shards, n = {n}");
            assert_eq!(pieces[0].start, 0);
            assert_eq!(pieces.last().expect("a piece").end, n);
            for pair in pieces.windows(2) {
                assert_eq!(pair[0].end, pair[1].start, "contiguous");
            }
            let sizes: Vec<usize> = pieces.iter().map(|r| r.len()).collect();
            let (min, max) = (sizes.iter().min(), sizes.iter().max());
            assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{sizes:?}");
        }
    }
    // A shard is not split again.
    let nested = with_threads(3, || {
        map_ranges(split(9, 3), |_| Ok(split(9, 3).len())).expect("runs")
    });
    assert_eq!(nested, vec![1, 1, 1]);
}

/// A perturbed, data-initialised class-conditional model with a classifier head and a batch of 5
/// with labels, in f64.
fn model_and_batch(device: &Device) -> (Glow, Tensor<4>, Tensor<4>, Tensor<2>) {
    let config = GlowConfig {
        n_classes: 3,
        class_head: true,
        ..tiny_config(2, CouplingKind::Affine, PermutationKind::InvConv, true)
    };
    let ad = device.clone().autodiff();
    let (images, noise) = random_batch([5, 2, 4, 4], 11, &ad);
    let model = trained_like(config, device, &images, &noise);
    let classes = model.one_hot(&[0, 2, 1, 1, 0], &ad).expect("labels");
    (model, images, noise, classes)
}

fn assert_latents_equal(a: &Latents, b: &Latents, what: &str) {
    assert_eq!(a.levels.len(), b.levels.len());
    for (x, y) in a.levels.iter().zip(&b.levels) {
        assert_eq!(x.dims(), y.dims(), "{what}");
        let diff = max_abs_diff(x.clone(), y.clone());
        assert!(diff <= 1e-12, "{what}: latents differ by {diff:e}");
    }
}

#[test]
fn encoding_and_decoding_in_shards_equal_one_piece() {
    let (model, images, noise, classes) = model_and_batch(&f64_device());
    let plain = model.valid();
    let classes = classes.inner();
    let x = glowflow::likelihood::preprocess(images.inner(), noise.inner(), 8);
    let encode = |shards| {
        let walked = with_threads(shards, || {
            plain
                .encode_in_shards(x.clone(), Some(&classes), shards)
                .expect("encodes")
        });
        (walked.latents, walked.log_det, walked.level_outputs)
    };
    let (eps_one, log_det_one, outputs_one) = encode(1);
    for threads in [2, 3] {
        let (eps, log_det, outputs) = encode(threads);
        assert_latents_equal(&eps, &eps_one, &format!("{threads} shards"));
        let diff = max_abs_diff(log_det, log_det_one.clone());
        assert!(
            diff <= 1e-12,
            "{threads} shards: log-det differs by {diff:e}"
        );
        for (z, z_one) in outputs.into_iter().zip(outputs_one.clone()) {
            assert!(
                max_abs_diff(z, z_one) <= 1e-12,
                "{threads} shards: level outputs"
            );
        }
        let sharded = plain.clone().with_shards(threads);
        let (decoded, _) = with_threads(threads, || {
            sharded.decode(&eps_one, Some(&classes)).expect("decodes")
        });
        let diff = max_abs_diff(decoded, x.clone());
        assert!(
            diff <= 1e-10,
            "{threads} shards: decode(encode(x)) off by {diff:e}"
        );
    }
}

/// Loss (bits/dim plus the head's term) and gradients of the batch in `shards` shards in a pool
/// of `threads`.
fn gradients_with(threads: usize, shards: usize, recompute: bool) -> (f64, FlatGrads) {
    let (model, images, noise, classes) = model_and_batch(&f64_device());
    let pass = GradientPass {
        recompute,
        shards,
        weight_y: 0.5,
    };
    with_threads(threads, || {
        let (loss, grads) = loss_and_gradients(
            &model,
            images,
            noise,
            Some(&classes),
            pass,
            &Cluster::single(),
        )
        .expect("runs");
        (loss.objective(pass.weight_y), grads)
    })
}

#[test]
fn gradients_in_shards_equal_the_whole_batch_gradients() {
    for recompute in [false, true] {
        let (loss_one, grads_one) = gradients_with(1, 1, recompute);
        let trained = grads_one.iter().filter(|g| g.is_some()).count();
        assert!(trained > 10, "only {trained} trained parameters");
        // 5 images in 2 shards (3 + 2) and in 3 shards (2 + 2 + 1): unequal weights.
        for threads in [2, 3] {
            let (loss, grads) = gradients_with(threads, threads, recompute);
            assert_rel_close(loss, loss_one, 1e-12, "loss");
            let err = worst_relative_error(&grads, &grads_one);
            assert!(
                err < 1e-10,
                "{threads} shards, recompute = {recompute}: relative gradient error {err:e}"
            );
        }
    }
}

#[test]
fn a_fixed_shard_count_gives_the_same_gradients_bit_for_bit_on_any_number_of_threads() {
    for recompute in [false, true] {
        let (loss, grads) = gradients_with(1, 3, recompute);
        for threads in [2, 4] {
            let (other_loss, other_grads) = gradients_with(threads, 3, recompute);
            assert_eq!(
                other_loss.to_bits(),
                loss.to_bits(),
                "loss, {threads} threads"
            );
            for (a, b) in other_grads.iter().zip(&grads) {
                let values =
                    |g: &Option<Tensor<1>>| g.clone().map(glowflow::tensor_ops::to_f64_vec);
                assert_eq!(
                    values(a),
                    values(b),
                    "{threads} threads, recompute = {recompute}"
                );
            }
        }
    }
}
