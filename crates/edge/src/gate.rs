//! The door every TCP connection passes before anything is read from it: the
//! server's connection budget, the limit per client address, and the places
//! that connections must earn.
//!
//! A process has a fixed number of file descriptors (`ulimit -n`). If anyone
//! could hold them all, by opening connections and saying nothing, nobody else
//! could connect, and `/healthz` would fail with the rest. So:
//!
//! - the **budget** is the open-files limit less a reserve (for the listener,
//!   log files, static files, outgoing connections to Discord...): the gate
//!   never lets more connections than that be open at once;
//! - each **client address** may hold only a share of the budget (a quarter by
//!   default), and at most a few TLS handshakes at a time, so one address can
//!   never take the server down by itself;
//! - a connection is **unearned** until its protocol says it has done what a
//!   real client does (a d-zone client joined a server, a CloudLink client
//!   identified itself). When the budget is spent, the oldest unearned
//!   connection is evicted to make room for the new one: whoever holds many
//!   silent connections, from however many addresses, loses them first, and a
//!   newcomer still gets in. Connections that earned their place are never
//!   evicted.
//!
//! The time limits that make a silent connection go away by itself are applied
//! where the connection is served (see [`crate::server`] and [`Deadlines`]);
//! the gate only counts and evicts.
//!
//! [`Deadlines`]: crate::Deadlines

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use ipnet::IpNet;

/// File descriptors kept out of the connection budget for everything else the
/// process opens.
pub const FD_RESERVE: usize = 64;

/// Why the gate turned a connection away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turned {
    /// The address already holds its share of connections.
    TooManyFromAddress,
    /// The address already has its share of TLS handshakes in flight.
    TooManyHandshakes,
    /// The budget is spent and every open connection has earned its place.
    Full,
}

impl Turned {
    /// Label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Turned::TooManyFromAddress => "per_ip",
            Turned::TooManyHandshakes => "tls_handshakes_per_ip",
            Turned::Full => "connection_budget",
        }
    }
}

/// The connection budget and who holds it.
#[derive(Debug)]
pub struct Gate {
    /// Most connections open at once.
    budget: usize,
    /// Most connections from one address.
    per_address: usize,
    /// Most TLS handshakes in flight from one address.
    handshakes_per_address: usize,
    /// Peers whose connections carry many clients (reverse proxies): not
    /// limited per address here; the WebSocket admission counts their clients.
    trusted: Vec<IpNet>,
    state: Mutex<GateState>,
    /// Connections evicted since start, for operators.
    evictions: AtomicU64,
}

#[derive(Debug, Default)]
struct GateState {
    open: usize,
    by_address: HashMap<IpAddr, PerAddress>,
    /// Connections that have not earned their place, oldest first.
    unearned: BTreeMap<u64, Weak<Place>>,
    /// Every place, to be told when the server shuts down.
    places: HashMap<u64, Weak<Place>>,
    shutting_down: bool,
    next_id: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct PerAddress {
    connections: usize,
    handshakes: usize,
}

/// Bits of [`Place::flags`].
const EARNED: u8 = 1;
const EVICTED: u8 = 2;
const SHUT_DOWN: u8 = 4;

/// Why the gate asks a connection to leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// The server is shutting down.
    ShutDown,
    /// The budget was spent and this connection had not earned its place.
    Evicted,
}

/// A connection's place, held for its whole life (shared by the task serving
/// its HTTP requests and, after an upgrade, by its WebSocket session); the
/// place is given back when the last holder drops it.
///
/// It is also how the gate asks the connection to leave: a flag and one
/// waker rather than a cancellation token per connection, which cost about
/// 200 bytes in every idle connection (the token's node in the shutdown
/// tree and the boxed future waiting on it). One waker is enough because one
/// task at a time waits: the HTTP connection's until it hands the socket to
/// the WebSocket session, then the session's.
#[derive(Debug)]
pub struct Place {
    gate: Arc<Gate>,
    id: u64,
    /// `None` for a trusted proxy, which is not counted per address.
    address: Option<IpAddr>,
    /// [`EARNED`], [`EVICTED`], [`SHUT_DOWN`].
    flags: AtomicU8,
    waker: AtomicWaker,
}

impl Gate {
    /// A gate for `budget` connections, at most `per_address` of them (and
    /// `handshakes_per_address` TLS handshakes) from one untrusted address.
    pub fn new(
        budget: usize,
        per_address: usize,
        handshakes_per_address: usize,
        trusted: Vec<IpNet>,
    ) -> Self {
        Self {
            budget: budget.max(1),
            per_address: per_address.max(1),
            handshakes_per_address: handshakes_per_address.max(1),
            trusted,
            state: Mutex::new(GateState::default()),
            evictions: AtomicU64::new(0),
        }
    }

