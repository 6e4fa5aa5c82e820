//! A Scratch project's newest `set` of each variable, kept once for all its
//! members while the host batches (`--batch-ms`).
//!
//! A batched client gets at most one frame per period, and in it only the
//! newest value of each variable. Handing every member its own copy of every
//! `set` would make one set cost a queue push per member (a thousand for a
//! full project), only for all but the newest to be thrown away at the next
//! flush. Instead the project keeps, here, one encoded frame per variable,
//! numbered by the position of its newest set; each member's writer follows
//! this table (see [`edge::source`]) and at its flush copies the frames past
//! its cursor: each variable changed since its last flush, once, at its
//! newest value. A set then costs one table write, whatever the project's
//! size, and a member that lags behind never loses a variable's last state.
//! The table also keeps the wakers of the writers that wait for a change, so
//! a set wakes only those (most sleep until their next batch) instead of
//! checking on every member.
//!
//! The table holds at most one frame per variable of the project, so it is
//! bounded like the project's variables. `create`, `rename` and `delete` are
//! still queued to each member in order (they are rare), and go out after
//! every set made before them. A `create` or `delete` takes the variable's
//! entry out of the table, as what it says supersedes the set. A `rename`
//! takes out both names' entries; the old name's newest set is handed back,
//! so that it can be queued, before the rename, to the members that have not
//! copied it (else they would be told to rename a variable they never saw
//! and lose its value).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockWriteGuard};
use std::task::Waker;

use edge::source::Source;
use edge::ws::Wire;

/// The newest `set` frame of each variable of one project, by position.
#[derive(Debug, Default)]
pub(crate) struct LatestSets {
    table: RwLock<Table>,
    /// The next position; readable without the lock, so an idle writer can
    /// tell that nothing changed without touching the table.
    head: AtomicU64,
    /// The writers waiting for a change, by follower: a set wakes only these,
    /// not every member (most are asleep until their next batch).
    waiting: Mutex<HashMap<usize, Waker>>,
}

#[derive(Debug, Default)]
struct Table {
    /// Each variable's newest frame, under the position of that set.
    frames: BTreeMap<u64, Wire>,
    /// Where each variable's frame is in `frames`.
    position_of: HashMap<String, u64>,
    next: u64,
}

