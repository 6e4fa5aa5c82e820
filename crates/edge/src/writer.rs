//! The writing half of a connection: drains its [`Outbox`] to the socket.
//!
//! One task per connection runs [`run`]. It takes everything queued in one go
//! and writes it with one flush, pings the client at a steady interval, gives
//! up on a socket whose writes stay blocked (a client that never reads), and
//! ends with the close frame the outbox asks for. Every protocol's session
//! spawns it beside its own reader, so that what a client receives (replies and
//! broadcasts alike) leaves in the order it was queued.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, interval_at, timeout};
use tracing::info;

use crate::outbox::{Next, Outbox};
use crate::ws;

/// How long a close frame may take to leave before the socket is simply dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The writer's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterSettings {
    /// How often the client is pinged; its reader drops it after two silent periods.
    pub ping_interval: Duration,
    /// How long one write may stay blocked before the client counts as gone.
    pub stall_timeout: Duration,
    /// With `Some(period)`, once the outbox is told to
    /// [`batch`](crate::outbox::Outbox::batch), the client gets at most one
    /// frame a period: what queued meanwhile goes out together, its text
    /// messages joined by `\n` in one frame (see [`ws::join_text_frames`]).
    /// `None` writes at once.
    pub batch: Option<Duration>,
}

/// What a protocol wants to count about its writers; both do nothing by default.
pub trait WriteObserver: Send {
    /// A batch of `frames` frames is being written.
    fn sent(&mut self, frames: usize) {
        let _ = frames;
    }

    /// The client stopped reading: a write stayed blocked too long.
    fn stalled(&mut self) {}
}

/// Counts nothing.
impl WriteObserver for () {}

/// Writes `outbox` to `sink` in batches, and pings, until the outbox asks to
/// close or the socket fails; `observer` is told what happened.
pub async fn run<W: AsyncWrite + Unpin>(
    mut sink: W,
    outbox: Arc<Outbox>,
    settings: WriterSettings,
    mut observer: impl WriteObserver,
) {
    let every = settings.ping_interval;
    let mut ping = interval_at(Instant::now() + every, every);
    let mut next_batch = Instant::now();
    loop {
        let batching = || settings.batch.filter(|_| outbox.is_batching());
        if batching().is_some() {
            tokio::time::sleep_until(next_batch).await;
        }
        // A fresh buffer per batch: an idle connection then holds none, and one
        // allocation is small beside the system call that follows.
        let mut out = Vec::new();
        let next = tokio::select! {
            next = outbox.next(&mut out) => next,
            _ = ping.tick() => {
                let written = timeout(settings.stall_timeout, ws::write_all(&mut sink, &ws::ping_frame())).await;
                if ended(written, &settings, &mut observer) {
                    return;
                }
                continue;
            }
        };
        match next {
            Next::Frames(count) => {
                observer.sent(count);
                // Asked again: the protocol may have turned batching on
                // while this writer waited.
                if let Some(period) = batching() {
                    out = ws::join_text_frames(&out);
                    next_batch = Instant::now() + period;
                }
                let written = timeout(settings.stall_timeout, ws::write_all(&mut sink, &out)).await;
                if ended(written, &settings, &mut observer) {
                    return;
                }
            }
            Next::Close(request) => {
                if let Some(code) = request.code {
                    let frame = ws::close_frame(code, &request.reason);
                    let _ = timeout(CLOSE_GRACE, ws::write_all(&mut sink, &frame)).await;
                    let _ = timeout(CLOSE_GRACE, sink.shutdown()).await;
                }
                return;
            }
        }
    }
}

/// Whether a write ended the connection; a client that stopped reading (the
/// write stayed blocked, here or in the edge's stream) is logged and counted.
fn ended(
    written: Result<std::io::Result<()>, tokio::time::error::Elapsed>,
    settings: &WriterSettings,
    observer: &mut impl WriteObserver,
) -> bool {
    match written {
        Ok(Ok(())) => false,
        Ok(Err(error)) if error.kind() != std::io::ErrorKind::TimedOut => true,
        _ => {
            info!(
                "client stopped reading for {:?}; dropping it",
                settings.stall_timeout
            );
            observer.stalled();
            true
        }
    }
}
