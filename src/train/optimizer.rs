//! Adam and Adamax over a flat parameter list, with gradient clipping by the global norm over all
//! parameters (burn's built-in clipping is per tensor).
//!
//! ```text
//! clip:    g ← g · min(1, c / ‖g‖),  ‖g‖ = sqrt(Σ over all parameters of Σ g²)
//! Adam:    m ← β₁m + (1-β₁)g,  v ← β₂v + (1-β₂)g²,  p ← p - lr · m̂ / (sqrt(v̂) + ε)
//!          with m̂ = m / (1-β₁ᵗ), v̂ = v / (1-β₂ᵗ)
//! Adamax:  m ← β₁m + (1-β₁)g,  u ← max(β₂u, |g|),  p ← p - lr · sqrt(1-β₂ᵗ)/(1-β₁ᵗ) · m / (u + ε)
//!          (openai/glow's `adamax` in its optim.py: Adam's two bias corrections folded into the
//!          step size; torch's Adamax, y0ast's, corrects the first moment only)
//! ```
//!
//! The state is two lists aligned with [`crate::model::params::flat_params`], so it can be saved in the
//! same layout as the model's weights.

use std::ops::{Add, Div, Mul, Sub};

use burn::tensor::{DType, DataError, Element, Tensor, TensorData};
use multiversion::multiversion;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::device::runs_on_host;

/// Which update rule (`--optimizer` takes the same kebab-case names as the config files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Adam (Kingma & Ba 2015) with bias correction.
    Adam,
    /// Adamax as openai/glow implements it (its default).
    Adamax,
}

/// Hyper-parameters of the update rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSettings {
    /// Update rule.
    pub kind: OptimizerKind,
    /// First-moment decay β₁.
    pub beta1: f64,
    /// Second-moment decay β₂.
    pub beta2: f64,
    /// Denominator offset ε.
    pub epsilon: f64,
}

impl OptimizerSettings {
    /// Adam with Kingma & Ba's (and PyTorch's) defaults: β₁ = 0.9, β₂ = 0.999, ε = 1e-8.
    pub fn adam() -> Self {
        OptimizerSettings {
            kind: OptimizerKind::Adam,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        }
    }
}

/// The moments of every parameter, aligned with the flat parameter list.
#[derive(Debug, Clone)]
pub struct OptimizerState {
    /// First moments `m`.
    pub first: Vec<Tensor<1>>,
    /// Second moments (`v` for Adam, `u` for Adamax).
    pub second: Vec<Tensor<1>>,
    /// Updates applied so far (`t`).
    pub step: u64,
}

/// `sqrt(Σ g²)` over every gradient, as a one-element tensor.
pub fn global_norm(grads: &[Option<Tensor<1>>]) -> Tensor<1> {
    grads
        .iter()
        .flatten()
        .map(|g| g.clone().square().sum())
        .reduce(|a, b| a + b)
        .expect("a model has trained parameters")
        .sqrt()
}

impl OptimizerState {
    /// Zero moments for parameters shaped like `params`.
    pub fn new(params: &[Tensor<1>]) -> Self {
        let zeros: Vec<Tensor<1>> = params.iter().map(|p| p.zeros_like()).collect();
        OptimizerState {
            first: zeros.clone(),
            second: zeros,
            step: 0,
        }
    }

