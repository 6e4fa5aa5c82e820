//! The ingest API: how a bot written in any language feeds d-back over HTTP.
//!
//! Mounted under `/api/ingest/` only when an ingest token is configured; every
//! call must carry `Authorization: Bearer <token>` (compared in constant time)
//! or gets `401`. Each endpoint writes into the [`Store`], which tells the
//! watching browsers. A body that is not the expected JSON gets `400` with a
//! sentence naming the field; a server that is not listed gets `404`. The
//! OpenAPI document describing all of this is served at `/api/openapi.json`.
//!
//! This module never logs the token or request bodies.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::protocol::{ChatMessage, PresenceUpdate, ServerInfo, Snowflake, Status, User};
use crate::provider::{DEFAULT_ROLE_COLOR, ServerSettings, Store, UnknownServer};

/// Largest body accepted (a whole roster of a big guild fits).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The OpenAPI 3.1 description of this API.
const OPENAPI: &str = include_str!("../../assets/ingest-openapi.json");

/// What the ingest handlers share.
#[derive(Clone)]
struct Ingest {
    store: Store,
    /// The bearer token callers must present.
    token: Arc<[u8]>,
    /// Keyed hashing, so that comparing tokens reveals neither content nor length.
    hasher: RandomState,
    /// The token's keyed hash.
    token_digest: u64,
}

impl Ingest {
    fn digest(&self, bytes: &[u8]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(bytes);
        hasher.finish()
    }

    /// Constant-time check: the keyed digests are compared without branching, and
    /// the bytes (whose length may differ) only once the digests already match.
    fn accepts(&self, presented: &[u8]) -> bool {
        bool::from(self.digest(presented).ct_eq(&self.token_digest))
            && bool::from(presented.ct_eq(&self.token))
    }
}

/// The ingest routes, with their own state, ready to merge into the main router.
pub(crate) fn router(store: Store, token: &str) -> Router {
    let hasher = RandomState::new();
    let mut state = Ingest {
        store,
        token: Arc::from(token.as_bytes()),
        hasher,
        token_digest: 0,
    };
    state.token_digest = state.digest(token.as_bytes());
    let protected = Router::new()
        .route("/api/ingest/servers", put(replace_servers))
        .route("/api/ingest/servers/{server}/users", put(replace_users))
        .route("/api/ingest/servers/{server}/presence", post(presence))
        .route("/api/ingest/servers/{server}/messages", post(message))
        .route("/api/ingest/client-id", put(client_id))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .merge(protected)
}

/// A failed call: status and a sentence for the caller.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<UnknownServer> for Failure {
    fn from(error: UnknownServer) -> Self {
        Failure(
            StatusCode::NOT_FOUND,
            format!("{error}; list it first with PUT /api/ingest/servers"),
        )
    }
}

async fn authenticate(State(ingest): State<Ingest>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if ingest.accepts(token.as_bytes()) => next.run(request).await,
        Some(_) => {
            Failure(StatusCode::UNAUTHORIZED, "the ingest token is wrong".into()).into_response()
        }
        None => Failure(
            StatusCode::UNAUTHORIZED,
            "send the ingest token as 'Authorization: Bearer <token>'".into(),
        )
        .into_response(),
    }
}

/// Decodes a JSON body, or says what is wrong with it (serde names the field).
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, Failure> {
    serde_json::from_slice(bytes)
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

fn bad(message: String) -> Failure {
    Failure(StatusCode::BAD_REQUEST, message)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ServerEntry {
    id: String,
    name: String,
    #[serde(default)]
    default: bool,
    #[serde(default)]
    passworded: bool,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    hide_offline: bool,
}

/// `PUT /api/ingest/servers`: the whole server list, keyed by snowflake.
async fn replace_servers(State(ingest): State<Ingest>, bytes: Bytes) -> Result<Response, Failure> {
    let entries: IndexMap<Snowflake, ServerEntry> = body(&bytes)?;
    let mut servers = IndexMap::new();
    let mut settings = HashMap::new();
    for (snowflake, entry) in entries {
        if entry.id.trim().is_empty() {
            return Err(bad(format!(
                "server {snowflake}: field `id` must not be empty"
            )));
        }
        settings.insert(
            snowflake.clone(),
            ServerSettings {
                hide_offline: entry.hide_offline,
            },
        );
        let info = ServerInfo {
            id: entry.id,
            name: entry.name,
            default: entry.default,
            passworded: entry.passworded || entry.password.is_some(),
            password: entry.password,
        };
        servers.insert(snowflake, info);
    }
    let count = servers.len();
    ingest
        .store
        .replace_servers_with_settings(servers, settings);
    Ok(Json(json!({ "servers": count })).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UserEntry {
    uid: String,
    username: String,
    #[serde(default = "offline")]
    status: Status,
    #[serde(default)]
    role_color: Option<String>,
}

fn offline() -> Status {
    Status::Offline
}

/// `PUT /api/ingest/servers/{server}/users`: every user of one server.
async fn replace_users(
    State(ingest): State<Ingest>,
    Path(server): Path<String>,
    bytes: Bytes,
) -> Result<Response, Failure> {
    let entries: Vec<UserEntry> = body(&bytes)?;
    let count = entries.len();
    let users = entries.into_iter().map(|u| {
        let color = u
            .role_color
            .unwrap_or_else(|| DEFAULT_ROLE_COLOR.to_owned());
        User::new(u.uid, u.username, u.status, color)
    });
    ingest.store.replace_users(&server, users)?;
    Ok(Json(json!({ "users": count })).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PresenceEntry {
    uid: String,
    #[serde(default)]
    status: Option<Status>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    role_color: Option<String>,
    #[serde(default)]
    delete: bool,
}

/// `POST /api/ingest/servers/{server}/presence`: one user's change.
async fn presence(
    State(ingest): State<Ingest>,
    Path(server): Path<String>,
    bytes: Bytes,
) -> Result<Response, Failure> {
    let entry: PresenceEntry = body(&bytes)?;
    let update = if entry.delete {
        PresenceUpdate::removed(entry.uid)
    } else {
        let status = entry
            .status
            .ok_or_else(|| bad("missing field `status` (or send \"delete\": true)".into()))?;
        PresenceUpdate {
            uid: entry.uid,
            status,
            username: entry.username,
            role_color: entry.role_color,
            delete: false,
        }
    };
    let delivered = ingest.store.presence(&server, update)?;
    Ok(Json(json!({ "delivered": delivered })).into_response())
}

/// `POST /api/ingest/servers/{server}/messages`: a chat line.
async fn message(
    State(ingest): State<Ingest>,
    Path(server): Path<String>,
    bytes: Bytes,
) -> Result<Response, Failure> {
    let line: ChatMessage = body(&bytes)?;
    let delivered = ingest.store.message(&server, line)?;
    Ok(Json(json!({ "delivered": delivered })).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClientIdEntry {
    client_id: String,
    #[serde(default)]
    server: Option<String>,
}

/// `PUT /api/ingest/client-id`: the OAuth2 application id, for one server or all.
async fn client_id(State(ingest): State<Ingest>, bytes: Bytes) -> Result<Response, Failure> {
    let entry: ClientIdEntry = body(&bytes)?;
    if entry.client_id.trim().is_empty() {
        return Err(bad("field `clientId` must not be empty".into()));
    }
    ingest
        .store
        .set_client_id(entry.server.as_deref(), entry.client_id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
