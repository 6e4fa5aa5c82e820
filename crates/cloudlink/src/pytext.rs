//! How CloudLink 0.2.0 prints JSON values inside its texts (Python's `str`):
//! `['a', 'b']`, `{'user': ['required field']}`, `True`, `None`. Clients show
//! these texts to people, so the familiar spelling is kept.

use serde_json::Value;

/// Python's `str()` of a decoded JSON value: a top-level string is bare.
pub(crate) fn str(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => repr(other),
    }
}

/// Python's `repr()` of a decoded JSON value.
pub(crate) fn repr(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(n) => n.to_string(),
        Value::String(text) => quote(text),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(repr).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let pairs: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", quote(k), repr(v)))
                .collect();
            format!("{{{}}}", pairs.join(", "))
        }
    }
}

fn quote(text: &str) -> String {
    if text.contains('\'') && !text.contains('"') {
        format!("\"{text}\"")
    } else {
        format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn values_print_as_python_prints_them() {
        assert_eq!(super::str(&json!("bob")), "bob");
        assert_eq!(super::str(&json!(["a", "b"])), "['a', 'b']");
        assert_eq!(
            super::repr(&json!({"user": ["required field"], "x": [true, null, 1.5]})),
            "{'user': ['required field'], 'x': [True, None, 1.5]}"
        );
    }
}
