//! What Discord's dispatch events mean for d-zone: guilds become servers,
//! members become actors, presences become statuses, messages become bubbles.
//!
//! The [`Mapper`] reads the JSON payload of each dispatch it cares about and
//! writes the result into the [`Store`] (which tells the watching browsers). It
//! keeps each guild's roles and members ([`GuildRoster`]) to colour members and
//! to tell browsers only what changed. It never talks to the gateway itself;
//! when it needs something from Discord (the members of a large guild, again
//! after a rate limit) it returns the command for the connection to send.
//!
//! Payloads are decoded into the few fields used here rather than into
//! twilight-model's complete event types, so a field Discord drops or adds, or
//! a partial member object, costs one event at worst, never the connection.
//! Outgoing commands do use twilight-model's types.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::{debug, info, warn};
use twilight_model::gateway::payload::outgoing::RequestGuildMembers;
use twilight_model::id::Id;
use twilight_model::id::marker::GuildMarker;

use super::roster::GuildRoster;
use crate::protocol::{ChatMessage, PresenceUpdate, ServerInfo, Status};
use crate::provider::store::Store;

/// Gateway opcode for asking for a guild's members (`REQUEST_GUILD_MEMBERS`).
const OP_REQUEST_MEMBERS: u8 = 8;
/// Longest pause Discord may ask for before a member request is repeated.
const MAX_RETRY_AFTER: f64 = 60.0;

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
    #[serde(default = "one")]
    chunk_count: u32,
    /// Echo of our request's nonce.
    #[serde(default)]
    nonce: Option<String>,
}

fn one() -> u32 {
    1
}

/// Discord's answer to a gateway command sent too often (dispatch `RATE_LIMITED`).
#[derive(Deserialize)]
struct RateLimited {
    opcode: u8,
    /// Seconds to wait before sending it again.
    retry_after: f64,
    #[serde(default)]
    meta: Option<RateLimitedMeta>,
}

#[derive(Deserialize)]
struct RateLimitedMeta {
    guild_id: String,
    #[serde(default)]
    nonce: Option<String>,
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

/// A guild's roles by id, with the colour and position that decide a member's colour.
fn role_table(roles: &[Role]) -> HashMap<String, (u32, i64)> {
    roles
        .iter()
        .map(|r| (r.id.clone(), (r.color, r.position)))
        .collect()
}

/// A gateway command the connection should send on the shard the event came from.
pub(super) struct Outgoing {
    /// How long to wait first (Discord's `retry_after` for a rate-limited request).
    pub(super) after: Duration,
    /// The command as JSON.
    pub(super) command: String,
}

/// Turns dispatch events into store changes.
pub(super) struct Mapper {
    store: Store,
    guilds: HashMap<String, GuildRoster>,
    /// Guilds this source put on the server list (the others were listed by
    /// the operator's data file or the ingest API, and stay listed).
    listed_here: HashSet<String>,
    /// Tells our member requests apart.
    requests: u64,
}

impl Mapper {
    pub(super) fn new(store: Store) -> Self {
        Self {
            store,
            guilds: HashMap::new(),
            listed_here: HashSet::new(),
            requests: 0,
        }
    }

    /// A new session on shard `shard` of `total`: its `READY` lists every
    /// guild of that shard the bot is in, so guilds of the shard it no longer
    /// names were left while the bot was away. Returns how many guilds it named.
    pub(super) fn ready(&mut self, shard: u32, total: u32, data: &Value) -> usize {
        let named: HashSet<&str> = data["guilds"]
            .as_array()
            .map(|guilds| guilds.iter().filter_map(|g| g["id"].as_str()).collect())
            .unwrap_or_default();
        let gone: Vec<String> = self
            .guilds
            .keys()
            .chain(&self.listed_here)
            .filter(|id| shard_of(id, total) == shard && !named.contains(id.as_str()))
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for id in gone {
            self.guilds.remove(&id);
            if self.listed_here.remove(&id) {
                info!(guild = %id, "the bot left a guild while disconnected; it is no longer listed");
                self.store.remove_server(&id);
            } else {
                info!(guild = %id, "the bot is no longer in a guild the operator listed (data file or ingest API); it stays listed");
            }
        }
        // Member requests of the old session will not be answered.
        for (id, roster) in &mut self.guilds {
            if shard_of(id, total) == shard {
                roster.abandon_listing();
            }
        }
        named.len()
    }

