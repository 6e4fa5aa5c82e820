//! The admin API over real sockets: the token door, every call, that its
//! changes reach the project's clients and the store like a client's own,
//! and that every example in its OpenAPI document is accepted.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use cloudlink::{CloudLink, RunningServer, Server, VariableStore};
use common::{Client, http};
use serde_json::{Value, json};

const TOKEN: &str = "s3cret-admin";
const AUTH: (&str, &str) = ("Authorization", "Bearer s3cret-admin");

async fn start(cloudlink: CloudLink) -> RunningServer {
    Server::builder()
        .port(0)
        .admin_token(TOKEN)
        .bind(cloudlink)
        .await
        .expect("the server starts")
}

async fn call(addr: SocketAddr, method: &str, target: &str, body: &str) -> (u16, Value) {
    let (status, text) = http(addr, method, target, &[AUTH], body).await;
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"))
    };
    (status, value)
}

fn handshake(project: &str, user: &str) -> Value {
    json!({"method": "handshake", "project_id": project, "user": user})
}

#[tokio::test]
async fn without_the_token_every_call_is_refused_and_websockets_still_work_elsewhere() {
    let server = start(CloudLink::builder().build()).await;
    let addr = server.local_addr();
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong")],
        vec![("Authorization", "Basic s3cret-admin")],
    ] {
        let (status, body) = http(addr, "GET", "/api/rooms", &headers, "").await;
        assert_eq!(status, 401, "{headers:?}: {body}");
        assert!(body.contains("admin token"), "{body}");
    }
    let (status, _) = http(
        addr,
        "GET",
        "/api/rooms",
        &[("Authorization", "bearer s3cret-admin")],
        "",
    )
    .await;
    assert_eq!(status, 200, "the scheme in any case");
    let mut client = Client::connect(&server.url(), "S").await;
    client.send(handshake("1", "p")).await;
    client
        .send(json!({"method": "set", "project_id": "1", "name": "v", "value": 1}))
        .await;
    client
        .expect(json!({"method": "set", "name": "v", "value": 1}))
        .await;
}

