//! Files: saved models (safetensors weights + JSON config), latent files, PNG image grids and
//! charts, atomic writes.

pub mod atomic;
pub mod latent_file;
pub mod model_dir;
pub mod plot;
pub mod png_grid;
