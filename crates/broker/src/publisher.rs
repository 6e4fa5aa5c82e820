//! The task that appends this node's events to the cluster's log.
//!
//! Events go out in the order they were published, many to a round trip (a
//! pipeline of script calls). When Redis fails, the events in hand were not
//! all appended, so they are applied on this node instead: a change is never
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
use crate::handle::{Shared, connection_config};
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
                Ok(con) => {
                    connection = Some(con);
                    backoff.reset();
                    shared.up(&shared.publisher_up, "the publisher");
                }
                Err(error) => {
                    shared.failed("publishing", error);
                    apply_locally(&shared, &mut queue, &deliver, Vec::new()).await;
                    tokio::time::sleep(backoff.next()).await;
                }
            }
            continue;
        };
        if queue.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let mut pipe = redis::pipe();
        for event in &batch {
            let call = pipe
                .cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(1 + event.state.len())
                .arg(&log);
            for write in &event.state {
                call.arg(config.map_key(&write.map));
            }
            call.arg(config.log_length).arg(event.payload.as_ref());
            for write in &event.state {
                call.arg(write.op).arg(&write.field).arg(&write.value);
            }
        }
        let sent =
            tokio::time::timeout(ROUND_TRIP, pipe.query_async::<Vec<redis::Value>>(con)).await;
        match sent {
            Ok(Ok(_)) => {
                shared
                    .published
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                batch.clear();
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer within 5 s".to_owned(),
                };
                shared.publisher_up.store(false, Ordering::Relaxed);
                shared.failed("publishing", error);
                connection = None;
                apply_locally(&shared, &mut queue, &deliver, std::mem::take(&mut batch)).await;
            }
        }
    }
}

/// Connects and loads the publishing script (again: a restarted Redis has forgotten it).
async fn connect(
    config: &ClusterConfig,
    script: &redis::Script,
) -> redis::RedisResult<MultiplexedConnection> {
    let mut con = config
        .client
        .get_multiplexed_async_connection_with_config(&connection_config(Some(ROUND_TRIP)))
        .await?;
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
    shared
        .applied_locally
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    for event in batch {
        if deliver.send(event.payload).await.is_err() {
            return;
        }
    }
}
