//! The CL4 test vectors observed on CloudLink 0.2.0 (spec §9, rows 1–23),
//! over real sockets, compared as JSON values. Where this server fixes a
//! 0.2.0 bug (P2, P3), the row checks the fixed behaviour.

mod common;

use cloudlink::CloudLink;
use common::{Client, Got, ok, sorted_users, start};
use serde_json::{Value, json};

/// alice and bob named, carol's connection handshaken but unnamed, all in
/// `default`, every queue drained.
struct Setup {
    server: cloudlink::RunningServer,
    url: String,
    a: Client,
    ua: Value,
    b: Client,
    ub: Value,
    c: Client,
    uc: Value,
}

async fn setup() -> Setup {
    let server = start(CloudLink::builder().motd("Hello MOTD")).await;
    let url = server.url();
    let (mut a, ua) = Client::named(&url, "alice").await;
    let (mut b, ub) = Client::named(&url, "bob").await;
    a.expect(json!({"cmd": "ulist", "mode": "add", "val": ub, "rooms": "default"}))
        .await;
    let mut c = Client::connect(&url, "C").await;
    let uc = c.handshake().await;
    for client in [&mut a, &mut b, &mut c] {
        client.expect_nothing_more().await;
    }
    Setup {
        server,
        url,
        a,
        ua,
        b,
        ub,
        c,
        uc,
    }
}

fn status(code: &str, id: u16, details: Option<Value>, listener: Option<&str>) -> Value {
    let mut message = json!({"cmd": "statuscode", "code": code, "code_id": id});
    if let Some(details) = details {
        message["details"] = details;
    }
    if let Some(listener) = listener {
        message["listener"] = json!(listener);
    }
    message
}

#[tokio::test]
async fn rows_1_and_2_an_unidentifiable_first_frame_is_answered_and_closed() {
    let server = start(CloudLink::builder()).await;
    let mut x = Client::connect(&server.url(), "X").await;
    x.send_text("not json").await;
    assert_eq!(x.next().await, Got::Text("Invalid JSON".into()));
    assert_eq!(x.expect_close().await, (Some(1000), "Invalid JSON".into()));

    let mut y = Client::connect(&server.url(), "Y").await;
    y.send(json!({"foo": 1})).await;
    assert_eq!(
        y.next().await,
        Got::Text("Unable to identify protocol".into())
    );
    assert_eq!(
        y.expect_close().await,
        (Some(1000), "Unable to identify protocol".into())
    );
    server.shutdown().await;
}

