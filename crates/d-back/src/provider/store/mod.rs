//! The shared in-memory source of truth for real data: which Discord servers
//! exist, who is in each, and which OAuth2 client id their login button uses.
//!
//! Every real source writes here: the data file loads into it, the Discord
//! gateway keeps it current, the ingest API and library callers post to it.
//! Each change is recorded first and then, if the [`Hub`] is attached, broadcast
//! to the watchers of that server, so a browser that joins later and one that
//! watched all along see the same world.
//!
//! The store keeps every member, also offline ones, so that the OAuth2 check
//! can ask "is this user a member"; a server's `hide_offline` setting only
//! changes what browsers are shown. The store never talks to sockets and never
//! holds its lock across an `.await`. It does hold it while handing a change to
//! the hub, so that two writers' changes reach browsers in the order they were
//! recorded; this is safe because the hub never calls the store while holding
//! its own lock (it asks the provider before locking).
//!
//! In cluster mode (see `replica`) every change goes through the cluster's log
//! and is applied by every node's store in the log's order, so all of them
//! hold one world; the whole store is kept in Redis too, for nodes that start
//! later.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

mod replica;

use async_trait::async_trait;

use super::oauth::OAuthValidator;
use super::{DataProvider, ProviderError};
use crate::Hub;
use crate::protocol::{
    ChatMessage, DiscordUser, PresenceUpdate, Roster, ServerInfo, ServerList, Snowflake, Status,
    User,
};

/// Colour a user without a coloured role is drawn in.
pub const DEFAULT_ROLE_COLOR: &str = "#ffffff";

/// A Discord server the store does not know; the caller should list it first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no Discord server with snowflake {0} is listed")]
pub struct UnknownServer(pub Snowflake);

/// Settings of one server that are not part of the `server-list` entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerSettings {
    /// Browsers are not shown members who are offline (they appear when they come online).
    pub hide_offline: bool,
}

/// The shared store; cheap to clone, every clone is the same store.
///
/// ```
/// use d_back::provider::Store;
/// use d_back::{DataProvider, PresenceUpdate, ServerInfo, ServerList, Status, User};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = Store::new();
/// let mut list = ServerList::new();
/// list.insert("1000".into(), ServerInfo::new("guild", "My Guild").default_server());
/// store.replace_servers(list);
/// store.replace_users("1000", vec![User::new("7", "alice", Status::Online, "#e91e63")]).unwrap();
/// store.presence("1000", PresenceUpdate::new("7", Status::Idle)).unwrap();
/// assert_eq!(store.users("1000").await.unwrap()["7"].status, Status::Idle);
/// assert!(store.presence("404", PresenceUpdate::new("7", Status::Idle)).is_err());
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Everything browsers may be told, behind one lock so a change is all-or-nothing.
    state: RwLock<State>,
    /// Where changes are broadcast; unset until the server is bound.
    hub: OnceLock<Hub>,
    /// Checks OAuth2 logins against Discord; without it passworded servers stay closed.
    oauth: OnceLock<OAuthValidator>,
    /// The cluster's log and state, in cluster mode.
    replica: OnceLock<replica::Replica>,
}

#[derive(Default)]
struct State {
    servers: ServerList,
    settings: HashMap<Snowflake, ServerSettings>,
    /// Every member of every listed server, offline ones included.
    rosters: HashMap<Snowflake, Roster>,
    /// Client id for servers without their own.
    client_id: Option<String>,
    /// Per-server client ids, which win over `client_id`.
    server_client_ids: HashMap<Snowflake, String>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.read();
        f.debug_struct("Store")
            .field("servers", &state.servers.len())
            .field("hub_attached", &self.inner.hub.get().is_some())
            .finish_non_exhaustive()
    }
}

impl State {
    fn visible(&self, server: &str, user: &User) -> bool {
        !(user.status == Status::Offline
            && self.settings.get(server).is_some_and(|s| s.hide_offline))
    }
}

