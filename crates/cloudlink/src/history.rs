//! A project's change log, like the cloud log Scratch shows project owners:
//! who changed which variable to what, and when.
//!
//! Each project keeps its last `--history` changes (default 100), in memory
//! while it is loaded and in the store beside its variables, so the log
//! survives restarts as the variables do. The admin API reads it. A value
//! over [`MAX_LOGGED_VALUE_BYTES`] is left out of its entry (marked
//! `valueOmitted`): a log of a hundred 100 KB values would otherwise cost
//! each project a hundred times its variables.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One change to a project's variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"user": "player1", "method": "set", "variable": "☁ score", "value": "120", "time": 1_764_000_000_000_u64}))]
pub struct LogEntry {
    /// The username of the client that made it (`admin` for the admin API).
    pub user: String,
    /// `set`, `create`, `rename` or `delete`.
    pub method: String,
    /// The variable's name (before a rename).
    pub variable: String,
    /// The value set (`set` and `create`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub value: Option<Value>,
    /// The value was set but is too long to keep in the log.
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        rename = "valueOmitted"
    )]
    pub value_omitted: bool,
    /// The new name (`rename`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    /// When, in milliseconds since 1970-01-01 UTC.
    pub time: u64,
}

impl LogEntry {
    /// The entry for a change `user` made now: `method` of variable `name`,
    /// with `value` (`set`, `create`) or `new_name` (`rename`). A value too
    /// long to log is left out and marked.
    pub(crate) fn now(
        user: &str,
        method: &str,
        name: &str,
        value: Option<&Value>,
        new_name: Option<&str>,
    ) -> Self {
        let mut entry = Self {
            user: String::new(),
            method: String::new(),
            variable: String::new(),
            value: None,
            value_omitted: false,
            new_name: None,
            time: 0,
        };
        entry.overwrite(user, method, name, value, new_name);
        entry
    }

    /// Makes this entry the one [`LogEntry::now`] would make, reusing its
    /// strings' memory: a full log recycles the entry it drops, so that
    /// logging a set allocates nothing once the log is full.
    fn overwrite(
        &mut self,
        user: &str,
        method: &str,
        name: &str,
        value: Option<&Value>,
        new_name: Option<&str>,
    ) {
        let value = value.filter(|_| matches!(method, "set" | "create"));
        let logged = value.filter(|v| fits(v));
        replace_text(&mut self.user, user);
        replace_text(&mut self.method, method);
        replace_text(&mut self.variable, name);
        match (&mut self.value, logged) {
            (Some(Value::String(old)), Some(Value::String(new))) => replace_text(old, new),
            (old, new) => *old = new.cloned(),
        }
        self.value_omitted = value.is_some() && logged.is_none();
        match (&mut self.new_name, new_name.filter(|_| method == "rename")) {
            (Some(old), Some(new)) => replace_text(old, new),
            (old, new) => *old = new.map(str::to_owned),
        }
        self.time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    }
}

/// Sets `text` to `new`, in the memory it already has when that is enough.
fn replace_text(text: &mut String, new: &str) {
    text.clear();
    text.push_str(new);
}

/// Longest value kept in a log entry, in bytes of its JSON text.
pub const MAX_LOGGED_VALUE_BYTES: usize = 1024;

/// Whether a value is short enough to keep in the log.
pub(crate) fn fits(value: &Value) -> bool {
    match value {
        Value::String(text) => text.len() + 2 <= MAX_LOGGED_VALUE_BYTES,
        Value::Number(_) | Value::Bool(_) | Value::Null => true,
        other => serde_json::to_vec(other).is_ok_and(|v| v.len() <= MAX_LOGGED_VALUE_BYTES),
    }
}

/// Logs a change `user` made now (see [`LogEntry::now`]), keeping only the
/// last `keep` entries of `log`.
pub(crate) fn record(
    log: &mut VecDeque<LogEntry>,
    keep: usize,
    user: &str,
    method: &str,
    name: &str,
    value: Option<&Value>,
    new_name: Option<&str>,
) {
    if keep == 0 {
        return;
    }
    while log.len() > keep {
        log.pop_front();
    }
    let entry = if log.len() == keep {
        log.pop_front().map(|mut oldest| {
            oldest.overwrite(user, method, name, value, new_name);
            oldest
        })
    } else {
        None
    };
    log.push_back(entry.unwrap_or_else(|| LogEntry::now(user, method, name, value, new_name)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_entries_are_kept() {
        let mut log = VecDeque::new();
        for n in 0..5 {
            record(&mut log, 3, "u", "set", "v", Some(&n.into()), None);
        }
        let values: Vec<_> = log.iter().map(|e| e.value.clone()).collect();
        assert_eq!(values, [Some(2.into()), Some(3.into()), Some(4.into())]);
    }

    #[test]
    fn a_recycled_entry_is_the_entry_of_its_own_change() {
        let long = Value::String("x".repeat(MAX_LOGGED_VALUE_BYTES));
        /// User, method, variable, value, new name.
        type Change = (
            &'static str,
            &'static str,
            &'static str,
            Option<Value>,
            Option<&'static str>,
        );
        let changes: [Change; 6] = [
            ("ann", "set", "☁ a", Some("1".into()), None),
            ("bo", "rename", "☁ a", None, Some("☁ b")),
            ("cy", "set", "☁ b", Some(long.clone()), None),
            ("di", "create", "☁ c", Some(2.5.into()), None),
            ("ed", "delete", "☁ c", None, None),
            ("fay", "set", "☁ b", Some("text".into()), Some("ignored")),
        ];
        let mut log = VecDeque::new();
        for (user, method, name, value, new_name) in &changes {
            record(&mut log, 1, user, method, name, value.as_ref(), *new_name);
            let mut fresh = LogEntry::now(user, method, name, value.as_ref(), *new_name);
            fresh.time = log[0].time;
            assert_eq!(log[0], fresh, "{method} by {user}");
        }
        assert_eq!(log.len(), 1);
        assert!(!fits(&long));
    }

    #[test]
    fn a_log_set_shorter_keeps_only_the_newest() {
        let mut log = VecDeque::new();
        for n in 0..5 {
            record(&mut log, 5, "u", "set", "v", Some(&n.into()), None);
        }
        record(&mut log, 2, "u", "set", "v", Some(&5.into()), None);
        let values: Vec<_> = log.iter().map(|e| e.value.clone()).collect();
        assert_eq!(values, [Some(4.into()), Some(5.into())]);
    }
}
