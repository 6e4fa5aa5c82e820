//! One benchmark client: a WebSocket connection from a chosen loopback source
//! address, and the protocol steps that make it a member of the room under test.
//!
//! Only the set-up is protocol-aware: the CL4 handshake (and, for the idle
//! scenario, `setid`), or the Scratch handshake. The replies are parsed as JSON
//! here because set-up happens once per client; the measured part, reading
//! fanned-out messages, is in `fanout.rs` and looks only for the stamp.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::stamp::{PROJECT, Protocol};

/// An open benchmark connection.
pub type Conn = WebSocketStream<TcpStream>;

/// Loopback source addresses the clients are spread over (127.0.0.2 ..= 127.0.0.201).
const SOURCE_ADDRESSES: usize = 200;

/// The source address for client number `i`.
///
/// Spreading clients over many 127.0.0.x addresses keeps the kernel's search
/// for a free ephemeral port short, and keeps thousands of connections (and
/// their TIME_WAIT leftovers from earlier runs) from exhausting the ports of a
/// single source address towards the one server port.
pub fn source_address(i: usize) -> IpAddr {
    IpAddr::from([127, 0, 0, 2 + (i % SOURCE_ADDRESSES) as u8])
}

/// Opens a WebSocket connection to `server` from `source`.
///
/// Buffers are kept small (tungstenite reserves 128 KiB for reading by default,
/// which for 10,000 clients would be more than a gigabyte in the generator).
/// No compression is offered, so neither server compresses.
pub async fn connect(server: SocketAddr, source: IpAddr) -> anyhow::Result<Conn> {
    let socket = TcpSocket::new_v4().context("cannot create a socket")?;
    socket
        .bind(SocketAddr::new(source, 0))
        .with_context(|| format!("cannot bind a client socket to {source}"))?;
    let stream = socket
        .connect(server)
        .await
        .with_context(|| format!("cannot connect to {server}"))?;
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        format!("ws://{server}/"),
        stream,
        Some(config),
    )
    .await
    .with_context(|| format!("WebSocket upgrade with {server} failed"))?;
    Ok(ws)
}

/// Makes client `name` a member of the room under test: for CL4 the
/// handshake (which puts it in `default`), for Scratch the handshake into
/// project [`PROJECT`]. A Scratch handshake has no reply, so that one returns
/// as soon as it is sent.
pub async fn join(ws: &mut Conn, protocol: Protocol, name: &str) -> anyhow::Result<()> {
    match protocol {
        Protocol::Cl4 => {
            send(
                ws,
                r#"{"cmd":"handshake","val":{"language":"Rust","version":"bench"}}"#.to_owned(),
            )
            .await?;
            // Without a listener, the handshake's closing I:100 has none either.
            await_status(ws, None).await.context("CL4 handshake")
        }
        Protocol::Scratch => {
            let handshake = serde_json::json!({
                "method": "handshake",
                "project_id": PROJECT,
                "user": name,
            });
            send(ws, handshake.to_string()).await
        }
    }
}

/// Sets a CL4 client's username (`setid`) and waits for the server's I:100.
pub async fn identify(ws: &mut Conn, name: &str) -> anyhow::Result<()> {
    let setid = serde_json::json!({"cmd": "setid", "val": name, "listener": "bench_setid"});
    send(ws, setid.to_string()).await?;
    await_status(ws, Some("bench_setid"))
        .await
        .context("CL4 setid")
}

/// Sends one text frame.
pub async fn send(ws: &mut Conn, text: String) -> anyhow::Result<()> {
    ws.send(Message::text(text))
        .await
        .context("cannot send to the server")
}

/// Reads until the CL4 status code that answers the request with `listener`
/// (or, for `None`, the first status code without one); fails on an error code.
/// Other messages (user lists, broadcasts) are skipped.
async fn await_status(ws: &mut Conn, listener: Option<&str>) -> anyhow::Result<()> {
    loop {
        let text = next_text(ws).await?;
        let Ok(message) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if message["cmd"] != "statuscode" {
            continue;
        }
        if message.get("listener").and_then(Value::as_str) != listener {
            continue;
        }
        if message["code_id"] == 100 {
            return Ok(());
        }
        bail!("the server answered with an error: {text}");
    }
}

/// The next text frame; fails with the server's reason if it closes.
async fn next_text(ws: &mut Conn) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
            Some(Ok(Message::Close(Some(f)))) => {
                bail!("the server closed the connection: {} {}", f.code, f.reason)
            }
            Some(Ok(Message::Close(None))) | None => bail!("the server closed the connection"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e).context("reading from the server failed"),
        }
    }
}