impl Store {
    /// An empty store: no servers, no users.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Every change is one assignment under the lock, so a panic cannot leave it half-done.
        self.inner.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.inner.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets the store tell watching browsers about changes; call once after
    /// [`bind`](crate::ServerBuilder::bind) with [`RunningServer::hub`](crate::RunningServer::hub).
    /// Later calls are ignored.
    ///
    /// If the hub is a node of a cluster, the store follows the cluster from
    /// now on: it reads the cluster's store from Redis (or, if the cluster
    /// has none yet, puts its own there) before the node reports ready.
    pub fn attach(&self, hub: Hub) {
        let cluster = hub.cluster().cloned();
        if self.inner.hub.set(hub).is_ok()
            && let Some(cluster) = cluster
        {
            replica::follow(self, cluster);
        }
    }

    /// Checks OAuth2 logins for passworded servers with this validator; the first call wins.
    pub fn set_oauth(&self, validator: OAuthValidator) {
        let _ = self.inner.oauth.set(validator);
    }

    /// Replaces the whole server list, keeping the users of servers still listed.
    ///
    /// If no server is marked default, the first one becomes the default.
    pub fn replace_servers(&self, servers: ServerList) {
        self.replace_servers_with_settings(servers, HashMap::new());
    }

    /// Like [`replace_servers`](Self::replace_servers), with per-server settings.
    pub fn replace_servers_with_settings(
        &self,
        mut servers: ServerList,
        settings: HashMap<Snowflake, ServerSettings>,
    ) {
        ensure_default(&mut servers);
        let change = replica::Change::ReplaceServers {
            servers: replica::listed(&servers, &settings),
        };
        self.set_servers(servers, settings);
        self.publish(change);
    }

    fn set_servers(&self, servers: ServerList, settings: HashMap<Snowflake, ServerSettings>) {
        let mut state = self.write();
        state.rosters.retain(|k, _| servers.contains_key(k));
        state
            .server_client_ids
            .retain(|k, _| servers.contains_key(k));
        state.servers = servers;
        state.settings = settings;
    }

    /// Adds a server, or keeps the listed entry if there is one (its public id,
    /// name and password were chosen by the operator and win over `info`).
    ///
    /// Returns the entry now listed.
    pub fn upsert_server(&self, snowflake: &str, info: ServerInfo) -> ServerInfo {
        let listed = self.add_server(snowflake, info.clone());
        self.publish(replica::Change::UpsertServer {
            snowflake: snowflake.to_owned(),
            info: replica::Listed::new(&info, ServerSettings::default()),
        });
        listed
    }

    fn add_server(&self, snowflake: &str, info: ServerInfo) -> ServerInfo {
        let mut state = self.write();
        if let Some(listed) = state.servers.get(snowflake) {
            return listed.clone();
        }
        state.servers.insert(snowflake.to_owned(), info);
        ensure_default(&mut state.servers);
        state.servers[snowflake].clone()
    }

    /// Removes a server and its users.
    pub fn remove_server(&self, snowflake: &str) {
        self.drop_server(snowflake);
        self.publish(replica::Change::RemoveServer {
            snowflake: snowflake.to_owned(),
        });
    }

    fn drop_server(&self, snowflake: &str) {
        let mut state = self.write();
        state.servers.shift_remove(snowflake);
        state.rosters.remove(snowflake);
        ensure_default(&mut state.servers);
    }

    /// The settings of a server (defaults if it has none).
    pub fn settings(&self, snowflake: &str) -> ServerSettings {
        self.read()
            .settings
            .get(snowflake)
            .copied()
            .unwrap_or_default()
    }

    /// Changes the settings of a server.
    pub fn set_settings(&self, snowflake: &str, settings: ServerSettings) {
        self.write().settings.insert(snowflake.to_owned(), settings);
        self.publish(replica::Change::SetSettings {
            snowflake: snowflake.to_owned(),
            settings,
        });
    }