    /// One update: the new value of every parameter that has a gradient (`None` elsewhere).
    /// `grad_scale` multiplies every gradient first (the global-norm clipping factor).
    ///
    /// On the CPU each parameter is updated in one pass over its host values, the parameters
    /// spread over the worker threads (burn's CPU backend runs each tensor operation as its own
    /// pass on the calling thread: about ten of them per parameter); on a GPU the same rule runs
    /// as tensor operations. Both evaluate the one update rule (`rule`, below) with the same
    /// roundings: on the CPU's backend they agree bit for bit. The parameters are taken by value:
    /// one that nothing else holds ([`crate::model::params::take_flat_params`]) is rewritten in
    /// place, any other copied first.
    pub fn update(
        &mut self,
        settings: &OptimizerSettings,
        lr: f64,
        grad_scale: f64,
        params: Vec<Tensor<1>>,
        grads: Vec<Option<Tensor<1>>>,
    ) -> Vec<Option<Tensor<1>>> {
        self.step += 1;
        let coefficients = Coefficients::new(settings, self.step, lr, grad_scale);
        let on_host = params.first().is_some_and(|p| {
            runs_on_host(&p.device()) && matches!(p.dtype(), DType::F32 | DType::F64)
        });
        // The moments are moved out, so that the host path reads and rewrites their buffers
        // without copies (a tensor whose buffer is shared is copied on reading).
        let moments = std::mem::take(&mut self.first)
            .into_iter()
            .zip(std::mem::take(&mut self.second));
        let work: Vec<_> = params.into_iter().zip(grads).zip(moments).collect();
        let update_one = |((param, grad), (m, s)): ((Tensor<1>, Option<Tensor<1>>), _)| {
            let Some(g) = grad else {
                return (None, m, s);
            };
            let (p, m, s) = if on_host {
                update_on_host(&coefficients, param, g, m, s)
            } else {
                rule(&coefficients, param, g, m, s)
            };
            (Some(p), m, s)
        };
        let results: Vec<_> = if on_host {
            work.into_par_iter().map(update_one).collect()
        } else {
            work.into_iter().map(update_one).collect()
        };
        let mut updated = Vec::with_capacity(results.len());
        for (p, m, s) in results {
            updated.push(p);
            self.first.push(m);
            self.second.push(s);
        }
        updated
    }
}

/// The constants of one update.
struct Coefficients {
    settings: OptimizerSettings,
    /// `1 - β₁ᵗ` and `1 - β₂ᵗ`, Adam's bias corrections at step `t`.
    correction1: f64,
    correction2: f64,
    lr: f64,
    grad_scale: f64,
}

impl Coefficients {
    fn new(settings: &OptimizerSettings, step: u64, lr: f64, grad_scale: f64) -> Self {
        let t = step as i32;
        Coefficients {
            settings: *settings,
            correction1: 1.0 - settings.beta1.powi(t),
            correction2: 1.0 - settings.beta2.powi(t),
            lr,
            grad_scale,
        }
    }
}

/// The arithmetic of the update rules, for whole tensors (any device) and for single host values,
/// so that one written-out [`rule`] serves both. A constant meets the values in their own
/// precision (rounded to f32 for f32 values), as burn's scalar operations do.
trait Arithmetic:
    Sized + Clone + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self>
{
    /// `self · c`.
    fn times(self, c: f64) -> Self;
    /// `self / c`.
    fn over(self, c: f64) -> Self;
    /// `self + c`.
    fn plus(self, c: f64) -> Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    /// The larger of `self` and `other`.
    fn max(self, other: Self) -> Self;
}

impl Arithmetic for Tensor<1> {
    fn times(self, c: f64) -> Self {
        self * c
    }
    fn over(self, c: f64) -> Self {
        self / c
    }
    fn plus(self, c: f64) -> Self {
        self + c
    }
    fn sqrt(self) -> Self {
        Tensor::sqrt(self)
    }
    fn abs(self) -> Self {
        Tensor::abs(self)
    }
    fn max(self, other: Self) -> Self {
        self.max_pair(other)
    }
}

macro_rules! host_arithmetic {
    ($float:ty) => {
        impl Arithmetic for $float {
            #[inline(always)]
            fn times(self, c: f64) -> Self {
                self * c as $float
            }
            #[inline(always)]
            fn over(self, c: f64) -> Self {
                self / c as $float
            }
            #[inline(always)]
            fn plus(self, c: f64) -> Self {
                self + c as $float
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$float>::sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$float>::abs(self)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                <$float>::max(self, other)
            }
        }
    };
}
host_arithmetic!(f32);
host_arithmetic!(f64);

