//! The d-zone wire contract, row by row, over real sockets.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use d_back::protocol::errors;
use d_back::{
    DataProvider, DiscordUser, MockWorld, ProviderError, Roster, Server, ServerInfo, ServerList,
    Status, User, async_trait,
};
use serde_json::json;

#[tokio::test]
async fn server_list_comes_first_and_holds_no_secrets() {
    let server = start(Server::builder().provider(Guarded::default())).await;
    let (_client, list) = Client::connect(server.local_addr()).await;
    let data = list["data"].as_object().unwrap();
    assert_eq!(data.len(), 5);
    assert_eq!(
        data["1"],
        json!({"id": "open", "name": "Open", "default": true, "passworded": false})
    );
    assert_eq!(data["2"]["passworded"], true);
    assert!(
        !list.to_string().contains("sesame"),
        "the legacy password is never sent"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_built_in_world_lists_four_servers() {
    let server = start(Server::builder()).await;
    let (_client, list) = Client::connect(server.local_addr()).await;
    let data = list["data"].as_object().unwrap();
    let mut keys: Vec<&str> = data.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, [OAUTH, DWORLD, DOCS, REPOS]);
    assert_eq!(data[DWORLD]["default"], true);
    assert_eq!(data[OAUTH]["passworded"], true);
    for entry in data.values() {
        assert!(entry["passworded"].is_boolean());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn connect_resolves_default_null_blank_numbers_and_trims() {
    let server = start(Server::builder().provider(MockWorld::new())).await;
    let addr = server.local_addr();
    let (mut client, _) = Client::connect(addr).await;
    let cases = [
        (
            json!({"type": "connect", "data": {"server": null}}),
            "default",
        ),
        (json!({"type": "connect", "data": {}}), "default"),
        (json!({"type": "connect"}), "default"),
        (
            json!({"type": "connect", "data": {"server": "   "}}),
            "default",
        ),
        (
            json!({"type": "connect", "data": {"server": "default"}}),
            "default",
        ),
        (
            json!({"type": "connect", "data": {"server": " dworld\t"}}),
            "dworld",
        ),
    ];
    for (request, echoed) in cases {
        client.send(request.clone()).await;
        let join = client.recv_type("server-join").await;
        assert_eq!(
            join["data"]["request"],
            json!({"server": echoed}),
            "{request}"
        );
        assert_eq!(join["data"]["serverName"], "D-World");
        assert_eq!(join["data"]["users"].as_object().unwrap().len(), 4);
    }
    let join = client.join("repos").await;
    assert_eq!(join["data"]["users"].as_object().unwrap().len(), 21);
    let user = &join["data"]["users"]["423456789012345001"];
    assert_eq!(
        *user,
        json!({"uid": "423456789012345001", "username": "me", "status": "online", "roleColor": "#54a0ff"})
    );
    server.shutdown().await;

    // A numeric public id is matched by its decimal string.
    let server = start(Server::builder().provider(Guarded::default())).await;
    let (mut client, _) = Client::connect(server.local_addr()).await;
    client
        .send(json!({"type": "connect", "data": {"server": 3}}))
        .await;
    let join = client.recv().await;
    assert_eq!(join["data"]["request"]["server"], "3");
    assert_eq!(join["data"]["serverName"], "Numbered");
    server.shutdown().await;
}

#[tokio::test]
async fn bad_frames_get_the_reference_sentences_and_the_connection_lives_on() {
    let server = start(Server::builder()).await;
    let (mut client, _) = Client::connect(server.local_addr()).await;
    let cases: [(&str, &str); 5] = [
        ("{not json", errors::INVALID_JSON),
        ("", errors::INVALID_JSON),
        (r#"{"data":{}}"#, errors::UNKNOWN_TYPE),
        (r#"{"type":"dance","data":{}}"#, errors::UNKNOWN_TYPE),
        (r#"[1,2,3]"#, errors::UNKNOWN_TYPE),
    ];
    for (text, sentence) in cases {
        client.send_text(text).await;
        assert_eq!(
            error_message(&client.recv().await),
            sentence,
            "for {text:?}"
        );
    }
    client.send_binary(&[0xff, 0xfe, 0x00]).await;
    assert_eq!(error_message(&client.recv().await), errors::INVALID_BINARY);
    client
        .send_binary(br#"{"type":"connect","data":{"server":"docs"}}"#)
        .await;
    let join = client.recv().await;
    assert_eq!(
        join["type"], "server-join",
        "binary JSON is handled as text"
    );
    assert_eq!(join["data"]["serverName"], "Docs (WIP)");
    client
        .send(json!({"type": "connect", "data": {"server": "nowhere"}}))
        .await;
    assert_eq!(error_message(&client.recv().await), errors::NO_SUCH_SERVER);
    client.join("dworld").await;
    server.shutdown().await;
}

#[tokio::test]
async fn websocket_is_accepted_on_any_path() {
    let server = start(Server::builder()).await;
    for path in ["/", "/ws", "/d-zone/ws", "/index.html"] {
        let (mut client, _) = Client::connect_path(server.local_addr(), path).await;
        client.join("default").await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_frame_sent_along_with_the_upgrade_request_is_not_lost() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start(Server::builder()).await;
    let mut tcp = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let connect = br#"{"type":"connect","data":{"server":"dworld"}}"#;
    let mut bytes = b"GET / HTTP/1.1\r\nHost: d-back\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    // One masked text frame (mask key all zero), in the same write as the request.
    bytes.extend_from_slice(&[0x81, 0x80 | connect.len() as u8, 0, 0, 0, 0]);
    bytes.extend_from_slice(connect);
    tcp.write_all(&bytes).await.unwrap();
    let mut seen = Vec::new();
    let joined = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "the server closed the connection");
            seen.extend_from_slice(&buf[..n]);
            if seen.windows(13).any(|w| w == b"\"server-join\"") {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(joined.is_ok(), "no server-join; got: {text}");
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_mock_oauth_server_accepts_any_named_discord_user_and_nothing_else() {
    let server = start(Server::builder()).await;
    let (mut client, _) = Client::connect(server.local_addr()).await;
    client
        .send(json!({"type": "connect", "data": {"server": "oauth"}}))
        .await;
    assert_eq!(error_message(&client.recv().await), errors::AUTH_REQUIRED);
    client
        .send(json!({"type": "connect", "data": {"server": "oauth", "discordToken": "t", "discordUser": {"id": "80351110224678912"}}}))
        .await;
    assert_eq!(error_message(&client.recv().await), errors::AUTH_REQUIRED);
    let login = json!({"type": "connect", "data": {"server": "oauth", "discordToken": "tok",
        "discordUser": {"id": "80351110224678912", "username": "nelly"}}});
    client.send(login).await;
    let join = client.recv().await;
    assert_eq!(join["type"], "server-join");
    assert_eq!(join["data"]["request"], json!({"server": "oauth"}));
    assert!(
        !join.to_string().contains("tok\""),
        "the token is not echoed"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn passworded_servers_fail_closed_and_never_echo_the_password() {
    let oauth = |server: &str| {
        json!({"type": "connect", "data": {"server": server, "discordToken": "tok",
            "discordUser": {"id": "7", "username": "alice"}}})
    };

    // No validator: the default trait method refuses every login.
    let server = start(Server::builder().provider(NoValidator)).await;
    let (mut client, _) = Client::connect(server.local_addr()).await;
    client.send(oauth("plain-locked")).await;
    assert_eq!(error_message(&client.recv().await), errors::AUTH_FAILED);
    client
        .send(json!({"type": "connect", "data": {"server": "plain-locked", "password": "sesame"}}))
        .await;
    assert_eq!(
        error_message(&client.recv().await),
        errors::AUTH_REQUIRED,
        "a server without a configured password accepts none"
    );
    server.shutdown().await;

    let provider = Guarded::default();
    let approve = Arc::clone(&provider.approve);
    let server = start(Server::builder().provider(provider)).await;
    let (mut client, _) = Client::connect(server.local_addr()).await;

    // A validator that says no, then yes.
    client.send(oauth("locked")).await;
    assert_eq!(error_message(&client.recv().await), errors::AUTH_FAILED);
    approve.store(true, Ordering::SeqCst);
    client.send(oauth("locked")).await;
    assert_eq!(client.recv().await["type"], "server-join");

    // The legacy password, right and wrong.
    client
        .send(json!({"type": "connect", "data": {"server": "locked", "password": "sesame!"}}))
        .await;
    assert_eq!(error_message(&client.recv().await), errors::AUTH_REQUIRED);
    client
        .send(json!({"type": "connect", "data": {"server": "locked", "password": "sesame"}}))
        .await;
    let join = client.recv().await;
    assert_eq!(join["type"], "server-join");
    assert_eq!(join["data"]["request"], json!({"server": "locked"}));
    assert!(!join.to_string().contains("sesame"));
    server.shutdown().await;
}

#[tokio::test]
async fn a_failing_or_panicking_provider_is_an_error_frame_not_a_crash() {
    let server = start(Server::builder().provider(Guarded::default())).await;
    let addr = server.local_addr();
    let (mut client, _) = Client::connect(addr).await;
    client
        .send(json!({"type": "connect", "data": {"server": "3"}}))
        .await;
    assert_eq!(client.recv().await["type"], "server-join");
    for broken in ["broken", "panics"] {
        client
            .send(json!({"type": "connect", "data": {"server": broken}}))
            .await;
        assert_eq!(
            error_message(&client.recv().await),
            errors::PROVIDER_FAILED,
            "{broken}"
        );
    }
    // The connection and the server both carry on.
    client.join("open").await;
    let (mut other, _) = Client::connect(addr).await;
    other.join("open").await;
    server.shutdown().await;
}

/// A provider with a legacy password, a switchable validator, and servers that fail.
#[derive(Default)]
struct Guarded {
    approve: Arc<AtomicBool>,
}

fn guarded_servers() -> ServerList {
    let mut list = ServerList::new();
    list.insert("1".into(), ServerInfo::new("open", "Open").default_server());
    list.insert(
        "2".into(),
        ServerInfo::new("locked", "Locked").with_password("sesame"),
    );
    list.insert("3".into(), ServerInfo::new("3", "Numbered"));
    list.insert("5".into(), ServerInfo::new("broken", "Broken"));
    list.insert("6".into(), ServerInfo::new("panics", "Panics"));
    list
}

#[async_trait]
impl DataProvider for Guarded {
    async fn servers(&self) -> Result<ServerList, ProviderError> {
        Ok(guarded_servers())
    }

    async fn users(&self, server: &str) -> Result<Roster, ProviderError> {
        match server {
            "5" => return Err(ProviderError::new("the member database is down")),
            "6" => panic!("a bug in the provider"),
            _ => {}
        }
        let mut roster = Roster::new();
        roster.insert(
            "7".into(),
            User::new("7", format!("user of {server}"), Status::Online, "#123456"),
        );
        Ok(roster)
    }

    async fn validate_discord_user(
        &self,
        server: &str,
        token: &str,
        user: &DiscordUser,
    ) -> Result<bool, ProviderError> {
        Ok(
            server == "2"
                && token == "tok"
                && user.id == "7"
                && self.approve.load(Ordering::SeqCst),
        )
    }
}

/// A passworded server whose provider keeps the default (fail-closed) validator.
struct NoValidator;

#[async_trait]
impl DataProvider for NoValidator {
    async fn servers(&self) -> Result<ServerList, ProviderError> {
        let mut list = ServerList::new();
        list.insert(
            "4".into(),
            ServerInfo::new("plain-locked", "Plain").passworded(),
        );
        Ok(list)
    }

    async fn users(&self, _server: &str) -> Result<Roster, ProviderError> {
        Ok(Roster::new())
    }
}
