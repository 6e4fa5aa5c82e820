//! The Discord source: a bot connection that fills the [`Store`] with the
//! guilds the bot is in and keeps them current.
//!
//! For each guild it lists a server (public id and name from the data file
//! when it has an entry for the guild's snowflake, else a slug of the guild's
//! name; the first guild is the default unless one is marked), builds the roster
//! from members and presences, and turns presence changes, members joining and
//! leaving, and chat lines of people (not bots) into d-zone frames.
//!
//! [`DiscordSource::start`] asks Discord how to connect (`GET /gateway/bot`),
//! opens that many shards, and returns once Discord has accepted the bot, or
//! with an error saying what the operator must change (a wrong token, a
//! privileged intent that is switched off). After that the source reconnects
//! and resumes on its own until stopped, unless Discord refuses the bot for
//! good (a token reset, an intent switched off while it runs): then it ends and
//! [`DiscordSource::failed`] says why. It never logs the bot token.
//!
//! The gateway protocol itself is twilight's (the `gateway` module says why); this
//! module and its children decide what the events mean for d-zone.

mod events;
mod gateway;
mod leader;
mod rest;
mod roster;

use std::future::Future;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::oauth::DISCORD_API;
use super::store::Store;
pub use leader::DiscordLeader;

/// Discord's gateway (the bot connects here unless told otherwise).
pub const DISCORD_GATEWAY: &str = "wss://gateway.discord.gg";

/// Guilds, server members (privileged), presences (privileged), guild messages,
/// message content (privileged).
pub const INTENTS: u64 = 1 | (1 << 1) | (1 << 8) | (1 << 9) | (1 << 15);

/// How long the start waits for Discord to accept the bot.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The switches under "Privileged Gateway Intents" and the application flags that say they are on
/// (the full flag and the "limited" flag of unverified bots).
const PRIVILEGED: [(&str, u64, u64); 3] = [
    ("Presence Intent", 1 << 12, 1 << 13),
    ("Server Members Intent", 1 << 14, 1 << 15),
    ("Message Content Intent", 1 << 18, 1 << 19),
];

/// Where and as whom to connect.
///
/// ```
/// use d_back::provider::discord::DiscordConfig;
/// let config = DiscordConfig::new("MTIz...bot token")
///     .gateway_url("ws://127.0.0.1:9000")
///     .api_url("http://127.0.0.1:9000/api");
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct DiscordConfig {
    token: String,
    gateway_url: String,
    api_url: String,
}

impl std::fmt::Debug for DiscordConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordConfig")
            .field("token", &"<hidden>")
            .field("gateway_url", &self.gateway_url)
            .field("api_url", &self.api_url)
            .finish()
    }
}

impl DiscordConfig {
    /// A bot token from the Developer Portal (a leading `Bot ` is accepted and dropped).
    pub fn new(token: impl Into<String>) -> Self {
        let token = token.into();
        let token = token.trim();
        Self {
            token: token.strip_prefix("Bot ").unwrap_or(token).to_owned(),
            gateway_url: DISCORD_GATEWAY.to_owned(),
            api_url: DISCORD_API.to_owned(),
        }
    }

    /// Connects to this gateway instead of Discord's (tests use a local fake).
    pub fn gateway_url(mut self, url: impl Into<String>) -> Self {
        self.gateway_url = url.into();
        self
    }

    /// Uses this REST API base instead of Discord's.
    pub fn api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = url.into().trim_end_matches('/').to_owned();
        self
    }
}

/// Why the Discord source could not start; each says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscordError {
    /// The gateway could not be reached.
    #[error("cannot reach the Discord gateway at {url}: {reason}")]
    Unreachable {
        /// The gateway URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Discord said the token is not a bot token it knows (close code 4004).
    #[error(
        "Discord rejected the bot token: copy it again from https://discord.com/developers/applications → your application → Bot → Reset Token, and pass it with --discord-token or DISCORD_TOKEN"
    )]
    TokenRejected,
    /// A privileged intent is switched off for this bot (close code 4014).
    #[error(
        "Discord refused the bot's privileged intents: in https://discord.com/developers/applications → your application → Bot → Privileged Gateway Intents, turn on {}, save, and start again",
        switches(missing)
    )]
    DisallowedIntents {
        /// The switches that are off; empty when Discord would not say (then all are named).
        missing: Vec<&'static str>,
    },
    /// Another refusal Discord does not let us retry.
    #[error("Discord closed the gateway with {code} ({reason}); the bot cannot continue")]
    Refused {
        /// Discord's close code.
        code: u16,
        /// Discord's words.
        reason: String,
    },
    /// The bot may start no new session now: its daily `session_start_limit` is used up.
    #[error(
        "Discord allows this bot no new session for another {0:?} (its daily session start limit is used up); start d-back again after that"
    )]
    SessionLimit(Duration),
    /// Discord did not accept the bot in time.
    #[error("Discord did not accept the bot within {0:?}; check the network and try again")]
    NoReady(Duration),
}

