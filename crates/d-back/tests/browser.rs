//! The built-in live page in a real headless Chromium, driven over the
//! DevTools protocol: it loads, joins, shows the right users, and reflects a
//! presence change and a chat line broadcast by the test; it warns when the
//! public d-zone client could not reach it, offers a Discord login for
//! passworded servers (or says why it cannot), and fits a phone's width.
//!
//! Chromium is required: `scripts/test.sh` installs it, and this test fails
//! with instructions when it cannot be found (it is never silently skipped).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use d_back::provider::Store;
use d_back::{
    ChatMessage, MockWorld, PresenceUpdate, Server, ServerInfo, ServerList, Status, User,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Finds the browser: `D_BACK_CHROMIUM`, or `chromium` / `chromium-browser` / `google-chrome` on PATH.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("D_BACK_CHROMIUM") {
        return path.into();
    }
    let names = ["chromium", "chromium-browser", "google-chrome"];
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the browser test needs Chromium: install it with `apt-get install chromium` \
                 (scripts/test.sh does this), or set D_BACK_CHROMIUM to its path"
            )
        })
}

/// Ends the browser however the test ends, even by a panic during launch.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A headless Chromium and a DevTools connection to its page.
struct Browser {
    _process: KillOnDrop,
    devtools: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn launch() -> Browser {
        Self::launch_with(&[]).await
    }

    /// Launches with `extra` command-line switches (e.g. host resolver rules).
    async fn launch_with(extra: &[&str]) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let process = KillOnDrop(
            Command::new(chromium())
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-quic",
                    "--remote-debugging-address=127.0.0.1",
                    "--remote-debugging-port=0",
                ])
                .args(extra)
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .arg("about:blank")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("Chromium starts"),
        );
        // Chromium writes the port it chose into the profile.
        let port_file = profile.path().join("DevToolsActivePort");
        let mut port = None;
        // Generous: on a loaded two-core machine Chromium can take a while
        // to start; this waits for it, it does not time anything.
        for _ in 0..1200 {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Some(p) = text
                    .lines()
                    .next()
                    .and_then(|l| l.trim().parse::<u16>().ok())
            {
                port = Some(p);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let port = port.expect("Chromium opened its DevTools port within 60 s");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let targets: Value = serde_json::from_slice(&http(addr, "GET", "/json/list").await.body)
            .expect("DevTools lists its targets");
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target");
        let url = page["webSocketDebuggerUrl"].as_str().unwrap();
        let (devtools, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Browser {
            _process: process,
            devtools,
            next_id: 1,
            _profile: profile,
        }
    }

    /// Calls a DevTools method and returns its result.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"id": id, "method": method, "params": params});
        self.devtools
            .send(Message::text(request.to_string()))
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(PATIENCE, self.devtools.next())
                .await
                .expect("DevTools answers")
                .unwrap()
                .unwrap();
            let Message::Text(text) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method} failed: {reply}");
                return reply["result"].clone();
            }
        }
    }

    async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
    }

    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is `expected`.
    async fn wait_for(&mut self, expression: &str, expected: Value) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let value = self.eval(expression).await;
            if value == expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "`{expression}` is {value}, expected {expected}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn the_built_in_page_shows_the_live_world() {
    let quiet = MockWorld::new().with_cadence(Duration::ZERO, Duration::ZERO);
    let server = start(Server::builder().provider(quiet)).await;
    let hub = server.hub();
    let mut browser = Browser::launch().await;
    browser
        .call("Page.navigate", json!({"url": server.url()}))
        .await;

    // It loads, lists the four servers, and joins the default one.
    browser
        .wait_for("document.querySelectorAll('#users li').length", json!(4))
        .await;
    browser
        .wait_for(
            "document.querySelectorAll('#servers button').length",
            json!(4),
        )
        .await;
    browser
        .wait_for(
            "document.getElementById('version').textContent",
            json!(env!("CARGO_PKG_VERSION")),
        )
        .await;
    browser
        .wait_for(
            "document.getElementById('server-name').textContent",
            json!("D-World"),
        )
        .await;
    let dot = browser
        .eval("getComputedStyle(document.querySelector('li[data-uid=\"123456789012345001\"] .dot')).backgroundColor")
        .await;
    assert_eq!(dot, json!("rgb(255, 107, 107)"), "the role colour #ff6b6b");
    let link = browser
        .eval("document.getElementById('open-client').href")
        .await;
    let socket = format!("ws://{}/", server.local_addr());
    let expected_socket = format!(
        "socketURL={}",
        socket.replace(':', "%3A").replace('/', "%2F")
    );
    assert!(link.as_str().unwrap().contains(&expected_socket), "{link}");
    eventually("the page is watching", || hub.watchers(DWORLD) == 1).await;

    // A presence change and a chat line from the test appear.
    hub.broadcast_presence(
        DWORLD,
        PresenceUpdate::new("123456789012345001", Status::Dnd),
    );
    browser
        .wait_for(
            "document.querySelector('li[data-uid=\"123456789012345001\"]').dataset.status",
            json!("dnd"),
        )
        .await;
    hub.broadcast_message(
        DWORLD,
        ChatMessage {
            uid: "123456789012345002".into(),
            message: "hello <b>browser</b>".into(),
            channel: "c".into(),
        },
    );
    browser
        .wait_for(
            "document.querySelector('#chat li:last-child')?.textContent",
            json!("Cog-Creators: hello <b>browser</b>"),
        )
        .await;
    // A newcomer appears, a leaver disappears.
    hub.broadcast_presence(
        DWORLD,
        PresenceUpdate::new("999", Status::Online).with_username("newcomer"),
    );
    hub.broadcast_presence(DWORLD, PresenceUpdate::removed("123456789012345004"));
    browser
        .wait_for("document.querySelectorAll('#users li').length", json!(4))
        .await;
    browser
        .wait_for(
            "!!document.querySelector('li[data-uid=\"999\"]')",
            json!(true),
        )
        .await;

    // Choosing another server shows its users; the counts show this watcher.
    browser
        .eval("document.querySelector('#servers button[data-id=\"repos\"]').click()")
        .await;
    browser
        .wait_for("document.querySelectorAll('#users li').length", json!(21))
        .await;
    browser
        .wait_for(
            "document.getElementById('counts').dataset.connections",
            json!("1"),
        )
        .await;
    drop(browser);
    server.shutdown().await;
}

