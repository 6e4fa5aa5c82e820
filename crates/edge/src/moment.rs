//! A point in time in eight bytes, for the deadlines every connection keeps.
//!
//! A [`tokio::time::Instant`] takes sixteen bytes, and a connection's driver
//! keeps five of them (next ping, last heard, next batch, a blocked write's
//! start, the close's deadline). Counted in milliseconds since the process's
//! first moment they take half that, and an absent one (`Option<Moment>`)
//! takes no more, which keeps the future of an idle connection below the next
//! step of the runtime's task size. A millisecond is far finer than any of
//! those deadlines needs, and a `u64` of them does not run out.
//!
//! Moments follow tokio's clock, so they move with it in tests that pause
//! time, as long as the clock is not moved back before the first moment.

use std::num::NonZeroU64;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// When the first moment was taken; every moment counts from here.
static EPOCH: OnceLock<Instant> = OnceLock::new();

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// A point in time, to the millisecond (stored plus one, so that `None`
/// needs no room of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Moment(NonZeroU64);

impl Moment {
    /// Now.
    pub(crate) fn now() -> Self {
        Self::from_instant(Instant::now())
    }

    /// `instant`, rounded down to the millisecond.
    pub(crate) fn from_instant(instant: Instant) -> Self {
        let since = instant.saturating_duration_since(epoch());
        let ms = u64::try_from(since.as_millis()).unwrap_or(u64::MAX - 1);
        Self(NonZeroU64::MIN.saturating_add(ms))
    }

    /// This moment as an [`Instant`], for a timer.
    pub(crate) fn instant(self) -> Instant {
        epoch() + Duration::from_millis(self.0.get() - 1)
    }

    /// `duration` later.
    pub(crate) fn after(self, duration: Duration) -> Self {
        let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(ms))
    }

    /// How long ago this was (zero if it has not come yet).
    pub(crate) fn elapsed(self) -> Duration {
        Moment::now().since(self)
    }

    fn since(self, earlier: Moment) -> Duration {
        Duration::from_millis(self.0.get().saturating_sub(earlier.0.get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moment_is_eight_bytes_with_or_without_a_value() {
        assert_eq!(std::mem::size_of::<Moment>(), 8);
        assert_eq!(std::mem::size_of::<Option<Moment>>(), 8);
    }

    #[tokio::test]
    async fn moments_order_like_the_instants_they_stand_for() {
        let now = Moment::now();
        let later = now.after(Duration::from_millis(1500));
        assert!(later > now);
        assert_eq!(later.since(now), Duration::from_millis(1500));
        assert_eq!(now.since(later), Duration::ZERO);
        let instant = later.instant();
        assert_eq!(Moment::from_instant(instant), later);
        assert!(instant >= Instant::now() + Duration::from_millis(1400));
    }
}
