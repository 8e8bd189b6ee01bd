//! The JSON API: one handler per endpoint, each request checked against the [`Limits`] before
//! it waits for a computation permit, every computation a call into [`crate::latent`] or
//! [`Glow`](crate::model::glow::Glow) on the blocking pool. Every failure is a JSON `{"error": "..."}` with a 4xx status
//! naming the parameter and its allowed range (or the problem with an upload and what to do),
//! 503 when the server is too busy or a computation runs past the request timeout, 500 only
//! for a failure of the server itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use burn::tensor::Tensor;
use rand::SeedableRng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::time::{timeout_at, Instant};

use super::codec::{latents_from_base64, latents_to_base64, png_data_urls, upload_bytes};
use super::state::{Explorer, Limits, ServedModel};
use crate::error::GlowError;
use crate::latent::inputs::{image_bytes_input, test_set_inputs};
use crate::latent::{encode_with_bits_per_dim, interpolate_latents, keep_top_levels, move_along};
use crate::model::glow::Latents;
use crate::tensor_ops::non_finite_samples;

/// The routes over `explorer`: `GET /` (the page), `GET /api/models`, and `POST` of
/// `/api/sample`, `/api/encode`, `/api/reconstruct`, `/api/interpolate`, `/api/manipulate`.
pub fn routes(explorer: Arc<Explorer>) -> Router {
    let body_limit = explorer.limits.max_body_bytes;
    Router::new()
        .route("/", get(|| async { Html(super::PAGE) }))
        .route("/api/models", get(models))
        .route("/api/sample", post(handle::<SampleRequest>))
        .route("/api/encode", post(handle::<EncodeRequest>))
        .route("/api/reconstruct", post(handle::<ReconstructRequest>))
        .route("/api/interpolate", post(handle::<InterpolateRequest>))
        .route("/api/manipulate", post(handle::<ManipulateRequest>))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(explorer)
}

/// A failed request: its status and a message saying what was wrong and what to do.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The message (the body's `error`).
    pub message: String,
}

impl ApiError {
    fn bad(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body {
            error: String,
        }
        (
            self.status,
            Json(Body {
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// Errors of the library: bad values (out of range or not finite), shapes, labels and images
/// are the request's fault (400); files that cannot be read are the server's (500).
impl From<GlowError> for ApiError {
    fn from(e: GlowError) -> Self {
        let status = match e {
            GlowError::Config(_)
            | GlowError::Shape { .. }
            | GlowError::Label(_)
            | GlowError::Value { .. }
            | GlowError::Image(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            message: e.to_string(),
        }
    }
}

/// What the JSON body of a request could not be, in words that say what to send.
fn body_error(rejection: JsonRejection, limits: &Limits) -> ApiError {
    let status = rejection.status();
    let message = match &rejection {
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => format!(
            "the request body is larger than the {} bytes accepted; send a smaller image \
             (uploads travel as base64, 4/3 of the file's size)",
            limits.max_body_bytes
        ),
        JsonRejection::MissingJsonContentType(_) => {
            "send the body as JSON, with the header Content-Type: application/json".to_string()
        }
        _ => format!(
            "the body is not this endpoint's JSON: {}; README's \"Browser explorer\" section \
             lists the fields",
            rejection.body_text()
        ),
    };
    ApiError { status, message }
}

/// A `404` naming the endpoints.
async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!(
            "no endpoint {method} {uri}; the API is GET /api/models and POST /api/sample, \
             /api/encode, /api/reconstruct, /api/interpolate, /api/manipulate"
        ),
    }
}

/// A request that computes: checked first (cheap, without a permit), then run on the
/// blocking pool.
trait Job: DeserializeOwned + Send + 'static {
    /// The response body.
    type Output: Serialize + Send + 'static;
    /// Checks the parameters against the limits and the model.
    fn check(&self, explorer: &Explorer) -> Result<(), ApiError>;
    /// Computes the response.
    fn run(self, explorer: &Explorer) -> Result<Self::Output, ApiError>;
}

/// Parses and checks a request, waits for a computation permit and runs the job on the
/// blocking pool, all within the request timeout.
async fn handle<J: Job>(
    State(explorer): State<Arc<Explorer>>,
    body: Result<Json<J>, JsonRejection>,
) -> Result<Json<J::Output>, ApiError> {
    let Json(job) = body.map_err(|r| body_error(r, &explorer.limits))?;
    job.check(&explorer)?;
    let timeout = explorer.limits.request_timeout;
    let deadline = Instant::now() + timeout;
    let too_slow = |what: &str| {
        ApiError::unavailable(format!(
            "{what} within the {} s request timeout; try again (a direction computed for the \
             first time keeps computing and is cached for the next request)",
            timeout.as_secs_f64()
        ))
    };
    let permit = timeout_at(deadline, explorer.jobs.clone().acquire_owned())
        .await
        .map_err(|_| too_slow("the server was busy and could not start the computation"))?
        .map_err(|_| ApiError::unavailable("the server is shutting down"))?;
    let worker = explorer.clone();
    let task = tokio::task::spawn_blocking(move || {
        // The permit is held until the computation ends, even if the request has timed out.
        let _permit = permit;
        job.run(&worker)
    });
    match timeout_at(deadline, task).await {
        Err(_) => Err(too_slow("the computation did not finish")),
        Ok(Err(failed)) => Err(ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!(
                "the computation failed inside the server ({failed}); please report it"
            ),
        }),
        Ok(Ok(result)) => result.map(Json),
    }
}

/// Model `index` of the explorer, or a 400 naming the valid indices.
fn model_at(explorer: &Explorer, index: usize) -> Result<&ServedModel, ApiError> {
    explorer.models.get(index).ok_or_else(|| {
        ApiError::bad(format!(
            "model {index} does not exist: `model` must be 0{} (see GET /api/models)",
            if explorer.models.len() > 1 {
                " or 1"
            } else {
                ""
            }
        ))
    })
}

/// `value` of parameter `name` must lie in `low..=high`.
fn in_range<T: PartialOrd + std::fmt::Display>(
    name: &str,
    value: T,
    low: T,
    high: T,
) -> Result<(), ApiError> {
    if value >= low && value <= high {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "`{name}` = {value} is out of range: it must be between {low} and {high}"
        )))
    }
}