    /// Replaces the users of a server; watchers see who left, who came and who changed.
    pub fn replace_users(
        &self,
        server: &str,
        users: impl IntoIterator<Item = User>,
    ) -> Result<(), UnknownServer> {
        self.known(server)?;
        let users: Vec<User> = users.into_iter().collect();
        let change = replica::Change::ReplaceUsers {
            server: server.to_owned(),
            users,
        };
        self.submit(change);
        Ok(())
    }

    fn set_users(&self, server: &str, users: Vec<User>) -> Result<(), UnknownServer> {
        let roster: Roster = users.into_iter().map(|u| (u.uid.clone(), u)).collect();
        let mut changes = Vec::new();
        {
            let mut state = self.write();
            if !state.servers.contains_key(server) {
                return Err(UnknownServer(server.to_owned()));
            }
            let old = state.rosters.remove(server).unwrap_or_default();
            for (uid, user) in &old {
                if state.visible(server, user)
                    && !roster.get(uid).is_some_and(|u| state.visible(server, u))
                {
                    changes.push(PresenceUpdate::removed(uid));
                }
            }
            for (uid, user) in &roster {
                let shown_before = old.get(uid).filter(|u| state.visible(server, u));
                if state.visible(server, user) && shown_before != Some(user) {
                    changes.push(full_presence(user));
                }
            }
            state.rosters.insert(server.to_owned(), roster);
            if let Some(hub) = self.inner.hub.get() {
                for change in changes {
                    hub.deliver_presence(server, change);
                }
            }
        }
        Ok(())
    }

    /// Records a user's change and tells the watchers; returns how many were reached.
    ///
    /// An update with `username` for an unknown user adds them, `delete` removes
    /// them, and an update without a name for an unknown user is ignored (no
    /// one could draw them).
    ///
    /// In cluster mode the count is of this node's watchers when it was sent.
    pub fn presence(&self, server: &str, update: PresenceUpdate) -> Result<usize, UnknownServer> {
        self.known(server)?;
        let change = replica::Change::Presence {
            server: server.to_owned(),
            update,
        };
        Ok(match self.submit(change) {
            Some(reached) => reached,
            None => self.inner.hub.get().map_or(0, |hub| hub.watchers(server)),
        })
    }

    fn record_presence(
        &self,
        server: &str,
        update: PresenceUpdate,
    ) -> Result<usize, UnknownServer> {
        let mut state = self.write();
        if !state.servers.contains_key(server) {
            return Err(UnknownServer(server.to_owned()));
        }
        let hide_offline = state.settings.get(server).is_some_and(|s| s.hide_offline);
        let roster = state.rosters.entry(server.to_owned()).or_default();
        let shown = apply(roster, update, hide_offline);
        Ok(match (shown, self.inner.hub.get()) {
            (Some(update), Some(hub)) => hub.deliver_presence(server, update),
            _ => 0,
        })
    }

    /// Fails for a server that is not listed.
    fn known(&self, server: &str) -> Result<(), UnknownServer> {
        match self.read().servers.contains_key(server) {
            true => Ok(()),
            false => Err(UnknownServer(server.to_owned())),
        }
    }

    /// Tells the watchers of `server` that someone said something; returns how many were reached.
    pub fn message(&self, server: &str, message: ChatMessage) -> Result<usize, UnknownServer> {
        if !self.read().servers.contains_key(server) {
            return Err(UnknownServer(server.to_owned()));
        }
        Ok(self
            .inner
            .hub
            .get()
            .map_or(0, |hub| hub.broadcast_message(server, message)))
    }

    /// Sets the OAuth2 client id of one server, or of every server without its
    /// own (`server: None`), and tells the watchers of each affected server.
    pub fn set_client_id(
        &self,
        server: Option<&str>,
        client_id: impl Into<String>,
    ) -> Result<(), UnknownServer> {
        if let Some(server) = server {
            self.known(server)?;
        }
        self.submit(replica::Change::ClientId {
            server: server.map(str::to_owned),
            client_id: client_id.into(),
        });
        Ok(())
    }

