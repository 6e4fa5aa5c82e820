//! What every operator API of the workspace shares (d-back's ingest API,
//! CloudLink's admin API): the bearer-token door as axum middleware, the one
//! shape of a refusal, and the OpenAPI pieces that describe both.
//!
//! Each API keeps its own routes, bodies and document; this module is the
//! part that must behave the same everywhere, so a fix to the door or to the
//! error shape reaches every API at once.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::bearer::Token;

/// A refused call: its status and a sentence that says what to change.
/// A `401` also carries `WWW-Authenticate: Bearer`.
///
/// ```
/// use axum::http::StatusCode;
/// use axum::response::IntoResponse;
/// let response = edge::http_api::Failure(StatusCode::UNAUTHORIZED, "no token".into()).into_response();
/// assert_eq!(response.headers()["www-authenticate"], "Bearer");
/// ```
#[derive(Debug)]
pub struct Failure(pub StatusCode, pub String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(ErrorBody { error: self.1 })).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Every refusal: one sentence that says what to change.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error, example = json!({"error": "invalid JSON body: missing field `value` at line 1 column 2"}))]
pub struct ErrorBody {
    /// What went wrong and what to do about it.
    pub error: String,
}

/// The door of one API: its token and what the token is called in refusals.
#[derive(Debug, Clone)]
pub struct Door {
    token: Token,
    name: &'static str,
}

impl Door {
    /// A door that lets in callers presenting `secret`; `name` says which
    /// token it is, e.g. `the admin token`.
    pub fn new(secret: &str, name: &'static str) -> Self {
        Self {
            token: Token::new(secret),
            name,
        }
    }
}

/// Middleware (`axum::middleware::from_fn_with_state`) that answers `401`
/// unless the request carries the door's bearer token.
pub async fn authenticate(State(door): State<Door>, request: Request, next: Next) -> Response {
    match door.token.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            Failure(StatusCode::UNAUTHORIZED, refusal.sentence(door.name)).into_response()
        }
    }
}

/// Adds the `bearer` security scheme that an API's operations refer to;
/// its text says where the token comes from.
#[derive(Debug)]
pub struct BearerScheme(pub &'static str);

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(self.0))
                    .build(),
            ),
        );
    }
}

/// `GET /api/openapi.json`, serving `document` (rendered once: it only
/// changes with the code). Needs no token.
pub fn document_route(document: &utoipa::openapi::OpenApi) -> axum::Router {
    let document = Bytes::from(
        document
            .to_pretty_json()
            .expect("the document is plain JSON"),
    );
    axum::Router::new().route(
        "/api/openapi.json",
        get(move || async move {
            ([(header::CONTENT_TYPE, "application/json")], document).into_response()
        }),
    )
}

/// Describes [`document_route`] in an API's document: list it in `paths(…)`.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API.", content_type = "application/json"))
)]
pub fn openapi_document() {}
