//! The multi-scale model: its config, the model itself, the top prior, its parameters as one
//! flat list, and whether two models describe the same images.

pub mod compatible;
pub mod config;
pub mod glow;
pub mod params;
pub mod prior;
