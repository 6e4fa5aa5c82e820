//! The truth about every watched Discord server, and the fan-out of its events.
//!
//! For each Discord server that at least one connection watches, the hub keeps
//! the roster with current statuses, the OAuth2 client id, its recent chat
//! lines (a [`Feed`]) and the outboxes of its watchers. A broadcast updates that
//! state and encodes the frame once. A chat line is appended to the feed, which
//! every watcher's writer reads from; any other frame is pushed, as a cheap
//! clone of the bytes, into each watcher's bounded outbox. Nothing here ever
//! waits on a socket, so a stalled browser cannot slow a broadcast.
//!
//! A server's state is loaded from the [`DataProvider`] when its first watcher
//! arrives and dropped when its last watcher leaves, so memory follows what is
//! being watched. Broadcasts for servers nobody watches are counted and
//! otherwise ignored: the provider remains the source of truth for them.
//!
//! One `std::sync::Mutex` guards all servers. It is never held across an
//! `.await`, and a broadcast holds it only for the pushes, which are pointer
//! moves; this keeps the join/leave/broadcast ordering obvious.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::task::AbortHandle;

use crate::cluster::{Change, Cluster};
use crate::protocol::{
    ChatMessage, ClientIdData, JoinRequestEcho, Outgoing, PresenceUpdate, Roster, ServerInfo,
    ServerJoin, Snowflake, User,
};
use crate::provider::{DataProvider, ProviderError};
use edge::feed::Feed;
use edge::outbox::{Frame, Outbox, Pushed, Urgency};
use edge::ws::{self, Wire};

/// How long a provider may take to answer before the client is told it failed.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// Outbox key under which `update-clientid` frames collapse.
const CLIENT_ID_KEY: &str = "\0client-id";

/// Cheap-to-clone handle to the server's shared state; usable from any task.
///
/// Sources of live data (the built-in simulator, a Discord connection, your own
/// bot code) call its `broadcast_*` methods. They never block on clients.
///
/// ```
/// use d_back::{ChatMessage, PresenceUpdate, Server, Status};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), d_back::StartError> {
/// let server = Server::builder().host("127.0.0.1").port(0).bind().await?;
/// let hub = server.hub();
/// let reached = hub.broadcast_presence("232769614004748288", PresenceUpdate::new("123456789012345001", Status::Idle));
/// assert_eq!(reached, 0, "nobody is watching yet");
/// hub.broadcast_message("232769614004748288", ChatMessage {
///     uid: "123456789012345001".into(),
///     message: "hello".into(),
///     channel: "1".into(),
/// });
/// assert_eq!(hub.connections(), 0);
/// server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

struct HubInner {
    /// Answers the questions the hub cannot: who exists, who is in a server.
    provider: Arc<dyn DataProvider>,
    /// Watched Discord servers by snowflake.
    guilds: Mutex<HashMap<Snowflake, Guild>>,
    /// Servers whose roster a first watcher is fetching, with the number of
    /// changes broadcast for them meanwhile. Locked only while `guilds` is held.
    loading: Mutex<HashMap<Snowflake, Loading>>,
    /// Open WebSocket connections, joined or not.
    connections: AtomicUsize,
    /// Source of connection ids, which key the watcher maps.
    next_connection: AtomicU64,
    /// Event counters, for operators.
    stats: Stats,
    /// Chat lines each server's feed keeps for watchers that lag behind.
    chat_backlog: usize,
    /// The cluster this node belongs to, in cluster mode.
    cluster: OnceLock<Cluster>,
}

/// A roster fetch in progress for a server nobody watches yet.
#[derive(Debug, Default)]
struct Loading {
    /// Joins currently fetching it.
    fetchers: usize,
    /// Presence and client-id broadcasts seen since fetching began.
    changes: u64,
}

/// How often a first join fetches again when changes keep arriving during the fetch.
const LOAD_ATTEMPTS: usize = 3;

/// Running totals since the server started.
#[derive(Debug, Default)]
struct Stats {
    broadcasts: AtomicU64,
    frames_queued: AtomicU64,
    frames_dropped: AtomicU64,
    /// Clients closed because their outbox overflowed with frames that could
    /// neither be dropped, merged nor replaced by a fresh `server-join`.
    overflowed_clients_closed: AtomicU64,
    /// Clients closed because they stopped reading altogether.
    stalled_clients_closed: AtomicU64,
    /// Clients so far behind that a fresh `server-join` replaced their queue.
    resynchronised: AtomicU64,
}

