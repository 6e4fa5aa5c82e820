//! One connected client as the rest of the server sees it: who it is (its
//! snowflake, UUID, address and, once set, its username), which protocol it
//! speaks, and the outbox everything for it goes through.
//!
//! A [`Client`] is a cheap handle (an `Arc`) that extensions may keep and
//! compare. What can change about a client lives either here, set at most
//! once (username, protocol), or in the room registry (its rooms), so that
//! reading a username never waits for a lock.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::http::HeaderMap;
use edge::outbox::{CloseRequest, Frame, Outbox, Pushed, Urgency};
use serde::Serialize;
use uuid::Uuid;

/// Which of the two protocols a connection speaks, fixed by its first message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// CloudLink 4: messages keyed by `cmd`.
    Cl4,
    /// Scratch cloud variables: messages keyed by `method`.
    Scratch,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Cl4 => "clpv4",
            Protocol::Scratch => "scratch",
        })
    }
}

/// What the WebSocket handshake told us about a client.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The client's address: the TCP peer, or the one a trusted proxy names.
    pub address: IpAddr,
    /// Headers of the upgrade request (User-Agent, Cookie, Origin, ...).
    pub headers: HeaderMap,
}

impl ClientInfo {
    /// A peer at `address` that sent no headers worth keeping.
    pub fn new(address: IpAddr) -> Self {
        Self {
            address,
            headers: HeaderMap::new(),
        }
    }
}

/// A connected client; clones are the same client.
#[derive(Clone)]
pub struct Client(Arc<Inner>);

struct Inner {
    /// Key in the registry, in connection order.
    key: u64,
    /// Snowflake, shown to clients as `id` (decimal text). Both IDs are kept
    /// as numbers and written out when sent: as text they were two more
    /// allocations, about 110 bytes in every idle client.
    snowflake: u64,
    /// UUIDv4, shown to clients as `uuid` (lower-case, hyphenated).
    uuid: Uuid,
    peer: ClientInfo,
    username: OnceLock<Arc<str>>,
    protocol: OnceLock<Protocol>,
    /// Set by the first `handshake`; later ones do less (CL4) or nothing (Scratch).
    handshake: AtomicBool,
    outbox: Arc<Outbox>,
    /// Its Scratch sets in the current second, for `--max-sets-per-second`;
    /// made on first use, so that servers without the limit, and clients
    /// that never set, do not carry it.
    sets: OnceLock<Box<crate::set_rate::SetWindow>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.0.snowflake)
            .field("uuid", &self.0.uuid)
            .field("username", &self.username())
            .field("protocol", &self.protocol())
            .field("address", &self.0.peer.address)
            .finish()
    }
}

impl PartialEq for Client {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for Client {}

impl Client {
    pub(crate) fn new(
        key: u64,
        snowflake: u64,
        uuid: Uuid,
        peer: ClientInfo,
        outbox: Arc<Outbox>,
    ) -> Self {
        Client(Arc::new(Inner {
            key,
            snowflake,
            uuid,
            peer,
            username: OnceLock::new(),
            protocol: OnceLock::new(),
            handshake: AtomicBool::new(false),
            outbox,
            sets: OnceLock::new(),
        }))
    }

    /// Lets the writer batch this client's frames (`--batch-ms`).
    pub(crate) fn batch_frames(&self) {
        self.0.outbox.batch();
    }

    pub(crate) fn set_window(&self) -> &crate::set_rate::SetWindow {
        self.0.sets.get_or_init(Box::default)
    }

    pub(crate) fn key(&self) -> u64 {
        self.0.key
    }

    /// The Snowflake ID (CL4's `id`, sent as decimal text).
    pub fn snowflake(&self) -> u64 {
        self.0.snowflake
    }

    /// The UUIDv4 (CL4's `uuid`, sent lower-case and hyphenated, as its
    /// `Display` writes it).
    pub fn uuid(&self) -> Uuid {
        self.0.uuid
    }

    /// The username, shared rather than copied (for the registry's index).
    pub(crate) fn shared_username(&self) -> Option<Arc<str>> {
        self.0.username.get().cloned()
    }

    /// The client's address (behind trusted proxies, the one they name).
    pub fn address(&self) -> IpAddr {
        self.0.peer.address
    }

    /// Headers of the client's WebSocket upgrade request.
    pub fn headers(&self) -> &HeaderMap {
        &self.0.peer.headers
    }

    /// The username, once the client has set one (CL4 `setid`, Scratch `handshake`).
    pub fn username(&self) -> Option<&str> {
        self.0.username.get().map(|name| &**name)
    }