/// `document.getElementById(id)` as a JavaScript expression.
fn by_id(id: &str) -> String {
    format!("document.getElementById('{id}')")
}

#[tokio::test]
async fn over_loopback_the_page_does_not_warn_about_plain_http() {
    let server = start(Server::builder()).await;
    let mut browser = Browser::launch().await;
    browser.navigate(&server.url()).await;
    browser
        .wait_for("document.querySelectorAll('#users li').length", json!(4))
        .await;
    let hidden = browser
        .eval(&format!("{}.hidden", by_id("client-note")))
        .await;
    assert_eq!(
        hidden,
        json!(true),
        "loopback is a secure origin to browsers"
    );
    drop(browser);
    server.shutdown().await;
}

#[tokio::test]
async fn from_another_host_over_plain_http_the_page_says_why_d_zone_cannot_connect() {
    let server = start(Server::builder()).await;
    // A name that is not loopback to the page, resolved to the test's server
    // by Chromium alone: the page really is served from http://d-back.test.
    let mut browser =
        Browser::launch_with(&["--host-resolver-rules=MAP d-back.test 127.0.0.1"]).await;
    let host = format!("d-back.test:{}", server.local_addr().port());
    browser.navigate(&format!("http://{host}/")).await;
    // The page itself works from there: it joined over ws://d-back.test.
    browser
        .wait_for("document.querySelectorAll('#users li').length", json!(4))
        .await;
    browser
        .wait_for(&format!("{}.hidden", by_id("client-note")), json!(false))
        .await;
    let note = browser
        .eval(&format!("{}.innerText", by_id("client-note")))
        .await;
    let note = note.as_str().unwrap();
    for needed in [
        "will not connect",
        "ws://",
        host.as_str(),
        "--tls-cert",
        "--tls-key",
        "TLS proxy",
        "docs/deploy.md",
        "--static-dir",
    ] {
        assert!(note.contains(needed), "the note lacks {needed:?}: {note}");
    }
    let visible = browser
        .eval(&format!(
            "{}.getBoundingClientRect().height > 0",
            by_id("client-note")
        ))
        .await;
    assert_eq!(visible, json!(true), "the note is drawn, not only present");
    drop(browser);
    server.shutdown().await;
}

/// Snowflake and public id of the passworded guild of [`store_world`].
const GUILD: &str = "555000000000000002";

