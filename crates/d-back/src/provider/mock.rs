//! The built-in world: four Discord servers with their users, and a simulator
//! that makes a watched server feel alive.
//!
//! The data is embedded in the binary so that `d_back` with no configuration
//! shows something real. The simulator is the provider's
//! [`activity`](super::DataProvider::activity): one per watched server, shared by
//! every watcher (so all browsers see the same world), running only while
//! someone watches.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use rand::Rng;
use rand::seq::IndexedRandom;
use serde::Deserialize;
use tokio::time::{Instant, interval_at};

use super::{DataProvider, ProviderError};
use crate::Hub;
use crate::protocol::{ChatMessage, DiscordUser, PresenceUpdate, Roster, ServerList, Status};

/// Channel id that the built-in world's chat lines are said in.
pub const MOCK_CHANNEL: &str = "527964146659229701";

/// Snowflake of the built-in OAuth2-protected server, whose login check accepts anyone.
const MOCK_OAUTH_SERVER: &str = "123456789012345678";

/// What the built-in world's users say: the reference server's lines, which d-zone users know.
const CHAT_LINES: &[&str] = &[
    "hello",
    "how are you?",
    "this is a test message",
    "D-Zone rocks!",
    "what's up?",
];

#[derive(Deserialize)]
struct WorldData {
    servers: ServerList,
    users: indexmap::IndexMap<String, Roster>,
}

static WORLD: LazyLock<Arc<WorldData>> = LazyLock::new(|| {
    Arc::new(
        serde_json::from_str(include_str!("../../assets/mock-world.json"))
            .expect("the embedded mock world is valid JSON"),
    )
});

/// The built-in world, used when no other data source is configured.
///
/// ```
/// use std::time::Duration;
/// use d_back::MockWorld;
/// // Faster activity than the default 4 s / 5 s, e.g. for a demo.
/// let world = MockWorld::new().with_cadence(Duration::from_secs(1), Duration::from_secs(2));
/// # let _ = world;
/// ```
#[derive(Debug, Clone)]
pub struct MockWorld {
    presence_every: Duration,
    message_every: Duration,
}

impl Default for MockWorld {
    fn default() -> Self {
        Self::new()
    }
}

impl MockWorld {
    /// The built-in world with a status change about every 4 s and a chat line about every 5 s.
    pub fn new() -> Self {
        Self {
            presence_every: Duration::from_secs(4),
            message_every: Duration::from_secs(5),
        }
    }

    /// Sets how often a random user changes status and how often one says something.
    ///
    /// A zero duration turns that kind of activity off.
    pub fn with_cadence(mut self, presence_every: Duration, message_every: Duration) -> Self {
        self.presence_every = presence_every;
        self.message_every = message_every;
        self
    }
}

#[async_trait]
impl DataProvider for MockWorld {
    async fn servers(&self) -> Result<ServerList, ProviderError> {
        Ok(WORLD.servers.clone())
    }

    async fn users(&self, server: &str) -> Result<Roster, ProviderError> {
        Ok(WORLD.users.get(server).cloned().unwrap_or_default())
    }

    /// The built-in OAuth2 server admits anyone who says who they are, so the
    /// login flow can be tried without a Discord application; no other server does.
    async fn validate_discord_user(
        &self,
        server: &str,
        _token: &str,
        user: &DiscordUser,
    ) -> Result<bool, ProviderError> {
        Ok(server == MOCK_OAUTH_SERVER && !user.id.is_empty() && !user.username.is_empty())
    }

    fn activity(&self, server: &str, hub: Hub) -> Option<BoxFuture<'static, ()>> {
        WORLD.servers.contains_key(server).then(|| {
            simulate(
                hub,
                server.to_owned(),
                self.presence_every,
                self.message_every,
            )
            .boxed()
        })
    }
}

/// One server's simulated life: random status changes and chat lines, forever.
async fn simulate(hub: Hub, server: String, presence_every: Duration, message_every: Duration) {
    // A zero period means "never": park that timer for a century.
    let period = |d: Duration| {
        if d.is_zero() {
            Duration::from_secs(100 * 365 * 24 * 3600)
        } else {
            d
        }
    };
    let (presence_every, message_every) = (period(presence_every), period(message_every));
    let mut presence = interval_at(Instant::now() + presence_every, presence_every);
    let mut chat = interval_at(Instant::now() + message_every, message_every);
    loop {
        tokio::select! {
            _ = presence.tick() => {
                let Some(uid) = random_member(&hub, &server) else { continue };
                let status = *Status::ALL.choose(&mut rand::rng()).expect("four statuses");
                hub.broadcast_presence(&server, PresenceUpdate::new(uid, status));
            }
            _ = chat.tick() => {
                let Some(uid) = random_member(&hub, &server) else { continue };
                let line = *CHAT_LINES.choose(&mut rand::rng()).expect("lines exist");
                hub.broadcast_message(&server, ChatMessage {
                    uid,
                    message: line.to_owned(),
                    channel: MOCK_CHANNEL.to_owned(),
                });
            }
        }
    }
}

fn random_member(hub: &Hub, server: &str) -> Option<String> {
    let uids = hub.member_ids(server);
    if uids.is_empty() {
        return None;
    }
    let pick = rand::rng().random_range(0..uids.len());
    uids.into_iter().nth(pick)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_embedded_world_matches_the_spec() {
        let world = MockWorld::new();
        let servers = world.servers().await.unwrap();
        assert_eq!(servers.len(), 4);
        let defaults: Vec<_> = servers.values().filter(|s| s.default).collect();
        assert_eq!(defaults.len(), 1);
        assert_eq!(defaults[0].id, "dworld");
        let counts: Vec<usize> = futures_util::future::join_all(
            servers
                .keys()
                .map(|k| async { world.users(k).await.unwrap().len() }),
        )
        .await;
        assert_eq!(counts, [4, 1, 1, 21]);
        assert!(servers[MOCK_OAUTH_SERVER].passworded);
    }

    #[tokio::test]
    async fn only_the_mock_oauth_server_accepts_any_login() {
        let world = MockWorld::new();
        let user = DiscordUser {
            id: "1".into(),
            username: "n".into(),
        };
        assert!(
            world
                .validate_discord_user(MOCK_OAUTH_SERVER, "t", &user)
                .await
                .unwrap()
        );
        assert!(
            !world
                .validate_discord_user("232769614004748288", "t", &user)
                .await
                .unwrap()
        );
    }
}
