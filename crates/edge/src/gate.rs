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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::IpNet;
use tokio_util::sync::CancellationToken;

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
    /// The server's shutdown, when set: each place's stop signal is then
    /// also cancelled by it (see [`Place::stopped`]).
    shutdown: Option<CancellationToken>,
}

#[derive(Debug, Default)]
struct GateState {
    open: usize,
    by_address: HashMap<IpAddr, PerAddress>,
    /// Connections that have not earned their place, oldest first.
    unearned: BTreeMap<u64, Arc<PlaceShared>>,
    next_id: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct PerAddress {
    connections: usize,
    handshakes: usize,
}

/// What a connection and the gate both see of its place.
#[derive(Debug)]
struct PlaceShared {
    /// Cancelled when the gate evicts the connection, and (a child of the
    /// server's shutdown token) when the server shuts down: one signal for
    /// both, so a session waits on one future rather than two.
    evicted: CancellationToken,
    earned: AtomicBool,
}

/// A connection's place, held for its whole life (shared by the task serving
/// its HTTP requests and, after an upgrade, by its WebSocket session); the
/// place is given back when the last holder drops it.
#[derive(Debug)]
pub struct Place {
    gate: Arc<Gate>,
    id: u64,
    /// `None` for a trusted proxy, which is not counted per address.
    address: Option<IpAddr>,
    shared: Arc<PlaceShared>,
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
            shutdown: None,
        }
    }

    /// Makes every place's stop signal end with `shutdown` too.
    pub fn stopping_with(mut self, shutdown: &CancellationToken) -> Self {
        self.shutdown = Some(shutdown.clone());
        self
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
    pub fn enter(self: &Arc<Self>, address: IpAddr) -> Result<Place, Turned> {
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
        let shared = Arc::new(PlaceShared {
            evicted: self
                .shutdown
                .as_ref()
                .map_or_else(CancellationToken::new, CancellationToken::child_token),
            earned: AtomicBool::new(false),
        });
        state.unearned.insert(id, Arc::clone(&shared));
        Ok(Place {
            gate: Arc::clone(self),
            id,
            address: counted,
            shared,
        })
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

    /// Cancels the oldest unearned place; it stays counted until its holder lets go.
    fn evict_oldest(&self, state: &mut GateState) -> bool {
        match state.unearned.pop_first() {
            Some((_, place)) => {
                place.evicted.cancel();
                self.evictions.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

impl Place {
    /// Marks the connection as a real client: it is no longer evicted when the
    /// budget runs out, and its protocol's join deadline no longer applies.
    pub fn earn(&self) {
        if !self.shared.earned.swap(true, Ordering::Relaxed) {
            self.gate.state().unearned.remove(&self.id);
        }
    }

    /// Whether [`earn`](Self::earn) was called.
    pub fn is_earned(&self) -> bool {
        self.shared.earned.load(Ordering::Relaxed)
    }

    /// Resolves when the gate evicts this connection to make room, or (with
    /// [`Gate::stopping_with`]) when the server shuts down; a caller that
    /// tells the two apart checks the shutdown first.
    pub async fn evicted(&self) {
        self.shared.evicted.cancelled().await;
    }

    /// [`evicted`](Self::evicted) as a future that owns what it waits on.
    pub fn stopped(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.shared.evicted.clone().cancelled_owned()
    }

    /// Whether the gate has evicted this connection.
    pub fn is_evicted(&self) -> bool {
        self.shared.evicted.is_cancelled()
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