#[tokio::test]
async fn changes_reach_the_clients_and_the_store_like_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = VariableStore::open(dir.path().join("cloud.redb")).unwrap();
    let cloudlink = CloudLink::builder()
        .store(store)
        .flush_interval(Duration::from_millis(50))
        .max_variables_per_room(2)
        .build();
    let server = start(cloudlink).await;
    let addr = server.local_addr();
    let mut player = Client::connect(&server.url(), "player").await;
    player.send(handshake("1000", "p")).await;

    let (status, body) = call(
        addr,
        "PUT",
        "/api/rooms/1000/variables/%E2%98%81%20score",
        r#"{"value": "120"}"#,
    )
    .await;
    assert_eq!((status, &body), (200, &json!({"changed": true})));
    player
        .expect(json!({"method": "set", "name": "☁ score", "value": "120"}))
        .await;
    let (status, body) = call(
        addr,
        "PUT",
        "/api/rooms/1000/variables/%E2%98%81%20score",
        r#"{"value": "120"}"#,
    )
    .await;
    assert_eq!((status, body), (200, json!({"changed": false})));

    let (status, body) = call(addr, "GET", "/api/rooms", "").await;
    assert_eq!(status, 200);
    assert_eq!(body["rooms"][0]["id"], "1000");
    assert_eq!(body["rooms"][0]["clients"], 1);
    assert_eq!(body["rooms"][0]["variables"], 1);
    let (status, body) = call(addr, "GET", "/api/rooms/1000", "").await;
    assert_eq!(
        (status, &body["variables"]),
        (200, &json!({"☁ score": "120"}))
    );

    call(
        addr,
        "PUT",
        "/api/rooms/1000/variables/b",
        r#"{"value": 1}"#,
    )
    .await;
    player
        .expect(json!({"method": "set", "name": "b", "value": 1}))
        .await;
    let (status, body) = call(
        addr,
        "PUT",
        "/api/rooms/1000/variables/c",
        r#"{"value": 1}"#,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = call(addr, "PUT", "/api/rooms/1000/variables/c", r#"{"val": 1}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("value"), "{body}");

    let (status, _) = call(addr, "DELETE", "/api/rooms/1000/variables/b", "").await;
    assert_eq!(status, 204);
    player
        .expect(json!({"method": "delete", "name": "b"}))
        .await;
    let (status, _) = call(addr, "DELETE", "/api/rooms/1000/variables/b", "").await;
    assert_eq!(status, 404);

    // The log: newest first, with who made each change.
    let (status, body) = call(addr, "GET", "/api/rooms/1000/log?limit=2", "").await;
    assert_eq!(status, 200, "{body}");
    let changes = body["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(
        (
            &changes[0]["method"],
            &changes[0]["variable"],
            &changes[0]["user"]
        ),
        (&json!("delete"), &json!("b"), &json!("admin"))
    );
    assert_eq!(changes[1]["value"], json!(1));
    player
        .send(json!({"method": "set", "project_id": "1000", "name": "☁ score", "value": "5"}))
        .await;
    player
        .expect(json!({"method": "set", "name": "☁ score", "value": "5"}))
        .await;
    let (_, body) = call(addr, "GET", "/api/rooms/1000/log?limit=1", "").await;
    assert_eq!(
        body["changes"][0]["user"], "p",
        "a client's change carries its name"
    );
    let (_, body) = call(addr, "GET", "/api/rooms/1000/log?offset=3", "").await;
    assert_eq!(
        body["changes"][0]["value"], "120",
        "the oldest, after skipping three"
    );
    let (status, _) = call(addr, "GET", "/api/rooms/1000/log?limit=5000", "").await;
    assert_eq!(status, 400);
    // A long value is set, but left out of the log.
    let long = json!({"value": "9".repeat(5000)}).to_string();
    call(
        addr,
        "PUT",
        "/api/rooms/1000/variables/%E2%98%81%20score",
        &long,
    )
    .await;
    let (_, body) = call(addr, "GET", "/api/rooms/1000/log?limit=1", "").await;
    assert_eq!(body["changes"][0]["valueOmitted"], true, "{body}");
    assert!(body["changes"][0].get("value").is_none(), "{body}");

    // A project only in the store is read from it, and changed through it.
    player.close().await;
    server.cloudlink().flush().await.unwrap();
    let (status, body) = call(
        addr,
        "PUT",
        "/api/rooms/2000/variables/x",
        r#"{"value": "7"}"#,
    )
    .await;
    assert_eq!((status, body), (200, json!({"changed": true})));
    let mut late = Client::connect(&server.url(), "late").await;
    late.send(handshake("2000", "q")).await;
    late.expect(json!({"method": "set", "name": "x", "value": "7"}))
        .await;

    // Deleting a project closes its clients with 4004 and forgets its variables.
    let (status, _) = call(addr, "DELETE", "/api/rooms/2000", "").await;
    assert_eq!(status, 204);
    assert_eq!(late.expect_close().await.0, Some(4004));
    server.cloudlink().flush().await.unwrap();
    let (status, body) = call(addr, "GET", "/api/rooms/2000", "").await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = call(addr, "GET", "/api/rooms/nowhere", "").await;
    assert_eq!(status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn every_documented_example_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = VariableStore::open(dir.path().join("cloud.redb")).unwrap();
    let server = start(CloudLink::builder().store(store).build()).await;
    let addr = server.local_addr();
    let (status, text) = http(addr, "GET", "/api/openapi.json", &[], "").await;
    assert_eq!(status, 200, "the document needs no token");
    let document: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(document["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    let mut tried = 0;
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let mut target = path.clone();
            let parameters = operation["parameters"].as_array().into_iter().flatten();
            for parameter in parameters.filter(|p| p["in"] == "path") {
                let name = parameter["name"].as_str().unwrap();
                let example = parameter["example"]
                    .as_str()
                    .expect("every parameter has an example");
                let encoded: String = example
                    .bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect();
                target = target.replace(&format!("{{{name}}}"), &encoded);
            }
            let body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .map(|reference| {
                    let schema = reference.rsplit('/').next().unwrap();
                    document["components"]["schemas"][schema]["example"].to_string()
                })
                .unwrap_or_default();
            let method = method.to_uppercase();
            let (status, reply) = http(addr, &method, &target, &[AUTH], &body).await;
            let documented = operation["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(&status.to_string()),
                "{method} {target} answered {status}, which its document does not list: {reply}"
            );
            tried += 1;
        }
    }
    assert_eq!(tried, 7, "every operation was tried");
}
