//! Every connected client and every room, behind one lock.
//!
//! A room is keyed by its name (any string, `""` included) and exists while it
//! has a subscriber of either protocol. Without a store it is removed the
//! moment it empties, and with it a Scratch project's cloud variables (as in
//! CloudLink 0.2.0). With a [store](crate::store) a room that holds or owes
//! the store variables stays for the empty-room time, then leaves memory at a
//! flush; its variables are in the store and are loaded again when it is next
//! joined. Inside a room members are kept per protocol, because CL4 traffic
//! only ever reaches CL4 members and Scratch traffic only Scratch members.
//!
//! One `std::sync::Mutex` guards it all, and callers push into outboxes while
//! holding it: a membership change and the announcements it causes are then
//! one step that no other broadcast can interleave with, so every client's
//! user list stays exact. Nothing under the lock waits: an outbox push never
//! blocks (see [`edge::outbox`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde_json::Value;

use crate::client::{Client, Protocol, snowflake_in, uuid_in};
use crate::history::LogEntry;
use crate::latest::LatestSets;
use crate::store::{Record, Stored};
use uuid::Uuid;

/// The clients and rooms; see the module doc.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    state: Mutex<State>,
}

impl Registry {
    /// A registry whose emptied rooms wait for the store (`durable`) or go at once.
    pub fn new(durable: bool) -> Self {
        Self {
            state: Mutex::new(State {
                durable,
                ..State::default()
            }),
        }
    }

    /// Everything, for one step; hold it briefly and never across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the lock guards.
#[derive(Debug, Default)]
pub(crate) struct State {
    clients: BTreeMap<u64, Member>,
    // The indexes share the clients' own strings rather than copying them,
    // and a name's clients are a sorted list rather than a set, whose first
    // node alone costs about 100 bytes: every idle client pays for these.
    by_uuid: HashMap<Uuid, u64>,
    by_snowflake: HashMap<u64, u64>,
    /// Keys of the clients with each username, ascending (connection order).
    by_username: HashMap<Arc<str>, Vec<u64>>,
    rooms: HashMap<String, Room>,
    /// Whether variables are kept in a store (see the module doc).
    durable: bool,
    /// Rooms whose variables changed since the last flush (durable only).
    dirty: HashSet<String>,
}

#[derive(Debug)]
struct Member {
    client: Client,
    /// The rooms it is in, unordered. A list, not a set: nearly every client
    /// is in one room, and a set's first node costs about 250 bytes, in every
    /// idle connection; the lookups stay cheap at the 1,000 rooms a CL4
    /// client may join at most.
    rooms: Vec<String>,
}

/// One room: its members per protocol and, for Scratch, its cloud variables.
#[derive(Debug, Default)]
pub(crate) struct Room {
    /// CL4 members, in the order they connected.
    pub cl4: BTreeMap<u64, Client>,
    /// Scratch members, in the order they connected.
    pub scratch: BTreeMap<u64, Client>,
    /// The project's cloud variables, in the order they were made.
    pub variables: IndexMap<String, Value>,
    /// Bumped by every rename and delete, so that a slow client's queued
    /// `set` frames are only merged with later ones of the same generation.
    pub generation: u64,
    /// Its last changes, oldest first (see [`crate::history`]).
    pub log: VecDeque<LogEntry>,
    /// While the host batches and someone is in it: each variable's newest
    /// `set`, which the Scratch members follow (see [`crate::latest`]).
    pub latest: Option<Arc<LatestSets>>,
    /// When its last member left, for a room kept for the store.
    emptied: Option<Instant>,
}

impl Room {
    /// The members of one protocol.
    pub fn members(&self, protocol: Protocol) -> &BTreeMap<u64, Client> {
        match protocol {
            Protocol::Cl4 => &self.cl4,
            Protocol::Scratch => &self.scratch,
        }
    }

    fn members_mut(&mut self, protocol: Protocol) -> &mut BTreeMap<u64, Client> {
        match protocol {
            Protocol::Cl4 => &mut self.cl4,
            Protocol::Scratch => &mut self.scratch,
        }
    }

