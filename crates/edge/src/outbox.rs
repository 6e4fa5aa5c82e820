//! A connection's bounded queue of encoded frames, between the hub and the socket.
//!
//! The hub pushes into it without ever waiting; the connection's writer task
//! takes everything waiting in one go, copies it into one buffer and writes
//! that with one system call. Two streams meet here, in the order the hub made
//! them:
//!
//! - frames for this client alone or for one user (`server-join`, errors, a
//!   user's presence), queued here;
//! - chat lines, which stay in the watched server's shared [`Feed`](crate::feed::Feed) (or any
//!   other shared [`Source`]); the outbox only remembers how far this client
//!   has read it.
//!
//! When a browser cannot keep up, this degrades in a way the client survives:
//! chat lines it lags behind on are overwritten in the feed and never sent; a
//! newer frame for the same key (a user's presence) takes the place of the
//! older one still waiting, merged with it by the protocol's [`MergeFn`] so
//! that nothing the older one carried is lost (a user's name, say); and when
//! the queue is full of frames that can be neither dropped nor merged, a
//! protocol that can describe its whole state at once (d-zone's `server-join`)
//! replaces every queued collapsible frame with one fresh snapshot
//! ([`Outbox::push_or_resynchronise`]), so the client ends exactly where
//! everyone else is. Only when even that leaves no room is the connection
//! closed with [`CLOSE_TOO_SLOW`]. Memory per connection is therefore bounded
//! by the capacity, whatever the producers do.
//!
//! A `VecDeque` behind a `std::sync::Mutex` is used rather than a channel
//! because the degradation rules need to look into, and rewrite, what is
//! already queued; the lock is only ever held for pointer moves and the copy.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::ws::Wire;
#[cfg(test)]
use bytes::Bytes;
use std::task::{Context, Poll, Waker};

#[cfg(test)]
use crate::feed::Feed;
use crate::source::Source;

/// Close code sent to a client that fell too far behind (RFC 6455 "Try Again Later").
pub const CLOSE_TOO_SLOW: u16 = 1013;

/// How a queued frame may be treated under pressure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Urgency {
    /// Only the newest frame with the same key matters (a user's presence).
    Collapsible(Arc<str>),
    /// Must arrive (server-list, errors).
    Essential,
    /// Must arrive, and describes the whole state: it supersedes every
    /// collapsible frame and every snapshot queued before it when the outbox
    /// resynchronises (see [`Outbox::push_or_resynchronise`]).
    Snapshot,
}

/// Combines an older queued frame with a newer one for the same key into the
/// frame to send instead of both (e.g. a status change that keeps the user's
/// name from the older presence); `None` sends the newer one as it is.
pub type MergeFn = fn(older: &Wire, newer: &Wire) -> Option<Wire>;

/// One frame waiting for the socket, already in wire format (see [`crate::ws`]).
#[derive(Debug, Clone)]
pub struct Frame {
    pub urgency: Urgency,
    /// Header and payload, shared by every watcher the frame was broadcast to.
    pub wire: Wire,
}

/// Why the writer should stop, and what close frame to send (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    /// `None` when the peer already closed and no frame should be sent.
    pub code: Option<u16>,
    /// Short text for the close frame (at most 123 bytes are sent).
    pub reason: Cow<'static, str>,
}

impl CloseRequest {
    /// A close frame with this code and reason.
    ///
    /// ```
    /// use edge::outbox::CloseRequest;
    /// let request = CloseRequest::new(4004, format!("Invalid room ID: {}", 999));
    /// assert_eq!(request.reason, "Invalid room ID: 999");
    /// ```
    pub fn new(code: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code: Some(code),
            reason: reason.into(),
        }
    }
}

/// What became of a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued as is.
    Queued,
    /// Replaced an older frame for the same user.
    Collapsed,
    /// The queue was full: its collapsible frames and snapshots were replaced
    /// by a fresh snapshot.
    Resynchronised,
    /// Not queued: the connection is closing.
    Dropped,
    /// The client is too far behind; the connection is being closed.
    Overflowed,
}

/// A queued frame and the feed position it was queued at: feed lines before
/// that position go out before it, later ones after it.
#[derive(Debug)]
struct Queued {
    after: u64,
    frame: Frame,
}

