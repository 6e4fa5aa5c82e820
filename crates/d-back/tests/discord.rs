//! The Discord source end to end: the real server, fed by the real gateway
//! client, talking to a local fake Discord; a WebSocket client joined to the
//! guild sees the mapped roster and live frames, across a gateway reconnect
//! and a new session. Also sharding, the OAuth2 check of passworded servers,
//! the refusals that end a start (or, later, the command), and that the bot
//! token never reaches a log.

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
use fake_discord::{FakeDiscord, RATE_LIMITED_TOKEN, SLOW_TOKEN};
use serde_json::{Value, json};

const GUILD: &str = "700000000000000001";
const OTHER_GUILD: &str = "700000000000000002";
/// A guild the operator's data file lists.
const FILE_GUILD: &str = "700000000000000003";
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
    assert_eq!(identify["d"]["shard"], json!([0, 1]));
    assert!(
        conn.query.contains("compress=zlib-stream"),
        "frames come compressed: {}",
        conn.query
    );

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
async fn a_used_up_session_start_limit_ends_the_start_at_once() {
    let mut fake = FakeDiscord::start().await;
    fake.set_sessions_remaining(0);
    let error = start_bot(&fake, &Store::new()).await.unwrap().unwrap_err();
    assert_eq!(
        error,
        DiscordError::SessionLimit(Duration::from_secs(14_400))
    );
    assert!(
        error.to_string().contains("start d-back again after that"),
        "{error}"
    );
    assert!(
        tokio::time::timeout(QUIET, fake.next_connection())
            .await
            .is_err(),
        "no identify is spent"
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

/// Starts the source against the fake without answering the gateway yet.
fn start_bot(
    fake: &FakeDiscord,
    store: &Store,
) -> tokio::task::JoinHandle<Result<DiscordSource, DiscordError>> {
    let config = DiscordConfig::new(BOT_TOKEN)
        .gateway_url(fake.gateway_url())
        .api_url(fake.api_url());
    tokio::spawn(DiscordSource::start(config, store.clone()))
}

fn large(members: Value) -> Value {
    let mut guild = guild_create();
    guild["large"] = json!(true);
    guild["members"] = members;
    guild["presences"] = json!([presence(ALICE, "online")]);
    guild
}

fn chunk(nonce: &Value, index: u32, count: u32, members: Value) -> Value {
    json!({"guild_id": GUILD, "chunk_index": index, "chunk_count": count, "nonce": nonce,
           "members": members, "presences": []})
}

#[tokio::test]
async fn a_guild_the_bot_left_while_away_is_no_longer_listed() {
    let mut fake = FakeDiscord::start().await;
    let store = Store::new();
    let mut list = ServerList::new();
    list.insert(
        FILE_GUILD.into(),
        ServerInfo::new("ours", "Listed By The File"),
    );
    store.replace_servers(list);
    let starting = start_bot(&fake, &store);
    let (conn, _) = fake
        .accept_and_ready_in("session-1", &[GUILD, OTHER_GUILD, FILE_GUILD])
        .await;
    let source = starting.await.unwrap().expect("Discord accepts the bot");
    conn.dispatch("GUILD_CREATE", 2, guild_create());
    let empty = |id: &str, name: &str| json!({"id": id, "name": name, "roles": [], "members": [], "presences": []});
    conn.dispatch("GUILD_CREATE", 3, empty(OTHER_GUILD, "Second"));
    conn.dispatch("GUILD_CREATE", 4, empty(FILE_GUILD, "Third"));
    eventually("all guilds are listed", || store.has_server(OTHER_GUILD)).await;
    let server = serve(&store).await;

    // The session ends; the bot leaves two guilds before its new session starts.
    conn.send(json!({"op": 9, "d": false}));
    let (_conn, _) = fake.accept_and_ready_in("session-2", &[GUILD]).await;
    eventually("the guild the bot left is dropped", || {
        !store.has_server(OTHER_GUILD)
    })
    .await;
    let (_, list) = Client::connect(server.local_addr()).await;
    let listed = list["data"].as_object().unwrap();
    assert!(listed.contains_key(GUILD), "{list}");
    assert!(!listed.contains_key(OTHER_GUILD), "{list}");
    assert_eq!(
        list["data"][FILE_GUILD]["id"], "ours",
        "a guild the data file lists stays listed"
    );
    source.stop().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_large_guild_identified_again_loses_nobody_before_its_last_chunk() {
    let mut fake = FakeDiscord::start().await;
    let store = Store::new();
    let (source, mut conn, _) = connect_bot(&mut fake, &store).await;
    let everyone_else = json!([
        member(BOB, "bob", json!({"roles": ["r-blue"]})),
        member(CAROL, "carol", json!({})),
        member(DAVE, "dave", json!({})),
    ]);
    conn.dispatch(
        "GUILD_CREATE",
        2,
        large(json!([guild_create()["members"][0].clone()])),
    );
    let request = conn.expect_op(8).await;
    conn.dispatch(
        "GUILD_MEMBERS_CHUNK",
        3,
        chunk(&request["d"]["nonce"], 0, 1, everyone_else),
    );
    eventually("the chunk is in", || store.is_member(GUILD, DAVE)).await;
    let server = serve(&store).await;
    let (mut client, join) = Client::joined(server.local_addr(), "test-guild").await;
    assert_eq!(join["data"]["users"].as_object().unwrap().len(), 4);

    // A new session: the guild comes again in parts, and Dave left meanwhile.
    conn.send(json!({"op": 9, "d": false}));
    let (mut conn, _) = fake.accept_and_ready_in("session-2", &[GUILD]).await;
    conn.dispatch(
        "GUILD_CREATE",
        2,
        large(json!([guild_create()["members"][0].clone()])),
    );
    let request = conn.expect_op(8).await;
    assert_ne!(request["d"]["nonce"], Value::Null);
    let nonce = &request["d"]["nonce"];
    conn.dispatch(
        "GUILD_MEMBERS_CHUNK",
        3,
        chunk(
            nonce,
            0,
            2,
            json!([member(BOB, "bob", json!({"roles": ["r-blue"]}))]),
        ),
    );
    let marker = json!({"id": "1", "channel_id": "800", "guild_id": GUILD,
        "author": {"id": ALICE, "username": "alice"}, "content": "between the chunks"});
    conn.dispatch("MESSAGE_CREATE", 4, marker);
    conn.dispatch(
        "GUILD_MEMBERS_CHUNK",
        5,
        chunk(nonce, 1, 2, json!([member(CAROL, "carol", json!({}))])),
    );
    assert_eq!(
        client.recv().await["type"],
        "message",
        "nobody was removed before the last chunk"
    );
    assert_eq!(
        client.recv().await["data"],
        json!({"uid": DAVE, "status": "offline", "delete": true}),
        "who left is known once the last chunk is in"
    );
    assert!(
        client.next_json(QUIET).await.is_none(),
        "members who stayed are not sent again"
    );
    source.stop().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_rate_limited_member_request_is_asked_again() {
    let mut fake = FakeDiscord::start().await;
    let store = Store::new();
    let (source, mut conn, _) = connect_bot(&mut fake, &store).await;
    conn.dispatch(
        "GUILD_CREATE",
        2,
        large(json!([guild_create()["members"][0].clone()])),
    );
    let request = conn.expect_op(8).await;
    conn.dispatch(
        "RATE_LIMITED",
        3,
        json!({"opcode": 8, "retry_after": 0.2,
               "meta": {"guild_id": GUILD, "nonce": request["d"]["nonce"]}}),
    );
    let again = conn.expect_op(8).await;
    assert_eq!(again["d"], request["d"], "the same request, sent again");
    conn.dispatch(
        "GUILD_MEMBERS_CHUNK",
        4,
        chunk(
            &again["d"]["nonce"],
            0,
            1,
            json!([member(BOB, "bob", json!({}))]),
        ),
    );
    eventually("the roster completes", || store.is_member(GUILD, BOB)).await;
    source.stop().await;
}

#[tokio::test]
async fn oauth2_admits_a_member_not_yet_chunked() {
    let mut fake = FakeDiscord::start().await;
    fake.add_token("tok-eve", EVE);
    fake.add_guild_member(GUILD, EVE);
    fake.add_token("tok-mallory", "1666");
    let store = Store::new();
    store.set_oauth(
        OAuthValidator::new(fake.api_url(), Duration::from_secs(2)).with_bot_token(BOT_TOKEN),
    );
    let mut list = ServerList::new();
    list.insert(
        GUILD.into(),
        ServerInfo::new("secret", "Members Only").passworded(),
    );
    store.replace_servers(list);
    let (source, mut conn, _) = connect_bot(&mut fake, &store).await;
    // A large guild whose members are still being asked for: Eve is not in the roster yet.
    conn.dispatch(
        "GUILD_CREATE",
        2,
        large(json!([guild_create()["members"][0].clone()])),
    );
    conn.expect_op(8).await;
    eventually("the guild is listed", || store.is_member(GUILD, ALICE)).await;
    assert!(!store.is_member(GUILD, EVE));
    let server = serve(&store).await;

    let joined = login(server.local_addr(), "tok-eve", EVE, "eve").await;
    assert_eq!(joined["type"], "server-join", "{joined}");
    assert_eq!(fake.member_lookups(), 1, "Discord was asked");
    let stranger = login(server.local_addr(), "tok-mallory", "1666", "mallory").await;
    assert_eq!(error_message(&stranger), errors::AUTH_FAILED);
    assert_eq!(fake.member_lookups(), 2);
    source.stop().await;
    server.shutdown().await;
}

#[tokio::test]
async fn oauth2_asks_again_once_after_a_429() {
    let mut fake = FakeDiscord::start().await;
    fake.add_token(RATE_LIMITED_TOKEN, ALICE);
    let (store, source, _conn) = passworded_guild(&mut fake, Duration::from_secs(2)).await;
    let server = serve(&store).await;
    let joined = login(server.local_addr(), RATE_LIMITED_TOKEN, ALICE, "alice").await;
    assert_eq!(joined["type"], "server-join", "{joined}");
    assert_eq!(
        fake.me_calls(),
        2,
        "refused once with 429, then asked again"
    );
    source.stop().await;
    server.shutdown().await;
}

#[tokio::test]
async fn two_shards_identify_with_their_numbers() {
    let mut fake = FakeDiscord::start().await;
    fake.set_shards(2);
    let store = Store::new();
    let starting = start_bot(&fake, &store);
    let mut first = fake.next_connection().await;
    let mut second = fake.next_connection().await;
    let mut conns = Vec::new();
    for mut conn in [first, second] {
        let identify = conn.expect_op(2).await;
        conns.push((identify["d"]["shard"].clone(), conn));
    }
    conns.sort_by_key(|(shard, _)| shard[0].as_u64());
    let shards: Vec<&Value> = conns.iter().map(|(shard, _)| shard).collect();
    assert_eq!(shards, [&json!([0, 2]), &json!([1, 2])]);
    assert_eq!(fake.gateway_bot_calls(), 1);
    for (_, conn) in &conns {
        conn.dispatch("READY", 1, fake.ready("s", &[]));
    }
    let source = starting.await.unwrap().expect("Discord accepts the bot");

    // Guild 5 << 22 lives on shard 1: its member request goes out on shard 1's connection.
    let on_shard_one = (5u64 << 22).to_string();
    let mut guild = large(json!([]));
    guild["id"] = json!(on_shard_one);
    second = conns.pop().unwrap().1;
    first = conns.pop().unwrap().1;
    second.dispatch("GUILD_CREATE", 2, guild);
    let request = second.expect_op(8).await;
    assert_eq!(request["d"]["guild_id"], on_shard_one);
    first.dispatch("PRESENCE_UPDATE", 2, presence(ALICE, "online"));
    source.stop().await;
    first.wait_closed().await;
}

#[tokio::test]
async fn a_refusal_after_ready_ends_the_command_with_one_line() {
    let mut fake = FakeDiscord::start().await;
    // Presence is switched off while the bot runs.
    fake.set_app_flags((1 << 14) | (1 << 19));
    let child = common::binary::d_back()
        .args([
            "--port",
            "0",
            "--discord-gateway-url",
            &fake.gateway_url(),
            "--discord-api-url",
            &fake.api_url(),
        ])
        .env("DISCORD_TOKEN", BOT_TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (conn, _) = fake.accept_and_ready("session-1").await;
    conn.dispatch("GUILD_CREATE", 2, guild_create());
    conn.close(4014, "Disallowed intent(s).");
    let output = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    let Ok(output) = output else {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("d_back went on running after Discord refused the bot");
    };
    let output = output.unwrap().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("d_back: error: Discord refused the bot's privileged intents")
            && last.contains("turn on \"Presence Intent\""),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_bot_token_never_reaches_the_log_even_at_trace() {
    use std::io::Read;
    let mut fake = FakeDiscord::start().await;
    let mut child = common::binary::d_back()
        .args([
            "--port",
            "0",
            "--log-level",
            "trace",
            "--discord-gateway-url",
            &fake.gateway_url(),
            "--discord-api-url",
            &fake.api_url(),
        ])
        .env("DISCORD_TOKEN", BOT_TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut log = Vec::new();
        let _ = stderr.read_to_end(&mut log);
        String::from_utf8_lossy(&log).into_owned()
    });
    // IDENTIFY, a command, a RESUME on a new connection: every frame that carries or follows the token.
    let (mut conn, identify) = fake.accept_and_ready("session-1").await;
    assert_eq!(identify["d"]["token"], format!("Bot {BOT_TOKEN}"));
    conn.dispatch(
        "GUILD_CREATE",
        2,
        large(json!([guild_create()["members"][0].clone()])),
    );
    conn.expect_op(8).await;
    conn.send(json!({"op": 7, "d": null}));
    let mut resumed = fake.next_connection().await;
    resumed.expect_op(6).await;
    resumed.dispatch("RESUMED", 3, json!({}));
    resumed.dispatch("PRESENCE_UPDATE", 4, presence(ALICE, "idle"));
    resumed.dispatch(
        "GUILD_CREATE",
        5,
        json!({"id": OTHER_GUILD, "name": "Two", "large": true, "members": []}),
    );
    resumed.expect_op(8).await.to_string();
    common::binary::signal(&child, "TERM");
    let code = tokio::task::spawn_blocking(move || common::binary::wait_exit(&mut child))
        .await
        .unwrap();
    assert_eq!(code, 0);
    let log = log.join().unwrap();
    assert!(log.contains("TRACE"), "trace logging was on:\n{log}");
    assert!(
        log.contains("GUILD_CREATE") || log.contains("connected to Discord"),
        "{log}"
    );
    let hex: String = BOT_TOKEN.bytes().map(|b| format!("{b:02x}")).collect();
    for (i, line) in log.lines().enumerate() {
        assert!(
            !line.contains(BOT_TOKEN) && !line.to_lowercase().contains(&hex),
            "line {i} of the log shows the token: {line}"
        );
    }
}
