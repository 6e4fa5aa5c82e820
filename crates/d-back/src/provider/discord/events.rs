//! What Discord's dispatch events mean for d-zone: guilds become servers,
//! members become actors, presences become statuses, messages become bubbles.
//!
//! The [`Mapper`] reads the JSON payload of each dispatch it cares about and
//! writes the result into the [`Store`] (which tells the watching browsers). It
//! keeps just enough of each guild to colour its members: the roles and which
//! member holds which. It never talks to the gateway itself; when it needs
//! something from Discord it returns the request for the connection to send.

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::protocol::{ChatMessage, PresenceUpdate, ServerInfo, Status, User};
use crate::provider::store::{DEFAULT_ROLE_COLOR, Store};

/// Gateway opcode for asking for a guild's members (`REQUEST_GUILD_MEMBERS`).
const OP_REQUEST_MEMBERS: u8 = 8;

#[derive(Deserialize)]
struct Guild {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    roles: Vec<Role>,
    #[serde(default)]
    members: Vec<Member>,
    #[serde(default)]
    presences: Vec<Presence>,
    /// Discord sends only part of the members of large guilds in `GUILD_CREATE`.
    #[serde(default)]
    large: bool,
    #[serde(default)]
    unavailable: Option<bool>,
}

#[derive(Deserialize)]
struct Role {
    id: String,
    #[serde(default)]
    color: u32,
    #[serde(default)]
    position: i64,
}

#[derive(Deserialize)]
struct Member {
    user: Option<DiscordUser>,
    #[serde(default)]
    nick: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Deserialize)]
struct DiscordUser {
    id: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    global_name: Option<String>,
    #[serde(default)]
    bot: bool,
}

#[derive(Deserialize)]
struct UserId {
    id: String,
}

#[derive(Deserialize)]
struct Presence {
    user: UserId,
    #[serde(default)]
    guild_id: Option<String>,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
struct MemberEvent {
    guild_id: String,
    #[serde(flatten)]
    member: Member,
}

#[derive(Deserialize)]
struct MemberRemove {
    guild_id: String,
    user: UserId,
}

#[derive(Deserialize)]
struct MembersChunk {
    guild_id: String,
    #[serde(default)]
    members: Vec<Member>,
    #[serde(default)]
    presences: Vec<Presence>,
}

#[derive(Deserialize)]
struct RoleEvent {
    guild_id: String,
    role: Role,
}

#[derive(Deserialize)]
struct RoleDelete {
    guild_id: String,
    role_id: String,
}

#[derive(Deserialize)]
struct MessageCreate {
    #[serde(default)]
    guild_id: Option<String>,
    channel_id: String,
    author: DiscordUser,
    #[serde(default)]
    content: String,
    #[serde(default)]
    webhook_id: Option<String>,
}

/// What the mapper remembers of a guild to colour its members.
#[derive(Default)]
struct GuildCache {
    /// Role id → (colour, position); colour 0 means "no colour".
    roles: HashMap<String, (u32, i64)>,
    /// Member id → their role ids.
    member_roles: HashMap<String, Vec<String>>,
}

/// A guild's roles by id, with the colour and position that decide a member's colour.
fn role_table(roles: &[Role]) -> HashMap<String, (u32, i64)> {
    roles
        .iter()
        .map(|r| (r.id.clone(), (r.color, r.position)))
        .collect()
}

impl GuildCache {
    /// Remembers each member's roles and returns the members as users, with
    /// their status from `presences` (offline when Discord sent none).
    fn remember(&mut self, members: &[Member], presences: &[Presence]) -> Vec<User> {
        let statuses: HashMap<&str, Status> = presences
            .iter()
            .map(|p| (p.user.id.as_str(), status(&p.status)))
            .collect();
        let mut users = Vec::with_capacity(members.len());
        for member in members {
            let Some(user) = &member.user else { continue };
            self.member_roles
                .insert(user.id.clone(), member.roles.clone());
            let status = statuses
                .get(user.id.as_str())
                .copied()
                .unwrap_or(Status::Offline);
            users.push(User::new(
                &user.id,
                display_name(member, user),
                status,
                self.color(&member.roles),
            ));
        }
        users
    }