/// Attribute directions need an unconditional model (a conditional model's latents depend on the
/// label).
fn unconditional(model: &ServedModel) -> Result<(), ApiError> {
    match model.glow.config().n_classes {
        0 => Ok(()),
        k => Err(ApiError::bad(format!(
            "{} is class-conditional ({k} classes): attribute directions need an unconditional \
             model, since a conditional model's latents depend on the label",
            model.dir.display()
        ))),
    }
}

/// The class parameter `name` of a request for `model`: required by a class-conditional model
/// (its latents are those under that class), refused by an unconditional one.
fn check_class(model: &ServedModel, name: &str, class: Option<usize>) -> Result<(), ApiError> {
    match (model.glow.config().n_classes, class) {
        (0, None) => Ok(()),
        (0, Some(_)) => Err(ApiError::bad(format!(
            "`{name}` is for class-conditional models; {} is unconditional",
            model.dir.display()
        ))),
        (k, None) => Err(ApiError::bad(format!(
            "`{name}` is needed: {} is class-conditional ({k} classes); give a class from 0 to {}",
            model.dir.display(),
            k - 1
        ))),
        (k, Some(class)) => in_range(name, class, 0, k - 1),
    }
}

/// One-hot rows of `class` for `n` images of `model` (none for an unconditional model); the class
/// was checked by [`check_class`].
fn class_rows(
    model: &ServedModel,
    class: Option<usize>,
    n: usize,
) -> Result<Option<Tensor<2>>, ApiError> {
    let glow = &model.glow;
    Ok(class
        .map(|k| glow.one_hot(&vec![k; n], &glow.device()))
        .transpose()?)
}

/// The latents parameter `name` of a request for `model`.
fn latents_param(model: &ServedModel, name: &str, text: &str) -> Result<Latents, ApiError> {
    latents_from_base64(&model.glow, text).map_err(|why| {
        ApiError::bad(format!(
            "`{name}` {why} (latents are base64 of little-endian f32, as /api/encode and \
             /api/sample return them)"
        ))
    })
}

/// Decodes `latents` with `model` to PNG data URLs.
fn decoded(
    model: &ServedModel,
    latents: &Latents,
    classes: Option<&Tensor<2>>,
) -> Result<Vec<String>, ApiError> {
    let (x, _) = model.glow.decode(latents, classes)?;
    Ok(png_data_urls(x, model.glow.config().n_bits)?)
}

fn default_n() -> usize {
    16
}

fn default_temperature() -> f64 {
    0.7
}

fn default_steps() -> usize {
    8
}

