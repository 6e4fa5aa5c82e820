//! The task that follows the cluster's log and hands every event to the hub.
//!
//! It starts at the log's end (what came before is in the shared state) and
//! from then on remembers the last entry it read, so after a lost connection
//! it reads on from there: the changes other nodes made meanwhile arrive, in
//! order, as long as the log still holds them (it keeps about 100,000).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use tokio::sync::mpsc;

use crate::ClusterConfig;
use crate::backoff::Backoff;
use crate::shared::{Shared, connection_config};

/// How long one read waits on Redis for new entries.
const BLOCK_MS: usize = 1_000;

/// Entries taken per read, at most.
const COUNT: usize = 512;

/// Runs until the hub stops taking events.
pub(crate) async fn run(config: ClusterConfig, shared: Arc<Shared>, deliver: mpsc::Sender<Bytes>) {
    let log = config.log_key();
    let mut backoff = Backoff::default();
    let mut position: Option<String> = None;
    loop {
        let mut con = match connect(&config).await {
            Ok(con) => con,
            Err(error) => {
                shared.failed("following the log", error);
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        };
        if position.is_none() {
            match log_end(&mut con, &log).await {
                Ok(end) => position = Some(end),
                Err(error) => {
                    shared.failed("following the log", error);
                    tokio::time::sleep(backoff.next()).await;
                    continue;
                }
            }
        }
        backoff.reset();
        shared.up(&shared.reader_up, "following the log");
        shared.ready.store(true, Ordering::Relaxed);
        let error = loop {
            let from = position.as_deref().expect("set above");
            let options = StreamReadOptions::default().block(BLOCK_MS).count(COUNT);
            let mut command = redis::cmd("XREAD");
            command.arg(&options).arg("STREAMS").arg(&log).arg(from);
            let read = command.query_async::<Option<StreamReadReply>>(&mut con);
            let reply =
                match tokio::time::timeout(Duration::from_millis(BLOCK_MS as u64 + 4_000), read)
                    .await
                {
                    Ok(Ok(reply)) => reply,
                    Ok(Err(e)) => break e.to_string(),
                    Err(_) => break "no answer within 5 s".to_owned(),
                };
            for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                let payload: Option<Vec<u8>> = entry.get("e");
                // A replay of this node's own: applied here when it happened.
                let origin: Option<String> = entry.get("o");
                position = Some(entry.id);
                shared.received.fetch_add(1, Ordering::Relaxed);
                if origin.as_deref() == Some(shared.node.as_str()) {
                    continue;
                }
                if let Some(payload) = payload
                    && deliver.send(Bytes::from(payload)).await.is_err()
                {
                    return;
                }
            }
        };
        shared.reader_up.store(false, Ordering::Relaxed);
        shared.failed("following the log", error);
    }
}

async fn connect(config: &ClusterConfig) -> redis::RedisResult<MultiplexedConnection> {
    // No response timeout of the client's own: a blocking read is timed above.
    config.connect(&connection_config(None)).await
}

/// The id of the log's last entry, or `0-0` for an empty log.
async fn log_end(con: &mut MultiplexedConnection, log: &str) -> redis::RedisResult<String> {
    let last: StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(log)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(con)
        .await?;
    Ok(last
        .ids
        .into_iter()
        .next()
        .map_or_else(|| "0-0".to_owned(), |entry| entry.id))
}
