//! `glowflow serve`: a latent-space explorer in the browser over one trained model (or two side
//! by side). An HTTP server (axum on tokio) answers a JSON API ([`api`]) that the bundled page
//! ([`PAGE`]) uses and scripts can use too: samples at any temperature, encodings with their
//! bits/dim, reconstructions keeping the top levels, interpolations and attribute manipulations.
//!
//! Requests are stateless: latents travel to the page and back ([`codec`]), so tabs and users
//! share nothing but the loaded models ([`state`]). Every computation is a call into
//! [`crate::latent`] and [`crate::model`] (the functions the command line uses), run on tokio's
//! blocking pool, at most [`state::Limits::concurrent_jobs`] at a time, each request bounded by
//! [`state::Limits::request_timeout`], so a slow decode never blocks the server.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;

use crate::error::{GlowError, Result};

pub mod api;
pub mod codec;
pub mod state;

pub use state::{Explorer, Limits, ServeOptions};

/// The explorer's page: plain HTML and JavaScript, bundled into the binary.
pub const PAGE: &str = include_str!("page.html");

/// The server's routes (the page and the API) over `explorer`, with its body size limit.
pub fn router(explorer: Arc<Explorer>) -> Router {
    api::routes(explorer)
}

/// Serves `explorer` on `listener` until `shutdown` completes (then finishes the requests in
/// flight).
pub async fn serve(
    listener: tokio::net::TcpListener,
    explorer: Arc<Explorer>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(explorer))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves `explorer` on `host:port` (port 0 picks a free one) until Ctrl-C, on a runtime of its
/// own; `listening` is told the address once the server accepts connections.
pub fn run(
    explorer: Explorer,
    host: &str,
    port: u16,
    listening: impl FnOnce(SocketAddr),
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| GlowError::Config(format!("cannot start the server's runtime: {e}")))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((host, port))
            .await
            .map_err(|e| {
                GlowError::Config(format!(
                    "cannot listen on {host}:{port} ({e}); choose another --port (0 picks a \
                     free one) or --host"
                ))
            })?;
        let address = listener.local_addr().map_err(|e| {
            GlowError::Config(format!("cannot read the address of {host}:{port}: {e}"))
        })?;
        listening(address);
        let ctrl_c = async {
            // An error here means no Ctrl-C handler could be installed: serve until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        serve(listener, Arc::new(explorer), ctrl_c)
            .await
            .map_err(|e| GlowError::Config(format!("the server stopped: {e}")))
    })
}
