//! Bad input gets a clear answer and nothing is lost: every malformed frame a
//! CL4 client can send earns a status code (or the documented close), room
//! memberships and user lists stay exact, other clients are unaffected, and a
//! client that never reads is dropped instead of growing memory. Also the
//! fixes for the 0.2.0 crashes P4–P7.

mod common;

use std::time::Duration;

use cloudlink::CloudLink;
use common::{Client, Got, ok, start};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn syntax(details: Value) -> Value {
    json!({"cmd": "statuscode", "code": "E:101 | Syntax", "code_id": 101, "details": details})
}

#[tokio::test]
async fn every_malformed_frame_gets_a_status_code_and_nothing_else_changes() {
    let server = start(CloudLink::builder()).await;
    let url = server.url();
    let (mut a, ua) = Client::named(&url, "alice").await;
    let (mut b, ub) = Client::named(&url, "bob").await;
    a.expect(json!({"cmd": "ulist", "mode": "add", "val": ub, "rooms": "default"}))
        .await;

    // P1 fixed: an empty frame is E:106.
    a.send_text("").await;
    a.expect(json!({"cmd": "statuscode", "code": "E:106 | Empty packet", "code_id": 106, "details": "Your client has sent an empty message."})).await;
    // P12 fixed: JSON that is not an object is E:101, and the connection stays.
    for not_object in ["[1,2]", "5", "\"x\"", "null"] {
        a.send_text(not_object).await;
        a.expect(syntax(json!({"message": ["must be of dict type"]})))
            .await;
    }
    // Wrong types in every field of the default schema.
    let listener = "must be of ['string', 'integer', 'float', 'boolean', 'number'] type";
    let cases = [
        (
            json!({"cmd": 5}),
            json!({"cmd": ["must be of string type"]}),
        ),
        (json!({"val": "x"}), json!({"cmd": ["required field"]})),
        (
            json!({"cmd": "gmsg", "val": "x", "name": 5}),
            json!({"name": ["must be of string type"]}),
        ),
        (
            json!({"cmd": "gmsg", "val": "x", "listener": {"a": 1}}),
            json!({"listener": [listener]}),
        ),
        (
            json!({"cmd": "gmsg", "val": "x", "rooms": {"a": 1}}),
            json!({"rooms": ["must be of ['string', 'integer', 'float', 'boolean', 'number', 'list', 'set'] type"]}),
        ),
        (
            json!({"cmd": "gmsg", "val": "x", "id": null}),
            json!({"id": ["null value not allowed"]}),
        ),
        (json!({"cmd": "gmsg"}), json!({"val": ["required field"]})),
        (
            json!({"cmd": "gvar", "val": 1}),
            json!({"name": ["required field"]}),
        ),
        (
            json!({"cmd": "setid", "val": 123, "listener": "username_cfg"}),
            json!({"val": ["must be of string type"]}),
        ),
        (
            json!({"cmd": "direct", "id": ["x"], "val": 1}),
            json!({"id": ["must be of string type"]}),
        ),
        (
            json!({"cmd": "pvar", "val": 1}),
            json!({"id": ["required field"], "name": ["required field"]}),
        ),
    ];
    for (message, details) in cases {
        a.send(message).await;
        a.expect(syntax(details)).await;
    }
    // Server-to-client names are not commands.
    for cmd in ["statuscode", "ulist", "client_obj"] {
        a.send(json!({"cmd": cmd, "listener": "x"})).await;
        a.expect(json!({"cmd": "statuscode", "code": "E:109 | Invalid command", "code_id": 109, "details": format!("{cmd} is an invalid command.")})).await;
    }
    // A binary frame is read as text; one that is not UTF-8 is a JSON error.
    a.send_raw(Message::binary(
        b"{\"cmd\":\"ping\",\"listener\":\"bin\"}".to_vec(),
    ))
    .await;
    a.expect(ok("bin")).await;
    a.send_raw(Message::binary(vec![0xff, 0xfe])).await;
    assert_eq!(a.recv().await["code_id"], 114);

    // Nobody else heard anything, and the user lists are as they were.
    b.expect_nothing_more().await;
    a.expect_nothing_more().await;
    let mut c = Client::connect(&url, "C").await;
    c.send(json!({"cmd": "handshake"})).await;
    loop {
        let message = c.recv().await;
        if message["cmd"] == "ulist" {
            let mut users = message["val"].as_array().unwrap().clone();
            users.sort_by(|x, y| x["uuid"].as_str().cmp(&y["uuid"].as_str()));
            let mut expected = vec![ua.clone(), ub.clone()];
            expected.sort_by(|x, y| x["uuid"].as_str().cmp(&y["uuid"].as_str()));
            assert_eq!(users, expected);
            break;
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn leaving_rooms_one_is_not_in_and_linking_after_default_emptied_answer_ok() {
    let server = start(CloudLink::builder()).await;
    let url = server.url();
    let (mut a, ua) = Client::named(&url, "alice").await;
    // P4 fixed: unlinking a room that does not exist is a quiet success.
    a.send(json!({"cmd": "unlink", "val": "nowhere", "listener": "u1"}))
        .await;
    a.expect(ok("u1")).await;
    // Leave default (emptying it), then link again: 0.2.0 crashed here.
    a.send(json!({"cmd": "link", "val": "r1", "listener": "l1"}))
        .await;
    a.expect(json!({"cmd": "ulist", "mode": "set", "val": [ua], "rooms": "r1"}))
        .await;
    a.expect(ok("l1")).await;
    a.send(json!({"cmd": "link", "val": "r2", "listener": "l2"}))
        .await;
    a.expect(json!({"cmd": "ulist", "mode": "set", "val": [ua], "rooms": "r2"}))
        .await;
    a.expect(ok("l2")).await;
    // `link []` leaves default and joins nothing; gmsg then goes nowhere.
    a.send(json!({"cmd": "unlink", "val": ["r1", "r2"], "listener": "u2"}))
        .await;
    a.expect(json!({"cmd": "ulist", "mode": "set", "val": [ua], "rooms": "default"}))
        .await;
    a.expect(ok("u2")).await;
    a.send(json!({"cmd": "link", "val": [], "listener": "l3"}))
        .await;
    a.expect(ok("l3")).await;
    a.send(json!({"cmd": "gmsg", "val": "into the void"})).await;
    a.expect_nothing_more().await;
    server.shutdown().await;
}

#[tokio::test]
async fn numbers_as_rooms_objects_as_ids_and_directs_to_usernames_work() {
    let server = start(CloudLink::builder()).await;
    let url = server.url();
    let (mut a, ua) = Client::named(&url, "alice").await;
    let (mut b, ub) = Client::named(&url, "bob").await;
    a.expect(json!({"cmd": "ulist", "mode": "add", "val": ub, "rooms": "default"}))
        .await;

    // P6: a number typed as a room is the room of its digits.
    a.send(json!({"cmd": "link", "val": 123, "listener": "l"}))
        .await;
    b.expect(json!({"cmd": "ulist", "mode": "remove", "val": ua, "rooms": "default"}))
        .await;
    a.expect(json!({"cmd": "ulist", "mode": "set", "val": [ua], "rooms": "123"}))
        .await;
    a.expect(ok("l")).await;
    a.send(json!({"cmd": "gmsg", "val": "x", "rooms": 123}))
        .await;
    a.expect(json!({"cmd": "gmsg", "val": "x", "rooms": "123"}))
        .await;
    // An object is not a room list: E:102 instead of joining its keys.
    a.send(json!({"cmd": "link", "val": {"r": 1}, "listener": "l2"}))
        .await;
    let datatype = a.recv().await;
    assert_eq!(datatype["code_id"], 102);
    assert_eq!(datatype["listener"], "l2");
    a.send(json!({"cmd": "unlink", "val": "", "listener": "u"}))
        .await;
    b.expect(json!({"cmd": "ulist", "mode": "add", "val": ua, "rooms": "default"}))
        .await;
    let _ = a.recv().await; // ulist set of default
    a.expect(ok("u")).await;

    // P5: a user object names its client.
    a.send(json!({"cmd": "pmsg", "id": ub, "val": "by object", "listener": "p"}))
        .await;
    b.expect(json!({"cmd": "pmsg", "val": "by object", "origin": ua, "rooms": "default"}))
        .await;
    a.expect(ok("p")).await;
    // P9 kept: an array of several recipients is ambiguous by default.
    a.send(json!({"cmd": "pmsg", "id": ["alice", "bob"], "val": "x", "listener": "m"}))
        .await;
    let ambiguous = a.recv().await;
    assert_eq!(ambiguous["code_id"], 104);
    assert_eq!(
        ambiguous["details"],
        "Multiple matches found for ['alice', 'bob'], found 2 matches. Please use Snowflakes, UUIDs, or client objects instead."
    );
    // P7 fixed: a direct message to a username arrives.
    a.send(json!({"cmd": "direct", "id": "bob", "val": {"cmd": "custom", "val": 1}}))
        .await;
    b.expect(json!({"cmd": "direct", "val": {"cmd": "custom", "val": 1}, "origin": ua}))
        .await;
    a.expect_nothing_more().await;
    b.expect_nothing_more().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_message_over_the_size_limit_closes_with_1009() {
    let server = start(CloudLink::builder().max_frame_bytes(4096)).await;
    let (mut a, _) = Client::named(&server.url(), "alice").await;
    let big = json!({"cmd": "gmsg", "val": "x".repeat(5000)});
    a.send(big).await;
    assert_eq!(a.expect_close().await.0, Some(1009));
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_and_the_others_get_everything() {
    let server = start(
        CloudLink::builder()
            .stall_timeout(Duration::from_millis(300))
            .message_rate(0, 0),
    )
    .await;
    let url = server.url();
    let (mut a, _) = Client::named(&url, "alice").await;
    let (mut reader, ub) = Client::named(&url, "bob").await;
    a.expect(json!({"cmd": "ulist", "mode": "add", "val": ub, "rooms": "default"}))
        .await;
    // This one handshakes and then never reads again.
    let mut stuck = Client::connect_small_buffer(&url, "stuck").await;
    stuck.handshake().await;
    stuck
        .send(json!({"cmd": "setid", "val": "stuck", "listener": "n"}))
        .await;
    let us = loop {
        let message = stuck.recv().await;
        if message["listener"] == "n" {
            break message["val"].clone();
        }
    };
    let added = json!({"cmd": "ulist", "mode": "add", "val": us, "rooms": "default"});
    a.expect(added.clone()).await;
    reader.expect(added).await;

    // Bob reads everything meant for him, all along.
    // Far more than the kernel's socket buffers hold for the stuck client.
    let payload = "y".repeat(64 * 1024);
    let messages = 400;
    let bob = tokio::spawn(async move {
        let mut next = 0;
        while next < messages {
            let got = reader.recv().await;
            if got["cmd"] == "ulist" {
                assert_eq!((&got["mode"], &got["val"]), (&json!("remove"), &us));
                continue;
            }
            assert_eq!(got["val"]["i"], next, "bob: messages in order");
            next += 1;
        }
        reader
    });
    for i in 0..messages {
        for to in ["bob", "stuck"] {
            a.send(json!({"cmd": "pmsg", "id": to, "val": {"i": i, "pad": payload}}))
                .await;
        }
    }
    let (mut delivered, mut not_found) = (0, 0);
    while delivered + not_found < 2 * messages {
        let got = a.recv().await;
        match got["code_id"].as_u64() {
            Some(100) => delivered += 1,
            Some(103) => not_found += 1,
            _ => assert_eq!(got["cmd"], "ulist", "alice: {got}"),
        }
    }
    assert!(delivered >= messages, "every message to bob was delivered");
    assert!(not_found >= 1, "the stuck client was gone before the end");
    let _reader = bob.await.unwrap();
    for _ in 0..500 {
        if server.cloudlink().client_count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        server.cloudlink().client_count(),
        2,
        "the stuck client is gone"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_far_over_its_message_rate_is_refused_then_closed() {
    let server = start(CloudLink::builder().message_rate(1, 1)).await;
    let mut a = Client::connect(&server.url(), "A").await;
    for _ in 0..120 {
        a.send(json!({"cmd": "ping", "listener": "r"})).await;
    }
    let mut refused = 0;
    loop {
        match a.next().await {
            Got::Json(message) if message["code_id"] == 108 => refused += 1,
            Got::Json(message) => assert_eq!(message, ok("r")),
            Got::Close(code, _) => {
                assert_eq!(code, Some(1008));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(refused >= 1, "the client was told it was over its rate");
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_every_client_with_1001() {
    let server = start(CloudLink::builder()).await;
    let (mut a, _) = Client::named(&server.url(), "alice").await;
    let mut s = Client::connect(&server.url(), "S").await;
    s.send(json!({"method": "handshake", "project_id": "1", "user": "p"}))
        .await;
    let stopping = tokio::spawn(server.shutdown());
    assert_eq!(a.expect_close().await.0, Some(1001));
    assert_eq!(s.expect_close().await.0, Some(1001));
    stopping.await.unwrap();
}

#[tokio::test]
async fn a_client_cannot_join_rooms_without_bound() {
    let server = start(CloudLink::builder().max_rooms_per_client(3)).await;
    let (mut a, ua) = Client::named(&server.url(), "alice").await;
    a.send(json!({"cmd": "link", "val": ["default", "r1", "r2", "r3", "r4"], "listener": "l"}))
        .await;
    for room in ["default", "r1", "r2"] {
        a.expect(json!({"cmd": "ulist", "mode": "set", "val": [ua], "rooms": room}))
            .await;
    }
    a.expect(json!({"cmd": "statuscode", "code": "E:108 | Refused", "code_id": 108, "details": "A client may be in at most 3 rooms at once.", "listener": "l"})).await;
    assert_eq!(
        server
            .cloudlink()
            .rooms_of(&server.cloudlink().find("alice")[0])
            .len(),
        3
    );
    server.shutdown().await;
}
