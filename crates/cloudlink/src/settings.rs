//! The protocol settings an operator can change, with CloudLink 0.2.0's defaults.

use std::collections::HashSet;
use std::time::Duration;

use edge::rate::MessageRate;
use edge::writer::WriterSettings;

/// The version string sent in `server_version`: the TurboWarp extension needs
/// it to contain `0.2.` to speak the current protocol.
pub const SERVER_VERSION: &str = "0.2.0";

/// How the server behaves; see each field and the matching builder method.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Sent as `motd` on a client's first handshake, when set.
    pub motd: Option<String>,
    /// Most clients at once, of any protocol; `None` for no limit.
    pub max_clients: Option<usize>,
    /// Commands (CL4) and methods (Scratch) answered with E:110 or ignored.
    pub disabled_commands: HashSet<String>,
    /// Refuse a username query that matches several clients (E:104).
    pub warn_if_multiple_username_matches: bool,
    /// Send `client_ip` on handshake.
    pub send_client_ip: bool,
    /// Largest message a client may send; larger closes with 1009.
    pub max_frame_bytes: usize,
    /// Frames queued for one client before it counts as too slow (1013).
    pub outbox_frames: usize,
    /// Pings and how long a blocked write is tolerated.
    pub writer: WriterSettings,
    /// Frames per second one client may send; `None` for no limit.
    pub message_rate: Option<MessageRate>,
    /// Rooms one CL4 client may be in at once (`link` beyond it: E:108).
    pub max_rooms_per_client: usize,
    /// Cloud variables one Scratch project may hold (more: close 4000).
    pub max_variables_per_room: usize,
    /// Rooms held in memory at once; a Scratch handshake that would open one
    /// more is closed with 4003.
    pub max_rooms: usize,
    /// Scratch clients in one project; one more is closed with 4003.
    pub max_room_clients: usize,
    /// Longest Scratch value, in bytes of its text; longer ones are dropped.
    pub max_value_bytes: usize,
    /// Which Scratch values are accepted; others are dropped.
    pub values: ValueRule,
    /// Changes kept in each project's log.
    pub history: usize,
    /// Scratch sets one connection may have broadcast a second; `None`: no limit.
    pub max_sets_per_second: Option<u32>,
    /// How often changed variables are written to the store, if there is one.
    pub flush_interval: Duration,
    /// How long an emptied room stays in memory when there is a store.
    pub empty_room_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            motd: None,
            max_clients: None,
            disabled_commands: HashSet::new(),
            warn_if_multiple_username_matches: true,
            send_client_ip: true,
            max_frame_bytes: 1024 * 1024,
            outbox_frames: 1024,
            writer: WriterSettings {
                ping_interval: Duration::from_secs(30),
                stall_timeout: Duration::from_secs(10),
                batch: None,
            },
            message_rate: MessageRate::new(60, 120),
            max_rooms_per_client: 1000,
            max_variables_per_room: 128,
            max_rooms: 16_384,
            max_room_clients: 128,
            max_value_bytes: 100_000,
            values: ValueRule::Any,
            max_sets_per_second: None,
            history: 100,
            flush_interval: Duration::from_secs(1),
            empty_room_ttl: Duration::from_secs(3600),
        }
    }
}

/// Which values a Scratch `set` or `create` may carry; a value the rule
/// refuses is dropped (not applied, not broadcast) and counted, and the
/// client stays connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValueRule {
    /// Any JSON value, as CloudLink 0.2.0 (strings, numbers, booleans, lists, objects).
    #[default]
    Any,
    /// Strings and numbers.
    Text,
    /// Scratch's and TurboWarp's rule: a finite number, or a string of
    /// decimal digits (`-?digits(.digits)?`).
    Numbers,
}

impl ValueRule {
    /// Whether `value` passes the rule.
    ///
    /// ```
    /// use cloudlink::ValueRule;
    /// use serde_json::json;
    ///
    /// assert!(ValueRule::Numbers.allows(&json!("-12.50")));
    /// assert!(!ValueRule::Numbers.allows(&json!("12e3")));
    /// assert!(ValueRule::Text.allows(&json!("hello")));
    /// assert!(!ValueRule::Text.allows(&json!(true)));
    /// ```
    pub fn allows(self, value: &serde_json::Value) -> bool {
        use serde_json::Value;
        match (self, value) {
            (ValueRule::Any, _) => true,
            (ValueRule::Text, Value::String(_) | Value::Number(_)) => true,
            (ValueRule::Numbers, Value::Number(n)) => n.as_f64().is_some_and(f64::is_finite),
            (ValueRule::Numbers, Value::String(text)) => is_decimal(text),
            _ => false,
        }
    }
}

/// `-?digits(.digits)?`
fn is_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && fraction.is_none_or(digits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_numbers_rule_is_scratchs() {
        for good in [
            json!(0),
            json!(-1.5),
            json!("007"),
            json!("-3.25"),
            json!("10"),
        ] {
            assert!(ValueRule::Numbers.allows(&good), "{good}");
        }
        for bad in [
            json!(""),
            json!("-"),
            json!("1."),
            json!(".5"),
            json!("1e5"),
            json!("0x10"),
            json!(" 1"),
            json!(true),
            json!(null),
            json!([1]),
        ] {
            assert!(!ValueRule::Numbers.allows(&bad), "{bad}");
        }
    }
}
