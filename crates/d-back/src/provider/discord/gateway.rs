//! The bot's gateway connections, one per shard, kept alive for as long as the
//! source runs, and the one place their dispatches are handed to the [`Mapper`].
//!
//! The connections are twilight-gateway shards. Discord's gateway has more
//! rules than a bot should re-implement: how many shards to open (asked of
//! `GET /gateway/bot`), how many may identify at once and per day
//! (`max_concurrency`, `session_start_limit`, enforced by twilight's identify
//! queue shared by all shards), at most 120 commands a minute per connection
//! (its command rate limiter), zlib-stream transport compression, heartbeats,
//! zombie detection, resuming at the `resume_gateway_url` and backing off
//! between attempts. twilight is the maintained Rust client that does all of
//! this, lets the gateway URL be set (`proxy_url`, which tests point at a local
//! fake) and does not log frames, so the token in `IDENTIFY` and `RESUME`
//! never reaches a log at any level.
//!
//! What stays here: deciding when the start has succeeded (the first `READY`)
//! or failed, turning a close code Discord will not let us retry into a
//! [`DiscordError`] (reported to the start, or after it through the failure
//! watch, so that the command can end), and sending the mapper's replies on the
//! shard the event came from, later if Discord asked us to wait. Dispatches are
//! read as plain JSON so the mapper can keep its lenient decoding.

use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use twilight_gateway::error::{ReceiveMessageError, ReceiveMessageErrorType};
use twilight_gateway::queue::InMemoryQueue;
use twilight_gateway::{
    CloseFrame, ConfigBuilder, Intents, Message, MessageSender, Shard, ShardId,
};
use twilight_model::gateway::CloseCode;
use twilight_model::gateway::connection_info::BotConnectionInfo;
use twilight_model::gateway::payload::outgoing::identify::IdentifyProperties;

use super::events::{Mapper, Outgoing};
use super::rest::BotApi;
use super::{DiscordConfig, DiscordError, INTENTS};

/// Largest guild whose members all come in `GUILD_CREATE` (Discord's maximum);
/// larger ones are completed with member requests.
const LARGE_THRESHOLD: u64 = 250;
/// How long a stopping shard may take to close its connection politely.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Dispatches waiting for the mapper; a full queue slows the shards down.
const QUEUE: usize = 256;

/// A gateway payload as far as this module reads it.
#[derive(Deserialize)]
struct Payload {
    op: u8,
    #[serde(default)]
    d: Value,
    #[serde(default)]
    t: Option<String>,
}

/// Where the outcome of the start and a later refusal are reported.
pub(super) struct Reports {
    /// The first `READY`, or why the bot could not get there.
    pub(super) ready: oneshot::Sender<Result<(), DiscordError>>,
    /// A refusal after the start: the source has ended.
    pub(super) failed: watch::Sender<Option<DiscordError>>,
}

/// Opens the shards Discord asks for and runs them until stopped or refused.
pub(super) async fn run(
    config: DiscordConfig,
    api: BotApi,
    info: BotConnectionInfo,
    mut mapper: Mapper,
    stop: CancellationToken,
    reports: Reports,
) {
    let Reports { ready, failed } = reports;
    let mut ready = Some(ready);
    let limit = &info.session_start_limit;
    let queue = InMemoryQueue::new(
        limit.max_concurrency,
        limit.remaining,
        Duration::from_millis(limit.reset_after),
        limit.total,
    );
    let total = info.shards.max(1);
    info!(
        shards = total,
        max_concurrency = limit.max_concurrency,
        "connecting to the Discord gateway"
    );
    let (events, mut received) = mpsc::channel(QUEUE);
    let mut senders = Vec::new();
    let mut shards = JoinSet::new();
    for number in 0..total {
        let shard_config = ConfigBuilder::new(config.token.clone(), intents())
            .proxy_url(config.gateway_url.trim_end_matches('/').to_owned())
            .queue(queue.clone())
            .large_threshold(LARGE_THRESHOLD)
            .identify_properties(IdentifyProperties::new(
                "d-back",
                "d-back",
                std::env::consts::OS,
            ))
            .build();
        let shard = Shard::with_config(ShardId::new(number, total), shard_config);
        senders.push(shard.sender());
        shards.spawn(pump(shard, events.clone(), stop.clone()));
    }
    drop(events);

    let fatal = loop {
        let (shard, item) = tokio::select! {
            _ = stop.cancelled() => break None,
            item = received.recv() => match item {
                Some(item) => item,
                None => break None,
            },
        };
        match handle(
            shard,
            total,
            item,
            &mut mapper,
            &mut ready,
            &config.gateway_url,
        ) {
            Handled::Continue(replies) => send(&senders[shard.number() as usize], replies),
            Handled::Fatal(error) => break Some(error),
        }
    };
    stop.cancel();
    while shards.join_next().await.is_some() {}
    let Some(error) = fatal else { return };
    let error = explain(error, &api).await;
    match ready.take() {
        Some(ready) => {
            let _ = ready.send(Err(error));
        }
        None => {
            error!("the Discord source stopped: {error}");
            let _ = failed.send(Some(error));
        }
    }
}

/// The intents d-back identifies with.
fn intents() -> Intents {
    Intents::from_bits_truncate(INTENTS)
}