/// How the connection was asked to end; one field for both kinds keeps every
/// outbox a size class smaller.
#[derive(Debug)]
enum End {
    /// Stop writing and send this close.
    Now(CloseRequest),
    /// Close once the frames queued before it have gone out.
    AfterQueued(CloseRequest),
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Queued>,
    end: Option<End>,
    /// The shared frames this connection follows (chat lines of the server
    /// it watches, say).
    source: Option<Arc<dyn Source>>,
    /// The writer's task, registered while it waits for work.
    waker: Option<Waker>,
}

/// What the writer gets from [`Outbox::next`].
#[derive(Debug)]
pub enum Next {
    /// This many frames were copied into the buffer, oldest first.
    Frames(usize),
    /// Stop writing; send this close frame first if it has a code.
    Close(CloseRequest),
}

/// The bounded outbox of one connection.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// (A `u32`: it shares a word with the flags below.)
    capacity: u32,
    /// Feed position this connection has copied up to. Only changed under the
    /// state lock; read without it by the hub to count lines a client missed.
    cursor: AtomicU64,
    /// Set while the writer waits with nothing to do, so that a new chat line
    /// wakes it; idle connections are the only ones a broadcast has to wake.
    parked: AtomicBool,
    /// How two frames for the same key become one.
    merge: Option<MergeFn>,
    /// Whether the client negotiated permessage-deflate: it is sent each
    /// frame's compressed form (made once per frame, shared by all such clients).
    deflate: bool,
    /// Whether the writer batches this connection's frames (see
    /// [`Outbox::batch`]); then of the frames taken at once with the same
    /// collapsible key only the newest is written.
    batching: AtomicBool,
}

