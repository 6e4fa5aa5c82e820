//! The Scratch cloud-variable protocol over real sockets: spec §9 rows 24
//! and 25, two clients and a late joiner, the fixes S1–S4 and S6, and that
//! Scratch and CL4 traffic never cross.

mod common;

use cloudlink::CloudLink;
use common::{Client, Got, start};
use serde_json::{Value, json};

fn handshake(project: Value, user: &str) -> Value {
    json!({"method": "handshake", "project_id": project, "user": user})
}

fn set(project: &str, name: &str, value: Value) -> Value {
    json!({"method": "set", "project_id": project, "user": "x", "name": name, "value": value})
}

fn got_set(name: &str, value: Value) -> Value {
    json!({"method": "set", "name": name, "value": value})
}

/// Proves nothing else waits for a Scratch client: its own `set` of a fresh
/// variable must be the very next message.
async fn barrier(client: &mut Client, project: &str) {
    let name = format!("barrier {}", client.label);
    client.send(set(project, &name, json!(1))).await;
    client.expect(got_set(&name, json!(1))).await;
}

#[tokio::test]
async fn row_24_two_clients_and_a_late_joiner() {
    let server = start(CloudLink::builder()).await;
    let url = server.url();
    let mut s1 = Client::connect(&url, "S1").await;
    s1.send(handshake(json!("123"), "player1")).await;
    s1.send(set("123", "☁ score", json!(5))).await;
    s1.expect(got_set("☁ score", json!(5))).await;
    // The same value again changes nothing and is not sent.
    s1.send(set("123", "☁ score", json!(5))).await;
    barrier(&mut s1, "123").await;

    let mut s2 = Client::connect(&url, "S2").await;
    s2.send(handshake(json!("123"), "player2")).await;
    s2.expect(got_set("☁ score", json!(5))).await;
    s2.expect(got_set("barrier S1", json!(1))).await;

    // Both see each other's changes, the sender included.
    s2.send(set("123", "☁ score", json!(6))).await;
    s1.expect(got_set("☁ score", json!(6))).await;
    s2.expect(got_set("☁ score", json!(6))).await;
    server.shutdown().await;
}