/// Reads one shard until it ends or the source stops, handing everything it
/// receives to the main loop (which owns the mapper).
async fn pump(
    mut shard: Shard<InMemoryQueue>,
    events: mpsc::Sender<(ShardId, Result<Message, ReceiveMessageError>)>,
    stop: CancellationToken,
) {
    let id = shard.id();
    loop {
        let item = tokio::select! {
            _ = stop.cancelled() => break,
            item = shard.next() => item,
        };
        let Some(item) = item else { return };
        if events.send((id, item)).await.is_err() {
            break;
        }
    }
    // Close with 1000 so Discord ends the session and shows the bot offline.
    shard.close(CloseFrame::NORMAL);
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Some(item) = shard.next().await {
            if matches!(item, Ok(Message::Close(_))) {
                break;
            }
        }
    })
    .await;
}

enum Handled {
    /// Gateway commands to send in reply (possibly none).
    Continue(Vec<Outgoing>),
    /// Discord refused the bot; every shard stops.
    Fatal(DiscordError),
}

/// What one item from a shard means.
fn handle(
    shard: ShardId,
    total: u32,
    item: Result<Message, ReceiveMessageError>,
    mapper: &mut Mapper,
    ready: &mut Option<oneshot::Sender<Result<(), DiscordError>>>,
    gateway_url: &str,
) -> Handled {
    let text = match item {
        Ok(Message::Text(text)) => text,
        Ok(Message::Close(frame)) => {
            let (code, reason) = frame.map_or((None, String::new()), |f| {
                (Some(f.code), f.reason.into_owned())
            });
            if let Some(error) = code.and_then(|code| refusal(code, &reason)) {
                return Handled::Fatal(error);
            }
            info!(
                shard = shard.number(),
                code, reason, "the Discord gateway connection closed; reconnecting"
            );
            return Handled::Continue(Vec::new());
        }
        Err(error) => {
            if matches!(error.kind(), ReceiveMessageErrorType::Reconnect) && ready.is_some() {
                // Never connected at all: the operator should hear it now, not in a log later.
                return Handled::Fatal(DiscordError::Unreachable {
                    url: gateway_url.to_owned(),
                    reason: source_words(error),
                });
            }
            warn!(
                shard = shard.number(),
                "Discord gateway: {}",
                source_words(error)
            );
            return Handled::Continue(Vec::new());
        }
    };
    let payload: Payload = match serde_json::from_str(&text) {
        Ok(payload) => payload,
        Err(error) => {
            warn!(%error, "unreadable gateway payload ignored");
            return Handled::Continue(Vec::new());
        }
    };
    if payload.op != 0 {
        return Handled::Continue(Vec::new()); // heartbeats, hello, reconnects: the shard's business
    }
    let kind = payload.t.unwrap_or_default();
    match kind.as_str() {
        "READY" => {
            let guilds = mapper.ready(shard.number(), total, &payload.d);
            info!(shard = shard.number(), guilds, "connected to Discord");
            if let Some(ready) = ready.take() {
                let _ = ready.send(Ok(()));
            }
            Handled::Continue(Vec::new())
        }
        "RESUMED" => {
            info!(shard = shard.number(), "resumed the Discord session");
            Handled::Continue(Vec::new())
        }
        _ => Handled::Continue(mapper.dispatch(&kind, payload.d)),
    }
}

/// The error for a close code Discord does not let a bot retry, if it is one.
fn refusal(code: u16, reason: &str) -> Option<DiscordError> {
    let known = CloseCode::try_from(code).ok()?;
    if known.can_reconnect() {
        return None;
    }
    Some(match known {
        CloseCode::AuthenticationFailed => DiscordError::TokenRejected,
        CloseCode::DisallowedIntents => DiscordError::DisallowedIntents {
            missing: Vec::new(),
        },
        _ => DiscordError::Refused {
            code,
            reason: if reason.is_empty() {
                known.to_string()
            } else {
                reason.to_owned()
            },
        },
    })
}

/// Fills in what the bare close code cannot say (which intent switches are off).
async fn explain(error: DiscordError, api: &BotApi) -> DiscordError {
    match error {
        DiscordError::DisallowedIntents { .. } => DiscordError::DisallowedIntents {
            missing: api.missing_intents().await,
        },
        other => other,
    }
}

/// Sends replies on their shard, each after the pause Discord asked for.
fn send(sender: &MessageSender, replies: Vec<Outgoing>) {
    for reply in replies {
        if reply.after.is_zero() {
            let _ = sender.send(reply.command);
            continue;
        }
        let sender = sender.clone();
        tokio::spawn(async move {
            tokio::time::sleep(reply.after).await;
            debug!("sending a gateway command Discord asked us to repeat");
            let _ = sender.send(reply.command);
        });
    }
}

/// The innermost words of a gateway error, which say what actually failed.
fn source_words(error: ReceiveMessageError) -> String {
    let outer = error.to_string();
    let (_, source) = error.into_parts();
    let mut words = outer;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = source
        .as_deref()
        .map(|s| s as &(dyn std::error::Error + 'static));
    while let Some(inner) = cause {
        words = inner.to_string();
        cause = inner.source();
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_codes_discord_forbids_retrying_are_refusals() {
        assert_eq!(refusal(4004, ""), Some(DiscordError::TokenRejected));
        assert!(matches!(
            refusal(4014, ""),
            Some(DiscordError::DisallowedIntents { .. })
        ));
        assert_eq!(
            refusal(4013, ""),
            Some(DiscordError::Refused {
                code: 4013,
                reason: "Invalid Intents".into()
            })
        );
        assert_eq!(refusal(4000, "x"), None);
        assert_eq!(refusal(4009, "x"), None);
        assert_eq!(refusal(1006, ""), None);
    }
}
