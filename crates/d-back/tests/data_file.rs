//! The `d_back` command on real data without Discord: `--data` files, their
//! errors, `--oauth-client-id`, and the ingest API switched on by environment.

mod common;

use common::binary::*;
use common::*;
use d_back::protocol::errors;
use futures_util::StreamExt;
use serde_json::json;

#[test]
fn a_data_file_that_does_not_parse_ends_the_start_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("world.toml");
    std::fs::write(&toml, "[servers.1]\nid = \"a\"\nname = 5\n").unwrap();
    let json = dir.path().join("world.json");
    std::fs::write(
        &json,
        "{\"servers\": {\"1\": {\"id\": \"a\",\n \"nmae\": \"A\"}}}",
    )
    .unwrap();
    let missing = dir.path().join("nope.toml");
    let cases = [
        (
            toml,
            "line 3, column 8: invalid type: integer `5`, expected a string",
        ),
        (json, "line 2, column 7: unknown field `nmae`"),
        (missing, "cannot read data file"),
    ];
    for (path, expected) in cases {
        let output = d_back()
            .args(["--port", "0", "--data"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains(path.to_str().unwrap()), "{stderr}");
        assert!(lines[0].contains(expected), "{stderr}");
    }
}

#[tokio::test]
async fn a_data_file_is_served_and_the_ingest_api_feeds_it() {
    let (mut child, addr) = spawn(
        &[
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--oauth-client-id",
            "4242",
        ],
        &[
            ("D_BACK_DATA", "examples/world.toml"),
            ("D_BACK_INGEST_TOKEN", "from-the-env"),
        ],
    );
    let (mut client, list) = Client::connect(addr).await;
    assert_eq!(
        list["data"],
        json!({
            "232769614004748288": {"id": "dworld", "name": "D-World", "default": true, "passworded": false},
            "123456789012345678": {"id": "members", "name": "Members Only", "passworded": true},
        })
    );
    let join = client.join("default").await;
    assert_eq!(join["data"]["clientId"], "4242");
    assert_eq!(
        join["data"]["users"]["123456789012345002"],
        json!({"uid": "123456789012345002", "username": "nelly", "status": "idle", "roleColor": "#ffffff"})
    );

    let r = http_with(
        addr,
        "POST",
        "/api/ingest/servers/232769614004748288/presence",
        &[("Authorization", "Bearer from-the-env")],
        br#"{"uid":"123456789012345002","status":"online"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(client.recv().await["data"]["status"], "online");

    client
        .send(json!({"type": "connect", "data": {"server": "members"}}))
        .await;
    assert_eq!(error_message(&client.recv().await), errors::AUTH_REQUIRED);

    child.kill().unwrap();
    child.wait().unwrap();
}

/// The raw `server-list` a new client is sent, as text, so that its order shows.
async fn raw_server_list(addr: std::net::SocketAddr) -> String {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .unwrap();
    let frame = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("the server list in time")
        .unwrap()
        .unwrap();
    frame.into_text().unwrap().as_str().to_owned()
}

#[tokio::test]
async fn the_first_server_in_a_data_file_is_the_default_in_toml_and_json() {
    let dir = tempfile::tempdir().unwrap();
    // Snowflakes in an order no sorting would give: 9…, 1…, 5….
    let toml = dir.path().join("world.toml");
    std::fs::write(
        &toml,
        "[servers.900000000000000009]\nid = \"nine\"\nname = \"Nine\"\n\
         [servers.100000000000000001]\nid = \"one\"\nname = \"One\"\n\
         [servers.500000000000000005]\nid = \"five\"\nname = \"Five\"\n",
    )
    .unwrap();
    let json = dir.path().join("world.json");
    std::fs::write(
        &json,
        r#"{"servers": {
            "900000000000000009": {"id": "nine", "name": "Nine"},
            "100000000000000001": {"id": "one", "name": "One"},
            "500000000000000005": {"id": "five", "name": "Five"}}}"#,
    )
    .unwrap();
    for path in [toml, json] {
        let (child, addr) = spawn(
            &["--host", "127.0.0.1", "--port", "0"],
            &[("D_BACK_DATA", path.to_str().unwrap())],
        );
        let _child = KillOnDrop(child);
        let text = raw_server_list(addr).await;
        let at = |snowflake: &str| {
            text.find(&format!("\"{snowflake}\""))
                .unwrap_or_else(|| panic!("{snowflake} in {text}"))
        };
        assert!(
            at("900000000000000009") < at("100000000000000001")
                && at("100000000000000001") < at("500000000000000005"),
            "{path:?}: the file's order: {text}"
        );
        let list: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            list["data"]["900000000000000009"]["default"], true,
            "{path:?}"
        );
        let (mut client, _) = Client::connect(addr).await;
        client
            .send(json!({"type": "connect", "data": {"server": "default"}}))
            .await;
        let join = client.recv().await;
        assert_eq!(join["data"]["serverName"], "Nine", "{path:?}: {join}");
    }
}
