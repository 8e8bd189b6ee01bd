//! `glowflow serve` end to end: a server on a free loopback port over tiny perturbed models and
//! the synthetic 8x8 dataset, driven over HTTP. Every image the API returns is checked against
//! what the library computes here for the same inputs (`Glow::sample`, `encode`,
//! `reconstruct_keeping_top`, `interpolate`, `along_direction` with a direction computed here);
//! bad uploads and parameters get a 4xx naming the problem; a class-conditional model is served
//! under its labels; 200 requests from 8 concurrent clients all succeed (latency percentiles
//! printed, never asserted).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use burn::tensor::Tensor;
use common::{f32_device, grey8_config, perturb, scratch_dir, write_idx_dataset};
use glowflow::data::dataset::{ImageDataset, Split};
use glowflow::data::source::DataSource;
use glowflow::latent::attribute::{class_flags, dataset_direction};
use glowflow::latent::{
    along_direction, images_at_bin_centres, interpolate, move_along, reconstruct_keeping_top,
};
use glowflow::likelihood::to_pixels;
use glowflow::serve::{serve, Explorer, Limits, ServeOptions};
use glowflow::tensor_ops::to_f64_vec;
use glowflow::{load_model, save_model, Glow, Latents};
use rand::SeedableRng;
use serde_json::{json, Value};

/// Training and test images of the synthetic dataset.
const TRAIN: usize = 40;
const TEST: usize = 8;

/// A directory with the synthetic dataset and two 1x8x8 models (L = 2, K = 2, coupling widths 8
/// and 16), every parameter perturbed so that couplings and priors are not the identity.
struct Fixture {
    dir: PathBuf,
    models: [PathBuf; 2],
}

fn fixture(name: &str) -> Fixture {
    let dir = scratch_dir(name);
    write_idx_dataset(&dir, TRAIN, TEST, 8);
    let device = f32_device();
    let models = [("tiny-width-8", 8, 11), ("tiny-width-16", 16, 12)].map(|(name, width, seed)| {
        let path = dir.join(name);
        let model = grey8_config(width).init(&device).expect("valid config");
        save_model(&perturb(model, 0.05, seed), &path).expect("save model");
        path
    });
    Fixture { dir, models }
}

/// Serves `models` of `fixture` with `limits` on a free loopback port; returns its address.
async fn start(fixture: &Fixture, models: usize, limits: Limits) -> SocketAddr {
    start_models(&fixture.dir, fixture.models[..models].to_vec(), limits).await
}

/// Serves the model directories `models` over the dataset in `dir` with `limits` on a free
/// loopback port; returns its address.
async fn start_models(dir: &Path, models: Vec<PathBuf>, limits: Limits) -> SocketAddr {
    let options = ServeOptions {
        models,
        data: Some(dir.to_path_buf()),
        preset: "fashion-mnist".into(),
        attributes_file: None,
        direction_images: 0,
        limits,
    };
    let explorer = Explorer::load(&options, &f32_device(), &mut |w| eprintln!("{w}"))
        .expect("the explorer loads");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let address = listener.local_addr().expect("address");
    tokio::spawn(serve(listener, Arc::new(explorer), std::future::pending()));
    address
}