/// One update of a parameter `p` with gradient `g` and moments `(m, s)` (the rules of the module
/// docs): the new `(p, m, s)`.
#[inline(always)]
fn rule<T: Arithmetic>(c: &Coefficients, p: T, g: T, m: T, s: T) -> (T, T, T) {
    let OptimizerSettings {
        kind,
        beta1,
        beta2,
        epsilon,
    } = c.settings;
    let g = g.times(c.grad_scale);
    let m = m.times(beta1) + g.clone().times(1.0 - beta1);
    let (s, direction, step_size) = match kind {
        OptimizerKind::Adam => {
            let v = s.times(beta2) + (g.clone() * g).times(1.0 - beta2);
            let m_hat = m.clone().over(c.correction1);
            let v_hat = v.clone().over(c.correction2);
            (v, m_hat / v_hat.sqrt().plus(epsilon), c.lr)
        }
        OptimizerKind::Adamax => {
            let u = s.times(beta2).max(g.abs());
            // One scalar, as openai/glow's `alpha_t`.
            let step_size = c.lr * c.correction2.sqrt() / c.correction1;
            (u.clone(), m.clone() / u.plus(epsilon), step_size)
        }
    };
    (p - direction.times(step_size), m, s)
}

/// [`rule`] over the host values of one parameter of the CPU backend, in one pass: the parameter,
/// its gradient and moments are read into host buffers (without a copy where the tensor is not
/// shared), updated in place and handed back as tensors of the same device and dtype.
fn update_on_host(
    c: &Coefficients,
    p: Tensor<1>,
    g: Tensor<1>,
    m: Tensor<1>,
    s: Tensor<1>,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let device = p.device();
    let dtype = p.dtype();
    let mut buffers = [p, g, m, s].map(Tensor::into_data);
    #[multiversion(targets = "simd")]
    fn apply<F: Arithmetic + Element + Copy>(
        c: &Coefficients,
        [p, g, m, s]: [&mut TensorData; 4],
    ) -> Result<(), DataError> {
        let values = p.as_mut_slice::<F>()?.iter_mut();
        let moments = m
            .as_mut_slice::<F>()?
            .iter_mut()
            .zip(s.as_mut_slice::<F>()?);
        for ((p, g), (m, s)) in values.zip(g.as_slice::<F>()?).zip(moments) {
            (*p, *m, *s) = rule(c, *p, *g, *m, *s);
        }
        Ok(())
    }
    match dtype {
        DType::F64 => apply::<f64>(c, buffers.each_mut()),
        _ => apply::<f32>(c, buffers.each_mut()),
    }
    .expect("a parameter, its gradient and its moments share the parameter's float dtype");
    let [p, _, m, s] = buffers;
    let tensor = |data| Tensor::from_data(data, (&device, dtype));
    (tensor(p), tensor(m), tensor(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor_ops::to_f64_vec;
    use burn::tensor::Device;
    use rand::{Rng, SeedableRng};

    fn one(values: &[f32]) -> Tensor<1> {
        Tensor::from_floats(values, &Device::flex())
    }

    fn read(t: &Tensor<1>) -> Vec<f32> {
        to_f64_vec(t.clone())
            .into_iter()
            .map(|v| v as f32)
            .collect()
    }

    fn settings(kind: OptimizerKind) -> OptimizerSettings {
        OptimizerSettings {
            kind,
            beta1: 0.9,
            beta2: 0.99,
            epsilon: 1e-8,
        }
    }

    /// The update rules written out for one scalar, step by step.
    fn reference(kind: OptimizerKind, grads: &[f64], lr: f64) -> f64 {
        let (b1, b2, eps) = (0.9f64, 0.99f64, 1e-8);
        let (mut p, mut m, mut s) = (1.0f64, 0.0f64, 0.0f64);
        for (t, g) in grads.iter().enumerate() {
            let t = (t + 1) as i32;
            m = b1 * m + (1.0 - b1) * g;
            match kind {
                OptimizerKind::Adam => {
                    s = b2 * s + (1.0 - b2) * g * g;
                    p -= lr * (m / (1.0 - b1.powi(t))) / ((s / (1.0 - b2.powi(t))).sqrt() + eps);
                }
                OptimizerKind::Adamax => {
                    // openai/glow's optim.py: alpha_t = alpha·sqrt(1 - β₂ᵗ)/(1 - β₁ᵗ).
                    s = (b2 * s).max(g.abs());
                    let alpha_t = lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
                    p -= alpha_t * m / (s + eps);
                }
            }
        }
        p
    }

    #[test]
    fn updates_follow_the_written_rules_and_skip_untrained_parameters() {
        let grads = [0.5, -2.0, 1.5];
        for kind in [OptimizerKind::Adam, OptimizerKind::Adamax] {
            let params = vec![one(&[1.0]), one(&[3.0, 4.0])];
            let mut state = OptimizerState::new(&params);
            let mut current = params.clone();
            for g in grads {
                let updated = state.update(
                    &settings(kind),
                    0.1,
                    1.0,
                    current.clone(),
                    vec![Some(one(&[g as f32])), None],
                );
                assert!(
                    updated[1].is_none(),
                    "a parameter without gradient is not updated"
                );
                current[0] = updated[0].clone().expect("updated");
            }
            let expected = reference(kind, &grads, 0.1);
            let got = f64::from(read(&current[0])[0]);
            assert!(
                (got - expected).abs() < 1e-6,
                "{kind:?}: {got} vs {expected}"
            );
            assert_eq!(state.step, 3);
        }
    }

    /// The CPU's one-pass host update equals the same rule run as whole-tensor operations (the
    /// GPU path) bit for bit, in f32 and f64, with and without clipping, over several steps.
    #[test]
    fn host_update_equals_the_tensor_operations_bit_for_bit() {
        let device = Device::flex();
        for dtype in [DType::F32, DType::F64] {
            for kind in [OptimizerKind::Adam, OptimizerKind::Adamax] {
                let mut rng = rand::rngs::StdRng::seed_from_u64(7);
                let tensor = |n: usize, rng: &mut rand::rngs::StdRng| {
                    let values: Vec<f64> = (0..n).map(|_| rng.random_range(-3.0..3.0)).collect();
                    Tensor::<1>::from_data(TensorData::new(values, [n]), (&device, dtype))
                };
                let sizes = [1, 7, 1000];
                let mut params: Vec<_> = sizes.iter().map(|&n| tensor(n, &mut rng)).collect();
                let mut state = OptimizerState::new(&params);
                let (mut first, mut second) = (state.first.clone(), state.second.clone());
                let mut expected = params.clone();
                for (step, grad_scale) in [(1u64, 1.0), (2, 0.37), (3, 1.0)] {
                    let grads: Vec<_> = sizes.iter().map(|&n| tensor(n, &mut rng)).collect();
                    let c = Coefficients::new(&settings(kind), step, 0.01, grad_scale);
                    for i in 0..sizes.len() {
                        (expected[i], first[i], second[i]) = rule(
                            &c,
                            expected[i].clone(),
                            grads[i].clone(),
                            first[i].clone(),
                            second[i].clone(),
                        );
                    }
                    let grads = grads.into_iter().map(Some).collect();
                    params = state
                        .update(&settings(kind), 0.01, grad_scale, params.clone(), grads)
                        .into_iter()
                        .map(|p| p.expect("every parameter has a gradient"))
                        .collect();
                }
                let bits = |ts: &[Tensor<1>]| -> Vec<u64> {
                    ts.iter()
                        .flat_map(|t| to_f64_vec(t.clone()))
                        .map(f64::to_bits)
                        .collect()
                };
                for (name, got, want) in [
                    ("parameters", &params, &expected),
                    ("first moments", &state.first, &first),
                    ("second moments", &state.second, &second),
                ] {
                    assert_eq!(bits(got), bits(want), "{dtype:?} {kind:?}: {name}");
                }
                assert_eq!(params[0].dtype(), dtype);
            }
        }
    }

    #[test]
    fn global_norm_spans_all_parameters_and_scaling_clips_it() {
        let grads = vec![Some(one(&[3.0])), None, Some(one(&[0.0, 4.0]))];
        let norm = read(&global_norm(&grads))[0];
        assert_eq!(norm, 5.0);
        // Adamax's first step moves each parameter by lr · sqrt(1 - β₂) · sign(g), whatever the scale,
        // so check clipping through Adam's second moment instead: scaling all gradients by c
        // scales m and sqrt(v) alike.
        let params = vec![one(&[0.0]), one(&[0.0]), one(&[0.0, 0.0])];
        let mut clipped = OptimizerState::new(&params);
        clipped.update(
            &settings(OptimizerKind::Adam),
            0.1,
            0.5,
            params.clone(),
            grads,
        );
        assert_eq!(read(&clipped.first[0]), vec![0.1 * 3.0 * 0.5]);
        assert_eq!(read(&clipped.first[2]), vec![0.0, 0.1 * 4.0 * 0.5]);
    }
}
