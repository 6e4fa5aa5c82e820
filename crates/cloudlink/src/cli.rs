//! The command line of `cloudlink`: every flag, its environment variable and default.
//!
//! Precedence is flag, then `CLOUDLINK_*` environment variable, then default.
//! This module only describes and converts settings; serving is `main`'s job.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use cloudlink::{
    AccessRules, Builder, CloudLink, Deadlines, HostRuleFiles, HostRules, IpNet, ServerBuilder,
    ValueRule, VariableStore,
};
use edge::values::{parse_network, positive_seconds};

/// A CloudLink server: multiplayer for Scratch and TurboWarp projects
/// (usernames, rooms, global and private messages and variables, direct
/// messages) and self-hosted Scratch cloud variables, on one WebSocket port.
///
/// Compatible with the CloudLink 0.2.0 Python server and its clients: point
/// the TurboWarp CloudLink extension at ws://127.0.0.1:3000/ (any path works).
#[derive(Debug, Parser)]
#[command(name = "cloudlink", version, about, long_about)]
pub struct Cli {
    /// Host name or address to listen on; 0.0.0.0 listens on every interface.
    #[arg(long, env = "CLOUDLINK_HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on; 0 picks a free port.
    #[arg(long, env = "CLOUDLINK_PORT", default_value_t = 3000)]
    pub port: u16,

    /// Most clients at once, of either protocol; a client over it gets the text
    /// `Server is full!` and a normal close (default: no limit).
    #[arg(long, env = "CLOUDLINK_MAX_CLIENTS", value_name = "COUNT")]
    pub max_clients: Option<usize>,

    /// Message of the day, sent to CL4 clients on their first handshake.
    #[arg(long, env = "CLOUDLINK_MOTD", value_name = "TEXT")]
    pub motd: Option<String>,

    /// Header in which a trusted proxy passes the client's address (e.g.
    /// X-Forwarded-For, CF-Connecting-IP); believed only from --trusted-proxy
    /// addresses (default X-Forwarded-For).
    #[arg(long, env = "CLOUDLINK_REAL_IP_HEADER", value_name = "HEADER")]
    pub real_ip_header: Option<String>,

