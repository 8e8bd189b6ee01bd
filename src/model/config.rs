//! `GlowConfig`: every architectural choice of a Glow model, validated before anything is built.
//!
//! Defaults are the paper's CIFAR-10 model as openai/glow trains it (`--n_levels 3 --depth 32
//! --width 512 --flow_permutation 2 --flow_coupling 1 --learntop`), with openai/glow's code
//! choices where the paper is silent; each has the paper's or the PyTorch ports' variant as an
//! option.

use std::path::Path;

use burn::tensor::Device;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::error::{GlowError, Result};
use crate::flow::actnorm::ActNormScale;
use crate::flow::conv::Padding;
use crate::flow::coupling::CouplingKind;
use crate::flow::permute::PermutationKind;
use crate::model::glow::Glow;

/// The shape of one image, channels first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageShape {
    /// Colour channels (1 for grey, 3 for RGB).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

impl ImageShape {
    /// Number of dimensions of one image, `C · H · W`.
    pub fn dims(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// `[channels, height, width]`, the shape of one image as datasets and batches give it.
    pub fn chw(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }
}

/// How the hidden convolutions of the coupling network are normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HiddenNorm {
    /// No bias; ActNorm with data-dependent init after the convolution (openai/glow).
    Actnorm,
    /// A bias and no normalisation (rosinality/glow-pytorch).
    Bias,
}

/// The architecture of a Glow model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GlowConfig {
    /// Input image shape.
    pub image: ImageShape,
    /// Number of levels `L` (squeeze, K steps, split; the last level has no split).
    pub levels: usize,
    /// Steps of flow per level, `K`.
    pub steps: usize,
    /// Hidden channels of the coupling networks.
    pub width: usize,
    /// Coupling transform.
    pub coupling: CouplingKind,
    /// The affine coupling's scale floor `f ∈ [0, 1)`: `s = f + (1 − f) · sigmoid(r + 2)`, so
    /// that decoding multiplies by at most `1 / f` per coupling (0: openai/glow's coupling).
    #[serde(skip_serializing_if = "is_zero")]
    pub scale_floor: f64,
    /// Channel mixing between couplings.
    pub permutation: PermutationKind,
    /// LU-decomposed 1x1 convolution (used when `permutation` is `inv-conv`).
    pub lu: bool,
    /// Bits per colour channel the model sees (8 = full colour, 5 as in the paper's CelebA-HQ).
    pub n_bits: u32,
    /// Learn the mean and log-std of the top prior (openai/glow `--learntop`).
    pub learn_top: bool,
    /// Number of classes the top prior is conditioned on; 0 for an unconditional model.
    pub n_classes: usize,
    /// A classifier head on the top latent (openai/glow's `classifier` of `--ycond
    /// --weight_y`, y0ast's `project_class`), trained with the loss weight `weight_y` of
    /// [`crate::train::config::TrainConfig`]; needs `n_classes > 0`.
    #[serde(skip_serializing_if = "is_false")]
    pub class_head: bool,
    /// Padding of the 3x3 convolutions.
    pub padding: Padding,
    /// Padding of the zero-initialised convolutions (the couplings' output, the split priors and
    /// the learned top prior) where it differs from `padding` (rosinality/glow-pytorch: `ones`
    /// there, `zero` in the hidden convolutions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zero_conv_padding: Option<Padding>,
    /// Normalisation of the coupling network's hidden convolutions.
    pub hidden_norm: HiddenNorm,
    /// Log-scale factor of ActNorm (openai/glow: 3; the plain parameterisation: 1).
    pub actnorm_logscale_factor: f64,
    /// How the flow steps' ActNorms store their scale: `exp` (a log-scale, openai/glow) or
    /// `linear` (the scale itself, rosinality/glow-pytorch). Hidden ActNorms are always `exp`.
    pub actnorm_scale: ActNormScale,
    /// Log-scale factor of the zero-initialised convolutions (openai/glow: 3; 0 disables it).
    pub zero_logscale_factor: f64,
    /// Seed of the random initialisation (1x1 convolutions, shuffles, hidden weights).
    pub seed: u64,
}

impl Default for GlowConfig {
    fn default() -> Self {
        GlowConfig {
            image: ImageShape {
                channels: 3,
                height: 32,
                width: 32,
            },
            levels: 3,
            steps: 32,
            width: 512,
            coupling: CouplingKind::Affine,
            scale_floor: 0.0,
            permutation: PermutationKind::InvConv,
            lu: false,
            n_bits: 8,
            learn_top: true,
            n_classes: 0,
            class_head: false,
            padding: Padding::Edge,
            zero_conv_padding: None,
            hidden_norm: HiddenNorm::Actnorm,
            actnorm_logscale_factor: 3.0,
            actnorm_scale: ActNormScale::Exp,
            zero_logscale_factor: 3.0,
            seed: 0,
        }
    }
}

