//! One bot's connection to the Discord gateway, kept alive for as long as the
//! source runs: hello, identify (or resume), heartbeats, dispatches, and a new
//! connection whenever Discord asks for one or the old one dies.
//!
//! Written here on tokio-tungstenite rather than taken from the twilight family
//! because d-back needs a dozen dispatch types, must be pointed at a plain
//! `ws://` fake in its tests (twilight's only URL knob is a gateway-proxy mode
//! that changes how the shard behaves), and should not pay twilight-model's
//! compile time in every CI run. The protocol part is small and documented by
//! Discord; what this module must never do is reconnect in a tight loop, log
//! the token, or go on after Discord refused the bot (those end the source).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::events::Mapper;
use super::{DiscordConfig, DiscordError, INTENTS};

/// How long to wait for the socket to open and for `HELLO`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Close code we send when we want to resume later (1000/1001 would end the session).
const CLOSE_TO_RESUME: u16 = 4000;

const OP_DISPATCH: u8 = 0;
const OP_HEARTBEAT: u8 = 1;
const OP_IDENTIFY: u8 = 2;
const OP_RESUME: u8 = 6;
const OP_RECONNECT: u8 = 7;
const OP_INVALID_SESSION: u8 = 9;
const OP_HELLO: u8 = 10;
const OP_HEARTBEAT_ACK: u8 = 11;

/// A gateway payload as Discord frames it.
#[derive(Deserialize)]
struct Payload {
    op: u8,
    #[serde(default)]
    d: Value,
    #[serde(default)]
    s: Option<u64>,
    #[serde(default)]
    t: Option<String>,
}

/// What is needed to resume a session on a new connection.
struct Session {
    id: String,
    /// Where Discord wants resumes to go.
    resume_url: String,
    /// Last dispatch sequence number seen.
    seq: Option<u64>,
}

/// How one connection ended.
enum Ending {
    /// Connect again; resume the session if `resume`, else identify afresh.
    Reconnect { resume: bool, why: String },
    /// Discord refused the bot; stop.
    Fatal(DiscordError),
    /// The source was stopped.
    Stopped,
}

/// Runs connections until stopped or refused; reports the first `READY` (or refusal) on `ready`.
pub(super) async fn run(
    config: DiscordConfig,
    mut mapper: Mapper,
    stop: CancellationToken,
    ready: oneshot::Sender<Result<(), DiscordError>>,
) {
    let mut ready = Some(ready);
    let mut session: Option<Session> = None;
    let mut failures = 0u32;
    loop {
        let mut healthy = false;
        let url = session
            .as_ref()
            .map_or(config.gateway_url.as_str(), |s| s.resume_url.as_str());
        let url = versioned(url);
        let ending = tokio::select! {
            _ = stop.cancelled() => Ending::Stopped,
            ending = connection(&config, &url, &mut session, &mut mapper, &mut ready, &stop, &mut healthy) => ending,
        };
        match ending {
            Ending::Stopped => return,
            Ending::Fatal(error) => {
                match ready.take() {
                    Some(ready) => {
                        let _ = ready.send(Err(error));
                    }
                    None => warn!("the Discord source stopped: {error}"),
                }
                return;
            }
            Ending::Reconnect { resume, why } => {
                if !resume {
                    session = None;
                }
                if ready.is_some() && why.starts_with("cannot connect") {
                    // Never connected at all: the operator should hear it now, not in a log later.
                    let _ = ready.take().map(|r| {
                        r.send(Err(DiscordError::Unreachable {
                            url: config.gateway_url.clone(),
                            reason: why.clone(),
                        }))
                    });
                    return;
                }
                if healthy {
                    // This connection worked for a while; back off from the start again.
                    failures = 0;
                }
                failures = failures.saturating_add(1);
                let backoff = (Duration::from_millis(500)
                    * 2u32.saturating_pow(failures.min(8) - 1))
                .min(MAX_BACKOFF);
                info!(
                    resume,
                    ?backoff,
                    "reconnecting to the Discord gateway: {why}"
                );
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = sleep(backoff) => {}
                }
            }
        }
    }
}