    /// A reverse proxy (address or CIDR network) whose --real-ip-header is
    /// believed (repeatable; default: none, every client's own address is used).
    #[arg(
        long = "trusted-proxy",
        env = "CLOUDLINK_TRUSTED_PROXIES",
        value_name = "ADDRESS",
        value_delimiter = ',',
        value_parser = parse_network
    )]
    pub trusted_proxies: Vec<IpNet>,

    /// Certificate chain (PEM) for wss://; needs --tls-key.
    #[arg(
        long,
        env = "CLOUDLINK_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) for wss://; needs --tls-cert.
    #[arg(
        long,
        env = "CLOUDLINK_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// A command to turn off (repeatable): CL4 clients get E:110 for it,
    /// Scratch clients are ignored.
    #[arg(
        long = "disable-command",
        env = "CLOUDLINK_DISABLE_COMMANDS",
        value_name = "CMD",
        value_delimiter = ','
    )]
    pub disabled_commands: Vec<String>,

    /// Deliver pmsg/pvar/direct to every client a username matches, instead of
    /// answering E:104 when it matches several.
    #[arg(long, env = "CLOUDLINK_ALLOW_AMBIGUOUS_USERNAMES")]
    pub allow_ambiguous_usernames: bool,

    /// Do not tell CL4 clients their address (`client_ip`) on handshake.
    #[arg(long, env = "CLOUDLINK_HIDE_CLIENT_IP")]
    pub hide_client_ip: bool,

    /// Largest message a client may send, in bytes; larger ones close with 1009.
    #[arg(long, env = "CLOUDLINK_MAX_FRAME_BYTES", default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub max_frame_bytes: usize,

    /// Most connections from one client address; further ones get HTTP 429
    /// (default: a quarter of the open-files limit).
    #[arg(long, env = "CLOUDLINK_MAX_CONNECTIONS_PER_IP", value_name = "COUNT")]
    pub max_connections_per_ip: Option<usize>,

    /// Messages per second one client may send (0: no limit). Over it, messages
    /// are not handled and CL4 clients get E:108; a client that keeps on is
    /// closed with 1008.
    #[arg(
        long,
        env = "CLOUDLINK_MESSAGE_RATE",
        default_value_t = 60,
        value_name = "PER_SECOND"
    )]
    pub message_rate: u32,

    /// Messages a client may send at once before --message-rate applies.
    #[arg(
        long,
        env = "CLOUDLINK_MESSAGE_BURST",
        default_value_t = 120,
        value_name = "MESSAGES"
    )]
    pub message_burst: u32,

    /// A browser origin allowed to connect, e.g. https://turbowarp.org
    /// (repeatable; default: any). Pages from other origins get HTTP 403.
    #[arg(
        long = "allowed-origin",
        env = "CLOUDLINK_ALLOWED_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Rooms one CL4 client may be in at once; a `link` beyond it gets E:108.
    #[arg(
        long,
        env = "CLOUDLINK_MAX_ROOMS_PER_CLIENT",
        default_value_t = 1000,
        value_name = "ROOMS"
    )]
    pub max_rooms_per_client: usize,

    /// Cloud variables one Scratch project may hold; one more closes the client with 4000.
    #[arg(
        long,
        alias = "max-variables-per-project",
        env = "CLOUDLINK_MAX_ROOM_VARIABLES",
        default_value_t = 128,
        value_name = "VARIABLES",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_room_variables: u64,

    /// Rooms held in memory at once (live projects and CL4 rooms, and
    /// emptied projects kept for the store); a Scratch client that would open
    /// one more is closed with 4003.
    #[arg(
        long,
        env = "CLOUDLINK_MAX_ROOMS",
        default_value_t = 16_384,
        value_name = "ROOMS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_rooms: u64,

    /// Scratch clients in one project; one more is closed with 4003.
    #[arg(
        long,
        env = "CLOUDLINK_MAX_ROOM_CLIENTS",
        default_value_t = 128,
        value_name = "CLIENTS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_room_clients: u64,

    /// Longest Scratch value, in bytes of its text; a longer one is dropped
    /// (not stored, not broadcast) and counted, and its sender stays connected.
    #[arg(
        long,
        env = "CLOUDLINK_MAX_VALUE_BYTES",
        default_value_t = 100_000,
        value_name = "BYTES"
    )]
    pub max_value_bytes: usize,

    /// Scratch sets a second one connection may have broadcast one by one (0:
    /// no limit). Past it, the latest value of each variable is applied when
    /// the second ends, so the room still ends as the client set it.
    #[arg(
        long,
        env = "CLOUDLINK_MAX_SETS_PER_SECOND",
        default_value_t = 0,
        value_name = "SETS"
    )]
    pub max_sets_per_second: u32,

    /// A file of case-insensitive regular expressions, one a line; a Scratch
    /// username whose letters and digits match one is closed with 4002.
    /// Read again on SIGHUP.
    #[arg(long, env = "CLOUDLINK_USERNAME_FILTER", value_name = "FILE")]
    pub username_filter: Option<PathBuf>,

    /// A file of project ids, one a line: only these may be joined (others:
    /// 4004). Read again on SIGHUP.
    #[arg(long, env = "CLOUDLINK_PROJECT_ALLOW", value_name = "FILE")]
    pub project_allow: Option<PathBuf>,

    /// A file of project ids, one a line, that may not be joined (4004).
    /// Read again on SIGHUP.
    #[arg(long, env = "CLOUDLINK_PROJECT_BLOCK", value_name = "FILE")]
    pub project_block: Option<PathBuf>,

    /// Refuse Scratch clients that send no User-Agent header: a text saying
    /// why, then close 4006.
    #[arg(long, env = "CLOUDLINK_REQUIRE_USER_AGENT")]
    pub require_user_agent: bool,

    /// Which Scratch values are accepted; others are dropped and counted.
    #[arg(long, env = "CLOUDLINK_VALUES", value_enum, default_value_t = Values::Any)]
    pub values: Values,

    /// Where Scratch cloud variables are kept: a store file (created if
    /// missing; one server per file), or `memory` to keep them only while a
    /// project has clients, as CloudLink 0.2.0 does.
    #[arg(
        long,
        env = "CLOUDLINK_STORE",
        default_value = DEFAULT_STORE,
        value_name = "PATH|memory"
    )]
    pub store: String,

    /// Share Scratch projects with every cloudlink node of a cluster through
    /// this Redis (redis://host:port/db, rediss:// for TLS,
    /// redis+sentinel://host:26379/service), which then keeps their variables
    /// instead of --store; see docs/cluster.md.
    #[arg(
        long,
        env = "CLOUDLINK_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,

    /// The cluster's name: nodes with the same Redis and name share projects.
    #[arg(
        long,
        env = "CLOUDLINK_CLUSTER_NAME",
        default_value = "cloudlink",
        value_name = "NAME"
    )]
    pub cluster_name: String,

    /// Milliseconds between writes of changed cloud variables to the store: the
    /// most a crash or `kill -9` can lose (a normal stop loses nothing).
    #[arg(
        long,
        env = "CLOUDLINK_FLUSH_INTERVAL_MS",
        default_value_t = 1000,
        value_name = "MILLISECONDS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub flush_interval_ms: u64,

    /// Seconds an emptied project stays in memory before it is left to the
    /// store (0: at the next flush). Memory then follows the live projects,
    /// not the size of the store.
    #[arg(
        long,
        env = "CLOUDLINK_EMPTY_ROOM_TTL",
        default_value_t = 3600,
        value_name = "SECONDS"
    )]
    pub empty_room_ttl: u64,

    /// Seconds a new connection has to send its first message (a Scratch
    /// client's handshake) before it is closed with 1008.
    #[arg(
        long,
        alias = "handshake-timeout",
        env = "CLOUDLINK_JOIN_TIMEOUT",
        default_value_t = 30.0,
        value_name = "SECONDS"
    )]
    pub join_timeout: f64,

    /// Seconds between pings; a client silent for two periods is dropped.
    #[arg(
        long,
        env = "CLOUDLINK_PING_INTERVAL",
        default_value_t = 30.0,
        value_name = "SECONDS"
    )]
    pub ping_interval: f64,

    /// Milliseconds between frames to one Scratch client (0: send at once):
    /// what queues meanwhile goes out in one frame, messages joined by
    /// newlines, each variable once at its latest value. CL4 clients are not
    /// batched.
    #[arg(
        long,
        env = "CLOUDLINK_BATCH_MS",
        default_value_t = 0,
        value_name = "MILLISECONDS"
    )]
    pub batch_ms: u64,

    /// Changes kept in each Scratch project's log (in memory and in the
    /// store), which the admin API reads; 0 keeps none.
    #[arg(
        long,
        env = "CLOUDLINK_HISTORY",
        default_value_t = 100,
        value_name = "CHANGES"
    )]
    pub history: usize,

    /// Serve the admin API under /api/ (list projects, read, set and delete
    /// variables, delete projects) to callers sending `Authorization: Bearer
    /// TOKEN`; its OpenAPI document is /api/openapi.json. Off without it.
    #[arg(
        long,
        env = "CLOUDLINK_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,

    /// Log filter, e.g. `info` or `cloudlink=debug`; overrides RUST_LOG (default: info).
    #[arg(long, env = "CLOUDLINK_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Log line format.
    #[arg(long, env = "CLOUDLINK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The store file used when `--store` is not given, in the working directory.