/// `POST path` with a JSON body; returns the status and the JSON answer.
async fn post(
    client: &reqwest::Client,
    address: SocketAddr,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let response = client
        .post(format!("http://{address}{path}"))
        .json(&body)
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

/// `POST path` that must succeed; returns the JSON answer.
async fn ok(client: &reqwest::Client, address: SocketAddr, path: &str, body: Value) -> Value {
    let (status, answer) = post(client, address, path, body.clone()).await;
    assert_eq!(status, 200, "{path} {body}: {answer}");
    answer
}

/// `GET /api/models`: the served models as the page sees them.
async fn models_info(client: &reqwest::Client, address: SocketAddr) -> Value {
    client
        .get(format!("http://{address}/api/models"))
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("JSON")
}

/// `POST path` that must fail with `status` and an error mentioning every one of `facts`.
async fn fails(
    client: &reqwest::Client,
    address: SocketAddr,
    path: &str,
    body: Value,
    status: u16,
    facts: &[&str],
) {
    let (got, answer) = post(client, address, path, body.clone()).await;
    let message = answer["error"].as_str().unwrap_or_default().to_string();
    assert_eq!(got, status, "{path} {body}: {answer}");
    for fact in facts {
        assert!(message.contains(fact), "{path}: no {fact:?} in {message:?}");
    }
}

/// The grey pixels of a PNG data URL, as (width, height, pixels).
fn png_pixels(data_url: &Value) -> (usize, usize, Vec<u8>) {
    let text = data_url.as_str().expect("a string");
    let body = text
        .strip_prefix("data:image/png;base64,")
        .expect("a PNG data URL");
    let bytes = STANDARD.decode(body).expect("base64");
    common::grey_png(std::io::Cursor::new(bytes))
}

/// The 8-bit pixels of each model-space image of `x` (an 8-bit model), image by image.
fn library_pixels(x: Tensor<4>) -> Vec<Vec<u8>> {
    let [n, ..] = x.dims();
    let values = to_f64_vec(to_pixels(x, 8));
    let per = values.len() / n;
    values
        .chunks(per)
        .map(|image| image.iter().map(|&v| v as u8).collect())
        .collect()
}

/// Asserts that the PNG data URLs `images` hold the library's images `x`, pixel for pixel.
fn assert_same_images(images: &Value, x: Tensor<4>, what: &str) {
    let expected = library_pixels(x);
    let images = images.as_array().expect("an array of images");
    assert_eq!(images.len(), expected.len(), "{what}: image count");
    for (i, (url, want)) in images.iter().zip(&expected).enumerate() {
        let (w, h, got) = png_pixels(url);
        assert_eq!((w, h), (8, 8), "{what}: image size");
        assert_eq!(&got, want, "{what}: image {i} differs from the library's");
    }
}

/// f32 values of base64 latents.
fn latent_values(text: &Value) -> Vec<f32> {
    let bytes = STANDARD
        .decode(text.as_str().expect("a string"))
        .expect("base64");
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// One image's latents as the library holds them, flattened level by level.
fn flat(latents: &Latents) -> Vec<f32> {
    latents
        .levels
        .iter()
        .flat_map(|e| to_f64_vec(e.clone()))
        .map(|v| v as f32)
        .collect()
}

fn test_set(dir: &Path, glow: &Glow) -> ImageDataset {
    glowflow::data::source::load_split(
        glow.config(),
        &DataSource::Idx { dir: dir.into() },
        0,
        Split::Test,
        &mut |_| {},
    )
    .expect("test set")
    .0
}

/// A grey PNG file's bytes.
fn grey_png(width: usize, height: usize, pixels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width as u32, height as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("header");
    writer.write_image_data(pixels).expect("pixels");
    writer.finish().expect("finish");
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_returns_what_the_library_computes() {
    let fixture = fixture("serve-api");
    let address = start(&fixture, 2, Limits::default()).await;
    let client = reqwest::Client::new();
    let device = f32_device();
    let glow = load_model(&fixture.models[0], &device).expect("model a");
    let other = load_model(&fixture.models[1], &device).expect("model b");
    let test = test_set(&fixture.dir, &glow);
    let x_of = |i: usize| images_at_bin_centres(&glow, &test, &[i]).expect("test image");

    // The models, as the page sees them.
    let info = models_info(&client, address).await;
    let first = &info["models"][0];
    assert_eq!(first["levels"], 2);
    assert_eq!(first["latent_length"], 64);
    assert_eq!(first["test_images"], TEST);
    assert_eq!(first["attributes"].as_array().map(Vec::len), Some(10));
    assert_eq!(info["models"].as_array().map(Vec::len), Some(2));
    assert_eq!(info["limits"]["max_temperature"], 1.2);
    let page = client
        .get(format!("http://{address}/"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(page.contains("glowflow explorer") && page.contains("id=\"temperature\""));

    // Samples: Glow::sample from the same seed, at two temperatures of the same noise; the
    // second model's from its own weights.
    for temperature in [0.6, 1.1] {
        let answer = ok(
            &client,
            address,
            "/api/sample",
            json!({"n": 5, "temperature": temperature, "seed": 3}),
        )
        .await;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let x = glow.sample(5, temperature, None, &mut rng).expect("sample");
        assert_same_images(&answer["images"], x, "sample");
        let latents = latent_values(&answer["latents"][4]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let noise = glow.random_latents(5, 1.0, &mut rng, &device).rows(&(4..5));
        for (got, unit) in latents.iter().zip(flat(&noise)) {
            assert!(
                (got - temperature as f32 * unit).abs() < 1e-5,
                "latents are T x noise"
            );
        }
    }
    let answer = ok(
        &client,
        address,
        "/api/sample",
        json!({"model": 1, "n": 3, "temperature": 0.7, "seed": 4}),
    )
    .await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let x = other.sample(3, 0.7, None, &mut rng).expect("sample");
    assert_same_images(&answer["images"], x, "the compared model's samples");

    // Encoding a test image: the image itself, its exact latents and its bits/dim.
    let encoded = ok(&client, address, "/api/encode", json!({"index": 3})).await;
    let (_, _, original) = png_pixels(&encoded["image"]);
    assert_eq!(original, test.image(3), "the encoded image is test image 3");
    assert_eq!(encoded["label"], 3, "test image 3 is of class 3 % 4");
    let (latents, _) = glow.encode(x_of(3), None).expect("encode");
    assert_eq!(latent_values(&encoded["latents"]), flat(&latents));
    let log_p: f64 = to_f64_vec(glow.log_prob(x_of(3), None).expect("log p"))[0];
    let d = 64.0;
    let bpd = -(log_p - d * 256f64.ln()) / (d * std::f64::consts::LN_2);
    let served = encoded["bits_per_dim"].as_f64().expect("a number");
    assert!((served - bpd).abs() < 1e-4, "bits/dim {served} vs {bpd}");

    // Reconstructions: keeping both levels gives the image back; keeping the top one redraws
    // the lower level as reconstruct_keeping_top does from the same seed.
    let full = ok(
        &client,
        address,
        "/api/reconstruct",
        json!({"latents": encoded["latents"], "keep": 2}),
    )
    .await;
    assert_eq!(png_pixels(&full["image"]).2, test.image(3));
    let top = ok(
        &client,
        address,
        "/api/reconstruct",
        json!({"latents": encoded["latents"], "keep": 1, "temperature": 0.5, "seed": 9}),
    )
    .await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let x = reconstruct_keeping_top(&glow, x_of(3), None, 1, 0.5, &mut rng).expect("reconstruct");
    assert_same_images(&json!([top["image"]]), x, "keep the top level");
    assert_ne!(png_pixels(&top["image"]).2, test.image(3));

    // Interpolation between test images 0 and 1.
    let a = ok(&client, address, "/api/encode", json!({"index": 0})).await;
    let b = ok(&client, address, "/api/encode", json!({"index": 1})).await;
    let line = ok(
        &client,
        address,
        "/api/interpolate",
        json!({"a": a["latents"], "b": b["latents"], "steps": 5}),
    )
    .await;
    let x = interpolate(&glow, x_of(0), x_of(1), None, 5).expect("interpolate");
    assert_same_images(&line["images"], x, "interpolation");
    assert_eq!(png_pixels(&line["images"][0]).2, test.image(0));
    assert_eq!(png_pixels(&line["images"][4]).2, test.image(1));

    // Manipulation: the class directions computed here over all training images.
    let train = glowflow::data::source::load_split(
        glow.config(),
        &DataSource::Idx {
            dir: fixture.dir.clone(),
        },
        0,
        Split::Train,
        &mut |_| {},
    )
    .expect("training set")
    .0;
    let names: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let labels = train.labels.clone().expect("labels");
    let direction = |class: &str| {
        let flags = class_flags(&labels, &names, class).expect("flags");
        dataset_direction(&glow, &train, &flags, 500)
            .expect("direction")
            .0
    };
    let (d1, d2) = (direction("1"), direction("2"));
    let moved = ok(
        &client,
        address,
        "/api/manipulate",
        json!({"latents": encoded["latents"], "alphas": {"2": 1.5}}),
    )
    .await;
    let x = along_direction(&glow, x_of(3), &d2, &[1.5]).expect("along");
    assert_same_images(&json!([moved["image"]]), x, "one slider");
    assert_ne!(png_pixels(&moved["image"]).2, test.image(3));
    let both = ok(
        &client,
        address,
        "/api/manipulate",
        json!({"latents": encoded["latents"], "alphas": {"2": 1.5, "1": -0.5, "3": 0.0}}),
    )
    .await;
    let combined = move_along(&move_along(&latents, &d1, -0.5), &d2, 1.5);
    let x = glow.decode(&combined, None).expect("decode").0;
    assert_same_images(&json!([both["image"]]), x, "two sliders");
    let still = ok(
        &client,
        address,
        "/api/manipulate",
        json!({"latents": encoded["latents"], "alphas": {"2": 0.0}}),
    )
    .await;
    assert_eq!(png_pixels(&still["image"]).2, test.image(3), "alpha 0");
    assert!(
        fixture.models[0].join("directions").read_dir().is_ok(),
        "the directions are cached where `glowflow manipulate` caches them"
    );

    // Uploads: a PNG of the model's size encodes as the test image it holds; a taller one is
    // centre-cropped (no resampling: its shorter side is the model's); a JPEG is accepted.
    let upload = |bytes: &[u8]| json!({"image": STANDARD.encode(bytes)});
    let same = ok(
        &client,
        address,
        "/api/encode",
        upload(&grey_png(8, 8, test.image(2))),
    )
    .await;
    let by_index = ok(&client, address, "/api/encode", json!({"index": 2})).await;
    assert_eq!(same["latents"], by_index["latents"]);
    let mut tall = vec![255u8; 16];
    tall.extend_from_slice(test.image(2));
    tall.extend(vec![0u8; 16]);
    let data_url = format!(
        "data:image/png;base64,{}",
        STANDARD.encode(grey_png(8, 12, &tall))
    );
    let cropped = ok(&client, address, "/api/encode", json!({"image": data_url})).await;
    assert_eq!(cropped["latents"], by_index["latents"], "centre crop");
    // An RGBA upload to the grey model: alpha dropped, grey from the colours.
    let rgba: Vec<u8> = test.image(2).iter().flat_map(|&v| [v, v, v, 77]).collect();
    let mut rgba_png = Vec::new();
    image::RgbaImage::from_raw(8, 8, rgba)
        .expect("an image")
        .write_to(
            &mut std::io::Cursor::new(&mut rgba_png),
            image::ImageFormat::Png,
        )
        .expect("PNG");
    let from_rgba = ok(&client, address, "/api/encode", upload(&rgba_png)).await;
    assert_eq!(from_rgba["latents"], by_index["latents"], "RGBA to grey");
    let mut jpeg = Vec::new();
    image::GrayImage::from_raw(8, 8, test.image(2).to_vec())
        .expect("an image")
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .expect("JPEG");
    let from_jpeg = ok(&client, address, "/api/encode", upload(&jpeg)).await;
    assert!(from_jpeg["bits_per_dim"]
        .as_f64()
        .is_some_and(f64::is_finite));
}

/// A perturbed 1x8x8 model conditioned on the dataset's 10 classes, saved in `fixture`'s
/// directory; returns its path.
fn conditional_model(fixture: &Fixture) -> PathBuf {
    let mut config = grey8_config(8);
    config.n_classes = 10;
    config.class_head = true;
    let path = fixture.dir.join("tiny-conditional");
    let model = config.init(&f32_device()).expect("valid config");
    save_model(&perturb(model, 0.05, 13), &path).expect("save model");
    path
}

/// The API's interpolation in `steps` between test images 0 (class 0) and 1 (class 1) of a
/// class-conditional model, each encoded under its label.
async fn interpolation_between_classes(
    client: &reqwest::Client,
    address: SocketAddr,
    steps: usize,
) -> Value {
    let a = ok(client, address, "/api/encode", json!({"index": 0})).await;
    let b = ok(client, address, "/api/encode", json!({"index": 1})).await;
    let body =
        json!({"a": a["latents"], "b": b["latents"], "steps": steps, "class_a": 0, "class_b": 1});
    ok(client, address, "/api/interpolate", body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_conditional_model_is_served_under_its_labels() {
    // Served beside an unconditional model.
    let fixture = fixture("serve-classes");
    let device = f32_device();
    let conditional = conditional_model(&fixture);
    let models = vec![conditional.clone(), fixture.models[0].clone()];
    let address = start_models(&fixture.dir, models, Limits::default()).await;
    let client = reqwest::Client::new();
    let glow = load_model(&conditional, &device).expect("model");
    let test = test_set(&fixture.dir, &glow);
    let x_of = |i: usize| images_at_bin_centres(&glow, &test, &[i]).expect("test image");
    let class = |k: usize, n: usize| glow.one_hot(&vec![k; n], &device).expect("one-hot");

    // Samples of a class: Glow::sample under that class, from the same seed.
    let answer = ok(
        &client,
        address,
        "/api/sample",
        json!({"n": 4, "temperature": 0.8, "seed": 5, "class": 6}),
    )
    .await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let x = glow
        .sample(4, 0.8, Some(&class(6, 4)), &mut rng)
        .expect("sample");
    assert_same_images(&answer["images"], x, "samples of class 6");

    // A test image is encoded under its own label, and decodes back under it; the answer says
    // which class the model reads it as, by Bayes' rule and by its classifier head.
    let encoded = ok(&client, address, "/api/encode", json!({"index": 2})).await;
    assert_eq!(encoded["label"], 2, "test image 2 is of class 2 % 4");
    let (latents, _) = glow.encode(x_of(2), Some(&class(2, 1))).expect("encode");
    assert_eq!(latent_values(&encoded["latents"]), flat(&latents));
    let predicted = glow.predicted_classes(x_of(2)).expect("classes");
    assert_eq!(encoded["predicted_class"], predicted.bayes[0]);
    assert_eq!(encoded["head_class"], predicted.head.expect("a head")[0]);
    let full = ok(
        &client,
        address,
        "/api/reconstruct",
        json!({"latents": encoded["latents"], "keep": 2, "class": 2}),
    )
    .await;
    assert_eq!(png_pixels(&full["image"]).2, test.image(2));
    let top = ok(
        &client,
        address,
        "/api/reconstruct",
        json!({"latents": encoded["latents"], "keep": 1, "temperature": 0.5, "seed": 9, "class": 2}),
    )
    .await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let x = reconstruct_keeping_top(&glow, x_of(2), Some(&class(2, 1)), 1, 0.5, &mut rng)
        .expect("reconstruct");
    assert_same_images(
        &json!([top["image"]]),
        x,
        "keep the top level under class 2",
    );

    // An upload is encoded under the class given.
    let upload = STANDARD.encode(grey_png(8, 8, test.image(1)));
    let encoded = ok(
        &client,
        address,
        "/api/encode",
        json!({"image": upload, "class": 7}),
    )
    .await;
    assert_eq!(encoded["label"], 7);
    let (latents, _) = glow.encode(x_of(1), Some(&class(7, 1))).expect("encode");
    assert_eq!(latent_values(&encoded["latents"]), flat(&latents));
    // Without a class, under the class the model finds most likely.
    let guessed = ok(&client, address, "/api/encode", json!({"image": upload})).await;
    let likely = glow.predicted_classes(x_of(1)).expect("classes").bayes[0];
    assert_eq!(guessed["label"], likely);
    assert_eq!(guessed["predicted_class"], likely);
    let (latents, _) = glow
        .encode(x_of(1), Some(&class(likely, 1)))
        .expect("encode");
    assert_eq!(latent_values(&guessed["latents"]), flat(&latents));

    // Interpolation from a test image of class 0 to one of class 1 moves the label too.
    let line = interpolation_between_classes(&client, address, 5).await;
    let (ya, yb) = (class(0, 1), class(1, 1));
    let x = interpolate(&glow, x_of(0), x_of(1), Some((&ya, &yb)), 5).expect("interpolate");
    assert_same_images(&line["images"], x, "interpolation between classes");
    assert_eq!(png_pixels(&line["images"][0]).2, test.image(0));
    assert_eq!(png_pixels(&line["images"][4]).2, test.image(1));

    // What needs a class without one, a class out of range, a class for the unconditional
    // model, and attribute directions are refused, naming the parameter.
    let latents = &encoded["latents"];
    let refused = [
        (
            "/api/sample",
            json!({"n": 2}),
            &["`class` is needed", "10 classes"][..],
        ),
        (
            "/api/sample",
            json!({"n": 2, "class": 10}),
            &["`class` = 10", "between 0 and 9"],
        ),
        (
            "/api/encode",
            json!({"image": upload, "class": 10}),
            &["`class` = 10", "between 0 and 9"],
        ),
        (
            "/api/reconstruct",
            json!({"latents": latents, "keep": 2}),
            &["`class` is needed"],
        ),
        (
            "/api/interpolate",
            json!({"a": latents, "b": latents, "class_a": 1}),
            &["`class_b` is needed"],
        ),
        (
            "/api/sample",
            json!({"model": 1, "n": 2, "class": 1}),
            &["`class` is for class-conditional models", "unconditional"],
        ),
        (
            "/api/manipulate",
            json!({"latents": latents, "alphas": {"3": 1.0}}),
            &["attribute directions need an unconditional model"],
        ),
    ];
    for (path, body, facts) in refused {
        fails(&client, address, path, body, 400, facts).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_and_parameters_get_a_4xx_naming_the_problem() {
    let fixture = fixture("serve-bad");
    let limits = Limits {
        max_body_bytes: 64 << 10,
        max_image_side: 64,
        ..Limits::default()
    };
    let address = start(&fixture, 1, limits).await;
    let client = reqwest::Client::new();
    let encoded = ok(&client, address, "/api/encode", json!({"index": 0})).await;
    let z = encoded["latents"].clone();
    let upload = |bytes: &[u8]| json!({"image": STANDARD.encode(bytes)});
    let png = grey_png(8, 8, &[90; 64]);

    // Uploads.
    for (body, status, facts) in [
        (
            upload(b"hello, not an image"),
            400,
            vec![
                "not an image glowflow reads",
                "send a PNG, JPEG, WebP, TIFF, Netpbm or BMP file",
            ],
        ),
        (
            json!({"image": "%%% not base64"}),
            400,
            vec!["`image` is not base64"],
        ),
        (upload(&png[..30]), 400, vec!["not a readable PNG image"]),
        (
            upload(&grey_png(65, 8, &[0; 520])),
            400,
            vec!["65x8 pixels", "64x64", "scale it down"],
        ),
        (
            json!({"image": "A".repeat(100 << 10)}),
            413,
            vec!["larger than the 65536 bytes", "smaller image"],
        ),
        (
            json!({"index": 0, "image": STANDARD.encode(&png)}),
            400,
            vec!["exactly one of `index`"],
        ),
        (
            json!({"index": 8}),
            400,
            vec!["`index` = 8", "between 0 and 7"],
        ),
    ] {
        fails(&client, address, "/api/encode", body, status, &facts).await;
    }
    let response = client
        .post(format!("http://{address}/api/encode"))
        .body("{\"index\": 0}")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 415);
    let message: Value = response.json().await.expect("JSON");
    assert!(message["error"]
        .as_str()
        .is_some_and(|m| m.contains("Content-Type: application/json")));

    // Parameters out of range, unknown fields and values that are not latents.
    for (path, body, status, facts) in [
        (
            "/api/sample",
            json!({"n": 0}),
            400,
            vec!["`n` = 0", "between 1 and 64"],
        ),
        (
            "/api/sample",
            json!({"n": 65}),
            400,
            vec!["`n` = 65", "between 1 and 64"],
        ),
        (
            "/api/sample",
            json!({"temperature": 1.5}),
            400,
            vec!["`temperature` = 1.5", "between 0 and 1.2"],
        ),
        (
            "/api/sample",
            json!({"temperature": -0.1}),
            400,
            vec!["`temperature`", "between 0 and 1.2"],
        ),
        (
            "/api/sample",
            json!({"temp": 0.5}),
            422,
            vec!["unknown field `temp`"],
        ),
        (
            "/api/sample",
            json!({"n": "many"}),
            422,
            vec!["invalid type"],
        ),
        (
            "/api/sample",
            json!({"model": 1}),
            400,
            vec!["model 1 does not exist", "must be 0"],
        ),
        (
            "/api/reconstruct",
            json!({"latents": z, "keep": 0}),
            400,
            vec!["`keep` = 0", "between 1 and 2"],
        ),
        (
            "/api/reconstruct",
            json!({"latents": z, "keep": 3}),
            400,
            vec!["`keep` = 3", "between 1 and 2"],
        ),
        (
            "/api/reconstruct",
            json!({"keep": 1}),
            422,
            vec!["missing field `latents`"],
        ),
        (
            "/api/reconstruct",
            json!({"latents": "AAAA", "keep": 1}),
            400,
            vec!["`latents` holds 3 bytes", "64 f32 values (256 bytes)"],
        ),
        (
            "/api/reconstruct",
            json!({"latents": STANDARD.encode([0xffu8; 256]), "keep": 1}),
            400,
            vec!["value 0 is NaN", "finite"],
        ),
        (
            "/api/interpolate",
            json!({"a": z, "b": z, "steps": 1}),
            400,
            vec!["`steps` = 1", "between 2 and 32"],
        ),
        (
            "/api/interpolate",
            json!({"a": z, "b": z, "steps": 33}),
            400,
            vec!["`steps` = 33", "between 2 and 32"],
        ),
        (
            "/api/interpolate",
            json!({"a": z, "b": "xyz!", "steps": 3}),
            400,
            vec!["`b` is not base64"],
        ),
        (
            "/api/manipulate",
            json!({"latents": z, "alphas": {"2": 9.0}}),
            400,
            vec!["`alphas.2` = 9", "between -4 and 4"],
        ),
        (
            "/api/manipulate",
            json!({"latents": z, "alphas": {"hat": 1.0}}),
            400,
            vec!["`hat`", "0, 1, 2"],
        ),
        (
            "/api/nothing",
            json!({}),
            404,
            vec!["no endpoint POST /api/nothing", "/api/sample"],
        ),
    ] {
        fails(&client, address, path, body, status, &facts).await;
    }
    let (status, _) = post(&client, address, "/api/sample", json!({"n": 2})).await;
    assert_eq!(status, 200, "the server still answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_uploads_are_encoded_or_refused_never_a_server_error() {
    use rand::Rng;
    let fixture = fixture("serve-mutations");
    let address = start(&fixture, 1, Limits::default()).await;
    let client = reqwest::Client::new();
    let pixels: Vec<u8> = (0..64u8).map(|v| v * 4).collect();
    let mut jpeg = Vec::new();
    image::GrayImage::from_raw(8, 8, pixels.clone())
        .expect("an image")
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .expect("JPEG");
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let (mut encoded, mut refused) = (0, 0);
    for valid in [grey_png(8, 8, &pixels), jpeg] {
        for _ in 0..100 {
            // 1-3 edits: a flipped bit, a byte set, a 32-bit word that often is a size, a cut.
            let mut bytes = valid.clone();
            for _ in 0..rng.random_range(1..=3) {
                let at = rng.random_range(0..bytes.len().max(1));
                match rng.random_range(0..4) {
                    0 if at < bytes.len() => bytes[at] ^= 1 << rng.random_range(0..8),
                    1 if at < bytes.len() => bytes[at] = rng.random(),
                    2 if at + 4 <= bytes.len() => {
                        let word: u32 =
                            [0, 1, 0x7fff_ffff, 0xffff_ffff, 65_535][rng.random_range(0..5)];
                        bytes[at..at + 4].copy_from_slice(&word.to_be_bytes());
                    }
                    _ => bytes.truncate(at),
                }
            }
            let (status, answer) = post(
                &client,
                address,
                "/api/encode",
                json!({"image": STANDARD.encode(&bytes)}),
            )
            .await;
            match status {
                200 => encoded += 1,
                400 => {
                    assert!(
                        answer["error"]
                            .as_str()
                            .is_some_and(|m| m.contains("image")),
                        "{answer}"
                    );
                    refused += 1;
                }
                _ => panic!("a mutated upload got {status}: {answer}"),
            }
        }
    }
    println!("200 mutated uploads: {encoded} encoded, {refused} refused with a 400");
    let (status, _) = post(&client, address, "/api/sample", json!({"n": 2})).await;
    assert_eq!(status, 200, "the server still answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_computation_past_the_request_timeout_is_a_503() {
    let fixture = fixture("serve-timeout");
    let limits = Limits {
        concurrent_jobs: 1,
        request_timeout: Duration::ZERO,
        ..Limits::default()
    };
    let address = start(&fixture, 1, limits).await;
    let client = reqwest::Client::new();
    fails(
        &client,
        address,
        "/api/sample",
        json!({"n": 64}),
        503,
        &["0 s request timeout", "try again"],
    )
    .await;
    // Bad parameters are answered at once, without waiting for a computation.
    fails(
        &client,
        address,
        "/api/sample",
        json!({"n": 0}),
        400,
        &["`n` = 0"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_requests_from_eight_clients_all_succeed() {
    let fixture = fixture("serve-load");
    let address = start(&fixture, 1, Limits::default()).await;
    let client = reqwest::Client::new();
    let z = ok(&client, address, "/api/encode", json!({"index": 1})).await["latents"].clone();
    let (clients, per_client) = (8, 25);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, z) = (client.clone(), z.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for r in 0..per_client {
                    let (path, body) = match (c + r) % 4 {
                        0 => (
                            "/api/sample",
                            json!({"n": 8, "seed": r, "temperature": 0.7}),
                        ),
                        1 => ("/api/encode", json!({"index": r % TEST})),
                        2 => (
                            "/api/reconstruct",
                            json!({"latents": z, "keep": 1, "seed": r}),
                        ),
                        _ => ("/api/interpolate", json!({"a": z, "b": z, "steps": 4})),
                    };
                    let sent = Instant::now();
                    let (status, answer) = post(&client, address, path, body).await;
                    latencies.push(sent.elapsed());
                    assert_eq!(status, 200, "{path}: {answer}");
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("a client finished"));
    }
    let wall = started.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    assert_eq!(latencies.len(), clients * per_client);
    println!(
        "{} requests from {clients} clients in {:.2} s ({:.0} requests/s): latency p50 {:.1} ms, \
         p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        wall.as_secs_f64(),
        latencies.len() as f64 / wall.as_secs_f64(),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(at(1.0))
    );
}

/// A child process killed when dropped (the WebDriver server of the browser test).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `program --version` runs.
fn installed(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Evaluates the JavaScript expression `expr` in the page until it is truthy (at most 60 s),
/// returning its value.
async fn wait_until(browser: &fantoccini::Client, expr: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let value = browser
            .execute(&format!("return {expr};"), vec![])
            .await
            .expect("the script runs");
        let truthy = match &value {
            Value::Null | Value::Bool(false) => false,
            Value::String(s) => !s.is_empty(),
            Value::Number(n) => n.as_f64() != Some(0.0),
            _ => true,
        };
        if truthy {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {expr}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks the page's tab `name` (`#tab-NAME`).
async fn open_tab(browser: &fantoccini::Client, name: &str) {
    browser
        .find(fantoccini::Locator::Css(&format!("#tab-{name}")))
        .await
        .expect("tab")
        .click()
        .await
        .expect("click");
}

/// Presses a key `times` times on the element `selector` (a slider moves one step per press).
async fn press(
    browser: &fantoccini::Client,
    selector: &str,
    key: fantoccini::key::Key,
    times: usize,
) {
    let element = browser
        .find(fantoccini::Locator::Css(selector))
        .await
        .expect("the element exists");
    let keys: String = std::iter::repeat_n(char::from(key), times).collect();
    element.send_keys(&keys).await.expect("keys sent");
}

/// Where the browser test saves its screenshots: the fixture's scratch directory `scratch`, or,
/// with `GLOWFLOW_UPDATE_DOCS` set, `docs/` (the pictures in README). A plain test run leaves
/// the checkout as it was: fonts render differently from machine to machine.
fn screenshots_dir(scratch: &Path) -> PathBuf {
    match std::env::var_os("GLOWFLOW_UPDATE_DOCS") {
        Some(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join("docs"),
        None => scratch.to_path_buf(),
    }
}

/// Saves the browser's window as `serve-<view>.png` in `dir`.
async fn screenshot(browser: &fantoccini::Client, view: &str, dir: &Path) {
    wait_until(
        browser,
        "(document.activeElement.blur(), true) && \
         Array.from(document.images).every((i) => i.complete) && \
         new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(() => done(true))))",
    )
    .await;
    let png = browser.screenshot().await.expect("a screenshot");
    let path = dir.join(format!("serve-{view}.png"));
    std::fs::write(&path, png).expect("write the screenshot");
    println!("wrote {}", path.display());
}

/// The explorer's page at `address` in headless Chromium, with its WebDriver server (killed when
/// dropped); `None`, saying so, where they are not installed (an error under
/// `GLOWFLOW_REQUIRE_BROWSER`, as `.ci/run` sets).
async fn page_in_chromium(address: SocketAddr) -> Option<(fantoccini::Client, Child)> {
    if !installed("chromedriver") || !installed("chromium") {
        assert!(
            std::env::var_os("GLOWFLOW_REQUIRE_BROWSER").is_none(),
            "GLOWFLOW_REQUIRE_BROWSER is set (.ci/run) but chromium or chromedriver is missing"
        );
        println!(
            "SKIPPED: the browser test needs Debian's chromium and chromium-driver \
             (apt-get install -y chromium chromium-driver; .ci/run installs them)"
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let driver = Child(
        std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let capabilities: serde_json::Map<String, Value> = serde_json::from_value(json!({
        "goog:chromeOptions": {
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1100,820"]
        }
    }))
    .expect("capabilities");
    let deadline = Instant::now() + Duration::from_secs(30);
    let browser = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match fantoccini::ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(browser) => break browser,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for chromedriver: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("chromedriver did not start a browser: {e}"),
        }
    };
    browser
        .goto(&format!("http://{address}/"))
        .await
        .expect("the page opens");
    Some((browser, driver))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_headless_chromium_follows_its_sliders() {
    let fixture = fixture("serve-browser");
    let shots = screenshots_dir(&fixture.dir);
    let address = start(&fixture, 2, Limits::default()).await;
    let client = reqwest::Client::new();
    let Some((browser, _driver)) = page_in_chromium(address).await else {
        return;
    };
    use fantoccini::key::Key;

    // Sample: the temperature slider re-decodes the same noise at its new value.
    let first = "document.querySelector('#sample-grid img')?.src";
    let before = wait_until(&browser, first).await;
    let expected = ok(
        &client,
        address,
        "/api/sample",
        json!({"n": 16, "temperature": 0.9, "seed": 0}),
    )
    .await;
    assert_ne!(before, expected["images"][0], "T = 0.7 and 0.9 differ");
    press(&browser, "#temperature", Key::Right, 4).await;
    // The page shows the API's samples at T = 0.9 (after those of the steps on the way).
    wait_until(&browser, &format!("{first} === {}", expected["images"][0])).await;
    let shown = wait_until(
        &browser,
        "document.getElementById('temperature-value').textContent",
    )
    .await;
    assert_eq!(shown, "0.90");
    screenshot(&browser, "sample", &shots).await;

    // Encode and reconstruct: moving `keep` from 2 levels to 1 redraws the lower level.
    open_tab(&browser, "encode").await;
    let kept = "document.getElementById('encode-keep').src";
    let full = wait_until(&browser, kept).await;
    press(&browser, "#keep", Key::Left, 1).await;
    wait_until(&browser, &format!("{kept} !== {full}")).await;
    wait_until(
        &browser,
        "document.getElementById('encode-bpd').textContent",
    )
    .await;
    screenshot(&browser, "encode", &shots).await;

    // Interpolate: scrubbing shows the strip's images one by one.
    open_tab(&browser, "interpolate").await;
    wait_until(
        &browser,
        "document.querySelectorAll('#interp-strip img').length === 8",
    )
    .await;
    press(&browser, "#interp-scrub", Key::Right, 3).await;
    wait_until(
        &browser,
        "document.getElementById('interp-view').src === document.querySelectorAll('#interp-strip img')[3].src",
    )
    .await;
    screenshot(&browser, "interpolate", &shots).await;

    // Manipulate: the slider of class 2 moves the image along its direction.
    open_tab(&browser, "manipulate").await;
    let result = "document.getElementById('manip-result').src";
    let still = wait_until(&browser, result).await;
    let z = ok(&client, address, "/api/encode", json!({"index": 0})).await["latents"].clone();
    let expected = ok(
        &client,
        address,
        "/api/manipulate",
        json!({"latents": z, "alphas": {"2": 1.0}}),
    )
    .await;
    assert_ne!(still, expected["image"], "alpha 1 moves test image 0");
    press(&browser, "#alpha-2", Key::Right, 4).await;
    // The page shows the API's test image 0 at alpha 1.
    wait_until(&browser, &format!("{result} === {}", expected["image"])).await;
    screenshot(&browser, "manipulate", &shots).await;

    // Compare: both models' samples side by side.
    open_tab(&browser, "compare").await;
    wait_until(
        &browser,
        "document.querySelectorAll('#cmp-grid-0 img').length === 16 && \
         document.querySelectorAll('#cmp-grid-1 img').length === 16",
    )
    .await;
    screenshot(&browser, "compare", &shots).await;
    browser.close().await.expect("the browser closes");
}

/// The API's full reconstruction (both levels) of an `/api/encode` answer of the
/// class-conditional model, decoded under the class it was encoded under.
async fn decoded_under_its_label(
    client: &reqwest::Client,
    address: SocketAddr,
    encoded: &Value,
) -> Value {
    let body = json!({"latents": encoded["latents"], "keep": 2, "class": encoded["label"]});
    ok(client, address, "/api/reconstruct", body).await
}

/// Chooses `value` in the page's `<select id="{id}">`, as a user's choice fires `change`.
async fn choose(browser: &fantoccini::Client, id: &str, value: usize) {
    browser
        .execute(
            &format!(
                "const s = document.getElementById('{id}'); s.value = '{value}'; \
                 s.dispatchEvent(new Event('change'));"
            ),
            vec![],
        )
        .await
        .unwrap_or_else(|e| panic!("{value} is chosen in #{id}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_samples_encodes_and_interpolates_a_class_conditional_model() {
    let fixture = fixture("serve-browser-classes");
    let conditional = conditional_model(&fixture);
    let address = start_models(&fixture.dir, vec![conditional.clone()], Limits::default()).await;
    let client = reqwest::Client::new();
    let Some((browser, _driver)) = page_in_chromium(address).await else {
        return;
    };
    // Sample: the class chooser lists the 10 classes; the page shows the API's samples of the
    // chosen class, first class 0, then class 6.
    wait_until(
        &browser,
        "!document.getElementById('class-choice').hidden && \
         document.getElementById('class-select').options.length === 10",
    )
    .await;
    let first = "document.querySelector('#sample-grid img')?.src";
    for class in [0, 6] {
        if class > 0 {
            choose(&browser, "class-select", class).await;
        }
        let expected = ok(
            &client,
            address,
            "/api/sample",
            json!({"n": 16, "temperature": 0.7, "seed": 0, "class": class}),
        )
        .await;
        wait_until(&browser, &format!("{first} === {}", expected["images"][0])).await;
    }

    // Encode: test image 0 under its own label, decoded back under it.
    open_tab(&browser, "encode").await;
    let encoded = ok(&client, address, "/api/encode", json!({"index": 0})).await;
    let full = decoded_under_its_label(&client, address, &encoded).await;
    wait_until(
        &browser,
        &format!(
            "document.getElementById('encode-full').src === {}",
            full["image"]
        ),
    )
    .await;
    // It names the image's class and the classes the model reads it as, as the chooser names
    // classes.
    let models = models_info(&client, address).await;
    let name = |k: &Value| {
        let k = k.as_u64().expect("a class") as usize;
        match models["models"][0]["attributes"].as_array() {
            Some(names) if names.len() == 10 => names[k].as_str().expect("a name").to_string(),
            _ => k.to_string(),
        }
    };
    let text = format!(
        "(class {}); the model reads it as {} (its classifier head: {})",
        name(&encoded["label"]),
        name(&encoded["predicted_class"]),
        name(&encoded["head_class"])
    );
    wait_until(
        &browser,
        &format!("document.getElementById('encode-bpd').textContent.includes({text:?})"),
    )
    .await;

    // An upload (test image 1's pixels) is encoded under the class the model finds most likely,
    // as the API encodes an upload without a class, and then under the class chosen beside it.
    let glow = load_model(&conditional, &f32_device()).expect("model");
    let upload = STANDARD.encode(grey_png(8, 8, test_set(&fixture.dir, &glow).image(1)));
    browser
        .execute(
            &format!(
                "const bytes = Uint8Array.from(atob('{upload}'), (c) => c.charCodeAt(0)); \
                 const files = new DataTransfer(); \
                 files.items.add(new File([bytes], 'upload.png', {{ type: 'image/png' }})); \
                 const input = document.getElementById('encode-upload'); \
                 input.files = files.files; input.dispatchEvent(new Event('change'));"
            ),
            vec![],
        )
        .await
        .expect("the upload is chosen");
    for under in [None, Some(7)] {
        if let Some(class) = under {
            choose(&browser, "upload-class", class).await;
        }
        let mut body = json!({"image": upload});
        if let Some(class) = under {
            body["class"] = json!(class);
        }
        let encoded = ok(&client, address, "/api/encode", body).await;
        let bits = encoded["bits_per_dim"].as_f64().expect("bits/dim");
        let full = decoded_under_its_label(&client, address, &encoded).await;
        let text = format!("{bits:.4} bits/dim (class {})", name(&encoded["label"]));
        wait_until(
            &browser,
            &format!(
                "document.getElementById('encode-bpd').textContent.startsWith({text:?}) && \
                 document.getElementById('encode-full').src === {}",
                full["image"]
            ),
        )
        .await;
    }

    // Interpolate: from test image 0 (class 0) to 1 (class 1), the label moving too.
    open_tab(&browser, "interpolate").await;
    let line = interpolation_between_classes(&client, address, 8).await;
    wait_until(
        &browser,
        &format!(
            "document.querySelectorAll('#interp-strip img')[3]?.src === {}",
            line["images"][3]
        ),
    )
    .await;

    // Manipulate says why it has no sliders; no view reported an error.
    open_tab(&browser, "manipulate").await;
    wait_until(
        &browser,
        "document.getElementById('manip-sliders').textContent.includes('need an unconditional model')",
    )
    .await;
    let status = browser
        .execute(
            "return document.getElementById('status').textContent;",
            vec![],
        )
        .await
        .expect("the script runs");
    assert_eq!(status, "", "no view failed");
    browser.close().await.expect("the browser closes");
}

#[test]
fn the_serve_command_listens_on_the_loopback_and_answers() {
    use std::io::{BufRead, BufReader, Read, Write};
    let fixture = fixture("serve-cli");
    let model = fixture.models[0].to_str().expect("utf-8");
    let data = fixture.dir.to_str().expect("utf-8");
    let mut child = Child(
        common::glowflow_command()
            .args(["serve", "--model", model, "--data", data, "--port", "0"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("glowflow serve starts"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the server prints its address");
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    assert!(
        address.starts_with("127.0.0.1:"),
        "binds the loopback: {line}"
    );
    let mut stream = std::net::TcpStream::connect(&address).expect("connect");
    write!(
        stream,
        "GET /api/models HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"latent_length\":64"), "{answer}");
}