#[tokio::test]
async fn rows_3_to_7_handshake_ping_and_setid() {
    let Setup {
        server,
        url,
        mut a,
        ua,
        mut b,
        ub,
        mut c,
        uc,
    } = setup().await;

    // Row 3: the first handshake tells the client everything, in order.
    let mut x = Client::connect(&url, "X").await;
    x.send(json!({"cmd": "handshake", "val": {"language": "Scratch", "version": {"editorType": "TurboWarp", "versionNumber": 2}}, "listener": "handshake_cfg"})).await;
    x.expect(json!({"cmd": "client_ip", "val": "127.0.0.1"}))
        .await;
    x.expect(json!({"cmd": "server_version", "val": "0.2.0"}))
        .await;
    x.expect(json!({"cmd": "motd", "val": "Hello MOTD"})).await;
    let client_obj = x.recv().await;
    assert_eq!(client_obj["cmd"], "client_obj");
    let ux = client_obj["val"].clone();
    assert_eq!(ux.as_object().unwrap().len(), 2, "no username yet: {ux}");
    assert!(ux["id"].as_str().unwrap().parse::<u64>().is_ok());
    assert_eq!(ux["uuid"].as_str().unwrap().len(), 36);
    assert_eq!(
        sorted_users(x.recv().await),
        sorted_users(json!({"cmd": "ulist", "mode": "set", "val": [ua, ub], "rooms": "default"}))
    );
    x.expect(ok("handshake_cfg")).await;
    for other in [&mut a, &mut b, &mut c] {
        other.expect_nothing_more().await;
    }

    // Row 4: a later handshake only answers.
    x.send(json!({"cmd": "handshake", "listener": "h2"})).await;
    x.expect(ok("h2")).await;
    x.expect_nothing_more().await;

    // Row 5.
    a.send(json!({"cmd": "ping", "listener": "p1"})).await;
    a.expect(ok("p1")).await;

    // Row 6: carol names herself.
    c.send(json!({"cmd": "setid", "val": "carol", "listener": "username_cfg"}))
        .await;
    let mut uc_named = uc.clone();
    uc_named["username"] = json!("carol");
    let add = json!({"cmd": "ulist", "mode": "add", "val": uc_named, "rooms": "default"});
    a.expect(add.clone()).await;
    b.expect(add.clone()).await;
    x.expect(add).await;
    assert_eq!(
        sorted_users(c.recv().await),
        sorted_users(
            json!({"cmd": "ulist", "mode": "set", "val": [ua, ub, uc_named], "rooms": "default"})
        )
    );
    let mut named = ok("username_cfg");
    named["val"] = uc_named.clone();
    c.expect(named).await;

    // Row 7: the name never changes.
    a.send(json!({"cmd": "setid", "val": "again", "listener": "u"}))
        .await;
    let mut refused = status("E:107 | ID already set", 107, None, Some("u"));
    refused["val"] = ua.clone();
    a.expect(refused).await;
    for client in [&mut a, &mut b, &mut c, &mut x] {
        client.expect_nothing_more().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn rows_8_to_12_global_messages_and_variables() {
    let Setup {
        server,
        mut a,
        mut b,
        mut c,
        ..
    } = setup().await;

    // Row 8.
    a.send(json!({"cmd": "gmsg", "val": "hello"})).await;
    for client in [&mut a, &mut b, &mut c] {
        client
            .expect(json!({"cmd": "gmsg", "val": "hello", "rooms": "default"}))
            .await;
    }

    // Row 9, with P2 fixed: the others' copies name the room too.
    a.send(json!({"cmd": "gmsg", "val": {"x": 1}, "listener": "L"}))
        .await;
    a.expect(json!({"cmd": "gmsg", "val": {"x": 1}, "listener": "L", "rooms": "default"}))
        .await;
    for client in [&mut b, &mut c] {
        client
            .expect(json!({"cmd": "gmsg", "val": {"x": 1}, "rooms": "default"}))
            .await;
    }

    // Row 10, with P3 fixed: only the sender's copy carries the listener.
    a.send(json!({"cmd": "gvar", "name": "score", "val": 11, "listener": "GV"}))
        .await;
    a.expect(
        json!({"cmd": "gvar", "name": "score", "val": 11, "rooms": "default", "listener": "GV"}),
    )
    .await;
    for client in [&mut b, &mut c] {
        client
            .expect(json!({"cmd": "gvar", "name": "score", "val": 11, "rooms": "default"}))
            .await;
    }

    // Row 11.
    b.send(json!({"cmd": "gmsg", "val": null})).await;
    b.expect(status(
        "E:101 | Syntax",
        101,
        Some(json!({"val": ["null value not allowed"]})),
        None,
    ))
    .await;

    // Row 12.
    b.send(json!({"cmd": "gmsg", "val": 5, "rooms": "nope", "listener": "L2"}))
        .await;
    b.expect(status(
        "E:115 | Room not joined",
        115,
        Some(json!("Attempted to access room nope while not joined.")),
        Some("L2"),
    ))
    .await;
    for client in [&mut a, &mut b, &mut c] {
        client.expect_nothing_more().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn rows_13_to_16_private_messages_and_variables() {
    let Setup {
        server,
        url,
        mut a,
        ua,
        mut b,
        ub,
        mut c,
        ..
    } = setup().await;

    // Row 13.
    a.send(json!({"cmd": "pmsg", "id": "bob", "val": "hi", "listener": "P"}))
        .await;
    b.expect(json!({"cmd": "pmsg", "val": "hi", "origin": ua, "rooms": "default"}))
        .await;
    a.expect(ok("P")).await;

    // Row 14: by UUID.
    a.send(json!({"cmd": "pvar", "id": ub["uuid"], "name": "v", "val": 3, "listener": "PV"}))
        .await;
    b.expect(json!({"cmd": "pvar", "name": "v", "val": 3, "origin": ua, "rooms": "default"}))
        .await;
    a.expect(ok("PV")).await;

    // Row 15.
    a.send(json!({"cmd": "pmsg", "id": "nobody", "val": "hi", "listener": "P2"}))
        .await;
    a.expect(status(
        "E:103 | ID not found",
        103,
        Some(json!("No matches found: nobody")),
        Some("P2"),
    ))
    .await;

    // Row 16: a second "bob" makes the name ambiguous; nothing is delivered.
    let (mut bob2, ub2) = Client::named(&url, "bob").await;
    for client in [&mut a, &mut b, &mut c] {
        client
            .expect(json!({"cmd": "ulist", "mode": "add", "val": ub2, "rooms": "default"}))
            .await;
    }
    a.send(json!({"cmd": "pmsg", "id": "bob", "val": "hi", "listener": "P"}))
        .await;
    a.expect(status(
        "E:104 | ID not specific enough",
        104,
        Some(json!("Multiple matches found for bob, found 2 matches. Please use Snowflakes, UUIDs, or client objects instead.")),
        Some("P"),
    ))
    .await;
    for client in [&mut a, &mut b, &mut c, &mut bob2] {
        client.expect_nothing_more().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn rows_17_to_20_linking_and_unlinking_rooms() {
    let Setup {
        server,
        mut a,
        ua,
        mut b,
        ub,
        mut c,
        ..
    } = setup().await;

    // Row 17: an unnamed client may not link.
    c.send(json!({"cmd": "link", "val": "r1", "listener": "lnk"}))
        .await;
    c.expect(status(
        "E:111 | ID required",
        111,
        Some(json!("This command requires setting a username.")),
        Some("lnk"),
    ))
    .await;

    // Row 18.
    a.send(json!({"cmd": "link", "val": ["r1", "r2"], "listener": "link"}))
        .await;
    let a_left = json!({"cmd": "ulist", "mode": "remove", "val": ua, "rooms": "default"});
    b.expect(a_left.clone()).await;
    c.expect(a_left).await;
    let mut sets = vec![a.recv().await, a.recv().await];
    sets.sort_by(|x, y| x["rooms"].as_str().cmp(&y["rooms"].as_str()));
    assert_eq!(
        sets,
        vec![
            json!({"cmd": "ulist", "mode": "set", "val": [ua], "rooms": "r1"}),
            json!({"cmd": "ulist", "mode": "set", "val": [ua], "rooms": "r2"}),
        ]
    );
    a.expect(ok("link")).await;

    // Row 19.
    b.send(json!({"cmd": "link", "val": "r1", "listener": "link"}))
        .await;
    a.expect(json!({"cmd": "ulist", "mode": "add", "val": ub, "rooms": "r1"}))
        .await;
    c.expect(json!({"cmd": "ulist", "mode": "remove", "val": ub, "rooms": "default"}))
        .await;
    assert_eq!(
        sorted_users(b.recv().await),
        sorted_users(json!({"cmd": "ulist", "mode": "set", "val": [ua, ub], "rooms": "r1"}))
    );
    b.expect(ok("link")).await;

    // Row 20: back to default; r2 empties silently.
    a.send(json!({"cmd": "unlink", "val": "", "listener": "unlink"}))
        .await;
    b.expect(json!({"cmd": "ulist", "mode": "remove", "val": ua, "rooms": "r1"}))
        .await;
    c.expect(json!({"cmd": "ulist", "mode": "add", "val": ua, "rooms": "default"}))
        .await;
    a.expect(json!({"cmd": "ulist", "mode": "set", "val": [ua], "rooms": "default"}))
        .await;
    a.expect(ok("unlink")).await;
    for client in [&mut a, &mut b, &mut c] {
        client.expect_nothing_more().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn rows_21_to_23_direct_messages_and_errors() {
    let Setup {
        server,
        mut a,
        ua,
        mut b,
        ub,
        mut c,
        ..
    } = setup().await;

    // Row 21: success is silent for the sender.
    a.send(json!({"cmd": "direct", "id": ub["id"], "val": "yo", "listener": "D1"}))
        .await;
    b.expect(json!({"cmd": "direct", "val": "yo", "origin": ua, "listener": "D1"}))
        .await;
    a.expect_nothing_more().await;

    // Row 22.
    a.send(json!({"cmd": "direct", "id": "nobody", "val": "x", "listener": "D"}))
        .await;
    a.expect(status("E:103 | ID not found", 103, None, Some("D")))
        .await;

    // Row 23.
    a.send(json!({"cmd": "bogus", "listener": "X1"})).await;
    a.expect(status(
        "E:109 | Invalid command",
        109,
        Some(json!("bogus is an invalid command.")),
        None,
    ))
    .await;
    a.send_text("not json").await;
    let json_error = a.recv().await;
    assert_eq!(json_error["code"], "E:114 | JSON error");
    assert_eq!(json_error["code_id"], 114);
    assert!(
        json_error["details"]
            .as_str()
            .unwrap()
            .starts_with("A JSON error was raised: "),
        "{json_error}"
    );
    assert!(json_error.get("listener").is_none());
    a.send(json!({"cmd": "pmsg", "id": 123, "val": "x"})).await;
    a.expect(status(
        "E:101 | Syntax",
        101,
        Some(json!({"id": ["must be of ['string', 'dict', 'list', 'set'] type"]})),
        None,
    ))
    .await;
    for client in [&mut a, &mut b, &mut c] {
        client.expect_nothing_more().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_named_client_that_leaves_is_removed_from_everyone_s_list() {
    let Setup {
        server,
        mut a,
        ub,
        b,
        mut c,
        ..
    } = setup().await;
    b.close().await;
    let gone = json!({"cmd": "ulist", "mode": "remove", "val": ub, "rooms": "default"});
    a.expect(gone.clone()).await;
    c.expect(gone).await;
    assert_eq!(server.cloudlink().client_count(), 2);
    server.shutdown().await;
}
