//! The command line of `d_back`: every flag, its environment variable and default.
//!
//! Precedence is flag, then environment variable, then default (clap's `env`
//! feature does the layering). This module only describes and converts
//! settings; starting the server is `main`'s job.

use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser, ValueEnum};
use clap_complete::Shell;
use d_back::{AccessRules, ClusterConfig, Deadlines, IpNet, MockWorld, Server, ServerBuilder};
use edge::values::parse_network;

/// The backend of d-zone: a WebSocket + HTTP server that shows the members of
/// Discord servers as actors in the d-zone client.
///
/// With no data source configured it serves a built-in world of four Discord
/// servers whose users change status and chat on their own. Open
/// http://localhost:3000/ for the built-in page, or point the d-zone client at
/// ws://localhost:3000/ with ?socketURL=ws://localhost:3000/.
#[derive(Debug, Parser)]
#[command(name = "d_back", version, about, long_about)]
pub struct Cli {
    /// Host name or address to listen on; 0.0.0.0 listens on every interface.
    #[arg(long, env = "D_BACK_HOST", default_value = "localhost", help_heading = SERVER, value_name = "HOST")]
    pub host: String,

    /// Port for HTTP and WebSocket alike; 0 picks a free port.
    #[arg(long, env = "D_BACK_PORT", default_value_t = 3000, help_heading = SERVER, value_name = "PORT")]
    pub port: u16,

    /// Serve this directory (e.g. a built d-zone client) instead of the built-in page.
    #[arg(long, env = "D_BACK_STATIC_DIR", value_name = "DIR", help_heading = SERVER)]
    pub static_dir: Option<PathBuf>,

    /// Log filter, e.g. info or d_back=debug; overrides RUST_LOG (default: info).
    #[arg(long, env = "D_BACK_LOG_LEVEL", value_name = "FILTER", help_heading = LOGGING)]
    pub log_level: Option<String>,

    /// Log line format.
    #[arg(long, env = "D_BACK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, help_heading = LOGGING, value_name = "FORMAT")]
    pub log_format: LogFormat,

    /// Largest WebSocket frame a client may send, in bytes; larger ones close with 1009.
    #[arg(long, env = "D_BACK_MAX_FRAME_BYTES", default_value_t = 64 * 1024, value_name = "BYTES", help_heading = LIMITS)]
    pub max_frame_bytes: usize,

