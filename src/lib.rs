//! glowflow: Glow (Kingma & Dhariwal 2018, "Glow: Generative Flow with Invertible 1x1
//! Convolutions") on burn.
//!
//! Every layer is an invertible map with an exact log-determinant ([`flow::InvertibleMap`]); the
//! multi-scale model ([`Glow`]) composes them with learned priors, giving the exact
//! log-likelihood ([`Glow::log_prob`], [`Glow::bits_per_dim`]), exact encoding and decoding of
//! all latents ([`Glow::encode`], [`Glow::decode`]) and sampling at any temperature
//! ([`Glow::sample`]).

pub mod benchmark;
pub mod cluster;
pub mod data;
pub mod device;
pub mod error;
pub mod experiments;
pub mod flow;
pub mod host_linalg;
pub mod io;
pub mod latent;
pub mod likelihood;
pub mod model;
pub mod option_values;
pub mod parallel;
pub mod serve;
pub mod tensor_ops;
pub mod train;

pub use error::{GlowError, Result};
pub use flow::conv::Padding;
pub use flow::coupling::CouplingKind;
pub use flow::permute::PermutationKind;
pub use io::model_dir::{load_model, save_model};
pub use model::config::{GlowConfig, HiddenNorm, ImageShape};
pub use model::glow::{Glow, Latents};