impl Outbox {
    /// An empty outbox that holds at most `capacity` queued frames.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            capacity: u32::try_from(capacity).unwrap_or(u32::MAX).max(1),
            cursor: AtomicU64::new(0),
            parked: AtomicBool::new(false),
            merge: None,
            deflate: false,
            batching: AtomicBool::new(false),
        }
    }

    /// From now on the writer sends this connection at most one frame per
    /// its batch period (see [`crate::writer::WriterSettings::batch`]), text
    /// messages joined by newlines, and of the frames taken at once with the
    /// same collapsible key only the newest. A protocol turns this on once it
    /// knows its client reads such frames.
    pub fn batch(&self) {
        self.batching.store(true, Ordering::Relaxed);
    }

    /// Whether [`batch`](Self::batch) was called.
    pub fn is_batching(&self) -> bool {
        self.batching.load(Ordering::Relaxed)
    }

    /// Sends this client the permessage-deflate form of each frame (see
    /// [`Wire::for_client`]), as negotiated in its opening handshake.
    pub fn with_deflate(mut self, deflate: bool) -> Self {
        self.deflate = deflate;
        self
    }

    /// Merges frames for the same key with `merge` when they collapse, instead
    /// of keeping only the newer one.
    pub fn with_merge(mut self, merge: MergeFn) -> Self {
        self.merge = Some(merge);
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame without waiting, degrading as the module doc says; when
    /// nothing can make room, the connection is closed with [`CLOSE_TOO_SLOW`].
    pub fn push(&self, frame: Frame) -> Pushed {
        self.push_with(frame, None::<fn() -> Frame>)
    }

    /// Like [`push`](Self::push), but when the queue is full and `frame`
    /// collapses into nothing, every queued collapsible frame and snapshot is
    /// replaced by `snapshot()` (a frame describing the whole current state,
    /// which already includes `frame`'s change), and the connection stays open.
    pub fn push_or_resynchronise(&self, frame: Frame, snapshot: impl FnOnce() -> Frame) -> Pushed {
        self.push_with(frame, Some(snapshot))
    }

    fn push_with(&self, frame: Frame, snapshot: Option<impl FnOnce() -> Frame>) -> Pushed {
        let mut state = self.state();
        if state.end.is_some() {
            return Pushed::Dropped;
        }
        // The writer empties the whole queue each time it wakes, so only a push
        // into an empty queue has to wake it; skipping the rest matters when one
        // broadcast pushes into thousands of outboxes.
        let wake = state.queue.is_empty();
        let after = state.source.as_ref().map_or(0, |source| source.head());
        let outcome = if state.queue.len() < self.capacity as usize {
            state.queue.push_back(Queued { after, frame });
            Pushed::Queued
        } else if let Some(slot) = same_key_slot(&state.queue, &frame.urgency) {
            // The newer frame takes the older one's place, so it keeps its order
            // relative to the chat lines that were around it.
            let older = &mut state.queue[slot].frame;
            let merged = self.merge.and_then(|merge| merge(&older.wire, &frame.wire));
            older.wire = merged.unwrap_or(frame.wire);
            Pushed::Collapsed
        } else if let Some(snapshot) = snapshot {
            state
                .queue
                .retain(|q| matches!(q.frame.urgency, Urgency::Essential));
            if state.queue.len() < self.capacity as usize {
                state.queue.push_back(Queued {
                    after,
                    frame: snapshot(),
                });
                Pushed::Resynchronised
            } else {
                self.overflow(&mut state)
            }
        } else {
            self.overflow(&mut state)
        };
        if wake || outcome == Pushed::Overflowed {
            wake_writer(state);
        }
        outcome
    }

    /// Gives up on a client whose queue holds nothing that could make room.
    fn overflow(&self, state: &mut State) -> Pushed {
        state.queue.clear();
        state.end = Some(End::Now(CloseRequest::new(
            CLOSE_TOO_SLOW,
            "too slow: fell behind the broadcasts",
        )));
        Pushed::Overflowed
    }

    /// Starts sending `source`'s frames from its current end on; what is
    /// already queued goes out before any of them.
    pub fn follow(&self, source: Arc<dyn Source>) {
        let mut state = self.state();
        for queued in &mut state.queue {
            queued.after = 0;
        }
        self.cursor.store(source.head(), Ordering::Relaxed);
        // A writer already waiting registered with no source: register it now,
        // or a source that wakes its followers itself would never wake it.
        if let Some(waker) = &state.waker {
            source.wake_on_change(self.follower_key(), waker);
        }
        if let Some(old) = state.source.replace(source) {
            old.forget_follower(self.follower_key());
        }
    }

    /// Stops following its source (the client left the server or project).
    pub fn unfollow(&self) {
        if let Some(source) = self.state().source.take() {
            source.forget_follower(self.follower_key());
        }
    }

    /// How this outbox is known to the source it follows: its address, which
    /// stays put as it lives in an `Arc`, and is forgotten when it drops.
    fn follower_key(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Whether this connection has not yet copied the line at `position` of the
    /// feed it follows.
    pub fn missed(&self, position: u64) -> bool {
        self.cursor.load(Ordering::Relaxed) <= position
    }

    /// Wakes the writer if it is waiting for work; called after a chat line is
    /// published to the feed this outbox follows.
    pub fn nudge(&self) {
        // SeqCst pairs with the writer's park-then-check in `poll_next`: either it
        // sees the new line, or this sees it parked.
        if self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::SeqCst) {
            wake_writer(self.state());
        }
    }

    /// Asks the writer to stop; the first request wins (over a
    /// [`finish`](Self::finish) too).
    pub fn close(&self, request: CloseRequest) {
        let mut state = self.state();
        if !matches!(state.end, Some(End::Now(_))) {
            state.end = Some(End::Now(request));
        }
        wake_writer(state);
    }

    /// Stops taking frames and closes once everything already queued has
    /// been written: for a last word before hanging up (an error text, then
    /// the close). An immediate [`close`](Self::close) still overrides it.
    pub fn finish(&self, request: CloseRequest) {
        let mut state = self.state();
        if state.end.is_none() {
            state.end = Some(End::AfterQueued(request));
        }
        wake_writer(state);
    }

    /// Waits until there is something to do, then appends every queued frame
    /// and every unread chat line to `out`, in the order the hub made them.
    ///
    /// Only one task (the connection's writer) may call this.
    pub async fn next(&self, out: &mut Vec<u8>) -> Next {
        std::future::poll_fn(|cx| self.poll_next(cx, out)).await
    }

    /// [`next`](Self::next) for a connection that polls: appends the work to
    /// `out` if there is some, otherwise remembers `cx`'s waker for when
    /// there is. Only one task may call this (or `next`).
    pub fn poll_next(&self, cx: &mut Context<'_>, out: &mut Vec<u8>) -> Poll<Next> {
        let mut state = self.state();
        self.parked.store(false, Ordering::Relaxed);
        if let Some(End::Now(close)) = &state.end {
            return Poll::Ready(Next::Close(close.clone()));
        }
        let cursor = self.cursor.load(Ordering::Relaxed);
        let unread = |state: &State| state.source.as_ref().is_some_and(|f| f.head() != cursor);
        if !state.queue.is_empty() || unread(&state) {
            return Poll::Ready(Next::Frames(self.take(&mut state, out)));
        }
        if let Some(End::AfterQueued(finish)) = &state.end {
            return Poll::Ready(Next::Close(finish.clone()));
        }
        if !state
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        if let Some(source) = &state.source {
            source.wake_on_change(self.follower_key(), cx.waker());
        }
        self.parked.store(true, Ordering::SeqCst);
        // As in `next`: a line published meanwhile must not wait for the next.
        if unread(&state) {
            self.parked.store(false, Ordering::Relaxed);
            state.waker = None;
            return Poll::Ready(Next::Frames(self.take(&mut state, out)));
        }
        Poll::Pending
    }

    /// Copies the queue and the unread feed lines into `out`, interleaved by
    /// position. The state lock keeps the hub from queueing meanwhile; a line
    /// published while this copies has a position past every queued frame's,
    /// so it rightly goes after them.
    fn take(&self, state: &mut State, out: &mut Vec<u8>) -> usize {
        let mut cursor = self.cursor.load(Ordering::Relaxed);
        if self.is_batching() {
            keep_latest_of_each_key(&mut state.queue);
        }
        let mut frames = state.queue.len();
        let source = state.source.as_deref();
        for queued in state.queue.drain(..) {
            if let Some(source) = source {
                frames += source.copy_into(&mut cursor, queued.after, self.deflate, out);
            }
            out.extend_from_slice(queued.frame.wire.for_client(self.deflate));
        }
        if let Some(source) = source {
            frames += source.copy_into(&mut cursor, u64::MAX, self.deflate, out);
        }
        self.cursor.store(cursor, Ordering::Relaxed);
        // Most connections sit idle after a few frames: they should not keep
        // the queue's allocation, and a busy one gets it back in one call.
        state.queue = VecDeque::new();
        frames
    }
}