    /// How far one slow client may fall behind: chat lines kept per server, other frames queued per client.
    #[arg(
        long,
        env = "D_BACK_OUTBOX_FRAMES",
        default_value_t = 256,
        value_name = "FRAMES", help_heading = LIMITS)]
    pub outbox_frames: usize,

    /// Seconds between pings to idle clients; a client silent for two periods is dropped.
    #[arg(
        long,
        env = "D_BACK_PING_INTERVAL",
        default_value_t = 20.0,
        value_name = "SECONDS", help_heading = LIMITS)]
    pub ping_interval: f64,

    /// Built-in world: seconds between random status changes (0 turns them off).
    #[arg(
        long,
        env = "D_BACK_MOCK_PRESENCE_EVERY",
        default_value_t = 4.0,
        value_name = "SECONDS", help_heading = DATA)]
    pub mock_presence_every: f64,

    /// Built-in world: seconds between random chat lines (0 turns them off).
    #[arg(
        long,
        env = "D_BACK_MOCK_MESSAGE_EVERY",
        default_value_t = 5.0,
        value_name = "SECONDS", help_heading = DATA)]
    pub mock_message_every: f64,

    /// Serve the servers and users in this TOML or JSON file instead of the built-in world.
    #[arg(long, env = "D_BACK_DATA", value_name = "FILE", help_heading = DATA)]
    pub data: Option<PathBuf>,

    /// Connect to Discord as this bot and show the guilds it is in.
    #[arg(
        long,
        env = "DISCORD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true, help_heading = DATA)]
    pub discord_token: Option<String>,

    /// Discord gateway the bot connects to (tests point it at a local fake).
    #[arg(long, env = "D_BACK_DISCORD_GATEWAY_URL", default_value = d_back::provider::discord::DISCORD_GATEWAY, value_name = "URL", help_heading = DATA, hide = true)]
    pub discord_gateway_url: String,

    /// Discord REST API base, for OAuth2 login checks and the bot's own questions.
    #[arg(long, env = "D_BACK_DISCORD_API_URL", default_value = d_back::provider::DISCORD_API, value_name = "URL", help_heading = DATA, hide = true)]
    pub discord_api_url: String,

    /// OAuth2 application id sent to browsers (as clientId) for the Discord login button.
    #[arg(long, env = "D_BACK_OAUTH_CLIENT_ID", value_name = "ID", help_heading = DATA)]
    pub oauth_client_id: Option<String>,

    /// Seconds Discord may take to confirm a login before it is refused.
    #[arg(
        long,
        env = "D_BACK_OAUTH_TIMEOUT",
        default_value_t = 5.0,
        value_name = "SECONDS", help_heading = DATA)]
    pub oauth_timeout: f64,

    /// Turn on the ingest API (/api/ingest/...) for callers presenting this bearer token.
    #[arg(
        long,
        env = "D_BACK_INGEST_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true, help_heading = DATA)]
    pub ingest_token: Option<String>,

    /// Join a cluster of d_back nodes that serve one world through this Redis
    /// (redis://host:port/db, rediss:// for TLS, redis+sentinel://host:26379/service
    /// through Sentinels); see docs/cluster.md.
    #[arg(long, env = "D_BACK_REDIS_URL", value_name = "URL", hide_env_values = true, help_heading = CLUSTER)]
    pub redis_url: Option<String>,

    /// The cluster's name: nodes with the same Redis and name share one world.
    #[arg(long, env = "D_BACK_CLUSTER_NAME", default_value = broker::DEFAULT_CLUSTER_NAME, value_name = "NAME", help_heading = CLUSTER)]
    pub cluster_name: String,

    /// TLS certificate chain (PEM); with --tls-key, serves https:// and wss:// on the same port.
    #[arg(
        long,
        env = "D_BACK_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key", help_heading = TLS)]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM), for --tls-cert.
    #[arg(
        long,
        env = "D_BACK_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert", help_heading = TLS)]
    pub tls_key: Option<PathBuf>,

    /// Most WebSocket connections at once; further ones get HTTP 503 before the upgrade.
    #[arg(long, env = "D_BACK_MAX_CONNECTIONS", value_name = "COUNT", help_heading = LIMITS)]
    pub max_connections: Option<usize>,

    /// Most connections of any kind (HTTP, TLS, WebSocket) from one client address;
    /// further ones get HTTP 429 (default: a quarter of the open-files limit).
    #[arg(long, env = "D_BACK_MAX_CONNECTIONS_PER_IP", value_name = "COUNT", help_heading = LIMITS)]
    pub max_connections_per_ip: Option<usize>,

    /// Most TLS handshakes in flight from one client address; further connections are closed.
    #[arg(
        long,
        env = "D_BACK_MAX_TLS_HANDSHAKES_PER_IP",
        default_value_t = 16,
        value_name = "COUNT", help_heading = TLS)]
    pub max_tls_handshakes_per_ip: usize,

    /// Seconds a client has to finish its TLS handshake.
    #[arg(
        long,
        env = "D_BACK_TLS_HANDSHAKE_TIMEOUT",
        default_value_t = 5.0,
        value_name = "SECONDS", help_heading = TLS)]
    pub tls_handshake_timeout: f64,

    /// Seconds a client has to send a request's head; also how long an idle keep-alive connection is kept.
    #[arg(
        long,
        env = "D_BACK_HEADER_TIMEOUT",
        default_value_t = 10.0,
        value_name = "SECONDS", help_heading = LIMITS)]
    pub header_timeout: f64,

    /// Seconds a whole HTTP request may take, body included.
    #[arg(
        long,
        env = "D_BACK_REQUEST_TIMEOUT",
        default_value_t = 30.0,
        value_name = "SECONDS", help_heading = LIMITS)]
    pub request_timeout: f64,

    /// Seconds a WebSocket has to join a Discord server (send connect) before it is closed with 1008.
    #[arg(
        long,
        env = "D_BACK_JOIN_TIMEOUT",
        default_value_t = 20.0,
        value_name = "SECONDS", help_heading = LIMITS)]
    pub join_timeout: f64,

    /// Frames per second one client may send (0: no limit). Excess frames get an
    /// error frame; a client that keeps on is closed with 1008.
    #[arg(
        long,
        env = "D_BACK_MESSAGE_RATE",
        default_value_t = 10,
        value_name = "PER_SECOND", help_heading = LIMITS)]
    pub message_rate: u32,

    /// Frames a client may send at once before --message-rate applies.
    #[arg(
        long,
        env = "D_BACK_MESSAGE_BURST",
        default_value_t = 20,
        value_name = "FRAMES", help_heading = LIMITS)]
    pub message_burst: u32,

    /// A browser origin allowed to connect, e.g. https://nntin.github.io (repeatable;
    /// default: any). Pages from other origins are refused with HTTP 403 at the upgrade;
    /// pages this server serves itself are always allowed.
    #[arg(
        long = "allowed-origin",
        env = "D_BACK_ALLOWED_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ',', help_heading = SERVER)]
    pub allowed_origins: Vec<String>,

    /// A reverse proxy (address or CIDR) whose --real-ip-header is believed (repeatable).
    #[arg(
        long = "trusted-proxy",
        env = "D_BACK_TRUSTED_PROXIES",
        value_name = "ADDRESS",
        value_delimiter = ',',
        value_parser = parse_network, help_heading = SERVER)]
    pub trusted_proxies: Vec<IpNet>,

    /// Header in which a trusted proxy passes the client's address.
    #[arg(
        long,
        env = "D_BACK_REAL_IP_HEADER",
        default_value = "X-Forwarded-For",
        value_name = "HEADER", help_heading = SERVER)]
    pub real_ip_header: String,

    /// Print a shell completion script for SHELL and exit.
    #[arg(long, value_name = "SHELL")]
    pub completions: Option<Shell>,

    /// Print the manual page (roff) and exit.
    #[arg(long)]
    pub man: bool,
}

