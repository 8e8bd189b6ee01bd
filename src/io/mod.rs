//! Files: saved models (safetensors weights + JSON config, headers in key order), run directories, latent files, PNG
//! image grids (sample grids among them) and charts, atomic writes, the lock of a run directory,
//! and the PyTorch Glows' checkpoints (import and export).

pub mod atomic;
pub mod import;
pub mod latent_file;
pub mod model_dir;
pub mod plot;
pub mod png_grid;
pub mod run_dir;
pub mod run_lock;
pub mod safetensors_header;
pub mod sample_grid;