    /// `#rrggbb` of the member's highest coloured role, else white.
    fn color(&self, roles: &[String]) -> String {
        roles
            .iter()
            .filter_map(|id| self.roles.get(id))
            .filter(|(color, _)| *color != 0)
            .max_by_key(|(_, position)| *position)
            .map_or_else(
                || DEFAULT_ROLE_COLOR.to_owned(),
                |(color, _)| format!("#{color:06x}"),
            )
    }
}

/// Turns dispatch events into store changes.
pub(super) struct Mapper {
    store: Store,
    guilds: HashMap<String, GuildCache>,
}

impl Mapper {
    pub(super) fn new(store: Store) -> Self {
        Self {
            store,
            guilds: HashMap::new(),
        }
    }

    /// Applies one dispatch; returns gateway payloads to send in reply, if any.
    pub(super) fn dispatch(&mut self, kind: &str, data: Value) -> Vec<Value> {
        match kind {
            "GUILD_CREATE" => {
                return parse(kind, data, |g| self.guild_create(g)).unwrap_or_default();
            }
            "GUILD_UPDATE" => {
                parse(kind, data, |g: Guild| self.guild_update(g));
            }
            "GUILD_DELETE" => {
                parse(kind, data, |g: Guild| {
                    if g.unavailable != Some(true) {
                        info!(guild = %g.id, "the bot left a guild; it is no longer listed");
                        self.guilds.remove(&g.id);
                        self.store.remove_server(&g.id);
                    }
                });
            }
            "GUILD_MEMBERS_CHUNK" => {
                parse(kind, data, |c: MembersChunk| self.members_chunk(c));
            }
            "GUILD_MEMBER_ADD" | "GUILD_MEMBER_UPDATE" => {
                parse(kind, data, |e: MemberEvent| self.member_changed(e));
            }
            "GUILD_MEMBER_REMOVE" => {
                parse(kind, data, |e: MemberRemove| {
                    if let Some(cache) = self.guilds.get_mut(&e.guild_id) {
                        cache.member_roles.remove(&e.user.id);
                    }
                    let _ = self
                        .store
                        .presence(&e.guild_id, PresenceUpdate::removed(e.user.id));
                });
            }
            "PRESENCE_UPDATE" => {
                parse(kind, data, |p: Presence| {
                    if let Some(guild) = &p.guild_id
                        && self.store.is_member(guild, &p.user.id)
                    {
                        let update = PresenceUpdate::new(p.user.id, status(&p.status));
                        let _ = self.store.presence(guild, update);
                    }
                });
            }
            "MESSAGE_CREATE" => {
                parse(kind, data, |m: MessageCreate| self.message(m));
            }
            "GUILD_ROLE_CREATE" | "GUILD_ROLE_UPDATE" => {
                parse(kind, data, |e: RoleEvent| {
                    let cache = self.guilds.entry(e.guild_id.clone()).or_default();
                    cache
                        .roles
                        .insert(e.role.id, (e.role.color, e.role.position));
                    self.recolor(&e.guild_id);
                });
            }
            "GUILD_ROLE_DELETE" => {
                parse(kind, data, |e: RoleDelete| {
                    if let Some(cache) = self.guilds.get_mut(&e.guild_id) {
                        cache.roles.remove(&e.role_id);
                    }
                    self.recolor(&e.guild_id);
                });
            }
            _ => debug!(kind, "dispatch ignored"),
        }
        Vec::new()
    }

    fn guild_create(&mut self, guild: Guild) -> Vec<Value> {
        if guild.unavailable == Some(true) {
            return Vec::new();
        }
        let listed = self.list_guild(&guild.id, &guild.name);
        let cache = self.guilds.entry(guild.id.clone()).or_default();
        cache.roles = role_table(&guild.roles);
        let users = cache.remember(&guild.members, &guild.presences);
        info!(
            guild = %guild.id,
            id = %listed.id,
            members = users.len(),
            "Discord guild available"
        );
        let _ = self.store.replace_users(&guild.id, users);
        if guild.large {
            // Only part of a large guild's members came along; ask for the rest.
            vec![json!({
                "op": OP_REQUEST_MEMBERS,
                "d": {"guild_id": guild.id, "query": "", "limit": 0, "presences": true}
            })]
        } else {
            Vec::new()
        }
    }

    /// Lists a guild under a default entry unless the operator listed it already.
    fn list_guild(&self, snowflake: &str, name: &str) -> ServerInfo {
        let mut id = slug(name);
        if id.is_empty() || self.store.public_id_taken(&id, snowflake) {
            id = snowflake.to_owned();
        }
        let name = if name.is_empty() { snowflake } else { name };
        self.store
            .upsert_server(snowflake, ServerInfo::new(id, name))
    }

