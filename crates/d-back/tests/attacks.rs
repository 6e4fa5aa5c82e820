//! Holding under attack, over real sockets: connections that never earn their
//! place are dropped at their deadlines, one address (or many) holding silent
//! connections cannot lock anyone else out, stalled TLS handshakes do not
//! delay other clients' handshakes, slow watchers keep users' names and are
//! resynchronised instead of dropped, and SIGTERM keeps its promise.
//!
//! Counts and durations are bounded and every address is on loopback.

mod common;

use std::time::{Duration, Instant};

use common::binary::{signal, spawn, wait_exit};
use common::*;
use d_back::{ChatMessage, Deadlines, MockWorld, PresenceUpdate, Server, Status};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

fn quiet_world() -> MockWorld {
    MockWorld::new().with_cadence(Duration::ZERO, Duration::ZERO)
}

/// Deadlines short enough for a test to watch them pass.
fn short_deadlines() -> Deadlines {
    Deadlines {
        tls_handshake: Duration::from_millis(400),
        request_head: Duration::from_millis(400),
        websocket_join: Duration::from_millis(600),
        ..Deadlines::default()
    }
}

/// Well past each short deadline, but far short of waiting forever.
const DROPPED_BY: Duration = Duration::from_secs(5);

#[tokio::test]
async fn connections_that_say_nothing_or_too_little_are_dropped_at_their_deadlines() {
    let server = start(
        Server::builder()
            .provider(quiet_world())
            .deadlines(short_deadlines()),
    )
    .await;
    let addr = server.local_addr();

    // A TCP connection that never sends a byte.
    let mut silent = connect_from("127.0.0.1", addr).await.unwrap();
    // A request head sent one header at a time, too slowly (slowloris).
    let mut slow = connect_from("127.0.0.1", addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let dripping = tokio::spawn(async move {
        for i in 0..100 {
            if slow
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return Some(slow);
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        None
    });
    // A keep-alive connection that answered one request, then went idle.
    let mut idle = connect_from("127.0.0.1", addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // A WebSocket that never sends `connect`.
    let (mut unjoined, _) = Client::connect(addr).await;
    // A WebSocket that joined is a real client: the join deadline is not for it.
    let (mut joined, _) = Client::joined(addr, "dworld").await;

    assert!(
        closed_within(&mut silent, DROPPED_BY).await.is_some(),
        "a silent connection is dropped"
    );
    assert!(
        closed_within(&mut idle, DROPPED_BY).await.is_some(),
        "an idle keep-alive connection is dropped"
    );
    let slow = tokio::time::timeout(DROPPED_BY, dripping)
        .await
        .expect("the slow request is cut off")
        .unwrap();
    assert!(slow.is_some(), "the server stopped taking the slow head");
    assert_eq!(unjoined.expect_close().await, 1008, "no connect, no place");

    tokio::time::sleep(short_deadlines().websocket_join * 2).await;
    server.hub().broadcast_presence(
        DWORLD,
        PresenceUpdate::new("123456789012345001", Status::Dnd),
    );
    assert_eq!(joined.recv_type("presence").await["data"]["status"], "dnd");

    let metrics = http(addr, "GET", "/metrics").await.text();
    for deadline in ["request_head", "websocket_join"] {
        assert!(
            metrics.contains(&format!(
                "d_back_deadline_drops_total{{deadline=\"{deadline}\"}}"
            )),
            "{deadline} drops are counted:\n{metrics}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_silent_tls_connection_is_dropped_at_the_handshake_deadline() {
    let (_dir, cert_path, key_path, cert) = tls_files();
    let server = start(
        Server::builder()
            .provider(quiet_world())
            .tls(&cert_path, &key_path)
            .deadlines(short_deadlines()),
    )
    .await;
    let addr = server.local_addr();
    let mut silent = connect_from("127.0.0.1", addr).await.unwrap();
    assert!(closed_within(&mut silent, DROPPED_BY).await.is_some());

    // An honest client is still served.
    let tcp = connect_from("127.0.0.1", addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tls_connector(&cert.cert)
        .connect(name, tcp)
        .await
        .expect("a real handshake finishes");
    server.shutdown().await;
}

/// Opens `count` silent connections from `source`; those the server turns
/// away at once are not kept.
async fn hold_silent(
    source: &str,
    addr: std::net::SocketAddr,
    count: usize,
) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::new();
    for _ in 0..count {
        if let Ok(stream) = connect_from(source, addr).await {
            held.push(stream);
        }
    }
    held
}

/// Whether `/healthz` answers 200 to a client at `source`.
async fn healthy_from(source: &str, addr: std::net::SocketAddr) -> bool {
    let Ok(mut stream) = connect_from(source, addr).await else {
        return false;
    };
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut reply = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut reply);
    tokio::time::timeout(PATIENCE, read).await.is_ok()
        && String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200")
}

#[tokio::test]
async fn with_few_file_descriptors_silent_connections_lock_nobody_out() {
    // The server may open 200 files; its budget is 200 less a reserve of 64,
    // a quarter of that per address.
    let (mut child, addr) = spawn_with_fd_limit(200);

    // One address tries to hold 150 connections: it gets its quarter, and
    // the rest are answered 429 at once.
    let mut one = hold_silent("127.0.0.2", addr, 150).await;
    let mut turned_away = 0;
    for stream in &mut one {
        if closed_within(stream, Duration::from_millis(50))
            .await
            .is_some()
        {
            turned_away += 1;
        }
    }
    assert!(
        turned_away >= 100,
        "only a share is held ({turned_away} turned away)"
    );
    assert!(
        healthy_from("127.0.0.1", addr).await,
        "/healthz still answers"
    );
    let (mut browser, _) = Client::joined(addr, "dworld").await;

    // Many addresses together hold more than the whole budget: the oldest
    // connections that never did anything make room for newcomers.
    let mut many = Vec::new();
    for n in 10..16 {
        many.extend(hold_silent(&format!("127.0.0.{n}"), addr, 30).await);
    }
    assert!(
        healthy_from("127.0.0.1", addr).await,
        "/healthz still answers"
    );
    let (_second, _) = Client::joined(addr, "dworld").await;
    browser
        .ws
        .send(Message::Ping(vec![1].into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(PATIENCE, browser.ws.next()).await;
    assert!(
        matches!(pong, Ok(Some(Ok(Message::Pong(_))))),
        "a browser that joined is never evicted: {pong:?}"
    );
    let metrics = http(addr, "GET", "/metrics").await.text();
    assert!(metrics.contains("d_back_connections_refused_total{reason=\"per_ip\"}"));
    assert!(!metrics.contains("d_back_evictions_total 0\n"), "{metrics}");

    drop((one, many));
    signal(&child, "TERM");
    assert_eq!(wait_exit(&mut child), 0);
}

/// Starts the `d_back` binary under `prlimit` with at most `files` open files.
fn spawn_with_fd_limit(files: u32) -> (std::process::Child, std::net::SocketAddr) {
    let prlimit = ["/usr/bin/prlimit", "/bin/prlimit"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("this test needs prlimit (util-linux)");
    let program = common::binary::d_back().get_program().to_owned();
    let limit = format!("--nofile={files}:{files}");
    let mut child = std::process::Command::new(prlimit)
        .arg(limit)
        .arg(program)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--mock-presence-every",
            "0",
            "--mock-message-every",
            "0",
        ])
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("prlimit runs d_back");
    let addr = common::binary::announced_address(&mut child);
    (child, addr)
}

#[tokio::test]
async fn stalled_tls_handshakes_do_not_delay_another_address() {
    raise_open_files_limit();
    let (_dir, cert_path, key_path, cert) = tls_files();
    let server = start(
        Server::builder()
            .provider(quiet_world())
            .tls(&cert_path, &key_path)
            .deadlines(Deadlines {
                tls_handshake: Duration::from_secs(10),
                ..Deadlines::default()
            }),
    )
    .await;
    let addr = server.local_addr();
    // 600 handshakes that never send a byte, from 40 addresses (15 each,
    // under the per-address limit of 16, so each one is in flight).
    let mut stalled = Vec::new();
    for n in 0..40 {
        stalled.extend(hold_silent(&format!("127.0.1.{n}"), addr, 15).await);
    }
    assert_eq!(stalled.len(), 600);

    let connector = tls_connector(&cert.cert);
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut slowest = Duration::ZERO;
    for _ in 0..12 {
        let started = Instant::now();
        let tcp = connect_from("127.0.0.1", addr).await.unwrap();
        tokio::time::timeout(PATIENCE, connector.connect(name.clone(), tcp))
            .await
            .expect("the handshake finishes in time")
            .expect("the handshake succeeds");
        slowest = slowest.max(started.elapsed());
    }
    println!("slowest of 12 honest TLS handshakes beside 600 stalled ones: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(3),
        "an honest handshake waited {slowest:?} behind stalled ones (their deadline is 10 s)"
    );

    // One address cannot stall more than its share of handshakes.
    let mut greedy = hold_silent("127.0.2.1", addr, 20).await;
    let mut closed = 0;
    for stream in &mut greedy {
        if closed_within(stream, Duration::from_millis(100))
            .await
            .is_some()
        {
            closed += 1;
        }
    }
    assert_eq!(
        closed, 4,
        "16 handshakes in flight per address, the rest closed"
    );
    drop(stalled);
    server.shutdown().await;
}

/// A watcher that reads nothing while 16 KiB chat lines fill its socket, so
/// that what follows piles up in its outbox.
async fn stalled_watcher(server: &d_back::RunningServer) -> Client {
    let (client, _) = Client::joined(server.local_addr(), "dworld").await;
    let line = "z".repeat(16 * 1024);
    for i in 0..1500 {
        server.hub().broadcast_message(
            DWORLD,
            ChatMessage {
                uid: "123456789012345001".into(),
                message: format!("{i} {line}"),
                channel: "c".into(),
            },
        );
    }
    client
}

#[tokio::test]
async fn a_slow_watcher_keeps_a_new_users_name_when_presences_collapse() {
    let server = start(Server::builder().provider(quiet_world()).outbox_frames(4)).await;
    let hub = server.hub();
    let mut slow = stalled_watcher(&server).await;
    // Three users change, filling the outbox to one below capacity...
    for uid in [
        "123456789012345001",
        "123456789012345002",
        "123456789012345003",
    ] {
        hub.broadcast_presence(DWORLD, PresenceUpdate::new(uid, Status::Idle));
    }
    // ...a newcomer arrives with a name and colour, filling it...
    hub.broadcast_presence(
        DWORLD,
        PresenceUpdate::new("newbie", Status::Online)
            .with_username("Newbie")
            .with_role_color("#123456"),
    );
    // ...and then changes status twice: both collapse into the queued arrival.
    hub.broadcast_presence(DWORLD, PresenceUpdate::new("newbie", Status::Dnd));
    hub.broadcast_presence(DWORLD, PresenceUpdate::new("newbie", Status::Idle));
    hub.broadcast_presence(DWORLD, PresenceUpdate::removed("123456789012345003"));
    hub.broadcast_presence(
        DWORLD,
        PresenceUpdate::new("123456789012345003", Status::Online).with_username("Back again"),
    );
    hub.broadcast_presence(
        DWORLD,
        PresenceUpdate::new("123456789012345003", Status::Dnd),
    );
    hub.broadcast_message(
        DWORLD,
        ChatMessage {
            uid: "newbie".into(),
            message: "end".into(),
            channel: "c".into(),
        },
    );

    let mut newbie = None;
    let mut third = None;
    let mut lines = 0;
    loop {
        let frame = slow.recv().await;
        if frame["type"] == "message" {
            lines += 1;
            if frame["data"]["message"] == "end" {
                break;
            }
            continue;
        }
        assert_eq!(frame["type"], "presence", "no resync was needed: {frame}");
        match frame["data"]["uid"].as_str() {
            Some("newbie") => newbie = Some(frame["data"].clone()),
            Some("123456789012345003") => third = Some(frame["data"].clone()),
            _ => {}
        }
    }
    assert!(lines > 0);
    let newbie = newbie.expect("the newcomer's presence arrives");
    assert_eq!(newbie["status"], "idle", "the latest status wins");
    assert_eq!(newbie["username"], "Newbie", "the name survives");
    assert_eq!(newbie["roleColor"], "#123456", "the colour survives");
    let third = third.expect("the re-added user's presence arrives");
    assert_eq!(third["status"], "dnd");
    assert_eq!(
        third["username"], "Back again",
        "removed then re-added: present, named"
    );
    assert!(third.get("delete").is_none(), "{third}");
    assert!(hub.stats().frames_dropped > 0, "collapses are counted");
    server.shutdown().await;
}

#[tokio::test]
async fn a_flooded_slow_watcher_is_resynchronised_not_dropped() {
    let server = start(Server::builder().provider(quiet_world()).outbox_frames(4)).await;
    let hub = server.hub();
    let mut slow = stalled_watcher(&server).await;
    // Far more distinct users change than the outbox holds.
    for i in 0..50 {
        hub.broadcast_presence(
            DWORLD,
            PresenceUpdate::new(format!("flood{i}"), Status::Online)
                .with_username(format!("Flood {i}")),
        );
    }
    hub.broadcast_presence(
        DWORLD,
        PresenceUpdate::new("123456789012345001", Status::Dnd),
    );
    hub.broadcast_message(
        DWORLD,
        ChatMessage {
            uid: "123456789012345001".into(),
            message: "end".into(),
            channel: "c".into(),
        },
    );
    // The slow client's view: the last server-join it got, with every later
    // presence applied, as the d-zone client does.
    let mut roster = serde_json::Map::new();
    let mut joins = 0;
    loop {
        let frame = slow.recv().await;
        match frame["type"].as_str() {
            Some("message") if frame["data"]["message"] == "end" => break,
            Some("message") | Some("presence") => {}
            Some("server-join") => joins += 1,
            other => panic!("unexpected frame {other:?}"),
        }
        apply_to_roster(&mut roster, &frame);
    }
    assert!(
        joins >= 1,
        "a fresh server-join replaced the queued presences"
    );
    let (_fresh, join) = Client::joined(server.local_addr(), "dworld").await;
    let expected = join["data"]["users"].as_object().unwrap();
    assert_eq!(
        statuses(&roster),
        statuses(expected),
        "it ends where a new joiner starts"
    );
    assert_eq!(hub.connections(), 2, "the slow watcher is still connected");
    assert!(hub.stats().resynchronised >= 1);
    server.shutdown().await;
}

#[test]
fn sigterm_under_a_slowloris_exits_within_two_seconds_and_closes_websockets_with_1001() {
    let (mut child, addr) = spawn(
        &[
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--mock-message-every",
            "0",
        ],
        &[],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // 50 connections each sending a request head a byte at a time.
        let mut slow = Vec::new();
        for _ in 0..50 {
            let mut stream = connect_from("127.0.0.1", addr).await.unwrap();
            stream.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
            slow.push(stream);
        }
        let (mut browser, _) = Client::joined(addr, "dworld").await;
        let started = Instant::now();
        signal(&child, "TERM");
        assert_eq!(browser.expect_close().await, 1001);
        let code = tokio::task::block_in_place(|| wait_exit(&mut child));
        let took = started.elapsed();
        println!("exited {took:?} after SIGTERM");
        assert_eq!(code, 0);
        assert!(took < Duration::from_secs(2), "took {took:?}");
        drop(slow);
    });
}

/// This test holds over a thousand sockets (both ends of 600 connections):
/// lift the soft open-files limit to the hard one, as a server operator would.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit).expect("the open-files limit can be raised");
}

#[tokio::test]
async fn the_port_closes_when_shutdown_starts_even_with_connections_in_flight() {
    let server = start(Server::builder().provider(quiet_world())).await;
    let addr = server.local_addr();
    let _silent = connect_from("127.0.0.1", addr).await.unwrap();
    let (_browser, _) = Client::joined(addr, "dworld").await;
    server.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "nothing listens on the port after shutdown"
    );
}
