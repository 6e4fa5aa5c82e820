//! The data file (`--data world.toml` or `world.json`): servers, their settings
//! and their users, the simplest real deployment.
//!
//! The file is read once at start and loaded into the [`Store`]. When the
//! Discord source is on, the file's entry for a guild (by snowflake) decides that
//! guild's public id, name, default flag, password and `hide_offline`; the
//! members still come from Discord. A file that does not parse stops the start
//! with the file, the line and the reason, never a half-loaded world.
//!
//! A user entry is the same [`UserRecord`] the ingest API reads, so both accept
//! `role_color` and `roleColor` and refuse a colour that is not `#rrggbb`.
//!
//! Servers keep the file's order, TOML and JSON alike (the maps are
//! `IndexMap`s, and the `toml` crate is built with `preserve_order`), so the
//! first server in the file is the default when none is marked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;

use super::records::UserRecord;
use super::store::{ServerSettings, Store};
use crate::protocol::{ServerInfo, ServerList, Snowflake, User};

/// Why the data file could not be used; the message names the file, line and reason.
#[derive(Debug, thiserror::Error)]
pub enum DataFileError {
    /// The file could not be read.
    #[error("cannot read data file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file is not valid TOML/JSON, or a field has the wrong shape.
    #[error("data file {}, line {line}, column {column}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What is wrong there.
        reason: String,
    },
    /// The file parses but describes something impossible.
    #[error("data file {}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What to change.
        reason: String,
    },
}

/// A parsed data file.
///
/// ```
/// use d_back::provider::{DataFile, Store};
/// use d_back::DataProvider;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let file = DataFile::parse_toml(r##"
/// client_id = "506432803173433344"
///
/// [servers.232769614004748288]
/// id = "dworld"
/// name = "D-World"
/// default = true
///
/// [[servers.232769614004748288.users]]
/// uid = "1"
/// username = "vegeta897"
/// status = "online"
/// role_color = "#ff6b6b"
/// "##, "world.toml").unwrap();
/// let store = Store::new();
/// file.load_into(&store);
/// assert_eq!(store.users("232769614004748288").await.unwrap().len(), 1);
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct DataFile {
    /// The servers, keyed by snowflake, in the file's order.
    pub servers: ServerList,
    /// Settings beyond the `server-list` entry.
    pub settings: HashMap<Snowflake, ServerSettings>,
    /// Users listed for each server (servers without a `users` list are absent).
    pub users: HashMap<Snowflake, Vec<User>>,
    /// OAuth2 client id for every server.
    pub client_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default, alias = "clientId")]
    client_id: Option<String>,
    #[serde(default)]
    servers: IndexMap<Snowflake, RawServer>,
    /// The built-in world's layout, also accepted: users by server snowflake, then by uid.
    #[serde(default)]
    users: IndexMap<Snowflake, IndexMap<String, UserRecord>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    id: String,
    name: String,
    #[serde(default)]
    default: bool,
    #[serde(default)]
    passworded: bool,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, alias = "hideOffline")]
    hide_offline: bool,
    #[serde(default)]
    users: Option<Vec<UserRecord>>,
}

