//! Adam and Adamax over a flat parameter list, with gradient clipping by the global norm over all
//! parameters (burn's built-in clipping is per tensor).
//!
//! ```text
//! clip:    g ← g · min(1, c / ‖g‖),  ‖g‖ = sqrt(Σ over all parameters of Σ g²)
//! Adam:    m ← β₁m + (1-β₁)g,  v ← β₂v + (1-β₂)g²,  p ← p - lr · m̂ / (sqrt(v̂) + ε)
//!          with m̂ = m / (1-β₁ᵗ), v̂ = v / (1-β₂ᵗ)
//! Adamax:  m ← β₁m + (1-β₁)g,  u ← max(β₂u, |g|),  p ← p - lr · m / (u + ε)
//!          (openai/glow's `adamax`, without bias correction)
//! ```
//!
//! The state is two lists aligned with [`crate::model::params::flat_params`], so it can be saved in the
//! same layout as the model's weights.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

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
    pub fn update(
        &mut self,
        settings: &OptimizerSettings,
        lr: f64,
        grad_scale: f64,
        params: &[Tensor<1>],
        grads: Vec<Option<Tensor<1>>>,
    ) -> Vec<Option<Tensor<1>>> {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2, eps) = (settings.beta1, settings.beta2, settings.epsilon);
        let mut updated = Vec::with_capacity(params.len());
        for (i, (param, grad)) in params.iter().zip(grads).enumerate() {
            let Some(grad) = grad else {
                updated.push(None);
                continue;
            };
            let g = grad * grad_scale;
            let m = self.first[i].clone() * b1 + g.clone() * (1.0 - b1);
            let (second, step) = match settings.kind {
                OptimizerKind::Adam => {
                    let v = self.second[i].clone() * b2 + g.square() * (1.0 - b2);
                    let m_hat = m.clone() / (1.0 - b1.powi(t));
                    let v_hat = v.clone() / (1.0 - b2.powi(t));
                    (v, m_hat / (v_hat.sqrt() + eps))
                }
                OptimizerKind::Adamax => {
                    let u = (self.second[i].clone() * b2).max_pair(g.abs());
                    (u.clone(), m.clone() / (u + eps))
                }
            };
            self.first[i] = m;
            self.second[i] = second;
            updated.push(Some(param.clone() - step * lr));
        }
        updated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn one(values: &[f32]) -> Tensor<1> {
        Tensor::from_floats(values, &Device::flex())
    }

    fn read(t: &Tensor<1>) -> Vec<f32> {
        crate::tensor_ops::to_f64_vec(t.clone())
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
                    s = (b2 * s).max(g.abs());
                    p -= lr * m / (s + eps);
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
                    &current,
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

    #[test]
    fn global_norm_spans_all_parameters_and_scaling_clips_it() {
        let grads = vec![Some(one(&[3.0])), None, Some(one(&[0.0, 4.0]))];
        let norm = read(&global_norm(&grads))[0];
        assert_eq!(norm, 5.0);
        // Adamax's first step moves each parameter by lr · sign(g) · (1 - β₁), whatever the scale,
        // so check clipping through Adam's second moment instead: scaling all gradients by c
        // scales m and sqrt(v) alike.
        let params = vec![one(&[0.0]), one(&[0.0]), one(&[0.0, 0.0])];
        let mut clipped = OptimizerState::new(&params);
        clipped.update(&settings(OptimizerKind::Adam), 0.1, 0.5, &params, grads);
        assert_eq!(read(&clipped.first[0]), vec![0.1 * 3.0 * 0.5]);
        assert_eq!(read(&clipped.first[2]), vec![0.0, 0.1 * 4.0 * 0.5]);
    }
}
