//! The clock of a connection: the server pings every client at the ping
//! interval, drops one that stays silent (it stopped answering pings), closes a
//! connection that never says what it is with 1008 after the join deadline, and
//! leaves a client that answers alone; and a client that sends without pause
//! gets its answers as it goes.

mod common;

use std::time::{Duration, Instant};

use cloudlink::{CloudLink, Deadlines, Server};
use common::{Client, Got};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const PING: Duration = Duration::from_millis(150);

/// Opens a WebSocket by hand and sends a Scratch handshake, then never sends
/// another byte, so it answers no ping: what a vanished client looks like.
async fn mute_scratch_client(addr: std::net::SocketAddr) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        socket.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "upgraded");
    let handshake = br#"{"method":"handshake","project_id":"7","user":"mute"}"#;
    let mut frame = vec![0x81, 0x80 | handshake.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(handshake);
    socket.write_all(&frame).await.unwrap();
    socket
}

#[tokio::test]
async fn clients_are_pinged_and_a_silent_one_is_dropped_while_one_that_answers_stays() {
    let server = common::start(CloudLink::builder().ping_interval(PING)).await;
    let url = server.url();
    let _mute = mute_scratch_client(server.local_addr()).await;
    // tungstenite answers every ping it reads with a pong.
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    ws.send(Message::text(
        r#"{"method":"handshake","project_id":"7","user":"alive"}"#,
    ))
    .await
    .unwrap();
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < PING * 2 + Duration::from_secs(2) {
        match tokio::time::timeout(PING * 4, ws.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("the answering client was dropped: {other:?}"),
            Err(_) => panic!("no ping within four ping intervals"),
        }
    }
    assert!(pings >= 5, "pinged every {PING:?}: {pings} pings");
    // Silence is two ping intervals and a second; by now the mute one is gone.
    assert_eq!(
        server.cloudlink().client_count(),
        1,
        "only the answering client is left"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_with_1008_at_the_join_deadline() {
    let server = Server::builder()
        .host("127.0.0.1")
        .port(0)
        .deadlines(Deadlines {
            websocket_join: Duration::from_millis(300),
            ..Deadlines::default()
        })
        .bind(CloudLink::builder().build())
        .await
        .unwrap();
    let url = server.url();
    let started = Instant::now();
    let mut idle = Client::connect(&url, "idle").await;
    assert_eq!(
        idle.next().await,
        Got::Close(Some(1008), "no message in time".to_owned())
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    // One that says what it is in time stays past the deadline.
    let mut real = Client::connect(&url, "real").await;
    real.handshake().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    real.send(serde_json::json!({"cmd": "ping", "listener": "still"}))
        .await;
    assert_eq!(real.recv().await["listener"], "still");
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_sends_without_pause_gets_every_answer_rather_than_being_dropped() {
    // Far more messages than its outbox holds: the answers must go out while
    // the rest are still being read, not all at the end.
    let server = common::start(CloudLink::builder().message_rate(0, 0).outbox_frames(100)).await;
    let mut client = Client::connect(&server.url(), "busy").await;
    client.handshake().await;
    let count = 1_000;
    for i in 0..count {
        client
            .send(serde_json::json!({"cmd": "ping", "listener": i}))
            .await;
    }
    for i in 0..count {
        let answer = client.recv().await;
        assert_eq!(
            (&answer["code_id"], &answer["listener"]),
            (&serde_json::json!(100), &serde_json::json!(i)),
            "every ping answered, in order"
        );
    }
    server.shutdown().await;
}
