//! The Discord source end to end: the real server, fed by the real gateway
//! client, talking to a local fake Discord; a WebSocket client joined to the
//! guild sees the mapped roster and live frames, across a gateway reconnect.
//! Also the OAuth2 check of passworded servers and the refusals that end a start.

mod common;
#[path = "common/fake_discord.rs"]
mod fake_discord;

use std::time::{Duration, Instant};

use common::*;
use d_back::Server;
use d_back::protocol::errors;
use d_back::provider::discord::{DiscordConfig, DiscordError, DiscordSource, INTENTS};
use d_back::provider::{OAuthValidator, Store};
use d_back::{ServerInfo, ServerList};
use fake_discord::{FakeDiscord, SLOW_TOKEN};
use serde_json::{Value, json};

const GUILD: &str = "700000000000000001";
const OTHER_GUILD: &str = "700000000000000002";
const BOT_TOKEN: &str = "bot-token-for-tests";

const ALICE: &str = "1001";
const BOB: &str = "1002";
const CAROL: &str = "1003";
const DAVE: &str = "1004";
const EVE: &str = "1005";

fn member(id: &str, username: &str, extra: Value) -> Value {
    let mut m = json!({"user": {"id": id, "username": username, "global_name": null}, "roles": [], "nick": null});
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            if k == "global_name" {
                m["user"]["global_name"] = v;
            } else {
                m[k] = v;
            }
        }
    }
    m
}

fn presence(id: &str, status: &str) -> Value {
    json!({"user": {"id": id}, "guild_id": GUILD, "status": status})
}

fn guild_create() -> Value {
    json!({
        "id": GUILD,
        "name": "Test Guild",
        "large": false,
        "roles": [
            {"id": GUILD, "name": "@everyone", "color": 0, "position": 0},
            {"id": "r-red", "name": "red", "color": 0xe91e63, "position": 2},
            {"id": "r-blue", "name": "blue", "color": 0x3498db, "position": 1},
            {"id": "r-plain", "name": "hoisted but colourless", "color": 0, "position": 5}
        ],
        "members": [
            member(ALICE, "alice", json!({"nick": "Alice N", "roles": ["r-blue", "r-red", "r-plain"]})),
            member(BOB, "bob", json!({"global_name": "Bobby", "roles": ["r-blue"]})),
            member(CAROL, "carol", json!({})),
            member(DAVE, "dave", json!({})),
        ],
        "presences": [
            presence(ALICE, "online"),
            presence(BOB, "idle"),
            presence(CAROL, "invisible"),
            presence(DAVE, "dnd"),
        ],
    })
}

/// Starts the Discord source against the fake, answering IDENTIFY with READY.
async fn connect_bot(
    fake: &mut FakeDiscord,
    store: &Store,
) -> (DiscordSource, fake_discord::GatewayConn, Value) {
    let config = DiscordConfig::new(format!("Bot {BOT_TOKEN}"))
        .gateway_url(fake.gateway_url())
        .api_url(fake.api_url());
    let starting = tokio::spawn(DiscordSource::start(config, store.clone()));
    let (conn, identify) = fake.accept_and_ready("session-1").await;
    let source = starting.await.unwrap().expect("Discord accepts the bot");
    (source, conn, identify)
}

async fn serve(store: &Store) -> d_back::RunningServer {
    let server = start(Server::builder().provider(store.clone())).await;
    store.attach(server.hub());
    server
}

