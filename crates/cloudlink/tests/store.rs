//! Durable Scratch cloud variables over real sockets: what a graceful stop,
//! a `kill -9` and an emptied project keep, with the real binary where the
//! promise is about the process.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cloudlink::{CloudLink, VariableStore};
use common::binary::{Running, run, spawn};
use common::{Client, Got, start};
use serde_json::{Value, json};
use tokio::process::Command;

fn handshake(project: &str, user: &str) -> Value {
    json!({"method": "handshake", "project_id": project, "user": user})
}

fn set(project: &str, name: &str, value: Value) -> Value {
    json!({"method": "set", "project_id": project, "name": name, "value": value})
}

fn got_set(name: &str, value: Value) -> Value {
    json!({"method": "set", "name": name, "value": value})
}

async fn signal(server: &Running, name: &str) {
    let pid = server.child.id().expect("still running").to_string();
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .await
        .unwrap();
    assert!(sent.success(), "kill -{name} {pid}");
}

/// Every variable a new member of `project` is sent on joining, in order.
/// A set of a barrier variable to a value never used before marks the end
/// of them; the barrier itself is left out.
async fn stored(url: &str, project: &str) -> Vec<(String, Value)> {
    static BARRIERS: AtomicU64 = AtomicU64::new(0);
    let barrier = json!(format!("end {}", BARRIERS.fetch_add(1, Ordering::Relaxed)));
    let mut client = Client::connect(url, "reader").await;
    client.send(handshake(project, "reader")).await;
    client.send(set(project, BARRIER, barrier.clone())).await;
    let mut variables = Vec::new();
    loop {
        let message = client.recv().await;
        assert_eq!(message["method"], "set", "{message}");
        let name = message["name"].as_str().unwrap().to_owned();
        if name == BARRIER {
            if message["value"] == barrier {
                return variables;
            }
            continue;
        }
        variables.push((name, message["value"].clone()));
    }
}

/// The variable [`stored`] sets to know the replay has ended.
const BARRIER: &str = "end of replay";

#[tokio::test]
async fn sigint_and_sigterm_lose_nothing_that_was_broadcast() {
    for stop in ["INT", "TERM"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cloud.redb");
        let path = path.to_str().unwrap();
        // No flush before the stop: only the stop's own write can save them.
        let args = ["--store", path, "--flush-interval-ms", "600000"];
        let server = spawn(&args, &[]).await;
        let mut writer = Client::connect(&server.url, "writer").await;
        writer.send(handshake("1000", "writer")).await;
        let values = [
            ("☁ text", json!("012")),
            ("☁ float", json!(1.5)),
            ("☁ int", json!(7)),
            ("☁ big", json!("1e400")),
            ("☁ letters", json!("hello, world")),
        ];
        for (name, value) in &values {
            writer.send(set("1000", name, value.clone())).await;
            writer.expect(got_set(name, value.clone())).await;
        }
        signal(&server, stop).await;
        assert_eq!(writer.expect_close().await.0, Some(1001));
        let mut server = server;
        let status = tokio::time::timeout(common::WAIT, server.child.wait())
            .await
            .expect("it stops in time")
            .unwrap();
        assert_eq!(status.code(), Some(0), "SIG{stop}");

        let again = spawn(&args, &[]).await;
        let got = stored(&again.url, "1000").await;
        let expected: Vec<(String, Value)> = values
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.clone()))
            .collect();
        assert_eq!(
            got, expected,
            "after SIG{stop}: every value, as sent, in order"
        );
    }
}

#[tokio::test]
async fn kill_9_loses_at_most_the_last_flush_interval_and_the_store_opens_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloud.redb");
    let path = path.to_str().unwrap();
    // No rate limit: the writer sends as fast as the server answers.
    let args = [
        "--store",
        path,
        "--flush-interval-ms",
        "100",
        "--message-rate",
        "0",
    ];
    // A change this much older than the kill must be there: ten flush
    // intervals, so a busy machine's late flush does not fail the test.
    let margin = Duration::from_secs(1);
    let mut highest = 0u64;
    for round in 0..3u64 {
        let mut server = spawn(&args, &[]).await;
        let mut writer = Client::connect(&server.url, "writer").await;
        writer.send(handshake("7", "writer")).await;
        let mut acknowledged: Vec<(Instant, u64)> = Vec::new();
        let until = Instant::now() + margin + Duration::from_millis(300 + 150 * round);
        while Instant::now() < until {
            highest += 1;
            writer.send(set("7", "☁ counter", json!(highest))).await;
            loop {
                match writer.next().await {
                    Got::Json(m) if m == got_set("☁ counter", json!(highest)) => break,
                    Got::Json(m) if m["name"] == "☁ counter" => continue,
                    other => panic!("round {round}: unexpected {other:?}"),
                }
            }
            acknowledged.push((Instant::now(), highest));
        }
        server.child.start_kill().unwrap();
        let killed_at = Instant::now();
        server.child.wait().await.unwrap();
        let must_have = acknowledged
            .iter()
            .rev()
            .find(|(at, _)| killed_at.duration_since(*at) >= margin)
            .map_or(0, |(_, n)| *n);

        let again = spawn(&args, &[]).await;
        let got = stored(&again.url, "7").await;
        let counter = got
            .iter()
            .find(|(name, _)| name == "☁ counter")
            .and_then(|(_, v)| v.as_u64())
            .expect("the counter is stored");
        assert!(
            counter >= must_have && counter <= highest,
            "round {round}: stored {counter}; acknowledged {must_have} a second before the kill, {highest} in all"
        );
        drop(again);
    }
}

