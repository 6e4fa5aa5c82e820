//! [`CloudLink`]: the server's shared state and the helpers extensions use,
//! and its [`Builder`].
//!
//! A `CloudLink` is what every session and every hook holds: the settings, the
//! registered hooks, and the registry of clients and rooms. Cloning it is
//! cheap. Its public methods are CloudLink 0.2.0's plugin helpers (send a
//! status code, unicast, multicast, disconnect, put clients into rooms, find
//! clients) with Rust types.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard, RwLock};
use std::time::Duration;

use broker::ClusterConfig;
use edge::outbox::Outbox;
use edge::rate::MessageRate;
use serde_json::Value;

use crate::cl4::status::StatusCode;
use crate::cl4::wire::{Packet, Val, encode};
use crate::client::{Client, ClientInfo, Protocol};
use crate::cluster::Cluster;
use crate::extension::{Command, Event, ExceptionKind, Failure, Hooks, hook};
use crate::host_rules::HostRules;
use crate::metrics::Metrics;
use crate::registry::{Registry, State};
use crate::settings::{Settings, ValueRule};
use crate::store::{StoreError, VariableStore};

/// Rooms encoded for the store per hold of the registry lock during a
/// flush: a project with a full change log encodes in about 30 µs, so a
/// batch holds the lock about 2 ms.
const FLUSH_ROOMS_PER_LOCK: usize = 64;

/// The CloudLink server's state: clients, rooms, settings and hooks.
///
/// ```
/// use cloudlink::{CloudLink, Protocol, StatusCode};
///
/// let server = CloudLink::builder()
///     .motd("Welcome!")
///     .on_command(Protocol::Cl4, "foo", |command| async move {
///         // Answer `{"cmd":"foo"}` with I:100, copying its listener.
///         command.server.send_status(&command.client, StatusCode::Ok, None, Some(&command.message));
///     })
///     .build();
/// assert_eq!(server.client_count(), 0);
/// ```
#[derive(Clone)]
pub struct CloudLink(pub(crate) Arc<Shared>);

pub(crate) struct Shared {
    settings: Settings,
    hooks: Hooks,
    registry: Registry,
    store: Option<Arc<VariableStore>>,
    /// The cluster sharing Scratch projects, in cluster mode.
    cluster: Option<Cluster>,
    host_rules: RwLock<Arc<HostRules>>,
    pub(crate) metrics: Metrics,
    snowflakes: snowflaked::sync::Generator,
    next_key: AtomicU64,
}

impl fmt::Debug for CloudLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudLink")
            .field("settings", &self.0.settings)
            .field("clients", &self.client_count())
            .finish_non_exhaustive()
    }
}

/// The instance number inside every Snowflake, as CloudLink 0.2.0 uses.
const SNOWFLAKE_INSTANCE: u16 = 42;