/// A world from a [`Store`]: an open default guild with two users and a
/// passworded one, and the OAuth2 application id `client_id`, if any.
fn store_world(client_id: Option<&str>) -> Store {
    let store = Store::new();
    let servers: ServerList = [
        (
            "555000000000000001".to_owned(),
            ServerInfo::new("lobby", "Lobby").default_server(),
        ),
        (
            GUILD.to_owned(),
            ServerInfo {
                passworded: true,
                ..ServerInfo::new("members", "Members Only")
            },
        ),
    ]
    .into_iter()
    .collect();
    store.replace_servers(servers);
    store
        .replace_users(
            "555000000000000001",
            [
                User::new("1", "alice", Status::Online, "#ff0000"),
                User::new("2", "bob", Status::Idle, "#00ff00"),
            ],
        )
        .unwrap();
    if let Some(id) = client_id {
        store.set_client_id(None, id).unwrap();
    }
    store
}

/// Opens the page, joins the open guild, then chooses the passworded one.
async fn choose_members_only(browser: &mut Browser, server: &d_back::RunningServer) {
    browser.navigate(&server.url()).await;
    browser
        .wait_for("document.querySelectorAll('#users li').length", json!(2))
        .await;
    browser
        .eval("document.querySelector('#servers button[data-id=\"members\"]').click()")
        .await;
    browser
        .wait_for(&format!("{}.hidden", by_id("login")), json!(false))
        .await;
}

#[tokio::test]
async fn a_passworded_server_offers_a_discord_login_when_an_application_id_is_set() {
    let server = start(Server::builder().provider(store_world(Some("506432803173433344")))).await;
    let mut browser = Browser::launch().await;
    choose_members_only(&mut browser, &server).await;

    let button = browser
        .eval(&format!(
            "[{0}.hidden, {0}.textContent, {0}.href]",
            by_id("login-button")
        ))
        .await;
    assert_eq!(button[0], json!(false), "the button shows: {button}");
    assert_eq!(button[1], json!("Log in with Discord"));
    let href = button[2].as_str().unwrap();
    assert!(
        href.starts_with("https://discord.com/oauth2/authorize?"),
        "{href}"
    );
    let page = server.url();
    let redirect = page.replace(':', "%3A").replace('/', "%2F");
    for needed in [
        "client_id=506432803173433344".to_owned(),
        "response_type=token".to_owned(),
        "scope=identify".to_owned(),
        format!("redirect_uri={redirect}"),
    ] {
        assert!(href.contains(&needed), "{href} lacks {needed}");
    }
    let text = browser
        .eval(&format!("{}.textContent", by_id("login-text")))
        .await;
    assert!(
        text.as_str().unwrap().contains("log in with Discord"),
        "{text}"
    );
    // The login it starts is remembered in this tab, to be checked on return.
    let pending = browser
        .eval("JSON.parse(sessionStorage.getItem('d-back-oauth')).server")
        .await;
    assert_eq!(pending, json!("members"));
    drop(browser);
    server.shutdown().await;
}

#[tokio::test]
async fn a_passworded_server_says_why_there_is_no_login_without_an_application_id() {
    let server = start(Server::builder().provider(store_world(None))).await;
    let mut browser = Browser::launch().await;
    choose_members_only(&mut browser, &server).await;

    let hidden = browser
        .eval(&format!("{}.hidden", by_id("login-button")))
        .await;
    assert_eq!(hidden, json!(true), "no application id, no login button");
    let visible = browser
        .eval(&format!(
            "{}.getBoundingClientRect().height",
            by_id("login-button")
        ))
        .await;
    assert_eq!(visible, json!(0), "the hidden button takes no room");
    let text = browser
        .eval(&format!("{}.textContent", by_id("login-text")))
        .await;
    let text = text.as_str().unwrap();
    for needed in [
        "no way to log in to Members Only",
        "--oauth-client-id",
        "Application ID",
        &server.url(),
    ] {
        assert!(
            text.contains(needed),
            "the explanation lacks {needed:?}: {text}"
        );
    }
    drop(browser);
    server.shutdown().await;
}

