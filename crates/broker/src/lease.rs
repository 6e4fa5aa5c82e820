//! Leases: one node at a time does a job (the Discord connection), and
//! another takes over when it stops or dies.
//!
//! A lease is a Redis key holding the holder's name, with an expiry. The
//! holder extends it well within the expiry; a node that dies stops
//! extending it, the key expires, and the next node that asks gets it. So
//! nothing stale is left behind by a node killed without warning: at most
//! the expiry passes before another takes over.

use std::time::Duration;

use crate::{Broker, BrokerError};

/// Takes the lease if it is free, extends it if the caller holds it.
const HOLD: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// Gives the lease up, if the caller holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

impl Broker {
    /// Takes the lease `name` for `ttl` if nobody holds it, or extends it if
    /// `holder` does; `Ok(false)` while another holder has it.
    pub async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, BrokerError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(HOLD)
            .arg(1)
            .arg(self.lease_key(name))
            .arg(holder)
            .arg(ttl.as_millis().max(1) as u64);
        Ok(self.query::<i64>(&cmd).await? == 1)
    }

    /// Gives the lease `name` up if `holder` has it, so another node need not wait for it to expire.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), BrokerError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RELEASE)
            .arg(1)
            .arg(self.lease_key(name))
            .arg(holder);
        self.query::<i64>(&cmd).await.map(drop)
    }

    /// Who holds the lease `name` now, if anyone.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<String>, BrokerError> {
        self.query(redis::cmd("GET").arg(self.lease_key(name)))
            .await
    }

    fn lease_key(&self, name: &str) -> String {
        self.config().map_key(&format!("lease:{name}"))
    }
}
