//! A client's allowance of frames: a steady rate with a burst, and what to do
//! with a client that keeps sending past it.
//!
//! A frame over the allowance is not handled; the first of a streak earns the
//! client one error message (the protocol decides its wording), and a client
//! that sends [`ABUSE_STREAK`] refused frames in a row is closed with 1008.
//! The token bucket is `governor`'s.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Frames over the rate in a row, each refused, before the client is closed.
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

/// What to do with one frame under the allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it.
    Handle,
    /// Refuse it; tell the client on the first of a streak.
    Refuse {
        /// Whether this is the first refusal of a streak.
        tell: bool,
    },
    /// Close the connection with 1008.
    Close,
}

/// One connection's allowance and how far over it the client is.
#[derive(Debug)]
pub struct RateGuard {
    limiter: DefaultDirectRateLimiter,
    /// Frames refused in a row; reset by any frame within the rate.
    streak: u32,
}

impl RateGuard {
    /// A full bucket for `rate`.
    pub fn new(rate: MessageRate) -> Self {
        let quota = Quota::per_second(rate.per_second).allow_burst(rate.burst);
        Self {
            limiter: RateLimiter::direct(quota),
            streak: 0,
        }
    }

    /// Judges one incoming frame.
    pub fn check(&mut self) -> Verdict {
        if self.limiter.check().is_ok() {
            self.streak = 0;
            return Verdict::Handle;
        }
        self.streak += 1;
        if self.streak >= ABUSE_STREAK {
            Verdict::Close
        } else {
            Verdict::Refuse {
                tell: self.streak == 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_one_refusal_is_told_then_a_streak_closes() {
        let mut guard = RateGuard::new(MessageRate::new(1, 2).unwrap());
        assert_eq!(guard.check(), Verdict::Handle);
        assert_eq!(guard.check(), Verdict::Handle);
        assert_eq!(guard.check(), Verdict::Refuse { tell: true });
        for _ in 2..ABUSE_STREAK {
            assert_eq!(guard.check(), Verdict::Refuse { tell: false });
        }
        assert_eq!(guard.check(), Verdict::Close);
    }
}
