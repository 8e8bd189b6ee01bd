//! Device selection (`--device`) and the device check, on the CPU build: a device name that is
//! no device, or a GPU this build lacks, is an error naming what to do, before any work; on the
//! CPU `glowflow check-device` runs its checks (the CPU compared with itself, and a real round
//! trip at the paper's depth) and reports them as JSON. The two convolution routes compute the
//! same function.

mod common;

use burn::tensor::{Device, Tensor};
use common::{fails, max_abs_diff, normal, succeeds};
use glowflow::flow::conv::{set_conv_route, ConvRoute, SameConv2d};
use glowflow::Padding;
use rand::SeedableRng;

#[test]
fn a_name_that_is_no_device_lists_the_accepted_names() {
    let err = fails(&["--device", "gpu", "check-device"]);
    assert!(
        err.contains("cpu, wgpu, wgpu:N, vulkan, vulkan:N, cuda or cuda:N"),
        "{err}"
    );
}

#[cfg(not(feature = "vulkan"))]
#[test]
fn a_gpu_missing_from_the_build_names_its_feature() {
    let err = fails(&["--device", "vulkan:1", "bench", "--repeats", "1"]);
    assert!(
        err.contains("vulkan:1") && err.contains("cargo build --release --features vulkan"),
        "{err}"
    );
}

#[test]
fn a_device_check_of_no_images_is_refused() {
    let err = fails(&["check-device", "--batch-size", "0"]);
    assert!(
        err.contains("at least one image") && err.contains("--batch-size"),
        "{err}"
    );
}

#[test]
fn the_device_check_passes_on_the_cpu() {
    let (stdout, _) = succeeds(&["--device", "cpu", "check-device", "--batch-size", "2"]);
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let checks = report["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 3);
    for check in checks {
        assert_eq!(check["passed"], true, "{check}");
    }
    // The round trip is the inverse's own error (a real measurement, not a comparison of the
    // CPU with itself): non-zero in f32 at 96 flow steps, and within the tolerance.
    let round_trip = checks[0]["measured"].as_f64().expect("a number");
    assert!(round_trip > 0.0 && round_trip <= 1e-3, "{round_trip}");
}

#[test]
fn both_convolution_routes_compute_the_same_function() {
    let device = Device::flex();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let x: Tensor<4> = normal([2, 5, 6, 7], 1.0, 7, &device);
    for (padding, channels) in [
        (Padding::Edge, [5, 9]),
        (Padding::Ones, [5, 3]),
        (Padding::Zero, [5, 4]),
    ] {
        let conv = SameConv2d::normal(channels, 3, 0.3, padding, true, &mut rng, &device);
        set_conv_route(ConvRoute::Burn);
        let by_burn = conv.forward(x.clone());
        set_conv_route(ConvRoute::MatrixProducts);
        let by_products = conv.forward(x.clone());
        set_conv_route(ConvRoute::Auto);
        assert!(max_abs_diff(by_burn, by_products) < 1e-5, "{padding:?}");
    }
}
