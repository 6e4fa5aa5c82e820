//! The hub over real sockets: who receives which broadcast, what a late joiner
//! sees, many clients at once, and the built-in world's shared simulator.

mod common;

use std::time::Duration;

use common::*;
use d_back::{
    ChatMessage, DataProvider, MOCK_CHANNEL, MockWorld, PresenceUpdate, ProviderError, Roster,
    Server, ServerInfo, ServerList, Status, async_trait,
};
use serde_json::json;

/// The built-in world without its simulator, so tests see only their own broadcasts.
fn quiet_world() -> MockWorld {
    MockWorld::new().with_cadence(Duration::ZERO, Duration::ZERO)
}

fn chat(uid: &str, text: &str) -> ChatMessage {
    ChatMessage {
        uid: uid.into(),
        message: text.into(),
        channel: "c1".into(),
    }
}

#[tokio::test]
async fn broadcasts_reach_only_the_watchers_of_their_server() {
    let server = start(Server::builder().provider(quiet_world())).await;
    let addr = server.local_addr();
    let hub = server.hub();
    let (mut on_dworld, _) = Client::joined(addr, "dworld").await;
    let (mut on_repos, _) = Client::joined(addr, "repos").await;
    let (mut not_joined, _) = Client::connect(addr).await;

    let reached = hub.broadcast_message(DWORLD, chat("123456789012345001", "hi dworld"));
    assert_eq!(reached, 1);
    let frame = on_dworld.recv().await;
    assert_eq!(
        frame,
        json!({"type": "message", "server": DWORLD,
            "data": {"uid": "123456789012345001", "message": "hi dworld", "channel": "c1"}})
    );
    hub.broadcast_presence(
        REPOS,
        PresenceUpdate::new("423456789012345001", Status::Dnd),
    );
    hub.broadcast_client_id(REPOS, "55");
    // What repos' watcher gets next is repos' own frames, so dworld's never reached it.
    let frame = on_repos.recv().await;
    assert_eq!(
        frame,
        json!({"type": "presence", "server": REPOS,
            "data": {"uid": "423456789012345001", "status": "dnd"}})
    );
    let frame = on_repos.recv().await;
    assert_eq!(
        frame,
        json!({"type": "update-clientid", "server": REPOS, "data": {"clientId": "55"}})
    );
    assert!(not_joined.next_json(QUIET).await.is_none());
    assert!(on_dworld.next_json(QUIET).await.is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn a_second_connect_switches_servers() {
    let server = start(Server::builder().provider(quiet_world())).await;
    let hub = server.hub();
    let (mut client, _) = Client::joined(server.local_addr(), "dworld").await;
    assert_eq!(hub.watchers(DWORLD), 1);
    client.join("repos").await;
    assert_eq!(hub.watchers(DWORLD), 0);
    assert_eq!(hub.watchers(REPOS), 1);
    assert_eq!(hub.broadcast_message(DWORLD, chat("1", "lost")), 0);
    hub.broadcast_message(REPOS, chat("423456789012345001", "found"));
    assert_eq!(client.recv().await["data"]["message"], "found");
    server.shutdown().await;
}

#[tokio::test]
async fn a_late_joiner_sees_the_current_world() {
    let server = start(Server::builder().provider(quiet_world())).await;
    let addr = server.local_addr();
    let hub = server.hub();
    let (mut first, join) = Client::joined(addr, "dworld").await;
    assert_eq!(join["data"]["users"]["123456789012345003"]["status"], "dnd");
    hub.broadcast_presence(
        DWORLD,
        PresenceUpdate::new("123456789012345003", Status::Offline),
    );
    hub.broadcast_presence(
        DWORLD,
        PresenceUpdate::new("555", Status::Idle)
            .with_username("newcomer")
            .with_role_color("#abcdef"),
    );
    hub.broadcast_presence(DWORLD, PresenceUpdate::removed("123456789012345004"));
    hub.broadcast_client_id(DWORLD, "4242");
    for _ in 0..4 {
        first.recv().await;
    }

    let (_late, join) = Client::joined(addr, "dworld").await;
    let users = &join["data"]["users"];
    assert_eq!(users["123456789012345003"]["status"], "offline");
    assert_eq!(
        users["555"],
        json!({"uid": "555", "username": "newcomer", "status": "idle", "roleColor": "#abcdef"})
    );
    assert!(
        users.get("123456789012345004").is_none(),
        "deleted users are gone"
    );
    assert_eq!(users.as_object().unwrap().len(), 4);
    assert_eq!(join["data"]["clientId"], "4242");
    server.shutdown().await;
}

#[tokio::test]
async fn two_hundred_clients_join_at_once_and_all_receive_a_broadcast() {
    let server = start(Server::builder().provider(quiet_world())).await;
    let addr = server.local_addr();
    let hub = server.hub();
    let joins = (0..200).map(|i| async move {
        let target = ["dworld", "repos"][i % 2];
        Client::joined(addr, target).await.0
    });
    let mut clients = futures_util::future::join_all(joins).await;
    assert_eq!(hub.connections(), 200);
    assert_eq!(hub.watchers(DWORLD) + hub.watchers(REPOS), 200);
    assert_eq!(
        hub.broadcast_message(DWORLD, chat("123456789012345001", "all")),
        100
    );
    assert_eq!(
        hub.broadcast_message(REPOS, chat("423456789012345001", "all")),
        100
    );
    let received = futures_util::future::join_all(clients.iter_mut().map(|c| c.recv())).await;
    assert!(received.iter().all(|f| f["data"]["message"] == "all"));
    drop(clients);
    eventually("every connection is gone", || hub.connections() == 0).await;
    assert!(hub.watched_servers().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn the_built_in_world_is_one_shared_living_world() {
    let world = MockWorld::new().with_cadence(Duration::from_millis(40), Duration::from_millis(60));
    let server = start(Server::builder().provider(world)).await;
    let addr = server.local_addr();
    let hub = server.hub();
    let (mut a, join) = Client::joined(addr, "dworld").await;
    let (mut b, _) = Client::joined(addr, "dworld").await;
    let uids: Vec<String> = join["data"]["users"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();

    // Both watchers see the same stream of events, in the same order, from
    // the first one after `b` joined (`a` may have seen a few more before).
    let first_for_b = b.recv().await;
    let mut skipped = 0;
    while a.recv().await != first_for_b {
        skipped += 1;
        assert!(skipped < 100, "a never saw what b saw first: {first_for_b}");
    }
    let mut seen_presence = false;
    let mut seen_message = false;
    while !(seen_presence && seen_message) {
        let from_a = a.recv().await;
        let from_b = b.recv().await;
        assert_eq!(from_a, from_b, "one world, not one per browser");
        assert_eq!(from_a["server"], DWORLD);
        let uid = from_a["data"]["uid"].as_str().unwrap();
        assert!(uids.iter().any(|u| u == uid), "{uid} is a D-World user");
        match from_a["type"].as_str().unwrap() {
            "presence" => {
                seen_presence = true;
                let status = from_a["data"]["status"].as_str().unwrap();
                assert!(["online", "idle", "dnd", "offline"].contains(&status));
            }
            "message" => {
                seen_message = true;
                assert_eq!(from_a["data"]["channel"], MOCK_CHANNEL);
                assert!(!from_a["data"]["message"].as_str().unwrap().is_empty());
            }
            other => panic!("unexpected {other}"),
        }
    }

    // When nobody watches any more, the simulator stops.
    drop((a, b));
    eventually("nobody watches", || hub.watched_servers().is_empty()).await;
    let before = hub.stats().broadcasts;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        hub.stats().broadcasts,
        before,
        "no activity without watchers"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_id_from_the_provider_is_in_server_join() {
    struct WithClientId;
    #[async_trait]
    impl DataProvider for WithClientId {
        async fn servers(&self) -> Result<ServerList, ProviderError> {
            let mut list = ServerList::new();
            list.insert("9".into(), ServerInfo::new("nine", "Nine").default_server());
            Ok(list)
        }
        async fn users(&self, _: &str) -> Result<Roster, ProviderError> {
            Ok(Roster::new())
        }
        async fn client_id(&self, server: &str) -> Result<Option<String>, ProviderError> {
            Ok(Some(format!("app-for-{server}")))
        }
    }
    let server = start(Server::builder().provider(WithClientId)).await;
    let (_client, join) = Client::joined(server.local_addr(), "default").await;
    assert_eq!(join["data"]["clientId"], "app-for-9");
    server.shutdown().await;

    let server = start(Server::builder().provider(quiet_world())).await;
    let (_client, join) = Client::joined(server.local_addr(), "default").await;
    assert!(
        join["data"].get("clientId").is_none(),
        "absent when unknown"
    );
    server.shutdown().await;
}

/// A provider whose first roster fetch waits for the test, and whose data the
/// test changes (as a real source does: record the change, then broadcast it).
struct SlowFirstFetch {
    status: std::sync::Mutex<Status>,
    fetches: std::sync::atomic::AtomicUsize,
    fetching: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

#[async_trait]
impl DataProvider for SlowFirstFetch {
    async fn servers(&self) -> Result<ServerList, ProviderError> {
        let mut list = ServerList::new();
        list.insert("9".into(), ServerInfo::new("nine", "Nine").default_server());
        Ok(list)
    }
    async fn users(&self, _: &str) -> Result<Roster, ProviderError> {
        let status = *self.status.lock().unwrap();
        let mut roster = Roster::new();
        roster.insert("1".into(), d_back::User::new("1", "ann", status, "#123456"));
        if self
            .fetches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            == 0
        {
            self.fetching.notify_one();
            self.release.notified().await;
        }
        Ok(roster)
    }
}

#[tokio::test]
async fn a_change_during_the_first_roster_fetch_is_not_lost() {
    let provider = std::sync::Arc::new(SlowFirstFetch {
        status: std::sync::Mutex::new(Status::Online),
        fetches: Default::default(),
        fetching: Default::default(),
        release: Default::default(),
    });
    let server = start(Server::builder().shared_provider(provider.clone())).await;
    let hub = server.hub();
    let (mut client, _) = Client::connect(server.local_addr()).await;
    client
        .send(json!({"type": "connect", "data": {"server": "nine"}}))
        .await;
    provider.fetching.notified().await;
    // The fetch in flight has already read "online"; the source now changes it.
    *provider.status.lock().unwrap() = Status::Dnd;
    hub.broadcast_presence("9", PresenceUpdate::new("1", Status::Dnd));
    provider.release.notify_one();
    let join = client.recv().await;
    assert_eq!(join["type"], "server-join");
    assert_eq!(join["data"]["users"]["1"]["status"], "dnd");
    assert_eq!(
        provider.fetches.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the stale fetch was repeated"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn updates_for_users_nobody_knows_are_not_sent() {
    let server = start(Server::builder().provider(quiet_world())).await;
    let hub = server.hub();
    let (mut watcher, _) = Client::joined(server.local_addr(), "dworld").await;
    assert_eq!(
        hub.broadcast_presence(DWORLD, PresenceUpdate::removed("stranger")),
        0
    );
    assert_eq!(
        hub.broadcast_presence(DWORLD, PresenceUpdate::new("stranger", Status::Dnd)),
        0,
        "a client would draw a nameless actor"
    );
    hub.broadcast_presence(
        DWORLD,
        PresenceUpdate::new("stranger", Status::Idle).with_username("Stranger"),
    );
    let frame = watcher.recv_type("presence").await;
    assert_eq!(
        frame["data"]["username"], "Stranger",
        "the first frame is the named one: {frame}"
    );
    server.shutdown().await;
}