    fn is_empty(&self) -> bool {
        self.cl4.is_empty() && self.scratch.is_empty()
    }
}

impl State {
    /// How many clients are connected.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Adds a newly connected client.
    pub fn register(&mut self, client: &Client) {
        self.by_uuid.insert(client.uuid(), client.key());
        self.by_snowflake.insert(client.snowflake(), client.key());
        self.clients.insert(
            client.key(),
            Member {
                client: client.clone(),
                rooms: Vec::new(),
            },
        );
    }

    /// Removes a client that left; it must have left its rooms already.
    pub fn unregister(&mut self, client: &Client) {
        let rooms: Vec<String> = self.rooms_of(client).into_iter().collect();
        for room in rooms {
            self.unsubscribe(client, &room);
        }
        self.clients.remove(&client.key());
        self.by_uuid.remove(&client.uuid());
        self.by_snowflake.remove(&client.snowflake());
        if let Some(name) = client.username()
            && let Some(keys) = self.by_username.get_mut(name)
        {
            if let Ok(at) = keys.binary_search(&client.key()) {
                keys.remove(at);
            }
            if keys.is_empty() {
                self.by_username.remove(name);
            }
        }
    }

    /// Records a username that was just set, for lookups.
    pub fn index_username(&mut self, client: &Client) {
        if let Some(name) = client.shared_username() {
            let keys = self.by_username.entry(name).or_default();
            if let Err(at) = keys.binary_search(&client.key()) {
                keys.insert(at, client.key());
            }
        }
    }

    /// Every connected client, in connection order.
    pub fn clients(&self) -> impl Iterator<Item = &Client> {
        self.clients.values().map(|m| &m.client)
    }