impl CloudLink {
    /// Starts configuring a server; the defaults are CloudLink 0.2.0's.
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.0.settings
    }

    pub(crate) fn hooks(&self) -> &Hooks {
        &self.0.hooks
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.0.registry
    }

    /// The host's rules in force now.
    pub(crate) fn host_rules_now(&self) -> Arc<HostRules> {
        Arc::clone(&self.0.host_rules.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts new host rules in force (a SIGHUP reload, say) and closes the
    /// Scratch clients they refuse, each with its close code; everyone the
    /// new rules admit stays. Returns how many were closed.
    pub fn replace_host_rules(&self, rules: HostRules) -> usize {
        *self.0.host_rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
        let rules = self.host_rules_now();
        let state = self.registry().lock();
        let mut closed = 0;
        for client in state.clients() {
            if client.protocol() != Some(Protocol::Scratch) || !client.is_handshaken() {
                continue;
            }
            let username = client.username().unwrap_or_default();
            let has_user_agent = client
                .headers()
                .contains_key(axum::http::header::USER_AGENT);
            for project in state.rooms_of(client) {
                if let Err(refusal) = rules.check(username, &project, has_user_agent) {
                    crate::scratch::refuse_by_rule(self, client, refusal);
                    closed += 1;
                    break;
                }
            }
        }
        closed
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The cloud-variable store, when variables are durable.
    pub(crate) fn store(&self) -> Option<&Arc<VariableStore>> {
        self.0.store.as_ref()
    }

    /// The cluster sharing Scratch projects, in cluster mode.
    pub(crate) fn cluster(&self) -> Option<&Cluster> {
        self.0.cluster.as_ref()
    }

    /// The cluster link's health and totals, in cluster mode.
    pub fn cluster_stats(&self) -> Option<broker::BrokerStats> {
        self.cluster().map(|c| c.broker().stats())
    }

    /// `state` again, with `room` in memory if the store holds it. The
    /// record is read with the lock let go (nothing else waits on one
    /// project's read; the store is local and a record small), so another
    /// step may have loaded the room meanwhile, and then that one stays.
    pub(crate) fn load_room<'a>(
        &'a self,
        state: MutexGuard<'a, State>,
        room: &str,
    ) -> Result<MutexGuard<'a, State>, StoreError> {
        let Some(store) = self.store().filter(|_| state.room(room).is_none()) else {
            return Ok(state);
        };
        drop(state);
        let stored = store.load(room)?;
        let mut state = self.registry().lock();
        state.insert_loaded(room, stored);
        Ok(state)
    }

    /// Whether Scratch cloud variables are kept in a store (see
    /// [`Builder::store`]) rather than in memory only.
    pub fn is_durable(&self) -> bool {
        self.0.store.is_some()
    }

    /// How many rooms are in memory: rooms with members, and, with a store,
    /// emptied rooms not yet past their empty-room time.
    pub fn room_count(&self) -> usize {
        self.registry().lock().room_total()
    }

    /// Writes every changed cloud variable to the store and waits until it is
    /// on disk, and lets rooms empty for longer than the empty-room time leave
    /// memory; returns how many project records were written. A served
    /// server does this every flush interval and on shutdown; call it
    /// yourself when you run sessions without [`crate::Server`]. Without a
    /// store it does nothing.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        self.flush_evicting(self.settings().empty_room_ttl).await
    }

    /// [`flush`](Self::flush), evicting rooms empty for `ttl`.
    pub(crate) async fn flush_evicting(&self, ttl: Duration) -> Result<usize, StoreError> {
        let Some(store) = self.store() else {
            return Ok(0);
        };
        // Encoded a batch of rooms per hold of the lock, so that a flush of
        // many busy projects does not stop every other client for the whole
        // encoding (1,000 projects with full logs took about 30 ms). Only
        // the rooms dirty now are taken: one changed meanwhile waits for the
        // next flush, so a flush ends however busy the server is.
        let mut left = self.registry().lock().dirty_total();
        loop {
            {
                let mut state = self.registry().lock();
                let records = state.take_dirty(left.min(FLUSH_ROOMS_PER_LOCK));
                left = left.saturating_sub(records.len());
                // Staged under the lock: see `VariableStore`'s module doc.
                store.stage(records);
                if left == 0 || state.dirty_total() == 0 {
                    state.evict_emptied(ttl);
                    break;
                }
            }
            tokio::task::yield_now().await;
        }
        let store = Arc::clone(store);
        let started = std::time::Instant::now();
        let written = tokio::task::spawn_blocking(move || store.commit())
            .await
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
        if matches!(written, Ok(records) if records > 0) {
            self.metrics().flushed(started.elapsed().as_secs_f64());
        }
        written
    }

    /// A new client with fresh IDs; not registered yet.
    pub(crate) fn new_client(&self, peer: ClientInfo, outbox: Arc<Outbox>) -> Client {
        let key = self.0.next_key.fetch_add(1, Ordering::Relaxed);
        let snowflake: u64 = self.0.snowflakes.generate();
        Client::new(key, snowflake, uuid::Uuid::new_v4(), peer, outbox)
    }

    /// Registers a client unless the server is full.
    pub(crate) fn register(&self, client: &Client) -> bool {
        let mut state = self.registry().lock();
        if self
            .settings()
            .max_clients
            .is_some_and(|max| state.len() >= max)
        {
            return false;
        }
        state.register(client);
        true
    }

    /// How many clients are connected.
    pub fn client_count(&self) -> usize {
        self.registry().lock().len()
    }

    /// Every connected client, in connection order.
    pub fn clients(&self) -> Vec<Client> {
        self.registry().lock().clients().cloned().collect()
    }

    /// Sends a CL4 status code. `request` is the message being answered: its
    /// `listener`, if any, is copied into the reply.
    pub fn send_status(
        &self,
        to: &Client,
        status: StatusCode,
        details: Option<Value>,
        request: Option<&Value>,
    ) -> bool {
        let packet = Packet {
            details: details.as_ref(),
            listener: request.and_then(|r| r.get("listener")),
            ..Packet::status(status)
        };
        to.push_wire(packet.frame())
    }

    /// Like [`send_status`](Self::send_status), with a `val` (as `setid` replies carry).
    pub fn send_status_with_val(
        &self,
        to: &Client,
        status: StatusCode,
        details: Option<Value>,
        request: Option<&Value>,
        val: &Value,
    ) -> bool {
        let packet = Packet {
            details: details.as_ref(),
            listener: request.and_then(|r| r.get("listener")),
            val: Some(Val::Json(val)),
            ..Packet::status(status)
        };
        to.push_wire(packet.frame())
    }

    /// Sends a JSON message; when `request` has a `listener` and `message` is
    /// an object, the listener is copied into it.
    pub fn send(&self, to: &Client, message: &Value, request: Option<&Value>) -> bool {
        match (message, request.and_then(|r| r.get("listener"))) {
            (Value::Object(object), Some(listener)) => {
                let mut object = object.clone();
                object.insert("listener".to_owned(), listener.clone());
                self.unicast(to, &Value::Object(object))
            }
            _ => self.unicast(to, message),
        }
    }

    /// Sends one JSON message to one client; `false` if it is gone.
    pub fn unicast(&self, to: &Client, message: &Value) -> bool {
        to.push_wire(edge::ws::text_frame(&encode(message)))
    }

    /// Sends a text frame that is not JSON (as 0.2.0 does before some closes).
    pub fn send_text(&self, to: &Client, text: &str) -> bool {
        to.push_wire(edge::ws::text_frame(text))
    }

    /// Sends one JSON message to several clients, encoded once; returns how
    /// many it was queued for.
    pub fn multicast<'a>(
        &self,
        to: impl IntoIterator<Item = &'a Client>,
        message: &Value,
    ) -> usize {
        let wire = edge::ws::text_frame(&encode(message));
        to.into_iter()
            .filter(|client| client.push_wire(wire.clone()))
            .count()
    }

    /// Closes a client's connection with this code and reason, after what is
    /// already queued for it.
    pub fn disconnect(&self, client: &Client, code: u16, reason: impl Into<Cow<'static, str>>) {
        client.finish(code, reason);
    }

    /// Puts an identified client into a room, silently (no `ulist`);
    /// `false` if it was already there or is not identified yet.
    pub fn join_room(&self, client: &Client, room: &str) -> bool {
        self.registry().lock().subscribe(client, room)
    }

    /// Takes a client out of a room, silently; `false` if it was not there.
    pub fn leave_room(&self, client: &Client, room: &str) -> bool {
        self.registry().lock().unsubscribe(client, room)
    }

    /// The rooms a client is in, sorted.
    pub fn rooms_of(&self, client: &Client) -> Vec<String> {
        self.registry()
            .lock()
            .rooms_of(client)
            .into_iter()
            .collect()
    }

    /// The members of a room who speak `protocol`, in connection order.
    pub fn room_members(&self, room: &str, protocol: Protocol) -> Vec<Client> {
        self.registry()
            .lock()
            .room(room)
            .map(|r| r.members(protocol).values().cloned().collect())
            .unwrap_or_default()
    }

    /// Clients with exactly this username (several may share one).
    pub fn find_by_username(&self, username: &str) -> Vec<Client> {
        self.registry().lock().by_username(username)
    }

    /// The client with this UUID.
    pub fn find_by_uuid(&self, uuid: &str) -> Option<Client> {
        self.registry().lock().by_uuid(uuid)
    }

    /// The client with this Snowflake ID.
    pub fn find_by_snowflake(&self, snowflake: &str) -> Option<Client> {
        self.registry().lock().by_snowflake(snowflake)
    }

    /// The CL4 lookup: username (maybe several), else UUID, else Snowflake.
    pub fn find(&self, query: &str) -> Vec<Client> {
        self.registry().lock().find(query)
    }
}

