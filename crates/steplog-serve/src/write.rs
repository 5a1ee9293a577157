//! The write routes, served only with `--allow-write` and behind the guard's token and
//! origin checks (`guard.rs`): rewind a run to a step, fork a new run from a version. Each is
//! one manifest edit in the engine (O(1), no row copied), made with no writer.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value as Json_};

use crate::api::blocking;
use crate::error::{ApiError, ApiResult};
use crate::App;

/// `POST /api/rewind` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rewind {
    run: String,
    step: u64,
    #[serde(default)]
    config: Option<Json_>,
}

/// `POST /api/fork` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fork {
    from: String,
    step: u64,
    name: String,
    #[serde(default)]
    config: Option<Json_>,
}

/// The body, or why it could not be read (too large: a 413), as a JSON error.
fn read(bytes: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    bytes.map_err(|e| ApiError::body(e.status(), format!("the request body: {}", e.body_text())))
}

fn body<T: for<'a> Deserialize<'a>>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not what this route takes: {e}"
        ))
    })
}

/// `POST /api/rewind`: archives the run's head; the new head keeps its rows up to `step`.
pub async fn rewind(
    State(app): State<App>,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Json_>> {
    let r: Rewind = body(&read(bytes)?)?;
    if r.run.parse::<steplog::VersionId>().is_ok() {
        return Err(ApiError::bad_request(format!(
            "rewind takes a run name, not a version id ('{}'): fork the version instead",
            r.run
        )));
    }
    let store = app.store.clone();
    blocking(&app, move || {
        let mut start = store.run(&r.run).resume_from(r.step);
        if let Some(c) = r.config {
            start = start.config(c);
        }
        let s = start.apply()?;
        Ok(Json(json!({
            "run": s.run, "head": s.head.to_string(),
            "archived": s.archived.map(|v| v.to_string()), "step": r.step,
        })))
    })
    .await
}

/// `POST /api/fork`: a new run `name` with the rows of `from` up to `step`.
pub async fn fork(
    State(app): State<App>,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Json_>> {
    let f: Fork = body(&read(bytes)?)?;
    let store = app.store.clone();
    blocking(&app, move || {
        let mut start = store.run(&f.name).fork_from(f.from.as_str(), f.step);
        if let Some(c) = f.config {
            start = start.config(c);
        }
        let s = start.apply()?;
        Ok(Json(json!({
            "run": s.run, "head": s.head.to_string(), "from": f.from, "step": f.step,
        })))
    })
    .await
}
