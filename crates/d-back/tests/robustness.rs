//! Bad and slow clients, over real sockets: oversized frames, clients that stop
//! reading or go silent, and shutdown with clients still connected.

mod common;

use std::time::{Duration, Instant};

use common::*;
use d_back::{
    CLOSE_GOING_AWAY, CLOSE_TOO_BIG, ChatMessage, MockWorld, PresenceUpdate, Server, Status,
};
use serde_json::json;

fn quiet_world() -> MockWorld {
    MockWorld::new().with_cadence(Duration::ZERO, Duration::ZERO)
}

#[tokio::test]
async fn an_oversized_frame_closes_only_its_sender_with_1009() {
    let server = start(Server::builder().provider(quiet_world())).await;
    let addr = server.local_addr();
    let (mut bystander, _) = Client::joined(addr, "dworld").await;
    let (mut big, _) = Client::joined(addr, "dworld").await;

    // Just under the default 64 KiB limit: an ordinary bad frame, answered and survived.
    big.send_text(&"x".repeat(60 * 1024)).await;
    assert_eq!(error_message(&big.recv().await), "Invalid JSON");

    let padding = "x".repeat(70 * 1024);
    big.send(json!({"type": "connect", "data": {"server": "dworld", "pad": padding}}))
        .await;
    assert_eq!(big.expect_close().await, CLOSE_TOO_BIG);

    server.hub().broadcast_message(
        DWORLD,
        ChatMessage {
            uid: "123456789012345001".into(),
            message: "still here".into(),
            channel: "c".into(),
        },
    );
    assert_eq!(bystander.recv().await["data"]["message"], "still here");
    eventually("the big sender is gone", || server.hub().connections() == 1).await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_frame_limit_is_configurable() {
    let server = start(
        Server::builder()
            .provider(quiet_world())
            .max_frame_bytes(2048),
    )
    .await;
    let (mut client, _) = Client::connect(server.local_addr()).await;
    client.send_text(&"y".repeat(3000)).await;
    assert_eq!(client.expect_close().await, CLOSE_TOO_BIG);
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_delay_the_others() {
    let server = start(
        Server::builder()
            .provider(quiet_world())
            .outbox_frames(32)
            .stall_timeout(Duration::from_millis(500)),
    )
    .await;
    let addr = server.local_addr();
    let hub = server.hub();
    let (_stalled, _) = Client::joined(addr, "dworld").await;
    let (mut healthy, _) = Client::joined(addr, "dworld").await;

    // 16 KiB lines, far more than socket buffers hold: the stalled client's
    // socket fills, its outbox sheds chat, and the healthy client gets every
    // line right after it is sent.
    let line = "z".repeat(16 * 1024);
    for i in 0..1500 {
        hub.broadcast_message(
            DWORLD,
            ChatMessage {
                uid: "123456789012345001".into(),
                message: format!("{i} {line}"),
                channel: "c".into(),
            },
        );
        let frame = healthy.recv().await;
        let text = frame["data"]["message"].as_str().unwrap();
        assert!(
            text.starts_with(&format!("{i} ")),
            "line {i} arrives in order"
        );
    }
    assert!(
        hub.stats().frames_dropped > 0,
        "the stalled client shed frames"
    );
    eventually("the stalled client is dropped", || hub.connections() == 1).await;
    assert!(
        hub.stats().stalled_clients_closed >= 1,
        "a client that stopped reading is counted"
    );
    let metrics = http(addr, "GET", "/metrics").await.text();
    assert!(
        !metrics.contains("d_back_slow_clients_closed_total{reason=\"stalled\"} 0\n"),
        "{metrics}"
    );

    // The survivor is still served.
    hub.broadcast_presence(
        DWORLD,
        PresenceUpdate::new("123456789012345001", Status::Idle),
    );
    assert_eq!(healthy.recv().await["type"], "presence");
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_falls_behind_misses_chat_but_ends_with_every_latest_status() {
    let server = start(Server::builder().provider(quiet_world()).outbox_frames(8)).await;
    let hub = server.hub();
    let (mut late, _) = Client::joined(server.local_addr(), "dworld").await;

    // The client reads nothing while far more than its socket buffers hold is
    // broadcast: 1,500 chat lines of 16 KiB, each after a status change (idle
    // or dnd) for each of two users, and then one last, different status each.
    let users = ["123456789012345001", "123456789012345002"];
    let statuses = [Status::Idle, Status::Dnd];
    let last = [Status::Online, Status::Offline];
    let rounds = 1500;
    let line = "z".repeat(16 * 1024);
    for round in 0..rounds {
        for (u, uid) in users.iter().enumerate() {
            hub.broadcast_presence(DWORLD, PresenceUpdate::new(*uid, statuses[(round + u) % 2]));
        }
        hub.broadcast_message(
            DWORLD,
            ChatMessage {
                uid: users[0].into(),
                message: format!("{round} {line}"),
                channel: "c".into(),
            },
        );
    }
    for (uid, status) in users.iter().zip(last) {
        hub.broadcast_presence(DWORLD, PresenceUpdate::new(*uid, status));
    }
    hub.broadcast_message(
        DWORLD,
        ChatMessage {
            uid: users[0].into(),
            message: "end".into(),
            channel: "c".into(),
        },
    );

    // Then it reads: chat lines in order, some missing, and for each user the
    // status last broadcast.
    let mut latest = std::collections::HashMap::new();
    let (mut lines, mut last_round) = (0, None);
    loop {
        let frame = late.recv().await;
        match frame["type"].as_str() {
            Some("presence") => {
                let uid = frame["data"]["uid"].as_str().unwrap().to_owned();
                latest.insert(uid, frame["data"]["status"].clone());
            }
            Some("message") => {
                let text = frame["data"]["message"].as_str().unwrap();
                if text == "end" {
                    break;
                }
                let round: usize = text.split(' ').next().unwrap().parse().unwrap();
                assert!(
                    last_round < Some(round),
                    "line {round} arrived out of order"
                );
                last_round = Some(round);
                lines += 1;
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert!(lines < rounds, "a client this far behind misses chat lines");
    assert!(
        hub.stats().frames_dropped > 0,
        "the missed lines are counted"
    );
    for (uid, status) in users.iter().zip(last) {
        assert_eq!(
            latest.get(*uid),
            Some(&json!(status)),
            "latest status of {uid}"
        );
    }
    assert_eq!(hub.connections(), 1, "it was not closed");
    server.shutdown().await;
}

#[tokio::test]
async fn silent_clients_are_dropped_and_live_ones_kept() {
    let server = start(
        Server::builder()
            .provider(quiet_world())
            .ping_interval(Duration::from_millis(100)),
    )
    .await;
    let addr = server.local_addr();
    let hub = server.hub();
    // Never polled after the handshake, so it never answers a ping.
    let (silent, _) = Client::connect(addr).await;
    let (mut live, _) = Client::joined(addr, "dworld").await;
    assert_eq!(hub.connections(), 2);
    // The live client reads (and so answers pings) for well over two ping periods.
    assert!(live.next_json(Duration::from_millis(800)).await.is_none());
    eventually("the silent client is dropped", || hub.connections() == 1).await;
    live.join("repos").await;
    drop(silent);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_every_client_with_1001_and_the_server_can_start_again() {
    let server = start(Server::builder().provider(quiet_world())).await;
    let addr = server.local_addr();
    let mut clients = Vec::new();
    for target in ["dworld", "repos", "docs"] {
        clients.push(Client::joined(addr, target).await.0);
    }
    let (idle, _) = Client::connect(addr).await;
    clients.push(idle);

    let started = Instant::now();
    server.shutdown().await;
    let took = started.elapsed();
    for client in &mut clients {
        assert_eq!(client.expect_close().await, CLOSE_GOING_AWAY);
    }
    // The close is immediate; this bound only catches a shutdown that hangs.
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );

    // Same process, same port: serving again works.
    let again = Server::builder()
        .provider(quiet_world())
        .host("127.0.0.1")
        .port(addr.port())
        .bind()
        .await
        .expect("the port is free again");
    let (mut client, _) = Client::joined(again.local_addr(), "dworld").await;
    again.hub().broadcast_message(
        DWORLD,
        ChatMessage {
            uid: "123456789012345001".into(),
            message: "second life".into(),
            channel: "c".into(),
        },
    );
    assert_eq!(client.recv().await["data"]["message"], "second life");
    again.shutdown().await;
}

#[tokio::test]
async fn a_client_breaking_websocket_framing_is_closed_with_1002() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start(Server::builder().provider(quiet_world())).await;
    let addr = server.local_addr();
    let (mut bystander, _) = Client::joined(addr, "dworld").await;

    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    // An unmasked text frame: forbidden from clients by RFC 6455.
    tcp.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut received))
        .await
        .expect("the server ends the connection")
        .unwrap();
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    // The last frame is a close frame (0x88) carrying 1002.
    let close = received
        .windows(4)
        .rposition(|w| w[0] == 0x88 && w[2..4] == 1002u16.to_be_bytes())
        .is_some();
    assert!(
        close,
        "a close frame with 1002 ends the stream: {received:?}"
    );

    server.hub().broadcast_message(
        DWORLD,
        ChatMessage {
            uid: "123456789012345001".into(),
            message: "unaffected".into(),
            channel: "c".into(),
        },
    );
    assert_eq!(bystander.recv().await["data"]["message"], "unaffected");
    server.shutdown().await;
}