/// Settings and hooks for a [`CloudLink`] server.
///
/// ```
/// use cloudlink::{CloudLink, ExceptionKind, Protocol};
///
/// let server = CloudLink::builder()
///     .max_clients(100)
///     .disable_command("direct")
///     .on_connect(|event| async move {
///         println!("{} connected", event.client.uuid());
///     })
///     .on_exception(Protocol::Cl4, ExceptionKind::InvalidCommand, |failure| async move {
///         println!("{:?} sent an invalid command: {}", failure.client, failure.details);
///     })
///     .build();
/// # let _ = server;
/// ```
#[derive(Default)]
pub struct Builder {
    settings: Settings,
    hooks: Hooks,
    store: Option<Arc<VariableStore>>,
    cluster: Option<ClusterConfig>,
    host_rules: HostRules,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// Sends this message of the day (`motd`) on each client's first handshake.
    pub fn motd(mut self, text: impl Into<String>) -> Self {
        self.settings.motd = Some(text.into());
        self
    }

    /// At most this many clients at once; others get `Server is full!` and a close.
    pub fn max_clients(mut self, max: usize) -> Self {
        self.settings.max_clients = Some(max);
        self
    }

    /// Answers a CL4 command with E:110 (and ignores a Scratch method of that name).
    pub fn disable_command(mut self, command: impl Into<String>) -> Self {
        self.settings.disabled_commands.insert(command.into());
        self
    }

