//! The built-in live page in a real headless Chromium, driven over the
//! DevTools protocol: it loads, joins, shows the right users, and reflects a
//! presence change and a chat line broadcast by the test.
//!
//! Chromium is required: `scripts/test.sh` installs it, and this test fails
//! with instructions when it cannot be found (it is never silently skipped).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use d_back::{ChatMessage, MockWorld, PresenceUpdate, Server, Status};
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
        for _ in 0..400 {
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
        let port = port.expect("Chromium opened its DevTools port within 20 s");
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