impl DataFile {
    /// Reads a file: `.json` files as JSON, everything else as TOML.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, DataFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| DataFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        if json {
            Self::parse_json(&text, path)
        } else {
            Self::parse_toml(&text, path)
        }
    }

    /// Parses TOML text; `path` is only used in error messages.
    pub fn parse_toml(text: &str, path: impl AsRef<Path>) -> Result<Self, DataFileError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let (line, column) = line_and_column(text, offset);
            DataFileError::Parse {
                path: path.as_ref().to_owned(),
                line,
                column,
                reason: e.message().trim().to_owned(),
            }
        })?;
        Self::from_raw(raw, path.as_ref())
    }

    /// Parses JSON text; `path` is only used in error messages.
    pub fn parse_json(text: &str, path: impl AsRef<Path>) -> Result<Self, DataFileError> {
        let raw: RawFile = serde_json::from_str(text).map_err(|e| {
            let reason = e.to_string();
            // serde_json appends " at line L column C"; the message says that already.
            let reason = reason
                .rsplit_once(" at line ")
                .map_or(reason.as_str(), |(r, _)| r)
                .to_owned();
            DataFileError::Parse {
                path: path.as_ref().to_owned(),
                line: e.line(),
                column: e.column(),
                reason,
            }
        })?;
        Self::from_raw(raw, path.as_ref())
    }

    fn from_raw(raw: RawFile, path: &Path) -> Result<Self, DataFileError> {
        let invalid = |reason: String| DataFileError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let mut file = DataFile {
            client_id: raw.client_id,
            ..Self::default()
        };
        let mut by_server = raw.users;
        if let Some(unknown) = by_server.keys().find(|k| !raw.servers.contains_key(*k)) {
            return Err(invalid(format!(
                "users are listed for server {unknown}, which is not under `servers`"
            )));
        }
        for (snowflake, mut server) in raw.servers {
            if let Some(users) = by_server.shift_remove(&snowflake) {
                server
                    .users
                    .get_or_insert_with(Vec::new)
                    .extend(users.into_values());
            }
            if server.id.trim().is_empty() {
                return Err(invalid(format!("server {snowflake} needs a non-empty id")));
            }
            if let Some(other) = file.servers.iter().find(|(_, s)| s.id == server.id) {
                return Err(invalid(format!(
                    "servers {} and {snowflake} both have the id \"{}\"; ids must differ",
                    other.0, server.id
                )));
            }
            if server.default
                && let Some((other, _)) = file.servers.iter().find(|(_, s)| s.default)
            {
                return Err(invalid(format!(
                    "servers {other} and {snowflake} are both marked default; mark one"
                )));
            }
            if let Some(users) = server.users {
                let users = users.into_iter().map(UserRecord::into_user).collect();
                file.users.insert(snowflake.clone(), users);
            }
            file.settings.insert(
                snowflake.clone(),
                ServerSettings {
                    hide_offline: server.hide_offline,
                },
            );
            file.servers.insert(
                snowflake,
                ServerInfo {
                    id: server.id,
                    name: server.name,
                    default: server.default,
                    passworded: server.passworded || server.password.is_some(),
                    password: server.password,
                },
            );
        }
        Ok(file)
    }

    /// Puts the file's servers, settings, users and client id into `store`.
    pub fn load_into(self, store: &Store) {
        store.replace_servers_with_settings(self.servers, self.settings);
        for (server, users) in self.users {
            store
                .replace_users(&server, users)
                .expect("every server with users was just listed");
        }
        if let Some(client_id) = self.client_id {
            store
                .set_client_id(None, client_id)
                .expect("a global client id needs no server");
        }
    }
}

/// 1-based line and column of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Status;

    #[test]
    fn a_colour_that_is_not_rrggbb_names_the_line_and_value() {
        let text = "[servers.1]\nid = 'a'\nname = 'A'\n[[servers.1.users]]\nuid = '7'\nusername = 'n'\nrole_color = 'red'\n";
        let error = DataFile::parse_toml(text, "w.toml")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("data file w.toml, line 7"), "{error}");
        assert!(
            error.contains("`roleColor`") && error.contains("\"red\""),
            "{error}"
        );
        let text = r##"{"servers":{"1":{"id":"a","name":"A","users":[{"uid":"7","username":"n","roleColor":"#12345"}]}}}"##;
        let error = DataFile::parse_json(text, "w.json")
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"#12345\""), "{error}");
    }

    #[test]
    fn toml_errors_name_the_line() {
        let text = "[servers.1]\nid = \"a\"\nname = 5\n";
        let error = DataFile::parse_toml(text, "w.toml")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("data file w.toml, line 3"), "{error}");
        assert!(error.contains("string"), "{error}");
    }

    #[test]
    fn json_errors_name_the_line_and_field() {
        let text = "{\"servers\": {\"1\": {\n \"name\": \"A\"\n}}}";
        let error = DataFile::parse_json(text, "w.json")
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("missing field `id`"), "{error}");
    }

    #[test]
    fn the_built_in_worlds_layout_is_accepted() {
        let text = include_str!("../../examples/world.json");
        let file = DataFile::parse_json(text, "world.json").unwrap();
        assert_eq!(file.servers.len(), 2);
        assert_eq!(file.users["100000000000000001"].len(), 3);
        assert_eq!(file.users["100000000000000001"][0].role_color, "#e91e63");
        let toml =
            DataFile::parse_toml(include_str!("../../examples/world.toml"), "w.toml").unwrap();
        assert!(toml.servers["123456789012345678"].passworded);
        assert!(toml.settings["123456789012345678"].hide_offline);
    }

    #[test]
    fn two_defaults_are_refused() {
        let text = "[servers.1]\nid='a'\nname='A'\ndefault=true\n[servers.2]\nid='b'\nname='B'\ndefault=true\n";
        let error = DataFile::parse_toml(text, "w.toml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("both marked default"), "{error}");
    }

    #[test]
    fn a_password_makes_a_server_passworded() {
        let file = DataFile::parse_json(
            r#"{"servers":{"1":{"id":"a","name":"A","password":"x","users":[{"uid":"7","username":"n"}]}}}"#,
            "w.json",
        )
        .unwrap();
        assert!(file.servers["1"].passworded);
        assert_eq!(file.users["1"][0].status, Status::Offline);
        assert_eq!(file.users["1"][0].role_color, "#ffffff");
    }
}
