//! Every layer is an exact bijection: inverse(forward(x)) = x, the forward and inverse
//! log-determinants cancel, and the log-determinant equals log|det J| of the brute-force
//! Jacobian (f64 central differences), per sample.

mod common;

use burn::tensor::{Device, Tensor};
use common::*;
use glowflow::flow::actnorm::ActNorm;
use glowflow::flow::conv::{Padding, ZeroConv2d};
use glowflow::flow::coupling::{Coupling, CouplingKind, CouplingNet, CouplingOptions};
use glowflow::flow::permute::{Permutation, PermutationKind};
use glowflow::flow::prior::{one_hot, TopPrior};
use glowflow::flow::split::Split;
use glowflow::flow::squeeze::Squeeze;
use glowflow::flow::step::FlowStep;
use glowflow::flow::InvertibleMap;
use glowflow::tensor_ops::to_f64_vec;
use glowflow::GlowError;
use rand::SeedableRng;

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// The three properties every invertible map must have, checked on each sample of `x`.
fn assert_exact_bijection(name: &str, map: &impl InvertibleMap, x: Tensor<4>) {
    assert_exact_conditional_bijection(name, map, x, None)
}

/// [`assert_exact_bijection`] for a map conditioned on `c` (one row per sample of `x`).
fn assert_exact_conditional_bijection(
    name: &str,
    map: &impl InvertibleMap,
    x: Tensor<4>,
    c: Option<&Tensor<2>>,
) {
    let n = x.dims()[0];
    let (y, ld_forward) = map.forward(x.clone(), c);
    assert!(
        to_f64_vec(y.clone()).iter().all(|v| v.is_finite()),
        "{name}: non-finite output"
    );
    let (x_back, ld_inverse) = map.inverse(y.clone(), c);
    assert_eq!(x_back.dims(), x.dims(), "{name}: inverse changes the shape");
    let err = max_abs_diff(x_back, x.clone());
    assert!(
        err < 1e-10,
        "{name}: inverse(forward(x)) differs from x by {err:.3e}"
    );
    let (ld_forward, ld_inverse) = (values(ld_forward), values(ld_inverse));
    assert_eq!(ld_forward.len(), n, "{name}: one log-det per sample");
    for i in 0..n {
        assert_rel_close(
            ld_forward[i] + ld_inverse[i],
            0.0,
            1e-10,
            &format!("{name}: log-dets cancel"),
        );
        let c_i = c.map(|c| c.clone().narrow(0, i, 1));
        let brute = brute_force_log_det(
            |t| to_f64_vec(map.forward(t, c_i.as_ref()).0),
            &sample(&x, i),
        );
        assert_rel_close(
            ld_forward[i],
            brute,
            1e-6,
            &format!("{name}: log-det vs Jacobian, sample {i}"),
        );
    }
}

fn input(shape: [usize; 4], seed: u64, device: &Device) -> Tensor<4> {
    normal(shape, 1.0, seed, device)
}

/// An ActNorm initialised on data with per-channel means and scales far from 0 and 1.
fn shifted_scaled_input(device: &Device) -> Tensor<4> {
    let x = input([8, 4, 4, 4], 11, device);
    let scale = Tensor::<1>::from_floats([0.1, 2.0, 5.0, 0.5], device).reshape([1, 4, 1, 1]);
    let shift = Tensor::<1>::from_floats([3.0, -1.0, 0.0, 10.0], device).reshape([1, 4, 1, 1]);
    x * scale + shift
}

#[test]
fn actnorm_data_init_gives_zero_mean_unit_variance_per_channel() {
    let device = f64_device();
    let x = shifted_scaled_input(&device);
    let layer = ActNorm::new(4, 3.0, &device);
    assert!(!layer.is_initialized());
    let (layer, y) = layer.data_init(x.clone(), None);
    assert!(layer.is_initialized());
    let (y_forward, _) = layer.forward(x, None);
    assert!(
        max_abs_diff(y.clone(), y_forward) < 1e-12,
        "data_init returns forward's output"
    );
    let mean = values(y.clone().mean_dims(&[0, 2, 3]).reshape([4]));
    let var = values(y.square().mean_dims(&[0, 2, 3]).reshape([4]));
    for c in 0..4 {
        assert!(mean[c].abs() < 1e-10, "channel {c} mean {}", mean[c]);
        assert!(
            (var[c] - 1.0).abs() < 1e-4,
            "channel {c} variance {}",
            var[c]
        );
    }
}

