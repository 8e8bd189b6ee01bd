//! The one walk over the model: Glow as an ordered list of maps, and the bookkeeping of the
//! latents that leave the flow along the way (nflows' multi-scale bookkeeping, outside the maps).
//!
//! ```text
//! level 1:  Squeeze, Step × K, Split ──► ε₁ (the split's second half leaves)
//! level 2:  Squeeze, Step × K, Split ──► ε₂
//!  ...
//! level L:  Squeeze, Step × K, Top   ──► ε_L (the whole output leaves)
//! ```
//!
//! Encoding walks the list forward ([`walk_forward`]), decoding backward ([`walk_inverse`]), the
//! data-dependent initialisation forward once, and the constant-memory gradient pass
//! (`crate::train::gradients`) backward with a local graph per map. Nothing else walks the
//! levels. The list is in the order of the model's fields (levels, each with its steps then its
//! split, then the top prior), so the maps' flat parameters, concatenated in walk order, are the
//! model's ([`crate::model::params::flat_params`]).

use burn::tensor::Tensor;

use super::glow::{Glow, Latents};
use crate::flow::prior::TopPrior;
use crate::flow::split::Split;
use crate::flow::squeeze::Squeeze;
use crate::flow::step::FlowStep;
use crate::flow::{Condition, InvertibleMap};
use crate::tensor_ops::channel_halves;

/// One map of the model, in walk order.
#[derive(Debug, Clone, Copy)]
pub enum GlowMap<'a> {
    /// Space-to-depth at the start of a level.
    Squeeze(Squeeze),
    /// A step of flow.
    Step(&'a FlowStep),
    /// The factor-out at the end of a level but the last.
    Split(&'a Split),
    /// The prior on the top level's latent.
    Top(&'a TopPrior),
}

/// What the walk does with a map's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaves {
    /// All of it flows on to the next map.
    Nothing,
    /// The second channel half leaves as a level's latent; the first flows on.
    SecondHalf,
    /// All of it leaves as the top latent; the walk ends.
    All,
}

impl GlowMap<'_> {
    /// The map itself.
    pub fn as_map(&self) -> &dyn InvertibleMap {
        match self {
            GlowMap::Squeeze(map) => map,
            GlowMap::Step(map) => *map,
            GlowMap::Split(map) => *map,
            GlowMap::Top(map) => *map,
        }
    }

    /// What leaves the flow after this map.
    pub fn leaves(&self) -> Leaves {
        match self {
            GlowMap::Squeeze(_) | GlowMap::Step(_) => Leaves::Nothing,
            GlowMap::Split(_) => Leaves::SecondHalf,
            GlowMap::Top(_) => Leaves::All,
        }
    }
}

impl Leaves {
    /// A map's output `y` as `(what flows on, the latent that leaves)`.
    pub fn part(self, y: Tensor<4>) -> (Option<Tensor<4>>, Option<Tensor<4>>) {
        match self {
            Leaves::Nothing => (Some(y), None),
            Leaves::SecondHalf => {
                let (kept, latent) = channel_halves(y);
                (Some(kept), Some(latent))
            }
            Leaves::All => (None, Some(y)),
        }
    }

    /// The inverse of [`Leaves::part`]: a map's output from what flowed on and its latent.
    pub fn join(self, kept: Option<Tensor<4>>, latent: Option<Tensor<4>>) -> Tensor<4> {
        match (self, kept, latent) {
            (Leaves::Nothing, Some(kept), None) => kept,
            (Leaves::SecondHalf, Some(kept), Some(latent)) => Tensor::cat(vec![kept, latent], 1),
            (Leaves::All, None, Some(latent)) => latent,
            (leaves, kept, latent) => unreachable!(
                "the walk joins what it parted: {leaves:?} with flowing part {} and latent {}",
                kept.is_some(),
                latent.is_some()
            ),
        }
    }
}

impl Glow {
    /// The model's maps in walk order (see the module doc).
    pub fn maps(&self) -> Vec<GlowMap<'_>> {
        let mut maps = Vec::new();
        for level in &self.levels {
            maps.push(GlowMap::Squeeze(Squeeze));
            maps.extend(level.steps.iter().map(GlowMap::Step));
            maps.extend(level.split.as_ref().map(GlowMap::Split));
        }
        maps.push(GlowMap::Top(&self.top));
        maps
    }
}

/// What the forward walk of a batch gives.
pub struct Walked {
    /// The latents that left the flow, in walk order.
    pub latents: Latents,
    /// `log|det ∂ε/∂x|` per sample: every map's log-determinant, added in walk order.
    pub log_det: Tensor<1>,
    /// The input of each map that lets a latent leave (each level's output `z_l`), in walk order.
    pub level_outputs: Vec<Tensor<4>>,
}

/// The forward walk of `x` through `maps`: `apply(map, z)` runs each map on its input (its
/// forward pass, or its data-dependent initialisation) and returns its output and log-det.
pub fn walk_forward(
    maps: &[GlowMap],
    x: Tensor<4>,
    mut apply: impl FnMut(&GlowMap, Tensor<4>) -> (Tensor<4>, Tensor<1>),
) -> Walked {
    let n = x.dims()[0];
    let mut log_det = Tensor::zeros([n], &x.device());
    let mut latents = Vec::new();
    let mut level_outputs = Vec::new();
    let mut flowing = Some(x);
    for map in maps {
        let z = flowing
            .take()
            .expect("only the last map lets the whole output leave");
        if map.leaves() != Leaves::Nothing {
            level_outputs.push(z.clone());
        }
        let (y, ld) = apply(map, z);
        log_det = log_det + ld;
        let (kept, latent) = map.leaves().part(y);
        flowing = kept;
        latents.extend(latent);
    }
    Walked {
        latents: Latents { levels: latents },
        log_det,
        level_outputs,
    }
}

/// The inverse walk: `latents` (as [`walk_forward`] gave them) back through `maps` in reverse,
/// each map inverted with the conditioning `c`. Returns the input and `log|det ∂x/∂ε|`.
pub fn walk_inverse(maps: &[GlowMap], latents: &Latents, c: Condition) -> (Tensor<4>, Tensor<1>) {
    let mut remaining = latents.levels.iter().rev();
    let mut flowing: Option<Tensor<4>> = None;
    let mut log_det: Option<Tensor<1>> = None;
    for map in maps.iter().rev() {
        let latent = (map.leaves() != Leaves::Nothing).then(|| {
            remaining
                .next()
                .expect("one latent per map that lets one leave")
                .clone()
        });
        let y = map.leaves().join(flowing.take(), latent);
        let (x, ld) = map.as_map().inverse(y, c);
        flowing = Some(x);
        log_det = Some(match log_det {
            Some(sum) => sum + ld,
            None => ld,
        });
    }
    (
        flowing.expect("a model has maps"),
        log_det.expect("a model has maps"),
    )
}
