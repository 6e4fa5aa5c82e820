//! Which Redis a node joins, under which cluster name, and the keys that follow from it.

use redis::RedisConnectionInfo;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};

use crate::BrokerError;

/// The cluster name when none is given.
pub const DEFAULT_CLUSTER_NAME: &str = "d-back";

/// How many entries the log keeps, about: enough for a node that lost Redis
/// for a while to read on where it left, bounded so Redis memory is too.
const LOG_LENGTH: u64 = 100_000;

/// Where the cluster lives: a Redis URL and the cluster's name.
///
/// The URL names one Redis (`redis://host:port/db`, `rediss://` for TLS), or
/// the Sentinels that know where the primary is:
/// `redis+sentinel://[:password@]host:port[,host:port…]/service[/db]`, where
/// the password is the primary's and `service` the name the Sentinels monitor
/// it under. With Sentinels every new connection asks them for the primary,
/// so after a failover the nodes reconnect to the promoted replica.
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
    endpoint: Endpoint,
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
        let invalid = |reason: String| BrokerError::Url {
            url: redact(url),
            reason,
        };
        let endpoint = match url.strip_prefix(SENTINEL_SCHEME) {
            Some(rest) => sentinel(rest).map_err(invalid)?,
            None => Endpoint::Direct(redis::Client::open(url).map_err(|e| invalid(e.to_string()))?),
        };
        Ok(Self {
            endpoint,
            name: name.to_owned(),
            log_length: LOG_LENGTH,
        })
    }

    /// A new connection to the primary.
    pub(crate) async fn connect(
        &self,
        settings: &redis::AsyncConnectionConfig,
    ) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        match &self.endpoint {
            Endpoint::Direct(client) => {
                client
                    .get_multiplexed_async_connection_with_config(settings)
                    .await
            }
            Endpoint::Sentinel {
                sentinels,
                service,
                node,
            } => {
                let mut client = SentinelClient::build(
                    sentinels.clone(),
                    service,
                    Some(node.clone()),
                    SentinelServerType::Master,
                )?;
                client.get_async_connection_with_config(settings).await
            }
        }
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

const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// How a node reaches the cluster's primary.
#[derive(Debug, Clone)]
enum Endpoint {
    Direct(redis::Client),
    /// Asks these Sentinels (as `redis://host:port` URLs) for the primary of `service`.
    Sentinel {
        sentinels: Vec<String>,
        service: String,
        node: SentinelNodeConnectionInfo,
    },
}

/// Reads `[:password@]host:port[,host:port…]/service[/db]`.
fn sentinel(rest: &str) -> Result<Endpoint, String> {
    let (password, rest) = match rest.rsplit_once('@') {
        Some((credentials, rest)) => (Some(credentials.trim_start_matches(':')), rest),
        None => (None, rest),
    };
    let (hosts, path) = rest
        .split_once('/')
        .ok_or("a Sentinel URL names the monitored service after the hosts: redis+sentinel://host:26379/mymaster")?;
    let (service, db) = match path.split_once('/') {
        Some((service, db)) => (
            service,
            db.parse::<i64>()
                .map_err(|_| format!("database '{db}' is not a number"))?,
        ),
        None => (path, 0),
    };
    if service.is_empty() {
        return Err(
            "the monitored service's name is missing: redis+sentinel://host:26379/mymaster"
                .to_owned(),
        );
    }
    let sentinels: Vec<String> = hosts
        .split(',')
        .filter(|host| !host.is_empty())
        .map(|host| format!("redis://{host}"))
        .collect();
    if sentinels.is_empty() {
        return Err("no Sentinel host is named".to_owned());
    }
    for url in &sentinels {
        redis::Client::open(url.as_str()).map_err(|e| format!("{url}: {e}"))?;
    }
    let mut info = RedisConnectionInfo::default().set_db(db);
    if let Some(password) = password.filter(|p| !p.is_empty()) {
        info = info.set_password(password);
    }
    Ok(Endpoint::Sentinel {
        sentinels,
        service: service.to_owned(),
        node: SentinelNodeConnectionInfo::default().set_redis_connection_info(info),
    })
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
    fn sentinel_urls_name_hosts_service_and_database() {
        let config = ClusterConfig::new(
            "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/main/2",
            "x",
        )
        .unwrap();
        let Endpoint::Sentinel {
            sentinels, service, ..
        } = config.endpoint
        else {
            panic!("a Sentinel endpoint");
        };
        assert_eq!(
            sentinels,
            ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"]
        );
        assert_eq!(service, "main");
        for wrong in [
            "redis+sentinel://10.0.0.1:26379",
            "redis+sentinel://h:1/",
            "redis+sentinel://h:1/m/x",
        ] {
            let error = ClusterConfig::new(wrong, "x").unwrap_err().to_string();
            assert!(error.contains("is not valid"), "{wrong}: {error}");
        }
    }

    #[test]
    fn names_with_braces_would_break_the_key_scheme() {
        assert!(ClusterConfig::new("redis://127.0.0.1/", "a{b").is_err());
        assert!(ClusterConfig::new("redis://127.0.0.1/", "").is_err());
    }
}