#[tokio::test]
async fn a_guild_reaches_browsers_live_and_across_a_reconnect() {
    let mut fake = FakeDiscord::start().await;
    let store = Store::new();
    let (source, mut conn, identify) = connect_bot(&mut fake, &store).await;
    // twilight sends the token as `Bot <token>`, which Discord accepts in IDENTIFY and RESUME.
    assert_eq!(identify["d"]["token"], format!("Bot {BOT_TOKEN}"));
    assert_eq!(identify["d"]["intents"], INTENTS);

    conn.dispatch("GUILD_CREATE", 2, guild_create());
    conn.dispatch(
        "GUILD_CREATE",
        3,
        json!({"id": OTHER_GUILD, "name": "  Second Place! ", "roles": [], "members": [], "presences": []}),
    );
    eventually("both guilds are listed", || store.has_server(OTHER_GUILD)).await;
    let server = serve(&store).await;
    let addr = server.local_addr();

    let (mut client, list) = Client::connect(addr).await;
    assert_eq!(
        list["data"][GUILD],
        json!({"id": "test-guild", "name": "Test Guild", "default": true, "passworded": false})
    );
    assert_eq!(list["data"][OTHER_GUILD]["id"], "second-place");
    assert_eq!(list["data"][OTHER_GUILD].get("default"), None);

    let join = client.join("default").await;
    assert_eq!(join["data"]["serverName"], "Test Guild");
    assert_eq!(
        join["data"]["users"],
        json!({
            ALICE: {"uid": ALICE, "username": "Alice N", "status": "online", "roleColor": "#e91e63"},
            BOB: {"uid": BOB, "username": "Bobby", "status": "idle", "roleColor": "#3498db"},
            CAROL: {"uid": CAROL, "username": "carol", "status": "offline", "roleColor": "#ffffff"},
            DAVE: {"uid": DAVE, "username": "dave", "status": "dnd", "roleColor": "#ffffff"},
        })
    );

    conn.dispatch("PRESENCE_UPDATE", 4, presence(BOB, "online"));
    assert_eq!(
        client.recv().await,
        json!({"type": "presence", "server": GUILD, "data": {"uid": BOB, "status": "online"}})
    );

    let mut eve = member(EVE, "eve", json!({"roles": ["r-red"]}));
    eve["guild_id"] = json!(GUILD);
    conn.dispatch("GUILD_MEMBER_ADD", 5, eve);
    assert_eq!(
        client.recv().await["data"],
        json!({"uid": EVE, "status": "offline", "username": "eve", "roleColor": "#e91e63"})
    );

    conn.dispatch(
        "GUILD_MEMBER_REMOVE",
        6,
        json!({"guild_id": GUILD, "user": {"id": DAVE, "username": "dave"}}),
    );
    assert_eq!(
        client.recv().await["data"],
        json!({"uid": DAVE, "status": "offline", "delete": true})
    );

    let said = |author: Value, guild: Option<&str>, content: &str| {
        let mut m = json!({"id": "1", "channel_id": "800", "author": author, "content": content});
        if let Some(guild) = guild {
            m["guild_id"] = json!(guild);
        }
        m
    };
    conn.dispatch(
        "MESSAGE_CREATE",
        7,
        said(
            json!({"id": "900", "username": "some-bot", "bot": true}),
            Some(GUILD),
            "beep",
        ),
    );
    conn.dispatch(
        "MESSAGE_CREATE",
        8,
        said(
            json!({"id": ALICE, "username": "alice"}),
            None,
            "a direct message",
        ),
    );
    conn.dispatch(
        "MESSAGE_CREATE",
        9,
        said(
            json!({"id": ALICE, "username": "alice"}),
            Some(GUILD),
            "hi all",
        ),
    );
    assert_eq!(
        client.recv().await,
        json!({"type": "message", "server": GUILD, "data": {"uid": ALICE, "message": "hi all", "channel": "800"}}),
        "bots and direct messages are not shown"
    );

    // Discord asks for a reconnect: the bot resumes at the resume URL with its last sequence.
    conn.send(json!({"op": 7, "d": null}));
    conn.wait_closed().await;
    let mut resumed = fake.next_connection().await;
    assert_eq!(resumed.path, "/resume");
    let resume = resumed.expect_op(6).await;
    assert_eq!(
        resume["d"],
        json!({"token": format!("Bot {BOT_TOKEN}"), "session_id": "session-1", "seq": 9})
    );
    resumed.dispatch("RESUMED", 10, json!({}));
    resumed.dispatch("PRESENCE_UPDATE", 11, presence(ALICE, "idle"));
    assert_eq!(
        client.recv().await["data"],
        json!({"uid": ALICE, "status": "idle"}),
        "the browser's connection survived the gateway reconnect"
    );

    // A session Discord will not resume ends in a fresh IDENTIFY.
    resumed.send(json!({"op": 9, "d": false}));
    let mut fresh = fake.next_connection().await;
    assert_eq!(fresh.path, "/", "a new session starts at the gateway URL");
    fresh.expect_op(2).await;

    source.stop().await;
    server.shutdown().await;
}

#[tokio::test]
async fn hide_offline_and_operator_settings_apply_to_a_guild() {
    let mut fake = FakeDiscord::start().await;
    let store = Store::new();
    // What a data file entry for the guild does: its own id, name and settings.
    let mut list = ServerList::new();
    list.insert(GUILD.into(), ServerInfo::new("hangout", "Our Hangout"));
    let mut settings = std::collections::HashMap::new();
    settings.insert(
        GUILD.to_owned(),
        d_back::provider::ServerSettings { hide_offline: true },
    );
    store.replace_servers_with_settings(list, settings);
    let (source, conn, _) = connect_bot(&mut fake, &store).await;
    conn.dispatch("GUILD_CREATE", 2, guild_create());
    eventually("the roster is loaded", || store.is_member(GUILD, CAROL)).await;
    let server = serve(&store).await;

    let (mut client, list) = Client::connect(server.local_addr()).await;
    assert_eq!(list["data"][GUILD]["id"], "hangout");
    assert_eq!(list["data"][GUILD]["name"], "Our Hangout");
    let join = client.join("hangout").await;
    let users = join["data"]["users"].as_object().unwrap();
    assert!(!users.contains_key(CAROL), "offline members are hidden");
    assert_eq!(users.len(), 3);

    conn.dispatch("PRESENCE_UPDATE", 3, presence(CAROL, "online"));
    assert_eq!(
        client.recv().await["data"],
        json!({"uid": CAROL, "status": "online", "username": "carol", "roleColor": "#ffffff"}),
        "coming online introduces the member"
    );
    conn.dispatch("PRESENCE_UPDATE", 4, presence(BOB, "offline"));
    assert_eq!(
        client.recv().await["data"],
        json!({"uid": BOB, "status": "offline", "delete": true}),
        "going offline hides the member"
    );
    source.stop().await;
    server.shutdown().await;
}

