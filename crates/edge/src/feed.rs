//! The chat lines of one watched Discord server, kept once for all its watchers.
//!
//! Chat lines are the bulk of what a busy server broadcasts, and the only
//! frames a lagging client may lose. So rather than handing every watcher its
//! own reference to every line (one atomic reference-count change per line and
//! watcher, on a cache line both cores fight over), the hub appends each
//! encoded line once to this ring, and each connection's writer copies the
//! lines it has not sent yet straight into its write buffer, under a read lock
//! shared with every other writer.
//!
//! A line's *position* counts lines since the feed began. A writer remembers
//! the position it has copied up to; when the ring has moved past that, the
//! lines in between were overwritten and that client simply never sees them,
//! which is how chat degrades for a client that cannot keep up. The ring holds
//! a fixed number of lines, so memory per server is bounded whatever the rate.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use crate::ws::Wire;
#[cfg(test)]
use bytes::Bytes;

/// The last `capacity` chat lines of one server, in wire format.
#[derive(Debug)]
pub struct Feed {
    ring: RwLock<Ring>,
    /// Position the next line will get; readable without the lock, so a writer
    /// can tell whether anything is new without touching the ring.
    head: AtomicU64,
    capacity: usize,
}

/// The lines themselves; only reachable through [`Feed::lines`].
#[derive(Debug, Default)]
pub struct Ring {
    lines: VecDeque<Wire>,
    /// Position of `lines[0]`.
    first: u64,
}

impl Feed {
    /// An empty feed that keeps the last `capacity` lines (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            ring: RwLock::new(Ring::default()),
            head: AtomicU64::new(0),
            capacity: capacity.max(1),
        }
    }

    /// Appends a line; returns the position of the line it pushed out of the
    /// ring, if it was full, so the caller can count who never got it.
    pub fn publish(&self, line: Wire) -> Option<u64> {
        let mut ring = self.ring.write().unwrap_or_else(|e| e.into_inner());
        let evicted = if ring.lines.len() == self.capacity {
            ring.lines.pop_front();
            ring.first += 1;
            Some(ring.first - 1)
        } else {
            None
        };
        ring.lines.push_back(line);
        // SeqCst pairs with the writer's park-then-check (see `Outbox::next`).
        self.head
            .store(ring.first + ring.lines.len() as u64, Ordering::SeqCst);
        evicted
    }

    /// The position the next line will get.
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::SeqCst)
    }

    /// Read access to the lines, shared with other writers; hold it briefly.
    pub fn lines(&self) -> RwLockReadGuard<'_, Ring> {
        self.ring.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl crate::source::Source for Feed {
    fn head(&self) -> u64 {
        Feed::head(self)
    }

    fn copy_into(&self, cursor: &mut u64, until: u64, deflate: bool, out: &mut Vec<u8>) -> usize {
        self.lines().copy_into(cursor, until, deflate, out)
    }
}

impl Ring {
    /// Appends to `out` every line from `*cursor` up to (not including)
    /// position `until`, advances the cursor, and returns how many lines were
    /// copied. Lines already pushed out of the ring are skipped.
    /// Each line goes in the form the client negotiated (`deflate`).
    pub fn copy_into(
        &self,
        cursor: &mut u64,
        until: u64,
        deflate: bool,
        out: &mut Vec<u8>,
    ) -> usize {
        let head = self.first + self.lines.len() as u64;
        let start = (*cursor).max(self.first);
        let end = until.min(head);
        if start >= end {
            *cursor = (*cursor).max(start);
            return 0;
        }
        let from = (start - self.first) as usize;
        let to = (end - self.first) as usize;
        for line in self.lines.range(from..to) {
            out.extend_from_slice(line.for_client(deflate));
        }
        *cursor = end;
        to - from
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_with(capacity: usize, lines: &[&str]) -> Feed {
        let feed = Feed::new(capacity);
        for line in lines {
            feed.publish(Wire::from(Bytes::copy_from_slice(line.as_bytes())));
        }
        feed
    }

    #[test]
    fn a_reader_gets_each_line_once_in_order() {
        let feed = feed_with(4, &["a", "b", "c"]);
        let mut cursor = 0;
        let mut out = Vec::new();
        assert_eq!(
            feed.lines()
                .copy_into(&mut cursor, u64::MAX, false, &mut out),
            3
        );
        assert_eq!(out, b"abc");
        assert_eq!(cursor, 3);
        assert_eq!(
            feed.lines()
                .copy_into(&mut cursor, u64::MAX, false, &mut out),
            0
        );
        feed.publish(Wire::from(Bytes::from_static(b"d")));
        feed.lines()
            .copy_into(&mut cursor, u64::MAX, false, &mut out);
        assert_eq!(out, b"abcd");
    }

    #[test]
    fn a_reader_stops_where_it_is_told() {
        let feed = feed_with(4, &["a", "b", "c"]);
        let (mut cursor, mut out) = (0, Vec::new());
        assert_eq!(feed.lines().copy_into(&mut cursor, 2, false, &mut out), 2);
        assert_eq!((out.as_slice(), cursor), (&b"ab"[..], 2));
    }

    #[test]
    fn a_lagging_reader_skips_what_was_overwritten() {
        let feed = Feed::new(2);
        assert_eq!(feed.publish(Wire::from(Bytes::from_static(b"a"))), None);
        assert_eq!(feed.publish(Wire::from(Bytes::from_static(b"b"))), None);
        assert_eq!(feed.publish(Wire::from(Bytes::from_static(b"c"))), Some(0));
        assert_eq!(feed.publish(Wire::from(Bytes::from_static(b"d"))), Some(1));
        assert_eq!(feed.head(), 4);
        let (mut cursor, mut out) = (0, Vec::new());
        assert_eq!(
            feed.lines()
                .copy_into(&mut cursor, u64::MAX, false, &mut out),
            2
        );
        assert_eq!((out.as_slice(), cursor), (&b"cd"[..], 4));
    }
}
