//! The extension API over real sockets: custom commands (several handlers,
//! beside built-in ones, for both protocols), every hook, the helpers, and a
//! handler that panics. Also the protocol settings of the builder.

mod common;

use std::time::Duration;

use cloudlink::{CloudLink, ExceptionKind, Protocol, StatusCode};
use common::{Client, Got, ok, start};
use serde_json::json;
use tokio::sync::mpsc;

/// Records which hook fired, in order.
fn recorder() -> (
    mpsc::UnboundedSender<String>,
    mpsc::UnboundedReceiver<String>,
) {
    mpsc::unbounded_channel()
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("a hook fired in time")
        .expect("the server is alive")
}

#[tokio::test]
async fn custom_commands_and_hooks_run_in_order() {
    let (tx, mut events) = recorder();
    let hook = |name: &'static str| {
        let tx = tx.clone();
        move |_event: cloudlink::Event| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(name.to_owned());
            }
        }
    };
    let failure = |name: &'static str| {
        let tx = tx.clone();
        move |failure: cloudlink::Failure| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(format!("{name}: {}", failure.details));
            }
        }
    };
    let tx_message = tx.clone();
    let builder = CloudLink::builder()
        .disable_command("gvar")
        .on_connect(hook("connect"))
        .on_protocol_identified(Protocol::Cl4, hook("identified"))
        .on_disconnect(hook("disconnect"))
        .on_protocol_disconnect(Protocol::Cl4, hook("protocol disconnect"))
        .on_error(failure("error"))
        .on_exception(
            Protocol::Cl4,
            ExceptionKind::InvalidCommand,
            failure("invalid"),
        )
        .on_disabled_command(Protocol::Cl4, failure("disabled"))
        .on_message(move |command| {
            let tx = tx_message.clone();
            async move {
                let _ = tx.send(format!("message {}", command.message["cmd"]));
            }
        })
        // Two handlers for one custom command: both run, in order.
        .on_command(Protocol::Cl4, "foo", |command| async move {
            let reply = json!({"cmd": "foo_reply", "val": command.client.username()});
            command
                .server
                .send(&command.client, &reply, Some(&command.message));
        })
        .on_command(Protocol::Cl4, "foo", |command| async move {
            let server = &command.server;
            server.send_status(
                &command.client,
                StatusCode::Ok,
                None,
                Some(&command.message),
            );
        })
        // A handler beside a built-in command runs after it.
        .on_command(Protocol::Cl4, "gmsg", |command| async move {
            let after = json!({"cmd": "after_gmsg"});
            command.server.unicast(&command.client, &after);
        })
        .on_command(Protocol::Cl4, "boom", |_command| async move {
            panic!("a handler with a bug");
        });
    let server = start(builder).await;
    let (mut a, _) = Client::named(&server.url(), "alice").await;
    assert_eq!(next_event(&mut events).await, "connect");
    assert_eq!(next_event(&mut events).await, "identified");
    assert_eq!(next_event(&mut events).await, "message \"handshake\"");
    assert_eq!(next_event(&mut events).await, "message \"setid\"");

    a.send(json!({"cmd": "foo", "listener": "f"})).await;
    a.expect(json!({"cmd": "foo_reply", "val": "alice", "listener": "f"}))
        .await;
    a.expect(ok("f")).await;
    assert_eq!(next_event(&mut events).await, "message \"foo\"");

    a.send(json!({"cmd": "gmsg", "val": 1})).await;
    a.expect(json!({"cmd": "gmsg", "val": 1, "rooms": "default"}))
        .await;
    a.expect(json!({"cmd": "after_gmsg"})).await;
    assert_eq!(next_event(&mut events).await, "message \"gmsg\"");

    a.send(json!({"cmd": "nope"})).await;
    assert_eq!(a.recv().await["code_id"], 109);
    assert_eq!(
        next_event(&mut events).await,
        "error: \"nope is an invalid command.\""
    );
    assert_eq!(
        next_event(&mut events).await,
        "invalid: \"nope is an invalid command.\""
    );

    a.send(json!({"cmd": "gvar", "name": "x", "val": 1})).await;
    a.expect(json!({"cmd": "statuscode", "code": "E:110 | Command disabled", "code_id": 110, "details": "gvar is a disabled command."})).await;
    assert_eq!(next_event(&mut events).await, "disabled: \"gvar\"");

    // A panicking handler costs the client an E:105, not its connection.
    a.send(json!({"cmd": "boom", "listener": "b"})).await;
    a.expect(json!({"cmd": "statuscode", "code": "E:105 | Internal server error", "code_id": 105, "listener": "b"})).await;
    assert!(next_event(&mut events).await.starts_with("error: "));
    assert_eq!(next_event(&mut events).await, "message \"boom\"");
    a.expect_nothing_more().await;
    assert_eq!(next_event(&mut events).await, "message \"ping\"");

    a.close().await;
    assert_eq!(next_event(&mut events).await, "disconnect");
    assert_eq!(next_event(&mut events).await, "protocol disconnect");
    server.shutdown().await;
}