#[test]
fn actnorm_initialises_once() {
    let device = f64_device();
    let (layer, _) = ActNorm::new(4, 3.0, &device).data_init(shifted_scaled_input(&device), None);
    let before = (values(layer.bias.val()), values(layer.logs.val()));
    let (layer, _) = layer.data_init(input([8, 4, 4, 4], 99, &device), None);
    assert_eq!(before, (values(layer.bias.val()), values(layer.logs.val())));
}

#[test]
fn actnorm_is_an_exact_bijection() {
    let device = f64_device();
    for factor in [3.0, 1.0] {
        let (layer, _) =
            ActNorm::new(4, factor, &device).data_init(shifted_scaled_input(&device), None);
        assert_exact_bijection("actnorm", &layer, input([2, 4, 4, 4], 1, &device));
    }
}

#[test]
fn permutations_are_exact_bijections() {
    let device = f64_device();
    let cases = [
        ("1x1 conv", PermutationKind::InvConv, false),
        ("LU 1x1 conv", PermutationKind::InvConv, true),
        ("reverse", PermutationKind::Reverse, false),
        ("shuffle", PermutationKind::Shuffle, false),
    ];
    for (name, kind, lu) in cases {
        let layer = Permutation::new(kind, lu, 4, &mut rng(3), &device);
        // Moves the 1x1 convolutions away from a rotation, so log|det W| is not 0.
        let layer = perturb(layer, 0.3, 4);
        assert_exact_bijection(name, &layer, input([2, 4, 3, 3], 2, &device));
    }
}

#[test]
fn fixed_permutations_move_channels_without_changing_values() {
    let device = f64_device();
    let x = input([1, 6, 2, 2], 5, &device);
    let reverse = Permutation::new(PermutationKind::Reverse, false, 6, &mut rng(0), &device);
    let (y, _) = reverse.forward(x.clone(), None);
    assert_eq!(to_f64_vec(y), to_f64_vec(x.clone().flip([1])));
    let shuffle = Permutation::new(PermutationKind::Shuffle, false, 6, &mut rng(0), &device);
    let (y, _) = shuffle.forward(x.clone(), None);
    let mut sorted_in = to_f64_vec(x);
    let mut sorted_out = to_f64_vec(y);
    sorted_in.sort_by(f64::total_cmp);
    sorted_out.sort_by(f64::total_cmp);
    assert_eq!(sorted_in, sorted_out);
}

#[test]
fn lu_weight_starts_as_a_rotation_and_log_det_is_sum_of_log_s() {
    let device = f64_device();
    let Permutation::ConvLu(layer) =
        Permutation::new(PermutationKind::InvConv, true, 5, &mut rng(8), &device)
    else {
        panic!("inv-conv with lu builds the LU layer");
    };
    let w = nalgebra::DMatrix::from_row_slice(5, 5, &to_f64_vec(layer.weight()));
    let wtw = w.transpose() * &w;
    for i in 0..5 {
        for j in 0..5 {
            let expected = if i == j { 1.0 } else { 0.0 };
            assert!(
                (wtw[(i, j)] - expected).abs() < 1e-12,
                "W is orthogonal at init"
            );
        }
    }
    let layer = perturb(layer, 0.2, 9);
    let log_det = log_abs_det_qr(&to_f64_vec(layer.weight()), 5);
    assert_rel_close(
        values(layer.log_s.val()).iter().sum(),
        log_det,
        1e-12,
        "Σ log_s = log|det W|",
    );
}

fn coupling_options(
    kind: CouplingKind,
    padding: Padding,
    hidden_actnorm: Option<f64>,
) -> CouplingOptions {
    CouplingOptions {
        kind,
        width: 8,
        padding,
        hidden_actnorm,
        zero_logscale_factor: 3.0,
        scale_floor: 0.0,
    }
}

/// The affine coupling with a scale floor `f`.
fn floored_affine_options(floor: f64) -> CouplingOptions {
    CouplingOptions {
        scale_floor: floor,
        ..coupling_options(CouplingKind::Affine, Padding::Edge, Some(3.0))
    }
}

