//! CL4 commands that change who a client is or where it is: `handshake`,
//! `setid`, `link`, `unlink`, and leaving on disconnect, each with the `ulist`
//! announcements that keep every member's user list exact.
//!
//! Every change and its announcements happen under one registry lock, so two
//! clients joining at once can never show anyone a list that misses one.

use crate::cl4::status::StatusCode;
use crate::cl4::wire::{Packet, Val};
use crate::cl4::{Request, bad_rooms, room_names};
use crate::client::{Client, Protocol, UserObject};
use crate::registry::State;
use crate::settings::SERVER_VERSION;

/// The room every CL4 client starts in.
pub(crate) const DEFAULT_ROOM: &str = "default";

/// `ulist set`: the named CL4 members of `room`, to `to` only.
fn send_user_list(state: &State, to: &Client, room: &str) {
    let members: Vec<UserObject<'_>> = state
        .room(room)
        .map(|r| {
            r.cl4
                .values()
                .filter(|c| c.username().is_some())
                .map(Client::user_object)
                .collect()
        })
        .unwrap_or_default();
    to.push_wire(Packet::ulist("set", Val::Users(members), room).frame());
}

/// `ulist add` or `remove` of `who`, to the other CL4 members of `room`.
fn announce(state: &State, mode: &str, who: &Client, room: &str) {
    let Some(members) = state.room(room).map(|r| &r.cl4) else {
        return;
    };
    let wire = Packet::ulist(mode, Val::User(who.user_object()), room).frame();
    for member in members.values().filter(|m| *m != who) {
        member.push_wire(wire.clone());
    }
}

/// Puts a client that was just identified as CL4 into `default`, silently.
pub(crate) fn identified(state: &mut State, client: &Client) {
    state.subscribe(client, DEFAULT_ROOM);
}

/// `handshake`: who you are and who is here, the first time; then I:100.
pub(crate) fn handshake(request: &Request<'_>) {
    let client = request.client;
    if client.first_handshake() {
        let settings = request.server.settings();
        let text = |cmd: &'static str, val: &str| Packet::new(cmd).val(Val::Text(val)).frame();
        if settings.send_client_ip {
            let ip = client.address().to_canonical().to_string();
            client.push_wire(text("client_ip", &ip));
        }
        client.push_wire(text("server_version", SERVER_VERSION));
        if let Some(motd) = &settings.motd {
            client.push_wire(text("motd", motd));
        }
        let user = Packet::new("client_obj").val(Val::User(client.user_object()));
        client.push_wire(user.frame());
        let state = request.server.registry().lock();
        for room in state.rooms_of(client) {
            send_user_list(&state, client, &room);
        }
    }
    request.reply(StatusCode::Ok, None);
}

/// `setid`: names the client once, and tells its rooms.
pub(crate) fn setid(request: &Request<'_>) {
    let client = request.client;
    let name = request
        .get("val")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let mut state = request.server.registry().lock();
    let status = if client.set_username(name) {
        state.index_username(client);
        for room in state.rooms_of(client) {
            announce(&state, "add", client, &room);
            send_user_list(&state, client, &room);
        }
        StatusCode::Ok
    } else {
        StatusCode::IdAlreadySet
    };
    drop(state);
    let packet = Packet {
        listener: request.listener(),
        val: Some(Val::User(client.user_object())),
        ..Packet::status(status)
    };
    client.push_wire(packet.frame());
}

/// `link`: joins rooms (leaving `default` unless it is listed).
pub(crate) fn link(request: &Request<'_>) {
    if !request.require_username() {
        return;
    }
    let val = request.get("val").unwrap_or(&serde_json::Value::Null);
    let Some(rooms) = room_names(val) else {
        return bad_rooms(request);
    };
    let client = request.client;
    let mut state = request.server.registry().lock();
    if !rooms.iter().any(|r| r == DEFAULT_ROOM) && state.unsubscribe(client, DEFAULT_ROOM) {
        announce(&state, "remove", client, DEFAULT_ROOM);
    }
    let max = request.server.settings().max_rooms_per_client;
    for room in &rooms {
        if !state.is_in(client, room) && state.room_count(client) >= max {
            drop(state);
            let details = format!("A client may be in at most {max} rooms at once.");
            return request.reply(StatusCode::Refused, Some(&details));
        }
        if state.subscribe(client, room) {
            announce(&state, "add", client, room);
        }
        send_user_list(&state, client, room);
    }
    drop(state);
    request.reply(StatusCode::Ok, None);
}

/// `unlink`: leaves rooms (`""`: all of them); a client left in no room goes
/// back to `default`.
pub(crate) fn unlink(request: &Request<'_>) {
    if !request.require_username() {
        return;
    }
    let client = request.client;
    let mut state = request.server.registry().lock();
    let rooms: Vec<String> = match request.get("val").unwrap_or(&serde_json::Value::Null) {
        serde_json::Value::String(all) if all.is_empty() => {
            state.rooms_of(client).into_iter().collect()
        }
        val => match room_names(val) {
            Some(rooms) => rooms,
            None => {
                drop(state);
                return bad_rooms(request);
            }
        },
    };
    for room in &rooms {
        if state.unsubscribe(client, room) {
            announce(&state, "remove", client, room);
        }
    }
    if state.rooms_of(client).is_empty() && state.subscribe(client, DEFAULT_ROOM) {
        announce(&state, "add", client, DEFAULT_ROOM);
        send_user_list(&state, client, DEFAULT_ROOM);
    }
    drop(state);
    request.reply(StatusCode::Ok, None);
}

/// Takes a leaving client out of its rooms; a named one is announced as gone.
pub(crate) fn leave_all(state: &mut State, client: &Client) {
    debug_assert_eq!(client.protocol(), Some(Protocol::Cl4));
    for room in state.rooms_of(client) {
        if state.unsubscribe(client, &room) && client.username().is_some() {
            announce(state, "remove", client, &room);
        }
    }
}