/// `GET /api/models`: what the page needs to know about each model, and the limits.
async fn models(State(explorer): State<Arc<Explorer>>) -> Json<ModelsResponse> {
    let models = explorer
        .models
        .iter()
        .enumerate()
        .map(|(index, m)| {
            let config = m.glow.config();
            let latent_shapes = m.glow.latent_shapes();
            ModelInfo {
                index,
                name: m.dir.display().to_string(),
                image: [
                    config.image.channels,
                    config.image.height,
                    config.image.width,
                ],
                levels: config.levels,
                steps: config.steps,
                n_bits: config.n_bits,
                n_classes: config.n_classes,
                latent_length: latent_shapes
                    .iter()
                    .map(|s| s.iter().product::<usize>())
                    .sum(),
                latent_shapes,
                test_images: m.test.as_ref().map_or(0, |t| t.len()),
                test_error: m.test.as_ref().err().cloned(),
                attributes: m.attributes.clone(),
            }
        })
        .collect();
    Json(ModelsResponse {
        models,
        limits: explorer.limits.clone(),
    })
}

/// The body of `GET /api/models`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ModelsResponse {
    /// The models, `--model` first.
    pub models: Vec<ModelInfo>,
    /// The bounds every request is checked against.
    #[serde(skip_deserializing)]
    pub limits: Limits,
}

/// One model, as `GET /api/models` describes it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The `model` parameter that selects it.
    pub index: usize,
    /// Its directory.
    pub name: String,
    /// `[channels, height, width]` of its images.
    pub image: [usize; 3],
    /// Levels `L` (the range of `keep` is `1..=L`).
    pub levels: usize,
    /// Steps of flow per level.
    pub steps: usize,
    /// Bits per colour channel.
    pub n_bits: u32,
    /// Classes of a class-conditional model (0: unconditional).
    pub n_classes: usize,
    /// `[C, H, W]` of each level's latent.
    pub latent_shapes: Vec<[usize; 3]>,
    /// f32 values in one image's latents.
    pub latent_length: usize,
    /// Test images that `index` can pick (0 when they could not be loaded).
    pub test_images: usize,
    /// Why the test images could not be loaded, if so.
    pub test_error: Option<String>,
    /// The attributes `/api/manipulate` can move along.
    pub attributes: Vec<String>,
}

/// `POST /api/sample`: `n` samples at `temperature` from the noise seeded by `seed` (the same
/// seed at another temperature decodes the same noise, scaled).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleRequest {
    #[serde(default)]
    model: usize,
    #[serde(default = "default_n")]
    n: usize,
    #[serde(default = "default_temperature")]
    temperature: f64,
    #[serde(default)]
    seed: u64,
    /// The class of every sample (class-conditional models only).
    #[serde(default)]
    class: Option<usize>,
}

/// The body of a sample: the images, their latents (`temperature` × the noise) and how many
/// overflowed when decoded (drawn black and white).
#[derive(Debug, Serialize, Deserialize)]
pub struct SampleResponse {
    /// PNG data URLs.
    pub images: Vec<String>,
    /// Each sample's latents (base64 f32).
    pub latents: Vec<String>,
    /// Samples whose decoding was not finite.
    pub overflowed: usize,
}

impl Job for SampleRequest {
    type Output = SampleResponse;

    fn check(&self, explorer: &Explorer) -> Result<(), ApiError> {
        check_class(model_at(explorer, self.model)?, "class", self.class)?;
        let limits = &explorer.limits;
        in_range("n", self.n, 1, limits.max_samples)?;
        if !self.temperature.is_finite() {
            return Err(ApiError::bad("`temperature` must be a finite number"));
        }
        in_range("temperature", self.temperature, 0.0, limits.max_temperature)
    }

    fn run(self, explorer: &Explorer) -> Result<SampleResponse, ApiError> {
        let model = model_at(explorer, self.model)?;
        let glow = &model.glow;
        let device = glow.device();
        let classes = class_rows(model, self.class, self.n)?;
        // What `Glow::sample` decodes, kept to return it.
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let latents = glow.random_latents(self.n, self.temperature, &mut rng, &device);
        let (x, _) = glow.decode(&latents, classes.as_ref())?;
        let overflowed = non_finite_samples(&x);
        Ok(SampleResponse {
            images: png_data_urls(x, glow.config().n_bits)?,
            latents: latents_to_base64(&latents),
            overflowed,
        })
    }
}

/// `POST /api/encode`: the latents and bits/dim of test image `index` or of an uploaded
/// `image` (a base64 image file of a format folders read, resized and cropped as training
/// folders are). A class-conditional
/// model encodes under `class`: unless given, a test image's own label, else (an upload, an
/// unlabelled test set) the class it finds most likely; it also says which class it reads
/// the image as ([`EncodeResponse::predicted_class`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodeRequest {
    #[serde(default)]
    model: usize,
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    class: Option<usize>,
}