#[test]
fn couplings_are_exact_bijections() {
    let device = f64_device();
    for kind in [
        CouplingKind::Additive,
        CouplingKind::Affine,
        CouplingKind::AffineExp,
    ] {
        for padding in [Padding::Edge, Padding::Zero] {
            for hidden in [Some(3.0), None] {
                let name =
                    format!("{kind:?} coupling, {padding:?} padding, hidden actnorm {hidden:?}");
                let options = coupling_options(kind, padding, hidden);
                let layer =
                    Coupling::new(4, &options, &mut rng(6), &device).expect("4 channels split");
                let x = input([2, 4, 4, 4], 7, &device);
                let (layer, _) = layer.data_init(x.clone(), None);
                let layer = perturb(layer, 0.1, 8);
                assert_exact_bijection(&name, &layer, x);
            }
        }
    }
    let layer = Coupling::new(4, &floored_affine_options(0.3), &mut rng(6), &device)
        .expect("4 channels split");
    let x = input([2, 4, 4, 4], 7, &device);
    let (layer, _) = layer.data_init(x.clone(), None);
    assert_exact_bijection("floored affine coupling", &perturb(layer, 0.1, 8), x);
}

/// With a floor `f`, the scale `s = f + (1 − f) · sigmoid(r + 2)` stays in `(f, 1)` however far
/// the network's output goes: the inverse multiplies `y_b + t`'s part by at most `1 / f`, and
/// each element's log-det term, recovered from the forward map itself, is `log s ≥ log f`.
#[test]
fn floored_affine_scale_bounds_the_inverse() {
    let device = f64_device();
    let floor = 0.25;
    let layer = Coupling::new(4, &floored_affine_options(floor), &mut rng(3), &device)
        .expect("4 channels split");
    let x = input([2, 4, 4, 4], 9, &device);
    let (layer, _) = layer.data_init(x.clone(), None);
    // Output weights this large drive |r| to tens, where an unfloored sigmoid(r + 2) is ~1e-17.
    let layer = Coupling {
        net: CouplingNet {
            conv_out: ZeroConv2d {
                conv: perturb(layer.net.conv_out.conv, 5.0, 4),
                ..layer.net.conv_out
            },
            ..layer.net
        },
        ..layer
    };
    let (y, log_det) = layer.forward(x.clone(), None);
    let (x_a, x_b) = (x.clone().narrow(1, 0, 2), x.clone().narrow(1, 2, 2));
    let y_b = y.clone().narrow(1, 2, 2);
    // y_b = (x_b + t) · s, linear in x_b: s = y_b(x_b + 1) − y_b(x_b), since x_a (and so t, s)
    // is unchanged.
    let (y_shifted, _) = layer.forward(Tensor::cat(vec![x_a, x_b + 1.0], 1), None);
    let scales = to_f64_vec(y_shifted.narrow(1, 2, 2) - y_b);
    let (lowest, highest) = scales
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &s| (lo.min(s), hi.max(s)));
    assert!(
        lowest >= floor - 1e-9 && highest <= 1.0 + 1e-9,
        "scales span [{lowest}, {highest}], outside [{floor}, 1]"
    );
    assert!(
        lowest < floor + 1e-3,
        "the perturbed network should push some scales to the floor (lowest {lowest})"
    );
    let per_sample = scales.len() / 2;
    for (i, ld) in values(log_det).into_iter().enumerate() {
        let expected: f64 = scales[i * per_sample..(i + 1) * per_sample]
            .iter()
            .map(|s| s.ln())
            .sum();
        assert_rel_close(ld, expected, 1e-8, "log-det = Σ log s");
    }
    let (x_back, _) = layer.inverse(y, None);
    let err = max_abs_diff(x_back, x);
    assert!(
        err < 1e-8,
        "inverse(forward(x)) differs from x by {err:.3e}"
    );
}

#[test]
fn zero_initialised_coupling_starts_as_the_identity_or_openai_scale() {
    let device = f64_device();
    let x = input([2, 4, 4, 4], 12, &device);
    for (kind, scale) in [
        (CouplingKind::Additive, 1.0),
        (CouplingKind::AffineExp, 1.0),
        (CouplingKind::Affine, 1.0 / (1.0 + (-2.0f64).exp())),
    ] {
        let options = coupling_options(kind, Padding::Edge, Some(3.0));
        let layer = Coupling::new(4, &options, &mut rng(1), &device).expect("4 channels split");
        let (y, _) = layer.forward(x.clone(), None);
        let expected = Tensor::cat(
            vec![x.clone().narrow(1, 0, 2), x.clone().narrow(1, 2, 2) * scale],
            1,
        );
        assert!(
            max_abs_diff(y, expected) < 1e-12,
            "{kind:?} at initialisation"
        );
    }
}