    fn guild_update(&mut self, guild: Guild) {
        let cache = self.guilds.entry(guild.id.clone()).or_default();
        if !guild.roles.is_empty() {
            cache.roles = role_table(&guild.roles);
        }
        self.recolor(&guild.id);
    }

    fn members_chunk(&mut self, chunk: MembersChunk) {
        let cache = self.guilds.entry(chunk.guild_id.clone()).or_default();
        for user in cache.remember(&chunk.members, &chunk.presences) {
            let update = PresenceUpdate::new(user.uid, user.status)
                .with_username(user.username)
                .with_role_color(user.role_color);
            let _ = self.store.presence(&chunk.guild_id, update);
        }
    }

    /// A member joined, or changed nickname or roles: broadcast with name and colour.
    fn member_changed(&mut self, event: MemberEvent) {
        let Some(user) = &event.member.user else {
            return;
        };
        let cache = self.guilds.entry(event.guild_id.clone()).or_default();
        cache
            .member_roles
            .insert(user.id.clone(), event.member.roles.clone());
        let name = display_name(&event.member, user);
        let color = cache.color(&event.member.roles);
        let _ = self
            .store
            .update_profile(&event.guild_id, &user.id, name, color);
    }

    fn message(&mut self, message: MessageCreate) {
        let Some(guild) = message.guild_id else {
            return; // a direct message, not said in a server
        };
        if message.author.bot || message.webhook_id.is_some() || message.content.is_empty() {
            return;
        }
        let _ = self.store.message(
            &guild,
            ChatMessage {
                uid: message.author.id,
                message: message.content,
                channel: message.channel_id,
            },
        );
    }

    /// Roles changed: give every member of the guild their (possibly new) colour.
    fn recolor(&mut self, guild: &str) {
        let Some(cache) = self.guilds.get(guild) else {
            return;
        };
        for (uid, roles) in &cache.member_roles {
            self.store.recolor(guild, uid, cache.color(roles));
        }
    }
}

/// Decodes a payload and applies `then`, logging payloads that do not fit.
fn parse<T: DeserializeOwned, R>(kind: &str, data: Value, then: impl FnOnce(T) -> R) -> Option<R> {
    match serde_json::from_value(data) {
        Ok(payload) => Some(then(payload)),
        Err(error) => {
            warn!(kind, %error, "a Discord event did not have the expected shape; ignored");
            None
        }
    }
}

/// Discord's status words as d-zone's; `invisible` looks offline to everyone else.
fn status(word: &str) -> Status {
    match word {
        "online" => Status::Online,
        "idle" => Status::Idle,
        "dnd" => Status::Dnd,
        _ => Status::Offline,
    }
}

/// The name people see in the guild: nickname, else display name, else username.
fn display_name(member: &Member, user: &DiscordUser) -> String {
    member
        .nick
        .as_ref()
        .or(user.global_name.as_ref())
        .or(user.username.as_ref())
        .cloned()
        .unwrap_or_else(|| user.id.clone())
}

/// A guild name as a public id: lowercase letters and digits joined by dashes.
///
/// ```text
/// "D-World" → "d-world", "My Cool Server!" → "my-cool-server"
/// ```
pub(super) fn slug(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_readable_ids() {
        assert_eq!(slug("D-World"), "d-world");
        assert_eq!(slug("  My Cool Server! "), "my-cool-server");
        assert_eq!(slug("!!!"), "");
    }

    #[test]
    fn the_highest_coloured_role_wins() {
        let mut cache = GuildCache::default();
        cache.roles.insert("a".into(), (0xff0000, 1));
        cache.roles.insert("b".into(), (0x00ff00, 5));
        cache.roles.insert("c".into(), (0, 9));
        assert_eq!(
            cache.color(&["a".into(), "b".into(), "c".into()]),
            "#00ff00"
        );
        assert_eq!(cache.color(&["c".into()]), "#ffffff");
        assert_eq!(cache.color(&[]), "#ffffff");
    }

    #[test]
    fn invisible_is_offline() {
        assert_eq!(status("invisible"), Status::Offline);
        assert_eq!(status("dnd"), Status::Dnd);
    }
}
