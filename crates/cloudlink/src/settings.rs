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
                ping_interval: Duration::from_secs(20),
                stall_timeout: Duration::from_secs(10),
            },
            message_rate: MessageRate::new(60, 120),
            max_rooms_per_client: 1000,
            max_variables_per_room: 1000,
            flush_interval: Duration::from_secs(1),
            empty_room_ttl: Duration::from_secs(3600),
        }
    }
}
