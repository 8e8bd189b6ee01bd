//! The multi-scale model: its config, the model itself, the one walk over its maps, and its
//! parameters as one flat list.

pub mod config;
pub mod glow;
pub mod params;
pub mod walk;
