//! What a node publishes: an opaque event, and the shared state it changes.

use bytes::Bytes;

/// One change for every node: the protocol's own encoding, and the writes to
/// the shared state that must happen with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What every node's hub applies, in the protocol's encoding.
    pub payload: Bytes,
    /// Applied to the shared maps in the same atomic step as the append.
    pub state: Vec<StateWrite>,
}

impl Event {
    /// An event with no state writes.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            payload: payload.into(),
            state: Vec::new(),
        }
    }

    /// Adds a state write.
    pub fn with(mut self, write: StateWrite) -> Self {
        self.state.push(write);
        self
    }
}

/// A change to one field of a shared map (a Redis hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateWrite {
    pub(crate) op: &'static str,
    /// The map, named by the protocol (the cluster's prefix is added).
    pub map: String,
    /// The field in it.
    pub field: String,
    pub(crate) value: String,
}

impl StateWrite {
    /// Sets `field` of `map` to `value`.
    pub fn put(map: impl Into<String>, field: impl Into<String>, value: impl Into<String>) -> Self {
        Self::new("put", map, field, value.into())
    }

    /// Sets `field` of `map` to `value` unless it has a value already.
    pub fn add(map: impl Into<String>, field: impl Into<String>, value: impl Into<String>) -> Self {
        Self::new("add", map, field, value.into())
    }

    /// Deletes the whole of `map`; a later write in the same event starts it afresh.
    pub fn clear(map: impl Into<String>) -> Self {
        Self::new("clear", map, "", String::new())
    }

    /// Deletes `field` of `map`.
    pub fn remove(map: impl Into<String>, field: impl Into<String>) -> Self {
        Self::new("remove", map, field, String::new())
    }

    /// Lays the keys of the JSON object `value` over the JSON object in
    /// `field` (or sets it, if there is none): keys `value` leaves out keep
    /// their old values. For flat objects of strings and booleans; numbers
    /// pass through Redis's Lua JSON and may lose digits.
    pub fn merge(
        map: impl Into<String>,
        field: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        Self::new("merge", map, field, value.into())
    }

    fn new(
        op: &'static str,
        map: impl Into<String>,
        field: impl Into<String>,
        value: String,
    ) -> Self {
        Self {
            op,
            map: map.into(),
            field: field.into(),
            value,
        }
    }
}
