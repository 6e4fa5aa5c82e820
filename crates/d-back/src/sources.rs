//! Which data the `d_back` command serves, decided from its flags.
//!
//! With none of `--data`, `--discord-token` and `--ingest-token` it serves the
//! built-in world. With any of them it serves one shared [`Store`]: the data
//! file loads into it first (servers, settings, users), then the Discord bot
//! adds the guilds it is in (keeping the file's settings for a guild it lists),
//! and the ingest API writes into it while the server runs. This module only
//! wires those together; each source lives in the library. If Discord refuses
//! the bot after the start, the command ends (see [`Sources::refused`]).

use std::time::Duration;

use d_back::provider::discord::{DiscordConfig, DiscordLeader, DiscordSource};
use d_back::provider::{DataFile, OAuthValidator, Store};
use d_back::{Hub, ServerBuilder};
use tracing::{info, warn};

use crate::config::{Cli, seconds};

/// The real data sources that were started, if any.
pub struct Sources {
    store: Option<Store>,
    discord: Option<DiscordSource>,
    /// In cluster mode: the bot's settings until [`Sources::attach`], then its leader.
    cluster_discord: Option<DiscordConfig>,
    leader: Option<DiscordLeader>,
    /// The data file, to read again on SIGHUP.
    data: Option<std::path::PathBuf>,
}

impl Sources {
    /// Loads the data file and connects to Discord, as the flags ask; says what is wrong otherwise.
    pub async fn start(cli: &Cli) -> Result<Self, String> {
        let real = cli.data.is_some() || cli.discord_token.is_some() || cli.ingest_token.is_some();
        if !real {
            if cli.oauth_client_id.is_some() {
                warn!("--oauth-client-id is ignored by the built-in world");
            }
            return Ok(Self {
                store: None,
                discord: None,
                cluster_discord: None,
                leader: None,
                data: None,
            });
        }
        let store = Store::new();
        let mut oauth = OAuthValidator::new(
            &cli.discord_api_url,
            seconds("oauth-timeout", cli.oauth_timeout)?.max(Duration::from_millis(100)),
        );
        if let Some(token) = &cli.discord_token {
            // The bot may look up members its roster does not hold yet.
            oauth = oauth.with_bot_token(token);
        }
        store.set_oauth(oauth);
        if let Some(path) = &cli.data {
            let file = DataFile::load(path).map_err(|e| e.to_string())?;
            info!(file = %path.display(), servers = file.servers.len(), "data file loaded");
            file.load_into(&store);
        }
        if let Some(client_id) = &cli.oauth_client_id {
            store
                .set_client_id(None, client_id)
                .map_err(|e| e.to_string())?;
        }
        let config = cli.discord_token.as_ref().map(|token| {
            DiscordConfig::new(token)
                .gateway_url(&cli.discord_gateway_url)
                .api_url(&cli.discord_api_url)
        });
        let (discord, cluster_discord) = match config {
            Some(config) if cli.redis_url.is_some() => (None, Some(config)),
            Some(config) => {
                let source = DiscordSource::start(config, store.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                (Some(source), None)
            }
            None => (None, None),
        };
        Ok(Self {
            store: Some(store),
            discord,
            cluster_discord,
            leader: None,
            data: cli.data.clone(),
        })
    }

    /// Points the server at the store and mounts the ingest API if it was asked for.
    pub fn configure(&self, mut builder: ServerBuilder, cli: &Cli) -> ServerBuilder {
        if let Some(store) = &self.store {
            builder = builder.provider(store.clone());
            if let Some(token) = &cli.ingest_token {
                builder = builder.ingest_api(token, store.clone());
            }
        }
        builder
    }

    /// With the ingest API on and nothing listed yet, logs how to list a
    /// server: browsers are told there are no servers, and an operator who
    /// started with only `--ingest-token` should not have to look up why.
    /// `url` is the server's page address. The token itself is never logged.
    pub fn explain_empty(&self, cli: &Cli, url: &str) {
        let (Some(store), Some(_), None) = (&self.store, &cli.ingest_token, &cli.discord_token)
        else {
            return;
        };
        if store.server_count() > 0 {
            return;
        }
        let example = r#"{"1000": {"id": "guild", "name": "My Guild"}}"#;
        // Point at the token without writing it: the variable when it holds it.
        let token = if std::env::var_os("D_BACK_INGEST_TOKEN").is_some() {
            "$D_BACK_INGEST_TOKEN"
        } else {
            "<your --ingest-token>"
        };
        info!(
            "no Discord servers yet, so browsers are told there are none; list one through the ingest API: \
             curl -X PUT {url}api/ingest/servers -H \"Authorization: Bearer {token}\" -d '{example}' \
             (the API is described at {url}api/openapi.json)"
        );
    }

    /// Lets the store's changes reach browsers (on every node, in cluster
    /// mode, where the bot now competes for the cluster's Discord lease).
    pub fn attach(&mut self, hub: Hub) {
        if let Some(store) = &self.store {
            store.attach(hub.clone());
            if let Some(config) = self.cluster_discord.take() {
                self.leader = Some(DiscordLeader::start(config, store.clone(), &hub));
            }
        }
    }

    /// Reads the data file again (SIGHUP) and puts its servers and users in
    /// the store, which sends browsers what changed. A file that no longer
    /// parses is reported and the old data kept. With the Discord bot on, the
    /// members come from Discord, so the file is left for the next start.
    pub fn reload(&self) {
        let (Some(store), Some(path)) = (&self.store, &self.data) else {
            return;
        };
        if self.discord.is_some() || self.leader.is_some() {
            warn!(file = %path.display(), "the data file is read at start only while the Discord bot is on; restart to apply it");
            return;
        }
        match DataFile::load(path) {
            Ok(file) => {
                info!(file = %path.display(), servers = file.servers.len(), "data file reloaded");
                file.load_into(store);
            }
            Err(error) => {
                tracing::error!(%error, "data file not reloaded; the old data stays in use");
            }
        }
    }

    /// Resolves with Discord's reason if it refuses the bot after the start
    /// (a reset token, an intent switched off); never without a Discord
    /// source. The command then ends with that one line: it cannot recover
    /// by itself, and a server whose world silently stopped changing would
    /// hide the problem. Waited for in `main`'s loop, so the line comes
    /// after everything the start printed.
    pub fn refused(&self) -> impl Future<Output = String> + Send + 'static {
        let source = self.discord.as_ref().map(DiscordSource::failed);
        let leader = self.leader.as_ref().map(DiscordLeader::failed);
        async move {
            let failed = async {
                match (source, leader) {
                    (Some(failed), _) => failed.await,
                    (None, Some(failed)) => failed.await,
                    (None, None) => None,
                }
            };
            match failed.await {
                Some(error) => error.to_string(),
                None => std::future::pending().await,
            }
        }
    }

    /// Disconnects from Discord.
    pub async fn stop(self) {
        if let Some(discord) = self.discord {
            discord.stop().await;
        }
        if let Some(leader) = self.leader {
            leader.stop().await;
        }
    }
}
