//! # steplog-serve
//!
//! steplog's local web view: a JSON API over a [`steplog::Store`] and one page compiled into
//! the binary (the runs table, a run's page with its lineage tree and console, M4 charts
//! that re-fetch exact buckets on zoom, live updates). `steplog serve` runs it; an embedder
//! mounts [`router`] in its own server or calls [`serve`].
//!
//! Read-only and on the loopback address by default; see `guard.rs` for what protects it
//! and docs/API.md for every route.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod assets;
mod error;
mod guard;
mod json;
mod params;
mod write;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

pub use error::ApiError;
pub use guard::TOKEN_HEADER;

/// How the server behaves.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Serve the write routes (rewind, fork); they still need the page's token.
    pub allow_write: bool,
    /// Host names (or addresses) the server answers to besides the loopback ones; `*`
    /// answers to any (no protection against DNS rebinding).
    pub allowed_hosts: Vec<String>,
}

/// What every handler shares: the store, the options and the write token.
#[derive(Clone)]
pub(crate) struct App {
    pub store: steplog::Store,
    pub allow_write: bool,
    pub allowed_hosts: Arc<Vec<String>>,
    pub token: Arc<str>,
}

/// A fresh random write token: 128 bits, hex.
fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The server's routes over `store`; `bound` is the address it listens on (answered to as a
/// host name besides the loopback ones).
pub fn router(
    store: steplog::Store,
    opts: &ServeOptions,
    bound: Option<SocketAddr>,
) -> std::io::Result<Router> {
    let mut hosts = opts.allowed_hosts.clone();
    if let Some(addr) = bound {
        if !addr.ip().is_unspecified() {
            hosts.push(match addr.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            });
        }
    }
    let app = App {
        store,
        allow_write: opts.allow_write,
        allowed_hosts: Arc::new(hosts),
        token: new_token()?.into(),
    };
    let mut r = Router::new()
        .route("/", get(assets::index))
        .route("/api/runs", get(api::runs))
        .route("/api/version", get(api::version))
        .route("/api/lineage", get(api::lineage))
        .route("/api/series", get(api::series))
        .route("/api/rows", get(api::rows))
        .route("/api/state", get(api::state));
    if opts.allow_write {
        r = r
            .route("/api/rewind", post(write::rewind))
            .route("/api/fork", post(write::fork));
    }
    Ok(r.fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::guard,
        ))
        .with_state(app))
}

/// Static files, or a 404 naming the path.
async fn fallback(req: Request) -> Response {
    let path = req.uri().path();
    match assets::file(path) {
        Some(r) if req.method() == axum::http::Method::GET => r,
        _ => ApiError::no_route(path).into_response(),
    }
}

/// Serves `store` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: steplog::Store,
    opts: &ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router(store, opts, listener.local_addr().ok())?;
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `bind`, calls `ready` with the bound address, and serves `store` on a runtime of
/// its own until Ctrl-C (SIGINT) or SIGTERM: what `steplog serve` runs.
pub fn serve_blocking(
    bind: SocketAddr,
    store: steplog::Store,
    opts: &ServeOptions,
    ready: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {bind}: {e}")))?;
        ready(listener.local_addr()?);
        serve(listener, store, opts, stopped()).await
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn stopped() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => interrupt.await,
        }
    }
    #[cfg(not(unix))]
    interrupt.await;
}