/// One WebSocket connection, from handshake to its end.
async fn connection(
    config: &DiscordConfig,
    url: &str,
    session: &mut Option<Session>,
    mapper: &mut Mapper,
    ready: &mut Option<oneshot::Sender<Result<(), DiscordError>>>,
    stop: &CancellationToken,
    healthy: &mut bool,
) -> Ending {
    let socket = match timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url)).await {
        Ok(Ok((socket, _))) => socket,
        Ok(Err(error)) => return reconnect(true, format!("cannot connect to {url}: {error}")),
        Err(_) => return reconnect(true, format!("cannot connect to {url}: no answer")),
    };
    let (mut sink, mut stream) = socket.split();
    let send = |payload: Value| Message::text(payload.to_string());

    let hello = match timeout(CONNECT_TIMEOUT, next_payload(&mut stream)).await {
        Ok(Ok(Some(p))) if p.op == OP_HELLO => p,
        Ok(Err(ending)) => return ending,
        _ => return reconnect(true, "the gateway did not say hello".into()),
    };
    let every = Duration::from_millis(
        hello.d["heartbeat_interval"]
            .as_u64()
            .unwrap_or(41_250)
            .max(100),
    );
    let greeting = match session {
        Some(s) => json!({"op": OP_RESUME, "d": {
            "token": config.token, "session_id": s.id, "seq": s.seq,
        }}),
        None => json!({"op": OP_IDENTIFY, "d": {
            "token": config.token,
            "intents": INTENTS,
            "properties": {"os": std::env::consts::OS, "browser": "d-back", "device": "d-back"},
        }}),
    };
    if sink.send(send(greeting)).await.is_err() {
        return reconnect(true, "the gateway closed before we identified".into());
    }

    // Discord asks for the first beat after a random part of the interval.
    let first = every.mul_f64(rand::random::<f64>());
    let mut heartbeat = interval_at(Instant::now() + first, every);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut acked = true;
    loop {
        let payload = tokio::select! {
            _ = stop.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                return Ending::Stopped;
            }
            _ = heartbeat.tick() => {
                if !acked {
                    let _ = sink.send(close_to_resume()).await;
                    return reconnect(true, "the gateway stopped acknowledging heartbeats".into());
                }
                acked = false;
                let seq = session.as_ref().and_then(|s| s.seq);
                if sink.send(send(json!({"op": OP_HEARTBEAT, "d": seq}))).await.is_err() {
                    return reconnect(true, "the connection broke".into());
                }
                continue;
            }
            payload = next_payload(&mut stream) => payload,
        };
        let payload = match payload {
            Ok(Some(payload)) => payload,
            Ok(None) => continue,
            Err(ending) => return ending,
        };
        match payload.op {
            OP_DISPATCH => {
                if let (Some(seq), Some(s)) = (payload.s, session.as_mut()) {
                    s.seq = Some(seq);
                }
                let kind = payload.t.unwrap_or_default();
                match kind.as_str() {
                    "READY" => {
                        let id = payload.d["session_id"].as_str().unwrap_or_default();
                        let resume_url = payload.d["resume_gateway_url"]
                            .as_str()
                            .unwrap_or(&config.gateway_url);
                        *session = Some(Session {
                            id: id.to_owned(),
                            resume_url: resume_url.to_owned(),
                            seq: payload.s,
                        });
                        *healthy = true;
                        let guilds = payload.d["guilds"].as_array().map_or(0, Vec::len);
                        info!(guilds, "connected to Discord");
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(Ok(()));
                        }
                    }
                    "RESUMED" => {
                        *healthy = true;
                        info!("resumed the Discord session");
                    }
                    _ => {
                        for request in mapper.dispatch(&kind, payload.d) {
                            if sink.send(send(request)).await.is_err() {
                                return reconnect(true, "the connection broke".into());
                            }
                        }
                    }
                }
            }
            OP_HEARTBEAT => {
                let seq = session.as_ref().and_then(|s| s.seq);
                let _ = sink.send(send(json!({"op": OP_HEARTBEAT, "d": seq}))).await;
            }
            OP_HEARTBEAT_ACK => acked = true,
            OP_RECONNECT => {
                let _ = sink.send(close_to_resume()).await;
                return reconnect(true, "Discord asked for a new connection".into());
            }
            OP_INVALID_SESSION => {
                let resumable = payload.d.as_bool().unwrap_or(false);
                let _ = sink.send(close_to_resume()).await;
                if !resumable {
                    // Discord asks for a pause of 1–5 s before identifying again.
                    sleep(Duration::from_millis(1000 + rand::random::<u64>() % 4000)).await;
                }
                return reconnect(resumable, "Discord invalidated the session".into());
            }
            other => debug!(op = other, "gateway opcode ignored"),
        }
    }
}

/// The next payload, `Ok(None)` for frames that carry none, or how the connection ended.
async fn next_payload<S>(stream: &mut S) -> Result<Option<Payload>, Ending>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    match stream.next().await {
        None => Err(reconnect(true, "the gateway closed the connection".into())),
        Some(Err(error)) => Err(reconnect(true, format!("the connection broke: {error}"))),
        Some(Ok(Message::Text(text))) => match serde_json::from_str(text.as_str()) {
            Ok(payload) => Ok(Some(payload)),
            Err(error) => {
                warn!(%error, "unreadable gateway payload ignored");
                Ok(None)
            }
        },
        Some(Ok(Message::Close(frame))) => Err(closed(frame)),
        Some(Ok(_)) => Ok(None),
    }
}

/// What a close code from Discord means for us.
fn closed(frame: Option<CloseFrame>) -> Ending {
    let Some(frame) = frame else {
        return reconnect(true, "the gateway closed the connection".into());
    };
    let code = u16::from(frame.code);
    let reason = frame.reason.to_string();
    match code {
        4004 => Ending::Fatal(DiscordError::TokenRejected),
        4014 => Ending::Fatal(DiscordError::DisallowedIntents {
            missing: Vec::new(),
        }),
        4010..=4013 => Ending::Fatal(DiscordError::Refused { code, reason }),
        // Bad sequence or timed-out session: start a new one.
        4007 | 4009 => reconnect(
            false,
            format!("Discord closed the session ({code} {reason})"),
        ),
        _ => reconnect(
            true,
            format!("the gateway closed the connection ({code} {reason})"),
        ),
    }
}

/// The gateway URL with the API version and encoding we speak.
fn versioned(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let separator = if url.contains('?') {
        "&"
    } else if after_scheme.contains('/') {
        "?"
    } else {
        "/?"
    };
    format!("{url}{separator}v=10&encoding=json")
}

fn reconnect(resume: bool, why: String) -> Ending {
    Ending::Reconnect { resume, why }
}

fn close_to_resume() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(CLOSE_TO_RESUME),
        reason: "reconnecting".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::versioned;

    #[test]
    fn the_version_is_added_to_any_gateway_url() {
        assert_eq!(
            versioned("wss://gateway.discord.gg"),
            "wss://gateway.discord.gg/?v=10&encoding=json"
        );
        assert_eq!(
            versioned("ws://127.0.0.1:5/resume"),
            "ws://127.0.0.1:5/resume?v=10&encoding=json"
        );
        assert_eq!(versioned("ws://h/?x=1"), "ws://h/?x=1&v=10&encoding=json");
    }
}
