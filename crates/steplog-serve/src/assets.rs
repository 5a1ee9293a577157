//! The page: a handful of files compiled into the binary (no build step, nothing fetched at
//! run time). `index.html` gets the server's write token and mode filled in when served;
//! the vendored chart library, uPlot, keeps its licence beside it (`/vendor/uplot/LICENSE`).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::App;

const INDEX: &str = include_str!("../assets/index.html");

/// The static files, by path: (path, content type, bytes).
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "/app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
    (
        "/vendor/uplot/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "/vendor/uplot/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/vendor/uplot/uPlot.min.css"),
    ),
    (
        "/vendor/uplot/LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/vendor/uplot/LICENSE"),
    ),
];

/// `GET /`: the page, with this server's token and mode in its `<meta>` tags.
pub async fn index(State(app): State<App>) -> Html<String> {
    Html(
        INDEX
            .replace("{{TOKEN}}", &app.token)
            .replace("{{WRITE}}", if app.allow_write { "1" } else { "0" }),
    )
}

/// A static file by its exact path, or `None`: no path reaches the file system.
pub fn file(path: &str) -> Option<Response> {
    FILES
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, ty, bytes)| {
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, *ty),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                *bytes,
            )
                .into_response()
        })
}
