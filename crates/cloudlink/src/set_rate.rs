//! `--max-sets-per-second`: a per-connection limit on Scratch `set`s that
//! never leaves a room in the wrong state.
//!
//! Each connection counts its sets in one-second windows. Past the limit a
//! set is not broadcast; its value waits, replacing any value of the same
//! variable that waited before it (counted as dropped), and when the window
//! ends the latest waiting value of each variable is applied like a set of
//! its own. A project that animates a variable 60 times a second then costs
//! its room at most the limit plus one set per variable a second, and every
//! member still ends with the value the client set last.
//!
//! Order is kept: waiting values are applied before any set of the next
//! window (by that set, or by the timer at the window's end, whichever comes
//! first), under this connection's window lock, which is always taken before
//! the registry's lock.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;
use tokio::time::Instant;

/// How long one counting window lasts.
pub(crate) const WINDOW: Duration = Duration::from_secs(1);

/// One connection's window; see the module doc.
#[derive(Debug, Default)]
pub(crate) struct SetWindow(Mutex<Window>);

#[derive(Debug, Default)]
pub(crate) struct Window {
    started: Option<Instant>,
    sets: u32,
    /// (project, variable) → the latest value that waits.
    waiting: IndexMap<(String, String), Value>,
    /// Whether a timer will apply the waiting values at the window's end.
    timer: bool,
}

/// What to do with one set.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Apply it now.
    Now,
    /// It waits for the window's end; `replaced` if it replaced a waiting value.
    Waits { replaced: bool, start_timer: bool },
}

impl SetWindow {
    /// The window, for one decision and the applying it leads to.
    pub fn lock(&self) -> MutexGuard<'_, Window> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Window {
    /// Values from an ended window that must be applied before anything
    /// else; empty while the window lasts.
    pub fn take_if_ended(&mut self, now: Instant) -> IndexMap<(String, String), Value> {
        if self
            .started
            .is_some_and(|at| now.duration_since(at) >= WINDOW)
        {
            self.started = None;
            self.sets = 0;
            return std::mem::take(&mut self.waiting);
        }
        IndexMap::new()
    }

    /// Counts a set of `name` in `project` against `limit`.
    pub fn admit(
        &mut self,
        limit: u32,
        now: Instant,
        project: &str,
        name: &str,
        value: &Value,
    ) -> Admit {
        self.started.get_or_insert(now);
        if self.sets < limit {
            self.sets += 1;
            return Admit::Now;
        }
        let replaced = self
            .waiting
            .insert((project.to_owned(), name.to_owned()), value.clone())
            .is_some();
        let start_timer = !std::mem::replace(&mut self.timer, true);
        Admit::Waits {
            replaced,
            start_timer,
        }
    }

    /// When the current window ends.
    pub fn ends_at(&self) -> Option<Instant> {
        self.started.map(|at| at + WINDOW)
    }

    /// The timer fired: everything waiting, and no timer any more.
    pub fn take_for_timer(&mut self) -> IndexMap<(String, String), Value> {
        self.timer = false;
        self.started = None;
        self.sets = 0;
        std::mem::take(&mut self.waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn past_the_limit_the_latest_value_of_each_variable_waits() {
        let mut window = Window::default();
        let t0 = Instant::now();
        assert_eq!(window.admit(2, t0, "p", "a", &json!(1)), Admit::Now);
        assert_eq!(window.admit(2, t0, "p", "a", &json!(2)), Admit::Now);
        assert_eq!(
            window.admit(2, t0, "p", "a", &json!(3)),
            Admit::Waits {
                replaced: false,
                start_timer: true
            }
        );
        assert_eq!(
            window.admit(2, t0, "p", "a", &json!(4)),
            Admit::Waits {
                replaced: true,
                start_timer: false
            }
        );
        assert!(window.take_if_ended(t0 + WINDOW / 2).is_empty());
        let waiting = window.take_if_ended(t0 + WINDOW);
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[&("p".to_owned(), "a".to_owned())], json!(4));
        assert_eq!(
            window.admit(2, t0 + WINDOW, "p", "a", &json!(5)),
            Admit::Now
        );
    }
}