/// A passworded guild whose roster came from the fake gateway.
async fn passworded_guild(
    fake: &mut FakeDiscord,
    oauth_timeout: Duration,
) -> (Store, DiscordSource, fake_discord::GatewayConn) {
    let store = Store::new();
    store.set_oauth(OAuthValidator::new(fake.api_url(), oauth_timeout));
    let mut list = ServerList::new();
    list.insert(
        GUILD.into(),
        ServerInfo::new("secret", "Members Only").passworded(),
    );
    store.replace_servers(list);
    let (source, conn, _) = connect_bot(fake, &store).await;
    conn.dispatch("GUILD_CREATE", 2, guild_create());
    eventually("the roster is loaded", || store.is_member(GUILD, ALICE)).await;
    (store, source, conn)
}

async fn login(addr: std::net::SocketAddr, token: &str, id: &str, username: &str) -> Value {
    let (mut client, _) = Client::connect(addr).await;
    client
        .send(json!({"type": "connect", "data": {
            "server": "secret", "discordToken": token,
            "discordUser": {"id": id, "username": username},
        }}))
        .await;
    client.recv().await
}

#[tokio::test]
async fn oauth2_admits_members_only() {
    let mut fake = FakeDiscord::start().await;
    fake.add_token("tok-alice", ALICE);
    fake.add_token("tok-mallory", "1666");
    let (store, source, _conn) = passworded_guild(&mut fake, Duration::from_secs(2)).await;
    let server = serve(&store).await;
    let addr = server.local_addr();

    let joined = login(addr, "tok-alice", ALICE, "alice").await;
    assert_eq!(joined["type"], "server-join", "{joined}");
    assert_eq!(joined["data"]["request"], json!({"server": "secret"}));
    let calls = fake.me_calls();
    let again = login(addr, "tok-alice", ALICE, "alice").await;
    assert_eq!(again["type"], "server-join");
    assert_eq!(fake.me_calls(), calls, "a confirmed token is cached");

    let stranger = login(addr, "tok-mallory", "1666", "mallory").await;
    assert_eq!(
        error_message(&stranger),
        errors::AUTH_FAILED,
        "not a member"
    );
    let impostor = login(addr, "tok-alice", BOB, "bob").await;
    assert_eq!(
        error_message(&impostor),
        errors::AUTH_FAILED,
        "the token is someone else's"
    );
    let forged = login(addr, "made-up-token", ALICE, "alice").await;
    assert_eq!(
        error_message(&forged),
        errors::AUTH_FAILED,
        "Discord does not know the token"
    );

    let (mut anonymous, _) = Client::connect(addr).await;
    anonymous
        .send(json!({"type": "connect", "data": {"server": "secret"}}))
        .await;
    assert_eq!(
        error_message(&anonymous.recv().await),
        errors::AUTH_REQUIRED
    );
    source.stop().await;
    server.shutdown().await;
}

#[tokio::test]
async fn oauth2_fails_closed_when_discord_is_slow() {
    let mut fake = FakeDiscord::start().await;
    fake.add_token(SLOW_TOKEN, ALICE);
    let (store, source, _conn) = passworded_guild(&mut fake, Duration::from_millis(300)).await;
    let server = serve(&store).await;
    let began = Instant::now();
    let slow = login(server.local_addr(), SLOW_TOKEN, ALICE, "alice").await;
    assert_eq!(error_message(&slow), errors::AUTH_FAILED);
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "refused after the time-out, not after Discord"
    );
    source.stop().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_refused_privileged_intent_names_the_switch() {
    let mut fake = FakeDiscord::start().await;
    // Server members and message content (limited) are on; presence is off.
    fake.set_app_flags((1 << 14) | (1 << 19));
    let config = DiscordConfig::new(BOT_TOKEN)
        .gateway_url(fake.gateway_url())
        .api_url(fake.api_url());
    let starting = tokio::spawn(DiscordSource::start(config, Store::new()));
    let mut conn = fake.next_connection().await;
    conn.expect_op(2).await;
    conn.close(4014, "Disallowed intent(s).");
    let error = starting.await.unwrap().unwrap_err();
    assert_eq!(
        error,
        DiscordError::DisallowedIntents {
            missing: vec!["Presence Intent"]
        }
    );
    assert!(
        error.to_string().contains("turn on \"Presence Intent\""),
        "{error}"
    );
}

