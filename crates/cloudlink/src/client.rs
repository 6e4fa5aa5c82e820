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
    /// Decimal Snowflake, shown to clients as `id`.
    snowflake: Arc<str>,
    /// Lower-case hyphenated UUIDv4, shown to clients as `uuid`.
    uuid: Arc<str>,
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
        snowflake: String,
        uuid: String,
        peer: ClientInfo,
        outbox: Arc<Outbox>,
    ) -> Self {
        Client(Arc::new(Inner {
            key,
            snowflake: snowflake.into(),
            uuid: uuid.into(),
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

    /// The Snowflake ID, a decimal string (CL4's `id`).
    pub fn snowflake(&self) -> &str {
        &self.0.snowflake
    }

    /// The UUIDv4, lower-case and hyphenated (CL4's `uuid`).
    pub fn uuid(&self) -> &str {
        &self.0.uuid
    }

    /// The UUID, shared rather than copied (for the registry's index).
    pub(crate) fn shared_uuid(&self) -> Arc<str> {
        Arc::clone(&self.0.uuid)
    }

    /// The Snowflake, shared rather than copied (for the registry's index).
    pub(crate) fn shared_snowflake(&self) -> Arc<str> {
        Arc::clone(&self.0.snowflake)
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
/// let unnamed = UserObject { id: "7530144689341767680", username: None, uuid: "ff5ff0bf-5ce3-4617-a735-657c388d181a" };
/// assert_eq!(
///     serde_json::to_string(&unnamed).unwrap(),
///     r#"{"id":"7530144689341767680","uuid":"ff5ff0bf-5ce3-4617-a735-657c388d181a"}"#
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UserObject<'a> {
    /// The Snowflake.
    pub id: &'a str,
    /// Present once set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<&'a str>,
    /// The UUID.
    pub uuid: &'a str,
}
