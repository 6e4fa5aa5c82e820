//! Field checks for incoming messages, in the shape CloudLink 0.2.0 reports them.
//!
//! Each protocol describes its messages as a list of [`Field`]s: a key, whether
//! it is required, and the JSON types it may hold, named as 0.2.0's schemas
//! name them (`string`, `integer`, `float`, `number`, `boolean`, `dict`,
//! `list`, `set`). Keys not listed are always allowed and `null` is never
//! accepted for a listed key. A failure is an error map
//! `{"field": ["message", ...]}` worded as 0.2.0 words it, because clients may
//! show it to people.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// One key of a message schema.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub name: &'static str,
    pub required: bool,
    /// Allowed types, in 0.2.0's names; a single name is worded without brackets.
    pub types: &'static [&'static str],
    /// Smallest and largest length in characters, for strings.
    pub length: Option<(usize, usize)>,
}

impl Field {
    /// A key that must be present.
    pub const fn required(name: &'static str, types: &'static [&'static str]) -> Self {
        Self {
            name,
            required: true,
            types,
            length: None,
        }
    }

    /// A key that may be absent.
    pub const fn optional(name: &'static str, types: &'static [&'static str]) -> Self {
        Self {
            name,
            required: false,
            types,
            length: None,
        }
    }

    /// The same key with a length limit.
    pub const fn length(mut self, min: usize, max: usize) -> Self {
        self.length = Some((min, max));
        self
    }
}

/// What each failing key did wrong.
pub(crate) type Errors = BTreeMap<&'static str, Vec<String>>;

/// Checks `message` against `fields`; every problem is reported, not only the first.
pub(crate) fn validate(message: &Map<String, Value>, fields: &[Field]) -> Result<(), Errors> {
    let mut errors = Errors::new();
    for field in fields {
        let problem = match message.get(field.name) {
            None if field.required => Some("required field".to_owned()),
            None => None,
            Some(Value::Null) => Some("null value not allowed".to_owned()),
            Some(value) if !field.types.iter().any(|t| is_of(value, t)) => {
                Some(type_message(field.types))
            }
            Some(Value::String(text)) => field.length.and_then(|(min, max)| {
                let chars = text.chars().count();
                if chars < min {
                    Some(format!("min length is {min}"))
                } else if chars > max {
                    Some(format!("max length is {max}"))
                } else {
                    None
                }
            }),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            errors.entry(field.name).or_default().push(problem);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The error map as a JSON value, for E:101's `details`.
pub(crate) fn errors_value(errors: &Errors) -> Value {
    serde_json::to_value(errors).unwrap_or(Value::Null)
}

fn is_of(value: &Value, type_name: &str) -> bool {
    match (type_name, value) {
        ("string", Value::String(_)) => true,
        // As in 0.2.0, a boolean passes for an integer.
        ("integer", Value::Number(n)) => !n.is_f64(),
        ("integer", Value::Bool(_)) => true,
        ("float", Value::Number(n)) => n.is_f64(),
        ("number", Value::Number(_)) => true,
        ("boolean", Value::Bool(_)) => true,
        ("dict", Value::Object(_)) => true,
        ("list" | "set", Value::Array(_)) => true,
        _ => false,
    }
}

fn type_message(types: &[&str]) -> String {
    match types {
        [one] => format!("must be of {one} type"),
        many => {
            let quoted: Vec<String> = many.iter().map(|t| format!("'{t}'")).collect();
            format!("must be of [{}] type", quoted.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIELDS: &[Field] = &[
        Field::required("cmd", &["string"]),
        Field::optional("id", &["string", "dict", "list", "set"]),
        Field::optional("user", &["string"]).length(1, 20),
        Field::optional(
            "listener",
            &["string", "integer", "float", "boolean", "number"],
        ),
    ];

    fn check(message: Value) -> Value {
        match validate(message.as_object().unwrap(), FIELDS) {
            Ok(()) => Value::Null,
            Err(errors) => errors_value(&errors),
        }
    }

    #[test]
    fn problems_are_worded_as_the_original_server_words_them() {
        assert_eq!(check(json!({"cmd": "x", "extra": null})), Value::Null);
        assert_eq!(
            check(json!({"id": 5, "listener": null})),
            json!({
                "cmd": ["required field"],
                "id": ["must be of ['string', 'dict', 'list', 'set'] type"],
                "listener": ["null value not allowed"],
            })
        );
        assert_eq!(
            check(json!({"cmd": 1, "user": ""})),
            json!({"cmd": ["must be of string type"], "user": ["min length is 1"]})
        );
        assert_eq!(
            check(json!({"cmd": "x", "user": "é".repeat(21)})),
            json!({"user": ["max length is 20"]})
        );
        assert_eq!(check(json!({"cmd": "x", "listener": true})), Value::Null);
    }
}