const SERVER: &str = "Server";
const DATA: &str = "Data sources";
const LIMITS: &str = "Limits";
const TLS: &str = "TLS";
const LOGGING: &str = "Logging";
const CLUSTER: &str = "Cluster";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl Cli {
    /// An empty value (`DISCORD_TOKEN=` in a unit file or a shell) counts as
    /// not set: an empty token would otherwise turn a source on and fail, or
    /// open the ingest API to an empty bearer token.
    pub fn without_empty_values(mut self) -> Self {
        for value in [
            &mut self.log_level,
            &mut self.discord_token,
            &mut self.oauth_client_id,
            &mut self.ingest_token,
            &mut self.redis_url,
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *value = None;
            }
        }
        self
    }

    /// Whether `--log-level` came from `D_BACK_LOG_LEVEL` rather than the command line.
    pub fn log_level_from_environment(&self) -> bool {
        !std::env::args_os()
            .skip(1)
            .any(|arg| arg.to_string_lossy().starts_with("--log-level"))
    }

    /// Turns the settings into a server builder, or says which value is wrong.
    ///
    /// A zero means "off" or "any" only where the help says so (`--port`,
    /// the built-in world's cadences, `--message-rate`); everywhere else it
    /// would lock every client out, so it is refused with the reason.
    pub fn builder(&self) -> Result<ServerBuilder, String> {
        let world = MockWorld::new().with_cadence(
            seconds("mock-presence-every", self.mock_presence_every)?,
            seconds("mock-message-every", self.mock_message_every)?,
        );
        let max_frame_bytes = at_least_one(
            "max-frame-bytes",
            self.max_frame_bytes,
            "with 0 every frame a client sends would close its connection",
        )?;
        let outbox_frames = at_least_one(
            "outbox-frames",
            self.outbox_frames,
            "with 0 no client could be sent anything",
        )?;
        let ping_interval = positive(
            "ping-interval",
            self.ping_interval,
            "pings are how clients that vanished are found",
        )?;
        positive(
            "oauth-timeout",
            self.oauth_timeout,
            "every Discord login would be refused",
        )?;
        let mut builder = Server::builder()
            .host(&self.host)
            .port(self.port)
            .provider(world)
            .max_frame_bytes(max_frame_bytes)
            .outbox_frames(outbox_frames)
            .ping_interval(ping_interval);
        if let Some(dir) = &self.static_dir {
            builder = builder.static_dir(dir);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            builder = builder.tls(cert, key);
        }
        if let Some(url) = &self.redis_url {
            let cluster = ClusterConfig::new(url, &self.cluster_name)
                .map_err(|e| format!("{}: {e}", setting("redis-url")))?;
            builder = builder.cluster(cluster);
        }
        let real_ip_header = self.real_ip_header.parse().map_err(|_| {
            format!(
                "{} '{}' is not a valid header name",
                setting("real-ip-header"),
                self.real_ip_header
            )
        })?;
        let no_limit = "leave it out for no limit";
        let access = AccessRules {
            max_connections: self
                .max_connections
                .map(|n| at_least_one("max-connections", n, no_limit))
                .transpose()?,
            max_connections_per_ip: self
                .max_connections_per_ip
                .map(|n| at_least_one("max-connections-per-ip", n, no_limit))
                .transpose()?,
            max_tls_handshakes_per_ip: Some(at_least_one(
                "max-tls-handshakes-per-ip",
                self.max_tls_handshakes_per_ip,
                "with 0 no TLS client could connect",
            )?),
            allowed_origins: self.allowed_origins.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            real_ip_header: Some(real_ip_header),
        };
        let deadline = "a deadline of 0 would drop every client";
        let deadlines = Deadlines {
            tls_handshake: positive(
                "tls-handshake-timeout",
                self.tls_handshake_timeout,
                deadline,
            )?,
            request_head: positive("header-timeout", self.header_timeout, deadline)?,
            request: positive("request-timeout", self.request_timeout, deadline)?,
            websocket_join: positive("join-timeout", self.join_timeout, deadline)?,
            ..Deadlines::default()
        };
        if self.message_rate > 0 {
            at_least_one(
                "message-burst",
                self.message_burst,
                "with 0 no client could send a frame (--message-rate 0 turns the limit off)",
            )?;
        }
        Ok(builder
            .message_rate(self.message_rate, self.message_burst)
            .access(access)
            .deadlines(deadlines))
    }
}

