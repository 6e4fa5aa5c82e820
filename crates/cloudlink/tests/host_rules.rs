//! The host's rules for Scratch clients, with the real binary: a username
//! filter, project allow and block lists, a required `User-Agent`, and a
//! SIGHUP that puts changed files in force, closing only whom they refuse.

mod common;

use std::path::Path;

use common::binary::{Running, spawn};
use common::{Client, Got};
use serde_json::{Value, json};
use tokio::process::Command;

const AGENT: (&str, &str) = ("User-Agent", "host-rules-test/1 (test@example.org)");

fn handshake(project: &str, user: &str) -> Value {
    json!({"method": "handshake", "project_id": project, "user": user})
}

async fn joined(url: &str, project: &str, user: &str) -> Client {
    let mut client = Client::connect_with(url, user, &[AGENT]).await;
    client.send(handshake(project, user)).await;
    let name = format!("here {user}");
    client
        .send(json!({"method": "set", "project_id": project, "name": name, "value": 1}))
        .await;
    // The project's stored variables come first; the client's own set ends them.
    while client.recv().await != json!({"method": "set", "name": name, "value": 1}) {}
    client
}

async fn refused(url: &str, project: &str, user: &str) -> Option<u16> {
    let mut client = Client::connect_with(url, user, &[AGENT]).await;
    client.send(handshake(project, user)).await;
    client.expect_close().await.0
}

async fn hang_up(server: &Running) {
    let pid = server.child.id().unwrap().to_string();
    let sent = Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .await
        .unwrap();
    assert!(sent.success());
}

/// Waits for a log line containing `text`.
async fn logged(server: &mut Running, text: &str) -> String {
    tokio::time::timeout(common::WAIT, async {
        while let Some(line) = server.logs.recv().await {
            if line.contains(text) {
                return line;
            }
        }
        panic!("cloudlink ended before logging {text:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no log line with {text:?}"))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn a_reload_closes_only_the_clients_the_new_rules_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let (names, blocked) = (dir.path().join("names"), dir.path().join("blocked"));
    write(&names, "# one pattern a line\nbadword\n");
    write(&blocked, "666\n");
    let args = [
        "--username-filter",
        names.to_str().unwrap(),
        "--project-block",
        blocked.to_str().unwrap(),
    ];
    let mut server = spawn(&args, &[]).await;
    let url = server.url.clone();
    assert_eq!(refused(&url, "1", "B-a_D.word").await, Some(4002));
    assert_eq!(refused(&url, "666", "fine").await, Some(4004));
    let mut stays = joined(&url, "1", "alice").await;
    let mut goes = joined(&url, "2", "bob").await;
    let mut renamed = joined(&url, "3", "carol").await;

    write(&blocked, "666\n2\n");
    write(&names, "badword\ncarol\n");
    hang_up(&server).await;
    logged(&mut server, "host rules reloaded").await;
    assert_eq!(goes.expect_close().await.0, Some(4004));
    assert_eq!(renamed.expect_close().await.0, Some(4002));
    // Alice is admitted by the new rules and was not disturbed.
    stays
        .send(json!({"method": "set", "project_id": "1", "name": "v", "value": 2}))
        .await;
    stays
        .expect(json!({"method": "set", "name": "v", "value": 2}))
        .await;

    // A file that does not parse keeps the rules in force.
    write(&names, "(unclosed\n");
    hang_up(&server).await;
    let line = logged(&mut server, "host rules not reloaded").await;
    assert!(line.contains("names:1"), "{line}");
    assert_eq!(refused(&url, "1", "carol").await, Some(4002));
    joined(&url, "1", "dave").await;
}

#[tokio::test]
async fn an_allow_list_admits_only_its_projects() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("allowed");
    write(&allowed, "100\n");
    let server = spawn(&["--project-allow", allowed.to_str().unwrap()], &[]).await;
    joined(&server.url, "100", "a").await;
    assert_eq!(refused(&server.url, "101", "b").await, Some(4004));
}

#[tokio::test]
async fn without_a_user_agent_a_client_is_told_why_and_closed_with_4006() {
    let server = spawn(&["--require-user-agent"], &[]).await;
    let mut anonymous = Client::connect(&server.url, "anonymous").await;
    anonymous.send(handshake("1", "a")).await;
    match anonymous.next().await {
        Got::Text(text) => assert!(text.contains("User-Agent"), "{text}"),
        other => panic!("expected the reason first, got {other:?}"),
    }
    assert_eq!(anonymous.expect_close().await.0, Some(4006));
    joined(&server.url, "1", "named").await;
}

#[tokio::test]
async fn a_rule_file_that_does_not_parse_stops_the_start_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let names = dir.path().join("names");
    write(&names, "ok\n\n[z-a]\n");
    let (code, text) =
        common::binary::run(&["--port", "0", "--username-filter", names.to_str().unwrap()]).await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("names:3: not a regular expression"), "{text}");
}
