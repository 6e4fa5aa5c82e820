//! Which Redis a node joins, under which cluster name, and the keys that follow from it.

use crate::BrokerError;

/// The cluster name when none is given.
pub const DEFAULT_CLUSTER_NAME: &str = "d-back";

/// How many entries the log keeps, about: enough for a node that lost Redis
/// for a while to read on where it left, bounded so Redis memory is too.
const LOG_LENGTH: u64 = 100_000;

/// Where the cluster lives: a Redis URL and the cluster's name.
///
/// Every key starts with the name in braces (`{d-back}:log`), so several
/// clusters can share one Redis, and all of a cluster's keys hash to one slot
/// of a Redis Cluster.
///
/// ```
/// use broker::ClusterConfig;
/// let config = ClusterConfig::new("redis://127.0.0.1:6379/0", "zone").unwrap();
/// assert_eq!(config.log_key(), "{zone}:log");
/// assert_eq!(config.map_key("roster:1000"), "{zone}:roster:1000");
/// assert!(ClusterConfig::new("http://example.com", "zone").is_err());
/// ```
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub(crate) client: redis::Client,
    name: String,
    pub(crate) log_length: u64,
}

impl ClusterConfig {
    /// A cluster named `name` in the Redis at `url` (`redis://host:port/db`,
    /// `rediss://` for TLS, `redis://:password@host`); fails on a URL Redis
    /// clients do not accept, or an empty name.
    pub fn new(url: &str, name: &str) -> Result<Self, BrokerError> {
        if name.is_empty() || name.contains(['{', '}']) {
            return Err(BrokerError::Name(name.to_owned()));
        }
        let client = redis::Client::open(url).map_err(|e| BrokerError::Url {
            url: redact(url),
            reason: e.to_string(),
        })?;
        Ok(Self {
            client,
            name: name.to_owned(),
            log_length: LOG_LENGTH,
        })
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key of the cluster's event log.
    pub fn log_key(&self) -> String {
        format!("{{{}}}:log", self.name)
    }

    /// The key of one shared map, named by the protocol.
    pub fn map_key(&self, map: &str) -> String {
        format!("{{{}}}:{map}", self.name)
    }
}

/// The URL without its password, for messages and logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_an_error_message() {
        assert_eq!(
            redact("redis://:secret@host:6379/0"),
            "redis://…@host:6379/0"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        let error = ClusterConfig::new("nope://:secret@host", "x").unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[test]
    fn names_with_braces_would_break_the_key_scheme() {
        assert!(ClusterConfig::new("redis://127.0.0.1/", "a{b").is_err());
        assert!(ClusterConfig::new("redis://127.0.0.1/", "").is_err());
    }
}
