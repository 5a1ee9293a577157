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
    /// Engine calls in flight at once, at most [`ENGINE_CALLS`]; the rest wait their turn.
    pub engine: Arc<tokio::sync::Semaphore>,
}

/// Engine calls served at once (each on a blocking thread); more requests wait.
const ENGINE_CALLS: usize = 8;

/// A fresh random write token: 128 bits, hex.
fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The server's routes over `store`. Refused: `*` among the allowed hosts together with
/// writes.
pub fn router(store: steplog::Store, opts: &ServeOptions) -> std::io::Result<Router> {
    if opts.allow_write && opts.allowed_hosts.iter().any(|h| h == "*") {
        // Any name would let a DNS-rebinding page read the page's token and write.
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "--allow-host '*' cannot be combined with --allow-write: name the hosts to allow",
        ));
    }
    let app = App {
        store,
        allow_write: opts.allow_write,
        allowed_hosts: Arc::new(opts.allowed_hosts.clone()),
        token: new_token()?.into(),
        engine: Arc::new(tokio::sync::Semaphore::new(ENGINE_CALLS)),
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
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::guard,
        ))
        .with_state(app))
}

/// Static files (GET and HEAD), or a 404 naming the path.
async fn fallback(req: Request) -> Response {
    let path = req.uri().path();
    let read = req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD;
    match assets::file(path) {
        Some(r) if read => r,
        _ => ApiError::no_route(path).into_response(),
    }
}

/// A route asked with a method it does not take (405, as JSON like every error).
async fn method_not_allowed(req: Request) -> Response {
    ApiError::method_not_allowed(req.method().as_str(), req.uri().path()).into_response()
}

/// Serves `store` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: steplog::Store,
    opts: &ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router(store, opts)?;
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
