//! Cluster mode: several nodes, one real redis-server on a free loopback
//! port, browsers over real sockets on every node.

mod common;
#[path = "common/fake_discord.rs"]
mod fake_discord;

use std::time::Duration;

use broker::testing::RedisServer;
use common::binary::{spawn, wait_exit};
use common::*;
use d_back::provider::{ServerSettings, Store};
use d_back::{
    ChatMessage, ClusterConfig, DataProvider, MockWorld, PresenceUpdate, RunningServer, Server,
    ServerInfo, ServerList, Status, User,
};
use serde_json::{Value, json};

const NELLY: &str = "123456789012345002";
const SOUNDBOT: &str = "123456789012345001";

/// A node of the cluster `name` on the built-in world, without its simulator,
/// that has reached Redis.
async fn node(redis: &RedisServer, name: &str) -> RunningServer {
    let world = MockWorld::new().with_cadence(Duration::ZERO, Duration::ZERO);
    let cluster = ClusterConfig::new(&redis.url(), name).unwrap();
    let server = start(Server::builder().provider(world).cluster(cluster)).await;
    let addr = server.local_addr();
    wait_until(addr, "/readyz", "ready").await;
    server
}

/// Waits until `GET path` answers 200 with a body containing `needle`.
async fn wait_until(addr: std::net::SocketAddr, path: &str, needle: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let response = http(addr, "GET", path).await;
        if response.status == 200 && response.text().contains(needle) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} did not say {needle:?} within {PATIENCE:?}: {} {}",
            response.status,
            response.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn chat(uid: &str, text: &str) -> ChatMessage {
    ChatMessage {
        uid: uid.into(),
        message: text.into(),
        channel: "c1".into(),
    }
}

/// The next `n` presence and message frames a client gets, as short strings.
async fn changes(client: &mut Client, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let frame = client.recv().await;
        match frame["type"].as_str() {
            Some("presence") => seen.push(format!(
                "{}={}",
                frame["data"]["uid"], frame["data"]["status"]
            )),
            Some("message") => seen.push(format!("say {}", frame["data"]["message"])),
            _ => {}
        }
    }
    seen
}

