//! The task that appends this node's events to the cluster's log.
//!
//! Events go out in the order they were published, many to a round trip (a
//! pipeline of script calls). A round trip that fails is tried once more on a
//! fresh connection (a connection that died while idle sends nothing). When
//! that fails too, the events in hand were not all appended, so they are
//! applied on this node instead: a change is never
//! silently lost here, though in that moment the other nodes may miss it (or,
//! if Redis appended part of a pipeline before failing, this node may apply
//! one twice: a presence twice is harmless, a chat line shows twice).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::shared::{Shared, connection_config};
use crate::{ClusterConfig, Event};

/// Events sent in one round trip, at most.
const BATCH: usize = 256;

/// How long a round trip may take before the connection counts as lost.
const ROUND_TRIP: Duration = Duration::from_secs(5);

/// Runs until the handle is dropped (the queue closes).
pub(crate) async fn run(
    config: ClusterConfig,
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<Event>,
    deliver: mpsc::Sender<Bytes>,
) {
    let script = redis::Script::new(include_str!("publish.lua"));
    let log = config.log_key();
    let mut backoff = Backoff::default();
    let mut connection: Option<MultiplexedConnection> = None;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let Some(con) = connection.as_mut() else {
            match connect(&config, &script).await {
                Ok(mut con) => {
                    if let Err(error) = replay(&config, &script, &log, &shared, &mut con).await {
                        shared.failed("publishing", error);
                        tokio::time::sleep(backoff.next()).await;
                        continue;
                    }
                    connection = Some(con);
                    backoff.reset();
                    shared.up(&shared.publisher_up, "publishing");
                }
                Err(error) => {
                    shared.failed("publishing", error);
                    apply_locally(&shared, &mut queue, &deliver, Vec::new()).await;
                    tokio::time::sleep(backoff.next()).await;
                }
            }
            continue;
        };
        // An idle publisher checks its connection, so that health is true and
        // the first change after an outage does not meet a dead socket.
        match tokio::time::timeout(IDLE_CHECK, queue.recv_many(&mut batch, BATCH)).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(_) => {
                let ping = redis::cmd("PING").query_async::<String>(con).await;
                if let Err(error) = ping {
                    lost(&shared, &mut connection, error.to_string());
                }
                continue;
            }
        }
        let pipe = pipeline(&config, &script, &log, &batch, "");
        let mut outcome = send(&pipe, con).await;
        if outcome.is_err() {
            // A connection that died while idle fails at once without sending
            // anything: one fresh connection gets the batch to the log after all.
            if let Ok(mut fresh) = connect(&config, &script).await {
                outcome = send(&pipe, &mut fresh).await;
                connection = Some(fresh);
            }
        }
        match outcome {
            Ok(()) => {
                shared
                    .published
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                batch.clear();
            }
            Err(error) => {
                lost(&shared, &mut connection, error);
                apply_locally(&shared, &mut queue, &deliver, std::mem::take(&mut batch)).await;
            }
        }
    }
}

/// How long the publisher waits for work before it checks its connection.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Sends the events applied here while Redis was away, marked as this
/// node's (so its reader skips them), before anything newer.
async fn replay(
    config: &ClusterConfig,
    script: &redis::Script,
    log: &str,
    shared: &Shared,
    con: &mut MultiplexedConnection,
) -> Result<(), String> {
    let kept = shared.take_kept();
    if kept.is_empty() {
        return Ok(());
    }
    for (i, chunk) in kept.chunks(BATCH).enumerate() {
        let pipe = pipeline(config, script, log, chunk, &shared.node);
        if let Err(error) = send(&pipe, con).await {
            shared.keep_again(kept[i * BATCH..].to_vec());
            return Err(error);
        }
        shared
            .replayed
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    tracing::info!(
        changes = kept.len(),
        "cluster: sent the changes made here while Redis was away to the other nodes"
    );
    Ok(())
}

/// One script call per event, in order; `origin` names the node that applied
/// them already (a replay), or is empty.
fn pipeline(
    config: &ClusterConfig,
    script: &redis::Script,
    log: &str,
    batch: &[Event],
    origin: &str,
) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for event in batch {
        let call = pipe
            .cmd("EVALSHA")
            .arg(script.get_hash())
            .arg(1 + event.state.len())
            .arg(log);
        for write in &event.state {
            call.arg(config.map_key(&write.map));
        }
        call.arg(config.log_length)
            .arg(event.payload.as_ref())
            .arg(origin);
        for write in &event.state {
            call.arg(write.op).arg(&write.field).arg(&write.value);
        }
    }
    pipe
}

async fn send(pipe: &redis::Pipeline, con: &mut MultiplexedConnection) -> Result<(), String> {
    match tokio::time::timeout(ROUND_TRIP, pipe.query_async::<Vec<redis::Value>>(con)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".to_owned()),
    }
}

/// Marks the connection lost, so the next turn makes a new one.
fn lost(shared: &Shared, connection: &mut Option<MultiplexedConnection>, error: String) {
    shared.publisher_up.store(false, Ordering::Relaxed);
    shared.failed("publishing", error);
    *connection = None;
}

/// Connects and loads the publishing script (again: a restarted Redis has forgotten it).
async fn connect(
    config: &ClusterConfig,
    script: &redis::Script,
) -> redis::RedisResult<MultiplexedConnection> {
    let mut con = config.connect(&connection_config(Some(ROUND_TRIP))).await?;
    script.load_async(&mut con).await?;
    Ok(con)
}

/// Hands `batch` and everything still queued to this node's hub.
async fn apply_locally(
    shared: &Shared,
    queue: &mut mpsc::Receiver<Event>,
    deliver: &mpsc::Sender<Bytes>,
    mut batch: Vec<Event>,
) {
    while let Ok(event) = queue.try_recv() {
        batch.push(event);
    }
    for event in batch {
        let payload = event.payload.clone();
        shared.applied_here(event);
        if deliver.send(payload).await.is_err() {
            return;
        }
    }
}