/// Totals since the server started, for dashboards and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HubStats {
    /// Broadcasts made, whether or not anyone watched.
    pub broadcasts: u64,
    /// Broadcast frames handed to watchers: queued in their outboxes, or chat lines in their server's feed.
    pub frames_queued: u64,
    /// Chat lines (and superseded presences) not delivered to clients that were behind.
    pub frames_dropped: u64,
    /// Connections closed because they could not keep up: they stopped
    /// reading (`stalled`), or flooded their own queue (`overflowed`).
    pub slow_clients_closed: u64,
    /// Of those, the ones that stopped reading altogether.
    pub stalled_clients_closed: u64,
    /// Watchers so far behind that their queued presences were replaced by a
    /// fresh `server-join` (they stay connected and end up where everyone is).
    pub resynchronised: u64,
}

/// One watched Discord server.
struct Guild {
    /// Current users and statuses; what a new watcher's `server-join` shows.
    roster: Roster,
    /// OAuth2 application id for this server's login button.
    client_id: Option<String>,
    /// Recent chat lines, shared by all watchers.
    feed: Arc<Feed>,
    /// The server's name as the last joiner was told it (for resynchronising).
    name: String,
    /// The connections watching, by connection id.
    watchers: HashMap<u64, Watcher>,
    /// The provider's activity for this server, stopped with the last watcher.
    activity: Option<AbortHandle>,
}

impl Drop for Guild {
    fn drop(&mut self) {
        if let Some(activity) = self.activity.take() {
            activity.abort();
        }
    }
}

/// One connection watching a server.
struct Watcher {
    outbox: Arc<Outbox>,
    /// The server id the client asked for (`"default"`, say), echoed in a
    /// `server-join` that resynchronises it.
    requested: Box<str>,
}

