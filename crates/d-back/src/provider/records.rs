//! A user as a source writes it down: the shape the data file and the ingest
//! API both parse, and the checks on it.
//!
//! One type, so that a user entry means the same in `world.toml` and in a
//! `PUT /api/ingest/servers/{server}/users` body: same fields, same defaults,
//! same spellings (the data file's `role_color` and the wire's `roleColor` are
//! both accepted), and the same answer to a colour the browser could not draw.
//! The ingest API's OpenAPI document is generated from this type too, so the
//! description cannot drift from what is parsed.
//!
//! Nothing here touches the store or a socket: it only turns text into a
//! [`User`] or says which field is wrong.

use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use super::store::DEFAULT_ROLE_COLOR;
use crate::protocol::{Status, User};

/// One user of a server, as listed in a data file or sent to the ingest API.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    as = User,
    example = json!({"uid": "123456789012345001", "username": "vegeta897", "status": "online", "roleColor": "#ff6b6b"})
)]
pub(crate) struct UserRecord {
    /// Discord user id.
    pub uid: String,
    /// The name shown under the actor.
    pub username: String,
    /// Presence; `offline` when left out.
    #[serde(default = "offline")]
    #[schema(default = "offline")]
    pub status: Status,
    /// Colour of the user's highest coloured role, `#rrggbb`; `#ffffff` when
    /// left out. Also accepted as `role_color`, the data file's spelling.
    #[serde(
        default,
        rename = "roleColor",
        alias = "role_color",
        deserialize_with = "optional_role_color"
    )]
    #[schema(pattern = "^#[0-9a-fA-F]{6}$", default = "#ffffff", value_type = Option<String>)]
    pub role_color: Option<String>,
}

impl UserRecord {
    /// The user as browsers are sent it, with the default colour filled in.
    pub(crate) fn into_user(self) -> User {
        let color = self
            .role_color
            .unwrap_or_else(|| DEFAULT_ROLE_COLOR.to_owned());
        User::new(self.uid, self.username, self.status, color)
    }
}

fn offline() -> Status {
    Status::Offline
}

/// Whether `value` is a colour the d-zone client can draw: `#` and six hex
/// digits. Anything else would reach every browser and be drawn wrong (or not
/// at all), so both the data file and the ingest API refuse it up front, with
/// this sentence, which names the field and the value.
pub(crate) fn check_role_color(value: &str) -> Result<(), String> {
    let hex = value.strip_prefix('#').unwrap_or("");
    if hex.len() == 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!(
            "field `roleColor` (or `role_color`) must be a colour written #rrggbb, like \"#ff6b6b\", not {value:?}"
        ))
    }
}

/// Deserializes an optional role colour and checks it with [`check_role_color`],
/// so the parser's error (with its line and column) carries the sentence.
pub(crate) fn optional_role_color<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(deserializer)?;
    if let Some(color) = &value {
        check_role_color(color).map_err(serde::de::Error::custom)?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hash_and_six_hex_digits_are_colours() {
        for good in ["#ff6b6b", "#FFFFFF", "#000000", "#a1B2c3"] {
            assert!(check_role_color(good).is_ok(), "{good}");
        }
        for bad in [
            "red", "ff6b6b", "#fff", "#ff6b6g", "#ff6b6b0", "", "#", "# ff6b6",
        ] {
            let error = check_role_color(bad).unwrap_err();
            assert!(error.contains("`roleColor`"), "{error}");
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn both_spellings_are_read() {
        for field in ["roleColor", "role_color"] {
            let text = format!(r##"{{"uid":"1","username":"a","{field}":"#123456"}}"##);
            let user: UserRecord = serde_json::from_str(&text).unwrap();
            assert_eq!(user.role_color.as_deref(), Some("#123456"));
        }
        let user: UserRecord = serde_json::from_str(r#"{"uid":"1","username":"a"}"#).unwrap();
        let user = user.into_user();
        assert_eq!(
            (user.status, user.role_color.as_str()),
            (Status::Offline, "#ffffff")
        );
    }
}
