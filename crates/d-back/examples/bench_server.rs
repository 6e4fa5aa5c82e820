//! The producer the benchmark suite (`scripts/bench.sh`) measures: one Discord
//! server and a stream of chat lines, built only from the library's public API.
//!
//! ```text
//! cargo run --release --example bench_server -- --port 3000 [--rate R] [--redis-url URL]
//! ```
//!
//! With `--redis-url` it is a node of the cluster `bench` (the cluster
//! benchmark starts three, one of them producing): its broadcasts go through
//! Redis to the watchers of every node.
//!
//! It serves one Discord server (snowflake `1000`, public id `bench`, the
//! default) with ten users, and while anyone watches it broadcasts `message`
//! frames whose text is `t=<nanoseconds since the UNIX epoch>`, so a client can
//! tell how long each frame took to reach it. Without `--rate` it broadcasts as
//! fast as it can; with `--rate R` it offers R broadcasts per second; `--rate 0`
//! broadcasts nothing (for measuring joins and idle connections). Broadcasting
//! waits until the number of watchers has not changed for half a second, so a
//! join storm is measured on its own and a slow server's joins are not starved
//! by its own broadcasts (the Python and bare producers follow the same rule).
//!
//! "As fast as it can" is bursts of broadcasts with a `yield_now` between them:
//! a producer that never yields would keep one of the runtime's threads from the
//! writers it is feeding, and measure only itself.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use d_back::{
    ChatMessage, DataProvider, Hub, ProviderError, Roster, Server, ServerInfo, ServerList, Status,
    User, async_trait,
};

/// Snowflake of the one Discord server served.
const SERVER: &str = "1000";
/// Broadcasts made between two yields when running flat out.
const BURST: usize = 16;
/// How long the watcher count must hold still before broadcasting starts.
const SETTLE: Duration = Duration::from_millis(500);

/// Command line of the benchmark producer.
#[derive(Debug, Parser)]
#[command(about = "d-back benchmark producer: one server, a stream of timestamped chat lines")]
struct Args {
    /// Port to listen on (loopback only).
    #[arg(long)]
    port: u16,
    /// Broadcasts per second; absent = as fast as possible; 0 = none.
    #[arg(long)]
    rate: Option<f64>,
    /// Join the cluster `bench` in this Redis.
    #[arg(long)]
    redis_url: Option<String>,
}

/// The benchmark's world: one server, ten users who never change.
struct BenchWorld;

#[async_trait]
impl DataProvider for BenchWorld {
    async fn servers(&self) -> Result<ServerList, ProviderError> {
        let mut list = ServerList::new();
        list.insert(
            SERVER.to_owned(),
            ServerInfo::new("bench", "Bench").default_server(),
        );
        Ok(list)
    }

    async fn users(&self, server: &str) -> Result<Roster, ProviderError> {
        let mut roster = Roster::new();
        if server == SERVER {
            for uid in user_ids() {
                let name = format!("user{uid}");
                roster.insert(uid.clone(), User::new(uid, name, Status::Online, "#7289da"));
            }
        }
        Ok(roster)
    }
}

fn user_ids() -> Vec<String> {
    (0..10).map(|i| format!("{}", 2000 + i)).collect()
}

/// Nanoseconds since the UNIX epoch, the clock the load generator compares with.
fn now_text() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("t={nanos}")
}

fn broadcast(hub: &Hub, uids: &[String], n: usize) {
    hub.broadcast_message(
        SERVER,
        ChatMessage {
            uid: uids[n % uids.len()].clone(),
            message: now_text(),
            channel: "bench".to_owned(),
        },
    );
}

/// Whether anyone watches and nobody has joined or left for [`SETTLE`].
struct Settled {
    watchers: usize,
    since: Instant,
}

impl Settled {
    fn check(&mut self, hub: &Hub) -> bool {
        let now = hub.watchers(SERVER);
        if now != self.watchers {
            self.watchers = now;
            self.since = Instant::now();
        }
        now > 0 && self.since.elapsed() >= SETTLE
    }
}

/// Broadcasts while the watchers are settled, flat out or at `rate` per second.
async fn produce(hub: Hub, rate: Option<f64>) {
    let uids = user_ids();
    let mut n = 0usize;
    let mut settled = Settled {
        watchers: 0,
        since: Instant::now(),
    };
    match rate {
        Some(r) if r <= 0.0 => std::future::pending().await,
        Some(r) => {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / r));
            loop {
                tick.tick().await;
                if settled.check(&hub) {
                    broadcast(&hub, &uids, n);
                    n += 1;
                }
            }
        }
        None => loop {
            if !settled.check(&hub) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            for _ in 0..BURST {
                broadcast(&hub, &uids, n);
                n += 1;
            }
            tokio::task::yield_now().await;
        },
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut builder = Server::builder()
        .host("127.0.0.1")
        .port(args.port)
        .provider(BenchWorld);
    if let Some(url) = &args.redis_url {
        builder = builder.cluster(d_back::ClusterConfig::new(url, "bench")?);
    }
    let server = builder.bind().await?;
    let producer = tokio::spawn(produce(server.hub(), args.rate));
    tokio::signal::ctrl_c().await.ok();
    producer.abort();
    server.shutdown().await;
    Ok(())
}