pub const DEFAULT_STORE: &str = "cloudlink-store.redb";

/// Which Scratch values are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Values {
    /// Any JSON value, as CloudLink 0.2.0.
    Any,
    /// Strings and numbers.
    Text,
    /// Scratch's and TurboWarp's rule: a finite number or a decimal string.
    Numbers,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

impl Cli {
    /// The protocol settings.
    pub fn cloudlink(&self) -> Result<Builder, String> {
        let mut builder = CloudLink::builder()
            .warn_if_multiple_username_matches(!self.allow_ambiguous_usernames)
            .send_client_ip(!self.hide_client_ip)
            .max_frame_bytes(self.max_frame_bytes)
            .message_rate(self.message_rate, self.message_burst)
            .max_rooms_per_client(self.max_rooms_per_client)
            .max_variables_per_room(usize::try_from(self.max_room_variables).unwrap_or(usize::MAX))
            .max_rooms(usize::try_from(self.max_rooms).unwrap_or(usize::MAX))
            .max_room_clients(usize::try_from(self.max_room_clients).unwrap_or(usize::MAX))
            .max_value_bytes(self.max_value_bytes)
            .max_sets_per_second(self.max_sets_per_second)
            .history(self.history)
            .batch(Duration::from_millis(self.batch_ms))
            .values(match self.values {
                Values::Any => ValueRule::Any,
                Values::Text => ValueRule::Text,
                Values::Numbers => ValueRule::Numbers,
            })
            .ping_interval(positive_seconds("--ping-interval", self.ping_interval)?)
            .flush_interval(Duration::from_millis(self.flush_interval_ms))
            .empty_room_ttl(Duration::from_secs(self.empty_room_ttl));
        if let Some(url) = self.redis_url.as_deref().filter(|u| !u.trim().is_empty()) {
            let cluster = broker::ClusterConfig::new(url, &self.cluster_name)
                .map_err(|e| format!("--redis-url: {e}"))?;
            builder = builder.cluster(cluster);
        } else if self.store != "memory" {
            if self.store.is_empty() {
                return Err("--store is empty: give a file path, or `memory`".to_owned());
            }
            let store = VariableStore::open(&self.store).map_err(|e| {
                format!("{e} (--store memory keeps cloud variables in memory only)")
            })?;
            builder = builder.store(store);
        }
        builder = builder.host_rules(HostRules::load(&self.host_rule_files())?);
        if let Some(motd) = &self.motd {
            builder = builder.motd(motd);
        }
        if let Some(max) = self.max_clients {
            builder = builder.max_clients(max);
        }
        for command in &self.disabled_commands {
            builder = builder.disable_command(command);
        }
        Ok(builder)
    }