    /// Whether a username that matches several clients is refused with E:104
    /// (default `true`); `false` delivers to all of them.
    pub fn warn_if_multiple_username_matches(mut self, warn: bool) -> Self {
        self.settings.warn_if_multiple_username_matches = warn;
        self
    }

    /// Whether the handshake tells clients their address (`client_ip`; default `true`).
    pub fn send_client_ip(mut self, send: bool) -> Self {
        self.settings.send_client_ip = send;
        self
    }

    /// Largest message a client may send (default 1 MiB); larger closes with 1009.
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_frame_bytes = bytes.max(1024);
        self
    }

    /// Frames that may wait for one slow client before it is closed with 1013 (default 1024).
    pub fn outbox_frames(mut self, frames: usize) -> Self {
        self.settings.outbox_frames = frames.max(1);
        self
    }

    /// How often clients are pinged (default 30 s, as TurboWarp's server); one silent for two periods is dropped.
    pub fn ping_interval(mut self, every: Duration) -> Self {
        self.settings.writer.ping_interval = every.max(Duration::from_millis(10));
        self
    }

    /// How long a write may stay blocked before the client is dropped (default 10 s).
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.settings.writer.stall_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// Messages per second one client may send, with a burst (default 60/s,
    /// burst 120; `per_second` 0 removes the limit). Over it, a CL4 client gets
    /// one E:108 per streak and its messages are not handled; a client that
    /// keeps on is closed with 1008.
    pub fn message_rate(mut self, per_second: u32, burst: u32) -> Self {
        self.settings.message_rate = MessageRate::new(per_second, burst);
        self
    }

    /// Rooms one CL4 client may be in at once (default 1000); a `link` beyond
    /// it is answered with E:108, so no client can grow the server's memory
    /// without bound.
    pub fn max_rooms_per_client(mut self, rooms: usize) -> Self {
        self.settings.max_rooms_per_client = rooms.max(1);
        self
    }

    /// Cloud variables one Scratch project may hold (default 128, as
    /// TurboWarp's server); a client that makes one more is told so and
    /// closed with 4000.
    pub fn max_variables_per_room(mut self, variables: usize) -> Self {
        self.settings.max_variables_per_room = variables.max(1);
        self
    }

    /// At most this many rooms in memory (default 16,384, as TurboWarp's
    /// server); a Scratch handshake that would open one more is closed with 4003.
    pub fn max_rooms(mut self, rooms: usize) -> Self {
        self.settings.max_rooms = rooms.max(1);
        self
    }

    /// At most this many Scratch clients in one project (default 128); one
    /// more is closed with 4003.
    pub fn max_room_clients(mut self, clients: usize) -> Self {
        self.settings.max_room_clients = clients.max(1);
        self
    }

    /// The longest Scratch value, in bytes of its text (default 100,000);
    /// a longer one is dropped and counted, and its sender stays connected.
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_value_bytes = bytes;
        self
    }

    /// At most this many Scratch `set`s a second from one connection are
    /// broadcast one by one (default: no limit, as TurboWarp's server). Past
    /// it the latest value of each variable is applied when the second ends,
    /// so the room always ends in the state the client set.
    pub fn max_sets_per_second(mut self, sets: u32) -> Self {
        self.settings.max_sets_per_second = (sets > 0).then_some(sets);
        self
    }

    /// Sends each Scratch client at most one frame every `period` (default:
    /// at once), its messages joined by newlines (the format TurboWarp's
    /// server and Scratch's client use), with only the latest value of each
    /// variable. CL4 clients, which read one message a frame, are not
    /// batched. Zero sends at once.
    pub fn batch(mut self, period: Duration) -> Self {
        self.settings.writer.batch = (!period.is_zero()).then_some(period);
        self
    }

    /// How many of its last changes each project's log keeps (default 100;
    /// 0 keeps none), in memory and in the store; the admin API reads it.
    pub fn history(mut self, changes: usize) -> Self {
        self.settings.history = changes;
        self
    }

    /// Which Scratch values are accepted (default [`ValueRule::Any`], as
    /// CloudLink 0.2.0); others are dropped and counted.
    pub fn values(mut self, rule: ValueRule) -> Self {
        self.settings.values = rule;
        self
    }

    /// Runs `handler` when a client connects.
    pub fn on_connect<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.connect.push(hook(handler));
        self
    }

    /// Runs `handler` after a client disconnected and left its rooms.
    pub fn on_disconnect<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.disconnect.push(hook(handler));
        self
    }

    /// Runs `handler` after each message that was handled as a command.
    pub fn on_message<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Command) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.message.push(hook(handler));
        self
    }

    /// Runs `handler` for every message that could not be handled.
    pub fn on_error<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Failure) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.error.push(hook(handler));
        self
    }

    /// Adds a handler for a command (CL4 `cmd` or Scratch `method`). A command
    /// may have several; for a built-in command they run after it.
    pub fn on_command<F, Fut>(
        mut self,
        protocol: Protocol,
        command: impl Into<String>,
        handler: F,
    ) -> Self
    where
        F: Fn(Command) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks
            .commands
            .entry((protocol, command.into()))
            .or_default()
            .push(hook(handler));
        self
    }

    /// Runs `handler` when a client's first message shows it speaks `protocol`.
    pub fn on_protocol_identified<F, Fut>(mut self, protocol: Protocol, handler: F) -> Self
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hooks = self.hooks.identified.entry(protocol).or_default();
        hooks.push(hook(handler));
        self
    }

    /// Runs `handler` when a client of `protocol` disconnects.
    pub fn on_protocol_disconnect<F, Fut>(mut self, protocol: Protocol, handler: F) -> Self
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hooks = self.hooks.protocol_disconnect.entry(protocol).or_default();
        hooks.push(hook(handler));
        self
    }

    /// Runs `handler` when a client of `protocol` sends a disabled command
    /// (`details` is the command name).
    pub fn on_disabled_command<F, Fut>(mut self, protocol: Protocol, handler: F) -> Self
    where
        F: Fn(Failure) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hooks = self.hooks.disabled.entry(protocol).or_default();
        hooks.push(hook(handler));
        self
    }

    /// Runs `handler` for one kind of problem with a `protocol` client's messages.
    pub fn on_exception<F, Fut>(
        mut self,
        protocol: Protocol,
        kind: ExceptionKind,
        handler: F,
    ) -> Self
    where
        F: Fn(Failure) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hooks = self.hooks.exceptions.entry((protocol, kind)).or_default();
        hooks.push(hook(handler));
        self
    }

    /// Keeps Scratch cloud variables in `store`: they outlive their room's
    /// clients and the process (default: in memory only, gone when a
    /// project's last client leaves, as in CloudLink 0.2.0).
    pub fn store(mut self, store: VariableStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The host's rules for Scratch clients (username filter, project lists,
    /// `User-Agent`); see [`HostRules`]. Replace them while serving with
    /// [`CloudLink::replace_host_rules`].
    pub fn host_rules(mut self, rules: HostRules) -> Self {
        self.host_rules = rules;
        self
    }

    /// How often changed variables are written to the store (default 1 s):
    /// the most a `kill -9` can lose.
    pub fn flush_interval(mut self, every: Duration) -> Self {
        self.settings.flush_interval = every;
        self
    }

    /// How long, with a store, an emptied room stays in memory before it is
    /// left to the store (default one hour, as TurboWarp's server).
    pub fn empty_room_ttl(mut self, ttl: Duration) -> Self {
        self.settings.empty_room_ttl = ttl;
        self
    }

    /// Makes this server a node of a cluster: Scratch projects are shared
    /// with every node of it through Redis, which also keeps their variables
    /// (instead of [`Builder::store`]; see `docs/cluster.md`). [`Builder::build`]
    /// must then run inside a tokio runtime.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cluster = broker::ClusterConfig::new("redis://127.0.0.1:6379/0", "cloudlink")?;
    /// let server = cloudlink::CloudLink::builder().cluster(cluster).build();
    /// # let _ = server;
    /// # Ok(())
    /// # }
    /// ```
    pub fn cluster(mut self, config: ClusterConfig) -> Self {
        self.cluster = Some(config);
        self.store = None;
        self
    }

    /// The server state, ready to serve connections.
    pub fn build(self) -> CloudLink {
        let (cluster, deliveries) = match self.cluster {
            Some(config) => {
                let (cluster, deliveries) = Cluster::join(config);
                (Some(cluster), Some(deliveries))
            }
            None => (None, None),
        };
        let server = CloudLink(Arc::new(Shared {
            settings: self.settings,
            hooks: self.hooks,
            registry: Registry::new(self.store.is_some()),
            cluster,
            store: self.store,
            host_rules: RwLock::new(Arc::new(self.host_rules)),
            metrics: Metrics::default(),
            snowflakes: snowflaked::Builder::new()
                .instance(SNOWFLAKE_INSTANCE)
                .build(),
            next_key: AtomicU64::new(0),
        }));
        if let Some(deliveries) = deliveries {
            tokio::spawn(crate::cluster::follow(
                deliveries,
                Arc::downgrade(&server.0),
            ));
        }
        server
    }
}
