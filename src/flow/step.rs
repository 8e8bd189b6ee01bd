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
use super::InvertibleMap;

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

impl InvertibleMap for FlowStep {
    fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<1>) {
        let (h, ld_norm) = self.actnorm.forward(x);
        let (h, ld_mix) = self.permutation.forward(h);
        let (y, ld_couple) = self.coupling.forward(h);
        (y, ld_norm + ld_mix + ld_couple)
    }

    fn inverse(&self, y: Tensor<4>) -> (Tensor<4>, Tensor<1>) {
        let (h, ld_couple) = self.coupling.inverse(y);
        let (h, ld_mix) = self.permutation.inverse(h);
        let (x, ld_norm) = self.actnorm.inverse(h);
        (x, ld_couple + ld_mix + ld_norm)
    }

    fn data_init(self, x: Tensor<4>) -> (Self, Tensor<4>) {
        let (actnorm, h) = self.actnorm.data_init(x);
        let (permutation, h) = self.permutation.data_init(h);
        let (coupling, y) = self.coupling.data_init(h);
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