#[tokio::test]
async fn helpers_find_clients_move_them_between_rooms_and_disconnect_them() {
    let builder = CloudLink::builder()
        .on_command(Protocol::Cl4, "gather", |command| async move {
            let server = &command.server;
            let room = command.message["val"].as_str().unwrap_or_default();
            for name in ["alice", "bob"] {
                for client in server.find_by_username(name) {
                    server.join_room(&client, room);
                }
            }
            let members = server.room_members(room, Protocol::Cl4);
            let note = json!({"cmd": "gathered", "val": members.len()});
            server.multicast(&members, &note);
        })
        .on_command(Protocol::Cl4, "kick", |command| async move {
            let server = &command.server;
            let id = command.message["id"].as_str().unwrap_or_default();
            let found = server
                .find_by_uuid(id)
                .or_else(|| server.find_by_snowflake(id));
            if let Some(client) = found {
                server.disconnect(
                    &client,
                    4321,
                    format!("kicked by {}", command.client.uuid()),
                );
            }
        });
    let server = start(builder).await;
    let url = server.url();
    let (mut a, ua) = Client::named(&url, "alice").await;
    let (mut b, ub) = Client::named(&url, "bob").await;
    a.expect(json!({"cmd": "ulist", "mode": "add", "val": ub, "rooms": "default"}))
        .await;
    assert_eq!(server.cloudlink().find("alice").len(), 1);
    assert_eq!(
        server.cloudlink().find(ua["uuid"].as_str().unwrap())[0].username(),
        Some("alice")
    );

    a.send(json!({"cmd": "gather", "val": "side"})).await;
    a.expect(json!({"cmd": "gathered", "val": 2})).await;
    b.expect(json!({"cmd": "gathered", "val": 2})).await;
    let bob = server.cloudlink().find_by_username("bob").remove(0);
    let mut rooms = server.cloudlink().rooms_of(&bob);
    rooms.sort();
    assert_eq!(rooms, ["default", "side"]);
    // A gmsg to the new room reaches both.
    a.send(json!({"cmd": "gmsg", "val": "psst", "rooms": "side"}))
        .await;
    for client in [&mut a, &mut b] {
        client
            .expect(json!({"cmd": "gmsg", "val": "psst", "rooms": "side"}))
            .await;
    }
    assert!(server.cloudlink().leave_room(&bob, "side"));

    a.send(json!({"cmd": "kick", "id": ub["id"]})).await;
    assert_eq!(
        b.expect_close().await,
        (
            Some(4321),
            format!("kicked by {}", ua["uuid"].as_str().unwrap())
        )
    );
    a.expect(json!({"cmd": "ulist", "mode": "remove", "val": ub, "rooms": "default"}))
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn scratch_clients_can_have_custom_methods() {
    let builder =
        CloudLink::builder().on_command(Protocol::Scratch, "hello", |command| async move {
            let reply = json!({"method": "hello", "name": command.client.username(), "value": 1});
            command.server.unicast(&command.client, &reply);
        });
    let server = start(builder).await;
    let mut s = Client::connect(&server.url(), "S").await;
    s.send(json!({"method": "handshake", "project_id": "1", "user": "pat"}))
        .await;
    s.send(json!({"method": "hello"})).await;
    s.expect(json!({"method": "hello", "name": "pat", "value": 1}))
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_full_server_says_so_and_closes() {
    let server = start(CloudLink::builder().max_clients(1)).await;
    let mut a = Client::connect(&server.url(), "A").await;
    a.handshake().await;
    let mut b = Client::connect(&server.url(), "B").await;
    assert_eq!(b.next().await, Got::Text("Server is full!".into()));
    assert_eq!(b.expect_close().await, (Some(1000), String::new()));
    a.expect_nothing_more().await;
    server.shutdown().await;
}

#[tokio::test]
async fn ambiguous_usernames_can_be_allowed_and_the_address_hidden() {
    let server = start(
        CloudLink::builder()
            .warn_if_multiple_username_matches(false)
            .send_client_ip(false),
    )
    .await;
    let url = server.url();
    let mut x = Client::connect(&url, "X").await;
    x.send(json!({"cmd": "handshake", "listener": "h"})).await;
    assert_eq!(
        x.recv().await["cmd"],
        "server_version",
        "no client_ip, no motd"
    );
    let (mut b1, _) = Client::named(&url, "bob").await;
    let (mut b2, _) = Client::named(&url, "bob").await;
    let (mut a, ua) = Client::named(&url, "alice").await;
    a.send(json!({"cmd": "pmsg", "id": "bob", "val": "both", "listener": "p"}))
        .await;
    a.expect(ok("p")).await;
    for bob in [&mut b1, &mut b2] {
        loop {
            let got = bob.recv().await;
            if got["cmd"] == "pmsg" {
                assert_eq!(
                    got,
                    json!({"cmd": "pmsg", "val": "both", "origin": ua, "rooms": "default"})
                );
                break;
            }
        }
    }
    server.shutdown().await;
}