    /// Asks every connection, and every one that still comes, to leave
    /// because the server shuts down.
    pub fn shut_down(&self) {
        let places: Vec<_> = {
            let mut state = self.state();
            state.shutting_down = true;
            state.places.values().filter_map(Weak::upgrade).collect()
        };
        for place in places {
            place.ask_to_leave(SHUT_DOWN);
        }
    }

    /// The budget for a process whose open-files limit is `fd_limit`.
    pub fn budget_for(fd_limit: usize) -> usize {
        fd_limit.saturating_sub(FD_RESERVE).max(16)
    }

    /// This process's open-files limit (its soft `RLIMIT_NOFILE`).
    pub fn fd_limit() -> usize {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        limit
            .current
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Most connections open at once.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Most connections from one address.
    pub fn per_address(&self) -> usize {
        self.per_address
    }

    fn state(&self) -> MutexGuard<'_, GateState> {
        // Every update is a few counter changes that cannot panic half-way.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.state().open
    }

    /// Takes a place for a connection from `address`, evicting the oldest
    /// unearned connection if the budget is spent, or says why not.
    pub fn enter(self: &Arc<Self>, address: IpAddr) -> Result<Arc<Place>, Turned> {
        let address = address.to_canonical();
        let counted = (!self.trusted.iter().any(|net| net.contains(&address))).then_some(address);
        let mut state = self.state();
        if let Some(address) = counted
            && state
                .by_address
                .get(&address)
                .is_some_and(|a| a.connections >= self.per_address)
        {
            return Err(Turned::TooManyFromAddress);
        }
        if state.open >= self.budget && !self.evict_oldest(&mut state) {
            return Err(Turned::Full);
        }
        state.open += 1;
        if let Some(address) = counted {
            state.by_address.entry(address).or_default().connections += 1;
        }
        let id = state.next_id;
        state.next_id += 1;
        let place = Arc::new(Place {
            gate: Arc::clone(self),
            id,
            address: counted,
            flags: AtomicU8::new(if state.shutting_down { SHUT_DOWN } else { 0 }),
            waker: AtomicWaker::new(),
        });
        state.unearned.insert(id, Arc::downgrade(&place));
        state.places.insert(id, Arc::downgrade(&place));
        Ok(place)
    }

    /// Evicts the oldest unearned connection, if there is one (the accept loop
    /// calls this when the operating system itself runs out of descriptors).
    pub fn evict_one(&self) -> bool {
        self.evict_oldest(&mut self.state())
    }

    /// Connections evicted since the gate was made.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Asks the oldest unearned place to leave; it stays counted until its
    /// holder lets go.
    fn evict_oldest(&self, state: &mut GateState) -> bool {
        while let Some((_, place)) = state.unearned.pop_first() {
            // A place whose last holder is letting go right now is leaving anyway.
            if let Some(place) = place.upgrade() {
                place.ask_to_leave(EVICTED);
                self.evictions.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
        false
    }
}

impl Place {
    /// Marks the connection as a real client: it is no longer evicted when the
    /// budget runs out, and its protocol's join deadline no longer applies.
    pub fn earn(&self) {
        if self.flags.fetch_or(EARNED, Ordering::Relaxed) & EARNED == 0 {
            self.gate.state().unearned.remove(&self.id);
        }
    }

    /// Whether [`earn`](Self::earn) was called.
    pub fn is_earned(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & EARNED != 0
    }

    /// Whether the gate asked this connection to leave, and why (a shutdown
    /// wins over an eviction).
    pub fn leave(&self) -> Option<Leave> {
        let flags = self.flags.load(Ordering::Acquire);
        if flags & SHUT_DOWN != 0 {
            Some(Leave::ShutDown)
        } else if flags & EVICTED != 0 {
            Some(Leave::Evicted)
        } else {
            None
        }
    }

    /// Ready once the gate asks this connection to leave; wakes the task
    /// that polled it last (see the type's documentation).
    pub fn poll_leave(&self, cx: &mut Context<'_>) -> Poll<Leave> {
        if let Some(leave) = self.leave() {
            return Poll::Ready(leave);
        }
        self.waker.register(cx.waker());
        self.leave().map_or(Poll::Pending, Poll::Ready)
    }

    /// [`poll_leave`](Self::poll_leave) as a future.
    pub async fn left(&self) -> Leave {
        std::future::poll_fn(|cx| self.poll_leave(cx)).await
    }

    /// Whether the gate has evicted this connection.
    pub fn is_evicted(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & EVICTED != 0
    }

    fn ask_to_leave(&self, why: u8) {
        self.flags.fetch_or(why, Ordering::Release);
        self.waker.wake();
    }

    /// Counts a TLS handshake in flight for this connection's address, or says
    /// the address has too many; the count ends when the guard is dropped.
    pub fn start_handshake(&self) -> Result<HandshakeGuard<'_>, Turned> {
        let Some(address) = self.address else {
            return Ok(HandshakeGuard { place: self });
        };
        let mut state = self.gate.state();
        let entry = state.by_address.entry(address).or_default();
        if entry.handshakes >= self.gate.handshakes_per_address {
            return Err(Turned::TooManyHandshakes);
        }
        entry.handshakes += 1;
        Ok(HandshakeGuard { place: self })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut state = self.gate.state();
        state.open -= 1;
        state.unearned.remove(&self.id);
        state.places.remove(&self.id);
        if let Some(address) = self.address
            && let Some(entry) = state.by_address.get_mut(&address)
        {
            entry.connections -= 1;
            if entry.connections == 0 && entry.handshakes == 0 {
                state.by_address.remove(&address);
            }
        }
    }
}

/// A TLS handshake in flight, counted against its address.
#[derive(Debug)]
pub struct HandshakeGuard<'a> {
    place: &'a Place,
}

