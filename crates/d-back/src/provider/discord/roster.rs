//! What the bot knows of one guild's members, and how a full listing of them
//! is told apart from the parts it arrives in.
//!
//! Discord sends a large guild's members in pieces: some in `GUILD_CREATE`,
//! the rest in `GUILD_MEMBERS_CHUNK`s answering a member request. After a new
//! session (a re-identify) the same guild arrives like that again. If each
//! piece replaced the roster, browsers would see members vanish and come back
//! chunk by chunk. So every piece is merged: [`GuildRoster::put`] records a
//! member and says what browsers must be told, nothing when nothing changed;
//! and only when the whole listing is in (`GUILD_CREATE` of a small guild, or
//! the last chunk answering our request's nonce) does
//! [`GuildRoster::finish_listing`] decide who is gone.
//!
//! The roster here mirrors what this source wrote to the store, so that a
//! change is sent as the smallest frame that says it.

use std::collections::{HashMap, HashSet};

use crate::protocol::{PresenceUpdate, Status, User};
use crate::provider::store::DEFAULT_ROLE_COLOR;

/// A member as last written to the store, with the roles that decide their colour.
struct Known {
    roles: Vec<String>,
    user: User,
}

/// A full listing of the members under way: our member request and who it has named so far.
struct Listing {
    /// The nonce of our member request; chunks answering other requests do not count.
    nonce: String,
    /// Members named by this listing, or who joined while it ran.
    seen: HashSet<String>,
    /// Chunks received so far; the listing is complete at `chunk_count`.
    chunks: u32,
}

/// One guild as the bot knows it.
#[derive(Default)]
pub(super) struct GuildRoster {
    /// Role id → (colour, position); colour 0 means "no colour".
    pub(super) roles: HashMap<String, (u32, i64)>,
    /// Member id → what we know of them.
    members: HashMap<String, Known>,
    listing: Option<Listing>,
}