#[tokio::test]
async fn an_emptied_project_leaves_memory_and_comes_back_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = VariableStore::open(dir.path().join("cloud.redb")).unwrap();
    let server = start(
        CloudLink::builder()
            .store(store)
            .flush_interval(Duration::from_millis(50))
            .empty_room_ttl(Duration::ZERO),
    )
    .await;
    let url = server.url();
    let mut writer = Client::connect(&url, "writer").await;
    writer.send(handshake("55", "writer")).await;
    writer.send(set("55", "☁ kept", json!("yes"))).await;
    writer.expect(got_set("☁ kept", json!("yes"))).await;
    assert_eq!(server.cloudlink().room_count(), 1);
    writer.close().await;

    let deadline = Instant::now() + common::WAIT;
    while server.cloudlink().room_count() > 0 {
        assert!(
            Instant::now() < deadline,
            "the emptied project left memory after a flush"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = stored(&url, "55").await;
    assert_eq!(got, vec![("☁ kept".to_owned(), json!("yes"))]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_flush_of_more_projects_than_one_batch_stores_them_all_and_lets_them_go() {
    // More than two of the flush's batches of rooms per hold of the lock.
    const PROJECTS: usize = 150;
    let dir = tempfile::tempdir().unwrap();
    let store = VariableStore::open(dir.path().join("cloud.redb")).unwrap();
    let server = start(
        CloudLink::builder()
            .store(store)
            .flush_interval(Duration::from_secs(600))
            .empty_room_ttl(Duration::ZERO),
    )
    .await;
    let url = server.url();
    for project in 0..PROJECTS {
        let project = project.to_string();
        let mut writer = Client::connect(&url, "writer").await;
        writer.send(handshake(&project, "writer")).await;
        writer.send(set(&project, "☁ n", json!(project))).await;
        writer.expect(got_set("☁ n", json!(project))).await;
        writer.close().await;
    }
    // The server notices the last closes in its own time.
    let deadline = Instant::now() + common::WAIT;
    loop {
        server.cloudlink().flush().await.unwrap();
        if server.cloudlink().room_count() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "every emptied project leaves memory once the store has it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for project in (0..PROJECTS).step_by(7).chain([PROJECTS - 1]) {
        let project = project.to_string();
        let got = stored(&url, &project).await;
        assert_eq!(got, vec![("☁ n".to_owned(), json!(project))]);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn without_a_store_an_emptied_project_forgets_its_variables() {
    let server = start(CloudLink::builder()).await;
    assert!(!server.cloudlink().is_durable());
    let url = server.url();
    let mut writer = Client::connect(&url, "writer").await;
    writer.send(handshake("56", "writer")).await;
    writer.send(set("56", "☁ gone", json!(1))).await;
    writer.expect(got_set("☁ gone", json!(1))).await;
    writer.close().await;
    let deadline = Instant::now() + common::WAIT;
    while server.cloudlink().room_count() > 0 {
        assert!(Instant::now() < deadline, "the emptied project is dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stored(&url, "56").await.is_empty());
}

#[tokio::test]
async fn a_store_in_use_by_another_server_stops_the_start_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloud.redb");
    let path = path.to_str().unwrap();
    let _first = spawn(&["--store", path], &[]).await;
    let (code, text) = run(&["--port", "0", "--store", path]).await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("another process has it open") && text.contains("--store"),
        "{text}"
    );
}

#[tokio::test]
async fn at_the_room_limit_a_project_kept_only_for_the_store_gives_way() {
    let dir = tempfile::tempdir().unwrap();
    let store = VariableStore::open(dir.path().join("cloud.redb")).unwrap();
    let server = start(CloudLink::builder().store(store).max_rooms(2)).await;
    let url = server.url();
    let mut left = Client::connect(&url, "left").await;
    left.send(handshake("a", "left")).await;
    left.send(set("a", "v", json!(1))).await;
    left.expect(got_set("v", json!(1))).await;
    left.close().await;
    let mut stays = Client::connect(&url, "stays").await;
    stays.send(handshake("b", "stays")).await;
    assert_eq!(stored(&url, "b").await, vec![]);
    // "a" is empty but kept for the store; a new project takes its place.
    let mut newcomer = Client::connect(&url, "newcomer").await;
    newcomer.send(handshake("c", "newcomer")).await;
    newcomer.send(set("c", "w", json!(2))).await;
    newcomer.expect(got_set("w", json!(2))).await;
    // Two live projects: a third is refused.
    let mut refused = Client::connect(&url, "refused").await;
    refused.send(handshake("a", "again")).await;
    assert_eq!(refused.expect_close().await.0, Some(4003));
    stays.close().await;
    let deadline = Instant::now() + common::WAIT;
    while server.cloudlink().client_count() > 1 {
        assert!(Instant::now() < deadline, "the client of b has not left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // "b" is now empty and gives way in turn; "a" comes back from the store
    // with its variable.
    assert_eq!(stored(&url, "a").await, vec![("v".to_owned(), json!(1))]);
}
