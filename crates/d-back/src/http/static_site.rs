//! Static files: the built-in page, or an operator's directory.
//!
//! Files from a directory are served by `tower-http`'s `ServeDir` (ranges,
//! ETags, content types, and its own refusal of `..`). In front of it we add
//! the one guarantee it does not give: a path that resolves, through symlinks,
//! to anything outside the directory is answered 404, as if it did not exist.
//! The built-in page is compiled into the binary and looked up by exact name,
//! so no request can reach the file system through it.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::server::StartError;

/// The built-in page's files: (path, content type, body).
const BUILT_IN: &[(&str, &str, &[u8])] = &[
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../assets/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/app.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/style.css"),
    ),
    (
        "/favicon.svg",
        "image/svg+xml",
        include_bytes!("../../assets/favicon.svg"),
    ),
];

/// Where non-API paths are served from.
pub(crate) enum StaticSite {
    /// The page compiled into the binary.
    BuiltIn,
    /// An operator's directory, canonicalised at start.
    Directory {
        /// Canonical root; every served file must resolve inside it.
        root: PathBuf,
        /// The file server for that root.
        files: ServeDir,
    },
}

impl StaticSite {
    /// Checks that `dir` is an existing directory; a typo must stop the start.
    pub fn directory(dir: &Path) -> Result<Self, StartError> {
        let error = |reason: &str| StartError::StaticDir {
            path: dir.to_owned(),
            reason: reason.to_owned(),
        };
        let root = dir
            .canonicalize()
            .map_err(|e| error(&format!("cannot be opened: {e}")))?;
        if !root.is_dir() {
            return Err(error("is not a directory"));
        }
        let files = ServeDir::new(&root).append_index_html_on_directories(true);
        Ok(StaticSite::Directory { root, files })
    }

    /// Answers a GET or HEAD for a static path.
    pub async fn respond(&self, request: Request) -> Response {
        match self {
            StaticSite::BuiltIn => built_in(request.uri().path()),
            StaticSite::Directory { root, files } => {
                if !stays_inside(root, request.uri().path()).await {
                    return not_found();
                }
                match files.clone().oneshot(request).await {
                    Ok(response) => response.map(Body::new),
                    Err(never) => match never {},
                }
            }
        }
    }
}

fn built_in(path: &str) -> Response {
    let path = if path == "/" { "/index.html" } else { path };
    match BUILT_IN.iter().find(|(name, _, _)| *name == path) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => not_found(),
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// Whether a URL path names something inside `root`, after decoding and resolving symlinks.
///
/// A path that does not exist passes (the file server answers 404 for it);
/// one with `..`, a backslash or a NUL never does.
pub(crate) async fn stays_inside(root: &Path, url_path: &str) -> bool {
    let Ok(decoded) = percent_decode_str(url_path).decode_utf8() else {
        return false;
    };
    let mut candidate = root.to_path_buf();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => continue,
            ".." => return false,
            s if s.contains(['\\', '\0']) => return false,
            s => candidate.push(s),
        }
    }
    match tokio::fs::canonicalize(&candidate).await {
        Ok(real) => real.starts_with(root),
        Err(_) => true,
    }
}