    /// The files of the host's rules, read at start and on SIGHUP.
    pub fn host_rule_files(&self) -> HostRuleFiles {
        HostRuleFiles {
            username_filter: self.username_filter.clone(),
            project_allow: self.project_allow.clone(),
            project_block: self.project_block.clone(),
            require_user_agent: self.require_user_agent,
        }
    }

    /// Where and how to listen.
    pub fn server(&self) -> Result<ServerBuilder, String> {
        let real_ip_header = match &self.real_ip_header {
            None => None,
            Some(name) => Some(
                name.parse()
                    .map_err(|_| format!("--real-ip-header '{name}' is not a valid header name"))?,
            ),
        };
        let access = AccessRules {
            max_connections_per_ip: self.max_connections_per_ip,
            allowed_origins: self.allowed_origins.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            real_ip_header,
            ..AccessRules::default()
        };
        let deadlines = Deadlines {
            websocket_join: positive_seconds("--join-timeout", self.join_timeout)?,
            ..Deadlines::default()
        };
        let mut server = cloudlink::Server::builder()
            .host(&self.host)
            .port(self.port)
            .access(access)
            .deadlines(deadlines);
        if let Some(token) = &self.admin_token {
            server = server.admin_token(token);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            server = server.tls(cert, key);
        }
        Ok(server)
    }
}
