//! `glowflow serve`: the browser explorer over one model, or two side by side.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use glowflow::serve::{run, Explorer, Limits, ServeOptions};
use glowflow::GlowError;

use super::Context;

/// `glowflow serve` (its help is the doc comment of `Command::Serve`).
#[derive(Args)]
pub struct Serve {
    /// Run or model directory to explore.
    #[arg(long)]
    model: PathBuf,
    /// A second run or model directory, shown beside the first.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Address to listen on; the default serves this machine only (the server has no
    /// authentication: anyone who can reach the address can use it).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Dataset location (default: the one in RUN/train.json, else the preset's).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Preset whose dataset format to use when a model directory has no train.json.
    #[arg(long, default_value = "fashion-mnist")]
    preset: String,
    /// CelebA attribute file (list_attr_celeba.txt): its attributes get the sliders.
    #[arg(long)]
    attributes: Option<PathBuf>,
    /// Training images an attribute direction is computed from (0 = all), as for `manipulate`.
    #[arg(long, default_value_t = 10_000)]
    direction_images: usize,
    /// Computations running at once (further requests wait their turn).
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Longest a request may wait and compute, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

impl Serve {
    /// Runs the command.
    pub fn run(self, ctx: &Context) -> Result<(), GlowError> {
        let Serve {
            model,
            compare,
            host,
            port,
            data,
            preset,
            attributes,
            direction_images,
            jobs,
            timeout,
        } = self;
        let options = ServeOptions {
            models: std::iter::once(model).chain(compare).collect(),
            data,
            preset,
            attributes_file: attributes,
            direction_images,
            limits: Limits {
                concurrent_jobs: jobs,
                request_timeout: Duration::from_secs(timeout),
                ..Limits::default()
            },
        };
        let explorer = Explorer::load(&options, &ctx.device, &mut |w| eprintln!("{w}"))?;
        run(explorer, &host, port, |address| {
            if !address.ip().is_loopback() {
                eprintln!(
                    "warning: listening on {address}, reachable from other machines; the \
                     server has no authentication"
                );
            }
            println!("glowflow explorer on http://{address}/ (Ctrl-C stops it)");
        })
    }
}