/// How to name the flag `--LONG` in a message: the flag, or its environment
/// variable when that is where the value came from.
pub(crate) fn setting(long: &str) -> String {
    let flag = format!("--{long}");
    let on_command_line = std::env::args_os().skip(1).any(|arg| {
        let arg = arg.to_string_lossy();
        arg == flag || arg.starts_with(&format!("{flag}="))
    });
    let variable = Cli::command()
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
        .and_then(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned());
    match variable {
        Some(name) if !on_command_line && std::env::var_os(&name).is_some() => {
            format!("{name} ({flag})")
        }
        _ => flag,
    }
}

/// Parses the command line as clap does, except that a value from an
/// environment variable that does not parse is reported with the variable's
/// name (clap names only the flag, which the operator never typed).
pub fn parse() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            if let Some(message) = from_environment(&error) {
                eprintln!("d_back: error: {message}");
                std::process::exit(2);
            }
            error.exit()
        }
    }
}

/// The message for a value from the environment that does not parse, if that
/// is what `error` is about.
fn from_environment(error: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation | ErrorKind::InvalidUtf8
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = arg.split([' ', '=']).next()?.strip_prefix("--")?;
    let named = setting(long);
    if named.starts_with("--") {
        return None;
    }
    let variable = named.split(' ').next()?.to_owned();
    let reason = error.to_string();
    let reason = reason.lines().next()?.trim_start_matches("error: ");
    Some(format!("the environment variable {variable}: {reason}"))
}

/// A count that must be 1 or more; `why` says what 0 would do.
fn at_least_one<T: PartialEq + Default>(long: &str, value: T, why: &str) -> Result<T, String> {
    if value == T::default() {
        return Err(format!("{} must be 1 or more; {why}", setting(long)));
    }
    Ok(value)
}

/// A number of seconds above 0; `why` says what 0 would do.
fn positive(long: &str, value: f64, why: &str) -> Result<Duration, String> {
    match seconds(long, value)? {
        duration if duration.is_zero() => Err(format!(
            "{} must be more than 0 seconds; {why}",
            setting(long)
        )),
        duration => Ok(duration),
    }
}

/// A number of seconds of 0 or more.
pub(crate) fn seconds(long: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        format!(
            "{} must be a number of seconds of 0 or more, not {value}",
            setting(long)
        )
    })
}