#[tokio::test]
async fn a_failed_join_clears_the_previous_servers_users() {
    let quiet = MockWorld::new().with_cadence(Duration::ZERO, Duration::ZERO);
    let server = start(Server::builder().provider(quiet)).await;
    let hub = server.hub();
    let mut browser = Browser::launch().await;
    browser.navigate(&server.url()).await;
    browser
        .wait_for("document.querySelectorAll('#users li').length", json!(4))
        .await;
    eventually("the page is watching", || hub.watchers(DWORLD) == 1).await;

    browser
        .eval("document.querySelector('#servers button[data-id=\"oauth\"]').click()")
        .await;
    browser
        .wait_for(
            &format!("{}.textContent", by_id("problem")),
            json!("This server requires Discord authentication. Please login with Discord."),
        )
        .await;
    browser
        .wait_for("document.querySelectorAll('#users li').length", json!(0))
        .await;
    let shown = browser
        .eval(&format!(
            "[{}.textContent, {}.textContent, {}.children.length]",
            by_id("server-name"),
            by_id("user-count"),
            by_id("status-summary")
        ))
        .await;
    assert_eq!(shown, json!(["OAuth2 Protected Server", "", 0]), "{shown}");
    let pressed = browser
        .eval("document.querySelector('#servers button[aria-pressed=\"true\"]')?.dataset.id")
        .await;
    assert_eq!(
        pressed,
        json!("oauth"),
        "the server asked for is the one marked"
    );

    // The refused connection still hears the old server; the page shows none of it.
    hub.broadcast_presence(
        DWORLD,
        PresenceUpdate::new("777", Status::Online).with_username("stale"),
    );
    tokio::time::sleep(QUIET).await;
    browser
        .wait_for("document.querySelectorAll('#users li').length", json!(0))
        .await;

    // Choosing an open server again shows it in full, the newcomer included.
    browser
        .eval("document.querySelector('#servers button[data-id=\"dworld\"]').click()")
        .await;
    browser
        .wait_for("document.querySelectorAll('#users li').length", json!(5))
        .await;
    let problem_hidden = browser.eval(&format!("{}.hidden", by_id("problem"))).await;
    assert_eq!(problem_hidden, json!(true));
    drop(browser);
    server.shutdown().await;
}

/// Names shown in the live view, in order.
const NAMES: &str = "[...document.querySelectorAll('#users li .name')].map(n => n.textContent)";

#[tokio::test]
async fn the_live_view_lists_the_mock_worlds_users_on_a_desktop_and_a_phone() {
    let quiet = MockWorld::new().with_cadence(Duration::ZERO, Duration::ZERO);
    let server = start(Server::builder().provider(quiet)).await;
    let mut browser = Browser::launch().await;
    let page = format!("{}?s=repos", server.url());

    for (width, columns_at_least) in [(1400, 3), (375, 2)] {
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width < 600}),
            )
            .await;
        browser.navigate(&page).await;
        browser
            .wait_for("document.querySelectorAll('#users li').length", json!(21))
            .await;
        let names = browser.eval(NAMES).await;
        let names: Vec<&str> = names
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        for name in ["me", "d-zone", "d-back", "twitter-backend"] {
            assert!(
                names.contains(&name),
                "{name} is listed at {width}px: {names:?}"
            );
        }
        // Every status is counted, and the counts add up to the users.
        let summary = browser
            .eval("[...document.querySelectorAll('#status-summary li')].map(l => [l.dataset.status, parseInt(l.textContent)])")
            .await;
        let statuses: Vec<&str> = summary
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s[0].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["online", "idle", "dnd", "offline"]);
        let total: i64 = summary
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s[1].as_i64().unwrap())
            .sum();
        assert_eq!(total, 21, "{summary}");
        // Cards sit side by side, and nothing spills past the screen's edge.
        let layout = browser
            .eval(
                "(() => { const cards = [...document.querySelectorAll('#users li')];
                  const lefts = new Set(cards.map(c => Math.round(c.getBoundingClientRect().left)));
                  const right = Math.max(...cards.map(c => c.getBoundingClientRect().right));
                  return [lefts.size, right <= innerWidth, document.documentElement.scrollWidth <= innerWidth]; })()",
            )
            .await;
        assert!(
            layout[0].as_u64().unwrap() >= columns_at_least,
            "at {width}px the users take {} columns",
            layout[0]
        );
        assert_eq!(layout[1], json!(true), "a card is cut off at {width}px");
        assert_eq!(
            layout[2],
            json!(true),
            "the page scrolls sideways at {width}px"
        );
    }
    // A card wears the user's role colour and their status.
    let card = browser
        .eval(
            "(() => { const li = document.querySelector('li[data-uid=\"423456789012345001\"]');
              return [li.dataset.status, li.querySelector('.status').textContent,
                      getComputedStyle(li.querySelector('.dot')).backgroundColor]; })()",
        )
        .await;
    assert_eq!(
        card,
        json!(["online", "online", "rgb(84, 160, 255)"]),
        "#54a0ff"
    );
    drop(browser);
    server.shutdown().await;
}
