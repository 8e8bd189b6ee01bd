//! One step of flow (Glow §3): ActNorm → channel mixing → coupling.
//!
//! ```text
//! forward:  y = coupling(permute(actnorm(x)))          log|det| = sum of the three
//! inverse:  x = actnorm⁻¹(permute⁻¹(coupling⁻¹(y)))
//! ```

use burn::module::Module;
use burn::tensor::Tensor;

use super::actnorm::ActNorm;
use super::coupling::Coupling;
use super::permute::Permutation;
use super::{forward_chain, inverse_chain, Condition, InvertibleMap};

/// ActNorm, then a permutation or 1x1 convolution, then a coupling layer.
#[derive(Module, Debug)]
pub struct FlowStep {
    /// Per-channel affine normalisation.
    pub actnorm: ActNorm,
    /// Channel mixing.
    pub permutation: Permutation,
    /// Coupling layer.
    pub coupling: Coupling,
}

impl FlowStep {
    /// The three layers in forward order.
    fn layers(&self) -> [&dyn InvertibleMap; 3] {
        [&self.actnorm, &self.permutation, &self.coupling]
    }
}

impl InvertibleMap for FlowStep {
    fn forward(&self, x: Tensor<4>, c: Condition) -> (Tensor<4>, Tensor<1>) {
        forward_chain(&self.layers(), x, c)
    }

    fn inverse(&self, y: Tensor<4>, c: Condition) -> (Tensor<4>, Tensor<1>) {
        inverse_chain(&self.layers(), y, c)
    }

    fn data_init(self, x: Tensor<4>, c: Condition) -> (Self, Tensor<4>) {
        let (actnorm, h) = self.actnorm.data_init(x, c);
        let (permutation, h) = self.permutation.data_init(h, c);
        let (coupling, y) = self.coupling.data_init(h, c);
        (
            FlowStep {
                actnorm,
                permutation,
                coupling,
            },
            y,
        )
    }
}