impl GuildRoster {
    /// `#rrggbb` of the highest coloured role among `roles`, else white.
    pub(super) fn color(&self, roles: &[String]) -> String {
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

    /// The status we know for a member, if they are one.
    pub(super) fn status(&self, uid: &str) -> Option<Status> {
        self.members.get(uid).map(|k| k.user.status)
    }

    /// Records a member (with their name, status and roles) and returns what
    /// browsers must be told: everything for a newcomer, only what changed
    /// otherwise, nothing if nothing did. A running listing counts them as present.
    pub(super) fn put(
        &mut self,
        uid: &str,
        username: String,
        status: Status,
        roles: Vec<String>,
    ) -> Option<PresenceUpdate> {
        if let Some(listing) = &mut self.listing {
            listing.seen.insert(uid.to_owned());
        }
        let user = User::new(uid, username, status, self.color(&roles));
        let update = match self.members.get(uid).map(|k| &k.user) {
            None => Some(full(&user)),
            Some(old) if *old == user => None,
            Some(old) if old.username != user.username => Some(full(&user)),
            Some(old) if old.role_color != user.role_color => {
                Some(PresenceUpdate::new(uid, user.status).with_role_color(user.role_color.clone()))
            }
            Some(_) => Some(PresenceUpdate::new(uid, user.status)),
        };
        self.members.insert(uid.to_owned(), Known { roles, user });
        update
    }

    /// A member's new status; nothing for people who are not members.
    pub(super) fn set_status(&mut self, uid: &str, status: Status) -> Option<PresenceUpdate> {
        let known = self.members.get(uid)?;
        let (name, roles) = (known.user.username.clone(), known.roles.clone());
        self.put(uid, name, status, roles)
    }

    /// Forgets a member who left; whether they were one.
    pub(super) fn remove(&mut self, uid: &str) -> bool {
        if let Some(listing) = &mut self.listing {
            listing.seen.remove(uid);
        }
        self.members.remove(uid).is_some()
    }

    /// Gives every member the colour their roles now call for; returns the changes.
    pub(super) fn recolor(&mut self) -> Vec<PresenceUpdate> {
        let stale: Vec<(String, String, Status, Vec<String>)> = self
            .members
            .iter()
            .filter(|(_, k)| self.color(&k.roles) != k.user.role_color)
            .map(|(uid, k)| {
                (
                    uid.clone(),
                    k.user.username.clone(),
                    k.user.status,
                    k.roles.clone(),
                )
            })
            .collect();
        stale
            .into_iter()
            .filter_map(|(uid, name, status, roles)| self.put(&uid, name, status, roles))
            .collect()
    }

    /// Starts a full listing that our member request (with `nonce`) will complete.
    /// The members of `GUILD_CREATE` must be `put` after this call.
    pub(super) fn begin_listing(&mut self, nonce: String) {
        self.listing = Some(Listing {
            nonce,
            seen: HashSet::new(),
            chunks: 0,
        });
    }

    /// Whether a chunk answers the listing under way.
    pub(super) fn is_listing(&self, nonce: Option<&str>) -> bool {
        self.listing
            .as_ref()
            .is_some_and(|l| Some(l.nonce.as_str()) == nonce)
    }

    /// Counts a chunk of the listing; true when it was the last one.
    pub(super) fn chunk_arrived(&mut self, chunk_count: u32) -> bool {
        let Some(listing) = &mut self.listing else {
            return false;
        };
        listing.chunks += 1;
        listing.chunks >= chunk_count
    }

    /// Ends the listing: forgets members it did not name and returns everyone
    /// left, the guild's complete roster.
    ///
    /// Without a listing under way (a small guild's `GUILD_CREATE`), `present`
    /// names everyone.
    pub(super) fn finish_listing(&mut self, present: Option<HashSet<String>>) -> Vec<User> {
        let seen = match (present, self.listing.take()) {
            (Some(present), _) => present,
            (None, Some(listing)) => listing.seen,
            (None, None) => return self.users(),
        };
        self.members.retain(|uid, _| seen.contains(uid));
        self.users()
    }

    /// Forgets a listing that will not complete (the session it was asked on ended).
    pub(super) fn abandon_listing(&mut self) {
        self.listing = None;
    }

    fn users(&self) -> Vec<User> {
        self.members.values().map(|k| k.user.clone()).collect()
    }
}

/// A presence that lets a browser draw the user even if it has never seen them.
fn full(user: &User) -> PresenceUpdate {
    PresenceUpdate::new(&user.uid, user.status)
        .with_username(&user.username)
        .with_role_color(&user.role_color)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_coloured_role_wins() {
        let mut roster = GuildRoster::default();
        roster.roles.insert("a".into(), (0xff0000, 1));
        roster.roles.insert("b".into(), (0x00ff00, 5));
        roster.roles.insert("c".into(), (0, 9));
        assert_eq!(
            roster.color(&["a".into(), "b".into(), "c".into()]),
            "#00ff00"
        );
        assert_eq!(roster.color(&["c".into()]), "#ffffff");
        assert_eq!(roster.color(&[]), "#ffffff");
    }

    #[test]
    fn only_changes_are_told() {
        let mut roster = GuildRoster::default();
        let came = roster.put("7", "a".into(), Status::Online, vec![]).unwrap();
        assert_eq!(came.username.as_deref(), Some("a"));
        assert_eq!(roster.put("7", "a".into(), Status::Online, vec![]), None);
        let idle = roster.put("7", "a".into(), Status::Idle, vec![]).unwrap();
        assert_eq!((idle.username, idle.role_color), (None, None));
        assert_eq!(roster.set_status("8", Status::Online), None, "not a member");
    }

    #[test]
    fn a_listing_removes_only_those_it_did_not_name() {
        let mut roster = GuildRoster::default();
        for uid in ["1", "2", "3"] {
            roster.put(uid, uid.into(), Status::Online, vec![]);
        }
        roster.begin_listing("n".into());
        roster.put("1", "1".into(), Status::Online, vec![]);
        assert!(roster.is_listing(Some("n")));
        assert!(!roster.is_listing(Some("other")));
        assert!(!roster.chunk_arrived(2));
        roster.put("3", "3".into(), Status::Online, vec![]);
        assert!(roster.chunk_arrived(2));
        let mut left: Vec<String> = roster
            .finish_listing(None)
            .into_iter()
            .map(|u| u.uid)
            .collect();
        left.sort();
        assert_eq!(left, ["1", "3"]);
    }
}
