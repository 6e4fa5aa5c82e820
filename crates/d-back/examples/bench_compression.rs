//! What permessage-deflate costs and saves, measured in one run on loopback:
//! the bytes of a `server-join` for a 5,000-member Discord server, and fan-out
//! of chat lines to many clients, each with and without compression.
//!
//! ```text
//! cargo run --release --example bench_compression -- [--clients 500] [--secs 5]
//! ```
//!
//! The server runs in this process, built from the library's public API; the
//! clients are raw WebSocket clients that offer permessage-deflate (or not)
//! and count the frames and bytes they receive. Nothing here is asserted: the
//! figures depend on the machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use d_back::{
    ChatMessage, DataProvider, ProviderError, Roster, Server, ServerInfo, ServerList, Status, User,
    async_trait,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Snowflake of the one Discord server served.
const SERVER: &str = "1000";

#[derive(Debug, Parser)]
#[command(about = "permessage-deflate: server-join size and fan-out, with and without")]
struct Args {
    /// Members of the Discord server whose `server-join` is measured.
    #[arg(long, default_value_t = 5000)]
    members: usize,
    /// Clients watching during the fan-out.
    #[arg(long, default_value_t = 500)]
    clients: usize,
    /// Seconds of fan-out per mode.
    #[arg(long, default_value_t = 5)]
    secs: u64,
}

/// One Discord server with many members, each with a name and a role colour.
struct BigGuild {
    members: usize,
}

#[async_trait]
impl DataProvider for BigGuild {
    async fn servers(&self) -> Result<ServerList, ProviderError> {
        let mut list = ServerList::new();
        list.insert(
            SERVER.into(),
            ServerInfo::new("bench", "Benchmark Guild").default_server(),
        );
        Ok(list)
    }

    async fn users(&self, _server: &str) -> Result<Roster, ProviderError> {
        let statuses = [Status::Online, Status::Idle, Status::Dnd, Status::Offline];
        Ok((0..self.members)
            .map(|i| {
                let uid = format!("{}", 300_000_000_000_000_000u64 + i as u64 * 7919);
                let user = User::new(
                    uid.clone(),
                    format!("member-{i}"),
                    statuses[i % 4],
                    format!("#{:06x}", (i * 2_654_435) & 0xff_ffff),
                );
                (uid, user)
            })
            .collect())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = Server::builder()
        .host("127.0.0.1")
        .port(0)
        .provider(BigGuild {
            members: args.members,
        })
        .message_rate(0, 0)
        .bind()
        .await?;
    let addr = server.local_addr();

    let plain = join_bytes(addr, false).await?;
    let compressed = join_bytes(addr, true).await?;
    println!("| figure | without compression | with compression | with/without |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| server-join of {} members, bytes on the wire | {plain} | {compressed} | {:.3}× |",
        args.members,
        compressed as f64 / plain as f64
    );

    for deflate in [false, true] {
        let (messages, bytes) = fan_out(&server, addr, args.clients, args.secs, deflate).await?;
        println!(
            "| fan-out to {} clients, {} | {messages:.0} msgs/s, {:.1} MB/s on the wire | | |",
            args.clients,
            if deflate { "compressed" } else { "plain" },
            bytes / 1e6
        );
    }
    server.shutdown().await;
    Ok(())
}

/// Opens a WebSocket, offering permessage-deflate if asked, and skips the upgrade answer.
async fn open(addr: SocketAddr, deflate: bool) -> anyhow::Result<(TcpStream, Vec<u8>)> {
    let mut tcp = TcpStream::connect(addr).await?;
    let offer = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    } else {
        ""
    };
    let request = format!(
        "GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "the server closed during the upgrade");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            anyhow::ensure!(head.starts_with("http/1.1 101"), "upgrade refused: {head}");
            anyhow::ensure!(
                head.contains("permessage-deflate") == deflate,
                "compression was not negotiated as asked"
            );
            buf.drain(..end + 4);
            return Ok((tcp, buf));
        }
    }
}

/// A masked text frame with an all-zero mask (the payload goes as it is).
fn client_text(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    out.extend_from_slice(payload);
    out
}

/// Length of the first whole frame in `buf`, header included.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let (len, head) = match *buf.get(1)? & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (usize::from(n), 2),
    };
    (buf.len() >= head + len).then_some(head + len)
}

/// Reads whole frames until `count` have arrived; returns their sizes.
async fn read_frames(
    tcp: &mut TcpStream,
    buf: &mut Vec<u8>,
    count: usize,
) -> anyhow::Result<Vec<usize>> {
    let mut sizes = Vec::new();
    while sizes.len() < count {
        if let Some(len) = frame_len(buf) {
            buf.drain(..len);
            sizes.push(len);
            continue;
        }
        let mut chunk = [0u8; 65536];
        let n = tcp.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(sizes)
}

/// Bytes of the `server-join` frame a client receives.
async fn join_bytes(addr: SocketAddr, deflate: bool) -> anyhow::Result<usize> {
    let (mut tcp, mut buf) = open(addr, deflate).await?;
    read_frames(&mut tcp, &mut buf, 1).await?;
    tcp.write_all(&client_text(
        br#"{"type":"connect","data":{"server":"bench"}}"#,
    ))
    .await?;
    Ok(read_frames(&mut tcp, &mut buf, 1).await?[0])
}

/// Broadcasts chat lines flat out for `secs` to `clients` watchers; returns
/// delivered messages per second and bytes per second, over all clients.
async fn fan_out(
    server: &d_back::RunningServer,
    addr: SocketAddr,
    clients: usize,
    secs: u64,
    deflate: bool,
) -> anyhow::Result<(f64, f64)> {
    let frames = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..clients {
        let (mut tcp, mut buf) = open(addr, deflate).await?;
        read_frames(&mut tcp, &mut buf, 1).await?;
        tcp.write_all(&client_text(
            br#"{"type":"connect","data":{"server":"bench"}}"#,
        ))
        .await?;
        read_frames(&mut tcp, &mut buf, 1).await?;
        let (frames, bytes, stop) = (frames.clone(), bytes.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut chunk = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut chunk)).await
                else {
                    continue;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                let (mut seen, mut size) = (0, 0);
                while let Some(len) = frame_len(&buf) {
                    buf.drain(..len);
                    seen += 1;
                    size += len;
                }
                frames.fetch_add(seen, Ordering::Relaxed);
                bytes.fetch_add(size as u64, Ordering::Relaxed);
            }
        }));
    }
    let hub = server.hub();
    let text = "the quick brown fox jumps over the lazy dog, as chat lines in a busy server do";
    let started = Instant::now();
    let (before_frames, before_bytes) = (
        frames.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
    );
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        for _ in 0..16 {
            hub.broadcast_message(
                SERVER,
                ChatMessage {
                    uid: "300000000000000000".into(),
                    message: format!("{text} #{sent}"),
                    channel: "527964146659229701".into(),
                },
            );
            sent += 1;
        }
        tokio::task::yield_now().await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let delivered = frames.load(Ordering::Relaxed) - before_frames;
    let carried = bytes.load(Ordering::Relaxed) - before_bytes;
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.abort();
    }
    // Let the server notice the clients going before the next mode.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok((delivered as f64 / elapsed, carried as f64 / elapsed))
}
