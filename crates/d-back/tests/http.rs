//! HTTP on the WebSocket's port: version, login settings, the built-in page,
//! a static directory, traversal attempts, and the provider's own paths.

mod common;

use common::*;
use d_back::{
    DataProvider, MockWorld, ProviderError, Roster, Server, ServerList, StartError, StaticResponse,
    async_trait,
};

#[tokio::test]
async fn version_answers_get_and_head() {
    let server = start(Server::builder()).await;
    let addr = server.local_addr();
    let response = http(addr, "GET", "/api/version").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"version": env!("CARGO_PKG_VERSION")})
    );
    let head = http(addr, "HEAD", "/api/version").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn login_settings_are_answered_per_server_before_joining() {
    let store = d_back::provider::Store::new();
    let servers: ServerList = [
        ("1".to_owned(), d_back::ServerInfo::new("open", "Open")),
        (
            "2".to_owned(),
            d_back::ServerInfo {
                passworded: true,
                ..d_back::ServerInfo::new("closed", "Closed").with_password("hunter2")
            },
        ),
    ]
    .into_iter()
    .collect();
    store.replace_servers(servers);
    let server = start(Server::builder().provider(store.clone())).await;
    let addr = server.local_addr();
    let ask = |path: &'static str| async move {
        let response = http(addr, "GET", path).await;
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.header("content-type"), Some("application/json"));
        serde_json::from_slice::<serde_json::Value>(&response.body).unwrap()
    };
    assert_eq!(
        ask("/api/login/closed").await,
        serde_json::json!({"server": "closed", "passworded": true, "clientId": null})
    );
    store.set_client_id(None, "506432803173433344").unwrap();
    store.set_client_id(Some("2"), "999").unwrap();
    let closed = ask("/api/login/closed").await;
    assert_eq!(
        closed["clientId"], "999",
        "a server's own application id wins"
    );
    assert!(!closed.to_string().contains("hunter2"), "{closed}");
    assert_eq!(
        ask("/api/login/open").await,
        serde_json::json!({"server": "open", "passworded": false, "clientId": "506432803173433344"})
    );
    assert_eq!(http(addr, "GET", "/api/login/nobody").await.status, 404);
    assert_eq!(http(addr, "HEAD", "/api/login/closed").await.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn the_built_in_page_is_served_and_nothing_else() {
    let server = start(Server::builder()).await;
    let addr = server.local_addr();
    for path in ["/", "/index.html"] {
        let page = http(addr, "GET", path).await;
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert!(page.text().contains("/app.js"));
    }
    let script = http(addr, "GET", "/app.js").await;
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(
        script.text().contains("/api/version"),
        "the page shows the version"
    );
    assert!(
        script.text().contains("socketURL"),
        "the page links the d-zone client here"
    );
    let style = http(addr, "GET", "/style.css").await;
    assert_eq!(style.status, 200);
    let head = http(addr, "HEAD", "/").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    for path in [
        "/missing.js",
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "//etc/passwd",
    ] {
        assert_eq!(http(addr, "GET", path).await.status, 404, "{path}");
    }
    assert_eq!(http(addr, "POST", "/").await.status, 405);
    server.shutdown().await;
}

#[tokio::test]
async fn a_static_directory_is_served_and_never_escaped() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "TOP SECRET").unwrap();
    let site = outside.path().join("site");
    std::fs::create_dir_all(site.join("css")).unwrap();
    std::fs::write(site.join("index.html"), "<h1>d-zone</h1>").unwrap();
    std::fs::write(site.join("css/app.css"), "body{}").unwrap();
    std::fs::write(site.join("bundle.js"), "let x = 1;").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), site.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(outside.path(), site.join("up")).unwrap();
    std::os::unix::fs::symlink(site.join("bundle.js"), site.join("alias.js")).unwrap();

    let server = start(Server::builder().static_dir(&site)).await;
    let addr = server.local_addr();
    let index = http(addr, "GET", "/").await;
    assert_eq!(index.status, 200);
    assert_eq!(index.text(), "<h1>d-zone</h1>");
    assert!(
        index
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let css = http(addr, "GET", "/css/app.css").await;
    assert_eq!(css.header("content-type"), Some("text/css"));
    let js = http(addr, "GET", "/bundle.js").await;
    assert!(js.header("content-type").unwrap().contains("javascript"));
    assert_eq!(
        http(addr, "GET", "/alias.js").await.text(),
        "let x = 1;",
        "links inside are fine"
    );
    let head = http(addr, "HEAD", "/bundle.js").await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(http(addr, "GET", "/nope.html").await.status, 404);
    assert_eq!(http(addr, "GET", "/api/version").await.status, 200);

    let escapes = [
        "/../secret.txt",
        "/css/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/css/%2e%2e/%2e%2e/secret.txt",
        "/..%5csecret.txt",
        "//secret.txt",
        "/leak.txt",
        "/up/secret.txt",
    ];
    for path in escapes {
        let response = http(addr, "GET", path).await;
        assert!(
            response.status == 404 || response.status == 400,
            "{path} answered {}",
            response.status
        );
        assert!(!response.text().contains("TOP SECRET"), "{path} leaked");
    }
    let absolute = format!("{}", outside.path().join("secret.txt").display());
    let response = http(addr, "GET", &absolute).await;
    assert!(!response.text().contains("TOP SECRET"));
    server.shutdown().await;
}

#[tokio::test]
async fn a_missing_static_directory_stops_the_start() {
    let missing = std::path::Path::new("/definitely/not/here");
    let error = Server::builder()
        .host("127.0.0.1")
        .port(0)
        .static_dir(missing)
        .bind()
        .await
        .unwrap_err();
    assert!(matches!(error, StartError::StaticDir { .. }));
    assert!(error.to_string().contains("/definitely/not/here"));

    let file = tempfile::NamedTempFile::new().unwrap();
    let error = Server::builder()
        .host("127.0.0.1")
        .port(0)
        .static_dir(file.path())
        .bind()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not a directory"), "{error}");
}

#[tokio::test]
async fn the_provider_may_answer_paths_itself() {
    struct Custom;
    #[async_trait]
    impl DataProvider for Custom {
        async fn servers(&self) -> Result<ServerList, ProviderError> {
            MockWorld::new().servers().await
        }
        async fn users(&self, server: &str) -> Result<Roster, ProviderError> {
            MockWorld::new().users(server).await
        }
        async fn static_response(&self, path: &str) -> Option<StaticResponse> {
            match path {
                "/hello.txt" => Some(StaticResponse::ok("text/plain", "hi from the bot")),
                "/boom" => panic!("provider bug"),
                _ => None,
            }
        }
    }
    let server = start(Server::builder().provider(Custom)).await;
    let addr = server.local_addr();
    let custom = http(addr, "GET", "/hello.txt").await;
    assert_eq!(custom.status, 200);
    assert_eq!(custom.header("content-type"), Some("text/plain"));
    assert_eq!(custom.text(), "hi from the bot");
    assert_eq!(http(addr, "GET", "/boom").await.status, 500);
    assert_eq!(
        http(addr, "GET", "/").await.status,
        200,
        "others fall through"
    );
    let (mut client, _) = Client::joined(addr, "dworld").await;
    client.join("repos").await;
    server.shutdown().await;
}
