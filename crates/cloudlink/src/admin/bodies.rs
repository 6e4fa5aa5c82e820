//! What admin calls send and get back, as Rust types that both parse the
//! requests and describe them in the OpenAPI document (`ToSchema`), so the
//! two cannot drift apart.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

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
