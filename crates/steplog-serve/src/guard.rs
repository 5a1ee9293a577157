//! What every request passes before a route sees it, and what every response carries.
//!
//! - **Host**: the `Host` header must be an address (`127.0.0.1`, `[::1]`, `192.168.1.5`),
//!   `localhost`, or a name given with `--allow-host`: a page of another site that rebinds
//!   its DNS name to 127.0.0.1 sends its own name and is refused (DNS rebinding).
//! - **Other sites**: a request the browser marks as made by another site's page
//!   (`Sec-Fetch-Site: cross-site` or `same-site`) is refused before any work is done.
//! - **Writes** (any method but GET and HEAD): refused unless the server was started with
//!   `--allow-write`; then they need the server's random token in `X-Steplog-Token` (the
//!   page reads it from itself; another site cannot, and cannot send the header without a
//!   CORS preflight, which is never granted), a JSON body, and, when the browser sends an
//!   `Origin`, the server's own.
//! - **Responses**: `nosniff`, no framing (no click-jacking of the write buttons), a content
//!   security policy that lets the page load only its own scripts, no caching of the API.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::App;

/// The header that carries the write token.
pub const TOKEN_HEADER: &str = "x-steplog-token";

/// Whether `host` (a `Host` header: a name or address, maybe with a port) is one the server
/// answers to.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => rest.split(']').next().map(|a| format!("[{a}]")),
        None => host.split(':').next().map(str::to_owned),
    };
    let Some(name) = name.map(|n| n.to_ascii_lowercase()) else {
        return false;
    };
    if allowed.iter().any(|a| a == "*") {
        return true;
    }
    // An address is never a DNS name an attacker could rebind: a browser that sends one
    // was pointed at this machine by address.
    let literal = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(&name)
        .parse::<std::net::IpAddr>()
        .is_ok();
    literal || name == "localhost" || allowed.iter().any(|a| a.eq_ignore_ascii_case(&name))
}

/// The middleware: checks the request, then sets the response's headers.
pub async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    if let Err(e) = check(&app, &req) {
        return harden(e.into_response(), true);
    }
    let api = req.uri().path().starts_with("/api/");
    harden(next.run(req).await, api)
}

fn check(app: &App, req: &Request) -> Result<(), ApiError> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !host_allowed(host, &app.allowed_hosts) {
        return Err(ApiError::forbidden(format!(
            "host '{host}' is not this server's: start it with --allow-host NAME to be reached \
             under another name"
        )));
    }
    // A page of another site may make a browser send requests here (an image, a form), even
    // if it cannot read the answers: the browser says so, and the API does no work for it.
    let fetch_site = req
        .headers()
        .get("sec-fetch-site")
        .and_then(|h| h.to_str().ok());
    if matches!(fetch_site, Some("cross-site" | "same-site")) {
        return Err(ApiError::forbidden(
            "a request made by another site's page is refused (Sec-Fetch-Site)",
        ));
    }
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return Ok(());
    }
    if !app.allow_write {
        return Err(ApiError::forbidden(
            "this server is read-only: start it with --allow-write to rewind and fork from the page",
        ));
    }
    let token = req.headers().get(TOKEN_HEADER).map(HeaderValue::as_bytes);
    if token != Some(app.token.as_bytes()) {
        return Err(ApiError::forbidden(format!(
            "a write needs this server's token in the {TOKEN_HEADER} header (the page sends it)"
        )));
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !ok {
            return Err(ApiError::forbidden(format!(
                "a write from origin {origin:?} is refused: only this server's own page writes"
            )));
        }
    }
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| c.split(';').next() == Some("application/json"));
    if !json {
        return Err(ApiError::unsupported_media(
            "a write's body must be JSON (Content-Type: application/json)",
        ));
    }
    Ok(())
}

fn harden(mut r: Response, api: bool) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
             form-action 'none'",
        ),
    );
    if api {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_localhost_and_allowed_hosts_pass_other_names_do_not() {
        let none: Vec<String> = vec![];
        for ok in [
            "localhost:6007",
            "127.0.0.1:6007",
            "[::1]:6007",
            "LOCALHOST",
            "127.0.0.1",
            "192.168.1.5:6007",
            "[fe80::1]:6007",
        ] {
            assert!(host_allowed(ok, &none), "{ok}");
        }
        for bad in [
            "evil.example:6007",
            "",
            "127.0.0.1.evil.example",
            "localhost.evil",
            "[evil]:1",
        ] {
            assert!(!host_allowed(bad, &none), "{bad}");
        }
        let some = vec!["box.lan".to_owned()];
        assert!(host_allowed("box.lan:6007", &some));
        assert!(host_allowed("anything", &["*".to_owned()]));
    }
}