    /// The rooms a client is in.
    pub fn rooms_of(&self, client: &Client) -> BTreeSet<String> {
        self.clients
            .get(&client.key())
            .map(|m| m.rooms.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many rooms a client is in.
    pub fn room_count(&self, client: &Client) -> usize {
        self.clients.get(&client.key()).map_or(0, |m| m.rooms.len())
    }

    /// Whether a client is connected (registered and not yet forgotten).
    pub fn is_registered(&self, client: &Client) -> bool {
        self.clients.contains_key(&client.key())
    }

    /// Whether a client is in a room.
    pub fn is_in(&self, client: &Client, room: &str) -> bool {
        self.clients
            .get(&client.key())
            .is_some_and(|m| m.rooms.iter().any(|r| r == room))
    }

    /// Every room in memory.
    pub fn rooms(&self) -> impl Iterator<Item = (&String, &Room)> {
        self.rooms.iter()
    }

    /// A room, if it exists.
    pub fn room(&self, name: &str) -> Option<&Room> {
        self.rooms.get(name)
    }

    /// A room to change, if it exists.
    pub fn room_mut(&mut self, name: &str) -> Option<&mut Room> {
        self.rooms.get_mut(name)
    }

    /// Puts a client into a room (creating it) among the members of its
    /// protocol; `false` if it was already there. Unidentified clients
    /// cannot join rooms.
    pub fn subscribe(&mut self, client: &Client, room: &str) -> bool {
        let (Some(protocol), Some(member)) =
            (client.protocol(), self.clients.get_mut(&client.key()))
        else {
            return false;
        };
        if member.rooms.iter().any(|r| r == room) {
            return false;
        }
        // Nearly every client stays in one room: the list grows one at a
        // time rather than by a first step of four.
        member.rooms.reserve_exact(1);
        member.rooms.push(room.to_owned());
        if !self.rooms.contains_key(room) {
            self.rooms.insert(room.to_owned(), Room::default());
        }
        if let Some(entry) = self.rooms.get_mut(room) {
            entry.emptied = None;
            entry
                .members_mut(protocol)
                .insert(client.key(), client.clone());
        }
        true
    }

    /// Puts a room read from the store into memory, unless it is there
    /// already; it counts as empty until someone subscribes.
    pub fn insert_loaded(&mut self, name: &str, stored: Stored) {
        self.rooms.entry(name.to_owned()).or_insert_with(|| Room {
            variables: stored.variables,
            log: stored.log,
            emptied: Some(Instant::now()),
            ..Room::default()
        });
    }

    /// Records that a room's variables changed, for the next flush.
    pub fn mark_dirty(&mut self, room: &str) {
        if self.durable && !self.dirty.contains(room) {
            self.dirty.insert(room.to_owned());
        }
    }

    /// How many rooms are in memory.
    pub fn room_total(&self) -> usize {
        self.rooms.len()
    }

    /// How many rooms owe the store a record.
    pub fn dirty_total(&self) -> usize {
        self.dirty.len()
    }

    /// The records of up to `max` of the rooms that owe the store one,
    /// encoded, and no longer marked. Stage them before letting go of the
    /// lock, so a load never reads past them.
    pub fn take_dirty(&mut self, max: usize) -> Vec<Record> {
        let names: Vec<String> = self.dirty.iter().take(max).cloned().collect();
        names
            .into_iter()
            .map(|name| {
                self.dirty.remove(&name);
                let record = self
                    .rooms
                    .get(&name)
                    .and_then(|room| crate::store::encode(&room.variables, &room.log));
                (name, record)
            })
            .collect()
    }

    /// Lets rooms that have been empty for `ttl` leave memory, except one
    /// that still owes the store a record (changed since its batch was
    /// taken): it leaves at a later flush, once the store has it.
    pub fn evict_emptied(&mut self, ttl: Duration) {
        let now = Instant::now();
        let dirty = &self.dirty;
        self.rooms.retain(|name, room| {
            room.emptied
                .is_none_or(|since| now.saturating_duration_since(since) < ttl)
                || dirty.contains(name)
        });
    }

    /// Makes room for one more: the room emptied longest ago leaves memory.
    /// `None` if no room is empty; otherwise the store record it owes, if
    /// any, which the caller stages before letting go of the lock.
    pub fn evict_oldest_emptied(&mut self) -> Option<Option<Record>> {
        let oldest = self
            .rooms
            .iter()
            .filter_map(|(name, room)| room.emptied.map(|since| (since, name)))
            .min()
            .map(|(_, name)| name.clone())?;
        let room = self.rooms.remove(&oldest)?;
        let owed = self
            .dirty
            .remove(&oldest)
            .then(|| crate::store::encode(&room.variables, &room.log));
        Some(owed.map(|record| (oldest, record)))
    }

    /// Takes a client out of a room, removing the room if it empties;
    /// `false` if it was not there.
    pub fn unsubscribe(&mut self, client: &Client, room: &str) -> bool {
        let Some(member) = self.clients.get_mut(&client.key()) else {
            return false;
        };
        let Some(at) = member.rooms.iter().position(|r| r == room) else {
            return false;
        };
        member.rooms.swap_remove(at);
        if let Some(entry) = self.rooms.get_mut(room) {
            entry.cl4.remove(&client.key());
            entry.scratch.remove(&client.key());
            if entry.scratch.is_empty() {
                // Nobody follows it any more; a stored room keeps only its values.
                entry.latest = None;
            }
            if entry.is_empty() {
                let owes_store =
                    self.durable && (!entry.variables.is_empty() || self.dirty.contains(room));
                if owes_store {
                    entry.emptied = Some(Instant::now());
                } else {
                    self.rooms.remove(room);
                }
            }
        }
        true
    }

    /// Clients with this exact username, in connection order.
    pub fn by_username(&self, name: &str) -> Vec<Client> {
        self.by_username
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|key| self.clients.get(key).map(|m| m.client.clone()))
            .collect()
    }

    /// The client with this UUID.
    pub fn by_uuid(&self, uuid: &str) -> Option<Client> {
        let key = self.by_uuid.get(&uuid_in(uuid)?)?;
        self.clients.get(key).map(|m| m.client.clone())
    }

    /// The client with this Snowflake.
    pub fn by_snowflake(&self, snowflake: &str) -> Option<Client> {
        let key = self.by_snowflake.get(&snowflake_in(snowflake)?)?;
        self.clients.get(key).map(|m| m.client.clone())
    }

    /// Looks a query up the CL4 way: username (maybe several), then UUID,
    /// then Snowflake. An empty query never matches.
    pub fn find(&self, query: &str) -> Vec<Client> {
        if query.is_empty() {
            return Vec::new();
        }
        let named = self.by_username(query);
        if !named.is_empty() {
            return named;
        }
        self.by_uuid(query)
            .or_else(|| self.by_snowflake(query))
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientInfo;
    use std::sync::Arc;

    fn client(key: u64, protocol: Protocol) -> Client {
        let outbox = Arc::new(edge::outbox::Outbox::new(4));
        let client = Client::new(
            key,
            key * 100,
            Uuid::from_u128(0xfeed_u128 << 112 | u128::from(key)),
            ClientInfo::new([127, 0, 0, 1].into()),
            outbox,
        );
        client.set_protocol(protocol);
        client
    }

    #[test]
    fn a_room_lives_while_someone_is_in_it() {
        let mut state = State::default();
        let (a, s) = (client(1, Protocol::Cl4), client(2, Protocol::Scratch));
        state.register(&a);
        state.register(&s);
        assert!(state.subscribe(&a, "r"));
        assert!(!state.subscribe(&a, "r"));
        assert!(state.subscribe(&s, "r"));
        assert_eq!(state.room("r").unwrap().cl4.len(), 1);
        assert_eq!(state.room("r").unwrap().scratch.len(), 1);
        state
            .room_mut("r")
            .unwrap()
            .variables
            .insert("v".into(), 1.into());
        assert!(state.unsubscribe(&a, "r"));
        assert!(!state.unsubscribe(&a, "r"));
        assert!(state.room("r").is_some());
        state.unregister(&s);
        assert!(state.room("r").is_none(), "an empty room is gone");
        assert_eq!(state.len(), 1);
    }

    #[test]
    fn a_flush_takes_dirty_rooms_in_batches_and_evicts_only_what_the_store_has() {
        let mut state = State {
            durable: true,
            ..State::default()
        };
        let s = client(1, Protocol::Scratch);
        state.register(&s);
        for room in ["a", "b", "c"] {
            assert!(state.subscribe(&s, room));
            state
                .room_mut(room)
                .unwrap()
                .variables
                .insert("v".into(), room.into());
            state.mark_dirty(room);
            assert!(state.unsubscribe(&s, room));
        }
        assert_eq!(state.room_total(), 3, "emptied rooms wait for the store");
        let first = state.take_dirty(2);
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|(_, record)| record.is_some()));
        assert_eq!(state.dirty_total(), 1);
        // A room taken in the first batch changes again before the flush ends.
        let (changed, _) = &first[0];
        state.mark_dirty(changed);
        state.evict_emptied(Duration::ZERO);
        let mut kept: Vec<&str> = state.rooms.keys().map(String::as_str).collect();
        kept.sort_unstable();
        let untaken = state.dirty.iter().find(|r| *r != changed).unwrap().clone();
        let mut owed = vec![changed.as_str(), untaken.as_str()];
        owed.sort_unstable();
        assert_eq!(kept, owed, "only rooms the store has leave memory");
        let rest = state.take_dirty(usize::MAX);
        assert_eq!(rest.len(), 2);
        state.evict_emptied(Duration::ZERO);
        assert_eq!(state.room_total(), 0);
    }

    #[test]
    fn queries_match_username_then_uuid_then_snowflake() {
        let mut state = State::default();
        let (a, b) = (client(1, Protocol::Cl4), client(2, Protocol::Cl4));
        state.register(&a);
        state.register(&b);
        let uuid_of_b = b.uuid().to_string();
        a.set_username(&uuid_of_b);
        state.index_username(&a);
        assert_eq!(state.find(&uuid_of_b), vec![a.clone()], "username first");
        assert_eq!(state.find("200"), vec![b.clone()]);
        assert!(
            state.find("0200").is_empty(),
            "a Snowflake as clients see it"
        );
        assert!(state.find("").is_empty());
        state.unregister(&a);
        assert_eq!(state.find(&uuid_of_b), vec![b]);
        assert!(state.find(&uuid_of_b.to_uppercase()).is_empty());
    }
}