#[tokio::test]
async fn row_25_rename_a_foreign_project_and_a_login_token() {
    let server = start(CloudLink::builder()).await;
    let url = server.url();
    let mut s1 = Client::connect(&url, "S1").await;
    let mut s2 = Client::connect(&url, "S2").await;
    s1.send(handshake(json!("123"), "player1")).await;
    s2.send(handshake(json!("123"), "player2")).await;
    s1.send(set("123", "☁ score", json!(5))).await;
    s1.expect(got_set("☁ score", json!(5))).await;
    s2.expect(got_set("☁ score", json!(5))).await;

    s2.send(json!({"method": "rename", "project_id": "123", "user": "player2", "name": "☁ score", "new_name": "☁ best"})).await;
    let renamed = json!({"method": "rename", "name": "☁ score", "new_name": "☁ best"});
    s1.expect(renamed.clone()).await;
    s2.expect(renamed).await;

    // S2 (fixed): writes only go to the project the client joined.
    s2.send(set("999", "☁ best", json!(1))).await;
    assert_eq!(
        s2.expect_close().await,
        (Some(4004), "Invalid room ID: 999".into())
    );

    let mut s3 = Client::connect_with(&url, "S3", &[("scratchsessionsid", "x")]).await;
    s3.send(handshake(json!("123"), "player3")).await;
    match s3.next().await {
        Got::Text(text) => assert!(text.contains("Change your Scratch password"), "{text}"),
        other => panic!("expected the security warning, got {other:?}"),
    }
    assert_eq!(
        s3.expect_close().await,
        (Some(4005), "Connection closed for security reasons".into())
    );
    // The late joiner sees the renamed variable only.
    let mut s4 = Client::connect(&url, "S4").await;
    s4.send(handshake(json!(123), "player4")).await;
    s4.expect(got_set("☁ best", json!(5))).await;
    barrier(&mut s4, "123").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_cookie_with_the_login_token_is_refused_too() {
    let server = start(CloudLink::builder()).await;
    let mut s = Client::connect_with(
        &server.url(),
        "S",
        &[("cookie", "a=b; scratchsessionsid=\"secret\"")],
    )
    .await;
    s.send(handshake(json!("1"), "p")).await;
    assert!(matches!(s.next().await, Got::Text(_)));
    assert_eq!(s.expect_close().await.0, Some(4005));
    server.shutdown().await;
}

#[tokio::test]
async fn create_delete_and_values_compared_by_type() {
    let server = start(CloudLink::builder()).await;
    let mut s = Client::connect(&server.url(), "S").await;
    // S1: a numeric project id is the room of its digits.
    s.send(handshake(json!(42), "p")).await;
    s.send(json!({"method": "create", "project_id": 42, "name": "v", "value": 1}))
        .await;
    s.expect(json!({"method": "create", "name": "v", "value": 1}))
        .await;
    // S4: 1.0, true and "1" are other values than 1.
    for value in [json!(1.0), json!(true), json!("1")] {
        s.send(set("42", "v", value.clone())).await;
        s.expect(got_set("v", value)).await;
    }
    // S3: deleting an unknown variable is a quiet no-op.
    s.send(json!({"method": "delete", "project_id": "42", "name": "nope"}))
        .await;
    s.send(json!({"method": "delete", "project_id": "42", "name": "v"}))
        .await;
    s.expect(json!({"method": "delete", "name": "v"})).await;
    barrier(&mut s, "42").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_set_without_a_value_closes_with_4000_and_says_why() {
    let server = start(CloudLink::builder()).await;
    let mut s = Client::connect(&server.url(), "S").await;
    s.send(handshake(json!("7"), "p")).await;
    s.send(json!({"method": "set", "project_id": "7", "name": "v"}))
        .await;
    assert_eq!(
        s.next().await,
        Got::Text("Validation failed: {'value': ['required field']}".into())
    );
    assert_eq!(
        s.expect_close().await,
        (Some(4000), "Validation failed".into())
    );
    server.shutdown().await;
}

#[tokio::test]
async fn several_messages_in_one_frame_are_each_handled() {
    let server = start(CloudLink::builder()).await;
    let mut s = Client::connect(&server.url(), "S").await;
    let frame = [
        handshake(json!("5"), "p").to_string(),
        set("5", "a", json!(1)).to_string(),
        set("5", "b", json!(2)).to_string(),
    ]
    .join("\n");
    s.send_text(&format!("{frame}\n")).await;
    s.expect(got_set("a", json!(1))).await;
    s.expect(got_set("b", json!(2))).await;
    server.shutdown().await;
}

#[tokio::test]
async fn bad_scratch_messages_are_ignored_and_the_room_goes_on() {
    let server = start(CloudLink::builder()).await;
    let mut s = Client::connect(&server.url(), "S").await;
    s.send(handshake(json!("9"), "p")).await;
    for bad in [
        "",
        "not json",
        "[1,2]",
        "5",
        r#"{"method":"set","project_id":"9","name":"v","value":null}"#,
        r#"{"method":"unknown","project_id":"9"}"#,
        r#"{"cmd":"gmsg","val":"x"}"#,
        r#"{"method":"set","project_id":"9","name":"v","value":1,"user":"a name longer than twenty"}"#,
    ] {
        s.send_text(bad).await;
    }
    barrier(&mut s, "9").await;
    server.shutdown().await;
}

#[tokio::test]
async fn scratch_and_cl4_traffic_never_cross_even_in_a_room_of_the_same_name() {
    let server = start(CloudLink::builder()).await;
    let url = server.url();
    let (mut cl4, _) = Client::named(&url, "alice").await;
    let mut s = Client::connect(&url, "S").await;
    s.send(handshake(json!("default"), "p")).await;
    s.send(set("default", "v", json!(1))).await;
    s.expect(got_set("v", json!(1))).await;
    cl4.send(json!({"cmd": "gmsg", "val": "hi"})).await;
    cl4.expect(json!({"cmd": "gmsg", "val": "hi", "rooms": "default"}))
        .await;
    cl4.expect_nothing_more().await;
    barrier(&mut s, "default").await;
    server.shutdown().await;
}

#[tokio::test]
async fn variables_go_with_the_last_member() {
    let server = start(CloudLink::builder()).await;
    let url = server.url();
    let mut s1 = Client::connect(&url, "S1").await;
    s1.send(handshake(json!("77"), "p")).await;
    s1.send(set("77", "v", json!(1))).await;
    s1.expect(got_set("v", json!(1))).await;
    s1.close().await;
    // The room is gone once the server has seen the close.
    for _ in 0..200 {
        if server.cloudlink().client_count() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(server.cloudlink().client_count(), 0);
    let mut s2 = Client::connect(&url, "S2").await;
    s2.send(handshake(json!("77"), "q")).await;
    barrier(&mut s2, "77").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_project_cannot_hold_variables_without_bound() {
    let server = start(CloudLink::builder().max_variables_per_room(2)).await;
    let mut s = Client::connect(&server.url(), "S").await;
    s.send(handshake(json!("3"), "p")).await;
    for name in ["a", "b"] {
        s.send(set("3", name, json!(1))).await;
        s.expect(got_set(name, json!(1))).await;
    }
    // Changing a variable that exists is fine; a third one is not.
    s.send(set("3", "a", json!(2))).await;
    s.expect(got_set("a", json!(2))).await;
    s.send(set("3", "c", json!(1))).await;
    assert_eq!(
        s.next().await,
        Got::Text("Too many variables: a project may have at most 2.".into())
    );
    assert_eq!(
        s.expect_close().await,
        (Some(4000), "Too many variables".into())
    );
    server.shutdown().await;
}
