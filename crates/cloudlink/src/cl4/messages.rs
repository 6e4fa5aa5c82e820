//! CL4 commands that carry data between clients: `gmsg` and `gvar` to rooms,
//! `pmsg` and `pvar` to members of a room, `direct` to anyone.
//!
//! A message to a room is encoded once and the same frame goes to every
//! member; only the sender's own copy differs when it carries the listener.
//! `gvar` copies without a listener may be merged in a slow client's outbox
//! (only the newest value of a variable in a room matters), everything else
//! must arrive.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use edge::outbox::{Frame, Urgency};
use serde_json::Value;

use crate::cl4::status::StatusCode;
use crate::cl4::wire::{Packet, Val};
use crate::cl4::{Request, bad_rooms, room_names};
use crate::client::{Client, snowflake_in, uuid_in};
use crate::pytext;
use crate::registry::State;

/// Each target room and its CL4 members, in turn. At the first room the
/// sender has not joined it answers E:115 and stops (rooms already visited
/// keep what they got); `visit` may stop early too.
fn each_target_room<'s>(
    request: &Request<'_>,
    state: &'s State,
    mut visit: impl FnMut(&str, &'s BTreeMap<u64, Client>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let rooms = match request.get("rooms") {
        None => state.rooms_of(request.client).into_iter().collect(),
        Some(rooms) => match room_names(rooms) {
            Some(rooms) => rooms,
            None => {
                bad_rooms(request);
                return ControlFlow::Break(());
            }
        },
    };
    for room in &rooms {
        if !state.is_in(request.client, room) {
            request.reply(
                StatusCode::RoomNotJoined,
                Some(&format!(
                    "Attempted to access room {room} while not joined."
                )),
            );
            return ControlFlow::Break(());
        }
        if let Some(members) = state.room(room).map(|r| &r.cl4) {
            visit(room, members)?;
        }
    }
    ControlFlow::Continue(())
}

/// `gmsg` and `gvar`: to every member of each target room, sender included.
pub(crate) fn global(request: &Request<'_>, cmd: &'static str) {
    let client = request.client;
    let val = request.get("val").unwrap_or(&Value::Null);
    let name = request.get("name").filter(|_| cmd == "gvar");
    let listener = request.listener();
    let state = request.server.registry().lock();
    let _ = each_target_room(request, &state, |room, members| {
        let packet = Packet {
            name,
            val: Some(Val::Json(val)),
            rooms: Some(room),
            ..Packet::new(cmd)
        };
        let wire = packet.frame();
        let urgency = match name.and_then(Value::as_str) {
            Some(name) => Urgency::Collapsible(Arc::from(format!("gvar\0{room}\0{name}"))),
            None => Urgency::Essential,
        };
        for member in members.values() {
            if member == client && listener.is_some() {
                member.push_wire(packet.clone().listener(listener).frame());
            } else {
                member.push(Frame {
                    urgency: urgency.clone(),
                    wire: wire.clone(),
                });
            }
        }
        ControlFlow::Continue(())
    });
}

/// The members of a room a `pmsg`/`pvar` `id` names: a username (maybe
/// several), a UUID or a Snowflake; a user object by its `id` or `uuid`; or
/// an array of those.
fn matching<'a>(members: &'a BTreeMap<u64, Client>, id: &Value) -> Vec<&'a Client> {
    let mut found: Vec<&Client> = Vec::new();
    let mut add = |client: &'a Client| {
        if !found.contains(&client) {
            found.push(client);
        }
    };
    match id {
        Value::String(query) if !query.is_empty() => {
            let named: Vec<&Client> = members
                .values()
                .filter(|c| c.username() == Some(query))
                .collect();
            if named.is_empty() {
                let by_id = members
                    .values()
                    .find(|c| uuid_in(query) == Some(c.uuid()))
                    .or_else(|| {
                        members
                            .values()
                            .find(|c| snowflake_in(query) == Some(c.snowflake()))
                    });
                by_id.into_iter().for_each(&mut add);
            } else {
                named.into_iter().for_each(&mut add);
            }
        }
        Value::Object(user) => {
            let snowflake = user
                .get("id")
                .and_then(Value::as_str)
                .and_then(snowflake_in);
            let uuid = user.get("uuid").and_then(Value::as_str).and_then(uuid_in);
            members
                .values()
                .find(|c| Some(c.snowflake()) == snowflake || Some(c.uuid()) == uuid)
                .into_iter()
                .for_each(&mut add);
        }
        Value::Array(ids) => {
            for id in ids.iter().filter(|id| !id.is_array()) {
                matching(members, id).into_iter().for_each(&mut add);
            }
        }
        _ => {}
    }
    found
}

fn ambiguous(request: &Request<'_>, id: &Value, matches: usize) {
    request.reply(
        StatusCode::IdNotSpecific,
        Some(&format!(
            "Multiple matches found for {}, found {matches} matches. Please use Snowflakes, UUIDs, or client objects instead.",
            pytext::str(id)
        )),
    );
}

/// `pmsg` and `pvar`: to the members of each target room that `id` names.
pub(crate) fn private(request: &Request<'_>, cmd: &'static str) {
    if !request.require_username() {
        return;
    }
    let client = request.client;
    let id = request.get("id").unwrap_or(&Value::Null);
    let val = request.get("val").unwrap_or(&Value::Null);
    let name = request.get("name").filter(|_| cmd == "pvar");
    let warn = request.server.settings().warn_if_multiple_username_matches;
    let state = request.server.registry().lock();
    let mut delivered = false;
    let flow = each_target_room(request, &state, |room, members| {
        let matches = matching(members, id);
        if matches.is_empty() {
            return ControlFlow::Continue(());
        }
        if warn && matches.len() >= 2 {
            ambiguous(request, id, matches.len());
            return ControlFlow::Break(());
        }
        let packet = Packet {
            name,
            val: Some(Val::Json(val)),
            origin: Some(client.user_object()),
            rooms: Some(room),
            ..Packet::new(cmd)
        };
        let wire = packet.frame();
        for member in matches {
            member.push_wire(wire.clone());
        }
        delivered = true;
        ControlFlow::Continue(())
    });
    drop(state);
    if flow.is_break() {
        return;
    }
    if delivered {
        request.reply(StatusCode::Ok, None);
    } else {
        request.reply(
            StatusCode::IdNotFound,
            Some(&format!("No matches found: {}", pytext::str(id))),
        );
    }
}

/// `direct`: to one client anywhere on the server, found by username, UUID
/// or Snowflake. Success is silent for the sender.
pub(crate) fn direct(request: &Request<'_>) {
    let client = request.client;
    let id = request.get("id").unwrap_or(&Value::Null);
    let query = id.as_str().unwrap_or_default();
    let matches = request.server.registry().lock().find(query);
    let warn = request.server.settings().warn_if_multiple_username_matches;
    match matches.len() {
        0 => return request.reply(StatusCode::IdNotFound, None),
        n if n >= 2 && warn => return ambiguous(request, id, n),
        _ => {}
    }
    let packet = Packet {
        val: Some(Val::Json(request.get("val").unwrap_or(&Value::Null))),
        origin: Some(client.user_object()),
        listener: request.listener(),
        ..Packet::new("direct")
    };
    let wire = packet.frame();
    for target in &matches {
        target.push_wire(wire.clone());
    }
}
