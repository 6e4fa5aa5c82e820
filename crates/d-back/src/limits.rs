//! The per-connection limits a session enforces, set by the server's builder.
//!
//! A module of its own because both the server (which builds them) and the
//! session and HTTP layers (which apply them) need them, and neither of those
//! should import the other for it.

use std::time::Duration;

use edge::Deadlines;
use edge::rate::MessageRate;

/// Per-connection limits that keep one client from hurting the others.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Largest frame (and message) a client may send; larger closes with 1009.
    pub max_frame_bytes: usize,
    /// Chat lines, and other frames, a slow client may lag behind by (see `ServerBuilder::outbox_frames`).
    pub outbox_frames: usize,
    /// How often idle connections are pinged; silence for two periods drops them.
    pub ping_interval: Duration,
    /// How long a write may stay blocked before the client is considered gone.
    pub stall_timeout: Duration,
    /// Frames per second a client may send, and how many at once; `None` for no limit.
    pub message_rate: Option<MessageRate>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            outbox_frames: 256,
            ping_interval: Duration::from_secs(20),
            stall_timeout: Deadlines::default().write_stall,
            message_rate: MessageRate::new(10, 20),
        }
    }
}
