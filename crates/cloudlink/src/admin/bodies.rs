//! What admin calls send and get back, as Rust types that both parse the
//! requests and describe them in the OpenAPI document (`ToSchema`), so the
//! two cannot drift apart.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::history::LogEntry;

/// `GET /api/rooms`: every project in memory.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RoomList {
    pub rooms: Vec<RoomSummary>,
}

/// One project in memory.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RoomSummary {
    /// The project id.
    #[schema(example = "1000")]
    pub id: String,
    /// Scratch clients in it now.
    pub clients: usize,
    /// Cloud variables it holds.
    pub variables: usize,
    /// Bytes of the variables' names and values (as JSON text).
    pub bytes: usize,
}

/// `GET /api/rooms/{id}`: one project's variables, in the order they were made.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Room {
    #[schema(example = "1000")]
    pub id: String,
    /// Scratch clients in it now (0 for a project only in the store).
    pub clients: usize,
    /// Name → value, each exactly as it was set.
    #[schema(value_type = Object, example = json!({"☁ score": "120", "☁ level": 3}))]
    pub variables: IndexMap<String, Value>,
}

/// `PUT /api/rooms/{id}/variables/{name}`: the new value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"value": "120"}))]
pub(crate) struct VariableBody {
    /// Any JSON value the server's `--values` rule and `--max-value-bytes` allow.
    #[schema(value_type = Object)]
    pub value: Value,
}

/// What a change did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Changed {
    /// `false` when the variable already had that value (nothing was sent).
    pub changed: bool,
}

/// `GET /api/rooms/{id}/log`: which page of changes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogPage {
    /// How many changes, at most 1000.
    #[serde(default = "default_limit")]
    #[param(example = 100, default = 100)]
    pub limit: usize,
    /// How many of the newest to skip.
    #[serde(default)]
    #[param(example = 0, default = 0)]
    pub offset: usize,
}

fn default_limit() -> usize {
    100
}

/// A page of a project's change log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Log {
    pub changes: Vec<LogEntry>,
}