impl EncodeRequest {
    /// The label of the test image `index`, where the dataset has labels.
    fn own_label(&self, model: &ServedModel) -> Option<usize> {
        let test = model.test.as_ref().ok()?;
        test.labels.as_ref()?.get(self.index?).copied()
    }

    /// The class to encode under: `class`, else a test image's label (none for an unconditional
    /// model, whose check refuses a `class`; none where the model is to find it).
    fn label(&self, model: &ServedModel) -> Option<usize> {
        match model.glow.config().n_classes {
            0 => self.class,
            _ => self.class.or_else(|| self.own_label(model)),
        }
    }
}

/// The body of an encoding.
#[derive(Debug, Serialize, Deserialize)]
pub struct EncodeResponse {
    /// The image as the model sees it (PNG data URL).
    pub image: String,
    /// Its latents (base64 f32).
    pub latents: String,
    /// Its bits per dimension (pixel values at the centres of their bins).
    pub bits_per_dim: f64,
    /// Its class: a test image's label in a labelled dataset, or (for a class-conditional model)
    /// the class it was encoded under.
    pub label: Option<usize>,
    /// The class a class-conditional model reads the image as: Bayes' rule,
    /// `argmax_k p(x | k)` ([`crate::Glow::predicted_classes`]).
    pub predicted_class: Option<usize>,
    /// The class of the classifier head's largest logit, for a model with a head.
    pub head_class: Option<usize>,
}

impl Job for EncodeRequest {
    type Output = EncodeResponse;

    fn check(&self, explorer: &Explorer) -> Result<(), ApiError> {
        let model = model_at(explorer, self.model)?;
        if self.class.is_some() || model.glow.config().n_classes == 0 {
            check_class(model, "class", self.class)?;
        }
        match (&self.index, &self.image) {
            (Some(index), None) => {
                let test = model
                    .test
                    .as_ref()
                    .map_err(|why| ApiError::bad(why.clone()))?;
                if test.is_empty() {
                    return Err(ApiError::bad("the model's test set holds no images"));
                }
                in_range("index", *index, 0, test.len() - 1)
            }
            (None, Some(_)) => Ok(()),
            _ => Err(ApiError::bad(
                "give exactly one of `index` (a test image) and `image` (a base64 image file)",
            )),
        }
    }

    fn run(self, explorer: &Explorer) -> Result<EncodeResponse, ApiError> {
        let model = model_at(explorer, self.model)?;
        let glow = &model.glow;
        let own = self.own_label(model);
        let given = self.label(model);
        let inputs = match (self.index, self.image) {
            (Some(index), _) => {
                let test = model
                    .test
                    .as_ref()
                    .map_err(|why| ApiError::bad(why.clone()))?;
                test_set_inputs(glow, test, &[index])?
            }
            (None, Some(text)) => {
                let bytes =
                    upload_bytes(&text).map_err(|why| ApiError::bad(format!("`image` {why}")))?;
                let max_side = explorer.limits.max_image_side;
                image_bytes_input(glow, &bytes, "the uploaded image", max_side)?
            }
            (None, None) => return Err(ApiError::bad("give `index` or `image`")),
        };
        let predicted = match glow.config().n_classes {
            0 => None,
            _ => Some(glow.predicted_classes(inputs.x.clone())?),
        };
        // The class encoded under: the one given, a test image's own, else the most likely.
        let class = given.or_else(|| predicted.as_ref().map(|p| p.bayes[0]));
        let classes = class_rows(model, class, 1)?;
        let (latents, bpd) = encode_with_bits_per_dim(glow, inputs.x.clone(), classes.as_ref())?;
        let image = png_data_urls(inputs.x, glow.config().n_bits)?.remove(0);
        Ok(EncodeResponse {
            image,
            latents: latents_to_base64(&latents).remove(0),
            bits_per_dim: bpd[0],
            label: class.or(own),
            predicted_class: predicted.as_ref().map(|p| p.bayes[0]),
            head_class: predicted.and_then(|p| p.head).map(|head| head[0]),
        })
    }
}

/// `POST /api/reconstruct`: decodes `latents` keeping the top `keep` levels, the levels below
/// redrawn at `temperature` from the noise seeded by `seed` (`keep` = L gives the image back);
/// a class-conditional model decodes under `class`, the one the latents were encoded under.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconstructRequest {
    #[serde(default)]
    model: usize,
    latents: String,
    keep: usize,
    #[serde(default = "default_temperature")]
    temperature: f64,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    class: Option<usize>,
}

/// The body of a decode to one image.
#[derive(Debug, Serialize, Deserialize)]
pub struct ImageResponse {
    /// PNG data URL.
    pub image: String,
}

impl Job for ReconstructRequest {
    type Output = ImageResponse;