impl Drop for HandshakeGuard<'_> {
    fn drop(&mut self) {
        let Some(address) = self.place.address else {
            return;
        };
        let mut state = self.place.gate.state();
        if let Some(entry) = state.by_address.get_mut(&address) {
            entry.handshakes -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_address_gets_only_its_share() {
        let gate = Arc::new(Gate::new(10, 2, 1, Vec::new()));
        let _a = gate.enter(ip("192.0.2.1")).unwrap();
        let b = gate.enter(ip("192.0.2.1")).unwrap();
        assert_eq!(
            gate.enter(ip("192.0.2.1")).unwrap_err(),
            Turned::TooManyFromAddress
        );
        assert!(gate.enter(ip("192.0.2.2")).is_ok());
        drop(b);
        assert!(gate.enter(ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn a_spent_budget_evicts_the_oldest_unearned_connection() {
        let gate = Arc::new(Gate::new(2, 2, 1, Vec::new()));
        let first = gate.enter(ip("192.0.2.1")).unwrap();
        let second = gate.enter(ip("192.0.2.2")).unwrap();
        second.earn();
        let third = gate.enter(ip("192.0.2.3")).unwrap();
        assert!(first.is_evicted(), "the oldest unearned one makes room");
        assert!(!second.is_evicted());
        third.earn();
        assert_eq!(
            gate.enter(ip("192.0.2.4")).unwrap_err(),
            Turned::Full,
            "every remaining place was earned (the evicted one is still closing)"
        );
        drop(first);
        drop(second);
        let _fourth = gate.enter(ip("192.0.2.4")).unwrap();
        assert_eq!(gate.open(), 2);
    }

    #[test]
    fn shutdown_asks_every_place_to_leave_and_wakes_its_waiter() {
        let gate = Arc::new(Gate::new(10, 10, 1, Vec::new()));
        let earned = gate.enter(ip("192.0.2.1")).unwrap();
        earned.earn();
        let unearned = gate.enter(ip("192.0.2.2")).unwrap();
        let woken = Arc::new(Flag::default());
        let waker = std::task::Waker::from(Arc::clone(&woken));
        let mut cx = Context::from_waker(&waker);
        assert!(earned.poll_leave(&mut cx).is_pending());
        gate.shut_down();
        assert!(woken.0.load(Ordering::SeqCst), "the waiting task is woken");
        assert_eq!(earned.poll_leave(&mut cx), Poll::Ready(Leave::ShutDown));
        assert_eq!(unearned.leave(), Some(Leave::ShutDown));
        let late = gate.enter(ip("192.0.2.3")).unwrap();
        assert_eq!(
            late.leave(),
            Some(Leave::ShutDown),
            "a place taken after shutdown leaves at once"
        );
    }

    #[test]
    fn an_evicted_place_is_told_so_and_a_dropped_one_is_forgotten() {
        let gate = Arc::new(Gate::new(2, 2, 1, Vec::new()));
        let gone = gate.enter(ip("192.0.2.1")).unwrap();
        drop(gone);
        let first = gate.enter(ip("192.0.2.1")).unwrap();
        let _second = gate.enter(ip("192.0.2.2")).unwrap();
        let _third = gate.enter(ip("192.0.2.3")).unwrap();
        assert_eq!(first.leave(), Some(Leave::Evicted));
        assert_eq!(gate.evictions(), 1);
        assert_eq!(gate.state().places.len(), 3);
    }

    /// A waker that records that it was woken.
    #[derive(Default)]
    struct Flag(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn handshakes_are_limited_per_address_and_proxies_are_not() {
        let gate = Arc::new(Gate::new(10, 1, 1, vec!["10.0.0.0/8".parse().unwrap()]));
        let place = gate.enter(ip("192.0.2.1")).unwrap();
        let first = place.start_handshake().unwrap();
        assert_eq!(
            place.start_handshake().unwrap_err(),
            Turned::TooManyHandshakes
        );
        drop(first);
        assert!(place.start_handshake().is_ok());
        let _p1 = gate.enter(ip("10.0.0.1")).unwrap();
        let _p2 = gate.enter(ip("10.0.0.1")).unwrap();
    }
}