    fn record_client_id(
        &self,
        server: Option<&str>,
        client_id: String,
    ) -> Result<(), UnknownServer> {
        let mut state = self.write();
        let affected: Vec<Snowflake> = {
            match server {
                Some(server) => {
                    if !state.servers.contains_key(server) {
                        return Err(UnknownServer(server.to_owned()));
                    }
                    state
                        .server_client_ids
                        .insert(server.to_owned(), client_id.clone());
                    vec![server.to_owned()]
                }
                None => {
                    state.client_id = Some(client_id.clone());
                    let own = &state.server_client_ids;
                    state
                        .servers
                        .keys()
                        .filter(|k| !own.contains_key(*k))
                        .cloned()
                        .collect()
                }
            }
        };
        if let Some(hub) = self.inner.hub.get() {
            for server in affected {
                hub.deliver_client_id(&server, &client_id);
            }
        }
        Ok(())
    }

    /// Whether `uid` is a member of `server`, online or not.
    pub fn is_member(&self, server: &str, uid: &str) -> bool {
        self.read()
            .rosters
            .get(server)
            .is_some_and(|roster| roster.contains_key(uid))
    }

    /// Sets a user's name and colour, keeping their status; adds them (offline) if new.
    ///
    /// Nothing is broadcast when neither changed.
    pub fn update_profile(
        &self,
        server: &str,
        uid: &str,
        username: impl Into<String>,
        role_color: impl Into<String>,
    ) -> Result<usize, UnknownServer> {
        let (username, role_color) = (username.into(), role_color.into());
        let known = self
            .read()
            .rosters
            .get(server)
            .and_then(|r| r.get(uid))
            .map(|u| {
                (
                    u.status,
                    u.username == username && u.role_color == role_color,
                )
            });
        let status = match known {
            // Discord reports many changes (avatars, boosts) that d-zone does not draw.
            Some((_, true)) => return Ok(0),
            Some((status, false)) => status,
            None => Status::Offline,
        };
        let update = PresenceUpdate::new(uid, status)
            .with_username(username)
            .with_role_color(role_color);
        self.presence(server, update)
    }

    /// Changes a member's colour if it differs; unknown members are ignored.
    pub fn recolor(&self, server: &str, uid: &str, role_color: String) {
        let current = self
            .read()
            .rosters
            .get(server)
            .and_then(|r| r.get(uid))
            .map(|u| (u.status, u.role_color != role_color));
        if let Some((status, true)) = current {
            let _ = self.presence(
                server,
                PresenceUpdate::new(uid, status).with_role_color(role_color),
            );
        }
    }

    /// Whether a server other than `except` already uses the public id `id`.
    pub fn public_id_taken(&self, id: &str, except: &str) -> bool {
        self.read()
            .servers
            .iter()
            .any(|(snowflake, info)| info.id == id && snowflake != except)
    }

    /// Whether `server` is listed.
    pub fn has_server(&self, server: &str) -> bool {
        self.read().servers.contains_key(server)
    }

    /// How many servers are listed.
    pub fn server_count(&self) -> usize {
        self.read().servers.len()
    }
}

/// A presence that lets a browser draw the user even if it has never seen them.
fn full_presence(user: &User) -> PresenceUpdate {
    PresenceUpdate::new(&user.uid, user.status)
        .with_username(&user.username)
        .with_role_color(&user.role_color)
}

/// Records `update` in `roster` and returns what browsers should be told, if anything.
fn apply(
    roster: &mut Roster,
    update: PresenceUpdate,
    hide_offline: bool,
) -> Option<PresenceUpdate> {
    let shown = |u: &User| !(hide_offline && u.status == Status::Offline);
    if update.delete {
        let user = roster.shift_remove(&update.uid)?;
        return shown(&user).then_some(update);
    }
    match roster.get_mut(&update.uid) {
        Some(user) => {
            let was_shown = shown(user);
            user.status = update.status;
            if let Some(name) = &update.username {
                user.username.clone_from(name);
            }
            if let Some(color) = &update.role_color {
                user.role_color.clone_from(color);
            }
            match (was_shown, shown(user)) {
                (true, true) => Some(update),
                (false, true) => Some(full_presence(user)),
                (true, false) => Some(PresenceUpdate::removed(&user.uid)),
                (false, false) => None,
            }
        }
        None => {
            let name = update.username.clone()?;
            let color = update
                .role_color
                .clone()
                .unwrap_or_else(|| DEFAULT_ROLE_COLOR.to_owned());
            let user = User::new(&update.uid, name, update.status, color);
            let told = shown(&user).then(|| full_presence(&user));
            roster.insert(update.uid, user);
            told
        }
    }
}

