//! The command-line values of the library's enum options ([`clap::ValueEnum`]), spelled as in
//! the config files (serde's kebab-case names), so that `--coupling affine` and
//! `"coupling": "affine"` mean the same and `--help` lists every value.
//!
//! The enums live with the layers that use them (in `flow/` and `model/`), which know nothing of
//! command lines; the implementations are gathered here instead of being derived there.
//! `tests/cli_options.rs` checks that every value here is the serde name of its variant.

use clap::builder::PossibleValue;
use clap::ValueEnum;

use crate::flow::actnorm::ActNormScale;
use crate::flow::conv::{ConvRoute, Padding};
use crate::flow::coupling::CouplingKind;
use crate::flow::permute::PermutationKind;
use crate::io::import::Peer;
use crate::model::config::HiddenNorm;

/// `impl ValueEnum for $enum`, each variant's value and help given.
macro_rules! value_enum {
    ($enum:ident { $($variant:ident => $name:literal: $help:literal),+ $(,)? }) => {
        impl ValueEnum for $enum {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($enum::$variant),+]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(match self {
                    $($enum::$variant => PossibleValue::new($name).help($help)),+
                })
            }
        }
    };
}

value_enum!(ConvRoute {
    Auto => "auto": "matrix products on the CPU, burn's conv2d on a GPU",
    MatrixProducts => "matrix-products": "im2col and shifted-output matrix products",
    Burn => "burn": "burn's own conv2d",
});

value_enum!(CouplingKind {
    Additive => "additive": "y_b = x_b + h (volume-preserving)",
    Affine => "affine": "y_b = (x_b + t) * sigmoid(r + 2) (openai/glow's code)",
    AffineExp => "affine-exp": "y_b = x_b * exp(r) + t (the paper's equations)",
});

value_enum!(PermutationKind {
    InvConv => "inv-conv": "learned invertible 1x1 convolution (Glow)",
    Reverse => "reverse": "fixed reversal of the channel order (RealNVP)",
    Shuffle => "shuffle": "fixed random permutation of the channels",
});

value_enum!(Padding {
    Edge => "edge": "zero padding plus a border-indicator channel (openai/glow)",
    Zero => "zero": "plain zero padding (the PyTorch ports)",
    Ones => "ones": "padding with ones (rosinality/glow-pytorch's zero convolutions)",
});

value_enum!(ActNormScale {
    Exp => "exp": "y = (x + b) * exp(s * logs) (openai/glow, y0ast/Glow-PyTorch)",
    Linear => "linear": "y = (x + b) * scale (rosinality/glow-pytorch)",
});

value_enum!(HiddenNorm {
    Actnorm => "actnorm": "ActNorm after each hidden convolution, no bias (openai/glow)",
    Bias => "bias": "a bias and no normalisation (rosinality/glow-pytorch)",
});

value_enum!(Peer {
    Rosinality => "rosinality": "rosinality/glow-pytorch",
    Y0ast => "y0ast": "y0ast/Glow-PyTorch",
});
