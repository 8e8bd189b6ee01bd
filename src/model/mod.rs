//! The multi-scale model: its config, the model itself, the one walk over its maps, its
//! parameters as one flat list, and whether two models describe the same images.

pub mod compatible;
pub mod config;
pub mod glow;
pub mod params;
pub mod walk;
