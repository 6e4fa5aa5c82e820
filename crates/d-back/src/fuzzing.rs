//! Entry points for the fuzz targets (`fuzz/`) and the randomised tests
//! (`tests/fuzz.rs`): the parsers a client or a caller reaches with bytes of
//! its choosing, each behind one small function.
//!
//! Hidden from the documentation and not part of the supported API; it exists
//! so that the fuzzers exercise exactly the code the server runs.

use std::path::Path;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt;

use crate::protocol::Incoming;
use crate::provider::{DataFile, Store};

/// Decodes one client frame as a session does; `true` when it is a `connect`.
pub fn decode_client_frame(text: &str) -> bool {
    matches!(Incoming::decode(text), Ok(Incoming::Connect(_)))
}

/// Whether the static-file server would look for `url_path` under `root`
/// (that is, it does not lead out of it).
pub async fn static_path_stays_inside(root: &Path, url_path: &str) -> bool {
    crate::http::static_path_stays_inside(root, url_path).await
}

/// What the static-file server answers for `url_path` when serving `root`:
/// the status and the body.
pub async fn static_response(root: &Path, url_path: &str) -> (StatusCode, Vec<u8>) {
    let Ok(site) = crate::http::StaticSite::directory(root) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, Vec::new());
    };
    let Ok(request) = Request::builder().uri(url_path).body(Body::empty()) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let response = site.respond(request).await;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    (status, body)
}

/// Parses a data file's text as TOML (`toml == true`) or JSON; `Ok` with the
/// number of servers, or the error a person would see.
pub fn parse_data_file(text: &str, toml: bool) -> Result<usize, String> {
    let parsed = if toml {
        DataFile::parse_toml(text, "fuzz.toml")
    } else {
        DataFile::parse_json(text, "fuzz.json")
    };
    parsed
        .map(|file| file.servers.len())
        .map_err(|e| e.to_string())
}

/// Sends one request with `body` to the ingest API (token `fuzz`) of `store`
/// and returns the status it answers.
pub async fn ingest_request(store: &Store, method: &str, path: &str, body: Vec<u8>) -> StatusCode {
    let router = crate::http::ingest::router(store.clone(), "fuzz");
    let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::POST);
    let Ok(request) = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", "Bearer fuzz")
        .header("content-type", "application/json")
        .body(Body::from(body))
    else {
        return StatusCode::BAD_REQUEST;
    };
    match router.oneshot(request).await {
        Ok(response) => response.status(),
        Err(never) => match never {},
    }
}