#[test]
fn coupling_rejects_an_odd_channel_count() {
    let device = f64_device();
    let options = coupling_options(CouplingKind::Affine, Padding::Edge, Some(3.0));
    let err =
        Coupling::new(3, &options, &mut rng(0), &device).expect_err("3 channels cannot halve");
    assert!(matches!(err, GlowError::Shape { .. }));
    assert!(err.to_string().contains("3 channels"), "{err}");
}

#[test]
fn squeeze_is_an_exact_bijection_with_openai_channel_order() {
    let device = f64_device();
    let x = input([2, 2, 4, 6], 13, &device);
    assert_exact_bijection("squeeze", &Squeeze, x.clone());
    let (y, _) = Squeeze.forward(x.clone(), None);
    assert_eq!(y.dims(), [2, 8, 2, 3]);
    let (xs, ys) = (to_f64_vec(x), to_f64_vec(y));
    for n in 0..2 {
        for c in 0..2 {
            for i in 0..2 {
                for j in 0..3 {
                    for dy in 0..2 {
                        for dx in 0..2 {
                            let src = ((n * 2 + c) * 4 + 2 * i + dy) * 6 + 2 * j + dx;
                            let dst = ((n * 8 + 4 * c + 2 * dy + dx) * 2 + i) * 3 + j;
                            assert_eq!(ys[dst], xs[src]);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn split_is_an_exact_bijection() {
    let device = f64_device();
    for padding in [Padding::Edge, Padding::Zero] {
        let layer = perturb(Split::new(4, padding, 3.0, &device), 0.1, 14);
        assert_exact_bijection("split", &layer, input([2, 4, 4, 4], 15, &device));
    }
}

#[test]
fn top_prior_is_an_exact_bijection() {
    let device = f64_device();
    for (learn_top, n_classes) in [(true, 0), (true, 3), (false, 3)] {
        let prior = perturb(
            TopPrior::new([4, 2, 2], learn_top, n_classes, Padding::Edge, 3.0, &device),
            0.1,
            16,
        );
        let classes =
            (n_classes > 0).then(|| one_hot(&[2, 0], n_classes, &device).expect("labels < 3"));
        assert_exact_conditional_bijection(
            "top prior",
            &prior,
            input([2, 4, 2, 2], 17, &device),
            classes.as_ref(),
        );
    }
}

#[test]
fn one_hot_rejects_a_label_out_of_range() {
    let device = f64_device();
    let err = one_hot(&[0, 5], 3, &device).expect_err("5 is not a class of 3");
    assert!(err.to_string().contains("label 5"), "{err}");
}

#[test]
fn class_conditional_top_prior_depends_on_the_label() {
    let device = f64_device();
    for learn_top in [true, false] {
        let prior = perturb(
            TopPrior::new([4, 2, 2], learn_top, 3, Padding::Edge, 3.0, &device),
            0.1,
            16,
        );
        let classes = one_hot(&[0, 1, 2, 1], 3, &device).expect("labels < 3");
        let (mean, log_std) = prior.mean_log_std(4, Some(&classes), &device);
        for (i, j) in [(0, 1), (0, 2), (1, 2)] {
            let gaps = [&mean, &log_std].map(|t| max_abs_diff(sample(t, i), sample(t, j)));
            assert!(
                gaps.iter().all(|g| *g > 1e-3),
                "learn_top={learn_top}: labels of images {i} and {j} give (μ, log σ) {gaps:?} apart"
            );
        }
        for t in [&mean, &log_std] {
            assert_eq!(
                max_abs_diff(sample(t, 1), sample(t, 3)),
                0.0,
                "the same label"
            );
        }
    }
}

#[test]
fn flow_steps_are_exact_bijections() {
    let device = f64_device();
    for (permutation, lu) in [
        (PermutationKind::InvConv, false),
        (PermutationKind::InvConv, true),
        (PermutationKind::Shuffle, false),
    ] {
        for kind in [CouplingKind::Additive, CouplingKind::Affine] {
            let options = coupling_options(kind, Padding::Edge, Some(3.0));
            let step = FlowStep {
                actnorm: ActNorm::new(4, 3.0, &device),
                permutation: Permutation::new(permutation, lu, 4, &mut rng(18), &device),
                coupling: Coupling::new(4, &options, &mut rng(19), &device).expect("even"),
            };
            let x = input([2, 4, 4, 4], 20, &device);
            let (step, _) = step.data_init(x.clone(), None);
            let step = perturb(step, 0.05, 21);
            assert_exact_bijection(&format!("step {permutation:?} lu={lu} {kind:?}"), &step, x);
        }
    }
}

#[test]
fn plain_1x1_conv_log_det_is_differentiable_with_gradient_w_inverse_transpose() {
    let device = f64_device().autodiff();
    let Permutation::Conv(layer) = perturb(
        Permutation::new(PermutationKind::InvConv, false, 4, &mut rng(22), &device),
        0.3,
        23,
    ) else {
        panic!("inv-conv without lu builds the plain layer");
    };
    let (_, log_det) = layer.forward(input([2, 4, 3, 3], 24, &device), None);
    let grads = log_det.sum().backward();
    let grad = to_f64_vec(layer.weight.val().grad(&grads).expect("W is trained"));
    // d/dW Σ_samples H·W·log|det W| = N·H·W·W^-T, so gradᵀ·W = N·H·W·I (checked without
    // inverting W: the layer's gradient itself uses the library's inverse).
    let w = to_f64_vec(layer.weight.val());
    for i in 0..4 {
        for j in 0..4 {
            let grad_t_w: f64 = (0..4).map(|k| grad[k * 4 + i] * w[k * 4 + j]).sum();
            let expected = if i == j { 2.0 * 9.0 } else { 0.0 };
            assert_rel_close(grad_t_w, expected, 1e-9, &format!("(gradᵀ W)[{i},{j}]"));
        }
    }
}

#[test]
fn matmul_convolutions_equal_burn_conv2d_in_value_and_gradients() {
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use glowflow::flow::conv_matmul::same_conv;
    let device = f64_device().autodiff();
    // 1x1, few inputs (shifted inputs), few outputs (shifted outputs), equal, a 5x5 kernel, and
    // at least 8 channels per pixel (240 channels, 30 pixels: the batch-folded product).
    for (c_in, c_out, k) in [
        (4, 6, 1),
        (2, 8, 3),
        (8, 3, 3),
        (5, 5, 3),
        (3, 2, 5),
        (240, 36, 1),
        (240, 4, 3),
    ] {
        let x = input([2, c_in, 5, 6], 30, &device).require_grad();
        let w = normal([c_out, c_in, k, k], 0.3, 31, &device).require_grad();
        let r = normal([2, c_out, 5, 6], 1.0, 32, &device);
        let ours = same_conv(x.clone(), w.clone());
        let options = ConvOptions::new([1, 1], [k / 2, k / 2], [1, 1], 1);
        let reference = conv2d(x.clone(), w.clone(), None, options);
        let what = format!("{c_in}->{c_out} k{k}");
        assert!(
            max_abs_diff(ours.clone(), reference.clone()) < 1e-12,
            "{what}: values"
        );
        let g_ours = (ours * r.clone()).sum().backward();
        let g_ref = (reference * r).sum().backward();
        for (a, b, name) in [
            (x.grad(&g_ours), x.grad(&g_ref), "dx"),
            (w.grad(&g_ours), w.grad(&g_ref), "dW"),
        ] {
            let (a, b) = (a.expect("gradient"), b.expect("gradient"));
            assert!(max_abs_diff(a, b) < 1e-12, "{what}: {name}");
        }
    }
}

#[test]
fn stacked_weight_is_the_tap_major_permutation_in_value_and_gradient() {
    use glowflow::flow::taps::stacked_weight;
    let device = f64_device().autodiff();
    // 35 rows of taps: two whole blocks of the host transpose and a partial one.
    let [o, c, k] = [5, 7, 3];
    let w = normal([o, c, k, k], 1.0, 40, &device).require_grad();
    let r = normal([k * k * o, c], 1.0, 41, &device);
    let ours = stacked_weight(w.clone());
    // Row s·O + o holds W[o, :, s], element by element from the weight's own values.
    let (values, stacked) = (to_f64_vec(w.clone()), to_f64_vec(ours.clone()));
    for (s, oi, ci) in
        (0..k * k).flat_map(|s| (0..o).flat_map(move |oi| (0..c).map(move |ci| (s, oi, ci))))
    {
        assert_eq!(
            stacked[(s * o + oi) * c + ci],
            values[(oi * c + ci) * k * k + s],
            "tap {s}, output {oi}, input {ci}"
        );
    }
    // The gradient of Σ stacked · r is r laid back into the weight's layout.
    let grads = (ours * r.clone()).sum().backward();
    let reference = r.reshape([k, k, o, c]).permute([2, 3, 0, 1]);
    assert_eq!(to_f64_vec(w.grad(&grads).unwrap()), to_f64_vec(reference));
}

/// `Σ_k a[b_a, i, k] · c[b_c, k, j]` in f64 on the host, `[B, M, N]`: the naive product the
/// CPU's gemm products are checked against (batch index 0 for a broadcast operand).
fn naive_product(a: &[f64], a_dims: [usize; 3], c: &[f64], c_dims: [usize; 3]) -> Vec<f64> {
    let ([ba, m, k], [bc, _, n]) = (a_dims, c_dims);
    let batch = ba.max(bc);
    let mut out = vec![0.0; batch * m * n];
    for b in 0..batch {
        let (pa, pc) = (if ba == 1 { 0 } else { b }, if bc == 1 { 0 } else { b });
        for i in 0..m {
            for j in 0..n {
                out[(b * m + i) * n + j] = (0..k)
                    .map(|t| a[(pa * m + i) * k + t] * c[(pc * k + t) * n + j])
                    .sum();
            }
        }
    }
    out
}

/// Transposes the last two axes of host values laid out as `dims`.
fn transposed(x: &[f64], [b, r, c]: [usize; 3]) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for p in 0..b {
        for i in 0..r {
            for j in 0..c {
                out[(p * c + j) * r + i] = x[(p * r + i) * c + j];
            }
        }
    }
    out
}

/// Sums host values `[B, R, C]` over the batch, `[1, R, C]`.
fn batch_sum(x: &[f64], [b, r, c]: [usize; 3]) -> Vec<f64> {
    (0..r * c)
        .map(|e| (0..b).map(|p| x[p * r * c + e]).sum())
        .collect()
}

#[test]
fn host_gemm_products_equal_naive_sums_in_value_and_gradients() {
    use glowflow::flow::host_gemm::matmul;
    // Broadcast on either side or neither, and operands read through transposed strides.
    for (device, tolerance) in [(f64_device(), 1e-12), (f32_device(), 1e-4)] {
        for (lhs_batch, rhs_batch, transpose) in [
            (1, 3, false),
            (3, 1, false),
            (3, 3, false),
            (1, 1, false),
            (1, 3, true),
            (3, 3, true),
        ] {
            let (m, k, n) = (5, 7, 4);
            let what = format!(
                "[{lhs_batch}, {m}, {k}] x [{rhs_batch}, {k}, {n}], transposed {transpose}"
            );
            let l_dims = [lhs_batch, m, k];
            let r_dims = [rhs_batch, k, n];
            let make = |dims: [usize; 3], seed| {
                let [b, r, c] = dims;
                match transpose {
                    // Stored as [b, c, r] and read through swapped strides.
                    true => normal([b, c, r], 1.0, seed, &device).swap_dims(1, 2),
                    false => normal(dims, 1.0, seed, &device),
                }
            };
            let (lhs, rhs) = (make(l_dims, 40), make(r_dims, 41));
            let (l_host, r_host) = (to_f64_vec(lhs.clone()), to_f64_vec(rhs.clone()));
            let expected = naive_product(&l_host, l_dims, &r_host, r_dims);
            let plain = to_f64_vec(matmul(lhs.clone(), rhs.clone()));
            assert!(max_abs_gap(&plain, &expected) < tolerance, "{what}: value");

            // d/dL Σ Y ⊙ G = G Rᵀ, d/dR = Lᵀ G, summed over the batch of a broadcast operand.
            let batch = lhs_batch.max(rhs_batch);
            let g = normal([batch, m, n], 1.0, 42, &device);
            let g_host = to_f64_vec(g.clone());
            let l_ad = lhs.autodiff().require_grad();
            let r_ad = rhs.autodiff().require_grad();
            let grads = (matmul(l_ad.clone(), r_ad.clone()) * g.autodiff())
                .sum()
                .backward();
            let mut dl = naive_product(
                &g_host,
                [batch, m, n],
                &transposed(&r_host, r_dims),
                [rhs_batch, n, k],
            );
            if lhs_batch == 1 {
                dl = batch_sum(&dl, [batch, m, k]);
            }
            let mut dr = naive_product(
                &transposed(&l_host, l_dims),
                [lhs_batch, k, m],
                &g_host,
                [batch, m, n],
            );
            if rhs_batch == 1 {
                dr = batch_sum(&dr, [batch, k, n]);
            }
            let dl_ours = to_f64_vec(l_ad.grad(&grads).expect("lhs gradient"));
            let dr_ours = to_f64_vec(r_ad.grad(&grads).expect("rhs gradient"));
            assert!(max_abs_gap(&dl_ours, &dl) < tolerance, "{what}: dL");
            assert!(max_abs_gap(&dr_ours, &dr) < tolerance, "{what}: dR");
        }
    }
}

#[test]
fn fused_actnorm_relu_equals_its_composition_in_value_and_gradients() {
    use burn::tensor::activation::relu;
    use glowflow::flow::actnorm_relu::actnorm_relu;
    let composed = |x: Tensor<4>, b: Tensor<1>, s: Tensor<1>| {
        let c = b.dims()[0];
        relu((x + b.reshape([1, c, 1, 1])) * s.reshape([1, c, 1, 1]))
    };
    // The input row-major, channel-major (`[C, N, H, W]` in memory, as a batch-folded product
    // leaves it: read in place) and with its pixel axes swapped (copied first); the gradient
    // arriving row-major or channel-major. Each input is a view of a leaf of its own shape.
    type View = fn(Tensor<4>) -> Tensor<4>;
    let layouts: [(&str, [usize; 4], View); 3] = [
        ("row-major", [2, 5, 3, 7], |leaf| leaf),
        ("channel-major", [5, 2, 3, 7], |leaf| leaf.swap_dims(0, 1)),
        ("pixels swapped", [2, 5, 7, 3], |leaf| leaf.swap_dims(2, 3)),
    ];
    for (device, tolerance) in [(f64_device(), 1e-12), (f32_device(), 1e-5)] {
        let ad = device.clone().autodiff();
        for ((layout, leaf_dims, view), channel_major_grad) in
            layouts.into_iter().flat_map(|l| [(l, false), (l, true)])
        {
            // Negative scales too (the linear parameterisation stores the scale itself); planes
            // of 21 pixels, so that both the 16-wide blocks and the tail of the backward pass run.
            let leaf = normal(leaf_dims, 1.0, 50, &ad).require_grad();
            let b = normal([5], 0.5, 51, &ad).require_grad();
            let s = normal([5], 1.0, 52, &ad).require_grad();
            // Each graph its own view (a graph's tape is consumed by its backward pass).
            let ours = actnorm_relu(view(leaf.clone()), b.clone(), s.clone());
            let reference = composed(view(leaf.clone()), b.clone(), s.clone());
            assert_eq!(
                to_f64_vec(ours.clone()),
                to_f64_vec(reference.clone()),
                "values, bit for bit ({layout})"
            );
            // Σ z·g, with g laid out so that ∂/∂z arrives row-major or channel-major.
            let loss = |z: Tensor<4>| match channel_major_grad {
                false => (z * normal([2, 5, 3, 7], 1.0, 53, &ad)).sum(),
                true => (z.swap_dims(0, 1) * normal([5, 2, 3, 7], 1.0, 53, &ad)).sum(),
            };
            let g_ours = loss(ours).backward();
            let g_ref = loss(reference).backward();
            for (name, a, r) in [
                (
                    "dx",
                    to_f64_vec(leaf.grad(&g_ours).unwrap()),
                    to_f64_vec(leaf.grad(&g_ref).unwrap()),
                ),
                (
                    "db",
                    to_f64_vec(b.grad(&g_ours).unwrap()),
                    to_f64_vec(b.grad(&g_ref).unwrap()),
                ),
                (
                    "ds",
                    to_f64_vec(s.grad(&g_ours).unwrap()),
                    to_f64_vec(s.grad(&g_ref).unwrap()),
                ),
            ] {
                // The per-channel sums are added in another order: rounding only.
                assert!(
                    max_abs_gap(&a, &r) < tolerance,
                    "{name} ({layout}, gradient channel-major: {channel_major_grad})"
                );
            }
        }
    }
    // Without a graph, an input that owns its buffer is rewritten in place: the same values, in
    // both layouts that allow it (each input drawn afresh, so that nothing else holds it).
    for device in [f64_device(), f32_device()] {
        for (layout, leaf_dims, view) in layouts.into_iter().take(2) {
            let fresh = || view(normal(leaf_dims, 1.0, 54, &device));
            let (b, s) = (normal([5], 0.5, 55, &device), normal([5], 1.0, 56, &device));
            assert_eq!(
                to_f64_vec(actnorm_relu(fresh(), b.clone(), s.clone())),
                to_f64_vec(composed(fresh(), b, s)),
                "values in place, bit for bit ({layout})"
            );
        }
    }
    // NaN passes through, as burn's relu lets it.
    let device = f64_device();
    let mut values = vec![-1.0, 2.0, f64::NAN, 0.5];
    let x = glowflow::tensor_ops::from_f64(values.clone(), [1, 2, 1, 2], &device);
    let (b, s) = (
        Tensor::<1>::zeros([2], &device),
        Tensor::<1>::ones([2], &device),
    );
    let out = to_f64_vec(actnorm_relu(x, b, s));
    values[0] = 0.0;
    assert_eq!(out[..2], values[..2]);
    assert!(out[2].is_nan() && out[3] == 0.5);
}

#[test]
fn fused_hidden_layer_equals_its_product_then_activation_bit_for_bit() {
    use burn::tensor::activation::relu;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use glowflow::flow::actnorm_relu::actnorm_relu;
    use glowflow::flow::conv_matmul::{pointwise, pointwise_relu};
    // One product per image (20 channels < 8 · 35 pixels: planes of 35, two 16-wide blocks and
    // a tail) and the batch folded into the columns (40 channels ≥ 8 · 4: planes of 4, a tail
    // only), each against the composition it replaces (the product, then the fused activation)
    // bit for bit, and in f64 against burn's own conv2d and elementwise operations.
    for (form, x_dims) in [("per image", [3, 20, 5, 7]), ("folded", [3, 40, 2, 2])] {
        let [n, c, h, w] = x_dims;
        for (device, burn_tolerance) in [(f64_device(), Some(1e-12)), (f32_device(), None)] {
            let ad = device.clone().autodiff();
            let x = normal(x_dims, 1.0, 60, &ad).require_grad();
            let weight = normal([6, c], 0.3, 61, &ad).require_grad();
            // Negative scales too, so that both signs of the activation's gate are taken.
            let b = normal([6], 0.5, 62, &ad).require_grad();
            let s = normal([6], 1.0, 63, &ad).require_grad();
            let g = normal([n, 6, h, w], 1.0, 64, &ad);
            let ours = pointwise_relu(x.clone(), weight.clone(), b.clone(), s.clone());
            let composed = actnorm_relu(pointwise(x.clone(), weight.clone()), b.clone(), s.clone());
            let by_burn = relu(
                (conv2d(
                    x.clone(),
                    weight.clone().reshape([6, c, 1, 1]),
                    None,
                    ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
                ) + b.clone().reshape([1, 6, 1, 1]))
                    * s.clone().reshape([1, 6, 1, 1]),
            );
            let (ours_values, by_burn_values) =
                (to_f64_vec(ours.clone()), to_f64_vec(by_burn.clone()));
            assert_eq!(ours_values, to_f64_vec(composed.clone()), "values ({form})");
            let grads = |z: Tensor<4>| {
                let grads = (z * g.clone()).sum().backward();
                [
                    to_f64_vec(x.grad(&grads).expect("dx")),
                    to_f64_vec(weight.grad(&grads).expect("dW")),
                    to_f64_vec(b.grad(&grads).expect("db")),
                    to_f64_vec(s.grad(&grads).expect("ds")),
                ]
            };
            let (g_ours, g_composed) = (grads(ours), grads(composed));
            for ((name, a), r) in ["dx", "dW", "db", "ds"]
                .iter()
                .zip(&g_ours)
                .zip(&g_composed)
            {
                assert_eq!(a, r, "{name} ({form})");
            }
            if let Some(tolerance) = burn_tolerance {
                assert!(
                    max_abs_gap(&ours_values, &by_burn_values) < tolerance,
                    "values against burn ({form})"
                );
                for ((name, a), r) in ["dx", "dW", "db", "ds"]
                    .iter()
                    .zip(&g_ours)
                    .zip(&grads(by_burn))
                {
                    assert!(
                        max_abs_gap(a, r) < tolerance,
                        "{name} against burn ({form})"
                    );
                }
            }
            // Without a graph: the activation in place after each product.
            let (x, weight, b, s) = (x.inner(), weight.inner(), b.inner(), s.inner());
            assert_eq!(
                to_f64_vec(pointwise_relu(
                    x.clone(),
                    weight.clone(),
                    b.clone(),
                    s.clone()
                )),
                to_f64_vec(actnorm_relu(pointwise(x, weight), b, s)),
                "values without a graph ({form})"
            );
        }
    }
}