    /// Applies one dispatch; returns gateway commands to send in reply, if any.
    pub(super) fn dispatch(&mut self, kind: &str, data: Value) -> Vec<Outgoing> {
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
                        self.listed_here.remove(&g.id);
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
                    if let Some(roster) = self.guilds.get_mut(&e.guild_id) {
                        roster.remove(&e.user.id);
                    }
                    let _ = self
                        .store
                        .presence(&e.guild_id, PresenceUpdate::removed(e.user.id));
                });
            }
            "PRESENCE_UPDATE" => {
                parse(kind, data, |p: Presence| {
                    if let Some(guild) = &p.guild_id
                        && let Some(roster) = self.guilds.get_mut(guild)
                        && let Some(update) = roster.set_status(&p.user.id, status(&p.status))
                    {
                        let _ = self.store.presence(guild, update);
                    }
                });
            }
            "MESSAGE_CREATE" => {
                parse(kind, data, |m: MessageCreate| self.message(m));
            }
            "GUILD_ROLE_CREATE" | "GUILD_ROLE_UPDATE" => {
                parse(kind, data, |e: RoleEvent| {
                    let roster = self.guilds.entry(e.guild_id.clone()).or_default();
                    roster
                        .roles
                        .insert(e.role.id, (e.role.color, e.role.position));
                    self.recolor(&e.guild_id);
                });
            }
            "GUILD_ROLE_DELETE" => {
                parse(kind, data, |e: RoleDelete| {
                    if let Some(roster) = self.guilds.get_mut(&e.guild_id) {
                        roster.roles.remove(&e.role_id);
                    }
                    self.recolor(&e.guild_id);
                });
            }
            "RATE_LIMITED" => {
                return parse(kind, data, |r: RateLimited| self.rate_limited(r))
                    .flatten()
                    .into_iter()
                    .collect();
            }
            _ => debug!(kind, "dispatch ignored"),
        }
        Vec::new()
    }

    fn guild_create(&mut self, guild: Guild) -> Vec<Outgoing> {
        if guild.unavailable == Some(true) {
            return Vec::new();
        }
        if !self.store.has_server(&guild.id) {
            self.listed_here.insert(guild.id.clone());
        }
        let listed = self.list_guild(&guild.id, &guild.name);
        let roster = self.guilds.entry(guild.id.clone()).or_default();
        roster.roles = role_table(&guild.roles);
        let mut request = Vec::new();
        if guild.large {
            // Only part of a large guild's members came along: merge them, ask
            // for the rest, and decide who left when the last chunk is in.
            self.requests += 1;
            let nonce = format!("d-back-{}", self.requests);
            roster.begin_listing(nonce.clone());
            request.extend(member_request(&guild.id, nonce, Duration::ZERO));
        } else {
            roster.abandon_listing();
        }
        let roster = self.guilds.get_mut(&guild.id).expect("just inserted");
        let updates = merge(roster, &guild.members, &guild.presences);
        info!(
            guild = %guild.id,
            id = %listed.id,
            members = guild.members.len(),
            large = guild.large,
            "Discord guild available"
        );
        for update in updates {
            let _ = self.store.presence(&guild.id, update);
        }
        if !guild.large {
            let present = guild
                .members
                .iter()
                .filter_map(|m| m.user.as_ref().map(|u| u.id.clone()))
                .collect();
            self.complete(&guild.id, Some(present));
        }
        request
    }

    /// A complete listing is in: those it did not name have left.
    fn complete(&mut self, guild: &str, present: Option<HashSet<String>>) {
        let Some(roster) = self.guilds.get_mut(guild) else {
            return;
        };
        let users = roster.finish_listing(present);
        // The store compares with what browsers were shown, so this sends only departures.
        let _ = self.store.replace_users(guild, users);
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
        let roster = self.guilds.entry(guild.id.clone()).or_default();
        if !guild.roles.is_empty() {
            roster.roles = role_table(&guild.roles);
        }
        self.recolor(&guild.id);
    }

    fn members_chunk(&mut self, chunk: MembersChunk) {
        let roster = self.guilds.entry(chunk.guild_id.clone()).or_default();
        let ours = roster.is_listing(chunk.nonce.as_deref());
        let updates = merge(roster, &chunk.members, &chunk.presences);
        let last = ours && roster.chunk_arrived(chunk.chunk_count);
        for update in updates {
            let _ = self.store.presence(&chunk.guild_id, update);
        }
        if last {
            debug!(guild = %chunk.guild_id, "all members are in");
            self.complete(&chunk.guild_id, None);
        }
    }

    /// A member joined, or changed nickname or roles: broadcast with name and colour.
    fn member_changed(&mut self, event: MemberEvent) {
        let Some(user) = &event.member.user else {
            return;
        };
        let roster = self.guilds.entry(event.guild_id.clone()).or_default();
        let status = roster.status(&user.id).unwrap_or(Status::Offline);
        let name = display_name(&event.member, user);
        if let Some(update) = roster.put(&user.id, name, status, event.member.roles.clone()) {
            let _ = self.store.presence(&event.guild_id, update);
        }
    }

    /// Discord refused a member request for now; ask again when it says.
    fn rate_limited(&mut self, limited: RateLimited) -> Option<Outgoing> {
        if limited.opcode != OP_REQUEST_MEMBERS {
            return None;
        }
        let meta = limited.meta?;
        let after = Duration::from_secs_f64(limited.retry_after.clamp(0.0, MAX_RETRY_AFTER));
        info!(guild = %meta.guild_id, after_seconds = after.as_secs_f64(), "Discord rate-limited a member request; asking again then");
        let nonce = meta.nonce.unwrap_or_default();
        member_request(&meta.guild_id, nonce, after)
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
        let Some(roster) = self.guilds.get_mut(guild) else {
            return;
        };
        for update in roster.recolor() {
            let _ = self.store.presence(guild, update);
        }
    }
}