/// Whether a model has no classifier head (left out of saved configs, as for the scale floor).
fn is_false(value: &bool) -> bool {
    !*value
}

/// Whether a scale floor is openai/glow's none (left out of saved configs, so that models
/// without one keep their files as they were).
fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

impl GlowConfig {
    /// Checks that the config describes a buildable model; the error says what to change.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(GlowError::Config(message));
        let ImageShape {
            channels,
            height,
            width,
        } = self.image;
        if channels == 0 || height == 0 || width == 0 {
            return bad(format!(
                "image shape {channels}x{height}x{width} has a zero dimension; \
                 set image.channels, image.height and image.width to positive values"
            ));
        }
        if self.levels == 0 {
            return bad("levels (L) is 0; a Glow model needs at least one level".into());
        }
        if self.steps == 0 {
            return bad("steps (K) is 0; each level needs at least one step of flow".into());
        }
        if self.width == 0 {
            return bad("width is 0; set the coupling network's hidden channels (e.g. 512)".into());
        }
        let factor = 1usize.checked_shl(self.levels as u32).unwrap_or(0);
        if factor == 0 || height % factor != 0 || width % factor != 0 {
            return bad(format!(
                "image size {height}x{width} is not divisible by 2^L = 2^{} ({} levels squeeze \
                 by 2 each); use fewer levels or resize/pad the images (e.g. 28x28 works with \
                 L = 2, or pad it to 32x32 for L = 3)",
                self.levels, self.levels
            ));
        }
        if !(1..=8).contains(&self.n_bits) {
            return bad(format!(
                "n_bits = {} is outside 1..=8; use 8 for full 8-bit images or fewer \
                 (e.g. 5) to model reduced colour depth",
                self.n_bits
            ));
        }
        for (name, value) in [
            ("actnorm_logscale_factor", self.actnorm_logscale_factor),
            ("zero_logscale_factor", self.zero_logscale_factor),
        ] {
            if !value.is_finite() {
                return bad(format!("{name} = {value} is not a finite number"));
            }
        }
        if !(0.0..1.0).contains(&self.scale_floor) {
            return bad(format!(
                "scale_floor = {} is outside [0, 1); use 0 for openai/glow's coupling or a \
                 floor such as 0.1",
                self.scale_floor
            ));
        }
        if self.scale_floor != 0.0 && self.coupling != CouplingKind::Affine {
            return bad(format!(
                "scale_floor = {} applies to the affine coupling only; set coupling = affine \
                 or scale_floor = 0",
                self.scale_floor
            ));
        }
        if self.class_head && self.n_classes == 0 {
            return bad(
                "class_head = true needs classes to predict; set n_classes (--n-classes) or \
                 leave the head out"
                    .into(),
            );
        }
        if self.actnorm_logscale_factor == 0.0 {
            return bad(
                "actnorm_logscale_factor is 0, which would freeze ActNorm's scale; use 3 \
                 (openai/glow) or 1"
                    .into(),
            );
        }
        Ok(())
    }

    /// Padding of the zero-initialised convolutions: `zero_conv_padding`, else `padding`.
    pub fn zero_padding(&self) -> Padding {
        self.zero_conv_padding.unwrap_or(self.padding)
    }

    /// Channels, height and width of the tensor entering each level's steps, after its squeeze.
    pub fn level_shapes(&self) -> Vec<[usize; 3]> {
        let mut c = self.image.channels;
        let (mut h, mut w) = (self.image.height, self.image.width);
        let mut shapes = Vec::with_capacity(self.levels);
        for level in 0..self.levels {
            c *= 4;
            h /= 2;
            w /= 2;
            shapes.push([c, h, w]);
            if level + 1 < self.levels {
                c /= 2;
            }
        }
        shapes
    }

    /// Builds a freshly initialised model (ActNorms still waiting for their data-dependent init).
    pub fn init(&self, device: &Device) -> Result<Glow> {
        self.validate()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        Glow::new(self.clone(), &mut rng, device)
    }

    /// Reads a config from a JSON file; unknown keys and bad values are errors naming the file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| GlowError::io(path, e))?;
        let config: GlowConfig = serde_json::from_str(&text)
            .map_err(|e| GlowError::file(path, format!("not a valid glowflow config: {e}")))?;
        config
            .validate()
            .map_err(|e| GlowError::file(path, e.to_string()))?;
        Ok(config)
    }

    /// The config as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a config always serialises")
    }
}