    fn check(&self, explorer: &Explorer) -> Result<(), ApiError> {
        let model = model_at(explorer, self.model)?;
        check_class(model, "class", self.class)?;
        in_range("keep", self.keep, 1, model.glow.config().levels)?;
        if !self.temperature.is_finite() {
            return Err(ApiError::bad("`temperature` must be a finite number"));
        }
        in_range(
            "temperature",
            self.temperature,
            0.0,
            explorer.limits.max_temperature,
        )
    }

    fn run(self, explorer: &Explorer) -> Result<ImageResponse, ApiError> {
        let model = model_at(explorer, self.model)?;
        let latents = latents_param(model, "latents", &self.latents)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let mixed = keep_top_levels(&model.glow, latents, self.keep, self.temperature, &mut rng)?;
        let classes = class_rows(model, self.class, 1)?;
        Ok(ImageResponse {
            image: decoded(model, &mixed, classes.as_ref())?.remove(0),
        })
    }
}

/// `POST /api/interpolate`: `steps` images on the straight line from latents `a` to `b`; a
/// class-conditional model takes their classes `class_a` and `class_b`, and the label moves
/// along the line with the latents ([`interpolate_latents`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterpolateRequest {
    #[serde(default)]
    model: usize,
    a: String,
    b: String,
    #[serde(default = "default_steps")]
    steps: usize,
    #[serde(default)]
    class_a: Option<usize>,
    #[serde(default)]
    class_b: Option<usize>,
}

/// The body of a decode to several images.
#[derive(Debug, Serialize, Deserialize)]
pub struct ImagesResponse {
    /// PNG data URLs.
    pub images: Vec<String>,
}

impl Job for InterpolateRequest {
    type Output = ImagesResponse;

    fn check(&self, explorer: &Explorer) -> Result<(), ApiError> {
        let model = model_at(explorer, self.model)?;
        check_class(model, "class_a", self.class_a)?;
        check_class(model, "class_b", self.class_b)?;
        in_range("steps", self.steps, 2, explorer.limits.max_steps)
    }

    fn run(self, explorer: &Explorer) -> Result<ImagesResponse, ApiError> {
        let model = model_at(explorer, self.model)?;
        let a = latents_param(model, "a", &self.a)?;
        let b = latents_param(model, "b", &self.b)?;
        let ya = class_rows(model, self.class_a, 1)?;
        let yb = class_rows(model, self.class_b, 1)?;
        let x = interpolate_latents(
            &model.glow,
            &a,
            &b,
            ya.as_ref().zip(yb.as_ref()),
            self.steps,
        )?;
        Ok(ImagesResponse {
            images: png_data_urls(x, model.glow.config().n_bits)?,
        })
    }
}

/// `POST /api/manipulate`: decodes `latents + Σ alpha_a · d_a` over the attributes `a` of
/// `alphas` (each `d_a` the attribute's direction; added in the order of the model's attribute
/// list, attributes at alpha 0 left out).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManipulateRequest {
    #[serde(default)]
    model: usize,
    latents: String,
    #[serde(default)]
    alphas: BTreeMap<String, f64>,
}

impl Job for ManipulateRequest {
    type Output = ImageResponse;

    fn check(&self, explorer: &Explorer) -> Result<(), ApiError> {
        let model = model_at(explorer, self.model)?;
        unconditional(model)?;
        let max = explorer.limits.max_alpha;
        for (attribute, &alpha) in &self.alphas {
            if !model.attributes.contains(attribute) {
                return Err(ApiError::bad(format!(
                    "`alphas` names `{attribute}`, which is not an attribute of this model; its \
                     attributes are: {}",
                    if model.attributes.is_empty() {
                        "none (an unlabelled dataset; pass --attributes FILE)".to_string()
                    } else {
                        model.attributes.join(", ")
                    }
                )));
            }
            if !alpha.is_finite() {
                return Err(ApiError::bad(format!(
                    "`alphas.{attribute}` must be a finite number"
                )));
            }
            in_range(&format!("alphas.{attribute}"), alpha, -max, max)?;
        }
        Ok(())
    }

    fn run(self, explorer: &Explorer) -> Result<ImageResponse, ApiError> {
        let model = model_at(explorer, self.model)?;
        let mut latents = latents_param(model, "latents", &self.latents)?;
        for attribute in &model.attributes {
            match self.alphas.get(attribute) {
                Some(&alpha) if alpha != 0.0 => {
                    latents = move_along(&latents, &model.direction(attribute)?, alpha);
                }
                _ => {}
            }
        }
        Ok(ImageResponse {
            image: decoded(model, &latents, None)?.remove(0),
        })
    }
}