#[tokio::test]
async fn a_rejected_token_ends_the_start_of_the_command() {
    let mut fake = FakeDiscord::start().await;
    let gateway = fake.gateway_url();
    let api = fake.api_url();
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_d_back"))
            .args([
                "--port",
                "0",
                "--discord-gateway-url",
                &gateway,
                "--discord-api-url",
                &api,
            ])
            .env("DISCORD_TOKEN", "not-a-real-token")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    });
    let mut conn = fake.next_connection().await;
    conn.expect_op(2).await;
    conn.close(4004, "Authentication failed.");
    let output = run.await.unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("d_back: error: Discord rejected the bot token"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("not-a-real-token"),
        "the token is never printed"
    );
}

#[tokio::test]
async fn large_guilds_are_completed_and_role_changes_recolour() {
    let mut fake = FakeDiscord::start().await;
    let store = Store::new();
    let (source, mut conn, _) = connect_bot(&mut fake, &store).await;
    let mut guild = guild_create();
    guild["large"] = json!(true);
    guild["members"] = json!([guild["members"][0].clone()]);
    conn.dispatch("GUILD_CREATE", 2, guild);
    let request = conn.expect_op(8).await;
    assert_eq!(
        request["d"],
        json!({"guild_id": GUILD, "query": "", "limit": 0, "presences": true, "nonce": "d-back-1"}),
        "the rest of a large guild's members are asked for"
    );
    let server = serve(&store).await;
    let (mut client, join) = Client::joined(server.local_addr(), "test-guild").await;
    assert_eq!(join["data"]["users"].as_object().unwrap().len(), 1);

    conn.dispatch(
        "GUILD_MEMBERS_CHUNK",
        3,
        json!({"guild_id": GUILD, "chunk_index": 0, "chunk_count": 1, "nonce": "d-back-1",
               "members": [member(BOB, "bob", json!({"roles": ["r-blue"]}))],
               "presences": [presence(BOB, "dnd")]}),
    );
    assert_eq!(
        client.recv().await["data"],
        json!({"uid": BOB, "status": "dnd", "username": "bob", "roleColor": "#3498db"})
    );

    // The blue role turns green: its holders change colour.
    conn.dispatch(
        "GUILD_ROLE_UPDATE",
        4,
        json!({"guild_id": GUILD, "role": {"id": "r-blue", "name": "blue", "color": 0x2ecc71, "position": 1}}),
    );
    assert_eq!(
        client.recv().await["data"],
        json!({"uid": BOB, "status": "dnd", "roleColor": "#2ecc71"})
    );
    assert!(
        client.next_json(QUIET).await.is_none(),
        "alice's red outranks blue"
    );

    // A new nickname is a new name under the actor.
    let mut renamed = member(BOB, "bob", json!({"nick": "Robert", "roles": ["r-blue"]}));
    renamed["guild_id"] = json!(GUILD);
    conn.dispatch("GUILD_MEMBER_UPDATE", 5, renamed);
    assert_eq!(
        client.recv().await["data"],
        json!({"uid": BOB, "status": "dnd", "username": "Robert", "roleColor": "#2ecc71"})
    );
    source.stop().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_gateway_that_stops_answering_heartbeats_is_left_and_resumed() {
    let mut fake = FakeDiscord::start().await;
    fake.set_heartbeat_ms(150);
    let store = Store::new();
    let (source, mut conn, _) = connect_bot(&mut fake, &store).await;
    conn.dispatch("GUILD_CREATE", 2, guild_create());
    eventually("the guild is listed", || store.has_server(GUILD)).await;
    let server = serve(&store).await;
    let (mut client, _) = Client::joined(server.local_addr(), "test-guild").await;

    fake.mute_heartbeats(true);
    conn.wait_closed().await;
    fake.mute_heartbeats(false);
    let mut resumed = fake.next_connection().await;
    assert_eq!(resumed.path, "/resume");
    let resume = resumed.expect_op(6).await;
    assert_eq!(resume["d"]["seq"], 2);
    resumed.dispatch("RESUMED", 3, json!({}));
    resumed.dispatch("PRESENCE_UPDATE", 4, presence(CAROL, "online"));
    assert_eq!(
        client.recv().await["data"],
        json!({"uid": CAROL, "status": "online"})
    );
    source.stop().await;
    server.shutdown().await;
}