fn switches(missing: &[&'static str]) -> String {
    let names: Vec<&str> = if missing.is_empty() {
        PRIVILEGED.iter().map(|(name, _, _)| *name).collect()
    } else {
        missing.to_vec()
    };
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    match quoted.as_slice() {
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
        [] => String::new(),
    }
}

/// A running Discord connection; dropping it does not stop it, [`stop`](Self::stop) does.
#[derive(Debug)]
pub struct DiscordSource {
    stop: CancellationToken,
    task: JoinHandle<()>,
    /// Set when Discord refused the bot after the start.
    failed: watch::Receiver<Option<DiscordError>>,
}

impl DiscordSource {
    /// Connects the bot and waits until Discord accepts it; from then on it
    /// keeps `store` current, reconnecting on its own.
    ///
    /// ```no_run
    /// use d_back::provider::Store;
    /// use d_back::provider::discord::{DiscordConfig, DiscordSource};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = Store::new();
    /// let discord = DiscordSource::start(DiscordConfig::new(std::env::var("DISCORD_TOKEN")?), store.clone()).await?;
    /// let server = d_back::Server::builder().provider(store.clone()).bind().await?;
    /// store.attach(server.hub());
    /// tokio::signal::ctrl_c().await?;
    /// discord.stop().await;
    /// server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(config: DiscordConfig, store: Store) -> Result<Self, DiscordError> {
        super::install_tls_provider();
        let api = rest::BotApi::new(&config);
        let info = api.gateway_bot().await?;
        let limit = &info.session_start_limit;
        if limit.remaining == 0 {
            // Waiting hours for the limit to reset would look like a hang.
            return Err(DiscordError::SessionLimit(Duration::from_millis(
                limit.reset_after,
            )));
        }
        let stop = CancellationToken::new();
        let (ready, ready_rx) = oneshot::channel();
        let (failed, failed_rx) = watch::channel(None);
        let mapper = events::Mapper::new(store);
        let reports = gateway::Reports { ready, failed };
        let task = tokio::spawn(gateway::run(
            config,
            api,
            info,
            mapper,
            stop.clone(),
            reports,
        ));
        let error = match tokio::time::timeout(READY_TIMEOUT, ready_rx).await {
            Ok(Ok(Ok(()))) => {
                return Ok(Self {
                    stop,
                    task,
                    failed: failed_rx,
                });
            }
            Ok(Ok(Err(error))) => error,
            Ok(Err(_)) | Err(_) => DiscordError::NoReady(READY_TIMEOUT),
        };
        stop.cancel();
        let _ = task.await;
        Err(error)
    }

    /// Resolves with Discord's reason if it refuses the bot after the start
    /// (the source has then ended), or with `None` once the source is stopped.
    ///
    /// The `d_back` command ends on such a refusal: a bot that can no longer
    /// connect would otherwise go on serving a world that silently stopped
    /// changing.
    pub fn failed(&self) -> impl Future<Output = Option<DiscordError>> + Send + 'static {
        first_refusal(self.failed.clone())
    }

    /// Closes the connection and waits for the source to end.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The refusal `failed` will hold, or `None` once its sender is gone (stopped).
async fn first_refusal(mut failed: watch::Receiver<Option<DiscordError>>) -> Option<DiscordError> {
    let refusal = failed.wait_for(Option::is_some).await.ok()?;
    refusal.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_the_switches() {
        let one = DiscordError::DisallowedIntents {
            missing: vec!["Presence Intent"],
        };
        assert!(
            one.to_string()
                .contains("turn on \"Presence Intent\", save")
        );
        let all = DiscordError::DisallowedIntents { missing: vec![] }.to_string();
        assert!(all.contains(
            "\"Presence Intent\", \"Server Members Intent\" and \"Message Content Intent\""
        ));
    }

    #[test]
    fn a_bot_prefix_is_dropped() {
        assert_eq!(DiscordConfig::new("Bot abc").token, "abc");
    }
}
