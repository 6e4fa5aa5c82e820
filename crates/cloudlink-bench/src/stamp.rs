//! The benchmark's payload: the message the sender sends, and how a receiver
//! finds in what it gets back the sequence number and the send time.
//!
//! The value carried is the string `"<seq>.<nanoseconds since the epoch>"`,
//! e.g. `"42.1795328906788191455"`. It is a string of digits with one point
//! because that is the one shape every server keeps as it is: the Python
//! server passes any value through, and a Scratch host that follows TurboWarp's
//! rules accepts only numbers and numeric strings (a number this large would
//! lose digits as a double). The sequence number makes each value unique,
//! which matters for Scratch `set`: a server drops a `set` whose value equals
//! the stored one. Times are wall-clock, shared by sender and receivers in this
//! one process, so a latency is simply receive time minus send time.

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use memchr::memmem::Finder;

/// Which protocol a scenario speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// CloudLink 4, messages keyed by `cmd`.
    Cl4,
    /// Scratch cloud variables, messages keyed by `method`.
    Scratch,
}

/// The Scratch project every Scratch client of a run joins.
pub const PROJECT: &str = "bench";
/// The cloud variable the Scratch sender sets.
pub const VARIABLE: &str = "☁ v";

/// What a receiver learns from one delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Position of the message in the sender's stream, from 0.
    pub seq: u64,
    /// When the sender built it, in nanoseconds since the epoch.
    pub sent_ns: u64,
}

/// Wall-clock time in nanoseconds since the epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The sender's message number `seq`, stamped now.
///
/// The Scratch `set` carries `project_id` (and `user`) besides what the
/// cloud-variable protocol strictly needs, because the Python server validates
/// every variable method against a schema that requires `project_id`, and
/// closes the connection (4000) without it; Scratch's own client sends both.
pub fn message(protocol: Protocol, seq: u64) -> String {
    let value = format!("{seq}.{}", now_ns());
    match protocol {
        Protocol::Cl4 => format!(r#"{{"cmd":"gmsg","val":"{value}"}}"#),
        Protocol::Scratch => format!(
            r#"{{"method":"set","project_id":"{PROJECT}","user":"sender","name":"{VARIABLE}","value":"{value}"}}"#
        ),
    }
}

/// Every stamp in a text frame. A server may put several messages in one frame,
/// one per line (TurboWarp's cloud server does so for Scratch clients), so each
/// line counts as a message of its own. Lines without a stamp (user lists,
/// status codes) are skipped.
pub fn stamps(frame: &str) -> impl Iterator<Item = Stamp> + '_ {
    frame.split('\n').filter_map(parse)
}

/// The stamp of one JSON message: the value of its `val` (CL4) or `value`
/// (Scratch) key, if that is a stamp string.
///
/// Every receiver runs this for every message, millions of times a second,
/// on the same two cores as the server under test: whatever it costs is
/// taken from the server. So it is one scan for `"val` (with a searcher
/// built once) and digits read by hand, not `str::find` per key (which
/// builds a searcher per call) and `str::parse`.
fn parse(line: &str) -> Option<Stamp> {
    static KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"val"));
    let bytes = line.as_bytes();
    KEY.find_iter(bytes).find_map(|at| {
        let rest = &bytes[at + 4..];
        let rest = rest
            .strip_prefix(b"\"")
            .or_else(|| rest.strip_prefix(b"ue\""))?;
        let rest = rest.trim_ascii_start().strip_prefix(b":")?;
        let rest = rest.trim_ascii_start().strip_prefix(b"\"")?;
        let (seq, rest) = digits(rest)?;
        let (sent_ns, rest) = digits(rest.strip_prefix(b".")?)?;
        rest.starts_with(b"\"").then_some(Stamp { seq, sent_ns })
    })
}

/// The number at the start of `bytes` (at least one digit, no overflow) and what follows it.
fn digits(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let end = bytes
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(bytes.len());
    if end == 0 {
        return None;
    }
    let value = bytes[..end].iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    Some((value, &bytes[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_sent_comes_back() {
        for protocol in [Protocol::Cl4, Protocol::Scratch] {
            let sent = message(protocol, 7);
            let json: serde_json::Value = serde_json::from_str(&sent).unwrap();
            assert!(json.is_object());
            let stamp = stamps(&sent).next().unwrap();
            assert_eq!(stamp.seq, 7);
            assert!(stamp.sent_ns > 1_700_000_000_000_000_000);
        }
    }

    #[test]
    fn finds_stamps_in_server_output() {
        let gmsg = r#"{"cmd":"gmsg","val":"3.1795328906788191455","rooms":"default"}"#;
        assert_eq!(
            stamps(gmsg).collect::<Vec<_>>(),
            [Stamp {
                seq: 3,
                sent_ns: 1_795_328_906_788_191_455
            }]
        );
        // Python escapes the cloud sign; a batching server joins lines.
        let batch = "{\"method\":\"set\",\"name\":\"\\u2601 v\",\"value\":\"4.10\"}\n\
                     {\"method\": \"set\", \"name\": \"☁ v\", \"value\" : \"5.11\"}";
        let seqs: Vec<u64> = stamps(batch).map(|s| s.seq).collect();
        assert_eq!(seqs, [4, 5]);
        let others = r#"{"cmd":"ulist","mode":"set","val":[],"rooms":"default"}"#;
        assert_eq!(stamps(others).count(), 0);
        assert_eq!(stamps(r#"{"cmd":"gmsg","val":"hello"}"#).count(), 0);
        // Another key starting with `val` before the stamp does not hide it.
        let named = r#"{"method":"set","name":"valley","valid":1,"value":"6.12"}"#;
        assert_eq!(stamps(named).map(|s| s.seq).collect::<Vec<_>>(), [6]);
        // Not stamps: digits missing on either side, too many to fit, no closing quote.
        for line in [
            r#"{"value":".12"}"#,
            r#"{"value":"6."}"#,
            r#"{"value":"6.99999999999999999999999"}"#,
            r#"{"value":"6.12x"}"#,
            r#"{"value":6.12}"#,
        ] {
            assert_eq!(stamps(line).count(), 0, "{line}");
        }
    }
}
