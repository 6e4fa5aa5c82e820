//! A connection's bounded queue of encoded frames, between the hub and the socket.
//!
//! The hub pushes into it without ever waiting; the connection's writer task
//! drains everything queued in one go and writes it as one batch. When a
//! browser cannot keep up, the queue degrades in a way the client survives:
//! chat lines are dropped first, a newer presence for a user replaces the older
//! one still waiting (so the client still ends up right), and when neither makes
//! room the connection is closed with [`CLOSE_TOO_SLOW`]. Memory per connection
//! is therefore bounded by the capacity, whatever the producers do.
//!
//! A `VecDeque` behind a `std::sync::Mutex` is used rather than a channel
//! because the degradation rules need to look into, and rewrite, what is
//! already queued; the lock is only ever held for a few pointer moves.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

/// Close code sent to a client that fell too far behind (RFC 6455 "Try Again Later").
pub const CLOSE_TOO_SLOW: u16 = 1013;

/// How a queued frame may be treated under pressure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Urgency {
    /// Lost without harm when the client is behind (chat lines).
    Droppable,
    /// Only the newest frame with the same key matters (a user's presence).
    Collapsible(std::sync::Arc<str>),
    /// Must arrive (server-list, server-join, errors).
    Essential,
}

/// One frame waiting for the socket, already in wire format (see [`crate::ws`]).
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub urgency: Urgency,
    /// Header and payload, shared by every watcher the frame was broadcast to.
    pub wire: Bytes,
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.wire
    }
}

/// Why the writer should stop, and what close frame to send (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseRequest {
    /// `None` when the peer already closed and no frame should be sent.
    pub code: Option<u16>,
    pub reason: &'static str,
}

/// What became of a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued as is.
    Queued,
    /// Replaced an older frame with the same key, or displaced a chat line.
    Degraded,
    /// Not queued: a chat line for a client that is behind.
    Dropped,
    /// The client is too far behind; the connection is being closed.
    Overflowed,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Frame>,
    close: Option<CloseRequest>,
}

/// What the writer gets from [`Outbox::next`].
#[derive(Debug)]
pub(crate) enum Next {
    /// Frames to write, oldest first.
    Frames,
    /// Stop writing; send this close frame first if it has a code.
    Close(CloseRequest),
}

/// The bounded outbox of one connection.
#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    ready: Notify,
    capacity: usize,
}

impl Outbox {
    /// An empty outbox that holds at most `capacity` frames.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    /// Queues a frame without waiting, degrading as the module doc says.
    pub fn push(&self, frame: Frame) -> Pushed {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.close.is_some() {
            return Pushed::Dropped;
        }
        // The writer empties the whole queue each time it wakes, so only a push
        // into an empty queue has to wake it; skipping the rest matters when one
        // broadcast pushes into thousands of outboxes.
        let wake = state.queue.is_empty();
        let outcome = if state.queue.len() < self.capacity {
            state.queue.push_back(frame);
            Pushed::Queued
        } else if let Some(slot) = same_key_slot(&state.queue, &frame.urgency) {
            state.queue[slot] = frame;
            Pushed::Degraded
        } else if frame.urgency == Urgency::Droppable {
            Pushed::Dropped
        } else if let Some(chat) = state
            .queue
            .iter()
            .position(|f| f.urgency == Urgency::Droppable)
        {
            state.queue.remove(chat);
            state.queue.push_back(frame);
            Pushed::Degraded
        } else {
            state.queue.clear();
            state.close = Some(CloseRequest {
                code: Some(CLOSE_TOO_SLOW),
                reason: "too slow: fell behind the broadcasts",
            });
            Pushed::Overflowed
        };
        drop(state);
        if wake || outcome == Pushed::Overflowed {
            self.ready.notify_one();
        }
        outcome
    }

    /// Asks the writer to stop; the first request wins.
    pub fn close(&self, request: CloseRequest) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.close.is_none() {
            state.close = Some(request);
        }
        drop(state);
        self.ready.notify_one();
    }

    /// Waits until there is something to do, then hands every queued frame over
    /// in `batch`, which must be empty: the two queues are swapped, so the lock
    /// is held for a pointer swap however long the queue was.
    ///
    /// Only one task (the connection's writer) may call this.
    pub async fn next(&self, batch: &mut VecDeque<Frame>) -> Next {
        debug_assert!(batch.is_empty());
        loop {
            {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(close) = &state.close {
                    return Next::Close(close.clone());
                }
                if !state.queue.is_empty() {
                    std::mem::swap(&mut state.queue, batch);
                    // A burst should not pin its peak allocation for the life of an idle connection.
                    if batch.len() < 16 && state.queue.capacity() > 64 {
                        state.queue = VecDeque::new();
                    }
                    return Next::Frames;
                }
            }
            self.ready.notified().await;
        }
    }
}

fn same_key_slot(queue: &VecDeque<Frame>, urgency: &Urgency) -> Option<usize> {
    let Urgency::Collapsible(key) = urgency else {
        return None;
    };
    queue
        .iter()
        .rposition(|f| matches!(&f.urgency, Urgency::Collapsible(k) if k == key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn frame(urgency: Urgency, text: &str) -> Frame {
        Frame {
            urgency,
            wire: Bytes::copy_from_slice(text.as_bytes()),
        }
    }

    fn presence(uid: &str, text: &str) -> Frame {
        frame(Urgency::Collapsible(Arc::from(uid)), text)
    }

    async fn drain(outbox: &Outbox) -> Vec<String> {
        let mut batch = VecDeque::new();
        match outbox.next(&mut batch).await {
            Next::Frames => batch
                .iter()
                .map(|f| String::from_utf8_lossy(&f.wire).into_owned())
                .collect(),
            Next::Close(c) => vec![format!("close {:?}", c.code)],
        }
    }

    #[tokio::test]
    async fn under_capacity_everything_is_kept_in_order() {
        let outbox = Outbox::new(4);
        assert_eq!(outbox.push(frame(Urgency::Essential, "a")), Pushed::Queued);
        assert_eq!(outbox.push(frame(Urgency::Droppable, "b")), Pushed::Queued);
        assert_eq!(outbox.push(presence("1", "c")), Pushed::Queued);
        assert_eq!(drain(&outbox).await, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn when_full_chat_is_dropped_and_presence_collapses() {
        let outbox = Outbox::new(3);
        outbox.push(presence("1", "p1-old"));
        outbox.push(frame(Urgency::Droppable, "chat1"));
        outbox.push(presence("2", "p2"));
        assert_eq!(
            outbox.push(frame(Urgency::Droppable, "chat2")),
            Pushed::Dropped
        );
        assert_eq!(outbox.push(presence("1", "p1-new")), Pushed::Degraded);
        // A presence for a user with nothing queued displaces the chat line.
        assert_eq!(outbox.push(presence("3", "p3")), Pushed::Degraded);
        assert_eq!(drain(&outbox).await, ["p1-new", "p2", "p3"]);
    }

    #[tokio::test]
    async fn when_nothing_can_give_way_the_client_is_closed() {
        let outbox = Outbox::new(2);
        outbox.push(presence("1", "p1"));
        outbox.push(presence("2", "p2"));
        assert_eq!(outbox.push(presence("3", "p3")), Pushed::Overflowed);
        assert_eq!(
            drain(&outbox).await,
            [format!("close {:?}", Some(CLOSE_TOO_SLOW))]
        );
        assert_eq!(outbox.push(presence("4", "p4")), Pushed::Dropped);
    }
}
