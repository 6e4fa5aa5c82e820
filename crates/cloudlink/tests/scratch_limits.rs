//! The Scratch host's limits over real sockets, each with the close code
//! TurboWarp's server uses (which Scratch clients know), and the values that
//! are dropped and counted rather than closed.

mod common;

use cloudlink::{CloudLink, ValueRule};
use common::{Client, start};
use serde_json::{Value, json};

fn handshake(project: &str, user: &str) -> Value {
    json!({"method": "handshake", "project_id": project, "user": user})
}

fn set(project: &str, name: &str, value: Value) -> Value {
    json!({"method": "set", "project_id": project, "name": name, "value": value})
}

fn got_set(name: &str, value: Value) -> Value {
    json!({"method": "set", "name": name, "value": value})
}

/// A fresh variable's own echo must be the very next message: proves that
/// nothing sent before it was broadcast.
async fn barrier(client: &mut Client, project: &str, n: u32) {
    let name = format!("barrier {n}");
    client.send(set(project, &name, json!(n))).await;
    client.expect(got_set(&name, json!(n))).await;
}

async fn metrics(url: &str) -> String {
    let addr = url.trim_start_matches("ws://").trim_end_matches('/');
    let (status, page) = common::http(addr.parse().unwrap(), "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200, "{page}");
    page
}

#[tokio::test]
async fn usernames_of_1_to_20_characters_else_4002() {
    let server = start(CloudLink::builder()).await;
    let url = server.url();
    for bad in ["", "abcdefghijklmnopqrstu"] {
        let mut client = Client::connect(&url, "bad name").await;
        client.send(handshake("1", bad)).await;
        assert_eq!(client.expect_close().await.0, Some(4002), "{bad:?}");
    }
    let mut good = Client::connect(&url, "good name").await;
    // Twenty characters, one of them outside ASCII: characters, not bytes.
    good.send(handshake("1", "ééééééééééééééééééé1")).await;
    barrier(&mut good, "1", 1).await;
    assert!(
        metrics(&url)
            .await
            .contains(r#"cloudlink_scratch_closed_total{code="4002"} 2"#)
    );
}

#[tokio::test]
async fn project_ids_of_1_to_999_characters_else_4004() {
    let server = start(CloudLink::builder()).await;
    let url = server.url();
    let long = "9".repeat(1000);
    for bad in ["", long.as_str()] {
        let mut client = Client::connect(&url, "bad id").await;
        client.send(handshake(bad, "p")).await;
        assert_eq!(client.expect_close().await.0, Some(4004));
    }
    let mut good = Client::connect(&url, "good id").await;
    let longest = "9".repeat(999);
    good.send(handshake(&longest, "p")).await;
    barrier(&mut good, &longest, 1).await;
}

#[tokio::test]
async fn a_full_project_and_a_full_server_close_with_4003() {
    let server = start(CloudLink::builder().max_room_clients(2).max_rooms(2)).await;
    let url = server.url();
    let mut first = Client::connect(&url, "first").await;
    first.send(handshake("a", "one")).await;
    barrier(&mut first, "a", 1).await;
    let mut second = Client::connect(&url, "second").await;
    second.send(handshake("a", "two")).await;
    second.expect(got_set("barrier 1", json!(1))).await;
    barrier(&mut second, "a", 2).await;
    let mut third = Client::connect(&url, "third").await;
    third.send(handshake("a", "three")).await;
    assert_eq!(
        third.expect_close().await,
        (Some(4003), "This project is full".into())
    );

    let mut other = Client::connect(&url, "other").await;
    other.send(handshake("b", "four")).await;
    barrier(&mut other, "b", 3).await;
    // Two rooms are open: a third project is refused, the open ones are not.
    let mut refused = Client::connect(&url, "refused").await;
    refused.send(handshake("c", "five")).await;
    assert_eq!(refused.expect_close().await.0, Some(4003));
    first.expect(got_set("barrier 2", json!(2))).await;
    barrier(&mut first, "a", 4).await;
    assert!(
        metrics(&url)
            .await
            .contains(r#"cloudlink_scratch_closed_total{code="4003"} 2"#)
    );
}

#[tokio::test]
async fn a_value_too_long_is_dropped_and_counted_and_its_sender_stays() {
    let server = start(CloudLink::builder().max_value_bytes(10)).await;
    let url = server.url();
    let mut client = Client::connect(&url, "S").await;
    client.send(handshake("5", "p")).await;
    // Ten bytes of text is the limit: "ééééé" is five characters but ten bytes.
    client.send(set("5", "v", json!("ééééé"))).await;
    client.expect(got_set("v", json!("ééééé"))).await;
    client.send(set("5", "v", json!("ééééé1"))).await;
    client.send(set("5", "n", json!(12345678901_i64))).await;
    barrier(&mut client, "5", 1).await;
    let mut late = Client::connect(&url, "late").await;
    late.send(handshake("5", "q")).await;
    late.expect(got_set("v", json!("ééééé"))).await;
    let page = metrics(&url).await;
    assert!(
        page.contains(r#"cloudlink_scratch_dropped_total{reason="too_long"} 2"#),
        "{page}"
    );
    assert!(page.contains("cloudlink_scratch_sets_total 2"), "{page}");
}

#[tokio::test]
async fn the_numbers_rule_drops_anything_but_numbers() {
    let server = start(CloudLink::builder().values(ValueRule::Numbers)).await;
    let url = server.url();
    let mut client = Client::connect(&url, "S").await;
    client.send(handshake("6", "p")).await;
    for bad in [json!("hello"), json!(true), json!("1e5"), json!([1])] {
        client.send(set("6", "v", bad)).await;
    }
    client.send(set("6", "v", json!("-12.5"))).await;
    client.expect(got_set("v", json!("-12.5"))).await;
    client.send(set("6", "v", json!(3))).await;
    client.expect(got_set("v", json!(3))).await;
    assert!(
        metrics(&url)
            .await
            .contains(r#"cloudlink_scratch_dropped_total{reason="not_allowed"} 4"#)
    );
}

#[tokio::test]
async fn the_text_rule_takes_strings_and_numbers() {
    let server = start(CloudLink::builder().values(ValueRule::Text)).await;
    let mut client = Client::connect(&server.url(), "S").await;
    client.send(handshake("8", "p")).await;
    client.send(set("8", "v", json!({"a": 1}))).await;
    client.send(set("8", "v", json!(null))).await;
    client.send(set("8", "v", json!("letters too"))).await;
    client.expect(got_set("v", json!("letters too"))).await;
}

#[tokio::test]
async fn metrics_report_clients_rooms_and_the_edge() {
    let server = start(CloudLink::builder()).await;
    let url = server.url();
    let mut client = Client::connect(&url, "S").await;
    client.send(handshake("9", "p")).await;
    barrier(&mut client, "9", 1).await;
    let page = metrics(&url).await;
    for line in [
        "cloudlink_clients 1",
        "cloudlink_rooms 1",
        "cloudlink_open_sockets",
        "cloudlink_socket_budget",
    ] {
        assert!(page.contains(line), "{line} missing from\n{page}");
    }
}

#[tokio::test]
async fn past_the_set_rate_the_latest_value_lands_when_the_second_ends() {
    let server = start(
        CloudLink::builder()
            .max_sets_per_second(3)
            .message_rate(0, 0),
    )
    .await;
    let url = server.url();
    let mut writer = Client::connect(&url, "writer").await;
    writer.send(handshake("10", "w")).await;
    let mut watcher = Client::connect(&url, "watcher").await;
    watcher.send(handshake("10", "r")).await;
    barrier(&mut watcher, "10", 1).await;
    writer.expect(got_set("barrier 1", json!(1))).await;
    // Ten sets at once: three are broadcast now, then only the last value
    // of each variable, when the second ends.
    for n in 1..=8 {
        writer.send(set("10", "x", json!(n))).await;
    }
    writer.send(set("10", "y", json!("a"))).await;
    writer.send(set("10", "y", json!("b"))).await;
    for n in 1..=2 {
        watcher.expect(got_set("x", json!(n))).await;
    }
    watcher.expect(got_set("x", json!(3))).await;
    // Nothing else until the window ends: then x=8 and y="b", in the order
    // their variables first waited.
    watcher.expect(got_set("x", json!(8))).await;
    watcher.expect(got_set("y", json!("b"))).await;
    let page = metrics(&url).await;
    assert!(
        page.contains(r#"cloudlink_scratch_dropped_total{reason="over_rate"} 5"#),
        "{page}"
    );
    // A late joiner sees the end state.
    let mut late = Client::connect(&url, "late").await;
    late.send(handshake("10", "l")).await;
    late.expect(got_set("barrier 1", json!(1))).await;
    late.expect(got_set("x", json!(8))).await;
    late.expect(got_set("y", json!("b"))).await;
}

#[tokio::test]
async fn batching_joins_messages_by_newlines_and_keeps_each_variables_latest_value() {
    let server = start(
        CloudLink::builder()
            .batch(std::time::Duration::from_millis(300))
            .message_rate(0, 0),
    )
    .await;
    let url = server.url();
    let mut watcher = Client::connect(&url, "watcher").await;
    watcher.send(handshake("11", "r")).await;
    let mut writer = Client::connect(&url, "writer").await;
    writer.send(handshake("11", "w")).await;
    // The first frame goes out at once and starts the watcher's period;
    // everything sent right after it waits for the period's end.
    writer.send(set("11", "start", json!(1))).await;
    watcher.expect(got_set("start", json!(1))).await;
    for n in 1..=5 {
        writer.send(set("11", "x", json!(n))).await;
    }
    writer.send(set("11", "y", json!("a"))).await;
    match watcher.next().await {
        common::Got::Text(text) => assert_eq!(
            text,
            format!("{}\n{}", got_set("x", json!(5)), got_set("y", json!("a"))),
            "one frame, each variable once at its latest value"
        ),
        other => panic!("expected one joined frame, got {other:?}"),
    }

    // CL4 clients read one message a frame: they are never batched.
    let (mut cl4, _) = Client::named(&url, "alice").await;
    for n in 0..3 {
        cl4.send(json!({"cmd": "gmsg", "val": n})).await;
    }
    for n in 0..3 {
        cl4.expect(json!({"cmd": "gmsg", "val": n, "rooms": "default"}))
            .await;
    }
}

#[tokio::test]
async fn a_variable_name_over_1024_characters_is_dropped_and_counted() {
    let server = start(CloudLink::builder()).await;
    let url = server.url();
    let mut client = Client::connect(&url, "S").await;
    client.send(handshake("12", "p")).await;
    let longest = "n".repeat(1024);
    client.send(set("12", &"n".repeat(1025), json!(1))).await;
    client
        .send(json!({"method": "rename", "project_id": "12", "name": "x", "new_name": "m".repeat(1025)}))
        .await;
    client.send(set("12", &longest, json!(1))).await;
    client.expect(got_set(&longest, json!(1))).await;
    let page = metrics(&url).await;
    assert!(
        page.contains(r#"cloudlink_scratch_dropped_total{reason="name_too_long"} 2"#),
        "{page}"
    );
}

/// Applies one frame (messages joined by newlines) to what a client believes
/// the project's variables are; returns whether `done` was set in it.
fn believe(frame: common::Got, variables: &mut std::collections::BTreeMap<String, Value>) -> bool {
    let text = match frame {
        common::Got::Json(value) => value.to_string(),
        common::Got::Text(text) => text,
        other => panic!("expected messages, got {other:?}"),
    };
    let mut done = false;
    for line in text.lines() {
        let message: Value = serde_json::from_str(line).expect("each line is JSON");
        let name = message["name"].as_str().expect("a name").to_owned();
        match message["method"].as_str().expect("a method") {
            "set" | "create" => {
                done |= name == "done";
                variables.insert(name, message["value"].clone());
            }
            "rename" => {
                let value = variables.remove(&name).expect("renaming a known variable");
                variables.insert(message["new_name"].as_str().unwrap().to_owned(), value);
            }
            // A batched member may be told to delete a variable whose only
            // set it was spared.
            "delete" => {
                variables.remove(&name);
            }
            other => panic!("unexpected method {other}"),
        }
    }
    done
}

#[tokio::test]
async fn batched_members_end_with_every_variable_exact_through_creates_renames_and_deletes() {
    let server = start(
        CloudLink::builder()
            .batch(std::time::Duration::from_millis(5))
            .message_rate(0, 0),
    )
    .await;
    let url = server.url();
    let mut reader = Client::connect(&url, "reader").await;
    reader.send(handshake("13", "r")).await;
    // Reads nothing until the end: it gets each variable at its newest.
    let mut sleeper = Client::connect(&url, "sleeper").await;
    sleeper.send(handshake("13", "s")).await;
    let mut writer = Client::connect(&url, "writer").await;
    writer.send(handshake("13", "w")).await;

    let reading = tokio::spawn(async move {
        let mut seen = std::collections::BTreeMap::new();
        while !believe(reader.next().await, &mut seen) {}
        seen
    });
    let mut truth = std::collections::BTreeMap::new();
    let names = ["a", "b", "c", "d", "e", "f"];
    let mut seed = 0x2545_f491_u64;
    for n in 0..600_u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let name = names[(seed % 6) as usize];
        let other = names[((seed >> 8) % 6) as usize];
        let value = if n % 3 == 0 {
            json!(format!("v{n}"))
        } else {
            json!(n)
        };
        let message = match (seed >> 16) % 20 {
            0 if truth.contains_key(name) && name != other => {
                let value = truth.remove(name).unwrap();
                truth.insert(other.to_owned(), value);
                json!({"method": "rename", "project_id": "13", "name": name, "new_name": other})
            }
            1 if truth.contains_key(name) => {
                truth.remove(name);
                json!({"method": "delete", "project_id": "13", "name": name})
            }
            2 => {
                truth.insert(name.to_owned(), value.clone());
                json!({"method": "create", "project_id": "13", "name": name, "value": value})
            }
            _ => {
                truth.insert(name.to_owned(), value.clone());
                set("13", name, value)
            }
        };
        writer.send(message).await;
    }
    writer.send(set("13", "done", json!(1))).await;
    truth.insert("done".to_owned(), json!(1));

    assert_eq!(reading.await.unwrap(), truth, "a reading member");
    let mut slept = std::collections::BTreeMap::new();
    while !believe(sleeper.next().await, &mut slept) {}
    assert_eq!(slept, truth, "a member that read only at the end");
    let mut late = Client::connect(&url, "late").await;
    late.send(handshake("13", "l")).await;
    let mut joined = std::collections::BTreeMap::new();
    while joined.len() < truth.len() {
        believe(late.next().await, &mut joined);
    }
    assert_eq!(joined, truth, "a late joiner");
}