/// Merges members (with their statuses from `presences`, offline when Discord
/// sent none) into the roster; returns what browsers must be told.
fn merge(
    roster: &mut GuildRoster,
    members: &[Member],
    presences: &[Presence],
) -> Vec<PresenceUpdate> {
    let statuses: HashMap<&str, Status> = presences
        .iter()
        .map(|p| (p.user.id.as_str(), status(&p.status)))
        .collect();
    members
        .iter()
        .filter_map(|member| {
            let user = member.user.as_ref()?;
            let status = statuses
                .get(user.id.as_str())
                .copied()
                .unwrap_or(Status::Offline);
            roster.put(
                &user.id,
                display_name(member, user),
                status,
                member.roles.clone(),
            )
        })
        .collect()
}

/// `REQUEST_GUILD_MEMBERS` for every member of `guild`, with their presences.
fn member_request(guild: &str, nonce: String, after: Duration) -> Option<Outgoing> {
    let Some(id) = guild.parse().ok().and_then(Id::<GuildMarker>::new_checked) else {
        warn!(
            guild,
            "a guild id that is not a snowflake; its members are not requested"
        );
        return None;
    };
    let request = RequestGuildMembers::builder(id)
        .nonce(nonce)
        .presences(true)
        .query("", None);
    let command = serde_json::to_string(&request).ok()?;
    Some(Outgoing { after, command })
}

/// The shard that carries a guild's events (Discord's sharding formula).
fn shard_of(guild: &str, total: u32) -> u32 {
    let id: u64 = guild.parse().unwrap_or(0);
    u32::try_from((id >> 22) % u64::from(total.max(1))).unwrap_or(0)
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
    fn guilds_are_spread_over_shards_by_their_timestamp() {
        // (id >> 22) % shards, from Discord's sharding formula.
        assert_eq!(shard_of("700000000000000001", 1), 0);
        assert_eq!(shard_of(&((5u64 << 22) | 7).to_string(), 2), 1);
        assert_eq!(shard_of(&(4u64 << 22).to_string(), 2), 0);
    }

    #[test]
    fn invisible_is_offline() {
        assert_eq!(status("invisible"), Status::Offline);
        assert_eq!(status("dnd"), Status::Dnd);
    }
}