/// What the outbox followed forgets it, so a source never keeps the waker of
/// a writer that is gone.
impl Drop for Outbox {
    fn drop(&mut self) {
        let key = self.follower_key();
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(source) = state.source.take() {
            source.forget_follower(key);
        }
    }
}

/// Wakes the writer waiting on this state, if one is, after letting go of the
/// lock (so the writer does not wake only to wait for it).
fn wake_writer(mut state: std::sync::MutexGuard<'_, State>) {
    let waker = state.waker.take();
    drop(state);
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Drops every collapsible frame that a newer one with the same key follows.
fn keep_latest_of_each_key(queue: &mut VecDeque<Queued>) {
    let mut seen = std::collections::HashSet::new();
    let mut keep: Vec<bool> = queue
        .iter()
        .rev()
        .map(|q| match &q.frame.urgency {
            Urgency::Collapsible(key) => seen.insert(Arc::clone(key)),
            _ => true,
        })
        .collect();
    keep.reverse();
    let mut keep = keep.into_iter();
    queue.retain(|_| keep.next().unwrap_or(true));
}

fn same_key_slot(queue: &VecDeque<Queued>, urgency: &Urgency) -> Option<usize> {
    let Urgency::Collapsible(key) = urgency else {
        return None;
    };
    queue
        .iter()
        .rposition(|q| matches!(&q.frame.urgency, Urgency::Collapsible(k) if k == key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn essential(text: &str) -> Frame {
        Frame {
            urgency: Urgency::Essential,
            wire: Wire::from(Bytes::copy_from_slice(text.as_bytes())),
        }
    }

    fn presence(uid: &str, text: &str) -> Frame {
        Frame {
            urgency: Urgency::Collapsible(Arc::from(uid)),
            wire: Wire::from(Bytes::copy_from_slice(text.as_bytes())),
        }
    }

    fn line(feed: &Feed, text: &'static str) {
        feed.publish(Wire::from(Bytes::from_static(text.as_bytes())));
    }

    async fn drain(outbox: &Outbox) -> String {
        let mut out = Vec::new();
        match outbox.next(&mut out).await {
            Next::Frames(_) => String::from_utf8(out).unwrap(),
            Next::Close(c) => format!("close {:?}", c.code),
        }
    }

    #[tokio::test]
    async fn for_a_batching_writer_only_the_newest_of_each_key_is_taken() {
        let outbox = Outbox::new(8);
        outbox.batch();
        for frame in [
            presence("x", "1"),
            essential("E"),
            presence("y", "a"),
            presence("x", "2"),
            presence("x", "3"),
        ] {
            outbox.push(frame);
        }
        assert_eq!(drain(&outbox).await, "Ea3");
    }

    #[tokio::test]
    async fn under_capacity_everything_is_kept_in_order() {
        let outbox = Outbox::new(4);
        assert_eq!(outbox.push(essential("a")), Pushed::Queued);
        assert_eq!(outbox.push(presence("1", "b")), Pushed::Queued);
        assert_eq!(drain(&outbox).await, "ab");
    }

    #[tokio::test]
    async fn chat_lines_and_queued_frames_keep_the_order_they_were_made_in() {
        let outbox = Outbox::new(8);
        let feed = Arc::new(Feed::new(8));
        line(&feed, "-");
        outbox.push(essential("J"));
        outbox.follow(feed.clone());
        line(&feed, "a");
        outbox.push(presence("1", "P"));
        line(&feed, "b");
        line(&feed, "c");
        outbox.push(presence("2", "Q"));
        assert_eq!(
            drain(&outbox).await,
            "JaPbcQ",
            "the line before joining is not sent"
        );
        line(&feed, "d");
        assert_eq!(drain(&outbox).await, "d");
    }

    #[tokio::test]
    async fn a_new_line_wakes_a_waiting_writer() {
        let outbox = Arc::new(Outbox::new(4));
        let feed = Arc::new(Feed::new(4));
        outbox.follow(feed.clone());
        let writer = {
            let outbox = Arc::clone(&outbox);
            tokio::spawn(async move { drain(&outbox).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        line(&feed, "x");
        outbox.nudge();
        assert_eq!(writer.await.unwrap(), "x");
    }

    /// A source that wakes its waiting followers itself, as a protocol's
    /// table of newest frames does: publishing never touches an outbox.
    #[derive(Debug, Default)]
    struct SelfWaking {
        frames: std::sync::Mutex<Vec<&'static str>>,
        waiting: std::sync::Mutex<std::collections::HashMap<usize, Waker>>,
    }

    impl SelfWaking {
        fn publish(&self, text: &'static str) {
            self.frames.lock().unwrap().push(text);
            for (_, waker) in self.waiting.lock().unwrap().drain() {
                waker.wake();
            }
        }
    }

    impl Source for SelfWaking {
        fn head(&self) -> u64 {
            self.frames.lock().unwrap().len() as u64
        }
        fn copy_into(&self, cursor: &mut u64, until: u64, _: bool, out: &mut Vec<u8>) -> usize {
            let frames = self.frames.lock().unwrap();
            let end = until.min(frames.len() as u64).max(*cursor);
            for text in &frames[*cursor as usize..end as usize] {
                out.extend_from_slice(text.as_bytes());
            }
            let copied = (end - *cursor) as usize;
            *cursor = end;
            copied
        }
        fn wake_on_change(&self, follower: usize, waker: &Waker) {
            self.waiting.lock().unwrap().insert(follower, waker.clone());
        }
        fn forget_follower(&self, follower: usize) {
            self.waiting.lock().unwrap().remove(&follower);
        }
    }

    #[tokio::test]
    async fn a_source_that_wakes_its_followers_wakes_a_writer_that_waited_before_following() {
        let outbox = Arc::new(Outbox::new(4));
        let source = Arc::new(SelfWaking::default());
        let writer = {
            let outbox = Arc::clone(&outbox);
            tokio::spawn(async move { drain(&outbox).await })
        };
        // The writer parks with nothing followed; following must register it.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        outbox.follow(source.clone());
        source.publish("x");
        let woken = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
        assert_eq!(woken.expect("woken without a nudge").unwrap(), "x");
        // Parked again, then woken by the source alone.
        let writer = {
            let outbox = Arc::clone(&outbox);
            tokio::spawn(async move { drain(&outbox).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        source.publish("y");
        let woken = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
        assert_eq!(woken.expect("woken without a nudge").unwrap(), "y");
        // A dropped outbox is forgotten by what it followed.
        drop(outbox);
        assert!(source.waiting.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_lagging_client_misses_overwritten_lines_only() {
        let outbox = Outbox::new(4);
        let feed = Arc::new(Feed::new(2));
        outbox.follow(feed.clone());
        line(&feed, "a");
        assert!(outbox.missed(0));
        line(&feed, "b");
        line(&feed, "c");
        assert_eq!(drain(&outbox).await, "bc");
        assert!(!outbox.missed(2));
    }

    /// Keeps the older frame's text after a `|` unless the newer one has its own.
    fn keep_name(older: &Wire, newer: &Wire) -> Option<Wire> {
        let older = std::str::from_utf8(older).unwrap();
        let newer = std::str::from_utf8(newer).unwrap();
        match (older.split_once('|'), newer.contains('|')) {
            (Some((_, name)), false) => Some(Wire::from(Bytes::from(format!("{newer}|{name}")))),
            _ => None,
        }
    }

    #[tokio::test]
    async fn collapsing_frames_are_merged_so_the_older_ones_details_survive() {
        let outbox = Outbox::new(2).with_merge(keep_name);
        outbox.push(presence("1", "online|newbie"));
        outbox.push(presence("2", "idle"));
        assert_eq!(outbox.push(presence("1", "dnd")), Pushed::Collapsed);
        assert_eq!(outbox.push(presence("1", "idle")), Pushed::Collapsed);
        assert_eq!(drain(&outbox).await, "idle|newbieidle");
    }

    #[tokio::test]
    async fn a_full_queue_is_replaced_by_a_snapshot_and_the_client_stays() {
        let outbox = Outbox::new(3);
        outbox.push(essential("E"));
        outbox.push(presence("1", "a"));
        outbox.push(presence("2", "b"));
        let snapshot = || Frame {
            urgency: Urgency::Snapshot,
            wire: Wire::from(Bytes::from_static(b"S")),
        };
        assert_eq!(
            outbox.push_or_resynchronise(presence("3", "c"), snapshot),
            Pushed::Resynchronised
        );
        assert_eq!(outbox.push(presence("4", "d")), Pushed::Queued);
        let second = || Frame {
            urgency: Urgency::Snapshot,
            wire: Wire::from(Bytes::from_static(b"T")),
        };
        assert_eq!(
            outbox.push_or_resynchronise(presence("5", "e"), second),
            Pushed::Resynchronised,
            "an older snapshot is superseded too"
        );
        assert_eq!(drain(&outbox).await, "ET");
    }

    #[tokio::test]
    async fn when_full_presence_collapses_and_then_the_client_is_closed() {
        let outbox = Outbox::new(2);
        outbox.push(presence("1", "p1-old"));
        outbox.push(presence("2", "p2"));
        assert_eq!(outbox.push(presence("1", "p1-new")), Pushed::Collapsed);
        assert_eq!(outbox.push(presence("3", "p3")), Pushed::Overflowed);
        assert_eq!(
            drain(&outbox).await,
            format!("close {:?}", Some(CLOSE_TOO_SLOW))
        );
        assert_eq!(outbox.push(presence("4", "p4")), Pushed::Dropped);
    }

    #[tokio::test]
    async fn a_finishing_outbox_sends_what_was_queued_then_closes() {
        let outbox = Outbox::new(4);
        outbox.push(essential("last words"));
        outbox.finish(CloseRequest::new(4000, "bye"));
        assert_eq!(outbox.push(essential("too late")), Pushed::Dropped);
        assert_eq!(drain(&outbox).await, "last words");
        assert_eq!(drain(&outbox).await, format!("close {:?}", Some(4000)));
    }
}
