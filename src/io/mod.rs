//! Files: saved models (safetensors weights + JSON config), PNG image grids, atomic writes.

pub mod atomic;
pub mod model_dir;
pub mod plot;
pub mod png_grid;
