//! The ingest API over real HTTP: the token guards it, bad bodies are named,
//! both spellings of a field are read, what a bot posts reaches the joined
//! WebSocket clients, and the OpenAPI document's examples work as written.

mod common;

use common::binary::{KillOnDrop, spawn_with_log, wait_for_line};
use common::*;
use d_back::Server;
use d_back::protocol::errors;
use d_back::provider::Store;
use serde_json::{Value, json};

const TOKEN: &str = "s3cret-ingest-token";
const GUILD: &str = "555000000000000001";

async fn ingest_server() -> (d_back::RunningServer, Store) {
    let store = Store::new();
    let server = start(
        Server::builder()
            .provider(store.clone())
            .ingest_api(TOKEN, store.clone()),
    )
    .await;
    (server, store)
}

async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> HttpResponse {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer.as_str()));
    }
    http_with(addr, method, path, &headers, body.as_bytes()).await
}

fn json_of(response: &HttpResponse) -> Value {
    serde_json::from_slice(&response.body).expect("a JSON body")
}

async fn list_guild(addr: std::net::SocketAddr) {
    let servers = json!({GUILD: {"id": "lobby", "name": "The Lobby"}}).to_string();
    let r = call(addr, "PUT", "/api/ingest/servers", Some(TOKEN), &servers).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let users = json!([
        {"uid": "1", "username": "ada", "status": "online", "roleColor": "#ff0000"},
        {"uid": "2", "username": "brian"}
    ])
    .to_string();
    let path = format!("/api/ingest/servers/{GUILD}/users");
    let r = call(addr, "PUT", &path, Some(TOKEN), &users).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn calls_without_the_right_token_are_refused() {
    let (server, _) = ingest_server().await;
    let addr = server.local_addr();
    let body = json!({GUILD: {"id": "lobby", "name": "L"}}).to_string();
    for token in [None, Some("wrong"), Some("s3cret-ingest-toke")] {
        let r = call(addr, "PUT", "/api/ingest/servers", token, &body).await;
        assert_eq!(r.status, 401, "token {token:?}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert!(json_of(&r)["error"].as_str().unwrap().contains("token"));
    }
    let (_, list) = Client::connect(addr).await;
    assert_eq!(list["data"], json!({}), "nothing was listed");
    server.shutdown().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_read_in_any_case() {
    let (server, _) = ingest_server().await;
    let addr = server.local_addr();
    let body = json!({GUILD: {"id": "lobby", "name": "L"}}).to_string();
    let put = |authorization: String| {
        let body = body.clone();
        async move {
            let headers = [("Authorization", authorization.as_str())];
            http_with(
                addr,
                "PUT",
                "/api/ingest/servers",
                &headers,
                body.as_bytes(),
            )
            .await
        }
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = put(format!("{scheme} {TOKEN}")).await;
        assert_eq!(r.status, 200, "{scheme}: {}", r.text());
    }
    for wrong in [
        format!("Basic {TOKEN}"),
        format!("Bearer {}", TOKEN.to_uppercase()),
        format!("Bearer{TOKEN}"),
        "Bearer".to_owned(),
    ] {
        let r = put(wrong.clone()).await;
        assert_eq!(r.status, 401, "{wrong}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{wrong}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_data_files_spellings_are_read_as_well() {
    let (server, _) = ingest_server().await;
    let addr = server.local_addr();
    // hide_offline / hideOffline on two servers.
    let servers = json!({
        GUILD: {"id": "snake", "name": "Snake", "hide_offline": true},
        "555000000000000002": {"id": "camel", "name": "Camel", "hideOffline": true}
    })
    .to_string();
    let r = call(addr, "PUT", "/api/ingest/servers", Some(TOKEN), &servers).await;
    assert_eq!(r.status, 200, "{}", r.text());
    for (snowflake, field) in [(GUILD, "role_color"), ("555000000000000002", "roleColor")] {
        let users = json!([
            {"uid": "1", "username": "ada", "status": "online", field: "#ff0000"},
            {"uid": "2", "username": "sleeper", field: "#00ff00"}
        ])
        .to_string();
        let path = format!("/api/ingest/servers/{snowflake}/users");
        let r = call(addr, "PUT", &path, Some(TOKEN), &users).await;
        assert_eq!(r.status, 200, "{field}: {}", r.text());
    }
    for id in ["snake", "camel"] {
        let (mut client, join) = Client::joined(addr, id).await;
        let users = join["data"]["users"].as_object().unwrap();
        assert_eq!(users["1"]["roleColor"], "#ff0000", "{id}");
        assert!(!users.contains_key("2"), "{id}: offline users are hidden");
        // role_color / roleColor on a presence, and client_id / clientId.
        let snowflake = if id == "snake" {
            GUILD
        } else {
            "555000000000000002"
        };
        let field = if id == "snake" {
            "role_color"
        } else {
            "roleColor"
        };
        let presence = json!({"uid": "1", "status": "idle", field: "#0000ff"}).to_string();
        let path = format!("/api/ingest/servers/{snowflake}/presence");
        let r = call(addr, "POST", &path, Some(TOKEN), &presence).await;
        assert_eq!(r.status, 200, "{field}: {}", r.text());
        assert_eq!(client.recv().await["data"]["roleColor"], "#0000ff");
        let field = if id == "snake" {
            "client_id"
        } else {
            "clientId"
        };
        let body = json!({field: "42", "server": snowflake}).to_string();
        let r = call(addr, "PUT", "/api/ingest/client-id", Some(TOKEN), &body).await;
        assert_eq!(r.status, 204, "{field}: {}", r.text());
        assert_eq!(client.recv().await["data"]["clientId"], "42");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_role_colour_that_is_not_rrggbb_is_refused_with_its_value() {
    let (server, _) = ingest_server().await;
    let addr = server.local_addr();
    list_guild(addr).await;
    let users = format!("/api/ingest/servers/{GUILD}/users");
    let presence = format!("/api/ingest/servers/{GUILD}/presence");
    let cases = [
        (
            "PUT",
            &users,
            r#"[{"uid":"1","username":"a","roleColor":"red"}]"#,
            "\"red\"",
        ),
        (
            "PUT",
            &users,
            r##"[{"uid":"1","username":"a","role_color":"#12345"}]"##,
            "\"#12345\"",
        ),
        (
            "POST",
            &presence,
            r##"{"uid":"1","status":"idle","roleColor":"#gggggg"}"##,
            "\"#gggggg\"",
        ),
    ];
    for (method, path, body, value) in cases {
        let r = call(addr, method, path, Some(TOKEN), body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let error = json_of(&r)["error"].as_str().unwrap().to_owned();
        assert!(error.contains("`roleColor`"), "{body}: {error}");
        assert!(error.contains(value), "{body}: {error}");
        assert!(error.contains("#rrggbb"), "{body}: {error}");
    }
    let (_, join) = Client::joined(addr, "lobby").await;
    assert_eq!(
        join["data"]["users"]["1"]["roleColor"], "#ff0000",
        "nothing refused was stored"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn with_no_server_listed_a_browser_is_told_so() {
    let (server, _) = ingest_server().await;
    let (mut client, list) = Client::connect(server.local_addr()).await;
    assert_eq!(list["data"], json!({}));
    for asked in [json!(null), json!("default"), json!("lobby")] {
        client
            .send(json!({"type": "connect", "data": {"server": asked}}))
            .await;
        let frame = client.recv().await;
        assert_eq!(error_message(&frame), errors::NO_SERVERS_YET, "{asked}");
    }
    // Once a bot lists one, the same browser joins it.
    list_guild(server.local_addr()).await;
    client.join("default").await;
    server.shutdown().await;
}

#[test]
fn the_start_up_log_says_how_to_list_a_server() {
    let (child, addr, lines) = spawn_with_log(
        &[
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--ingest-token",
            TOKEN,
        ],
        &[],
    );
    let _child = KillOnDrop(child);
    let line = wait_for_line(&lines, "no Discord servers yet");
    assert!(
        line.contains(&format!("curl -X PUT http://{addr}/api/ingest/servers")),
        "{line}"
    );
    assert!(line.contains("Authorization: Bearer"), "{line}");
    assert!(!line.contains(TOKEN), "the token is never logged: {line}");
}

#[tokio::test]
async fn the_api_is_off_without_a_token() {
    let server = start(Server::builder().provider(Store::new())).await;
    let r = call(
        server.local_addr(),
        "PUT",
        "/api/ingest/servers",
        Some(TOKEN),
        "{}",
    )
    .await;
    assert_ne!(r.status, 200);
    assert_eq!(r.status, 405);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_bodies_get_400_naming_the_field_and_unknown_servers_404() {
    let (server, _) = ingest_server().await;
    let addr = server.local_addr();
    list_guild(addr).await;
    let presence = format!("/api/ingest/servers/{GUILD}/presence");
    let cases = [
        (
            "PUT",
            "/api/ingest/servers".to_owned(),
            "{not json",
            "invalid JSON body",
        ),
        (
            "PUT",
            "/api/ingest/servers".to_owned(),
            r#"{"1":{"name":"x"}}"#,
            "`id`",
        ),
        ("POST", presence.clone(), r#"{"status":"online"}"#, "`uid`"),
        ("POST", presence.clone(), r#"{"uid":"1"}"#, "`status`"),
        (
            "POST",
            presence.clone(),
            r#"{"uid":"1","status":"sleepy"}"#,
            "sleepy",
        ),
        (
            "POST",
            format!("/api/ingest/servers/{GUILD}/messages"),
            r#"{"uid":"1","message":"hi"}"#,
            "`channel`",
        ),
        (
            "PUT",
            format!("/api/ingest/servers/{GUILD}/users"),
            r#"[{"uid":"1"}]"#,
            "`username`",
        ),
        (
            "PUT",
            "/api/ingest/client-id".to_owned(),
            "{}",
            "`clientId`",
        ),
    ];
    for (method, path, body, named) in cases {
        let r = call(addr, method, &path, Some(TOKEN), body).await;
        assert_eq!(r.status, 400, "{method} {path} {body}: {}", r.text());
        let error = json_of(&r)["error"].as_str().unwrap().to_owned();
        assert!(error.contains(named), "{body}: {error}");
    }
    let r = call(
        addr,
        "POST",
        "/api/ingest/servers/999/presence",
        Some(TOKEN),
        r#"{"uid":"1","status":"idle"}"#,
    )
    .await;
    assert_eq!(r.status, 404);
    assert!(json_of(&r)["error"].as_str().unwrap().contains("999"));
    let r = call(
        addr,
        "PUT",
        "/api/ingest/client-id",
        Some(TOKEN),
        r#"{"clientId":"5","server":"999"}"#,
    )
    .await;
    assert_eq!(r.status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn what_a_bot_posts_reaches_joined_clients() {
    let (server, _) = ingest_server().await;
    let addr = server.local_addr();
    list_guild(addr).await;

    let (mut client, list) = Client::connect(addr).await;
    assert_eq!(list["data"][GUILD]["id"], "lobby");
    assert_eq!(
        list["data"][GUILD]["default"], true,
        "the only server is the default"
    );
    let join = client.join("default").await;
    assert_eq!(join["data"]["serverName"], "The Lobby");
    assert_eq!(join["data"]["users"]["1"]["roleColor"], "#ff0000");
    assert_eq!(join["data"]["users"]["2"]["status"], "offline");
    assert_eq!(join["data"]["users"]["2"]["roleColor"], "#ffffff");

    let r = call(
        addr,
        "POST",
        &format!("/api/ingest/servers/{GUILD}/presence"),
        Some(TOKEN),
        r#"{"uid":"2","status":"dnd"}"#,
    )
    .await;
    assert_eq!(json_of(&r)["delivered"], 1);
    let frame = client.recv().await;
    assert_eq!(
        frame,
        json!({"type":"presence","server":GUILD,"data":{"uid":"2","status":"dnd"}})
    );

    let r = call(
        addr,
        "POST",
        &format!("/api/ingest/servers/{GUILD}/messages"),
        Some(TOKEN),
        r#"{"uid":"1","message":"hello from a bot","channel":"42"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let frame = client.recv().await;
    assert_eq!(
        frame,
        json!({"type":"message","server":GUILD,"data":{"uid":"1","message":"hello from a bot","channel":"42"}})
    );

    let r = call(
        addr,
        "PUT",
        "/api/ingest/client-id",
        Some(TOKEN),
        r#"{"clientId":"777"}"#,
    )
    .await;
    assert_eq!(r.status, 204);
    let frame = client.recv().await;
    assert_eq!(
        frame,
        json!({"type":"update-clientid","server":GUILD,"data":{"clientId":"777"}})
    );

    // Replacing the roster tells the watcher who left and who came.
    let users = json!([{"uid": "1", "username": "ada", "status": "online", "roleColor": "#ff0000"},
                       {"uid": "3", "username": "cleo", "status": "idle"}])
    .to_string();
    let r = call(
        addr,
        "PUT",
        &format!("/api/ingest/servers/{GUILD}/users"),
        Some(TOKEN),
        &users,
    )
    .await;
    assert_eq!(r.status, 200);
    let left = client.recv().await;
    assert_eq!(
        left["data"],
        json!({"uid": "2", "status": "offline", "delete": true})
    );
    let came = client.recv().await;
    assert_eq!(
        came["data"],
        json!({"uid": "3", "status": "idle", "username": "cleo", "roleColor": "#ffffff"})
    );
    assert!(
        client.next_json(QUIET).await.is_none(),
        "ada did not change"
    );

    // A later joiner sees the same world, including the new client id.
    let (_, join) = Client::joined(addr, "lobby").await;
    let users = &join["data"]["users"];
    assert_eq!(users.as_object().unwrap().len(), 2);
    assert_eq!(users["2"], Value::Null);
    assert_eq!(users["3"]["username"], "cleo");
    assert_eq!(join["data"]["clientId"], "777");
    server.shutdown().await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint_and_answer() {
    let (server, _) = ingest_server().await;
    let r = http(server.local_addr(), "GET", "/api/openapi.json").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = json_of(&r);
    assert_eq!(doc["openapi"], "3.1.0");
    let codes = |path: &str, method: &str| -> Vec<String> {
        let responses = doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} is described"));
        responses.keys().cloned().collect()
    };
    for (method, path, answers) in [
        (
            "put",
            "/api/ingest/servers",
            &["200", "400", "401", "413"][..],
        ),
        (
            "put",
            "/api/ingest/servers/{server}/users",
            &["200", "400", "401", "404", "413"],
        ),
        (
            "post",
            "/api/ingest/servers/{server}/presence",
            &["200", "400", "401", "404", "413"],
        ),
        (
            "post",
            "/api/ingest/servers/{server}/messages",
            &["200", "400", "401", "404", "413"],
        ),
        (
            "put",
            "/api/ingest/client-id",
            &["204", "400", "401", "404", "413"],
        ),
        ("get", "/api/openapi.json", &["200"]),
    ] {
        assert_eq!(codes(path, method), answers, "{method} {path}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    server.shutdown().await;
}

/// Follows a `$ref` within the document.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("a local reference");
            resolve(doc, doc.pointer(pointer).expect("the reference resolves"))
        }
        None => schema,
    }
}

/// The documented example of an operation's JSON body, if it has one.
fn request_example(doc: &Value, operation: &Value) -> Option<Value> {
    let media = &operation["requestBody"]["content"]["application/json"];
    if !media["example"].is_null() {
        return Some(media["example"].clone());
    }
    let schema = resolve(doc, &media["schema"]);
    match (&schema["example"], &schema["examples"]) {
        (Value::Null, Value::Array(examples)) => examples.first().cloned(),
        (Value::Null, _) => None,
        (example, _) => Some(example.clone()),
    }
}

#[tokio::test]
async fn every_documented_request_example_succeeds_on_a_running_server() {
    let (server, _) = ingest_server().await;
    let addr = server.local_addr();
    let doc = json_of(&http(addr, "GET", "/api/openapi.json").await);
    // A bot lists servers before it writes to one: operations without path
    // parameters go first, the rest in the document's order.
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            if let Some(example) = request_example(&doc, operation) {
                operations.push((path.clone(), method.to_uppercase(), operation, example));
            }
        }
    }
    operations.sort_by_key(|(path, ..)| path.contains('{'));
    assert_eq!(operations.len(), 5, "every ingest operation has an example");
    for (path, method, operation, example) in operations {
        let mut target = path.clone();
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let name = parameter["name"].as_str().unwrap();
            let value = parameter["example"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: parameter {name} has an example"));
            target = target.replace(&format!("{{{name}}}"), value);
        }
        assert!(
            !target.contains('{'),
            "{method} {target}: every parameter filled"
        );
        let r = call(addr, &method, &target, Some(TOKEN), &example.to_string()).await;
        let success: Vec<&String> = operation["responses"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|code| code.starts_with('2'))
            .collect();
        assert!(
            success.contains(&&r.status.to_string()),
            "{method} {target} with its example {example} answered {} ({}), not one of {success:?}",
            r.status,
            r.text()
        );
    }
    // The examples add up to a world a browser can join.
    let (_, join) = Client::joined(addr, "default").await;
    assert_eq!(join["data"]["serverName"], "D-World");
    assert_eq!(join["data"]["users"].as_object().unwrap().len(), 2);
    assert_eq!(join["data"]["clientId"], "506432803173433344");
    server.shutdown().await;
}

#[tokio::test]
async fn a_burst_of_roster_replacements_leaves_a_watcher_connected_and_right() {
    let (server, _) = ingest_server().await;
    let addr = server.local_addr();
    list_guild(addr).await;
    let (mut watcher, _) = Client::connect(addr).await;
    let join = watcher.join("default").await;
    let mut roster = serde_json::Map::new();
    apply_to_roster(&mut roster, &join);

    // 100 replacements at once, each a different roster of 200 users.
    let statuses_cycle = ["online", "idle", "dnd", "offline"];
    let replacements = (0..100).map(|round| {
        let users: Vec<Value> = (0..200)
            .map(|i| {
                json!({
                    "uid": format!("{}", 1000 + (i + round) % 260),
                    "username": format!("user {i}"),
                    "status": statuses_cycle[(i + round) % 4],
                })
            })
            .collect();
        let body = Value::Array(users).to_string();
        async move {
            let path = format!("/api/ingest/servers/{GUILD}/users");
            call(addr, "PUT", &path, Some(TOKEN), &body).await.status
        }
    });
    let done = std::sync::atomic::AtomicBool::new(false);
    let sending = async {
        let returned = futures_util::future::join_all(replacements).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        returned
    };
    let reading = async {
        // Read as a browser does while the burst goes on, and until quiet after it.
        loop {
            match watcher.next_json(QUIET).await {
                Some(frame) => {
                    assert_ne!(frame["type"], "error", "{frame}");
                    apply_to_roster(&mut roster, &frame);
                }
                None if done.load(std::sync::atomic::Ordering::SeqCst) => break,
                None => {}
            }
        }
    };
    let (returned, ()) = tokio::join!(sending, reading);
    assert!(returned.iter().all(|status| *status == 200), "{returned:?}");
    let (_fresh, fresh_join) = Client::joined(addr, "default").await;
    let expected = fresh_join["data"]["users"].as_object().unwrap();
    assert_eq!(
        statuses(&roster),
        statuses(expected),
        "the watcher ends where a new joiner starts"
    );
    assert_eq!(server.hub().connections(), 2, "the watcher was not closed");
    server.shutdown().await;
}