/// Marks the first server default when none is, so `default` always resolves.
fn ensure_default(servers: &mut ServerList) {
    if !servers.values().any(|s| s.default)
        && let Some((_, first)) = servers.first_mut()
    {
        first.default = true;
    }
}

#[async_trait]
impl DataProvider for Store {
    async fn servers(&self) -> Result<ServerList, ProviderError> {
        Ok(self.read().servers.clone())
    }

    async fn users(&self, server: &str) -> Result<Roster, ProviderError> {
        let state = self.read();
        Ok(state
            .rosters
            .get(server)
            .map(|roster| {
                roster
                    .iter()
                    .filter(|(_, u)| state.visible(server, u))
                    .map(|(k, u)| (k.clone(), u.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Asks Discord whose token this is; admits only that user, and only if a
    /// member (of the roster, or, asked as the bot, of the Discord guild).
    async fn validate_discord_user(
        &self,
        server: &str,
        token: &str,
        user: &DiscordUser,
    ) -> Result<bool, ProviderError> {
        let Some(oauth) = self.inner.oauth.get() else {
            return Ok(false);
        };
        let owner = oauth.token_owner(token).await?;
        if owner != user.id {
            return Ok(false);
        }
        if self.is_member(server, &owner) {
            return Ok(true);
        }
        // Not in the roster (yet): a large guild's members arrive after the bot connects.
        oauth.is_guild_member(server, &owner).await
    }

    async fn client_id(&self, server: &str) -> Result<Option<String>, ProviderError> {
        let state = self.read();
        Ok(state
            .server_client_ids
            .get(server)
            .or(state.client_id.as_ref())
            .cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_one_server(hide_offline: bool) -> Store {
        let store = Store::new();
        let mut list = ServerList::new();
        list.insert("1".into(), ServerInfo::new("one", "One"));
        store.replace_servers(list);
        store.set_settings("1", ServerSettings { hide_offline });
        store
    }

    #[tokio::test]
    async fn the_first_server_becomes_default() {
        let store = store_with_one_server(false);
        assert!(store.servers().await.unwrap()["1"].default);
    }

    #[tokio::test]
    async fn hidden_offline_members_still_count_as_members() {
        let store = store_with_one_server(true);
        store
            .replace_users("1", [User::new("7", "a", Status::Offline, "#000000")])
            .unwrap();
        assert!(store.users("1").await.unwrap().is_empty());
        assert!(store.is_member("1", "7"));
        store
            .presence("1", PresenceUpdate::new("7", Status::Online))
            .unwrap();
        assert_eq!(store.users("1").await.unwrap()["7"].username, "a");
    }

    #[test]
    fn hiding_offline_turns_changes_into_arrivals_and_departures() {
        let mut roster = Roster::new();
        let came = apply(
            &mut roster,
            PresenceUpdate::new("7", Status::Offline).with_username("a"),
            true,
        );
        assert_eq!(came, None);
        let online = apply(&mut roster, PresenceUpdate::new("7", Status::Online), true).unwrap();
        assert_eq!(online.username.as_deref(), Some("a"));
        let gone = apply(&mut roster, PresenceUpdate::new("7", Status::Offline), true).unwrap();
        assert!(gone.delete);
        assert_eq!(
            apply(&mut roster, PresenceUpdate::new("8", Status::Online), true),
            None
        );
    }
}
