//! The `glowflow` command line: one module per group of commands, each command's arguments a
//! struct with a `run` method that calls the library.

mod args;
mod image_cache;
mod latent;
mod model;
mod progress;
mod serve;
mod stop_signal;
mod train;

use burn::tensor::Device;
use clap::{Parser, Subcommand};
use glowflow::cluster::launched_local_rank;
use glowflow::device::DeviceName;
use glowflow::GlowError;

#[derive(Parser)]
#[command(
    name = "glowflow",
    version,
    about = "Glow: generative flow with invertible 1x1 convolutions",
    after_help = "Environment:\n  GLOWFLOW_IMAGE_CACHE  where image folders are decoded once and mapped from by every \
                  later command and process (default: $XDG_CACHE_HOME/glowflow/images, else \
                  ~/.cache/glowflow/images); a directory, or off to decode into memory\n  \
                  RAYON_NUM_THREADS     worker threads (default: one per core)"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Enlarge written image grids this many times (nearest neighbour), e.g. 3 for 28x28 images.
    #[arg(long, global = true, default_value_t = 1)]
    zoom: usize,
    /// Where the tensors live: cpu, wgpu[:N], vulkan[:N] or cuda[:N] (N counts that backend's GPUs
    /// from 0; left out, each process a launcher starts on a machine takes the GPU of its local
    /// rank).
    /// A GPU needs a build with its cargo feature (README: "Training on a GPU").
    #[arg(long, global = true, default_value = "cpu")]
    device: DeviceName,
}

// Parsed once; the size of the `train` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Build a freshly initialised model and save it (config.json + model.safetensors).
    New(model::New),
    /// Train on a dataset (Fashion-MNIST by default), evaluating and sampling as it goes.
    Train(train::Train),
    /// Test-set bits per dimension of a trained model (every test image, seeded noise); for a
    /// class-conditional model also the marginal bits/dim (uniform class prior) and the
    /// classification error of Bayes' rule, and for one with a classifier head its error and
    /// cross-entropy.
    Eval(train::Eval),
    /// Samples from the same noise at several temperatures, one column per temperature.
    TemperatureSweep(latent::TemperatureSweep),
    /// Encodes images to their exact latents `ε` (one tensor per level), written as a safetensors
    /// file; `glowflow decode` turns it back into the images.
    Encode(latent::Encode),
    /// Decodes a latent file written by `glowflow encode` (or edited) to a PNG grid.
    Decode(latent::Decode),
    /// Moves images along an attribute direction (mean latent of images with the attribute minus
    /// that of images without) and decodes them: one row per image, one column per alpha.
    /// Each class of a labelled dataset is an attribute; CelebA's come from --attributes. The
    /// direction is cached in MODEL/directions/.
    Manipulate(latent::Manipulate),
    /// Decodes the straight line between the latents of two test images.
    Interpolate(latent::Interpolate),
    /// Test images beside decodes that keep only the top k levels of their latents (k = L .. 1),
    /// the lower levels redrawn at the given temperature.
    Reconstruct(latent::Reconstruct),
    /// The permutation ablation of the paper (Figure 3): reverse, shuffle and 1x1 conv, each with
    /// additive and affine coupling, over several seeds at the same budget. Writes OUT/ablation.csv,
    /// OUT/ablation.png and OUT/ablation.md; run it again to continue an interrupted ablation.
    Ablate(train::Ablate),
    /// Speed and memory benchmark on synthetic images: median time of a training step, an exact
    /// log-likelihood evaluation and sampling, with peak resident memory (JSON on stdout).
    Bench(model::Bench),
    /// Checks that the device of --device computes Glow as the CPU does, on weights made on the
    /// CPU: a round trip at the paper's depth, the bits/dim of the same images on both, and a
    /// small model's gradients on both, each against its tolerance (JSON on stdout; exit status
    /// 1 if a check fails).
    CheckDevice(model::CheckDevice),
    /// Import a PyTorch Glow checkpoint (rosinality/glow-pytorch or y0ast/Glow-PyTorch) as a
    /// model directory that computes the same function.
    Import(model::Import),
    /// Export a model as a PyTorch state_dict that rosinality/glow-pytorch or y0ast/Glow-PyTorch
    /// loads (an option the peer cannot represent is an error naming it).
    Export(model::Export),
    /// Write a grid of samples from one saved model, or from several side by side (each model's
    /// samples start a new row; e.g. a shallow and a deep model).
    Sample(model::Sample),
    /// A latent-space explorer in the browser: samples with a temperature slider, encodings and
    /// reconstructions, interpolations, attribute sliders, two models side by side. Serves a
    /// page and a JSON API (README: "Browser explorer") on 127.0.0.1 unless --host says otherwise.
    Serve(serve::Serve),
    /// Lists the image cache (GLOWFLOW_IMAGE_CACHE): each image folder (or split of the
    /// downsampled ImageNet's archives) decoded into it, with its images, their shape and the
    /// entry's size; --clear removes entries.
    ImageCache(image_cache::ImageCacheCommand),
}

/// What every command runs with.
pub struct Context {
    /// The device named by `--device`, opened.
    pub device: Device,
    /// Enlargement of written image grids.
    pub zoom: usize,
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<(), GlowError> {
    let ctx = Context {
        device: cli.device.open(launched_local_rank().unwrap_or(0))?,
        zoom: cli.zoom,
    };
    match cli.command {
        Command::New(command) => command.run(&ctx),
        Command::Train(command) => command.run(&ctx),
        Command::Eval(command) => command.run(&ctx),
        Command::TemperatureSweep(command) => command.run(&ctx),
        Command::Encode(command) => command.run(&ctx),
        Command::Decode(command) => command.run(&ctx),
        Command::Manipulate(command) => command.run(&ctx),
        Command::Interpolate(command) => command.run(&ctx),
        Command::Reconstruct(command) => command.run(&ctx),
        Command::Ablate(command) => command.run(&ctx),
        Command::Bench(command) => command.run(&ctx),
        Command::CheckDevice(command) => command.run(&ctx),
        Command::Sample(command) => command.run(&ctx),
        Command::Serve(command) => command.run(&ctx),
        Command::Import(command) => command.run(&ctx),
        Command::Export(command) => command.run(&ctx),
        Command::ImageCache(command) => command.run(&ctx),
    }
}
