//! Scratch projects shared by several cloudlink nodes through a real
//! redis-server on a free loopback port.

mod common;

use broker::ClusterConfig;
use broker::testing::RedisServer;
use cloudlink::{CloudLink, RunningServer};
use common::{Client, start};
use serde_json::{Value, json};

fn handshake(project: &str, user: &str) -> Value {
    json!({"method": "handshake", "project_id": project, "user": user})
}

fn change(method: &str, name: &str, extra: Value) -> Value {
    let mut message = json!({"method": method, "project_id": "42", "name": name});
    for (key, value) in extra.as_object().unwrap() {
        message[key] = value.clone();
    }
    message
}

/// A node of the cluster `name`, once it reaches Redis.
async fn node(redis: &RedisServer, name: &str) -> RunningServer {
    let cluster = ClusterConfig::new(&redis.url(), name).unwrap();
    let server = start(CloudLink::builder().cluster(cluster)).await;
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while !server
        .cloudlink()
        .cluster_stats()
        .is_some_and(|s| s.connected)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node reaches Redis"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server
}

/// A member of project 42 on `server`, once `server` holds the project.
async fn member(server: &RunningServer, user: &str) -> Client {
    let mut client = Client::connect(&server.url(), user).await;
    client.send(handshake("42", user)).await;
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while server.cloudlink().room_count() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "{user} joined");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    client
}

/// Where a node started as a command answers HTTP.
fn http_address(node: &common::binary::Running) -> std::net::SocketAddr {
    let url = node.url.trim_start_matches("ws://").trim_end_matches('/');
    url.parse().expect("the node's URL is ws://ADDRESS/")
}

/// Proves nothing else is waiting for `client`: its own change of a variable
/// nobody else touches must be the very next message.
async fn nothing_more(client: &mut Client) {
    client
        .send(change("set", "☁ barrier", json!({"value": "end"})))
        .await;
    client
        .expect(json!({"method": "set", "name": "☁ barrier", "value": "end"}))
        .await;
}

#[tokio::test]
async fn members_on_different_nodes_share_a_project_and_a_late_node_reads_it_from_redis() {
    let redis = RedisServer::start();
    let a = node(&redis, "scratch").await;
    let b = node(&redis, "scratch").await;
    let mut on_a = member(&a, "alice").await;
    let mut on_b = member(&b, "bob").await;

    on_a.send(change("set", "☁ score", json!({"value": "0123"})))
        .await;
    let expected = json!({"method": "set", "name": "☁ score", "value": "0123"});
    on_a.expect(expected.clone()).await;
    on_b.expect(expected).await;
    // One change at a time from either node: each reaches both in turn.
    let steps = [
        (1, change("set", "☁ level", json!({"value": 7}))),
        (
            1,
            change("rename", "☁ score", json!({"new_name": "☁ points"})),
        ),
        (0, change("delete", "☁ level", json!({}))),
    ];
    for (sender, message) in steps {
        let mut broadcast = message.clone();
        broadcast.as_object_mut().unwrap().remove("project_id");
        [&mut on_a, &mut on_b][sender].send(message).await;
        on_a.expect(broadcast.clone()).await;
        on_b.expect(broadcast).await;
    }

    // A node started now holds nothing: it reads the project from Redis.
    let c = node(&redis, "scratch").await;
    let mut on_c = member(&c, "carol").await;
    on_c.expect(json!({"method": "set", "name": "☁ points", "value": "0123"}))
        .await;
    on_c.send(change("set", "☁ points", json!({"value": 1.5})))
        .await;
    for client in [&mut on_a, &mut on_b, &mut on_c] {
        client
            .expect(json!({"method": "set", "name": "☁ points", "value": 1.5}))
            .await;
    }
    nothing_more(&mut on_c).await;
}

#[tokio::test]
async fn without_redis_a_node_keeps_its_projects_and_the_others_catch_up_when_it_returns() {
    let mut redis = RedisServer::start();
    let a = node(&redis, "outage").await;
    let b = node(&redis, "outage").await;
    let mut on_a = member(&a, "alice").await;
    let mut on_b = member(&b, "bob").await;
    redis.stop();
    // Its own members go on playing while Redis is away.
    for n in 0..3 {
        on_a.send(change("set", "☁ v", json!({"value": n}))).await;
        on_a.expect(json!({"method": "set", "name": "☁ v", "value": n}))
            .await;
    }
    nothing_more(&mut on_b).await;
    redis.restart();
    // b hears what a did, in a's order, once a is back on Redis.
    for n in 0..3 {
        on_b.expect(json!({"method": "set", "name": "☁ v", "value": n}))
            .await;
    }
    // And a newcomer on b sees the latest value (after b's own barrier).
    let mut late = member(&b, "late").await;
    let mut variables = [late.recv().await, late.recv().await];
    variables.sort_by_key(|v| v["name"].as_str().unwrap().to_owned());
    assert_eq!(
        variables[1],
        json!({"method": "set", "name": "☁ v", "value": 2})
    );
}

#[tokio::test]
async fn the_command_joins_a_cluster_from_its_flags() {
    let redis = RedisServer::start();
    let url = redis.url();
    let args = ["--redis-url", url.as_str(), "--cluster-name", "cmd"];
    let first = common::binary::spawn(&args, &[]).await;
    let second = common::binary::spawn(&args, &[]).await;
    let mut on_first = Client::connect(&first.url, "first").await;
    on_first.send(handshake("42", "first")).await;
    on_first
        .send(change("set", "☁ x", json!({"value": "from the first"})))
        .await;
    on_first
        .expect(json!({"method": "set", "name": "☁ x", "value": "from the first"}))
        .await;
    let mut on_second = Client::connect(&second.url, "second").await;
    on_second.send(handshake("42", "second")).await;
    on_second
        .expect(json!({"method": "set", "name": "☁ x", "value": "from the first"}))
        .await;
    let addr = http_address(&first);
    let (status, metrics) = common::http(addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("cloudlink_cluster_connected 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_admin_api_of_one_node_changes_and_deletes_projects_on_every_node() {
    let redis = RedisServer::start();
    let url = redis.url();
    let args = ["--redis-url", url.as_str(), "--admin-token", "tok"];
    let first = common::binary::spawn(&args, &[]).await;
    let second = common::binary::spawn(&args, &[]).await;
    let mut on_second = Client::connect(&second.url, "second").await;
    on_second.send(handshake("42", "second")).await;
    nothing_more(&mut on_second).await;
    let addr = http_address(&first);
    let auth = [("Authorization", "Bearer tok")];
    let target = "/api/rooms/42/variables/%E2%98%81%20x";
    let (status, _) = common::http(addr, "PUT", target, &auth, r#"{"value": 5}"#).await;
    assert!((200..300).contains(&status), "{status}");
    on_second
        .expect(json!({"method": "set", "name": "☁ x", "value": 5}))
        .await;
    // The first node does not hold project 42; Redis says it exists.
    let (status, _) = common::http(addr, "DELETE", "/api/rooms/42", &auth, "").await;
    assert_eq!(status, 204);
    let (code, _) = on_second.expect_close().await;
    assert_eq!(code, Some(4004));
    let (status, _) = common::http(addr, "DELETE", "/api/rooms/42", &auth, "").await;
    assert_eq!(status, 404, "gone everywhere, Redis included");
}