#[tokio::test]
async fn changes_made_on_any_node_reach_browsers_on_every_node_in_one_order() {
    let redis = RedisServer::start();
    let nodes = [
        node(&redis, "order").await,
        node(&redis, "order").await,
        node(&redis, "order").await,
    ];
    let mut browsers = Vec::new();
    for node in &nodes {
        browsers.push(Client::joined(node.local_addr(), "dworld").await.0);
    }
    // Two nodes change the same world at the same time.
    let statuses = [Status::Online, Status::Idle, Status::Dnd, Status::Offline];
    let writers: Vec<_> = nodes[..2]
        .iter()
        .enumerate()
        .map(|(n, node)| {
            let hub = node.hub();
            tokio::spawn(async move {
                for i in 0..40 {
                    if i % 2 == 0 {
                        hub.broadcast_presence(
                            DWORLD,
                            PresenceUpdate::new(NELLY, statuses[(i / 2 + n) % 4]),
                        );
                    } else {
                        hub.broadcast_message(
                            DWORLD,
                            chat(SOUNDBOT, &format!("node {n} line {i}")),
                        );
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let first = changes(&mut browsers[0], 80).await;
    for browser in &mut browsers[1..] {
        assert_eq!(
            changes(browser, 80).await,
            first,
            "every node shows the same sequence"
        );
    }
    for n in 0..2 {
        let lines: Vec<_> = first
            .iter()
            .filter(|c| c.contains(&format!("node {n} ")))
            .collect();
        let expected: Vec<_> = (1..40)
            .step_by(2)
            .map(|i| format!("say \"node {n} line {i}\""))
            .collect();
        assert_eq!(
            lines,
            expected.iter().collect::<Vec<_>>(),
            "node {n}'s lines in its order"
        );
    }
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn a_browser_joining_a_late_node_sees_the_current_statuses() {
    let redis = RedisServer::start();
    let a = node(&redis, "late").await;
    let (mut watcher, _) = Client::joined(a.local_addr(), "repos").await;
    // Nobody watches dworld anywhere: its changes live in Redis only.
    a.hub()
        .broadcast_presence(DWORLD, PresenceUpdate::new(NELLY, Status::Dnd));
    a.hub().broadcast_presence(
        DWORLD,
        PresenceUpdate::new("999000000000000001", Status::Online).with_username("newcomer"),
    );
    // Removed, then a nameless update that must not bring the user back.
    let mut left = PresenceUpdate::new(SOUNDBOT, Status::Offline);
    left.delete = true;
    a.hub().broadcast_presence(DWORLD, left);
    a.hub()
        .broadcast_presence(DWORLD, PresenceUpdate::new(SOUNDBOT, Status::Online));
    a.hub().broadcast_client_id(DWORLD, "777");
    // The log has one order: once a change that came after them is back, they are in Redis.
    a.hub().broadcast_client_id(REPOS, "1");
    watcher.recv_type("update-clientid").await;
    let users = |join: &Value| join["data"]["users"].clone();
    // Started after the changes, like a node that restarts.
    let c = node(&redis, "late").await;
    let (_, join) = Client::joined(c.local_addr(), "dworld").await;
    assert_eq!(users(&join)[NELLY]["status"], "dnd", "{join}");
    assert_eq!(users(&join)["999000000000000001"]["username"], "newcomer");
    assert!(
        users(&join).get(SOUNDBOT).is_none(),
        "the removal stands: {join}"
    );
    assert_eq!(join["data"]["clientId"], "777");
    // And the node that made them shows the same world.
    watcher
        .send(json!({"type": "connect", "data": {"server": "dworld"}}))
        .await;
    let again = watcher.recv_type("server-join").await;
    assert_eq!(users(&again), users(&join));
    a.shutdown().await;
    c.shutdown().await;
}

#[tokio::test]
async fn without_redis_each_node_keeps_its_world_and_once_it_returns_the_others_catch_up() {
    let mut redis = RedisServer::start();
    let a = node(&redis, "outage").await;
    let b = node(&redis, "outage").await;
    let (mut on_a, _) = Client::joined(a.local_addr(), "dworld").await;
    let (mut on_b, _) = Client::joined(b.local_addr(), "dworld").await;
    redis.stop();
    // The first changes may still be tried on the lost connection; none is lost here.
    for status in [Status::Idle, Status::Dnd, Status::Online] {
        a.hub()
            .broadcast_presence(DWORLD, PresenceUpdate::new(NELLY, status));
        assert_eq!(
            changes(&mut on_a, 1).await,
            [format!("\"{NELLY}\"={}", json!(status))]
        );
    }
    wait_until(a.local_addr(), "/healthz", "Redis unreachable").await;
    let metrics = http(a.local_addr(), "GET", "/metrics").await.text();
    assert!(metrics.contains("d_back_cluster_connected 0"), "{metrics}");
    assert_eq!(
        http(a.local_addr(), "GET", "/readyz").await.status,
        200,
        "a node that lost Redis still serves"
    );
    assert!(
        on_b.next_json(QUIET).await.is_none(),
        "b cannot hear a without Redis"
    );
    redis.restart();
    wait_until(a.local_addr(), "/healthz", "cluster: connected").await;
    wait_until(b.local_addr(), "/healthz", "cluster: connected").await;
    b.hub()
        .broadcast_presence(DWORLD, PresenceUpdate::new(NELLY, Status::Offline));
    let offline = format!("\"{NELLY}\"=\"offline\"");
    assert_eq!(changes(&mut on_a, 1).await, std::slice::from_ref(&offline));
    // b first catches up on what a did while Redis was away, in a's order.
    let caught_up: Vec<String> = ["idle", "dnd", "online"]
        .iter()
        .map(|status| format!("\"{NELLY}\"=\"{status}\""))
        .chain([offline])
        .collect();
    assert_eq!(changes(&mut on_b, 4).await, caught_up);
    let metrics = http(a.local_addr(), "GET", "/metrics").await.text();
    assert!(metrics.contains("d_back_cluster_connected 1"), "{metrics}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn command_nodes_share_changes_and_one_killed_with_sigkill_leaves_the_others_serving() {
    let redis = RedisServer::start();
    let args = [
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--redis-url",
        &redis.url(),
        "--cluster-name",
        "procs",
    ];
    let envs = [
        ("D_BACK_DATA", "examples/world.toml"),
        ("D_BACK_INGEST_TOKEN", "t"),
    ];
    let (a, a_addr) = spawn(&args, &envs);
    let mut a = Killed(a);
    let (b, b_addr) = spawn(&args, &envs);
    let _b = Killed(b);
    wait_until(a_addr, "/readyz", "ready").await;
    wait_until(b_addr, "/readyz", "ready").await;
    let (mut on_b, _) = Client::joined(b_addr, "dworld").await;
    let post = |addr, status: &str| {
        let body = format!(r#"{{"uid":"{NELLY}","status":"{status}"}}"#);
        async move {
            let path = format!("/api/ingest/servers/{DWORLD}/presence");
            let response = http_with(
                addr,
                "POST",
                &path,
                &[("Authorization", "Bearer t")],
                body.as_bytes(),
            )
            .await;
            assert_eq!(response.status, 200, "{}", response.text());
        }
    };
    post(a_addr, "dnd").await;
    assert_eq!(
        changes(&mut on_b, 1).await,
        [format!("\"{NELLY}\"=\"dnd\"")]
    );
    a.0.kill().unwrap();
    wait_exit(&mut a.0);
    post(b_addr, "online").await;
    assert_eq!(
        changes(&mut on_b, 1).await,
        [format!("\"{NELLY}\"=\"online\"")]
    );
    // A node started in the killed one's place sees the world as it is.
    let (a2, a2_addr) = spawn(&args, &envs);
    let _a2 = Killed(a2);
    wait_until(a2_addr, "/readyz", "ready").await;
    let (_, join) = Client::joined(a2_addr, "dworld").await;
    assert_eq!(join["data"]["users"][NELLY]["status"], "online");
}

/// A node process, killed when the test ends, also when it fails.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A node serving `store` in the cluster `name`, ready (its store has caught up).
async fn store_node(redis: &RedisServer, name: &str, store: &Store) -> RunningServer {
    let cluster = ClusterConfig::new(&redis.url(), name).unwrap();
    let server = start(Server::builder().provider(store.clone()).cluster(cluster)).await;
    store.attach(server.hub());
    wait_until(server.local_addr(), "/readyz", "ready").await;
    server
}

fn guild_list(entries: &[(&str, &str)]) -> ServerList {
    entries
        .iter()
        .map(|(snowflake, id)| {
            (
                snowflake.to_string(),
                ServerInfo::new(*id, format!("Guild {id}")),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_stores_of_every_node_hold_one_world_and_a_late_node_reads_it() {
    let redis = RedisServer::start();
    // The first node's store (its data file, say) becomes the cluster's.
    let first = Store::new();
    first.replace_servers(guild_list(&[("1000", "guild")]));
    first
        .replace_users("1000", [User::new("7", "alice", Status::Online, "#e91e63")])
        .unwrap();
    let a = store_node(&redis, "stores", &first).await;
    let second = Store::new();
    let b = store_node(&redis, "stores", &second).await;
    assert!(second.has_server("1000"), "b read the cluster's store");
    let (mut on_b, join) = Client::joined(b.local_addr(), "guild").await;
    assert_eq!(join["data"]["users"]["7"]["username"], "alice");

    // A change on a reaches b's browser and b's store.
    first
        .presence("1000", PresenceUpdate::new("7", Status::Idle))
        .unwrap();
    assert_eq!(changes(&mut on_b, 1).await, ["\"7\"=\"idle\""]);
    assert_eq!(
        second.users("1000").await.unwrap()["7"].status,
        Status::Idle
    );
    // A server listed on b can take users at once, and a sees both.
    second.upsert_server("2000", ServerInfo::new("other", "Other"));
    second
        .replace_users("2000", [User::new("8", "bob", Status::Dnd, "#ffffff")])
        .unwrap();
    second.set_client_id(Some("1000"), "4242").unwrap();
    first.set_settings("1000", ServerSettings { hide_offline: true });
    first
        .presence("1000", PresenceUpdate::new("7", Status::Offline))
        .unwrap();
    // Hidden when offline: browsers are told alice left.
    let left = on_b.recv_type("presence").await;
    assert_eq!(
        left["data"],
        json!({"uid": "7", "status": "offline", "delete": true})
    );
    eventually("a's store has b's server and its users", || {
        first.has_server("2000") && first.is_member("2000", "8")
    })
    .await;

    // A node that starts now reads all of it.
    let third = Store::new();
    let c = store_node(&redis, "stores", &third).await;
    let list = third.servers().await.unwrap();
    assert_eq!(list.keys().collect::<Vec<_>>(), ["1000", "2000"]);
    assert!(list["1000"].default);
    assert!(
        third.is_member("1000", "7"),
        "offline members are still members"
    );
    assert!(
        third.users("1000").await.unwrap().is_empty(),
        "hidden while offline"
    );
    assert_eq!(
        third.settings("1000"),
        ServerSettings { hide_offline: true }
    );
    assert_eq!(
        third.client_id("1000").await.unwrap().as_deref(),
        Some("4242")
    );
    assert_eq!(third.users("2000").await.unwrap()["8"].status, Status::Dnd);
    for node in [a, b, c] {
        node.shutdown().await;
    }
}

const GUILD: &str = "700000000000000001";

fn guild_create(bob: &str) -> Value {
    let member = |id: &str, name: &str| json!({"user": {"id": id, "username": name, "global_name": null}, "roles": [], "nick": null});
    let presence =
        |id: &str, status: &str| json!({"user": {"id": id}, "guild_id": GUILD, "status": status});
    json!({
        "id": GUILD,
        "name": "Test Guild",
        "large": false,
        "roles": [{"id": GUILD, "name": "@everyone", "color": 0, "position": 0}],
        "members": [member("1001", "alice"), member("1002", "bob")],
        "presences": [presence("1001", "online"), presence("1002", bob)],
    })
}

#[tokio::test]
async fn the_discord_connection_moves_to_another_node_when_its_node_is_killed() {
    let redis = RedisServer::start();
    let mut fake = fake_discord::FakeDiscord::start().await;
    let (gateway, api, url) = (fake.gateway_url(), fake.api_url(), redis.url());
    let args = [
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--redis-url",
        &url,
        "--cluster-name",
        "bot",
        "--discord-gateway-url",
        &gateway,
        "--discord-api-url",
        &api,
    ];
    let envs = [("DISCORD_TOKEN", "bot-token-for-tests")];
    let mut nodes: Vec<(Killed, std::net::SocketAddr)> = (0..3)
        .map(|_| {
            let (child, addr) = spawn(&args, &envs);
            (Killed(child), addr)
        })
        .collect();
    // Exactly one node connects the bot.
    let (conn, _identify) = fake.accept_and_ready_in("session-1", &[GUILD]).await;
    conn.dispatch("GUILD_CREATE", 2, guild_create("idle"));
    let mut browsers = Vec::new();
    for (_, addr) in &nodes {
        wait_until(*addr, "/readyz", "ready").await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let join = loop {
            // The guild reaches each node's store through the cluster.
            let (mut client, list) = Client::connect(*addr).await;
            if list["data"].get(GUILD).is_some() {
                break (client.join("test-guild").await, client);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the guild reached {addr}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            join.0["data"]["users"]["1002"]["status"], "idle",
            "{}",
            join.0
        );
        browsers.push(join.1);
    }
    assert!(
        fake.next_connection_within(QUIET).await.is_none(),
        "a second node connected the bot"
    );

    // Kill the node holding the lease, as a crash would.
    let watcher = broker::Broker::start(ClusterConfig::new(&url, "bot").unwrap()).0;
    let holder = watcher
        .lease_holder("discord")
        .await
        .unwrap()
        .expect("someone holds the lease");
    let leader = nodes
        .iter()
        .position(|(child, _)| holder.contains(&format!("/{}/", child.0.id())))
        .expect("the holder is one of the nodes");
    let (mut killed, _) = nodes.remove(leader);
    browsers.remove(leader);
    let killed_at = tokio::time::Instant::now();
    killed.0.kill().unwrap();
    wait_exit(&mut killed.0);

    let mut conn = fake
        .next_connection_within(Duration::from_secs(15))
        .await
        .expect("another node connects the bot within 15 s");
    conn.expect_op(2).await;
    let took_over = killed_at.elapsed();
    conn.dispatch("READY", 1, fake.ready("session-2", &[GUILD]));
    conn.dispatch("GUILD_CREATE", 2, guild_create("dnd"));
    conn.dispatch(
        "PRESENCE_UPDATE",
        3,
        json!({"user": {"id": "1001"}, "guild_id": GUILD, "status": "idle"}),
    );
    for browser in &mut browsers {
        // The new connection's view of bob, and alice's change after it.
        let mut last = std::collections::HashMap::new();
        while last.get("\"1001\"").map(String::as_str) != Some("\"idle\"") {
            let change = changes(browser, 1).await.remove(0);
            let (uid, status) = change.split_once('=').unwrap();
            last.insert(uid.to_owned(), status.to_owned());
        }
        assert_eq!(
            last.get("\"1002\"").map(String::as_str),
            Some("\"dnd\""),
            "{last:?}"
        );
    }
    assert!(
        took_over < Duration::from_secs(15),
        "took over after {took_over:?}"
    );
}