/// Counts a connection while it lives.
pub(crate) struct ConnectionGuard {
    hub: Hub,
    /// This connection's id in watcher maps.
    pub id: u64,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.hub.inner.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Hub {
    /// A hub whose servers keep their last `chat_backlog` chat lines for
    /// watchers that fall behind.
    pub(crate) fn new(provider: Arc<dyn DataProvider>, chat_backlog: usize) -> Self {
        Self {
            inner: Arc::new(HubInner {
                provider,
                guilds: Mutex::new(HashMap::new()),
                loading: Mutex::new(HashMap::new()),
                connections: AtomicUsize::new(0),
                next_connection: AtomicU64::new(1),
                stats: Stats::default(),
                chat_backlog,
                cluster: OnceLock::new(),
            }),
        }
    }

    fn guilds(&self) -> MutexGuard<'_, HashMap<Snowflake, Guild>> {
        // A panic elsewhere never leaves a guild half-updated (every update is a
        // single map operation), so a poisoned lock is safe to keep using.
        self.inner.guilds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes this hub a node of the cluster: from now on its broadcasts go
    /// through the cluster's log (see [`crate::cluster`]).
    pub(crate) fn join_cluster(&self, config: broker::ClusterConfig) {
        let hub: Weak<HubInner> = Arc::downgrade(&self.inner);
        let cluster = Cluster::join(config, move |change| {
            if let Some(inner) = hub.upgrade() {
                Hub { inner }.apply_cluster_change(change);
            }
        });
        let _ = self.inner.cluster.set(cluster);
    }

    /// Applies a broadcast that came through the cluster's log.
    fn apply_cluster_change(&self, change: Change) {
        match change {
            Change::Presence { server, update } => {
                self.deliver_presence(&server, update);
            }
            Change::Message { server, message } => {
                self.deliver_message(&server, message);
            }
            Change::ClientId { server, client_id } => {
                self.deliver_client_id(&server, &client_id);
            }
            Change::Store { .. } => unreachable!("the cluster hands store changes to the store"),
        }
    }

    /// The cluster link, in cluster mode.
    pub(crate) fn cluster(&self) -> Option<&Cluster> {
        self.inner.cluster.get()
    }

    pub(crate) fn provider(&self) -> &Arc<dyn DataProvider> {
        &self.inner.provider
    }

    pub(crate) fn open_connection(&self) -> ConnectionGuard {
        self.inner.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard {
            hub: self.clone(),
            id: self.inner.next_connection.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Sends a user's presence change to everyone watching `server` and records it
    /// in the roster; returns how many connections it was queued for.
    ///
    /// A presence with `username` for an unknown user adds them; `delete` removes them.
    /// A removal or a change without a name for a user not in the roster is
    /// sent to no one (a d-zone client would draw a nameless actor for it).
    ///
    /// In cluster mode the change goes to every node through the cluster's
    /// log, and the count is of this node's watchers when it was sent.
    pub fn broadcast_presence(&self, server: &str, update: PresenceUpdate) -> usize {
        match self.cluster() {
            Some(cluster) if cluster.presence(server, &update) => self.watchers(server),
            _ => self.deliver_presence(server, update),
        }
    }

    /// Applies a presence on this node: the roster, and its watchers' outboxes.
    pub(crate) fn deliver_presence(&self, server: &str, update: PresenceUpdate) -> usize {
        let text = Outgoing::Presence {
            server,
            data: &update,
        }
        .encode();
        let frame = Frame {
            urgency: Urgency::Collapsible(Arc::from(update.uid.as_str())),
            wire: ws::text_frame(&text),
        };
        let mut guilds = self.guilds();
        let Some(guild) = guilds.get_mut(server) else {
            self.note_change_while_loading(server);
            self.count_broadcast(0);
            return 0;
        };
        // A client given a removal, or a nameless change, for a user it does
        // not know draws a nameless actor for it: such an update changes
        // nothing anyone should see, so it goes to no one.
        if !guild.roster.contains_key(&update.uid) && (update.delete || update.username.is_none()) {
            return self.count_broadcast(0);
        }
        apply_presence(&mut guild.roster, update);
        self.fan_out(guild, frame)
    }

    /// Sends a chat line to everyone watching `server`; returns how many it was queued for.
    pub fn broadcast_message(&self, server: &str, message: ChatMessage) -> usize {
        match self.cluster() {
            Some(cluster) if cluster.message(server, &message) => self.watchers(server),
            _ => self.deliver_message(server, message),
        }
    }

    /// Appends a chat line to this node's feed of `server`.
    pub(crate) fn deliver_message(&self, server: &str, message: ChatMessage) -> usize {
        let text = Outgoing::Message {
            server,
            data: &message,
        }
        .encode();
        let line = ws::text_frame(&text);
        match self.guilds().get(server) {
            Some(guild) => self.publish_chat(guild, line),
            None => self.count_broadcast(0),
        }
    }

    /// Changes the OAuth2 client id of `server` and tells its watchers.
    pub fn broadcast_client_id(&self, server: &str, client_id: &str) -> usize {
        match self.cluster() {
            Some(cluster) if cluster.client_id(server, client_id) => self.watchers(server),
            _ => self.deliver_client_id(server, client_id),
        }
    }

    /// Changes the client id on this node and tells its watchers.
    pub(crate) fn deliver_client_id(&self, server: &str, client_id: &str) -> usize {
        let text = Outgoing::UpdateClientId {
            server,
            data: ClientIdData { client_id },
        }
        .encode();
        let frame = Frame {
            urgency: Urgency::Collapsible(Arc::from(CLIENT_ID_KEY)),
            wire: ws::text_frame(&text),
        };
        let mut guilds = self.guilds();
        match guilds.get_mut(server) {
            Some(guild) => {
                guild.client_id = Some(client_id.to_owned());
                self.fan_out(guild, frame)
            }
            None => {
                self.note_change_while_loading(server);
                self.count_broadcast(0)
            }
        }
    }

    /// Open WebSocket connections, joined to a server or not.
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Connections currently watching `server` (by snowflake).
    pub fn watchers(&self, server: &str) -> usize {
        self.guilds().get(server).map_or(0, |g| g.watchers.len())
    }

    /// Snowflakes of the servers at least one connection watches.
    pub fn watched_servers(&self) -> Vec<Snowflake> {
        self.guilds().keys().cloned().collect()
    }

    /// The current roster of a watched server, or `None` if nobody watches it.
    pub fn roster(&self, server: &str) -> Option<Roster> {
        self.guilds().get(server).map(|g| g.roster.clone())
    }

    /// User ids in a watched server's roster (empty if nobody watches it).
    pub fn member_ids(&self, server: &str) -> Vec<String> {
        self.guilds()
            .get(server)
            .map(|g| g.roster.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Totals since the server started.
    pub fn stats(&self) -> HubStats {
        let s = &self.inner.stats;
        HubStats {
            broadcasts: s.broadcasts.load(Ordering::Relaxed),
            frames_queued: s.frames_queued.load(Ordering::Relaxed),
            frames_dropped: s.frames_dropped.load(Ordering::Relaxed),
            slow_clients_closed: s.overflowed_clients_closed.load(Ordering::Relaxed)
                + s.stalled_clients_closed.load(Ordering::Relaxed),
            stalled_clients_closed: s.stalled_clients_closed.load(Ordering::Relaxed),
            resynchronised: s.resynchronised.load(Ordering::Relaxed),
        }
    }

    /// Counts a client dropped because it stopped reading.
    pub(crate) fn count_stalled_client(&self) {
        self.inner
            .stats
            .stalled_clients_closed
            .fetch_add(1, Ordering::Relaxed);
    }

    fn count_broadcast(&self, reached: usize) -> usize {
        self.inner.stats.broadcasts.fetch_add(1, Ordering::Relaxed);
        reached
    }

    /// Queues `frame` for every watcher of `guild`. A watcher so far behind
    /// that its outbox is full gets a fresh `server-join` instead of its queued
    /// presences, built from the roster that already includes this change.
    fn fan_out(&self, guild: &Guild, frame: Frame) -> usize {
        let (mut queued, mut dropped, mut overflowed, mut resynchronised) = (0u64, 0, 0, 0);
        for watcher in guild.watchers.values() {
            let snapshot = || join_frame(guild, &watcher.requested);
            match watcher
                .outbox
                .push_or_resynchronise(frame.clone(), snapshot)
            {
                Pushed::Queued => queued += 1,
                Pushed::Collapsed => {
                    queued += 1;
                    dropped += 1;
                }
                Pushed::Resynchronised => {
                    queued += 1;
                    resynchronised += 1;
                }
                Pushed::Dropped => dropped += 1,
                Pushed::Overflowed => overflowed += 1,
            }
        }
        if resynchronised > 0 {
            self.inner
                .stats
                .resynchronised
                .fetch_add(resynchronised, Ordering::Relaxed);
        }
        self.record_broadcast(queued, dropped, overflowed)
    }

    /// Appends a chat line to the server's feed and wakes the watchers waiting
    /// for work; counts the watchers the line it pushed out never reached.
    fn publish_chat(&self, guild: &Guild, line: Wire) -> usize {
        let evicted = guild.feed.publish(line);
        let mut missed = 0u64;
        for Watcher { outbox, .. } in guild.watchers.values() {
            if evicted.is_some_and(|position| outbox.missed(position)) {
                missed += 1;
            }
            outbox.nudge();
        }
        self.record_broadcast(guild.watchers.len() as u64, missed, 0)
    }

    /// Adds one broadcast to the totals: frames handed to watchers, frames
    /// some watcher will never get, and watchers closed for being too slow.
    /// Returns how many watchers the broadcast reached.
    fn record_broadcast(&self, queued: u64, dropped: u64, overflowed: u64) -> usize {
        let stats = &self.inner.stats;
        stats.frames_queued.fetch_add(queued, Ordering::Relaxed);
        stats.frames_dropped.fetch_add(dropped, Ordering::Relaxed);
        stats
            .overflowed_clients_closed
            .fetch_add(overflowed, Ordering::Relaxed);
        self.count_broadcast(queued as usize)
    }

    /// Makes `connection` a watcher of `server` and queues its `server-join`.
    ///
    /// The roster is loaded from the provider if nobody watched the server yet.
    /// The `server-join` is queued under the same lock that registers the
    /// watcher, so the client sees the roster first and then every later change.
    pub(crate) async fn join(
        &self,
        connection: u64,
        outbox: &Arc<Outbox>,
        server: &str,
        info: &ServerInfo,
        requested: &str,
    ) -> Result<(), ProviderError> {
        let mut guilds = self.load(server).await?;
        let guild = guilds
            .get_mut(server)
            .expect("load returns with the server in the map");
        guild.name.clone_from(&info.name);
        outbox.push(join_frame(guild, requested));
        outbox.follow(guild.feed.clone());
        guild.watchers.insert(
            connection,
            Watcher {
                outbox: Arc::clone(outbox),
                requested: requested.into(),
            },
        );
        if guild.activity.is_none()
            && let Some(work) = self.provider().activity(server, self.clone())
        {
            guild.activity = Some(tokio::spawn(work).abort_handle());
        }
        Ok(())
    }

    /// Makes sure `server` has a state, fetching its roster if nobody watches it
    /// yet, and returns the locked map with it inside.
    ///
    /// A change broadcast while the roster is being fetched is not in the
    /// fetched copy and cannot be applied to it, so such a fetch is repeated
    /// (at most [`LOAD_ATTEMPTS`] times). Changes are recorded and the state is
    /// inserted under the `guilds` lock, so nothing slips in between.
    async fn load(
        &self,
        server: &str,
    ) -> Result<MutexGuard<'_, HashMap<Snowflake, Guild>>, ProviderError> {
        for attempt in 1..=LOAD_ATTEMPTS {
            let changes_before = {
                let guilds = self.guilds();
                if guilds.contains_key(server) {
                    return Ok(guilds);
                }
                let mut loading = self.loading_mut();
                let entry = loading.entry(server.to_owned()).or_default();
                entry.fetchers += 1;
                entry.changes
            };
            let provider = self.provider();
            let fetched = async {
                let mut roster = call_provider(provider.users(server)).await?;
                let mut client_id = call_provider(provider.client_id(server)).await?;
                if let Some(cluster) = self.cluster().filter(|c| !c.follows_store()) {
                    overlay(cluster, server, &mut roster, &mut client_id).await;
                }
                Ok::<_, ProviderError>((roster, client_id))
            }
            .await;
            let mut guilds = self.guilds();
            let changed_meanwhile = self.finish_fetch(server) != changes_before;
            let (roster, client_id) = fetched?;
            if guilds.contains_key(server) {
                return Ok(guilds);
            }
            if changed_meanwhile && attempt < LOAD_ATTEMPTS {
                continue;
            }
            guilds.insert(
                server.to_owned(),
                Guild {
                    roster,
                    client_id,
                    feed: Arc::new(Feed::new(self.inner.chat_backlog)),
                    name: String::new(),
                    watchers: HashMap::new(),
                    activity: None,
                },
            );
            return Ok(guilds);
        }
        unreachable!("the last attempt always returns")
    }

    fn loading_mut(&self) -> MutexGuard<'_, HashMap<Snowflake, Loading>> {
        self.inner.loading.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a change to a server that is not loaded, in case a join is fetching it.
    /// Called with the `guilds` lock held.
    fn note_change_while_loading(&self, server: &str) {
        if let Some(loading) = self.loading_mut().get_mut(server) {
            loading.changes += 1;
        }
    }

    /// Ends one fetch of `server`; returns the change count, to compare with its start.
    /// Called with the `guilds` lock held.
    fn finish_fetch(&self, server: &str) -> u64 {
        let mut loading = self.loading_mut();
        let Some(entry) = loading.get_mut(server) else {
            return 0;
        };
        let changes = entry.changes;
        entry.fetchers -= 1;
        if entry.fetchers == 0 {
            loading.remove(server);
        }
        changes
    }

    /// Stops `connection` watching `server`; the last watcher out unloads it.
    pub(crate) fn leave(&self, connection: u64, server: &str) {
        let mut guilds = self.guilds();
        if let Some(guild) = guilds.get_mut(server) {
            if let Some(watcher) = guild.watchers.remove(&connection) {
                watcher.outbox.unfollow();
            }
            if guild.watchers.is_empty() {
                guilds.remove(server);
            }
        }
    }

    /// Stops every server's activity and forgets all state (server shutdown).
    pub(crate) fn clear(&self) {
        self.guilds().clear();
    }
}

/// Lays the cluster's latest state of `server` (what hubs' broadcasts left in
/// Redis) over what the provider gave; if Redis does not answer, the
/// provider's answer stands.
async fn overlay(
    cluster: &Cluster,
    server: &str,
    roster: &mut Roster,
    client_id: &mut Option<String>,
) {
    match cluster.roster_state(server).await {
        Ok(updates) => updates
            .into_iter()
            .for_each(|update| apply_presence(roster, update)),
        Err(error) => {
            tracing::warn!(server, %error, "cluster: roster state unavailable; using the provider's")
        }
    }
    match cluster.client_id_state(server).await {
        Ok(Some(id)) => *client_id = Some(id),
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(server, %error, "cluster: client id unavailable; using the provider's")
        }
    }
}

/// The `server-join` that shows `guild` as it is now to a client that asked for
/// `requested`; a snapshot, so it can replace a slow client's queued presences.
fn join_frame(guild: &Guild, requested: &str) -> Frame {
    let text = Outgoing::ServerJoin {
        data: ServerJoin {
            users: &guild.roster,
            request: JoinRequestEcho { server: requested },
            server_name: &guild.name,
            client_id: guild.client_id.as_deref(),
        },
    }
    .encode();
    Frame {
        urgency: Urgency::Snapshot,
        wire: ws::text_frame(&text),
    }
}

/// Merges two queued presence frames for one user (see
/// [`PresenceUpdate::merged_with`]) when a slow client's outbox collapses
/// them; other frames (client ids) are simply replaced.
pub(crate) fn merge_presence_frames(older: &Wire, newer: &Wire) -> Option<Wire> {
    #[derive(serde::Deserialize)]
    struct PresenceFrame {
        server: String,
        data: PresenceUpdate,
    }
    let decode = |wire: &Wire| {
        let payload = ws::server_frame_payload(wire)?;
        serde_json::from_slice::<PresenceFrame>(payload).ok()
    };
    let (older, newer) = (decode(older)?, decode(newer)?);
    let text = Outgoing::Presence {
        server: &newer.server,
        data: &older.data.merged_with(newer.data),
    }
    .encode();
    Some(ws::text_frame(&text))
}

/// Records a presence change in a roster, as the client would apply it.
fn apply_presence(roster: &mut Roster, update: PresenceUpdate) {
    if update.delete {
        roster.shift_remove(&update.uid);
        return;
    }
    match roster.get_mut(&update.uid) {
        Some(user) => {
            user.status = update.status;
            if let Some(name) = update.username {
                user.username = name;
            }
            if let Some(color) = update.role_color {
                user.role_color = color;
            }
        }
        // The client cannot draw a user without a name, so neither do we.
        None => {
            if let Some(name) = update.username {
                let color = update.role_color.unwrap_or_else(|| "#ffffff".to_owned());
                let user = User::new(update.uid.clone(), name, update.status, color);
                roster.insert(update.uid, user);
            }
        }
    }
}

/// Runs a provider call with a time limit, turning a panic into an error.
pub(crate) async fn call_provider<T>(
    call: impl Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    match tokio::time::timeout(PROVIDER_TIMEOUT, AssertUnwindSafe(call).catch_unwind()).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(ProviderError::new(format!(
                "the data provider panicked: {what}"
            )))
        }
        Err(_) => Err(ProviderError::new(format!(
            "the data provider did not answer within {} s",
            PROVIDER_TIMEOUT.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Status;

    #[test]
    fn presence_updates_the_roster_like_the_client_does() {
        let mut roster = Roster::new();
        roster.insert("1".into(), User::new("1", "a", Status::Online, "#000000"));
        apply_presence(&mut roster, PresenceUpdate::new("1", Status::Dnd));
        assert_eq!(roster["1"].status, Status::Dnd);
        apply_presence(&mut roster, PresenceUpdate::new("2", Status::Online));
        assert_eq!(roster.len(), 1, "a nameless unknown user is not drawn");
        apply_presence(
            &mut roster,
            PresenceUpdate::new("2", Status::Idle).with_username("b"),
        );
        assert_eq!(roster["2"].role_color, "#ffffff");
        apply_presence(&mut roster, PresenceUpdate::removed("1"));
        assert!(!roster.contains_key("1"));
    }
}