    /// Sets the username; `false` if it was already set (it never changes).
    pub(crate) fn set_username(&self, name: &str) -> bool {
        self.0.username.set(Arc::from(name)).is_ok()
    }

    /// The protocol, once the first message identified it.
    pub fn protocol(&self) -> Option<Protocol> {
        self.0.protocol.get().copied()
    }

    pub(crate) fn set_protocol(&self, protocol: Protocol) {
        let _ = self.0.protocol.set(protocol);
    }

    /// Marks the client as handshaken; `true` the first time only.
    pub(crate) fn first_handshake(&self) -> bool {
        !self.0.handshake.swap(true, Ordering::Relaxed)
    }

    /// Whether the client has sent a handshake.
    pub fn is_handshaken(&self) -> bool {
        self.0.handshake.load(Ordering::Relaxed)
    }

    /// The client's user object: `{"id","username"?,"uuid"}`.
    pub fn user_object(&self) -> UserObject<'_> {
        UserObject {
            id: self.snowflake(),
            username: self.username(),
            uuid: self.uuid(),
        }
    }

    /// Queues an encoded frame; `false` if the client is gone or was just
    /// dropped for falling behind.
    pub(crate) fn push(&self, frame: Frame) -> bool {
        matches!(
            self.0.outbox.push(frame),
            Pushed::Queued | Pushed::Collapsed
        )
    }

    /// From now on also sends what `source` publishes, after what is queued.
    pub(crate) fn follow(&self, source: Arc<dyn edge::source::Source>) {
        self.0.outbox.follow(source);
    }

    /// Whether this client has not yet copied what it follows at `position`.
    pub(crate) fn missed(&self, position: u64) -> bool {
        self.0.outbox.missed(position)
    }

    /// Queues a frame that must arrive.
    pub(crate) fn push_wire(&self, wire: edge::ws::Wire) -> bool {
        self.push(Frame {
            urgency: Urgency::Essential,
            wire,
        })
    }

    /// Sends what is queued, then closes with this code and reason.
    pub(crate) fn finish(&self, code: u16, reason: impl Into<std::borrow::Cow<'static, str>>) {
        self.0.outbox.finish(CloseRequest::new(code, reason));
    }
}

/// How CL4 shows a client to others (`client_obj`, `ulist`, `origin`).
///
/// ```
/// # use cloudlink::UserObject;
/// # use cloudlink::Uuid;
/// let uuid = Uuid::parse_str("ff5ff0bf-5ce3-4617-a735-657c388d181a").unwrap();
/// let unnamed = UserObject { id: 7530144689341767680, username: None, uuid };
/// assert_eq!(
///     serde_json::to_string(&unnamed).unwrap(),
///     r#"{"id":"7530144689341767680","uuid":"ff5ff0bf-5ce3-4617-a735-657c388d181a"}"#
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UserObject<'a> {
    /// The Snowflake (sent as decimal text, as 0.2.0 does).
    #[serde(serialize_with = "as_text")]
    pub id: u64,
    /// Present once set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<&'a str>,
    /// The UUID (sent lower-case and hyphenated).
    #[serde(serialize_with = "as_text")]
    pub uuid: Uuid,
}

/// Writes a value as its `Display` text.
fn as_text<T: fmt::Display, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// The Snowflake `text` names, if it is one as clients see them: decimal
/// digits with no sign and no leading zero.
pub(crate) fn snowflake_in(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// The UUID `text` names, if it is one as clients see them: lower-case and
/// hyphenated.
pub(crate) fn uuid_in(text: &str) -> Option<Uuid> {
    let uuid = Uuid::try_parse(text).ok()?;
    let mut buffer = Uuid::encode_buffer();
    (uuid.hyphenated().encode_lower(&mut buffer) == text).then_some(uuid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_found_only_as_clients_see_them() {
        assert_eq!(
            snowflake_in("7530144689341767680"),
            Some(7530144689341767680)
        );
        assert_eq!(snowflake_in("0"), Some(0));
        for text in ["", "07", "+7", "-7", "7 ", "18446744073709551616", "x"] {
            assert_eq!(snowflake_in(text), None, "{text:?}");
        }
        let text = "ff5ff0bf-5ce3-4617-a735-657c388d181a";
        assert_eq!(uuid_in(text).map(|u| u.to_string()).as_deref(), Some(text));
        for text in [
            "FF5FF0BF-5CE3-4617-A735-657C388D181A",
            "ff5ff0bf5ce34617a735657c388d181a",
            "{ff5ff0bf-5ce3-4617-a735-657c388d181a}",
            "",
        ] {
            assert_eq!(uuid_in(text), None, "{text:?}");
        }
    }
}
