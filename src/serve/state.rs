//! What the server holds: the loaded models with their test images and attribute lists, the
//! limits every request is checked against, and the semaphore that bounds concurrent
//! computations. Nothing here belongs to a client.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burn::tensor::Device;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::data::celeba::read_celeba_attributes;
use crate::data::dataset::{ImageDataset, Split};
use crate::data::source::load_split;
use crate::error::{GlowError, Result};
use crate::io::model_dir::load_model;
use crate::latent::attribute::{training_set_direction, DirectionRequest};
use crate::model::glow::{Glow, Latents};
use crate::train::config::{model_train_config, TrainConfig};

/// How `glowflow serve` is started: which models, where their data is, and the limits.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Run or model directories: the first is `--model`, a second one `--compare`.
    pub models: Vec<PathBuf>,
    /// Dataset location for every model (default: each run's `train.json`, else the preset's).
    pub data: Option<PathBuf>,
    /// Preset whose dataset format a model directory without `train.json` uses.
    pub preset: String,
    /// CelebA's `list_attr_celeba.txt`: its columns are the attributes (instead of the classes).
    pub attributes_file: Option<PathBuf>,
    /// Training images an attribute direction is averaged over (0 = all), as `glowflow
    /// manipulate --direction-images` (same number, same cache file).
    pub direction_images: usize,
    /// Bounds on requests.
    pub limits: Limits,
}

/// Bounds on what one request may ask for and cost.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// Largest request body, in bytes (uploads travel as base64, 4/3 of their size).
    pub max_body_bytes: usize,
    /// Largest width or height of an uploaded image, in pixels.
    pub max_image_side: u32,
    /// Most samples per request.
    pub max_samples: usize,
    /// Highest sampling temperature (the lowest is 0).
    pub max_temperature: f64,
    /// Most images on an interpolation (the fewest is 2).
    pub max_steps: usize,
    /// Largest |alpha| of an attribute slider.
    pub max_alpha: f64,
    /// Computations (encodes, decodes) running at once; further requests wait their turn.
    pub concurrent_jobs: usize,
    /// Longest a request may wait and compute, in seconds; then it gets a 503.
    #[serde(rename = "request_timeout_s", serialize_with = "as_seconds")]
    pub request_timeout: Duration,
}

fn as_seconds<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 8 << 20,
            max_image_side: 4096,
            max_samples: 64,
            max_temperature: 1.2,
            max_steps: 32,
            max_alpha: 4.0,
            concurrent_jobs: 2,
            request_timeout: Duration::from_secs(120),
        }
    }
}

/// One model the server explores.
#[derive(Debug)]
pub struct ServedModel {
    /// Its directory, as given.
    pub dir: PathBuf,
    /// The model.
    pub glow: Glow,
    /// Its test images, or why they could not be loaded (encoding by index is then refused
    /// with that reason; uploads and sampling still work).
    pub test: std::result::Result<ImageDataset, String>,
    /// The training config its dataset and directions come from.
    pub train: TrainConfig,
    /// The attributes a slider can move along: the dataset's class names, or the attribute
    /// file's columns; empty when the dataset has neither.
    pub attributes: Vec<String>,
    attributes_file: Option<PathBuf>,
    direction_images: usize,
    /// Directions found so far, by attribute (they are also cached on disk).
    directions: Mutex<HashMap<String, Latents>>,
}

impl ServedModel {
    /// Loads the model in `dir` with its training config, test set and attribute names;
    /// problems with the test set are reported through `warn` and kept in [`ServedModel::test`].
    fn load(
        dir: &std::path::Path,
        options: &ServeOptions,
        device: &Device,
        warn: &mut dyn FnMut(String),
    ) -> Result<Self> {
        let glow = load_model(dir, device)?;
        let train = model_train_config(dir, &options.preset, options.data.as_deref())?;
        let test = load_split(glow.config(), &train.data, train.pad_to, Split::Test, warn)
            .map(|(test, _)| test)
            .map_err(|e| {
                let reason = format!(
                    "the test images of {} could not be loaded ({e}); pass --data DIR",
                    dir.display()
                );
                warn(format!("warning: {reason}"));
                reason
            });
        let attributes = match (&options.attributes_file, &test) {
            (Some(path), _) => read_celeba_attributes(path)?.names,
            (None, Ok(data)) if data.labels.is_some() => train.data.class_names()?,
            (None, _) => Vec::new(),
        };
        Ok(ServedModel {
            dir: dir.to_path_buf(),
            glow,
            test,
            train,
            attributes,
            attributes_file: options.attributes_file.clone(),
            direction_images: options.direction_images,
            directions: Mutex::new(HashMap::new()),
        })
    }

    /// The direction of `attribute` (one of [`ServedModel::attributes`]) over the training set,
    /// as `glowflow manipulate` finds it: from `MODEL/directions/` when cached there, else
    /// computed (encoding the training images, which takes a while the first time) and cached.
    pub fn direction(&self, attribute: &str) -> Result<Latents> {
        if let Some(found) = self.known_directions().get(attribute) {
            return Ok(found.clone());
        }
        let request = DirectionRequest {
            attribute: attribute.to_string(),
            attributes_file: self.attributes_file.clone(),
            images: self.direction_images,
            batch_size: self.train.eval_batch_size,
        };
        let (found, _) = training_set_direction(
            &self.glow,
            &self.train.data,
            self.train.pad_to,
            &request,
            &self.dir.join("directions"),
            &mut |_| {},
        )?;
        self.known_directions()
            .insert(attribute.to_string(), found.direction.clone());
        Ok(found.direction)
    }

    /// The map of directions found so far (a poisoned lock only means another request
    /// panicked while inserting; the map itself is still whole).
    fn known_directions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Latents>> {
        self.directions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The server's state: the models, the limits, and the permits of concurrent computations.
#[derive(Debug)]
pub struct Explorer {
    /// The models: index 0 is `--model`, index 1 `--compare`.
    pub models: Vec<ServedModel>,
    /// Bounds on requests.
    pub limits: Limits,
    /// One permit per computation allowed at once.
    pub(crate) jobs: Arc<Semaphore>,
}

impl Explorer {
    /// Loads every model of `options` onto `device`; warnings (a test set that cannot be
    /// loaded) go to `warn`.
    pub fn load(
        options: &ServeOptions,
        device: &Device,
        warn: &mut dyn FnMut(String),
    ) -> Result<Self> {
        if options.models.is_empty() || options.models.len() > 2 {
            return Err(GlowError::Config(format!(
                "serve takes one model, or two to compare (got {})",
                options.models.len()
            )));
        }
        if options.limits.concurrent_jobs == 0 {
            return Err(GlowError::Config(
                "at least one concurrent job is needed (--jobs 1 or more)".into(),
            ));
        }
        let models = options
            .models
            .iter()
            .map(|dir| ServedModel::load(dir, options, device, warn))
            .collect::<Result<Vec<_>>>()?;
        Ok(Explorer {
            models,
            limits: options.limits.clone(),
            jobs: Arc::new(Semaphore::new(options.limits.concurrent_jobs)),
        })
    }
}