impl LatestSets {
    fn table(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `frame` as variable `name`'s newest set, replacing the one
    /// before it, for every follower that has not copied it yet.
    pub fn set(&self, name: &str, frame: Wire) {
        let mut table = self.table();
        let position = table.next;
        table.next += 1;
        let older = match table.position_of.get_mut(name) {
            Some(slot) => Some(std::mem::replace(slot, position)),
            None => {
                table.position_of.insert(name.to_owned(), position);
                None
            }
        };
        if let Some(older) = older {
            table.frames.remove(&older);
        }
        table.frames.insert(position, frame);
        // SeqCst pairs with the writer's park-then-check (see `Outbox::poll_next`):
        // a writer that registers after the wake-ups below sees this head.
        self.head.store(table.next, Ordering::SeqCst);
        drop(table);
        for (_, waker) in self.waiting().drain() {
            waker.wake();
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Waker>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes variable `name` out of the table: called before a `create` or
    /// `delete` of it is queued to the members, which supersedes the set.
    /// Returns whether there was one.
    pub fn forget(&self, name: &str) -> bool {
        let mut table = self.table();
        match table.position_of.remove(name) {
            Some(position) => table.frames.remove(&position).is_some(),
            None => false,
        }
    }

    /// Takes variables `from` and `to` out of the table, as `from` is renamed
    /// to `to` (whose own value the rename overwrites). Returns `from`'s newest
    /// set and its position, which a member that has not copied it must be
    /// sent before the rename.
    pub fn rename(&self, from: &str, to: &str) -> Option<(u64, Wire)> {
        let mut table = self.table();
        if let Some(overwritten) = table.position_of.remove(to) {
            table.frames.remove(&overwritten);
        }
        let position = table.position_of.remove(from)?;
        let frame = table.frames.remove(&position)?;
        Some((position, frame))
    }
}

impl Source for LatestSets {
    fn head(&self) -> u64 {
        self.head.load(Ordering::SeqCst)
    }

    fn copy_into(&self, cursor: &mut u64, until: u64, deflate: bool, out: &mut Vec<u8>) -> usize {
        if *cursor >= until || *cursor >= self.head() {
            return 0;
        }
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        let end = until.min(table.next);
        let mut copied = 0;
        for frame in table.frames.range(*cursor..end).map(|(_, frame)| frame) {
            out.extend_from_slice(frame.for_client(deflate));
            copied += 1;
        }
        *cursor = (*cursor).max(end);
        copied
    }

    fn wake_on_change(&self, follower: usize, waker: &Waker) {
        let mut waiting = self.waiting();
        match waiting.get_mut(&follower) {
            Some(kept) if kept.will_wake(waker) => {}
            Some(kept) => kept.clone_from(waker),
            None => {
                waiting.insert(follower, waker.clone());
            }
        }
    }

    fn forget_follower(&self, follower: usize) {
        self.waiting().remove(&follower);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> Wire {
        Wire::from(bytes::Bytes::copy_from_slice(text.as_bytes()))
    }

    fn read(latest: &LatestSets, cursor: &mut u64, until: u64) -> String {
        let mut out = Vec::new();
        latest.copy_into(cursor, until, false, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_follower_gets_each_changed_variable_once_at_its_newest() {
        let latest = LatestSets::default();
        latest.set("a", frame("a1 "));
        latest.set("b", frame("b1 "));
        latest.set("a", frame("a2 "));
        let mut cursor = 0;
        assert_eq!(read(&latest, &mut cursor, u64::MAX), "b1 a2 ");
        assert_eq!(cursor, 3);
        assert_eq!(read(&latest, &mut cursor, u64::MAX), "");
        latest.set("b", frame("b2 "));
        assert_eq!(read(&latest, &mut cursor, u64::MAX), "b2 ");
    }

    #[test]
    fn a_late_follower_starts_where_it_joined() {
        let latest = LatestSets::default();
        latest.set("a", frame("a1 "));
        let mut cursor = latest.head();
        latest.set("b", frame("b1 "));
        assert_eq!(read(&latest, &mut cursor, u64::MAX), "b1 ");
    }

    #[test]
    fn reading_up_to_a_position_leaves_the_rest_for_later() {
        let latest = LatestSets::default();
        latest.set("a", frame("a1 "));
        latest.set("b", frame("b1 "));
        let mut cursor = 0;
        assert_eq!(read(&latest, &mut cursor, 1), "a1 ");
        assert_eq!(cursor, 1);
        assert_eq!(read(&latest, &mut cursor, u64::MAX), "b1 ");
    }

    #[test]
    fn a_forgotten_variable_is_not_sent() {
        let latest = LatestSets::default();
        latest.set("a", frame("a1 "));
        latest.set("b", frame("b1 "));
        assert!(latest.forget("a"));
        assert!(!latest.forget("a"));
        let mut cursor = 0;
        assert_eq!(read(&latest, &mut cursor, u64::MAX), "b1 ");
        latest.set("a", frame("a2 "));
        assert_eq!(read(&latest, &mut cursor, u64::MAX), "a2 ");
    }

    #[test]
    fn a_set_wakes_each_waiting_follower_once_and_a_forgotten_one_not_at_all() {
        use std::sync::atomic::AtomicUsize;
        use std::task::Wake;

        #[derive(Default)]
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let (first, second) = (
            std::sync::Arc::new(Count::default()),
            std::sync::Arc::new(Count::default()),
        );
        let latest = LatestSets::default();
        let first_waker = Waker::from(std::sync::Arc::clone(&first));
        latest.wake_on_change(1, &first_waker);
        latest.wake_on_change(1, &first_waker);
        latest.wake_on_change(2, &Waker::from(std::sync::Arc::clone(&second)));
        latest.forget_follower(2);
        latest.set("a", frame("a1 "));
        latest.set("a", frame("a2 "));
        assert_eq!(
            first.0.load(Ordering::SeqCst),
            1,
            "woken once, then no longer waiting"
        );
        assert_eq!(second.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_rename_hands_back_the_old_names_unread_set_and_drops_both() {
        let latest = LatestSets::default();
        latest.set("a", frame("a1 "));
        latest.set("b", frame("b1 "));
        let (position, handed) = latest.rename("a", "b").expect("a's set");
        assert_eq!((position, handed.for_client(false)), (0, &b"a1 "[..]));
        let mut cursor = 0;
        assert_eq!(read(&latest, &mut cursor, u64::MAX), "");
        assert!(latest.rename("a", "b").is_none());
        latest.set("b", frame("b2 "));
        assert_eq!(read(&latest, &mut cursor, u64::MAX), "b2 ");
    }
}
