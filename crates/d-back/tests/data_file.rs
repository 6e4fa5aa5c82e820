//! The `d_back` command on real data without Discord: `--data` files, their
//! errors, `--oauth-client-id`, and the ingest API switched on by environment.

mod common;

use common::binary::*;
use common::*;
use d_back::protocol::errors;
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
