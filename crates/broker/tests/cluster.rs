//! The broker against a real redis-server on a free loopback port.

use std::time::Duration;

use broker::testing::RedisServer;
use broker::{Broker, ClusterConfig, Event, Sent, StateWrite};
use bytes::Bytes;
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

fn join(redis: &RedisServer, name: &str) -> (Broker, Receiver<Bytes>) {
    Broker::start(ClusterConfig::new(&redis.url(), name).unwrap())
}

async fn until_connected(broker: &Broker) {
    timeout(Duration::from_secs(10), async {
        while !broker.stats().connected {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not connected within 10 s: {:?}", broker.stats()));
}

async fn take(deliveries: &mut Receiver<Bytes>, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let next = timeout(Duration::from_secs(10), deliveries.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} events within 10 s: {got:?}", got.len()))
            .expect("the broker is running");
        got.push(String::from_utf8(next.to_vec()).unwrap());
    }
    got
}

#[tokio::test]
async fn every_node_gets_every_event_in_one_order() {
    let redis = RedisServer::start();
    let (a, mut from_a) = join(&redis, "order");
    let (b, mut from_b) = join(&redis, "order");
    until_connected(&a).await;
    until_connected(&b).await;
    let writers = [("a", a.clone()), ("b", b.clone())].map(|(name, node)| {
        tokio::spawn(async move {
            for i in 0..200 {
                let sent = node.publish(Event::new(format!("{name}-{i}")));
                assert_eq!(sent, Sent::Queued);
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    });
    for writer in writers {
        writer.await.unwrap();
    }
    let seen_by_a = take(&mut from_a, 400).await;
    let seen_by_b = take(&mut from_b, 400).await;
    assert_eq!(seen_by_a, seen_by_b, "both nodes apply the same sequence");
    // Each node's own events keep the order it published them in.
    for prefix in seen_by_a
        .iter()
        .map(|e| e.split('-').next().unwrap().to_owned())
    {
        let mine: Vec<u32> = seen_by_a
            .iter()
            .filter(|e| e.starts_with(&format!("{prefix}-")))
            .map(|e| e.rsplit('-').next().unwrap().parse().unwrap())
            .collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "out of order: {mine:?}"
        );
    }
    assert_eq!(a.stats().published + b.stats().published, 400);
}

#[tokio::test]
async fn state_writes_land_with_their_event_and_merge_keeps_what_is_left_out() {
    let redis = RedisServer::start();
    let (a, mut deliveries) = join(&redis, "state");
    until_connected(&a).await;
    let map = "roster:1000";
    a.publish(Event::new("joined").with(StateWrite::merge(
        map,
        "7",
        r#"{"status":"online","username":"alice"}"#,
    )));
    a.publish(Event::new("idle").with(StateWrite::merge(map, "7", r#"{"status":"idle"}"#)));
    a.publish(
        Event::new("two")
            .with(StateWrite::put("ids", "1000", "app-1"))
            .with(StateWrite::put(map, "8", r#"{"status":"dnd"}"#)),
    );
    a.publish(Event::new("gone").with(StateWrite::remove(map, "8")));
    assert_eq!(
        take(&mut deliveries, 4).await,
        ["joined", "idle", "two", "gone"]
    );
    let roster = a.read_map(map).await.unwrap();
    assert_eq!(roster.len(), 1, "{roster:?}");
    let alice: serde_json::Value = serde_json::from_str(&roster[0].1).unwrap();
    assert_eq!(
        alice,
        serde_json::json!({"status": "idle", "username": "alice"})
    );
    assert_eq!(
        a.read_field("ids", "1000").await.unwrap().as_deref(),
        Some("app-1")
    );
    assert_eq!(a.read_field("ids", "2000").await.unwrap(), None);
}

#[tokio::test]
async fn a_late_node_starts_at_the_end_of_the_log() {
    let redis = RedisServer::start();
    let (a, mut from_a) = join(&redis, "late");
    until_connected(&a).await;
    a.publish(Event::new("before"));
    take(&mut from_a, 1).await;
    let (late, mut from_late) = join(&redis, "late");
    until_connected(&late).await;
    a.publish(Event::new("after"));
    assert_eq!(take(&mut from_late, 1).await, ["after"]);
    assert_eq!(take(&mut from_a, 1).await, ["after"]);
}

#[tokio::test]
async fn without_redis_changes_stay_local_and_reach_the_others_once_it_returns() {
    let mut redis = RedisServer::start();
    let (a, mut from_a) = join(&redis, "outage");
    let (b, mut from_b) = join(&redis, "outage");
    until_connected(&a).await;
    until_connected(&b).await;
    redis.stop();
    timeout(Duration::from_secs(10), async {
        while a.stats().connected {
            // A publish into a dead connection is what notices the loss fastest.
            if a.publish(Event::new("probe")) == Sent::Queued {
                let probe = take(&mut from_a, 1).await;
                assert_eq!(probe, ["probe"], "a failed publish is applied locally");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the loss is noticed within 10 s");
    assert_eq!(a.publish(Event::new("while down")), Sent::Offline);
    assert!(a.stats().applied_locally >= 1);
    assert!(a.stats().last_error.is_some());
    redis.restart();
    until_connected(&a).await;
    until_connected(&b).await;
    assert_eq!(a.publish(Event::new("after")), Sent::Queued);
    // b catches up on what a did meanwhile, in a's order, before what followed.
    let mut seen_by_b = Vec::new();
    while seen_by_b.last().map(String::as_str) != Some("after") {
        seen_by_b.extend(take(&mut from_b, 1).await);
    }
    let replayed = a.stats().replayed as usize;
    assert!(replayed >= 1, "{:?}", a.stats());
    assert_eq!(seen_by_b.len(), replayed + 1, "{seen_by_b:?}");
    assert_eq!(seen_by_b[replayed - 1], "while down", "{seen_by_b:?}");
    // a applied them when they happened, and not again.
    assert_eq!(take(&mut from_a, 1).await, ["after"]);
    assert!(a.stats().reconnects >= 1, "{:?}", a.stats());
}

#[tokio::test]
async fn a_lease_has_one_holder_until_it_is_released_or_expires() {
    let redis = RedisServer::start();
    let (a, _a_events) = join(&redis, "lease");
    let (b, _b_events) = join(&redis, "lease");
    let ttl = Duration::from_millis(300);
    assert!(a.hold_lease("job", "a", ttl).await.unwrap());
    assert!(!b.hold_lease("job", "b", ttl).await.unwrap(), "a holds it");
    assert!(
        a.hold_lease("job", "a", ttl).await.unwrap(),
        "the holder extends it"
    );
    assert_eq!(b.lease_holder("job").await.unwrap().as_deref(), Some("a"));
    b.release_lease("job", "b").await.unwrap();
    assert!(
        !b.hold_lease("job", "b", ttl).await.unwrap(),
        "only the holder can give it up"
    );
    a.release_lease("job", "a").await.unwrap();
    assert!(
        b.hold_lease("job", "b", ttl).await.unwrap(),
        "given up, it is free"
    );
    // b stops extending it, as a node killed without warning would.
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(a.lease_holder("job").await.unwrap(), None);
    assert!(
        a.hold_lease("job", "a", ttl).await.unwrap(),
        "expired, it is free"
    );
}

#[tokio::test]
async fn through_sentinel_the_nodes_follow_a_failover_to_the_promoted_replica() {
    let mut primary = RedisServer::start();
    let replica = RedisServer::replica_of(&primary);
    let sentinel = broker::testing::RedisSentinel::watching(&primary, "main");
    let config = || ClusterConfig::new(&sentinel.url("main"), "sentinel").unwrap();
    let (a, mut from_a) = Broker::start(config());
    let (b, mut from_b) = Broker::start(config());
    until_connected(&a).await;
    until_connected(&b).await;
    a.publish(Event::new("before").with(StateWrite::put("m", "k", "1")));
    assert_eq!(take(&mut from_b, 1).await, ["before"]);
    take(&mut from_a, 1).await;

    // The Sentinel must know the replica before it can promote it.
    timeout(Duration::from_secs(20), async {
        loop {
            let info = std::process::Command::new("redis-cli")
                .args(["-p", &primary.port().to_string(), "INFO", "replication"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            if info.contains("state=online") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the replica is in sync within 20 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
    primary.stop();

    // Publish until the change goes through the promoted replica.
    let delivered = timeout(Duration::from_secs(30), async {
        loop {
            if b.publish(Event::new("after")) == Sent::Queued
                && let Ok(Some(event)) = timeout(Duration::from_secs(2), from_a.recv()).await
                && event == "after"
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        delivered.is_ok(),
        "no change went through after the failover: {:?}",
        b.stats()
    );
    assert_eq!(
        a.read_field("m", "k").await.unwrap().as_deref(),
        Some("1"),
        "the replica had the state"
    );
    drop(replica);
}
