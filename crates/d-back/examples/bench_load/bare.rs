//! The bare reference: a WebSocket server that does no protocol work at all.
//!
//! It accepts WebSocket connections on any path and writes every broadcast to
//! every client: one frame of the same shape and size as d-back's `message`,
//! encoded once per broadcast and shared through a `tokio::sync::broadcast`
//! ring, each connection writing whatever is waiting with one flush. No
//! server-list, no join, no roster, no per-client queue of its own: it shows
//! what tokio + tungstenite reach on this machine with no protocol work, and
//! d-back is reported as a ratio to it. Its producer behaves like
//! `examples/bench_server.rs` (bursts and a yield, or a fixed rate, once the
//! client count has held still for half a second).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::SinkExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Frames a connection may fall behind by before it misses some (as d-back's chat feed).
const RING: usize = 256;
/// Broadcasts between two yields when running flat out (as the d-back producer).
const BURST: usize = 16;
/// How long the client count must hold still before broadcasting (as the d-back producer).
const SETTLE: Duration = Duration::from_millis(500);

/// Serves until killed.
pub async fn serve(port: u16, rate: Option<f64>) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let (tx, _) = broadcast::channel::<Utf8Bytes>(RING);
    tokio::spawn(produce(tx.clone(), rate));
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(connection(stream, tx.subscribe()));
    }
}

async fn connection(stream: TcpStream, mut frames: broadcast::Receiver<Utf8Bytes>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    loop {
        match frames.recv().await {
            Ok(frame) => {
                if ws.feed(Message::Text(frame)).await.is_err() {
                    return;
                }
            }
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        }
        loop {
            match frames.try_recv() {
                Ok(frame) => {
                    if ws.feed(Message::Text(frame)).await.is_err() {
                        return;
                    }
                }
                Err(TryRecvError::Lagged(_)) => continue,
                Err(_) => break,
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}

fn frame(n: usize) -> Utf8Bytes {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let uid = 2000 + n % 10;
    format!(
        r#"{{"type":"message","server":"1000","data":{{"uid":"{uid}","message":"t={nanos}","channel":"bench"}}}}"#
    )
    .into()
}

/// Whether anyone is connected and nobody came or went for [`SETTLE`].
struct Settled {
    clients: usize,
    since: Instant,
}

impl Settled {
    fn check(&mut self, tx: &broadcast::Sender<Utf8Bytes>) -> bool {
        let now = tx.receiver_count();
        if now != self.clients {
            self.clients = now;
            self.since = Instant::now();
        }
        now > 0 && self.since.elapsed() >= SETTLE
    }
}

async fn produce(tx: broadcast::Sender<Utf8Bytes>, rate: Option<f64>) {
    let mut n = 0usize;
    let mut settled = Settled {
        clients: 0,
        since: Instant::now(),
    };
    match rate {
        Some(r) if r <= 0.0 => {}
        Some(r) => {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / r));
            loop {
                tick.tick().await;
                if settled.check(&tx) {
                    let _ = tx.send(frame(n));
                    n += 1;
                }
            }
        }
        None => loop {
            if !settled.check(&tx) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            for _ in 0..BURST {
                let _ = tx.send(frame(n));
                n += 1;
            }
            tokio::task::yield_now().await;
        },
    }
}
