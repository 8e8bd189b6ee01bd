//! The multi-scale model: its config, the model itself, and the top prior.

pub mod config;
pub mod glow;
pub mod prior;
