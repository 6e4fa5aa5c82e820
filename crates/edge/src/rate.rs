//! How many frames one client may send, and what to do when it sends more.
//!
//! Every protocol needs the same three answers for a frame: handle it, refuse
//! it (telling the client once per streak, so a flood does not turn into a
//! flood of replies), or give up on a client that keeps going far over its
//! allowance. The protocol decides what "telling" and "giving up" look like on
//! its wire; the counting lives here, on top of `governor`'s token bucket.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Frames over the rate in a row, each refused, before the client is given up on.
pub const ABUSE_STREAK: u32 = 50;

/// A client's allowance of frames: a steady rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRate {
    /// Frames per second, sustained.
    pub per_second: NonZeroU32,
    /// Frames that may come at once.
    pub burst: NonZeroU32,
}

impl MessageRate {
    /// `None` when `per_second` is 0 (no limit); a zero burst means one frame.
    ///
    /// ```
    /// use edge::rate::MessageRate;
    /// assert!(MessageRate::new(0, 20).is_none());
    /// assert_eq!(MessageRate::new(10, 0).unwrap().burst.get(), 1);
    /// ```
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        let per_second = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Some(Self { per_second, burst })
    }
}

/// What to do with one frame under the rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    /// Within the allowance.
    Handle,
    /// Refuse it; `tell` is true on the first refusal of a streak.
    Refuse { tell: bool },
    /// The client kept sending over its rate: end the connection.
    Close,
}

/// One client's frame allowance and how far over it the client is.
pub struct RateGuard {
    limiter: DefaultDirectRateLimiter,
    /// Frames refused in a row; reset by any frame within the rate.
    streak: u32,
}

impl std::fmt::Debug for RateGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateGuard")
            .field("streak", &self.streak)
            .finish_non_exhaustive()
    }
}

impl RateGuard {
    /// A full allowance.
    pub fn new(rate: MessageRate) -> Self {
        let quota = Quota::per_second(rate.per_second).allow_burst(rate.burst);
        Self {
            limiter: RateLimiter::direct(quota),
            streak: 0,
        }
    }

    /// Spends one frame of the allowance, if there is any left.
    ///
    /// ```
    /// use edge::rate::{MessageRate, RateGuard, RateVerdict};
    /// let mut guard = RateGuard::new(MessageRate::new(1, 1).unwrap());
    /// assert_eq!(guard.check(), RateVerdict::Handle);
    /// assert_eq!(guard.check(), RateVerdict::Refuse { tell: true });
    /// assert_eq!(guard.check(), RateVerdict::Refuse { tell: false });
    /// ```
    pub fn check(&mut self) -> RateVerdict {
        if self.limiter.check().is_ok() {
            self.streak = 0;
            return RateVerdict::Handle;
        }
        self.streak += 1;
        if self.streak >= ABUSE_STREAK {
            RateVerdict::Close
        } else {
            RateVerdict::Refuse {
                tell: self.streak == 1,
            }
        }
    }
}
