//! Frames kept once for many connections, which each connection's writer
//! copies from at its own pace: what an [`Outbox`](crate::outbox::Outbox)
//! can follow besides its own queue.
//!
//! A broadcast to thousands of clients costs one queue push per client when
//! every outbox holds its own reference to the frame. A protocol whose
//! broadcasts a client may read late (chat lines that may be missed, the
//! newest value of a variable) can instead keep them in one shared place,
//! numbered by *position*, and let each writer copy what lies past the
//! position it has read up to. The broadcast is then one write to the shared
//! place, and only idle writers are woken.
//!
//! Two kinds exist: the [`Feed`](crate::feed::Feed), a ring of the last
//! chat lines (older lines are lost to a client that lags), and a protocol's
//! own table of the newest frame per key, where a lagging client reads only
//! what is newest (the Scratch host's batched variables).

use std::fmt::Debug;
use std::task::Waker;

/// Frames numbered by position, shared by the connections that follow them.
///
/// Positions only grow. Each follower keeps a cursor: the first position it
/// has not yet copied.
///
/// ```
/// use std::sync::Mutex;
/// use edge::source::Source;
///
/// /// Every frame ever published, never forgotten (a test double).
/// #[derive(Debug, Default)]
/// struct Log(Mutex<Vec<Vec<u8>>>);
///
/// impl Source for Log {
///     fn head(&self) -> u64 {
///         self.0.lock().unwrap().len() as u64
///     }
///     fn copy_into(&self, cursor: &mut u64, until: u64, _deflate: bool, out: &mut Vec<u8>) -> usize {
///         let frames = self.0.lock().unwrap();
///         let end = until.min(frames.len() as u64);
///         let start = (*cursor).min(end);
///         for frame in &frames[start as usize..end as usize] {
///             out.extend_from_slice(frame);
///         }
///         *cursor = end.max(*cursor);
///         (end - start) as usize
///     }
/// }
///
/// let log = Log::default();
/// log.0.lock().unwrap().push(b"a".to_vec());
/// let (mut cursor, mut out) = (0, Vec::new());
/// assert_eq!(log.copy_into(&mut cursor, u64::MAX, false, &mut out), 1);
/// assert_eq!((cursor, out.as_slice()), (1, &b"a"[..]));
/// ```
pub trait Source: Send + Sync + Debug {
    /// The position the next frame will get. A follower whose cursor is
    /// below it has something to read.
    fn head(&self) -> u64;

    /// Appends to `out` the frames a follower at `*cursor` should get from
    /// positions before `until` (in the form it negotiated: `deflate`),
    /// moves the cursor past them, and returns how many frames were copied.
    fn copy_into(&self, cursor: &mut u64, until: u64, deflate: bool, out: &mut Vec<u8>) -> usize;

    /// Called by a follower's writer as it waits for work: a source that
    /// wakes its followers itself keeps `waker` under `follower` (one entry
    /// per follower, replaced on each call) and wakes it once the head moves.
    /// The default keeps nothing: then whoever publishes must
    /// [`nudge`](crate::outbox::Outbox::nudge) each follower, a cost per
    /// follower and per frame that a source with thousands of followers
    /// avoids by waking only those that wait.
    fn wake_on_change(&self, follower: usize, waker: &Waker) {
        let _ = (follower, waker);
    }

    /// Forgets `follower`'s waker: it stopped following, or is gone.
    fn forget_follower(&self, follower: usize) {
        let _ = follower;
    }
}
